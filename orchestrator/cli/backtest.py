"""`labloop backtest`: replay a table of true values (a lab's past measurements, or a simulated world) through
the campaign's planners and compare what each would have found; the engine is
:mod:`labloop.orchestrator.backtest`."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click

from labloop.core.errors import ConfigError
from labloop.core.text import plural, printable
from labloop.orchestrator import console
from labloop.orchestrator.backtest import ORACLE_ROWS, Scan, StoppedEarly
from labloop.orchestrator.cli.preflight import cached_prior, check_prior_cache, prior_kept, prior_notes, prior_view
from labloop.orchestrator.config.campaign import Campaign, Objective, load_campaign, reference_scale
from labloop.orchestrator.config.yaml_source import display_name
from labloop.orchestrator.journal.view import describe_objective
from labloop.orchestrator.loop.interrupts import EXIT_INTERRUPTED, signal_said

log = logging.getLogger(__name__)


#: the most campaigns per planner one backtest runs, and the largest measurement noise it simulates (V)
MAX_SEEDS = 1000
MAX_NOISE_V = 1.0


#: the caption's line when a planner's ``of oracle`` exceeds 1, as docs/planners.md explains it: it read as a bug
OF_ORACLE_ABOVE_1 = ("of oracle above 1: the oracle is calibrated once, before the campaign, so each molecule's own "
                     "error stays in its surrogate, and a planner that learns within its budget (or a lucky one, over "
                     "few seeds) can find more")


#: a width no table reaches, to measure one's full width
UNBOUNDED = 1_000_000


def _finite(value: float) -> float:
    """click's ranges let NaN through (it compares false with both ends)."""
    if not math.isfinite(value):
        raise click.BadParameter(f"must be a number of volts, got {value}")
    return value


def _scale(value: str | None) -> str | None:
    """``--truth-vs`` as ``li`` or ``fc``, however the couple is written (``Fc+/Fc``: a campaign's
    ``past_measurements.vs`` reads the same)."""
    if value is None:
        return None
    if (scale := reference_scale(value)) not in ("li", "fc"):
        raise click.BadParameter(f"{value!r} is neither li (V vs Li/Li+) nor fc (V vs Fc+/Fc)")
    return scale


@click.command(help="Run the campaign's planners against a table of true values (a lab's past measurements or a "
                    "simulated world) and compare what each finds with the same budget.")
@click.argument("campaign_file", metavar="CAMPAIGN.yaml", type=click.Path(path_type=Path))
@click.option("--truth", "truth_file", required=True, type=click.Path(path_type=Path),
              help="CSV of true values (V vs Li/Li+) with the library's SMILES column.")
@click.option("--column", required=True, help="The truth file's column of true values.")
@click.option("--truth-vs", default=None, callback=lambda _ctx, _param, value: _scale(value),
              help="The truth column's reference scale: li or Li/Li+ (V vs Li/Li+, the default for a header naming no "
                   "scale), or fc or Fc+/Fc (V vs Fc+/Fc, converted with the campaign's cell.ferrocene_vs_li_v). "
                   "Needed when the header names another scale.")
@click.option("--planners", default="bayes,greedy,random", show_default=True, help="Comma-separated planner kinds.")
@click.option("--seeds", type=click.IntRange(min=1, max=MAX_SEEDS), default=5, show_default=True)
@click.option("--budget", type=click.IntRange(min=1), default=None,
              help="Experiments per campaign (default: the campaign's budget.max_experiments).")
@click.option("--no-instruments", is_flag=True, help="The truth plus --noise-v is the measurement (no CV simulated).")
@click.option("--noise-v", type=click.FloatRange(min=0, max=MAX_NOISE_V), default=0.01, show_default=True,
              callback=lambda _ctx, _param, value: _finite(value),
              help="Measurement noise (V): added to the truth, or the simulated reference drift.")
@click.option("--oracle/--no-oracle", default=True, show_default=True,
              help="Also run the yardstick: bayes with the prior calibrated on the table's true values of "
                   f"up to {ORACLE_ROWS} library molecules (all of a smaller library) before the campaign "
                   "(needs a prior and a hit window).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def backtest(campaign_file: Path, truth_file: Path, column: str, truth_vs: str | None, planners: str, seeds: int,
             budget: int | None, no_instruments: bool, noise_v: float, oracle: bool, as_json: bool) -> None:
    """Why a guard around the work: a Ctrl-C or a ``kill`` (SIGTERM, as ``labloop run`` takes it:
    orchestrator/loop/interrupts.py) said only ``aborted``, or nothing, with 143; now one line says what stopped
    and what is left (:func:`_stopped`), exit 130, after the results of the seeds that finished, if any."""
    from labloop.orchestrator.loop.interrupts import Interrupts

    campaign = load_campaign(campaign_file)
    try:
        with Interrupts():
            _backtest(campaign, truth_file, column, truth_vs, planners, seeds, budget, no_instruments, noise_v,
                      oracle, as_json)
    except KeyboardInterrupt as exc:
        console.err.print(_stopped(campaign, exc), markup=False, highlight=False, soft_wrap=True)
        raise click.exceptions.Exit(EXIT_INTERRUPTED) from None


def _stopped(campaign: Campaign, exc: KeyboardInterrupt) -> str:
    """The one line of a stopped backtest: by what, what of its results it printed (those of the seeds that
    finished, :func:`_partial`, or nothing: it has no output file), and what of the prior model stays
    (:func:`preflight.prior_kept`)."""
    prior = prior_kept(campaign)
    if isinstance(exc, StoppedEarly) and exc.results:
        return f"{_partial(exc)}{prior}"
    return f"interrupted ({signal_said(exc)}): the backtest stopped before its results and wrote nothing{prior}"


def _partial(stopped: StoppedEarly) -> str:
    """What an interrupted backtest's results hold: ``interrupted (SIGINT) after 5 of 5 seeds of oracle, 3 of 5 of
    bayes and 0 of 5 of greedy; bayes's seed 8, in progress, is dropped: the results hold finished seeds only``.
    Why each planner's count: the planners run one after another, each its seeds in turn
    (orchestrator/backtest.py compare), so a stop leaves the first planners whole and the later ones without a
    seed, and a table of means over 3 seeds beside means over 5 must say so."""
    counts = [f"{n} of {stopped.seeds}" for n in stopped.finished.values()]
    counts[0] += f" {plural(stopped.seeds, 'seed')}"
    said = [f"{count} of {name}" for count, name in zip(counts, stopped.finished, strict=True)]
    listed = ", ".join(said[:-1]) + f" and {said[-1]}" if len(said) > 1 else said[0]
    dropped = f"; {stopped.dropped[0]}'s seed {stopped.dropped[1]}, in progress, is dropped" if stopped.dropped else ""
    return f"interrupted ({signal_said(stopped)}) after {listed}{dropped}: the results hold finished seeds only"


def _backtest(campaign: Campaign, truth_file: Path, column: str, truth_vs: str | None, planners: str, seeds: int,
              budget: int | None, no_instruments: bool, noise_v: float, oracle: bool, as_json: bool) -> None:
    """The command's work, inside :func:`backtest`'s guard."""
    from labloop.orchestrator import backtest as engine
    from labloop.orchestrator import compose, potential_table
    from labloop.planners import PLANNERS
    from labloop.planners.base import past_observations

    named = [k.strip() for k in planners.split(",")]
    if "" in named:  # "bayes,,random": a planner left out by a slip, not silently dropped
        raise click.BadParameter(f"{planners!r} has an empty planner name: separate planner kinds by single commas "
                                 "(e.g. bayes,greedy,random)", param_hint="--planners")
    kinds = named
    unknown = [k for k in kinds if k not in PLANNERS]
    if not kinds or unknown:
        oracle = ("; the oracle is no planner kind: it runs beside them unless --no-oracle"
                  if "oracle" in unknown else "")  # a lab head's trial asked for it by name
        raise click.BadParameter(f"unknown planner {', '.join(unknown) or '(none)'}; known: {', '.join(PLANNERS)}"
                                 f"{oracle}", param_hint="--planners")
    if campaign.prior is None and any(k != "random" for k in kinds):
        raise click.BadParameter("planners other than random need the campaign's prior section",
                                 param_hint="--planners")
    notes: list[str] = []
    if any(k != "random" for k in kinds):  # the prior model is cached beside the store: fail before training
        notes += prior_notes(campaign)
        check_prior_cache(campaign, "backtest a copy of the campaign in a folder you can write")
    scan = None if no_instruments else engine.campaign_scan(campaign)
    wholly = None
    try:  # an objective no measurement can meet is refused as validate refuses it: with the simulated instruments
        compose.check_objective_reach(campaign)  # every planner found 0 hits, exit 0 (a chemist's trial)
    except ConfigError as exc:
        if not no_instruments:
            raise
        wholly = str(exc)
    read = potential_table.read_truth(truth_file, column, campaign.library.smiles_column, truth_vs=truth_vs,
                                      ferrocene_vs_li_v=campaign.cell.ferrocene_vs_li_v)
    offset = read.offset_v
    notes += read.notes
    library, known, left_out, library_rows = engine.library_truth(campaign, read.values, truth_file)
    notes += left_out
    # the campaign's own past measurements, as its run would start from them: never proposed, learnt from
    past = potential_table.read_past(campaign, library, truth=truth_file)
    before = list(past_observations(past.measurements, past.bounds)) if past else []
    notes += list(past.notes) if past else []
    # what a campaign can propose: the library molecules with a true value not measured before (a backtest with past
    # data has fewer hits to find, and "hits_in_library" alone read as the past having cost hits: a chemist's trial)
    measured = {s for s, *_ in (past.measurements + past.bounds)} if past else set()
    proposable = [s for s in library if s not in measured]
    left = len(proposable)
    asked = budget or campaign.budget.max_experiments
    if asked > left:  # a campaign cannot measure a molecule twice: capped, and said (it was silent)
        given = f"--budget {asked}" if budget else f"the campaign's budget.max_experiments {asked}"
        measured = " not measured before (past_measurements)" if past else ""
        notes.append(f"{given} exceeds the {left} library {plural(left, 'molecule')} with a true value{measured}: "
                     f"each campaign runs {left} {plural(left, 'experiment')}, all of them, so the planners differ "
                     "only in the order they measure them (the 25% and 50% columns)")
    budget = min(asked, left)
    objective = campaign.objective
    hits = _hits(objective, read.molecules.values()), _hits(objective, known.values())
    to_find = _hits(objective, (known[s] for s in proposable))
    if hits[1] == 0:  # every planner would find 0 hits and look alike: say whose fault it most likely is
        notes.append(_no_hit(objective, column, truth_file, hits[0], len(library),
                             display_name(campaign.library.file), noisy=noise_v > 0 or scan is not None))
    if no_instruments and (beyond := compose.scored_out_of_reach(campaign, (known[s] for s in proposable))) is not None:
        notes.append(beyond + "; --no-instruments scores the true value")  # a best score no run can measure
    if (unreachable := wholly or compose.objective_out_of_reach(campaign)) is not None:  # as validate says
        notes.append(unreachable + ("; --no-instruments counts hits there, which a run of this campaign cannot measure"
                                    if no_instruments else ""))
    for note in notes:
        console.err.print(f"warning: {printable(note)}", markup=False, highlight=False, soft_wrap=True)
    if past is not None:
        console.err.print(printable(f"each campaign starts from the campaign's {past.summary()}"), markup=False,
                          highlight=False, soft_wrap=True)
    model = prior_view(campaign) if any(k != "random" for k in kinds) else None
    # random alone needs no prior, but a cached one still checks the table's scale (a lab head's trial: a table vs
    # Fc+/Fc read as vs Li/Li+ with --planners random gave 0 hits and no word why)
    judge = model if model is not None else cached_prior(campaign)
    if judge is not None:
        judge.predict(library)  # cached once for every planner and seed
        # a table on another scale than declared: the truth, or the past, volts from the prior (a trial's table vs
        # Fc+/Fc read as vs Li/Li+ was said only as "no value is a hit")
        quantity = campaign.objective.quantity
        slips = [potential_table.scale_slip(truth_file, column, known, judge, offset_v=offset,
                                            ferrocene_vs_li_v=campaign.cell.ferrocene_vs_li_v, quantity=quantity),
                 None if past is None else potential_table.past_scale_slip(past.source, past.measurements, judge,
                                                                           campaign.cell.ferrocene_vs_li_v, quantity)]
        for slip in filter(None, slips):
            console.err.print(f"warning: {printable(slip)}", markup=False, highlight=False, soft_wrap=True)
            notes.append(slip)
    measure = (engine.table_measure(known, noise_v) if scan is None
               else engine.table_world_measure(known, objective.quantity, noise_v, scan))
    if oracle and campaign.prior is not None and (model is None or not objective.defines_hits):
        # skipped with no word where the campaign could have one (a lab head's trial: --planners random)
        why = ("it is bayes with the prior calibrated on the table, and --planners random alone trains no prior: add "
               "a learning planner (--planners random,bayes)" if model is None else
               "it is judged by hits, and the objective has no hit window or threshold")
        notes.append(f"no oracle row: {why}")
        console.err.print(f"note: {notes[-1]}", markup=False, highlight=False, soft_wrap=True)
    oracle = oracle and model is not None and objective.defines_hits
    with console.progress() as bar:
        campaigns = (len(kinds) + oracle) * seeds
        task = bar.add_task("backtest", total=campaigns * budget, counted="experiments")

        class Shown:
            """The progress bar, told each campaign and experiment; off a terminal its plain line says that the count
            is of every campaign (``greedy seed 7: 625 of 1500`` read as greedy's seed 7 alone: a lab head's trial)."""

            def start(self, name: str, seed: int) -> None:
                bar.update(task, description=f"{name} seed {seed}",
                           counted=f"{name} seed {seed} running; experiments of all {campaigns} campaigns")

            def advance(self) -> None:
                bar.advance(task)

        stopped: StoppedEarly | None = None
        try:
            results = engine.compare(campaign, kinds, library, model, measure, seeds=seeds, budget=budget,
                                     oracle_truth=known if oracle else None, progress=Shown(), past=before)
        except StoppedEarly as exc:
            if not exc.results:  # no seed finished: backtest() says so in one line
                raise
            results, stopped = exc.results, exc
    report = {"campaign": campaign.name, "library": len(library), "truth": str(truth_file), "column": column,
              "objective": describe_objective(objective.model_dump()),
              "measure": "hits" if objective.defines_hits else "best score", "budget": budget,
              "objective_v": {"goal": objective.goal, "window_v": objective.window_v and list(objective.window_v),
                              "threshold_v": objective.threshold_v},
              "hits_in_table": hits[0], "hits_in_library": hits[1], "proposable": left, "hits_to_find": to_find,
              "truth_vs": "fc" if offset else "li",
              "truth_offset_v": offset, "truth_rows": read.rows, "library_rows": library_rows,
              "past_measurements": len(past.measurements) if past else 0,
              "past_bounds": len(past.bounds) if past else 0,
              "seeds": list(range(campaign.seed, campaign.seed + seeds)),  # per_seed's order
              # a stopped backtest's results are over each planner's first seeds_finished seeds
              "interrupted": None if stopped is None else signal_said(stopped),
              "seeds_finished": {name: seeds for name in results} if stopped is None else stopped.finished,
              "seed_dropped": None if stopped is None or stopped.dropped is None else
              {"planner": stopped.dropped[0], "seed": stopped.dropped[1]},
              "seeds_vary": seeds_vary(scan is not None, noise_v, "random" in results),  # if it ran a seed
              "versus_leader": engine.paired_with_leader(results, measures_all=budget if budget == left else None,
                                                         stopped=stopped is not None),
              "instruments": "none" if scan is None else _scanned(scan), "noise_v": noise_v, "planners": results,
              "warnings": notes}
    if as_json:
        console.out.print_json(json.dumps(report, allow_nan=False))  # strict JSON: a missing value is null
    else:
        _print_table(report, None if stopped is None else _partial(stopped))
    if stopped is not None:  # backtest() says what stopped, and exits as a stopped run does
        raise stopped


def _hits(objective: Objective, values: Iterable[float]) -> int | None:
    """How many of ``values`` are hits; None for a goal without a hit definition."""
    return sum(objective.is_hit(v) for v in values) if objective.defines_hits else None


def _no_hit(objective: Objective, column: str, truth_file: Path, in_table: int | None, library: int,
            library_name: str, *, noisy: bool = False) -> str:
    """The warning of a backtest whose library molecules hold no hit, blaming what is true: the table, when it
    holds no hit either (e.g. an energy in eV given for a potential, or another scale), else the library (a trial:
    the table's 25 hits were none of the library's 20 molecules, and the table's scale was blamed). ``noisy``: a
    measurement is the truth plus noise, which can carry a near-miss into the window (a trial's table showed 0.2
    hits beside "every planner finds 0")."""
    noise = " but for a near-miss the measurement's noise carries into the window" if noisy else ""
    goal = describe_objective(objective.model_dump())
    if not in_table:
        return f"no value of column {column!r} in {truth_file} is a hit ({goal}): is it {objective.quantity} in V vs " \
               "Li/Li+?"
    return (f"none of the {library} {plural(library, 'molecule')} of the library {library_name} with a true value "
            f"is a hit ({goal}): {truth_file} holds {in_table} {plural(in_table, 'hit')}, "
            f"none of {plural(in_table, 'it', 'them')} in the library, so every planner finds 0{noise}")


def seeds_vary(instruments: bool, noise_v: float, random: bool = True) -> str:
    """What differs between a backtest's seeds, said beside its spread: a lab's table is one library and the prior
    one model, and the first batch is the same in every seed, so the sd is the spread over measurement noise,
    not over libraries (a reviewer read it as how sure the planner choice was). ``random``: whether the random
    planner ran (its picks were named when it had not: a trial)."""
    drawn = [f"the measurement noise ({noise_v:g} V)"] if noise_v > 0 else []
    if instruments:
        drawn.append("the simulated voltammograms' current noise")
    if random:
        drawn.append("random's picks")
    if not drawn:
        return "a seed varies nothing here (no noise, no instruments, no random planner): every seed is one campaign"
    said = ", ".join(drawn[:-1]) + f" and {drawn[-1]}" if len(drawn) > 1 else drawn[0]
    return (f"a seed varies {said}; the library, the prior and the first batch are the same in every seed, so "
            "+/- sd is the spread over those draws, not over libraries")


def _scanned(scan: Scan) -> str:
    """``simulated CV, 2.40-5.15 V vs Li/Li+``: what the simulated instruments scan."""
    low, high = min(scan.window_v), max(scan.window_v)
    return (f"simulated CV, {low + scan.reference_offset_v:.2f}-{high + scan.reference_offset_v:.2f} V vs "
            "Li/Li+")


def _per_seed(values: list[float | None]) -> str:
    """Each seed's score: whole numbers (hits) as they are, and a column of any other with two decimals each, as the
    mean is rounded (a best value found of ``4.5`` beside ``4.51`` read as two kinds of number: a review)."""
    whole = all(v is None or float(v).is_integer() for v in values)
    return " ".join("-" if v is None else f"{v:g}" if whole else f"{v:.2f}" for v in values)


def _mean(value: float | None) -> str:
    """A mean over seeds with the two decimals it is rounded to (orchestrator/backtest.py ``summarise``), whatever
    its value: ``6`` beside ``5.8`` in one column read as two kinds of number (a lab head's trial)."""
    return "-" if value is None else f"{value:.2f}"


def _print_table(report: dict[str, Any], partial: str | None = None) -> None:
    """The results as a table, its caption and the paired comparisons under it; ``partial``: what an interrupted
    backtest's results hold (:func:`_partial`), said in the title and first in the caption. Why two layouts: the
    table's eight columns need about 130 columns, and an 80-column terminal folded every row over several lines,
    unreadable; where the whole table does not fit, its columns are split into two tables (what each planner found,
    then how it measured and proposed) and the per-seed values are lines under them, each fitting 80 columns."""
    from rich.table import Table

    what = report["measure"]
    first, last = report["seeds"][0], report["seeds"][-1]
    seeds = (f"seed {first}" if first == last else f"seeds {first}-{last}") + (" (interrupted: finished seeds only)"
                                                                                if partial else "")
    # the objective in the title: a hit's window was said nowhere, and with instruments the scan's window, which
    # the title did show, was taken for it (a chemist's trial)
    title = (f"{report['campaign']}: {what} ({report['objective']}) in {report['budget']} experiments, "
             f"{report['library']} molecules, {seeds}, instruments: {report['instruments']}")
    beyond = any((r["of_oracle"] or 0) > 1 for r in report["planners"].values())
    caption = "\n".join(filter(None, (partial, _truth_said(report), _proposable(report), report["seeds_vary"],
                                      OF_ORACLE_ABOVE_1 if beyond else None)))
    cells = {name: _cells(r, what) for name, r in report["planners"].items()}

    def table(headings: list[str], title: str | None, caption: str | None) -> Table:
        shown = Table(title=title, caption=caption)
        for heading in ("planner", *headings):
            shown.add_column(heading)
        for name, row in cells.items():
            shown.add_row(name, *(row[h] for h in headings))
        return shown

    headings = list(next(iter(cells.values())))
    whole = table(headings, title, caption)
    lines = []
    # measured unbounded: rich's own measure is capped at the console's width
    if console.out.measure(whole, options=console.out.options.update_width(UNBOUNDED)).maximum <= console.out.width:
        console.out.print(whole)
    else:
        found, checks = headings[:headings.index("failed")], headings[headings.index("failed"):]
        console.out.print(table([h for h in found if h != "per seed"], title, None))
        console.out.print(table(checks, None, caption))
        first = report["seeds"][0]
        lines = [f"{name} per seed ({_span(first, len(r['per_seed']))}): {cells[name]['per seed']}"
                 for name, r in report["planners"].items()]
    for line in lines + _versus_leader(report["versus_leader"], what):
        console.out.print(line, markup=False, highlight=False, soft_wrap=True)


def _span(first: int, seeds: int) -> str:
    """``5-9``, or ``5`` for one seed (an interrupted backtest's planner may have one)."""
    return f"{first}-{first + seeds - 1}" if seeds > 1 else str(first)


def _cells(r: dict[str, Any], what: str) -> dict[str, str]:
    """A planner's cells by the heading of their column, in the table's order: what it found (up to ``failed``),
    then how it measured and proposed (:func:`_print_table` splits them there)."""
    spread = "" if r["sd"] is None else f" +/- {_mean(r['sd'])} ({_mean(r['se'])})"  # none from one seed
    return {f"{what} mean +/- sd (se)": f"{_mean(r['mean'])}{spread}",
            "of oracle": "-" if r["of_oracle"] is None else f"{r['of_oracle']:.2f}",
            "per seed": _per_seed(r["per_seed"]),
            "at 25% / 50% / 100%": " / ".join(_mean(v) for v in r["after"].values()),
            "failed": _mean(r["failed_mean"]),
            "within +/-1.96 sd (rms z)": "-" if r["within_1_96_sd"] is None else
            f"{100 * r['within_1_96_sd']:.0f}% ({r['rms_z']:g})",
            "proposal median / p95 (s)": f"{r['latency_s']['median']} / {r['latency_s']['p95']}"}


def _truth_said(report: dict[str, Any]) -> str:
    """The caption's line of what the truth is: its column, the scale it was read on, and how many hits the library
    holds (the denominator of every planner's hits). Why: the title said neither, and a table read as vs Fc+/Fc, or
    "8 hits" without the 20 there were to find, was known only from --json (a lab head's trial)."""
    scale = (f", read as V vs Fc+/Fc (+{report['truth_offset_v']:g} V each: --truth-vs fc)"
             if report["truth_offset_v"] else ", read as V vs Li/Li+")
    n = report["hits_in_library"]
    hits = "" if n is None else f"; the library's molecules hold {n} {plural(n, 'hit')}"
    return f"truth: column {report['column']!r} of {Path(report['truth']).name}{scale}{hits}"


def _proposable(report: dict[str, Any]) -> str | None:
    """The caption's line of a backtest with past measurements: how many molecules a campaign can propose and how
    many hits they hold, so that fewer hits than a run without them is read against fewer to find; None without."""
    if not report["past_measurements"] and not report["past_bounds"]:
        return None
    hits = "" if report["hits_to_find"] is None else (
        f", holding {report['hits_to_find']} of the library's {report['hits_in_library']} "
        f"{plural(report['hits_in_library'], 'hit')} to find")
    return (f"{report['proposable']} of the {report['library']} molecules can be proposed (the rest were measured "
            f"before: past_measurements){hits}")


def _versus_leader(comparisons: list[dict[str, Any]], what: str) -> list[str]:
    """One line per planner behind the leader: the paired difference, and whether it settles the choice."""
    lines = []
    for c in comparisons:
        pair = f"{c['leader']} - {c['planner']}"
        if c["difference"] is None:  # no seed on which both have a score
            lines.append(f"{pair}: {c['verdict']}")
            continue
        se = "" if c["se"] is None else f", se {c['se']:g}"  # none from one seed
        lines.append(f"{pair}: {c['difference']:+g} {what} per campaign{se} over {c['seeds']} "
                     f"{plural(c['seeds'], 'seed')} (paired by seed): {c['verdict']}")
    return lines
