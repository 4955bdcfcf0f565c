"""Electrochemical impedance: the sweep asked for, the spectrum measured, and the solution resistance in it.

Why: the uncompensated (solution) resistance Ru shifts every peak of a CV by ``i * Ru``; at 1000 ohm and
60 uA that is 60 mV, as much as the effects a campaign tries to resolve. Automated CV platforms therefore
measure Ru by impedance before the CV, compensate most of it on the potentiostat and correct the rest in
the analysis (:func:`labloop.instruments.cv_analysis.analyze_cv` with ``ru_ohm``: it corrects the
:func:`~labloop.instruments.cv_analysis.remaining_resistance`). This module holds the value
types the driver (:meth:`labloop.instruments.emstat.EmStatPotentiostat.run_eis`), the emulator and the
journal share, and :func:`fit_ru`.

Conventions: frequencies are swept from ``f_high_hz`` down to ``f_low_hz`` (as MethodSCRIPT's
``meas_loop_eis`` does), log-spaced; ``Z = Z' + j Z''`` in ohm with the capacitive part negative
(``Z'' < 0``), as PalmSens reports ``cc`` (Z real) and ``cd`` (Z imaginary).
"""

from __future__ import annotations

import logging
import math
import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from labloop.core.errors import InvalidParameter
from labloop.instruments.voltammogram import require_finite, require_positive

log = logging.getLogger(__name__)

#: frequency range of the EmStat Pico's impedance analyser (Hz), from PalmSens' Pico specification
PICO_FREQUENCY_RANGE_HZ = (0.016, 200e3)
#: largest AC amplitude the sweep may apply (V): beyond this the response is no longer linear [infer]
MAX_AC_AMPLITUDE_V = 0.25
#: the fit of Ru uses the highest-frequency share of the points (at least MIN_FIT_POINTS)
HIGH_FREQUENCY_SHARE = 0.5
MIN_FIT_POINTS = 5
#: an impedance point takes this many periods of its frequency, but no less than EIS_MIN_POINT_S [infer]
EIS_CYCLES = 3
EIS_MIN_POINT_S = 0.05


def eis_point_seconds(frequency_hz: float) -> float:
    """Device time one impedance point takes at ``frequency_hz``: what the emulator spends and what the
    driver's deadlines allow for."""
    return max(EIS_MIN_POINT_S, EIS_CYCLES / frequency_hz)


@dataclass(frozen=True, kw_only=True)
class EISParams:
    """One impedance sweep: ``points`` log-spaced frequencies from ``f_high_hz`` down to ``f_low_hz``, an AC
    amplitude of ``amplitude_v`` around the DC potential ``e_dc_v`` (V vs the reference electrode)."""

    f_high_hz: float = 100e3
    f_low_hz: float = 10.0
    points: int = 31
    amplitude_v: float = 0.01
    e_dc_v: float = 0.0

    def __post_init__(self) -> None:
        require_positive("f_high_hz", self.f_high_hz)
        require_positive("f_low_hz", self.f_low_hz)
        require_positive("amplitude_v", self.amplitude_v)
        require_finite("e_dc_v", self.e_dc_v)
        low, high = PICO_FREQUENCY_RANGE_HZ
        for name in ("f_high_hz", "f_low_hz"):
            if not low <= getattr(self, name) <= high:
                raise InvalidParameter(f"{name}: must lie in {low:g}..{high:g} Hz, got {getattr(self, name)!r}")
        if self.f_low_hz >= self.f_high_hz:
            raise InvalidParameter(f"f_low_hz: must be below f_high_hz ({self.f_high_hz:g} Hz), "
                                   f"got {self.f_low_hz!r}")
        integral = isinstance(self.points, numbers.Integral) and not isinstance(self.points, bool)
        if not integral or not 2 <= self.points <= 1000:
            raise InvalidParameter(f"points: must be an integer in 2..1000, got {self.points!r}")
        if self.amplitude_v > MAX_AC_AMPLITUDE_V:
            raise InvalidParameter(f"amplitude_v: must be <= {MAX_AC_AMPLITUDE_V} V, got {self.amplitude_v!r}")
        for name in ("f_high_hz", "f_low_hz", "amplitude_v", "e_dc_v"):
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "points", int(self.points))

    def frequencies(self) -> np.ndarray:
        """The swept frequencies (Hz), highest first, log-spaced."""
        return np.geomspace(self.f_high_hz, self.f_low_hz, self.points)

    def to_dict(self) -> dict[str, Any]:
        return {"f_high_hz": self.f_high_hz, "f_low_hz": self.f_low_hz, "points": self.points,
                "amplitude_v": self.amplitude_v, "e_dc_v": self.e_dc_v}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EISParams:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise InvalidParameter(f"{sorted(unknown)[0]}: unknown EIS parameter")
        return cls(**data)


@dataclass(frozen=True, eq=False)
class ImpedanceSpectrum:
    """A measured spectrum: frequency (Hz), Z' and Z'' (ohm) per point, and the sweep that took it."""

    frequency_hz: np.ndarray
    z_real_ohm: np.ndarray
    z_imag_ohm: np.ndarray
    params: EISParams
    overload: np.ndarray = field(default=None)  # type: ignore[assignment]  # None -> no point overloaded

    def __post_init__(self) -> None:
        n = None
        for name in ("frequency_hz", "z_real_ohm", "z_imag_ohm"):
            arr = np.array(getattr(self, name), dtype=np.float64)
            if arr.ndim != 1 or not np.isfinite(arr).all():
                raise InvalidParameter(f"{name}: must be a one-dimensional array of finite numbers")
            if n is not None and len(arr) != n:
                raise InvalidParameter(f"{name}: has {len(arr)} points, frequency_hz has {n}")
            n = len(arr)
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)
        mask = np.zeros(n, dtype=bool) if self.overload is None else np.array(self.overload, dtype=bool)
        if mask.shape != (n,):
            raise InvalidParameter(f"overload: must be a boolean mask of {n} points")
        mask.flags.writeable = False
        object.__setattr__(self, "overload", mask)

    def __len__(self) -> int:
        return len(self.frequency_hz)

    @property
    def impedance(self) -> np.ndarray:
        return self.z_real_ohm + 1j * self.z_imag_ohm

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (what the journal stores as the raw data of an ``eis`` step)."""
        return {"frequency_hz": self.frequency_hz.tolist(), "z_real_ohm": self.z_real_ohm.tolist(),
                "z_imag_ohm": self.z_imag_ohm.tolist(), "params": self.params.to_dict(),
                "overload_index": np.flatnonzero(self.overload).tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImpedanceSpectrum:
        try:
            mask = np.zeros(len(data["frequency_hz"]), dtype=bool)
            mask[np.asarray(data.get("overload_index", []), dtype=int)] = True
            return cls(frequency_hz=data["frequency_hz"], z_real_ohm=data["z_real_ohm"],
                       z_imag_ohm=data["z_imag_ohm"], params=EISParams.from_dict(data["params"]), overload=mask)
        except KeyError as exc:
            raise InvalidParameter(f"{exc.args[0]}: missing from stored spectrum") from None


@dataclass(frozen=True)
class RuEstimate:
    """Ru from a spectrum: the fitted high-frequency intercept, the points used, and the fit's relative rms
    residual (a bad fit, e.g. an inductive cable, shows here)."""

    ru_ohm: float
    n_points: int
    rms_residual: float

    def to_dict(self) -> dict[str, float | int]:
        return {"ru_ohm": self.ru_ohm, "n_points": self.n_points, "rms_residual": self.rms_residual}


def _model(log_params: np.ndarray, omega: np.ndarray) -> np.ndarray:
    """``R + Rp / (1 + j w Rp C)``: the high-frequency end of a Randles circuit."""
    r, rp, c = np.exp(log_params)
    return r + rp / (1 + 1j * omega * rp * c)


def fit_ru(spectrum: ImpedanceSpectrum) -> RuEstimate:
    """Ru as the high-frequency intercept of the spectrum with the real axis.

    Method: the highest-frequency half of the points (at least 5, overloaded points left out) is fitted
    with ``R + Rp || C`` by least squares on the complex residual relative to |Z| (so every point weighs
    the same whatever its magnitude); R is the intercept where that arc meets the real axis as the
    frequency goes to infinity. Why a fit rather than the smallest Z': at the highest measured frequency
    the double-layer arc has not yet closed, so min(Z') overestimates Ru by ``Rp / (1 + (w Rp C)^2)``;
    the fit extrapolates. A blocking electrode (no charge transfer) is the limit Rp -> infinity, which
    the fit reaches through its upper bound.
    """
    keep = ~spectrum.overload
    if keep.sum() < 3:
        raise InvalidParameter("spectrum: fewer than 3 usable points to fit Ru")
    order = np.argsort(spectrum.frequency_hz[keep])[::-1]
    n = min(int(keep.sum()), max(MIN_FIT_POINTS, math.ceil(HIGH_FREQUENCY_SHARE * int(keep.sum()))))
    chosen = order[:n]
    omega = 2 * np.pi * spectrum.frequency_hz[keep][chosen]
    z = spectrum.impedance[keep][chosen]
    r0 = max(float(z.real.min()), 1e-3)
    rp0 = max(float(z.real.max()) - r0, 1e-3 * r0) * 10
    k = int(np.argmax(-z.imag))
    c0 = 1 / max(float(omega[k]) * max(float(-z.imag[k]), 1e-6), 1e-30)

    def residual(log_params: np.ndarray) -> np.ndarray:
        d = (_model(log_params, omega) - z) / np.abs(z)
        return np.concatenate([d.real, d.imag])

    start = np.log([r0, rp0, c0])
    lower, upper = start - np.array([5.0, 15.0, 15.0]), start + np.array([5.0, 25.0, 15.0])
    fit = least_squares(residual, start, bounds=(lower, upper), x_scale=1.0, method="trf")
    ru = float(np.exp(fit.x[0]))
    rms = float(np.sqrt(np.mean(fit.fun**2)))
    log.debug("Ru fit on %d points: %.4g ohm (rms residual %.2g)", n, ru, rms)
    return RuEstimate(ru_ohm=ru, n_points=n, rms_residual=rms)
