"""`labloop run | resume`: run a campaign, and continue a stopped one.

Why run and resume share one path (:func:`_run_campaign`): a resumed campaign must behave exactly like
one that never stopped, so both build the same world, rig, protocol executor, model and runner; they
differ only in where the campaign comes from (the YAML file, or the journal's config as run).
Bad input is found before anything is written: the campaign, the planner kind and the protocol against
the rig are all checked before the journal is created.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
from pydantic import ValidationError

from labloop.core.errors import InputError, JournalError, JournalWriteError, dotted, first_line, not_one_of
from labloop.core.text import shell_word
from labloop.core.version import runtime_versions
from labloop.orchestrator import compose, console
from labloop.orchestrator.cli import options, preflight
from labloop.orchestrator.config.alert_urls import SECRET_SETTINGS
from labloop.orchestrator.config.campaign import Campaign, load_campaign
from labloop.orchestrator.config.yaml_source import first_problem
from labloop.orchestrator.journal.lock import sole_runner
from labloop.orchestrator.journal.store import CELL_EMPTIED, SYRINGES_FILLED, UNSAFE, Event, Journal, State, with_advice
from labloop.orchestrator.journal.view import RUN_EVENTS, counts_apart, ended_as, local_time, snapshot
from labloop.orchestrator.learning import models
from labloop.orchestrator.learning.predictions import LibraryPredictions
from labloop.orchestrator.loop.alerts import Alerter
from labloop.orchestrator.loop.interrupts import EXIT_INTERRUPTED, Interrupted, Interrupts
from labloop.orchestrator.loop.rig import PersonAsk
from labloop.orchestrator.loop.runner import (
    EXIT_FAULTS,
    EXIT_OK,
    EXIT_REFUSED,
    Runner,
    check_at_instruments,
    refusal_before_the_run,
    resume_command,
    resume_does,
)
from labloop.orchestrator.loop.stalls import StallWatch
from labloop.orchestrator.potential_table import Past

if TYPE_CHECKING:
    from labloop.orchestrator.loop.rig import Rig
    from labloop.protocols.executor import ProtocolExecutor

log = logging.getLogger(__name__)

#: how the journal says what the operator did by hand (``resume --cell-emptied``, ``--syringes-filled``)
BY_HAND_SAID = {CELL_EMPTIED: "the operator emptied the cell by hand (resume --cell-emptied): the count of what it "
                              "holds restarts at 0",
                SYRINGES_FILLED: "the operator filled every syringe by hand (resume --syringes-filled): each counts as "
                                 "full again"}


scheduler_option = options.scheduler_option(
    default=None, what="bayes/greedy predict the library and score it (overrides compute.scheduler; "
                       "default: compute.scheduler, itself 'auto')")


@click.command(help="Run a campaign: propose, measure, learn, until its budget is reached. --dry-run puts every "
                    "instrument on its emulator in the campaign's simulated world.")
@click.argument("campaign_file", metavar="CAMPAIGN.yaml", type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="Every instrument on its emulator (nothing real is touched).")
@click.option("--store", type=click.Path(path_type=Path), help="The journal file (default: the campaign's store).")
@click.option("--seed", type=click.IntRange(min=0, max=2**32 - 1), help="Override the campaign's seed.")
@scheduler_option
def run(campaign_file: Path, dry_run: bool, store: Path | None, seed: int | None, scheduler: str | None) -> int:
    campaign = preflight.with_resumed_settings(preflight.overridden(load_campaign(campaign_file), store, seed))
    # as validate does: a folder that cannot hold it, a journal of other settings
    preflight.check_store(campaign, "--store" if store is not None else None)
    source = campaign_file.read_text()
    done = preflight.experiments_done(campaign.store)
    if done >= campaign.budget.max_experiments:  # run again on a finished journal: how to go on, nothing more
        return _at_budget(campaign, campaign.store, done)
    preflight.check_room(campaign, "--store" if store is not None else None)

    def create_journal(past: Past | None) -> Journal:  # after every check
        journal = Journal.create(campaign.store, campaign, source_yaml=source,
                                 past=None if past is None else past.journalled())
        if past is not None:
            _say(past.summary())
        return journal

    return _run_campaign(campaign, dry_run, create_journal, scheduler, campaign_file=campaign_file.absolute())


def _at_budget(campaign: Campaign, store: Path, done: int, record: Callable[[Journal], None] | None = None) -> int:
    """``run`` or ``resume`` of a campaign already at its budget (``done`` experiments): its summary and how to give
    it more, exit 0, and nothing else: it opened the rig, journalled a run and sent every alert URL another
    "finished" (an operator's trial), and the run's summary alone did not say how to go on (a newcomer's). What a
    ``resume`` was told (``record``: a filled syringe, an emptied cell, a moved port) is journalled all the same,
    for the resume that gives the campaign more: it opened every port and journalled a run to say so (a hardware
    trial). Under the store's lock, so a campaign another process runs is refused as it is by any run."""
    with sole_runner(store), Journal.open(store, readonly=record is None) as journal:
        _say_if_killed(journal)
        if record is not None:
            record(journal)
        _summary(campaign, journal)
    _say(f"{store}: the campaign was already at its budget ({done} experiments done); to go on, give it a new "
         f"one: labloop resume {shell_word(store)} --max-experiments {done + campaign.budget.max_experiments}")
    return EXIT_OK


@click.command(help="Continue a stopped campaign (Ctrl-C, a crash, kill -9) to its budget, or to a new one with "
                    "--max-experiments: done experiments are kept, an interrupted one runs again.")
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--max-experiments", type=click.IntRange(min=1, max=1_000_000),
              help="A new budget.max_experiments, e.g. more experiments for a finished campaign (journalled).")
@click.option("--cell-emptied", is_flag=True,
              help="The cell was emptied by hand since the run stopped: the count of what it holds restarts at 0 "
                   "(journalled). Without it the cell holds, by the journal's count, what was pumped into it since "
                   "its last completed rinse or clean.")
@click.option("--syringes-filled", is_flag=True,
              help="Every pump's syringe was filled by hand since the run stopped: each counts as full again "
                   "(journalled).")
@click.option("--port", "ports", multiple=True, metavar="INSTRUMENT=PORT",
              help="The serial port an instrument is on now, where it came back under another name (a USB adapter "
                   "plugged in again); repeatable (journalled).")
@scheduler_option
def resume(store: Path, max_experiments: int | None, cell_emptied: bool, syringes_filled: bool,
           ports: tuple[str, ...], scheduler: str | None) -> int:
    with Journal.open(store) as journal:
        config = journal.campaign_info().config
        runs = journal.events(kinds=("run",))
        done = len(journal.experiments(states=(State.DONE,)))
    moved = _moved_ports(ports, config["instruments"])
    if moved:
        config = {**config, "instruments": {name: {**spec, "port": moved.get(name, spec.get("port"))}
                                            for name, spec in config["instruments"].items()}}
    if max_experiments is not None:
        if max_experiments < done:
            raise click.BadParameter(f"{max_experiments} is fewer than the {done} experiments already done",
                                     param_hint="--max-experiments")
        config = {**config, "budget": {**config["budget"], "max_experiments": max_experiments}}
    campaign, relocated = journalled_campaign(store, config)
    dry_run = bool(runs and runs[-1].data.get("dry_run"))
    # the file the last run was read from; none for a store that moved or was copied since, whose runs named the
    # other copy's file (a reviewer's false "changed since" on every resume of a copy), nor for one journalled before
    last = runs[-1].data if runs and isinstance(runs[-1].data, dict) else {}
    read_from = (Path(last["campaign_file"]) if relocated is None and isinstance(last.get("campaign_file"), str)
                 else None)
    previous = runs[-1].data.get("scheduler") if runs else None
    if scheduler is None and previous is not None:  # the option is no part of the campaign: said, not carried over
        _say(f"note: the last run used --scheduler {previous}; this one goes by compute.scheduler (default auto): "
             f"give --scheduler {previous} to run there again")
    by_hand = [kind for kind, given in ((CELL_EMPTIED, cell_emptied), (SYRINGES_FILLED, syringes_filled)) if given]

    def open_journal(_past: Past | None) -> Journal:  # after every check: a refused resume changes nothing
        # absolute: the runner's advice names the journal's path, and an alert read on a phone cannot use runs/x.db
        journal = Journal.open(store.absolute())
        try:
            preflight.unchanged_inputs(campaign, journal)
        except InputError:
            journal.close()
            raise
        return journal

    def record(journal: Journal) -> None:  # once nothing refuses the run (_with_journal)
        if max_experiments is not None and max_experiments != journal.campaign_info().config["budget"][
                "max_experiments"]:
            journal.extend_budget(max_experiments)
        for name, port in moved.items():
            _say(f"instruments.{name}.port {journal.move_port(name, port)} -> {port} (journalled"
                 + ("; this journal's runs are dry runs, whose emulators open no port)" if dry_run else ")"))
        for kind in by_hand:
            journal.add_event(kind, BY_HAND_SAID[kind])
            if done >= campaign.budget.max_experiments:  # no run follows to show that it was taken in
                _say(f"{BY_HAND_SAID[kind]} (journalled)")
        if relocated is not None:
            _say(f"{journal.record_move(relocated)} (journalled)")

    if done >= campaign.budget.max_experiments:  # nothing to do; what it was told is recorded
        return _at_budget(campaign, store, done, record if moved or by_hand or relocated is not None else None)
    campaign = campaign.model_copy(update={"store": store.absolute()})
    preflight.check_room(campaign)
    try:
        return _run_campaign(campaign, dry_run, open_journal,
                             scheduler, by_hand=by_hand, record=record, campaign_file=read_from, resumed=True)
    except InputError as exc:  # a refusal's advice: the command again, with what this one was given
        # but not a port it refuses, where the advice asks for the right one (--port NAME=PORT): "labloop resume
        # STORE --port analyte_pump=/dev/ttyUSB7 ... --port NAME=PORT" for a /dev/ttyUSB7 that does not exist (a
        # trial); the refused instrument by its name, as a port's path may begin another's (/dev/ttyUSB1, ...USB10)
        refused = _REFUSED_PORT.search(str(exc)) if "--port NAME=PORT" in str(exc) else None
        kept = [port for port in ports if refused is None or port.partition("=")[0].strip() != refused[1]]
        given = "".join([*(f" --port {shell_word(port)}" for port in kept),
                         *([f" --max-experiments {max_experiments}"] if max_experiments is not None else []),
                         *([f" --scheduler {shell_word(scheduler)}"] if scheduler is not None else [])])
        # a refusal that does not know the store (the rig's) advises "labloop resume STORE": this one is known
        said = str(exc).replace("`labloop resume STORE", f"`labloop resume {shell_word(store)}")
        if "`labloop resume " not in said or (not given and said == str(exc)):
            raise
        raise InputError(_RESUME_ADVICE.sub(lambda m: m[0] + given, said)) from None


#: where a refusal names the port it refuses: ``instruments.NAME.port:``
_REFUSED_PORT = re.compile(r"instruments\.([\w.-]+?)\.port:")
#: the start of a ``labloop resume STORE`` an advice gives, to which :func:`resume` adds the options it was given
#: (a hardware trial's resume with --port was advised without it, and one with --max-experiments lost its budget)
_RESUME_ADVICE = re.compile(r"`labloop resume (?:'[^']*'|[^\s`]+)")


def journalled_campaign(store: Path, config: dict[str, Any], then: str = "then resume"
                        ) -> tuple[Campaign, dict[str, str] | None]:
    """The campaign the journal ``store`` ran, from its journalled ``config``, validated as a continued campaign,
    and where the store moved or was copied (not the same file spelt another way, through a link or with ".."),
    the files that went with it found beside it: returns it with those files (old path -> new; None when the
    store did not move). A campaign that no longer validates (its library moved away) is one line,
    :class:`JournalError`, ending with what to do (``then``: what follows putting the file back)."""
    recorded = Path(config.get("store") or store.absolute())
    moved = recorded != store.absolute() and not (recorded.exists() and recorded.samefile(store))
    context: dict[str, Any] = {"continued": True}
    if moved:
        context |= {"moved": (recorded.parent, store.absolute().parent), "relocated": {}}
    try:
        campaign = Campaign.model_validate(config, context=context)
    except ValidationError as exc:  # e.g. the library file moved since the run started
        loc, message = first_problem(exc, Campaign)
        field = dotted(loc) or "campaign"
        if loc and loc[0] in SECRET_SETTINGS:  # an alert URL's ${VARIABLE}: the environment, not a file, changed
            raise JournalError(f"{store}: {field}: {message}: set it in this shell as it was when the run started, "
                               f"{then}") from None
        where = (f" (neither where it was nor beside the store as it was; the store was at {recorded})" if moved
                 else "")
        raise JournalError(f"{store}: the campaign this journal ran no longer validates: {field}: {message}{where} "
                           f"(moved or changed since the run started? put it back, {then})") from None
    return campaign, context.get("relocated")


def _run_campaign(campaign: Campaign, dry_run: bool, open_journal: Callable[[Past | None], Journal],
                  scheduler: str | None = None, *, by_hand: Sequence[str] = (),
                  record: Callable[[Journal], None] | None = None, campaign_file: Path | None = None,
                  resumed: bool = False) -> int:
    """Take the store's lock, check everything, and only then open the rig and the journal: a second
    ``run``/``resume`` of a running campaign is refused before it checks, starts a cluster or touches any
    instrument, and from its first second the run is live to ``labloop log --follow`` and the dashboard (they read
    the lock; taken after the checks and the cluster's start, a follow begun with a resume said no run wrote the
    journal and quit: an operator's trial). A refused run leaves no lock file (journal/lock.py). The Dask cluster a
    campaign uses (:func:`compose.compute_placement`) is connected to (or started) before the rig, so a scheduler
    that does not answer is bad input with nothing written. ``by_hand``: what the operator says was done by hand
    (``resume --cell-emptied``...), journalled with the rest of ``record`` (``resume``'s writes) only once
    nothing refuses the run (:func:`_with_journal`). ``open_journal`` is given the campaign's past measurements,
    read here with the other checks for a store not yet created (:func:`preflight.past_measurements`).
    ``campaign_file``: the file the campaign was read from (a resume's: the one its journal's runs name), journalled
    with the run so that a ``resume`` (``resumed``) can say when that file changed since."""
    continued = campaign.store.exists()  # a journal's count of the syringes, not the campaign's start, decides then
    with sole_runner(campaign.store) as lock:
        if continued:  # under the store's lock: that run ended, and no run since
            with Journal.open(campaign.store, readonly=True) as journal:
                _say_if_killed(journal)
        library, world = compose.check_campaign(campaign, dry_run=dry_run, continued=continued)
        preflight.check_prior(campaign)
        past = preflight.past_measurements(campaign, library)
        preflight.warn_before_run(campaign, library, dry_run=dry_run)
        with compose.compute_client(campaign, scheduler, len(library), announce=_say) as client, \
                Interrupts() as interrupts:
            try:
                with compose.build_rig(campaign, dry_run=dry_run, world=world, library=library, ask=PersonAsk(),
                                       session=runs_of(campaign.store) if continued else 0) as rig:
                    executor = compose.build_executor(campaign, rig)
                    compose.check_with_conditions(campaign, executor, continued=continued)
                    rig.check_health()  # before the journal is written and before anything is pumped
                    with open_journal(past) as journal:
                        lock.hold_journal()  # a journal just created
                        if world is not None:
                            world.resume_at(journal.raw_count())  # a drifting reference continues where it was
                        code = _with_journal(campaign, journal, rig, executor, library, dry_run, interrupts, client,
                                             by_hand, record, scheduler, campaign_file, resumed)
            except Interrupted:
                code = EXIT_INTERRUPTED
    store = campaign.store
    if code == EXIT_INTERRUPTED and not store.exists():  # stopped while the rig opened or its health was checked
        _say(f"interrupted before the journal {store} was written: nothing ran; start it again with the same "
             "`labloop run`")
    elif code == EXIT_INTERRUPTED:
        console.err.print(f"interrupted: the journal is consistent.\ncontinue with: "
                          f"{_resume_after_interrupt(store, scheduler)}",
                          markup=False, highlight=False, soft_wrap=True)
    elif code in (EXIT_FAULTS, EXIT_REFUSED):
        with Journal.open(store, readonly=True) as journal:
            last = next(iter(journal.events(last=1, kinds=("stopped", "cluster_lost", "finished"))), None)
        if last is not None and last.kind == "finished":  # every experiment ran, but an instrument did not stop
            _say(f"error: {last.message}, but NOT made safe: {'; '.join(last.data['unsafe'])}; check them at the "
                 "instruments (a pump may still pump, the cell may be on)")
        elif last is not None and last.kind == "cluster_lost":  # its advice, journalled for the alerts too
            _say(with_advice(last.message, last.data))
        elif last is not None and isinstance(last.data, dict) and "advice" in last.data:  # the rig needs a person
            _say(f"{'error' if code == EXIT_REFUSED else 'stopped'}: {with_advice(last.message, last.data)}")
        else:
            _say(_stopped(last.message if last is not None else "failures in a row",
                          last.data if last is not None else None, store, scheduler))
    return code


def _killed(journal: Journal) -> str | None:
    """What a resume says of the journal's last run when it ended without a word (``kill -9``, a power cut: the
    dashboard's ``killed``): when it started, when the journal last heard of it, and the experiments it left
    running, which run again or are finished from their measurement (:func:`resume_does`). Why: nothing was left to
    say it, neither an alert nor a last line, and the resume said nothing of it either (an operator's trial). None
    for a run that ended with a word, which said its own."""
    start = _killed_run(journal)
    if start is None:
        return None
    heard = journal.last_heard() or start.time
    again = [e.id for e in journal.experiments(states=(State.RUNNING,))]
    return (f"the last run (started {local_time(start.time)}) ended without a word at {local_time(heard)} "
            "(killed, the machine went down, or the journal could not be written)"
            + (f"; {resume_does(journal, again, 'will run again')}" if again else ""))


def _say_if_killed(journal: Journal) -> None:
    """:func:`_killed`'s line, if any, said by ``run`` or ``resume`` of the journal as soon as it holds the store's
    lock (no run is live then), before any check can refuse it: a resume refused after a kill -9 (the cell not
    emptied, exit 2) said only the refusal, and its line was never said (an operator's trial)."""
    if (killed := _killed(journal)) is not None:
        _say(killed)


def _killed_run(journal: Journal) -> Event | None:
    """The ``run`` event of the journal's last run if that run ended without a word (:func:`view.ended_as`)."""
    events = journal.events(kinds=(*RUN_EVENTS, UNSAFE))  # all ended_as reads, no lab event's raw data
    if ended_as([asdict(e) for e in events]) != "killed":
        return None
    return next(e for e in reversed(events) if e.kind == "run")


def _stopped(message: str, data: object, store: Path, scheduler: str | None) -> str:
    """The line of a stop (exit 1) whose event (``message``, ``data``) gives no advice of its own: where to look,
    and the resume, unless the message says it already: a stop that left liquid in the cell (its ``cell_ml``)
    says to empty it and resume with ``--cell-emptied``, and a second command after it, without the flag, was the
    one a newcomer copied, and the resume was refused."""
    if isinstance(data, dict) and data.get("cell_ml"):
        return f"stopped: {message}; see `labloop log {shell_word(store)}`"
    return f"stopped: {message}; see `labloop log {shell_word(store)}`, then `{resume_command(store, scheduler)}`"


def _moved_ports(given: Sequence[str], instruments: dict[str, Any]) -> dict[str, str]:
    """``--port INSTRUMENT=PORT`` as ``{instrument: port}``: bad input (exit 2, nothing written) without ``=``,
    for an instrument the campaign does not have, or for one without a port (an emulated or hand-run one)."""
    moved: dict[str, str] = {}
    for item in given:
        name, sep, port = item.partition("=")
        if not sep or not name.strip() or not port.strip():
            raise click.BadParameter(f"{item!r}: write INSTRUMENT=PORT, e.g. electrolyte_pump=/dev/ttyUSB1",
                                     param_hint="--port")
        name, port = name.strip(), port.strip()
        if name not in instruments:
            raise click.BadParameter(f"{not_one_of(name, list(instruments))} (the campaign's instruments)",
                                     param_hint="--port")
        if not instruments[name].get("port"):
            raise click.BadParameter(f"{name!r} has no port in the campaign to move", param_hint="--port")
        if name in moved and moved[name] != port:
            raise click.BadParameter(f"{name!r} is given two ports, {moved[name]} and {port}", param_hint="--port")
        moved[name] = port
    return moved


def runs_of(store: Path) -> int:
    """How many runs the journal has had: a resumed dry run's fault rehearsal draws anew (compose.build_rig)."""
    with Journal.open(store, readonly=True) as journal:
        return journal.count_events("run")


def _resume_after_interrupt(store: Path, scheduler: str | None) -> str:
    """The command that continues an interrupted run: with ``--cell-emptied``, after emptying the cell, when the
    run's stop said the cell holds liquid (its ``interrupted`` event), since a resume onto it is refused; with
    ``--syringes-filled``, after filling them, when it said a syringe holds less than the next experiment takes
    (``syringes``), since that resume is refused too. The stop's
    event is the run's last ``interrupted`` event of no one experiment, not the journal's last event: the alert it
    sent, and each interrupted experiment's own event, are journalled around it. None since this run's ``run``
    event: the run stopped before its runner did (a previous run's stop says nothing of this one). Instruments the
    stop could not make safe (``unsafe``) come first, to be checked at the instrument, as a failure's unsafe stop
    says: the last line left them out, and a hung pump went on pumping once it answered again (a hardware trial)."""
    if store.exists():
        with Journal.open(store, readonly=True) as journal:
            events = journal.events()
        stop = next((e for e in reversed(events) if e.kind == "run" or (e.kind == "interrupted"
                                                                        and e.experiment_id is None)), None)
        if stop is not None and stop.kind == "interrupted" and isinstance(stop.data, dict):
            todo = [what for what, needed in (("empty the cell", stop.data.get("cell_ml")),
                                              ("fill every syringe", stop.data.get("syringes"))) if needed]
            flags = [flag for flag, needed in (("--cell-emptied", stop.data.get("cell_ml")),
                                               ("--syringes-filled", stop.data.get("syringes"))) if needed]
            first = [*([check_at_instruments(stop.data["unsafe"])] if stop.data.get("unsafe") else []),
                     *([" and ".join(todo)] if todo else [])]
            if first:
                return f"{', '.join(first)}, then {resume_command(store, scheduler, *flags)}"
    return resume_command(store, scheduler)


def _say(text: str) -> None:
    """One line on stderr, as written (paths and addresses are not rich markup), its control characters as escapes:
    a stop line quotes journal text (an instrument's name, a plug-in's exception), which sent ESC sequences to the
    terminal raw (a security trial)."""
    console.err.print(console.printable(text), markup=False, highlight=False, soft_wrap=True)


def _with_journal(campaign: Campaign, journal: Journal, rig: Rig, executor: ProtocolExecutor, library: list[str],
                  dry_run: bool, interrupts: Interrupts, client: object | None, by_hand: Sequence[str] = (),
                  record: Callable[[Journal], None] | None = None, scheduler: str | None = None,
                  campaign_file: Path | None = None, resumed: bool = False) -> int:
    digests = preflight.unchanged_inputs(campaign, journal)
    if resumed:  # before anything is written, as every refusal
        preflight.refuse_changed_safety(campaign, campaign_file)
    refused = refusal_before_the_run(campaign, journal, executor, by_hand)
    if refused is not None:  # the cell or a syringe needs a person first: one line, exit 2, the journal untouched
        raise InputError(refused)
    preflight.warn_default_safety(campaign)  # after every refusal, which stays one line
    preflight.warn_default_planner(campaign)
    preflight.warn_changed_protocol(campaign)
    preflight.warn_changed_past(journal)
    # before the runner, which journals its own stops, a stop is journalled here: a Ctrl-C held while "run" was
    # written, or one while the prior trains or the library is predicted, left a run that `log` and the dashboard
    # took for killed (a fixer's finding)
    phase = "as it started"
    try:
        with interrupts.deferred():
            # first: what a killed run left open ends when the journal last heard of it, before resume's own writes
            again = journal.mark_interrupted_on_resume(crashed=True)  # a stop of the runner marked its own
            if record is not None:
                record(journal)
            if resumed:  # after resume's own writes: the budget and ports it moved are no difference
                preflight.warn_changed_campaign(campaign, campaign_file, journal)
            journal.add_event("run", f"run started ({'dry run on emulators' if dry_run else 'real instruments'})"
                                     + (f"; {resume_does(journal, again, 'will run again')}" if again else ""),
                              data={"dry_run": dry_run, **digests, "scheduler": scheduler,
                                    "versions": runtime_versions(),
                                    "campaign_file": None if campaign_file is None else str(campaign_file)})
            if resumed:
                _say(_resuming(campaign, journal, said=again))
        phase = "while the prior model loaded or trained"
        model = _model(campaign, journal)
        if model is not None and journal.count_events("run") == 1:  # the journal's first run: before its first
            preflight.warn_past_scale(campaign, journal.past_source(), journal.past_measurements(),  # calibration
                                      model.model, then=" and run the campaign with a new store (`labloop run FILE "
                                                        "--store NEW.db`): this journal keeps the values as read")
        phase = "while the library's predictions were made"
        predictions = None
        if client is not None:  # the runner predicts the library into shards on the cluster, per model version
            predictions = LibraryPredictions(campaign.library.file, campaign.library.smiles_column, journal,
                                             campaign.objective.quantity, client, len(library))
        elif model is not None:
            model.model.predict(library)  # once per model version, before the rig starts
    except Interrupted as exc:
        # a second Ctrl-C from here on is only logged ("already stopping"), as in the runner's own stop: it cut this
        # event's write short and then the rig's closing (a newcomer's double Ctrl-C while the prior trained)
        interrupts.stop()
        journal.add_event("interrupted", f"run stopped by {exc} {phase}")
        raise
    except Exception as exc:  # said by main as it always was; journalled, so log does not call the run killed
        with contextlib.suppress(JournalError, JournalWriteError):  # a full disk may refuse this too
            journal.add_event("stopped", f"campaign stopped {phase}, before this run's first experiment: "
                                         f"{type(exc).__name__}: {first_line(exc)}")
        raise
    # every question the rig puts to a person (its rinse, a manual step, the manual sample changer) goes through
    # rig.asking: one left unanswered alerts as a person waited for, and is no stalled instrument
    with Alerter(campaign.alerts, journal, campaign.name, asking=rig.asking) as alerter, \
            StallWatch(journal, asking=rig.asking):
        runner = Runner(campaign, journal, rig, executor, library, model, interrupts, predictions, scheduler)
        interrupts.on_held = partial(_end_held, runner, alerter, campaign.store, scheduler)
        code = runner.run()
    if code == EXIT_REFUSED:  # nothing moved: the one line of why (run()) is all there is to say
        return code
    _summary(campaign, journal, said_why=code == EXIT_OK)
    return code


def _end_held(runner: Runner, alerter: Alerter, store: Path, scheduler: str | None, signum: int,
              held_s: float) -> NoReturn:
    """End labloop at once, from a stop signal's handler, when the code running held the stop (a plug-in driver that
    catches KeyboardInterrupt: orchestrator/loop/interrupts.py ``FORCE_AFTER_SIGNALS``): the runner's stop (the
    instruments sent their stop, the journal consistent), the stop's alert sent (at most its drain limit: an
    unattended lab got none, a reviewer's probe), the usual last lines, the worker processes ended, and the process
    ended with its exit code, since the code under the handler would catch any exception raised. Whatever fails on
    the way, the process ends: a stop that raised left every later Ctrl-C "already stopping" (a reviewer's finding)."""
    code = EXIT_INTERRUPTED
    try:
        code = runner.stop_held(signum, held_s)
        alerter.__exit__(None, None, None)
        console.err.print(f"interrupted: the journal is consistent; labloop ended at once (the code running held the "
                          f"stop).\ncontinue with: {_resume_after_interrupt(store, scheduler)}",
                          markup=False, highlight=False, soft_wrap=True)
        for child in multiprocessing.active_children():  # a local Dask cluster's, a featurising pool's
            child.terminate()
        logging.shutdown()
    except BaseException as exc:  # the process ends all the same, saying so where nothing else can
        with contextlib.suppress(OSError):
            os.write(2, f"labloop ended at once; its stop failed on the way ({type(exc).__name__}): check the "
                        f"instruments, then `labloop resume {shell_word(store)}`\n".encode())
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _resuming(campaign: Campaign, journal: Journal, said: Sequence[int] = ()) -> str:
    """A resume's opening line, once nothing refused it: the campaign, how far it got, and what of the experiments the
    last run stopped in is done again (:func:`resume_does`), but those ``said`` already (a killed run's, which
    :func:`_killed`'s line names). Why: a resume said nothing until its bar came up, a minute later when a prior loads
    or a retrain it stopped is trained again, and an operator could not tell from the console whether it had picked
    up the campaign they meant (a newcomer's trial)."""
    again = [e.id for e in journal.experiments(states=(State.INTERRUPTED,)) if e.id not in said]
    return (f"resuming {campaign.name}: {_done_of_budget(campaign, counts_apart(snapshot(journal)['progress']))}"
            + (f"; {resume_does(journal, again, 'will run again')}" if again else ""))


def _done_of_budget(campaign: Campaign, counts: dict[str, int]) -> str:
    """``D/M experiments done``, with the failed and vetoed ones the budget does not count (:func:`counts_apart`)."""
    apart = [f"{counts[what]} {what}" for what in (State.FAILED.value, "vetoed") if counts[what]]
    return (f"{counts[State.DONE.value]}/{campaign.budget.max_experiments} experiments done"
            + (f" (+ {' and '.join(apart)}, which the budget does not count)" if apart else ""))


def _summary(campaign: Campaign, journal: Journal, *, said_why: bool = False) -> None:
    """The last line of a run: experiments done of the budget, failed, hits, and where the journal is; with
    ``said_why``, first why a run that ended well stopped short of its budget (its ``finished`` event)."""
    snap = snapshot(journal)
    progress = snap["progress"]
    counts, hits = counts_apart(progress), progress["hits"]
    finished = [e["message"] for e in snap["events"] if e["kind"] == "finished"]
    if said_why and counts[State.DONE.value] < campaign.budget.max_experiments and finished:  # why short of budget
        _say(finished[-1])
    _say(f"{campaign.name}: {_done_of_budget(campaign, counts)}"
         + ("" if hits is None else f", {hits} hit{'' if hits == 1 else 's'}")
         + f"; journal {journal.path} (`labloop log`, `labloop report`)")


def _model(campaign: Campaign, journal: Journal) -> models.LoadedModel | None:
    """The newest journalled model, else the prior model (trained, with a progress bar, or from its cache)."""
    if campaign.prior is None:
        return None
    latest = models.latest_model(campaign, journal)
    if latest is not None:
        return latest
    with preflight.prior_epochs(campaign) as progress:
        return models.prior_model(campaign, journal, progress)
