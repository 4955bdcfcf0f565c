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
import time
from collections.abc import Callable, Iterator
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
#: a stop the code running does not take (a plug-in whose dispense retries inside a bare ``except:``, which catches
#: the KeyboardInterrupt each signal raises) is sent again by the person who wants it: the ``FORCE_AFTER_SIGNALS``-th
#: stop signal none of which was taken, ``FORCE_AFTER_S`` or more after the first (not a hand's quick repeat of a stop
#: that is being taken), ends labloop at once through :attr:`Interrupts.on_held`
FORCE_AFTER_SIGNALS = 3
FORCE_AFTER_S = 2.0
#: a stop signal this long (s) or more after one not taken says so on the console, once; a quick second Ctrl-C (a
#: hand's double tap, while the first is being taken) says nothing
HELD_SAID_AFTER_S = 1.0
#: a stop not taken this long (s) after its signal ends labloop at once by itself (:attr:`Interrupts.on_held`): one
#: signal is all a service manager's stop, a plain ``kill`` or a closed terminal (SIGHUP) sends, and nobody sends the
#: others (a reviewer's finding)
HELD_FORCE_S = 15.0
#: a signal this close (s) to the one before is the same stop, not another: a hand's double tap, or a redelivery of
#: one Python dropped (:func:`redelivering`)
SAME_STOP_S = 0.1


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


def signal_said(exc: KeyboardInterrupt) -> str:
    """The signal that stopped a command, for its last line: ``SIGTERM`` as :class:`Interrupted` names it (also as
    the ``cause`` an exception carrying it keeps: orchestrator/backtest.py StoppedEarly), a plain KeyboardInterrupt a
    Ctrl-C's ``SIGINT``."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, KeyboardInterrupt):
        return signal_said(cause)
    return signal.Signals(exc.signum).name if isinstance(exc, Interrupted) else "SIGINT"


class Interrupts:
    """While entered (in the main thread), SIGINT, SIGTERM and SIGHUP (:func:`stop_signals`) raise
    :class:`Interrupted`.

    A stop is taken when the code that handles it calls :meth:`stop`. One that is not (the code running catches the
    exception: a plug-in driver's bare ``except:``) is raised again by each further signal, the second says so on the
    console, and the :data:`FORCE_AFTER_SIGNALS`-th ends labloop through :attr:`on_held` where it is set, as does the
    signal itself :data:`HELD_FORCE_S` after it came (a watchdog thread raises it again). Why: a
    plug-in's retry loop swallowed every Ctrl-C and SIGTERM; the run went on silent, no pump was stopped, and only
    ``kill -9`` ended it, the rig left as it was (a plug-in engineer's trial)."""

    def __init__(self, *, held_force_s: float = HELD_FORCE_S) -> None:
        self._depth = 0
        self._pending: int | None = None
        self._previous: dict[int, Any] = {}
        self._stopping = False
        self._untaken: list[float] = []  # when each stop signal raised and not yet taken came (monotonic s)
        self._held_said = False
        self._held_force_s = held_force_s
        self._watchdog: threading.Timer | None = None  # ends a stop not taken by itself (HELD_FORCE_S)
        self._forced = False  # the watchdog's signal: end at once
        #: ``on_held(signum, held_s)``: ends the run at once (it does not return), the instruments sent their stop and
        #: the journal told (orchestrator/cli/run.py); None: the signals only raise again
        self.on_held: Callable[[int, float], None] | None = None

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in stop_signals()}
        return self

    def __exit__(self, *exc: object) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
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
        if self.on_held is not None:
            self._untaken_stop(signum, self.on_held)
        raise Interrupted(signum)

    def _untaken_stop(self, signum: int, on_held: Callable[[int, float], None]) -> None:
        """Note a stop signal not yet taken: the watchdog's own ends the run (:meth:`_force`), a later one after one
        not taken says so or ends it (:meth:`_held`), the first starts the watchdog."""
        now = time.monotonic()
        if self._forced:  # the watchdog's own signal: the stop's end, no new stop
            self._stopping = True
            on_held(signum, now - self._untaken[0])
            return
        if not self._untaken or now - self._untaken[-1] >= SAME_STOP_S:
            self._untaken.append(now)
        if len(self._untaken) > 1:
            self._held(signum, on_held)
        elif self._watchdog is None:
            self._watchdog = threading.Timer(self._held_force_s, self._force, (signum,))
            self._watchdog.daemon = True
            self._watchdog.start()

    def _force(self, signum: int) -> None:
        """The watchdog (its own thread): a stop still not taken is ended through :attr:`on_held`, by the signal
        raised again, whose handler runs on the main thread, where the code that holds the stop runs."""
        if self._untaken and not self._stopping:
            log.warning("the stop asked %.0f s ago has not been taken: ending labloop at once",
                        time.monotonic() - self._untaken[0])
            self._forced = True
            signal.raise_signal(signum)

    def _held(self, signum: int, on_held: Callable[[int, float], None]) -> None:
        """A stop signal after one not taken: the end through :attr:`on_held` (:data:`FORCE_AFTER_SIGNALS`), or a
        console line saying that the stop is held and how to end labloop at once."""
        held_s = self._untaken[-1] - self._untaken[0]
        if len(self._untaken) >= FORCE_AFTER_SIGNALS and held_s >= FORCE_AFTER_S:
            self._stopping = True
            on_held(signum, held_s)
        if held_s >= HELD_SAID_AFTER_S and not self._held_said:
            self._held_said = True
            log.warning("the stop asked %.0f s ago has not been taken: the code running now holds it (a driver that "
                        "catches KeyboardInterrupt?); send it again, %.0f s or more after the first, to end labloop "
                        "at once (or wait: it ends by itself %.0f s after the first): the instruments are sent their "
                        "stop and the experiment runs again on resume", held_s, FORCE_AFTER_S, self._held_force_s)

    def stop(self) -> None:
        """From now on signals are only logged: the run is stopping (safe state, last journal entries), and a
        second Ctrl-C must not leave an experiment ``running`` without its ``interrupted`` event."""
        self._stopping = True
        self._pending = None
        self._untaken, self._held_said = [], False
        if self._watchdog is not None:
            self._watchdog.cancel()

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
