"""Run a firmware emulator on the far side of a real pseudo-terminal.

The drivers are tested, and ``labloop run --dry-run`` works, against the same code path as real
hardware: pyserial opening a tty. A :class:`PtyDevice` opens a pty pair (``os.openpty``), puts it in raw
mode, and serves the master end from a thread; its :attr:`PtyDevice.port` (``/dev/pts/N``) is what a
driver or any serial terminal opens.

An emulator plugs in through the small :class:`PtyEmulator` protocol and never touches file descriptors:

- ``new_framer()`` returns a :class:`Framer` that splits the incoming byte stream into commands
  (:class:`TerminatorFramer` covers CR-terminated NE-1000 commands and ``\\n``-terminated MethodSCRIPT
  lines alike);
- ``handle(frame, link)`` executes one command and answers through ``link.reply(...)`` (one reply,
  with the reply-path faults applied) or ``link.send(...)`` (raw bytes, e.g. for a data stream);
- ``tick(link)`` is called at least every ``tick_s`` whether or not bytes arrived, which is where an
  emulator lets time pass (a pump advances its plunger, a potentiostat streams the data points that are
  due); it is called even while the port is unplugged, with a link whose sends go nowhere.

All three run on the device thread, one at a time, so an emulator needs no locking of its own except for
state that other threads read.

A line-based MethodSCRIPT emulator, for instance, takes ``TerminatorFramer(b"\\n")``, collects the script
lines between ``e`` and the blank line in ``handle``, starts the scan there, emits due ``P...`` packages
from ``tick`` with ``link.send``, and stops early when ``handle`` sees ``Z``.

:class:`TimeScale` is how every emulator converts wall time to device time: real time, accelerated by a
factor, or zero latency (operations complete at the next look).
"""

from __future__ import annotations

import logging
import math
import os
import queue
import select
import threading
import time
import tty
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, Self

from labloop.core.errors import said
from labloop.sim.faults import FaultInjector, FaultKind

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TimeScale:
    """Device seconds per wall-clock second: 1 is real time, >1 accelerated, ``inf`` zero latency."""

    factor: float = 1.0

    def __post_init__(self) -> None:
        if not self.factor > 0:
            raise ValueError(f"time scale factor must be > 0 (inf for zero latency), got {self.factor}")

    @classmethod
    def real_time(cls) -> TimeScale:
        return cls(1.0)

    @classmethod
    def accelerated(cls, factor: float) -> TimeScale:
        return cls(factor)

    @classmethod
    def zero_latency(cls) -> TimeScale:
        return cls(math.inf)

    @property
    def is_zero_latency(self) -> bool:
        return math.isinf(self.factor)

    def device_seconds(self, wall_s: float) -> float:
        """Device time that passes in ``wall_s`` (``inf`` for any positive wall time at zero latency)."""
        return wall_s * self.factor if wall_s > 0 else 0.0


class Framer(Protocol):
    """Splits a byte stream into commands."""

    def feed(self, data: bytes) -> list[bytes]:
        """Commands completed by ``data``; incomplete bytes stay buffered."""
        ...


class TerminatorFramer:
    """Commands end with ``terminator`` (not included in the frame). Keeps at most ``max_len`` bytes of an
    unterminated command, so line noise without a terminator cannot grow the buffer forever."""

    def __init__(self, terminator: bytes, *, max_len: int = 4096) -> None:
        self.terminator = terminator
        self.max_len = max_len
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        *frames, rest = bytes(self._buffer).split(self.terminator)
        if len(rest) > self.max_len:
            log.debug("framer dropped %d bytes of an unterminated command", len(rest) - self.max_len)
            rest = rest[-self.max_len :]
        self._buffer = bytearray(rest)
        return frames


class Link:
    """The device end of one pty session: what an emulator writes through."""

    def __init__(self, device: PtyDevice, fd: int | None) -> None:
        self._device = device
        self._fd = fd

    @property
    def connected(self) -> bool:
        return self._fd is not None

    @property
    def faults(self) -> FaultInjector | None:
        return self._device.faults

    def send(self, data: bytes) -> None:
        """Write ``data`` as is (no faults); nothing happens while unplugged."""
        if self._fd is None or not data:
            return
        log.debug("%s > %r", self._device.name, data)
        view = memoryview(data)
        while view and self._fd is not None:
            try:
                n = os.write(self._fd, view)
            except BlockingIOError:  # the driver is not reading; wait, but stay stoppable
                if self._device.stopping:
                    return
                select.select([], [self._fd], [], 0.05)
                continue
            except OSError as exc:
                log.info("%s: write failed (%s); hanging up", self._device.name, exc)
                self.hang_up()
                return
            view = view[n:]

    def reply(self, data: bytes) -> None:
        """Send one reply, through the reply-path faults of the device's injector."""
        injector = self.faults
        if injector is not None:
            if injector.decide(FaultKind.DISCONNECT):
                self.hang_up()
                return
            if injector.decide(FaultKind.NO_REPLY):
                return
            if injector.decide(FaultKind.SLOW):
                self._device.sleep(injector.plan.slow_s)
            if injector.decide(FaultKind.GARBLE):
                data = injector.garble(data)
            if injector.decide(FaultKind.DROP):
                data = injector.drop(data)
        self.send(data)

    def hang_up(self) -> None:
        """Close the pty, as if the cable were pulled: the driver's next read or write fails."""
        if self._fd is not None:
            self._fd = None
            self._device._close_session()


class PtyEmulator(Protocol):
    """What an emulator supplies to run on a :class:`PtyDevice` (see the module docstring)."""

    def new_framer(self) -> Framer: ...

    def handle(self, frame: bytes, link: Link) -> None: ...

    def tick(self, link: Link) -> None: ...


class PtyDevice:
    """A pty whose far end is served by ``emulator`` on a thread; a context manager.

    ``hang_up()`` simulates pulling the cable (and the DISCONNECT fault does the same); ``replug()`` opens
    a fresh pty for the same emulator (its state, e.g. pump counters, survives) and returns the new port.
    ``received`` holds every byte the device was sent, across sessions, for tests.
    """

    def __init__(
        self,
        emulator: PtyEmulator,
        *,
        faults: FaultInjector | None = None,
        name: str = "pty-device",
        tick_s: float = 0.01,
    ) -> None:
        self.emulator = emulator
        self.faults = faults
        self.name = name
        self.tick_s = tick_s
        # the exceptions the emulator raised (it keeps serving), each distinct one once, and how often each came,
        # by its ``said`` words: a bug in a tick would otherwise keep 100 tracebacks (and their frames) a second
        self.errors: list[BaseException] = []
        self.error_counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._received = bytearray()
        self._master: int | None = None
        self._slave: int | None = None
        self._port = ""
        self._link = Link(self, None)
        self._framer: Framer = emulator.new_framer()
        self._requests: queue.SimpleQueue[tuple[Callable[[], object], queue.SimpleQueue[object]]]
        self._requests = queue.SimpleQueue()
        self._wake_r = self._wake_w = -1  # self-pipe that wakes the device thread, made by start()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- public -----------------------------------------------------------------------------------------
    @property
    def port(self) -> str:
        """The ``/dev/pts/N`` path of the current session (what pyserial opens)."""
        if not self._port:
            raise RuntimeError(f"{self.name} is not started")
        return self._port

    @property
    def connected(self) -> bool:
        return self._link.connected

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def received(self) -> bytes:
        with self._lock:
            return bytes(self._received)

    def start(self) -> Self:
        if self._thread is None:
            self._stop.clear()
            self._wake_r, self._wake_w = os.pipe()
            self._open_session()
            self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
            self._thread.start()
            log.info("%s serving on %s", self.name, self._port)
        return self

    def stop(self) -> None:
        """Stop serving and close the pty; stopping twice is not an error."""
        self._stop.set()
        if self._thread is not None:
            os.write(self._wake_w, b"x")
            self._thread.join(timeout=5)
            self._thread = None
            os.close(self._wake_r)
            os.close(self._wake_w)
        self._close_session()

    def hang_up(self) -> None:
        """Pull the cable: close the current pty (on the device thread)."""
        self._call(lambda: self._link.hang_up())

    def replug(self) -> str:
        """Plug a fresh pty in (closing any current one) and return its port."""

        def reopen() -> str:
            self._link.hang_up()
            self._open_session()
            return self._port

        port = self._call(reopen)
        assert isinstance(port, str)
        log.info("%s replugged on %s", self.name, port)
        return port

    def sleep(self, seconds: float) -> None:
        """Sleep on the device thread, waking early if the device stops."""
        self._stop.wait(seconds)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- device thread ----------------------------------------------------------------------------------
    def _call(self, fn: Callable[[], object]) -> object:
        """Run ``fn`` on the device thread (which owns the file descriptors) and return its result."""
        if self._thread is None:
            raise RuntimeError(f"{self.name} is not started")
        done: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._requests.put((fn, done))
        os.write(self._wake_w, b"x")
        return done.get(timeout=5)

    def _open_session(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no CR/LF translation, before anyone opens the slave
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self._port = os.ttyname(slave)  # the slave stays open here so the pty survives driver reopens
        self._link = Link(self, master)
        self._framer = self.emulator.new_framer()

    def _close_session(self) -> None:
        self._link._fd = None  # an emulator may still hold this link: make it dead, not dangling
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        if self._master is not None:
            log.info("%s hung up %s", self.name, self._port)
        self._master = self._slave = None
        self._link = Link(self, None)

    def _serve(self) -> None:
        next_tick = time.monotonic()
        while not self._stop.is_set():
            watch = [self._wake_r] if self._master is None else [self._wake_r, self._master]
            ready, _, _ = select.select(watch, [], [], max(0.0, next_tick - time.monotonic()))
            if self._wake_r in ready:
                os.read(self._wake_r, 4096)
                self._run_requests()
            if self._master is not None and self._master in ready:
                self._receive(self._master)
            if time.monotonic() >= next_tick:
                self._guarded(self.emulator.tick, self._link)
                next_tick = time.monotonic() + self.tick_s

    def _run_requests(self) -> None:
        while True:
            try:
                fn, done = self._requests.get_nowait()
            except queue.Empty:
                return
            done.put(fn())

    def _receive(self, fd: int) -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            log.info("%s: read failed (%s); hanging up", self.name, exc)
            self._link.hang_up()
            return
        log.debug("%s < %r", self.name, data)
        with self._lock:
            self._received += data
        for frame in self._framer.feed(data):
            self._guarded(self.emulator.handle, frame, self._link)

    def _guarded(self, fn: Callable[..., None], *args: object) -> None:
        """Run emulator code; a bug there is logged and recorded instead of killing the device thread. Each
        distinct error is said once, in one line (its traceback with -v): a plug-in emulator's bug printed a
        traceback per command, 97 in a second from its ``tick`` (a plug-in author's trial)."""
        try:
            fn(*args)
        except Exception as exc:
            key = said(exc)
            self.error_counts[key] += 1
            if self.error_counts[key] == 1:
                self.errors.append(exc)
                log.error("%s: its emulator raised %s: a bug in the emulator, which keeps serving (said once; its "
                          "traceback with -v)", self.name, key)
                log.info("the traceback of %s's emulator", self.name, exc_info=exc)
