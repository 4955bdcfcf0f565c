"""From a labelled table to a trained, calibrated and evaluated ensemble (what `surrogate train` runs).

Why apart from the ensemble: this is where user data meets the model — invalid SMILES are dropped and
reported, rows without any label are dropped, an optional held-out share is kept aside and scored — and
the same steps serve the CLI, the benchmark and (later) the campaign runner's retraining.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from labloop.core.errors import InvalidInput
from labloop.core.text import plural
from labloop.surrogate.dataset import REPEAT_SPREAD, MoleculeTable
from labloop.surrogate.ensemble import Ensemble, EpochHook, train_ensemble
from labloop.surrogate.featurize import InvalidSmiles, canonical_smiles, featurize
from labloop.surrogate.fingerprint_cache import FingerprintCache
from labloop.surrogate.metrics import regression_metrics
from labloop.surrogate.presets import Preset

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Repeats:
    """Rows of a training table that repeat the molecule of an earlier row (by canonical SMILES, however each
    spells it), merged into that row: how many, and the first of them with the row it repeats (0-based).

    ``disagreeing``: the molecules whose rows spread by more than :data:`REPEAT_SPREAD` in some target; of the
    first of them, its rows (0-based, in order), its widest ``spread`` and the index of that target."""

    rows: int = 0
    first: int = -1
    of: int = -1
    disagreeing: int = 0
    spread_rows: tuple[int, ...] = ()
    spread: float = 0.0
    spread_target: int = -1


@dataclass
class TrainingRun:
    """The trained ensemble and what happened on the way."""

    ensemble: Ensemble
    invalid: list[InvalidSmiles]
    n_unlabelled: int
    holdout_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    repeats: Repeats = field(default_factory=Repeats)


def merged_by_molecule(smiles: Sequence[str], rows: np.ndarray, Y: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, Repeats]:
    """One row per molecule of the valid input ``rows`` (labels ``Y``, one row each): the positions in ``rows``
    of each molecule's first row, its labels (per target the mean of the values its rows have, NaN where none
    has one) and what was merged.

    Why merge: one molecule has one fingerprint, so the network can fit only one value for it, and squared
    error over its copies is least at their mean: the mean is what training on every copy would learn, from
    every measurement of it (keeping the first would drop the others for no reason the first has). Why not
    keep the copies: a copy in the members' training folds and another in a validation fold or in the
    calibration slice makes early stopping, the out-of-fold scores and the calibration (sigma too small)
    judge a molecule the members learnt as if it were new, and the molecule weighs twice in the fit.

    Rows whose values spread by more than :data:`REPEAT_SPREAD` are merged too, and counted in the
    :class:`Repeats` for the warning to name: their mean is no better a value than either of them."""
    keys = canonical_smiles([smiles[r] for r in rows])
    first_of: dict[str, int] = {}
    group = np.array([first_of.setdefault(key, position) if key else position  # no molecule: merged with none
                      for position, key in enumerate(keys)], dtype=np.int64)
    repeats = np.flatnonzero(group != np.arange(len(group)))
    if not len(repeats):
        return np.arange(len(group)), Y, Repeats()
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
    first = int(repeats[0])
    found = Repeats(len(repeats), int(rows[first]), int(rows[group[first]]))
    wide = keep[(spreads[keep] > REPEAT_SPREAD).any(axis=1)]
    if not len(wide):
        return keep, merged, found
    target = int(np.argmax(spreads[wide[0]]))
    return keep, merged, replace(found, disagreeing=len(wide), spread=float(spreads[wide[0], target]),
                                 spread_rows=tuple(int(r) for r in rows[group == wide[0]]), spread_target=target)


def merged_table(table: MoleculeTable) -> tuple[MoleculeTable, Repeats]:
    """``table`` with each molecule once, as :func:`merged_by_molecule` merges them (its first row's SMILES, the
    mean of its rows' values), rows that are no molecule kept for the featuriser to report: for ``surrogate
    sweep``, whose cells featurise the table each their own way (a molecule in both of its folds scored a cell
    on what it had learnt)."""
    keep, Y, repeats = merged_by_molecule(table.smiles, np.arange(len(table.smiles)), table.Y)
    return MoleculeTable(table.path, [table.smiles[k] for k in keep], table.targets, Y), repeats


def split_holdout(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) row indices: a seeded random ``fraction`` of the rows is held out."""
    if not 0.0 <= fraction < 1.0:
        raise InvalidInput(f"holdout must be in [0, 1), got {fraction}")
    order = np.random.default_rng(seed).permutation(n)
    n_out = round(fraction * n)
    return np.sort(order[n_out:]), np.sort(order[:n_out])


def train_from_table(
    table: MoleculeTable,
    preset: Preset,
    *,
    folds: int = 5,
    seed: int = 0,
    holdout: float = 0.0,
    cache: FingerprintCache | None = None,
    on_featurized: Callable[[int], None] | None = None,
    on_epoch: EpochHook | None = None,
    out_of_sample_of: str | None = None,
    merge_repeats: bool = False,
) -> TrainingRun:
    """Featurise ``table``, train a ``folds``-member ensemble, score it on the held-out share.

    ``out_of_sample_of``: a target whose labelled rows get their out-of-sample predictions kept in the
    ensemble's ``info["out_of_sample"]``, by SMILES (``smiles``, ``mean``, ``sigma``: see
    :func:`labloop.surrogate.ensemble.train_ensemble`).

    ``merge_repeats``: train on each molecule once (:func:`merged_by_molecule`), as ``surrogate train`` does. A
    campaign's retraining does not: its measured potentials are rows of their own, kept by SMILES as measured
    for their out-of-sample predictions (``out_of_sample_of``), beside the prior's row of the same molecule."""
    if not table.targets:
        raise InvalidInput("at least one --target column is needed to train")
    feats = featurize(table.smiles, preset.fingerprint, cache=cache, progress=on_featurized)
    invalid = feats.invalid
    Y = table.Y[feats.rows]
    repeats = Repeats()
    if merge_repeats:
        keep, Y, repeats = merged_by_molecule(table.smiles, feats.rows, Y)
        feats = feats.subset(keep)
    labelled = ~np.isnan(Y).all(axis=1)
    data, Y = feats.subset(labelled), Y[labelled]
    n_unlabelled = int((~labelled).sum())
    if n_unlabelled:
        log.warning("dropped %d %s without any target value", n_unlabelled, plural(n_unlabelled, "row"))
    train_rows, held_rows = split_holdout(len(data), holdout, seed)
    wanted = None
    if out_of_sample_of is not None:
        wanted = np.flatnonzero(np.isfinite(Y[train_rows, table.targets.index(out_of_sample_of)]))
    ens = train_ensemble(data.subset(train_rows), Y[train_rows], table.targets, preset.fingerprint, preset.model,
                         folds=folds, seed=seed, preset=preset.name, on_epoch=on_epoch, out_of_sample=wanted)
    if wanted is not None:
        kept = ens.info.pop("out_of_sample")
        rows = data.rows[train_rows[np.asarray(kept["positions"], dtype=np.int64)]]
        ens.info["out_of_sample"] = {"smiles": [table.smiles[r] for r in rows], "mean": kept["mean"],
                                     "sigma": kept["sigma"]}
    ens.info["training_data"] = {"file": str(table.path), "sha256": table.sha256(), "rows": len(table.smiles),
                                 "invalid_smiles": len(invalid), "unlabelled": n_unlabelled,
                                 "repeated_molecules_merged": repeats.rows, "holdout": holdout, "seed": seed}
    run = TrainingRun(ens, invalid, n_unlabelled, repeats=repeats)
    if len(held_rows):
        mean, std = ens.predict_features(data.subset(held_rows))
        run.holdout_metrics = {t: regression_metrics(Y[held_rows, j], mean[:, j], std[:, j])
                               for j, t in enumerate(table.targets)}
        ens.info["metrics"]["holdout"] = run.holdout_metrics
    return run
