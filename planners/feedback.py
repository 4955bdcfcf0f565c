"""Feedback from the measurements: a calibration model from the surrogate's prediction to the measured
potential, refitted after every measurement so the next proposal already uses it.

Why: the surrogate predicts ``E = IE - 1.40`` from DFT data, and real potentials differ from that
systematically — solvation, which grows as the molecule shrinks (Born: ~1/radius ~ n_heavy^(-1/3)), the
reference electrode, the method's own bias. A handful of measurements pins that difference down long before
a retrained network could. The calibration is a Bayesian linear model (scikit-learn's ``BayesianRidge``) of
the residual ``measured - mu`` on a few cheap descriptors (:data:`DESCRIPTORS`), with weakly informative
priors (noise and coefficient scale about :data:`PRIOR_SCALE_V`) so that it behaves from the first
measurement on: one measurement shifts the predictions by its residual, more of them fit the slope.

Uncertainty of a calibrated prediction (V): ``sigma_cal^2 = sigma^2 + extra^2 + param^2`` where ``sigma``
is the surrogate's own (calibrated) sigma for that molecule, ``param`` the calibration's parameter
uncertainty at that molecule, and ``extra`` the scatter of the residuals the surrogate's sigma does not
explain (their fitted noise variance minus the mean sigma^2 of the measured molecules, floored at zero).

The calibrated model is a pure function of the model version and the observations, so a resumed campaign
rebuilds exactly the calibration the uninterrupted one had.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rdkit import Chem
from sklearn.linear_model import BayesianRidge

from labloop.planners.base import ModelView, Observation

log = logging.getLogger(__name__)

#: the cheap descriptors the calibration may use, with the spread that scales each to about unit size
DESCRIPTORS: dict[str, float] = {
    "inverse_cube_root_heavy_atoms": 0.05,  # Born radius term: 1/n^(1/3) spans ~0.25-0.45
    "heteroatom_fraction": 0.15,  # N, O, S, halogens... among heavy atoms: polar molecules solvate more
}
#: the descriptor that measures size (the first batch is spread over it: :mod:`.design`)
SIZE_DESCRIPTOR = "inverse_cube_root_heavy_atoms"
#: prior scale (V) of the residual noise and of the coefficients per unit of a scaled descriptor
PRIOR_SCALE_V = 0.2
#: how many pseudo-observations that prior is worth
PRIOR_WEIGHT = 4.0


def cheap_descriptors(smiles: str) -> tuple[float, float]:
    """:data:`DESCRIPTORS` of one molecule; NaN for SMILES RDKit cannot read (parsed without
    sanitising: heavy atoms and elements need no aromaticity perception, and this runs on whole libraries)."""
    mol = Chem.MolFromSmiles(smiles, sanitize=False)
    if mol is None or mol.GetNumAtoms() == 0:
        return math.nan, math.nan
    heavy = [a.GetAtomicNum() for a in mol.GetAtoms() if a.GetAtomicNum() > 1]
    if not heavy:
        return math.nan, math.nan
    return len(heavy) ** (-1 / 3), sum(z != 6 for z in heavy) / len(heavy)


@dataclass
class DescriptorTable:
    """Cheap descriptors per SMILES, computed once (a library's are reused by every proposal)."""

    _rows: dict[str, tuple[float, float]] = field(default_factory=dict)

    def __call__(self, smiles: Sequence[str]) -> np.ndarray:
        rows = self._rows
        for s in smiles:
            if s not in rows:
                rows[s] = cheap_descriptors(s)
        return np.array([rows[s] for s in smiles], dtype=float).reshape(len(smiles), len(DESCRIPTORS))


def _scaled(descriptors: np.ndarray) -> np.ndarray:
    return descriptors / np.array(list(DESCRIPTORS.values()))


@dataclass(frozen=True)
class Calibration:
    """A fitted calibration (see the module docstring); ``n`` measurements, None model before the first."""

    n: int
    regression: BayesianRidge | None = None
    extra_var: float = 0.0
    fit_mae_v: float | None = None

    def apply(self, mu: np.ndarray, sigma: np.ndarray, descriptors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated (mean, sigma) for molecules with surrogate ``mu``/``sigma`` and ``descriptors``."""
        mu, sigma = np.asarray(mu, dtype=float), np.asarray(sigma, dtype=float)
        if self.regression is None:
            return mu, sigma
        X = np.nan_to_num(_scaled(descriptors))  # an unparsable molecule has NaN mu anyway
        shift, std = self.regression.predict(X, return_std=True)
        param_var = np.maximum(std**2 - 1 / self.regression.alpha_, 0.0)
        return mu + shift, np.sqrt(sigma**2 + self.extra_var + param_var)

    def summary(self) -> dict[str, Any]:
        """What the journal keeps of it."""
        if self.regression is None:
            return {"n_measurements": 0}
        reg = self.regression
        return {"n_measurements": self.n, "fit_mae_v": self.fit_mae_v, "intercept_v": float(reg.intercept_),
                "coefficients_v": dict(zip(DESCRIPTORS, (float(c) for c in reg.coef_), strict=True)),
                "noise_sd_v": float(reg.alpha_**-0.5), "extra_sd_v": math.sqrt(self.extra_var)}


def fit_calibration(mu: np.ndarray, sigma: np.ndarray, descriptors: np.ndarray, measured: np.ndarray
                    ) -> Calibration:
    """Fit the residual model on molecules with surrogate ``mu``/``sigma`` and ``measured`` potentials;
    rows with a NaN anywhere (unreadable molecules) are left out."""
    mu, sigma, measured = (np.asarray(a, dtype=float) for a in (mu, sigma, measured))
    ok = np.isfinite(mu) & np.isfinite(sigma) & np.isfinite(measured) & np.isfinite(descriptors).all(axis=1)
    if not ok.any():
        return Calibration(0)
    residual = measured[ok] - mu[ok]
    shape, rate = PRIOR_WEIGHT / 2, PRIOR_WEIGHT * PRIOR_SCALE_V**2 / 2  # Gamma prior on the precisions
    regression = BayesianRidge(alpha_1=shape, alpha_2=rate, lambda_1=shape, lambda_2=rate)
    X = _scaled(descriptors[ok])
    regression.fit(X, residual)
    extra_var = max(1 / regression.alpha_ - float(np.mean(sigma[ok] ** 2)), 0.0)
    fit_mae = float(np.mean(np.abs(residual - regression.predict(X))))
    return Calibration(int(ok.sum()), regression, extra_var, fit_mae)


class CalibratedModel:
    """A :class:`ModelView` whose predictions pass through the calibration fitted on ``observations``."""

    def __init__(self, model: ModelView, observations: Sequence[Observation], descriptors: DescriptorTable
                 ) -> None:
        self.model = model
        self.version = model.version
        self.descriptors = descriptors
        measured = [o for o in observations if o.potential_v is not None]
        smiles = [o.smiles for o in measured]
        mu, sigma = model.predict(smiles) if smiles else ([], [])
        self.calibration = fit_calibration(np.array(mu), np.array(sigma),
                                           descriptors(smiles), np.array([o.potential_v for o in measured]))
        if self.calibration.n:
            log.info("calibration on %d measurements: %s", self.calibration.n, self.calibration.summary())

    def predict(self, smiles: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        mu, sigma = self.model.predict(smiles)
        return self.calibration.apply(np.asarray(mu, dtype=float), np.asarray(sigma, dtype=float),
                                      self.descriptors(smiles))
