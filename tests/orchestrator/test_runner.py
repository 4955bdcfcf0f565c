"""The campaign runner on emulators: a dry run completes its budget with everything journalled, SIGINT leaves
the pumps stopped and the cell off, and repeated instrument faults stop the campaign with exit 1."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from labloop.orchestrator.compose import build_executor, build_rig
from labloop.orchestrator.config.campaign import load_campaign
from labloop.orchestrator.config.yaml_source import display_name
from labloop.orchestrator.journal.store import Journal, State
from labloop.orchestrator.loop.interrupts import EXIT_INTERRUPTED, Interrupted, Interrupts, redelivering
from labloop.orchestrator.loop.runner import Runner
from labloop.surrogate.dataset import read_table


@pytest.mark.slow
def test_dry_run_completes_its_budget_with_every_record(tmp_path, labloop, write_campaign):
    campaign_file = write_campaign(tmp_path, prior=True, shared_prior=True)
    result = labloop("run", campaign_file, "--dry-run")
    assert result.returncode == 0, result.stderr
    with Journal.open(tmp_path / "tiny.db", readonly=True) as journal:
        done = journal.experiments(states=(State.DONE,))
        assert len(done) == 6
        assert not journal.experiments(states=(State.RUNNING, State.PROPOSED, State.INTERRUPTED))
        assert len({e.smiles for e in journal.experiments()}) == len(journal.experiments())
        for e in done:
            assert e.step is not None and e.planner == "random" and e.model_version is not None
            assert e.mu is not None and e.sigma is not None and "scan_rate_v_s" in e.conditions
            assert len(journal.voltammograms(e.id)) == 1
            assert journal.analysis(e.id) is not None and e.potential_v is not None
            actions = [a for a in journal.actions(e.id) if a.attempt == e.attempt]
            assert [a.command for a in actions] == ["load_sample", "dispense", "dispense", "cv", "rinse"]
            assert all(a.outcome == "ok" and a.finished_at for a in actions)
        models = journal.model_versions()
        assert models[0].metrics["n_measurements"] == 0 and len(models) == 2  # prior + the retrain after 3
        assert all((tmp_path / "tiny.models").glob("*/manifest.json"))
        kinds = {e.kind for e in journal.events()}
        assert {"run", "health", "retrain", "model", "finished"} <= kinds


def test_a_whole_number_condition_is_planned_from_its_choices(tmp_path, labloop, write_campaign):
    """``n_scans: {choices: [1, 2, 3]}``: the campaign file's whole numbers stay whole (they were read as 1.0,
    which the cv step refused, so no campaign could vary the number of scans), and each experiment runs the
    cv with the count its proposal chose. The scan rate from a lab's fixed rates likewise (it took a range only,
    and refused ``{choices: [0.05, 0.1, 0.2]}``, though README offered choices for every condition)."""
    campaign_file = write_campaign(tmp_path, conditions={"scan_rate_v_s": {"choices": [0.05, 0.2]},
                                                         "n_scans": {"choices": [1, 2, 3]}},
                                   budget={"max_experiments": 4})
    assert labloop("validate", campaign_file, "--dry-run").returncode == 0
    result = labloop("run", campaign_file, "--dry-run")
    assert result.returncode == 0, result.stderr
    with Journal.open(tmp_path / "tiny.db", readonly=True) as journal:
        done = journal.experiments(states=(State.DONE,))
        assert len(done) == 4
        for e in done:
            chosen = e.conditions["n_scans"]
            assert type(chosen) is int and chosen in (1, 2, 3)
            (measured,) = journal.voltammograms(e.id)  # the raw data says how it was taken
            assert measured.params.n_scans == chosen
            assert e.conditions["scan_rate_v_s"] in (0.05, 0.2)
            assert measured.params.scan_rate_v_s == e.conditions["scan_rate_v_s"]


def test_sigint_leaves_pumps_stopped_and_cell_off(tmp_path, write_campaign):
    campaign = load_campaign(write_campaign(tmp_path, budget={"max_experiments": 50}))
    library = read_table(campaign.library.file).smiles
    with build_rig(campaign, dry_run=True) as rig, Journal.create(campaign.store, campaign) as journal, \
            Interrupts() as interrupts:
        runner = Runner(campaign, journal, rig, build_executor(campaign, rig), library, None,
                        interrupts)
        watcher = threading.Thread(target=_interrupt_during_dispense, args=(campaign.store,), daemon=True)
        watcher.start()
        assert runner.run() == EXIT_INTERRUPTED
        states = rig.simulation.emulator_states()
        assert states["analyte_pump"]["status"] == "S" and states["electrolyte_pump"]["status"] == "S"
        assert states["potentiostat"]["cell_on"] is False
        assert not journal.experiments(states=(State.RUNNING,))
        assert journal.experiments(states=(State.INTERRUPTED,)), "the experiment in progress is interrupted"
        assert all(a.finished_at for e in journal.experiments() for a in journal.actions(e.id))
        assert journal.events()[-1].kind == "interrupted"


def test_a_stop_mid_dispense_says_the_syringe_it_leaves_counted_low(tmp_path, labloop, write_campaign):
    """A stop in the analyte's dispense leaves its syringe counted 0.5 mL low for good (the dispense counts in full,
    its refill as not done, and later refills put back what each dispense took): nothing said so, and a stop days
    later asked for a refill the first had not mentioned (an operator's trial). A real SIGINT, sent by a thread of
    this process while the second experiment's analyte dispense runs (world.time_scale 50: about a second)."""
    campaign_file = write_campaign(tmp_path, budget={"max_experiments": 3},
                                   world={"truth": {"from": "ie_ea", "solvent": "acn"}, "time_scale": 50})
    store = tmp_path / "tiny.db"

    def interrupt_in_the_analyte_dispense() -> None:
        _wait_for_open_action(store, lambda a: a.instrument == "analyte_pump")
        os.kill(os.getpid(), signal.SIGINT)

    watcher = threading.Thread(target=interrupt_in_the_analyte_dispense, daemon=True)
    watcher.start()
    result = labloop("run", campaign_file, "--dry-run")
    watcher.join()
    said = ("by labloop's count analyte_pump's syringe holds 9.5 of its 10 mL (a dispense cut short counts as "
            "delivered in full, its refill as not done), and stays so until filled by hand; the next experiment has "
            "enough, so the resume needs no flag: to count it full again now (optional), fill every syringe and add "
            "`--syringes-filled` to the resume")
    assert result.returncode == 130 and said in " ".join(result.stderr.split()), result.stderr
    with Journal.open(store, readonly=True) as journal:
        assert said in journal.events()[-1].message


def test_only_a_syringe_whose_dispense_the_stop_cut_short_is_said_low():
    """A syringe the campaign started partly loaded (an NE-1000's content_ml) is low by the operator's own word: said at
    every stop, the note would be noise, and its "(a dispense cut short ...)" wrong."""
    from labloop.instruments.contracts import SafetyLimits
    from labloop.orchestrator.loop.runner import _syringes_low
    from labloop.protocols.steps import Contents

    contents = Contents(SafetyLimits(5.0, 10.0, (-3.0, 3.0)), syringes={"analyte_pump": 0.3, "electrolyte_pump": 5.5})
    said = _syringes_low(contents, {}, {"electrolyte_pump"})
    assert "electrolyte_pump's syringe holds 5.5 of its 10 mL" in said and "analyte_pump" not in said
    assert _syringes_low(contents, {"electrolyte_pump": 5.5}, {"electrolyte_pump"}) == ""  # said as short instead
    assert _syringes_low(contents, {}, set()) == ""


def _interrupt_during_dispense(store):
    """SIGINT this process once the third experiment's dispense has been journalled."""
    deadline = time.monotonic() + 60
    with Journal.open(store, readonly=True) as journal:
        while time.monotonic() < deadline:
            running = journal.experiments(states=(State.RUNNING,))
            if running and running[0].id >= 3 and any(a.command == "dispense" for a in journal.actions(running[0].id)):
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.001)


def test_consecutive_faults_stop_the_campaign_with_exit_1(tmp_path, labloop, write_campaign):
    # the cv's current range (1 nA) is far below the analyte's peak: the potentiostat overloads in every scan (a
    # typed Overload, an instrument fault), and the experiment fails
    protocol = ["load_sample",
                {"dispense": {"pump": "analyte_pump", "volume_ml": 0.5, "rate_ml_min": 0.5, "fluid": "sample",
                              "refill": True}},
                {"dispense": {"pump": "electrolyte_pump", "volume_ml": 4.5, "rate_ml_min": 5.0,
                              "fluid": "electrolyte", "refill": True}},
                {"cv": {"e_begin_v": -0.8, "e_vertex1_v": 1.95, "e_vertex2_v": -0.8, "current_range_a": 1e-9}},
                "rinse"]
    campaign_file = write_campaign(tmp_path, protocol=protocol, budget={"max_experiments": 2})
    result = labloop("run", campaign_file, "--dry-run")
    assert result.returncode == 1, result.stderr
    assert "stopped: 3 instrument faults in a row" in result.stderr
    with Journal.open(tmp_path / "tiny.db", readonly=True) as journal:
        failed = journal.experiments(states=(State.FAILED,))
        assert len(failed) == 3 and all("potentiostat (cv): Overload: " in e.cause for e in failed)
        assert journal.events()[-1].kind == "stopped"


def test_unusable_voltammograms_in_a_row_stop_only_at_their_own_limit(tmp_path, labloop, write_campaign):
    """A scan window no molecule's couple lies in: every voltammogram is flat, every analysis fails (the rig works);
    three of them do not stop a campaign (the instrument-fault limit is 3), five do. The stop says that a cv window
    fixed in the campaign file needs a new store, and a resume after the protocol file changed warns that it runs the
    journal's protocol (a chemist widened the window, resumed as the stop said, and got 9 more failures in silence)."""
    protocol = ["load_sample",
                {"dispense": {"pump": "analyte_pump", "volume_ml": 0.5, "rate_ml_min": 0.5, "fluid": "sample",
                              "refill": True}},
                {"dispense": {"pump": "electrolyte_pump", "volume_ml": 4.5, "rate_ml_min": 5.0,
                              "fluid": "electrolyte", "refill": True}},
                {"cv": {"e_begin_v": -1.6, "e_vertex1_v": -1.2, "e_vertex2_v": -1.6}}, "rinse"]
    protocol_file = tmp_path / "flat.yaml"
    protocol_file.write_text(yaml.safe_dump(protocol, sort_keys=False))
    campaign_file = write_campaign(tmp_path, protocol=str(protocol_file),  # an objective the scan reaches
                                   objective={"quantity": "oxidation_potential", "goal": "window",
                                              "window_v": [1.7, 1.8]},
                                   budget={"max_experiments": 6, "max_consecutive_failed_analyses": 5})
    result = labloop("run", campaign_file, "--dry-run")
    assert result.returncode == 1, result.stderr
    store = tmp_path / "tiny.db"
    assert "stopped: 5 unusable voltammograms in a row" in result.stderr
    assert (f"check the electrodes and the cv window; see `labloop log {store}`; for the electrodes, `labloop resume "
            f"{store}` once they are fixed; for the cv window, fix it in the campaign file and run it with a new store "
            "(`labloop run FILE --store NEW.db`): a journal keeps the protocol it began with") in result.stderr
    with Journal.open(store, readonly=True) as journal:
        failed = journal.experiments(states=(State.FAILED,))
        assert len(failed) == 5 and all(e.cause.startswith("analysis: ") for e in failed)
        assert "max_consecutive_failed_analyses" in journal.events()[-1].message
    protocol[3]["cv"]["e_vertex1_v"] = 1.9
    protocol_file.write_text(yaml.safe_dump(protocol, sort_keys=False))
    result = labloop("resume", store)
    assert result.returncode == 1, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "changed since" in line]
    assert warnings == [f"warning: {display_name(protocol_file)} changed since this campaign's journal began "
                        "(protocol[3].cv.e_vertex1_v: -1.2 in the journal, 1.9 here): resume runs the journal's "
                        "protocol; to run the file's, run the campaign with a new store (`labloop run FILE --store "
                        "NEW.db`)"], result.stderr


def test_a_molecule_unstable_once_oxidised_fails_saying_so(tmp_path, labloop, write_campaign):
    """world.unstable_share 1: every molecule's oxidised form reacts away at 1/s (an EC couple). A scan that brings
    back under half of what it oxidised fails as chemically irreversible, saying what came back and the potential
    read, where it was a usable "quasi-reversible" measurement (an electrochemist's trial); one that brings back
    nothing is irreversible, as before; none is learnt from with less than half back."""
    campaign_file = write_campaign(tmp_path, conditions={"scan_rate_v_s": [0.5, 0.5]},
                                   budget={"max_experiments": 2, "max_consecutive_failed_analyses": 4},
                                   world={"truth": {"from": "ie_ea", "solvent": "acn"}, "noise_v": 0.01,
                                          "unstable_share": 1.0})
    result = labloop("run", campaign_file, "--dry-run")
    assert result.returncode in (0, 1), result.stderr
    with Journal.open(tmp_path / "tiny.db", readonly=True) as journal:
        experiments = journal.experiments()
    said = re.compile(r"analysis: chemically_irreversible \(the return peak is (\d+)% of the forward one: what the "
                      r"scan oxidised reacts away within seconds; its E1/2 read \d\.\d{3} V vs Li/Li\+ on the cell's "
                      r"nominal reference\)")
    flagged = [int(m[1]) for e in experiments if e.cause and (m := said.fullmatch(e.cause))]
    assert flagged and all(share < 50 for share in flagged), [e.cause for e in experiments]
    assert all(said.fullmatch(e.cause) or e.cause == "analysis: irreversible"
               for e in experiments if e.status == "failed"), [e.cause for e in experiments]
    assert all(e.ratio >= 0.5 for e in experiments if e.status == "done"), experiments
    # at 0.1 V/s none comes back whole: a row of them stops the run blaming the molecules, not the electrodes or the
    # window (a chemist's trial)
    slow = write_campaign(tmp_path, name="slow", conditions={"scan_rate_v_s": [0.1, 0.1]},
                          budget={"max_experiments": 2, "max_consecutive_failed_analyses": 3},
                          world={"truth": {"from": "ie_ea", "solvent": "acn"}, "noise_v": 0.01, "unstable_share": 1.0})
    stopped = labloop("run", slow, "--dry-run")
    assert stopped.returncode == 1, stopped.stderr
    assert ("3 unusable voltammograms in a row; campaign stopped (budget.max_consecutive_failed_analyses): every "
            "one's oxidised or reduced form reacted away within the scan (chemically_irreversible): the molecules the "
            "planner picks are unstable there, not the rig") in stopped.stderr, stopped.stderr


def test_active_hours_cross_midnight():
    from datetime import datetime

    from labloop.orchestrator.loop.active_hours import ActiveHours

    night = ActiveHours("19:00-07:00")
    assert night.contains(datetime(2026, 1, 1, 23, 30)) and night.contains(datetime(2026, 1, 2, 6, 59))
    assert not night.contains(datetime(2026, 1, 2, 7, 0)) and not night.contains(datetime(2026, 1, 2, 12, 0))
    assert night.next_start(datetime(2026, 1, 2, 12, 0)) == datetime(2026, 1, 2, 19, 0)
    assert ActiveHours("00:00-24:00").contains(datetime(2026, 1, 1, 23, 59))
    day = ActiveHours("08:00-18:00")
    assert day.next_start(datetime(2026, 1, 1, 20, 0)) == datetime(2026, 1, 2, 8, 0)


def test_outside_active_hours_says_the_opening_in_local_time_with_its_utc_offset_and_its_date_if_not_today(
        monkeypatch):
    """`outside active hours 03:00-04:00; next experiment at 03:00` named no zone beside the log's tables (in UTC,
    or the local zone they name) nor which day (an operator's trial). This process in a zone one hour east of UTC."""
    import time
    from datetime import datetime

    from labloop.orchestrator.loop.active_hours import ActiveHours

    monkeypatch.setenv("TZ", "Etc/GMT-1")  # POSIX's sign: one hour east of UTC
    time.tzset()
    try:
        night = ActiveHours("03:00-04:00")
        assert night.said_waiting(datetime(2026, 1, 1, 4, 30)) == (
            "outside active hours 03:00-04:00 UTC+1; next experiment at 2026-01-02 03:00 UTC+1")
        assert night.said_waiting(datetime(2026, 1, 1, 1, 0)) == (
            "outside active hours 03:00-04:00 UTC+1; next experiment at 03:00 UTC+1")
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.slow
def test_wait_for_retrain_brings_each_retrained_model_to_the_next_proposal(tmp_path, labloop, write_campaign):
    """At zero latency a retrain outlasts the experiments after it; with surrogate.wait_for_retrain every
    proposal after a retrain started uses the model it produced (issue 13: retraining reaches the proposals)."""
    campaign_file = write_campaign(tmp_path, prior=True, shared_prior=True, planner={"kind": "greedy", "batch_size": 2},
                                   surrogate={"preset": "fast", "folds": 2, "epochs": 2, "retrain_every": 2,
                                              "wait_for_retrain": True},
                                   budget={"max_experiments": 6})
    result = labloop("run", campaign_file, "--dry-run")
    assert result.returncode == 0, result.stderr
    with Journal.open(tmp_path / "tiny.db", readonly=True) as journal:
        experiments = journal.experiments()
        first_retrain = min(e.id for e in journal.events() if e.kind == "retrain")
        retrain_event = next(e for e in journal.events() if e.id == first_retrain)
        later = [e for e in experiments if e.step is not None and e.step >= 1]
        assert later and all(e.model_version >= 2 for e in later), [(e.step, e.model_version) for e in experiments]
        assert any(e.kind == "waiting" and "retrain" in e.message for e in journal.events())
        assert retrain_event.data["round"] == 1


@pytest.mark.slow
def test_a_stop_during_a_retrain_says_the_resume_trains_it_again(tmp_path, labloop, write_campaign):
    """A Ctrl-C while a proposal waited for a retrain said nothing of it, and the resume then spent the retrain's minute
    on it again without a word (a newcomer's trial). The SIGINT is real, sent by a thread of this process once the
    journal says the proposal waits; the resume's journal shows the round started again."""
    campaign_file = write_campaign(tmp_path, prior=True, shared_prior=True, planner={"kind": "greedy", "batch_size": 2},
                                   surrogate={"preset": "fast", "folds": 2, "epochs": 8, "retrain_every": 2,
                                              "wait_for_retrain": True},
                                   budget={"max_experiments": 4})
    store = tmp_path / "tiny.db"

    def interrupt_while_waiting() -> None:
        deadline = time.monotonic() + 300  # liveness only
        while time.monotonic() < deadline:
            if store.exists():
                with Journal.open(store, readonly=True) as journal:
                    if any(e.kind == "waiting" and "retrain" in e.message for e in journal.events()):
                        os.kill(os.getpid(), signal.SIGINT)
                        return
            time.sleep(0.01)

    watcher = threading.Thread(target=interrupt_while_waiting, daemon=True)
    watcher.start()
    result = labloop("run", campaign_file, "--dry-run")
    watcher.join()
    said = "retraining round 1 stopped unfinished: the resume trains it again"
    assert result.returncode == 130 and said in result.stderr, result.stderr
    with Journal.open(store, readonly=True) as journal:
        assert journal.events()[-1].kind == "interrupted" and journal.events()[-1].message.endswith(said)
        assert not journal.model_versions()[1:], "the stop came after round 1 saved its model"
    resumed = labloop("resume", store)
    assert resumed.returncode == 0, resumed.stderr
    with Journal.open(store, readonly=True) as journal:
        assert [e.data["round"] for e in journal.events() if e.kind == "retrain"][:2] == [1, 1]
        assert any(v.metrics.get("round") == 1 for v in journal.model_versions())


def test_a_full_disk_while_the_prior_is_saved_is_said_as_the_disk(tmp_path, write_campaign, monkeypatch):
    """An operator's run on a 2 MB disk stopped with 'no such model directory': saving the prior failed for want
    of space, and the failure was taken for another run saving the same model meanwhile. It is the disk's error
    now, naming the file (the CLI says it in one line, exit 1). Nothing real fills the disk here: train() raises
    what a full one raised, without saving."""
    import errno

    from labloop.orchestrator.learning import models

    def full_disk(campaign, table, directory, progress=None):
        raise OSError(errno.ENOSPC, "No space left on device", str(directory / "fold-0.weights.h5"))

    monkeypatch.setattr(models, "train", full_disk)
    campaign = load_campaign(write_campaign(tmp_path, prior=True))
    with Journal.create(campaign.store, campaign) as journal, pytest.raises(OSError) as raised:
        models.prior_model(campaign, journal)
    assert raised.value.errno == errno.ENOSPC and raised.value.filename.endswith("fold-0.weights.h5")


def test_a_retrain_on_a_full_disk_is_one_line_and_the_campaign_goes_on(tmp_path, labloop, write_campaign):
    """A retrain whose model did not fit on the disk printed h5py's 30-line traceback on the console (an operator's
    trial saw a segmentation fault there too): the save checks the room first, the console gets one line saying
    the disk and that the campaign goes on with the model it has, the journal a ``retrain_failed`` event, and
    nothing half-written stays. A real full disk: a 6 MB tmpfs (root only), the prior model kept outside it."""
    with _tmpfs(tmp_path / "disk", "6M") as disk:
        campaign_file = write_campaign(disk, prior=True, shared_prior=True,
                                       surrogate={"preset": "fast", "folds": 2, "epochs": 2, "retrain_every": 2,
                                                  "wait_for_retrain": True}, budget={"max_experiments": 4})
        result = labloop("run", campaign_file, "--dry-run")
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr and "h5py" not in result.stderr, result.stderr
        said = [line for line in result.stderr.splitlines() if "retraining round 1 failed" in line]
        assert len(said) == 1 and said[0].endswith(
            f"retraining round 1 failed (no space left on the disk of {disk / 'tiny.models'}: free space, and the "
            "next retrain tries again); the campaign goes on with the model it has"), said
        with Journal.open(disk / "tiny.db", readonly=True) as journal:
            failed = [e.message for e in journal.events() if e.kind == "retrain_failed"]
            assert failed and failed[0].startswith("retraining round 1 failed: no space left on the disk of")
            assert len(journal.experiments(states=(State.DONE,))) == 4
        assert not list(disk.glob("tiny.models/.*"))  # no half-written model folder


def _wait_for_open_action(store: Path, which: Callable[[Any], bool]) -> None:
    """Until an action ``which`` picks is in progress (no outcome yet) in the second experiment or a later one of the
    run writing ``store``; for a test's thread to act at that moment (a liveness deadline only)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if store.exists():
            with Journal.open(store, readonly=True) as journal:
                running = journal.experiments(states=(State.RUNNING,))
                if running and running[0].id >= 2 and any(which(a) and a.outcome is None
                                                          for a in journal.actions(running[0].id)):
                    return
        time.sleep(0.005)
    raise AssertionError("no such action in 300 s")


@contextlib.contextmanager
def _tmpfs(folder: Path, size: str):
    """A real small disk at ``folder`` (a tmpfs: root only; the test is skipped where it cannot be mounted)."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)


def test_a_disk_nearly_full_refuses_the_run_before_the_rig(tmp_path, labloop, write_campaign):
    """An operator resumed on a disk with 1.5 MB free: a sample was loaded and dispensed before the journal's next
    write failed, the same stop again. validate and run refuse it first, nothing written."""
    with _tmpfs(tmp_path / "disk", "3M") as disk:
        campaign_file = write_campaign(disk, budget={"max_experiments": 2})
        for command in (("validate", campaign_file, "--dry-run"), ("run", campaign_file, "--dry-run")):
            refused = labloop(*command)
            assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
            assert f"store: the disk of {disk / 'tiny.db'} has " in refused.stderr
            assert "MB free, under the 5 MB a run starts with" in refused.stderr, refused.stderr
        assert not (disk / "tiny.db").exists()


def test_a_disk_full_mid_experiment_says_the_rig_and_the_cell(tmp_path, labloop, write_campaign):
    """The journal's write failed mid-experiment (a full disk): the stop said only "free space, then `labloop
    resume`", which was then refused for the liquid in the cell, and nothing said whether the rig was made safe (an
    operator's trial). A real full disk: a tmpfs filled by this test while the second experiment's dispense runs
    (world.time_scale 50 makes its minute last about a second)."""
    with _tmpfs(tmp_path / "disk", "8M") as disk:
        campaign_file = write_campaign(disk, budget={"max_experiments": 3},
                                       world={"truth": {"from": "ie_ea", "solvent": "acn"}, "time_scale": 50})
        store = disk / "tiny.db"

        def fill_during_the_second_dispense() -> None:
            _wait_for_open_action(store, lambda a: a.command == "dispense")
            with contextlib.suppress(OSError), open(disk / "filler", "wb") as filler:
                while True:
                    filler.write(b"\0" * 65536)

        filler = threading.Thread(target=fill_during_the_second_dispense, daemon=True)
        filler.start()
        result = labloop("run", campaign_file, "--dry-run")
        filler.join()
        last = result.stderr.strip().splitlines()[-1]
        assert result.returncode == 1 and "the disk is full" in last, result.stderr
        # one resume command: the disk's bare one would be refused for the cell's liquid
        assert last.endswith("; free space; instruments in a safe state; the cell still holds 0.5 mL by labloop's "
                             f"count: empty it, then `labloop resume {store} --cell-emptied`"), last


def test_a_ctrl_c_that_lands_in_a_gc_callback_is_delivered_again_not_lost():
    """Python drops what a gc callback (or a weakref callback, or __del__) raises: a --scheduler local run's
    in-process Dask scheduler times every garbage collection from one (distributed/gc.py), and a Ctrl-C whose handler
    ran there was lost, the run going on to its end (a scale-out trial; the handler's frame, logged, was that
    callback's). The signal is delivered again once Python has dropped it, and the run stops. The signal is sent from
    the first callback itself, so that its handler runs there however loaded the machine is."""
    import gc

    def busy(seconds: float) -> None:  # Python code a signal's handler can interrupt
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            pass

    sent: list[bool] = []

    def signalling(phase: str, _info: dict) -> None:
        if phase == "start" and not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGINT)
            busy(30)  # the handler raises in here: Python drops it, and without redelivery the loop below runs on

    try:
        with redelivering(), Interrupts(), pytest.raises(Interrupted):  # as the CLI's main() runs every command
            gc.callbacks.append(signalling)  # here: a collection before the handler is in place would send it early
            gc.collect()
            deadline = time.monotonic() + 30  # a liveness deadline only: a lost signal ends the loop without a raise
            while time.monotonic() < deadline:
                busy(0.05)
                gc.collect()
    finally:
        if signalling in gc.callbacks:
            gc.callbacks.remove(signalling)
    assert sent


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_one_stop_signal_the_code_running_holds_ends_the_run_by_itself(signum):
    """A service manager's stop, a plain kill or a closed terminal sends one signal and nobody sends the others: with
    a driver that catches every KeyboardInterrupt the run went on for good (a reviewer's finding). Not taken within
    the watchdog's time (orchestrator/loop/interrupts.py HELD_FORCE_S, here 0.3 s), the stop is ended through
    on_held, on the main thread; a quick second signal (a double tap) is the same stop."""
    ended: list[tuple[int, float, bool]] = []
    with Interrupts(held_force_s=0.3) as interrupts:
        interrupts.on_held = lambda sig, held_s: ended.append(
            (sig, held_s, threading.current_thread() is threading.main_thread()))
        for _ in range(2):  # the second at once: not another stop
            with contextlib.suppress(KeyboardInterrupt):  # each raised here, and caught, as by the plug-in
                os.kill(os.getpid(), signum)
        deadline = time.monotonic() + 30  # a liveness deadline only
        while not ended and time.monotonic() < deadline:
            with contextlib.suppress(KeyboardInterrupt):  # what the plug-in did: every stop caught
                time.sleep(0.01)
        assert ended and ended[0][0] == signum and ended[0][1] >= 0.3 and ended[0][2], ended
        assert interrupts._untaken and len(interrupts._untaken) == 1  # the double tap counted once
