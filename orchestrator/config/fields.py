"""The field types campaign files are written in beyond the strict numbers and yes/no of core/field_types.py
(windows, ranges, a section's settings), shared by every section of the campaign model
(orchestrator/config/campaign.py) and the objective (orchestrator/config/objective.py).

Why a module of their own: the objective is read by every command that shows a journal (``labloop log``, ``report``,
``dashboard``), which must not import the campaign model's checks (the planners, scikit-optimize, the drivers): a
dashboard started in 2.6 s, 2.5 of them importing those."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, ConfigDict

from labloop.core.field_types import Number, PositiveNumber
from labloop.protocols.steps import compact

SECTION = ConfigDict(frozen=True, extra="forbid")

#: the potentials vs Li/Li+ an objective may name: beyond any solvent's window by a wide margin either way
POTENTIAL_RANGE_V = (-3.0, 10.0)


def ordered_pair(allow_equal: bool) -> AfterValidator:
    """A pair's check that its low end lies below its high end (or at it, with ``allow_equal``)."""

    def check(value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if low > high or (low == high and not allow_equal):
            raise ValueError(f"low must be {'at most' if allow_equal else 'below'} high, got {list(value)}")
        return value
    return AfterValidator(check)


def in_volts(values: list[float], fits: Callable[[float], bool]) -> str:
    """The values of a field of potentials with those that do not ``fit`` read as millivolts, written as the field
    takes them (``[4.5, 4.6]``, or one number), for a units slip's message to show the fix; "" when that does not
    fit either (then the slip is not the likely story). Why: "millivolts written as volts?" alone left the
    arithmetic to the reader, where other fields show the value to copy (a newcomer's trial)."""
    fixed = [v if fits(v) else v / 1000 for v in values]
    if not all(fits(v) for v in fixed):
        return ""
    written = [compact(v) for v in fixed]
    return written[0] if len(written) == 1 else f"[{', '.join(written)}]"


def number_to_pair(value: Any) -> Any:
    """One number as the pair ``[value, value]`` (a fixed condition written as one number); anything else as is."""
    return (value, value) if isinstance(value, int | float) and not isinstance(value, bool) else value


#: [low, high] with low < high: potential windows
Interval = Annotated[tuple[Number, Number], ordered_pair(allow_equal=False)]
#: [low, high] with 0 < low <= high, or one number for a fixed value: ranges of measurement conditions
Range = Annotated[tuple[PositiveNumber, PositiveNumber], BeforeValidator(number_to_pair),
                  ordered_pair(allow_equal=True)]
