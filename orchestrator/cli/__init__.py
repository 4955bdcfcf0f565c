"""The command line: :mod:`labloop.orchestrator.cli.main` is the group and its error policy,
:mod:`labloop.orchestrator.cli.commands` says which module holds each command (imported when it runs).

Why the console script lives here: loading a command takes seconds (scipy, RDKit, TensorFlow), and a Ctrl-C
in those seconds would otherwise end in a traceback; :func:`entry` imports the group itself and exits 130.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
from types import FrameType

#: the signals a person or a batch system stops labloop with
_STOPS = (signal.SIGINT, signal.SIGTERM)


def entry() -> None:
    """The ``labloop`` console script (pyproject.toml)."""
    atexit.register(_ignore_stops)  # registered first, so run last
    try:
        from labloop.orchestrator.cli.main import main
    except KeyboardInterrupt:
        sys.exit(130)
    code = main()
    _stops_while_exiting_are_said()
    sys.exit(code)


def _stops_while_exiting_are_said() -> None:
    """Once the command has ended, a stop signal (Ctrl-C, ``kill``) says so in one line and exits 130 at once:
    130 still, so a script or a shell loop around the command stops as asked; what the command wrote is closed and
    whole by then. Why: Python's exit joins the threads a Dask client leaves and runs the finalisers, and a Ctrl-C
    then ended the process with 130 and no word at all, right after ``wrote 5000 predictions`` (a Dask operator's
    trial, 3 of 3 times). A hang in those threads can still be stopped this way."""
    from labloop.orchestrator.loop.interrupts import EXIT_INTERRUPTED

    def stopped(signum: int, _frame: FrameType | None) -> None:
        sys.stdout.flush()
        sys.stderr.write(f"interrupted ({signal.Signals(signum).name}) as labloop exited, after the command had "
                         "ended: nothing it wrote is lost\n")
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)

    for signum in _STOPS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, stopped)


def _ignore_stops() -> None:
    """The last of the exit's Python code: a stop signal after it is ignored. Why: Python then puts every handler a
    program set back to the system's default, under which a signal ends the process at once, with no word: the
    silent 130 of :func:`_stops_while_exiting_are_said` in the tenth of a second the rest of the exit takes (the
    library's own teardown, TensorFlow's), after everything was written and closed."""
    for signum in _STOPS:
        signal.signal(signum, signal.SIG_IGN)
