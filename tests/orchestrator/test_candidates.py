"""`labloop candidates`: the library molecules a finished campaign has not measured, ranked by P(hit) from the newest
model calibrated on the measurements; --json and --csv hold the same rows; bad stores are one line, exit 2."""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
import signal
import subprocess
import sys

import pandas as pd
import pytest
from scipy.stats import norm

from labloop.orchestrator.journal.store import Journal

from ..conftest import EXAMPLES

SURROGATE = {"preset": "fast", "folds": 2, "epochs": 2, "retrain_every": 3, "wait_for_retrain": True}
WINDOW = (4.5, 4.6)


@pytest.fixture(scope="module")
def campaign(tmp_path_factory) -> dict:
    """A tiny bayes campaign run to its budget (6 experiments, one retrain), its library naming its molecules, and
    one experiment proposed afterwards by hand (pending)."""
    from labloop.orchestrator.cli.main import main

    from ..conftest import _write_campaign

    folder = tmp_path_factory.mktemp("candidates")
    library = pd.read_csv(EXAMPLES / "library.csv")
    # every other name starts as a spreadsheet formula would: anyone's text, which the CSV must not run in Excel
    library.insert(0, "name", [f"=mol-{i}" if i % 2 else f"mol-{i}" for i in range(len(library))])
    library.to_csv(folder / "named.csv", index=False)
    path = _write_campaign(folder, prior=True, shared_prior=True, surrogate=SURROGATE,
                           planner={"kind": "bayes", "batch_size": 2}, library={"file": str(folder / "named.csv")})
    assert main(["run", str(path), "--dry-run"]) == 0
    store = folder / "tiny.db"
    with Journal.open(store) as journal:
        measured = {e.smiles for e in journal.experiments()}
        pending = next(s for s in library["smiles"] if s not in measured)
        journal.record_proposals([_Pending(pending)], step=99, planner="bayes")
        versions = [m.version for m in journal.model_versions()]
    return {"store": store, "folder": folder, "measured": measured, "pending": pending, "versions": versions,
            "names": dict(zip(library["smiles"], library["name"], strict=True)),
            "rows": {s: i for i, s in reversed(list(enumerate(library["smiles"])))}}  # each molecule's first row


class _Pending:
    """A proposal recorded by hand: a molecule the journal holds as proposed, not yet measured."""

    def __init__(self, smiles: str) -> None:
        self.smiles, self.conditions = smiles, {"scan_rate_v_s": 0.1}
        self.mu = self.sigma = self.acquisition = None


def test_the_ranking_leaves_out_what_was_measured_or_proposed_and_is_p_hit_of_the_window(labloop, campaign):
    result = labloop("candidates", campaign["store"], "--json", "--top", "1000")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    rows = data["candidates"]
    smiles = [r["smiles"] for r in rows]
    assert len(campaign["measured"]) == 6 and not (set(smiles) & (campaign["measured"] | {campaign["pending"]}))
    assert data["excluded"] == 7 and len(rows) == data["library"] - 7 - data["unreadable"]
    assert data["model_version"] == max(campaign["versions"]) == 2  # the retrained round, the journal's newest
    assert data["measurements"] == 6 and data["loo_rmse_v"] > 0
    p = [r["p_hit"] for r in rows]
    assert p == sorted(p, reverse=True) and p[0] > 0.05
    for row in rows:  # P(lo <= E <= hi) under N(mu, sd^2): the window's probability, not a score of another kind
        expected = norm.cdf((WINDOW[1] - row["mu_v"]) / row["sd_v"]) - norm.cdf((WINDOW[0] - row["mu_v"]) / row["sd_v"])
        assert row["p_hit"] == pytest.approx(expected, abs=1e-9)
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    assert all(r["name"] == campaign["names"][r["smiles"]] for r in rows)
    # the vial each is in, as load_sample loads it: S0001 for the library's first row (a chemist's trial counted rows)
    assert all(r["sample_id"] == f"S{campaign['rows'][r['smiles']] + 1:04d}" for r in rows)


def test_the_table_says_the_model_the_calibration_and_predictions_matching_p_hit(labloop, campaign):
    result = labloop("candidates", campaign["store"], "--top", "5")
    assert result.returncode == 0, result.stderr
    out = " ".join(result.stdout.split())
    assert "model version 2 (" in out and "calibrated on 6 measurements" in out
    # the last measurement included, which log's last calibration was not (a newcomer compared the two)
    assert "(every one in the journal, the last included: `labloop log` and the report show the calibration of " \
        "the last proposal)" in out
    assert "predictions, not measurements" in out and "leave-one-out RMSE" in out
    assert "± 1 sd" in out  # which sd, as `labloop log` says it (a newcomer's trial)
    ranked = json.loads(labloop("candidates", campaign["store"], "--json").stdout)["candidates"]
    # a row's first line (a long SMILES folds onto the next, under COLUMNS=80 of pytest-xdist)
    table = [line for line in result.stdout.splitlines() if re.match(r"│\s+\d+ │", line)]
    assert len(table) == 5
    printed = []
    for line, candidate in zip(table, ranked, strict=False):
        rank, vial, name, smiles, predicted, p = (cell.strip() for cell in line.strip("│").split("│"))
        assert (int(rank), vial, name) == (candidate["rank"], candidate["sample_id"], candidate["name"])
        assert candidate["smiles"].startswith(smiles)
        assert candidate["smiles"] not in campaign["measured"]
        mu, sd = (float(v) for v in predicted.split(" ± "))
        hand = norm.cdf((WINDOW[1] - mu) / sd) - norm.cdf((WINDOW[0] - mu) / sd)
        assert float(p) == pytest.approx(hand, abs=0.01)  # from the printed mu and sd, rounded to 3 places
        printed.append(float(p))
    assert printed == sorted(printed, reverse=True)


def test_json_and_csv_hold_the_same_rows(labloop, campaign, tmp_path):
    written = tmp_path / "ranked.csv"
    result = labloop("candidates", campaign["store"], "--json", "--top", "4", "--csv", written)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)["candidates"]
    with written.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(shown) == 4 and len(rows) > 4  # the CSV holds every ranked candidate
    assert any(r["name"].startswith("'=mol-") for r in rows) and not any(r["name"].startswith("=") for r in rows)
    for row, candidate in zip(rows, shown, strict=False):
        name = candidate["name"]  # as written; the CSV's shows a formula-like one as text: a leading '
        assert (int(row["rank"]), row["name"], row["smiles"]) == (
            candidate["rank"], f"'{name}" if name.startswith("=") else name, candidate["smiles"])
        assert math.isclose(float(row["mu_v"]), candidate["mu_v"], abs_tol=1e-6)
        assert math.isclose(float(row["p_hit"]), candidate["p_hit"], rel_tol=1e-5)
        assert row["sample_id"] == candidate["sample_id"] != ""


def test_a_store_that_is_no_journal_or_has_no_model_is_one_line_exit_2(labloop, tmp_path, write_campaign):
    text = tmp_path / "notes.txt"
    text.write_text("hello " * 50)
    no_prior = write_campaign(tmp_path, name="plain", budget={"max_experiments": 2})
    assert labloop("run", no_prior, "--dry-run").returncode == 0
    for store, needle in ((text, "not a labloop journal"), (tmp_path / "missing.db", "no such journal"),
                          (tmp_path / "plain.db", "has no model to predict with")):
        result = labloop("candidates", store)
        lines = result.stderr.splitlines()
        assert result.returncode == 2 and result.stdout == ""
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], result.stderr


def test_a_library_gone_from_where_the_journal_says_is_one_line_exit_2(labloop, campaign, tmp_path):
    moved = tmp_path / "named.csv"
    (campaign["folder"] / "named.csv").rename(moved)
    try:
        result = labloop("candidates", campaign["store"])
    finally:
        moved.rename(campaign["folder"] / "named.csv")
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "library.file" in lines[0], result.stderr


def test_a_copy_of_a_campaign_folder_ranks_with_the_weights_beside_it(labloop, campaign, tmp_path):
    """A campaign folder copied elsewhere, the original gone: `candidates` said "no model version's weights are
    readable beside the store" (or took an older version that was) although they were beside it; only a resume,
    which journals the move, found them (a referee's trial)."""
    first = tmp_path / "first"
    shutil.copytree(campaign["folder"], first)
    with Journal.open(first / "tiny.db") as journal:  # the folder's journal says it lives here, as a resume leaves it
        journal.record_move({})
    second = tmp_path / "second"
    shutil.copytree(first, second)
    (first / "tiny.models").rename(first / "gone")  # the original's weights are no more where it journalled them
    result = labloop("candidates", second / "tiny.db", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["model_version"] == max(campaign["versions"]) == 2


def test_a_campaign_not_run_yet_is_ranked_by_its_prior_calibrated_on_its_past_measurements(tmp_path, labloop,
                                                                                          write_campaign,
                                                                                          monkeypatch):
    """A lab with a table of past measurements asked what to measure next before running anything, and had to start
    a dry run and stop it at an approval to get a journal to ask (a chemist's trial). Given the campaign file, the
    library is ranked by the prior model calibrated on the past measurements, none of their molecules among the
    candidates; once the campaign has run, by its journal, as `candidates STORE` ranks it. Without a prior: one
    line, exit 2."""
    library = pd.read_csv(EXAMPLES / "library.csv")
    past = library.iloc[:12]
    (tmp_path / "past.csv").write_text("smiles,e_v\n" + "\n".join(
        f"{s},{ie - 2.4:.3f}" for s, ie in zip(past["smiles"], past["ie_ev"], strict=True)) + "\n")
    # an alert read from an environment variable this shell lacks sends nothing here: no refusal (a review)
    campaign = write_campaign(tmp_path, prior=True, shared_prior=True, surrogate=SURROGATE,
                              planner={"kind": "bayes", "batch_size": 2}, budget={"max_experiments": 2},
                              past_measurements={"file": "past.csv", "column": "e_v", "vs": "li"},
                              alerts=["json://user:${LABLOOP_TEST_ALERT_PW}@127.0.0.1:9/hook"])
    result = labloop("candidates", campaign, "--json", "--top", "1000")
    assert result.returncode == 0, result.stderr
    ranked = json.loads(result.stdout)
    assert ranked["store"] is None and ranked["campaign_file"] == str(campaign) and ranked["before_run"]
    assert ranked["measurements"] == 12 and ranked["loo_rmse_v"] is not None
    smiles = [c["smiles"] for c in ranked["candidates"]]
    assert len(smiles) == len(library) - 12 and not set(smiles) & set(past["smiles"])
    p = [c["p_hit"] for c in ranked["candidates"]]
    assert p == sorted(p, reverse=True)
    shown = labloop("candidates", campaign)
    assert "the prior model (the campaign has not run: no journal yet), calibrated on 12 past measurements" in \
        " ".join(shown.stdout.split()), shown.stdout
    assert not (tmp_path / "tiny.db").exists()  # nothing of a run is made

    # a past table on another scale than declared (vs Fc+/Fc, 3.2 V low, declared vs Li/Li+) is said, as validate says
    (tmp_path / "fc.csv").write_text("smiles,e_v\n" + "\n".join(
        f"{s},{ie - 2.4 - 3.2:.3f}" for s, ie in zip(past["smiles"], past["ie_ev"], strict=True)) + "\n")
    slipped = labloop("candidates", write_campaign(tmp_path, name="slipped", prior=True, shared_prior=True,
                                                   surrogate=SURROGATE,
                                                   past_measurements={"file": "fc.csv", "column": "e_v", "vs": "li"}))
    assert slipped.returncode == 0 and "below what the prior model predicts" in slipped.stderr, slipped.stderr
    monkeypatch.setenv("LABLOOP_TEST_ALERT_PW", "pw")  # the run sends alerts: its variable is set for it
    assert labloop("run", campaign, "--dry-run").returncode == 0
    monkeypatch.delenv("LABLOOP_TEST_ALERT_PW")
    by_file, by_store = (labloop("candidates", given, "--json") for given in (campaign, tmp_path / "tiny.db"))
    assert f"{campaign} has run: ranked from its journal {tmp_path / 'tiny.db'}" in by_file.stderr
    assert json.loads(by_file.stdout) == json.loads(by_store.stdout)
    assert not json.loads(by_store.stdout)["before_run"]

    # without past measurements the ranking is the uncalibrated prior's, said so (a newcomer read "calibrated on 0
    # past measurements, as its first proposal would be" beside a flat P and a size-design first batch)
    unmeasured = labloop("candidates", write_campaign(tmp_path, name="unmeasured", prior=True, shared_prior=True,
                                                      surrogate=SURROGATE))
    assert unmeasured.returncode == 0, unmeasured.stderr
    assert ("the prior model (the campaign has not run: no journal yet), not calibrated: no past measurements (P is "
            "nearly flat: the sd holds the prior's unknown offset from the lab's scale)"
            in " ".join(unmeasured.stdout.split())), unmeasured.stdout
    # a protocol that loads no vial (a sample changer of a plug-in fills the cell itself): no vial to name
    unloaded = write_campaign(tmp_path, name="unloaded", prior=True, shared_prior=True, surrogate=SURROGATE,
                              protocol=[{"cv": {"e_begin_v": -0.8, "e_vertex1_v": 1.95, "e_vertex2_v": -0.8,
                                                "e_step_v": 0.002}}, "rinse"])
    vials = [c["sample_id"] for c in json.loads(labloop("candidates", unloaded, "--json").stdout)["candidates"]]
    assert vials and set(vials) == {""}
    assert "vial" not in labloop("candidates", unloaded).stdout
    bare = write_campaign(tmp_path, name="bare")
    refused = labloop("candidates", bare)
    assert refused.returncode == 2 and "candidates of a campaign not run yet need its prior" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr


def test_a_stop_while_the_prior_trains_says_what_is_left(tmp_path, write_campaign):
    """``labloop candidates CAMPAIGN.yaml`` trains the prior first; a Ctrl-C then said only "aborted", and a kill
    nothing (a lab head's trial): one line says what stopped, that nothing was ranked or written, and what of the
    prior model stays, exit 130. A kill (SIGTERM) here: a Ctrl-C's SIGINT takes the same path
    (orchestrator/loop/interrupts.py)."""
    signum = signal.SIGTERM
    campaign = write_campaign(tmp_path, prior=True)
    process = subprocess.Popen([sys.executable, "-m", "labloop.orchestrator.cli.main", "-v", "candidates",
                                str(campaign)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    said, reads = [], 0
    for line in process.stderr:  # the prior's table is read (after the library, twice: once checked, the reading
        said.append(line)  # kept for its training) just before it trains
        reads += "rows from" in line and "ocelot" in line
        if reads == 2:
            process.send_signal(signum)
            break
    out, rest = process.communicate(timeout=300)
    err = "".join(said) + rest
    assert process.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"interrupted ({signal.Signals(signum).name}): nothing ranked, nothing written; "), err
    assert "no prior model was cached" in last or "is kept" in last, last
    assert "aborted" not in err and "Traceback" not in err and out == ""
