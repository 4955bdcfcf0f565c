"""Planners: choose the next molecules and measurement conditions (contract, Bayesian planners, baselines).

:func:`make_planner` is the one place that maps ``planner.kind`` of a campaign to a planner object, so the
runner never names a planner class and a new kind plugs in here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from labloop.planners.base import ModelView, Observation, Planner, PlannerState, Proposal, bound_fields
from labloop.planners.conditions import ConditionSpace
from labloop.planners.feedback import DescriptorTable
from labloop.planners.pool import PoolPlanner
from labloop.planners.random_planner import RandomPlanner
from labloop.planners.screening_planner import ScreeningPlanner
from labloop.planners.shard_pool import ShardPoolPlanner
from labloop.surrogate.library_pipeline import ShardSet


@dataclass(frozen=True)
class PlannerSettings:
    """The planner's part of a campaign, and nothing else (planners never see the campaign itself).

    ``conditions`` is the condition space in the planners' form: ``{name: (low, high) | {"choices": (...)}}``;
    ``acquisition`` is what ``bayes`` uses (greedy always ranks by the mean); ``batch`` how ``bayes`` fills
    a batch after the first (greedy always takes the diverse top).
    """

    kind: str
    goal: str
    window_v: tuple[float, float] | None
    acquisition: str
    diversity: float
    first_batch: str
    conditions: Mapping[str, Any]
    batch: str = "diverse"


@dataclass(frozen=True)
class StoredPredictions:
    """The library's predictions kept in Parquet shards (:mod:`labloop.surrogate.library_pipeline`), for a
    library too big to predict in one process: ``shards(model_version)`` gives them (predicted first when
    they are not yet), ``target`` is the model's column the objective comes from (``ie_ev``, ``ea_ev``),
    ``client`` a ``distributed.Client`` the shards are scored on (None: in this process)."""

    shards: Callable[[int], ShardSet]
    target: str
    client: object | None = None


#: builds a planner from its settings, the library, the runner's descriptor table and the stored predictions
Factory = Callable[[PlannerSettings, Sequence[str], DescriptorTable | None, StoredPredictions | None], Planner]

__all__ = ["PLANNERS", "ConditionSpace", "ModelView", "Observation", "Planner", "PlannerSettings", "PlannerState",
           "PoolPlanner", "Proposal", "RandomPlanner", "ScreeningPlanner", "StoredPredictions", "bound_fields",
           "make_planner"]


def _pool(kind: str) -> Factory:
    def make(settings: PlannerSettings, library: Sequence[str], descriptors: DescriptorTable | None,
             stored: StoredPredictions | None) -> Planner:
        acquisition = settings.acquisition if kind == "bayes" else "mean"
        conditions = ConditionSpace(dict(settings.conditions))
        batch = "thompson" if kind == "bayes" and settings.batch == "thompson" else "independent"
        if stored is not None:  # the same proposals, from the stored predictions, scored shard by shard
            similarity = {} if descriptors is None else {"similarity": descriptors.similarity}
            return ShardPoolPlanner(kind, stored.shards, stored.target, conditions, goal=settings.goal,  # type: ignore[arg-type]
                                    acquisition=acquisition, window_v=settings.window_v,  # type: ignore[arg-type]
                                    diversity=settings.diversity, first_batch=settings.first_batch,  # type: ignore[arg-type]
                                    client=stored.client, batch=batch, descriptors=descriptors, **similarity)
        return PoolPlanner(kind, library, conditions, goal=settings.goal,
                           acquisition=acquisition, window_v=settings.window_v,  # type: ignore[arg-type]
                           diversity=settings.diversity, first_batch=settings.first_batch,
                           descriptors=descriptors, batch=batch)
    return make


#: ``kind -> factory(settings, library, descriptors, stored)``
PLANNERS: dict[str, Factory] = {
    "random": lambda settings, library, _, __: RandomPlanner(library, dict(settings.conditions)),
    "bayes": _pool("bayes"),
    "greedy": _pool("greedy"),
    "screening": lambda settings, library, _, __: ScreeningPlanner(
        library, ConditionSpace(dict(settings.conditions)), goal=settings.goal, window_v=settings.window_v),
}


def make_planner(settings: PlannerSettings, library: Sequence[str], descriptors: DescriptorTable | None = None,
                 stored: StoredPredictions | None = None) -> Planner:
    """The planner ``settings.kind`` names (validated against :data:`PLANNERS`), over ``library``;
    ``descriptors``: the runner's table of cheap descriptors, shared so the library is described once;
    ``stored``: the library's predictions in shards, which ``bayes`` and ``greedy`` then propose from
    (:class:`ShardPoolPlanner`) instead of asking the model for every molecule."""
    return PLANNERS[settings.kind](settings, library, descriptors, stored)
