"""`labloop report`: an HTML page, the four PNG plots and the CSV exports of a campaign's journal."""

from __future__ import annotations

import csv
import html
import itertools
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from labloop.core.version import source_digest
from labloop.orchestrator.journal.store import Journal
from labloop.orchestrator.report import PLOTS, _setup_said
from labloop.planners.base import Proposal

from ..conftest import best_rows

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_report_writes_html_plots_and_csv(tmp_path, labloop, write_campaign, axis_labels):
    campaign_file = write_campaign(tmp_path, budget={"max_experiments": 4})
    assert labloop("run", campaign_file, "--dry-run").returncode == 0
    with Journal.open(tmp_path / "tiny.db") as journal:  # a prediction as a model gives it: 17 digits
        predicted = journal.record_proposals([Proposal("CCO", {"scan_rate_v_s": 0.1}, 4.512345678901234,
                                                       0.012345678901234, 0.123456789012345, 1, "bayes")],
                                             step=9, planner="bayes")[0]
    labels = axis_labels()
    result = labloop("report", tmp_path / "tiny.db", "-o", tmp_path / "report")
    assert result.returncode == 0, result.stderr
    # the voltammograms' potential axis names the reference electrode, as the CSVs do ("vs cell reference" did not),
    # and says the potentials are not iR-corrected (a reviewer took them for the analysis's)
    assert labels["voltammograms.png"] == ["E (V vs Ag/Ag+, as applied: uncompensated iR not subtracted)"]
    page = (tmp_path / "report" / "index.html").read_text()
    assert "tiny" in page and "4/4 done" in page
    # each experiment's vial, as its load_sample loaded it (the library's row: S0001 is the first), in the CSVs and
    # log --json: no output named it (a chemist's trial)
    with (tmp_path / "report" / "experiments.csv").open() as handle:
        rows = list(csv.reader(handle))
    library = (Path(__file__).resolve().parents[2] / "examples" / "library.csv").read_text().splitlines()[1:]
    index = {line.split(",")[0]: n for n, line in reversed(list(enumerate(library, start=1)))}
    vials = {row[1]: row[3] for row in rows[1:] if row[4] == "done"}
    assert rows[0][:5] == ["id", "smiles", "name", "sample_id", "status"] and len(vials) == 4, rows
    assert vials == {smiles: f"S{index[smiles]:04d}" for smiles in vials}, vials
    logged = {e["smiles"]: e["sample_id"] for e in json.loads(labloop("log", tmp_path / "tiny.db", "--json").stdout)[
        "experiments"] if e["status"] == "done"}
    assert logged == vials
    # the models' and calibrations' tables say what their outputs and numbers are (a chemist read "output" and
    # "prior 1.695" as nothing): the prior output is the DFT ionisation energy by the rule, out of sample is explained
    words = " ".join(page.split())
    assert words.count("&ldquo;prior&rdquo; is the network's gas-phase DFT ionisation energy turned into a potential "
                       "by the fixed rule E = IE - 1.40 V vs Li/Li+") == 2, words
    assert "each measurement predicted by ensemble members that did not train on it" in words
    # the code that ran it, told apart by its source too where no git names a commit (a PI's trial)
    assert f"labloop_source {source_digest()}," in words
    # the cell's conditions, and the fields that would say those not given (a chemist's trial could not write a
    # methods section from the report)
    assert ("the cell: solvent not given (cell.solvent); supporting electrolyte not given (cell.electrolyte); working "
            "electrode not given (cell.working_electrode); counter electrode not given (cell.counter_electrode); "
            "reference electrode Ag/Ag+ at 3.2 V vs Li/Li+ (cell.reference_offset_v); 25 C (cell.temperature_c, its "
            "default: the campaign file does not set it; D, k0 and the dEp cut-offs computed at it)") in words, words
    # the rule "reversible" is called by, and which potentials are iR-corrected (a chemist saw dEp 72-77 mV called
    # reversible with no cut-off said, and could not tell the CSVs' corrected peaks from the raw scans)
    # dEp alone: the current ratio is the chemistry's, said apart (an electrochemist's review: a Nernstian couple whose
    # product reacted on was called quasi-reversible)
    criterion = ("reversible: 0 < dEp <= 68 mV; irreversible: no return peak, or dEp >= 200 mV; quasi-reversible: "
                 "between (dEp from peak potentials corrected for the uncompensated iR); the return peak's share of "
                 "the forward one is the chemistry's, said apart outside 0.80..1.25 (under 0.50: "
                 "chemically_irreversible)")
    assert f"reversibility (measurements.csv; log --json): {html.escape(criterion)}." in words
    assert ("The peak potentials of measurements.csv (e_half_v_vs_reference and dep_mV) are corrected for the "
            "residual iR, the ohmic drop of the resistance the potentiostat left uncompensated (ru_ohm - "
            "ir_compensated_ohm; nothing without an eis step to measure Ru); voltammograms.csv holds the potentials as "
            "applied, not corrected.") in words
    logged = json.loads(labloop("log", tmp_path / "tiny.db", "--json").stdout)
    assert logged["campaign"]["reversibility_criterion"] == criterion
    assert "summed over the measurements (natural log): only the numbers of one row compare, and the higher " \
           "proposes." in words
    for name in PLOTS:
        assert f'src="{name}"' in page
        assert (tmp_path / "report" / name).read_bytes().startswith(PNG_MAGIC)
    with (tmp_path / "report" / "experiments.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) >= 5 and {r["status"] for r in rows} <= {"done", "failed", "proposed"}
    assert {"predicted_v_vs_li", "predicted_sd_v"} <= set(rows[0])  # named as in measurements.csv, to join on id
    # a prediction and its sd to 0.1 mV as the potentials, the acquisition value to 4 significant digits
    assert [(r["predicted_v_vs_li"], r["predicted_sd_v"], r["acquisition"]) for r in rows
            if r["id"] == str(predicted)] == [("4.5123", "0.0123", "0.1235")]
    # planned scan rates to 4 significant digits, not the planner's 17 (scan_rate_v_s=0.055173262610286274)
    with Journal.open(tmp_path / "tiny.db", readonly=True) as journal:
        planned = {e.id: e.conditions["scan_rate_v_s"] for e in journal.experiments()}
    for row in rows:  # the planned scan rate replaced the protocol's: none of the protocol's to show
        shown = row["planned_conditions"].removeprefix("scan_rate_v_s=")
        assert shown == f"{planned[int(row['id'])]:.4g}" and len(shown.lstrip("0.")) <= 4, row["planned_conditions"]
        assert row["protocol_conditions"] == ""
    with (tmp_path / "report" / "measurements.csv").open() as handle:
        measured = [r for r in csv.DictReader(handle) if r["potential_v_vs_li"]]
    assert len(measured) >= 4 and all(float(r["potential_v_vs_li"]) > 0 for r in measured)
    # potentials to 0.1 mV (4 decimals in V), not the 17 digits of a float (4.512345678901234)
    with Journal.open(tmp_path / "tiny.db", readonly=True) as journal:
        journalled = {e.id: e for e in journal.experiments()}
    for row in measured:
        e = journalled[int(row["id"])]
        assert row["status"] == e.status  # a failed experiment's potential is said to be one (a trial)
        # dEp in mV to 1 decimal (0.1 mV), as lab_grade.csv and labloop log show it, where this table had it in V
        assert (row["potential_v_vs_li"], row["e_half_v_vs_reference"], row["dep_mV"]) == \
            (f"{e.potential_v:.4f}", f"{e.e_half_v:.4f}", f"{1e3 * e.dep_v:.1f}"), row
        assert "dep_v" not in row
        # the peak currents, their ratio and the reversibility judgement, which only lab_grade.csv had (a chemist's
        # trial: the first numbers checked beside E1/2), as the journal's analysis holds them
        with Journal.open(tmp_path / "tiny.db", readonly=True) as journal:
            (analysis,) = [json.loads(r[0]) for r in journal._conn.execute(
                "SELECT result_json FROM measurements WHERE experiment_id = ? AND attempt = ?", (e.id, e.attempt))]
        assert (row["ipa_uA"], row["ipc_uA"], row["ipc_over_ipa"], row["reversibility"]) == (
            f"{analysis['ipa_a'] * 1e6:.4g}", f"{analysis['ipc_a'] * 1e6:.4g}", f"{analysis['ratio']:.4g}",
            analysis["reversibility"]), row
        # the return over the forward peak, whichever came first (an electrochemist read a reduction's 4.07 for 0.25)
        assert row["return_over_forward"] == f"{analysis['return_share']:.4g}", row
        # the rate it was read at, a number of its own (a referee found it only inside planned_conditions' text)
        assert row["scan_rate_v_s"] == f"{planned[e.id]:.4g}", row
        assert analysis["reversibility"] in ("reversible", "quasi-reversible", "irreversible")
    # every raw voltammogram, point by point, as the journal holds it (an operator found no way to replot one)
    with (tmp_path / "report" / "voltammograms.csv").open() as handle:
        points = list(csv.DictReader(handle))
    with Journal.open(tmp_path / "tiny.db", readonly=True) as journal:
        first = journal.voltammograms(int(measured[0]["id"]))[0]
    ours = [r for r in points if r["id"] == measured[0]["id"] and r["scan"] == "1"]
    assert len(ours) == len(first.potential_v) and '<a href="voltammograms.csv">' in page
    assert float(ours[5]["potential_v_vs_reference"]) == pytest.approx(first.potential_v[5], rel=1e-5)
    assert float(ours[5]["current_a"]) == pytest.approx(first.current_a[5], rel=1e-5)
    assert ours[5]["scan_rate_v_s"] == f"{first.params.scan_rate_v_s:.4g}" and ours[5]["reference_electrode"]
    # a plain cv protocol: one scan of the analyte per experiment, nothing compensated on the potentiostat
    assert {(r["scan"], r["role"], r["ir_compensated_ohm"]) for r in points} == {("1", "analyte", "0")}
    # each potential's scale in its header: vs Li/Li+, or (E1/2) vs the cell's reference electrode, named
    assert all(float(r["potential_v_vs_li"]) - float(r["e_half_v_vs_reference"]) == pytest.approx(3.2, abs=1e-4)
               and r["reference_electrode"] == "Ag/Ag+" for r in measured)
    # no ferrocene standard here: each potential rests on the offset written in the campaign, said with its value in
    # measurements.csv and on each row of the page's best table (a PI's audit could not tell which scale)
    nominal = "nominal: E1/2 vs Ag/Ag+ + cell.reference_offset_v = 3.2 V"
    assert {r["potential_from"] for r in measured} == {nominal}
    assert best_rows(page) and {row["how it was put on the Li/Li+ scale"] for row in best_rows(page)} == {nominal}
    # one scan rate: no spread of E1/2 to show, and none invented
    assert all("E1/2 spread over the scan rates (mV)" not in row for row in best_rows(page))
    # `labloop log` names the electrode its E1/2 column is against, as the CSVs do ("the cell's reference" did not)
    assert "measurements (V vs Li/Li+; E1/2 vs Ag/Ag+)" in " ".join(labloop("log", tmp_path / "tiny.db").stdout.split())
    assert not (tmp_path / "report" / "lab_grade.csv").exists() and "lab_grade.csv" not in page  # no lab record
    assert "lab-grade results" not in page  # nor a table of them
    # random, without a model, predicted nothing: nothing to check the sd of (tests/planners/test_feedback_loop.py
    # checks a bayes campaign's)
    assert "No measured experiment had a prediction with a standard deviation yet." in page


def test_an_unnamed_reference_electrode_is_said_to_be_unnamed_not_called_ag_ag(tmp_path, labloop, write_campaign,
                                                                                  axis_labels, monkeypatch):
    """A campaign naming no reference electrode (the potentiostat's ``reference`` option left out, as
    examples/lab-grade.yaml did): `log` said "E1/2 vs Ag/Ag+" and both CSVs' reference_electrode Ag/Ag+, the EmStat
    driver's default, while validate showed no name at all: a lab on Ag/AgCl got data labelled Ag/Ag+ (a chemist's
    trial). Now every output says the electrode is unnamed, and validate says once that naming it labels the data;
    a named one (Ag/AgCl) is what the data say, with no warning."""
    from labloop.orchestrator import console

    monkeypatch.setattr(console.out, "width", 400)  # no folding
    unnamed = "the reference electrode (unnamed)"
    rig = {**yaml.safe_load((EXAMPLES / "campaign.yaml").read_text())["instruments"],
           "potentiostat": {"driver": "emstat", "port": "/dev/ttyACM0"}}
    campaign = write_campaign(tmp_path, instruments=rig, budget={"max_experiments": 2})
    checked = labloop("validate", campaign, "--dry-run")
    assert checked.returncode == 0, checked.stderr
    warned = [line for line in checked.stderr.splitlines() if "reference option" in line]
    assert len(warned) == 1 and warned[0].startswith("warning: "), checked.stderr  # once
    assert "instruments.potentiostat: no reference option names the cell's reference electrode" in warned[0]
    assert f"'vs {unnamed}': name it to label the data (options: {{reference: Ag/AgCl}}" in warned[0]
    assert f"reference    {unnamed} at 3.2 V vs Li/Li+ (cell.reference_offset_v" in checked.stdout, checked.stdout
    assert labloop("run", campaign, "--dry-run").returncode == 0
    logged = " ".join(labloop("log", tmp_path / "tiny.db").stdout.split())
    assert f"measurements (V vs Li/Li+; E1/2 vs {unnamed})" in logged and "Ag/Ag+" not in logged
    assert {e["reference"] for e in json.loads(labloop("log", tmp_path / "tiny.db", "--json").stdout)["experiments"]
            if e["e_half_v"] is not None} == {unnamed}
    labels = axis_labels()
    assert labloop("report", tmp_path / "tiny.db", "-o", tmp_path / "report").returncode == 0
    assert labels["voltammograms.png"] == [f"E (V vs {unnamed}, as applied: uncompensated iR not subtracted)"]
    for name in ("measurements.csv", "voltammograms.csv"):
        with (tmp_path / "report" / name).open() as handle:
            rows = [r for r in csv.DictReader(handle) if r["reference_electrode"]]
        assert rows and {r["reference_electrode"] for r in rows} == {unnamed}, name
    with (tmp_path / "report" / "measurements.csv").open() as handle:  # the scale a potential rests on, named so
        assert {r["potential_from"] for r in csv.DictReader(handle) if r["potential_v_vs_li"]} == {
            f"nominal: E1/2 vs {unnamed} + cell.reference_offset_v = 3.2 V"}
    rig["potentiostat"]["options"] = {"reference": "Ag/AgCl"}
    named = labloop("validate", write_campaign(tmp_path, instruments=rig, name="named"), "--dry-run")
    assert named.returncode == 0 and "reference option" not in named.stderr, named.stderr
    assert "reference    Ag/AgCl (potentiostat's reference option) at 3.2 V vs Li/Li+" in named.stdout


def test_the_reversibility_criterion_is_the_protocols_own():
    """An ``analyze`` step's cut-offs are the ones stated, and a cv of several rates says the experiment's call is
    over every rate (orchestrator/journal/view.py reversibility_said, what log --json and the page state)."""
    from labloop.orchestrator.journal.view import reversibility_said
    from labloop.protocols.steps import parse_steps

    steps = parse_steps(["load_sample", {"cv": {"scan_rates_v_s": [0.1, 1.0]}},
                         {"analyze": {"reversible_max_dep_v": 0.065, "reversible_ratio_band": 0.1,
                                      "irreversible_min_dep_v": 0.15}}])
    assert reversibility_said(tuple(steps)) == (
        "reversible: 0 < dEp <= 65 mV (an experiment's: at every scan rate); irreversible: no return peak, or dEp >= "
        "150 mV; quasi-reversible: between (dEp from peak potentials corrected for the uncompensated iR); the return "
        "peak's share of the forward one is the chemistry's, said apart outside 0.91..1.10 (under 0.50: "
        "chemically_irreversible)")
    # a warm cell's record states its own cut-offs (instruments/cv_analysis.py for_couple); a record without the
    # field, from before it, is 25 C's
    from labloop.orchestrator.journal.view import cell_kelvin

    warm = reversibility_said(tuple(steps), cell_kelvin({"cell": {"temperature_c": 60}}))
    assert warm.startswith("reversible: 0 < dEp <= 73 mV") and "dEp >= 168 mV (the cell at 60 C: the cut-offs 65 " \
        "and 150 mV at 25 C times T / 298.15 K)" in warm, warm
    assert cell_kelvin({}) == cell_kelvin({"cell": {"temperature_c": 25}}) == 298.15


def test_the_interval_check_counts_errors_within_1_96_sd_and_judges_by_the_binomial_range():
    from labloop.orchestrator.journal.plot_data import interval_check
    from labloop.orchestrator.report import _interval_said

    done = [_checked(4.0 + dz * 0.1) for dz in (0.5, -1.0, 2.5, 0.0)]
    done.append(_checked(3.0, mu=None, sigma=None))  # no prediction: not counted
    check = interval_check(done)
    assert check["n"] == 4 and check["within"] == 3
    assert check["rms_z"] == pytest.approx(((0.25 + 1.0 + 6.25 + 0.0) / 4) ** 0.5)
    # 4 measurements: a right sd puts 3-4 within (the binomial's middle 95%), so 3 is no verdict
    assert "3 of 4 calibrated predictions (75%)" in _interval_said(check)
    assert "consistent with them" in _interval_said(check)
    assert "where a right sd puts 3-4 of 4" in _interval_said(check)
    wide = [_checked(4.0 + 3.0 * (k % 2) * 0.1) for k in range(40)]
    assert "20 of 40" in _interval_said(interval_check(wide)) and "too small" in _interval_said(interval_check(wide))
    # a too small sd is explained (the example's report said so with nothing more, read as a fault: a trial)
    assert "the optimiser's curse" in _interval_said(interval_check(wide))
    assert "optimiser" not in _interval_said(check)
    assert interval_check([]) is None and "No measured experiment" in _interval_said(None)


def _checked(potential: float | None, mu: float | None = 4.0, sigma: float | None = 0.1, *, status: str = "done",
             calibrated_on: int = 1, bound: tuple[float, int] | None = None) -> dict[str, object]:
    """A row of interval_check: a done experiment's potential, or a failed one's bound, and its prediction."""
    return {"potential_v": potential, "mu": mu, "sigma": sigma, "status": status, "calibrated_on": calibrated_on,
            "bound": bound}


def test_the_interval_check_counts_only_calibrated_predictions_and_failures_bounds():
    """A PI's audit: "27 of 30 measurements (90%) lay within the 95% interval" held the first batch, predicted before
    any measurement at +/- 2 V (which no measurement misses), and left out experiment 13, failed with its bound
    "above 5.099 V" 3.2 sd beyond its prediction 4.54 +/- 0.17. Only calibrated predictions count, a failure's bound
    counts inside or outside by where it lies, and what was left out is said with why."""
    from labloop.orchestrator.journal.plot_data import interval_check
    from labloop.orchestrator.report import _interval_said

    rows = [_checked(4.0 + dz * 0.1) for dz in (0.5, -1.0, 0.0, 1.0)]
    rows += [_checked(6.4, mu=4.5, sigma=2.0, calibrated_on=0) for _ in range(4)]  # the first batch
    rows.append(_checked(None, mu=4.54, sigma=0.17, status="failed", bound=(5.099, 1)))  # experiment 13: outside
    rows.append(_checked(None, mu=4.54, sigma=0.17, status="failed", bound=(4.6, 1)))  # consistent: inside
    rows.append(_checked(None, mu=4.54, sigma=0.17, status="failed", bound=(4.5, -1)))  # below 4.5: inside
    rows.append(_checked(None, mu=4.54, sigma=0.17, status="failed", bound=(4.1, -1)))  # below 4.1 < 4.21: outside
    rows.append(_checked(None, mu=4.54, sigma=0.17, status="failed"))  # no peak: bounds nothing
    check = interval_check(rows)
    assert (check["n"], check["within"], check["n_measured"]) == (8, 6, 4)
    assert (check["bounds"], check["bounds_outside"], check["uncalibrated"], check["unbounded"]) == (4, 2, 4, 1)
    assert check["rms_z"] == pytest.approx(((0.25 + 1.0 + 0.0 + 1.0) / 4) ** 0.5)
    said = _interval_said(check)
    assert said.startswith("6 of 8 calibrated predictions (75%) lay within the 95% interval"), said
    assert ("Of the 8, 4 were measured and 4 failed with a bound on the potential, 2 of these lay beyond the "
            "interval.") in said  # "2 of which" read as 2 of the 8 (a newcomer)
    assert "over the 4 measured is 0.75" in said
    for bound, where in (((5.099, 1), "beyond the interval"), ((4.6, 1), "within it")):  # one bound: no "1 of which"
        one = _interval_said(interval_check([_checked(4.55, mu=4.54, sigma=0.17),
                                             _checked(None, mu=4.54, sigma=0.17, status="failed", bound=bound)]))
        assert f"Of the 2, 1 was measured and 1 failed with a bound on the potential, which lay {where}." in one, one
    assert ("Left out: 4 predictions made before any measurement calibrated the model (the first batch" in said
            and "Left out: 1 failed experiment whose scan bounds nothing (no peak" in said)
    first = interval_check([_checked(6.4, mu=4.5, sigma=2.0, calibrated_on=0)])
    assert _interval_said(first).startswith("No prediction calibrated on a measurement has been checked yet. Left out: "
                                            "1 prediction made before")


def test_calibrated_on_is_the_last_calibration_before_each_proposal():
    """How many measurements a prediction was calibrated on, from the calibration events journalled before it."""
    from labloop.orchestrator.journal.plot_data import calibrated_on

    events = [{"kind": "calibration", "time": "2026-01-01T00:00:02", "data": {"n_measurements": 3}},
              {"kind": "run", "time": "2026-01-01T00:00:03", "data": None},
              {"kind": "calibration", "time": "2026-01-01T00:00:05", "data": {"n_measurements": 7}}]
    experiments = [{"id": i, "created_at": f"2026-01-01T00:00:0{t}"} for i, t in ((1, 1), (2, 2), (3, 4), (4, 6))]
    assert calibrated_on(experiments, events) == {1: 0, 2: 3, 3: 3, 4: 7}


def test_the_interval_check_of_one_or_a_few_measurements_is_not_over_read():
    """A report of one measurement said "where a right sd puts 1-1 of 1", and one measurement outside its interval,
    which a right sd gives 1 time in 20, was called an sd too small (a chemist's trial): one measurement is too few
    to judge by, and a few are judged by the binomial's middle 95% itself, not its normal approximation (which called
    4 of 6 too small: a right sd gives 4 or fewer 3% of the time)."""
    from labloop.orchestrator.journal.plot_data import interval_check
    from labloop.orchestrator.report import _interval_said

    def said(*z: float) -> str:
        return _interval_said(interval_check([_checked(4.0 + dz * 0.1) for dz in z]))

    assert said(0.5) == ("1 of 1 calibrated prediction lay within the 95% interval of its prediction at proposal time "
                         "(predicted +/- 1.96 sd): too few to judge the sd by, as a right sd leaves 1 in 20 outside. "
                         "The root mean square of (measured - predicted) / sd over the 1 measured is 0.50 (about 1 if "
                         "the sd is right).")
    assert said(-2.5).startswith("0 of 1 calibrated prediction lay within the 95% interval of its prediction at "
                                 "proposal time (predicted +/- 1.96 sd): too few to judge the sd by")
    assert said(0.5, 3.0).startswith("1 of 2 calibrated predictions (50%) lay within the 95% interval of their "
                                     "prediction at proposal time (predicted +/- 1.96 sd), where a right sd puts "
                                     "1-2 of 2: the sd was consistent with them.")
    assert "0 of 2 calibrated predictions (0%)" in said(3.0, -3.0) and "the sd was too small" in said(3.0, -3.0)
    assert "where a right sd puts 4-6 of 6: the sd was consistent with them" in said(0, 0, 0, 0, 3, 3)


def test_the_protocols_scan_rate_is_shown_beside_each_experiment_when_none_is_planned(tmp_path, labloop,
                                                                                     write_campaign):
    """Without a ``conditions:`` section the scan rate a cv ran at (the protocol's own) was in voltammograms.csv and
    the raw data alone: ``log --json`` gave ``conditions: {}`` and experiments.csv an empty column. Both now show
    the protocol's value beside the planned ones, each under its own name."""
    steps = yaml.safe_load((EXAMPLES / "protocols" / "cv_screen.yaml").read_text())
    cv = next(step for step in steps if isinstance(step, dict) and "cv" in step)
    cv["cv"]["scan_rate_v_s"] = 0.2  # not the step's default 0.1
    campaign_file = write_campaign(tmp_path, budget={"max_experiments": 2}, conditions={}, protocol=steps)
    assert labloop("run", campaign_file, "--dry-run").returncode == 0
    logged = json.loads(labloop("log", tmp_path / "tiny.db", "--json").stdout)["experiments"]
    assert len(logged) >= 2 and all((e["conditions"], e["protocol_conditions"]) == ({}, {"scan_rate_v_s": 0.2})
                                    for e in logged), logged
    assert labloop("report", tmp_path / "tiny.db", "-o", tmp_path / "report").returncode == 0
    for table in ("experiments.csv", "measurements.csv"):
        with (tmp_path / "report" / table).open() as handle:
            rows = list(csv.DictReader(handle))
        assert rows and all((r["planned_conditions"], r["protocol_conditions"]) == ("", "scan_rate_v_s=0.2")
                            for r in rows), (table, rows)


def test_report_of_an_empty_journal_and_default_folder(tmp_path, labloop, write_campaign):
    from labloop.orchestrator.config.campaign import load_campaign
    from labloop.orchestrator.journal.store import Journal

    campaign = load_campaign(write_campaign(tmp_path))
    Journal.create(campaign.store, campaign).close()
    result = labloop("report", campaign.store)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "tiny.report" / "index.html").is_file()
    assert all((tmp_path / "tiny.report" / name).is_file() for name in PLOTS)
    # nothing failed: the failures section says so, and failures.csv holds its header alone
    assert "<h2>failed experiments</h2><p>no failed experiments</p>" in (tmp_path / "tiny.report" / "index.html"
                                                                          ).read_text()
    assert (tmp_path / "tiny.report" / "failures.csv").read_text().splitlines() == [
        "id,name,smiles,kind,above_v_vs_li,below_v_vs_li,predicted_v_vs_li,predicted_sd_v,uncalibrated,cause,"
        "hit_by_bound,simulated"]
    assert labloop("report", tmp_path / "missing.db").returncode == 2


def test_a_campaign_run_more_than_once_says_how_on_the_page(tmp_path, labloop, write_campaign):
    """A campaign stopped, then resumed with another budget, read "finished: budget reached (2/2)" beside a copy of its
    campaign file saying 1, the resume nowhere on the page (a PI's trial): the page says the runs, how the earlier
    ended, and the budget the resume set; a campaign run once says none of it."""
    campaign_file = write_campaign(tmp_path, budget={"max_experiments": 1})
    assert labloop("run", campaign_file, "--dry-run").returncode == 0
    assert labloop("report", tmp_path / "tiny.db", "-o", tmp_path / "once").returncode == 0
    assert "runs, each continuing" not in (tmp_path / "once" / "index.html").read_text()
    assert labloop("resume", tmp_path / "tiny.db", "--max-experiments", 2).returncode == 0
    assert labloop("report", tmp_path / "tiny.db", "-o", tmp_path / "twice").returncode == 0
    page = html.unescape((tmp_path / "twice" / "index.html").read_text())
    assert ("finished: budget reached (2/2); 2 runs, each continuing the last; the earlier 1 finished; "
            "budget.max_experiments 1 -> 2 (labloop resume --max-experiments);") in page, page


def test_the_runs_history_counts_each_earlier_runs_end_and_the_hands_at_the_rig():
    """How each run a later one continued had ended, by its last start or end event (an experiment's own
    ``interrupted`` is no run's end; a run with no end was killed), and what a person did on a resume's word."""
    from labloop.orchestrator.report import _history

    def event(kind: str, experiment_id: int | None = None, message: str = "") -> dict:
        return {"kind": kind, "experiment_id": experiment_id, "message": message, "data": None}

    events = [event("run"), event("interrupted", 3), event("interrupted"),  # a Ctrl-C
              event("run"), event("done", 4),  # killed: no end
              event("cell_emptied"), event("run"), event("interrupted", 5), event("stopped"),
              event("port", message="instruments.pump.port /dev/ttyUSB0 -> /dev/ttyUSB1 (labloop resume --port)"),
              event("cell_emptied"), event("syringes_filled"), event("run"), event("finished")]
    assert _history(events) == (
        "; 4 runs, each continuing the last; the earlier 1 interrupted (Ctrl-C or a signal), 1 ended without a word "
        "(killed or crashed), 1 stopped; instruments.pump.port /dev/ttyUSB0 -> /dev/ttyUSB1 (labloop resume --port); "
        "the cell emptied by hand 2 times (labloop resume --cell-emptied); the syringes filled by hand 1 time "
        "(labloop resume --syringes-filled)")
    assert _history([event("run"), event("finished")]) == ""


@pytest.mark.parametrize(("planner", "axis"), [
    ({"kind": "bayes"}, "P(in the objective's window)"),
    ({"kind": "bayes", "acquisition": "ei"}, "expected improvement (V)"),
    ({"kind": "bayes", "acquisition": "lcb"}, "optimistic confidence bound (V, higher is chosen)"),
    ({"kind": "greedy"}, "acquisition")])
def test_the_acquisition_plot_says_what_its_values_are(tmp_path, monkeypatch, planner, axis):
    """The plot's axis said "acquisition", neither what nor in what unit (a PI's trial): a bayes planner's is named
    by the acquisition it used (the campaign's, or the one its goal chooses)."""
    from matplotlib.figure import Figure

    from labloop.orchestrator.config.campaign import Objective
    from labloop.orchestrator.report import _acquisition

    said: list[str] = []
    save = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: (said.append(fig.axes[0].get_ylabel()),
                                                                  save(fig, *a, **k))[1])
    objective = Objective.model_validate({"quantity": "oxidation_potential", "goal": "window", "window_v": [4.5, 4.6]})
    _acquisition(tmp_path / "acquisition.png", [{"id": 1, "acquisition": 0.4, "planner": planner["kind"]}],
                 {"planner": planner}, objective, "")
    assert said == [axis]


def test_a_report_killed_while_it_writes_leaves_nothing_once_reported_again(tmp_path, labloop, write_campaign):
    """A ``labloop report`` killed (SIGKILL) while it wrote left its hidden staging folder beside the report for good
    (a data-integrity trial); the next report removes it, and leaves a live report's alone. The killed one is a
    staging folder named with a pid no process has (a real kill raced the report's own writing: a review)."""
    from labloop.orchestrator.config.campaign import load_campaign

    campaign = load_campaign(write_campaign(tmp_path))
    Journal.create(campaign.store, campaign).close()
    killed = tmp_path / ".rep.staging-999999999-abc"  # beyond pid_max: its process is gone
    (killed / "index.html").parent.mkdir()
    (killed / "index.html").write_text("half a page")
    live = subprocess.Popen(["sleep", "600"])  # a process still running, as another report would be
    kept = tmp_path / f".rep.staging-{live.pid}-abc"
    kept.mkdir()
    odd = tmp_path / ".rep.staging-99999999999999999999-x"  # no pid labloop writes: left, and no OverflowError
    odd.mkdir()
    try:
        assert labloop("report", campaign.store, "-o", tmp_path / "rep").returncode == 0
        assert (tmp_path / "rep" / "index.html").is_file()
        assert sorted(p.name for p in tmp_path.glob(".rep.*")) == sorted([kept.name, odd.name])  # the live one's
    finally:
        live.kill()
        live.wait()


def test_a_report_into_a_folder_of_other_files_is_refused_and_replaces_nothing(tmp_path, labloop, write_campaign):
    """``labloop report DB -o .`` in a campaign's folder replaced the lab's own campaign.yaml with the report's copy
    (its alert URL withheld: the file no longer validated), and a folder's experiments.csv and index.html went the
    same way, exit 0 (a security trial). A folder that holds files a report writes, and no earlier report, is
    refused in one line, exit 2, nothing touched; an earlier report's folder is replaced as before; a folder whose
    parent does not exist is not made, with its parents, from a typo."""
    campaign_file = write_campaign(tmp_path, name="campaign", budget={"max_experiments": 1})  # campaign.yaml
    assert labloop("run", campaign_file, "--dry-run").returncode == 0
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir() if path.is_file()}
    result = labloop("report", tmp_path / "campaign.db", "-o", tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "which the report would replace, and no earlier report" in result.stderr and "--output" in result.stderr
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir() if path.is_file()} == before
    assert not list(tmp_path.glob(".*staging*"))
    own = tmp_path / "mine"
    own.mkdir()
    (own / "experiments.csv").write_text("mine\n")
    assert labloop("report", tmp_path / "campaign.db", "-o", own).returncode == 2
    assert (own / "experiments.csv").read_text() == "mine\n"
    assert labloop("report", tmp_path / "campaign.db", "-o", tmp_path / "rep").returncode == 0  # new: made
    (tmp_path / "rep" / "notes.txt").write_text("a note beside the report\n")
    again = labloop("report", tmp_path / "campaign.db", "-o", tmp_path / "rep")  # an earlier report's: replaced
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "rep" / "notes.txt").read_text() == "a note beside the report\n"  # not the report's
    typo = labloop("report", tmp_path / "campaign.db", "-o", tmp_path / "no" / "such" / "rep")
    assert typo.returncode == 2 and "does not exist" in typo.stderr and not (tmp_path / "no").exists()


@pytest.fixture
def full_disk(tmp_path):
    """A 60 kB tmpfs: room for the CSVs, not for the plots (a full disk; mounting needs root, as CI runs)."""
    folder = tmp_path / "full"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=60k", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("a tmpfs cannot be mounted here (not root)")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_a_report_onto_a_full_disk_names_the_file_and_keeps_nothing(tmp_path, labloop, write_campaign, full_disk):
    """On a full disk ``labloop report`` said only 'error: No space left on device', exit 1: not which file, nor
    that nothing was kept. Now one line names the file, exit 2, and an older report in the folder is untouched."""
    assert labloop("run", write_campaign(tmp_path, budget={"max_experiments": 2}), "--dry-run").returncode == 0
    old = full_disk / "old"
    old.mkdir()
    (old / "index.html").write_text(before := "<title>tiny: labloop report</title> the report before")
    for output in (full_disk / "new", old):
        result = labloop("report", tmp_path / "tiny.db", "-o", output)
        lines = result.stderr.splitlines()
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        named = lines[0].removeprefix("error: ").split(": cannot write the report (No space left on device); ")
        assert named[1] == "nothing of it was kept" and named[0].startswith(f"{output}/"), lines[0]
        assert named[0].rsplit("/", 1)[1] in {*PLOTS, "experiments.csv", "measurements.csv", "voltammograms.csv",
                                               "index.html"}
    assert sorted(p.name for p in full_disk.iterdir()) == ["old"]  # no new folder, no temporary one
    assert [p.name for p in old.iterdir()] == ["index.html"] and (old / "index.html").read_text() == before


def test_the_reports_tables_name_the_molecules_the_library_names(tmp_path, labloop, write_campaign):
    """A chemist's library named its molecules (a `name` column) and the report's tables showed SMILES alone, some
    230 characters long. experiments.csv and measurements.csv carry the library's name beside each SMILES; a
    library moved away since the run leaves the column empty, and the report is still written."""
    import pandas as pd

    library = pd.read_csv(EXAMPLES / "library.csv")
    library.insert(1, "Name", [f"candidate {i}" for i in range(len(library))])
    library.to_csv(tmp_path / "named.csv", index=False)
    campaign = write_campaign(tmp_path, library={"file": str(tmp_path / "named.csv")}, budget={"max_experiments": 2})
    assert labloop("run", campaign, "--dry-run").returncode == 0
    named = dict(zip(library.smiles, library.Name, strict=True))
    assert labloop("report", tmp_path / "tiny.db", "-o", tmp_path / "report").returncode == 0
    for table in ("experiments.csv", "measurements.csv"):
        with (tmp_path / "report" / table).open() as handle:
            rows = list(csv.DictReader(handle))
        assert rows and all(r["name"] == named[r["smiles"]] for r in rows), rows
    # and the page's best-so-far table (a trial: names were in the CSVs only)
    page = (tmp_path / "report" / "index.html").read_text()
    best = page[page.index("<h2>best so far</h2>"):page.index("<h2>models</h2>")]
    assert "<th>name</th>" in best and any(f"<td>{name}</td>" in best for name in library.Name), best
    (tmp_path / "named.csv").rename(tmp_path / "moved.csv")
    assert labloop("report", tmp_path / "tiny.db", "-o", tmp_path / "again").returncode == 0
    with (tmp_path / "again" / "experiments.csv").open() as handle:
        assert {r["name"] for r in csv.DictReader(handle)} == {""}


def test_lab_grade_rows_judge_no_reversibility_where_the_window_cut_the_couple():
    """A scan whose wave lay beyond its vertex showed only the return wave of what the forward sweep made there,
    and lab_grade.csv called it 'irreversible' (a chemist's trial): the analysis leaves it unjudged now, and a
    journal written before is read so too."""
    from labloop.orchestrator.report import _lab_grade_rows

    experiment = {"id": 9, "smiles": "c1ccccc1", "status": "failed"}
    scans = [{"scan_rate_v_s": 0.1, "analysis": {"epc_v": 1.4628, "ipc_a": -1.43e-7, "reversibility": "irreversible",
                                                 "flags": ["beyond_window"]}},
             {"scan_rate_v_s": 0.2, "analysis": {"e_half_v": 0.5, "reversibility": "irreversible",
                                                 "flags": ["irreversible"]}}]
    rows = _lab_grade_rows(experiment, {"scans": scans})
    assert [r["reversibility"] for r in rows] == [None, "irreversible"]
    assert rows[0]["epc_v_vs_reference"] == 1.4628  # what the scan measured stays


def test_the_lab_plots_can_be_read(tmp_path, monkeypatch):
    """A chemist's trial: the Nyquist plot ran Z' from -10 kohm, where a 300 ohm intercept could not be read, and the
    ferrocene plot's title was cut at the figure's edge, its ids ticked at 2.5 and 7.5."""
    import numpy as np

    from labloop.orchestrator import report

    saved = {}
    save = report._save

    def keeping(fig, ax, path, empty, stamp):
        fig.canvas.draw()  # the title's extent as the PNG has it
        saved[path.name] = (fig.bbox, ax.get_title(), ax.title.get_window_extent(), ax.get_xlim(), ax.get_ylim(),
                            list(ax.get_xticks()))
        save(fig, ax, path, empty, stamp)

    monkeypatch.setattr(report, "_save", keeping)
    frequencies = np.logspace(6, 0, 60)
    z = 300 + 10000 / (1 + 1j * frequencies * 2e-2)  # Ru 300 ohm and a 10 kohm arc
    record = {"eis": {"z_real_ohm": list(z.real), "z_imag_ohm": list(z.imag), "frequency_hz": list(frequencies)},
              "ru": {"ru_ohm": 300.0, "n_points": 30}}
    report._nyquist(tmp_path / "nyquist.png", ({"id": 7}, record), "")
    _, _, _, xlim, ylim, _ = saved["nyquist.png"]
    assert xlim[0] == 0 and ylim[0] == 0 and xlim[1] > 10000
    labs = [({"id": i}, {"referenced": {"e_vs_li_v": 4.2 + 0.01 * i}, "scans": [{"analysis": {"e_half_v": 1.0}}]})
            for i in range(1, 9)]
    report._versus_ferrocene(tmp_path / "fc.png", labs, 3.2, "")
    figure, title, extent, _, _, ticks = saved["fc.png"]
    assert figure.x0 <= extent.x0 and extent.x1 <= figure.x1, title
    assert all(float(t).is_integer() for t in ticks), ticks


def _blocking_spectrum() -> dict:
    """A lab record's impedance as the lab-grade dry run measures it: Ru 500 ohm in series with the double layer
    alone (a blocking electrode), -Z'' from 0 to 11 kohm over 100 kHz-10 Hz while Z' stays near 500 ohm."""
    import numpy as np

    frequencies = np.logspace(5, 1, 21)
    z = 500 + 1 / (1j * 2 * np.pi * frequencies * 1.45e-6)
    return {"eis": {"z_real_ohm": list(z.real), "z_imag_ohm": list(z.imag), "frequency_hz": list(frequencies),
                    "overload_index": [0]},
            "ru": {"ru_ohm": 499.4, "n_points": 11}}


def test_the_nyquist_plot_of_a_blocking_electrode_is_readable_and_marks_ru(tmp_path, monkeypatch):
    """A reviewer's finding: equal scales drew Z' 0-500 ohm beside -Z'' 0-11 kohm, a sliver whose Z' ticks ran
    together ('0500'). The whole spectrum is drawn to scales of its own, and beside it the points Ru was fitted to
    (the highest frequencies, an overloaded one left out), with Ru marked on the real axis."""
    from labloop.orchestrator import report

    seen = {}
    save = report._save

    def keeping(fig, ax, path, empty, stamp):
        fig.canvas.draw()
        whole, near = fig.axes
        labels = [t.get_window_extent() for t in whole.get_xticklabels() if t.get_text()]
        seen.update(aspect=whole.get_aspect(), labels=labels, near=near, lines=[line.get_xydata() for line in
                                                                                 near.get_lines()])
        save(fig, ax, path, empty, stamp)

    monkeypatch.setattr(report, "_save", keeping)
    record = _blocking_spectrum()
    report._nyquist(tmp_path / "nyquist.png", ({"id": 31}, record), "")
    assert seen["aspect"] == "auto"  # not equal: 500 ohm against 11 kohm
    assert len(seen["labels"]) >= 3 and all(a.x1 < b.x0 for a, b in itertools.pairwise(seen["labels"]))
    points, marker = seen["lines"][0], seen["lines"][1]
    fitted = sorted(range(1, 21), key=lambda i: -record["eis"]["frequency_hz"][i])[:11]  # 0 is overloaded
    assert sorted(points[:, 1]) == sorted(-record["eis"]["z_imag_ohm"][i] for i in fitted)
    assert marker.tolist() == [[499.4, 0.0]]
    low, high = seen["near"].get_xlim()
    assert low < 499.4 < high and high - low < 50  # the intercept's neighbourhood, not 0-500 ohm
    assert "Ru 499 ohm (fit)" in [t.get_text() for t in seen["near"].get_legend().get_texts()]


def test_the_voltammograms_name_their_scale_rate_and_compensation(tmp_path, monkeypatch):
    """A reviewer's findings: 'recent voltammograms' on the reference electrode's scale beside numbers vs Li/Li+,
    potentials not iR-corrected without saying so, and a legend without the scan rate where the planned rates ran
    0.02-0.5 V/s (peak heights ~5x apart). The axis says the scale and that the potentials are as applied, a top axis
    gives them vs Li/Li+ by the cell's offset, and each legend entry has the rate and the compensation."""
    import numpy as np

    from labloop.instruments.voltammogram import CVParams, Voltammogram
    from labloop.orchestrator import report

    def scan(rate, compensated=0.0):
        params = CVParams(e_begin_v=0.0, e_vertex1_v=1.0, e_vertex2_v=0.0, scan_rate_v_s=rate, ir_comp_ohm=compensated)
        return Voltammogram(np.array([0.0, 0.5, 1.0, 0.5, 0.0]), np.array([0.0, 1e-6, 2e-6, -1e-6, 0.0]),
                            np.arange(5) * 0.5 / rate, params, "Ag/Ag+")

    seen = {}
    save = report._save

    def keeping(fig, ax, path, empty, stamp):
        fig.canvas.draw()
        (top,) = ax.child_axes
        seen[path.name] = (ax.get_xlabel(), top.get_xlabel(), ax.get_xlim(), top.get_xlim(),
                           [t.get_text() for t in ax.get_legend().get_texts()])
        save(fig, ax, path, empty, stamp)

    monkeypatch.setattr(report, "_save", keeping)

    class Scans:
        def voltammograms(self, experiment_id):
            return [scan(0.0200853)] if experiment_id == 26 else [scan(0.48386, 424.489)]

    report._voltammograms(tmp_path / "recent.png", Scans(), [{"id": 26}, {"id": 30}], 3.2, "")
    record = {"scans": [{"scan_rate_v_s": rate, "voltammogram": scan(rate, 425.0).to_dict()} for rate in (0.1, 1.0)]}
    report._scan_rates(tmp_path / "rates.png", ({"id": 30}, record), 3.45, "")
    for name, offset, legend in (("recent.png", 3.2, ["#26, 0.02009 V/s", "#30, 0.4839 V/s, 424 ohm iR comp."]),
                                 ("rates.png", 3.45, ["0.1 V/s, 425 ohm iR comp.", "1 V/s, 425 ohm iR comp."])):
        axis, top, limits, top_limits, entries = seen[name]
        assert axis == "E (V vs Ag/Ag+, as applied: uncompensated iR not subtracted)"
        assert top == f"E (V vs Li/Li+, by cell.reference_offset_v = {offset:g} V)"
        assert top_limits == pytest.approx((limits[0] + offset, limits[1] + offset))
        assert entries == legend


def test_the_lab_grade_table_escapes_what_it_shows():
    """The page's lab-grade table shows journal text (a SMILES, a standard's problem) escaped, each experiment on
    one row with its rates' dEp a line each."""
    from labloop.orchestrator.report import _lab_grade_rows, _lab_table

    scans = [{"scan_rate_v_s": rate, "voltammogram": {"params": {"ir_comp_ohm": 400.0}},
              "analysis": {"e_half_v": 0.5, "dep_v": dep}} for rate, dep in ((0.1, 0.0614), (1.0, None))]
    record = {"scans": scans, "ru": {"ru_ohm": 500.0},
              "referenced": {"e_vs_fc_v": None, "problem": "<b>two couples</b> & none"}}
    table = _lab_table(_lab_grade_rows({"id": 3, "smiles": "C<script>", "status": "failed"}, record))
    assert "<script>" not in table and "<b>" not in table
    assert "<td>C&lt;script&gt;</td>" in table and "<td>&lt;b&gt;two couples&lt;/b&gt; &amp; none</td>" in table
    assert "0.1 V/s: 61.4<br>1 V/s: none" in table and "<td>80</td>" in table  # 400 of 500 ohm compensated
    assert table.count("<tr>") == 2 and _lab_table([]) == ""


def test_the_failures_and_best_tables_escape_what_they_show():
    """The failures table shows journal text (a SMILES, a name, a plug-in's message in a cause) and the best table a
    reference electrode's name from the campaign file: all escaped."""
    from labloop.orchestrator.report import _best_table, _failures, _failures_table

    failed = {"id": 4, "name": "<i>x</i>", "smiles": "C<script>", "status": "failed", "flags": [], "mu": None,
              "sigma": None, "uncalibrated": False, "cause": "pump (dispense): <b>Odd</b>: a & b"}
    table = _failures_table(_failures([failed], []))
    assert "<script>" not in table and "<b>" not in table and "<i>" not in table
    assert ("<td>4</td><td>&lt;i&gt;x&lt;/i&gt;</td><td><code>C&lt;script&gt;</code></td><td>pump (dispense): "
            "&lt;b&gt;Odd&lt;/b&gt;: a &amp; b</td>") in table  # no error type named: the whole cause is its kind
    best = {**failed, "status": "done", "potential_v": 4.5, "reference": "Ag<wire>", "hit": True}
    snap = {"best": [best], "progress": {"hits": None, "counts": {"done": 1}}, "campaign": {"objective": {}}}
    page = _best_table(snap, {}, 3.2)
    assert "<wire>" not in page and "nominal: E1/2 vs Ag&lt;wire&gt; + cell.reference_offset_v = 3.2 V" in page
    assert "The best" not in page  # every measured one is shown
    # five of six hits listed, nothing saying there was a sixth (a referee's trial)
    window = {"quantity": "oxidation_potential", "goal": "window", "window_v": [4.5, 4.6]}
    snap = {"best": [best] * 5, "progress": {"hits": 6, "counts": {"done": 30}}, "campaign": {"objective": window}}
    assert ("The best 5 of the 30 measured experiments (6 hits in all: measurements.csv's hit column says which)"
            in _best_table(snap, {}, 3.2))


def test_control_characters_from_outside_are_shown_as_escapes_on_the_page_and_in_the_csvs(tmp_path, labloop,
                                                                                         write_campaign):
    """A device's error message with ESC sequences and a right-to-left override went raw into index.html,
    experiments.csv and failures.csv (``cat failures.csv`` ran them on the terminal; the page showed the text
    reversed), while the console and ``labloop log`` show their escapes (a security review). A library name too."""
    # a no-break space, which names pasted from a spreadsheet hold, stays as it is (a review)
    name, cause = "\u202eexe.txt\xa0evil", "potentiostat: DeviceError: \x1b]0;TITLEPWN\x07 overload \u202ereversed"
    (tmp_path / "named.csv").write_text(f"smiles,name\nCCO,{name}\nCCN,plain\n")
    campaign = write_campaign(tmp_path, library={"file": str(tmp_path / "named.csv")})
    from labloop.orchestrator.config.campaign import load_campaign

    loaded = load_campaign(campaign)
    with Journal.create(loaded.store, loaded) as journal:
        (eid,) = journal.record_proposals([Proposal("CCO", {}, None, None, None, 0, "random")], step=0,
                                          planner="random")
        journal.start_experiment(eid)
        journal.fail_experiment(eid, cause)
    assert labloop("report", loaded.store, "-o", tmp_path / "report").returncode == 0
    for written in ("index.html", "experiments.csv", "failures.csv"):
        text = (tmp_path / "report" / written).read_text()
        assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text, written
        assert "\\x1b]0;TITLEPWN\\x07 overload \\u202ereversed" in text, written
        assert "\\u202eexe.txt\xa0evil" in text or "\\u202eexe.txt&nbsp;evil" in text, written


def test_the_header_says_a_dry_run_how_it_ended_and_keeps_the_campaign_and_protocol_files(tmp_path, labloop,
                                                                                        write_campaign):
    """A PI's audit: a simulated campaign's report looked exactly like a real one, a stopped one like a finished one,
    and the campaign file that was run was nowhere in the folder. The page says a dry run and how the run ended, and
    the folder holds the campaign file verbatim, its sha256 on the page."""
    import hashlib

    campaign_file = write_campaign(tmp_path, budget={"max_experiments": 2})
    assert labloop("run", campaign_file, "--dry-run").returncode == 0
    assert labloop("report", tmp_path / "tiny.db", "-o", tmp_path / "report").returncode == 0
    page = " ".join((tmp_path / "report" / "index.html").read_text().split())
    source = campaign_file.read_text()
    assert (tmp_path / "report" / "campaign.yaml").read_text() == source
    assert ("<p><b>dry run (simulated instruments and chemistry: no molecule was measured)</b>; finished: budget "
            "reached (2/2); campaign file as run: <a "
            f'href="campaign.yaml">campaign.yaml</a> (sha256 {hashlib.sha256(source.encode()).hexdigest()} of the file '
            "as run; the journal does not keep its name;") in page
    assert "<p>model now: " in page  # the last calibration's error beside the window (below)
    # simulated data said so wherever they may be taken from: the page's title (a printout's page headers), every
    # CSV's rows, each figure's corner, `labloop log` and its --json (a referee's trial: the header line alone)
    assert "<title>tiny (dry run: simulated data): labloop report</title>" in page
    for name in ("experiments.csv", "measurements.csv", "voltammograms.csv"):
        with (tmp_path / "report" / name).open() as handle:
            cells = {row["simulated"] for row in csv.DictReader(handle)}
        assert cells == {"yes"}, (name, cells)
    assert "dry run: simulated data" in labloop("log", tmp_path / "tiny.db").stdout
    snap = json.loads(labloop("log", tmp_path / "tiny.db", "--json").stdout)
    assert snap["campaign"]["runs"] == {"dry": 1, "real": 0} and {e["dry_run"] for e in snap["experiments"]} == {True}
    # the campaign file names its protocol file by path only: its steps as run are beside it (a data-integrity trial)
    protocol = yaml.safe_load(campaign_file.read_text())["protocol"]
    assert yaml.safe_load((tmp_path / "report" / "protocol.yaml").read_text()) == yaml.safe_load(
        Path(protocol).read_text())
    assert (f'the steps of its protocol, {html.escape(protocol)}, as run: <a href="protocol.yaml">protocol.yaml</a>'
            in page)
    # a report of a campaign with its steps inline into that folder has none, nor keeps the other's, nor what a
    # lab-grade campaign's report left there (the unlink of a file not written missed the folder: it was the
    # staging folder's)
    (tmp_path / "report" / "lab_grade.csv").write_text("id\n1\n")
    inline = write_campaign(tmp_path, name="inline", budget={"max_experiments": 1},
                            protocol=yaml.safe_load(Path(protocol).read_text()))
    assert labloop("run", inline, "--dry-run").returncode == 0
    assert labloop("report", tmp_path / "inline.db", "-o", tmp_path / "report").returncode == 0
    assert not (tmp_path / "report" / "protocol.yaml").exists()
    assert not (tmp_path / "report" / "lab_grade.csv").exists()
    assert (tmp_path / "report" / "campaign.yaml").read_text() == inline.read_text()
    assert "protocol.yaml" not in (tmp_path / "report" / "index.html").read_text()


def test_the_provenance_says_mixed_runs_a_stop_and_a_live_run():
    from labloop.orchestrator.report import _provenance

    events = [{"kind": "run", "message": "run started (dry run on emulators)", "data": {"dry_run": True}},
              {"kind": "run", "message": "run started (real instruments)", "data": {"dry_run": False}}]
    stopped = {"run_active": False, "ended": "stopped: 3 consecutive faults <pump>"}
    said = _provenance(None, events, stopped)
    assert said == ("<b>mixed: 1 run dry (simulated data: each CSV row says which in its simulated column), 1 on "
                    "real instruments</b>; stopped: 3 consecutive "
                    "faults &lt;pump&gt;; 2 runs, each continuing the last; the earlier 1 ended without a word (killed "
                    "or crashed); the campaign file is not in the journal")
    assert _provenance(None, events[1:], {"run_active": True, "ended": None}).startswith(
        "<b>real instruments</b>; still running (a run holds the journal)")


def test_the_model_now_line_sets_the_last_calibrations_error_beside_the_window():
    """A reader could not tell whether the model can place a molecule within the window: the last calibration's
    leave-one-out RMSE is said beside the window's width."""
    from labloop.orchestrator.report import _model_now

    calibrations = [{"loo_rmse_v": 0.4, "n_measurements": 3}, {"loo_rmse_v": 0.264, "n_measurements": 29}]
    window = {"quantity": "oxidation_potential", "goal": "window", "window_v": [4.5, 4.6]}
    assert _model_now(calibrations, window) == (
        "model now: the last calibration (on 29 measurements) predicts a measurement left out of it to 0.264 V "
        "(leave-one-out RMSE), beside the objective window's width of 0.100 V (2.6 times it).")
    assert _model_now(calibrations[:1], {"goal": "maximize", "window_v": None}).endswith("to 0.400 V (leave-one-out "
                                                                                         "RMSE).")
    assert _model_now([], window) == "model now: no calibration on measurements yet."


#: a redox-inactive molecule (no wave in the screen's window), one whose wave lies beyond the window's 5.15 V vertex
#: (tests/orchestrator/test_lab_grade_example.py has the two fail so on the lab-grade rig), and one the window holds
NO_WAVE, BEYOND, MEASURABLE = "CCCCCC", "N#Cc1ccc(C#N)c2c1-c1cccc3cccc-2c13", "Oc1ccc2c3c([nH]c2c1)C=NCC3"


@pytest.mark.slow  # trains a small prior for the predictions (15-25 s on 2 shared cores)
def test_the_report_lists_the_failed_experiments_with_kind_bound_prediction_and_cause(tmp_path, labloop,
                                                                                       write_campaign):
    """A PI's audit: the report had no table of the failed experiments (measurements.csv holds only those that
    journalled a measurement, experiments.csv the causes without the bounds). The page's "failed experiments"
    section and failures.csv give each one's id, name, SMILES, the kind as journalled, the bound its scan gave, the
    prediction +/- sd it was proposed with and the journal's cause; a veto is one too."""
    (tmp_path / "lib.csv").write_text(f"smiles,ie_ev,ea_ev\n{NO_WAVE},10.13,-1.5\n{BEYOND},8.245936,1.482288\n"
                                      f"{MEASURABLE},7.058535,-0.219577\n")
    campaign = write_campaign(tmp_path, prior=True, shared_prior=True, library={"file": str(tmp_path / "lib.csv")},
                              planner={"kind": "greedy", "batch_size": 3}, budget={"max_experiments": 4})
    assert labloop("run", campaign, "--dry-run").returncode == 0
    with Journal.open(tmp_path / "tiny.db") as journal:  # a person vetoes a proposal: a failure with a prediction
        (vetoed,) = journal.record_proposals([Proposal("CCO", {"scan_rate_v_s": 0.1}, 4.512345, 0.123456, 0.5, 1,
                                                       "greedy")], step=9, planner="greedy", awaiting_approval=True)
        journal.approve([vetoed], by="a PI")
        failed = {e.id: e for e in journal.experiments() if e.status == "failed"}
    assert {e.smiles for e in failed.values()} == {NO_WAVE, BEYOND, "CCO"}, failed
    assert labloop("report", tmp_path / "tiny.db", "-o", tmp_path / "report").returncode == 0
    with (tmp_path / "report" / "failures.csv").open() as handle:
        rows = {int(r["id"]): r for r in csv.DictReader(handle)}
    assert sorted(rows) == sorted(failed)
    for experiment_id, e in failed.items():
        row = rows[experiment_id]
        assert (row["smiles"], row["cause"]) == (e.smiles, e.cause)
        assert (row["predicted_v_vs_li"], row["predicted_sd_v"]) == (f"{e.mu:.4f}", f"{e.sigma:.4f}"), row
        # a prediction made before any measurement (the first batch, no past data) is said so, as the page's '*'
        assert row["uncalibrated"] == ("yes" if e.step == 0 else "no"), row
    assert {r["uncalibrated"] for r in rows.values()} == {"yes", "no"}, rows  # both kinds among the failures
    kinds = {rows[i]["smiles"]: rows[i]["kind"] for i in rows}
    assert kinds == {NO_WAVE: "analysis: no_peak", BEYOND: "analysis: beyond_window", "CCO": "vetoed"}
    # the bound the runner's cause states (to 1 mV), a bound above for a wave beyond the vertex, none for no wave
    (beyond,) = [r for r in rows.values() if r["smiles"] == BEYOND]
    stated = re.search(r"above (\d\.\d{3}) V vs Li/Li\+", beyond["cause"])
    assert stated and f"{float(beyond['above_v_vs_li']):.3f}" == stated[1] and beyond["below_v_vs_li"] == "", beyond
    assert all(r["above_v_vs_li"] == r["below_v_vs_li"] == "" for r in rows.values() if r["smiles"] != BEYOND)
    page = (tmp_path / "report" / "index.html").read_text()
    section = page[page.index("<h2>failed experiments</h2>"):page.index("<h2>models</h2>")]
    assert page.index("<h2>best so far</h2>") < page.index("<h2>failed experiments</h2>")
    # the library names none of its molecules: no name column (test_the_pages_tables_have_no_name_column_...)
    assert f"<td>{vetoed}</td><td><code>CCO</code></td><td>vetoed</td><td></td><td>4.512 +/- 0.123</td>" \
           f"<td>vetoed by a person (a PI)</td>" in section, section
    assert f"<td>analysis: beyond_window</td><td>above {stated[1]}</td>" in section
    assert html.escape(beyond["cause"]) in section and '<a href="failures.csv">' in page


def test_a_failed_scans_bound_past_the_threshold_is_a_hit_by_bound(tmp_path, labloop, write_campaign):
    """A minimize screen's molecules whose waves lay below the scan's end, already under the threshold, were counted
    as failures alone, the best of an anolyte screen among them (a chemist's trial): the failure is said a hit by its
    bound in `log` (its header and --json), the page and failures.csv; the measured hits are counted as before."""
    (tmp_path / "lib.csv").write_text(f"smiles,ie_ev,ea_ev\n{BEYOND},8.245936,1.482288\n"
                                      f"{MEASURABLE},7.058535,-0.219577\n")
    campaign = write_campaign(tmp_path, library={"file": str(tmp_path / "lib.csv")},
                              objective={"quantity": "oxidation_potential", "goal": "maximize", "threshold_v": 4.0},
                              planner={"kind": "random", "batch_size": 2}, budget={"max_experiments": 2})
    assert labloop("run", campaign, "--dry-run").returncode == 0
    snap = json.loads(labloop("log", tmp_path / "tiny.db", "--json").stdout)
    by_bound = [e["smiles"] for e in snap["experiments"] if e["hit_by_bound"]]
    assert by_bound == [BEYOND] and snap["progress"]["hits_by_bound"] == 1, snap["progress"]
    assert "(+ 1 by bound: failed, the wave beyond the scan and past the threshold)" in " ".join(labloop(
        "log", tmp_path / "tiny.db").stdout.split())  # as wrapped at the console's width
    assert labloop("report", tmp_path / "tiny.db", "-o", tmp_path / "report").returncode == 0
    with (tmp_path / "report" / "failures.csv").open() as handle:
        (row,) = [r for r in csv.DictReader(handle) if r["smiles"] == BEYOND]
    assert row["hit_by_bound"] == "yes", row
    page = (tmp_path / "report" / "index.html").read_text()
    assert f"<td>above {float(row['above_v_vs_li']):.3f}: a hit</td>" in page
    assert "(+ 1 by bound: failed, the wave beyond the scan and past the threshold;" in page


def test_the_surrogate_and_the_planner_are_said_as_a_methods_section_needs():
    """A referee writing a paper's methods found the network, its features and its training data only in the campaign
    file's copy and the docs, the libraries' versions only in log --json: the page says them, from the journal."""
    config = {"prior": {"file": "/data/ocelot_chromophore_v1_ie_ea.csv", "rows": 2000, "targets": ["ie_ev", "ea_ev"]},
              "surrogate": {"preset": "fast", "folds": 3, "epochs": 10, "retrain_every": 10},
              "planner": {"kind": "bayes", "acquisition": "window_probability", "approve": False, "batch_size": 4}}
    versions = {"labloop": "0.1.0", "tensorflow": "2.21.0"}
    events = [{"kind": "run", "data": {"versions": versions}}, {"kind": "done", "data": None}]
    assert _setup_said(config, events) == html.escape(
        "surrogate: preset fast (as this labloop defines it), 3 fully connected networks (hidden 512-256, relu, 10 "
        "epochs) on ECFP4 2048 counts + atom pairs 1024 + torsions 1024 + Hückel and size descriptors, trained on the "
        "campaign seed's slice of 2000 rows of ocelot_chromophore_v1_ie_ea.csv (ie_ev, ea_ev), retrained with the "
        "measurements every 10 done experiments; planner "
        "bayes (acquisition window_probability, approve false, batch_size 4); software of the last run: labloop "
        "0.1.0, tensorflow 2.21.0")
    older = {"kind": "run", "data": {"versions": {**versions, "tensorflow": "2.20.0"}}}
    assert "; software of the last run (not all its 2 runs: log --json's run events): labloop 0.1.0, tensorflow " \
           "2.21.0" in html.unescape(_setup_said({**config, "prior": None}, [older, *events]))
    # a preset this labloop no longer defines: its name, and the page is still written
    gone = {**config, "surrogate": {**config["surrogate"], "preset": "retired"}}
    assert _setup_said(gone, events).startswith("surrogate: preset retired; planner bayes (")
    # the conditions it chose and the rig that ran them (a referee found them in the campaign file's copy alone)
    rig = {**config, "conditions": {"scan_rate_v_s": [0.02, 0.5]},
           "instruments": {"analyte_pump": {"driver": "ne1000", "port": "/dev/ttyUSB0",
                                            "options": {"address": 0, "diameter_mm": 4.61, "capture": "/tmp/w.log"}},
                           "potentiostat": {"driver": "emstat", "options": {"reference": "Ag/Ag+"}}}}
    said = html.unescape(_setup_said(rig, events))
    assert ("; conditions it chooses per experiment: scan_rate_v_s [0.02, 0.5]; instruments (name, driver, options): "
            "analyte_pump ne1000 (address 0, diameter_mm 4.61); potentiostat emstat (reference Ag/Ag+); software"
            ) in said, said


def test_the_pages_tables_have_no_name_column_when_the_library_names_none(tmp_path, write_campaign, labloop):
    """The example's library names none of its molecules, and the page's best and failed tables showed an empty
    ``name`` column where ``labloop log`` shows none (a newcomer's trial); the CSVs keep theirs, for scripts."""
    campaign = write_campaign(tmp_path, budget={"max_experiments": 2})
    assert labloop("run", campaign, "--dry-run").returncode == 0
    assert labloop("report", tmp_path / "tiny.db", "-o", tmp_path / "report").returncode == 0
    page = (tmp_path / "report" / "index.html").read_text()
    assert best_rows(page) and all("name" not in row and row["SMILES"] for row in best_rows(page))
    assert "<th>name</th>" not in page
    with (tmp_path / "report" / "experiments.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows and {r["name"] for r in rows} == {""}


def test_a_reference_electrode_named_at_length_keeps_the_potential_axis_inside_the_plot(tmp_path):
    """``Ag/Ag+ (0.01 M AgNO3, MeCN)``, as a lab names its electrode, cut the axis's label off at "iR not subtrac"
    (a chemist's trial): the label wraps at the figure's edge, whole, in the saved plot."""
    from labloop.orchestrator.report import _figure, _potential_axis, _save

    fig, ax = _figure("recent voltammograms", "", "i (uA, anodic +)")
    ax.set_xlabel(_potential_axis(["Ag/Ag+ (0.01 M AgNO3, MeCN)"]))
    _save(fig, ax, tmp_path / "voltammograms.png", None, "")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    box = ax.xaxis.label.get_window_extent(FigureCanvasAgg(fig).get_renderer())  # the closed figure's, redrawn
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width, (box, fig.bbox)
    assert (tmp_path / "voltammograms.png").stat().st_size > 0


def test_a_figure_of_simulated_data_says_so_in_its_corner(tmp_path):
    """A figure taken out of a dry run's page read as measured data (a referee's trial): it says "dry run: simulated
    data" in its lower right corner, in red; a real campaign's figure has nothing there."""
    from matplotlib.image import imread

    from labloop.orchestrator.report import _figure, _save, _stamp

    assert _stamp({"dry": 0, "real": 2}) == "" and _stamp({"dry": 1, "real": 1}) == "partly a dry run: simulated data"
    corners = {}
    for stamp in (_stamp({"dry": 2, "real": 0}), ""):
        fig, ax = _figure("best so far", "n", "potential (V vs Li/Li+)")
        _save(fig, ax, tmp_path / "plot.png", None, stamp)
        image = imread(tmp_path / "plot.png")
        corner = image[-12:, -200:, :3]  # the last rows and columns of pixels
        corners[stamp] = int(((corner[..., 0] > 0.6) & (corner[..., 1] < 0.5) & (corner[..., 2] < 0.5)).sum())
    assert corners["dry run: simulated data"] > 20 and corners[""] == 0, corners
