"""The ``screening`` planner: the open loop of the thesis (data/SOURCES.md), as a baseline.

Rank the library once by the prior model's prediction (``E = IE - 1.40`` or ``EA - 1.40``, V vs Li/Li+; the
mean only, closest to the goal first) and measure in that order, at one fixed setting of the conditions,
never learning from what is measured. It does not learn, so the runner gives it the prior model without
calibration and never retrains it (``learns = False``); its ranking is cached per model version.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from functools import cached_property

import numpy as np

from labloop.planners.acquisition import Goal, mean_score
from labloop.planners.base import ModelView, PlannerState, Proposal
from labloop.planners.conditions import ConditionSpace
from labloop.planners.pool import untried
from labloop.surrogate.featurize import first_spellings

log = logging.getLogger(__name__)


class ScreeningPlanner:
    """Library molecules in the order of the prior model's predicted closeness to the goal."""

    name = "screening"
    learns = False

    def __init__(self, library: Sequence[str], conditions: ConditionSpace, *, goal: Goal,
                 window_v: tuple[float, float] | None = None) -> None:
        self._rows = list(library)
        self.settings = conditions.middle()
        self.goal = goal
        self.window_v = window_v
        self._ranking: tuple[int, list[str], dict[str, tuple[float, float]]] | None = None

    @cached_property
    def molecules(self) -> dict[str, str]:
        """One entry per molecule, its first spelling: its canonical SMILES, made when first needed (as the pool
        planner's :attr:`labloop.planners.pool.PoolPlanner.library`)."""
        return first_spellings(self._rows)

    @property
    def library(self) -> list[str]:
        """The molecules, each once, in library order."""
        return list(self.molecules)

    def ranking(self, model: ModelView) -> list[str]:
        """The whole library, best first (molecules the model cannot read last, in library order)."""
        return self._ranked(model)[1]

    def _ranked(self, model: ModelView) -> tuple[int, list[str], dict[str, tuple[float, float]]]:
        if self._ranking is None or self._ranking[0] != model.version:
            library = self.library
            mu, sigma = (np.asarray(a, dtype=float) for a in model.predict(library))
            score = np.nan_to_num(mean_score(mu, self.goal, self.window_v), nan=-np.inf)
            order = np.argsort(-score, kind="stable")
            predictions = {s: (float(m), float(sd)) for s, m, sd in zip(library, mu, sigma, strict=True)}
            self._ranking = (model.version, [library[i] for i in order], predictions)
        return self._ranking

    def propose(self, state: PlannerState, n: int, model: ModelView | None = None) -> list[Proposal]:
        if model is None:
            raise ValueError("the screening planner needs the prior surrogate model")
        _, ranking, predictions = self._ranked(model)
        left = set(untried(self.molecules, state.tried))
        # molecules the model cannot read (NaN, ranked last) are never proposed, as by every other planner
        chosen = [s for s in ranking if s in left and math.isfinite(predictions[s][0])][:n]
        return [Proposal(smiles=s, conditions=dict(self.settings), mu=predictions[s][0], sigma=predictions[s][1],
                         acquisition=None, model_version=model.version, planner=self.name) for s in chosen]
