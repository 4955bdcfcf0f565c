"""NE-1000 driver against its firmware emulator on a real pty, plus exact wire sequences via replays."""

import contextlib
import json
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import serial

from labloop.core.errors import (
    ConfigError,
    DeviceError,
    Disconnected,
    DispenseMismatch,
    InstrumentError,
    InstrumentTimeout,
    PumpStalled,
    ReplayMismatch,
    SafetyLimitExceeded,
)
from labloop.instruments.contracts import Pump, PumpState, PumpStatus, RateUnit, SafetyLimits
from labloop.instruments.ne1000 import Direction, NE1000Bus, NE1000Pump, encode_quantity, number_text
from labloop.instruments.transport import ReplayTransport
from labloop.sim.cell import Cell, CellState, Fluid
from labloop.sim.faults import FaultInjector, FaultPlan
from labloop.sim.ne1000_emulator import NE1000Emulator, PumpSpec
from labloop.sim.pty_device import PtyDevice, TimeScale


def analyte_mM(state: CellState) -> float:
    """Concentration in the cell of the loaded sample's analyte (0 if none is loaded or dispensed)."""
    return state.analytes_mM.get(state.sample_id, 0.0) if state.sample_id is not None else 0.0


LIMITS = SafetyLimits(max_dispense_ml=2.0, syringe_ml=10.0, potential_window_v=(-1.0, 1.0))
OK = b"\x0200S\x03"
VER = b"\x0200SNE1000V3.928\x03"


@dataclass
class Line:
    emulator: NE1000Emulator
    device: PtyDevice
    bus: NE1000Bus
    cell: Cell

    def pump(self, address: int = 0, **options: float) -> NE1000Pump:
        options = {"time_scale": math.inf, "poll_s": 0.0, **options}
        return NE1000Pump(self.bus, address, limits=LIMITS, **options)  # type: ignore[arg-type]


@pytest.fixture
def make_line() -> Iterator[Callable[..., Line]]:
    """Emulated pumps on a pty with a driver bus opened on it; zero latency unless asked otherwise."""
    made: list[Line] = []

    def make(
        pumps: Iterable[PumpSpec] = (PumpSpec(),),
        *,
        time_scale: TimeScale | None = None,
        faults: FaultInjector | None = None,
        capture: Path | None = None,
        timeout_s: float = 0.2,
    ) -> Line:
        cell = Cell()
        emulator = NE1000Emulator(pumps, cell=cell, time_scale=time_scale or TimeScale.zero_latency())
        device = PtyDevice(emulator, faults=faults, name="ne1000").start()
        bus = NE1000Bus.open(device.port, capture=capture, timeout_s=timeout_s, settle_s=0.01)
        made.append(Line(emulator, device, bus, cell))
        return made[-1]

    yield make
    for line in made:
        line.bus.close()
        line.device.stop()
        assert line.device.errors == []


def write_capture(path: Path, exchanges: Iterable[tuple[bytes, bytes | None]]) -> Path:
    """A hand-made wire capture (command, reply or None for a lost reply): faults the emulator can't make."""
    with path.open("w") as f:
        for tx, rx in exchanges:
            f.write(json.dumps({"t": 0, "dir": "tx", "hex": tx.hex()}) + "\n")
            if rx is not None:
                f.write(json.dumps({"t": 0, "dir": "rx", "hex": rx.hex()}) + "\n")
    return path


# -- the emulator, as any serial client sees it ----------------------------------------------------------

GRAMMAR: list[tuple[bytes, bytes]] = [
    (b"VER\r", b"\x0200A?R\x03"),  # the first reply after power-up; VER itself is not executed
    (b"VER\r", VER),
    (b" d\x01ia \r", b"\x0200S26.59\x03"),  # spaces and control characters ignored, lower case accepted
    (b"\r", OK),  # empty command: status query
    (b"0DIA 26.59\r", OK),
    (b"DIA 26.591\r", b"\x0200S?OOR\x03"),  # 5 digits
    (b"DIA 90\r", b"\x0200S?OOR\x03"),  # beyond 80 mm
    (b"DIA 1.2.3\r", b"\x0200S?\x03"),
    (b"VOL 1.2345\r", b"\x0200S?OOR\x03"),  # 4 decimals
    (b"VOL 0.125\r", OK),
    (b"VOL\r", b"\x0200S0.125ML\x03"),
    (b"VOL UL\r", OK),
    (b"VOL\r", b"\x0200S0.125UL\x03"),  # units change, the number stays
    (b"VOL ML\r", OK),
    (b"RAT 5 MM\r", OK),
    (b"RAT\r", b"\x0200S5.000MM\x03"),
    (b"RAT 99 MM\r", b"\x0200S?OOR\x03"),  # faster than the plunger goes with 26.59 mm
    (b"RAT 5 XX\r", b"\x0200S?\x03"),
    (b"DIR WDR\r", OK),
    (b"DIR\r", b"\x0200SWDR\x03"),
    (b"DIR REV\r", OK),
    (b"DIR\r", b"\x0200SINF\x03"),
    (b"DIR STK\r", b"\x0200S?NA\x03"),
    (b"FOO\r", b"\x0200S?\x03"),
    (b"DIS\r", b"\x0200SI0.000W0.000ML\x03"),
    (b"RUN\r", b"\x0200I\x03"),  # 0.125 mL at 5 mL/min: 1.5 s in real time
    (b"VOL UL\r", b"\x0200I?NA\x03"),  # no unit or volume changes while running
    (b"RAT 5 UM\r", b"\x0200I?NA\x03"),
    (b"RAT 4\r", b"\x0200I\x03"),  # the rate value may change
    (b"RUN\r", b"\x0200I?NA\x03"),
    (b"STP\r", b"\x0200P\x03"),  # running -> paused
    (b"RUN\r", b"\x0200I\x03"),  # resumes
    (b"STP\r", b"\x0200P\x03"),
    (b"STP\r", OK),  # paused -> stopped
    (b"STP\r", b"\x0200S?NA\x03"),  # already stopped
    (b"CLD INF\r", OK),
    (b"CLD\r", b"\x0200S?\x03"),
    (b"DIS\r", b"\x0200SI0.000W0.000ML\x03"),
    (b"PUR\r", b"\x0200X\x03"),
    (b"STP\r", OK),
    (b"*ADR\r", b"\x0200S00\x03"),
    (b"*ADR 100\r", b"\x0200S?OOR\x03"),
    (b"SAF\r", b"\x0200S0\x03"),
    (b"1DIS\r", b"\x0201A?R\x03"),  # the second pump on the line has its own power-up alarm
    (b"01 dis\r", b"\x0201SI0.000W0.000UL\x03"),  # 4.699 mm syringe: uL by default
    (b"7VER\r", b""),  # nobody at address 7: silence
]


def test_a_plain_pyserial_client_gets_byte_exact_replies(make_line: Callable[..., Line]) -> None:
    line = make_line([PumpSpec(0), PumpSpec(1, diameter_mm=4.699)], time_scale=TimeScale.real_time())
    line.bus.close()  # this test is a bare serial terminal, no driver
    with serial.Serial(line.device.port, 19200, timeout=10) as client:
        for command, expected in GRAMMAR:
            client.write(command)
            assert client.read_until(b"\x03") == expected, command


# -- driver <-> emulator ---------------------------------------------------------------------------------


def test_every_command_round_trips_through_driver_and_emulator(make_line: Callable[..., Line]) -> None:
    line = make_line()
    pump = line.pump()
    assert isinstance(pump, Pump)
    assert pump.firmware == "NE1000V3.928"
    assert line.device.received == b"0VER\r0VER\r"  # the power-up A?R was acknowledged by re-sending

    pump.set_diameter(14.43)
    assert pump.diameter() == 14.43 == line.emulator.snapshot(0).diameter_mm
    rates = [(250, RateUnit.UL_MIN), (1.5, RateUnit.ML_MIN), (9000, RateUnit.UL_H), (12.5, "mL/h")]
    for value, unit in rates:
        pump.set_rate(value, unit)
        assert pump.rate() == (value, RateUnit(unit))
        assert line.emulator.snapshot(0).rate_ml_min == pytest.approx(value * RateUnit(unit).ml_min)
    for volume in (0.25, 12.5):  # uL and mL on the wire
        pump.set_volume(volume)
        assert pump.volume_ml() == volume == pytest.approx(line.emulator.snapshot(0).volume_ml)
    assert b"0VOL UL\r0VOL 250\r" in line.device.received and b"0VOL ML\r0VOL 12.5\r" in line.device.received
    pump.set_direction(Direction.WITHDRAW)
    assert pump.direction() is Direction.WITHDRAW and line.emulator.snapshot(0).direction == "WDR"
    pump.set_direction("INF")

    pump.set_volume(0.5)
    pump.set_rate(5, RateUnit.ML_MIN)
    assert pump.run() is PumpState.INFUSING
    assert pump.status() == PumpStatus(PumpState.STOPPED, 0.5, 0.0)  # zero latency: done at the next look
    pump.clear_dispensed(Direction.INFUSE)
    assert pump.dispensed() == (0.0, 0.0) and line.emulator.snapshot(0).infused_ml == 0.0

    pump.change_address(42, baudrate=9600)
    assert pump.address == 42 and line.emulator.snapshot(42).baud == 9600
    assert pump.state() is PumpState.STOPPED
    assert line.device.received.endswith(b"0*ADR 42 B 9600\r42\r")


def test_dispense_and_withdraw_report_pump_counters_and_fill_the_cell(make_line: Callable[..., Line]) -> None:
    line = make_line([PumpSpec(0, Fluid.ELECTROLYTE), PumpSpec(1, Fluid.SAMPLE)])
    line.cell.load_sample("TEMPO", 10.0)
    electrolyte, sample = line.pump(0), line.pump(1)
    assert electrolyte.dispense(0.9, 5.0) == pytest.approx(0.9)
    assert sample.dispense(0.1, 1.0) == pytest.approx(0.1)
    state = line.cell.state()
    assert state.volume_ml == pytest.approx(1.0)
    assert analyte_mM(state) == pytest.approx(1.0)  # 0.1 mL of 10 mM in 1 mL
    assert dict(state.dispensed_ml) == pytest.approx({"ne1000:00": 0.9, "ne1000:01": 0.1})
    assert electrolyte.content_ml == pytest.approx(LIMITS.syringe_ml - 0.9)

    assert electrolyte.withdraw(0.5, 2.0) == pytest.approx(0.5)  # refills from its reservoir
    assert line.emulator.snapshot(0).withdrawn_ml == pytest.approx(0.5)
    assert line.cell.state().volume_ml == pytest.approx(1.0)
    assert electrolyte.content_ml == pytest.approx(LIMITS.syringe_ml - 0.4)
    line.cell.rinse()
    assert line.cell.state().volume_ml == 0 and analyte_mM(line.cell.state()) == 0
    sample.dispense(0.1, 1.0)
    line.cell.unload_sample()
    assert line.cell.state().sample_id is None and analyte_mM(line.cell.state()) == 0
    assert line.cell.state().analytes_mM == {"TEMPO": pytest.approx(10.0)}  # still in the cell


def test_errors_come_back_as_typed_device_errors(make_line: Callable[..., Line]) -> None:
    line = make_line(time_scale=TimeScale.real_time())
    pump = line.pump()
    with pytest.raises(DeviceError, match="out of range") as oor:
        pump.set_rate(50, RateUnit.ML_MIN)  # a 26.59 mm syringe tops out near 28 mL/min
    assert oor.value.code == "?OOR"
    with pytest.raises(DeviceError) as unknown:
        line.bus.command(0, "XYZ")
    assert unknown.value.code == "?"
    assert line.device.received.count(b"0XYZ\r") == 1  # a refusal is not retried

    pump.set_volume(0)  # continuous
    pump.set_rate(1, RateUnit.ML_MIN)
    pump.run()
    with pytest.raises(DeviceError, match="not applicable") as na:
        pump.set_rate(900, RateUnit.UL_MIN)  # units may not change while running
    assert na.value.code == "?NA"
    pump.set_rate(2, RateUnit.ML_MIN)  # the value may
    pump.stop()  # infusing -> paused -> stopped
    assert line.emulator.snapshot(0).status == "S"
    assert line.device.received.count(b"0STP\r") == 2
    pump.stop()  # stopping a stopped pump is fine, and sends no STP
    assert line.device.received.count(b"0STP\r") == 2


def test_power_up_alarm_is_acknowledged_on_connect_and_typed_later(make_line: Callable[..., Line]) -> None:
    line = make_line()
    pump = line.pump(diameter_mm=10.3)
    line.emulator.power_cycle()
    with pytest.raises(DeviceError, match="reset") as reset:
        pump.state()
    assert reset.value.code == "A?R"
    assert pump.state() is PumpState.STOPPED  # the alarm was reported once
    assert pump.diameter() == 10.3  # settings survive a power loss


def test_stray_bytes_in_the_pumps_input_do_not_fail_connecting(make_line: Callable[..., Line]) -> None:
    line = make_line()
    line.pump()  # the power-up A?R acknowledged: the next "?" is the stray bytes', not the alarm's
    line.bus.close()
    with serial.Serial(line.device.port, 19200, timeout=1) as terminal:  # another program typed, no \r
        terminal.write(b"hello")
        terminal.flush()
    bus = NE1000Bus.open(line.device.port, timeout_s=0.2, settle_s=0.01)
    try:
        pump = NE1000Pump(bus, 0, limits=LIMITS, time_scale=math.inf, poll_s=0.0)
        assert pump.firmware == "NE1000V3.928"
        assert line.device.received.endswith(b"hello0VER\r0VER\r")  # "?" to the first, then asked again
        pump.set_diameter(12.0)
        assert line.emulator.snapshot(0).diameter_mm == 12.0
    finally:
        bus.close()


def test_a_pump_that_does_not_answer_on_connecting_is_told_what_to_check(make_line: Callable[..., Line]) -> None:
    line = make_line()  # one emulated pump, at address 0: the pump asked for at 3 answers nothing
    with pytest.raises(InstrumentTimeout) as silent:
        line.pump(address=3)
    message = str(silent.value)
    assert message.startswith("NE-1000 #03 on ") and "no reply to 'VER'" in message
    assert "is its address 3" in message and "baud rate" in message and "SAF0" in message
    # the empty command, the status poll a dispense waits with, by that name: "no reply to ''" told an operator
    # nothing (a hardware trial's hung pump)
    with pytest.raises(InstrumentTimeout, match=r"^NE-1000 #03 on .*: no reply to a status poll: "):
        line.bus.command(3, "")


def test_a_stall_raises_pump_stalled(make_line: Callable[..., Line]) -> None:
    line = make_line(faults=FaultInjector(FaultPlan(stall=1.0, seed=3)))
    pump = line.pump()
    with pytest.raises(PumpStalled, match="NE-1000 #00") as stalled:
        pump.dispense(1.0, 5.0)
    # the alarm came in reply to the status poll the dispense waited with: said so, not "in reply to ''"
    assert str(stalled.value).endswith("alarm A?S (motor stalled) in reply to a status poll"), str(stalled.value)
    snap = line.emulator.snapshot(0)
    assert 0 < snap.infused_ml < 1.0 and snap.status == "S" and snap.alarm is None
    assert line.cell.state().volume_ml == pytest.approx(snap.infused_ml)
    pump.stop()
    pump.stop()


def test_several_pumps_share_one_line_by_address(make_line: Callable[..., Line]) -> None:
    line = make_line([PumpSpec(a) for a in (0, 5, 99)])
    pumps = {a: line.pump(a) for a in (0, 5, 99)}
    failures: list[BaseException] = []
    volume = {0: 0.1, 5: 0.2, 99: 0.3}

    def work(address: int) -> None:
        try:
            for _ in range(5):
                assert pumps[address].dispense(volume[address], 2.0) == pytest.approx(volume[address])
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(a,)) for a in pumps]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert failures == []
    for a in pumps:
        assert line.emulator.snapshot(a).infused_ml == pytest.approx(volume[a])  # CLD before each run
        assert line.cell.state().dispensed_ml[f"ne1000:{a:02d}"] == pytest.approx(5 * volume[a])
    assert line.bus.retried == {}


def test_safety_limits_and_bad_values_are_refused_before_any_byte(make_line: Callable[..., Line]) -> None:
    line = make_line()
    pump = line.pump(content_ml=1.0)
    sent = line.device.received
    with pytest.raises(SafetyLimitExceeded, match=r"NE-1000 #00 .*limit of 2 mL"):
        pump.dispense(2.5, 1.0)
    with pytest.raises(SafetyLimitExceeded, match="exceeds the 1 mL left in the 10 mL syringe"):
        pump.dispense(1.5, 1.0)
    with pytest.raises(SafetyLimitExceeded, match="overfills"):
        pump.withdraw(9.5, 1.0)
    for bad in [
        lambda: pump.dispense(1e-7, 1.0),
        lambda: pump.dispense(0.5, math.nan),
        lambda: pump.dispense(-0.1, 1.0),
        lambda: pump.set_rate(12345, "uL/min"),
        lambda: pump.set_diameter(120),
    ]:
        with pytest.raises(ConfigError):
            bad()
    time.sleep(0.05)  # anything written would have reached the emulator by now
    assert line.device.received == sent
    assert pump.content_ml == 1.0


def test_a_pump_alone_on_its_port_owns_and_closes_it(make_line: Callable[..., Line]) -> None:
    line = make_line()
    line.bus.close()  # the fixture's bus lets go of the port, which one opener holds at a time
    pump = NE1000Pump.open(line.device.port, limits=LIMITS, time_scale=math.inf, poll_s=0.0)
    assert pump.dispense(0.2, 5.0) == pytest.approx(0.2)
    pump.close()
    pump.close()
    with pytest.raises(Disconnected, match="port is closed"):
        pump.state()


def test_safety_limits_validate_themselves() -> None:
    with pytest.raises(ConfigError):
        SafetyLimits(max_dispense_ml=5.0, syringe_ml=1.0, potential_window_v=(-1, 1))
    with pytest.raises(ConfigError):
        SafetyLimits(max_dispense_ml=1.0, syringe_ml=5.0, potential_window_v=(1, -1))
    with pytest.raises(SafetyLimitExceeded):
        LIMITS.check_potentials(0.5, 1.2, where="cv")


def test_numbers_follow_the_four_digit_rule() -> None:
    assert [number_text(x) for x in (26.59, 1.5, 5.0, 0.125, 1000, 12345, 0.0004)] == [
        "26.59",
        "1.5",
        "5",
        "0.125",
        "1000",
        None,
        "0",
    ]
    units = {"UL": 1e-3, "ML": 1.0}
    assert encode_quantity(0.1, units, "p", "volume") == ("100", "UL", pytest.approx(0.1))
    assert encode_quantity(12.3456, units, "p", "volume") == ("12.35", "ML", pytest.approx(12.35))
    rates = {"MM": 1.0, "UM": 1e-3, "MH": 1 / 60, "UH": 1e-3 / 60}
    assert encode_quantity(0.1234567, rates, "p", "rate")[:2] == ("7.407", "MH")  # beats 123.5 uL/min
    for impossible in (1e-7, 12345.0):
        with pytest.raises(ConfigError, match="4-digit"):
            encode_quantity(impossible, units, "p", "volume")


def test_an_absent_pump_times_out_after_bounded_retries(make_line: Callable[..., Line]) -> None:
    line = make_line(timeout_s=0.05)
    with pytest.raises(InstrumentTimeout, match="NE-1000 #07"):
        line.pump(7)
    assert line.bus.retried == {"InstrumentTimeout": 3}
    assert line.device.received == b"7VER\r" * 4


def test_time_scale_accelerated_and_the_run_deadline(make_line: Callable[..., Line]) -> None:
    line = make_line(time_scale=TimeScale.accelerated(30.0))
    pump = line.pump(time_scale=30.0, poll_s=0.005)
    start = time.monotonic()
    assert pump.dispense(0.05, 1.0) == pytest.approx(0.05)  # 3 s of pumping, 0.1 s at 30x
    assert time.monotonic() - start >= 0.09
    assert line.device.received.count(b"0\r") >= 3  # polled while it was infusing

    slow = make_line(time_scale=TimeScale.real_time())  # the driver believes in a 600x world
    pump = slow.pump(time_scale=600.0, poll_s=0.005, run_margin_s=0.1)
    with pytest.raises(InstrumentTimeout, match="did not finish"):
        pump.dispense(0.05, 1.0)
    snap = slow.emulator.snapshot(0)
    assert snap.status == "S" and 0 < snap.infused_ml < 0.05  # and the pump was stopped


def test_a_pump_paused_from_outside_the_run_ends_it_stopped_and_short(make_line: Callable[..., Line]) -> None:
    """A STP the run did not send (front panel, a safe stop from another thread) pauses the pump: the
    run ends there, the pump is brought to a full stop (RUN would resume it) and the counter says short."""
    line = make_line(time_scale=TimeScale.real_time(), timeout_s=2.0)  # STP is sent once: a busy machine may be slow
    pump = line.pump(poll_s=0.01)
    errors: list[BaseException] = []

    def dispense() -> None:
        try:
            pump.dispense(0.5, 1.0)  # 30 s in real time
        except DispenseMismatch as exc:
            errors.append(exc)

    worker = threading.Thread(target=dispense)
    worker.start()
    deadline = time.monotonic() + 30
    while line.emulator.snapshot(0).status != "I" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert line.bus.command(0, "STP", retry_safe=False).status == "P"  # paused, as one STP leaves it
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert len(errors) == 1 and "where 0.5 mL was asked" in str(errors[0])
    snap = line.emulator.snapshot(0)
    assert snap.status == "S" and 0 < snap.infused_ml < 0.5


def _left_infusing(line: Line, pump: NE1000Pump, rate_ml_min: float) -> threading.Thread:
    """``pump`` dispensing 0.5 mL in a thread of its own, once the emulator says it infuses: the thread ends in an
    error, unsaid, once its driver is dropped (as a killed run's is)."""
    def dispensing() -> None:
        with contextlib.suppress(Exception):
            pump.dispense(0.5, rate_ml_min)

    run = threading.Thread(target=dispensing, daemon=True)
    run.start()
    deadline = time.monotonic() + 30  # liveness only
    while line.emulator.snapshot(0).status != "I":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return run


def test_a_pump_left_pumping_by_a_killed_run_is_stopped_when_opened(make_line: Callable[..., Line], caplog) -> None:
    """A run killed (kill -9) 8 s into a 54 s dispense left the pump infusing; the resume's driver sent DIA, which a
    running pump refuses (?NA), and the resume was refused as "does not answer as driver 'ne1000' expects" while the
    pump went on filling the cell (a hardware trial). Opening a pump now stops it when its first reply says it runs,
    and says so; and says to the rig that it was infusing, which refuses the start (docs/drivers.md). Paused (a STP
    mid-phase), it moved nothing since: stopped, and nothing for the rig to refuse."""
    line = make_line(time_scale=TimeScale.real_time(), timeout_s=2.0)
    killed = line.pump(poll_s=0.01)
    run = _left_infusing(line, killed, 1.0)  # 30 s at 1 mL/min
    killed.bus = None  # type: ignore[assignment]  # the killed process's driver says nothing more
    resumed = line.pump(poll_s=0.01, diameter_mm=4.61)  # as a resume opens it: VER, then DIA
    assert line.emulator.snapshot(0).status == "S"
    assert resumed.state() is PumpState.STOPPED
    assert any("infusing when opened" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    assert resumed.found_running == "infusing"
    run.join(timeout=60)
    paused = _left_infusing(line, resumed, 0.5)  # 60 s at 0.5 mL/min on the resume's 4.61 mm syringe
    line.bus.command(0, "STP")
    assert line.emulator.snapshot(0).status == "P"
    resumed.bus = None  # type: ignore[assignment]
    again = line.pump(poll_s=0.01, diameter_mm=4.61)
    assert line.emulator.snapshot(0).status == "S" and again.found_running is None
    paused.join(timeout=60)


# -- replays: exact wire sequences, and faults the emulator cannot make ----------------------------------


def test_a_captured_session_replays_without_emulator(make_line: Callable[..., Line], tmp_path: Path) -> None:
    wire = tmp_path / "ne1000.jsonl"
    line = make_line(capture=wire)

    def session(pump: NE1000Pump) -> tuple[object, ...]:
        return pump.firmware, pump.dispense(0.25, 2.0), pump.status(), pump.withdraw(0.1, 1.0), pump.rate()

    live = session(line.pump(diameter_mm=26.59))
    line.bus.close()
    line.device.stop()

    replay = ReplayTransport(wire)
    assert session(NE1000Pump(NE1000Bus(replay), 0, limits=LIMITS, diameter_mm=26.59, poll_s=0)) == live
    replay.finish()

    deviant = NE1000Pump(NE1000Bus(ReplayTransport(wire)), 0, limits=LIMITS, diameter_mm=26.59, poll_s=0)
    with pytest.raises(ReplayMismatch, match="0VOL 300"):
        deviant.dispense(0.3, 2.0)


CONNECT = [(b"0VER\r", VER)]
SETUP_0_1_ML = [  # dispense(0.1 mL, 5 mL/min) on a stopped pump, up to RUN
    (b"0\r", OK),
    (b"0VOL UL\r", OK),
    (b"0VOL 100\r", OK),
    (b"0RAT 5 MM\r", OK),
    (b"0DIR INF\r", OK),
    (b"0CLD INF\r", OK),
]
DIS_100_UL = (b"0DIS\r", b"\x0200SI100.0W0.000UL\x03")


def replayed_pump(
    tmp_path: Path, exchanges: list[tuple[bytes, bytes | None]]
) -> tuple[NE1000Pump, ReplayTransport]:
    replay = ReplayTransport(write_capture(tmp_path / "hand.jsonl", exchanges))
    return NE1000Pump(NE1000Bus(replay, timeout_s=0.05), 0, limits=LIMITS, poll_s=0.0), replay


def test_the_exact_bytes_of_a_dispense(tmp_path: Path) -> None:
    run = [(b"0RUN\r", b"\x0200I\x03"), (b"0\r", b"\x0200I\x03"), (b"0\r", OK), (b"0\r", OK), DIS_100_UL]
    pump, replay = replayed_pump(tmp_path, CONNECT + SETUP_0_1_ML + run)
    assert pump.dispense(0.1, 5.0) == pytest.approx(0.1)  # the end of the run is read twice
    replay.finish()


def test_a_run_ends_only_when_two_readings_agree(tmp_path: Path) -> None:
    """One noisy ``S`` mid-run is not the end (the counter read then would be judged short), and a pause
    after a lost RUN reply is confirmed, then the pump is stopped and the counter decides."""
    noisy = [(b"0RUN\r", b"\x0200I\x03"), (b"0\r", OK), (b"0\r", b"\x0200I\x03"), (b"0\r", OK), (b"0\r", OK),
             DIS_100_UL]
    pump, replay = replayed_pump(tmp_path, CONNECT + SETUP_0_1_ML + noisy)
    assert pump.dispense(0.1, 5.0) == pytest.approx(0.1)
    replay.finish()

    paused, half = (b"0\r", b"\x0200P\x03"), (b"0DIS\r", b"\x0200SI50.00W0.000UL\x03")
    lost_then_paused = [(b"0RUN\r", None), paused,  # RUN's reply lost; the pump was paused right after it
                        paused, paused,  # the wait confirms the pause
                        paused, (b"0STP\r", OK), (b"0\r", OK),  # and stops the pump fully
                        half, half]
    pump, replay = replayed_pump(tmp_path, CONNECT + SETUP_0_1_ML + lost_then_paused)
    with pytest.raises(DispenseMismatch, match=r"0\.05 mL where 0\.1 mL"):
        pump.dispense(0.1, 5.0)
    replay.finish()


def test_a_lost_run_reply_is_checked_not_blindly_resent(tmp_path: Path) -> None:
    lost_run = [(b"0RUN\r", None), (b"0\r", OK)]
    zero = (b"0DIS\r", b"\x0200SI0.000W0.000UL\x03")
    started = [DIS_100_UL, DIS_100_UL, (b"0\r", OK), (b"0\r", OK), DIS_100_UL]
    never_started = [zero, zero, (b"0RUN\r", b"\x0200I\x03"), (b"0\r", OK), (b"0\r", OK), DIS_100_UL]
    corrupted_zero = [(b"0DIS\r", b"\x0200SI00.0W0.000UL\x03"), *started]  # "I100.0" lost its 1
    for after_run in (started, never_started, corrupted_zero):
        pump, replay = replayed_pump(tmp_path, CONNECT + SETUP_0_1_ML + lost_run + after_run)
        assert pump.dispense(0.1, 5.0) == pytest.approx(0.1)  # RUN re-sent only after two zero readings
        replay.finish()


def test_a_short_dispense_is_a_mismatch_and_a_flipped_digit_is_reread(tmp_path: Path) -> None:
    run = [(b"0RUN\r", b"\x0200I\x03"), (b"0\r", OK), (b"0\r", OK)]
    short = (b"0DIS\r", b"\x0200SI90.00W0.000UL\x03")
    pump, replay = replayed_pump(tmp_path, CONNECT + SETUP_0_1_ML + run + [short, short])
    with pytest.raises(DispenseMismatch, match=r"0\.09 mL where 0\.1 mL"):
        pump.dispense(0.1, 5.0)
    replay.finish()

    flipped = (b"0DIS\r", b"\x0200SI108.0W0.000UL\x03")
    pump, replay = replayed_pump(tmp_path, CONNECT + SETUP_0_1_ML + run + [flipped, DIS_100_UL, DIS_100_UL])
    assert pump.dispense(0.1, 5.0) == pytest.approx(0.1)
    replay.finish()


def test_codes_the_emulator_never_sends_are_typed_too(tmp_path: Path) -> None:
    pump, replay = replayed_pump(tmp_path, [(b"0VER\r", b"\x0200S?COM\x03"), *CONNECT])
    assert pump.bus.retried == {"ProtocolError": 1}  # ?COM: the pump saw line noise; VER is safe to repeat
    replay.finish()
    for reply, code in [(b"\x0200S?IGN\x03", "?IGN"), (b"\x0200A?E\x03", "A?E"), (b"\x0200A?O\x03", "A?O")]:
        pump, replay = replayed_pump(tmp_path, [*CONNECT, (b"0DIA 26.59\r", reply)])
        with pytest.raises(DeviceError) as err:
            pump.set_diameter(26.59)
        assert err.value.code == code
        replay.finish()


@pytest.fixture
def chain() -> Iterator[PtyDevice]:
    """Two emulated pumps of one RS-232 chain (addresses 0 and 1, syringes of two diameters) on one pty."""
    emulator = NE1000Emulator([PumpSpec(address=0, diameter_mm=4.61), PumpSpec(address=1, diameter_mm=14.57)],
                              cell=Cell(), time_scale=TimeScale.zero_latency())
    device = PtyDevice(emulator, name="ne1000").start()
    yield device
    device.stop()
    assert device.errors == []


def test_pumps_of_one_chain_share_its_line_and_each_gets_its_own_replies(chain: PtyDevice, tmp_path: Path) -> None:
    """Pumps opened on one line (one of them through a link to it, as /dev/serial/by-id names a tty) share one
    bus: commands sent from two threads at once (a stop of one pump while the other's command waits for its
    reply, as the rig's safe state does) each read their own pump's answer. Each on its own port, they read each
    other's: "reply from address 01"."""
    link = tmp_path / "ttyCHAIN"
    link.symlink_to(chain.port)
    options = {"limits": LIMITS, "time_scale": math.inf, "poll_s": 0.0}
    first = NE1000Pump.open(chain.port, 0, **options)  # type: ignore[arg-type]
    second = NE1000Pump.open(str(link), 1, **options)  # type: ignore[arg-type]
    assert first.bus is second.bus
    wrong: list[str] = []

    def ask(pump: NE1000Pump, diameter_mm: float) -> None:
        for _ in range(200):
            try:
                if (said := pump.diameter()) != pytest.approx(diameter_mm):
                    wrong.append(f"{pump.where}: {said}")
            except InstrumentError as exc:
                wrong.append(f"{pump.where}: {exc}")

    threads = [threading.Thread(target=ask, args=(first, 4.61)), threading.Thread(target=ask, args=(second, 14.57))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == [] and not first.bus.retried
    first.close()
    assert second.diameter() == pytest.approx(14.57)  # the line stays open for the pump still using it
    second.close()
    again = NE1000Pump.open(chain.port, 0, **options)  # type: ignore[arg-type]
    assert again.bus is not first.bus and again.diameter() == pytest.approx(4.61)  # the last closed the line
    again.close()


def test_a_pump_at_a_taken_address_or_with_other_link_settings_is_refused_on_a_shared_line(chain: PtyDevice) -> None:
    """The pumps of one line share its link settings and have distinct addresses; a second pump asking otherwise
    is one line naming both, and the line stays the first pump's."""
    options = {"limits": LIMITS, "time_scale": math.inf, "poll_s": 0.0}
    first = NE1000Pump.open(chain.port, 0, **options)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="already at address 0: both would command one device"):
        NE1000Pump.open(chain.port, 0, **options)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"address\(es\) 0, opened with other link settings \(baudrate 9600 where "
                                          r"it has 19200\)"):
        NE1000Pump.open(chain.port, 1, baudrate=9600, **options)  # type: ignore[arg-type]
    assert first.diameter() == pytest.approx(4.61)
    first.close()
