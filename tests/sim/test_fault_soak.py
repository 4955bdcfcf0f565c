"""Fault soak: 200 dispense + CV cycles on an NE-1000 and an EmStat emulator sharing one cell, every fault kind at
10 %. Each cycle either succeeds with the right numbers or ends in a typed error: no hang, nothing untyped,
and never a corrupted current passed off as a measurement."""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from labloop.core.errors import Disconnected, InstrumentError
from labloop.instruments.contracts import SafetyLimits
from labloop.instruments.emstat import EmStatPotentiostat
from labloop.instruments.ne1000 import NE1000Bus, NE1000Pump
from labloop.instruments.voltammogram import CVParams
from labloop.sim.cv_physics import CellParams
from labloop.sim.emulation import EmulatorContext, cell_current
from labloop.sim.emulators import start_emulator
from labloop.sim.faults import FaultKind, FaultPlan
from labloop.sim.pty_device import TimeScale
from labloop.sim.sample_changer import SimSampleChanger

CYCLES = 200
TIMEOUT_S = 0.05
LIMITS = SafetyLimits(max_dispense_ml=1.0, syringe_ml=60.0, potential_window_v=(-1.0, 1.0))
QUIET = CellParams(e0_v=0.0, conc_mm=1.0, cdl_f_cm2=2e-5)  # no noise: the true current is known exactly
CV = CVParams(e_begin_v=-0.2, e_vertex1_v=0.2, e_vertex2_v=-0.2, scan_rate_v_s=1.0, e_step_v=0.02)  # 41 points


def open_pump(port: str) -> NE1000Pump:
    bus = NE1000Bus.open(port, timeout_s=TIMEOUT_S, retries=3, settle_s=0.01)
    try:
        return NE1000Pump(bus, 0, limits=LIMITS, time_scale=math.inf, poll_s=0.0)
    except BaseException:
        bus.close()
        raise


def open_potentiostat(port: str) -> EmStatPotentiostat:
    return EmStatPotentiostat.open(port, limits=LIMITS, time_scale=math.inf, timeout_s=TIMEOUT_S,
                                   retries=3, settle_s=0.01, error_pause_s=0.0)


@pytest.mark.slow
def test_two_hundred_dispense_and_cv_cycles_at_ten_percent_of_every_fault() -> None:
    context = EmulatorContext(couple_of=lambda _sample: QUIET, blank=replace(QUIET, conc_mm=0.0),
                              time_scale=TimeScale.zero_latency(),
                              faults=FaultPlan.uniform(0.1, seed=2025, slow_s=TIMEOUT_S / 2))
    SimSampleChanger(context.cell, default_stock_mM=10.0).load("S1")
    pump_emulation = start_emulator("ne1000", context, {"holds": "sample"})
    stat_emulation = start_emulator("emstat", context)
    devices = {"pump": pump_emulation.device, "potentiostat": stat_emulation.device}
    assert all(device is not None and device.faults is not None for device in devices.values())
    drivers: dict[str, NE1000Pump | EmStatPotentiostat | None] = {"pump": None, "potentiostat": None}
    opener = {"pump": lambda: open_pump(devices["pump"].port),  # the port changes when it is replugged
              "potentiostat": lambda: open_potentiostat(devices["potentiostat"].port)}
    outcomes: Counter[str] = Counter()
    retried: Counter[str] = Counter()

    def forget(role: str) -> None:
        driver = drivers[role]
        if driver is not None:
            retried.update(driver.bus.retried if isinstance(driver, NE1000Pump) else driver.retried)
            driver.close()
            drivers[role] = None

    start = time.monotonic()
    try:
        for _ in range(CYCLES):
            role = "pump"
            try:
                devices["pump"].emulator.snapshot(0)  # a run a failed cycle left going finishes first
                context.cell.rinse()
                pump = drivers["pump"] = drivers["pump"] or opener["pump"]()
                assert pump.dispense(0.1, 5.0) == pytest.approx(0.1)
                assert context.cell.state().volume_ml == pytest.approx(0.1)  # it really went into the cell
                role = "potentiostat"
                stat = drivers["potentiostat"] = drivers["potentiostat"] or opener["potentiostat"]()
                voltammogram = stat.run_cv(CV)
                truth = cell_current(context.contents(), CV, np.random.default_rng())
                assert voltammogram.current_a == pytest.approx(truth, rel=0, abs=1e-9)  # not one digit corrupted
                assert np.abs(voltammogram.potential_v - CV.waveform()[1]).max() <= CV.e_step_v / 2
                outcomes["ok"] += 1
            except InstrumentError as exc:
                outcomes[f"{role}: {type(exc).__name__}"] += 1
                if isinstance(exc, Disconnected):  # the cable came out: plug it back in, reconnect
                    forget(role)
                    devices[role].replug()
        for role in drivers:
            forget(role)
    finally:
        pump_emulation.stop()
        stat_emulation.stop()
    elapsed = time.monotonic() - start

    injected = {role: {str(k): n for k, n in device.faults.counts.items() if n} for role, device in devices.items()}
    print(f"\n{CYCLES} dispense+CV cycles in {elapsed:.1f} s; outcomes {dict(outcomes)}")
    print(f"faults injected {injected}; retried by the drivers {dict(retried)}")
    # A dispense is about a dozen exchanges, so at 10 % disconnects per reply most cycles lose the pump's cable;
    # what matters is that every cycle ended in one of these ways, and that enough got through to be checked.
    assert sum(outcomes.values()) == CYCLES and outcomes["ok"] >= 10
    reply_path = {FaultKind.NO_REPLY, FaultKind.GARBLE, FaultKind.DROP, FaultKind.DISCONNECT, FaultKind.SLOW}
    assert all(injected["pump"].get(str(kind), 0) > 0 for kind in reply_path | {FaultKind.STALL}), injected
    assert all(injected["potentiostat"].get(str(kind), 0) > 0 for kind in reply_path | {FaultKind.OVERLOAD}), injected
    assert outcomes["potentiostat: Overload"] > 0 and outcomes["pump: PumpStalled"] > 0
    assert outcomes["pump: Disconnected"] + outcomes["potentiostat: Disconnected"] > 0
    assert retried["InstrumentTimeout"] > 0 and retried["ProtocolError"] > 0
    assert all(device.errors == [] for device in devices.values())


def test_two_devices_of_one_kind_draw_their_own_faults() -> None:
    """Two pumps of a rehearsal drew the very same faults, command for command (their injectors were seeded by the
    device's kind alone), so every pump fault of a dry run came twice (a chemist's trial). Each device of a kind
    draws its own now, the first of each kind what it always drew, and a rig built again draws them again."""
    plan = FaultPlan.uniform(0.3, seed=7)

    def draws(context: EmulatorContext) -> list[list[bool]]:
        injectors = [context.injector("ne1000"), context.injector("ne1000"), context.injector("emstat")]
        return [[injector.decide(FaultKind.NO_REPLY) for _ in range(64)] for injector in injectors]

    first, second, stat = draws(EmulatorContext(faults=plan))
    assert first != second and any(first) and any(second)
    assert draws(EmulatorContext(faults=plan)) == [first, second, stat]  # deterministic from the plan's seed
    alone = EmulatorContext(faults=plan).injector("emstat")  # the first of its kind, whatever came before
    assert [alone.decide(FaultKind.NO_REPLY) for _ in range(64)] == stat
