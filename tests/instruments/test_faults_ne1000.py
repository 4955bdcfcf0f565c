"""Fault injection: the injector itself, each fault kind through the NE-1000 driver, and a 100-cycle soak."""

import math
import time
from collections import Counter

import pytest

from labloop.core.errors import Disconnected, InstrumentError, InstrumentTimeout
from labloop.instruments.contracts import SafetyLimits
from labloop.instruments.ne1000 import NE1000Bus, NE1000Pump
from labloop.sim.faults import FaultInjector, FaultKind, FaultPlan
from labloop.sim.ne1000_emulator import NE1000Emulator
from labloop.sim.pty_device import PtyDevice, TimeScale

LIMITS = SafetyLimits(max_dispense_ml=1.0, syringe_ml=60.0, potential_window_v=(-1.0, 1.0))
TIMEOUT_S = 0.05


def draws(injector: FaultInjector, kind: FaultKind, n: int = 200) -> list[bool]:
    return [injector.decide(kind) for _ in range(n)]


def test_faults_are_deterministic_per_seed_and_independent_per_kind() -> None:
    a = draws(FaultInjector(FaultPlan(garble=0.3, seed=7)), FaultKind.GARBLE)
    assert a == draws(FaultInjector(FaultPlan(garble=0.3, seed=7)), FaultKind.GARBLE)
    assert a != draws(FaultInjector(FaultPlan(garble=0.3, seed=8)), FaultKind.GARBLE)
    assert 30 < sum(a) < 90

    noisy = FaultInjector(FaultPlan(garble=0.3, no_reply=0.9, seed=7))
    interleaved = [(noisy.decide(FaultKind.NO_REPLY), noisy.decide(FaultKind.GARBLE))[1] for _ in range(200)]
    assert interleaved == a  # other kinds firing does not reshuffle this one
    assert noisy.counts[FaultKind.GARBLE] == sum(a)

    assert not any(draws(FaultInjector(FaultPlan()), FaultKind.STALL))
    assert all(draws(FaultInjector(FaultPlan(stall=1.0)), FaultKind.STALL))
    with pytest.raises(ValueError):
        FaultPlan(drop=1.5)


def test_garble_flips_one_bit_and_drop_loses_one_byte() -> None:
    injector = FaultInjector(FaultPlan(seed=1))
    reply = b"\x0200SI0.100W0.000ML\x03"
    for _ in range(50):
        garbled = injector.garble(reply)
        assert len(garbled) == len(reply)
        assert sum(bin(x ^ y).count("1") for x, y in zip(garbled, reply, strict=True)) == 1
        dropped = injector.drop(reply)
        assert len(dropped) == len(reply) - 1
        assert any(reply[:i] + reply[i + 1 :] == dropped for i in range(len(reply)))
        assert 0 < injector.fraction() < 1


def connect(device: PtyDevice, retries: int = 3, timeout_s: float = TIMEOUT_S) -> NE1000Pump:
    bus = NE1000Bus.open(device.port, timeout_s=timeout_s, retries=retries, settle_s=0.01)
    try:
        return NE1000Pump(bus, 0, limits=LIMITS, time_scale=math.inf, poll_s=0.0)
    except BaseException:
        bus.close()
        raise


def faulty_line(plan: FaultPlan) -> tuple[NE1000Emulator, PtyDevice]:
    emulator = NE1000Emulator(time_scale=TimeScale.zero_latency())
    return emulator, PtyDevice(emulator, faults=FaultInjector(plan), name="ne1000").start()


@pytest.mark.parametrize(
    ("plan", "raised", "sends"),
    [(FaultPlan(no_reply=1.0), InstrumentTimeout, 4), (FaultPlan(disconnect=1.0), Disconnected, 1)],
    ids=["no_reply", "disconnect"],
)
def test_a_fault_on_every_reply_raises_its_typed_error(plan: FaultPlan, raised: type, sends: int) -> None:
    _, device = faulty_line(plan)
    try:
        with pytest.raises(raised):
            connect(device)
        assert device.received.count(b"0VER\r") == sends  # a timeout is retried 3 times; a lost port is final
    finally:
        device.stop()
    assert device.errors == []


@pytest.mark.parametrize("plan", [FaultPlan(garble=0.5), FaultPlan(drop=0.5)], ids=["garble", "drop"])
def test_corrupted_replies_never_pass_for_a_wrong_dispense(plan: FaultPlan) -> None:
    """Basic mode has no checksum, so a corrupted reply can look valid; it must never fake a dispense."""
    emulator, device = faulty_line(plan)
    raised: Counter[str] = Counter()
    ok = 0
    try:
        for _ in range(10):
            try:
                pump = connect(device)
                try:
                    done = pump.dispense(0.1, 5.0)
                    assert done == pytest.approx(emulator.snapshot(0).infused_ml)
                    ok += 1
                finally:
                    pump.bus.close()
            except InstrumentError as exc:
                raised[type(exc).__name__] += 1
            assert emulator.snapshot(0).infused_ml <= 0.1 + 1e-9  # never a second RUN on a guess
    finally:
        device.stop()
    print(f"\n{plan}: {ok} dispenses verified, raised {dict(raised)}")
    assert ok > 0 and set(raised) <= {"InstrumentTimeout", "ProtocolError", "DispenseMismatch"}, raised
    assert device.errors == []


def test_a_slow_reply_within_the_deadline_is_simply_waited_for() -> None:
    # a reply at a tenth of a 1 s deadline: 50 ms late of 50 ms timed out once on a loaded machine (a full run)
    _, device = faulty_line(FaultPlan(slow=1.0, slow_s=0.1))
    try:
        start = time.monotonic()
        pump = connect(device, timeout_s=1.0)
        assert pump.dispense(0.1, 5.0) == pytest.approx(0.1)
        exchanges = device.received.count(b"\r")
        assert time.monotonic() - start >= exchanges * 0.1
        assert pump.bus.retried == {}
        pump.bus.close()
    finally:
        device.stop()


def test_one_hundred_dispense_cycles_at_ten_percent_of_every_fault() -> None:
    """Every fault is either retried away or raised as its typed error; nothing hangs, nothing untyped."""
    emulator, device = faulty_line(FaultPlan.uniform(0.1, seed=2024, slow_s=TIMEOUT_S / 2))
    assert device.faults is not None
    outcomes: Counter[str] = Counter()
    retried: Counter[str] = Counter()
    pump: NE1000Pump | None = None
    start = time.monotonic()
    try:
        for _ in range(100):
            try:
                if pump is None:
                    pump = connect(device)
                assert pump.dispense(0.1, 5.0) == pytest.approx(0.1)
                assert emulator.snapshot(0).infused_ml == pytest.approx(0.1)  # the pump really did it
                outcomes["ok"] += 1
            except InstrumentError as exc:
                outcomes[type(exc).__name__] += 1
                if isinstance(exc, Disconnected):  # the cable came out: plug it back, reconnect
                    if pump is not None:
                        retried.update(pump.bus.retried)
                        pump.bus.close()
                        pump = None
                    device.replug()
            assert emulator.snapshot(0).infused_ml <= 0.1 + 1e-9  # never a second RUN on a guess
        if pump is not None:
            retried.update(pump.bus.retried)
            pump.bus.close()
    finally:
        device.stop()
    elapsed = time.monotonic() - start
    injected = {str(kind): n for kind, n in device.faults.counts.items() if kind is not FaultKind.OVERLOAD}
    print(f"\n100 cycles in {elapsed:.1f} s; outcomes {dict(outcomes)}")
    print(f"faults injected {injected}; retried by the driver {dict(retried)}")

    assert sum(outcomes.values()) == 100
    assert outcomes["ok"] > 0
    assert all(n > 0 for n in injected.values()), injected
    assert outcomes["Disconnected"] == injected["disconnect"]  # every disconnect surfaced as one
    assert retried["InstrumentTimeout"] > 0 and retried["ProtocolError"] > 0
    assert device.errors == []
