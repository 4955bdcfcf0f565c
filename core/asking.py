"""Asking a person on the console, and knowing when nobody can answer.

Why in core: the manual sample changer (instruments) and the rig's manual rinse and steps (orchestrator)
both ask; a console that cannot answer must be the same :class:`~labloop.core.errors.NoOperator` for both,
so the runner stops at the first question instead of failing experiment after experiment.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from labloop.core.errors import NoOperator

Ask = Callable[[str], str]


def ask_person(ask: Ask, question: str, where: str, who: str) -> str:
    """``ask(question)``, the answer; :class:`NoOperator` at ``where`` ("no ``who``: ...") when the console's
    input is closed: ``EOFError`` (stdin at its end: ``</dev/null``, cron), or ``input()``'s ``RuntimeError``
    when there is no stdin at all (file descriptor 0 closed, ``<&-``: Python sets ``sys.stdin`` to None)."""
    try:
        return ask(question)
    except EOFError:
        raise NoOperator(where, f"no {who}: the console's input is closed") from None
    except RuntimeError:
        if sys.stdin is not None:
            raise
        raise NoOperator(where, f"no {who}: the console has no input at all") from None
