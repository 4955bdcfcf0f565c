"""The command line: every command is in :mod:`labloop.orchestrator.cli.main`.

Why the console script lives here: loading the commands takes seconds (scipy, RDKit, pydantic), and a Ctrl-C
in those seconds would otherwise end in a traceback; :func:`entry` imports them itself and exits 130.
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
