"""Firmware emulator of the IO Rodeo Rodeostat, on labloop's pty framework and CV physics.

A plug-in's emulator is what makes its driver testable without the instrument and usable in
``labloop run --dry-run``: it plugs into :class:`labloop.sim.pty_device.PtyDevice` (``new_framer``,
``handle``, ``tick``), takes its time from a :class:`TimeScale`, and computes currents for whatever the
simulated cell holds (:func:`labloop.sim.emulation.cell_current`).

What it accepts (labloop's docs/protocols.md, "IO Rodeo Rodeostat"): JSON objects, one per line: ``getVariant``,
``getVersion``, ``getDeviceId``, ``getTestNames``, ``get/setVoltRange`` (1V 2V 5V 10V),
``get/setCurrRange`` (1uA 10uA 100uA 1000uA), ``get/setSamplePeriod`` (ms), ``getVolt``/``setVolt``,
``getCurr``, ``get/setParam`` and ``runTest`` for the ``cyclic`` test, ``stopTest``. Replies
``{"success": true, "message": "", "response": {"command": ..., ...}}``; ``runTest`` then streams
``{"t", "v", "i"}`` samples (ms, V, uA) at the pace of the scan and ends with ``{}``.

Choices where the sources are silent ([infer]): the variant is ``microAmpV0.1``, the version
``FW0.0.8``; only the ``cyclic`` test exists; the triangle's phase convention is
:mod:`labloop_rodeostat.cyclic`'s; ``quietTime`` holds ``quietValue`` without sending samples; a
refused request answers ``{"success": false, "message": <why>}`` (unknown command, malformed JSON or
parameters, a test that leaves the voltage range, any command but ``stopTest`` while a test runs);
``getCurr`` reads 0 uA (a quiescent cell); currents beyond the range are clipped at its full scale;
``stopTest`` during a test is answered, and ``{}`` follows. Reply-path faults strike replies to requests.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from labloop.core.errors import InvalidParameter
from labloop.core.seeds import stable_rng
from labloop.sim.cv_physics import CellParams
from labloop.sim.emulation import Emulation, EmulatorContext, cell_current
from labloop.sim.pty_device import Link, PtyDevice, TerminatorFramer, TimeScale

from labloop_rodeostat.cyclic import CURRENT_RANGES_UA, VOLT_RANGES_V, from_cyclic

log = logging.getLogger(__name__)

VARIANT, VERSION, DEVICE_ID = "microAmpV0.1", "FW0.0.8", 0
COMMANDS = ("getVariant", "getVersion", "getDeviceId", "getTestNames", "getVoltRange", "setVoltRange",
            "getCurrRange", "setCurrRange", "getSamplePeriod", "setSamplePeriod", "getVolt", "setVolt", "getCurr",
            "getParam", "setParam", "runTest", "stopTest")
CYCLIC_KEYS = ("quietValue", "quietTime", "amplitude", "offset", "period", "numCycles", "shift")


class _Refused(Exception):
    """A request the device answers with ``success: false`` and this message."""


class RodeostatEmulator:
    """A Rodeostat; ``contents()`` says what the cell holds when a test starts."""

    def __init__(self, contents: Callable[[], Sequence[CellParams]], *, time_scale: TimeScale | None = None,
                 seed: int = 0) -> None:
        self.contents = contents
        self.time_scale = time_scale or TimeScale.real_time()
        self.volt_range, self.curr_range, self.sample_ms, self.volt = "1V", "100uA", 10, 0.0
        self.cyclic: dict[str, Any] = {"quietValue": 0.0, "quietTime": 0, "amplitude": 0.5, "offset": 0.0,
                                       "period": 4000, "numCycles": 1, "shift": 0.0}
        self.tests_run = 0
        self.seed = seed
        self._runs: Counter[str] = Counter()  # tests of each (cell contents, scan) in this process
        self._stream: deque[tuple[float, bytes]] = deque()
        self._start = 0.0

    # -- PtyEmulator ----------------------------------------------------------------------------------------
    def new_framer(self) -> TerminatorFramer:
        return TerminatorFramer(b"\n")

    def handle(self, frame: bytes, link: Link) -> None:
        try:
            request = json.loads(frame)
            if not (isinstance(request, dict) and isinstance(request.get("command"), str)):
                raise _Refused("request must be an object with a command")
            command = request["command"]
            if self._stream and command != "stopTest":
                raise _Refused("test running")
            if command not in COMMANDS:
                raise _Refused(f"unknown command {command}")
            response = {"command": command, **getattr(self, f"_{command}")(request)}
        except ValueError:
            reply: dict[str, Any] = {"success": False, "message": "unable to parse json"}
        except _Refused as exc:
            reply = {"success": False, "message": str(exc)}
        else:
            reply = {"success": True, "message": "", "response": response}
        link.reply((json.dumps(reply) + "\n").encode("ascii"))
        self.tick(link)

    def tick(self, link: Link) -> None:
        wall = time.monotonic() - self._start
        elapsed = math.inf if self.time_scale.is_zero_latency else self.time_scale.device_seconds(wall)
        while self._stream and self._stream[0][0] <= elapsed:
            link.send(self._stream.popleft()[1])

    # -- commands, named as on the wire; each returns the response's fields besides "command" -------------
    def _getVariant(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"variant": VARIANT}

    def _getVersion(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"version": VERSION}

    def _getDeviceId(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"deviceId": DEVICE_ID}

    def _getTestNames(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"testNames": ["cyclic"]}

    def _getVoltRange(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"voltRange": self.volt_range}

    def _setVoltRange(self, request: dict[str, Any]) -> dict[str, Any]:
        self.volt_range = _choice(request, "voltRange", VOLT_RANGES_V)
        return self._getVoltRange(request)

    def _getCurrRange(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"currRange": self.curr_range}

    def _setCurrRange(self, request: dict[str, Any]) -> dict[str, Any]:
        self.curr_range = _choice(request, "currRange", CURRENT_RANGES_UA)
        return self._getCurrRange(request)

    def _getSamplePeriod(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"samplePeriod": self.sample_ms}

    def _setSamplePeriod(self, request: dict[str, Any]) -> dict[str, Any]:
        value = request.get("samplePeriod")
        if not (isinstance(value, int) and value >= 1):
            raise _Refused("samplePeriod must be a whole number of ms >= 1")
        self.sample_ms = value
        return self._getSamplePeriod(request)

    def _getVolt(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"v": self.volt}

    def _setVolt(self, request: dict[str, Any]) -> dict[str, Any]:
        value = request.get("v")
        if not (isinstance(value, int | float) and abs(value) <= VOLT_RANGES_V[self.volt_range]):
            raise _Refused(f"v must be a number within the {self.volt_range} range")
        self.volt = float(value)
        return self._getVolt(request)

    def _getCurr(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"i": 0.0}

    def _getParam(self, request: dict[str, Any]) -> dict[str, Any]:
        _test(request)
        return {"test": "cyclic", "param": dict(self.cyclic)}

    def _setParam(self, request: dict[str, Any]) -> dict[str, Any]:
        _test(request)
        param = request.get("param")
        if not (isinstance(param, dict) and set(param) == set(CYCLIC_KEYS)
                and all(isinstance(param[key], int | float) for key in CYCLIC_KEYS)):
            raise _Refused(f"param must hold the numbers {', '.join(CYCLIC_KEYS)}")
        whole = all(isinstance(param[key], int) for key in ("quietTime", "period", "numCycles"))
        if not (whole and param["amplitude"] > 0 and param["period"] > 0 and param["numCycles"] >= 1
                and param["quietTime"] >= 0 and 0 <= param["shift"] < 1):
            raise _Refused("amplitude, period, numCycles must be > 0, quietTime >= 0 (ms), 0 <= shift < 1")
        self.cyclic = dict(param)
        return {"test": "cyclic", "param": dict(param)}

    def _runTest(self, request: dict[str, Any]) -> dict[str, Any]:
        _test(request)
        reach = abs(self.cyclic["offset"]) + self.cyclic["amplitude"]
        if max(reach, abs(self.cyclic["quietValue"])) > VOLT_RANGES_V[self.volt_range]:
            raise _Refused(f"the test leaves the {self.volt_range} range")
        try:
            params = from_cyclic(self.cyclic, self.sample_ms)
        except InvalidParameter as exc:
            raise _Refused(f"cyclic parameters make no scan: {exc}") from None
        time_s, potential = params.waveform()
        full_scale = CURRENT_RANGES_UA[self.curr_range]
        contents = self.contents()
        current_ua = np.clip(1e6 * cell_current(contents, params, self._noise_rng(contents, params)),
                             -full_scale, full_scale)
        quiet_s = self.cyclic["quietTime"] / 1e3
        self._start = time.monotonic()
        for t, v, i in zip(time_s.tolist(), potential.tolist(), current_ua.tolist(), strict=True):
            sample = {"t": round(1e3 * t), "v": round(v, 6), "i": round(i, 6)}
            self._stream.append((quiet_s + t, (json.dumps(sample) + "\n").encode("ascii")))
        self._stream.append((quiet_s + params.duration_s, b"{}\n"))
        self.tests_run += 1
        return {"test": "cyclic"}

    def _noise_rng(self, contents: Sequence[CellParams], params: object) -> np.random.Generator:
        """The noise of one test, drawn per measurement as labloop's docs/drivers.md asks ("What an emulator must do
        to the simulated cell"): seeded by the emulator's seed, what is measured and how often this process
        measured it before, so a resumed dry run (a new emulator) measures what the uninterrupted one did. One
        generator seeded at start gave the resumed run's first test the noise of the first run's first test."""
        key = repr((tuple(contents), params))
        draw = self._runs[key]
        self._runs[key] += 1
        return stable_rng(self.seed, draw, key)

    def _stopTest(self, request: dict[str, Any]) -> dict[str, Any]:
        if self._stream:
            self._stream.clear()
            self._stream.append((-math.inf, b"{}\n"))
        return {}


def _test(request: dict[str, Any]) -> None:
    if request.get("test") != "cyclic":
        raise _Refused(f"unknown test {request.get('test')!r}")


def _choice(request: dict[str, Any], key: str, allowed: dict[str, float]) -> str:
    value = request.get(key)
    if value not in allowed:
        raise _Refused(f"{key} must be one of {', '.join(allowed)}")
    return value


def start_emulator(context: EmulatorContext, *, seed: int = 0) -> Emulation:
    """A Rodeostat emulator on its own pty, measuring the context's cell (registered under
    ``labloop.emulators`` as ``rodeostat``)."""
    emulator = RodeostatEmulator(context.contents, time_scale=context.time_scale, seed=seed)
    return Emulation.on_pty(PtyDevice(emulator, faults=context.injector("rodeostat"), name="rodeostat").start())
