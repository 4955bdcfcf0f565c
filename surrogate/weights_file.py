"""A saved member's dense layers read from its Keras weights file with h5py, without TensorFlow.

Why: importing TensorFlow costs about 5 s of CPU and half a gigabyte in every process that loads a model, and a
process that only predicts (a campaign loading its prior or a retrained model, every Dask worker,
``labloop surrogate predict``) needs none of it: the forward pass is numpy (surrogate/forward.py). Keras writes a
member (surrogate/persistence.py, ``save_ensemble``) as one HDF5 group per layer, ``layers/<key>/vars``, whose
attribute ``name`` is the name surrogate/model.py gave the layer (``hidden_0``, ``hidden_1``, ..., ``targets``)
and whose datasets ``0`` and ``1`` are its kernel and bias. A file laid out otherwise (another Keras' layout) gives
None, and the caller loads the member with Keras; a file laid out so but holding other shapes than the manifest's
network is incompatible, as Keras would say.
"""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np

from labloop.surrogate.config import ModelConfig
from labloop.surrogate.forward import NamedLayer

log = logging.getLogger(__name__)


class IncompatibleWeights(ValueError):
    """The file's layers are not the network its manifest describes (another width, another number of layers)."""


def read_dense_layers(path: Path, config: ModelConfig, n_inputs: int, n_outputs: int) -> list[NamedLayer] | None:
    """The (weights, bias, activation name) of each dense layer of the member saved at ``path``, in order, as
    surrogate/model.py's ``build_model(config, n_inputs, n_outputs)`` builds it; None when the file is not laid
    out as this module reads it. Raises OSError for a missing or unreadable file and
    :class:`IncompatibleWeights` for other layers or shapes than the network's."""
    names = [f"hidden_{i}" for i in range(len(config.hidden))] + ["targets"]
    sizes = [n_inputs, *config.hidden, n_outputs]
    with h5py.File(path, "r") as weights:
        held = _layers_by_name(weights)
        if held is None or not set(names) <= set(held):
            log.debug("%s: not the weights layout read without Keras", path)
            return None
        if extra := sorted(set(held) - set(names)):
            raise IncompatibleWeights(f"layers {', '.join(extra)} are not in the manifest's network")
        layers = []
        for i, name in enumerate(names):
            kernel, bias = held[name]
            expected = (sizes[i], sizes[i + 1])
            if kernel.shape != expected or bias.shape != (sizes[i + 1],):
                raise IncompatibleWeights(f"layer {name} holds {kernel.shape} and {bias.shape}; the manifest's "
                                          f"network has {expected} and ({sizes[i + 1]},)")
            activation = config.activation if name != "targets" else "linear"
            layers.append((np.asarray(kernel, dtype=np.float32), np.asarray(bias, dtype=np.float32), activation))
    return layers


def _layers_by_name(weights: h5py.File) -> dict[str, tuple[h5py.Dataset, h5py.Dataset]] | None:
    """Each layer holding variables, by its name: (kernel, bias); None when a group is laid out otherwise."""
    layers = weights.get("layers")
    if not isinstance(layers, h5py.Group):
        return None
    held = {}
    for key in layers:
        variables = layers[key].get("vars") if isinstance(layers[key], h5py.Group) else None
        if not isinstance(variables, h5py.Group):
            return None
        if not len(variables):  # an input or dropout layer: nothing to read
            continue
        name = variables.attrs.get("name")
        if isinstance(name, bytes):
            name = name.decode()
        kernel, bias = variables.get("0"), variables.get("1")
        if not isinstance(name, str) or len(variables) != 2 or not isinstance(kernel, h5py.Dataset) \
                or not isinstance(bias, h5py.Dataset) or name in held:
            return None
        held[name] = (kernel, bias)
    return held
