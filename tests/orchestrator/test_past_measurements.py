"""A campaign given the lab's own past measurements (``past_measurements``): read once into the journal, learnt from
before the first proposal, never proposed again, counted apart, resumed without the file; a table that cannot be
used is one line naming the field, exit 2, nothing created."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from rdkit import Chem

from labloop.orchestrator.journal.store import Journal

from ..conftest import DATA, EXAMPLES

SURROGATE = {"preset": "fast", "folds": 2, "epochs": 2, "retrain_every": 3, "wait_for_retrain": True}


def _canonical(smiles: str) -> str:
    return Chem.MolToSmiles(Chem.MolFromSmiles(smiles))


def _past_table(folder, header: str = "e_v") -> tuple[dict[str, float], str]:
    """past.csv: 10 library molecules (two of them spelled another way), one molecule the library lacks, and a row
    with ``n/a``; returns the values by canonical SMILES and the molecule the library lacks."""
    library = pd.read_csv(EXAMPLES / "library.csv")
    known = {_canonical(s) for s in library["smiles"]}
    outside = next(s for s in pd.read_csv(DATA, nrows=2000)["smiles"] if _canonical(s) not in known)
    rows, values = [], {}
    for i, (smiles, ie) in enumerate(zip(library["smiles"][:10], library["ie_ev"][:10], strict=True)):
        written = Chem.MolToSmiles(Chem.MolFromSmiles(smiles), doRandom=True) if i in (3, 7) else smiles
        values[_canonical(smiles)] = round(ie - 2.0, 3)
        rows.append(f"{written},{values[_canonical(smiles)]}")
    values[_canonical(outside)] = 4.55
    rows += [f"{outside},4.55", "CCO,n/a"]
    (folder / "past.csv").write_text(f"smiles,{header}\n" + "\n".join(rows) + "\n")
    return values, outside


def _proposals(store) -> list[tuple[str, str]]:
    with Journal.open(store, readonly=True) as journal:
        return [(e.smiles, json.dumps(e.conditions, sort_keys=True)) for e in journal.experiments()]


def test_past_measurements_teach_the_first_proposal_are_never_proposed_and_resume_without_the_file(
        tmp_path, labloop, write_campaign):
    values, _ = _past_table(tmp_path)
    window = (4.5, 4.6)
    hits = sum(window[0] <= v <= window[1] for v in values.values())
    past = {"file": "past.csv", "column": "e_v", "vs": "li"}
    whole = write_campaign(tmp_path, prior=True, shared_prior=True, name="whole", surrogate=SURROGATE,
                           planner={"kind": "bayes", "batch_size": 2}, past_measurements=past)
    result = labloop("run", whole, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert (f"11 past measurements from {tmp_path / 'past.csv'} (values vs Li/Li+; 10 of library molecules, which are "
            f"not proposed again; {hits} {'hit' if hits == 1 else 'hits'}), learnt from before the first "
            "proposal") in result.stderr
    assert "1 row of" in result.stderr and "'n/a'" in result.stderr  # the row left out is said
    # and what a CV sheet's "n.d." may mean instead: no wave within the scan, a bound (a chemist's trial)
    assert "where a row means no wave within the scan, write it as the bound it is (e.g. '>1.9')" in result.stderr

    with Journal.open(tmp_path / "whole.db", readonly=True) as journal:
        experiments, events = journal.experiments(), journal.events()
        assert len(journal.past_measurements()) == 11
    assert len(experiments) == 6 and not {_canonical(e.smiles) for e in experiments} & set(values)
    kinds = [e.kind for e in events]
    first_calibration = events[kinds.index("calibration")]
    assert kinds.index("calibration") < kinds.index("proposed") and first_calibration.data["n_measurements"] == 11
    retrain = next(e for e in events if e.kind == "retrain")
    assert retrain.data["n_measurements"] == 11 + 3  # the past, then the first 3 done

    shown = json.loads(labloop("log", tmp_path / "whole.db", "--json").stdout)
    assert shown["progress"]["past"] == {"measurements_n": 11, "bounds_n": 0, "in_library": 10, "hits": hits}
    assert shown["progress"]["counts"]["done"] == 6  # the campaign's own experiments
    assert not any(e["uncalibrated"] for e in shown["experiments"])  # calibrated on the past from the first batch
    assert "measurements" not in next(e for e in shown["events"] if e["kind"] == "past_measurements")["data"]
    assert f"(+ 11 past measurements, {hits} hit" in " ".join(labloop("log", tmp_path / "whole.db").stdout.split())
    assert labloop("report", tmp_path / "whole.db", "-o", tmp_path / "report").returncode == 0
    written = pd.read_csv(tmp_path / "report" / "past_measurements.csv")  # what the campaign learnt from, to check
    assert list(written.columns) == ["smiles", "potential_v_vs_li", "above_v_vs_li", "below_v_vs_li"]
    assert len(written) == 11 and written["above_v_vs_li"].isna().all() and written["below_v_vs_li"].isna().all()
    assert {_canonical(s): v for s, v in zip(written["smiles"], written["potential_v_vs_li"], strict=True)} == values

    # the same campaign stopped after 2 experiments, its table then deleted: a resume proposes what the whole run did
    halted = write_campaign(tmp_path, prior=True, shared_prior=True, name="halted", surrogate=SURROGATE,
                            planner={"kind": "bayes", "batch_size": 2}, past_measurements=past,
                            budget={"max_experiments": 2})
    assert labloop("run", halted, "--dry-run").returncode == 0
    (tmp_path / "past.csv").unlink()
    resumed = labloop("resume", tmp_path / "halted.db", "--max-experiments", "6")
    assert resumed.returncode == 0, resumed.stderr
    assert _proposals(tmp_path / "halted.db") == _proposals(tmp_path / "whole.db")


def test_without_past_measurements_the_first_batch_is_marked_uncalibrated(tmp_path, labloop, write_campaign):
    """The mark the past measurements lift is still there without them (`log`'s ``*``)."""
    campaign = write_campaign(tmp_path, prior=True, shared_prior=True, surrogate=SURROGATE,
                              planner={"kind": "bayes", "batch_size": 2}, budget={"max_experiments": 2})
    assert labloop("run", campaign, "--dry-run").returncode == 0
    shown = json.loads(labloop("log", tmp_path / "tiny.db", "--json").stdout)
    assert shown["progress"]["past"] is None and all(e["uncalibrated"] for e in shown["experiments"])


def test_a_library_molecule_spelled_another_way_is_matched_and_fc_values_are_moved_to_li(tmp_path, write_campaign):
    from labloop.orchestrator.cli.campaign import _ferrocene
    from labloop.orchestrator.config.campaign import load_campaign
    from labloop.orchestrator.potential_table import read_past

    values, outside = _past_table(tmp_path, header="E1/2 vs Fc")
    campaign = load_campaign(write_campaign(tmp_path, past_measurements={"file": "past.csv", "column": "E1/2 vs Fc",
                                                                          "vs": "Fc"},  # either case
                                            cell={"ferrocene_vs_li_v": 3.3}))
    library = pd.read_csv(EXAMPLES / "library.csv")["smiles"].tolist()
    past = read_past(campaign, library)
    assert past is not None and past.in_library == 10 and past.source["offset_v"] == 3.3
    by_smiles = dict(past.measurements)
    assert set(library[:10]) | {outside} == set(by_smiles)  # the library's spelling, where the table's differs
    assert all(by_smiles[s] == pytest.approx(values[_canonical(s)] + 3.3) for s in by_smiles)
    # validate said the value unused (the protocol has no add_standard step) while it moved every past value (a trial)
    assert campaign.unused_ferrocene() is None
    assert _ferrocene(campaign).endswith("(cell.ferrocene_vs_li_v): the past measurements (vs: fc) go through it")


@pytest.mark.parametrize(("header", "cells", "past", "said"), [
    ("E1/2 (V vs Fc+/Fc)", "4.1", {}, "names the Fc+/Fc scale, and labloop takes past measurements as V vs Li/Li+: "
                                      "give past_measurements.vs: fc"),
    # the couple written the other way round (IUPAC's is Fc+/Fc, which labloop writes) is the same scale
    ("E1/2 (V vs Fc/Fc+)", "4.1", {}, "names the Fc+/Fc scale, and labloop takes past measurements as V vs Li/Li+: "
                                      "give past_measurements.vs: fc"),
    # declared vs Li/Li+ over a header naming Fc+/Fc: refused as the reverse is (a chemist's trial: 0 words, 3 V off)
    ("E1/2 (V vs Fc+/Fc)", "1.1", {"vs": "li"}, "column 'E1/2 (V vs Fc+/Fc)' names Fc+/Fc, not Li/Li+: give "
                                                "past_measurements.vs: fc"),
    # millivolts: a 4.3 under such a header was read as 4.3 V (4300 is refused as beyond any potential)
    ("E vs Li/Li+ (mV)", "4.3", {"vs": "li"}, "column 'E vs Li/Li+ (mV)' names mV, and labloop takes past "
                                              "measurements in V: convert the column to volts"),
    ("e_mv", "4300", {"vs": "li"}, "column 'e_mv' names mV"),
    ("e_v", "4.1", {"column": "e_ox", "vs": "li"}, "past_measurements.column e_ox: no such column"),
    ("e_v", "45", {"vs": "li"}, "line 2, column 'e_v': 45 lies beyond -3..10 V vs Li/Li+"),
    ("e_v", "n/a", {"vs": "li"}, "column 'e_v' has no value in any of its 1 row"),
    ("E1/2 (V)", "1.1", {}, "column 'E1/2 (V)' names no reference scale: give past_measurements.vs: li for values vs "
                            "Li/Li+ or past_measurements.vs: fc for values vs Fc+/Fc"),
    ("ie_ev", "6.1", {"vs": "li"}, "column 'ie_ev' names eV, an energy"),
    # a CV sheet's other columns, given by a slip: read as potentials of 0.05-0.1 V, "0 hits" (a chemist's trial)
    ("scan rate (V/s)", "0.1", {"vs": "li"}, "column 'scan rate (V/s)' names a scan rate, not a potential"),
    ("Ipa (µA)", "12.5", {"vs": "li"}, "column 'Ipa (µA)' names a current, not a potential"),
    ("electrolyte conc (mM)", "100", {"vs": "li"}, "names a concentration, not a potential"),  # no E symbol: a word
    ("e_v", ">12", {"vs": "li"}, "line 2, column 'e_v': the bound 12 lies beyond -3..10 V vs Li/Li+"),
    ("e_v", "> 1e400", {"vs": "li"}, "line 2, column 'e_v': the bound inf lies beyond -3..10 V vs Li/Li+"),
    ("e_v", ">>4", {"vs": "li"}, "line 2, column 'e_v': '>>4' is not a number"),
    # the file and the column first: a wrong column name, or no file, was said as a header naming no scale
    ("E1/2 (V)", "4.1", {"column": "E_ox"}, "past_measurements.column E_ox: no such column in"),
    ("E1/2 (V)", "4.1", {"file": "nowhere.csv"}, "nowhere.csv: no such file"),
])
def test_a_past_table_that_cannot_be_used_is_one_line_naming_the_field(tmp_path, labloop, write_campaign, header,
                                                                        cells, past, said):
    (tmp_path / "past.csv").write_text(f"smiles,{header}\nc1ccccc1O,{cells}\n")
    campaign = write_campaign(tmp_path, past_measurements={"file": "past.csv", "column": header, "vs": None, **past})
    for command in (("validate", campaign, "--dry-run"), ("run", campaign, "--dry-run")):
        result = labloop(*command)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert "past_measurements.file" in lines[0] and said in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "tiny.db").exists()


@pytest.mark.parametrize(("written", "said"), [
    (b"", "past.csv: the file is empty (no header line, no rows)"),  # pandas: "No columns to parse from file"
    # Excel's plain CSV on Windows: the codec's "byte 0xb5 in position 0" named no line
    ("smiles,e_v\nc1ccccc1O,4.1\nc1ccccc1N,\u00b5\n".encode("latin-1"),
     "past.csv: its text is not UTF-8 (line 3, column 'e_v': byte 0xb5): save it as \"CSV UTF-8 (comma "
     "delimited)\""),
])
def test_an_empty_or_non_utf8_past_table_is_one_line_saying_what_is_wrong(tmp_path, labloop, write_campaign, written,
                                                                          said):
    (tmp_path / "past.csv").write_bytes(written)
    campaign = write_campaign(tmp_path, past_measurements={"file": "past.csv", "column": "e_v", "vs": "li"})
    result = labloop("validate", campaign, "--dry-run")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "past_measurements.file" in result.stderr and said in result.stderr, result.stderr


def test_a_typeset_minus_sign_is_a_minus(tmp_path):
    """A value pasted from Word or Origin writes its minus as U+2212: it was "not a number"; it is read as "-",
    in a value and a bound alike."""
    from labloop.surrogate.dataset import read_table

    (tmp_path / "t.csv").write_text("smiles,e_v\nc1ccccc1O,\u22120.037\nc1ccccc1N,<\u22120.5\nCCO,4.1\n",
                                    encoding="utf-8")
    table = read_table(tmp_path / "t.csv", ["e_v"], bounds=True)
    assert table.Y[0, 0] == -0.037 and table.Y[2, 0] == 4.1 and table.bounded["e_v"] == {1: (-0.5, -1)}


def test_a_past_table_is_read_once(tmp_path, labloop, write_campaign):
    """A `run` of a store that exists reads the file no more (its journal holds what was read): an edit of the file
    since, even one that makes it unusable, changes nothing, and `validate`, `run` and `resume` say so in one
    warning line with how to use the new file (a chemist's trial: a corrected table, resumed, was ignored in
    silence)."""
    _past_table(tmp_path)
    campaign = write_campaign(tmp_path, past_measurements={"file": "past.csv", "column": "e_v", "vs": "li"},
                              budget={"max_experiments": 2})
    first = labloop("run", campaign, "--dry-run")  # no prior: nothing learns, and it says so
    assert first.returncode == 0 and "nothing learns from them: the campaign has no prior" in first.stderr
    assert "changed since" not in first.stderr
    (tmp_path / "past.csv").write_text("smiles,e_v\nCCO,4100\n")
    changed = (f"warning: {tmp_path / 'past.csv'} (past_measurements.file) changed since this campaign's journal "
               "began: the journal keeps the past measurements read when it was created; to use the file's, run the "
               "campaign with a new store (`labloop run FILE --store NEW.db`)")
    said = labloop("validate", campaign, "--dry-run")
    assert said.returncode == 0 and f"as journalled in {tmp_path / 'tiny.db'} when it was created" in said.stdout
    assert changed in said.stderr.splitlines(), said.stderr
    resumed = labloop("resume", tmp_path / "tiny.db", "--max-experiments", "3")
    assert resumed.returncode == 0 and resumed.stderr.splitlines().count(changed) == 1, resumed.stderr
    with Journal.open(tmp_path / "tiny.db", readonly=True) as journal:
        assert len(journal.past_measurements()) == 11


def test_a_backtest_starts_each_campaign_from_the_past_measurements_and_counts_its_own_hits():
    """The backtest engine, as a campaign runs (orchestrator/backtest.py run_campaign): the past molecules are never
    proposed, and the curve counts the campaign's own hits, not the past's."""
    from labloop.orchestrator.backtest import run_campaign, table_measure
    from labloop.planners import Observation
    from labloop.planners.feedback import DescriptorTable
    from labloop.planners.random_planner import RandomPlanner

    library = pd.read_csv(EXAMPLES / "library.csv")["smiles"].tolist()[:10]
    truth = {s: (4.55 if i < 6 else 3.0) for i, s in enumerate(library)}  # the 6 hits were measured before
    past = [Observation(s, {}, truth[s]) for s in library[:6]]
    run = run_campaign(RandomPlanner(library, {}), None, table_measure(truth, 0.0), seed=3, budget=4, batch=2,
                       descriptors=DescriptorTable(), score=lambda obs: float(sum(o.potential_v == 4.55 for o in obs)),
                       past=past)
    assert run.curve == [0.0, 0.0, 0.0, 0.0]  # 4 experiments, none of them a past molecule (all 6 past are hits)


def test_backtest_of_a_campaign_with_past_measurements_says_so(tmp_path, labloop, write_campaign):
    _past_table(tmp_path)
    truth = pd.read_csv(EXAMPLES / "library.csv")
    (tmp_path / "truth.csv").write_text("smiles,e_v\n" + "\n".join(
        f"{s},{ie - 1.9:.3f}" for s, ie in zip(truth["smiles"], truth["ie_ev"], strict=True)) + "\n")
    campaign = write_campaign(tmp_path, past_measurements={"file": "past.csv", "column": "e_v", "vs": "li"})
    result = labloop("backtest", campaign, "--truth", tmp_path / "truth.csv", "--column", "e_v", "--planners",
                     "random", "--seeds", "1", "--budget", "195", "--no-instruments", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["past_measurements"] == 11 and report["budget"] == 190  # 200 less the 10 measured before
    assert "each campaign starts from the campaign's 11 past measurements" in " ".join(result.stderr.split())
    # what is left to find, beside the library's hits (which count the past's too): a trial read fewer hits with
    # past data as what the past cost
    hit = [4.5 <= round(ie - 1.9, 3) <= 4.6 for ie in truth["ie_ev"]]
    assert (report["library"], report["hits_in_library"]) == (200, sum(hit))
    assert (report["proposable"], report["hits_to_find"]) == (190, sum(hit[10:]))
    shown = labloop("backtest", campaign, "--truth", tmp_path / "truth.csv", "--column", "e_v", "--planners",
                    "random", "--seeds", "1", "--budget", "2", "--no-instruments")
    assert (f"190 of the 200 molecules can be proposed (the rest were measured before: past_measurements), holding "
            f"{sum(hit[10:])} of the library's {sum(hit)} hits to find") in " ".join(shown.stdout.split())


def test_a_past_table_of_every_library_molecule_leaves_nothing_to_propose(tmp_path, labloop, write_campaign):
    """A run trained its prior, created its journal and ended at once ("every library molecule was tried"); a backtest
    ran campaigns of 0 experiments (a chemist's trial). Both are one line, exit 2, and a table leaving fewer molecules
    than the budget is warned of."""
    library = pd.read_csv(EXAMPLES / "library.csv")
    (tmp_path / "all.csv").write_text("smiles,e_v\n" + "\n".join(f"{s},4.0" for s in library["smiles"]) + "\n")
    (tmp_path / "most.csv").write_text("smiles,e_v\n" + "\n".join(f"{s},4.0" for s in library["smiles"][3:]) + "\n")
    every = write_campaign(tmp_path, name="every", past_measurements={"file": "all.csv", "column": "e_v", "vs": "li"})
    for command in (("validate", every, "--dry-run"), ("run", every, "--dry-run"),
                    ("backtest", every, "--truth", tmp_path / "all.csv", "--column", "e_v", "--planners", "random",
                     "--no-instruments")):
        result = labloop(*command)
        assert result.returncode == 2 and "nothing is left to propose" in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "every.db").exists()
    most = write_campaign(tmp_path, name="most", past_measurements={"file": "most.csv", "column": "e_v", "vs": "li"})
    said = labloop("validate", most, "--dry-run")
    assert said.returncode == 0 and "leaves 3 to propose: the campaign ends after 3 of its budget.max_experiments 6" \
        in " ".join(said.stderr.split())



def test_a_row_that_bounds_a_potential_is_learnt_as_a_failed_scans_bound_and_never_proposed(
        tmp_path, labloop, write_campaign):
    """A lab's table writes "no wave up to the solvent's limit" as ``>5.1`` (a chemist's spreadsheet: refused as "not
    a number" before). Such a row bounds its molecule's potential: journalled, learnt from by the first calibration
    as a failed scan's bound is (``n_bounds``), never proposed, counted apart; a molecule another row gives a value
    keeps the value, said; the report's CSV holds each bound in its own column."""
    library = pd.read_csv(EXAMPLES / "library.csv")
    smiles, ie = library["smiles"].tolist(), library["ie_ev"].tolist()
    # values near each molecule's, and two bounds a volt beyond what its IE says, so both tell the model something
    rows = [f"{smiles[i]},{ie[i] - 1.9:.3f}" for i in range(4)]
    rows += [f"{smiles[4]},> {ie[4] - 0.9:.2f}", f"{smiles[5]},<={ie[5] - 2.9:.2f}",
             f"{smiles[0]},>9.0"]  # the first molecule again, bounded: its value is kept
    (tmp_path / "past.csv").write_text("smiles,E1/2 (V vs Li/Li+)\n" + "\n".join(rows) + "\n")
    campaign = write_campaign(tmp_path, prior=True, shared_prior=True, surrogate=SURROGATE,
                              planner={"kind": "bayes", "batch_size": 2}, budget={"max_experiments": 2},
                              past_measurements={"file": "past.csv", "column": "E1/2 (V vs Li/Li+)"})
    result = labloop("run", campaign, "--dry-run")
    said = " ".join(result.stderr.split())
    assert result.returncode == 0, result.stderr
    assert (f"4 past measurements and 2 bounds from {tmp_path / 'past.csv'} (values vs Li/Li+; 6 of library "
            "molecules") in said
    assert "1 molecule of" in said and "has a value in one row and a bound in another (first: line 8" in said
    # its value lies below its own '>9.0': a mix-up, said with both (a chemist's trial read only "the value is used")
    assert (f"the value is used; 1 of them contradicts its bound (first: line 8 >9 beside line 2's "
            f"{float(f'{ie[0] - 1.9:.3f}'):g} V): check those rows") in said

    with Journal.open(tmp_path / "tiny.db", readonly=True) as journal:
        bounds, events, experiments = journal.past_bounds(), journal.events(), journal.experiments()
        assert len(journal.past_measurements()) == 4
    assert bounds == [(smiles[4], pytest.approx(round(ie[4] - 0.9, 2)), 1),
                      (smiles[5], pytest.approx(round(ie[5] - 2.9, 2)), -1)]
    first_calibration = next(e for e in events if e.kind == "calibration")
    assert first_calibration.data["n_measurements"] == 4 and first_calibration.data["n_bounds"] == 2
    assert len(experiments) == 2 and not {e.smiles for e in experiments} & set(smiles[:6])

    shown = json.loads(labloop("log", tmp_path / "tiny.db", "--json").stdout)
    assert shown["progress"]["past"] == {"measurements_n": 4, "bounds_n": 2, "in_library": 6, "hits": 0}
    assert "bounds" not in next(e for e in shown["events"] if e["kind"] == "past_measurements")["data"]
    header = " ".join(labloop("log", tmp_path / "tiny.db").stdout.split())
    assert "(+ 4 past measurements and 2 bounds, 0 hits)" in header
    assert labloop("report", tmp_path / "tiny.db", "-o", tmp_path / "report").returncode == 0
    written = pd.read_csv(tmp_path / "report" / "past_measurements.csv")
    bounded = written[written["potential_v_vs_li"].isna()]
    assert list(bounded["smiles"]) == smiles[4:6]
    assert bounded["above_v_vs_li"].tolist()[0] == pytest.approx(round(ie[4] - 0.9, 2))
    assert bounded["below_v_vs_li"].tolist()[1] == pytest.approx(round(ie[5] - 2.9, 2))


def test_a_bound_in_a_backtests_truth_is_refused_as_a_bound(tmp_path, labloop, write_campaign):
    """A backtest needs each molecule's true value: a ``>5.1`` there is one line saying it is a bound."""
    (tmp_path / "truth.csv").write_text("smiles,e_v\nc1ccccc1O,4.1\nc1ccccc1N,>5.1\n")
    campaign = write_campaign(tmp_path)
    result = labloop("backtest", campaign, "--truth", tmp_path / "truth.csv", "--column", "e_v", "--planners",
                     "random", "--no-instruments")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "line 3, column 'e_v': '>5.1' is not a number (a bound, not a value)" in result.stderr


def test_a_past_table_on_another_scale_than_declared_is_warned_of_by_validate_run_and_backtest(
        tmp_path, labloop, write_campaign):
    """A lab's table vs Fc+/Fc under ``E1/2 (V)``, declared ``vs: li``: validate passed it in silence and the run
    learnt from values 3.2 V off, which only the journal's calibration events said; a backtest of such a truth said
    only that no value is a hit (a chemist's trial). Each now says, in one warning line, how far the table's median
    lies from the prior's predictions and which ``vs`` undoes it; the values are still used (a warning, not a
    refusal), and a table declared rightly is not warned of."""
    library = pd.read_csv(EXAMPLES / "library.csv")
    rows = [f"{s},{ie - 1.9 - 3.2:.3f}" for s, ie in zip(library["smiles"], library["ie_ev"], strict=True)]
    (tmp_path / "past.csv").write_text("smiles,E1/2 (V)\n" + "\n".join(rows[:10]) + "\n")
    (tmp_path / "truth.csv").write_text("smiles,E1/2 (V)\n" + "\n".join(rows) + "\n")
    slipped = {"file": "past.csv", "column": "E1/2 (V)", "vs": "li"}
    said = re.compile(r"its 10 values lie a median [2-4]\.\d\d V below what the prior model predicts for their")

    run = labloop("run", write_campaign(tmp_path, prior=True, shared_prior=True, name="run", surrogate=SURROGATE,
                                        budget={"max_experiments": 2}, past_measurements=slipped), "--dry-run")
    warned = [line for line in run.stderr.splitlines() if "what the prior model predicts" in line]
    assert run.returncode == 0 and len(warned) == 1, run.stderr
    assert "past.csv, column 'E1/2 (V)': its 10" in warned[0] and "give past_measurements.vs: fc" in warned[0]
    assert "--store NEW.db" in warned[0]

    # validate against the prior model the run cached (it trains none)
    checked = labloop("validate", write_campaign(tmp_path, prior=True, shared_prior=True, name="checked",
                                                 surrogate=SURROGATE, past_measurements=slipped), "--dry-run")
    assert checked.returncode == 0 and "give past_measurements.vs: fc" in checked.stderr, checked.stderr
    assert said.search(checked.stderr), checked.stderr
    right = labloop("validate", write_campaign(tmp_path, prior=True, shared_prior=True, name="right",
                                               surrogate=SURROGATE, past_measurements={**slipped, "vs": "fc"}),
                    "--dry-run")
    assert right.returncode == 0 and "what the prior model predicts" not in right.stderr, right.stderr

    backtest = labloop("backtest", tmp_path / "right.yaml", "--truth", tmp_path / "truth.csv", "--column", "E1/2 (V)",
                       "--planners", "greedy", "--seeds", "1", "--budget", "2", "--no-instruments", "--json")
    assert backtest.returncode == 0, backtest.stderr
    warnings = json.loads(backtest.stdout)["warnings"]
    assert any("truth.csv, column 'E1/2 (V)': its 200 values" in w and w.endswith("give --truth-vs fc")
               for w in warnings), warnings
    # random alone needs no prior, but the cached one still checks the table's scale (a lab head's trial: 0 hits and
    # no word why)
    alone = labloop("backtest", tmp_path / "right.yaml", "--truth", tmp_path / "truth.csv", "--column", "E1/2 (V)",
                    "--planners", "random", "--seeds", "1", "--budget", "2", "--no-instruments", "--json")
    assert alone.returncode == 0, alone.stderr
    assert any("truth.csv, column 'E1/2 (V)': its 200 values" in w and w.endswith("give --truth-vs fc")
               for w in json.loads(alone.stdout)["warnings"]), alone.stdout


class _Predicts:
    """A model predicting 4.0 V for every molecule."""

    version = 1

    def predict(self, smiles):
        return [4.0] * len(smiles), [0.1] * len(smiles)


@pytest.mark.parametrize(("value", "offset", "quantity", "said"), [
    # within where a right table lies: the gas-phase prior's missing solvation, 0-3 V, and 0.5 V of the lab's own
    (4.5, 0.0, "oxidation_potential", None),
    (2.5, 0.0, "oxidation_potential", None),  # 1.5 V below: solvation, as every real table is (a lab head's trial)
    (5.5, 0.0, "reduction_potential", None),  # a reduction's solvation raises it
    (0.0, 0.0, "oxidation_potential", "a median 4.00 V below what the prior model predicts for their molecules, about "
                                      "cell.ferrocene_vs_li_v (3.2 V) below where a table vs Li/Li+ lies, as values vs "
                                      "Fc+/Fc taken as vs Li/Li+ would: if they are vs Fc+/Fc, give --truth-vs fc"),
    (7.2, 3.2, "oxidation_potential", "a median 3.20 V above what the prior model predicts for their molecules, about "
                                      "cell.ferrocene_vs_li_v (3.2 V) above where a table vs Li/Li+ lies, as values vs "
                                      "Li/Li+ taken as vs Fc+/Fc would: if they are vs Li/Li+, give --truth-vs li"),
    (2.5, 0.0, "reduction_potential", "a median 1.50 V below what the prior model predicts for their molecules, about "
                                      "cell.ferrocene_vs_li_v (3.2 V) below"),
    (9.0, 0.0, "oxidation_potential", "a median 5.00 V above what the prior model predicts for their molecules, where "
                                      "a table of oxidation potentials lies between 3.5 V below and 0.5 V above (the "
                                      "prior's gas-phase rule leaves out solvation): check their reference scale and "
                                      "unit (labloop takes the backtest's truth as V vs Li/Li+)"),
    (9.0, 3.2, "oxidation_potential", "unit (labloop takes the backtest's truth as V vs Fc+/Fc, adding "
                                      "cell.ferrocene_vs_li_v, as declared)"),
])
def test_scale_slip_names_the_vs_that_undoes_a_mix_up(tmp_path, value, offset, quantity, said):
    from labloop.orchestrator.potential_table import scale_slip

    slip = scale_slip(tmp_path / "t.csv", "e", {"CCO": value, "CCN": value, "CCC": 4.0}, _Predicts(),
                      offset_v=offset, ferrocene_vs_li_v=3.2, quantity=quantity)
    assert slip == said if said is None else said in slip


def test_a_salt_ion_or_stereoisomer_of_a_library_molecule_is_said_in_past_tables_and_truths(tmp_path, labloop,
                                                                                           write_campaign):
    """A lab records the form it made (the HCl salt, the E isomer, the sodium salt) while the library lists the
    parent: they met on nothing, so the parent was proposed first, as if never measured, and a backtest's truth gave
    it no value, all in silence (a chemist's trial). Each table now says how many, the first, and what follows; a
    plain molecule the library lacks is no such form."""
    from labloop.orchestrator.config.campaign import load_campaign
    from labloop.orchestrator.potential_table import read_past

    library = pd.read_csv(EXAMPLES / "library.csv")["smiles"].tolist()
    assert "O=C(C=Cc1ccc(O)cc1)c1ccc[nH]1" in library
    outside = next(s for s in pd.read_csv(DATA, nrows=2000)["smiles"]
                   if _canonical(s) not in {_canonical(m) for m in library} and "." not in s)
    # library[1] as itself and as a salt: the salt is a molecule of its own beside it, no form to warn of (a review)
    rows = [f"{library[0]}.Cl,4.1", "O=C(/C=C/c1ccc(O)cc1)c1ccc[nH]1,4.2", f"{library[1]},4.3",
            f"{library[2]}.[Na+].[Cl-],4.4", f"{outside},4.5", f"{library[1]}.Cl,4.31"]
    (tmp_path / "past.csv").write_text("smiles,e_v\n" + "\n".join(rows) + "\n")
    campaign = load_campaign(write_campaign(tmp_path, past_measurements={"file": "past.csv", "column": "e_v",
                                                                          "vs": "li"}))
    past = read_past(campaign, library)
    assert past is not None and past.in_library == 1
    (said,) = [note for note in past.notes if "salt, ion or stereoisomer" in note]
    assert said.startswith("3 molecules of ") and said.endswith(
        f" are a salt, ion or stereoisomer of a library molecule ('{library[0]}.Cl' of '{library[0]}' and 2 more), "
        "not that molecule: learnt from as molecules of their own, and the library's may still be proposed; where the "
        "molecule measured was the library's, write its SMILES as the library does"), said
    truth = tmp_path / "truth.csv"
    truth.write_text("smiles,e_v\n" + "\n".join([*rows, *(f"{s},4.{i}" for i, s in enumerate(library[3:9]))]) + "\n")
    result = labloop("backtest", write_campaign(tmp_path, name="plain"), "--truth", truth, "--column", "e_v",
                     "--truth-vs", "li", "--planners", "random", "--seeds", "1", "--budget", "1", "--no-instruments")
    assert result.returncode == 0, result.stderr
    assert (f"warning: 3 molecules of {truth} are a salt, ion or stereoisomer of a library molecule "
            f"('{library[0]}.Cl' of '{library[0]}' and 2 more), not that molecule: they give it no true value; where "
            "the molecule measured was the library's, write its SMILES as the library does"
            in result.stderr.splitlines()), result.stderr


@pytest.mark.slow
def test_a_first_batch_the_past_calibrated_is_not_said_predicted_before_any_measurement(tmp_path, write_campaign):
    """The line (and alert) asking to approve a first batch said "predicted 4.50 V before any measurement" over a model
    calibrated on the lab's 166 past measurements (a chemist's trial); `labloop log` already marks such a batch
    calibrated. The held batch's predictions are said without it."""
    import signal
    import subprocess
    import sys
    import time

    _past_table(tmp_path)
    campaign = write_campaign(tmp_path, prior=True, shared_prior=True, surrogate=SURROGATE,
                              planner={"kind": "greedy", "batch_size": 2, "approve": True},
                              past_measurements={"file": "past.csv", "column": "e_v", "vs": "li"})
    run = subprocess.Popen([sys.executable, "-m", "labloop.orchestrator.cli.main", "run", str(campaign), "--dry-run"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300  # a failure's deadline, not a measure of speed
        message = None
        while message is None:
            assert run.poll() is None, run.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no batch awaiting approval after 300 s"
            if (tmp_path / "tiny.db").exists():
                with Journal.open(tmp_path / "tiny.db", readonly=True) as journal:
                    message = next((e.message for e in journal.events() if e.kind == "awaiting_approval"), None)
            time.sleep(0.1)
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait()
        run.stderr.close()
    assert re.search(r"\d+: \S+, predicted \d\.\d\d V", message), message
    assert "before any measurement" not in message, message


def test_a_backtest_whose_truth_is_its_past_measurements_says_to_split_the_table(tmp_path, labloop, write_campaign):
    """A lab's one table as both the truth and the past measurements: "holds every one of the 10 library molecules"
    read as wrong beside a library of 200, with no way out said (a chemist's trial). It names the truth table and
    says to split the lab's table."""
    _past_table(tmp_path)
    campaign = write_campaign(tmp_path, past_measurements={"file": "past.csv", "column": "e_v", "vs": "li"})
    result = labloop("backtest", campaign, "--truth", tmp_path / "past.csv", "--column", "e_v", "--truth-vs", "li",
                     "--planners", "random", "--seeds", "1", "--budget", "2", "--no-instruments")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].endswith(f"past.csv holds every one of the 10 library molecules with a true value in "
                             f"{tmp_path / 'past.csv'} to choose from: nothing is left to propose: give the backtest "
                             "a truth table of other molecules than the past measurements (split the lab's table in "
                             "two)"), lines[0]


def test_a_scale_written_as_its_couple_is_that_scale(tmp_path, labloop, write_campaign):
    """``vs: Fc+/Fc``, the spelling labloop writes everywhere, was refused as "'fc+/fc' is not one of li, fc" (a
    chemist's trial); the couple either way round, in any case and spacing, is the scale, for a campaign's
    past measurements and a backtest's ``--truth-vs``; anything else is refused as written."""
    from labloop.orchestrator.config.campaign import load_campaign

    _past_table(tmp_path)
    for written, scale in (("Fc+/Fc", "fc"), ("fc/FC+", "fc"), ("Li / Li+", "li"), ("Li+/Li", "li"), ("LI", "li")):
        campaign = load_campaign(write_campaign(tmp_path, past_measurements={"file": "past.csv", "column": "e_v",
                                                                              "vs": written}))
        assert campaign.past_measurements is not None and campaign.past_measurements.vs == scale, written
    refused = labloop("validate", write_campaign(tmp_path, past_measurements={"file": "past.csv", "column": "e_v",
                                                                              "vs": "Ag/AgCl"}))
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "past_measurements.vs" in refused.stderr and "'Ag/AgCl'" in refused.stderr, refused.stderr
    campaign = write_campaign(tmp_path)
    accepted = labloop("backtest", campaign, "--truth", tmp_path / "nowhere.csv", "--column", "e_v", "--truth-vs",
                       "Fc+/Fc", "--planners", "random")  # the option is taken: the missing table is what is said
    assert accepted.returncode == 2 and "nowhere.csv: no such file" in accepted.stderr, accepted.stderr
    wrong = labloop("backtest", campaign, "--truth", tmp_path / "past.csv", "--column", "e_v", "--truth-vs", "SCE",
                    "--planners", "random")
    assert wrong.returncode == 2, wrong.stderr
    assert "--truth-vs" in wrong.stderr and "'SCE' is neither li (V vs Li/Li+) nor fc (V vs Fc+/Fc)" in wrong.stderr


def test_what_is_said_of_a_past_table_is_journalled_and_shown_by_log_and_the_report(tmp_path, labloop,
                                                                                   write_campaign):
    """A table vs Fc+/Fc with a few rows vs Li/Li+ among them (7-8 V once moved, beyond any electrolyte): said once
    on the terminal when the journal was created and nowhere after, so a PI reading the report of a model that
    erred by 0.67 V could not see why (a chemist's trial). The values outside the campaign's electrolyte window are
    said with their first line; the two groups are said as declared (vs Fc+/Fc, not "as V vs Li/Li+"); both are in
    the journal, ``log`` and the report."""
    library = pd.read_csv(EXAMPLES / "library.csv")
    rows = [f"{s},{ie - 1.9 - 3.2:.3f}" for s, ie in zip(library["smiles"][:40], library["ie_ev"][:40], strict=True)]
    for i in range(34, 40):  # the last six rows: vs Li/Li+, typed into the column vs Fc+/Fc
        smiles, ie = library["smiles"][i], library["ie_ev"][i]
        rows[i] = f"{smiles},{ie - 1.9:.3f}"
    (tmp_path / "past.csv").write_text("smiles,E1/2 (V vs Fc+/Fc)\n" + "\n".join(rows) + "\n")
    campaign = write_campaign(tmp_path, budget={"max_experiments": 1},
                              past_measurements={"file": "past.csv", "column": "E1/2 (V vs Fc+/Fc)", "vs": "fc"})
    window = [line for line in labloop("validate", campaign, "--dry-run").stderr.splitlines()
              if "electrolyte_window_v" in line]
    assert len(window) == 1, window
    low, high = 0.8, 5.5  # the default cell.electrolyte_window_v
    moved = [round(ie - 1.9 + (3.2 if i >= 34 else 0.0), 3) for i, ie in enumerate(library["ie_ev"][:40])]
    outside = [i for i, v in enumerate(moved) if not low <= v <= high]
    assert outside and set(range(34, 40)) <= set(outside)
    assert (f"{len(outside)} values of {tmp_path / 'past.csv'}, column 'E1/2 (V vs Fc+/Fc)', lie outside the "
            f"campaign's cell.electrolyte_window_v 0.8..5.5 V vs Li/Li+ (first: line {outside[0] + 2}, ") in window[0]
    assert window[0].endswith("check their reference scale and unit (values vs Li/Li+ among them, declared vs "
                              "Fc+/Fc?)")
    run = labloop("run", campaign, "--dry-run")
    assert run.returncode == 0, run.stderr
    groups = next(line for line in run.stderr.splitlines() if "fall in two groups" in line)
    assert groups.endswith("since labloop takes past measurements as V vs Fc+/Fc, as past_measurements.vs: fc "
                           "declares"), groups
    with Journal.open(tmp_path / "tiny.db", readonly=True) as journal:
        notes = next(e for e in journal.events() if e.kind == "past_measurements").data["notes"]
    assert any("electrolyte_window_v" in n for n in notes) and any("fall in two groups" in n for n in notes)
    shown = " ".join(labloop("log", tmp_path / "tiny.db").stdout.replace("│", " ").split())  # the table's words
    assert "said of the past measurements when they were read" in shown
    said = "lie outside the campaign's cell.electrolyte_window_v 0.8..5.5 V vs Li/Li+"
    assert f"{len(outside)} values of" in shown and said in shown, shown  # (the table folds the file's path)
    assert labloop("report", tmp_path / "tiny.db", "-o", tmp_path / "report").returncode == 0
    page = (tmp_path / "report" / "index.html").read_text()
    assert "Said of their table when it was read:" in page and "lie outside the campaign&#x27;s" in page
    assert "(values vs Fc+/Fc, 3.2 V added to each; 40 of library molecules" in page  # how they were put on Li/Li+


def test_a_value_on_the_wrong_side_of_its_molecules_bound_is_said_and_one_on_the_right_side_is_not(tmp_path):
    """'>1.4' (no wave up to 1.4 V) beside 1.0 for one molecule is a mix-up; '>4.0' beside 5.0 is one fact twice."""
    from labloop.orchestrator.potential_table import PAST_WORDS, read_truth

    (tmp_path / "agree.csv").write_text("smiles,e_v\nCCO,5.0\nCCO,>4.0\nCCN,4.1\n")
    (tmp_path / "clash.csv").write_text("smiles,e_v\nCCO,5.0\nCCO,>4.0\nc1ccccc1O,1.0\nc1ccccc1O,>1.4\n")
    agree = read_truth(tmp_path / "agree.csv", "e_v", truth_vs="li", words=PAST_WORDS, bounds=True).notes
    assert any("the value is used" in n for n in agree) and not any("contradict" in n for n in agree), agree
    clash = read_truth(tmp_path / "clash.csv", "e_v", truth_vs="li", words=PAST_WORDS, bounds=True).notes
    assert any(n.endswith("the value is used; 1 of them contradicts its bound (first: line 5 >1.4 beside line 4's "
                          "1 V): check those rows") for n in clash), clash
