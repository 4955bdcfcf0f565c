"""The systematic parts a simulated world may add to the gas-phase rule: functional-group shifts, a smooth
random function of the molecule, and a slow random walk of the reference electrode.

Why several: a loop that learns only the error it was built for proves nothing. The Born term alone
(:mod:`labloop.sim.world`) has one known form; a real lab's error has others — groups the DFT method gets
wrong, ion pairing, conformers, a reference electrode that creeps. Each part here is a different form,
so a campaign (or a benchmark) can check that the feedback learns what the measurements show rather than
a formula. Every part is a pure function of the molecule (and, for the walk, of the measurement count)
and of the campaign's seed, with its own seeded hashing, so every process and every resumed run sees the
same world.

- :class:`GroupShifts`: ``+ sum of shifts[p] over the SMARTS patterns p the molecule matches`` (each
  pattern counts once, however often it matches). :data:`DEFAULT_SHIFTS` are invented magnitudes of a few
  tenths of a volt, not measured ones: the world tests learning, not chemistry.
- :class:`SmoothField`: ``+ f(molecule)`` with ``f`` one draw of a Gaussian process of covariance
  ``amplitude^2 * exp((T(x, y) - 1) / length)``, ``T`` the Tanimoto similarity of the molecules' unfolded
  Morgan radius-3 fingerprints (sets of atom environments). A Gaussian process over a whole chemical space
  cannot be drawn by a Cholesky factorisation, so it is built from random features whose covariance is
  that kernel: for one min-hash ``h`` of a set, ``P(h(x) = h(y)) = T(x, y)``, so a feature that is a
  standard normal value keyed by ``p`` min-hashes has covariance ``T^p``; drawing ``p`` ~
  Poisson(1/length) per feature gives ``E[T^p] = exp((T - 1) / length)``. ``f = amplitude / sqrt(M) *
  sum of M such features`` (:data:`SMOOTH_FEATURES`), which is Gaussian by the central limit theorem. A
  short length makes the function rough (similar molecules differ more); any length keeps a constant
  part ``exp(-1/length)`` shared by all molecules (the features with ``p = 0``).
- :class:`ReferenceWalk`: ``+ w(k)``, the reference electrode's offset at the campaign's ``k``-th
  measurement: a Gaussian random walk, ``w(0) = 0``, steps N(0, ``step_v``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdFingerprintGenerator
from rdkit.rdBase import BlockLogs
from scipy.special import ndtri

from labloop.core.seeds import stable_rng

log = logging.getLogger(__name__)

#: SMARTS -> shift of the potential (V) for ``kind: groups`` when the campaign gives none (invented sizes)
DEFAULT_SHIFTS: dict[str, float] = {
    "[NX3;!$(N-[#6,#16]=[#8,#16]);!$(N-a)]": -0.3,  # aliphatic amine nitrogen (not amide, not on a ring)
    "[#7;a]": 0.15,  # aromatic nitrogen
    "[CX3]=[OX1]": 0.25,  # carbonyl
    "[#9,#17,#35,#53]": 0.2,  # halogen
    "[#16X2]": -0.2,  # divalent sulfur
    "[OX2H]": 0.15,  # hydroxyl
}
#: random features of a smooth field (more: closer to Gaussian, slower; 2,048 draws 5,000 molecules in ~10 s)
SMOOTH_FEATURES = 2048
#: Morgan radius of the smooth field's fingerprints (the planners' similarity uses radius 2, folded: the
#: world's function is not built on the planners' own representation)
SMOOTH_RADIUS = 3
#: the reference walk is drawn this many steps at a time
WALK_BLOCK = 256


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, elementwise on uint64 (wrapping arithmetic): a well-spread 64-bit hash."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def compile_shifts(shifts: Mapping[str, float]) -> list[tuple[Chem.Mol, float]]:
    """SMARTS patterns as RDKit queries; ValueError naming the first that does not parse."""
    compiled = []
    for smarts, shift in shifts.items():
        with BlockLogs():  # the caller's one line names the pattern; RDKit would print five more
            pattern = Chem.MolFromSmarts(smarts)
        if pattern is None:
            raise ValueError(f"not a valid SMARTS pattern: {smarts!r}")
        compiled.append((pattern, float(shift)))
    return compiled


class GroupShifts:
    """``shift_v(mol)``: the sum of the shifts of the patterns ``mol`` matches (see the module docstring)."""

    def __init__(self, shifts: Mapping[str, float] | None = None) -> None:
        self.shifts = dict(DEFAULT_SHIFTS if shifts is None else shifts)
        self._patterns = compile_shifts(self.shifts)

    def shift_v(self, mol: Chem.Mol) -> float:
        return sum(shift for pattern, shift in self._patterns if mol.HasSubstructMatch(pattern))


class SmoothField:
    """One draw of the Gaussian process of the module docstring, evaluated molecule by molecule."""

    def __init__(self, seed: int, amplitude_v: float, length: float, n_features: int = SMOOTH_FEATURES) -> None:
        if not (amplitude_v >= 0 and length > 0 and n_features > 0):
            raise ValueError(f"need amplitude_v >= 0, length > 0, n_features > 0; got {amplitude_v}, {length}, "
                             f"{n_features}")
        self.amplitude_v, self.length = amplitude_v, length
        rng = stable_rng("smooth-field", seed)
        self.n_hashes = rng.poisson(1 / length, size=n_features)  # min-hashes per feature
        total = int(self.n_hashes.sum())
        # min-hash functions h_j(id) = (a_j * id + b_j) mod 2^64 (a_j odd), then mixed
        self._a = rng.integers(0, 2**63, size=total, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self._b = rng.integers(0, 2**63, size=total, dtype=np.uint64)
        self._feature_keys = rng.integers(0, 2**63, size=n_features, dtype=np.uint64)
        self._starts = np.concatenate([[0], np.cumsum(self.n_hashes)[:-1]]).astype(int)
        self._generator = rdFingerprintGenerator.GetMorganGenerator(radius=SMOOTH_RADIUS)

    def environments(self, mol: Chem.Mol) -> np.ndarray:
        """The molecule's atom environments (unfolded Morgan identifiers) as uint64."""
        ids = list(self._generator.GetSparseFingerprint(mol).GetOnBits())
        return np.array(ids, dtype=np.int64).astype(np.uint64)  # signed ids from RDKit: reinterpret

    def value_v(self, mol: Chem.Mol) -> float:
        ids = self.environments(mol)
        if ids.size == 0 or self.amplitude_v == 0:
            return 0.0
        with np.errstate(over="ignore"):
            hashes = _mix(self._a[:, None] * ids[None, :] + self._b[:, None]).min(axis=1)
            keys = self._feature_keys.copy()
            for r in range(int(self.n_hashes.max(initial=0))):
                has = self.n_hashes > r
                keys[has] = _mix(keys[has] ^ hashes[self._starts[has] + r])
            keys = _mix(keys)
        uniform = ((keys >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53
        z = ndtri(uniform)
        return float(self.amplitude_v * z.sum() / math.sqrt(len(z)))


class ReferenceWalk:
    """``at(k)``: the reference electrode's offset (V) at the ``k``-th measurement (``k`` from 0)."""

    def __init__(self, seed: int, step_v: float) -> None:
        if not (math.isfinite(step_v) and step_v >= 0):
            raise ValueError(f"step_v must be >= 0 V, got {step_v!r}")
        self.step_v = step_v
        self._rng = stable_rng("reference-walk", seed)
        self._path = np.zeros(1)

    def at(self, k: int) -> float:
        if k < 0:
            raise ValueError(f"measurement index must be >= 0, got {k}")
        while k >= len(self._path):  # fixed blocks: the path never depends on the order it was queried in
            steps = self._rng.normal(0.0, self.step_v, size=WALK_BLOCK)
            self._path = np.concatenate([self._path, self._path[-1] + np.cumsum(steps)])
        return float(self._path[k])
