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
import re
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
from labloop.instruments.cv_analysis import FERROCENE_VS_LI_V
from labloop.orchestrator.config.campaign import POTENTIAL_RANGE_V, Campaign, Objective
from labloop.orchestrator.config.yaml_source import display_name
from labloop.orchestrator.console import invalid_said
from labloop.orchestrator.loop.runner import PLANNER_BLAS_THREADS  # as the runner proposes
from labloop.planners import ModelView, Observation, Planner, PlannerState, bound_fields
from labloop.planners.feedback import CalibratedModel, DescriptorTable
from labloop.surrogate.dataset import MISSING_MARKERS, csv_lines, read_table

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


#: the reference scales a truth column's header may name (matched without case): what the backtest converts
#: (``--truth-vs fc``), and what it only recognises to refuse, since their place vs Li/Li+ depends on the electrode's
#: filling and the solvent (docs/protocols.md "Potential scales") and no campaign setting holds it
FERROCENE_SCALE = re.compile(r"\bfc\b|\bfc\+|ferrocen", re.IGNORECASE)
OTHER_SCALES = re.compile(r"\bsce\b|ag/ag|\bagcl\b|\bshe\b|\bnhe\b|\bsse\b|\bhg/hg", re.IGNORECASE)
LITHIUM_SCALE = re.compile(r"\bli\b|\bli\+|\blithium\b", re.IGNORECASE)

#: the share of a truth table's values, from 2 rows on, that lying nearer the table's median -/+ cell.ferrocene_vs_li_v
#: than its median makes a group on another scale worth a warning. Why: a lab's table pastes rows vs Fc/Fc+ among rows
#: vs Li/Li+ (a trial: a third of a table 3.2 V low), and a few molecules far from the rest are molecules, not a scale:
#: the trial's clean table of 1,000 oxidation potentials had 5 such values (0.5%), the mixed one 346 (35%)
MIXED_SCALE_SHARE = 0.02


def truth_offset(path: Path, column: str, truth_vs: str | None, ferrocene_vs_li_v: float) -> float:
    """What to add to the truth column's values to put them on the Li/Li+ scale, which every potential in labloop is
    on: 0 for ``--truth-vs li``, ``ferrocene_vs_li_v`` (the campaign's ``cell.ferrocene_vs_li_v``) for ``fc``.
    Without ``truth_vs``, a header that names another scale and not Li/Li+ (``E1/2 (V vs Fc/Fc+)``) is refused
    (InvalidInput, one line saying how to convert): such a table backtested as if vs Li/Li+ found no hit and still
    crowned a leader (a chemist's trial); a header naming no scale (``e_v``) is taken as vs Li/Li+, as documented.
    A ``fc`` for a header naming Li/Li+ is refused too (the values would move by 3 V)."""
    ferrocene, other, lithium = (bool(scale.search(column)) for scale in (FERROCENE_SCALE, OTHER_SCALES,
                                                                          LITHIUM_SCALE))
    if truth_vs == "fc":
        if lithium and not ferrocene:
            raise InvalidInput(f"{path}: column {column!r} names Li/Li+, not Fc/Fc+: drop --truth-vs fc (or give "
                               "--truth-vs li)")
        return ferrocene_vs_li_v
    if truth_vs == "li" or lithium or not (ferrocene or other):
        return 0.0
    if ferrocene:
        raise InvalidInput(f"{path}: column {column!r} names the Fc/Fc+ scale, and the backtest's truth is V vs "
                           f"Li/Li+: give --truth-vs fc to add the campaign's cell.ferrocene_vs_li_v "
                           f"({ferrocene_vs_li_v:g} V) to each value, or --truth-vs li if the values are vs Li/Li+")
    raise InvalidInput(f"{path}: column {column!r} names another reference scale than Li/Li+, which the backtest's "
                       "truth must be on: convert the column to V vs Li/Li+ (or to V vs Fc/Fc+ and give --truth-vs "
                       "fc), or give --truth-vs li if the values are vs Li/Li+")


@dataclass
class Truth:
    """A truth table as :func:`read_truth` reads it: ``values`` by SMILES as each row writes it (a later spelling
    of a molecule with its first row's value), ``molecules`` by canonical SMILES (each molecule once), the
    ``notes`` to warn of, and ``rows``: how many rows the table has, and how many were left out or merged, by why
    (``--json`` reports them)."""

    values: dict[str, float]
    molecules: dict[str, float]
    notes: list[str]
    rows: dict[str, int]


def read_truth(path: Path, column: str, smiles_column: str = "smiles", *, offset_v: float = 0.0,
               ferrocene_vs_li_v: float = FERROCENE_VS_LI_V) -> Truth:
    """The :class:`Truth` of a CSV: its values plus ``offset_v`` (:func:`truth_offset`), and notes on the rows not
    taken as they are: SMILES that are no molecule, empty values (a cell holding a missing-value marker,
    :data:`labloop.surrogate.dataset.MISSING_MARKERS`, is one, counted and named: ``n/a`` was refused one cell at
    a time), repeated molecules with another value (and, apart, those more than
    :data:`labloop.surrogate.training.REPEAT_SPREAD` apart, as ``surrogate train`` says: 3.2 V apart is a mix-up,
    not a remeasurement) and a group of values about ``ferrocene_vs_li_v`` from the rest (:data:`MIXED_SCALE_SHARE`).
    :class:`InvalidInput` (one line) for a missing column, a value beyond :data:`POTENTIAL_RANGE_V` (an energy in
    eV, millivolts; an infinite or absurd one is refused by :func:`read_table` already) or a table with no valid
    SMILES and value. A molecule given twice keeps its first value, whichever way each row spells it (by canonical
    SMILES: a later spelling gets the first value too; a lab's table mixes the spellings of several sources)."""
    from labloop.surrogate.featurize import canonical_smiles

    table = read_table(path, (column,), smiles_column=smiles_column,  # a lab's table names its columns its way
                       column_hint=f": name its SMILES column {smiles_column!r}, as the campaign's library does "
                                   "(library.smiles_column)", target_option="--column", missing_markers=MISSING_MARKERS)
    line_of = csv_lines(path)  # its lines after any blank one
    low, high = POTENTIAL_RANGE_V
    shifted = f" (after adding {offset_v:g} V: --truth-vs fc)" if offset_v else ""
    truth: dict[str, float] = {}
    empty: list[int] = []  # rows of a molecule without a value
    conflicts, first_conflict = 0, ""
    invalid: list[tuple[int, str]] = []  # (line, as written) of rows whose SMILES is no molecule
    canonical = canonical_smiles(table.smiles)  # "" for a row that is no molecule, judged in one note below
    first_of: dict[str, float] = {}  # by canonical SMILES: the value the molecule's first row gave
    first_row: dict[str, int] = {}  # ... and that row
    rows_of: dict[str, list[int]] = {}  # ... and all its rows with a value
    valued: list[tuple[int, float]] = []  # (row, value) of every row taken
    for row, (smiles, value) in enumerate(zip(table.smiles, table.Y[:, 0] + offset_v, strict=True)):
        if not canonical[row]:
            invalid.append((line_of(row), smiles))
            continue
        if not np.isfinite(value):
            empty.append(row)
            continue
        if not low <= value <= high:
            raise InvalidInput(f"{path}: line {line_of(row)}, column {column!r}: {value:g}{shifted} lies beyond "
                               f"{low:g}..{high:g} V vs Li/Li+: not a potential (an energy in eV? millivolts?)")
        key = canonical[row]
        if key in first_of and first_of[key] != value:
            conflicts += 1
            earlier = first_row[key]
            first_conflict = first_conflict or (f"line {line_of(row)} {smiles!r} repeats line {line_of(earlier)} "
                                                f"{table.smiles[earlier]!r}")
        first_row.setdefault(key, row)
        rows_of.setdefault(key, []).append(row)
        valued.append((row, float(value)))
        truth.setdefault(smiles, first_of.setdefault(key, float(value)))
    unscreened = "no SMILES of a molecule labloop screens"
    first = f"first at line {invalid[0][0]}: {invalid[0][1]!r}" if invalid else ""
    bad, n_rows = len(invalid), len(table.smiles)
    if not truth:
        why = (f" ({bad} of its {n_rows} {plural(n_rows, 'row')} {plural(bad, 'is', 'are')} {unscreened}, {first})"
               if invalid else "")
        raise InvalidInput(f"{path}: no row has a valid SMILES and a number in column {column!r}{why}")
    notes = []
    if invalid:
        notes.append(f"{bad} {plural(bad, 'row')} of {path} {plural(bad, 'is', 'are')} {unscreened} ({first}) and "
                     f"{plural(bad, 'is', 'are')} left out")
    written = table.marked.get(column, {})  # row: the missing-value marker its cell holds
    marked = [row for row in empty if row in written]
    if empty:
        k = len(marked)
        markers = "" if not marked else (
            f" ({k} of them {plural(k, 'writes', 'write')} a missing value as "
            f"{', '.join(repr(m) for m in dict.fromkeys(written[r] for r in marked))}, first at "
            f"{plural(min(k, 5), 'line')} {', '.join(str(line_of(r)) for r in marked[:5])}"
            f"{f' and {k - 5} more' if k > 5 else ''})")
        notes.append(f"{len(empty)} {plural(len(empty), 'row')} of {path} {plural(len(empty), 'has', 'have')} no "
                     f"finite value in column {column!r}{markers} and {plural(len(empty), 'is', 'are')} left out")
    if conflicts:
        notes.append(f"{conflicts} {plural(conflicts, 'row')} of {path} {plural(conflicts, 'repeats', 'repeat')} a "
                     f"molecule with another value (the first: {first_conflict}): the first value is used, "
                     "however the later rows spell it")
    apart = _apart(rows_of, dict(valued))
    if apart:
        from labloop.surrogate.training import REPEAT_SPREAD

        rows, spread = apart[0]
        lines = ", ".join(str(line_of(r)) for r in rows[:5]) + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")
        notes.append(f"{len(apart)} repeated {plural(len(apart), 'molecule')} of {path} "
                     f"{plural(len(apart), 'has', 'have')} values more than {REPEAT_SPREAD:g} V apart (first: lines "
                     f"{lines}, spread {spread:.3f} V), more than a measurement repeats by, and the first value is "
                     "used: check those rows for a mix-up (a reference electrode, a unit, a sign, another molecule's "
                     "row)")
    if (scales := _mixed_scales(valued, ferrocene_vs_li_v, line_of)) is not None:
        notes.append(f"{path}, column {column!r}: {scales}")
    return Truth(truth, first_of, notes, {"rows": n_rows, "invalid_smiles": bad, "no_value": len(empty),
                                          "missing_markers": len(marked), "repeats_with_another_value": conflicts,
                                          "repeated_molecules_apart": len(apart)})


def _apart(rows_of: Mapping[str, list[int]], value_of: Mapping[int, float]) -> list[tuple[list[int], float]]:
    """The repeated molecules whose rows' values spread by more than ``surrogate train``'s REPEAT_SPREAD, in the
    order of their first rows: each one's rows and spread."""
    from labloop.surrogate.training import REPEAT_SPREAD

    found = []
    for rows in rows_of.values():
        values = [value_of[r] for r in rows]
        if len(rows) > 1 and max(values) - min(values) > REPEAT_SPREAD:
            found.append((rows, max(values) - min(values)))
    return found


def _mixed_scales(valued: Sequence[tuple[int, float]], ferrocene_vs_li_v: float, line_of: Callable[[int], int]
                  ) -> str | None:
    """What to say of a truth column whose values hold a group about ``ferrocene_vs_li_v`` below or above the
    rest (:data:`MIXED_SCALE_SHARE`), or None: a value nearer the median -/+ that offset than the median itself is
    where a potential on the other of the Li/Li+ and Fc/Fc+ scales would lie. Of the two sides, the one with more
    such values is the group said."""
    values = np.array([v for _, v in valued])
    median, half = float(np.median(values)), ferrocene_vs_li_v / 2
    below = [(row, v) for row, v in valued if v < median - half]
    above = [(row, v) for row, v in valued if v > median + half]
    side, off = ("below", below) if len(below) >= len(above) else ("above", above)  # the group: a mix shifts the
    if len(off) < max(2, MIXED_SCALE_SHARE * len(values)):  # median, and with it the few extreme values of the other
        return None                                          # side, which are the rest's own tail
    lines = ", ".join(str(line_of(r)) for r, _ in off[:5]) + (f" and {len(off) - 5} more" if len(off) > 5 else "")
    sign = "-" if side == "below" else "+"
    return (f"{len(off)} of its {len(values)} values lie more than {half:g} V {side} its median ({median:.2f} V), "
            f"nearer the median {sign} {ferrocene_vs_li_v:g} V (cell.ferrocene_vs_li_v) than the median itself (lines "
            f"{lines}), as values vs Fc/Fc+ among values vs Li/Li+ would: check their reference scale, since the "
            "backtest takes every value as V vs Li/Li+")


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
    from labloop.surrogate.featurize import InvalidSmiles, first_spellings, unreadable
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


def compare(campaign: Campaign, kinds: Sequence[str], library: Sequence[str], model: ModelView | None,
            measure: Measure, *, seeds: int, budget: int, oracle_truth: Mapping[str, float] | None,
            progress: Progress) -> dict[str, dict[str, Any]]:
    """Every planner of ``kinds`` over ``seeds`` campaigns (seeds from the campaign's) of ``budget``
    experiments, summarised (:func:`summarise`); with ``oracle_truth``, the oracle too (:func:`oracle_view`),
    run first so each planner's hits are also a fraction of its."""
    from labloop.planners import make_planner

    descriptors = DescriptorTable()
    score = objective_score(campaign.objective)

    def runs_of(kind: str, name: str, view_of: Callable[[Sequence[Observation]], ModelView] | None = None
                ) -> list[CampaignRun]:
        settings = campaign.model_copy(update={"planner": campaign.planner.model_copy(update={"kind": kind})})
        planner = make_planner(settings.planner_settings(), library, descriptors)
        runs = []
        for seed in range(campaign.seed, campaign.seed + seeds):
            progress.start(name, seed)
            runs.append(run_campaign(planner, model, measure, seed=seed, budget=budget,
                                     batch=campaign.planner.batch_size, descriptors=descriptors, score=score,
                                     view_of=view_of, on_experiment=progress.advance))
        return runs

    results: dict[str, dict[str, Any]] = {}
    oracle = None
    if oracle_truth is not None and model is not None:
        view = oracle_view(model, oracle_truth, library, descriptors, seed=campaign.seed)
        oracle = summarise(runs_of("bayes", "oracle", lambda _observations: view), budget)
    for kind in kinds:
        results[kind] = summarise(runs_of(kind, kind), budget, None if oracle is None else oracle["mean"])
    if oracle is not None:
        results["oracle"] = oracle
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
                 on_experiment: Callable[[], None] | None = None) -> CampaignRun:
    """Propose, measure, learn until ``budget`` experiments; ``score(observations)`` is the curve's value
    (hits so far, or the best objective score). ``view_of(observations)`` replaces the calibrated model
    (an oracle)."""
    run = CampaignRun(planner.name, seed)
    observations: list[Observation] = []
    step = 0
    while len(observations) < budget:
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
            proposals = planner.propose(state, min(batch, budget - len(observations)), view)
        run.latency_s.append(time.perf_counter() - t0)
        if not proposals:
            break
        for p in proposals:
            obs = measure(p.smiles, p.conditions, seed, len(observations))
            if obs.potential_v is not None and p.mu is not None and p.sigma:
                run.z.append((obs.potential_v - p.mu) / p.sigma)
            observations.append(obs)
            run.failed += obs.failure is not None
            run.curve.append(score(observations))
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


def paired_with_leader(results: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each planner against the leader (the highest mean, the oracle aside), paired by seed: the mean of the
    per-seed differences (leader minus it), their standard error, how many seeds, whether the difference
    exceeds :data:`TOLD_APART_SE` standard errors (None below :data:`MIN_SEEDS_TO_TELL_APART` seeds) and the
    verdict in words, which the command prints and ``--json`` holds alike. Why paired: every planner runs the same
    seeds (the same noise and draws), so the spread between seeds that each planner's own sd carries cancels, and
    what is left says whether the choice between two planners is settled or needs more seeds (a trial: the table
    gave sd alone, and a lab could not tell 1.6 hits apart from nothing)."""
    ranked = [(name, r) for name, r in results.items() if name != "oracle" and r.get("mean") is not None]
    if len(ranked) < 2:
        return []
    leader, best = max(ranked, key=lambda nr: nr[1]["mean"])
    out = []
    for name, r in ranked:
        if name == leader:
            continue
        diffs = [a - b for a, b in zip(best["per_seed"], r["per_seed"], strict=True) if a is not None and b is not None]
        se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else None
        mean = statistics.mean(diffs) if diffs else None
        apart = (None if mean is None or se is None or len(diffs) < MIN_SEEDS_TO_TELL_APART
                 else abs(mean) > TOLD_APART_SE * se if se > 0 else mean != 0)
        out.append({"leader": leader, "planner": name, "difference": None if mean is None else round(mean, 2),
                    "se": None if se is None else round(se, 2), "seeds": len(diffs), "told_apart": apart,
                    "verdict": _verdict(leader, len(diffs), apart)})
    return out


def _verdict(leader: str, seeds: int, apart: bool | None) -> str:
    """What a paired comparison over ``seeds`` seeds settles, in the words the backtest's table prints under it."""
    if seeds < MIN_SEEDS_TO_TELL_APART:
        return (f"{seeds} {plural(seeds, 'seed')} {plural(seeds, 'is', 'are')} too few to tell them apart "
                f"(at least {MIN_SEEDS_TO_TELL_APART}: --seeds {MIN_SEEDS_TO_TELL_APART})")
    return (f"more than {TOLD_APART_SE:g} se: {leader} is ahead" if apart else
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
