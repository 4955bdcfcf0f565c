"""What a good molecule is: the campaign's ``objective`` section, apart from the rest of the campaign model so that
what shows a journal (orchestrator/journal/view.py, plot_data.py) reads it without importing the campaign's checks
(orchestrator/config/fields.py says why)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from labloop.core.errors import Problem, Problems
from labloop.core.field_types import Number
from labloop.instruments.cv_analysis import Quantity
from labloop.orchestrator.config.fields import POTENTIAL_RANGE_V, SECTION, Interval, in_volts
from labloop.protocols.steps import slip


class Objective(BaseModel):
    """What a good molecule is: a redox potential (V vs Li/Li+) to maximise, minimise, or land in a window.

    ``threshold_v`` defines a hit for maximise/minimise goals (at or beyond it); for the window goal a hit
    is a potential inside ``window_v``.
    """

    model_config = SECTION
    quantity: Quantity
    goal: Literal["maximize", "minimize", "window"]
    window_v: Interval | None = Field(None, title="two potentials [low, high] (V vs Li/Li+)", examples=[[4.5, 4.6]])
    threshold_v: Number | None = None

    @model_validator(mode="after")
    def _goal_fields(self) -> Objective:
        if self.goal == "window" and self.window_v is None:
            raise Problems(Problem(("window_v",), "required when goal is 'window', e.g. [4.5, 4.6]"))
        if self.goal != "window" and self.window_v is not None:
            raise Problems(Problem(("window_v",), f"only used with goal 'window' (goal is {self.goal!r})"))
        if self.goal == "window" and self.threshold_v is not None:
            raise Problems(Problem(("threshold_v",), "not used with goal 'window' (window_v defines a hit)"))
        low, high = POTENTIAL_RANGE_V
        for field, values in (("window_v", self.window_v or ()), ("threshold_v", (self.threshold_v,))):
            far = [v for v in values if v is not None and not low <= v <= high]
            if far:
                fixed = in_volts([v for v in values if v is not None], lambda v: low <= v <= high)
                raise Problems(Problem((field,), f"{far[0]:g} V vs Li/Li+ is no potential a cell reaches "
                                                 f"({low:g}..{high:g} V): {slip('millivolts', 'volts', fixed)}"))
        return self

    @property
    def defines_hits(self) -> bool:
        return self.goal == "window" or self.threshold_v is not None

    @property
    def hits_v(self) -> tuple[float, float] | None:
        """Where a hit lies (V vs Li/Li+): the window, or the threshold and beyond (one end infinite); None without
        a hit definition."""
        if self.goal == "window":
            return self.window_v  # type: ignore[return-value]  # set for goal "window" (validated)
        if self.threshold_v is None:
            return None
        return (self.threshold_v, math.inf) if self.goal == "maximize" else (-math.inf, self.threshold_v)

    def score(self, potential_v: float) -> float:
        """Higher is better: the potential itself, its negative, or minus the distance to the window."""
        if self.goal == "maximize":
            return potential_v
        if self.goal == "minimize":
            return -potential_v
        low, high = self.window_v  # set for goal "window" (validated)
        return -max(low - potential_v, potential_v - high, 0.0)

    def rank(self, potential_v: float) -> tuple[float, float]:
        """Sort key of "best so far" (higher first): :meth:`score`, then, inside a window, nearness to its
        centre — every potential in the window scores the same, and the one at the centre has the most room
        for what the measurement and the cell conditions move."""
        if self.goal != "window":
            return self.score(potential_v), 0.0
        low, high = self.window_v
        return self.score(potential_v), -abs(potential_v - (low + high) / 2)

    def bound_is_hit(self, bound: tuple[float, int] | None) -> bool:
        """Whether a failed scan's bound (potential V vs Li/Li+, +1 above / -1 below: ``CVResult.bound``) proves the
        molecule a hit: beyond the threshold on the goal's side. Why: a minimize screen's molecules whose waves lay
        below the scan's end, already under the threshold, were counted as failures alone, the best of an anolyte
        screen among them (a chemist's trial). A window's hits lie between two potentials: no one-sided bound proves
        one."""
        if bound is None or self.goal == "window" or self.threshold_v is None:
            return False
        potential_v, side = bound
        return (side > 0 and potential_v >= self.threshold_v) if self.goal == "maximize" else \
            (side < 0 and potential_v <= self.threshold_v)

    def is_hit(self, potential_v: float) -> bool:
        """Whether a measured potential counts as a hit (False when the objective defines none)."""
        if self.goal == "window":
            return self.score(potential_v) == 0.0
        if self.threshold_v is None:
            return False
        return potential_v >= self.threshold_v if self.goal == "maximize" else potential_v <= self.threshold_v
