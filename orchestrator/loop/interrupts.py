"""Ctrl-C, ``kill`` and a closed terminal (SIGINT/SIGTERM/SIGHUP) as one exception the runner handles in one place.

Why a guard instead of the default KeyboardInterrupt: an interrupt must stop an instrument action at once
(the runner then puts the rig in a safe state), but it must never land in the middle of a journal
write, where it would only roll the transaction back after the instrument already acted. Inside
:meth:`Interrupts.deferred` the signal is noted and raised when the block ends.
"""

from __future__ import annotations

import _thread
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: the exit code of a command a stop signal ended: the shell's for a process SIGINT ended (128 + 2), so a script or a
#: shell loop stops too; one value for the runner and every command
EXIT_INTERRUPTED = 130


def stop_signals() -> tuple[int, ...]:
    """The signals that stop a run as Ctrl-C does: :data:`SIGNALS`, and SIGHUP unless it is ignored. Why SIGHUP: a
    closed terminal or a dropped SSH session ended the run as ``kill -9`` does, the pumps and the cell left as they
    were (an operator's trial). Ignored (``nohup``, whose user asked for the run to outlive the terminal), it stays
    ignored."""
    hangup = () if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN else (signal.SIGHUP,)
    return (*SIGNALS, *hangup)


#: how soon (s) a signal whose exception Python dropped is delivered again
REDELIVER_AFTER_S = 0.01


@contextmanager
def redelivering() -> Iterator[None]:
    """While entered (in the main thread), a KeyboardInterrupt (a run's :class:`Interrupted` too) that Python dropped
    is delivered again to the signal's handler, until it propagates. Why: a signal's handler raises wherever the
    main thread is, and what a gc callback, a weakref callback or ``__del__`` raises Python reports and drops
    (``sys.unraisablehook``); raised there, a Ctrl-C was lost and the run went on to its end (a scale-out trial: most
    Ctrl-Cs in the seconds after a ``--scheduler local`` run began, whose in-process Dask scheduler times each
    garbage collection from a gc callback, distributed/gc.py). Anything else goes to the hook it replaced."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous, pending = sys.unraisablehook, []

    def dropped(unraisable: Any) -> None:
        exc = unraisable.exc_value
        if not isinstance(exc, KeyboardInterrupt):
            previous(unraisable)
            return
        log.debug("%r raised where Python drops exceptions (%r): delivered again", exc, unraisable.object)
        again = threading.Timer(REDELIVER_AFTER_S, _thread.interrupt_main, (getattr(exc, "signum", signal.SIGINT),))
        again.daemon = True
        again.start()
        pending[:] = [again]

    sys.unraisablehook = dropped
    try:
        yield
    finally:
        sys.unraisablehook = previous
        for again in pending:  # not to whatever handler is in place after the block
            again.cancel()


class Interrupted(KeyboardInterrupt):
    """The run was asked to stop by ``signum`` (``by``: what sent it, when not the signal itself: a driver's own
    KeyboardInterrupt, orchestrator/loop/runner.py)."""

    def __init__(self, signum: int, by: str | None = None) -> None:
        self.signum = signum
        super().__init__(by or signal.Signals(signum).name)


class Interrupts:
    """While entered (in the main thread), SIGINT, SIGTERM and SIGHUP (:func:`stop_signals`) raise
    :class:`Interrupted`."""

    def __init__(self) -> None:
        self._depth = 0
        self._pending: int | None = None
        self._previous: dict[int, Any] = {}
        self._stopping = False

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in stop_signals()}
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        log.info("received %s", signal.Signals(signum).name)
        if self._stopping:  # a second Ctrl-C must not cut short the safe state and the journal's last word
            log.warning("already stopping: making the rig safe and closing the journal (kill -9 to force)")
            return
        if self._depth:
            self._pending = signum
            return
        raise Interrupted(signum)

    def stop(self) -> None:
        """From now on signals are only logged: the run is stopping (safe state, last journal entries), and a
        second Ctrl-C must not leave an experiment ``running`` without its ``interrupted`` event."""
        self._stopping = True
        self._pending = None

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """A block a signal must not split (a journal write); the signal is raised after it."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
        if not self._depth and self._pending is not None:
            signum, self._pending = self._pending, None
            raise Interrupted(signum)
