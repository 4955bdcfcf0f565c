"""Closed-loop benchmark: how many molecules in the window each planner finds in 100 experiments; prints JSON.

The worlds (``--worlds``, ``sim/world.py``; settings fixed here before the reported runs): ``born`` (the
Born/ACN truth), ``groups`` (Born plus the default SMARTS shifts of ``sim/truth.py``), ``smooth`` (Born plus
a Gaussian-process draw of amplitude :data:`SMOOTH_AMPLITUDE_V`, length :data:`SMOOTH_LENGTH`, a new draw
per seed) and ``drift`` (``groups`` plus a reference walk of :data:`WALK_STEP_V` per measurement). Besides
the campaign planners: ``oracle`` (``bayes``'s window probability with the surrogate's prediction plus the
world's systematic part, exactly, and the surrogate's own sigma: what a planner that knew the world's form
would find) and ``legacy`` (``bayes`` with the calibration labloop had before its residual learners, 9a22409: a
Bayesian ridge of the residual on the Born term n_heavy^-1/3 and the heteroatom fraction, copied below); and, for the
``smooth`` world only, ``smooth-bound`` (:class:`SmoothBound`: what a learner of that world told its Born
term and its field's exact prior knows), and for ``groups`` and ``drift`` only, ``groups-bound``
(:class:`GroupsBound`: told the Born term and which SMARTS patterns shift, learning only by how much; in
``drift`` it is not told the walk); and ``bayes-wider`` (``bayes`` with its calibrated sd times ``--sd-factor``,
after the first batch: whether the sd's being too small at proposal time costs hits; bench/RESULTS.md, "A wider sd");
diagnostics built on the simulator's formula, never labloop learners. Seeds: ``--seed-start``
(tune on 1000+, report 0-19). The bundled molecules are split
once (seed :data:`SPLIT_SEED`) into library slices of 5,000 molecules whose potentials only the world knows
(``--library a``, or ``b``: other molecules) and a prior of the rest, on which the `fast` surrogate is
trained once per slice (IE/EA, 5 folds) and cached. Every campaign runs through the engine of `labloop
backtest` (``orchestrator/backtest.py``: the runner's planners and calibration, simulated CVs, its
summary with each planner's fraction of ``oracle``). The
objective is the oxidation potential in [4.5, 4.6] V vs Li/Li+ (``--window``: another, e.g. 5.0-5.1 V against the
scan's reach of 5.10 V, where most proposals fail beyond the vertex and the failures' bounds teach). Each planner
(`bayes`, `greedy`, `screening`, `random`) runs 5 seeds of 100 experiments in batches of 4, with the planners and
the feedback calibration exactly as a campaign uses them (``planners/``); each experiment is a cyclic voltammogram
simulated by ``sim/cv_physics.py`` for the world's couple at the proposed scan rate, over the example
protocol's fixed window, and analysed by ``instruments/cv_analysis.py`` — so failures (no peak inside the
window, and the bounds a wave beyond the vertex gives) and measurement quality come from the same physics as a
dry run. What it leaves out, to keep 20
campaigns within minutes: the serial emulators (their bytes are tested elsewhere) and the periodic FCNN
retraining (minutes per round; the per-measurement calibration is what learns here).

Reported: hits (measured E1/2 inside the window) per planner, mean/std/min/max over seeds, mean hits after
every 10 experiments, the proposal latency, and the latency of one `bayes` proposal over a 100,000-molecule
library with the model's predictions cached. ``--plot FILE`` draws hits against experiment number.

Usage: python bench/campaign.py [--library a|b] [--seeds 5] [--seed-start 0] [--experiments 100] [--batch 4]
       [--planners bayes,greedy,...] [--worlds born,groups,smooth,drift] [--model-dir DIR]
       [--plot bench/campaign_hits.png] [--big 100000] [--parts campaigns,big] [--sd-factor 1.15]
Never asserts a result; bench/RESULTS.md records the numbers.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from labloop.core.seeds import stable_rng
from labloop.data import bundled_path
from labloop.surrogate.dataset import MoleculeTable, read_table

log = logging.getLogger("bench.campaign")

SPLIT_SEED = 20261123
LIBRARY_SIZE = 5000
PRIOR_SEED = 7
TARGETS = ("ie_ev", "ea_ev")
WINDOW_V = (4.5, 4.6)


def split_world(which: str = "a") -> tuple[MoleculeTable, MoleculeTable]:
    """(prior, library): the bundled data split once (seed :data:`SPLIT_SEED`); library ``a`` is the first
    :data:`LIBRARY_SIZE` molecules of the permutation, ``b`` the next ones (other molecules), and the prior is
    every molecule but the library's, whose labels are for the world only."""
    table = read_table(bundled_path(), TARGETS)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(table.smiles))
    first = {"a": 0, "b": LIBRARY_SIZE}[which]
    chosen = order[first:first + LIBRARY_SIZE]
    lib, pri = np.sort(chosen), np.sort(np.setdiff1d(order, chosen))
    def take(rows: np.ndarray) -> MoleculeTable:
        return MoleculeTable(table.path, [table.smiles[i] for i in rows], list(table.targets), table.Y[rows])
    return take(pri), take(lib)


def prior_ensemble(model_dir: Path, prior: MoleculeTable):
    """The `fast` 5-fold surrogate trained on the prior, loaded from ``model_dir`` or trained into it."""
    from labloop.core.errors import ModelLoadError
    from labloop.surrogate.persistence import load_ensemble, save_ensemble
    from labloop.surrogate.presets import get_preset
    from labloop.surrogate.training import train_from_table

    try:
        return load_ensemble(model_dir), None
    except ModelLoadError:
        pass
    t0 = time.perf_counter()
    run = train_from_table(prior, get_preset("fast"), folds=5, seed=PRIOR_SEED)
    save_ensemble(run.ensemble, model_dir)
    return run.ensemble, time.perf_counter() - t0


#: settings of the simulated worlds (fixed before the reported runs)
SMOOTH_AMPLITUDE_V = 0.2
SMOOTH_LENGTH = 0.5
WALK_STEP_V = 0.005
#: prior sd (V) of each shift the ``groups-bound`` diagnostic learns (the default shifts are 0.15-0.3 V)
GROUP_SHIFT_PRIOR_V = 0.3
WORLDS = ("born", "groups", "smooth", "drift")


def world_of(prior: MoleculeTable, library: MoleculeTable, seed: int, kind: str = "born"):
    """The simulated world of one run: truth ``kind`` from IE/EA in acetonitrile, 10 mV noise per measurement."""
    from labloop.orchestrator.backtest import EXAMPLE_SCAN  # the example protocol's cell
    from labloop.sim.truth import GroupShifts, ReferenceWalk, SmoothField
    from labloop.sim.world import TruthTable, World

    values = {s: (float(ie), float(ea)) for t in (prior, library) for s, (ie, ea) in zip(t.smiles, t.Y, strict=True)}
    return World(TruthTable(values), source="ie_ea", quantity="oxidation_potential", solvent="acn", noise_v=0.01,
                 reference_offset_v=EXAMPLE_SCAN.reference_offset_v, seed=seed,
                 groups=GroupShifts() if kind in ("groups", "drift") else None,
                 smooth=SmoothField(seed, SMOOTH_AMPLITUDE_V, SMOOTH_LENGTH) if kind == "smooth" else None,
                 walk=ReferenceWalk(seed, WALK_STEP_V) if kind == "drift" else None)


class OracleModel:
    """The surrogate's prediction plus the world's systematic part, exactly; the surrogate's own sigma."""

    def __init__(self, model, world) -> None:
        self.model, self.world, self.version = model, world, model.version

    def predict(self, smiles):
        mu, sigma = self.model.predict(smiles)
        return [m + self.world.systematic_v(s) for m, s in zip(mu, smiles, strict=True)], sigma


class WiderModel:
    """A calibrated model whose sd is ``factor`` times its own once it has a calibration (``bayes-wider``)."""

    def __init__(self, calibrated, factor: float) -> None:
        self.calibrated, self.factor, self.version = calibrated, factor, calibrated.version

    def predict(self, smiles):
        mu, sigma = self.calibrated.predict(smiles)
        return mu, sigma * self.factor if self.calibrated.calibration.fit is not None else sigma


class _BornKnown:
    """What the diagnostic bounds share: the surrogate's prediction plus the world's Born term exactly, per
    library molecule (``prior_mean``); the error they take as independent of everything they learn, per
    molecule (``error_var``: the surrogate's sigma^2 plus the world's per-molecule residual variance) and per
    measurement (``noise_var``); and :meth:`predict` from the ``mean``/``sd`` a subclass's ``view`` sets
    after each set of observations."""

    def __init__(self, model, world, library: list[str]) -> None:
        from rdkit import Chem

        from labloop.sim.world import RESIDUAL_SD_V, born_solvation_ev

        self.world, self.version = world, model.version
        self.index = {s: i for i, s in enumerate(library)}
        self.mols = [Chem.MolFromSmiles(s) for s in library]
        mu, self.sigma = (np.asarray(a, dtype=float) for a in model.predict(library))
        self.prior_mean = mu - np.array([born_solvation_ev(m.GetNumHeavyAtoms(), world.solvent) for m in self.mols])
        self.error_var = self.sigma**2 + RESIDUAL_SD_V**2
        self.noise_var = world.noise_v**2
        self.mean, self.sd = self.prior_mean, np.sqrt(self.error_var)

    def predict(self, smiles):
        at = [self.index[s] for s in smiles]
        return self.mean[at], self.sd[at]


class SmoothBound(_BornKnown):
    """A diagnostic for ``smooth`` worlds, never a labloop learner (it is built on the simulator's formula): the
    surrogate's prediction plus the world's Born term exactly, plus the exact Gaussian-process posterior of
    the world's smooth field from the measurements — the field's own kernel (Jaccard of unfolded Morgan
    environment sets, ``sim/truth.py``), amplitude and length — with the surrogate's error and the world's
    per-molecule residual as independent error. What a learner told that world's form and the field's prior
    knows after the same measurements (not a ceiling: it takes the network's own error as independent, and
    a learner can correct part of it), where the oracle is told every molecule's draw. One per campaign;
    :meth:`view` is the model to propose with after ``observations``."""

    def __init__(self, model, world, library: list[str]) -> None:
        from rdkit.Chem import rdFingerprintGenerator

        from labloop.sim.truth import SMOOTH_RADIUS

        super().__init__(model, world, library)
        generator = rdFingerprintGenerator.GetMorganGenerator(radius=SMOOTH_RADIUS)
        self.fps = [generator.GetSparseFingerprint(m) for m in self.mols]
        self.sd = np.sqrt(world.smooth.amplitude_v**2 + self.error_var)

    def view(self, observations) -> SmoothBound:
        from rdkit import DataStructs

        amplitude, length = self.world.smooth.amplitude_v, self.world.smooth.length
        measured = [o for o in observations if o.potential_v is not None]
        if not measured:
            return self
        at = np.array([self.index[o.smiles] for o in measured])
        similarity = np.array([DataStructs.BulkTanimotoSimilarity(self.fps[i], self.fps) for i in at])
        cross = amplitude**2 * np.exp((similarity - 1) / length)  # measured x library
        factor = np.linalg.cholesky(cross[:, at] + np.diag(self.error_var[at] + self.noise_var))
        residual = np.array([o.potential_v for o in measured]) - self.prior_mean[at]
        alpha = np.linalg.solve(factor.T, np.linalg.solve(factor, residual))
        v = np.linalg.solve(factor, cross)
        self.mean = self.prior_mean + cross.T @ alpha
        self.sd = np.sqrt(np.maximum(amplitude**2 - np.sum(v * v, axis=0), 0) + self.error_var)
        return self


class GroupsBound(_BornKnown):
    """A diagnostic for ``groups`` and ``drift`` worlds, never a labloop learner (it is built on the
    simulator's formula): the surrogate's prediction plus the world's Born term exactly, plus the shifts of
    the world's own SMARTS patterns (``sim/truth.py``), whose sizes it learns from the measurements by
    conjugate Bayesian linear regression (each shift ~ N(0, :data:`GROUP_SHIFT_PRIOR_V`^2), per measurement
    the surrogate's sigma^2 plus the world's residual and noise variances as independent error). What a
    learner told the world's form, not the shifts' sizes, knows after the same measurements (not a ceiling,
    as :class:`SmoothBound`); the oracle is told the sizes too. In ``drift`` it is told neither the random
    walk of the reference electrode nor its variance (nor is the oracle told the walk)."""

    def __init__(self, model, world, library: list[str]) -> None:
        from rdkit import Chem

        super().__init__(model, world, library)
        patterns = [Chem.MolFromSmarts(p) for p in world.groups.shifts]
        self.x = np.array([[m.HasSubstructMatch(p) for p in patterns] for m in self.mols], dtype=float)
        self.view([])

    def view(self, observations) -> GroupsBound:
        measured = [o for o in observations if o.potential_v is not None]
        at = np.array([self.index[o.smiles] for o in measured], dtype=int)
        x, weight = self.x[at], 1 / (self.error_var[at] + self.noise_var)
        residual = np.array([o.potential_v for o in measured]) - self.prior_mean[at]
        precision = np.eye(self.x.shape[1]) / GROUP_SHIFT_PRIOR_V**2 + (x * weight[:, None]).T @ x
        cov = np.linalg.inv(precision)
        shifts = cov @ (x.T @ (weight * residual))
        self.mean = self.prior_mean + self.x @ shifts
        self.sd = np.sqrt(self.error_var + np.sum((self.x @ cov) * self.x, axis=1))
        return self


class LegacyCalibratedModel:
    """The calibration before the residual learners (planners/feedback.py at 712eb97), verbatim in substance: a
    BayesianRidge of measured - mu on (n_heavy^-1/3 / 0.05, heteroatom fraction / 0.15), Gamma priors
    worth 4 pseudo-observations of scale 0.2 V; sigma^2 = sigma^2 + extra^2 + parameter variance."""

    def __init__(self, model, observations, table: dict) -> None:
        from sklearn.linear_model import BayesianRidge

        self.model, self.version, self.table = model, model.version, table
        measured = [o for o in observations if o.potential_v is not None]
        self.regression, self.extra_var = None, 0.0
        if not measured:
            return
        smiles = [o.smiles for o in measured]
        mu, sigma = (np.asarray(a, dtype=float) for a in model.predict(smiles))
        X, r = self._x(smiles), np.array([o.potential_v for o in measured]) - mu
        ok = np.isfinite(mu) & np.isfinite(X).all(axis=1)
        if not ok.any():
            return
        shape, rate = 2.0, 4.0 * 0.2**2 / 2
        self.regression = BayesianRidge(alpha_1=shape, alpha_2=rate, lambda_1=shape, lambda_2=rate)
        self.regression.fit(X[ok], r[ok])
        self.extra_var = max(1 / self.regression.alpha_ - float(np.mean(sigma[ok] ** 2)), 0.0)

    def _x(self, smiles) -> np.ndarray:
        from rdkit import Chem

        for s in smiles:
            if s not in self.table:
                mol = Chem.MolFromSmiles(s, sanitize=False)
                heavy = [a.GetAtomicNum() for a in mol.GetAtoms() if a.GetAtomicNum() > 1] if mol else []
                self.table[s] = ((len(heavy) ** (-1 / 3) / 0.05, sum(z != 6 for z in heavy) / len(heavy) / 0.15)
                                 if heavy else (np.nan, np.nan))
        return np.array([self.table[s] for s in smiles], dtype=float)

    def predict(self, smiles):
        mu, sigma = (np.asarray(a, dtype=float) for a in self.model.predict(smiles))
        if self.regression is None:
            return mu, sigma
        shift, std = self.regression.predict(np.nan_to_num(self._x(smiles)), return_std=True)
        param_var = np.maximum(std**2 - 1 / self.regression.alpha_, 0.0)
        return mu + shift, np.sqrt(sigma**2 + self.extra_var + param_var)


def make_planners(library: list[str], descriptors, window: tuple[float, float] = WINDOW_V) -> dict:
    from labloop.planners import ConditionSpace, PoolPlanner, RandomPlanner, ScreeningPlanner

    conditions = {"scan_rate_v_s": (0.02, 0.5)}
    similarity = descriptors.similarity  # one fingerprint table for every planner and run
    def pool(kind: str, acquisition: str, **options) -> PoolPlanner:
        return PoolPlanner(kind, library, ConditionSpace(conditions), goal="window", acquisition=acquisition,
                           window_v=window, similarity=similarity, descriptors=descriptors, **options)
    return {"bayes": pool("bayes", "window_probability"), "greedy": pool("greedy", "mean"),
            "bayes-thompson": pool("bayes", "window_probability", batch="thompson"),
            "bayes-wider": pool("bayes", "window_probability"),
            "oracle": pool("oracle", "window_probability", first_batch="acquisition"),
            "legacy": pool("legacy", "window_probability"),
            "smooth-bound": pool("smooth-bound", "window_probability"),
            "groups-bound": pool("groups-bound", "window_probability"),
            "screening": ScreeningPlanner(library, ConditionSpace(conditions), goal="window", window_v=window),
            "random": RandomPlanner(library, conditions)}


def run_campaign(name: str, planner, model, world_of_seed, *, seed: int, experiments: int, batch: int, descriptors,
                 legacy_table: dict, library: list[str], window: tuple[float, float] = WINDOW_V,
                 sd_factor: float = 1.0, past: int = 0):
    """One campaign through the backtest engine (``orchestrator/backtest.py``): CVs simulated for the world of
    ``seed``, scored by hits in the window; ``oracle``, ``legacy`` and the bounds replace the calibrated
    model. ``past``: that many library molecules, drawn by the seed, measured as the campaign's are (their
    usable potentials), given as the lab's measurements from before the campaign (``past_measurements``)."""
    from labloop.orchestrator import backtest as engine

    view_of = None
    if name == "oracle":
        oracle = OracleModel(model, world_of_seed(seed))
        view_of = lambda observations: oracle  # noqa: E731
    elif name == "bayes-wider":
        from labloop.planners.feedback import CalibratedModel

        view_of = lambda observations: WiderModel(CalibratedModel(model, observations, descriptors),  # noqa: E731
                                                  sd_factor)
    elif name == "legacy":
        view_of = lambda observations: LegacyCalibratedModel(model, observations, legacy_table)  # noqa: E731
    elif name == "smooth-bound":
        world = world_of_seed(seed)
        if world.smooth is None:
            raise SystemExit("the smooth-bound planner is for the smooth world only")
        view_of = SmoothBound(model, world, library).view
    elif name == "groups-bound":
        world = world_of_seed(seed)
        if world.groups is None:
            raise SystemExit("the groups-bound planner is for the groups and drift worlds only")
        view_of = GroupsBound(model, world, library).view

    def hits(observations) -> float:
        return float(sum(o.potential_v is not None and window[0] <= o.potential_v <= window[1]
                         for o in observations))

    measure = engine.cv_measure(world_of_seed)
    drawn = stable_rng(seed, "past").choice(len(library), size=past, replace=False) if past else []
    before = [o for o in (measure(library[i], {}, seed, -1 - k) for k, i in enumerate(drawn))
              if o.potential_v is not None]
    return engine.run_campaign(planner, model, measure, seed=seed, budget=experiments, batch=batch,
                               descriptors=descriptors, score=hits, view_of=view_of, past=before)


def big_library_latency(ensemble, smiles: list[str], n: int) -> dict:
    """One `bayes` proposal over an ``n``-molecule library (distinct random SMILES spellings of the bundled
    molecules), after the model's predictions are cached; with 225 observations: 200 measured, 25 failures."""
    from rdkit import Chem
    from threadpoolctl import threadpool_limits

    from labloop.orchestrator.learning.models import ObjectiveModel
    from labloop.orchestrator.loop.runner import PLANNER_BLAS_THREADS
    from labloop.planners import ConditionSpace, Observation, PlannerState, PoolPlanner
    from labloop.planners.feedback import CalibratedModel, DescriptorTable

    rng = np.random.default_rng(0)
    spellings: set[str] = set()
    mols = [Chem.MolFromSmiles(s) for s in smiles]
    while len(spellings) < n:
        mol = mols[int(rng.integers(len(mols)))]
        spellings.add(Chem.MolToSmiles(mol, doRandom=True))
    library = sorted(spellings)
    model = ObjectiveModel(ensemble, 1, "oxidation_potential")
    t0 = time.perf_counter()
    model.predict(library)
    predict_s = time.perf_counter() - t0
    descriptors = DescriptorTable()
    planner = PoolPlanner("bayes", library, ConditionSpace({"scan_rate_v_s": (0.02, 0.5)}), goal="window",
                          acquisition="window_probability", window_v=WINDOW_V, descriptors=descriptors)
    measured = library[:225]
    observations = tuple(Observation(s, {"scan_rate_v_s": 0.1}, None if k % 9 == 0 else 4.0 + 0.005 * k,
                                     quality=0.0 if k % 9 == 0 else 0.8, failure="analysis" if k % 9 == 0 else None)
                         for k, s in enumerate(measured))
    times = []
    for step in range(3):  # the first also fingerprints and describes the library (once per campaign)
        t0 = time.perf_counter()
        with threadpool_limits(PLANNER_BLAS_THREADS):
            view = CalibratedModel(model, observations, descriptors)
            planner.propose(PlannerState("bayes", 0, step, observations=observations), 4, view)
        times.append(time.perf_counter() - t0)
    return {"library": n, "featurize_and_predict_s": round(predict_s, 1), "first_proposal_s": round(times[0], 2),
            "proposal_s": round(min(times[1:]), 3), "proposal_s_all": [round(t, 3) for t in times]}


def summarise(runs: dict, experiments: int) -> dict:
    """The backtest engine's summary per planner (``orchestrator/backtest.py``: mean, sd, se, per seed, at
    25/50/100%, failures, learners, latency; fraction of ``oracle`` when it ran) and the mean hits after
    every 10 experiments."""
    from labloop.orchestrator import backtest as engine

    oracle = engine.summarise(runs["oracle"], experiments)["mean"] if "oracle" in runs else None
    out = {}
    for name, results in runs.items():
        curve = np.mean([r.curve for r in results], axis=0)
        out[name] = {**engine.summarise(results, experiments, None if name == "oracle" else oracle),
                     "hits_after": {str(k): round(float(curve[k - 1]), 1) for k in range(10, experiments + 1, 10)}}
    return out


def plot(runs: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, results in runs.items():
        curves = np.array([r.curve for r in results])
        x = np.arange(1, curves.shape[1] + 1)
        ax.plot(x, curves.mean(axis=0), label=f"{name} ({curves[:, -1].mean():.1f})")
        ax.fill_between(x, curves.min(axis=0), curves.max(axis=0), alpha=0.15)
    ax.set_xlabel("experiment")
    ax.set_ylabel("hits found (E_ox in 4.5-4.6 V vs Li/Li+)")
    ax.set_title("closed loop, 5,000-molecule library, batch 4")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--seed-start", type=int, default=0, help="first seed (tune on 1000+, report 0-19)")
    ap.add_argument("--worlds", default="born", help=f"comma-separated world kinds: {', '.join(WORLDS)}")
    ap.add_argument("--library", choices=("a", "b"), default="a",
                    help="which 5,000-molecule slice of the bundled data is the library (the prior is the rest)")
    ap.add_argument("--experiments", type=int, default=100)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--planners", default="bayes,greedy,screening,random")
    ap.add_argument("--model-dir", type=Path, default=None,
                    help="where the prior model is kept (default: the labloop cache folder)")
    ap.add_argument("--plot", type=Path, default=None, help="draw hits vs experiment number into this PNG")
    ap.add_argument("--big", type=int, default=100_000, help="library size of the latency check")
    ap.add_argument("--parts", default="campaigns,big", help="campaigns (the planners' runs), big (the latency check)")
    ap.add_argument("--window", default=",".join(map(str, WINDOW_V)),
                    help="the objective's window, LO,HI in V vs Li/Li+ (the scan reaches 5.10 V: a window near it "
                         "makes failures beyond the vertex common)")
    ap.add_argument("--sd-factor", type=float, default=1.15,
                    help="bayes-wider's factor on the calibrated sd (bench/RESULTS.md, \"A wider sd\")")
    ap.add_argument("--past", type=int, default=0,
                    help="give each campaign this many library molecules measured before it (past_measurements)")
    ap.add_argument("-v", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO if args.v else logging.WARNING, stream=sys.stderr)

    from labloop.orchestrator.learning.models import ObjectiveModel
    from labloop.planners.feedback import DescriptorTable
    from labloop.surrogate.fingerprint_cache import default_cache_dir

    prior, library = split_world(args.library)
    suffix = "" if args.library == "a" else f"-{args.library}"  # library a's prior keeps its cached name
    model_dir = args.model_dir or default_cache_dir() / "bench" / f"campaign-prior-{SPLIT_SEED}{suffix}"
    ensemble, train_s = prior_ensemble(model_dir, prior)
    model = ObjectiveModel(ensemble, 1, "oxidation_potential")
    model.predict(library.smiles)  # cached once, as the runner does for each model version
    descriptors = DescriptorTable()
    window = tuple(float(v) for v in args.window.split(","))
    planners = make_planners(library.smiles, descriptors, window)
    parts = args.parts.split(",")
    seeds = range(args.seed_start, args.seed_start + args.seeds)
    out: dict = {"library": len(library.smiles), "library_slice": args.library, "prior": len(prior.smiles),
                 "window_v": list(window), "past": args.past,
                 "experiments": args.experiments, "batch": args.batch, "seeds": [seeds.start, seeds.stop - 1],
                 "prior_training_s": None if train_s is None else round(train_s), "worlds": {}}
    legacy_table: dict = {}
    for kind in args.worlds.split(",") if "campaigns" in parts else []:
        truth = world_of(prior, library, seeds.start, kind)
        runs: dict[str, list] = {}

        def world_of_seed(s: int, kind: str = kind):
            return world_of(prior, library, s, kind)

        for name in args.planners.split(","):
            runs[name] = []
            for seed in seeds:
                t0 = time.perf_counter()
                result = run_campaign(name, planners[name], model, world_of_seed, seed=seed,
                                      experiments=args.experiments, batch=args.batch, descriptors=descriptors,
                                      legacy_table=legacy_table, library=library.smiles, window=window,
                                      sd_factor=args.sd_factor, past=args.past)
                runs[name].append(result)
                log.warning("%s %s seed %d: %d hits, %d failed (%.0f s)", kind, name, seed, result.curve[-1],
                            result.failed, time.perf_counter() - t0)
        world = {"library_in_window_first_seed": sum(window[0] <= truth.truth_v(s) <= window[1]
                                                     for s in library.smiles),
                 "planners": summarise(runs, args.experiments)}
        for baseline in ("random", "screening", "greedy", "oracle", "legacy"):
            if "bayes" in runs and baseline in runs:  # null when the baseline found nothing (no finite ratio)
                hits, ours = world["planners"][baseline]["mean"], world["planners"]["bayes"]["mean"]
                world[f"bayes_vs_{baseline}"] = round(ours / hits, 2) if hits else None
        if "bayes" in runs and "greedy" in runs:  # paired by seed
            diff = [b.curve[-1] - g.curve[-1] for b, g in zip(runs["bayes"], runs["greedy"], strict=True)]
            world["bayes_minus_greedy"] = {"mean": round(statistics.mean(diff), 2),
                                           "se": round(statistics.stdev(diff) / len(diff) ** 0.5, 2)
                                           if len(diff) > 1 else None, "per_seed": diff}
        out["worlds"][kind] = world
        print(json.dumps({kind: world}), file=sys.stderr, flush=True)  # partial results as they come
    if args.plot and "campaigns" in parts:
        plot(runs, args.plot)  # the last world
        out["plot"] = str(args.plot)
    if "big" in parts:
        out["big_library"] = big_library_latency(ensemble, prior.smiles + library.smiles, args.big)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
