"""The plot data `labloop report` and the dashboard share (orchestrator/journal/plot_data.py): best so far follows
the campaign's objective, parity pairs predictions with measurements, the prediction error's running mean
spans the last ERROR_WINDOW experiments, the ferrocene plot's points carry their experiment's id."""

from __future__ import annotations

import pytest

from labloop.orchestrator.config.campaign import Objective
from labloop.orchestrator.journal.plot_data import (
    ERROR_WINDOW,
    best_so_far,
    measured,
    parity,
    prediction_errors,
    versus_ferrocene,
)


def _row(i: int, status: str, potential: float | None, mu: float | None = None) -> dict:
    return {"id": i, "status": status, "potential_v": potential, "mu": mu, "sigma": None if mu is None else 0.1,
            "acquisition": None}


def test_best_so_far_follows_the_objective():
    rows = [_row(1, "done", 3.0), _row(2, "failed", None), _row(3, "done", 4.55), _row(4, "done", 4.0),
            _row(5, "done", 5.0)]
    done = measured(rows)
    assert [r["id"] for r in done] == [1, 3, 4, 5]
    window = Objective(quantity="oxidation_potential", goal="window", window_v=(4.5, 4.6))
    assert best_so_far(done, window) == [3.0, 4.55, 4.55, 4.55]
    # inside the window, nearer its centre is better, as the "best so far" table ranks (it used to stay put)
    inside = measured([_row(1, "done", 4.59), _row(2, "done", 4.52), _row(3, "done", 4.56), _row(4, "done", 4.58)])
    assert best_so_far(inside, window) == [4.59, 4.52, 4.56, 4.56]
    highest = Objective(quantity="oxidation_potential", goal="maximize")
    assert best_so_far(done, highest) == [3.0, 4.55, 4.55, 5.0]
    lowest = Objective(quantity="oxidation_potential", goal="minimize")
    assert best_so_far(done, lowest) == [3.0, 3.0, 3.0, 3.0]


def test_parity_and_prediction_error_use_only_predicted_experiments():
    done = [_row(i, "done", 4.0 + 0.1 * i, None if i == 2 else 4.0) for i in range(1, 12)]
    pairs = parity(done)
    assert [p["id"] for p in pairs] == [i for i in range(1, 12) if i != 2]
    assert all(p["measured"] == pytest.approx(4.0 + 0.1 * p["id"]) for p in pairs)
    assert not any(p["uncalibrated"] for p in pairs)
    first = parity([{**_row(1, "done", 4.1, 6.0), "uncalibrated": True}, _row(3, "done", 4.3, 4.2)])
    assert [p["uncalibrated"] for p in first] == [True, False]  # drawn apart by the report and the page
    errors, running = prediction_errors(done)
    assert errors == pytest.approx([0.1 * p["id"] for p in pairs])
    assert running[0] == pytest.approx(errors[0])
    assert running[-1] == pytest.approx(sum(errors[-ERROR_WINDOW:]) / ERROR_WINDOW)


def test_versus_ferrocene_keeps_experiment_ids_and_skips_unreferenced_ones():
    def lab(e_vs_li: float | None, e_half: float | None) -> dict:
        return {"referenced": None if e_vs_li is None else {"e_vs_li_v": e_vs_li},
                "scans": [{"analysis": None if e_half is None else {"e_half_v": e_half}}]}

    labs = [({"id": 4}, lab(4.40, 1.25)), ({"id": 7}, lab(None, 1.30)), ({"id": 9}, lab(4.52, None)),
            ({"id": 12}, lab(4.55, 1.45)), ({"id": 13}, {})]
    rows = versus_ferrocene(labs, offset_v=3.2)
    assert [r["id"] for r in rows] == [4, 12]  # ids, not 1..n: the report's plot points match the log's rows
    assert [r["vs_ferrocene_v"] for r in rows] == [4.40, 4.55]
    assert [r["vs_reference_v"] for r in rows] == pytest.approx([4.45, 4.65])
