"""What the rest of labloop may assume about an instrument, and the safety limits every driver enforces.

Protocols and the runner never import a driver class: they talk to anything that has the right methods,
as bluesky's ``protocols.py`` does for devices. The contracts are therefore small ``typing.Protocol``s,
``runtime_checkable`` so that the driver registry can check a plug-in with ``isinstance`` when it loads
it. Every method of every contract is safe to call twice, has a deadline, and raises only
:mod:`labloop.core.errors` for instrument trouble.

:class:`SafetyLimits` is a frozen value so that one object, validated once, can be handed to every driver
of a rig; drivers check it *before* the first byte of a request leaves the computer.
"""

from __future__ import annotations

import inspect
import math
import numbers
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from labloop.core.errors import ConfigError, InstrumentError, SafetyLimitExceeded, WrongReturn, said, shown

#: default flow-rate cap (mL/min): ten times the example protocol's fastest dispense; a typed 5000 for 5.0
#: must not reach a pump
DEFAULT_MAX_RATE_ML_MIN = 50.0
#: default cell volume (mL): what the cell holds, counted across experiments until a rinse or clean empties it
DEFAULT_CELL_VOLUME_ML = 20.0
#: relative slack of the volume comparisons: sums of decimal volumes (0.1 + 0.2) must not refuse an exact fill
VOLUME_SLACK = 1e-9
#: how far (relative) the syringe diameter a pump holds may differ from the one set before it counts as another
#: syringe's (a pump keeps 4 significant digits): a pump's ``found_diameter_mm`` (docs/drivers.md)
DIAMETER_TOLERANCE = 0.005

if TYPE_CHECKING:  # only the names are needed here, in annotations (left unevaluated)
    from labloop.instruments.impedance import EISParams, ImpedanceSpectrum
    from labloop.instruments.voltammogram import CVParams, Voltammogram


class RateUnit(StrEnum):
    """Flow-rate units a pump can be asked for; the value is what a person would write."""

    UL_MIN = "uL/min"
    ML_MIN = "mL/min"
    UL_H = "uL/h"
    ML_H = "mL/h"

    @property
    def ml_min(self) -> float:
        """How many mL/min one of this unit is."""
        return {"uL/min": 1e-3, "mL/min": 1.0, "uL/h": 1e-3 / 60.0, "mL/h": 1.0 / 60.0}[self.value]


class PumpState(StrEnum):
    """What a syringe pump is doing, independent of how its protocol spells it."""

    INFUSING = "infusing"
    WITHDRAWING = "withdrawing"
    STOPPED = "stopped"
    PAUSED = "paused"
    TIMED_PAUSE = "timed_pause"
    WAITING_TRIGGER = "waiting_trigger"
    PURGING = "purging"


@dataclass(frozen=True)
class PumpStatus:
    """One status read: the state and the pump's own dispensed counters (mL)."""

    state: PumpState
    infused_ml: float
    withdrawn_ml: float


@dataclass(frozen=True)
class SafetyLimits:
    """Hard limits of one rig, checked by drivers before they send anything.

    ``max_dispense_ml`` caps a single dispense (a typo of 10 mL instead of 0.1 mL floods the cell);
    ``syringe_ml`` is what a syringe or reservoir holds, so a driver that tracks the content never drives
    the plunger into its end stop; ``potential_window_v`` (low, high) bounds every potential a
    potentiostat applies, in volts against the cell's reference electrode. ``max_rate_ml_min`` caps every
    flow rate a pump is asked for (a fast flow sprays the cell or bursts a line); ``cell_volume_ml`` is what
    the cell holds, so what is pumped into it, in one experiment or over several, never overflows it until a
    rinse or clean empties it.
    """

    max_dispense_ml: float
    syringe_ml: float
    potential_window_v: tuple[float, float]
    max_rate_ml_min: float = DEFAULT_MAX_RATE_ML_MIN
    cell_volume_ml: float = DEFAULT_CELL_VOLUME_ML

    def __post_init__(self) -> None:
        low, high = self.potential_window_v
        numbers = (self.max_dispense_ml, self.syringe_ml, low, high, self.max_rate_ml_min, self.cell_volume_ml)
        if not all(math.isfinite(x) for x in numbers):
            raise ConfigError("SafetyLimits", f"limits must be finite numbers, got {self}")
        if not (self.max_rate_ml_min > 0 and self.cell_volume_ml > 0):
            raise ConfigError("SafetyLimits", f"max_rate_ml_min and cell_volume_ml must be > 0, got "
                                              f"{self.max_rate_ml_min} and {self.cell_volume_ml}")
        if not 0 < self.max_dispense_ml <= self.syringe_ml:
            raise ConfigError(
                "SafetyLimits",
                f"need 0 < max_dispense_ml <= syringe_ml, got {self.max_dispense_ml} and {self.syringe_ml}",
            )
        if not low < high:
            raise ConfigError("SafetyLimits", f"potential window must be (low, high), got {(low, high)}")

    def check_volume(self, volume_ml: float, *, where: str) -> None:
        """Refuse a dispense that is not a positive number (ConfigError) or exceeds the per-dispense cap (which
        is never more than the syringe: ``__post_init__``)."""
        _check_volume_argument(volume_ml, where)
        if volume_ml > self.max_dispense_ml:
            raise SafetyLimitExceeded(
                where, f"dispense of {volume_ml:g} mL exceeds the limit of {self.max_dispense_ml:g} mL"
            )

    def check_content(self, content_ml: float, *, where: str) -> None:
        """Refuse to move a syringe whose tracked content is not within 0..``syringe_ml``: the driver's count
        has gone wrong (a pump's counter that over-reports), and a move computed from it could overfill or
        drive the plunger into its end stop."""
        if not 0 <= content_ml <= self.syringe_ml * (1 + VOLUME_SLACK):
            raise SafetyLimitExceeded(where, f"the syringe's tracked content {content_ml:g} mL is outside "
                                             f"0..{self.syringe_ml:g} mL: its count is wrong, check the pump")

    def check_dispense(self, volume_ml: float, *, content_ml: float, where: str) -> None:
        """Refuse a dispense larger than the per-dispense cap or than what the syringe still holds (the one
        check of a syringe's content, for drivers that count it and for the protocol executor, which counts
        it for every pump whatever its driver checks)."""
        self.check_volume(volume_ml, where=where)
        self.check_content(content_ml, where=where)
        if volume_ml > content_ml * (1 + VOLUME_SLACK):
            raise SafetyLimitExceeded(
                where, f"dispense of {volume_ml:g} mL exceeds the {content_ml:g} mL left in the "
                       f"{self.syringe_ml:g} mL syringe"
            )

    def check_withdraw(self, volume_ml: float, *, content_ml: float, where: str) -> None:
        """Refuse a withdrawal that would overfill the syringe."""
        _check_volume_argument(volume_ml, where)
        self.check_content(content_ml, where=where)
        if content_ml + volume_ml > self.syringe_ml * (1 + VOLUME_SLACK):
            raise SafetyLimitExceeded(
                where,
                f"withdrawing {volume_ml:g} mL onto {content_ml:g} mL overfills the "
                f"{self.syringe_ml:g} mL syringe",
            )

    def check_rate(self, rate_ml_min: float, *, where: str) -> None:
        """Refuse a flow rate that is not a positive number (ConfigError) or exceeds the cap."""
        if not (math.isfinite(rate_ml_min) and rate_ml_min > 0):
            raise ConfigError(where, f"rate must be a positive number of mL/min, got {rate_ml_min!r}")
        if rate_ml_min > self.max_rate_ml_min:
            raise SafetyLimitExceeded(
                where, f"rate of {rate_ml_min:g} mL/min exceeds the limit of {self.max_rate_ml_min:g} mL/min"
            )

    def check_cell(self, held_ml: float, volume_ml: float, *, where: str) -> None:
        """Refuse pumping ``volume_ml`` into a cell that holds ``held_ml`` (counted since it was last emptied,
        in this experiment or earlier ones) when it would then hold more than its volume."""
        if held_ml + volume_ml > self.cell_volume_ml * (1 + VOLUME_SLACK):
            raise SafetyLimitExceeded(
                where, f"the cell would hold {held_ml + volume_ml:g} mL, more than its {self.cell_volume_ml:g} mL "
                       f"(safety.cell_volume_ml): {volume_ml:g} mL onto the {held_ml:g} mL it holds since it was "
                       "last emptied"
            )

    def check_potentials(self, *potentials_v: float, where: str) -> None:
        """Refuse any potential outside the window (e.g. the vertices of a CV)."""
        low, high = self.potential_window_v
        for e in potentials_v:
            if not (math.isfinite(e) and low <= e <= high):
                raise SafetyLimitExceeded(
                    where, f"potential {e:g} V is outside the window {low:g}..{high:g} V"
                )


def _check_volume_argument(volume_ml: float, where: str) -> None:
    if not (math.isfinite(volume_ml) and volume_ml > 0):
        raise ConfigError(where, f"volume must be a positive number of mL, got {volume_ml!r}")


@runtime_checkable
class Pump(Protocol):
    """A syringe pump: volumes in mL, rates in mL/min unless a unit is given."""

    def set_diameter(self, mm: float) -> None:
        """Set the syringe inner diameter (mm); the pump derives volumes from it."""
        ...

    def set_rate(self, value: float, unit: RateUnit) -> None:
        """Set the pumping rate."""
        ...

    def dispense(self, volume_ml: float, rate_ml_min: float) -> float:
        """Infuse ``volume_ml`` at ``rate_ml_min``, wait until done, return the volume the pump reports."""
        ...

    def withdraw(self, volume_ml: float, rate_ml_min: float) -> float:
        """Withdraw ``volume_ml`` (refill the syringe), wait until done, return the reported volume."""
        ...

    def stop(self) -> None:
        """Bring the pump to a full stop; stopping a stopped pump is not an error."""
        ...

    def status(self) -> PumpStatus:
        """Read the state and the dispensed counters."""
        ...

    def close(self) -> None:
        """Release the port (or the pump's share of it); closing twice is not an error."""
        ...


@runtime_checkable
class Potentiostat(Protocol):
    """A potentiostat that can run a cyclic voltammogram."""

    def run_cv(self, params: CVParams) -> Voltammogram:
        """Run one CV and return it; raises :class:`Overload` if the current left the range."""
        ...

    def abort(self) -> None:
        """Abort a running measurement and switch the cell off; aborting when idle is not an error."""
        ...

    def close(self) -> None:
        """Release the port; closing twice is not an error."""
        ...


@runtime_checkable
class ImpedanceMeter(Protocol):
    """A potentiostat that can also sweep impedance (what an ``eis`` step needs)."""

    def run_eis(self, params: EISParams) -> ImpedanceSpectrum:
        """Run one impedance sweep and return the spectrum; raises :class:`Overload` if the current left the
        range."""
        ...


@runtime_checkable
class SampleChanger(Protocol):
    """Whatever puts a sample's stock solution in line with the sample pump."""

    def load(self, sample_id: str) -> None:
        """Load ``sample_id``; loading the already loaded sample is not an error."""
        ...

    def unload(self) -> None:
        """Unload the current sample, if any."""
        ...

    def close(self) -> None:
        """Release the device; closing twice is not an error."""
        ...


@runtime_checkable
class GasValve(Protocol):
    """What lets a gas into the cell (argon to purge dissolved O2): one gas flows at a time."""

    @property
    def gases(self) -> tuple[str, ...]:
        """The gases this valve can let in (e.g. ``("argon",)``)."""
        ...

    def flow(self, gas: str) -> None:
        """Let ``gas`` flow (closing any other); flowing the gas that already flows is not an error."""
        ...

    def stop(self) -> None:
        """Close every valve; stopping a stopped valve is not an error."""
        ...

    def flowing(self) -> str | None:
        """The gas flowing now, read back from the device (None: all closed)."""
        ...

    def close(self) -> None:
        """Close the valves and release the port; closing twice is not an error."""
        ...


def returned(value: Any, expected: type | tuple[type, ...], *, where: str, call: str, what: str = "", unknown: str = "",
             error: type[InstrumentError] = WrongReturn) -> Any:
    """``value``, what a driver's ``call`` gave, when it is an ``expected`` (a bool is never one: no contract returns
    a bool); else ``error`` at ``where`` (the instrument, and the step it served) saying what came instead of
    ``what`` (default: an ``expected``'s name) and, when given, what is therefore ``unknown``.

    Why one check for every value labloop reads from a driver (the protocol executor's volumes, voltammograms,
    spectra and gases, the rig's health check's status): a plug-in's None met labloop's own code further on (the
    analysis, the counts), which failed as "a labloop bug" naming no instrument, where the fault is the driver's
    (``run_cv`` returning None: AttributeError: 'NoneType' object has no attribute 'segments')."""
    if isinstance(value, expected) and not isinstance(value, bool):
        return value
    got = "None" if value is None else _a(type(value).__name__)
    wanted = what or _a(expected.__name__)  # type: ignore[union-attr]
    raise error(where, f"its driver's {call} returned {got}, not {wanted}" + (f": {unknown}" if unknown else ""))


def optional_member(driver: object, name: str, *, where: str) -> Any:
    """``driver``'s optional attribute ``name`` (``potential_range_v``, ``rate_range_ml_min``, ``retried``:
    docs/drivers.md), None when it has none; a property that raises is the driver's fault, a :class:`WrongReturn` at
    ``where``. Why: a plug-in's ``potential_range_v`` that read an unreadable register stopped ``labloop run`` with
    "unexpected RuntimeError ... (a labloop bug)", exit 1, naming neither the instrument nor the driver (a plug-in
    engineer's trial)."""
    try:
        return getattr(driver, name, None)
    except Exception as exc:  # whatever a plug-in's property raises
        raise WrongReturn(where, f"its driver's {name} raised {said(exc)}") from exc


def returned_range(value: Any, *, where: str, call: str) -> tuple[float, float]:
    """``value``, what a driver's optional range attribute ``call`` gave (``potential_range_v``, ``rate_range_ml_min``:
    docs/drivers.md), as a (low, high) pair of floats; else :class:`WrongReturn` at ``where`` saying what came. Why one
    check: a plug-in's string stopped ``labloop run`` with "unexpected ValueError: too many values to unpack (a
    labloop bug)", and its (2.0, -2.0) passed the conformance kit (sim/conformance.py) and then refused every run at
    open (protocols/executor.py); both call this."""
    what = "None or a (low, high) pair of numbers, low below high"
    pair = returned(value, (tuple, list), where=where, call=call, what=what)
    if len(pair) != 2 or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in pair) \
            or not -math.inf < pair[0] < pair[1] < math.inf:  # NaN too
        raise WrongReturn(where, f"its driver's {call} returned {shown(tuple(pair))}, not {what}")
    return float(pair[0]), float(pair[1])


def _a(name: str) -> str:
    """``name`` with its indefinite article: "a str", "an int", "an ImpedanceSpectrum"."""
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


#: the contract of each kind of instrument, by the name drivers declare (``DriverDescriptor.kind``)
CONTRACTS: dict[str, type] = {"pump": Pump, "potentiostat": Potentiostat, "sample_changer": SampleChanger,
                              "gas_valve": GasValve}


def contract_problem(driver: object, kind: str, name: str) -> str | None:
    """Why the opened ``driver`` of driver ``name``, registered as a ``kind``, is not one (what it lacks of the
    kind's contract), or None. The rig (orchestrator/compose.py) and the conformance kit (sim/conformance.py) say
    it alike: a plug-in's class that lacks a method was named "'pump_1' is not a pump" at a protocol step (a
    plug-in author's trial)."""
    contract = CONTRACTS.get(kind)
    if contract is None or isinstance(driver, contract):
        return None
    if driver is None:  # "its NoneType lacks run_cv, abort, close" (a plug-in author's trial): an open() without return
        return (f"driver {name!r} is registered as a {kind}, but its open() returned None, not the opened "
                f"{kind} (docs/drivers.md: the contracts)")
    return (f"driver {name!r} is registered as a {kind}, but its {type(driver).__name__} lacks "
            f"{', '.join(missing_members(driver, contract))} (docs/drivers.md: the contracts)")


def missing_members(driver: object, contract: type) -> list[str]:
    """The methods and properties of ``contract`` that ``driver`` lacks: what a plug-in author must add, where
    ``isinstance`` says only that something is missing."""
    members = [name for name in vars(contract) if not name.startswith("_")]
    return [name for name in members if not _has(driver, name)]


def _has(driver: object, name: str) -> bool:
    """Whether ``driver`` has ``name``, looked up without running it (a property may query the device)."""
    try:
        inspect.getattr_static(driver, name)
    except AttributeError:
        return False
    return True
