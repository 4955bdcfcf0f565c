"""From a labelled table to a trained, calibrated and evaluated ensemble (what `surrogate train` runs).

Why apart from the ensemble: this is where user data meets the model — invalid SMILES are dropped and
reported, rows without any label are dropped, an optional held-out share is kept aside and scored — and
the same steps serve the CLI, the benchmark and (later) the campaign runner's retraining.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from labloop.core.errors import InvalidInput
from labloop.core.text import plural
from labloop.surrogate.dataset import MoleculeTable
from labloop.surrogate.ensemble import Ensemble, EpochHook, train_ensemble
from labloop.surrogate.featurize import InvalidSmiles, featurize
from labloop.surrogate.fingerprint_cache import FingerprintCache
from labloop.surrogate.metrics import regression_metrics
from labloop.surrogate.presets import Preset
from labloop.surrogate.repeats import Repeats, merged_by_molecule

log = logging.getLogger(__name__)


@dataclass
class TrainingRun:
    """The trained ensemble and what happened on the way."""

    ensemble: Ensemble
    invalid: list[InvalidSmiles]
    n_unlabelled: int
    holdout_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    repeats: Repeats = field(default_factory=Repeats)


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
                                 "repeated_molecules_merged": repeats.rows,
                                 "stereoisomers_merged": repeats.stereo, "holdout": holdout, "seed": seed}
    run = TrainingRun(ens, invalid, n_unlabelled, repeats=repeats)
    if len(held_rows):
        mean, std = ens.predict_features(data.subset(held_rows))
        run.holdout_metrics = {t: regression_metrics(Y[held_rows, j], mean[:, j], std[:, j])
                               for j, t in enumerate(table.targets)}
        ens.info["metrics"]["holdout"] = run.holdout_metrics
    return run
