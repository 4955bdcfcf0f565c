"""The MethodSCRIPT wire format (PalmSens EmStat Pico / EmStat4): numbers, scripts, replies, data packages.

Why a module of its own: the driver (:mod:`labloop.instruments.emstat`) writes scripts and reads replies,
and the firmware emulator (:mod:`labloop.sim.emstat_emulator`) reads scripts and writes replies. Both use
the functions here, so the two sides cannot drift apart on what ``-500m`` or ``ba4BA99F0p`` means.
Everything here is pure: no I/O, no state.

Facts (docs/protocols.md, "PalmSens EmStat (MethodSCRIPT)"):

- Script numbers are an integer with an optional SI prefix: ``500m``, ``-500m``, ``10m``, ``0``; MethodSCRIPT
  takes no decimal point.
- A data package is ``P`` + variables separated by ``;``. A variable is a 2-character type (``da`` applied
  potential, ``ba`` current, ...), 7 hex digits holding ``value + 2**27``, and one SI prefix character
  (``a f p n u m`` space ``k M G T P E``, or ``i`` for an integer); ``     nan`` replaces digits and
  prefix for NaN. Metadata follow after commas: ``1X`` status bits, ``2XX`` current range index, ``4X...``
  noise.
- Reply lines: ``e`` (script accepted), ``M`` + 4 hex digits (measurement loop starts), ``P...`` packages,
  ``*`` (measurement loop ends), ``L``/``+`` (plain loop start/end), ``C`` + 4 hex digits/``-`` (scan
  start/end with ``nscans``), ``Z`` (abort acknowledged), an empty line at the end of a script, and errors
  ``!XXXX`` (4 hex digits, optionally preceded by the echoed command letter and followed by ``:detail``).

Impedance (PalmSens' MethodSCRIPT examples, ``palmsens/mscript.py``): variable types ``dc`` applied
frequency (Hz), ``cc`` Z real and ``cd`` Z imaginary (ohm).

Choices where the sources are silent ([infer]): script integers are kept below 2**27 in magnitude, the
range data packages can carry; a value no prefix represents exactly is rounded at the finest prefix
that keeps it in that range (1/3 V -> ``333333u``); iR compensation is the statement ``set_ir_comp R``
(R in ohm, a script number; 0 switches it off), valid for the measurement loops that follow, and a
firmware without it answers ``!4001`` (unknown statement) at that line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import IntFlag, StrEnum

from labloop.core.errors import ConfigError
from labloop.instruments.impedance import EISParams
from labloop.instruments.voltammogram import CVParams

OFFSET = 2**27
SI_PREFIXES: dict[str, float] = {
    "a": 1e-18, "f": 1e-15, "p": 1e-12, "n": 1e-9, "u": 1e-6, "m": 1e-3, " ": 1.0,
    "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18, "i": 1.0,
}
NAN_TEXT = "     nan"
#: prefixes a script number may carry, coarsest first (a script never needs atto or exa volts)
_SCRIPT_PREFIXES = (("", 1.0), ("m", 1e-3), ("u", 1e-6), ("n", 1e-9), ("p", 1e-12))
#: prefixes a package value may carry, finest first (the finest that fits keeps the most digits)
_PACKAGE_PREFIXES = ("a", "f", "p", "n", "u", "m", " ", "k", "M", "G", "T", "P", "E")

_SCRIPT_NUMBER = re.compile(r"(-?\d+)([afpnumkMGTPEi]?)")
_VARIABLE = re.compile(r"([a-z]{2})(?:([0-9A-Fa-f]{7})([afpnumkMGTPEi ])|     nan)((?:,[0-9A-Fa-f]+)*)")
_ERROR = re.compile(r"([A-Za-z]?)!([0-9A-F]{4})(?::\s*(.*))?")


class Status(IntFlag):
    """The ``1X`` metadata of a package variable."""

    OK = 0
    TIMING_ERROR = 1
    OVERLOAD = 2
    UNDERLOAD = 4
    OVERLOAD_WARNING = 8


#: current range index -> full scale (A), per device family; 0x80 marks the Pico's high-speed ranges
PICO_CURRENT_RANGES: dict[int, float] = {
    0: 100e-9, 1: 2e-6, 2: 4e-6, 3: 8e-6, 4: 16e-6, 5: 32e-6, 6: 63e-6, 7: 125e-6, 8: 250e-6, 9: 500e-6,
    10: 1e-3, 11: 5e-3,
    0x80: 100e-9, 0x81: 1e-6, 0x82: 6e-6, 0x83: 13e-6, 0x84: 25e-6, 0x85: 50e-6, 0x86: 100e-6, 0x87: 200e-6,
    0x88: 1e-3, 0x89: 5e-3,
}
EMSTAT4_CURRENT_RANGES: dict[int, float] = {
    3: 1e-9, 6: 10e-9, 9: 100e-9, 12: 1e-6, 15: 10e-6, 18: 100e-6, 21: 1e-3, 24: 10e-3, 27: 100e-3,
}
#: firmware-name prefix (the ``t`` reply) -> the family's current ranges
DEVICE_FAMILIES: dict[str, dict[int, float]] = {
    "espico": PICO_CURRENT_RANGES,
    "es4_": EMSTAT4_CURRENT_RANGES,
    "mes4": EMSTAT4_CURRENT_RANGES,
}
#: firmware-name prefix -> the potentials (V vs its reference) the device can apply, where one range holds for
#: the family (the EmStat Pico's; EmStat4 models differ, LR and HR, and are left to the campaign's
#: ``safety.potential_limits_v``)
DEVICE_POTENTIAL_RANGES_V: dict[str, tuple[float, float]] = {"espico": (-1.7, 2.0)}


def script_number(value: float, where: str = "MethodSCRIPT") -> str:
    """``value`` as a script number: the coarsest prefix that writes it exactly (``0.1`` -> ``100m``)."""
    if not math.isfinite(value):
        raise ConfigError(where, f"cannot write {value!r} in a script")
    for prefix, factor in _SCRIPT_PREFIXES:
        n = value / factor
        if abs(n - round(n)) <= 1e-9 * abs(n) and abs(round(n)) < OFFSET:
            return f"{round(n)}{prefix}"
    for prefix, factor in reversed(_SCRIPT_PREFIXES):  # not exact anywhere: round at the finest that fits
        n = round(value / factor)
        if abs(n) < OFFSET:
            return f"{n}{prefix}"
    raise ConfigError(where, f"{value!r} is too large for a script number")


def parse_script_number(text: str) -> float | None:
    """The value of a script number, or None if ``text`` is not one (e.g. ``0.5`` with its decimal point)."""
    m = _SCRIPT_NUMBER.fullmatch(text)
    if m is None:
        return None
    return int(m[1]) * SI_PREFIXES[m[2] or " "]


@dataclass(frozen=True)
class Variable:
    """One variable of a data package."""

    type: str  # "da", "ba", ...
    value: float  # SI units; NaN for ``     nan``
    status: Status = Status.OK
    current_range: int | None = None  # the ``2XX`` metadata, if sent


def encode_variable(var_type: str, value: float, metadata: str = "") -> str:
    """One package variable: ``encode_variable("da", -0.499905)`` -> ``da7F85F3Fu``; ``metadata`` as sent."""
    if math.isnan(value):
        return f"{var_type}{NAN_TEXT}{metadata}"
    for prefix in _PACKAGE_PREFIXES:
        n = round(value / SI_PREFIXES[prefix])
        if abs(n) < OFFSET:
            return f"{var_type}{n + OFFSET:07X}{prefix}{metadata}"
    raise ValueError(f"{value!r} does not fit a MethodSCRIPT variable")


def parse_package(line: str) -> tuple[Variable, ...] | None:
    """The variables of a ``P...`` line (without its newline), or None if the line is not a valid package."""
    if not line.startswith("P") or len(line) < 2:
        return None
    variables = []
    for text in line[1:].split(";"):
        m = _VARIABLE.fullmatch(text)
        if m is None:
            return None
        value = math.nan if m[2] is None else (int(m[2], 16) - OFFSET) * SI_PREFIXES[m[3]]
        status, current_range = Status.OK, None
        for token in m[4].split(",")[1:]:
            if token[0] == "1" and len(token) == 2:
                status = Status(int(token[1], 16))
            elif token[0] == "2" and len(token) == 3:
                current_range = int(token[1:], 16)
            elif token[0] != "4":  # 4: noise level, not used here; no other metadata type exists
                return None
        variables.append(Variable(m[1], value, status, current_range))
    return tuple(variables)


class LineKind(StrEnum):
    """What a reply line is (see the module docstring)."""

    ACCEPTED = "e"
    LOOP_START = "M"
    PACKAGE = "P"
    LOOP_END = "*"
    PLAIN_LOOP_START = "L"
    PLAIN_LOOP_END = "+"
    SCAN_START = "C"
    SCAN_END = "-"
    ABORTED = "Z"
    END = ""
    ERROR = "!"


@dataclass(frozen=True)
class DeviceErrorLine:
    """An ``!XXXX[:detail]`` line: ``echo`` is the command letter it answers (``Z`` in ``Z!0006``), if any."""

    echo: str
    code: int
    detail: str

    @property
    def text(self) -> str:
        return f"!{self.code:04X}"


def classify(line: str) -> LineKind | None:
    """The kind of one reply line (without its newline), or None for a line no device sends."""
    if line in ("e", "*", "L", "+", "-", "Z", ""):
        return LineKind(line)
    if re.fullmatch(r"M[0-9A-F]{4}", line):
        return LineKind.LOOP_START
    if re.fullmatch(r"C[0-9A-F]{4}", line):
        return LineKind.SCAN_START
    if line.startswith("P"):
        return LineKind.PACKAGE
    if _ERROR.fullmatch(line):
        return LineKind.ERROR
    return None


def parse_error(line: str) -> DeviceErrorLine | None:
    """The parts of an error line, or None if ``line`` is not one."""
    m = _ERROR.fullmatch(line)
    if m is None:
        return None
    return DeviceErrorLine(m[1], int(m[2], 16), m[3] or "")


def as_written(params: CVParams, where: str = "MethodSCRIPT") -> CVParams:
    """``params`` as the instrument reads them back from the script, every number rounded as written.

    Why: the instrument counts its points from the numbers it received; a driver that counted from the
    unrounded ones could expect one point more or less (e.g. a vertex at 0.1234567 V on a 1 mV grid).
    """
    def rounded(value: float) -> float:
        return parse_script_number(script_number(value, where))  # type: ignore[return-value]

    return replace(params, e_begin_v=rounded(params.e_begin_v), e_vertex1_v=rounded(params.e_vertex1_v),
                   e_vertex2_v=rounded(params.e_vertex2_v), e_step_v=rounded(params.e_step_v),
                   scan_rate_v_s=rounded(params.scan_rate_v_s), ir_comp_ohm=rounded(params.ir_comp_ohm))


def eis_as_written(params: EISParams, where: str = "MethodSCRIPT") -> EISParams:
    """``params`` with every number rounded as :func:`eis_script` writes it (see :func:`as_written`)."""
    def rounded(value: float) -> float:
        return parse_script_number(script_number(value, where))  # type: ignore[return-value]

    return replace(params, f_high_hz=rounded(params.f_high_hz), f_low_hz=rounded(params.f_low_hz),
                   amplitude_v=rounded(params.amplitude_v), e_dc_v=rounded(params.e_dc_v))


def cv_script(params: CVParams, *, max_current_a: float = 5e-3, where: str = "MethodSCRIPT") -> list[str]:
    """The lines (without newlines) that run ``params`` as one CV: ``e``, the script, and the blank line.

    A fixed ``params.current_range_a`` pins autoranging to that range; None autoranges from 1 nA up to
    ``max_current_a``. The bandwidth is four times the point rate (as PalmSens' examples do), at least 1 Hz.
    Each package carries the potential and then the current twice: MethodSCRIPT has no checksum, and the
    second copy lets the reader catch a current corrupted on the line. ``params.ir_comp_ohm > 0`` adds
    ``set_ir_comp R`` (positive-feedback iR compensation of R ohm for the following measurement loops;
    the statement's form is an [infer], see the module docstring).
    """
    return cv_series_script([params], max_current_a=max_current_a, where=where)


def cv_series_script(series: Sequence[CVParams], *, max_current_a: float = 5e-3,
                     where: str = "MethodSCRIPT") -> list[str]:
    """One script running the CVs of ``series`` one after the other (e.g. one per scan rate), the cell on
    throughout: one ``meas_loop_cv`` per CV, each preceded by its own bandwidth; they must share the current
    range and the iR compensation (a ConfigError otherwise). See :func:`cv_script` for the rest."""
    if not series:
        raise ConfigError(where, "a CV series needs at least one CV")
    first = series[0]
    if any(p.current_range_a != first.current_range_a or p.ir_comp_ohm != first.ir_comp_ohm for p in series):
        raise ConfigError(where, "the CVs of one script must share current_range_a and ir_comp_ohm")

    def n(value: float) -> str:
        return script_number(value, where)

    def bandwidth(params: CVParams) -> int:
        return max(1, round(4 * params.scan_rate_v_s / params.e_step_v))

    def loop(params: CVParams) -> list[str]:
        scans = f" nscans({params.n_scans})" if params.n_scans > 1 else ""
        return [f"meas_loop_cv p c {n(params.e_begin_v)} {n(params.e_vertex1_v)} {n(params.e_vertex2_v)} "
                f"{n(params.e_step_v)} {n(params.scan_rate_v_s)}{scans}",
                "  pck_start", "  pck_add p", "  pck_add c", "  pck_add c", "  pck_end", "endloop"]

    start = first.current_range_a if first.current_range_a is not None else 100e-6
    low, high = (start, start) if first.current_range_a is not None else (1e-9, max_current_a)
    ir_comp = [f"set_ir_comp {n(first.ir_comp_ohm)}"] if first.ir_comp_ohm > 0 else []
    later = [line for params in series[1:] for line in (f"set_max_bandwidth {bandwidth(params)}", *loop(params))]
    return [
        "e",
        "var c",
        "var p",
        "set_pgstat_mode 2",
        f"set_max_bandwidth {bandwidth(first)}",
        f"set_range ba {n(start)}",
        f"set_autoranging ba {n(low)} {n(high)}",
        *ir_comp,
        f"set_e {n(first.e_begin_v)}",
        "cell_on",
        *loop(first),
        *later,
        "on_finished:",
        "  cell_off",
        "",
    ]


def eis_script(params: EISParams, *, max_current_a: float = 5e-3, where: str = "MethodSCRIPT") -> list[str]:
    """The lines (without newlines) of one impedance sweep: ``e``, the script, and the blank line.

    Shape of PalmSens' EIS example (``MSLoopExample012-EIS.mscr``): high-speed mode, the DC potential pinned
    with ``set_range_minmax da``, autoranging current, and ``meas_loop_eis f r j <ac> <f_start> <f_end>
    <n> <dc>`` whose package holds the applied frequency (``dc``), Z' (``cc``) and Z'' (``cd``) in the
    order the ``pck_add`` lines name them. The point count is written as an integer (``31i``).
    """
    def n(value: float) -> str:
        return script_number(value, where)

    return [
        "e",
        "var f",
        "var r",
        "var j",
        "set_pgstat_chan 0",
        "set_pgstat_mode 3",
        f"set_max_bandwidth {n(2 * params.f_high_hz)}",
        f"set_range_minmax da {n(params.e_dc_v)} {n(params.e_dc_v)}",
        f"set_range ba {n(max_current_a)}",
        f"set_autoranging ba {n(1e-6)} {n(max_current_a)}",
        f"set_e {n(params.e_dc_v)}",
        "cell_on",
        f"meas_loop_eis f r j {n(params.amplitude_v)} {n(params.f_high_hz)} {n(params.f_low_hz)} "
        f"{params.points}i {n(params.e_dc_v)}",
        "  pck_start",
        "  pck_add f",
        "  pck_add r",
        "  pck_add j",
        "  pck_end",
        "endloop",
        "on_finished:",
        "  cell_off",
        "",
    ]
