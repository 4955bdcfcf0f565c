"""Emulators of labloop's own drivers (registered under ``labloop.emulators``), and the simulated sample
changer, a driver that exists only in the simulated world.

Why here and not beside the drivers: the instrument layer never imports the simulator, so a driver's
emulator is registered by the simulated world under the driver's name (``pyproject.toml``), and only the
composition module (:mod:`labloop.orchestrator.compose`) puts the two together for a dry run.
"""

from __future__ import annotations

from collections.abc import Mapping

from labloop.core.errors import ConfigError
from labloop.instruments import gas_valve
from labloop.instruments.registry import DriverDescriptor, DriverKind
from labloop.sim.cell import Cell, Fluid
from labloop.sim.emstat_emulator import EmStatEmulator
from labloop.sim.emulation import Emulation, EmulatorContext
from labloop.sim.gas_valve_emulator import Atmosphere, RelayValveEmulator
from labloop.sim.ne1000_emulator import NE1000Emulator, PumpSpec
from labloop.sim.pty_device import PtyDevice
from labloop.sim.sample_changer import SimSampleChanger


def ne1000_emulator(context: EmulatorContext, *, address: int = 0, holds: str = "electrolyte",
                    diameter_mm: float = 26.59) -> Emulation:
    """One NE-1000 on its own pty, pouring ``holds`` ("sample", "electrolyte" or "standard") into the context's
    cell."""
    emulator = NE1000Emulator([PumpSpec(address, Fluid(holds), diameter_mm)], cell=context.cell,
                              time_scale=context.time_scale)
    return Emulation.on_pty(PtyDevice(emulator, faults=context.injector("ne1000"), name="ne1000").start())


def emstat_emulator(context: EmulatorContext, *, seed: int = 0) -> Emulation:
    """An EmStat Pico on its own pty, measuring the context's cell."""
    emulator = EmStatEmulator(context.contents, time_scale=context.time_scale, seed=seed,
                              reference_drift=context.reference_drift)
    return Emulation.on_pty(PtyDevice(emulator, faults=context.injector("emstat"), name="emstat").start())


def relay_valve_emulator(context: EmulatorContext, *,
                         channels: Mapping[str, int] = gas_valve.DEFAULT_CHANNELS) -> Emulation:
    """A relay-module gas valve on its own pty (``channels``: gas -> relay), flowing into the context's
    atmosphere (a context without one gets its own, O2-free, which no potentiostat sees)."""
    atmosphere = context.atmosphere or Atmosphere(0.0, time_scale=context.time_scale)
    emulator = RelayValveEmulator(atmosphere, {relay: gas for gas, relay in channels.items()})
    return Emulation.on_pty(PtyDevice(emulator, faults=context.injector("relay-valve"), name="relay-valve").start())


def manual_emulator(context: EmulatorContext, *, sample_stock_mM: float | None = None) -> Emulation:
    """A simulated operator for the ``manual`` changer: answers every question at once and places the vial in
    the context's cell (its stock at ``sample_stock_mM``, the protocol's, if it says one)."""
    stock = {} if sample_stock_mM is None else {"default_stock_mM": sample_stock_mM}
    changer = SimSampleChanger(context.cell, **stock)
    return Emulation(port="sim-operator", stop=lambda: None,
                     options={"ask": lambda _question: "", "placed": changer.load})


def open_sim_sampler(port: str, *, cell: Cell | None = None, stocks_mM: Mapping[str, float] | None = None,
                     default_stock_mM: float = 10.0) -> SimSampleChanger:
    """The simulated sample changer on ``cell`` (``port`` only names it); there is no such hardware."""
    if cell is None:
        raise ConfigError(f"sample changer {port!r}", "driver 'sim-sampler' exists only in the simulated world: "
                                                      "run with --dry-run, or use the 'manual' driver")
    return SimSampleChanger.open(port, cell=cell, stocks_mM=stocks_mM, default_stock_mM=default_stock_mM)


def sim_sampler_emulator(context: EmulatorContext, *, sample_stock_mM: float | None = None,
                         default_stock_mM: float | None = None) -> Emulation:
    """No wire to emulate: the changer acts on the context's cell, which the driver gets as an option, with every
    sample's stock at ``sample_stock_mM`` (the protocol's cv says it) unless the changer's own ``default_stock_mM``
    option says another."""
    options: dict[str, object] = {"cell": context.cell}
    if sample_stock_mM is not None and default_stock_mM is None:
        options["default_stock_mM"] = sample_stock_mM
    return Emulation(port="sim", stop=lambda: None, options=options)


SIM_SAMPLER = DriverDescriptor(
    name="sim-sampler", kind=DriverKind.SAMPLE_CHANGER, open=open_sim_sampler, simulated_only=True,
    summary="simulated sample changer acting on the simulated cell (dry runs only)",
)
