"""A simulated lab: the emulators of one dry-run rig around one shared cell, in one simulated world.

Why one object: every emulator of a dry run acts on the same :class:`EmulatorContext` — the pumps pour into
its cell, the potentiostat measures it, and what a sample is made of comes from the :class:`World`. The
composition module (:mod:`labloop.orchestrator.compose`) starts one emulator per instrument here and opens
the real drivers on their ports; tests and diagnostics read the emulators' own state through
:meth:`SimulatedLab.emulator_states`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import replace
from typing import Any

from labloop.instruments.cv_analysis import FERROCENE_VS_LI_V
from labloop.sim.cell import Cell
from labloop.sim.emulation import (
    DEFAULT_BLANK,
    DEFAULT_FERROCENE,
    DEFAULT_OXYGEN,
    OXYGEN_VS_LI_V,
    Emulation,
    EmulatorContext,
)
from labloop.sim.emulators import start_emulator
from labloop.sim.faults import FaultPlan
from labloop.sim.gas_valve_emulator import Atmosphere
from labloop.sim.pty_device import TimeScale
from labloop.sim.world import World

log = logging.getLogger(__name__)


class SimulatedLab:
    """The emulators of one dry run; ``time_scale`` 0 means zero latency (device seconds per wall second
    otherwise); ``faults``: what every emulator injects (None: nothing); ``oxygen_vs_li_v``: where the electrolyte's
    dissolved O2 reduces (V vs Li/Li+); ``standard_vs_li_v``: where its internal standard's couple sits (ferrocene's,
    or the one the protocol adds); ``temperature_k``: the cell's (``cell.temperature_c``), which every couple in it is
    simulated at, as the executor analyses them at it (a dry run at 60 C simulated 25 C's couples, so its D, computed
    at 60 C, read 12% off the simulated molecule's)."""

    def __init__(self, world: World, time_scale: float, *, oxygen_mm: float = 0.0, ru_ohm: float = 0.0,
                 faults: FaultPlan | None = None, electrode_area_cm2: float | None = None,
                 oxygen_vs_li_v: float = OXYGEN_VS_LI_V, standard_vs_li_v: float = FERROCENE_VS_LI_V,
                 temperature_k: float = DEFAULT_BLANK.temperature_k) -> None:
        self.world = world
        scale = TimeScale.zero_latency() if time_scale == 0 else TimeScale(time_scale)
        # the standard and O2 sit where the world's reference electrode puts them; a purge takes the O2 away; the
        # electrolyte's resistance (ru_ohm) is the same whatever the cell holds, and so are the working
        # electrode (electrode_area_cm2; None: the default 3 mm disk), which every couple's current scales with, and
        # the temperature
        area = DEFAULT_BLANK.area_cm2 if electrode_area_cm2 is None else electrode_area_cm2
        shared = {"area_cm2": area, "temperature_k": temperature_k}  # the standard's and O2's too
        electrode = {**shared, "ru_ohm": ru_ohm}
        cell = Cell()  # every scan of one filling (until a rinse) measures the same solution: one draw of noise
        self.context = EmulatorContext(cell=cell, blank=replace(DEFAULT_BLANK, **electrode), time_scale=scale,
                                       faults=faults,
                                       standard=replace(DEFAULT_FERROCENE, **shared),
                                       oxygen=replace(DEFAULT_OXYGEN, **shared),
                                       atmosphere=Atmosphere(oxygen_mm, time_scale=scale),
                                       reference_drift=world.reference_drift_v, faults_armed=threading.Event(),
                                       couple_of=lambda sample_id: replace(
                                           world.couple_of(sample_id, cell.state().rinses), **electrode),
                                       ).on_reference(world.reference_offset_v, oxygen_vs_li_v, standard_vs_li_v)
        self.emulations: dict[str, Emulation] = {}
        self._addresses: dict[str, int] = {}

    def arm_faults(self) -> None:
        """From now on the emulators inject the plan's faults (none while the rig opened and was health-checked: a
        fault there refused the run, and every resume the same way, since a refused one journals nothing)."""
        if self.context.faults_armed is not None:
            self.context.faults_armed.set()

    def start(self, instrument: str, driver: str, options: Mapping[str, Any], stack: ExitStack) -> Emulation:
        """Start ``driver``'s emulator for ``instrument`` (stopped when ``stack`` closes)."""
        emulation = start_emulator(driver, self.context, options)
        stack.callback(emulation.stop)
        self.emulations[instrument] = emulation
        self._addresses[instrument] = int(options.get("address", 0))
        return emulation

    @property
    def time_factor(self) -> float:
        """Device seconds per wall second (``math.inf`` at zero latency), for the drivers' deadlines."""
        return self.context.time_scale.factor

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` of device time pass (none at zero latency)."""
        if not math.isinf(self.time_factor):
            time.sleep(seconds / self.time_factor)

    def ask_operator(self, message: str) -> str:
        """A simulated operator: does at once what a manual step asks (polish, purge by hand) and says so."""
        log.info("simulated operator: %s", message)
        return ""

    def rinse(self) -> None:
        """Empty and rinse the simulated cell at once."""
        self.context.cell.rinse()

    def emulator_states(self) -> dict[str, dict[str, Any]]:
        """Read on the emulators themselves: bytes each pty emulator received, each pump's firmware status
        (``S`` stopped, ``I`` infusing, ...), each potentiostat's cell switch; and the cell (``volume_ml``,
        ``sample_id``, ``analytes_mM``)."""
        states: dict[str, dict[str, Any]] = {}
        for name, emulation in self.emulations.items():
            if emulation.device is None:
                continue
            emulator = emulation.device.emulator
            state: dict[str, Any] = {"received_bytes": len(emulation.device.received)}
            if hasattr(emulator, "snapshot"):
                state["status"] = emulator.snapshot(self._addresses[name]).status
            if hasattr(emulator, "cell_on"):
                state["cell_on"] = emulator.cell_on
            states[name] = state
        cell = self.context.cell.state()
        states["cell"] = {"volume_ml": cell.volume_ml, "sample_id": cell.sample_id,
                          "analytes_mM": dict(cell.analytes_mM)}
        return states
