"""The affine maps between the lab's units and the network's: label scaling and the fingerprint input transform.

Why apart from the network code (surrogate/model.py): a process that only predicts reads a saved model without
TensorFlow (surrogate/weights_file.py), and these are all of the network's arithmetic it needs besides the forward
pass (surrogate/forward.py).
"""

from __future__ import annotations

import numpy as np

from labloop.surrogate.config import ModelConfig


class LabelScaler:
    """Per-target affine scaling of labels; NaN (missing label) stays NaN and is masked in the loss."""

    def __init__(self, kind: str, offset: np.ndarray, scale: np.ndarray):
        self.kind = kind
        self.offset = np.asarray(offset, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)

    @classmethod
    def fit(cls, kind: str, Y: np.ndarray) -> LabelScaler:
        if kind == "minmax":
            lo, hi = np.nanmin(Y, axis=0), np.nanmax(Y, axis=0)
            return cls(kind, lo, np.where(hi > lo, hi - lo, 1.0))
        mean, std = np.nanmean(Y, axis=0), np.nanstd(Y, axis=0)
        return cls(kind, mean, np.where(std > 0, std, 1.0))

    def transform(self, Y: np.ndarray) -> np.ndarray:
        return ((Y - self.offset) / self.scale).astype(np.float32)

    def inverse(self, Z: np.ndarray) -> np.ndarray:
        return np.asarray(Z, dtype=np.float64) * self.scale + self.offset

    def to_dict(self) -> dict:
        return {"kind": self.kind, "offset": self.offset.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> LabelScaler:
        return cls(data["kind"], np.array(data["offset"]), np.array(data["scale"]))


def transform_inputs(X: np.ndarray, config: ModelConfig) -> np.ndarray:
    """Fingerprint matrix (uint8) -> float32 network input."""
    Xf = X.astype(np.float32)
    return np.log1p(Xf, out=Xf) if config.input_transform == "log1p" else Xf
