"""Feedback from the measurements: the surrogate's predictions corrected by what the measured potentials
show it gets wrong, refitted before every proposal so the next one already uses it.

Why: the surrogate predicts ``E = IE - 1.40`` from DFT data, and real potentials differ from that
systematically, in a form nobody knows in advance (solvation, functional groups, the reference electrode,
the method's bias). The correction is a residual model of ``measured - mu`` that assumes no form
(:mod:`.residual_gp`: an offset, a linear mean on generic descriptors, a smooth function of the size, group
additivity and a Gaussian process over Tanimoto similarity, hyperparameters by marginal likelihood), chosen
among simpler learners by leave-one-out predictive log-likelihood at every calibration. The surrogate it
corrects is whichever model version is newest: the prior, or a network retrained on the measurements
(:mod:`labloop.orchestrator.learning.models`), whose own learning then shows as a smaller residual and the
offset-only learner winning.

Uncertainty of a calibrated prediction (V): ``sigma_cal^2 = var_residual(x) + share * sigma(x)^2 +
noise^2``: the residual model's posterior variance at the molecule, the part of the surrogate's own
(calibrated) sigma the measurements say behaves as independent error, and the measurement noise. Before the
first measurement it is ``sigma(x)^2 + OFFSET_PRIOR_V^2``: the surrogate's sigma says how its predictions
of two molecules differ, not where the lab's potentials lie (its DFT scale can be off by volts), and a first
batch journalled as ``6.28 +/- 0.26`` for a molecule measured at 4.58 read as a confident miss. The first
batch is a design spread over size that takes the surest molecule of each stratum (:mod:`.design`), which
the common term leaves as it was.

The calibrated model is a pure function of the model version and the observations (in journal order), so a
resumed campaign rebuilds exactly the calibration the uninterrupted one had. Interface for the runner:
``CalibratedModel(model, observations, descriptors)`` is the :class:`ModelView` to propose with, and
``.calibration.summary()`` what to journal (which learner won, every learner's leave-one-out score, the
winner's leave-one-out error).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rdkit import Chem, RDLogger

from labloop.core.text import plural
from labloop.planners.base import ModelView, Observation, OutOfSampleView
from labloop.planners.residual_gp import (
    DESCRIPTORS,
    LEARNERS,
    OFFSET_PRIOR_V,
    SIZE_GRID,
    Censored,
    Hyper,
    ResidualFit,
    TanimotoRows,
    cheap_descriptors,
    environments,
    features,
    fit_hyper,
    hyper_prefix,
    mol_environments,
    scaled_descriptors,
    select,
)
from labloop.planners.similarity import SimilarityIndex

log = logging.getLogger(__name__)

#: hyperparameter fits kept between calibrations (:attr:`DescriptorTable.hypers`): the latest of each of the
#: model outputs a campaign calibrates (orchestrator/learning/learner.py: up to two), with room to spare
HYPER_MEMO = 4
#: molecules predicted at a time (the kernel block of a chunk with 200 measurements: 13 MB)
CHUNK = 8192
#: the descriptor that measures size (the first batch is spread over it: :mod:`.design`)
SIZE_DESCRIPTOR = "heavy_atoms"
#: atom environments (radius-1 Morgan bits) per heavy atom, for the group term's prior variance when only the
#: descriptors are at hand (:class:`DescriptorCalibration`): 0.89 on average over 2,000 molecules of the
#: scale benchmark's library, 1.44 at the 99th percentile; 1 errs towards the larger variance
ENVIRONMENTS_PER_HEAVY_ATOM = 1.0

__all__ = ["DESCRIPTORS", "SIZE_DESCRIPTOR", "CalibratedModel", "Calibration", "DescriptorCalibration",
           "DescriptorTable", "cheap_descriptors", "counted", "describe", "fit_calibration"]


@dataclass
class DescriptorTable:
    """What the feedback knows about each molecule, computed once per campaign: cheap descriptors per
    SMILES, and Tanimoto similarities of measured molecules to the library (:class:`TanimotoRows`)."""

    similarity: SimilarityIndex = field(default_factory=SimilarityIndex)
    _rows: dict[str, tuple[float, ...]] = field(default_factory=dict)
    _environments: dict[str, np.ndarray] = field(default_factory=dict)
    _tanimoto: TanimotoRows | None = None
    #: the hyperparameters of the latest fit, keyed by the measurements they were fitted on (memoised:
    #: :func:`labloop.planners.residual_gp.hyper_prefix`)
    hypers: dict[tuple[Any, ...], dict[str, Hyper]] = field(default_factory=dict)

    def __call__(self, smiles: Sequence[str]) -> np.ndarray:
        rows = self._rows
        for s in smiles:
            if s not in rows:
                rows[s] = cheap_descriptors(s)
        return np.array([rows[s] for s in smiles], dtype=float).reshape(len(smiles), len(DESCRIPTORS))

    def features(self, smiles: Sequence[str]) -> np.ndarray:
        """The residual learners' input per molecule (:func:`labloop.planners.residual_gp.features`)."""
        packed = self._environments
        for s in smiles:
            if s not in packed:
                packed[s] = environments(s)
        return features(self(smiles), np.array([packed[s] for s in smiles], dtype=np.uint8))

    def add(self, smiles: Sequence[str], descriptors: np.ndarray) -> None:
        """Molecules about to be asked about, with their cheap descriptors known already (as stored beside
        their predictions, :func:`labloop.planners.shard_pool.describe`): each new one is parsed once for
        both its atom environments and its similarity fingerprint."""
        RDLogger.DisableLog("rdApp.*")
        for s, row in zip(smiles, np.asarray(descriptors, dtype=float).tolist(), strict=True):
            self._rows.setdefault(s, tuple(row))
            if s not in self._environments:
                mol = Chem.MolFromSmiles(s)
                self._environments[s] = mol_environments(mol)
                self.similarity.add(s, mol)

    def tanimoto(self, queries: Sequence[str], references: Sequence[str]) -> np.ndarray:
        if self._tanimoto is None:
            self._tanimoto = TanimotoRows(self.similarity)
        return self._tanimoto.matrix(queries, references)

    def tanimoto_among(self, smiles: Sequence[str]) -> np.ndarray:
        """Tanimoto similarities among a few molecules (a batch's shortlist)."""
        if self._tanimoto is None:
            self._tanimoto = TanimotoRows(self.similarity)
        return self._tanimoto.among(smiles)


@dataclass(frozen=True)
class Calibration:
    """A fitted calibration on ``n`` measurements (``fit`` None before the first, or the first failed scan's
    bound): the winning learner, every learner's leave-one-out log-likelihood, and the in-sample error of the
    winner (None with only bounds)."""

    n: int
    fit: ResidualFit | None = None
    scores: dict[str, float] = field(default_factory=dict)
    fit_mae_v: float | None = None

    def residual(self, smiles: Sequence[str], table: DescriptorTable) -> tuple[np.ndarray, np.ndarray]:
        """Posterior (mean, latent variance) of the residual at ``smiles``; zeros before any measurement."""
        if self.fit is None:
            return np.zeros(len(smiles)), np.zeros(len(smiles))
        mean, var = np.empty(len(smiles)), np.empty(len(smiles))
        for start in range(0, len(smiles), CHUNK):  # bounded memory over a big library
            part = smiles[start:start + CHUNK]
            cross = (table.tanimoto(part, self.fit.smiles) if self.fit.hyper.amplitude > 0
                     else np.zeros((len(part), len(self.fit.smiles))))
            mean[start:start + len(part)], var[start:start + len(part)] = self.fit.predict(table.features(part), cross)
        return mean, var

    def apply(self, mu: np.ndarray, sigma: np.ndarray, smiles: Sequence[str], table: DescriptorTable
              ) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated (mean, sigma) for molecules with surrogate ``mu``/``sigma``; before any measurement, the
        surrogate's mean with the offset's prior added to its sigma (the module's docstring)."""
        mu, sigma = np.asarray(mu, dtype=float), np.asarray(sigma, dtype=float)
        if self.fit is None:
            return mu, uncalibrated_sigma(sigma)
        shift, var = self.residual(smiles, table)
        return mu + shift, np.sqrt(var + self.fit.noise_var(sigma))

    def posterior(self, mu: np.ndarray, sigma: np.ndarray, smiles: Sequence[str], table: DescriptorTable
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Joint posterior over a few molecules with surrogate ``mu``/``sigma``, for batch acquisition: (mean,
        latent covariance, the variance a measurement adds to each) of the potential. Before any measurement
        the latent covariance is the offset's prior, common to all molecules, and the surrogate's errors are
        taken as independent."""
        mu, sigma = np.asarray(mu, dtype=float), np.asarray(sigma, dtype=float)
        fit = self.fit
        if fit is None:
            return mu, np.full((len(smiles), len(smiles)), OFFSET_PRIOR_V**2), sigma**2
        d = table.features(smiles)
        gp = fit.hyper.amplitude > 0
        cross = table.tanimoto(smiles, fit.smiles) if gp else np.zeros((len(smiles), len(fit.smiles)))
        among = table.tanimoto_among(smiles) if gp else np.zeros((len(smiles), len(smiles)))
        shift, cov = fit.joint(d, cross, among)
        return mu + shift, cov, fit.noise_var(sigma)

    def by_descriptors(self) -> DescriptorCalibration:
        """The part of this calibration the cheap descriptors alone can apply (:class:`DescriptorCalibration`)."""
        size = 1 + len(DESCRIPTORS) + SIZE_GRID
        if self.fit is None:
            return DescriptorCalibration(np.zeros(size), np.zeros((size, size)), fitted=False)
        h = self.fit.hyper
        mean, cov = self.fit.descriptor_posterior()
        return DescriptorCalibration(mean, cov, h.group_sd**2 * ENVIRONMENTS_PER_HEAVY_ATOM, h.amplitude**2,
                                     h.surrogate_share, h.noise**2)

    def summary(self) -> dict[str, Any]:
        """What the journal keeps of it: which learner won, every learner's leave-one-out log-likelihood,
        the winner's leave-one-out RMSE and in-sample MAE, its offset, slopes and hyperparameters."""
        if self.fit is None:
            return {"n_measurements": 0}
        return {"n_measurements": self.n, "n_bounds": self.fit.bounds, "learner": self.fit.learner,
                "loo_log_likelihood": self.scores,
                "loo_rmse_v": self.fit.loo_rmse_v, "fit_mae_v": self.fit_mae_v, **self.fit.summary()}


@dataclass(frozen=True)
class DescriptorCalibration:
    """A :class:`Calibration` as far as the cheap descriptors carry it: a vector of 208 numbers and their
    covariance (350 kB), sent to every shard.

    The residual's mean is the posterior mean of the offset, the descriptor weights and the size function
    tabulated by heavy atoms (:meth:`ResidualFit.descriptor_posterior`) applied to the descriptors; the
    group and GP terms' means are left out (they need each molecule's fingerprints). The variance is that
    posterior's variance, plus the *prior* variance of the group and GP terms (``group_sd^2`` per atom
    environment, estimated from the heavy atoms by :data:`ENVIRONMENTS_PER_HEAVY_ATOM`, and
    ``amplitude^2``), plus the surrogate's share and the noise as in :meth:`Calibration.apply`. So where the
    learner is ``offset`` or ``linear`` it equals :meth:`Calibration.apply` (to rounding), and where the
    group or GP term could move a molecule it is as uncertain as they allow before any measurement.
    """

    #: posterior mean of (offset, weights of the scaled descriptors, size function at 0..SIZE_GRID-1 heavy atoms)
    weights: np.ndarray
    cov: np.ndarray  # their posterior covariance
    group_var_per_heavy_atom: float = 0.0
    gp_var: float = 0.0
    surrogate_share: float = 1.0
    noise_var: float = 0.0
    fitted: bool = True  # False before the first measurement: the surrogate's, with the offset's prior

    def apply(self, mu: np.ndarray, sigma: np.ndarray, descriptors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean, sigma) for molecules with surrogate ``mu``/``sigma`` and :data:`DESCRIPTORS` ``descriptors``."""
        mu, sigma = np.asarray(mu, dtype=float), np.asarray(sigma, dtype=float)
        if not self.fitted:
            return mu, uncalibrated_sigma(sigma)
        descriptors = np.asarray(descriptors, dtype=float)
        n = 1 + len(DESCRIPTORS)
        phi = np.hstack([np.ones((len(mu), 1)), scaled_descriptors(descriptors)])
        size = np.nan_to_num(descriptors[:, list(DESCRIPTORS).index(SIZE_DESCRIPTOR)])  # unreadable: 0, as learnt
        k = n + np.clip(np.rint(size).astype(int), 0, SIZE_GRID - 1)  # each molecule's column of the size table
        cov = self.cov
        var = np.sum((phi @ cov[:n, :n]) * phi, axis=1) + 2 * np.sum(phi * cov[:n][:, k].T, axis=1) + cov[k, k]
        var = np.maximum(var, 0.0) + self.gp_var + self.group_var_per_heavy_atom * size
        shift = phi @ self.weights[:n] + self.weights[k]
        return mu + shift, np.sqrt(var + self.surrogate_share * sigma**2 + self.noise_var)


def uncalibrated_sigma(sigma: np.ndarray) -> np.ndarray:
    """The sigma of a prediction before any measurement: the surrogate's, and the unknown offset common to all
    molecules (:data:`OFFSET_PRIOR_V`, the residual model's prior of it)."""
    return np.sqrt(np.asarray(sigma, dtype=float) ** 2 + OFFSET_PRIOR_V**2)


def _readable(smiles: Sequence[str], table: DescriptorTable, *columns: np.ndarray) -> np.ndarray:
    """Rows with every value finite and descriptors RDKit could compute (unreadable molecules are left out)."""
    ok = np.isfinite(table(smiles)).all(axis=1)
    for column in columns:
        ok &= np.isfinite(column)
    return ok


def fit_calibration(smiles: Sequence[str], mu: np.ndarray, sigma: np.ndarray, measured: np.ndarray,
                    table: DescriptorTable, bounds: Sequence[tuple[str, float, int, float, float]] = ()
                    ) -> Calibration:
    """Fit the residual model on molecules with surrogate ``mu``/``sigma`` and ``measured`` potentials, and
    on failed scans' ``bounds`` (smiles, bound, +1 above / -1 below, the surrogate's mu and sigma there:
    :class:`labloop.planners.residual_gp.Censored`); rows with a NaN anywhere (unreadable molecules) are left
    out. The hyperparameters and the learners' scores are the measured residuals' alone."""
    mu, sigma, measured = (np.asarray(a, dtype=float) for a in (mu, sigma, measured))
    ok = _readable(smiles, table, mu, sigma, measured)
    kept = [s for s, keep in zip(smiles, ok, strict=True) if keep]
    censored = _censored(bounds, kept, table)
    if not kept and not censored:
        return Calibration(0)
    r, d, s = measured[ok] - mu[ok], table.features(kept), sigma[ok]
    tanimoto = table.tanimoto(kept, kept)
    h = hyper_prefix(len(kept))
    key = (tuple(kept[:h]), r[:h].tobytes(), s[:h].tobytes())
    hypers = table.hypers.get(key)
    if hypers is None:
        hypers = {name: fit_hyper(names, r[:h], d[:h], tanimoto[:h, :h], s[:h]) for name, names in LEARNERS.items()}
        # only the latest few: a campaign's next calibration extends them (one per model output it scores)
        table.hypers = {**dict(list(table.hypers.items())[1 - HYPER_MEMO:]), key: hypers}
    best, scores = select(r, d, tanimoto, s, kept, hypers, censored=censored)
    calibration = Calibration(len(kept), best, scores)
    shift, _ = calibration.residual(kept, table)
    return Calibration(len(kept), best, scores, float(np.mean(np.abs(r - shift))) if kept else None)


def _censored(bounds: Sequence[tuple[str, float, int, float, float]], measured: Sequence[str],
              table: DescriptorTable) -> Censored | None:
    """The readable ``bounds`` as the residual learners take them, None when there are none."""
    if not bounds:
        return None
    smiles, bound, side, mu, sigma = (list(c) for c in zip(*bounds, strict=True))
    ok = _readable(smiles, table, np.asarray(bound, dtype=float), np.asarray(mu, dtype=float),
                   np.asarray(sigma, dtype=float))
    if not ok.any():
        return None
    kept = [s for s, keep in zip(smiles, ok, strict=True) if keep]
    return Censored(kept, (np.asarray(bound, dtype=float) - np.asarray(mu, dtype=float))[ok],
                    np.asarray(side, dtype=float)[ok], table.features(kept), np.asarray(sigma, dtype=float)[ok],
                    table.tanimoto(kept, [*measured, *kept]))


class CalibratedModel:
    """A :class:`ModelView` whose predictions pass through the calibration fitted on ``observations``
    (on the model's out-of-sample predictions of them when it has those: :class:`OutOfSampleView`).
    ``column`` and ``offset_v`` are the model's (which stored prediction it reads), None when it has none."""

    def __init__(self, model: ModelView, observations: Sequence[Observation], descriptors: DescriptorTable
                 ) -> None:
        self.model = model
        self.version = model.version
        self.descriptors = descriptors
        self.column: str | None = getattr(model, "column", None)
        self.offset_v: float | None = getattr(model, "offset_v", None)
        measured = [o for o in observations if o.potential_v is not None]
        bounded = [(o.smiles, *o.bound) for o in observations if o.bound is not None]
        smiles = [o.smiles for o in measured]
        fitted_on = model.out_of_sample if isinstance(model, OutOfSampleView) else model.predict
        mu, sigma = fitted_on(smiles + [b[0] for b in bounded]) if smiles or bounded else ([], [])
        n = len(smiles)
        self.calibration = fit_calibration(smiles, np.array(mu[:n]), np.array(sigma[:n]),
                                           np.array([o.potential_v for o in measured]), descriptors,
                                           [(*b, m, s) for b, m, s in zip(bounded, mu[n:], sigma[n:], strict=True)])
        if self.calibration.fit is not None:
            log.info("calibration on %s: %s; leave-one-out log-likelihoods %s", counted(self.calibration),
                     describe(self.calibration), self.calibration.scores)

    def predict(self, smiles: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        mu, sigma = self.model.predict(smiles)
        return self.calibration.apply(np.asarray(mu, dtype=float), np.asarray(sigma, dtype=float), smiles,
                                      self.descriptors)

    def posterior(self, smiles: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Joint posterior over a few molecules, for batch acquisition: (mean, latent covariance, the
        variance a measurement adds to each) of the potential; a diagonal covariance before any
        measurement (the surrogate's errors are taken as independent)."""
        mu, sigma = self.model.predict(smiles)
        return self.calibration.posterior(mu, sigma, smiles, self.descriptors)


def describe(calibration: Calibration) -> str:
    """One line for logs and the journal's message: which learner won and its leave-one-out error."""
    if calibration.fit is None:
        return "no measurement yet"
    if not calibration.n:
        return f"{calibration.fit.learner}, on bounds alone (nothing measured to score it on)"
    return f"{calibration.fit.learner} won by leave-one-out (LOO RMSE {calibration.fit.loo_rmse_v:.3f} V)"


def counted(calibration: Calibration) -> str:
    """What a calibration was fitted on, in words: "12 measurements and 3 bounds (the wave beyond a scan's end)"."""
    said = f"{calibration.n} {plural(calibration.n, 'measurement')}"
    bounds = calibration.fit.bounds if calibration.fit is not None else 0
    return f"{said} and {bounds_said(bounds)}" if bounds else said


def bounds_said(n: int) -> str:
    """``3 bounds (the wave beyond a scan's end)``: a failed scan's, or a past table's ``>5.1``, which said "from failed
    scans" of a campaign that had none (a chemist's trial), then "no wave within a scan", which a newcomer read as the
    failures with no wave at all, which bound nothing."""
    return f"{n} {plural(n, 'bound')} (the wave beyond a scan's end)"
