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
5. refine each peak potential with a least-squares parabola through the raw points near the maximum;
6. measure peak currents above a straight baseline fitted on the sweep before the peak.
The noise level is estimated from second differences (robust to the smooth signal underneath).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Literal

import numpy as np
from scipy.signal import find_peaks, savgol_filter

from labloop.core.errors import InvalidParameter
from labloop.instruments.voltammogram import Segment, Voltammogram, require_positive

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


@dataclass(frozen=True, kw_only=True)
class CVAnalysisSettings:
    """Knobs of ``analyze_cv``; potentials in V. The defaults suit 0.01-1 V/s CVs of 1-5 mM analytes."""

    smooth_window_v: float = 0.021  # Savitzky-Golay window span (21 points at 1 mV)
    smooth_order: int = 2
    peak_fit_half_width_v: float = 0.015  # parabola through the raw points within this of the maximum
    baseline_from_v: float = 0.35  # baseline fitted from this far before the peak ...
    baseline_to_v: float = 0.20  # ... to this far before it (faradaic foot < 0.2% of ip)
    min_peak_snr: float = 5.0  # a peak's prominence must exceed this many noise sigmas ...
    min_peak_share: float = 0.02  # ... and this share of the current span of the CV
    noisy_snr: float = 20.0  # strongest peak height / noise sigma below this -> flag "noisy"
    reversible_max_dep_v: float = 0.080
    reversible_ratio_band: float = 0.25  # reversible when |ln(ipc/ipa)| <= ln(1 + band)
    irreversible_min_dep_v: float = 0.200

    def __post_init__(self) -> None:
        for name in ("smooth_window_v", "peak_fit_half_width_v", "baseline_from_v", "baseline_to_v",
                     "min_peak_snr", "noisy_snr", "reversible_max_dep_v", "reversible_ratio_band",
                     "irreversible_min_dep_v"):
            require_positive(name, getattr(self, name))
        require_positive("min_peak_share", self.min_peak_share)
        if self.smooth_order not in (1, 2, 3, 4):
            raise InvalidParameter(f"smooth_order: must be 1-4, got {self.smooth_order!r}")
        if self.baseline_to_v >= self.baseline_from_v:
            raise InvalidParameter("baseline_to_v: must be smaller than baseline_from_v")
        if self.irreversible_min_dep_v <= self.reversible_max_dep_v:
            raise InvalidParameter("irreversible_min_dep_v: must exceed reversible_max_dep_v")


@dataclass(frozen=True, kw_only=True)
class CVResult:
    """What one CV says about the couple. Missing quantities are None; currents are IUPAC-signed.

    ``ratio`` is |ipc / ipa|. ``snr`` is the strongest peak height (or, without a peak, the current
    span) over the noise sigma. Potentials are on the ``reference`` scale.
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

    def on_li_scale(self, reference_offset_v: float) -> CVResult:
        """The same result with potentials converted to V vs Li/Li+ (see ``to_li_scale``)."""
        shift = {name: to_li_scale(getattr(self, name), reference_offset_v)
                 for name in ("e_half_v", "epa_v", "epc_v") if getattr(self, name) is not None}
        return replace(self, reference="Li/Li+", **shift)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (an infinite snr, from noise-free data, is stored as None)."""
        return {
            "reference": self.reference, "e_half_v": self.e_half_v, "dep_v": self.dep_v,
            "epa_v": self.epa_v, "epc_v": self.epc_v, "ipa_a": self.ipa_a, "ipc_a": self.ipc_a,
            "ratio": self.ratio, "reversibility": self.reversibility,
            "snr": self.snr if math.isfinite(self.snr) else None, "flags": sorted(self.flags),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CVResult:
        """Inverse of ``to_dict``."""
        fields = dict(data)
        fields["flags"] = frozenset(CVFlag(f) for f in data["flags"])
        fields["snr"] = math.inf if data["snr"] is None else data["snr"]
        return cls(**fields)


def to_li_scale(e_v: float, reference_offset_v: float) -> float:
    """Potential vs Li/Li+ from a potential measured against a reference that sits at
    ``reference_offset_v`` V vs Li/Li+: ``E_Li = E + offset``.

    Example: ferrocene in carbonate electrolytes is about 3.2 V vs Li/Li+ (docs/protocols.md, "Potential
    scales"), so a couple at +0.30 V vs Fc/Fc+ is at 3.50 V vs Li/Li+. Offsets depend on solvent and
    electrode (+/-0.3 V across solvents), which is why the caller supplies them instead of a built-in table.
    """
    return e_v + reference_offset_v


@dataclass(frozen=True)
class _Peak:
    """A detected peak: direction (+1 anodic, -1 cathodic), where and how strong."""

    direction: int
    segment: int  # position in the list of sweeps
    potential_v: float
    height_a: float  # signed current above the baseline
    prominence_a: float


def _window(step_v: float, n_points: int, settings: CVAnalysisSettings) -> int:
    """Savitzky-Golay window in points: ``smooth_window_v`` of potential, odd, at least order + 3 and at
    most the sweep's length."""
    window = max(settings.smooth_order + 3, round(settings.smooth_window_v / step_v)) | 1
    return min(window, n_points if n_points % 2 else n_points - 1)


def _smooth(current: np.ndarray, window: int, settings: CVAnalysisSettings) -> np.ndarray:
    """Savitzky-Golay smoothing (unsmoothed when the sweep is too short for the filter's order)."""
    if window <= settings.smooth_order:
        return current.copy()
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


def _refine_potential(e: np.ndarray, i: np.ndarray, k: int, direction: int, half_width_v: float) -> float:
    """Peak potential from a least-squares parabola through the raw points within ``half_width_v`` of
    point ``k``; falls back to point ``k`` if the parabola has no maximum inside that window."""
    near = np.abs(e - e[k]) <= half_width_v
    if near.sum() < 5:
        return float(e[k])
    x = e[near] - e[k]
    a, b, _ = np.polyfit(x, direction * i[near], 2)
    if a >= 0:
        return float(e[k])
    top = -b / (2 * a)
    return float(e[k] + top) if abs(top) <= half_width_v else float(e[k])


def _baseline_at(e: np.ndarray, i: np.ndarray, k: int, direction: int, settings: CVAnalysisSettings) -> float:
    """Current of a straight line fitted before the peak (in sweep direction), evaluated at the peak.

    The fit uses the points between ``baseline_from_v`` and ``baseline_to_v`` before the peak; when the
    sweep starts later than that, all points from the sweep start to ``baseline_to_v`` before the peak;
    with fewer than three, the sweep's first current (a flat baseline).
    """
    before = direction * (e[k] - e)  # > 0 before the peak
    window = (before >= settings.baseline_to_v) & (before <= settings.baseline_from_v)
    if window.sum() < 3:
        window = before >= settings.baseline_to_v
    if window.sum() < 3:
        return float(i[0])
    slope, intercept = np.polyfit(e[window], i[window], 1)
    return float(slope * e[k] + intercept)


def _find_peaks(v: Voltammogram, segments: list[Segment], sigma: float,
                settings: CVAnalysisSettings) -> list[_Peak]:
    """Every peak that clears the prominence threshold, on sweeps running its way."""
    windows = [_window(_step(v, s), s.stop - s.start + 1, settings) for s in segments]
    smoothed = [_smooth(v.current_a[s.index], w, settings) for s, w in zip(segments, windows, strict=True)]
    span = max(float(np.ptp(c)) for c in smoothed)
    threshold = max(settings.min_peak_snr * sigma, settings.min_peak_share * span)
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
            peaks.append(_Peak(segment.direction, n, potential, float(height), float(prominence)))
    return peaks


def _step(v: Voltammogram, segment: Segment) -> float:
    """Typical potential spacing of a sweep."""
    return float(np.median(np.abs(np.diff(v.potential_v[segment.index]))))


def _pair(peaks: list[_Peak]) -> tuple[_Peak | None, _Peak | None]:
    """(anodic, cathodic): the most prominent peak and the most prominent opposite one next to it."""
    if not peaks:
        return None, None
    main = max(peaks, key=lambda p: p.prominence_a)
    partners = [p for p in peaks if p.direction != main.direction and abs(p.segment - main.segment) == 1]
    partner = max(partners, key=lambda p: p.prominence_a) if partners else None
    return (main, partner) if main.direction > 0 else (partner, main)


def _classify(dep: float | None, ratio: float | None, settings: CVAnalysisSettings) -> Reversibility:
    """Reversibility class from peak separation and current ratio (no return peak: irreversible)."""
    if dep is None or ratio is None or dep >= settings.irreversible_min_dep_v:
        return "irreversible"
    ratio_ok = ratio > 0 and abs(math.log(ratio)) <= math.log1p(settings.reversible_ratio_band)
    return "reversible" if 0 < dep <= settings.reversible_max_dep_v and ratio_ok else "quasi-reversible"


def analyze_cv(v: Voltammogram, settings: CVAnalysisSettings | None = None) -> CVResult:
    """Measure E1/2, dEp, peak currents and reversibility of ``v`` and flag what makes it doubtful."""
    settings = settings or CVAnalysisSettings()
    segments = [s for s in v.segments() if s.stop - s.start >= 2]
    flags: set[CVFlag] = {CVFlag.OVERLOAD} if v.any_overload else set()
    sigma = _noise_sigma(v, segments)
    anodic, cathodic = _pair(_find_peaks(v, segments, sigma, settings)) if segments else (None, None)
    ipa = anodic.height_a if anodic else None
    ipc = cathodic.height_a if cathodic else None
    both = anodic is not None and cathodic is not None
    dep = anodic.potential_v - cathodic.potential_v if both else None
    ratio = abs(ipc / ipa) if both and ipa != 0 else None
    reversibility: Reversibility | None = None
    if anodic is None and cathodic is None:
        flags.add(CVFlag.NO_PEAK)
        signal = float(np.ptp(v.current_a))
    else:
        reversibility = _classify(dep, ratio, settings)
        signal = max(abs(p.height_a) for p in (anodic, cathodic) if p is not None)
    if reversibility == "irreversible":
        flags.add(CVFlag.IRREVERSIBLE)
    snr = signal / sigma if sigma > 0 else math.inf
    if snr < settings.noisy_snr:
        flags.add(CVFlag.NOISY)
    result = CVResult(
        reference=v.reference,
        e_half_v=(anodic.potential_v + cathodic.potential_v) / 2 if both else None,
        dep_v=dep, epa_v=anodic.potential_v if anodic else None,
        epc_v=cathodic.potential_v if cathodic else None, ipa_a=ipa, ipc_a=ipc, ratio=ratio,
        reversibility=reversibility, snr=snr, flags=frozenset(flags),
    )
    log.debug("CV analysis: %s", result)
    return result


#: peak separation of a reversible one-electron couple at 25 C (V): the best a CV can show
IDEAL_DEP_V = 0.059
#: signal to noise at which the quality's noise term is one half
HALF_QUALITY_SNR = 20.0


def measurement_quality(result: CVResult) -> float:
    """How clean a voltammogram is, 0 (no usable peak pair) to 1 (reversible and noise-free): what condition
    planning maximises (planners/conditions.py).

    The product of three terms in [0, 1]: the peak current ratio's closeness to one (``min(r, 1/r)``), the
    peak separation's closeness to the reversible 59 mV (``0.059 / max(dEp, 0.059)``), and the signal to
    noise (``snr / (snr + 20)``). Why a product: a voltammogram is only as good as its worst aspect.
    """
    if result.e_half_v is None or result.dep_v is None or not result.ratio:
        return 0.0
    ratio = min(result.ratio, 1 / result.ratio)
    separation = IDEAL_DEP_V / max(result.dep_v, IDEAL_DEP_V)
    noise = 1.0 if math.isinf(result.snr) else result.snr / (result.snr + HALF_QUALITY_SNR)
    return ratio * separation * noise
