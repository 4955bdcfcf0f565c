"""Residual models: what the measurements say the surrogate gets wrong, learnt without assuming its form.

Why a Gaussian process on the residual: the surrogate predicts ``E = IE - 1.40`` from DFT data, and a lab's
potentials differ from that by an error of unknown form — solvation, functional groups the method gets
wrong, ion pairing, the reference electrode. A fixed regression on descriptors chosen for one form learns
that form and nothing else. Here the residual ``r = measured - mu`` (``mu``: the surrogate's prediction)
is modelled as

    r(x) = b + w . d(x) + f(n(x)) + u . e(x) + g(x) + eps,

- ``b`` ~ N(0, :data:`OFFSET_PRIOR_V`^2): an offset common to all molecules (the reference, the method);
- ``w . d(x)``: a linear mean on a few cheap, generic descriptors ``d`` (:data:`DESCRIPTORS`: heavy atoms,
  rings, heteroatom counts, each scaled to about unit size), ``w`` ~ N(0, ``weight_sd``^2 I);
- ``f`` ~ GP(0, ``size_amplitude``^2 exp(-(n - n')^2 / (2 ``size_length``^2))) over the molecule's size
  ``n`` (heavy atoms / 10, the scaled first descriptor): an error that changes smoothly but not linearly
  with size, as solvation and ion pairing do, without assuming which curve;
- ``u . e(x)``: group additivity, the chemist's generic model of a property: one contribution per atom
  environment the molecule has (``e``: the bits of a Morgan radius-1 fingerprint, 1,024 bits), ``u`` ~
  N(0, ``group_sd``^2 I);
- ``g`` ~ GP(0, ``amplitude``^2 exp((T(x, y) - 1) / ``length``)), ``T`` the Tanimoto similarity of ECFP4
  fingerprints (:mod:`.similarity`): similar molecules have similar errors, whatever the cause (the
  kernel is positive definite because ``T`` is and the exponential of a kernel is one);
- ``eps`` ~ N(0, ``surrogate_share`` sigma(x)^2 + ``noise``^2): the surrogate's own error (sigma: its
  calibrated uncertainty, of which the data decide the share that behaves as independent noise) and the
  measurement's.

``b``, ``w``, ``f`` and ``u`` are integrated out, so the whole model is one Gaussian process whose covariance
is the sum of the kernels. The hyperparameters (``weight_sd``, ``size_amplitude``, ``size_length``,
``group_sd``, ``amplitude``, ``length``, ``surrogate_share``, ``noise``) are set by maximising the marginal
likelihood times weak log-normal priors (:data:`HYPER_PRIORS`, chosen before any benchmark but the size
function's, which came later, on tuning seeds: they keep a fit on four measurements sane; the variants
tried on tuning seeds: bench/RESULTS.md, "Tuning the residual model's priors" and the sections after it),
from one fixed start with L-BFGS-B, so a fit is a pure function of the observations — a resumed campaign refits
exactly what the uninterrupted one had.

Several learners are fitted each time (:data:`LEARNERS`: the offset alone, i.e. the network as it is;
the linear mean with the size function; that + group additivity; that + the Tanimoto GP) and the one with
the highest leave-one-out predictive log-likelihood on the measurements wins. LOO for a Gaussian process
needs no refits: with ``A = (K + N)^-1`` the held-out predictive of ``r_i`` has mean
``r_i - [A r]_i / A_ii`` and variance ``1 / A_ii`` (Rasmussen & Williams, *Gaussian Processes for
Machine Learning*, eq. 5.12), with the hyperparameters of the fit on all.

A failed scan can still bound the potential: a wave still rising into the vertex lies beyond it, one already
decaying from the scan's start lies before it (:class:`Censored`). Such a bound is a censored observation
``r > b`` (or ``r < b``), not a value, and dropping it loses the measurements that surprised the model most
(a reduction screen whose failures all lay beyond its vertex taught the model nothing). Each learner takes
the bounds in by expectation propagation (Rasmussen & Williams, section 3.6, with the probit's step
function for a bound): every bound becomes a Gaussian pseudo-measurement whose mean and variance make the
posterior match the truncated one's first two moments, found by :data:`EP_SWEEPS` damped parallel sweeps
from the fit on the measured residuals (:func:`censored_sites`). The hyperparameters and the leave-one-out
scores stay the measured residuals' (a bound has no density to score; its pseudo-measurement was computed
with each held-out residual present, a small optimism every learner shares).
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator
from scipy.linalg import cho_factor, cho_solve, solve_triangular
from scipy.optimize import minimize
from scipy.sparse import csr_matrix
from scipy.special import log_ndtr

from labloop.planners.similarity import SimilarityIndex

log = logging.getLogger(__name__)

#: cheap, generic descriptors of the linear mean, with the spread that scales each to about unit size
#: (chosen as "size, rings, which heteroatoms", before any benchmark)
DESCRIPTORS: dict[str, float] = {
    "heavy_atoms": 10.0,
    "rings": 2.0,
    "nitrogens": 2.0,
    "oxygens": 2.0,
    "sulfurs": 1.0,
    "halogens": 2.0,
}
#: the element counts among :data:`DESCRIPTORS`, as queries: nitrogens, oxygens, sulfurs, halogens
_ELEMENTS = [Chem.MolFromSmarts(q) for q in ("[#7]", "[#8]", "[#16]", "[#9,#17,#35,#53]")]
#: the atom environments of group additivity: Morgan radius 1, folded to this many bits
ENVIRONMENT_RADIUS = 1
ENVIRONMENT_BITS = 1024
#: prior sd (V) of the offset common to all molecules: the gas-phase rule can be off by volts
OFFSET_PRIOR_V = 2.0
#: log-normal priors of the hyperparameters: (median, sd of the log); bounds of the search
HYPER_PRIORS: dict[str, tuple[float, float]] = {
    "weight_sd": (0.05, 1.0),  # V per unit of a scaled descriptor
    # the size function's two: chosen on tuning seeds, the length after a median of 5 heavy atoms lost the
    # `drift` world on every seed (bench/RESULTS.md, "A kernel in the size")
    "size_amplitude": (0.1, 1.0),  # V
    "size_length": (1.0, 0.5),  # in units of the scaled size (10 heavy atoms)
    "group_sd": (0.05, 1.0),  # V per atom environment
    "amplitude": (0.1, 1.0),  # V
    "length": (0.5, 1.0),  # in units of (1 - Tanimoto)
    "surrogate_share": (0.5, 1.0),  # of the surrogate's sigma^2
    "noise": (0.1, 1.0),  # V: what the model leaves unexplained, measurement noise included
}
BOUNDS: dict[str, tuple[float, float]] = {
    "weight_sd": (1e-4, 1.0), "size_amplitude": (1e-4, 2.0), "size_length": (0.1, 10.0),
    "group_sd": (1e-4, 1.0), "amplitude": (1e-4, 2.0), "length": (0.02, 10.0),
    "surrogate_share": (1e-3, 2.0), "noise": (1e-3, 1.0),
}
#: learner name -> the hyperparameters it fits (the others are absent: zero)
LEARNERS: dict[str, tuple[str, ...]] = {
    "offset": ("surrogate_share", "noise"),
    "linear": ("weight_sd", "size_amplitude", "size_length", "surrogate_share", "noise"),
    "additive": ("weight_sd", "size_amplitude", "size_length", "group_sd", "surrogate_share", "noise"),
    "gp": ("weight_sd", "size_amplitude", "size_length", "group_sd", "amplitude", "length", "surrogate_share",
           "noise"),
}
#: heavy-atom counts the size function is tabulated at for the descriptor-only calibration
#: (:meth:`ResidualFit.descriptor_posterior`); larger molecules are taken as this count minus one, far past the
#: bundled data's largest (66)
SIZE_GRID = 201
#: hyperparameters are refitted on every measurement up to this many, then less often (:func:`hyper_prefix`)
HYPER_EVERY_FROM = 24
#: hyperparameters are fitted on at most this many measurements (the first): a fit of the four learners on all of
#: 2,000 took 3 minutes per model output at each step of the sequence and on every resume and `labloop candidates`
#: (a long-campaign trial), and eight hyperparameters are well set by a few hundred measurements
HYPER_AT_MOST = 400
#: jitter (V^2) added to the covariance's diagonal: numerical safety only
JITTER = 1e-8
#: expectation-propagation sweeps over the bounds (:func:`censored_sites`), and the damping of each update
#: (damped parallel EP converges for bounds, whose factors are log-concave): 20 correlated bounds beside 40
#: measurements (ocelot molecules, the gp learner) had sites within 4e-7 V of 200 sweeps' after 20 sweeps and
#: 1e-12 V after 40; a fixed count keeps a fit a pure function of the observations
EP_SWEEPS = 40
EP_DAMPING = 0.5
#: a bound whose site adds less precision than this share of its molecule's predictive precision says
#: nothing the measurements did not (its prediction already lies well inside it) and is left out
EP_MIN_PRECISION_SHARE = 1e-6
#: the least precision (1/V^2) a kept bound's pseudo-measurement has: a variance of 1e12 V^2 says nothing, finitely
EP_FLOOR_PRECISION = 1e-12


def cheap_descriptors(smiles: str) -> tuple[float, ...]:
    """:data:`DESCRIPTORS` of one molecule (NaN for SMILES RDKit cannot read). Parsed without sanitising,
    rings found by RDKit's fast ring finder, elements counted by substructure queries (in C++; a Python loop
    over the atoms cost twice the whole call): this runs on whole libraries."""
    mol = Chem.MolFromSmiles(smiles, sanitize=False)
    if mol is None or mol.GetNumAtoms() == 0:
        return (math.nan,) * len(DESCRIPTORS)
    mol.UpdatePropertyCache(strict=False)
    heavy = mol.GetNumHeavyAtoms()
    if not heavy:
        return (math.nan,) * len(DESCRIPTORS)
    Chem.FastFindRings(mol)
    counts = (len(mol.GetSubstructMatches(query, uniquify=False, maxMatches=1 << 30)) for query in _ELEMENTS)
    return (float(heavy), float(mol.GetRingInfo().NumRings()), *map(float, counts))


def environments(smiles: str) -> np.ndarray:
    """The molecule's atom environments (Morgan radius-1 bits), packed (``np.packbits``); zeros when RDKit
    cannot read it."""
    return mol_environments(Chem.MolFromSmiles(smiles))


def mol_environments(mol: Chem.Mol | None) -> np.ndarray:
    """:func:`environments` of a parsed molecule (None: unreadable)."""
    if mol is None:
        return np.zeros(ENVIRONMENT_BITS // 8, dtype=np.uint8)
    return np.packbits(_ENVIRONMENT_GENERATOR.GetFingerprintAsNumPy(mol).astype(bool))


_ENVIRONMENT_GENERATOR = rdFingerprintGenerator.GetMorganGenerator(radius=ENVIRONMENT_RADIUS, fpSize=ENVIRONMENT_BITS)


def scaled_descriptors(descriptors: np.ndarray) -> np.ndarray:
    """Descriptors divided by their :data:`DESCRIPTORS` spreads (NaN -> 0: an unreadable molecule)."""
    return np.nan_to_num(np.asarray(descriptors, dtype=float) / np.array(list(DESCRIPTORS.values())))


def features(descriptors: np.ndarray, packed_environments: np.ndarray) -> np.ndarray:
    """The learners' per-molecule input: :func:`scaled_descriptors`, then the environment bits (0/1)."""
    scaled = scaled_descriptors(descriptors)
    packed = np.asarray(packed_environments, dtype=np.uint8).reshape(len(scaled), ENVIRONMENT_BITS // 8)
    bits = np.unpackbits(packed, axis=1)
    return np.hstack([scaled, bits.astype(float)])


class TanimotoRows:
    """Tanimoto similarities of measured molecules to every molecule asked about, kept between fits.

    Why: a proposal over a library of ``m`` molecules with ``n`` measurements needs the ``m x n`` kernel
    block; each measured molecule's row over the library is computed once (RDKit's bulk Tanimoto) and
    reused by every later proposal, so a proposal costs ``n`` lookups, not ``n`` bulk comparisons.
    """

    def __init__(self, similarity: SimilarityIndex | None = None) -> None:
        self.similarity = similarity or SimilarityIndex()
        self._index: dict[str, int] = {}
        self._fps: list[Any] = []
        self._readable: list[int] = []  # universe positions with a fingerprint
        self._rows: dict[str, np.ndarray] = {}  # reference -> similarity to the first len(row) of the universe

    def _positions(self, smiles: Sequence[str]) -> np.ndarray:
        index = self._index
        out = np.empty(len(smiles), dtype=np.int64)
        for k, s in enumerate(smiles):
            position = index.get(s)
            if position is None:
                position = index[s] = len(self._fps)
                fp = self.similarity.fingerprint(s)
                self._fps.append(fp)
                if fp is not None:
                    self._readable.append(position)
            out[k] = position
        return out

    def _row(self, reference: str) -> np.ndarray:
        row = self._rows.get(reference, np.zeros(0, dtype=np.float32))
        size = len(self._fps)
        if len(row) < size:
            more = np.zeros(size - len(row), dtype=np.float32)
            ref_fp = self.similarity.fingerprint(reference)
            todo = self._readable[bisect.bisect_left(self._readable, len(row)):]
            if ref_fp is not None and todo:
                sims = DataStructs.BulkTanimotoSimilarity(ref_fp, [self._fps[p] for p in todo])
                more[np.array(todo) - len(row)] = sims
            row = np.concatenate([row, more])
            self._rows[reference] = row
        return row

    def among(self, smiles: Sequence[str]) -> np.ndarray:
        """Tanimoto similarities among a few molecules, computed directly (no rows over the library are
        kept for them: they are a shortlist, not measurements)."""
        fps = [self.similarity.fingerprint(s) for s in smiles]
        readable = [k for k, fp in enumerate(fps) if fp is not None]
        out = np.zeros((len(smiles), len(smiles)))
        for k in readable:
            out[k, readable] = DataStructs.BulkTanimotoSimilarity(fps[k], [fps[j] for j in readable])
        return out

    def matrix(self, queries: Sequence[str], references: Sequence[str]) -> np.ndarray:
        """``T[i, j]`` = Tanimoto(queries[i], references[j]) (0 where either is unreadable), float64."""
        positions = self._positions(queries)
        self._positions(references)
        out = np.empty((len(queries), len(references)))
        for j, reference in enumerate(references):
            out[:, j] = self._row(reference)[positions]
        return out


@dataclass(frozen=True)
class Hyper:
    """Hyperparameters of the residual model (absent kernels have zero weight or amplitude)."""

    weight_sd: float = 0.0
    size_amplitude: float = 0.0
    size_length: float = 1.0
    group_sd: float = 0.0
    amplitude: float = 0.0
    length: float = 1.0
    surrogate_share: float = 1.0
    noise: float = 0.03


Grams = tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray]


def _grams(da: np.ndarray, db: np.ndarray, tanimoto: np.ndarray, environments: bool = True, sizes: bool = True
           ) -> Grams:
    """The kernels' building blocks between two sets of molecules (``da``, ``db``: :func:`features`):
    descriptor dot products, squared size differences (None unless ``sizes``), shared environments (None
    unless ``environments``), Tanimoto similarity.
    The environment bits are sparse (a few dozen of 1,024 per molecule), so ``da``'s go through a sparse
    product: a 100,000-molecule library against 200 measurements in a fraction of a second."""
    n = len(DESCRIPTORS)
    shared = None
    if environments:
        shared = np.asarray(csr_matrix(da[:, n:]) @ db[:, n:].T)
    size = np.subtract.outer(da[:, 0], db[:, 0]) ** 2 if sizes else None  # the first descriptor: the scaled size
    return da[:, :n] @ db[:, :n].T, size, shared, tanimoto


def _combine(h: Hyper, grams: Grams) -> np.ndarray:
    """Covariance of the latent residual (offset + linear + size + groups + GP) from its building blocks."""
    linear, size, shared, tanimoto = grams
    k = OFFSET_PRIOR_V**2 + h.weight_sd**2 * linear
    if h.size_amplitude > 0:
        assert size is not None
        k = k + size_covariance(h, size)
    if h.group_sd > 0:
        assert shared is not None
        k = k + h.group_sd**2 * shared
    if h.amplitude > 0:
        k = k + h.amplitude**2 * np.exp((tanimoto - 1.0) / h.length)
    return k


def size_covariance(h: Hyper, squared_difference: np.ndarray) -> np.ndarray:
    """The size function's covariance for squared differences of the scaled size."""
    return h.size_amplitude**2 * np.exp(-0.5 * squared_difference / h.size_length**2)


def _kernel(h: Hyper, da: np.ndarray, db: np.ndarray, tanimoto: np.ndarray) -> np.ndarray:
    """Covariance of the latent residual between two sets of molecules."""
    return _combine(h, _grams(da, db, tanimoto, environments=h.group_sd > 0, sizes=h.size_amplitude > 0))


def _diag_kernel(h: Hyper, d: np.ndarray) -> np.ndarray:
    """The latent prior variance of each molecule (its Tanimoto with itself is 1)."""
    n = len(DESCRIPTORS)
    var = OFFSET_PRIOR_V**2 + h.weight_sd**2 * np.sum(d[:, :n] ** 2, axis=1) + h.amplitude**2 + h.size_amplitude**2
    if h.group_sd > 0:  # the environment bits are 0/1: their squares sum to their count
        var = var + h.group_sd**2 * np.count_nonzero(d[:, n:], axis=1)
    return var


def _noise(h: Hyper, sigma: np.ndarray) -> np.ndarray:
    return h.surrogate_share * sigma**2 + h.noise**2


def _log_marginal_likelihood(h: Hyper, r: np.ndarray, grams: Grams, sigma: np.ndarray) -> float:
    """log p(r | hyperparameters) of the Gaussian process (no hyperprior), on the kernel's precomputed parts."""
    factor = cho_factor(_combine(h, grams) + np.diag(_noise(h, sigma) + JITTER), lower=True)
    alpha = cho_solve(factor, r)
    return float(-0.5 * r @ alpha - np.sum(np.log(np.diag(factor[0]))) - 0.5 * len(r) * math.log(2 * math.pi))


def _log_prior(h: Hyper, names: Sequence[str]) -> float:
    total = 0.0
    for name in names:
        median, sd = HYPER_PRIORS[name]
        total += -0.5 * ((math.log(getattr(h, name)) - math.log(median)) / sd) ** 2
    return total


def loo(h: Hyper, r: np.ndarray, d: np.ndarray, tanimoto: np.ndarray, sigma: np.ndarray,
        extra: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-out predictive (mean, variance) of each residual, closed form (module docstring); ``extra``:
    variance added to each row's noise (a bound's pseudo-measurement's, :func:`censored_sites`)."""
    cov = _kernel(h, d, d, tanimoto) + np.diag(_noise(h, sigma) + JITTER + (0.0 if extra is None else extra))
    inverse = cho_solve(cho_factor(cov, lower=True), np.eye(len(r)))
    diag = np.diag(inverse)
    return r - (inverse @ r) / diag, 1.0 / diag


def loo_log_likelihood(mean: np.ndarray, var: np.ndarray, r: np.ndarray) -> float:
    """Sum of the log densities of each residual under its leave-one-out predictive."""
    return float(np.sum(-0.5 * np.log(2 * math.pi * var) - (r - mean) ** 2 / (2 * var)))


def fit_hyper(names: Sequence[str], r: np.ndarray, d: np.ndarray, tanimoto: np.ndarray, sigma: np.ndarray
              ) -> Hyper:
    """The maximum a posteriori hyperparameters ``names`` (the others: absent), from the priors' medians
    (which they are, with no residual to fit)."""
    base = Hyper(**{name: HYPER_PRIORS[name][0] for name in names})
    if not len(r):
        return base

    def build(x: np.ndarray) -> Hyper:
        return Hyper(**{**base.__dict__, **{name: float(math.exp(v)) for name, v in zip(names, x, strict=True)}})

    grams = _grams(d, d, tanimoto)  # computed once: only the weights change during the search

    def objective(x: np.ndarray) -> float:
        h = build(x)
        try:
            return -(_log_marginal_likelihood(h, r, grams, sigma) + _log_prior(h, names))
        except np.linalg.LinAlgError:
            return 1e12

    start = np.log([getattr(base, name) for name in names])
    bounds = [tuple(math.log(b) for b in BOUNDS[name]) for name in names]
    result = minimize(objective, start, method="L-BFGS-B", bounds=bounds, options={"maxiter": 200})
    return build(result.x)


@dataclass(frozen=True)
class ResidualFit:
    """One learner fitted on the residuals ``r`` of the molecules ``smiles``: its hyperparameters, the
    Cholesky factor of the training covariance and ``alpha = (K + N)^-1 r``, and its leave-one-out score."""

    learner: str
    hyper: Hyper
    smiles: list[str]
    d: np.ndarray
    r: np.ndarray
    factor: np.ndarray  # lower Cholesky factor of K + N
    alpha: np.ndarray
    loo_log_likelihood: float
    loo_rmse_v: float
    bounds: int = 0  # of the rows, the last ``bounds`` are failed scans' bounds (:class:`Censored`)

    def predict(self, d: np.ndarray, cross_tanimoto: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior (mean, latent variance) of the residual at molecules with descriptors ``d`` and Tanimoto
        ``cross_tanimoto`` (queries x training molecules)."""
        cross = _kernel(self.hyper, d, self.d, cross_tanimoto)
        mean = cross @ self.alpha
        v = solve_triangular(self.factor, cross.T, lower=True, check_finite=False)
        var = np.maximum(_diag_kernel(self.hyper, d) - np.einsum("ij,ij->j", v, v), 0.0)
        return mean, var

    def joint(self, d: np.ndarray, cross_tanimoto: np.ndarray, tanimoto: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
        """Posterior (mean, latent covariance) of the residual over a few molecules (``tanimoto``: among
        them)."""
        cross = _kernel(self.hyper, d, self.d, cross_tanimoto)
        v = solve_triangular(self.factor, cross.T, lower=True, check_finite=False)
        cov = _kernel(self.hyper, d, d, tanimoto) - v.T @ v
        return cross @ self.alpha, cov

    def descriptor_posterior(self) -> tuple[np.ndarray, np.ndarray]:
        """Posterior (mean, covariance) of everything the cheap descriptors carry, with the group and GP terms
        integrated out: the offset, the descriptor weights and the size function at every heavy-atom count
        of :data:`SIZE_GRID`, ``(b, w, f(0), ..., f(SIZE_GRID - 1))``. The residual's mean at ``x`` is then
        ``phi(x) . mean`` with ``phi(x) = [1, d(x), one-hot(heavy atoms)]`` plus the group and GP terms'
        means, its latent variance ``phi cov phi^T`` plus theirs (and their covariance with it); for the
        ``offset`` and ``linear`` learners that is all of it. Why a table over heavy atoms: the size is a
        count, so the table is exact, and a shard needs only the descriptors to use it."""
        h, n = self.hyper, len(DESCRIPTORS)
        grid = np.arange(SIZE_GRID) / DESCRIPTORS["heavy_atoms"]  # scaled, as the learners see the size
        # covariance of each training residual with (b, w, f(grid)), and the prior covariance of those
        cross = np.hstack([np.full((len(self.r), 1), OFFSET_PRIOR_V**2), h.weight_sd**2 * self.d[:, :n],
                           size_covariance(h, np.subtract.outer(self.d[:, 0], grid) ** 2)])
        prior = np.zeros((1 + n + SIZE_GRID, 1 + n + SIZE_GRID))
        prior[:1 + n, :1 + n] = np.diag([OFFSET_PRIOR_V**2, *([h.weight_sd**2] * n)])
        prior[1 + n:, 1 + n:] = size_covariance(h, np.subtract.outer(grid, grid) ** 2)
        v = solve_triangular(self.factor, cross, lower=True, check_finite=False)
        return cross.T @ self.alpha, prior - v.T @ v

    def noise_var(self, sigma: np.ndarray) -> np.ndarray:
        """Variance a measurement adds to the latent residual: surrogate share and measurement noise."""
        return _noise(self.hyper, np.asarray(sigma, dtype=float))

    def summary(self) -> dict[str, Any]:
        """The offset and slopes it learnt (posterior means) and its hyperparameters, for the journal."""
        n = len(DESCRIPTORS)
        mean, _ = self.descriptor_posterior()
        offset, slopes = float(mean[0]), mean[1:1 + n] / np.array(list(DESCRIPTORS.values()))
        hyper = {name: getattr(self.hyper, name) for name in LEARNERS[self.learner]}
        summary = {"intercept_v": offset, "coefficients_v": dict(zip(DESCRIPTORS, map(float, slopes), strict=True)),
                   "hyperparameters": hyper}
        if self.hyper.size_amplitude > 0:  # the curve it learnt, at a few heavy-atom counts
            summary["size_term_v"] = {str(k): float(mean[1 + n + k]) for k in (10, 20, 30, 40)}
        return summary


@dataclass(frozen=True)
class Censored:
    """Failed measurements that bound the residual (module docstring): molecule ``k``'s residual lies above
    ``bound[k]`` where ``side[k]`` is +1, below it where -1. ``tanimoto`` holds each one's similarity to the
    measured molecules, then to these (``k x (n + k)``)."""

    smiles: list[str]
    bound: np.ndarray  # the potential's bound minus the surrogate's prediction (V)
    side: np.ndarray  # +1: above, -1: below
    d: np.ndarray  # :func:`features`
    sigma: np.ndarray  # the surrogate's sigma
    tanimoto: np.ndarray

    def __len__(self) -> int:
        return len(self.smiles)


def truncated_moments(mean: np.ndarray, var: np.ndarray, bound: np.ndarray, side: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of N(``mean``, ``var``) cut to the ``side`` of ``bound`` (+1: above, -1: below),
    in log space so a bound far out in the tail stays finite."""
    sd = np.sqrt(var)
    z = side * (mean - bound) / sd
    ratio = np.exp(-0.5 * z**2 - 0.5 * math.log(2 * math.pi) - log_ndtr(z))  # phi(z) / Phi(z)
    return mean + side * sd * ratio, var * np.maximum(1.0 - ratio * (z + ratio), 1e-12)


def censored_sites(hyper: Hyper, fit: ResidualFit | None, censored: Censored) -> tuple[np.ndarray, np.ndarray]:
    """Expectation propagation of the bounds given the measured residuals (``fit``; None: no measurement):
    each bound's Gaussian pseudo-measurement of its residual, (value, variance a measurement of it adds to
    the latent residual's noise); a bound that says nothing gets an infinite variance."""
    k = len(censored)
    if fit is None:
        prior_mean, latent = np.zeros(k), _kernel(hyper, censored.d, censored.d, censored.tanimoto)
    else:
        n = len(fit.r)
        prior_mean, latent = fit.joint(censored.d, censored.tanimoto[:, :n], censored.tanimoto[:, n:])
    prior = latent + np.diag(_noise(hyper, censored.sigma))  # of the residual a scan would have measured
    tau, nu = np.zeros(k), np.zeros(k)  # the sites' precisions and precision-weighted means
    for _ in range(EP_SWEEPS):
        root = np.sqrt(tau)
        factor = cho_factor(np.eye(k) + root[:, None] * prior * root[None, :], lower=True)
        v = solve_triangular(factor[0], root[:, None] * prior, lower=True, check_finite=False)
        cov = prior - v.T @ v
        mean = prior_mean + cov @ (nu - tau * prior_mean)
        var = np.diag(cov)
        cavity_precision = np.maximum(1.0 / var - tau, 1e-12)
        cavity_var = 1.0 / cavity_precision
        cavity_mean = cavity_var * (mean / var - nu)
        tilted_mean, tilted_var = truncated_moments(cavity_mean, cavity_var, censored.bound, censored.side)
        new_tau = np.maximum(1.0 / tilted_var - cavity_precision, 0.0)
        new_nu = tilted_mean / tilted_var - cavity_mean * cavity_precision
        tau = (1 - EP_DAMPING) * tau + EP_DAMPING * new_tau
        nu = (1 - EP_DAMPING) * nu + EP_DAMPING * new_nu
    # with measurements, a bound that adds next to nothing is left out; without, every one is kept (the fit
    # has nothing else), its precision at least EP_FLOOR_PRECISION
    said = tau > EP_MIN_PRECISION_SHARE / np.diag(prior) if fit is not None else np.ones(k, dtype=bool)
    tau = np.maximum(tau, EP_FLOOR_PRECISION)
    return np.where(said, nu / tau, 0.0), np.where(said, 1.0 / tau, np.inf)


def fit_learner(learner: str, r: np.ndarray, d: np.ndarray, tanimoto: np.ndarray, sigma: np.ndarray,
                smiles: Sequence[str], hyper: Hyper | None = None, censored: Censored | None = None
                ) -> ResidualFit:
    """Fit one of :data:`LEARNERS` (with ``hyper``, or its hyperparameters fitted here) and score it by
    leave-one-out on ``r``; ``censored`` bounds are taken in as pseudo-measurements (module docstring)."""
    hyper = hyper or fit_hyper(LEARNERS[learner], r, d, tanimoto, sigma)
    fit = _fit(learner, hyper, r, d, tanimoto, sigma, smiles) if len(r) else None
    if not censored:
        assert fit is not None
        return fit
    value, extra = censored_sites(hyper, fit, censored)
    kept = np.isfinite(extra)
    if not kept.any():  # with no measurement every bound is kept (censored_sites)
        assert fit is not None
        return fit
    n = len(r)
    rows = np.concatenate([np.arange(n), n + np.flatnonzero(kept)])
    cross = censored.tanimoto[:, :n]
    together = np.block([[np.reshape(tanimoto, (n, n)), cross.T], [cross, censored.tanimoto[:, n:]]])
    d_all = np.vstack([np.reshape(d, (n, censored.d.shape[1])), censored.d[kept]])
    return _fit(learner, hyper, np.concatenate([r, value[kept]]), d_all,
                together[np.ix_(rows, rows)], np.concatenate([sigma, censored.sigma[kept]]),
                [*smiles, *(s for s, keep in zip(censored.smiles, kept, strict=True) if keep)],
                np.concatenate([np.zeros(n), extra[kept]]), measured=n)


def _fit(learner: str, hyper: Hyper, r: np.ndarray, d: np.ndarray, tanimoto: np.ndarray, sigma: np.ndarray,
         smiles: Sequence[str], extra: np.ndarray | None = None, measured: int | None = None) -> ResidualFit:
    """The learner's posterior on residuals ``r`` (the first ``measured`` measured, the rest bounds'
    pseudo-measurements with ``extra`` noise), scored by leave-one-out on the measured ones."""
    measured = len(r) if measured is None else measured
    mean, var = loo(hyper, r, d, tanimoto, sigma, extra)
    factor = cho_factor(_kernel(hyper, d, d, tanimoto)
                        + np.diag(_noise(hyper, sigma) + JITTER + (0.0 if extra is None else extra)), lower=True)
    held = slice(0, measured)
    return ResidualFit(learner, hyper, list(smiles), d, r, np.tril(factor[0]), cho_solve(factor, r),
                       loo_log_likelihood(mean[held], var[held], r[held]),
                       float(np.sqrt(np.mean((r[held] - mean[held]) ** 2))) if measured else math.nan,
                       bounds=len(r) - measured)


def hyper_prefix(n: int) -> int:
    """How many of ``n`` measurements (the first ones) the hyperparameters are fitted on: all up to
    :data:`HYPER_EVERY_FROM`, then the largest of a sequence growing by a quarter each time, up to
    :data:`HYPER_AT_MOST`. Why: fitting
    them is the costly part (an optimisation of a few hundred Cholesky factorisations) and they change
    slowly; a prefix keeps the fit a pure function of the observations and lets it be reused between
    proposals (the posterior and the leave-one-out scores always use all measurements)."""
    if n <= HYPER_EVERY_FROM:
        return n
    size = HYPER_EVERY_FROM
    while int(size * 1.25) <= min(n, HYPER_AT_MOST):
        size = int(size * 1.25)
    return size


def select(r: np.ndarray, d: np.ndarray, tanimoto: np.ndarray, sigma: np.ndarray, smiles: Sequence[str],
           hypers: dict[str, Hyper] | None = None, learners: Sequence[str] = tuple(LEARNERS),
           censored: Censored | None = None) -> tuple[ResidualFit, dict[str, float]]:
    """Fit every learner (with its ``hypers`` when given, and the ``censored`` bounds); the one with the
    highest leave-one-out log-likelihood (ties: the simpler, i.e. earlier in ``learners``) and every learner's
    score. With one measurement or none there is nothing to leave out: the simplest learner is taken."""
    scores: dict[str, float] = {}
    best: ResidualFit | None = None
    for name in learners if len(r) >= 2 else learners[:1]:
        fit = fit_learner(name, r, d, tanimoto, sigma, smiles, (hypers or {}).get(name), censored)
        if len(r):
            scores[name] = fit.loo_log_likelihood
        if best is None or fit.loo_log_likelihood > best.loo_log_likelihood:
            best = fit
    assert best is not None
    return best, scores
