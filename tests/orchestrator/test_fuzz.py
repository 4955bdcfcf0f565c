"""Property-based tests (hypothesis, issue 17): whatever a user writes or a device sends, labloop answers with a
value or its own one-line error, never another exception.

- the campaign file (``read_yaml`` + ``load_campaign``): any text, and the tiny campaign with any section or
  field replaced by any YAML value, gives a :class:`Campaign` or a :class:`CampaignError` whose message is one
  line;
- protocol steps (``parse_steps``): any list of anything gives steps or :class:`Problems`;
- device replies: any bytes into the NE-1000 reply parser and the MethodSCRIPT line parsers give a reply or
  None or a typed :class:`InstrumentError`; and a recorded conversation with the emulators (a real pty), its
  replies corrupted anywhere, replayed to the drivers gives a result or an :class:`InstrumentError`.

Each property is bounded (``max_examples``) so the suite stays fast; ``deadline=None`` because the machine is
shared and a slow example is not a failure.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labloop.core.errors import CampaignError, InstrumentError, Problems, ProtocolError
from labloop.instruments.contracts import SafetyLimits
from labloop.instruments.emstat import EmStatPotentiostat
from labloop.instruments.methodscript import classify, parse_error, parse_package, parse_script_number
from labloop.instruments.ne1000 import NE1000Bus, NE1000Pump, parse_reply
from labloop.instruments.transport import ReplayTransport, load_capture
from labloop.instruments.voltammogram import CVParams
from labloop.orchestrator.config.campaign import Campaign, load_campaign
from labloop.protocols.steps import Step, parse_steps
from labloop.sim.cv_physics import CellParams
from labloop.sim.emstat_emulator import EmStatEmulator
from labloop.sim.emulation import EmulatorContext
from labloop.sim.ne1000_emulator import NE1000Emulator
from labloop.sim.pty_device import PtyDevice, TimeScale

BOUNDED = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                           HealthCheck.too_slow])
LIMITS = SafetyLimits(max_dispense_ml=2.0, syringe_ml=10.0, potential_window_v=(-1.0, 1.0))

#: any value YAML can hold, including the awkward ones (NaN, infinities, huge integers, empty containers)
scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10**40), max_value=10**40),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40))
yaml_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                           max_leaves=12)


def _assert_one_line(error: CampaignError) -> None:
    assert "\n" not in str(error) and str(error)
    assert all("\n" not in message for message in error.messages)


def _load(path: Path) -> None:
    try:
        assert isinstance(load_campaign(path), Campaign)
    except CampaignError as exc:
        _assert_one_line(exc)


#: text made of what YAML gives meaning to: numbers, dates, times, flow and block structure, anchors, tags
yaml_like = st.text(alphabet="0123456789-:.eE+x_oOb \n[]{},&*!#|>'\"abTtZz", max_size=120)


@BOUNDED
@given(text=st.one_of(st.text(max_size=300), yaml_like, st.builds("seed: {}\nname: {}\n".format, yaml_like, yaml_like)))
def test_any_text_is_a_campaign_or_one_line(tmp_path_factory, text: str) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "campaign.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _load(path)


@settings(BOUNDED, max_examples=60)
@given(data=st.data())
def test_any_value_in_any_field_is_a_campaign_or_one_line(tmp_path_factory, write_campaign, data) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    path = write_campaign(folder)
    campaign: dict[str, Any] = yaml.safe_load(path.read_text())
    section = data.draw(st.sampled_from([*sorted(campaign), "safety", "world", "schedule", "surrogate"]))
    current = campaign.get(section)
    if isinstance(current, dict) and current and data.draw(st.booleans()):
        field = data.draw(st.sampled_from([*sorted(current), "unknown_field"]))
        campaign[section] = {**current, field: data.draw(yaml_values)}
    else:
        campaign[section] = data.draw(yaml_values)
    path.write_text(yaml.safe_dump(campaign, allow_unicode=True))
    _load(path)


@BOUNDED
@given(steps=st.one_of(yaml_values, st.lists(st.one_of(
    st.sampled_from(["load_sample", "cv", "rinse", "wait", "dispense", "analyze"]),
    st.dictionaries(st.sampled_from(["load_sample", "cv", "rinse", "wait", "dispense", "analyze"]),
                    st.one_of(yaml_values, st.dictionaries(st.sampled_from(
                        ["seconds", "scan_rate_v_s", "n_scans", "e_step_v", "half_width_v", "e_begin_v",
                         "e_vertex1_v", "e_vertex2_v", "pump", "volume_ml", "rate_ml_min", "fluid", "refill",
                         "window_length", "changer", "potentiostat"]), yaml_values, max_size=4)),
                    min_size=1, max_size=1)), max_size=6)))
def test_any_protocol_is_steps_or_problems(steps: Any) -> None:
    try:
        parsed = parse_steps(steps)
    except Problems as exc:
        assert exc.problems and all(isinstance(p.message, str) for p in exc.problems)
        return
    assert parsed and all(isinstance(step, Step) for step in parsed)


@settings(max_examples=200, deadline=None)
@given(frame=st.one_of(st.binary(max_size=40), st.builds(lambda body: b"\x02" + body + b"\x03", st.binary(max_size=30)),
                       st.builds(lambda a, s, d: b"\x02" + a + s + d + b"\x03", st.sampled_from([b"00", b"01", b"99"]),
                                 st.sampled_from([b"S", b"I", b"W", b"A?", b"X"]), st.binary(max_size=12))))
def test_any_bytes_are_an_ne1000_reply_or_a_protocol_error(frame: bytes) -> None:
    try:
        reply = parse_reply(frame, "fuzz")
    except ProtocolError:
        return
    assert reply.raw == frame and 0 <= reply.address <= 99


@settings(max_examples=200, deadline=None)
@given(line=st.one_of(
    st.text(max_size=60),
    st.builds(lambda body: "P" + body, st.text(alphabet="0123456789ABCDEFabcdefnmupkMGTa ;,", max_size=60)),
    st.builds(lambda c, body: c + "!" + body, st.sampled_from(["", "Z", "e"]),
              st.text(alphabet="0123456789ABCDEF:x ", max_size=10))))
def test_any_line_is_a_methodscript_reply_or_none(line: str) -> None:
    classify(line)
    parse_error(line)
    parse_script_number(line)
    variables = parse_package(line)
    assert variables is None or all(isinstance(v.value, float) for v in variables)


# -- recorded conversations with the emulators, replies corrupted, replayed to the drivers ----------------------

@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> dict[str, Path]:
    """One real conversation per driver, captured on the emulators' ptys: a pump's dispense, a short CV."""
    folder = tmp_path_factory.mktemp("captures")
    captures = {"ne1000": folder / "ne1000.jsonl", "emstat": folder / "emstat.jsonl"}
    with PtyDevice(NE1000Emulator(time_scale=TimeScale.zero_latency())) as device:
        pump = NE1000Pump.open(device.port, limits=LIMITS, capture=captures["ne1000"], time_scale=math.inf,
                               poll_s=0.0, retries=0)
        pump.dispense(0.1, 1.0)
        pump.close()
    context = EmulatorContext.standalone(CellParams(e0_v=0.05, conc_mm=1.0), time_scale=TimeScale.zero_latency())
    with PtyDevice(EmStatEmulator(context.contents, time_scale=context.time_scale)) as device:
        potentiostat = EmStatPotentiostat.open(device.port, limits=LIMITS, capture=captures["emstat"],
                                               time_scale=math.inf, retries=0, error_pause_s=0.0)
        potentiostat.run_cv(CV)
        potentiostat.close()
    return captures


CV = CVParams(e_begin_v=-0.2, e_vertex1_v=0.3, e_vertex2_v=-0.2, scan_rate_v_s=0.5, e_step_v=0.01)


def corrupted(path: Path, out: Path, data, *, rx_only_after: int = 0) -> Path:
    """``path`` with the reply bytes of one ``rx`` record flipped, cut, extended or replaced."""
    lines = path.read_text().splitlines()
    rx = [i for i, line in enumerate(lines) if json.loads(line)["dir"] == "rx" and i >= rx_only_after]
    index = data.draw(st.sampled_from(rx))
    record = json.loads(lines[index])
    raw = bytearray.fromhex(record["hex"])
    how = data.draw(st.sampled_from(["flip", "cut", "insert", "replace"]))
    at = data.draw(st.integers(min_value=0, max_value=max(0, len(raw) - 1)))
    if how == "flip" and raw:
        raw[at] ^= 1 << data.draw(st.integers(min_value=0, max_value=7))
    elif how == "cut":
        del raw[at:at + data.draw(st.integers(min_value=1, max_value=8))]
    elif how == "insert":
        raw[at:at] = data.draw(st.binary(min_size=1, max_size=8))
    else:
        raw = bytearray(data.draw(st.binary(max_size=40)))
    record["hex"] = raw.hex()
    lines[index] = json.dumps(record)
    out.write_text("\n".join(lines) + "\n")
    return out


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_corrupted_pump_replies_give_a_result_or_an_instrument_error(recordings, tmp_path_factory, data) -> None:
    path = corrupted(recordings["ne1000"], tmp_path_factory.mktemp("replay") / "ne1000.jsonl", data)
    assert load_capture(path)
    try:
        pump = NE1000Pump(NE1000Bus(ReplayTransport(path), retries=0), limits=LIMITS, time_scale=math.inf,
                          poll_s=0.0)
        done = pump.dispense(0.1, 1.0)
    except InstrumentError:
        return
    assert done == pytest.approx(0.1, rel=1e-3)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_corrupted_potentiostat_replies_give_a_voltammogram_or_an_instrument_error(recordings, tmp_path_factory,
                                                                                   data) -> None:
    path = corrupted(recordings["emstat"], tmp_path_factory.mktemp("replay") / "emstat.jsonl", data)
    try:
        potentiostat = EmStatPotentiostat(ReplayTransport(path), limits=LIMITS, time_scale=math.inf, retries=0,
                                          error_pause_s=0.0)
        voltammogram = potentiostat.run_cv(CV)
    except InstrumentError:
        return
    assert len(voltammogram) == CV.n_points
