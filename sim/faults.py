"""Deterministic fault injection for the firmware emulators.

Unattended operation is the point of a self-driving lab, so the drivers must be shown to survive the
faults a night in the lab brings: a reply that never comes, line noise, a pump that stalls, a USB adapter
that resets, an instrument that answers late. Every emulator draws its faults from one
:class:`FaultInjector` built from a frozen :class:`FaultPlan` (a rate per :class:`FaultKind` and a seed).

Each kind has its own random stream (seeded from the seed and the kind's name), so turning one kind up
does not reshuffle when the others fire, and a run with the same plan and the same traffic sees the same
faults. The reply-path kinds (no reply, slow, garble, drop, disconnect) are applied generically by
:class:`labloop.sim.pty_device.Link`; device-specific kinds (a pump stall, a potentiostat overload) are
decided by the emulator that owns the behaviour, through :meth:`FaultInjector.decide`.
"""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass
from enum import StrEnum

log = logging.getLogger(__name__)


class FaultKind(StrEnum):
    NO_REPLY = "no_reply"  # the device executes the command but its reply is lost
    GARBLE = "garble"  # one bit of one reply byte flips (line noise)
    DROP = "drop"  # one reply byte is lost
    STALL = "stall"  # a pump's motor stalls part way through a run
    OVERLOAD = "overload"  # a potentiostat's current leaves its range
    DISCONNECT = "disconnect"  # the port vanishes (pty closed) instead of the reply
    SLOW = "slow"  # the reply comes ``slow_s`` late


@dataclass(frozen=True)
class FaultPlan:
    """Probability of each fault kind per decision (per reply for the reply-path kinds), and the seed."""

    no_reply: float = 0.0
    garble: float = 0.0
    drop: float = 0.0
    stall: float = 0.0
    overload: float = 0.0
    disconnect: float = 0.0
    slow: float = 0.0
    slow_s: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        for kind in FaultKind:
            if not 0.0 <= self.rate(kind) <= 1.0:
                raise ValueError(f"fault rate {kind} must be in [0, 1], got {self.rate(kind)}")
        if self.slow_s < 0:
            raise ValueError(f"slow_s must be >= 0, got {self.slow_s}")

    @classmethod
    def uniform(cls, rate: float, *, seed: int = 0, slow_s: float = 0.2) -> FaultPlan:
        """Every kind at the same rate."""
        return cls(**{kind.value: rate for kind in FaultKind}, slow_s=slow_s, seed=seed)

    def rate(self, kind: FaultKind) -> float:
        return float(getattr(self, kind.value))


class FaultInjector:
    """Draws faults according to a plan; thread-safe; counts what it injected."""

    def __init__(self, plan: FaultPlan, armed: threading.Event | None = None) -> None:
        self.plan = plan
        #: faults strike once this is set (None: from the start); a dry run's rig sets it after its health check
        self._armed = armed
        self._lock = threading.Lock()
        self._streams = {kind: random.Random(f"{plan.seed}:{kind.value}") for kind in FaultKind}
        self._shape = random.Random(f"{plan.seed}:shape")  # where a fault hits (which byte, how far)
        self._counts = dict.fromkeys(FaultKind, 0)

    def decide(self, kind: FaultKind) -> bool:
        """True if a fault of ``kind`` happens now (and count it)."""
        rate = self.plan.rate(kind)
        if rate <= 0.0 or (self._armed is not None and not self._armed.is_set()):
            return False
        with self._lock:
            hit = self._streams[kind].random() < rate
            if hit:
                self._counts[kind] += 1
        if hit:
            log.debug("injecting fault %s", kind)
        return hit

    @property
    def counts(self) -> dict[FaultKind, int]:
        """How many faults of each kind were injected so far."""
        with self._lock:
            return dict(self._counts)

    def fraction(self) -> float:
        """A draw in (0, 1): how far into an operation a fault strikes (e.g. where a run stalls)."""
        with self._lock:
            return 0.05 + 0.9 * self._shape.random()

    def garble(self, data: bytes) -> bytes:
        """``data`` with one bit of one byte flipped."""
        if not data:
            return data
        with self._lock:
            i = self._shape.randrange(len(data))
            bit = 1 << self._shape.randrange(8)
        return data[:i] + bytes([data[i] ^ bit]) + data[i + 1 :]

    def drop(self, data: bytes) -> bytes:
        """``data`` with one byte removed."""
        if not data:
            return data
        with self._lock:
            i = self._shape.randrange(len(data))
        return data[:i] + data[i + 1 :]
