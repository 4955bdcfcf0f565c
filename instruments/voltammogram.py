"""Cyclic-voltammetry value types: the scan parameters asked for and the voltammogram measured.

Why: the planner, the protocol executor, the potentiostat drivers, the simulator, the analysis and the
journal all pass CVs around. One frozen, validated definition (with one waveform generator and one
JSON form) keeps them from disagreeing about what "vertex 1" means, which way the current points, or
how a stored voltammogram looks.

Conventions (docs/protocols.md, "Conventions"):
- a scan runs ``e_begin -> e_vertex1 -> e_vertex2 -> e_begin`` like MethodSCRIPT's ``meas_loop_cv``,
  repeated ``n_scans`` times;
- potentials are in volts against the electrode named by ``Voltammogram.reference``
  (:data:`UNNAMED_REFERENCE` where the campaign named none);
- current follows IUPAC: anodic (oxidation) current positive, cathodic current negative.
"""

from __future__ import annotations

import logging
import math
import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labloop.core.errors import InvalidParameter, SafetyBreach, WrongReturn
from labloop.core.numeric import finite_number

log = logging.getLogger(__name__)

#: the label of potentials measured against a reference electrode the campaign did not name (a potentiostat driver's
#: ``reference`` option left out), worded to read in every "vs ..." it ends up in: "E1/2 vs the reference electrode
#: (unnamed)". Why not a default name: the EmStat driver's "Ag/Ag+" labelled every measurement, CSV row and plot of a
#: campaign that never said which electrode it used, and a lab on Ag/AgCl got data labelled Ag/Ag+ (a chemist's trial)
UNNAMED_REFERENCE = "the reference electrode (unnamed)"


def reference_problem(value: object) -> str | None:
    """Why ``value`` cannot name a reference electrode (a potentiostat's ``reference`` option, a voltammogram's
    label), or None: any non-empty text. The one rule for both, so that a campaign's option is refused in the words
    a scan labelled with it would be."""
    if isinstance(value, str) and value.strip():
        return None
    return f"must name the reference electrode (e.g. 'Ag/Ag+'), got {value!r}"


def require_finite(name: str, value: float) -> None:
    """Raise ``InvalidParameter`` unless ``value`` is a finite real number."""
    if not finite_number(value):
        raise InvalidParameter(f"{name}: must be a finite number, got {value!r}")


def require_positive(name: str, value: float) -> None:
    """Raise ``InvalidParameter`` unless ``value`` is finite and > 0."""
    require_finite(name, value)
    if value <= 0:
        raise InvalidParameter(f"{name}: must be > 0, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class CVParams:
    """One cyclic-voltammetry request, the same numbers MethodSCRIPT's ``meas_loop_cv`` takes.

    ``e_begin_v`` must lie between the two vertices (inclusive), since the scan returns to it.
    ``current_range_a`` is the fixed current range (None = autoranging): currents beyond it overload.
    ``ir_comp_ohm`` is the resistance the potentiostat compensates by positive feedback during the scan
    (0: none); the analysis corrects only what remains (:func:`labloop.instruments.cv_analysis.remaining_resistance`,
    applied by ``analyze_cv(..., ru_ohm=)``).
    """

    e_begin_v: float
    e_vertex1_v: float
    e_vertex2_v: float
    scan_rate_v_s: float
    e_step_v: float = 0.001
    n_scans: int = 1
    current_range_a: float | None = None
    ir_comp_ohm: float = 0.0

    def __post_init__(self) -> None:
        for name in ("e_begin_v", "e_vertex1_v", "e_vertex2_v"):
            require_finite(name, getattr(self, name))
        require_positive("e_step_v", self.e_step_v)
        require_positive("scan_rate_v_s", self.scan_rate_v_s)
        if self.e_vertex1_v == self.e_vertex2_v:
            raise InvalidParameter(f"e_vertex2_v: must differ from e_vertex1_v ({self.e_vertex1_v!r} V)")
        low, high = sorted((self.e_vertex1_v, self.e_vertex2_v))
        if not low <= self.e_begin_v <= high:
            raise InvalidParameter(f"e_begin_v: must lie between the vertices [{low}, {high}] V, "
                                   f"got {self.e_begin_v!r}")
        if self.e_step_v > high - low:
            raise InvalidParameter(f"e_step_v: {self.e_step_v!r} V is larger than the scan window "
                                   f"{high - low:g} V")
        integral = isinstance(self.n_scans, numbers.Integral) and not isinstance(self.n_scans, bool)
        if not integral or self.n_scans < 1:
            raise InvalidParameter(f"n_scans: must be an integer >= 1, got {self.n_scans!r}")
        if self.current_range_a is not None:
            require_positive("current_range_a", self.current_range_a)
        require_finite("ir_comp_ohm", self.ir_comp_ohm)
        if self.ir_comp_ohm < 0:
            raise InvalidParameter(f"ir_comp_ohm: must be >= 0, got {self.ir_comp_ohm!r}")
        for name in ("e_begin_v", "e_vertex1_v", "e_vertex2_v", "scan_rate_v_s", "e_step_v",
                     "current_range_a", "ir_comp_ohm"):
            if getattr(self, name) is not None:  # plain floats keep to_dict JSON-safe for numpy inputs
                object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "n_scans", int(self.n_scans))

    @property
    def time_step_s(self) -> float:
        """Time between two points: one potential step at the scan rate."""
        return self.e_step_v / self.scan_rate_v_s

    @property
    def path_length_v(self) -> float:
        """Total potential travelled over all scans (V)."""
        one = (abs(self.e_vertex1_v - self.e_begin_v) + abs(self.e_vertex2_v - self.e_vertex1_v)
               + abs(self.e_begin_v - self.e_vertex2_v))
        return one * self.n_scans

    @property
    def duration_s(self) -> float:
        """Length of the whole measurement (s)."""
        return self.path_length_v / self.scan_rate_v_s

    @property
    def n_points(self) -> int:
        """Number of points the waveform has: one per step, plus the starting point."""
        return math.floor(self.path_length_v / self.e_step_v + 1e-9) + 1

    def waveform(self) -> tuple[np.ndarray, np.ndarray]:
        """Time (s) and applied potential (V) of every point: a triangle wave sampled every step.

        Points are evenly spaced in time (one ``e_step_v`` of travel apart), so the vertices are hit
        exactly when the legs are whole multiples of the step and are cut between two points otherwise.
        """
        legs = np.array([self.e_begin_v, self.e_vertex1_v, self.e_vertex2_v, self.e_begin_v])
        starts = np.tile(legs[:-1], self.n_scans)
        ends = np.tile(legs[1:], self.n_scans)
        lengths = np.abs(ends - starts)
        cumulative = np.concatenate(([0.0], np.cumsum(lengths)))
        travel = np.minimum(np.arange(self.n_points) * self.e_step_v, cumulative[-1])
        leg = np.clip(np.searchsorted(cumulative, travel, side="right") - 1, 0, len(lengths) - 1)
        potential = starts[leg] + np.sign(ends[leg] - starts[leg]) * (travel - cumulative[leg])
        return travel / self.scan_rate_v_s, potential

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (plain floats and ints)."""
        return {
            "e_begin_v": self.e_begin_v, "e_vertex1_v": self.e_vertex1_v, "e_vertex2_v": self.e_vertex2_v,
            "scan_rate_v_s": self.scan_rate_v_s, "e_step_v": self.e_step_v, "n_scans": self.n_scans,
            "current_range_a": self.current_range_a, "ir_comp_ohm": self.ir_comp_ohm,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CVParams:
        """Inverse of ``to_dict``; unknown keys are an error, so typos do not pass silently."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise InvalidParameter(f"{sorted(unknown)[0]}: unknown CV parameter")
        return cls(**data)


@dataclass(frozen=True)
class Segment:
    """One monotone sweep of a voltammogram: points ``start..stop`` inclusive.

    A vertex point belongs to the sweep arriving at it: its current was sampled on that sweep.
    """

    start: int
    stop: int
    direction: int  # +1 anodic-going (potential rising), -1 cathodic-going

    @property
    def index(self) -> slice:
        return slice(self.start, self.stop + 1)


@dataclass(frozen=True, eq=False)
class Voltammogram:
    """A measured (or simulated) CV: point-by-point potential, current, time, plus how it was taken.

    Arrays are stored as read-only float64 copies. ``overload`` marks points where the current hit
    the current range (their value is the clipped reading, not the true current).
    """

    potential_v: np.ndarray
    current_a: np.ndarray
    time_s: np.ndarray
    params: CVParams
    reference: str
    overload: np.ndarray = field(default=None)  # type: ignore[assignment]  # None -> no point overloaded

    def __post_init__(self) -> None:
        n = None
        for name in ("potential_v", "current_a", "time_s"):
            arr = np.array(getattr(self, name), dtype=np.float64)
            if arr.ndim != 1:
                raise InvalidParameter(f"{name}: must be one-dimensional, got shape {arr.shape}")
            if not np.isfinite(arr).all():
                raise InvalidParameter(f"{name}: contains NaN or infinite values")
            if n is not None and len(arr) != n:
                raise InvalidParameter(f"{name}: has {len(arr)} points, potential_v has {n}")
            n = len(arr)
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)
        if n is not None and n < 2:
            raise InvalidParameter(f"potential_v: needs at least 2 points, got {n}")
        if np.any(np.diff(self.time_s) < 0):
            raise InvalidParameter("time_s: must not decrease")
        if (problem := reference_problem(self.reference)) is not None:
            raise InvalidParameter(f"reference: {problem}")
        mask = np.zeros(n, dtype=bool) if self.overload is None else np.array(self.overload, dtype=bool)
        if mask.shape != (n,):
            raise InvalidParameter(f"overload: must be a boolean mask of {n} points, got shape {mask.shape}")
        mask.flags.writeable = False
        object.__setattr__(self, "overload", mask)

    def __len__(self) -> int:
        return len(self.potential_v)

    @property
    def any_overload(self) -> bool:
        return bool(self.overload.any())

    def segments(self) -> list[Segment]:
        """Split at the vertices into monotone sweeps, in time order (flat steps join the sweep before)."""
        step = np.sign(np.diff(self.potential_v))
        moving = np.flatnonzero(step)
        if len(moving) == 0:
            return []
        direction = step[moving]
        turns = moving[1:][direction[1:] != direction[:-1]]  # step leaving each vertex
        starts = np.concatenate(([0], turns + 1))
        stops = np.concatenate((turns, [len(self) - 1]))
        dirs = np.concatenate(([direction[0]], step[turns]))
        return [Segment(int(a), int(b), int(d)) for a, b, d in zip(starts, stops, dirs, strict=True)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form: lists of floats, the parameters, and the indices of overloaded points."""
        return {
            "potential_v": self.potential_v.tolist(),
            "current_a": self.current_a.tolist(),
            "time_s": self.time_s.tolist(),
            "params": self.params.to_dict(),
            "reference": self.reference,
            "overload_index": np.flatnonzero(self.overload).tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Voltammogram:
        """Inverse of ``to_dict`` (floats round-trip exactly through JSON)."""
        try:
            n = len(data["potential_v"])
            mask = np.zeros(n, dtype=bool)
            mask[np.asarray(data.get("overload_index", []), dtype=int)] = True
            return cls(potential_v=data["potential_v"], current_a=data["current_a"], time_s=data["time_s"],
                       params=CVParams.from_dict(data["params"]), reference=data["reference"],
                       overload=mask)
        except KeyError as exc:
            raise InvalidParameter(f"{exc.args[0]}: missing from stored voltammogram") from None
        except IndexError:
            raise InvalidParameter("overload_index: index outside the voltammogram") from None


# -- what a driver returned -------------------------------------------------------------------------------------
# Checked here, below both users, so the protocol executor (protocols/executor.py, before a scan is analysed) and the
# conformance kit (sim/conformance.py, its short CV) apply one check: the kit passed drivers whose every scan a run
# then rejected (currents in uA labelled A, a NaN point: a plug-in author's trial).

#: the largest current a step may name (A: a blank's limit, a CV's current range) or a returned scan hold. A blank
#: (electrolyte alone, a few mL, a mm-size electrode) draws nA to uA: the charging current is ~0.14 uA at 0.1 V/s on a
#: 3 mm disk, ~30 uA at 10 V/s, and air-saturated electrolyte's O2 wave tens of uA (PROTOCOLS.md); a 10 mM analyte's
#: peak is ~0.2 mA at 0.1 V/s. 0.1 A through a 3 mm disk is 1.4 A/cm2, electrolysis with gas, and twenty times the
#: EmStat Pico's highest range (5 mA): a limit above it never trips, a range above it never resolves a peak. So it is
#: never meant, and any current meant in uA (a blank's limit is above its charging current, 0.1 uA) written in A lies
#: above it: refused, with that hint.
MAX_CURRENT_A = 0.1
#: how many times a current range's full scale a reading may reach before it is implausible [infer]: a
#: potentiostat reads beyond its nominal range before it overloads (the EmStat driver refuses a package beyond it,
#: instruments/emstat.py), and a scan with a fixed range (``CVParams.current_range_a``) whose current reaches it with
#: no point marked overloaded ignored the range: a plug-in returned 22.6 uA in a 1 uA range, analysed as good (a
#: plug-in engineer's trial)
RANGE_SLIP_FACTOR = 4.0
#: how far (V) a voltammogram's lowest and highest potential may lie from the vertices asked, beyond two steps: a
#: potentiostat reports the potential it applied, within millivolts
SPAN_TOLERANCE_V = 0.02
#: how far (relative) a voltammogram's scan rate and compensated resistance may lie from those asked
PARAMS_TOLERANCE = 0.01
#: a returned scan's times may span this many times its sweep (:attr:`CVParams.duration_s`), plus :data:`QUIET_S`,
#: before they are read as in another unit: times in ms are a thousand times the sweep (a driver's 55 s scan ended at
#: 55000 s and was analysed as a measurement: a plug-in engineer's trial), while a device that counts its own quiet
#: time before the sweep (CH Instruments' default 2 s, a protocol's ``rest_s`` up to ten minutes) adds a fixed time;
#: a driver that reports no times (all zero) is not judged by them
TIME_SLIP_FACTOR = 20.0
QUIET_S = 600.0


#: how far (V) a returned potential may lie beyond ``safety.potential_limits_v`` before the scan is a safety breach
#: (:class:`SafetyBreach`), or one potential step when that is larger: a potentiostat reports the potential it applied
#: within millivolts, and a staircase's last step may land one step past a vertex set at the limit
BREACH_TOLERANCE_V = 0.01
#: how many times the largest limit (in volts) a returned potential must reach to be read as in another unit (mV: a
#: thousand times) rather than as a breach: no potentiostat applies a hundred times a cell's window
UNIT_SLIP_FACTOR = 100.0


def returned_scan(scan: Voltammogram, params: CVParams, at: str, call: str,
                  limits_v: tuple[float, float] | None = None) -> Voltammogram:
    """``scan`` when it is the scan ``params`` asked for, else :class:`WrongReturn` at ``at``, the instrument's fault,
    named, before any analysis, carrying the scan so a run journals it, not analysed (a real scan of a used-up
    sample; a unit slip can be corrected later).

    First, with ``limits_v`` (a run's ``safety.potential_limits_v``), its potentials within them, give or take
    :data:`BREACH_TOLERANCE_V` or a step: beyond them the cell was driven where the limits forbid, a
    :class:`SafetyBreach` that stops the run for a person (a driver whose scan reached 2.55 V with limits up to 2.0 V
    was called a unit slip, and the next samples were scanned). A potential beyond :data:`UNIT_SLIP_FACTOR` times the
    largest limit is a unit slip (mV), said by the span check below, as no cell was driven to thousands of volts.

    Then its potentials must run from one vertex of ``params`` to the other (a driver's scan in mV, 1000 times the
    window, or cut short before a vertex, was analysed as the molecule's and failed as ``no_peak`` or
    ``irreversible``, ten in a row before the run stopped with advice about the electrodes, and the planner shunned
    those molecules: a plug-in engineer's trial); its potentials and currents finite, and the currents within what a
    cell of a few mL draws (a NaN written into the arrays after they were built ended in a traceback blamed on
    labloop, currents in uA as A, 39 A, went into the journal as a measurement: a plug-in author's trial) and within
    :data:`RANGE_SLIP_FACTOR` times a fixed current range unless points are marked overloaded; and its own
    ``params`` those asked, as the raw data keeps them and the analysis corrects the ohmic drop by their compensation
    (a scan of -5..5 V that never ran was journalled as the experiment's)."""
    low, high = sorted((params.e_vertex1_v, params.e_vertex2_v))
    off = SPAN_TOLERANCE_V + 2 * params.e_step_v
    kept = scan if isinstance(scan.params, CVParams) else None  # what a journal can store as a voltammogram
    if limits_v is not None:
        _check_breach(scan, params, at, call, limits_v, kept)
    got, why = "no point", "a scan cut short"
    if not (np.isfinite(scan.potential_v).all() and np.isfinite(scan.current_a).all()):
        raise WrongReturn(at, f"its driver's {call} returned a scan holding NaN or infinite values: not analysed",
                          scan=kept)
    if len(scan.potential_v):
        lo, hi = float(scan.potential_v.min()), float(scan.potential_v.max())
        if not (abs(lo - low) <= off and abs(hi - high) <= off):
            got, why = f"{lo:.3f}..{hi:.3f} V", _span_said(lo, hi, low, high, off)
        elif (peak := float(np.abs(scan.current_a).max())) > MAX_CURRENT_A:
            raise WrongReturn(at, f"its driver's {call} returned currents up to {peak:.4g} A, beyond what a cell of a "
                                  f"few mL draws (at most {MAX_CURRENT_A:g} A): currents in another unit, uA? not "
                                  "analysed", scan=kept)
        elif (params.current_range_a is not None and peak > RANGE_SLIP_FACTOR * params.current_range_a
              and not scan.any_overload):
            raise WrongReturn(at, f"its driver's {call} returned currents up to {peak:.4g} A in a fixed current range "
                                  f"of {params.current_range_a:g} A, with no point marked overloaded: the driver "
                                  "ignored current_range_a, or its overloads: not analysed", scan=kept)
        elif (differs := _params_differ(scan.params, params, off)) is not None:
            raise WrongReturn(at, f"its driver's {call} returned a scan whose params say {differs}: not analysed",
                              scan=kept)
        elif (span := float(scan.time_s[-1] - scan.time_s[0])) > TIME_SLIP_FACTOR * params.duration_s + QUIET_S:
            raise WrongReturn(at, f"its driver's {call} returned times over {span:.4g} s for a scan of "
                                  f"{params.duration_s:.3g} s: times in another unit, ms? not analysed", scan=kept)
        else:
            return scan
    raise WrongReturn(at, f"its driver's {call} returned a scan over {got} where {low:g}..{high:g} V was asked "
                          f"({why}): not analysed", scan=kept)


def _span_said(lo: float, hi: float, low: float, high: float, off: float) -> str:
    """What a returned scan over ``lo..hi`` where ``low..high`` was asked most likely is: potentials in another unit
    (a span hundreds of times the window's), a scan cut short (within the window, short of a vertex), or one driven
    beyond the window asked. Why: a driver that added 0.6 V to a vertex was said to have "potentials in another unit,
    mV? or a scan cut short", neither (a plug-in engineer's trial)."""
    if hi - lo > UNIT_SLIP_FACTOR * (high - low):
        return "potentials in another unit, mV?"
    beyond, short = lo < low - off or hi > high + off, lo > low + off or hi < high - off
    if beyond and not short:
        return "potentials beyond the window asked: the driver applied other potentials than asked"
    return "a scan cut short" if short and not beyond else "another window than asked, or a scan cut short"


def _check_breach(scan: Voltammogram, params: CVParams, at: str, call: str, limits_v: tuple[float, float],
                  kept: Voltammogram | None) -> None:
    """:class:`SafetyBreach` when a finite potential of ``scan`` lies beyond ``limits_v`` by more than
    :data:`BREACH_TOLERANCE_V` (or a step of ``params``) and within :data:`UNIT_SLIP_FACTOR` times the largest limit
    (beyond that it is a unit slip: :func:`returned_scan`); the potential farthest beyond is the one said."""
    finite = scan.potential_v[np.isfinite(scan.potential_v)]
    if not len(finite):
        return
    low, high = limits_v
    tolerance = max(BREACH_TOLERANCE_V, params.e_step_v)
    slip = UNIT_SLIP_FACTOR * max(abs(low), abs(high))
    lo, hi = float(finite.min()), float(finite.max())
    beyond = [(e, limit) for e, limit in ((hi, high), (lo, low)) if abs(e - limit) > tolerance
              and (e > limit if limit == high else e < limit) and abs(e) <= slip]
    if beyond:
        e, limit = max(beyond, key=lambda pair: abs(pair[0] - pair[1]))
        raise SafetyBreach(at, f"its driver's {call} returned a scan showing the cell was driven to {e:.3f} V, beyond "
                               f"safety.potential_limits_v's {float(limit)} V (asked {params.e_vertex1_v:g} and "
                               f"{params.e_vertex2_v:g} V): not analysed", scan=kept)


def _params_differ(got: CVParams, asked: CVParams, off: float) -> str | None:
    """What of a returned scan's ``got`` params is not what was ``asked`` (potentials within ``off`` V, the scan
    rate and the compensated resistance within :data:`PARAMS_TOLERANCE`), as ``field X where Y was asked``."""
    if not isinstance(got, CVParams):
        return f"{type(got).__name__}, not CVParams,"
    for name in ("e_begin_v", "e_vertex1_v", "e_vertex2_v"):
        if abs(getattr(got, name) - getattr(asked, name)) > off:
            return f"{name} {getattr(got, name):g} V where {getattr(asked, name):g} V was asked"
    for name, unit in (("scan_rate_v_s", "V/s"), ("ir_comp_ohm", "ohm")):
        if not math.isclose(getattr(got, name), getattr(asked, name), rel_tol=PARAMS_TOLERANCE, abs_tol=1e-9):
            return f"{name} {getattr(got, name):g} {unit} where {getattr(asked, name):g} {unit} was asked"
    return None
