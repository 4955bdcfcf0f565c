"""`labloop validate | schema`: check a campaign file as `run` would, print the JSON Schema of campaign files.

Why ``validate`` needs nothing else: it must be safe to run anywhere (it opens no port and creates no file).
The commands that read a journal, not a campaign file, are in orchestrator/cli/journal.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from labloop.core.errors import CampaignError
from labloop.core.text import plural, shell_word
from labloop.instruments.voltammogram import UNNAMED_REFERENCE
from labloop.orchestrator import compose, console
from labloop.orchestrator.cli import preflight
from labloop.orchestrator.cli.main import EXIT_BAD_INPUT
from labloop.orchestrator.cli.run import scheduler_option
from labloop.orchestrator.config.campaign import Campaign, World, load_campaign
from labloop.orchestrator.config.yaml_source import display_name
from labloop.orchestrator.journal.store import Journal
from labloop.orchestrator.journal.view import describe_objective
from labloop.orchestrator.potential_table import Past
from labloop.protocols.steps import compact


@click.command(help="Check a campaign file as `run` would before its first byte (every section, file, choice, "
                    "driver option, serial port and safety limit), without touching instruments or creating "
                    "anything. Without --dry-run it opens no driver, so what only an opened driver tells (an open "
                    "that fails, the device's range, its health check) is found only by `run`. --dry-run: as "
                    "`run --dry-run` would, each driver opened on its emulator (no ports needed).")
@click.argument("campaign_file", metavar="CAMPAIGN.yaml", type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check for a dry run: ports need not exist, simulated drivers are ok.")
@click.option("--store", type=click.Path(path_type=Path),
              help="The journal file `run --store` would write (default: the campaign's store).")
@click.option("--seed", type=click.IntRange(min=0, max=2**32 - 1), help="The seed `run --seed` would use.")
@scheduler_option
@click.option("--all", "every_problem", is_flag=True,
              help="List every problem of the campaign file, one line each (default: the first, and how many more).")
@click.pass_context
def validate(ctx: click.Context, campaign_file: Path, dry_run: bool, store: Path | None, seed: int | None,
             scheduler: str | None, every_problem: bool) -> None:
    try:  # the file, then what is known of the instruments before any port opens (three unplugged devices)
        campaign = preflight.with_resumed_settings(preflight.overridden(load_campaign(campaign_file), store, seed))
        library, world = compose.check_campaign(campaign, dry_run=dry_run)
    except CampaignError as exc:
        if not every_problem or len(exc.messages) == 1:
            raise
        for message in exc.messages:  # not one validate run per typo (a newcomer needed three)
            console.err.print(f"error: {console.printable(message)}", markup=False, highlight=False, soft_wrap=True)
        ctx.exit(EXIT_BAD_INPUT)
    preflight.check_prior(campaign)
    past = preflight.past_measurements(campaign, library)
    if past is not None:  # against the prior model only if it is cached: validate trains nothing
        preflight.warn_past_scale(campaign, past.source, list(past.measurements), preflight.cached_prior(campaign))
    preflight.check_store(campaign, "--store" if store is not None else None)
    preflight.check_room(campaign, "--store" if store is not None else None)  # after check_store, which says a
    # folder nothing can be made in
    if campaign.past_measurements is not None and campaign.store.is_file():  # what run and resume would say
        with Journal.open(campaign.store, readonly=True) as journal:
            preflight.warn_changed_past(journal)
    if world is not None:
        compose.check_simulated_rig(campaign, world, library)
    cluster = compose.check_compute(campaign, scheduler, len(library))
    invalid, again = preflight.warn_before_run(campaign, library, dry_run=dry_run)
    preflight.warn_default_safety(campaign)
    preflight.warn_default_planner(campaign)
    _warn_unnamed_reference(campaign)
    _print_summary(_summary(campaign_file, campaign, len(library), (invalid, again), scheduler, past,
                            dry_run=dry_run, cluster=cluster))


def _summary(path: Path, campaign: Campaign, n_rows: int, skipped: tuple[int, int], scheduler: str | None,
             past: Past | None, *, dry_run: bool = False, cluster: str | None = None) -> dict[str, str]:
    """``validate``'s rows; ``skipped``: how many library rows are invalid SMILES, and how many repeat a
    molecule; ``past``: the past measurements read (None for a store that holds them already, or none: a row only
    for a campaign that has them). The approval gate, the alerts and a dry run's world are said too: an operator's
    trial could not tell from the summary that each batch would wait for a person, where alerts would go, or how
    fast the rehearsal would run. ``cluster``: the size of the Dask cluster that answered (``check_compute``)."""
    used, address = compose.compute_placement(campaign, scheduler, n_rows)
    # with its address where it has one: two pumps of one chain read alike (a newcomer's trial)
    instruments = ", ".join(f"{name} ({spec.driver}{f' @ {spec.port}' if spec.port else ''}"
                            + (f", address {spec.options['address']}" if "address" in spec.options else "") + ")"
                            for name, spec in campaign.instruments.items())
    budget = campaign.budget
    stops = [f"{budget.max_experiments} experiments"]
    if budget.max_hours is not None:
        stops.append(f"{budget.max_hours:g} h")
    if budget.stop_after_hits is not None:
        stops.append(f"{budget.stop_after_hits} hits")
    default = "" if "reference_offset_v" in campaign.cell.model_fields_set else ", the default: calibrate yours"
    rows: dict[str, str | None] = {
        "valid": f"{path}: campaign {campaign.name!r}, seed {campaign.seed}",
        "library": f"{display_name(campaign.library.file)} ({_library_rows(campaign, n_rows, *skipped)})",
        "prior": "none" if campaign.prior is None else
                 f"{display_name(campaign.prior.file)} ({', '.join(campaign.prior.targets)}"
                 # the slice, where it has one: a newcomer took the example's prior for all 21,411 rows
                 + (f"; a seeded slice of {campaign.prior.rows} rows, prior.rows" if campaign.prior.rows else "")
                 + ")",
        "objective": describe_objective(campaign.objective.model_dump()),
        "past": None if campaign.past_measurements is None else past.summary() if past is not None else
                f"as journalled in {display_name(campaign.store)} when it was created (the file is read once)",
        "planner": f"{campaign.planner.kind}, batch {campaign.planner.batch_size}; surrogate preset "
                   f"{campaign.surrogate.preset}" + ("; each batch waits for a person's approval (planner.approve)"
                                                     if campaign.planner.approve else ""),
        "conditions": _conditions(campaign),
        "compute": "library predictions in this process" if not used else
                   f"library predictions in shards on the Dask cluster at {address}"
                   + (f" (it answered: {cluster})" if cluster else "") if address else
                   "library predictions in shards on a Dask LocalCluster started by the run",
        # what was checked of them: the registry without --dry-run, each opened on its emulator and health-checked with
        # it (a newcomer read "checked against the driver registry" as nothing opened)
        "instruments": f"{instruments}; " + ("each opened on its emulator and health-checked" if dry_run else
                                             "drivers checked against the driver registry (none opened)"),
        "protocol": ", ".join(campaign.protocol.step_names),
        "reference": f"{_reference_names(campaign)}{campaign.cell.reference_offset_v:g} V vs Li/Li+ "
                     f"(cell.reference_offset_v{default})",
        "ferrocene": _ferrocene(campaign),
        "budget": "stop after " + " or ".join(stops),
        "schedule": f"active {campaign.schedule.active_hours}",
        "alerts": (f"{len(campaign.alerts)} {plural(len(campaign.alerts), 'URL')}, told when the campaign stops or "
                   "waits for a person (not shown: a URL may hold a secret)" if campaign.alerts else "none"),
        "store": _store_said(campaign),
    }
    if dry_run:
        rows["world"] = _world(campaign)
    return {name: said for name, said in rows.items() if said is not None}


#: each simulated world's truth in a few words, as validate's summary says it (docs/simulation.md has the formulas)
TRUTH_SAID = {"born": "each molecule's DFT energy - 1.40 V, moved by a solvation term",
              "column": "a column of potentials, as given",
              "groups": "born's, shifted for functional groups",
              "smooth": "born's, plus a smooth random function of the molecule",
              "drift": "another kind's, with the reference electrode drifting"}


def _world(campaign: Campaign) -> str:
    """A dry run's simulated world in one row: what is true (each kind glossed: "truth born" was a word to look up, a
    newcomer's trial), how fast device time runs, and what it rehearses (faults,
    dissolved O2, an uncompensated resistance, molecules that decompose), each only when set: a chemist's trial
    found ``world.unstable_share`` nowhere in validate's summary."""
    world = campaign.world or World()
    pace = ("zero latency (world.time_scale 0)" if world.time_scale == 0 else
            f"{compact(world.time_scale)} device seconds per wall second (world.time_scale)")
    rehearsed = [said for value, said in (
        (world.fault_rate, f"faults at world.fault_rate {compact(world.fault_rate)}"),
        (world.oxygen_mm, f"{compact(world.oxygen_mm)} mM O2 before a purge (world.oxygen_mm)"),
        (world.ru_ohm, f"{compact(world.ru_ohm)} ohm uncompensated (world.ru_ohm)"),
        (world.unstable_share, f"{compact(world.unstable_share)} of the molecules decomposing once oxidised or "
                               "reduced (world.unstable_share)"),
        (world.n_electrons > 1, f"{world.n_electrons} electrons in each molecule's wave (world.n_electrons)"))
        if value]
    return (f"simulated: truth {world.truth.kind} ({TRUTH_SAID[world.truth.kind]}: docs/simulation.md), noise "
            f"{compact(world.noise_v)} V; {pace}"
            + (f"; rehearsed: {', '.join(rehearsed)}" if rehearsed else ""))


def _conditions(campaign: Campaign) -> str:
    """``scan_rate_v_s 0.02..0.5, searched log-uniformly; n_scans one of 1, 2, 3``: what the planner may choose for
    each experiment, so a range or a list of rates written wrong is seen before the night it runs; ``none planned``
    when the protocol's own values are run."""
    said = []
    for name, space in campaign.conditions.space().items():
        if isinstance(space, dict):
            said.append(f"{name} one of {', '.join(map(_value, space['choices']))}")
        elif space[0] == space[1]:
            said.append(f"{name} {_value(space[0])}, fixed")
        else:
            said.append(f"{name} {_value(space[0])}..{_value(space[1])}, searched log-uniformly")
    return "; ".join(said) or "none planned: the protocol's steps run their own values"


def _value(value: object) -> str:
    """A condition's value as written in YAML (0.1, 2e-6; a word as it is)."""
    return compact(value) if isinstance(value, int | float) else str(value)


def _ferrocene(campaign: Campaign) -> str:
    """Where ferrocene's couple is taken to sit vs Li/Li+ (``cell.ferrocene_vs_li_v``), and whether anything uses it:
    only an ``add_standard`` step and past measurements vs Fc+/Fc do, and a value for another electrolyte moves every
    potential read through it."""
    cell = campaign.cell
    default = "" if "ferrocene_vs_li_v" in cell.model_fields_set else ", the default: a carbonate electrolyte's"
    users = [what for what, uses in (("add_standard's potentials", campaign.protocol.adds_standard),
                                     ("the past measurements (vs: fc)", campaign.past_vs_fc)) if uses]
    used = (f"{' and '.join(users)} go through it" if users else
            "unused, the protocol has no add_standard step and no past measurements are given vs Fc+/Fc")
    return f"Fc+/Fc at {compact(cell.ferrocene_vs_li_v)} V vs Li/Li+ (cell.ferrocene_vs_li_v{default}): {used}"


def _library_rows(campaign: Campaign, n_rows: int, invalid: int, again: int) -> str:
    """``200 molecules``, or ``203 rows: 1 invalid SMILES and 2 repeats of an earlier row's molecule, never
    proposed``, or for a CSV library too long to check row by row ``150000 rows, not checked row by row above
    100,000`` (it said ``25050 molecules`` of garbage and repeats too)."""
    if compose.too_long_to_check(campaign, n_rows):
        return f"{n_rows} rows, not checked row by row above {compose.CHECK_SMILES_ROWS:,}"
    if not invalid and not again:
        return f"{n_rows} molecules"
    skipped = [f"{invalid} invalid SMILES"] if invalid else []
    skipped += [f"{again} {plural(again, 'repeat')} of an earlier row's molecule"] if again else []
    return f"{n_rows} rows: {' and '.join(skipped)}, never proposed"


def _print_summary(rows: dict[str, str]) -> None:
    """``validate``'s summary: on a terminal a grid, a long value folding under its own column; piped, one
    ``label  value`` line per row, since the grid pads every row with spaces to its widest (the instruments
    row, near 200 columns), which a newcomer's ``| grep`` or saved output then carried."""
    if not console.out.is_terminal:
        width = max(map(len, rows)) + 2
        for label, value in rows.items():
            console.out.print(f"{label:<{width}}{console.printable(value)}", markup=False, highlight=False,
                              soft_wrap=True)
        return
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for label, value in rows.items():
        table.add_row(label, Text(console.printable(value)))  # paths and ports as written: text, not markup
    console.out.print(table)


def _store_said(campaign: Campaign) -> str:
    """The summary's store: not created yet, or how far its campaign is and what ``run`` does with it. Why: a store
    already at its budget was shown by its name alone, and its ``run`` then adds nothing (a lab manager's trial)."""
    name = display_name(campaign.store)
    if not campaign.store.exists():
        return f"{name} (not created yet)"
    done, budget = preflight.experiments_done(campaign.store), campaign.budget.max_experiments
    if done >= budget:
        return (f"{name} ({done} experiments done, its budget: run adds none; `labloop resume "
                f"{shell_word(campaign.store)} --max-experiments N` gives it more)")
    return f"{name} ({done} of {budget} experiments done: run goes on from there)"


def _reference_names(campaign: Campaign) -> str:
    """``Ag/Ag+ (potentiostat's reference option) at ``: the reference electrode's name as the instruments' own
    ``reference`` option gives it (the label on every measurement), beside where the cell puts it, so a name and
    an offset that do not belong together are seen before the first measurement; ``the reference electrode
    (unnamed) at `` where no option names it, as the measurements will say (:func:`compose.unnamed_references`)."""
    named = [f"{entry.options['reference']} ({name}'s reference option)" for name, entry in campaign.instruments.items()
             if isinstance(entry.options.get("reference"), str)]
    if compose.unnamed_references(campaign):
        named.append(UNNAMED_REFERENCE)
    return f"{', '.join(named)} at " if named else ""


def _warn_unnamed_reference(campaign: Campaign) -> None:
    """One warning line when no option names the reference electrode of the campaign's potentiostat(s): their
    measurements are then labelled :data:`UNNAMED_REFERENCE`, never a name the lab did not give (the EmStat
    driver's default "Ag/Ag+" labelled an Ag/AgCl lab's data), and naming it labels them."""
    unnamed = compose.unnamed_references(campaign)
    if not unnamed:
        return
    where = ", ".join(campaign.located("instruments", name) for name in unnamed)
    console.err.print(f"warning: {where}: no reference option names the cell's reference electrode, so measurements, "
                      f"voltammograms and the report's CSVs and plots say 'vs {UNNAMED_REFERENCE}': name it to "
                      "label the data (options: {reference: Ag/AgCl}, or whichever electrode the cell has)",
                      markup=False, highlight=False, soft_wrap=True)


@click.command(help="Print the JSON Schema of campaign files (for editor completion and checking).")
def schema() -> None:
    click.echo(json.dumps(Campaign.model_json_schema(), indent=2))
