"""Stop signals held while a process starts its children, and handed back once they can be acted on.

Why one helper: labloop starts worker processes in two places, a featurising pool (surrogate/featurize.py) and a
local Dask cluster (surrogate/compute.py). A terminal's Ctrl-C reaches every process of its group, so the workers
must be born with it blocked (a mask is inherited by forks, by the threads started here and across exec) until
they set their own handlers; and a Ctrl-C meant for labloop that arrives during the start must be neither taken by
a child or a native thread and dropped, nor raised at once inside a fork hook, which drops it too (both measured:
runs went on for 20 s and more, or hung with logging's lock held).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager


@contextmanager
def held_signals(signums: Collection[int]) -> Iterator[list[int]]:
    """Block ``signums`` for the block and note those that arrive; yields the list of them, in order.

    On exit the mask is restored first, so a signal held during the block reaches the noting handler (restoring
    the handlers first raised a run's exception there, before the caller could close what it started: a pool
    worker outlived the run once in four), and then the handlers that were in place; the caller raises the first
    noted signal (``signal.raise_signal``) where it can act on it, typically once what it started can be closed.
    Handlers can only be set in the main thread: elsewhere the signals are only blocked for the block, and one held
    is delivered to the handler in place as it ends."""
    noted: list[int] = []
    held = signal.pthread_sigmask(signal.SIG_BLOCK, signums)
    handlers = ({signum: signal.signal(signum, lambda got, _frame: noted.append(got)) for signum in signums}
                if threading.current_thread() is threading.main_thread() else {})
    try:
        yield noted
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
