"""EmStat (MethodSCRIPT) driver and firmware emulator over real ptys, plus the wire format on its own."""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import serial

from labloop.core.errors import (
    ConfigError,
    DeviceError,
    Disconnected,
    InstrumentError,
    InstrumentTimeout,
    Overload,
    SafetyLimitExceeded,
)
from labloop.instruments.contracts import Potentiostat, SafetyLimits
from labloop.instruments.cv_analysis import CVFlag, analyze_cv
from labloop.instruments.emstat import EmStatPotentiostat
from labloop.instruments.methodscript import (
    LineKind,
    Status,
    as_written,
    classify,
    cv_script,
    encode_variable,
    parse_error,
    parse_package,
    parse_script_number,
    script_number,
)
from labloop.instruments.voltammogram import CVParams
from labloop.sim.cv_physics import CellParams
from labloop.sim.emstat_emulator import EmStatEmulator
from labloop.sim.emulation import EmulatorContext
from labloop.sim.faults import FaultInjector, FaultPlan
from labloop.sim.pty_device import PtyDevice, TimeScale

LIMITS = SafetyLimits(max_dispense_ml=1.0, syringe_ml=10.0, potential_window_v=(-1.0, 1.0))
COUPLE = CellParams(e0_v=0.1, conc_mm=1.0, cdl_f_cm2=2e-5, noise_fraction=0.002)
SHORT = CVParams(e_begin_v=-0.2, e_vertex1_v=0.4, e_vertex2_v=-0.2, scan_rate_v_s=0.1, e_step_v=0.005)


@dataclass
class Rig:
    emulator: EmStatEmulator
    device: PtyDevice

    def driver(self, **options: object) -> EmStatPotentiostat:
        options = {"time_scale": self.emulator.time_scale.factor, "error_pause_s": 0.0, "timeout_s": 0.3,
                   **options}
        return EmStatPotentiostat.open(self.device.port, limits=LIMITS, **options)  # type: ignore[arg-type]


@pytest.fixture
def make_rig() -> Iterator[Callable[..., Rig]]:
    """An emulated EmStat on a pty holding ``couple`` (zero latency unless asked otherwise)."""
    made: list[tuple[Rig, list[EmStatPotentiostat]]] = []

    def make(couple: CellParams = COUPLE, *, time_scale: TimeScale | None = None,
             faults: FaultInjector | None = None) -> Rig:
        context = EmulatorContext.standalone(couple, time_scale=time_scale or TimeScale.zero_latency())
        emulator = EmStatEmulator(context.contents, time_scale=context.time_scale)
        rig = Rig(emulator, PtyDevice(emulator, faults=faults, name="emstat").start())
        made.append((rig, []))
        return rig

    yield make
    for rig, _ in made:
        rig.device.stop()
        assert rig.device.errors == []


# -- the wire format ---------------------------------------------------------------------------------------


def test_the_worked_example_package_decodes() -> None:
    da, ba = parse_package("Pda7F85F3Fu;ba4BA99F0p,10,288")
    assert (da.type, ba.type) == ("da", "ba")
    assert da.value == pytest.approx(-0.4999, abs=1e-5)
    assert ba.value == pytest.approx(-54.9e-6, rel=1e-3)
    assert ba.status is Status.OK and ba.current_range == 0x88
    assert da.current_range is None
    assert encode_variable("da", da.value) == "da7F85F3Fu"  # finest prefix that fits 7 hex digits
    assert encode_variable("ba", ba.value, ",10,288") == "ba4BA99F0p,10,288"


def test_package_metadata_nan_and_malformed_packages() -> None:
    (var,) = parse_package("Pba     nan,1A,20B")
    assert math.isnan(var.value) and var.status == Status.OVERLOAD | Status.OVERLOAD_WARNING
    assert var.current_range == 0x0B
    (var,) = parse_package("Peb8000010i,41")  # integer prefix, noise metadata
    assert var.value == 16
    for bad in ["Pda7F85F3F", "Pda7F85F3Gu", "Pda7F85F3Fx", "Pda7F85F3Fu;", "Pba4BA99F0p,100", "Pba4BA99F0p,5",
                "da7F85F3Fu", "P"]:
        assert parse_package(bad) is None, bad


def test_script_numbers_take_si_prefixes_and_no_decimal_point() -> None:
    values = [0.5, -0.5, 0.01, 0.1, 0.0, 1.0, 1e-9, 5e-3, -0.4999, 2.5e-5]
    texts = ["500m", "-500m", "10m", "100m", "0", "1", "1n", "5m", "-499900u", "25u"]
    assert [script_number(v) for v in values] == texts
    assert [parse_script_number(t) for t in texts] == pytest.approx(values)
    assert script_number(1 / 3) == "333333u"  # rounded only when no prefix writes it exactly
    assert parse_script_number("0.5") is None and parse_script_number("5x") is None
    with pytest.raises(ConfigError):
        script_number(math.inf)


def test_reply_lines_are_classified() -> None:
    kinds = {"e": LineKind.ACCEPTED, "M0005": LineKind.LOOP_START, "Pda8000000u": LineKind.PACKAGE,
             "*": LineKind.LOOP_END, "L": LineKind.PLAIN_LOOP_START, "+": LineKind.PLAIN_LOOP_END,
             "C0001": LineKind.SCAN_START, "-": LineKind.SCAN_END, "Z": LineKind.ABORTED, "": LineKind.END,
             "!0006": LineKind.ERROR, "e!4004: Line 6, Col 20": LineKind.ERROR, "M005": None, "hello": None}
    assert {line: classify(line) for line in kinds} == kinds
    error = parse_error("Z!0006")
    assert error is not None and (error.echo, error.code, error.text, error.detail) == ("Z", 6, "!0006", "")
    assert parse_error("e!4004: Line 6, Col 20").detail == "Line 6, Col 20"


def test_cv_script_has_the_methodscript_shape() -> None:
    params = CVParams(e_begin_v=0.0, e_vertex1_v=0.5, e_vertex2_v=-0.5, e_step_v=0.01, scan_rate_v_s=0.1, n_scans=3)
    assert cv_script(params) == [
        "e", "var c", "var p", "set_pgstat_mode 2", "set_max_bandwidth 40", "set_range ba 100u",
        "set_autoranging ba 1n 5m", "set_e 0", "cell_on",
        "meas_loop_cv p c 0 500m -500m 10m 100m nscans(3)",
        "  pck_start", "  pck_add p", "  pck_add c", "  pck_add c", "  pck_end", "endloop",
        "on_finished:", "  cell_off", "",
    ]
    fixed = cv_script(CVParams(e_begin_v=0.0, e_vertex1_v=0.5, e_vertex2_v=0.0, scan_rate_v_s=0.05,
                               current_range_a=1e-5))
    assert "set_range ba 10u" in fixed and "set_autoranging ba 10u 10u" in fixed
    assert "meas_loop_cv p c 0 500m 0 1m 50m" in fixed


# -- the emulator, as any serial client sees it ---------------------------------------------------------------

GRAMMAR: list[tuple[bytes, bytes]] = [
    (b"t\n", b"tespico1207#Oct 10 2023 10:00:00\nR*\n"),
    (b"\n", b""),  # a blank line while idle is ignored
    (b"Z\n", b"Z!0006\n"),  # nothing running
    (b"i\n", b"iESPSIM0001\n"),
    (b"v\n", b"v0108\n"),
    (b"xyz\n", b"x!0003\n"),
    (b"e\nvar c\nset_e 0.5\n\n", b"e!4002: Line 2, Col 7\n"),  # no decimal point in MethodSCRIPT
    (b"e\nvar c\nfoo 1\n\n", b"e!4001: Line 2, Col 1\n"),
    (b"e\nset_e 3\n\n", b"e!4004: Line 1, Col 7\n"),  # beyond the Pico's +2 V
    (b"e\nvar p\nmeas_loop_cv p c 0 1 -1 10m 100m\nendloop\n\n", b"e!4003: Line 2, Col 16\n"),
    (b"e\nvar p\nvar c\nmeas_loop_cv p c 0 1 -1 10m 100m\n\n", b"e!4005: Line 3, Col 1\n"),
    (b"e\nendloop\n\n", b"e!4005: Line 1, Col 1\n"),
    (b"e\nvar p\nvar c\nmeas_loop_cv p c 0 1 -1 10m 100m\npck_add p\nendloop\n\n", b"e!4005: Line 4, Col 1\n"),
    (b"e\ncell_on\n# a comment\n\tcell_off # inline comment\n\n", b"e\n\n"),  # no loop: only e and the end
    (b"e\nset_ir_comp -5\n\n", b"e!4004: Line 1, Col 13\n"),  # iR compensation: 0..1 Mohm
    (b"e\nset_ir_comp\n\n", b"e!4002: Line 1, Col 1\n"),
    (b"e\nset_ir_comp 850\ncell_on\ncell_off\n\n", b"e\n\n"),
    (b"e\nvar f\nvar r\nvar j\nmeas_loop_eis f r j 10m 1000000 10 11i 0\nendloop\n\n",
     b"e!4004: Line 4, Col 25\n"),  # beyond the Pico's 200 kHz
    (b"e\nvar f\nvar r\nvar j\nmeas_loop_eis f r j 10m 100000 10 0i 0\nendloop\n\n", b"e!4004: Line 4, Col 35\n"),
    (b"e\nvar f\nvar r\nmeas_loop_eis f r j 10m 100000 10 11i 0\nendloop\n\n", b"e!4003: Line 3, Col 19\n"),
    (b"e\nvar f\nvar r\nvar j\nmeas_loop_eis f r j 10m 100000 10 11i\n\n", b"e!4002: Line 4, Col 1\n"),
]


def test_a_plain_pyserial_client_gets_byte_exact_replies(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    with serial.Serial(rig.device.port, 230400, timeout=0.2) as client:
        for command, expected in GRAMMAR:
            client.write(command)
            assert client.read(len(expected)) == expected, command
        assert client.read(1) == b""  # and nothing more


def test_a_silent_line_on_connecting_names_the_baud_rates_to_check() -> None:
    controller, device = os.openpty()  # a real pty with nothing answering: an EmStat4 at the Pico's rate is as silent
    port = os.ttyname(device)
    try:
        with pytest.raises(InstrumentTimeout) as silent:
            EmStatPotentiostat.open(port, limits=LIMITS, timeout_s=0.05, retries=0, settle_s=0.01)
    finally:
        os.close(device)
        os.close(controller)
    assert str(silent.value).startswith(f"EmStat on {port}")
    assert "230400 for an EmStat Pico" in str(silent.value) and "921600 for an EmStat4" in str(silent.value)


def test_a_cv_script_streams_packages_between_e_and_the_blank_line(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    params = CVParams(e_begin_v=0.0, e_vertex1_v=0.02, e_vertex2_v=0.0, e_step_v=0.01, scan_rate_v_s=0.1,
                      n_scans=2)
    with serial.Serial(rig.device.port, 230400, timeout=0.3) as client:
        client.write(("\n".join(cv_script(params)) + "\n").encode())
        lines = client.read(4096).decode().split("\n")
    assert lines[:2] == ["e", "M0005"] and lines[-3:] == ["*", "", ""]  # "" "": blank line, then split's tail
    packages = [line for line in lines if line.startswith("P")]
    assert len(packages) == params.n_points == 9
    assert lines.count("-") == 2  # one scan end per scan
    package = re.compile(r"Pda[0-9A-F]{7}[a-zA-Z ];(ba[0-9A-F]{7}[afpnum ],10,2(0[0-9AB]))"
                         r";\1")  # the current twice, identical
    assert all(package.fullmatch(p) for p in packages), packages
    assert [parse_package(p)[0].value for p in packages] == pytest.approx(list(params.waveform()[1]), abs=1e-9)
    assert rig.emulator.cell_on is False  # on_finished: switched it off


# -- driver <-> emulator ------------------------------------------------------------------------------------------


def test_every_command_round_trips_through_driver_and_emulator(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    driver = rig.driver()
    assert isinstance(driver, Potentiostat)
    assert driver.firmware == "espico1207#Oct 10 2023 10:00:00 R"
    assert rig.device.received == b"Z\nt\n"  # connect: bring to idle, identify
    assert driver.identify() == driver.firmware

    voltammogram = driver.run_cv(SHORT)
    assert rig.emulator.scripts[-1] == cv_script(SHORT)[1:-1]  # the script arrived line for line
    assert len(voltammogram) == SHORT.n_points
    assert voltammogram.potential_v == pytest.approx(SHORT.waveform()[1], abs=1e-6)
    # no reference option: the driver names no electrode it was not told of (its default "Ag/Ag+" labelled an
    # Ag/AgCl lab's data, a chemist's trial)
    assert voltammogram.reference == "the reference electrode (unnamed)" and not voltammogram.any_overload
    result = analyze_cv(voltammogram)
    assert result.e_half_v == pytest.approx(COUPLE.e0_v, abs=0.005) and result.flags == frozenset()
    assert result.ipa_a == pytest.approx(2.69e5 * 0.0707 * math.sqrt(1e-5) * 1e-6 * math.sqrt(0.1), rel=0.1)

    driver.abort()  # idle: Z!0006, not an error; twice is fine
    driver.abort()
    assert rig.device.received.endswith(b"\n\nZ\nZ\n")
    driver.close()
    driver.close()
    with pytest.raises(Disconnected):
        driver.run_cv(SHORT)


def test_a_cv_with_unround_potentials_counts_points_as_the_instrument_does(make_rig: Callable[..., Rig]) -> None:
    # 0.2999999999 V is written as 300m: counted from the unrounded value the driver would expect 500 points
    # to the vertex instead of the 501 the instrument runs, and fail the scan
    params = CVParams(e_begin_v=-0.2, e_vertex1_v=0.2999999999, e_vertex2_v=-0.2, e_step_v=0.001, scan_rate_v_s=1.0)
    assert params.n_points != as_written(params).n_points
    voltammogram = make_rig().driver().run_cv(params)
    assert len(voltammogram) == as_written(params).n_points
    assert voltammogram.params.e_vertex1_v == pytest.approx(0.3, abs=1e-12)


def test_an_empty_cell_gives_only_charging_current(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(CellParams(e0_v=0.1, conc_mm=0.0, cdl_f_cm2=2e-5))
    voltammogram = rig.driver().run_cv(SHORT)
    charging = 2e-5 * 0.0707 * SHORT.scan_rate_v_s  # Cdl A v
    assert max(abs(voltammogram.current_a)) == pytest.approx(charging, rel=0.05)
    assert CVFlag.NO_PEAK in analyze_cv(voltammogram).flags


def test_device_errors_and_overloads_are_typed(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    wide = SafetyLimits(max_dispense_ml=1.0, syringe_ml=10.0, potential_window_v=(-5.0, 5.0))
    driver = EmStatPotentiostat.open(rig.device.port, limits=wide, time_scale=math.inf, error_pause_s=0.0)
    beyond = CVParams(e_begin_v=0.0, e_vertex1_v=2.5, e_vertex2_v=0.0, scan_rate_v_s=0.1, e_step_v=0.01)
    with pytest.raises(SafetyLimitExceeded, match=r"potential 2.5 V is outside the range this model can apply, "
                                                  r"-1.7..2 V vs its reference \(firmware espico\d+\)"):
        driver.run_cv(beyond)  # within the rig's limits, beyond the Pico's +2 V: refused before it is sent
    assert rig.device.received.count(b"meas_loop_cv") == 0
    driver.potential_range_v = None  # a model whose range the driver does not know: the firmware answers
    with pytest.raises(DeviceError) as refused:
        driver.run_cv(beyond)
    assert refused.value.code == "!4004" and "Line 9, Col 20" in str(refused.value)  # the 2.5 V vertex
    assert rig.device.received.count(b"meas_loop_cv") == 1  # a refusal is not retried

    tiny = CVParams(e_begin_v=-0.2, e_vertex1_v=0.4, e_vertex2_v=-0.2, scan_rate_v_s=0.1, e_step_v=0.005,
                    current_range_a=1e-6)  # 1 mM gives ~19 uA: far beyond a fixed 2 uA range
    with pytest.raises(Overload, match="overload at"):
        driver.run_cv(tiny)
    driver.close()  # one opener at a time: a port is opened exclusively
    marking = rig.driver(on_overload="mark")
    marked = marking.run_cv(tiny)
    assert marked.any_overload and max(abs(marked.current_a)) == pytest.approx(2e-6)  # clipped to the range
    assert CVFlag.OVERLOAD in analyze_cv(marked).flags
    assert marking.run_cv(SHORT) is not None  # the device is usable after all of it
    marking.close()


def test_an_overload_fault_marks_a_burst_of_points(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(faults=FaultInjector(FaultPlan(overload=1.0, seed=1)))
    voltammogram = rig.driver(on_overload="mark").run_cv(SHORT)
    assert 0 < voltammogram.overload.sum() <= 0.1 * len(voltammogram)
    assert max(abs(voltammogram.current_a)) == pytest.approx(5e-3)  # clipped at the top autorange


def test_safety_limits_and_bad_options_are_refused_before_any_byte(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    driver = rig.driver()
    sent = rig.device.received
    for params in [CVParams(e_begin_v=0.0, e_vertex1_v=1.2, e_vertex2_v=0.0, scan_rate_v_s=0.1),
                   CVParams(e_begin_v=-0.5, e_vertex1_v=0.5, e_vertex2_v=-1.5, scan_rate_v_s=0.1)]:
        with pytest.raises(SafetyLimitExceeded, match=r"EmStat on /dev/pts/\d+: potential"):
            driver.run_cv(params)
    time.sleep(0.05)
    assert rig.device.received == sent
    driver.close()  # one opener at a time: a port is opened exclusively
    for bad in [{"on_overload": "ignore"}, {"timeout_s": 0}, {"time_scale": -1}]:
        with pytest.raises(ConfigError):
            rig.driver(**bad)


def test_abort_stops_a_running_cv(make_rig: Callable[..., Rig]) -> None:
    slow = CVParams(e_begin_v=-0.3, e_vertex1_v=0.5, e_vertex2_v=-0.3, scan_rate_v_s=0.1, e_step_v=0.002)
    rig = make_rig(time_scale=TimeScale.accelerated(8.0))  # 16 s of scan in 2 s
    driver = rig.driver(timeout_s=0.5)
    outcome: list[BaseException | object] = []
    worker = threading.Thread(target=lambda: outcome.append(_catch(lambda: driver.run_cv(slow))))
    start = time.monotonic()
    worker.start()
    while not rig.emulator.cell_on:
        assert time.monotonic() - start < 60, "the CV never started"  # liveness only
        time.sleep(0.01)
    time.sleep(0.2)
    driver.abort()
    worker.join(timeout=60)
    (error,) = outcome  # the scan ended by the abort (code Z), not by running to its end
    assert isinstance(error, DeviceError) and error.code == "Z", error
    assert rig.emulator.cell_on is False  # on_finished: ran
    assert rig.device.received.endswith(b"Z\n")
    assert len(driver.run_cv(SHORT)) == SHORT.n_points  # idle again, and usable


def _catch(call: Callable[[], object]) -> BaseException | object:
    try:
        return call()
    except InstrumentError as exc:
        return exc
