"""The ``bayes`` and ``greedy`` pool planners: score every untried library molecule with the (calibrated)
surrogate and propose the best, a diverse batch at a time.

``bayes`` scores with an acquisition function of the predicted mean *and* sigma (:mod:`.acquisition`):
expected improvement, probability of improvement or the confidence bound for maximise/minimise goals, the
probability of landing in the window for window goals. ``greedy`` is the same planner scoring the mean
alone, so that a comparison of the two measures exactly what the uncertainty is worth.

Two corrections to the acquisition, both pure functions of the journal's state:

- **failures teach**: an experiment whose voltammogram was unusable (no peak, irreversible) is a failure
  of the molecule, and molecules like it probably fail too. A candidate's score is pulled towards the
  pool's lowest by its excess similarity to the nearest failed molecule:
  ``p = 1 - max(0, (T - T0) / (1 - T0))`` with T its highest Tanimoto similarity to a failure and
  :data:`FAILURE_BACKGROUND` T0 the similarity unrelated molecules share; ``score = p acq`` for the
  non-negative acquisitions (EI, PI, window probability), ``low + p (acq - low)`` with ``low`` the pool's
  lowest for the signed ones (confidence bound, greedy mean).
- **batch diversity**: a batch is filled in score order, skipping a candidate whose Tanimoto similarity to
  a molecule already in the batch or pending exceeds ``diversity``, so a batch does not spend four
  experiments on four near-copies of one guess.

Before any measurement (nothing measured, nothing pending) the batch is a design for the calibration
instead (:mod:`.design`, ``first_batch="design"``, the default): molecules spread over size, since the
uncalibrated model's acquisition would only bet on a window it cannot yet aim at. Any places the design
leaves (a pool smaller than the batch) are filled by the acquisition.

After the first batch, a batch is the diverse top of the list (``batch="independent"``, what a campaign's
``planner.batch: diverse`` gives, the default) or, with ``batch="thompson"`` (``planner.batch: thompson``,
``bayes`` only), filled by Thompson sampling of the calibrated model's joint posterior (:mod:`.batch`), so
the places of a batch bet on different explanations of what is measured; the failure correction and the
diversity limit apply to each draw as above. ``greedy`` always takes the diverse top.

Conditions for each proposal come from the condition planner (:mod:`.conditions`).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from functools import cached_property
from typing import Literal, Protocol

import numpy as np

from labloop.planners.acquisition import Acquisition, Goal, acquire
from labloop.planners.base import ModelView, PlannerState, Proposal
from labloop.planners.batch import JointModel, thompson_batch
from labloop.planners.conditions import ConditionSpace
from labloop.planners.design import calibration_design
from labloop.planners.feedback import DESCRIPTORS, SIZE_DESCRIPTOR, DescriptorTable
from labloop.planners.similarity import SimilarityIndex
from labloop.surrogate.featurize import canonical_smiles, first_spellings

log = logging.getLogger(__name__)

#: Tanimoto similarity (ECFP4) that unrelated molecules share; only similarity beyond it counts
FAILURE_BACKGROUND = 0.35
#: default ceiling of the similarity between two molecules of one batch
DEFAULT_DIVERSITY = 0.7
#: how the first batch is chosen: a calibration design (:mod:`.design`) or the acquisition like every other
FirstBatch = Literal["design", "acquisition"]
#: how the places of a batch after the first are filled: Thompson draws of the joint posterior, or the top
#: of the acquisition's list
Batch = Literal["thompson", "independent"]


class PoolPlanner:
    """Scores the untried molecules of ``library`` by ``acquisition`` and proposes diverse batches."""

    learns = True

    def __init__(self, name: str, library: Sequence[str], conditions: ConditionSpace, *, goal: Goal,
                 acquisition: Acquisition, window_v: tuple[float, float] | None = None,
                 diversity: float = DEFAULT_DIVERSITY, first_batch: FirstBatch = "design",
                 similarity: SimilarityIndex | None = None, descriptors: DescriptorTable | None = None,
                 batch: Batch = "independent") -> None:
        self.name = name
        self._rows = list(library)
        self.conditions = conditions
        self.goal = goal
        self.acquisition = acquisition
        self.window_v = window_v
        self.diversity = diversity
        self.first_batch = first_batch
        self.descriptors = descriptors or DescriptorTable(similarity or SimilarityIndex())
        self.similarity = similarity or self.descriptors.similarity  # one fingerprint table
        self.batch = batch

    @cached_property
    def library(self) -> dict[str, str]:
        """One entry per molecule, its first spelling: its canonical SMILES (:func:`first_spellings`), made at the
        first proposal: ``validate`` builds the planner only to check its kind, and a million rows take minutes."""
        return first_spellings(self._rows)

    def scores(self, state: PlannerState, model: ModelView) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """(untried molecules, mu, sigma, score) — the score after the failure correction; NaN for
        molecules the model cannot read."""
        return self._scored(state, model)[:4]

    def _scored(self, state: PlannerState, model: ModelView
                ) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`scores` plus the failure correction's factor per molecule (computed once per proposal:
        with many failures over a big library it is a large part of a proposal's time)."""
        pool = untried(self.library, state.tried)
        mu, sigma = (np.asarray(a, dtype=float) for a in model.predict(pool))
        score = acquire(self.acquisition, mu, sigma, self.goal, window_v=self.window_v, best_v=best_measured(
            state, self.goal))
        keep = failure_keep(self.similarity, pool, state.failed_analyses)
        return pool, mu, sigma, corrected(score, keep), keep

    def propose(self, state: PlannerState, n: int, model: ModelView | None = None) -> list[Proposal]:
        if model is None:
            raise ValueError(f"the {self.name} planner needs a surrogate model")
        pool, mu, sigma, score, keep = self._scored(state, model)
        chosen: list[int] = []
        if self.first_batch == "design" and not state.measured and not state.pending:
            size = self.descriptors(pool)[:, list(DESCRIPTORS).index(SIZE_DESCRIPTOR)]
            chosen = calibration_design(size, np.where(np.isfinite(mu), sigma, np.nan), n)
        joint = model if self.batch == "thompson" and isinstance(model, JointModel) else None
        designed = len(chosen)  # fill_batch keeps the design's picks first
        chosen = fill_batch(self, state, pool, score, keep, n, chosen, joint)
        settings = self.conditions.propose(state.observations, len(chosen), seed=state.seed, step=state.step)
        return [Proposal(smiles=pool[i], conditions=c, mu=float(mu[i]), sigma=float(sigma[i]),
                         acquisition=float(score[i]), model_version=model.version, planner=self.name,
                         design=place < designed)
                for place, (i, c) in enumerate(zip(chosen, settings, strict=True))]


class BatchRule(Protocol):
    """What :func:`fill_batch` needs of a planner: its goal and its diversity limit."""

    goal: Goal
    window_v: tuple[float, float] | None
    diversity: float
    similarity: SimilarityIndex


def untried(library: Mapping[str, str], tried: Collection[str]) -> list[str]:
    """The molecules of ``library`` (first spelling: canonical SMILES, :func:`first_spellings`) that nothing in
    ``tried`` is, as written or another way (a journal from before the planners compared molecules may hold a
    second spelling)."""
    taken = {library[s] for s in tried if s in library}
    taken.update(canonical_smiles([s for s in tried if s not in library]))
    taken.discard("")
    return [s for s, key in library.items() if s not in tried and key not in taken]


def best_measured(state: PlannerState, goal: Goal) -> float | None:
    """The best measured potential for the goal (EI/PI improve on it); None before any or for a window."""
    measured = [o.potential_v for o in state.measured]
    if not measured or goal == "window":
        return None
    return max(measured) if goal == "maximize" else min(measured)


def failure_keep(similarity: SimilarityIndex, pool: Sequence[str], failed: Sequence[str]) -> np.ndarray:
    """The failure correction's factor per molecule (module docstring): 1 without a similar failure."""
    if not failed:
        return np.ones(len(pool))
    similar = similarity.max_similarity(pool, failed)
    return 1 - np.clip((similar - FAILURE_BACKGROUND) / (1 - FAILURE_BACKGROUND), 0.0, 1.0)


def corrected(score: np.ndarray, keep: np.ndarray, low: float | None = None) -> np.ndarray:
    """Scores pulled towards ``low`` by the failure correction's ``keep``; ``low`` is the pool's lowest
    score or 0, whichever is lower (0 for the non-negative EI, PI and window probability): by default the
    lowest of ``score``, which is the pool's when ``score`` covers the whole pool."""
    if not (keep < 1).any() or not np.isfinite(score).any():
        return score
    if low is None:
        low = min(0.0, float(np.nanmin(score)))
    return low + keep * (score - low)


def fill_batch(rule: BatchRule, state: PlannerState, pool: Sequence[str], score: np.ndarray, keep: np.ndarray,
               n: int, chosen: Sequence[int], joint: JointModel | None) -> list[int]:
    """``chosen`` (the first batch's design, or nothing) filled up to ``n`` molecules of ``pool``: by
    Thompson draws of ``joint``'s posterior when given, else in ``score`` order; never one too similar to
    another of the batch or to a pending molecule (``rule.diversity``)."""
    chosen = list(chosen)
    if len(chosen) >= n:
        return chosen
    taken = [*state.pending, *(pool[i] for i in chosen)]
    if joint is not None:

        def admissible(i: int) -> bool:
            if i in chosen or (rule.diversity < 1 and taken
                               and rule.similarity.max_similarity([pool[i]], taken)[0] > rule.diversity):
                return False
            taken.append(pool[i])
            return True

        return chosen + thompson_batch(joint, pool, score, n - len(chosen), goal=rule.goal, window_v=rule.window_v,
                                       keep=keep, seed=state.seed, step=state.step, admissible=admissible)
    return chosen + diverse_top(rule, pool, score, n - len(chosen), taken, skip=chosen)


def diverse_top(rule: BatchRule, pool: Sequence[str], score: np.ndarray, n: int, pending: Sequence[str],
                skip: Sequence[int] = ()) -> list[int]:
    """Indices of up to ``n`` molecules in score order (ties: pool order), none too similar to another
    chosen or pending, none of ``skip``."""
    order = np.argsort(-np.nan_to_num(score, nan=-np.inf), kind="stable")
    order = order[np.isfinite(score[order]) & ~np.isin(order, skip)]
    chosen: list[int] = []
    taken = list(pending)
    for i in order:
        if len(chosen) >= n:
            break
        if rule.diversity < 1 and taken and rule.similarity.max_similarity([pool[i]], taken)[0] > rule.diversity:
            continue
        chosen.append(int(i))
        taken.append(pool[i])
    return chosen
