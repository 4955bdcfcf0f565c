"""Benchmark of the CV simulator and analysis; prints one JSON object.

Why: the emulated potentiostat simulates a CV for every experiment of a campaign (thousands per
accelerated test run), so simulation and analysis time are tracked here, together with how well the
analysis recovers E1/2 from noisy simulated data. Times are reported, never asserted.

Usage: python bench/cv.py [--runs N] [--couples N] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from collections.abc import Callable

import numpy as np

from labloop.instruments.cv_analysis import analyze_cv
from labloop.instruments.voltammogram import CVParams
from labloop.sim.cv_physics import CellParams, random_couple, simulate_cv

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--couples", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
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
    }, indent=2))


if __name__ == "__main__":
    main()
