"""`labloop backtest`: planners against a table of true values, with no instruments or simulated CVs; bad tables
and options exit 2 with one line."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from labloop.orchestrator.backtest import CampaignRun, summarise

EXAMPLES_LIBRARY = "examples/library.csv"


@pytest.fixture
def truth_csv(tmp_path):
    """The example library with a made-up truth: IE - 4.44 + 1.5 V, so ~10 of 200 sit in 4.5-4.6 V."""
    from pathlib import Path

    library = pd.read_csv(Path(__file__).resolve().parents[2] / EXAMPLES_LIBRARY)
    library["e_v"] = library.ie_ev - 4.44 + 1.5
    path = tmp_path / "truth.csv"
    library[["smiles", "e_v"]].to_csv(path, index=False)
    return path, int(((library.e_v >= 4.5) & (library.e_v <= 4.6)).sum())


def test_random_backtest_without_instruments_counts_true_hits(tmp_path, labloop, write_campaign, truth_csv):
    path, in_window = truth_csv
    campaign = write_campaign(tmp_path)
    result = labloop("backtest", campaign, "--truth", path, "--column", "e_v", "--planners", "random", "--seeds", "2",
                     "--budget", "200", "--no-instruments", "--noise-v", "0", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    random = report["planners"]["random"]
    assert report["library"] == 200 and report["budget"] == 200
    assert random["per_seed"] == [in_window, in_window]  # the whole library measured: every true hit found
    assert random["after"]["100%"] == in_window and random["failed_mean"] == 0
    assert "warning" not in result.stderr


def test_a_column_with_no_hit_is_named(tmp_path, labloop, write_campaign):
    """The example library's ionisation energies (eV, about 7) given as the potential: every planner would find 0
    hits and look alike, so the run says what may be wrong."""
    from pathlib import Path

    library = Path(__file__).resolve().parents[2] / EXAMPLES_LIBRARY
    result = labloop("backtest", write_campaign(tmp_path), "--truth", library, "--column", "ie_ev", "--planners",
                     "random", "--seeds", "1", "--budget", "4", "--no-instruments", "--json")
    assert result.returncode == 0, result.stderr
    assert "warning: no value of column 'ie_ev'" in result.stderr and "is it oxidation_potential in V vs Li/Li+?" \
        in result.stderr


def test_bayes_backtest_learns_from_the_table(tmp_path, labloop, write_campaign, truth_csv):
    path, _ = truth_csv
    campaign = write_campaign(tmp_path, prior=True, planner={"kind": "bayes", "batch_size": 4})
    result = labloop("backtest", campaign, "--truth", path, "--column", "e_v", "--planners", "bayes,greedy",
                     "--seeds", "1", "--budget", "12", "--no-instruments", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    bayes, oracle = report["planners"]["bayes"], report["planners"]["oracle"]
    assert set(bayes["learners"]) <= {"offset", "linear", "additive", "gp"}
    assert sum(bayes["learners"].values()) == 2
    assert bayes["latency_s"]["median"] > 0
    assert oracle["learners"] == {}  # calibrated once before the campaign, never during it
    for name in ("bayes", "greedy"):
        r = report["planners"][name]
        assert r["of_oracle"] == (round(r["mean"] / oracle["mean"], 3) if oracle["mean"] else None)


def test_the_oracle_knows_the_tables_error(tmp_path, write_campaign, truth_csv):
    """Calibrated on the table's true values, the prior's error on the library shrinks (here the truth is
    the prior's IE shifted by 1.54 V: a systematic error the oracle must have removed)."""
    import numpy as np

    from labloop.orchestrator.backtest import oracle_view, read_truth
    from labloop.orchestrator.cli.backtest import _prior
    from labloop.orchestrator.config.campaign import load_campaign
    from labloop.planners.feedback import DescriptorTable

    path, _ = truth_csv
    campaign = load_campaign(write_campaign(tmp_path, prior=True, planner={"kind": "bayes", "batch_size": 4}))
    truth = read_truth(path, "e_v")
    library = list(truth)
    model = _prior(campaign)
    view = oracle_view(model, truth, library, DescriptorTable(), seed=0, rows=50)
    assert view.calibration.n == 50
    true = np.array([truth[s] for s in library])
    prior_error = np.mean(np.abs(np.array(model.predict(library)[0]) - true))
    oracle_error = np.mean(np.abs(view.predict(library)[0] - true))
    assert prior_error > 1.0 and oracle_error < 0.5 * prior_error


@pytest.mark.parametrize(("args", "says"), [
    (["--column", "nope", "--planners", "random"], "no target column 'nope'"),
    (["--column", "e_v", "--planners", "random,oracle"], "unknown planner oracle"),
    (["--column", "e_v", "--planners", "bayes"], "need the campaign's prior section"),
    (["--column", "e_v", "--seeds", "0"], "--seeds"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, labloop, write_campaign, truth_csv, args, says):
    path, _ = truth_csv
    result = labloop("backtest", write_campaign(tmp_path), "--truth", path, *args)
    assert result.returncode == 2 and says in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_table_with_no_valid_smiles_is_bad_input(tmp_path, labloop, write_campaign):
    (tmp_path / "bad.csv").write_text("smiles,e_v\nnot-a-smiles,4.5\nC1CC,4.0\n")
    result = labloop("backtest", write_campaign(tmp_path), "--truth", tmp_path / "bad.csv", "--column", "e_v",
                     "--planners", "random")
    assert result.returncode == 2 and "error:" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "bad.csv: none of its 2 molecules is one of the 200 of the library" in result.stderr  # the truth's fault


def test_summarise_by_hand():
    runs = [CampaignRun("x", 0, curve=[0, 1, 1, 2], failed=1, latency_s=[0.1, 0.3]),
            CampaignRun("x", 1, curve=[1, 1, 3, 4], failed=0, latency_s=[0.2, 0.2])]
    s = summarise(runs, 4)
    assert s["mean"] == 3.0 and s["per_seed"] == [2, 4] and s["sd"] == pytest.approx(1.41, abs=0.01)
    assert s["after"] == {"25%": 0.5, "50%": 1.0, "100%": 3.0} and s["failed_mean"] == 0.5
    assert s["latency_s"]["median"] == 0.2


def test_simulated_cvs_follow_a_drifting_reference():
    """In a ``drift`` world every measurement is offset by the reference electrode's walk at that moment,
    exactly as the emulated potentiostat applies it (the same CV noise otherwise)."""
    from labloop.orchestrator.backtest import REFERENCE_OFFSET_V, cv_measure
    from labloop.sim.truth import ReferenceWalk
    from labloop.sim.world import TruthTable, World

    table = TruthTable({"c1ccc2ccccc2c1": (4.2,)})

    def world(seed: int, walk: bool) -> World:
        return World(table, source="column", quantity="oxidation_potential", noise_v=0.0,
                     reference_offset_v=REFERENCE_OFFSET_V, seed=seed,
                     walk=ReferenceWalk(seed, 0.05) if walk else None)

    steady, drifting = cv_measure(lambda seed: world(seed, False)), cv_measure(lambda seed: world(seed, True))
    walk = ReferenceWalk(3, 0.05)
    for k in range(6):
        a = steady("c1ccc2ccccc2c1", {"scan_rate_v_s": 0.1}, 3, k).potential_v
        b = drifting("c1ccc2ccccc2c1", {"scan_rate_v_s": 0.1}, 3, k).potential_v
        assert a is not None and b is not None
        assert b - a == pytest.approx(-walk.at(k + 1), abs=0.003)  # peaks sit on the 2 mV potential grid
