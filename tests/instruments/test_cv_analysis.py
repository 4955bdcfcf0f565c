"""CV analysis against voltammograms whose truth is known: simulated couples with noise and artefacts.

Also covers the voltammogram value type's own behaviour (sweeps, JSON round trip, validation), which the
analysis and the journal rely on.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from labloop.core.errors import InvalidParameter
from labloop.instruments.cv_analysis import (
    BlankResult,
    CVAnalysisSettings,
    CVFlag,
    CVResult,
    analyze_blank,
    analyze_couples,
    analyze_cv,
    inverted_peak_v,
    to_li_scale,
    unequal_return,
)
from labloop.instruments.voltammogram import CVParams, Voltammogram
from labloop.protocols.steps import Blank, parse_steps
from labloop.sim.cv_physics import CellParams, random_couple, simulate_cell, simulate_cv
from labloop.sim.emulation import DEFAULT_BLANK, DEFAULT_OXYGEN, oxygen_e0_vs_li_v

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

WIDE = CVParams(e_begin_v=-0.5, e_vertex1_v=0.5, e_vertex2_v=-0.5, scan_rate_v_s=0.1)
RANDLES_SEVCIK_1MM = 2.69e5 * 0.0707 * math.sqrt(1e-5) * 1e-6 * math.sqrt(0.1)  # A, defaults of CellParams


def test_recovers_e_half_within_5_mv_on_50_random_couples_at_1_percent_noise() -> None:
    rng = np.random.default_rng(2024)
    errors = []
    for _ in range(50):
        cell, params = random_couple(rng, noise_fraction=0.01)
        result = analyze_cv(simulate_cv(cell, params, rng))
        assert result.flags == frozenset(), (cell, result)
        assert result.reversibility == "reversible"
        errors.append(result.e_half_v - cell.e0_v)
    assert max(np.abs(errors)) < 0.005


@pytest.mark.parametrize("species", ["reduced", "oxidized"])
def test_reversible_couple_peak_currents_above_charging_baseline(species: str) -> None:
    start = -0.5 if species == "reduced" else 0.5
    params = CVParams(e_begin_v=start, e_vertex1_v=-start, e_vertex2_v=start, scan_rate_v_s=0.1)
    cdl = 2e-4  # charging current 7% of the peak, so an uncorrected peak current would be visibly off
    result = analyze_cv(simulate_cv(CellParams(e0_v=0.1, cdl_f_cm2=cdl, species=species), params))
    forward = result.ipa_a if species == "reduced" else -result.ipc_a
    assert forward == pytest.approx(RANDLES_SEVCIK_1MM, rel=0.02)
    assert result.ipa_a > 0 > result.ipc_a
    assert result.ratio == pytest.approx(1.0, abs=0.1)
    assert result.dep_v == pytest.approx(0.058, abs=0.002)
    assert result.e_half_v == pytest.approx(0.1, abs=0.002)
    assert result.reversibility == "reversible"


def _true_peaks(cell: CellParams, params: CVParams) -> tuple[float, float]:
    """(Epa, Epc) of ``cell`` under ``params`` without noise at 0.5 mV steps, each the vertex of the parabola through
    the sampled maximum and its two neighbours: the truth the analysis is held to, found without it."""
    fine = simulate_cv(cell, CVParams(**{**params.to_dict(), "e_step_v": 0.0005}))
    found = []
    for segment in fine.segments()[:2]:
        e, i = fine.potential_v[segment.index], segment.direction * fine.current_a[segment.index]
        k = int(np.argmax(i))
        bend = i[k - 1] - 2 * i[k] + i[k + 1]
        found.append(float(e[k] + 0.5 * (i[k - 1] - i[k + 1]) / bend * (e[k + 1] - e[k])))
    return found[0], found[1]


@pytest.mark.parametrize("k0_cm_s", [1.0, 0.01])
def test_peak_potentials_lie_between_the_samples_at_a_coarse_step(k0_cm_s: float) -> None:
    """At 10 mV steps the peaks were read at the grid's sample (3 points within the parabola's 15 mV): dEp 2 mV wide
    of a reversible couple's, and E1/2 of a slow one 4 mV off."""
    cell = CellParams(e0_v=0.0, k0_cm_s=k0_cm_s, diffusion_cm2_s=1.5e-5, cdl_f_cm2=2e-5)
    params = CVParams(e_begin_v=-0.5, e_vertex1_v=0.5, e_vertex2_v=-0.5, scan_rate_v_s=0.1, e_step_v=0.01)
    epa, epc = _true_peaks(cell, params)
    result = analyze_cv(simulate_cv(cell, params))
    assert result.dep_v == pytest.approx(epa - epc, abs=0.0008)
    assert result.e_half_v == pytest.approx((epa + epc) / 2, abs=0.0005)


def test_ferrocenes_dep_scatters_little_at_5_mv_steps_and_a_small_wave() -> None:
    """The lab-grade protocol's ferrocene scan: 5 mV steps, ferrocene 0.2 mM beside a 1 mM analyte, so the noise
    (0.2 % of the analyte's current) is 0.9 % of ferrocene's peak. Read from a parabola through the raw points within
    15 mV, its dEp scattered by 2.5 mV (sd) down to 51 mV, below what a reversible couple can show (57 mV; an
    electrochemist's trial saw 53-56 mV in 5 of 8 dry-run experiments)."""
    ferrocene = CellParams(e0_v=0.0, k0_cm_s=1.0, diffusion_cm2_s=1.5e-5, conc_mm=0.2, cdl_f_cm2=2e-5)
    params = CVParams(e_begin_v=-0.8, e_vertex1_v=1.0, e_vertex2_v=-0.8, scan_rate_v_s=0.1, e_step_v=0.005)
    epa, epc = _true_peaks(ferrocene, params)
    clean = simulate_cv(ferrocene, params)
    sigma = 0.009 * float(np.abs(clean.current_a).max())
    rng = np.random.default_rng(57)
    deps = np.array([analyze_cv(replace(clean, current_a=clean.current_a + rng.normal(0.0, sigma, len(clean)))).dep_v
                     for _ in range(100)])
    assert abs(float(deps.mean()) - (epa - epc)) < 0.0015
    assert float(deps.std()) < 0.0018, 1e3 * deps.std()  # 2.5 mV from the parabola, 1.4 mV from the cubic
    assert float(deps.min()) > 0.054, 1e3 * deps.min()  # 51 and 55 mV


def test_empty_cell_has_no_peak() -> None:
    cell = CellParams(e0_v=0.0, conc_mm=0.0, cdl_f_cm2=2e-5, ru_ohm=200.0, noise_fraction=0.005)
    result = analyze_cv(simulate_cv(cell, CVParams(**{**WIDE.to_dict(), "current_range_a": 1e-6}),
                                    np.random.default_rng(3)))
    assert CVFlag.NO_PEAK in result.flags
    assert result.e_half_v is None and result.ipa_a is None and result.ipc_a is None
    assert result.reversibility is None


@pytest.mark.parametrize("k0", [1e-4, 1e-5])
def test_very_slow_couple_is_irreversible(k0: float) -> None:
    result = analyze_cv(simulate_cv(CellParams(e0_v=0.0, k0_cm_s=k0, noise_fraction=0.01), WIDE,
                                    np.random.default_rng(4)))
    assert result.reversibility == "irreversible"
    assert CVFlag.IRREVERSIBLE in result.flags
    assert result.dep_v > 0.2


def test_missing_return_peak_is_irreversible() -> None:
    # k0 = 1e-4: the return (cathodic) peak lies ~0.25 V below E0, outside this window
    params = CVParams(e_begin_v=-0.1, e_vertex1_v=0.5, e_vertex2_v=-0.1, scan_rate_v_s=0.1)
    result = analyze_cv(simulate_cv(CellParams(e0_v=0.0, k0_cm_s=1e-4, noise_fraction=0.01), params,
                                    np.random.default_rng(5)))
    assert result.epa_v is not None and result.epc_v is None
    assert result.e_half_v is None and result.ratio is None
    assert result.reversibility == "irreversible" and CVFlag.IRREVERSIBLE in result.flags


@pytest.mark.parametrize(("e0_v", "species"), [(0.55, "reduced"), (-0.55, "oxidized")])
def test_a_wave_beyond_the_vertex_is_not_called_irreversible(e0_v: float, species: str) -> None:
    """The scan turns before the forward peak, so only the return wave (of what the forward sweep made near
    the vertex) is seen: the couple's potential lies beyond the window, which an irreversible flag hid
    (a newcomer's trial: screens of hard-to-oxidise molecules failed as 'irreversible')."""
    start = -0.5 if species == "reduced" else 0.5
    params = CVParams(e_begin_v=start, e_vertex1_v=-start, e_vertex2_v=start, scan_rate_v_s=0.1)
    scan = simulate_cv(CellParams(e0_v=e0_v, noise_fraction=0.01, species=species), params, np.random.default_rng(8))
    result = analyze_cv(scan)
    forward = result.epa_v if species == "reduced" else result.epc_v
    assert forward is None and result.e_half_v is None
    assert CVFlag.BEYOND_WINDOW in result.flags and CVFlag.IRREVERSIBLE not in result.flags
    assert result.reversibility is None  # the return wave alone judges no couple (it read "irreversible")
    assert inverted_peak_v(scan) is None  # its return wave has the right sign: a run blames the window, not the driver
    # what the failed scan still says (the residual model learns from it): the couple lies beyond the vertex,
    # by a bound no more than the peak's room (28.5 mV past E1/2, one smoothing window) inside it
    quantity, other = (("oxidation_potential", "reduction_potential") if species == "reduced"
                       else ("reduction_potential", "oxidation_potential"))
    bound, side = result.bound(quantity)
    assert side == (1 if species == "reduced" else -1)
    assert side * (e0_v - bound) > 0 and 0 < side * (-start - bound) <= 0.0285 + 0.021 + 1e-9
    assert result.bound(other) is None
    assert CVResult.from_dict(json.loads(json.dumps(result.to_dict()))).bound(quantity) == (bound, side)
    assert result.on_li_scale(3.2).bound(quantity) == (pytest.approx(bound + 3.2), side)
    inside = analyze_cv(simulate_cv(CellParams(e0_v=e0_v / 2, noise_fraction=0.01, species=species), params,
                                    np.random.default_rng(8)))
    assert CVFlag.BEYOND_WINDOW not in inside.flags and inside.reversibility == "reversible"
    assert inside.bounds == ()


def test_slow_but_not_irreversible_couple_is_quasi_reversible() -> None:
    result = analyze_cv(simulate_cv(CellParams(e0_v=0.0, k0_cm_s=0.003, noise_fraction=0.01), WIDE,
                                    np.random.default_rng(6)))
    assert result.reversibility == "quasi-reversible"
    assert result.flags == frozenset()
    assert 0.08 < result.dep_v < 0.2


def test_overload_is_flagged() -> None:
    params = CVParams(**{**WIDE.to_dict(), "current_range_a": 0.5 * RANDLES_SEVCIK_1MM})
    result = analyze_cv(simulate_cv(CellParams(e0_v=0.0), params))
    assert CVFlag.OVERLOAD in result.flags
    clean = analyze_cv(simulate_cv(CellParams(e0_v=0.0), WIDE))
    assert CVFlag.OVERLOAD not in clean.flags


def test_noise_estimate_and_noisy_flag() -> None:
    rng = np.random.default_rng(8)
    for fraction in (0.01, 0.1):
        v = simulate_cv(CellParams(e0_v=0.0, noise_fraction=fraction),
                        CVParams(**{**WIDE.to_dict(), "current_range_a": 2e-5}), rng)
        result = analyze_cv(v)
        true_snr = RANDLES_SEVCIK_1MM / (fraction * 2e-5)
        assert result.snr == pytest.approx(true_snr, rel=0.2)
        assert (CVFlag.NOISY in result.flags) == (fraction == 0.1)


def test_coarse_steps_and_repeated_scans_still_give_e_half() -> None:
    coarse = CVParams(**{**WIDE.to_dict(), "e_step_v": 0.005})
    repeated = CVParams(**{**WIDE.to_dict(), "n_scans": 3})
    for params in (coarse, repeated):
        result = analyze_cv(simulate_cv(CellParams(e0_v=0.12, noise_fraction=0.01), params,
                                        np.random.default_rng(9)))
        assert result.e_half_v == pytest.approx(0.12, abs=0.005)


def test_li_scale_conversion() -> None:
    assert to_li_scale(0.30, 3.20) == pytest.approx(3.50)
    result = analyze_cv(simulate_cv(CellParams(e0_v=0.1), WIDE, reference="Fc+/Fc"))
    on_li = result.on_li_scale(3.2)
    assert on_li.reference == "Li/Li+" and result.reference == "Fc+/Fc"
    assert on_li.e_half_v == pytest.approx(result.e_half_v + 3.2)
    assert on_li.epa_v == pytest.approx(result.epa_v + 3.2)
    assert on_li.dep_v == result.dep_v and on_li.ipa_a == result.ipa_a


def test_result_round_trips_through_json() -> None:
    noisy_empty = analyze_cv(simulate_cv(CellParams(e0_v=0.0, conc_mm=0.0, noise_fraction=0.01),
                                         CVParams(**{**WIDE.to_dict(), "current_range_a": 1e-6}),
                                         np.random.default_rng(10)))
    t, e = WIDE.waveform()
    flat = Voltammogram(potential_v=e, current_a=np.full(len(e), 1e-7), time_s=t, params=WIDE,
                        reference="Li/Li+")
    noise_free = analyze_cv(flat)  # no noise at all: infinite SNR, stored as null
    for result in (analyze_cv(simulate_cv(CellParams(e0_v=0.0), WIDE)), noisy_empty, noise_free):
        assert CVResult.from_dict(json.loads(json.dumps(result.to_dict(), allow_nan=False))) == result
    assert CVFlag.NO_PEAK in noisy_empty.to_dict()["flags"]
    assert noise_free.snr == math.inf and noise_free.to_dict()["snr"] is None


def test_invalid_settings_name_the_field() -> None:
    with pytest.raises(InvalidParameter, match=r"^smooth_window_v:"):
        CVAnalysisSettings(smooth_window_v=0.0)
    with pytest.raises(InvalidParameter, match=r"^baseline_to_v:"):
        CVAnalysisSettings(baseline_to_v=0.5)
    with pytest.raises(InvalidParameter, match=r"^min_return_share: a share of the forward peak, at most 1, got 50 "):
        CVAnalysisSettings(min_return_share=50)  # 50% meant: every couple would have been flagged


def test_voltammogram_sweeps_and_json_round_trip() -> None:
    params = CVParams(**{**WIDE.to_dict(), "current_range_a": 1e-5})
    v = simulate_cv(CellParams(e0_v=0.0, noise_fraction=0.01), params, np.random.default_rng(11))
    sweeps = v.segments()
    assert [s.direction for s in sweeps] == [1, -1]
    assert sweeps[0].start == 0 and sweeps[-1].stop == len(v) - 1
    assert sweeps[1].start == sweeps[0].stop + 1
    assert v.potential_v[sweeps[0].stop] == pytest.approx(0.5)  # the vertex ends the sweep arriving at it
    back = Voltammogram.from_dict(json.loads(json.dumps(v.to_dict())))
    assert v.any_overload
    for name in ("potential_v", "current_a", "time_s", "overload"):
        np.testing.assert_array_equal(getattr(back, name), getattr(v, name))
    assert back.params == v.params and back.reference == v.reference
    with pytest.raises(ValueError, match="read-only"):
        v.current_a[0] = 1.0


def test_voltammogram_rejects_inconsistent_arrays() -> None:
    with pytest.raises(InvalidParameter, match=r"^current_a:"):
        Voltammogram(potential_v=[0.0, 0.1, 0.2], current_a=[0.0, 1.0], time_s=[0, 1, 2], params=WIDE,
                     reference="Ag/Ag+")
    with pytest.raises(InvalidParameter, match=r"^reference:"):
        Voltammogram(potential_v=[0.0, 0.1], current_a=[0.0, 1.0], time_s=[0, 1], params=WIDE, reference="")


@pytest.mark.parametrize("species", ["reduced", "oxidized"])
@pytest.mark.parametrize("past_v", [0.15, 0.2, 0.3, 0.45, 0.7])
def test_reversible_ratio_is_one_wherever_the_vertex_sits(species: str, past_v: float) -> None:
    """The return peak's baseline is the forward decay extrapolated: a reversible couple reads 1 whether its
    E1/2 lies 150 mV or 700 mV before the vertex (a straight baseline read 0.79-1.26 over this range)."""
    start = -0.5 if species == "reduced" else 0.5
    params = CVParams(e_begin_v=start, e_vertex1_v=-start, e_vertex2_v=start, scan_rate_v_s=0.1)
    cell = CellParams(e0_v=-start - math.copysign(past_v, -start), cdl_f_cm2=2e-5, species=species)
    result = analyze_cv(simulate_cv(cell, params))
    assert result.ratio == pytest.approx(1.0, abs=0.02)
    assert result.reversibility == "reversible" and result.flags == frozenset()


@pytest.mark.parametrize("species", ["reduced", "oxidized"])
def test_a_vertex_too_close_leaves_the_ratio_unjudged(species: str) -> None:
    """E1/2 only 60 mV before the vertex: the ratio (a straight baseline read 0.79 or 1.26) is not reported, the
    return peak's current neither, and E1/2 still is."""
    start = -0.5 if species == "reduced" else 0.5
    params = CVParams(e_begin_v=start, e_vertex1_v=-start, e_vertex2_v=start, scan_rate_v_s=0.1)
    result = analyze_cv(simulate_cv(CellParams(e0_v=-start * 0.88, species=species), params))
    assert result.ratio is None and result.e_half_v == pytest.approx(-start * 0.88, abs=0.005)
    assert (result.ipc_a if species == "reduced" else result.ipa_a) is None
    assert result.reversibility == "reversible" and result.flags == frozenset()


@pytest.mark.parametrize(("e0_v", "species"), [(0.55, "oxidized"), (0.8, "oxidized"), (-0.55, "reduced")])
def test_a_wave_before_the_scan_start_is_said_to_be_outside_the_window(e0_v: float, species: str) -> None:
    """A molecule reduced already at the start of a cathodic scan (or oxidised at the start of an anodic one)
    shows only a decaying current, no peak: its wave lies at the window's start edge, which ``no_peak`` hid."""
    start = 0.5 if species == "oxidized" else -0.5
    params = CVParams(e_begin_v=start, e_vertex1_v=-start, e_vertex2_v=start, scan_rate_v_s=0.1)
    result = analyze_cv(simulate_cv(CellParams(e0_v=e0_v, cdl_f_cm2=2e-5, noise_fraction=0.005, species=species),
                                    params, np.random.default_rng(9)))
    assert result.e_half_v is None
    assert result.flags == {CVFlag.AT_SCAN_START}
    # the couple lies before the start: above it for a cathodic start (a reduction), below an anodic one
    quantity = "reduction_potential" if species == "oxidized" else "oxidation_potential"
    bound, side = result.bound(quantity)
    assert side == (1 if species == "oxidized" else -1)
    assert side * (e0_v - bound) > 0 and abs(bound - start) <= 0.021 + 1e-9
    inside = analyze_cv(simulate_cv(CellParams(e0_v=start * 0.8, cdl_f_cm2=2e-5, noise_fraction=0.005,
                                               species=species), params, np.random.default_rng(9)))
    assert inside.flags == frozenset() and inside.reversibility == "reversible"
    assert inside.bounds == ()


@pytest.mark.parametrize("species", ["reduced", "oxidized"])
def test_a_couple_just_inside_the_start_is_cut_by_the_window_not_irreversible(species: str) -> None:
    """E1/2 35 mV inside the scan's start: the forward peak is found, the return peak lies beyond the scan's end
    (which is its start), and the couple read "irreversible", a failure of the molecule (a chemist's trial): it is
    the window that cut it, said as at_scan_start with the side E1/2 lies on, and the couple is not judged. 80 mV
    inside, both peaks are found but the forward one has no room before it for its baseline: E1/2 stands, the
    ratio (1.19 for this reversible couple, read as quasi-reversible) is not judged."""
    start = -0.8 if species == "reduced" else 0.8
    direction = 1 if species == "reduced" else -1  # of the first sweep
    params = CVParams(e_begin_v=start, e_vertex1_v=-start, e_vertex2_v=start, scan_rate_v_s=0.1)

    def analysed(inside_v: float):
        couple = CellParams(e0_v=start + direction * inside_v, cdl_f_cm2=2e-5, noise_fraction=0.005, species=species)
        return analyze_cv(simulate_cv(couple, params, np.random.default_rng(9)))

    cut = analysed(0.035)
    assert cut.flags == {CVFlag.AT_SCAN_START} and cut.reversibility is None, cut
    assert (cut.epa_v if species == "reduced" else cut.epc_v) is not None  # the forward peak, found
    bound, side = cut.bound("oxidation_potential" if species == "reduced" else "reduction_potential")
    e0_v = start + direction * 0.035
    assert side == -direction and side * (e0_v - bound) > 0 and abs(bound - e0_v) < 0.03  # the start's side
    near = analysed(0.08)
    assert near.flags == frozenset() and near.ratio is None and near.reversibility == "reversible", near
    assert near.e_half_v == pytest.approx(start + direction * 0.08, abs=0.002)
    inside = analysed(0.3)  # room for every baseline: judged as before
    assert inside.flags == frozenset() and inside.ratio == pytest.approx(1.0, abs=0.05)
    assert inside.reversibility == "reversible" and inside.bounds == ()


def test_a_second_couple_keeps_the_straight_return_baseline() -> None:
    """An analyte and a standard in one scan: each one's forward tail carries the other's wave, which the decay
    extrapolation would take for its own (the analyte read 1.36); the straight baseline reads both near 1."""
    params = CVParams(e_begin_v=-0.6, e_vertex1_v=0.8, e_vertex2_v=-0.6, scan_rate_v_s=0.1)
    couples = analyze_couples(simulate_cell([CellParams(e0_v=-0.2, cdl_f_cm2=2e-5), CellParams(e0_v=0.4)], params))
    assert [round(c.e_half_v, 2) for c in couples] == [0.4, -0.2]
    assert all(c.ratio == pytest.approx(1.0, abs=0.1) and c.reversibility == "reversible" for c in couples), couples


@pytest.mark.parametrize("apart_v", [0.15, 0.2, 0.3, 0.45])
def test_two_oxidations_in_one_scan_are_each_paired_with_their_own_return(apart_v: float) -> None:
    """Two oxidations (an EE couple, an impurity's wave) were paired across the waves: an E1/2 between them, dEp
    199-507 mV read quasi-reversible or irreversible, and a couple of dEp -85 mV (an electrochemist's trial)."""
    params = CVParams(e_begin_v=-0.4, e_vertex1_v=apart_v + 0.4, e_vertex2_v=-0.4, scan_rate_v_s=0.1, e_step_v=0.002)
    v = simulate_cell([CellParams(e0_v=0.0), CellParams(e0_v=apart_v)], params)
    main = analyze_cv(v)
    assert min(abs(main.e_half_v), abs(main.e_half_v - apart_v)) < 0.005, main  # one of the two couples, whole
    assert 0.05 < main.dep_v < 0.065 and CVFlag.IRREVERSIBLE not in main.flags, main
    couples = analyze_couples(v)
    assert [c.e_half_v for c in couples] == pytest.approx([apart_v, 0.0], abs=0.005), couples
    assert all(0.05 < c.dep_v < 0.065 for c in couples), couples


# -- the blank ---------------------------------------------------------------------------------------------
def _example_blank() -> tuple[CellParams, CellParams, CVParams, Blank, dict]:
    """The dry run of examples/lab-grade.yaml's blank: the emulated electrode in plain electrolyte (its 0.2 % noise,
    the world's Ru), its O2 couple where that world's reference puts it (air-saturated, ``world.oxygen_mm``), the
    shipped protocol's blank step and scan, and the campaign's ``cell``."""
    campaign = yaml.safe_load((EXAMPLES / "lab-grade.yaml").read_text())
    world, cell = campaign["world"], campaign["cell"]
    step = next(s for s in parse_steps(yaml.safe_load((EXAMPLES / campaign["protocol"]).read_text()))
                if isinstance(s, Blank))
    oxygen_e0_v = oxygen_e0_vs_li_v(tuple(cell["oxygen_onset_v"])) - world["reference_offset_v"]
    return (replace(DEFAULT_BLANK, ru_ohm=world["ru_ohm"]),
            replace(DEFAULT_OXYGEN, e0_v=oxygen_e0_v, conc_mm=world["oxygen_mm"]), step.params(), step, cell)


def _judge(v: Voltammogram, step: Blank, cell: dict) -> frozenset[CVFlag]:
    return analyze_blank(v, step.max_current_a, reference_offset_v=cell["reference_offset_v"],
                         oxygen_onset_vs_li_v=tuple(cell["oxygen_onset_v"])).flags


def test_a_flat_blank_at_the_lab_grade_examples_levels_is_never_oxygen_nor_contaminated() -> None:
    """A dry run of examples/lab-grade.yaml stopped at experiment 9 for a blank that was charging current and noise
    (0.28 nA of it on 141 nA): a 1.0 nA reduction wiggle was taken for O2, then a 0.96 nA oxidation one for
    contamination. Their prominence, the sweep's whole noise range, cleared 5 noise sigmas in about 1 blank in 100.
    Ru is left out, as it changes none of a blank's currents (by 1e-15 A: 500 ohm on the electrode's 1.4 uF is a
    0.7 ms time constant, against 50 ms a point) and triples the time a scan takes to simulate."""
    electrode, _, params, step, cell = _example_blank()
    electrode = replace(electrode, ru_ohm=0.0)
    called = {seed: sorted(flags) for seed in range(100)
              if (flags := _judge(simulate_cell([electrode], params, np.random.default_rng(seed)), step, cell))}
    assert called == {}


@pytest.mark.parametrize("left", [1.0, 0.01])
def test_oxygen_in_the_blank_is_still_caught(left: float) -> None:
    """The example's air-saturated electrolyte (``world.oxygen_mm``, 2 mM) and a purge that left 1 % of it: a wave
    of 34 uA and one of some 0.4 uA, both O2, neither contamination."""
    electrode, oxygen, params, step, cell = _example_blank()
    oxygen = replace(oxygen, conc_mm=left * oxygen.conc_mm)
    for seed in range(3):
        v = simulate_cell([electrode, oxygen], params, np.random.default_rng(seed))
        assert _judge(v, step, cell) == {CVFlag.OXYGEN}


@pytest.mark.parametrize("e0_v", [-0.5, 0.5, 1.5])
def test_a_small_contaminant_in_the_blank_is_still_caught(e0_v: float) -> None:
    """2 uM of a reversible couple (0.2 % of a 1 mM analyte carried over by a rinse) anywhere in the blank's window:
    a wave of 40-110 nA over 141 nA of charging current, 0.2-0.6 % of the analyte's own 19 uA peak, is contamination."""
    electrode, _, params, step, cell = _example_blank()
    leftover = CellParams(e0_v=e0_v, conc_mm=0.002, area_cm2=electrode.area_cm2)
    for seed in range(3):
        v = simulate_cell([electrode, leftover], params, np.random.default_rng(seed))
        assert _judge(v, step, cell) == {CVFlag.CONTAMINATED}


@pytest.mark.parametrize("e0_v", [-0.5, 0.5, 1.5])
def test_a_blank_says_where_its_contaminant_and_its_oxygen_are_and_how_large(e0_v: float) -> None:
    """The stop for a contaminated blank said its largest current alone ("largest current 3.1e-07 A"), not where
    the wave to look for was: the blank's judgement keeps the contaminant's oxidation wave (where it peaks, some
    29 mV past E0 for a reversible one-electron couple, and its height over its baseline) and O2's wave's height
    beside where it sets in, for the message a person reads (protocols/executor.py ``ProtocolExecutor._blank``)."""
    electrode, oxygen, params, step, cell = _example_blank()

    def judged(*couples: CellParams) -> BlankResult:
        v = simulate_cell([electrode, *couples], params, np.random.default_rng(0))
        return analyze_blank(v, step.max_current_a, reference_offset_v=cell["reference_offset_v"],
                             oxygen_onset_vs_li_v=tuple(cell["oxygen_onset_v"]))

    dirty = judged(CellParams(e0_v=e0_v, conc_mm=0.002, area_cm2=electrode.area_cm2))
    assert dirty.flags == {CVFlag.CONTAMINATED} and dirty.contamination_v == pytest.approx(e0_v + 0.029, abs=0.01)
    assert 10e-9 < dirty.contamination_wave_a < dirty.max_current_a  # a 2 uM couple's peak over the charging
    assert (dirty.oxygen_v, dirty.oxygen_a) == (None, None)
    assert dirty.to_dict()["contamination_v"] == dirty.contamination_v
    for left, height in ((1.0, 34e-6), (0.01, 0.4e-6)):  # air-saturated, and a purge that left 1 % of it
        unpurged = judged(replace(oxygen, conc_mm=left * oxygen.conc_mm))
        assert unpurged.flags == {CVFlag.OXYGEN} and unpurged.oxygen_a == pytest.approx(height, rel=0.2)
        assert (unpurged.contamination_v, unpurged.contamination_wave_a) == (None, None)



def test_a_scan_whose_current_sign_is_reversed_is_said_to_look_inverted() -> None:
    """A driver reporting anodic current negative (against IUPAC) gave scans with no peak of the right sign, which a
    run failed as no_peak, "the sample gave no signal" (a plug-in author's trial): the mirror image of a simulated
    couple shows its anodic peak as a cathodic-signed one on the anodic sweep, found where the couple's lies; one that
    reads beyond_window bounds no potential (a bound beyond the vertex taught the model a wrong one)."""
    rng = np.random.default_rng(11)
    read = []
    for _ in range(30):
        cell, params = random_couple(rng, noise_fraction=0.01)
        scan = simulate_cv(cell, params, rng)
        assert inverted_peak_v(scan) is None  # the right sign: its own peaks
        mirrored = replace(scan, current_a=-scan.current_a)
        result = analyze_cv(mirrored)
        read.append(result.flags)
        assert inverted_peak_v(mirrored) == pytest.approx(cell.e0_v, abs=0.06), cell
        assert result.bounds == ()  # nothing learnt from it: its tail's climb into the vertex is no bound
    # most read no_peak, some beyond_window (their mirrored tail climbs the vertex), which a run says the same way
    assert {frozenset({CVFlag.NO_PEAK}), frozenset({CVFlag.BEYOND_WINDOW})} == set(read)


@pytest.mark.parametrize("cell", [
    replace(DEFAULT_BLANK, noise_fraction=0.01),  # electrolyte alone: charging current and noise
    replace(DEFAULT_BLANK, noise_fraction=0.05),  # a noisy one
    CellParams(e0_v=0.0, conc_mm=0.002, cdl_f_cm2=2e-4, noise_fraction=0.05),  # a trace of analyte, lost in charging
], ids=["blank", "noisy-blank", "faint"])
def test_an_ordinary_scan_without_a_peak_never_reads_as_inverted(cell: CellParams) -> None:
    """The inverted-current hint needs a mirrored peak as prominent as a real one must be: no seed of a plain no_peak
    scan (a blank, a noisy one, a sample too faint to see) gives one."""
    for seed in range(40):
        scan = simulate_cv(cell, WIDE, np.random.default_rng(seed))
        assert CVFlag.NO_PEAK in analyze_cv(scan).flags, seed
        assert inverted_peak_v(scan) is None, seed


@pytest.mark.parametrize("species", ["reduced", "oxidized"])
def test_a_product_that_reacts_away_is_flagged_chemically_irreversible(species: str) -> None:
    """EC couples (an electrochemist's trial): a return peak a quarter of the forward one read "quasi-reversible"
    with no flag, and the molecule, unstable once oxidised, could count as a hit."""
    anodic_first = species == "reduced"
    params = CVParams(e_begin_v=-0.4 if anodic_first else 0.4, e_vertex1_v=0.4 if anodic_first else -0.4,
                      e_vertex2_v=-0.4 if anodic_first else 0.4, scan_rate_v_s=0.1, e_step_v=0.002)

    def analysed(rate: float, settings: CVAnalysisSettings | None = None) -> CVResult:
        return analyze_cv(simulate_cv(CellParams(e0_v=0.0, species=species, follow_up_per_s=rate), params), settings)

    fast = analysed(1.0)
    returned = fast.ratio if anodic_first else 1 / fast.ratio
    assert 0.2 < returned < 0.3 and fast.flags == {CVFlag.CHEMICALLY_IRREVERSIBLE}, fast
    assert fast.return_share == pytest.approx(returned)
    assert CVResult.from_dict(json.loads(json.dumps(fast.to_dict()))) == fast
    # two cycles: the second's peaks are not another couple's waves (a reviewer found the flag lost with n_scans 2)
    twice = analyze_cv(simulate_cv(CellParams(e0_v=0.0, species=species, follow_up_per_s=1.0),
                                   replace(params, n_scans=2)))
    assert CVFlag.CHEMICALLY_IRREVERSIBLE in twice.flags, twice
    assert abs(fast.e_half_v) < 0.02  # the potential is still near E0: the flag is about the molecule's stability
    slow = analysed(0.1)  # 70% comes back: usable, and said apart
    assert 0.6 < (slow.ratio if anodic_first else 1 / slow.ratio) < 0.8 and slow.flags == frozenset(), slow
    # its electron transfer is Nernstian: reversible by dEp, the ratio the chemistry's (an electrochemist's review
    # found such a couple called quasi-reversible beside a k0 bound of "fast electron transfer")
    assert slow.reversibility == "reversible", slow
    assert unequal_return(slow) == (f"the return peak is {slow.return_share:.0%} of the forward one: part of what the "
                                    "scan made reacts on within the scan (a follow-up reaction)")
    assert unequal_return(fast) is None  # chemically_irreversible says it
    assert unequal_return(analysed(0.0)) is None  # a stable couple: nothing to say
    assert analysed(1.0, CVAnalysisSettings(min_return_share=0.2)).flags == frozenset()


@pytest.mark.parametrize("step_v", [0.002, 0.005, 0.01])
def test_a_scan_read_back_from_its_csv_gives_the_numbers_the_run_journalled(step_v: float) -> None:
    """voltammograms.csv writes potentials to 6 significant digits (-0.8 where the journal holds -0.7999999999999999),
    and a referee's re-analysis of it read dEp up to 1.5 mV and E1/2 0.5 mV off measurements.csv: the points the
    analysis counts within a distance (the peak fit's 40 mV, the baseline's 0.20-0.35 V) sit on whole steps of it,
    and a float's last digit decided whether the edge's point counted."""
    params = CVParams(e_begin_v=-0.8, e_vertex1_v=1.95, e_vertex2_v=-0.8, scan_rate_v_s=0.1, e_step_v=step_v)
    for seed, e0_v in ((0, 0.1), (1, 0.37), (2, 0.55)):
        journalled = simulate_cv(CellParams(e0_v=e0_v, noise_fraction=0.005), params, np.random.default_rng(seed))
        as_written = replace(journalled, potential_v=np.array([float(f"{x:.6g}") for x in journalled.potential_v]))
        before, again = analyze_cv(journalled), analyze_cv(as_written)
        assert again.e_half_v == pytest.approx(before.e_half_v, abs=1e-9), (seed, before, again)
        assert again.dep_v == pytest.approx(before.dep_v, abs=1e-9), (seed, before, again)
        assert again.ratio == pytest.approx(before.ratio, abs=1e-9), (seed, before, again)
