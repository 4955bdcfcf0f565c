"""The descriptors of labloop's own hardware drivers, registered under ``labloop.drivers`` like any plug-in's.

labloop's ``pyproject.toml`` points its entry points here (``ne1000``, ``emstat``, ``relay-valve``); the registry
(:mod:`labloop.instruments.registry`) knows them only through those entry points. Their emulators are
registered apart, under ``labloop.emulators``, by the simulated world (:mod:`labloop.sim.builtin_emulators`):
the instrument layer never imports the simulator (docs/architecture.md).
"""

from __future__ import annotations

from labloop.instruments import emstat, gas_valve, ne1000
from labloop.instruments.registry import DriverDescriptor, DriverKind

NE1000 = DriverDescriptor(
    name="ne1000", kind=DriverKind.PUMP, open=ne1000.NE1000Pump.open,
    default_baudrate=ne1000.DEFAULT_BAUDRATE, summary="New Era NE-1000 family syringe pumps, basic RS-232 mode",
    options=("address", "baudrate", "capture", "timeout_s", "retries", "diameter_mm", "content_ml", "poll_s",
             "run_margin_s"),
    option_problem=ne1000.option_problem, rate_range_ml_min=ne1000.options_rate_range,
    content_ml=ne1000.options_content_ml, diameter_option="diameter_mm",
)
EMSTAT = DriverDescriptor(
    name="emstat", kind=DriverKind.POTENTIOSTAT, open=emstat.EmStatPotentiostat.open,
    default_baudrate=emstat.DEFAULT_BAUDRATE, summary="PalmSens EmStat Pico / EmStat4, MethodSCRIPT",
    options=("baudrate", "capture", "timeout_s", "retries", "settle_s", "error_pause_s", "on_overload", "reference"),
    option_problem=emstat.option_problem,
)
RELAY_VALVE = DriverDescriptor(
    name="relay-valve", kind=DriverKind.GAS_VALVE, open=gas_valve.RelayGasValve.open,
    default_baudrate=gas_valve.DEFAULT_BAUDRATE, summary="purge-gas solenoid valves on a Numato-style USB relay module",
    options=("channels", "baudrate", "timeout_s", "retries"),
)
