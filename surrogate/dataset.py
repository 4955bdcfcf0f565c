"""Reading molecule tables (CSV) with clear errors, and fingerprinting the data that trains a model.

Why: every surrogate command starts from a CSV a user typed the path of; a wrong path, a missing column
or text in a number column must be named in one line, not surface as a pandas traceback. The same holds
for numbers no molecule has: an ``inf``, a ``1e300`` or a column with no value at all trains a model whose
calibration is ``inf``/NaN and whose predictions break every planner, so :func:`read_table` refuses them
for every command that reads a table (``validate``, ``run``, ``backtest``, ``surrogate ...``).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import logging
import math
import re
import zlib
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from labloop.core.errors import InvalidInput, first_line
from labloop.core.text import plural
from labloop.data import bundled_path
from labloop.surrogate.screening import ROLE_TARGET

log = logging.getLogger(__name__)

#: longest SMILES parsed: four times the longest molecule of the bundled data (256 characters); RDKit took
#: 0.06 s for 10,000 characters and 8 s for 100,000 (parse time grows faster than the length)
MAX_SMILES_LENGTH = 1000
#: characters of a skipped SMILES shown in a message
SHOWN_CHARACTERS = 60
#: the largest magnitude a target value may have: every target labloop reads is an energy in eV (IE, EA,
#: orbital energies: the bundled data spans -11.1..11.2 eV, and no molecule's first ionisation energy comes
#: near helium's 24.6 eV, the largest of any atom) or a potential in V (-3..10 V vs Li/Li+). A value beyond
#: 50 is a slip of units (meV; kJ/mol, 96.5 per eV) or garbage, and a 1e300 overflows the label scaling
MAX_ABS_TARGET = 50.0
#: files (and rows) whose too-long SMILES, or whose cells holding a missing-value marker (by column), this process
#: has warned about
_WARNED: set[tuple[str, tuple[int, ...]]] = set()


@dataclass
class MoleculeTable:
    """SMILES (as given) and, optionally, numeric labels (NaN where missing) from one file."""

    path: Path
    smiles: list[str]
    targets: list[str]
    Y: np.ndarray  # shape (n, len(targets)); (n, 0) without targets
    #: per target, the 0-based rows whose cell was a missing-value marker (``read_table``'s ``missing_markers``),
    #: read as missing like an empty cell, with the marker as written: for the caller to count in its warning
    marked: dict[str, dict[int, str]] = field(default_factory=dict)
    #: per target, the 0-based rows whose cell was a bound (``>5.1``, ``<= 1.2``: read only with ``read_table``'s
    #: ``bounds``), missing in ``Y``: (value, +1 above / -1 below)
    bounded: dict[str, dict[int, tuple[float, int]]] = field(default_factory=dict)

    def sha256(self) -> str:
        """Hash of SMILES and labels: identifies the training data in a model manifest."""
        h = hashlib.sha256()
        h.update("\n".join(self.smiles).encode())
        h.update(",".join(self.targets).encode())
        h.update(np.ascontiguousarray(self.Y, dtype=np.float64).tobytes())
        return h.hexdigest()

    def taken(self, rows: np.ndarray) -> MoleculeTable:
        """The table of ``rows`` (0-based, in their order): a seeded slice (:func:`seeded_rows`). The rows'
        missing-value markers and bounds are not carried: :func:`read_table` said them of the file it read."""
        return MoleculeTable(self.path, [self.smiles[r] for r in rows], self.targets, self.Y[rows])


def seeded_rows(n: int, rows: int | None, seed: int) -> np.ndarray:
    """The 0-based rows, in file order, of the seeded slice of ``rows`` of a table's ``n`` (all of them for None or
    ``rows >= n``). One rule for a campaign's ``prior.rows`` (orchestrator/learning/models.py) and ``surrogate
    train --rows`` (orchestrator/cli/surrogate.py): a model trained by hand on a campaign's slice and seed is
    trained on the rows that campaign's prior is."""
    if rows is None or rows >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[:rows])


#: the spread (largest minus smallest value of a target, eV or V) beyond which a molecule's repeated rows are said
#: to disagree. Why 0.1: a molecule measured again repeats its potential to a few tens of mV, and a computed value
#: is the same each time, while the surrogate's own error is 0.12-0.15 eV on the bundled data (bench/RESULTS.md):
#: rows further apart than this differ by more than noise, by as much as the model errs — most likely a mix-up
#: (another reference electrode or solvent, a unit, a sign, a row of another molecule) that their mean would hide
REPEAT_SPREAD = 0.1


#: the target columns labloop reads a meaning into: IE and EA in eV, as ``screen --role`` reads them (a campaign's
#: objective reads the same two)
NAMED_TARGETS = tuple(ROLE_TARGET.values())


def named_target(name: str) -> str:
    """``name`` as labloop spells it when it is one of :data:`NAMED_TARGETS` in another case (``IE_eV``), else as
    written. Why: a column is matched whatever its case, so ``-t IE_eV`` read the same column as ``-t ie_ev``, but the
    model it trained predicted ``IE_eV``, which ``screen --role cathode`` refused, and a campaign's ``prior.targets:
    [IE_eV, EA_eV]`` was refused outright (a lab's trial)."""
    folded = name.strip().casefold()
    return next((target for target in NAMED_TARGETS if target == folded), name)


def unit_of(target: str) -> str:
    """The unit of a target column, by labloop's naming of its columns (``ie_ev``, ``measured_potential_v``):
    V for a name ending in ``_v``, else eV (the surrogate's IE/EA and orbital energies)."""
    return "V" if target.endswith("_v") else "eV"
#: how a file saved by a spreadsheet starts: an .xlsx is a zip, an .xls an OLE2 compound file
SPREADSHEET_MAGIC = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0")
#: how a gzipped file starts (RFC 1952)
GZIP_MAGIC = b"\x1f\x8b"
#: what a spreadsheet should save a table as, for labloop to read it
SAVE_AS = 'save it as "CSV UTF-8 (comma delimited)"'


#: how much of a file's start :func:`unreadable_hint` reads for its header line
HEADER_BYTES = 65536


def unreadable_hint(path: Path, exc: Exception) -> str:
    """What to do with a table pandas could not read as CSV, when the cause is recognisable: a workbook saved
    as .xlsx/.xls (renamed or not), a CSV in another encoding than UTF-8 (what Excel's plain "CSV" writes on
    Windows), or one separated by semicolons or tabs whose rows hold a comma (a name, "2,5-dimethoxy...": its
    header read as one column, and the row as two, a tokenizer's error that named no cause; a chemist's trial);
    empty otherwise."""
    try:
        with path.open("rb") as handle:
            start = handle.read(HEADER_BYTES)
    except OSError:
        return ""
    if start.startswith(SPREADSHEET_MAGIC):
        return f": it is a spreadsheet workbook, not CSV: {SAVE_AS}"
    if isinstance(exc, UnicodeDecodeError):
        return f": its text is not UTF-8: {SAVE_AS}"
    header = start.split(b"\n", 1)[0].decode("utf-8", errors="replace")
    return separator_hint([header]) if isinstance(exc, pd.errors.ParserError) and "," not in header else ""


def unreadable_csv(path: Path, exc: Exception) -> str:
    """The one line of a table pandas could not read as CSV: an empty file said so (pandas says "No columns to parse
    from file"), text that is not UTF-8 by the line (and column) of its first such byte (the codec's "position 4"
    is within a chunk, and named no line: a chemist's trial), a cause :func:`unreadable_hint` recognises by itself
    (pandas' "Error tokenizing data. C error: Expected 1 fields in line 306, saw 2" before the semicolons said only
    what it did not understand: a lab's trial), anything else with pandas' words."""
    if isinstance(exc, pd.errors.EmptyDataError):
        return f"{path}: the file is empty (no header line, no rows)"
    if isinstance(exc, UnicodeDecodeError) and (where := _not_utf8(path)) is not None:
        return f"{path}: its text is not UTF-8 ({where}): {SAVE_AS}"
    hint = unreadable_hint(path, exc)
    return f"{path}: not a readable CSV file{hint}" if hint else f"{path}: not a readable CSV file ({first_line(exc)})"


def _not_utf8(path: Path) -> str | None:
    """``line 3, column 'e_v': byte 0xb5``: where the first byte of ``path`` (plain or ``.gz``) that is no UTF-8
    lies, by the file's line and, past the header, the header's name of its comma-separated field; None when the
    file cannot be read, or decodes."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        start = exc.start
    except (OSError, EOFError, zlib.error):
        return None
    else:
        return None
    if data.startswith(SPREADSHEET_MAGIC):  # a workbook: unreadable_hint says so
        return None
    line = data.count(b"\n", 0, start) + 1
    before = data[data.rfind(b"\n", 0, start) + 1:start]
    header = data.split(b"\n", 1)[0].decode("utf-8", errors="replace").rstrip("\r").split(",")
    field = before.count(b",")
    column = f", column {header[field].strip()!r}" if line > 1 and field < len(header) else ""
    return f"line {line}{column}: byte 0x{data[start]:02x}"


def separator_hint(columns: Sequence[object]) -> str:
    """What to say of a CSV whose one column is a whole line separated by semicolons or tabs (a spreadsheet's
    export in some locales), else nothing."""
    separated = next((name for sep, name in ((";", "semicolons"), ("\t", "tabs"))
                      if len(columns) == 1 and sep in str(columns[0])), None)
    return f": its columns are separated by {separated}, and labloop reads comma-separated CSV ({SAVE_AS})" \
        if separated else ""


#: what a lab's table writes in a cell it has no value for (compared without case and surrounding spaces): a
#: spreadsheet's or an instrument export's ``n/a``, ``NA``, ``NaN``, ``-``, ``ND`` (not determined), read as missing
#: by :func:`read_table` as an empty cell is (a backtest's truth: a trial's table had 11 of them, refused one cell at
#: a time; a chemist's prior writes ``n/a`` for a molecule whose DFT failed)
#: a cell that bounds a value rather than giving it: ``>5.1``, ``> 5.1``, ``>=5.1``, ``≥5.1`` (above), ``<``,
#: ``<=``, ``≤`` (below): how a lab's table writes "no wave up to the solvent's limit"
BOUND_CELL = re.compile(r"\s*(>=?|≥|<=?|≤)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*")


def bound_of(cell: object) -> tuple[float, int] | None:
    """(value, +1 above / -1 below) of a cell written as a bound (:data:`BOUND_CELL`), else None."""
    match = BOUND_CELL.fullmatch(cell) if isinstance(cell, str) else None
    if match is None:
        return None
    return float(match.group(2)), 1 if match.group(1) in (">", ">=", "≥") else -1


#: how a lab's table writes a missing value (matched without case): ``#n/a`` is Excel's for a lookup that found
#: nothing, which stopped a backtest (a lab head's trial)
MISSING_MARKERS = frozenset({"n/a", "na", "nan", "-", "nd", "n.d.", "#n/a"})
#: the minus sign Word, Origin and typeset tables write (U+2212 MINUS SIGN), read as ``-`` in a number cell: it means
#: nothing else there, and a value pasted from Word as -0.037 with it was refused as not a number (a chemist's trial)
MINUS_SIGN = "\u2212"
#: rows a note on missing-value markers names by line (the rest counted)
SHOWN_MARKED_LINES = 5


def markers_written(written: Mapping[int, str], rows: Sequence[int], line_of: Callable[[int], int]) -> str:
    """``write a missing value as 'n/a', 'ND', first at lines 5, 9, 12, 20, 31 and 2 more`` (one row: ``writes a
    missing value as 'n/a', at line 5``): how ``rows`` (0-based, in file order) wrote their missing values,
    ``written`` being a :class:`MoleculeTable`'s ``marked`` of one column, for a note that counts them
    (``read_table``'s warning; a backtest's note on its truth words them the same)."""
    markers = ", ".join(repr(m) for m in dict.fromkeys(written[r] for r in rows))
    return f"{plural(len(rows), 'writes', 'write')} a missing value as {markers}, {at_lines(rows, line_of)}"


def at_lines(rows: Sequence[int], line_of: Callable[[int], int]) -> str:
    """``first at lines 5, 9, 12, 20, 31 and 2 more`` (one row: ``at line 5``): where ``rows`` (0-based, in file
    order) are in the file, at most :data:`SHOWN_MARKED_LINES` of them, for a note that counts them."""
    k = len(rows)
    shown = min(k, SHOWN_MARKED_LINES)
    lines = ", ".join(str(line_of(r)) for r in rows[:shown]) + (f" and {k - shown} more" if k > shown else "")
    return f"{'first ' if k > 1 else ''}at {plural(shown, 'line')} {lines}"


#: the most columns, and the most characters of each name, a message lists (:func:`listed_columns`)
LISTED_COLUMNS, LISTED_NAME_CHARS = 12, 40


def listed_columns(names: Sequence[object]) -> str:
    """``(columns: 'smiles', ' E_ox ')``: a table's column names for a message, each quoted, so that spaces around a
    name (a header typed `` SMILES ``) show; at most :data:`LISTED_COLUMNS` of them, each cut at
    :data:`LISTED_NAME_CHARS` (a trial's file of NUL bytes gave an error line of 8,000 characters)."""
    said = [repr(str(name)) if len(str(name)) <= LISTED_NAME_CHARS else repr(str(name)[:LISTED_NAME_CHARS]) + "..."
            for name in names[:LISTED_COLUMNS]]
    more = f" and {len(names) - LISTED_COLUMNS} more" if len(names) > LISTED_COLUMNS else ""
    return f"(columns: {', '.join(said)}{more})"


def read_table(path: str | Path, targets: list[str] | tuple[str, ...] = (),
               smiles_column: str = "smiles", column_hint: str = "", target_option: str | None = None,
               missing_markers: Collection[str] | None = None, bounds: bool = False,
               columns_found: Callable[[], None] | None = None) -> MoleculeTable:
    """Read ``path``; require the SMILES column and every target column (numbers, empty or a missing-value marker).
    ``column_hint`` ends the message of a missing SMILES column (where its name comes from, for a table a lab wrote);
    ``target_option``, the command-line option the targets were typed in (``--column``), starts the message of a
    missing one, which then names the option the user must correct rather than a "target column" it never saw.
    A target cell reading one of ``missing_markers`` (lower case; None: :data:`MISSING_MARKERS`) is missing, as an
    empty one is, and its row listed in the table's ``marked``. With the default, the reader warns of them, one line
    a column with their count and first lines (:func:`markers_written`), since it read text as no value: a prior, a
    world's truth and ``surrogate ...``'s tables refused ``n/a`` one cell at a time while an empty cell passed. A
    caller that passes its own markers says them itself (a backtest's note on its truth); ``()`` refuses them.
    With ``bounds``, a target cell written as a bound (:data:`BOUND_CELL`) is missing in ``Y`` and kept in the
    table's ``bounded``; without, it is refused as text is, saying it is a bound. ``columns_found`` is called once
    the file and its columns are found, before any value is read: what a caller refuses of a column's name (a
    header naming eV, or no scale: orchestrator/potential_table.py) comes after a missing file or column, which it
    was said instead of (a chemist's trial), and before a damaged value."""
    path = Path(path)
    if (problem := not_a_file(path) or _nul_bytes(path)) is not None:
        raise InvalidInput(f"{path}: {problem}")
    line_of = csv_lines(path)
    if (ragged := ragged_row(path)) is not None:
        raise InvalidInput(f"{path}: {ragged}")
    try:
        names = file_columns(path, (smiles_column, *targets), line_of)
        df = pd.read_csv(path, dtype={names.get(smiles_column, smiles_column): str}, keep_default_na=False,
                         na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, EOFError, OSError,
            zlib.error) as exc:  # EOFError, OSError, zlib.error: a truncated or damaged .gz
        raise InvalidInput(unreadable_csv(path, exc)) from None
    columns = list(df.columns)
    if smiles_column not in names:  # the separator, when it is the cause, is the one thing to say
        raise InvalidInput(f"{path}: no column {smiles_column!r} {listed_columns(columns)}"
                           f"{separator_hint(columns) or column_hint}")
    missing = [t for t in targets if t not in names]
    if missing:
        listed = listed_columns(columns)
        if target_option is not None:
            raise InvalidInput(f"{target_option} {missing[0]}: no such column in {path} {listed}")
        raise InvalidInput(f"{path}: no target column {missing[0]!r} {listed}")
    if columns_found is not None:
        columns_found()
    say_marked = missing_markers is None
    if missing_markers is None:
        missing_markers = MISSING_MARKERS
    Y = np.zeros((len(df), len(targets)))
    marked: dict[str, dict[int, str]] = {}
    bounded: dict[str, dict[int, tuple[float, int]]] = {}
    for j, t in enumerate(targets):
        column = df[names[t]]
        if not pd.api.types.is_numeric_dtype(column):  # text somewhere in the column: a typeset minus is a minus,
            column = column.map(lambda cell: cell.replace(MINUS_SIGN, "-") if isinstance(cell, str) else cell)
            # and a cell of spaces is empty (a spreadsheet's export writes them; refused as "' ' is not a number"
            # where an empty cell was a missing value: a chemist's trial)
            column = column.mask(column.map(lambda cell: isinstance(cell, str) and not cell.strip()))
        if missing_markers:
            is_marker = column.map(lambda cell: isinstance(cell, str) and cell.strip().casefold() in missing_markers)
            marked[t] = {int(row): str(column.iloc[row]).strip()
                         for row in np.flatnonzero(is_marker.to_numpy(dtype=bool))}
            column = column.mask(is_marker)
        values = pd.to_numeric(column, errors="coerce")
        bad = values.isna() & column.notna()
        if bounds and bad.any():
            bounded[t] = {int(row): bound for row in np.flatnonzero(bad.to_numpy())
                          if (bound := bound_of(column.iloc[row])) is not None}
            bad.iloc[list(bounded[t])] = False
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise InvalidInput(f"{path}: line {line_of(row)}, column {names[t]!r}: {column.iloc[row]!r} is not a "
                               f"number{_not_a_number(column.iloc[row])}")
        Y[:, j] = values.to_numpy(dtype=float)
        _check_values(Y[:, j], path, names[t], line_of, bounded=bool(bounded.get(t)))
    if say_marked:
        for t, written in marked.items():
            _warn_marked(path, names[t], written, line_of)
    smiles = ["" if pd.isna(s) else str(s) for s in df[names[smiles_column]]]
    _blank_too_long(smiles, path, line_of)
    log.info("read %d %s from %s", len(smiles), plural(len(smiles), "row"), path)
    return MoleculeTable(path=path, smiles=smiles, targets=list(targets), Y=Y, marked=marked, bounded=bounded)


def _warn_marked(path: Path, column: str, written: Mapping[int, str], line_of: Callable[[int], int]) -> None:
    """One warning line for the cells of ``column`` that held a missing-value marker, if any: ``prior.csv, column
    'ie_ev': 2 rows write a missing value as 'n/a', first at lines 5, 9 (read as missing, as an empty cell is)``;
    once a process (a campaign's prior is read by ``validate`` and again for training), as :func:`_blank_too_long`."""
    if not written:
        return
    rows = sorted(written)
    warned = (f"{path.resolve()}\0{column}", tuple(rows))
    level = logging.INFO if warned in _WARNED else logging.WARNING
    _WARNED.add(warned)
    log.log(level, "%s, column %r: %d %s %s (read as missing, as an empty cell is)", path, column, len(rows),
            plural(len(rows), "row"), markers_written(written, rows, line_of))


def file_columns(path: Path, wanted: Sequence[str], line_of: Callable[[int], int]) -> dict[str, str]:
    """:func:`column_names` of the CSV ``path``'s header, read as written: pandas renames a second ``smiles`` to
    ``smiles.1`` (and reads the first, so a table pasted beside another was read half, without a word), and a
    column really named ``smiles.1`` is no repeat. ``line_of``: the file's :func:`csv_lines`."""
    header = [str(name) for name in pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False)
              .iloc[0]] if path.stat().st_size else []
    return column_names(path, header, wanted, line_of)


def column_names(path: Path, header: Sequence[str], wanted: Sequence[str],
                 line_of: Callable[[int], int] | None = None) -> dict[str, str]:
    """Each of the ``wanted`` columns that ``header`` has, by the name the file writes it with, whatever its case
    (``SMILES`` for ``smiles``: a lab's table names its columns its own way, and an exact match refused one with a
    capital, or took ``smiles`` beside a ``Smiles`` the user meant), and whatever spaces surround it (a header
    `` SMILES `` a spreadsheet kept was no ``smiles``). A wanted column the header gives twice is
    refused (InvalidInput, one line): as written, or in two cases, naming both and the header's line (``line_of``:
    the CSV's lines; None for a file without lines, Parquet), since which one was meant cannot be told."""
    found: dict[str, str] = {}
    for name in wanted:
        same = [column for column in header if column.strip().casefold() == name.strip().casefold()]
        if len(set(same)) > 1:
            first, other = same[0], next(column for column in same if column != same[0])
            where = "" if line_of is None else f"line {line_of(-1)}: "
            spaced = first.strip() != first or other.strip() != other
            raise InvalidInput(f"{path}: {where}columns {first!r} and {other!r} differ only by case"
                               f"{' or surrounding spaces' if spaced else ''}, and labloop matches column names "
                               f"whatever their case{' and surrounding spaces' if spaced else ''}: rename one, or "
                               "remove it")
        if len(same) > 1:
            raise InvalidInput(f"{path}: column {same[0]!r} is given {len(same)} times (columns: "
                               f"{', '.join(header)}): keep one, or rename the others")
        if same:
            found[name] = same[0]
    return found


def _check_values(values: np.ndarray, path: Path, column: str, line_of: Callable[[int], int], bounded: bool = False
                  ) -> None:
    """Refuse a target column holding an infinite value, one beyond :data:`MAX_ABS_TARGET`, or no value at all
    (empty cells are missing labels, which training skips; a column of nothing but those trains nothing), unless
    it holds bounds (``bounded``: a past table's ``>5.1`` rows, which teach without a value)."""
    absurd = ~np.isnan(values) & ~(np.abs(values) <= MAX_ABS_TARGET)  # inf, -inf and 1e300 alike
    if absurd.any():
        row = int(np.flatnonzero(absurd)[0])
        value = float(values[row])
        why = ("an overflow or a division by zero in the sheet it came from, or a damaged file?"
               if not math.isfinite(value) else  # "inf ... kJ/mol?" (a lab head's trial)
               f"mV or meV written as V or eV ({value / 1000:g})? kJ/mol? a damaged file?"
               if abs(value) / 1000 <= MAX_ABS_TARGET else "kJ/mol, or a damaged file?")  # 2300 for 2.3 V: say so
        raise InvalidInput(f"{path}: line {line_of(row)}, column {column!r}: {value:g} is no energy (eV) or "
                           f"potential (V) of a molecule (at most {MAX_ABS_TARGET:g} either way): {why}")
    if len(values) and np.isnan(values).all() and not bounded:
        raise InvalidInput(f"{path}: column {column!r} has no value in any of its {len(values)} "
                           f"{plural(len(values), 'row')}")


#: a cell such as ``4,342``: a number written with a decimal comma (a European spreadsheet's)
DECIMAL_COMMA = re.compile(r"\s*[-+]?\d+,\d+\s*")
#: a cell holding a unit alone (a units row under the header)
UNIT_CELL = re.compile(r"\s*\(?\s*(m?V|m?eV|V vs .*|eV vs .*)\s*\)?\s*", re.IGNORECASE)


def _not_a_number(cell: object) -> str:
    """What a cell that is no number most likely is, for its refusal (a lab head's trial: ``'4,342' is not a number``
    gave no hint of the decimal comma, a units row only "not a number"): '' when nothing is likely."""
    text = str(cell)
    if bound_of(cell) is not None:
        return " (a bound, not a value)"
    if DECIMAL_COMMA.fullmatch(text):
        return f" (a decimal comma: write {text.strip().replace(',', '.')})"
    if UNIT_CELL.fullmatch(text):
        return " (a unit: a units row under the header? put the unit in the column's name, or delete the row)"
    return ""


def not_a_file(path: Path) -> str | None:
    """Why ``path`` cannot be read as an input file (``no such file``, ``is a folder, not a file``), or None: a
    folder named where a file belongs was called missing, which sends the user looking for the wrong thing. A
    missing file named as labloop's own data set is pointed to labloop's copy: the docs name it by the repository's
    ``data/`` folder, which an installed package, or a campaign copied out of the repository, has not beside it (a
    packaging trial: ``validate`` said where it is, ``surrogate train`` and ``backtest`` did not)."""
    if path.is_file():
        return None
    if path.is_dir():
        return "is a folder, not a file"
    if path.exists():
        return "is not a regular file"
    bundled = bundled_path()
    if path.name == bundled.name and bundled.is_file():
        return f"no such file; labloop ships this data set: {bundled} (name it by that path)"
    return "no such file"


def _nul_bytes(path: Path) -> str | None:
    """Why a file whose start holds a NUL byte is no CSV table, or None. Why: a file of NUL bytes was read as a header
    of one column named by 2,000 of them, and the missing-column message printed them all (a lab head's trial); a
    spreadsheet's "Unicode Text" (UTF-16) holds one in every other byte, and a workbook's (:data:`SPREADSHEET_MAGIC`)
    is said as such. A gzipped table (:data:`GZIP_MAGIC`, whatever its name says: ``.GZ`` was refused as damaged, a
    reviewer's probe) is judged once unpacked."""
    try:
        with path.open("rb") as handle:
            start = handle.read(HEADER_BYTES)
    except OSError:
        return None  # the reader says why it cannot be read
    if b"\x00" not in start or start.startswith(GZIP_MAGIC):
        return None
    if start.startswith(SPREADSHEET_MAGIC):
        return f"it is a spreadsheet workbook, not CSV: {SAVE_AS}"
    utf16 = start[:2] in (b"\xff\xfe", b"\xfe\xff")
    return (f"is UTF-16 text (a spreadsheet's \"Unicode Text\"), not a CSV table: {SAVE_AS}" if utf16
            else "holds NUL bytes: a binary or damaged file, not a CSV table")


def too_long(smiles: object) -> str | None:
    """Why ``smiles`` is skipped unparsed (``too long: 1000000 characters, at most 1000``), or None."""
    if isinstance(smiles, str) and len(smiles) > MAX_SMILES_LENGTH:
        return f"too long: {len(smiles)} characters, at most {MAX_SMILES_LENGTH}"
    return None


#: what no SMILES holds: a space (RDKit reads what follows as the molecule's name, so ``CCO`` and ``CCO x``
#: would be two molecules), a control character (an ESC sequence would drive the terminal that shows it)
_NOT_IN_SMILES = re.compile(r"[\s\x00-\x1f\x7f]")


def unusable(smiles: object) -> str | None:
    """Why ``smiles`` is skipped unparsed (too long, or holding what no SMILES holds), or None."""
    if not isinstance(smiles, str):
        return None
    if (reason := too_long(smiles)) is not None:
        return reason
    if not smiles.isascii() or _NOT_IN_SMILES.search(smiles.strip()):
        return "holds a space, a control or a non-ASCII character, which no SMILES has"
    return None


def shown(smiles: str) -> str:
    """``smiles`` for a message: whole, or its start and its length when it is long; an empty one said in words
    (a cell left empty, or one :func:`_blank_too_long` emptied), not as ``''`` (a chemist's trial read that as a
    bug)."""
    if not smiles:
        return f"(empty, or over {MAX_SMILES_LENGTH} characters)"
    if len(smiles) <= SHOWN_CHARACTERS:
        return repr(smiles)
    return f"{smiles[:SHOWN_CHARACTERS]!r}... ({len(smiles)} characters)"


def _blank_too_long(smiles: list[str], path: Path, line_of: Callable[[int], int]) -> None:
    """Empty every SMILES longer than :data:`MAX_SMILES_LENGTH` (an empty cell is an invalid SMILES everywhere,
    so no planner, world or featuriser ever parses it), with one warning line for the file. Rows stay, so
    labels and line numbers still line up."""
    long_rows = [row for row, text in enumerate(smiles) if too_long(text)]
    if not long_rows:
        return
    first = long_rows[0]
    warned = (str(path.resolve()), tuple(long_rows))
    level = logging.INFO if warned in _WARNED else logging.WARNING  # a file is often read twice: warn once
    _WARNED.add(warned)
    log.log(level, "%s: skipped %d SMILES longer than %d characters (too long; the first at line %d has %d)", path,
                len(long_rows), MAX_SMILES_LENGTH, line_of(first), len(smiles[first]))
    for row in long_rows:
        smiles[row] = ""


def csv_line(row: int) -> int:
    """CSV line number (header is line 1) of 0-based data row ``row``."""
    return row + 2


def csv_lines(path: Path) -> Callable[[int], int]:
    """The line of each 0-based data row of the CSV ``path`` as pandas reads it (-1: its header), for messages that
    name a row by its line. Why not :func:`csv_line`'s row + 2: pandas skips blank lines (before the header too),
    and a quoted cell may span lines, so a row after either is further down the file than its number says (a bad
    value after two blank lines was called line 3 of a file that has it on line 5).

    The file is read when the first line is asked for, keeping only the numbers of the lines that start no row
    (few): reading a table without a bad row costs nothing more. A file that cannot be read as text falls back to
    row + 2 (the reader says what is wrong with it in its own words)."""
    scanned: tuple[int, list[int]] | None = None

    def line(row: int) -> int:
        nonlocal scanned
        if scanned is None:
            scanned = _rowless_lines(path)
        header, skipped = scanned
        number = header + row + 1
        for gap in skipped:  # in order: each line before the row's that starts no row moves it one line on
            if gap > number:
                break
            number += 1
        return number

    return line


def ragged_row(path: Path) -> str | None:
    """Where the CSV ``path`` (plain or ``.gz``) first has a row with more fields than its header, in words, or None.
    Why: pandas takes a first data row one field longer than the header as an index column and shifts every column
    of every row by one, and with one column read (a library's SMILES) it takes a later such row's wrong field, both
    in silence: a chemist's library with ``Probe, zweite`` unquoted in its name column read its numbers as SMILES (a
    trial). Fewer fields than the header is pandas' empty cells, and fine. A file that cannot be read as text is
    the reader's to refuse, in its own words."""
    header: int | None = None
    try:
        for _, last, record in _records(path):
            if _blank(record):
                continue
            if header is None:
                if len(record) == 1 and any(sep in record[0] for sep in ";\t"):
                    return None  # separated by semicolons or tabs: the reader's separator_hint says so
                header = len(record)
            elif len(record) > header:
                shown = ",".join(record)
                shown = shown if len(shown) <= 60 else f"{shown[:57]}..."
                return (f"line {last} has {len(record)} comma-separated fields where the header has {header} "
                        f"({shown!r}): a comma inside a cell (a name, a number with a decimal comma) needs the cell in "
                        f"double quotes; {SAVE_AS} from the spreadsheet, which quotes it")
    except (OSError, EOFError, UnicodeDecodeError, zlib.error, csv.Error):
        return None
    return None


def _records(path: Path) -> Iterator[tuple[int, int, list[str]]]:
    """(its first line, its last line, its fields) of each record of the CSV ``path``, plain or ``.gz``, as the csv
    module reads it (a quoted cell may span lines); the file's errors are the caller's to catch."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        last = 0
        for record in reader:
            first, last = last + 1, reader.line_num
            yield first, last, record


def _blank(record: list[str]) -> bool:
    """Whether a record is a blank line, which pandas skips (a line of nothing but spaces is blank too)."""
    return len(record) <= 1 and not "".join(record).strip()


def _rowless_lines(path: Path) -> tuple[int, list[int]]:
    """(the header's line, the lines after it that start no data row: blank ones, which pandas skips, and those a
    quoted cell spans beyond its row's first line) of the CSV ``path``, plain or ``.gz``."""
    header, skipped = 0, []
    try:
        for first, last, record in _records(path):
            if _blank(record):
                if header:
                    skipped.append(first)
                continue
            header = header or first
            skipped.extend(range(first + 1, last + 1))
    except (OSError, EOFError, UnicodeDecodeError, zlib.error, csv.Error):
        return 1, []
    return header or 1, skipped
