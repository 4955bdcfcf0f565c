"""What a journal says, summarised once: the JSON that ``labloop log --json`` prints and the rich tables of
``labloop log``.

Journal text (SMILES, causes, flags, event messages, some of which quote a device's reply) is shown as
text, never as rich markup: ``[nH]`` in a SMILES must survive and ``[/]`` must not crash the view.

Why one snapshot for both: the tables and the JSON must never disagree about what is "best so far" or
how many hits there are, so both are built from the same plain dict (scripts read exactly what people
see). "Best" follows the campaign's own objective (:meth:`Objective.score`), read from the config as run.
"""

from __future__ import annotations

import logging
import math
import statistics
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from labloop.core.errors import JournalError, Problems, first_line
from labloop.core.text import clipped, plural, printable
from labloop.instruments.cv_analysis import (
    RANDLES_SEVCIK_N_ELECTRONS,
    RANDLES_SEVCIK_TEMPERATURE_K,
    reversibility_criterion,
)
from labloop.instruments.kinetics import NICHOLSON_TEMPERATURE_K, nicholson_k0
from labloop.orchestrator.config.objective import Objective
from labloop.orchestrator.journal.lock import being_run
from labloop.orchestrator.journal.names import library_names
from labloop.orchestrator.journal.store import (
    ANALYSIS_FAILURE,
    PAST_MEASUREMENTS,
    UNSAFE,
    VETOED,
    WARNING,
    Journal,
    State,
    hit_edges,
    left_unsafe,
    potential_said,
    with_advice,
)
from labloop.protocols.steps import CV, Step, analysis_settings, parse_steps

log = logging.getLogger(__name__)

BEST_SHOWN = 5
#: most characters of a library's molecule name a table shows (the page's dashboard.js cuts as many): a name column
#: holding a pasted note of 5,000 characters filled the approval table for screens (a security trial); the journal,
#: ``log --json`` and the report keep it whole
SHOWN_NAME_CHARS = 80


def snapshot(journal: Journal) -> dict[str, Any]:
    """Everything ``log`` shows, as JSON-safe data; potentials are V vs Li/Li+ (None until measured)."""
    info = journal.campaign_info()
    config = info.config
    objective = Objective.model_validate(config["objective"])
    experiments = journal.experiments()
    measured = [(e.potential_v, e) for e in experiments if e.status == State.DONE and e.potential_v is not None]
    ranked = [e for _, e in sorted(measured, key=lambda pe: objective.rank(pe[0]), reverse=True)]
    hits = sum(objective.is_hit(p) for p, _ in measured) if objective.defines_hits else None
    by_bound = _hits_by_bound(journal, experiments, objective, nominal_offset(config))

    steps = _protocol_steps(journal.path, config)
    protocol = _protocol_conditions(steps)
    names = library_names(config.get("library") or {})
    vials = journal.sample_ids()
    retried = journal.retried()
    events = [_without_raw(asdict(e)) for e in journal.events()]
    runs = [(datetime.fromisoformat(e["time"]), run_was_dry(e)) for e in events if e["kind"] == "run"]
    # the lab's measurements from before the campaign: counted apart from its experiments (the budget, done and hits
    # are the campaign's own), what the past_measurements event says
    past = next(({**{k: e["data"][k] for k in ("measurements_n", "in_library", "hits")},
                  "bounds_n": e["data"].get("bounds_n", 0)}  # a journal from before bounds were read has none
                 for e in events if e["kind"] == PAST_MEASUREMENTS and isinstance(e["data"], dict)), None)

    def row(experiment: Any) -> dict[str, Any]:  # with whether it hit, so no reader re-implements the rule
        potential = experiment.potential_v
        return {**asdict(experiment), "name": names.get(experiment.smiles, ""),
                "sample_id": vials.get(experiment.id, ""),  # the vial it loaded (none before it ran)
                # a failed experiment's potential (an unstable molecule's, a standard not told apart) is no hit,
                # whatever it reads: measurements.csv and the dashboard showed decomposing molecules as hits (a trial)
                "hit": experiment.status == State.DONE and potential is not None and objective.defines_hits
                and objective.is_hit(potential),
                # a failed scan whose bound lies past the threshold: a hit, by its bound (a chemist's trial)
                "hit_by_bound": experiment.id in by_bound,
                # predicted before any measurement, on the DFT prior's scale (`log` marks it *, the dashboard too):
                # the first batch, unless the lab's past measurements calibrated it
                "uncalibrated": experiment.mu is not None and experiment.step == 0 and past is None,
                "protocol_conditions": {k: v for k, v in protocol.items() if k not in experiment.conditions},
                # the rate it ran at: none before it ran
                "scan_rate_v_s": measured_at(experiment.conditions, protocol) if experiment.started_at else None,
                # what its drivers repeated after faults (a scan run again in a cell scanned part way): None for none
                "retried": retried.get(experiment.id),
                # measured by a dry run (simulated instruments and world): the report said so in its header alone,
                # and its CSVs and figures read as real measurements (a referee's trial); None before it ran
                "dry_run": _dry_at(experiment.started_at, runs)}

    progress = {
        "run_active": being_run(journal.path),  # a process holds the runner lock right now
        "counts": {state.value: sum(e.status == state for e in experiments) for state in State},
        # of counts.failed, those a person vetoed (awaiting approval -> failed, cause "vetoed ..."): the header read
        # "failed 9" for 8 vetoes and 1 real failure (an operator's trial); the planner counts both as failures
        "vetoed": sum(e.status == State.FAILED and (e.cause or "").startswith(VETOED) for e in experiments),
        "max_experiments": config["budget"]["max_experiments"],
        "hits": hits,
        # failed experiments whose scan's bound proves them hits (past a maximize or minimize goal's threshold)
        "hits_by_bound": None if hits is None else len(by_bound),
        "last_heard": journal.last_heard(),  # the newest write of any kind (UTC), what a killed run did last
    }
    progress["past"] = past
    progress["ended"] = None if progress["run_active"] else run_end(events, progress)
    progress["ended_as"] = None if progress["run_active"] else ended_as(events)
    # what a live run is doing now, a retrain in progress and when the budget is reached at the recent pace: none
    # of them once no run holds the journal (what a killed run left open is not happening)
    live = progress["run_active"] and _running(events)
    progress["now"] = _now(journal, events, experiments, names) if live else None
    progress["retraining"] = _retraining(events) if live else None
    retrain_every = (config.get("surrogate") or {}).get("retrain_every")
    progress["eta"] = _eta(experiments, config["budget"], info.created_at, events,
                           cycle=retrain_every if isinstance(retrain_every, int) else 0) if live else None
    if progress["eta"] is not None:
        # a retrain in progress that no finished one has timed: the pace holds none, and "about 3 s left" stood
        # 34 s from the end while the run waited for the first (a newcomer's trial)
        progress["eta"]["untimed_retrain"] = progress["retraining"] is not None and not _retrain_timed(events)
    progress["eta_s"] = None if progress["eta"] is None else progress["eta"]["seconds"]
    return {
        "campaign": {
            "name": info.name, "seed": info.seed, "store": str(journal.path), "created_at": info.created_at,
            "code_version": info.code_version, "objective": config["objective"],
            "objective_text": describe_objective(config["objective"]), "planner": config["planner"],
            "budget": config["budget"],
            # how many of its runs were dry runs (simulated instruments and world) and how many real
            "runs": {"dry": sum(dry for _, dry in runs), "real": sum(not dry for _, dry in runs)},
            # the rule each experiment's ``reversibility`` was judged by (a chemist saw dEp 72-77 mV called
            # reversible with no cut-off said)
            "reversibility_criterion": reversibility_said(steps, cell_kelvin(config)),
        },
        "progress": progress,
        "best": [row(e) for e in ranked[:BEST_SHOWN]],
        "experiments": [row(e) for e in experiments],
        "models": [asdict(m) for m in journal.model_versions()],
        "events": events,
    }


def _protocol_steps(store: Path, config: dict[str, Any]) -> tuple[Step, ...]:
    """The journal's protocol, its steps read as a run reads them; a record that does not read is damaged."""
    protocol = config.get("protocol")
    try:
        return tuple(parse_steps(protocol.get("steps") if isinstance(protocol, dict) else None))
    except Problems as exc:
        raise JournalError(f"{store}: the journal's campaign record is damaged (its protocol cannot be read: "
                           f"{first_line(exc)})") from None


def _protocol_conditions(steps: tuple[Step, ...]) -> dict[str, Any]:
    """The scan rate the protocol's cv runs at as written (``{"scan_rate_v_s": 0.1}``, the step's default when it
    gives none, or ``{"scan_rates_v_s": [...]}`` for a cv of several), which an experiment ran at unless a planned
    condition of that name replaced it. Why beside the planned ``conditions``: a potential is read at a scan rate
    (a quasi-reversible wave moves with it), and without a ``conditions:`` section the rate was in the raw data
    alone, not in ``log --json`` nor the report's tables."""
    cv = next(step for step in steps if isinstance(step, CV))  # parse_steps: exactly one
    return {"scan_rates_v_s": list(cv.scan_rates_v_s)} if cv.scan_rates_v_s else {"scan_rate_v_s": cv.scan_rate_v_s}


def measured_at(conditions: dict[str, Any], protocol: dict[str, Any]) -> float:
    """The scan rate (V/s) an experiment's potential, dEp and peak currents were read at: the planned one, else the
    protocol's (its first, for a cv of several: the scan the journal's measurement analyses). Why a number of its own:
    a chemist's table of molecules measured at 0.02-0.5 V/s (a planned rate) had it only as ``scan_rate_v_s=0.4081``
    inside a text cell, and ranked quasi-reversible waves read at different rates side by side (a referee's trial)."""
    rate = conditions.get("scan_rate_v_s", protocol.get("scan_rate_v_s"))
    return float(rate if rate is not None else protocol["scan_rates_v_s"][0])


def reversibility_said(steps: tuple[Step, ...], temperature_k: float = NICHOLSON_TEMPERATURE_K) -> str:
    """The rule the protocol's experiments were called reversible by (:func:`reversibility_criterion`): its
    ``analyze`` step's settings or the analysis' defaults, over every rate of a cv of several, at the cell's
    ``temperature_k`` (:func:`cell_kelvin`), for the cv's ``n_electrons``."""
    cv = next(step for step in steps if isinstance(step, CV))
    return reversibility_criterion(analysis_settings(steps), rates=len(cv.scan_rates_v_s or ()),
                                   temperature_k=temperature_k, n_electrons=cv.n_electrons)


def cell_kelvin(config: dict[str, Any]) -> float:
    """The cell's temperature (K) of a journal's campaign record: its ``cell.temperature_c``, or 25 C where the record
    has none (a journal written before the field, whose analysis ran at 25 C's cut-offs)."""
    cell = config.get("cell")
    celsius = cell.get("temperature_c") if isinstance(cell, dict) else None
    return (float(celsius) if isinstance(celsius, int | float) else 25.0) + 273.15


#: the events that start a run or end one (``interrupted`` of no one experiment: each interrupted experiment has
#: its own too), the runner's and ``labloop run``'s (orchestrator/loop/runner.py, orchestrator/cli/run.py)
RUN_EVENTS = frozenset({"run", "finished", "stopped", "cluster_lost", "interrupted"})


def run_end(events: list[dict[str, Any]], progress: dict[str, Any]) -> str:
    """How the journal's last run ended, in one line, from its last start or end event: ``finished: budget
    reached (30/30)``, ``finished: 2 hits (budget.stop_after_hits)``, ``stopped: <why>[; <advice>]``, or that it
    ended without a word (``kill -9``). What ``labloop log`` (its header, and ``--follow`` when it stops) and the
    dashboard say once no run writes the journal (``progress.ended``): they said "finished or stopped", though
    the journal knew which."""
    index = _last_run_event(events)
    last = None if index is None else events[index]
    if last is None:
        return "not started: no run has written this journal yet"
    if last["kind"] == "run":
        # it could not make the rig safe, and the cell or a syringe may need a person before a resume (which says)
        return ("stopped: the run process ended without a word in the journal (killed, crashed, or the journal "
                "could not be written, which the run's own last line then says), so the rig may not have been made "
                "safe: check the pumps and the cell at the rig, then `labloop resume` continues it (it says first what "
                "the cell or the syringes need)")
    if last["kind"] == "finished":
        done, budget = progress["counts"][State.DONE.value], progress["max_experiments"]
        unsafe = last["data"].get("unsafe") if isinstance(last["data"], dict) else None
        return ((f"finished: budget reached ({done}/{budget})" if done >= budget
                 else f"finished: {last['message'].removeprefix('campaign finished: ')}")
                + (f"; NOT made safe: {'; '.join(unsafe)}" if unsafe else ""))
    said = with_advice(last["message"].removeprefix("campaign stopped: "), last["data"])
    if last["kind"] == "interrupted" and "labloop resume" not in said:  # a Ctrl-C with nothing left for a person
        said += "; `labloop resume` continues it"
    # the make-safe after a stop journals what it could not do as an event of its own, after the stop's
    unsafe = [e["message"] for e in events[index + 1:] if e["kind"] == UNSAFE]
    return f"stopped: {said}" + "".join(f"; {message}" for message in unsafe)


def _last_run_event(events: list[dict[str, Any]]) -> int | None:
    """The index of the journal's last run start or end event (:data:`RUN_EVENTS`), None before any run."""
    return next((i for i in range(len(events) - 1, -1, -1) if events[i]["kind"] in RUN_EVENTS
                 and not (events[i]["kind"] == "interrupted" and events[i]["experiment_id"] is not None)), None)


def _running(events: list[dict[str, Any]]) -> bool:
    """Whether the journal's last run started and has not ended (its last start or end event is a ``run``): a
    process holding the lock before it journals its start (a resume's checks) or after its end runs nothing."""
    index = _last_run_event(events)
    return index is not None and events[index]["kind"] == "run"


#: the events after which a ``waiting`` event no longer holds: the wait for active hours ends with the next
#: experiment's start, the wait for a retrain with its model (or its failure) and the next proposals
WAIT_ENDS = RUN_EVENTS | {"started", "proposed", "model", "retrain_failed", "awaiting_approval", "approved"}


def _now(journal: Journal, events: list[dict[str, Any]], experiments: list[Any], names: dict[str, str]
         ) -> dict[str, Any]:
    """What the live run is doing (``progress.now``), by ``doing``: ``experiment`` (the running one: its id, molecule,
    attempt, since when it runs, and its open ``action``, the protocol step now at an instrument: command,
    instrument, since; None between steps), ``awaiting_approval`` (the batch's ``experiments``, since it was
    proposed), ``waiting`` (``for`` ``active_hours`` or ``retrain``, with the runner's ``message``, since it began
    waiting), ``proposing`` (nothing left to run: the planner proposes, or the run prepares) or ``between`` (the
    ``next`` experiment is about to start). Why: the page and ``log`` said how far a campaign was, not what it was
    doing (an operator's request from a night shift)."""
    running = next((e for e in experiments if e.status == State.RUNNING), None)
    if running is not None:
        actions = [a for a in journal.actions(running.id) if a.attempt == running.attempt]
        open_ = next((a for a in reversed(actions) if a.finished_at is None), None)
        return {"doing": "experiment", "experiment_id": running.id, "name": names.get(running.smiles, ""),
                "smiles": running.smiles, "attempt": running.attempt, "since": running.started_at,
                "action": None if open_ is None else {"command": open_.command, "instrument": open_.instrument,
                                                      "step": open_.step, "since": open_.started_at}}
    waiting = [e for e in experiments if e.status == State.AWAITING_APPROVAL]
    if waiting:
        return {"doing": "awaiting_approval", "experiments": [e.id for e in waiting],
                "since": max(e.created_at for e in waiting)}
    start = _last_run_event(events) or 0
    wait = next((i for i in range(len(events) - 1, start, -1) if events[i]["kind"] == "waiting"), None)
    if wait is not None and not any(e["kind"] in WAIT_ENDS for e in events[wait + 1:]):
        message = events[wait]["message"]  # the runner's (loop/runner.py) or the learner's (learning/learner.py)
        return {"doing": "waiting", "for": "retrain" if "retrain" in message else "active_hours",
                "message": message, "since": events[wait]["time"]}
    queue = [e.id for e in experiments if e.status in (State.PROPOSED, State.INTERRUPTED)]
    return {"doing": "between", "next": queue[0], "since": None} if queue else {"doing": "proposing", "since": None}


def _retraining(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The retrain in progress (``progress.retraining``): its ``round``, how many measurements it learns from and
    ``since`` when, from the last ``retrain`` event that neither a model version nor a failure followed (a resume
    that trains a killed run's round again journals it again); None when none is."""
    index = next((i for i in range(len(events) - 1, -1, -1) if events[i]["kind"] == "retrain"), None)
    if index is None or any(e["kind"] in {"model", "retrain_failed", *RUN_EVENTS} for e in events[index + 1:]):
        return None
    data = events[index]["data"] if isinstance(events[index]["data"], dict) else {}
    return {"round": data.get("round"), "n_measurements": data.get("n_measurements"), "since": events[index]["time"]}


def _retrain_timed(events: list[dict[str, Any]]) -> bool:
    """Whether a retrain has finished (a ``model`` event after a ``retrain`` one): the ETA's pace can then hold one."""
    started = next((i for i, e in enumerate(events) if e["kind"] == "retrain"), None)
    return started is not None and any(e["kind"] == "model" for e in events[started + 1:])


#: the ETA's pace: the mean time between the finishes of the last PACE_OF done experiments, once PACE_FROM are done
PACE_OF, PACE_FROM = 10, 3


def _eta(experiments: list[Any], budget: dict[str, Any], created_at: str, events: list[dict[str, Any]],
         cycle: int = 0) -> dict[str, Any] | None:
    """When the budget is reached at the recent pace (``progress.eta``), an estimate: the experiments left (the
    budget less those done) times the mean time between the finishes of the last :data:`PACE_OF` done experiments,
    or of the last ``cycle`` + 1 (``surrogate.retrain_every``) when more (the first one's from its start), leaving
    out a time between two finishes that a run's start falls in (a stop and a resume); None before :data:`PACE_FROM`
    are done, with none left, or when a run's start falls between every two finishes. Why the time between finishes,
    and its mean: it holds the whole loop's pace, proposing, retraining, waiting for an approval and the failed
    experiments between, each as often as it comes (a retrain every 10 experiments is one time in 10, which a median
    dropped: "about 4 s left" 30 s from the end), where each experiment's own duration said "about 8 s left" 194 s
    from the end of a 1,000-experiment campaign (a long-campaign trial and a newcomer's). With ``budget.max_hours``,
    when it stops the run (``max_hours_at``, counted from the campaign's creation as the runner counts it) and which
    comes ``first``: ``max_hours`` or ``max_experiments``."""
    done = sorted((e for e in experiments if e.status == State.DONE and e.started_at and e.finished_at),
                  key=lambda e: (e.finished_at, e.id))
    left = budget["max_experiments"] - sum(e.status == State.DONE for e in experiments)
    if len(done) < PACE_FROM or left <= 0:
        return None
    finished = [datetime.fromisoformat(e.finished_at) for e in done]
    since = [datetime.fromisoformat(done[0].started_at), *finished[:-1]]
    starts = [datetime.fromisoformat(e["time"]) for e in events if e["kind"] == "run"]
    gaps = [(end - begin).total_seconds() for begin, end in zip(since, finished, strict=True)
            if not any(begin < start <= end for start in starts)]
    if not gaps:  # every time between finishes holds a stop and a resume: no pace to go by ("under 1 s" was said)
        return None
    # over a whole retraining cycle at least (``cycle``: surrogate.retrain_every), so that the mean holds the retrain
    # a proposal waits for once one has run: with retrain_every 10 the last 10 gaps held none while the run waited,
    # and "about 6 s left" stood 97 s from the end (an operator's trial)
    recent = [max(0.0, gap) for gap in gaps[-max(PACE_OF, cycle + 1):]]
    pace = statistics.fmean(recent)
    seconds = left * pace
    eta = {"seconds": seconds, "pace_s": pace, "pace_of": len(recent), "experiments_left": left,
           "max_hours_at": None, "first": "max_experiments"}
    if budget.get("max_hours") is not None:
        deadline = datetime.fromisoformat(created_at) + timedelta(hours=budget["max_hours"])
        eta["max_hours_at"] = deadline.isoformat(timespec="milliseconds")
        ends = datetime.now(deadline.tzinfo) + timedelta(seconds=seconds)
        eta["first"] = "max_hours" if deadline < ends else "max_experiments"
    return eta


#: how a run ended (``progress.ended_as``), from the quietest to the most urgent
ENDINGS = ("not_started", "finished", "interrupted", "stopped", "killed", "unsafe")


def ended_as(events: list[dict[str, Any]]) -> str:
    """How the journal's last run ended, as one word of :data:`ENDINGS`, which the dashboard styles by (its line
    said an unsafe rig in the muted grey of a normal finish, an operator's trial): ``unsafe`` when that run left an
    instrument NOT made safe (its end event names it, or an ``unsafe`` event follows its last start: a pump may still
    be pumping), ``killed`` when it ended without a word (``kill -9``: nothing made the rig safe), ``stopped`` for a
    stop by faults, a person needed or the cluster lost (the run's exit 1), ``interrupted`` for a Ctrl-C,
    ``finished``, or ``not_started``."""
    last = _last_run_event(events)
    if last is None:
        return "not_started"
    start = next((i for i in range(last, -1, -1) if events[i]["kind"] == "run"), 0)
    if any(left_unsafe(e["kind"], e["data"]) for e in events[start:]):
        return "unsafe"
    return {"run": "killed", "finished": "finished", "interrupted": "interrupted"}.get(events[last]["kind"], "stopped")


#: the keys of a ``lab`` event's data that hold raw voltammograms (thousands of points each)
RAW_KEYS = frozenset({"voltammogram", "standard_scan"})


def assumed_by(diffusion: dict[str, Any]) -> dict[str, Any]:
    """``n_electrons`` and ``temperature_K`` of a lab record's D (none without a D): as the record keeps them, or, in a
    journal written before it did, the equation's own (every D labloop computed assumed them: one electron, 25 C)."""
    if not diffusion:
        return {"n_electrons": None, "temperature_K": None}
    return {"n_electrons": diffusion.get("n_electrons", RANDLES_SEVCIK_N_ELECTRONS),
            "temperature_K": diffusion.get("temperature_k", RANDLES_SEVCIK_TEMPERATURE_K)}


def rate_constant(scan: dict[str, Any], diffusion: dict[str, Any], ru: dict[str, Any] | None) -> dict[str, Any]:
    """``k0_cm_s``, ``k0_side`` and ``k0_why`` of one scan rate of a lab record (``scan``: its ``analysis``,
    ``scan_rate_v_s`` and ``voltammogram``'s params; ``ru``: the record's eis estimate, None without one): Nicholson's
    k0 from its dEp, with the record's D and what D assumed, and the ohmic drop :func:`ohmic_drop` says
    (instruments/kinetics.py; ``side`` ``value``, or ``above``/``below`` where dEp only bounds it, ``why`` saying
    why), or None for all without a dEp or a D. Derived when shown, never journalled: ``log --json`` and the report
    say the same k0 of the same record."""
    analysis = scan.get("analysis") or {}
    dep_v, rate = analysis.get("dep_v"), scan.get("scan_rate_v_s")
    if dep_v is not None and "chemically_irreversible" in (analysis.get("flags") or ()):
        # a follow-up reaction widens dEp too: Nicholson's k0 from it read 8x low, as a value (a chemist's trial)
        return {"k0_cm_s": None, "k0_side": None,
                "k0_why": "chemically irreversible at this rate: the decay of what the scan made widens dEp too, so "
                          "dEp gives no k0"}
    known = dep_v is not None and rate is not None and diffusion.get("diffusion_cm2_s") is not None
    assumed = assumed_by(diffusion)
    estimate = nicholson_k0(dep_v, rate, diffusion["diffusion_cm2_s"], n_electrons=assumed["n_electrons"],
                            temperature_k=assumed["temperature_K"], ohmic_v=ohmic_drop(scan, ru)) if known else None
    return {"k0_cm_s": estimate.k0_cm_s if estimate else None, "k0_side": estimate.side if estimate else None,
            "k0_why": estimate.why if estimate else None}


def ohmic_drop(scan: dict[str, Any], ru: dict[str, Any] | None) -> float | None:
    """The ohmic drop (V) at a scan's two peaks that the analysis took out after it: ``(|ipa| + |ipc|)`` times the
    measured Ru less what the potentiostat compensated during the scan; None when no eis step measured Ru (then the
    whole drop, of unknown size, is in dEp). Why: a chemist's protocol without eis, or with no compensation on the
    device, gave k0 "values" 11-90x below the simulated ones, the drop read as slow kinetics (a trial)."""
    if ru is None or ru.get("ru_ohm") is None:
        return None
    analysis = scan.get("analysis") or {}
    compensated = ((scan.get("voltammogram") or {}).get("params") or {}).get("ir_comp_ohm") or 0.0
    peaks = abs(analysis.get("ipa_a") or 0.0) + abs(analysis.get("ipc_a") or 0.0)
    return peaks * max(ru["ru_ohm"] - compensated, 0.0)


def _with_rate_constants(data: dict[str, Any]) -> dict[str, Any]:
    """A lab event's data (its voltammograms still in it: their params hold the compensation) with each scan's
    :func:`rate_constant`: a chemist's trial found k0 in the report's CSV and page but not in ``log --json``."""
    scans = data.get("scans")
    if not isinstance(scans, list):
        return data
    diffusion = data.get("diffusion") if isinstance(data.get("diffusion"), dict) else {}
    ru = data.get("ru") if isinstance(data.get("ru"), dict) else None
    return {**data, "scans": [{**scan, **rate_constant(scan, diffusion, ru)} if isinstance(scan, dict) else scan
                              for scan in scans]}


def _without_raw(event: dict[str, Any]) -> dict[str, Any]:
    """A ``lab`` event with its results but not its raw voltammograms, which made the document megabytes per
    lab-grade experiment (the dashboard sends it on every change); the journal keeps them, and
    ``labloop report`` draws them (:meth:`Journal.lab_record`). Each scan gains the k0 its dEp and the record's D
    give (:func:`_with_rate_constants`). The past measurements' event without its list of measurements and bounds,
    for the same reason (:meth:`Journal.past_measurements` reads them)."""
    if event["kind"] == PAST_MEASUREMENTS and isinstance(event["data"], dict):
        return {**event, "data": {k: v for k, v in event["data"].items() if k not in ("measurements", "bounds")}}
    if event["kind"] != "lab" or not isinstance(event["data"], dict):
        return event

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in RAW_KEYS}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return {**event, "data": strip(_with_rate_constants(event["data"]))}


def render(snap: dict[str, Any], last: int = 20, events: int = 10) -> Group:
    """The tables of ``labloop log``: a header, the ``last`` experiments, their measurements, the best so
    far, and the most recent ``events``."""
    experiments = snap["experiments"][-last:]
    hidden = len(snap["experiments"]) - len(experiments)
    table = _experiments_table(experiments)
    if hidden:
        table.caption = (f"{hidden} earlier {plural(hidden, 'experiment')} not shown: --last "
                         f"{len(snap['experiments'])} shows all")
        table.caption_justify = "left"
    edges = hit_edges(snap["campaign"]["objective"])
    waiting = [e for e in snap["experiments"] if e["status"] == "awaiting_approval"]
    shown = {e["id"] for e in experiments}
    warnings = [e for e in snap["events"] if e["kind"] == WARNING]
    # one said once a run stands for the experiments after it: shown whichever experiments are listed (a wave
    # narrower than its electrons, said of experiment 1, was in no table of the last 20: a chemist's trial), the
    # newest of each kind, which stands in for those before it (a dilution said again as it changed, each run's)
    standing = {e["data"].get("warning"): e for e in warnings if e["experiment_id"] not in shown and _stands(e)}
    warned = [e for e in warnings if e["experiment_id"] in shown or e in standing.values()]
    past = next((e["data"] for e in snap["events"] if e["kind"] == PAST_MEASUREMENTS and isinstance(e["data"], dict)),
                {})
    return Group(
        _header(snap),
        *((_past_notes_table(past["notes"]),) if past.get("notes") else ()),
        table,
        *((_waiting_table(waiting),) if waiting else ()),
        _measurements_table([e for e in experiments if e["potential_v"] is not None or e["flags"]], edges),
        _best_table(snap["best"], edges,
                    None if snap["progress"]["hits"] is None else snap["campaign"]["objective_text"]),
        *((_warnings_table(warned, len(warnings) - len(warned), len(snap["experiments"])),) if warnings else ()),
        # a rig left unsafe stays in view however many events came after it (the rig may still be pumping)
        _events_table([e for e in snap["events"][:-events] if left_unsafe(e["kind"], e["data"])]
                      + snap["events"][-events:]),
    )


def progress_line(snap: dict[str, Any]) -> str:
    """The header's counts as one plain line (``done 12/30  running 1 ... hits 3``), for a follow that appends."""
    return _header(snap).plain.splitlines()[1]


def counts_apart(progress: dict[str, Any]) -> dict[str, int]:
    """A snapshot's experiments per state with vetoes counted apart: ``failed`` less the ``vetoed``, which follow
    the states. Why: a veto is a person's decision, not a failure of the rig or the molecule's measurement, and the
    header read "failed 9" for 8 vetoes (an operator's trial); ``counts.failed`` of ``--json`` keeps the journal's
    state, which the planner counts. What ``labloop log``, the report and a run's last line show."""
    counts = dict(progress["counts"])
    counts[State.FAILED.value] -= progress["vetoed"]
    return {**counts, "vetoed": progress["vetoed"]}


def event_line(event: dict[str, Any]) -> str:
    """One event as ``time zone  kind  message``, the events table's row as one plain line; its time names the zone
    the table's title names (:func:`local_time`)."""
    return printable(f"{local_time(event['time'])}  {event['kind']}  {event['message']}")


def describe_objective(objective: dict[str, Any]) -> str:
    """``oxidation potential in [4.50, 4.60] V vs Li/Li+``, ``maximize reduction potential``, ..."""
    quantity = objective["quantity"].replace("_", " ")
    if objective["goal"] == "window":
        low, high = objective["window_v"]
        return f"{quantity} in [{low:.2f}, {high:.2f}] V vs Li/Li+"
    threshold = objective.get("threshold_v")
    relation = ">=" if objective["goal"] == "maximize" else "<="
    hit = f" (hit {relation} {threshold:.2f} V)" if threshold is not None else ""
    return f"{objective['goal']} {quantity} vs Li/Li+{hit}"


def _header(snap: dict[str, Any]) -> Text:
    campaign, progress = snap["campaign"], snap["progress"]
    counts = progress["counts"]
    text = Text()
    text.append(printable(campaign["name"]), style="bold")
    runs = campaign["runs"]
    if runs["dry"]:  # the report's page and figures say so; the log said nothing (a referee's trial)
        text.append("  dry run: simulated data" if not runs["real"] else
                    f"  {runs['dry']} of {runs['dry'] + runs['real']} runs dry: partly simulated data", style="yellow")
    text.append(f"  seed {campaign['seed']}  planner {campaign['planner']['kind']}  "
                f"objective: {describe_objective(campaign['objective'])}\n")
    text.append(f"done {counts['done']}/{progress['max_experiments']}")
    apart = counts_apart(progress)
    for state in ("running", "proposed", "interrupted", "failed"):
        text.append(f"  {state} {apart[state]}")
    if apart["vetoed"]:
        text.append(f"  vetoed {apart['vetoed']}")
    if counts.get("awaiting_approval"):
        text.append(f"  awaiting approval {counts['awaiting_approval']}", style="bold magenta")
    if progress["hits"] is not None:
        text.append(f"  hits {progress['hits']}", style="green" if progress["hits"] else None)
        if progress.get("hits_by_bound"):  # failed scans whose waves lay past the threshold, beyond the scan's end
            text.append(f" ({hits_by_bound_said(progress['hits_by_bound'])})", style="green")
    if (past := progress.get("past")) is not None:
        bounds = past["bounds_n"]
        text.append(f"  (+ {past['measurements_n']} past {plural(past['measurements_n'], 'measurement')}"
                    + (f" and {bounds} {plural(bounds, 'bound')}" if bounds else "")
                    + ("" if past["hits"] is None else f", {past['hits']} {plural(past['hits'], 'hit')}") + ")")
    if counts["running"] and not progress["run_active"]:  # after a crash or kill -9
        # not "interrupted", beside a count of interrupted experiments that does not count it (a trial)
        text.append("  (no run holds this journal: the running experiment stopped with the run, and `labloop resume` "
                    "runs it again)", style="yellow")
    if snap["models"]:
        text.append(f"  model v{snap['models'][-1]['version']}")
    if (live := live_line(progress)) is not None:
        text.append(f"\n{live}", style="cyan")
    if progress["ended"] is not None:
        style = {"finished": "green", "not_started": None, "unsafe": "bold red"}.get(progress["ended_as"], "yellow")
        text.append(f"\n{printable(progress['ended'])}", style=style)
    return text


def live_line(progress: dict[str, Any]) -> str | None:
    """What a live run is doing, a retrain in progress and the ETA, as the one line of ``labloop log``'s header
    (``now: experiment 7 o-toluidine (Cc1ccccc1N): cv on potentiostat since 12-05 10:21:03 UTC+1; retraining model
    (round 2, since ...); about 1 h 20 min left at the recent pace (...)``), journal text made printable; None
    while no run is live. The dashboard says it in the same words (static/dashboard.js, liveItems)."""
    now = progress.get("now")
    if now is None:
        return None
    parts = [f"now: {doing(now)}"]
    if (retraining := progress.get("retraining")) is not None:
        parts.append(f"retraining model (round {retraining['round']}, since {local_time(retraining['since'])})")
    if (eta := progress.get("eta")) is not None:
        parts.append(eta_text(eta))
    return printable("; ".join(parts))


def doing(now: dict[str, Any]) -> str:
    """``progress.now`` in words: ``experiment 7 o-toluidine (Cc1ccccc1N): cv on potentiostat since 12-05 10:21:03
    UTC+1``, ``waiting for approval of experiments 8, 9 (proposed 12-05 ...)``, the runner's own words of a wait,
    ``proposing the next experiments``, ``about to start experiment 8``."""
    if now["doing"] == "experiment":
        molecule = f"{now['name']} ({now['smiles']})" if now["name"] else now["smiles"]
        attempt = f" (attempt {now['attempt']})" if now["attempt"] > 1 else ""
        action = now["action"]
        step = (f"{action['command']} on {action['instrument']} since {local_time(action['since'])}" if action
                else f"between protocol steps (running since {local_time(now['since'])})")
        return f"experiment {now['experiment_id']}{attempt} {molecule}: {step}"
    if now["doing"] == "awaiting_approval":
        ids = now["experiments"]
        return (f"waiting for approval of {plural(len(ids), 'experiment')} {', '.join(map(str, ids))} (proposed "
                f"{local_time(now['since'])}): labloop approve, or the dashboard")
    if now["doing"] == "waiting":
        return f"waiting since {local_time(now['since'])}: {now['message']}"
    if now["doing"] == "between":
        return f"about to start experiment {now['next']}"
    return "proposing the next experiments"


def eta_text(eta: dict[str, Any]) -> str:
    """``progress.eta`` in words: ``about 1 h 20 min left at the recent pace (4 min 10 s per experiment, the mean of
    the last 10; an estimate)``, and with ``budget.max_hours`` which stops the run first. What rounds to 0 s is
    ``under 1 s``: a zero-latency dry run's experiments take milliseconds, and "about 0 s left (median 0 s per
    experiment ...)" said of a run still going that its experiments took no time."""
    left = "under 1 s" if round_seconds(eta["seconds"]) == 0 else f"about {duration(eta['seconds'])}"
    pace = "under 1 s" if round_seconds(eta["pace_s"]) == 0 else duration(eta["pace_s"])
    text = f"{left} left at the recent pace ({pace} per experiment, the mean of the last {eta['pace_of']}; an estimate)"
    if eta.get("untimed_retrain"):
        text += ", plus the retrain in progress, which no finished one has timed yet"
    if eta["max_hours_at"] is not None:
        at = local_time(eta["max_hours_at"])
        text += (f", but budget.max_hours stops the run first, at {at}" if eta["first"] == "max_hours"
                 else f", before budget.max_hours stops the run at {at}")
    return text


def round_seconds(seconds: float) -> int:
    """Whole seconds as :func:`duration` and the dashboard (dashboard.js, duration) say them: halves up, 0 at least."""
    return max(0, math.floor(seconds + 0.5))


def duration(seconds: float) -> str:
    """``45 s``, ``7 min 47 s``, ``8 h 20 min``, ``2 d 3 h``: as the dashboard says a duration (dashboard.js,
    duration), rounded as it rounds (halves up)."""
    s = round_seconds(seconds)
    m, h = s // 60, s // 3600
    if s < 60:
        return f"{s} s"
    if m < 60:
        return f"{m} min {s % 60} s"
    return f"{h} h {m % 60} min" if h < 24 else f"{h // 24} d {h % 24} h"


def _text(value: str) -> Text:
    """Journal text as rich text, never markup, with control characters escaped (a SMILES or a device's reply
    may hold ESC sequences that would drive the terminal)."""
    return Text(printable(value))


def _time(stamp: str | None) -> str:
    return "" if stamp is None else datetime.fromisoformat(stamp).astimezone().strftime("%m-%d %H:%M:%S")


def zone() -> str:
    """This computer's offset from UTC now, as the tables' titles name it (``UTC+1``, ``UTC-5:30``, ``UTC``): the
    times are local, and event texts quote UTC stamps; the dashboard names the browser's zone in the same words
    (orchestrator/dashboard/static/dashboard.js, zoneLabel), so the two agree on what a time means."""
    offset = datetime.now().astimezone().utcoffset()
    minutes = round(offset.total_seconds() / 60) if offset is not None else 0
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{'+' if minutes > 0 else '-'}{hours}{f':{rest:02d}' if rest else ''}" if minutes else "UTC"


def local_time(stamp: str) -> str:
    """A journal's UTC stamp as this computer's time with its zone, ``12-05 10:21:03 UTC+1``: for a line, which has
    no title to name the zone in as a table has (``labloop log --follow``'s lines, a resume's word of a killed run).
    Why: an operator following a run over SSH from another zone could not tell what zone a line's time was in."""
    return f"{_time(stamp)} {zone()}"


def _volts(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _experiments_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title=f"experiments (times {zone()})", title_justify="left")
    for name in ("id", "smiles", "status", "try", "started", "finished", "cause"):
        table.add_column(name, overflow="fold", no_wrap=name not in ("smiles", "cause"),
                         justify="right" if name in ("id", "try") else "left")
    style = {"done": "green", "failed": "red", "interrupted": "yellow", "running": "cyan"}
    for e in rows:
        table.add_row(str(e["id"]), _text(e["smiles"]), Text(e["status"], style=style.get(e["status"], "")),
                      str(e["attempt"]), _time(e["started_at"]), _time(e["finished_at"]), _text(e["cause"] or ""))
    return table


def _prediction_cells(e: dict[str, Any]) -> tuple[str, str]:
    """An experiment's ``predicted ± 1 sd`` cell, marked `` *`` when predicted before any measurement ('6.42 ± 2.01'
    for a molecule measured at 4.58 alarmed a chemist: a trial), and its ``model`` cell (which model predicted it)."""
    predicted = "" if e["mu"] is None else f"{e['mu']:.2f} ± {e['sigma'] or 0:.2f}"
    if predicted and e["uncalibrated"]:
        predicted += " *"
    return predicted, "" if e["model_version"] is None else f"v{e['model_version']}"


def _waiting_table(rows: list[dict[str, Any]]) -> Table:
    """The batch awaiting approval with what a person decides it by: each molecule's prediction +/- 1 sd (of the
    calibrated model that proposed it) and its planned conditions. Why: the experiments table showed them without a
    prediction, the held batch's event line cut long SMILES and gave no sd, and only ``log --json`` had the numbers
    (a lab head's trial)."""
    table = Table(title="awaiting approval (labloop approve; predicted V vs Li/Li+)", title_justify="left")
    named = any(e["name"] for e in rows)
    for name in ("id", *(("name",) if named else ()), "smiles", "predicted ± 1 sd", "model", "conditions"):
        table.add_column(name, overflow="fold", justify="left" if name in ("name", "smiles", "conditions") else "right")
    for e in rows:
        predicted, model = _prediction_cells(e)
        conditions = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                               for k, v in (e["conditions"] or {}).items())
        table.add_row(str(e["id"]), *_named(e, named), predicted, model, _text(conditions))
    if any(e["mu"] is not None and e["uncalibrated"] for e in rows):
        table.caption = "* predicted before any measurement, on the DFT prior's scale, which a lab's can sit volts from"
        table.caption_justify = "left"
    return table


def _measurements_table(rows: list[dict[str, Any]], edges: tuple[float, ...]) -> Table:
    electrodes = sorted({printable(e["reference"]) for e in rows if e["reference"]})
    against = " / ".join(electrodes) if electrodes else "the cell's reference"  # as the potentiostat labels them
    table = Table(title=f"measurements (V vs Li/Li+; E1/2 vs {against})", title_justify="left")
    named = any(e["name"] for e in rows)
    for name in ("id", *(("name",) if named else ()), "smiles", "potential", "predicted ± 1 sd", "model", "E1/2",
                 "dEp mV", "flags"):
        table.add_column(name, overflow="fold", justify="left" if name in ("name", "smiles", "flags") else "right")
    first = False
    for e in rows:
        predicted, model = _prediction_cells(e)
        first = first or predicted.endswith(" *")
        dep = "" if e["dep_v"] is None else f"{1000 * e['dep_v']:.0f}"
        table.add_row(str(e["id"]), *_named(e, named), potential_said(e["potential_v"], edges), predicted, model,
                      _volts(e["e_half_v"]), dep, _text(", ".join(e["flags"])))
    captions = []
    if first:
        captions.append("* the first batch, predicted before any measurement: on the DFT prior's scale, which a lab's "
                        "can sit volts from, so bayes and greedy widen the sd by that unknown offset; from the next "
                        "batch on, predictions are calibrated to the measurements")
    rates = next((e["protocol_conditions"]["scan_rates_v_s"] for e in rows
                  if len(e["protocol_conditions"].get("scan_rates_v_s") or ()) > 1), None)
    if rates:  # a cv of several rates: which one the single E1/2 and dEp are (a chemist's trial asked)
        captions.append(f"E1/2 and dEp: the first scan rate's ({rates[0]:g} V/s) of the cv's "
                        f"{', '.join(f'{r:g}' for r in rates)} V/s; every rate's in `labloop report`'s lab_grade.csv")
    if captions:
        table.caption = "\n".join(captions)
        table.caption_justify = "left"
    return table


def _best_table(rows: list[dict[str, Any]], edges: tuple[float, ...], objective: str | None) -> Table:
    """The best so far, ranked by the objective; with ``objective`` (its words, when it defines hits) a ``hit``
    column says which are hits: a window's ranking lists molecules outside it too (4.609 V fifth for 4.50-4.60 V),
    and a chemist ordering "the top 5" would have ordered non-hits (a PI's audit)."""
    table = Table(title="best so far (V vs Li/Li+)", title_justify="left")  # as the measurements' potential
    named = any(e["name"] for e in rows)
    for name in ("rank", "id", *(("name",) if named else ()), "smiles", "potential", *(("hit",) if objective else ())):
        table.add_column(name, overflow="fold", justify="left" if name in ("name", "smiles", "hit") else "right")
    for rank, e in enumerate(rows, start=1):
        hit = (Text("yes", style="green") if e["hit"] else Text("no", style="yellow"),) if objective else ()
        table.add_row(str(rank), str(e["id"]), *_named(e, named), potential_said(e["potential_v"], edges), *hit)
    if objective and not all(e["hit"] for e in rows):
        table.caption = f"hit no: outside the objective ({objective}), ranked here as nearest to it, not a hit"
        table.caption_justify = "left"
    return table


def _named(experiment: dict[str, Any], named: bool) -> tuple[Text, ...]:
    """The molecule's cells: its library name (when the table shows names; cut at :data:`SHOWN_NAME_CHARS`) and its
    SMILES. Why both: a chemist knows the molecules by name, a script and the planner by SMILES."""
    smiles = _text(experiment["smiles"])
    return (_text(clipped(experiment["name"], SHOWN_NAME_CHARS)), smiles) if named else (smiles,)


def hits_by_bound_said(n: int) -> str:
    """``+ 3 by bound: failed, the wave beyond the scan and past the threshold``: how ``log``'s header and the report
    count the hits by bound after the hits."""
    return f"+ {n} by bound: failed, the wave beyond the scan and past the threshold"


def nominal_offset(config: dict[str, Any]) -> float:
    """Where the cell's reference electrode sits vs Li/Li+ (V) by the journalled campaign's ``cell`` (3.2 V unless it
    said): the scale a failed scan's bound is put on, as the planner learnt it (orchestrator/loop/runner.py)."""
    return float((config.get("cell") or {}).get("reference_offset_v", 3.2))


def _hits_by_bound(journal: Journal, experiments: list[Any], objective: Objective, offset_v: float) -> set[int]:
    """The ids of the experiments whose analysis failed with a bound that proves a hit (:meth:`Objective.bound_is_hit`);
    none for a window's goal (no one-sided bound proves one), without reading a measurement."""
    if objective.goal == "window" or objective.threshold_v is None:
        return set()
    found = set()
    for e in experiments:
        if e.status == State.FAILED and (e.cause or "").startswith(ANALYSIS_FAILURE):
            analysis = journal.analysis(e.id)
            if analysis is None:
                continue
            if objective.bound_is_hit(analysis.on_li_scale(offset_v).bound(objective.quantity)):
                found.add(e.id)
    return found


def run_was_dry(event: dict[str, Any]) -> bool:
    """Whether a ``run`` event's run was a dry run (orchestrator/cli/run.py journals ``dry_run``; an older journal's
    says it in its message alone)."""
    data = event["data"]
    return bool(data["dry_run"]) if isinstance(data, dict) and "dry_run" in data else \
        "dry run on emulators" in event["message"]


def _dry_at(started_at: str | None, runs: list[tuple[datetime, bool]]) -> bool | None:
    """Whether the run that started an experiment at ``started_at`` (the last of ``runs`` begun by then) was a dry
    run; None for an experiment never started (or one a journal holds no run before)."""
    if started_at is None:
        return None
    began = datetime.fromisoformat(started_at)
    return next((dry for time, dry in reversed(runs) if time <= began), None)


def _stands(event: dict[str, Any]) -> bool:
    """Whether a :data:`WARNING` event stands for the experiments after its own too (said once a run, or again only
    when it changes: protocols/executor.py ``OnWarning``)."""
    return isinstance(event["data"], dict) and bool(event["data"].get("for_later_experiments"))


def warned_of(event: dict[str, Any]) -> str:
    """The experiment a :data:`WARNING` event is of, as the tables show it: ``20``, or ``from 20`` for one that
    stands for the experiments after it too."""
    return f"from {event['experiment_id']}" if _stands(event) else str(event["experiment_id"])


def _warnings_table(rows: list[dict[str, Any]], hidden: int, experiments: int) -> Table:
    """The warnings about the listed experiments' measurements (:data:`WARNING` events), and those that stand for
    the experiments after theirs, by experiment; ``hidden``: how many others there are, of experiments not listed
    (said, with the ``--last`` that lists them). Why: the console said them as they came, and the events table keeps
    only the last few events."""
    table = Table(title="warnings about the experiments shown", title_justify="left")
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("warning", overflow="fold")
    for event in rows:
        table.add_row(warned_of(event), _text(event["message"]))
    if hidden:
        table.caption = (f"{hidden} more {plural(hidden, 'warning')} about experiments not shown: --last "
                         f"{experiments} shows all")
        table.caption_justify = "left"
    return table


def _past_notes_table(notes: list[str]) -> Table:
    """What was said of the campaign's past measurements as their table was read (a scale mix-up, values outside the
    electrolyte's window, repeats that disagree): said once on the terminal when the journal was created, and the
    reason a model learnt from them errs, which nothing else in the log would show (a chemist's trial)."""
    table = Table(title="said of the past measurements when they were read", title_justify="left")
    table.add_column("note", overflow="fold")
    for note in notes:
        table.add_row(_text(note))
    return table


def _events_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title=f"recent events (times {zone()})", title_justify="left")
    for name in ("time", "kind", "message"):
        table.add_column(name, overflow="fold", no_wrap=name != "message")
    for event in rows:
        table.add_row(_time(event["time"]), _text(event["kind"]), _text(event["message"]))
    return table
