"""Every error labloop raises on purpose, under one root, so the CLI and the runner decide by kind alone.

Why one module (BayBE keeps one exceptions module too): the two kinds need two different answers, and
a class in the wrong branch does real harm — a candidate whose CV window breaks a safety limit used to
count as an instrument fault, so three such molecules in a row stopped a campaign with "fix the rig".

- :class:`InputError` — the user's input is wrong (campaign file, protocol, option, safety limit, library,
  journal, model file). The CLI prints its one line and exits 2; it is raised before anything is written.
  Met during an experiment (a proposal whose window breaks a limit), it fails that experiment only.
- :class:`InstrumentError` — the rig misbehaved (timeout, garbage reply, stall, unplugged cable). Counted
  toward ``budget.max_consecutive_faults``: several in a row mean a person must look at the rig.

:class:`ClusterLostError` (the Dask cluster went away mid-run) is neither: exit 1, what finished is kept.

A measurement that cannot be used (no reversible couple, a flagged voltammogram) is not an error: the
protocol executor returns it with ``quality_ok`` false, and the runner fails that experiment as
``analysis: ...``, the molecule's fault, never counted against the rig (orchestrator/loop/runner.py).

Each error prints as one line, so the journal and the CLI can show it as it is.
"""

from __future__ import annotations

import datetime
import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from labloop.core.text import clipped

Loc = tuple[str | int, ...]


class LabloopError(Exception):
    """Root of every error labloop raises on purpose."""


class InputError(LabloopError):
    """Bad input: a one-line message for the user, exit code 2, nothing written."""


class InstrumentError(LabloopError):
    """Root of every instrument failure: ``where`` names the device/port, ``what`` says what happened."""

    def __init__(self, where: str, what: str) -> None:
        self.where = where
        self.what = " ".join(what.split())  # one line, whatever the caller built
        super().__init__(f"{where}: {self.what}")


# -- input errors ---------------------------------------------------------------------------------------


class LocatedInputError(InputError):
    """An input error found at a named place (``where``: an instrument, a port, a protocol step)."""

    def __init__(self, where: str, what: str) -> None:
        self.where = where
        self.what = " ".join(what.split())  # one line, whatever the caller built
        super().__init__(f"{where}: {self.what}")


class ConfigError(LocatedInputError, ValueError):
    """A driver option or argument value the device cannot take (bad address, unrepresentable number)."""


class SafetyLimitExceeded(LocatedInputError):
    """A request exceeds the configured safety limits; raised before any byte reaches the device."""


class InvalidParameter(InputError, ValueError):
    """A measurement parameter (CV vertex, scan rate, step) that is not physical or not representable."""


class SurrogateError(InputError):
    """Bad input to the surrogate: a data file, column, option or value that cannot be used."""


class SchedulerAddressError(SurrogateError):
    """A scheduler address that is malformed or where no Dask scheduler answers (bad input, exit 2)."""


class InvalidInput(SurrogateError):
    """A data file, column, option or value that cannot be used (names the offending field)."""


class ModelLoadError(SurrogateError):
    """A model directory that is missing, damaged, or written by an incompatible labloop version."""


class JournalError(InputError, ValueError):
    """A file that is not a labloop journal, or one that cannot be read or written as asked."""


class NotAwaitingApproval(JournalError):
    """An approval the journal cannot take: no batch is waiting, or a vetoed id is not in it (user input)."""


class JournalWriteError(LabloopError):
    """The journal could not record a change during a run (a full disk, a vanished folder): the run stops
    with the rig made safe and exit 1; what was committed before is intact, so ``resume`` continues. ``moved``: the
    journal's file was deleted or replaced, and what the run wrote was saved elsewhere, which the message names."""

    def __init__(self, message: str, *, moved: bool = False) -> None:
        super().__init__(message)
        self.moved = moved


def dotted(loc: Loc) -> str:
    """A field path as a person writes it: ``instruments.pump.options[0]``; a key that is empty or holds
    spaces or control characters is quoted (``budget['']``), so a message stays one readable line."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not part or not str(part).isprintable() or any(c.isspace() for c in str(part)) \
                or len(str(part)) > SHOWN_CHARS:
            text += f"[{shown(str(part))}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def first_line(exc: BaseException) -> str:
    """The first line of what ``exc`` says (its type's name when it says nothing), to quote a library's
    error inside a one-line message."""
    text = _text(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def said(exc: BaseException, chars: int | None = None) -> str:
    """``Type: message`` of ``exc`` on one line (its whitespace runs folded; ``no message`` when it says nothing): how
    a driver's or a plug-in's exception is quoted in a journalled cause, a health report or a one-line error.
    ``chars``: cut to that many characters with an ellipsis, for a console line (a vendor library's message may be
    a page)."""
    text = f"{type(exc).__name__}: {' '.join(_text(exc).split()) or 'no message'}"
    return text if chars is None else clipped(text, chars)


def _text(exc: BaseException) -> str:
    """What ``exc`` says, or that it cannot say: a plug-in's exception whose ``__str__`` itself raises turned its
    driver's failure into "a labloop bug" that named no instrument (an adversarial trial's finding)."""
    try:
        return str(exc)
    except Exception as inner:
        return f"(its message cannot be shown: str() raised {type(inner).__name__})"


#: most characters of an exception a console line quotes (:func:`said`): a vendor's message whole, not its page
SAID_CHARS = 200

#: most characters of a value (or a key) a message repeats: enough to recognise it, not a pasted file
SHOWN_CHARS = 80


def shown(value: Any) -> str:
    """``repr(value)`` for a message, cut to :data:`SHOWN_CHARS` with an ellipsis: a field given 10,000 characters
    (a pasted file, a runaway template) must not become a 10,000-character error line. A value with no Python look
    in a campaign file is shown in its words: ``nothing`` for an empty value (``null``, ``~``), ``true``/``false``,
    not ``None`` and ``True`` (``seed: yes`` said "got True", ``seed:`` "got None")."""
    if value is None or isinstance(value, bool):
        return "nothing" if value is None else str(value).lower()
    # YAML reads an unquoted 2026-01-01 as a date: not datetime.date(2026, 1, 1)
    text = f"{value.isoformat()} (a date)" if isinstance(value, datetime.date) else repr(value)
    return clipped(text, SHOWN_CHARS)


def not_one_of(value: Any, choices: Sequence[str]) -> str:
    """The one wording of "not a valid choice" every check uses, with the closest choice offered when one is close
    (``rinze``, ``load-sample``, British ``analyse``, ``minimise``: a chemist's trial got the list alone)."""
    said = f"{shown(value)} is not one of {', '.join(choices)}"
    if not isinstance(value, str):
        return said
    close = difflib.get_close_matches(value.strip().lower().replace("-", "_"), list(choices), n=1, cutoff=0.75)
    return f"{said}; did you mean {close[0]!r}?" if close else said


#: the message of a required field that is absent (a misspelt key is also an unknown one: that one is shown first)
MISSING = "required, but missing"


@dataclass(frozen=True)
class Problem:
    """One thing wrong: ``loc`` is relative to the validator that found it; ``where`` ("file:line") is set
    when the problem sits in another file than the one being validated."""

    loc: Loc
    message: str
    where: str | None = None

    def line(self, where: str) -> str:
        """``where: field: message`` (the field left out when the problem is with the whole file)."""
        return f"{where}: {dotted(self.loc)}: {self.message}" if self.loc else f"{where}: {self.message}"


class Problems(InputError, ValueError):
    """Raised by validators that can find several problems at once (pydantic keeps it in the error's ctx)."""

    def __init__(self, *problems: Problem) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{dotted(p.loc) or 'value'}: {p.message}" for p in problems))


class CampaignError(InputError, ValueError):
    """A campaign (or protocol) file that cannot be used; carries every error, one line each.

    ``str()`` is one line: the first error, plus how many more there are (``labloop validate --all`` shows each).
    """

    def __init__(self, messages: Sequence[str]) -> None:
        self.messages = list(messages)
        more = len(self.messages) - 1
        more = (f" (and {more} more {'problem' if more == 1 else 'problems'} in the file: `labloop validate --all` "
                "lists every one)" if more else "")
        super().__init__(f"{self.messages[0]}{more}")

    @classmethod
    def from_problems(cls, problems: Problems) -> CampaignError:
        """For problems that each know their ``where`` (file errors)."""
        return cls([p.line(p.where or "?") for p in problems.problems])


# -- instrument errors ----------------------------------------------------------------------------------


class InstrumentTimeout(InstrumentError):
    """No (complete) reply before the deadline; safe commands may be retried by the driver."""


class ProtocolError(InstrumentError):
    """A reply arrived but it is garbage, garbled, or not the reply this command expects."""


class DeviceError(InstrumentError):
    """The device answered with an error code (e.g. `?OOR`); `code` holds it verbatim."""

    def __init__(self, where: str, code: str, what: str) -> None:
        self.code = code
        super().__init__(where, f"device error {code}: {what}")


class PumpStalled(InstrumentError):
    """The pump reported a motor stall: the dispensed volume is unknown, a person should look."""


class Overload(InstrumentError):
    """The potentiostat reported a current overload: the measurement is not valid."""


class Disconnected(InstrumentError):
    """The port vanished or could not be opened (cable pulled, USB adapter reset, emulator stopped)."""


class PumpDisconnected(Disconnected):
    """A pump's port vanished while it pumped (a cable pulled, a USB adapter reset, its emulator gone): nothing can
    ask it what it delivered. Raised by the protocol executor around the driver's ``Disconnected`` with what a person
    must check: ``pump``, ``step`` (where in the protocol), ``volume_ml`` (asked) and whether it pumped ``into_cell``
    or refilled its syringe; the run's stop says it (orchestrator/loop/runner.py)."""

    def __init__(self, pump: str, step: str, volume_ml: float, *, into_cell: bool, cause: str) -> None:
        self.pump, self.step, self.volume_ml, self.into_cell = pump, step, volume_ml, into_cell
        # "during", not "while it pumped": the port may have gone before the pump was asked (a plug-in author's trial
        # read a port gone before the first byte as a dispense cut short), and nothing can tell which
        what = (f"disconnected during its dispense of {volume_ml:g} mL into the cell (before it began or part way): "
                "how much of it the cell got is unknown (labloop counts all of it)" if into_cell else
                f"disconnected during its refill of {volume_ml:g} mL (before it began or part way): how much it drew "
                "into its syringe is unknown (labloop counts none of it)")
        super().__init__(f"{pump} in {step}", f"{what}: {cause}")


class NoOperator(Disconnected):
    """A step needs a person (place a vial, rinse, purge by hand) and nobody can answer: the console's input is
    closed (a run started from a script, cron or ``nohup`` with no terminal). It does not come back by itself,
    so the runner stops at the first one instead of failing experiment after experiment."""


class DispenseMismatch(InstrumentError):
    """The pump's own dispensed-volume counter disagrees with what was requested. ``delivered_ml``: the volume it
    reports having pushed into the cell, when the mismatch is a dispense's and the pump reports a finite number; the
    executor counts the larger of it and the volume asked (protocols/executor.py ``ProtocolExecutor._pump``)."""

    def __init__(self, where: str, what: str, delivered_ml: float | None = None) -> None:
        super().__init__(where, what)
        self.delivered_ml = delivered_ml


class WrongReturn(InstrumentError):
    """A driver returned what its contract does not allow (None, or another type where a voltammogram, a spectrum or
    a status is due): a bug in the driver, most likely a plug-in's, that labloop's own code then met as "a labloop
    bug"; the instrument's step fails as its fault (:func:`labloop.instruments.contracts.returned`).

    ``scan``: the voltammogram refused, when it is one (potentials in mV, a scan cut short, a NaN point: the
    executor's checks, instruments/voltammogram.py ``returned_scan``), which the run journals as the attempt's raw
    data marked not analysed: it is a real scan of a sample now used up, and a unit slip can be corrected later."""

    def __init__(self, where: str, what: str, *, scan: object | None = None) -> None:
        super().__init__(where, what)
        self.scan = scan


class SafetyBreach(WrongReturn):
    """A scan a driver returned shows the cell was driven beyond ``safety.potential_limits_v`` (a driver that applied
    another potential than asked, or none of labloop's checks before sending): the run stops at once for a person,
    the rig made safe, rather than load the next sample into a rig that overdrives its cell (a trial's driver reached
    2.55 V with limits up to 2.0 V, called a unit slip, and two more samples were scanned before the faults in a row
    stopped it). The attempt fails as an instrument fault, its scan journalled (:class:`WrongReturn`)."""


class ReplayMismatch(InstrumentError):
    """A driver replayed against a wire capture wrote bytes the capture does not have at that point."""


class RigNotReady(InstrumentError):
    """What the cell or a syringe holds by labloop's count (liquid left by an earlier experiment, a syringe
    run low) would stop the next experiment part way, or an instrument's port is gone: a person must empty or fill
    it, or plug the instrument back in, before it starts. ``needs``: which, ``"cell"`` (empty it), ``"syringe"``
    (fill it) or ``"port"`` (``where`` is ``instruments.NAME``), so the advice names the one that helps."""

    def __init__(self, where: str, what: str, *, needs: Literal["cell", "syringe", "port"]) -> None:
        super().__init__(where, what)
        self.needs = needs


class BlankFailed(InstrumentError):
    """The blank showed a dirty electrode or cell (and cleaning, if allowed, did not help): a person must look."""


class BlankNeedsPurge(BlankFailed):
    """The blank showed dissolved O2 and the protocol has no purge step: the protocol must change, which a journal
    (it keeps the protocol it began with) cannot, so the fixed campaign runs with a new store."""


# -- neither input nor instrument ----------------------------------------------------------------------------


class ClusterLostError(LabloopError):
    """The Dask cluster went away (or kept killing workers, or a worker cannot read the library's shards)
    during a run: exit 1, the finished shards are kept (surrogate/compute.py, planners/shard_pool.py)."""


class IllegalTransition(RuntimeError):
    """A state change the experiment's state does not allow: a runner bug, never user input, so it stays
    outside :class:`LabloopError` and the CLI reports it as a bug."""
