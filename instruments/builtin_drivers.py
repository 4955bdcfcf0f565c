"""The descriptors of labloop's own drivers, registered under ``labloop.drivers`` like any plug-in's.

labloop's ``pyproject.toml`` points its entry points here (``ne1000``, ``emstat``, ``relay-valve``,
``sim-sampler``); the
registry (:mod:`labloop.instruments.registry`) knows them only through those entry points. The emulator
factories import the simulated world when called, so loading a descriptor never does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from labloop.instruments import emstat, gas_valve, ne1000
from labloop.instruments.registry import DriverDescriptor, DriverKind

if TYPE_CHECKING:
    from labloop.sim.cell import Cell
    from labloop.sim.emulation import Emulation, EmulatorContext
    from labloop.sim.sample_changer import SimSampleChanger


def ne1000_emulator(context: EmulatorContext, *, address: int = 0, holds: str = "electrolyte",
                    diameter_mm: float = 26.59) -> Emulation:
    """One NE-1000 on its own pty, pouring ``holds`` ("sample" or "electrolyte") into the context's cell."""
    from labloop.sim.cell import Fluid
    from labloop.sim.emulation import Emulation
    from labloop.sim.ne1000_emulator import NE1000Emulator, PumpSpec
    from labloop.sim.pty_device import PtyDevice

    emulator = NE1000Emulator([PumpSpec(address, Fluid(holds), diameter_mm)], cell=context.cell,
                              time_scale=context.time_scale)
    return Emulation.on_pty(PtyDevice(emulator, faults=context.injector("ne1000"), name="ne1000").start())


def emstat_emulator(context: EmulatorContext, *, seed: int = 0) -> Emulation:
    """An EmStat Pico on its own pty, measuring the context's cell."""
    from labloop.sim.emstat_emulator import EmStatEmulator
    from labloop.sim.emulation import Emulation
    from labloop.sim.pty_device import PtyDevice

    emulator = EmStatEmulator(context.contents, time_scale=context.time_scale, seed=seed,
                              reference_drift=context.reference_drift)
    return Emulation.on_pty(PtyDevice(emulator, faults=context.injector("emstat"), name="emstat").start())


def relay_valve_emulator(context: EmulatorContext, *,
                         channels: Mapping[str, int] = gas_valve.DEFAULT_CHANNELS) -> Emulation:
    """A relay-module gas valve on its own pty (``channels``: gas -> relay), flowing into the context's
    atmosphere (a context without one gets its own, O2-free, which no potentiostat sees)."""
    from labloop.sim.emulation import Emulation
    from labloop.sim.gas_valve_emulator import Atmosphere, RelayValveEmulator
    from labloop.sim.pty_device import PtyDevice

    atmosphere = context.atmosphere or Atmosphere(0.0, time_scale=context.time_scale)
    emulator = RelayValveEmulator(atmosphere, {relay: gas for gas, relay in channels.items()})
    return Emulation.on_pty(PtyDevice(emulator, faults=context.injector("relay-valve"), name="relay-valve").start())


def open_sim_sampler(port: str, *, cell: Cell, stocks_mM: Mapping[str, float] | None = None,
                     default_stock_mM: float = 10.0) -> SimSampleChanger:
    """The simulated sample changer on ``cell`` (``port`` only names it)."""
    from labloop.sim.sample_changer import SimSampleChanger

    return SimSampleChanger.open(port, cell=cell, stocks_mM=stocks_mM, default_stock_mM=default_stock_mM)


def sim_sampler_emulation(context: EmulatorContext) -> Emulation:
    """No wire to emulate: the changer acts on the context's cell, which the driver gets as an option."""
    from labloop.sim.emulation import Emulation

    return Emulation(port="sim", stop=lambda: None, options={"cell": context.cell})


NE1000 = DriverDescriptor(
    name="ne1000", kind=DriverKind.PUMP, open=ne1000.NE1000Pump.open, emulator=ne1000_emulator,
    default_baudrate=ne1000.DEFAULT_BAUDRATE, summary="New Era NE-1000 family syringe pumps, basic RS-232 mode",
)
EMSTAT = DriverDescriptor(
    name="emstat", kind=DriverKind.POTENTIOSTAT, open=emstat.EmStatPotentiostat.open, emulator=emstat_emulator,
    default_baudrate=emstat.DEFAULT_BAUDRATE, summary="PalmSens EmStat Pico / EmStat4, MethodSCRIPT",
)
RELAY_VALVE = DriverDescriptor(
    name="relay-valve", kind=DriverKind.GAS_VALVE, open=gas_valve.RelayGasValve.open, emulator=relay_valve_emulator,
    default_baudrate=gas_valve.DEFAULT_BAUDRATE, summary="purge-gas solenoid valves on a Numato-style USB relay module",
)
SIM_SAMPLER = DriverDescriptor(
    name="sim-sampler", kind=DriverKind.SAMPLE_CHANGER, open=open_sim_sampler, emulator=sim_sampler_emulation,
    summary="simulated sample changer acting on the simulated cell",
)
