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
            process it started: PSS (shared pages split between their processes; every 5 s) and
            RSS (shared pages counted in each process: an upper bound)
  propose   in a fresh process (so its memory is the proposal's alone, and it never imports TensorFlow):
            `bayes` (Thompson batch of 4) and `greedy` proposals over the largest library's shards, window
            goal, 200 measured molecules and 2 failed ones (``campaign_state``; --bounds N: N more failed ones
            whose scans bound their potential), fitted on one BLAS thread as the runner fits it, the first and then
            --repeats more, scoring the shards in that process, then on a LocalCluster; mean and sd, the
            process's peak RSS, the workers' RSS. For the smallest size also: the default shortlist's batch
            against the whole library's (the in-memory pool planner's) at 100, 150 and 200 measurements

Usage: python bench/scale.py [--sizes 100000,1000000] [--work DIR] [--epochs 2] [--repeats 5] [--bounds 0]
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
    """Peak memory summed over this process and all its descendants, sampled in a thread: RSS (shared pages,
    e.g. TensorFlow's libraries in every worker, counted in each: an upper bound) every ``every_s``, and PSS
    (each shared page counted once, split between the processes sharing it: what the processes really
    occupy together) every ``pss_every_s``. Why PSS less often: reading it walks a process's page tables
    (23 ms for a worker holding TensorFlow, which it stalls meanwhile), so sampling it every 0.5 s took ~5%
    of the two cores from the pipeline it measures; RSS costs microseconds."""

    def __init__(self, every_s: float = 0.5, pss_every_s: float = 5.0) -> None:
        self.every_s, self.pss_every, self._stop = every_s, max(1, round(pss_every_s / every_s)), threading.Event()
        self.peak_pss, self.peak_rss, self.at_peak_mb = 0, 0, []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self, with_pss: bool) -> None:
        me = psutil.Process()
        pss, rss, each = 0, 0, []
        for proc in [me, *me.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):  # a process that ended meanwhile
                if with_pss:
                    info = proc.memory_full_info()
                    pss += info.pss
                    each.append(round(info.pss / 1e6))
                else:
                    info = proc.memory_info()
                rss += info.rss
        if pss > self.peak_pss:
            self.peak_pss, self.at_peak_mb = pss, each
        self.peak_rss = max(self.peak_rss, rss)

    def _run(self) -> None:
        count = 0
        while not self._stop.is_set():
            self._sample(with_pss=count % self.pss_every == 0)
            count += 1
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


class StoredModel:
    """The surrogate as the shards hold it (a :class:`labloop.planners.base.ModelView` without TensorFlow):
    mean - 1.40 V and std of ``ie_ev`` for the molecules it was given."""

    version = 1

    def __init__(self, frame: pd.DataFrame) -> None:
        self.table = dict(zip(frame["smiles"], zip(frame["ie_ev_mean"] - 1.40, frame["ie_ev_std"], strict=True),
                              strict=True))

    def predict(self, smiles: list[str]) -> tuple[np.ndarray, np.ndarray]:
        mu, sigma = zip(*(self.table[s] for s in smiles), strict=True) if smiles else ((), ())
        return np.array(mu, dtype=float), np.array(sigma, dtype=float)


def campaign_state(paths: list[Path], measured: int, failed: int, bounded: int = 0) -> tuple[list, pd.DataFrame]:
    """``measured`` + ``failed`` + ``bounded`` molecules spread evenly over the library (one every ~len/N rows),
    their measured potentials from a fixed rule the descriptors only partly explain (size, nitrogens, and
    substituents: CF3, nitrile, nitro), so the calibration's group or GP learner has something to find. The
    ``bounded`` ones failed as a scan that stopped 0.1 V short of the rule's potential does (its wave rising into
    the vertex, or decaying from the start, alternately): a failure with a bound, which the residual model takes
    in by expectation propagation (planners/residual_gp.py, ``censored_sites``)."""
    import pyarrow.parquet as pq

    from labloop.planners.base import Observation

    picks = []
    total = measured + failed + bounded
    for j in range(total):
        path = paths[j * len(paths) // total]
        frame = pq.read_table(path, columns=["smiles", "valid", "ie_ev_mean", "ie_ev_std"]).to_pandas()
        frame = frame[frame["valid"]]
        picks.append(frame.iloc[(j * 997) % len(frame)])
    chosen = pd.DataFrame(picks).reset_index(drop=True)
    rng = np.random.default_rng(0)
    failing = {(i + 1) * total // (failed + 1) for i in range(failed)}
    rest = [k for k in range(total) if k not in failing]
    bounding = {k: i % 2 == 0 for i, k in enumerate(rest[::len(rest) // bounded][:bounded])} if bounded else {}
    observations = []
    for k, row in chosen.iterrows():
        smiles = row["smiles"]
        if k in failing:
            observations.append(Observation(smiles, {"scan_rate_v_s": 0.1}, None, failure="analysis"))
            continue
        mol = Chem.MolFromSmiles(smiles)
        heavy = mol.GetNumHeavyAtoms()
        shift = (1.9 - 0.02 * heavy + 0.05 * smiles.count("N") + 0.25 * smiles.count("C(F)(F)F")
                 - 0.2 * smiles.count("C#N") + 0.15 * smiles.count("[N+](=O)[O-]"))
        potential = row["ie_ev_mean"] - 1.40 + shift + rng.normal(0, 0.05)
        if k in bounding:  # above: the wave rose into a vertex 0.1 V short of it; below: it decayed from the start
            bound = {"above_v": potential - 0.1} if bounding[k] else {"below_v": potential + 0.1}
            observations.append(Observation(smiles, {"scan_rate_v_s": 0.1}, None, failure="analysis", **bound))
            continue
        observations.append(Observation(smiles, {"scan_rate_v_s": float(rng.choice([0.05, 0.1, 0.2]))},
                                        float(potential), quality=float(rng.uniform(0.5, 1.0))))
    return observations, chosen


def bench_propose(library: Path, model: Path, shards: Path, repeats: int, exact: bool = False,
                  bounded: int = 0) -> dict:
    """Runs in its own process (``--propose-only``): proposals over stored predictions, without TensorFlow.

    ``bayes`` (window probability, Thompson batch of 4) and ``greedy``, with 200 measured molecules and 2
    failed ones (and ``bounded`` failures with a bound), ``repeats`` times each, in this process and on a
    LocalCluster; the first proposal of each
    planner apart (it reads the shards and computes the shortlist's fingerprints; later ones find both
    kept). With ``exact``: the same ``bayes`` proposals with a shortlist as long as the library (what the
    in-memory pool planner proposes, tests/surrogate/test_library_pipeline.py) at three measurement counts,
    to count how often the default shortlist gives the same batch."""
    from threadpoolctl import threadpool_limits

    from labloop.planners.base import PlannerState
    from labloop.planners.conditions import ConditionSpace
    from labloop.planners.feedback import CalibratedModel, DescriptorTable, describe
    from labloop.planners.shard_pool import ShardPoolPlanner
    from labloop.planners.shard_pool import describe as shard_describe
    from labloop.surrogate.compute import dask_client
    from labloop.surrogate.library_pipeline import predict_library

    t0 = time.perf_counter()
    result = predict_library(library, model, shards, describe=shard_describe)  # every shard exists: only reads
    assert result.n_predicted == 0, "run the predict step first"
    lookup_s = time.perf_counter() - t0
    observations, chosen = campaign_state(list(result.paths), 200, 2, bounded)
    stored = StoredModel(chosen)
    space = ConditionSpace({"scan_rate_v_s": (0.05, 0.5)})

    def state(measured: int = 200, step: int = 60) -> PlannerState:
        kept = [o for o in observations if o.failure] + [o for o in observations if not o.failure][:measured]
        return PlannerState("bayes", seed=0, step=step, observations=tuple(kept))

    t1 = time.perf_counter()
    with threadpool_limits(1):  # as the runner fits it, in its proposal (orchestrator/loop/runner.py)
        calibrated = CalibratedModel(stored, state().observations, DescriptorTable())
    out: dict = {"shards": len(result.paths), "rows": result.n_rows, "shard_lookup_s": round(lookup_s, 2),
                 "measured": 200, "failed": 2, "bounded": bounded,
                 "calibration_fit_s": round(time.perf_counter() - t1, 2),
                 "calibration": describe(calibrated.calibration)}
    t1 = time.perf_counter()
    with threadpool_limits(1):
        space.propose(state().observations, 4, seed=0, step=60)
    out["conditions_planner_s"] = round(time.perf_counter() - t1, 3)  # part of every proposal below

    def planner(kind: str, client: object | None, **extra: object) -> ShardPoolPlanner:
        settings = ({"acquisition": "window_probability", "batch": "thompson"} if kind == "bayes"
                    else {"acquisition": "mean", "batch": "independent"})
        return ShardPoolPlanner(kind, lambda version: result, "ie_ev", space, goal="window", window_v=(4.5, 4.6),
                                client=client, **settings, **extra)  # type: ignore[arg-type]

    def timed(planner: ShardPoolPlanner) -> dict:
        times, cpu, batches = [], [], []
        for _ in range(repeats + 1):
            t2, c2 = time.perf_counter(), time.process_time()
            with threadpool_limits(1):  # as the campaign runner proposes (orchestrator/loop/runner.py)
                batches.append([p.smiles for p in planner.propose(state(), 4, calibrated)])
            times.append(time.perf_counter() - t2)
            cpu.append(time.process_time() - c2)
        warm = times[1:]
        return {"first_s": round(times[0], 3), "warm_s": [round(t, 3) for t in warm],
                "this_process_cpu_s": [round(t, 3) for t in cpu],  # a busy machine inflates wall time, not this
                "warm_mean_s": round(float(np.mean(warm)), 3),
                "warm_sd_s": round(float(np.std(warm, ddof=1)) if len(warm) > 1 else 0.0, 3),
                "same_batch_every_time": all(b == batches[0] for b in batches), "batch": batches[0]}

    for kind in ("bayes", "greedy"):
        out[f"{kind}_in_process"] = timed(planner(kind, None))
    # a campaign's proposals: the calibration refitted on two more measurements each time (not timed), so
    # the shortlist changes and its new molecules' fingerprints are computed
    going = planner("bayes", None)
    campaign = []
    for measured in range(190, 201, 2):
        with threadpool_limits(1):
            model_view = CalibratedModel(stored, state(measured).observations, DescriptorTable())
            t2 = time.perf_counter()
            going.propose(state(measured, measured // 4), 4, model_view)
        campaign.append(round(time.perf_counter() - t2, 3))
    out["bayes_in_process_measured_190_to_200_by_2_s"] = campaign
    out["peak_rss_gb_in_process"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9, 3)
    with dask_client() as client:
        for kind in ("bayes", "greedy"):
            out[f"{kind}_on_local_cluster"] = timed(planner(kind, client))
            out[f"{kind}_same_batch_as_in_process"] = (out[f"{kind}_on_local_cluster"]["batch"]
                                                       == out[f"{kind}_in_process"]["batch"])
        out["worker_rss_gb"] = [round(v / 1e9, 3) for v in client.run(lambda: psutil.Process().memory_info().rss
                                                                      ).values()]
    out["peak_rss_gb_runner"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9, 3)
    if exact:
        checks = []
        short, full = planner("bayes", None), planner("bayes", None, shortlist=result.n_rows)
        for measured, step in ((100, 31), (150, 45), (200, 60)):
            model_view = CalibratedModel(stored, state(measured).observations, DescriptorTable())
            with threadpool_limits(1):
                t2 = time.perf_counter()
                shortlisted = [p.smiles for p in short.propose(state(measured, step), 4, model_view)]
                t3 = time.perf_counter()
                whole = [p.smiles for p in full.propose(state(measured, step), 4, model_view)]
            checks.append({"measured": measured, "learner": describe(model_view.calibration),
                           "same_batch": shortlisted == whole, "common": len(set(shortlisted) & set(whole)),
                           "shortlist_s": round(t3 - t2, 2), "whole_library_s": round(time.perf_counter() - t3, 1)})
        out["default_shortlist_vs_whole_library"] = checks
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("LABLOOP_CACHE_DIR", "/tmp")) / "bench-scale")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--propose-only", type=int, metavar="N", help=argparse.SUPPRESS)
    parser.add_argument("--exact", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bounds", type=int, default=0, metavar="N",
                        help="N more failed molecules whose scans bound their potential (default 0)")
    parser.add_argument("--no-propose", action="store_true", help="only the pipeline (predict) part")
    parser.add_argument("--libraries-only", action="store_true", help="only enumerate the library files")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    logging.getLogger("distributed").setLevel(logging.ERROR)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.propose_only:
        model = model_dir(args.work, args.epochs)
        n = args.propose_only
        print(json.dumps(bench_propose(args.work / f"library-{n}.csv", model, args.work / f"shards-{n}", args.repeats,
                                       args.exact, args.bounds)))
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
    report["propose"] = {}
    # the largest; the smallest also against the whole library
    for n in dict.fromkeys([sizes[-1], sizes[0]]) if not args.no_propose else ():
        command = [sys.executable, __file__, "--propose-only", str(n), "--work", str(args.work), "--repeats",
                   str(args.repeats), "--bounds", str(args.bounds), *(["--exact"] if n == sizes[0] else [])]
        proc = subprocess.run(command, capture_output=True, text=True, check=True)
        report["propose"][n] = json.loads(proc.stdout.strip().splitlines()[-1])
    report["load_avg_at_end"] = os.getloadavg()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
