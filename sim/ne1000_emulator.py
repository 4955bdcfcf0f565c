"""Firmware emulator of New Era NE-1000 syringe pumps (basic RS-232 mode), up to 100 on one line.

It exists so that the NE-1000 driver, the protocols and ``labloop run --dry-run`` exercise exactly the
bytes a real pump takes and gives: run it on a :class:`labloop.sim.pty_device.PtyDevice` and any serial
client can talk to it. Pumping happens in (scaled) time and pours into the shared
:class:`labloop.sim.cell.Cell`, so a wrong dispense shows up as a wrong concentration downstream.

What it accepts, as the device does (docs/protocols.md): ``[address]COMMAND [args]\\r``; spaces and
control characters are ignored and letters upper-cased; an empty command is a status query; numbers have
at most 4 digits and at most 3 decimals. Replies are ``STX`` + two-digit address + status character
(``I W S P X``) + data or ``?error`` + ``ETX``; alarms replace the status with ``A?`` + R/S; the first reply
after power-up is ``A?R``. ``VER`` answers ``NE1000V3.928``.

Choices where the sources are silent ([infer], documented here because the emulator must be precise):

- No address means address 0. At most two address digits are read; ``100DIA`` is pump 10 sent ``0DIA``.
  A command for an address where no pump listens gets no reply at all (nobody is there to answer).
- A pending alarm replaces the whole reply to the next command, and that command is *not* executed; the
  alarm is cleared by having been reported (clients re-send, as nesp-lib does after ``A?R``).
- Reply numbers carry 4 significant digits and always a decimal point, at most 3 decimals: ``26.59``,
  ``1.000``, ``12.50``, ``1000.``; rates and volumes are followed by their units (``5.000MM``,
  ``1.000ML``); ``DIS`` reports both counters in the current volume units (``I0.500W0.000ML``).
- Errors: an unknown command name, or a known one whose arguments do not fit its grammar, gets ``?``;
  a number breaking the 4-digit/3-decimal rule, or a value out of range, gets ``?OOR``; a setting that
  cannot change now gets ``?NA``. ``?COM`` (a safe-mode packet error) and ``?IGN`` (a program phase
  ignored) are never produced: safe mode and pumping programs are not emulated.
- While running (I, W, X): ``DIA``, ``DIR``, ``VOL`` (value or units) and rate *units* answer ``?NA``; the
  rate value may change. ``RUN`` while running, and ``PUR`` while running, answer ``?NA``.
- ``STP`` while infusing/withdrawing pauses (``P``, the rest of the phase kept); ``STP`` while paused or
  purging stops (``S``); ``STP`` while stopped answers ``?NA`` (the "error on some firmware" case).
  ``RUN`` while paused resumes the same phase.
- ``DIA`` range 0.1-80.0 mm (nesp-lib's limits). Setting it also resets the volume units to the
  default for that diameter: uL up to 14.00 mm, mL above.
- Rate limits follow from a plunger speed of 7.0e-5 to 5.1 cm/min, derived from the NE-1000 data-sheet
  extremes (0.73 uL/h with a 4.699 mm syringe, 1699 mL/h with 26.59 mm). ``RAT`` outside them answers
  ``?OOR``; so does ``RUN`` if a later ``DIA`` moved the set rate outside them. ``PUR`` runs at the
  maximum rate until stopped.
- ``VOL 0`` means continuous. ``VOL UL|ML`` keeps the number and reinterprets it in the new units.
  Runs that reach the volume stop by themselves (status ``S``).
- ``DIR REV`` reverses the direction; ``DIR STK`` (meaning unknown) answers ``?NA``.
- ``*ADR`` without arguments returns the address (``00``); ``*ADR n [B baud]`` (baud 300, 1200, 2400,
  9600, 19200) moves the pump to address n, and the reply already comes from the new address; an
  address taken by another pump on the line answers ``?NA``. The baud rate is recorded only: a pty has none.
- ``SAF`` answers ``0`` (basic mode); ``SAF0`` is accepted; any other ``SAF n`` answers ``?NA``.
- Settings survive :meth:`NE1000Emulator.power_cycle` (non-volatile memory); a run in progress does
  not, and every pump then reports ``A?R``.
- Time: pumping advances by rate x device time (see :class:`TimeScale`). At zero latency a run with a
  volume completes the next time the pump is looked at (a command or a tick); a *continuous* run has no
  end to jump to, so it advances in real time.
- Withdrawing refills a syringe from its own reservoir; the cell is not touched. Purging pours into the
  cell like infusing when the direction is ``INF``.
- Faults: a stall (``FaultKind.STALL``) is decided once per ``RUN``; the run then stops at a random
  fraction of its volume (of one minute of pumping, if continuous) and the next reply is ``A?S``. The
  reply-path faults are applied by the pty link.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from labloop.instruments.ne1000 import DIAMETER_RANGE_MM, rate_limits_ml_min
from labloop.sim.cell import Cell, Fluid
from labloop.sim.faults import FaultInjector, FaultKind
from labloop.sim.pty_device import Link, TerminatorFramer, TimeScale

log = logging.getLogger(__name__)

STX, ETX = b"\x02", b"\x03"
VERSION = "NE1000V3.928"
BAUD_RATES = (300, 1200, 2400, 9600, 19200)
RATE_UNITS_ML_MIN = {"UM": 1e-3, "MM": 1.0, "UH": 1e-3 / 60.0, "MH": 1.0 / 60.0}
VOLUME_UNITS_ML = {"UL": 1e-3, "ML": 1.0}
RUNNING = frozenset("IWX")
_NUMBER = re.compile(r"(\d*)(?:\.(\d*))?")


class _Reject(Exception):
    """A command the pump refuses: ``code`` is what follows the status (``?``, ``?OOR``, ``?NA``)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class PumpSpec:
    """One pump on the line: its address, what its syringe holds, its syringe diameter at power-up."""

    address: int = 0
    holds: Fluid = Fluid.ELECTROLYTE
    diameter_mm: float = 26.59


@dataclass(frozen=True)
class PumpSnapshot:
    """What a test may look at inside a pump (the firmware's own numbers, in mL)."""

    address: int
    status: str
    alarm: str | None
    diameter_mm: float
    rate_ml_min: float
    volume_ml: float
    direction: str
    infused_ml: float
    withdrawn_ml: float
    baud: int


@dataclass
class _Pump:
    address: int
    holds: Fluid
    diameter_mm: float
    rate: float = 1.0
    rate_unit: str = "MM"
    volume: float = 0.0
    volume_unit: str = "ML"
    direction: str = "INF"
    status: str = "S"
    alarm: str | None = "R"
    infused_ml: float = 0.0
    withdrawn_ml: float = 0.0
    baud: int = 19200
    phase_target_ml: float | None = None  # None: continuous
    phase_done_ml: float = 0.0
    phase_status: str = "I"  # I or W: what RUN resumes from a pause
    stall_at_ml: float | None = None
    last_update: float = 0.0

    @property
    def rate_ml_min(self) -> float:
        return self.rate * RATE_UNITS_ML_MIN[self.rate_unit]

    @property
    def volume_ml(self) -> float:
        return self.volume * VOLUME_UNITS_ML[self.volume_unit]


def _number(text: str) -> float:
    """Parse a command number: ``?`` if it is not one, ``?OOR`` if it breaks the 4-digit/3-decimal rule."""
    m = _NUMBER.fullmatch(text)
    if not text or m is None or not (m[1] or m[2]):
        raise _Reject("?")
    whole, decimals = m[1], m[2] or ""
    if len(whole) + len(decimals) > 4 or len(decimals) > 3:
        raise _Reject("?OOR")
    return float(text)


def _fmt(value: float) -> str:
    """A reply number: 4 significant digits, at most 3 decimals, always a decimal point."""
    for decimals in (3, 2, 1, 0):
        text = f"{value:.{decimals}f}"
        if sum(c.isdigit() for c in text) <= 4:
            return text if "." in text else text + "."
    return "9999."


class NE1000Emulator:
    """NE-1000 pumps on one line; a :class:`labloop.sim.pty_device.PtyEmulator`.

    ``respond(command)`` is the firmware: bytes of one command (without CR) in, reply bytes out, or None
    when no pump answers. ``handle``/``tick`` connect it to a pty.
    """

    def __init__(
        self,
        pumps: Iterable[PumpSpec] | None = None,
        *,
        cell: Cell | None = None,
        time_scale: TimeScale | None = None,
    ) -> None:
        self.cell = cell
        self.time_scale = time_scale or TimeScale.real_time()
        self._lock = threading.Lock()
        self._pumps: dict[int, _Pump] = {}
        for spec in pumps if pumps is not None else [PumpSpec()]:
            if not 0 <= spec.address <= 99 or spec.address in self._pumps:
                raise ValueError(f"pump addresses must be distinct and in 0..99, got {spec.address}")
            pump = _Pump(spec.address, spec.holds, spec.diameter_mm)
            pump.volume_unit = "UL" if spec.diameter_mm <= 14.0 else "ML"
            self._pumps[spec.address] = pump

    # -- PtyEmulator ------------------------------------------------------------------------------------
    def new_framer(self) -> TerminatorFramer:
        return TerminatorFramer(b"\r")

    def handle(self, frame: bytes, link: Link) -> None:
        reply = self.respond(frame, link.faults)
        if reply is not None:
            link.reply(reply)

    def tick(self, link: Link) -> None:
        with self._lock:
            self._advance_all()

    # -- inspection and events for tests ------------------------------------------------------------------
    def snapshot(self, address: int) -> PumpSnapshot:
        with self._lock:
            self._advance_all()
            p = self._pumps[address]
            return PumpSnapshot(
                address=p.address,
                status=p.status,
                alarm=p.alarm,
                diameter_mm=p.diameter_mm,
                rate_ml_min=p.rate_ml_min,
                volume_ml=p.volume_ml,
                direction=p.direction,
                infused_ml=p.infused_ml,
                withdrawn_ml=p.withdrawn_ml,
                baud=p.baud,
            )

    def power_cycle(self) -> None:
        """Power loss and return: runs end, settings stay, every pump reports ``A?R`` next."""
        with self._lock:
            self._advance_all()
            for p in self._pumps.values():
                p.status, p.alarm, p.phase_target_ml, p.stall_at_ml = "S", "R", None, None

    # -- firmware -----------------------------------------------------------------------------------------
    def respond(self, command: bytes, faults: FaultInjector | None = None) -> bytes | None:
        text = "".join(ch for ch in command.decode("latin-1") if ch > " " and ch != "\x7f").upper()
        m = re.match(r"\d{1,2}", text)
        address, body = (int(m[0]), text[m.end() :]) if m else (0, text)
        with self._lock:
            self._advance_all()
            pump = self._pumps.get(address)
            if pump is None:
                log.debug("NE-1000 line: no pump at address %d for %r", address, command)
                return None
            if pump.alarm is not None:
                alarm, pump.alarm = pump.alarm, None
                return self._frame(pump.address, "A?" + alarm)
            try:
                data = self._execute(pump, body, faults)
            except _Reject as rejected:
                data = rejected.code
            return self._frame(pump.address, pump.status + data)

    @staticmethod
    def _frame(address: int, payload: str) -> bytes:
        return STX + f"{address:02d}{payload}".encode("latin-1") + ETX

    def _execute(self, p: _Pump, body: str, faults: FaultInjector | None) -> str:
        if body == "":
            return ""
        name, args = (body[:4], body[4:]) if body.startswith("*") else (body[:3], body[3:])
        command = {
            "DIA": self._dia,
            "RAT": self._rat,
            "VOL": self._vol,
            "DIR": self._dir,
            "RUN": lambda p, a: self._run(p, a, faults),
            "STP": self._stp,
            "PUR": self._pur,
            "DIS": self._dis,
            "CLD": self._cld,
            "VER": self._ver,
            "*ADR": self._adr,
            "SAF": self._saf,
        }.get(name)
        if command is None:
            raise _Reject("?")
        return command(p, args)

    @staticmethod
    def _not_running(p: _Pump) -> None:
        if p.status in RUNNING:
            raise _Reject("?NA")

    def _dia(self, p: _Pump, args: str) -> str:
        if not args:
            return _fmt(p.diameter_mm)
        value = _number(args)
        if not DIAMETER_RANGE_MM[0] <= value <= DIAMETER_RANGE_MM[1]:
            raise _Reject("?OOR")
        self._not_running(p)
        p.diameter_mm = value
        p.volume_unit = "UL" if value <= 14.0 else "ML"
        return ""

    def _rat(self, p: _Pump, args: str) -> str:
        if not args:
            return _fmt(p.rate) + p.rate_unit
        m = re.fullmatch(r"([\d.]*)(UM|MM|UH|MH)?", args)
        if m is None or not (m[1] or m[2]):
            raise _Reject("?")
        unit = m[2] or p.rate_unit
        value = _number(m[1]) if m[1] else p.rate
        if unit != p.rate_unit and p.status in RUNNING:
            raise _Reject("?NA")
        low, high = rate_limits_ml_min(p.diameter_mm)
        if not low <= value * RATE_UNITS_ML_MIN[unit] <= high:
            raise _Reject("?OOR")
        p.rate, p.rate_unit = value, unit
        return ""

    def _vol(self, p: _Pump, args: str) -> str:
        if not args:
            return _fmt(p.volume) + p.volume_unit
        if args in VOLUME_UNITS_ML:
            self._not_running(p)
            p.volume_unit = args
            return ""
        value = _number(args)
        self._not_running(p)
        p.volume = value
        return ""

    def _dir(self, p: _Pump, args: str) -> str:
        if not args:
            return p.direction
        if args not in ("INF", "WDR", "REV", "STK"):
            raise _Reject("?")
        self._not_running(p)
        if args == "STK":
            raise _Reject("?NA")
        if args == "REV":
            args = "WDR" if p.direction == "INF" else "INF"
        p.direction = args
        return ""

    def _run(self, p: _Pump, args: str, faults: FaultInjector | None) -> str:
        if args:
            raise _Reject("?")
        if p.status == "P":
            p.status = p.phase_status
            p.last_update = time.monotonic()
            return ""
        self._not_running(p)
        low, high = rate_limits_ml_min(p.diameter_mm)
        if not low <= p.rate_ml_min <= high:
            raise _Reject("?OOR")
        p.phase_target_ml = p.volume_ml if p.volume > 0 else None
        p.phase_done_ml = 0.0
        p.phase_status = "I" if p.direction == "INF" else "W"
        p.status = p.phase_status
        p.stall_at_ml = None
        if faults is not None and faults.decide(FaultKind.STALL):
            span = p.phase_target_ml if p.phase_target_ml is not None else p.rate_ml_min
            p.stall_at_ml = span * faults.fraction()
        p.last_update = time.monotonic()
        return ""

    def _stp(self, p: _Pump, args: str) -> str:
        if args:
            raise _Reject("?")
        if p.status in ("I", "W"):
            p.status = "P"
        elif p.status in ("P", "X"):
            p.status = "S"
            p.phase_target_ml = None
        else:
            raise _Reject("?NA")
        return ""

    def _pur(self, p: _Pump, args: str) -> str:
        if args:
            raise _Reject("?")
        self._not_running(p)
        p.status, p.phase_target_ml, p.stall_at_ml = "X", None, None
        p.last_update = time.monotonic()
        return ""

    def _dis(self, p: _Pump, args: str) -> str:
        if args:
            raise _Reject("?")
        unit = VOLUME_UNITS_ML[p.volume_unit]
        return f"I{_fmt(p.infused_ml / unit)}W{_fmt(p.withdrawn_ml / unit)}{p.volume_unit}"

    def _cld(self, p: _Pump, args: str) -> str:
        if args == "INF":
            p.infused_ml = 0.0
        elif args == "WDR":
            p.withdrawn_ml = 0.0
        else:
            raise _Reject("?")
        return ""

    def _ver(self, p: _Pump, args: str) -> str:
        if args:
            raise _Reject("?")
        return VERSION

    def _adr(self, p: _Pump, args: str) -> str:
        if not args:
            return f"{p.address:02d}"
        m = re.fullmatch(r"(\d+)(?:B(\d+))?", args)
        if m is None:
            raise _Reject("?")
        new, baud = int(m[1]), int(m[2]) if m[2] else p.baud
        if new > 99 or baud not in BAUD_RATES:
            raise _Reject("?OOR")
        if new != p.address and new in self._pumps:
            raise _Reject("?NA")
        del self._pumps[p.address]
        p.address, p.baud = new, baud
        self._pumps[new] = p
        return ""

    def _saf(self, p: _Pump, args: str) -> str:
        if not args:
            return "0"
        if _number(args) != 0:
            raise _Reject("?NA")
        return ""

    # -- time ---------------------------------------------------------------------------------------------
    def _advance_all(self) -> None:
        now = time.monotonic()
        for p in self._pumps.values():
            if p.status in RUNNING:
                self._advance(p, now)

    def _advance(self, p: _Pump, now: float) -> None:
        rate = rate_limits_ml_min(p.diameter_mm)[1] if p.status == "X" else p.rate_ml_min
        wall = now - p.last_update
        p.last_update = now
        if not self.time_scale.is_zero_latency:
            amount = rate * self.time_scale.device_seconds(wall) / 60.0
        elif p.phase_target_ml is not None:
            amount = p.phase_target_ml - p.phase_done_ml
        else:  # a continuous run has no end to jump to
            amount = rate * wall / 60.0
        stalled = False
        if p.stall_at_ml is not None and p.phase_done_ml + amount >= p.stall_at_ml:
            amount, stalled = max(0.0, p.stall_at_ml - p.phase_done_ml), True
        if p.phase_target_ml is not None:
            amount = min(amount, p.phase_target_ml - p.phase_done_ml)
        p.phase_done_ml += amount
        infusing = p.status == "I" or (p.status == "X" and p.direction == "INF")
        if infusing:
            p.infused_ml += amount
            if self.cell is not None and amount > 0:
                self.cell.add(f"ne1000:{p.address:02d}", amount, p.holds)
        else:
            p.withdrawn_ml += amount
        if stalled:
            log.info("NE-1000 %02d: motor stalled after %.4g mL", p.address, p.phase_done_ml)
            p.status, p.alarm, p.phase_target_ml, p.stall_at_ml = "S", "S", None, None
        elif p.phase_target_ml is not None and p.phase_done_ml >= p.phase_target_ml:
            p.status, p.phase_target_ml = "S", None
