"""`labloop candidates`: the library molecules a campaign has not measured, ranked by the probability that each
is a hit (orchestrator/candidates.py), with the calibrated prediction each is ranked by.

Why a command of its own: ``log``, the report and the dashboard show what was measured; what a lab orders or
measures next once a campaign stopped is what it did not measure, and that needs the model, which those never
load. Like ``log`` it reads the journal through a read-only connection and takes no lock, so it answers while a
run holds the store, and on a finished or stopped campaign alike. Given a campaign file not run yet, it ranks by the
prior model calibrated on the lab's past measurements: what to measure first, before any run.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from labloop.core.errors import ConfigError
from labloop.core.text import plural, printable, spreadsheet_safe
from labloop.orchestrator import console
from labloop.orchestrator.candidates import Ranking, rank, rank_before_run
from labloop.orchestrator.cli import preflight
from labloop.orchestrator.cli.run import journalled_campaign
from labloop.orchestrator.config.campaign import load_campaign
from labloop.orchestrator.journal.store import Journal
from labloop.orchestrator.loop.interrupts import EXIT_INTERRUPTED, Interrupts, signal_said
from labloop.orchestrator.potential_table import read_past
from labloop.planners.feedback import bounds_said

log = logging.getLogger(__name__)

#: the columns of ``--csv``, in :class:`labloop.orchestrator.candidates.Candidate`'s names
CSV_COLUMNS = ("rank", "name", "smiles", "mu_v", "sd_v", "p_hit", "sample_id")


@click.command(help="The library molecules a campaign has not measured (nor proposed, nor among its past "
                    "measurements), ranked by the probability of a hit under its objective, each with its prediction "
                    "+/- 1 sd by the newest model calibrated on the measurements as the next proposal would be. "
                    "Reads the journal only: works while a run holds it. Given the campaign file of a campaign not "
                    "run yet, ranks by its prior model calibrated on its past_measurements (training the prior "
                    "beside the store if it is not cached there).")
@click.argument("store", metavar="STORE|CAMPAIGN.yaml", type=click.Path(path_type=Path))
@click.option("--top", default=10, show_default=True, type=click.IntRange(min=1),
              help="How many of the best candidates the table (and --json) shows.")
@click.option("--csv", "csv_file", type=click.Path(path_type=Path, dir_okay=False),
              help="Also write every ranked candidate to this CSV file.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object (the --top candidates) instead of a table.")
def candidates(store: Path, top: int, csv_file: Path | None, as_json: bool) -> None:
    if store.suffix.lower() in (".yaml", ".yml"):
        ranking, journal = _from_campaign_file(store)
    else:
        ranking, journal = _from_journal(store), store
    if csv_file is not None:
        _write_csv(ranking, csv_file)
    if as_json:
        source = {"store": str(journal)} if journal is not None else {"store": None, "campaign_file": str(store)}
        click.echo(json.dumps({**source, **ranking.to_dict(top)}, allow_nan=False))
        return
    console.out.print(_header(ranking, journal), markup=False, highlight=False, soft_wrap=True)
    console.out.print(_table(ranking, top))


def _from_journal(store: Path) -> Ranking:
    """The ranking by the journal at ``store``, as its next proposal would see it."""
    with Journal.open(store, readonly=True) as journal:
        # alerts are no part of a ranking: an alert URL's ${VARIABLE} unset in this shell must not refuse it
        config = {**journal.campaign_info().config, "alerts": []}
        campaign, _ = journalled_campaign(store, config, then="then ask again")
        preflight.unchanged_inputs(campaign, journal)  # the journal speaks of the library and prior as they were
        library = campaign.library.smiles()
        with console.progress() as bar:
            task = bar.add_task("predicting the library", total=None, counted="library molecules predicted")
            return rank(campaign, journal, library, lambda done, total: bar.update(task, completed=done, total=total))


def _from_campaign_file(path: Path) -> tuple[Ranking, Path | None]:
    """The ranking for the campaign file at ``path``: by its journal once it has one (said, with the journal's path),
    else by its prior model calibrated on its past measurements (:func:`rank_before_run`); with the journal's path, or
    None."""
    campaign = load_campaign(path, alerts=False)
    if campaign.store.exists():
        console.err.print(printable(f"{path} has run: ranked from its journal {campaign.store}"), markup=False,
                          highlight=False, soft_wrap=True)
        return _from_journal(campaign.store), campaign.store
    if campaign.prior is None:
        raise ConfigError(campaign.located("prior"), "candidates of a campaign not run yet need its prior (the "
                                                     "surrogate's data): the campaign has none")
    library = campaign.library.smiles()
    past = read_past(campaign, library)
    for note in past.notes if past is not None else ():
        console.err.print(f"warning: {printable(note)}", markup=False, highlight=False, soft_wrap=True)
    preflight.check_prior_cache(campaign, "rank a copy of the campaign in a folder you can write")
    try:  # a Ctrl-C or a kill while the prior trains said only "aborted" (a lab head's trial), SIGTERM not that
        with Interrupts():
            preflight.check_prior(campaign)  # reads the prior's table: a second or two for a large one
            prior = preflight.prior_view(campaign)
            if past is not None:  # a table on another scale than declared ranks nothing right: said as validate does
                preflight.warn_past_scale(campaign, past.source, list(past.measurements), prior)
            with console.progress() as bar:
                task = bar.add_task("predicting the library", total=None, counted="library molecules predicted")
                return rank_before_run(campaign, prior, past, library,
                                       lambda done, total: bar.update(task, completed=done, total=total)), None
    except KeyboardInterrupt as exc:
        console.err.print(f"interrupted ({signal_said(exc)}): nothing ranked, nothing written"
                          f"{preflight.prior_kept(campaign)}", markup=False, highlight=False, soft_wrap=True)
        raise click.exceptions.Exit(EXIT_INTERRUPTED) from None


def _write_csv(ranking: Ranking, path: Path) -> None:
    """Every ranked candidate, one row each, in :data:`CSV_COLUMNS`; a folder that cannot take the file is bad
    input, said as the option's."""
    try:
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(CSV_COLUMNS)
            for c in ranking.candidates:
                writer.writerow([c.rank, spreadsheet_safe(c.name), spreadsheet_safe(c.smiles), f"{c.mu_v:.6f}",
                                 f"{c.sd_v:.6f}", f"{c.p_hit:.6g}", c.sample_id])
    except OSError as exc:
        raise click.BadParameter(f"{path}: cannot write it ({exc.strerror})", param_hint="--csv") from None
    log.info("%d candidates written to %s", len(ranking.candidates), path)


def _header(ranking: Ranking, store: Path | None) -> str:
    """Which model ranked, on what calibration, and what the probability is of; ``store``: the journal ranked from,
    None for a campaign not run yet."""
    bounds = f" and {bounds_said(ranking.bounds)}" if ranking.bounds else ""
    output = "its measured-potential output" if ranking.head == "measured" else "its prior output"
    left = f"{ranking.excluded} measured, failed or pending left out"
    unreadable = f", {ranking.unreadable} the model cannot read" if ranking.unreadable else ""
    # "every ... the last included": the journal's last calibration event (log, report) came before the last
    # measurement, and a newcomer compared 30 measurements and 0.257 V here with 29 and 0.247 V there
    ranked = (f"{len(ranking.candidates)} of {ranking.library} library molecules ranked ({left}{unreadable}); "
              f"P = {ranking.probability_of}")
    if store is None:  # no journal: the prior and the lab's past measurements are all there is
        calibrated = (f"calibrated on {ranking.measurements} past {plural(ranking.measurements, 'measurement')}"
                      f"{bounds}, as the first proposal's model would be" if ranking.measurements else
                      "not calibrated: no past measurements (P is nearly flat: the sd holds the prior's unknown "
                      "offset from the lab's scale)")
        return f"the prior model (the campaign has not run: no journal yet), {calibrated}; {ranked}"
    return (f"model version {ranking.model_version} ({output}), calibrated on {ranking.measurements} "
            f"{plural(ranking.measurements, 'measurement')}{bounds} (every one in the journal, the last included: "
            f"`labloop log` and the report show the calibration of the last proposal); {ranked}")


def _table(ranking: Ranking, top: int) -> Table:
    """The first ``top`` candidates; a name column only when the library names any, a vial column when the protocol
    loads vials; the caption says these are predictions and how far the calibration's held-out predictions were
    off."""
    error = (f"calibration's leave-one-out RMSE {ranking.loo_rmse_v:.3f} V ({ranking.learner})"
             if ranking.loo_rmse_v is not None else "no measurement to calibrate on yet: sd includes the prior's "
                                                     "unknown offset")
    table = Table(title=f"top {min(top, len(ranking.candidates))} unmeasured candidates",
                  caption=f"predictions, not measurements; {error}")
    shown = ranking.candidates[:top]
    named, vials = any(c.name for c in shown), any(c.sample_id for c in shown)
    table.add_column("rank", justify="right")
    if vials:
        table.add_column("vial")
    if named:
        table.add_column("name")
    table.add_column("smiles", overflow="fold")
    table.add_column("predicted V vs Li/Li+ ± 1 sd", justify="right")  # as `log` says its sd
    table.add_column("P(hit)" if ranking.probability_of.startswith("hit") else "P", justify="right")
    for c in shown:
        cells = [str(c.rank), *([c.sample_id] if vials else []), *([Text(console.printable(c.name))] if named else []),
                 Text(c.smiles),
                 f"{c.mu_v:.3f} ± {c.sd_v:.3f}", f"{c.p_hit:.3f}"]
        table.add_row(*cells)
    return table
