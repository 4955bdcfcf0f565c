"""The rig: the campaign's instruments, opened through the driver registry, on hardware or on emulators.

Why one object: the runner and the protocol executor need the instruments by the names the campaign gives
them, one way to put them all in a safe state (Ctrl-C, a fault, the end of a run), and one way to release
them, whatever drivers they are. ``build_rig(campaign, dry_run=True)`` gives the same object over the
drivers' emulators on ptys, so a dry run goes through the very code that talks to hardware.

Dry run: every instrument's emulator is started (:meth:`DriverDescriptor.start_emulator`) on ONE shared
:class:`EmulatorContext`: the pumps pour into its cell, the potentiostat measures it, and the couple of a
sample comes from the :class:`World`. An emulator gets the instrument's options it accepts (by its
signature: the NE-1000's ``address`` and ``diameter_mm``), what its syringe holds (``holds``, from the
protocol's ``fluid``) and the campaign's ``seed``. The time scale is ``world.time_scale`` (0, the default:
zero latency).

The cell is not an instrument of its own: :meth:`Rig.rinse_cell` empties the emulated cell, and on hardware
asks the operator to rinse it (no drain driver exists yet).
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Self

from labloop.instruments.contracts import Potentiostat, Pump
from labloop.instruments.errors import Disconnected
from labloop.instruments.registry import DriverDescriptor, DriverKind, resolve
from labloop.orchestrator.campaign import Campaign
from labloop.orchestrator.campaign import World as WorldSpec
from labloop.protocols.steps import parse_steps, pumps_holding_sample
from labloop.sim.emulation import Emulation, EmulatorContext
from labloop.sim.pty_device import TimeScale
from labloop.sim.world import World

log = logging.getLogger(__name__)

Ask = Callable[[str], str]


@dataclass(frozen=True)
class _Simulation:
    """What a dry-run rig holds besides its drivers."""

    context: EmulatorContext
    world: World
    emulations: dict[str, Emulation]
    addresses: dict[str, int]  # for emulators of several devices (NE-1000 lines): which one is this instrument


class Rig:
    """Opened instruments by name (``instruments``); a context manager that closes them."""

    def __init__(self, instruments: Mapping[str, object], *, closer: ExitStack, ask: Ask = input,
                 simulation: _Simulation | None = None) -> None:
        self.instruments: dict[str, object] = dict(instruments)
        self._closer = closer
        self._ask = ask
        self._simulation = simulation

    @property
    def dry_run(self) -> bool:
        return self._simulation is not None

    def note_sample(self, sample_id: str, smiles: str) -> None:
        """Say which molecule ``sample_id`` holds (the simulated world needs it; hardware does not)."""
        if self._simulation is not None:
            self._simulation.world.note_sample(sample_id, smiles)

    def rinse_cell(self) -> None:
        """Empty and rinse the cell: the emulated one at once; on hardware the operator does it."""
        if self._simulation is not None:
            self._simulation.context.cell.rinse()
            return
        try:
            self._ask("Rinse the cell, then press Enter: ")
        except EOFError:
            raise Disconnected("cell", "no operator to rinse the cell: the console's input is closed") from None

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` of device time pass (none at zero latency)."""
        factor = self._simulation.context.time_scale.factor if self._simulation is not None else 1.0
        if not math.isinf(factor):
            time.sleep(seconds / factor)

    def safe_state(self) -> None:
        """Stop every pump and abort the potentiostats (cell off). Never raises; safe to call twice."""
        for name, driver in self.instruments.items():
            try:
                if isinstance(driver, Pump):
                    driver.stop()
                elif isinstance(driver, Potentiostat):
                    driver.abort()
            except Exception:
                log.exception("safe state: %s could not be made safe", name)

    def health_check(self) -> dict[str, str]:
        """``{name: "ok: ..." | "error: ..."}``: pumps report their status, drivers with ``identify()``
        their firmware; others are ok while they are open."""
        report = {}
        for name, driver in self.instruments.items():
            try:
                if isinstance(driver, Pump):
                    report[name] = f"ok: {driver.status().state}"
                elif callable(identify := getattr(driver, "identify", None)):
                    report[name] = f"ok: {identify()}"
                else:
                    report[name] = "ok"
            except Exception as exc:
                report[name] = f"error: {exc}"
        return report

    def emulator_states(self) -> dict[str, dict[str, Any]]:
        """For tests of a dry-run rig, read on the emulators themselves: bytes each pty emulator received,
        each pump's firmware status (``S`` stopped, ``I`` infusing, ...), each potentiostat's cell switch;
        and the cell (``volume_ml``, ``sample_id``, ``analytes_mM``)."""
        if self._simulation is None:
            raise RuntimeError("emulator_states() needs a dry-run rig")
        states: dict[str, dict[str, Any]] = {}
        for name, emulation in self._simulation.emulations.items():
            if emulation.device is None:
                continue
            emulator = emulation.device.emulator
            state: dict[str, Any] = {"received_bytes": len(emulation.device.received)}
            if hasattr(emulator, "snapshot"):
                state["status"] = emulator.snapshot(self._simulation.addresses[name]).status
            if hasattr(emulator, "cell_on"):
                state["cell_on"] = emulator.cell_on
            states[name] = state
        cell = self._simulation.context.cell.state()
        states["cell"] = {"volume_ml": cell.volume_ml, "sample_id": cell.sample_id,
                          "analytes_mM": dict(cell.analytes_mM)}
        return states

    def close(self) -> None:
        """Safe state, then close every driver and stop every emulator; closing twice is not an error."""
        if self.instruments:
            self.safe_state()
        self.instruments.clear()
        self._closer.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _accepted(factory: Callable[..., Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """The ``options`` that ``factory`` takes as keywords (all of them if it takes ``**kwargs``)."""
    parameters = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return dict(options)
    return {key: value for key, value in options.items() if key in parameters}


def build_rig(campaign: Campaign, *, dry_run: bool, world: World | None = None, ask: Ask = input) -> Rig:
    """Open every instrument of ``campaign`` (ConfigError for an unknown driver; nothing stays open when
    one fails). ``dry_run`` puts each on its emulator, the world being ``world`` or the campaign's.
    ``ask`` is how the rig asks the operator (the console by default)."""
    limits = campaign.safety.limits()
    with ExitStack() as stack:
        simulation = None
        if dry_run:
            spec = campaign.world or WorldSpec()
            world = world or World.from_campaign(campaign)
            zero = spec.time_scale == 0
            context = EmulatorContext(couple_of=world.couple_of,
                                      time_scale=TimeScale.zero_latency() if zero else TimeScale(spec.time_scale))
            sample_pumps = pumps_holding_sample(parse_steps(list(campaign.protocol.steps)))
            simulation = _Simulation(context, world, {}, {})
        instruments: dict[str, object] = {}
        for name, entry in campaign.instruments.items():
            descriptor = resolve(entry.driver)
            options: dict[str, Any] = dict(entry.options)
            port = entry.port or name
            if descriptor.kind in (DriverKind.PUMP, DriverKind.POTENTIOSTAT):
                options["limits"] = limits
            if simulation is not None:
                emulation = _start_emulator(descriptor, simulation.context, entry.options,
                                            holds="sample" if name in sample_pumps else "electrolyte",
                                            seed=campaign.seed)
                stack.callback(emulation.stop)
                simulation.emulations[name] = emulation
                simulation.addresses[name] = int(entry.options.get("address", 0))
                port = emulation.port
                options.update(emulation.options)
                if descriptor.kind in (DriverKind.PUMP, DriverKind.POTENTIOSTAT):
                    options["time_scale"] = simulation.context.time_scale.factor
            elif descriptor.kind is DriverKind.SAMPLE_CHANGER:
                options.update(_accepted(descriptor.open, {"ask": ask}))
            driver = descriptor.open(port, **options)
            stack.callback(driver.close)
            instruments[name] = driver
            log.info("rig: %s = %s on %s%s", name, descriptor.name, port, " (emulated)" if dry_run else "")
        return Rig(instruments, closer=stack.pop_all(), ask=ask, simulation=simulation)


def _start_emulator(descriptor: DriverDescriptor, context: EmulatorContext, options: Mapping[str, Any],
                    **extra: Any) -> Emulation:
    """Start ``descriptor``'s emulator with the options (and extras) its factory accepts."""
    if descriptor.emulator is None:
        return descriptor.start_emulator(context)  # raises: this driver cannot run dry
    return descriptor.start_emulator(context, **_accepted(descriptor.emulator, {**options, **extra}))
