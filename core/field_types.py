"""The strict field types the files labloop reads are written in: a campaign (orchestrator/config/) and a protocol's
steps (protocols/steps.py) take numbers and yes/no values alike.

Why strict: YAML writes ``yes``, ``"5"`` or ``2.5`` where a count belongs, and pydantic's lax mode took them as
``True``, ``5`` and a count of 2; they are mistakes, not values, and ``.inf`` and ``.nan`` are no limits either.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, Strict

Int = Annotated[int, Strict()]
#: yes/no as YAML writes it (``true``, ``yes``, ``off``): ``"yes"`` in quotes is text, refused as ``"7"`` is for a count
Bool = Annotated[bool, Strict()]
Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]
PositiveInt = Annotated[int, Strict(), Field(gt=0)]
PositiveNumber = Annotated[float, Strict(), Field(gt=0, allow_inf_nan=False)]
NonNegativeNumber = Annotated[float, Strict(), Field(ge=0, allow_inf_nan=False)]
