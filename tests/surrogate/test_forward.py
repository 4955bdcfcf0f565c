"""The numpy forward pass (surrogate/forward.py), read from saved weights files without TensorFlow
(surrogate/weights_file.py), against Keras' own prediction of the same members."""

from __future__ import annotations

import numpy as np
import pytest

from labloop.surrogate.ensemble import network_inputs, sparse_network_inputs
from labloop.surrogate.featurize import featurize
from labloop.surrogate.forward import SPARSE_BELOW, Forward
from labloop.surrogate.model import build_model, predict_scaled
from labloop.surrogate.persistence import load_ensemble, read_manifest


def keras_members(ensemble, directory) -> list:
    """The saved members loaded into Keras, as training built them: what the numpy pass must equal."""
    members = []
    for k, name in enumerate(read_manifest(directory)["members"]):
        member = build_model(ensemble.config, ensemble.fingerprint.width + ensemble.fingerprint.n_descriptors,
                             len(ensemble.targets), seed=k)
        member.load_weights(directory / name)
        members.append(member)
    return members


@pytest.fixture(scope="module")
def ensemble(tiny_model_dir):
    return load_ensemble(tiny_model_dir)


@pytest.fixture(scope="module")
def members(ensemble, tiny_model_dir):
    return keras_members(ensemble, tiny_model_dir)


@pytest.fixture(scope="module")
def feats(ensemble, ocelot):
    return featurize(ocelot["smiles"].iloc[400:700].tolist(), ensemble.fingerprint, n_jobs=1)


@pytest.fixture(scope="module")
def inputs(ensemble, feats):
    return network_inputs(feats, ensemble.config, ensemble.descriptor_scaler)


def test_sparse_inputs_are_the_dense_ones_and_predict_the_same(ensemble, feats, inputs):
    sparse = sparse_network_inputs(feats, ensemble.config, ensemble.descriptor_scaler)
    np.testing.assert_array_equal(sparse.toarray(), inputs)
    np.testing.assert_array_equal(ensemble.forward(sparse), ensemble.forward(inputs))


def test_sparse_forward_equals_keras_within_float32_rounding(ensemble, members, inputs):
    assert ensemble.members == []  # loaded without Keras: the pass read from the files is the one tested
    assert np.count_nonzero(inputs) < SPARSE_BELOW * inputs.size  # the sparse product is the one tested
    forward = ensemble.forward
    assert forward is not None
    ours = forward(inputs)
    keras = np.stack([predict_scaled(member, inputs) for member in members])
    assert ours.shape == keras.shape == (len(members), len(inputs), len(ensemble.targets))
    np.testing.assert_allclose(ours, keras, rtol=1e-4, atol=1e-5)
    # and the pass taken from the Keras members themselves is the same arithmetic
    np.testing.assert_array_equal(Forward.of(members)(inputs), ours)


def test_dense_inputs_take_the_dense_product_and_agree(ensemble, members, inputs):
    dense = np.abs(inputs) + 0.5  # no zero left
    np.testing.assert_allclose(ensemble.forward(dense),
                               np.stack([predict_scaled(m, dense) for m in members]), rtol=1e-4, atol=1e-4)


def test_no_rows_gives_no_outputs(ensemble, members, inputs):
    assert ensemble.forward(inputs[:0]).shape == (len(members), 0, len(ensemble.targets))


def test_a_network_it_does_not_know_is_left_to_keras(ensemble, tiny_preset):
    config = tiny_preset().model.model_copy(update={"activation": "softplus"})
    assert Forward.of([build_model(config, 10, 2, seed=0)]) is None
    assert Forward.of([]) is None


@pytest.mark.parametrize("activation", ["relu", "linear", "tanh", "sigmoid", "swish", "silu", "elu"])
def test_every_activation_it_implements_equals_keras(tiny_preset, activation):
    config = tiny_preset().model.model_copy(update={"activation": activation})
    members = [build_model(config, 40, 2, seed=k) for k in range(2)]
    x = np.random.default_rng(0).normal(size=(50, 40)).astype(np.float32)
    x[x < 0.8] = 0.0  # mostly zeros, as fingerprints are
    forward = Forward.of(members)
    assert forward is not None
    np.testing.assert_allclose(forward(x), np.stack([predict_scaled(m, x) for m in members]), rtol=1e-4, atol=1e-5)
