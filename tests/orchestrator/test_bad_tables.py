"""Tables with numbers no molecule has (an ``inf``, a ``1e300``, a target column without a value) are bad input
for every command that reads one: one line naming the file, its line and the column, exit 2, nothing written.
They used to pass ``validate``, then train a model calibrated to ``inf``/NaN that broke the planner after the
journal was made (``zip() argument 2 is longer than argument 1``)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from labloop.core.errors import InvalidInput
from labloop.planners.conditions import ConditionSpace
from labloop.surrogate import dataset
from labloop.surrogate.dataset import MAX_ABS_TARGET, MISSING_MARKERS, read_table
from labloop.surrogate.library_pipeline import read_chunks

DATA = Path(__file__).resolve().parents[2] / "data" / "ocelot_chromophore_v1_ie_ea.csv"

#: (how the table is damaged, what the error line must hold); the damage lands on CSV line 7 (data row 5)
DAMAGE = {
    "inf": (lambda t: t.assign(ie_ev=t.ie_ev.where(t.index != 5, math.inf)), ["line 7", "'ie_ev'", "inf"]),
    "-inf": (lambda t: t.assign(ea_ev=t.ea_ev.where(t.index != 5, -math.inf)), ["line 7", "'ea_ev'", "-inf"]),
    "huge": (lambda t: t.assign(ea_ev=t.ea_ev.where(t.index != 5, 1e300)), ["line 7", "'ea_ev'", "1e+300"]),
    # what the value is in eV or V, said (a backtest table of potentials in mV got only "meV, kJ/mol")
    "millielectronvolts": (lambda t: t.assign(ie_ev=t.ie_ev * 1000), [
        "line 2", "'ie_ev'", f"mV or meV written as V or eV ({pd.read_csv(DATA, nrows=1).ie_ev[0]:g})?"]),
    "all missing": (lambda t: t.assign(ea_ev=np.nan), ["'ea_ev'", "no value in any of its 300 rows"]),
}


def _table(folder: Path, damage: str) -> Path:
    """300 rows of the bundled data with ``damage`` done to them."""
    folder.mkdir(exist_ok=True)
    table = pd.read_csv(DATA, nrows=300)[["smiles", "ie_ev", "ea_ev"]]
    path = folder / "prior.csv"
    DAMAGE[damage][0](table).to_csv(path, index=False)
    return path


def _with_prior(write_campaign, folder: Path, prior: Path, **sections: object) -> Path:
    """The tiny dry-run campaign (2 folds, 2 epochs) trained on ``prior`` (``prior_section``: more of it)."""
    extra = sections.pop("prior_section", {})
    path = write_campaign(folder, prior=True, **sections)
    campaign = yaml.safe_load(path.read_text())
    campaign["prior"] = {"file": str(prior), "targets": ["ie_ev", "ea_ev"], **extra}
    path.write_text(yaml.safe_dump(campaign, sort_keys=False))
    return path


def _one_line(result, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: "), result.stderr
    assert "prior.csv" in result.stderr, result.stderr
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)


def test_a_one_row_table_without_a_value_is_said_as_one_row(tmp_path):
    """It said "any of its 1 rows"."""
    (tmp_path / "one.csv").write_text("smiles,ie_ev\nCCO,\n")
    with pytest.raises(InvalidInput, match=r"column 'ie_ev' has no value in any of its 1 row$"):
        read_table(tmp_path / "one.csv", ["ie_ev"])


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_the_reader_refuses_values_no_molecule_has(tmp_path, damage):
    with pytest.raises(InvalidInput) as caught:
        read_table(_table(tmp_path, damage), ["ie_ev", "ea_ev"])
    for needle in DAMAGE[damage][1]:
        assert needle in str(caught.value)


def test_a_missing_value_is_a_missing_label_and_the_bound_is_inclusive(tmp_path):
    table = pd.read_csv(DATA, nrows=300)[["smiles", "ie_ev", "ea_ev"]]
    table.loc[3, "ie_ev"] = np.nan
    table.loc[4, "ea_ev"] = -MAX_ABS_TARGET
    table.to_csv(tmp_path / "ok.csv", index=False)
    read = read_table(tmp_path / "ok.csv", ["ie_ev", "ea_ev"])
    assert np.isnan(read.Y[3, 0]) and read.Y[4, 1] == -MAX_ABS_TARGET


@pytest.mark.parametrize("damage", ["inf", "huge", "all missing"])
def test_validate_and_run_refuse_a_damaged_prior_before_anything_is_written(tmp_path, labloop, write_campaign,
                                                                           damage):
    prior = _table(tmp_path / "data", damage)
    folder = tmp_path / "campaign"
    folder.mkdir()
    campaign = _with_prior(write_campaign, folder, prior, planner={"kind": "bayes", "batch_size": 2})
    _one_line(labloop("validate", campaign, "--dry-run"), "prior.file", *DAMAGE[damage][1])
    _one_line(labloop("run", campaign, "--dry-run"), "prior.file", *DAMAGE[damage][1])
    assert sorted(p.name for p in folder.iterdir()) == ["tiny.yaml"]


def test_a_prior_slice_without_a_value_in_a_target_is_refused(tmp_path, labloop, write_campaign):
    """The file has a few EA values, the seeded 20-row slice none of them: that slice would train a model
    predicting NaN."""
    table = pd.read_csv(DATA, nrows=300)[["smiles", "ie_ev", "ea_ev"]]
    table.loc[table.index != 0, "ea_ev"] = np.nan
    table.to_csv(tmp_path / "sparse.csv", index=False)
    folder = tmp_path / "campaign"
    folder.mkdir()
    campaign = _with_prior(write_campaign, folder, tmp_path / "sparse.csv", prior_section={"rows": 20})
    for command in ("validate", "run"):
        result = labloop(command, campaign, "--dry-run")
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "prior.rows" in result.stderr and "no value in column 'ea_ev'" in result.stderr, result.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["tiny.yaml"]


@pytest.mark.parametrize("damage", ["inf", "all missing"])
def test_backtest_refuses_a_damaged_prior_and_truth(tmp_path, labloop, write_campaign, damage):
    folder = tmp_path / "campaign"
    folder.mkdir()
    good = pd.read_csv(Path(__file__).resolve().parents[2] / "examples" / "library.csv")
    good.assign(e_v=good.ie_ev - 2.94)[["smiles", "e_v"]].to_csv(tmp_path / "truth.csv", index=False)
    prior = _table(tmp_path / "data", damage)
    campaign = _with_prior(write_campaign, folder, prior)
    args = ("--planners", "random", "--seeds", "1", "--budget", "4", "--no-instruments")
    _one_line(labloop("backtest", campaign, "--truth", tmp_path / "truth.csv", "--column", "e_v", *args),
              *DAMAGE[damage][1])
    # the same table as the truth, its columns named as potentials (a header naming eV is refused first: an energy)
    assert "column 'ie_ev' names eV" in labloop("backtest", write_campaign(folder), "--truth", prior, "--column",
                                                "ie_ev", *args).stderr
    def as_potentials(text: str) -> str:
        return text.replace("ie_ev", "e_ox_v").replace("ea_ev", "e_red_v")

    renamed = tmp_path / "renamed" / "prior.csv"
    renamed.parent.mkdir()
    renamed.write_text(as_potentials(prior.read_text()))
    _one_line(labloop("backtest", write_campaign(folder), "--truth", renamed, "--column", "e_ox_v" if damage == "inf"
                      else "e_red_v", *args), *map(as_potentials, DAMAGE[damage][1]))


@pytest.mark.parametrize("damage", ["inf", "huge", "all missing"])
def test_surrogate_train_refuses_it_and_saves_no_model(tmp_path, labloop, damage):
    data = _table(tmp_path / "data", damage)
    result = labloop("surrogate", "train", data, "--target", "ie_ev", "--target", "ea_ev", "-o", tmp_path / "m",
                     "--epochs", "1", "--folds", "2")
    _one_line(result, *DAMAGE[damage][1])
    assert not (tmp_path / "m").exists()


def _marked(folder: Path, cell: str, rows: tuple[int, ...] = (3, 7)) -> Path:
    """300 rows of the bundled data whose ``ie_ev`` cell reads ``cell`` in data ``rows`` (CSV lines 5 and 9)."""
    folder.mkdir(exist_ok=True)
    table = pd.read_csv(DATA, nrows=300)[["smiles", "ie_ev", "ea_ev"]].astype({"ie_ev": object})
    for row in rows:
        table.loc[row, "ie_ev"] = cell
    path = folder / "prior.csv"
    table.to_csv(path, index=False)
    return path


#: what the reader says of the two cells ``_marked`` writes ``n/a`` in
MARKED_SAID = ("prior.csv, column 'ie_ev': 2 rows write a missing value as 'n/a', first at lines 5, 9 (read as "
               "missing, as an empty cell is)")


def test_a_missing_value_marker_is_read_as_an_empty_cell_and_said_once(tmp_path, caplog):
    """A prior, a world's truth and ``surrogate ...``'s tables refused ``n/a`` one cell at a time ("not a number")
    while an empty cell was a missing label: a chemist's table writes n/a for a molecule whose DFT failed."""
    seven = (3, 7, 20, 30, 40, 50, 60)
    empty = read_table(_marked(tmp_path / "empty", "", rows=seven), ["ie_ev", "ea_ev"])
    caplog.set_level(logging.INFO, "labloop.surrogate.dataset")
    marked = read_table(_marked(tmp_path / "marked", " N/A ", rows=seven), ["ie_ev", "ea_ev"])
    assert np.isnan(marked.Y[3, 0]) and marked.sha256() == empty.sha256()  # what trains is the same
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert said == [f"{tmp_path / 'marked' / 'prior.csv'}, column 'ie_ev': 7 rows write a missing value as 'N/A', "
                    "first at lines 5, 9, 22, 32, 42 and 2 more (read as missing, as an empty cell is)"], said
    caplog.clear()
    read_table(tmp_path / "marked" / "prior.csv", ["ie_ev"])  # validate, then the training: said once
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    one = read_table(_marked(tmp_path / "one", "ND", rows=(3,)), ["ie_ev"])
    assert np.isnan(one.Y[3, 0]) and "1 row writes a missing value as 'ND', at line 5 (read" in caplog.text
    excel = read_table(_marked(tmp_path / "excel", "#N/A", rows=(3,)), ["ie_ev"])  # Excel's, which stopped a backtest
    assert np.isnan(excel.Y[3, 0]) and "1 row writes a missing value as '#N/A', at line 5 (read" in caplog.text
    caplog.clear()
    read_table(_marked(tmp_path / "own", "n/a"), ["ie_ev"], missing_markers=MISSING_MARKERS)  # a backtest's note
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    with pytest.raises(InvalidInput, match="line 5, column 'ie_ev': 'n/a' is not a number"):
        read_table(tmp_path / "own" / "prior.csv", ["ie_ev"], missing_markers=())


def test_a_cell_of_spaces_is_an_empty_cell(tmp_path):
    """A spreadsheet's export writes a cleared cell as spaces: refused as "' ' is not a number" where an empty cell is
    a missing value (a chemist's trial). Read as the empty cell it is, by every table reader, with no warning."""
    empty = read_table(_marked(tmp_path / "empty", "", rows=(3, 7)), ["ie_ev", "ea_ev"])
    spaces = read_table(_marked(tmp_path / "spaces", "  ", rows=(3, 7)), ["ie_ev", "ea_ev"])
    assert np.isnan(spaces.Y[3, 0]) and np.isnan(spaces.Y[7, 0]) and spaces.sha256() == empty.sha256()
    assert not spaces.marked.get("ie_ev")


def test_surrogate_train_and_a_campaign_prior_read_n_a_as_a_missing_label(tmp_path, labloop, write_campaign,
                                                                           monkeypatch):
    """``surrogate train``, ``validate`` and ``run`` refused it ("line 5, column 'ie_ev': 'n/a' is not a number"),
    and passed the same table with those cells empty."""
    prior = _marked(tmp_path / "data", "n/a")
    trained = labloop("surrogate", "train", prior, "--target", "ie_ev", "--target", "ea_ev", "-o", tmp_path / "m",
                      "--epochs", "1", "--folds", "2")
    assert trained.returncode == 0 and f"warning: {prior.parent}/{MARKED_SAID}\n" in trained.stderr, trained.stderr
    folder = tmp_path / "campaign"
    folder.mkdir()
    campaign = _with_prior(write_campaign, folder, prior, budget={"max_experiments": 2})
    for command in ("validate", "run"):
        monkeypatch.setattr(dataset, "_WARNED", set())  # as in a process of its own: the train above warned
        result = labloop(command, campaign, "--dry-run")
        assert result.returncode == 0, result.stderr
        assert result.stderr.count(MARKED_SAID) == 1, result.stderr  # read more than once, said once


def test_a_batch_of_nothing_gets_no_conditions():
    """A pool with nothing left to score asks for no setting: one came back, and the planner's zip of molecules
    and settings failed."""
    space = ConditionSpace({"scan_rate_v_s": (0.05, 0.5)})
    assert space.propose([], 0, seed=1, step=0) == []
    assert len(space.propose([], 1, seed=1, step=0)) == 1


@pytest.mark.parametrize(("name", "write", "says"), [
    ("past.xlsx", lambda p: _workbook(p), "it is a spreadsheet workbook, not CSV: save it as \"CSV UTF-8"),
    ("renamed.csv", lambda p: _workbook(p), "it is a spreadsheet workbook, not CSV: save it as \"CSV UTF-8"),
    ("latin1.csv", lambda p: p.write_bytes("smiles,ie_ev\nCCO,7.1 \u00b1 0.1\n".encode("latin-1")),
     "its text is not UTF-8 (line 2, column 'ie_ev': byte 0xb1): save it as \"CSV UTF-8"),
    ("semicolons.csv", lambda p: p.write_text("smiles;ie_ev\nCCO;7.1\n"),
     "its columns are separated by semicolons, and labloop reads comma-separated CSV"),
    ("tabs.csv", lambda p: p.write_text("smiles\tie_ev\nCCO\t7.1\n"), "its columns are separated by tabs"),
    # a name with a comma in a semicolon-separated row: a tokenizer's error, which named no cause (a trial)
    ("semicolons_and_a_comma.csv", lambda p: p.write_text("smiles;ie_ev;name\nCCO;7.1;ethanol\n"
                                                          "COc1ccc(OC)cc1;7.5;1,4-dimethoxybenzene\nCO;8.2;methanol\n"),
     "its columns are separated by semicolons, and labloop reads comma-separated CSV"),
    # a comma inside an unquoted cell: pandas took the first row's extra field as an index and shifted every column
    # (the numbers read as SMILES), or a later row's wrong field, in silence (a chemist's trial)
    ("comma_in_a_name.csv", lambda p: p.write_text("name,smiles,ie_ev\nProbe, zweite,CCO,7.1\nanisol,COc1ccccc1,7.5\n"),
     "line 2 has 4 comma-separated fields where the header has 3 ('Probe, zweite,CCO,7.1'): a comma inside a cell"),
    ("comma_in_a_later_row.csv", lambda p: p.write_text("name,smiles,ie_ev\n\nanisol,COc1ccccc1,7.5\n"
                                                        "Probe, zweite,CCO,7.1\n"),
     "line 4 has 4 comma-separated fields where the header has 3"),
    ("decimal_commas.csv", lambda p: p.write_text("smiles,ie_ev\nCCO,7,1\n"),
     "line 2 has 3 comma-separated fields where the header has 2 ('CCO,7,1'): a comma inside a cell (a name, a "
     "number with a decimal comma) needs the cell in double quotes"),
])
def test_a_table_a_spreadsheet_saved_says_how_to_save_it(tmp_path, name, write, says):
    """What Excel writes besides comma-separated UTF-8 was refused with a codec's error or a column list, in one
    line but with no word on what to do (a chemist's trial)."""
    path = tmp_path / name
    write(path)
    with pytest.raises(InvalidInput) as caught:
        read_table(path, ["ie_ev"])
    assert str(caught.value).startswith(f"{path}: ") and says in str(caught.value), str(caught.value)
    # the cause alone: the parser's "Error tokenizing data. C error: ..." came before it (a lab's trial)
    assert "Error tokenizing" not in str(caught.value), str(caught.value)
    if "separated by" in says or "fields where" in says:  # the cause, not a hint to rename a column
        with pytest.raises(InvalidInput) as caught:
            read_table(path, ["ie_ev"], column_hint=": name its SMILES column 'smiles'")
        assert says in str(caught.value) and "name its SMILES column" not in str(caught.value)
        with pytest.raises(InvalidInput) as caught:  # a library read in chunks (surrogate predict, screen)
            next(read_chunks(path))
        assert says in str(caught.value), str(caught.value)


def _workbook(path: Path) -> None:
    """A file shaped like an .xlsx (a zip with the Office package's parts list): its first bytes are what counts."""
    import zipfile

    with zipfile.ZipFile(path, "w") as workbook:
        workbook.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
        workbook.writestr("xl/workbook.xml", "<workbook/>")


@pytest.mark.parametrize(("written", "said"), [
    (b"\x00" * 2000, "holds NUL bytes: a binary or damaged file, not a CSV table"),
    ("smiles,e_v\nCCO,4.2\n".encode("utf-16"), 'is UTF-16 text (a spreadsheet\'s "Unicode Text"), not a CSV table'),
    (b'smiles,e_v\nCCO,"4,342"\n', "line 2, column 'e_v': '4,342' is not a number (a decimal comma: write 4.342)"),
    (b"smiles,e_v\nCCO,V\n", "'V' is not a number (a unit: a units row under the header?"),
    (b"smiles,e_v\nCCO,inf\n", "inf is no energy (eV) or potential (V) of a molecule (at most 50 either way): an "
                               "overflow or a division by zero"),
    (b"smiles" + b",x" * 100 + b"\nCCO" + b",1" * 100 + b"\n",
     "'e_v' (columns: 'smiles', 'x', 'x.1', 'x.2', 'x.3', 'x.4', 'x.5', 'x.6', 'x.7', 'x.8', 'x.9', 'x.10' and 89 "
     "more)"),
])
def test_a_table_no_csv_reader_can_use_says_what_it_most_likely_is(tmp_path, written, said):
    """A lab head's trial: a file of 2,000 NUL bytes was refused in a line of 8,000 characters (its "header" listed
    whole); a decimal comma, a units row and an inf were refused without a hint of what they are."""
    path = tmp_path / "table.csv"
    path.write_bytes(written)
    with pytest.raises(InvalidInput) as refused:
        read_table(path, ["e_v"])
    message = str(refused.value)
    assert said in message and len(message) < 600 and "\n" not in message, message


def test_a_gzipped_table_whatever_its_suffix_is_no_binary_file(tmp_path):
    """A gzip stream holds NUL bytes; ``t.csv.GZ`` was refused as a binary or damaged file once NUL bytes were (a
    reviewer's probe): the gzip magic, not the name, says it is packed."""
    import gzip

    path = tmp_path / "t.csv.GZ"
    with gzip.open(path, "wt") as handle:
        handle.write("smiles,e_v\nCCO,4.2\n")
    assert read_table(path, ["e_v"]).Y.tolist() == [[4.2]]


def test_a_campaign_prior_trains_each_molecule_once_and_says_what_it_left_out(tmp_path, labloop, write_campaign):
    """A lab's prior table with an unreadable row and a molecule twice, 1 eV apart: ``surrogate train`` warned of both
    and trained on the molecule's mean, while a campaign trained its prior on both copies as two molecules, without a
    word, the unreadable row named only at ``-v`` by its 0-based row (a lab's trial). The campaign's prior is read as
    ``surrogate train`` reads a table, and ``validate`` and ``run`` say so at the prior's line."""
    from rdkit import Chem

    from labloop.orchestrator.config.campaign import load_campaign
    from labloop.orchestrator.config.yaml_source import display_name
    from labloop.orchestrator.learning.models import read_prior

    table = pd.read_csv(DATA, nrows=300)[["smiles", "ie_ev", "ea_ev"]]
    table.loc[3, "smiles"] = "C1CCC("  # line 5
    again = table.loc[1].copy()  # line 3's molecule, in Kekulé form, 1 eV higher: line 302
    again["smiles"], again["ie_ev"] = Chem.MolToSmiles(Chem.MolFromSmiles(again["smiles"]), kekuleSmiles=True), \
        again["ie_ev"] + 1.0
    assert again["smiles"] != table.loc[1, "smiles"]
    (tmp_path / "data").mkdir()
    prior = tmp_path / "data" / "prior.csv"
    pd.concat([table, again.to_frame().T]).to_csv(prior, index=False)
    folder = tmp_path / "campaign"
    folder.mkdir()
    campaign_file = _with_prior(write_campaign, folder, prior, budget={"max_experiments": 2})
    line = next(n for n, text in enumerate(campaign_file.read_text().splitlines(), start=1) if "prior.csv" in text)
    at = f"{campaign_file}:{line}: prior.file: "
    name = display_name(prior)
    said = [f"warning: {at}the prior's 1 invalid SMILES in {name} is left out of its training: line 5 'C1CCC('",
            f"warning: {at}1 row of {name} repeats the molecule of an earlier row, compared as canonical SMILES "
            "(first: line 302, the molecule of line 3): each molecule is trained on once, with the mean of its rows' "
            "values per target",
            f"warning: {at}1 repeated molecule of {name} has values more than 0.1 eV apart (first: lines 3, 302, "
            "ie_ev spread 1.000 eV)"]
    for command in ("validate", "run"):
        result = labloop(command, campaign_file, "--dry-run")
        assert result.returncode == 0, result.stderr
        for words in said:
            assert result.stderr.count(words) == 1, (words, result.stderr)
    once, invalid, repeats = read_prior(load_campaign(campaign_file))
    assert len(once.smiles) == 299 and [i.row for i in invalid] == [3] and (repeats.first, repeats.of) == (300, 1)
    assert once.Y[1, 0] == pytest.approx(table.loc[1, "ie_ev"] + 0.5)


def test_a_prior_whose_only_value_of_a_target_is_in_an_unreadable_row_is_refused(tmp_path, labloop, write_campaign):
    """The rows that are no molecule are left out of the prior's training: a target whose only value sat in one
    would train a model predicting NaN (a reviewer's reading). Refused at the prior's file, as a slice without a
    value is at its rows."""
    from labloop.orchestrator.config.yaml_source import display_name
    table = pd.read_csv(DATA, nrows=300)[["smiles", "ie_ev", "ea_ev"]]
    table["ea_ev"] = [1.0 if row == 3 else float("nan") for row in range(len(table))]
    table.loc[3, "smiles"] = "C1CCC("
    (tmp_path / "data").mkdir()
    prior = tmp_path / "data" / "prior.csv"
    table.to_csv(prior, index=False)
    folder = tmp_path / "campaign"
    folder.mkdir()
    result = labloop("validate", _with_prior(write_campaign, folder, prior), "--dry-run")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith(
        f"prior.file: {display_name(prior)} has no value in column 'ea_ev' in a row whose SMILES is a molecule: "
        "nothing to train it on"), result.stderr
