"""What ``validate`` and ``run`` check beyond :func:`labloop.orchestrator.compose.check_campaign`, where the
answer needs the journal or the surrogate's data (layers compose may not import): the store, the prior's
size, a library changed under a running campaign, and the warnings about what is allowed but most likely a
mistake."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from labloop.core.errors import ConfigError, InputError, InvalidInput, JournalError, Problems, dotted, first_line
from labloop.core.files import cannot_create_in, nearest_existing
from labloop.core.text import plural
from labloop.orchestrator import compose, console
from labloop.orchestrator.config.campaign import Campaign, Safety, load_campaign
from labloop.orchestrator.config.yaml_source import display_name, read_yaml
from labloop.orchestrator.journal.lock import another_runner, being_run
from labloop.orchestrator.journal.store import Journal, State, first_difference, refuse_other_settings
from labloop.orchestrator.learning.models import read_prior
from labloop.orchestrator.potential_table import Past, past_scale_slip, read_past
from labloop.surrogate.config import MIN_ROWS_PER_FOLD
from labloop.surrogate.dataset import csv_lines
from labloop.surrogate.featurize import InvalidSmiles
from labloop.surrogate.library_pipeline import row_lines

if TYPE_CHECKING:
    from labloop.orchestrator.learning.models import ObjectiveModel
    from labloop.planners import ModelView

log = logging.getLogger(__name__)


def check_store(campaign: Campaign, given_as: str | None = None) -> None:
    """What ``run`` would find at the campaign's store, for ``validate``: a folder that cannot hold it, a file
    that is not a journal, one a live run holds, a journal of other settings (``run`` continues only the same
    campaign), or one whose first run read another library or prior file (:func:`unchanged_inputs`: validate passed
    such a campaign, and run and resume refused it). ``given_as`` names where the store came from when not the
    campaign file (``--store``)."""
    store, where = campaign.store, given_as or campaign.located("store")
    folder = check_store_folder(campaign, where)
    if not store.exists():
        check_writable(folder, where, "create the store")
        return
    if not store.is_file():
        raise ConfigError(where, f"{store} is not a file a journal can be kept in")
    if being_run(store):  # run refuses it: validate said nothing of a store a run held (a lab manager's trial)
        raise ConfigError(where, f"{store}: {another_runner(store)} is running this campaign now; run and resume "
                                 "are refused until it ends")
    with Journal.open(store, readonly=True) as journal:  # JournalError: not a labloop journal
        refuse_other_settings(store, campaign, journal.campaign_info())
        unchanged_inputs(campaign, journal)


def experiments_done(store: Path) -> int:
    """How many experiments the journal at ``store`` has done, 0 where there is none yet: what ``run`` goes on from,
    and what ``validate``'s summary says of the store."""
    if not store.exists():
        return 0
    with Journal.open(store, readonly=True) as journal:
        return len(journal.experiments(states=(State.DONE,)))


def check_writable(folder: Path, where: str, what: str) -> None:
    """:class:`ConfigError` at ``where`` saying ``folder``: cannot ``what`` there, when nothing can be created in it
    (:func:`labloop.core.files.cannot_create_in`, as run will make it)."""
    if (why := cannot_create_in(folder)) is not None:
        raise ConfigError(where, f"{folder}: cannot {what} there ({why})")


def check_store_folder(campaign: Campaign, where: str) -> Path:
    """The nearest existing folder of the campaign's store (where its prior models are cached too);
    :class:`ConfigError` at ``where`` when that is a file."""
    store = campaign.store
    folder = nearest_existing(store.parent)
    if not folder.is_dir():
        raise ConfigError(where, f"{folder} is a file, so {store} cannot be made")
    return folder


def with_resumed_settings(campaign: Campaign) -> Campaign:
    """``campaign`` with what ``labloop resume`` set in its journal when that is the only difference: a larger
    ``budget.max_experiments`` (``--max-experiments``) and instruments' ports (``--port``). Running the unchanged
    file again continues the campaign as it is now (it was refused as a campaign of other settings, and a port
    moved by ``resume --port`` made the file unusable with its own store). Each is said on the console; unchanged
    otherwise."""
    store = campaign.store
    if not store.is_file():
        return campaign
    try:
        with Journal.open(store, readonly=True) as journal:
            stored = journal.campaign_info().config
            resumed = {kind for kind in ("budget", "port") if journal.count_events(kind)}
    except JournalError:
        return campaign  # not a journal: check_store says so
    if not isinstance(stored, dict):
        return campaign
    said, updates = [], {}
    budget = stored.get("budget")
    extended = budget.get("max_experiments") if isinstance(budget, dict) else None
    if isinstance(extended, int) and extended > campaign.budget.max_experiments:
        updates["budget"] = campaign.budget.model_copy(update={"max_experiments": extended})
        how = "set by labloop resume --max-experiments" if "budget" in resumed else "the journal's"
        said.append(f"continuing to budget.max_experiments {extended}, {how} (the file says "
                    f"{campaign.budget.max_experiments})")
    instruments = stored.get("instruments")
    given = {name: entry.port for name, entry in campaign.instruments.items() if entry.port}
    moved = {name: spec["port"] for name, spec in (instruments if isinstance(instruments, dict) else {}).items()
             if "port" in resumed and name in given and isinstance(spec, dict) and spec.get("port")
             and spec["port"] != given[name]}
    if moved:
        updates["instruments"] = {name: entry.model_copy(update={"port": moved.get(name, entry.port)})
                                  for name, entry in campaign.instruments.items()}
        said += [f"continuing with instruments.{name}.port {port}, set by labloop resume --port (the file says "
                 f"{given[name]})" for name, port in moved.items()]
    candidate = campaign.model_copy(update=updates)
    if not updates or candidate.model_dump(mode="json", by_alias=True) != stored:
        return campaign
    for line in said:
        console.err.print(f"{display_name(store)}: {line}", markup=False, highlight=False, soft_wrap=True)
    return candidate


#: the least room a run starts with on its journal's disk (bytes): each experiment journals its voltammograms (a
#: lab-grade one's four rates, blank and standard: about 1 MB; a screening scan's about 0.1 MB), and a disk that fills
#: mid-experiment stops the run with its sample spent (an operator's trial resumed on a disk with 1.5 MB free: a
#: sample loaded and dispensed, then the same stop). A floor against a disk still full, not a forecast: a retrain's
#: model checks its own room (surrogate/persistence.py), and a long campaign needs more
MIN_JOURNAL_ROOM_BYTES = 5_000_000


def check_room(campaign: Campaign, given_as: str | None = None) -> None:
    """:class:`ConfigError` at ``store`` (or ``given_as``, the option that gave it: ``--store``) when the journal's
    disk has less free room than :data:`MIN_JOURNAL_ROOM_BYTES`: checked before the rig opens, by ``validate``,
    ``run`` and ``resume``."""
    folder = nearest_existing(campaign.store.parent)
    free = shutil.disk_usage(folder).free
    if free < MIN_JOURNAL_ROOM_BYTES:
        raise ConfigError(given_as or campaign.located("store"),
                          f"the disk of {campaign.store} has {free / 1e6:.1f} MB free, under the "
                          f"{MIN_JOURNAL_ROOM_BYTES / 1e6:.0f} MB a run starts with: each experiment journals its "
                          "voltammograms, and a disk that fills mid-experiment stops the run with its sample spent; "
                          "free space first")


def check_prior(campaign: Campaign) -> None:
    """:func:`prior_notes`, said as warnings (``validate``, ``run``, ``candidates``)."""
    for note in prior_notes(campaign):
        console.err.print(f"warning: {console.printable(note)}", markup=False, highlight=False, soft_wrap=True)


def prior_notes(campaign: Campaign) -> list[str]:
    """What the prior's training leaves out or merges (:func:`labloop.orchestrator.learning.models.read_prior`): its
    rows that are no molecule, its repeated molecules, and those whose rows disagree, each at its file's lines, as
    ``surrogate train`` says them of a table: a campaign trained its prior on a lab's table without a word of either
    (a lab's trial). :class:`ConfigError` when it holds too few molecules to train its folds (five per fold), or
    ``run`` would create the journal and then fail to train the first model. [] without a prior."""
    prior = campaign.prior
    if prior is None:
        return []
    table, invalid, repeats = read_prior(campaign)
    folds = campaign.surrogate.folds
    if len(table.smiles) < MIN_ROWS_PER_FOLD * folds:
        rows = "" if prior.rows is None else f" (prior.rows {prior.rows})"
        raise ConfigError(campaign.located("prior"), f"{len(table.smiles)} readable molecules{rows} are too few to "
                                                     f"train surrogate.folds {folds}: at least "
                                                     f"{MIN_ROWS_PER_FOLD * folds}")
    line_of = csv_lines(prior.file)
    skipped = console.invalid_said(invalid, display_name(prior.file), "the prior's {n} invalid SMILES in {path} "
                                   f"{plural(len(invalid), 'is', 'are')} left out of its training", line_of=line_of)
    merged = console.repeats_said(repeats, display_name(prior.file), prior.targets, line_of=line_of)
    return [f"{campaign.located('prior', 'file')}: {said}" for said in ([skipped] if skipped else []) + merged]


def past_measurements(campaign: Campaign, library: list[str]) -> Past | None:
    """The campaign's past measurements as the journal will keep them (:func:`read_past`), each note on rows left
    out said as a warning; None without them, or for a store that exists (its journal holds what was read when it
    was created, and ``run`` of it reads the file no more). A table that cannot be used is :class:`ConfigError`."""
    if campaign.store.exists():
        return None
    past = read_past(campaign, library, campaign.budget.max_experiments)
    for note in past.notes if past is not None else ():
        console.err.print(f"warning: {console.printable(note)}", markup=False, highlight=False, soft_wrap=True)
    return past


def cached_prior(campaign: Campaign) -> ObjectiveModel | None:
    """The campaign's prior model as planners see it when its cache beside the store holds it, else None (no
    prior, or not trained yet): what ``validate`` compares the past measurements with, since it trains nothing."""
    from labloop.core.errors import ModelLoadError
    from labloop.orchestrator.learning import models
    from labloop.surrogate.persistence import load_ensemble

    if campaign.prior is None:
        return None
    directory = models.prior_dir(campaign.store, models.prior_key(campaign))
    if not directory.is_dir():  # no TensorFlow to start for a model that is not there
        return None
    try:
        ensemble = load_ensemble(directory)
    except ModelLoadError:
        return None
    return models.ObjectiveModel(ensemble, 1, campaign.objective.quantity)


def check_prior_cache(campaign: Campaign, what: str) -> None:
    """:class:`ConfigError` at the campaign's ``store`` when its prior model is not cached beside the store and the
    folder cannot take it: said before minutes of training rather than after (a backtest in a folder the user may not
    write trained for 21 s, then failed); ``what``: the command's way out (a copy of the campaign elsewhere)."""
    from labloop.orchestrator.learning import models

    check_store_folder(campaign, campaign.located("store"))
    cache = models.prior_dir(campaign.store, models.prior_key(campaign))
    if not cache.is_dir():
        check_writable(nearest_existing(cache), campaign.located("store"), f"cache the prior model beside the store "
                                                                           f"({what})")


def prior_kept(campaign: Campaign) -> str:
    """What a command stopped part way leaves of the campaign's prior model, for its last line: ``; the prior model
    cached in DIR is kept``, ``; no prior model was cached (its training, if it began, is lost)`` (it is cached only
    once trained in full: surrogate/persistence.py), or '' without a prior."""
    from labloop.orchestrator.learning import models

    if campaign.prior is None:
        return ""
    directory = models.prior_dir(campaign.store, models.prior_key(campaign))
    return (f"; the prior model cached in {directory} is kept" if directory.exists() else
            "; no prior model was cached (its training, if it began, is lost)")


def prior_view(campaign: Campaign) -> ObjectiveModel:
    """The campaign's prior model as planners see it (version 1, as a run journals it): from its cache beside the
    store (:func:`cached_prior`), else trained there with a progress bar; check the folder first
    (:func:`check_prior_cache`)."""
    from labloop.orchestrator.learning import models

    cached = cached_prior(campaign)
    if cached is not None:
        return cached
    directory = models.prior_dir(campaign.store, models.prior_key(campaign))
    with prior_epochs(campaign) as progress:
        ensemble = models.train(campaign, models.prior_table(campaign), directory, progress)
    return models.ObjectiveModel(ensemble, 1, campaign.objective.quantity)


@contextmanager
def prior_epochs(campaign: Campaign) -> Iterator[Callable[[int, int], None]]:
    """A progress bar of the prior model's training, its epochs counted as such (``training the prior model: epochs
    12/30`` beside ``experiments 0/30`` read as one budget: a newcomer's), for a block; yields the epoch hook. With the
    model in its cache it says ``loading the prior model`` until an epoch is trained (an unreadable cache trains
    again): "training ... 0/30" stood for the seconds a cached model took to load (a newcomer's)."""
    from labloop.orchestrator.learning import models

    epochs = models.campaign_preset(campaign).model.epochs
    training = "training the prior model: epochs"
    cached = models.prior_dir(campaign.store, models.prior_key(campaign)).is_dir()
    with console.progress() as bar:
        task = bar.add_task("loading the prior model" if cached else training,
                            total=campaign.surrogate.folds * epochs,
                            counted=f"prior model epochs ({campaign.surrogate.folds} folds x {epochs})")
        yield lambda member, epoch: bar.update(task, completed=member * epochs + epoch + 1, description=training)


def warn_past_scale(campaign: Campaign, source: dict[str, object], measurements: list[tuple[str, float]],
                    model: ModelView | None, then: str = "") -> None:
    """One warning line when the past measurements sit, by their median, volts from what the prior ``model``
    predicts for their molecules (:func:`labloop.orchestrator.potential_table.scale_slip`: most likely another
    reference scale than the one declared), ``then`` after it; nothing without a model or measurements. Why: a
    table vs Fc+/Fc declared vs Li/Li+ passed validate and taught a run values 3.2 V off, and only the journal's
    calibration events said so (a chemist's trial)."""
    if model is None or not measurements:
        return
    slip = past_scale_slip(source, measurements, model, campaign.cell.ferrocene_vs_li_v, campaign.objective.quantity)
    if slip is not None:
        console.err.print(f"warning: {console.printable(slip + then)}", markup=False, highlight=False,
                          soft_wrap=True)


def overridden(campaign: Campaign, store: Path | None, seed: int | None) -> Campaign:
    """``campaign`` with the store and seed ``run`` and ``validate`` were given (``--store``, ``--seed``), if any."""
    updates = {key: value for key, value in (("store", store and store.absolute()), ("seed", seed))
               if value is not None}
    return campaign.model_copy(update=updates)


def warn_before_run(campaign: Campaign, library: list[str], *, dry_run: bool) -> tuple[int, int]:
    """What is allowed but most likely a mistake, said before a run or by ``validate``: the library rows no
    planner will ever propose, an objective no measurement can meet, a ``cell.ferrocene_vs_li_v`` no step reads, a
    batch larger than the budget, an alert URL's password written out, a dry run's simulated O2 with no purge step,
    a protocol value most likely written in the wrong unit (an analyte in M as mM), and a protocol that leaves
    liquid in the cell under its D-computing cv (said once here; the run says it again of each experiment it
    dilutes). Returns how many rows are invalid, and how many hold a molecule an earlier row holds."""
    warn_unchecked_rows(campaign, library)
    with console.progress() as bar:  # ~0.4 s per 1,000 rows on one core: seconds for a big library
        task = bar.add_task("checking the library's rows", total=len(library))
        rows = compose.library_rows(campaign, library, progress=lambda n: bar.advance(task, n))
    invalid = rows.unreadable
    line_of = row_lines(campaign.library.file, campaign.library.smiles_column)
    console.report_invalid(invalid, display_name(campaign.library.file),
                           "{n} invalid SMILES in {path} will never be proposed", line_of=line_of)
    console.report_invalid(rows.beyond_prior, display_name(campaign.library.file),
                           console.beyond_prior_said(len(rows.beyond_prior)), line_of=line_of)
    again = [InvalidSmiles(row, library[row], f"line {line_of(first)}'s molecule") for row, first in rows.repeated]
    console.report_invalid(again, display_name(campaign.library.file),
                           f"{{n}} {plural(len(again), 'row')} of {{path}} {plural(len(again), 'holds', 'hold')} a "
                           "molecule an earlier row holds (written the same or another way), and each molecule is "
                           "proposed once", line_of=line_of)
    isomers = [InvalidSmiles(row, library[row], f"a stereoisomer of line {line_of(first)}'s molecule")
               for row, first in rows.stereo]
    console.report_invalid(isomers, display_name(campaign.library.file),
                           f"{{n}} {plural(len(isomers), 'row')} of {{path}} {plural(len(isomers), 'holds', 'hold')} a "
                           "stereoisomer of an earlier row's molecule, which the surrogate's fingerprint cannot tell "
                           "apart (one prediction for both; each may be proposed, and enantiomers have one redox "
                           "potential)", line_of=line_of)
    for why in (compose.objective_out_of_reach(campaign), campaign.unused_ferrocene(), campaign.unusual_ferrocene(),
                campaign.lithium_reference_offset(),
                campaign.batch_beyond_budget(),
                None if compose.too_long_to_check(campaign, len(library)) else
                _beyond_library(campaign, len(library) - len(invalid) - len(again)),
                campaign.alert_secrets_written_out(),
                campaign.unpurged_oxygen() if dry_run else None):
        if why is not None:
            console.err.print(f"warning: {why}", markup=False, highlight=False, soft_wrap=True)
    for line in campaign.protocol_warnings():
        console.err.print(f"warning: {console.printable(line)}", markup=False, highlight=False, soft_wrap=True)
    return len(invalid), len(again)


def _beyond_library(campaign: Campaign, molecules: int) -> str | None:
    """``file:line: budget.max_experiments: ...`` when the budget (or a batch) asks for more experiments than the
    library has molecules to propose (each is proposed once), else None. Why: a budget of 100 over 30 molecules
    validated in silence and the run ended "every library molecule was tried ... 21/100 experiments done" (a chemist's
    trial)."""
    library = display_name(campaign.library.file)
    if campaign.budget.max_experiments > molecules:
        return (f"{campaign.located('budget', 'max_experiments')}: {campaign.budget.max_experiments}, more than the "
                f"{molecules} {plural(molecules, 'molecule')} {library} can propose (each once): the campaign ends "
                "when every one was tried, failed ones included, short of the budget")
    if campaign.planner.batch_size > molecules:
        return (f"{campaign.located('planner', 'batch_size')}: {campaign.planner.batch_size}, more than the "
                f"{molecules} {plural(molecules, 'molecule')} {library} can propose: its one batch holds them all")
    return None


def warn_unchecked_rows(campaign: Campaign, library: list[str]) -> None:
    """One line when a CSV library is too long for its rows to be checked one by one
    (:func:`compose.too_long_to_check`): a 25,050-row library with garbage and repeats passed in silence, and
    validate's summary called every row a molecule."""
    if compose.too_long_to_check(campaign, len(library)):
        console.err.print(f"warning: {display_name(campaign.library.file)}: {len(library)} rows, more than "
                          f"{compose.CHECK_SMILES_ROWS:,}, so its rows are not checked one by one (invalid SMILES, "
                          "repeated molecules, ions, radicals and salts): the run skips the rows it cannot read as it "
                          "predicts them, and `labloop surrogate predict` lists them", markup=False, highlight=False,
                          soft_wrap=True)


def warn_default_safety(campaign: Campaign) -> None:
    """A campaign without a safety section runs under labloop's default limits, most likely not its rig's: said
    by ``validate``, and by ``run`` once nothing is left to refuse (a refusal stays one line)."""
    if "safety" not in campaign.model_fields_set:
        limits = campaign.safety
        low, high = limits.potential_limits_v
        console.err.print(f"warning: {campaign.located('safety')}: no such section, so labloop's defaults are "
                          f"the rig's limits ({limits.max_dispense_ml:g} mL per dispense, "
                          f"{limits.syringe_ml:g} mL syringes, a {limits.cell_volume_ml:g} mL cell, {low:g}..{high:g} "
                          "V vs the reference): write yours (docs/campaign-reference.md, \"safety\")",
                          markup=False, highlight=False, soft_wrap=True)


def warn_default_planner(campaign: Campaign) -> None:
    """A campaign with a prior and no planner section proposes at random, learning nothing from its measurements
    (``planner.kind``'s default, which needs no prior): said by ``validate`` and ``run``, as the default safety
    limits are. Why: a lab head's trial found a campaign file that left the section out would run random on the
    instruments, its prior unused."""
    if "planner" not in campaign.model_fields_set and campaign.prior is not None:
        console.err.print(f"warning: {campaign.located('planner')}: no such section, so the planner is random, which "
                          "proposes at random and learns nothing from the measurements: give planner: {kind: bayes} "
                          "to choose by the prior and the measurements (docs/planners.md)", markup=False,
                          highlight=False, soft_wrap=True)


def warn_changed_protocol(campaign: Campaign) -> None:
    """One warning line when the protocol file a journal's campaign was read from now holds other steps: ``resume``
    runs the journal's protocol as it began, so a cv window widened in the file since changes nothing (a chemist
    resumed after such an edit and got 9 more failures in silence). Said only when the file still reads as YAML;
    an inline protocol's campaign file is not known to the journal. ``run`` reads the file afresh, so it never
    differs there."""
    file = campaign.protocol.file
    if file is None or not file.is_file():
        return
    try:
        now = read_yaml(file).data
    except Problems:
        return
    stored, now = (json.loads(json.dumps(steps, default=str)) for steps in (list(campaign.protocol.steps), now))
    if stored != now:
        console.err.print(f"warning: {display_name(file)} changed since this campaign's journal began "
                          f"({console.printable(first_difference(stored, now, 'protocol'))}): resume runs the "
                          "journal's protocol; to run the file's, run the campaign with a new store (`labloop run "
                          "FILE --store NEW.db`)", markup=False, highlight=False, soft_wrap=True)


def refuse_changed_safety(campaign: Campaign, file: Path | None) -> None:
    """An :class:`InputError` when the campaign file a resume's journal was read from (``file``) now holds other
    ``safety`` limits than the journal's campaign, which the resume would run: the operator who tightened them (a
    smaller cell, a lower potential) would be pumping and scanning by the old ones. Judged from the file's ``safety``
    section alone, so a file that no longer validates as a whole (a cell_volume_ml under what the protocol pours) is
    judged too: such edits went unsaid, the run pumping 5 mL into a cell the file said holds 4 (an operator's trial).
    Refused, not warned: a safety limit the file states and the rig does not keep is what must never be silent."""
    if file is None or not file.is_file():
        return
    try:
        section = read_yaml(file).data.get("safety") or {}
    except (Problems, OSError, AttributeError):  # unreadable, or no mapping: warn_changed_campaign says it
        return
    running = campaign.safety.model_dump(mode="json")
    try:
        given = Safety.model_validate(section).model_dump(mode="json")
    except ValidationError as exc:  # its own first problem: compared raw, a field it does not name was said
        first = exc.errors(include_url=False)[0]
        changed = f"and no longer validates ({dotted(('safety', *first['loc']))}: {first['msg']})"
    else:
        if given == running:
            return
        changed = f"({first_difference(running, given, 'safety')})"
    raise InputError(f"{display_name(file)}: safety changed since this campaign's journal began "
                     f"{console.printable(changed)}: a resume runs the journal's campaign, and so its limits, not the "
                     "file's; to go on as it was, put the file's safety section back; to run under the new limits, "
                     "run the campaign with a new store (`labloop run FILE --store NEW.db`)")


def warn_changed_campaign(campaign: Campaign, file: Path | None, journal: Journal) -> None:
    """One warning line when the campaign file a journal's run was read from (``file``, journalled with each run) now
    holds other settings than the campaign ``resume`` runs: resume runs the journal's campaign, so a window, a batch
    size or a syringe's ``diameter_mm`` edited in the file since changes nothing (an unattended-lab trial resumed
    after such edits, in silence, the old syringe's diameter pumping). What ``resume`` itself moved (the budget by
    ``--max-experiments``, a port by ``--port``) and ``run``'s ``--store``/``--seed`` are not differences; a file gone
    says nothing, one no longer valid says its first problem (it said nothing, an operator's trial; its safety limits
    :func:`refuse_changed_safety` judged already)."""
    if file is None or not file.is_file():
        return
    try:
        now = overridden(load_campaign(file), campaign.store, campaign.seed)
    except (InputError, OSError) as exc:
        console.err.print(f"warning: {display_name(file)} changed since this campaign's journal began and is no "
                          f"longer a valid campaign ({console.printable(first_line(exc))}): resume runs the journal's "
                          "campaign as it began", markup=False, highlight=False, soft_wrap=True)
        return
    running = campaign.model_dump(mode="json", by_alias=True)
    given = now.model_dump(mode="json", by_alias=True)
    if given["protocol"].get("file") is not None and given["protocol"].get("file") == running["protocol"].get("file"):
        given["protocol"] = running["protocol"]  # the protocol file's own changes: warn_changed_protocol says them
    if journal.count_events("budget"):
        given["budget"]["max_experiments"] = running["budget"]["max_experiments"]
    if journal.count_events("port"):
        for name, entry in given["instruments"].items():
            if name in running["instruments"] and entry.get("port") and running["instruments"][name].get("port"):
                entry["port"] = running["instruments"][name]["port"]
    if given != running:  # the first setting, and how many more: a newcomer's second edit went unsaid
        more = _settings_differing(running, given) - 1
        also = f"; {more} more {plural(more, 'setting')} too" if more > 0 else ""
        console.err.print(f"warning: {display_name(file)} changed since this campaign's journal began "
                          f"({console.printable(first_difference(running, given))}{also}): resume runs the journal's "
                          "campaign; to run the file's, run it with a new store (`labloop run FILE --store NEW.db`)",
                          markup=False, highlight=False, soft_wrap=True)


def _settings_differing(one: object, other: object) -> int:
    """How many settings (the leaves of two configs; a list counts as one) differ."""
    if isinstance(one, dict) and isinstance(other, dict):
        return sum(_settings_differing(one.get(key), other.get(key)) for key in {*one, *other})
    return int(one != other)


def warn_changed_past(journal: Journal) -> None:
    """One warning line when the past measurements' file now holds other bytes than when the journal was created
    (its SHA-256, journalled with them): the file is read once, and the journal keeps the values read then, so an
    edit since changes nothing (a chemist's trial: a corrected table, resumed, was ignored in silence). A file
    gone says nothing: a resume needs none."""
    source = journal.past_source()
    file = Path(source["file"]) if isinstance(source.get("file"), str) else None
    if file is None or not file.is_file() or "sha256" not in source:
        return
    if hashlib.sha256(file.read_bytes()).hexdigest() != source["sha256"]:
        console.err.print(f"warning: {display_name(file)} (past_measurements.file) changed since this campaign's "
                          "journal began: the journal keeps the past measurements read when it was created; to use "
                          "the file's, run the campaign with a new store (`labloop run FILE --store NEW.db`)",
                          markup=False, highlight=False, soft_wrap=True)


def unchanged_inputs(campaign: Campaign, journal: Journal) -> dict[str, str]:
    """The SHA-256 of the library file and of the prior's (when the campaign has one), by the keys the journal keeps
    them under with every run (``library_sha256``, ``prior_sha256``): a campaign continued (``run`` again,
    ``resume``) with another library or prior is refused before its journal changes, since its experiments and
    planner state speak of the library as it was, and its models were trained on the prior as it was (a PI's trial:
    a prior edited between runs was trained on by the next retrain, its model beside models of the old file, and
    nothing recorded it). A journal whose first runs kept no digest of a file is judged from the first run that did."""
    files = {"library_sha256": ("library.file", campaign.library.file, "its journal speaks of the library as it was",
                                "the new library")}
    if campaign.prior is not None:
        files["prior_sha256"] = ("prior.file", campaign.prior.file, "its models were trained on the prior as it was",
                                 "the new prior")
    digests = {}
    runs = journal.events(kinds=("run",))
    for key, (field, file, why, new) in files.items():
        digests[key] = hashlib.sha256(file.read_bytes()).hexdigest()
        first = next((n for n, e in enumerate(runs) if isinstance(e.data, dict) and key in e.data), None)
        if first is not None and runs[first].data[key] != digests[key]:
            # a journal of a labloop that kept no digest of the file: its first run that did, not its first run
            since = (f"this campaign's first run ({runs[first].time})" if first == 0 else
                     f"its first run that recorded the file's SHA-256 ({runs[first].time}; the {first} "
                     f"{plural(first, 'run')} before it recorded none)")
            raise InvalidInput(f"{field}: {display_name(file)} changed since {since}, and {why}: put the file back, "
                               f"or run {new} with another store")
    return digests
