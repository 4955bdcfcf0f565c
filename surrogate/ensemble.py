"""The k-fold ensemble: K FCNN members whose spread is the surrogate's uncertainty.

Why an ensemble: the planner needs a mean *and* an honest sigma for every molecule. K members, each
trained on K-1 folds and checkpointed at its best validation epoch, disagree most where data is thin.
Their raw spread is not calibrated, so one factor per target rescales it. The factor is fitted on a
small calibration slice that no member trained on: there the spread and the error of the ensemble mean
are exactly as they will be on new molecules. (Out-of-fold rows are not used for this, because K-1 of
the K members have seen each of them, which shrinks their spread in a way new molecules never show;
bench/RESULTS.md measures how far off that would be.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from labloop.surrogate.config import ModelConfig
from labloop.surrogate.errors import InvalidInput
from labloop.surrogate.featurize import Features, FingerprintSettings, InvalidSmiles, featurize
from labloop.surrogate.fingerprint_cache import FingerprintCache
from labloop.surrogate.metrics import calibration_factor, regression_metrics
from labloop.surrogate.model import (
    LabelScaler,
    predict_scaled,
    train_member,
    transform_inputs,
)

log = logging.getLogger(__name__)

#: ``on_epoch(member, epoch, loss, val_loss)``: progress of training, for bars and logs
EpochHook = Callable[[int, int, float, float], None]


@dataclass
class Prediction:
    """Calibrated mean and std per target for the valid input rows; invalid inputs listed apart."""

    targets: list[str]
    rows: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    invalid: list[InvalidSmiles] = field(default_factory=list)


@dataclass
class Ensemble:
    """K trained members plus everything needed to featurise, unscale and calibrate their output."""

    members: list  # keras.Model, one per fold
    fingerprint: FingerprintSettings
    config: ModelConfig
    targets: list[str]
    scaler: LabelScaler
    calibration: dict[str, float]
    descriptor_scaler: LabelScaler | None = None  # standardises descriptor columns (None: no descriptors)
    preset: str = "custom"
    info: dict = field(default_factory=dict)  # metrics, data hash, learning curves: see persistence

    def _raw(self, feats: Features) -> tuple[np.ndarray, np.ndarray]:
        """Uncalibrated ensemble mean and spread (std across members) in label units."""
        inputs = network_inputs(feats, self.config, self.descriptor_scaler)
        preds = np.stack([self.scaler.inverse(predict_scaled(m, inputs)) for m in self.members])
        return preds.mean(axis=0), preds.std(axis=0)

    def predict_features(self, feats: Features, batch: int = 20000) -> tuple[np.ndarray, np.ndarray]:
        """Mean and calibrated std for featurised molecules, in batches to bound memory."""
        means, stds = [], []
        for i in range(0, len(feats), batch):
            m, s = self._raw(feats.subset(slice(i, i + batch)))
            means.append(m)
            stds.append(s * np.array([self.calibration[t] for t in self.targets]))
        if not means:
            empty = np.zeros((0, len(self.targets)))
            return empty, empty.copy()
        return np.concatenate(means), np.concatenate(stds)

    def predict(self, smiles: Sequence[str], *, n_jobs: int | None = None,
                cache: FingerprintCache | None = None,
                progress: Callable[[int], None] | None = None) -> Prediction:
        """Featurise and predict; invalid SMILES are skipped and listed in the result."""
        feats = featurize(smiles, self.fingerprint, n_jobs=n_jobs, cache=cache, progress=progress)
        mean, std = self.predict_features(feats)
        return Prediction(self.targets, feats.rows, mean, std, feats.invalid)


def fold_indices(n: int, folds: int, seed: int) -> list[np.ndarray]:
    """Shuffled, near-equal folds of range(n)."""
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(order, folds)]


def calibration_size(n: int, fraction: float) -> int:
    """Rows kept aside for calibration: ``fraction`` of n, at least 100 (or a fifth of tiny data)."""
    return max(round(fraction * n), min(100, n // 5))


def network_inputs(feats: Features, config: ModelConfig, descriptor_scaler: LabelScaler | None) -> np.ndarray:
    """float32 network input: transformed fingerprints, then standardised descriptors (if any)."""
    Xt = transform_inputs(feats.X, config)
    if descriptor_scaler is None or not feats.D.shape[1]:
        return Xt
    return np.concatenate([Xt, descriptor_scaler.transform(feats.D)], axis=1)


def train_ensemble(
    feats: Features,
    Y: np.ndarray,
    targets: Sequence[str],
    fingerprint: FingerprintSettings,
    config: ModelConfig,
    *,
    folds: int = 5,
    seed: int = 0,
    calibration_fraction: float = 0.05,
    preset: str = "custom",
    on_epoch: EpochHook | None = None,
) -> Ensemble:
    """Train K members on K folds of (X, Y) minus a calibration slice, then calibrate on that slice.

    ``Y`` holds the labels of ``feats``' molecules, one column per target, NaN where missing.
    """
    targets = list(targets)
    if folds < 2:
        raise InvalidInput(f"folds must be at least 2, got {folds}")
    if Y.ndim != 2 or Y.shape[1] != len(targets) or len(Y) != len(feats):
        raise InvalidInput("labels must be one column per target and one row per molecule")
    n = len(feats)
    if n < 5 * folds:
        raise InvalidInput(f"{n} molecules are too few to train {folds} folds (need at least {5 * folds})")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    n_cal = calibration_size(n, calibration_fraction)
    cal, fit = np.sort(order[:n_cal]), np.sort(order[n_cal:])
    scaler = LabelScaler.fit(config.label_scaling, Y[fit])
    desc_scaler = LabelScaler.fit("standard", feats.D[fit]) if feats.D.shape[1] else None
    Xt, Z = network_inputs(feats, config, desc_scaler), scaler.transform(Y)

    members, curves, oof = [], [], np.full((len(fit), len(targets)), np.nan)
    parts = fold_indices(len(fit), folds, seed)
    for k, val_pos in enumerate(parts):
        train_pos = np.setdiff1d(np.arange(len(fit)), val_pos, assume_unique=True)
        tr, va = fit[train_pos], fit[val_pos]
        hook = (lambda epoch, loss, val, k=k: on_epoch(k, epoch, loss, val)) if on_epoch else None
        member = train_member(config, Xt[tr], Z[tr], Xt[va], Z[va], seed=seed * 1000 + k, on_epoch=hook)
        members.append(member.model)
        curves.append({"loss": [h[0] for h in member.history], "val_loss": [h[1] for h in member.history],
                       "best_epoch": member.best_epoch})
        oof[val_pos] = scaler.inverse(predict_scaled(member.model, Xt[va]))
        log.info("member %d/%d: best epoch %d", k + 1, folds, member.best_epoch + 1)

    ens = Ensemble(members, fingerprint, config, targets, scaler, dict.fromkeys(targets, 1.0), desc_scaler, preset)
    cal_mean, cal_std = ens._raw(feats.subset(cal))
    ens.calibration = {t: calibration_factor(Y[cal, j], cal_mean[:, j], cal_std[:, j])
                       for j, t in enumerate(targets)}
    scale = np.array([ens.calibration[t] for t in targets])
    _, fit_std = ens._raw(feats.subset(fit))
    ens.info = {
        "n_train": len(fit),
        "n_calibration": len(cal),
        # what an out-of-fold calibration would have said (kept to show why the slice is used instead)
        "oof_calibration_factor": {t: calibration_factor(Y[fit, j], oof[:, j], fit_std[:, j])
                                   for j, t in enumerate(targets)},
        "learning_curves": curves,
        "metrics": {
            "out_of_fold": {t: regression_metrics(Y[fit, j], oof[:, j]) for j, t in enumerate(targets)},
            "calibration_slice": {t: regression_metrics(Y[cal, j], cal_mean[:, j], cal_std[:, j] * scale[j])
                                  for j, t in enumerate(targets)},
        },
    }
    return ens
