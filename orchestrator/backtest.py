"""Backtesting: run a campaign's planners against a table of true values, without touching an instrument.

Why: a lab must choose a planner before it spends its instruments' time, and the honest way to choose is to
replay its own past measurements (or a simulated world) as the truth and count what each planner would
have found with the same budget. The planners, the surrogate and the feedback are the campaign's own
(``planners/``), called exactly as the runner calls them (a :class:`PlannerState` built from the
observations, :class:`CalibratedModel` for learning planners); only the measurement is replaced:

- no instruments (``instruments=False``): the measured potential is the true value plus N(0, ``noise_v``),
  drawn from a generator seeded by (seed, molecule), so every planner sees the same noise for a molecule;
- simulated instruments: a cyclic voltammogram of the molecule's couple is simulated at the proposed
  scan rate (``sim/cv_physics.py``, zero latency, no serial emulators) over a fixed window and analysed
  like a dry run's, so peaks outside the window fail and measurement quality counts.

Each (planner, seed) campaign returns its hits after every experiment (or the best objective score for
goals without a hit definition) and its proposal latencies; :func:`summarise` turns them into means, sds,
hits at 25/50/100% of the budget and latency percentiles. Nothing here reads how the truth was made.

The yardstick (:func:`oracle_view`): the ``bayes`` planner with the prior calibrated once, before the
campaign, on :data:`ORACLE_ROWS` of the table's true values (noise-free) and never again — what the
feedback could know after that many perfect measurements spread over the library. A planner's hits as a
fraction of this oracle's say how much of the table's learnable error it found within its budget.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from threadpoolctl import threadpool_limits

from labloop.core.errors import InvalidInput
from labloop.core.seeds import stable_rng
from labloop.core.text import plural
from labloop.orchestrator.config.campaign import Campaign, Objective
from labloop.orchestrator.config.yaml_source import display_name
from labloop.orchestrator.console import invalid_said
from labloop.orchestrator.loop.runner import PLANNER_BLAS_THREADS  # as the runner proposes
from labloop.orchestrator.potential_table import forms_said
from labloop.planners import ModelView, Observation, Planner, PlannerState, bound_fields
from labloop.planners.feedback import CalibratedModel, DescriptorTable

if TYPE_CHECKING:
    from labloop.instruments.cv_analysis import Quantity

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scan:
    """What the simulated instruments scan: the cv window (begin, vertex 1, vertex 2; V vs the reference),
    its step, where the reference sits (V vs Li/Li+), and the protocol's scan rate (a planned one replaces it)."""

    window_v: tuple[float, float, float]
    e_step_v: float
    reference_offset_v: float
    scan_rate_v_s: float = 0.1


#: the example protocol's scan and cell (``examples/protocols/cv_screen.yaml``): 2.4-5.15 V vs Li/Li+
EXAMPLE_SCAN = Scan((-0.8, 1.95, -0.8), 0.002, 3.2)

#: true values the oracle's calibration is fitted on (a seeded sample of the library when the table has more)
ORACLE_ROWS = 400

#: ``measure(smiles, conditions, seed, k)`` -> the observation of the ``k``-th experiment of a campaign
Measure = Callable[[str, Mapping[str, Any], int, int], Observation]


def library_truth(campaign: Campaign, truth: dict[str, float], truth_file: Path
                  ) -> tuple[list[str], dict[str, float], list[str], dict[str, int]]:
    """The campaign's library molecules the truth table knows (by SMILES as written, else canonical), their true
    values, notes, and counts for ``--json``; the library is read as the campaign reads it (CSV, Parquet or .smi)
    and its molecules counted as ``validate`` counts them: each once however many rows write it, its invalid rows
    apart, named by line (they were counted among the molecules without a true value). The notes say which rows
    are invalid, and how many molecules the table does not know. Why that note: the planners choose among the known
    molecules only, so a library half missing from the table is a backtest of half the library, which the
    user must be told (a truth table of another library's molecules went unnoticed)."""
    from rdkit.rdBase import BlockLogs

    from labloop.sim.world import TruthTable
    from labloop.surrogate.featurize import InvalidSmiles, first_spellings, forms_of, unreadable
    from labloop.surrogate.library_pipeline import row_lines

    table = TruthTable({s: (v,) for s, v in truth.items()})
    rows = campaign.library.smiles()
    spellings = first_spellings(rows)  # a molecule listed twice, or two ways, is one
    smiles = [s for s, key in spellings.items() if key]
    unread = {s for s, key in spellings.items() if not key}
    library = display_name(campaign.library.file)
    with BlockLogs():  # an unreadable SMILES is said once below, not by RDKit
        invalid = [InvalidSmiles(row, s, unreadable(s) or InvalidSmiles.reason) for row, s in enumerate(rows)
                   if s in unread]
    notes = [said] if (said := invalid_said(invalid, library, "{n} invalid SMILES in {path} are left out",
                                            line_of=row_lines(campaign.library.file, campaign.library.smiles_column))
                       ) else []
    known: dict[str, float] = {}
    with BlockLogs():  # an unreadable SMILES is judged here, in the one line below, not by RDKit per row
        for s in smiles:
            try:
                known[s] = table.row(s)[0]
            except KeyError:
                continue
    if not known:
        raise InvalidInput(f"{truth_file}: none of its {len(truth)} valid SMILES is one of the {len(smiles)} "
                           f"{plural(len(smiles), 'molecule')} of the library {library} (compared as written, then as "
                           "canonical SMILES)")
    missing = len(smiles) - len(known)
    if missing:
        notes.append(f"{missing} of the {len(smiles)} {plural(len(smiles), 'molecule')} of the library {library} "
                     f"{plural(missing, 'has', 'have')} no true value in {truth_file} and "
                     f"{plural(missing, 'is', 'are')} left out (compared as written, then as canonical SMILES)")
    if forms := forms_of(list(truth), {key: s for s, key in spellings.items() if key}):
        notes.append(forms_said(forms, str(truth_file), "they give it no true value"))
    counts = {"rows": len(rows), "molecules": len(smiles), "invalid_smiles": len(invalid),
              "without_true_value": missing}
    return list(known), known, notes, counts


def oracle_view(model: ModelView, truth: Mapping[str, float], library: Sequence[str], descriptors: DescriptorTable,
                *, seed: int, rows: int = ORACLE_ROWS) -> CalibratedModel:
    """The oracle's model (module docstring): ``model`` calibrated on the true values of up to ``rows``
    library molecules drawn with ``seed``."""
    known = [s for s in library if s in truth]
    picked = np.sort(np.random.default_rng(seed).choice(len(known), size=min(rows, len(known)), replace=False))
    return CalibratedModel(model, [Observation(known[i], {}, truth[known[i]]) for i in picked], descriptors)


def table_measure(truth: Mapping[str, float], noise_v: float) -> Measure:
    """No instruments: the truth plus seeded N(0, noise_v)."""
    def measure(smiles: str, conditions: Mapping[str, Any], seed: int, k: int) -> Observation:
        noise = stable_rng("backtest", seed, smiles).normal(0.0, noise_v) if noise_v > 0 else 0.0
        return Observation(smiles, dict(conditions), truth[smiles] + noise, quality=1.0)
    return measure


def campaign_scan(campaign: Campaign) -> Scan:
    """The campaign's own scan: its protocol's first cv step and ``cell.reference_offset_v``;
    :class:`InvalidInput` when the protocol has no cv step with a written window (a window around each
    prediction is not simulated here)."""
    cv = campaign.cv_step()
    if cv is None or cv.around_candidate:
        what = "no cv step" if cv is None else "a cv window around each prediction (half_width_v)"
        raise InvalidInput(f"{campaign.located('protocol')}: has {what}, which the backtest's simulated "
                           "instruments cannot scan: give the cv step e_begin_v, e_vertex1_v and e_vertex2_v, or "
                           "backtest with --no-instruments")
    p = cv.params()
    return Scan((p.e_begin_v, p.e_vertex1_v, p.e_vertex2_v), p.e_step_v, campaign.cell.reference_offset_v,
                p.scan_rate_v_s)


def cv_measure(world_of_seed: Callable[[int], Any], scan: Scan = EXAMPLE_SCAN) -> Measure:
    """Simulated instruments: a CV of the world's couple (``world_of_seed(seed)``: a
    :class:`labloop.sim.world.World` whose reference sits at ``scan.reference_offset_v``, one per
    campaign) over ``scan``, analysed as the runner judges it."""
    from labloop.instruments.cv_analysis import analyze_cv, measurement_quality, to_li_scale
    from labloop.instruments.voltammogram import CVParams
    from labloop.sim.cv_physics import simulate_cv

    worlds: dict[int, Any] = {}

    def measure(smiles: str, conditions: Mapping[str, Any], seed: int, k: int) -> Observation:
        if k == 0 or seed not in worlds:  # a new campaign: a new world (its walk starts again)
            worlds[seed] = world_of_seed(seed)
        begin, vertex1, vertex2 = scan.window_v
        params = CVParams(e_begin_v=begin, e_vertex1_v=vertex1, e_vertex2_v=vertex2,
                          scan_rate_v_s=float(conditions.get("scan_rate_v_s", scan.scan_rate_v_s)),
                          e_step_v=scan.e_step_v)
        rng = stable_rng("backtest", seed, "cv", k, smiles)
        world = worlds[seed]
        couple = world.couple_of(smiles)  # also advances the world's measurement clock
        # the reference electrode's walk (a ``drift`` world) moves the couple, as the emulator applies it
        couple = replace(couple, e0_v=couple.e0_v - world.reference_drift_v())
        result = analyze_cv(simulate_cv(couple, params, rng))
        ok = result.e_half_v is not None and not result.flags
        potential = to_li_scale(result.e_half_v, scan.reference_offset_v) if ok else None
        bound = None if ok else result.on_li_scale(scan.reference_offset_v).bound(world.quantity)
        return Observation(smiles, dict(conditions), potential, quality=measurement_quality(result),
                           failure=None if ok else "analysis", **bound_fields(bound))
    return measure


def table_world_measure(truth: Mapping[str, float], quantity: Quantity, noise_v: float, scan: Scan) -> Measure:
    """Simulated instruments on a table's true values: :func:`cv_measure` over ``scan`` of a world whose
    truth is the table (a new world per campaign seed, its noise ``noise_v``)."""
    from labloop.sim.world import TruthTable, World

    table = TruthTable({s: (v,) for s, v in truth.items()})
    return cv_measure(lambda seed: World(table, source="column", quantity=quantity, noise_v=noise_v,
                                         reference_offset_v=scan.reference_offset_v, seed=seed), scan)


def objective_score(objective: Objective) -> Callable[[list[Observation]], float]:
    """What a campaign's curve counts: hits so far, or (a goal without a hit definition) the best score."""
    def score(observations: list[Observation]) -> float:
        values = [o.potential_v for o in observations if o.potential_v is not None]
        if objective.defines_hits:
            return float(sum(objective.is_hit(v) for v in values))
        return max((objective.score(v) for v in values), default=float("nan"))
    return score


class Progress(Protocol):
    """What :func:`compare` says as it goes: the campaign it starts, and each experiment done."""

    def start(self, name: str, seed: int) -> None: ...
    def advance(self) -> None: ...


class StoppedEarly(KeyboardInterrupt):
    """:func:`compare` stopped by a Ctrl-C or a ``kill`` (``cause``, whose text, ``SIGINT``, this keeps): the
    summaries of the campaigns that finished (``results``, as :func:`compare` returns them, each planner over its
    first finished seeds; none for a planner without one), how many seeds each planner finished (``finished``, every
    planner, in the order they run: the oracle first) of the ``seeds`` asked, and the campaign cut short
    (``dropped``: planner and seed, or None). Why a KeyboardInterrupt: a caller that only stops on one stops on
    this alike; ``labloop backtest`` prints what finished (orchestrator/cli/backtest.py), since a lab stopping 4 of
    5 seeds into an hour lost all of them."""

    def __init__(self, cause: KeyboardInterrupt, results: dict[str, dict[str, Any]], finished: dict[str, int],
                 seeds: int, dropped: tuple[str, int] | None) -> None:
        super().__init__(*cause.args)
        self.cause = cause
        self.results = results
        self.finished = finished
        self.seeds = seeds
        self.dropped = dropped


def compare(campaign: Campaign, kinds: Sequence[str], library: Sequence[str], model: ModelView | None,
            measure: Measure, *, seeds: int, budget: int, oracle_truth: Mapping[str, float] | None,
            progress: Progress, past: Sequence[Observation] = ()) -> dict[str, dict[str, Any]]:
    """Every planner of ``kinds`` over ``seeds`` campaigns (seeds from the campaign's) of ``budget``
    experiments, summarised (:func:`summarise`); with ``oracle_truth``, the oracle too (:func:`oracle_view`),
    run first so each planner's hits are also a fraction of its. ``past``: the campaign's past measurements, which
    every campaign starts from (:func:`run_campaign`). Each planner runs its seeds in turn, one planner after
    another; an interrupt once they began raises :class:`StoppedEarly` with the campaigns finished by then."""
    from labloop.planners import make_planner

    descriptors = DescriptorTable()
    score = objective_score(campaign.objective)
    oracle = oracle_view(model, oracle_truth, library, descriptors, seed=campaign.seed) \
        if oracle_truth is not None and model is not None else None
    # the finished campaigns by planner, in the order they run (the oracle first), and the last one started
    runs: dict[str, list[CampaignRun]] = {name: [] for name in (["oracle"] if oracle is not None else []) + list(kinds)}
    running: tuple[str, int] | None = None

    def run(kind: str, name: str, view_of: Callable[[Sequence[Observation]], ModelView] | None = None) -> None:
        nonlocal running
        settings = campaign.model_copy(update={"planner": campaign.planner.model_copy(update={"kind": kind})})
        planner = make_planner(settings.planner_settings(), library, descriptors)
        for seed in range(campaign.seed, campaign.seed + seeds):
            running = name, seed
            progress.start(name, seed)
            done = run_campaign(planner, model, measure, seed=seed, budget=budget, batch=campaign.planner.batch_size,
                                descriptors=descriptors, score=score, view_of=view_of,
                                on_experiment=progress.advance, past=past)
            runs[name].append(done)
            # with -v, what each campaign found as it ends: how far a long backtest is, and what a stop keeps
            log.info("%s seed %d finished: %g after %d experiments", name, seed,
                     done.curve[-1] if done.curve else 0.0, len(done.curve))  # as summarise counts it

    try:
        if oracle is not None:
            run("bayes", "oracle", lambda _observations: oracle)
        for kind in dict.fromkeys(kinds):  # a planner named twice runs once, as its one summary says
            run(kind, kind)
    except KeyboardInterrupt as exc:
        # the last campaign started, unless it finished (the interrupt came between it and the next)
        dropped = running if running and running[1] >= campaign.seed + len(runs[running[0]]) else None
        raise StoppedEarly(exc, _summaries(runs, budget), {name: len(r) for name, r in runs.items()}, seeds,
                           dropped) from None
    return _summaries(runs, budget)


def _summaries(runs: Mapping[str, Sequence[CampaignRun]], budget: int) -> dict[str, dict[str, Any]]:
    """:func:`compare`'s result: each planner with a finished campaign summarised, the oracle last; a planner's
    ``of_oracle`` is over the oracle's same seeds (all of them, unless the planner's were cut short)."""
    oracle = runs.get("oracle", [])
    results = {name: summarise(r, budget, summarise(oracle[:len(r)], budget)["mean"] if oracle else None)
               for name, r in runs.items() if r and name != "oracle"}
    if oracle:
        results["oracle"] = summarise(oracle, budget)
    return results


@dataclass
class CampaignRun:
    """One (planner, seed) campaign: hits (or best score) after each experiment, failures, latencies."""

    planner: str
    seed: int
    curve: list[float] = field(default_factory=list)
    failed: int = 0
    latency_s: list[float] = field(default_factory=list)
    learners: list[str] = field(default_factory=list)
    #: (measured - predicted) / sd of each measured proposal that had a prediction: whether the sd the planner bet
    #: on described its errors
    z: list[float] = field(default_factory=list)


def run_campaign(planner: Planner, model: ModelView | None, measure: Measure, *, seed: int, budget: int,
                 batch: int, descriptors: DescriptorTable, score: Callable[[list[Observation]], float],
                 view_of: Callable[[Sequence[Observation]], ModelView] | None = None,
                 on_experiment: Callable[[], None] | None = None, past: Sequence[Observation] = ()) -> CampaignRun:
    """Propose, measure, learn until ``budget`` experiments; ``score(observations)`` is the curve's value
    (hits so far, or the best objective score) over the campaign's own experiments. ``view_of(observations)``
    replaces the calibrated model (an oracle). ``past``: measurements from before the campaign, first among the
    observations as the runner puts a campaign's ``past_measurements`` (learnt from, never proposed, not counted)."""
    run = CampaignRun(planner.name, seed)
    observations: list[Observation] = list(past)
    step = 0
    while (done := len(observations) - len(past)) < budget:
        state = PlannerState(planner.name, seed, step, observations=tuple(observations))
        t0 = time.perf_counter()
        with threadpool_limits(PLANNER_BLAS_THREADS):
            view = model
            if view_of is not None:
                view = view_of(observations)
            elif model is not None and planner.learns:
                calibrated = CalibratedModel(model, observations, descriptors)
                learner = calibrated.calibration.summary().get("learner")
                if learner:
                    run.learners.append(learner)
                view = calibrated
            proposals = planner.propose(state, min(batch, budget - done), view)
        run.latency_s.append(time.perf_counter() - t0)
        if not proposals:
            break
        for p in proposals:
            obs = measure(p.smiles, p.conditions, seed, len(observations) - len(past))
            if obs.potential_v is not None and p.mu is not None and p.sigma:
                run.z.append((obs.potential_v - p.mu) / p.sigma)
            observations.append(obs)
            run.failed += obs.failure is not None
            run.curve.append(score(observations[len(past):]))
            if on_experiment is not None:
                on_experiment()
        step += 1
    return run


def _finite(values: Sequence[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


def _mean(values: Sequence[float]) -> float | None:
    """Mean over the values there are: a best-score curve has none until a first measurement succeeds."""
    finite = _finite(values)
    return round(statistics.mean(finite), 2) if finite else None


#: how many standard errors a paired difference must reach for :func:`paired_with_leader` to call two planners apart
TOLD_APART_SE = 2.0
#: the fewest paired seeds :func:`paired_with_leader` tells two planners apart by. Why: the se is estimated from the
#: differences themselves (seeds - 1 degrees of freedom), so two planners alike exceed 2 se by chance in 30% of
#: comparisons over 2 seeds, 18% over 3 and 12% over 5 (Student's t), not the 5% of a known se; and over 2 or 3 seeds
#: hit counts often differ alike on every seed, an se of 0 that called any difference settled (a trial: "more than
#: 2 se: greedy is ahead" over 2 seeds). 5 is where that chance is near its floor; it is the command's default --seeds
MIN_SEEDS_TO_TELL_APART = 5


def paired_with_leader(results: Mapping[str, Mapping[str, Any]], *, measures_all: int | None = None,
                       stopped: bool = False) -> list[dict[str, Any]]:
    """Each planner against the leader (the highest mean, the oracle aside), paired by seed: the mean of the
    per-seed differences (leader minus it), their standard error, how many seeds, whether the difference
    exceeds :data:`TOLD_APART_SE` standard errors (None below :data:`MIN_SEEDS_TO_TELL_APART` seeds) and the
    verdict in words, which the command prints and ``--json`` holds alike. Why paired: every planner runs the same
    seeds (the same noise and draws), so the spread between seeds that each planner's own sd carries cancels, and
    what is left says whether the choice between two planners is settled or needs more seeds (a trial: the table
    gave sd alone, and a lab could not tell 1.6 hits apart from nothing). ``measures_all``: the molecules every
    campaign measures, all of them, where its budget reached them all (the final hits then differ by noise alone);
    ``stopped``: the backtest was interrupted (its seeds are the finished ones, not the ones asked)."""
    ranked = [(name, r) for name, r in results.items() if name != "oracle" and r.get("mean") is not None]
    if len(ranked) < 2:
        return []
    leader, best = max(ranked, key=lambda nr: nr[1]["mean"])
    out = []
    for name, r in ranked:
        if name == leader:
            continue
        # over the seeds both finished (an interrupted backtest's planners may have fewer: the first of each)
        diffs = [a - b for a, b in zip(best["per_seed"], r["per_seed"], strict=False)
                 if a is not None and b is not None]
        se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else None
        mean = statistics.mean(diffs) if diffs else None
        apart = (None if mean is None or se is None or len(diffs) < MIN_SEEDS_TO_TELL_APART or measures_all
                 else abs(mean) > TOLD_APART_SE * se if se > 0 else mean != 0)
        out.append({"leader": leader, "planner": name, "difference": None if mean is None else round(mean, 2),
                    "se": None if se is None else round(se, 2), "seeds": len(diffs), "told_apart": apart,
                    "verdict": _verdict(leader, len(diffs), apart, measures_all, stopped)})
    return out


def _verdict(leader: str, seeds: int, apart: bool | None, measures_all: int | None = None,
             stopped: bool = False) -> str:
    """What a paired comparison over ``seeds`` seeds settles, in the words the backtest's table prints under it."""
    if measures_all:  # "more seeds would say" of planners that each measured the same 13 molecules (a trial)
        return (f"no verdict: every planner measures all {measures_all} {plural(measures_all, 'molecule')}, so the "
                "final count differs by noise alone; compare them at 25% and 50%, or with a smaller --budget")
    if seeds < MIN_SEEDS_TO_TELL_APART:
        # "too few to tell them apart" read as "no difference" beside 15 hits against 3 (a lab head's trial); an
        # interrupted backtest was told "--seeds 5" after asking for 6 (another's)
        more = "let the backtest finish" if stopped else f"--seeds {MIN_SEEDS_TO_TELL_APART}"
        return (f"no verdict from {seeds} {plural(seeds, 'seed')}, whatever the difference (a verdict needs at least "
                f"{MIN_SEEDS_TO_TELL_APART}: {more})")
    # "here": the seeds draw noise, not libraries or first batches, and a chemist's trial saw the leader change with
    # planner.first_batch alone, while "greedy is ahead" read as a verdict on the planners
    return (f"more than {TOLD_APART_SE:g} se: {leader} is ahead here (this table, prior and first batch)" if apart else
            f"within {TOLD_APART_SE:g} se: not told apart; more seeds (--seeds) would say")


def summarise(runs: Sequence[CampaignRun], budget: int, oracle_mean: float | None = None) -> dict[str, Any]:
    """Mean, sd and standard error of the final score, the per-seed values, the mean at 25/50/100% of the
    budget, failures, the learners chosen, proposal latencies, and how often a measurement lay within its
    prediction +/- 1.96 sd (and the rms of their ratio) over all seeds; with ``oracle_mean`` (the oracle's mean
    hits), the mean as a fraction of it (None when the oracle found nothing). A best score no measurement
    gave yet is None (JSON null), and means are over the seeds that have one; so are sd and se of one seed."""
    finals = [r.curve[-1] if r.curve else 0.0 for r in runs]
    at = {}
    for fraction in (0.25, 0.5, 1.0):
        k = max(round(fraction * budget), 1)
        at[f"{int(fraction * 100)}%"] = _mean([r.curve[min(k, len(r.curve)) - 1] if r.curve else 0.0 for r in runs])
    latencies = [t for r in runs for t in r.latency_s]
    learners = [name for r in runs for name in r.learners]
    z = [v for r in runs for v in r.z]
    mean, finite = _mean(finals), _finite(finals)
    spread = statistics.stdev(finite) if len(finite) > 1 else None
    return {"mean": mean, "of_oracle": round(mean / oracle_mean, 3) if oracle_mean and mean is not None else None,
            "sd": None if spread is None else round(spread, 2),  # one seed has no spread (not a spread of 0)
            "se": None if spread is None else round(spread / len(finite) ** 0.5, 2),
            "per_seed": [v if math.isfinite(v) else None for v in finals], "after": at,
            "failed_mean": round(statistics.mean(r.failed for r in runs), 2),
            "learners": {name: learners.count(name) for name in sorted(set(learners))},
            # the sd's check, as the report's (orchestrator/journal/plot_data.py interval_check): 0.95 and 1 if right
            "within_1_96_sd": round(sum(abs(v) <= 1.96 for v in z) / len(z), 3) if z else None,
            "rms_z": round(statistics.fmean(v * v for v in z) ** 0.5, 2) if z else None,
            "latency_s": {"median": round(statistics.median(latencies), 4) if latencies else None,
                          "p95": round(float(np.percentile(latencies, 95)), 4) if latencies else None,
                          "max": round(max(latencies), 4) if latencies else None}}
