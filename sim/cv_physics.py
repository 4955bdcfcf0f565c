"""Physics of a cyclic voltammogram: what the simulated potentiostat measures for the cell's contents.

Why: the emulated potentiostat must answer with a voltammogram that an analysis written for real data
can be tested against, so it has to follow the textbook numbers (Randles-Sevcik peak current, 57 mV
peak separation, Nicholson's kinetic widening) and show the artefacts real cells have: double-layer
charging, uncompensated resistance, noise and current-range overload.

Model: one-electron couple O + e- <-> R with Butler-Volmer kinetics at a planar electrode and
semi-infinite linear diffusion, D_O = D_R = D. With equal diffusion coefficients c_O + c_R is the bulk
concentration everywhere, so only c = c_O / C* is solved. Diffusion is integrated with backward Euler
on an exponentially expanding grid reaching 6 sqrt(D t_total); node 0 is a half control volume whose
source is the Butler-Volmer rate, which keeps mass conserved and the surface flux second-order.

Speed: grid and time step are fixed for a run, so the tridiagonal interior system is solved once
(banded solve against the identity) into a dense propagator P = M^-1. Each time step is then one small
matrix-vector product plus a scalar equation for the surface concentration, which is linear in c(0)
for a given electrode potential; no per-step factorisation and no per-step solver call.

Uncompensated resistance: the electrode sees E_app - i Ru with i the total (faradaic + charging)
current; that scalar equation is solved per step by Newton's method inside a guaranteed bracket.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.linalg import solve_banded

from labloop.core.errors import InvalidParameter
from labloop.instruments.voltammogram import CVParams, Voltammogram, require_finite, require_positive

log = logging.getLogger(__name__)

FARADAY = 96485.33212  # C/mol
GAS_CONSTANT = 8.314462618  # J/(mol K)

#: largest potential travelled in one internal time step (V): keeps backward Euler's lag well below 1 mV
MAX_INTERNAL_STEP_V = 0.0005
#: first grid spacing as a fraction of the diffusion length of one internal step, and grid expansion
FIRST_SPACING = 0.3
GRID_GROWTH = 1.15
#: domain length in diffusion lengths of the whole run
DOMAIN_DIFFUSION_LENGTHS = 6.0
#: |f * eta| above this is clipped: rates beyond e^100 are diffusion-limited anyway, and exp stays finite
MAX_EXPONENT = 100.0


@dataclass(frozen=True, kw_only=True)
class CellParams:
    """What is in the cell and how the electrode behaves; units in the field names.

    ``species`` is the form present in the bulk: "reduced" (R, oxidised on an anodic sweep) or
    "oxidized" (O). ``noise_fraction`` is the noise standard deviation as a fraction of the current
    range (or of the largest current when the CV has no fixed range).
    """

    e0_v: float
    k0_cm_s: float = 1.0
    alpha: float = 0.5
    conc_mm: float = 1.0
    diffusion_cm2_s: float = 1e-5
    area_cm2: float = 0.0707
    cdl_f_cm2: float = 0.0
    ru_ohm: float = 0.0
    noise_fraction: float = 0.0
    temperature_k: float = 298.15
    species: Literal["reduced", "oxidized"] = "reduced"

    def __post_init__(self) -> None:
        require_finite("e0_v", self.e0_v)
        for name in ("k0_cm_s", "diffusion_cm2_s", "area_cm2", "temperature_k"):
            require_positive(name, getattr(self, name))
        for name in ("conc_mm", "cdl_f_cm2", "ru_ohm", "noise_fraction"):
            require_finite(name, getattr(self, name))
            if getattr(self, name) < 0:
                raise InvalidParameter(f"{name}: must be >= 0, got {getattr(self, name)!r}")
        require_finite("alpha", self.alpha)
        if not 0 < self.alpha < 1:
            raise InvalidParameter(f"alpha: must lie strictly between 0 and 1, got {self.alpha!r}")
        if self.species not in ("reduced", "oxidized"):
            raise InvalidParameter(f"species: must be 'reduced' or 'oxidized', got {self.species!r}")

    @property
    def f(self) -> float:
        """F / RT (1/V)."""
        return FARADAY / (GAS_CONSTANT * self.temperature_k)


@dataclass(frozen=True)
class _Propagator:
    """Backward-Euler step of the interior nodes: c_int(new) = P @ c_int + g * c(0)(new) + q."""

    P: np.ndarray
    g: np.ndarray
    q: np.ndarray
    a_c0: float  # a0 = a_c0 * c(0)(old) + a_p1 * p[0]
    a_p1: float
    b0: float  # surface equation: (a0 + k_b) / (b0 + k_b + k_f) = c(0)(new)


def _grid_spacings(diffusion: float, dt: float, t_total: float) -> np.ndarray:
    """Spacings h_1..h_N of an expanding grid from the electrode to 6 diffusion lengths of the run."""
    first = FIRST_SPACING * math.sqrt(diffusion * dt)
    length = DOMAIN_DIFFUSION_LENGTHS * math.sqrt(diffusion * t_total)
    n = max(3, math.ceil(math.log1p(length * (GRID_GROWTH - 1) / first) / math.log(GRID_GROWTH)))
    return first * GRID_GROWTH ** np.arange(n)


def _propagator(diffusion: float, dt: float, t_total: float, c_bulk: float) -> _Propagator:
    """Factor the implicit diffusion step once (banded solve) into a dense propagator."""
    h = _grid_spacings(diffusion, dt, t_total)
    lower = 2.0 / ((h[:-1] + h[1:]) * h[:-1])  # coupling of interior node j to j-1
    upper = 2.0 / ((h[:-1] + h[1:]) * h[1:])  # ... and to j+1
    k = dt * diffusion
    n = len(lower)
    bands = np.zeros((3, n))
    bands[0, 1:] = -k * upper[:-1]
    bands[1] = 1.0 + k * (lower + upper)
    bands[2, :-1] = -k * lower[1:]
    P = solve_banded((1, 1), bands, np.eye(n))
    g = P[:, 0] * k * lower[0]
    q = P[:, -1] * k * upper[-1] * c_bulk
    h1 = float(h[0])
    return _Propagator(P=P, g=g, q=q, a_c0=h1 / (2 * dt), a_p1=diffusion / h1,
                       b0=h1 / (2 * dt) + diffusion * (1.0 - g[0]) / h1)


def _internal_potentials(params: CVParams) -> tuple[np.ndarray, int]:
    """Applied potential at every internal step (substeps between points) and the substeps per point.

    The run starts one step before the first point, as if the sweep were already going, so every
    point (the first included) is computed the same way.
    """
    _, e_points = params.waveform()
    first_dir = np.sign(e_points[1] - e_points[0])
    e_prev = np.concatenate(([e_points[0] - first_dir * params.e_step_v], e_points))
    substeps = max(1, math.ceil(params.e_step_v / MAX_INTERNAL_STEP_V - 1e-9))
    frac = np.arange(1, substeps + 1) / substeps
    e_internal = e_prev[:-1, None] + np.diff(e_prev)[:, None] * frac[None, :]
    return np.concatenate(([e_prev[0]], e_internal.ravel())), substeps


def _rate_constants(cell: CellParams, e_interface: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Butler-Volmer reduction (k_f) and oxidation (k_b) rate constants (cm/s)."""
    x = np.clip(cell.f * (np.asarray(e_interface) - cell.e0_v), -MAX_EXPONENT, MAX_EXPONENT)
    return cell.k0_cm_s * np.exp(-cell.alpha * x), cell.k0_cm_s * np.exp((1 - cell.alpha) * x)


def _run_without_ru(cell: CellParams, prop: _Propagator, e_app: np.ndarray, c_bulk: float) -> np.ndarray:
    """Faradaic rate r (cm/s, oxidation positive) at every internal step when the electrode sees E_app."""
    k_f, k_b = _rate_constants(cell, e_app[1:])
    P, g, q, b0 = prop.P, prop.g, prop.q, prop.b0
    c = np.full(len(q), c_bulk)
    c0 = c_bulk
    rate = []
    for kf, kb in zip(k_f.tolist(), k_b.tolist(), strict=True):  # python floats: faster scalar math
        p = P @ c + q
        a0 = prop.a_c0 * c0 + prop.a_p1 * float(p[0])
        denominator = b0 + kb + kf
        c0 = (a0 + kb) / denominator
        rate.append((kb * (b0 - a0) - kf * a0) / denominator)
        c = p + g * c0
    return np.array(rate)


def _solve_interface(cell: CellParams, b0: float, a0: float, e_app: float, e_prev: float, guess: float,
                     scale: float, charge: float) -> tuple[float, float, float]:
    """Interfacial potential E with E + Ru * (i_f(E) + charge * (E - e_prev)) = e_app, and k_f, k_b there.

    ``scale`` turns the rate into current (F A C*); ``charge`` is Cdl A / dt. i_f is increasing and lies
    in scale * [-a0, b0 - a0], which brackets the root; a Newton step leaving the bracket is replaced by
    bisection. Scalar math on purpose: this runs once per time step.
    """
    ru, f, alpha, k0, e0 = cell.ru_ohm, cell.f, cell.alpha, cell.k0_cm_s, cell.e0_v
    slope = 1.0 + ru * charge
    offset = e_app + ru * charge * e_prev
    lo = (offset - ru * scale * (b0 - a0)) / slope
    hi = (offset + ru * scale * a0) / slope
    e = min(max(guess, lo), hi)
    for _ in range(100):
        x = max(-MAX_EXPONENT, min(MAX_EXPONENT, f * (e - e0)))
        k_f, k_b = k0 * math.exp(-alpha * x), k0 * math.exp((1 - alpha) * x)
        num, den = k_b * (b0 - a0) - k_f * a0, b0 + k_b + k_f
        residual = slope * e + ru * scale * num / den - offset
        if abs(residual) < 1e-10:
            break
        if residual > 0:
            hi = e
        else:
            lo = e
        d_num = f * ((1 - alpha) * k_b * (b0 - a0) + alpha * k_f * a0)
        d_den = f * ((1 - alpha) * k_b - alpha * k_f)
        e_new = e - residual / (slope + ru * scale * (d_num * den - num * d_den) / den**2)
        e = e_new if lo < e_new < hi else 0.5 * (lo + hi)
    return e, k_f, k_b


def _run_with_ru(cell: CellParams, prop: _Propagator, e_app: np.ndarray, c_bulk: float, dt: float,
                 scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Faradaic rate and interfacial potential at every internal step, with the ohmic drop solved."""
    charge = cell.cdl_f_cm2 * cell.area_cm2 / dt
    P, g, q, b0 = prop.P, prop.g, prop.q, prop.b0
    c = np.full(len(q), c_bulk)
    c0 = c_bulk
    applied = e_app.tolist()
    e_int = [applied[0]]
    rate = []
    for n in range(1, len(applied)):
        p = P @ c + q
        a0 = prop.a_c0 * c0 + prop.a_p1 * float(p[0])
        guess = e_int[-1] + applied[n] - applied[n - 1]
        e, k_f, k_b = _solve_interface(cell, b0, a0, applied[n], e_int[-1], guess, scale, charge)
        denominator = b0 + k_b + k_f
        c0 = (a0 + k_b) / denominator
        rate.append((k_b * (b0 - a0) - k_f * a0) / denominator)
        e_int.append(e)
        c = p + g * c0
    return np.array(rate), np.array(e_int)


def _add_noise_and_range(current: np.ndarray, noise_fraction: float, current_range: float | None,
                         rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
    """Add gaussian noise (fraction of the range, or of the largest current) and clip at the range."""
    if noise_fraction > 0:
        full_scale = current_range if current_range is not None else float(np.abs(current).max())
        rng = rng if rng is not None else np.random.default_rng()
        current = current + rng.normal(0.0, noise_fraction * full_scale, size=current.shape)
    if current_range is None:
        return current, np.zeros(current.shape, dtype=bool)
    overload = np.abs(current) >= current_range
    return np.clip(current, -current_range, current_range), overload


def simulate_cv(cell: CellParams, params: CVParams, rng: np.random.Generator | None = None, *,
                reference: str = "Ag/Ag+") -> Voltammogram:
    """Voltammogram of ``cell`` under the scan ``params``; potentials are on the ``reference`` scale.

    ``rng`` draws the noise; None takes a fresh unseeded generator (only used when noise_fraction > 0).
    Current is IUPAC-signed (anodic positive) and sampled at the end of each potential step.
    """
    time_s, e_points = params.waveform()
    e_app, substeps = _internal_potentials(params)
    dt = params.time_step_s / substeps
    c_bulk = 1.0 if cell.species == "oxidized" else 0.0
    prop = _propagator(cell.diffusion_cm2_s, dt, params.duration_s + params.time_step_s, c_bulk)
    scale = FARADAY * cell.area_cm2 * cell.conc_mm * 1e-6  # rate (cm/s) -> current (A); C* in mol/cm^3
    if cell.ru_ohm > 0:
        rate, e_int = _run_with_ru(cell, prop, e_app, c_bulk, dt, scale)
    else:
        rate, e_int = _run_without_ru(cell, prop, e_app, c_bulk), e_app
    current = scale * rate + cell.cdl_f_cm2 * cell.area_cm2 * np.diff(e_int) / dt
    current = current[substeps - 1::substeps]
    current, overload = _add_noise_and_range(current, cell.noise_fraction, params.current_range_a, rng)
    log.debug("simulated CV: %d points, %d substeps, %d grid nodes", len(current), substeps, len(prop.q) + 2)
    return Voltammogram(potential_v=e_points, current_a=current, time_s=time_s, params=params,
                        reference=reference, overload=overload)


def random_couple(rng: np.random.Generator, noise_fraction: float = 0.01) -> tuple[CellParams, CVParams]:
    """A plausible reversible couple and a 1 V-wide CV around it (docs/protocols.md "Typical values").

    e0 within +/-0.2 V, k0 0.1-1 cm/s, D 0.5-2.5e-5 cm^2/s, 1-5 mM, Cdl 10-40 uF/cm^2, 0.02-0.5 V/s,
    either species in bulk (the sweep starts toward the reaction it can undergo). Shared by the tests
    and the benchmark so both judge the analysis on the same population.
    """
    species = "reduced" if rng.random() < 0.5 else "oxidized"
    cell = CellParams(
        e0_v=float(rng.uniform(-0.2, 0.2)), k0_cm_s=float(10 ** rng.uniform(-1.0, 0.0)),
        diffusion_cm2_s=float(rng.uniform(0.5e-5, 2.5e-5)), conc_mm=float(rng.uniform(1.0, 5.0)),
        cdl_f_cm2=float(rng.uniform(1e-5, 4e-5)), noise_fraction=noise_fraction, species=species,
    )
    start = -0.5 if species == "reduced" else 0.5
    params = CVParams(e_begin_v=start, e_vertex1_v=-start, e_vertex2_v=start,
                      scan_rate_v_s=float(10 ** rng.uniform(math.log10(0.02), math.log10(0.5))))
    return cell, params
