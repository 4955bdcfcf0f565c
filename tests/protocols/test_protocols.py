"""Protocol steps and their executor: parameter problems named by step and YAML line, checks before any byte
is sent, and the example protocol measuring a library molecule on the emulators of a dry-run rig."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from labloop.core.errors import CampaignError, ConfigError, Problems, SafetyLimitExceeded
from labloop.orchestrator.compose import build_executor, build_rig, build_world
from labloop.orchestrator.config.campaign import Campaign, load_campaign
from labloop.orchestrator.loop.rig import Rig
from labloop.protocols.executor import ProtocolExecutor
from labloop.protocols.steps import CV, Dispense, parse_steps, pumps_holding_sample
from labloop.sim.world import World

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def problems(raw) -> list[tuple[tuple, str]]:
    with pytest.raises(Problems) as info:
        parse_steps(raw)
    return [(p.loc, p.message) for p in info.value.problems]


def test_example_protocol_parses_into_step_values():
    campaign = load_campaign(EXAMPLES / "campaign.yaml")
    steps = parse_steps(list(campaign.protocol.steps))
    assert [s.name for s in steps] == ["load_sample", "dispense", "dispense", "cv", "rinse"]
    assert pumps_holding_sample(steps) == {"analyte_pump"}
    assert isinstance(steps[1], Dispense) and steps[1].refill
    assert isinstance(steps[3], CV) and not steps[3].around_candidate


def test_step_problems_name_the_step_and_the_field():
    found = problems(["load_sample", {"dispense": {"pump": "p", "volume_ml": -1, "rate_ml_min": 1, "fluid": "sample"}},
                      {"cv": {"half_width_v": 0.3, "colour": "red"}}, {"stir": {}}])
    assert found[0][0] == (1, "dispense", "volume_ml") and "greater than or equal to 0.001" in found[0][1]
    assert found[1][0] == (2, "cv", "colour") and "unknown field" in found[1][1]
    assert found[2] == ((3,), "'stir' is not one of load_sample, dispense, wait, cv, rinse, analyze, purge, blank, "
                                "eis, add_standard, clean, polish")
    # a misspelt step, or one written the British way or with a hyphen, is offered its name (a chemist's trial)
    for written, meant in (("rinze", "rinse"), ("analyse", "analyze"), ("load-sample", "load_sample")):
        (said,) = problems([written])
        assert said[1].endswith(f"; did you mean {meant!r}?"), said
    begin_outside = {"cv": {"e_begin_v": 2.0, "e_vertex1_v": 1.0, "e_vertex2_v": 0.0}}
    assert problems([begin_outside])[0][0] == (0, "cv", "e_begin_v")
    assert problems([{"cv": {"e_vertex1_v": 1.0}}])[0][0] == (0, "cv", "e_begin_v")
    assert problems([{"analyze": {"min_peak_snr": -1}}, "cv"]) == [
        ((0, "analyze", "min_peak_snr"), "must be > 0, got -1")]
    # said at the one missing, and a share written for the mapping (pydantic's words: an adversarial trial)
    assert problems([{"cv": {"e_begin_v": -0.8, "e_vertex1_v": 1.0}}])[0][0] == (0, "cv", "e_vertex2_v")
    assert problems(["load_sample", {"cv": {"ir_compensation": 0.85}}]) == [
        ((1, "cv", "ir_compensation"), "must be a mapping, e.g. {fraction: 0.85} (the share of the measured Ru "
                                       "compensated) (got 0.85)")]
    # settings under which no wave could be found, which failed every experiment of a run (a sample spent on each)
    # and passed validate (an adversarial trial): refused at their field
    assert problems(["cv", {"analyze": {"min_peak_share": 5}}]) == [
        ((1, "analyze", "min_peak_share"), "a share of the CV's current span, at most 1, got 5 (a percentage? 2% is "
                                           "0.02)")]
    for name in ("peak_fit_half_width_v", "smooth_window_v"):
        assert problems(["cv", {"analyze": {name: 5}}]) == [
            ((1, "analyze", name), "at most 0.2 V, got 5 (a wave's peak is about 0.1 V wide; millivolts? 40 mV is "
                                   "0.04)")]


def test_structure_one_cv_and_sample_only_after_loading():
    assert "exactly one cv, this one has 0" in problems(["load_sample", "rinse"])[0][1]
    assert problems(["cv", "cv"])[0][0] == (1, "cv")
    early = {"dispense": {"pump": "p", "volume_ml": 1.0, "rate_ml_min": 1.0, "fluid": "sample"}}
    assert problems([early, "load_sample", "cv"]) == [
        ((0, "dispense", "fluid"), "dispenses the sample before load_sample")]
    assert problems(["analyze", "cv"])[0][0] == (0, "analyze")


def test_campaign_points_at_the_line_of_a_bad_step_parameter(tmp_path):
    (tmp_path / "library.csv").write_text("smiles\nc1ccccc1\n")
    (tmp_path / "p.yaml").write_text("- load_sample\n- cv\n- wait: {seconds: soon}\n")
    (tmp_path / "c.yaml").write_text(textwrap.dedent("""\
        name: bad
        library: {file: library.csv}
        objective: {quantity: oxidation_potential, goal: maximize}
        instruments: {sampler: {driver: sim-sampler}}
        protocol: p.yaml
        """))
    with pytest.raises(CampaignError) as info:
        load_campaign(tmp_path / "c.yaml")
    assert "p.yaml:3: protocol[2].wait.seconds: " in str(info.value)


@pytest.fixture(scope="module")
def campaign() -> Campaign:
    example = load_campaign(EXAMPLES / "campaign.yaml")
    assert example.world is not None
    return example.model_copy(update={"world": example.world.model_copy(update={"noise_v": 0.0})})


@pytest.fixture(scope="module")
def world(campaign) -> World:
    return build_world(campaign)


@pytest.fixture(scope="module")
def rig(campaign, world) -> Rig:
    with build_rig(campaign, dry_run=True, world=world) as rig:
        yield rig


def test_example_protocol_measures_the_world_truth_on_the_emulators(campaign, world, rig):
    executor = build_executor(campaign, rig)
    actions = []
    smiles = next(s for s in world.table.values if 3.5 < world.truth_v(s) < 4.8)
    world.note_sample("vial-1", smiles)  # the composition module names every library vial
    outcome = executor.run("vial-1", smiles, {"scan_rate_v_s": 0.2}, None, lambda *a: actions.append(a))
    assert outcome.quality_ok and outcome.analysis.reference == "Ag/Ag+"
    assert outcome.potential_v_vs_li == pytest.approx(world.truth_v(smiles), abs=0.02)
    assert outcome.voltammogram.params.scan_rate_v_s == 0.2  # the condition replaced the step's default
    assert [a[-1] for a in actions[::2]] == [None] * 5  # every step is announced before it runs
    assert [a[0] for a in actions] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    # the scan's settings as it starts: a run killed mid-scan journalled its cv action with none (a trial)
    assert actions[6][3]["scan_rate_v_s"] == 0.2 and actions[6][3]["e_vertex1_v"] == 1.95
    actions = actions[1::2]
    assert [(a[0], a[1], a[2], a[-1]) for a in actions] == [
        (0, "load_sample", "sampler", "ok"), (1, "dispense", "analyte_pump", "ok"),
        (2, "dispense", "electrolyte_pump", "ok"), (3, "cv", "potentiostat", "ok"), (4, "rinse", "cell", "ok")]
    assert actions[1][3]["dispensed_ml"] == pytest.approx(0.5) and actions[1][3]["refilled_ml"] == pytest.approx(0.5)
    assert actions[3][3]["e_vertex1_v"] == 1.95 and actions[0][4] <= actions[0][5]
    states = rig.simulation.emulator_states()
    assert states["cell"]["volume_ml"] == 0.0 and states["potentiostat"]["cell_on"] is False  # rinsed, off


def test_window_around_the_candidate_is_on_the_reference_scale(campaign, world, rig):
    executor = ProtocolExecutor(["load_sample", *campaign.protocol.steps[1:3], {"cv": {"half_width_v": 0.4}}, "rinse"],
                                rig, campaign.safety.limits(), campaign.cell.reference_offset_v)
    smiles = next(s for s in world.table.values if 3.5 < world.truth_v(s) < 4.8)
    world.note_sample("vial-2", smiles)  # the composition module names every library vial
    outcome = executor.run("vial-2", smiles, {}, world.truth_v(smiles) + 0.1, lambda *a: None)
    params = outcome.voltammogram.params
    centre = world.truth_v(smiles) + 0.1 - 3.2
    assert (params.e_begin_v, params.e_vertex1_v) == pytest.approx((centre - 0.4, centre + 0.4), abs=0.001)
    assert outcome.potential_v_vs_li == pytest.approx(world.truth_v(smiles), abs=0.02)
    with pytest.raises(ConfigError, match="needs its predicted potential"):
        executor.run("vial-2", smiles, {}, None, lambda *a: None)


def test_check_refuses_before_any_byte_is_sent(campaign, rig):
    limits, offset = campaign.safety.limits(), campaign.cell.reference_offset_v
    before = rig.simulation.emulator_states()
    flood = ["load_sample", {"dispense": {"pump": "analyte_pump", "volume_ml": 6.0, "rate_ml_min": 0.5,
                                          "fluid": "sample"}}, "cv"]
    with pytest.raises(SafetyLimitExceeded, match=r"protocol\[1\]\.dispense: dispense of 6 mL exceeds"):
        ProtocolExecutor(flood, rig, limits, offset).check()
    beyond = ["load_sample", {"cv": {"e_begin_v": 0.0, "e_vertex1_v": 3.5, "e_vertex2_v": -0.5}}]
    actions = []
    with pytest.raises(SafetyLimitExceeded, match=r"protocol\[1\]\.cv: potential 3.5 V is outside"):
        ProtocolExecutor(beyond, rig, limits, offset).run("vial-3", "c1ccccc1", {}, None, lambda *a: actions.append(a))
    with pytest.raises(ConfigError, match=r"protocol\[1\]\.dispense: no instrument 'syringe'"):
        ProtocolExecutor(["load_sample", {"dispense": {"pump": "syringe", "volume_ml": 1.0, "rate_ml_min": 1.0,
                                                       "fluid": "sample"}}, "cv"], rig, limits, offset).check()
    with pytest.raises(ConfigError, match="'sampler' is not a potentiostat"):
        ProtocolExecutor([{"cv": {"potentiostat": "sampler"}}], rig, limits, offset).check()
    # around the candidate, the limits are checked as soon as the window is known: before the first action,
    # so a candidate the limits refuse moves nothing (the runner then counts it as refused, not as a fault); a
    # window that fits them is moved within them (tests/protocols/test_safety_limits.py), one wider is refused
    wide = ProtocolExecutor(["load_sample", {"cv": {"half_width_v": 1.9}}], rig, limits, offset)
    with pytest.raises(SafetyLimitExceeded, match=r"protocol\[1\]\.cv"):
        wide.run("vial-3", "c1ccccc1", {}, 6.0, lambda *a: actions.append(a))
    assert actions == []
    with pytest.raises(ConfigError, match="condition 'conc_mm' is a parameter of no step"):
        wide.run("vial-3", "c1ccccc1", {"conc_mm": 2.0}, 4.0, lambda *a: None)
    after = rig.simulation.emulator_states()
    assert all(after[name]["received_bytes"] == before[name]["received_bytes"] for name in before if name != "cell")


def test_campaign_refuses_a_protocol_naming_an_instrument_it_lacks(tmp_path):
    (tmp_path / "library.csv").write_text("smiles\nc1ccccc1\n")
    (tmp_path / "c.yaml").write_text(textwrap.dedent("""\
        name: bad
        library: {file: library.csv}
        objective: {quantity: oxidation_potential, goal: maximize}
        instruments: {sampler: {driver: sim-sampler}, stat: {driver: emstat, port: /dev/null}}
        protocol:
          - load_sample
          - dispense: {pump: analyte_pump, volume_ml: 0.5, rate_ml_min: 0.5, fluid: sample, refill: true}
          - cv: {potentiostat: stat}
        """))
    with pytest.raises(CampaignError) as info:
        load_campaign(tmp_path / "c.yaml")
    # the rig has no pump at all: said so, not a list of instruments that are not pumps (a newcomer was offered
    # the sample changer and the potentiostat)
    assert info.value.messages[0].endswith("c.yaml:7: protocol[1].dispense.pump: 'analyte_pump': the rig has no pump")
    (tmp_path / "c.yaml").write_text((tmp_path / "c.yaml").read_text().replace(
        "port: /dev/null}}", "port: /dev/null}, pump_a: {driver: ne1000}}"))
    with pytest.raises(CampaignError) as info:
        load_campaign(tmp_path / "c.yaml")
    assert info.value.messages[0].endswith("protocol[1].dispense.pump: 'analyte_pump' is not one of pump_a (the "
                                           "rig's pumps)")


@pytest.mark.parametrize(("half_width", "centre", "step"),
                         [(1.85, 0.15, 0.002), (0.4, -0.3, 0.002), (0.39, -0.31, 0.002)])
def test_a_window_moved_to_a_limit_lies_within_it(half_width, centre, step):
    """A window moved to a limit was refused by float noise (0.15 - 1.85 is -1.7000000000000002, outside -1.7..2 V),
    every experiment of a run that validate passed (an adversarial trial): its vertices are the limits exactly."""
    from labloop.instruments.contracts import SafetyLimits

    params = CV.model_validate({"half_width_v": half_width, "e_step_v": step}).params(centre)
    low, high = centre - half_width, centre + half_width
    limits = SafetyLimits(5.0, 10.0, (round(low, 9), round(high, 9)))
    limits.check_potentials(params.e_begin_v, params.e_vertex1_v, params.e_vertex2_v, where="cv")  # raises if not
