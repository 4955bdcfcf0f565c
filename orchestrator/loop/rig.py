"""The rig: the campaign's instruments by name, one way to make them all safe, and one way to release them.

Why one object: the runner and the protocol executor need the instruments by the names the campaign gives
them, one way to put them all in a safe state (Ctrl-C, a fault, the end of a run), and one way to release
them, whatever drivers they are. The rig never knows whether its instruments are real: the composition
module (:mod:`labloop.orchestrator.compose`) opens them on hardware or on emulators and hands the rig the
things that differ — how the cell is rinsed (the operator, or the simulated cell), how device time passes (the
wall clock, or a faster one), and what to tell once the rig passed its health check (a dry run's faults begin).
"""

from __future__ import annotations

import logging
import math
import numbers
import os
import threading
import time
from collections.abc import Callable, Collection, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self

from labloop.core.asking import Ask, ask_person
from labloop.core.errors import ConfigError, WrongReturn, said, shown
from labloop.core.slow_calls import said_if_slow
from labloop.instruments.contracts import (
    DIAMETER_TOLERANCE,
    Potentiostat,
    Pump,
    PumpState,
    PumpStatus,
    optional_member,
    returned,
)

log = logging.getLogger(__name__)

#: how a failed health check of one instrument starts (:meth:`Rig.health_check`)
HEALTH_ERROR = "error: "
#: how long one instrument's stop/abort may take before the rig reports it could not make it safe
SAFE_STATE_DEADLINE_S = 10.0
#: the refusal of a start that found a pump moving (its driver's ``found_running``, docs/drivers.md): a resume with
#: --cell-emptied after a kill -9 mid-dispense met the pump still infusing, had it stopped, journalled the emptying
#: the operator had done before that, and dispensed on top of what the pump delivered since (a hardware trial)
FOUND_RUNNING = ("{doing} when opened, left so by a run that stopped without stopping it (killed, or the computer "
                 "lost power?): labloop stopped it now, but what it pumped until then is in the cell and out of its "
                 "syringe, uncounted, even if the cell was emptied before this start: empty the cell and fill the "
                 "syringe now, then start again (a journal's campaign: `labloop resume STORE --cell-emptied "
                 "--syringes-filled`)")
def _within(action: Callable[[], object], deadline_s: float) -> tuple[str | None, threading.Thread]:
    """Run ``action`` on a daemon thread: (None if it returned in time, else what went wrong; the thread)."""
    outcome: list[str | None] = []

    def call() -> None:
        try:
            action()
            outcome.append(None)
        except BaseException as exc:  # any failure to stop is reported, never raised: a plug-in's SystemExit too,
            outcome.append(said(exc))  # which would end this thread in silence ("no answer") and say nothing of why

    thread = threading.Thread(target=call, name="safe-state", daemon=True)
    thread.start()
    thread.join(deadline_s)
    return (outcome[0] if outcome else f"no answer within {deadline_s:g} s"), thread


def _plausible(status: PumpStatus, name: str) -> PumpStatus:
    """``status`` when it is one a pump can be in: a :class:`PumpState` and counters that are volumes (finite, not
    negative), else :class:`WrongReturn` naming the pump. Why: a plug-in's ``PumpStatus("exploded", nan, -1.0)``
    passed the health check as ``ok`` (a plug-in engineer's trial)."""
    problems = [] if status.state in set(PumpState) else [f"state {status.state!r} is none of "
                                                          f"{', '.join(state.value for state in PumpState)}"]
    problems += [f"{field} {value!r} is no volume in mL" for field in ("infused_ml", "withdrawn_ml")
                 if not isinstance(value := getattr(status, field), numbers.Real) or isinstance(value, bool)
                 or not 0 <= value < math.inf]
    if problems:
        raise WrongReturn(name, f"its driver's status returned {'; '.join(problems)}")
    return status


@dataclass(frozen=True)
class Wait:
    """A question put to a person that has not been answered yet, and since when (UTC)."""

    question: str
    since: datetime


class PersonAsk:
    """How a real rig asks a person (the rinse, a manual step, the ``manual`` sample changer: every
    :func:`ask_person`), keeping the question asked now (:attr:`waiting`) and when the last one was answered.

    Why: the rinse on a real rig waits for a person at the console, and nothing said so: only the ``manual``
    driver's instruments alerted, and the stall watch called the wait a stalled instrument ``cell`` after 10
    minutes (an operator's trial of an unattended week). With every question asked through one of these (the
    ``labloop run`` command hands the same one to the rig and the manual sample changer), the alerter
    (orchestrator/loop/alerts.py) says that a person is waited for and what they must do, and the stall watch
    (orchestrator/loop/stalls.py) leaves the wait out, whoever asked."""

    def __init__(self, ask: Ask = input) -> None:
        self._ask = ask
        #: the question a person is asked now, None when nobody is
        self.waiting: Wait | None = None
        #: when the last question was answered (or found nobody to answer), None before the first
        self.answered_at: datetime | None = None

    def __call__(self, question: str) -> str:
        self.waiting = Wait(question, datetime.now(UTC))
        try:
            return self._ask(question)
        finally:
            self.waiting = None
            self.answered_at = datetime.now(UTC)


class Rig:
    """Opened instruments by name (``instruments``); a context manager that closes them."""

    def __init__(self, instruments: Mapping[str, object], *, closer: ExitStack, ask: Ask = input,
                 rinse: Callable[[], None] | None = None, sleep: Callable[[float], None] = time.sleep,
                 operator: Ask | None = None, simulation: Any = None, ready: Callable[[], None] | None = None,
                 ports: Mapping[str, str] | None = None) -> None:
        self.instruments: dict[str, object] = dict(instruments)
        #: each instrument's port as its driver opened it, for :meth:`port_gone` (a real rig's)
        self.ports = dict(ports or {})
        self._closer = closer
        #: every question this rig puts to a person goes through it (:class:`PersonAsk`)
        self.asking = ask if isinstance(ask, PersonAsk) else PersonAsk(ask)
        self._operator = operator
        self._rinse = rinse
        self._sleep = sleep
        #: the simulated lab behind a dry-run rig (its emulators, for tests and diagnostics); None on hardware
        self.simulation = simulation
        #: told once the health check before the first experiment passed (a dry run's emulators start their faults)
        self._ready = ready
        #: instruments :meth:`safe_state` has said it could not make safe, or a refused health check named: said
        #: again (closing the rig makes it safe once more) only with -v
        self._said: set[str] = set()
        #: each instrument's stop or abort that has not returned yet (:meth:`safe_state`)
        self._stopping: dict[str, threading.Thread] = {}
        #: the instruments whose stop or abort the last :meth:`safe_state` saw answered, none commanded since
        #: (:meth:`in_use`): closing the rig does not ask them again
        self._answered: set[str] = set()

    def in_use(self) -> None:
        """The rig is about to be commanded again (an experiment, a rinse after a failure): what :meth:`safe_state` made
        safe before may move again, so closing the rig stops it again."""
        self._answered.clear()

    def rinse_cell(self, why: str = "") -> None:
        """Empty and rinse the cell: as the composition module said (an emulated cell), else the operator, told
        ``why`` first when the rinse is not the protocol's usual one (after a failed experiment)."""
        if self._rinse is not None:
            self._rinse()
            return
        ask_person(self.asking, f"{why}Rinse the cell, then press Enter: ", "cell", "operator to rinse the cell")

    def ask_operator(self, message: str) -> str:
        """Ask a person to do what a manual step says (polish the electrode, purge by hand) and wait: the
        composition module's stand-in in a dry run, else the console."""
        if self._operator is not None:
            return self._operator(message)
        return ask_person(self.asking, message, "operator", "operator to ask")

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` of device time pass."""
        self._sleep(seconds)

    def safe_state(self, *, deadline_s: float = SAFE_STATE_DEADLINE_S, skip: Collection[str] = ()) -> list[str]:
        """Stop every pump and abort the potentiostats (cell off), but those named in ``skip``. Never raises; safe
        to call twice.

        Returns what could not be made safe, one ``"name: why"`` each (empty when all is safe), so nobody
        is told "safe" when a pump did not answer. Each stop or abort gets ``deadline_s``: a plug-in whose
        ``abort()`` never returns is reported, not waited for."""
        failed = []
        for name, driver in self.instruments.items():
            action = driver.stop if isinstance(driver, Pump) else driver.abort if isinstance(
                driver, Potentiostat) else None
            if action is None or name in skip:
                continue
            if (hung := self._stopping.get(name)) is not None and hung.is_alive():
                # not asked again: a second call into a driver hung in the first only waits out another deadline
                # (a Ctrl-C took 21 s, two threads stuck in one stop(): a plug-in author's trial)
                problem: str | None = "its stop from before has still not returned"
            else:
                problem, self._stopping[name] = _within(action, deadline_s)
            if problem is not None:
                # at INFO: the caller says what this returns (the stop's, the failure's or the warning's line); at
                # ERROR too, an unplugged pump's stop was said twice, one of them a logger line (a hardware trial)
                log.info("safe state: %s could not be made safe: %s", name, problem)
                self._said.add(name)
                self._answered.discard(name)
                failed.append(f"{name}: {problem}")
            else:
                self._answered.add(name)
        return failed

    def health_check(self) -> dict[str, str]:
        """``{name: "ok: ..." | "error: Type: ..."}``: pumps report their status, drivers with ``identify()``
        their firmware (text, or the driver's fault); others are ok while they are open. The exception's type is
        kept: "too many values to unpack" alone does not say that a pump's status answered garbage; a status that is
        no ``PumpStatus`` (a plug-in's None) is said as such (:func:`labloop.instruments.contracts.returned`), not as
        an AttributeError."""
        report = {}
        for name, driver in self.instruments.items():
            try:
                if isinstance(driver, Pump):
                    with said_if_slow(f"instruments.{name}: its health check (status())", log):
                        status = returned(driver.status(), PumpStatus, where=name, call="status")
                    report[name] = f"ok: {_plausible(status, name).state}"
                elif callable(identify := getattr(driver, "identify", None)):
                    with said_if_slow(f"instruments.{name}: its health check (identify())", log):
                        # text, as the journal keeps it: a plug-in's dict was journalled "ok: {'not': ...}" (a plug-in
                        # author's trial)
                        report[name] = f"ok: {returned(identify(), str, where=name, call='identify()', what='text')}"
                else:
                    report[name] = "ok"
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # a plug-in's SystemExit is its failure too, not the end of labloop
                report[name] = f"{HEALTH_ERROR}{said(exc)}"
        return report

    def port_gone(self) -> tuple[str, str] | None:
        """(name, port) of the first instrument whose port, a device path, no longer exists (an adapter unplugged or
        reset, a served emulator stopped: its device file goes with it), else None; a URL's (``socket://``) or a
        name that is no path (a manual sample changer's) is not judged. A stat per port, for the protocol executor
        before each experiment (protocols/executor.py ``_check_ports``)."""
        return next(((name, port) for name, port in self.ports.items()
                     if os.path.isabs(port) and not os.path.exists(port)), None)

    def check_health(self) -> dict[str, str]:
        """The health check before the first experiment (``run``, ``resume``, ``validate --dry-run``): the first
        instrument that fails it is a one-line :class:`ConfigError` naming it, before the journal is written and
        anything is pumped, as a port that cannot be opened is; a lab wants to know before the first dispense,
        not from the experiment's fault. So is a pump its driver found moving when it opened and stopped
        (:data:`FOUND_RUNNING`). Returns the report when every instrument is ok."""
        report = self.health_check()
        for name, state in report.items():
            if state.startswith(HEALTH_ERROR):
                self._said.add(name)  # the refusal names it; closing the rig need not say it again
                raise ConfigError(f"instruments.{name}", "the health check before the first experiment failed: "
                                                         f"{state.removeprefix(HEALTH_ERROR)}")
        for name, driver in self.instruments.items():
            where = f"instruments.{name}"
            if (found := optional_member(driver, "found_running", where=where)) is None:
                continue
            if not isinstance(found, str) or not found.strip():  # False, "", 0: a plug-in's flag refused every start
                raise WrongReturn(where, f"its driver's found_running is {shown(found)}, not None or the words of what "
                                         "the pump was doing when opened, e.g. 'infusing' (docs/drivers.md)")
            raise ConfigError(where, FOUND_RUNNING.format(doing=found))
        self._warn_of_diameters()
        if self._ready is not None:
            self._ready()
        return report

    def _warn_of_diameters(self) -> None:
        """A warning for each pump whose driver found it holding another syringe's diameter than the campaign's
        (``found_diameter_mm``, docs/drivers.md), naming the pump given that diameter: two pumps' ports swapped
        were each set to the other's syringe without a word (a hardware rehearsal). A warning, not a refusal: a
        campaign's first run meets the diameter its pumps held before, and the driver has set the campaign's by
        now, so a refusal would stand in the way of the next start whether the ports were right or not."""
        given = {name: diameter for name, driver in self.instruments.items()
                 if isinstance(diameter := optional_member(driver, "diameter_mm", where=f"instruments.{name}"),
                               int | float)}
        for name, driver in self.instruments.items():
            found = optional_member(driver, "found_diameter_mm", where=f"instruments.{name}")
            if not isinstance(found, int | float) or name not in given:
                continue
            other = next((o for o, d in given.items()
                          if o != name and math.isclose(d, found, rel_tol=DIAMETER_TOLERANCE)), None)
            swapped = (f" ({found:g} mm is instruments.{other}'s: are the two pumps' ports swapped?)" if other
                       else "")
            port = self.ports.get(name)
            log.warning("instruments.%s%s: the pump held a %g mm syringe's diameter when opened; labloop set the "
                        "campaign's %g mm: check that a %g mm syringe is on it%s", name,
                        f" ({port})" if port else "", found, given[name], given[name], swapped)

    def close(self) -> None:
        """Safe state, then close every driver and stop every emulator; closing twice is not an error. What
        could not be made safe is said at ERROR unless the run said it already (:meth:`safe_state`'s callers).
        An instrument whose stop the run's last safe state saw answered, and that nothing commanded since
        (:meth:`in_use`), is not asked again: its second stop timing out on a noisy line was said at ERROR as "could
        not be made safe" after the run's stop had named only another instrument, an alarm about a pump that had
        stopped (a plug-in engineer's trial, at fault_rate 0.03)."""
        if self.instruments:
            said = set(self._said)
            for problem in self.safe_state(skip=set(self._answered)):
                name, why = problem.split(": ", 1)
                if name not in said:
                    log.error("safe state: %s could not be made safe: %s", name, why)
        self.instruments.clear()
        self._closer.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
