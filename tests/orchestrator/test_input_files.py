"""Input files named in a campaign, said in one line each: a folder where a file belongs is called a folder (it was
"no such file"), a library with no valid SMILES names the campaign's line, and an unreadable SMILES in a world's
truth file is judged by labloop alone (RDKit printed its own parse errors before labloop's line)."""

from __future__ import annotations

from pathlib import Path

import pytest

from labloop.orchestrator.cli.main import main

LIBRARY = Path(__file__).resolve().parents[2] / "examples" / "library.csv"


@pytest.mark.parametrize("name", ["protocols", "library.parquet"])
def test_a_folder_for_a_library_is_called_a_folder(tmp_path, labloop, write_campaign, name):
    (tmp_path / name).mkdir()
    result = labloop("validate", write_campaign(tmp_path, library={"file": str(tmp_path / name)}), "--dry-run")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert f"tiny.yaml:5: library.file: {tmp_path / name}: is a folder, not a file" in result.stderr


def test_a_folder_for_a_protocol_is_called_a_folder(tmp_path, labloop, write_campaign):
    result = labloop("validate", write_campaign(tmp_path, protocol=str(tmp_path)), "--dry-run")
    assert result.returncode == 2 and f"protocol: {tmp_path}: is a folder, not a file" in result.stderr


@pytest.mark.parametrize("rows, said", [("C1CC,7.0,1.0\n[H][H],15.4,-0.7\n", "its 2 rows:"),
                                        ("C1CC,7.0,1.0\n", "its 1 row:")])
def test_a_library_without_a_valid_smiles_names_the_campaign_line(tmp_path, labloop, write_campaign, rows, said):
    (tmp_path / "bad.csv").write_text("smiles,ie_ev,ea_ev\n" + rows)
    result = labloop("validate", write_campaign(tmp_path, library={"file": str(tmp_path / "bad.csv")}), "--dry-run")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "tiny.yaml:5: library.file: " in result.stderr
    assert f"bad.csv has no valid SMILES among {said}" in result.stderr


def test_unreadable_smiles_in_a_truth_file_print_no_rdkit_lines(tmp_path, capfd, write_campaign):
    """The world looks a library molecule up by canonical SMILES when the truth file spells it otherwise,
    parsing every row of the file: RDKit wrote its errors straight to the process's stderr."""
    rows = LIBRARY.read_text().splitlines()[:5]
    (tmp_path / "lib.csv").write_text("\n".join([*rows, "C1=CC=CC=C1,9.2,-1.1", "CCO,10.5,-1.0"]) + "\n")
    truth = [f"{row.split(',')[0]},4.5" for row in rows[1:]]
    (tmp_path / "truth.csv").write_text("\n".join(["smiles,e_v", *truth, "c1ccccc1,4.4", "C1CC,4.3",
                                                   "c1cccc1,4.2"]) + "\n")
    campaign = write_campaign(tmp_path, library={"file": str(tmp_path / "lib.csv")},
                              world={"truth": {"kind": "column", "file": str(tmp_path / "truth.csv"),
                                               "column": "e_v"}})
    capfd.readouterr()
    assert main(["validate", str(campaign), "--dry-run"]) == 2
    err = capfd.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err  # no "SMILES Parse Error" lines
    assert "world.truth.file: 1 library molecule has no finite true value in " in err and "(first: CCO)" in err


@pytest.mark.parametrize("world", [None, {"truth": {"kind": "born"}}, "truth-file"])
def test_a_smi_library_has_no_true_values_for_a_dry_run_and_says_so(tmp_path, write_campaign, labloop, world):
    """A .smi library read for the world's true values was read as CSV: "no column 'smiles' (columns:
    O=c1c(...) <script>...)", its first SMILES line shown as a column name. It has no truth columns: one plain
    line saying what a dry run needs; a real run (no --dry-run) reads no truth."""
    smiles = LIBRARY.read_text().splitlines()[1:6]
    library = tmp_path / "lib.smi"
    library.write_text("".join(f"{line.split(',')[0]} <script>m{i}</script>\n" for i, line in enumerate(smiles)))
    if world == "truth-file":
        world = {"truth": {"kind": "born", "file": str(library)}}
    campaign = write_campaign(tmp_path, library={"file": str(library)}, world=world)
    if world is None:  # no world section at all: the default world
        text = campaign.read_text().replace("world: null\n", "")
        campaign.write_text(text)
        assert "world" not in text
    result = labloop("validate", campaign, "--dry-run")
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "<script>" not in line and "no column" not in line
    if world is not None and "file" in world["truth"]:
        assert "world.truth.file: a dry run needs true values (ie_ev/ea_ev): " in line
        assert line.endswith("lib.smi is a .smi file, which has none; give a CSV with columns smiles, ie_ev, ea_ev for "
                             "the library's molecules")
    else:
        assert line.endswith(("world", "world.truth.kind")[world is not None] + ": a dry run needs true values "
                             "(ie_ev/ea_ev): a .smi library has none; give world.truth.file: a CSV with columns "
                             "smiles, ie_ev, ea_ev for the library's molecules")


def test_a_parquet_library_holding_the_truth_is_said_to_need_a_csv_truth_for_a_dry_run(tmp_path, write_campaign,
                                                                                     labloop):
    """A Parquet library with the ie_ev/ea_ev columns, read for a dry run's truth by default, was said as "its text is
    not UTF-8 ... save it as CSV UTF-8" (a Dask trial): the world reads a CSV only, which the line says, naming the
    fix; with world.truth.file a CSV, the same library validates."""
    import pandas as pd

    library = tmp_path / "lib.parquet"
    pd.read_csv(LIBRARY).to_parquet(library)
    refused = labloop("validate", write_campaign(tmp_path, library={"file": str(library)},
                                                 world={"truth": {"kind": "born"}}), "--dry-run")
    assert refused.returncode == 2
    [line] = refused.stderr.strip().splitlines()
    assert line.endswith(f"world.truth.kind: a dry run needs true values (ie_ev/ea_ev): the library {library} is a "
                         "Parquet file, and a dry run reads true values from a CSV only; give world.truth.file: a CSV "
                         "with columns smiles, ie_ev, ea_ev for the library's molecules"), line
    fixed = labloop("validate", write_campaign(tmp_path, library={"file": str(library)},
                                               world={"truth": {"kind": "born", "file": str(LIBRARY)}}), "--dry-run")
    assert fixed.returncode == 0, fixed.stderr


def test_a_library_with_two_smiles_columns_is_refused_naming_the_column(tmp_path, labloop, write_campaign):
    """pandas renamed the second ``smiles`` to ``smiles.1`` and the first was read, the other half silently
    dropped; a column really named ``smiles.1`` is no repeat. The chunked reader (the planners' predictions over
    a large library) refuses it too."""
    from labloop.core.errors import InvalidInput
    from labloop.surrogate.library_pipeline import read_chunks

    rows = 200
    library = tmp_path / "library.csv"
    library.write_text("smiles,name,smiles,ie_ev,ea_ev\n" + "CCO,a,c1ccccc1O,6.1,0.2\n" * rows)
    campaign = write_campaign(tmp_path, library={"file": str(library)})
    for command in (("validate", campaign, "--dry-run"), ("run", campaign, "--dry-run")):
        result = labloop(*command)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines() == [
            f"error: {campaign}:5: library.file: {library}: column 'smiles' is given 2 times (columns: smiles, name, "
            "smiles, ie_ev, ea_ev): keep one, or rename the others"]
    assert not (tmp_path / "tiny.db").exists()
    with pytest.raises(InvalidInput, match="column 'smiles' is given 2 times"):
        next(read_chunks(library))
    library.write_text("smiles,name,smiles.1,ie_ev,ea_ev\n" + "CCO,a,c1ccccc1O,6.1,0.2\n" * rows)
    assert labloop("validate", campaign, "--dry-run").returncode == 0
    assert next(read_chunks(library)).smiles[0] == "CCO"


def test_a_csv_line_is_named_as_the_file_numbers_it_after_blank_lines(tmp_path, labloop, write_campaign):
    """pandas skips blank lines and reads a quoted cell across lines, and the messages counted rows from the header
    (row + 2): a bad value after two blank lines was called line 3 of a file that has it on line 5. The library's
    invalid SMILES (validate), a table's bad number (the world's truth, read from the library) and a backtest
    truth's potential beyond any molecule's are named at their real lines."""
    rows = LIBRARY.read_text().splitlines()
    # line 1 blank, 2 the header, 3-4 molecules, 5-6 blank (one of spaces), 7-8 a molecule whose quoted name spans
    # both, 9 the invalid SMILES, 10 on the rest
    lines = ["", rows[0] + ",name", *(r + ",a" for r in rows[1:3]), "", "   ", rows[3] + ',"two\nlines"',
             "C1CC,7.1,0.1,b", *(r + ",c" for r in rows[4:200])]
    library = tmp_path / "library.csv"
    library.write_text("\n".join(lines) + "\n")
    assert library.read_text().splitlines()[8] == "C1CC,7.1,0.1,b"
    campaign = write_campaign(tmp_path, library={"file": str(library)})
    checked = labloop("validate", campaign, "--dry-run")
    assert checked.returncode == 0 and "line 9 'C1CC'" in checked.stderr, checked.stderr
    library.write_text(library.read_text().replace("C1CC,7.1,", "C1CC,abc,"))
    refused = labloop("validate", campaign, "--dry-run")
    assert refused.returncode == 2 and f"{library}: line 9, column 'ie_ev': 'abc' is not a number" in refused.stderr, \
        refused.stderr
    truth = tmp_path / "truth.csv"
    truth.write_text("\n".join(["smiles,e_v", "CCO,4.5", "", "", "CCN,20"]) + "\n")
    result = labloop("backtest", write_campaign(tmp_path), "--truth", truth, "--column", "e_v", "--planners",
                     "random", "--no-instruments")
    assert result.returncode == 2 and "line 5, column 'e_v': 20 lies beyond" in result.stderr, result.stderr


def test_column_names_match_whatever_their_case_and_two_that_differ_only_by_case_are_refused(
        tmp_path, labloop, write_campaign):
    """Column names were compared exactly: a library whose header says ``SMILES`` was refused ('no column
    'smiles''), and one with ``Smiles`` beside ``smiles`` was read from ``smiles`` without a word, whichever the user
    meant. A column is now matched whatever its case, and two that differ only by case are refused in one line
    naming both and the header's line (the library, its chunked reader, Parquet, a backtest's truth table)."""
    import pandas as pd

    from labloop.core.errors import InvalidInput
    from labloop.surrogate.library_pipeline import read_chunks

    rows = LIBRARY.read_text().splitlines()
    library = tmp_path / "library.csv"
    library.write_text("\n".join(["SMILES,IE_eV,EA_eV", *rows[1:]]) + "\n")
    campaign = write_campaign(tmp_path, library={"file": str(library)})  # the world reads ie_ev, ea_ev from it
    checked = labloop("validate", campaign, "--dry-run")
    assert checked.returncode == 0, checked.stderr
    assert next(read_chunks(library)).smiles[0] == rows[1].split(",")[0]
    library.write_text("\n".join(["", "Smiles,name,smiles,ie_ev,ea_ev",
                                  *(f"CCO,a,{r}" for r in rows[1:])]) + "\n")  # the header on line 2
    for command in (("validate", campaign, "--dry-run"), ("run", campaign, "--dry-run")):
        result = labloop(*command)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines() == [
            f"error: {campaign}:5: library.file: {library}: line 2: columns 'Smiles' and 'smiles' differ only by "
            "case, and labloop matches column names whatever their case: rename one, or remove it"]
    assert not (tmp_path / "tiny.db").exists()
    with pytest.raises(InvalidInput, match="line 2: columns 'Smiles' and 'smiles' differ only by case"):
        next(read_chunks(library))
    parquet = tmp_path / "library.parquet"
    pd.DataFrame({"SMILES": ["CCO", "CCN"]}).to_parquet(parquet)
    assert next(read_chunks(parquet)).smiles == ["CCO", "CCN"]
    pd.DataFrame({"SMILES": ["CCO"], "smiles": ["CCN"]}).to_parquet(parquet)
    with pytest.raises(InvalidInput, match="columns 'SMILES' and 'smiles' differ only by case"):
        next(read_chunks(parquet))
    truth = tmp_path / "truth.csv"
    truth.write_text("\n".join(["Smiles,E_V", *(f"{r.split(',')[0]},4.5" for r in rows[1:])]) + "\n")
    backtest = ("backtest", write_campaign(tmp_path), "--truth", truth, "--column", "e_v", "--planners", "random",
                "--no-instruments", "--seeds", "1")
    result = labloop(*backtest)
    assert result.returncode == 0, result.stderr
    truth.write_text("\n".join(["smiles,e_v,E_V", *(f"{r.split(',')[0]},4.5,4.6" for r in rows[1:])]) + "\n")
    result = labloop(*backtest)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        f"error: {truth}: line 1: columns 'e_v' and 'E_V' differ only by case, and labloop matches column names "
        "whatever their case: rename one, or remove it"], result.stderr
