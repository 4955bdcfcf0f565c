"""The `labloop` command line: one entry point, sub-commands per area, one error policy.

Error policy: bad input (:class:`InputError` — a wrong option, a missing file, a damaged model, an unknown
driver, a port that cannot be opened) prints one line ``error: ...`` on stderr and exits 2 with nothing
written; the rig failing (:class:`InstrumentError`) prints one line and exits 1; anything else is a bug and
still prints one line (the traceback goes to the log at ``-vv``) and exits 1. 0 is success.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import click

from labloop.core.errors import InputError, LabloopError
from labloop.orchestrator import console
from labloop.orchestrator.cli.commands import COMMANDS, Entry, LazyGroup
from labloop.orchestrator.loop.interrupts import EXIT_INTERRUPTED, Interrupted, redelivering, signal_said

log = logging.getLogger(__name__)

EXIT_BAD_INPUT = 2
#: one more entry of the listing (orchestrator/cli/commands.py), imported when run like the others
COMMANDS["candidates"] = Entry("labloop.orchestrator.cli.candidates", "candidates",
                               "Rank a campaign's unmeasured library molecules by P(hit).")


#: -h as well as --help, for every command (a newcomer's `labloop validate -h` was "No such option '-h'")
@click.group(cls=LazyGroup, help="labloop: a self-driving lab for redox-active organic molecules.",
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="labloop", message="%(prog)s %(version)s")
@click.option("--verbose", "-v", count=True, help="-v: progress notes, -vv: debug (every serial byte).")
def app(verbose: int) -> None:
    console.setup_logging(verbose)


EXIT_FAILED = 1


def _stop_in(exc: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C or ``kill`` (a KeyboardInterrupt) ``exc`` was raised by or while it unwound the stack, or None.
    TensorFlow's device scope, interrupted between entering and leaving, raises ``RuntimeError: Exiting device scope
    without proper scope nesting`` on the way out, which hid the KeyboardInterrupt under "unexpected RuntimeError ...
    (a labloop bug)" during ``labloop surrogate train``: the user pressed Ctrl-C, and that is what is said."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def _aborted(exc: BaseException) -> int:
    """``aborted``, naming the signal when it was not a Ctrl-C's (``aborted (SIGTERM)``): exit 130."""
    stop = _stop_in(exc)
    said = "" if stop is None or (signum := signal_said(stop)) == "SIGINT" else f" ({signum})"
    console.err.print(f"aborted{said}", markup=False)
    return EXIT_INTERRUPTED


def interruptible() -> bool:
    """Ctrl-C and ``kill -INT`` stop labloop whatever started it. A shell script's ``labloop dashboard STORE &``
    starts it with SIGINT ignored (a background job of a shell without job control), and Python keeps an ignored
    SIGINT: the first ``kill -INT`` in the seconds before the page served was lost, and later the server stopped
    with exit 0 instead of 130, so the script could not tell a stop from a success; a run ignored it until its
    loop began. Ignoring SIGINT there is the shell's accident, not the user's wish, so the default comes back.
    ``nohup`` keeps working: it ignores SIGHUP, which stays ignored (orchestrator/loop/interrupts.py).

    A ``kill`` (SIGTERM: a batch system's or a service manager's stop) raises as a Ctrl-C does too, unless something
    ignores it: the commands that do not take it themselves (``validate``, ``drivers list``, ``dashboard``) ended
    with 143 and no word, where the long ones (``run``, ``predict``, ``backtest``) say what stopped. Returns whether
    it set SIGTERM's handler, which :func:`main` then puts back to the default."""
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return False
    signal.signal(signal.SIGTERM, _terminated)
    return True


def _terminated(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM's handler while a command runs: the KeyboardInterrupt a Ctrl-C raises, naming its signal."""
    raise Interrupted(signum)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns (and, as a console script, exits with) the exit code."""
    terminable = interruptible()  # before a command's module loads: that takes seconds, which a stop must cut
    try:
        return _command(argv)
    finally:
        if terminable:  # as it was (tests run main in their own process)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _command(argv: list[str] | None) -> int:
    """:func:`main`'s command, its errors said by the error policy (the module's docstring)."""
    try:
        with redelivering():  # a Ctrl-C raised where Python drops it (a gc callback's) is raised again
            result = app.main(args=argv, prog_name="labloop", standalone_mode=False)
    except click.exceptions.Exit as exc:  # --help, or ctx.exit(code)
        return exc.exit_code
    except click.exceptions.NoArgsIsHelpError as exc:  # `labloop`, `labloop drivers`: the help, as --help shows it
        console.out.print(exc.ctx.get_help() if exc.ctx else exc.format_message(), markup=False, highlight=False,
                          soft_wrap=True)
        return 0
    except click.UsageError as exc:
        ctx = f"{exc.ctx.command_path}: " if exc.ctx else ""
        # -v and -vv are labloop's own, before the command: after it they were "No such option" alone (a newcomer)
        said = console.printable(exc.format_message())
        if "No such option '-v'" in said:  # -vv too, which click reads as -v -v
            said = f"{said.rstrip('.')}: -v and -vv go before the command, labloop -v " \
                   f"{ctx.removeprefix('labloop ').rstrip(': ')} ..."
        console.err.print(f"error: {ctx}{said}", markup=False, highlight=False, soft_wrap=True)
        return EXIT_BAD_INPUT
    except (click.Abort, KeyboardInterrupt) as exc:  # Ctrl-C or kill outside a campaign's loop (which says more)
        return _aborted(exc)
    except InputError as exc:
        console.err.print(f"error: {console.printable(str(exc))}", markup=False, highlight=False, soft_wrap=True)
        return EXIT_BAD_INPUT
    except LabloopError as exc:  # the rig or the cluster failed outside a campaign's loop
        console.err.print(f"error: {console.printable(str(exc))}", markup=False, highlight=False, soft_wrap=True)
        return EXIT_FAILED
    except ImportError as exc:
        if (exc.name or "").split(".")[0] == "labloop":  # labloop's own module: a bug
            return _bug(exc)
        # a package labloop needs, missing or broken in this environment: pyarrow 26 beside numpy 1.26 (which pip
        # allowed) said "unexpected ImportError ... (a labloop bug; run with -vv ...)", and -vv showed nothing, the
        # command's module failing before logging is set up (a packaging trial)
        log.debug("import failed", exc_info=exc)
        said = " ".join(str(exc).split())
        console.err.print(console.printable(f"error: a package labloop needs cannot be imported: {said} (this "
                                            "environment's packages are incomplete or do not fit together: `pip "
                                            "check` lists conflicts; reinstall labloop with its dependencies)"),
                          markup=False, highlight=False, soft_wrap=True)
        return EXIT_FAILED
    except OSError as exc:  # the disk is full, a folder is read-only: the machine's trouble, said in one line
        where = f" ({exc.filename})" if exc.filename else ""
        console.err.print(console.printable(f"error: {exc.strerror or exc}{where}"), markup=False, highlight=False,
                          soft_wrap=True)
        return EXIT_FAILED
    except Exception as exc:
        return _bug(exc)
    return result if isinstance(result, int) else 0


def _bug(exc: Exception) -> int:
    """A bug: one line for the user, the traceback in the log (-vv); a Ctrl-C that raised it is said as one."""
    log.debug("unexpected error", exc_info=exc)
    if _stop_in(exc) is not None:
        return _aborted(exc)
    console.err.print(console.printable(f"error: unexpected {type(exc).__name__}: {' '.join(str(exc).split())} "
                                        "(a labloop bug; run with -vv to see where)"),
                      markup=False, highlight=False, soft_wrap=True)
    return EXIT_FAILED


if __name__ == "__main__":  # as the console script does (orchestrator/cli/__init__.py)
    from labloop.orchestrator.cli import entry

    entry()
