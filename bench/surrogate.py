"""Surrogate benchmark: accuracy, calibration and speed on a fixed 85/15 split of the bundled data.

Prints one JSON object. Parts (all on by default; pick with --parts):
  featurize  featurisation rate (molecules/s) of labloop's featuriser on 1 and 2 cores against the raw
             RDKit loop (MolFromSmiles + the same fingerprint generators, one core), same molecules,
             --rounds times interleaved (median of the per-round ratios)
  fast       `fast` preset, 5 folds, trained on the 85%: wall time, held-out metrics per target (95%
             coverage overall and per fifth of the members' spread, lowest first), and the coverage a
             factor-only calibration on out-of-fold rows would have given (why labloop does not use it)
  thesis     `thesis` preset: the exact recipe, but --thesis-epochs instead of 5000 (full-batch epochs
             take seconds each; 5000 x 5 folds is a day on 2 cores), with its learning curve
  predict    featurise + predict of 100,000 SMILES with the `fast` model (2 cores, no cache)

Usage: python bench/surrogate.py [--parts featurize,fast,thesis,predict] [--rounds 3] [--thesis-epochs 200]
       [--thesis-folds 2] [--out bench/last_surrogate.json]
Never asserts a time; bench/RESULTS.md records the numbers.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import replace

import numpy as np
import pandas as pd
from rdkit import Chem, RDLogger

from labloop.data import bundled_path
from labloop.surrogate.featurize import FingerprintSettings, featurize
from labloop.surrogate.metrics import Z95, regression_metrics
from labloop.surrogate.presets import get_preset

log = logging.getLogger("bench.surrogate")

SPLIT_SEED = 20261122
TARGETS = ["ie_ev", "ea_ev"]


def split(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The fixed 85/15 split every part uses."""
    order = np.random.default_rng(SPLIT_SEED).permutation(len(df))
    n_test = round(0.15 * len(df))
    return df.iloc[np.sort(order[n_test:])], df.iloc[np.sort(order[:n_test])]


def raw_rdkit_rate(smiles: list[str], settings: FingerprintSettings) -> float:
    """Molecules/s of the plain loop a user would write: parse, then each fingerprint, one core."""
    RDLogger.DisableLog("rdApp.*")
    gens = [g for g, _ in settings.generators()]
    t0 = time.perf_counter()
    for smi in smiles:
        mol = Chem.MolFromSmiles(smi)
        for g in gens:
            (g.GetCountFingerprintAsNumPy if settings.counts else g.GetFingerprintAsNumPy)(mol)
    return len(smiles) / (time.perf_counter() - t0)


def bench_featurize(smiles: list[str], settings: FingerprintSettings, rounds: int) -> dict:
    """Rates of the raw loop and of labloop's featuriser on 1 and 2 cores, ``rounds`` times interleaved.

    Why rounds: on this machine the raw loop's rate alone varies by 10-20% from run to run, so one run of
    each gives a ratio that depends on when it ran. Each round times all four back to back; the ratios are
    taken within a round, and the median over rounds is the headline. ``fingerprints_only`` is the
    featuriser without its descriptor columns: the same work as the raw loop, apples to apples.
    """
    fp_only = replace(settings, descriptors=False)
    per_round = []
    for _ in range(rounds):
        rate = {"raw": raw_rdkit_rate(smiles, settings)}
        for name, s, jobs in (("1core", settings, 1), ("2core", settings, 2), ("1core_fingerprints_only", fp_only, 1)):
            t0 = time.perf_counter()
            featurize(smiles, s, n_jobs=jobs)
            rate[name] = len(smiles) / (time.perf_counter() - t0)
        per_round.append(rate)
        log.info("featurisation round: %s", {k: round(v) for k, v in rate.items()})
    def median(f) -> float:
        return round(float(np.median([f(r) for r in per_round])), 3)
    return {"molecules": len(smiles), "fingerprint": settings.key(), "rounds": rounds,
            "raw_rdkit_per_s": [round(r["raw"]) for r in per_round],
            "labloop_1core_per_s": [round(r["1core"]) for r in per_round],
            "labloop_2core_per_s": [round(r["2core"]) for r in per_round],
            "labloop_1core_fingerprints_only_per_s": [round(r["1core_fingerprints_only"]) for r in per_round],
            "ratio_1core_vs_raw": median(lambda r: r["1core"] / r["raw"]),
            "ratio_1core_vs_raw_per_round": [round(r["1core"] / r["raw"], 3) for r in per_round],
            "ratio_1core_fingerprints_only_vs_raw": median(lambda r: r["1core_fingerprints_only"] / r["raw"]),
            "speedup_2_vs_1": median(lambda r: r["2core"] / r["1core"])}


def train_and_score(preset, train: pd.DataFrame, test: pd.DataFrame, folds: int) -> tuple[dict, object]:
    from labloop.surrogate.ensemble import train_ensemble

    t0 = time.perf_counter()
    feats = featurize(train.smiles.tolist(), preset.fingerprint)
    ens = train_ensemble(feats, train[TARGETS].to_numpy()[feats.rows], TARGETS, preset.fingerprint, preset.model,
                         folds=folds, seed=0, preset=preset.name,
                         on_epoch=lambda k, e, loss, val: log.info("member %d epoch %d val %.4f", k, e + 1, val))
    train_s = time.perf_counter() - t0
    pred = ens.predict(test.smiles.tolist())
    Y = test[TARGETS].to_numpy()[pred.rows]
    result = {
        "preset": preset.name, "folds": folds, "epochs": preset.model.epochs, "n_train": len(train),
        "n_test": len(pred.rows), "train_wall_s": round(train_s, 1),
        "calibration_factor": ens.calibration,
        "calibration_floor_ev": ens.calibration_floor,
        "holdout": {t: regression_metrics(Y[:, j], pred.mean[:, j], pred.std[:, j]) for j, t in enumerate(TARGETS)},
        "holdout_coverage_by_spread_fifth": coverage_by_spread(ens, test, pred, Y),
        "best_epochs": [c["best_epoch"] + 1 for c in ens.info["learning_curves"]],
    }
    return result, ens


def coverage_by_spread(ens, test: pd.DataFrame, pred, Y: np.ndarray) -> dict:
    """Held-out 95% coverage in five equal groups by the members' raw spread (most confident first)."""
    _, spread = ens._raw(featurize(test.smiles.tolist(), ens.fingerprint))
    out = {}
    for j, t in enumerate(TARGETS):
        inside = np.abs(pred.mean[:, j] - Y[:, j]) <= Z95 * pred.std[:, j]
        groups = np.array_split(np.argsort(spread[:, j]), 5)
        out[t] = [round(float(inside[g].mean()), 3) for g in groups]
    return out


def oof_calibration_check(ens, test: pd.DataFrame) -> dict:
    """Held-out coverage if sigma had been calibrated on out-of-fold rows (seen by K-1 members) instead."""
    feats = featurize(test.smiles.tolist(), ens.fingerprint)
    mean, raw_std = ens._raw(feats)
    Y = test[TARGETS].to_numpy()[feats.rows]
    out = {}
    for j, t in enumerate(TARGETS):
        f = ens.info["oof_calibration_factor"][t]
        out[t] = {"oof_factor": round(f, 3), "slice_factor": round(ens.calibration[t], 3),
                  "slice_floor_ev": round(ens.calibration_floor.get(t, 0.0), 4),
                  "holdout_coverage_with_oof_factor": regression_metrics(Y[:, j], mean[:, j], raw_std[:, j] * f)[
                      "coverage95"]}
    return out


def bench_predict(ens, smiles: list[str], n: int = 100_000) -> dict:
    reps = -(-n // len(smiles))
    big = (smiles * reps)[:n]
    t0 = time.perf_counter()
    pred = ens.predict(big, n_jobs=2)
    total = time.perf_counter() - t0
    return {"smiles": n, "featurize_and_predict_s": round(total, 1), "per_s": round(n / total),
            "valid": len(pred.rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="featurize,fast,thesis,predict")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the featurisation timing")
    ap.add_argument("--thesis-epochs", type=int, default=200)
    ap.add_argument("--thesis-folds", type=int, default=2)
    ap.add_argument("--out", default=None, help="also write the JSON here")
    ap.add_argument("-v", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO if args.v else logging.WARNING, stream=sys.stderr)
    parts = set(args.parts.split(","))
    df = pd.read_csv(bundled_path())
    train, test = split(df)
    result: dict = {"data": str(bundled_path().name), "n_train": len(train), "n_test": len(test),
                    "split_seed": SPLIT_SEED, "cores": len(os.sched_getaffinity(0))}
    fast = get_preset("fast")
    if "featurize" in parts:
        result["featurize"] = bench_featurize(df.smiles.tolist(), fast.fingerprint, args.rounds)
    ens = None
    if "fast" in parts or "predict" in parts:
        result["fast"], ens = train_and_score(fast, train, test, folds=5)
        result["fast"]["oof_calibration_check"] = oof_calibration_check(ens, test)
    if "predict" in parts:
        result["predict_100k"] = bench_predict(ens, df.smiles.tolist())
    if "thesis" in parts:
        thesis = get_preset("thesis")
        thesis = replace(thesis, model=thesis.model.model_copy(update={"epochs": args.thesis_epochs}))
        res, tens = train_and_score(thesis, train, test, folds=args.thesis_folds)
        curve = tens.info["learning_curves"][0]
        step = max(1, len(curve["val_loss"]) // 20)
        res["learning_curve_member0"] = {"epoch": list(range(1, len(curve["val_loss"]) + 1, step)),
                                         "loss": [round(v, 5) for v in curve["loss"][::step]],
                                         "val_loss": [round(v, 5) for v in curve["val_loss"][::step]]}
        result["thesis"] = res
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
