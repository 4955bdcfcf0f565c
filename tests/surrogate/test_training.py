"""From a table to a training set: a molecule given in several rows (however each spells it) is trained on
once, with the mean of its values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from labloop.surrogate.dataset import REPEAT_SPREAD, MoleculeTable
from labloop.surrogate.repeats import Repeats, merged_by_molecule, molecules_once


def test_repeated_molecules_become_one_row_with_their_mean_per_target():
    # input rows 0..5, row 2 invalid (not featurised); OCC is CCO spelt another way, c1ccccc1 is C1=CC=CC=C1
    smiles = ["CCO", "c1ccccc1", "not-a-smiles", "OCC", "C1=CC=CC=C1", "CCN"]
    rows = np.array([0, 1, 3, 4, 5])
    Y = np.array([[7.0, 1.0], [9.0, np.nan], [8.0, np.nan], [9.5, np.nan], [6.0, 0.5]])
    keep, merged, repeats = merged_by_molecule(smiles, rows, Y)
    assert keep.tolist() == [0, 1, 4]  # positions in rows: CCO, benzene, CCN
    np.testing.assert_allclose(merged, [[7.5, 1.0], [9.25, np.nan], [6.0, 0.5]])  # NaN: no row of benzene has it
    assert repeats == Repeats(rows=2, first=3, of=0,  # input row 3 (OCC) repeats input row 0 (CCO)
                              disagreeing=2, spread_rows=(0, 3), spread=1.0, spread_target=0)  # and benzene's 0.5


def test_stereoisomers_are_one_molecule_apart_from_repeats():
    """The fingerprint does not see stereo, so an E and a Z isomer (and the molecule written without stereo) are one
    input to the network: merged into one row with their mean, counted apart from the rows that repeat a molecule as
    written (left open by a lab's trial: they were trained as molecules of their own)."""
    smiles = ["C/C=C/c1ccccc1", "CCO", r"C/C=C\c1ccccc1", "CC=Cc1ccccc1", "C/C=C/c1ccccc1", "c1ccccc1/C=C/C"]
    Y = np.array([[8.0], [7.0], [8.2], [8.1], [8.3], [8.4]])
    keep, merged, repeats = merged_by_molecule(smiles, np.arange(len(smiles)), Y)
    assert keep.tolist() == [0, 1]
    np.testing.assert_allclose(merged, [[8.2], [7.0]])  # the mean of 8.0, 8.2, 8.1, 8.3 and 8.4
    # rows 4 and 5 write row 0's E isomer again (5 another way); rows 2 (Z) and 3 (no stereo) are its isomers
    assert (repeats.rows, repeats.first, repeats.of) == (2, 4, 0)
    assert (repeats.stereo, repeats.stereo_first, repeats.stereo_of) == (2, 2, 0)
    assert repeats.disagreeing == 1 and repeats.spread == pytest.approx(0.4) and repeats.spread_isomers
    # an isotope is no stereo mark: the fingerprint sees it, and [13CH3]/C=C/c1ccccc1 is no isomer of CC=Cc1ccccc1
    keep, _, labelled = merged_by_molecule(["CC=Cc1ccccc1", "[13CH3]/C=C/c1ccccc1"], np.arange(2), Y[:2])
    assert keep.tolist() == [0, 1] and labelled.stereo == 0


def test_a_table_without_repeats_is_left_as_it_is():
    Y = np.array([[1.0], [2.0]])
    keep, merged, repeats = merged_by_molecule(["CCO", "CCN"], np.array([0, 1]), Y)
    assert keep.tolist() == [0, 1] and merged is Y and repeats == Repeats()


def test_a_tables_molecules_are_merged_and_what_is_no_molecule_is_left_out_by_its_row():
    """``surrogate sweep`` merged nothing: a molecule given twice could sit in both of its folds; and it counted the
    rows that are no molecule as molecules without a word. Each molecule is kept once (the mean of its rows), and the
    unreadable rows are returned by their row, for the warning that names their lines; repeats by the table's rows,
    also in a slice of it."""
    table = MoleculeTable(Path("t.csv"), ["CCO", "nope", "OCC", "also nope", "CCN"], ["ie_ev"],
                          np.array([[7.0], [1.0], [8.0], [2.0], [6.0]]))
    merged, invalid, repeats = molecules_once(table, np.arange(5))
    assert merged.smiles == ["CCO", "CCN"]
    np.testing.assert_allclose(merged.Y, [[7.5], [6.0]])
    assert [(i.row, i.smiles) for i in invalid] == [(1, "nope"), (3, "also nope")]
    assert repeats == Repeats(rows=1, first=2, of=0, disagreeing=1, spread_rows=(0, 2), spread=1.0, spread_target=0)
    sliced, invalid, repeats = molecules_once(table, np.array([1, 2, 4]))
    assert sliced.smiles == ["OCC", "CCN"] and [i.row for i in invalid] == [1] and repeats == Repeats()


def test_repeats_that_disagree_are_counted_with_the_first_ones_rows_and_spread():
    """Rows of one molecule whose values lie further apart than a repeated measurement's (REPEAT_SPREAD) were
    averaged without a word; the first such molecule's rows, its widest spread and that target are kept for the
    warning. NaN is no value (it spreads nothing), and a spread of REPEAT_SPREAD or less is agreement."""
    smiles = ["CCO", "CCN", "OCC", "NCC", "CCO", "c1ccccc1", "C1=CC=CC=C1", "CCCl"]
    Y = np.array([[7.0, 1.0], [6.0, 0.5], [7.05, np.nan], [6.0, 0.9], [7.1, 1.0], [9.0, 2.0], [np.nan, 2.05],
                  [5.0, 0.0]])
    keep, merged, repeats = merged_by_molecule(smiles, np.arange(len(smiles)), Y)
    assert keep.tolist() == [0, 1, 5, 7]
    assert repeats.disagreeing == 1  # CCN/NCC (0.4 apart in the second target); CCO's 0.1 and benzene's 0.05 agree
    assert repeats.spread_rows == (1, 3) and repeats.spread_target == 1 and not repeats.spread_isomers
    assert repeats.spread == pytest.approx(0.4) and repeats.spread > REPEAT_SPREAD
    np.testing.assert_allclose(merged[1], [6.0, 0.7])  # merged as before: the mean
