"""The `labloop` command line: one entry point, sub-commands per area, one error policy.

Error policy (DESIGN.md "CLI"): bad input — a wrong option, a missing file, a damaged model, an unknown
driver — prints one line ``error: ...`` on stderr and exits 2 with nothing written; 0 is success.
"""

from __future__ import annotations

import logging
import sys

import click

from labloop.instruments.errors import ConfigError, SafetyLimitExceeded
from labloop.orchestrator import console
from labloop.orchestrator.cli_backtest import backtest
from labloop.orchestrator.cli_campaign import log_command, schema, validate
from labloop.orchestrator.cli_instruments import drivers as drivers_app
from labloop.orchestrator.cli_instruments import sim as sim_app
from labloop.orchestrator.cli_run import report, resume, run
from labloop.orchestrator.cli_surrogate import app as surrogate_app
from labloop.orchestrator.journal import JournalError
from labloop.orchestrator.yaml_source import CampaignError
from labloop.surrogate.errors import SurrogateError

log = logging.getLogger(__name__)

EXIT_BAD_INPUT = 2



@click.group(help="labloop: a self-driving lab for redox-active organic molecules.")
@click.option("--verbose", "-v", count=True, help="-v: progress notes, -vv: debug (every serial byte).")
def app(verbose: int) -> None:
    console.setup_logging(verbose)


app.add_command(surrogate_app, name="surrogate")
app.add_command(validate)
app.add_command(schema)
app.add_command(log_command, name="log")
app.add_command(drivers_app, name="drivers")
app.add_command(sim_app, name="sim")
app.add_command(run)
app.add_command(resume)
app.add_command(report)
app.add_command(backtest)

#: exceptions that mean "the user's input is wrong" rather than "labloop has a bug"
BAD_INPUT_ERRORS: tuple[type[Exception], ...] = (SurrogateError, ConfigError, CampaignError, JournalError,
                                                 SafetyLimitExceeded)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns (and, as a console script, exits with) the exit code."""
    try:
        result = app.main(args=argv, prog_name="labloop", standalone_mode=False)
    except click.exceptions.Exit as exc:  # --help, or ctx.exit(code)
        return exc.exit_code
    except click.UsageError as exc:
        ctx = f"{exc.ctx.command_path}: " if exc.ctx else ""
        console.err.print(f"error: {ctx}{exc.format_message()}", markup=False, highlight=False, soft_wrap=True)
        return EXIT_BAD_INPUT
    except click.Abort:
        console.err.print("aborted", markup=False)
        return 130
    except BAD_INPUT_ERRORS as exc:
        console.err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return EXIT_BAD_INPUT
    return result if isinstance(result, int) else 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
