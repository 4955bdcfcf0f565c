"""The cell's gas side: dissolved oxygen (:class:`Atmosphere`) and the emulated relay board that switches the
purge gas (:class:`RelayValveEmulator`), for the pty framework.

Why: a cell open to air holds a few mM of dissolved O2 in organic electrolytes, whose reduction wave sits
in the cathodic part of a CV; purging with argon for ~10 minutes removes it. The simulated lab must make
a forgotten purge visible, so the potentiostat emulator asks :meth:`Atmosphere.oxygen_mm` what the cell
holds when a scan starts, and this emulator changes it while a gas flows.

Oxygen model ([infer], documented because tests rely on it): while argon flows, O2 decays exponentially
with time constant :data:`PURGE_TIME_CONSTANT_S` (2 min: 99% gone after ~9 min, the usual 10-15 min
purge); while air flows, it relaxes toward saturation with the same constant; with no flow it stays
(the argon blanket of a closed cell). Time is the emulator's device time, so a zero-latency world purges
completely in any positive wall time.

The board is a Numato Lab USB relay module (one relay per gas solenoid): commands end with ``\\r``;
``relay on N``, ``relay off N``, ``relay read N`` (answer ``on`` or ``off``), ``ver`` (answer 8 digits).
The module echoes each command, then sends its answer line, then the prompt: ``<command>\\n\\r[answer\\n\\r]>``
(Numato's user manual; the exact echo bytes are an [infer]). An unknown command is echoed and answered
with the prompt only, as the module ignores it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Mapping

from labloop.sim.pty_device import Link, TerminatorFramer, TimeScale

log = logging.getLogger(__name__)

#: time constant of O2 removal by argon (and uptake from air) (s)
PURGE_TIME_CONSTANT_S = 120.0
#: dissolved O2 of air-saturated organic carbonate/nitrile electrolytes (mM), order of magnitude [infer]
AIR_SATURATED_O2_MM = 2.0
FIRMWARE_VERSION = "00000008"
#: gases whose flow removes O2; any other gas (air, O2) brings it back to saturation
INERT_GASES = frozenset({"argon", "nitrogen"})


class Atmosphere:
    """Dissolved O2 of the cell, changed by the gas flowing through it; thread-safe."""

    def __init__(self, oxygen_mm: float = AIR_SATURATED_O2_MM, *, saturated_mm: float = AIR_SATURATED_O2_MM,
                 time_scale: TimeScale | None = None) -> None:
        if not (math.isfinite(oxygen_mm) and oxygen_mm >= 0 and math.isfinite(saturated_mm) and saturated_mm >= 0):
            raise ValueError(f"oxygen concentrations must be >= 0 mM, got {oxygen_mm!r} and {saturated_mm!r}")
        self.saturated_mm = saturated_mm
        self.time_scale = time_scale or TimeScale.real_time()
        self._lock = threading.Lock()
        self._oxygen_mm = oxygen_mm
        self._gas: str | None = None
        self._since = time.monotonic()

    def _settle(self, now: float) -> None:
        """Apply the flow since the last change (lock held)."""
        if self._gas is not None:
            elapsed = self.time_scale.device_seconds(now - self._since)
            target = 0.0 if self._gas in INERT_GASES else self.saturated_mm
            self._oxygen_mm = target + (self._oxygen_mm - target) * math.exp(-elapsed / PURGE_TIME_CONSTANT_S)
        self._since = now

    def set_flow(self, gas: str | None) -> None:
        """Start ``gas`` flowing (None: stop the flow)."""
        with self._lock:
            self._settle(time.monotonic())
            self._gas = gas
        log.info("atmosphere: %s flowing, O2 %.3g mM", gas or "nothing", self._oxygen_mm)

    def oxygen_mm(self) -> float:
        """Dissolved O2 now (mM)."""
        with self._lock:
            self._settle(time.monotonic())
            return self._oxygen_mm


class RelayValveEmulator:
    """A Numato-style USB relay board switching one solenoid valve per gas; a pty emulator.

    ``channels`` maps relay number -> the gas its valve lets into the cell's ``atmosphere``. When two
    relays are on, the lowest-numbered one's gas is what flows (one gas line into the cell).
    """

    def __init__(self, atmosphere: Atmosphere, channels: Mapping[int, str]) -> None:
        self.atmosphere = atmosphere
        self.channels = dict(channels)
        self.relays = dict.fromkeys(self.channels, False)

    def new_framer(self) -> TerminatorFramer:
        return TerminatorFramer(b"\r")

    def tick(self, link: Link) -> None:
        pass

    def handle(self, frame: bytes, link: Link) -> None:
        command = frame.decode("latin-1").strip()
        words = command.split()
        answer = ""
        if words == ["ver"]:
            answer = FIRMWARE_VERSION
        elif len(words) == 3 and words[0] == "relay" and words[2].isdigit() and int(words[2]) in self.relays:
            channel = int(words[2])
            if words[1] in ("on", "off"):
                self.relays[channel] = words[1] == "on"
                self._update()
            elif words[1] == "read":
                answer = "on" if self.relays[channel] else "off"
        reply = f"{command}\n\r" + (f"{answer}\n\r" if answer else "") + ">"
        link.reply(reply.encode("ascii", "replace"))

    def _update(self) -> None:
        on = sorted(channel for channel, state in self.relays.items() if state)
        self.atmosphere.set_flow(self.channels[on[0]] if on else None)
