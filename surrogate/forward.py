"""The ensemble's forward pass in numpy, its first layer a sparse product over all members at once.

Why: after featurisation, predicting is the largest cost of a library (bench/RESULTS.md, "Scale"), and
Keras computes the first layer as a dense product although a network input row is mostly zeros (a
fingerprint of 4,096 counts has about 160 non-zero ones). Stacking the members' first-layer weights side by
side and multiplying the sparse input once gives every member's first layer for about a third of Keras'
time on one core; the layers after it are small dense products. Keras stays the engine that trains and
saves the members: this module takes their weights, from the trained members (:meth:`Forward.of`) or read
from their saved files without TensorFlow (surrogate/weights_file.py), and any layer it does not know (or
an activation it does not implement) gives None, so the caller keeps Keras' own prediction.
The results equal Keras' within float32 rounding (the sums are taken in another order;
tests/surrogate/test_forward.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix, issparse

log = logging.getLogger(__name__)

#: input rows per product: bounds the first layer's output (rows x members x width float32) to ~100 MB
BATCH = 8192
#: above this fraction of non-zero inputs a dense product is the faster one
SPARSE_BELOW = 0.25


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1.0)


#: the activations implemented here, by their Keras names (anything else: Keras predicts)
ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0.0, out=x),
    "tanh": np.tanh,
    "sigmoid": _sigmoid,
    "swish": lambda x: x * _sigmoid(x),
    "silu": lambda x: x * _sigmoid(x),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))).astype(x.dtype),
}

Layer = tuple[np.ndarray, np.ndarray, Callable[[np.ndarray], np.ndarray]]
#: a dense layer as read from a member: (weights, bias, the activation's Keras name)
NamedLayer = tuple[np.ndarray, np.ndarray, str]


@dataclass(frozen=True)
class Forward:
    """Every member's network as arrays: the stacked first layer (inputs x members * width), then each
    member's later layers as (weights, bias, activation)."""

    first_weights: np.ndarray
    first_bias: np.ndarray
    first_activation: Callable[[np.ndarray], np.ndarray]
    width: int
    rest: tuple[tuple[Layer, ...], ...]

    @classmethod
    def of(cls, members: Sequence) -> Forward | None:
        """The forward pass of Keras ``members`` (Input, Dense and Dropout layers only; the same first-layer
        width and activation in all), or None when one of them is built otherwise."""
        return cls.stacked([_dense_layers(member) for member in members])

    @classmethod
    def stacked(cls, stacks: Sequence[Sequence[NamedLayer] | None]) -> Forward | None:
        """The forward pass of members given as their dense layers in order, (weights, bias, activation name)
        each, or None when a member is missing (None or no layer), uses an activation :data:`ACTIVATIONS`
        lacks, or the members' first layers differ in shape or activation."""
        if not stacks or any(stack is None or not stack for stack in stacks):
            return None
        if any(name not in ACTIVATIONS for stack in stacks for _, _, name in stack):  # type: ignore[union-attr]
            return None
        firsts = [stack[0] for stack in stacks]  # type: ignore[index]
        shapes = {w.shape for w, _, _ in firsts}
        activations = {name for _, _, name in firsts}
        if len(shapes) != 1 or len(activations) != 1:
            return None
        rest = tuple(tuple((w, b, ACTIVATIONS[name]) for w, b, name in stack[1:]) for stack in stacks)  # type: ignore[index]
        return cls(np.concatenate([w for w, _, _ in firsts], axis=1), np.concatenate([b for _, b, _ in firsts]),
                   ACTIVATIONS[activations.pop()], shapes.pop()[1], rest)

    def __call__(self, inputs: np.ndarray | csr_matrix) -> np.ndarray:
        """Outputs of every member for float32 ``inputs`` (rows x inputs, dense or a CSR matrix): members x
        rows x outputs."""
        outputs = [self._batch(inputs[i:i + BATCH]) for i in range(0, inputs.shape[0], BATCH)]
        if not outputs:
            n_out = self.rest[0][-1][0].shape[1] if self.rest[0] else self.width
            return np.zeros((len(self.rest), 0, n_out), dtype=np.float32)
        return np.concatenate(outputs, axis=1)

    def _batch(self, inputs: np.ndarray | csr_matrix) -> np.ndarray:
        if issparse(inputs):
            hidden = np.asarray(inputs @ self.first_weights)
        elif np.count_nonzero(inputs) < SPARSE_BELOW * inputs.size:
            hidden = np.asarray(csr_matrix(inputs) @ self.first_weights)
        else:
            hidden = inputs @ self.first_weights
        hidden = self.first_activation(hidden + self.first_bias)
        out = []
        for k, layers in enumerate(self.rest):
            h = hidden[:, k * self.width:(k + 1) * self.width]
            for weights, bias, activation in layers:
                h = activation(h @ weights + bias)
            out.append(h)
        return np.stack(out)


def _dense_layers(member) -> list[NamedLayer] | None:
    """(weights, bias, activation name) of each Dense layer in order; None if the member has a layer that is
    not Input/Dense/Dropout or a Dense without bias."""
    layers = []
    for layer in member.layers:
        kind = type(layer).__name__
        if kind in ("InputLayer", "Dropout"):  # dropout is the identity when predicting
            continue
        if kind != "Dense" or not layer.use_bias:
            return None
        name = getattr(layer.activation, "__name__", "")
        weights, bias = (np.asarray(w, dtype=np.float32) for w in layer.get_weights())
        layers.append((weights, bias, name))
    return layers
