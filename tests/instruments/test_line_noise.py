"""Line noise must not hang a driver (issue 17, cause 2): a device that emits a byte every 20 ms, on a real
pty, ends every exchange in a typed :class:`InstrumentTimeout`; link options that could make a wait
endless (``timeout_s: .inf``, ``retries: 1000000000``) are refused as configuration, by the drivers and by
``labloop validate``.

The waits run on a daemon thread joined with a generous guard: the guard turns a hang (today's failure:
the drain before a retry waited for a quiet line that never came) into a test failure; it is not a timing
assertion. The drivers ask for 200 ms of quiet (``settle_s``), ten noise intervals, so that a loaded machine
pausing the noise thread now and then cannot end the old drain by chance.
"""

from __future__ import annotations

import math
import os
import threading
import time
import tty
from collections.abc import Callable, Iterator

import pytest

from labloop.core.errors import ConfigError, InstrumentTimeout
from labloop.instruments.contracts import SafetyLimits
from labloop.instruments.emstat import EmStatPotentiostat
from labloop.instruments.ne1000 import NE1000Bus, NE1000Pump
from labloop.instruments.transport import SerialTransport, check_link_options
from labloop.orchestrator.compose import build_executor, build_rig
from labloop.orchestrator.config.campaign import load_campaign
from labloop.orchestrator.journal.store import Journal, State
from labloop.orchestrator.loop.interrupts import Interrupts
from labloop.orchestrator.loop.runner import EXIT_FAULTS, Runner
from labloop.sim.ne1000_emulator import NE1000Emulator
from labloop.sim.pty_device import Framer, Link, PtyDevice, PtyEmulator, TerminatorFramer
from labloop.surrogate.dataset import read_table

LIMITS = SafetyLimits(max_dispense_ml=2.0, syringe_ml=10.0, potential_window_v=(-1.0, 1.0))
NOISE_INTERVAL_S = 0.02
SETTLE_S = 0.2
HANG_GUARD_S = 60.0


class Babbler:
    """Line noise on a pty: a byte every 20 ms; frames go to ``inner`` (a real emulator) unless ``muted``,
    so a device can answer, then go silent while the noise goes on."""

    def __init__(self, inner: PtyEmulator | None = None) -> None:
        self.inner = inner
        self.muted = inner is None
        self._next = 0.0

    def new_framer(self) -> Framer:
        return self.inner.new_framer() if self.inner is not None else TerminatorFramer(b"\n")

    def handle(self, frame: bytes, link: Link) -> None:
        if not self.muted and self.inner is not None:
            self.inner.handle(frame, link)

    def tick(self, link: Link) -> None:
        if self.inner is not None:
            self.inner.tick(link)
        now = time.monotonic()
        if now >= self._next:
            link.send(b"~")
            self._next = now + NOISE_INTERVAL_S


@pytest.fixture
def babbler() -> Iterator[Callable[..., PtyDevice]]:
    started: list[PtyDevice] = []

    def start(inner: NE1000Emulator | None = None) -> PtyDevice:
        device = PtyDevice(Babbler(inner), name="babbler", tick_s=0.005).start()
        started.append(device)
        return device

    yield start
    for device in started:
        device.stop()


def outcome(call: Callable[[], object]) -> BaseException | object:
    """What ``call`` returned or raised, run on a daemon thread; fails the test if it never ends."""
    result: list[BaseException | object] = []

    def target() -> None:
        try:
            result.append(call())
        except BaseException as exc:  # handed to the test, which checks its type
            result.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(HANG_GUARD_S)
    assert not thread.is_alive(), "the driver hung on line noise"
    return result[0]


def test_drain_of_a_line_that_never_goes_quiet_ends_in_a_timeout() -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    stop = threading.Event()

    def noise() -> None:
        while not stop.wait(NOISE_INTERVAL_S):
            os.write(master, b"~")

    writer = threading.Thread(target=noise, daemon=True)
    writer.start()
    try:
        with SerialTransport(os.ttyname(slave)) as transport:
            error = outcome(lambda: transport.drain(SETTLE_S, 0.3))
    finally:
        stop.set()
        writer.join()
        os.close(master)
        os.close(slave)
    assert isinstance(error, InstrumentTimeout)
    assert "not quiet" in error.what and "~" in error.what


def test_ne1000_on_a_silent_babbling_line_raises_a_timeout(babbler: Callable[..., PtyDevice]) -> None:
    device = babbler()
    bus = NE1000Bus.open(device.port, timeout_s=0.2, retries=2, settle_s=SETTLE_S)
    try:
        error = outcome(lambda: NE1000Pump(bus, limits=LIMITS))
    finally:
        bus.close()
    assert isinstance(error, InstrumentTimeout), error
    assert "NE-1000 #00" in str(error) and "not quiet" in str(error)


def test_ne1000_answers_through_noise_and_times_out_once_the_pump_goes_silent(
        babbler: Callable[..., PtyDevice]) -> None:
    device = babbler(NE1000Emulator())
    bus = NE1000Bus.open(device.port, timeout_s=0.2, retries=2, settle_s=SETTLE_S)
    pump = outcome(lambda: NE1000Pump(bus, limits=LIMITS, time_scale=math.inf, poll_s=0.0, owns_bus=True))
    assert isinstance(pump, NE1000Pump), pump  # noise between replies is discarded, not fatal
    try:
        assert outcome(pump.diameter) is not None
        device.emulator.muted = True
        error = outcome(pump.state)
        assert isinstance(error, InstrumentTimeout), error
        assert "NE-1000 #00" in str(error)
    finally:
        pump.close()


def test_emstat_on_a_silent_babbling_line_raises_a_timeout(babbler: Callable[..., PtyDevice]) -> None:
    device = babbler()
    error = outcome(lambda: EmStatPotentiostat.open(device.port, limits=LIMITS, timeout_s=0.2, retries=1,
                                                    settle_s=SETTLE_S))
    assert isinstance(error, InstrumentTimeout), error
    assert "EmStat" in str(error) and "not quiet" in str(error)


@pytest.mark.parametrize(("option", "value"), [("timeout_s", math.inf), ("timeout_s", math.nan), ("timeout_s", 0),
                                               ("retries", 1_000_000_000), ("retries", -1), ("retries", 2.5),
                                               ("settle_s", 1e9)])
def test_endless_link_options_are_refused_naming_the_option(option: str, value: float) -> None:
    with pytest.raises(ConfigError, match=rf"{option} must be"):
        check_link_options("pump", **{option: value})


def test_drivers_refuse_an_endless_timeout_before_talking(babbler: Callable[..., PtyDevice]) -> None:
    device = babbler()
    transport = SerialTransport(device.port)
    try:
        with pytest.raises(ConfigError, match="timeout_s must be a number of seconds"):
            NE1000Bus(transport, timeout_s=math.inf)
        with pytest.raises(ConfigError, match="retries must be a whole number"):
            EmStatPotentiostat(transport, limits=LIMITS, retries=1_000_000_000)
    finally:
        transport.close()
    assert device.received == b""  # refused before a byte was sent


@pytest.mark.parametrize(("option", "text"), [("timeout_s", ".inf"), ("retries", "1000000000")])
def test_validate_refuses_endless_link_options_in_one_line(tmp_path, labloop, write_campaign, option: str,
                                                           text: str) -> None:
    path = write_campaign(tmp_path)
    # beside the reference electrode's name the tiny rig gives (tests/conftest.py RIG)
    named = "      reference: Ag/Ag+"
    path.write_text(path.read_text().replace(named, f"{named}\n      {option}: {text}"))
    result = labloop("validate", path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert f"instruments.potentiostat.options.{option}: must be" in result.stderr


def test_a_campaign_whose_potentiostat_falls_silent_on_a_noisy_line_stops_on_typed_faults(
        tmp_path, write_campaign) -> None:
    """The whole loop on a dry-run rig whose EmStat stops answering while its line carries a byte every 20 ms
    (noise between whole replies is harmless: the driver flushes it before each command): each CV ends in an
    ``InstrumentTimeout`` (the line is never quiet for the drain before the retry), the experiments fail with
    that cause, and the campaign stops with exit 1 at the first, since the silent potentiostat cannot be told to
    switch the cell off (the rig is not made safe: the next sample would go into a cell that may still be on), and
    the pumps are left stopped. Before: the first CV's retry drained forever."""
    path = write_campaign(tmp_path, budget={"max_experiments": 10})
    quiet = f"      reference: Ag/Ag+\n      settle_s: {SETTLE_S}\n      timeout_s: 0.3"
    path.write_text(path.read_text().replace("      reference: Ag/Ag+", quiet))
    campaign = load_campaign(path)
    library = read_table(campaign.library.file).smiles
    with build_rig(campaign, dry_run=True) as rig, Journal.create(campaign.store, campaign) as journal, \
            Interrupts() as interrupts:
        device = rig.simulation.emulations["potentiostat"].device  # the emulator behind the pty
        device.emulator = Babbler(device.emulator)
        device.emulator.muted = True
        runner = Runner(campaign, journal, rig, build_executor(campaign, rig), library, None,
                        interrupts)
        code = outcome(runner.run)
        states = rig.simulation.emulator_states()
        failed = journal.experiments(states=(State.FAILED,))
        stopped = [e for e in journal.events() if e.kind == "stopped"]
        assert code == EXIT_FAULTS
        assert len(failed) == 1 and all("InstrumentTimeout" in e.cause and "not quiet" in e.cause for e in failed)
        assert [e.data["unsafe"][0].split(":")[0] for e in stopped] == ["potentiostat"]
        assert not journal.experiments(states=(State.DONE, State.RUNNING))
        assert states["analyte_pump"]["status"] == "S" and states["electrolyte_pump"]["status"] == "S"
