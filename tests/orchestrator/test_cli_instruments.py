"""`labloop drivers ...` and `labloop sim serve`: in-process for the quick paths, a real subprocess and a plain
pyserial client for the served emulator."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import serial

from labloop.instruments.methodscript import cv_script, parse_package
from labloop.instruments.voltammogram import CVParams
from labloop.sim.ne1000_emulator import NE1000Emulator, PumpSpec
from labloop.sim.pty_device import PtyDevice, TimeScale

#: what ``drivers check`` ends with after setting a pump's syringe to its own diameter on a port
KIT_DIAMETER_NOTE = ("note: the pump's syringe diameter is now 14.57 mm (the kit's); set it back to your syringe's, "
                     "or run the check with --option diameter_mm=<yours>")


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_drivers_list_shows_the_built_in_drivers(labloop) -> None:
    proc = labloop("drivers", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {row["name"]: row for row in map(json.loads, proc.stdout.splitlines())}
    assert {"ne1000", "emstat", "sim-sampler"} <= set(rows)
    assert rows["emstat"]["kind"] == "potentiostat" and rows["emstat"]["baudrate"] == 230400
    assert rows["ne1000"]["emulator"] is True
    table = labloop("drivers", "list").stdout
    assert all(name in table for name in ("ne1000", "emstat", "sim-sampler"))


def test_unknown_drivers_exit_2_with_one_line(labloop) -> None:
    for args in [("drivers", "check", "picostat"), ("sim", "serve", "picostat")]:
        line = one_line_error(labloop(*args))
        assert "unknown driver 'picostat'" in line and "emstat, manual, ne1000" in line
    assert "no serial line to serve" in one_line_error(labloop("sim", "serve", "sim-sampler"))
    assert "alpha" in one_line_error(labloop("sim", "serve", "emstat", "--alpha", "1.5"))
    assert "--faults: 'stal=0.1' is not KIND=RATE with KIND one of no_reply, garble" in one_line_error(
        labloop("sim", "serve", "ne1000", "--faults", "garble=0.1,stal=0.1"))
    assert "--faults: 'all=5': the rate must be a number from 0 to 1" in one_line_error(
        labloop("sim", "serve", "ne1000", "--faults", "all=5"))


def test_drivers_check_runs_the_kit(labloop, tmp_path) -> None:
    proc = labloop("drivers", "check", "emstat")
    assert proc.returncode == 0, proc.stdout
    assert "PASS  short CV" in proc.stdout and proc.stdout.strip().endswith("conforms")
    # a port that cannot be a serial port is the user's input, not the driver's failure: one line, exit 2
    # (an http:// URL was "does NOT conform", exit 1), judged as validate judges instruments.<name>.port
    (tmp_path / "notes.txt").write_text("not a port")
    for port, says in (("/dev/labloop-no-such-port", "port: /dev/labloop-no-such-port does not exist"),
                       ("http://x", "port: http://x: pyserial opens no http:// URL"),
                       (str(tmp_path / "notes.txt"), "notes.txt is a file, not a serial port")):
        failed = labloop("drivers", "check", "emstat", "--port", port)
        assert says in one_line_error(failed), port
        assert "does NOT conform" not in failed.stdout + failed.stderr
        # no campaign's resume advice in a conformance check (a plug-in engineer's trial)
        assert "labloop resume" not in failed.stderr


def test_drivers_check_gives_the_driver_and_its_emulator_options(labloop, monkeypatch) -> None:
    """Driver options could be given to the kit from Python only (check_driver(options=)); ``--option KEY=VALUE``
    gives them from the shell, each value read as a YAML scalar as a campaign file reads it, offered to the
    emulator too (an NE-1000 at address 3 answers only as 3), and judged as validate judges a campaign's."""
    from labloop.orchestrator.cli import instruments

    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return check_driver(*args, **kwargs)

    check_driver = instruments.check_driver
    monkeypatch.setattr(instruments, "check_driver", spy)
    proc = labloop("drivers", "check", "ne1000", "--option", "address=3", "--option", "diameter_mm=4.61",
                   "--option", "timeout_s=2")
    assert proc.returncode == 0 and proc.stdout.strip().endswith("conforms"), proc.stdout
    given = {"address": 3, "diameter_mm": 4.61, "timeout_s": 2}
    assert calls[0]["options"] == given and calls[0]["emulator_options"] == given
    assert [type(value) for value in calls[0]["options"].values()] == [int, float, int]
    for option, says in (("adress=1", "error: --option adress: not an option of driver 'ne1000' (its options: "
                                      "address, baudrate, capture, content_ml, diameter_mm, poll_s, retries, "
                                      "run_margin_s, timeout_s)"),
                         ("diameter_mm=big", "error: --option diameter_mm: must be the syringe's inner diameter, a "
                                             "number of mm in 0.1..80, got 'big'"),
                         ("timeout_s=100", "error: --option timeout_s: must be a number of seconds in 0.001..60, "
                                           "got 100"),
                         # judged before the port opens: 19201 passed validate and reached the port (a trial)
                         ("baudrate=19201", "error: --option baudrate: must be a standard baud rate (1200, 2400, "
                                            "9600, 19200, 38400, 57600, 115200, 230400, ...), got 19201"),
                         ("baudrate=fast", "error: --option baudrate: must be a standard baud rate (1200, 2400, "
                                           "9600, 19200, 38400, 57600, 115200, 230400, ...), got 'fast'"),
                         ("baudrate=38400", "error: --option baudrate: must be one of the NE-1000's baud rates, 300, "
                                            "1200, 2400, 9600, 19200, got 38400"),
                         ("time_scale=1", "error: --option time_scale: labloop gives the driver this itself (the "
                                          "emulator's time scale, to a pump or potentiostat in a dry run): not an "
                                          "option"),
                         ("address", "error: labloop drivers check: Invalid value for '--option': 'address': write "
                                     "KEY=VALUE, e.g. --option address=1"),
                         # read as YAML, as a campaign's options, and judged by the driver (a mapping was refused
                         # outright, and a relay-valve's channels could not be given)
                         ("address={a: 1}", "error: --option address: must be a whole number 0..99, got {'a': 1}")):
        assert one_line_error(labloop("drivers", "check", "ne1000", "--option", option)) == says, option
    assert len(calls) == 1  # nothing opened for a refused option
    mapped = labloop("drivers", "check", "relay-valve", "--option", "channels={argon: 0, nitrogen: 3}")
    assert mapped.returncode == 0 and mapped.stdout.strip().endswith(": conforms"), mapped.stdout + mapped.stderr


def _lab_pump() -> NE1000Emulator:
    """The lab's NE-1000 holding a 1 mL syringe (4.61 mm), moving at once, to serve on a pty as a real port."""
    return NE1000Emulator([PumpSpec(diameter_mm=4.61)], time_scale=TimeScale.zero_latency())


def test_drivers_check_leaves_the_pump_at_the_diameter_its_option_gives(labloop) -> None:
    """``drivers check ne1000 --port P --option diameter_mm=4.61`` opened the pump at 4.61 mm, then the kit set its
    own 14.57 mm and left the lab's pump there: used from its front panel or another program afterwards, it
    dispensed ~10x the volume asked. The kit sets the diameter the option gives (at a rate that syringe is driven
    at: 1 mL/min is beyond a 4.61 mm syringe's 0.85), and the pump reports 4.61 mm after the check."""
    emulator = _lab_pump()
    with PtyDevice(emulator, name="lab-pump") as device:
        proc = labloop("drivers", "check", "ne1000", "--port", device.port, "--option", "diameter_mm=4.61")
        assert proc.returncode == 0, proc.stdout
        assert emulator.snapshot(0).diameter_mm == 4.61, proc.stdout
        assert b"0DIA 14.57\r" not in device.received
    lines = proc.stdout.splitlines()
    assert lines[-1] == f"ne1000 on {device.port}: conforms (1 check skipped)"  # nothing to set back: no note
    assert "PASS  set diameter" in proc.stdout and "4.61 mm, as diameter_mm gives it" in proc.stdout
    assert "0.43 mL/min (not 1: the pump drives this syringe at 1.17e-05..0.851 mL/min)" in proc.stdout


def test_drivers_check_says_last_when_it_left_a_pump_at_its_own_diameter(labloop) -> None:
    """Without a diameter option the kit sets its own 14.57 mm: on a port (the lab's pump) the output ends saying so
    in one line, and how to avoid it; against the emulator, which nobody uses afterwards, it says nothing."""
    emulator = _lab_pump()
    with PtyDevice(emulator, name="lab-pump") as device:
        proc = labloop("drivers", "check", "ne1000", "--port", device.port)
        assert proc.returncode == 0, proc.stdout
        assert emulator.snapshot(0).diameter_mm == 14.57
    assert proc.stdout.splitlines()[-2:] == [f"ne1000 on {device.port}: conforms (1 check skipped)",
                                             KIT_DIAMETER_NOTE], proc.stdout
    assert "14.57 mm, the kit's own (the options give no diameter_mm)" in proc.stdout
    emulated = labloop("drivers", "check", "ne1000")
    assert emulated.returncode == 0 and emulated.stdout.splitlines()[-1].endswith(": conforms"), emulated.stdout
    assert "note:" not in emulated.stdout


def test_a_plain_serial_client_talks_to_sim_serve() -> None:
    command = [sys.executable, "-m", "labloop.orchestrator.cli.main", "sim", "serve", "emstat", "--e0", "0.1",
               "--time-scale", "inf"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = server.stdout.readline().strip()  # the first line, flushed before serving
        assert port.startswith("/dev/pts/"), (port, server.stderr.read() if server.poll() is not None else "")
        params = CVParams(e_begin_v=-0.2, e_vertex1_v=0.4, e_vertex2_v=-0.2, scan_rate_v_s=0.1, e_step_v=0.01)
        with serial.Serial(port, 230400, timeout=1.0) as client:
            client.write(b"t\n")
            assert client.readline() == b"tespico1207#Oct 10 2023 10:00:00\n"
            assert client.readline() == b"R*\n"
            client.write(("\n".join(cv_script(params)) + "\n").encode())
            lines = [client.readline() for _ in range(params.n_points + 4)]
        assert lines[:2] == [b"e\n", b"M0005\n"] and lines[-2:] == [b"*\n", b"\n"]
        currents = [parse_package(line.decode().strip())[1].value for line in lines[2:-2]]
        peak = max(currents)
        assert 15e-6 < peak < 25e-6  # ~19 uA for 1 mM at a 3 mm disk and 0.1 V/s (Randles-Sevcik)
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=60)  # liveness only: SIGTERM ends the server cleanly
    assert code == 0


def test_sim_serve_injects_the_faults_it_is_given_and_counts_them() -> None:
    """A plug-in driver's retries were rehearsed on `sim serve` ptys, where no device could misbehave (a hardware
    trial): ``--faults garble=1`` flips one bit of every reply, and the server says at the end what it injected."""
    command = [sys.executable, "-m", "labloop.orchestrator.cli.main", "sim", "serve", "ne1000", "--time-scale", "inf",
               "--faults", "garble=1", "--fault-seed", "3"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = server.stdout.readline().strip()
        assert port.startswith("/dev/pts/"), (port, server.stderr.read() if server.poll() is not None else "")
        exact = b"\x0200A?R\x03", b"\x0200SNE1000V3.928\x03"  # the power-up alarm, then the version
        with serial.Serial(port, 19200, timeout=2.0) as client:
            replies = []
            for expected in exact:
                client.write(b"0VER\r")
                replies.append(client.read(len(expected)))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    for reply, expected in zip(replies, exact, strict=True):
        flipped = [bin(a ^ b).count("1") for a, b in zip(reply, expected, strict=True)]
        assert sum(flipped) == 1, (reply, expected)  # one bit of one byte
    said = server.stderr.read()
    assert "faults garble 1 (seed 3)" in said and "faults injected: garble 2\n" in said, said


def test_a_port_another_opener_holds_is_one_error_line_not_a_failed_check(labloop):
    """A drivers check during a run sent its commands to the running pump (a hardware trial): the port is opened
    exclusively, and a port that will not open is no failed check: one error line, no FAIL line before it saying the
    same, exit 2."""
    import os
    import tty

    from labloop.instruments.transport import SerialTransport

    master, slave = os.openpty()
    tty.setraw(slave)
    port = os.ttyname(slave)
    try:
        with SerialTransport(port):  # a run holding the port
            held = labloop("drivers", "check", "ne1000", "--port", port)
    finally:
        os.close(master)
        os.close(slave)
    assert held.returncode == 2 and held.stdout == "", held.stdout
    assert held.stderr == (f"error: port {port}: cannot open it for driver 'ne1000': another process has it open "
                           "(another labloop run or `labloop drivers check`, a terminal program): stop that one "
                           "first\n"), held.stderr


def test_sim_serve_gives_its_emulator_the_options_a_campaign_would(labloop) -> None:
    """``sim serve`` had no ``--option``: a plug-in emulator that needs one (a pump's address) could not be served as
    its campaign configures it (a plug-in author's trial). A served NE-1000 at address 3 answers the driver opened
    at address 3; an option the emulator does not take is refused in one line, not dropped."""
    from labloop.instruments.contracts import SafetyLimits
    from labloop.instruments.ne1000 import NE1000Pump

    command = [sys.executable, "-m", "labloop.orchestrator.cli.main", "sim", "serve", "ne1000", "--option",
               "address=3", "--option", "diameter_mm=4.61", "--time-scale", "inf"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = server.stdout.readline().strip()
        assert port.startswith("/dev/pts/"), server.stderr.read() if server.poll() is not None else port
        pump = NE1000Pump.open(port, 3, limits=SafetyLimits(1.0, 10.0, (-1.0, 1.0)), timeout_s=1.0)
        try:
            assert pump.status() is not None  # pump 3 answers: the emulator took the address
        finally:
            pump.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert one_line_error(labloop("sim", "serve", "ne1000", "--option", "adress=3")) == (
        "error: --option adress: the emulator of driver 'ne1000' takes no such option (its options: address, holds, "
        "diameter_mm)")
    # a value it cannot take was "unexpected TypeError ... (a labloop bug)", exit 1 (a review): the driver's own
    # options are judged as a campaign's are, the emulator's others by what it raises
    assert one_line_error(labloop("sim", "serve", "ne1000", "--option", "address=abc")) == (
        "error: --option address: must be a whole number 0..99, got 'abc'")
    assert one_line_error(labloop("sim", "serve", "ne1000", "--option", "holds=bogus")) == (
        "error: --option: the emulator of driver 'ne1000' raised ValueError: 'bogus' is not a valid Fluid: its "
        "options, or a bug in the emulator")


def test_drivers_list_says_an_emulator_that_cannot_be_loaded(labloop, install_plugin) -> None:
    """A plug-in's emulator entry point pointing at nothing was listed "yes" until a dry run failed on it (a plug-in
    author's trial): it is "broken", the reason under the table and in the JSON row."""
    install_plugin("lost_emu", """
        from labloop.instruments.registry import DriverDescriptor
        from labloop.instruments.ne1000 import NE1000Pump
        PUMP = DriverDescriptor(name="lost-emu", kind="pump", open=NE1000Pump.open, summary="a pump")
        """, {"lost-emu": "PUMP"}, emulator="lost_emu:no_such_emulator")
    rows = {row["name"]: row for row in map(json.loads, labloop("drivers", "list", "--json").stdout.splitlines())}
    assert rows["lost-emu"]["emulator"] is False and "cannot be loaded" in rows["lost-emu"]["emulator_problem"]
    assert rows["ne1000"]["emulator"] is True and "emulator_problem" not in rows["ne1000"]
    table = labloop("drivers", "list")
    assert table.returncode == 0
    listed = next(line for line in table.stdout.splitlines() if "lost-emu" in line and "│" in line)
    assert "broken" in listed
    assert "emulator 'lost-emu' (lost_emu:no_such_emulator) cannot be loaded" in table.stdout
