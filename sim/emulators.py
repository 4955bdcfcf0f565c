"""The emulator registry: a driver's emulator is found by the driver's name in the ``labloop.emulators``
entry-point group, the way the driver itself is found in ``labloop.drivers``.

Why a group of its own: the instrument layer never imports the simulator (docs/architecture.md), so a driver
descriptor cannot point at its emulator. A plug-in that wants ``--dry-run``, ``labloop sim serve`` and the
conformance kit registers an emulator factory under the same name as its driver (docs/drivers.md).

A factory is ``emulator(context, **options) -> Emulation``: it takes the shared
:class:`labloop.sim.emulation.EmulatorContext` and the keyword options it declares, and returns a started
:class:`labloop.sim.emulation.Emulation` whose ``port`` and ``options`` are what the driver's ``open`` needs.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from typing import Any

from labloop.core.entry_points import group_entry_points
from labloop.core.errors import ConfigError, LabloopError
from labloop.sim.emulation import Emulation, EmulatorContext

log = logging.getLogger(__name__)

GROUP = "labloop.emulators"

EmulatorFactory = Callable[..., Emulation]


def emulator_names() -> list[str]:
    """Names of the drivers that have a registered emulator, sorted."""
    return sorted({ep.name for ep in group_entry_points(GROUP)})


class NoEmulator(ConfigError):
    """No emulator is registered for a driver: a dry run of a rig using it cannot start (orchestrator/compose.py says
    so, where "the driver refused its options" sent a plug-in author to options that were fine)."""


def load_emulator(driver: str) -> EmulatorFactory:
    """The emulator factory registered for ``driver``; ConfigError (one line) if none or broken."""
    found = {ep.value: ep for ep in group_entry_points(GROUP) if ep.name == driver}
    if not found:
        raise NoEmulator(f"driver {driver!r}", f"has no emulator (none registered under {GROUP!r}: docs/drivers.md, "
                                               "Registering an emulator)")
    if len(found) > 1:
        raise ConfigError(GROUP, f"emulator {driver!r} is registered more than once: {', '.join(sorted(found))}")
    (ep,) = found.values()
    try:
        factory = ep.load()
    except Exception as exc:  # a plug-in's import error must be one line, not a traceback
        raise ConfigError(GROUP, f"emulator {driver!r} ({ep.value}) cannot be loaded: {exc!r}") from exc
    if not callable(factory):
        raise ConfigError(GROUP, f"emulator {driver!r} ({ep.value}) is not callable")
    return factory


def option_names(factory: Callable[..., Any]) -> list[str] | None:
    """The options ``factory`` takes as keywords, after its context; None when it takes ``**options`` (any)."""
    parameters = list(inspect.signature(factory).parameters.values())[1:]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return [p.name for p in parameters]


def accepted(factory: Callable[..., Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """The ``options`` that ``factory`` takes as keywords (all of them if it takes ``**options``)."""
    names = option_names(factory)
    return dict(options) if names is None else {key: value for key, value in options.items() if key in names}


def start_emulator(driver: str, context: EmulatorContext, options: Mapping[str, Any] | None = None,
                   factory: EmulatorFactory | None = None) -> Emulation:
    """Start ``driver``'s emulator (``factory``, else the one registered for it) on ``context`` with those of
    ``options`` its factory accepts. TypeError and ValueError are an option value it refuses (the caller names
    the option's instrument); any other failure but a labloop error is a bug in the plug-in's emulator: a
    ConfigError naming the emulator and where it lives, not "a labloop bug" (a plug-in author's trial)."""
    factory = factory or load_emulator(driver)
    try:
        return factory(context, **accepted(factory, options or {}))
    except (LabloopError, TypeError, ValueError):
        raise
    except Exception as exc:
        where = f"{getattr(factory, '__module__', '?')}:{getattr(factory, '__qualname__', repr(factory))}"
        raise ConfigError(f"emulator {driver!r}", f"its factory ({where}) failed: {type(exc).__name__}: {exc} "
                                                  "(a bug in the plug-in's emulator)") from exc
