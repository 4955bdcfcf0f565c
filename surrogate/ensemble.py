"""The k-fold ensemble: K FCNN members whose spread is the surrogate's uncertainty.

Why an ensemble: the planner needs a mean *and* an honest sigma for every molecule. K members, each
trained on K-1 folds and checkpointed at its best validation epoch, disagree most where data is thin.
Their raw spread is not calibrated: it is rescaled per target to sigma = factor * sqrt(spread^2 +
floor^2). Both numbers are fitted on a calibration slice that no member trained on: there the spread and
the error of the ensemble mean are exactly as they will be on new molecules. (Out-of-fold rows are not
used for this, because K-1 of the K members have seen each of them, which shrinks their spread in a way
new molecules never show; bench/RESULTS.md measures how far off that would be.)

Why a floor: members can agree on a molecule and still all be wrong by the error every model of this
kind makes (label noise, what the fingerprint cannot see); a spread-proportional sigma is then far too
small there, and a single factor has to compensate by widening every other interval. The floor is the
maximum-likelihood fit of error ~ N(0, a * (spread^2 + floor^2)) on the slice. Why the factor is a
conformal quantile (the ceil((n+1) * 0.95)-th smallest |error| / sqrt(spread^2 + floor^2), divided by
1.96): whatever the error distribution, 95% coverage on new molecules is then guaranteed on average
over slices, instead of resting on a Gaussian assumption.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import csr_matrix, hstack

from labloop.core.errors import InvalidInput
from labloop.surrogate.config import MIN_ROWS_PER_FOLD, ModelConfig
from labloop.surrogate.featurize import Features, FingerprintSettings, InvalidSmiles, featurize
from labloop.surrogate.fingerprint_cache import FingerprintCache
from labloop.surrogate.forward import Forward
from labloop.surrogate.metrics import Z95, calibration_factor, regression_metrics
from labloop.surrogate.scaling import LabelScaler, transform_inputs

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
    """K trained members plus everything needed to featurise, unscale and calibrate their output.

    Why the members may be absent: an ensemble loaded to predict (surrogate/persistence.py) reads its members'
    weights straight into ``forward``, the numpy pass, without TensorFlow; it holds Keras members only when it was
    trained here, or when its network is one ``forward`` does not know (then ``forward`` is None)."""

    members: list  # keras.Model, one per fold; empty when loaded into ``forward`` alone
    fingerprint: FingerprintSettings
    config: ModelConfig
    targets: list[str]
    scaler: LabelScaler
    calibration: dict[str, float]  # the factor per target
    descriptor_scaler: LabelScaler | None = None  # standardises descriptor columns (None: no descriptors)
    preset: str = "custom"
    info: dict = field(default_factory=dict)  # metrics, data hash, learning curves: see persistence
    calibration_floor: dict[str, float] = field(default_factory=dict)  # per target, label units (absent: 0)
    #: every member's forward pass in numpy (surrogate/forward.py); None: Keras' members predict
    forward: Forward | None = None

    def sigma(self, spread: np.ndarray) -> np.ndarray:
        """Calibrated std from the members' raw spread (one column per target)."""
        factor = np.array([self.calibration[t] for t in self.targets])
        floor = np.array([self.calibration_floor.get(t, 0.0) for t in self.targets])
        return factor * np.sqrt(spread**2 + floor**2)

    def _raw(self, feats: Features) -> tuple[np.ndarray, np.ndarray]:
        """Uncalibrated ensemble mean and spread (std across members) in label units."""
        if self.forward is not None:
            inputs = sparse_network_inputs(feats, self.config, self.descriptor_scaler)
            preds = np.stack([self.scaler.inverse(out) for out in self.forward(inputs)])
        else:  # a network built otherwise than surrogate/model.py builds it: Keras predicts
            from labloop.surrogate.model import predict_scaled  # loaded already: the members are Keras'

            inputs = network_inputs(feats, self.config, self.descriptor_scaler)
            preds = np.stack([self.scaler.inverse(predict_scaled(m, inputs)) for m in self.members])
        return preds.mean(axis=0), preds.std(axis=0)

    def predict_features(self, feats: Features, batch: int = 20000) -> tuple[np.ndarray, np.ndarray]:
        """Mean and calibrated std for featurised molecules, in batches to bound memory."""
        means, stds = [], []
        for i in range(0, len(feats), batch):
            m, s = self._raw(feats.subset(slice(i, i + batch)))
            means.append(m)
            stds.append(self.sigma(s))
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


def member_seed(seed: int, k: int) -> int:
    """Member k's seed: ``seed * 1000 + k`` folded below 2^31 - 1000, since Keras and numpy's legacy seeding
    take 32-bit seeds (the layers add up to ~100 to it) while a campaign's seed may be any number."""
    return (seed * 1000 + k) % (2**31 - 1000)


def fold_indices(n: int, folds: int, seed: int) -> list[np.ndarray]:
    """Shuffled, near-equal folds of range(n)."""
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(order, folds)]


def fit_calibration(y: np.ndarray, mean: np.ndarray, spread: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """(factor, floor) with sigma = factor * sqrt(spread^2 + floor^2) covering ``level`` of new errors.

    The floor maximises the Gaussian likelihood of the errors under variance a * (spread^2 + floor^2)
    (a profiled out; a grid over log floor from 1e-4 to 10x the error RMS). Where the spread does not rank
    the errors (a small slice, or members trained on little data that agree as much where they are wrong
    as where they are right) the likelihood keeps falling as the floor grows: a floor far above every spread
    makes sigma the same for every molecule, its scale carried by the factor, so the floor lands on the
    grid's top and only factor x floor (the smallest sigma) means anything. The factor is then the
    finite-sample conformal quantile of |error| / sqrt(spread^2 + floor^2) over 1.96: the
    ceil((n + 1) * level)-th smallest ratio, which covers at least ``level`` of exchangeable new
    molecules on average. NaN labels are ignored; no labels at all give (1, 0).
    """
    y, mean, spread = (np.asarray(a, dtype=float) for a in (y, mean, spread))
    ok = ~np.isnan(y)
    err, spread = mean[ok] - y[ok], np.maximum(spread[ok], 1e-12)
    if not len(err):
        return 1.0, 0.0
    rms = float(np.sqrt(np.mean(err**2))) or 1e-6
    floors = np.concatenate([[0.0], np.geomspace(1e-4, 10 * rms, 200)])
    var = spread[None, :] ** 2 + floors[:, None] ** 2
    a = np.mean(err[None, :] ** 2 / var, axis=1)
    nll = np.log(np.maximum(a, 1e-300)) + np.mean(np.log(var), axis=1)
    floor = float(floors[int(np.argmin(nll))])
    ratio = np.sort(np.abs(err) / np.sqrt(spread**2 + floor**2))
    k = min(len(ratio), math.ceil((len(ratio) + 1) * level))
    return float(ratio[k - 1] / Z95), floor


#: the calibration slice's aim: a smaller one's factor and floor are too uncertain to trust. The factor is the
#: ceil(0.95 (n + 1))-th smallest of n ratios (of 60, the third largest: one error sets every sigma), and on a
#: few dozen rows the floor's likelihood fit cannot tell whether the members' spread ranks the errors at all
#: (then the floor runs to its grid's top: :func:`fit_calibration`)
MIN_CALIBRATION_ROWS = 100


def calibration_size(n: int, fraction: float) -> int:
    """Rows kept aside for calibration: ``fraction`` of n, at least :data:`MIN_CALIBRATION_ROWS`, but at most a
    fifth of the data below 5 x that (a fifth of 300 molecules is 60): the members need most of a small
    table to learn anything, so its slice falls short of the aim, and ``surrogate train`` says so."""
    return max(round(fraction * n), min(MIN_CALIBRATION_ROWS, n // 5))


def network_inputs(feats: Features, config: ModelConfig, descriptor_scaler: LabelScaler | None) -> np.ndarray:
    """float32 network input: transformed fingerprints, then standardised, weighted descriptors (if any)."""
    Xt = transform_inputs(feats.X, config)
    D = _descriptor_inputs(feats, config, descriptor_scaler)
    return Xt if D is None else np.concatenate([Xt, D], axis=1)


def sparse_network_inputs(feats: Features, config: ModelConfig, descriptor_scaler: LabelScaler | None
                          ) -> csr_matrix:
    """:func:`network_inputs` as a sparse matrix, built from the fingerprints' non-zero counts alone (the
    dense float32 matrix and its conversion cost five times the prediction's first layer)."""
    X = csr_matrix(feats.X)
    X.data = transform_inputs(X.data, config)
    D = _descriptor_inputs(feats, config, descriptor_scaler)
    return X if D is None else hstack([X, csr_matrix(D.astype(np.float32))], format="csr")


def _descriptor_inputs(feats: Features, config: ModelConfig, descriptor_scaler: LabelScaler | None
                       ) -> np.ndarray | None:
    """The standardised, weighted descriptor columns of the network input (None without descriptors)."""
    if descriptor_scaler is None or not feats.D.shape[1]:
        return None
    D = descriptor_scaler.transform(feats.D)
    if config.descriptor_weight != 1.0:
        D *= np.float32(config.descriptor_weight)
    return D


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
    out_of_sample: np.ndarray | None = None,
) -> Ensemble:
    """Train K members on K folds of (X, Y) minus a calibration slice, then calibrate on that slice.

    ``Y`` holds the labels of ``feats``' molecules, one column per target, NaN where missing.
    ``out_of_sample``: positions in ``feats`` whose out-of-sample predictions are kept in
    ``info["out_of_sample"]`` (``positions``, and ``mean``/``sigma`` one row per position, one column per
    target): each by a model that never trained on it — the member whose validation fold held the row, or
    the whole ensemble for a row of the calibration slice — with the ensemble's calibrated sigma there. Why:
    an error measured on rows a network trained on says nothing about its error on new molecules
    (orchestrator/learning/models.py scores a retrained network on the measurements this way).
    """
    from labloop.surrogate.model import predict_scaled, train_member  # TensorFlow loads here, to train

    targets = list(targets)
    if folds < 2:
        raise InvalidInput(f"folds must be at least 2, got {folds}")
    if Y.ndim != 2 or Y.shape[1] != len(targets) or len(Y) != len(feats):
        raise InvalidInput("labels must be one column per target and one row per molecule")
    n = len(feats)
    if n < MIN_ROWS_PER_FOLD * folds:
        raise InvalidInput(f"{n} molecules are too few to train {folds} folds (need at least "
                           f"{MIN_ROWS_PER_FOLD * folds})")
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
        member = train_member(config, Xt[tr], Z[tr], Xt[va], Z[va], seed=member_seed(seed, k), on_epoch=hook)
        members.append(member.model)
        curves.append({"loss": [h[0] for h in member.history], "val_loss": [h[1] for h in member.history],
                       "best_epoch": member.best_epoch})
        oof[val_pos] = scaler.inverse(predict_scaled(member.model, Xt[va]))
        log.info("member %d/%d: best epoch %d", k + 1, folds, member.best_epoch + 1)

    ens = Ensemble(members, fingerprint, config, targets, scaler, dict.fromkeys(targets, 1.0), desc_scaler, preset,
                   forward=Forward.of(members))
    cal_mean, cal_std = ens._raw(feats.subset(cal))
    fitted = [fit_calibration(Y[cal, j], cal_mean[:, j], cal_std[:, j]) for j in range(len(targets))]
    ens.calibration = {t: f for t, (f, _) in zip(targets, fitted, strict=True)}
    ens.calibration_floor = {t: b for t, (_, b) in zip(targets, fitted, strict=True)}
    cal_sigma = ens.sigma(cal_std)
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
            "calibration_slice": {t: regression_metrics(Y[cal, j], cal_mean[:, j], cal_sigma[:, j])
                                  for j, t in enumerate(targets)},
        },
    }
    if out_of_sample is not None:
        mean = np.full((n, len(targets)), np.nan)
        sigma = np.full((n, len(targets)), np.nan)
        mean[fit], sigma[fit] = oof, ens.sigma(fit_std)
        mean[cal], sigma[cal] = cal_mean, cal_sigma
        wanted = np.asarray(out_of_sample, dtype=np.int64)
        ens.info["out_of_sample"] = {"positions": wanted.tolist(), "mean": mean[wanted].tolist(),
                                     "sigma": sigma[wanted].tolist()}
    return ens
