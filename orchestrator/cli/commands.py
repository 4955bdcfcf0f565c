"""Where each ``labloop`` command lives, and its one line in ``labloop --help``.

Why a table: the commands' modules import scipy, RDKit, pandas, scikit-optimize and TensorFlow, seconds of
work on a small machine; :class:`LazyGroup` imports a command's module only when that command is run (or
asked for its own ``--help``), so ``labloop --help``, ``labloop --version`` and a mistyped command answer at
once. Each command's full help stays with the command; its line here is the listing's.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib import util
from pathlib import Path

import click


@dataclass(frozen=True)
class Entry:
    """A command: the module that defines it, the attribute holding it, its line in the listing."""

    module: str
    attribute: str
    summary: str


_CLI = "labloop.orchestrator.cli"

COMMANDS: dict[str, Entry] = {
    "init": Entry(f"{_CLI}.init", "init", "Write the example campaigns into a folder, to run and edit."),
    "validate": Entry(f"{_CLI}.campaign", "validate", "Check a campaign file for `run`, writing nothing."),
    "run": Entry(f"{_CLI}.run", "run", "Run a campaign: propose, measure, learn, until its budget."),
    "resume": Entry(f"{_CLI}.run", "resume", "Continue a stopped campaign from its journal."),
    "log": Entry(f"{_CLI}.journal", "log_command", "Show a campaign's journal (--follow while it runs)."),
    "report": Entry(f"{_CLI}.journal", "report", "Write a campaign's HTML report, plots and CSV exports."),
    "dashboard": Entry(f"{_CLI}.dashboard", "dashboard", "Serve a live dashboard of a campaign's journal."),
    "approve": Entry(f"{_CLI}.dashboard", "approve", "Approve or veto the batch a campaign holds for approval."),
    "backtest": Entry(f"{_CLI}.backtest", "backtest", "Compare planners against a table of true values."),
    "schema": Entry(f"{_CLI}.campaign", "schema", "Print the JSON Schema of campaign files."),
    "drivers": Entry(f"{_CLI}.instruments", "drivers", "List instrument drivers, or check one."),
    "sim": Entry(f"{_CLI}.instruments", "sim", "Serve an instrument's emulator on a pseudo-terminal."),
    "surrogate": Entry(f"{_CLI}.surrogate", "app", "Train, evaluate and use the IE/EA surrogate model."),
}


def docs_folder() -> Path | None:
    """The folder of labloop's manual (the repository's docs/, installed with the package as ``labloop.docs``), or
    None when it is not there. Why: messages and help name files such as docs/drivers.md, which an installed
    package had nowhere, and a lab's instrument PC is often offline (a packaging trial)."""
    try:
        spec = util.find_spec("labloop.docs")
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        if (Path(location) / "running.md").is_file():
            return Path(location)
    return None


def _unloadable(name: str, exc: Exception) -> click.Command:
    """A stand-in for command ``name`` whose module raised ``exc`` on import (a dependency missing or broken), which
    raises it when run. Why not at once: click resolves the command before the group's callback sets up logging, so
    ``-vv`` showed no traceback of it (a review)."""
    def fail() -> None:
        raise exc

    return click.Command(name, callback=fail, add_help_option=False,
                         context_settings={"ignore_unknown_options": True, "allow_extra_args": True})


class LazyGroup(click.Group):
    """A click group whose commands are imported from :data:`COMMANDS` when first needed."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        try:
            module = importlib.import_module(entry.module)
        except Exception as exc:  # raised when the command runs, after the group set up logging (-vv)
            return _unloadable(cmd_name, exc)
        command: click.Command = getattr(module, entry.attribute)
        return command

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Where the manual is, whole on one line (a path must not be wrapped)."""
        super().format_epilog(ctx, formatter)
        if (folder := docs_folder()) is not None:
            formatter.write_paragraph()
            formatter.write(f"Documentation: {folder}/ (start with running.md; messages name its files docs/NAME.md)\n")

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The listing from the table's lines, without importing any command."""
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name].summary) for name in self.list_commands(ctx)])
