"""The CV simulator must reproduce textbook electrochemistry, not just produce a plausible curve.

Expected values come from the formulas in docs/protocols.md ("Cyclic voltammetry facts"), computed here,
never from earlier simulator output. Peaks are located with a plain argmax plus a 3-point parabola so
that these tests do not depend on the analysis module.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from labloop.core.errors import InvalidParameter
from labloop.instruments.voltammogram import CVParams, Voltammogram
from labloop.sim.cv_physics import FARADAY, GAS_CONSTANT, CellParams, simulate_cv

AREA = 0.0707  # cm^2, 3 mm disk
D = 1e-5  # cm^2/s
CONC_MOL_CM3 = 1e-6  # 1 mM


def window(e0: float = 0.0, rate: float = 0.1, **kw: float) -> CVParams:
    """A scan from 0.3 V below e0 to 0.3 V above and back (vertex well past E0)."""
    return CVParams(e_begin_v=e0 - 0.3, e_vertex1_v=e0 + 0.3, e_vertex2_v=e0 - 0.3, scan_rate_v_s=rate, **kw)


def peak(v: Voltammogram, direction: int) -> tuple[float, float]:
    """(potential, current) of the largest peak on the first sweep running ``direction``."""
    segment = next(s for s in v.segments() if s.direction == direction)
    e, i = v.potential_v[segment.index], v.current_a[segment.index]
    k = int(np.argmax(direction * i))
    assert 0 < k < len(i) - 1, "peak at the edge of the sweep"
    y0, y1, y2 = direction * i[k - 1 : k + 2]
    shift = 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2)
    return float(e[k] + shift * (e[k + 1] - e[k])), float(i[k])


def randles_sevcik(rate: float, diffusion: float = D) -> float:
    return 2.69e5 * AREA * math.sqrt(diffusion) * CONC_MOL_CM3 * math.sqrt(rate)


def peak_separation(cell: CellParams, params: CVParams) -> float:
    v = simulate_cv(cell, params)
    return peak(v, +1)[0] - peak(v, -1)[0]


@pytest.mark.parametrize("species", ["reduced", "oxidized"])
def test_reversible_couple_matches_randles_sevcik_and_57_mv(species: str) -> None:
    cell = CellParams(e0_v=0.2, k0_cm_s=1.0, conc_mm=1.0, diffusion_cm2_s=D, area_cm2=AREA, species=species)
    params = (window(0.2) if species == "reduced" else
              CVParams(e_begin_v=0.5, e_vertex1_v=-0.1, e_vertex2_v=0.5, scan_rate_v_s=0.1))
    v = simulate_cv(cell, params)
    (epa, ipa), (epc, ipc) = peak(v, +1), peak(v, -1)
    assert 0.057 <= epa - epc <= 0.060
    assert (epa + epc) / 2 == pytest.approx(0.2, abs=0.001)
    forward = ipa if species == "reduced" else -ipc
    assert forward == pytest.approx(randles_sevcik(0.1), rel=0.03)
    assert (ipa > 0) and (ipc < 0)  # IUPAC: anodic positive


def test_peak_current_scales_with_square_root_of_scan_rate() -> None:
    rates = np.geomspace(0.01, 1.0, 5)
    currents = [peak(simulate_cv(CellParams(e0_v=0.0), window(rate=float(r))), +1)[1] for r in rates]
    slope = np.polyfit(np.log(rates), np.log(currents), 1)[0]
    assert slope == pytest.approx(0.5, abs=0.02)


def test_peak_current_scales_with_concentration_and_sqrt_diffusion() -> None:
    base = peak(simulate_cv(CellParams(e0_v=0.0), window()), +1)[1]
    triple = peak(simulate_cv(CellParams(e0_v=0.0, conc_mm=3.0), window()), +1)[1]
    assert triple == pytest.approx(3 * base, rel=1e-3)
    quad = peak(simulate_cv(CellParams(e0_v=0.0, diffusion_cm2_s=4 * D), window()), +1)[1]
    assert quad == pytest.approx(2 * base, rel=0.01)


NICHOLSON_PSI = [0.1, 0.25, 0.35, 0.5, 0.75, 1.0, 2.0, 3.0, 5.0, 20.0]
NICHOLSON_DEP_MV = [212, 141, 121, 105, 92, 84, 72, 68, 65, 61]


@pytest.mark.parametrize("k0", [0.003, 0.01, 0.03])
def test_slow_kinetics_follow_nicholson(k0: float) -> None:
    rate = 0.1
    f = FARADAY / (GAS_CONSTANT * 298.15)
    psi = k0 / math.sqrt(math.pi * D * f * rate)  # D_O = D_R
    expected_mv = np.interp(math.log(psi), np.log(NICHOLSON_PSI), NICHOLSON_DEP_MV)
    dep = peak_separation(CellParams(e0_v=0.0, k0_cm_s=k0), CVParams(
        e_begin_v=-0.5, e_vertex1_v=0.5, e_vertex2_v=-0.5, scan_rate_v_s=rate))
    assert 1e3 * dep == pytest.approx(expected_mv, abs=10)


def test_peak_separation_scales_with_temperature() -> None:
    cold = peak_separation(CellParams(e0_v=0.0), window())
    hot = peak_separation(CellParams(e0_v=0.0, temperature_k=348.15), window())
    assert hot / cold == pytest.approx(348.15 / 298.15, rel=0.03)


def test_empty_cell_gives_only_charging_current() -> None:
    cdl = 2e-5
    params = window()
    v = simulate_cv(CellParams(e0_v=0.0, conc_mm=0.0, cdl_f_cm2=cdl), params)
    expected = cdl * AREA * params.scan_rate_v_s
    for segment in v.segments():
        np.testing.assert_allclose(v.current_a[segment.index], segment.direction * expected, rtol=1e-9)


def test_ohmic_drop_delays_charging_but_not_its_plateau() -> None:
    cdl, params = 2e-5, window()
    v = simulate_cv(CellParams(e0_v=0.0, conc_mm=0.0, cdl_f_cm2=cdl, ru_ohm=2000.0), params)
    plateau = cdl * AREA * params.scan_rate_v_s
    reverse = v.segments()[1]
    i = -v.current_a[reverse.index]  # cathodic-going sweep: charging current is negative
    assert np.all(i <= plateau * (1 + 1e-9))
    assert i[0] < 0.99 * plateau  # RC relaxation after the vertex
    assert i[-1] == pytest.approx(plateau, rel=1e-6)


def test_uncompensated_resistance_widens_peak_separation() -> None:
    ip = randles_sevcik(0.1)
    dep = {ru: peak_separation(CellParams(e0_v=0.0, ru_ohm=ru), window()) for ru in (0.0, 300.0, 1000.0)}
    assert dep[0.0] < dep[300.0] < dep[1000.0]
    widening = dep[1000.0] - dep[0.0]
    assert ip * 1000.0 < widening < 3 * ip * 1000.0  # each peak moves by about its own i * Ru


def test_overload_clips_at_range_and_flags_points() -> None:
    cell = CellParams(e0_v=0.0)
    free = simulate_cv(cell, window())
    limit = 0.5 * float(np.abs(free.current_a).max())
    clipped = simulate_cv(cell, window(current_range_a=limit))
    over = np.abs(free.current_a) >= limit
    assert over.any()
    np.testing.assert_array_equal(clipped.overload, over)
    np.testing.assert_allclose(np.abs(clipped.current_a[over]), limit)
    np.testing.assert_array_equal(clipped.current_a[~over], free.current_a[~over])
    assert not free.overload.any()


def test_noise_is_a_fraction_of_the_current_range_and_seeded() -> None:
    clean = simulate_cv(CellParams(e0_v=0.0), window(current_range_a=1e-4))
    noisy_cell = CellParams(e0_v=0.0, noise_fraction=0.01)
    a = simulate_cv(noisy_cell, window(current_range_a=1e-4), np.random.default_rng(7))
    b = simulate_cv(noisy_cell, window(current_range_a=1e-4), np.random.default_rng(7))
    np.testing.assert_array_equal(a.current_a, b.current_a)
    assert np.std(a.current_a - clean.current_a) == pytest.approx(1e-6, rel=0.1)
    autorange = simulate_cv(noisy_cell, window(), np.random.default_rng(7))  # no range: fraction of max |i|
    expected = 0.01 * np.abs(clean.current_a).max()
    assert np.std(autorange.current_a - clean.current_a) == pytest.approx(expected, rel=0.1)


def test_output_is_a_voltammogram_on_the_requested_scale() -> None:
    params = window(n_scans=2)
    v = simulate_cv(CellParams(e0_v=0.0), params, reference="Fc+/Fc")
    t, e = params.waveform()
    assert v.reference == "Fc+/Fc" and v.params == params
    np.testing.assert_array_equal(v.potential_v, e)
    np.testing.assert_array_equal(v.time_s, t)
    second_scan_peak = v.current_a[len(v) // 2 :].max()
    assert second_scan_peak < v.current_a[: len(v) // 2].max()  # depletion: the second scan is smaller


def test_waveform_follows_meas_loop_cv() -> None:
    params = CVParams(e_begin_v=0.0, e_vertex1_v=0.5, e_vertex2_v=-0.5, e_step_v=0.01, scan_rate_v_s=0.1)
    t, e = params.waveform()
    assert params.n_points == len(e) == 201
    assert e[0] == e[-1] == 0.0
    assert e[50] == pytest.approx(0.5) and e[150] == pytest.approx(-0.5)
    assert e.max() == pytest.approx(0.5) and e.min() == pytest.approx(-0.5)
    np.testing.assert_allclose(np.diff(t), 0.1)
    np.testing.assert_allclose(np.abs(np.diff(e)), 0.01, atol=1e-12)


@pytest.mark.parametrize(("field", "kwargs"), [
    ("e_step_v", {"e_step_v": 0.0}),
    ("scan_rate_v_s", {"scan_rate_v_s": -0.1}),
    ("e_vertex2_v", {"e_vertex1_v": 0.5, "e_vertex2_v": 0.5}),
    ("e_begin_v", {"e_begin_v": 0.9}),
    ("n_scans", {"n_scans": 0}),
    ("current_range_a", {"current_range_a": 0.0}),
    ("e_vertex1_v", {"e_vertex1_v": float("nan")}),
])
def test_invalid_cv_params_name_the_field(field: str, kwargs: dict) -> None:
    base = {"e_begin_v": 0.0, "e_vertex1_v": 0.5, "e_vertex2_v": -0.5, "scan_rate_v_s": 0.1}
    with pytest.raises(InvalidParameter, match=f"^{field}:") as info:
        CVParams(**{**base, **kwargs})
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)


@pytest.mark.parametrize(("field", "kwargs"), [
    ("k0_cm_s", {"k0_cm_s": 0.0}),
    ("alpha", {"alpha": 1.0}),
    ("conc_mm", {"conc_mm": -1.0}),
    ("diffusion_cm2_s", {"diffusion_cm2_s": float("inf")}),
    ("ru_ohm", {"ru_ohm": -5.0}),
    ("temperature_k", {"temperature_k": 0.0}),
    ("species", {"species": "neutral"}),
])
def test_invalid_cell_params_name_the_field(field: str, kwargs: dict) -> None:
    with pytest.raises(InvalidParameter, match=f"^{field}:"):
        CellParams(e0_v=0.0, **kwargs)


EC_SCAN = CVParams(e_begin_v=-0.4, e_vertex1_v=0.4, e_vertex2_v=-0.4, scan_rate_v_s=0.1, e_step_v=0.001)


def forward_peak(cell: CellParams, params: CVParams = EC_SCAN) -> tuple[float, float]:
    """(potential, |current|) of the first sweep's peak."""
    v = simulate_cv(cell, params)
    first = v.current_a[: len(v.current_a) // 2] * (1 if cell.species == "reduced" else -1)
    k = int(np.argmax(first))
    return float(v.potential_v[k]), float(first[k])


def test_a_product_that_barely_reacts_gives_the_one_species_solution_back() -> None:
    """The two-grid EC path (sim/cv_physics.py) against the one-species path it generalises."""
    stable = simulate_cv(CellParams(e0_v=0.0), EC_SCAN).current_a
    barely = simulate_cv(CellParams(e0_v=0.0, follow_up_per_s=1e-12), EC_SCAN).current_a
    assert np.abs(barely - stable).max() < 1e-9 * np.abs(stable).max()


@pytest.mark.parametrize("species", ["reduced", "oxidized"])
def test_a_fast_follow_up_moves_the_forward_peak_as_nicholson_and_shain(species: str) -> None:
    """EC mechanism, pure kinetic zone (Nicholson & Shain, Anal. Chem. 36 (1964) 706): the forward peak moves
    RT ln(10) / 2F (29.6 mV at 25 C) per decade of the follow-up rate, ahead of the sweep, and its current is
    0.4958 / 0.4463 of the reversible couple's."""
    scan = EC_SCAN if species == "reduced" else CVParams(e_begin_v=0.4, e_vertex1_v=-0.4, e_vertex2_v=0.4,
                                                          scan_rate_v_s=0.1, e_step_v=0.001)
    ahead = 1 if species == "reduced" else -1  # an oxidation's peak moves to lower potentials, a reduction's higher
    (e_100, _), (e_1000, i_1000) = (forward_peak(CellParams(e0_v=0.0, species=species, follow_up_per_s=k), scan)
                                        for k in (100.0, 1000.0))
    decade_v = GAS_CONSTANT * 298.15 * math.log(10) / (2 * FARADAY)
    assert ahead * (e_100 - e_1000) == pytest.approx(decade_v, abs=0.002)
    _, reversible = forward_peak(CellParams(e0_v=0.0, species=species), scan)
    assert i_1000 / reversible == pytest.approx(0.4958 / 0.4463, rel=0.02)
