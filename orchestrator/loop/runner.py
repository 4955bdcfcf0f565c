"""The campaign loop: propose -> record -> run the protocol -> record -> learn -> check the stop rules.

Why it is written around the journal: the journal is the only memory of a campaign. Every state change is
committed before the next instrument action, and everything the loop decides — what is pending, which
planner step comes next, how many experiments are done, which model is newest — it reads back from the
journal. So a run killed at any moment (even ``kill -9``) and resumed continues exactly where the journal
says it stopped, and ends at the same budget as an uninterrupted run (docs/architecture.md).

One proposal, followed from planner to journal (:meth:`Runner._propose`, :meth:`Runner._run_experiment`):
the planner state is built from the journal and saved; the planner proposes; the proposals are recorded as
``proposed`` experiments; each is started (``running``, a new attempt), its protocol runs with every
action journalled as it happens, its voltammogram and measurement are recorded, and it ends ``done`` —
or ``failed`` with its cause (a typed instrument error, an unusable voltammogram), after which the rig is
put in a safe state and the campaign goes on — until ``budget.max_consecutive_faults`` instrument faults in
a row (the rig needs a person) or ``budget.max_consecutive_failed_analyses`` unusable voltammograms in a row
(a dead electrode or a wrong window looks like that; a few molecules beyond the window do not); at once when a
manual step finds nobody to answer (:class:`NoOperator`: the experiment is interrupted, not failed, and runs
again on resume).
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import signal
import time
import traceback
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import datetime
from functools import partial
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

from threadpoolctl import threadpool_limits

from labloop.core.errors import (
    SAID_CHARS,
    BlankFailed,
    BlankNeedsPurge,
    ClusterLostError,
    InputError,
    InstrumentError,
    JournalWriteError,
    NoOperator,
    PumpDisconnected,
    RigNotReady,
    SafetyBreach,
    SafetyLimitExceeded,
    said,
)
from labloop.core.text import clipped, plural, shell_word, traceback_hint
from labloop.instruments.cv_analysis import (
    CVFlag,
    CVResult,
    ReferencedResult,
    inverted_peak_v,
    measurement_quality,
    to_li_scale,
)
from labloop.instruments.voltammogram import Voltammogram
from labloop.orchestrator import console
from labloop.orchestrator.config.campaign import Campaign
from labloop.orchestrator.journal.store import (
    ANALYSIS_FAILURE,
    CELL_EMPTIED,
    SYRINGES_FILLED,
    THEN_RESUME,
    UNSAFE,
    VETOED,
    WARNING,
    ExperimentRow,
    Journal,
    State,
)
from labloop.orchestrator.learning import models
from labloop.orchestrator.learning.learner import Learning
from labloop.orchestrator.learning.predictions import LibraryPredictions
from labloop.orchestrator.loop.active_hours import ActiveHours
from labloop.orchestrator.loop.interrupts import EXIT_INTERRUPTED, Interrupted, Interrupts
from labloop.orchestrator.loop.rig import HEALTH_ERROR, Rig
from labloop.planners import Observation, PlannerState, bound_fields, make_planner
from labloop.planners.base import past_observations
from labloop.planners.feedback import DescriptorTable
from labloop.protocols.executor import ExperimentOutcome, LabRecord, pumps_into_cell, usable, warning_data
from labloop.protocols.steps import Contents, repeat_problem
from labloop.surrogate.compute import lost_cluster

if TYPE_CHECKING:
    from rich.progress import Progress

    from labloop.protocols.executor import ProtocolExecutor

log = logging.getLogger(__name__)

#: labloop's own code: an exception raised in it is labloop's bug, not a plug-in's
PACKAGE = Path(__file__).resolve().parents[2]

EXIT_OK = 0
EXIT_FAULTS = 1
#: a run that stopped for a person before anything moved in it (``resume`` without ``--cell-emptied``)
EXIT_REFUSED = 2
WAIT_POLL_S = 1.0
#: how often a batch awaiting approval is checked (a person's click should start the rig promptly)
APPROVAL_POLL_S = 0.2
#: the journal's events of what an operator did by hand, as the action the count replays for each
BY_HAND = {CELL_EMPTIED: "rinse", SYRINGES_FILLED: "fill_syringes"}
#: how a refusal starts its cause: the proposal could not be run as asked (a safety limit, a bad parameter)
REFUSED_FAILURE = "refused: "
#: how a refusal by the safety limits starts its cause: the limits refused what the protocol computed for the
#: candidate (a window around its prediction, a planned volume), which is the campaign file's doing, not the molecule's
REFUSED_BY_LIMITS = f"{REFUSED_FAILURE}{SafetyLimitExceeded.__name__}"
#: the ways an experiment fails: the rig raised an error, the voltammogram was unusable, or the proposal was
#: refused before anything moved (its window or volume breaks a limit: the campaign file's to fix, not the rig's)
INSTRUMENT_FAULT = "instrument"
ANALYSIS_FAULT = "analysis"
REFUSED_FAULT = "refused"
#: how a planner is told of a refusal by the safety limits: not the molecule's failure (:data:`REFUSED_BY_LIMITS`)
CONFIGURATION_FAULT = "configuration"
#: how the cause of an experiment a plug-in driver's bug (an error that is no instrument error, from the plug-in's
#: code) or labloop's own failed starts; the run counts both with the instrument faults in a row
DRIVER_BUG_FAILURE = "a bug in driver "
LABLOOP_BUG_FAILURE = "a labloop bug: "
#: how a planner is told of a driver's bug: the software's failure, not the rig's nor the molecule's, and the
#: molecule is proposed again whatever its count (planners/base.py ``tried``). Why: a plug-in whose dispense raised
#: AttributeError failed every experiment, and each molecule was left after its second such failure, a hit of the
#: clean run among them (a plug-in engineer's trial). A labloop bug is told as an instrument fault, left after its
#: second: it may be the molecule's data's (an analysis that fails on its scan), which would fail every retry
SOFTWARE_FAULT = "software"
#: how a stop whose fix is the campaign file's ends its advice: ``resume`` runs the journal's campaign as it began, and
#: ``run`` refuses the changed file as another campaign, so the fixed file needs a new store
WITH_A_NEW_STORE = ("run it with a new store (`labloop run FILE --store NEW.db`): a journal keeps the protocol it "
                    "began with")
#: per way of failing: the budget field that limits how many in a row, what the stop message calls them, and what
#: to look at, said in the stop's event (None: the stop's advice, :data:`ADVISED`, says it all)
FAULT_LIMITS = {INSTRUMENT_FAULT: ("max_consecutive_faults", "instrument faults", "the rig needs a person"),
                ANALYSIS_FAULT: ("max_consecutive_failed_analyses", "unusable voltammograms",
                                 "check the electrodes and the cv window"),
                REFUSED_FAULT: ("max_consecutive_failed_analyses", "proposals refused by the safety limits", None)}
#: how an unusable voltammogram's cause says its current looks inverted (:meth:`Runner._unusable`), which the stop
#: after a row of them then blames on the driver's sign, not the electrodes or the window (:meth:`Runner._advice`)
INVERTED_SAID = "the current looks inverted"
#: the ways of failing whose stop the CLI ends with this advice (``{store}``: the journal), not with `labloop resume`
#: alone: their fix may be the campaign file's (a refused proposal's always is), which ``resume`` cannot take, since
#: it runs the journal's protocol as it began (a chemist who widened the cv window and resumed got 9 more failures)
ADVISED = {ANALYSIS_FAULT: "see `labloop log {store}`; for the electrodes, `labloop resume {store}` once they are "
                           "fixed; for the cv window, fix it in the campaign file and " + WITH_A_NEW_STORE,
           REFUSED_FAULT: "fix the protocol's windows or volumes, or safety, in the campaign file (a cv window around "
                          "an uncalibrated prediction, half_width_v, can leave potential_limits_v), and "
                          + WITH_A_NEW_STORE}
#: planners fit small models (the calibration, the conditions' Gaussian process: matrices of at most a few
#: hundred rows) on one BLAS thread: a multi-threaded BLAS spends more time synchronising than computing on
#: them, most of all while a retrain occupies the other core (a bayes proposal with 120 observations: 0.11 s
#: on one thread, 0.64-0.96 s on two)
PLANNER_BLAS_THREADS = 1


class HealthClock:
    """Says when the instruments' health check is due: before the first experiment, then every ``minutes``.
    Instruments are driven from the runner's thread alone (serial lines are not shared between threads),
    so the check runs between experiments when this says it is due."""

    def __init__(self, minutes: float) -> None:
        self.interval_s = 60.0 * minutes
        self._next = time.monotonic()

    def due(self) -> bool:
        """True once per interval (and at the start); the caller then checks the instruments."""
        if time.monotonic() < self._next:
            return False
        self._next = time.monotonic() + self.interval_s
        return True


#: the longest SMILES a held batch's line and alert show whole (orchestrator/loop/runner.py Runner._held_said)
HELD_SMILES_CHARS = 40


def sample_ids(library: Sequence[str]) -> dict[str, str]:
    """The sample id of each library molecule (``S0001``...: its first row), as vials are labelled."""
    return {smiles: f"S{index + 1:04d}" for index, smiles in reversed(list(enumerate(library)))}


def _history(journal: Journal) -> Iterator[tuple[str, Mapping[str, Any], str | None]]:
    """Every action of the journal as ``(command, params, outcome)``, in the order they started, with what an
    operator said was done by hand in between (:data:`BY_HAND`: a completed rinse where the cell was emptied,
    ``fill_syringes`` where every syringe was filled): what :meth:`ProtocolExecutor.replay` counts the
    cell's and the syringes' contents from on a resume."""
    by_hand = sorted((e.time, BY_HAND[e.kind]) for e in journal.events() if e.kind in BY_HAND)
    for action in sorted((a for e in journal.experiments() for a in journal.actions(e.id)), key=lambda a: a.id):
        while by_hand and by_hand[0][0] < action.started_at:
            yield by_hand.pop(0)[1], {}, "ok"
        yield action.command, action.params, action.outcome
    yield from ((command, {}, "ok") for _, command in by_hand)


def _stopped_after_pumping(journal: Journal) -> dict[int, str]:
    """The experiments whose liquid may still be in the cell, each with how it ended: an interrupted one (run again
    on this resume; a ``running`` one, after a ``kill -9``, counts too, as the resume marks it interrupted) and one
    failed by the rig or a driver (not by its analysis, its refusal or a veto: the protocol ran to its end, or
    nothing moved) whose rinse after the failure did not end ``ok``, that pumped into the cell after it was last
    emptied (a rinse or clean that ended ``ok``, or a ``cell_emptied`` event): what the run would have refused the
    next experiment for (:meth:`ProtocolExecutor.refuse_their_leftover`)."""
    experiments = journal.experiments()
    actions = {e.id: journal.actions(e.id) for e in experiments}
    emptied = [a.started_at for done in actions.values() for a in done
               if a.command in ("rinse", "clean") and a.outcome == "ok"]
    emptied += [e.time for e in journal.events() if e.kind == CELL_EMPTIED]
    since = max(emptied, default="")
    left: dict[int, str] = {}
    for experiment in experiments:
        if experiment.status not in (State.INTERRUPTED, State.RUNNING, State.FAILED):
            continue
        if experiment.status == State.FAILED and (experiment.cause or "").startswith(
                (ANALYSIS_FAILURE, REFUSED_FAILURE, VETOED)):
            continue
        pumped = [a.started_at for a in actions[experiment.id] if pumps_into_cell(a.command, a.params)]
        if pumped and pumped[-1] > since:
            left[experiment.id] = State.FAILED if experiment.status == State.FAILED else State.INTERRUPTED
    return left


def stop_reason(campaign: Campaign, experiments: Sequence[ExperimentRow], started: datetime) -> str | None:
    """Why the campaign stops now (its budget, ``max_hours`` since ``started``, ``stop_after_hits``), or None."""
    budget, objective = campaign.budget, campaign.objective
    done = [e for e in experiments if e.status == State.DONE]
    if len(done) >= budget.max_experiments:
        return f"{len(done)} experiments done (budget.max_experiments)"
    if budget.max_hours is not None:
        hours = (datetime.now(started.tzinfo) - started).total_seconds() / 3600
        if hours >= budget.max_hours:
            return f"{hours:.2f} h since the campaign started (budget.max_hours)"
    if budget.stop_after_hits is not None:
        hits = sum(objective.is_hit(e.potential_v) for e in done if e.potential_v is not None)
        if hits >= budget.stop_after_hits:
            return f"{hits} hits (budget.stop_after_hits)"
    return None


def person_advice(cause: RigNotReady | BlankFailed | SafetyBreach, store: Path, cell_ml: float = 0.0,
                  given: Sequence[str] = ()) -> str:
    """What a person does before ``labloop resume`` when the rig needs them (:class:`NeedsPerson`); ``cell_ml``: what
    the cell holds by labloop's count (a breach's experiment may have left it, when its protocol has no rinse);
    ``given``: what this refused resume was told was done by hand (:data:`BY_HAND` kinds), which the command repeats:
    a refused resume journals neither, and a data trial's resumes went round between ``--cell-emptied`` and
    ``--syringes-filled``, each advised without the other."""
    flags = {CELL_EMPTIED: "--cell-emptied", SYRINGES_FILLED: "--syringes-filled"}
    again = "".join(f" {flags[kind]}" for kind in given if kind in flags)
    if isinstance(cause, SafetyBreach):
        instrument = cause.where.split(" in ", 1)[0]
        empty = "empty the cell, " if cell_ml > 0 else ""
        return (f"check {instrument} and its driver (the potential it applied is not the one asked) and the cell and "
                f"electrodes it drove beyond the limits, {empty}then `labloop resume {shell_word(store)}"
                f"{' --cell-emptied' if cell_ml > 0 else ''}`")
    if isinstance(cause, RigNotReady) and cause.needs == "cell":
        return f"empty the cell, then `labloop resume {shell_word(store)} --cell-emptied{again}`"
    if isinstance(cause, RigNotReady) and cause.needs == "port":
        name = cause.where.removeprefix("instruments.")
        return (f"plug {name} back in and switch it on, then `labloop resume {shell_word(store)}{again}` (with "
                f"--port {name}=PORT if it came back under another name)")
    if isinstance(cause, RigNotReady):
        # every syringe: the flag counts them all full (an operator read "the syringe" as the short one alone)
        return f"fill every syringe, then `labloop resume {shell_word(store)}{again} --syringes-filled`"
    if isinstance(cause, BlankNeedsPurge):  # resume runs the journal's protocol, which has no purge
        return f"add the purge step to the campaign's protocol and {WITH_A_NEW_STORE}"
    return (f"clean the cell and the electrode (for O2: check the gas), then `labloop resume {shell_word(store)} "
            "--cell-emptied`")


def resume_does(journal: Journal, ids: Sequence[int], again: str = "will run again on resume") -> str:
    """What a resume does with the experiments ``ids`` a stop left interrupted (or running, after a kill): those
    whose attempt journalled its measurement are finished from it (:meth:`Runner._finish_measured`), the others
    ``again`` (run again, from their first step). Why: "will run again" of an experiment stopped in the rinse after
    its measurement sent an operator to prepare a second aliquot that the resume does not take."""
    measured = {e.id for e in journal.experiments(states=(State.INTERRUPTED, State.RUNNING)) if e.measured}
    parts = [(f"{plural(len(which), 'experiment')} {', '.join(map(str, which))} {what}")
             for which, what in (([i for i in ids if i not in measured], again),
                                 ([i for i in ids if i in measured], "is finished on resume from the measurement it "
                                                                      "journalled, not measured again"))
             if which]
    return "; ".join(parts)


def refusal_before_the_run(campaign: Campaign, journal: Journal, executor: ProtocolExecutor,
                           by_hand: Sequence[str] = ()) -> str | None:
    """The one line that refuses this run (``resume``, or ``run`` of a journal that exists) before it writes
    anything, or None: the next experiment the loop would start would be refused by what the cell or a syringe
    holds (:meth:`ProtocolExecutor.refusal`), counted from the journal and the ``by_hand`` events (:data:`BY_HAND`)
    this run is about to journal. Nothing is refused when a stop rule ends the campaign first. Why before: a
    refused resume journalled the experiment's new attempt, an interruption and a stop, though nothing moved
    (exit 2, bad input, must write nothing). Said as ``where: what``, as every one-line error is: it began with the
    cause's class name (``RigNotReady: cell: ...``), which a user never needs to read."""
    experiments = journal.experiments()
    started = datetime.fromisoformat(journal.campaign_info().created_at)
    if stop_reason(campaign, experiments, started) is not None:
        return None
    # the next experiment to run: one queued, else one the planner is yet to propose (its conditions unknown, so
    # only what every experiment needs is checked), as after a batch awaiting approval or a budget raised; not one
    # finished from its journalled measurement, which moves nothing (Runner._finish_measured)
    queue = [e for e in experiments
             if e.status in (State.PROPOSED, State.INTERRUPTED, State.RUNNING) and not e.measured]

    def refused(hands: Sequence[str]) -> RigNotReady | None:
        history = chain(_history(journal), ((BY_HAND[kind], {}, "ok") for kind in hands))
        return executor.refusal(history, _stopped_after_pumping(journal), queue[0].conditions if queue else {})

    cause = refused(by_hand)
    if cause is None:
        return None
    # "runs again" only of one that moved something before: one stopped for a person before its sample never ran
    # (a hardware trial read "experiment 4 runs again" of an experiment that had never begun)
    which = ("the next experiment runs" if not queue else
             f"experiment {queue[0].id} runs" + (" again" if journal.actions(queue[0].id) else ""))
    advice = person_advice(cause, journal.path, given=by_hand)
    if cause.needs == "cell" and SYRINGES_FILLED not in by_hand and \
            (then := refused((*by_hand, CELL_EMPTIED))) is not None and then.needs == "syringe":
        # both at once: after a kill -9 the resume was refused for the cell, then, emptied, for a syringe
        advice = (f"and once the cell is emptied, {then}; empty the cell and fill every syringe, then `labloop resume "
                  f"{shell_word(journal.path)} --cell-emptied --syringes-filled`")
    return f"{cause}: refused before anything moved ({which} on the resume that can run it); {advice}"


def _syringes_said(short: Mapping[str, float]) -> str:
    """What a stop says of the syringes :meth:`Runner._syringes_short` found short, or ''."""
    if not short:
        return ""
    held = ", ".join(f"{pump}'s syringe holds {ml:g} mL" for pump, ml in short.items())
    return (f"; by labloop's count {held}, less than the next experiment takes: fill every syringe, and add "
            "`--syringes-filled` to the resume")


def _syringes_low(contents: Contents, short: Mapping[str, float], cut: Collection[str]) -> str:
    """What a stop says of the syringes of the pumps whose dispense it ``cut`` short that hold less than full by
    labloop's count but enough for the next experiment (those :meth:`Runner._syringes_short` found short it says
    itself), or ''. Why: a dispense cut short counts as delivered in full and its refill as not done, and later refills
    put back only what each dispense took, so the count stays low until the syringe is filled by hand; nothing said
    so, and a stop days later asked for a refill the first had not mentioned (an operator's trial). Only those: a
    syringe the campaign started partly loaded is low by the operator's own word, not by the stop. Said as the choice
    it is: the next experiment has enough, and the console's ``continue with:`` omits the flag (another operator read
    the advice as a must beside that line)."""
    low = {pump: held for pump, held in sorted(contents.syringes.items())
           if pump in cut and pump not in short and held < contents.limits_of(pump).syringe_ml}
    if not low:
        return ""
    held = ", ".join(f"{pump}'s syringe holds {ml:g} of its {contents.limits_of(pump).syringe_ml:g} mL"
                     for pump, ml in low.items())
    stays, it = ("stays", "it") if len(low) == 1 else ("stay", "them")
    return (f"; by labloop's count {held} (a dispense cut short counts as delivered in full, its refill as not done), "
            f"and {stays} so until filled by hand; the next experiment has enough, so the resume needs no flag: to "
            f"count {it} full again now (optional), fill every syringe and add `--syringes-filled` to the resume")


def _progress_task(bar: Progress, what: str, total: int) -> Callable[[int], None]:
    """A new task on ``bar`` and the callback that advances it."""
    task = bar.add_task(what, total=total)
    return lambda k: bar.advance(task, k)


def _plain(params: Mapping[str, Any]) -> dict[str, Any]:
    """Action parameters as JSON (values the journal cannot store as they are become text)."""
    return json.loads(json.dumps(dict(params), default=str))


#: the states of an experiment proposed and not yet measured or failed: the planner's ``pending``
PENDING = (State.PROPOSED, State.INTERRUPTED, State.RUNNING, State.AWAITING_APPROVAL)


def journal_state(campaign: Campaign, journal: Journal, planner: str, step: int,
                  experiments: Sequence[ExperimentRow], past: Sequence[Observation]) -> PlannerState:
    """The state a planner proposes ``step`` from, built from the journal: ``past`` (the campaign's past
    measurements, :func:`labloop.planners.base.past_observations`) then every done or failed experiment as an
    :class:`Observation`, and the molecules proposed and not yet measured as pending. Why a function: ``labloop
    candidates`` (orchestrator/candidates.py) ranks the library from the very state the next proposal sees."""
    return PlannerState(
        planner=planner, seed=campaign.seed, step=step,
        observations=tuple(past) + tuple(observation(campaign, journal, e) for e in experiments
                                         if e.status in (State.DONE, State.FAILED)),
        pending=tuple(e.smiles for e in experiments if e.status in PENDING))


def observation(campaign: Campaign, journal: Journal, experiment: ExperimentRow) -> Observation:
    """A done or failed experiment as the planner sees it (failures by the analysis are the molecule's)."""
    analysis = journal.analysis(experiment.id)
    failure = None
    if experiment.status == State.FAILED:
        cause = experiment.cause or ""
        if cause.startswith(REFUSED_BY_LIMITS):
            # the campaign file's failure (the window its protocol put around the prediction): molecules like
            # this one are not shunned for it (the planner's failure correction); it is not proposed again
            failure = CONFIGURATION_FAULT
        elif cause.startswith((ANALYSIS_FAILURE, REFUSED_FAILURE, VETOED)):
            # any other refused proposal or a veto (a person's judgement) is the molecule's failure for the
            # planner, like an unusable voltammogram
            failure = ANALYSIS_FAULT
        elif cause.startswith(DRIVER_BUG_FAILURE):
            failure = SOFTWARE_FAULT
        else:
            failure = INSTRUMENT_FAULT
    bound = scan_bound(campaign, analysis) if failure == ANALYSIS_FAULT and analysis is not None else None
    # the rig's failure says nothing of the conditions, though a step after the measurement (a rinse) may have
    # failed with the measurement journalled: the planner learns from it as it did when none was kept
    quality = None if analysis is None or failure in (INSTRUMENT_FAULT, SOFTWARE_FAULT) else \
        measurement_quality(analysis)
    return Observation(experiment.smiles, experiment.conditions,
                       experiment.potential_v if experiment.status == State.DONE else None,
                       quality=quality, failure=failure,
                       **bound_fields(bound))


def scan_bound(campaign: Campaign, analysis: CVResult) -> tuple[float, int] | None:
    """What a failed scan says of the objective's potential (:meth:`CVResult.bound`), vs Li/Li+ on the cell's
    nominal reference, as the analyte's potential would be without an internal standard."""
    return analysis.on_li_scale(campaign.cell.reference_offset_v).bound(campaign.objective.quantity)


class NeedsPerson(Exception):
    """The rig needs a person before the next experiment, whichever molecule it is: what the cell or a syringe
    holds would stop it part way (:class:`RigNotReady`), the blank says the cell or electrode is dirty
    (:class:`BlankFailed`), or a scan shows the cell was driven beyond the safety limits (:class:`SafetyBreach`: its
    experiment failed already). ``moved``: whether any action started in this run before it."""

    def __init__(self, cause: RigNotReady | BlankFailed | SafetyBreach, *, moved: bool) -> None:
        super().__init__(str(cause))
        self.cause, self.moved = cause, moved


class RigUnsafe(Exception):
    """The rig could not be made safe after experiment ``experiment_id`` failed (``unsafe``: one ``"name: why"``
    per instrument, :meth:`Rig.safe_state`): the run stops before the next sample."""

    def __init__(self, experiment_id: int, unsafe: list[str]) -> None:
        super().__init__(f"NOT made safe after experiment {experiment_id} failed: {'; '.join(unsafe)}")
        self.experiment_id, self.unsafe = experiment_id, unsafe


def check_at_instruments(unsafe: Sequence[str]) -> str:
    """What a person checks of the instruments a stop could not make safe (``unsafe``: ``"name: why"`` each,
    :meth:`Rig.safe_state`), for the stop's advice: a failure's stop (:meth:`Runner._stop_unsafe`) and a Ctrl-C's
    (orchestrator/cli/run.py), whose last line left it out (a hardware trial: a hung pump that went on pumping)."""
    instruments = " and ".join(u.split(":", 1)[0] for u in unsafe)
    return f"check {instruments} at the instrument (a pump may still be pumping, a cell still be on)"


def resume_command(store: Path, scheduler: str | None, *flags: str) -> str:
    """``labloop resume STORE [FLAGS] [--scheduler S]``: the run's own ``--scheduler`` too, which a resume does not
    take from the journal (it is no part of the campaign), so the advice resumes where the run ran: without it, a
    stop for a lost cluster sent the operator to a LocalCluster while the cluster they restarted sat idle (a
    scale-out trial)."""
    return " ".join(["labloop resume", shell_word(store), *flags, *(("--scheduler", shell_word(scheduler))
                                                                   if scheduler else ())])


#: what a stop for a lost Dask cluster advises before its resume (:meth:`Runner._stop_cluster_lost`)
CLUSTER_ADVICE = ("check that the cluster's scheduler and workers run (start again those that do not, or give "
                  "another --scheduler), then `{resume}`")


class Runner:
    """Runs one campaign on one rig to its budget, recording everything in ``journal``.

    ``executor`` is the campaign's :class:`ProtocolExecutor` on ``rig``; ``library`` the molecules the
    planner may choose; ``model`` the newest surrogate (None without a prior); ``predictions`` the library's
    predictions on a Dask cluster when the campaign uses one (:mod:`labloop.orchestrator.learning.predictions`:
    the planner then proposes from their shards, each model version's predicted before it proposes); ``scheduler``
    the run's ``--scheduler``, which the advice of a stop for a lost cluster resumes with (:func:`resume_command`).
    """

    def __init__(self, campaign: Campaign, journal: Journal, rig: Rig, executor: ProtocolExecutor,
                 library: Sequence[str], model: models.LoadedModel | None, interrupts: Interrupts,
                 predictions: LibraryPredictions | None = None, scheduler: str | None = None) -> None:
        self.campaign = campaign
        self.scheduler = scheduler
        self.journal = journal
        self.rig = rig
        self.executor = executor
        self.predictions = predictions
        descriptors = DescriptorTable()
        self.planner = make_planner(campaign.planner_settings(), library, descriptors,
                                    None if predictions is None else predictions.stored())
        self.library = list(library)
        self.sample_ids = sample_ids(library)
        #: the lab's measurements from before the campaign (``past_measurements``), first among the observations:
        #: the planner never proposes them again and the feedback learns from them before the first proposal
        past = journal.past_measurements()
        self.past = past_observations(past, journal.past_bounds())
        self.learning = Learning(campaign, journal, library, model, learns=self.planner.learns,
                                 descriptors=descriptors, deferred=interrupts.deferred, past=past,
                                 prepare=None if predictions is None else predictions.prepare)
        self.interrupts = interrupts
        executor.replay(_history(journal))  # what earlier runs of this journal left in the cell and syringes
        executor.count_to_drivers()  # a driver that counts its syringe from its options counts the same
        executor.refuse_their_leftover(_stopped_after_pumping(journal))
        self.health = HealthClock(campaign.schedule.health_check_minutes)
        self.hours = ActiveHours(campaign.schedule.active_hours)
        self.started = datetime.fromisoformat(journal.campaign_info().created_at)
        self._open_actions: dict[int, int] = {}
        self._failed: tuple[str, str] | None = None  #: (instrument, command) of the step that failed, if one did
        self._actions = 0  #: actions the current experiment started
        self._pumped = False  #: whether the current experiment pumped into the cell
        self._moved = False  #: whether any action started in this run (a stop for a person is then exit 1, not 2)
        #: the pumps that disconnected while pumping in this run's instrument faults in a row, the first time each, with
        #: its experiment: what a stop for those faults tells the person to check (:meth:`_disconnected`)
        self._lost: dict[str, tuple[int, PumpDisconnected]] = {}
        self.done = 0  #: done experiments, as the journal said at the start of this turn of the loop
        self._held: list[int] = []  #: the batch awaiting approval that this run has announced
        #: the reference electrode's names the campaign's instruments give in their ``reference`` option, and the
        #: labels of scans that named another, said once each (:meth:`_check_label`)
        self._references = {name: entry.options["reference"] for name, entry in campaign.instruments.items()
                            if isinstance(entry.options.get("reference"), str)}
        self._mislabelled: set[str] = set()

    # -- the loop -------------------------------------------------------------------------------------

    def run(self) -> int:
        """Run to a stop rule; returns the exit code (0 budget reached, 1 too many faults, the Dask cluster
        lost, nobody to answer a manual step, the rig needing a person or not made safe at the end, 2 the rig
        needing a person before anything moved in this run, 130 interrupted)."""
        budget = self.campaign.budget
        with self.learning, console.progress() as bar:
            if self.predictions is not None:  # a bar per model version whose library predictions are made
                self.predictions.progress = partial(_progress_task, bar)
            # the description says the state on the bar; a log's plain line says what is counted (console.py)
            task = bar.add_task("experiments", total=budget.max_experiments, counted="experiments")
            try:  # a stop's own journal write may fail too (a full disk): said the same way
                try:
                    if self.predictions is not None and self.learning.model is not None:
                        self.predictions.prepare(self.learning.model)  # before the first proposal, and the rig
                    self.learning.resume()  # a retrain a killed run left unfinished
                    return self._loop(lambda text: bar.update(task, completed=self.done, description=text))
                except Interrupted as exc:
                    return self._stop_interrupted(exc)
                except ClusterLostError as exc:
                    return self._stop_cluster_lost(exc)
                except NoOperator as exc:
                    return self._stop_no_operator(exc)
                except NeedsPerson as exc:
                    return self._stop_for_a_person(exc)
                except RigUnsafe as exc:
                    return self._stop_unsafe(exc)
            except JournalWriteError as exc:
                raise self._unjournalled(exc) from exc

    def _unjournalled(self, exc: JournalWriteError) -> JournalWriteError:
        """The journal could not record a change (a full disk): nothing more can be journalled, so the stop is said
        on the console alone (the run's last line), with the rig made safe first and what the cell holds by labloop's
        count. Why: the disk's advice alone ("free space, then `labloop resume`") was then refused for the liquid
        the cell held, and nothing said whether the instruments were made safe (an operator's trial on a full
        disk). One resume command: with liquid in the cell the journal's own (a bare `labloop resume`, refused for
        it) gives way to the cell's, with ``--cell-emptied``."""
        self.interrupts.stop()
        unsafe = self.rig.safe_state()
        rig = "instruments in a safe state" if not unsafe else f"instruments NOT made safe: {'; '.join(unsafe)}"
        if exc.moved:  # the journal was saved under a name its message gives, with the resume of it
            return JournalWriteError(f"{exc}; {rig}{self._cell_left('and give that resume `--cell-emptied`')}",
                                     moved=True)
        cell = self._cell_left()
        said = str(exc).removesuffix(THEN_RESUME) if cell else str(exc)
        return JournalWriteError(f"{said}; {rig}{cell}")

    def _loop(self, show: Callable[[str], None]) -> int:
        in_a_row = dict.fromkeys(FAULT_LIMITS, 0)  # failed experiments of each kind in a row
        while True:
            self.learning.refresh()
            if self.health.due():
                self._health_check()
            experiments = self.journal.experiments()  # the one source of truth, read once per turn
            self.done = sum(e.status == State.DONE for e in experiments)
            reason = self._stop_reason(experiments)
            if reason is not None:
                if self.learning.training:
                    show("finishing the last retrain")
                    self.learning.wait(lambda said: show(f"finishing the last retrain: {said}"))
                return self._finish(reason)
            waiting = [e.id for e in experiments if e.status == State.AWAITING_APPROVAL]
            if waiting:  # one short wait per turn, so health checks, new models and max_hours go on meanwhile
                self._hold(waiting, show)
                continue
            queue = [e for e in experiments if e.status in (State.PROPOSED, State.INTERRUPTED)]
            if not queue:
                show("proposing")
                if not self._propose(experiments, show):
                    return self._finish("every library molecule was tried")
                continue
            self._wait_for_active_hours(show)
            experiment = queue[0]
            show(f"experiment {experiment.id}")
            result = self._run_experiment(experiment)
            if result == State.DONE:
                self.done += 1
                self.learning.after_done(self.done)
            in_a_row = {kind: in_a_row[kind] + 1 if result == kind else 0 for kind in in_a_row}
            if not in_a_row[INSTRUMENT_FAULT]:
                self._lost = {}
            for kind, (field, what, advice) in FAULT_LIMITS.items():
                if in_a_row[kind] >= getattr(self.campaign.budget, field):
                    counted = ", which counts these too" if kind == REFUSED_FAULT else ""  # no analysis in them
                    software = self._software_advice(self._last_failed(in_a_row[kind])) \
                        if kind == INSTRUMENT_FAULT else None
                    what = "faults" if software else what  # "instrument faults ... each was a software bug" (review)
                    stopped = f"{in_a_row[kind]} {what} in a row; campaign stopped (budget.{field}{counted})"
                    data = ({"advice": ADVISED[kind].format(store=shell_word(self.journal.path))} if kind in ADVISED
                            else None)
                    if kind == INSTRUMENT_FAULT and self._lost:  # instead of a bare resume, what to check
                        lost, check = self._disconnected()
                        stopped, data = f"{stopped}: {advice}: {lost}", {"advice": check,
                                                                         "cell_ml": self.executor.contents.cell_ml}
                    elif advice:
                        stopped = f"{stopped}: {software or self._advice(kind, advice, in_a_row[kind])}"
                    with self.interrupts.deferred():  # the CLI says the data's advice instead of `labloop resume`
                        self.journal.add_event("stopped", stopped, data=data)
                    return EXIT_FAULTS
            show(f"{self.done} done")

    def _advice(self, kind: str, advice: str, count: int) -> str:
        """What a stop after ``count`` failed experiments of ``kind`` in a row says to look at: :data:`FAULT_LIMITS`'s
        advice, or, when the causes of those unusable voltammograms said the current looks inverted, the driver's sign
        convention, or, when none found the internal standard, the standard first. Why: a plug-in reporting anodic
        current negative stopped after ten such scans with "check the electrodes and the cv window", though each cause
        had named the sign (a plug-in author's trial), and ten lab-grade scans that found no ferrocene (a 1 M stock
        typed for 10 mM) stopped with the same advice (a chemist's trial)."""
        if kind != ANALYSIS_FAULT:
            return advice
        failed = self._last_failed(count)
        inverted = sum(INVERTED_SAID in (e.cause or "") for e in failed)
        if inverted:
            return (f"the current looked inverted in {inverted} of them: check the driver's current sign convention "
                    "(anodic current positive, docs/drivers.md)" + ("" if inverted == count else f"; else {advice}"))
        if all(CVFlag.NO_STANDARD.value in (e.cause or "") for e in failed):  # the cell's standard, not the molecules
            return ("none of them found the internal standard where the campaign puts it: check its syringe and "
                    "stock (the add_standard step), cell.ferrocene_vs_li_v and the analyte's concentration; then "
                    f"{advice}")
        if all(CVFlag.CHEMICALLY_IRREVERSIBLE.value in (e.cause or "") for e in failed):  # the molecules themselves
            return ("every one's oxidised or reduced form reacted away within the scan (chemically_irreversible): "
                    "the molecules the planner picks are unstable there, not the rig; a faster scan rate shows more "
                    "of a slow decay, and the analyze step's min_return_share sets how much must come back; "
                    f"{advice}")
        return advice

    def _last_failed(self, count: int) -> list[ExperimentRow]:
        """The journal's last ``count`` failed experiments, in the order they failed."""
        return sorted((e for e in self.journal.experiments() if e.status == State.FAILED),
                      key=lambda e: e.finished_at or "")[-count:]

    @staticmethod
    def _software_advice(failed: list[ExperimentRow]) -> str | None:
        """What a stop after instrument faults in a row says when each was a software bug (:data:`DRIVER_BUG_FAILURE`,
        :data:`LABLOOP_BUG_FAILURE`), naming the last one's cause, or None. Why: a plug-in's AttributeError failed the
        experiments in a row and the stop said "the rig needs a person", sending the operator to the rig."""
        causes = [e.cause or "" for e in failed]
        if not causes or not all(c.startswith((DRIVER_BUG_FAILURE, LABLOOP_BUG_FAILURE)) for c in causes):
            return None
        if causes[-1].startswith(DRIVER_BUG_FAILURE):
            fix = ("fix the driver (or the device error it let out untyped), then resume; the molecules they tried "
                   "are proposed again")
        else:
            fix = "report it with the traceback `labloop -v resume` shows"
        return f"each was a software bug, not the rig's fault nor the molecules' (the last: {causes[-1]}): {fix}"

    def _finish(self, reason: str) -> int:
        """The campaign's end: the rig made safe, then the ``finished`` event. Exit 0, or 1 when an instrument could
        not be made safe, which the event's data names (``unsafe``: the log's header, the dashboard and the report
        show it, and it alerts): a trial's potentiostat whose abort failed ended "8/8 experiments done", exit 0,
        its one ERROR line the only sign that the cell might still be on."""
        unsafe = self.rig.safe_state()  # never raises; closing the rig tries again
        with self.interrupts.deferred():
            self.journal.add_event("finished", f"campaign finished: {reason}",
                                   data={"unsafe": unsafe} if unsafe else None)
        return EXIT_FAULTS if unsafe else EXIT_OK  # the command's last line says what was not made safe

    def _stop_interrupted(self, exc: Interrupted) -> int:
        """Safe rig, consistent journal: the running experiment becomes ``interrupted`` (re-run on resume).
        The event and the console say which instruments could not be made safe, if any."""
        self.interrupts.stop()
        running = self.journal.experiments(states=(State.RUNNING,))
        step = self._open_step(running[0].id) if running else "a step"
        # what was cut short, on the console (the line began "instruments in a safe state; ...": a plug-in engineer's
        # trial, where `labloop log` knew the dispense)
        during = "" if step == "a step" or step in str(exc) else f" during {step} of experiment {running[0].id}"
        unsafe = self.rig.safe_state()  # never raises; reports what it could not do
        rig = "instruments in a safe state" if not unsafe else f"NOT made safe: {'; '.join(unsafe)}"
        with self.interrupts.deferred():
            ids = self.journal.mark_interrupted_on_resume()
            again = f" ({resume_does(self.journal, ids)})" if ids else ""
            short = self._syringes_short()
            round_ = self.learning.unfinished()
            retrain = f"; retraining round {round_} stopped unfinished: the resume trains it again" if round_ else ""
            cut = {a.params.get("pump") for i in ids for a in self.journal.actions(i)
                   if pumps_into_cell(a.command, a.params) and a.outcome != "ok"}
            low = _syringes_low(self.executor.contents, short, cut)
            self.journal.add_event("interrupted", f"run stopped by {exc}{again}; {rig}{self._cell_left()}"
                                                  f"{_syringes_said(short)}{low}{retrain}",
                                   data={"experiments": ids, "unsafe": unsafe,
                                         "cell_ml": self.executor.contents.cell_ml, "syringes": sorted(short)})
        # which experiments run again and which are finished from their measurement, on the console too: an operator
        # stopped after a measurement could not tell whether to prepare another aliquot (the journal said it)
        which = f"; {resume_does(self.journal, ids)}" if ids else ""
        console.err.print(("" if not unsafe else "warning: ") + f"stopped by {exc}{during}: {rig}" + which
                          + self._cell_left() + _syringes_said(short) + low + retrain, markup=False, highlight=False,
                          soft_wrap=True)
        return EXIT_INTERRUPTED

    def stop_held(self, signum: int, held_s: float) -> int:
        """The stop when the code running held the stop signals (:attr:`Interrupts.on_held`, called in the signal's
        handler, on the main thread, under the code that holds them): as a Ctrl-C's (:meth:`_stop_interrupted`: every
        instrument sent its stop, the experiment interrupted, what the cell holds said), naming the step that held it,
        and the retrain cancelled; the caller then ends the process, since the code below would go on catching."""
        running = self.journal.experiments(states=(State.RUNNING,))
        where = self._open_step(running[0].id) if running else "the code running"
        name = signal.Signals(signum).name
        try:
            return self._stop_interrupted(Interrupted(signum, f"a {name} after {where} held the stop {held_s:.0f} s "
                                                              "(labloop ended at once)"))
        finally:
            self.learning.__exit__(None, None, None)  # a retrain's child ended, as the run's own end does

    def _syringes_short(self) -> dict[str, float]:
        """The pumps whose syringe, by labloop's count, holds less than the protocol's next experiment takes from it
        (judged with the cell emptied, as the advice asks), with what each holds: a stop that said only "empty the
        cell, then resume --cell-emptied" was followed by a resume refused for a syringe running dry (a plug-in
        engineer's trial)."""
        contents = copy.deepcopy(self.executor.contents)
        contents.emptied()
        short: dict[str, float] = {}
        while (problem := repeat_problem(self.executor.steps, contents, 1)) is not None and problem.full == "syringe":
            pump = self.executor.steps[problem.index].pump  # type: ignore[attr-defined]
            if pump in short:
                break
            short[pump] = contents.held(pump)
            contents.syringes.pop(pump, None)  # counted full from here, to find the next pump short, if any
        return short

    def _cell_left(self, resume: str | None = None) -> str:
        """What a stop says of the cell: what it holds by labloop's count, if anything, since the interrupted
        experiment runs again from its first step onto whatever is left (docs/running.md, "Stopping: Ctrl-C, kill,
        kill -9, a closed terminal"); ``resume``: how the advice ends, where not with this journal's resume."""
        held = self.executor.contents.cell_ml
        resume = resume or f"then `labloop resume {shell_word(self.journal.path)} --cell-emptied`"
        return f"; the cell still holds {held:g} mL by labloop's count: empty it, {resume}" if held > 0 else ""

    def _disconnected(self) -> tuple[str, str]:
        """What a stop for instrument faults says of the pumps that disconnected while pumping (:attr:`_lost`), and
        its advice: which pump, in which step of which experiment, that what it delivered is unknown, and what a
        person checks before ``resume`` (the pump's syringe, with ``--syringes-filled`` once filled by hand; the
        cell, with ``--cell-emptied``, when it holds liquid by labloop's count). Why: "port vanished while reading"
        and a bare ``labloop resume`` did not say that a dispense was cut short by a vanished pump, nor what of the
        cell's and the syringe's count to check."""
        lost = "; ".join(f"{pump} disconnected in {exc.step} of experiment {experiment}, during its "
                         + (f"dispense of {exc.volume_ml:g} mL into the cell" if exc.into_cell else
                            f"refill of {exc.volume_ml:g} mL") + ": what it delivered is unknown"
                         for pump, (experiment, exc) in self._lost.items())
        pumps = ", ".join(self._lost)
        syringes = "its syringe" if len(self._lost) == 1 else "their syringes"
        held = self.executor.contents.cell_ml
        store = self.journal.path
        check = (f"empty the cell (it holds {held:g} mL by labloop's count), reconnect {pumps} and check {syringes}, "
                 f"then `labloop resume {shell_word(store)} --cell-emptied`" if held > 0 else
                 f"reconnect {pumps} and check {syringes} and the cell, then `labloop resume {shell_word(store)}`")
        return lost, f"{check} (add `--syringes-filled` if you fill {syringes} by hand)"

    def _stop_no_operator(self, exc: NoOperator) -> int:
        """A manual step found nobody to answer (the console's input is closed): that would not change with the
        next experiment, so the run stops at once (exit 1) and the rig is made safe. The experiment is
        interrupted, not failed, and ``resume`` from a terminal runs it again from its first step, unless its
        measurement was complete before the question (a manual rinse after the cv): the resume then finishes it from
        that (:func:`resume_does`). What it left in the cell is said, since the operator must empty the cell first.

        The journal is made consistent before the rig is made safe: a Ctrl-C while a pump's stop hangs then
        finds the experiment interrupted and the stop journalled."""
        with self.interrupts.deferred():  # the step that asked closed its action with this cause (the executor)
            ids = self.journal.mark_interrupted_on_resume()
            again = resume_does(self.journal, ids, "will run again on resume, where a person can answer")
            self.journal.add_event("stopped", f"{exc}: campaign stopped ({again}{self._cell_left()})",
                                   data={"experiments": ids, "cell_ml": self.executor.contents.cell_ml})
        self._make_safe("the run stopped")
        return EXIT_FAULTS

    def _make_safe(self, after: str) -> None:
        """The rig in its safe state (it never raises). What could not be made safe is journalled as an
        :data:`UNSAFE` event naming each instrument, which alerts and which ``labloop log``, the dashboard and the
        report show, and warned on the console: an operator away from the terminal must learn that a pump may
        still be pumping."""
        unsafe = self.rig.safe_state()
        if unsafe:
            message = f"NOT made safe after {after}: {'; '.join(unsafe)}"
            with self.interrupts.deferred():
                self.journal.add_event(UNSAFE, message, data={"unsafe": unsafe})
            console.err.print(f"warning: {message}", markup=False, highlight=False, soft_wrap=True)

    def _stop_for_a_person(self, exc: NeedsPerson) -> int:
        """The cell, a syringe or the electrode needs a person before any molecule can be measured
        (:class:`NeedsPerson`): the experiment is interrupted, not failed (``resume`` runs it again; a safety breach's
        failed already, its sample spent), the rig made safe and the run stops: exit 1, or 2 when nothing moved in this
        run (a ``resume`` that lacks
        ``--cell-emptied`` is refused, as bad input is). A pump that disconnected while pumping in the faults just
        before (the liquid of its failed experiment, left without a rinse, refusing this one) is said too, and what to
        check for it replaces the cell's advice (:meth:`_disconnected`, which says ``--cell-emptied`` as well). The
        stop's message, which the console, the log and the alerts show, says the cause without its class name."""
        cause = exc.cause
        advice = person_advice(cause, self.journal.path, self.executor.contents.cell_ml)
        lost = ""
        if self._lost:
            lost, check = self._disconnected()
            lost, advice = f"; {lost}", check if isinstance(cause, RigNotReady) else advice
        with self.interrupts.deferred():
            for action in self._open_actions.values():
                self.journal.finish_action(action, f"{type(cause).__name__}: {cause}")
            self._open_actions = {}
            ids = self.journal.mark_interrupted_on_resume()
            stopped = (f"campaign stopped before a sample is spent on it ({resume_does(self.journal, ids)})" if ids
                       else "campaign stopped before the next sample")  # a breach: its experiment failed already
            self.journal.add_event("stopped", f"{cause}: {stopped}{lost}",
                                   data={"experiments": ids, "advice": advice,
                                         "cell_ml": self.executor.contents.cell_ml})
        self._make_safe("the run stopped")
        return EXIT_FAULTS if exc.moved else EXIT_REFUSED

    def _stop_unsafe(self, exc: RigUnsafe) -> int:
        """A failure's make-safe failed (:class:`RigUnsafe`): the run stops (exit 1) with one ``stopped`` event
        naming each instrument (``unsafe`` in its data: it alerts as the rig left unsafe, and the log, the dashboard
        and the report keep it in view) and the advice, since the next sample would go into a cell a pump may
        still be filling. The failed experiment is not rinsed (the rinse pumps too), so the cell holds what it
        pumped and ``resume`` needs ``--cell-emptied``."""
        held = self.executor.contents.cell_ml
        message = f"{exc}; campaign stopped before the next sample"
        if self._lost:  # a pump that vanished while it pumped: what it delivered is unknown too
            lost, check = self._disconnected()
            message, advice = f"{message}: {lost}", f"{check_at_instruments(exc.unsafe)}; {check}"
        else:
            empty = f"empty the cell (it holds {held:g} mL by labloop's count), then " if held > 0 else ""
            advice = (f"{check_at_instruments(exc.unsafe)}, "
                      f"{empty}`labloop resume {shell_word(self.journal.path)}{' --cell-emptied' if held > 0 else ''}`")
        with self.interrupts.deferred():
            self.journal.add_event("stopped", message, data={"experiments": [exc.experiment_id], "unsafe": exc.unsafe,
                                                             "advice": advice, "cell_ml": held})
        return EXIT_FAULTS

    def _stop_cluster_lost(self, exc: ClusterLostError) -> int:
        """The Dask cluster went away: journalled, and the run stops (exit 1). Nothing is half-written: the
        planner's state is saved before it proposes and the proposals are recorded after, shards are whole
        or absent; so ``labloop resume`` with a cluster proposes what this run would have. The event keeps the advice
        (:data:`CLUSTER_ADVICE`), which its alert and the dashboard show: they said the stop without the resume command
        the console gave (an operator's trial)."""
        advice = CLUSTER_ADVICE.format(resume=resume_command(self.journal.path, self.scheduler))
        with self.interrupts.deferred():
            self.journal.add_event("cluster_lost", f"campaign stopped: {exc}", data={"advice": advice})
        return EXIT_FAULTS

    # -- proposing ------------------------------------------------------------------------------------

    def _planner_state(self, step: int, experiments: Sequence[ExperimentRow]) -> PlannerState:
        """The state the planner proposes ``step`` from: reloaded when the journal saved it (a run killed
        between saving it and recording the proposals), else built from the journal (:func:`journal_state`) and
        saved."""
        saved = self.journal.latest_planner_state()
        if saved is not None and saved[0] == step:
            return PlannerState.from_dict(saved[1])
        state = journal_state(self.campaign, self.journal, self.planner.name, step, experiments, self.past)
        with self.interrupts.deferred():
            self.journal.save_planner_state(step, state.to_dict())
        return state

    def _propose(self, experiments: Sequence[ExperimentRow], show: Callable[[str], None]) -> bool:
        """Record the planner's next batch; False when it has nothing left to propose (``show``: the progress bar's
        description, while the proposal waits for a retrain)."""
        step = 1 + max((e.step for e in experiments if e.step is not None), default=-1)
        n = min(self.campaign.planner.batch_size, self.campaign.budget.max_experiments - self.done)
        state = self._planner_state(step, experiments)
        with threadpool_limits(PLANNER_BLAS_THREADS):
            model = self.learning.model_view(state, experiments, show)
            try:
                proposals = self.planner.propose(state, n, model)
            except Exception as exc:  # with a cluster the planner scores the shards there
                reason = None if self.predictions is None else lost_cluster(self.predictions.client, exc)
                if reason is None:
                    raise
                raise ClusterLostError(f"the Dask cluster went away while the library's shards were scored "
                                       f"({reason}); finished shards are kept") from None
        if proposals:
            with self.interrupts.deferred():
                self.journal.record_proposals(proposals, step=step, planner=self.planner.name,
                                              model_version=None if model is None else model.version,
                                              awaiting_approval=self.campaign.planner.approve)
        return bool(proposals)

    # -- one experiment -------------------------------------------------------------------------------

    def _run_experiment(self, experiment: ExperimentRow) -> str:
        """Run one proposed (or interrupted) experiment to ``done``, or ``failed`` because of the rig
        (:data:`INSTRUMENT_FAULT`) or of the voltammogram (:data:`ANALYSIS_FAULT`); returns which. What it measures
        is journalled as it is measured (:meth:`_journal_scan`, :meth:`_journal_outcome`), so a run stopped in a
        step after the measurement keeps it, and an interrupted experiment whose attempt has its measurement is
        finished from it without running again (:meth:`_finish_measured`)."""
        if experiment.status == State.INTERRUPTED and experiment.measured:
            return self._finish_measured(experiment)
        kept = self.journal.unmeasured_attempts(experiment.id) if experiment.status == State.INTERRUPTED else []
        with self.interrupts.deferred():
            attempt = self.journal.start_experiment(experiment.id)
            if kept:  # a voltammogram set aside: said, and journalled for `labloop log`
                message = (f"experiment {experiment.id}: the voltammogram{'s' if len(kept) > 1 else ''} of attempt "
                           f"{', '.join(map(str, kept))} {'is' if len(kept) == 1 else 'are'} kept in the journal "
                           "without a measurement (the run stopped before the steps the measurement depends on had "
                           f"run): the molecule is measured again in attempt {attempt}")
                self.journal.add_event("measured_again", message, data={"kept": kept, "attempt": attempt},
                                       experiment_id=experiment.id)
        if kept:
            console.err.print(message, markup=False, highlight=False, soft_wrap=True)
        self._open_actions = {}
        self._actions = 0
        self._pumped = False
        self._failed = None
        self.rig.in_use()
        try:
            outcome = self.executor.run(self.sample_ids.get(experiment.smiles, experiment.smiles), experiment.smiles,
                                        experiment.conditions, experiment.mu,
                                        lambda *args: self._on_action(experiment.id, *args),
                                        on_scan=partial(self._journal_scan, experiment.id),
                                        on_outcome=partial(self._journal_outcome, experiment.id),
                                        on_ended_early=partial(self._journal_ended_early, experiment.id),
                                        on_warning=partial(self._journal_warning, experiment.id))
        except (JournalWriteError, NoOperator):
            raise  # nothing more can be recorded, or nobody can answer: the run stops (run())
        except (RigNotReady, BlankFailed) as exc:
            # the cell, a syringe or the electrode needs a person, whichever molecule comes next: the run stops
            # and this experiment runs again on resume rather than failing (and the next ones with it)
            raise NeedsPerson(exc, moved=self._moved) from exc
        except SafetyBreach as exc:
            # the cell was driven beyond the limits: this attempt fails as the rig's fault (its sample is spent, and the
            # planner counts it as any instrument fault), the rig made safe (_fail), and the run stops for a person at
            # once rather than load the next sample into a rig that overdrives its cell
            message = self._located(exc)
            log.error("experiment %d failed: %s", experiment.id, message)
            self._fail(experiment.id, message)
            raise NeedsPerson(exc, moved=True) from exc
        except InputError as exc:
            if not self._actions:  # refused before anything moved: this proposal (its window) breaks a limit
                self._fail(experiment.id, f"{REFUSED_FAILURE}{type(exc).__name__}: {exc}")
                return REFUSED_FAULT
            # refused mid-protocol by a driver (an empty syringe), or what a driver returned refused by labloop (a
            # voltammogram with NaN currents): the rig's state needs a person; named and said like any driver fault
            message = self._located(exc)
            log.warning("experiment %d failed: %s", experiment.id, message)
            self._fail(experiment.id, message)
            return INSTRUMENT_FAULT
        except Interrupted:
            raise  # a Ctrl-C or a kill: the run stops (run())
        except KeyboardInterrupt as exc:  # not from labloop's handler (Interrupts): a plug-in's or its library's
            where = self._open_step(experiment.id)
            log.warning("experiment %d: %s raised KeyboardInterrupt: the run stops as for a Ctrl-C", experiment.id,
                        where)
            raise Interrupted(signal.SIGINT, f"a KeyboardInterrupt that {where} raised") from exc
        except BaseException as exc:  # the rig, a driver or a plug-in failed (even with SystemExit): journalled,
            # counted, rig made safe; a driver must not end the run as if it had finished, nor leave it `running`
            message = self._located(exc)
            where = self._failed
            if isinstance(exc, PumpDisconnected):
                self._lost.setdefault(exc.pump, (experiment.id, exc))
            if isinstance(exc, InstrumentError):
                # one line on the console, as a refused step's: two pump stalls went unsaid before a stop that
                # blamed the syringe they had left short (an operator's trial)
                log.warning("experiment %d failed: %s", experiment.id, message)
            else:  # the software's bug, not the rig's: its cause says so, and the planner proposes the molecule again
                plugin = self._plugin_that_raised(exc, where)
                if plugin is not None:  # a plug-in's bug: say whose, in one line (its traceback at -v)
                    log.error("experiment %d: %s raised %s, not an instrument error: a bug in driver %r %s",
                              experiment.id, where[0], said(exc, SAID_CHARS), plugin,  # type: ignore[index]
                              traceback_hint(log))
                    log.info("the traceback of experiment %d's %s", experiment.id, type(exc).__name__, exc_info=exc)
                    message = f"{DRIVER_BUG_FAILURE}{plugin!r}: {message}"
                else:  # labloop's own code (a built-in driver, the analysis): the traceback is the report
                    log.error("experiment %d: unexpected %s (a labloop bug: please report it with this traceback)",
                              experiment.id, type(exc).__name__, exc_info=exc)
                    message = f"{LABLOOP_BUG_FAILURE}{message}"
            self._fail(experiment.id, message)
            return INSTRUMENT_FAULT
        if outcome.quality_ok:  # its measurement is journalled (_journal_outcome)
            with self.interrupts.deferred():
                self.journal.finish_experiment(experiment.id)
            return State.DONE
        self._fail(experiment.id, self._unusable(outcome.analysis, outcome.voltammogram, outcome.lab.referenced),
                   safe_state=False)
        return ANALYSIS_FAULT

    def _journal_scan(self, experiment_id: int, voltammogram: Voltammogram, rejected: str | None) -> None:
        """The executor's hook as the cv's scans return: the voltammogram journalled as the attempt's raw data
        before the cv's action ends ``ok`` (so a cv the journal shows ``ok`` always has its voltammogram); or a scan
        the executor refused, ``rejected`` saying why, journalled marked so (:meth:`Journal.record_raw`) before its
        step's action ends and the attempt fails: a real scan of a used-up sample is never lost with its attempt."""
        with self.interrupts.deferred():
            self.journal.record_raw(experiment_id, voltammogram, rejected)
        self._check_label(experiment_id, voltammogram.reference)

    def _check_label(self, experiment_id: int, label: str) -> None:
        """One warning per run for each label of the reference electrode a driver gave its scans that no instrument's
        ``reference`` option names, when one names it: the journal keeps the driver's label, and every measurement,
        CSV and plot says it. Why: a plug-in driver that ignored the option labelled a lab's Ag/AgCl data "the
        reference electrode (unnamed)", and nothing said so (a plug-in engineer's trial)."""
        if not self._references or label in self._references.values() or label in self._mislabelled:
            return
        self._mislabelled.add(label)
        named = ", ".join(f"{name}'s is {reference!r}" for name, reference in self._references.items())
        message = (f"a driver labelled its scan 'vs {label}', which no reference option names ({named}): the journal "
                   "and the report keep the driver's label; a driver must label its scans with its reference option "
                   "(docs/drivers.md)")
        log.warning("%s", message)
        self._journal_warning(experiment_id, message, warning_data("reference_label", later=True))

    def _journal_outcome(self, experiment_id: int, outcome: ExperimentOutcome) -> None:
        """The executor's hook once the measurement is complete (protocols/executor.py ``measured_after``): its
        analysis, potential and lab-grade record journalled in one transaction, before the steps that only handle the
        cell (a rinse, a wait), which a resume then need not run again (:meth:`_finish_measured`)."""
        lab = (outcome.lab.to_dict(), outcome.lab.summary()) if outcome.lab.measured else None
        with self.interrupts.deferred():
            self.journal.record_measurement(experiment_id, outcome.analysis, outcome.potential_v_vs_li, lab)

    def _journal_warning(self, experiment_id: int, message: str, data: dict[str, Any]) -> None:
        """The executor's hook as it warns of an experiment's measurement: the warning journalled as a
        :data:`WARNING` event of the experiment, with what it is of (protocols/executor.py ``OnWarning``), which
        ``labloop log``, the dashboard and the report show after the console has scrolled it away."""
        with self.interrupts.deferred():
            self.journal.add_event(WARNING, message, data=data, experiment_id=experiment_id)

    def _journal_ended_early(self, experiment_id: int, lab: LabRecord) -> None:
        """The executor's hook as an attempt ends without its measurement, whatever ended it (a failed blank that
        stops the run, an instrument's error, a refusal mid-protocol, a Ctrl-C): what its lab-grade steps measured so
        far (the purges, every blank with its verdict, the impedance and Ru, the scan rates run) journalled as its lab
        record, in one transaction, before its failure, stop or interruption is (:meth:`Journal.record_lab`). Why: a
        fault in the third scan rate lost the blanks, Ru and the rates before it, which a person judges the failure
        and the cell by; ``labloop log`` shows the record's line, ``log --json`` its results and ``labloop report``'s
        voltammograms.csv its curves. The attempt stays without a measurement: it fails, or runs again on resume, as
        it would without the record."""
        with self.interrupts.deferred():
            self.journal.record_lab(experiment_id, lab.to_dict(), lab.summary())

    def _finish_measured(self, experiment: ExperimentRow) -> str:
        """Finish an interrupted experiment from the measurement its last attempt journalled before the run stopped
        in a step after it (a rinse, a wait, a clean): ``done``, or ``failed`` as its voltammogram was unusable, as
        the uninterrupted run would have ended it, and said in one line; returns which (:meth:`_run_experiment`).
        Nothing moves: the cell it left was emptied by hand (``resume --cell-emptied``, which the journal's count
        of the cell asks for: :func:`refusal_before_the_run`), which is all its remaining steps would have done. Why
        not run it again: that measures a second aliquot of a molecule already measured, as a new attempt, and
        nothing said that a good cv had been recorded and discarded (an operator's trial)."""
        analysis = self.journal.analysis(experiment.id)
        assert analysis is not None  # experiment.measured
        cause = None
        if not usable(experiment.potential_v, analysis):
            lab = self.journal.lab_record(experiment.id) or {}
            referenced = None if lab.get("referenced") is None else ReferencedResult.from_dict(lab["referenced"])
            cause = self._unusable(analysis, self.journal.voltammograms(experiment.id)[0], referenced)
        with self.interrupts.deferred():
            message = self.journal.finish_measured(experiment.id, cause)
        console.err.print(message, markup=False, highlight=False, soft_wrap=True)
        return State.DONE if cause is None else ANALYSIS_FAULT

    def _unusable(self, analysis: CVResult, voltammogram: Voltammogram, referenced: ReferencedResult | None) -> str:
        """The cause of an experiment failed by its measurement (:data:`ANALYSIS_FAILURE`): its flags, each said in
        a chemist's words, with where the scan says the potential lies and what the standard found."""
        flags = ", ".join(sorted(analysis.flags)) or "no usable potential"
        bound = scan_bound(self.campaign, analysis)  # where the scan says the potential lies, as the model learns it
        where = "" if bound is None else f", {'above' if bound[1] > 0 else 'below'} {bound[0]:.3f} V vs Li/Li+"
        scanned, offset = voltammogram.potential_v, self.campaign.cell.reference_offset_v
        low, high = (to_li_scale(float(e), offset) for e in (scanned.min(), scanned.max()))
        inverted = (inverted_peak_v(voltammogram) if analysis.flags & {CVFlag.NO_PEAK, CVFlag.BEYOND_WINDOW}
                    else None)
        if inverted is not None:  # the driver's sign, not the molecule: said instead of where the potential lies
            flags += (f" (no wave of the right sign between {low:.3f} and {high:.3f} V vs Li/Li+, the window scanned, "
                      f"but {INVERTED_SAID}: a cathodic-signed peak on the anodic sweep, at "
                      f"{to_li_scale(inverted, offset):.3f} V vs Li/Li+; the driver's sign convention? "
                      "(docs/drivers.md))")
        elif CVFlag.BEYOND_WINDOW in analysis.flags:  # a result about the molecule: say it plainly
            flags += (" (the current still rises at the scan's vertex: the potential lies beyond the window scanned"
                      f"{where})")
        if CVFlag.AT_SCAN_START in analysis.flags:  # likewise: the wave lies at the scan's start
            flags += (f" (the wave lies at the scan's start, its peak before it or its return peak past the scan's "
                      f"end: the potential lies at or before where the scan begins{where}; start it further out)")
        if CVFlag.NO_PEAK in analysis.flags and not bound and inverted is None:  # what was scanned, to judge it by
            flags += (f" (no wave between {low:.3f} and {high:.3f} V vs Li/Li+, the window scanned: the potential "
                      "lies beyond it, or the sample gave no signal)")
        if (CVFlag.CHEMICALLY_IRREVERSIBLE in analysis.flags and analysis.return_share is not None
                and analysis.e_half_v is not None):
            made = "oxidised" if self.campaign.objective.quantity == "oxidation_potential" else "reduced"
            read = (f"{referenced.e_vs_li_v:.3f} V vs Li/Li+ through the ferrocene added"  # as potential_v says
                    if referenced is not None and referenced.e_vs_li_v is not None else
                    f"{to_li_scale(analysis.e_half_v, offset):.3f} V vs Li/Li+ on the cell's nominal reference")
            flags += (f" (the return peak is {analysis.return_share:.0%} of the forward one: what the scan {made} "
                      f"reacts away within seconds; its E1/2 read {read})")
        if CVFlag.NO_STANDARD in analysis.flags and referenced is not None and referenced.problem is not None:
            flags += f" ({referenced.problem})"
        elif referenced is not None and (found := referenced.standard_said()) is not None:
            flags += f" ({found}: the standard was fine)"  # the failure is the analyte's, not the cell's
        return f"{ANALYSIS_FAILURE}{flags}"

    def _on_action(self, experiment_id: int, step: int, name: str, instrument: str, params: Mapping[str, Any],
                   started_at: Any, finished_at: Any, outcome: str | None) -> None:
        """The executor's hook: an action starts (``finished_at`` None) or ends; committed before it returns."""
        with self.interrupts.deferred():
            action = self._open_actions.pop(step, None)
            if action is None:
                action = self.journal.start_action(experiment_id, step, instrument, name, _plain(params))
                self._actions += 1
                self._pumped = self._pumped or pumps_into_cell(name, params)
            self._moved = True
            if finished_at is None:
                self._open_actions[step] = action
            else:
                self.journal.finish_action(action, outcome or "ok", _plain(params))
                if outcome not in (None, "ok"):
                    self._failed = instrument, name

    def _open_step(self, experiment_id: int) -> str:
        """``instrument (step)`` of the experiment's action that has not ended (the step running when a driver
        raised past the executor's hook), or ``a step`` when every action ended."""
        running = [a for a in self.journal.actions(experiment_id) if a.finished_at is None]
        return f"{running[-1].instrument} ({running[-1].command})" if running else "a step"

    def _located(self, exc: BaseException) -> str:
        """The cause of a failed experiment, in one line: ``instrument (step): Type: message``, naming the step whose
        action ended with ``exc`` (the executor's hook set :attr:`_failed`) unless the message already names its
        instrument; a driver's or labloop's own check (a NaN current) may name neither, a plug-in only its port."""
        message = said(exc)
        where = self._failed  # None: after every step
        # a port named with its instrument (a transport's error let out by a plug-in, ``/dev/pts/2 (potentiostat)``,
        # instruments/transport.py ``opening``) says which instrument, not which step
        if where is not None and where[0] and where[0] not in message.replace(f" ({where[0]})", ""):
            message = f"{where[0]} ({where[1]}): {message}"
        return message

    def _plugin_that_raised(self, exc: BaseException, where: tuple[str, str] | None) -> str | None:
        """The campaign's name for the plug-in driver whose code ``exc`` came from, or None: the failed step's
        driver is a plug-in (its code lies outside labloop) and a frame of the traceback lies in its package."""
        driver = self.rig.instruments.get(where[0]) if where is not None else None
        source = inspect.getsourcefile(type(driver)) if driver is not None else None
        if source is None or Path(source).resolve().is_relative_to(PACKAGE):
            return None
        package = Path(source).resolve().parent
        frames = traceback.extract_tb(exc.__traceback__)
        if not any(Path(frame.filename).resolve().is_relative_to(package) for frame in frames):
            return None
        return self.campaign.instruments[where[0]].driver  # type: ignore[index]

    def _fail(self, experiment_id: int, cause: str, *, safe_state: bool = True) -> None:
        """Journal the experiment failed (its open actions ending with ``cause``). With ``safe_state`` (the rig or
        a driver failed part way) the rig is made safe, and what the experiment pumped into the cell is rinsed
        out by the protocol's rinse before the failure is journalled (an action needs its experiment running;
        :meth:`ProtocolExecutor.empty_after_failure`): the next molecule was measured in it. A rig that could not
        be made safe is neither rinsed nor given the next sample: :class:`RigUnsafe` stops the run once the
        failure is journalled, since a pump that did not stop may still be pumping."""
        with self.interrupts.deferred():
            for action in self._open_actions.values():
                self.journal.finish_action(action, cause)
            self._open_actions = {}
        unsafe: list[str] = []
        try:
            if safe_state:
                unsafe = self.rig.safe_state()  # never raises; reports what it could not do
            if not unsafe and safe_state and self._pumped and self.executor.contents.cell_ml > 0:
                self.rig.in_use()
                self.executor.empty_after_failure(experiment_id, lambda *args: self._on_action(experiment_id, *args))
        finally:  # a Ctrl-C while the operator is asked to rinse must not turn the failure into an interruption
            with self.interrupts.deferred():
                for action in self._open_actions.values():
                    self.journal.finish_action(action, "interrupted")
                self._open_actions = {}
                self.journal.fail_experiment(experiment_id, cause)
        if unsafe:
            raise RigUnsafe(experiment_id, unsafe)

    # -- learning, checking, waiting ------------------------------------------------------------------

    def _health_check(self) -> None:
        """Journal the instruments' health; one warning line per instrument that failed it. Mid-run the run goes
        on (the instrument's next step, if it is broken, fails its experiment, and faults in a row stop the run);
        the check before the first experiment already refused the run (``Rig.check_health``)."""
        report = self.rig.health_check()
        bad = {name: state for name, state in report.items() if not state.startswith("ok")}
        message = "all instruments ok" if not bad else "; ".join(f"{n}: {s}" for n, s in bad.items())
        for name, state in bad.items():
            log.warning("health check: %s failed: %s", name, state.removeprefix(HEALTH_ERROR))
        with self.interrupts.deferred():
            self.journal.add_event("health", message, data=report)

    def _stop_reason(self, experiments: Sequence[ExperimentRow]) -> str | None:
        return stop_reason(self.campaign, experiments, self.started)

    def _hold(self, waiting: list[int], show: Callable[[str], None]) -> None:
        """``planner.approve``: one turn of waiting for a person to approve or veto the ``waiting`` batch. Each
        batch is journalled once per run as ``awaiting_approval`` (which alerts), so a resumed run says it
        again; Ctrl-C still stops."""
        them = f"{plural(len(waiting), 'experiment')} {', '.join(map(str, waiting))}"
        if waiting != self._held:
            self._held = waiting
            batch = " ".join(f"--batch {i}" for i in waiting)  # one option per id, as click takes them
            message = (f"{them} {plural(len(waiting), 'awaits', 'await')} approval ({self._held_said(waiting)}): "
                       f"labloop approve {shell_word(self.journal.path.absolute())} {batch} [--veto ID]..., or the "
                       "dashboard")
            console.err.print(message, markup=False, highlight=False)
            with self.interrupts.deferred():
                self.journal.add_event("awaiting_approval", message, data={"experiments": waiting})
        show(f"awaiting approval of {them}")
        time.sleep(APPROVAL_POLL_S)

    def _held_said(self, waiting: list[int]) -> str:
        """The molecules of a held batch, each with its prediction, for the line and the alert that ask for a
        decision: the alert named ids alone, and a person deciding from a phone had nothing to decide on (an
        operator's trial). A long SMILES is cut (the dashboard and ``labloop log`` show it whole)."""
        rows = {e.id: e for e in self.journal.experiments(states=(State.AWAITING_APPROVAL,))}
        said = []
        for experiment_id in waiting:
            row = rows.get(experiment_id)
            if row is None:
                continue
            smiles = clipped(row.smiles, HELD_SMILES_CHARS)
            # the prior's scale, as `labloop log`'s * says; a first batch the lab's past measurements calibrated is not
            # (the line said "before any measurement" over a model calibrated on 166 of them: a chemist's trial)
            predicted = "" if row.mu is None else f", predicted {row.mu:.2f} V" + (
                " before any measurement" if row.step == 0 and not self.past else "")
            said.append(f"{experiment_id}: {smiles}{predicted}")
        return "; ".join(said)

    def _wait_for_active_hours(self, show: Callable[[str], None]) -> None:
        """Outside ``schedule.active_hours``: wait, saying so on the status line (Ctrl-C still stops)."""
        if self.hours.contains(datetime.now()):
            return
        opens = self.hours.next_start(datetime.now())
        message = self.hours.said_waiting(datetime.now())
        console.err.print(message, markup=False, highlight=False)
        with self.interrupts.deferred():
            self.journal.add_event("waiting", message)
        while not self.hours.contains(datetime.now()):
            show(f"outside active hours {self.hours.text}: waiting until {opens:%H:%M}")
            time.sleep(WAIT_POLL_S)

