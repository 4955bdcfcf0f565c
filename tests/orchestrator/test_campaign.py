"""The campaign file: the example validates; malformed files each fail through `labloop validate` with exit 2
and ONE line naming the file's line number and the field, and nothing is created; paths, defaults and the
JSON dump behave as the runner and the journal rely on."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from rdkit import Chem

from labloop.core.errors import CampaignError
from labloop.instruments.registry import driver_names
from labloop.orchestrator import console
from labloop.orchestrator.compose import objective_out_of_reach
from labloop.orchestrator.config.campaign import Campaign, Objective, load_campaign, parse_active_hours
from labloop.orchestrator.config.yaml_source import display_name

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "campaign.yaml"


#: why the example's cv (-0.8..1.95 V at 2 mV steps, the reference at 3.2 V vs Li/Li+) measures what it measures
SCANS = ("the protocol's cv scans 2.40 to 5.15 V (its window + cell.reference_offset_v 3.2 V), and an E1/2 is "
         "measured 50.5 mV inside its ends at the nearest (a one-electron couple's peak lies 28.5 mV past its E1/2; "
         "the analysis needs 22 mV of current after the peak, its smoothing window at the cv's 2 mV step)")


@pytest.fixture
def workdir(tmp_path) -> Path:
    """A copy of the example campaign, library and protocol beside a link to the bundled data, as in the repo."""
    examples = tmp_path / "examples"
    shutil.copytree(ROOT / "examples" / "protocols", examples / "protocols")
    for name in ("campaign.yaml", "library.csv"):
        shutil.copy(ROOT / "examples" / name, examples / name)
    (tmp_path / "data").mkdir()
    data = "ocelot_chromophore_v1_ie_ea.csv"
    (tmp_path / "data" / data).symlink_to(ROOT / "data" / data)
    return examples


def test_the_example_validates_with_paths_from_its_own_folder(labloop, workdir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the campaign's folder: relative paths must not depend on the cwd
    campaign = load_campaign(workdir / "campaign.yaml")
    assert campaign.library.file == workdir / "library.csv"
    assert campaign.prior is not None and campaign.prior.file == tmp_path / "data" / "ocelot_chromophore_v1_ie_ea.csv"
    assert campaign.store == workdir / "runs" / "cathode-screen.db"
    assert campaign.protocol.file == workdir / "protocols" / "cv_screen.yaml"
    assert campaign.protocol.step_names == ["load_sample", "dispense", "dispense", "cv", "rinse"]
    assert campaign.objective.window_v == (4.5, 4.6) and campaign.safety.limits().max_dispense_ml == 5.0
    assert campaign.world is not None and campaign.world.truth.source == "ie_ea"

    monkeypatch.setattr(console.out, "width", 400)  # no folding
    proc = labloop("validate", workdir / "campaign.yaml", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "200 molecules" in proc.stdout and "cathode-screen" in proc.stdout
    # piped, each row is a line of its own with no padding (the grid padded every row to the widest)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("valid        ") and lines[1].startswith("library      "), proc.stdout
    assert not [line for line in lines if line.endswith(" ")], proc.stdout
    # where the reference sits, and the name its measurements carry beside it (a reviewer saw "Ag/Ag+" in every
    # row and an offset the example's comment called ferrocene's)
    assert "Ag/Ag+ (potentiostat's reference option) at 3.2 V vs Li/Li+ (cell.reference_offset_v)" in proc.stdout
    (workdir / "no-cell.yaml").write_text((workdir / "campaign.yaml").read_text().replace(
        "cell: {reference_offset_v: 3.2}", ""))
    assumed = labloop("validate", workdir / "no-cell.yaml", "--dry-run")
    assert "(cell.reference_offset_v, the default: calibrate yours)" in assumed.stdout
    assert not (workdir / "runs").exists()
    # for real instruments, validate checks what run would: the simulated sample changer cannot be real --
    # and the user who forgets --dry-run gets that one line from run too, with nothing written
    for command in ("validate", "run"):
        real = labloop(command, workdir / "campaign.yaml")
        assert real.returncode == 2 and len(real.stderr.strip().splitlines()) == 1
        assert real.stderr.startswith(  # then how many of the example's ports this machine lacks, if any
            f"error: {workdir / 'campaign.yaml'}:27: instruments.sampler: driver 'sim-sampler' exists only in the "
            "simulated world: run with --dry-run, or give the instrument a real driver")
    assert not (workdir / "runs").exists()


def test_validate_says_the_approval_gate_the_alerts_and_the_dry_runs_world(labloop, tmp_path, write_campaign,
                                                                            monkeypatch):
    """An operator's trial could not tell from validate's summary that each batch would wait for a person, where
    alerts would go, or how fast a rehearsal would run: each has its row (an alert URL itself never shown), the
    world's only in a dry run."""
    monkeypatch.setenv("LABLOOP_TEST_TOPIC", "secret-topic")
    campaign = write_campaign(tmp_path, planner={"kind": "random", "batch_size": 2, "approve": True},
                              alerts=["ntfys://ntfy.invalid/${LABLOOP_TEST_TOPIC}", "json://127.0.0.1:9/x"],
                              world={"time_scale": 10, "fault_rate": 0.001, "unstable_share": 0.2, "ru_ohm": 300})
    proc = labloop("validate", campaign, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "planner      random, batch 2; surrogate preset fast; each batch waits for a person's approval " \
           "(planner.approve)" in lines, proc.stdout
    assert ("alerts       2 URLs, told when the campaign stops or waits for a person (not shown: a URL may hold a "
            "secret)") in lines, proc.stdout
    assert ("world        simulated: truth born (each molecule's DFT energy - 1.40 V, moved by a solvation term: "
            "docs/simulation.md), noise 0.01 V; 10 device seconds per wall second (world.time_scale); "
            "rehearsed: faults at world.fault_rate 0.001, 300 ohm uncompensated (world.ru_ohm), 0.2 of the molecules "
            "decomposing once oxidised or reduced (world.unstable_share)") in lines, proc.stdout
    assert "secret-topic" not in proc.stdout + proc.stderr and "127.0.0.1:9" not in proc.stdout
    # the two pumps of one chain apart by their addresses (a newcomer's trial read them alike)
    assert ("analyte_pump (ne1000 @ /dev/ttyUSB0, address 0), electrolyte_pump (ne1000 @ /dev/ttyUSB0, address 1)"
            in proc.stdout), proc.stdout
    (tmp_path / "plain").mkdir()
    plain = labloop("validate", write_campaign(tmp_path / "plain"), "--dry-run")
    assert "alerts       none" in plain.stdout.splitlines(), plain.stdout
    world = next(line for line in plain.stdout.splitlines() if line.startswith("world        simulated: "))
    assert "rehearsed" not in world, world  # nothing set, nothing said


def test_validate_says_the_conditions_and_where_ferrocene_sits(labloop, workdir, tmp_path, write_campaign):
    """The summary showed neither what the planner may choose for each experiment nor ``cell.ferrocene_vs_li_v`` (a
    chemist's trial); a ferrocene potential the campaign file sets for a protocol without add_standard, which alone
    reads it, is warned of in one line by validate and run, not by a resume (its journal's campaign holds every
    field, written or not)."""
    proc = labloop("validate", workdir / "campaign.yaml", "--dry-run")
    assert proc.returncode == 0 and "ferrocene" not in proc.stderr, proc.stderr
    lines = proc.stdout.splitlines()
    assert "conditions   scan_rate_v_s 0.02..0.5, searched log-uniformly" in lines, proc.stdout
    # the prior's slice (a newcomer took the example's for all 21,411 rows), and what was checked of the instruments
    assert any(line.startswith("prior  ") and line.endswith("(ie_ev, ea_ev; a seeded slice of 2000 rows, prior.rows)")
               for line in lines), proc.stdout
    assert "; each opened on its emulator and health-checked" in proc.stdout, proc.stdout
    assert ("ferrocene    Fc+/Fc at 3.2 V vs Li/Li+ (cell.ferrocene_vs_li_v, the default: a carbonate electrolyte's): "
            "unused, the protocol has no add_standard step and no past measurements are given vs Fc+/Fc") in lines, \
        proc.stdout
    lab_grade = labloop("validate", ROOT / "examples" / "lab-grade.yaml", "--dry-run")
    assert lab_grade.returncode == 0 and lab_grade.stderr == "", lab_grade.stderr  # its blank spans its cv
    assert "conditions   none planned: the protocol's steps run their own values" in lab_grade.stdout.splitlines()
    assert ("ferrocene    Fc+/Fc at 3.2 V vs Li/Li+ (cell.ferrocene_vs_li_v): add_standard's potentials go through it"
            in lab_grade.stdout.splitlines()), lab_grade.stdout

    campaign = write_campaign(tmp_path, conditions={"scan_rate_v_s": {"choices": [0.05, 0.1, 0.2]}, "e_step_v": 0.002},
                              cell={"ferrocene_vs_li_v": 3.35})
    line = campaign.read_text().splitlines().index("  ferrocene_vs_li_v: 3.35") + 1
    warning = (f"warning: {campaign}:{line}: cell.ferrocene_vs_li_v: 3.35 V is set, but only an add_standard step or "
               "past measurements vs Fc+/Fc use it, and the campaign has neither: every potential is put on the Li/Li+ "
               "scale through cell.reference_offset_v")
    proc = labloop("validate", campaign, "--dry-run")
    assert proc.returncode == 0 and warning in proc.stderr.splitlines(), proc.stderr
    assert "conditions   scan_rate_v_s one of 0.05, 0.1, 0.2; e_step_v 0.002, fixed" in proc.stdout.splitlines()
    run = labloop("run", campaign, "--dry-run")
    assert run.returncode == 0 and warning in run.stderr.splitlines(), run.stderr
    resumed = labloop("resume", tmp_path / "tiny.db")
    assert resumed.returncode == 0 and "ferrocene" not in resumed.stderr, resumed.stderr
    assert "lies outside the 3-3.9 V" not in proc.stderr  # 3.35 V is a usual value
    # a value no electrolyte gives (an electrochemist's trial: 4.4 passed in silence, and a dry run's ferrocene
    # follows it, so nothing ever said it)
    far = write_campaign(tmp_path, name="far", cell={"ferrocene_vs_li_v": 4.4})
    line = far.read_text().splitlines().index("  ferrocene_vs_li_v: 4.4") + 1
    said = labloop("validate", far, "--dry-run")
    assert said.returncode == 0 and (
        f"warning: {far}:{line}: cell.ferrocene_vs_li_v: 4.4 V lies outside the 3-3.9 V vs Li/Li+ where ferrocene has "
        "been measured (about 3.2 V in carbonates): a value against another reference, or a typo? Every add_standard "
        "potential goes through it") in said.stderr.splitlines(), said.stderr


def test_a_lithium_reference_beside_an_offset_from_lithium_is_warned_of(labloop, tmp_path, write_campaign):
    """``reference: Li`` beside the default 3.2 V passed in silence (a chemist's trial): every potential would read
    3.2 V high. Said at the offset's line, naming the potentiostat's option; another electrode's name is not."""
    campaign = write_campaign(tmp_path, cell={"reference_offset_v": 3.2})
    settings = yaml.safe_load(campaign.read_text())
    settings["instruments"]["potentiostat"]["options"]["reference"] = "Li/Li+"
    campaign.write_text(yaml.safe_dump(settings, sort_keys=False))
    line = campaign.read_text().splitlines().index("  reference_offset_v: 3.2") + 1
    proc = labloop("validate", campaign, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert (f"warning: {campaign}:{line}: cell.reference_offset_v: 3.2 V, while instruments.potentiostat.options."
            "reference names a lithium electrode ('Li/Li+'), which sits at 0 V vs Li/Li+: every potential would read "
            "3.2 V high; give 0 for a lithium reference, or name the electrode the cell has"
            ) in proc.stderr.splitlines(), proc.stderr
    silver = write_campaign(tmp_path, cell={"reference_offset_v": 3.2})
    assert "names a lithium electrode" not in labloop("validate", silver, "--dry-run").stderr


def test_a_batch_larger_than_the_budget_is_warned_of(labloop, tmp_path, write_campaign):
    """A batch of 8 in a budget of 5 ran one batch of 5 in silence (a chemist's trial): validate says it, at the
    line; a batch within the budget is said nothing of."""
    campaign = write_campaign(tmp_path, planner={"kind": "random", "batch_size": 8}, budget={"max_experiments": 5})
    line = campaign.read_text().splitlines().index("  batch_size: 8") + 1
    proc = labloop("validate", campaign, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert (f"warning: {campaign}:{line}: planner.batch_size: 8, more than the whole budget (budget.max_experiments "
            "5): the campaign runs one batch of 5 experiments") in proc.stderr.splitlines(), proc.stderr
    within = write_campaign(tmp_path, planner={"kind": "random", "batch_size": 5}, budget={"max_experiments": 5})
    proc = labloop("validate", within, "--dry-run")
    assert proc.returncode == 0 and "batch_size" not in proc.stderr, proc.stderr


def test_a_budget_beyond_the_librarys_molecules_is_warned_of(labloop, tmp_path, write_campaign):
    """A budget of 100 over 30 molecules validated in silence and ended "every library molecule was tried ... 21/100
    experiments done" (a chemist's trial): validate says it at the budget's line, counting each molecule once (a
    repeat and an invalid row are none); a batch beyond them alone, at the batch's."""
    (tmp_path / "small.csv").write_text("smiles,ie_ev,ea_ev\nCCO,10.5,-1.0\nOCC,10.5,-1.0\nc1ccccc1O,8.5,-0.5\n"
                                        "not_a_smiles,8.0,-0.5\nCCN,9.5,-1.0\n")
    campaign = write_campaign(tmp_path, library={"file": str(tmp_path / "small.csv")}, budget={"max_experiments": 5},
                              planner={"kind": "random", "batch_size": 2})
    line = campaign.read_text().splitlines().index("  max_experiments: 5") + 1
    proc = labloop("validate", campaign, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    small = tmp_path / "small.csv"
    assert (f"warning: {campaign}:{line}: budget.max_experiments: 5, more than the 3 molecules {small} can propose "
            "(each once): the campaign ends when every one was tried, failed ones included, short of the budget"
            ) in proc.stderr.splitlines(), proc.stderr
    batch = write_campaign(tmp_path, library={"file": str(tmp_path / "small.csv")}, budget={"max_experiments": 3},
                           planner={"kind": "random", "batch_size": 4})
    proc = labloop("validate", batch, "--dry-run")
    assert (f"planner.batch_size: 4, more than the 3 molecules {tmp_path / 'small.csv'} can propose: its one batch "
            "holds them all") in proc.stderr, proc.stderr
    fits = write_campaign(tmp_path, library={"file": str(tmp_path / "small.csv")}, budget={"max_experiments": 3},
                          planner={"kind": "random", "batch_size": 3})
    assert "can propose" not in labloop("validate", fits, "--dry-run").stderr


def test_a_campaign_with_a_prior_and_no_planner_is_told_it_proposes_at_random(labloop, tmp_path, write_campaign):
    """planner.kind defaults to random (it needs no prior), so a campaign file that left the section out ran random on
    the instruments while its prior sat unused (a lab head's trial): validate says so at the planner's place."""
    campaign = write_campaign(tmp_path, prior=True)
    settings = yaml.safe_load(campaign.read_text())
    del settings["planner"]
    campaign.write_text(yaml.safe_dump(settings, sort_keys=False))
    proc = labloop("validate", campaign, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert (f"warning: {campaign}:1: planner: no such section, so the planner is random, which proposes at random and "
            "learns nothing from the measurements: give planner: {kind: bayes}") in proc.stderr, proc.stderr
    written = write_campaign(tmp_path, name="chosen", prior=True)  # planner: {kind: random} written: a choice
    assert "no such section, so the planner" not in labloop("validate", written, "--dry-run").stderr


def test_the_bundled_prior_named_where_it_is_not_is_told_where_labloop_ships_it(labloop, tmp_path, write_campaign,
                                                                               monkeypatch):
    """An example campaign copied out of the repository (or written beside an installed package) names the bundled
    data by ../data/..., which is not there: validate said "no such file" only (a packaging trial). So did
    ``surrogate train`` and ``backtest`` given docs/surrogate.md's ``data/...`` away from the repository (a wheel
    install's trial)."""
    from labloop.data import bundled_path

    campaign = write_campaign(tmp_path, prior=True)
    settings = yaml.safe_load(campaign.read_text())
    settings["prior"]["file"] = "../data/ocelot_chromophore_v1_ie_ea.csv"
    campaign.write_text(yaml.safe_dump(settings, sort_keys=False))
    proc = labloop("validate", campaign, "--dry-run")
    said = " ".join(proc.stderr.split())
    assert proc.returncode == 2 and (f"prior.file: {tmp_path.parent / 'data' / 'ocelot_chromophore_v1_ie_ea.csv'}: no "
                                     f"such file; labloop ships this data set: {bundled_path()} (name it by that "
                                     "path)") in said, said
    monkeypatch.chdir(tmp_path)
    named = Path("data", "ocelot_chromophore_v1_ie_ea.csv")
    for command in (("surrogate", "train", named, "-t", "ie_ev", "-o", tmp_path / "model"),
                    ("backtest", campaign, "--truth", named, "--column", "ie_ev")):
        proc = labloop(*command)
        [line] = proc.stderr.strip().splitlines()  # backtest names the truth by its whole path
        assert proc.returncode == 2 and line.startswith("error: ") and line.endswith(
            f"{named}: no such file; labloop ships this data set: {bundled_path()} (name it by that path)"), command
    assert not (tmp_path / "model").exists()


def test_a_path_is_shown_whole_from_the_root_and_relative_below_the_working_directory(tmp_path, monkeypatch):
    """From ``/`` every path lies below the working directory, and /tmp/lab/campaign.yaml was shown as
    tmp/lab/campaign.yaml, a path that seems to have lost its ``/`` (a packaging trial)."""
    from labloop.orchestrator.config.yaml_source import display_name

    inside = tmp_path / "lab" / "campaign.yaml"
    monkeypatch.chdir(tmp_path)
    assert display_name(inside) == "lab/campaign.yaml"
    assert display_name(Path("/elsewhere/campaign.yaml")) == "/elsewhere/campaign.yaml"
    monkeypatch.chdir("/")
    assert display_name(inside) == inside.as_posix()


def test_stereoisomers_in_the_library_are_said_with_the_row_they_repeat(labloop, tmp_path, write_campaign):
    """(R)- and (S)-isomers, or cis and trans, are two rows the surrogate's fingerprint cannot tell apart: they got
    one prediction and were both proposed, and enantiomers have one redox potential (a chemist's trial). validate
    names each with the earlier row of its molecule; the library is used as it is."""
    rows = ["C[C@H](N)c1ccccc1", "C[C@@H](N)c1ccccc1", "CC(N)c1ccccc1", "C/C=C/c1ccccc1", "C/C=C\\c1ccccc1",
            "c1ccc2ccccc2c1"]
    (tmp_path / "lib.csv").write_text("smiles,ie_ev,ea_ev\n" + "".join(f"{r},6.5,0.5\n" for r in rows))
    campaign = write_campaign(tmp_path, library={"file": str(tmp_path / "lib.csv")})
    proc = labloop("validate", campaign, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    said = [line for line in proc.stderr.splitlines() if "hold a stereoisomer" in line]
    assert said == [f"warning: 3 rows of {tmp_path / 'lib.csv'} hold a stereoisomer of an earlier row's molecule, "
                    "which the surrogate's fingerprint cannot tell apart (one prediction for both; each may be "
                    "proposed, and enantiomers have one redox potential): line 3 'C[C@@H](N)c1ccccc1' (a "
                    "stereoisomer of line 2's molecule), line 4 'CC(N)c1ccccc1' (a stereoisomer of line 2's "
                    "molecule), line 6 'C/C=C\\\\c1ccccc1' (a stereoisomer of line 5's molecule)"], proc.stderr
    assert "lib.csv (6 molecules)" in " ".join(proc.stdout.split()), proc.stdout  # kept, each proposed as before


def test_the_examples_limits_are_the_potentiostats_range(labloop, workdir):
    """The simulated EmStat is a Pico (-1.7..+2.0 V vs its reference): a vertex beyond it, inside a wider safety
    window, used to pass validate and fail every CV with a bare firmware error code."""
    protocol = workdir / "protocols" / "cv_screen.yaml"
    protocol.write_text(protocol.read_text().replace("e_vertex1_v: 1.95", "e_vertex1_v: 2.5"))
    proc = labloop("validate", workdir / "campaign.yaml", "--dry-run")
    assert proc.returncode == 2 and proc.stderr.strip() == (  # the line in the protocol's own file
        f"error: {protocol}:12: protocol[3].cv.e_vertex1_v: 2.5 V is outside the safety window -1.7..2 V")
    protocol.write_text(protocol.read_text().replace("e_vertex1_v: 2.5", "e_vertex1_v: 1950"))
    proc = labloop("validate", workdir / "campaign.yaml", "--dry-run")  # a window written in mV
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"error: {protocol}:12: protocol[3].cv.e_vertex1_v: 1950 V is outside the safety window -1.7..2 V: "
        "millivolts written as volts? (1.95)")


def test_validate_names_the_library_rows_that_are_never_proposed(labloop, workdir):
    library = workdir / "library.csv"
    lines = library.read_text().splitlines()
    lines[2], lines[4], lines[6] = "C1CC(=O,6.5,0.5", "c1ccccc1XX,6.5,0.5", ",6.5,0.5"  # CSV lines 3, 5, 7
    library.write_text("\n".join(lines) + "\n")
    proc = labloop("validate", workdir / "campaign.yaml", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "warning: 3 invalid SMILES in" in proc.stderr and "library.csv will never be proposed: line 3 " \
        "'C1CC(=O', line 5 'c1ccccc1XX', line 7 (empty, or over 1000 characters)" in proc.stderr
    # the summary's count says so too, rather than counting them among the molecules it will screen
    assert "(200 rows: 3 invalid SMILES, never proposed)" in " ".join(proc.stdout.split())



def test_validate_says_when_a_library_is_too_long_to_check_row_by_row(labloop, workdir):
    """Above compose.CHECK_SMILES_ROWS CSV rows the library checks above are skipped (their cost: compose.py), and were
    skipped in silence: a 21,413-row library with an invalid SMILES and a repeated molecule validated as '21413
    molecules'. Now one warning line names the file, the limit and what still happens to bad rows, and the summary
    counts rows."""
    library = workdir / "library.csv"
    rows = [",".join(line.split(",")[:3]) for line in (ROOT / "data" / "ocelot_chromophore_v1_ie_ea.csv").read_text(
        ).splitlines()]
    header, rows = rows[0], rows[1:]
    library.write_text("\n".join([header, *(rows * 5)[:100_000], "C1CC(=O,6.5,0.5"]) + "\n")
    n_rows = 100_001
    proc = labloop("validate", workdir / "campaign.yaml", "--dry-run", "--scheduler", "none")
    assert proc.returncode == 0, proc.stderr
    warned = [line for line in proc.stderr.splitlines() if "not checked one by one" in line]
    assert len(warned) == 1 and warned[0].startswith(f"warning: {display_name(library)}: {n_rows} rows, more than "
                                                     "100,000, so its rows are not checked one by one"), proc.stderr
    assert "`labloop surrogate predict` lists them" in warned[0]
    assert f"({n_rows} rows, not checked row by row above 100,000)" in " ".join(proc.stdout.split()), proc.stdout
    assert "molecules)" not in proc.stdout


def test_validate_checks_a_library_of_thousands_of_rows_one_by_one(labloop, workdir):
    """A library of thousands of rows is checked over the cores (a process pool from
    labloop.surrogate.featurize.PARALLEL_THRESHOLD rows), each SMILES parsed once, and its bad rows are named by
    line as in a small one. Why: the checks stopped at 20,000 rows when they parsed each SMILES three times (51 s per
    100,000 rows), and a 21,413-row library with garbage and repeats validated as '21413 molecules'."""
    library = workdir / "library.csv"
    rows = [",".join(line.split(",")[:3]) for line in (ROOT / "data" / "ocelot_chromophore_v1_ie_ea.csv").read_text(
        ).splitlines()[:6000]]
    library.write_text("\n".join([*rows, "C1CC(=O,6.5,0.5", rows[1]]) + "\n")
    n_lines = len(rows) + 2  # the header, the rows, the two more
    proc = labloop("validate", workdir / "campaign.yaml", "--dry-run", "--scheduler", "none")
    assert proc.returncode == 0, proc.stderr
    assert f"library.csv will never be proposed: line {n_lines - 1} 'C1CC(=O'" in proc.stderr
    repeated = [line for line in proc.stderr.splitlines() if "holds a molecule an earlier row holds" in line]
    assert len(repeated) == 1 and f"line {n_lines} " in repeated[0] and "line 2's molecule" in repeated[0], repeated
    assert "not checked one by one" not in proc.stderr

def test_validate_names_the_rows_that_write_a_molecule_again(labloop, workdir):
    """A chemist's library held anthraquinone written two ways: both rows were proposed and measured, and counted
    as two hits, without a word. The rows that repeat a molecule, as written or another way, are named by line,
    with the line that holds it first, and counted in the summary (the planners propose each molecule once:
    tests/surrogate/test_library_pipeline.py)."""
    library = workdir / "library.csv"
    lines = library.read_text().splitlines()
    smiles, rest = lines[3].split(",", 1)  # CSV line 4
    again = Chem.MolToSmiles(Chem.MolFromSmiles(smiles), doRandom=True, canonical=False)
    assert again != smiles
    library.write_text("\n".join([*lines, f"{again},{rest}", lines[9]]) + "\n")  # lines 202 and 203
    proc = labloop("validate", workdir / "campaign.yaml", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    said = " ".join(proc.stderr.split())
    assert "warning: 2 rows of " in said, proc.stderr
    assert (f"library.csv hold a molecule an earlier row holds (written the same or another way), and each molecule "
            f"is proposed once: line 202 '{again}' (line 4's molecule), line 203 '{lines[9].split(',')[0]}' (line "
            "10's molecule)") in said, proc.stderr
    assert "(202 rows: 2 repeats of an earlier row's molecule, never proposed)" in " ".join(proc.stdout.split())


def test_a_library_of_another_suffix_is_read_as_csv_and_its_rows_named(labloop, tmp_path, write_campaign):
    """A campaign reads a library named ``.txt`` as CSV; naming its invalid rows' lines asked the chunked
    reader for the file's format, which refused the suffix: validate exited 2 on a campaign it accepts."""
    rows = (ROOT / "examples" / "library.csv").read_text().splitlines()
    rows[3] = "C1CC(=O,6.5,0.5"
    (tmp_path / "library.txt").write_text("\n".join(rows) + "\n")
    proc = labloop("validate", write_campaign(tmp_path, library={"file": str(tmp_path / "library.txt")}), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "library.txt will never be proposed: line 4 'C1CC(=O'" in proc.stderr


def test_the_version_is_the_installed_packages(labloop):
    from importlib.metadata import version

    proc = labloop("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"labloop {version('labloop')}"


def test_best_so_far_ranks_a_window_by_nearness_to_its_centre():
    from labloop.orchestrator.config.campaign import Objective

    window = Objective(quantity="oxidation_potential", goal="window", window_v=(4.5, 4.6))
    measured = [4.576, 4.7, 4.52, 4.549, 4.45]
    assert sorted(measured, key=window.rank, reverse=True) == [4.549, 4.576, 4.52, 4.45, 4.7]
    highest = Objective(quantity="oxidation_potential", goal="maximize", threshold_v=4.5)
    assert sorted(measured, key=highest.rank, reverse=True) == sorted(measured, reverse=True)


def test_the_quick_start_validates_the_example_as_it_runs_it(labloop, workdir, monkeypatch):
    """A newcomer's first ``labloop validate examples/campaign.yaml`` failed (the example's sample changer exists
    only in dry runs): the quick start showed no validate, and README's first one was for real instruments. The
    quick start's block now validates the example as it runs it, and that line passes as written."""
    readme = (ROOT / "README.md").read_text()
    quick_start = readme[readme.index("```bash\n"):readme.index("```", readme.index("```bash\n") + 3)]
    commands = [line.split("&&")[-1].split() for line in quick_start.splitlines() if "labloop validate" in line]
    assert commands, "the quick start shows no validate"
    monkeypatch.chdir(workdir.parent)  # the commands' examples/ is the copy's
    for command in commands:
        assert command[:2] == ["labloop", "validate"] and "--dry-run" in command
        checked = labloop(*command[1:])
        assert checked.returncode == 0, checked.stderr


def test_the_readme_names_the_sections_of_the_examples_as_they_are():
    """README's list of what examples/campaign.yaml shows, and what examples/lab-grade.yaml adds, are the files'
    sections (a newcomer's trial compared README's snippets with the shipped files: the list left out campaign.yaml's
    ``cell`` and said lab-grade.yaml "also has" it)."""
    readme = " ".join((ROOT / "docs" / "campaign-reference.md").read_text().split())
    listed = re.search(r"`examples/campaign\.yaml` shows most sections \(([a-z, ]+)\)", readme)
    assert listed, "docs/campaign-reference.md lists no sections of examples/campaign.yaml"
    shown = yaml.safe_load(EXAMPLE.read_text())
    assert listed[1].split(", ") == [k for k in shown if k not in ("name", "seed", "store")]
    lab = yaml.safe_load((EXAMPLE.parent / "lab-grade.yaml").read_text())
    described = ("solvent", "electrolyte", "working_electrode", "counter_electrode", "temperature_c")
    assert set(lab) <= set(shown) and set(lab["cell"]) - set(shown["cell"]) == {"oxygen_onset_v", "ferrocene_vs_li_v",
                                                                                  "electrolyte_window_v", *described}
    assert ("`examples/lab-grade.yaml` also sets the cell's `oxygen_onset_v`, `ferrocene_vs_li_v` and "
            f"`electrolyte_window_v`, and describes it ({', '.join(f'`{f}`' for f in described)})") in readme


def test_the_repository_example_validates():
    assert load_campaign(EXAMPLE).name == "cathode-screen"


def test_the_json_dump_validates_back_to_the_same_campaign(workdir):
    campaign = load_campaign(workdir / "campaign.yaml")
    dumped = json.loads(json.dumps(campaign.model_dump(mode="json", by_alias=True)))
    assert Campaign.model_validate(dumped) == campaign


def test_defaults_fill_what_is_left_out(workdir):
    (workdir / "mini.yaml").write_text(
        "name: mini\nlibrary: {file: library.csv}\nobjective: {quantity: reduction_potential, goal: minimize}\n"
        "instruments: {potentiostat: {driver: emstat, port: /dev/ttyACM0}}\n"
        "protocol: [load_sample, {cv: {e_begin_v: 0.0, e_vertex1_v: 1.0, e_vertex2_v: -1.0}}, rinse]\n")
    campaign = load_campaign(workdir / "mini.yaml")
    assert campaign.store == workdir / "runs" / "mini.db"
    assert (campaign.planner.kind, campaign.budget.max_experiments, campaign.surrogate.preset) == ("random", 30, "fast")
    assert campaign.conditions.scan_rate_v_s is None and campaign.world is None and campaign.prior is None
    assert campaign.protocol.file is None and campaign.protocol.step_names == ["load_sample", "cv", "rinse"]


def test_a_step_the_rig_cannot_run_names_its_line_in_an_inline_protocol(labloop, workdir):
    (workdir / "mini.yaml").write_text(
        "name: mini\nlibrary: {file: library.csv}\nobjective: {quantity: reduction_potential, goal: minimize}\n"
        "instruments: {potentiostat: {driver: emstat, port: /dev/ttyACM0}}\n"
        "protocol:\n- {cv: {e_begin_v: 0.0, e_vertex1_v: 1.0, e_vertex2_v: -1.0}}\n- load_sample\n- rinse\n")
    proc = labloop("validate", workdir / "mini.yaml", "--dry-run")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"error: {workdir / 'mini.yaml'}:7: protocol[1].load_sample: "
                                   "name the sample changer: the rig has 0 (none)")


def test_an_instrument_named_for_its_kind_but_given_another_kinds_driver_is_named_with_its_driver(labloop, workdir):
    """A rig whose potentiostat was given a pump's driver was told "protocol[0].cv: name the potentiostat: the rig has
    0 (none)", nothing of the driver to change (a plug-in author's trial): the one line names the instrument, its
    driver and that driver's kind."""
    (workdir / "mini.yaml").write_text(
        "name: mini\nlibrary: {file: library.csv}\nobjective: {quantity: reduction_potential, goal: minimize}\n"
        "instruments: {potentiostat: {driver: ne1000, port: /dev/ttyUSB0}}\n"
        "protocol:\n- {cv: {e_begin_v: 0.0, e_vertex1_v: 1.0, e_vertex2_v: -1.0}}\n")
    proc = labloop("validate", workdir / "mini.yaml", "--dry-run")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"error: {workdir / 'mini.yaml'}:6: protocol[0].cv: instrument 'potentiostat' uses "
                                   "driver 'ne1000', a pump; the step needs a potentiostat, and the rig has none")


def edit(*old_new: str):
    """Replace ``old`` by ``new`` for each pair (each ``old`` must be in the example)."""
    def apply(text: str) -> str:
        for old, new in zip(old_new[::2], old_new[1::2], strict=True):
            assert old in text, old
            text = text.replace(old, new, 1)
        return text
    return apply


#: (case, edit of the example, text on the line the error must name, field, words the message must contain)
MALFORMED = [
    ("unknown planner kind", edit("kind: bayes,", "kind: bayesian,"), "planner:", "planner.kind",
     "'bayesian' is not one of random, bayes, greedy, screening"),
    ("window low above high", edit("[4.5, 4.6]", "[4.6, 4.5]"), "objective:", "objective.window_v",
     "low must be below high"),
    ("negative volume", edit("max_dispense_ml: 5", "max_dispense_ml: -5"), "safety:", "safety.max_dispense_ml",
     "greater than 0"),
    ("dispense above the syringe", edit("syringe_ml: 10", "syringe_ml: 2"), "safety:", "safety.max_dispense_ml",
     "max_dispense_ml <= syringe_ml"),
    ("safety limits in millivolts", edit("potential_limits_v: [-1.7, 2.0]", "potential_limits_v: [-1700, 2000]"),
     "safety:", "safety.potential_limits_v", "-1700 V against the reference is more than any potentiostat applies "
                                             "(+/-10 V): millivolts written as volts? ([-1.7, 2])"),
    ("window in millivolts", edit("window_v: [4.5, 4.6]", "window_v: [4500, 4600]"), "objective:",
     "objective.window_v", "4500 V vs Li/Li+ is no potential a cell reaches (-3..10 V): millivolts written as volts? "
                           "([4.5, 4.6])"),
    ("missing library file", edit("file: library.csv", "file: nowhere.csv"), "library:", "library.file",
     "nowhere.csv: no such file"),
    ("library without the SMILES column", edit("smiles_column: smiles", "smiles_column: molecule"), "library:",
     "library.file", "no column 'molecule'"),  # SMILES would be read: column names match whatever their case
    ("prior target not in the file", edit("targets: [ie_ev, ea_ev]", "targets: [ie_ev, homo]"), "prior:",
     "prior.file", "no target column 'homo'"),
    ("bad active_hours", edit('"00:00-24:00"', '"7pm-7am"'), "schedule:", "schedule.active_hours", "HH:MM-HH:MM"),
    ("hour out of range", edit('"00:00-24:00"', '"25:00-07:00"'), "schedule:", "schedule.active_hours",
     "hours are 00-23"),
    ("budget 0", edit("max_experiments: 30", "max_experiments: 0"), "budget:", "budget.max_experiments",
     "greater than 0"),
    # an instrument named with a terminal escape reached stop lines and logs raw (a security trial); with '=', no
    # --port NAME=PORT could name it
    ("an instrument named with an escape", edit("  electrolyte_pump: {", '  "electrolyte\\e[5mpump": {'),
     "electrolyte\\e[5mpump", "instruments['electrolyte\\x1b[5mpump']",
     "an instrument's name is letters, digits, '.', '_' and '-' (--port NAME=PORT names it)"),
    ("an instrument named with '='", edit("  electrolyte_pump: {", "  electrolyte=pump: {"), "electrolyte=pump",
     "instruments.electrolyte=pump", "an instrument's name is letters, digits"),
    # a misspelt key is an unknown field and a missing one: the one line names the misspelling and the valid names
    ("misspelt required key", edit("goal: window", "gaol: window"), "objective:", "objective.gaol",
     "unknown field; did you mean 'goal'? valid fields: quantity, goal, window_v"),
    ("unknown top-level key", edit("seed: 7\n", "seed: 7\ncolour: blue\n"), "colour:", "colour",
     "unknown field; valid fields: name, seed, store, library"),
    # a known field in the wrong place says where it belongs, found by one walk of the models, not a list of keys
    ("a safety field at the top level", edit("seed: 7\n", "seed: 7\ncell_volume_ml: 20\n"), "cell_volume_ml:",
     "cell_volume_ml", "cell_volume_ml: unknown field here; it belongs under safety:"),
    ("a top-level field in a section", edit("budget: {max_experiments: 30}", "budget: {max_experiments: 30, seed: 3}"),
     "budget:", "budget.seed", "budget.seed: unknown field here; it belongs at the top level"),
    ("a field of two sections", edit("cell: {reference_offset_v: 3.2}", "cell: {}\nreference_offset_v: 3.2"),
     "reference_offset_v:", "reference_offset_v", "unknown field here; it belongs under cell: or world:"),
    ("an instrument's field in a section", edit("budget: {max_experiments: 30}",
                                                "budget: {max_experiments: 30, driver: ne1000}"),
     "budget:", "budget.driver", "unknown field here; it belongs under instruments.<name>:"),
    # an instrument dedented to the top level: a name the user chose, which its fields place (a newcomer's trial)
    ("an instrument at the top level", edit("seed: 7\n", "seed: 7\nstirrer: {driver: ne1000, port: /dev/ttyUSB3}\n"),
     "stirrer:", "stirrer", "stirrer: unknown field here; its fields (driver, port) are those of an entry of "
     "instruments:, so it belongs under instruments:, indented one level"),
    # a link's baud rate is judged by validate, before any port opens (19201 and true passed it: a hardware trial)
    ("a baud rate no serial line has", edit("address: 0, diameter_mm: 4.61}", "address: 0, diameter_mm: 4.61, "
                                                                             "baudrate: 19201}"),
     "analyte_pump:", "instruments.analyte_pump.options.baudrate", "must be a standard baud rate (1200, 2400, 9600, "
     "19200, 38400, 57600, 115200, 230400, ...), got 19201"),
    # and by the driver: a standard rate the device does not run at passed validate (a rehearsal on ptys cannot tell)
    ("a baud rate the pump does not run at", edit("address: 0, diameter_mm: 4.61}", "address: 0, diameter_mm: 4.61, "
                                                                                     "baudrate: 38400}"),
     "analyte_pump:", "instruments.analyte_pump.options.baudrate", "must be one of the NE-1000's baud rates, 300, "
     "1200, 2400, 9600, 19200, got 38400"),
    ("wrong type", edit("seed: 7", "seed: lucky"), "seed:", "seed", "valid integer"),
    ("YAML boolean for a number", edit("seed: 7", "seed: yes"), "seed:", "seed", "valid integer (got true)"),
    # a yes/no is YAML's true/false (yes, on): quoted, it is text, refused as "30" is for a count (it read as true)
    ("yes/no given as text", edit("wait_for_retrain: true", 'wait_for_retrain: "true"'), "surrogate:",
     "surrogate.wait_for_retrain", "true or false, without quotes (got 'true')"),
    ("approval given as a number", edit("batch: diverse}", "batch: diverse, approve: 1}"), "approve: 1",
     "planner.approve", "true or false, or yes/no, on/off (got 1)"),
    ("a yes/no that YAML does not read as one", edit("wait_for_retrain: true", "wait_for_retrain: y"), "surrogate:",
     "surrogate.wait_for_retrain", "true or false, or yes/no, on/off (got 'y')"),  # it said "without quotes"
    ("count given as text", edit("max_experiments: 30", "max_experiments: '30'"), "budget:", "budget.max_experiments",
     "a whole number, without quotes (got '30')"),
    ("unknown surrogate preset", edit("preset: fast", "preset: huge"), "surrogate:", "surrogate.preset",
     "'huge' is not one of "),
    # surrogate.keep_models: how many retrained rounds keep their weights; none would leave a resume no model
    ("no retrained model kept", edit("keep_models: 2", "keep_models: 0"), "surrogate:", "surrogate.keep_models",
     "greater than or equal to 1"),
    ("a fraction of a model kept", edit("keep_models: 2", "keep_models: 1.5"), "surrogate:", "surrogate.keep_models",
     "valid integer"),
    ("models kept as yes/no", edit("keep_models: 2", "keep_models: yes"), "surrogate:", "surrogate.keep_models",
     "valid integer (got true)"),
    ("scan-rate range reversed", edit("[0.02, 0.5]", "[0.5, 0.02]"), "conditions:", "conditions.scan_rate_v_s",
     "low must be at most high"),
    ("negative scan rate", edit("[0.02, 0.5]", "[-0.02, 0.5]"), "conditions:", "conditions.scan_rate_v_s[0]",
     "greater than 0"),
    ("condition no protocol step has", edit("conditions: {scan_rate_v_s: [0.02, 0.5]}",
                                            "conditions: {scan_rate_v_s: [0.02, 0.5], stir_rpm: [100, 500]}"),
     "conditions:", "conditions.stir_rpm",
     "sets no parameter of the protocol's steps (step parameters: analyte_mm, changer"),
    ("whole-number condition as a range", edit("conditions: {scan_rate_v_s: [0.02, 0.5]}",
                                               "conditions: {scan_rate_v_s: [0.02, 0.5], n_scans: [1, 3]}"),
     "conditions:", "conditions.n_scans", "takes whole numbers, and a range is searched over real ones: list "
     "the values to try, e.g. {choices: [1, 2, 3]}"),
    ("whole-number condition as one value", edit("conditions: {scan_rate_v_s: [0.02, 0.5]}",
                                                 "conditions: {scan_rate_v_s: [0.02, 0.5], n_scans: 2}"),
     "conditions:", "conditions.n_scans", "takes a whole number, and a condition's one value is read as a real "
     "one: set it in the protocol's step, or give {choices: [2]}"),
    # a step parameter that sets up the rig is no condition: a planner would relabel which syringe holds the sample
    ("a syringe's liquid as a condition", edit("conditions: {scan_rate_v_s: [0.02, 0.5]}",
                                              "conditions: {fluid: {choices: [sample, electrolyte]}}"),
     "conditions:", "conditions.fluid", "conditions.fluid: says what a syringe holds, which is no measurement "
     "condition for a planner to vary: set it in the protocol's step"),
    ("an instrument as a condition", edit("conditions: {scan_rate_v_s: [0.02, 0.5]}",
                                          "conditions: {pump: {choices: [analyte_pump, electrolyte_pump]}}"),
     "conditions:", "conditions.pump", "conditions.pump: names an instrument of the rig, which is no measurement "
     "condition"),
    ("a yes/no as a choice", edit("conditions: {scan_rate_v_s: [0.02, 0.5]}",
                                  "conditions: {refill: {choices: [false]}}"),
     "conditions:", "conditions.refill.choices[0]", "conditions.refill.choices[0]: a number or a word, not true/false: "
     "no step parameter a planner may vary is a yes/no (got false)"),
    ("scan-rate high end in mV/s", edit("[0.02, 0.5]", "[0.02, 50]"), "conditions:", "conditions.scan_rate_v_s",
     "got [0.02, 50]: its high end 50, mV/s written as V/s? (0.05 V/s)"),
    ("condition with no choices", edit("conditions: {scan_rate_v_s: [0.02, 0.5]}",
                                       "conditions: {scan_rate_v_s: [0.02, 0.5], e_step_v: {choices: []}}"),
     "conditions:", "conditions.e_step_v.choices",
     "at least one of the values to choose among, e.g. [0.05, 0.1, 0.2] (got [])"),
    # a value of the wrong shape: what the field takes, in plain words, not pydantic's "valid tuple"/"valid integer"
    ("one potential for a window", edit("window_v: [4.5, 4.6]", "window_v: 4.5"), "objective:", "objective.window_v",
     "a list of two potentials [low, high] (V vs Li/Li+), e.g. [4.5, 4.6] (got 4.5)"),
    # decimal commas (a European chemist's): each number split in two in a list, or read as a next field's name
    ("a window with decimal commas", edit("window_v: [4.5, 4.6]", "window_v: [4,5, 4,6]"), "objective:",
     "objective.window_v", "two potentials [low, high] (V vs Li/Li+), e.g. [4.5, 4.6] (got [4, 5, 4, 6]); a decimal "
     "comma? YAML reads 3,9 as two numbers: write 3.9"),  # said "at most 2 two potentials"
    ("an offset with a decimal comma", edit("cell: {reference_offset_v: 3.2}", "cell: {reference_offset_v: 3,2}"),
     "cell:", "cell[2]", "a number where a field's name belongs (got 2): a decimal comma? in {...} YAML reads 3,5 "
     "as 3 and a field named 5: write 3.5"),  # said pydantic's "Keys should be strings"
    ("a library given as its file", edit("library: {file: library.csv, smiles_column: smiles}", "library: library.csv"),
     "library:", "library", "library: must be a mapping of fields, got the text 'library.csv': a file goes in its "
     "file field, {file: library.csv}"),  # said "got str" and nothing of what to write (a chemist's trial)
    ("a list for a count", edit("seed: 7", "seed: [7]"), "seed:", "seed",
     "seed: one whole number, not a list (got [7])"),
    ("no target column", edit("targets: [ie_ev, ea_ev]", "targets: []"), "prior:", "prior.targets",
     "at least one of the columns, e.g. [\"ie_ev\", \"ea_ev\"] (got [])"),  # not "1 columns"
    ("scan rate choices in mV/s", edit("scan_rate_v_s: [0.02, 0.5]", "scan_rate_v_s: {choices: [0.05, 100]}"),
     "conditions:", "conditions.scan_rate_v_s.choices[1]",
     "a scan rate in V/s, 0.0001..10 (got 100): mV/s written as V/s? (0.1 V/s)"),
    ("a range of one scan rate", edit("scan_rate_v_s: [0.02, 0.5]", "scan_rate_v_s: [0.1]"), "conditions:",
     "conditions.scan_rate_v_s[1]", "missing: this takes two scan rates [low, high] (V/s; or one, kept fixed; or "
     "{choices: [0.05, 0.1, 0.2]}), e.g. [0.05, 0.5]"),  # pydantic's "required, but missing" said nothing of what was
    ("one alert URL", edit("seed: 7\n", "seed: 7\nalerts: ntfy://lab\n"), "alerts:", "alerts",
     "alerts: a list of apprise URLs, e.g. [\"ntfy://lab-night-shift\"] (what is written there is not shown: it "
     "may hold a secret)"),
    ("condition range as text", edit("conditions: {scan_rate_v_s: [0.02, 0.5]}",
                                     "conditions: {scan_rate_v_s: [0.02, 0.5], e_step_v: fine}"),
     "conditions:", "conditions.e_step_v", "a number (kept fixed), a range [low, high] or {choices: [...]} (got "
                                           "'fine')"),  # pydantic's "must be a valid tuple" (a newcomer's trial)
    ("three scan rates as a range", edit("scan_rate_v_s: [0.02, 0.5]", "scan_rate_v_s: [0.05, 0.1, 0.2]"),
     "conditions:", "conditions.scan_rate_v_s", "a range is two values, [low, high], searched between them; to "
                                                "choose among fixed values write {choices: [0.05, 0.1, 0.2]} (got "
                                                "[0.05, 0.1, 0.2])"),  # was "at most 2 items after validation"
    ("batch diversity above 1", edit("diversity: 0.7", "diversity: 1.5"), "planner:",
     "planner.diversity", "less than or equal to 1"),
    ("unknown first batch", edit("first_batch: design,", "first_batch: best,"), "planner:",
     "planner.first_batch", "'best' is not one of design, acquisition"),
    ("unknown batch rule", edit("batch: diverse}", "batch: random}"), "batch: random", "planner.batch",
     "'random' is not one of diverse, thompson"),
    ("unknown objective quantity", edit("quantity: oxidation_potential", "quantity: potential"), "objective:",
     "objective.quantity", "not one of oxidation_potential, reduction_potential"),
    ("window goal without a window", edit(", window_v: [4.5, 4.6]", ""), "objective:", "objective.window_v",
     "required when goal is 'window'"),
    ("unknown solvent", edit("solvent: acn", "solvent: water"), "world:", "world.truth.solvent",
     "'water' is not one of acn, pc"),
    ("missing protocol file", edit("protocols/cv_screen.yaml", "protocols/none.yaml"), "protocol:", "protocol",
     "none.yaml: no such file"),
    ("instrument is not a mapping", edit("potentiostat: {driver: emstat, port: /dev/ttyACM0, options: "
                                         "{reference: Ag/Ag+}}", "potentiostat: emstat"),
     "potentiostat:", "instruments.potentiostat", "must be a mapping"),
    ("misspelt instrument field", edit("{driver: emstat, port:", "{driver: emstat, prot:"), "potentiostat:",
     "instruments.potentiostat.prot", "valid fields: driver, port, options"),
    ("key given twice", edit("seed: 7\n", "seed: 7\nseed: 8\n"), "seed: 8", "seed", "given twice"),
    # a key beside a merge key overrides the merged one, as YAML says; written twice beside it, it is given twice
    ("key given twice beside a merge", edit("analyte_pump: {driver", "analyte_pump: &pump {driver",
                                            "electrolyte_pump: {driver: ne1000, port: /dev/ttyUSB0, options: {address: "
                                            "1, diameter_mm: 14.57}}", "electrolyte_pump: {<<: *pump, options: "
                                            "{address: 1}, options: {address: 2}}"),
     "<<: *pump", "instruments.electrolyte_pump.options", "given twice"),
    ("NUL byte in a port", edit("port: /dev/ttyACM0", 'port: "/dev/tty\\0ACM0"'), "potentiostat:",
     "instruments.potentiostat.port", "holds a NUL byte"),
    ("seed that YAML reads as a date", edit("seed: 7", "seed: 2026-01-01"), "seed:", "seed",
     "got 2026-01-01 (a date)"),  # not datetime.date(2026, 1, 1)
    ("seed written as binary", edit("seed: 7", "seed: !!binary aGVsbG8="), "seed:", "seed",
     "a !!binary value: no field takes binary data"),  # it showed b'hello'
    ("port written as binary", edit("port: /dev/ttyACM0", "port: !!binary L2Rldi90dHkAeA=="), "potentiostat:",
     "instruments.potentiostat.port", "a !!binary value"),  # /dev/tty\0x: a labloop bug (a review)
    ("port of 5,000 characters", edit("port: /dev/ttyACM0", "port: /dev/" + "x" * 5000), "potentiostat:",
     "instruments.potentiostat.port", "5005 characters long"),  # echoed whole in a 5,259-character line
    ("store that is a number", edit("store: runs/cathode-screen.db", "store: 5"), "store:", "store",
     "must be the path of the journal file, e.g. runs/name.db, got 5"),
    ("protocol that is a number", edit("protocol: protocols/cv_screen.yaml", "protocol: 5"), "protocol:", "protocol",
     "must be the protocol file's path or a list of steps, got 5"),
    ("acquisition of another goal", edit("acquisition: window_probability", "acquisition: ei"),
     "planner:", "planner.acquisition", "not one of window_probability"),
    ("name that cannot name a file", edit("name: cathode-screen", "name: cathode screen/1"), "name:", "name",
     "letters, digits"),
    ("hits without a hit definition", edit("goal: window, window_v: [4.5, 4.6]", "goal: maximize",
                                           "budget: {max_experiments: 30}", "budget: {stop_after_hits: 3}",
                                           "acquisition: window_probability, ", ""),
     "budget:", "budget.stop_after_hits", "needs a hit definition"),
]


def test_a_structure_file_as_the_library_is_refused_saying_what_a_library_is(labloop, workdir):
    """An SDF given as the library was read as CSV and refused as "no column 'smiles' (columns: 'csd_EVINOO')" (a
    chemist's trial): it is named as a structure file, with the formats a library takes and how to convert it."""
    (workdir / "lib.sdf").write_text("csd_EVINOO\n     RDKit          2D\n\n  0  0  0  0  0  0  0  0  0  0999 V2000\n"
                                      "M  END\n$$$$\n")
    path = workdir / "campaign.yaml"
    path.write_text(path.read_text().replace("library: {file: library.csv,", "library: {file: lib.sdf,"))
    proc = labloop("validate", path)
    assert proc.returncode == 2 and proc.stderr == (
        f"error: {path}:9: library.file: {workdir / 'lib.sdf'}: a structure file, which labloop does not read: a "
        "library is a CSV (with a smiles column), CSV.gz, Parquet or .smi file; write its SMILES out first (RDKit, or "
        "Open Babel: obabel lib.sdf -osmi -O lib.smi)\n"), proc.stderr


def test_text_quoted_in_a_message_is_shown_as_written(labloop, workdir):
    """A library that was a copy of /etc/passwd was refused quoting its first line as 'root❌0:0:root' (the console
    read ``:x:`` as an emoji code; a security trial): quoted text is shown as the file has it."""
    (workdir / "lib.csv").write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon\n")
    path = workdir / "campaign.yaml"
    path.write_text(path.read_text().replace("library: {file: library.csv,", "library: {file: lib.csv,"))
    proc = labloop("validate", path)
    assert proc.returncode == 2 and "(columns: 'root:x:0:0:root:/root:/bin/bash')" in proc.stderr, proc.stderr


@pytest.mark.parametrize(("change", "line_text", "field", "needle"), [case[1:] for case in MALFORMED],
                         ids=[case[0] for case in MALFORMED])
def test_malformed_campaign_exits_2_with_one_line_naming_line_and_field(labloop, workdir, change, line_text, field,
                                                                        needle):
    text = change((workdir / "campaign.yaml").read_text())
    path = workdir / "campaign.yaml"
    path.write_text(text)
    line = next(n for n, content in enumerate(text.splitlines(), start=1) if line_text in content)

    proc = labloop("validate", path)

    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: {path}:{line}: {field}"), lines[0]
    assert needle in lines[0]
    assert not (workdir / "runs").exists()


def test_a_slip_inside_an_anchor_is_said_once_where_it_is_written(labloop, workdir):
    """Every alias of an anchor is the anchor's node again: a key written twice inside it was said once more per
    alias (``instruments.electrolyte_pump.<<.driver``), at the anchor's line each time (an adversarial trial)."""
    path = workdir / "campaign.yaml"
    path.write_text(edit("analyte_pump: {driver: ne1000,", "analyte_pump: &pump {driver: ne1000, driver: ne1000,",
                         "electrolyte_pump: {driver: ne1000, port: /dev/ttyUSB0, options: {address: 1, "
                         "diameter_mm: 14.57}}", "electrolyte_pump: {<<: *pump, options: {address: 1}}",
                         )(path.read_text()))
    line = next(n for n, text in enumerate(path.read_text().splitlines(), start=1) if "&pump" in text)

    proc = labloop("validate", path, "--all")

    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"error: {path}:{line}: instruments.analyte_pump.driver: given twice"]


#: (case, the campaign's conditions, the one line after ``file:line: ``): choices that are no list of distinct values a
#: step takes, each said at its place in plain words; pydantic said "must be a valid tuple", "must have at least 1 item
#: after validation" and "Input should be a valid integer", and took a value listed twice in silence (a chemist's trial)
BAD_CHOICES = [
    ("one number", {"scan_rate_v_s": {"choices": 0.1}},
     "conditions.scan_rate_v_s.choices: a list of values to choose among, e.g. [0.05, 0.1, 0.2] (got 0.1)"),
    ("a text", {"scan_rate_v_s": {"choices": "0.05, 0.1"}},
     "conditions.scan_rate_v_s.choices: a list of values to choose among, e.g. [0.05, 0.1, 0.2] (got '0.05, 0.1')"),
    ("a mapping", {"scan_rate_v_s": {"choices": {"slow": 0.05}}},
     "conditions.scan_rate_v_s.choices: a list of values to choose among, e.g. [0.05, 0.1, 0.2] (got {'slow': 0.05})"),
    ("nothing", {"scan_rate_v_s": {"choices": None}},
     "conditions.scan_rate_v_s.choices: a list of values to choose among, e.g. [0.05, 0.1, 0.2] (got nothing)"),
    ("an empty list", {"scan_rate_v_s": {"choices": []}},
     "conditions.scan_rate_v_s.choices: at least one of the values to choose among, e.g. [0.05, 0.1, 0.2] (got [])"),
    ("a rate twice", {"scan_rate_v_s": {"choices": [0.05, 0.1, 0.1]}},
     "conditions.scan_rate_v_s.choices[2]: 0.1 repeats choices[1]: list each value once"),
    ("a rate written two ways", {"scan_rate_v_s": {"choices": [1, 1.0]}},
     "conditions.scan_rate_v_s.choices[1]: 1.0 repeats choices[0] (1): list each value once"),
    ("a count twice", {"n_scans": {"choices": [1, 2, 2]}},
     "conditions.n_scans.choices[2]: 2 repeats choices[1]: list each value once"),
    ("a count that is not whole", {"n_scans": {"choices": [1, 2.5]}},
     "conditions.n_scans.choices[1]: 2.5 would be refused: {protocol}:12: protocol[3].cv: condition n_scans=2.5: must "
     "be a valid integer"),
]


@pytest.mark.parametrize(("conditions", "said"), [case[1:] for case in BAD_CHOICES], ids=[c[0] for c in BAD_CHOICES])
def test_bad_choices_are_one_plain_line_at_their_place(labloop, tmp_path, write_campaign, conditions, said):
    campaign = write_campaign(tmp_path, conditions=conditions)
    proc = labloop("validate", campaign, "--dry-run")
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout
    [line] = proc.stderr.splitlines()
    said = said.replace("{protocol}", display_name(ROOT / "examples" / "protocols" / "cv_screen.yaml"))
    assert re.fullmatch(rf"error: {re.escape(str(campaign))}:\d+: {re.escape(said)}", line), line


def test_a_journal_that_ran_with_a_choice_listed_twice_still_resumes(tmp_path, write_campaign):
    """Choices listed twice were taken before they were refused: the campaign such a journal keeps validates when
    resumed (``continued``), or the campaign could never be continued."""
    config = load_campaign(write_campaign(tmp_path)).model_dump(mode="json", by_alias=True)
    config["conditions"] = {"scan_rate_v_s": {"choices": [0.1, 0.1]}}
    assert Campaign.model_validate(config, context={"continued": True}).conditions.space() == {
        "scan_rate_v_s": {"choices": (0.1, 0.1)}}
    with pytest.raises(ValidationError, match=r"0\.1 repeats choices\[0\]"):
        Campaign.model_validate(config)


#: (case, file, edit of it, (line, column) of the slip, the plain statement): YAML slips a person makes, said
#: where the slip is, without PyYAML's token names ("expected <block end>, but found '<block mapping start>'")
YAML_SLIPS = [
    ("a tab", "campaign.yaml", edit("seed: 7\n", "seed: 7\n\tstore: runs/x.db\n"), (8, 1),
     "a tab: YAML indents with spaces only"),
    ("a key indented too far", "campaign.yaml", edit("  electrolyte_pump:", "   electrolyte_pump:"), (30, 4),
     "indented unlike the lines above it: the keys (or list items) of one block start in one column"),
    ("a missing colon", "campaign.yaml", edit("seed: 7", "seed 7"), (7, 1), "no ':' after this key (write key: value)"),
    ("a missing colon in a block", "campaign.yaml", edit("budget: {max_experiments: 30}",
                                                         "budget:\n  max_experiments 30\n  max_hours: 3"), (35, 12),
     "a ':' where no key can start: a ':' missing on the line above, this line indented too far, or a value holding "
     "': ' that needs quotes"),
    ("an unclosed brace", "campaign.yaml", edit("budget: {max_experiments: 30}", "budget: {max_experiments: 30"),
     (34, 9), "a ',' or '}' was expected here: a ',' missing, or the '{' at line 33, column 9 never closed"),
    ("an unclosed quote", "protocols/cv_screen.yaml", edit("{pump: analyte_pump,", '{pump: "analyte_pump,'), (10, 20),
     "this quote is never closed"),
    # YAML reads on to the next quote, 27 lines on, and finds its slip there: the line that opened it is named too
    ("a quote closed lines later", "campaign.yaml", edit("seed: 7", 'seed: "7'), (34, 27),
     "indented unlike the lines above it: the keys (or list items) of one block start in one column; or the '\"' on "
     "line 7 is not closed on its line, and YAML read on to the next '\"' as its end"),
    ("a protocol item indented too far", "protocols/cv_screen.yaml", edit("- rinse", "  - rinse"), (13, 3),
     "indented unlike the lines above it: the keys (or list items) of one block start in one column"),
]


@pytest.mark.parametrize(("name", "change", "place", "says"), [case[1:] for case in YAML_SLIPS],
                         ids=[case[0] for case in YAML_SLIPS])
def test_a_yaml_slip_is_one_plain_line_at_its_line_and_column(labloop, workdir, name, change, place, says):
    path = workdir / name
    path.write_text(change(path.read_text()))
    proc = labloop("validate", workdir / "campaign.yaml")
    assert proc.returncode == 2 and proc.stdout == ""
    field = "protocol: " if name.startswith("protocols/") else ""  # the campaign's field that names the file
    line, column = place
    assert proc.stderr == f"error: {path}:{line}:{column}: {field}YAML syntax error: {says}\n"


def test_unknown_driver_is_named_with_the_registered_ones(labloop, workdir, tmp_path, monkeypatch):
    """A distribution on sys.path registers a driver under labloop.drivers, as a plug-in package would."""
    dist = tmp_path / "site" / "fake_rig-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-rig\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[labloop.drivers]\nfake-pump = fake_rig:PUMP\n")
    (tmp_path / "site" / "fake_rig.py").write_text(
        "from labloop.instruments.registry import DriverDescriptor\n"
        "PUMP = DriverDescriptor(name='fake-pump', kind='pump', open=lambda port, **options: None)\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert "fake-pump" in driver_names()

    path = workdir / "campaign.yaml"
    text = path.read_text()
    for driver in ("sim-sampler", "ne1000", "emstat"):
        text = text.replace(f"driver: {driver}", "driver: fake-pump")
    path.write_text(text)
    registered = labloop("validate", path, "--dry-run")  # every driver registered: the rest is checked
    step = (workdir / "protocols" / "cv_screen.yaml").read_text().splitlines().index("- load_sample") + 1
    assert registered.returncode == 2  # the step's line in the protocol file, as the campaign's own checks give
    assert (f"cv_screen.yaml:{step}: protocol[0].load_sample: name the sample changer: the rig has 0"
            in registered.stderr)

    path.write_text(text.replace("potentiostat: {driver: fake-pump", "potentiostat: {driver: warp-drive"))
    line = next(n for n, content in enumerate(text.splitlines(), start=1) if "potentiostat:" in content)
    proc = labloop("validate", path)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith(f"error: {path}:{line}: instruments.potentiostat.driver: "
                                          "'warp-drive' is not one of ")
    assert "fake-pump" in proc.stderr and "more)" not in proc.stderr


def test_unknown_protocol_step_names_the_protocol_file_line(labloop, workdir):
    protocol = workdir / "protocols" / "cv_screen.yaml"
    protocol.write_text(protocol.read_text().replace("- rinse", "- rinse\n- shake: {seconds: 3}"))
    line = protocol.read_text().splitlines().index("- shake: {seconds: 3}") + 1
    proc = labloop("validate", workdir / "campaign.yaml")
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith(f"cv_screen.yaml:{line}: protocol[5]: 'shake' is not one of load_sample, "
                                        "dispense, wait, cv, rinse, analyze, purge, blank, eis, add_standard, "
                                        "clean, polish")


def test_all_problems_are_collected_the_cli_shows_the_first_plus_a_count_and_validate_all_lists_them(labloop, workdir):
    path = workdir / "campaign.yaml"
    path.write_text(path.read_text().replace("seed: 7", "seed: -1").replace("kind: bayes", "kind: magic")
                    .replace("max_experiments: 30", "max_experiments: 0"))
    with pytest.raises(CampaignError) as info:
        load_campaign(path)
    fields = [message.split(": ")[1] for message in info.value.messages]
    assert fields == ["seed", "planner.kind", "budget.max_experiments"]  # in file order
    for command in (("validate", path), ("run", path, "--dry-run")):
        proc = labloop(*command)
        assert proc.returncode == 2
        assert proc.stderr.strip() == (f"error: {info.value.messages[0]} (and 2 more problems in the file: "
                                       "`labloop validate --all` lists every one)")
    proc = labloop("validate", path, "--all")  # a newcomer fixed three typos in three validate runs
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {message}" for message in info.value.messages]


def test_validate_through_the_console_script_exits_2(workdir):
    (workdir / "campaign.yaml").write_text("name: x\nlibrary: {file: library.csv\n")
    proc = subprocess.run([sys.executable, "-m", "labloop.orchestrator.cli.main", "validate", "campaign.yaml"],
                          cwd=workdir, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("error: campaign.yaml:3:1: YAML syntax error: a ',' or '}' was expected here: a "
                                   "',' missing, or the '{' at line 2, column 10 never closed")
    assert not (workdir / "runs").exists()


def test_schema_is_json_schema_of_every_section(labloop):
    proc = labloop("schema")
    schema = json.loads(proc.stdout)
    assert set(schema["properties"]) == {"name", "seed", "store", "library", "prior", "objective", "surrogate",
                                         "planner", "conditions", "instruments", "protocol", "budget", "schedule",
                                         "safety", "cell", "world", "alerts", "compute", "past_measurements"}
    assert schema["additionalProperties"] is False
    assert schema["$defs"]["Planner"]["properties"]["kind"]["enum"] == ["random", "bayes", "greedy", "screening"]
    assert "kind" in schema["$defs"]["Truth"]["properties"]


def test_the_examples_and_an_inline_protocol_meet_the_schema_and_a_wrong_step_does_not(labloop, tmp_path):
    """``labloop schema`` is for editors: it said a protocol is a file's path only, so an editor refused the inline
    protocol labloop accepts and README shows, and completed no step (a newcomer's trial). The example campaigns
    meet it, with their protocol's file or its steps written inline; an unknown step or parameter does not."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(json.loads(labloop("schema").stdout))
    examples = tmp_path / "examples"  # beside a link to the data, as the examples' relative paths expect
    shutil.copytree(ROOT / "examples", examples, ignore=shutil.ignore_patterns("runs", "labloop-rodeostat"))
    (tmp_path / "data").symlink_to(ROOT / "data")
    for name in ("campaign.yaml", "lab-grade.yaml"):
        campaign = yaml.safe_load((examples / name).read_text())
        assert list(validator.iter_errors(campaign)) == [], name
        inline = {**campaign, "protocol": yaml.safe_load((examples / campaign["protocol"]).read_text())}
        assert isinstance(inline["protocol"], list) and list(validator.iter_errors(inline)) == [], name
        (examples / f"inline-{name}").write_text(yaml.safe_dump(inline))
        assert load_campaign(examples / f"inline-{name}").protocol.steps == tuple(inline["protocol"])
        for wrong in ("stir", {"cv": {"scan_rate": 0.1}}, {"wait": {}}):
            assert not validator.is_valid({**inline, "protocol": [*inline["protocol"], wrong]}), wrong


def test_active_hours_cross_midnight_and_reject_empty_windows():
    assert parse_active_hours("19:00-07:00") == (1140, 420)
    assert parse_active_hours("00:00-24:00") == (0, 1440)
    for bad in ("07:00-07:00", "24:00-07:00", "7-9", "12:60-13:00"):
        with pytest.raises(ValueError):
            parse_active_hours(bad)


def test_objective_scores_and_hits():
    window = Objective(quantity="oxidation_potential", goal="window", window_v=(4.5, 4.6))
    assert window.score(4.55) == 0.0 and window.score(4.3) == pytest.approx(-0.2) and window.score(4.7) < 0
    assert window.is_hit(4.5) and not window.is_hit(4.61)
    low = Objective(quantity="reduction_potential", goal="minimize", threshold_v=1.0)
    assert low.score(0.5) > low.score(1.5) and low.is_hit(0.9) and not low.is_hit(1.1)
    assert not Objective(quantity="oxidation_potential", goal="maximize").defines_hits


def test_the_batch_rule_is_for_bayes_only_and_reaches_the_planner():
    from pydantic import ValidationError

    from labloop.orchestrator.config.campaign import Planner
    from labloop.planners import PlannerSettings, make_planner

    with pytest.raises(ValidationError, match="batch: only used by kind 'bayes'"):
        Planner(kind="greedy", batch="thompson")
    library = ["c1ccccc1", "c1ccncc1"]
    for rule, expected in (("diverse", "independent"), ("thompson", "thompson")):
        settings = PlannerSettings(kind="bayes", goal="window", window_v=(4.5, 4.6), acquisition="window_probability",
                                   diversity=0.7, first_batch="design", conditions={}, batch=rule)
        assert make_planner(settings, library).batch == expected
    greedy = PlannerSettings(kind="greedy", goal="window", window_v=(4.5, 4.6), acquisition="mean", diversity=0.7,
                             first_batch="design", conditions={})
    assert make_planner(greedy, library).batch == "independent"


def test_a_library_without_true_values_is_refused_by_dry_runs_only(labloop, workdir):
    # a real lab's library has no ie_ev/ea_ev: the campaign keeps its world section for dry runs, and only a
    # dry run needs the table (a newcomer's trial: validate refused the real campaign for the world's column)
    (workdir / "real.csv").write_text("smiles\n" + "\n".join(load_campaign(workdir / "campaign.yaml").library.smiles()))
    text = (workdir / "campaign.yaml").read_text().replace("file: library.csv", "file: real.csv")
    (workdir / "real.yaml").write_text(text)
    assert load_campaign(workdir / "real.yaml").world is not None  # loads: no column is read yet
    dry = labloop("validate", workdir / "real.yaml", "--dry-run")
    assert dry.returncode == 2 and re.fullmatch(r"error: .*real\.yaml:\d+: world\.truth\.kind: .*real\.csv: no target "
                                                r"column 'ie_ev' \(columns: 'smiles'\)", dry.stderr.strip()), dry.stderr
    (workdir / "bare.yaml").write_text("\n".join(line for line in text.splitlines() if not line.startswith("world:")))
    bare = labloop("validate", workdir / "bare.yaml", "--dry-run")
    assert bare.returncode == 2 and "world: a dry run simulates the library's ie_ev/ea_ev" in bare.stderr
    real = labloop("validate", workdir / "real.yaml")  # the real run gets as far as the instruments
    assert real.returncode == 2 and "instruments.sampler" in real.stderr and "ie_ev" not in real.stderr


def test_an_objective_the_scan_cannot_reach_is_refused(labloop, workdir):
    """A chemist's trial: ``window_v: [-1.5, -1.0]``, written vs the reference, was warned about as out of reach and
    passed (exit 0); the run then spent its whole budget on a window no measurement can be a hit in. Now it is one
    line at the field and exit 2, with a hint when read vs the reference the window is in reach; a threshold too."""
    # the example's cv scans -0.8..1.95 V vs a reference at 3.2 V vs Li/Li+: 2.40-5.15 V vs Li/Li+
    assert "out of reach" not in labloop("validate", workdir / "campaign.yaml", "--dry-run").stderr
    measures = f"the cv measures 2.451 to 5.099 V vs Li/Li+ only, as {SCANS}: no measurement can be a hit"
    cases = {"window_v: [5.5, 5.6]": f"5.5 to 5.6 V vs Li/Li+ is out of reach: {measures}",
             "window_v: [1.3, 1.4]": f"1.3 to 1.4 V vs Li/Li+ is out of reach: {measures} (written vs the reference "
                                     "or vs Fc+/Fc? add cell.reference_offset_v = cell.ferrocene_vs_li_v 3.2 V -> 4.5 "
                                     "to 4.6 V vs Li/Li+)"}
    for window, says in cases.items():
        text = (workdir / "campaign.yaml").read_text().replace("window_v: [4.5, 4.6]", window)
        (workdir / "far.yaml").write_text(text)
        line = next(n for n, content in enumerate(text.splitlines(), start=1) if window in content)
        far = labloop("validate", workdir / "far.yaml", "--dry-run")
        said = f"error: {workdir / 'far.yaml'}:{line}: objective.window_v: {says}\n"
        assert far.returncode == 2 and far.stderr == said, far.stderr
        ran = labloop("run", workdir / "far.yaml", "--dry-run")
        assert ran.returncode == 2 and ran.stderr == said and not (workdir / "runs").exists(), ran.stderr
    # the reference elsewhere than ferrocene: a window copied from a paper (vs Fc+/Fc) was offered only the
    # reference's offset, 0.3 V off (a chemist's trial)
    text = (workdir / "campaign.yaml").read_text().replace("window_v: [4.5, 4.6]", "window_v: [1.1, 1.2]").replace(
        "cell: {reference_offset_v: 3.2}", "cell: {reference_offset_v: 3.5}")
    (workdir / "far.yaml").write_text(text)
    far = labloop("validate", workdir / "far.yaml", "--dry-run")
    assert far.returncode == 2 and far.stderr.endswith(
        "(written vs the reference? add cell.reference_offset_v 3.5 V -> 4.6 to 4.7 V vs Li/Li+; written vs Fc+/Fc? "
        "add cell.ferrocene_vs_li_v 3.2 V -> 4.3 to 4.4 V vs Li/Li+)\n"), far.stderr
    text = (workdir / "campaign.yaml").read_text().replace("goal: window, window_v: [4.5, 4.6]", "goal: maximize, "
                                                          "threshold_v: 5.5").replace("window_probability", "ei")
    (workdir / "far.yaml").write_text(text)
    far = labloop("validate", workdir / "far.yaml", "--dry-run")
    assert far.returncode == 2 and "objective.threshold_v: 5.5 V vs Li/Li+ is out of reach" in far.stderr, far.stderr


def test_an_objective_window_partly_beyond_the_scan_is_warned_about(labloop, workdir):
    """A newcomer's finding: a window reaching past the scan's end (5.1-5.2 V against a scan to 5.15 V vs Li/Li+)
    passed without a word, though a molecule at 5.18 V is never measured as a hit. Now one line names the part
    outside and the scan's ends. What is measured stops 50.5 mV short of the scan's end (an electrochemist's trial:
    a window from 1.50 V against a scan to 1.50 V lost its hits at 1.53-1.55 V), and the advice says how far to
    widen the cv."""
    text = (workdir / "campaign.yaml").read_text().replace("window_v: [4.5, 4.6]", "window_v: [5.0, 5.1]")
    (workdir / "edge.yaml").write_text(text)
    line = next(n for n, content in enumerate(text.splitlines(), start=1) if "window_v: [5.0, 5.1]" in content)
    edge = labloop("validate", workdir / "edge.yaml", "--dry-run")
    assert edge.returncode == 0 and edge.stderr.strip() == (
        f"warning: {workdir / 'edge.yaml'}:{line}: objective.window_v: 5 to 5.1 V vs Li/Li+ is partly out of reach: "
        f"its 5.099 to 5.100 V lies outside the 2.451 to 5.099 V vs Li/Li+ the cv measures, as {SCANS}: a molecule "
        "there cannot be measured as a hit (widen the cv's window to 1.96 V vs the reference)")
    # limits that stop the widening are named, with what else can be done
    (workdir / "tight.yaml").write_text(text.replace("limits_v: [-1.7, 2.0]", "limits_v: [-1.7, 1.95]"))
    assert objective_out_of_reach(load_campaign(workdir / "tight.yaml")).endswith(
        "(widen the cv's window to 1.96 V vs the reference, beyond safety.potential_limits_v (-1.7..1.95 V): widen "
        "them too if the potentiostat and the cell allow, or move the window's high end to 5.099 V)")
    # a two-electron couple's peak lies half as far past its E1/2, further in a warmer cell (1.109 RT/nF): the
    # one-electron 28.5 mV was said of every couple, and 5.0-5.1 V warned of where such a cv measures all of it
    protocol = workdir / "protocols" / "cv_screen.yaml"
    protocol.write_text(protocol.read_text().replace("e_step_v: 0.002}", "e_step_v: 0.002, n_electrons: 2}"))
    assert "out of reach" not in labloop("validate", workdir / "edge.yaml", "--dry-run").stderr
    (workdir / "warm.yaml").write_text(text.replace("window_v: [5.0, 5.1]", "window_v: [5.1, 5.2]").replace(
        "cell: {reference_offset_v: 3.2}", "cell: {reference_offset_v: 3.2, temperature_c: 60}"))
    assert (": objective.window_v: 5.1 to 5.2 V vs Li/Li+ is partly out of reach: its 5.112 to 5.200 V lies outside "
        "the 2.438 to 5.112 V vs Li/Li+ the cv measures, as the protocol's cv scans 2.40 to 5.15 V (its window + "
        "cell.reference_offset_v 3.2 V), and an E1/2 is measured 37.9 mV inside its ends at the nearest (a "
        "2-electron couple's peak lies 15.9 mV past its E1/2 at 60 C; the analysis needs 22 mV"
            in objective_out_of_reach(load_campaign(workdir / "warm.yaml")))


def test_a_reduction_window_at_the_vertex_names_what_stops_widening_the_scan(labloop, workdir):
    """An electrochemist's trial: a reduction window from 1.5 V against a cv turning at -1.7 V vs a reference at 3.2 V
    was warned about through a rounding artefact only ('its 1.50 to 1.50 V', -1.7 + 3.2 = 1.5000000000000002),
    while seven hits at 1.533-1.549 V failed beyond_window: a peak lies 28.5 mV past E1/2 and the analysis needs
    22 mV after it. The advice to widen the cv could not be followed: the EmStat Pico applies -1.7..2 V."""
    text = (workdir / "campaign.yaml").read_text().replace(
        "objective: {quantity: oxidation_potential, goal: window, window_v: [4.5, 4.6]}",
        "objective: {quantity: reduction_potential, goal: window, window_v: [1.5, 2.0]}")
    screen = (workdir / "protocols" / "cv_screen.yaml").read_text()
    reduction = screen.replace("e_begin_v: -0.8, e_vertex1_v: 1.95, e_vertex2_v: -0.8",
                               "e_begin_v: 0.0, e_vertex1_v: -1.7, e_vertex2_v: 0.0")
    assert reduction != screen
    (workdir / "protocols" / "cv_red.yaml").write_text(reduction)
    (workdir / "red.yaml").write_text(text.replace("protocols/cv_screen.yaml", "protocols/cv_red.yaml"))
    line = next(n for n, content in enumerate(text.splitlines(), start=1) if "window_v: [1.5, 2.0]" in content)
    red = labloop("validate", workdir / "red.yaml", "--dry-run")
    assert red.returncode == 0 and red.stderr.strip() == (
        f"warning: {workdir / 'red.yaml'}:{line}: objective.window_v: 1.5 to 2 V vs Li/Li+ is partly out of reach: "
        "its 1.500 to 1.551 V lies outside the 1.551 to 3.150 V vs Li/Li+ the cv measures, as "
        f"{SCANS.replace('2.40 to 5.15 V', '1.50 to 3.20 V')}: a molecule there cannot be measured as a hit (an "
        "EmStat Pico cannot widen the cv: it would have to reach -1.76 V vs the reference, beyond the "
        "-1.7..2 V it applies; measure against a reference electrode sitting lower vs Li/Li+ or with another "
        "potentiostat, or move the window's low end to 1.551 V)")
    for reached in ("1.5505", "1.6"):  # from where the cv measures on: nothing to say, float sums or not
        (workdir / "in.yaml").write_text((workdir / "red.yaml").read_text().replace("[1.5, 2.0]", f"[{reached}, 2.0]"))
        assert objective_out_of_reach(load_campaign(workdir / "in.yaml")) is None


def test_a_threshold_every_measurement_meets_is_warned_of(labloop, workdir):
    """A maximise goal's threshold below every E1/2 the cv measures (1.3 V, written vs the reference for 4.5 V vs
    Li/Li+) made every measurement a hit and passed without a word; a minimise goal's above them likewise."""
    text = (workdir / "campaign.yaml").read_text()
    window = "objective: {quantity: oxidation_potential, goal: window, window_v: [4.5, 4.6]}"
    assert window in text
    line = next(n for n, content in enumerate(text.splitlines(), start=1) if window in content)
    cases = {("maximize", 1.3): "1.3 V vs Li/Li+ lies below every E1/2 the cv measures (2.451 to 5.099 V vs Li/Li+, "
                                f"as {SCANS}): every measurement counts as a hit (written vs the reference or vs "
                                "Fc+/Fc? add cell.reference_offset_v = cell.ferrocene_vs_li_v 3.2 V -> 4.5 V vs "
                                "Li/Li+)",
             ("minimize", 5.3): "5.3 V vs Li/Li+ lies above every E1/2 the cv measures (2.451 to 5.099 V vs Li/Li+, "
                                f"as {SCANS}): every measurement counts as a hit",
             ("maximize", 4.5): None, ("minimize", 2.5): None}
    for (goal, threshold), says in cases.items():
        (workdir / "threshold.yaml").write_text(text.replace(
            window, f"objective: {{quantity: oxidation_potential, goal: {goal}, threshold_v: {threshold}}}").replace(
            "acquisition: window_probability", "acquisition: ei"))
        result = labloop("validate", workdir / "threshold.yaml", "--dry-run")
        assert result.returncode == 0, result.stderr
        where = f"{workdir / 'threshold.yaml'}:{line}: objective.threshold_v"
        assert result.stderr.strip() == ("" if says is None else f"warning: {where}: {says}"), (goal, threshold)


def test_exponents_are_numbers_as_in_yaml_1_2(labloop, workdir):
    """YAML 1.1 reads 1e3 and 1.0e3 as text; a scientist writes them as numbers (the hint once offered
    1.0e3, which was refused too)."""
    text = (workdir / "campaign.yaml").read_text()
    for spelling in ("5e0", "5.0e0", "50e-1", "0.5e+1"):
        (workdir / "exponent.yaml").write_text(text.replace("max_dispense_ml: 5,", f"max_dispense_ml: {spelling},"))
        assert load_campaign(workdir / "exponent.yaml").safety.max_dispense_ml == 5.0, spelling


def test_yaml_readings_that_surprise_are_explained(labloop, workdir):
    text = (workdir / "campaign.yaml").read_text()
    cases = {'active_hours: "00:00-24:00"': ("active_hours: 19:00", "(got 1140: YAML read an unquoted 19:00 as a "
                                                                     "number, put it in quotes)")}
    for old, (new, says) in cases.items():
        (workdir / "surprise.yaml").write_text(text.replace(old, new))
        result = labloop("validate", workdir / "surprise.yaml", "--dry-run")
        assert result.returncode == 2 and says in result.stderr, result.stderr


def test_a_small_number_for_a_text_is_not_hinted_as_a_time(labloop, workdir):
    """``name: 5`` was told "YAML read an unquoted 0:05 as a number": the hint is for what was written as a time."""
    text = (workdir / "campaign.yaml").read_text()
    time = "(got 65: YAML read an unquoted 1:05 as a number, put it in quotes)"
    for written, says in (("5", "(got 5)"), ("1_000", "(got 1000)"), ("1:05", time)):
        (workdir / "number.yaml").write_text(text.replace("name: cathode-screen", f"name: {written}"))
        result = labloop("validate", workdir / "number.yaml", "--dry-run")
        assert result.returncode == 2 and f"name: must be a valid string {says}" in result.stderr, result.stderr


def test_a_campaign_without_safety_limits_is_told_the_defaults_it_runs_under(labloop, write_campaign, tmp_path):
    """Deleting the safety section validated without a word, with 10 mL syringes, a 20 mL cell and +/-3 V
    assumed for a rig of 1 mL syringes and an 8 mL cell."""
    bare = labloop("validate", write_campaign(tmp_path), "--dry-run")
    assert bare.returncode == 0, bare.stderr
    assert (f"warning: {tmp_path / 'tiny.yaml'}:1: safety: no such section, so labloop's defaults are the rig's "
            "limits (5 mL per dispense, 10 mL syringes, a 20 mL cell, -3..3 V vs the reference): write yours") \
        in " ".join(bare.stderr.split())
    given = labloop("validate", write_campaign(tmp_path, safety={"cell_volume_ml": 8.0}), "--dry-run")
    assert given.returncode == 0 and "no such section" not in given.stderr, given.stderr


def test_the_cells_temperature_is_the_one_d_and_k0_are_computed_at(tmp_path, write_campaign):
    """cell.temperature_c reaches the executor, which computes D at it (and k0 from that D's recorded temperature);
    one beyond a cell's is refused at the field."""
    from labloop.orchestrator.compose import build_executor

    campaign = load_campaign(write_campaign(tmp_path, cell={"temperature_c": 40, "solvent": "propylene carbonate"}))
    assert build_executor(campaign, None).temperature_k == pytest.approx(313.15)  # type: ignore[arg-type]
    # a value in kelvin is offered in C (it was "less than or equal to 80", no slip named: an electrochemist's trial)
    beyond = r"cell.temperature_c: {} C is beyond the -40\.\.80 C a cell is measured at"
    with pytest.raises(CampaignError, match=beyond.format(r"313\.15") + r": kelvin written as C\? \(40 C\)$"):
        load_campaign(write_campaign(tmp_path, cell={"temperature_c": 313.15}))
    with pytest.raises(CampaignError, match=beyond.format("150") + "$"):
        load_campaign(write_campaign(tmp_path, cell={"temperature_c": 150}))
