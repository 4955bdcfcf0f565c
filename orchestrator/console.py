"""Terminal output shared by every command: one stderr console for progress and messages.

Why one place: results go to stdout (tables, ``--json``) so scripts can pipe them, while progress bars,
warnings and errors go to stderr; each command only says what to show.
"""

from __future__ import annotations

import logging

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

log = logging.getLogger(__name__)

out = Console()
err = Console(stderr=True)


def setup_logging(verbose: int) -> None:
    """WARNING by default, INFO with -v, DEBUG (every byte on every serial line) with -vv."""
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(name)s: %(message)s", force=True,
                        handlers=[RichHandler(console=err, show_time=verbose > 1, show_path=False)])


def progress() -> Progress:
    """A progress bar on stderr (hidden when stderr is not a terminal, e.g. in CI logs)."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=err, transient=True, disable=not err.is_terminal)
