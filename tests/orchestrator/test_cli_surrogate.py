"""`labloop surrogate ...` end to end: the happy paths write what they promise, every error path exits 2
with one line and writes nothing. One test goes through the real console entry point in a subprocess;
the rest call the same `main()` in-process, which keeps TensorFlow's start-up to once per session."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from rdkit import Chem

from labloop.core.files import FILE_MODE


def test_console_entry_point_exits_2_on_bad_input(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "labloop.orchestrator.cli.main", "surrogate", "train",
                           str(tmp_path / "nope.csv"), "-t", "ie_ev", "-o", str(tmp_path / "m")],
                          capture_output=True, text=True, timeout=120)
    assert_one_line_error(proc, "nope.csv")
    assert list(tmp_path.iterdir()) == []


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0]


def test_train_writes_a_model_and_reports_holdout(labloop, small_csv, tmp_path):
    out = tmp_path / "model"
    proc = labloop("surrogate", "train", small_csv, "-t", "ie_ev", "-t", "ea_ev", "-o", out, "--folds", "2",
                   "--epochs", "2", "--holdout", "0.2", "--no-cache")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["targets"] == ["ie_ev", "ea_ev"] and manifest["folds"] == 2
    assert manifest["metrics"]["holdout"]["ie_ev"]["n"] == 80
    assert "held-out 20%" in proc.stdout
    # 320 training rows keep 64 for the calibration (a fifth: fewer than 500), which is said, with the units
    saved = next(line for line in proc.stdout.splitlines() if line.startswith("saved 2-member"))
    assert "(sigma calibration on 64 held-out rows: ie_ev: sigma = " in saved and "; ea_ev: sigma = " in saved, saved
    assert saved.count("^2) eV, at least ") == 2 and saved.endswith(" eV)"), saved
    assert manifest["n_calibration"] == 64
    assert ("warning: the sigma calibration rests on 64 held-out rows, fewer than 100: too few to trust its factor "
            "and floor (train on 500 molecules or more for a 100-row slice)") in proc.stderr
    # a folder that holds a model, or other files, is refused before the training, not replaced after it
    (out / "README.txt").write_text("notes on this model")
    for folder, needle in ((out, "already holds a model: give another folder, or --replace"),
                           (tmp_path, "holds files and no labloop model")):
        again = labloop("surrogate", "train", small_csv, "-t", "ie_ev", "-o", folder, "--folds", "2", "--epochs", "1")
        assert again.returncode == 2 and needle in again.stderr and len(again.stderr.strip().splitlines()) == 1
        assert "featurise" not in again.stderr + again.stdout  # nothing was trained
    assert (out / "README.txt").read_text() == "notes on this model"
    replaced = labloop("surrogate", "train", small_csv, "-t", "ie_ev", "-o", out, "--folds", "2", "--epochs", "1",
                       "--replace", "--no-cache")
    assert replaced.returncode == 0, replaced.stderr
    assert json.loads((out / "manifest.json").read_text())["targets"] == ["ie_ev"]


def test_rows_trains_on_the_campaigns_seeded_slice_and_says_the_files_own_lines(labloop, ocelot, tmp_path):
    """``--rows N``: a quick model on a large table took a CSV sliced by hand, whose line numbers were not the
    file's. The slice is a campaign's ``prior.rows`` slice of the seed, said before the training and kept in the
    manifest; its invalid SMILES and repeats are said by the lines of the file the user gave."""
    from labloop.surrogate.dataset import seeded_rows

    table = ocelot.head(120)[["smiles", "ie_ev", "ea_ev"]].copy()
    table.loc[::4, "smiles"] = "not-a-smiles"  # rows 0, 4, 8, ...: lines 2, 6, 10, ...
    data = tmp_path / "big.csv"
    table.to_csv(data, index=False)
    kept = seeded_rows(len(table), 60, 7)
    bad_lines = [int(r) + 2 for r in kept if r % 4 == 0]
    assert bad_lines and len(bad_lines) < 30, "seed 7 keeps some invalid rows and not all"
    proc = labloop("surrogate", "train", data, "-t", "ie_ev", "-o", tmp_path / "m", "--rows", "60", "--seed", "7",
                   "--folds", "2", "--epochs", "1", "--no-cache")
    assert proc.returncode == 0, proc.stderr
    assert f"training on the seeded slice of 60 of the 120 rows of {data} (--seed 7)" in proc.stderr
    said = ", ".join(f"line {line} 'not-a-smiles'" for line in bad_lines[:5])
    assert f"skipped {len(bad_lines)} invalid SMILES in {data}: {said}" in proc.stderr, proc.stderr
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["training_data"]["slice"] == {"rows": 60, "of": 120, "seed": 7}
    assert manifest["training_data"]["invalid_smiles"] == len(bad_lines)
    assert manifest["n_train"] + manifest["n_calibration"] == 60 - len(bad_lines)
    # the sweep's too; it also counted the rows that are no molecule as molecules, without a word
    swept = labloop("surrogate", "sweep", data, "-t", "ie_ev", "--rows", "60", "--seed", "7", "--preset", "fast",
                    "--epochs", "1", "--radii", "1", "--bits", "256", "--json")
    assert swept.returncode == 0, swept.stderr
    assert f"skipped {len(bad_lines)} invalid SMILES in {data}: {said}" in swept.stderr, swept.stderr
    assert (f"on {60 - len(bad_lines)} molecules from the seeded slice of 60 of the 120 rows of {data} (--seed 7)"
            in swept.stderr)

    whole = labloop("surrogate", "train", data, "-t", "ie_ev", "-o", tmp_path / "w", "--rows", "500", "--folds", "2",
                    "--epochs", "1", "--no-cache")  # more rows than the table: the whole table, no slice said
    assert whole.returncode == 0 and "seeded slice" not in whole.stderr, whole.stderr
    assert f"warning: --rows 500: {data} has 120 rows, all of them trained on" in whole.stderr
    assert "slice" not in json.loads((tmp_path / "w" / "manifest.json").read_text())["training_data"]
    # a refused --output is said alone, not after "training on ..." (a newcomer read it as a training begun)
    again = labloop("surrogate", "train", data, "-t", "ie_ev", "-o", tmp_path / "m", "--rows", "60", "--folds", "2")
    assert again.returncode == 2 and again.stderr.startswith("error: --output"), again.stderr


def test_a_slice_with_no_value_in_a_target_column_is_refused_before_training(labloop, ocelot, tmp_path):
    """A sparse column (two values in 200 rows) can have none in a slice: the model would predict NaN for it."""
    from labloop.surrogate.dataset import seeded_rows

    table = ocelot.head(200)[["smiles", "ie_ev"]].assign(homo=np.nan)
    table.loc[[10, 150], "homo"] = -5.5
    data = tmp_path / "sparse.csv"
    table.to_csv(data, index=False)
    seed = next(s for s in range(100) if not {10, 150} & set(seeded_rows(200, 20, s).tolist()))
    for command in (["train", data, "-o", tmp_path / "m"], ["sweep", data, "--radii", "1", "--bits", "256"]):
        proc = labloop("surrogate", *command, "-t", "ie_ev", "-t", "homo", "--rows", "20", "--seed", str(seed),
                       "--epochs", "1")
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr == (f"error: --rows 20: the seeded slice of 20 of the 200 rows of {data} (--seed {seed}) "
                               "has no value in column 'homo': give more rows, or no --rows for the whole table\n")
    assert not (tmp_path / "m").exists()


def test_stereoisomers_whose_values_disagree_are_not_called_a_mix_up():
    """An E and a Z isomer 0.3 eV apart were warned of as "1 repeated molecule ... check those rows for a mix-up"
    (a review): isomers can differ so, and the line says they are isomers, merged because the fingerprint cannot
    tell them apart."""
    from labloop.orchestrator.console import repeats_said
    from labloop.surrogate.repeats import merged_by_molecule

    smiles = ["CCO", "C/C=C/c1ccccc1", r"C/C=C\c1ccccc1"]
    _, _, repeats = merged_by_molecule(smiles, np.arange(3), np.array([[7.0], [8.0], [8.3]]))
    said = repeats_said(repeats, "lab.csv", ["ie_ev"], line_of=lambda row: row + 2)
    assert said[-1] == ("1 merged molecule of lab.csv has values more than 0.1 eV apart (first: lines 3, 4, "
                        "stereoisomers of one molecule, ie_ev spread 0.300 eV): isomers can differ so, but the "
                        "surrogate's fingerprint does not tell them apart and their mean is trained on; if they should "
                        "not differ, check those rows for a mix-up (a reference electrode, a unit, a sign, another "
                        "molecule's row)")


def test_train_merges_a_molecule_given_twice_and_says_so(labloop, ocelot, tmp_path):
    """A table that gives molecules twice (once spelt another way): trained on each molecule once, with the
    mean of its values, and said in one line with the first repeat's line; the repeats were trained as new
    molecules without a word, landing in one member's training folds and another's validation fold. An E and a Z
    isomer, one input to the fingerprint, were two molecules too (left open by a lab's trial): merged, and said
    in a line of their own."""
    table = ocelot.head(200)[["smiles", "ie_ev", "ea_ev"]]
    spelling = Chem.MolToSmiles(Chem.MolFromSmiles(table.smiles.iloc[6]), rootedAtAtom=3)
    assert spelling != table.smiles.iloc[6]
    respelt = table.iloc[[6]].assign(smiles=spelling, ie_ev=table.ie_ev.iloc[6] + 1.0)
    data = tmp_path / "repeats.csv"
    isomers = pd.DataFrame({"smiles": ["C/C=C/c1ccccc1", r"C/C=C\c1ccccc1"], "ie_ev": [7.9, 8.0],
                            "ea_ev": [0.1, 0.12]})  # E and Z beta-methylstyrene: lines 204, 205
    pd.concat([table, respelt, table.iloc[[9]], isomers]).to_csv(data, index=False)
    proc = labloop("surrogate", "train", data, "-t", "ie_ev", "-t", "ea_ev", "-o", tmp_path / "m", "--folds", "2",
                   "--epochs", "1", "--no-cache")
    assert proc.returncode == 0, proc.stderr
    assert (f"warning: 2 rows of {data} repeat the molecule of an earlier row, compared as canonical SMILES (first: "
            "line 202, the molecule of line 8): each molecule is trained on once, with the mean of its rows' values "
            "per target") in proc.stderr
    # the respelt row's ie_ev is 1 eV off (the repeat of line 11 agrees): averaged, and now said
    assert (f"warning: 1 repeated molecule of {data} has values more than 0.1 eV apart (first: lines 8, 202, ie_ev "
            "spread 1.000 eV), more than a measurement repeats by, and their mean is trained on: check those rows "
            "for a mix-up") in proc.stderr
    assert (f"warning: 1 row of {data} holds a stereoisomer of an earlier row's molecule (first: line 205, an isomer "
            "of line 204's), which the surrogate's fingerprint does not tell apart: stereoisomers are trained on as "
            "one molecule, with the mean of their rows' values per target") in proc.stderr
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["training_data"]["repeated_molecules_merged"] == 2
    assert manifest["training_data"]["stereoisomers_merged"] == 1
    assert manifest["n_train"] + manifest["n_calibration"] == 201
    swept = labloop("surrogate", "sweep", data, "-t", "ie_ev", "--preset", "fast", "--epochs", "1", "--radii", "1",
                    "--bits", "256", "--json")  # the sweep's folds too: 201 molecules, not 204
    assert swept.returncode == 0 and "on 201 molecules" in swept.stderr, swept.stderr
    assert "warning: 2 rows of" in swept.stderr and "warning: 1 repeated molecule" in swept.stderr


def test_predict_with_a_cache_folder_that_cannot_be_written_predicts_without_it(labloop, tiny_model_dir, tmp_path,
                                                                               monkeypatch):
    """An unwritable HOME or LABLOOP_CACHE_DIR ended predict with "Permission denied (/nonexistent)", naming no cache
    (a packaging trial); the fingerprint cache costs only its speed-up there, and so does the prediction cache now.
    /proc takes no folder, even root's."""
    monkeypatch.setenv("LABLOOP_CACHE_DIR", "/proc/labloop-test-cache")
    lib = tmp_path / "lib.csv"
    pd.DataFrame({"smiles": ["c1ccccc1", "CCOC(=O)c1ccccc1"]}).to_csv(lib, index=False)
    out = tmp_path / "pred.csv"
    proc = labloop("surrogate", "predict", tiny_model_dir, lib, "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert pd.read_csv(out).smiles.tolist() == ["c1ccccc1", "CCOC(=O)c1ccccc1"]
    said = " ".join(proc.stderr.split())
    assert ("warning: the prediction cache /proc/labloop-test-cache/predictions cannot be written (" in said
            and "predicting without it, as --no-cache does" in said), said


def test_predict_evaluate_screen(labloop, tiny_model_dir, small_csv, tmp_path):
    lib = tmp_path / "lib.csv"
    pd.DataFrame({"smiles": ["c1ccccc1", "C1CC", "CCOC(=O)c1ccccc1", "not-a-smiles"]}).to_csv(lib, index=False)
    out = tmp_path / "pred.csv"
    proc = labloop("surrogate", "predict", tiny_model_dir, lib, "-o", out, "--no-cache")
    assert proc.returncode == 0, proc.stderr
    pred = pd.read_csv(out)
    assert list(pred.columns) == ["smiles", "ie_ev_mean", "ie_ev_std", "ea_ev_mean", "ea_ev_std"]
    assert out.stat().st_mode & 0o777 == FILE_MODE != 0o600  # readable by the lab as any file it writes
    assert pred.smiles.tolist() == ["c1ccccc1", "CCOC(=O)c1ccccc1"]
    assert (pred.ie_ev_std > 0).all()
    assert "skipped 2 invalid SMILES" in proc.stderr and "line 3 'C1CC'" in proc.stderr

    proc = labloop("surrogate", "evaluate", tiny_model_dir, small_csv, "--json", "--no-cache")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    for target in ("ie_ev", "ea_ev"):
        assert set(report["metrics"][target]) >= {"mae", "r2", "error_std", "coverage95"}
        assert report["metrics"][target]["n"] == 400

    hits = tmp_path / "hits.csv"
    proc = labloop("surrogate", "screen", tiny_model_dir, small_csv, "--solvent", "acn", "--collector", "al",
                   "--role", "cathode", "-o", hits, "--all", "--window", "0.44", "9.0", "--no-cache")
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(hits)
    assert len(table) == 400 and {"potential_v", "sigma_v", "margin_v", "passes"} <= set(table.columns)
    passing = table[table.passes]
    assert (passing.margin_v >= 0).all() and (table[~table.passes].margin_v < 0).all()
    assert passing.potential_v.is_monotonic_decreasing

    bracketed = tmp_path / "bracketed.csv"  # bracket atoms are SMILES, not console markup
    pd.DataFrame({"smiles": ["c1cc[nH]c1", "c1ccc2[nH]ccc2c1"]}).to_csv(bracketed, index=False)
    proc = labloop("surrogate", "screen", tiny_model_dir, bracketed, "--window", "0", "20", "--collector", "none",
                   "-o", tmp_path / "bracketed-hits.csv", "--no-cache")
    assert proc.returncode == 0 and "2 of 2 molecules pass" in proc.stdout, proc.stderr
    assert "c1cc[nH]c1" in proc.stdout and "c1ccc2[nH]ccc2c1" in proc.stdout
    assert "potential_v_vs_" not in proc.stdout  # vs Li/Li+ alone: nothing to explain
    # vs Fc: the column's Fc+/Fc is the absolute scale's, 0.47 V from where a campaign puts it (an electrochemist's
    # trial read the same molecule "vs Fc" 0.47 V apart), and the summary says so
    proc = labloop("surrogate", "screen", tiny_model_dir, bracketed, "--window", "0", "20", "--collector", "none",
                   "--reference", "fc", "-o", tmp_path / "vs-fc.csv", "--no-cache")
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(tmp_path / "vs-fc.csv")
    assert (table.potential_v - table.potential_v_vs_fc).round(3).eq(3.67).all()
    assert ("potential_v_vs_fc puts Fc+/Fc 3.67 V above Li/Li+ (5.07 V on the absolute scale): an estimate to rank by, "
            "not a campaign's scale, which puts Fc+/Fc at its cell.ferrocene_vs_li_v") in " ".join(proc.stdout.split())


def test_a_smi_librarys_names_are_kept_by_predict_and_screen(labloop, tiny_model_dir, tmp_path):
    """A .smi line is SMILES then the molecule's name; predict and screen dropped the names, so a data
    scientist had to join the outputs back to the library by SMILES (which predict does not echo for invalid
    rows). A name is the rest of the line; a line without one gets an empty name."""
    lib = tmp_path / "lib.smi"
    lib.write_text("smiles name\nc1ccccc1 benzene\nC1CC broken ring\nCCOC(=O)c1ccccc1 ethyl benzoate\n"
                   "c1cc[nH]c1\nc1ccc2[nH]ccc2c1\tindole [NH]\n")
    out = tmp_path / "pred.csv"
    proc = labloop("surrogate", "predict", tiny_model_dir, lib, "-o", out, "--no-cache")
    assert proc.returncode == 0, proc.stderr
    pred = pd.read_csv(out, keep_default_na=False)
    assert list(pred.columns) == ["smiles", "name", "ie_ev_mean", "ie_ev_std", "ea_ev_mean", "ea_ev_std"]
    assert list(zip(pred.smiles, pred.name, strict=True)) == [
        ("c1ccccc1", "benzene"), ("CCOC(=O)c1ccccc1", "ethyl benzoate"), ("c1cc[nH]c1", ""),
        ("c1ccc2[nH]ccc2c1", "indole [NH]")]
    assert f"skipped 1 invalid SMILES in {lib}: line 3 'C1CC'" in proc.stderr  # its line, the header counted
    headerless = tmp_path / "bare.smi"  # was said one line too far on
    headerless.write_text("c1ccccc1 benzene\nC1CC broken ring\n")
    proc = labloop("surrogate", "predict", tiny_model_dir, headerless, "-o", tmp_path / "bare.csv", "--no-cache")
    assert f"skipped 1 invalid SMILES in {headerless}: line 2 'C1CC'" in proc.stderr, proc.stderr

    commented = tmp_path / "commented.smi"  # blank lines and comments were each an invalid SMILES
    commented.write_text("# a library\nsmiles name\n\nc1ccccc1 benzene\n# broken:\nC1CC broken ring\n\nCCO\n")
    proc = labloop("surrogate", "predict", tiny_model_dir, commented, "-o", tmp_path / "c.csv", "--no-cache")
    assert proc.returncode == 0 and f"skipped 1 invalid SMILES in {commented}: line 6 'C1CC'" in proc.stderr, \
        proc.stderr
    assert pd.read_csv(tmp_path / "c.csv").smiles.tolist() == ["c1ccccc1", "CCO"]
    # a CSV library's name column too (a lab's trial: its invalid rows left out, the rows could not be joined back)
    csv = tmp_path / "lib.csv"
    csv.write_text("Name,SMILES\nbenzene,c1ccccc1\nbroken ring,C1CC\nethyl benzoate,CCOC(=O)c1ccccc1\n")
    proc = labloop("surrogate", "predict", tiny_model_dir, csv, "-o", tmp_path / "csv.csv", "--no-cache")
    assert proc.returncode == 0, proc.stderr
    named = pd.read_csv(tmp_path / "csv.csv", keep_default_na=False)
    assert list(zip(named.smiles, named.name, strict=True)) == [("c1ccccc1", "benzene"),
                                                                 ("CCOC(=O)c1ccccc1", "ethyl benzoate")]

    hits = tmp_path / "hits.csv"
    proc = labloop("surrogate", "screen", tiny_model_dir, lib, "--window", "0", "20", "--collector", "none",
                   "-o", hits, "--no-cache")
    assert proc.returncode == 0 and "4 of 4 molecules pass" in proc.stdout, proc.stderr
    table = pd.read_csv(hits, keep_default_na=False)
    assert list(table.columns[:3]) == ["smiles", "name", "potential_v"]
    assert dict(zip(table.smiles, table.name, strict=True)) == dict(zip(pred.smiles, pred.name, strict=True))
    assert "ethyl benzoate" in proc.stdout and "indole [NH]" in proc.stdout  # the hits table names them too


def test_names_that_start_like_formulas_are_written_as_text(labloop, tiny_model_dir, tmp_path):
    """A library's names are anyone's text: predict and screen wrote ``=HYPERLINK(...)`` and ``+cmd|...`` as they
    came, which a spreadsheet runs when a chemist opens the CSV (a security trial); they get a leading ' as the
    report's CSVs' do, and numbers, a negative one too, stay numbers."""
    lib = tmp_path / "lib.smi"
    lib.write_text('smiles name\nc1ccccc1 =HYPERLINK("http://x/","y")\nCCO +cmd|x!A0\nCCN @SUM(1)\nCCC propane\n')
    for command, extra in (("predict", ()), ("screen", ("--window", "-50", "50", "--collector", "none"))):
        out = tmp_path / f"{command}.csv"
        proc = labloop("surrogate", command, tiny_model_dir, lib, *extra, "-o", out, "--no-cache")
        assert proc.returncode == 0, proc.stderr
        table = pd.read_csv(out, keep_default_na=False)
        assert dict(zip(table.smiles, table.name, strict=True)) == {
            "c1ccccc1": "'=HYPERLINK(\"http://x/\",\"y\")", "CCO": "'+cmd|x!A0", "CCN": "'@SUM(1)", "CCC": "propane"}
        numbers = table.drop(columns=["smiles", "name", "passes"], errors="ignore")  # screen's passes: True/False
        assert all(pd.api.types.is_float_dtype(numbers[c]) for c in numbers.columns), table.dtypes


@pytest.mark.parametrize(("text", "said"), [
    ("smiles\n", "no molecule under its header: nothing to predict, nothing written"),
    ("smiles\nxx\nC1CC\n", "none of its 2 rows holds a valid SMILES in column 'smiles': nothing to predict, nothing "
                           "written"),
], ids=["header only", "no valid SMILES"])
def test_a_library_with_nothing_to_predict_is_refused_by_predict_and_screen(labloop, tiny_model_dir, tmp_path,
                                                                           text, said):
    """predict wrote "0 predictions" and screen "0 of 0 molecules pass", each with exit 0, of a library a campaign
    refuses (a trial): one line, exit 2, no file."""
    lib = tmp_path / "lib.csv"
    lib.write_text(text)
    for command in ("predict", "screen"):
        out = tmp_path / f"{command}.csv"
        proc = labloop("surrogate", command, tiny_model_dir, lib, "-o", out, "--no-cache")
        assert proc.returncode == 2 and proc.stderr.splitlines()[-1] == f"error: {lib}: {said}", proc.stderr
        assert not out.exists()


def test_the_summary_lines_stay_whole_when_piped_and_keep_a_paths_brackets(labloop, tiny_model_dir, tmp_path):
    """Piped (`| cat`, `| grep wrote`), screen's summary (the default window's source alone is ~150 characters)
    was folded at the console's width into two lines, and a folder `runs[old]` was shown as `runs` (rich markup)."""
    lib = tmp_path / "lib.csv"
    pd.DataFrame({"smiles": ["c1ccccc1", "CCOC(=O)c1ccccc1", "C1CC"]}).to_csv(lib, index=False)
    folder = tmp_path / "runs[old]" / "a-folder-name-long-enough-to-take-the-line-past-two-hundred-columns"
    folder.mkdir(parents=True)
    proc = labloop("surrogate", "screen", tiny_model_dir, lib, "-o", folder / "hits.csv", "--no-cache")
    assert proc.returncode == 0, proc.stderr
    summary = proc.stdout.splitlines()[0]
    assert (" of 2 molecules pass: cathode (E_ox = IE - 1.40 V vs Li/Li+ of gas-phase IE: without solvation an "
            "oxidation potential reads about 1.4-2.7 V too high), window 0.44-4.70 V vs Li/Li+ (acetonitrile: ") \
        in summary, proc.stdout
    assert len(summary) > 200 and summary.endswith(f"; wrote {folder / 'hits.csv'}"), proc.stdout
    # an anolyte screen names its own rule (it said nothing of EA, or of the gas-phase EA's reading volts low)
    proc = labloop("surrogate", "screen", tiny_model_dir, lib, "--role", "anode", "-o", folder / "a.csv", "--no-cache")
    assert proc.returncode == 0, proc.stderr
    assert (" molecules pass: anode (E_red = EA - 1.40 V vs Li/Li+ of gas-phase EA: without solvation a reduction "
            "potential reads about 1.4-2.7 V too low), window ") in proc.stdout.splitlines()[0], proc.stdout
    proc = labloop("surrogate", "predict", tiny_model_dir, lib, "-o", folder / "p.csv", "--no-cache")
    assert proc.returncode == 0 and proc.stdout.splitlines() == [f"wrote 2 predictions to {folder / 'p.csv'}"]


@pytest.mark.parametrize("command", ["predict", "screen"])
def test_an_output_that_is_the_library_is_refused(labloop, tiny_model_dir, tmp_path, command):
    """``-o`` naming the library itself replaced it with the predictions (its other columns lost) and exit 0."""
    lib = tmp_path / "lib.csv"
    lib.write_text("smiles,my_id\nc1ccccc1,A-1\nCCO,A-2\n")
    window = ("--window", "0", "20", "--collector", "none") if command == "screen" else ()
    proc = labloop("surrogate", command, tiny_model_dir, lib, *window, "-o", tmp_path / "." / "lib.csv", "--no-cache")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (f"error: --output {tmp_path / '.' / 'lib.csv'} is the library being read: give another "
                           "file (writing it would replace the library)\n")
    assert lib.read_text() == "smiles,my_id\nc1ccccc1,A-1\nCCO,A-2\n"


@pytest.mark.parametrize("command", ["predict", "screen"])
@pytest.mark.parametrize("ctrl_c", ["as the cluster starts", "as the cluster closes"])
def test_ctrl_c_after_the_output_is_written_says_it_is_complete(labloop, tiny_model_dir, tmp_path, monkeypatch,
                                                                command, ctrl_c):
    """A Ctrl-C while `--scheduler local`'s cluster closed (seconds, after the CSV was written) said `aborted`:
    the user predicted the library again. Now it says the output is complete (still exit 130: the user did
    stop it); before the output is written it is still `aborted`, with no file.

    Why not a real SIGINT to a real process: the window is the LocalCluster's shutdown, and a test that
    watched for the CSV and then signalled would race it (a shutdown finished first exits 0, testing nothing).
    So the cluster here is none (the chunks run in this process) and its closing raises KeyboardInterrupt, as
    Python's SIGINT handler (signal.default_int_handler) does wherever the main thread is."""
    import labloop.surrogate.compute as compute

    @contextmanager
    def cluster_interrupted(*_args: object, **_kwargs: object) -> Iterator[None]:
        if ctrl_c == "as the cluster starts":
            raise KeyboardInterrupt
        yield None
        raise KeyboardInterrupt

    monkeypatch.setattr(compute, "dask_client", cluster_interrupted)
    lib = tmp_path / "lib.csv"
    pd.DataFrame({"smiles": ["c1ccccc1", "CCOC(=O)c1ccccc1", "c1cc[nH]c1"]}).to_csv(lib, index=False)
    out = tmp_path / "out.csv"
    screening = ["--window", "0", "20", "--collector", "none"] if command == "screen" else []
    proc = labloop("surrogate", command, tiny_model_dir, lib, "-o", out, "--scheduler", "local", "--no-cache",
                   *screening)
    assert proc.returncode == 130
    if ctrl_c == "as the cluster starts":
        assert proc.stderr.strip() == "aborted" and not out.exists()
        return
    assert proc.stderr.strip() == f"interrupted after {out} was written (3 rows): the output is complete"
    assert len(pd.read_csv(out)) == 3  # whole, under its name
    said = "3 of 3 molecules pass" if command == "screen" else f"wrote 3 predictions to {out}"
    assert said in proc.stdout.replace("\n", "")  # said before the cluster closed


def test_sweep_runs_a_reduced_grid(labloop, small_csv):
    proc = labloop("surrogate", "sweep", small_csv, "--target", "ie_ev", "--preset", "fast", "--epochs", "1",
                   "--radii", "1,2", "--bits", "256", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [(r["radius"], r["bits"]) for r in rows] in ([(1, 256), (2, 256)], [(2, 256), (1, 256)])
    assert rows[0]["mean_mae"] <= rows[1]["mean_mae"]
    # before minutes of training, the user is told what will be trained (and how to ask for less)
    assert "sweep: 2 cells x 2 folds x 1 epochs (fast recipe)" in proc.stderr
    assert "for a quick look" not in proc.stderr  # it is one already
    shown = labloop("surrogate", "sweep", small_csv, "--target", "ie_ev", "--preset", "fast", "--epochs", "1",
                    "--radii", "1", "--bits", "256")
    assert shown.returncode == 0 and " 256 " in shown.stdout and "256.0000" not in shown.stdout, shown.stdout


@pytest.fixture(scope="module")
def garbage_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bad") / "garbage.csv"
    path.write_bytes(bytes(range(256)) * 20)
    return path


@pytest.fixture(scope="module")
def text_in_numbers(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bad") / "text.csv"
    path.write_text("smiles,ie_ev\nCCO,7.1\nc1ccccc1,high\n")
    return path


def error_cases(small_csv, tiny_model_dir, garbage_csv, text_in_numbers, tmp_path):
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "manifest.json").write_text("{")
    # a model's weights are loaded from a copy of its folder (ModelPayload): a damaged one was said by the copy's
    # path, /tmp/labloop-model-..., already deleted (a newcomer's trial)
    truncated, incomplete = tmp_path / "truncated", tmp_path / "incomplete"
    for copy in (truncated, incomplete):
        shutil.copytree(tiny_model_dir, copy)
    (truncated / "member_0.weights.h5").write_bytes((truncated / "member_0.weights.h5").read_bytes()[:200])
    (incomplete / "member_1.weights.h5").unlink()
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    out = tmp_path / "out.csv"
    return {
        "missing data file": (["surrogate", "train", tmp_path / "nope.csv", "-t", "ie_ev", "-o", tmp_path / "m"],
                              ["nope.csv"]),
        "missing target column": (["surrogate", "train", small_csv, "-t", "homo", "-o", tmp_path / "m"], ["homo"]),
        "text in a number column": (["surrogate", "train", text_in_numbers, "-t", "ie_ev", "-o", tmp_path / "m"],
                                    ["line 3", "ie_ev", "high"]),
        "not a csv": (["surrogate", "train", garbage_csv, "-t", "ie_ev", "-o", tmp_path / "m"], ["garbage.csv"]),
        "unknown preset": (["surrogate", "train", small_csv, "-t", "ie_ev", "-o", tmp_path / "m", "--preset", "x"],
                           ["preset", "fast"]),
        "one fold": (["surrogate", "train", small_csv, "-t", "ie_ev", "-o", tmp_path / "m", "--folds", "1"],
                     ["--folds"]),
        "no target": (["surrogate", "train", small_csv, "-o", tmp_path / "m"], ["--target"]),
        "output is a file": (["surrogate", "train", small_csv, "-t", "ie_ev", "-o", a_file], ["a_file"]),
        "missing model": (["surrogate", "predict", tmp_path / "nomodel", small_csv, "-o", out], ["nomodel"]),
        "damaged model": (["surrogate", "evaluate", damaged, small_csv], ["damaged"]),
        "damaged weights": (["surrogate", "predict", truncated, small_csv, "-o", out, "--no-cache"],
                            [f"{truncated / 'member_0.weights.h5'}: damaged or incompatible weights"]),
        "missing weights": (["surrogate", "screen", incomplete, small_csv, "-o", out],
                            [f"{incomplete}: weights file member_1.weights.h5 is missing"]),
        "unknown solvent": (["surrogate", "screen", tiny_model_dir, small_csv, "--solvent", "water", "-o", out],
                            ["water", "acn"]),
        "unknown role": (["surrogate", "screen", tiny_model_dir, small_csv, "--role", "catalyst", "-o", out],
                         ["--role"]),
        "unknown reference": (["surrogate", "screen", tiny_model_dir, small_csv, "--reference", "sce", "-o", out],
                              ["sce"]),
        "window outside collector": (["surrogate", "screen", tiny_model_dir, small_csv, "--window", "5", "6",
                                      "-o", out], ["overlap"]),
        "bad radii": (["surrogate", "sweep", small_csv, "-t", "ie_ev", "--radii", "a,b"], ["--radii"]),
        "radius out of range": (["surrogate", "sweep", small_csv, "-t", "ie_ev", "--radii", "9"], ["radius"]),
        "unknown command": (["surrogate", "fly"], ["fly"]),
        "unknown option": (["surrogate", "predict", "--colour"], ["--colour"]),
    }


CASES = ["missing data file", "missing target column", "text in a number column", "not a csv", "unknown preset",
         "one fold", "no target", "output is a file", "missing model", "damaged model", "damaged weights",
         "missing weights", "unknown solvent",
         "unknown role", "unknown reference", "window outside collector", "bad radii", "radius out of range",
         "unknown command", "unknown option"]


@pytest.mark.parametrize("case", CASES)
def test_error_paths_exit_2_with_one_line_and_write_nothing(labloop, case, small_csv, tiny_model_dir, garbage_csv,
                                                            text_in_numbers, tmp_path):
    args, needles = error_cases(small_csv, tiny_model_dir, garbage_csv, text_in_numbers, tmp_path)[case]
    before = {p.name for p in tmp_path.iterdir()}
    proc = labloop(*args)
    assert_one_line_error(proc, *needles)
    assert {p.name for p in tmp_path.iterdir()} == before  # no model dir, no CSV, no temp file left


def test_ctrl_c_while_predicting_says_what_is_kept_and_the_same_command_continues(tiny_model_dir, tmp_path,
                                                                                  ocelot):
    """A Ctrl-C while the library's chunks were predicted said only "aborted" (a trial): the chunks finished are kept
    in the prediction cache, which it now says, and the same command again continues from them (a finished chunk's
    shard is not computed again). A real SIGINT to a real process, once its first shard is written."""
    library = tmp_path / "big.csv"
    ocelot[["smiles"]].iloc[:4000].to_csv(library, index=False)
    cache, out = tmp_path / "cache", tmp_path / "out.csv"
    command = [sys.executable, "-m", "labloop.orchestrator.cli.main", "surrogate", "predict", str(tiny_model_dir),
               str(library), "-o", str(out), "--scheduler", "none", "--chunk-size", "500"]
    env = {**os.environ, "LABLOOP_CACHE_DIR": str(cache)}
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env,
                               preexec_fn=_ctrl_c_as_in_a_terminal)
    while not (shards := list(cache.glob("predictions/model-*/*.parquet"))):
        assert process.poll() is None, process.stderr.read()  # it is still predicting
        threading.Event().wait(0.02)
    process.send_signal(signal.SIGINT)
    said = process.stderr.read()
    assert process.wait() == 130, said
    assert said.strip().splitlines()[-1] == (f"interrupted: {out} not written; the chunks predicted so far are kept in "
                                             "labloop's prediction cache, and the same command again continues from "
                                             "them"), said
    assert not out.exists()
    first = shards[0].stat().st_mtime_ns
    again = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    assert again.returncode == 0, again.stderr
    assert len(pd.read_csv(out)) == 4000 and shards[0].stat().st_mtime_ns == first  # kept, not redone


def _ctrl_c_as_in_a_terminal() -> None:
    """SIGINT's default action in the child, as a shell gives it: a pytest-xdist worker ignores SIGINT, and an
    ignored SIGINT stays ignored in the processes it starts (Python then raises no KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_in_the_terminal_stops_a_local_cluster_quietly_and_leaves_no_model_copy(tiny_model_dir, tmp_path,
                                                                                       ocelot):
    """A terminal's Ctrl-C reaches every process of its group: a LocalCluster's workers died mid-task with a
    page of tracebacks each, and one still loading the model left its ~77 MB copy in the temporary folder. The
    workers now ignore it (labloop closes the cluster), and copies of dead processes are removed. A real
    process group, a real SIGINT, once the cluster has started."""
    library = tmp_path / "big.smi"
    library.write_text("\n".join(ocelot.smiles.iloc[:3000]) + "\n")
    temporary = Path(os.environ["TMPDIR"])  # the processes' own (conftest.py): the workers' copies land here
    orphan = temporary / "labloop-model-999999999-0123456789abcdef-x"  # a copy whose process is gone
    orphan.mkdir()
    process = subprocess.Popen([sys.executable, "-m", "labloop.orchestrator.cli.main", "surrogate", "predict",
                                str(tiny_model_dir), str(library), "-o", str(tmp_path / "out.csv"), "--scheduler",
                                "local", "--no-cache"], stderr=subprocess.PIPE, text=True, start_new_session=True,
                               preexec_fn=_ctrl_c_as_in_a_terminal)
    first = process.stderr.readline()  # the cluster's announcement: its workers are up
    assert first.startswith("Dask LocalCluster"), first
    os.killpg(process.pid, signal.SIGINT)
    rest = process.stderr.read()
    assert process.wait() == 130
    # the cluster up, the Ctrl-C lands as it starts or as it predicts (nothing kept with --no-cache)
    assert "Traceback" not in rest and rest.strip().splitlines()[-1] in (
        "aborted", f"interrupted: {tmp_path / 'out.csv'} not written; nothing predicted is kept (--no-cache)"), rest
    assert not list(temporary.glob("labloop-model-*"))
    assert not (tmp_path / "out.csv").exists()


def test_a_kill_stops_predict_as_a_ctrl_c_does_and_leaves_no_temporary_shards(tiny_model_dir, tmp_path, ocelot):
    """``kill`` (SIGTERM, what a batch system sends) ended ``surrogate predict --no-cache`` at once, exit 143, no word,
    its temporary shards left in the temporary folder for good; a SIGKILLed run's were never removed either (a Dask
    trial). SIGTERM now stops it as Ctrl-C does, and the next run removes what a killed one left."""
    library = tmp_path / "big.smi"
    library.write_text("\n".join(ocelot.smiles.iloc[:10000]) + "\n")  # 100 chunks: far from done at the first
    temporary = Path(os.environ["TMPDIR"])  # the processes' own (conftest.py)
    orphan = temporary / "labloop-predictions-999999999-abc"  # a SIGKILLed run's: its process is gone
    (orphan / "model-x").mkdir(parents=True)
    process = subprocess.Popen([sys.executable, "-m", "labloop.orchestrator.cli.main", "surrogate", "predict",
                                str(tiny_model_dir), str(library), "-o", str(tmp_path / "out.csv"), "--scheduler",
                                "none", "--no-cache", "--chunk-size", "100"], stderr=subprocess.PIPE, text=True)
    mine = f"labloop-predictions-{process.pid}-"
    deadline = time.monotonic() + 120  # liveness only
    while not list(temporary.glob(f"{mine}*/model-*/*.parquet")):  # predicting: a shard is written
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.05)
    assert not orphan.exists()  # removed by this run, whose start it was before
    process.send_signal(signal.SIGTERM)
    said = process.stderr.read()
    assert process.wait() == 130, said
    assert "Traceback" not in said and said.strip().splitlines()[-1] == (
        f"interrupted: {tmp_path / 'out.csv'} not written; nothing predicted is kept (--no-cache)"), said
    assert not list(temporary.glob(f"{mine}*")) and not (tmp_path / "out.csv").exists()


def test_a_target_written_in_another_case_is_labloops_ie_or_ea(tmp_path, labloop, small_csv, write_campaign):
    """A lab's table names its columns ``IE_eV`` and ``EA_eV``: ``-t IE_eV`` read the column (columns match whatever
    their case) and trained a model predicting ``IE_eV``, which ``screen --role cathode`` then refused, and a
    campaign's ``prior.targets: [IE_eV, EA_eV]`` was refused outright (a lab's trial). Both are labloop's ``ie_ev`` and
    ``ea_ev``; a column of another name is told how to name it."""
    table = tmp_path / "lab.csv"
    pd.read_csv(small_csv).rename(columns={"ie_ev": "IE_eV", "ea_ev": "EA_eV"}).to_csv(table, index=False)
    model = tmp_path / "model"
    trained = labloop("surrogate", "train", table, "-t", "IE_eV", "-t", "EA_eV", "-o", model, "--epochs", "1",
                      "--folds", "2", "--no-cache")
    assert trained.returncode == 0, trained.stderr
    assert json.loads((model / "manifest.json").read_text())["targets"] == ["ie_ev", "ea_ev"]
    screened = labloop("surrogate", "screen", model, small_csv, "--role", "cathode", "-o", tmp_path / "hits.csv",
                       "--no-cache")
    assert screened.returncode == 0, screened.stderr
    campaign = yaml.safe_load(write_campaign(tmp_path, prior=True).read_text())
    campaign["prior"] = {"file": str(table), "targets": ["IE_eV", "EA_eV"]}
    (tmp_path / "lab.yaml").write_text(yaml.safe_dump(campaign, sort_keys=False))
    assert labloop("validate", tmp_path / "lab.yaml", "--dry-run").returncode == 0
    pd.read_csv(table).rename(columns={"IE_eV": "IP"}).to_csv(table, index=False)
    campaign["prior"]["targets"] = ["IP", "EA_eV"]
    (tmp_path / "lab.yaml").write_text(yaml.safe_dump(campaign, sort_keys=False))
    other = labloop("validate", tmp_path / "lab.yaml", "--dry-run")
    assert other.returncode == 2 and other.stderr.endswith(
        "prior.targets: must include 'ie_ev': the objective's oxidation potential is predicted from it (the prior's "
        "IE column in eV, by that name, whatever its case)\n"), other.stderr
