"""Driver for a purge-gas valve: solenoid valves switched by a Numato Lab USB relay module over serial.

Why a relay board: lab purge lines are plain normally-closed solenoid valves, and a USB relay module is
how automated cells usually switch them; the driver satisfies :class:`labloop.instruments.contracts.GasValve`
so a protocol's ``purge`` step never needs to know this.

Wire format (Numato's user manual; exact echo bytes an [infer], see :mod:`labloop.sim.gas_valve_emulator`):
commands end with ``\\r``; the module echoes the command, then ``\\n\\r``, then for queries the answer line
and ``\\n\\r``, then the prompt ``>``. ``relay on N`` / ``relay off N`` switch relay N, ``relay read N``
answers ``on`` or ``off``, ``ver`` the firmware version.

Safety and honesty: every switch is read back (``relay read``); a relay that does not report the state it
was set to is a :class:`DeviceError`. Switching is idempotent, so a timed-out or garbled exchange is
repeated (``retries``). Only one gas flows at a time: :meth:`flow` switches the others off first.
:meth:`close` closes every valve before it releases the port, so a crashed run does not leave argon
flowing all night.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Self

from labloop.core.errors import ConfigError, DeviceError, InstrumentTimeout, ProtocolError
from labloop.instruments.transport import SerialTransport, Transport, retry

log = logging.getLogger(__name__)

DEFAULT_BAUDRATE = 19200
PROMPT = b">"
#: gas -> relay when a campaign names none: argon on relay 0
DEFAULT_CHANNELS: Mapping[str, int] = MappingProxyType({"argon": 0})


class RelayGasValve:
    """Gas valves on the relays of one Numato-style USB relay module; ``channels`` maps gas -> relay number."""

    def __init__(self, transport: Transport, *, channels: Mapping[str, int] = DEFAULT_CHANNELS, timeout_s: float = 1.0,
                 retries: int = 2, owns_transport: bool = False) -> None:
        self.transport = transport
        if not isinstance(channels, Mapping) or not all(isinstance(gas, str) for gas in channels):
            raise ConfigError(self.where, f"channels must map gas names to relay numbers, got {channels!r}")
        if not channels or len(set(channels.values())) != len(channels):
            raise ConfigError(self.where, f"channels must map each gas to its own relay, got {dict(channels)}")
        if not all(isinstance(n, int) and 0 <= n < 32 for n in channels.values()):
            raise ConfigError(self.where, f"relay numbers must be 0..31, got {dict(channels)}")
        if not (timeout_s > 0 and retries >= 0):
            raise ConfigError(self.where, f"bad options {timeout_s=} {retries=}")
        self.channels = dict(channels)
        self.timeout_s = timeout_s
        self.retries = retries
        self._owns_transport = owns_transport
        self._io = threading.Lock()
        self._closed = False
        self.firmware = self._exchange("ver", answer=True)
        log.info("%s: relay module version %s", self.where, self.firmware)

    @classmethod
    def open(cls, url: str, *, channels: Mapping[str, int] = DEFAULT_CHANNELS, baudrate: int = DEFAULT_BAUDRATE,
             **options: Any) -> RelayGasValve:
        """Open ``url`` (8N1 at ``baudrate``); :meth:`close` closes the valves and the port."""
        transport = SerialTransport(url, baudrate=baudrate)
        try:
            return cls(transport, channels=channels, owns_transport=True, **options)
        except BaseException:
            transport.close()
            raise

    @property
    def where(self) -> str:
        return f"gas valve on {self.transport.name}"

    @property
    def gases(self) -> tuple[str, ...]:
        return tuple(self.channels)

    def _exchange(self, command: str, *, answer: bool) -> str:
        """Send one command and read its echo (and answer) up to the prompt, retrying what is safe."""
        def once() -> str:
            self.transport.reset_input()
            self.transport.write(command.encode("ascii") + b"\r")
            try:
                raw = self.transport.read_until(PROMPT, self.timeout_s)
            except InstrumentTimeout as exc:
                raise InstrumentTimeout(self.where, exc.what) from exc
            try:
                lines = [line.strip() for line in raw[:-1].decode("ascii").split("\n\r")]
            except UnicodeDecodeError:
                raise ProtocolError(self.where, f"non-ASCII reply {raw!r} to {command!r}") from None
            lines = [line for line in lines if line]
            if not lines or lines[0] != command:
                raise ProtocolError(self.where, f"reply {raw!r} does not echo {command!r}")
            if answer != (len(lines) == 2):
                raise ProtocolError(self.where, f"unexpected reply {raw!r} to {command!r}")
            return lines[1] if answer else ""

        with self._io:
            return retry(once, attempts=self.retries + 1,
                         before_retry=lambda exc: self.transport.drain(0.05))

    def _set(self, relay: int, on: bool) -> None:
        self._exchange(f"relay {'on' if on else 'off'} {relay}", answer=False)
        wanted = "on" if on else "off"
        state = self._exchange(f"relay read {relay}", answer=True)
        if state != wanted:
            raise DeviceError(self.where, state, f"relay {relay} reads {state!r} after switching it {wanted}")

    def flow(self, gas: str) -> None:
        """Let ``gas`` flow: every other gas's relay off first, then this one's on, each read back."""
        if self._closed:
            raise ConfigError(self.where, "the valve is closed")
        if gas not in self.channels:
            raise ConfigError(self.where, f"no valve for {gas!r}; this one has {', '.join(self.channels)}")
        for other, relay in self.channels.items():
            if other != gas:
                self._set(relay, False)
        self._set(self.channels[gas], True)
        log.info("%s: %s flowing", self.where, gas)

    def stop(self) -> None:
        """Close every valve."""
        if self._closed:
            raise ConfigError(self.where, "the valve is closed")
        for relay in self.channels.values():
            self._set(relay, False)
        log.info("%s: all valves closed", self.where)

    def flowing(self) -> str | None:
        """The gas whose relay reads ``on`` (the first, if several do), None if none."""
        if self._closed:
            raise ConfigError(self.where, "the valve is closed")
        for gas, relay in self.channels.items():
            if self._exchange(f"relay read {relay}", answer=True) == "on":
                return gas
        return None

    def close(self) -> None:
        """Close every valve (best effort) and release the port; closing twice is not an error."""
        if self._closed:
            return
        try:
            self.stop()
        except (InstrumentTimeout, ProtocolError, DeviceError) as exc:
            log.warning("%s: could not close the valves before releasing the port: %s", self.where, exc)
        finally:
            self._closed = True
            if self._owns_transport:
                self.transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
