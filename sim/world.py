"""The simulated world's ground truth: what every molecule's redox potential really is, and the couple the
emulated potentiostat sees when that molecule is in the cell.

Why a world apart from the surrogate: a dry run must behave like a lab in which the model is *wrong* in
a way only measurements reveal (docs/architecture.md, "The simulated world"). The gas-phase rule of the thesis
``E = IE - 1.40`` (or ``EA - 1.40``; data/SOURCES.md) ignores solvation; the world adds a Born term that grows as the
molecule shrinks, plus a small per-molecule residual, so closing the loop pays. Only this module reads
the truth columns (``ie_ev``/``ea_ev`` or a potential column); the surrogate and the planners never do.

Truth, in V vs Li/Li+ (``world.truth`` of the campaign; ``kind``):

- ``born``: ``E_ox = IE - 1.40 - G_solv`` and ``E_red = EA + G_solv - 1.40`` with the Born
  solvation energy ``G_solv = 7.2 eV*A * (1 - 1/eps) / a`` of a sphere of radius ``a = 1.5 A *
  n_heavy^(1/3)`` in the solvent's dielectric (:data:`DIELECTRIC_CONSTANTS`), plus a residual drawn from
  N(0, :data:`RESIDUAL_SD_V`) seeded by the canonical SMILES (the same in every process and run);
- ``column``: the potentials of a CSV column, as they are;
- ``groups``: ``born`` plus a shift per functional group (SMARTS) the molecule has
  (:class:`labloop.sim.truth.GroupShifts`);
- ``smooth``: ``born`` plus one draw, seeded by the campaign's seed, of a Gaussian process over the
  molecules (Tanimoto kernel of fingerprints; :class:`labloop.sim.truth.SmoothField`);
- ``drift``: any of the above (``base``) plus a random walk of the reference electrode over the
  campaign's measurements (:class:`labloop.sim.truth.ReferenceWalk`); it moves what is *measured*, not the
  molecule's true potential (:meth:`World.truth_v` leaves it out).

The couple (:meth:`World.couple_of`) puts that potential on the emulated reference electrode's scale
(``E0 = E_Li - reference_offset_v``), with k0 and D spread per molecule (log-uniform in
:data:`K0_RANGE_CM_S` and :data:`DIFFUSION_RANGE_CM2_S`, seeded like the residual): enough to make
voltammograms differ in shape, never enough to move E1/2 (equal D for both forms, alpha 0.5). A share of the
molecules (``unstable_share``, drawn per molecule like the residual; default none) is unstable once oxidised (or
reduced): the product reacts away at :data:`UNSTABLE_FOLLOW_UP_PER_S`, and the return wave of their CVs shrinks
(an EC mechanism), which the analysis flags ``chemically_irreversible``. Every molecule's couple takes
``n_electrons`` in its one wave (default one), to rehearse a protocol's cv for two-electron couples. Each new
solution of a molecule (a filling of the cell: every scan until the next rinse) also shifts its E0 by
N(0, ``noise_v``): the scatter of a molecule's measured potential from one solution to the next (water,
ion pairing, the electrode's surface), which is what the campaign's measurement noise models; the scans
of one filling share it and an internal standard does not, so a lab-grade experiment's scan rates agree as
one solution's do. The noise is drawn from a generator seeded by the campaign's seed, the molecule and how
many of its solutions this process measured before — not from one running stream — so a campaign killed
and resumed measures each experiment with the noise the uninterrupted run had, and proposes exactly what
it would have (a resumed process re-runs the interrupted experiment as its first solution of that
molecule). The ``drift`` kind's walk is indexed by this process's count of
measurements; a resumed process continues it from :meth:`World.resume_at`.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from rdkit import Chem
from rdkit.rdBase import BlockLogs

from labloop.core.seeds import stable_rng
from labloop.sim.cv_physics import CellParams
from labloop.sim.emulation import DEFAULT_COUPLE
from labloop.sim.truth import GroupShifts, ReferenceWalk, SmoothField
from labloop.surrogate.dataset import read_table, too_long
from labloop.surrogate.featurize import molecule_problem
from labloop.surrogate.screening import REFERENCE_ABSOLUTE_V

if TYPE_CHECKING:
    from labloop.instruments.cv_analysis import Quantity

log = logging.getLogger(__name__)

#: relative permittivities at 25 C (CRC Handbook). ``ec_dmc`` is EC:DMC 1:1 by volume, mixed linearly
#: from EC (89.8, liquid at 40 C) and DMC (3.1): an estimate; the Born term changes by < 2 % between it and
#: the lower measured values of such blends (~30-40), since it only enters as 1 - 1/eps.
DIELECTRIC_CONSTANTS: dict[str, float] = {
    "acn": 35.9,
    "pc": 64.9,
    "dmc": 3.1,
    "ec_dmc": (89.8 + 3.1) / 2,
    "dmso": 46.7,
}
#: e^2 / (8 pi eps0) in eV*A: the Born energy of a unit charge on a sphere is this over the radius
BORN_EV_A = 7.2
#: radius of a molecule with n heavy atoms: 1.5 A * n^(1/3)
RADIUS_PER_HEAVY_ATOM_A = 1.5
#: standard deviation of the per-molecule residual the Born model leaves (V)
RESIDUAL_SD_V = 0.05
K0_RANGE_CM_S = (0.02, 1.0)
DIFFUSION_RANGE_CM2_S = (0.7e-5, 1.5e-5)
#: how fast (1/s) an unstable molecule's oxidised (reduced) form reacts away: at 0.1 V/s and a vertex 0.4 V past E1/2
#: its return peak is a quarter of the forward one (sim/cv_physics.py's EC couple)
UNSTABLE_FOLLOW_UP_PER_S = 1.0
LI_ABSOLUTE_V = REFERENCE_ABSOLUTE_V["li"]


def born_solvation_ev(n_heavy: int, solvent: str) -> float:
    """``G_solv = 7.2 eV*A * (1 - 1/eps) / (1.5 A * n_heavy^(1/3))`` for a molecule of ``n_heavy`` atoms."""
    eps = DIELECTRIC_CONSTANTS[solvent]
    radius_a = RADIUS_PER_HEAVY_ATOM_A * n_heavy ** (1 / 3)
    return BORN_EV_A * (1 - 1 / eps) / radius_a


def _molecule(smiles: str) -> Chem.Mol:
    if too_long(smiles):  # never parsed: RDKit would take hours over a 1,000,000-character SMILES
        raise KeyError(f"not a usable SMILES ({too_long(smiles)})")
    mol = Chem.MolFromSmiles(smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        raise KeyError(f"not a valid SMILES: {smiles!r}")
    if (why := molecule_problem(mol)) is not None:  # [H][H]: no heavy atom, no Born radius (a division by zero)
        raise KeyError(f"{smiles!r} {why}")
    return mol


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    low, high = bounds
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


@dataclass(frozen=True)
class TruthTable:
    """Rows of the truth file keyed by SMILES as written; a lookup by another spelling of the same molecule
    goes through canonical SMILES (built on the first miss, since canonicalising a big file takes time)."""

    values: Mapping[str, tuple[float, ...]]

    def row(self, smiles: str) -> tuple[float, ...]:
        if smiles in self.values:
            return self.values[smiles]
        with BlockLogs():  # unreadable rows (here or in the file) are said by KeyError, not by RDKit per row
            key = Chem.MolToSmiles(_molecule(smiles))
            by_canonical = self._by_canonical
        if key not in by_canonical:
            raise KeyError(f"{smiles!r} is not in the simulated world's truth file")
        return by_canonical[key]

    @cached_property
    def _by_canonical(self) -> dict[str, tuple[float, ...]]:
        by_canonical: dict[str, tuple[float, ...]] = {}
        for smiles, row in self.values.items():
            mol = Chem.MolFromSmiles(smiles)
            if mol is not None:
                by_canonical.setdefault(Chem.MolToSmiles(mol), row)
        return by_canonical

    @classmethod
    def read(cls, path: Path, columns: tuple[str, ...], smiles_column: str) -> TruthTable:
        table = read_table(path, columns, smiles_column=smiles_column)
        values: dict[str, tuple[float, ...]] = {}
        for smiles, row in zip(table.smiles, table.Y, strict=True):
            if np.isfinite(row).all():
                values.setdefault(smiles, tuple(float(x) for x in row))
        return cls(values)


class World:
    """Ground truth of one simulated campaign (see the module docstring).

    ``source`` is "ie_ea" (``table`` rows are (IE, EA) in eV) or "column" (rows are (potential,) in V vs
    Li/Li+); ``groups``, ``smooth`` and ``walk`` are the optional parts of the ``groups``, ``smooth`` and
    ``drift`` kinds. ``reference_offset_v`` is where the emulated reference electrode sits vs Li/Li+.
    """

    def __init__(self, table: TruthTable, *, source: Literal["ie_ea", "column"], quantity: Quantity,
                 solvent: str = "acn", noise_v: float = 0.0, reference_offset_v: float = 0.0,
                 seed: int = 0, groups: GroupShifts | None = None, smooth: SmoothField | None = None,
                 walk: ReferenceWalk | None = None, unstable_share: float = 0.0, n_electrons: int = 1) -> None:
        if solvent not in DIELECTRIC_CONSTANTS:
            raise ValueError(f"unknown solvent {solvent!r}; known: {', '.join(DIELECTRIC_CONSTANTS)}")
        if not (math.isfinite(noise_v) and noise_v >= 0):
            raise ValueError(f"noise_v must be >= 0 V, got {noise_v!r}")
        if not 0 <= unstable_share <= 1:
            raise ValueError(f"unstable_share must lie in 0..1, got {unstable_share!r}")
        self.unstable_share = unstable_share
        #: electrons each molecule's couple takes in its one wave (the ferrocene standard and O2 keep theirs)
        self.n_electrons = n_electrons
        self.table = table
        self.source = source
        self.quantity = quantity
        self.solvent = solvent
        self.noise_v = noise_v
        self.reference_offset_v = reference_offset_v
        self.seed = seed
        self.groups, self.smooth, self.walk = groups, smooth, walk
        self.measurements = 0  # couple_of calls: the walk's clock
        self._draws: Counter[str] = Counter()  # solutions of each molecule measured in this process
        self._noise: dict[str, tuple[int, float]] = {}  # a sample's filling and the noise its scans share
        self._lock = threading.Lock()  # couple_of runs on the emulator thread, note_sample on the runner's
        self._smiles_of: dict[str, str] = {}
        self._systematic: dict[str, float] = {}

    def truth_v(self, smiles: str) -> float:
        """The true potential (V vs Li/Li+) of the campaign's objective quantity; KeyError if unknown."""
        row = self.table.row(smiles)
        mol = _molecule(smiles) if self.source == "ie_ea" or self.groups or self.smooth else None
        if self.source == "column":
            return row[0] + (0.0 if mol is None else self._added_v(smiles, mol))
        assert mol is not None
        ie, ea = row
        residual = float(stable_rng("residual", Chem.MolToSmiles(mol)).normal(0.0, RESIDUAL_SD_V))
        gas_phase = ie - LI_ABSOLUTE_V if self.quantity == "oxidation_potential" else ea - LI_ABSOLUTE_V
        return gas_phase + self.systematic_v(smiles) + residual

    def systematic_v(self, smiles: str) -> float:
        """What the world adds to the gas-phase rule ``IE - 1.40`` (``EA - 1.40``) for this molecule, its
        small random residual left out: the Born term and the groups' and smooth field's parts (an oracle
        planner's knowledge). Only for ``ie_ea`` worlds: a column has no gas-phase rule to add to."""
        if self.source != "ie_ea":
            raise ValueError("a world whose truth is a column has no systematic part to tell")
        if smiles not in self._systematic:
            mol = _molecule(smiles)
            g_solv = born_solvation_ev(mol.GetNumHeavyAtoms(), self.solvent)
            born = -g_solv if self.quantity == "oxidation_potential" else g_solv
            self._systematic[smiles] = born + self._added_v(smiles, mol)
        return self._systematic[smiles]

    def _added_v(self, smiles: str, mol: Chem.Mol) -> float:
        """The groups' and the smooth field's parts."""
        return ((0.0 if self.groups is None else self.groups.shift_v(mol))
                + (0.0 if self.smooth is None else self.smooth.value_v(mol)))

    def resume_at(self, measurements: int) -> None:
        """Continue the reference walk after ``measurements`` measurements (a resumed campaign: the number
        of voltammograms its journal holds), so it measures with the offset the uninterrupted run had."""
        with self._lock:
            self.measurements = measurements

    def note_sample(self, sample_id: str, smiles: str) -> None:
        """Say which molecule ``sample_id`` holds (a sample id that is itself a SMILES needs no note)."""
        with self._lock:
            self._smiles_of[sample_id] = smiles

    def reference_drift_v(self) -> float:
        """How far the emulated reference electrode has moved from ``reference_offset_v`` now (V): the
        ``drift`` kind's random walk, clocked by the measurements so far (0 for the other kinds). The emulated
        potentiostat applies it to every couple in the cell alike — the analyte and a ferrocene standard —
        which is why a standard in the same scan cancels it."""
        return 0.0 if self.walk is None else self.walk.at(self.measurements)

    def couple_of(self, sample_id: str, filling: int | None = None) -> CellParams:
        """The couple the emulated potentiostat measures for ``sample_id`` (E0 vs the emulated reference at
        its nominal place, shifted by this solution's noise; the reference walk is applied by the emulator,
        :meth:`reference_drift_v`); KeyError for a sample the world does not know. ``filling`` names the cell's
        filling (:attr:`labloop.sim.cell.CellState.rinses`): every scan of one filling (a lab-grade experiment's
        scan rates, its ferrocene scan) sees the same noise, as one solution does; without it, each call is a
        new solution (the backtest's one scan per experiment)."""
        with self._lock:
            smiles = self._smiles_of.get(sample_id, sample_id)
        canonical = Chem.MolToSmiles(_molecule(smiles))
        truth = self.truth_v(smiles)
        with self._lock:
            self.measurements += 1
            kept = self._noise.get(sample_id)
            if filling is not None and kept is not None and kept[0] == filling:
                noise = kept[1]
            else:
                draw = self._draws[canonical]
                self._draws[canonical] += 1
                noise = (float(stable_rng("drift", self.seed, draw, canonical).normal(0.0, self.noise_v))
                         if self.noise_v > 0 else 0.0)
                if filling is not None:
                    self._noise[sample_id] = (filling, noise)
        rng = stable_rng("kinetics", canonical)
        unstable = self.unstable_share > 0 and stable_rng("stability", canonical).random() < self.unstable_share
        return replace(DEFAULT_COUPLE, e0_v=truth - self.reference_offset_v + noise,
                       k0_cm_s=_log_uniform(rng, K0_RANGE_CM_S),
                       diffusion_cm2_s=_log_uniform(rng, DIFFUSION_RANGE_CM2_S),
                       species="reduced" if self.quantity == "oxidation_potential" else "oxidized",
                       follow_up_per_s=UNSTABLE_FOLLOW_UP_PER_S if unstable else 0.0, n_electrons=self.n_electrons)
