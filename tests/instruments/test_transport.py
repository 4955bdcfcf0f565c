"""Transport and pty-device tests, over real pseudo-terminals opened by pyserial."""

import json
import logging
import os
import threading
import time
import tty
from collections.abc import Iterator

import pytest
import serial

from labloop.core.errors import ConfigError, DeviceError, Disconnected, InstrumentTimeout, ProtocolError, ReplayMismatch
from labloop.instruments.transport import ReplayTransport, SerialTransport, load_capture, opening, retry
from labloop.sim.faults import FaultInjector, FaultPlan
from labloop.sim.pty_device import Link, PtyDevice, TerminatorFramer


@pytest.fixture
def pty_pair() -> Iterator[tuple[int, str]]:
    """A raw pty: the test writes the device side (master) by hand; the transport opens the port."""
    master, slave = os.openpty()
    tty.setraw(slave)
    yield master, os.ttyname(slave)
    for fd in (master, slave):
        os.close(fd)


class Shout:
    """A line-based test device: answers every line upper-cased; ``boom`` raises inside the emulator."""

    def __init__(self) -> None:
        self.ticks = 0

    def new_framer(self) -> TerminatorFramer:
        return TerminatorFramer(b"\n")

    def handle(self, frame: bytes, link: Link) -> None:
        if frame == b"boom":
            raise RuntimeError("emulator bug")
        link.reply(frame.upper() + b"\n")

    def tick(self, link: Link) -> None:
        self.ticks += 1


def test_a_port_another_opener_holds_is_refused_saying_so(pty_pair: tuple[int, str]) -> None:
    """Two runs opened one pump's port and drove it into one cell, each counting the cell alone, and a drivers check
    during a run sent its commands to the running pump (a hardware trial): every opener takes the port exclusively,
    so the second is refused, in words; once the first closes it, it opens."""
    _, port = pty_pair
    with SerialTransport(port):
        with pytest.raises(Disconnected, match="cannot open port: another process has it open") as refused:
            SerialTransport(port)
        assert "Resource temporarily unavailable" not in str(refused.value)
    with SerialTransport(port):
        pass


def test_a_port_another_instrument_of_the_run_holds_names_it(pty_pair: tuple[int, str]) -> None:
    """Two plug-in pumps on one daisy-chained port, each opening it: the second was refused as "another process has it
    open (another labloop run ...): stop that one first", though the holder was the same run's first pump (a plug-in
    engineer's trial). It names that instrument and what a chained line needs; the same instrument's own second
    open, and one outside a rig's opening, keep the process's words."""
    _, port = pty_pair
    with opening("analyte_pump"), SerialTransport(port):
        with opening("electrolyte_pump"), pytest.raises(Disconnected) as refused:
            SerialTransport(port)
        assert refused.value.what == ("cannot open port: instruments.analyte_pump of this run has it open already: "
                                      "instruments on one daisy-chained line share one connection, which their driver "
                                      "must open once (docs/drivers.md, \"must share its port\"); else give each its "
                                      "own port")
        with pytest.raises(Disconnected, match="another process has it open"):
            SerialTransport(port)


def test_a_port_refused_for_lack_of_permission_names_the_group_and_the_docs() -> None:
    """"Permission denied" named neither the dialout group nor docs/hardware.md (a hardware trial). As root, which
    the tests run as, no port refuses: pyserial's exception is made as it makes it."""
    import errno

    from labloop.instruments.transport import NO_PERMISSION, open_refusal

    denied = serial.SerialException(errno.EACCES, "could not open port /dev/ttyUSB0: [Errno 13] Permission denied: "
                                                  "'/dev/ttyUSB0'")
    assert open_refusal(denied) == f"Permission denied: {NO_PERMISSION}"
    assert "dialout" in NO_PERMISSION and "docs/hardware.md" in NO_PERMISSION
    assert open_refusal(serial.SerialException(errno.ENOENT, "could not open port")) == "No such file or directory"


def test_read_frame_skips_noise_and_keeps_what_follows(pty_pair: tuple[int, str]) -> None:
    master, port = pty_pair
    with SerialTransport(port) as t:
        os.write(master, b"noise\x0200S\x03\x0201I\x03tail")
        assert t.read_frame(b"\x02", b"\x03", 1.0) == b"\x0200S\x03"
        assert t.read_frame(b"\x02", b"\x03", 1.0) == b"\x0201I\x03"
        with pytest.raises(InstrumentTimeout, match="tail"):
            t.read_until(b"\n", 0.05)


def test_a_timeout_after_bytes_outside_any_frame_says_they_came(pty_pair: tuple[int, str]) -> None:
    """A device at another baud rate answers garbage with no frame start: the timeout said "(received b'')", though
    41 bytes had come for each command, which sent a trial's engineer to the cabling. It says how many came."""
    master, port = pty_pair
    with SerialTransport(port) as t:
        os.write(master, bytes(range(0x80, 0x80 + 41)))
        with pytest.raises(InstrumentTimeout) as timeout:
            t.read_frame(b"\x02", b"\x03", 0.2)
        assert str(timeout.value).endswith("(received b''; before it 41 bytes with no b'\\x02': a wrong baud rate, "
                                           "or another device on the line?)"), str(timeout.value)
        with pytest.raises(InstrumentTimeout) as quiet:  # a silent line: nothing came, nothing more said
            t.read_frame(b"\x02", b"\x03", 0.05)
        assert str(quiet.value).endswith("(received b'')"), str(quiet.value)


def test_a_frame_that_lost_its_end_is_abandoned_at_the_next_start(pty_pair: tuple[int, str]) -> None:
    master, port = pty_pair
    with SerialTransport(port) as t:
        os.write(master, b"\x0200S\x0201I\x03")
        assert t.read_frame(b"\x02", b"\x03", 1.0) == b"\x0201I\x03"


def test_frame_split_across_writes_is_reassembled(pty_pair: tuple[int, str]) -> None:
    master, port = pty_pair
    with SerialTransport(port) as t:
        os.write(master, b"\x0200SNE10")
        threading.Timer(0.05, os.write, (master, b"00V3.928\x03")).start()
        assert t.read_frame(b"\x02", b"\x03", 2.0) == b"\x0200SNE1000V3.928\x03"


def test_read_until_returns_lines_one_at_a_time(pty_pair: tuple[int, str]) -> None:
    master, port = pty_pair
    with SerialTransport(port) as t:
        os.write(master, b"e\nM0000\n")
        assert t.read_until(b"\n", 1.0) == b"e\n"
        assert t.read_until(b"\n", 1.0) == b"M0000\n"


def test_every_read_has_a_deadline(pty_pair: tuple[int, str]) -> None:
    _, port = pty_pair
    with SerialTransport(port) as t:
        for read in (lambda: t.read_frame(b"\x02", b"\x03", 0.1), lambda: t.read_until(b"\n", 0.1)):
            start = time.monotonic()
            with pytest.raises(InstrumentTimeout, match=port):
                read()
            assert 0.1 <= time.monotonic() - start < 5.0  # a read without a deadline would wait forever


@pytest.mark.parametrize("wait", [float("nan"), float("inf"), "1", None, True], ids=repr)
def test_a_wait_that_is_no_finite_number_is_refused_not_waited_for_ever(pty_pair: tuple[int, str], wait) -> None:
    """A plug-in pump computed its reply deadline from a NaN rate: NaN compares false both ways, so the read spun at
    full CPU for ever (the conformance kit's NaN-rate check hung). Each read refuses it, naming the port."""
    _, port = pty_pair
    with SerialTransport(port) as t:
        reads = {"read_until": lambda: t.read_until(b"\n", wait), "read_frame": lambda: t.read_frame(b"<", b">", wait),
                 "drain": lambda: t.drain(0.05, wait), "drain's quiet_s": lambda: t.drain(wait, 0.1)}
        for name, read in reads.items():
            raised: list[BaseException] = []

            def attempt(read=read, raised=raised) -> None:
                try:
                    read()
                except Exception as exc:
                    raised.append(exc)

            worker = threading.Thread(target=attempt, daemon=True)
            worker.start()
            worker.join(60)  # liveness only: without the check the read never returns
            assert raised, f"{name} with {wait!r} did not return"
            assert isinstance(raised[0], ValueError) and str(raised[0]).startswith(port), (name, raised[0])
            assert f"must be a finite number of seconds, got {wait!r}" in str(raised[0])


def test_write_reaches_the_far_end_and_reset_input_drops_stale_bytes(pty_pair: tuple[int, str], caplog) -> None:
    master, port = pty_pair
    with SerialTransport(port) as t:
        t.write(b"0VER\r")
        assert os.read(master, 100) == b"0VER\r"
        os.write(master, b"\x02stale\x03")
        time.sleep(0.05)
        with caplog.at_level(logging.DEBUG, logger="labloop.instruments.transport"):
            t.reset_input()
        # dropped, and said at -vv as every byte is (a hardware trial's stray bytes left no trace)
        assert f"{port} discarded b'\\x02stale\\x03'" in caplog.text
        os.write(master, b"\x02fresh\x03")
        assert t.read_frame(b"\x02", b"\x03", 1.0) == b"\x02fresh\x03"


def test_drain_waits_for_a_quiet_line(pty_pair: tuple[int, str]) -> None:
    master, port = pty_pair
    with SerialTransport(port) as t:
        os.write(master, b"late")
        threading.Timer(0.03, os.write, (master, b" later")).start()
        assert t.drain(0.1, 1.0) == b"late later"
        os.write(master, b"\x02next\x03")
        assert t.read_frame(b"\x02", b"\x03", 1.0) == b"\x02next\x03"


def test_every_byte_is_logged(pty_pair: tuple[int, str], caplog: pytest.LogCaptureFixture) -> None:
    master, port = pty_pair
    with caplog.at_level(logging.DEBUG, logger="labloop.instruments.transport"), SerialTransport(port) as t:
        t.write(b"0DIS\r")
        os.write(master, b"\x0200SI0.100W0.000ML\x03")
        t.read_frame(b"\x02", b"\x03", 1.0)
    assert f"{port} > b'0DIS\\r'" in caplog.text
    assert "I0.100W0.000ML" in caplog.text


def test_url_schemes_of_serial_for_url_work() -> None:
    with SerialTransport("loop://") as t:
        t.write(b"junk\x02looped\x03")
        assert t.read_frame(b"\x02", b"\x03", 1.0) == b"\x02looped\x03"


def test_missing_port_and_bad_settings_are_typed() -> None:
    with pytest.raises(Disconnected, match="/dev/does-not-exist"):
        SerialTransport("/dev/does-not-exist")
    with pytest.raises(ConfigError, match="bad link settings"):
        SerialTransport("loop://", baudrate=-5)


def test_a_vanished_port_raises_disconnected_on_read_and_write() -> None:
    with PtyDevice(Shout()) as dev, SerialTransport(dev.port) as t:
        t.write(b"hi\n")
        assert t.read_until(b"\n", 1.0) == b"HI\n"
        dev.hang_up()
        assert not dev.connected
        with pytest.raises(Disconnected, match="vanished"):
            t.read_until(b"\n", 1.0)
        with pytest.raises(Disconnected, match="vanished"):
            t.write(b"hi\n")


def test_replug_serves_the_same_emulator_on_a_fresh_pty() -> None:
    emulator = Shout()
    with PtyDevice(emulator) as dev:
        dev.hang_up()
        port = dev.replug()
        assert dev.connected and port == dev.port
        with SerialTransport(port) as t:
            t.write(b"again\n")
            assert t.read_until(b"\n", 1.0) == b"AGAIN\n"
        assert dev.received == b"again\n"
        assert emulator.ticks > 0  # time passes for the emulator whether or not bytes arrive


def test_an_emulator_bug_is_recorded_said_once_and_the_device_keeps_serving(caplog: pytest.LogCaptureFixture
                                                                            ) -> None:
    """A plug-in emulator's bug printed its traceback on every command, 97 in a second from a ``tick`` (a plug-in
    author's trial): each distinct error is one line, said once, its traceback only at -v (INFO)."""
    with caplog.at_level(logging.INFO, logger="labloop.sim.pty_device"), \
            PtyDevice(Shout(), name="shout") as dev, SerialTransport(dev.port) as t:
        t.write(b"boom\nok\nboom\nboom\nok\n")
        assert t.read_until(b"\n", 1.0) == b"OK\n" and t.read_until(b"\n", 1.0) == b"OK\n"
        assert [str(e) for e in dev.errors] == ["emulator bug"]  # each distinct error kept once, and counted
        assert dev.error_counts == {"RuntimeError: emulator bug": 3}
    dev.stop()  # stopping twice is fine
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "shout: its emulator raised RuntimeError: emulator bug: a bug in the emulator, which keeps serving (said once; "
        "its traceback with -v)"]
    assert errors[0].exc_info is None
    assert [r.exc_info[1] for r in caplog.records if r.exc_info] == dev.errors  # the traceback, at INFO, once


def test_reply_faults_are_applied_by_the_link() -> None:
    faults = FaultInjector(FaultPlan(no_reply=1.0))
    with PtyDevice(Shout(), faults=faults) as dev, SerialTransport(dev.port) as t:
        t.write(b"anyone\n")
        with pytest.raises(InstrumentTimeout):
            t.read_until(b"\n", 0.1)
    assert faults.counts["no_reply"] == 1


def test_a_capture_that_cannot_be_written_is_a_config_error_and_closes_the_port(tmp_path, monkeypatch) -> None:
    """It was the operating system's FileNotFoundError (exit 1, no field named), with the port left open."""
    import gc

    gc.collect()  # an earlier test's port object, collected while this one counts closes, named the same reused pty
    closed, close = [], serial.Serial.close
    monkeypatch.setattr(serial.Serial, "close", lambda self: (closed.append(self.port), close(self)))
    with PtyDevice(Shout()) as dev:
        cannot = r"capture .*missing/wire\.jsonl: cannot write it \(No such file"
        with pytest.raises(ConfigError, match=cannot) as caught:
            SerialTransport(dev.port, capture=tmp_path / "missing" / "wire.jsonl")
        assert closed == [dev.port]  # by the transport (``caught`` keeps the port object from the collector)
        del caught
    assert not (tmp_path / "missing").exists()


def test_capture_then_replay_without_any_device(tmp_path) -> None:
    wire = tmp_path / "wire.jsonl"
    with PtyDevice(Shout()) as dev, SerialTransport(dev.port, capture=wire) as t:
        t.write(b"hello\n")
        assert t.read_until(b"\n", 1.0) == b"HELLO\n"
        with pytest.raises(InstrumentTimeout):
            t.read_until(b"\n", 0.05)
    lines = [json.loads(line) for line in wire.read_text().splitlines()]
    assert lines[0]["dir"] == "open" and lines[0]["port"] == dev.port
    assert [r["dir"] for r in lines[1:3]] == ["tx", "rx"]
    assert bytes.fromhex(lines[1]["hex"]) == b"hello\n"
    assert b"".join(bytes.fromhex(r["hex"]) for r in lines if r["dir"] == "rx") == b"HELLO\n"  # any chunking
    assert all(r["t"] >= 0 for r in lines)
    assert b"".join(r.data for r in load_capture(wire) if r.direction == "rx") == b"HELLO\n"

    replay = ReplayTransport(wire)
    replay.write(b"hello\n")
    assert replay.read_until(b"\n", 1.0) == b"HELLO\n"
    start = time.monotonic()
    with pytest.raises(InstrumentTimeout):
        replay.read_until(b"\n", 60.0)  # the capture has nothing more: time out now, not in 60 s
    assert time.monotonic() - start < 30.0
    replay.finish()

    other = ReplayTransport(wire)
    with pytest.raises(ReplayMismatch, match="b'bye\\\\n'"):
        other.write(b"bye\n")
    with pytest.raises(ReplayMismatch, match="never replayed"):
        ReplayTransport(wire).finish()


def test_retry_repeats_only_the_listed_errors() -> None:
    calls: list[int] = []
    seen: list[str] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise InstrumentTimeout("dev", "no reply")
        return "ok"

    assert retry(flaky, attempts=3, before_retry=lambda e: seen.append(type(e).__name__)) == "ok"
    assert len(calls) == 3 and seen == ["InstrumentTimeout", "InstrumentTimeout"]

    calls.clear()
    with pytest.raises(InstrumentTimeout):
        retry(flaky, attempts=2)
    assert len(calls) == 2

    def refused() -> None:
        calls.append(1)
        raise DeviceError("dev", "?OOR", "out of range")

    calls.clear()
    with pytest.raises(DeviceError):
        retry(refused, attempts=5, retry_on=(InstrumentTimeout, ProtocolError))
    assert len(calls) == 1


@pytest.mark.parametrize(("content", "said"), [
    (None, r"missing\.jsonl: cannot read the wire capture: No such file or directory$"),
    (b"\xff\xfe not text", r"wire\.jsonl: is not a wire capture: not UTF-8 text \(one JSON object a line, .*\)$"),
    (b"time,potential\n0,0.1\n", r"wire\.jsonl:1: is not a wire capture record \(one JSON object a line, "
                                  r"\{\"t\": s, \"dir\": \"open\" \| \"tx\" \| \"rx\", \"hex\": \.\.\.\}, as "
                                  r"SerialTransport\(capture=\) writes\): JSONDecodeError: Expecting value"),
    (b'{"t": 0.0, "dir": "open"}\n{"t": 0.1, "dir": "tx"}\n',
     r"wire\.jsonl:2: is not a wire capture record \(.*\): KeyError: 'hex'$"),
    (b'{"t": 0.1, "dir": "rx", "hex": "zz"}\n', r"wire\.jsonl:1: is not a wire capture record \(.*\): ValueError: "
                                                 r"non-hexadecimal number"),
    (b"[1, 2]\n", r"wire\.jsonl:1: is not a wire capture record \(.*\): TypeError: "),
])
def test_a_replay_of_a_file_that_is_no_capture_names_the_file_and_what_is_wrong(tmp_path, content, said) -> None:
    """A missing file raised FileNotFoundError, a file that is no capture JSONDecodeError (a plug-in author's
    trial): untyped, naming neither the file nor the line; now labloop's ConfigError says both."""
    wire = tmp_path / ("missing.jsonl" if content is None else "wire.jsonl")
    if content is not None:
        wire.write_bytes(content)
    with pytest.raises(ConfigError, match=said):
        ReplayTransport(wire)


def test_a_capture_keeps_every_session_and_replays_the_one_asked_for(tmp_path) -> None:
    """Each opening of the port appends a session to the file (``labloop resume`` truncated the first run's
    capture, 26 lines becoming 29 of the new session only), and a replay picks one."""
    wire = tmp_path / "wire.jsonl"
    for word in (b"first\n", b"second\n"):
        with PtyDevice(Shout()) as dev, SerialTransport(dev.port, capture=wire) as t:
            t.write(word)
            assert t.read_until(b"\n", 1.0) == word.upper()
        if word == b"first\n":
            first = wire.read_text()
    assert wire.read_text().startswith(first)
    opens = [json.loads(line) for line in wire.read_text().splitlines() if '"open"' in line]
    assert len(opens) == 2 and all(header["started"] for header in opens)
    with pytest.raises(ConfigError, match=r"wire\.jsonl: holds 2 sessions .*: choose one, session=0\.\.1"):
        ReplayTransport(wire)
    for session, word in ((0, b"first\n"), (-1, b"second\n")):
        replay = ReplayTransport(wire, session=session)
        replay.write(word)
        assert replay.read_until(b"\n", 1.0) == word.upper()
        replay.finish()
