"""Conformance kit: does a driver keep labloop's instrument contracts? For plug-in authors and CI.

Why: the runner trusts every driver to satisfy its contract (:mod:`labloop.instruments.contracts`): the
right methods, idempotent stops and aborts, refusals *before* any byte is sent, and only typed errors
(:mod:`labloop.core.errors`). A plug-in author runs::

    from labloop.sim.conformance import check_driver
    report = check_driver("rodeostat")          # against the driver's own emulator
    assert report.passed, "\\n".join(report.lines())

or ``labloop drivers check NAME [--port PORT]`` against real hardware. The kit opens the driver, runs a
safe round of commands, a short CV (potentiostats), a small dispense (pumps), a load (sample changers) or a
flow read back (gas valves), aborts/stops, asks for every unsafe thing its contract says it refuses (naming
each it did not), closes twice and checks that a closed driver raises a typed error. Against an emulator it
also checks that refusals sent no byte and that the emulator itself raised nothing. Each check is reported
with its time; an exception that is not a :class:`LabloopError` (labloop's error root:
:class:`InstrumentError`, :class:`ConfigError`, ...) fails its check as "untyped".
"""

from __future__ import annotations

import logging
import math
import numbers
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from labloop.core.errors import (
    ConfigError,
    Disconnected,
    InstrumentError,
    LabloopError,
    SafetyLimitExceeded,
)
from labloop.core.slow_calls import said_if_slow
from labloop.core.text import plural
from labloop.instruments.contracts import (
    ImpedanceMeter,
    PumpStatus,
    RateUnit,
    SafetyLimits,
    contract_problem,
    optional_member,
    returned,
    returned_range,
)
from labloop.instruments.impedance import EISParams
from labloop.instruments.registry import DriverDescriptor, DriverKind, resolve
from labloop.instruments.transport import open_failure_reason, port_problem
from labloop.instruments.voltammogram import CVParams, Voltammogram, returned_scan
from labloop.sim.emulation import DEFAULT_COUPLE, EmulatorContext
from labloop.sim.emulators import EmulatorFactory, start_emulator
from labloop.sim.pty_device import TimeScale

log = logging.getLogger(__name__)

KIT_LIMITS = SafetyLimits(max_dispense_ml=0.5, syringe_ml=10.0, potential_window_v=(-1.0, 1.0))
#: 1 V of travel at 0.5 V/s: 2 s on hardware, 101 points
KIT_CV = CVParams(e_begin_v=-0.2, e_vertex1_v=0.3, e_vertex2_v=-0.2, scan_rate_v_s=0.5, e_step_v=0.01)
KIT_DISPENSE_ML = 0.01
#: the kit's rate, unless the pump's syringe cannot be driven at it (then half its fastest: _Kit._rate)
KIT_RATE_ML_MIN = 1.0
#: a 10 mL syringe, as the example campaign's electrolyte pump: set only when the options give no diameter (the
#: descriptor's ``diameter_option``), and then the check ends saying so on a real port (its ``notes``)
KIT_DIAMETER_MM = 14.57
KIT_SAMPLE = "kit-sample"


#: how a check that did not run begins its detail (it passes: nothing was wrong, but it says so)
SKIPPED = "skipped"


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    detail: str
    seconds: float

    @property
    def skipped(self) -> bool:
        return self.passed and self.detail.startswith(SKIPPED)


@dataclass(frozen=True)
class ConformanceReport:
    """The result of :func:`check_driver`: one :class:`CheckResult` per check, in order."""

    driver: str
    port: str
    checks: tuple[CheckResult, ...]
    #: what the kit left changed on a real device, one line each (``note: ...``): a pump's syringe diameter set to
    #: the kit's own, when the options gave none
    notes: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def lines(self) -> list[str]:
        """One line per check (:func:`check_line`), then the verdict, then the notes."""
        return [*map(check_line, self.checks), self.verdict(), *self.notes]

    def verdict(self) -> str:
        """``DRIVER on PORT: conforms`` or ``... does NOT conform (N of M checks failed)``."""
        failed = sum(not c.passed for c in self.checks)
        skipped = sum(c.skipped for c in self.checks)
        verdict = ("conforms" + (f" ({skipped} {plural(skipped, 'check')} skipped)" if skipped else "") if self.passed
                   else f"does NOT conform ({failed} of {len(self.checks)} checks failed)")
        return f"{self.driver} on {self.port}: {verdict}"


def check_line(c: CheckResult) -> str:
    """``PASS  name  12 ms  detail`` (or FAIL, SKIP): one check as the kit prints it."""
    return (f"{'SKIP' if c.skipped else 'PASS' if c.passed else 'FAIL'}  {c.name:<36} {1e3 * c.seconds:7.0f} ms  "
            f"{c.detail}")


def _anodic_peak_a(voltammogram: Voltammogram) -> float:
    """The largest current (A) of the kit's CV's first, anodic sweep over the emulator's couple (1 mM at 0 V, a peak of
    tens of uA above a charging current of a few), positive by IUPAC (docs/drivers.md); negative, :class:`_Failed`.
    Why: a driver reporting anodic current negative conformed, then every experiment of a run failed ``no_peak``,
    blamed on the molecules, until ten in a row stopped it (a plug-in author's trial)."""
    forward = voltammogram.segments()[0]  # KIT_CV rises from e_begin_v to e_vertex1_v first
    current = voltammogram.current_a[forward.index]
    peak = float(current[np.argmax(np.abs(current))])
    if peak < 0:
        raise _Failed(f"anodic current negative: the sign convention is reversed (docs/drivers.md): the anodic sweep "
                      f"over the emulator's couple at {DEFAULT_COUPLE.e0_v:g} V peaks at {1e6 * peak:+.3g} uA, where "
                      "an oxidation's current is positive")
    return peak


class _Failed(Exception):
    """A check's expectation was not met (the driver behaved, but wrongly)."""


@dataclass(frozen=True)
class _Unsafe:
    """One request the driver must refuse with ``expected`` before sending a byte; ``what`` names it in a failure."""

    what: str
    expected: type[LabloopError]
    call: Callable[[], object]


def check_driver(driver: str | DriverDescriptor, port: str | None = None, *,
                 options: Mapping[str, Any] | None = None, emulator_options: Mapping[str, Any] | None = None,
                 limits: SafetyLimits = KIT_LIMITS, emulator: EmulatorFactory | None = None,
                 on_check: Callable[[CheckResult], None] | None = None) -> ConformanceReport:
    """Run the kit on ``driver`` (a registered name or a descriptor); ``on_check`` is told each check's result as
    it ends (``labloop drivers check`` prints it then: a driver whose next call hangs showed nothing at all).

    Without ``port`` the driver's emulator (``emulator``, else the one registered under the driver's name)
    is started (zero latency, a cell holding 1 mM of a fast couple) and the driver opened on it; with
    ``port`` the driver talks to whatever is there, in real time. ``options`` go to the driver's ``open``,
    ``emulator_options`` to its emulator factory; a pump or potentiostat is given its own copy of ``limits`` (the
    kit holds it to ``limits`` as given). A ``port`` that cannot be a serial port (an ``http://``
    URL, a file) for a serial driver (one with a ``default_baudrate``), or that cannot be opened, is a
    ConfigError naming it (the port is wrong, not the driver).
    """
    descriptor = resolve(driver)
    serial = descriptor.default_baudrate is not None  # a serial driver's port is judged as validate judges it,
    # before anything opens
    if port is not None and serial and (problem := port_problem(port, campaign=False)) is not None:
        raise ConfigError("port", problem)
    emulation = None
    cell = None
    open_options: dict[str, Any] = {}
    if descriptor.kind in (DriverKind.PUMP, DriverKind.POTENTIOSTAT):
        # the driver's own copy (its fields are immutable, so a shallow one): a driver that rewrote the limits it
        # was given in place changed KIT_LIMITS for every later check in the process, and the limits this check
        # holds it to (a plug-in driver author's trial)
        open_options.update(limits=replace(limits), time_scale=1.0)
    if port is None:
        context = EmulatorContext.standalone(DEFAULT_COUPLE, time_scale=TimeScale.zero_latency())
        emulation = start_emulator(descriptor.name, context, {"holds": "sample", **(emulator_options or {})},
                                   factory=emulator)
        cell = context.cell
        port = emulation.port
        open_options.update(emulation.options)
        if "time_scale" in open_options:
            open_options["time_scale"] = math.inf
    open_options.update(options or {})
    kit = _Kit(descriptor, port, open_options, limits, on_hardware=emulation is None,
               received=(lambda: emulation.device.received) if emulation and emulation.device else None,
               cell_volume_ml=(lambda: cell.state().volume_ml) if cell is not None else None, on_check=on_check)
    try:
        kit.run()
    finally:
        if emulation is not None:
            emulation.stop()
    if emulation is None and kit.open_failure is not None:
        raise ConfigError(f"port {port}", f"cannot open it for driver {descriptor.name!r}: "
                                          f"{open_failure_reason(kit.open_failure)}")
    if emulation is not None and emulation.device is not None:
        errors = emulation.device.error_counts  # each once, with its count: a tick's bug came 1000s of times
        kit.record(CheckResult("emulator raised nothing", not errors,
                               "; ".join(f"{error}{f' (x{n})' if n > 1 else ''}" for error, n in errors.items()), 0.0))
    return ConformanceReport(descriptor.name, port, tuple(kit.results), tuple(kit.notes))


class _Kit:
    def __init__(self, descriptor: DriverDescriptor, port: str, options: dict[str, Any], limits: SafetyLimits,
                 on_hardware: bool, received: Callable[[], bytes] | None,
                 cell_volume_ml: Callable[[], float] | None,
                 on_check: Callable[[CheckResult], None] | None = None) -> None:
        self.descriptor = descriptor
        self.on_check = on_check
        self.on_hardware = on_hardware
        self.cell_volume_ml = cell_volume_ml
        self.open_failure: Disconnected | None = None
        self.port = port
        self.options = options
        self.limits = limits
        self.received = received
        self.driver: Any = None
        self.results: list[CheckResult] = []
        self.notes: list[str] = []
        self.rate_ml_min = KIT_RATE_ML_MIN  # a pump's, once its set rate check chose it (_rate)

    def run(self) -> None:
        steps = {
            DriverKind.PUMP: self._pump_steps,
            DriverKind.POTENTIOSTAT: self._potentiostat_steps,
            DriverKind.SAMPLE_CHANGER: self._sample_changer_steps,
            DriverKind.GAS_VALVE: self._gas_valve_steps,
        }[self.descriptor.kind]()
        try:
            for name, call in steps:
                if not self._step(name, call) and name == "open":
                    return
                if name == "open" and self.driver is None:
                    return
        finally:
            close = getattr(self.driver, "close", None)  # a driver without one failed its open check
            if close is not None:
                self._closed(close)

    def _closed(self, close: Callable[[], object]) -> None:
        """Close the driver at the end; one whose close raises fails a check saying so (it replaced the whole report
        with "a labloop bug"); a labloop error there is the device's, as the kit always took it."""
        start = time.monotonic()
        try:
            close()
        except InstrumentError:
            return
        except Exception as exc:
            self.record(CheckResult("close at the end", False, f"untyped exception {type(exc).__name__}: {exc}",
                                    time.monotonic() - start))

    def record(self, result: CheckResult) -> None:
        """Keep ``result`` and tell ``on_check``."""
        self.results.append(result)
        if self.on_check is not None:
            self.on_check(result)

    def _step(self, name: str, call: Callable[[], str | None]) -> bool:
        start = time.monotonic()
        try:
            with said_if_slow(f"{self.descriptor.name}: its check '{name}'", log):  # a hung driver printed nothing
                detail, passed = call() or "", True
        except _Failed as exc:
            detail, passed = str(exc), False
        except Disconnected as exc:
            if name == "open" and self.on_hardware:  # not a failed check: check_driver's one error line says it
                self.open_failure = exc  # (a FAIL line before it said the same twice: a hardware trial)
                return False
            detail, passed = f"{type(exc).__name__}: {exc}", False
        except LabloopError as exc:
            detail, passed = f"{type(exc).__name__}: {exc}", False
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # a driver's SystemExit is its failure too: it ended the kit in silence
            detail, passed = f"untyped exception {type(exc).__name__}: {exc}", False
        self.record(CheckResult(name, passed, detail, time.monotonic() - start))
        log.info("%s %s: %s", name, "passed" if passed else "FAILED", detail)
        return passed

    # -- shared steps ---------------------------------------------------------------------------------------
    def _open(self) -> Callable[[], str]:
        def step() -> str:
            if (unpassable := self.descriptor.unpassable(self.options)) is not None:  # as the rig says it
                raise _Failed(unpassable)
            self.driver = self.descriptor.open(self.port, **self.options)
            if (problem := contract_problem(self.driver, str(self.descriptor.kind), self.descriptor.name)) is not None:
                raise _Failed(problem)  # as the rig says it
            return f"{type(self.driver).__name__} {getattr(self.driver, 'firmware', '')}".strip()

        return step

    def _refusals(self, cases: Callable[[], list[_Unsafe]], *, on_hardware_too: bool = False
                  ) -> Callable[[], str | None]:
        """The refusal check: every one of ``cases`` is asked, and each that is not refused as due (or that sends
        a byte first) is named, so a driver that checks one limit and forgets another is told which. Against
        an emulator only, unless ``on_hardware_too``: each case of a pump or potentiostat asks for something
        beyond the limits, and a driver that does not refuse would send it, which on a real port moves a real
        plunger or puts a real cell beyond its window (labloop's executor refuses such commands before any
        driver sees them)."""
        def step() -> str | None:
            if self.on_hardware and not on_hardware_too:
                return (f"{SKIPPED} on a real port: the kit sends nothing beyond the limits to hardware; check "
                        f"without --port (the driver's emulator): labloop drivers check {self.descriptor.name}")
            asked = cases()
            failures = [failure for case in asked if (failure := self._refuses(case)) is not None]
            if failures:
                raise _Failed(f"{len(failures)} of {len(asked)} unsafe requests not refused as due: "
                              + "; ".join(failures))
            return f"{len(asked)} refused"

        return step

    def _refuses(self, case: _Unsafe) -> str | None:
        """None when ``case`` is refused with its error and, where the kit sees the wire, no byte was sent; else
        what went wrong, naming the request."""
        before = self.received() if self.received else b""
        try:
            case.call()
        except case.expected:
            pass
        except LabloopError as exc:
            return f"{case.what}: raised {type(exc).__name__} where {case.expected.__name__} was due"
        except Exception as exc:
            return f"{case.what}: untyped exception {type(exc).__name__}: {exc}"
        else:
            return f"{case.what}: accepted"
        if self.received is not None:
            time.sleep(0.05)  # anything written would have arrived by now
            if self.received() != before:
                return f"{case.what}: bytes were sent before the refusal"
        return None

    def _closing(self, call: Callable[[], object]) -> Callable[[], str]:
        def step() -> str:
            self.driver.close()
            self.driver.close()
            try:
                call()
            except LabloopError as exc:
                return f"then {type(exc).__name__}"
            raise _Failed("a closed driver still answered")

        return step

    # -- per kind -------------------------------------------------------------------------------------------
    def _diameter(self) -> tuple[Any, str | None]:
        """The syringe diameter (mm) the kit sets, and the option that gave it: the descriptor's ``diameter_option``
        when the options give it (a check must leave the pump as the lab set it: a 1 mL syringe's pump left at
        14.57 mm pumps about ten times the volume it is asked for, outside labloop), else the kit's own, None."""
        option = self.descriptor.diameter_option
        if option is not None and self.options.get(option) is not None:
            return self.options[option], option
        return KIT_DIAMETER_MM, None

    def _rate(self, from_options: bool) -> tuple[float, str]:
        """The rate (mL/min) the kit pumps at, and why when it is not :data:`KIT_RATE_ML_MIN`: the kit's, unless the
        pump's syringe cannot be driven at it (a 4.61 mm syringe on an NE-1000 is driven at 0.85 mL/min at most: the
        pump answers 1 mL/min with ?OOR), as the opened driver's ``rate_range_ml_min`` says, else the descriptor's
        hook on the options when they gave the diameter set (docs/drivers.md); then half the fastest (twice the
        slowest), in two digits."""
        span = optional_member(self.driver, "rate_range_ml_min", where=self.descriptor.name)
        hook = self.descriptor.rate_range_ml_min
        if span is None and hook is not None and from_options:
            span = hook(self.options)
        if span is None:
            return KIT_RATE_ML_MIN, ""
        low, high = returned_range(span, where=self.descriptor.name, call="rate_range_ml_min")  # as a run checks it
        if low <= KIT_RATE_ML_MIN <= high:
            return KIT_RATE_ML_MIN, ""
        rate = float(f"{high / 2 if high < KIT_RATE_ML_MIN else 2 * low:.2g}")
        return rate, f" (not {KIT_RATE_ML_MIN:g}: the pump drives this syringe at {low:.3g}..{high:.3g} mL/min)"

    def _pump_steps(self) -> list[tuple[str, Callable[[], str | None]]]:
        from_options = False  # whether the diameter set is the options' (set_diameter)
        dispensed = False  # whether the small dispense passed: the withdrawals need the room it made
        unfilled = (f"{SKIPPED}: the small dispense failed, so the syringe has no room it made to withdraw into (a "
                    "failure here would only follow from that one)")

        def set_diameter() -> str:
            nonlocal from_options
            mm, option = self._diameter()
            from_options = option is not None
            named = self.descriptor.diameter_option
            changed = "may now be"  # a call that raised may have reached the pump all the same
            try:
                self.driver.set_diameter(mm)
                changed = "is now"
            finally:
                if option is None and self.on_hardware:  # the lab's pump, left at the kit's syringe: said last
                    self.notes.append(f"note: the pump's syringe diameter {changed} {mm:g} mm (the kit's); set it "
                                      "back to your syringe's" + (f", or run the check with --option {named}=<yours>"
                                                                  if named is not None else ""))
            if option is not None:
                return f"{mm} mm, as {option} gives it"
            return f"{mm:g} mm, the kit's own" + (f" (the options give no {named})" if named is not None else "")

        def set_rate() -> str:
            self.rate_ml_min, why = self._rate(from_options)
            self.driver.set_rate(self.rate_ml_min, RateUnit.ML_MIN)
            return f"{self.rate_ml_min:g} mL/min{why}"

        def status() -> str:
            status = self.driver.status()
            if not isinstance(status, PumpStatus):
                raise _Failed(f"status() returned {status!r}")
            return f"{status.state}, infused {status.infused_ml:g} mL"

        def dispense() -> str:
            nonlocal dispensed
            before = self.cell_volume_ml() if self.cell_volume_ml else None
            # a number, as a run checks it (a str failed here as the kit's own "untyped TypeError": a trial)
            done = returned(self.driver.dispense(KIT_DISPENSE_ML, self.rate_ml_min), numbers.Real,
                            where=self.descriptor.name, call="dispense", what="the volume dispensed in mL")
            if not math.isclose(done, KIT_DISPENSE_ML, rel_tol=1e-3):
                raise _Failed(f"dispensed {done!r} mL where {KIT_DISPENSE_ML} mL was asked")
            dispensed = True  # the syringe gave it, whatever the emulator's cell got
            if before is not None and self.cell_volume_ml is not None:
                added = self.cell_volume_ml() - before
                if not math.isclose(added, KIT_DISPENSE_ML, rel_tol=1e-3):
                    raise _Failed(f"the emulator put {added:g} mL into the simulated cell where {KIT_DISPENSE_ML} "
                                  "mL was dispensed (an emulator must pour what its pump dispenses: docs/drivers.md)")
                return f"{done:g} mL, and the emulated cell got it"
            return f"{done:g} mL"

        def withdraw() -> str:
            if not dispensed:  # its failure read as a defect of its own (a plug-in engineer's trial)
                return unfilled
            done = returned(self.driver.withdraw(KIT_DISPENSE_ML, self.rate_ml_min), numbers.Real,
                            where=self.descriptor.name, call="withdraw", what="the volume withdrawn in mL")
            if not math.isclose(done, KIT_DISPENSE_ML, rel_tol=1e-3):
                raise _Failed(f"withdrew {done!r} mL where {KIT_DISPENSE_ML} mL was asked")
            return f"{done:g} mL"

        def refusals() -> list[_Unsafe]:
            # what the syringe holds now: full when opened (or as the driver's content_ml hook reads the options,
            # docs/drivers.md), less the small dispense; the withdrawals below fit in that room but for the one
            # that overfills, so each is refused for its own fault alone
            hook = self.descriptor.content_ml
            opened = hook(self.options) if hook is not None else None
            syringe = self.limits.syringe_ml
            held = (syringe if opened is None else float(opened)) - KIT_DISPENSE_ML
            room = syringe - held
            overfill = room + self.limits.max_dispense_ml
            fits = room / 2
            fast = 2 * self.limits.max_rate_ml_min
            rate = self.rate_ml_min  # one the syringe is driven at, so each case is refused for its own fault alone
            pump = self.driver
            dispenses = [
                _Unsafe(f"dispense({2 * self.limits.max_dispense_ml:g} mL), over the {self.limits.max_dispense_ml:g}"
                        " mL limit", SafetyLimitExceeded, lambda: pump.dispense(2 * self.limits.max_dispense_ml, rate)),
                _Unsafe(f"a dispense at {fast:g} mL/min, over the {self.limits.max_rate_ml_min:g} mL/min limit",
                        SafetyLimitExceeded, lambda: pump.dispense(KIT_DISPENSE_ML, fast)),
                _Unsafe("dispense(-1 mL)", ConfigError, lambda: pump.dispense(-1.0, rate)),
                _Unsafe("a dispense at a NaN rate", ConfigError, lambda: pump.dispense(KIT_DISPENSE_ML, math.nan))]
            withdrawals = [
                _Unsafe(f"withdraw({overfill:g} mL) onto the {held:g} mL the syringe holds, overfilling its "
                        f"{syringe:g} mL", SafetyLimitExceeded, lambda: pump.withdraw(overfill, rate)),
                _Unsafe(f"a withdrawal at {fast:g} mL/min, over the {self.limits.max_rate_ml_min:g} mL/min limit",
                        SafetyLimitExceeded, lambda: pump.withdraw(fits, fast)),
                _Unsafe("withdraw(-1 mL)", ConfigError, lambda: pump.withdraw(-1.0, rate)),
                _Unsafe("a withdrawal at a NaN rate", ConfigError, lambda: pump.withdraw(fits, math.nan))]
            return dispenses + withdrawals if dispensed else dispenses  # a withdrawal needs the dispense's room

        return [("open", self._open()), ("status", status),
                ("stop twice", self._call("stop", times=2)),
                ("set diameter", set_diameter), ("set rate", set_rate),
                ("small dispense", dispense), ("stop after the dispense", self._call("stop")),
                ("refuses unsafe input, sends nothing", self._refusals(refusals)),  # with room for a withdrawal
                ("small withdrawal", withdraw),
                ("close twice, then typed errors", self._closing(lambda: self.driver.status()))]

    def _potentiostat_steps(self) -> list[tuple[str, Callable[[], str | None]]]:
        def span_of(attribute: str, unit: str) -> Callable[[], str]:
            def said() -> str:
                # the executor's own check of it (instruments/contracts.py returned_range): a (2.0, -2.0) conformed
                # here and then refused every run at open (a plug-in author's trial)
                span = optional_member(self.driver, attribute, where=self.descriptor.name)
                if span is None:
                    return "none (optional: docs/drivers.md)"
                low, high = returned_range(span, where=self.descriptor.name, call=attribute)
                return f"{low:g}..{high:g} {unit}"
            return said

        def cv() -> str:
            # the checks a run applies before analysing a scan (instruments/voltammogram.py returned_scan): currents in
            # uA labelled A and a NaN point conformed here, then failed every experiment of a run as WrongReturn
            at = self.descriptor.name
            voltammogram = returned_scan(returned(self.driver.run_cv(KIT_CV), Voltammogram, where=at, call="run_cv"),
                                         KIT_CV, at, "run_cv")
            current = voltammogram.current_a
            said = f"{len(voltammogram)} points, {1e6 * min(current):.3g}..{1e6 * max(current):.3g} uA"
            if self.on_hardware:
                return f"{said}; current sign not checked (on a port the kit knows no couple in the cell)"
            return f"{said}, anodic peak {1e6 * _anodic_peak_a(voltammogram):+.3g} uA"

        def refusals() -> list[_Unsafe]:
            # each vertex beyond each side of the window, the other potentials inside it; e_begin_v lies between
            # the vertices (CVParams refuses it elsewhere), so a driver refusing both vertices refuses every begin
            low, high = self.limits.potential_window_v
            inside = (low + high) / 2
            cases = []
            for vertex, other in (("e_vertex1_v", "e_vertex2_v"), ("e_vertex2_v", "e_vertex1_v")):
                for side, beyond, back in (("above", high + 0.5, low + (high - low) / 4),
                                           ("below", low - 0.5, high - (high - low) / 4)):
                    params = CVParams(e_begin_v=inside, scan_rate_v_s=0.1, **{vertex: beyond, other: back})
                    cases.append(_Unsafe(f"a CV with {vertex} {beyond:g} V, {side} the {low:g}..{high:g} V window",
                                         SafetyLimitExceeded, lambda p=params: self.driver.run_cv(p)))
            if isinstance(self.driver, ImpedanceMeter):  # an eis step's DC potential is held to the window too
                for side, beyond in (("above", high + 0.5), ("below", low - 0.5)):
                    params = EISParams(e_dc_v=beyond)
                    cases.append(_Unsafe(f"an EIS at e_dc_v {beyond:g} V, {side} the {low:g}..{high:g} V window",
                                         SafetyLimitExceeded, lambda p=params: self.driver.run_eis(p)))
            return cases

        return [("open", self._open()), ("potential_range_v", span_of("potential_range_v", "V")),
                ("scan_rate_range_v_s", span_of("scan_rate_range_v_s", "V/s")),
                ("abort when idle, twice", self._call("abort", times=2)),
                ("short CV", cv), ("abort after the CV", self._call("abort")),
                ("refuses unsafe input, sends nothing", self._refusals(refusals)),
                ("close twice, then typed errors", self._closing(lambda: self.driver.run_cv(KIT_CV)))]

    def _sample_changer_steps(self) -> list[tuple[str, Callable[[], str | None]]]:
        def refusals() -> list[_Unsafe]:
            return [_Unsafe("an empty sample id", ConfigError, lambda: self.driver.load(""))]

        return [("open", self._open()),
                ("load twice", self._call("load", KIT_SAMPLE, times=2)),
                ("unload twice", self._call("unload", times=2)),
                ("refuses unsafe input, sends nothing", self._refusals(refusals, on_hardware_too=True)),
                ("close twice, then typed errors", self._closing(lambda: self.driver.load(KIT_SAMPLE)))]

    def _gas_valve_steps(self) -> list[tuple[str, Callable[[], str | None]]]:
        def flow() -> str:
            gas = self.driver.gases[0]
            self.driver.flow(gas)
            if self.driver.flowing() != gas:
                raise _Failed(f"flowing() reads {self.driver.flowing()!r} after flow({gas!r})")
            self.driver.stop()
            if self.driver.flowing() is not None:
                raise _Failed(f"flowing() reads {self.driver.flowing()!r} after stop()")
            return f"{gas} on and off"

        def refusals() -> list[_Unsafe]:
            return [_Unsafe("a gas it has no valve for", ConfigError, lambda: self.driver.flow("laughing gas"))]

        return [("open", self._open()), ("stop twice", self._call("stop", times=2)),
                ("flow, read back, stop", flow),
                ("refuses unsafe input, sends nothing", self._refusals(refusals, on_hardware_too=True)),
                ("close twice, then typed errors", self._closing(lambda: self.driver.flowing()))]

    def _call(self, method: str, *args: object, times: int = 1) -> Callable[[], None]:
        """A step that calls ``method(*args)`` of the (by then open) driver ``times`` times."""

        def step() -> None:
            for _ in range(times):
                getattr(self.driver, method)(*args)

        return step
