"""Molecules a training table holds more than once (by canonical SMILES, however each row spells them), and
stereoisomers of one molecule (which its fingerprint does not tell apart), merged into one row each: for ``surrogate
train`` and ``sweep`` (surrogate/training.py) and a campaign's prior (orchestrator/learning/models.py). Why apart
from the training: ``validate`` reads a campaign's prior this way, and must not load TensorFlow to do it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from labloop.surrogate.dataset import REPEAT_SPREAD, MoleculeTable
from labloop.surrogate.featurize import InvalidSmiles, canonical_smiles, stereo_free


@dataclass(frozen=True)
class Repeats:
    """Rows of a training table that repeat the molecule of an earlier row (by canonical SMILES, however each
    spells it), merged into that row: how many, and the first of them with the row it repeats (0-based); and
    ``stereo`` rows, each a stereoisomer of an earlier row's molecule and merged into it, the first of them
    (``stereo_first``) with the row whose molecule it is an isomer of (``stereo_of``).

    ``disagreeing``: the molecules whose rows spread by more than :data:`REPEAT_SPREAD` in some target; of the
    first of them, its rows (0-based, in order), its widest ``spread`` and the index of that target."""

    rows: int = 0
    first: int = -1
    of: int = -1
    disagreeing: int = 0
    spread_rows: tuple[int, ...] = ()
    spread: float = 0.0
    spread_target: int = -1
    stereo: int = 0
    stereo_first: int = -1
    stereo_of: int = -1
    #: whether the first molecule whose rows disagree holds stereoisomers (not only rows of one molecule as written)
    spread_isomers: bool = False


def merged_by_molecule(smiles: Sequence[str], rows: np.ndarray, Y: np.ndarray, *,
                       keys: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray, Repeats]:
    """One row per molecule of the valid input ``rows`` (labels ``Y``, one row each): the positions in ``rows``
    of each molecule's first row, its labels (per target the mean of the values its rows have, NaN where none
    has one) and what was merged.

    Why merge: one molecule has one fingerprint, so the network can fit only one value for it, and squared
    error over its copies is least at their mean: the mean is what training on every copy would learn, from
    every measurement of it (keeping the first would drop the others for no reason the first has). Why not
    keep the copies: a copy in the members' training folds and another in a validation fold or in the
    calibration slice makes early stopping, the out-of-fold scores and the calibration (sigma too small)
    judge a molecule the members learnt as if it were new, and the molecule weighs twice in the fit. Stereoisomers
    (an E and a Z isomer, two enantiomers) are merged for the same reason: the fingerprint does not see stereo
    (:func:`labloop.surrogate.featurize.stereo_free`), so to the network they are one molecule.

    Rows whose values spread by more than :data:`REPEAT_SPREAD` are merged too, and counted in the
    :class:`Repeats` for the warning to name: their mean is no better a value than either of them. ``keys``: the
    rows' canonical SMILES when the caller has them already."""
    keys = canonical_smiles([smiles[r] for r in rows]) if keys is None else keys
    first_of: dict[str, int] = {}
    group = np.array([first_of.setdefault(key, position) if key else position  # no molecule: merged with none
                      for position, key in enumerate(stereo_free(keys))], dtype=np.int64)
    merged_rows = np.flatnonzero(group != np.arange(len(group)))
    if not len(merged_rows):
        return np.arange(len(group)), Y, Repeats()
    as_written: dict[str, int] = {}  # each canonical SMILES's first position: a row after it repeats that molecule
    repeat_of = np.array([as_written.setdefault(key, position) if key else position
                          for position, key in enumerate(keys)], dtype=np.int64)
    repeats = merged_rows[repeat_of[merged_rows] != merged_rows]
    isomers = merged_rows[repeat_of[merged_rows] == merged_rows]
    keep = np.flatnonzero(group == np.arange(len(group)))
    has = ~np.isnan(Y)
    sums, counts = np.zeros_like(Y), np.zeros_like(Y)
    np.add.at(sums, group, np.where(has, Y, 0.0))
    np.add.at(counts, group, has)
    with np.errstate(invalid="ignore"):  # 0 / 0: no row of the molecule has the target, which stays NaN
        merged = sums[keep] / counts[keep]
    lows, highs = np.full_like(Y, np.inf), np.full_like(Y, -np.inf)
    np.fmin.at(lows, group, Y)  # fmin/fmax pass over NaN: a row without the value does not count
    np.fmax.at(highs, group, Y)
    spreads = highs - lows  # -inf where no row of the molecule has the target
    found = Repeats()
    if len(repeats):
        found = replace(found, rows=len(repeats), first=int(rows[repeats[0]]), of=int(rows[repeat_of[repeats[0]]]))
    if len(isomers):
        found = replace(found, stereo=len(isomers), stereo_first=int(rows[isomers[0]]),
                        stereo_of=int(rows[group[isomers[0]]]))
    wide = keep[(spreads[keep] > REPEAT_SPREAD).any(axis=1)]
    if not len(wide):
        return keep, merged, found
    target = int(np.argmax(spreads[wide[0]]))
    members = np.flatnonzero(group == wide[0])
    return keep, merged, replace(found, disagreeing=len(wide), spread=float(spreads[wide[0], target]),
                                 spread_rows=tuple(int(r) for r in rows[members]), spread_target=target,
                                 spread_isomers=len({keys[m] for m in members}) > 1)


def molecules_once(table: MoleculeTable, rows: np.ndarray) -> tuple[MoleculeTable, list[InvalidSmiles], Repeats]:
    """The ``rows`` of ``table`` (0-based, in order) with each molecule once, as :func:`merged_by_molecule` merges
    them, and the rows that are no molecule left out: the table, those rows, and what was merged (its rows the
    table's). For a campaign's prior (orchestrator/learning/models.py), which trained on a molecule's copies as
    molecules of their own and left the unreadable rows to the featuriser's log (a lab bringing its own table), and
    ``surrogate sweep``, whose cells featurise the table each their own way (a molecule in both of its folds scored
    a cell on what it had learnt; its unreadable rows went unsaid and were counted as molecules)."""
    keys = canonical_smiles([table.smiles[r] for r in rows])
    invalid = [InvalidSmiles(int(r), table.smiles[r]) for r, key in zip(rows, keys, strict=True) if not key]
    readable = np.array([bool(key) for key in keys], dtype=bool)
    rows = np.asarray(rows)[readable]
    keep, Y, repeats = merged_by_molecule(table.smiles, rows, table.Y[rows],
                                          keys=[key for key in keys if key])
    return MoleculeTable(table.path, [table.smiles[r] for r in rows[keep]], table.targets, Y), invalid, repeats
