"""The thesis's architecture sweep (the thesis: data/SOURCES.md): fingerprint radius x bit length, 25 combinations,
2-fold CV each.

Why keep it: it shows how much the featurisation choice matters on a user's own data, with the same
table the thesis reported. The grid is radius 1-5 x 256-4096 bits; every other setting comes from the
chosen preset (the thesis network by default). Results are ranked by mean out-of-fold MAE.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from labloop.surrogate.dataset import MoleculeTable
from labloop.surrogate.ensemble import EpochHook, train_ensemble
from labloop.surrogate.featurize import featurize
from labloop.surrogate.presets import Preset

log = logging.getLogger(__name__)

RADII: tuple[int, ...] = (1, 2, 3, 4, 5)
BITS: tuple[int, ...] = (256, 512, 1024, 2048, 4096)


def run_sweep(
    table: MoleculeTable,
    preset: Preset,
    *,
    radii: Sequence[int] = RADII,
    bits: Sequence[int] = BITS,
    folds: int = 2,
    seed: int = 0,
    on_done: Callable[[dict], None] | None = None,
    on_epoch: EpochHook | None = None,
) -> pd.DataFrame:
    """One row per (radius, bits): out-of-fold MAE and R^2 per target, ranked by mean MAE. ``on_epoch`` is
    called after every epoch of every member (a cell of the thesis recipe trains for minutes)."""
    rows = []
    for radius in radii:
        for n_bits in bits:
            fp = replace(preset.fingerprint, radius=radius, n_bits=n_bits)
            feats = featurize(table.smiles, fp)
            Y = table.Y[feats.rows]
            keep = ~np.isnan(Y).all(axis=1)
            ens = train_ensemble(feats.subset(keep), Y[keep], table.targets, fp, preset.model, folds=folds,
                                 seed=seed, preset=preset.name, on_epoch=on_epoch)
            row: dict = {"radius": radius, "bits": n_bits}
            oof = ens.info["metrics"]["out_of_fold"]
            for t in table.targets:
                row[f"{t}_mae"] = oof[t]["mae"]
                row[f"{t}_r2"] = oof[t]["r2"]
            row["mean_mae"] = float(np.mean([oof[t]["mae"] for t in table.targets]))
            rows.append(row)
            log.info("sweep r=%d bits=%d: mean MAE %.4f", radius, n_bits, row["mean_mae"])
            if on_done:
                on_done(row)
    return pd.DataFrame(rows).sort_values("mean_mae", kind="stable").reset_index(drop=True)
