"""Driver for PalmSens EmStat Pico / EmStat4 potentiostats running MethodSCRIPT over a serial line.

A CV is one MethodSCRIPT (:func:`labloop.instruments.methodscript.cv_script`): ``e``, the script, a blank
line; the device answers ``e``, ``M....``, one ``P`` package per point, ``*`` and a blank line. The wire
format lives in :mod:`labloop.instruments.methodscript`; this module owns the conversation.

How the driver stays safe and honest on an unattended night:

- Limits first: every potential of a CV is checked against :class:`SafetyLimits` and every number must be
  writable as a script number *before* the first byte is sent.
- MethodSCRIPT has no checksum, so every package is checked against what the scan must produce: the
  variables ``da``, ``ba``, ``ba`` (the script sends the current twice, and both copies, metadata
  included, must agree); the applied potential within half a step of the scan's own waveform (a
  corrupted potential digit can therefore pass only below the scan's resolution); a known current range,
  and a current no larger than ``RANGE_TOLERANCE`` times that range; exactly as many points as the scan
  has. A package failing any check is a :class:`ProtocolError`.
- A failed CV (timeout or protocol error) is re-run after the device is brought back to idle (``Z``, then
  whatever the aborted script still prints). Re-running a CV is safe: it leaves the cell as it found it.
  Device errors (``!XXXX``), overloads and a vanished port are never retried.
- Overload: points whose status carries the overload bit are marked in :attr:`Voltammogram.overload`.
  With ``on_overload="raise"`` (the default, the :class:`Potentiostat` contract) :meth:`run_cv` then
  raises :class:`Overload`; with ``"mark"`` it returns the voltammogram and leaves the judgement to
  :func:`labloop.instruments.cv_analysis.analyze_cv`, which flags it.
- :meth:`abort` may be called from another thread while :meth:`run_cv` streams: it sends ``Z``, waits for
  the device to end the script (``on_finished:`` switches the cell off), and :meth:`run_cv` then raises
  :class:`DeviceError` with code ``"Z"``. Aborting an idle device is not an error (it answers ``Z!0006``).
- Every read has a deadline derived from the scan and the ``time_scale`` of the world the device lives in
  (1 for hardware, ``math.inf`` for a zero-latency emulator).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np

from labloop.instruments.contracts import SafetyLimits
from labloop.instruments.errors import (
    ConfigError,
    DeviceError,
    InstrumentError,
    InstrumentTimeout,
    Overload,
    ProtocolError,
)
from labloop.instruments.methodscript import (
    DEVICE_FAMILIES,
    LineKind,
    Status,
    as_written,
    classify,
    cv_script,
    parse_error,
    parse_package,
)
from labloop.instruments.transport import SerialTransport, Transport, check_link_options, retry
from labloop.instruments.voltammogram import CVParams, Voltammogram

log = logging.getLogger(__name__)

DEFAULT_BAUDRATE = 230400
#: a reading may exceed its current range's full scale by this factor before it is implausible [infer]
RANGE_TOLERANCE = 4.0
ERROR_MEANINGS = {
    0x0003: "command not recognised",
    0x0006: "not allowed now (e.g. abort with no script running)",
}


@dataclass(frozen=True)
class _Run:
    potential: list[float]
    current: list[float]
    overload: list[bool]
    aborted: bool


class EmStatPotentiostat:
    """One EmStat on its own serial line; satisfies :class:`labloop.instruments.contracts.Potentiostat`.

    Connecting brings the device to idle (``Z``) and reads its firmware (``t``). ``timeout_s`` is the
    deadline for a reply and, added to the point interval, for each line of a running CV; ``retries`` how
    often a failed exchange or CV is repeated; ``settle_s`` how long the line must be quiet before a
    retry; ``error_pause_s`` how long the device ignores commands after it reported an error (50-100 ms
    on hardware).
    """

    def __init__(
        self,
        transport: Transport,
        *,
        limits: SafetyLimits,
        time_scale: float = 1.0,
        timeout_s: float = 1.0,
        retries: int = 2,
        settle_s: float = 0.05,
        error_pause_s: float = 0.1,
        on_overload: Literal["raise", "mark"] = "raise",
        reference: str = "Ag/Ag+",
        owns_transport: bool = False,
    ) -> None:
        self.transport = transport
        check_link_options(self.where, timeout_s=timeout_s, retries=retries, settle_s=settle_s)
        if not (time_scale > 0 and error_pause_s >= 0):
            raise ConfigError(self.where, f"bad options {time_scale=} {error_pause_s=}")
        if on_overload not in ("raise", "mark"):
            raise ConfigError(self.where, f"on_overload must be 'raise' or 'mark', got {on_overload!r}")
        self.limits = limits
        self.time_scale = time_scale
        self.timeout_s = timeout_s
        self.retries = retries
        self.settle_s = settle_s
        self.error_pause_s = error_pause_s
        self.on_overload = on_overload
        self.reference = reference
        self.retried: Counter[str] = Counter()
        self._owns_transport = owns_transport
        self._io = threading.Lock()  # one conversation at a time
        self._state = threading.Lock()  # guards the three flags below, shared with abort()
        self._running = False
        self._abort_sent = False
        self._abort_requested = False
        self.current_ranges: dict[int, float] = {}
        self.firmware = self._connect()

    @classmethod
    def open(
        cls,
        url: str,
        *,
        limits: SafetyLimits,
        baudrate: int = DEFAULT_BAUDRATE,
        capture: str | Path | None = None,
        **options: Any,
    ) -> EmStatPotentiostat:
        """Open ``url`` at ``baudrate`` 8N1 (optionally capturing the wire); :meth:`close` closes it."""
        transport = SerialTransport(url, baudrate=baudrate, capture=capture)
        try:
            return cls(transport, limits=limits, owns_transport=True, **options)
        except BaseException:
            transport.close()
            raise

    @property
    def where(self) -> str:
        return f"EmStat on {self.transport.name}"

    # -- line I/O -------------------------------------------------------------------------------------------
    def _line(self, deadline_s: float) -> str:
        """One reply line without its newline; a non-ASCII byte is line noise (ProtocolError)."""
        try:
            raw = self.transport.read_until(b"\n", deadline_s)
        except InstrumentTimeout as exc:
            raise InstrumentTimeout(self.where, exc.what) from exc
        try:
            return raw[:-1].decode("ascii")
        except UnicodeDecodeError:
            raise ProtocolError(self.where, f"non-ASCII bytes in reply {raw!r}") from None

    def _device_error(self, line: str, doing: str) -> DeviceError:
        error = parse_error(line)
        assert error is not None  # only called for lines classified as errors
        time.sleep(self.error_pause_s)  # the device ignores commands for a while after an error
        meaning = ERROR_MEANINGS.get(error.code, "MethodSCRIPT error")
        detail = f" ({error.detail})" if error.detail else ""
        return DeviceError(self.where, error.text, f"{meaning}{detail} while {doing}")

    def _drain(self) -> None:
        """Wait for a quiet line (late replies, the rest of an aborted script); a line that never goes quiet
        within the reply deadline is this device's timeout."""
        try:
            self.transport.drain(self.settle_s, self.timeout_s)
        except InstrumentTimeout as exc:
            raise InstrumentTimeout(self.where, exc.what) from exc

    def _count_retry(self, exc: InstrumentError) -> None:
        self.retried[type(exc).__name__] += 1
        self._drain()

    # -- idle, identification -------------------------------------------------------------------------------
    def _connect(self) -> str:
        with self._io:
            retry(self._sync, attempts=self.retries + 1, before_retry=self._count_retry)
            firmware = retry(self._identify_once, attempts=self.retries + 1, before_retry=self._count_retry)
        log.info("%s: connected, firmware %s", self.where, firmware)
        return firmware

    def _sync(self) -> None:
        """Bring the device to idle: ``Z``; ``Z!0006`` means nothing ran, ``Z`` that a script ends now."""
        self.transport.reset_input()
        self.transport.write(b"Z\n")
        deadline = time.monotonic() + self.timeout_s
        while not (line := self._line(max(0.0, deadline - time.monotonic()))).startswith("Z"):
            log.debug("%s: discarding %r while waiting for the abort reply", self.where, line)
        if line == "Z!0006":
            time.sleep(self.error_pause_s)
            return
        if line != "Z":
            raise ProtocolError(self.where, f"unexpected reply {line!r} to Z")
        log.info("%s: a running script was aborted; waiting for its end", self.where)
        deadline = time.monotonic() + self.timeout_s * (self.retries + 2)
        while self._line(max(0.0, deadline - time.monotonic())) != "":
            pass

    def _identify_once(self) -> str:
        self.transport.reset_input()
        self.transport.write(b"t\n")
        first, second = self._line(self.timeout_s), self._line(self.timeout_s)
        if not (first.startswith("t") and second.endswith("*")):
            raise ProtocolError(self.where, f"reply {first!r} {second!r} to t is not a firmware version")
        firmware = f"{first[1:]} {second[:-1]}".strip()
        family = next((ranges for prefix, ranges in DEVICE_FAMILIES.items() if firmware.startswith(prefix)), None)
        if family is None:
            raise ProtocolError(self.where, f"firmware {firmware!r} is not an EmStat Pico or EmStat4")
        self.current_ranges = family
        return firmware

    def identify(self) -> str:
        """Read the firmware version again (``t``), e.g. ``espico1207#Oct 10 2023 10:00:00 R``."""
        with self._io:
            return retry(self._identify_once, attempts=self.retries + 1, before_retry=self._count_retry)

    # -- cyclic voltammetry ---------------------------------------------------------------------------------
    def run_cv(self, params: CVParams) -> Voltammogram:
        """Run one CV and return it (see the module docstring for overloads, retries and aborts)."""
        params = as_written(params, self.where)  # what the instrument will run, to the last rounded digit
        self.limits.check_potentials(params.e_begin_v, params.e_vertex1_v, params.e_vertex2_v, where=self.where)
        script = "\n".join(cv_script(params, where=self.where)) + "\n"
        time_s, expected = params.waveform()
        with self._state:
            self._abort_requested = False
        log.info("%s: CV %g -> %g -> %g V at %g V/s, %d points", self.where, params.e_begin_v,
                 params.e_vertex1_v, params.e_vertex2_v, params.scan_rate_v_s, params.n_points)
        run = retry(lambda: self._run_once(params, script, expected), attempts=self.retries + 1,
                    before_retry=self._recover)
        if run.aborted:
            raise DeviceError(self.where, "Z", f"CV aborted after {len(run.potential)} of {len(expected)} points")
        voltammogram = Voltammogram(potential_v=run.potential, current_a=run.current, time_s=time_s,
                                    params=params, reference=self.reference, overload=run.overload)
        if voltammogram.any_overload:
            n = int(voltammogram.overload.sum())
            if self.on_overload == "raise":
                raise Overload(self.where, f"current overload at {n} of {len(voltammogram)} points")
            log.warning("%s: current overload at %d of %d points (marked)", self.where, n, len(voltammogram))
        return voltammogram

    def _recover(self, exc: InstrumentError) -> None:
        """Before re-running a failed CV: count it, and bring the device back to idle if possible."""
        self.retried[type(exc).__name__] += 1
        log.info("%s: CV failed (%s); bringing the device to idle before the retry", self.where, exc.what)
        with self._io:
            try:
                self._sync()
            except (InstrumentTimeout, ProtocolError) as sync_exc:
                log.info("%s: %s while recovering", self.where, sync_exc.what)
                self._drain()

    def _run_once(self, params: CVParams, script: str, expected: np.ndarray) -> _Run:
        with self._io:
            with self._state:
                if self._abort_requested:
                    return _Run([], [], [], aborted=True)
                self._running, self._abort_sent = True, False
            try:
                self.transport.reset_input()
                self.transport.write(script.encode("ascii"))
                run = self._read_run(params, expected)
            finally:
                with self._state:
                    self._running = False
                    abort_sent = self._abort_sent
            if abort_sent and not run.aborted:  # the script ended before Z arrived: eat the Z!0006
                self._drain()
            return run

    def _read_run(self, params: CVParams, expected: np.ndarray) -> _Run:
        interval_s = params.time_step_s / self.time_scale
        deadline = time.monotonic() + 2 * self.timeout_s + 1.25 * params.duration_s / self.time_scale
        first = self._line(self.timeout_s)
        if classify(first) is LineKind.ERROR:
            raise self._device_error(first, "loading the CV script")
        if classify(first) is not LineKind.ACCEPTED:
            raise ProtocolError(self.where, f"expected 'e' for the CV script, got {first!r}")
        potential: list[float] = []
        current: list[float] = []
        overload: list[bool] = []
        loops, loop_ended, aborted = 0, False, False
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise InstrumentTimeout(self.where, f"CV not finished after {len(potential)} points")
            line = self._line(min(self.timeout_s + interval_s, remaining))
            kind = classify(line)
            if kind is LineKind.END:
                break
            if kind is LineKind.PACKAGE and loops == 1 and not loop_ended:
                e, i, over = self._point(line, len(potential), params, expected)
                potential.append(e)
                current.append(i)
                overload.append(over)
            elif kind is LineKind.LOOP_START and loops == 0:
                loops = 1
            elif kind is LineKind.LOOP_END and loops == 1:
                loop_ended = True
            elif kind is LineKind.ABORTED:
                aborted = True
            elif kind is LineKind.ERROR:
                self._drain()
                raise self._device_error(line, f"running the CV (after {len(potential)} points)")
            elif kind not in (LineKind.SCAN_START, LineKind.SCAN_END):
                raise ProtocolError(self.where, f"unexpected line {line!r} after {len(potential)} points")
        if not aborted and (len(potential) != len(expected) or not loop_ended):
            raise ProtocolError(self.where, f"CV ended with {len(potential)} of {len(expected)} points")
        return _Run(potential, current, overload, aborted)

    def _point(self, line: str, k: int, params: CVParams, expected: np.ndarray) -> tuple[float, float, bool]:
        """Check one package against the scan: (potential, current, overloaded)."""
        variables = parse_package(line)
        if variables is None or [v.type for v in variables] != ["da", "ba", "ba"]:
            raise ProtocolError(self.where, f"malformed data package {line!r}")
        if k >= len(expected):
            raise ProtocolError(self.where, f"more than the scan's {len(expected)} points")
        e, i, copy = variables
        if copy != i and not (math.isnan(i.value) and math.isnan(copy.value)):
            raise ProtocolError(self.where, f"the two copies of the current differ in {line!r}")
        if not abs(e.value - expected[k]) <= params.e_step_v / 2:
            raise ProtocolError(self.where, f"point {k} at {e.value!r} V, where the scan is at {expected[k]:.6g} V")
        full_scale = self.current_ranges.get(i.current_range) if i.current_range is not None else math.inf
        if full_scale is None:
            raise ProtocolError(self.where, f"unknown current range {i.current_range:#x} in {line!r}")
        if not abs(i.value) <= RANGE_TOLERANCE * full_scale:  # also refuses NaN
            raise ProtocolError(self.where, f"current {i.value!r} A of point {k} does not fit its range")
        if Status.TIMING_ERROR in i.status:
            log.warning("%s: timing error reported at point %d", self.where, k)
        return e.value, i.value, Status.OVERLOAD in i.status

    # -- abort, close ---------------------------------------------------------------------------------------
    def abort(self) -> None:
        """Abort a running CV (from any thread) and wait until the device has ended it; idle is fine."""
        with self._state:
            self._abort_requested = True
            running = self._running
            if running:
                self.transport.write(b"Z\n")
                self._abort_sent = True
        if running:
            log.info("%s: abort sent to the running CV", self.where)
            if not self._io.acquire(timeout=self.timeout_s * (self.retries + 3)):
                raise InstrumentTimeout(self.where, "the aborted CV did not end")
            self._io.release()
            return
        with self._io:
            retry(self._sync, attempts=self.retries + 1, before_retry=self._count_retry)

    def close(self) -> None:
        """Release the port (if this driver opened it); closing twice is not an error."""
        if self._owns_transport:
            self.transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
