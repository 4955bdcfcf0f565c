"""labloop plug-in for the IO Rodeo Rodeostat potentiostat: driver, emulator, and their registration.

labloop finds this package through the entry point in its ``pyproject.toml``::

    [project.entry-points."labloop.drivers"]
    rodeostat = "labloop_rodeostat:RODEOSTAT"

which names the :class:`DriverDescriptor` below. The emulator is imported only when it is started.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from labloop.instruments.registry import DriverDescriptor, DriverKind

from labloop_rodeostat.driver import DEFAULT_BAUDRATE, RodeostatPotentiostat

if TYPE_CHECKING:
    from labloop.sim.emulation import Emulation, EmulatorContext

__all__ = ["RODEOSTAT", "RodeostatPotentiostat", "start_emulator"]


def start_emulator(context: EmulatorContext, *, seed: int = 0) -> Emulation:
    """A Rodeostat emulator on its own pty, measuring the context's cell."""
    from labloop.sim.emulation import Emulation
    from labloop.sim.pty_device import PtyDevice

    from labloop_rodeostat.emulator import RodeostatEmulator

    emulator = RodeostatEmulator(context.contents, time_scale=context.time_scale, seed=seed)
    return Emulation.on_pty(PtyDevice(emulator, faults=context.injector("rodeostat"), name="rodeostat").start())


RODEOSTAT = DriverDescriptor(
    name="rodeostat", kind=DriverKind.POTENTIOSTAT, open=RodeostatPotentiostat.open, emulator=start_emulator,
    default_baudrate=DEFAULT_BAUDRATE, summary="IO Rodeo Rodeostat, JSON lines over USB serial (example plug-in)",
)
