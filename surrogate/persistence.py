"""Model directories: member weights plus a JSON manifest that says how to rebuild and use them.

Layout of a model directory::

    manifest.json           format version, featuriser, config, targets, label scaling, calibration
                            (factor and floor per target),
                            metrics, training-data hash, package versions
    member_0.weights.h5 ... one Keras weights file per fold

A directory is written to a temporary sibling and renamed into place, so a crash never leaves a
half-written model under the requested name.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import platform
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from labloop.core.errors import ModelLoadError
from labloop.core.timestamps import now
from labloop.core.version import installed_version
from labloop.surrogate.config import ModelConfig
from labloop.surrogate.featurize import FingerprintSettings
from labloop.surrogate.forward import Forward
from labloop.surrogate.scaling import LabelScaler
from labloop.surrogate.weights_file import read_dense_layers

if TYPE_CHECKING:  # TensorFlow loads only to build a Keras model: loading one to predict stays light
    import keras

    from labloop.surrogate.ensemble import Ensemble

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = "labloop-surrogate"
FORMAT_VERSION = 1


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("labloop", "tensorflow", "keras", "rdkit", "numpy"):
        out[pkg] = installed_version(pkg) or "unknown"
    return out


#: what a model folder takes besides its members' weights (manifest, HDF5 headers), bytes
SAVE_OVERHEAD_BYTES = 1 << 20


def _check_room(ens: Ensemble, folder: Path) -> None:
    """OSError(ENOSPC) naming ``folder`` when its disk has less room than the weights take (4 bytes a parameter):
    h5py writing onto a full disk ended a run in a segmentation fault under ~50 lines (an operator's trial), and
    a retrain that half-wrote its folder left nothing useful. A disk filled meanwhile still fails in the write."""
    needed = 4 * sum(member.count_params() for member in ens.members) + SAVE_OVERHEAD_BYTES
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise OSError(errno.ENOSPC, f"No space left on device: the model needs {needed / 1e6:.0f} MB, "
                                    f"{free / 1e6:.0f} MB free", str(folder))


def _layers_only(ens: Ensemble, k: int) -> keras.Model:
    """An uncompiled twin of member ``k``, built as :func:`load_ensemble` builds it, holding its layers' weights.
    Why: Keras writes a compiled model's optimizer state (Adam's two moments per weight) into its weights file, two
    thirds of it (51 of a round's 77 MB with the example's 3 folds; an operator's trial counted 15 GB a week of
    retrains), and nothing reads it back: loading builds uncompiled members, and training compiles a new optimizer."""
    from labloop.surrogate.model import build_model

    twin = build_model(ens.config, ens.fingerprint.width + ens.fingerprint.n_descriptors, len(ens.targets), seed=k)
    twin.set_weights(ens.members[k].get_weights())
    return twin


def save_ensemble(ens: Ensemble, directory: str | Path, extra: dict | None = None) -> Path:
    """Write the trained ``ens`` to ``directory`` atomically (replacing an existing model directory there). A loaded
    ensemble holds no Keras members to write (:func:`load_ensemble`): its folder is copied instead."""
    target = Path(directory)
    if target.exists() and not (target / MANIFEST).is_file() and any(target.iterdir()):
        raise ModelLoadError(f"{target} exists and is not a labloop model directory; refusing to overwrite it")
    if not ens.members:
        raise ValueError("this ensemble was loaded to predict and holds no Keras members: copy its model folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    _check_room(ens, target.parent)
    # mkdir, not mkdtemp: the folder gets the user's umask like any other (mkdtemp's 0700 kept the lab's other
    # accounts from reading a campaign's models)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        files = []
        for k in range(len(ens.members)):
            name = f"member_{k}.weights.h5"
            _layers_only(ens, k).save_weights(tmp / name)
            files.append(name)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created_at": now(),  # for people: nothing reads it back
            "preset": ens.preset,
            "targets": ens.targets,
            "fingerprint": ens.fingerprint.to_dict(),
            "model": ens.config.model_dump(mode="json"),
            "label_scaling": ens.scaler.to_dict(),
            "descriptor_scaling": ens.descriptor_scaler.to_dict() if ens.descriptor_scaler else None,
            "folds": len(ens.members),
            "members": files,
            "calibration": ens.calibration,
            # sigma = calibration * sqrt(spread^2 + calibration_floor^2); manifests before the floor lack it (0)
            "calibration_floor": ens.calibration_floor,
            "versions": _versions(),
            **ens.info,
            **(extra or {}),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, allow_nan=True))
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("saved %d-member ensemble to %s", len(ens.members), target)
    return target


def read_manifest(directory: str | Path) -> dict:
    """The manifest of a model directory, checked for format and version."""
    path = Path(directory)
    if not path.is_dir():
        raise ModelLoadError(f"{path}: no such model directory")
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: no {MANIFEST}; not a labloop model directory") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path / MANIFEST}: damaged manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelLoadError(f"{path / MANIFEST}: not a labloop surrogate manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ModelLoadError(f"{path}: model format version {manifest.get('format_version')} is not supported "
                             f"by this labloop (reads version {FORMAT_VERSION}); retrain the model")
    return manifest


def load_ensemble(directory: str | Path) -> Ensemble:
    """Rebuild the ensemble saved in ``directory``; any damage gives a :class:`ModelLoadError`.

    The members' weights are read into the numpy forward pass without TensorFlow (surrogate/weights_file.py), so
    the ensemble predicts but holds no Keras members; a network that pass does not know (another activation,
    another Keras' file layout) is loaded into Keras, as it was trained."""
    from labloop.surrogate.ensemble import Ensemble

    path = Path(directory)
    manifest = read_manifest(path)
    try:
        fingerprint = FingerprintSettings.from_dict(manifest["fingerprint"])
        config = ModelConfig.model_validate(manifest["model"])
        targets = list(manifest["targets"])
        scaler = LabelScaler.from_dict(manifest["label_scaling"])
        desc = manifest.get("descriptor_scaling")
        desc_scaler = LabelScaler.from_dict(desc) if desc else None
        if fingerprint.descriptors and desc_scaler is None:
            raise KeyError("descriptor_scaling")
        calibration = {t: float(manifest["calibration"][t]) for t in targets}
        floors = manifest.get("calibration_floor") or {}
        calibration_floor = {t: float(floors.get(t, 0.0)) for t in targets}
        files = list(manifest["members"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"{path / MANIFEST}: incomplete or invalid manifest ({exc})") from None
    n_inputs = fingerprint.width + fingerprint.n_descriptors
    stacks = []
    for name in files:
        with _weights_errors(path, name):
            stacks.append(read_dense_layers(path / name, config, n_inputs, len(targets)))
    forward = Forward.stacked(stacks)
    members = [] if forward is not None else _keras_members(path, files, config, n_inputs, len(targets))
    info = {k: v for k, v in manifest.items() if k not in {
        "format", "format_version", "preset", "targets", "fingerprint", "model", "label_scaling",
        "descriptor_scaling", "folds", "members", "calibration", "calibration_floor"}}
    return Ensemble(members, fingerprint, config, targets, scaler, calibration, desc_scaler,
                    manifest.get("preset", "custom"), info, calibration_floor, forward=forward)


@contextlib.contextmanager
def _weights_errors(path: Path, name: str) -> Iterator[None]:
    """Reading the weights file ``name`` of the model in ``path``: its absence or damage as one
    :class:`ModelLoadError` naming it."""
    try:
        yield
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: weights file {name} is missing") from None
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path / name}: damaged or incompatible weights ({exc})") from None


def _keras_members(path: Path, files: list[str], config: ModelConfig, n_inputs: int, n_outputs: int
                   ) -> list[keras.Model]:
    """The members as Keras models (TensorFlow loads here), built as training built them."""
    from labloop.surrogate.model import build_model

    members = []
    for k, name in enumerate(files):
        model = build_model(config, n_inputs, n_outputs, seed=k)
        with _weights_errors(path, name):
            model.load_weights(path / name)
        members.append(model)
    return members
