"""The numpy forward pass (surrogate/forward.py) against Keras' own prediction of the same members."""

from __future__ import annotations

import numpy as np
import pytest

from labloop.surrogate.ensemble import network_inputs, sparse_network_inputs
from labloop.surrogate.featurize import featurize
from labloop.surrogate.forward import SPARSE_BELOW, Forward
from labloop.surrogate.model import build_model, predict_scaled
from labloop.surrogate.persistence import load_ensemble


@pytest.fixture(scope="module")
def ensemble(tiny_model_dir):
    return load_ensemble(tiny_model_dir)


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


def test_sparse_forward_equals_keras_within_float32_rounding(ensemble, inputs):
    assert np.count_nonzero(inputs) < SPARSE_BELOW * inputs.size  # the sparse product is the one tested
    forward = ensemble.forward
    assert forward is not None
    ours = forward(inputs)
    keras = np.stack([predict_scaled(member, inputs) for member in ensemble.members])
    assert ours.shape == keras.shape == (len(ensemble.members), len(inputs), len(ensemble.targets))
    np.testing.assert_allclose(ours, keras, rtol=1e-4, atol=1e-5)


def test_dense_inputs_take_the_dense_product_and_agree(ensemble, inputs):
    dense = np.abs(inputs) + 0.5  # no zero left
    np.testing.assert_allclose(ensemble.forward(dense),
                               np.stack([predict_scaled(m, dense) for m in ensemble.members]), rtol=1e-4, atol=1e-4)


def test_no_rows_gives_no_outputs(ensemble, inputs):
    assert ensemble.forward(inputs[:0]).shape == (len(ensemble.members), 0, len(ensemble.targets))


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
