"""The planners inside a campaign, on emulators with a (tiny) trained surrogate: `bayes` proposes with the
calibration refitted on every measurement, journals it, and its predictions get closer to what is measured;
the retrained model learns the measured potentials as an additional target; `screening` measures in the
prior model's order and never retrains; `labloop report` shows the prediction error and the calibrations."""

from __future__ import annotations

import re
from itertools import pairwise
from pathlib import Path

import pytest

from labloop.core.text import plural
from labloop.orchestrator.journal.store import Journal, State
from labloop.orchestrator.learning.models import MEASURED_TARGET
from labloop.planners.residual_gp import OFFSET_PRIOR_V
from labloop.surrogate.persistence import load_ensemble

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.slow
def test_bayes_campaign_calibrates_on_every_measurement_and_its_error_falls(tmp_path, labloop, write_campaign):
    campaign_file = write_campaign(tmp_path, prior=True, shared_prior=True, planner={"kind": "bayes", "batch_size": 2},
                                   budget={"max_experiments": 8},
                                   surrogate={"preset": "fast", "folds": 2, "epochs": 2, "retrain_every": 4})
    result = labloop("run", campaign_file, "--dry-run")
    assert result.returncode == 0, result.stderr
    with Journal.open(tmp_path / "tiny.db", readonly=True) as journal:
        experiments = journal.experiments()
        done = [e for e in experiments if e.status == State.DONE]
        assert len(done) == 8
        hits = sum(4.5 <= e.potential_v <= 4.6 for e in done)
        failed = sum(e.status == State.FAILED for e in experiments)
        assert f"tiny: 8/8 experiments done{f' (+ {failed} failed' if failed else ''}" in result.stderr
        assert f", {hits} hit{'' if hits == 1 else 's'}; journal" in result.stderr
        assert all(e.planner == "bayes" and e.acquisition is not None and 0 <= e.acquisition <= 1
                   for e in experiments)
        assert all(e.mu is not None and e.sigma is not None and e.sigma > 0 for e in experiments)
        # before the first measurement nothing says where the lab's scale lies: the first batch's sigma holds
        # the offset's prior; once calibrated, the sigma is what the measurements leave
        start = min(e.step for e in experiments)
        first, later = [e.sigma for e in experiments if e.step == start], [e.sigma for e in done if e.step > start]
        assert first and min(first) >= OFFSET_PRIOR_V and max(later) < OFFSET_PRIOR_V / 2, (first, later)
        calibrations = [e.data for e in journal.events() if e.kind == "calibration"]
        calibrated_at = [e.time for e in journal.events() if e.kind == "calibration"]
        measured = [c["n_measurements"] for c in calibrations]
        assert measured == sorted(measured) and measured[0] >= 1 and measured[-1] >= 6
        # the first batch is predicted by the prior model alone (E = IE - 1.40, no solvation): far off;
        # once calibrated on the measurements, the predictions land much closer
        errors = [abs(e.potential_v - e.mu) for e in sorted(done, key=lambda e: e.id)]
        assert sum(errors[:2]) / 2 > 2 * sum(errors[-4:]) / 4, errors
        versions = journal.model_versions()
        assert len(versions) == 2
        retrained = versions[1]
        assert retrained.metrics["n_measurements"] == 4
        assert retrained.metrics["measured_fit_mae_v"] is not None
        errors = retrained.metrics["out_of_sample_mae_v"]  # each output's, on measurements held out
        assert set(errors) == {"prior", "measured"} and all(v is not None and v >= 0 for v in errors.values())
        assert all(c["head"] in ("prior", "measured") for c in calibrations)
        # every learner but the offset alone has the size function, journalled at 10-40 heavy atoms
        assert all(set(c["size_term_v"]) == {"10", "20", "30", "40"} for c in calibrations
                   if c.get("learner", "offset") != "offset")
        messages = [e.message for e in journal.events() if e.kind == "calibration"]
        assert all(("prior output" in m) != ("measured-potential output" in m) for m in messages), messages
        # the log's line names the learner that won, as its data does
        events = [e for e in journal.events() if e.kind == "calibration"]
        assert all(f"learner {e.data['learner']}, leave-one-out RMSE" in e.message for e in events), messages
        assert MEASURED_TARGET in load_ensemble(retrained.weights_path).targets
    report = labloop("report", tmp_path / "tiny.db", "-o", tmp_path / "report")
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "report" / "index.html").read_text()
    assert "prediction_error.png" in page and "calibration to the measurements" in page
    assert page.count("<tr><td>1</td><td>") >= 2  # calibration rows of model version 1
    assert "<tr><td>1</td><td>prior</td>" in page  # which output proposed, and by which learner
    assert "size function (V at N heavy atoms)" in page
    assert all(f"<td>{time}</td></tr>" in page for time in calibrated_at)  # each row says when it was fitted
    assert "prior " in page.split("out-of-sample MAE per output")[1]  # the retrained version's errors
    # ... with what "prior" and "measured" are under each table, in words (a chemist's trial: "prior 1.695"?)
    words = " ".join(page.split())
    assert words.count("&ldquo;measured&rdquo; is a retrained network's own prediction of the measured potentials") \
        == 2 and "fixed rule E = IE - 1.40 V vs Li/Li+" in words
    # the predictions' sd checked against the measurements, as the journal holds them: those calibrated on a
    # measurement (after the first batch); the first batch's left out, and said
    calibrated = [e for e in done if e.step > start]
    within = sum(abs(e.potential_v - e.mu) <= 1.96 * e.sigma for e in calibrated)
    said = re.search(r"(\d+) of (\d+) calibrated predictions \(\d+%\) lay within the 95% interval of their "
                     r"prediction at proposal time", words)
    assert said, words
    bounded = re.search(r"Of the \d+, (\d+) (?:was|were) measured and (\d+) failed with a bound on the potential, "
                        r"(?:(\d+|all|none) of (?:these|which) lay beyond the interval|which lay (beyond the interval|"
                        r"within it))", words)
    measured_n, bounds, beyond = (len(calibrated), 0, 0) if not bounded else (
        int(bounded[1]), int(bounded[2]),
        {"all": int(bounded[2]), "none": 0}[bounded[3]] if bounded[3] in ("all", "none") else
        int(bounded[3]) if bounded[3] else int(bounded[4] != "within it"))
    assert measured_n == len(calibrated) and bounds <= failed, words  # a failure counts by its bound, if it has one
    assert (int(said[1]), int(said[2])) == (within + bounds - beyond, len(calibrated) + bounds), words
    assert re.search(r"Left out: [12] predictions? made before any measurement calibrated the model", words), words


def test_screening_campaign_measures_in_prior_order_and_never_retrains(tmp_path, labloop, write_campaign):
    campaign_file = write_campaign(tmp_path, prior=True, shared_prior=True,
                                   planner={"kind": "screening", "batch_size": 2},
                                   budget={"max_experiments": 6},
                                   surrogate={"preset": "fast", "folds": 2, "epochs": 2, "retrain_every": 2})
    result = labloop("run", campaign_file, "--dry-run")
    assert result.returncode == 0, result.stderr
    with Journal.open(tmp_path / "tiny.db", readonly=True) as journal:
        experiments = sorted(journal.experiments(), key=lambda e: e.id)
        distance = [abs(e.mu - 4.55) for e in experiments]
        assert distance == sorted(distance)
        assert len(journal.model_versions()) == 1
        kinds = {e.kind for e in journal.events()}
        assert "retrain" not in kinds and "calibration" not in kinds
        assert len({tuple(sorted(e.conditions.items())) for e in experiments}) == 1  # one fixed setting


@pytest.mark.slow
def test_a_reduction_campaign_names_its_rule_and_journals_each_calibration_once(tmp_path, labloop, write_campaign):
    """An anolyte screen (reduction potentials, a cathodic scan covering 1.5-3.5 V vs Li/Li+, which misses some
    of the molecules): the calibration event says 'EA - 1.40', not 'IE/EA - 1.40', a batch whose one
    experiment failed, bringing no measurement nor bound, does not journal the same calibration again, and a
    failure beyond the vertex is learnt as a bound. Its counts agree with
    their words (a chemist read "calibration on 1 measurements", "last 1 predictions off by", "proposed 1
    experiment(s)")."""
    protocol = tmp_path / "reduction.yaml"
    protocol.write_text((EXAMPLES / "protocols" / "cv_screen.yaml").read_text().replace(
        "cv: {e_begin_v: -0.8, e_vertex1_v: 1.95, e_vertex2_v: -0.8", "cv: {e_begin_v: 0.3, e_vertex1_v: -1.7, "
                                                                     "e_vertex2_v: 0.3"))
    campaign_file = write_campaign(tmp_path, prior=True, shared_prior=True, planner={"kind": "bayes", "batch_size": 1},
                                   objective={"quantity": "reduction_potential", "goal": "window",
                                              "window_v": [2.3, 2.5]},
                                   protocol=str(protocol), budget={"max_experiments": 6},
                                   cell={"reference_offset_v": 3.2},
                                   surrogate={"preset": "fast", "folds": 2, "epochs": 2, "retrain_every": 100})
    result = labloop("run", campaign_file, "--dry-run")
    assert result.returncode == 0, result.stderr
    with Journal.open(tmp_path / "tiny.db", readonly=True) as journal:
        failed = [e for e in journal.experiments() if e.status == State.FAILED]
        messages = [e.message for e in journal.events() if e.kind == "calibration"]
        proposed = [e.message for e in journal.events() if e.kind == "proposed"]
    assert failed and messages, result.stderr  # the case: a batch that only failed
    # a failure beyond the vertex says where the potential lies (the bound the calibration learns), vs Li/Li+: 50.5
    # mV inside the vertex at 1.50 V (28.5 mV for a peak past E1/2, one 22 mV smoothing window)
    said = [re.search(r"the potential lies beyond the window scanned, below (\d\.\d{3}) V vs Li/Li\+\)", e.cause)
            for e in failed if "beyond_window" in e.cause]
    assert said and all(m is not None and m[1] in ("1.550", "1.551") for m in said), [e.cause for e in failed]
    # one with no wave at all says what was scanned (it said 'analysis: no_peak' alone): 0.3..-1.7 V vs the
    # reference at 3.2 V
    # a scan that never completed its couple judged no reversibility (it read "irreversible": a trial)
    assert all(e.reversibility is None and set(e.flags) & {"beyond_window", "no_peak"} for e in failed), [
        (e.flags, e.reversibility) for e in failed]
    silent = [e.cause for e in failed if "no_peak" in e.cause and "beyond_window" not in e.cause]
    assert silent and all(c.endswith("(no wave between 1.500 and 3.500 V vs Li/Li+, the window scanned: the "
                                     "potential lies beyond it, or the sample gave no signal)") for c in silent), silent
    # by the size design while nothing is measured (a failure teaches the calibration nothing), said so; then by the
    # acquisition
    designed = [m.endswith(": bayes proposed 1 experiment (by the first batch's size design: nothing measured yet)")
                for m in proposed]
    first_by_acquisition = designed.index(False)
    assert first_by_acquisition >= 1 and not any(designed[first_by_acquisition:]), proposed
    assert all(m.endswith(": bayes proposed 1 experiment") for m in proposed[first_by_acquisition:]), proposed
    # its second experiment's wave lay beyond the cathodic vertex: a bound, which calibrates before anything
    # is measured (its first experiment had no peak at all, which bounds nothing)
    assert messages[0].startswith("calibration on 0 measurements and 1 bound (the wave beyond a scan's end) (")
    assert messages[0].endswith("learner offset, nothing measured to score it on)")
    assert any(m.startswith("calibration on 1 measurement and 1 bound (the wave beyond a scan's end) (") and
               "; last 1 prediction off by" in m for m in messages), messages
    for message in messages:
        counts = re.search(r"^calibration on (\d+) (\w+)(?: and (\d+) (\w+) \(the wave beyond a scan's end\))? \(.*\)"
                           r"(?:; last (\d+) (\w+) off by|$)", message)
        assert counts is not None, message
        said = [(counts[k], counts[k + 1], word) for k, word in ((1, "measurement"), (3, "bound"), (5, "prediction"))
                if counts[k] is not None]
        assert all(noun == plural(int(n), word) for n, noun, word in said), message
    assert all("prior output EA - 1.40;" in m for m in messages), messages
    assert all(a != b for a, b in pairwise(messages)), messages
