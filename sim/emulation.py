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
import threading
import zlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

import numpy as np

from labloop.instruments.cv_analysis import FERROCENE_VS_LI_V, OXYGEN_ONSET_VS_LI_V
from labloop.instruments.voltammogram import CVParams
from labloop.sim.cell import STANDARD_ID, Cell, Fluid
from labloop.sim.cv_physics import CellParams, simulate_cell
from labloop.sim.faults import FaultInjector, FaultPlan
from labloop.sim.gas_valve_emulator import Atmosphere
from labloop.sim.pty_device import PtyDevice, TimeScale

log = logging.getLogger(__name__)

#: a 3 mm disk in 1 mM of a fast couple at 0 V, double-layer charging and 0.2 % noise
DEFAULT_COUPLE = CellParams(e0_v=0.0, k0_cm_s=1.0, conc_mm=1.0, cdl_f_cm2=2e-5, noise_fraction=0.002)
#: the same electrode in plain electrolyte
DEFAULT_BLANK = replace(DEFAULT_COUPLE, conc_mm=0.0)
#: where ``labloop sim serve``'s reference electrode sits (V vs Li/Li+): an Ag-wire quasi-reference about
#: 0.35 V below ferrocene, so the standard's wave and a couple at 0 V are resolved [infer]
STANDALONE_REFERENCE_VS_LI_V = 2.85
#: dissolved O2 + e- -> O2.- : irreversible in Li+ electrolytes (the superoxide precipitates as LiO2/Li2O2,
#: re-oxidised only far anodic), about 2.45 V vs Li/Li+ [infer], i.e. 0.75 V below ferrocene
OXYGEN_VS_LI_V = 2.45
#: the ferrocene internal standard (fast, reversible; D of ferrocene in organic electrolytes ~1-2.5e-5
#: cm^2/s), its E0 on the standalone reference scale (Fc+/Fc at :data:`FERROCENE_VS_LI_V`); its conc_mm is
#: replaced by the cell's
DEFAULT_FERROCENE = CellParams(e0_v=round(FERROCENE_VS_LI_V - STANDALONE_REFERENCE_VS_LI_V, 6), k0_cm_s=1.0,
                               diffusion_cm2_s=1.5e-5, conc_mm=0.0)
DEFAULT_OXYGEN = CellParams(e0_v=round(OXYGEN_VS_LI_V - STANDALONE_REFERENCE_VS_LI_V, 6), k0_cm_s=1e-4, alpha=0.5,
                            diffusion_cm2_s=2e-5, conc_mm=0.0, species="oxidized")


def oxygen_e0_vs_li_v(onset_v: tuple[float, float]) -> float:
    """Where a dry run's O2 reduces (V vs Li/Li+) in an electrolyte whose O2 wave sets in within ``onset_v`` (a
    campaign's ``cell.oxygen_onset_v``): :data:`OXYGEN_VS_LI_V` moved with the band's centre, so that a campaign
    written for a salt without Li+ (O2 half a volt lower) simulates its O2 where its blanks look for it."""
    return OXYGEN_VS_LI_V + (sum(onset_v) - sum(OXYGEN_ONSET_VS_LI_V)) / 2


def _no_drift() -> float:
    return 0.0


def _default_couple(sample_id: str) -> CellParams:
    return DEFAULT_COUPLE


@dataclass(frozen=True)
class EmulatorContext:
    """What the emulators of one simulated rig share.

    ``couple_of(sample_id)`` gives the electrochemistry of a sample (its ``conc_mm`` is replaced by the
    concentration in the cell); ``blank`` describes the electrode in plain electrolyte. ``faults`` is the
    plan every emulator draws its own faults from (seeded per device, see :meth:`injector`).
    ``standard`` is the internal standard's couple (ferrocene), present once the cell holds
    :data:`labloop.sim.cell.STANDARD_ID`; ``atmosphere`` holds the dissolved O2 (None: an O2-free cell);
    ``reference_drift()`` is how far the reference electrode has drifted now (V), which shifts every couple.
    """

    cell: Cell = field(default_factory=Cell)
    couple_of: Callable[[str], CellParams] = _default_couple
    blank: CellParams = DEFAULT_BLANK
    time_scale: TimeScale = field(default_factory=TimeScale.real_time)
    faults: FaultPlan | None = None
    standard: CellParams = DEFAULT_FERROCENE
    oxygen: CellParams = DEFAULT_OXYGEN
    atmosphere: Atmosphere | None = None
    reference_drift: Callable[[], float] = _no_drift
    #: the plan's faults strike once this is set (None: from the start): a dry run's rig sets it once its health check
    #: passed (sim/lab.py), so that a fault rehearses what the run does, not a start that is refused again and again
    faults_armed: threading.Event | None = None
    #: how many injectors each kind of device was given (:meth:`injector`)
    _injectors: Counter[str] = field(default_factory=Counter, repr=False, compare=False)

    @classmethod
    def standalone(cls, couple: CellParams, *, time_scale: TimeScale | None = None, faults: FaultPlan | None = None,
                   fc_mm: float = 0.0, oxygen_mm: float = 0.0) -> EmulatorContext:
        """A cell holding 1 mL of one couple at ``couple.conc_mm`` (plus ``fc_mm`` of ferrocene and
        ``oxygen_mm`` of dissolved O2), for ``labloop sim serve``."""
        cell = Cell()
        cell.load_sample("standalone", couple.conc_mm)
        cell.add("standalone", 1.0, Fluid.SAMPLE)
        if fc_mm > 0:
            cell.add_standard("standalone-standard", 1e-3, fc_mm * 1e3)  # 1 uL of a 1000x stock into 1 mL
        scale = time_scale or TimeScale.real_time()
        return cls(cell=cell, couple_of=lambda _sample_id: couple, blank=replace(couple, conc_mm=0.0),
                   time_scale=scale, faults=faults, atmosphere=Atmosphere(oxygen_mm, time_scale=scale),
                   standard=replace(DEFAULT_FERROCENE, area_cm2=couple.area_cm2),
                   oxygen=replace(DEFAULT_OXYGEN, area_cm2=couple.area_cm2))

    def on_reference(self, reference_vs_li_v: float, oxygen_vs_li_v: float = OXYGEN_VS_LI_V,
                     standard_vs_li_v: float = FERROCENE_VS_LI_V) -> EmulatorContext:
        """The same context with the internal standard (ferrocene, or the one the protocol adds, at
        ``standard_vs_li_v``) and O2 (reducing at ``oxygen_vs_li_v``) placed on the scale of a reference electrode
        sitting at ``reference_vs_li_v`` V vs Li/Li+ (what a simulated campaign's ``reference_offset_v`` says), so a
        dry run's standard and oxygen waves appear where that campaign's analysis looks for them."""
        return replace(self, standard=replace(self.standard, e0_v=standard_vs_li_v - reference_vs_li_v),
                       oxygen=replace(self.oxygen, e0_v=oxygen_vs_li_v - reference_vs_li_v))

    def contents(self) -> list[CellParams]:
        """One CellParams per sample present in the cell (at its concentration there), or the blank, then
        the internal standard and dissolved O2 when the cell holds them."""
        analytes = self.cell.state().analytes_mM
        present = [replace(self.couple_of(sample_id), conc_mm=conc)
                   for sample_id, conc in sorted(analytes.items()) if conc > 0 and sample_id != STANDARD_ID]
        couples = present or [self.blank]
        if analytes.get(STANDARD_ID, 0.0) > 0:
            couples.append(replace(self.standard, conc_mm=analytes[STANDARD_ID]))
        oxygen_mm = self.atmosphere.oxygen_mm() if self.atmosphere is not None else 0.0
        if oxygen_mm > 1e-6:
            couples.append(replace(self.oxygen, conc_mm=oxygen_mm))
        return couples

    def injector(self, device: str) -> FaultInjector | None:
        """A fault injector for ``device`` (its kind, ``ne1000``) drawing from the plan, seeded by the plan's seed,
        the kind and how many devices of the kind were given one before it. Why the count: two pumps of a rig drew
        the very same faults, command for command, so a rehearsal's every pump fault came twice (a chemist's
        trial); the first of each kind draws what it always drew."""
        if self.faults is None:
            return None
        made, self._injectors[device] = self._injectors[device], self._injectors[device] + 1
        name = device if not made else f"{device}#{made}"
        return FaultInjector(replace(self.faults, seed=zlib.crc32(f"{self.faults.seed}:{name}".encode())),
                             self.faults_armed)


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


def cell_current(couples: Sequence[CellParams], params: CVParams, rng: np.random.Generator, *,
                 compensated_ohm: float = 0.0, reference_drift_v: float = 0.0) -> np.ndarray:
    """The current (A) a scan measures in a cell holding ``couples``
    (:func:`labloop.sim.cv_physics.simulate_cell`): the first couple's electrode brings the double-layer
    charging, the uncompensated resistance and the noise; all couples share the ohmic drop.
    ``compensated_ohm`` is the potentiostat's iR compensation, ``reference_drift_v`` the reference's drift.
    """
    return simulate_cell(couples, params, rng, compensated_ohm=compensated_ohm,
                         reference_drift_v=reference_drift_v).current_a.copy()
