"""`labloop run | resume | report`: run a campaign, continue a stopped one, and write its report.

Why run and resume share one path (:func:`_run_campaign`): a resumed campaign must behave exactly like
one that never stopped, so both build the same world, rig, protocol executor, model and runner; they
differ only in where the campaign comes from (the YAML file, or the journal's config as run).
Bad input is found before anything is written: the campaign, the planner kind and the protocol against
the rig are all checked before the journal is created.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click
from pydantic import ValidationError

from labloop.core.errors import JournalError
from labloop.instruments.manual_sampler import MANUAL
from labloop.orchestrator import compose, console
from labloop.orchestrator.config.campaign import Campaign, load_campaign
from labloop.orchestrator.journal.lock import sole_runner
from labloop.orchestrator.journal.store import Journal, State
from labloop.orchestrator.learning import models
from labloop.orchestrator.loop.alerts import Alerter
from labloop.orchestrator.loop.interrupts import Interrupted, Interrupts
from labloop.orchestrator.loop.runner import EXIT_FAULTS, EXIT_INTERRUPTED, Runner

if TYPE_CHECKING:
    from labloop.orchestrator.loop.rig import Rig
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
        config = journal.campaign_info().config
        runs = [e for e in journal.events() if e.kind == "run"]
    try:
        campaign = Campaign.model_validate(config)
    except ValidationError as exc:  # e.g. the library file moved since the run started
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "campaign"
        raise JournalError(f"{store}: the campaign this journal ran no longer validates: {field}: {first['msg']} "
                           "(moved or changed since the run started? put it back, then resume)") from None
    dry_run = bool(runs and runs[-1].data.get("dry_run"))
    return _run_campaign(campaign.model_copy(update={"store": store.absolute()}), dry_run,
                         lambda: Journal.open(store))


@click.command(help="Write a campaign's report: an HTML page with PNG plots and CSV exports.")
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Folder (default: <store>.report/).")
def report(store: Path, output: Path | None) -> None:
    from labloop.orchestrator.report import write_report  # matplotlib loads only here

    folder = output or store.with_name(f"{store.stem}.report")
    if folder.exists() and not folder.is_dir():
        raise click.BadParameter(f"{folder} is a file, not a folder for the report", param_hint="--output")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.BadParameter(f"{folder}: cannot create the report folder ({exc.strerror})",
                                 param_hint="--output") from None
    if not os.access(folder, os.W_OK):
        raise click.BadParameter(f"{folder}: cannot write into this folder", param_hint="--output")
    with Journal.open(store, readonly=True) as journal:
        page = write_report(journal, folder)
    console.out.print(f"report: {page}")


def _run_campaign(campaign: Campaign, dry_run: bool, open_journal: Callable[[], Journal]) -> int:
    """Check everything, take the store's lock, and only then open the rig and the journal: a second
    ``run``/``resume`` of a running campaign is refused before it touches any instrument."""
    library, world = compose.check_campaign(campaign, dry_run=dry_run)
    with Interrupts() as interrupts, sole_runner(campaign.store):
        try:
            with compose.build_rig(campaign, dry_run=dry_run, world=world, library=library) as rig:
                executor = compose.build_executor(campaign, rig)
                executor.check()
                with open_journal() as journal:
                    if world is not None:
                        world.resume_at(journal.raw_count())  # a drifting reference continues where it was
                    code = _with_journal(campaign, journal, rig, executor, library, dry_run, interrupts)
        except Interrupted:
            code = EXIT_INTERRUPTED
    store = campaign.store
    if code == EXIT_INTERRUPTED:
        console.err.print(f"interrupted: the journal is consistent.\ncontinue with: labloop resume {store}",
                          markup=False, highlight=False, soft_wrap=True)
    elif code == EXIT_FAULTS:
        with Journal.open(store, readonly=True) as journal:
            stopped = next((e.message for e in reversed(journal.events()) if e.kind == "stopped"), "failures in a row")
        console.err.print(f"stopped: {stopped}; see `labloop log {store}`, fix the rig, then `labloop resume {store}`",
                          markup=False, highlight=False, soft_wrap=True)
    return code


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
