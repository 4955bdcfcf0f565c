"""`labloop log | report`: show a campaign's journal (``--follow`` while a run writes it), write its report.

Why apart from the campaign file's commands (orchestrator/cli/campaign.py): these read a journal through a read-only
connection and nothing of the campaign's checks, planners or drivers, so they can watch a live run without getting in
the writer's way, and start in a fraction of the time ``validate`` needs to import what it checks (``log --follow``
is what an operator types at the rig, again and again).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import click
from rich.live import Live

from labloop.orchestrator import console
from labloop.orchestrator.cli.main import EXIT_FAILED
from labloop.orchestrator.journal.lock import being_run
from labloop.orchestrator.journal.store import Journal
from labloop.orchestrator.journal.view import ended_as, event_line, progress_line, render, run_end, snapshot
from labloop.orchestrator.loop.interrupts import signal_said

log = logging.getLogger(__name__)

#: what ``STORE`` is, in both commands' help: a newcomer found it explained in README.md only
STORE_SAID = "STORE is the journal, the .db file the campaign's `store` names (e.g. runs/NAME.db)"

#: how often ``log --follow`` asks the journal whether another process has committed (s)
FOLLOW_INTERVAL_S = 1.0


@click.command(help=f"Show a campaign's journal: experiments, measurements, best so far, recent events. {STORE_SAID}.")
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--follow", "-f", is_flag=True, help="Keep showing the journal while a run writes it (redrawn in place "
                                                  "on a terminal; piped, each new event appends a line); stops when "
                                                  "no run does, exit 0 if that run finished its campaign and 1 if it "
                                                  "stopped otherwise (or Ctrl-C: exit 0).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@click.option("--last", default=20, show_default=True, type=click.IntRange(min=1),
              help="How many of the latest experiments the tables show.")
def log_command(store: Path, follow: bool, as_json: bool, last: int) -> None:
    if follow and as_json:
        raise click.UsageError("--follow and --json do not go together; poll `labloop log --json` instead")
    with Journal.open(store, readonly=True) as journal:
        if as_json:
            click.echo(json.dumps(snapshot(journal), allow_nan=False))  # the journal's readers refuse NaN
        elif follow and not _follow(journal, last):
            raise click.exceptions.Exit(EXIT_FAILED)
        else:
            console.out.print(render(snapshot(journal), last))


def _follow(journal: Journal, last: int) -> bool:
    """Redraw whenever another process has committed, on a terminal in place; elsewhere (a pipe, a file) the
    tables once, then a line per new event and per change of the counts, as ``tail -f`` would (reprinting
    every table on each commit made a log file grow by the whole view every second). False when the run it ends
    with stopped other than by finishing its campaign (True for a Ctrl-C of the following, and for a journal no run
    wrote): ``log --follow && notify`` told a killed run from a finished one by nothing (a lab manager's trial)."""
    live = Live(console=console.out, auto_refresh=False) if console.out.is_terminal else None
    seen, events_shown, progress = None, None, None
    try:
        if live is not None:
            live.start()
        while True:
            running = being_run(journal.path)  # read before the journal: its last state is then on screen
            version = journal.data_version()
            if version != seen:
                seen = version
                snap = snapshot(journal)
                if live is not None:
                    live.update(render(snap, last), refresh=True)
                elif events_shown is None:
                    console.out.print(render(snap, last))
                else:
                    for event in snap["events"][events_shown:]:  # one line each, however long: for grep
                        console.out.print(event_line(event), markup=False, highlight=False, soft_wrap=True)
                    if progress_line(snap) != progress:
                        console.out.print(progress_line(snap), markup=False, highlight=False, soft_wrap=True)
                events_shown, progress = len(snap["events"]), progress_line(snap)
                console.out.file.flush()
            if not running:
                ended = console.printable(run_end(snap["events"], snap["progress"]))  # quotes journal text
                console.err.print(f"no run is writing this journal ({ended}): stopped following", markup=False,
                                  highlight=False)
                return ended_as(snap["events"]) in ("finished", "not_started")  # a journal no run wrote: no end
            time.sleep(FOLLOW_INTERVAL_S)
    except KeyboardInterrupt as exc:  # Ctrl-C is how one stops following: exit 0
        log.info("stopped following %s", journal.path)
        if signal_said(exc) != "SIGINT":  # a kill is no end the user chose: said, exit 130 (a reviewer's finding:
            raise  # a supervisor read a SIGTERM as success)
        return True
    finally:
        if live is not None:
            live.stop()


@click.command(help=f"Write a campaign's report: an HTML page with PNG plots and CSV exports. {STORE_SAID}.")
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--output", "-o", type=click.Path(path_type=Path),
              help="Folder (default: beside the store, its name with .report instead of .db).")
def report(store: Path, output: Path | None) -> None:
    from labloop.orchestrator.report import not_a_report, write_report  # matplotlib loads only here

    folder = output or store.with_name(f"{store.stem}.report")
    if folder.exists() and not folder.is_dir():
        raise click.BadParameter(f"{folder} is a file, not a folder for the report", param_hint="--output")
    if replaced := not_a_report(folder):
        raise click.BadParameter(f"{folder} holds {', '.join(replaced)}, which the report would replace, and no "
                                 "earlier report: give a new folder, or an earlier report's", param_hint="--output")
    if not folder.parent.is_dir():  # a typo made whole trees of folders (-o /nonexistent/x/y)
        raise click.BadParameter(f"{folder}: its folder {folder.parent} does not exist", param_hint="--output")
    with Journal.open(store, readonly=True) as journal:  # not a journal: refused before a folder is made
        made = not folder.exists()
        try:
            folder.mkdir(exist_ok=True)
        except OSError as exc:
            raise click.BadParameter(f"{folder}: cannot create the report folder ({exc.strerror})",
                                     param_hint="--output") from None
        if not os.access(folder, os.W_OK):
            raise click.BadParameter(f"{folder}: cannot write into this folder", param_hint="--output")
        try:
            page = write_report(journal, folder)
        except BaseException:
            if made:  # a journal damaged past its first rows: no empty folder either
                folder.rmdir()
            raise
    console.out.print(f"report: {page}")
