"""labloop driver for the IO Rodeo Rodeostat potentiostat: JSON lines over USB serial at 115200 baud.

Written as a third party writes a labloop driver: it uses only labloop's public pieces, the
:class:`SerialTransport` (deadlines, byte logging, captures), the typed errors, the
:class:`SafetyLimits`, :class:`CVParams`/:class:`Voltammogram`, and satisfies the
:class:`labloop.instruments.contracts.Potentiostat` contract.

Protocol (labloop's docs/protocols.md, "IO Rodeo Rodeostat"): one JSON object per line each way. A request is
``{"command": ..., ["test": ...,] ...}``; the reply ``{"success": true, "message": ..., "response":
{"command": ..., ["test": ...,] ...}}`` must echo the command (and test). ``runTest`` streams
``{"t": ms, "v": V, "i": uA}`` samples and ends with ``{}``; ``stopTest`` ends a running test.

- A CV becomes the ``cyclic`` test (:mod:`labloop_rodeostat.cyclic`), with the smallest voltage range
  holding the scan and the current range asked for (``CVParams.current_range_a``; 1000 uA when None,
  since the Rodeostat does not autorange). Everything is checked before the first byte is sent.
- Settings are idempotent and retried after a timeout or a garbled reply; a failed test is stopped
  (``stopTest``) and run again. Every sample must carry the expected time and, within half a step, the
  expected potential.
- The Rodeostat has no overload flag: a current at the range's full scale is taken as clipped and marked
  as an overload; ``on_overload`` decides whether :meth:`run_cv` raises :class:`Overload` (the default)
  or returns the marked voltammogram.
- :meth:`abort` may be called from another thread during :meth:`run_cv`, which then raises
  :class:`DeviceError` with code ``"stopTest"``; aborting when idle is not an error.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
from labloop.core.errors import ConfigError, DeviceError, InstrumentError, InstrumentTimeout, Overload, ProtocolError
from labloop.instruments.contracts import SafetyLimits
from labloop.instruments.transport import SerialTransport, Transport, check_link_options, retry
from labloop.instruments.voltammogram import UNNAMED_REFERENCE, CVParams, Voltammogram

from labloop_rodeostat.cyclic import CURRENT_RANGES_UA, VOLT_RANGES_V, smallest_range, to_cyclic

log = logging.getLogger(__name__)

DEFAULT_BAUDRATE = 115200
CLIPPED = 0.999  # a current at this share of the range's full scale is taken as clipped


@dataclass(frozen=True)
class _Run:
    time_ms: list[float]
    potential: list[float]
    current_ua: list[float]
    aborted: bool


def option_problem(name: str, value: object) -> str | None:
    """Why ``value`` cannot be the option ``name`` of this driver (``on_overload``), or None: the one check of it,
    made by :class:`RodeostatPotentiostat` when it opens and by labloop when it reads a campaign (the descriptor's
    ``option_problem``), so plain ``labloop validate``, which opens no port, refuses what ``open`` would. The link's
    own options (``timeout_s``, ``retries``, ``settle_s``, ``baudrate``, ``capture``) and, as for every
    potentiostat, ``reference`` labloop checks itself."""
    if name == "on_overload" and value not in ("raise", "mark"):
        return f"must be 'raise' or 'mark', got {value!r}"
    return None


class RodeostatPotentiostat:
    """One Rodeostat on its own serial line; satisfies labloop's ``Potentiostat`` contract.

    ``time_scale`` is device seconds per wall second (1 for hardware, ``math.inf`` for a zero-latency
    emulator); ``timeout_s`` the deadline for a reply and, added to the sample period, for each sample.
    """

    def __init__(self, transport: Transport, *, limits: SafetyLimits, time_scale: float = 1.0,
                 timeout_s: float = 1.0, retries: int = 2, settle_s: float = 0.05,
                 on_overload: Literal["raise", "mark"] = "raise", reference: str = UNNAMED_REFERENCE,
                 owns_transport: bool = False) -> None:
        self.transport = transport
        check_link_options(self.where, timeout_s=timeout_s, retries=retries, settle_s=settle_s)  # finite waits
        if not time_scale > 0:
            raise ConfigError(self.where, f"time_scale must be > 0, got {time_scale!r}")
        if (problem := option_problem("on_overload", on_overload)) is not None:
            raise ConfigError(self.where, f"on_overload {problem}")
        self.limits = limits
        self.time_scale = time_scale
        self.timeout_s = timeout_s
        self.retries = retries
        self.settle_s = settle_s
        self.on_overload = on_overload
        self.reference = reference
        self.retried: Counter[str] = Counter()
        self._owns_transport = owns_transport
        self._io = threading.Lock()
        self._state = threading.Lock()  # guards the flags below, shared with abort()
        self._running = False
        self._abort_requested = False
        variant = self._request({"command": "getVariant"}, "variant")
        self.firmware = f"{variant} {self._request({'command': 'getVersion'}, 'version')}"
        log.info("%s: connected, %s", self.where, self.firmware)

    @classmethod
    def open(cls, url: str, *, limits: SafetyLimits, baudrate: int = DEFAULT_BAUDRATE,
             capture: str | Path | None = None, **options: Any) -> RodeostatPotentiostat:
        """Open ``url`` (8N1) and connect; :meth:`close` closes the port."""
        transport = SerialTransport(url, baudrate=baudrate, capture=capture)
        try:
            return cls(transport, limits=limits, owns_transport=True, **options)
        except BaseException:
            transport.close()
            raise

    @property
    def where(self) -> str:
        return f"Rodeostat on {self.transport.name}"

    # -- JSON lines ---------------------------------------------------------------------------------------
    def _read_json(self, deadline_s: float) -> Any:
        try:
            raw = self.transport.read_until(b"\n", deadline_s)
        except InstrumentTimeout as exc:
            raise InstrumentTimeout(self.where, exc.what) from exc
        try:
            return json.loads(raw)
        except ValueError:
            raise ProtocolError(self.where, f"not a JSON line: {raw!r}") from None

    def _checked(self, reply: Any, request: dict[str, Any]) -> dict[str, Any]:
        """The ``response`` of a successful reply that echoes ``request``'s command and test."""
        if not isinstance(reply, dict) or not isinstance(reply.get("success"), bool):
            raise ProtocolError(self.where, f"reply {reply!r} to {request['command']} has no success flag")
        if not reply["success"]:
            raise DeviceError(self.where, request["command"], str(reply.get("message", "no message")))
        response = reply.get("response")
        echoed = isinstance(response, dict) and response.get("command") == request["command"] and (
            "test" not in request or response.get("test") == request["test"])
        if not echoed:
            raise ProtocolError(self.where, f"reply {reply!r} does not echo {request['command']}")
        return response

    def _request(self, request: dict[str, Any], key: str | None = None) -> Any:
        """Send ``request`` (retried: every request but runTest is safe to repeat); the response or its key."""

        def once() -> Any:
            self.transport.reset_input()
            self.transport.write((json.dumps(request) + "\n").encode("ascii"))
            response = self._checked(self._read_json(self.timeout_s), request)
            if key is not None and key not in response:
                raise ProtocolError(self.where, f"response {response!r} has no {key!r}")
            return response if key is None else response[key]

        with self._io:
            return retry(once, attempts=self.retries + 1, before_retry=self._count_retry)

    def _count_retry(self, exc: InstrumentError) -> None:
        self.retried[type(exc).__name__] += 1
        self.transport.drain(self.settle_s, self.timeout_s)

    # -- cyclic voltammetry -------------------------------------------------------------------------------
    def run_cv(self, params: CVParams) -> Voltammogram:
        """Run one CV as the ``cyclic`` test and return it."""
        self.limits.check_potentials(params.e_begin_v, params.e_vertex1_v, params.e_vertex2_v, where=self.where)
        cyclic, sample_ms = to_cyclic(params, self.where)
        reach = max(abs(params.e_vertex1_v), abs(params.e_vertex2_v))
        volt_range = smallest_range(VOLT_RANGES_V, reach, "voltage", self.where)
        current_ua = 1e6 * params.current_range_a if params.current_range_a is not None else 1000.0
        curr_range = smallest_range(CURRENT_RANGES_UA, current_ua, "current", self.where)
        with self._state:
            self._abort_requested = False
        for request in ({"command": "setVoltRange", "voltRange": volt_range},
                        {"command": "setCurrRange", "currRange": curr_range},
                        {"command": "setSamplePeriod", "samplePeriod": sample_ms},
                        {"command": "setParam", "test": "cyclic", "param": cyclic}):
            self._request(request)
        _, expected = params.waveform()
        run = retry(lambda: self._run_once(params, sample_ms, expected), attempts=self.retries + 1,
                    before_retry=self._recover)
        if run.aborted:
            raise DeviceError(self.where, "stopTest", f"CV aborted after {len(run.potential)} samples")
        full_scale = CURRENT_RANGES_UA[curr_range]
        current = np.array(run.current_ua)
        voltammogram = Voltammogram(potential_v=run.potential, current_a=1e-6 * current,
                                    time_s=np.array(run.time_ms) / 1e3, params=params, reference=self.reference,
                                    overload=np.abs(current) >= CLIPPED * full_scale)
        if voltammogram.any_overload and self.on_overload == "raise":
            n = int(voltammogram.overload.sum())
            raise Overload(self.where, f"current at the {curr_range} range's full scale at {n} samples")
        return voltammogram

    def _recover(self, exc: InstrumentError) -> None:
        self.retried[type(exc).__name__] += 1
        log.info("%s: test failed (%s); stopping it before the retry", self.where, exc.what)
        try:
            self._request({"command": "stopTest"})
        except (InstrumentTimeout, ProtocolError):
            self.transport.drain(self.settle_s, self.timeout_s)

    def _run_once(self, params: CVParams, sample_ms: int, expected: np.ndarray) -> _Run:
        request = {"command": "runTest", "test": "cyclic"}
        with self._io:
            with self._state:
                if self._abort_requested:
                    return _Run([], [], [], aborted=True)
                self._running = True
            try:
                self.transport.reset_input()
                self.transport.write((json.dumps(request) + "\n").encode("ascii"))
                self._checked(self._read_json(self.timeout_s), request)
                return self._samples(params, sample_ms, expected)
            finally:
                with self._state:
                    self._running = False

    def _samples(self, params: CVParams, sample_ms: int, expected: np.ndarray) -> _Run:
        line_s = self.timeout_s + sample_ms / 1e3 / self.time_scale
        deadline = time.monotonic() + 2 * self.timeout_s + 1.25 * params.duration_s / self.time_scale
        run = _Run([], [], [], aborted=False)
        while (sample := self._read_json(min(line_s, max(0.0, deadline - time.monotonic())))) != {}:
            if isinstance(sample, dict) and "success" in sample:  # the reply to an abort's stopTest
                self._checked(sample, {"command": "stopTest"})
                run = _Run(run.time_ms, run.potential, run.current_ua, aborted=True)
                continue
            k = len(run.potential)
            if not (isinstance(sample, dict) and sample.keys() == {"t", "v", "i"}
                    and all(isinstance(sample[key], int | float) for key in "tvi")):
                raise ProtocolError(self.where, f"sample {k} is not a {{t, v, i}} object: {sample!r}")
            if k >= len(expected) or sample["t"] != k * sample_ms:
                raise ProtocolError(self.where, f"sample {k} at t={sample['t']!r} ms is not the scan's")
            if not abs(sample["v"] - expected[k]) <= params.e_step_v / 2:
                raise ProtocolError(self.where, f"sample {k} at {sample['v']!r} V, the scan is at {expected[k]:.6g}")
            run.time_ms.append(sample["t"])
            run.potential.append(sample["v"])
            run.current_ua.append(sample["i"])
        if not run.aborted and len(run.potential) != len(expected):
            raise ProtocolError(self.where, f"test ended with {len(run.potential)} of {len(expected)} samples")
        return run

    # -- abort, close -------------------------------------------------------------------------------------
    def abort(self) -> None:
        """Stop a running test (from any thread) and wait until it has ended; idle is fine."""
        with self._state:
            self._abort_requested = True
            running = self._running
            if running:
                self.transport.write(b'{"command": "stopTest"}\n')
        if not running:
            self._request({"command": "stopTest"})
            return
        if not self._io.acquire(timeout=self.timeout_s * (self.retries + 3)):
            raise InstrumentTimeout(self.where, "the stopped test did not end")
        self._io.release()

    def close(self) -> None:
        """Release the port (if this driver opened it); closing twice is not an error."""
        if self._owns_transport:
            self.transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
