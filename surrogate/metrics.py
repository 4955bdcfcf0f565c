"""Regression and uncertainty metrics, one definition shared by training, `evaluate` and the benchmark."""

from __future__ import annotations

import numpy as np

#: two-sided 95% normal quantile
Z95 = 1.959963984540054


def regression_metrics(y: np.ndarray, mean: np.ndarray, std: np.ndarray | None = None) -> dict[str, float]:
    """MAE, RMSE, R^2, error std and (with ``std``) the share of errors inside mean +/- 1.96 std."""
    y, mean = np.asarray(y, dtype=float), np.asarray(mean, dtype=float)
    ok = ~np.isnan(y)
    y, mean = y[ok], mean[ok]
    err = mean - y
    ss_tot = float(((y - y.mean()) ** 2).sum()) if len(y) else 0.0
    out = {
        "n": len(y),
        "mae": float(np.abs(err).mean()) if len(y) else float("nan"),
        "rmse": float(np.sqrt((err**2).mean())) if len(y) else float("nan"),
        "r2": 1.0 - float((err**2).sum()) / ss_tot if ss_tot > 0 else float("nan"),
        "error_std": float(err.std()) if len(y) else float("nan"),
    }
    if std is not None:
        s = np.asarray(std, dtype=float)[ok]
        out["coverage95"] = float((np.abs(err) <= Z95 * s).mean()) if len(y) else float("nan")
        out["mean_std"] = float(s.mean()) if len(y) else float("nan")
    return out


def calibration_factor(y: np.ndarray, mean: np.ndarray, std: np.ndarray, level: float = 0.95) -> float:
    """Factor f such that mean +/- 1.96 * f * std covers ``level`` of the errors in (y, mean, std).

    It is the ``level`` quantile of |error| / std divided by 1.96: distribution-free, so heavy-tailed
    errors are covered honestly instead of by a Gaussian assumption.
    """
    y, mean, std = (np.asarray(a, dtype=float) for a in (y, mean, std))
    ok = ~np.isnan(y)
    ratio = np.abs(mean[ok] - y[ok]) / np.maximum(std[ok], 1e-12)
    if not len(ratio):
        return 1.0
    return float(np.quantile(ratio, level) / Z95)
