"""Turning a voltammogram into the numbers the loop learns from: E1/2, dEp, peak currents, quality flags.

Why: a closed loop runs unattended, so the analysis must both measure and say when not to trust the
measurement. A noisy, overloaded, empty or irreversible CV must arrive in the journal flagged, not as
a confident E1/2 that would mislead the surrogate.

Method (docs/protocols.md, "Extracting E1/2 from a noisy CV"):
1. split the CV at its vertices into monotone sweeps;
2. smooth each sweep with a Savitzky-Golay filter whose window spans a fixed potential (21 points at
   1 mV), so the smoothing means the same at any step size;
3. pick anodic peaks (maxima) on rising sweeps and cathodic peaks (minima) on falling sweeps; a peak
   counts when its prominence clears both a noise threshold and a share of the current span;
4. pair the strongest peak with the strongest opposite peak on a neighbouring sweep (same scan);
5. locate each peak between the samples: the maximum of a least-squares cubic through the raw points within
   40 mV of the smoothed maximum (:func:`_refine_potential`);
6. measure a forward peak's current above a straight baseline fitted on the sweep before it, and a return
   peak's above the forward wave's decay extrapolated in time (:func:`_return_height`).
The noise level is estimated from second differences (robust to the smooth signal underneath).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Literal

import numpy as np

from labloop.core.errors import InvalidParameter
from labloop.instruments.kinetics import FARADAY, GAS_CONSTANT, NICHOLSON_RANGE_MV, NICHOLSON_TEMPERATURE_K
from labloop.instruments.voltammogram import Segment, Voltammogram, require_finite, require_positive

log = logging.getLogger(__name__)

#: which redox potential a campaign is after: the oxidation (anodic scan first) or the reduction
Quantity = Literal["oxidation_potential", "reduction_potential"]

Reversibility = Literal["reversible", "quasi-reversible", "irreversible"]


class CVFlag(StrEnum):
    """Reasons to distrust (part of) a CV result."""

    NO_PEAK = "no_peak"
    IRREVERSIBLE = "irreversible"
    NOISY = "noisy"
    OVERLOAD = "overload"
    OXYGEN = "oxygen"  # an unpaired reduction wave: dissolved O2 (the cell was not purged)
    CONTAMINATED = "contaminated"  # a blank shows an oxidation wave or too much current: dirty electrode/cell
    NO_STANDARD = "no_standard"  # the internal standard's couple was not found where it should be
    #: no peak of that direction, and the current still climbs into the scan's vertex: the wave lies beyond
    #: the scanned window (a result about the molecule, not an irreversible couple)
    BEYOND_WINDOW = "beyond_window"
    #: the current at the scan's start is already a wave's decaying current: the couple lies at or before the
    #: start, outside the window (e.g. a molecule reduced at the start of a cathodic scan); move the start
    AT_SCAN_START = "at_scan_start"
    #: the return peak is less than ``min_return_share`` of the forward one, on a scan whose only waves are the
    #: couple's: what the forward sweep made (a radical cation, an anion) reacts away within the scan (an EC
    #: mechanism). The potential may be right; the molecule is not stable in that state, which rules out a battery
    #: material
    CHEMICALLY_IRREVERSIBLE = "chemically_irreversible"


#: the widest the peak fit's half width and the smoothing window may be (V): a one-electron wave's peak is about
#: 0.1 V wide at its half height, and a fit or a window wider than that takes the wave's shape for noise (a trial's
#: ``peak_fit_half_width_v: 5`` failed every experiment, a real rig's sample spent on each, and ``smooth_window_v:
#: 10`` was blamed on the objective's window)
WIDEST_V = {"peak_fit_half_width_v": 0.2, "smooth_window_v": 0.2}


@dataclass(frozen=True, kw_only=True)
class CVAnalysisSettings:
    """Knobs of ``analyze_cv``; potentials in V. The defaults suit 0.01-1 V/s CVs of 1-5 mM analytes."""

    smooth_window_v: float = 0.021  # Savitzky-Golay window span (21 points at 1 mV)
    smooth_order: int = 2
    peak_fit_half_width_v: float = 0.040  # a cubic through the raw points within this of the maximum
    baseline_from_v: float = 0.35  # baseline fitted from this far before the peak ...
    baseline_to_v: float = 0.20  # ... to this far before it (faradaic foot < 0.2% of ip)
    min_peak_snr: float = 5.0  # a peak's prominence must exceed this many noise sigmas ...
    min_peak_share: float = 0.02  # ... and this share of the current span of the CV
    noisy_snr: float = 20.0  # strongest peak height / noise sigma below this -> flag "noisy"
    #: where dEp starts to tell k0 a value (instruments/kinetics.py): below it the couple is reversible at that rate
    #: and k0 only bounded from below. Why not the 80 mV screening cut-off it was: a couple at 68-80 mV was called
    #: reversible beside a finite k0 from the same dEp, growing with the rate (an electrochemist's trial)
    reversible_max_dep_v: float = NICHOLSON_RANGE_MV[0] / 1e3
    reversible_ratio_band: float = 0.25  # reversible when |ln(ipc/ipa)| <= ln(1 + band)
    irreversible_min_dep_v: float = 0.200
    #: return peak over forward peak below this -> flag "chemically_irreversible": half of what the forward sweep
    #: made reacted away before the return sweep took it back (at 0.1 V/s with the vertex 0.4 V past E1/2, the
    #: simulator's EC couple reads 0.70 for a follow-up of 0.1/s and 0.25 for 1/s, as Nicholson and Shain's does)
    min_return_share: float = 0.5

    def __post_init__(self) -> None:
        for name in ("smooth_window_v", "peak_fit_half_width_v", "baseline_from_v", "baseline_to_v",
                     "min_peak_snr", "noisy_snr", "reversible_max_dep_v", "reversible_ratio_band",
                     "irreversible_min_dep_v", "min_return_share"):
            require_positive(name, getattr(self, name))
        require_positive("min_peak_share", self.min_peak_share)
        if self.smooth_order not in (1, 2, 3, 4):
            raise InvalidParameter(f"smooth_order: must be 1-4, got {self.smooth_order!r}")
        if self.baseline_to_v >= self.baseline_from_v:
            raise InvalidParameter("baseline_to_v: must be smaller than baseline_from_v")
        if self.irreversible_min_dep_v <= self.reversible_max_dep_v:
            raise InvalidParameter("irreversible_min_dep_v: must exceed reversible_max_dep_v")
        if self.min_return_share > 1:
            raise InvalidParameter(f"min_return_share: a share of the forward peak, at most 1, got "
                                   f"{self.min_return_share!r} (a percentage? 50% is 0.5)")
        if self.min_peak_share > 1:  # (every peak refused: every experiment failed, a sample spent on each: a trial)
            raise InvalidParameter(f"min_peak_share: a share of the CV's current span, at most 1, got "
                                   f"{self.min_peak_share!r} (a percentage? 2% is 0.02)")
        for name, most in WIDEST_V.items():  # wider than a wave, they fit or smooth away the wave itself
            if getattr(self, name) > most:
                raise InvalidParameter(f"{name}: at most {most:g} V, got {getattr(self, name)!r} (a wave's peak is "
                                       "about 0.1 V wide; millivolts? 40 mV is 0.04)")


@dataclass(frozen=True, kw_only=True)
class CVResult:
    """What one CV says about the couple. Missing quantities are None; currents are IUPAC-signed.

    ``ratio`` is |ipc / ipa|; None with both peaks found when the vertex lay too close past the forward peak for
    the return peak's current to be judged (that current is None too). ``snr`` is the strongest peak height (or,
    without a peak, the current span) over the noise sigma. Potentials are on the ``reference`` scale.
    """

    reference: str
    e_half_v: float | None
    dep_v: float | None
    epa_v: float | None
    epc_v: float | None
    ipa_a: float | None
    ipc_a: float | None
    ratio: float | None
    reversibility: Reversibility | None
    snr: float
    flags: frozenset[CVFlag]
    #: what a scan without the couple's E1/2 still says of it: (``"oxidation"`` or ``"reduction"``, ``"above"``
    #: or ``"below"``, potential): a wave still rising into a vertex lies beyond where the climb was last judged
    #: less :data:`REVERSIBLE_PEAK_PAST_HALF_V` (a reversible couple's; a slower one's E1/2 may lie a few mV
    #: further inside), one decaying from the scan's start before where the decay was first judged;
    #: :meth:`bound` reads them
    bounds: tuple[tuple[str, str, float], ...] = ()
    #: the return peak's current over the forward one's (``ratio`` for a couple oxidised first, its inverse for one
    #: reduced first), None where the ratio is not judged: how much of what the forward sweep made came back, which
    #: the flag ``chemically_irreversible`` and its message read
    return_share: float | None = None

    def on_li_scale(self, reference_offset_v: float) -> CVResult:
        """The same result with potentials converted to V vs Li/Li+ (see ``to_li_scale``)."""
        shift = {name: to_li_scale(getattr(self, name), reference_offset_v)
                 for name in ("e_half_v", "epa_v", "epc_v") if getattr(self, name) is not None}
        bounds = tuple((kind, side, to_li_scale(e, reference_offset_v)) for kind, side, e in self.bounds)
        return replace(self, reference="Li/Li+", bounds=bounds, **shift)

    def bound(self, quantity: Quantity) -> tuple[float, int] | None:
        """(potential, +1 above / -1 below) that ``quantity``'s couple lies beyond by :attr:`bounds`, on this
        result's scale; None without one, or with two that contradict each other."""
        kind = "oxidation" if quantity == "oxidation_potential" else "reduction"
        said = {(side, e) for k, side, e in self.bounds if k == kind}
        if len(said) != 1:
            return None
        side, e = said.pop()
        return e, 1 if side == "above" else -1

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (an infinite snr, from noise-free data, is stored as None)."""
        return {
            "reference": self.reference, "e_half_v": self.e_half_v, "dep_v": self.dep_v,
            "epa_v": self.epa_v, "epc_v": self.epc_v, "ipa_a": self.ipa_a, "ipc_a": self.ipc_a,
            "ratio": self.ratio, "reversibility": self.reversibility,
            "snr": self.snr if math.isfinite(self.snr) else None, "flags": sorted(self.flags),
            "bounds": [list(b) for b in self.bounds], "return_share": self.return_share,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CVResult:
        """Inverse of ``to_dict`` (a journal written before bounds or the return share were kept has none)."""
        fields = dict(data)
        fields["flags"] = frozenset(CVFlag(f) for f in data["flags"])
        fields["snr"] = math.inf if data["snr"] is None else data["snr"]
        fields["bounds"] = tuple((str(k), str(side), float(e)) for k, side, e in data.get("bounds", ()))
        fields["return_share"] = data.get("return_share")  # absent from journals written before it was kept
        return cls(**fields)


def to_li_scale(e_v: float, reference_offset_v: float) -> float:
    """Potential vs Li/Li+ from a potential measured against a reference that sits at
    ``reference_offset_v`` V vs Li/Li+: ``E_Li = E + offset``.

    Example: ferrocene in carbonate electrolytes is about 3.2 V vs Li/Li+ (:data:`FERROCENE_VS_LI_V`), so a
    couple at +0.30 V vs Fc+/Fc is at 3.50 V vs Li/Li+. Offsets depend on solvent and electrode (+/-0.3 V across
    solvents), which is why the caller supplies them instead of a built-in table.
    """
    return e_v + reference_offset_v


@dataclass(frozen=True)
class _Peak:
    """A detected peak: direction (+1 anodic, -1 cathodic), where and how strong. ``potential_v`` is the
    applied potential minus the remaining ohmic drop ``current_a * R`` (``current_a``: the total current
    there, charging included, which is what flows through the solution)."""

    direction: int
    segment: int  # position in the list of sweeps
    potential_v: float
    height_a: float  # signed current above the baseline
    prominence_a: float
    current_a: float = 0.0
    index: int = 0  # position within its sweep


#: the fewest raw points :func:`_refine_potential` fits a cubic through (4 coefficients and 2 points' worth of noise
#: to spare); fewer, at steps over 13 mV, take the parabola through the maximum and its neighbours
MIN_CUBIC_POINTS = 6


def _window(step_v: float, n_points: int, settings: CVAnalysisSettings) -> int:
    """Savitzky-Golay window in points: ``smooth_window_v`` of potential, odd, at least order + 3 and at
    most the sweep's length."""
    return min(_window_points(step_v, settings), n_points if n_points % 2 else n_points - 1)


def _window_points(step_v: float, settings: CVAnalysisSettings) -> int:
    """:func:`_window` of a sweep long enough not to cut it."""
    return max(settings.smooth_order + 3, round(settings.smooth_window_v / step_v)) | 1


#: where a reversible one-electron couple's peak lies past its E1/2 at 25 C (V): 1.109 RT/nF with n = 1 (Bard and
#: Faulkner, Electrochemical Methods, section 6.2); a slower couple's, or one seen through an uncompensated ohmic
#: drop, lies further
REVERSIBLE_PEAK_PAST_HALF_V = 0.0285


def peak_room_v(step_v: float, settings: CVAnalysisSettings | None = None, *, n_electrons: int = 1,
                temperature_k: float = NICHOLSON_TEMPERATURE_K) -> tuple[float, float]:
    """How far inside a scan's ends a couple's E1/2 must lie for :func:`analyze_cv` to find its peak there, in its
    two parts (V): where the peak of an ``n_electrons`` couple at ``temperature_k`` lies past E1/2
    (:data:`REVERSIBLE_PEAK_PAST_HALF_V` for one electron at 25 C, by :func:`dep_scale`: 14 mV for two), and the sweep
    :func:`_find_peaks` needs after a peak, one smoothing window at ``step_v`` (a peak nearer the sweep's end is
    the filter's edge effect to it). Why: a campaign whose objective reaches a scan's end loses the hits just inside
    it (``validate`` says so: orchestrator/compose.py). Simulated reversible couples at 0.02-0.5 V/s lost their
    E1/2 within 50 mV of the vertex at 2 mV steps (28.5 + 22 mV here) and within 52.5 mV at 5 mV steps (28.5 + 25)."""
    settings = settings or CVAnalysisSettings()
    return (REVERSIBLE_PEAK_PAST_HALF_V * dep_scale(temperature_k, n_electrons),
            _window_points(step_v, settings) * step_v)


def _smooth(current: np.ndarray, window: int, settings: CVAnalysisSettings) -> np.ndarray:
    """Savitzky-Golay smoothing (unsmoothed when the sweep is too short for the filter's order)."""
    if window <= settings.smooth_order:
        return current.copy()
    from scipy.signal import savgol_filter  # here, not at the top: see _find_peaks

    return savgol_filter(current, window, settings.smooth_order)


def _noise_sigma(v: Voltammogram, segments: list[Segment]) -> float:
    """Noise standard deviation from the median absolute second difference, sweep by sweep.

    For white noise the second difference has variance 6 sigma^2; the smooth signal adds little and the
    median ignores the few points where it does (peaks, vertices, charging steps).
    """
    d2 = [np.diff(v.current_a[s.index], 2) for s in segments if s.stop - s.start >= 3]
    if not d2:
        return 0.0
    values = np.concatenate(d2)
    mad = np.median(np.abs(values - np.median(values)))
    return float(1.4826 * mad / math.sqrt(6.0))


#: how near (V) a point must lie to the edge of a span the analysis takes points from (a peak fit's 40 mV, a
#: baseline's 0.20-0.35 V, ...) to be on it: those spans are whole numbers of a scan's step, so a float's last digit
#: decided whether the point on the edge was taken, and the same scan read from voltammograms.csv (potentials written
#: -0.8 where the journal holds -0.7999999999999999) gave dEp up to 2.2 mV and E1/2 up to 0.8 mV off what the run
#: journalled (a referee's re-analysis; simulated scans at 2-10 mV steps). A point on the edge is now always taken,
#: except by the peak fit, whose accuracy (tests/instruments/test_cv_analysis.py: within 0.8 mV of the true peaks at
#: 10 mV steps) was reached without it. A nanovolt: no potentiostat tells it
ON_EDGE_V = 1e-9


def _refine_potential(e: np.ndarray, i: np.ndarray, k: int, direction: int, half_width_v: float) -> float:
    """Peak potential between the samples: the maximum of a least-squares cubic through the raw points within
    ``half_width_v`` of point ``k`` (the smoothed maximum); with fewer than :data:`MIN_CUBIC_POINTS` there (a coarse
    step), the vertex of the parabola through ``k`` and its two neighbours; point ``k`` itself only when neither has a
    maximum within reach.

    Why a cubic over +/-40 mV (:class:`CVAnalysisSettings` ``peak_fit_half_width_v``): a CV peak is flat on top and
    asymmetric (a steep rise, a slow diffusional decay). A parabola through the raw points within 15 mV, as before,
    saw too little curvature against the noise at 5 mV steps (7 points): an electrochemist's trial read ferrocene's
    dEp at 53-56 mV in 5 of 8 dry-run experiments, below the 57 mV a reversible couple cannot go under
    (docs/protocols.md), and a step over 7.5 mV left it 3 points, so the peak fell back to the grid sample. Wider, a
    parabola is pulled toward the decaying side (+3 mV of dEp at +/-25 mV); a cubic follows the asymmetry. On
    simulated ferrocene scans (bench numbers in docs/lab-grade.md, "CV analysis") the cubic read dEp within
    0.1-1.1 mV of the noise-free truth at 2-10 mV steps, and at 0.9 % noise halved its scatter at 5 mV steps."""
    near = np.flatnonzero(np.abs(e - e[k]) < half_width_v - ON_EDGE_V)
    if len(near) >= MIN_CUBIC_POINTS:
        x = e[near] - e[k]
        cubic = np.polyfit(x, direction * i[near], 3)
        slope, curvature = np.polyder(cubic), np.polyder(cubic, 2)
        tops = [float(r.real) for r in np.roots(slope) if abs(r.imag) <= 1e-9 * max(1.0, abs(r.real))
                and abs(r.real) <= half_width_v and np.polyval(curvature, r.real) < 0]
        if tops:
            return float(e[k] + min(tops, key=abs))
    if 0 < k < len(e) - 1:
        before, top, after = direction * i[k - 1:k + 2]
        bend = before - 2 * top + after
        if bend < 0 and abs(shift := 0.5 * (before - after) / bend) <= 1:
            return float(e[k] + shift * (e[k + 1] - e[k - 1]) / 2)
    return float(e[k])


def _baseline_line(e: np.ndarray, i: np.ndarray, k: int, direction: int,
                   settings: CVAnalysisSettings) -> tuple[float, float]:
    """``(slope, intercept)`` of a straight line fitted before the peak at point ``k`` (in sweep direction).

    The fit uses the points between ``baseline_from_v`` and ``baseline_to_v`` before the peak; when the
    sweep starts later than that, all points from the sweep start to ``baseline_to_v`` before the peak;
    with fewer than three, the sweep's first current (a flat baseline).
    """
    before = direction * (e[k] - e)  # > 0 before the peak
    window = (before >= settings.baseline_to_v - ON_EDGE_V) & (before <= settings.baseline_from_v + ON_EDGE_V)
    if window.sum() < 3:
        window = before >= settings.baseline_to_v - ON_EDGE_V
    if window.sum() < 3:
        return 0.0, float(i[0])
    slope, intercept = np.polyfit(e[window], i[window], 1)
    return float(slope), float(intercept)


def _baseline_fitted(v: Voltammogram, peak: _Peak, settings: CVAnalysisSettings) -> bool:
    """Whether :func:`_baseline_line` had a line to fit before ``peak``, not the sweep's first current: a peak
    nearer its sweep's start than ``baseline_to_v`` stands on a baseline taken from its own wave's foot, so its
    height reads low (a chemist's trial: 14% low 80 mV inside the start, the ratio 1.19 for a reversible couple)."""
    e = v.potential_v[v.segments()[peak.segment].index]
    return int(np.count_nonzero(peak.direction * (e[peak.index] - e) >= settings.baseline_to_v - ON_EDGE_V)) >= 3


def _baseline_at(e: np.ndarray, i: np.ndarray, k: int, direction: int, settings: CVAnalysisSettings) -> float:
    """Current of :func:`_baseline_line` evaluated at the peak: right for a forward peak, whose sweep is flat
    before its wave; a return peak sits on the forward wave's decaying tail instead (:func:`_return_height`)."""
    slope, intercept = _baseline_line(e, i, k, direction, settings)
    return slope * float(e[k]) + intercept


#: the forward wave's tail that is fitted with a Cottrell decay begins this far (V) past the forward peak
DECAY_FROM_PAST_PEAK_V = 0.05
#: the vertex must lie this far (V) past the forward peak for the return peak's current to be judged: closer, the
#: fitted tail is too short to extrapolate. Simulated reversible couples at 0.1 V/s
#: (tests/instruments/test_cv_analysis.py) read 1.00 from a vertex 120 mV past the forward peak on (150 mV past
#: E1/2) to 700 mV past it; the straight baseline this replaced read 0.79-1.26 over that range
MIN_SWITCH_PAST_PEAK_V = 0.1
#: the charging current's reversal at the vertex is read on this much (V) of the return sweep after it
JUMP_SPAN_V = 0.03
#: candidate start times of the Cottrell decay, spread over the forward sweep before the fitted tail
DECAY_START_CANDIDATES = 200


def _crossed(forward: _Peak, back: _Peak, peaks: Sequence[_Peak]) -> bool:
    """Whether another couple's peak lies on the forward sweep or on the return sweep before ``back``: its wave
    then adds to the current :func:`_return_height` extrapolates (an analyte and the ferrocene standard in one
    scan), and the return peak keeps its straight baseline, as the forward one."""
    return any(p is not forward and p is not back
               and (p.segment == forward.segment or (p.segment == back.segment and p.index < back.index))
               for p in peaks)


def _return_height(v: Voltammogram, forward: _Peak, back: _Peak, settings: CVAnalysisSettings) -> float | None:
    """The signed height of ``back`` (the peak on the sweep after ``forward``'s) above the forward wave's decay
    extrapolated to it, or None when the vertex lies closer than :data:`MIN_SWITCH_PAST_PEAK_V` past the forward
    peak (not judged).

    Why not a straight baseline before the return peak, as for the forward one: the return peak sits on the
    forward wave's decaying tail, which is not straight, and the closer the vertex to the wave the shorter and
    more curved the stretch a line is fitted to: the ratio of one reversible couple read 0.79-1.26 depending on
    where the vertex sat. The standard baseline (Bard and Faulkner, section 6.5) is that decay continued in time:
    the forward sweep's current above its own straight baseline, from :data:`DECAY_FROM_PAST_PEAK_V` past the
    peak to the vertex, is fitted with ``b / sqrt(t - t0)`` (a diffusion-limited decay); on the return sweep
    the charging current has reversed, a step read as the mean misfit over its first :data:`JUMP_SPAN_V`.
    """
    segments = v.segments()
    fwd, ret = segments[forward.segment], segments[back.segment]
    e_f, i_f, t_f = v.potential_v[fwd.index], v.current_a[fwd.index], v.time_s[fwd.index]
    e_b, i_b, t_b = v.potential_v[ret.index], v.current_a[ret.index], v.time_s[ret.index]
    sign = forward.direction
    if sign * (e_f[-1] - e_f[forward.index]) < MIN_SWITCH_PAST_PEAK_V - ON_EDGE_V:
        return None
    window = _window(_step(v, fwd), len(e_f), settings)
    slope, intercept = _baseline_line(e_f, _smooth(i_f, window, settings), forward.index, sign, settings)
    tail = sign * (e_f - e_f[forward.index]) >= DECAY_FROM_PAST_PEAK_V - ON_EDGE_V
    decay, t_tail = sign * (i_f[tail] - (slope * e_f[tail] + intercept)), t_f[tail]
    best = (math.inf, 0.0, 0.0)
    for t0 in np.linspace(2 * t_f[forward.index] - t_tail[-1], t_tail[0], DECAY_START_CANDIDATES, endpoint=False):
        x = 1 / np.sqrt(t_tail - t0)
        b = float(x @ decay / (x @ x))
        misfit = float(np.sum((decay - b * x) ** 2))
        if misfit < best[0]:
            best = (misfit, float(t0), b)
    _, t0, b = best

    def continued(t: np.ndarray, e: np.ndarray) -> np.ndarray:
        return slope * e + intercept + sign * b / np.sqrt(t - t0)

    early = sign * (e_f[-1] - e_b) <= JUMP_SPAN_V + ON_EDGE_V
    early[0] = True  # a step coarser than JUMP_SPAN_V: the first point after the vertex
    jump = float(np.mean(i_b[early] - continued(t_b[early], e_b[early])))
    peak = _smooth(i_b, _window(_step(v, ret), len(e_b), settings), settings)[back.index]
    return float(peak - continued(t_b[back.index:back.index + 1], e_b[back.index:back.index + 1])[0] - jump)


def _threshold(smoothed: Sequence[np.ndarray], sigma: float, settings: CVAnalysisSettings,
               floor_a: float = 0.0) -> float:
    """The prominence a peak (or the change a wave without one) must exceed to count: ``min_peak_snr`` noise sigmas,
    ``min_peak_share`` of the largest current span of the ``smoothed`` sweeps, and ``floor_a`` (a blank's:
    :data:`BLANK_WAVE_MIN_CHARGING_SHARE`)."""
    span = max(float(np.ptp(c)) for c in smoothed)
    return max(settings.min_peak_snr * sigma, settings.min_peak_share * span, floor_a)


def _find_peaks(v: Voltammogram, segments: list[Segment], sigma: float,
                settings: CVAnalysisSettings, r_ohm: float = 0.0, floor_a: float = 0.0) -> list[_Peak]:
    """Every peak that clears the prominence threshold (:func:`_threshold`, ``floor_a`` its least), on sweeps running
    its way; potentials corrected for ``r_ohm`` of uncompensated resistance.

    Why only the peak's potential is corrected: the peak is the largest current of the sweep, and it stays the
    largest when the potential axis is replaced by ``E - i R``; its potential moves by ``i_peak R``. That is an
    approximation, not exact: the drop also lowers and broadens the wave itself (the interface no longer sees a
    linear sweep), so with a large uncompensated ``i R`` the corrected dEp still reads wide and the peak currents
    low (a chemist's trial: 500 ohm at 1 V/s, none compensated on the device, read dEp 77 mV and ip 8% low).
    Compensate most of Ru on the device (a cv step's ``ir_compensation``); this corrects what remains.
    """
    # scipy.signal takes a second or two to import; the journal and the campaign file import this module for
    # its types, and `labloop log` or `validate` should not wait for it (orchestrator/cli/commands.py)
    from scipy.signal import find_peaks

    windows = [_window(_step(v, s), s.stop - s.start + 1, settings) for s in segments]
    smoothed = [_smooth(v.current_a[s.index], w, settings) for s, w in zip(segments, windows, strict=True)]
    threshold = _threshold(smoothed, sigma, settings, floor_a)
    peaks = []
    for n, (segment, smooth, window) in enumerate(zip(segments, smoothed, windows, strict=True)):
        found, props = find_peaks(segment.direction * smooth, prominence=threshold)
        e = v.potential_v[segment.index]
        raw = v.current_a[segment.index]
        for k, prominence in zip(found, props["prominences"], strict=True):
            if not window <= k < len(smooth) - window:  # filter edge effects and post-vertex transients
                continue
            potential = _refine_potential(e, raw, int(k), segment.direction, settings.peak_fit_half_width_v)
            height = smooth[k] - _baseline_at(e, smooth, int(k), segment.direction, settings)
            total = float(smooth[k])
            peaks.append(_Peak(segment.direction, n, potential - total * r_ohm, float(height), float(prominence),
                               total, int(k)))
    return peaks


def _step(v: Voltammogram, segment: Segment) -> float:
    """Typical potential spacing of a sweep."""
    return float(np.median(np.abs(np.diff(v.potential_v[segment.index]))))


#: how far (V) a return peak may lie on the wrong side of its forward peak (dEp below zero) and still be the same
#: couple's: a surface-bound couple's dEp is ~0 and noise moves each peak by a few mV; a diffusing couple's is ~57 mV
#: or more. Two couples' peaks are further apart than this (:data:`MIN_COUPLE_SEPARATION_V` and more)
MAX_NEGATIVE_DEP_V = REVERSIBLE_PEAK_PAST_HALF_V


def _partner(main: _Peak, peaks: Sequence[_Peak], max_dep_v: float = math.inf,
             taken: Sequence[_Peak] = ()) -> _Peak | None:
    """``main``'s return peak: of the peaks of the other direction, not ``taken``, on a sweep next to ``main``'s whose
    dEp (anodic minus cathodic) lies under ``max_dep_v`` and above -:data:`MAX_NEGATIVE_DEP_V`, the nearest. Why:
    the most prominent opposite peak was taken, and two oxidations 150-450 mV apart (an EE couple, an impurity's
    wave) were paired across the waves: an E1/2 between them with dEp 199-507 mV, "quasi-reversible" or
    "irreversible", and a couple of dEp -85 mV (an electrochemist's trial). Prominence is no guide there either: the
    first of two overlapping waves is a shoulder on the second's rise, 1.6 uA of prominence against 16 uA."""
    def dep(other: _Peak) -> float:
        return (main.potential_v - other.potential_v) * main.direction

    partners = [p for p in peaks if p.direction != main.direction and abs(p.segment - main.segment) == 1
                and not any(p is t for t in taken) and -MAX_NEGATIVE_DEP_V < dep(p) < max_dep_v]
    return min(partners, key=lambda p: abs(dep(p))) if partners else None


def _pair(peaks: list[_Peak]) -> tuple[_Peak | None, _Peak | None]:
    """(anodic, cathodic): the most prominent peak and its return peak (:func:`_partner`; a slow couple's however far:
    its dEp says it is irreversible), if any."""
    if not peaks:
        return None, None
    main = max(peaks, key=lambda p: p.prominence_a)
    partner = _partner(main, peaks)
    return (main, partner) if main.direction > 0 else (partner, main)


def reversibility_criterion(settings: CVAnalysisSettings | None = None, *, rates: int = 1,
                            temperature_k: float = NICHOLSON_TEMPERATURE_K, n_electrons: int = 1) -> str:
    """The rule :func:`analyze_cv` calls a couple reversible by, in one line for whatever shows the call (the report's
    page, ``log --json``, a run's warning): ``reversible: 0 < dEp <= 68 mV ...``. Why: a
    chemist saw couples at dEp 72-77 mV (after iR correction), growing with the scan rate, called reversible with no
    cut-off said; 68 mV is where Nicholson's working curve starts to tell k0 (instruments/kinetics.py), above a
    reversible one-electron couple's 57 mV at 25 C by what a run reads a fast couple's dEp high. dEp is between peak
    potentials corrected for the resistance the potentiostat left uncompensated (zero where no EIS measured it);
    ``rates`` above 1: a lab-grade cv's, reversible only when every rate's is. dEp alone decides: the current ratio is
    the chemistry's, said apart (:func:`_classify`). At a ``temperature_k`` other than 25 C's, or for ``n_electrons``
    other than one, the dEp cut-offs are the ones the analysis applies (:func:`for_couple`), and the rule says
    the one-electron 25 C values they come from."""
    s = for_couple(settings, temperature_k, n_electrons)
    band = 1 + s.reversible_ratio_band
    every = " (an experiment's: at every scan rate)" if rates > 1 else ""
    written = settings or CVAnalysisSettings()
    # (what differs from one electron at 25 C, the factor it puts on the cut-offs), for each that does
    apart = [said for differs, said in ((temperature_k != NICHOLSON_TEMPERATURE_K, (
        f"the cell at {temperature_k - 273.15:.3g} C", "times T / 298.15 K")), (n_electrons != 1, (
        f"{n_electrons} electrons in the wave", f"over {n_electrons}"))) if differs]
    one = " for one electron" if n_electrons != 1 else ""
    warm = (f" ({', '.join(what for what, _ in apart)}: the cut-offs {1e3 * written.reversible_max_dep_v:.0f} and "
            f"{1e3 * written.irreversible_min_dep_v:.0f} mV at 25 C{one} {' '.join(f for _, f in apart)})"
            if apart else "")
    return (f"reversible: 0 < dEp <= {1e3 * s.reversible_max_dep_v:.0f} mV{every}; irreversible: no return peak, or "
            f"dEp >= {1e3 * s.irreversible_min_dep_v:.0f} mV{warm}; quasi-reversible: between (dEp from peak "
            "potentials corrected for the uncompensated iR); the return peak's share of the forward one is the "
            f"chemistry's, said apart outside {1 / band:.2f}..{band:.2f} (under {written.min_return_share:.2f}: "
            "chemically_irreversible)")


def for_couple(settings: CVAnalysisSettings | None, temperature_k: float, n_electrons: int = 1) -> CVAnalysisSettings:
    """``settings`` (None: the defaults), written for a one-electron couple at 25 C, as they are for an
    ``n_electrons`` couple at ``temperature_k``: the dEp cut-offs (``reversible_max_dep_v``, ``irreversible_min_dep_v``)
    times T / (298.15 K n), and the peak fit's span (``peak_fit_half_width_v``) over n. Why: a couple's dEp is set by
    n F dEp / (R T) (a reversible one's 2.22 RT/nF: 57 mV at 25 C, 64 mV at 60 C, 28.5 mV for two electrons), and
    Nicholson's k0 reads a warm cell's dEp so (instruments/kinetics.py); the class did not, so a couple at 60 C with
    dEp 70 mV was called quasi-reversible beside a k0 given only as a lower bound, "fast (Nernstian) electron transfer
    at this rate". A two-electron wave is half as wide, and a cubic over a one-electron peak's +/-40 mV read its dEp
    36 mV for 29 (a simulated reversible couple at 1 mV steps; 29.5 over +/-20 mV)."""
    require_positive("temperature_k", temperature_k)
    require_positive("n_electrons", n_electrons)
    s = settings or CVAnalysisSettings()
    if temperature_k == NICHOLSON_TEMPERATURE_K and n_electrons == 1:
        return s
    scale = dep_scale(temperature_k, n_electrons)
    return replace(s, reversible_max_dep_v=s.reversible_max_dep_v * scale,
                   irreversible_min_dep_v=s.irreversible_min_dep_v * scale,
                   peak_fit_half_width_v=s.peak_fit_half_width_v / n_electrons)


def dep_scale(temperature_k: float, n_electrons: int = 1) -> float:
    """What a one-electron couple's dEp at 25 C is multiplied by for ``n_electrons`` at ``temperature_k``: T / (298.15
    K n), as what sets dEp is n F dEp / (R T)."""
    return temperature_k / NICHOLSON_TEMPERATURE_K / n_electrons


def _classify(dep: float | None, ratio: float | None, settings: CVAnalysisSettings, *,
              judged: bool = True) -> Reversibility:
    """The electron transfer's reversibility class, from the peak separation alone (no return peak where the scan
    judged it: irreversible). Why not the current ratio too: it is the chemistry's, not the electron transfer's (an
    electrochemist's review: a couple of dEp 61 mV whose return peak was 72% of the forward one, what the scan made
    reacting on, was called quasi-reversible beside a k0 bound of "fast (Nernstian) electron transfer", and its D
    warned of as a slow couple's); a ratio outside the band is said apart (:func:`unequal_return`), one under
    ``min_return_share`` flags ``chemically_irreversible``."""
    if dep is None or (ratio is None and judged) or dep >= settings.irreversible_min_dep_v:
        return "irreversible"
    return "reversible" if 0 < dep <= settings.reversible_max_dep_v else "quasi-reversible"


def unequal_return(result: CVResult, settings: CVAnalysisSettings | None = None) -> str | None:
    """What to say of a couple whose return peak, judged, is not the forward one's within ``reversible_ratio_band``
    (and not so small that ``chemically_irreversible`` says it), or None: a smaller one is a follow-up reaction
    taking part of what the scan made, a larger one a product adsorbed or another wave under the return peak. Its
    E1/2 stands; the class (:func:`_classify`) judges the electron transfer by dEp alone."""
    s = settings or CVAnalysisSettings()
    share = result.return_share
    if (share is None or share <= 0 or result.reversibility in (None, "irreversible")
            or CVFlag.CHEMICALLY_IRREVERSIBLE in result.flags
            or abs(math.log(share)) <= math.log1p(s.reversible_ratio_band)):
        return None
    if share < 1:
        return (f"the return peak is {share:.0%} of the forward one: part of what the scan made reacts on within the "
                "scan (a follow-up reaction)")
    return (f"the return peak is {share:.0%} of the forward one: more comes back than the scan made (a product "
            "adsorbed, or another wave under the return peak)")


def analyze_cv(v: Voltammogram, settings: CVAnalysisSettings | None = None, *, ru_ohm: float = 0.0,
               temperature_k: float = NICHOLSON_TEMPERATURE_K, n_electrons: int = 1) -> CVResult:
    """Measure E1/2, dEp, peak currents and reversibility of ``v`` and flag what makes it doubtful.

    ``ru_ohm`` is the cell's uncompensated resistance (e.g. :func:`labloop.instruments.impedance.fit_ru`);
    what the potentiostat did not compensate during the scan (``ru_ohm - v.params.ir_comp_ohm``) is
    corrected here (:func:`remaining_resistance`). ``temperature_k``: the cell's, and ``n_electrons``: the couple's
    (the protocol's cv says it), which the dEp cut-offs of the reversibility class and the peak fit's span scale with
    (:func:`for_couple`).
    """
    settings = for_couple(settings, temperature_k, n_electrons)
    segments = [s for s in v.segments() if s.stop - s.start >= 2]
    flags: set[CVFlag] = {CVFlag.OVERLOAD} if v.any_overload else set()
    sigma = _noise_sigma(v, segments)
    peaks = _find_peaks(v, segments, sigma, settings, remaining_resistance(v, ru_ohm)) if segments else []
    anodic, cathodic = _pair(peaks)
    rising = _rising_into_vertex(v, segments, sigma, settings) if segments else {}
    bounds = []
    if anodic is None and 1 in rising:
        bounds.append(("oxidation", "above", rising[1] - REVERSIBLE_PEAK_PAST_HALF_V))
    if cathodic is None and -1 in rising:
        bounds.append(("reduction", "below", rising[-1] + REVERSIBLE_PEAK_PAST_HALF_V))
    if bounds:
        flags.add(CVFlag.BEYOND_WINDOW)
    start = _decaying_from_start(v, segments, sigma, settings) if segments else None
    if (anodic is None or cathodic is None) and start is not None:
        flags.add(CVFlag.AT_SCAN_START)
        # the first sweep began on the tail of a wave of its own direction, whose peak it had passed
        bounds.append(("oxidation", "below", start) if segments[0].direction > 0 else ("reduction", "above", start))
    elif (forward := _forward_of_lone(anodic, cathodic, segments)) is not None and \
            (end := _return_cut_at_end(v, segments, forward, sigma, settings)) is not None:
        flags.add(CVFlag.AT_SCAN_START)
        # the return peak lies beyond the scan's end, which is its start: E1/2 lies within a reversible peak's
        # distance past where the climb was judged, on the side of the start
        bounds.append(("oxidation", "below", end + REVERSIBLE_PEAK_PAST_HALF_V) if segments[0].direction > 0
                      else ("reduction", "above", end - REVERSIBLE_PEAK_PAST_HALF_V))
    if bounds and not peaks and inverted_peak_v(v, settings) is not None:
        # a scan whose current looks inverted (the driver's sign, not the molecule) bounds nothing: the mirrored tail
        # of its wave climbs into the vertex, and a bound from it taught the model a potential beyond the window
        bounds = []
    return replace(_result(v, anodic, cathodic, sigma, flags, settings, others=peaks), bounds=tuple(bounds))


def inverted_peak_v(v: Voltammogram, settings: CVAnalysisSettings | None = None) -> float | None:
    """Where (V, on ``v``'s reference scale) an anodic sweep of ``v`` carries a cathodic-signed peak, the anodic peak of
    ``v`` with its current's sign turned (the mirror image), when ``v`` itself has no peak of either sign where it
    belongs; else None. The mirrored peak must clear the prominence threshold a real one must (:func:`_find_peaks`, the
    same noise and current-span terms, which the sign does not change), so a flat, noisy or empty scan, whose
    mirror shows no more than it does, never reads as inverted.

    Why: a driver reporting anodic current negative (against IUPAC, docs/drivers.md) made every experiment fail
    ``no_peak``, "the potential lies beyond it, or the sample gave no signal", until ten in a row stopped the run, and
    nothing pointed at the driver (a plug-in author's trial); a run's no_peak reason names this instead
    (orchestrator/loop/runner.py)."""
    settings = settings or CVAnalysisSettings()
    segments = [s for s in v.segments() if s.stop - s.start >= 2]
    if not segments:
        return None
    sigma = _noise_sigma(v, segments)
    if _find_peaks(v, segments, sigma, settings):
        return None
    anodic, _ = _pair(_find_peaks(replace(v, current_a=-v.current_a), segments, sigma, settings))
    return None if anodic is None else anodic.potential_v


#: how far before a vertex the current's climb into it is measured (V)
VERTEX_RISE_SPAN_V = 0.1


def _rising_into_vertex(v: Voltammogram, segments: list[Segment], sigma: float,
                        settings: CVAnalysisSettings) -> dict[int, float]:
    """Directions (+1 anodic, -1 cathodic) of the sweeps whose current still climbs, by more than a peak's
    prominence threshold, over the last :data:`VERTEX_RISE_SPAN_V` before they turn, each with the potential
    where the climb was last judged (clear of the smoothing's edge): the wave's peak lies beyond it, so a
    missing peak there is not an irreversible couple."""
    smoothed, threshold = _smoothed_sweeps(v, segments, sigma, settings)
    rising: dict[int, float] = {}
    for segment, smooth in zip(segments[:-1], smoothed, strict=False):  # the last sweep ends the scan, not at a vertex
        if (e_end := _climbing_at_end(v, segment, smooth, threshold, settings)) is not None:
            # of two sweeps in one direction (a second cycle), the one that turned first bounds less
            known = rising.get(segment.direction)
            weaker = min if segment.direction > 0 else max
            rising[segment.direction] = e_end if known is None else weaker(known, e_end)
    return rising


def _climbing_at_end(v: Voltammogram, segment: Segment, smooth: np.ndarray, threshold: float,
                     settings: CVAnalysisSettings) -> float | None:
    """Where ``segment``'s current was last judged (clear of the smoothing's edge) if it still climbs, in the
    sweep's direction and by more than ``threshold``, over its last :data:`VERTEX_RISE_SPAN_V`; else None: a
    wave's peak lies beyond the sweep's end."""
    e = v.potential_v[segment.index]
    window = _window(_step(v, segment), len(e), settings)
    end = len(e) - 1 - window  # clear of the smoothing's edge
    start = int(np.searchsorted(segment.direction * e, segment.direction * e[end] - VERTEX_RISE_SPAN_V - ON_EDGE_V))
    return float(e[end]) if 0 <= start < end and segment.direction * (smooth[end] - smooth[start]) > threshold \
        else None


def _forward_of_lone(anodic: _Peak | None, cathodic: _Peak | None, segments: list[Segment]) -> _Peak | None:
    """The peak found on the first sweep when it is the pair's only one and the last sweep runs the other way
    (whose peak, the return one, is missing), else None."""
    lone = anodic if cathodic is None else cathodic if anodic is None else None
    if lone is None or lone.segment != 0 or segments[-1].direction == lone.direction:
        return None
    return lone


def _return_cut_at_end(v: Voltammogram, segments: list[Segment], forward: _Peak, sigma: float,
                       settings: CVAnalysisSettings) -> float | None:
    """Where the last sweep's current was last judged if the scan ends where it began and that current still
    climbs into the end, beyond the first sweep's current there by more than half ``forward``'s height (the
    peak found on the first sweep): the return wave of a couple lying just inside the scan's start is cut by the
    scan's end, which without this read as an irreversible couple, a failure of the molecule (a chemist's
    trial: E1/2 50 mV inside the start). An irreversible couple's return sweep also falls into the end (its
    forward wave's tail decays), but only to the charging current, not by a wave's height past the first sweep."""
    first, last = segments[0], segments[-1]
    if len(segments) < 2 or abs(v.potential_v[last.stop] - v.potential_v[first.start]) > 2 * _step(v, last):
        return None  # the scan ends elsewhere than it began: a wave climbing into that end is another couple's
    smoothed, threshold = _smoothed_sweeps(v, [first, last], sigma, settings)
    e_end = _climbing_at_end(v, last, smoothed[1], threshold, settings)
    if e_end is None:
        return None
    e_first, e_last = v.potential_v[first.index], v.potential_v[last.index]
    order = np.argsort(e_first)
    on_first = float(np.interp(e_end, e_first[order], smoothed[0][order]))
    on_last = float(np.interp(e_end, e_last[::-1], smoothed[1][::-1]) if last.direction < 0
                    else np.interp(e_end, e_last, smoothed[1]))
    return e_end if last.direction * (on_last - on_first) > 0.5 * abs(forward.height_a) else None


def _decaying_from_start(v: Voltammogram, segments: list[Segment], sigma: float,
                         settings: CVAnalysisSettings) -> float | None:
    """Where the first sweep's current, falling in magnitude by more than a peak's prominence threshold over its
    first :data:`VERTEX_RISE_SPAN_V`, was first judged (clear of the smoothing's edge), or None when it does not
    fall so: the scan started on a wave's diffusion tail (the couple lies at or before the start), where a quiet
    start carries only a steady charging current."""
    smoothed, threshold = _smoothed_sweeps(v, segments, sigma, settings)
    segment, smooth = segments[0], smoothed[0]
    e = v.potential_v[segment.index]
    first = _window(_step(v, segment), len(e), settings)  # clear of the smoothing's edge
    if first >= len(e):
        return None
    later = int(np.searchsorted(segment.direction * e, segment.direction * e[first] + VERTEX_RISE_SPAN_V - ON_EDGE_V))
    return float(e[first]) if later < len(e) and abs(smooth[first]) - abs(smooth[later]) > threshold else None


def _smoothed_sweeps(v: Voltammogram, segments: list[Segment], sigma: float, settings: CVAnalysisSettings,
                     floor_a: float = 0.0) -> tuple[list[np.ndarray], float]:
    """Each sweep's smoothed current, and the change a wave must exceed to count: a peak's prominence
    threshold (:func:`_threshold`, as :func:`_find_peaks` sets it), so a wave without a peak is held to the same
    standard."""
    smoothed = [_smooth(v.current_a[s.index], _window(_step(v, s), s.stop - s.start + 1, settings), settings)
                for s in segments]
    return smoothed, _threshold(smoothed, sigma, settings, floor_a)


#: the share of a reduction wave's largest current at which its onset is read (:func:`_reduction_waves`)
WAVE_ONSET_SHARE = 0.1


def _reduction_waves(v: Voltammogram, segments: list[Segment], sigma: float,
                     settings: CVAnalysisSettings, floor_a: float = 0.0) -> list[tuple[float, float]]:
    """``(onset_v, largest_a)`` of the reduction wave on each cathodic sweep that carries one, peaked or still
    climbing into the vertex: its current falls below the sweep's starting current by ``largest_a``, more than
    a peak's prominence threshold (``floor_a`` its least), and ``onset_v`` is where the fall first reaches
    :data:`WAVE_ONSET_SHARE` of that. Why the onset and not the peak: a slow wave (O2's) may peak beyond the vertex,
    and where it sets in is what a chemist reads off such a scan."""
    smoothed, threshold = _smoothed_sweeps(v, segments, sigma, settings, floor_a)
    waves = []
    for segment, smooth in zip(segments, smoothed, strict=True):
        if segment.direction > 0:
            continue
        window = _window(_step(v, segment), len(smooth), settings)
        fall = smooth[window] - smooth[window:]  # clear of the smoothing's edge at the sweep's start
        largest = float(fall.max()) if len(fall) else 0.0
        if largest > threshold:
            onset = window + int(np.argmax(fall >= WAVE_ONSET_SHARE * largest))
            waves.append((float(v.potential_v[segment.index][onset]), largest))
    return waves


def remaining_resistance(v: Voltammogram, ru_ohm: float) -> float:
    """The resistance whose drop is still in ``v``: the cell's ``ru_ohm`` minus what the potentiostat
    compensated (``v.params.ir_comp_ohm``); negative (overcompensated) is returned as it is, so the
    correction undoes it."""
    require_finite("ru_ohm", ru_ohm)
    return ru_ohm - v.params.ir_comp_ohm if ru_ohm > 0 else 0.0


def _result(v: Voltammogram, anodic: _Peak | None, cathodic: _Peak | None, sigma: float, flags: set[CVFlag],
            settings: CVAnalysisSettings, others: Sequence[_Peak] = ()) -> CVResult:
    """The CVResult of one pair of peaks (either may be missing); ``others``: every peak of the CV (the pair's
    own among them), which says whether the return peak's baseline is this couple's decay alone."""
    both = anodic is not None and cathodic is not None
    ipa = anodic.height_a if anodic else None
    ipc = cathodic.height_a if cathodic else None
    judged = True
    forward: _Peak | None = None
    if anodic is not None and cathodic is not None and abs(anodic.segment - cathodic.segment) == 1:
        forward, back = sorted((anodic, cathodic), key=lambda p: p.segment)
        if not _crossed(forward, back, others):
            height = _return_height(v, forward, back, settings)
            judged = height is not None
            ipa, ipc = (height, ipc) if back is anodic else (ipa, height)
        if not judged:
            log.info("CV analysis: the vertex lies less than %.0f mV past the forward peak at %+.3f V: the return "
                     "peak's current and the ratio are not judged", MIN_SWITCH_PAST_PEAK_V * 1000, forward.potential_v)
        elif not _baseline_fitted(v, forward, settings):
            judged = False
            log.info("CV analysis: the forward peak at %+.3f V lies less than %.0f mV past the scan's start, too close "
                     "for its baseline: the ratio is not judged", forward.potential_v, settings.baseline_to_v * 1000)
    dep = anodic.potential_v - cathodic.potential_v if anodic is not None and cathodic is not None else None
    ratio = abs(ipc / ipa) if judged and ipa and ipc is not None else None
    reversibility: Reversibility | None = None
    outside = flags & {CVFlag.BEYOND_WINDOW, CVFlag.AT_SCAN_START}  # a result about the window, not the couple
    if anodic is None and cathodic is None:
        if not outside:
            flags.add(CVFlag.NO_PEAK)
        signal = float(np.ptp(v.current_a))
    else:
        # a couple the window cut (its wave beyond a vertex, or decaying from the start) is not judged: one peak
        # of it, e.g. the return wave of what the forward sweep made near the vertex, said "irreversible" (a trial)
        reversibility = None if outside else _classify(dep, ratio, settings, judged=judged)
        signal = max(abs(h) for h in (ipa, ipc) if h is not None)
    if reversibility == "irreversible" and not outside:
        flags.add(CVFlag.IRREVERSIBLE)
    returned = None if not ratio or forward is None else ratio if forward is anodic else 1 / ratio
    sweeps = {p.segment for p in (anodic, cathodic) if p is not None}
    if (returned is not None and returned < settings.min_return_share and reversibility != "irreversible"
            and not outside and all(p is anodic or p is cathodic for p in others if p.segment in sweeps)):
        # only where the pair's two sweeps hold no other wave (a scan's later cycles may): beside another couple's
        # wave (a cell that holds two samples, no rinse between) the return peak's baseline carries that wave's
        # current, and ratios of 0.14-0.45 were read for stable molecules
        flags.add(CVFlag.CHEMICALLY_IRREVERSIBLE)
    snr = signal / sigma if sigma > 0 else math.inf
    if snr < settings.noisy_snr:
        flags.add(CVFlag.NOISY)
    result = CVResult(
        reference=v.reference,
        e_half_v=(anodic.potential_v + cathodic.potential_v) / 2 if both else None,
        dep_v=dep, epa_v=anodic.potential_v if anodic else None,
        epc_v=cathodic.potential_v if cathodic else None, ipa_a=ipa, ipc_a=ipc, ratio=ratio,
        reversibility=reversibility, snr=snr, flags=frozenset(flags), return_share=returned,
    )
    log.debug("CV analysis: %s", result)
    return result


#: peak separation of a reversible one-electron couple at 25 C (V): the best a CV can show
IDEAL_DEP_V = 0.059
#: the narrowest dEp (V, at 25 C) a one-electron couple diffusing to the electrode reads before :func:`overcorrected`
#: says so: 2.218 RT/F = 57.0 mV (Nicholson and Shain, Anal. Chem. 36 (1964) 706), less 7 mV for the reading's own
#: scatter (a ferrocene wave at 0.9 % noise and 5 mV steps: 1.4 mV sd, tests/instruments/test_cv_analysis.py)
MIN_DIFFUSING_DEP_V = 0.050
#: 2.218 RT/F at 25 C (V): the dEp of a reversible one-electron couple scanned well past its wave
NERNSTIAN_DEP_V = 0.057


#: the most electrons one wave of a cv may take (the protocol's ``n_electrons``): two is a quinone's or a viologen's
#: merged pair; more in one concerted wave is not seen in the organic couples labloop screens
MOST_ELECTRONS_IN_A_WAVE = 3


def diffusing_dep_v(temperature_k: float = NICHOLSON_TEMPERATURE_K, n_electrons: int = 1) -> tuple[float, float]:
    """(the narrowest dEp a couple diffusing to the electrode reads before a run says so, a reversible couple's dEp) at
    ``temperature_k`` for ``n_electrons`` in the wave (V): :data:`MIN_DIFFUSING_DEP_V` and :data:`NERNSTIAN_DEP_V`
    times T / (298.15 K n), as dEp scales (:func:`for_couple`)."""
    scale = dep_scale(temperature_k, n_electrons)
    return MIN_DIFFUSING_DEP_V * scale, NERNSTIAN_DEP_V * scale


def overcorrected(result: CVResult, temperature_k: float = NICHOLSON_TEMPERATURE_K) -> str | None:
    """Why ``result``'s couple, a one-electron standard's (ferrocene's), shows a dEp no diffusing couple can, in one
    phrase, or None: under :func:`diffusing_dep_v`'s. Why: ferrocene in the cell is the lab's check of its ohmic-drop
    correction, and its dEp was reported bare (an electrochemist's trial): narrower than a diffusing couple's, the
    drop was corrected by more than it is (an eis Ru reading high, too large a share compensated) or the standard
    adsorbs, and every dEp of the experiment reads low, every k0 high."""
    narrowest, nernstian = diffusing_dep_v(temperature_k)
    if result.dep_v is None or result.dep_v >= narrowest:
        return None
    return (f"its dEp reads {1e3 * result.dep_v:.1f} mV, under the {1e3 * nernstian:.0f} mV a "
            f"one-electron couple diffusing to the electrode shows at {temperature_k - 273.15:.3g} C: the ohmic drop "
            "is corrected by more than it is (the eis step's Ru reads high, or ir_compensation takes too large a share "
            "of it), the standard adsorbs, or a couple within about 0.6 V of it (the analyte's) pulls its peaks "
            "together; the analyte's dEp then reads low and its k0 high (E1/2 is unaffected)")


def more_electrons(result: CVResult, temperature_k: float = NICHOLSON_TEMPERATURE_K, n_electrons: int = 1, *,
                   dep_as: Callable[[int], float | None] | None = None) -> str | None:
    """Why the analyte's couple in ``result``, analysed as ``n_electrons``', shows a dEp no such couple diffusing to
    the electrode can, in one phrase, or None (:func:`diffusing_dep_v`). Why: a two-electron wave (dEp 29 mV at 25 C)
    analysed as one electron's read D 8 times high and its class by a one-electron couple's cut-offs, unsaid; the
    narrow dEp is what shows it, beside an ohmic drop over-corrected (:func:`overcorrected` on a standard) and
    adsorption, which narrow it too. The count it names is the fewest electrons above ``n_electrons`` whose own
    analysis of the scan (``dep_as(k)``: dEp with the peak fit and cut-offs for k, :func:`for_couple`; without it,
    ``result``'s dEp) reads no narrower than such a couple can: read with one electron's wider fit, a three-electron
    wave's dEp (19.6 mV) read 32.5 mV and was named two, and a slow two-electron one's 39.4 mV none (a reviewer's
    probes)."""
    narrowest, nernstian = diffusing_dep_v(temperature_k, n_electrons)
    if result.dep_v is None or result.dep_v <= 0 or result.dep_v >= narrowest:
        return None
    electrons = "a one-electron couple" if n_electrons == 1 else f"a {n_electrons}-electron couple"

    def fits(k: int) -> bool:
        dep = result.dep_v if dep_as is None else dep_as(k)
        return dep is not None and dep >= diffusing_dep_v(temperature_k, k)[0]

    guess = next((k for k in range(n_electrons + 1, MOST_ELECTRONS_IN_A_WAVE + 1) if fits(k)), None)
    more = "" if guess is None else (
        f"{guess} electrons in one wave (then say n_electrons: {guess} in the cv step; as it is, D reads "
        f"{(guess / n_electrons) ** 3:.3g} times high and the reversibility class is judged by {electrons}'s dEp), ")
    return (f"its dEp reads {1e3 * result.dep_v:.1f} mV, under the {1e3 * nernstian:.0f} mV {electrons} diffusing to "
            f"the electrode shows at {temperature_k - 273.15:.3g} C: {more}the ohmic drop corrected by more than it "
            "is (a standard's dEp says so too), or a couple adsorbed on the electrode")


#: signal to noise at which the quality's noise term is one half
HALF_QUALITY_SNR = 20.0


def measurement_quality(result: CVResult) -> float:
    """How clean a voltammogram is, 0 (no usable peak pair) to 1 (reversible and noise-free): what condition
    planning maximises (planners/conditions.py).

    The product of three terms in [0, 1]: the peak current ratio's closeness to one (``min(r, 1/r)``), the
    peak separation's closeness to the reversible 59 mV (``0.059 / max(dEp, 0.059)``), and the signal to
    noise (``snr / (snr + 20)``). Why a product: a voltammogram is only as good as its worst aspect. A ratio the
    scan could not judge (None beside a peak pair: the vertex too close to the wave) counts as one: the window,
    not the conditions planned, left it unjudged.
    """
    if result.e_half_v is None or result.dep_v is None or result.ratio == 0:
        return 0.0
    ratio = 1.0 if result.ratio is None else min(result.ratio, 1 / result.ratio)
    separation = IDEAL_DEP_V / max(result.dep_v, IDEAL_DEP_V)
    noise = 1.0 if math.isinf(result.snr) else result.snr / (result.snr + HALF_QUALITY_SNR)
    return ratio * separation * noise


# -- several couples, the internal standard ----------------------------------------------------------------
#: E1/2 of ferrocene/ferrocenium vs Li/Li+ in lithium-ion carbonate electrolytes (V). Source: C. O. Laoire,
#: E. Plichta, M. Hendrickson, S. Mukerjee, K. M. Abraham, "Electrochemical studies of ferrocene in a lithium
#: ion conducting organic carbonate electrolyte", Electrochim. Acta 54 (2009) 6560-6564 (1 M LiPF6 in
#: EC:EMC 1:1, Fc+/Fc reversible at about 3.2 V vs Li/Li+). It holds for that electrolyte family only: the
#: Li/Li+ potential itself moves with the solvent (E. J. Calvo, N. Mozhzhukhina, J. Electrochem. Soc. 164
#: (2017) A2295), so another solvent needs its own measured value (``ferrocene_vs_li_v`` arguments).
FERROCENE_VS_LI_V = 3.20
#: two couples whose E1/2 are closer than this (V) cannot be told apart reliably in one CV
MIN_COUPLE_SEPARATION_V = 0.12
#: an analyte this close to ferrocene (V) has its wave merge with the standard's in one CV: simulated at 0.1 V/s
#: (tests/protocols/test_cv_lab_grade.py), couples 150 mV apart gave one merged couple or two at the same E1/2,
#: 250 mV apart two clean ones
STANDARD_OVERLAP_V = 0.2


def analyze_couples(v: Voltammogram, settings: CVAnalysisSettings | None = None, *, ru_ohm: float = 0.0,
                    min_wave_a: float = 0.0, temperature_k: float = NICHOLSON_TEMPERATURE_K) -> list[CVResult]:
    """One CVResult per redox couple seen in ``v`` (e.g. the analyte and the ferrocene standard), by
    falling E1/2; ohmic drop and temperature as in :func:`analyze_cv`; a peak whose prominence is under ``min_wave_a``
    (A) is not one (a blank's floor, :data:`BLANK_WAVE_MIN_CHARGING_SHARE`).

    Pairing: peaks are taken by falling prominence; each is paired with the nearest unused opposite peak
    that can be its return (:func:`_partner`: a neighbouring sweep, dEp under ``irreversible_min_dep_v`` and
    not below zero by more than noise). A peak left without a
    partner is a couple of its own (an irreversible wave, e.g. dissolved O2). Noise and overload flags
    apply to every couple.
    """
    settings = for_couple(settings, temperature_k)
    segments = [s for s in v.segments() if s.stop - s.start >= 2]
    sigma = _noise_sigma(v, segments)
    peaks = _find_peaks(v, segments, sigma, settings, remaining_resistance(v, ru_ohm), min_wave_a) if segments else []
    used: list[_Peak] = []
    results = []
    for main in sorted(peaks, key=lambda p: -p.prominence_a):
        if any(main is u for u in used):
            continue
        partner = _partner(main, peaks, settings.irreversible_min_dep_v, taken=used)
        used += [main] if partner is None else [main, partner]
        anodic, cathodic = (main, partner) if main.direction > 0 else (partner, main)
        flags: set[CVFlag] = {CVFlag.OVERLOAD} if v.any_overload else set()
        results.append(_result(v, anodic, cathodic, sigma, flags, settings, others=peaks))
    if not results:
        results.append(_result(v, None, None, sigma, {CVFlag.OVERLOAD} if v.any_overload else set(), settings))
    return sorted(results, key=lambda r: math.inf if (e := couple_position(r)) is None else -e)


def couple_position(result: CVResult) -> float | None:
    """Where a couple sits: its E1/2, or its lone peak's potential (None without any peak)."""
    return next((value for value in (result.e_half_v, result.epa_v, result.epc_v) if value is not None), None)


@dataclass(frozen=True, kw_only=True)
class ReferencedResult:
    """The analyte measured against the ferrocene standard in the same scan.

    ``e_vs_fc_v`` = E1/2(analyte) - E1/2(Fc), both on the reference electrode's scale of that scan, so a
    drift of the reference electrode cancels; ``e_vs_li_v`` adds :data:`FERROCENE_VS_LI_V` (or the value
    given). None where the analyte or the standard has no E1/2; ``flags`` carries ``no_standard`` then, and
    ``problem`` says why in a chemist's words (a flag alone left an analyte next to ferrocene unexplained), unless
    the standard was found and the analyte had no couple of its own to reference (no wave before the standard, or a
    failed one): that failure is the analyte's, which its own analysis flags, and ``problem`` is None. Why: a
    redox-inactive molecule, or one whose wave lay beyond the window, failed ``no_standard`` beside a cause saying
    ferrocene was there (a chemist's trial). ``standard_expected_v`` is where the standard was looked for, on the
    reference electrode's scale as every potential here.
    """

    analyte: CVResult
    standard: CVResult | None
    e_vs_fc_v: float | None
    e_vs_li_v: float | None
    ferrocene_vs_li_v: float
    flags: frozenset[CVFlag]
    problem: str | None = None
    #: the standard added (ferrocene, or another) and where its couple sits vs Fc+/Fc
    standard_name: str = "ferrocene"
    standard_vs_fc_v: float = 0.0
    standard_expected_v: float | None = None

    @property
    def standard_found_v(self) -> float | None:
        """Where the standard's couple was found (V vs the reference electrode), None where it was not (``problem``
        says why)."""
        return None if self.problem is not None or self.standard is None else self.standard.e_half_v

    def standard_said(self) -> str | None:
        """``ferrocene found at -0.030 V vs the reference (expected at +0.000 V)``, or None where it was not found."""
        found = self.standard_found_v
        if found is None:
            return None
        expected = "" if self.standard_expected_v is None else f" (expected at {self.standard_expected_v:+.3f} V)"
        return f"{self.standard_name} found at {found:+.3f} V vs the reference{expected}"

    def to_dict(self) -> dict[str, Any]:
        return {"analyte": self.analyte.to_dict(), "standard": self.standard.to_dict() if self.standard else None,
                "e_vs_fc_v": self.e_vs_fc_v, "e_vs_li_v": self.e_vs_li_v,
                "ferrocene_vs_li_v": self.ferrocene_vs_li_v, "flags": sorted(self.flags), "problem": self.problem,
                "standard_name": self.standard_name, "standard_vs_fc_v": self.standard_vs_fc_v,
                "standard_expected_v": self.standard_expected_v}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferencedResult:
        """Inverse of ``to_dict``: a journalled experiment's result, read back to say why it failed as the run that
        measured it would have (orchestrator/loop/runner.py ``Runner._finish_measured``)."""
        standard = data.get("standard")
        return cls(**{**data, "analyte": CVResult.from_dict(data["analyte"]),
                      "standard": None if standard is None else CVResult.from_dict(standard),
                      "flags": frozenset(CVFlag(f) for f in data["flags"])})


def reference_to_ferrocene(couples: list[CVResult], analyte_hint_v: float | None, standard_hint_v: float, *,
                           before_v: Sequence[float] = (),
                           ferrocene_vs_li_v: float = FERROCENE_VS_LI_V, standard_name: str = "ferrocene",
                           standard_vs_fc_v: float = 0.0, analyte_failed: bool = False) -> ReferencedResult:
    """Pick the analyte and the standard's couple among ``couples`` (from :func:`analyze_couples`) and put
    the analyte on the Fc+/Fc and Li/Li+ scales. The standard is ferrocene, or ``standard_name`` sitting
    ``standard_vs_fc_v`` from Fc+/Fc (decamethylferrocene, cobaltocenium: clear of an analyte near ferrocene), so
    E vs Fc+/Fc is E(analyte) - E(standard) + ``standard_vs_fc_v``; "ferrocene" below is whichever was added.

    Ferrocene is the couple that is new: none of the positions seen before the standard went in (``before_v``,
    the couples of the scan without it, and ``analyte_hint_v``) lies within :data:`MIN_COUPLE_SEPARATION_V` of it;
    of several new ones, the closest to ``standard_hint_v``, where ferrocene is expected on this reference
    scale. The analyte is the other couple closest to ``analyte_hint_v``, where the analyte was seen before the
    standard (its E1/2, or its lone peak), within :data:`MIN_COUPLE_SEPARATION_V` of it. Why not "the couple
    nearer a guess": with the analyte's wave missing before the standard, a guess in the window's middle sat
    nearer ferrocene than the analyte, and the two were swapped (an analyte at 1.58 V vs Li/Li+ read 4.81 V).
    ``analyte_hint_v`` None (no peak of the analyte before the standard), no new couple, or none where the
    analyte was: no potential; ``no_standard``, and ``problem`` says why, unless the analyte had no couple of its own
    to reference (``analyte_hint_v`` None, or ``analyte_failed``: the cv before the standard failed it, its analysis
    flagged or without E1/2) and the standard's couple stands clear (:func:`_standard_clear`): then the standard is
    fine and the failure the analyte's, which its own analysis flags (no_peak, beyond_window, irreversible...).
    """
    paired = [(c, c.e_half_v) for c in couples if c.e_half_v is not None]
    seen = [*before_v, *(() if analyte_hint_v is None else (analyte_hint_v,))]
    new = [(c, e) for c, e in paired if all(abs(e - s) >= MIN_COUPLE_SEPARATION_V for s in seen)]
    standard = min(new, key=lambda ce: abs(ce[1] - standard_hint_v), default=(None, None))[0]
    near = [] if analyte_hint_v is None else [(c, abs(e - analyte_hint_v)) for c, e in paired if c is not standard]
    analyte = min(((c, d) for c, d in near if d < MIN_COUPLE_SEPARATION_V), key=lambda cd: cd[1],
                  default=(None, None))[0]
    flags = set(analyte.flags) if analyte is not None else {CVFlag.NO_PEAK}
    named = {"ferrocene_vs_li_v": ferrocene_vs_li_v, "standard_name": standard_name,
             "standard_vs_fc_v": standard_vs_fc_v, "standard_expected_v": standard_hint_v}
    if analyte is None or standard is None or abs(analyte.e_half_v - standard.e_half_v) < MIN_COUPLE_SEPARATION_V:
        fallback = analyte or next((c for c in couples if c is not standard), couples[0] if couples else None)
        assert fallback is not None  # analyze_couples returns at least one result
        if (analyte_hint_v is None or analyte_failed) and _standard_clear(
                standard, [c for c, _ in paired], analyte_hint_v, standard_hint_v):
            return ReferencedResult(analyte=fallback, standard=standard, e_vs_fc_v=None, e_vs_li_v=None,
                                    flags=frozenset(flags - {CVFlag.NO_STANDARD}), **named)
        flags.add(CVFlag.NO_STANDARD)
        problem = _standard_problem([c for c, _ in paired], analyte, standard, analyte_hint_v, standard_hint_v,
                                    standard_name)
        return ReferencedResult(analyte=fallback, standard=standard, e_vs_fc_v=None, e_vs_li_v=None,
                                flags=frozenset(flags), problem=problem, **named)
    e_vs_fc = analyte.e_half_v - standard.e_half_v + standard_vs_fc_v  # type: ignore[operator]
    return ReferencedResult(analyte=analyte, standard=standard, e_vs_fc_v=e_vs_fc,
                            e_vs_li_v=e_vs_fc + ferrocene_vs_li_v, flags=frozenset(flags), **named)


def _standard_clear(standard: CVResult | None, paired: list[CVResult], analyte_hint_v: float | None,
                    standard_hint_v: float) -> bool:
    """Whether ``standard``, the new couple of the scan with the standard nearest where it was expected
    (``standard_hint_v``), is the standard beyond doubt when the analyte has no couple to tell it by: within
    :data:`STANDARD_OVERLAP_V` of where it was expected, and no other couple of the scan (``paired``) nor the
    analyte's lone peak (``analyte_hint_v``) within that of it, so nothing merged with it or could be it."""
    if standard is None or standard.e_half_v is None or abs(standard.e_half_v - standard_hint_v) >= STANDARD_OVERLAP_V:
        return False
    others = [c.e_half_v for c in paired if c is not standard and c.e_half_v is not None]
    others += [] if analyte_hint_v is None else [analyte_hint_v]
    return all(abs(e - standard.e_half_v) >= STANDARD_OVERLAP_V for e in others)


def _standard_problem(paired: list[CVResult], analyte: CVResult | None, standard: CVResult | None,
                      analyte_hint_v: float | None, standard_hint_v: float, name: str = "ferrocene") -> str:
    """Why :func:`reference_to_ferrocene` found no standard to reference to (``paired``: the couples of the scan
    with the standard ``name``, which the messages name), most telling reason first."""
    if analyte_hint_v is not None and abs(analyte_hint_v - standard_hint_v) < STANDARD_OVERLAP_V:
        return (f"the analyte's wave at {analyte_hint_v:+.3f} V vs the reference overlaps {name}'s (expected at "
                f"{standard_hint_v:+.3f} V; within {STANDARD_OVERLAP_V * 1000:.0f} mV): the standard cannot be told "
                "apart; use another internal standard (add_standard's standard and standard_vs_fc_v: "
                "decamethylferrocene or cobaltocenium sit clear of ferrocene) or measure without it")
    if not paired:
        return "no couple with a pair of peaks in the scan with the standard"
    found = ", ".join(f"{c.e_half_v:+.3f}" for c in paired)
    lone = standard.e_half_v if standard is not None and paired == [standard] else None  # ferrocene's alone
    if lone is not None and abs(lone - standard_hint_v) < STANDARD_OVERLAP_V:
        return (f"one couple only in the scan with the standard, at {lone:+.3f} V vs the reference, where {name} was "
                f"expected ({standard_hint_v:+.3f} V): most likely {name}'s, the analyte's wave not found there")
    if analyte_hint_v is None:
        return (f"the cv before the standard showed no peak of the analyte, so which couple of the scan with the "
                f"standard (at {found} V vs the reference; {name} expected at {standard_hint_v:+.3f} V) is the "
                "analyte's cannot be told")
    if analyte is None:
        return (f"no couple in the scan with the standard (at {found} V vs the reference) where the analyte was seen "
                f"before it ({analyte_hint_v:+.3f} V)")
    if standard is None and paired == [analyte]:
        return (f"no second couple besides the analyte's (at {analyte.e_half_v:+.3f} V vs the reference) in the scan "
                f"with the standard; {name} was expected at {standard_hint_v:+.3f} V")
    if standard is None:
        return (f"no couple in the scan with the standard (at {found} V vs the reference) that was not there before "
                f"it: {name}'s, expected at {standard_hint_v:+.3f} V, not found")
    return (f"the couples at {analyte.e_half_v:+.3f} V and {standard.e_half_v:+.3f} V vs the reference are closer "
            f"than {MIN_COUPLE_SEPARATION_V * 1000:.0f} mV: which is {name} cannot be told")


# -- several scan rates ------------------------------------------------------------------------------------
#: the diffusion coefficients (cm2/s) a molecule in a liquid electrolyte has, with room either way: small organics
#: in acetonitrile or carbonates diffuse at 1e-6 to 5e-5 cm2/s, a polymer or a viscous ionic liquid's slower. A D
#: beyond them says the concentration or the electrode area it was computed with is off (an ``analyte_mm: 1000`` gave
#: 1.1e-11 cm2/s and a k0 from it: a chemist's trial), not the molecule: :func:`implausible_diffusion`
PLAUSIBLE_DIFFUSION_CM2_S = (1e-7, 1e-4)
#: the temperature :data:`RANDLES_SEVCIK` holds for (K): D from it assumes the cell at 25 C (D scales with T: in a cell
#: 10 K warmer it reads ~3% low), and is recorded with it
RANDLES_SEVCIK_TEMPERATURE_K = 298.15
#: Randles-Sevcik constant at 25 C: ip = 0.4463 F sqrt(F / (R T)) n^1.5 A C sqrt(D v) (A, cm^2, mol/cm^3, cm^2/s,
#: V/s), 2.6865e5 from CODATA's F and R (PROTOCOLS.md rounds it to 2.69e5, which read D 0.26% low: a referee's check)
RANDLES_SEVCIK = 0.4463 * FARADAY * math.sqrt(FARADAY / (GAS_CONSTANT * RANDLES_SEVCIK_TEMPERATURE_K))
#: electrons per molecule D is computed for unless told (a one-electron couple; D goes with 1/n^3)
RANDLES_SEVCIK_N_ELECTRONS = 1


@dataclass(frozen=True)
class DiffusionEstimate:
    """D from the Randles-Sevcik slope of ip against sqrt(v): per peak direction, and their mean.

    ``r_squared`` says how straight the line is (diffusion control gives a line through the origin; an
    adsorbed species would give ip proportional to v instead)."""

    diffusion_cm2_s: float
    anodic_cm2_s: float | None
    cathodic_cm2_s: float | None
    r_squared: float
    scan_rates_v_s: tuple[float, ...]
    #: what the equation assumed, kept with D so a reviewer can recompute it (neither was written anywhere: a
    #: chemist's trial): the electrons per molecule and the temperature :data:`RANDLES_SEVCIK` holds for
    n_electrons: int = RANDLES_SEVCIK_N_ELECTRONS
    temperature_k: float = RANDLES_SEVCIK_TEMPERATURE_K
    #: the slope of log |ip| against log v of the peak(s) D came from: 0.5 for a diffusing couple, 1 for a
    #: surface-bound one (:func:`implausible_diffusion`)
    rate_exponent: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"diffusion_cm2_s": self.diffusion_cm2_s, "anodic_cm2_s": self.anodic_cm2_s,
                "cathodic_cm2_s": self.cathodic_cm2_s, "r_squared": self.r_squared,
                "scan_rates_v_s": list(self.scan_rates_v_s), "n_electrons": self.n_electrons,
                "temperature_k": self.temperature_k, "rate_exponent": self.rate_exponent}


#: a rate exponent (log |ip| against log v) above this is a surface-bound couple's (1), not a diffusing one's (0.5):
#: halfway between
MAX_DIFFUSION_RATE_EXPONENT = 0.75


def randles_sevcik_diffusion(scan_rates_v_s: list[float], results: list[CVResult], *, area_cm2: float,
                             conc_mm: float, n_electrons: int = RANDLES_SEVCIK_N_ELECTRONS,
                             forward: Literal["anodic", "cathodic"] | None = None,
                             temperature_k: float = RANDLES_SEVCIK_TEMPERATURE_K) -> DiffusionEstimate:
    """Diffusion coefficient from the peak currents of CVs at several scan rates.

    The slope ``s`` of |ip| against sqrt(v), fitted through the origin, gives
    ``D = (s / (2.6865e5 n^1.5 A C))^2`` (Randles-Sevcik at 25 C, :data:`RANDLES_SEVCIK_TEMPERATURE_K`; at another
    ``temperature_k`` the constant goes with 1/sqrt(T), so D with T; the estimate records both with ``n_electrons``;
    a reversible couple; a quasi-reversible one reads low, and one irreversible at every rate is refused with
    :class:`InvalidParameter`). ``forward`` names the first sweep's peak: its baseline is
    the flat current before the wave, while the return peak sits on the forward wave's decaying tail, which a
    straight baseline only approximates; with ``forward`` given, D is the forward peak's, otherwise the mean of both.

    The fit takes the rates at which the couple is reversible, where two or more different ones are, and every rate
    otherwise (:func:`reversible_rates`); the estimate's ``scan_rates_v_s`` are the rates it took. Why: a couple slow
    at the fast rates read D at 0.84-0.89 of the simulated one from all of 0.1-1 V/s (0.77-0.80 up to 2 V/s), though
    its slow rates were reversible and tell D as the equation means (an electrochemist's trial).
    """
    require_positive("area_cm2", area_cm2)
    require_positive("conc_mm", conc_mm)
    if len(scan_rates_v_s) != len(results) or len(results) < 2:
        raise InvalidParameter("scan_rates_v_s: need at least two scan rates, one result each")
    if len(set(scan_rates_v_s)) < 2:  # one point of the line, however often: a slope through it, r^2 meaningless
        raise InvalidParameter(f"scan_rates_v_s: need at least two different scan rates, got "
                               f"{', '.join(f'{rate:g}' for rate in scan_rates_v_s)} V/s")
    if all(r.reversibility == "irreversible" for r in results):
        # the reversible couple's equation: an electrochemist's audit read D at 0.47 of the truth for a slow couple,
        # irreversible at every rate, written to the report without a word (the irreversible equation needs alpha)
        deps = ", ".join("no return peak" if r.dep_v is None else f"{1e3 * r.dep_v:.0f} mV" for r in results)
        raise InvalidParameter(f"irreversible at every scan rate (dEp {deps}): Randles-Sevcik's equation holds for a "
                               "reversible couple, an irreversible one's needs its transfer coefficient; D not "
                               "computed")
    taken = reversible_rates(scan_rates_v_s, results)
    scan_rates_v_s, results = [scan_rates_v_s[k] for k in taken], [results[k] for k in taken]
    root = np.sqrt(np.asarray(scan_rates_v_s, dtype=float))
    require_positive("temperature_k", temperature_k)
    constant = RANDLES_SEVCIK * math.sqrt(RANDLES_SEVCIK_TEMPERATURE_K / temperature_k)  # 0.4463 F sqrt(F / (R T))
    factor = constant * n_electrons**1.5 * area_cm2 * conc_mm * 1e-6

    def fit(currents: list[float | None]) -> tuple[float | None, float, float | None]:
        """D, r^2 of the line through the origin, and the exponent of v in |ip| (None where a current is 0)."""
        if any(c is None for c in currents):
            return None, 0.0, None
        y = np.abs(np.asarray(currents, dtype=float))
        slope = float(root @ y / (root @ root))
        residual = float(np.sum((y - slope * root) ** 2))
        total = float(np.sum((y - y.mean()) ** 2)) or 1e-300
        exponent = float(np.polyfit(np.log(root**2), np.log(y), 1)[0]) if np.all(y > 0) else None
        return (slope / factor) ** 2, 1 - residual / total, exponent

    anodic, r2a, ea = fit([r.ipa_a for r in results])
    cathodic, r2c, ec = fit([r.ipc_a for r in results])
    chosen = {"anodic": [(anodic, r2a, ea)], "cathodic": [(cathodic, r2c, ec)]}.get(
        forward or "", [(anodic, r2a, ea), (cathodic, r2c, ec)])
    found = [(d, r, e) for d, r, e in chosen if d is not None]
    if not found:
        raise InvalidParameter(f"the {forward or 'anodic or cathodic'} peak current is missing at one or "
                               f"more scan rates, and the Randles-Sevcik fit needs it at every rate")
    exponents = [e for _, _, e in found if e is not None]
    return DiffusionEstimate(float(np.mean([d for d, _, _ in found])), anodic, cathodic, min(r for _, r, _ in found),
                             tuple(float(x) for x in scan_rates_v_s), n_electrons, temperature_k,
                             float(np.mean(exponents)) if exponents else None)


def reversible_rates(scan_rates_v_s: Sequence[float], results: Sequence[CVResult]) -> list[int]:
    """The indices of the scans :func:`randles_sevcik_diffusion` fits: those whose couple is ``reversible``, when they
    hold two or more different rates; else all of them (the run then warns that D reads low: protocols/executor.py)."""
    reversible = [k for k, result in enumerate(results) if result.reversibility == "reversible"]
    return reversible if len({scan_rates_v_s[k] for k in reversible}) >= 2 else list(range(len(results)))


def implausible_diffusion(estimate: DiffusionEstimate, conc_mm: float, area_cm2: float) -> str | None:
    """Why ``estimate`` (computed with ``conc_mm`` and ``area_cm2``) is no molecule's D, in one phrase, or None: peak
    currents that grow with v faster than :data:`MAX_DIFFUSION_RATE_EXPONENT` (a surface-bound couple's grow as v:
    an adsorbed wave read D 8.1e-8 cm2/s, kept, an electrochemist's trial), a D beyond
    :data:`PLAUSIBLE_DIFFUSION_CM2_S`, or peak currents that fit a line through the origin worse than their mean
    does (r^2 below 0: they do not rise with sqrt(v), as an overloaded or distorted scan's do)."""
    low, high = PLAUSIBLE_DIFFUSION_CM2_S
    exponent = estimate.rate_exponent
    if exponent is not None and exponent > MAX_DIFFUSION_RATE_EXPONENT:  # before the range: such a D can lie in it
        return (f"the peak currents grow as v^{exponent:.2f}, not as sqrt(v): a surface-bound (adsorbed) couple, "
                "whose peaks say nothing of D; not kept")
    if not low <= estimate.diffusion_cm2_s <= high:
        return (f"D {estimate.diffusion_cm2_s:.2e} cm2/s from the Randles-Sevcik slope lies beyond the {low:g} to "
                f"{high:g} cm2/s of a molecule in solution: check the analyte's concentration ({conc_mm:g} mM as "
                f"used) and the electrode area ({area_cm2:g} cm2); not kept")
    if estimate.r_squared < 0:
        return (f"the peak currents do not rise with sqrt(scan rate) (r^2 {estimate.r_squared:.2f}): D "
                f"{estimate.diffusion_cm2_s:.2e} cm2/s from them is not kept; check the scans for overload or "
                "distortion")
    return None


# -- the blank ---------------------------------------------------------------------------------------------
#: where the reduction wave of dissolved O2 sets in, in lithium-salt organic electrolytes (V vs Li/Li+, the scale
#: of :data:`FERROCENE_VS_LI_V`). [infer] O2 + Li+ + e- -> LiO2 begins at about 2.5-2.7 V vs Li/Li+ (the
#: discharge plateau of Li-O2 cells, about 2.7 V), later on a slow electrode or at a fast scan; the band leaves
#: room for that and for a reference electrode some tens of mV off its nominal offset. Free superoxide (a
#: tetraalkylammonium salt, no Li+) reduces about 0.5 V lower (E0' -0.60 V vs NHE in DMF, Sawyer): such an
#: electrolyte needs its own band (``oxygen_onset_vs_li_v``; a campaign's ``cell.oxygen_onset_v``).
OXYGEN_ONSET_VS_LI_V = (2.2, 2.8)
#: a blank's peak or reduction wave is a wave (O2's, a contaminant's) only when it reaches this share of the blank's
#: double-layer charging current (:func:`_charging_current`), besides the noise sigmas any peak must clear. Why: a
#: flat blank has no wave to set a size against, and the prominence of its largest noise wiggle is the whole sweep's
#: noise range (the lowest point either side of it), 4 noise sigmas at the median and over the 5 sigmas of
#: :class:`CVAnalysisSettings` in about 1 blank in 100 (simulated blanks of examples/lab-grade.yaml, 0.2 % noise:
#: 1.6 nA, 1.1 % of the 141 nA charging current, at the most over 400 seeds), so a dry run stopped for an O2 wave of
#: 1.0 nA and a contamination of 0.96 nA that were not there. 5 % (7 nA there) is well clear of that noise and still
#: far below what spoils a sample's scan, whose 1 mM analyte peaks at some 19 uA: 2 uM of leftover analyte (0.2 %
#: carried over) makes a wave of 40-110 nA, O2 a purge left at 1 % of air saturation (0.02 mM) one of some 400 nA,
#: both caught (tests/instruments/test_cv_analysis.py)
BLANK_WAVE_MIN_CHARGING_SHARE = 0.05


@dataclass(frozen=True)
class BlankResult:
    """What a CV of the electrolyte alone says about the cell: its largest current, and ``oxygen`` (a reduction
    wave setting in where O2 reduces, or an unpaired one) or ``contaminated`` (an oxidation wave that is not O2's
    product's, or more current than ``limit_a`` outside the oxygen wave). ``oxygen_v`` is where the O2 wave sets
    in (or its lone peak), on the voltammogram's scale, and ``oxygen_a`` its height (its largest, on any sweep);
    ``contamination_v`` is where a contaminated blank shows it: its largest oxidation wave that is not O2's
    product's (the peak's potential; ``contamination_wave_a`` its height), or, without one, where its largest current
    flowed (``contamination_wave_a`` None). Why: the message a person reads names the wave to look for ("the blank is
    contaminated, largest current 3.1e-07 A" did not say where), and the journal keeps them with the blank."""

    max_current_a: float
    limit_a: float
    flags: frozenset[CVFlag]
    oxygen_v: float | None = None
    oxygen_a: float | None = None
    contamination_v: float | None = None
    contamination_wave_a: float | None = None

    @property
    def clean(self) -> bool:
        return CVFlag.CONTAMINATED not in self.flags

    def to_dict(self) -> dict[str, Any]:
        return {"max_current_a": self.max_current_a, "limit_a": self.limit_a, "flags": sorted(self.flags),
                "oxygen_v": self.oxygen_v, "oxygen_a": self.oxygen_a, "contamination_v": self.contamination_v,
                "contamination_wave_a": self.contamination_wave_a}


def _charging_current(v: Voltammogram, segments: list[Segment]) -> float:
    """The blank's double-layer charging current (A): half the gap between the median current of its rising
    sweeps and that of its falling ones, 0 without both. Why the gap: the charging current (C_dl x area x scan rate)
    flips sign with the sweep's direction, a background both sweeps share (a leak, an offset) does not, and the
    median passes over a wave that takes up less than half the sweeps."""
    rising = [v.current_a[s.index] for s in segments if s.direction > 0]
    falling = [v.current_a[s.index] for s in segments if s.direction < 0]
    if not rising or not falling:
        return 0.0
    return abs(float(np.median(np.concatenate(rising))) - float(np.median(np.concatenate(falling)))) / 2


def analyze_blank(v: Voltammogram, limit_a: float, settings: CVAnalysisSettings | None = None, *,
                  reference_offset_v: float | None = None,
                  oxygen_onset_vs_li_v: tuple[float, float] = OXYGEN_ONSET_VS_LI_V) -> BlankResult:
    """Judge a blank: ``oxygen`` when O2's reduction wave is there (purge, then judge the blank again),
    ``contaminated`` when something else oxidises (an anodic peak that is not O2's product's re-oxidation) or,
    in a blank without O2, |current| exceeds ``limit_a``.

    O2's wave is a reduction wave that sets in within ``oxygen_onset_vs_li_v`` (on the voltammogram's scale
    through ``reference_offset_v``, where its reference sits vs Li/Li+; without it, not looked for), peaked or
    still climbing into the vertex, or any lone reduction peak. An anodic peak weaker than O2's wave, alone or
    paired with a reduction peak at or beyond where O2's wave set in, is its product's re-oxidation and excused.

    A peak or wave counts only when it reaches :data:`BLANK_WAVE_MIN_CHARGING_SHARE` of the blank's charging
    current: the noise of a flat blank is not a wave.

    Why these two: leftover analyte or a fouled electrode shows up as waves or excess current in plain
    electrolyte and spoils every later E1/2, so the protocol stops or cleans; dissolved O2 reduces in a slow
    wave of its own, whose product comes back weaker if at all on the return sweep, and is cured by a purge.
    Why by where it sets in: an O2 wave that peaks beyond the blank's vertex has no reduction peak, and its
    product's return then read as an oxidation wave, so an unpurged cell was judged ``contaminated``.
    """
    require_positive("limit_a", limit_a)
    settings = settings or CVAnalysisSettings()
    segments = [s for s in v.segments() if s.stop - s.start >= 2]
    floor_a = BLANK_WAVE_MIN_CHARGING_SHARE * _charging_current(v, segments)
    couples = analyze_couples(v, settings, min_wave_a=floor_a)
    lone = [c for c in couples if c.epc_v is not None and c.epa_v is None]
    waves = []
    if reference_offset_v is not None:
        low, high = (e - reference_offset_v for e in oxygen_onset_vs_li_v)
        waves = [(onset, current) for onset, current in
                 (_reduction_waves(v, segments, _noise_sigma(v, segments), settings, floor_a) if segments else [])
                 if low <= onset <= high]
    flags: set[CVFlag] = {CVFlag.OXYGEN} if lone or waves else set()
    o2_current = max([abs(c.ipc_a) for c in lone if c.ipc_a is not None] + [current for _, current in waves],
                     default=0.0)

    def o2_product(c: CVResult) -> bool:
        """Whether the anodic peak of ``c`` is the re-oxidation of what O2's wave produced."""
        of_o2 = c.epc_v is None or any(c.epc_v <= onset for onset, _ in waves)
        return of_o2 and abs(c.ipa_a or 0.0) < o2_current

    largest = int(np.argmax(np.abs(v.current_a)))
    max_current_a = float(abs(v.current_a[largest]))
    where: tuple[float, float | None] | None = None  # the contamination's potential, and its wave's height
    if oxidised := [(c.epa_v, abs(c.ipa_a or 0.0)) for c in couples if c.epa_v is not None and not o2_product(c)]:
        flags.add(CVFlag.CONTAMINATED)
        where = max(oxidised, key=lambda wave: wave[1])
    # the current criterion needs an O2-free blank: O2's wave and its product's return swamp any limit
    if CVFlag.OXYGEN not in flags and max_current_a > limit_a:
        flags.add(CVFlag.CONTAMINATED)
        where = where or (float(v.potential_v[largest]), None)
    oxygen_v = waves[0][0] if waves else lone[0].epc_v if lone else None
    return BlankResult(max_current_a, limit_a, frozenset(flags), oxygen_v, o2_current if oxygen_v is not None else None,
                       *(where or (None, None)))
