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


def test_a_library_without_a_valid_smiles_names_the_campaign_line(tmp_path, labloop, write_campaign):
    (tmp_path / "bad.csv").write_text("smiles,ie_ev,ea_ev\nC1CC,7.0,1.0\n[H][H],15.4,-0.7\n")
    result = labloop("validate", write_campaign(tmp_path, library={"file": str(tmp_path / "bad.csv")}), "--dry-run")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "tiny.yaml:5: library.file: " in result.stderr
    assert "bad.csv has no valid SMILES among its 2 rows" in result.stderr


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
    assert "world.truth.file: 1 library molecule(s) have no finite true value in " in err and "(first: CCO)" in err
