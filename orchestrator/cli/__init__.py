"""The command line: :mod:`labloop.orchestrator.cli.main` is the group and its error policy,
:mod:`labloop.orchestrator.cli.commands` says which module holds each command (imported when it runs).

Why the console script lives here: loading a command takes seconds (scipy, RDKit, TensorFlow), and a Ctrl-C
in those seconds would otherwise end in a traceback; :func:`entry` imports the group itself and exits 130.
"""

from __future__ import annotations

import sys


def entry() -> None:
    """The ``labloop`` console script (pyproject.toml)."""
    try:
        from labloop.orchestrator.cli.main import main
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(main())
