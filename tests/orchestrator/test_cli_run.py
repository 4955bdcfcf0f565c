"""`labloop run | resume` from the command line: bad input exits 2 and writes nothing, overrides land in the
journal, a finished campaign is not run again, a campaign being run is not run twice, and Ctrl-C (or a plain
``kill``) exits 130 with the resume command."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from labloop.core.version import runtime_versions
from labloop.orchestrator.config.campaign import load_campaign
from labloop.orchestrator.journal.lock import being_run, sole_runner
from labloop.orchestrator.journal.store import WARNING, Journal, State
from labloop.orchestrator.journal.view import snapshot

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DATA = EXAMPLES.parent / "data" / "ocelot_chromophore_v1_ie_ea.csv"


def _nothing_written(folder) -> bool:
    return sorted(p.name for p in folder.iterdir()) == ["tiny.yaml"]



def test_bad_input_exits_2_and_writes_nothing(tmp_path, labloop, write_campaign):
    cases = {
        "missing library": {"library": {"file": str(tmp_path / "nope.csv")}},
        "bayes without a surrogate": {"planner": {"kind": "bayes"}},
        "dispense beyond the safety limit": {"safety": {"max_dispense_ml": 1.0}},
    }
    for why, sections in cases.items():
        folder = tmp_path / why.replace(" ", "_")
        folder.mkdir()
        prior = why != "bayes without a surrogate"
        result = labloop("run", write_campaign(folder, prior=prior, **sections), "--dry-run")
        assert result.returncode == 2, (why, result.stderr)
        assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1, why
        assert _nothing_written(folder), why
    assert labloop("resume", tmp_path / "missing.db").returncode == 2


def test_overrides_are_kept_and_a_finished_campaign_is_not_run_again(tmp_path, labloop, write_campaign):
    store = tmp_path / "elsewhere" / "x.db"
    campaign_file = write_campaign(tmp_path, budget={"max_experiments": 2})
    assert labloop("run", campaign_file, "--dry-run", "--store", store, "--seed", 11).returncode == 0
    assert not (tmp_path / "tiny.db").exists()
    for again in (("resume", store), ("run", campaign_file, "--dry-run", "--store", store, "--seed", 11)):
        result = labloop(*again)
        assert result.returncode == 0  # and each says how to go on (run said only its summary, a newcomer's trial)
        summary, how = result.stderr.splitlines()[-2:]
        assert re.fullmatch(rf"tiny: 2/2 experiments done(, \d+ hits?)?; journal {re.escape(str(store))} "
                            r"\(`labloop log`, `labloop report`\)", summary), result.stderr
        assert how == (f"{store}: the campaign was already at its budget (2 experiments done); to go on, give it a "
                       f"new one: labloop resume {store} --max-experiments 4"), result.stderr
    with Journal.open(store, readonly=True) as journal:
        assert journal.campaign_info().seed == 11
        assert len(journal.experiments()) == 2
        # nothing more: the rig was not opened, no run journalled, no alert sent (an operator's trial got a
        # "finished" alert from each such command)
        assert [e.data["dry_run"] for e in journal.events() if e.kind == "run"] == [True]
        assert [e.kind for e in journal.events()].count("finished") == 1
        # each run records the code that ran it, not the journal's creation alone (a data trial)
        assert [e.data["versions"] for e in journal.events() if e.kind == "run"] == [runtime_versions()]
    # what the operator did by hand is journalled for the resume that gives more, still without a run (a hardware
    # trial's opened every port and journalled a run and a second "finished")
    told = labloop("resume", store, "--syringes-filled", "--cell-emptied")
    assert told.returncode == 0 and "already at its budget" in told.stderr, told.stderr
    assert "each counts as full again (journalled)" in told.stderr and "restarts at 0 (journalled)" in told.stderr
    with Journal.open(store, readonly=True) as journal:
        kinds = [e.kind for e in journal.events()]
    assert kinds.count("run") == 1 and kinds.count("finished") == 1
    assert kinds[-2:] == ["cell_emptied", "syringes_filled"]


def test_a_resume_says_when_the_campaign_file_changed_since(tmp_path, labloop, write_campaign):
    """resume runs the journal's campaign; a file edited since (a syringe's diameter, a batch size) was ignored in
    silence (an unattended-lab trial). What resume itself changed (--max-experiments) is no difference, nor is a copy
    of the whole folder, whose journal's runs name the original's file (a reviewer found a false "changed since" on
    every resume of a copy)."""
    shutil.copy(EXAMPLES / "library.csv", tmp_path / "library.csv")  # relative: a copy of the folder moves it
    library = {"file": "library.csv"}
    campaign_file = write_campaign(tmp_path, library=library, budget={"max_experiments": 2})
    assert labloop("run", campaign_file, "--dry-run").returncode == 0
    store = tmp_path / "tiny.db"
    unchanged = labloop("resume", store, "--max-experiments", 3)
    assert unchanged.returncode == 0 and "changed since" not in unchanged.stderr, unchanged.stderr
    copy = tmp_path.parent / f"{tmp_path.name}-copy"
    shutil.copytree(tmp_path, copy)
    for more in (4, 5):
        resumed = labloop("resume", copy / "tiny.db", "--max-experiments", more)
        assert resumed.returncode == 0 and "changed since" not in resumed.stderr, resumed.stderr
    write_campaign(tmp_path, library=library, budget={"max_experiments": 2}, planner={"kind": "random",
                                                                                      "batch_size": 1})
    edited = labloop("resume", store, "--max-experiments", 4)
    assert edited.returncode == 0, edited.stderr
    assert (f"warning: {campaign_file} changed since this campaign's journal began (planner.batch_size: 2 in "
            "the journal, 1 here): resume runs the journal's campaign; to run the file's, run it with a new store "
            "(`labloop run FILE --store NEW.db`)") in edited.stderr, edited.stderr
    # two edits: the first said, the other counted (a newcomer's second edit went unsaid)
    write_campaign(tmp_path, library=library, budget={"max_experiments": 2}, planner={"kind": "random",
                                                                                      "batch_size": 1},
                   objective={"quantity": "oxidation_potential", "goal": "window", "window_v": [4.3, 4.6]})
    twice = labloop("resume", store, "--max-experiments", 5)
    assert "changed since this campaign's journal began (objective.window_v[0]: 4.5 in the journal, 4.3 here; " \
           "1 more setting too)" in " ".join(twice.stderr.split()), twice.stderr


def test_a_resume_refuses_safety_limits_the_file_changed_and_warns_of_a_file_no_longer_valid(tmp_path, labloop,
                                                                                               write_campaign):
    """An operator lowered cell_volume_ml to 4 (the file no longer validated: the protocol pours 5 mL) and resumed:
    not a word, and the run went on pouring 5 mL by the journal's limits. A safety section that differs refuses the
    resume before anything is written; any other edit that leaves the file invalid is said with its first problem."""
    campaign_file = write_campaign(tmp_path, budget={"max_experiments": 2})
    assert labloop("run", campaign_file, "--dry-run").returncode == 0
    store = tmp_path / "tiny.db"
    with Journal.open(store, readonly=True) as journal:
        events = len(journal.events())
    write_campaign(tmp_path, budget={"max_experiments": 2}, safety={"cell_volume_ml": 4})
    refused = labloop("resume", store, "--max-experiments", 3)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert refused.stderr.startswith(f"error: {campaign_file}: safety changed since this campaign's journal began "
                                     "(safety.cell_volume_ml: 20.0 in the journal, 4.0 here): a resume runs the "
                                     "journal's campaign, and so its limits, not the file's;"), refused.stderr
    with Journal.open(store, readonly=True) as journal:
        assert len(journal.events()) == events  # nothing written
    # a section that no longer validates is said by its own first problem (compared raw, a field it did not name was)
    write_campaign(tmp_path, budget={"max_experiments": 2}, safety={"cell_volum_ml": 4})
    typo = labloop("resume", store, "--max-experiments", 3)
    assert typo.returncode == 2 and (f"{campaign_file}: safety changed since this campaign's journal began and no "
                                     "longer validates (safety.cell_volum_ml: Extra inputs are not permitted)"
                                     ) in typo.stderr, typo.stderr
    write_campaign(tmp_path, budget={"max_experiments": 2},
                   objective={"quantity": "oxidation_potential", "goal": "window", "window_v": [4.6, 4.3]})
    resumed = labloop("resume", store, "--max-experiments", 3)
    assert resumed.returncode == 0, resumed.stderr
    assert (f"warning: {campaign_file} changed since this campaign's journal began and is no longer a valid campaign "
            f"({campaign_file}:") in resumed.stderr, resumed.stderr


def test_a_finished_campaign_gets_more_experiments_by_resume(tmp_path, labloop, write_campaign):
    campaign_file = write_campaign(tmp_path, budget={"max_experiments": 2})
    assert labloop("run", campaign_file, "--dry-run").returncode == 0
    store = tmp_path / "tiny.db"
    # the same campaign with a bigger budget in its file: the one line says what differs and what to do
    bigger = write_campaign(tmp_path, budget={"max_experiments": 3})
    refused = labloop("run", bigger, "--dry-run")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "budget.max_experiments: 2 in the journal, 3 here" in refused.stderr
    assert f"labloop resume {store} --max-experiments N" in refused.stderr
    fewer = labloop("resume", store, "--max-experiments", 1)
    assert fewer.returncode == 2 and "fewer than the 2 experiments already done" in fewer.stderr
    assert labloop("resume", store, "--max-experiments", 4).returncode == 0
    at_budget = labloop("resume", store)  # the journal keeps the new budget: nothing more to do, and it says how
    assert at_budget.returncode == 0 and f"labloop resume {store} --max-experiments 8" in at_budget.stderr
    with Journal.open(store, readonly=True) as journal:
        assert len(journal.experiments(states=(State.DONE,))) == 4
        assert journal.campaign_info().config["budget"]["max_experiments"] == 4
        assert [e.data for e in journal.events() if e.kind == "budget"] == [{"before": 2, "after": 4}]
    # the unchanged file (budget 2) is still this campaign: it continues to the budget resume gave it
    original = write_campaign(tmp_path, budget={"max_experiments": 2})
    for command in ("validate", "run"):
        again = labloop(command, original, "--dry-run")
        assert again.returncode == 0, again.stderr
        assert "continuing to budget.max_experiments 4, set by labloop resume --max-experiments" in again.stderr
    with Journal.open(store, readonly=True) as journal:
        assert len(journal.experiments(states=(State.DONE,))) == 4


def test_a_resumed_fault_rehearsal_draws_its_faults_afresh(tmp_path, labloop, write_campaign):
    """A ``world.fault_rate`` rehearsal stopped by a fault (a pump that vanished mid-dispense, leaving the rig unsafe)
    met the very same fault at every resume: the emulators replayed the first run's faults from the campaign's
    seed, so the rehearsal could never get past it. A resume's rig draws them from the seed and the journal's run
    count: the first run's plan as before, each resume's its own, the same again for the same journal."""
    from labloop.orchestrator.cli.run import runs_of
    from labloop.orchestrator.compose import build_rig
    from labloop.orchestrator.config.campaign import load_campaign

    world = {"truth": {"from": "ie_ea", "solvent": "acn"}, "noise_v": 0.01, "fault_rate": 0.05}
    campaign_file = write_campaign(tmp_path, world=world, budget={"max_experiments": 4, "max_consecutive_faults": 2})
    assert labloop("run", campaign_file, "--dry-run").returncode == 1
    store = tmp_path / "tiny.db"
    assert runs_of(store) == 1
    labloop("resume", store, "--cell-emptied")
    assert runs_of(store) == 2
    campaign = load_campaign(campaign_file)

    def seed(session: int) -> int:
        with build_rig(campaign, dry_run=True, session=session) as rig:
            return rig.simulation.context.faults.seed

    assert seed(0) == campaign.seed
    assert len({seed(0), seed(1), seed(2)}) == 3 and seed(1) == seed(1)


def test_a_fault_rehearsal_never_refuses_its_start(tmp_path, labloop, write_campaign):
    """A rehearsal's fault at a port's opening or in the health check refused the run (exit 2), and every resume of it
    the same way, since a refused start journals nothing and the next drew the same fault (an operator's trial: 12
    of 12 resumes refused). Faults strike from the first experiment on (sim/lab.py arm_faults): at a rate that fails
    nearly every exchange, each start reaches its experiments, whose faults stop it (exit 1), run after run."""
    world = {"truth": {"from": "ie_ea", "solvent": "acn"}, "noise_v": 0.01, "fault_rate": 0.2}  # its maximum
    campaign_file = write_campaign(tmp_path, world=world, budget={"max_experiments": 4, "max_consecutive_faults": 1})
    store = tmp_path / "tiny.db"
    for attempt in range(3):
        result = (labloop("run", campaign_file, "--dry-run") if attempt == 0 else
                  labloop("resume", store, "--cell-emptied", "--syringes-filled"))
        assert result.returncode == 1, result.stderr  # stopped by a fault in an experiment, not refused (2)
        with Journal.open(store, readonly=True) as journal:
            assert len(journal.experiments(states=(State.FAILED,))) >= attempt + 1


def test_what_a_rehearsals_pumps_repeated_is_journalled_and_says_nothing_of_a_scan(tmp_path, labloop, write_campaign):
    """A pump's dispense repeated after a fault was warned of as if a scan might have run twice ("its peak currents may
    read low"), and both pumps of the rig drew the very same faults (a chemist's trial): each warning of a pump's
    repeats is journalled with its experiment, says no word of a scan, and the two pumps' repeats differ."""
    world = {"truth": {"from": "ie_ea", "solvent": "acn"}, "noise_v": 0.01, "fault_rate": 0.03}
    campaign_file = write_campaign(tmp_path, world=world, seed=2, budget={"max_experiments": 10,
                                                                          "max_consecutive_faults": 50})
    labloop("run", campaign_file, "--dry-run")  # a rehearsal's faults may stop it: what it warned of is the point
    with Journal.open(tmp_path / "tiny.db", readonly=True) as journal:
        warned = [e for e in journal.events(kinds=[WARNING]) if e.data["warning"] == "repeated_commands"]
    repeats = [e.message.split("after faults (")[1].split(")")[0] for e in warned]
    assert any(r.startswith("analyte_pump") for r in repeats) and any(r.startswith("electrolyte_pump") for r in repeats)
    assert all("scan" not in e.message and e.experiment_id is not None for e in warned), warned
    faults = {pump: [r.split(": ")[1] for r in repeats if r.startswith(pump)] for pump in ("analyte", "electrolyte")}
    assert faults["analyte"] != faults["electrolyte"], faults


def test_a_campaign_whose_stderr_reader_went_away_still_runs_and_exits_0(tmp_path, write_campaign):
    """`labloop run ... 2>&1 | head`: the first message into a pipe whose reader had gone raised BrokenPipeError and
    the run ended before its first experiment, exit 1 (an unattended-lab trial). A real process and a real pipe."""
    campaign_file = write_campaign(tmp_path, budget={"max_experiments": 2})
    reader, writer = os.pipe()
    os.close(reader)  # the reader is gone before the first byte
    try:
        finished = subprocess.run([sys.executable, "-m", "labloop.orchestrator.cli.main", "run", campaign_file,
                                   "--dry-run"], stdout=subprocess.DEVNULL, stderr=writer, timeout=600)
    finally:
        os.close(writer)
    assert finished.returncode == 0
    with Journal.open(tmp_path / "tiny.db", readonly=True) as journal:
        assert len(journal.experiments(states=(State.DONE,))) == 2
        assert journal.events()[-1].kind == "finished"


def test_ctrl_c_while_the_prior_trains_is_journalled(tmp_path, write_campaign):
    """A stop before the runner started left only 'run started' in the journal (a newcomer's trial)."""
    campaign_file = write_campaign(tmp_path, prior=True, budget={"max_experiments": 2},
                                   surrogate={"preset": "fast", "folds": 2, "epochs": 400, "retrain_every": 3})
    process = subprocess.Popen([sys.executable, "-m", "labloop.orchestrator.cli.main", "run", campaign_file,
                                "--dry-run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    store = tmp_path / "tiny.db"
    deadline = time.monotonic() + 120  # liveness only
    while not (store.exists() and _events(store, "run")):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.01)
    time.sleep(0.5)  # into the 400 epochs
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    (stopped,) = _events(store, "interrupted")
    assert stopped.message == "run stopped by SIGINT while the prior model loaded or trained"
    # what `labloop log` and the dashboard say of the run's end tells how to go on (it said only the cause)
    with Journal.open(store, readonly=True) as journal:
        ended = snapshot(journal)["progress"]["ended"]
    assert ended == ("stopped: run stopped by SIGINT while the prior model loaded or trained; `labloop resume` "
                     "continues it")


def test_a_second_ctrl_c_while_the_first_is_journalled_is_only_logged(tmp_path, labloop, write_campaign, monkeypatch):
    """A newcomer's double Ctrl-C while the prior trained: the second cut short the first's ``interrupted`` event
    and then whatever closed after it (the rig's safe state among them), without the runner's "already stopping". Both
    signals are real, sent by this process to itself at the two moments a person's cannot be timed to: while the
    prior model is made, and as the stop is journalled."""
    from labloop.orchestrator.cli import run

    campaign_file = write_campaign(tmp_path, budget={"max_experiments": 2})
    add_event, sent = Journal.add_event, []

    def prior(campaign, journal):
        sent.append("first")
        os.kill(os.getpid(), signal.SIGINT)  # its handler raises here
        time.sleep(5)
        raise AssertionError("the first SIGINT did not stop the run")

    def journalled(self, kind, message, *args, **kwargs):
        if kind == "interrupted" and len(sent) == 1:
            sent.append("second")
            os.kill(os.getpid(), signal.SIGINT)
        return add_event(self, kind, message, *args, **kwargs)

    monkeypatch.setattr(run, "_model", prior)
    monkeypatch.setattr(Journal, "add_event", journalled)
    result = labloop("run", campaign_file, "--dry-run")
    assert sent == ["first", "second"] and result.returncode == 130, result.stderr
    assert "already stopping" in result.stderr, result.stderr
    (stopped,) = _events(tmp_path / "tiny.db", "interrupted")
    assert stopped.message == "run stopped by SIGINT while the prior model loaded or trained"
    assert "interrupted: the journal is consistent." in result.stderr


def test_ctrl_c_while_the_library_is_predicted_is_journalled(tmp_path, labloop, write_campaign, monkeypatch):
    """Between the prior model and the runner the library is predicted (seconds for a big one): a Ctrl-C there left
    the journal's run without an end, which `log` and the dashboard call killed. The SIGINT is real, sent by this
    process to itself at the one moment a person's Ctrl-C cannot be timed to (the library's prediction)."""
    from labloop.orchestrator.learning import models

    campaign_file = write_campaign(tmp_path, prior=True, shared_prior=True, budget={"max_experiments": 2})
    library = Path(load_campaign(campaign_file).library.file).read_text().splitlines()[1].split(",")[0]
    predict, sent = models.ObjectiveModel.predict, []

    def interrupted(self, smiles):
        if not sent and len(smiles) > 1 and smiles[0] == library:  # the library, not a proposal's molecules
            sent.append(signal.SIGINT)  # before the signal, whose handler raises at once
            os.kill(os.getpid(), signal.SIGINT)
        return predict(self, smiles)

    monkeypatch.setattr(models.ObjectiveModel, "predict", interrupted)
    result = labloop("run", campaign_file, "--dry-run")
    assert sent and result.returncode == 130, result.stderr
    (stopped,) = _events(tmp_path / "tiny.db", "interrupted")
    assert stopped.message == "run stopped by SIGINT while the library's predictions were made"
    with Journal.open(tmp_path / "tiny.db", readonly=True) as journal:
        assert snapshot(journal)["progress"]["ended_as"] == "interrupted"


def _events(store, kind: str) -> list:
    with Journal.open(store, readonly=True) as journal:
        return [e for e in journal.events() if e.kind == kind]


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "times"), [(signal.SIGINT, 1), (signal.SIGTERM, 1), (signal.SIGINT, 2),
                                               (signal.SIGHUP, 1)],
                         ids=["SIGINT", "SIGTERM", "two quick SIGINTs", "SIGHUP (a closed terminal)"])
def test_ctrl_c_or_kill_exits_130_and_resume_finishes(tmp_path, write_campaign, signum, times):
    """Each stops the run with the rig made safe; SIGHUP ended it as kill -9 does, the rig left as it was (an
    operator's trial: a closed terminal, a dropped SSH session)."""
    campaign_file = write_campaign(tmp_path, budget={"max_experiments": 6})
    cli = [sys.executable, "-m", "labloop.orchestrator.cli.main"]
    process = subprocess.Popen([*cli, "run", campaign_file, "--dry-run", "--scheduler", "none"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    store = tmp_path / "tiny.db"
    deadline = time.monotonic() + 60
    while not (store.exists() and _done(store) >= 1):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.005)
    for _ in range(times):  # a second Ctrl-C while the first is handled must not cut the handling short
        process.send_signal(signum)
        time.sleep(0.01)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert f"labloop resume {store}" in err and "instruments in a safe state" in err
    # where the run ran: a resume takes no --scheduler from the journal (a scale-out trial's went to a LocalCluster)
    assert err.rstrip().splitlines()[-1].endswith("--scheduler none"), err
    done = _done(store)
    assert done < 6
    with Journal.open(store, readonly=True) as journal:
        assert not journal.experiments(states=(State.RUNNING,))
        assert [e.kind for e in journal.events()][-1] == "interrupted"
        stopped_in = [e.id for e in journal.experiments(states=(State.INTERRUPTED,))]
    resumed = subprocess.run([*cli, "resume", store, "--cell-emptied"], capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert _done(store) == 6
    # its first line says what it picked up, and what it does again, before the bar
    (opening,) = [line for line in resumed.stderr.splitlines() if line.startswith("resuming ")]
    assert opening.startswith(f"resuming tiny: {done}/6 experiments done"), opening
    assert {int(n) for n in re.findall(r"\d+", opening.partition(";")[2])} == set(stopped_in), opening


@pytest.mark.slow
def test_a_run_under_nohup_outlives_a_hangup(tmp_path, write_campaign):
    """nohup ignores SIGHUP so that a run outlives its terminal: labloop leaves it ignored (orchestrator/loop/
    interrupts.py stop_signals), and the run finishes."""
    campaign_file = write_campaign(tmp_path, budget={"max_experiments": 4})
    process = subprocess.Popen([sys.executable, "-m", "labloop.orchestrator.cli.main", "run", campaign_file,
                                "--dry-run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))  # as nohup does
    store = tmp_path / "tiny.db"
    deadline = time.monotonic() + 60
    while not (store.exists() and _done(store) >= 1):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.005)
    process.send_signal(signal.SIGHUP)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert _done(store) == 4


def _done(store) -> int:
    with Journal.open(store, readonly=True) as journal:
        return len(journal.experiments(states=(State.DONE,)))


def test_a_campaign_being_run_is_not_run_twice(tmp_path, labloop, write_campaign):
    campaign_file = write_campaign(tmp_path, budget={"max_experiments": 1})
    assert labloop("run", campaign_file, "--dry-run").returncode == 0
    fd = os.open(tmp_path / "tiny.db.lock", os.O_RDONLY)  # as a live run holds it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        results = [labloop("-v", "resume", tmp_path / "tiny.db"), labloop("-v", "run", campaign_file, "--dry-run")]
    finally:
        os.close(fd)
    for result in results:  # the process that holds it named, to find on a shared PC (a lab manager's trial)
        assert result.returncode == 2 and f"another labloop process (pid {os.getpid()})" in result.stderr
        # refused before the rig: no instrument was opened (the rig logs each one it opens at -v)
        assert "rig: " not in result.stderr, result.stderr
    assert labloop("resume", tmp_path / "tiny.db").returncode == 0


def test_validate_says_a_store_a_run_holds_and_one_at_its_budget(tmp_path, labloop, write_campaign):
    """validate showed a store a live run held, or one at its budget, by its name alone, where run refuses the first
    and adds nothing to the second (a lab manager's trial): the first is refused as run refuses it, the second's
    summary says what run does with it."""
    campaign_file = write_campaign(tmp_path, budget={"max_experiments": 1})
    def summary() -> str:
        return " ".join(labloop("validate", campaign_file, "--dry-run").stdout.split())

    assert "tiny.db (not created yet)" in summary()
    assert labloop("run", campaign_file, "--dry-run").returncode == 0
    said = summary()
    assert (f"tiny.db (1 experiments done, its budget: run adds none; `labloop resume {tmp_path / 'tiny.db'} "
            "--max-experiments N` gives it more)") in said, said
    with sole_runner(tmp_path / "tiny.db"):  # as a live resume holds it
        result = labloop("validate", campaign_file, "--dry-run")
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].endswith(
        f"store: {tmp_path / 'tiny.db'}: another labloop process (pid {os.getpid()}) is running this campaign now; "
        "run and resume are refused until it ends"), result.stderr
    (tmp_path / "tiny.db").unlink()  # a journal whose run stopped before its budget
    Journal.create(tmp_path / "tiny.db", load_campaign(campaign_file)).close()
    said = summary()
    assert "tiny.db (0 of 1 experiments done: run goes on from there)" in said, said


def test_a_deleted_lock_file_does_not_let_a_second_runner_in(tmp_path, labloop, write_campaign):
    """The lock file stays beside the store and may be deleted while a run holds it; the runner holds the
    journal file too (an adversarial trial had two resumes writing one journal: duplicated proposals, one
    model folder for two versions). Readers still see the run live: log and the dashboard called it killed, its
    rig perhaps unsafe, and log --follow stopped (a lab manager's trial on a shared PC)."""
    campaign_file = write_campaign(tmp_path, budget={"max_experiments": 1})
    assert labloop("run", campaign_file, "--dry-run").returncode == 0
    assert not being_run(tmp_path / "tiny.db")
    with sole_runner(tmp_path / "tiny.db"):  # as a live resume holds it
        (tmp_path / "tiny.db.lock").unlink()
        assert being_run(tmp_path / "tiny.db")
        before = (tmp_path / "tiny.db").read_bytes()
        for result in (labloop("resume", tmp_path / "tiny.db", "--max-experiments", 2),
                       labloop("run", campaign_file, "--dry-run")):
            assert result.returncode == 2 and "another labloop process" in result.stderr, result.stderr
        assert (tmp_path / "tiny.db").read_bytes() == before
    assert labloop("resume", tmp_path / "tiny.db", "--max-experiments", 2).returncode == 0
    assert _done(tmp_path / "tiny.db") == 2


def test_resume_refuses_a_library_changed_since_the_first_run(tmp_path, labloop, write_campaign):
    # the journal's experiments and planner state speak of the library as it was (a hostile-input trial
    # replaced it, and resume crashed in the planner after changing the journal); validate says what run would
    library = tmp_path / "library.csv"
    shutil.copy(EXAMPLES / "library.csv", library)
    campaign_file = write_campaign(tmp_path, library={"file": str(library)}, budget={"max_experiments": 2})
    assert labloop("run", campaign_file, "--dry-run").returncode == 0
    store = tmp_path / "tiny.db"
    library.write_text("\n".join(library.read_text().splitlines()[:-1]) + "\n")  # one molecule fewer
    before = store.read_bytes()
    said = set()
    for command in (("resume", store, "--max-experiments", 3), ("run", campaign_file, "--dry-run"),
                    ("validate", campaign_file, "--dry-run")):
        result = labloop(*command)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "library.csv changed since this campaign's first run" in result.stderr
        said.add(result.stderr)
    assert len(said) == 1 and said.pop().startswith("error: library.file: ")
    assert store.read_bytes() == before


def test_a_prior_changed_since_the_first_run_is_refused_before_a_retrain_trains_on_it(tmp_path, labloop,
                                                                                     write_campaign):
    """A prior table edited between runs (every ie_ev 0.5 eV higher) was trained on by the resumed run's next retrain,
    its model beside the models of the file as it was, and nothing recorded it (a PI's trial). Each run journals the
    prior's SHA-256 as it does the library's; run, resume, validate and candidates refuse the changed file in one
    line, the journal untouched, and the file put back, the resume goes on."""
    import hashlib

    import pandas as pd

    prior = tmp_path / "prior.csv"
    pd.read_csv(DATA, nrows=300)[["smiles", "ie_ev", "ea_ev"]].to_csv(prior, index=False)
    campaign_file = write_campaign(tmp_path, prior=True, budget={"max_experiments": 2})
    settings = yaml.safe_load(campaign_file.read_text())
    settings["prior"] = {"file": str(prior), "targets": ["ie_ev", "ea_ev"]}
    campaign_file.write_text(yaml.safe_dump(settings, sort_keys=False))
    assert labloop("run", campaign_file, "--dry-run").returncode == 0
    store = tmp_path / "tiny.db"
    with Journal.open(store, readonly=True) as journal:
        [run] = journal.events(kinds=("run",))
    assert run.data["prior_sha256"] == hashlib.sha256(prior.read_bytes()).hexdigest()
    original = prior.read_bytes()
    edited = pd.read_csv(prior)
    edited["ie_ev"] += 0.5
    edited.to_csv(prior, index=False)
    before = store.read_bytes()
    for command in (("resume", store, "--max-experiments", 3), ("run", campaign_file, "--dry-run"),
                    ("validate", campaign_file, "--dry-run"), ("candidates", store)):
        result = labloop(*command)
        assert result.returncode == 2 and result.stderr.strip().splitlines() == [
            f"error: prior.file: {prior} changed since this campaign's first run ({run.time}), and its models were "
            "trained on the prior as it was: put the file back, or run the new prior with another store"], \
            (command, result.stderr)
    assert store.read_bytes() == before
    prior.write_bytes(original)
    assert labloop("resume", store, "--max-experiments", 3).returncode == 0
    # a journal of a labloop that kept no digest (its first run's taken out here): judged from the first run that
    # kept one, and said so; it had said "first run" and named the wrong one (a review)
    with sqlite3.connect(store) as db:
        [trigger] = db.execute("SELECT sql FROM sqlite_master WHERE name = 'events_no_update'").fetchone()
        db.execute("DROP TRIGGER events_no_update")
        first = db.execute("SELECT id, data_json FROM events WHERE kind = 'run' ORDER BY id").fetchone()
        data = json.loads(first[1])
        del data["prior_sha256"]
        db.execute("UPDATE events SET data_json = ? WHERE id = ?", (json.dumps(data), first[0]))
        db.execute(trigger)
    with Journal.open(store, readonly=True) as journal:
        second = journal.events(kinds=("run",))[1].time
    edited.to_csv(prior, index=False)
    result = labloop("resume", store, "--max-experiments", 4)
    assert result.returncode == 2 and (
        f"error: prior.file: {prior} changed since its first run that recorded the file's SHA-256 ({second}; the 1 run "
        "before it recorded none), and its models were trained on the prior as it was") in result.stderr, result.stderr


def _campaign_folder(folder: Path, write_campaign) -> Path:
    """A campaign's own folder as a lab keeps it: the file, its library and protocol beside it (relative paths),
    its store and prior models written there by the run."""
    folder.mkdir()
    shutil.copy(EXAMPLES / "library.csv", folder / "library.csv")
    shutil.copytree(EXAMPLES / "protocols", folder / "protocols")
    return write_campaign(folder, prior=True, shared_prior=True, library={"file": "library.csv"},
                          protocol="protocols/cv_screen.yaml", budget={"max_experiments": 4})


def test_a_moved_or_copied_campaign_folder_goes_on_with_the_files_beside_it(tmp_path, labloop, write_campaign):
    # the journal keeps absolute paths: a folder moved to another disk was refused ("library.csv: no such file"),
    # and its models, not found, were trained again (an operator's trial)
    assert labloop("run", _campaign_folder(tmp_path / "a", write_campaign), "--dry-run").returncode == 0
    with Journal.open(tmp_path / "a" / "tiny.db", readonly=True) as journal:
        versions = len(journal.model_versions())
    assert versions == 2  # the prior and a retrained model, both in the folder
    shutil.move(tmp_path / "a", tmp_path / "b")
    store = tmp_path / "b" / "tiny.db"
    moved = labloop("resume", store, "--max-experiments", 5)
    assert moved.returncode == 0, moved.stderr
    assert (f"the store moved: {tmp_path / 'a' / 'tiny.db'} -> {store}; found beside it: "
            f"{tmp_path / 'b' / 'library.csv'}, {tmp_path / 'b' / 'protocols' / 'cv_screen.yaml'}, 2 model folders "
            "(journalled)") in moved.stderr
    with Journal.open(store, readonly=True) as journal:
        assert len(journal.experiments(states=(State.DONE,))) == 5
        rows = journal.model_versions()
        assert len(rows) == versions  # the models were read where they are now, not trained again
        assert all(Path(row.weights_path).is_relative_to(tmp_path / "b") for row in rows)
        config = journal.campaign_info().config
        assert (config["store"], config["library"]["file"]) == (str(store), str(tmp_path / "b" / "library.csv"))
        assert [e.data["before"] for e in journal.events() if e.kind == "moved"] == [str(tmp_path / "a" / "tiny.db")]
    # the same store spelt another way (a link to its folder) has not moved
    (tmp_path / "link").symlink_to(tmp_path / "b", target_is_directory=True)
    linked = labloop("resume", tmp_path / "link" / "tiny.db")
    assert linked.returncode == 0 and "the store moved" not in linked.stderr, linked.stderr
    # the campaign file there is that campaign again, and a copy of the folder goes on with its own files
    assert labloop("validate", tmp_path / "b" / "tiny.yaml", "--dry-run").returncode == 0
    shutil.copytree(tmp_path / "b", tmp_path / "c", symlinks=True)
    original = store.read_bytes()
    copied = labloop("resume", tmp_path / "c" / "tiny.db", "--max-experiments", 6)
    assert copied.returncode == 0 and f"found beside it: {tmp_path / 'c' / 'library.csv'}" in copied.stderr
    assert store.read_bytes() == original
    # a store copied where another library.csv sits beside it, the journal's still where it was: that is no copy of
    # it, and the journal's is kept (it took the other, then refused it as "changed since its first run": a trial)
    (tmp_path / "e").mkdir()
    shutil.copy(store, tmp_path / "e" / "tiny.db")
    (tmp_path / "e" / "library.csv").write_text("smiles\nCCO\nCCN\n")
    beside = labloop("resume", tmp_path / "e" / "tiny.db", "--max-experiments", 6)
    assert beside.returncode == 0, beside.stderr
    assert f"the store moved: {store} -> {tmp_path / 'e' / 'tiny.db'} (journalled)" in beside.stderr
    with Journal.open(tmp_path / "e" / "tiny.db", readonly=True) as journal:
        assert journal.campaign_info().config["library"]["file"] == str(tmp_path / "b" / "library.csv")
    # a store moved without its library, which is gone: one line saying where it was looked for, nothing written
    (tmp_path / "d").mkdir()
    shutil.move(tmp_path / "c" / "tiny.db", tmp_path / "d" / "tiny.db")
    (tmp_path / "c" / "library.csv").unlink()
    before = (tmp_path / "d" / "tiny.db").read_bytes()
    refused = labloop("resume", tmp_path / "d" / "tiny.db")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "neither where it was nor beside the store as it was" in refused.stderr
    assert (tmp_path / "d" / "tiny.db").read_bytes() == before


def test_validate_says_what_run_would_find_at_the_store(tmp_path, labloop, write_campaign):
    campaign_file = write_campaign(tmp_path, budget={"max_experiments": 1})
    assert labloop("run", campaign_file, "--dry-run").returncode == 0
    cases = {
        "a journal of other settings": ({"objective": {"quantity": "oxidation_potential", "goal": "window",
                                                      "window_v": [4.4, 4.6]}, "store": str(tmp_path / "tiny.db")},
                                        "with other settings, objective.window_v[0]: 4.5 in the journal, 4.4 here; "
                                        "choose another store, or continue that campaign as it was with `labloop "
                                        "resume` (a new store can learn from what this one measured: its report's "
                                        "measurements.csv as past_measurements"),
        "a file that is not a journal": ({"store": str(campaign_file)}, "not a labloop journal"),
        "a folder that is a file": ({"store": str(campaign_file / "x.db")}, "tiny.yaml is a file, so"),
        # write permission, even for root, and yet no file is made there (validate passed, run refused)
        "a folder nothing is created in": ({"store": "/proc/x.db"},
                                           "store: /proc: cannot create the store there (No such file or directory)"),
    }
    for why, (sections, needle) in cases.items():
        folder = tmp_path / why.replace(" ", "_")
        folder.mkdir()
        for command in ("validate", "run"):
            result = labloop(command, write_campaign(folder, budget={"max_experiments": 1}, **sections), "--dry-run")
            assert result.returncode == 2 and needle in result.stderr, (why, command, result.stderr)
            assert len(result.stderr.strip().splitlines()) == 1
    given = labloop("run", campaign_file, "--dry-run", "--store", campaign_file / "x.db")  # blamed on the flag
    assert given.returncode == 2 and given.stderr.startswith("error: --store: ") and "is a file, so" in given.stderr
    # validate checks the store and seed run is given: a stop's advice, `labloop run FILE --store NEW.db`, had no
    # validate to match, which refused the campaign against the old journal (a plug-in engineer's trial)
    changed = write_campaign(tmp_path / "a_journal_of_other_settings", budget={"max_experiments": 1},
                             store=str(tmp_path / "tiny.db"), seed=99)
    assert labloop("validate", changed, "--dry-run").returncode == 2
    for flags in (("--store", tmp_path / "new.db"), ("--seed", 5, "--store", tmp_path / "new.db")):
        assert labloop("validate", changed, "--dry-run", *flags).returncode == 0
    assert not (tmp_path / "new.db").exists()
    given = labloop("validate", campaign_file, "--dry-run", "--store", campaign_file / "x.db")
    assert given.returncode == 2 and given.stderr.startswith("error: --store: ") and "is a file, so" in given.stderr
    assert labloop("validate", campaign_file, "--dry-run", "--seed", 99).returncode == 2  # the journal's seed is 5


def test_a_dry_run_with_faulty_devices_stops_and_says_how_to_resume(tmp_path, labloop, write_campaign):
    """``world.fault_rate`` makes the emulators misbehave, so a lab can rehearse what the runner does then: it
    journals each fault as the failure of its experiment, typed and named, and stops, saying why and how to resume:
    after ``budget.max_consecutive_faults`` instrument faults, or at the first fault after which an instrument could
    not be made safe (a pump that vanished from its port may still be pumping)."""
    world = {"truth": {"from": "ie_ea", "solvent": "acn"}, "noise_v": 0.01, "fault_rate": 0.05}
    campaign_file = write_campaign(tmp_path, world=world, budget={"max_experiments": 4, "max_consecutive_faults": 2})
    result = labloop("run", campaign_file, "--dry-run")
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("stopped: ") and "labloop resume" in last, last
    in_a_row = "2 instrument faults in a row" in last and "the rig needs a person" in last
    unsafe = "NOT made safe after experiment" in last and "check " in last and "at the instrument" in last
    assert in_a_row or unsafe, last
    with Journal.open(tmp_path / "tiny.db", readonly=True) as journal:
        failed = journal.experiments(states=(State.FAILED,))
        assert len(failed) >= (1 if unsafe else 2) and len(journal.experiments(states=(State.DONE,))) < 4
    # typed faults, each with the campaign's instrument and step in front when the driver's message lacks it
    kinds = ("Disconnected", "PumpDisconnected", "InstrumentTimeout", "ProtocolError", "DeviceError", "PumpStalled",
             "Overload")
    assert all(re.match(rf"(\w+ \(\w+\): )?({'|'.join(kinds)}):", e.cause) for e in failed[-2:]), \
        [e.cause for e in failed]
    # each said on the console as it happened, not only in the journal (an operator's trial: two pump stalls went
    # unsaid before a stop that blamed the syringe count)
    for e in failed:
        if not e.cause.startswith("analysis:"):
            assert f"warning: experiment {e.id} failed: {e.cause}" in result.stderr, result.stderr


def test_a_campaign_that_runs_out_of_molecules_says_so(tmp_path, labloop, write_campaign):
    rows = (EXAMPLES / "library.csv").read_text().splitlines()[:4]  # the header and 3 molecules
    (tmp_path / "three.csv").write_text("\n".join(rows) + "\n")
    result = labloop("run", write_campaign(tmp_path, library={"file": str(tmp_path / "three.csv")}), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "every library molecule was tried" in result.stderr and "/6 experiments done" in result.stderr


def test_a_run_logged_to_a_file_says_how_many_experiments_are_done(tmp_path, labloop, write_campaign, monkeypatch):
    """With stderr in a file, the run's plain progress line read ``25 done: 25 of 30 after 62 s`` (a trial,
    ``labloop run examples/lab-grade.yaml --dry-run 2> f``): it says what it counts."""
    from labloop.orchestrator import console

    monkeypatch.setattr(console, "PLAIN_PROGRESS_S", 0.0)  # every update says it (60 s in use)
    monkeypatch.setattr(console, "FIRST_PLAIN_S", 0.0)
    result = labloop("run", write_campaign(tmp_path, budget={"max_experiments": 3}), "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if " after " in line and line.endswith(" s")]
    counted = [line for line in lines if line.startswith("experiments: ")]
    assert counted and all(re.fullmatch(r"experiments: \d of 3 done after \d+ s", line) for line in counted), lines
    assert not [line for line in lines if re.match(r"(\d+ done|experiment \d+|proposing): ", line)], lines


def test_without_conditions_the_protocols_own_scan_rate_is_run_and_recorded(tmp_path, labloop, write_campaign):
    """A campaign without a conditions section planned 0.1 V/s for every proposal, which replaced the cv step's
    own scan_rate_v_s (an operator's trial: the protocol said 0.05, the instrument ran and the CSV said 0.1)."""
    protocol = yaml.safe_load((EXAMPLES / "protocols" / "cv_screen.yaml").read_text())
    cv = next(step for step in protocol if isinstance(step, dict) and "cv" in step)
    cv["cv"]["scan_rate_v_s"] = 0.05
    campaign_file = write_campaign(tmp_path, conditions={}, protocol=protocol, budget={"max_experiments": 2})
    result = labloop("run", campaign_file, "--dry-run")
    assert result.returncode == 0, result.stderr
    with Journal.open(tmp_path / "tiny.db", readonly=True) as journal:
        experiments = journal.experiments(states=(State.DONE,))
        assert len(experiments) == 2 and all(e.conditions == {} for e in experiments)
        rates = {v.params.scan_rate_v_s for e in experiments for v in journal.voltammograms(e.id)}
    assert rates == {0.05}


def test_resume_takes_the_port_an_instrument_came_back_on(tmp_path, labloop, write_campaign):
    """A USB adapter plugged in again came back under another name: `resume` refused the journal's port as missing,
    and `run` with the port edited refused the file as another campaign, so the only way on was a new store (a
    plug-in engineer's trial). `resume --port NAME=PORT` takes it, checked as `run` checks ports (a dry run's, here;
    a real run's also that the port exists, compose.check_instruments), journalled with the old and the new, and
    kept for the next resume."""
    campaign_file = write_campaign(tmp_path, budget={"max_experiments": 1})
    assert labloop("run", campaign_file, "--dry-run").returncode == 0
    store = tmp_path / "tiny.db"
    before = store.read_bytes()
    for bad, says in ((("--port", "electrolyte_pump"), "Invalid value for --port: 'electrolyte_pump': write "
                                                        "INSTRUMENT=PORT"),
                      (("--port", "electrolyte_pmp=/dev/ttyUSB7"), "'electrolyte_pmp' is not one of analyte_pump, "),
                      (("--port", "sampler=/dev/ttyUSB7"), "'sampler' has no port in the campaign to move"),
                      (("--port", "electrolyte_pump=/dev/ttyUSB7", "--port", "electrolyte_pump=/dev/ttyUSB8"),
                       "'electrolyte_pump' is given two ports, /dev/ttyUSB7 and /dev/ttyUSB8"),
                      # checked as run checks ports: the potentiostat on the pumps' line
                      (("--port", "potentiostat=/dev/ttyUSB0"), "shares port /dev/ttyUSB0 with 'analyte_pump'")):
        refused = labloop("resume", store, "--max-experiments", 2, *bad)
        assert refused.returncode == 2 and says in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1 and store.read_bytes() == before  # nothing written
    moved = labloop("resume", store, "--max-experiments", 2, "--port", "electrolyte_pump=/dev/ttyUSB7")
    assert moved.returncode == 0, moved.stderr
    # journalled, and said to change nothing of a dry run (a trial gave a port nothing has, taken in silence)
    assert ("instruments.electrolyte_pump.port /dev/ttyUSB0 -> /dev/ttyUSB7 (journalled; this journal's runs are dry "
            "runs, whose emulators open no port)") in moved.stderr
    with Journal.open(store, readonly=True) as journal:
        config = journal.campaign_info().config
        [event] = [e for e in journal.events() if e.kind == "port"]
    assert config["instruments"]["electrolyte_pump"]["port"] == "/dev/ttyUSB7"
    assert event.message == "instruments.electrolyte_pump.port /dev/ttyUSB0 -> /dev/ttyUSB7 (labloop resume --port)"
    again = labloop("resume", store, "--max-experiments", 3)  # the next resume keeps it
    assert again.returncode == 0, again.stderr
    with Journal.open(store, readonly=True) as journal:
        assert journal.campaign_info().config["instruments"]["electrolyte_pump"]["port"] == "/dev/ttyUSB7"
    # the campaign file still runs with its store (it was refused as a campaign of other settings), as after a
    # resume --max-experiments, saying what the journal holds now
    for command in ("validate", "run"):
        result = labloop(command, campaign_file, "--dry-run")
        assert result.returncode == 0, result.stderr
        assert ("continuing with instruments.electrolyte_pump.port /dev/ttyUSB7, set by labloop resume --port (the "
                "file says /dev/ttyUSB0)") in " ".join(result.stderr.split()), result.stderr


def test_a_file_whose_budget_was_lowered_continues_to_the_journals_without_blaming_resume(tmp_path, labloop,
                                                                                          write_campaign):
    """A store made from a file of 2 experiments, validated with the file now saying 1: the note said "set by
    labloop resume --max-experiments", which nobody had run (a trial). It says the budget is the journal's."""
    campaign_file = write_campaign(tmp_path, budget={"max_experiments": 2})
    assert labloop("run", campaign_file, "--dry-run").returncode == 0
    campaign_file.write_text(campaign_file.read_text().replace("max_experiments: 2", "max_experiments: 1"))
    result = labloop("validate", campaign_file, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "continuing to budget.max_experiments 2, the journal's (the file says 1)" in result.stderr, result.stderr
    assert "labloop resume --max-experiments" not in result.stderr


def test_a_hint_names_a_store_with_a_space_as_one_shell_word(tmp_path, labloop, write_campaign):
    """An operator pasted `labloop resume /tmp/ström läb.db --cell-emptied` from a hint and got "unexpected extra
    arguments": a store's path in a command a hint gives is quoted for the shell (core/text.py shell_word), and the
    pasted command runs."""
    import shlex

    store = tmp_path / "lab runs" / "ström läb.db"
    campaign_file = write_campaign(tmp_path, budget={"max_experiments": 1})
    assert labloop("run", campaign_file, "--dry-run", "--store", store).returncode == 0
    again = labloop("resume", store)  # at its budget: says how to give it more
    hint = again.stderr.split("labloop resume ", 1)[1].split("\n", 1)[0]
    assert hint == f"{shlex.quote(str(store))} --max-experiments 2", again.stderr
    resumed = labloop("resume", *shlex.split(hint))
    assert resumed.returncode == 0, resumed.stderr
    assert "2/2 experiments done" in resumed.stderr


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads the resume's children in /proc (Linux)")
def test_a_run_holds_its_store_from_its_start_for_log_follow(tmp_path, labloop, write_campaign):
    """A `labloop log --follow` started as a resume began said 'no run is writing this journal' and quit (an
    operator's trial): the run took the store's lock only after its checks (seconds for a library of thousands of
    rows) and its cluster's start. It takes the lock first now, so the follow, begun at once, follows the resume to
    its end."""
    library = tmp_path / "library.csv"
    library.write_text("".join((EXAMPLES.parent / "data" / "ocelot_chromophore_v1_ie_ea.csv").read_text().splitlines(
        keepends=True)[:6001]))  # checked row by row over a pool: seconds
    campaign_file = write_campaign(tmp_path, library={"file": str(library)}, budget={"max_experiments": 1})
    assert labloop("run", campaign_file, "--dry-run", "--scheduler", "none").returncode == 0
    store = tmp_path / "tiny.db"
    cli = [sys.executable, "-m", "labloop.orchestrator.cli.main"]
    resume = subprocess.Popen([*cli, "resume", str(store), "--max-experiments", "2", "--scheduler", "none"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    def forked() -> bool:  # a child of any of the resume's threads (one may end while it is read)
        for task in Path(f"/proc/{resume.pid}/task").iterdir():
            with contextlib.suppress(OSError):
                if (task / "children").read_text().split():
                    return True
        return False

    try:  # the row checks' pool workers are the resume's first children: by then it must hold the store
        while not forked():
            assert resume.poll() is None, resume.stderr.read()
            time.sleep(0.002)
        assert being_run(store), "the row checks ran before the run held its store"
        follow = subprocess.run([*cli, "log", str(store), "--follow"], capture_output=True, text=True, timeout=300)
    finally:
        resume.wait(timeout=300)
    assert resume.returncode == 0, resume.stderr.read()
    assert follow.returncode == 0 and "finished: budget reached (2/2)" in follow.stderr, follow.stderr


def test_a_stop_that_says_how_to_resume_gets_no_second_command(tmp_path):
    """A stop for a question nobody could answer (the rinse after a vial, input at its end) left liquid in the
    cell: its message says to empty it and resume with ``--cell-emptied``, and the line then gave a second resume
    without the flag, the one a newcomer copied (refused). Other stops still end with the resume, and its
    ``--scheduler``."""
    from labloop.orchestrator.cli.run import _stopped

    store = tmp_path / "lab runs" / "a.db"
    left = ("cell: no operator to rinse the cell: the console's input is closed: campaign stopped (experiment 3 "
            f"will run again on resume, where a person can answer; the cell still holds 5 mL by labloop's count: "
            f"empty it, then `labloop resume '{store}' --cell-emptied`)")
    said = _stopped(left, {"experiments": [3], "cell_ml": 5.0}, store, None)
    assert said.count("labloop resume") == 1 and said.endswith(f"; see `labloop log '{store}'`")
    said = _stopped("3 failed analyses in a row", {"experiments": [3], "cell_ml": 0.0}, store, "tcp://h:8786")
    assert said.endswith(f"see `labloop log '{store}'`, then `labloop resume '{store}' --scheduler tcp://h:8786`")


def test_a_resume_without_an_alert_urls_variable_says_to_set_it(tmp_path, labloop, write_campaign, monkeypatch):
    """An alert URL's ${VARIABLE} unset in the resuming shell read "the campaign this journal ran no longer
    validates: alerts.0: Value error, environment variable ... is not set (moved or changed since the run
    started? put it back, then resume)" (an operator's trial): pydantic's words and a file's advice. It names the
    variable and says to set it, exit 2, nothing journalled; a moved library still gets a file's advice, in plain
    words."""
    monkeypatch.setenv("LABLOOP_TEST_ALERT", "secret-topic")
    library = tmp_path / "library.csv"
    library.write_text((EXAMPLES / "library.csv").read_text())
    campaign = load_campaign(write_campaign(tmp_path, library={"file": str(library)},
                                            alerts=["ntfys://ntfy.invalid/${LABLOOP_TEST_ALERT}"]))
    with Journal.create(campaign.store, campaign):
        pass
    monkeypatch.delenv("LABLOOP_TEST_ALERT")
    result = labloop("resume", campaign.store)
    assert result.returncode == 2
    assert result.stderr == (f"error: {campaign.store}: alerts[0]: environment variable LABLOOP_TEST_ALERT is not "
                             "set: set it in this shell as it was when the run started, then resume\n")
    monkeypatch.setenv("LABLOOP_TEST_ALERT", "secret-topic")
    library.rename(tmp_path / "elsewhere.csv")
    result = labloop("resume", campaign.store)
    assert result.returncode == 2 and "Value error" not in result.stderr, result.stderr
    assert f": library.file: {library}: no such file (moved" in result.stderr, result.stderr
    assert result.stderr.rstrip().endswith("(moved or changed since the run started? put it back, then resume)")
    with Journal.open(campaign.store, readonly=True) as journal:
        assert journal.events() == [] or all(e.kind != "run" for e in journal.events())


def test_a_run_that_fails_before_its_first_experiment_is_journalled_as_stopped(tmp_path, labloop, write_campaign):
    """A data trial's run that failed while its prior model trained (a full disk) left a journal that log called
    killed ("ended without a word ... nothing made the rig safe"), and resume said so too: the failure is journalled
    as the run's stop, with where it happened and why."""
    campaign_file = write_campaign(tmp_path, prior=True)
    (tmp_path / "prior-models").write_text("a file where the prior's cache folder goes\n")
    result = labloop("run", campaign_file, "--dry-run")
    assert result.returncode != 0 and result.stderr.strip().splitlines()[-1].startswith("error: "), result.stderr
    logged = json.loads(labloop("log", tmp_path / "tiny.db", "--json").stdout)
    assert logged["progress"]["ended_as"] == "stopped", logged["progress"]
    assert logged["progress"]["ended"].startswith("stopped: campaign stopped while the prior model loaded or trained, "
                                                  "before this run's first experiment: FileExistsError"), logged


def test_a_store_that_is_a_link_to_nowhere_is_said_as_such(tmp_path, labloop, write_campaign):
    """``--store`` a symbolic link whose target is gone was refused as "was created by another process just now"
    (a security trial): the link and its missing target are said, nothing is created."""
    campaign_file = write_campaign(tmp_path)
    (tmp_path / "tiny.db").symlink_to(tmp_path / "moved" / "tiny.db")
    result = labloop("run", campaign_file, "--dry-run")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert f"a symbolic link to {tmp_path / 'moved' / 'tiny.db'}, which does not exist" in result.stderr
    assert not (tmp_path / "moved").exists()


def test_the_prior_bar_says_loading_for_a_cached_model_and_training_once_it_trains(tmp_path, write_campaign,
                                                                                   monkeypatch):
    """"training the prior model: epochs 0/30" stood for the seconds a cached model took to load (a newcomer's): the
    bar says loading then, and training once an epoch is trained (an unreadable cache trains again). The bar's tasks
    are read from the progress object the console made (captured, not replaced)."""
    from labloop.orchestrator import console
    from labloop.orchestrator.cli import preflight
    from labloop.orchestrator.learning import models

    made, progress = [], console.progress
    monkeypatch.setattr(console, "progress", lambda: made.append(progress()) or made[-1])
    campaign = load_campaign(write_campaign(tmp_path, prior=True))
    with preflight.prior_epochs(campaign):
        assert [t.description for t in made[-1].tasks] == ["training the prior model: epochs"]
    models.prior_dir(campaign.store, models.prior_key(campaign)).mkdir(parents=True)
    with preflight.prior_epochs(campaign) as epoch_trained:
        assert [t.description for t in made[-1].tasks] == ["loading the prior model"]
        epoch_trained(0, 0)
        assert [t.description for t in made[-1].tasks] == ["training the prior model: epochs"]


def test_a_ctrl_c_that_left_an_instrument_unsafe_says_to_check_it_in_the_last_line(tmp_path, write_campaign):
    """A Ctrl-C while a pump hung said "NOT made safe: analyte_pump: no answer within 10 s" in an upper-case
    ``WARNING:`` line, and the last line, the one an operator acts on, only "continue with: empty the cell, then
    labloop resume ... --cell-emptied": the pump went on pumping once it answered again (a hardware trial). The last
    line says to check it at the instrument first, as a failure's unsafe stop does."""
    from labloop.orchestrator.cli.run import _resume_after_interrupt

    campaign = load_campaign(write_campaign(tmp_path))
    with Journal.create(campaign.store, campaign) as journal:
        journal.add_event("run", "run started (real instruments)")
        journal.add_event("interrupted", "run stopped by SIGINT; NOT made safe: analyte_pump: no answer within 10 s",
                          data={"experiments": [1], "unsafe": ["analyte_pump: no answer within 10 s"], "cell_ml": 0.5,
                                "syringes": []})
    assert _resume_after_interrupt(campaign.store, None) == (
        "check analyte_pump at the instrument (a pump may still be pumping, a cell still be on), empty the cell, then "
        f"labloop resume {campaign.store} --cell-emptied")
    with Journal.open(campaign.store) as journal:
        journal.add_event("run", "run started (real instruments)")
        journal.add_event("interrupted", "run stopped by SIGINT; NOT made safe: potentiostat: no answer",
                          data={"experiments": [], "unsafe": ["potentiostat: no answer"], "cell_ml": 0.0})
    assert _resume_after_interrupt(campaign.store, None) == (
        "check potentiostat at the instrument (a pump may still be pumping, a cell still be on), then labloop resume "
        f"{campaign.store}")


def test_a_resume_refused_for_the_port_it_was_given_does_not_advise_that_port_again(tmp_path, labloop,
                                                                                    write_campaign):
    """``resume STORE --max-experiments 22 --port analyte_pump=/dev/ttyUSB7`` for a port that does not exist advised
    "`labloop resume STORE --port analyte_pump=/dev/ttyUSB7 --max-experiments 22 --port NAME=PORT`": the bad port
    again, beside the one to give (a hardware trial). The advice keeps the other options it was given."""
    campaign = yaml.safe_load(write_campaign(tmp_path).read_text())
    campaign["instruments"]["sampler"] = {"driver": "manual"}
    (tmp_path / "real.yaml").write_text(yaml.safe_dump(campaign, sort_keys=False))
    real = load_campaign(tmp_path / "real.yaml")
    with Journal.create(real.store, real):
        pass
    refused = labloop("resume", real.store, "--max-experiments", 3, "--port", "analyte_pump=/dev/ttyUSB-gone10",
                      "--port", "electrolyte_pump=/dev/ttyUSB-gone1")
    assert refused.returncode == 2, refused.stderr
    assert "instruments.analyte_pump.port: /dev/ttyUSB-gone10 does not exist" in refused.stderr
    # the other port it was given stays, though its path begins the refused one's (a reviewer's finding)
    # and names the store it was given, not STORE (a hardware trial)
    assert (f"`labloop resume {real.store} --port electrolyte_pump=/dev/ttyUSB-gone1 --max-experiments 3 --port "
            "NAME=PORT`" in refused.stderr), refused.stderr
