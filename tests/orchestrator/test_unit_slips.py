"""Units slipped while writing a protocol or campaign (2 for a 2 uA blank limit, 100 for 100 mV/s, 0.00091 for
0.91 mM) are said in the one line that names the file's line and the field, with the unit most likely meant and
the value to write instead. Before, a 2 A blank limit and a 0.91 uM analyte (every D a million times too large)
passed without a word, and a scan rate in mV/s got pydantic's "less than or equal to 10"."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

#: a blank up to the safety limit (over all a cv scans, fixed or around the hits), scans at two rates for D, and
#: ferrocene-free pumping: the fields a chemist writes units into
PROTOCOL = """\
- dispense: {pump: electrolyte_pump, volume_ml: 4.5, rate_ml_min: 5.0, fluid: electrolyte, refill: true}
- blank: {e_vertex2_v: 2.0, max_current_a: 2.0e-6, scan_rate_v_s: 0.1}
- load_sample
- dispense: {pump: analyte_pump, volume_ml: 0.5, rate_ml_min: 0.5, fluid: sample, refill: true}
- cv: {e_begin_v: -0.8, e_vertex1_v: 1.5, e_vertex2_v: -0.8, e_step_v: 0.005, scan_rates_v_s: [0.1, 0.2],
       analyte_mm: 1.0}
- rinse
"""
SAFETY = {"max_dispense_ml": 5, "syringe_ml": 10, "syringes_ml": {"analyte_pump": 1.0},
          "potential_limits_v": [-1.7, 2.0], "cell_volume_ml": 10}


#: the warning every cv around the candidate gets in a campaign without past measurements, and the one PROTOCOL's cv
#: gets for computing D and k0 with no eis step (their own tests below): left out of the others' stderr, which each
#: look at another warning
UNCALIBRATED = "around each candidate's predicted potential: before the first measurements calibrate them"
NO_EIS = ("no eis step before this cv measures Ru", "no ir_compensation: the whole ohmic drop")


def validate(labloop, write_campaign, folder: Path, old: str | tuple[str, ...], new: str | tuple[str, ...],
             *options: str, conditions: dict | None = None, uncalibrated: bool = False, **sections: object):
    """``labloop validate`` of a tiny campaign whose protocol file has ``old`` replaced by ``new`` (or each of
    several in turn: an iR compensation needs an eis step too): (result, the protocol file, the line of the (last)
    replacement). Its stderr without :data:`NO_EIS`'s lines, and :data:`UNCALIBRATED`'s unless ``uncalibrated``."""
    olds, news = (old, new) if isinstance(old, tuple) else ((old,), (new,))
    text = PROTOCOL
    for before, after in zip(olds, news, strict=True):
        assert before in text, before
        text = text.replace(before, after, 1)
    protocol = folder / "steps.yaml"
    protocol.write_text(text)
    line = next(n for n, content in enumerate(text.splitlines(), start=1) if news[-1].splitlines()[0] in content)
    campaign = write_campaign(folder, protocol=str(protocol), **{"safety": SAFETY, "conditions": conditions or {},
                                                                 **sections})
    result = labloop("validate", campaign, "--dry-run", *options)
    left_out = NO_EIS if uncalibrated else (*NO_EIS, UNCALIBRATED)
    result.stderr = "".join(line for line in result.stderr.splitlines(keepends=True)
                            if not any(said in line for said in left_out))
    return result, protocol, line


def test_k0_from_a_cv_without_eis_or_compensation_is_warned_about(tmp_path, labloop, write_campaign):
    """An electrochemist's protocols computing D and k0 with no eis step, or with one and no compensation on the
    device, validated in silence, and k0 read 11-90x low (an ohmic drop read as slow kinetics): one line at the cv's
    scan rates says what that does to dEp and k0; with both, none."""
    protocol = tmp_path / "steps.yaml"
    campaign = write_campaign(tmp_path, protocol=str(protocol), safety=SAFETY, conditions={})
    cv_line = PROTOCOL.splitlines().index(next(line for line in PROTOCOL.splitlines() if "- cv:" in line)) + 1
    no_eis = ("no eis step before this cv measures Ru, so the ohmic drop, of unknown size, widens every dEp: the "
              "reversibility call reads it as slow kinetics, and k0 is given as lower bounds only; add an eis step "
              "before the cv and ir_compensation: {fraction: 0.85} to it (docs/lab-grade.md)")
    no_compensation = ("no ir_compensation: the whole ohmic drop the eis step measures is taken out after the scan, "
                       "which leaves part of it in dEp (k0 then a lower bound where that part could matter); "
                       "compensate most of it on the potentiostat, ir_compensation: {fraction: 0.85} "
                       "(docs/lab-grade.md)")
    with_eis = PROTOCOL.replace("- load_sample", "- eis\n- load_sample")
    compensated = with_eis.replace("analyte_mm: 1.0}", "analyte_mm: 1.0, ir_compensation: {fraction: 0.85}}")
    for text, index, line, said in [(PROTOCOL, 4, cv_line, no_eis), (with_eis, 5, cv_line + 1, no_compensation),
                                    (compensated, 5, None, None)]:
        protocol.write_text(text)
        result = labloop("validate", campaign, "--dry-run")
        assert result.returncode == 0, result.stderr
        expected = "" if said is None else f"warning: {protocol}:{line}: protocol[{index}].cv.scan_rates_v_s: {said}\n"
        assert result.stderr == expected, result.stderr


def test_a_cv_beginning_where_its_couple_has_reacted_is_warned_of(tmp_path, labloop, write_campaign):
    """An anolyte trial's cv began at -1.7 V, its reducing end, and scanned up first: validated in silence, and a
    reversible molecule failed as chemically irreversible. A cv beginning at the end of its window past the
    objective's wave (the most positive for an oxidation, the most negative for a reduction) is warned of; one that
    begins on the other side is not."""
    oxidising, protocol, line = validate(labloop, write_campaign, tmp_path, "e_begin_v: -0.8, e_vertex1_v: 1.5, "
                                         "e_vertex2_v: -0.8,", "e_begin_v: 1.5, e_vertex1_v: -0.8, e_vertex2_v: 1.5,")
    assert oxidising.returncode == 0, oxidising.stderr
    assert (f"warning: {protocol}:{line}: protocol[4].cv.e_begin_v: 1.5 V, the most positive potential of the scan: "
            "the cell sits there before it, so the molecule is oxidised before the scan begins and its forward peak is "
            "missing or small; begin on the negative side of the wave, with e_vertex1_v above e_begin_v"
            ) in oxidising.stderr.splitlines(), oxidising.stderr
    anolyte = tmp_path / "anolyte"
    anolyte.mkdir()
    reducing, _, _ = validate(labloop, write_campaign, anolyte, "e_begin_v: -0.8, e_vertex1_v: 1.5, e_vertex2_v: -0.8,",
                              "e_begin_v: -1.7, e_vertex1_v: 0.0, e_vertex2_v: -1.7,",
                              objective={"quantity": "reduction_potential", "goal": "minimize", "threshold_v": 1.8})
    assert "protocol[4].cv.e_begin_v: -1.7 V, the most negative potential of the scan" in reducing.stderr
    assert "molecule is reduced before the scan begins" in reducing.stderr, reducing.stderr
    fine, _, _ = validate(labloop, write_campaign, tmp_path, "e_begin_v: -0.8, e_vertex1_v: 1.5, e_vertex2_v: -0.8,",
                          "e_begin_v: -0.8, e_vertex1_v: 1.5, e_vertex2_v: -0.8,")
    assert "e_begin_v" not in fine.stderr, fine.stderr


def test_a_window_around_uncalibrated_predictions_is_warned_about(tmp_path, labloop, write_campaign):
    """A newcomer's cv around the candidate validated in silence, and its first ten proposals, centred on the prior's
    predictions 1.5-2.7 V above the measured potentials, were refused: one line at the half-width says so; past
    measurements, which calibrate the predictions from the start, silence it."""
    result, protocol, line = validate(labloop, write_campaign, tmp_path, "e_begin_v: -0.8, e_vertex1_v: 1.5, "
                                      "e_vertex2_v: -0.8,", "half_width_v: 0.4,", uncalibrated=True, prior=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        f"warning: {protocol}:{line}: protocol[4].cv.half_width_v: +/-0.4 V around each candidate's predicted "
        "potential: before the first measurements calibrate them, the predictions are the prior's, 1.4-2.7 V above a "
        "molecule's measured potential in the bundled data (docs/surrogate.md), so the first experiments' scans may "
        "miss their waves (a window beyond safety.potential_limits_v is moved within them); fixed vertices spanning "
        "the objective's window suit the first experiments (examples/protocols/cv_screen.yaml), or give "
        "past_measurements to calibrate from\n"), result.stderr
    # a reduction's read low, and a goal without a window has hits to span (a chemist's anolyte trial was told
    # "above" and "the objective's window")
    anolyte = tmp_path / "anolyte"
    anolyte.mkdir()
    reduction, _, _ = validate(labloop, write_campaign, anolyte, "e_begin_v: -0.8, e_vertex1_v: 1.5, "
                               "e_vertex2_v: -0.8,", "half_width_v: 0.4,", uncalibrated=True, prior=True,
                               objective={"quantity": "reduction_potential", "goal": "minimize", "threshold_v": 1.8})
    assert "1.4-2.7 V below a molecule's measured potential" in reduction.stderr, reduction.stderr
    assert "spanning the objective's hits" in reduction.stderr, reduction.stderr
    path = tmp_path / "past.csv"
    path.write_text("smiles,e_v\nc1ccccc1O,4.4\nCOc1ccccc1,4.3\nCc1ccccc1,4.9\n")
    past, _, _ = validate(labloop, write_campaign, tmp_path, "e_begin_v: -0.8, e_vertex1_v: 1.5, e_vertex2_v: -0.8,",
                          "half_width_v: 0.4,", uncalibrated=True, prior=True,
                          past_measurements={"file": str(path), "column": "e_v", "vs": "li"})
    assert UNCALIBRATED not in past.stderr, past.stderr


def test_the_protocol_as_written_validates_without_a_warning(tmp_path, labloop, write_campaign):
    result, _, _ = validate(labloop, write_campaign, tmp_path, "- rinse", "- rinse")
    assert result.returncode == 0 and result.stderr == "", result.stderr


#: (case, text in the protocol, its replacement, field, the one line's message)
REFUSED = [
    ("blank limit in uA written as A", "max_current_a: 2.0e-6", "max_current_a: 2",
     "protocol[1].blank.max_current_a", "2 A for a blank's current is more than a mm-size electrode passes in a few mL "
     "(at most 0.1 A): microamps written as amps? (2e-6)"),
    ("current range in uA written as A", "e_step_v: 0.005,", "e_step_v: 0.005, current_range_a: 100,",
     "protocol[4].cv.current_range_a", "100 A for a current range is more than a mm-size electrode passes in a few mL "
     "(at most 0.1 A): microamps written as amps? (0.0001)"),
    ("scan rate in mV/s", "e_step_v: 0.005,", "e_step_v: 0.005, scan_rate_v_s: 100,", "protocol[4].cv.scan_rate_v_s",
     "100 V/s is outside the scan rates a CV may use, 0.0001..10 V/s: mV/s written as V/s? (0.1 V/s)"),
    ("blank scan rate in mV/s", "scan_rate_v_s: 0.1}", "scan_rate_v_s: 50}", "protocol[1].blank.scan_rate_v_s",
     "50 V/s is outside the scan rates a CV may use, 0.0001..10 V/s: mV/s written as V/s? (0.05 V/s)"),
    ("potential step in mV", "e_step_v: 0.005,", "e_step_v: 5,", "protocol[4].cv.e_step_v",
     "5 V is outside the potential steps a CV may use, 0.0001..0.1 V: mV written as V? (0.005 V)"),
    ("EIS amplitude in mV", "- load_sample", "- eis: {amplitude_v: 10}\n- load_sample", "protocol[2].eis.amplitude_v",
     "10 V is outside the AC amplitudes a sweep may use, 0..0.25 V: mV written as V? (0.01 V)"),
    ("volume in uL beyond the syringe", "volume_ml: 0.5,", "volume_ml: 500,", "protocol[3].dispense.volume_ml",
     "dispense of 500 mL exceeds the limit of 1 mL (analyte_pump's syringe, safety.syringes_ml): uL written as mL? "
     "(0.5 mL)"),
    ("purge time in seconds", "- load_sample", "- purge: {minutes: 300, valve: manual}\n- load_sample",
     "protocol[2].purge.minutes",
     "300 min is outside the purge times a step may take, 0..120 min: s written as min? (5 min)"),
    ("iR compensation in percent", "e_step_v: 0.005,", "e_step_v: 0.005, ir_compensation: {fraction: 85},",
     "protocol[4].cv.ir_compensation.fraction", "85 is more than the whole (a share, 0..1): percent written as a "
     "share? (0.85)"),
    ("flow rate in uL/min beyond the cap", "rate_ml_min: 0.5,", "rate_ml_min: 500,", "protocol[3].dispense.rate_ml_min",
     "rate of 500 mL/min exceeds the limit of 50 mL/min (safety.max_rate_ml_min): uL/min written as mL/min? "
     "(0.5 mL/min)"),
    ("flow rate in uL/min beyond the syringe", "rate_ml_min: 0.5,", "rate_ml_min: 30,", "protocol[3].dispense",
     "rate 30 mL/min is beyond what 'analyte_pump' can drive its syringe at, 1.17e-05..0.851 mL/min: uL/min written "
     "as mL/min? (0.03 mL/min)"),
    ("a cv's rest in ms", "e_step_v: 0.005,", "e_step_v: 0.005, rest_s: 5000,", "protocol[4].cv.rest_s",
     "5000 s is outside the rests a cv may take before a scan, 0..600 s: ms written as s? (5 s)"),
    ("a negative rest", "e_step_v: 0.005,", "e_step_v: 0.005, rest_s: -5,", "protocol[4].cv.rest_s",
     "-5 s is outside the rests a cv may take before a scan, 0..600 s"),
    # near misses are no slips: refused as before, without a hint that would mislead
    ("a rate a little too fast for the syringe", "rate_ml_min: 0.5,", "rate_ml_min: 2,", "protocol[3].dispense",
     "rate 2 mL/min is beyond what 'analyte_pump' can drive its syringe at, 1.17e-05..0.851 mL/min"),
    ("a rate a little over the cap", "rate_ml_min: 5.0,", "rate_ml_min: 60,", "protocol[0].dispense.rate_ml_min",
     "rate of 60 mL/min exceeds the limit of 50 mL/min (safety.max_rate_ml_min)"),
    ("a rate whose thousandth is still too fast", "rate_ml_min: 5.0,", "rate_ml_min: 80000,",
     "protocol[0].dispense.rate_ml_min",
     "rate of 80000 mL/min exceeds the limit of 50 mL/min (safety.max_rate_ml_min)"),
    ("a step a little too large", "e_step_v: 0.005,", "e_step_v: 0.2,", "protocol[4].cv.e_step_v",
     "0.2 V is outside the potential steps a CV may use, 0.0001..0.1 V"),
    ("a dispense a little too large", "volume_ml: 4.5,", "volume_ml: 5.5,", "protocol[0].dispense.volume_ml",
     "dispense of 5.5 mL exceeds the limit of 5 mL (safety.max_dispense_ml)"),
    # no units slip, but the same one line: an instrument of the wrong kind is named before any limit of it (a "pump"
    # that is the potentiostat was first refused as a syringe that runs dry in experiment 6, never refilled)
    ("a pump that is the potentiostat", "pump: analyte_pump,", "pump: potentiostat,", "protocol[3].dispense.pump",
     "'potentiostat' is not a pump (its driver 'emstat' is a potentiostat)"),
    ("a pump that is the potentiostat, never refilled",
     ("fluid: sample, refill: true", "pump: analyte_pump, volume_ml: 0.5"),
     ("fluid: sample", "pump: potentiostat, volume_ml: 2.0"), "protocol[3].dispense.pump",
     "'potentiostat' is not a pump (its driver 'emstat' is a potentiostat)"),
]


@pytest.mark.parametrize(("old", "new", "field", "message"), [case[1:] for case in REFUSED],
                         ids=[case[0] for case in REFUSED])
def test_a_units_slip_is_refused_in_one_line_with_the_unit_meant(tmp_path, labloop, write_campaign, old, new, field,
                                                                 message):
    result, protocol, line = validate(labloop, write_campaign, tmp_path, old, new)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"error: {protocol}:{line}: {field}: {message}\n"


def test_each_scan_rate_of_a_list_in_mv_s_is_named(tmp_path, labloop, write_campaign):
    result, protocol, line = validate(labloop, write_campaign, tmp_path, "scan_rates_v_s: [0.1, 0.2]",
                                      "scan_rates_v_s: [50, 100, 200]", "--all")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {protocol}:{line}: protocol[4].cv.scan_rates_v_s[{i}]: {rate} V/s is outside the scan rates a CV may "
        f"use, 0.0001..10 V/s: mV/s written as V/s? ({fixed} V/s)"
        for i, (rate, fixed) in enumerate([(50, 0.05), (100, 0.1), (200, 0.2)])]


@pytest.mark.parametrize(("rates", "hint"), [
    ([50, 500], "got [50, 500]: mV/s written as V/s? ([0.05, 0.5] V/s)"),
    # only the end that slipped is offered in V/s: 0.02 V/s is no slip, and "([0.02, 0.05] V/s)" read as the range
    # converted
    ([0.02, 50], "got [0.02, 50]: its high end 50, mV/s written as V/s? (0.05 V/s)"),
], ids=["both ends", "the high end"])
def test_a_planned_scan_rate_range_in_mv_s_is_named(tmp_path, labloop, write_campaign, rates, hint):
    result, _, _ = validate(labloop, write_campaign, tmp_path, "scan_rates_v_s: [0.1, 0.2],",
                            "scan_rate_v_s: 0.1,",
                            conditions={"scan_rate_v_s": rates})
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"error: {tmp_path / 'tiny.yaml'}:")
    assert result.stderr.rstrip().endswith(
        "conditions.scan_rate_v_s: must lie within 0.0001..10 V/s (a CV a potentiostat can run in a sensible time), "
        + hint)


#: (case, text in the protocol, its replacement, field, the one line's message): a list where one value belongs, or
#: one value where a list does, said in plain words with an example to copy (pydantic said "Input should be a valid
#: list" and "List should have at least 2 items after validation, not 1"), and a parameter written in the wrong step
PLAIN = [
    ("one scan rate for a list", "scan_rates_v_s: [0.1, 0.2]", "scan_rates_v_s: 0.1", "protocol[4].cv.scan_rates_v_s",
     "a list of scan rates (V/s), e.g. [0.1, 0.2, 0.5] (got 0.1)"),
    ("a list of one scan rate", "scan_rates_v_s: [0.1, 0.2]", "scan_rates_v_s: [0.1]", "protocol[4].cv.scan_rates_v_s",
     "at least 2 scan rates (V/s), e.g. [0.1, 0.2, 0.5] (got [0.1])"),
    ("a list for one scan rate", "scan_rates_v_s: [0.1, 0.2]", "scan_rate_v_s: [0.1]", "protocol[4].cv.scan_rate_v_s",
     "one number, not a list (got [0.1])"),
    ("a list for a blank's scan rate", "scan_rate_v_s: 0.1}", "scan_rate_v_s: [0.1]}",
     "protocol[1].blank.scan_rate_v_s", "one number, not a list (got [0.1])"),
    # a parameter of another step says which steps take it (one walk of the steps' models)
    ("an analyte in the blank", "scan_rate_v_s: 0.1}", "scan_rate_v_s: 0.1, analyte_mm: 1.0}",
     "protocol[1].blank.analyte_mm", "unknown field here; it belongs under cv:"),
    ("a pump in the blank", "scan_rate_v_s: 0.1}", "scan_rate_v_s: 0.1, pump: electrolyte_pump}",
     "protocol[1].blank.pump", "unknown field here; it belongs under dispense:, add_standard: or clean:"),
    ("a compensation share in the cv", "analyte_mm: 1.0}", "analyte_mm: 1.0, fraction: 0.85}",
     "protocol[4].cv.fraction", "unknown field here; it belongs under cv.ir_compensation:"),
    ("a CV parameter in the analysis", "- rinse", "- analyze: {e_step_v: 0.005}\n- rinse",
     "protocol[5].analyze.e_step_v", "unknown field here; it belongs under cv: or blank:"),
    # a field written without its unit: the list of valid fields alone left a chemist to search it (a trial)
    ("a parameter without its unit", "scan_rate_v_s: 0.1}", "scan_rate: 0.1}", "protocol[1].blank.scan_rate",
     "unknown field; did you mean 'scan_rate_v_s'? valid fields: potentiostat, e_begin_v, e_vertex1_v, "
     "e_vertex2_v, scan_rate_v_s, e_step_v, max_current_a, on_fail"),
    ("a parameter no step takes", "scan_rate_v_s: 0.1}", "scan_rate_v_s: 0.1, colour: blue}",
     "protocol[1].blank.colour", "unknown field; valid fields: potentiostat, e_begin_v, e_vertex1_v, e_vertex2_v, "
     "scan_rate_v_s, e_step_v, max_current_a, on_fail"),
]


@pytest.mark.parametrize(("old", "new", "field", "message"), [case[1:] for case in PLAIN],
                         ids=[case[0] for case in PLAIN])
def test_a_value_of_the_wrong_shape_or_place_is_said_in_one_plain_line(tmp_path, labloop, write_campaign, old, new,
                                                                       field, message):
    result, protocol, line = validate(labloop, write_campaign, tmp_path, old, new)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"error: {protocol}:{line}: {field}: {message}\n"


#: (case, text in the protocol, its replacement, field, the one warning's message or None for no warning): what can
#: be meant is warned about, and validate passes
WARNED = [
    ("EIS top frequency in kHz", "- load_sample", "- eis: {f_high_hz: 100}\n- load_sample",
     "protocol[2].eis.f_high_hz", "100 Hz is too low a top frequency to reach the solution resistance (Ru lies above "
     "the double layer's arc, from about 1000 Hz up): kHz written as Hz? (100000 Hz)"),
    ("EIS top frequency low, not in kHz", "- load_sample", "- eis: {f_high_hz: 500}\n- load_sample",
     "protocol[2].eis.f_high_hz", "500 Hz is too low a top frequency to reach the solution resistance (Ru lies above "
     "the double layer's arc, from about 1000 Hz up)"),
    ("EIS from 1 kHz", "- load_sample", "- eis: {f_high_hz: 1000}\n- load_sample", "", None),
    ("full iR compensation", ("- load_sample", "e_step_v: 0.005,"),
     ("- eis: {}\n- load_sample", "e_step_v: 0.005, ir_compensation: {fraction: 1.0},"),
     "protocol[5].cv.ir_compensation.fraction", "1 of Ru compensated by positive feedback risks the potentiostat "
     "oscillating (above 0.95 its loop is barely damped; 0.85 is the usual compromise, the analysis corrects the "
     "rest)"),
    ("the usual iR compensation", ("- load_sample", "e_step_v: 0.005,"),
     ("- eis: {}\n- load_sample", "e_step_v: 0.005, ir_compensation: {fraction: 0.95},"), "", None),
    # no units slip either: load_sample puts the stock in line with its pump, and only a dispense puts it in the cell
    ("no sample dispensed", "- dispense: {pump: analyte_pump, volume_ml: 0.5, rate_ml_min: 0.5, fluid: sample, "
     "refill: true}\n- cv:", "- cv:", "protocol[3].cv", "the sample never reaches the cell before this cv: no step "
     "dispenses it (a dispense with fluid: sample, after load_sample), so every experiment would measure the cell "
     "without its sample (unless the sample changer itself fills the cell)"),
]


@pytest.mark.parametrize(("old", "new", "field", "message"), [case[1:] for case in WARNED],
                         ids=[case[0] for case in WARNED])
def test_a_value_that_can_be_meant_is_warned_about_in_one_line(tmp_path, labloop, write_campaign, old, new, field,
                                                               message):
    result, protocol, line = validate(labloop, write_campaign, tmp_path, old, new)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ("" if message is None else f"warning: {protocol}:{line}: {field}: {message}\n")


def test_a_scan_below_lithium_plating_is_warned_about(tmp_path, labloop, write_campaign):
    """An offset for another reference electrode (1.0 V) put the cv's vertex at -0.5 V vs Li/Li+, where lithium
    plates in a Li+ electrolyte, and validated silently (an electrochemist's trial): one warning at each step's lowest
    potential, exit 0, in the lithium-plating words when the electrolyte's window ends at 0 V vs Li/Li+ (the blank,
    reaching as low as the cv so as to cover it, is named too)."""
    result, protocol, _ = validate(labloop, write_campaign, tmp_path, ("- blank: {", "e_vertex2_v: -0.8,"),
                                   ("- blank: {e_vertex1_v: -1.5, ", "e_vertex2_v: -1.5,"),
                                   cell={"reference_offset_v": 1.0, "electrolyte_window_v": [0.0, 5.5]},
                                   objective={"quantity": "oxidation_potential", "goal": "window",  # reached from 1 V
                                              "window_v": [1.5, 1.6]})
    assert result.returncode == 0, result.stderr
    window = ("below the electrolyte's window 0..5.5 V vs Li/Li+ (-1..4.5 V vs the reference; "
              "cell.electrolyte_window_v): below 0 V vs Li/Li+ lithium plates on the working electrode in a Li+ "
              "electrolyte, and the scan measures its plating and stripping (check cell.reference_offset_v for the "
              "reference electrode used)")
    assert result.stderr == (f"warning: {protocol}:2: protocol[1].blank.e_vertex1_v: -1.5 V vs the reference is -0.5 V "
                             f"vs Li/Li+ (cell.reference_offset_v 1), {window}\n"
                             f"warning: {protocol}:5: protocol[4].cv.e_vertex2_v: -1.5 V vs the reference is -0.5 V vs "
                             f"Li/Li+ (cell.reference_offset_v 1), {window}\n"), result.stderr


#: the end of the warning of a scan beyond the electrolyte's window, the reference at the default 3.2 V
BEYOND = ("{potential} V vs Li/Li+ (cell.reference_offset_v 3.2), {side} the electrolyte's window {window} V vs Li/Li+ "
          "({reference} V vs the reference; cell.electrolyte_window_v): the electrolyte {does} there, and its wave can "
          "be taken for the analyte's (check cell.reference_offset_v for the reference electrode used, or give "
          "cell.electrolyte_window_v your electrolyte's)")
#: (case, protocol text, its replacement, sections, [(protocol line, field, message)]): a scan past where the
#: electrolyte oxidises or reduces is warned about at its step's highest or lowest potential, a cv around the candidate
#: at its half_width_v (around the objective's hits, 4.5-4.6 V vs Li/Li+, within the limits' 2 V vs the reference)
ELECTROLYTE_WINDOWS = [
    ("the default window holds the protocol", "- rinse", "- rinse", {}, []),
    ("the solvent oxidises", "- rinse", "- rinse", {"cell": {"electrolyte_window_v": [0.8, 5.0]}},
     [(2, "protocol[1].blank.e_vertex2_v", "2 V vs the reference is " + BEYOND.format(
         potential="5.2", side="above", window="0.8..5", reference="-2.4..1.8", does="oxidises"))]),
    ("the solvent reduces", "- rinse", "- rinse", {"cell": {"electrolyte_window_v": [2.3, 5.5]}},
     [(2, "protocol[1].blank.e_vertex1_v", "-1 V vs the reference is " + BEYOND.format(
         potential="2.2", side="below", window="2.3..5.5", reference="-0.9..2.3", does="reduces"))]),
    ("around the candidate", "e_begin_v: -0.8, e_vertex1_v: 1.5, e_vertex2_v: -0.8,", "half_width_v: 0.6,",
     {"cell": {"electrolyte_window_v": [0.8, 5.1]}, "prior": True},
     [(2, "protocol[1].blank.e_vertex2_v", "2 V vs the reference is " + BEYOND.format(
         potential="5.2", side="above", window="0.8..5.1", reference="-2.4..1.9", does="oxidises")),
      (5, "protocol[4].cv.half_width_v", "+/-0.6 V around a prediction in the objective's hits reaches 2 V vs the "
       "reference, that is " + BEYOND.format(potential="5.2", side="above", window="0.8..5.1", reference="-2.4..1.9",
                                             does="oxidises"))]),
]


@pytest.mark.parametrize(("old", "new", "sections", "warned"), [case[1:] for case in ELECTROLYTE_WINDOWS],
                         ids=[case[0] for case in ELECTROLYTE_WINDOWS])
def test_a_scan_beyond_the_electrolytes_window_is_warned_about(tmp_path, labloop, write_campaign, old, new, sections,
                                                               warned):
    """A scan past where the solvent or its salt oxidises (or reduces) measures their own wave, which the analysis can
    take for the analyte's, and validated silently (an electrochemist's review): one line per step and edge, the
    potential on both scales and the window (cell.electrolyte_window_v, default 0.8..5.5 V vs Li/Li+), exit 0."""
    result, protocol, _ = validate(labloop, write_campaign, tmp_path, old, new, **sections)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "".join(f"warning: {protocol}:{line}: {field}: {message}\n"
                                    for line, field, message in warned), result.stderr


def test_an_electrolyte_window_in_millivolts_is_refused_in_one_line(tmp_path, labloop, write_campaign):
    campaign = write_campaign(tmp_path, cell={"electrolyte_window_v": [800, 5500]})
    line = campaign.read_text().splitlines().index("  electrolyte_window_v:") + 1
    result = labloop("validate", campaign, "--dry-run")
    assert result.returncode == 2
    assert result.stderr == (f"error: {campaign}:{line}: cell.electrolyte_window_v: 800 V vs Li/Li+ is no potential a "
                             "cell reaches (-3..10 V): millivolts written as volts? ([0.8, 5.5])\n"), result.stderr


def test_a_blank_short_of_the_cvs_window_is_warned_about(tmp_path, labloop, write_campaign):
    """A blank judges the electrolyte by the waves it shows, and the default blank (-1..1 V vs the reference, 2.2..4.2 V
    vs Li/Li+) under a cv scanning on to 1.5 V never sees a contamination or solvent wave where the analyte is measured
    (an electrochemist's review): one line at the blank's short vertex, both spans on both scales, exit 0."""
    result, protocol, line = validate(labloop, write_campaign, tmp_path, "- blank: {e_vertex2_v: 2.0, ",
                                      "- blank: {")
    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        f"warning: {protocol}:{line}: protocol[1].blank.e_vertex2_v: the blank scans -1..1 V vs the reference "
        "(2.2..4.2 V vs Li/Li+), short of the -0.8..1.5 V vs the reference (2.4..4.7 V vs Li/Li+) protocol[4].cv "
        "scans: a contamination or the solvent's own wave where the analyte is measured goes unseen (a blank from -1 "
        "to 1.5 V vs the reference covers both)\n"), result.stderr
    # a cv around the candidate scans around the objective's hits (4.5-4.6 V vs Li/Li+), within the limits' 2 V
    around, protocol, line = validate(labloop, write_campaign, tmp_path, ("- blank: {e_vertex2_v: 2.0, ",
                                                                          "e_begin_v: -0.8, e_vertex1_v: 1.5, "
                                                                          "e_vertex2_v: -0.8,"),
                                      ("- blank: {e_vertex2_v: 1.5, ", "half_width_v: 0.4,"), prior=True)
    assert around.returncode == 0, around.stderr
    assert around.stderr == (
        f"warning: {protocol}:2: protocol[1].blank.e_vertex2_v: the blank scans -1..1.5 V vs the reference "
        "(2.2..4.7 V vs Li/Li+), short of the 0.9..1.8 V vs the reference (4.1..5 V vs Li/Li+) protocol[4].cv (around "
        "the objective's hits) scans: a contamination or the solvent's own wave where the analyte is measured goes "
        "unseen (a blank from -1 to 1.8 V vs the reference covers both)\n"), around.stderr


def test_a_sample_rinsed_out_before_the_cv_is_warned_about(tmp_path, labloop, write_campaign):
    """A rinse between the sample's dispense and the cv empties the cell: the cv measures it without its sample."""
    result, protocol, _ = validate(labloop, write_campaign, tmp_path, "refill: true}\n- cv:",
                                   "refill: true}\n- rinse\n- cv:")
    line = next(n for n, text in enumerate(protocol.read_text().splitlines(), start=1) if text.startswith("- cv:"))
    assert result.returncode == 0, result.stderr
    assert result.stderr == (f"warning: {protocol}:{line}: protocol[5].cv: the sample never reaches the cell before "
                             "this cv: protocol[4].rinse empties the cell after the sample's dispense (protocol[3]), "
                             "so every experiment would measure the cell without its sample (unless the sample "
                             "changer itself fills the cell)\n")


#: the one line of a cv window around the candidate (``half_width_v``) that cannot scan the objective's hits within the
#: potential limits (4.5-4.6 V vs Li/Li+, the reference at 3.2 V: 1.3-1.4 V vs it, the limits -1.7..2 V)
HITS = "({hits}) {verb} beyond {span} -1.7..2 V: "
#: (case, half_width_v, sections, field, refused, message or None): a window that leaves the limits around a hit is
#: moved within them, so only hits beyond the limits, or a window wider than they are, are said: none of the hits
#: within them is refused (every proposal the planner aims at would miss its wave: a campaign lost ten in a row and
#: stopped), part of them warned about. A window around part of the hits was warned of as "refused" where the run
#: moves it (a newcomer's read), and one around none of them refused.
HALF_WIDTHS = [
    ("leaving the limits around every hit: moved", 0.9, {}, "", False, None),
    ("leaving the limits around part of the hits: moved", 0.65, {}, "", False, None),
    ("around every hit", 0.6, {}, "", False, None),
    ("a threshold beyond the limits", 0.3,
     {"objective": {"quantity": "oxidation_potential", "goal": "maximize", "threshold_v": 5.5}},
     "protocol[4].cv.half_width_v", True,
     "the objective's hits " + HITS.format(hits="5.5 V vs Li/Li+ and above, 2.3 V vs the reference and above at "
                                                "cell.reference_offset_v 3.2 V", verb="lie",
                                           span="safety.potential_limits_v")
     + "a window around a prediction there is moved within them, short of the wave, so no hit can be measured; check "
       "the objective, cell.reference_offset_v and the limits"),
    # a threshold's hits run on without end: judged at the threshold, silent where the window fits there (every
    # campaign with a threshold was warned, with a "fix" wider than what it had written)
    # hits on the near side of a threshold lie within the limits: it was refused, judged at the threshold (a trial)
    ("a threshold past the limits, its hits within them", 0.6,
     {"objective": {"quantity": "oxidation_potential", "goal": "minimize", "threshold_v": 5.3}}, "", False, None),
    ("a threshold the window fits at", 0.5,
     {"objective": {"quantity": "oxidation_potential", "goal": "maximize", "threshold_v": 4.5}}, "", False, None),
    ("part of the hits beyond the limits", 0.2,
     {"objective": {"quantity": "oxidation_potential", "goal": "window", "window_v": [4.9, 5.3]}},
     "protocol[4].cv.half_width_v", False,
     "part of the objective's hits " + HITS.format(hits="4.9..5.3 V vs Li/Li+, 1.7..2.1 V vs the reference at "
                                                        "cell.reference_offset_v 3.2 V", verb="lies",
                                                   span="safety.potential_limits_v")
     + "a candidate predicted there is scanned in a window moved within them, short of its wave"),
    ("wider than where the limits and the potentiostat's range overlap", 1.6,
     {"safety": {**SAFETY, "potential_limits_v": [-1.0, 3.0]}}, "protocol[4].cv: half_width_v", True,
     "a window of +/-1.6 V cannot lie within safety.potential_limits_v within what 'potentiostat' can apply -1..2 V; "
     "half_width_v 1.5 fits"),
    # a window that fits the limits' width by less than a step has no place with its centre on the step grid (the
    # protocol's 5 mV): validate passed +/-1.85 V at 4 mV steps in -1.7..2 V and the run refused every proposal (a
    # trial); an objective without hits too
    ("no place on the step grid", 1.851, {"safety": {**SAFETY, "potential_limits_v": [-1.7, 2.003]}},
     "protocol[4].cv.half_width_v", True,
     "a window of +/-1.851 V cannot lie within safety.potential_limits_v -1.7..2.003 V with its centre on the "
     "e_step_v grid of 0.005 V; half_width_v 1.85 fits"),
    ("no place on the step grid, an objective without hits", 1.851,
     {"safety": {**SAFETY, "potential_limits_v": [-1.7, 2.003]},
      "objective": {"quantity": "oxidation_potential", "goal": "maximize"}}, "protocol[4].cv.half_width_v", True,
     "a window of +/-1.851 V cannot lie within safety.potential_limits_v -1.7..2.003 V with its centre on the "
     "e_step_v grid of 0.005 V; half_width_v 1.85 fits"),
    ("as wide as the limits, on the step grid", 1.85, {}, "", False, None),
    ("wider than the potentiostat's range, once the rig is open", 1.9,
     {"safety": {**SAFETY, "potential_limits_v": [-3, 3]}}, "protocol[4].cv: half_width_v", True,
     "a window of +/-1.9 V cannot lie within what 'potentiostat' can apply -1.7..2 V; half_width_v 1.85 fits"),
]


@pytest.mark.parametrize(("width", "sections", "field", "refused", "message"), [case[1:] for case in HALF_WIDTHS],
                         ids=[case[0] for case in HALF_WIDTHS])
def test_a_window_around_the_candidate_must_fit_the_limits_around_the_objectives_hits(
        tmp_path, labloop, write_campaign, width, sections, field, refused, message):
    result, protocol, line = validate(labloop, write_campaign, tmp_path,
                                      "e_begin_v: -0.8, e_vertex1_v: 1.5, e_vertex2_v: -0.8,",
                                      f"half_width_v: {width},", prior=True, **sections)
    assert result.returncode == (2 if refused else 0), result.stderr
    said = "" if message is None else f"{'error' if refused else 'warning'}: {protocol}:{line}: {field}: {message}\n"
    assert result.stderr == said


def test_an_analyte_in_molar_written_as_millimolar_is_warned_about(tmp_path, labloop, write_campaign):
    """A trace analyte can be meant, so it is a warning; validate still passes, and run says it too."""
    result, protocol, line = validate(labloop, write_campaign, tmp_path, "analyte_mm: 1.0", "analyte_mm: 0.00091")
    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        f"warning: {protocol}:{line}: protocol[4].cv.analyte_mm: 0.00091 mM is less analyte than a CV sees on a "
        "mm-size electrode (below 0.01 mM its peaks sink under the charging current): molar written as millimolar? "
        "(0.91 mM)\n")
    dilute, _, _ = validate(labloop, write_campaign, tmp_path, "analyte_mm: 1.0", "analyte_mm: 0.05")
    assert dilute.returncode == 0 and dilute.stderr == ""
    micromolar, _, _ = validate(labloop, write_campaign, tmp_path, "analyte_mm: 1.0", "analyte_mm: 2220")
    assert micromolar.returncode == 0
    assert micromolar.stderr == (
        f"warning: {protocol}:{line}: protocol[4].cv.analyte_mm: 2220 mM is more analyte than a CV measures: its "
        "peaks would reach milliamperes on a mm-size electrode (from 100 mM): uM written as mM? (2.22 mM)\n")
    # 1000 mM in the cell passed in silence, and its D came out a million times low (a chemist's trial)
    molar, _, _ = validate(labloop, write_campaign, tmp_path, "analyte_mm: 1.0", "analyte_mm: 1000")
    assert "protocol[4].cv.analyte_mm: 1000 mM is more analyte than a CV measures" in molar.stderr, molar.stderr
    assert "(1 mM)" in molar.stderr


def test_the_analyte_warning_of_an_inline_protocol_names_the_campaign_line(tmp_path, labloop, write_campaign):
    steps = ["load_sample", {"dispense": {"pump": "analyte_pump", "volume_ml": 0.5, "rate_ml_min": 0.5,
                                          "fluid": "sample", "refill": True}},
             {"cv": {"e_begin_v": -0.8, "e_vertex1_v": 1.5, "e_vertex2_v": -0.8, "scan_rates_v_s": [0.1, 0.2],
                     "analyte_mm": 0.0005}}, "rinse"]
    campaign = write_campaign(tmp_path, protocol=steps, safety=SAFETY, conditions={})
    line = next(n for n, content in enumerate(campaign.read_text().splitlines(), start=1) if "analyte_mm" in content)
    result = labloop("validate", campaign, "--dry-run")
    assert result.returncode == 0
    assert result.stderr.startswith(f"warning: {campaign}:{line}: protocol[2].cv.analyte_mm: 0.0005 mM is less "
                                    "analyte")
    assert "molar written as millimolar? (0.5 mM)\n" in result.stderr, result.stderr


def test_an_electrode_area_in_mm2_is_warned_about(tmp_path, labloop, write_campaign):
    """A plate electrode can be meant (a warning), but a 3 mm disk's 7.07 mm2 written as cm2 puts D 10^4 off."""
    result, protocol, line = validate(labloop, write_campaign, tmp_path, "analyte_mm: 1.0",
                                      "analyte_mm: 1.0, electrode_area_cm2: 7.07")
    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        f"warning: {protocol}:{line}: protocol[4].cv.electrode_area_cm2: 7.07 cm2 is a plate, not a CV's disk "
        "electrode (a 3 mm disk is 0.0707 cm2): mm2 written as cm2? (0.0707 cm2)\n")


@pytest.mark.parametrize(("field", "value", "message"), [
    ("syringe_ml", 10000, "10000 mL is more than any syringe a rig holds (at most 150 mL): uL written as mL? (10 mL)"),
    ("cell_volume_ml", 20000, "20000 mL is more than any cell a rig holds (at most 1000 mL): uL written as mL? "
                              "(20 mL)"),
    ("syringes_ml", {"analyte_pump": 1000}, "analyte_pump: 1000 mL is more than any syringe a rig holds (at most "
                                            "150 mL): uL written as mL? (1 mL)"),
], ids=["syringe", "cell", "a pump's syringe"])
def test_a_safety_volume_in_ul_is_refused_rather_than_loosened(tmp_path, labloop, write_campaign, field, value,
                                                              message):
    """A syringe or cell limit in uL would loosen the limit a thousandfold (every overfill allowed): refused."""
    protocol = tmp_path / "steps.yaml"
    protocol.write_text(PROTOCOL)
    campaign = write_campaign(tmp_path, protocol=str(protocol), safety={**SAFETY, field: value}, conditions={})
    result = labloop("validate", campaign, "--dry-run")
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.rstrip().endswith(f"safety.{field}: {message}"), result.stderr


@pytest.mark.parametrize(("field", "value", "message"), [
    ("reference_offset_v", 3200, "3200 V vs Li/Li+ is no place for a reference electrode (-1..6 V): millivolts "
                                 "written as volts? (3.2)"),
    # where Li/Li+ lies vs the reference, the sign slipped: it was offered as millivolts (-0.0032), a chemist's trial
    ("reference_offset_v", -3.2, "-3.2 V vs Li/Li+ is no place for a reference electrode (-1..6 V): a sign slip? "
                                 "-3.2 V is where Li/Li+ lies vs the reference; the field is where the reference lies "
                                 "vs Li/Li+: 3.2 (3.2 V vs Li/Li+ is about where Fc+/Fc lies in carbonate "
                                 "electrolytes, the default)"),
    ("reference_offset_v", -4.5, "-4.5 V vs Li/Li+ is no place for a reference electrode (-1..6 V): a sign slip? "
                                 "-4.5 V is where Li/Li+ lies vs the reference; the field is where the reference lies "
                                 "vs Li/Li+: 4.5"),
    ("ferrocene_vs_li_v", -3.35, "-3.35 V vs Li/Li+ is no place for ferrocene's couple (2.5..4.5 V; 3.2 in "
                                 "carbonates): a sign slip? -3.35 V is where Li/Li+ lies vs Fc+/Fc; the field is where "
                                 "Fc+/Fc lies vs Li/Li+: 3.35"),
], ids=["mV", "sign", "sign, far from ferrocene", "ferrocene's sign"])
def test_a_reference_offset_in_millivolts_or_of_the_wrong_sign_is_named(tmp_path, labloop, write_campaign, field,
                                                                         value, message):
    """``cell.reference_offset_v: 3200`` got pydantic's "must be less than or equal to 6"; ``-3.2`` (Li/Li+ vs the
    reference, not the reference vs Li/Li+) was told "millivolts written as volts? (-0.0032)"."""
    result = labloop("validate", write_campaign(tmp_path, cell={field: value}), "--dry-run")
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.rstrip().endswith(f"cell.{field}: {message}"), result.stderr


@pytest.mark.parametrize(("band", "message"), [
    ([-1.0, -0.4], "-1..-0.4 V vs Li/Li+ is no place for O2 to reduce (1..4 V): V vs the reference written as V vs "
                   "Li/Li+? (2.2..2.8 V vs Li/Li+)"),
    ([2200, 2800], "2200..2800 V vs Li/Li+ is no place for O2 to reduce (1..4 V): millivolts written as volts? "
                   "(2.2..2.8 V vs Li/Li+)"),
    ([2.8, 2.2], "low must be below high, got [2.8, 2.2]"),
    (2.5, "a list of two potentials [low, high] (V vs Li/Li+), e.g. [2.2, 2.8] (got 2.5)"),  # said 'a list (got 2.5)'
])
def test_an_oxygen_band_off_the_li_scale_is_named(tmp_path, labloop, write_campaign, band, message):
    """``cell.oxygen_onset_v`` (where a blank's O2 wave sets in) is read vs Li/Li+; the band of the reference's scale
    or in mV is named in one line with what was meant."""
    result = labloop("validate", write_campaign(tmp_path, cell={"oxygen_onset_v": band}))
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.rstrip().endswith(f"cell.oxygen_onset_v: {message}"), result.stderr


#: the run's warning of a cv whose analyte the cell's leftover dilutes (protocols/executor.py, dilution)
DILUTED = ("by the protocol's count the cell held 1 mL before this experiment's {dispensed} mL (its dispense steps, "
           "sample included): D assumes analyte_mm 1 as written; the analyte is ~{share}% more dilute, so D reads "
           "~{low}% low (it goes with the square of the concentration), as protocol[{clean}].clean leaves its 1 mL "
           "flush in the cell")
CLEAN = "- clean: {pump: electrolyte_pump, volume_ml: 1.0, refill: true}"


@pytest.mark.parametrize(("old", "new", "when", "numbers"), [
    ("- rinse", CLEAN, "from experiment 2 on", {"dispensed": 5, "share": 17, "low": 31, "clean": 5}),
    ("- blank: {e_vertex2_v: 2.0, max_current_a: 2.0e-6, scan_rate_v_s: 0.1}", CLEAN, "in every experiment",
     {"dispensed": 0.5, "share": 67, "low": 89, "clean": 1}),
], ids=["a clean at the end", "a clean before the sample"])
def test_a_protocol_leaving_liquid_under_the_cv_is_warned_about_once_by_validate(tmp_path, labloop, write_campaign,
                                                                                  old, new, when, numbers):
    """``run`` warned of each experiment whose D a clean's flush dilutes (from the executor's count); ``validate``
    said nothing of the protocol that does it. It now gives the same warning once, at the cv's line."""
    result, protocol, _ = validate(labloop, write_campaign, tmp_path, old, new)
    assert result.returncode == 0, result.stderr
    line = next(n for n, text in enumerate(protocol.read_text().splitlines(), start=1) if text.startswith("- cv:"))
    assert result.stderr == f"warning: {protocol}:{line}: protocol[4].cv: {when}, {DILUTED.format(**numbers)}\n"


def test_a_clean_no_sample_sees_is_not_warned_about(tmp_path, labloop, write_campaign):
    """A clean at the end of a one-experiment budget dilutes nothing; a blank that cleans by hand (no clean step)
    leaves nothing counted: the executor empties the cell after a blank's clean and fills it again."""
    once, _, _ = validate(labloop, write_campaign, tmp_path, "- rinse", CLEAN, budget={"max_experiments": 1})
    assert once.returncode == 0 and once.stderr == "", once.stderr
    blank, _, _ = validate(labloop, write_campaign, tmp_path, "scan_rate_v_s: 0.1}",
                           "scan_rate_v_s: 0.1, on_fail: clean}")
    assert blank.returncode == 0 and blank.stderr == "", blank.stderr


def test_a_planned_volume_that_would_merge_the_dispenses_or_change_ds_concentration_is_refused(
        tmp_path, labloop, write_campaign):
    """An electrochemist's trial planned volume_ml: every dispense took the planned value (sample and electrolyte
    alike), the analyte ended ~5 mM instead of the 1 mM the cv computed D with, and D read ~25x too large."""
    merged, _, _ = validate(labloop, write_campaign, tmp_path, "- rinse", "- rinse", conditions={"volume_ml": [0.2, 1]})
    assert merged.returncode == 2 and len(merged.stderr.splitlines()) == 1, merged.stderr
    assert ("conditions.volume_ml: would set volume_ml in every step that has it (protocol[0].dispense 4.5, "
            "protocol[3].dispense 0.5) to one planned value") in merged.stderr
    alone = tmp_path / "alone"
    alone.mkdir()
    electrolyte = PROTOCOL.splitlines()[0] + "\n"
    concentration, _, _ = validate(labloop, write_campaign, alone, electrolyte, "# the sample alone\n",
                                   conditions={"volume_ml": [0.2, 1]})
    assert concentration.returncode == 2 and len(concentration.stderr.splitlines()) == 1, concentration.stderr
    assert ("conditions.volume_ml: a planned volume changes the analyte's concentration in the cell, while "
            "protocol[3].cv computes D with its fixed analyte_mm") in concentration.stderr
    # a planned scan rate beside the cv's scan_rates_v_s was journalled as chosen and never run (a chemist's trial)
    rate, _, _ = validate(labloop, write_campaign, alone, electrolyte, "# the sample alone\n",
                          conditions={"scan_rate_v_s": 0.1})
    assert rate.returncode == 2 and ("condition scan_rate_v_s=0.1: 0.1 V/s beside scan_rates_v_s: the cv runs the "
                                     "rates of scan_rates_v_s; give one of the two") in rate.stderr, rate.stderr


def test_a_planned_half_width_is_held_to_the_limits_around_the_hits_as_the_protocols_own(tmp_path, labloop,
                                                                                         write_campaign):
    """``conditions: {half_width_v: [1.5, 3.0]}`` passed validate, where the same 3.0 in the protocol is refused, and
    the run stopped after ten proposals refused by the limits (a plug-in author's trial): each value a planner may
    choose is judged as the protocol's own, at its place in the conditions (1.5 fits: a window moves within the
    limits)."""
    result, _, _ = validate(labloop, write_campaign, tmp_path, "e_begin_v: -0.8, e_vertex1_v: 1.5, e_vertex2_v: -0.8,",
                            "half_width_v: 0.6,", prior=True, conditions={"half_width_v": [1.5, 3.0]})
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert re.search(r"tiny\.yaml:\d+(:\d+)?: conditions\.half_width_v(\[1\])?: 3\.0 would be refused: .*half_width_v: "
                     r"a window of \+/-3 V cannot lie within safety\.potential_limits_v", result.stderr), result.stderr
    fits, _, _ = validate(labloop, write_campaign, tmp_path, "e_begin_v: -0.8, e_vertex1_v: 1.5, e_vertex2_v: -0.8,",
                          "half_width_v: 0.6,", prior=True, conditions={"half_width_v": [0.3, 0.6]})
    assert fits.returncode == 0, fits.stderr
