"""The family of simulated worlds (``world.truth.kind``): group shifts, the smooth Gaussian-process field, the
reference walk, by hand-computed cases and by the statistics they promise; and the campaign fields."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem

from labloop.core.errors import CampaignError
from labloop.orchestrator.compose import build_world
from labloop.orchestrator.config.campaign import load_campaign
from labloop.sim.truth import DEFAULT_SHIFTS, GroupShifts, ReferenceWalk, SmoothField
from labloop.sim.world import LI_ABSOLUTE_V, World, born_solvation_ev

ACETOPHENONE, PYRIDINE, BENZENE = "CC(=O)c1ccccc1", "c1ccncc1", "c1ccccc1"
TOLUENE, PHENOL = "Cc1ccccc1", "Oc1ccccc1"


def world_of(tmp_path: Path, truth: str, seed: int = 3) -> World:
    (tmp_path / "library.csv").write_text(f"smiles,ie_ev,ea_ev,e_v\n{ACETOPHENONE},9.3,0.3,4.1\n"
                                          f"{PYRIDINE},9.6,-0.6,4.2\n{BENZENE},9.24,-1.12,4.3\n"
                                          f"{TOLUENE},8.8,-1.0,4.4\n{PHENOL},8.5,-1.0,4.5\n")
    path = tmp_path / "campaign.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: kinds
        seed: {seed}
        library: {{file: library.csv}}
        objective: {{quantity: oxidation_potential, goal: maximize}}
        instruments: {{sampler: {{driver: sim-sampler}}}}
        protocol: [load_sample, {{cv: {{e_begin_v: -0.5, e_vertex1_v: 1.5, e_vertex2_v: -0.5}}}}]
        world: {{truth: {truth}, noise_v: 0.0}}
        """))
    return build_world(load_campaign(path))


def test_groups_add_each_matched_pattern_once(tmp_path):
    born = world_of(tmp_path, "{kind: born}")
    groups = world_of(tmp_path, '{kind: groups, shifts: {"[CX3]=[OX1]": 0.3, "[#7]": -0.2, "c": 0.05}}')
    # acetophenone: carbonyl (0.3) and aromatic carbons (six matches, counted once: 0.05); no nitrogen
    assert groups.truth_v(ACETOPHENONE) - born.truth_v(ACETOPHENONE) == pytest.approx(0.35, abs=1e-12)
    assert groups.truth_v(PYRIDINE) - born.truth_v(PYRIDINE) == pytest.approx(-0.15, abs=1e-12)
    # the systematic part, by hand: -Born(9 heavy atoms, acn) + 0.35
    assert groups.systematic_v(ACETOPHENONE) == pytest.approx(-born_solvation_ev(9, "acn") + 0.35, abs=1e-12)
    residual = groups.truth_v(ACETOPHENONE) - (9.3 - LI_ABSOLUTE_V) - groups.systematic_v(ACETOPHENONE)
    assert abs(residual) < 0.25 and residual != 0.0  # the born kind's small per-molecule residual


def test_default_shifts_are_used_and_hand_checkable(tmp_path):
    world = world_of(tmp_path, "{kind: groups}")
    born = world_of(tmp_path, "{kind: born}")
    assert world.groups is not None and world.groups.shifts == DEFAULT_SHIFTS
    by_hand = {ACETOPHENONE: DEFAULT_SHIFTS["[CX3]=[OX1]"], PYRIDINE: DEFAULT_SHIFTS["[#7;a]"],
               PHENOL: DEFAULT_SHIFTS["[OX2H]"], BENZENE: 0.0, TOLUENE: 0.0}
    for smiles, shift in by_hand.items():
        assert world.truth_v(smiles) - born.truth_v(smiles) == pytest.approx(shift, abs=1e-12), smiles
    amine = GroupShifts().shift_v(Chem.MolFromSmiles("CCN(CC)CC"))
    assert amine == DEFAULT_SHIFTS["[NX3;!$(N-[#6,#16]=[#8,#16]);!$(N-a)]"]
    assert GroupShifts().shift_v(Chem.MolFromSmiles("CC(=O)NC")) == DEFAULT_SHIFTS["[CX3]=[OX1]"]  # amide N: no


def test_smooth_field_zero_amplitude_is_born_and_draws_follow_the_seed(tmp_path):
    born = world_of(tmp_path, "{kind: born}")
    flat = world_of(tmp_path, "{kind: smooth, amplitude_v: 0.0}")
    assert flat.truth_v(TOLUENE) == born.truth_v(TOLUENE)
    a = world_of(tmp_path, "{kind: smooth, amplitude_v: 0.3, length: 0.5}", seed=3)
    b = world_of(tmp_path, "{kind: smooth, amplitude_v: 0.3, length: 0.5}", seed=3)
    c = world_of(tmp_path, "{kind: smooth, amplitude_v: 0.3, length: 0.5}", seed=4)
    assert a.truth_v(TOLUENE) == b.truth_v(TOLUENE)  # a pure function of the seed and the molecule
    assert a.truth_v(TOLUENE) != c.truth_v(TOLUENE)
    assert a.truth_v("C1=CC=CC=C1C") == a.truth_v(TOLUENE)  # another spelling, the same molecule


def _tanimoto_radius3(x: str, y: str) -> float:
    field = SmoothField(0, 1.0, 1.0, n_features=1)
    a, b = (set(field.environments(Chem.MolFromSmiles(s)).tolist()) for s in (x, y))
    return len(a & b) / len(a | b)


def test_smooth_field_has_the_promised_covariance():
    """Over many seeds: variance amplitude^2, correlation exp((T - 1) / length) with T computed by hand."""
    amplitude, length = 0.3, 0.5
    mols = [Chem.MolFromSmiles(s) for s in (TOLUENE, "CCc1ccccc1", PYRIDINE)]
    draws = np.array([[SmoothField(seed, amplitude, length, n_features=512).value_v(m) for m in mols]
                      for seed in range(600)])
    cov = draws.T @ draws / len(draws)  # zero mean by construction
    assert np.sqrt(np.diag(cov)) == pytest.approx(amplitude, rel=0.12)
    for (i, x), (j, y) in [((0, TOLUENE), (1, "CCc1ccccc1")), ((0, TOLUENE), (2, PYRIDINE))]:
        expected = math.exp((_tanimoto_radius3(x, y) - 1) / length)
        assert cov[i, j] / math.sqrt(cov[i, i] * cov[j, j]) == pytest.approx(expected, abs=0.1), (x, y)
    assert _tanimoto_radius3(TOLUENE, "CCc1ccccc1") > _tanimoto_radius3(TOLUENE, PYRIDINE)


def test_reference_walk_is_a_seeded_gaussian_walk_whatever_the_query_order():
    walk = ReferenceWalk(5, 0.01)
    assert walk.at(0) == 0.0
    path = np.array([walk.at(k) for k in range(5000)])
    steps = np.diff(path)
    assert steps.std() == pytest.approx(0.01, rel=0.05) and abs(steps.mean()) < 0.001
    other = ReferenceWalk(5, 0.01)
    assert other.at(4321) == path[4321] and other.at(3) == path[3]
    assert ReferenceWalk(6, 0.01).at(10) != path[10]
    with pytest.raises(ValueError):
        walk.at(-1)


def test_drift_moves_measurements_not_the_truth_and_resumes(tmp_path):
    world = world_of(tmp_path, "{kind: drift, base: groups, walk_step_v: 0.02}")
    groups = world_of(tmp_path, "{kind: groups}")
    assert world.truth_v(ACETOPHENONE) == groups.truth_v(ACETOPHENONE)
    base = world.truth_v(BENZENE) - world.reference_offset_v
    drifts = []
    for _ in range(6):  # the couple stays at its truth; the reference electrode walks, clocked by measurements
        assert world.couple_of(BENZENE).e0_v == pytest.approx(base, abs=1e-12)
        drifts.append(world.reference_drift_v())
    assert drifts == pytest.approx([world.walk.at(k) for k in range(1, 7)], abs=1e-12)
    resumed = world_of(tmp_path, "{kind: drift, base: groups, walk_step_v: 0.02}")
    resumed.resume_at(4)
    assert resumed.reference_drift_v() == pytest.approx(world.walk.at(4), abs=1e-12)


def test_column_world_with_drift(tmp_path):
    world = world_of(tmp_path, "{kind: drift, base: column, column: e_v, walk_step_v: 0.0}")
    assert world.truth_v(BENZENE) == 4.3 and world.source == "column"
    with pytest.raises(ValueError, match="column"):
        world.systematic_v(BENZENE)


@pytest.mark.parametrize(("truth", "field", "says"), [
    ('{kind: groups, shifts: {"[C": 0.1}}', "world.truth.shifts", "SMARTS"),
    ("{kind: drift}", "world.truth.base", "required"),
    ("{kind: born, base: groups}", "world.truth.base", "only used with kind 'drift'"),
    ("{kind: smooth, shifts: {c: 0.1}}", "world.truth.shifts", "only used with kind 'groups'"),
    ("{kind: smooth, length: 0}", "world.truth.length", "greater than"),
    ("{kind: smooth, length: 0.0001}", "world.truth.length", "greater than or equal to 0.05"),  # gigabytes
    ("{kind: smooth, amplitude_v: 1000.0}", "world.truth.amplitude_v", "less than or equal to 3"),
    ("{kind: groups, shifts: {c: 200.0}}", "world.truth.shifts", "+/-3 V"),
    ("{kind: drift, base: born, walk_step_v: 5.0}", "world.truth.walk_step_v", "less than or equal to 0.5"),
    # a field of another kind would be ignored without a word: the user believes the kinds combined
    ("{kind: groups, amplitude_v: 0.5}", "world.truth.amplitude_v", "only used with kind smooth"),
    ("{kind: drift, base: groups, length: 0.2}", "world.truth.length", "base 'groups'"),
    ("{kind: smooth, walk_step_v: 0.02}", "world.truth.walk_step_v", "only used with kind drift"),
    ("{kind: column, column: e_v, solvent: dmso}", "world.truth.solvent", "only used with kind born"),
    ("{kind: born}, reference_offset_v: -1000.0", "world.reference_offset_v", "greater than or equal to -1"),
    ("{kind: weather}", "world.truth.kind", "weather"),
    ("{from: ie_ea, kind: born}", "world.truth.from", "old spelling"),
])
def test_bad_truth_fields_are_named(tmp_path, truth, field, says):
    with pytest.raises(CampaignError) as info:
        world_of(tmp_path, truth)
    text = str(info.value)
    assert field in text and says in text, text


def test_a_bad_smarts_is_one_line_without_rdkit_noise(tmp_path, capfd):
    with pytest.raises(CampaignError, match="SMARTS"):
        world_of(tmp_path, '{kind: groups, shifts: {"[#7;a": 0.1}}')
    assert "SMARTS Parse Error" not in capfd.readouterr().err


def test_fields_of_the_kinds_in_use_are_taken(tmp_path):
    world = world_of(tmp_path, "{kind: drift, base: smooth, amplitude_v: 0.3, length: 0.2, walk_step_v: 0.02}")
    assert world.walk.step_v == 0.02


def test_old_spelling_still_reads(tmp_path):
    assert world_of(tmp_path, "{from: ie_ea}").source == "ie_ea"
    assert world_of(tmp_path, "{from: column, column: e_v}").truth_v(PYRIDINE) == 4.2
