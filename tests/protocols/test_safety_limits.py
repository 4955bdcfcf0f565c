"""Safety gaps (issue 17, cause 14): a flow-rate cap and a cell volume (``safety.max_rate_ml_min``,
``safety.cell_volume_ml``) checked before anything is dispatched, by the protocol executor on a dry-run rig
and by the NE-1000 driver on its emulator; and option ranges that ``labloop validate`` refuses in one line
(a scan rate of 1e-9 or 1e-300 V/s, a wait of 1e300 s, a world time scale of 1e-300, ten million scans).
Before: 5,000 and 9,884 mL/min reached the driver and 50.5 mL per experiment was accepted."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from labloop.core.errors import ConfigError, DispenseMismatch, SafetyLimitExceeded
from labloop.instruments.contracts import RateUnit, SafetyLimits
from labloop.instruments.ne1000 import NE1000Pump
from labloop.orchestrator.compose import build_rig, build_world
from labloop.orchestrator.config.campaign import load_campaign
from labloop.orchestrator.loop.rig import Rig
from labloop.protocols.executor import ProtocolExecutor
from labloop.sim.ne1000_emulator import NE1000Emulator
from labloop.sim.pty_device import PtyDevice

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ELECTROLYTE = {"dispense": {"pump": "electrolyte_pump", "volume_ml": 4.5, "rate_ml_min": 5.0, "fluid": "electrolyte"}}


@pytest.fixture(scope="module")
def rig() -> Rig:
    campaign = load_campaign(EXAMPLES / "campaign.yaml")
    with build_rig(campaign, dry_run=True, world=build_world(campaign)) as rig:
        yield rig


def wire(rig: Rig) -> dict[str, int]:
    return {name: state["received_bytes"] for name, state in rig.simulation.emulator_states().items() if name != "cell"}


def test_the_executor_refuses_a_rate_over_the_limit_before_any_byte(rig: Rig) -> None:
    before = wire(rig)
    limits = SafetyLimits(5.0, 10.0, (-3.0, 3.0), max_rate_ml_min=20.0)
    fast = ["load_sample", {"dispense": {**ELECTROLYTE["dispense"], "rate_ml_min": 9884.0}}, "cv"]
    actions: list[tuple] = []
    with pytest.raises(SafetyLimitExceeded, match=r"protocol\[1\]\.dispense: rate of 9884 mL/min exceeds "
                                                  r"the limit of 20 mL/min"):
        ProtocolExecutor(fast, rig, limits, 3.2).run("S0001", "c1ccccc1", {}, None, lambda *a: actions.append(a))
    assert actions == [] and wire(rig) == before


def test_the_executor_refuses_dispenses_that_overfill_the_cell(rig: Rig) -> None:
    before = wire(rig)
    limits = SafetyLimits(5.0, 10.0, (-3.0, 3.0), cell_volume_ml=10.0)
    refilled = {"dispense": {**ELECTROLYTE["dispense"], "refill": True}}  # its syringe never runs dry
    flood = ["load_sample", refilled, refilled, refilled, "cv", "rinse"]
    with pytest.raises(SafetyLimitExceeded, match=r"protocol\[3\]\.dispense: electrolyte_pump: the cell would "
                                                  r"hold 13.5 mL, more than its 10 mL"):
        ProtocolExecutor(flood, rig, limits, 3.2).check()
    rinsed = ["load_sample", refilled, refilled, "rinse", refilled, "cv", "rinse"]
    ProtocolExecutor(rinsed, rig, limits, 3.2).check()  # a rinse empties the cell
    assert wire(rig) == before


def test_the_executor_refuses_a_scan_the_connected_potentiostat_cannot_apply_before_any_byte(rig: Rig) -> None:
    # the safety window allows 2.5 V, the emulated EmStat Pico applies -1.7..2.0 V: every sample would be
    # loaded and dispensed for a CV the firmware then refuses (a newcomer's trial); refused before that
    before = wire(rig)
    limits = SafetyLimits(5.0, 10.0, (-3.0, 3.0))
    fixed = ["load_sample", ELECTROLYTE, {"cv": {"e_begin_v": 0.0, "e_vertex1_v": 2.5, "e_vertex2_v": -0.5}}]
    with pytest.raises(SafetyLimitExceeded, match=r"protocol\[2\]\.cv: potential 2.5 V is outside what "
                                                  r"'potentiostat' can apply, -1.7..2 V vs its reference"):
        ProtocolExecutor(fixed, rig, limits, 3.2).check()
    # 3.8 V: fits the limits, not the Pico; refused as a window, with the widest that fits, for an executor without
    # the objective's hits too (it was refused at the scan's vertex, "potential 2.4 V is outside ...")
    too_wide = ["load_sample", ELECTROLYTE, {"cv": {"half_width_v": 1.9}}]
    actions: list[tuple] = []
    with pytest.raises(SafetyLimitExceeded, match=r"half_width_v: a window of \+/-1.9 V cannot lie within what "
                                                  r"'potentiostat' can apply -1.7..2 V; half_width_v 1.85 fits"):
        ProtocolExecutor(too_wide, rig, limits, 3.2).run("S0001", "c1ccccc1", {}, 3.2 + 0.5,
                                                         lambda *a: actions.append(a))
    # narrower than the Pico's range, but no centre on its 4 mV step grid holds it: the run would refuse each scan
    off_grid = ["load_sample", ELECTROLYTE, {"cv": {"half_width_v": 1.849, "e_step_v": 0.004}}]
    with pytest.raises(SafetyLimitExceeded, match=r"a window of \+/-1.849 V cannot lie within what 'potentiostat' "
                                                  r"can apply -1.7..2 V with its centre on the e_step_v grid of 0.004 "
                                                  r"V; half_width_v 1.848 fits"):
        ProtocolExecutor(off_grid, rig, limits, 3.2).check()
    assert actions == [] and wire(rig) == before


def test_a_window_around_a_prediction_beyond_the_limits_moves_within_them(rig: Rig) -> None:
    """A newcomer's campaign had every proposal refused, the window around each uncalibrated prediction (the prior's,
    1.5-2.7 V high) beyond the limits: the window moves, as little as it takes, within the safety limits and what
    the potentiostat can apply (the Pico's -1.7..2.0 V here), and a prediction inside them keeps its window."""
    around = ["load_sample", {"cv": {"half_width_v": 0.4}}]  # nothing dispensed: only the window is looked at
    scanned = []
    for limits, predicted, expected in [((-3.0, 3.0), 2.2, (1.2, 1.6, 2.0)),  # the Pico's 2.0 V holds it
                                        ((-1.0, 1.5), 2.2, (0.7, 1.1, 1.5)),  # the safety limit's 1.5 V
                                        ((-1.0, 1.5), -1.3, (-1.0, -0.6, -0.2)),  # from below
                                        ((-1.0, 1.5), 0.3, (-0.1, 0.3, 0.7))]:  # inside: not moved
        outcome = ProtocolExecutor(around, rig, SafetyLimits(5.0, 10.0, limits), 3.2).run(
            "S0001", "c1ccccc1", {}, 3.2 + predicted, lambda *a: None)
        params = outcome.voltammogram.params
        scanned.append((params.e_begin_v, (params.e_begin_v + params.e_vertex1_v) / 2, params.e_vertex1_v))
        assert scanned[-1] == pytest.approx(expected), (limits, predicted)


class OverReporting:
    """A pump whose counter reports three times what it dispensed (a plug-in that trusts a faulty counter)."""

    def __init__(self, pump: object) -> None:
        self.pump, self.withdrawn = pump, []

    def dispense(self, volume_ml: float, rate_ml_min: float) -> float:
        return 3 * self.pump.dispense(volume_ml, rate_ml_min)  # type: ignore[attr-defined]

    def withdraw(self, volume_ml: float, rate_ml_min: float) -> float:
        self.withdrawn.append(volume_ml)
        return self.pump.withdraw(volume_ml, rate_ml_min)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self.pump, name)


def test_a_pump_reporting_another_volume_is_a_fault_before_its_refill(rig: Rig) -> None:
    """The refill withdrew what the pump *reported*: a counter reading 3x drove WDR 13.5 into a 10 mL syringe."""
    real = rig.instruments["electrolyte_pump"]
    liar = rig.instruments["electrolyte_pump"] = OverReporting(real)
    try:
        steps = ["load_sample", {"dispense": {**ELECTROLYTE["dispense"], "refill": True}}, "cv", "rinse"]
        with pytest.raises(DispenseMismatch, match=r"electrolyte_pump in protocol\[1\]\.dispense: the pump reports "
                                                   r"13.5 mL dispensed where 4.5 mL was asked"):
            ProtocolExecutor(steps, rig, SafetyLimits(5.0, 10.0, (-3.0, 3.0)), 3.2).run(
                "S0001", "c1ccccc1", {}, 4.5, lambda *a: None)
        assert liar.withdrawn == []  # no refill of the reported volume
    finally:
        rig.instruments["electrolyte_pump"] = real
    limits = SafetyLimits(5.0, 10.0, (-3.0, 3.0))
    with pytest.raises(SafetyLimitExceeded, match=r"tracked content -3.5 mL is outside 0..10 mL"):
        limits.check_withdraw(1.0, content_ml=-3.5, where="pump")  # it used to pass: -3.5 + 1 <= 10
    with pytest.raises(SafetyLimitExceeded, match=r"tracked content 23.5 mL"):
        limits.check_dispense(1.0, content_ml=23.5, where="pump")


def test_a_pump_reporting_more_than_asked_is_counted_at_its_report_live_and_on_resume(rig: Rig) -> None:
    """A plug-in pump reported 9 mL for a 4.5 mL dispense: the count stayed at 4.5 and the next experiment's 4.5 mL was
    sent to a 10 mL syringe that by the pump's own report held 1 mL (a plug-in engineer's trial). The larger of the
    report and the request is counted (the syringe no lower than empty), and the journal's action keeps it, so a
    resume's count is the same."""
    real = rig.instruments["electrolyte_pump"]
    rig.instruments["electrolyte_pump"] = OverReporting(real)
    actions: list[tuple] = []
    steps = ["load_sample", {"dispense": {**ELECTROLYTE["dispense"], "refill": True}}, "cv", "rinse"]
    limits = SafetyLimits(5.0, 10.0, (-3.0, 3.0), cell_volume_ml=20.0)
    live = ProtocolExecutor(steps, rig, limits, 3.2)
    try:
        with pytest.raises(DispenseMismatch, match=r"reports 13\.5 mL dispensed"):
            live.run("S0001", "c1ccccc1", {}, 4.5, lambda *a: actions.append(a))
    finally:
        rig.instruments["electrolyte_pump"] = real
    # the cell at the report (labloop never counts it low), the syringe no lower than empty: a report beyond its
    # 10 mL is the driver's, and the count stopped at -3.5 mL (a plug-in engineer's trial)
    assert live.contents.state() == (13.5, {"electrolyte_pump": 0.0})
    (failed,) = [a for a in actions if a[1] == "dispense" and a[-1] is not None]
    assert failed[3]["reported_ml"] == 13.5 and failed[3]["volume_ml"] == 4.5
    resumed = ProtocolExecutor(steps, None, limits, 3.2)
    resumed.replay([(a[1], a[3], a[-1]) for a in actions if a[-1] is not None])
    assert resumed.contents.state() == live.contents.state()
    # a report that is no finite number counts as the volume asked, and nothing is kept for the replay: a NaN kept
    # became null in the journal, and every later resume failed on it (a reviewer's finding)
    for bad in (math.nan, math.inf):
        real.content_ml = 10.0  # the driver's own count of its syringe: full again, as filled by hand
        rig.instruments["electrolyte_pump"] = _Reporting(real, bad)
        actions.clear()
        live = ProtocolExecutor(steps, rig, limits, 3.2)
        try:
            with pytest.raises(DispenseMismatch):
                live.run("S0001", "c1ccccc1", {}, 4.5, lambda *a: actions.append(a))
        finally:
            rig.instruments["electrolyte_pump"] = real
        assert live.contents.state() == (4.5, {"electrolyte_pump": 5.5})
        assert all("reported_ml" not in a[3] for a in actions)
        resumed = ProtocolExecutor(steps, None, limits, 3.2)
        resumed.replay([(a[1], a[3], a[-1]) for a in actions if a[-1] is not None])
        assert resumed.contents.state() == live.contents.state()
    real.content_ml = 10.0  # the module's rig, as the next test expects it


class _Reporting:
    """A pump whose dispense reports ``volume`` whatever it pumped."""

    def __init__(self, pump: object, volume: float) -> None:
        self.pump, self.volume = pump, volume

    def dispense(self, volume_ml: float, rate_ml_min: float) -> float:
        self.pump.dispense(volume_ml, rate_ml_min)  # type: ignore[attr-defined]
        return self.volume

    def __getattr__(self, name: str) -> object:
        return getattr(self.pump, name)


def test_the_ne1000_driver_refuses_a_rate_over_the_limit_before_sending() -> None:
    limits = SafetyLimits(2.0, 10.0, (-1.0, 1.0), max_rate_ml_min=10.0)
    with PtyDevice(NE1000Emulator()) as device:
        pump = NE1000Pump.open(device.port, limits=limits, time_scale=math.inf, poll_s=0.0)
        try:
            sent = len(device.received)
            with pytest.raises(SafetyLimitExceeded, match="rate of 5000 mL/min exceeds the limit of 10 mL/min"):
                pump.dispense(0.1, 5000.0)
            with pytest.raises(SafetyLimitExceeded, match="rate of 9884 mL/min"):
                pump.set_rate(9884, RateUnit.ML_MIN)
            with pytest.raises(SafetyLimitExceeded, match="rate of 600 mL/min"):
                pump.set_rate(600_000, RateUnit.UL_MIN)
            assert len(device.received) == sent
            assert pump.dispense(0.1, 10.0) == pytest.approx(0.1)  # at the limit is allowed
        finally:
            pump.close()


@pytest.mark.parametrize(("sections", "field"), [
    ({"conditions": {"scan_rate_v_s": [1e-9, 0.5]}}, "conditions.scan_rate_v_s: must lie within 0.0001..10 V/s"),
    ({"conditions": {"scan_rate_v_s": 50.0}}, "conditions.scan_rate_v_s: must lie within"),
    ({"protocol": ["load_sample", {"cv": {"scan_rate_v_s": 1e-300}}], "conditions": {}},
     "protocol[1].cv.scan_rate_v_s:"),
    ({"protocol": ["load_sample", {"wait": {"seconds": 1e300}}, "cv"]}, "protocol[1].wait.seconds:"),
    ({"protocol": ["load_sample", {"cv": {"n_scans": 10_000_000}}]}, "protocol[1].cv.n_scans:"),
    ({"protocol": ["load_sample", {"cv": {"e_step_v": 1e-12}}]}, "protocol[1].cv.e_step_v:"),
    ({"world": {"time_scale": 1e-300}}, "world.time_scale: must be 0 (zero latency) or at least 0.001"),
    ({"safety": {"max_rate_ml_min": -5.0}}, "safety.max_rate_ml_min:"),
    ({"safety": {"cell_volume_ml": 0.0}}, "safety.cell_volume_ml:"),
    # the limits the executor checks at run time, refused by validate with the field (and the line) named
    ({"protocol": ["load_sample", {"dispense": {"pump": "analyte_pump", "volume_ml": 0.5, "rate_ml_min": 60.0,
                                                "fluid": "sample"}}, "cv"], "safety": {"max_rate_ml_min": 20.0}},
     "protocol[1].dispense.rate_ml_min: rate of 60 mL/min exceeds the limit of 20 mL/min"),
    ({"protocol": ["load_sample", *[{"dispense": {"pump": "electrolyte_pump", "volume_ml": 4.0, "rate_ml_min": 5.0,
                                                  "fluid": "electrolyte"}}] * 3, "cv"],
      "safety": {"cell_volume_ml": 10.0}},
     "protocol[3].dispense.volume_ml: electrolyte_pump: the cell would hold 12 mL, more than its 10 mL"),
])
def test_validate_refuses_options_out_of_range_in_one_line(tmp_path, labloop, write_campaign, sections: dict,
                                                           field: str) -> None:
    result = labloop("validate", write_campaign(tmp_path, **sections), "--dry-run")
    assert result.returncode == 2, result.stdout
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert field in result.stderr


def test_validate_accepts_the_new_limits_and_the_runner_gets_them(tmp_path, write_campaign) -> None:
    campaign = load_campaign(write_campaign(tmp_path, safety={"max_rate_ml_min": 12.5, "cell_volume_ml": 8.0},
                                            world={"time_scale": 0.5}))
    limits = campaign.safety.limits()
    assert (limits.max_rate_ml_min, limits.cell_volume_ml) == (12.5, 8.0)


def test_a_pump_with_its_own_syringe_is_held_to_it(tmp_path, labloop, write_campaign) -> None:
    """One safety.syringe_ml for every pump let a 3 mL dispense through the 1 mL analyte syringe (a newcomer's
    trial); safety.syringes_ml gives a pump its own, checked by validate with the line and by its driver."""
    three = [{"dispense": {"pump": "analyte_pump", "volume_ml": 3.0, "rate_ml_min": 0.5, "fluid": "sample",
                           "refill": True}}]
    protocol = ["load_sample", *three, {"cv": {"e_begin_v": -0.8, "e_vertex1_v": 1.95, "e_vertex2_v": -0.8}}, "rinse"]
    own = {"max_dispense_ml": 5.0, "syringe_ml": 10.0, "syringes_ml": {"analyte_pump": 1.0}}
    refused = labloop("validate", write_campaign(tmp_path, protocol=protocol, safety=own), "--dry-run")
    assert refused.returncode == 2
    assert ("protocol[1].dispense.volume_ml: dispense of 3 mL exceeds the limit of 1 mL (analyte_pump's syringe, "
            "safety.syringes_ml)") in refused.stderr
    shared = labloop("validate", write_campaign(tmp_path, protocol=protocol, safety={"syringe_ml": 10.0}), "--dry-run")
    assert shared.returncode == 0, shared.stderr  # as before: one syringe for all
    for syringes, says in (({"potentiostat": 1.0}, "'potentiostat' is not a pump"),
                           ({"analyte_pmp": 1.0}, "safety.syringes_ml.analyte_pmp: 'analyte_pmp' is not one of "
                                             "analyte_pump, electrolyte_pump; did you mean 'analyte_pump'? (the pumps "
                                             "the protocol uses)")):
        wrong = labloop("validate", write_campaign(tmp_path, safety={"syringes_ml": syringes}), "--dry-run")
        assert wrong.returncode == 2 and says in wrong.stderr, wrong.stderr
    campaign = load_campaign(write_campaign(tmp_path, safety=own))
    with build_rig(campaign, dry_run=True, world=build_world(campaign)) as rig:
        pump = rig.instruments["analyte_pump"]
        assert (pump.limits.syringe_ml, pump.limits.max_dispense_ml) == (1.0, 1.0)  # the driver's own check too
        assert rig.instruments["electrolyte_pump"].limits.syringe_ml == 10.0
        before = wire(rig)
        with pytest.raises(SafetyLimitExceeded, match="dispense of 3 mL exceeds the limit of 1 mL"):
            pump.dispense(3.0, 0.5)
        assert wire(rig) == before


def test_a_rate_the_syringe_cannot_reach_is_refused_before_anything_moves(rig: Rig) -> None:
    """1 mL/min is under max_rate_ml_min but faster than the pump drives the example's 4.61 mm syringe: the
    pump answered ?OOR mid-experiment, three times, and the run stopped with exit 1 (a newcomer's trial)."""
    pump = rig.instruments["analyte_pump"]
    low, high = pump.rate_range_ml_min
    assert 0 < low < 0.5 < high < 1.0  # 0.851 mL/min for 4.61 mm
    before = wire(rig)
    fast = ["load_sample", {"dispense": {"pump": "analyte_pump", "volume_ml": 0.5, "rate_ml_min": 1.0,
                                         "fluid": "sample"}}, {"cv": {"half_width_v": 0.3}}]
    with pytest.raises(ConfigError, match=r"protocol\[1\]\.dispense: rate 1 mL/min is beyond what "
                                          r"'analyte_pump' can drive its syringe at, 1.17e-05..0.851 mL/min"):
        ProtocolExecutor(fast, rig, SafetyLimits(5.0, 10.0, (-3.0, 3.0)), 3.2).check()
    # a rate the step does not give is its default, and the message says where it came from
    default = ["load_sample", {"dispense": {"pump": "electrolyte_pump", "volume_ml": 0.5, "rate_ml_min": 0.5,
                                            "fluid": "sample"}}, {"cv": {"half_width_v": 0.3}},
               {"add_standard": {"pump": "analyte_pump", "volume_ml": 0.05}}]
    with pytest.raises(ConfigError, match=r"protocol\[3\]\.add_standard: rate 1 mL/min \(the add_standard step's "
                                          r"default: give it a rate_ml_min\) is beyond what 'analyte_pump'"):
        ProtocolExecutor(default, rig, SafetyLimits(5.0, 10.0, (-3.0, 3.0)), 3.2).check()
    assert wire(rig) == before


def test_an_instrument_whose_port_is_gone_refuses_the_next_experiment_before_anything_moves(rig: Rig) -> None:
    """A pump whose port vanished while idle (its emulator stopped, a USB adapter reset) was found only at its own
    step, after the sample had been loaded and dispensed, and its dispense was counted into the cell though it never
    began (a hardware trial): the next experiment is refused before its first action, the rig needing a person."""
    from labloop.core.errors import RigNotReady

    limits = SafetyLimits(5.0, 10.0, (-3.0, 3.0))
    # the ports of a real rig (compose.build_rig gives a dry run's none: its disconnect fault is an experiment's),
    # here the emulators' pseudo-terminals
    rig.ports = {name: emulation.port for name, emulation in rig.simulation.emulations.items()}
    protocol = ["load_sample", {"dispense": {**ELECTROLYTE["dispense"], "volume_ml": 0.5, "refill": True}},
                {"cv": {"half_width_v": 0.4}}]
    ProtocolExecutor(protocol, rig, limits, 3.2).run("S0001", "c1ccccc1", {}, 3.2 + 0.5, lambda *a: None)
    gone = rig.simulation.emulations["electrolyte_pump"]
    port = gone.port
    gone.stop()
    before = {name: count for name, count in wire(rig).items() if name != "electrolyte_pump"}
    actions: list[tuple] = []
    with pytest.raises(RigNotReady, match=rf"instruments\.electrolyte_pump: its port {port} is gone \(unplugged, "
                                          r"switched off, or its USB adapter reset\?\) before the experiment began: "
                                          "nothing of it ran") as refused:
        ProtocolExecutor(protocol, rig, limits, 3.2).run("S0002", "c1ccccc1", {}, 3.2 + 0.5,
                                                         lambda *a: actions.append(a))
    assert refused.value.needs == "port" and actions == []
    assert {name: count for name, count in wire(rig).items() if name != "electrolyte_pump"} == before
    from labloop.orchestrator.loop.runner import person_advice

    assert person_advice(refused.value, Path("runs/x.db")) == (
        "plug electrolyte_pump back in and switch it on, then `labloop resume runs/x.db` (with "
        "--port electrolyte_pump=PORT if it came back under another name)")
