"""Terminal output shared by every command: one stderr console for progress and messages.

Why one place: results go to stdout (tables, ``--json``) so scripts can pipe them, while progress bars,
warnings and errors go to stderr; each command only says what to show.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

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

from labloop.core.text import plural, printable

if TYPE_CHECKING:
    from labloop.surrogate.featurize import InvalidSmiles
    from labloop.surrogate.repeats import Repeats

log = logging.getLogger(__name__)

#: the width of results written to a pipe or a file (see ``out``)
PIPED_WIDTH = 200

__all__ = ["err", "out", "printable", "progress", "report_invalid", "setup_logging"]

#: results; piped into a file or ``grep``, rich would fold a table at 80 columns, so one row would span
#: several lines: off a terminal (and with no COLUMNS set) a table keeps its rows whole up to 200 columns
#: Neither console reads ``:name:`` as an emoji code: messages quote text from outside (a file's first line, a
#: SMILES, a device's reply), and ``root:x:0`` was shown as ``root❌0`` (a security trial).
out = Console(width=None if Console().is_terminal or "COLUMNS" in os.environ else PIPED_WIDTH, emoji=False)


class _Stderr:
    """``sys.stderr`` as it is at each call (a test's capture included), whose reader going away (``run ... 2>&1 |
    head``, a closed terminal's pipe) drops what follows instead of raising. Why: a campaign's messages are not its
    work; the first warning written into a pipe whose reader had gone raised BrokenPipeError, and the run ended
    before its first experiment with exit 1, or a finished one exited 1 on its summary (an unattended-lab trial)."""

    gone = False

    @staticmethod
    def _stream() -> TextIO:
        """``sys.stderr``, or the stream behind it while a progress bar shows: rich's Live puts a proxy there that
        prints into its console, which is ``err`` itself, so writing to the proxy wrote to the proxy for ever, and
        every command with a bar hung on a terminal, Ctrl-C unheard (a Dask trial; rich's own consoles unwrap it)."""
        return getattr(sys.stderr, "rich_proxied_file", sys.stderr)

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return self._stream().write(text)
            except BrokenPipeError:
                self.gone = True
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._stream().flush()
            except BrokenPipeError:
                self.gone = True

    def isatty(self) -> bool:
        return not self.gone and self._stream().isatty()

    def fileno(self) -> int:
        return self._stream().fileno()

    @property
    def encoding(self) -> str:
        return getattr(self._stream(), "encoding", None) or "utf-8"


#: messages; off a terminal (a log file, a pipe, CI) each stays one line however long, for grep: rich folded
#: them at 80 columns, where a terminal does not tell it the width
err = Console(file=_Stderr(), soft_wrap=not Console(stderr=True).is_terminal, emoji=False)  # type: ignore[arg-type]


class LineHandler(logging.Handler):
    """Log records off a terminal: one line each (a traceback under it), on the stream ``err`` writes to at the
    time (a test's capture included). RichHandler draws a record in a table as wide as the console, so in a
    log file a warning was folded at 80 columns and padded with spaces to them."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            err.file.write(self.format(record) + "\n")
            err.file.flush()
        except Exception:  # as logging.StreamHandler: a closed stream must not end the program
            self.handleError(record)


def _one_line(record: logging.LogRecord) -> bool:
    """Whether :class:`OneLineWarnings` says ``record``: a warning, or an error without a traceback."""
    return record.levelno == logging.WARNING or (record.levelno == logging.ERROR and not record.exc_info)


class OneLineWarnings(logging.Handler):
    """A module's warning as one ``warning: ...`` line, and an error without a traceback as one ``error: ...`` line,
    as the commands say theirs: the layers below the console (a protocol executor, a driver) can only log, and
    rich's handler made each warning a block of wrapped lines headed ``WARNING labloop.protocols.executor:`` (a
    lab-grade run printed 51 of them); a plug-in's bug read ``ERROR labloop.orchestrator.loop.runner: experiment
    1: ...`` beside ``warning: experiment 1 failed: ...`` (a plug-in engineer's trial). An error with its traceback
    (a labloop bug, to be reported with it) is drawn with it, by the other handler."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.addFilter(_one_line)

    def emit(self, record: logging.LogRecord) -> None:
        word = "warning" if record.levelno == logging.WARNING else "error"
        try:
            err.print(f"{word}: {printable(record.getMessage())}", markup=False, highlight=False, soft_wrap=True)
        except Exception:
            self.handleError(record)


class _PrintableFormatter(logging.Formatter):
    """A record's message with its control characters written as escapes (:func:`printable`), its traceback as it
    is: an instrument name or a plug-in's exception holding ESC sequences reached the terminal raw with -v (a
    security trial)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)


def setup_logging(verbose: int) -> None:
    """WARNING by default, INFO with -v, DEBUG (every byte on every serial line) with -vv; a warning as one
    ``warning:`` line (:class:`OneLineWarnings`), the rest drawn by rich beside the progress bars on a terminal (an
    error's traceback included), one plain line per record elsewhere (:class:`LineHandler`)."""
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    if err.is_terminal:
        rest: logging.Handler = RichHandler(console=err, show_time=verbose > 1, show_path=False)
        rest.setFormatter(_PrintableFormatter("%(name)s: %(message)s"))
    else:
        rest = LineHandler()
        rest.setFormatter(_PrintableFormatter(f"{'%(asctime)s ' if verbose > 1 else ''}%(levelname)s %(name)s: "
                                              "%(message)s"))
    rest.addFilter(lambda record: not _one_line(record))
    logging.basicConfig(level=level, force=True, handlers=[OneLineWarnings(), rest])


#: how often a task of a hidden progress bar (stderr not a terminal) says how far it is, in seconds, and when first
PLAIN_PROGRESS_S = 60.0
FIRST_PLAIN_S = 30.0


class _Progress(Progress):
    """rich's bars on a terminal; elsewhere (stderr to a file, a service's log) the bars are hidden, and each task
    still running says how far it is in one plain line, first after :data:`FIRST_PLAIN_S`, then every
    :data:`PLAIN_PROGRESS_S`. Why: a run started as
    ``labloop run ... > run.log 2>&1`` printed two lines in the 100 s its library's predictions took, and nothing
    told a lab whether it worked or hung (a trial); a bar drawn into a file would fill it with control codes.

    A task added with a ``counted`` field (``add_task("experiments", total=30, counted="experiments")``) has a
    description that says its state on the bar (``experiment 12``, ``proposing``) and counts things done: its
    plain line names what it counts, ``experiments: 25 of 30 done after 62 s``, where the state as a heading read
    ``25 done: 25 of 30 after 62 s`` (a trial)."""

    def __init__(self, *columns: object, plain: bool, **kwargs: object) -> None:
        super().__init__(*columns, **kwargs)  # type: ignore[arg-type]
        self._plain = plain
        self._said: dict[object, float] = {}

    def update(self, task_id, **kwargs) -> None:  # type: ignore[no-untyped-def, override]
        super().update(task_id, **kwargs)
        self._say(task_id)

    def advance(self, task_id, advance: float = 1) -> None:  # type: ignore[no-untyped-def, override]
        super().advance(task_id, advance)
        self._say(task_id)

    def _say(self, task_id: object) -> None:
        if not self._plain:
            return
        task = next(t for t in self.tasks if t.id == task_id)
        elapsed = task.elapsed or 0.0
        # the first line after FIRST_PLAIN_S: a library's predictions of 40-80 s said nothing at 60 s apart (a trial)
        every = PLAIN_PROGRESS_S if task_id in self._said else FIRST_PLAIN_S
        if task.finished or elapsed - self._said.get(task_id, 0.0) < every:
            return
        self._said[task_id] = elapsed
        done = f"{task.completed:g}" + ("" if task.total is None else f" of {task.total:g}")
        counted = task.fields.get("counted")
        said = f"{printable(task.description)}: {done}" if counted is None else f"{counted}: {done} done"
        err.print(f"{said} after {elapsed:.0f} s", markup=False, highlight=False, soft_wrap=True)


def progress() -> Progress:
    """A progress bar on stderr (hidden when stderr is not a terminal, e.g. in CI logs, where a plain line says how
    far each task is every :data:`PLAIN_PROGRESS_S`)."""
    return _Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                     TimeRemainingColumn(), console=err, transient=True, disable=not err.is_terminal,
                     plain=not err.is_terminal)


def beyond_prior_said(n: int) -> str:
    """``report_invalid``'s start for ``n`` ions, radicals and salts of a library
    (labloop.surrogate.featurize.beyond_prior): they are kept, and predicted, but the sigma of an extrapolation says
    nothing of how far off it is."""
    return (f"{{n}} {plural(n, 'molecule')} in {{path}} {plural(n, 'lies', 'lie')} outside the neutral closed-shell "
            "DFT prior: predicted by extrapolation, with a sigma too small to show it")


def report_invalid(invalid: Sequence[InvalidSmiles], path: Path | str,
                   what: str = "skipped {n} invalid SMILES in {path}", *,
                   line_of: Callable[[int], int]) -> None:
    """Invalid SMILES are skipped, never fatal: say how many and where (``line_of``: the line of a 0-based data
    row, a table's from :func:`labloop.surrogate.dataset.csv_lines`, a library's from
    :func:`labloop.surrogate.library_pipeline.row_lines`); ``what`` is the message's start, with ``{n}`` and
    ``{path}``."""
    said = invalid_said(invalid, path, what, line_of=line_of)
    if said is not None:
        err.print(f"warning: {said}", markup=False, highlight=False, soft_wrap=True)


def invalid_said(invalid: Sequence[InvalidSmiles], path: Path | str,
                 what: str = "skipped {n} invalid SMILES in {path}", *,
                 line_of: Callable[[int], int]) -> str | None:
    """What :func:`report_invalid` says after ``warning:`` (None when nothing is invalid), for a command that
    collects its warnings (``backtest``, whose ``--json`` lists them)."""
    if not invalid:
        return None
    shown = ", ".join(f"line {line_of(i.row)} {i.shown}" for i in invalid[:5])
    more = f" and {len(invalid) - 5} more" if len(invalid) > 5 else ""
    return f"{what.format(n=len(invalid), path=path)}: {shown}{more}"


def repeats_said(repeats: Repeats, data: Path | str, targets: Sequence[str], *,
                 line_of: Callable[[int], int]) -> list[str]:
    """What is said after ``warning:`` of a training table's repeated molecules and stereoisomers, merged before
    training (``surrogate train`` and ``sweep``, a campaign's prior): how many of each, and one more line when some
    molecule's rows disagree (:data:`labloop.surrogate.dataset.REPEAT_SPREAD`), naming the first one's lines and
    spread: a mix-up in the table (a reference, a unit, a sign) was averaged without a word. ``line_of``: as
    :func:`report_invalid`'s."""
    from labloop.surrogate.dataset import REPEAT_SPREAD, unit_of

    said = []
    if repeats.rows:
        said.append(f"{repeats.rows} {plural(repeats.rows, 'row')} of {data} "
                    f"{plural(repeats.rows, 'repeats', 'repeat')} the molecule of an earlier row, compared as "
                    f"canonical SMILES (first: line {line_of(repeats.first)}, the molecule of line "
                    f"{line_of(repeats.of)}): each molecule is trained on once, with the mean of its rows' values per "
                    "target")
    if repeats.stereo:
        n = repeats.stereo
        said.append(f"{n} {plural(n, 'row')} of {data} {plural(n, 'holds', 'hold')} a stereoisomer of an earlier row's "
                    f"molecule (first: line {line_of(repeats.stereo_first)}, an isomer of line "
                    f"{line_of(repeats.stereo_of)}'s), which the surrogate's fingerprint does not tell apart: "
                    "stereoisomers are trained on as one molecule, with the mean of their rows' values per target")
    if repeats.disagreeing:
        n, rows, target = repeats.disagreeing, repeats.spread_rows, targets[repeats.spread_target]
        lines = ", ".join(str(line_of(r)) for r in rows[:5]) + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")
        spread = f"{target} spread {repeats.spread:.3f} {unit_of(target)}"
        mix_up = "(a reference electrode, a unit, a sign, another molecule's row)"
        said.append(f"{n} merged {plural(n, 'molecule')} of {data} {plural(n, 'has', 'have')} values more than "
                    f"{REPEAT_SPREAD:g} {unit_of(target)} apart (first: lines {lines}, stereoisomers of one molecule, "
                    f"{spread}): isomers can differ so, but the surrogate's fingerprint does not tell them apart and "
                    f"their mean is trained on; if they should not differ, check those rows for a mix-up {mix_up}"
                    if repeats.spread_isomers else
                    f"{n} repeated {plural(n, 'molecule')} of {data} {plural(n, 'has', 'have')} values more than "
                    f"{REPEAT_SPREAD:g} {unit_of(target)} apart (first: lines {lines}, {spread}), more than a "
                    f"measurement repeats by, and their mean is trained on: check those rows for a mix-up {mix_up}")
    return said
