"""labloop plug-in for the IO Rodeo Rodeostat potentiostat: driver, emulator, and their registration.

labloop finds this package through two entry points in its ``pyproject.toml``::

    [project.entry-points."labloop.drivers"]
    rodeostat = "labloop_rodeostat:RODEOSTAT"

    [project.entry-points."labloop.emulators"]
    rodeostat = "labloop_rodeostat.emulator:start_emulator"

the first names the :class:`DriverDescriptor` below, the second the emulator factory that labloop's
simulated world starts for a dry run (it is imported only then).
"""

from __future__ import annotations

from labloop.instruments.registry import DriverDescriptor, DriverKind

from labloop_rodeostat.driver import DEFAULT_BAUDRATE, RodeostatPotentiostat, option_problem

__all__ = ["RODEOSTAT", "RodeostatPotentiostat"]

RODEOSTAT = DriverDescriptor(
    name="rodeostat", kind=DriverKind.POTENTIOSTAT, open=RodeostatPotentiostat.open,
    default_baudrate=DEFAULT_BAUDRATE, summary="IO Rodeo Rodeostat, JSON lines over USB serial (example plug-in)",
    # open() passes **options on to RodeostatPotentiostat: listed here, a typo (refrence:) is refused by
    # `labloop validate` with its line, not by __init__ when the run opens the port
    options=("baudrate", "capture", "timeout_s", "retries", "settle_s", "on_overload", "reference"),
    option_problem=option_problem,  # a value open would refuse (on_overload: maybe) is refused by validate too
)
