"""What counts as a number where a person or a driver writes one: a finite real, never a bool.

Why one test: YAML reads ``yes`` as True, which Python counts as the integer 1, and a NaN compares false both ways
(a deadline of NaN waited for ever); the drivers' options, their waits and the analysis' settings each tested it
with their own expression.
"""

from __future__ import annotations

import math
import numbers


def finite_number(value: object) -> bool:
    """Whether ``value`` is a finite real number and not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
