"""Bayesian planning: acquisition functions against hand-computed values, the window probability, batch
diversity, pending molecules, failures that teach, the screening baseline's fixed order, condition
planning and the feedback calibration.

The planners get their predictions through :class:`TableModel`, a model view over fixed numbers: the
planners' input is the (mu, sigma) a surrogate gives, and fixing it is what lets each expected value be
computed by hand. The surrogate itself, and the planners with it inside a campaign, are tested in
test_runner.py and test_resume_kill.py.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from rdkit import DataStructs

from labloop.planners import ConditionSpace, Observation, PlannerState, PoolPlanner, ScreeningPlanner
from labloop.planners.acquisition import acquire, window_probability
from labloop.planners.design import calibration_design
from labloop.planners.feedback import CalibratedModel, DescriptorTable, cheap_descriptors, fit_calibration
from labloop.planners.residual_gp import OFFSET_PRIOR_V
from labloop.planners.similarity import SimilarityIndex


def phi(z: float) -> float:
    return math.exp(-z * z / 2) / math.sqrt(2 * math.pi)


def Phi(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


class TableModel:
    """A model view over fixed predictions (mu, sigma) per SMILES."""

    def __init__(self, table: dict[str, tuple[float, float]], version: int = 1) -> None:
        self.table, self.version = table, version

    def predict(self, smiles):
        return ([self.table[s][0] for s in smiles], [self.table[s][1] for s in smiles])


# -- acquisition functions --------------------------------------------------------------------------

def test_expected_improvement_matches_the_closed_form_for_both_goals():
    mu, sigma, best, xi = 4.0, 0.2, 4.1, 0.01
    z = (mu - best - xi) / sigma  # maximise: improvement is mu above best + xi
    expected_max = (mu - best - xi) * Phi(z) + sigma * phi(z)
    got = acquire("ei", np.array([mu]), np.array([sigma]), "maximize", best_v=best)
    assert got[0] == pytest.approx(expected_max, rel=1e-9)
    z = (best - xi - mu) / sigma  # minimise: improvement is mu below best - xi
    expected_min = (best - xi - mu) * Phi(z) + sigma * phi(z)
    got = acquire("ei", np.array([mu]), np.array([sigma]), "minimize", best_v=best)
    assert got[0] == pytest.approx(expected_min, rel=1e-9)
    assert expected_min > expected_max  # below the best already: minimising gains more


def test_probability_of_improvement_and_confidence_bound_match_hand_values():
    mu, sigma = np.array([3.0, 3.5]), np.array([0.1, 0.4])
    pi = acquire("pi", mu, sigma, "maximize", best_v=3.2)
    assert pi == pytest.approx([Phi((3.0 - 3.2 - 0.01) / 0.1), Phi((3.5 - 3.2 - 0.01) / 0.4)], rel=1e-9)
    lcb = acquire("lcb", mu, sigma, "maximize")
    assert lcb == pytest.approx([3.0 + 1.96 * 0.1, 3.5 + 1.96 * 0.4])
    lcb_min = acquire("lcb", mu, sigma, "minimize")
    assert lcb_min == pytest.approx([-(3.0 - 1.96 * 0.1), -(3.5 - 1.96 * 0.4)])


def test_window_probability_is_the_gaussian_mass_inside_the_window():
    p = window_probability(np.array([4.55, 4.55, 3.0, 4.5]), np.array([0.05, 0.5, 0.1, 1e-9]), (4.5, 4.6))
    assert p[0] == pytest.approx(Phi(1) - Phi(-1), rel=1e-9)  # 0.6827: one sigma either side
    assert p[1] == pytest.approx(Phi(0.1) - Phi(-0.1), rel=1e-9)
    assert p[2] == pytest.approx(0.0, abs=1e-12)
    assert p[3] == pytest.approx(0.5)  # on the edge, no spread: half in


def test_unreadable_molecules_get_no_score():
    got = acquire("window_probability", np.array([4.55, np.nan]), np.array([0.1, np.nan]), "window",
                  window_v=(4.5, 4.6))
    assert np.isfinite(got[0]) and np.isnan(got[1])


# -- the pool planner --------------------------------------------------------------------------------

#: homologues that ECFP4 cannot tell apart (Tanimoto 1): near-copies
ALKYL_NAPHTHALENES = [f"{'C' * n}c1ccc2ccccc2c1" for n in range(10, 14)]
OTHERS = ["O=C1C=CC(=O)C=C1", "c1ccc2ccccc2c1", "CN(C)c1ccc(N(C)C)cc1", "c1ccsc1", "N#Cc1ccc(C#N)cc1"]


def tanimoto(sim: SimilarityIndex, a: str, b: str) -> float:
    """Tanimoto similarity of two molecules on the fingerprints the planners compare (0 if one is unreadable)."""
    fa, fb = sim.fingerprint(a), sim.fingerprint(b)
    return 0.0 if fa is None or fb is None else float(DataStructs.TanimotoSimilarity(fa, fb))


def _window_planner(library, diversity=0.7, first_batch="acquisition") -> PoolPlanner:
    return PoolPlanner("bayes", library, ConditionSpace({"scan_rate_v_s": (0.1, 0.1)}), goal="window",
                       acquisition="window_probability", window_v=(4.5, 4.6), diversity=diversity,
                       first_batch=first_batch)


def test_batch_is_diverse_and_skips_pending_molecules():
    library = ALKYL_NAPHTHALENES + OTHERS
    # the near-copies are predicted best: without a diversity limit they would fill the batch
    table = {s: (4.55, 0.05) for s in ALKYL_NAPHTHALENES} | {s: (4.4, 0.1) for s in OTHERS}
    model = TableModel(table)
    sim = SimilarityIndex()
    assert tanimoto(sim, ALKYL_NAPHTHALENES[0], ALKYL_NAPHTHALENES[1]) > 0.7
    undiverse = _window_planner(library, diversity=1.0).propose(PlannerState("bayes", 1, 0), 3, model)
    assert {p.smiles for p in undiverse} <= set(ALKYL_NAPHTHALENES)
    batch = _window_planner(library).propose(PlannerState("bayes", 1, 0), 3, model)
    chosen = [p.smiles for p in batch]
    assert chosen[0] == ALKYL_NAPHTHALENES[0] and len(chosen) == 3
    assert all(tanimoto(sim, a, b) <= 0.7 for i, a in enumerate(chosen) for b in chosen[i + 1:])
    pending = _window_planner(library).propose(PlannerState("bayes", 1, 0, pending=(ALKYL_NAPHTHALENES[0],)), 3, model)
    assert ALKYL_NAPHTHALENES[0] not in {p.smiles for p in pending}
    assert not set(ALKYL_NAPHTHALENES) & {p.smiles for p in pending}  # near-copies of a pending one neither
    for p in batch:
        assert p.acquisition == pytest.approx(float(window_probability(np.array([table[p.smiles][0]]),
                                                                       np.array([table[p.smiles][1]]),
                                                                       (4.5, 4.6))[0]))
        assert p.model_version == 1 and p.planner == "bayes" and p.conditions == {"scan_rate_v_s": 0.1}


def test_a_failed_analysis_lowers_the_score_of_similar_molecules_only():
    library = ALKYL_NAPHTHALENES + OTHERS
    model = TableModel({s: (4.52, 0.1) for s in library})
    planner = _window_planner(library)
    before = PlannerState("bayes", 1, 3)
    after = PlannerState("bayes", 1, 3, observations=(
        Observation(ALKYL_NAPHTHALENES[0], {}, None, quality=0.0, failure="analysis"),))
    pool0, _, _, score0 = planner.scores(before, model)
    pool1, _, _, score1 = planner.scores(after, model)
    s0, s1 = dict(zip(pool0, score0, strict=True)), dict(zip(pool1, score1, strict=True))
    for similar in ALKYL_NAPHTHALENES[1:]:
        assert s1[similar] < s0[similar] - 1e-3
    for other in OTHERS:
        assert s1[other] == pytest.approx(s0[other])
    # an instrument fault says nothing about the molecule: it stays to propose (once more), every score as before
    rig_fault = PlannerState("bayes", 1, 3, observations=(
        Observation(ALKYL_NAPHTHALENES[0], {}, None, failure="instrument"),))
    pool2, _, _, score2 = planner.scores(rig_fault, model)
    assert list(pool2) == list(pool0) and np.allclose(score2, score0)


def test_greedy_uses_the_mean_only():
    library = OTHERS
    table = {OTHERS[0]: (4.55, 0.5), OTHERS[1]: (4.52, 0.01), OTHERS[2]: (3.0, 2.0), OTHERS[3]: (4.9, 0.1),
             OTHERS[4]: (4.0, 0.1)}
    greedy = PoolPlanner("greedy", library, ConditionSpace({}), goal="window", acquisition="mean",
                         window_v=(4.5, 4.6), first_batch="acquisition")
    order = [p.smiles for p in greedy.propose(PlannerState("greedy", 0, 0), 5, TableModel(table))]
    assert order == [OTHERS[0], OTHERS[1], OTHERS[3], OTHERS[4], OTHERS[2]]  # by |mu - 4.55| alone
    bayes = _window_planner(library, diversity=1.0)
    assert bayes.propose(PlannerState("bayes", 0, 0), 1, TableModel(table))[0].smiles == OTHERS[1]  # sure bet


def test_state_with_quality_and_failure_round_trips_and_gives_the_same_proposals():
    library = ALKYL_NAPHTHALENES + OTHERS
    model = TableModel({s: (4.4 + 0.03 * k, 0.1) for k, s in enumerate(library)})
    planner = PoolPlanner("bayes", library, ConditionSpace({"scan_rate_v_s": (0.02, 0.5)}), goal="window",
                          acquisition="window_probability", window_v=(4.5, 4.6))
    state = PlannerState("bayes", 9, 4, observations=(
        Observation(OTHERS[0], {"scan_rate_v_s": 0.1}, 4.51, quality=0.8),
        Observation(OTHERS[1], {"scan_rate_v_s": 0.3}, None, quality=0.0, failure="analysis")),
        pending=(OTHERS[2],))
    again = PlannerState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert again == state
    assert planner.propose(state, 3, model) == planner.propose(again, 3, model)


#: alkylbenzenes of 6 to 45 heavy atoms, biggest first: ALKYLBENZENES[i] has 45 - i heavy atoms
ALKYLBENZENES = ["C" * k + "c1ccccc1" for k in range(39, -1, -1)]


def test_calibration_design_takes_the_surest_molecule_of_each_size_stratum():
    size_term = np.array([(6 + k) ** (-1 / 3) for k in range(40)])  # heavy atoms 6..45
    sigma = np.full(40, 0.2)
    sigma[[0, 39]] = 0.01  # the smallest and the biggest: outside the 2.5-97.5% ranks, never chosen
    sigma[[3, 15, 25, 35]] = 0.1  # the surest of each quarter of the rest
    sigma[20] = np.nan  # unreadable
    assert calibration_design(size_term, sigma, 4) == [35, 25, 15, 3]  # smallest size term (biggest) first
    assert calibration_design(size_term, sigma, 1) == [3]  # one stratum: the surest inside the range
    assert calibration_design(size_term[:1], sigma[:1], 4) == []  # nothing inside the range
    assert calibration_design(size_term, sigma, 0) == []


def test_first_batch_is_a_size_design_then_the_acquisition_takes_over():
    library = ALKYLBENZENES
    heavy = {s: 45 - i for i, s in enumerate(library)}
    surest = {heavy_atoms: 0.1 for heavy_atoms in (10, 20, 30, 42)}
    # the acquisition prefers the molecules sure to be in the window; the design ignores the window
    table = {s: (3.0, surest[heavy[s]]) if heavy[s] in surest else (4.55, 0.05 if heavy[s] in (6, 45) else 0.2)
             for s in library}
    model = TableModel(table)
    planner = _window_planner(library, diversity=1.0, first_batch="design")
    first = planner.propose(PlannerState("bayes", 1, 0), 4, model)
    assert [heavy[p.smiles] for p in first] == [10, 20, 30, 42]  # smallest first
    assert all(p.acquisition == pytest.approx(0.0, abs=1e-12) for p in first)  # mu 3.0: the design's choice
    assert all(p.design for p in first)  # and said so, for the journal (its acquisition did not choose them)
    by_acquisition = [p.smiles for p in _window_planner(library, diversity=1.0).propose(
        PlannerState("bayes", 1, 0), 4, model)]
    assert {heavy[s] for s in by_acquisition[:2]} == {6, 45}
    # once a potential is measured, or while experiments are pending, the acquisition chooses
    measured = PlannerState("bayes", 1, 1, observations=(Observation(first[0].smiles, {}, 3.1),))
    assert [p.smiles for p in planner.propose(measured, 4, model)] == by_acquisition
    assert not any(p.design for p in planner.propose(measured, 4, model))
    pending = PlannerState("bayes", 1, 1, pending=(first[0].smiles,))
    assert {heavy[p.smiles] for p in planner.propose(pending, 2, model)} == {6, 45}
    # a first batch that failed teaches nothing about the calibration: the next is a design again
    failed = PlannerState("bayes", 1, 1, observations=tuple(
        Observation(p.smiles, {}, None, quality=0.0, failure="analysis") for p in first))
    # (36 left, all sigma 0.2 inside the range: ranks 1-9, 10-17, 18-25, 26-34 of 0-35, first of each)
    assert [heavy[p.smiles] for p in planner.propose(failed, 4, model)] == [16, 25, 34, 44]


# -- screening ---------------------------------------------------------------------------------------

def test_screening_measures_in_the_prior_order_whatever_is_measured():
    library = ALKYL_NAPHTHALENES + OTHERS
    model = TableModel({s: (4.0 + 0.1 * k, 0.1) for k, s in enumerate(library)})
    planner = ScreeningPlanner(library, ConditionSpace({"scan_rate_v_s": (0.02, 0.5)}), goal="window",
                               window_v=(4.5, 4.6))
    ranking = planner.ranking(model)
    assert ranking[:3] == [library[5], library[6], library[4]]  # mu 4.5, 4.6, 4.4: closest to 4.55 first
    observations: list[Observation] = []
    proposed = []
    for step in range(5):
        batch = planner.propose(PlannerState("screening", 0, step, observations=tuple(observations)), 2, model)
        proposed += [p.smiles for p in batch]
        # whatever comes back — hits, misses, failures — changes nothing
        observations += [Observation(p.smiles, p.conditions, None if k else 9.9, failure="analysis" if k else None)
                         for k, p in enumerate(batch)]
        assert all(p.conditions == {"scan_rate_v_s": pytest.approx(0.1)} for p in batch)  # sqrt(0.02 * 0.5)
    assert proposed == ranking[:9]
    assert planner.learns is False


def test_screening_never_proposes_what_the_model_cannot_read():
    """Unreadable molecules (NaN predictions) rank last and used to be proposed once the rest were tried."""
    library = [*ALKYL_NAPHTHALENES[:3], "[H][H]"]
    model = TableModel({**{s: (4.5, 0.1) for s in library[:3]}, "[H][H]": (math.nan, math.nan)})
    planner = ScreeningPlanner(library, ConditionSpace({"scan_rate_v_s": (0.1, 0.1)}), goal="window",
                               window_v=(4.5, 4.6))
    assert [p.smiles for p in planner.propose(PlannerState("screening", 0, 0), 5, model)] == library[:3]
    tried = tuple(Observation(s, {}, 4.5) for s in library[:3])
    assert planner.propose(PlannerState("screening", 0, 1, observations=tried), 5, model) == []


# -- condition planning ------------------------------------------------------------------------------

def test_condition_planner_is_seeded_per_step_and_moves_towards_clean_voltammograms():
    space = ConditionSpace({"scan_rate_v_s": (0.01, 1.0), "e_step_v": {"choices": [0.001, 0.002]},
                            "n_scans": (1.0, 1.0)})

    def quality(c):  # clean voltammograms near 0.1 V/s with the fine step
        return math.exp(-math.log(c["scan_rate_v_s"] / 0.1) ** 2) * (1.0 if c["e_step_v"] == 0.001 else 0.5)

    first = space.propose([], 4, seed=3, step=0)
    assert first == space.propose([], 4, seed=3, step=0)
    assert first != space.propose([], 4, seed=3, step=1)
    assert all(c["n_scans"] == 1.0 and 0.01 <= c["scan_rate_v_s"] <= 1.0 for c in first)
    observations = []
    batches = []
    for step in range(8):
        batch = space.propose(observations, 4, seed=3, step=step)
        batches.append([quality(c) for c in batch])
        observations += [Observation("C", c, 4.0, quality=quality(c)) for c in batch]
    assert np.mean(batches[-3:]) > np.mean(batches[:2]) + 0.3  # it learns
    assert min(min(b) for b in batches[-3:]) > 0.9  # and stays at the clean setting


def test_condition_planner_is_not_moved_by_float_noise_in_a_quality():
    # the example campaign's first batch (examples/campaign.yaml, seed 7): before the quality was told rounded,
    # its last quality one millionth higher moved the next batch's 3rd and 4th scan rates (0.324, 0.280 ->
    # 0.257, 0.309 V/s): two runs whose qualities differed at the sixth digit chose different conditions
    space = ConditionSpace({"scan_rate_v_s": (0.02, 0.5)})
    measured = [(0.4081221690307608, 0.8891686144972575), (0.22251244551507512, 0.9507633319338065),
                (0.08761845432910767, 0.89477146805977), (0.03771284916554083, 0.879467708396008)]

    def batch(nudge: float) -> list[dict]:
        observations = [Observation("C", {"scan_rate_v_s": rate}, 4.0, quality=q + (nudge if k == 3 else 0.0))
                        for k, (rate, q) in enumerate(measured)]
        return space.propose(observations, 4, seed=7, step=1)

    assert batch(0.0) == batch(1e-6) == batch(-1e-6)


def test_condition_planner_is_told_the_newest_observations_only():
    """Its Gaussian process was refitted on every observation at every proposal: 28 s at 2,000 experiments (a
    long-campaign trial). Told the newest MAX_TOLD, it proposes as if the older ones were not there."""
    from labloop.planners.conditions import MAX_TOLD

    space = ConditionSpace({"scan_rate_v_s": (0.02, 0.5)})
    rng = np.random.default_rng(5)
    observations = [Observation("C", {"scan_rate_v_s": float(rate)}, 4.0, quality=float(q))
                    for rate, q in zip(rng.uniform(0.02, 0.5, MAX_TOLD + 40), rng.uniform(0, 1, MAX_TOLD + 40),
                                       strict=True)]
    newest = space.propose(observations[-MAX_TOLD:], 2, seed=1, step=9)
    assert space.propose(observations, 2, seed=1, step=9) == newest
    assert space.propose(observations[-MAX_TOLD + 1:], 2, seed=1, step=9) != newest  # one fewer: another fit


# -- feedback calibration ----------------------------------------------------------------------------

def test_cheap_descriptors():
    assert cheap_descriptors("c1ccncc1") == (6, 1, 1, 0, 0, 0)  # heavy atoms, rings, N, O, S, halogens
    assert cheap_descriptors("OC1CCC(Cl)C1c1ccsc1") == (12, 2, 0, 1, 1, 1)
    assert cheap_descriptors("[2H]C([2H])([2H])I") == (2, 0, 0, 0, 0, 1)  # deuterium is no heavy atom
    assert cheap_descriptors("[Na+].[Cl-].O=S(=O)(N)c1ccccc1") == (12, 1, 1, 2, 1, 1)
    assert all(math.isnan(x) for x in cheap_descriptors("not a smiles"))


def _group_world(smiles: list[str], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(surrogate mu, sigma, measured): measured = mu - 1.5 V + a shift per functional group + noise, a form
    no descriptor of the calibration names."""
    from rdkit import Chem

    from labloop.sim.truth import GroupShifts

    groups = GroupShifts()
    shift = np.array([groups.shift_v(Chem.MolFromSmiles(s)) for s in smiles])
    mu = rng.normal(4.5, 0.6, len(smiles))
    measured = mu - 1.5 + shift + rng.normal(0, 0.05, len(smiles))
    return mu, np.full(len(smiles), 0.05), measured


def test_calibration_learns_an_error_of_unknown_form_and_its_error_falls_with_measurements(ocelot):
    smiles = list(ocelot.smiles[:400])
    rng = np.random.default_rng(0)
    mu, sigma, measured = _group_world(smiles, rng)
    table = DescriptorTable()
    test = slice(200, 400)
    errors, learners = {}, {}
    for n in (1, 5, 50, 200):
        calibration = fit_calibration(smiles[:n], mu[:n], sigma[:n], measured[:n], table)
        m, s = calibration.apply(mu[test], sigma[test], smiles[test], table)
        errors[n] = float(np.mean(np.abs(m - measured[test])))
        learners[n] = calibration.fit.learner
        coverage = float(np.mean(np.abs(m - measured[test]) <= 1.96 * s))
        assert coverage > (0.8 if n >= 50 else 0.6), (n, coverage)  # few points: the noise fit is rough
    raw = float(np.mean(np.abs(mu[test] - measured[test])))
    assert errors[1] < raw / 3  # one measurement already pins the offset
    assert errors[1] > errors[50] > errors[200]
    assert learners[200] == "gp"  # the shifts follow substructures: the Tanimoto kernel sees them
    offset_only = fit_calibration(smiles[:200], mu[:200], sigma[:200], measured[:200], table)
    assert offset_only.scores["gp"] > offset_only.scores["offset"]


def test_calibrated_model_is_the_model_with_the_offsets_prior_before_any_measurement():
    table = {s: (4.0, 0.1) for s in OTHERS}
    view = CalibratedModel(TableModel(table, version=3), [], DescriptorTable())
    assert view.version == 3 and view.calibration.n == 0
    mu, sigma = view.predict(OTHERS)
    assert list(mu) == [4.0] * 5 and sigma == pytest.approx([math.hypot(0.1, OFFSET_PRIOR_V)] * 5)
    # jointly: the unknown offset is common to all of them, the surrogate's own errors independent
    mean, latent, added = view.posterior(OTHERS[:2])
    assert list(mean) == [4.0, 4.0]
    assert latent == pytest.approx(np.full((2, 2), OFFSET_PRIOR_V**2)) and added == pytest.approx([0.01, 0.01])
    descriptors = DescriptorTable()(OTHERS[:2])
    _, shard_sigma = view.calibration.by_descriptors().apply([4.0] * 2, [0.1] * 2, descriptors)
    assert shard_sigma == pytest.approx(sigma[:2])  # the shard planner's first stage says the same
    after = CalibratedModel(TableModel(table), [Observation(OTHERS[0], {}, 3.0)], DescriptorTable())
    mu, sigma = after.predict(OTHERS)
    assert after.calibration.n == 1 and mu[0] == pytest.approx(3.0, abs=0.05) and sigma[0] > 0.1
