"""Tables of redox potentials by molecule that a lab brings: a backtest's truth (``labloop backtest --truth``) and a
campaign's past measurements (``past_measurements``), read one way.

Why one reader: both are a lab's own table (a spreadsheet's export, an instrument's, a colleague's), with the same
hazards: values on another reference scale, missing-value markers, one molecule spelled two ways, rows pasted from
two sources. What it says of them (one line naming the file, line and column; notes on rows left out) is the same
for both, only the option or field the user corrects differs (:class:`Words`).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from labloop.core.errors import ConfigError, InvalidInput
from labloop.core.text import plural
from labloop.instruments.cv_analysis import FERROCENE_VS_LI_V, Quantity
from labloop.orchestrator.config.campaign import LITHIUM_SCALE, Campaign
from labloop.orchestrator.config.fields import POTENTIAL_RANGE_V
from labloop.orchestrator.config.yaml_source import display_name
from labloop.surrogate.dataset import MISSING_MARKERS, REPEAT_SPREAD, at_lines, csv_lines, markers_written, read_table

if TYPE_CHECKING:
    from labloop.planners import ModelView


@dataclass(frozen=True)
class Words:
    """How a message names what the user corrects: the option or field of the value column (``column``) and of the
    scale (``vs``), what the values are (``values``), where the SMILES column's name is set (``smiles``, said
    after a missing SMILES column's name), and whether a header naming no scale needs ``vs`` (``scale_required``)."""

    column: str
    vs: str
    values: str
    smiles: str
    scale_required: bool = False

    def vs_is(self, scale: str) -> str:
        """``--truth-vs fc`` or ``past_measurements.vs: fc``: how to say the scale is ``scale``."""
        return f"{self.vs} {scale}" if self.vs.startswith("--") else f"{self.vs}: {scale}"


#: a backtest's truth table (``labloop backtest --truth FILE --column COL [--truth-vs li|fc]``)
BACKTEST_WORDS = Words("--column", "--truth-vs", "the backtest's truth",
                       ", as the campaign's library does (library.smiles_column)")


#: the reference scales a truth column's header may name (matched without case): what the backtest converts
#: (``--truth-vs fc``), and what it only recognises to refuse, since their place vs Li/Li+ depends on the electrode's
#: filling and the solvent (docs/protocols.md "Potential scales") and no campaign setting holds it
FERROCENE_SCALE = re.compile(r"\bfc\b|\bfc\+|ferrocen", re.IGNORECASE)
#: (Ag+/Ag and Ag|Ag+ too: "E vs Ag+/Ag" was read as vs Li/Li+ in silence, where "vs Ag/Ag+" was refused: a lab's trial)
OTHER_SCALES = re.compile(r"\bsce\b|ag\+?\s*[/|]\s*ag|\bagcl\b|\bshe\b|\bnhe\b|\bsse\b|\bhg/hg", re.IGNORECASE)
#: a header naming an energy in eV (``ie_ev``, ``EA (eV)``): a DFT column, not a potential in V
ENERGY_HEADER = re.compile(r"(\b|_)ev\b", re.IGNORECASE)
#: a header naming millivolts (``E vs Li/Li+ (mV)``, ``e_mv``; not ``mV/s``, a scan rate): 4300 is refused as beyond
#: any potential, but a 4.3 written under such a header was read as 4.3 V in silence (a chemist's trial)
MILLIVOLT_HEADER = re.compile(r"(\b|_)mv\b(?!\s*/\s*s)", re.IGNORECASE)
#: headers naming another quantity of a CV table than a potential, with what they name: a lab's sheet has its scan
#: rates, peak currents and concentrations beside the potentials, and ``scan rate (V/s)`` given as the column was read
#: as potentials of 0.05-0.1 V (a chemist's trial: "0 hits", and a repeat "0.05 V vs Fc+/Fc" against "0.1")
OTHER_QUANTITIES = (
    (re.compile(r"m?v\s*/\s*s\b|scan[\s_-]*rate", re.IGNORECASE), "a scan rate"),
    (re.compile(r"\bcurrent|\(\s*[mµμun]?a\s*\)|_[mµμun]a\b|\bi_?p[ac]?\b", re.IGNORECASE), "a current"),
    (re.compile(r"concentration|\(\s*[mµμ]?m\s*\)|_mm\b|\bmmol", re.IGNORECASE), "a concentration"))
#: what a potential's header says, which keeps one that also names another quantity (``Eapp (V) at 100 mV/s``): the
#: word, a unit of V or mV (not V/s), or an E as a symbol (``E1/2``, ``Epa``, ``E_ox``, ``E0``, ``Eapp``), not a word
#: that starts with e (``electrolyte conc (mM)``, a review)
POTENTIAL_HEADER = re.compile(r"potential|\bm?v\b(?!\s*/\s*s)|(?:^\s*|[\s_(])e(?:$|[\s_(\[/0-9]|1/2|half|p[ac]?\b|app|"
                              r"ox|red)", re.IGNORECASE)

#: the share of a truth table's values, from 2 rows on, that lying nearer the table's median -/+ cell.ferrocene_vs_li_v
#: than its median makes a group on another scale worth a warning. Why: a lab's table pastes rows vs Fc+/Fc among rows
#: vs Li/Li+ (a trial: a third of a table 3.2 V low), and a few molecules far from the rest are molecules, not a scale:
#: the trial's clean table of 1,000 oxidation potentials had 5 such values (0.5%), the mixed one 346 (35%)
MIXED_SCALE_SHARE = 0.02
#: how far, as a share of cell.ferrocene_vs_li_v, two such groups' medians may lie from that offset apart and still be
#: called two scales. Why: a wide but right table (a chemist's, 171 values) was said to "fall in two groups 1.16 V
#: apart, about cell.ferrocene_vs_li_v (3 V)", which a gap a third off the offset is not, and a lab head's trial's
#: right values, the high end of a continuous spread, "two groups 2.36 V apart, about 3.2 V" with one row planted
#: on the wrong scale; a real mix lies within a few tenths of a volt of it (the mixed table: 3.19 V apart at 3.2 V)
MIXED_SCALE_GAP_SHARE = 0.2
#: V vs Li/Li+ of lithium's own couple: a table's potential below it is left out and said (a trial's table of -0.9 V
#: "vs Li/Li+", vs Fc+/Fc in fact, passed in silence; a lab head's trial: one past measurement at -0.5 V, used, pulled
#: every calibration of a backtest to the offset learner, 6 hits for 8 without it), not refused: read_truth refuses
#: only what is no potential at all
LITHIUM_V = 0.0


def truth_offset(path: Path, column: str, truth_vs: str | None, ferrocene_vs_li_v: float,
                 words: Words = BACKTEST_WORDS) -> float:
    """What to add to the truth column's values to put them on the Li/Li+ scale, which every potential in labloop is
    on: 0 for ``--truth-vs li``, ``ferrocene_vs_li_v`` (the campaign's ``cell.ferrocene_vs_li_v``) for ``fc``.
    Without ``truth_vs``, a header that names another scale and not Li/Li+ (``E1/2 (V vs Fc+/Fc)``) is refused
    (InvalidInput, one line saying how to convert): such a table backtested as if vs Li/Li+ found no hit and still
    crowned a leader (a chemist's trial); a header naming no scale (``e_v``) is taken as vs Li/Li+, as documented,
    unless ``words.scale_required`` (a campaign's past measurements: a table vs Fc+/Fc under ``E1/2 (V)``, taken as
    vs Li/Li+, sent 20 scans 3 V beside their molecules, a chemist's trial). A ``fc`` for a header naming Li/Li+ is
    refused too (the values would move by 3 V), and a ``li`` for one naming Fc+/Fc, and so is any header naming eV
    (``ie_ev``: an energy, not a potential), mV (:data:`MILLIVOLT_HEADER`) or another quantity of a CV table
    (:data:`OTHER_QUANTITIES`: a scan rate, a current, a concentration)."""
    if ENERGY_HEADER.search(column):
        raise InvalidInput(f"{path}: column {column!r} names eV, an energy, and labloop takes {words.values} as "
                           f"potentials in V vs Li/Li+ (an energy in eV? name the column of measured potentials)")
    named = next((what for pattern, what in OTHER_QUANTITIES if pattern.search(column)), None)
    if named and not POTENTIAL_HEADER.search(column):
        raise InvalidInput(f"{path}: column {column!r} names {named}, not a potential: labloop takes {words.values} "
                           "as potentials in V (name the column of measured potentials, e.g. 'E1/2 (V vs Fc+/Fc)')")
    if MILLIVOLT_HEADER.search(column):
        raise InvalidInput(f"{path}: column {column!r} names mV, and labloop takes {words.values} in V: convert the "
                           "column to volts (and name it so, e.g. 'E1/2 (V vs Fc+/Fc)')")
    ferrocene, other, lithium = (bool(scale.search(column)) for scale in (FERROCENE_SCALE, OTHER_SCALES,
                                                                          LITHIUM_SCALE))
    if truth_vs is None and words.scale_required and not (ferrocene or other or lithium):
        raise InvalidInput(f"{path}: column {column!r} names no reference scale: give {words.vs_is('li')} for values "
                           f"vs Li/Li+ or {words.vs_is('fc')} for values vs Fc+/Fc (a table on the wrong scale sends "
                           "every experiment volts beside its molecule)")
    if truth_vs == "fc":
        if lithium and not ferrocene:
            raise InvalidInput(f"{path}: column {column!r} names Li/Li+, not Fc+/Fc: drop {words.vs_is('fc')} (or give "
                               f"{words.vs_is('li')})")
        return ferrocene_vs_li_v
    if truth_vs == "li" and ferrocene and not lithium:  # the values would be taken 3 V off (a chemist's trial)
        raise InvalidInput(f"{path}: column {column!r} names Fc+/Fc, not Li/Li+: give {words.vs_is('fc')} to add the "
                           f"campaign's cell.ferrocene_vs_li_v ({ferrocene_vs_li_v:g} V) to each value (or rename the "
                           "column if its values are vs Li/Li+)")
    if truth_vs == "li" or lithium or not (ferrocene or other):
        return 0.0
    if ferrocene:
        raise InvalidInput(f"{path}: column {column!r} names the Fc+/Fc scale, and labloop takes {words.values} as "
                           f"V vs Li/Li+: give {words.vs_is('fc')} to add the campaign's cell.ferrocene_vs_li_v "
                           f"({ferrocene_vs_li_v:g} V) to each value, or {words.vs_is('li')} if the values are vs "
                           "Li/Li+")
    raise InvalidInput(f"{path}: column {column!r} names another reference scale than Li/Li+, and labloop takes "
                       f"{words.values} as V vs Li/Li+: convert the column to V vs Li/Li+ (or to V vs Fc+/Fc and give "
                       f"{words.vs_is('fc')}), or give {words.vs_is('li')} if the values are vs Li/Li+")


@dataclass
class Truth:
    """A truth table as :func:`read_truth` reads it: ``values`` by SMILES as each row writes it (a later spelling
    of a molecule with its first row's value), ``molecules`` by canonical SMILES (each molecule once; ``spelled``:
    as its first row writes it), the ``notes`` to warn of, and ``rows``: how many rows the table has, and how many
    were left out or merged, by why (``--json`` reports them). ``bounds``: by canonical SMILES, (value, +1 above /
    -1 below) of each molecule whose rows only bound its potential (read with ``bounds``; spelled as the others)."""

    values: dict[str, float]
    molecules: dict[str, float]
    notes: list[str]
    rows: dict[str, int]
    spelled: dict[str, str] = field(default_factory=dict)
    bounds: dict[str, tuple[float, int]] = field(default_factory=dict)
    #: what was added to each value to put it on the Li/Li+ scale (:func:`truth_offset`)
    offset_v: float = 0.0


def read_truth(path: Path, column: str, smiles_column: str = "smiles", *, truth_vs: str | None = None,
               ferrocene_vs_li_v: float = FERROCENE_VS_LI_V, words: Words = BACKTEST_WORDS, bounds: bool = False,
               window_v: tuple[float, float] | None = None) -> Truth:
    """The :class:`Truth` of a CSV: its values plus the offset ``truth_vs`` or the column's header says
    (:func:`truth_offset`, judged once the file and the column are known to exist: a missing file or column was
    said as a header naming no scale, a chemist's trial), and notes on the rows not
    taken as they are: SMILES that are no molecule, empty values (a cell holding a missing-value marker,
    :data:`labloop.surrogate.dataset.MISSING_MARKERS`, is one, counted and named: ``n/a`` was refused one cell at
    a time), repeated molecules with the same value (counted once) or another value (and, apart, those more than
    :data:`labloop.surrogate.dataset.REPEAT_SPREAD` apart, as ``surrogate train`` says: 3.2 V apart is a mix-up,
    not a remeasurement), a group of values about ``ferrocene_vs_li_v`` from the rest (:data:`MIXED_SCALE_SHARE`) and
    values below :data:`LITHIUM_V`, left out (refused when every value is).
    :class:`InvalidInput` (one line) for a missing column, a value beyond :data:`POTENTIAL_RANGE_V` (an energy in
    eV, millivolts; an infinite or absurd one is refused by :func:`read_table` already) or a table with no valid
    SMILES and value. A molecule given twice keeps its first value, whichever way each row spells it (by canonical
    SMILES: a later spelling gets the first value too; a lab's table mixes the spellings of several sources).
    With ``bounds``, a cell such as ``>5.1`` (no wave up to 5.1 V) bounds its molecule's potential
    (:data:`labloop.surrogate.dataset.BOUND_CELL`; checked against the same range, on the same scale); a molecule
    another row gives a value keeps the value, and its bounds are left out, said. With ``window_v`` (a campaign's
    ``cell.electrolyte_window_v``), the values taken that lie outside it are said, first line and value: a potential
    where the electrolyte itself reacts is the solvent's or on another scale (a chemist's trial: five values vs
    Li/Li+ under a header vs Fc+/Fc, 7.4-8.4 V, passed in silence and doubled the leave-one-out error); they are
    kept, since another electrolyte's window may hold them."""
    from labloop.surrogate.featurize import canonical_smiles

    offsets: list[float] = []  # the header's scale, judged once read_table has found the file and the column
    table = read_table(path, (column,), smiles_column=smiles_column,  # a lab's table names its columns its way
                       column_hint=f": name its SMILES column {smiles_column!r}{words.smiles}",
                       target_option=words.column, missing_markers=MISSING_MARKERS, bounds=bounds,
                       columns_found=lambda: offsets.append(truth_offset(path, column, truth_vs, ferrocene_vs_li_v,
                                                                         words)))
    offset_v = offsets[0]
    line_of = csv_lines(path)  # its lines after any blank one
    low, high = POTENTIAL_RANGE_V
    shifted = f" (after adding {offset_v:g} V: {words.vs_is('fc')})" if offset_v else ""
    truth: dict[str, float] = {}
    empty: list[int] = []  # rows of a molecule without a value
    conflicts, first_conflict = 0, ""
    same, first_same = 0, ""  # rows repeating a molecule with the value its first row gave
    invalid: list[tuple[int, str]] = []  # (line, as written) of rows whose SMILES is no molecule
    canonical = canonical_smiles(table.smiles)  # "" for a row that is no molecule, judged in one note below
    first_of: dict[str, float] = {}  # by canonical SMILES: the value the molecule's first row gave
    spelled: dict[str, str] = {}  # ... and how that row writes it
    first_row: dict[str, int] = {}  # ... and that row
    rows_of: dict[str, list[int]] = {}  # ... and all its rows with a value
    valued: list[tuple[int, float]] = []  # (row, value) of every row taken
    below: list[tuple[int, float]] = []  # (row, value) of the rows below lithium's potential, left out
    bounded = table.bounded.get(column, {})
    bound_rows: dict[str, int] = {}  # by canonical SMILES: the first row that bounds the molecule
    unit = "V vs Fc+/Fc" if offset_v else "V"  # a value as the table writes it, on its scale where not Li/Li+
    for row, (smiles, value) in enumerate(zip(table.smiles, table.Y[:, 0] + offset_v, strict=True)):
        if not canonical[row]:
            invalid.append((line_of(row), smiles))
            continue
        if row in bounded:
            if not low <= bounded[row][0] + offset_v <= high:
                raise InvalidInput(f"{path}: line {line_of(row)}, column {column!r}: the bound "
                                   f"{bounded[row][0] + offset_v:g}{shifted} lies beyond {low:g}..{high:g} V vs "
                                   "Li/Li+: not a potential (an energy in eV? millivolts?)")
            bound_rows.setdefault(canonical[row], row)
            continue
        if not np.isfinite(value):
            empty.append(row)
            continue
        if not low <= value <= high:
            raise InvalidInput(f"{path}: line {line_of(row)}, column {column!r}: {value:g}{shifted} lies beyond "
                               f"{low:g}..{high:g} V vs Li/Li+: not a potential (an energy in eV? millivolts?)")
        if value < LITHIUM_V:
            below.append((row, float(value)))
            continue
        key = canonical[row]
        if key in first_of and first_of[key] == value:
            same += 1
            first_same = first_same or f"line {line_of(row)} repeats line {line_of(first_row[key])}"
        if key in first_of and first_of[key] != value:
            conflicts += 1
            earlier = first_row[key]
            # each with its value as the table writes it: "another value" alone sent a chemist looking for which; on
            # its scale (a lab head's trial read 3.493 V among potentials vs Li/Li+)
            first_conflict = first_conflict or (f"line {line_of(row)} {smiles!r} ({table.Y[row, 0]:g} {unit}) "
                                                f"repeats line {line_of(earlier)} {table.smiles[earlier]!r} "
                                                f"({table.Y[earlier, 0]:g} {unit})")
        first_row.setdefault(key, row)
        spelled.setdefault(key, smiles)
        rows_of.setdefault(key, []).append(row)
        valued.append((row, float(value)))
        truth.setdefault(smiles, first_of.setdefault(key, float(value)))
    only_bounded = {key: (bounded[row][0] + offset_v, bounded[row][1]) for key, row in bound_rows.items()
                    if key not in first_of}
    for key, row in bound_rows.items():
        spelled.setdefault(key, table.smiles[row])
    if len(only_bounded) < len(bound_rows):
        k = len(bound_rows) - len(only_bounded)
        first_both = next(row for key, row in bound_rows.items() if key in first_of)
        # a value on the wrong side of its molecule's bound ('>1.4' and 1.0) is a mix-up, not a remeasurement: said
        # apart, with both (a chemist's trial read "the value is used" of such a pair)
        against = [(key, row) for key, row in bound_rows.items() if key in first_of
                   and (first_of[key] - (bounded[row][0] + offset_v)) * bounded[row][1] < 0]
        contradiction = ""
        if against:
            key, row = against[0]
            side = ">" if bounded[row][1] > 0 else "<"
            contradiction = (f"; {len(against)} of them {plural(len(against), 'contradicts', 'contradict')} its bound "
                             f"(first: line {line_of(row)} {side}{bounded[row][0]:g} beside line "
                             f"{line_of(first_row[key])}'s {table.Y[first_row[key], 0]:g} {unit}): check those rows")
        notes_first = [f"{k} {plural(k, 'molecule')} of {path} {plural(k, 'has', 'have')} a value in one row and a "
                       f"bound in another (first: line {line_of(first_both)} {table.smiles[first_both]!r}): the value "
                       f"is used{contradiction}"]
    else:
        notes_first = []
    unscreened = "no SMILES of a molecule labloop screens"
    first = f"first at line {invalid[0][0]}: {invalid[0][1]!r}" if invalid else ""
    bad, n_rows = len(invalid), len(table.smiles)
    if not truth and not only_bounded and not below:
        why = (f" ({bad} of its {n_rows} {plural(n_rows, 'row')} {plural(bad, 'is', 'are')} {unscreened}, {first})"
               if invalid else "")
        raise InvalidInput(f"{path}: no row has a valid SMILES and a number in column {column!r}{why}")
    notes = notes_first
    declared = {"fc": ("Fc+/Fc", FERROCENE_SCALE), "li": ("Li/Li+", LITHIUM_SCALE)}.get(truth_vs or "")
    if declared and OTHER_SCALES.search(column) and not declared[1].search(column):
        # declared over a header naming, say, Ag/AgCl: taken as declared, said (a lab head's trial: 0.45 V off, silent)
        notes.append(f"{path}, column {column!r} names another reference scale than the {declared[0]} "
                     f"{words.vs_is(str(truth_vs))} declares: its values are taken as vs {declared[0]}; convert them "
                     "if they are not")
    if invalid:
        notes.append(f"{bad} {plural(bad, 'row')} of {path} {plural(bad, 'is', 'are')} {unscreened} ({first}) and "
                     f"{plural(bad, 'is', 'are')} left out")
    written = table.marked.get(column, {})  # row: the missing-value marker its cell holds
    marked = [row for row in empty if row in written]
    if empty:
        # where each is: a marker's rows by its marker, a blank cell's too (a chemist's trial looked for them)
        blank = [row for row in empty if row not in written]
        said = [f"{len(marked)} of them {markers_written(written, marked, line_of)}"] if marked else []
        if blank:
            said.append(f"{len(blank)} of them blank, {at_lines(blank, line_of)}" if marked else
                        f"blank, {at_lines(blank, line_of)}")
        markers = f" ({'; '.join(said)})"
        # a CV sheet's "n.d." is often "no wave up to the scan's end", which a bound says and a past table learns
        # from (a chemist's trial); a truth table cannot hold bounds
        bound = (": where a row means no wave within the scan, write it as the bound it is (e.g. '>1.9'), which is "
                 "learnt from" if bounds and marked else "")
        notes.append(f"{len(empty)} {plural(len(empty), 'row')} of {path} {plural(len(empty), 'has', 'have')} no "
                     f"finite value in column {column!r}{markers} and {plural(len(empty), 'is', 'are')} left out"
                     f"{bound}")
    if same:  # a trial's table lost such a row without trace: its counts did not add up to its rows
        notes.append(f"{same} {plural(same, 'row')} of {path} {plural(same, 'repeats', 'repeat')} a molecule with "
                     f"the same value ({first_same}): counted once")
    if conflicts:
        notes.append(f"{conflicts} {plural(conflicts, 'row')} of {path} {plural(conflicts, 'repeats', 'repeat')} a "
                     f"molecule with another value (the first: {first_conflict}): the first value is kept, "
                     "however the later rows spell it")
    apart = _apart(rows_of, dict(valued))
    if apart:
        rows, spread = apart[0]
        lines = ", ".join(str(line_of(r)) for r in rows[:5]) + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")
        notes.append(f"{len(apart)} repeated {plural(len(apart), 'molecule')} of {path} "
                     f"{plural(len(apart), 'has', 'have')} values more than {REPEAT_SPREAD:g} V apart (first: lines "
                     f"{lines}, spread {spread:.3f} V), more than a measurement repeats by, and the first value is "
                     "used: check those rows for a mix-up (a reference electrode, a unit, a sign, another molecule's "
                     "row)")
    if valued and (scales := _mixed_scales(valued, ferrocene_vs_li_v, line_of, words, offset_v)) is not None:
        notes.append(f"{path}, column {column!r}: {scales}")
    if below:
        k, (row, value) = len(below), below[0]
        scale = ("" if offset_v else f"; values vs Fc+/Fc, Ag/AgCl or SCE read as vs Li/Li+? declare Fc+/Fc with "
                 f"{words.vs_is('fc')}, convert the others")
        notes.append(f"{k} {plural(k, 'value')} of {path}, column {column!r}, {plural(k, 'lies', 'lie')} below 0 V vs "
                     f"Li/Li+ (first: line {line_of(row)}, {value:g} V{shifted}), where lithium itself deposits, "
                     f"below any couple measured in a lithium electrolyte: {plural(k, 'it is', 'they are')} left "
                     f"out{scale}")
    outside = [] if window_v is None else [(r, v) for r, v in valued if not window_v[0] <= v <= window_v[1]]
    if outside:
        k, (row, value) = len(outside), outside[0]
        scale = ("values vs Li/Li+ among them, declared vs Fc+/Fc?" if offset_v else
                 "values vs Fc+/Fc or another reference among them, taken as vs Li/Li+?")
        notes.append(f"{k} {plural(k, 'value')} of {path}, column {column!r}, {plural(k, 'lies', 'lie')} outside the "
                     f"campaign's cell.electrolyte_window_v {window_v[0]:g}..{window_v[1]:g} V vs Li/Li+ (first: line "
                     f"{line_of(row)}, {value:g} V{shifted}), where its electrolyte reacts itself: kept and learnt "
                     f"from; check {plural(k, 'its', 'their')} reference scale and unit ({scale})")
    if not truth and not only_bounded:
        hint = ("values vs Ag/AgCl or SCE? convert them" if offset_v else "values vs Fc+/Fc, Ag/AgCl or SCE read as "
                f"vs Li/Li+? declare Fc+/Fc with {words.vs_is('fc')}, convert the others")
        raise InvalidInput(f"{path}: every value in column {column!r} lies below 0 V vs Li/Li+ (first: line "
                           f"{line_of(below[0][0])}, {below[0][1]:g} V{shifted}), where lithium itself deposits: "
                           f"{hint}")
    return Truth(truth, first_of, notes, {"rows": n_rows, "invalid_smiles": bad, "no_value": len(empty),
                                          "missing_markers": len(marked), "repeats_with_same_value": same,
                                          "repeats_with_another_value": conflicts,
                                          "repeated_molecules_apart": len(apart), "below_lithium": len(below),
                                          **({"bounds": len(only_bounded)} if bounds else {})},
                 spelled, only_bounded, offset_v)


def _apart(rows_of: Mapping[str, list[int]], value_of: Mapping[int, float]) -> list[tuple[list[int], float]]:
    """The repeated molecules whose rows' values spread by more than ``surrogate train``'s REPEAT_SPREAD, in the
    order of their first rows: each one's rows and spread."""
    found = []
    for rows in rows_of.values():
        values = [value_of[r] for r in rows]
        if len(rows) > 1 and max(values) - min(values) > REPEAT_SPREAD:
            found.append((rows, max(values) - min(values)))
    return found


def _mixed_scales(valued: Sequence[tuple[int, float]], ferrocene_vs_li_v: float, line_of: Callable[[int], int],
                  words: Words, offset_v: float = 0.0) -> str | None:
    """What to say of a truth column whose values hold a group about ``ferrocene_vs_li_v`` below or above the
    rest (:data:`MIXED_SCALE_SHARE`), or None: a value nearer the median -/+ that offset than the median itself is
    where a potential on the other of the Li/Li+ and Fc+/Fc scales would lie. Both groups are said, split midway
    between their medians, each with its size, median and first lines, and which of them the declared scale
    (``offset_v``: 0 for Li/Li+) does not explain, whichever is larger: read as vs Li/Li+, values vs Fc+/Fc sit that
    offset below the rest; read as vs Fc+/Fc, values vs Li/Li+ sit that offset above. Why not the minority alone:
    with most rows vs Fc+/Fc in a column read as vs Li/Li+, the rows it listed were the right ones (a chemist's
    trial)."""
    values = np.array([v for _, v in valued])
    median, half = float(np.median(values)), ferrocene_vs_li_v / 2
    below, above = values[values < median - half], values[values > median + half]
    low_side = len(below) >= len(above)  # the group: a mix shifts the median, and with it the few extreme values
    off = below if low_side else above  # of the other side, which are the rest's own tail
    if len(off) < max(2, MIXED_SCALE_SHARE * len(values)):
        return None
    rest = values[values >= median - half] if low_side else values[values <= median + half]
    split = (float(np.median(off)) + float(np.median(rest))) / 2
    low = [(row, v) for row, v in valued if v < split]
    high = [(row, v) for row, v in valued if v >= split]

    def said(group: list[tuple[int, float]]) -> str:
        k = len(group)
        lines = ", ".join(str(line_of(r)) for r, _ in group[:5]) + (f" and {k - 5} more" if k > 5 else "")
        return f"{k} with median {float(np.median([v for _, v in group])):.2f} V ({plural(k, 'line')} {lines})"

    gap = float(np.median([v for _, v in high]) - np.median([v for _, v in low]))
    if abs(gap - ferrocene_vs_li_v) > MIXED_SCALE_GAP_SHARE * ferrocene_vs_li_v:  # a wide table's tail, not a scale
        return None
    unexplained = (f"the higher group lies where values vs Li/Li+ given {words.vs_is('fc')} would" if offset_v else
                   "the lower group lies where values vs Fc+/Fc read as vs Li/Li+ would")
    # as declared: "since labloop takes them as V vs Li/Li+" read wrong beside a vs: fc (a chemist's trial)
    taken = (f"V vs Fc+/Fc, as {words.vs_is('fc')} declares" if offset_v else "V vs Li/Li+")
    return (f"its {len(values)} values fall in two groups {gap:.2f} V apart, about cell.ferrocene_vs_li_v "
            f"({ferrocene_vs_li_v:g} V): {said(high)} and {said(low)}, V vs Li/Li+; {unexplained}: check the "
            f"reference scale of its rows, since labloop takes {words.values} as {taken}")


#: where the median of a right table's values lies from what the uncalibrated prior predicts for its molecules (V),
#: by quantity: the prior's gas-phase rule (IE - 1.40, EA - 1.40) leaves out the solvation energy, which lowers an
#: oxidation potential and raises a reduction potential in solution by 1.4-2.7 V for 5-40 heavy atoms in acetonitrile
#: (docs/surrogate.md; the simulated worlds' Born term), up to 3 V for the smallest, while a prior trained on values
#: in solution has none; a lab's own systematic error adds :data:`SCALE_SLIP_V` either way. Why: a band around 0
#: warned of every right table (a lab head's trial, 1.39 V below; the docs' own toy, 1.55 V), which taught users to
#: ignore the one line that catches a table on another scale (vs Fc+/Fc taken as vs Li/Li+: 3.2 V further)
EXPECTED_OFFSET_V = {"oxidation_potential": (-3.0, 0.0), "reduction_potential": (0.0, 3.0)}
#: the lab's own systematic error beyond :data:`EXPECTED_OFFSET_V` before :func:`scale_slip` says a table may be on
#: another scale; a warning, not a refusal: an error that large can be real
SCALE_SLIP_V = 0.5


def scale_slip(path: Path, column: str, values: Mapping[str, float], model: ModelView, *, offset_v: float,
               ferrocene_vs_li_v: float, quantity: Quantity, words: Words = BACKTEST_WORDS) -> str | None:
    """What to say of a table whose ``values`` (V vs Li/Li+ after ``offset_v``, by SMILES) lie, by their median
    difference from what ``model`` (the prior) predicts for their molecules, outside where a right table of the
    ``quantity`` lies (:data:`EXPECTED_OFFSET_V`, :data:`SCALE_SLIP_V`), or None: the median difference, and the
    ``vs`` that undoes a Li/Li+ and Fc+/Fc mix-up when it brings the median within. Molecules the model cannot read
    are left out."""
    smiles = list(values)
    predicted, _ = model.predict(smiles)
    differences = [values[s] - p for s, p in zip(smiles, predicted, strict=True) if math.isfinite(p)]
    if not differences:
        return None
    low, high = EXPECTED_OFFSET_V[quantity]
    low, high = low - SCALE_SLIP_V, high + SCALE_SLIP_V
    median = float(np.median(differences))
    if low <= median <= high:
        return None
    n = len(differences)
    said = (f"{display_name(path)}, column {column!r}: its {n} {plural(n, 'value')} {plural(n, 'lies', 'lie')} a "
            f"median {abs(median):.2f} V {'below' if median < 0 else 'above'} what the prior model predicts for "
            f"{plural(n, 'its molecule', 'their molecules')}")
    if median < low and not offset_v and low <= median + ferrocene_vs_li_v <= high:
        return (f"{said}, about cell.ferrocene_vs_li_v ({ferrocene_vs_li_v:g} V) below where a table vs Li/Li+ "
                f"lies, as values vs Fc+/Fc taken as vs Li/Li+ would: if they are vs Fc+/Fc, give {words.vs_is('fc')}")
    if median > high and offset_v and low <= median - ferrocene_vs_li_v <= high:
        return (f"{said}, about cell.ferrocene_vs_li_v ({ferrocene_vs_li_v:g} V) above where a table vs Li/Li+ "
                f"lies, as values vs Li/Li+ taken as vs Fc+/Fc would: if they are vs Li/Li+, give {words.vs_is('li')}")
    taken = ("V vs Fc+/Fc, adding cell.ferrocene_vs_li_v, as declared" if offset_v else "V vs Li/Li+")
    band = (f"{abs(low):.1f} V {'below' if low < 0 else 'above'} and {abs(high):.1f} V "
            f"{'above' if high > 0 else 'below'}")
    return (f"{said}, where a table of {quantity.replace('_', ' ')}s lies between {band} (the prior's gas-phase "
            f"rule leaves out solvation): check their reference scale and unit (labloop takes {words.values} as "
            f"{taken})")


#: a campaign's past measurements (``past_measurements``: :func:`read_past`)
PAST_WORDS = Words("past_measurements.column", "past_measurements.vs", "past measurements",
                   " (or set past_measurements.smiles_column)", scale_required=True)


@dataclass(frozen=True)
class Past:
    """A campaign's past measurements as :func:`read_past` reads them: (SMILES, potential V vs Li/Li+) of each
    molecule once, spelled as the library's first row of it writes it when the library has it (so no planner
    proposes it again) and as the table's first row does otherwise; how many are library molecules, and the
    objective's hits among them all (None: it defines none); the table's ``notes``; and where it came from
    (``source``: file, column, the offset added, SHA-256 and row counts, what the journal keeps beside them);
    ``learnt``: whether anything learns from them (a campaign without a prior has no model to calibrate);
    ``bounds``: (SMILES, bound V vs Li/Li+, +1 above / -1 below) of each molecule the table only bounds (``>5.1``:
    no wave up to 5.1 V), learnt from as a failed scan's bound is, never proposed either."""

    measurements: tuple[tuple[str, float], ...]
    in_library: int
    hits: int | None
    notes: tuple[str, ...]
    source: dict[str, Any]
    learnt: bool = True
    bounds: tuple[tuple[str, float, int], ...] = ()

    def summary(self) -> str:
        """One line for the journal and the terminal: ``12 past measurements and 3 bounds from past.csv (values vs
        Fc+/Fc, 3.2 V added to each; 10 of library molecules, which are not proposed again; 2 hits)`` (the hits are
        the measured values'). The scale, since the report that shows this line had no word of how the values were
        put on the Li/Li+ scale (a chemist's trial)."""
        n, hits, known, b = len(self.measurements), self.hits, self.in_library, len(self.bounds)
        bounds = f" and {b} {plural(b, 'bound')}" if b else ""
        offset = self.source["offset_v"]
        scale = f"values vs Fc+/Fc, {offset:g} V added to each" if offset else "values vs Li/Li+"
        return (f"{n} past {plural(n, 'measurement')}{bounds} from {display_name(Path(self.source['file']))} "
                f"({scale}; {known} of library {plural(known, 'molecule')}, which {plural(known, 'is', 'are')} not "
                "proposed again"
                + ("" if hits is None else f"; {hits} {plural(hits, 'hit')}") + ")"
                + (", learnt from before the first proposal" if self.learnt else
                   "; nothing learns from them: the campaign has no prior"))


    def journalled(self) -> tuple[str, dict[str, Any]]:
        """(message, data) of the journal's ``past_measurements`` event (orchestrator/journal/store.py
        ``Journal.create``): the summary, the counts ``labloop log`` shows, where they came from, what was said of
        the table as it was read (``notes``: a PI reading the report of a campaign whose model erred by 0.67 V could
        not see that ten of its past rows were on another scale, said once on the terminal: a chemist's trial), and
        the measurements and bounds themselves, which the journal keeps so that a resume needs no file."""
        return self.summary(), {"measurements_n": len(self.measurements), "bounds_n": len(self.bounds),
                                "in_library": self.in_library, "hits": self.hits, "notes": list(self.notes),
                                **self.source,
                                "measurements": [list(m) for m in self.measurements],
                                "bounds": [list(b) for b in self.bounds]}


def past_scale_slip(source: Mapping[str, Any], measurements: Sequence[tuple[str, float]], model: ModelView,
                    ferrocene_vs_li_v: float, quantity: Quantity) -> str | None:
    """:func:`scale_slip` of a campaign's past measurements, from where they came (a :class:`Past`'s ``source``, or
    the journal's ``past_measurements`` event, which holds the same) and the values read."""
    return scale_slip(Path(source["file"]), source["column"], dict(measurements), model,
                      offset_v=source["offset_v"], ferrocene_vs_li_v=ferrocene_vs_li_v, quantity=quantity,
                      words=PAST_WORDS)


def forms_said(forms: Sequence[tuple[str, str]], table: str, consequence: str) -> str:
    """One line for the molecules of ``table`` that are a salt, an ion or a stereoisomer of a library molecule
    (:func:`labloop.surrogate.featurize.forms_of`): how many, the first, what follows (``consequence``), and what to do
    where the molecule measured was the library's."""
    n = len(forms)
    first = f"{forms[0][0]!r} of {forms[0][1]!r}" + (f" and {n - 1} more" if n > 1 else "")
    return (f"{n} {plural(n, 'molecule')} of {table} {plural(n, 'is', 'are')} a salt, ion or stereoisomer of a "
            f"library molecule ({first}), not that molecule: {consequence}; where the molecule measured was the "
            "library's, write its SMILES as the library does")


def read_past(campaign: Campaign, library: Sequence[str], budget: int | None = None, *,
              truth: Path | None = None) -> Past | None:
    """The campaign's ``past_measurements`` (None without them), read as a backtest's truth is (:func:`read_truth`:
    its scale by ``vs`` or its header, missing-value markers, repeats, invalid rows named by line; a cell such as
    ``>5.1`` a bound), each molecule matched to the ``library`` (the campaign's rows) by canonical SMILES.
    :class:`ConfigError` naming ``past_measurements.file`` (with its YAML line) for a table that cannot be used, or
    one that holds every library molecule (nothing left to propose); with ``budget``, a note when fewer than that
    many are left. ``truth``: a backtest's table of true values, whose molecules ``library`` is (said so: "every one
    of the 159 library molecules" read as wrong beside a library of 500, a chemist's trial)."""
    from labloop.surrogate.featurize import first_spellings, forms_of

    spec = campaign.past_measurements
    if spec is None:
        return None
    try:
        table = read_truth(spec.file, spec.column, spec.smiles_column, truth_vs=spec.vs,
                           ferrocene_vs_li_v=campaign.cell.ferrocene_vs_li_v, words=PAST_WORDS, bounds=True,
                           window_v=campaign.cell.electrolyte_window_v)
    except InvalidInput as exc:
        raise ConfigError(campaign.located("past_measurements", "file"), str(exc)) from None
    in_library = {key: written for written, key in first_spellings(library).items() if key}
    measurements = tuple((in_library.get(key, table.spelled[key]), value) for key, value in table.molecules.items())
    bounds = tuple((in_library.get(key, table.spelled[key]), value, side)
                   for key, (value, side) in table.bounds.items())
    source = {"file": str(spec.file), "column": spec.column, "offset_v": table.offset_v,
              "sha256": hashlib.sha256(spec.file.read_bytes()).hexdigest(), "rows": table.rows}
    objective = campaign.objective
    hits = sum(objective.is_hit(v) for _, v in measurements) if objective.defines_hits else None
    known = sum(key in in_library for key in (*table.molecules, *table.bounds))
    left = len(in_library) - known
    notes = list(table.notes)
    if forms := forms_of([table.spelled[key] for key in (*table.molecules, *table.bounds)], in_library):
        notes.append(forms_said(forms, display_name(spec.file), "learnt from as molecules of their own, and the "
                                                                  "library's may still be proposed"))
    if not left:  # a run would train its prior, create its journal and end at once, "every molecule tried"
        known_in = "" if truth is None else f" with a true value in {display_name(truth)}"
        split = ("" if truth is None else ": give the backtest a truth table of other molecules than the past "
                 "measurements (split the lab's table in two)")
        raise ConfigError(campaign.located("past_measurements", "file"),
                          f"{display_name(spec.file)} holds every one of the {len(in_library)} library "
                          f"{plural(len(in_library), 'molecule')}{known_in} to choose from: nothing is left to propose"
                          f"{split}")
    if budget is not None and left < budget:
        notes.append(f"{display_name(spec.file)} holds {known} of the library's {len(in_library)} molecules, which "
                     f"leaves {left} to propose: the campaign ends after {left} of its budget.max_experiments {budget}")
    return Past(measurements, known, hits, tuple(notes), source, learnt=campaign.prior is not None, bounds=bounds)

