"""Driver for PalmSens EmStat Pico / EmStat4 potentiostats running MethodSCRIPT over a serial line.

A CV is one MethodSCRIPT (:func:`labloop.instruments.methodscript.cv_script`): ``e``, the script, a blank
line; the device answers ``e``, ``M....``, one ``P`` package per point, ``*`` and a blank line. An impedance
sweep (:meth:`EmStatPotentiostat.run_eis`, :func:`labloop.instruments.methodscript.eis_script`) is the same
conversation with one ``dc;cc;cd`` package (frequency, Z', Z'') per frequency, each checked against the
requested log grid. The wire format lives in :mod:`labloop.instruments.methodscript`; this module owns the
conversation. A CV may ask for on-device iR compensation (``CVParams.ir_comp_ohm``, see :meth:`run_cv`).

How the driver stays safe and honest on an unattended night:

- Limits first: every potential of a CV is checked against :class:`SafetyLimits` and every number must be
  writable as a script number *before* the first byte is sent.
- MethodSCRIPT has no checksum, so every package is checked against what the scan must produce: the
  variables ``da``, ``ba``, ``ba`` (the script sends the current twice, and both copies, metadata
  included, must agree); the applied potential within half a step of the scan's own waveform (a
  corrupted potential digit can therefore pass only below the scan's resolution); a known current range,
  and a current no larger than ``RANGE_SLIP_FACTOR`` times that range (instruments/voltammogram.py); exactly as
  many points as the scan has. A package failing any check is a :class:`ProtocolError`.
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np

from labloop.core.errors import (
    ConfigError,
    DeviceError,
    InstrumentError,
    InstrumentTimeout,
    Overload,
    ProtocolError,
    SafetyLimitExceeded,
)
from labloop.core.numeric import finite_number
from labloop.instruments.contracts import SafetyLimits
from labloop.instruments.impedance import EISParams, ImpedanceSpectrum, eis_point_seconds
from labloop.instruments.methodscript import (
    DEVICE_FAMILIES,
    DEVICE_POTENTIAL_RANGES_V,
    LineKind,
    Status,
    as_written,
    classify,
    cv_series_script,
    eis_as_written,
    eis_script,
    parse_error,
    parse_package,
)
from labloop.instruments.transport import SerialTransport, Transport, check_link_options, retry
from labloop.instruments.voltammogram import (
    RANGE_SLIP_FACTOR,
    UNNAMED_REFERENCE,
    CVParams,
    Voltammogram,
    reference_problem,
)

log = logging.getLogger(__name__)

DEFAULT_BAUDRATE = 230400
#: the baud rates of an EmStat: the Pico's (the default) and the EmStat4's (docs/protocols.md)
BAUDRATES = (DEFAULT_BAUDRATE, 921600)
#: what an EmStat that does not answer its first command (``Z``) is most likely set to (docs/hardware.md, "Before
#: the first run, at the instruments"): an EmStat4 at the Pico's default baud rate reads as line noise
LINK_ADVICE = ("is the EmStat on and cabled to this port, and is the line at its baud rate (option `baudrate`: "
               f"{DEFAULT_BAUDRATE} for an EmStat Pico, the default; 921600 for an EmStat4)?")
#: a package's frequency may differ from the requested log grid by this fraction (the synthesiser's
#: resolution) [infer]
EIS_FREQUENCY_TOLERANCE = 0.01
#: the error code of a statement the firmware does not know (here: ``set_ir_comp``)
IR_COMP_UNKNOWN = 0x4001
ERROR_MEANINGS = {
    0x0003: "command not recognised",
    0x0006: "not allowed now (e.g. abort with no script running)",
}


#: checks package ``k`` of a loop (its line) and returns its values in ``pck_add`` order and the overload bit
PointReader = Callable[[str, int], tuple[tuple[float, ...], bool]]


@dataclass(frozen=True)
class _Run:
    """What one script measured, per measurement loop: the values of every package (in ``pck_add`` order),
    overloads; and whether it was aborted."""

    values: list[list[tuple[float, ...]]]
    overload: list[list[bool]]
    aborted: bool


#: what ``on_overload`` may be: raise an :class:`labloop.core.errors.Overload`, or mark the points and go on
ON_OVERLOAD = ("raise", "mark")


def option_problem(name: str, value: object) -> str | None:
    """Why ``value`` cannot be the potentiostat's option ``name`` (``error_pause_s``, ``on_overload``, ``reference``,
    ``baudrate``), or None: the one check of these values, made by :class:`EmStatPotentiostat` when it opens and by
    the campaign when it is read (the descriptor's ``option_problem``). Why: a ``reference: 5`` passed ``validate``
    and was refused by ``run`` once the pumps had been talked to, and ``error_pause_s: x`` as a Python comparison
    error (an adversarial trial).
    """
    if name == "error_pause_s":
        return None if finite_number(value) and value >= 0 else (  # type: ignore[operator]
            f"must be a number of s >= 0, got {value!r}")
    if name == "on_overload":
        return None if value in ON_OVERLOAD else f"must be one of {', '.join(ON_OVERLOAD)}, got {value!r}"
    if name == "reference":
        return reference_problem(value)
    if name == "baudrate" and value not in BAUDRATES:  # 115200 passed validate, and a rehearsal on a pty cannot tell
        return f"must be an EmStat's baud rate, {' or '.join(map(str, BAUDRATES))}, got {value!r}"
    return None


class EmStatPotentiostat:
    """One EmStat on its own serial line; satisfies :class:`labloop.instruments.contracts.Potentiostat`.

    Connecting brings the device to idle (``Z``) and reads its firmware (``t``). ``timeout_s`` is the
    deadline for a reply and, added to the point interval, for each line of a running CV; ``retries`` how
    often a failed exchange or CV is repeated; ``settle_s`` how long the line must be quiet before a
    retry; ``error_pause_s`` how long the device ignores commands after it reported an error (50-100 ms
    on hardware). ``reference`` names the cell's reference electrode, the label of every potential measured;
    left out, they are labelled :data:`UNNAMED_REFERENCE` (the driver cannot know the electrode, and a default
    name put "Ag/Ag+" on an Ag/AgCl lab's data).
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
        reference: str = UNNAMED_REFERENCE,
        owns_transport: bool = False,
    ) -> None:
        self.transport = transport
        check_link_options(self.where, timeout_s=timeout_s, retries=retries, settle_s=settle_s)
        for name, value in (("error_pause_s", error_pause_s), ("on_overload", on_overload),
                            ("reference", reference)):
            if (problem := option_problem(name, value)) is not None:
                raise ConfigError(self.where, f"{name} {problem}")
        if not time_scale > 0:
            raise ConfigError(self.where, f"bad option {time_scale=}")
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
        #: what the connected model can apply (V vs its reference), None where unknown
        self.potential_range_v: tuple[float, float] | None = None
        #: False once the firmware refused ``set_ir_comp``; CVs then run uncompensated
        self.ir_compensation_supported = True
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
            try:
                retry(self._sync, attempts=self.retries + 1, before_retry=self._count_retry)
            except (InstrumentTimeout, ProtocolError) as exc:  # the first exchange: most likely the link's setting
                raise type(exc)(exc.where, f"{exc.what}; {LINK_ADVICE}") from exc
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
        self.potential_range_v = next((limits for prefix, limits in DEVICE_POTENTIAL_RANGES_V.items()
                                       if firmware.startswith(prefix)), None)
        return firmware

    def identify(self) -> str:
        """Read the firmware version again (``t``), e.g. ``espico1207#Oct 10 2023 10:00:00 R``."""
        with self._io:
            return retry(self._identify_once, attempts=self.retries + 1, before_retry=self._count_retry)

    # -- cyclic voltammetry ---------------------------------------------------------------------------------
    def run_cv(self, params: CVParams) -> Voltammogram:
        """Run one CV and return it (see the module docstring for overloads, retries and aborts).

        ``params.ir_comp_ohm > 0`` asks for on-device iR compensation; a firmware that does not know the
        statement (``!4001`` at that line) is remembered (:attr:`ir_compensation_supported`) and the CV runs
        uncompensated: the returned voltammogram's ``params.ir_comp_ohm`` is then 0, so the analysis
        corrects the whole ohmic drop.
        """
        return self.run_cv_series([params])[0]

    def run_cv_series(self, series: Sequence[CVParams]) -> list[Voltammogram]:
        """Run several CVs (e.g. one per scan rate) in one script, the cell on throughout, and return them
        in order; all of them are checked against the limits before the script is sent. They must share
        the current range and the iR compensation. Retries re-run the whole series; iR compensation,
        aborts and overloads are handled as in :meth:`run_cv`."""
        series = [as_written(params, self.where) for params in series]  # what the instrument will run
        for params in series:
            self._check_potentials(params.e_begin_v, params.e_vertex1_v, params.e_vertex2_v)
        if not self.ir_compensation_supported:
            series = [replace(params, ir_comp_ohm=0.0) for params in series]
        script = cv_series_script(series, where=self.where)  # refuses a mixed series before anything is sent
        waveforms = [params.waveform() for params in series]
        with self._state:
            self._abort_requested = False
        for params in series:
            log.info("%s: CV %g -> %g -> %g V at %g V/s, %d points, iR compensation %g ohm", self.where,
                     params.e_begin_v, params.e_vertex1_v, params.e_vertex2_v, params.scan_rate_v_s,
                     params.n_points, params.ir_comp_ohm)
        loops = [(len(expected), partial(self._point, params=params, expected=expected))
                 for params, (_, expected) in zip(series, waveforms, strict=True)]
        try:
            run = self._run_script(script, "CV", sum(p.duration_s for p in series),
                                   max(p.time_step_s for p in series), loops)
        except DeviceError as exc:
            if not (series[0].ir_comp_ohm > 0 and exc.code == f"!{IR_COMP_UNKNOWN:04X}"):
                raise
            log.warning("%s: the firmware has no iR compensation; the CV runs uncompensated", self.where)
            self.ir_compensation_supported = False
            return self.run_cv_series(series)
        if run.aborted:
            done = sum(len(values) for values in run.values)
            raise DeviceError(self.where, "Z", f"CV aborted after {done} of {sum(n for n, _ in loops)} points")
        voltammograms = []
        for params, (time_s, _), values, overload in zip(series, waveforms, run.values, run.overload, strict=True):
            voltammogram = Voltammogram(potential_v=[v[0] for v in values], current_a=[v[1] for v in values],
                                        time_s=time_s, params=params, reference=self.reference, overload=overload)
            if voltammogram.any_overload:
                n = int(voltammogram.overload.sum())
                if self.on_overload == "raise":
                    raise Overload(self.where, f"current overload at {n} of {len(voltammogram)} points")
                log.warning("%s: current overload at %d of %d points (marked)", self.where, n, len(voltammogram))
            voltammograms.append(voltammogram)
        return voltammograms

    def _check_potentials(self, *potentials_v: float) -> None:
        """Refuse, before anything is sent, a potential outside the safety window or outside what the
        connected model can apply: the firmware would only answer with a bare MethodSCRIPT error code."""
        self.limits.check_potentials(*potentials_v, where=self.where)
        if self.potential_range_v is not None:
            low, high = self.potential_range_v
            for e in potentials_v:
                if not low <= e <= high:
                    raise SafetyLimitExceeded(self.where, f"potential {e:g} V is outside the range this model can "
                                                          f"apply, {low:g}..{high:g} V vs its reference (firmware "
                                                          f"{self.firmware.split('#')[0]})")

    # -- impedance ------------------------------------------------------------------------------------------
    def run_eis(self, params: EISParams) -> ImpedanceSpectrum:
        """Run one impedance sweep (``meas_loop_eis``) and return the spectrum; the DC potential is checked
        against the safety window first. Retries, aborts and overload handling are those of :meth:`run_cv`."""
        params = eis_as_written(params, self.where)
        self._check_potentials(params.e_dc_v - params.amplitude_v, params.e_dc_v + params.amplitude_v)
        expected = params.frequencies()
        with self._state:
            self._abort_requested = False
        log.info("%s: EIS %g -> %g Hz, %d points, %g V AC at %g V DC", self.where, params.f_high_hz,
                 params.f_low_hz, params.points, params.amplitude_v, params.e_dc_v)
        duration = sum(eis_point_seconds(f) for f in expected)
        run = self._run_script(eis_script(params, where=self.where), "EIS", duration,
                               eis_point_seconds(params.f_low_hz),
                               [(len(expected), partial(self._eis_point, expected=expected))])
        values = run.values[0] if run.values else []
        if run.aborted:
            raise DeviceError(self.where, "Z", f"EIS aborted after {len(values)} of {len(expected)} points")
        spectrum = ImpedanceSpectrum(frequency_hz=[v[0] for v in values], z_real_ohm=[v[1] for v in values],
                                     z_imag_ohm=[v[2] for v in values], params=params, overload=run.overload[0])
        if spectrum.overload.any():
            n = int(spectrum.overload.sum())
            if self.on_overload == "raise":
                raise Overload(self.where, f"overload at {n} of {len(spectrum)} frequencies")
            log.warning("%s: overload at %d of %d frequencies (marked)", self.where, n, len(spectrum))
        return spectrum

    def _eis_point(self, line: str, k: int, expected: np.ndarray) -> tuple[tuple[float, ...], bool]:
        """Check one impedance package (frequency, Z', Z''): ((f, Z', Z''), overloaded)."""
        variables = parse_package(line)
        if variables is None or [v.type for v in variables] != ["dc", "cc", "cd"]:
            raise ProtocolError(self.where, f"malformed impedance package {line!r}")
        if k >= len(expected):
            raise ProtocolError(self.where, f"more than the sweep's {len(expected)} frequencies")
        f, z_real, z_imag = variables
        if not abs(f.value / expected[k] - 1) <= EIS_FREQUENCY_TOLERANCE:
            raise ProtocolError(self.where, f"point {k} at {f.value!r} Hz, where the sweep is at {expected[k]:.6g} Hz")
        if not (math.isfinite(z_real.value) and math.isfinite(z_imag.value)):
            raise ProtocolError(self.where, f"impedance of point {k} is not a number in {line!r}")
        overloaded = any(Status.OVERLOAD in v.status for v in variables)
        return (f.value, z_real.value, z_imag.value), overloaded

    # -- one script -----------------------------------------------------------------------------------------
    def _run_script(self, lines: list[str], what: str, duration_s: float, interval_s: float,
                    loops: list[tuple[int, PointReader]]) -> _Run:
        """Send a script with one measurement loop per entry of ``loops`` and collect each loop's
        ``n_points`` packages through its reader, re-running the script after a timeout or protocol error
        (see the module docstring)."""
        script = "\n".join(lines) + "\n"
        return retry(lambda: self._run_once(script, what, duration_s, interval_s, loops),
                     attempts=self.retries + 1, before_retry=self._recover)

    def _recover(self, exc: InstrumentError) -> None:
        """Before re-running a failed script: count it, and bring the device back to idle if possible."""
        self.retried[type(exc).__name__] += 1
        log.info("%s: measurement failed (%s); bringing the device to idle before the retry", self.where, exc.what)
        with self._io:
            try:
                self._sync()
            except (InstrumentTimeout, ProtocolError) as sync_exc:
                log.info("%s: %s while recovering", self.where, sync_exc.what)
                self._drain()

    def _run_once(self, script: str, what: str, duration_s: float, interval_s: float,
                  loops: list[tuple[int, PointReader]]) -> _Run:
        with self._io:
            with self._state:
                if self._abort_requested:
                    return _Run([], [], aborted=True)
                self._running, self._abort_sent = True, False
            try:
                self.transport.reset_input()
                self.transport.write(script.encode("ascii"))
                run = self._read_run(what, duration_s, interval_s, loops)
            finally:
                with self._state:
                    self._running = False
                    abort_sent = self._abort_sent
            if abort_sent and not run.aborted:  # the script ended before Z arrived: eat the Z!0006
                self._drain()
            return run

    def _read_run(self, what: str, duration_s: float, interval_s: float,
                  loops: list[tuple[int, PointReader]]) -> _Run:
        interval_s /= self.time_scale
        deadline = time.monotonic() + 2 * self.timeout_s + 1.25 * duration_s / self.time_scale
        first = self._line(self.timeout_s)
        if classify(first) is LineKind.ERROR:
            raise self._device_error(first, f"loading the {what} script")
        if classify(first) is not LineKind.ACCEPTED:
            raise ProtocolError(self.where, f"expected 'e' for the {what} script, got {first!r}")
        values: list[list[tuple[float, ...]]] = []  # one list per measurement loop started
        overload: list[list[bool]] = []
        in_loop, aborted = False, False
        while True:
            done = sum(len(v) for v in values)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise InstrumentTimeout(self.where, f"{what} not finished after {done} points")
            line = self._line(min(self.timeout_s + interval_s, remaining))
            kind = classify(line)
            if kind is LineKind.END:
                break
            if kind is LineKind.PACKAGE and in_loop:
                n_expected, read_point = loops[len(values) - 1]
                if len(values[-1]) >= n_expected:
                    raise ProtocolError(self.where, f"{what} loop {len(values)} sent more than its {n_expected} "
                                                    "points")
                value, over = read_point(line, len(values[-1]))
                values[-1].append(value)
                overload[-1].append(over)
                # a device that keeps sending its points is working, however long this side takes to read
                # them (at -vv every byte is logged, slower than a zero-latency emulator sends): the deadline
                # moves with each point, and the point count bounds the whole run
                deadline = max(deadline, time.monotonic() + self.timeout_s + interval_s)
            elif kind is LineKind.LOOP_START and not in_loop and len(values) < len(loops):
                in_loop = True
                values.append([])
                overload.append([])
            elif kind is LineKind.LOOP_END and in_loop:
                in_loop = False
                n_expected = loops[len(values) - 1][0]
                if not aborted and len(values[-1]) != n_expected:
                    raise ProtocolError(self.where, f"{what} loop {len(values)} ended with {len(values[-1])} of "
                                                    f"{n_expected} points")
            elif kind is LineKind.ABORTED:
                aborted = True
            elif kind is LineKind.ERROR:
                self._drain()
                raise self._device_error(line, f"running the {what} (after {done} points)")
            elif kind not in (LineKind.SCAN_START, LineKind.SCAN_END):
                raise ProtocolError(self.where, f"unexpected line {line!r} after {done} points")
        if not aborted and (in_loop or len(values) != len(loops)):
            raise ProtocolError(self.where, f"{what} ended after {len(values)} of {len(loops)} measurement loops")
        return _Run(values, overload, aborted)

    def _point(self, line: str, k: int, params: CVParams, expected: np.ndarray) -> tuple[tuple[float, ...], bool]:
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
        if not abs(i.value) <= RANGE_SLIP_FACTOR * full_scale:  # also refuses NaN
            raise ProtocolError(self.where, f"current {i.value!r} A of point {k} does not fit its range")
        if Status.TIMING_ERROR in i.status:
            log.warning("%s: timing error reported at point %d", self.where, k)
        return (e.value, i.value), Status.OVERLOAD in i.status

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
