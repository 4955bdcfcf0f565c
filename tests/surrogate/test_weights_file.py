"""A saved model is read without TensorFlow (surrogate/weights_file.py) and predicts exactly as the members that were
saved; a network the numpy pass does not know, or a file laid out otherwise, is loaded into Keras instead."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from labloop.core.errors import ModelLoadError
from labloop.surrogate.ensemble import Ensemble, network_inputs
from labloop.surrogate.featurize import featurize
from labloop.surrogate.forward import Forward
from labloop.surrogate.model import build_model, predict_scaled
from labloop.surrogate.persistence import MANIFEST, load_ensemble, save_ensemble
from labloop.surrogate.presets import PRESETS
from labloop.surrogate.scaling import LabelScaler

TARGETS = ["ie_ev", "ea_ev"]


def _untrained(preset, ocelot, **update) -> tuple[Ensemble, object]:
    """A 2-member ensemble of ``preset``'s network as it is initialised (training would only move the weights),
    and the features of 60 molecules to predict."""
    config = preset.model.model_copy(update=update)
    feats = featurize(ocelot["smiles"].iloc[100:160].tolist(), preset.fingerprint, n_jobs=1)
    n_inputs = preset.fingerprint.width + preset.fingerprint.n_descriptors
    members = [build_model(config, n_inputs, len(TARGETS), seed=k) for k in range(2)]
    labels = ocelot[TARGETS].iloc[100:160].to_numpy()
    ens = Ensemble(members, preset.fingerprint, config, TARGETS, LabelScaler.fit(config.label_scaling, labels),
                   dict.fromkeys(TARGETS, 1.5), LabelScaler.fit("standard", feats.D) if feats.D.shape[1] else None,
                   preset.name, forward=Forward.of(members))
    return ens, feats


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_presets_model_is_read_without_keras_and_predicts_as_keras(name, ocelot, tmp_path):
    ens, feats = _untrained(PRESETS[name], ocelot)
    loaded = load_ensemble(save_ensemble(ens, tmp_path / name))
    assert loaded.members == [] and loaded.forward is not None
    inputs = network_inputs(feats, loaded.config, loaded.descriptor_scaler)
    keras = np.stack([predict_scaled(member, inputs) for member in ens.members])
    np.testing.assert_allclose(loaded.forward(inputs), keras, rtol=1e-4, atol=1e-5)
    before, after = ens.predict_features(feats), loaded.predict_features(feats)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])
    assert np.ptp(after[0], axis=0).min() > 0  # the molecules are told apart: not a constant compared with itself


def test_an_activation_the_numpy_pass_lacks_is_loaded_into_keras(ocelot, tmp_path, tiny_preset):
    ens, feats = _untrained(tiny_preset(), ocelot, activation="softplus")
    assert ens.forward is None
    loaded = load_ensemble(save_ensemble(ens, tmp_path / "softplus"))
    assert loaded.forward is None and len(loaded.members) == 2
    np.testing.assert_allclose(loaded.predict_features(feats)[0], ens.predict_features(feats)[0], rtol=1e-6)


def test_a_file_laid_out_otherwise_is_loaded_into_keras(ocelot, tmp_path, tiny_preset):
    ens, feats = _untrained(tiny_preset(), ocelot)
    folder = save_ensemble(ens, tmp_path / "other")
    for member in ("member_0.weights.h5", "member_1.weights.h5"):
        with h5py.File(folder / member, "r+") as weights:
            del weights["layers/dense/vars"].attrs["name"]  # the layer's name, by which the file is read
    loaded = load_ensemble(folder)
    assert loaded.forward is None and len(loaded.members) == 2
    np.testing.assert_allclose(loaded.predict_features(feats)[0], ens.predict_features(feats)[0], rtol=1e-5)


@pytest.mark.parametrize(("hidden", "said"), [([64, 16], "layer hidden_1 holds"),
                                              ([64], "layers hidden_1 are not in the manifest's network")])
def test_weights_of_another_network_are_refused_naming_the_file(tiny_model_dir, tmp_path, hidden, said):
    folder = tmp_path / "model"
    folder.mkdir()
    for path in tiny_model_dir.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["model"]["hidden"] == [64, 32]
    manifest["model"]["hidden"] = hidden
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="incompatible weights") as err:
        load_ensemble(folder)
    assert str(folder / "member_0.weights.h5") in str(err.value) and said in str(err.value)


def test_a_loaded_ensemble_is_not_saved_empty(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="copy its model folder"):
        save_ensemble(load_ensemble(tiny_model_dir), tmp_path / "copy")
    assert not (tmp_path / "copy").exists()
