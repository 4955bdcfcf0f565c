"""Driver for New Era NE-1000-family syringe pumps (also sold as WPI Aladdin, Landgraf LA), basic RS-232 mode.

Protocol (docs/protocols.md, "NE-1000 syringe pumps"): ``[address]COMMAND [args]\\r`` out; ``STX`` + two-digit
address + status (``I W S P T U X``) + data or ``?error`` + ``ETX`` back; alarms ``A?R|S|T|E|O`` in place of the status.
Up to 100 pumps share one line by address, so the line is an :class:`NE1000Bus` (the transport plus a lock
that keeps each command and its reply together) and every :class:`NE1000Pump` talks through one.

How the driver stays safe on an unattended night:

- Limits first: :meth:`NE1000Pump.dispense` checks :class:`SafetyLimits` (volume, syringe content, flow
  rate; :meth:`NE1000Pump.set_rate` checks the rate too) and that every number can be
  written in the pump's 4-digit/3-decimal format *before* the first byte is sent.
- Only what is safe to repeat is retried (status and parameter queries, parameter sets, ``CLD``). ``RUN``
  is never blindly re-sent: after a lost or garbled ``RUN`` reply the driver asks the pump whether it is
  running, or whether its freshly cleared counter moved, and re-sends only when the pump is stopped and
  two readings of the counter agree that nothing moved (a single reading can be a corrupted one).
  ``STP`` goes through a status check each time, so stopping a stopped (or paused) pump is fine.
- A late reply is drained after a timeout before the retry, so it is not taken as the next reply.
- Alarms and error codes become typed errors (``A?S`` -> :class:`PumpStalled`, ``?OOR`` ->
  :class:`DeviceError` with ``code == "?OOR"``); ``?COM`` (the pump saw a bad packet) is line noise and
  retried like a garbled reply.
- A run is polled until two readings say the pump stopped, with a deadline derived from volume / rate
  and the time scale of the world it runs in (1 for hardware); the pump's own counter must then match
  the request. A pause from outside the run (front panel, a safe stop from another thread) ends it.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any, Self

from labloop.core.errors import (
    ConfigError,
    DeviceError,
    DispenseMismatch,
    InstrumentError,
    InstrumentTimeout,
    ProtocolError,
    PumpStalled,
)
from labloop.core.numeric import finite_number
from labloop.instruments.contracts import DIAMETER_TOLERANCE, PumpState, PumpStatus, RateUnit, SafetyLimits
from labloop.instruments.transport import SerialTransport, Transport, check_link_options, retry, serial_device

log = logging.getLogger(__name__)

STX, ETX = b"\x02", b"\x03"
DEFAULT_BAUDRATE = 19200
#: what a pump that does not answer its first ``VER`` is most likely set to (docs/hardware.md, "Before the first
#: run, at the instruments"): a hardware trial's silent pump was "no frame ... (received b'')" alone
LINK_ADVICE = ("is the pump on and cabled to this port, is its address {address} (the pump's own setting, option "
               "`address`), is the line at the pump's baud rate (option `baudrate`, 19200 unless changed on the "
               "pump), and is the pump in basic RS-232 mode (one left in safe mode by another program answers only "
               "framed packets, until `SAF0` is sent to it in one: docs/hardware.md)?")
DIAMETER_RANGE_MM = (0.1, 80.0)
#: how slow and how fast the pump drives a plunger (cm/min; the NE-1000 manual's rate table divided by the
#: syringe's cross-section): the flow rates a syringe allows follow from its diameter
PLUNGER_SPEED_CM_MIN = (7.0e-5, 5.1)


def rate_limits_ml_min(diameter_mm: float) -> tuple[float, float]:
    """The slowest and fastest flow (mL/min) the pump drives a syringe of ``diameter_mm`` at."""
    area_cm2 = math.pi * (diameter_mm / 20.0) ** 2
    return PLUNGER_SPEED_CM_MIN[0] * area_cm2, PLUNGER_SPEED_CM_MIN[1] * area_cm2


#: the baud rates an NE-1000 runs at (docs/protocols.md; ``*ADR n B baud`` sets one)
BAUDRATES = (300, 1200, 2400, 9600, 19200)


def option_problem(name: str, value: object) -> str | None:
    """Why ``value`` cannot be the pump's option ``name`` (``address``, ``diameter_mm``, ``content_ml``, ``poll_s``,
    ``run_margin_s``, ``baudrate``), or None: the one check of these values, made by :class:`NE1000Pump` when it
    opens and by the campaign when it is read (the descriptor's ``option_problem``), so a ``diameter_mm: big`` is
    named as that option before any port opens rather than as a Python comparison error.
    """
    number = finite_number(value)
    if name == "address":
        whole = isinstance(value, int) and not isinstance(value, bool)
        return None if whole and 0 <= value <= 99 else f"must be a whole number 0..99, got {value!r}"  # type: ignore[operator]
    if name == "diameter_mm":
        low, high = DIAMETER_RANGE_MM
        return None if number and low <= value <= high else (  # type: ignore[operator]
            f"must be the syringe's inner diameter, a number of mm in {low:g}..{high:g}, got {value!r}")
    if name in ("content_ml", "poll_s", "run_margin_s"):
        return None if number and value >= 0 else f"must be a number >= 0, got {value!r}"  # type: ignore[operator]
    if name == "baudrate" and value not in BAUDRATES:  # 38400 passed validate, and a rehearsal on a pty cannot tell
        return f"must be one of the NE-1000's baud rates, {', '.join(map(str, BAUDRATES))}, got {value!r}"
    return None


def options_rate_range(options: Mapping[str, Any]) -> tuple[float, float] | None:
    """The flow rates a pump opened with ``options`` can drive its syringe at, when they give its diameter
    (else the pump's own setting decides, read once connected)."""
    diameter = options.get("diameter_mm")
    return None if diameter is None or option_problem("diameter_mm", diameter) else rate_limits_ml_min(diameter)


def options_content_ml(options: Mapping[str, Any]) -> float | None:
    """What the syringe of a pump opened with ``options`` holds when it opens (``content_ml``; None: full, as
    :class:`NE1000Pump` takes it), for the protocol executor's count (the descriptor's ``content_ml``); None for a
    value :func:`option_problem` refuses, which the campaign names."""
    content = options.get("content_ml")
    return None if content is None or option_problem("content_ml", content) else float(content)


REL_TOL = 1e-3  # the pump keeps 4 significant digits (<= 0.05%); refuse values that would lose more

#: the states in which a pump found when opened may have pumped into the cell since it was left so: infusing, purging,
#: or in a timed pause between a program's phases; paused, waiting for a trigger or withdrawing (a refill, from the
#: reservoir) it moved nothing into the cell (a newcomer's read: a paused pump refused the start for the cell)
INTO_THE_CELL = frozenset({PumpState.INFUSING, PumpState.PURGING, PumpState.TIMED_PAUSE})

STATES = {
    "I": PumpState.INFUSING,
    "W": PumpState.WITHDRAWING,
    "S": PumpState.STOPPED,
    "P": PumpState.PAUSED,
    "T": PumpState.TIMED_PAUSE,
    "U": PumpState.WAITING_TRIGGER,
    "X": PumpState.PURGING,
}
ALARMS = {
    "R": "pump was reset (power-up or power loss); the command was not executed",
    "S": "motor stalled",
    "T": "safe-mode communication timeout",
    "E": "pumping program error",
    "O": "pumping program phase out of range",
}
ERRORS = {
    "?": "command not recognised",
    "?NA": "command not applicable now",
    "?OOR": "value out of range",
    "?COM": "pump received a bad packet",
    "?IGN": "command ignored (a new phase started)",
}
RATE_CODES = {RateUnit.ML_MIN: "MM", RateUnit.UL_MIN: "UM", RateUnit.ML_H: "MH", RateUnit.UL_H: "UH"}
RATE_CODE_ML_MIN = {code: unit.ml_min for unit, code in RATE_CODES.items()}
VOLUME_CODE_ML = {"UL": 1e-3, "ML": 1.0}  # uL first: small volumes keep more digits

_REPLY = re.compile(rb"\x02(\d\d)(?:A\?([RSTEO])|([IWSPTUX])([\x20-\x7e]*))\x03")
_NUM = r"(\d+\.?\d*|\.\d+)"
_VERSION = r"NE\d+V\d+\.\d+"


class Direction(StrEnum):
    INFUSE = "INF"
    WITHDRAW = "WDR"

    @property
    def running_status(self) -> str:
        return "I" if self is Direction.INFUSE else "W"


@dataclass(frozen=True)
class NE1000Reply:
    """One parsed reply frame."""

    address: int
    status: str  # I W S P T U X, or "A" for an alarm
    alarm: str | None  # R S T E O
    data: str  # data after the status ("" if none); an error code (``?OOR``) lands in ``error``
    error: str | None
    raw: bytes


def parse_reply(frame: bytes, where: str) -> NE1000Reply:
    """Parse ``STX .. ETX``; :class:`ProtocolError` for anything a pump would not send."""
    m = _REPLY.fullmatch(frame)
    if m is None:
        raise ProtocolError(where, f"malformed reply {frame!r}")
    address = int(m[1])
    if m[2] is not None:
        return NE1000Reply(address, "A", m[2].decode(), "", None, frame)
    data = m[4].decode()
    if data.startswith("?"):
        if data not in ERRORS:
            raise ProtocolError(where, f"unknown error code in reply {frame!r}")
        return NE1000Reply(address, m[3].decode(), None, "", data, frame)
    return NE1000Reply(address, m[3].decode(), None, data, None, frame)


def number_text(value: float) -> str | None:
    """The most precise NE-1000 spelling of ``value`` (<= 4 digits, <= 3 decimals), or None if none fits."""
    if not (math.isfinite(value) and value >= 0):
        return None
    for decimals in (3, 2, 1, 0):
        text = f"{value:.{decimals}f}"
        if sum(c.isdigit() for c in text) <= 4:
            return text.rstrip("0").rstrip(".") if "." in text else text
    return None


def encode_quantity(
    value: float, units: Mapping[str, float], where: str, what: str
) -> tuple[str, str, float]:
    """Pick the unit whose 4-digit spelling of ``value`` (in base units) is most precise.

    Returns (number text, unit code, the value that text stands for, in base units). Raises
    :class:`ConfigError` when no unit keeps ``value`` within ``REL_TOL``.
    """
    best: tuple[float, str, str, float] | None = None
    for code, factor in units.items():
        text = number_text(value / factor)
        if text is None:
            continue
        sent = float(text) * factor
        error = abs(sent - value) / value if value else abs(sent)
        if best is None or error < best[0]:
            best = (error, text, code, sent)
    if best is None or best[0] > REL_TOL or (value > 0 and best[3] <= 0):
        raise ConfigError(where, f"{what} {value:g} cannot be written in the pump's 4-digit format")
    return best[1], best[2], best[3]


class NE1000Bus:
    """One RS-232 line shared by NE-1000 pumps: the transport, a lock, the exchange and its retries.

    ``timeout_s`` is the deadline for each reply; ``retries`` how many times a safe command is repeated
    after a timeout or a garbled reply; ``settle_s`` how long the line must be quiet after a timeout
    before the retry (so a late reply is drained, not mistaken for the next one). ``retried`` counts
    retries by error type.
    """

    def __init__(
        self, transport: Transport, *, timeout_s: float = 0.5, retries: int = 3, settle_s: float = 0.05
    ) -> None:
        check_link_options(transport.name, timeout_s=timeout_s, retries=retries, settle_s=settle_s)
        self.transport = transport
        self.timeout_s = timeout_s
        self.retries = retries
        self.settle_s = settle_s
        self.retried: Counter[str] = Counter()
        #: the same, by the address of the pump whose command was repeated (:attr:`NE1000Pump.retried`)
        self.retried_at: defaultdict[int, Counter[str]] = defaultdict(Counter)
        self._lock = threading.RLock()

    @classmethod
    def open(
        cls,
        url: str,
        *,
        baudrate: int = DEFAULT_BAUDRATE,
        capture: str | Path | None = None,
        timeout_s: float = 0.5,
        retries: int = 3,
        settle_s: float = 0.05,
    ) -> NE1000Bus:
        """Open ``url`` at ``baudrate`` 8N1 (optionally capturing the wire to a JSON-lines file)."""
        transport = SerialTransport(url, baudrate=baudrate, capture=capture)
        return cls(transport, timeout_s=timeout_s, retries=retries, settle_s=settle_s)

    def command(
        self,
        address: int,
        text: str,
        *,
        retry_safe: bool = True,
        expect: Callable[[NE1000Reply, str], None] | None = None,
        reply_from: int | None = None,
    ) -> NE1000Reply:
        """Send ``[address]text\\r``, return the checked reply.

        Alarms and error codes raise their typed errors; ``expect(reply, where)`` may raise
        :class:`ProtocolError` for a reply that parses but is not what this command answers, which is
        retried like a garbled one when ``retry_safe``. ``reply_from`` is the address the answer comes
        from when it differs (``*ADR``).
        """
        where = f"NE-1000 #{address:02d} on {self.transport.name}"
        wire = f"{address}{text}\r".encode("ascii")
        answering = address if reply_from is None else reply_from

        def exchange() -> NE1000Reply:
            self.transport.reset_input()
            self.transport.write(wire)
            try:
                frame = self.transport.read_frame(STX, ETX, self.timeout_s)
            except InstrumentTimeout as exc:  # say which pump and command, not only which port
                raise InstrumentTimeout(where, f"no reply to {_asked(text)}: {exc.what}") from exc
            reply = parse_reply(frame, where)
            if reply.address != answering:
                raise ProtocolError(where, f"reply from address {reply.address:02d}: {reply.raw!r}")
            _raise_for(reply, where, text)
            if expect is not None:
                expect(reply, where)
            return reply

        with self._lock:
            if not retry_safe:
                return exchange()
            return retry(exchange, attempts=self.retries + 1, before_retry=partial(self._before_retry, address))

    def _before_retry(self, address: int, exc: InstrumentError) -> None:
        self.retried[type(exc).__name__] += 1
        self.retried_at[address][type(exc).__name__] += 1
        if isinstance(exc, InstrumentTimeout):
            try:
                self.transport.drain(self.settle_s, self.timeout_s)
            except InstrumentTimeout as noise:  # the line never went quiet: retrying would meet the same noise
                raise InstrumentTimeout(exc.where, f"{exc.what}; {noise.what}") from noise

    def close(self) -> None:
        """Close the line; closing twice is not an error."""
        self.transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class _Line:
    """A line :meth:`NE1000Pump.open` opened: its bus, the link settings it was opened with, and the addresses of
    the pumps using it (the line closes with the last)."""

    bus: NE1000Bus
    settings: dict[str, Any]
    addresses: set[int]


#: the lines open in this process, by device (:func:`serial_device`), so pumps of one chain share one
_LINES: dict[str, _Line] = {}
_LINES_LOCK = threading.Lock()


def _take_line(url: str, address: int, settings: dict[str, Any]) -> tuple[str, NE1000Bus]:
    """The bus of the line ``url`` names for the pump at ``address``: the one already open for another pump of its
    chain, or a new one opened with ``settings``; and the key to give back to :func:`_release_line`. Why one bus a
    line: pumps of one chain opened each its own port on one tty (the example campaign's two pumps share
    /dev/ttyUSB0 at addresses 0 and 1), so each had its own lock and its own drain of late replies, and a stop sent
    to one pump while another's command waited for its reply read the other's answer ("reply from address 01")."""
    device = serial_device(url)
    where = f"NE-1000 #{address:02d} on {url}"
    with _LINES_LOCK:
        line = _LINES.get(device)
        if line is None:
            line = _LINES[device] = _Line(NE1000Bus.open(url, **settings), dict(settings), set())
        elif address in line.addresses:
            raise ConfigError(where, f"another pump on this line is already at address {address}: both would "
                                     "command one device")
        elif (differ := [k for k, v in settings.items() if line.settings[k] != v]):
            said = ", ".join(f"{k} {settings[k]!r} where it has {line.settings[k]!r}" for k in differ)
            raise ConfigError(where, f"shares its line with pump(s) at address(es) "
                                     f"{', '.join(map(str, sorted(line.addresses)))}, opened with other link "
                                     f"settings ({said}): the pumps of one line share them")
        line.addresses.add(address)
        return device, line.bus


def _release_line(device: str, address: int) -> None:
    """Give back the pump at ``address``'s use of the line ``device``; the last pump's closes it."""
    with _LINES_LOCK:
        line = _LINES.get(device)
        if line is None or address not in line.addresses:
            return
        line.addresses.discard(address)
        if not line.addresses:
            del _LINES[device]
            line.bus.close()


def _asked(text: str) -> str:
    """A command as a message names it: ``'VOL 500'``, or the empty command (the status poll a dispense waits with)
    as ``a status poll``: "no reply to ''" and "in reply to ''" told an operator nothing (hardware trials)."""
    return repr(text) if text else "a status poll"


def _raise_for(reply: NE1000Reply, where: str, text: str) -> None:
    asked = _asked(text)
    if reply.alarm == "S":
        raise PumpStalled(where, f"alarm A?S (motor stalled) in reply to {asked}")
    if reply.alarm is not None:
        raise DeviceError(where, f"A?{reply.alarm}", f"{ALARMS[reply.alarm]} (in reply to {asked})")
    if reply.error == "?COM":
        raise ProtocolError(where, f"{ERRORS['?COM']} for {asked}")
    if reply.error is not None:
        raise DeviceError(where, reply.error, f"{ERRORS[reply.error]}: {asked}")


def _no_data(reply: NE1000Reply, where: str) -> None:
    if reply.data:
        raise ProtocolError(where, f"unexpected data in reply {reply.raw!r}")


def _matching(pattern: str) -> Callable[[NE1000Reply, str], None]:
    def check(reply: NE1000Reply, where: str) -> None:
        if re.fullmatch(pattern, reply.data) is None:
            raise ProtocolError(where, f"reply {reply.raw!r} does not match {pattern!r}")

    return check


def _status_in(allowed: str) -> Callable[[NE1000Reply, str], None]:
    def check(reply: NE1000Reply, where: str) -> None:
        _no_data(reply, where)
        if reply.status not in allowed:
            raise ProtocolError(where, f"status {reply.status!r} where {'/'.join(allowed)} was expected")

    return check


class NE1000Pump:
    """One NE-1000 pump on an :class:`NE1000Bus`; satisfies :class:`labloop.instruments.contracts.Pump`.

    Connecting reads ``VER`` (acknowledging the power-up ``A?R``, or clearing stray input) and sets the
    diameter if given.
    ``content_ml`` is what the syringe holds now (default: full, ``limits.syringe_ml``); the driver keeps
    it up to date from the pump's counters so a dispense can be refused before the syringe is empty. A campaign's
    protocol executor counts the syringe from the same option (:func:`options_content_ml`).
    ``time_scale`` is device seconds per wall second of the world the pump lives in (1 for hardware,
    ``math.inf`` for a zero-latency emulator): run deadlines are ``1.25 x volume / rate / time_scale +
    run_margin_s``. ``poll_s`` is the pause between status polls while a run is in progress.
    """

    def __init__(
        self,
        bus: NE1000Bus,
        address: int = 0,
        *,
        limits: SafetyLimits,
        diameter_mm: float | None = None,
        content_ml: float | None = None,
        time_scale: float = 1.0,
        poll_s: float = 0.1,
        run_margin_s: float = 2.0,
        owns_bus: bool = False,
    ) -> None:
        where = f"NE-1000 #{address} on {bus.transport.name}"
        for name, value in (("address", address), ("content_ml", content_ml), ("poll_s", poll_s),
                            ("run_margin_s", run_margin_s), ("diameter_mm", diameter_mm)):
            if value is not None and (problem := option_problem(name, value)) is not None:
                raise ConfigError(where, f"{name} {problem}")
        content = limits.syringe_ml if content_ml is None else content_ml
        if not content <= limits.syringe_ml:
            raise ConfigError(where, f"content_ml {content} is outside 0..{limits.syringe_ml} mL")
        if not time_scale > 0:
            raise ConfigError(where, f"bad option {time_scale=}")
        self.bus = bus
        self.address = address
        self.limits = limits
        self.time_scale = time_scale
        self.poll_s = poll_s
        self.run_margin_s = run_margin_s
        self.content_ml = content
        self._owns_bus = owns_bus
        self._line: str | None = None  # the shared line's device, when :meth:`open` took it
        self._diameter_mm: float | None = None  # as last set or read: the rates it allows
        #: what the pump was doing when opened if it may have pumped into the cell since (:data:`INTO_THE_CELL`) and
        #: :meth:`_connect` stopped it, else None: the rig refuses to start then (docs/drivers.md, ``found_running``)
        self.found_running: str | None = None
        #: the syringe diameter (mm) the pump held when opened, read before ``diameter_mm`` is set, when it was
        #: another (the rig warns: docs/drivers.md, ``found_diameter_mm``), else None. Why: two pumps' ports swapped
        #: were set each to the other's syringe without a word, and would have pumped ~10x the volumes asked (a
        #: hardware rehearsal)
        self.found_diameter_mm: float | None = None
        self.firmware = self._connect()
        if diameter_mm is not None:
            held = self.diameter()
            self.set_diameter(diameter_mm)
            if not math.isclose(held, self._diameter_mm, rel_tol=DIAMETER_TOLERANCE):  # type: ignore[arg-type]
                self.found_diameter_mm = held
                log.info("%s: held a %g mm syringe's diameter when opened; set to %g mm", self.where, held,
                         self._diameter_mm)

    @classmethod
    def open(
        cls,
        url: str,
        address: int = 0,
        *,
        limits: SafetyLimits,
        baudrate: int = DEFAULT_BAUDRATE,
        capture: str | Path | None = None,
        timeout_s: float = 0.5,
        retries: int = 3,
        **options: Any,
    ) -> NE1000Pump:
        """The pump at ``address`` on the line ``url``; pumps of one chain opened here share the line's bus
        (:func:`_take_line`, which refuses an address taken or other link settings), and the last to
        :meth:`close` closes it."""
        settings = {"baudrate": baudrate, "capture": capture, "timeout_s": timeout_s, "retries": retries}
        device, bus = _take_line(url, address, settings)
        try:
            pump = cls(bus, address, limits=limits, **options)
        except BaseException:
            _release_line(device, address)
            raise
        pump._line = device
        return pump

    @property
    def where(self) -> str:
        return f"NE-1000 #{self.address:02d} on {self.bus.transport.name}"

    @property
    def retried(self) -> Counter[str]:
        """The commands to this pump its line repeated, by the fault's type: what the protocol executor journals with
        each step (docs/drivers.md, "Errors"); the line's bus counts them, by address, as it repeats them. Why: a
        noisy line's 48 repeats were nowhere in the journal (a hardware trial)."""
        return self.bus.retried_at[self.address]

    # -- exchanges ----------------------------------------------------------------------------------------
    def _query(self, text: str, pattern: str) -> re.Match[str]:
        reply = self.bus.command(self.address, text, expect=_matching(pattern))
        m = re.fullmatch(pattern, reply.data)
        assert m is not None  # checked by the expectation, which retries a garbled reply
        return m

    def _set(self, text: str) -> None:
        self.bus.command(self.address, text, expect=_no_data)

    def _connect(self) -> str:
        """The firmware version, asked twice when the first answer is the power-up ``A?R`` or ``?``.

        ``?`` to the first ``VER``: the pump had bytes without a ``\r`` in its input (another program
        typed at it, a cable plugged in mid-byte), which our ``\r`` ended as one unknown command; the
        buffer is empty now and ``VER`` is a query, so asking again is safe (a hardware rehearsal's
        pump refused every campaign after a terminal program wrote ``hello`` to it).
        """
        def version() -> NE1000Reply:
            try:
                return self.bus.command(self.address, "VER", expect=_matching(_VERSION))
            except (InstrumentTimeout, ProtocolError) as exc:  # a first exchange that fails is the link's setting
                raise type(exc)(exc.where, f"{exc.what}; {LINK_ADVICE.format(address=self.address)}") from exc

        try:
            reply = version()
        except DeviceError as exc:
            if exc.code not in ("A?R", "?"):
                raise
            log.info("%s: %s on connecting; asking again", self.where,
                     "power-up alarm A?R acknowledged" if exc.code == "A?R"
                     else "bytes left in its input before the first command made it unknown")
            reply = version()
        log.info("%s: connected, firmware %s", self.where, reply.data)
        state = STATES.get(reply.status, PumpState.STOPPED)
        if state is not PumpState.STOPPED:
            # a pump still pumping the phase of a run killed mid-dispense (kill -9, a computer that lost power) kept
            # filling the cell while a resume refused its DIA with ?NA, named as the wrong driver (a hardware trial)
            log.warning("%s: %s when opened, left so by a run that stopped without stopping it (killed, or the "
                        "computer lost power?): stopping it now; it may have moved more than labloop counts",
                        self.where, state.value)
            self.stop()
            self.found_running = state.value if state in INTO_THE_CELL else None
        return reply.data

    # -- queries ------------------------------------------------------------------------------------------
    def state(self) -> PumpState:
        """One status query (an empty command)."""
        return STATES[self.bus.command(self.address, "", expect=_status_in("IWSPTUX")).status]

    def dispensed(self) -> tuple[float, float]:
        """(infused, withdrawn) in mL, from the pump's counters (``DIS``)."""
        m = self._query("DIS", rf"I{_NUM}W{_NUM}(UL|ML)")
        unit = VOLUME_CODE_ML[m[3]]
        return float(m[1]) * unit, float(m[2]) * unit

    def status(self) -> PumpStatus:
        infused, withdrawn = self.dispensed()
        return PumpStatus(self.state(), infused, withdrawn)

    def diameter(self) -> float:
        self._diameter_mm = float(self._query("DIA", _NUM)[1])
        return self._diameter_mm

    @property
    def diameter_mm(self) -> float | None:
        """The syringe diameter (mm) as last set or read, None before either."""
        return self._diameter_mm

    @property
    def rate_range_ml_min(self) -> tuple[float, float]:
        """The flow rates this pump can drive its syringe at (mL/min): the protocol executor checks every
        pumping step against it before anything moves (a rate the pump answers ``?OOR`` to failed mid-run)."""
        return rate_limits_ml_min(self._diameter_mm if self._diameter_mm is not None else self.diameter())

    def rate(self) -> tuple[float, RateUnit]:
        m = self._query("RAT", rf"{_NUM}(UM|MM|UH|MH)")
        return float(m[1]), next(u for u, code in RATE_CODES.items() if code == m[2])

    def volume_ml(self) -> float:
        """The volume a run will pump (0 = continuous), in mL."""
        m = self._query("VOL", rf"{_NUM}(UL|ML)")
        return float(m[1]) * VOLUME_CODE_ML[m[2]]

    def direction(self) -> Direction:
        return Direction(self._query("DIR", "INF|WDR")[0])

    # -- settings -----------------------------------------------------------------------------------------
    def set_diameter(self, mm: float) -> None:
        if (problem := option_problem("diameter_mm", mm)) is not None:
            raise ConfigError(self.where, f"diameter_mm {problem}")
        text, _, _ = encode_quantity(mm, {"": 1.0}, self.where, "diameter (mm)")
        self._set(f"DIA {text}")
        self._diameter_mm = float(text)

    def set_rate(self, value: float, unit: RateUnit | str) -> None:
        unit = RateUnit(unit)
        self.limits.check_rate(value * unit.ml_min, where=self.where)
        code = RATE_CODES[unit]
        text, _, _ = encode_quantity(value, {code: 1.0}, self.where, f"rate ({unit})")
        self._set(f"RAT {text} {code}")

    def set_volume(self, volume_ml: float) -> None:
        """Volume for the next run, in the units that keep the most digits (two commands)."""
        text, code, _ = encode_quantity(volume_ml, VOLUME_CODE_ML, self.where, "volume (mL)")
        self._set(f"VOL {code}")
        self._set(f"VOL {text}")

    def set_direction(self, direction: Direction | str) -> None:
        self._set(f"DIR {Direction(direction)}")

    def clear_dispensed(self, direction: Direction | str | None = None) -> None:
        """Zero the infused and/or withdrawn counter (``CLD``)."""
        for d in [Direction(direction)] if direction is not None else list(Direction):
            self._set(f"CLD {d}")

    def change_address(self, new_address: int, *, baudrate: int | None = None) -> None:
        """Move this pump to ``new_address`` (``*ADR``); the line's baud rate changes with ``baudrate``."""
        if not 0 <= new_address <= 99:
            raise ConfigError(self.where, f"address must be 0..99, got {new_address}")
        text = f"*ADR {new_address}" + (f" B {baudrate}" if baudrate is not None else "")
        try:
            self.bus.command(self.address, text, retry_safe=False, expect=_no_data, reply_from=new_address)
        except (InstrumentTimeout, ProtocolError) as exc:  # the reply was lost: did the move happen?
            log.info("%s: %s; checking the new address", self.where, exc)
            self.bus.command(new_address, "*ADR", expect=_matching(f"{new_address:02d}"))
        log.info("%s: moved to address %02d", self.where, new_address)
        self.address = new_address

    # -- motion -------------------------------------------------------------------------------------------
    def run(self) -> PumpState:
        """Start (or resume) a run with the current settings; sent once, not retried."""
        reply = self.bus.command(self.address, "RUN", retry_safe=False, expect=_status_in("IWX"))
        return STATES[reply.status]

    def stop(self) -> None:
        """Bring the pump to a full stop (``S``): running -> paused -> stopped; stopped stays stopped."""
        for _ in range(2 * (self.bus.retries + 2)):
            try:
                if self.state() is PumpState.STOPPED:
                    return
                self.bus.command(self.address, "STP", retry_safe=False, expect=_status_in("PS"))
            except PumpStalled as exc:  # a stall stops the pump; reporting it acknowledged the alarm
                log.warning("%s while stopping", exc)
            except DeviceError as exc:
                if exc.code != "?NA":  # ?NA: it was already stopped by the time STP arrived
                    raise
            except (InstrumentTimeout, ProtocolError) as exc:
                log.info("%s while stopping; checking status", exc)
        raise InstrumentTimeout(self.where, "pump did not reach the stopped state")

    def dispense(self, volume_ml: float, rate_ml_min: float) -> float:
        """Infuse ``volume_ml`` at ``rate_ml_min``; returns the infused volume the pump reports (mL)."""
        return self._pump(Direction.INFUSE, volume_ml, rate_ml_min)

    def withdraw(self, volume_ml: float, rate_ml_min: float) -> float:
        """Withdraw ``volume_ml`` (refilling the syringe); returns the withdrawn volume the pump reports."""
        return self._pump(Direction.WITHDRAW, volume_ml, rate_ml_min)

    def _pump(self, direction: Direction, volume_ml: float, rate_ml_min: float) -> float:
        # Everything that can be refused is refused before the first byte.
        if direction is Direction.INFUSE:
            self.limits.check_dispense(volume_ml, content_ml=self.content_ml, where=self.where)
        else:
            self.limits.check_withdraw(volume_ml, content_ml=self.content_ml, where=self.where)
        self.limits.check_rate(rate_ml_min, where=self.where)
        vol_text, vol_code, vol_ml = encode_quantity(volume_ml, VOLUME_CODE_ML, self.where, "volume (mL)")
        rate_text, rate_code, rate_sent = encode_quantity(
            rate_ml_min, RATE_CODE_ML_MIN, self.where, "rate (mL/min)"
        )
        deadline_s = 1.25 * vol_ml / rate_sent * 60.0 / self.time_scale + self.run_margin_s
        sign = -1.0 if direction is Direction.INFUSE else 1.0
        log.info("%s: %s %.4g mL at %.4g mL/min", self.where, direction.name.lower(), vol_ml, rate_sent)

        self.stop()
        settings = (f"VOL {vol_code}", f"VOL {vol_text}", f"RAT {rate_text} {rate_code}", f"DIR {direction}")
        for text in (*settings, f"CLD {direction}"):
            self._set(text)
        before = self.content_ml
        self.content_ml = before + sign * vol_ml  # assume the worst until the counter says otherwise
        self._start(direction)
        self._wait_until_stopped(direction, time.monotonic() + deadline_s, deadline_s)
        done = self._verified(direction, vol_ml)
        self.content_ml = before + sign * done
        return done

    def _counter(self, direction: Direction) -> float:
        infused, withdrawn = self.dispensed()
        return infused if direction is Direction.INFUSE else withdrawn

    def _agreed_counter(self, direction: Direction, first: float | None = None) -> float:
        """A counter reading confirmed by an identical second one.

        Basic mode has no checksum: a dropped or flipped digit can still parse (``I100.0`` losing its
        ``1`` reads as zero), so a reading that decides anything is only believed when two agree.
        """
        last = self._counter(direction) if first is None else first
        for _ in range(self.bus.retries + 1):
            again = self._counter(direction)
            if again == last:
                return again
            last = again
        raise ProtocolError(self.where, "dispensed-volume readings keep disagreeing")

    def _start(self, direction: Direction) -> None:
        running = direction.running_status
        try:
            self.bus.command(self.address, "RUN", retry_safe=False, expect=_status_in(running))
            return
        except (InstrumentTimeout, ProtocolError) as exc:
            lost: InstrumentError = exc
        for _ in range(self.bus.retries):  # the RUN reply was lost or garbled: did the pump start?
            log.info("%s after RUN; checking whether the pump started", lost)
            state = self.state()
            if state in (STATES[running], PumpState.PAUSED):  # a pause: the wait confirms it and stops
                return
            if state is not PumpState.STOPPED:
                raise ProtocolError(self.where, f"pump is {state} after RUN")
            if self._agreed_counter(direction) > 0:
                return  # it ran, and has already finished
            try:  # stopped, with the freshly cleared counter still at zero: RUN never arrived
                self.bus.command(self.address, "RUN", retry_safe=False, expect=_status_in(running))
                return
            except (InstrumentTimeout, ProtocolError) as exc:
                lost = exc
        raise lost

    def _wait_until_stopped(self, direction: Direction, deadline: float, deadline_s: float) -> None:
        """Poll until the run ends; a pause from outside the run ends it too.

        A pump is paused (``P``) by a ``STP`` this run did not send: the front panel's stop key, or a safe
        stop from another thread (orchestrator/loop/rig.py), which needs a second ``STP`` to reach
        stopped. The run is then over: the pump is brought to a full stop (``RUN`` would resume a paused
        pump where it left off) and the counter decides what was delivered.

        Basic mode has no checksum, and one flipped bit turns ``W`` into ``S``: a reading that ends the
        run, stopped or paused, is only believed when the next one agrees, as a counter is
        (:meth:`_agreed_counter`); otherwise the counter would be read, and judged short, mid-run.
        """
        allowed = direction.running_status + "PS"

        def status() -> str:
            return self.bus.command(self.address, "", expect=_status_in(allowed)).status

        while True:
            now = status()
            if now == "S" and status() == "S":
                return
            if now == "P" and status() == "P":
                log.warning("%s: paused during the run (stopped from outside it); stopping", self.where)
                self.stop()
                return
            if time.monotonic() > deadline:
                overdue = InstrumentTimeout(self.where, f"run did not finish within {deadline_s:.3g} s")
                try:
                    self.stop()
                except InstrumentError as exc:
                    raise overdue from exc
                raise overdue
            time.sleep(self.poll_s)

    def _verified(self, direction: Direction, volume_ml: float) -> float:
        """The pump's counter, which must match the request (a disagreeing reading is confirmed first)."""
        done = self._counter(direction)
        if abs(done - volume_ml) > REL_TOL * volume_ml:
            done = self._agreed_counter(direction, done)
            if abs(done - volume_ml) > REL_TOL * volume_ml:
                raise DispenseMismatch(
                    self.where, f"pump reports {done:.4g} mL where {volume_ml:.4g} mL was asked",
                    delivered_ml=done if direction is Direction.INFUSE and math.isfinite(done) else None,
                )
        return done

    def close(self) -> None:
        """Release the pump (and its line: the bus it was given if it owns it, or its share of the line
        :meth:`open` took, closed with the last pump); closing twice is not an error."""
        if self._line is not None:
            _release_line(self._line, self.address)
        elif self._owns_bus:
            self.bus.close()
