"""How emulators are started in a simulated rig: what they share (:class:`EmulatorContext`) and what a
started one hands back (:class:`Emulation`).

Why: ``labloop run --dry-run``, ``labloop sim serve``, the conformance kit and the tests all start
emulators by driver name, through the driver registry, without knowing any emulator class. Every emulator
factory therefore takes the same :class:`EmulatorContext` (the shared cell, what a sample in it is made of,
the time scale, the fault plan) and returns an :class:`Emulation` (the port a driver opens, how to stop
it, and any options the driver needs to reach it).

The potentiostat emulators compute voltammograms of :meth:`EmulatorContext.contents`: one
:class:`CellParams` per sample present in the cell, at its concentration there (``couple_of(sample_id)``
says what the sample's redox couple is), or the ``blank`` electrode (charging current only) for an empty
cell; :func:`cell_current` turns that list into the current a scan measures.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

import numpy as np

from labloop.instruments.voltammogram import CVParams
from labloop.sim.cell import Cell, Fluid
from labloop.sim.cv_physics import CellParams, simulate_cv
from labloop.sim.faults import FaultInjector, FaultPlan
from labloop.sim.pty_device import PtyDevice, TimeScale

log = logging.getLogger(__name__)

#: a 3 mm disk in 1 mM of a fast couple at 0 V, double-layer charging and 0.2 % noise
DEFAULT_COUPLE = CellParams(e0_v=0.0, k0_cm_s=1.0, conc_mm=1.0, cdl_f_cm2=2e-5, noise_fraction=0.002)
#: the same electrode in plain electrolyte
DEFAULT_BLANK = replace(DEFAULT_COUPLE, conc_mm=0.0)


def _default_couple(sample_id: str) -> CellParams:
    return DEFAULT_COUPLE


@dataclass(frozen=True)
class EmulatorContext:
    """What the emulators of one simulated rig share.

    ``couple_of(sample_id)`` gives the electrochemistry of a sample (its ``conc_mm`` is replaced by the
    concentration in the cell); ``blank`` describes the electrode in plain electrolyte. ``faults`` is the
    plan every emulator draws its own faults from (seeded per device, see :meth:`injector`).
    """

    cell: Cell = field(default_factory=Cell)
    couple_of: Callable[[str], CellParams] = _default_couple
    blank: CellParams = DEFAULT_BLANK
    time_scale: TimeScale = field(default_factory=TimeScale.real_time)
    faults: FaultPlan | None = None

    @classmethod
    def standalone(cls, couple: CellParams, *, time_scale: TimeScale | None = None,
                   faults: FaultPlan | None = None) -> EmulatorContext:
        """A cell holding 1 mL of one couple at ``couple.conc_mm``, for ``labloop sim serve``."""
        cell = Cell()
        cell.load_sample("standalone", couple.conc_mm)
        cell.add("standalone", 1.0, Fluid.SAMPLE)
        return cls(cell=cell, couple_of=lambda _sample_id: couple, blank=replace(couple, conc_mm=0.0),
                   time_scale=time_scale or TimeScale.real_time(), faults=faults)

    def contents(self) -> list[CellParams]:
        """One CellParams per sample present in the cell (at its concentration there), or the blank."""
        analytes = self.cell.state().analytes_mM
        present = [replace(self.couple_of(sample_id), conc_mm=conc)
                   for sample_id, conc in sorted(analytes.items()) if conc > 0]
        return present or [self.blank]

    def injector(self, device: str) -> FaultInjector | None:
        """A fault injector for ``device`` drawing from the plan, seeded by the plan's seed and the name."""
        if self.faults is None:
            return None
        return FaultInjector(replace(self.faults, seed=zlib.crc32(f"{self.faults.seed}:{device}".encode())))


@dataclass(frozen=True)
class Emulation:
    """A started emulator: the ``port`` a driver opens, ``stop`` to end it, and ``options`` the driver
    needs besides the port to reach it (e.g. the shared cell, for a device that lives in-process).
    ``device`` is the pty device when there is one (tests look at the bytes it received)."""

    port: str
    stop: Callable[[], None]
    options: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    device: PtyDevice | None = None

    @classmethod
    def on_pty(cls, device: PtyDevice) -> Emulation:
        """The emulation of a started :class:`PtyDevice`."""
        return cls(port=device.port, stop=device.stop, device=device)


def cell_current(couples: Sequence[CellParams], params: CVParams, rng: np.random.Generator) -> np.ndarray:
    """The current (A) a scan measures in a cell holding ``couples``: their currents added.

    Adding is exact without uncompensated resistance (each couple diffuses on its own); the first couple
    brings the double-layer charging current and the noise, the others only their faradaic current.
    """
    total = simulate_cv(couples[0], params, rng).current_a.copy()
    for couple in couples[1:]:
        total += simulate_cv(replace(couple, cdl_f_cm2=0.0, noise_fraction=0.0), params, rng).current_a
    return total
