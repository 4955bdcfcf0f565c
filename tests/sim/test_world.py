"""The simulated world: Born-corrected truth from IE/EA (hand-computed values), potentials from a column,
determinism across instances, and the couple the emulators get."""

from __future__ import annotations

import logging
import math
import textwrap
from pathlib import Path

import pytest

from labloop.core.errors import CampaignError, ConfigError
from labloop.orchestrator.compose import build_world
from labloop.orchestrator.config.campaign import load_campaign
from labloop.sim.world import RESIDUAL_SD_V, UNSTABLE_FOLLOW_UP_PER_S, born_solvation_ev

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BENZENE, NAPHTHALENE = "c1ccccc1", "c1ccc2ccccc2c1"


def write_campaign(folder: Path, world: str, quantity: str = "oxidation_potential", extra: str = "") -> Path:
    (folder / "library.csv").write_text(f"smiles,ie_ev,ea_ev,ered_v_vs_li\n{BENZENE},9.24,-1.12,0.5\n"
                                        f"{NAPHTHALENE},8.14,-0.19,1.25\n")
    path = folder / "campaign.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: world-test
        seed: 3
        library: {{file: library.csv}}
        objective: {{quantity: {quantity}, goal: maximize}}
        instruments: {{sampler: {{driver: sim-sampler}}}}
        protocol: [load_sample, {{cv: {{e_begin_v: -0.5, e_vertex1_v: 1.5, e_vertex2_v: -0.5}}}}]
        {extra}
        world: {world}
        """))
    return path


def test_born_term_by_hand():
    # benzene: 6 heavy atoms, a = 1.5 * 6^(1/3) = 2.7257 A; acetonitrile: 1 - 1/35.9 = 0.97214
    assert born_solvation_ev(6, "acn") == pytest.approx(7.2 * 0.97214 / 2.72568, rel=1e-4)
    assert born_solvation_ev(6, "acn") == pytest.approx(2.5678, abs=1e-3)
    # naphthalene in DMC: a = 1.5 * 10^(1/3) = 3.2317 A; 1 - 1/3.1 = 0.67742 -> 1.5092 eV
    assert born_solvation_ev(10, "dmc") == pytest.approx(1.5092, abs=1e-3)
    assert born_solvation_ev(10, "pc") > born_solvation_ev(10, "acn") > born_solvation_ev(10, "dmc")


def test_ie_ea_truth_is_the_born_corrected_rule_plus_a_small_residual(tmp_path):
    world = build_world(load_campaign(write_campaign(tmp_path, "{truth: {from: ie_ea, solvent: acn}}")))
    expected = 9.24 - 1.40 - 2.5678  # IE - 1.40 - G_solv
    assert world.truth_v(BENZENE) == pytest.approx(expected, abs=4 * RESIDUAL_SD_V)
    assert world.truth_v(BENZENE) != pytest.approx(expected, abs=1e-6)  # the residual is there
    assert world.truth_v("C1=CC=CC=C1") == world.truth_v(BENZENE)  # another spelling, the same molecule
    reduction = build_world(load_campaign(write_campaign(
        tmp_path, "{truth: {from: ie_ea, solvent: dmc}}", quantity="reduction_potential")))
    assert reduction.truth_v(NAPHTHALENE) == pytest.approx(-0.19 + 1.5092 - 1.40, abs=4 * RESIDUAL_SD_V)
    with pytest.raises(KeyError):
        world.truth_v("CCO")


def test_truth_is_deterministic_across_worlds_and_seeds(tmp_path):
    a = build_world(load_campaign(write_campaign(tmp_path, "{truth: {from: ie_ea}}")))
    b = build_world(load_campaign(write_campaign(tmp_path, "{truth: {from: ie_ea}, noise_v: 0.0}")))
    assert a.truth_v(NAPHTHALENE) == b.truth_v(NAPHTHALENE)
    assert b.couple_of(NAPHTHALENE) == b.couple_of(NAPHTHALENE)  # no noise: the same couple every time


def test_column_truth_is_taken_as_it_is(tmp_path):
    world = build_world(load_campaign(write_campaign(
        tmp_path, "{truth: {file: library.csv, column: ered_v_vs_li, quantity: reduction_potential}, noise_v: 0}",
        quantity="reduction_potential", extra="cell: {reference_offset_v: 3.0}")))
    assert world.truth_v(NAPHTHALENE) == 1.25
    couple = world.couple_of(NAPHTHALENE)
    assert couple.e0_v == pytest.approx(1.25 - 3.0)  # on the reference electrode's scale
    assert couple.species == "oxidized"  # reduction: the oxidised form is in the bulk


def test_a_column_of_the_other_quantity_is_refused(tmp_path):
    with pytest.raises(CampaignError, match=r"world\.truth\.quantity: 'reduction_potential' is not what the "
                                            r"objective measures \('oxidation_potential'\)"):
        load_campaign(write_campaign(
            tmp_path, "{truth: {file: library.csv, column: ered_v_vs_li, quantity: reduction_potential}}"))


def test_couple_spreads_kinetics_and_drifts_by_the_noise(tmp_path):
    world = build_world(load_campaign(write_campaign(tmp_path, "{truth: {from: ie_ea}, noise_v: 0.01}")))
    world.note_sample("vial-7", BENZENE)
    draws = [world.couple_of("vial-7") for _ in range(200)]
    offsets = [c.e0_v - (world.truth_v(BENZENE) - world.reference_offset_v) for c in draws]
    assert 0.007 < math.sqrt(sum(x * x for x in offsets) / len(offsets)) < 0.013
    assert len({(c.k0_cm_s, c.diffusion_cm2_s) for c in draws}) == 1  # kinetics belong to the molecule
    assert world.couple_of(NAPHTHALENE).k0_cm_s != draws[0].k0_cm_s
    assert draws[0].species == "reduced"


def test_example_campaign_world_knows_every_library_molecule():
    campaign = load_campaign(EXAMPLES / "campaign.yaml")
    world = build_world(campaign)
    truths = [world.truth_v(smiles) for smiles in world.table.values]
    assert len(truths) == 200 and min(truths) > 2.5 and max(truths) < 7.0


def test_the_scans_of_one_filling_share_its_noise_and_the_next_filling_draws_anew(tmp_path):
    # a lab-grade experiment scans one solution at four rates and again with ferrocene: a draw per scan moved
    # E1/2 by tens of mV between the rates of one solution (a chemist's trial)
    world = build_world(load_campaign(write_campaign(tmp_path, "{truth: {from: ie_ea}, noise_v: 0.01}")))
    world.note_sample("vial-7", BENZENE)
    first = [world.couple_of("vial-7", 3).e0_v for _ in range(4)]
    assert len(set(first)) == 1
    refilled = [world.couple_of("vial-7", 4).e0_v for _ in range(20)]
    assert len(set(refilled)) == 1 and refilled[0] != first[0]
    assert len({world.couple_of("vial-7").e0_v for _ in range(20)}) == 20  # no filling named: a solution per call


@pytest.mark.parametrize("other", ["4.1", "", "n/a"])
def test_a_truth_cell_reading_n_a_is_missing_as_an_empty_one_is(tmp_path, caplog, other):
    """A ``column`` truth refused ``n/a`` ("not a number") where an empty cell was a molecule without a true value:
    left out of a truth file beyond the library; for a library molecule, the refusal an empty cell gets."""
    (tmp_path / "truth.csv").write_text(f"smiles,e_v\n{BENZENE},4.4\nCCO,{other}\n{NAPHTHALENE},4.6\n")
    world = "{truth: {kind: column, file: truth.csv, column: e_v}, noise_v: 0}"
    built = build_world(load_campaign(write_campaign(tmp_path, world)))
    assert built.truth_v(NAPHTHALENE) == 4.6 and ("CCO" in built.table.values) == (other == "4.1")
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert said == ([f"{tmp_path / 'truth.csv'}, column 'e_v': 1 row writes a missing value as 'n/a', at line 3 "
                     "(read as missing, as an empty cell is)"] if other == "n/a" else []), said
    if other == "4.1":
        return
    (tmp_path / "truth.csv").write_text(f"smiles,e_v\n{BENZENE},4.1\n{NAPHTHALENE},{other}\n")
    with pytest.raises(ConfigError, match=r"world\.truth\.file: 1 library molecule has no finite true value in "
                                          r".*truth\.csv \(first: c1ccc2ccccc2c1\)"):
        build_world(load_campaign(write_campaign(tmp_path, world)))


def test_an_unstable_share_of_molecules_reacts_away_and_the_others_do_not(tmp_path):
    """world.unstable_share: drawn per molecule (the same in every world), leaving k0 and D as they were."""
    plain = build_world(load_campaign(write_campaign(tmp_path, "{truth: {from: ie_ea}}")))
    every = build_world(load_campaign(write_campaign(tmp_path, "{truth: {from: ie_ea}, unstable_share: 1}")))
    for smiles in (BENZENE, NAPHTHALENE):
        assert plain.couple_of(smiles).follow_up_per_s == 0.0
        unstable = every.couple_of(smiles)
        assert unstable.follow_up_per_s == UNSTABLE_FOLLOW_UP_PER_S > 0
        assert (unstable.k0_cm_s, unstable.diffusion_cm2_s) == (plain.couple_of(smiles).k0_cm_s,
                                                                plain.couple_of(smiles).diffusion_cm2_s)
    half = [build_world(load_campaign(write_campaign(tmp_path, "{truth: {from: ie_ea}, unstable_share: 0.5}")))
            for _ in range(2)]
    assert half[0].couple_of(BENZENE).follow_up_per_s == half[1].couple_of(BENZENE).follow_up_per_s
