"""The driver registry: every driver, built-in or third-party, is found through one entry-point group.

Why entry points: a lab adds an instrument by installing a package, without touching labloop
(DESIGN.md "Contracts"). A distribution lists its drivers under ``[project.entry-points."labloop.drivers"]``;
each entry point names a :class:`DriverDescriptor`. labloop registers its own drivers the same way (in its
``pyproject.toml``), so there is one source of truth: what ``importlib.metadata`` reports for the group.

A descriptor says what kind of instrument the driver serves, how to open it on a port, and how to start
its emulator (for ``labloop run --dry-run``, ``labloop sim serve`` and the conformance kit in
:mod:`labloop.instruments.conformance`).

The factories' conventions:

- ``open(port, **options)`` returns a driver satisfying the contract of its kind
  (:mod:`labloop.instruments.contracts`). Pumps and potentiostats take ``limits`` (SafetyLimits) and
  ``time_scale`` (device seconds per wall second; ``math.inf`` for a zero-latency emulator).
- ``emulator(context, **options)`` takes a :class:`labloop.sim.emulation.EmulatorContext` and returns a
  started :class:`labloop.sim.emulation.Emulation`; its ``port`` and ``options`` are what ``open`` needs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

from labloop.instruments.errors import ConfigError

if TYPE_CHECKING:  # the registry itself never imports the simulated world
    from labloop.sim.emulation import Emulation, EmulatorContext

log = logging.getLogger(__name__)

GROUP = "labloop.drivers"
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

    ``default_baudrate`` is None for a device without a serial line.
    """

    name: str
    kind: DriverKind
    open: Callable[..., Any]
    emulator: Callable[..., Emulation] | None = None
    default_baudrate: int | None = None
    summary: str = ""

    def __post_init__(self) -> None:
        where = f"driver {self.name!r}"
        if not isinstance(self.name, str) or _NAME.fullmatch(self.name) is None:
            raise ConfigError(where, "a driver name is lower case letters, digits, '-' and '_'")
        try:
            object.__setattr__(self, "kind", DriverKind(self.kind))
        except ValueError:
            kinds = [k.value for k in DriverKind]
            raise ConfigError(where, f"kind must be one of {kinds}, got {self.kind!r}") from None
        if not callable(self.open) or (self.emulator is not None and not callable(self.emulator)):
            raise ConfigError(where, "open and emulator must be callables")

    def start_emulator(self, context: EmulatorContext, **options: Any) -> Emulation:
        """Start this driver's emulator; ConfigError if it has none."""
        if self.emulator is None:
            raise ConfigError(f"driver {self.name!r}", "has no emulator")
        return self.emulator(context, **options)


@dataclass(frozen=True)
class RegisteredDriver:
    """A loaded descriptor and the distribution that registered it."""

    descriptor: DriverDescriptor
    distribution: str
    entry_point: str  # "module:attribute"


def _entry_points() -> dict[str, list[EntryPoint]]:
    found: dict[str, list[EntryPoint]] = {}
    for ep in entry_points(group=GROUP):
        found.setdefault(ep.name, []).append(ep)
    return found


def driver_names() -> list[str]:
    """Names of every registered driver, sorted."""
    return sorted(_entry_points())


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
        raise ConfigError(GROUP, f"entry point {name!r} ({ep.value}) describes a driver named {descriptor.name!r}")
    distribution = ep.dist.name if ep.dist is not None else "?"
    return RegisteredDriver(descriptor, distribution, ep.value)


def resolve(driver: str | DriverDescriptor) -> DriverDescriptor:
    """A descriptor given itself or its registered name."""
    return driver if isinstance(driver, DriverDescriptor) else load_driver(driver).descriptor
