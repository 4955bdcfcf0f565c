"""Planners: choose the next molecules and measurement conditions (contract, Bayesian planners, baselines).

:func:`make_planner` is the one place that maps ``planner.kind`` of a campaign to a planner object, so the
runner never names a planner class and a new kind plugs in here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from labloop.planners.base import ModelView, Observation, Planner, PlannerState, Proposal
from labloop.planners.conditions import ConditionSpace
from labloop.planners.feedback import DescriptorTable
from labloop.planners.pool import PoolPlanner
from labloop.planners.random_planner import RandomPlanner
from labloop.planners.screening_planner import ScreeningPlanner

if TYPE_CHECKING:
    from labloop.orchestrator.campaign import Campaign

#: builds a planner from the campaign, the library and the runner's descriptor table
Factory = Callable[["Campaign", Sequence[str], DescriptorTable | None], Planner]

__all__ = ["PLANNERS", "ConditionSpace", "ModelView", "Observation", "Planner", "PlannerState",
           "PoolPlanner", "Proposal", "RandomPlanner", "ScreeningPlanner", "make_planner"]


def _pool(kind: str) -> Factory:
    def make(campaign: Campaign, library: Sequence[str], descriptors: DescriptorTable | None) -> Planner:
        objective = campaign.objective
        acquisition = campaign.planner.acquisition_for(objective.goal) if kind == "bayes" else "mean"
        return PoolPlanner(kind, library, ConditionSpace(campaign.conditions.space()), goal=objective.goal,
                           acquisition=acquisition, window_v=objective.window_v,  # type: ignore[arg-type]
                           diversity=campaign.planner.diversity, first_batch=campaign.planner.first_batch,
                           descriptors=descriptors, batch="thompson" if kind == "bayes" else "independent")
    return make


#: ``kind -> factory(campaign, library, descriptors)``
PLANNERS: dict[str, Factory] = {
    "random": lambda campaign, library, _: RandomPlanner(library, campaign.conditions.space()),
    "bayes": _pool("bayes"),
    "greedy": _pool("greedy"),
    "screening": lambda campaign, library, _: ScreeningPlanner(
        library, ConditionSpace(campaign.conditions.space()), goal=campaign.objective.goal,
        window_v=campaign.objective.window_v),
}


def make_planner(campaign: Campaign, library: Sequence[str], descriptors: DescriptorTable | None = None
                 ) -> Planner:
    """The planner ``campaign.planner.kind`` names (validated against :data:`PLANNERS`), over ``library``;
    ``descriptors``: the runner's table of cheap descriptors, shared so the library is described once."""
    return PLANNERS[campaign.planner.kind](campaign, library, descriptors)
