"""The residual learners against closed forms: the Gaussian-process posterior with a kernel matrix built by
hand, the marginal likelihood against scipy's multivariate normal, leave-one-out against brute-force refits,
the cached Tanimoto rows against RDKit, the learner's purity (a function of the observations only) and the
Thompson batch."""

from __future__ import annotations

import math

import numpy as np
import pytest
from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator
from scipy.stats import multivariate_normal, truncnorm

from labloop.planners import ConditionSpace, Observation, PlannerState, PoolPlanner
from labloop.planners.batch import thompson_batch
from labloop.planners.feedback import CalibratedModel, DescriptorTable, fit_calibration
from labloop.planners.residual_gp import (
    DESCRIPTORS,
    OFFSET_PRIOR_V,
    Censored,
    Hyper,
    TanimotoRows,
    _grams,
    _log_marginal_likelihood,
    fit_learner,
    hyper_prefix,
    loo,
)

MOLECULES = ["c1ccccc1", "Cc1ccccc1", "CCc1ccccc1", "c1ccncc1", "Oc1ccccc1", "CC(=O)c1ccccc1", "c1ccc2ccccc2c1",
             "Clc1ccccc1", "c1ccsc1", "CCN(CC)CC"]
# every term on at once (no learner has them all: the kernel's formula is what is checked)
HYPER = Hyper(weight_sd=0.07, size_amplitude=0.15, size_length=0.8, group_sd=0.04, amplitude=0.3, length=0.4,
              surrogate_share=0.8, noise=0.05)


def rdkit_tanimoto(a: list[str], b: list[str]) -> np.ndarray:
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    fa = [generator.GetFingerprint(Chem.MolFromSmiles(s)) for s in a]
    fb = [generator.GetFingerprint(Chem.MolFromSmiles(s)) for s in b]
    return np.array([[DataStructs.TanimotoSimilarity(x, y) for y in fb] for x in fa])


def kernel_by_hand(h: Hyper, da: np.ndarray, db: np.ndarray, t: np.ndarray) -> np.ndarray:
    """offset + weight_sd^2 (descriptors . descriptors) + the size function's squared exponential in the scaled
    heavy atoms + group_sd^2 (shared environments) + Tanimoto part."""
    n = len(DESCRIPTORS)
    out = np.empty((len(da), len(db)))
    for i in range(len(da)):
        for j in range(len(db)):
            shared = int(np.sum(np.logical_and(da[i, n:], db[j, n:])))
            size = h.size_amplitude**2 * math.exp(-((da[i, 0] - db[j, 0]) ** 2) / (2 * h.size_length**2))
            out[i, j] = (OFFSET_PRIOR_V**2 + h.weight_sd**2 * float(np.dot(da[i, :n], db[j, :n])) + size
                         + h.group_sd**2 * shared + h.amplitude**2 * math.exp((t[i, j] - 1) / h.length))
    return out


def log_marginal_likelihood(h: Hyper, r: np.ndarray, d: np.ndarray, t: np.ndarray, sigma: np.ndarray) -> float:
    """log p(r | hyperparameters) as the hyperparameter fit computes it (no hyperprior)."""
    return _log_marginal_likelihood(h, r, _grams(d, d, t), sigma)


def problem(n: int = 8, seed: int = 0):
    table = DescriptorTable()
    smiles = MOLECULES[:n]
    rng = np.random.default_rng(seed)
    return table, smiles, table.features(smiles), rng.normal(-1.0, 0.3, n), rng.uniform(0.05, 0.2, n)


def test_tanimoto_rows_match_rdkit_and_survive_a_growing_universe():
    rows = TanimotoRows()
    first = rows.matrix(MOLECULES[:4], MOLECULES[:3])
    assert first == pytest.approx(rdkit_tanimoto(MOLECULES[:4], MOLECULES[:3]), abs=1e-6)
    queries = [*MOLECULES, "not a smiles"]
    grown = rows.matrix(queries, MOLECULES[1:5])  # new queries after the rows were cached
    assert grown[:-1] == pytest.approx(rdkit_tanimoto(MOLECULES, MOLECULES[1:5]), abs=1e-6)
    assert (grown[-1] == 0).all()  # unreadable: similar to nothing
    assert rows.among(queries)[:-1, :-1] == pytest.approx(rdkit_tanimoto(MOLECULES, MOLECULES), abs=1e-6)


def test_one_measurement_offset_posterior_by_hand():
    """One residual r, offset learner: mean = s_b^2 / (s_b^2 + v) r, variance = s_b^2 v / (s_b^2 + v)."""
    table, smiles, d, r, sigma = problem(1)
    h = Hyper(surrogate_share=0.5, noise=0.1)
    fit = fit_learner("offset", r, d, np.ones((1, 1)), sigma, smiles, h)
    v = 0.5 * sigma[0] ** 2 + 0.1**2
    mean, var = fit.predict(table.features(["CCCC"]), np.zeros((1, 1)))
    assert mean[0] == pytest.approx(OFFSET_PRIOR_V**2 / (OFFSET_PRIOR_V**2 + v) * r[0], rel=1e-6)
    assert var[0] == pytest.approx(OFFSET_PRIOR_V**2 * v / (OFFSET_PRIOR_V**2 + v), rel=1e-4)


def test_gp_posterior_matches_the_closed_form_with_a_hand_built_kernel():
    table, smiles, d, r, sigma = problem()
    t = rdkit_tanimoto(smiles, smiles)
    fit = fit_learner("gp", r, d, t, sigma, smiles, HYPER)
    queries = MOLECULES[8:] + smiles[:1]
    dq, tq = table.features(queries), rdkit_tanimoto(queries, smiles)
    K = kernel_by_hand(HYPER, d, d, t) + np.diag(HYPER.surrogate_share * sigma**2 + HYPER.noise**2)
    Ks = kernel_by_hand(HYPER, dq, d, tq)
    Kss = kernel_by_hand(HYPER, dq, dq, rdkit_tanimoto(queries, queries))
    mean, var = fit.predict(dq, tq)
    assert mean == pytest.approx(Ks @ np.linalg.solve(K, r), abs=1e-8)
    assert var == pytest.approx(np.diag(Kss - Ks @ np.linalg.solve(K, Ks.T)), abs=1e-8)
    joint_mean, joint_cov = fit.joint(dq, tq, rdkit_tanimoto(queries, queries))
    assert joint_mean == pytest.approx(mean, abs=1e-10) and np.diag(joint_cov) == pytest.approx(var, abs=1e-8)
    assert log_marginal_likelihood(HYPER, r, d, t, sigma) == pytest.approx(
        multivariate_normal(np.zeros(len(r)), K).logpdf(r), abs=1e-6)


def test_leave_one_out_equals_brute_force_refits():
    _table, smiles, d, r, sigma = problem()
    t = rdkit_tanimoto(smiles, smiles)
    mean, var = loo(HYPER, r, d, t, sigma)
    for i in range(len(r)):
        rest = [j for j in range(len(r)) if j != i]
        fit = fit_learner("gp", r[rest], d[rest], t[np.ix_(rest, rest)], sigma[rest], [smiles[j] for j in rest],
                          HYPER)
        m, v = fit.predict(d[i:i + 1], t[i:i + 1, rest])
        assert mean[i] == pytest.approx(m[0], abs=1e-7)
        assert var[i] == pytest.approx(v[0] + HYPER.surrogate_share * sigma[i] ** 2 + HYPER.noise**2, abs=1e-7)
    full = fit_learner("gp", r, d, t, sigma, smiles, HYPER)
    by_hand = sum(-0.5 * math.log(2 * math.pi * var[i]) - (r[i] - mean[i]) ** 2 / (2 * var[i]) for i in range(len(r)))
    assert full.loo_log_likelihood == pytest.approx(by_hand, rel=1e-9)


def truncated_latent(m: float, v: float, noise: float, bound: float, side: int) -> tuple[float, float]:
    """Mean and variance of a latent residual f ~ N(m, v), measured as y = f + N(0, noise), given only that
    y lies on ``side`` of ``bound``: y's truncated normal (scipy), carried to f by f | y's linear regression."""
    s = math.sqrt(v + noise)
    a, b = ((bound - m) / s, np.inf) if side > 0 else (-np.inf, (bound - m) / s)
    ey, vy = truncnorm.stats(a, b, loc=m, scale=s, moments="mv")
    gain = v / (v + noise)
    return m + gain * (float(ey) - m), v - gain * v + gain**2 * float(vy)


@pytest.mark.parametrize(("bound", "side"), [(0.4, 1), (-1.6, -1), (-2.0, 1)])
def test_a_failed_scans_bound_gives_the_truncated_posterior(bound, side):
    """One bound beside measured residuals: expectation propagation is exact for a single bound, so the
    posterior at the bounded molecule is the measured ones' prediction cut at the bound, by hand; the
    measured residuals' leave-one-out scores are still theirs alone (a bound has no density)."""
    _table, smiles, d, r, sigma = problem(3)
    t = rdkit_tanimoto(smiles, smiles)
    measured = fit_learner("gp", r[:2], d[:2], t[:2, :2], sigma[:2], smiles[:2], HYPER)
    m, v = measured.predict(d[2:], t[2:, :2])
    censored = Censored([smiles[2]], np.array([bound]), np.array([side]), d[2:], sigma[2:], t[2:, :])
    fit = fit_learner("gp", r[:2], d[:2], t[:2, :2], sigma[:2], smiles[:2], HYPER, censored)
    assert fit.bounds == 1 and fit.smiles == smiles
    mean, var = fit.predict(d[2:], t[2:, :])
    expected = truncated_latent(m[0], v[0], float(measured.noise_var(sigma[2:])[0]), bound, side)
    assert (mean[0], var[0]) == (pytest.approx(expected[0], abs=1e-6), pytest.approx(expected[1], rel=1e-4))
    if bound != -2.0:  # a bound the prediction lies far inside moves nothing; one across it, a lot
        assert side * (mean[0] - m[0]) > 0.3
    assert np.isfinite(fit.loo_log_likelihood) and fit.loo_rmse_v > 0


def test_bounds_alone_move_the_offset_and_two_bounds_meet_between():
    """Nothing measured: the common offset's prior (N(0, OFFSET_PRIOR_V^2)) cut by the bound, by hand; a second
    bound from the other side leaves the residual between the two (expectation propagation, several sweeps)."""
    _table, smiles, d, _r, sigma = problem(2)
    t = rdkit_tanimoto(smiles, smiles)
    h = Hyper(surrogate_share=0.5, noise=0.1)
    empty = (np.zeros(0), np.zeros((0, d.shape[1])), np.zeros((0, 0)), np.zeros(0), [])
    one = Censored(smiles[:1], np.array([0.3]), np.array([1]), d[:1], sigma[:1], t[:1, :1])
    fit = fit_learner("offset", *empty, h, one)
    mean, var = fit.predict(d[:1], t[:1, :1])
    assert (mean[0], var[0]) == pytest.approx(
        truncated_latent(0.0, OFFSET_PRIOR_V**2, 0.5 * sigma[0] ** 2 + 0.1**2, 0.3, 1), rel=1e-4)
    # a bound the prior lies far inside leaves it as it was (kept, saying nothing: there is no other fit)
    idle = Censored(smiles[:1], np.array([-100.0]), np.array([1]), d[:1], sigma[:1], t[:1, :1])
    mean, var = fit_learner("offset", *empty, h, idle).predict(d[:1], t[:1, :1])
    assert (mean[0], var[0]) == pytest.approx((0.0, OFFSET_PRIOR_V**2), abs=1e-9)
    both = Censored(smiles, np.array([0.3, 0.6]), np.array([1, -1]), d, sigma, t)
    mean, var = fit_learner("offset", *empty, h, both).predict(d, t)
    assert np.all((mean > 0.3) & (mean < 0.6)) and np.all(np.sqrt(var) < 0.2)


def test_a_bound_reaches_the_calibrated_prediction_and_stays_pure(ocelot):
    """A failed scan whose wave lay beyond the vertex (above_v) lifts the calibrated prediction of its molecule
    towards the bound from where measurements alone put it (the latent residual takes the share of the surprise
    its variance has against the noise's); journal order in, the same calibration out."""
    smiles, model, obs = _observations(ocelot, 12)
    target = smiles[20]
    alone = CalibratedModel(model, obs, DescriptorTable())
    before = float(alone.predict([target])[0][0])
    failed = Observation(target, {}, None, failure="analysis", above_v=before + 0.6)
    with_bound = CalibratedModel(model, [*obs, failed], DescriptorTable())
    after = float(with_bound.predict([target])[0][0])
    assert before + 0.2 < after < before + 0.6
    assert with_bound.calibration.summary()["n_bounds"] == 1 and with_bound.calibration.n == 12
    again = CalibratedModel(model, [*obs, failed], DescriptorTable())
    assert again.calibration.summary() == with_bound.calibration.summary()
    # an instrument's failure, or a bound that contradicts itself, teaches nothing about the molecule
    rig = Observation(target, {}, None, failure="instrument", above_v=before + 0.6)
    both = Observation(target, {}, None, failure="analysis", above_v=before + 0.6, below_v=before - 0.6)
    for ignored in (rig, both):
        view = CalibratedModel(model, [*obs, ignored], DescriptorTable())
        assert view.calibration.summary() == alone.calibration.summary()


def test_hyper_prefix():
    # 24, then int(x * 1.25): 30, 37, 46, 57, 71, 88, 110, 137, 171, 213
    assert [hyper_prefix(n) for n in (1, 24, 25, 29, 30, 36, 37, 38, 200)] == [1, 24, 24, 24, 30, 30, 37, 37, 171]
    # 24 * 1.25^k, rounded down at each step: ..., 213, 266, 332, 415; at most 400 measurements (a fit on all of
    # 2,000 took 3 minutes; a long-campaign trial), so 332 from there on
    assert [hyper_prefix(n) for n in (331, 332, 414, 415, 2000, 10**5)] == [266, 332, 332, 332, 332, 332]


class Table:
    def __init__(self, table: dict[str, tuple[float, float]], version: int = 1) -> None:
        self.table, self.version = table, version

    def predict(self, smiles):
        return [self.table[s][0] for s in smiles], [self.table[s][1] for s in smiles]


def _observations(ocelot, n: int) -> tuple[list[str], Table, list[Observation]]:
    smiles = list(ocelot.smiles[:n + 40])
    rng = np.random.default_rng(3)
    model = Table({s: (float(rng.normal(4.5, 0.4)), 0.1) for s in smiles})
    shift = DescriptorTable()(smiles)[:, 0] * 0.02  # a size trend the linear mean can see
    obs = [Observation(s, {}, model.table[s][0] - 1.2 + shift[k] + float(rng.normal(0, 0.05)))
           for k, s in enumerate(smiles[:n])]
    return smiles, model, obs


def test_the_learner_is_a_pure_function_of_the_observations(ocelot):
    """A resumed campaign's fresh tables give exactly the calibration of a table that has served earlier
    fits (the memoised hyperparameters and cached rows change nothing)."""
    smiles, model, obs = _observations(ocelot, 40)
    used = DescriptorTable()
    for n in (10, 25, 33):
        CalibratedModel(model, obs[:n], used).predict(smiles)
    warm = CalibratedModel(model, obs, used)
    cold = CalibratedModel(model, obs, DescriptorTable())
    assert warm.calibration.summary() == cold.calibration.summary()
    assert np.array_equal(np.array(warm.predict(smiles)), np.array(cold.predict(smiles)))
    summary = cold.calibration.summary()
    assert set(summary["loo_log_likelihood"]) == {"offset", "linear", "additive", "gp"}
    assert summary["learner"] == max(summary["loo_log_likelihood"], key=summary["loo_log_likelihood"].get)
    assert summary["loo_rmse_v"] > 0
    # what it applies to the 40 molecules it never measured is the world's -1.2 V + 0.02 V per heavy atom
    shift = np.array(cold.predict(smiles[40:])[0]) - np.array(model.predict(smiles[40:])[0])
    world = -1.2 + 0.02 * DescriptorTable()(smiles[40:])[:, 0]
    assert np.mean(np.abs(shift - world)) < 0.05


def test_fit_calibration_skips_unreadable_rows():
    table = DescriptorTable()
    calibration = fit_calibration(["c1ccccc1", "nonsense", "Cc1ccccc1"], np.array([4.0, 4.0, np.nan]),
                                  np.array([0.1, 0.1, 0.1]), np.array([3.0, 3.0, 3.0]), table)
    assert calibration.n == 1 and calibration.fit is not None and calibration.fit.learner == "offset"


class Joint:
    """A joint posterior set by hand: mean, latent covariance and measurement variance per molecule."""

    def __init__(self, smiles: list[str], mean: np.ndarray, cov: np.ndarray, noise: np.ndarray) -> None:
        self.index = {s: k for k, s in enumerate(smiles)}
        self.mean, self.cov, self.noise = mean, cov, noise

    def posterior(self, smiles):
        rows = [self.index[s] for s in smiles]
        return self.mean[rows], self.cov[np.ix_(rows, rows)], self.noise[rows]


def test_thompson_batch_is_the_top_when_sure_and_hedges_correlated_bets():
    pool = [f"m{k}" for k in range(6)]
    score = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    mean = np.full(6, 4.55)
    noise = np.array([0.01, 0.02, 0.03, 0.04, 0.05, 0.06])  # P(window) falls in pool order
    sure = Joint(pool, mean, np.zeros((6, 6)), noise)
    args = dict(goal="window", window_v=(4.5, 4.6), keep=np.ones(6), seed=1, step=2, admissible=lambda i: True)
    assert thompson_batch(sure, pool, score, 3, **args) == [0, 1, 2]
    # m0-m2 share one uncertain error (correlation 1), m3-m5 have independent ones: the top of the list
    # would bet both places on the shared error; the draws do so only when it lands in the window twice
    # (P(|e| < 0.05) ~ 0.2 per draw, so ~4% of batches)
    cov = np.zeros((6, 6))
    cov[:3, :3] = 0.2**2
    for k in (3, 4, 5):
        cov[k, k] = 0.2**2
    unsure = Joint(pool, mean, cov, noise)
    batches = [thompson_batch(unsure, pool, score, 2, **{**args, "step": step}) for step in range(40)]
    assert sum({0, 1, 2} >= set(b) for b in batches) <= 10
    assert thompson_batch(unsure, pool, score, 2, **args) == thompson_batch(unsure, pool, score, 2, **args)
    assert len({tuple(b) for b in batches}) > 1  # the draws differ from step to step


def test_bayes_planner_uses_thompson_draws_and_is_reproducible(ocelot):
    smiles, model, obs = _observations(ocelot, 30)
    library = smiles
    planner = PoolPlanner("bayes", library, ConditionSpace({"scan_rate_v_s": (0.02, 0.5)}), goal="window",
                          acquisition="window_probability", window_v=(3.3, 3.4), batch="thompson")
    state = PlannerState("bayes", 5, 7, observations=tuple(obs))
    a = planner.propose(state, 4, CalibratedModel(model, obs, planner.descriptors))
    b = planner.propose(state, 4, CalibratedModel(model, obs, DescriptorTable()))
    assert [p.smiles for p in a] == [p.smiles for p in b] and len(a) == 4
    assert not {p.smiles for p in a} & {o.smiles for o in obs}



@pytest.mark.parametrize("learner", ["offset", "linear", "additive", "gp"])
def test_the_descriptor_part_of_a_calibration(learner):
    """The shard planner's stage 1 (:class:`DescriptorCalibration`): for the offset and linear learners it is
    the calibration itself (the size function included, through its table by heavy atoms); for the others
    its mean is the full posterior's offset + linear + size part (the same fit with the group and GP kernels
    taken out of the queries' covariances), and its variance that part's posterior variance plus the group
    and GP terms' prior variance."""
    from dataclasses import replace

    from labloop.planners.feedback import ENVIRONMENTS_PER_HEAVY_ATOM, Calibration

    table, smiles, d, r, sigma = problem(10, seed=2)
    fit = fit_learner(learner, r, d, table.tanimoto(smiles, smiles), sigma, smiles,
                      HYPER if learner == "gp" else None)
    calibration = Calibration(len(r), fit)
    queries = ["CCCc1ccccc1", "Brc1ccccc1", "c1ccc(-c2ccccc2)cc1", "NCCO"]
    mu, s = np.array([3.1, 3.4, 2.9, 4.0]), np.array([0.1, 0.2, 0.15, 0.3])
    mean, sd = calibration.by_descriptors().apply(mu, s, table(queries))
    if learner != "offset":  # the size table is exercised: without the size function the mean would move
        flat = Calibration(len(r), replace(fit, hyper=replace(fit.hyper, size_amplitude=0.0)))
        assert np.max(np.abs(flat.by_descriptors().apply(mu, s, table(queries))[0] - mean)) > 1e-3
    if learner in ("offset", "linear"):
        np.testing.assert_allclose((mean, sd), calibration.apply(mu, s, queries, table), rtol=1e-9, atol=1e-12)
        return
    h = fit.hyper
    assert h.group_sd > 0
    linear_part = replace(fit, hyper=replace(h, group_sd=0.0, amplitude=0.0))  # same training factor and alpha
    shift, var = linear_part.predict(table.features(queries), np.zeros((len(queries), len(smiles))))
    heavy = table(queries)[:, list(DESCRIPTORS).index("heavy_atoms")]
    np.testing.assert_allclose(mean, mu + shift, rtol=0, atol=1e-12)
    np.testing.assert_allclose(sd**2, var + h.group_sd**2 * ENVIRONMENTS_PER_HEAVY_ATOM * heavy + h.amplitude**2
                               + fit.noise_var(s), rtol=1e-9)
