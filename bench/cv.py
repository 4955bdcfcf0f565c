"""Benchmark of the CV simulator and analysis; prints one JSON object.

Why: the emulated potentiostat simulates a CV for every experiment of a campaign (thousands per
accelerated test run), so simulation and analysis time are tracked here, together with how well the
analysis recovers E1/2 from noisy simulated data. Times are reported, never asserted.

The ``lab_grade`` part measures the acceptance numbers of the lab-grade protocol: Ru recovered from
impedance measured by the EmStat driver on the emulator over a real pty (50-5000 ohm); E1/2 at Ru = 1000
ohm, 1 mM, 0.1-1 V/s uncompensated, with 85% on-device compensation only, and with the remainder corrected
in the analysis; E vs ferrocene over a campaign whose reference electrode drifts within +/-50 mV, against
E vs the drifting reference; D from the Randles-Sevcik slope over 4 scan rates; the blank's O2 flag with and
without a purge. The CV parts call the emulator's physics (:func:`labloop.sim.cv_physics.simulate_cell`)
and the executor's analysis functions directly, which is what the emulator and the executor run
(tests/protocols/test_cv_lab_grade.py runs the same chain over the ptys).

Usage: python bench/cv.py [--runs N] [--couples N] [--seed S] [--lab-repeats N] [--drift-experiments N]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from labloop.instruments.contracts import SafetyLimits
from labloop.instruments.cv_analysis import (
    CVFlag,
    analyze_blank,
    analyze_couples,
    analyze_cv,
    randles_sevcik_diffusion,
    reference_to_ferrocene,
)
from labloop.instruments.emstat import EmStatPotentiostat
from labloop.instruments.impedance import EISParams, fit_ru
from labloop.instruments.voltammogram import CVParams
from labloop.protocols.executor import STANDARD_MARGIN_V, widened
from labloop.sim.cv_physics import CellParams, random_couple, simulate_cell, simulate_cv
from labloop.sim.emstat_emulator import EmStatEmulator
from labloop.sim.emulation import DEFAULT_FERROCENE, DEFAULT_OXYGEN, EmulatorContext
from labloop.sim.pty_device import PtyDevice, TimeScale

log = logging.getLogger(__name__)

#: 1 V of travel at 1 mV steps: 1001 points
THOUSAND_POINTS = CVParams(e_begin_v=-0.25, e_vertex1_v=0.25, e_vertex2_v=-0.25, scan_rate_v_s=0.1)


def median_ms(fn: Callable[[], object], runs: int) -> float:
    """Median wall time of ``fn()`` over ``runs`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def e_half_errors(n: int, seed: int) -> dict[str, float | int]:
    """E1/2 error statistics (mV) of the analysis on ``n`` random couples at 1% noise."""
    rng = np.random.default_rng(seed)
    errors, flagged = [], 0
    for _ in range(n):
        cell, params = random_couple(rng, noise_fraction=0.01)
        result = analyze_cv(simulate_cv(cell, params, rng))
        flagged += bool(result.flags)
        if result.e_half_v is not None:
            errors.append(1e3 * (result.e_half_v - cell.e0_v))
    err = np.array(errors)
    return {
        "n": n, "n_with_e_half": len(errors), "n_flagged": flagged,
        "mean_mv": round(float(err.mean()), 3), "std_mv": round(float(err.std()), 3),
        "max_abs_mv": round(float(np.abs(err).max()), 3),
        "p95_abs_mv": round(float(np.percentile(np.abs(err), 95)), 3),
    }


def stats(values: list[float], digits: int = 3) -> dict[str, float]:
    arr = np.asarray(values)
    return {"mean": round(float(arr.mean()), digits), "sd": round(float(arr.std()), digits),
            "max_abs": round(float(np.abs(arr).max()), digits)}


def ru_recovery(repeats: int) -> dict[str, object]:
    """Ru from EIS measured through the driver on the emulator (pty, zero latency), relative error in %."""
    limits = SafetyLimits(max_dispense_ml=1.0, syringe_ml=10.0, potential_window_v=(-1.0, 1.0))
    out: dict[str, object] = {"sweep": EISParams().to_dict(), "repeats": repeats}
    for ru in (50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0):
        errors = []
        for seed in range(repeats):
            couple = CellParams(e0_v=0.0, conc_mm=1.0, cdl_f_cm2=2e-5, noise_fraction=0.002, ru_ohm=ru)
            context = EmulatorContext.standalone(couple, time_scale=TimeScale.zero_latency())
            emulator = EmStatEmulator(context.contents, time_scale=context.time_scale, seed=seed)
            with PtyDevice(emulator, name="emstat") as device:
                driver = EmStatPotentiostat.open(device.port, limits=limits, time_scale=float("inf"))
                try:
                    spectrum = driver.run_eis(EISParams(e_dc_v=0.0 if seed % 2 == 0 else 0.3))
                finally:
                    driver.close()
            errors.append(100 * (fit_ru(spectrum).ru_ohm / ru - 1))
        out[f"{ru:g}_ohm_error_pct"] = stats(errors, 2)
    return out


def ir_compensation(repeats: int, rng: np.random.Generator) -> dict[str, object]:
    """E1/2 and dEp error (mV) at Ru = 1000 ohm, 1 mM: uncompensated, 85% on the device, 85% + remainder."""
    cell = CellParams(e0_v=0.0, conc_mm=1.0, cdl_f_cm2=2e-5, noise_fraction=0.002, ru_ohm=1000.0)
    out: dict[str, object] = {"ru_ohm": 1000.0, "conc_mm": 1.0, "repeats": repeats}
    for rate in (0.1, 0.2, 0.5, 1.0):
        params = CVParams(e_begin_v=-0.4, e_vertex1_v=0.4, e_vertex2_v=-0.4, scan_rate_v_s=rate)
        rows: dict[str, list[float]] = {k: [] for k in ("uncomp", "device_85", "device_85_plus_analysis")}
        dep: dict[str, list[float]] = {k: [] for k in rows}
        for _ in range(repeats):
            raw = analyze_cv(simulate_cell([cell], params, rng))
            compensated = simulate_cell([cell], replace(params, ir_comp_ohm=850.0), rng, compensated_ohm=850.0)
            for key, result in (("uncomp", raw), ("device_85", analyze_cv(compensated)),
                                ("device_85_plus_analysis", analyze_cv(compensated, ru_ohm=1000.0))):
                rows[key].append(1e3 * (result.e_half_v - cell.e0_v))
                dep[key].append(1e3 * result.dep_v)
        out[f"{rate:g}_v_s"] = {k: {"e_half_error_mv": stats(v, 2), "dep_mv_mean": round(float(np.mean(dep[k])), 1)}
                                for k, v in rows.items()}
    return out


def drifting_reference(n: int, rng: np.random.Generator) -> dict[str, object]:
    """A campaign of ``n`` experiments whose reference drifts within +/-50 mV (a slow sine plus noise): E vs
    Fc (converted to Li/Li+) against E vs the drifting reference, error in mV."""
    offset = 2.85  # the emulated reference vs Li/Li+ (labloop.sim.emulation.STANDALONE_REFERENCE_VS_LI_V)
    fc_expected = DEFAULT_FERROCENE.e0_v
    referenced, naive, flagged = [], [], 0
    for k in range(n):
        drift = float(np.clip(0.04 * np.sin(2 * np.pi * k / n) + rng.normal(0, 0.01), -0.05, 0.05))
        e0 = float(rng.uniform(-0.6, 0.05))  # at least 0.3 V from ferrocene
        analyte = CellParams(e0_v=e0, k0_cm_s=float(10 ** rng.uniform(-1.5, 0)), conc_mm=1.0,
                             diffusion_cm2_s=float(rng.uniform(0.7e-5, 1.5e-5)), cdl_f_cm2=2e-5,
                             noise_fraction=0.002)
        window = CVParams(e_begin_v=round(e0 - 0.4, 3), e_vertex1_v=round(e0 + 0.4, 3),
                          e_vertex2_v=round(e0 - 0.4, 3), scan_rate_v_s=0.1, e_step_v=0.002)
        alone = analyze_cv(simulate_cell([analyte], window, rng, reference_drift_v=drift))
        both = widened(window, fc_expected - STANDARD_MARGIN_V, fc_expected + STANDARD_MARGIN_V)
        fc = replace(DEFAULT_FERROCENE, conc_mm=1.0)
        couples = analyze_couples(simulate_cell([analyte, fc], both, rng, reference_drift_v=drift))
        result = reference_to_ferrocene(couples, alone.e_half_v if alone.e_half_v is not None else e0, fc_expected)
        truth = offset + e0
        if result.e_vs_li_v is None:
            flagged += 1
            continue
        referenced.append(1e3 * (result.e_vs_li_v - truth))
        naive.append(1e3 * (alone.e_half_v + offset - truth))
    within = [abs(e) <= 5.0 for e in referenced]
    return {"experiments": n, "drift_range_mv": "+/-50", "without_standard_value": flagged,
            "vs_fc_error_mv": stats(referenced, 2), "vs_reference_error_mv": stats(naive, 2),
            "vs_fc_within_5mv_share": round(sum(within) / max(1, len(within)), 3),
            "vs_reference_within_5mv_share": round(sum(abs(e) <= 5.0 for e in naive) / max(1, len(naive)), 3)}


def diffusion(repeats: int, rng: np.random.Generator) -> dict[str, object]:
    """D from 4 scan rates (0.05-0.5 V/s) on random reversible couples (1% noise): relative error in %."""
    errors = []
    rates = [0.05, 0.1, 0.2, 0.5]
    for _ in range(repeats):
        d = float(rng.uniform(0.5e-5, 2.5e-5))
        cell = CellParams(e0_v=0.0, conc_mm=float(rng.uniform(1, 5)), diffusion_cm2_s=d, cdl_f_cm2=2e-5,
                          noise_fraction=0.01)
        results = [analyze_cv(simulate_cell([cell], CVParams(e_begin_v=-0.4, e_vertex1_v=0.4, e_vertex2_v=-0.4,
                                                             scan_rate_v_s=r), rng)) for r in rates]
        estimate = randles_sevcik_diffusion(rates, results, area_cm2=cell.area_cm2, conc_mm=cell.conc_mm,
                                            forward="anodic")
        errors.append(100 * (estimate.diffusion_cm2_s / d - 1))
    return {"scan_rates_v_s": rates, "couples": repeats, "error_pct": stats(errors, 2)}


def oxygen_blank(repeats: int, rng: np.random.Generator) -> dict[str, object]:
    """Share of blanks flagged ``oxygen`` in an air-saturated cell (2 mM O2) and after a purge (O2 removed)."""
    electrode = CellParams(e0_v=0.0, conc_mm=0.0, cdl_f_cm2=2e-5, noise_fraction=0.002)
    params = CVParams(e_begin_v=0.0, e_vertex1_v=-1.0, e_vertex2_v=1.0, scan_rate_v_s=0.1, e_step_v=0.005)
    counts = {}
    for label, oxygen_mm in (("air_saturated", 2.0), ("purged", 0.0)):
        couples = [electrode] + ([replace(DEFAULT_OXYGEN, conc_mm=oxygen_mm)] if oxygen_mm else [])
        flags = [analyze_blank(simulate_cell(couples, params, rng), 2e-6).flags for _ in range(repeats)]
        counts[label] = {"oxygen_flagged": sum(CVFlag.OXYGEN in f for f in flags),
                         "contaminated_flagged": sum(CVFlag.CONTAMINATED in f for f in flags), "of": repeats}
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--couples", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lab-repeats", type=int, default=5)
    parser.add_argument("--drift-experiments", type=int, default=100)
    args = parser.parse_args()
    ideal = CellParams(e0_v=0.0, cdl_f_cm2=2e-5, noise_fraction=0.01)
    ohmic = CellParams(e0_v=0.0, cdl_f_cm2=2e-5, ru_ohm=500.0, noise_fraction=0.01)
    rng = np.random.default_rng(args.seed)
    voltammogram = simulate_cv(ideal, THOUSAND_POINTS, rng)
    print(json.dumps({
        "points": THOUSAND_POINTS.n_points,
        "runs": args.runs,
        "simulate_ms_median": round(
            median_ms(lambda: simulate_cv(ideal, THOUSAND_POINTS, rng), args.runs), 2),
        "simulate_with_ru_ms_median": round(
            median_ms(lambda: simulate_cv(ohmic, THOUSAND_POINTS, rng), args.runs), 2),
        "analyze_ms_median": round(median_ms(lambda: analyze_cv(voltammogram), args.runs), 2),
        "e_half_error_1pct_noise": e_half_errors(args.couples, args.seed),
        "lab_grade": {
            "ru_from_eis": ru_recovery(args.lab_repeats),
            "ir_compensation": ir_compensation(args.lab_repeats, rng),
            "drifting_reference": drifting_reference(args.drift_experiments, rng),
            "diffusion_4_rates": diffusion(4 * args.lab_repeats, rng),
            "oxygen_blank": oxygen_blank(args.lab_repeats, rng),
        },
    }, indent=2))


if __name__ == "__main__":
    main()
