"""`labloop backtest`: planners against a table of true values, with no instruments or simulated CVs; bad tables
and options exit 2 with one line."""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import sys

import pandas as pd
import pytest
from rdkit import Chem

from labloop.orchestrator import console
from labloop.orchestrator.backtest import MIN_SEEDS_TO_TELL_APART, CampaignRun, paired_with_leader, summarise
from labloop.orchestrator.cli.backtest import _versus_leader

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
    assert report["seeds"] == [5, 6]  # every seed, in per_seed's order (it was [first, last]: 2 seeds or 7?)
    assert random["per_seed"] == [in_window, in_window]  # the whole library measured: every true hit found
    assert random["after"]["100%"] == in_window and random["failed_mean"] == 0
    assert "warning" not in result.stderr and report["warnings"] == []
    assert report["hits_in_table"] == in_window
    assert report["objective"] == "oxidation potential in [4.50, 4.60] V vs Li/Li+"
    # what the spread is over: a reviewer read the sd as how sure a planner choice was
    assert report["seeds_vary"].startswith("a seed varies random's picks; the library, the prior and the first "
                                           "batch are the same in every seed")
    shown = labloop("backtest", campaign, "--truth", path, "--column", "e_v", "--planners", "random", "--seeds", "2",
                    "--budget", "20", "--no-instruments")
    assert shown.returncode == 0, shown.stderr
    assert "a seed varies the measurement noise (0.01 V) and random's picks" in " ".join(shown.stdout.split())


def test_the_plain_progress_line_says_its_count_is_of_every_campaign(tmp_path, labloop, write_campaign, truth_csv,
                                                                      monkeypatch):
    """Off a terminal the progress line read ``greedy seed 7: 625 of 1500 after 30 s``, as if greedy's seed 7 had
    1500 experiments (a lab head's trial): it says which campaign runs and that the count is of all of them."""
    monkeypatch.setattr(console, "FIRST_PLAIN_S", 0.0)  # a line at each step, not after 30 s
    monkeypatch.setattr(console, "PLAIN_PROGRESS_S", 0.0)
    path, _ = truth_csv
    result = labloop("backtest", write_campaign(tmp_path), "--truth", path, "--column", "e_v", "--planners", "random",
                     "--seeds", "2", "--budget", "5", "--no-instruments")
    assert result.returncode == 0, result.stderr
    lines = re.findall(r"^random seed (\d) running; experiments of all 2 campaigns: (\d+) of 10 done after \d+ s$",
                       result.stderr, re.M)
    assert {seed for seed, _ in lines} == {"5", "6"} and max(int(n) for _, n in lines) >= 5, result.stderr


def test_a_budget_beyond_the_library_is_capped_and_said(tmp_path, labloop, write_campaign, truth_csv):
    """A budget above the molecules with a true value was cut to their number without a word."""
    path, _ = truth_csv
    rows = path.read_text().splitlines()
    (tmp_path / "five.csv").write_text("\n".join(rows[:6]) + "\n")
    campaign = write_campaign(tmp_path, budget={"max_experiments": 9})
    for given, said in ((["--budget", "50"], "--budget 50"), ([], "the campaign's budget.max_experiments 9")):
        result = labloop("backtest", campaign, "--truth", tmp_path / "five.csv", "--column", "e_v", "--planners",
                         "random", "--seeds", "1", *given, "--no-instruments", "--json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["budget"] == 5
        assert sum(f"{said} exceeds" in w for w in json.loads(result.stdout)["warnings"]) == 1  # for scripts
        assert (f"warning: {said} exceeds the 5 library molecules with a true value: each campaign runs 5 "
                "experiments, all of them, so the planners differ only in the order they measure them (the 25% and "
                "50% columns)") in result.stderr.splitlines(), result.stderr
    exact = labloop("backtest", campaign, "--truth", tmp_path / "five.csv", "--column", "e_v", "--planners", "random",
                    "--seeds", "1", "--budget", "5", "--no-instruments", "--json")
    assert exact.returncode == 0 and "exceeds" not in exact.stderr, exact.stderr


def test_planners_that_measure_every_molecule_get_no_verdict_and_a_skipped_oracle_is_said(tmp_path, labloop,
                                                                                          write_campaign, truth_csv):
    """A lab head's trial: a table of 13 library molecules, every planner measured all 13, and the verdict said "not
    told apart; more seeds (--seeds) would say", which no number of seeds could; and with --planners random the
    oracle's row was missing with no word why."""
    path, _ = truth_csv
    rows = path.read_text().splitlines()
    (tmp_path / "six.csv").write_text("\n".join(rows[:7]) + "\n")
    campaign = write_campaign(tmp_path, prior=True)
    result = labloop("backtest", campaign, "--truth", tmp_path / "six.csv", "--column", "e_v", "--planners",
                     "random,screening", "--seeds", "5", "--no-instruments", "--no-oracle", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    (versus,) = report["versus_leader"]
    assert report["budget"] == 6 and versus["told_apart"] is None and versus["verdict"] == (
        "no verdict: every planner measures all 6 molecules, so the final count differs by noise alone; compare them "
        "at 25% and 50%, or with a smaller --budget"), versus
    said = ("no oracle row: it is bayes with the prior calibrated on the table, and --planners random alone trains no "
            "prior: add a learning planner (--planners random,bayes)")
    alone = labloop("backtest", campaign, "--truth", tmp_path / "six.csv", "--column", "e_v", "--planners", "random",
                    "--seeds", "1", "--no-instruments")
    assert alone.returncode == 0 and f"note: {said}" in alone.stderr.splitlines(), alone.stderr
    one_seed = re.search(r", (seeds? [\d-]+), instruments:", " ".join(alone.stdout.split()))
    assert one_seed is not None and re.fullmatch(r"seed \d+", one_seed[1]), alone.stdout  # it read "seeds 7-7"
    assert "no oracle row" not in result.stderr  # --no-oracle: asked for none


def test_a_column_with_no_hit_is_named(tmp_path, labloop, write_campaign, truth_csv):
    """A column none of whose values is a hit (here every potential 3.0 V): every planner would find 0
    hits and look alike, so the run says what may be wrong."""
    path, _ = truth_csv
    pd.read_csv(path).assign(e_v=3.0).to_csv(tmp_path / "high.csv", index=False)
    result = labloop("backtest", write_campaign(tmp_path), "--truth", tmp_path / "high.csv", "--column", "e_v",
                     "--planners", "random", "--seeds", "1", "--budget", "4", "--no-instruments", "--json")
    assert result.returncode == 0, result.stderr
    assert "warning: no value of column 'e_v'" in result.stderr and "is it oxidation_potential in V vs Li/Li+?" \
        in result.stderr


def test_energies_are_not_potentials(tmp_path, labloop, write_campaign):
    """The example library's ionisation energies (eV, up to 10.1) given as the potential are refused with a line."""
    from pathlib import Path

    library = Path(__file__).resolve().parents[2] / EXAMPLES_LIBRARY
    result = labloop("backtest", write_campaign(tmp_path), "--truth", library, "--column", "ie_ev", "--planners",
                     "random", "--no-instruments")
    assert result.returncode == 2 and "column 'ie_ev'" in result.stderr and "an energy in eV?" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bayes_backtest_learns_from_the_table(tmp_path, labloop, write_campaign, truth_csv, monkeypatch):
    path, _ = truth_csv
    campaign = write_campaign(tmp_path, prior=True, shared_prior=True, planner={"kind": "bayes", "batch_size": 4})
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
        assert 0 <= r["within_1_96_sd"] <= 1 and r["rms_z"] > 0  # the sd checked on the 12 measurements
    monkeypatch.setattr(console.out, "width", 400)  # no folding
    # the table: the sd's check, the paired comparison under it, and the se beside each mean (a trial)
    two = labloop("backtest", campaign, "--truth", path, "--column", "e_v", "--planners", "bayes,greedy", "--seeds",
                  "2", "--budget", "8", "--no-instruments")
    assert two.returncode == 0 and "within +/-1.96 sd (rms z)" in two.stdout, two.stdout
    assert re.search(r"│ \d+% \(\d+(\.\d+)?\) *│", two.stdout), two.stdout
    assert "mean +/- sd (se)" in two.stdout, two.stdout
    # 2 seeds tell no planner ahead, however far apart (a trial: 'more than 2 se: greedy is ahead' over 2 seeds)
    assert re.search(r"^(bayes - greedy|greedy - bayes): [+-]?\d+(\.\d+)? hits per campaign, se \d+(\.\d+)? over 2 "
                     r"seeds \(paired by seed\): no verdict from 2 seeds, whatever the difference \(a verdict needs at "
                     r"least 5: --seeds 5\)$",
                     two.stdout, re.M), two.stdout
    assert "random's picks" not in two.stdout  # random did not run


def test_the_oracle_knows_the_tables_error(tmp_path, write_campaign, truth_csv):
    """Calibrated on the table's true values, the prior's error on the library shrinks (here the truth is
    the prior's IE shifted by 1.54 V: a systematic error the oracle must have removed)."""
    import numpy as np

    from labloop.orchestrator.backtest import oracle_view
    from labloop.orchestrator.cli.preflight import prior_view
    from labloop.orchestrator.config.campaign import load_campaign
    from labloop.orchestrator.potential_table import read_truth
    from labloop.planners.feedback import DescriptorTable

    path, _ = truth_csv
    campaign = load_campaign(write_campaign(tmp_path, prior=True, shared_prior=True,
                                            planner={"kind": "bayes", "batch_size": 4}))
    truth = read_truth(path, "e_v").values
    library = list(truth)
    model = prior_view(campaign)
    view = oracle_view(model, truth, library, DescriptorTable(), seed=0, rows=50)
    assert view.calibration.n == 50
    true = np.array([truth[s] for s in library])
    prior_error = np.mean(np.abs(np.array(model.predict(library)[0]) - true))
    oracle_error = np.mean(np.abs(view.predict(library)[0] - true))
    assert prior_error > 1.0 and oracle_error < 0.5 * prior_error


@pytest.mark.parametrize(("args", "says"), [
    (["--column", "nope", "--planners", "random"], "error: --column nope: no such column in {truth} (columns: "
                                                   "'smiles', 'e_v')"),  # it said "target column", never typed
    (["--column", "e_v", "--planners", "random,oracle"], "unknown planner oracle; known: random, bayes, greedy, "
                                                         "screening; the oracle is no planner kind: it runs beside "
                                                         "them unless --no-oracle"),
    (["--column", "e_v", "--planners", "bayes"], "need the campaign's prior section"),
    (["--column", "e_v", "--seeds", "0"], "--seeds"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, labloop, write_campaign, truth_csv, args, says):
    path, _ = truth_csv
    result = labloop("backtest", write_campaign(tmp_path), "--truth", path, *args)
    assert result.returncode == 2 and says.format(truth=path) in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_table_with_no_valid_smiles_is_bad_input(tmp_path, labloop, write_campaign):
    (tmp_path / "bad.csv").write_text("smiles,e_v\nnot-a-smiles,4.5\nC1CC,4.0\n")
    result = labloop("backtest", write_campaign(tmp_path), "--truth", tmp_path / "bad.csv", "--column", "e_v",
                     "--planners", "random")
    assert result.returncode == 2 and "error:" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert ("bad.csv: no row has a valid SMILES and a number in column 'e_v' (2 of its 2 rows are no SMILES of a "
            "molecule labloop screens, first at line 2: 'not-a-smiles')") in result.stderr  # the truth's fault, named


def test_a_truth_table_says_what_it_leaves_out_and_how_its_smiles_column_is_named(tmp_path, labloop,
                                                                                    write_campaign, truth_csv):
    """A lab's table: a SMILES cell that is no molecule, an empty one, and (another file) its own name for the
    SMILES column. The rows were left out without a word, and the column's name was not said to be the
    library's (a chemist's trial)."""
    path, _ = truth_csv
    rows = path.read_text().splitlines()
    (tmp_path / "lab.csv").write_text("\n".join([*rows, "C1CC(not_a_smiles,4.5", ",4.55"]) + "\n")
    result = labloop("backtest", write_campaign(tmp_path), "--truth", tmp_path / "lab.csv", "--column", "e_v",
                     "--planners", "random", "--seeds", "1", "--budget", "2", "--no-instruments", "--json")
    assert result.returncode == 0, result.stderr
    assert (f"warning: 2 rows of {tmp_path / 'lab.csv'} are no SMILES of a molecule labloop screens (first at line "
            f"{len(rows) + 1}: 'C1CC(not_a_smiles') and are left out") in result.stderr
    (tmp_path / "named.csv").write_text(path.read_text().replace("smiles,e_v", "molecule,e_v", 1))  # SMILES is read
    named = labloop("backtest", write_campaign(tmp_path), "--truth", tmp_path / "named.csv", "--column", "e_v",
                    "--planners", "random")
    assert named.returncode == 2 and named.stderr.strip().endswith(
        "no column 'smiles' (columns: 'molecule', 'e_v'): name its SMILES column 'smiles', as the campaign's library "
        "does (library.smiles_column)")


def test_one_row_is_said_as_one_row(tmp_path, labloop, write_campaign, truth_csv):
    """Each note on a table's rows said "1 rows ... are" (a newcomer's trial): a count of 1 takes the singular,
    its verb too."""
    path, _ = truth_csv
    rows = path.read_text().splitlines()
    lab = tmp_path / "lab.csv"  # one library molecule left out, one row no SMILES, one empty, one repeat
    lab.write_text("\n".join([rows[0], *rows[2:], "C1CC(not_a_smiles,4.5", f"{rows[3].split(',')[0]},",
                              f"{rows[4].split(',')[0]},4.55"]) + "\n")
    first = float(rows[4].split(",")[1])
    result = labloop("backtest", write_campaign(tmp_path), "--truth", lab, "--column", "e_v", "--planners", "random",
                     "--seeds", "1", "--budget", "2", "--no-instruments", "--json")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: 1 row of {lab} is no SMILES of a molecule labloop screens (first at line {len(rows)}: "
        "'C1CC(not_a_smiles') and is left out",
        f"warning: 1 row of {lab} has no finite value in column 'e_v' (blank, at line {len(rows) + 1}) and is left "
        "out",
        # both lines and both values, and which is kept
        f"warning: 1 row of {lab} repeats a molecule with another value (the first: line {len(rows) + 2} "
        f"{rows[4].split(',')[0]!r} (4.55 V) repeats line 4 {rows[4].split(',')[0]!r} ({first:g} V)): the first "
        "value is kept, however the later rows spell it",
        f"warning: 1 repeated molecule of {lab} has values more than 0.1 V apart (first: lines 4, {len(rows) + 2}, "
        f"spread {abs(4.55 - first):.3f} V), more than a measurement repeats by, and the first "
        "value is used: check those rows for a mix-up (a reference electrode, a unit, a sign, another molecule's row)",
        f"warning: 1 of the 200 molecules of the library {EXAMPLES_LIBRARY} has no true value in {lab} and is left "
        "out (compared as written, then as canonical SMILES)"], result.stderr
    (tmp_path / "one.csv").write_text("smiles,e_v\nC1CC(,4.5\n")
    one = labloop("backtest", write_campaign(tmp_path), "--truth", tmp_path / "one.csv", "--column", "e_v",
                  "--planners", "random")
    assert one.returncode == 2 and "(1 of its 1 row is no SMILES of a molecule labloop screens" in one.stderr


def test_summarise_by_hand():
    runs = [CampaignRun("x", 0, curve=[0, 1, 1, 2], failed=1, latency_s=[0.1, 0.3], z=[0.5, -2.5]),
            CampaignRun("x", 1, curve=[1, 1, 3, 4], failed=0, latency_s=[0.2, 0.2], z=[1.0, 0.0])]
    s = summarise(runs, 4)
    assert s["mean"] == 3.0 and s["per_seed"] == [2, 4] and s["sd"] == pytest.approx(1.41, abs=0.01)
    assert s["after"] == {"25%": 0.5, "50%": 1.0, "100%": 3.0} and s["failed_mean"] == 0.5
    assert s["latency_s"]["median"] == 0.2
    # the sd's check over every seed's measurements: 3 of 4 within 1.96 sd, rms of 0.5, 2.5, 1, 0
    assert s["within_1_96_sd"] == 0.75 and s["rms_z"] == round(((0.25 + 6.25 + 1 + 0) / 4) ** 0.5, 2)
    one = summarise(runs[:1], 4)  # one seed: no spread to report, not a spread of 0
    assert one["mean"] == 2.0 and one["sd"] is None and one["se"] is None


def test_planners_are_compared_with_the_leader_paired_by_seed():
    """A lab chooses a planner by the difference, not by two sds (a trial: the table gave sd alone): each planner
    against the leader, paired by seed, with its standard error and whether it exceeds 2 of them."""
    results = {"bayes": {"mean": 5.0, "per_seed": [6, 4, 5, 5, 5]},
               "greedy": {"mean": 3.6, "per_seed": [5, 3, 3, 3, 4]},
               "random": {"mean": 4.2, "per_seed": [2, 6, 4, 4, 5]},
               "oracle": {"mean": 9.0, "per_seed": [9, 9, 9, 9, 9]}}
    greedy, random = paired_with_leader(results)
    # bayes - greedy per seed: 1 1 2 2 1, mean 1.4, sd 0.548, se 0.24: apart; bayes - random: 4 -2 1 1 0, se 0.97
    assert (greedy["leader"], greedy["planner"], greedy["difference"], greedy["se"], greedy["seeds"]) == \
        ("bayes", "greedy", 1.4, 0.24, 5) and greedy["told_apart"] is True
    assert greedy["verdict"] == "more than 2 se: bayes is ahead here (this table, prior and first batch)"
    assert (random["difference"], random["se"], random["told_apart"]) == (0.8, 0.97, False)
    assert random["verdict"] == "within 2 se: not told apart; more seeds (--seeds) would say"
    assert paired_with_leader({"bayes": results["bayes"], "oracle": results["oracle"]}) == []  # nothing to compare


def test_a_few_seeds_tell_no_planner_ahead():
    """An se from 2 paired differences is no basis for a choice (a trial: 'greedy - bayes: +1.5 hits per campaign,
    se 0.5 over 2 seeds: more than 2 se: greedy is ahead'): below MIN_SEEDS_TO_TELL_APART seeds the numbers are
    kept and the verdict says the seeds are too few, however far apart the two are."""
    assert MIN_SEEDS_TO_TELL_APART == 5
    for seeds in (2, 4):  # bayes 2 hits ahead on every seed: an se of 0, which told them apart
        (c,) = paired_with_leader({"bayes": {"mean": 6.0, "per_seed": [6] * seeds},
                                   "greedy": {"mean": 4.0, "per_seed": [4] * seeds}})
        assert (c["difference"], c["se"], c["seeds"], c["told_apart"]) == (2.0, 0.0, seeds, None)
        assert c["verdict"] == (f"no verdict from {seeds} seeds, whatever the difference (a verdict needs at least 5: "
                                "--seeds 5)")
    # an interrupted backtest's seeds are those finished: "--seeds 5" after asking for 6 (a lab head's trial)
    (cut,) = paired_with_leader({"bayes": {"mean": 6.0, "per_seed": [6] * 3},
                                 "greedy": {"mean": 4.0, "per_seed": [4] * 3}}, stopped=True)
    assert cut["verdict"] == ("no verdict from 3 seeds, whatever the difference (a verdict needs at least 5: let the "
                              "backtest finish)")
    (one,) = paired_with_leader({"bayes": {"mean": 6.0, "per_seed": [6]}, "greedy": {"mean": 4.0, "per_seed": [4]}})
    assert (one["difference"], one["se"], one["told_apart"]) == (2.0, None, None)
    assert one["verdict"] == "no verdict from 1 seed, whatever the difference (a verdict needs at least 5: --seeds 5)"
    assert _versus_leader([one], "hits") == [
        "bayes - greedy: +2 hits per campaign over 1 seed (paired by seed): no verdict from 1 seed, whatever the "
        "difference (a verdict needs at least 5: --seeds 5)"]


def test_simulated_cvs_follow_a_drifting_reference():
    """In a ``drift`` world every measurement is offset by the reference electrode's walk at that moment,
    exactly as the emulated potentiostat applies it (the same CV noise otherwise)."""
    from labloop.orchestrator.backtest import EXAMPLE_SCAN, cv_measure
    from labloop.sim.truth import ReferenceWalk
    from labloop.sim.world import TruthTable, World

    table = TruthTable({"c1ccc2ccccc2c1": (4.2,)})

    def world(seed: int, walk: bool) -> World:
        return World(table, source="column", quantity="oxidation_potential", noise_v=0.0,
                     reference_offset_v=EXAMPLE_SCAN.reference_offset_v, seed=seed,
                     walk=ReferenceWalk(seed, 0.05) if walk else None)

    steady, drifting = cv_measure(lambda seed: world(seed, False)), cv_measure(lambda seed: world(seed, True))
    walk = ReferenceWalk(3, 0.05)
    for k in range(6):
        a = steady("c1ccc2ccccc2c1", {"scan_rate_v_s": 0.1}, 3, k).potential_v
        b = drifting("c1ccc2ccccc2c1", {"scan_rate_v_s": 0.1}, 3, k).potential_v
        assert a is not None and b is not None
        assert b - a == pytest.approx(-walk.at(k + 1), abs=0.003)  # peaks sit on the 2 mV potential grid


def test_a_simulated_scan_past_the_couple_bounds_it():
    """A molecule whose couple lies beyond the scan's anodic vertex (5.15 V vs Li/Li+) fails, and its
    observation says the potential lies above a bound just inside the vertex, on the Li/Li+ scale, as the
    runner's does; one inside the window is measured with no bound."""
    from labloop.orchestrator.backtest import EXAMPLE_SCAN, cv_measure
    from labloop.sim.world import TruthTable, World

    table = TruthTable({"c1ccc2ccccc2c1": (5.3,), "c1ccccc1": (4.2,)})
    measure = cv_measure(lambda seed: World(table, source="column", quantity="oxidation_potential", noise_v=0.0,
                                            reference_offset_v=EXAMPLE_SCAN.reference_offset_v, seed=seed))
    beyond = measure("c1ccc2ccccc2c1", {"scan_rate_v_s": 0.1}, 0, 0)
    assert beyond.potential_v is None and beyond.failure == "analysis" and beyond.below_v is None
    assert beyond.above_v is not None and 5.05 < beyond.above_v < 5.15 and beyond.bound == (beyond.above_v, 1)
    inside = measure("c1ccccc1", {"scan_rate_v_s": 0.1}, 0, 1)
    assert inside.potential_v == pytest.approx(4.2, abs=0.01) and inside.bound is None
    assert inside.above_v is None and inside.below_v is None


def _protocol_with_cv(cv: dict) -> list:
    """The example screen with another cv step."""
    from pathlib import Path

    import yaml

    steps = yaml.safe_load((Path(__file__).resolve().parents[2] / "examples/protocols/cv_screen.yaml").read_text())
    return [{"cv": cv} if isinstance(s, dict) and "cv" in s else s for s in steps]


def test_simulated_instruments_scan_the_campaigns_window(tmp_path, labloop, write_campaign, truth_csv):
    """An anode-like campaign (potentials near 1.3 V, a Li reference, a scan of 0.5-2.2 V) is measured in
    its own window: with the example's 2.4-5.15 V every experiment failed and every planner tied at 0."""
    path, _ = truth_csv
    low = pd.read_csv(path).assign(e_v=lambda t: t.e_v - 3.2)
    low.to_csv(tmp_path / "low.csv", index=False)
    campaign = write_campaign(tmp_path, objective={"quantity": "oxidation_potential", "goal": "window",
                                                   "window_v": [1.3, 1.4]},
                              cell={"reference_offset_v": 0.0},
                              protocol=_protocol_with_cv({"e_begin_v": 0.5, "e_vertex1_v": 2.2, "e_vertex2_v": 0.5}))
    result = labloop("backtest", campaign, "--truth", tmp_path / "low.csv", "--column", "e_v", "--planners",
                     "random", "--seeds", "1", "--budget", "30", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["instruments"] == "simulated CV, 0.50-2.20 V vs Li/Li+"
    assert report["planners"]["random"]["failed_mean"] < 10  # the couples lie inside the scan


def test_a_window_around_each_prediction_cannot_be_simulated(tmp_path, labloop, write_campaign, truth_csv):
    path, _ = truth_csv
    campaign = write_campaign(tmp_path, prior=True, shared_prior=True,
                              protocol=_protocol_with_cv({"half_width_v": 0.6}))
    result = labloop("backtest", campaign, "--truth", path, "--column", "e_v", "--planners", "random")
    assert result.returncode == 2 and "half_width_v" in result.stderr and "--no-instruments" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_smi_library_is_read_as_the_campaign_reads_it(tmp_path, labloop, write_campaign, truth_csv):
    path, in_window = truth_csv
    smiles = pd.read_csv(path).smiles
    (tmp_path / "library.smi").write_text("".join(f"{s} m{i}\n" for i, s in enumerate(smiles)))
    campaign = write_campaign(tmp_path, library={"file": str(tmp_path / "library.smi")})
    result = labloop("backtest", campaign, "--truth", path, "--column", "e_v", "--planners", "random", "--seeds",
                     "1", "--budget", "200", "--no-instruments", "--noise-v", "0", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["planners"]["random"]["per_seed"] == [in_window]


#: the warning of a table whose 200 molecules are each given again with another value, from line 202 on
REPEATS = "repeat a molecule with another value (the first: line 202 "


def test_a_repeated_smiles_keeps_its_first_value_and_is_said(tmp_path, labloop, write_campaign, truth_csv):
    """As the dry run's world does; the backtest kept the last value, without a word."""
    path, in_window = truth_csv
    table = pd.read_csv(path)
    repeated = pd.concat([table, table.assign(e_v=9.9), table.head(3).assign(e_v=float("nan"))])
    repeated.to_csv(tmp_path / "repeated.csv", index=False)
    result = labloop("backtest", write_campaign(tmp_path), "--truth", tmp_path / "repeated.csv", "--column", "e_v",
                     "--planners", "random", "--seeds", "1", "--budget", "200", "--no-instruments", "--noise-v", "0",
                     "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["planners"]["random"]["per_seed"] == [in_window]
    assert "200 rows of" in result.stderr and REPEATS in result.stderr
    assert "3 rows of" in result.stderr and "no finite value" in result.stderr

    # the same molecule spelled another way first: its value is the first, not the one spelled as the library does
    def respelled(smiles: str) -> str:
        mol = Chem.MolFromSmiles(smiles)
        return next(other for k in range(mol.GetNumAtoms()) if (other := Chem.MolToSmiles(mol, rootedAtAtom=k))
                    != smiles)

    pd.concat([table.assign(smiles=table.smiles.map(respelled), e_v=9.9), table]).to_csv(tmp_path / "spelt.csv",
                                                                                         index=False)
    result = labloop("backtest", write_campaign(tmp_path), "--truth", tmp_path / "spelt.csv", "--column", "e_v",
                     "--planners", "random", "--seeds", "1", "--budget", "200", "--no-instruments", "--noise-v", "0",
                     "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["planners"]["random"]["per_seed"] == [0]  # every molecule at 9.9 V
    assert "200 rows of" in result.stderr and REPEATS in result.stderr


def test_a_value_no_potential_has_is_refused_with_its_line(tmp_path, labloop, write_campaign, truth_csv):
    path, _ = truth_csv
    table = pd.read_csv(path)
    table.loc[4, "e_v"] = 20.0  # an energy, not a potential (a 1e160 is refused as no number of a molecule at all)
    table.to_csv(tmp_path / "huge.csv", index=False)
    result = labloop("backtest", write_campaign(tmp_path), "--truth", tmp_path / "huge.csv", "--column", "e_v",
                     "--planners", "random", "--no-instruments")
    assert result.returncode == 2 and "line 6, column 'e_v': 20 lies beyond -3..10 V" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_json_has_null_where_no_measurement_gave_a_score(tmp_path, labloop, write_campaign, truth_csv):
    """A goal without hits scores the best value measured; before any measurement succeeds there is none, and
    strict JSON has no NaN."""
    path, _ = truth_csv
    low = pd.read_csv(path).assign(e_v=1.0)  # below the example scan (2.4-5.15 V): every analysis fails
    low.to_csv(tmp_path / "low.csv", index=False)
    campaign = write_campaign(tmp_path, objective={"quantity": "oxidation_potential", "goal": "maximize"})
    result = labloop("backtest", campaign, "--truth", tmp_path / "low.csv", "--column", "e_v", "--planners",
                     "random", "--seeds", "2", "--budget", "2", "--json")
    assert result.returncode == 0, result.stderr

    def refuse(constant: str) -> None:
        raise AssertionError(f"not strict JSON: {constant}")

    random = json.loads(result.stdout, parse_constant=refuse)["planners"]["random"]
    assert random["mean"] is None and random["per_seed"] == [None, None] and random["failed_mean"] == 2


def test_a_store_that_cannot_be_made_is_refused_before_training(tmp_path, labloop, write_campaign, truth_csv):
    path, _ = truth_csv
    (tmp_path / "a-file").write_text("")
    campaign = write_campaign(tmp_path, prior=True, store=str(tmp_path / "a-file" / "tiny.db"))
    result = labloop("backtest", campaign, "--truth", path, "--column", "e_v", "--planners", "greedy",
                     "--no-instruments")
    assert result.returncode == 2 and "a-file is a file" in result.stderr, result.stderr
    assert not (tmp_path / "prior-models").exists()


def test_a_folder_nothing_can_be_made_in_is_refused_before_training(tmp_path, labloop, write_campaign, truth_csv):
    """A campaign in a folder this user may not write trained its prior for 21 s, then failed "Permission denied
    (.../runs)", exit 1 (a packaging trial). /proc takes no file, even root's: the same refusal a folder without write
    permission gets, before any training."""
    path, _ = truth_csv
    campaign = write_campaign(tmp_path, prior=True, store="/proc/labloop-test/tiny.db")
    result = labloop("backtest", campaign, "--truth", path, "--column", "e_v", "--planners", "greedy",
                     "--no-instruments")
    said = " ".join(result.stderr.split())
    assert result.returncode == 2 and "/proc: cannot cache the prior model beside the store" in said, said
    assert "prior model epochs" not in result.stdout + result.stderr


def test_library_molecules_without_a_true_value_are_counted_and_none_known_is_bad_input(tmp_path, labloop,
                                                                                         write_campaign, truth_csv):
    """The planners choose among the molecules the table knows: a table that lacks some of the library's was
    a backtest of fewer molecules without a word, so the run says how many are left out; one that knows none
    of them cannot be backtested at all."""
    path, _ = truth_csv
    table = pd.read_csv(path)
    table.head(150).to_csv(tmp_path / "part.csv", index=False)
    campaign = write_campaign(tmp_path)
    result = labloop("backtest", campaign, "--truth", tmp_path / "part.csv", "--column", "e_v", "--planners", "random",
                     "--seeds", "1", "--budget", "4", "--no-instruments", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["library"] == 150
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: 50 of the 200 molecules of the library {EXAMPLES_LIBRARY} have no true value in "
                        f"{tmp_path / 'part.csv'} and are left out (compared as written, then as canonical SMILES)"]

    pd.DataFrame({"smiles": ["CCO", "CCCO"], "e_v": [4.5, 4.6]}).to_csv(tmp_path / "other.csv", index=False)
    none = labloop("backtest", campaign, "--truth", tmp_path / "other.csv", "--column", "e_v", "--planners", "random",
                   "--no-instruments")
    assert none.returncode == 2 and len(none.stderr.strip().splitlines()) == 1, none.stderr
    assert none.stderr.startswith(f"error: {tmp_path / 'other.csv'}: none of its 2 valid SMILES is one of the 200 "
                                  f"molecules of the library {EXAMPLES_LIBRARY}")


def test_no_hit_in_the_library_blames_the_library_not_the_table(tmp_path, labloop, write_campaign, truth_csv):
    """A library none of whose molecules is a hit, beside a table that has hits: the warning blamed the table's
    scale (a chemist's trial: 'is it oxidation_potential in V vs Li/Li+?' of a table with 25 hits). It says the
    library holds none, and --json counts the table's hits apart from the library's."""
    path, in_window = truth_csv
    table = pd.read_csv(path)
    outside = table[(table.e_v < 4.5) | (table.e_v > 4.6)].head(20)
    outside[["smiles"]].to_csv(tmp_path / "lib.csv", index=False)
    campaign = write_campaign(tmp_path, library={"file": str(tmp_path / "lib.csv")})
    result = labloop("backtest", campaign, "--truth", path, "--column", "e_v", "--planners", "random", "--seeds", "1",
                     "--budget", "4", "--no-instruments", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["hits_in_table"], report["hits_in_library"]) == (in_window, 0)
    assert report["objective_v"] == {"goal": "window", "window_v": [4.5, 4.6], "threshold_v": None}
    assert (f"warning: none of the 20 molecules of the library {tmp_path / 'lib.csv'} with a true value is a hit "
            f"(oxidation potential in [4.50, 4.60] V vs Li/Li+): {path} holds {in_window} hits, none of them in the "
            "library, so every planner finds 0 but for a near-miss the measurement's noise carries into the window") \
        in result.stderr.splitlines(), result.stderr
    assert "is it oxidation_potential" not in result.stderr


def test_invalid_library_rows_are_said_as_invalid_and_not_counted_as_molecules(tmp_path, labloop, write_campaign,
                                                                               truth_csv):
    """Invalid library rows were counted among 'molecules with no true value' (a trial: '2 of the 22 molecules',
    2 of them 'C1CC' and 'not measured'): they are named by line as validate names them, and the molecules are
    counted as validate counts them (a molecule written twice is one)."""
    path, _ = truth_csv
    smiles = pd.read_csv(path).smiles.head(20).tolist()
    (tmp_path / "lib.csv").write_text("smiles\n" + "\n".join([*smiles, "C1CC", "not measured", smiles[0]]) + "\n")
    campaign = write_campaign(tmp_path, library={"file": str(tmp_path / "lib.csv")})
    result = labloop("backtest", campaign, "--truth", path, "--column", "e_v", "--planners", "random", "--seeds", "1",
                     "--budget", "4", "--no-instruments", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["library"] == 20
    assert report["library_rows"] == {"rows": 23, "molecules": 20, "invalid_smiles": 2, "without_true_value": 0}
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings[0].startswith(f"warning: 2 invalid SMILES in {tmp_path / 'lib.csv'} are left out: line 22 'C1CC', "
                                  "line 23 'not measured'"), warnings
    assert not any("no true value" in w for w in warnings), warnings
    assert "Parse Error" not in result.stderr  # RDKit's own lines are kept out


def test_a_truth_on_another_reference_scale(tmp_path, labloop, write_campaign, truth_csv):
    """A table vs Fc+/Fc was read as vs Li/Li+: every planner found 0 and one still led. A header naming another
    scale is refused until --truth-vs says what it is; fc converts with the campaign's cell.ferrocene_vs_li_v."""
    path, in_window = truth_csv
    table = pd.read_csv(path)
    fc = table.assign(e_v=table.e_v - 3.1).rename(columns={"e_v": "E1/2 (V vs Fc+/Fc)"})
    # its first molecule again with another value: the repeat's warning quotes both on the table's scale
    again = fc.iloc[[0]].assign(**{"E1/2 (V vs Fc+/Fc)": round(float(fc.iloc[0, 1]) + 0.05, 3)})
    pd.concat([fc, again]).to_csv(tmp_path / "fc.csv", index=False)
    campaign = write_campaign(tmp_path, cell={"ferrocene_vs_li_v": 3.1})
    args = ("backtest", campaign, "--truth", tmp_path / "fc.csv", "--column", "E1/2 (V vs Fc+/Fc)", "--planners",
            "random", "--seeds", "1", "--budget", "200", "--no-instruments", "--noise-v", "0")
    refused = labloop(*args)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "names the Fc+/Fc scale" in refused.stderr and "--truth-vs fc" in refused.stderr
    converted = labloop(*args, "--truth-vs", "fc", "--json")
    assert converted.returncode == 0, converted.stderr
    report = json.loads(converted.stdout)
    assert report["planners"]["random"]["per_seed"] == [in_window] and report["truth_offset_v"] == 3.1
    assert re.search(r"repeats a molecule with another value \(the first: line 202 '[^']+' \(-?[\d.]+ V vs Fc\+/Fc\) "
                     r"repeats line 2 '[^']+' \(-?[\d.]+ V vs Fc\+/Fc\)\)", converted.stderr), converted.stderr
    fc.rename(columns={"E1/2 (V vs Fc+/Fc)": "E (V vs SCE)"}).to_csv(tmp_path / "sce.csv", index=False)
    sce = labloop("backtest", campaign, "--truth", tmp_path / "sce.csv", "--column", "E (V vs SCE)", "--planners",
                  "random", "--no-instruments")
    assert sce.returncode == 2 and "convert the column to V vs Li/Li+" in sce.stderr, sce.stderr
    # declared fc over a header naming SCE: taken as declared, and said (it was silent, a lab head's trial)
    declared = labloop("backtest", campaign, "--truth", tmp_path / "sce.csv", "--column", "E (V vs SCE)", "--truth-vs",
                       "fc", "--planners", "random", "--seeds", "1", "--budget", "4", "--no-instruments")
    assert declared.returncode == 0, declared.stderr
    assert (f"warning: {tmp_path / 'sce.csv'}, column 'E (V vs SCE)' names another reference scale than the Fc+/Fc "
            "--truth-vs fc declares: its values are taken as vs Fc+/Fc; convert them if they are not"
            ) in declared.stderr, declared.stderr
    assert "names another reference scale" not in converted.stderr
    # a third of the rows on the other scale: a group ~3.1 V below the rest
    mixed = table.assign(e_v=[v - 3.1 if i % 3 == 0 else v for i, v in enumerate(table.e_v)])
    mixed.to_csv(tmp_path / "mixed.csv", index=False)
    said = labloop("backtest", campaign, "--truth", tmp_path / "mixed.csv", "--column", "e_v", "--planners", "random",
                   "--seeds", "1", "--budget", "4", "--no-instruments")
    assert said.returncode == 0, said.stderr
    assert re.search(r"warning: .*mixed\.csv, column 'e_v': its 200 values fall in two groups \d\.\d\d V apart, about "
                     r"cell\.ferrocene_vs_li_v \(3\.1 V\): 13\d with median \d\.\d\d V \(lines 3, 4, 6, 7, 9 and 12\d "
                     r"more\) and 6\d with median \d\.\d\d V \(lines 2, 5, 8, 11, 14 and 6\d more\), V vs Li/Li\+; the "
                     r"lower group lies where values vs Fc\+/Fc read as vs Li/Li\+ would", said.stderr), said.stderr
    assert "two groups" not in labloop(*args[:4], path, "--column", "e_v", *args[6:]).stderr


@pytest.mark.parametrize(("offset", "unexplained"), [
    (0.0, "the lower group lies where values vs Fc+/Fc read as vs Li/Li+ would"),
    (3.2, "the higher group lies where values vs Li/Li+ given --truth-vs fc would"),
])
def test_a_mix_of_scales_names_both_groups_and_the_one_the_declared_scale_does_not_explain(tmp_path, offset,
                                                                                         unexplained):
    """Most rows vs Fc+/Fc (lines 2-7) among rows vs Li/Li+ (lines 8-11), read as vs Li/Li+: the warning took the
    majority as right and listed the rows vs Li/Li+ as the odd ones (a chemist's trial, 60% of a table vs Fc+/Fc).
    It says both groups now, and which of them the declared scale does not explain (the lower, however many; read
    as vs Fc+/Fc, the higher), so fixing the rows it points at is never wrong."""
    from labloop.orchestrator.potential_table import read_truth

    smiles = pd.read_csv(EXAMPLES_LIBRARY)["smiles"].tolist()[:10]
    values = [1.0 + 0.01 * i for i in range(6)] + [4.2 + 0.01 * i for i in range(4)]  # vs Fc+/Fc, then vs Li/Li+
    rows = "\n".join(f"{s},{v}" for s, v in zip(smiles, values, strict=True))
    (tmp_path / "t.csv").write_text(f"smiles,e_v\n{rows}\n")
    notes = read_truth(tmp_path / "t.csv", "e_v", truth_vs="fc" if offset else None, ferrocene_vs_li_v=3.2).notes
    high, low = ("4.21", "1.02") if not offset else ("7.42", "4.23")  # read as vs Fc+/Fc: 3.2 V added to each
    taken = "V vs Fc+/Fc, as --truth-vs fc declares" if offset else "V vs Li/Li+"  # as declared (a chemist's trial)
    assert notes == [f"{tmp_path / 't.csv'}, column 'e_v': its 10 values fall in two groups 3.19 V apart, about "
                     f"cell.ferrocene_vs_li_v (3.2 V): 4 with median {high} V (lines 8, 9, 10, 11) and 6 with median "
                     f"{low} V (lines 2, 3, 4, 5, 6 and 1 more), V vs Li/Li+; {unexplained}: check the reference scale "
                     f"of its rows, since labloop takes the backtest's truth as {taken}"]


def test_a_wide_table_is_no_mix_of_scales_unless_its_groups_lie_the_ferrocene_offset_apart(tmp_path):
    """A right table with a tail 1.6 V below the rest was said to "fall in two groups 1.6 V apart, about
    cell.ferrocene_vs_li_v (3 V)" (a chemist's trial): two scales lie that offset apart, within a third of it."""
    from labloop.orchestrator.potential_table import read_truth

    smiles = pd.read_csv(EXAMPLES_LIBRARY)["smiles"].tolist()[:40]
    # 1.6 V below the rest, 2.3 V below (a lab head's trial: "2.36 V apart, about 3.2 V"), then 3.0 V below
    for tail, said in ((2.9, False), (2.3, False), (1.5, True)):
        values = [4.5 + 0.01 * i for i in range(34)] + [tail + 0.01 * i for i in range(6)]
        rows = "\n".join(f"{s},{v}" for s, v in zip(smiles, values, strict=True))
        (tmp_path / "t.csv").write_text(f"smiles,e_v\n{rows}\n")
        notes = read_truth(tmp_path / "t.csv", "e_v", ferrocene_vs_li_v=3.0).notes
        assert any("two groups" in note for note in notes) is said, notes


def test_values_below_lithium_are_left_out_and_said_unless_declared_vs_ferrocene(tmp_path):
    """A trial's table of potentials about -0.9 V, vs Fc+/Fc in fact, read as vs Li/Li+ passed in silence: no couple
    is measured below lithium's own potential in a lithium electrolyte, so such values are said (a note, the first
    line named) and left out (a lab head's trial: one such past measurement, used, pulled every calibration to the
    offset learner); declared vs Fc+/Fc (3.2 V added), the same values are taken and say nothing; a table of such
    values only is refused in one line."""
    from labloop.core.errors import InvalidInput
    from labloop.orchestrator.potential_table import read_truth

    smiles = pd.read_csv(EXAMPLES_LIBRARY)["smiles"].tolist()[:5]
    values = [0.3, -0.9, -0.85, 0.1, -0.95]
    rows = "\n".join(f"{s},{v}" for s, v in zip(smiles, values, strict=True))
    (tmp_path / "t.csv").write_text(f"smiles,e_v\n{rows}\n")
    read = read_truth(tmp_path / "t.csv", "e_v", ferrocene_vs_li_v=3.2)
    assert read.notes == [f"3 values of {tmp_path / 't.csv'}, column 'e_v', lie below 0 V vs Li/Li+ (first: line 3, "
                          "-0.9 V), where lithium itself deposits, below any couple measured in a lithium electrolyte: "
                          "they are left out; values vs Fc+/Fc, Ag/AgCl or SCE read as vs Li/Li+? declare Fc+/Fc with "
                          "--truth-vs fc, convert the others"]
    assert sorted(read.values.values()) == [0.1, 0.3] and read.rows["below_lithium"] == 3
    declared = read_truth(tmp_path / "t.csv", "e_v", truth_vs="fc", ferrocene_vs_li_v=3.2)
    assert declared.notes == [] and len(declared.values) == 5
    (tmp_path / "t.csv").write_text("smiles,e_v\n" + "\n".join(f"{s},-0.9" for s in smiles) + "\n")
    refused = r"every value in column 'e_v' lies below 0 V vs Li/Li\+ \(first: line 2, -0\.9 V\)"
    with pytest.raises(InvalidInput, match=refused):
        read_truth(tmp_path / "t.csv", "e_v", ferrocene_vs_li_v=3.2)


def test_repeats_far_apart_are_named_apart_from_close_ones(tmp_path, labloop, write_campaign, truth_csv):
    """A molecule given again 3.2 V off got the same mild note as one given again 0.02 V off: a spread beyond
    surrogate train's REPEAT_SPREAD is warned of by itself, with the lines."""
    path, _ = truth_csv
    rows = path.read_text().splitlines()
    close, far = rows[1].split(","), rows[2].split(",")
    (tmp_path / "lab.csv").write_text("\n".join([*rows, f"{close[0]},{float(close[1]) + 0.02}",
                                                 f"{far[0]},{float(far[1]) - 3.2}", rows[3]]) + "\n")
    result = labloop("backtest", write_campaign(tmp_path), "--truth", tmp_path / "lab.csv", "--column", "e_v",
                     "--planners", "random", "--seeds", "1", "--budget", "2", "--no-instruments", "--json")
    assert result.returncode == 0, result.stderr
    assert (f"warning: 1 repeated molecule of {tmp_path / 'lab.csv'} has values more than 0.1 V apart (first: lines "
            f"3, {len(rows) + 2}, spread 3.200 V)") in result.stderr, result.stderr
    rows_said = json.loads(result.stdout)["truth_rows"]
    assert (rows_said["repeats_with_another_value"], rows_said["repeated_molecules_apart"]) == (2, 1)
    # a row given twice alike was lost without trace (a lab head's trial: the counts did not add up to the rows)
    assert (f"warning: 1 row of {tmp_path / 'lab.csv'} repeats a molecule with the same value (line {len(rows) + 3} "
            "repeats line 4): counted once") in result.stderr.splitlines(), result.stderr
    assert rows_said["repeats_with_same_value"] == 1


def test_missing_value_markers_are_missing_values(tmp_path, labloop, write_campaign, truth_csv):
    """'n/a', 'NA', 'nan', '-', 'ND' in a lab's column were refused one cell at a time (a trial: 11 cells): they
    are missing values, counted in one warning that names the first lines; a word that is no marker is still
    refused."""
    path, _ = truth_csv
    table = pd.read_csv(path).astype({"e_v": object})
    for row, marker in zip((3, 10, 20, 30, 40, 50), ("n/a", "NA", "nan", " - ", "ND", "NaN"), strict=True):
        table.loc[row, "e_v"] = marker
    table.to_csv(tmp_path / "lab.csv", index=False)
    args = ("backtest", write_campaign(tmp_path), "--truth", tmp_path / "lab.csv", "--column", "e_v", "--planners",
            "random", "--seeds", "1", "--budget", "2", "--no-instruments")
    result = labloop(*args, "--json")
    assert result.returncode == 0, result.stderr
    assert (f"warning: 6 rows of {tmp_path / 'lab.csv'} have no finite value in column 'e_v' (6 of them write a "
            "missing value as 'n/a', 'NA', 'nan', '-', 'ND', 'NaN', first at lines 5, 12, 22, 32, 42 and 1 more) and "
            "are left out") in result.stderr.splitlines(), result.stderr
    assert json.loads(result.stdout)["truth_rows"]["missing_markers"] == 6
    # a blank cell beside them is said where it is too (a chemist's trial looked for the blank ones)
    table.loc[70, "e_v"] = ""
    table.to_csv(tmp_path / "lab.csv", index=False)
    blank = labloop(*args)
    assert (f"warning: 7 rows of {tmp_path / 'lab.csv'} have no finite value in column 'e_v' (6 of them write a "
            "missing value as 'n/a', 'NA', 'nan', '-', 'ND', 'NaN', first at lines 5, 12, 22, 32, 42 and 1 more; 1 of "
            "them blank, at line 72) and are left out") in blank.stderr.splitlines(), blank.stderr
    table.loc[60, "e_v"] = "pending"
    table.to_csv(tmp_path / "lab.csv", index=False)
    refused = labloop(*args)
    assert refused.returncode == 2 and "line 62, column 'e_v': 'pending' is not a number" in refused.stderr


def test_column_names_match_with_spaces_around_them(tmp_path, labloop, write_campaign, truth_csv):
    """A header ' SMILES , e_v ' (a spreadsheet's spaces) was no 'smiles' column; the names are matched stripped."""
    path, in_window = truth_csv
    text = path.read_text().replace("smiles,e_v", " SMILES , e_v ", 1)
    (tmp_path / "spaced.csv").write_text(text)
    result = labloop("backtest", write_campaign(tmp_path), "--truth", tmp_path / "spaced.csv", "--column", "e_v",
                     "--planners", "random", "--seeds", "1", "--budget", "200", "--no-instruments", "--noise-v", "0",
                     "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["planners"]["random"]["per_seed"] == [in_window]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_backtest_says_what_stopped(tmp_path, write_campaign, truth_csv, signum):
    """Ctrl-C said only 'aborted', and a kill (SIGTERM) nothing, exit 143: one line says what stopped and that
    nothing was written, exit 130 for both, as `labloop run` exits. With simulated instruments, whose first
    campaign of 200 voltammograms takes seconds, the signal comes before any seed finished (one that did is kept:
    the tests below)."""
    path, _ = truth_csv
    process = subprocess.Popen([sys.executable, "-m", "labloop.orchestrator.cli.main", "backtest",
                                write_campaign(tmp_path), "--truth", path, "--column", "e_v", "--planners", "random",
                                "--seeds", "1000", "--budget", "250"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    first = process.stderr.readline()  # the budget's warning: printed once the work has begun
    assert "exceeds the 200 library molecules" in first, first + process.communicate()[1]
    process.send_signal(signum)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] == (f"interrupted ({signal.Signals(signum).name}): the backtest stopped "
                                            "before its results and wrote nothing"), err
    assert "aborted" not in err and out == ""


#: what `backtest -v` logs as each campaign ends (orchestrator/backtest.py compare)
FINISHED = re.compile(r"INFO labloop\.orchestrator\.backtest: (\w+) seed (\d+) finished: (\S+) after \d+ experiments")


def _stopped_after(args: list, first: str, signum: int) -> tuple[subprocess.CompletedProcess, dict[str, list[float]]]:
    """``labloop -v backtest ARGS`` in a real process, sent ``signum`` once ``first``'s first seed has finished (its
    log line read): what it printed and exited with, and each planner's finished seeds' values as it logged them,
    in order (more may finish before the signal lands)."""
    process = subprocess.Popen([sys.executable, "-m", "labloop.orchestrator.cli.main", "-v", "backtest", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "COLUMNS": "200"})  # a table of whole rows, whatever runs pytest
    assert process.stderr is not None
    said = []
    for line in process.stderr:  # until the process ends, if it never says it (the assert below shows why)
        said.append(line)
        if (match := FINISHED.search(line)) and match[1] == first:
            process.send_signal(signum)
            break
    out, rest = process.communicate(timeout=300)  # liveness only
    err = "".join(said) + rest
    finished: dict[str, list[float]] = {}
    for name, _seed, value in FINISHED.findall(err):
        finished.setdefault(name, []).append(float(value))
    assert first in finished, err
    return subprocess.CompletedProcess(args, process.returncode, out, err), finished


@pytest.mark.slow
def test_an_interrupted_backtest_keeps_its_finished_seeds(tmp_path, labloop, write_campaign, truth_csv):
    """A Ctrl-C 4 seeds into 5 lost all of them ('stopped before its results and wrote nothing'): the results of
    the seeds that finished are printed, each planner's as an uninterrupted run of those seeds gives them, marked
    (``interrupted``, ``seeds_finished``, the seed in progress dropped), exit 130. A real SIGINT to a real process
    once greedy's first seed has finished; the planners run one after another, so random has none or a few."""
    path, _ = truth_csv
    campaign = write_campaign(tmp_path, prior=True, shared_prior=True, planner={"kind": "greedy", "batch_size": 2})
    args = [campaign, "--truth", path, "--column", "e_v", "--budget", "40", "--no-instruments", "--no-oracle",
            "--json"]
    result, finished = _stopped_after([*args, "--planners", "greedy,random", "--seeds", "3"], "greedy",
                                      signal.SIGINT)
    assert result.returncode == 130, result.stderr
    report = json.loads(result.stdout)
    counts = {name: len(finished.get(name, [])) for name in ("greedy", "random")}
    assert report["interrupted"] == "SIGINT" and report["seeds_finished"] == counts, counts
    assert report["seeds"] == [5, 6, 7]  # the seeds asked; each planner's per_seed holds its first finished ones
    assert list(report["planners"]) == [name for name, n in counts.items() if n]  # none for a planner without one
    running = next((name for name, n in counts.items() if n < 3), None)
    if report["seed_dropped"] is not None:  # None only when the signal came between two campaigns
        assert report["seed_dropped"] == {"planner": running, "seed": 5 + counts[running]}
    # each planner's numbers are an uninterrupted run's of the same seeds (latency aside)
    for name, r in report["planners"].items():
        assert r["per_seed"] == finished[name]
        whole = labloop("backtest", *args, "--planners", name, "--seeds", str(counts[name]))
        assert whole.returncode == 0, whole.stderr
        expected = json.loads(whole.stdout)["planners"][name]
        assert {k: v for k, v in r.items() if k != "latency_s"} == \
               {k: v for k, v in expected.items() if k != "latency_s"}
    said = [f"{counts['greedy']} of 3 seeds of greedy", f"{counts['random']} of 3 of random"]
    dropped = report["seed_dropped"]
    in_progress = f"; {dropped['planner']}'s seed {dropped['seed']}, in progress, is dropped" if dropped else ""
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"interrupted (SIGINT) after {said[0]} and {said[1]}{in_progress}: the results hold "
                           f"finished seeds only; the prior model cached in {tmp_path / 'prior-models'}"), last
    assert last.endswith(" is kept"), last


@pytest.mark.slow
def test_an_interrupted_table_holds_its_finished_seeds(tmp_path, write_campaign, truth_csv):
    """The table of a backtest stopped (SIGTERM, a real one) after one of its 1000 seeds: the finished seeds' mean,
    sd and per-seed values as logged, its title and caption saying it was interrupted, exit 130."""
    path, _ = truth_csv
    result, finished = _stopped_after([write_campaign(tmp_path), "--truth", path, "--column", "e_v", "--planners",
                                       "random", "--seeds", "1000", "--budget", "200", "--no-instruments"], "random",
                                      signal.SIGTERM)
    assert result.returncode == 130, result.stderr
    values = finished["random"]
    n = len(values)
    assert 0 < n < 1000
    assert "seeds 5-1004 (interrupted: finished seeds only)" in " ".join(result.stdout.split()), result.stdout
    row = next(line for line in result.stdout.splitlines() if line.startswith("│ random"))
    cells = [c.strip() for c in row.strip("│").split("│")]
    mean = round(statistics.mean(values), 2)
    sd = statistics.stdev(values) if n > 1 else None  # one seed has none, and the table shows the mean alone
    assert cells[1] == (f"{mean:.2f}" if sd is None
                        else f"{mean:.2f} +/- {round(sd, 2):.2f} ({round(sd / n ** 0.5, 2):.2f})")
    assert cells[3] == " ".join(f"{v:g}" for v in values)
    partial = f"interrupted (SIGTERM) after {n} of 1000 seeds of random"
    assert partial in " ".join(result.stdout.split())
    assert result.stderr.strip().splitlines()[-1].startswith(partial), result.stderr


@pytest.mark.parametrize("planners", ["bayes,,random", "random,", ","])
def test_an_empty_planner_name_is_refused(tmp_path, labloop, write_campaign, truth_csv, planners):
    path, _ = truth_csv
    result = labloop("backtest", write_campaign(tmp_path), "--truth", path, "--column", "e_v", "--planners", planners,
                     "--no-instruments")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "--planners" in result.stderr and "empty planner name" in result.stderr


def test_a_best_score_per_seed_is_shown_as_its_mean_is(tmp_path, labloop, write_campaign, truth_csv, monkeypatch):
    """goal: maximize printed 6 digits per seed beside a mean of 2 decimals."""
    path, _ = truth_csv
    campaign = write_campaign(tmp_path, objective={"quantity": "oxidation_potential", "goal": "maximize"})
    monkeypatch.setattr(console.out, "width", 400)  # no folding
    result = labloop("backtest", campaign, "--truth", path, "--column", "e_v", "--planners", "random", "--seeds", "2",
                     "--budget", "3", "--no-instruments")
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("│ random"))
    cells = [c.strip() for c in row.strip("│").split("│")]
    assert re.fullmatch(r"\d+\.\d{2} \d+\.\d{2}", cells[3]), row  # two decimals each, as the mean (a review)


def test_the_table_fits_80_columns(tmp_path, labloop, write_campaign, truth_csv, monkeypatch):
    """On an 80-column terminal the table's eight columns folded every planner's row over three lines, unreadable:
    it is split in two tables whose rows each fit one line, and the per-seed values are lines under them."""
    path, _ = truth_csv
    campaign = write_campaign(tmp_path, prior=True, shared_prior=True, planner={"kind": "bayes", "batch_size": 2})
    monkeypatch.setattr(console.out, "width", 80)  # as COLUMNS=80 sets it
    result = labloop("backtest", campaign, "--truth", path, "--column", "e_v", "--planners", "bayes,greedy,random",
                     "--seeds", "2", "--budget", "6", "--no-instruments")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    paired = [line for line in lines if " per campaign" in line]  # one line each, for grep: the terminal folds them
    assert paired and all(len(line) <= 80 for line in lines if line not in paired), result.stdout
    rows = [line for line in lines if line.startswith("│")]
    # a row folded goes on in a line whose planner cell is blank
    assert sorted(line.split("│")[1].strip() for line in rows) == sorted(["bayes", "greedy", "random", "oracle"] * 2)
    for name in ("bayes", "greedy", "random", "oracle"):
        assert sum(line.startswith(f"{name} per seed (5-6): ") for line in lines) == 1, result.stdout


def test_the_table_states_the_objective_and_why_of_oracle_can_exceed_1(capsys, monkeypatch):
    """The table's title said no hit window, and with instruments it showed the scan's window, taken for it; an
    ``of oracle`` above 1 read as a bug (a chemist's trial). The title states the objective, and a caption line
    says why a planner can beat the oracle when one does."""
    from labloop.orchestrator.cli.backtest import OF_ORACLE_ABOVE_1, _print_table

    def planner(mean: float, of_oracle: float | None) -> dict:
        return {"mean": mean, "of_oracle": of_oracle, "sd": 0.0, "se": 0.0, "per_seed": [mean], "after": {"100%": mean},
                "failed_mean": 0, "within_1_96_sd": None, "rms_z": None,
                "latency_s": {"median": 0.01, "p95": 0.01}}

    report = {"campaign": "c", "measure": "hits", "objective": "oxidation potential in [4.50, 4.60] V vs Li/Li+",
              "budget": 10, "library": 200, "seeds": [5], "instruments": "simulated CV, 2.40-5.15 V vs Li/Li+",
              "seeds_vary": "a seed varies the noise", "versus_leader": [], "past_measurements": 0, "past_bounds": 0,
              "truth": "/lab/truth.csv", "column": "E1/2 (V vs Fc+/Fc)", "truth_offset_v": 3.2, "hits_in_library": 12,
              "planners": {"bayes": planner(3.0, 0.9), "oracle": planner(3.3, None)}}
    monkeypatch.setattr(console.out, "width", 400)  # no folding
    _print_table(report)
    shown = " ".join(capsys.readouterr().out.split())  # the caption folds to the table's width
    # the truth's scale and how many hits there were to find: only --json said them (a lab head's trial)
    assert ("truth: column 'E1/2 (V vs Fc+/Fc)' of truth.csv, read as V vs Fc+/Fc (+3.2 V each: --truth-vs fc); the "
            "library's molecules hold 12 hits") in shown, shown
    assert "c: hits (oxidation potential in [4.50, 4.60] V vs Li/Li+) in 10 experiments" in shown, shown
    assert OF_ORACLE_ABOVE_1 not in shown
    report["planners"]["greedy"] = planner(3.6, 1.09)
    _print_table(report)
    assert OF_ORACLE_ABOVE_1 in " ".join(capsys.readouterr().out.split())


def test_a_window_partly_beyond_the_cvs_reach_is_warned_of_as_validate_does(tmp_path, labloop, write_campaign,
                                                                             truth_csv):
    """validate warned that part of the objective's window lies beyond what the cv measures; a backtest of the same
    campaign said nothing, and with --no-instruments counted hits there that no run could measure (a lab head's
    trial). It now says the same line, and with --no-instruments that it counts them."""
    path, _ = truth_csv
    objective = {"quantity": "oxidation_potential", "goal": "window", "window_v": [5.0, 5.2]}
    campaign = write_campaign(tmp_path, objective=objective)
    validated = labloop("validate", campaign, "--dry-run")
    (said,) = [line for line in validated.stderr.splitlines() if "is partly out of reach" in line]
    result = labloop("backtest", campaign, "--truth", path, "--column", "e_v", "--planners", "random", "--seeds", "1",
                     "--budget", "4", "--no-instruments")
    assert result.returncode == 0, result.stderr
    assert (f"{said}; --no-instruments counts hits there, which a run of this campaign cannot measure"
            in result.stderr.splitlines()), result.stderr


def test_an_objective_wholly_beyond_the_cvs_reach_is_refused_as_validate_refuses_it(tmp_path, labloop, write_campaign,
                                                                                     truth_csv):
    """A threshold above every E1/2 the cv measures: validate refuses it, and a backtest with the simulated
    instruments ran every planner to 0 hits, exit 0, "not told apart" (a chemist's trial). It is refused with
    validate's line, exit 2, before any training; with --no-instruments (the truth is the measurement) it runs and
    says that no run of the campaign could measure those hits."""
    path, _ = truth_csv
    campaign = write_campaign(tmp_path, objective={"quantity": "oxidation_potential", "goal": "maximize",
                                                   "threshold_v": 5.3})
    validated = labloop("validate", campaign, "--dry-run")
    assert validated.returncode == 2, validated.stderr
    (said,) = [line for line in validated.stderr.splitlines() if "is out of reach" in line]
    result = labloop("backtest", campaign, "--truth", path, "--column", "e_v", "--planners", "random", "--seeds", "1",
                     "--budget", "4")
    assert result.returncode == 2 and said in result.stderr.splitlines(), result.stderr
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("*"))
    result = labloop("backtest", campaign, "--truth", path, "--column", "e_v", "--planners", "random", "--seeds", "1",
                     "--budget", "4", "--no-instruments")
    assert result.returncode == 0, result.stderr
    warned = [line for line in result.stderr.splitlines() if "is out of reach" in line]
    assert len(warned) == 1 and warned[0].endswith(
        "; --no-instruments counts hits there, which a run of this campaign cannot measure"), result.stderr


def test_a_best_score_beyond_the_scan_is_said_without_instruments(tmp_path, labloop, write_campaign, truth_csv):
    """A lab head's trial read a best of 6.21 V from a maximize backtest without instruments beside a scan to 5.15
    V, unsaid (a window beyond the scan is said): the true values no run of the campaign can measure are counted."""
    path, _ = truth_csv
    table = pd.read_csv(path).assign(e_v=4.0)
    table.loc[:2, "e_v"] = 6.2  # three molecules above the example scan (2.4-5.15 V vs Li/Li+), the rest within
    table.to_csv(tmp_path / "high.csv", index=False)
    campaign = write_campaign(tmp_path, objective={"quantity": "oxidation_potential", "goal": "maximize"})
    args = ("backtest", campaign, "--truth", tmp_path / "high.csv", "--column", "e_v", "--planners", "random",
            "--seeds", "1", "--budget", "4")
    result = labloop(*args, "--no-instruments", "--json")
    assert result.returncode == 0, result.stderr
    said = [w for w in json.loads(result.stdout)["warnings"] if "cannot measure them there" in w]
    assert len(said) == 1 and said[0].startswith("3 molecules of the library have a true value above the ") \
        and said[0].endswith("; --no-instruments scores the true value"), said
    simulated = labloop(*args, "--json")  # the simulated scan measures what a run would: nothing to say
    assert simulated.returncode == 0 and "cannot measure them there" not in simulated.stderr, simulated.stderr


@pytest.mark.parametrize("header", ["E1/2 (V vs Ag/Ag+)", "E vs Ag+/Ag", "E vs Ag|Ag+", "E (V vs Ag+ / Ag)",
                                    "E vs Ag/AgNO3", "E (V vs SCE)"])
def test_a_truth_header_naming_a_silver_reference_any_way_is_not_read_as_lithium(tmp_path, header):
    """``E vs Ag+/Ag`` was read as vs Li/Li+ in silence (0 V added), where ``E vs Ag/Ag+`` was refused as a scale
    labloop cannot convert (a lab's trial): each spelling is refused without ``--truth-vs``, and said to be another
    scale than the one declared with ``--truth-vs fc``."""
    from labloop.core.errors import InvalidInput
    from labloop.orchestrator.potential_table import OTHER_SCALES, truth_offset

    with pytest.raises(InvalidInput, match="convert the column to V vs Li/Li\\+"):
        truth_offset(tmp_path / "truth.csv", header, None, 3.2)
    assert OTHER_SCALES.search(header)
