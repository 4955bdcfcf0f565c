"""The driver registry: every driver, built-in or third-party, is found through one entry-point group.

Why entry points: a lab adds an instrument by installing a package, without touching labloop
(docs/drivers.md). A distribution lists its drivers under ``[project.entry-points."labloop.drivers"]``;
each entry point names a :class:`DriverDescriptor`. labloop registers its own drivers the same way (in its
``pyproject.toml``), so there is one source of truth: what ``importlib.metadata`` reports for the group.

A descriptor says what kind of instrument the driver serves and how to open it on a port. Its options are
the keyword parameters of ``open`` (:meth:`DriverDescriptor.option_names`): a campaign naming any other
option is refused by ``labloop validate`` with the valid names. Emulators are not part of a descriptor:
the simulated world registers them apart (``labloop.emulators``), since this layer never imports it.

``open(port, **options)`` returns a driver satisfying the contract of its kind
(:mod:`labloop.instruments.contracts`). Pumps and potentiostats also take ``limits`` (SafetyLimits) and
``time_scale`` (device seconds per wall second; ``math.inf`` for a zero-latency emulator), which the rig
supplies.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from importlib.metadata import EntryPoint
from typing import Any

from labloop.core.entry_points import group_entry_points
from labloop.core.errors import ConfigError, said
from labloop.instruments.voltammogram import reference_problem

log = logging.getLogger(__name__)

GROUP = "labloop.drivers"
#: the keywords labloop itself gives a driver's ``open``, never the campaign's options, and when: a campaign that gave
#: ``time_scale`` to a driver taking ``**options`` stretched its deadlines a millionfold on hardware, where labloop
#: passes none (a plug-in author's trial), so a campaign may give none of them
LABLOOP_PASSES = {"limits": "the campaign's safety limits, to every pump and potentiostat",
                  "time_scale": "the emulator's time scale, to a pump or potentiostat in a dry run",
                  "ask": "the console's question, to a sample changer that takes it",
                  "describe": "what each sample id holds (its molecule), to a sample changer that names it"}
#: of those, the ones ``open`` takes that are never a driver's own option (``ask`` and ``describe`` are a sample
#: changer's own)
RIG_OPTIONS = frozenset(LABLOOP_PASSES) - {"ask", "describe"}
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


class DriverKind(StrEnum):
    """Which contract a driver satisfies."""

    PUMP = "pump"
    POTENTIOSTAT = "potentiostat"
    SAMPLE_CHANGER = "sample_changer"
    GAS_VALVE = "gas_valve"


@dataclass(frozen=True)
class DriverDescriptor:
    """What an entry point of the ``labloop.drivers`` group resolves to (see the module docstring).

    ``default_baudrate`` is None for a device without a serial line; ``simulated_only`` marks a driver that
    exists only in the simulated world (its ``open`` needs what only a dry run provides). ``options`` declares
    the options a campaign may give ``open``; left out, they are ``open``'s keyword parameters.

    Two optional hooks let ``labloop validate`` know, without a port, what ``open`` would refuse (a real
    ``validate`` opens nothing): ``option_problem(name, value)`` says why a value cannot be that option (one
    phrase, e.g. ``must be a number of mm in 0.1..80, got 'big'``; None when it can), and for a pump
    ``rate_range_ml_min(options)`` gives the flow rates its options fix (the syringe's diameter), None when
    only the connected device can tell.

    For a pump, ``content_ml(options)`` says what its syringe holds when the campaign starts (mL), as its options
    say (the ``ne1000``'s ``content_ml``), None for a full one: the protocol executor counts the syringe from it,
    in ``validate``, ``run`` and ``resume`` alike (the campaign, journalled, is where it is read), so a syringe
    loaded partly is refused before the first experiment rather than running dry in one. Without the hook a
    syringe counts full, as before it existed.
    """

    name: str
    kind: DriverKind
    open: Callable[..., Any]
    default_baudrate: int | None = None
    summary: str = ""
    simulated_only: bool = False
    options: tuple[str, ...] | None = None
    option_problem: Callable[[str, object], str | None] | None = None
    rate_range_ml_min: Callable[[Mapping[str, Any]], tuple[float, float] | None] | None = None
    content_ml: Callable[[Mapping[str, Any]], float | None] | None = None
    diameter_option: str | None = None

    def __post_init__(self) -> None:
        where = f"driver {self.name!r}"
        if not isinstance(self.name, str) or _NAME.fullmatch(self.name) is None:
            raise ConfigError(where, "a driver name is lower case letters, digits, '-' and '_'")
        try:
            object.__setattr__(self, "kind", DriverKind(self.kind))
        except ValueError:
            kinds = [k.value for k in DriverKind]
            raise ConfigError(where, f"kind must be one of {kinds}, got {self.kind!r}") from None
        if not callable(self.open):
            raise ConfigError(where, "open must be a callable")
        if self.kind is DriverKind.PUMP and self.content_ml is None and "content_ml" in (self.option_names() or ()):
            # an option no hook reads: labloop counted the syringe full whatever it said, and a dispense of 0.5 mL
            # from a syringe given content_ml 0.3 reached the pump twice (a plug-in engineer's trial)
            raise ConfigError(where, "takes a content_ml option but declares no content_ml hook, so labloop would "
                                     "count its syringe full whatever the option says: give the descriptor "
                                     "content_ml=lambda options: options.get('content_ml') (docs/drivers.md)")
        if self.diameter_option is not None:
            known = self.option_names()
            if not isinstance(self.diameter_option, str) or (known is not None and self.diameter_option not in known):
                among = f" ({', '.join(known)})" if known is not None else ""
                raise ConfigError(where, f"diameter_option must name one of its options{among}, "
                                         f"got {self.diameter_option!r}")

    def option_names(self) -> list[str] | None:
        """The options a campaign may give this driver: those it declares, else ``open``'s keyword
        parameters less those the rig supplies (``limits``, ``time_scale``); None when it declares none and
        ``open`` takes ``**options`` (then anything goes)."""
        if self.options is not None:
            return sorted(self.options)
        parameters = list(inspect.signature(self.open).parameters.values())[1:]  # the first is the port
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            return None
        return sorted(p.name for p in parameters if p.kind in (inspect.Parameter.KEYWORD_ONLY,
                                                                inspect.Parameter.POSITIONAL_OR_KEYWORD)
                      and p.name not in RIG_OPTIONS)


    def unpassable(self, passed: Iterable[str]) -> str | None:
        """Why ``open`` cannot be called with the keywords of ``passed`` that labloop gives it itself
        (:data:`LABLOOP_PASSES`: a campaign's options are judged by :meth:`option_refusal`), or None: the first
        its signature does not take, read from the signature, not from a TypeError, which the driver's own code
        may raise for another call. The rig (orchestrator/compose.py), ``labloop validate`` before it opens
        anything, and the conformance kit (sim/conformance.py) all ask it, so the fix is said alike: the kit said
        "untyped exception TypeError: ... unexpected keyword argument 'limits'" (a plug-in author's trial)."""
        try:
            parameters = inspect.signature(self.open).parameters
        except (TypeError, ValueError):  # no signature to read (a builtin): the call says
            return None
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            return None
        lacking = next((key for key in passed if key in LABLOOP_PASSES and key not in parameters), None)
        return None if lacking is None else (f"driver {self.name!r}: its open() must take {lacking}=, which labloop "
                                             f"passes ({LABLOOP_PASSES[lacking]}; docs/drivers.md, What open() "
                                             "receives)")

    def option_refusal(self, name: str, value: object) -> str | None:
        """Why this driver cannot be given option ``name`` with ``value`` (one phrase), or None: a name it does not
        take (:meth:`option_names`; what labloop passes itself, :data:`LABLOOP_PASSES`, is never an option), a
        potentiostat's ``reference`` that names no electrode (:func:`reference_problem`, whatever the driver) or a
        value its ``option_problem`` refuses. A campaign's validation (orchestrator/config/campaign.py) and ``labloop
        drivers check --option`` (orchestrator/cli/instruments.py) both ask it, so an option is judged alike."""
        if name in LABLOOP_PASSES:
            return f"labloop gives the driver this itself ({LABLOOP_PASSES[name]}): not an option"
        known = self.option_names()
        if known is not None and name not in known:
            return f"not an option of driver {self.name!r} (its options: {', '.join(known) or 'none'})"
        # labloop labels every measurement with a potentiostat's reference, whatever the driver: a plug-in's
        # ``reference: 5`` passed validate and failed every experiment of the run, a sample dispensed for each (a
        # plug-in author's trial)
        if (self.kind is DriverKind.POTENTIOSTAT and name == "reference"
                and (problem := reference_problem(value)) is not None):
            return problem
        if self.option_problem is None:
            return None
        try:
            problem = self.option_problem(name, value)
        except Exception as exc:  # a plug-in's hook: its failure is the option's, said in one line, not labloop's bug
            return f"driver {self.name!r} could not judge this option: its option_problem raised {said(exc)}"
        if problem is None or (isinstance(problem, str) and problem):
            return problem
        # a hook answering False for "fine" refused a good option as "options.reference: False" (a plug-in author's
        # trial): what it returned is said as the hook's fault
        return (f"driver {self.name!r} could not judge this option: its option_problem returned {problem!r}, neither "
                "a reason (text) nor None")


@dataclass(frozen=True)
class RegisteredDriver:
    """A loaded descriptor and the distribution that registered it."""

    descriptor: DriverDescriptor
    distribution: str


def _entry_points() -> dict[str, list[EntryPoint]]:
    found: dict[str, list[EntryPoint]] = {}
    for ep in group_entry_points(GROUP):
        found.setdefault(ep.name, []).append(ep)
    return found


def driver_names() -> list[str]:
    """Names of every registered driver, sorted."""
    return sorted(_entry_points())


def registered_by(name: str) -> str:
    """The distribution (package) that registers driver ``name``, read from its entry point without loading it: a
    driver that cannot be loaded is listed with the package to fix (``drivers list`` showed "?"). "?" when the
    entry point names none."""
    return ", ".join(sorted({ep.dist.name for ep in _entry_points().get(name, []) if ep.dist is not None})) or "?"


def load_driver(name: str) -> RegisteredDriver:
    """Load the driver registered as ``name``; ConfigError (one line) if unknown, ambiguous or broken."""
    found = _entry_points()
    if name not in found:
        known = ", ".join(sorted(found)) or "none (is labloop installed, e.g. `pip install -e .`?)"
        raise ConfigError(GROUP, f"unknown driver {name!r}; known drivers: {known}")
    candidates = {ep.value: ep for ep in found[name]}
    if len(candidates) > 1:
        raise ConfigError(GROUP, f"driver {name!r} is registered more than once: {', '.join(sorted(candidates))}")
    (ep,) = candidates.values()
    try:
        descriptor = ep.load()
    except Exception as exc:  # a plug-in's import error must not crash `drivers list` untyped
        raise ConfigError(GROUP, f"driver {name!r} ({ep.value}) cannot be loaded: {exc!r}") from exc
    if not isinstance(descriptor, DriverDescriptor):
        raise ConfigError(GROUP, f"driver {name!r} ({ep.value}) is not a DriverDescriptor")
    if descriptor.name != name:
        # the two must be one name: a campaign's driver: names the entry point, labloop then finds the emulator and
        # says the driver by the descriptor's (a plug-in author's trial asked which one to change)
        raise ConfigError(GROUP, f"entry point {name!r} ({ep.value}) describes a driver named {descriptor.name!r}: "
                                 "the two must be equal; change the DriverDescriptor's name to "
                                 f"{name!r}, or the entry point's (and its emulator's) to {descriptor.name!r} in the "
                                 "package's pyproject.toml, then reinstall it (docs/drivers.md, Registering a driver)")
    return RegisteredDriver(descriptor, registered_by(name))


def resolve(driver: str | DriverDescriptor) -> DriverDescriptor:
    """A descriptor given itself or its registered name."""
    return driver if isinstance(driver, DriverDescriptor) else load_driver(driver).descriptor
