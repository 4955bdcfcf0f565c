"""The purge-gas valve: relay-module driver against its emulator over a real pty, and the O2 it removes."""

from __future__ import annotations

import time

import pytest
import serial

from labloop.core.errors import ConfigError, DeviceError
from labloop.instruments.builtin_drivers import RELAY_VALVE
from labloop.instruments.contracts import GasValve
from labloop.instruments.gas_valve import RelayGasValve
from labloop.sim.conformance import check_driver
from labloop.sim.gas_valve_emulator import PURGE_TIME_CONSTANT_S, Atmosphere, RelayValveEmulator
from labloop.sim.pty_device import Link, PtyDevice, TimeScale


def test_the_driver_passes_the_conformance_kit():
    report = check_driver(RELAY_VALVE)
    assert report.passed, report
    assert [c.name for c in report.checks][:3] == ["open", "stop twice", "flow, read back, stop"]


def test_a_plain_serial_client_gets_the_relay_module_replies():
    emulator = RelayValveEmulator(Atmosphere(0.0), {0: "argon", 1: "air"})
    with PtyDevice(emulator, name="valve") as device, serial.Serial(device.port, 19200, timeout=0.5) as client:
        for command, reply in [(b"ver\r", b"ver\n\r00000008\n\r>"), (b"relay read 0\r", b"relay read 0\n\roff\n\r>"),
                               (b"relay on 1\r", b"relay on 1\n\r>"), (b"relay read 1\r", b"relay read 1\n\ron\n\r>"),
                               (b"relay on 7\r", b"relay on 7\n\r>")]:  # no relay 7: echoed, ignored
            client.write(command)
            assert client.read(len(reply)) == reply, command
        assert emulator.relays == {0: False, 1: True}


def test_purging_removes_oxygen_and_closing_shuts_the_valves():
    scale = TimeScale.accelerated(PURGE_TIME_CONSTANT_S * 20)  # one wall second is 20 time constants
    atmosphere = Atmosphere(2.0, time_scale=scale)
    emulator = RelayValveEmulator(atmosphere, {0: "argon", 1: "air"})
    with PtyDevice(emulator, name="valve") as device:
        valve = RelayGasValve.open(device.port, channels={"argon": 0, "air": 1})
        assert isinstance(valve, GasValve) and valve.gases == ("argon", "air") and valve.firmware == "00000008"
        valve.flow("argon")
        time.sleep(0.5)
        assert valve.flowing() == "argon" and atmosphere.oxygen_mm() < 2.0 * 1e-3
        valve.flow("air")  # switching closes argon first
        assert emulator.relays == {0: False, 1: True}
        time.sleep(0.5)
        assert atmosphere.oxygen_mm() == pytest.approx(atmosphere.saturated_mm, rel=1e-3)
        with pytest.raises(ConfigError, match="no valve for 'helium'"):
            valve.flow("helium")
        valve.close()
        valve.close()
        assert emulator.relays == {0: False, 1: False}


class _StuckRelay(RelayValveEmulator):
    """A relay whose contact is welded open: it echoes ``relay on`` but stays off."""

    def handle(self, frame: bytes, link: Link) -> None:
        if frame.startswith(b"relay on"):
            link.reply(frame.strip() + b"\n\r>")
            return
        super().handle(frame, link)


def test_a_relay_that_does_not_switch_is_a_device_error():
    with PtyDevice(_StuckRelay(Atmosphere(2.0), {0: "argon"}), name="valve") as device:
        valve = RelayGasValve.open(device.port)
        with pytest.raises(DeviceError, match="relay 0 reads 'off' after switching it on"):
            valve.flow("argon")
        valve.close()
