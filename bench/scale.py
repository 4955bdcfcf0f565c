"""Scale benchmark: featurise + predict libraries of 100,000 and 1,000,000 distinct molecules with the chunked
pipeline on a Dask LocalCluster, then time a `bayes` proposal over the stored predictions.

Prints one JSON object. Steps:
  library   enumerates the largest size's distinct molecules deterministically from the bundled data (see
            ``enumerate_library``); each size is the head of that list, ``<work>/library-<N>.csv`` (kept)
  model     a `fast`-preset ensemble (5 members, the default featuriser and network) trained for
            --epochs epochs on 2,000 bundled molecules (kept in ``<work>/model``): its accuracy is irrelevant
            here, its size (what a prediction costs) is the real one
  predict   per size: a LocalCluster with one worker per core (started and closed, time reported apart),
            the pipeline cold (no shards) with the planner's descriptor columns, then warm (every shard
            present); wall seconds, molecules/s, and peak memory summed over this process and every
            process it started, sampled every 0.5 s: PSS (shared pages split between their processes) and
            RSS (shared pages counted in each process: an upper bound)
  propose   in a fresh process (so its memory is the proposal's alone): a `bayes` proposal of 4 over the
            largest library's shards, window goal, 20 measured molecules and 2 failed ones, --repeats times,
            scoring the shards in that process, then on a LocalCluster; mean and sd, and the process's peak RSS

Usage: python bench/scale.py [--sizes 100000,1000000] [--work DIR] [--epochs 2] [--repeats 5]
Never asserts a time; bench/RESULTS.md records the numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
from rdkit import Chem, RDLogger

from labloop.data import bundled_path

log = logging.getLogger("bench.scale")

#: substituents put on aromatic C-H positions, attachment atom first
SUBSTITUENTS = ["F", "Cl", "Br", "C", "CC", "OC", "C#N", "C(F)(F)F", "N(C)C", "C(C)=O", "OC(F)(F)F", "SC",
                "C(=O)OC", "[N+](=O)[O-]", "c1ccccc1", "C(C)(C)C", "N", "O", "S(C)(=O)=O", "C=C"]
_FRAGMENTS = [Chem.MolFromSmiles(s) for s in SUBSTITUENTS]


def decorations(parent: str) -> list[str]:
    """The parent and every single substitution of it: one substituent on one aromatic C-H, in atom then
    substituent order (canonical SMILES; symmetric positions give repeats, removed by the caller)."""
    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(parent)
    if mol is None:
        return []
    sites = [a.GetIdx() for a in mol.GetAtoms() if a.GetIsAromatic() and a.GetSymbol() == "C" and a.GetTotalNumHs()]
    out = [Chem.MolToSmiles(mol)]
    for site in sites:
        for fragment in _FRAGMENTS:
            combo = Chem.RWMol(Chem.CombineMols(mol, fragment))
            combo.AddBond(site, mol.GetNumAtoms(), Chem.BondType.SINGLE)
            try:
                Chem.SanitizeMol(combo)
            except Chem.MolSanitizeException:
                continue
            out.append(Chem.MolToSmiles(combo))
    return out


def enumerate_library(n: int) -> list[str]:
    """The first ``n`` distinct molecules of a fixed enumeration: the bundled molecules in file order, each
    followed by its single aromatic substitutions (:func:`decorations`), duplicates dropped by canonical
    SMILES. Deterministic (two processes, results taken in order), so a 100k library is the first tenth of
    the 1M one."""
    seen: dict[str, None] = {}
    with multiprocessing.get_context("fork").Pool(2) as pool:  # imap keeps the parents' order
        for family in pool.imap(decorations, pd.read_csv(bundled_path())["smiles"], chunksize=20):
            for smiles in family:
                seen.setdefault(smiles)
                if len(seen) == n:
                    pool.terminate()
                    return list(seen)
    raise SystemExit(f"the enumeration gives only {len(seen)} molecules")


def library_files(work: Path, sizes: list[int]) -> dict[int, Path]:
    """``<work>/library-<n>.csv`` for every size, the heads of one enumeration of the largest (kept: made once)."""
    paths = {n: work / f"library-{n}.csv" for n in sizes}
    if not all(p.exists() for p in paths.values()):
        t0 = time.perf_counter()
        molecules = enumerate_library(max(sizes))
        log.info("enumerated %d molecules in %.0f s", len(molecules), time.perf_counter() - t0)
        for n, path in paths.items():
            tmp = path.with_suffix(".tmp")
            pd.DataFrame({"smiles": molecules[:n]}).to_csv(tmp, index=False)
            tmp.rename(path)
    return paths


def model_dir(work: Path, epochs: int) -> Path:
    path = work / "model"
    if not (path / "manifest.json").exists():
        from labloop.surrogate.dataset import MoleculeTable
        from labloop.surrogate.persistence import save_ensemble
        from labloop.surrogate.presets import get_preset
        from labloop.surrogate.training import train_from_table

        df = pd.read_csv(bundled_path()).head(2000)
        table = MoleculeTable(bundled_path(), df["smiles"].tolist(), ["ie_ev", "ea_ev"],
                              df[["ie_ev", "ea_ev"]].to_numpy(dtype=float))
        fast = get_preset("fast")
        preset = replace(fast, model=fast.model.model_copy(update={"epochs": epochs}))
        save_ensemble(train_from_table(table, preset, folds=5, seed=0).ensemble, path)
    return path


class PeakMemory:
    """Peak memory summed over this process and all its descendants, sampled in a thread: PSS (each shared
    page counted once, split between the processes sharing it: what the processes really occupy together),
    and RSS (shared pages, e.g. TensorFlow's libraries in every worker, counted in each: an upper bound)."""

    def __init__(self, every_s: float = 0.5) -> None:
        self.every_s, self._stop = every_s, threading.Event()
        self.peak_pss, self.peak_rss, self.at_peak_mb = 0, 0, []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        pss, rss, each = 0, 0, []
        for proc in [me, *me.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):  # a process that ended meanwhile
                info = proc.memory_full_info()
                pss, rss = pss + info.pss, rss + info.rss
                each.append(round(info.pss / 1e6))
        if pss > self.peak_pss:
            self.peak_pss, self.at_peak_mb = pss, each
        self.peak_rss = max(self.peak_rss, rss)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.every_s)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def bench_predict(library: Path, model: Path, shards: Path) -> dict:
    from labloop.planners.shard_pool import describe
    from labloop.surrogate.compute import dask_client
    from labloop.surrogate.library_pipeline import predict_library

    out: dict = {}
    with PeakMemory() as memory:
        t0 = time.perf_counter()
        with dask_client() as client:
            out["workers"] = len(client.scheduler_info()["workers"])
            out["cluster_start_s"] = round(time.perf_counter() - t0, 1)
            for run in ("cold", "warm"):
                t1 = time.perf_counter()
                result = predict_library(library, model, shards, client=client, describe=describe)
                seconds = time.perf_counter() - t1
                out[run] = {"seconds": round(seconds, 1), "predicted": result.n_predicted, "rows": result.n_rows,
                            "molecules_per_s": round(result.n_rows / seconds)}
        out["total_with_cluster_s"] = round(time.perf_counter() - t0, 1)
    out["peak_pss_all_processes_gb"] = round(memory.peak_pss / 1e9, 2)
    out["pss_per_process_at_peak_mb"] = memory.at_peak_mb  # this process first, then the cluster's
    out["peak_rss_all_processes_gb"] = round(memory.peak_rss / 1e9, 2)
    return out


def bench_propose(library: Path, model: Path, shards: Path, repeats: int) -> dict:
    """Runs in its own process (``--propose-only``): proposals over stored predictions, without TensorFlow."""
    from labloop.planners.base import Observation, PlannerState
    from labloop.planners.conditions import ConditionSpace
    from labloop.planners.feedback import fit_calibration
    from labloop.planners.shard_pool import DESCRIPTOR_COLUMNS, ShardPoolPlanner, describe
    from labloop.surrogate.compute import dask_client
    from labloop.surrogate.library_pipeline import predict_library

    t0 = time.perf_counter()
    result = predict_library(library, model, shards, describe=describe)  # every shard exists: only reads
    assert result.n_predicted == 0, "run the predict step first"
    lookup_s = time.perf_counter() - t0
    first = next(result.frames())
    first = first[first["valid"]].head(22)
    rng = np.random.default_rng(0)
    potentials = first["ie_ev_mean"].to_numpy()[:20] - 1.40 + 1.5 + rng.normal(0, 0.1, 20)
    observations = tuple(Observation(s, {"scan_rate_v_s": 0.1}, float(p), quality=0.8)
                         for s, p in zip(first["smiles"][:20], potentials, strict=True))
    observations += tuple(Observation(s, {"scan_rate_v_s": 0.1}, None, failure="analysis")
                          for s in first["smiles"][20:22])
    measured = first.head(20)
    calibration = fit_calibration(measured["ie_ev_mean"].to_numpy() - 1.40, measured["ie_ev_std"].to_numpy(),
                                  measured[DESCRIPTOR_COLUMNS].to_numpy(), potentials)

    class Model:
        version = 1

    model_view = Model()
    model_view.calibration = calibration  # type: ignore[attr-defined]
    state = PlannerState("bayes", seed=0, step=5, observations=observations)
    out: dict = {"shards": len(result.paths), "rows": result.n_rows, "shard_lookup_s": round(lookup_s, 2)}

    def timed(planner: ShardPoolPlanner) -> dict:
        times, picks = [], None
        for _ in range(repeats):
            t1 = time.perf_counter()
            picks = [p.smiles for p in planner.propose(state, 4, model_view)]
            times.append(time.perf_counter() - t1)
        return {"seconds": [round(t, 3) for t in times], "mean_s": round(float(np.mean(times)), 3),
                "sd_s": round(float(np.std(times, ddof=1)) if len(times) > 1 else 0.0, 3), "batch": picks}

    def planner(client: object | None) -> ShardPoolPlanner:
        space = ConditionSpace({"scan_rate_v_s": (0.05, 0.5)})
        return ShardPoolPlanner("bayes", lambda version: result, "ie_ev", space, goal="window",
                                acquisition="window_probability", window_v=(4.5, 4.6), client=client)

    out["in_process"] = timed(planner(None))
    out["in_process"]["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9, 2)
    with dask_client() as client:
        out["on_local_cluster"] = timed(planner(client))
    out["same_batch"] = out["in_process"]["batch"] == out["on_local_cluster"]["batch"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("LABLOOP_CACHE_DIR", "/tmp")) / "bench-scale")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--propose-only", type=int, metavar="N", help=argparse.SUPPRESS)
    parser.add_argument("--libraries-only", action="store_true", help="only enumerate the library files")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    logging.getLogger("distributed").setLevel(logging.ERROR)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.propose_only:
        model = model_dir(args.work, args.epochs)
        n = args.propose_only
        print(json.dumps(bench_propose(args.work / f"library-{n}.csv", model, args.work / f"shards-{n}", args.repeats)))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.libraries_only:
        print(json.dumps({n: str(p) for n, p in library_files(args.work, sizes).items()}))
        return
    model = model_dir(args.work, args.epochs)
    report: dict = {"cores": os.cpu_count(), "load_avg_at_start": os.getloadavg(), "epochs": args.epochs,
                    "chunk_size": 5000, "predict": {}}
    t0 = time.perf_counter()
    libraries = library_files(args.work, sizes)
    report["library_seconds"] = round(time.perf_counter() - t0, 1)  # ~0 when the files were already there
    for n in sizes:
        shards = args.work / f"shards-{n}"
        shutil.rmtree(shards, ignore_errors=True)  # cold means cold
        report["predict"][n] = bench_predict(libraries[n], model, shards)
        log.info("%d: %s", n, report["predict"][n])
    if len(sizes) > 1:
        small, large = (report["predict"][n]["cold"]["seconds"] for n in (sizes[0], sizes[-1]))
        report["time_ratio_largest_to_smallest"] = round(large / small, 2)
    proc = subprocess.run([sys.executable, __file__, "--propose-only", str(sizes[-1]), "--work", str(args.work),
                           "--repeats", str(args.repeats)], capture_output=True, text=True, check=True)
    report["propose"] = json.loads(proc.stdout.strip().splitlines()[-1])
    report["load_avg_at_end"] = os.getloadavg()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
