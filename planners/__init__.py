"""Planners: choose the next molecules and measurement conditions (contract, Bayesian planners, baselines).

:func:`make_planner` is the one place that maps ``planner.kind`` of a campaign to a planner object, so the
runner never names a planner class and a new kind plugs in here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from labloop.planners.base import ModelView, Observation, Planner, PlannerState, Proposal
from labloop.planners.random_planner import RandomPlanner

if TYPE_CHECKING:
    from labloop.orchestrator.campaign import Campaign

__all__ = ["PLANNERS", "ModelView", "Observation", "Planner", "PlannerState", "PlannerUnavailable", "Proposal",
           "RandomPlanner", "make_planner"]

#: ``kind -> factory(campaign, library)``; the Bayesian kinds register here when they exist
PLANNERS: dict[str, Callable[[Campaign, Sequence[str]], Planner]] = {
    "random": lambda campaign, library: RandomPlanner(library, campaign.conditions.model_dump()),
}


class PlannerUnavailable(ValueError):
    """The campaign asks for a planner kind this labloop does not have yet (bad input: nothing is run)."""


def make_planner(campaign: Campaign, library: Sequence[str]) -> Planner:
    """The planner ``campaign.planner.kind`` names, over the molecules of ``library``."""
    try:
        factory = PLANNERS[campaign.planner.kind]
    except KeyError:
        raise PlannerUnavailable(f"planner kind {campaign.planner.kind!r} is not available yet "
                                  f"(available: {', '.join(sorted(PLANNERS))})") from None
    return factory(campaign, library)
