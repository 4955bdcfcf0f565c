"""The ``bayes`` and ``greedy`` pool planners over stored predictions: a library of millions in Parquet shards.

Why: :class:`labloop.planners.pool.PoolPlanner` asks the model for every untried molecule and scores them
in one array, which is fine at 100,000 molecules and not at 10 million. Here the predictions already sit
in the shards of :func:`labloop.surrogate.library_pipeline.predict_library` (run with :func:`describe`, so
each row also carries the calibration's cheap descriptors), and every shard is scored on its own, on the
Dask workers when a client is given, else here one shard at a time. Each shard gives back only its top
``shortlist`` candidates by acquisition; the merged shortlist gets the failure correction and the batch
diversity of the pool planner.

Same proposals as :class:`PoolPlanner` (tests/test_library_pipeline.py compares them), and still a pure
function of the journal's state and the stored predictions: candidates are ordered by score, ties by
library row; the failure correction only lowers scores, so a pick whose corrected score beats the best
score a shard left out is the pick the whole pool would give. When a pick does not (many candidates near
failures, or a batch thinned by diversity) the shortlist grows fourfold and the shards are scored again.
The first batch's calibration design (:mod:`.design`) needs every untried molecule's size and sigma: three
numbers per molecule, gathered from the shards.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from labloop.planners.acquisition import Acquisition, Goal, acquire
from labloop.planners.base import ModelView, PlannerState, Proposal
from labloop.planners.conditions import ConditionSpace
from labloop.planners.design import calibration_design
from labloop.planners.feedback import DESCRIPTORS, SIZE_DESCRIPTOR, Calibration, DescriptorTable, cheap_descriptors
from labloop.planners.pool import DEFAULT_DIVERSITY, FAILURE_BACKGROUND, FirstBatch
from labloop.planners.similarity import SimilarityIndex
from labloop.surrogate.library_pipeline import ShardSet
from labloop.surrogate.screening import REFERENCE_ABSOLUTE_V

log = logging.getLogger(__name__)

#: the shard columns holding the calibration's descriptors (:data:`labloop.planners.feedback.DESCRIPTORS`)
DESCRIPTOR_COLUMNS = [f"descriptor_{name}" for name in DESCRIPTORS]
#: candidates each shard gives back at first: enough for a diverse batch in almost every case
DEFAULT_SHORTLIST = 128


#: a scored shortlist with nothing in it
_EMPTY = pd.DataFrame({"row": pd.Series(dtype=np.int64), "smiles": pd.Series(dtype=object),
                       "mu": pd.Series(dtype=float), "sigma": pd.Series(dtype=float), "score": pd.Series(dtype=float)})


def describe(smiles: Sequence[str]) -> dict[str, np.ndarray]:
    """The calibration's cheap descriptors as shard columns (the pipeline's ``describe`` hook)."""
    values = np.array([cheap_descriptors(s) for s in smiles], dtype=float).reshape(len(smiles), len(DESCRIPTORS))
    return {name: values[:, j] for j, name in enumerate(DESCRIPTOR_COLUMNS)}


@dataclass(frozen=True)
class ScoreSpec:
    """Everything a shard needs to score its molecules: picklable, sent with every shard task."""

    target: str
    acquisition: Acquisition
    goal: Goal
    calibration: Calibration
    tried: frozenset[str] = frozenset()
    window_v: tuple[float, float] | None = None
    best_v: float | None = None
    offset_v: float = REFERENCE_ABSOLUTE_V["li"]

    def scored(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Readable, untried rows of a shard with calibrated ``mu``, ``sigma`` (V vs Li/Li+) and ``score``."""
        frame = frame[frame["valid"].to_numpy() & ~frame["smiles"].isin(self.tried).to_numpy()]
        mu = frame[f"{self.target}_mean"].to_numpy(dtype=float) - self.offset_v
        sigma = frame[f"{self.target}_std"].to_numpy(dtype=float)
        # the residual learners need each molecule's fingerprints: a table of this shard's rows (on the worker)
        mu, sigma = self.calibration.apply(mu, sigma, list(frame["smiles"]), DescriptorTable())
        score = acquire(self.acquisition, mu, sigma, self.goal, window_v=self.window_v, best_v=self.best_v)
        out = pd.DataFrame({"row": frame["row"].to_numpy(), "smiles": frame["smiles"].to_numpy(), "mu": mu,
                            "sigma": sigma, "score": score,
                            "size": frame[f"descriptor_{SIZE_DESCRIPTOR}"].to_numpy(dtype=float)})
        return out[np.isfinite(score)]

    def columns(self) -> list[str]:
        return ["row", "smiles", "valid", f"{self.target}_mean", f"{self.target}_std", *DESCRIPTOR_COLUMNS]


@dataclass(frozen=True)
class ShardTop:
    """A shard's best ``k`` (all of them when ``complete``) and its lowest score (NaN when it had none)."""

    top: pd.DataFrame
    complete: bool
    lowest: float


def score_shard(path: Path, spec: ScoreSpec, k: int) -> ShardTop:
    """One task: score a shard and keep its ``k`` best, ordered by score, ties by library row."""
    scored = spec.scored(pq.read_table(path, columns=spec.columns()).to_pandas())
    ordered = scored.sort_values(["score", "row"], ascending=[False, True], kind="stable")
    lowest = float(scored["score"].min()) if len(scored) else float("nan")
    return ShardTop(ordered.head(k).reset_index(drop=True), len(ordered) <= k, lowest)


def design_columns(path: Path, spec: ScoreSpec) -> pd.DataFrame:
    """One task: what the first batch's design needs of a shard (row, size term, sigma, a SMILES hash)."""
    scored = spec.scored(pq.read_table(path, columns=spec.columns()).to_pandas())
    return pd.DataFrame({"row": scored["row"].to_numpy(), "size": scored["size"].to_numpy(),
                         "sigma": scored["sigma"].to_numpy(),
                         "hash": pd.util.hash_array(scored["smiles"].to_numpy(dtype=object))})


def predicted_extreme(path: Path, spec: ScoreSpec) -> tuple[float, float]:
    """One task: (lowest, highest) calibrated mean of a shard's untried molecules (NaN when none)."""
    mu = spec.scored(pq.read_table(path, columns=spec.columns()).to_pandas())["mu"].to_numpy()
    return (float(mu.min()), float(mu.max())) if len(mu) else (float("nan"), float("nan"))


@dataclass
class ShardPoolPlanner:
    """:class:`labloop.planners.pool.PoolPlanner` over stored predictions (see the module docstring).

    ``shards(version)`` gives the library's shards predicted by that model version; ``target`` is the
    model's column the objective comes from (``ie_ev`` for oxidation, ``ea_ev`` for reduction);
    ``client``: a ``distributed.Client`` to score the shards on, None to score them here.
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

    def propose(self, state: PlannerState, n: int, model: ModelView | None = None) -> list[Proposal]:
        if model is None:
            raise ValueError(f"the {self.name} planner needs a surrogate model")
        paths = list(self.shards(model.version).paths)
        spec = ScoreSpec(self.target, self.acquisition, self.goal, getattr(model, "calibration", Calibration(0)),
                         state.tried, self.window_v, self._best(state))
        if spec.acquisition in ("ei", "pi") and spec.best_v is None:
            spec = self._with_predicted_best(paths, spec)
        chosen = _EMPTY
        if self.first_batch == "design" and not state.measured and not state.pending:
            chosen = self._design(paths, spec, n)
        failed = state.failed_analyses
        top, low = self._top(paths, spec, n - len(chosen), [*state.pending, *chosen["smiles"]],
                             set(chosen["row"].tolist()), failed)
        picks = pd.concat([self._corrected(chosen, failed, low), top], ignore_index=True) if len(chosen) else top
        settings = self.conditions.propose(state.observations, len(picks), seed=state.seed, step=state.step)
        return [Proposal(smiles=str(p.smiles), conditions=c, mu=float(p.mu), sigma=float(p.sigma),
                         acquisition=float(p.score), model_version=model.version, planner=self.name)
                for p, c in zip(picks.itertuples(), settings, strict=True)]

    def _map(self, function: Callable, paths: Sequence[Path], *args: object) -> list:
        """``function(path, *args)`` for every shard, on the workers or here (one shard at a time)."""
        if self.client is None:
            return [function(path, *args) for path in paths]
        futures = self.client.map(function, paths, *([a] * len(paths) for a in args), pure=False)
        return self.client.gather(futures)

    def _best(self, state: PlannerState) -> float | None:
        measured = [o.potential_v for o in state.measured]
        if not measured or self.goal == "window":
            return None
        return max(measured) if self.goal == "maximize" else min(measured)

    def _with_predicted_best(self, paths: Sequence[Path], spec: ScoreSpec) -> ScoreSpec:
        """EI and PI before any measurement improve on the best *predicted* potential of the pool."""
        extremes = np.array(self._map(predicted_extreme, paths, spec), dtype=float).reshape(-1, 2)
        if not np.isfinite(extremes).any():
            return spec
        best = np.nanmax(extremes[:, 1]) if self.goal == "maximize" else np.nanmin(extremes[:, 0])
        return replace(spec, best_v=float(best))

    def _design(self, paths: Sequence[Path], spec: ScoreSpec, n: int) -> pd.DataFrame:
        """The first batch's calibration design over every untried molecule (first occurrence of each)."""
        parts = [p for p in self._map(design_columns, paths, spec) if len(p)]
        if not parts:
            return _EMPTY
        pool = pd.concat(parts, ignore_index=True)
        pool = pool.iloc[np.sort(np.unique(pool["hash"].to_numpy(), return_index=True)[1])]
        rows = pool["row"].to_numpy()[calibration_design(pool["size"].to_numpy(), pool["sigma"].to_numpy(), n)]
        if not len(rows):
            return _EMPTY
        picked = self._rows(paths, spec, rows)
        return picked.set_index("row").loc[rows].reset_index()  # the design's order

    def _rows(self, paths: Sequence[Path], spec: ScoreSpec, rows: np.ndarray) -> pd.DataFrame:
        """Scored library rows ``rows``, read from the shards that hold them (names start with the first row)."""
        firsts = [int(path.name.split("-", 1)[0]) for path in paths]
        holding = sorted({bisect.bisect_right(firsts, int(r)) - 1 for r in rows})
        frames = [spec.scored(pq.read_table(paths[i], columns=spec.columns()).to_pandas()) for i in holding]
        found = pd.concat(frames, ignore_index=True)
        return found[found["row"].isin(rows)]

    def _top(self, paths: Sequence[Path], spec: ScoreSpec, n: int, pending: Sequence[str], skip: set[int],
             failed: Sequence[str]) -> tuple[pd.DataFrame, float]:
        """Up to ``n`` candidates in corrected score order, none too similar to one chosen or pending, none
        in ``skip``, exactly as over the whole pool (the shortlist grows until it is so); and the pool's
        lowest score, which the failure correction pulls towards."""
        k = max(1, self.shortlist)
        while True:
            tops: list[ShardTop] = self._map(score_shard, paths, spec, k)
            parts = [t.top for t in tops if len(t.top)]
            merged = pd.concat(parts, ignore_index=True) if parts else _EMPTY
            low = min([0.0, *(t.lowest for t in tops if np.isfinite(t.lowest))])
            # nothing a shard left out scores above its last kept candidate
            bound = max((float(t.top["score"].iloc[-1]) for t in tops if not t.complete), default=-np.inf)
            picks, exact = self._walk(self._corrected(merged, failed, low), n, pending, skip, bound)
            if exact:
                return picks, low
            k *= 4
            log.info("a shortlist of %d per shard did not settle the batch; scoring again with %d", k // 4, k)

    def _corrected(self, frame: pd.DataFrame, failed: Sequence[str], low: float) -> pd.DataFrame:
        """Scores pulled towards ``low`` by similarity to failed molecules (:mod:`.pool`, "failures teach")."""
        if not failed or not len(frame):
            return frame
        similar = self.similarity.max_similarity(frame["smiles"].tolist(), failed)
        keep = 1 - np.clip((similar - FAILURE_BACKGROUND) / (1 - FAILURE_BACKGROUND), 0.0, 1.0)
        return frame.assign(score=low + keep * (frame["score"].to_numpy() - low))

    def _walk(self, merged: pd.DataFrame, n: int, pending: Sequence[str], skip: set[int], bound: float
              ) -> tuple[pd.DataFrame, bool]:
        """The diverse batch from the shortlist, and whether it is the whole pool's: every pick must score
        above ``bound`` (the best score left out of the shortlist), and a short batch needs the whole pool."""
        ordered = merged.sort_values(["score", "row"], ascending=[False, True], kind="stable")
        ordered = ordered.drop_duplicates("smiles", keep="first")  # a SMILES listed twice is one molecule
        taken, picks = list(pending), []
        for i, candidate in enumerate(ordered.itertuples()):
            if len(picks) >= n:
                break
            if candidate.row in skip:
                continue
            if candidate.score <= bound:
                return ordered.iloc[picks], False
            if self.diversity < 1 and taken and \
                    self.similarity.max_similarity([candidate.smiles], taken)[0] > self.diversity:
                continue
            picks.append(i)
            taken.append(candidate.smiles)
        return ordered.iloc[picks], len(picks) >= n or bound == -np.inf
