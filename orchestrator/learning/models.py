"""The campaign's surrogate models: the prior model trained once, retrained models on the measurements, and
the view of a model that planners use (the objective quantity in V vs Li/Li+).

Why here and not in ``surrogate/``: this is where a campaign meets the surrogate — which data a model is
trained on (the prior slice plus the measured potentials), where its weights live (``<store>.models/``
beside the journal, so a store and its models move together; the newest ``surrogate.keep_models`` rounds only:
:func:`prune`), which version the journal gives it, and
how a model's IE/EA become the potential the objective is about (``E_ox = IE - 1.40``,
``E_red = EA - 1.40``, V vs Li/Li+, the rule of the thesis (data/SOURCES.md); the measurements teach the
rest: the calibration of :mod:`labloop.planners.feedback` after every measurement, and retraining with the
measured potentials as an additional target).

The prior model is cached in the store's folder (``prior-models/<key>``), keyed by the prior file's hash
and the training recipe, so a second campaign on the same prior (or a re-run after deleting the journal)
does not train it again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from labloop.core.errors import ConfigError
from labloop.core.files import moved_along
from labloop.core.text import plural
from labloop.orchestrator.config.campaign import TARGET_OF, Campaign
from labloop.orchestrator.config.yaml_source import display_name
from labloop.orchestrator.journal.store import PRUNED, Journal, ModelVersion
from labloop.surrogate.dataset import MoleculeTable, read_table, seeded_rows
from labloop.surrogate.featurize import InvalidSmiles
from labloop.surrogate.fingerprint_cache import default_cache_dir
from labloop.surrogate.presets import Preset, get_preset
from labloop.surrogate.repeats import Repeats, molecules_once
from labloop.surrogate.screening import REFERENCE_ABSOLUTE_V
from labloop.surrogate.training_process import TrainingJob, train_apart

if TYPE_CHECKING:  # the ensemble's module loads where a model is read (and TensorFlow only in a training child)
    from labloop.surrogate.ensemble import Ensemble

log = logging.getLogger(__name__)

#: the target column a retrained model learns the measured potentials (V vs Li/Li+) in
MEASURED_TARGET = "measured_potential_v"

#: which network output an :class:`ObjectiveModel` reads: the prior target, or the measured potentials
Head = Literal["prior", "measured"]

#: ``on_epoch(member, epoch)``: training progress; raising in it cancels the training
Progress = Callable[[int, int], None]


def models_dir(store: Path) -> Path:
    """Where a store's retrained models live: ``runs/x.db`` -> ``runs/x.models/``."""
    return store.with_name(f"{store.stem}.models")


def predictions_dir(store: Path) -> Path:
    """Where a store's library predictions live (:mod:`.predictions`): ``runs/x.db`` -> ``runs/x.predictions/``."""
    return store.with_name(f"{store.stem}.predictions")


def prior_dir(store: Path, key: str) -> Path:
    """Where prior models are cached, shared by the stores of one folder: ``runs/prior-models/<key>/``."""
    return store.parent / "prior-models" / key


def campaign_preset(campaign: Campaign) -> Preset:
    """The campaign's surrogate recipe, with its epochs when the campaign sets them."""
    return get_preset(campaign.surrogate.preset, epochs=campaign.surrogate.epochs)


def prior_table(campaign: Campaign) -> MoleculeTable:
    """The prior data the campaign trains on (:func:`read_prior`)."""
    return read_prior(campaign)[0]


def read_prior(campaign: Campaign) -> tuple[MoleculeTable, list[InvalidSmiles], Repeats]:
    """The prior data the campaign trains on: the whole file, or its seeded slice of ``prior.rows`` rows, each
    molecule once (the mean of its rows' values, as ``surrogate train`` trains), the rows that are no molecule left
    out; and those rows and what was merged, by the file's rows (0-based), for the warnings ``validate`` and ``run``
    say of them (orchestrator/cli/preflight.py ``prior_notes``). Why merged: a lab's table with a molecule twice,
    1 eV apart, trained on both copies as two molecules without a word, where ``surrogate train`` warned of it and
    trained on their mean (a lab's trial). The bundled table has neither, so its prior is as it was.

    Read once per file version and slice (:data:`_READ_PRIORS`): every row is parsed, seconds for a 21,000-row
    table, and ``validate``, ``run`` and each retrain ask for it (a reviewer measured 4 s each)."""
    prior = campaign.prior
    assert prior is not None, "only campaigns with a prior have a surrogate"
    stat = prior.file.stat()
    key = (str(prior.file.resolve()), stat.st_size, stat.st_mtime_ns, prior.rows, campaign.seed, prior.targets,
           prior.smiles_column)
    if (read := _READ_PRIORS.get(key)) is None:
        read = _READ_PRIORS[key] = _read_prior(campaign)
        while len(_READ_PRIORS) > 2:  # a process reads one campaign's prior (two: a test's, a benchmark's)
            del _READ_PRIORS[next(iter(_READ_PRIORS))]
    return read


#: the priors read in this process, by file version and slice: (path, size, mtime, rows, seed, targets, column)
_READ_PRIORS: dict[tuple[Any, ...], tuple[MoleculeTable, list[InvalidSmiles], Repeats]] = {}


def _read_prior(campaign: Campaign) -> tuple[MoleculeTable, list[InvalidSmiles], Repeats]:
    """:func:`read_prior`'s reading."""
    prior = campaign.prior
    assert prior is not None
    table = read_table(prior.file, prior.targets, smiles_column=prior.smiles_column)
    sliced = prior.rows is not None and prior.rows < len(table.smiles)
    rows = seeded_rows(len(table.smiles), prior.rows, campaign.seed)
    once, invalid, repeats = molecules_once(table, rows)
    # the file has a value in every target column (read_table); a sparse column may still have none in the slice, or
    # only in rows that are no molecule, and a target with no value trains a model that predicts NaN
    empty = [t for j, t in enumerate(once.targets) if np.isnan(once.Y[:, j]).all()]
    if empty and sliced:
        raise ConfigError(campaign.located("prior", "rows"),
                          f"the seeded slice of {prior.rows} {plural(prior.rows, 'row')} of {display_name(prior.file)} "
                          f"has no value in column {empty[0]!r}: give more rows, or none for the whole file")
    if empty:
        raise ConfigError(campaign.located("prior", "file"),
                          f"{display_name(prior.file)} has no value in column {empty[0]!r} in a row whose SMILES is a "
                          "molecule: nothing to train it on")
    return once, invalid, repeats


def with_measurements(table: MoleculeTable, measured: Sequence[tuple[str, float]]) -> MoleculeTable:
    """The prior plus one row per measured potential, in an additional target column
    (:data:`MEASURED_TARGET`, NaN for the prior's rows; the prior's targets are NaN for the new rows): the
    network learns the measurements beside the DFT data without mistaking one for the other."""
    if not measured:
        return table
    targets = [*table.targets, MEASURED_TARGET]
    prior_rows = np.hstack([table.Y, np.full((len(table.smiles), 1), np.nan)])
    extra = np.full((len(measured), len(targets)), np.nan)
    extra[:, -1] = [p for _, p in measured]
    return MoleculeTable(table.path, table.smiles + [s for s, _ in measured], targets, np.vstack([prior_rows, extra]))


class TrainingCancelled(Exception):
    """Raised from a progress hook to stop a training (the run is stopping)."""


def training_job(campaign: Campaign, table: MoleculeTable, directory: Path) -> TrainingJob:
    """The campaign's recipe on ``table``, to be saved to ``directory``; with measured potentials in it, their
    out-of-sample predictions are kept with the model (:meth:`ObjectiveModel.out_of_sample`)."""
    return TrainingJob(table, campaign_preset(campaign), campaign.surrogate.folds, campaign.seed,
                       default_cache_dir() / "fingerprints", directory,
                       MEASURED_TARGET if MEASURED_TARGET in table.targets else None,
                       log_level=logging.getLogger("labloop").getEffectiveLevel())


def train(campaign: Campaign, table: MoleculeTable, directory: Path, progress: Progress | None = None) -> Ensemble:
    """Train the campaign's recipe on ``table`` and save it to ``directory`` (the prior model, trained once), in a
    child process as a retraining is (:func:`retrain`): the run then loads the saved model without TensorFlow, and
    keeps none of the training's memory for the rest of the campaign (a run that trained its prior itself held
    ~1.2 GB, TensorFlow's among it, for as long as it ran). A Ctrl-C here ends the child."""
    return train_apart(training_job(campaign, table, directory), progress or (lambda _member, _epoch: None),
                       lambda: None)


def prior_key(campaign: Campaign) -> str:
    """Names the prior model by what determines it: the prior file's bytes and the training recipe."""
    prior = campaign.prior
    assert prior is not None
    data = prior.file.read_bytes()
    digest = hashlib.sha256(data)
    # "molecules_once": each molecule trained once (read_prior); a prior cached before, trained on a table's copies
    # as molecules of their own, is trained again (a reviewer's finding). Its stereoisomers with it since: named only
    # for a file that writes a stereo mark anywhere, the only kind that rule can train otherwise (the bundled table
    # writes none, and its cached prior stays); from the bytes, since reading the table here would canonicalise
    # every row before the training it keys (seconds, outside a command's stop handling)
    stereo = any(mark in data for mark in (b"@", b"/", b"\\"))
    recipe = {"preset": campaign.surrogate.preset, "epochs": campaign.surrogate.epochs, "rows": prior.rows,
              "folds": campaign.surrogate.folds, "seed": campaign.seed, "targets": prior.targets,
              "smiles_column": prior.smiles_column, "molecules_once": "stereoisomers too" if stereo else True}
    digest.update(json.dumps(recipe, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def metrics_of(ensemble: Ensemble, **extra: Any) -> dict[str, Any]:
    """What the journal keeps of a model: its training metrics plus the campaign's own numbers."""
    return {**ensemble.info.get("metrics", {}), **extra}


class ObjectiveModel:
    """A model version as planners see it (:class:`labloop.planners.ModelView`): mean and sigma of the
    objective quantity, V vs Li/Li+, with predictions cached per molecule.

    ``head``: which of the network's outputs gives the potential — ``"prior"``, the prior target (IE or EA)
    minus the gas-phase rule's 1.40 V, or ``"measured"``, a retrained network's own output for the
    measured potentials (:data:`MEASURED_TARGET`, already V vs Li/Li+; :func:`heads` says which a version
    has). ``column`` and ``offset_v`` say the same for predictions stored per target in shards."""

    def __init__(self, ensemble: Ensemble, version: int, quantity: str, head: Head = "prior") -> None:
        self.ensemble = ensemble
        self.version = version
        self.quantity = quantity
        self.head = head
        self.column = TARGET_OF[quantity] if head == "prior" else MEASURED_TARGET
        self.offset_v = REFERENCE_ABSOLUTE_V["li"] if head == "prior" else 0.0
        self._target = ensemble.targets.index(self.column)
        self._cache: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()
        self._out_of_sample = _out_of_sample(ensemble, self._target, self.offset_v)

    def predict(self, smiles: Sequence[str]) -> tuple[list[float], list[float]]:
        with self._lock:
            new = [s for s in dict.fromkeys(smiles) if s not in self._cache]
            if new:
                pred = self.ensemble.predict(new)
                self._cache.update(dict.fromkeys(new, (float("nan"), float("nan"))))
                for row, mean, std in zip(pred.rows, pred.mean[:, self._target], pred.std[:, self._target],
                                          strict=True):
                    self._cache[new[row]] = (float(mean) - self.offset_v, float(std))
            return [self._cache[s][0] for s in smiles], [self._cache[s][1] for s in smiles]

    def out_of_sample(self, smiles: Sequence[str]) -> tuple[list[float], list[float]]:
        """Predictions of measured molecules by members that did not train on them (kept when the version
        was trained: :func:`train`), and :meth:`predict`'s for any other molecule. Why: a retrained network
        has learnt the measurements it was trained on, so its error there — what the calibration fits and
        scores — would look smaller than its error on the next molecule."""
        mu, sigma = self.predict(smiles)
        known = self._out_of_sample
        return ([known[s][0] if s in known else m for s, m in zip(smiles, mu, strict=True)],
                [known[s][1] if s in known else v for s, v in zip(smiles, sigma, strict=True)])


def _out_of_sample(ensemble: Ensemble, target: int, offset_v: float) -> dict[str, tuple[float, float]]:
    """``{smiles: (mean - offset_v, sigma)}`` of the out-of-sample predictions kept with ``ensemble``."""
    kept = ensemble.info.get("out_of_sample") or {}
    return {s: (float(mean[target]) - offset_v, float(sigma[target]))
            for s, mean, sigma in zip(kept.get("smiles", []), kept.get("mean", []), kept.get("sigma", []),
                                      strict=True)}


def heads(model: ObjectiveModel) -> list[ObjectiveModel]:
    """The views of ``model``'s version the loop chooses between: the prior target, and a retrained
    network's measured-potential output when it has one (:class:`labloop.orchestrator.learning.learner.Learning`)."""
    if model.head == "prior" and MEASURED_TARGET in model.ensemble.targets:
        return [model, ObjectiveModel(model.ensemble, model.version, model.quantity, head="measured")]
    return [model]


@dataclass(frozen=True)
class LoadedModel:
    """A journalled model version: the model planners use and its journal row (metrics, weights path)."""

    model: ObjectiveModel
    row: ModelVersion


def _journalled(campaign: Campaign, journal: Journal, ensemble: Ensemble, directory: Path,
                metrics: dict[str, Any], *, cached: bool = False) -> LoadedModel:
    """Record a saved model as the next version (``cached``: loaded, not trained by this run); returns it with its
    journal row."""
    version = journal.add_model_version(ensemble.info.get("n_train", 0), metrics, directory, cached=cached)
    row = next(r for r in journal.model_versions() if r.version == version)
    return LoadedModel(ObjectiveModel(ensemble, version, campaign.objective.quantity), row)


def prior_model(campaign: Campaign, journal: Journal, progress: Progress | None = None) -> LoadedModel:
    """Version 1: the prior model, loaded from its cache folder or trained there, and journalled once."""
    directory = prior_dir(journal.path, prior_key(campaign))
    cached = True
    if (ensemble := _saved(directory)) is not None:
        log.info("prior model loaded from %s", directory)
    else:
        with _training_alone(directory):
            if (ensemble := _saved(directory, say_unreadable=True)) is not None:  # the campaign waited for saved it
                log.info("prior model loaded from %s, saved by another campaign meanwhile", directory)
            else:
                ensemble, cached = _trained_prior(campaign, directory, progress)
    return _journalled(campaign, journal, ensemble, directory, metrics_of(ensemble, n_measurements=0), cached=cached)


def _saved(directory: Path, *, say_unreadable: bool = False) -> Ensemble | None:
    """The model saved in ``directory``, or None where none can be loaded; with ``say_unreadable``, a folder there
    that does not load is warned of, as it is about to be trained over (a damaged cached prior was trained again
    without a word: a newcomer's trial)."""
    from labloop.core.errors import ModelLoadError
    from labloop.surrogate.persistence import load_ensemble

    try:
        return load_ensemble(directory)
    except ModelLoadError as exc:
        if say_unreadable and directory.exists():
            log.warning("the prior model cached in %s does not load (%s): it is trained again", directory, exc)
        return None


def _trained_prior(campaign: Campaign, directory: Path, progress: Progress | None) -> tuple[Ensemble, bool]:
    """The prior trained into ``directory`` (False: trained here), or the one another campaign, of a labloop without
    :func:`_training_alone`, saved there just as this one's save failed (True)."""
    log.info("training the prior model into %s", directory)
    try:
        return train(campaign, prior_table(campaign), directory, progress), False
    except OSError as exc:
        if (ensemble := _saved(directory)) is None:  # none saved there: the disk's own failure (full, read-only),
            raise exc from None  # said as such ("no such model directory" sent an operator looking for a folder)
        log.info("prior model saved by another run meanwhile (%s)", exc)
        return ensemble, True


@contextmanager
def _training_alone(directory: Path) -> Iterator[None]:
    """Hold ``<directory>.lock``, a kernel lock beside the prior's cache folder, while the prior is trained into it; a
    campaign that finds it held says so and waits for it (Ctrl-C stops the wait), then loads what the other saved.
    Why: two campaigns of one folder started together both trained the same prior, twice the CPU and memory for
    the same model, hours for a big table (a lab manager's trial). A folder where the lock cannot be made trains
    without it, as before; the kernel drops the lock of a process that dies."""
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory.with_name(directory.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        log.debug("training the prior without its lock: %s", exc)
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("another campaign is training this prior model into %s: waiting for it, then loading it "
                        "(Ctrl-C stops the wait)", display_name(directory))
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def latest_model(campaign: Campaign, journal: Journal) -> LoadedModel | None:
    """The newest journalled model whose weights are readable (a resumed run continues with it)."""
    from labloop.core.errors import ModelLoadError
    from labloop.surrogate.persistence import load_ensemble

    recorded = Path(journal.campaign_info().config.get("store") or journal.path)  # where the journal last said it was
    here = journal.path.absolute().parent
    for row in reversed(journal.model_versions()):
        if row.pruned:
            log.info("model version %d was pruned (surrogate.keep_models); trying the one before", row.version)
            continue
        weights = Path(row.weights_path or "")
        # a store copied or moved with its folder has its weights beside it; only a resume journals the move
        # (Journal.record_move), and `candidates` of a copy whose original was gone found none (a referee's trial)
        if recorded.parent != here and (went := moved_along(weights, recorded.parent, here)) is not None:
            weights = went
        try:
            ensemble = load_ensemble(weights)
        except ModelLoadError as exc:
            log.warning("model version %d is unreadable (%s); trying the one before", row.version, exc)
            continue
        return LoadedModel(ObjectiveModel(ensemble, row.version, campaign.objective.quantity), row)
    return None


def retrain(campaign: Campaign, journal: Journal, measured: Sequence[tuple[str, float]], round_: int,
            progress: Progress, check: Callable[[], None]) -> LoadedModel:
    """Train on the prior plus ``measured`` (smiles, potential V vs Li/Li+) as an additional target, save,
    and journal the new version with its training data size and its errors on those measurements: of the
    objective prediction once calibrated on them (``measured_fit_mae_v``, in-sample), and of each output
    before calibration, out of sample (``out_of_sample_mae_v``: ``prior``, the prior target's rule, and
    ``measured``, the network's own measured-potential output; each measurement predicted by the members
    that did not train on it); ``round_`` numbers the retraining (its folder ``round-N``).

    It trains in a child process (:func:`labloop.surrogate.training_process.train_apart`: training keeps memory a
    run never gets back, loading does not); ``progress`` is called per epoch and ``check`` every moment, and either
    raising :class:`TrainingCancelled` ends the child."""
    from labloop.planners import Observation
    from labloop.planners.feedback import CalibratedModel, DescriptorTable

    directory = models_dir(journal.path) / f"round-{round_}"
    ensemble = train_apart(training_job(campaign, with_measurements(prior_table(campaign), measured), directory),
                           progress, check)
    observations = [Observation(s, {}, p) for s, p in measured]
    model = ObjectiveModel(ensemble, 0, campaign.objective.quantity)
    calibrated = CalibratedModel(model, observations, DescriptorTable())
    smiles, truth = [s for s, _ in measured], np.array([p for _, p in measured], dtype=float)
    out_of_sample = {}
    for head in heads(model):
        error = np.abs(np.array(head.out_of_sample(smiles)[0], dtype=float) - truth)
        out_of_sample[head.head] = float(np.nanmean(error)) if np.isfinite(error).any() else None
    metrics = metrics_of(ensemble, n_measurements=len(measured), round=round_,
                         measured_fit_mae_v=calibrated.calibration.fit_mae_v, out_of_sample_mae_v=out_of_sample)
    return _journalled(campaign, journal, ensemble, directory, metrics)


def prune(campaign: Campaign, journal: Journal, in_use: int) -> None:
    """Delete the weights of the retrained rounds older than the newest ``surrogate.keep_models``, and their library
    predictions (:mod:`.predictions`' shards, one set per version), but never version ``in_use``'s (the one the runner
    proposes with until it takes the newest: a shard campaign reads its shards at every proposal). Called once a new
    round is saved and journalled.

    Why: a round is ~27 MB with 3 folds and nothing deleted one, so an unattended week filled gigabytes, while a
    resume needs the newest round only (the one before when that is unreadable: :func:`latest_model`). Only round
    folders this store's retraining wrote (``<store>.models/round-N``) are deleted, never the prior model's cache
    that the folder's campaigns share. The versions are journalled as pruned before anything is deleted, so a kill
    at any moment leaves every version the journal offers loadable; a folder such a kill or a failed deletion left
    is deleted by the next prune."""
    from labloop.core.errors import ModelLoadError
    from labloop.surrogate.library_pipeline import ModelPayload

    folder = models_dir(journal.path).resolve()
    found = [(row, Path(row.weights_path)) for row in journal.model_versions() if row.weights_path]
    rounds = [(row, path) for row, path in found if path.resolve().parent == folder and path.name.startswith("round-")]
    keep = {row.version for row, _ in rounds[-campaign.surrogate.keep_models:]} | {in_use}
    kept = {path for row, path in rounds if row.version in keep}  # a round trained again reuses its folder
    doomed = [(row, path) for row, path in rounds if row.version not in keep and path not in kept and path.exists()]
    if not doomed:
        return
    new = [(row, path) for row, path in doomed if not row.pruned]
    if new:
        versions = [row.version for row, _ in new]
        journal.add_event(PRUNED, f"model {plural(len(new), 'version')} {', '.join(map(str, versions))} pruned: "
                                  f"{', '.join(path.name for _, path in new)} deleted (surrogate.keep_models: "
                                  f"{campaign.surrogate.keep_models})",
                          data={"versions": versions, "paths": [str(path) for _, path in new]})
    shards = predictions_dir(journal.path)
    for row, path in doomed:
        if not path.exists():  # a round trained again: its two versions shared the folder
            continue
        try:
            if shards.is_dir():  # named by the weights' hash: deleted first, while the weights can be read
                with suppress(ModelLoadError):  # weights no model can be read from never predicted a shard
                    shutil.rmtree(ModelPayload.from_directory(path).shards_in(shards), ignore_errors=True)
            shutil.rmtree(path)
        except OSError as exc:
            log.warning("model version %d: %s not deleted (%s); the next prune tries again", row.version, path, exc)
    log.info("pruned %s in %s (surrogate.keep_models: %d)", ", ".join(path.name for _, path in doomed), folder,
             campaign.surrogate.keep_models)
