"""Saying that a call into a driver, which nothing can end, has not returned.

Why here: a plug-in's ``open()`` or ``status()`` that hangs leaves the console silent until Ctrl-C, whether a run
opens the rig (orchestrator/loop/rig.py, orchestrator/compose.py) or ``labloop drivers check`` runs the conformance
kit (sim/conformance.py: a driver hung in a check printed nothing, a plug-in author's trial); one helper for both.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: how long a driver's call may take before the console says labloop waits on it
SLOW_CALL_S = 30.0


@contextmanager
def said_if_slow(what: str, log: logging.Logger) -> Iterator[None]:
    """One warning line on ``log`` if the block has not returned after :data:`SLOW_CALL_S`, naming ``what`` it waits
    on (which instrument and which call: during experiments, orchestrator/loop/stalls.py says it)."""
    after = SLOW_CALL_S
    timer = threading.Timer(after, log.warning, ("%s has not returned after %g s; labloop waits for it (Ctrl-C "
                                                 "stops)", what, after))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
