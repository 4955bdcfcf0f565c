"""The one place that owns instrument byte streams: serial ports, their framing, captures and replays.

Drivers never touch pyserial. They get a :class:`Transport` and ask it for whole frames with a deadline,
so that every driver inherits the same guarantees (as PyLabRobot keeps all of its io in one package):

- nothing can hang: every read has a deadline and raises :class:`InstrumentTimeout` past it;
- a vanished port (pyserial ``SerialException``, ``OSError``, termios errors) becomes
  :class:`Disconnected`, never a pyserial type;
- every byte exchanged is logged (``DEBUG``, ``repr``) and can be written to a JSON-lines wire capture;
- a capture can be served back by :class:`ReplayTransport`, which checks that the driver writes exactly the
  captured bytes and returns the captured reads, so protocol tests run without any emulator.

:class:`SerialTransport` opens anything ``serial.serial_for_url`` opens: ``/dev/tty*``, ``COM3``,
``socket://host:port``, ``loop://`` and the ``/dev/pts/N`` of the emulators in :mod:`labloop.sim`.
"""

from __future__ import annotations

import errno
import importlib
import json
import logging
import os
import pkgutil
import re
import stat
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol, Self, TypeVar
from urllib.parse import parse_qs, urlsplit

import serial
from serial.tools import list_ports

from labloop.core.errors import (
    ConfigError,
    Disconnected,
    InstrumentError,
    InstrumentTimeout,
    ProtocolError,
    ReplayMismatch,
)
from labloop.core.numeric import finite_number
from labloop.core.text import plural
from labloop.core.timestamps import now

try:  # termios raises its own error type (not OSError) when a pty's far end is gone
    import termios

    _WIRE_ERRORS: tuple[type[BaseException], ...] = (serial.SerialException, OSError, termios.error)
except ImportError:  # Windows
    _WIRE_ERRORS = (serial.SerialException, OSError)

log = logging.getLogger(__name__)

T = TypeVar("T")

_SHOW = 64  # bytes of a partial frame shown in an error message
#: the range of each option every driver's link takes: a reply deadline (s), how often a safe command is
#: repeated, and how long the line must be quiet before a retry (s). Finite, so that a silent or babbling
#: device ends in :class:`InstrumentTimeout` in bounded time however the options were written (``.inf``,
#: ``1e9`` retries): a command takes at most ``retries + 1`` reply deadlines plus a drain before each retry,
#: and a drain of a line that never goes quiet ends the command at once.
#: the baud rates a ``baudrate`` refusal names (any of pyserial's ``SerialBase.BAUDRATES`` is taken)
COMMON_BAUDRATES = (1200, 2400, 9600, 19200, 38400, 57600, 115200, 230400)
LINK_OPTION_RANGES: dict[str, tuple[float, float]] = {"timeout_s": (0.001, 60.0), "retries": (0, 10),
                                                      "settle_s": (0.0, 5.0)}
#: how long :meth:`Transport.drain` waits for a quiet line when its caller names no deadline (s)
DRAIN_DEADLINE_S = 1.0
#: the campaign's name of the instrument whose driver is opening (orchestrator/compose.py sets it around each
#: driver's ``open``): a :class:`SerialTransport` opened then names it beside its port in the errors it raises
#: itself, since a plug-in that lets one out would say only ``/dev/pts/2``, a pty nobody wrote down
_OPENING: ContextVar[str | None] = ContextVar("labloop_opening_instrument", default=None)


#: every :class:`SerialTransport` open now (weakly held: a dropped one leaves), for :func:`bytes_sent`
_OPEN_PORTS: weakref.WeakSet[SerialTransport] = weakref.WeakSet()


def bytes_sent(instrument: str) -> int | None:
    """How many bytes the open transports of ``instrument`` (those its driver opened within :func:`opening`) have
    written so far, or None when its driver holds none of labloop's (a plug-in on a channel of its own, a second pump
    on a daisy chain another one opened): then what it sent cannot be told. Why: a dispense counts as delivered in
    full once it is about to be sent (protocols/steps.py Contents), and a plug-in whose dispense raised a bug before
    writing anything drained its syringe by labloop's count each time, until a stop asked for a syringe to be
    filled that was full (a plug-in engineer's trial); an unchanged count says that nothing reached the pump."""
    ports = [port for port in list(_OPEN_PORTS) if port.instrument == instrument and port.is_open]
    return sum(port.bytes_written for port in ports) if ports else None


@contextmanager
def opening(instrument: str) -> Iterator[None]:
    """Every :class:`SerialTransport` opened within belongs to ``instrument`` (a campaign's instrument name)."""
    token = _OPENING.set(instrument)
    try:
        yield
    finally:
        _OPENING.reset(token)


class Transport(Protocol):
    """What a driver needs from a byte stream."""

    name: str

    def write(self, data: bytes) -> None: ...

    def read_until(self, terminator: bytes, deadline_s: float) -> bytes: ...

    def read_frame(self, start: bytes, end: bytes, deadline_s: float) -> bytes: ...

    def reset_input(self) -> None: ...

    def drain(self, quiet_s: float, deadline_s: float = ...) -> bytes: ...

    def close(self) -> None: ...


def serial_device(port: str) -> str:
    """The device a port names: a path with its links and ``..`` resolved (``/dev/serial/by-id/...`` is the
    ``/dev/ttyUSB0`` it links to), a pyserial URL (``socket://``, ``rfc2217://``) as written. Why: ports were
    compared as text, so a symlink to the analyte pump's port passed as another pump, and every dispense of
    both went to one device (a trial's rig); drivers whose devices share a line (instruments/ne1000.py) open it
    once by this name."""
    return port if "://" in port else os.path.realpath(port)


#: what a line of a wire capture is, for the error that says a file is not one
CAPTURE_FORMAT = ('one JSON object a line, {"t": s, "dir": "open" | "tx" | "rx", "hex": ...}, as '
                  "SerialTransport(capture=) writes")


@dataclass(frozen=True)
class CaptureRecord:
    """One chunk on the wire: ``tx`` (written by the driver) or ``rx`` (read by it), at ``t`` s after open."""

    direction: str
    t: float
    data: bytes


class WireCapture:
    """Appends every chunk exchanged to a JSON-lines file: ``{"t", "dir", "hex", "repr"}`` per line.

    Each opening of the port is a session, started by a line ``"dir": "open"`` naming the port, the link
    settings and when it opened (``started``, UTC), after what earlier sessions wrote: the file was truncated,
    so ``labloop resume`` replaced the first run's capture with its own. ``t`` counts from the session's start;
    :class:`ReplayTransport` replays one session.
    """

    def __init__(self, path: str | Path, header: dict[str, object]) -> None:
        self.path = Path(path)
        self._file: IO[str] = self.path.open("a+", encoding="utf-8")
        if self._file.tell():  # a session cut short mid-line (kill -9) must not swallow this one's first line
            self._file.seek(self._file.tell() - 1)
            if self._file.read(1) != "\n":
                self._file.write("\n")
        self._t0 = time.monotonic()
        self._write({"t": 0.0, "dir": "open", "started": now(), **header})

    def record(self, direction: str, data: bytes) -> None:
        t = round(time.monotonic() - self._t0, 6)
        self._write({"t": t, "dir": direction, "hex": data.hex(), "repr": repr(data)})

    def _write(self, obj: dict[str, object]) -> None:
        self._file.write(json.dumps(obj) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def capture_sessions(path: str | Path) -> list[list[CaptureRecord]]:
    """The ``tx``/``rx`` records of each session of a capture file (:class:`WireCapture`), in order; records
    before any ``open`` line (a capture written by hand) are the first session.

    A file that cannot be read, or a line that is not a capture record, is a :class:`ConfigError` naming the
    file (and the line): a replay in a plug-in's test is handed a path, and FileNotFoundError or
    JSONDecodeError from deep in here said neither what was wrong with it nor which file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(str(path), f"is not a wire capture: not UTF-8 text ({CAPTURE_FORMAT})") from None
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read the wire capture: {exc.strerror or exc}") from None
    sessions: list[list[CaptureRecord]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            obj = json.loads(line)
            direction = obj["dir"]
            record = (CaptureRecord(direction, float(obj["t"]), bytes.fromhex(obj["hex"]))
                      if direction in ("tx", "rx") else None)
        except (ValueError, TypeError, KeyError) as exc:  # JSONDecodeError is a ValueError; a list has no "dir"
            raise ConfigError(f"{path}:{number}", f"is not a wire capture record ({CAPTURE_FORMAT}): "
                                                  f"{type(exc).__name__}: {exc}") from None
        if direction == "open" or not sessions:
            sessions.append([])
        if record is not None:
            sessions[-1].append(record)
    return sessions


def load_capture(path: str | Path, session: int | None = None) -> list[CaptureRecord]:
    """The ``tx``/``rx`` records of one session of a capture file, in order: ``session`` counts from 0 (-1: the
    last); None, the file's only session (:class:`ConfigError` when it has several: each starts with the
    driver connecting again, so one driver cannot replay two)."""
    sessions = capture_sessions(path) or [[]]
    if session is None and len(sessions) > 1:
        raise ConfigError(str(path), f"holds {len(sessions)} sessions (one per opening of the port): "
                                     f"choose one, session=0..{len(sessions) - 1} (-1: the last)")
    try:
        return sessions[session or 0]
    except IndexError:
        raise ConfigError(str(path), f"has no session {session} (it holds {len(sessions)})") from None


class _FramedStream:
    """Framing with deadlines over a chunk source; subclasses supply the chunks and the writes."""

    def __init__(self, name: str, capture: WireCapture | None, where: str | None = None) -> None:
        self.name = name
        self.where = where or name  # what the errors it raises name: the port, and its instrument if known
        self._capture = capture
        self._pending = bytearray()  # read from the wire, not yet handed to the driver
        #: bytes handed to the wire so far (counted before each write: a write that failed may have sent some)
        self.bytes_written = 0

    # -- supplied by subclasses -------------------------------------------------------------------------
    def _read_chunk(self) -> bytes | None:
        """The bytes that have arrived (maybe none), after at most one short wait of the source's own (a
        serial port's ``poll_s``); None when the source knows none will come. Callers loop until their own
        deadline, so the source is never told it."""
        raise NotImplementedError

    def _write_raw(self, data: bytes) -> None:
        raise NotImplementedError

    def _flush_input(self) -> None:
        raise NotImplementedError

    # -- the public stream ------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        log.debug("%s > %r", self.name, data)
        self.bytes_written += len(data)
        self._write_raw(data)
        if self._capture is not None:
            self._capture.record("tx", data)

    def read_until(self, terminator: bytes, deadline_s: float) -> bytes:
        """Everything up to and including ``terminator``; InstrumentTimeout after ``deadline_s`` seconds."""
        deadline = time.monotonic() + self._seconds("deadline_s", deadline_s)
        while (i := self._pending.find(terminator)) < 0:
            self._fill(deadline, f"{terminator!r}")
        return self._take(i + len(terminator))

    def read_frame(self, start: bytes, end: bytes, deadline_s: float) -> bytes:
        """The next ``start ... end`` frame, delimiters included; bytes outside a frame are discarded.

        A second ``start`` before ``end`` abandons the first (truncated) frame, so a reply that lost its
        end marker cannot swallow the next one.
        """
        deadline = time.monotonic() + self._seconds("deadline_s", deadline_s)
        outside = 0  # bytes discarded as no part of a frame
        while True:
            s = self._pending.find(start)
            if s != 0:
                outside += len(self._pending) if s < 0 else s
                self._discard(len(self._pending) if s < 0 else s)
            else:
                e = self._pending.find(end, len(start))
                restart = self._pending.find(start, len(start))
                if restart >= 0 and (e < 0 or restart < e):
                    self._discard(restart)
                    continue
                if e >= 0:
                    return self._take(e + len(end))
            try:
                self._fill(deadline, f"frame {start!r}...{end!r}")
            except InstrumentTimeout as exc:  # "(received b'')", though 41 bytes had come for each command, sent a
                if not outside:  # trial's engineer with a wrong baud rate to the cabling
                    raise
                raise InstrumentTimeout(self.where, f"{exc.what.removesuffix(')')}; before it {outside} bytes with no "
                                                    f"{start!r}: a wrong baud rate, or another device on the line?)"
                                        ) from None

    def reset_input(self) -> None:
        """Forget everything received and not yet read (stale replies, line noise)."""
        self._discard(len(self._pending))
        self._flush_input()

    def drain(self, quiet_s: float, deadline_s: float = DRAIN_DEADLINE_S) -> bytes:
        """Read and discard until the line has been quiet for ``quiet_s``; returns what was discarded.

        A line that keeps talking (noise, a device streaming) never goes quiet, so the wait has a
        deadline too: :class:`InstrumentTimeout` when the line is still not quiet ``max(deadline_s,
        quiet_s)`` seconds after the call (a quiet line always passes). Drivers pass their reply deadline;
        the default keeps a plug-in written before the deadline existed from hanging.
        """
        quiet_s, deadline_s = self._seconds("quiet_s", quiet_s), self._seconds("deadline_s", deadline_s)
        dropped = bytearray(self._pending)
        self._pending.clear()
        start = time.monotonic()
        give_up = start + max(deadline_s, quiet_s)
        quiet_until = start + quiet_s
        while (now := time.monotonic()) < quiet_until:
            if now >= give_up:
                raise InstrumentTimeout(self.where, f"line not quiet for {quiet_s:g} s within "
                                                   f"{max(deadline_s, quiet_s):g} s "
                                                   f"({len(dropped)} bytes of noise, last {bytes(dropped[-_SHOW:])!r})")
            chunk = self._read_chunk()
            if chunk is None:
                break
            if chunk:
                dropped += chunk
                quiet_until = time.monotonic() + quiet_s
        if dropped:
            log.debug("%s drained %r", self.name, bytes(dropped))
        return bytes(dropped)

    def _seconds(self, name: str, value: object) -> float:
        """``value``, a driver's wait in seconds, or a ValueError naming it and this line when it is no finite number
        (a driver's bug, said as one). Why: a NaN deadline compares false both ways, so a read waited for ever at full
        CPU (a plug-in engineer's pump computed one from a NaN rate, and the conformance kit's check hung); an
        infinite one waits for ever too, which no read may."""
        if not finite_number(value):
            raise ValueError(f"{self.where}: {name} must be a finite number of seconds, got {value!r}")
        return float(value)

    def _fill(self, deadline: float, waiting_for: str) -> None:
        chunk = self._read_chunk() if time.monotonic() < deadline else b""
        if chunk:
            self._pending += chunk
            return
        if chunk is None or time.monotonic() >= deadline:
            got = bytes(self._pending[:_SHOW])
            raise InstrumentTimeout(self.where, f"no {waiting_for} before the deadline (received {got!r})")

    def _take(self, n: int) -> bytes:
        out = bytes(self._pending[:n])
        del self._pending[:n]
        return out

    def _discard(self, n: int) -> None:
        if n:
            log.debug("%s discarded %r", self.name, bytes(self._pending[:n]))
            del self._pending[:n]


#: how :class:`SerialTransport` says a port would not open, before the operating system's reason
OPEN_FAILED = "cannot open port: "


#: why a port another process holds would not open (pyserial's ``exclusive``: an advisory lock every labloop opener
#: takes): pyserial said "Resource temporarily unavailable"
IN_USE = ("another process has it open (another labloop run or `labloop drivers check`, a terminal program): "
          "stop that one first")


#: what an open refused for lack of permission adds: the usual cause on Linux, and its fix (docs/hardware.md)
NO_PERMISSION = ("this account may not use the port: add it to the port's group (dialout on Debian and Ubuntu, uucp "
                 "on Arch: `sudo usermod -aG dialout $USER`) and log in again (docs/hardware.md)")


def open_refusal(exc: BaseException) -> str:
    """Why pyserial would not open a port, in words: another opener holds it (:data:`IN_USE`), no permission
    (:data:`NO_PERMISSION`: a hardware trial's "Permission denied" named neither the group nor the docs), else the
    operating system's reason (pyserial's own text names the port twice)."""
    if "exclusively lock" in str(exc):
        return IN_USE
    code = getattr(exc, "errno", None)
    if code in (errno.EACCES, errno.EPERM):
        return f"{os.strerror(code)}: {NO_PERMISSION}"
    return os.strerror(code) if isinstance(code, int) else str(exc)


def open_failure_reason(exc: Disconnected) -> str:
    """Why a port would not open, without the words the caller's own message already has."""
    return exc.what.removeprefix(OPEN_FAILED)


class SerialTransport(_FramedStream):
    """A pyserial port opened with ``serial_for_url``; the default link is 19200 8N1.

    ``poll_s`` is the longest a single low-level read blocks, i.e. how far past a deadline a read can
    return; it does not limit how long a frame may take (that is each read's ``deadline_s``).
    """

    def __init__(
        self,
        url: str,
        *,
        baudrate: int = 19200,
        bytesize: int = 8,
        parity: str = "N",
        stopbits: float = 1,
        capture: str | Path | None = None,
        poll_s: float = 0.01,
    ) -> None:
        held = next((port for port in list(_OPEN_PORTS) if port.name == url and port.is_open), None)
        if held is not None and held.instrument is not None and _OPENING.get() not in (None, held.instrument):
            # this process's own: two instruments of one campaign on one line (a daisy chain), whose plug-in driver
            # opened it twice, said "another process has it open ... stop that one first" (a plug-in engineer's trial)
            raise Disconnected(url, f"{OPEN_FAILED}instruments.{held.instrument} of this run has it open already: "
                                    "instruments on one daisy-chained line share one connection, which their driver "
                                    "must open once (docs/drivers.md, \"must share its port\"); else give each its "
                                    "own port")
        try:  # exclusive: a second process opening the port (a second run, a drivers check) is refused, where two
            # runs drove one pump into one cell, each counting the cell alone (a hardware trial)
            self._serial = serial.serial_for_url(
                url, baudrate=baudrate, bytesize=bytesize, parity=parity, stopbits=stopbits, timeout=poll_s,
                exclusive=True,
            )
        except ValueError as exc:
            raise ConfigError(url, f"bad link settings: {exc}") from exc
        except _WIRE_ERRORS as exc:
            raise Disconnected(url, f"{OPEN_FAILED}{open_refusal(exc)}") from exc
        header = {"port": url, "baudrate": baudrate, "format": f"{bytesize}{parity}{stopbits:g}"}
        try:
            wire = WireCapture(capture, header) if capture is not None else None
        except OSError as exc:  # a folder that went away, a full disk: the port is closed again, nothing stays open
            self._serial.close()
            raise ConfigError(url, f"capture {capture}: cannot write it ({exc.strerror or exc})") from None
        instrument = _OPENING.get()
        super().__init__(url, wire, where=None if instrument is None else f"{url} ({instrument})")
        #: the campaign's instrument whose driver opened it (None outside a rig's open: :func:`opening`)
        self.instrument = instrument
        _OPEN_PORTS.add(self)
        log.info("%s opened (%s baud %s)", self.where, baudrate, header["format"])

    @property
    def is_open(self) -> bool:
        """Whether the port is still open (:meth:`close` not yet called, the far end not dropped by pyserial)."""
        return bool(self._serial.is_open)

    @contextmanager
    def _wire(self, doing: str) -> Iterator[None]:
        if not self._serial.is_open:
            raise Disconnected(self.where, f"port is closed ({doing})")
        try:
            yield
        except _WIRE_ERRORS as exc:
            raise Disconnected(self.where, f"port vanished while {doing}: {exc}") from exc

    def _read_chunk(self) -> bytes:
        with self._wire("reading"):
            chunk = self._serial.read(max(1, self._serial.in_waiting))
        if chunk:
            log.debug("%s < %r", self.name, chunk)
            if self._capture is not None:
                self._capture.record("rx", chunk)
        return chunk

    def _write_raw(self, data: bytes) -> None:
        with self._wire("writing"):
            self._serial.write(data)
            self._serial.flush()

    def _flush_input(self) -> None:
        """Drop what the port received and nobody read, said at debug level as every byte is (``-vv``): stray bytes
        on a line dropped unread left no trace in a hardware trial's ``-vv`` log."""
        with self._wire("flushing input"):
            if waiting := self._serial.in_waiting:
                log.debug("%s discarded %r", self.name, self._serial.read(waiting))
            self._serial.reset_input_buffer()

    def close(self) -> None:
        """Close the port and the capture; closing twice is not an error."""
        _OPEN_PORTS.discard(self)
        if self._serial.is_open:
            try:
                self._serial.close()
            except _WIRE_ERRORS as exc:  # the far end is already gone: nothing left to release
                log.debug("%s close: %s", self.name, exc)
            log.info("%s closed", self.name)
        if self._capture is not None:
            self._capture.close()
            self._capture = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ReplayTransport(_FramedStream):
    """Serves a wire capture back to a driver, with no device and no waiting.

    Each ``write`` must equal the next captured ``tx`` chunk (else :class:`ReplayMismatch`); reads return
    the captured ``rx`` chunks in their original chunking; where the capture has no more ``rx`` before the
    next ``tx``, a read times out at once, as it did when the capture was made. ``session``: which opening of the
    port to replay, as :func:`load_capture` reads it (a capture file keeps every run's and resume's session).
    """

    def __init__(self, path: str | Path, session: int | None = None) -> None:
        super().__init__(f"replay:{Path(path).name}", None)
        self._records = load_capture(path, session)
        self._next = 0

    def _peek(self) -> CaptureRecord | None:
        return self._records[self._next] if self._next < len(self._records) else None

    def _read_chunk(self) -> bytes | None:
        record = self._peek()
        if record is None or record.direction != "rx":
            return None
        self._next += 1
        log.debug("%s < %r", self.name, record.data)
        return record.data

    def _write_raw(self, data: bytes) -> None:
        record = self._peek()
        if record is None or record.direction != "tx" or record.data != data:
            expected = "end of capture" if record is None else f"{record.direction} {record.data!r}"
            raise ReplayMismatch(
                self.name, f"driver wrote {data!r} at record {self._next}; capture has {expected}"
            )
        self._next += 1

    def _flush_input(self) -> None:
        """Nothing to flush: unread bytes of the original session were never captured."""

    def finish(self) -> None:
        """Raise :class:`ReplayMismatch` unless the driver consumed the whole capture."""
        if self._next != len(self._records):
            left = len(self._records) - self._next
            raise ReplayMismatch(
                self.name, f"{left} captured records were never replayed, next {self._peek()}"
            )

    def close(self) -> None:
        """Nothing to release; present so a replay can stand in for a :class:`SerialTransport`."""


def link_option_problem(name: str, value: object) -> str | None:
    """Why ``value`` cannot be link option ``name`` (:data:`LINK_OPTION_RANGES`, ``capture``, or ``baudrate``: one of
    pyserial's standard rates), or None if it can (or if ``name`` is not a link option); one phrase, e.g. ``must be a
    number of seconds in 0.001..60, got inf``."""
    if name == "capture":
        return capture_problem(value)
    if name == "baudrate":  # judged before a port opens: 19201, 0 or true passed validate and reached the port
        standard = isinstance(value, int) and not isinstance(value, bool) and value in serial.SerialBase.BAUDRATES
        return None if standard else (f"must be a standard baud rate ({', '.join(map(str, COMMON_BAUDRATES))}, "
                                      f"...), got {value!r}")
    if name not in LINK_OPTION_RANGES:
        return None
    low, high = LINK_OPTION_RANGES[name]
    if name == "retries":
        ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
        return None if ok else f"must be a whole number in {low:g}..{high:g}, got {value!r}"
    ok = isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high  # NaN fails
    return None if ok else f"must be a number of seconds in {low:g}..{high:g}, got {value!r}"


#: the URL schemes whose address is ``HOST:PORT`` (pyserial's ``socket://`` and ``rfc2217://``)
_HOST_PORT_SCHEMES = ("socket", "rfc2217")
#: the URL schemes that wrap a device path the native port opens, with the options each takes (pyserial's
#: serial/urlhandler/protocol_alt.py and protocol_spy.py)
_WRAPPING_SCHEMES = {"alt": ("class",), "spy": ("file", "color", "raw", "all")}
#: paths that open whichever terminal the opening process has, or a new one: never an instrument
_TERMINAL_ALIASES = ("/dev/tty", "/dev/console", "/dev/ptmx")


def port_problem(port: str, *, campaign: bool = True) -> str | None:
    """Why ``port`` cannot be the serial port of a real device, judged without opening it (opening a serial
    port toggles its control lines, which resets some instruments), or None: a URL's scheme must be one
    pyserial has a handler for and a ``socket://``/``rfc2217://`` address must be ``HOST:PORT``; a path must be
    a character device, and where the operating system says what kind (Linux: ``/sys/dev/char``), a terminal
    (``/dev/null`` is a character device too) but not the process's own (``/dev/tty``), that this account may read
    and write (the ``dialout`` group: :data:`NO_PERMISSION`). ``alt://`` and ``spy://``
    wrap a device path, judged the same way, and ``hwgrep://`` must match a port (listing ports opens none).
    ``validate`` and ``run`` both judge ports here (compose.check_instruments). One phrase for
    ``instruments.<name>.port``; ``campaign`` False (``drivers check --port``): a missing port's phrase leaves out
    how a resumed campaign is given a port that came back under another name."""
    if "://" in port:
        scheme = port.split("://", 1)[0].lower()
        known = sorted(module.name.removeprefix("protocol_") for package in serial.protocol_handler_packages
                       for module in pkgutil.iter_modules(importlib.import_module(package).__path__)
                       if module.name.startswith("protocol_"))
        if scheme not in known:
            return f"{port}: pyserial opens no {scheme}:// URL (it opens {', '.join(f'{k}://' for k in known)})"
        if scheme in _WRAPPING_SCHEMES:
            return _wrapped_problem(port, scheme)
        if scheme == "hwgrep":
            return _hwgrep_problem(port)
        if scheme in _HOST_PORT_SCHEMES:
            try:
                parts = urlsplit(port)
                number = parts.port  # ValueError when not a number in 0..65535
            except ValueError as exc:
                return f"{port}: expected {scheme}://HOST:PORT ({exc})"
            if not parts.hostname or not number:
                return f"{port}: expected {scheme}://HOST:PORT, e.g. {scheme}://192.168.1.20:4001"
        return None
    try:
        mode = os.stat(port)
    except OSError:
        resumed = ("; one that came back under another name is given to a resumed campaign with `labloop resume "
                   "STORE --port NAME=PORT`" if campaign else "")
        return (f"{port} does not exist (is the device plugged in? list ports with "
                f"`python -m serial.tools.list_ports`{resumed})")
    if stat.S_ISDIR(mode.st_mode):
        return f"{port} is a folder, not a serial port (e.g. /dev/ttyUSB0)"
    if stat.S_ISFIFO(mode.st_mode) or stat.S_ISSOCK(mode.st_mode):  # "is a file" named neither (a hardware trial)
        kind = "a named pipe" if stat.S_ISFIFO(mode.st_mode) else "a socket"
        return f"{port} is {kind}, not a serial port (a character device, e.g. /dev/ttyUSB0)"
    if not stat.S_ISCHR(mode.st_mode):
        return f"{port} is a file, not a serial port (a character device, e.g. /dev/ttyUSB0)"
    if any(os.path.exists(alias) and os.stat(alias).st_rdev == mode.st_rdev for alias in _TERMINAL_ALIASES):
        return f"{port} is the terminal of whichever program opens it, not a serial port (e.g. /dev/ttyUSB0)"
    subsystem = Path(f"/sys/dev/char/{os.major(mode.st_rdev)}:{os.minor(mode.st_rdev)}/subsystem")
    if subsystem.exists() and subsystem.resolve().name != "tty":  # pseudo-terminals have no entry: not judged
        return f"{port} is no serial port (a {subsystem.resolve().name!r} device, not a terminal)"
    if not os.access(port, os.R_OK | os.W_OK):  # validate passed it, and run refused it at open (a hardware trial)
        return f"{port}: {os.strerror(errno.EACCES)}: {NO_PERMISSION}"
    return None


def _wrapped_problem(port: str, scheme: str) -> str | None:
    """Why an ``alt://`` or ``spy://`` URL cannot open, or None: its options, ``alt``'s class, ``spy``'s file,
    and the device path it wraps (a path, not another URL: pyserial opens it with the native port)."""
    parts = urlsplit(port)
    options = parse_qs(parts.query, keep_blank_values=True)
    takes = _WRAPPING_SCHEMES[scheme]
    if unknown := sorted(set(options) - set(takes)):
        return f"{port}: {scheme}:// takes no option {unknown[0]!r} (it takes {', '.join(takes)})"
    if "class" in options:
        name = options["class"][0]
        found = getattr(serial, name, None)
        if not (isinstance(found, type) and issubclass(found, serial.Serial)):
            classes = sorted(n for n, c in vars(serial).items() if isinstance(c, type) and issubclass(c, serial.Serial))
            return f"{port}: pyserial has no port class {name!r} here (it has {', '.join(classes)})"
    if "file" in options and (problem := capture_problem(options["file"][0])) is not None:
        return f"{port}: file {problem}"
    device = parts.netloc + parts.path
    if "://" in device or not device:
        return f"{port}: {scheme}:// wraps a device path, e.g. {scheme}:///dev/ttyUSB0"
    problem = port_problem(device)
    return None if problem is None else f"{port}: {problem}"


def _hwgrep_problem(port: str) -> str | None:
    """Why an ``hwgrep://REGEXP[&n=N][&skip_busy]`` URL finds no port, or None, read as pyserial's
    serial/urlhandler/protocol_hwgrep.py reads it: the N-th port (sorted) whose name, description or hardware
    id matches. With ``skip_busy`` pyserial opens ports to pick one, so only that enough of them match is
    judged."""
    regexp, *args = port[len("hwgrep://"):].split("&")
    wanted, skip_busy = 1, False
    for arg in args:
        option, _, value = arg.partition("=")
        if option == "skip_busy":
            skip_busy = True
        elif option == "n" and value.isdigit() and int(value) >= 2:  # pyserial refuses n=1 and below
            wanted = int(value)
        else:
            return f"{port}: hwgrep:// takes &n=N (a whole number >= 2) and &skip_busy, not {arg!r}"
    try:
        found = sorted(list_ports.grep(regexp))
    except re.error as exc:
        return f"{port}: {regexp!r} is no regular expression ({exc})"
    if len(found) < wanted:
        n = len(found)
        return (f"{port}: {n} serial {plural(n, 'port')} {plural(n, 'matches', 'match')} {regexp!r}, {wanted} needed "
                "(is the device plugged in? "
                "list ports with `python -m serial.tools.list_ports -v`)")
    if skip_busy:
        return None
    problem = port_problem(found[wanted - 1][0])
    return None if problem is None else f"{port}: {problem}"


def capture_problem(value: object) -> str | None:
    """Why ``value`` cannot be a ``capture`` option (the file a :class:`WireCapture` writes), or None (no capture,
    or a file that can be written). Checked when the campaign is read: the file is created only when the port
    opens, after ``run`` has taken its store's lock, and a folder that is not there must not surface as an
    operating-system error then."""
    if value is None:
        return None
    if not isinstance(value, str | Path) or not str(value).strip():
        return f"must be the path of the file to write the wire capture to, got {value!r}"
    path = Path(value)
    if path.is_dir():
        return f"{path} is a folder: give the capture's file name, e.g. {path / 'wire.jsonl'}"
    if not path.parent.is_dir():
        return f"{path}: folder {path.parent} does not exist"
    if not os.access(path if path.exists() else path.parent, os.W_OK):
        return f"{path}: cannot be written (no write permission)"
    return None


def check_link_options(where: str, **options: object) -> None:
    """Raise :class:`ConfigError` naming the first of ``options`` outside :data:`LINK_OPTION_RANGES`."""
    for name, value in options.items():
        problem = link_option_problem(name, value)
        if problem is not None:
            raise ConfigError(where, f"{name} {problem}")


def retry(
    call: Callable[[], T],
    *,
    attempts: int,
    retry_on: tuple[type[InstrumentError], ...] = (InstrumentTimeout, ProtocolError),
    before_retry: Callable[[InstrumentError], None] | None = None,
) -> T:
    """Call ``call`` up to ``attempts`` times while it raises one of ``retry_on``; re-raise the last.

    Only for commands that are safe to repeat (queries, parameter sets): the caller decides that.
    ``before_retry`` runs between attempts (e.g. to drain a late reply).
    """
    if attempts < 1:
        raise ConfigError("retry", f"attempts must be >= 1, got {attempts}")
    attempt = 1
    while True:
        try:
            return call()
        except retry_on as exc:
            if attempt >= attempts:
                raise
            log.info("%s (attempt %d of %d); retrying", exc, attempt, attempts)
            attempt += 1
            if before_retry is not None:
                before_retry(exc)
