"""Firmware emulator of a PalmSens EmStat Pico running MethodSCRIPT, for the pty framework.

It exists so that the EmStat driver, the protocols and ``labloop run --dry-run`` exercise exactly the bytes
a real EmStat takes and gives: on a :class:`labloop.sim.pty_device.PtyDevice` any serial client can talk
to it. A CV streams one data package per point at the pace of the scan (scaled by the
:class:`TimeScale`), with currents computed by :func:`labloop.sim.cv_physics.simulate_cell` for whatever the
shared cell holds when the script starts (:meth:`labloop.sim.emulation.EmulatorContext.contents`: analyte,
ferrocene standard, dissolved O2), with the cell's remaining ohmic drop and the reference electrode's drift
at that moment. An impedance sweep streams the cell's Randles impedance
(:func:`labloop.sim.cv_physics.cell_impedance`).

What it accepts, as the device does (docs/protocols.md): lines ending ``\\n``; ``t`` (two lines, the
second ending ``*``), ``Z`` (``Z`` while a script runs, else ``Z!0006``), ``e`` + script + blank line.
Script numbers are integers with an SI prefix. Replies: ``e``, ``M....``, ``P`` packages, ``*``, blank
line at the script end; wire format in :mod:`labloop.instruments.methodscript`.

Choices where the sources are silent ([infer], documented because the emulator must be precise):

- Identification: ``t`` -> ``tespico1207#Oct 10 2023 10:00:00`` / ``R*``; ``i`` -> ``iESPSIM0001``;
  ``v`` -> ``v0108``. A blank line while idle is ignored (clients send one to flush a partial command).
  Any other command answers its first letter + ``!0003`` (not recognised); a command other than ``Z``
  while a script runs answers its first letter + ``!0006`` (not allowed now).
- The script subset understood: ``var``, ``store_var NAME VALUE TYPE``, ``set_pgstat_chan 0``,
  ``set_pgstat_mode 2|3`` (low speed / high speed current ranges), ``set_max_bandwidth``,
  ``set_range ba|da|ab X``, ``set_range_minmax da A B``, ``set_autoranging ba LOW HIGH``, ``set_e``,
  ``cell_on``, ``cell_off``, ``meas_loop_cv E I E_begin E_vtx1 E_vtx2 E_step scan_rate [nscans(n)]`` and
  ``meas_loop_eis F R J ac f_start f_end n dc`` with ``pck_start``/``pck_add``/``pck_end`` and ``endloop``,
  ``set_ir_comp R``, ``on_finished:``; ``#`` comments; leading whitespace. Arguments are literals or
  ``store_var`` variables.
- ``set_ir_comp R`` (0..1 Mohm) compensates R ohm of the cell's Ru by positive feedback in the CV loops
  that follow (the electrode sees ``E - i (Ru - R)``; beyond Ru it is clamped, where a real potentiostat
  would ring). With ``ir_compensation=False`` the statement is unknown (``e!4001``), as on firmware
  without it.
- An impedance loop starts with ``M000D`` [infer]; point k (frequencies log-spaced from ``f_start`` to
  ``f_end``, either way) is sent after :func:`labloop.instruments.impedance.eis_point_seconds` of its
  frequency as ``dc`` (Hz), ``cc`` (Z', ohm) and ``cd`` (Z'', ohm) in ``pck_add`` order, the impedances
  with ``,1X`` status (overload when the AC current ``ac * sqrt(2) / |Z|`` exceeds the largest allowed
  range), e.g. ``PdcDF5E100m;cc82DC6C0m,10;cd7F0BDC0u,10`` (100 kHz, 3000 ohm, -1 ohm); noise is the
  electrode's ``noise_fraction`` of |Z| on each part.
- A script is checked when its blank line arrives; the first problem answers
  ``e!XXXX: Line L, Col C`` (line 1 is the first line after ``e``) and nothing runs. Codes: ``4001``
  unknown statement, ``4002`` wrong number or form of arguments (``0.5``: no decimal point), ``4003``
  undeclared variable, ``4004`` value out of range (potentials beyond the Pico's -1.7..+2.0 V, a
  non-positive step or rate, a begin potential outside the vertices, a current beyond 5 mA),
  ``4005`` misplaced statement (``endloop`` without a loop, an unclosed loop, ``pck_add`` outside
  ``pck_start``/``pck_end``, a nested loop). Impedance: amplitude beyond 250 mV, a frequency outside the
  Pico's 0.016 Hz..200 kHz or a point count that is not an integer 1..1000 are ``4004``.
- A measurement loop starts with ``M0005`` (the CV technique number); with ``nscans(n > 1)`` every scan
  ends with ``-``. Several loops in one script run one after the other (e.g. one CV per scan rate).
  Package ``k`` is sent at the end of its potential step. The applied potential goes out as ``da``, the
  current as ``ba`` with ``,1X`` status and ``,2XX`` current range, e.g.
  ``Pda7F85F3Fu;ba4BA99F0p,10,288``.
- Current ranges: the range set by ``set_range ba`` (default 100 uA; the smallest range that holds it),
  and with ``set_autoranging ba LOW HIGH`` every range from the one holding LOW to the one holding HIGH.
  Each point uses the smallest allowed range that holds it; a current beyond the largest allowed range
  is sent clipped to it with the overload bit (status 2). A cell that is off gives zero current.
- Several samples in the cell: their couples' currents are added
  (:func:`labloop.sim.emulation.cell_current`).
- ``Z`` while a script runs: ``Z`` is answered at once, the rest of the scan is dropped, ``*`` closes
  the measurement loop, ``on_finished:`` runs (``cell_off``) and the blank line follows.
- Faults: the reply-path faults (no reply, garble, drop, slow, disconnect) are decided once per reply
  to a device command, and once per script run, where they strike one line of the output chosen at
  random. An overload (``FaultKind.OVERLOAD``) is decided once per measurement loop: a burst of 5% of the
  points then exceeds the largest allowed range. A hung-up port ends the running script.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from labloop.core.errors import InvalidParameter
from labloop.core.seeds import stable_rng
from labloop.instruments.impedance import PICO_FREQUENCY_RANGE_HZ, eis_point_seconds
from labloop.instruments.methodscript import PICO_CURRENT_RANGES, encode_variable, parse_script_number
from labloop.instruments.voltammogram import CVParams
from labloop.sim.cv_physics import CellParams, cell_impedance
from labloop.sim.emulation import cell_current
from labloop.sim.faults import FaultInjector, FaultKind
from labloop.sim.pty_device import Link, TerminatorFramer, TimeScale

log = logging.getLogger(__name__)

FIRMWARE = b"tespico1207#Oct 10 2023 10:00:00\nR*\n"
SERIAL_NUMBER = b"iESPSIM0001\n"
MSCRIPT_VERSION = b"v0108\n"
POTENTIAL_LIMITS_V = (-1.7, 2.0)
DEFAULT_RANGE_A = 100e-6
CV_TECHNIQUE = 0x0005
EIS_TECHNIQUE = 0x000D
#: largest resistance set_ir_comp takes (ohm) [infer]
MAX_IR_COMP_OHM = 1e6
ERR_NOT_RECOGNISED, ERR_NOT_NOW = 0x0003, 0x0006
ERR_STATEMENT, ERR_ARGUMENT, ERR_VARIABLE, ERR_VALUE, ERR_PLACEMENT = 0x4001, 0x4002, 0x4003, 0x4004, 0x4005
OVERLOAD_BURST = 0.05  # share of a scan's points an overload fault hits
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _ScriptError(Exception):
    def __init__(self, code: int, line: int, col: int, detail: str) -> None:
        super().__init__(detail)
        self.code, self.line, self.col = code, line, col

    @property
    def reply(self) -> bytes:
        return f"e!{self.code:04X}: Line {self.line}, Col {self.col}\n".encode("ascii")


@dataclass(frozen=True)
class _CV:
    """One measurement loop: the scan, and the package's variable types in ``pck_add`` order."""

    params: CVParams
    package: tuple[str, ...]


@dataclass(frozen=True)
class _EIS:
    """One impedance loop: ``points`` log-spaced frequencies from ``f_start`` to ``f_end`` (either way), the
    AC amplitude and DC potential, and the package's variable types in ``pck_add`` order."""

    f_start_hz: float
    f_end_hz: float
    points: int
    amplitude_v: float
    e_dc_v: float
    package: tuple[str, ...]

    def frequencies(self) -> np.ndarray:
        return np.geomspace(self.f_start_hz, self.f_end_hz, self.points)


Action = tuple[str, object]  # ("mode", 2), ("range", 1e-4), ("autorange", (lo, hi)), ("cell", True),
#                              ("ir_comp", 850.0), ("cv", _CV), ("eis", _EIS)


@dataclass
class _Plan:
    body: list[Action] = field(default_factory=list)
    on_finished: list[Action] = field(default_factory=list)


class _Compiler:
    """Checks a script and turns it into a plan; the first problem raises :class:`_ScriptError`."""

    def __init__(self, lines: Sequence[str], *, ir_compensation: bool = True) -> None:
        self.lines = lines
        self.ir_compensation = ir_compensation
        self.variables: dict[str, float | None] = {}
        self.plan = _Plan()
        self.target = self.plan.body
        self.loop: dict[str, object] | None = None  # the open meas_loop_cv, while its body is read
        self.in_package = False
        self.number = 0
        self.raw = ""

    def compile(self) -> _Plan:
        for number, raw in enumerate(self.lines, start=1):
            self.number, self.raw = number, raw
            words = raw.split("#", 1)[0].split()
            if words:
                self._statement(words[0], words[1:])
        if self.loop is not None:
            raise self._error(ERR_PLACEMENT, "measurement loop without endloop", "")
        return self.plan

    def _error(self, code: int, detail: str, token: str) -> _ScriptError:
        m = re.search(rf"(?<!\S){re.escape(token)}", self.raw) if token else None
        return _ScriptError(code, self.number, m.start() + 1 if m else 1, detail)

    def _args(self, args: list[str], n: int, command: str) -> None:
        if len(args) != n:
            raise self._error(ERR_ARGUMENT, f"{command} takes {n} arguments", command)

    def _value(self, token: str) -> float:
        value = parse_script_number(token)
        if value is not None:
            return value
        if _NAME.fullmatch(token) is None:
            raise self._error(ERR_ARGUMENT, f"{token!r} is not a number", token)
        if token not in self.variables:
            raise self._error(ERR_VARIABLE, f"{token} is not declared", token)
        stored = self.variables[token]
        if stored is None:
            raise self._error(ERR_VARIABLE, f"{token} has no value", token)
        return stored

    def _potential(self, token: str) -> float:
        value = self._value(token)
        if not POTENTIAL_LIMITS_V[0] <= value <= POTENTIAL_LIMITS_V[1]:
            raise self._error(ERR_VALUE, f"{value:g} V is outside {POTENTIAL_LIMITS_V}", token)
        return value

    def _current(self, token: str) -> float:
        value = self._value(token)
        if not 0 < value <= max(PICO_CURRENT_RANGES.values()):
            raise self._error(ERR_VALUE, f"no current range holds {value:g} A", token)
        return value

    def _declared(self, token: str) -> str:
        if token not in self.variables:
            raise self._error(ERR_VARIABLE, f"{token} is not declared", token)
        return token

    def _statement(self, command: str, args: list[str]) -> None:
        if self.loop is not None and command not in ("pck_start", "pck_add", "pck_end", "endloop"):
            raise self._error(ERR_PLACEMENT, f"{command} inside a measurement loop", command)
        if command == "on_finished:":
            handler = self._on_finished
        else:
            handler = getattr(self, f"_do_{command}", None) if command.isidentifier() else None
        if command == "set_ir_comp" and not self.ir_compensation:
            handler = None
        if handler is None:
            raise self._error(ERR_STATEMENT, f"unknown statement {command!r}", command)
        handler(command, args)

    def _do_var(self, command: str, args: list[str]) -> None:
        self._args(args, 1, command)
        if _NAME.fullmatch(args[0]) is None:
            raise self._error(ERR_ARGUMENT, f"{args[0]!r} is not a variable name", args[0])
        self.variables.setdefault(args[0], None)

    def _do_store_var(self, command: str, args: list[str]) -> None:
        self._args(args, 3, command)
        name = self._declared(args[0])
        if re.fullmatch(r"[a-z]{2}", args[2]) is None:
            raise self._error(ERR_ARGUMENT, f"{args[2]!r} is not a variable type", args[2])
        self.variables[name] = self._value(args[1])

    def _do_set_pgstat_chan(self, command: str, args: list[str]) -> None:
        self._args(args, 1, command)
        if self._value(args[0]) != 0:
            raise self._error(ERR_VALUE, "the EmStat Pico has channel 0 only", args[0])

    def _do_set_pgstat_mode(self, command: str, args: list[str]) -> None:
        self._args(args, 1, command)
        mode = self._value(args[0])
        if mode not in (2, 3):
            raise self._error(ERR_VALUE, "mode must be 2 (low speed) or 3 (high speed)", args[0])
        self.target.append(("mode", int(mode)))

    def _do_set_max_bandwidth(self, command: str, args: list[str]) -> None:
        self._args(args, 1, command)
        if not self._value(args[0]) > 0:
            raise self._error(ERR_VALUE, "bandwidth must be > 0", args[0])

    def _do_set_range(self, command: str, args: list[str]) -> None:
        self._args(args, 2, command)
        if args[0] == "ba":
            self.target.append(("range", self._current(args[1])))
        elif args[0] in ("da", "ab"):
            self._potential(args[1])
        else:
            raise self._error(ERR_ARGUMENT, f"no range for variable type {args[0]!r}", args[0])

    def _do_set_range_minmax(self, command: str, args: list[str]) -> None:
        self._args(args, 3, command)
        if args[0] != "da":
            raise self._error(ERR_ARGUMENT, f"no range for variable type {args[0]!r}", args[0])
        for token in args[1:]:
            self._potential(token)

    def _do_set_autoranging(self, command: str, args: list[str]) -> None:
        self._args(args, 3, command)
        if args[0] != "ba":
            raise self._error(ERR_ARGUMENT, f"no autoranging for variable type {args[0]!r}", args[0])
        low, high = self._current(args[1]), self._current(args[2])
        if low > high:
            raise self._error(ERR_VALUE, "the lower autorange limit is above the upper one", args[1])
        self.target.append(("autorange", (low, high)))

    def _do_set_ir_comp(self, command: str, args: list[str]) -> None:
        self._args(args, 1, command)
        value = self._value(args[0])
        if not 0 <= value <= MAX_IR_COMP_OHM:
            raise self._error(ERR_VALUE, f"iR compensation must be 0..{MAX_IR_COMP_OHM:g} ohm", args[0])
        self.target.append(("ir_comp", value))

    def _do_meas_loop_eis(self, command: str, args: list[str]) -> None:
        self._args(args, 8, command)
        f_var, r_var, j_var = (self._declared(t) for t in args[:3])
        amplitude, f_start, f_end, points = (self._value(t) for t in args[3:7])
        e_dc = self._potential(args[7])
        if not 0 < amplitude <= 0.25:
            raise self._error(ERR_VALUE, "the AC amplitude must be in (0, 250m] V", args[3])
        for token, f in ((args[4], f_start), (args[5], f_end)):
            if not PICO_FREQUENCY_RANGE_HZ[0] <= f <= PICO_FREQUENCY_RANGE_HZ[1]:
                raise self._error(ERR_VALUE, f"{f:g} Hz is outside {PICO_FREQUENCY_RANGE_HZ}", token)
        if points != round(points) or not 1 <= points <= 1000:
            raise self._error(ERR_VALUE, "the number of frequencies must be an integer 1..1000", args[6])
        self.loop = {"kind": "eis", "eis": (f_start, f_end, int(points), amplitude, e_dc),
                     "types": {f_var: "dc", r_var: "cc", j_var: "cd"}, "package": []}

    def _do_set_e(self, command: str, args: list[str]) -> None:
        self._args(args, 1, command)
        self._potential(args[0])

    def _do_cell_on(self, command: str, args: list[str]) -> None:
        self._args(args, 0, command)
        self.target.append(("cell", True))

    def _do_cell_off(self, command: str, args: list[str]) -> None:
        self._args(args, 0, command)
        self.target.append(("cell", False))

    def _on_finished(self, command: str, args: list[str]) -> None:
        self._args(args, 0, command)
        if self.target is self.plan.on_finished:
            raise self._error(ERR_PLACEMENT, "a second on_finished:", command)
        self.target = self.plan.on_finished

    def _do_meas_loop_cv(self, command: str, args: list[str]) -> None:
        scans = 1
        if args and (m := re.fullmatch(r"nscans\((\d+)\)", args[-1])):
            scans = int(m[1])
            args = args[:-1]
            if scans < 1:
                raise self._error(ERR_VALUE, "nscans must be >= 1", "nscans")
        self._args(args, 7, command)
        e_var, i_var = self._declared(args[0]), self._declared(args[1])
        begin, vertex1, vertex2 = (self._potential(t) for t in args[2:5])
        step, rate = self._value(args[5]), self._value(args[6])
        try:
            params = CVParams(e_begin_v=begin, e_vertex1_v=vertex1, e_vertex2_v=vertex2, e_step_v=step,
                              scan_rate_v_s=rate, n_scans=scans)
        except InvalidParameter as exc:
            raise self._error(ERR_VALUE, str(exc), args[2]) from None
        self.loop = {"kind": "cv", "params": params, "types": {e_var: "da", i_var: "ba"}, "package": []}

    def _do_pck_start(self, command: str, args: list[str]) -> None:
        self._args(args, 0, command)
        if self.loop is None or self.in_package:
            raise self._error(ERR_PLACEMENT, "pck_start outside a measurement loop", command)
        self.in_package = True

    def _do_pck_add(self, command: str, args: list[str]) -> None:
        self._args(args, 1, command)
        if self.loop is None or not self.in_package:
            raise self._error(ERR_PLACEMENT, "pck_add outside pck_start/pck_end", command)
        types: dict[str, str] = self.loop["types"]  # type: ignore[assignment]
        name = self._declared(args[0])
        if name not in types:
            raise self._error(ERR_VARIABLE, f"{name} is not measured by this loop", args[0])
        self.loop["package"].append(types[name])  # type: ignore[attr-defined]

    def _do_pck_end(self, command: str, args: list[str]) -> None:
        self._args(args, 0, command)
        if self.loop is None or not self.in_package:
            raise self._error(ERR_PLACEMENT, "pck_end without pck_start", command)
        self.in_package = False

    def _do_endloop(self, command: str, args: list[str]) -> None:
        self._args(args, 0, command)
        if self.loop is None or self.in_package:
            raise self._error(ERR_PLACEMENT, "endloop without an open measurement loop", command)
        package = tuple(self.loop["package"])  # type: ignore[arg-type]
        if self.loop["kind"] == "eis":
            self.target.append(("eis", _EIS(*self.loop["eis"], package=package)))  # type: ignore[misc]
        else:
            self.target.append(("cv", _CV(self.loop["params"], package)))  # type: ignore[arg-type]
        self.loop = None


Event = tuple[float, str, object]  # (device time from the script start, "line" | "cell" | "loop" | "compute",
#                                     payload; a compute event's is (lines it will produce, function making them))


@dataclass
class _Run:
    """A script in progress: its timed output and which output line the reply-path faults strike."""

    start: float
    events: deque[Event]
    fault_line: int | None
    on_finished: list[Action]
    sent_lines: int = 0
    in_loop: bool = False


class EmStatEmulator:
    """An EmStat Pico running MethodSCRIPT; a :class:`labloop.sim.pty_device.PtyEmulator`.

    ``contents()`` says what the cell holds when a script starts (one :class:`CellParams` per couple; the
    first one's electrode holds Ru and Cdl for the cell); ``reference_drift()`` how far the reference
    electrode has drifted (V), which shifts every couple. ``ir_compensation`` False makes ``set_ir_comp``
    an unknown statement, as on firmware without it. ``cell_on`` and ``scripts`` (every accepted script,
    as lines) are there for tests.
    """

    def __init__(self, contents: Callable[[], Sequence[CellParams]], *, time_scale: TimeScale | None = None,
                 seed: int = 0, reference_drift: Callable[[], float] | None = None,
                 ir_compensation: bool = True) -> None:
        self.contents = contents
        self.reference_drift = reference_drift or (lambda: 0.0)
        self.ir_compensation = ir_compensation
        self.time_scale = time_scale or TimeScale.real_time()
        self.cell_on = False
        self.scripts: list[list[str]] = []
        self.seed = seed
        self._runs: Counter[str] = Counter()  # scans of each (cell contents, scan) in this process
        self._receiving: list[str] | None = None
        self._run: _Run | None = None

    def _noise_rng(self, contents: Sequence[CellParams], params: object) -> np.random.Generator:
        """The noise of one scan, seeded by the emulator's seed, what is measured and how often this process
        measured it before: the same scan of the same cell gets the same noise after a restart, so a
        resumed dry run measures what the uninterrupted one did."""
        key = repr((tuple(contents), params))
        draw = self._runs[key]
        self._runs[key] += 1
        return stable_rng(self.seed, draw, key)

    # -- PtyEmulator ----------------------------------------------------------------------------------------
    def new_framer(self) -> TerminatorFramer:
        return TerminatorFramer(b"\n")

    def handle(self, frame: bytes, link: Link) -> None:
        line = frame.decode("latin-1").rstrip("\r")
        if self._receiving is not None:
            if line.strip():
                self._receiving.append(line)
            else:
                lines, self._receiving = self._receiving, None
                self._start(lines, link)
        elif self._run is not None:
            if line == "Z":
                self._abort(link)
            elif line:
                link.reply(_error_reply(line, ERR_NOT_NOW))
        else:
            self._command(line, link)
        self._pump(link)

    def tick(self, link: Link) -> None:
        self._pump(link)

    # -- device commands ------------------------------------------------------------------------------------
    def _command(self, line: str, link: Link) -> None:
        replies = {"t": FIRMWARE, "i": SERIAL_NUMBER, "v": MSCRIPT_VERSION, "Z": _error_reply("Z", ERR_NOT_NOW)}
        if line == "e":
            self._receiving = []
        elif line in replies:
            link.reply(replies[line])
        elif line:
            link.reply(_error_reply(line, ERR_NOT_RECOGNISED))

    # -- scripts --------------------------------------------------------------------------------------------
    def _start(self, lines: list[str], link: Link) -> None:
        try:
            plan = _Compiler(lines, ir_compensation=self.ir_compensation).compile()
        except _ScriptError as exc:
            log.info("EmStat: script refused at line %d: %s", exc.line, exc)
            link.reply(exc.reply)
            return
        self.scripts.append(lines)
        events: deque[Event] = deque([(0.0, "line", b"e\n")])
        end = self._schedule(plan.body, events, link.faults)
        events.extend((end, "cell", value) for kind, value in plan.on_finished if kind == "cell")
        events.append((end, "line", b"\n"))
        faults = link.faults
        n_lines = sum(1 if kind == "line" else payload[0] if kind == "compute" else 0  # type: ignore[index]
                      for _, kind, payload in events)
        fault_line = min(n_lines - 1, int(faults.fraction() * n_lines)) if faults is not None else None
        self._run = _Run(time.monotonic(), events, fault_line, plan.on_finished)

    def _schedule(self, actions: list[Action], events: deque[Event], faults: FaultInjector | None) -> float:
        """Queue the output of ``actions``; return the device time at which they end."""
        settings: dict[str, object] = {"mode": 2, "range": DEFAULT_RANGE_A, "autorange": None, "cell": self.cell_on,
                                       "ir_comp": 0.0}
        t = 0.0
        for kind, value in actions:
            if kind == "cv":
                assert isinstance(value, _CV)
                t = self._schedule_cv(value, settings, events, t, faults)
                continue
            if kind == "eis":
                assert isinstance(value, _EIS)
                t = self._schedule_eis(value, settings, events, t)
                continue
            settings[kind] = value
            if kind == "cell":
                events.append((t, "cell", value))
        return t

    def _schedule_cv(self, cv: _CV, settings: dict[str, object], events: deque[Event], t0: float,
                     faults: FaultInjector | None) -> float:
        """Queue one CV loop: what the cell holds, the drift, the noise and an overload burst are fixed now
        (when the script starts); the currents are computed when the loop is due (a ``compute`` event), so
        ``e`` goes out at once and a script of several CVs answers as fast as a device would."""
        params = cv.params
        contents: Sequence[CellParams] = self.contents() if settings["cell"] else ()
        drift = self.reference_drift() if contents else 0.0
        compensated = float(settings["ir_comp"])  # type: ignore[arg-type]
        rng = self._noise_rng((*contents, drift), (params, compensated)) if contents else None
        ranges = _allowed_ranges(settings)
        burst = None
        if faults is not None and faults.decide(FaultKind.OVERLOAD):
            first = int(faults.fraction() * params.n_points)
            burst = slice(first, first + max(1, int(OVERLOAD_BURST * params.n_points)))
        one_scan = params.path_length_v / params.n_scans / params.e_step_v
        scan_ends = {math.floor(k * one_scan + 1e-9) for k in range(1, params.n_scans + 1)} \
            if params.n_scans > 1 else set()
        scan_ends = {k for k in scan_ends if k < params.n_points}

        def generate() -> list[Event]:
            _, potential = params.waveform()
            current = cell_current(contents, params, rng, compensated_ohm=compensated,  # type: ignore[arg-type]
                                   reference_drift_v=drift) if contents else np.zeros(params.n_points)
            if burst is not None:
                current[burst] = 1.5 * ranges[-1][1] * np.where(current[burst] < 0, -1.0, 1.0)
            out: list[Event] = [(t0, "line", f"M{CV_TECHNIQUE:04X}\n".encode()), (t0, "loop", True)]
            for k, (e, i) in enumerate(zip(potential.tolist(), current.tolist(), strict=True)):
                t = t0 + (k + 1) * params.time_step_s
                out.append((t, "line", _package(cv.package, e, i, ranges)))
                if k in scan_ends:
                    out.append((t, "line", b"-\n"))
            end = t0 + params.n_points * params.time_step_s
            return [*out, (end, "line", b"*\n"), (end, "loop", False)]

        events.append((t0, "compute", (2 + params.n_points + len(scan_ends), generate)))
        return t0 + params.n_points * params.time_step_s

    def _schedule_eis(self, eis: _EIS, settings: dict[str, object], events: deque[Event], t0: float) -> float:
        """Queue one impedance sweep: the cell's Randles impedance with relative noise of the electrode's
        ``noise_fraction`` of |Z| on each part; a point whose AC current exceeds the largest allowed range
        carries the overload bit."""
        frequencies = eis.frequencies()
        contents = self.contents()
        if settings["cell"]:
            z = cell_impedance(contents, frequencies, eis.e_dc_v, reference_drift_v=self.reference_drift())
            rng = self._noise_rng(contents, eis)
            noise = contents[0].noise_fraction * np.abs(z)
            z = z + noise * (rng.normal(size=z.shape) + 1j * rng.normal(size=z.shape))
        else:
            z = np.full(frequencies.shape, complex(math.nan, math.nan))
        largest = _allowed_ranges(settings)[-1][1]
        events.append((t0, "line", f"M{EIS_TECHNIQUE:04X}\n".encode()))
        events.append((t0, "loop", True))
        t = t0
        for f, zk in zip(frequencies.tolist(), z.tolist(), strict=True):
            t += eis_point_seconds(f)
            status = 2 if abs(zk) > 0 and eis.amplitude_v * math.sqrt(2) / abs(zk) > largest else 0
            texts = {"dc": encode_variable("dc", f),
                     "cc": encode_variable("cc", zk.real, f",1{status:X}"),
                     "cd": encode_variable("cd", zk.imag, f",1{status:X}")}
            events.append((t, "line", ("P" + ";".join(texts[v] for v in eis.package) + "\n").encode("ascii")))
        events.append((t, "line", b"*\n"))
        events.append((t, "loop", False))
        return t

    def _abort(self, link: Link) -> None:
        """``Z`` during a script: acknowledge, close the loop, run ``on_finished:``, end; all due now."""
        run = self._run
        assert run is not None
        log.info("EmStat: script aborted")
        link.reply(b"Z\n")
        run.events.clear()
        now = -math.inf
        if run.in_loop:
            run.events.append((now, "line", b"*\n"))
        run.events.extend((now, "cell", value) for kind, value in run.on_finished if kind == "cell")
        run.events.append((now, "line", b"\n"))
        run.fault_line = None

    def _pump(self, link: Link) -> None:
        """Send the output of the running script that is due; a hung-up port ends the script."""
        run = self._run
        if run is None:
            return
        wall = time.monotonic() - run.start
        elapsed = math.inf if self.time_scale.is_zero_latency else self.time_scale.device_seconds(wall)
        while run.events and run.events[0][0] <= elapsed and link.connected:
            _, kind, payload = run.events.popleft()
            if kind == "compute":  # a CV loop is due: its lines replace this event, in time order
                run.events.extendleft(reversed(payload[1]()))  # type: ignore[index]
            elif kind == "cell":
                self.cell_on = bool(payload)
            elif kind == "loop":
                run.in_loop = bool(payload)
            else:
                assert isinstance(payload, bytes)
                (link.reply if run.sent_lines == run.fault_line else link.send)(payload)
                run.sent_lines += 1
        if not link.connected:
            log.info("EmStat: port gone; the running script ends")
            self.cell_on = False
            self._run = None
        elif not run.events:
            self._run = None


def _error_reply(command: str, code: int) -> bytes:
    """An error answer to a device command: its first letter, ``!`` and the code."""
    return command[:1].encode("latin-1") + f"!{code:04X}\n".encode("ascii")


def _allowed_ranges(settings: dict[str, object]) -> list[tuple[int, float]]:
    """(index, full scale) of the current ranges a loop may use, smallest first."""
    high_speed = settings["mode"] == 3
    table = sorted((fs, index) for index, fs in PICO_CURRENT_RANGES.items() if (index >= 0x80) == high_speed)

    def holding(amps: float) -> int:
        return next((n for n, (fs, _) in enumerate(table) if fs >= amps * (1 - 1e-9)), len(table) - 1)

    autorange = settings["autorange"]
    if autorange is None:
        chosen = [table[holding(float(settings["range"]))]]  # type: ignore[arg-type]
    else:
        low, high = autorange  # type: ignore[misc]
        chosen = table[holding(low) : holding(high) + 1]
    return [(index, fs) for fs, index in chosen]


def _package(types: tuple[str, ...], potential: float, current: float, ranges: list[tuple[int, float]]) -> bytes:
    """One ``P`` line: the variables in ``pck_add`` order; the current in the smallest range holding it."""
    index, full_scale = next(((i, fs) for i, fs in ranges if abs(current) <= fs), ranges[-1])
    status = 0
    if abs(current) > full_scale:
        status, current = 2, math.copysign(full_scale, current)
    texts = {"da": encode_variable("da", potential),
             "ba": encode_variable("ba", current, f",1{status:X},2{index:02X}")}
    return ("P" + ";".join(texts[var_type] for var_type in types) + "\n").encode("ascii")
