"""Acquisition functions: how much a planner wants to measure a molecule, given the calibrated prediction of
its potential (mean ``mu``, standard deviation ``sigma``, V vs Li/Li+). Higher is always better here.

Why scikit-optimize's functions and not our own formulas: ``gaussian_ei``, ``gaussian_pi`` and
``gaussian_lcb`` are the reference implementations the Bayesian-optimisation literature and users know;
labloop only adapts them. They expect a *model* with ``predict(X, return_std=True)`` and minimise, while a
pool planner already holds one mean and sigma per molecule and may maximise: :class:`_Predictions` serves the
arrays to skopt by index, and a maximise goal is handed over as the minimisation of ``-mu``. The window
goal has no skopt counterpart: its acquisition is the probability that the potential lands inside the
window, ``Phi((high - mu) / sigma) - Phi((low - mu) / sigma)``.

skopt is imported in the functions that call it, as in planners/conditions.py, which says why.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
from scipy.stats import norm

log = logging.getLogger(__name__)

Acquisition = Literal["ei", "pi", "lcb", "window_probability", "mean"]
Goal = Literal["maximize", "minimize", "window"]

#: exploration margin of EI and PI (V): skopt's default
XI_V = 0.01
#: LCB's weight on sigma: skopt's default (a 97.5% one-sided bound)
KAPPA = 1.96
#: the smallest sigma used: a zero sigma would make EI/PI/window probability undefined
MIN_SIGMA_V = 1e-6


class _Predictions:
    """A 'model' for skopt whose input is a row index into fixed arrays of mean and sigma."""

    def __init__(self, mu: np.ndarray, sigma: np.ndarray) -> None:
        self.mu, self.sigma = mu, sigma

    def predict(self, X: np.ndarray, return_std: bool = False) -> tuple[np.ndarray, np.ndarray] | np.ndarray:
        rows = np.asarray(X, dtype=int).ravel()
        return (self.mu[rows], self.sigma[rows]) if return_std else self.mu[rows]


def _as_minimisation(mu: np.ndarray, goal: Goal) -> np.ndarray:
    """skopt minimises: a maximise goal is the minimisation of -mu."""
    if goal == "window":
        raise ValueError("ei, pi and lcb need goal maximize or minimize; a window goal uses window_probability")
    return -mu if goal == "maximize" else mu


def _skopt(function, mu: np.ndarray, sigma: np.ndarray, **kwargs: float) -> np.ndarray:
    index = np.arange(len(mu)).reshape(-1, 1)
    return np.asarray(function(index, _Predictions(mu, np.maximum(sigma, MIN_SIGMA_V)), **kwargs), dtype=float)


def expected_improvement(mu: np.ndarray, sigma: np.ndarray, best_v: float, goal: Goal, xi: float = XI_V
                         ) -> np.ndarray:
    """E[max(0, improvement over the best measured potential ``best_v`` - xi)] (skopt ``gaussian_ei``)."""
    from skopt.acquisition import gaussian_ei

    y = _as_minimisation(mu, goal)
    y_best = -best_v if goal == "maximize" else best_v
    return _skopt(gaussian_ei, y, sigma, y_opt=y_best, xi=xi)


def probability_of_improvement(mu: np.ndarray, sigma: np.ndarray, best_v: float, goal: Goal, xi: float = XI_V
                               ) -> np.ndarray:
    """P(beating the best measured potential ``best_v`` by more than xi) (skopt ``gaussian_pi``)."""
    from skopt.acquisition import gaussian_pi

    y = _as_minimisation(mu, goal)
    y_best = -best_v if goal == "maximize" else best_v
    return _skopt(gaussian_pi, y, sigma, y_opt=y_best, xi=xi)


def confidence_bound(mu: np.ndarray, sigma: np.ndarray, goal: Goal, kappa: float = KAPPA) -> np.ndarray:
    """The optimistic bound, higher is better: ``mu + kappa sigma`` to maximise, ``-(mu - kappa sigma)`` to
    minimise (minus skopt's ``gaussian_lcb`` of the minimisation)."""
    from skopt.acquisition import gaussian_lcb

    return -_skopt(gaussian_lcb, _as_minimisation(mu, goal), sigma, kappa=kappa)


def window_probability(mu: np.ndarray, sigma: np.ndarray, window_v: tuple[float, float]) -> np.ndarray:
    """P(low <= potential <= high) under N(mu, sigma^2)."""
    low, high = window_v
    s = np.maximum(sigma, MIN_SIGMA_V)
    return norm.cdf((high - mu) / s) - norm.cdf((low - mu) / s)


def mean_score(mu: np.ndarray, goal: Goal, window_v: tuple[float, float] | None = None) -> np.ndarray:
    """The greedy score, the mean alone: mu, -mu, or minus the distance of mu from the window's centre."""
    if goal == "maximize":
        return mu
    if goal == "minimize":
        return -mu
    assert window_v is not None
    return -np.abs(mu - (window_v[0] + window_v[1]) / 2)


def acquire(kind: Acquisition, mu: np.ndarray, sigma: np.ndarray, goal: Goal, *,
            window_v: tuple[float, float] | None = None, best_v: float | None = None) -> np.ndarray:
    """The acquisition ``kind`` for every molecule; NaN where mu or sigma is NaN (unreadable molecules).

    EI and PI need ``best_v``, the best potential measured so far; before the first measurement they
    fall back to the best *predicted* potential, so the first batch is still chosen by the model.
    """
    mu, sigma = np.asarray(mu, dtype=float), np.asarray(sigma, dtype=float)
    ok = np.isfinite(mu) & np.isfinite(sigma)
    out = np.full(len(mu), np.nan)
    if not ok.any():
        return out
    m, s = mu[ok], sigma[ok]
    if kind == "window_probability":
        if window_v is None:
            raise ValueError("window_probability needs the objective's window")
        out[ok] = window_probability(m, s, window_v)
    elif kind == "mean":
        out[ok] = mean_score(m, goal, window_v)
    elif kind == "lcb":
        out[ok] = confidence_bound(m, s, goal)
    elif kind in ("ei", "pi"):
        if best_v is None:
            best_v = float(m.max() if goal == "maximize" else m.min())
        function = expected_improvement if kind == "ei" else probability_of_improvement
        out[ok] = function(m, s, best_v, goal)
    else:
        raise ValueError(f"unknown acquisition {kind!r}")
    return out
