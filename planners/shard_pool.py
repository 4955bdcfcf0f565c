"""The ``bayes`` and ``greedy`` pool planners over stored predictions: a library of millions in Parquet shards.

Why: :class:`labloop.planners.pool.PoolPlanner` asks the model for every untried molecule and calibrates
every prediction with the residual learners (:mod:`.feedback`), which need each molecule's fingerprints:
fine at 100,000 molecules, minutes at a million. Here the predictions already sit in the shards of
:func:`labloop.surrogate.library_pipeline.predict_library` (run with :func:`describe`, so each row also
carries the cheap descriptors of :data:`labloop.planners.feedback.DESCRIPTORS`), and a proposal has two
stages:

1. **Shortlist, on the shards** (on the Dask workers when a client is given: one task per worker thread, each
   with a fixed share of the shards, so a worker finds its shards in its cache at every proposal; each worker
   reads them by their absolute path, so it must see the shard folder there; else here): every untried
   molecule is scored from its shard's columns alone, with the part of the calibration the descriptors carry
   (:class:`labloop.planners.feedback.DescriptorCalibration`: the posterior of the offset, the descriptor
   weights and the size function, plus the prior variance of the group and GP terms, so a molecule those terms
   could still move keeps the uncertainty they allow). Each task gives back its best ``shortlist`` (row,
   score); the merge keeps the best ``shortlist`` of all (ties by row), and only those rows' SMILES,
   predictions and descriptors are fetched.
2. **Exact, on the shortlist** (here): the full calibration (every learner, with a
   :class:`DescriptorTable` the planner keeps, so a shortlisted molecule is parsed once per planner for
   its fingerprints; its cheap descriptors come from the shard), the failure correction, the first
   batch's design and the batch itself (Thompson draws for ``batch="thompson"``, else the diverse top) by
   the very functions :class:`PoolPlanner` uses (:func:`labloop.planners.pool.fill_batch`).

What is exact and what is not: with a shortlist at least as long as the untried pool, stage 2 sees every
molecule and the proposal is :class:`PoolPlanner`'s (tests/surrogate/test_library_pipeline.py). With a
shorter one, it is exact when the ``offset`` or ``linear`` learner won (stage 1 *is* the calibration then;
only the failure correction, which only lowers scores, and the diversity limit act after it, and a batch
the shortlist cannot fill makes it grow fourfold), and otherwise it is the exact proposal over the
molecules stage 1 ranks highest: a molecule the group or GP term moves from far outside the shortlist into
the batch is missed. The default shortlist (:data:`DEFAULT_SHORTLIST`) is 20 times the Thompson draw's
own (:data:`labloop.planners.batch.SHORTLIST`), which is where the batch comes from; in ``bench/scale.py``
(100,000 molecules, 100-200 measurements, the ``additive`` and ``gp`` learners winning) it gave the whole
library's batch every time (bench/RESULTS.md). Its cost is stage 2's: about 0.25 ms per new shortlisted molecule
(parsing it), so a planner's first proposal takes seconds and later ones only pay for the molecules that
enter the shortlist. The pool's lowest score (towards which the failure correction pulls the signed
acquisitions) is stage 1's when the shortlist is short.

Why the descriptors and not fingerprints in the shards: stage 1 then reads ten numeric columns and the SMILES
per shard (the six descriptor columns are 48 bytes per molecule; packed Morgan bits would add 128-256 bytes
per molecule to the shards and to the pipeline's work, for a term stage 2 computes exactly on a few thousand
molecules). Each process keeps the columns it read (:class:`ShardCache`, up to :data:`CACHE_BYTES`, only the
newest model version): shards never change once written, so the cache changes no result, and the second
proposal on a version reads nothing.

Still a pure function of the journal's state and the stored predictions: candidates are ordered by score,
ties by library row, a SMILES listed twice counts at its first row, and the Thompson draws are seeded by
(seed, step, place). The first batch's calibration design (:mod:`.design`) needs every untried molecule's
size and sigma: three numbers per molecule, gathered from the shards.
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from labloop.core.errors import ClusterLostError, InvalidInput
from labloop.core.version import source_digest
from labloop.planners.acquisition import Acquisition, Goal, acquire
from labloop.planners.base import ModelView, PlannerState, Proposal
from labloop.planners.batch import JointModel
from labloop.planners.conditions import ConditionSpace
from labloop.planners.design import calibration_design
from labloop.planners.feedback import (
    DESCRIPTORS,
    SIZE_DESCRIPTOR,
    Calibration,
    DescriptorCalibration,
    DescriptorTable,
    cheap_descriptors,
)
from labloop.planners.pool import (
    DEFAULT_DIVERSITY,
    Batch,
    FirstBatch,
    best_measured,
    corrected,
    failure_keep,
    fill_batch,
)
from labloop.planners.similarity import SimilarityIndex
from labloop.surrogate.compute import on_same_labloop
from labloop.surrogate.featurize import canonical_smiles
from labloop.surrogate.library_pipeline import ShardSet
from labloop.surrogate.screening import REFERENCE_ABSOLUTE_V

log = logging.getLogger(__name__)

#: the shard columns holding the calibration's descriptors (:data:`labloop.planners.feedback.DESCRIPTORS`)
DESCRIPTOR_COLUMNS = [f"descriptor_{name}" for name in DESCRIPTORS]
#: molecules carried from stage 1 to stage 2 (module docstring)
DEFAULT_SHORTLIST = 4000
#: shard columns a process keeps in memory (about 100 MB per million molecules)
CACHE_BYTES = 512_000_000
_SIZE = list(DESCRIPTORS).index(SIZE_DESCRIPTOR)


def describe(smiles: Sequence[str]) -> dict[str, np.ndarray]:
    """The calibration's cheap descriptors as shard columns (the pipeline's ``describe`` hook)."""
    values = np.array([cheap_descriptors(s) for s in smiles], dtype=float).reshape(len(smiles), len(DESCRIPTORS))
    return {name: values[:, j] for j, name in enumerate(DESCRIPTOR_COLUMNS)}


@dataclass(frozen=True)
class ShardColumns:
    """What the planner reads of one shard: library rows, SMILES as written and canonical (a molecule written
    two ways is one candidate), the target's mean and std (NaN where the model could not read the molecule) and
    the descriptors."""

    row: np.ndarray
    smiles: pa.Array
    canonical: pa.Array
    mean: np.ndarray
    std: np.ndarray
    descriptors: np.ndarray

    @classmethod
    def read(cls, path: Path, target: str) -> ShardColumns:
        wanted = ["row", "smiles", "canonical", "valid", f"{target}_mean", f"{target}_std", *DESCRIPTOR_COLUMNS]
        missing = [c for c in wanted if c not in pq.read_schema(path).names]
        if missing:
            raise InvalidInput(f"{path}: no column {missing[0]!r}; predict the library with "
                               f"describe=labloop.planners.shard_pool.describe")
        table = pq.read_table(path, columns=wanted)
        valid = table.column("valid").to_numpy()
        mean, std = (np.where(valid, table.column(f"{target}_{k}").to_numpy(), np.nan) for k in ("mean", "std"))
        descriptors = np.column_stack([table.column(c).to_numpy() for c in DESCRIPTOR_COLUMNS]).astype(np.float32)
        return cls(table.column("row").to_numpy(), table.column("smiles").combine_chunks(),
                   table.column("canonical").combine_chunks(), mean, std, descriptors)

    @property
    def nbytes(self) -> int:
        return (self.row.nbytes + self.smiles.nbytes + self.canonical.nbytes + self.mean.nbytes + self.std.nbytes
                + self.descriptors.nbytes)


class ShardCache:
    """Shard columns by path, kept while they fit in ``budget`` bytes, for one model version (one shard
    directory) at a time: a new version's first read drops the old one's. Shards are written once (under a
    name that hashes their content) and never change, so what is kept is what a read would give."""

    def __init__(self, budget: int = CACHE_BYTES) -> None:
        self.budget = budget
        self._lock = threading.Lock()
        self._directory: Path | None = None
        self._columns: dict[tuple[Path, str], ShardColumns] = {}
        self._bytes = 0

    def get(self, path: Path, target: str) -> ShardColumns:
        key = (path, target)
        with self._lock:
            found = self._columns.get(key)
        if found is not None:
            return found
        columns = ShardColumns.read(path, target)
        with self._lock:
            if path.parent != self._directory:
                self._directory, self._columns, self._bytes = path.parent, {}, 0
            if self._bytes + columns.nbytes <= self.budget:  # what does not fit is read each time: no thrashing
                self._columns[key] = columns
                self._bytes += columns.nbytes
        return columns


#: this process's shard columns (a Dask worker's: the shards it scored)
_CACHE = ShardCache()


@dataclass(frozen=True)
class ScoreSpec:
    """Everything a shard needs for stage 1: a few numbers and the tried molecules (canonical SMILES, so no other
    spelling of one is proposed again), sent with every shard task."""

    target: str
    acquisition: Acquisition
    goal: Goal
    calibration: DescriptorCalibration
    tried: frozenset[str] = frozenset()
    window_v: tuple[float, float] | None = None
    best_v: float | None = None
    offset_v: float = REFERENCE_ABSOLUTE_V["li"]

    def scored(self, columns: ShardColumns) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(positions in the shard, mean, sigma, stage-1 score) of its readable untried molecules."""
        keep = np.isfinite(columns.mean)
        if self.tried:
            tried = pa.array(sorted(self.tried), type=columns.canonical.type)
            keep &= ~pc.is_in(columns.canonical, value_set=tried).to_numpy(zero_copy_only=False)
        at = np.flatnonzero(keep)
        mu, sigma = self.calibration.apply(columns.mean[at] - self.offset_v, columns.std[at],
                                           columns.descriptors[at])
        return at, mu, sigma, acquire(self.acquisition, mu, sigma, self.goal, window_v=self.window_v,
                                      best_v=self.best_v)


@dataclass(frozen=True)
class Group:
    """Shards scored by one task, and the worker it goes to (None: any, or here)."""

    paths: tuple[Path, ...]
    worker: str | None


@dataclass(frozen=True)
class GroupTop:
    """A group of shards' best ``k`` rows by stage-1 score (best first, ties by row), whether that is all of
    their candidates, and their lowest score (NaN when they had none)."""

    rows: np.ndarray
    scores: np.ndarray
    complete: bool
    lowest: float


def best_rows(rows: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` best ``scores``, best first, ties by ``rows``: a partition finds the k-th score,
    and only what is at least as good gets sorted (a million scores in milliseconds)."""
    if len(scores) > k:
        kth = np.partition(-scores, k - 1)[k - 1]
        candidates = np.flatnonzero(-scores <= kth)
        return candidates[np.lexsort((rows[candidates], -scores[candidates]))][:k]
    return np.lexsort((rows, -scores))


def group_top(paths: Sequence[Path], spec: ScoreSpec, k: int) -> GroupTop:
    """One stage-1 task: score a group of shards and keep their ``k`` best."""
    rows, scores = [np.zeros(0, dtype=np.int64)], [np.zeros(0)]
    for path in paths:
        columns = _CACHE.get(path, spec.target)
        at, _, _, score = spec.scored(columns)
        finite = np.isfinite(score)
        rows.append(columns.row[at[finite]])
        scores.append(score[finite])
    row, score = np.concatenate(rows), np.concatenate(scores)
    best = best_rows(row, score, k)
    lowest = float(score.min()) if len(score) else float("nan")
    return GroupTop(row[best], score[best], len(score) <= k, lowest)


def group_rows(paths: Sequence[Path], target: str, rows: dict[Path, np.ndarray]) -> pd.DataFrame:
    """One stage-2 task: the library rows ``rows[path]`` (sorted) of each shard of a group: SMILES as written and
    canonical, the target's mean and std, the descriptors."""
    frames = [_EMPTY_ROWS]
    for path in paths:
        columns = _CACHE.get(path, target)
        at = np.searchsorted(columns.row, rows[path])
        taken = pa.array(at)
        frames.append(pd.DataFrame({"row": columns.row[at], "smiles": columns.smiles.take(taken).to_pylist(),
                                    "canonical": columns.canonical.take(taken).to_pylist(),
                                    "mean": columns.mean[at], "std": columns.std[at],
                                    **dict(zip(DESCRIPTOR_COLUMNS, columns.descriptors[at].astype(float).T,
                                               strict=True))}))
    return pd.concat(frames, ignore_index=True)


def design_columns(paths: Sequence[Path], spec: ScoreSpec) -> pd.DataFrame:
    """One task: what the first batch's design needs of a group of shards (row, size term, sigma, a SMILES
    hash of the canonical SMILES)."""
    frames = []
    for path in paths:
        columns = _CACHE.get(path, spec.target)
        at, _, sigma, _ = spec.scored(columns)
        canonical = columns.canonical.take(pa.array(at)).to_numpy(zero_copy_only=False)
        frames.append(pd.DataFrame({"row": columns.row[at], "size": columns.descriptors[at, _SIZE].astype(float),
                                    "sigma": sigma, "hash": pd.util.hash_array(canonical.astype(object))}))
    return pd.concat(frames, ignore_index=True)


def predicted_extreme(paths: Sequence[Path], spec: ScoreSpec) -> tuple[float, float]:
    """One task: (lowest, highest) stage-1 mean of a group's untried molecules (NaN when none); exact when
    it is asked for (EI and PI before any measurement: no calibration yet)."""
    mu = np.concatenate([np.zeros(0), *(spec.scored(_CACHE.get(path, spec.target))[1] for path in paths)])
    return (float(mu.min()), float(mu.max())) if len(mu) else (float("nan"), float("nan"))


def _on_worker(function: Callable, paths: Sequence[Path], *args: object) -> object:
    """``function(paths, *args)`` as a Dask task; a shard the worker cannot open is :class:`ClusterLostError`
    naming the worker and what it needs. Why: the workers read the shards from their own filesystem (they are
    not shipped: stage 1 is fast because each worker keeps its shards' columns between proposals), and
    pyarrow's "Failed to open local file" said neither which worker nor that it must see the store's
    predictions folder at the same absolute path. A shard missing from a folder the worker does see is no such
    thing (a review: it was called a lost cluster, and the advice to restart it met the same error), and is raised
    as it came."""
    try:
        return function(paths, *args)
    except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
        if isinstance(exc, FileNotFoundError) and paths[0].parent.is_dir():
            raise  # the worker sees the folder and a shard is missing from it: not the worker's view of the disk
        from distributed import get_worker

        raise ClusterLostError(f"Dask worker {get_worker().address} cannot read the library's shards in "
                               f"{paths[0].parent}: every worker must read the store's predictions folder at that "
                               f"same path (a shared filesystem, or workers on this machine)") from None


#: a stage-2 fetch that found nothing
_EMPTY_ROWS = pd.DataFrame({"row": pd.Series(dtype=np.int64), "smiles": pd.Series(dtype=object),
                            "canonical": pd.Series(dtype=object),
                            "mean": pd.Series(dtype=float), "std": pd.Series(dtype=float),
                            **{c: pd.Series(dtype=float) for c in DESCRIPTOR_COLUMNS}})


class _Shortlisted:
    """The joint posterior (:class:`JointModel`) of shortlisted molecules from their stored predictions."""

    def __init__(self, calibration: Calibration, table: DescriptorTable, shortlist: pd.DataFrame,
                 offset_v: float) -> None:
        self.calibration, self.table = calibration, table
        self.index = {s: i for i, s in enumerate(shortlist["smiles"])}
        self.mu = shortlist["mean"].to_numpy() - offset_v
        self.sigma = shortlist["std"].to_numpy()

    def posterior(self, smiles: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        at = [self.index[s] for s in smiles]
        return self.calibration.posterior(self.mu[at], self.sigma[at], smiles, self.table)


@dataclass
class ShardPoolPlanner:
    """:class:`labloop.planners.pool.PoolPlanner` over stored predictions (see the module docstring).

    ``shards(version)`` gives the library's shards predicted by that model version; ``target`` is the
    model's column the objective comes from (``ie_ev`` for oxidation, ``ea_ev`` for reduction) unless the
    model view names another (its ``column`` and ``offset_v``: a retrained network's measured-potential
    output, :class:`labloop.orchestrator.learning.models.ObjectiveModel`); ``client``: a
    ``distributed.Client`` to score the shards on, None to score them here; ``batch`` as for
    :class:`PoolPlanner` (``thompson`` for ``bayes`` campaigns with ``planner.batch: thompson``);
    ``descriptors``: the fingerprints and descriptors of shortlisted molecules, kept between proposals.
    """

    name: str
    shards: Callable[[int], ShardSet]
    target: str
    conditions: ConditionSpace
    goal: Goal
    acquisition: Acquisition
    window_v: tuple[float, float] | None = None
    diversity: float = DEFAULT_DIVERSITY
    first_batch: FirstBatch = "design"
    similarity: SimilarityIndex = field(default_factory=SimilarityIndex)
    shortlist: int = DEFAULT_SHORTLIST
    client: object | None = None
    learns: bool = True
    batch: Batch = "independent"
    descriptors: DescriptorTable | None = None

    def __post_init__(self) -> None:
        if self.descriptors is None:
            self.descriptors = DescriptorTable(self.similarity)

    def propose(self, state: PlannerState, n: int, model: ModelView | None = None) -> list[Proposal]:
        if model is None:
            raise ValueError(f"the {self.name} planner needs a surrogate model")
        paths = list(self.shards(model.version).paths)
        calibration: Calibration = getattr(model, "calibration", Calibration(0))
        spec = ScoreSpec(getattr(model, "column", None) or self.target, self.acquisition, self.goal,
                         calibration.by_descriptors(), frozenset(canonical_smiles(sorted(state.tried))) - {""},
                         self.window_v, best_measured(state, self.goal))
        if (offset := getattr(model, "offset_v", None)) is not None:
            spec = replace(spec, offset_v=offset)
        if spec.acquisition in ("ei", "pi") and spec.best_v is None:
            spec = self._with_predicted_best(self._groups(paths), spec)
        design = np.zeros(0, dtype=np.int64)
        if self.first_batch == "design" and not state.measured and not state.pending:
            design = self._design(self._groups(paths), spec, n)
        k = max(1, self.shortlist)
        groups = self._groups(paths)
        while True:
            tops: list[GroupTop] = self._map(group_top, groups, spec, k)
            scores = np.concatenate([np.zeros(0), *(t.scores for t in tops)])
            rows = np.concatenate([np.zeros(0, dtype=np.int64), *(t.rows for t in tops)])
            complete = all(t.complete for t in tops) and len(rows) <= k
            rows = np.union1d(rows[best_rows(rows, scores, k)], design)
            low = min([0.0, *(t.lowest for t in tops if np.isfinite(t.lowest))])
            frame = self._rows(paths, groups, rows, spec.target)
            frame = frame.drop_duplicates("canonical", keep="first")  # in row order: a molecule's first spelling
            picks = self._exact(frame, spec, state, n, calibration, design, None if complete else low, model)
            if len(picks[1]) >= n or complete:
                break
            k *= 4
            log.info("a shortlist of %d did not fill the batch; scoring again with %d", k // 4, k)
        shortlist, chosen, mu, sigma, score = picks
        settings = self.conditions.propose(state.observations, len(chosen), seed=state.seed, step=state.step)
        return [Proposal(smiles=shortlist[i], conditions=c, mu=float(mu[i]), sigma=float(sigma[i]),
                         acquisition=float(score[i]), model_version=model.version, planner=self.name,
                         design=place < len(design))  # fill_batch keeps the design's picks first
                for place, (i, c) in enumerate(zip(chosen, settings, strict=True))]

    def _exact(self, frame: pd.DataFrame, spec: ScoreSpec, state: PlannerState, n: int, calibration: Calibration,
               design: np.ndarray, low: float | None, model: ModelView
               ) -> tuple[list[str], list[int], np.ndarray, np.ndarray, np.ndarray]:
        """Stage 2 on the shortlist ``frame`` (module docstring): (its SMILES, the batch as indices into
        them, calibrated mean, sigma, corrected score). ``low``: the pool's lowest score when ``frame`` is
        not the whole pool."""
        smiles = frame["smiles"].tolist()
        table = self.descriptors
        assert table is not None
        table.add(smiles, frame[DESCRIPTOR_COLUMNS].to_numpy())
        mu, sigma = calibration.apply(frame["mean"].to_numpy() - spec.offset_v, frame["std"].to_numpy(), smiles,
                                      table)
        score = acquire(self.acquisition, mu, sigma, self.goal, window_v=self.window_v, best_v=spec.best_v)
        keep = failure_keep(self.similarity, smiles, state.failed_analyses)
        if low is not None and np.isfinite(score).any():
            low = min(low, float(np.nanmin(score)))
        score = corrected(score, keep, low)
        position = {r: i for i, r in enumerate(frame["row"].tolist())}
        chosen = [position[r] for r in design.tolist()]
        joint = (_Shortlisted(calibration, table, frame, spec.offset_v)
                 if self.batch == "thompson" and isinstance(model, JointModel) else None)
        return smiles, fill_batch(self, state, smiles, score, keep, n, chosen, joint), mu, sigma, score

    def _groups(self, paths: Sequence[Path]) -> list[Group]:
        """The shards split into one group per worker thread (in library order), each with the worker it is
        sent to, so a worker scores the same shards at every proposal and finds them in its cache; here,
        one group of all. With fewer shards than threads, some threads get no group (no empty task)."""
        if self.client is None:
            return [Group(tuple(paths), None)]
        threads = [w for w, n in sorted(self.client.nthreads().items()) for _ in range(n)] or [None]
        bounds = np.linspace(0, len(paths), len(threads) + 1).round().astype(int)
        return [Group(tuple(paths[a:b]), w) for a, b, w in zip(bounds[:-1], bounds[1:], threads, strict=True)
                if b > a]

    def _map(self, function: Callable, groups: Sequence[Group], *args: object) -> list:
        """``function(group.paths, *args)`` for every group, each on its worker (any other if that one is
        gone), or here."""
        if self.client is None:
            return [function(group.paths, *args) for group in groups]
        futures = [self.client.submit(on_same_labloop, source_digest(), _on_worker, function, group.paths, *args,
                                      workers=group.worker, allow_other_workers=True, pure=False) for group in groups]
        return self.client.gather(futures)

    def _with_predicted_best(self, groups: Sequence[Group], spec: ScoreSpec) -> ScoreSpec:
        """EI and PI before any measurement improve on the best *predicted* potential of the pool."""
        extremes = np.array(self._map(predicted_extreme, groups, spec), dtype=float).reshape(-1, 2)
        if not np.isfinite(extremes).any():
            return spec
        best = np.nanmax(extremes[:, 1]) if self.goal == "maximize" else np.nanmin(extremes[:, 0])
        return replace(spec, best_v=float(best))

    def _design(self, groups: Sequence[Group], spec: ScoreSpec, n: int) -> np.ndarray:
        """Library rows of the first batch's calibration design over every untried molecule (the first
        occurrence of each), in the design's order."""
        parts = [p for p in self._map(design_columns, groups, spec) if len(p)]
        if not parts:
            return np.zeros(0, dtype=np.int64)
        pool = pd.concat(parts, ignore_index=True)
        pool = pool.iloc[np.sort(np.unique(pool["hash"].to_numpy(), return_index=True)[1])]
        chosen = calibration_design(pool["size"].to_numpy(), pool["sigma"].to_numpy(), n)
        return pool["row"].to_numpy()[chosen].astype(np.int64)

    def _rows(self, paths: Sequence[Path], groups: Sequence[Group], rows: np.ndarray, target: str) -> pd.DataFrame:
        """Library rows ``rows`` (sorted) with ``target``'s columns, fetched from the shards that hold them (a
        shard's name starts with its first row), each by the group that holds it."""
        firsts = [int(path.name.split("-", 1)[0]) for path in paths]
        holding: dict[Path, list[int]] = {}
        for r in rows.tolist():
            holding.setdefault(paths[bisect.bisect_right(firsts, r) - 1], []).append(r)
        wanted = [Group(tuple(p for p in g.paths if p in holding), g.worker) for g in groups]
        wanted = [g for g in wanted if g.paths]
        frames = self._map(group_rows, wanted, target,
                           {p: np.array(r, dtype=np.int64) for p, r in holding.items()})
        return pd.concat([_EMPTY_ROWS, *frames], ignore_index=True)
