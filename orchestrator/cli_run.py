"""`labloop run | resume | report`: run a campaign, continue a stopped one, and write its report.

Why run and resume share one path (:func:`_run_campaign`): a resumed campaign must behave exactly like
one that never stopped, so both build the same world, rig, protocol executor, model and runner; they
differ only in where the campaign comes from (the YAML file, or the journal's config as run).
Bad input is found before anything is written: the campaign, the planner kind and the protocol against
the rig are all checked before the journal is created.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from labloop.instruments.manual_sampler import MANUAL
from labloop.orchestrator import console, models
from labloop.orchestrator.alerts import Alerter
from labloop.orchestrator.campaign import Campaign, load_campaign
from labloop.orchestrator.interrupts import Interrupted, Interrupts
from labloop.orchestrator.journal import Journal, JournalError, State
from labloop.orchestrator.runner import EXIT_FAULTS, EXIT_INTERRUPTED, Runner
from labloop.planners import make_planner
from labloop.surrogate.dataset import read_table

if TYPE_CHECKING:
    from labloop.orchestrator.rig import Rig
    from labloop.protocols.executor import ProtocolExecutor

log = logging.getLogger(__name__)


@click.command(help="Run a campaign: propose, measure, learn, until its budget is reached. --dry-run puts every "
                    "instrument on its emulator in the campaign's simulated world.")
@click.argument("campaign_file", metavar="CAMPAIGN.yaml", type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="Every instrument on its emulator (nothing real is touched).")
@click.option("--store", type=click.Path(path_type=Path), help="The journal file (default: the campaign's store).")
@click.option("--seed", type=click.IntRange(min=0), help="Override the campaign's seed.")
def run(campaign_file: Path, dry_run: bool, store: Path | None, seed: int | None) -> int:
    campaign = load_campaign(campaign_file)
    updates = {key: value for key, value in (("store", store and store.absolute()), ("seed", seed))
               if value is not None}
    campaign = campaign.model_copy(update=updates)
    source = campaign_file.read_text()
    return _run_campaign(campaign, dry_run, lambda: Journal.create(campaign.store, campaign, source_yaml=source))


@click.command(help="Continue a stopped campaign (Ctrl-C, a crash, kill -9) to the same budget: done experiments "
                    "are kept, an interrupted one runs again.")
@click.argument("store", type=click.Path(path_type=Path))
def resume(store: Path) -> int:
    with Journal.open(store) as journal:
        campaign = Campaign.model_validate(journal.campaign_info().config)
        runs = [e for e in journal.events() if e.kind == "run"]
    dry_run = bool(runs and runs[-1].data.get("dry_run"))
    return _run_campaign(campaign.model_copy(update={"store": store.absolute()}), dry_run,
                         lambda: Journal.open(store))


@click.command(help="Write a campaign's report: an HTML page with PNG plots and CSV exports.")
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Folder (default: <store>.report/).")
def report(store: Path, output: Path | None) -> None:
    from labloop.orchestrator.report import write_report  # matplotlib loads only here

    with Journal.open(store, readonly=True) as journal:
        page = write_report(journal, output or store.with_name(f"{store.stem}.report"))
    console.out.print(f"report: {page}")


def _run_campaign(campaign: Campaign, dry_run: bool, open_journal: Callable[[], Journal]) -> int:
    from labloop.orchestrator.rig import build_rig
    from labloop.protocols.executor import ProtocolExecutor
    from labloop.sim.world import World

    library = read_table(campaign.library.file, (), campaign.library.smiles_column).smiles
    make_planner(campaign, library)  # an unavailable planner kind is bad input: fail before anything runs
    world = World.from_campaign(campaign) if dry_run else None
    with Interrupts() as interrupts:
        try:
            with build_rig(campaign, dry_run=dry_run, world=world) as rig:
                executor = ProtocolExecutor.from_campaign(campaign, rig)
                executor.check()
                with open_journal() as journal, _sole_runner(journal.path):
                    code = _with_journal(campaign, journal, rig, executor, library, dry_run, interrupts)
        except Interrupted:
            code = EXIT_INTERRUPTED
    store = campaign.store
    if code == EXIT_INTERRUPTED:
        console.err.print(f"interrupted: instruments are in a safe state and the journal is consistent.\n"
                          f"continue with: labloop resume {store}", markup=False, highlight=False, soft_wrap=True)
    elif code == EXIT_FAULTS:
        with Journal.open(store, readonly=True) as journal:
            stopped = next((e.message for e in reversed(journal.events()) if e.kind == "stopped"), "failures in a row")
        console.err.print(f"stopped: {stopped}; see `labloop log {store}`, fix the rig, then `labloop resume {store}`",
                          markup=False, highlight=False, soft_wrap=True)
    return code


@contextmanager
def _sole_runner(store: Path) -> Iterator[None]:
    """Hold an exclusive lock on the store while a run writes it, so a second ``run`` or ``resume`` of the
    same campaign is refused instead of interleaving experiments (the lock dies with the process)."""
    fd = os.open(store, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JournalError(f"{store}: another labloop process is running this campaign") from None
        yield
    finally:
        os.close(fd)


def _with_journal(campaign: Campaign, journal: Journal, rig: Rig, executor: ProtocolExecutor, library: list[str],
                  dry_run: bool, interrupts: Interrupts) -> int:
    with interrupts.deferred():
        again = journal.mark_interrupted_on_resume()
        journal.add_event("run", f"run started ({'dry run on emulators' if dry_run else 'real instruments'})"
                                 + (f"; experiment(s) {again} will run again" if again else ""),
                          data={"dry_run": dry_run})
    model = _model(campaign, journal)
    if model is not None:
        model.model.predict(library)  # once per model version, before the rig starts
    people = [name for name, spec in campaign.instruments.items() if spec.driver == MANUAL.name]
    with Alerter(campaign.alerts, journal, campaign.name, operators=people):
        code = Runner(campaign, journal, rig, executor, library, model, interrupts).run()
    done = len(journal.experiments(states=(State.DONE,)))
    failed = len(journal.experiments(states=(State.FAILED,)))
    console.err.print(f"{campaign.name}: {done}/{campaign.budget.max_experiments} experiments done, {failed} failed; "
                      f"journal {journal.path} (`labloop log`, `labloop report`)", markup=False, highlight=False,
                      soft_wrap=True)
    return code


def _model(campaign: Campaign, journal: Journal) -> models.LoadedModel | None:
    """The newest journalled model, else the prior model (trained, with a progress bar, or from its cache)."""
    if campaign.prior is None:
        return None
    latest = models.latest_model(campaign, journal)
    if latest is not None:
        return latest
    with console.progress() as bar:
        epochs = models.campaign_preset(campaign).model.epochs
        task = bar.add_task("prior model", total=campaign.surrogate.folds * epochs)
        return models.prior_model(campaign, journal, lambda member, epoch: bar.update(
            task, completed=member * epochs + epoch + 1))
