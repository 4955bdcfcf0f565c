"""Physics of a cyclic voltammogram: what the simulated potentiostat measures for the cell's contents.

Why: the emulated potentiostat must answer with a voltammogram that an analysis written for real data
can be tested against, so it has to follow the textbook numbers (Randles-Sevcik peak current, 57 mV
peak separation, Nicholson's kinetic widening) and show the artefacts real cells have: double-layer
charging, uncompensated resistance, noise and current-range overload.

Model: a couple O + n e- <-> R (one electron unless ``n_electrons`` says more, all in one step) with Butler-Volmer
kinetics at a planar electrode and semi-infinite linear diffusion, D_O = D_R = D. With equal diffusion
coefficients c_O + c_R is the bulk concentration everywhere, so only c = c_O / C* is solved. Diffusion is
integrated with backward Euler on an exponentially expanding grid reaching 6 sqrt(D t_total); node 0 is a half
control volume whose source is the Butler-Volmer rate, which keeps mass conserved and the surface flux
second-order.

Speed: grid and time step are fixed for a run, so the tridiagonal interior system is solved once
(banded solve against the identity) into a dense propagator P = M^-1. Each time step is then one small
matrix-vector product plus a scalar equation for the surface concentration, which is linear in c(0)
for a given electrode potential; no per-step factorisation and no per-step solver call.

Uncompensated resistance: the electrode sees E_app - i Ru with i the total (faradaic + charging)
current; that scalar equation is solved per step by Newton's method inside a guaranteed bracket.

A product that reacts away (``follow_up_per_s``, an EC mechanism) breaks c_O + c_R = C*: such a couple's two
species are solved each on its own grid, the product's with the first-order loss in its implicit step, and the
surface pair from a 2x2 linear system; without the loss that system gives the one-species solution back.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
from scipy.linalg import solve_banded

from labloop.core.errors import InvalidParameter
from labloop.instruments.voltammogram import (
    UNNAMED_REFERENCE,
    CVParams,
    Voltammogram,
    require_finite,
    require_positive,
)

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
    #: first-order rate (1/s) at which the electron transfer's product reacts away (an EC mechanism: a radical
    #: cation that decomposes); 0, a stable product. It shrinks the return peak as Nicholson and Shain's EC case does.
    #: Out of the repr, which keys the noise of an emulated scan (sim/emstat_emulator.py): with it, every dry run's
    #: scans drew other noise than before the field existed
    follow_up_per_s: float = field(default=0.0, repr=False)
    #: electrons the couple takes in its one wave (a two-electron quinone's), in one concerted step: the wave narrows
    #: to 1/n of a one-electron one's (dEp 57/n mV at 25 C) and its current grows as n^1.5. Out of the repr, as
    #: ``follow_up_per_s`` is, so that the scans of one-electron worlds draw the noise they drew before it
    n_electrons: int = field(default=1, repr=False)

    def __post_init__(self) -> None:
        require_finite("e0_v", self.e0_v)
        for name in ("k0_cm_s", "diffusion_cm2_s", "area_cm2", "temperature_k"):
            require_positive(name, getattr(self, name))
        for name in ("conc_mm", "cdl_f_cm2", "ru_ohm", "noise_fraction", "follow_up_per_s"):
            require_finite(name, getattr(self, name))
            if getattr(self, name) < 0:
                raise InvalidParameter(f"{name}: must be >= 0, got {getattr(self, name)!r}")
        require_finite("alpha", self.alpha)
        if not 0 < self.alpha < 1:
            raise InvalidParameter(f"alpha: must lie strictly between 0 and 1, got {self.alpha!r}")
        if isinstance(self.n_electrons, bool) or not isinstance(self.n_electrons, int) or self.n_electrons < 1:
            raise InvalidParameter(f"n_electrons: a whole number of electrons, 1 or more, got {self.n_electrons!r}")
        if self.species not in ("reduced", "oxidized"):
            raise InvalidParameter(f"species: must be 'reduced' or 'oxidized', got {self.species!r}")

    @property
    def f(self) -> float:
        """n F / RT (1/V): the exponent's factor of Nernst and Butler-Volmer."""
        return self.n_electrons * FARADAY / (GAS_CONSTANT * self.temperature_k)


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


def _propagator(diffusion: float, dt: float, t_total: float, c_bulk: float, decay_per_s: float = 0.0) -> _Propagator:
    """Factor the implicit diffusion step once (banded solve) into a dense propagator; ``decay_per_s``: a
    first-order loss of the species everywhere, the surface node's half volume included."""
    h = _grid_spacings(diffusion, dt, t_total)
    lower = 2.0 / ((h[:-1] + h[1:]) * h[:-1])  # coupling of interior node j to j-1
    upper = 2.0 / ((h[:-1] + h[1:]) * h[1:])  # ... and to j+1
    k = dt * diffusion
    n = len(lower)
    bands = np.zeros((3, n))
    bands[0, 1:] = -k * upper[:-1]
    bands[1] = 1.0 + k * (lower + upper) + dt * decay_per_s
    bands[2, :-1] = -k * lower[1:]
    P = solve_banded((1, 1), bands, np.eye(n))
    g = P[:, 0] * k * lower[0]
    q = P[:, -1] * k * upper[-1] * c_bulk
    h1 = float(h[0])
    return _Propagator(P=P, g=g, q=q, a_c0=h1 / (2 * dt), a_p1=diffusion / h1,
                       b0=h1 / (2 * dt) + diffusion * (1.0 - g[0]) / h1 + h1 * decay_per_s / 2)


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


@dataclass
class _Couple:
    """One couple's concentrations during a run, as fractions of its bulk concentration: O's (``c_o`` on ``o``'s
    grid, ``surface_o`` at the electrode) and, when its product reacts away, R's on its own grid (``r``; None:
    R is 1 - O everywhere)."""

    o: _Propagator
    r: _Propagator | None
    c_o: np.ndarray
    c_r: np.ndarray | None
    surface_o: float
    surface_r: float

    def balance(self) -> tuple[tuple[float, float, float, float], tuple[np.ndarray, np.ndarray | None]]:
        """The surface nodes' balance of this time step, (A_O, A_R, B_O, B_R), before the electron transfer: the
        surface pair solves ``B_O c_O = A_O - J``, ``B_R c_R = A_R + J`` with J = k_f c_O - k_b c_R; and the interior
        nodes' diffusion, to which the new surface values are added (:meth:`advance`)."""
        p_o = self.o.P @ self.c_o + self.o.q
        a_o = self.o.a_c0 * self.surface_o + self.o.a_p1 * float(p_o[0])
        if self.r is None or self.c_r is None:
            return (a_o, self.o.b0 - a_o, self.o.b0, self.o.b0), (p_o, None)
        p_r = self.r.P @ self.c_r + self.r.q
        a_r = self.r.a_c0 * self.surface_r + self.r.a_p1 * float(p_r[0])
        return (a_o, a_r, self.o.b0, self.r.b0), (p_o, p_r)

    def advance(self, interior: tuple[np.ndarray, np.ndarray | None], surface_o: float, surface_r: float) -> None:
        p_o, p_r = interior
        self.surface_o, self.surface_r = surface_o, surface_r
        self.c_o = p_o + self.o.g * surface_o
        if self.r is not None and p_r is not None:
            self.c_r = p_r + self.r.g * surface_r


def _transfer(k_f: float, k_b: float, a_o: float, a_r: float, b_o: float, b_r: float) -> tuple[float, float, float]:
    """The surface pair's 2x2 system solved: (rate, c_O, c_R), the rate in cm/s, oxidation positive. With
    B_O = B_R = b and A_R = b - A_O (no follow-up) it is the one-species (A_O + k_b) / (b + k_b + k_f)."""
    det = b_o * b_r + b_o * k_b + k_f * b_r
    return ((k_b * b_o * a_r - k_f * b_r * a_o) / det, (a_o * (b_r + k_b) + k_b * a_r) / det,
            ((b_o + k_f) * a_r + k_f * a_o) / det)


def _solve_interface(kinetics: Sequence[tuple[float, float, float, float]], ru: float,
                     states: Sequence[tuple[float, float, float, float, float]], e_app: float, e_prev: float,
                     guess: float, charge: float) -> float:
    """Interfacial potential E with E + Ru * (sum_k i_k(E) + charge * (E - e_prev)) = e_app.

    ``kinetics`` holds per couple (E0, f, alpha, k0); ``states`` per couple its surface balance (A_O, A_R, B_O, B_R,
    :meth:`_Couple.balance`) and ``scale`` = F A C* turning its rate into current; ``charge`` is Cdl A / dt. Each i_k
    is increasing and lies in scale_k * [-A_O, A_R], so the sum brackets the root; a Newton step leaving the bracket is
    replaced by bisection. Scalar math on purpose: this runs once per time step.
    """
    slope = 1.0 + ru * charge
    offset = e_app + ru * charge * e_prev
    lo = (offset - ru * sum(scale * a_r for _, a_r, _, _, scale in states)) / slope
    hi = (offset + ru * sum(scale * a_o for a_o, _, _, _, scale in states)) / slope
    e = min(max(guess, lo), hi)
    pairs = list(zip(kinetics, states, strict=True))
    for _ in range(100):
        current = d_current = 0.0
        for (e0, f, alpha, k0), (a_o, a_r, b_o, b_r, scale) in pairs:
            x = max(-MAX_EXPONENT, min(MAX_EXPONENT, f * (e - e0)))
            k_f, k_b = k0 * math.exp(-alpha * x), k0 * math.exp((1 - alpha) * x)
            num, den = k_b * b_o * a_r - k_f * b_r * a_o, b_o * b_r + b_o * k_b + k_f * b_r
            d_num = f * ((1 - alpha) * k_b * b_o * a_r + alpha * k_f * b_r * a_o)
            d_den = f * ((1 - alpha) * k_b * b_o - alpha * k_f * b_r)
            current += scale * num / den
            d_current += scale * (d_num * den - num * d_den) / (den * den)
        residual = slope * e + ru * current - offset
        if abs(residual) < 1e-10:
            break
        if residual > 0:
            hi = e
        else:
            lo = e
        e_new = e - residual / (slope + ru * d_current)
        e = e_new if lo < e_new < hi else 0.5 * (lo + hi)
    return e


def _run_with_ru(cells: Sequence[CellParams], couples: Sequence[_Couple], e_app: np.ndarray,
                 scales: Sequence[float], ru: float, charge: float) -> tuple[np.ndarray, np.ndarray]:
    """Total faradaic current (A) and interfacial potential at every internal step, the ohmic drop of all
    couples' current (and the charging current) solved together: they share one electrode. Also the path of a
    couple whose product reacts away, with or without resistance (the one-species loop cannot hold it)."""
    kinetics = [(c.e0_v, c.f, c.alpha, c.k0_cm_s) for c in cells]
    applied = e_app.tolist()
    e_int = [applied[0]]
    current = []
    for n in range(1, len(applied)):
        balances = [couple.balance() for couple in couples]
        states = [(*balance, scale) for (balance, _), scale in zip(balances, scales, strict=True)]
        e = _solve_interface(kinetics, ru, states, applied[n], e_int[-1], e_int[-1] + applied[n] - applied[n - 1],
                             charge)
        total = 0.0
        for (e0, f, alpha, k0), couple, (balance, interior), scale in zip(kinetics, couples, balances, scales,
                                                                          strict=True):
            x = max(-MAX_EXPONENT, min(MAX_EXPONENT, f * (e - e0)))
            rate, surface_o, surface_r = _transfer(k0 * math.exp(-alpha * x), k0 * math.exp((1 - alpha) * x),
                                                   *balance)
            couple.advance(interior, surface_o, surface_r)
            total += scale * rate
        current.append(total)
        e_int.append(e)
    return np.array(current), np.array(e_int)


def _couple(cell: CellParams, c_bulk_o: float, dt: float, t_total: float) -> _Couple:
    """A couple's concentrations at the start of a run (its bulk everywhere): one grid, or two when the product of
    its electron transfer reacts away (the species not in the bulk: O for a reduced analyte, R for an oxidised)."""
    diffusion, decay = cell.diffusion_cm2_s, cell.follow_up_per_s
    if decay <= 0:
        o = _propagator(diffusion, dt, t_total, c_bulk_o)
        return _Couple(o, None, np.full(len(o.q), c_bulk_o), None, c_bulk_o, 1.0 - c_bulk_o)
    o = _propagator(diffusion, dt, t_total, c_bulk_o, decay if c_bulk_o == 0 else 0.0)
    r = _propagator(diffusion, dt, t_total, 1.0 - c_bulk_o, decay if c_bulk_o == 1 else 0.0)
    return _Couple(o, r, np.full(len(o.q), c_bulk_o), np.full(len(r.q), 1.0 - c_bulk_o), c_bulk_o, 1.0 - c_bulk_o)


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
                reference: str = UNNAMED_REFERENCE) -> Voltammogram:
    """Voltammogram of ``cell`` under the scan ``params``; potentials are on the ``reference`` scale.

    ``rng`` draws the noise; None takes a fresh unseeded generator (only used when noise_fraction > 0).
    Current is IUPAC-signed (anodic positive) and sampled at the end of each potential step.
    """
    return simulate_cell([cell], params, rng, reference=reference)


def simulate_cell(couples: Sequence[CellParams], params: CVParams, rng: np.random.Generator | None = None, *,
                  reference: str = UNNAMED_REFERENCE, compensated_ohm: float = 0.0,
                  reference_drift_v: float = 0.0) -> Voltammogram:
    """Voltammogram of a cell holding several couples (analyte, internal standard, dissolved oxygen).

    The electrode is the first couple's: its ``ru_ohm``, ``cdl_f_cm2``, ``area_cm2``, ``noise_fraction``
    and temperature hold for the whole cell; the other couples bring only their chemistry (and their own
    area must match). All couples share one ohmic drop, so with resistance their currents are solved
    together, not added. ``compensated_ohm`` is the potentiostat's positive-feedback compensation: the
    electrode sees ``E - i (Ru - compensated)``; overcompensation (more than Ru) would make a real
    potentiostat oscillate and is clamped to full compensation here (a warning is logged).
    ``reference_drift_v`` is how far the reference electrode's own potential has moved: every couple then
    appears that much lower on the measured scale.
    """
    if not couples:
        raise InvalidParameter("couples: a cell needs at least one couple (the electrode in electrolyte)")
    require_finite("compensated_ohm", compensated_ohm)
    require_finite("reference_drift_v", reference_drift_v)
    electrode = couples[0]
    ru = electrode.ru_ohm - compensated_ohm
    if ru < 0:
        log.warning("iR compensation of %g ohm exceeds Ru %g ohm: clamped to full compensation",
                    compensated_ohm, electrode.ru_ohm)
        ru = 0.0
    shifted = [replace(c, e0_v=c.e0_v - reference_drift_v) for c in couples]
    active = [c for c in shifted if c.conc_mm > 0] or shifted[:1]
    time_s, e_points = params.waveform()
    e_app, substeps = _internal_potentials(params)
    dt = params.time_step_s / substeps
    t_total = params.duration_s + params.time_step_s
    c_bulks = [1.0 if c.species == "oxidized" else 0.0 for c in active]
    # rate (cm/s) -> A: n F A C*, C* in mol/cm^3
    scales = [c.n_electrons * FARADAY * electrode.area_cm2 * c.conc_mm * 1e-6 for c in active]
    charge = electrode.cdl_f_cm2 * electrode.area_cm2 / dt
    if ru > 0 or any(c.follow_up_per_s > 0 for c in active):
        faradaic, e_int = _run_with_ru(active, [_couple(c, cb, dt, t_total) for c, cb in zip(active, c_bulks,
                                                                                            strict=True)],
                                       e_app, scales, ru, charge)
    else:
        faradaic = sum(scale * _run_without_ru(c, _propagator(c.diffusion_cm2_s, dt, t_total, cb), e_app, cb)
                       for c, cb, scale in zip(active, c_bulks, scales, strict=True))
        e_int = e_app
    current = faradaic + charge * np.diff(e_int)
    current = current[substeps - 1::substeps]
    current, overload = _add_noise_and_range(current, electrode.noise_fraction, params.current_range_a, rng)
    log.debug("simulated CV: %d points, %d couples, %d substeps", len(current), len(active), substeps)
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


def cell_impedance(couples: Sequence[CellParams], frequencies_hz: np.ndarray, e_dc_v: float, *,
                   reference_drift_v: float = 0.0) -> np.ndarray:
    """Complex impedance (ohm) of the cell at ``frequencies_hz``, held at ``e_dc_v``: a Randles circuit.

    ``Z = Ru + 1 / (j w Cdl A + sum_k 1 / (Rct_k + Zw_k))`` with the electrode (Ru, Cdl, area) of the first
    couple. Each couple with an analyte contributes a faradaic branch linearised around the surface
    concentrations a reversible couple has at ``e_dc_v`` (Nernst: ``c_O / c_R = exp(f (E - E0))``, the
    couple's bulk concentration split accordingly):
    ``Rct = RT / (n^2 F^2 A k0 c_O^(1-alpha) c_R^alpha)`` and the semi-infinite Warburg element
    ``Zw = sigma (1 - j) / sqrt(w)``, ``sigma = RT / (n^2 F^2 A sqrt(2)) (1 / (c_O sqrt(D)) + 1 / (c_R sqrt(D)))``
    (Bard & Faulkner ch. 10). Why this simplification: EIS here serves to measure Ru, which the
    high-frequency end decides; the low-frequency shape only has to be plausible.
    """
    electrode = couples[0]
    omega = 2 * np.pi * np.asarray(frequencies_hz, dtype=float)
    admittance = 1j * omega * electrode.cdl_f_cm2 * electrode.area_cm2
    for couple in couples:
        if couple.conc_mm <= 0:
            continue
        f = couple.f
        x = np.clip(f * (e_dc_v - (couple.e0_v - reference_drift_v)), -MAX_EXPONENT, MAX_EXPONENT)
        c_total = couple.conc_mm * 1e-6  # mol/cm^3
        c_o = c_total / (1 + math.exp(-x))
        c_r = c_total - c_o
        if min(c_o, c_r) <= c_total * 1e-12:  # one form only: the branch blocks (no exchange current)
            continue
        rt_f2a = GAS_CONSTANT * couple.temperature_k / ((couple.n_electrons * FARADAY) ** 2 * electrode.area_cm2)
        r_ct = rt_f2a / (couple.k0_cm_s * c_o ** (1 - couple.alpha) * c_r**couple.alpha)
        sigma = rt_f2a / math.sqrt(2) * (1 / (c_o * math.sqrt(couple.diffusion_cm2_s))
                                         + 1 / (c_r * math.sqrt(couple.diffusion_cm2_s)))
        admittance = admittance + 1 / (r_ct + sigma * (1 - 1j) / np.sqrt(omega))
    return electrode.ru_ohm + 1 / admittance
