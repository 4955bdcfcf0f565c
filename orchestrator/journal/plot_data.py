"""The numbers behind every campaign plot, computed in one place for ``labloop report`` (matplotlib PNGs) and
``labloop dashboard`` (drawn in the browser from JSON).

Why one module: the report and the live page must never disagree about what the best molecule so far was
or how far the predictions were off; both take a :func:`labloop.orchestrator.journal.view.snapshot` and
call these functions, and only the drawing differs.
"""

from __future__ import annotations

import logging
import statistics
from typing import Any

from labloop.orchestrator.config.objective import Objective

log = logging.getLogger(__name__)

#: the prediction-error running mean spans this many experiments
ERROR_WINDOW = 8


def measured(experiments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Done experiments with a measured potential, in the order they were proposed."""
    return [e for e in experiments if e["status"] == "done" and e["potential_v"] is not None]


def best_so_far(done: list[dict[str, Any]], objective: Objective) -> list[float]:
    """After each done experiment, the best potential measured so far, ranked as the "best so far" table ranks
    (:meth:`Objective.rank`: inside a window, nearest its centre)."""
    best: list[float] = []
    for e in done:
        p = e["potential_v"]
        best.append(p if not best or objective.rank(p) > objective.rank(best[-1]) else best[-1])
    return best


def parity(done: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Measured vs predicted (mu, sigma at proposal time) for every done experiment that had a prediction, and whether
    it was made before any measurement calibrated the model (``uncalibrated``: on the prior's scale, +/- 2 V, which
    the plots draw apart: a newcomer read a first batch predicted at 5.4-6.3 V as the model's error)."""
    return [{"id": e["id"], "mu": e["mu"], "sigma": e["sigma"] or 0.0, "measured": e["potential_v"],
             "uncalibrated": bool(e.get("uncalibrated"))}
            for e in done if e["mu"] is not None]


def prediction_errors(done: list[dict[str, Any]], window: int = ERROR_WINDOW) -> tuple[list[float], list[float]]:
    """``|measured - predicted|`` per done experiment with a prediction, and its running mean over ``window``:
    with feedback the error falls as measurements accumulate; an open-loop screen's stays where the prior
    put it."""
    errors = [abs(e["potential_v"] - e["mu"]) for e in done if e["mu"] is not None]
    running = [statistics.fmean(errors[max(0, k + 1 - window):k + 1]) for k in range(len(errors))]
    return errors, running


#: the share of measurements a right sd puts within mu +/- 1.96 sd
COVERAGE_LEVEL = 0.95
#: mu +/- this many sd is the interval a right sd puts :data:`COVERAGE_LEVEL` of the potentials in
INTERVAL_Z = 1.96


def calibrated_on(experiments: list[dict[str, Any]], events: list[dict[str, Any]]) -> dict[int, int]:
    """Per experiment id, how many measurements the calibration behind its prediction had: that of the last
    ``calibration`` event journalled before its proposal (orchestrator/learning/learner.py journals one before every
    proposal whose calibration has a fit, past measurements included), 0 without one (the first batch, predicted on
    the DFT prior's scale, or a planner that does not calibrate)."""
    calibrations = [(e["time"], e["data"].get("n_measurements", 0)) for e in events
                    if e["kind"] == "calibration" and isinstance(e["data"], dict)]
    return {x["id"]: next((n for time, n in reversed(calibrations) if time <= x["created_at"]), 0)
            for x in experiments}


def interval_check(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """How well the predictions' sd (at proposal time) described their errors: how many lay within mu +/- 1.96 sd
    (95% of them if the sd is right) and the root mean square of (measured - mu) / sd over the measured ones (1 if
    right; above 1, the sd was too small). None without a prediction with an sd. Why: the planners bet on the sd,
    and a chemist cannot trust an interval the campaign never checks (a trial found 6 of 26 outside it).

    ``rows``: done experiments with their potential, and failed ones whose measurement failed with the ``bound`` its
    scan gave (``(V, +1 above / -1 below)``, None where it bounds nothing: no peak at all), each with
    ``calibrated_on`` (:func:`calibrated_on`). Only predictions calibrated on at least one measurement are counted:
    the first batch's sd spans the prior's unknown offset (+/- 2 V), which no measurement can miss, and counting it
    made the check look better than it was (a PI's audit). A bound counts as outside when it lies beyond the
    interval (above mu + 1.96 sd, or below mu - 1.96 sd), as inside otherwise: leaving the failures out hid a 3-sd
    miss. What was left out is counted, for the report to say."""
    predicted = [r for r in rows if r["mu"] is not None and r["sigma"]]
    if not predicted:
        return None
    calibrated = [r for r in predicted if r["calibrated_on"] > 0]
    z = [(r["potential_v"] - r["mu"]) / r["sigma"] for r in calibrated if r["status"] == "done"]
    failed = [r for r in calibrated if r["status"] != "done"]
    outside = [_beyond(r["bound"], r["mu"], r["sigma"]) for r in failed if r["bound"] is not None]
    return {"n": len(z) + len(outside), "within": sum(abs(v) <= INTERVAL_Z for v in z) + outside.count(False),
            "level": COVERAGE_LEVEL, "n_measured": len(z),
            "rms_z": statistics.fmean(v * v for v in z) ** 0.5 if z else None,
            "bounds": len(outside), "bounds_outside": sum(outside),
            "uncalibrated": len(predicted) - len(calibrated), "unbounded": len(failed) - len(outside)}


def _beyond(bound: tuple[float, int], mu: float, sigma: float) -> bool:
    """Whether a failed scan's bound (V, +1 above / -1 below) puts the potential outside mu +/- 1.96 sd."""
    value, side = bound
    return value > mu + INTERVAL_Z * sigma if side > 0 else value < mu - INTERVAL_Z * sigma


def acquisition(experiments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The acquisition value of every proposal that had one (planners without acquisition have none)."""
    return [{"id": e["id"], "acquisition": e["acquisition"]} for e in experiments if e["acquisition"] is not None]


def versus_ferrocene(labs: list[tuple[dict[str, Any], dict[str, Any]]], offset_v: float) -> list[dict[str, Any]]:
    """Per experiment (``(experiment, lab record)`` pairs) with a ferrocene-referenced potential and an analysed
    first scan: its id, E1/2 referenced to ferrocene (then Li/Li+), and E1/2 against the cell's reference
    electrode taken at its nominal offset ``offset_v``. A reference that drifts moves the second, never the first,
    so the gap between the two is the drift, and the id finds the experiment where it opened."""
    rows = []
    for experiment, record in labs:
        referenced = record.get("referenced") or {}
        scans = record.get("scans") or [{}]
        analyte = (scans[0].get("analysis") or {}).get("e_half_v")
        if referenced.get("e_vs_li_v") is not None and analyte is not None:
            rows.append({"id": experiment["id"], "vs_ferrocene_v": referenced["e_vs_li_v"],
                         "vs_reference_v": analyte + offset_v})
    return rows


def randles_sevcik_points(labs: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any] | None:
    """The Randles-Sevcik plot of the last experiment (``(experiment, lab record)`` pairs) whose lab record has a D:
    its ``id``, ``D`` (cm2/s), and per scan rate ``sqrt_rate`` (sqrt(V/s)), ``current_ua`` (the forward peak's
    |ip|, uA: the anodic one for a scan that starts toward positive potentials) and ``fitted`` (whether D was fitted
    over that rate: instruments/cv_analysis.py reversible_rates), with ``slope`` (uA per sqrt(V/s)) of the line through
    the origin over the fitted rates, as the fit took it, and ``reads_low``: whether a rate the couple is not
    reversible at was fitted (fewer than two were: the run warned that D reads low, which the plot's title said not,
    a referee's review); None without such an experiment. Why: D was in the CSVs and the table alone, and |ip|
    against sqrt(v) is the plot a chemist checks it by (an electrochemist's trial)."""
    for experiment, record in reversed(labs):
        diffusion, scans = record.get("diffusion"), record.get("scans") or []
        if not diffusion or not scans:
            continue
        fitted = set(diffusion.get("scan_rates_v_s") or ())
        params = scans[0]["voltammogram"]["params"]
        peak = "ipa_a" if params["e_vertex1_v"] > params["e_begin_v"] else "ipc_a"
        points = [{"sqrt_rate": scan["scan_rate_v_s"] ** 0.5, "current_ua": 1e6 * abs(current),
                   "fitted": scan["scan_rate_v_s"] in fitted,
                   "reversible": scan["analysis"].get("reversibility") == "reversible"}
                  for scan in scans if (current := (scan.get("analysis") or {}).get(peak)) is not None]
        used = [p for p in points if p["fitted"]]
        if not used:
            continue
        slope = sum(p["sqrt_rate"] * p["current_ua"] for p in used) / sum(p["sqrt_rate"] ** 2 for p in used)
        return {"id": experiment["id"], "D": diffusion["diffusion_cm2_s"], "points": points, "slope": slope,
                "reads_low": any(not p["reversible"] for p in used)}
    return None


def plot_series(snap: dict[str, Any]) -> dict[str, Any]:
    """Every plot's data for one snapshot, as JSON-safe lists (what the dashboard draws)."""
    objective = Objective.model_validate(snap["campaign"]["objective"])
    done = measured(snap["experiments"])
    errors, running = prediction_errors(done)
    return {
        "window_v": None if objective.window_v is None else list(objective.window_v),
        "measured": [{"id": e["id"], "potential_v": e["potential_v"]} for e in done],
        "best_so_far": best_so_far(done, objective),
        "parity": parity(done),
        "prediction_error": {"errors": errors, "running_mean": running, "window": ERROR_WINDOW},
        "acquisition": acquisition(snap["experiments"]),
    }
