"""Impedance: the sweep's validation, Ru from the high-frequency intercept, and the EmStat's ``meas_loop_eis``
through the driver and the firmware emulator over a real pty."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import serial

from labloop.core.errors import InvalidParameter, SafetyLimitExceeded
from labloop.instruments.contracts import SafetyLimits
from labloop.instruments.emstat import EmStatPotentiostat
from labloop.instruments.impedance import EISParams, ImpedanceSpectrum, fit_ru
from labloop.instruments.methodscript import eis_script, parse_package
from labloop.sim.cv_physics import CellParams, cell_impedance
from labloop.sim.emstat_emulator import EmStatEmulator
from labloop.sim.emulation import EmulatorContext
from labloop.sim.pty_device import PtyDevice, TimeScale

LIMITS = SafetyLimits(max_dispense_ml=1.0, syringe_ml=10.0, potential_window_v=(-1.0, 1.0))


def test_sweep_parameters_are_validated_with_the_field_named():
    assert EISParams(f_high_hz=1e5, f_low_hz=1.0, points=11).frequencies()[[0, -1]].tolist() == [1e5, 1.0]
    for bad, field in [({"f_high_hz": 1e6}, "f_high_hz"), ({"f_low_hz": 2e5}, "f_low_hz"),
                       ({"points": 1}, "points"), ({"points": 2.5}, "points"), ({"amplitude_v": 0.5}, "amplitude_v"),
                       ({"e_dc_v": float("nan")}, "e_dc_v")]:
        with pytest.raises(InvalidParameter, match=f"^{field}: "):
            EISParams(**bad)


@pytest.mark.parametrize("ru", [50.0, 200.0, 1000.0, 5000.0])
@pytest.mark.parametrize("e_dc", [0.0, 0.1, -0.4])
def test_fit_recovers_ru_from_a_noisy_randles_spectrum(ru, e_dc):
    """Within 5% over 50-5000 ohm, at the couple's E0 (fast charge transfer, strongest Warburg) and away."""
    params = EISParams()
    cell = CellParams(e0_v=0.0, conc_mm=1.0, cdl_f_cm2=2e-5, ru_ohm=ru)
    z = cell_impedance([cell], params.frequencies(), e_dc)
    rng = np.random.default_rng(int(ru))
    z = z + 0.002 * np.abs(z) * (rng.normal(size=z.shape) + 1j * rng.normal(size=z.shape))
    estimate = fit_ru(ImpedanceSpectrum(params.frequencies(), z.real, z.imag, params))
    assert estimate.ru_ohm == pytest.approx(ru, rel=0.05)
    assert estimate.rms_residual < 0.05


def test_fit_extrapolates_where_the_smallest_real_part_does_not():
    """A sweep stopping at 1 kHz leaves a 1 kohm || 1 uF arc open: min(Z') is 25% high, the fit is not."""
    params = EISParams(f_high_hz=1e3, f_low_hz=1.0, points=25)
    omega = 2 * np.pi * params.frequencies()
    z = 100.0 + 1000.0 / (1 + 1j * omega * 1000.0 * 1e-6)
    estimate = fit_ru(ImpedanceSpectrum(params.frequencies(), z.real, z.imag, params))
    assert float(z.real.min()) > 120.0
    assert estimate.ru_ohm == pytest.approx(100.0, rel=0.01)


@pytest.fixture
def emstat():
    made = []

    def make(ru_ohm: float, **emulator_options: object) -> tuple[EmStatPotentiostat, PtyDevice]:
        couple = CellParams(e0_v=0.1, conc_mm=1.0, cdl_f_cm2=2e-5, noise_fraction=0.002, ru_ohm=ru_ohm)
        context = EmulatorContext.standalone(couple, time_scale=TimeScale.zero_latency())
        emulator = EmStatEmulator(context.contents, time_scale=context.time_scale, **emulator_options)
        device = PtyDevice(emulator, name="emstat").start()
        driver = EmStatPotentiostat.open(device.port, limits=LIMITS, time_scale=float("inf"), timeout_s=0.5,
                                         error_pause_s=0.0)
        made.append((driver, device))
        return driver, device

    yield make
    for driver, device in made:
        driver.close()
        device.stop()
        assert device.errors == []


@pytest.mark.parametrize("ru", [50.0, 500.0, 5000.0])
def test_driver_measures_ru_through_the_emulator(emstat, ru):
    driver, device = emstat(ru)
    params = EISParams(f_high_hz=100e3, f_low_hz=10.0, points=21)
    spectrum = driver.run_eis(params)
    assert len(spectrum) == 21 and spectrum.frequency_hz[0] == pytest.approx(1e5)
    assert np.all(spectrum.z_imag_ohm[-5:] < 0)  # capacitive where the double layer dominates
    assert fit_ru(spectrum).ru_ohm == pytest.approx(ru, rel=0.05)
    sent = bytes(device.received).decode()
    assert "meas_loop_eis f r j 10m 100000 10 21i 0\n  pck_start\n  pck_add f\n  pck_add r\n  pck_add j\n" in sent


def test_driver_refuses_a_dc_potential_beyond_the_window_before_sending(emstat):
    driver, device = emstat(100.0)
    before = len(device.received)
    with pytest.raises(SafetyLimitExceeded, match=r"potential 1\.495 V is outside"):
        driver.run_eis(EISParams(e_dc_v=1.5, amplitude_v=0.005))
    assert len(device.received) == before


def test_emulator_answers_a_plain_client_byte_exactly():
    """``e``, ``M000D``, one ``Pdc..;cc..,1X;cd..,1X`` per frequency in pck_add order, ``*``, blank line."""
    couple = CellParams(e0_v=0.1, conc_mm=0.0, cdl_f_cm2=2e-5, ru_ohm=300.0)
    context = EmulatorContext.standalone(couple, time_scale=TimeScale.zero_latency())
    emulator = EmStatEmulator(context.contents, time_scale=context.time_scale)
    with PtyDevice(emulator, name="emstat") as device, serial.Serial(device.port, 230400, timeout=1.0) as client:
        script = eis_script(EISParams(f_high_hz=1e4, f_low_hz=100.0, points=3))
        swapped = [line.replace("pck_add r", "pck_add J").replace("pck_add j", "pck_add r")
                   .replace("pck_add J", "pck_add j") for line in script]  # Z'' before Z'
        client.write(("\n".join(swapped) + "\n").encode())
        lines = [client.readline() for _ in range(7)]
    assert lines[0] == b"e\n" and lines[1] == b"M000D\n" and lines[5:] == [b"*\n", b"\n"]
    packages = [parse_package(line.decode()[:-1]) for line in lines[2:5]]
    assert [[v.type for v in p] for p in packages] == [["dc", "cd", "cc"]] * 3
    frequencies = [p[0].value for p in packages]
    assert frequencies == pytest.approx([1e4, 1e3, 100.0])
    z = cell_impedance([couple], np.array(frequencies), 0.0)
    assert [p[2].value for p in packages] == pytest.approx(z.real.tolist(), rel=1e-5)
    assert [p[1].value for p in packages] == pytest.approx(z.imag.tolist(), rel=1e-5)


def test_sim_serve_takes_the_cell_settings_as_flags():
    command = [sys.executable, "-m", "labloop.orchestrator.cli.main", "sim", "serve", "emstat", "--ru-ohm", "800",
               "--cdl-uf", "30", "--fc-mm", "1", "--oxygen-mm", "2", "--time-scale", "inf"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = server.stdout.readline().strip()
        assert port.startswith("/dev/pts/"), server.stderr.read() if server.poll() is not None else port
        driver = EmStatPotentiostat.open(port, limits=LIMITS, time_scale=float("inf"), timeout_s=1.0)
        try:
            assert fit_ru(driver.run_eis(EISParams(points=15))).ru_ohm == pytest.approx(800.0, rel=0.05)
        finally:
            driver.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
    bad = subprocess.run([*command[:6], "--oxygen-mm", "-1"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--oxygen-mm: must be >= 0 mM" in bad.stderr
