"""A 1,000,000-character SMILES is skipped as "too long" with one line, never parsed (issue 17, cause 7): before,
it held featurisation for 15+ minutes (SIGTERM ignored inside RDKit) and hung the dry-run world."""

from __future__ import annotations

import logging

import pytest

from labloop.sim.world import TruthTable, World
from labloop.surrogate.dataset import MAX_SMILES_LENGTH, read_table
from labloop.surrogate.featurize import FingerprintSettings, featurize

HUGE = "c1ccccc1" * 125_000  # 1,000,000 characters of benzene rings: hours for RDKit to parse


def test_featurize_skips_a_huge_smiles_as_too_long() -> None:
    feats = featurize([HUGE, "CCO"], FingerprintSettings(n_bits=64), n_jobs=1)
    assert feats.n_valid == 1 and list(feats.rows) == [1]
    (skipped,) = feats.invalid
    assert skipped.row == 0 and skipped.smiles == HUGE
    assert skipped.reason == f"too long: 1000000 characters, at most {MAX_SMILES_LENGTH}"
    assert "1000000 characters" in skipped.shown and len(skipped.shown) < 200


def test_featurize_skips_a_smiles_with_a_name_or_an_escape_sequence() -> None:
    """RDKit reads what follows a space as the molecule's name: ``CCO x`` parsed as ethanol, a second key for
    one molecule, and an ESC sequence after the space reached the terminal through ``labloop log``."""
    hostile = ["CCO x", "c1ccccc1 \x1b]0;PWNED\x07\x1b[31mRED", "CC\tO", "CCO"]
    feats = featurize(hostile, FingerprintSettings(n_bits=64), n_jobs=1)
    assert list(feats.rows) == [3]
    assert [s.row for s in feats.invalid] == [0, 1, 2]
    assert all("holds a space, a control" in s.reason for s in feats.invalid)


def test_read_table_blanks_too_long_smiles_with_one_line_and_keeps_rows_aligned(tmp_path, caplog) -> None:
    path = tmp_path / "library.csv"
    path.write_text(f"smiles,ie_ev\nCCO,7.1\n{HUGE},6.0\n{HUGE[:2000]},6.5\nc1ccccc1,8.0\n")
    with caplog.at_level(logging.WARNING, logger="labloop.surrogate.dataset"):
        table = read_table(path, ["ie_ev"])
    assert table.smiles == ["CCO", "", "", "c1ccccc1"]
    assert list(table.Y[:, 0]) == [7.1, 6.0, 6.5, 8.0]
    (record,) = caplog.records
    assert record.getMessage() == (f"{path}: skipped 2 SMILES longer than {MAX_SMILES_LENGTH} characters (too long; "
                                   "the first at line 3 has 1000000)")


def test_the_world_refuses_a_huge_smiles_without_parsing_it() -> None:
    world = World(TruthTable({"CCO": (7.0, 1.0)}), source="ie_ea", quantity="oxidation_potential")
    with pytest.raises(KeyError, match="too long"):
        world.couple_of(HUGE)
    assert world.couple_of("CCO").e0_v == pytest.approx(world.truth_v("CCO"))


def test_validate_names_the_too_long_smiles_of_a_library(tmp_path, labloop, write_campaign) -> None:
    library = tmp_path / "library.csv"
    library.write_text(f"smiles,ie_ev,ea_ev\nCCO,7.1,0.5\n{HUGE},6.0,0.4\nc1ccccc1,8.0,0.2\n")
    result = labloop("validate", write_campaign(tmp_path, library={"file": str(library)}), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("skipped 1 SMILES longer than 1000 characters") == 1
    assert HUGE[:2000] not in result.stderr
