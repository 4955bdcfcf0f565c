"""Crash-safe resume: ``labloop run --dry-run`` is killed with SIGKILL at random moments (one per run, in a
proposal, a dispense, a CV and a retraining; a bayes campaign's proposal and CV and its wait for a retrain) and each
is resumed with ``labloop resume``.

Each final journal must hold exactly the budgeted number of done experiments, the same proposals (molecule
and conditions, step by step) as an uninterrupted run with the same seed — so no candidate is measured
twice — and no orphan row: every experiment has its proposal, every action ended, raw data and
measurements belong to attempts that happened, and nothing is left running or pending.
"""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from labloop.orchestrator.journal.store import Journal, State
from labloop.orchestrator.journal.view import local_time, snapshot

#: where each run is killed, and whether its campaign has a (tiny) surrogate: retraining needs one. Each phase once:
#: each kill costs the suite 7-15 s of its 10 minutes (where within its phase a kill lands varies with the machine's
#: timing); a retraining's other kill, anywhere in a training child's life while the proposal waits for it, is
#: test_bayes_killed_while_it_waits_for_a_retrain_resumes_with_the_same_models's
SCENARIOS = [("retraining", True), ("proposal", False), ("dispense", False), ("cv", False)]
BUDGET = 6
CLI = [sys.executable, "-m", "labloop.orchestrator.cli.main"]


def _reached(journal: Journal, phase: str, target: int) -> bool:
    """Whether the run is in ``phase`` at (or after) experiment ``target``."""
    if phase == "retraining":
        events = journal.events()
        started = sum(e.kind == "retrain" for e in events)
        return started > 0 and started > sum(e.kind == "model" for e in events) - 1  # v1 is the prior
    experiments = journal.experiments()
    if phase == "proposal":  # the planner state of the step proposing `target` is saved: proposals follow
        saved = journal.latest_planner_state()
        return saved is not None and saved[0] >= target // 2
    running = [e for e in experiments if e.status == State.RUNNING and e.id >= target]
    if not running:
        return False
    actions = journal.actions(running[0].id)
    return bool(actions) and actions[-1].command == phase and actions[-1].finished_at is None


def _kill_at(campaign_file: Path, store: Path, phase: str, rng: random.Random) -> str:
    """Start a run, SIGKILL it once ``phase`` is reached (plus a random delay); returns what was seen."""
    target = rng.randint(1, BUDGET - 2)  # leaves later experiments to catch the phase in
    process = subprocess.Popen([*CLI, "run", str(campaign_file), "--dry-run"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90
    try:
        while not store.exists():
            assert process.poll() is None, process.stderr.read().decode()
            time.sleep(0.01)
        with Journal.open(store, readonly=True) as journal:
            while not _reached(journal, phase, target):
                assert process.poll() is None, f"the run ended before {phase} at {target}"
                assert time.monotonic() < deadline
                time.sleep(0.0005)
            time.sleep(rng.uniform(0, 0.5 if phase == "retraining" else 0.003))
            process.send_signal(signal.SIGKILL)
            process.wait()
            counts = {s: len(journal.experiments(states=(s,))) for s in State}
        return f"{phase} at {target}: {counts}"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()


def _proposals(store: Path) -> list[tuple[int, str, str]]:
    with sqlite3.connect(store) as db:
        return db.execute("SELECT step, smiles, conditions_json FROM proposals ORDER BY experiment_id").fetchall()


def _assert_consistent(store: Path) -> None:
    with Journal.open(store, readonly=True) as journal:
        experiments = journal.experiments()
        done = [e for e in experiments if e.status == State.DONE]
        assert len(done) == BUDGET
        assert not [e for e in experiments if e.status in (State.RUNNING, State.PROPOSED, State.INTERRUPTED)]
        assert len({e.smiles for e in experiments}) == len(experiments), "a candidate was measured twice"
        for e in done:
            assert journal.voltammograms(e.id) and journal.analysis(e.id) is not None
        for row in journal.model_versions():
            assert Path(row.weights_path, "manifest.json").is_file()
    with sqlite3.connect(store) as db:
        def count(sql: str) -> int:
            return db.execute(sql).fetchone()[0]
        assert count("SELECT COUNT(*) FROM experiments e LEFT JOIN proposals p ON p.experiment_id = e.id "
                     "WHERE p.experiment_id IS NULL") == 0
        assert count("SELECT COUNT(*) FROM actions WHERE finished_at IS NULL") == 0
        for table in ("actions", "raw_data", "measurements"):
            assert count(f"SELECT COUNT(*) FROM {table} t JOIN experiments e ON e.id = t.experiment_id "
                         "WHERE t.attempt < 1 OR t.attempt > e.attempt") == 0, table
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.mark.slow
def test_kill_anywhere_then_resume_finishes_the_same_campaign(tmp_path, write_campaign, labloop):
    # one folder for all: the runs share the prior model the reference run trains (prior-models/<key>)
    expected = {}
    for prior in (False, True):
        reference = write_campaign(tmp_path, prior=prior, shared_prior=True, name=f"reference{int(prior)}")
        assert labloop("run", reference, "--dry-run").returncode == 0
        expected[prior] = _proposals(reference.with_suffix(".db"))

    def kill(k: int) -> tuple[Path, str]:
        phase, prior = SCENARIOS[k]
        campaign_file = write_campaign(tmp_path, prior=prior, shared_prior=True, name=f"run{k}")
        store = campaign_file.with_suffix(".db")
        return store, _kill_at(campaign_file, store, phase, random.Random(k))

    with ThreadPoolExecutor(2) as pool:  # the kills run as separate processes, two at a time
        killed = list(pool.map(kill, range(len(SCENARIOS))))
    for (store, seen), (_, prior) in zip(killed, SCENARIOS, strict=True):
        resumed = labloop("resume", store, "--cell-emptied")  # as a kill mid-experiment asks
        assert resumed.returncode == 0, f"{seen}\n{resumed.stderr}"
        _assert_consistent(store)
        assert _proposals(store) == expected[prior], seen
    print("\n".join(seen for _, seen in killed))


@pytest.mark.slow
def test_bayes_resumed_after_kill_proposes_what_the_uninterrupted_run_did(tmp_path, write_campaign, labloop):
    # no retraining: which model a proposal uses must not depend on how fast a background retrain ran
    sections = {"prior": True, "planner": {"kind": "bayes", "batch_size": 2},
                "surrogate": {"preset": "fast", "folds": 2, "epochs": 2, "retrain_every": 100},
                "conditions": {"scan_rate_v_s": [0.02, 0.5]}}
    reference = write_campaign(tmp_path, name="reference", shared_prior=True, **sections)
    assert labloop("run", reference, "--dry-run").returncode == 0
    expected = _proposals(reference.with_suffix(".db"))
    assert len(expected) >= BUDGET  # one per done experiment, plus one per unusable voltammogram

    def kill(k: int) -> tuple[Path, str]:
        campaign_file = write_campaign(tmp_path, name=f"bayes{k}", shared_prior=True, **sections)
        store = campaign_file.with_suffix(".db")
        return store, _kill_at(campaign_file, store, ("proposal", "cv")[k], random.Random(100 + k))

    with ThreadPoolExecutor(2) as pool:
        killed = list(pool.map(kill, range(2)))
    for store, seen in killed:
        resumed = labloop("resume", store, "--cell-emptied")  # as a kill mid-experiment asks
        assert resumed.returncode == 0, f"{seen}\n{resumed.stderr}"
        _assert_consistent(store)
        assert _proposals(store) == expected, seen


@pytest.mark.slow
def test_bayes_killed_while_it_waits_for_a_retrain_resumes_with_the_same_models(tmp_path, write_campaign, labloop):
    # the proposal after every 2nd experiment waits for the retrain (wait_for_retrain); a run killed during
    # that wait must train the same round again on resume, not propose with the model before it
    sections = {"prior": True, "planner": {"kind": "bayes", "batch_size": 2},
                "surrogate": {"preset": "fast", "folds": 2, "epochs": 2, "retrain_every": 2,
                              "wait_for_retrain": True},
                "conditions": {"scan_rate_v_s": [0.02, 0.5]}}
    reference = write_campaign(tmp_path, name="reference", shared_prior=True, **sections)
    assert labloop("run", reference, "--dry-run").returncode == 0
    campaign_file = write_campaign(tmp_path, name="killed", shared_prior=True, **sections)
    store = campaign_file.with_suffix(".db")
    seen = _kill_at(campaign_file, store, "retraining", random.Random(3))
    resumed = labloop("resume", store, "--cell-emptied")  # as a kill mid-experiment asks
    assert resumed.returncode == 0, f"{seen}\n{resumed.stderr}"
    _assert_consistent(store)
    with Journal.open(store, readonly=True) as journal:
        rounds = [e.data["round"] for e in journal.events() if e.kind == "retrain"]
    assert len(rounds) > len(set(rounds)), f"no retrain was interrupted and started again: {seen}, {rounds}"
    assert _proposals(store) == _proposals(reference.with_suffix(".db")), seen
    models = "SELECT experiment_id, model_version FROM proposals ORDER BY experiment_id"
    with sqlite3.connect(store) as db, sqlite3.connect(reference.with_suffix(".db")) as ref:
        assert db.execute(models).fetchall() == ref.execute(models).fetchall()


def _killed_mid_dispense(folder: Path, write_campaign, name: str) -> tuple[Path, Path]:
    """A 2-experiment dry run (a dispense lasting, at world.time_scale 0.02) killed with SIGKILL during its first
    dispense; the campaign file and its journal."""
    campaign_file = write_campaign(folder, name=name, budget={"max_experiments": 2},
                                   world={"truth": {"from": "ie_ea", "solvent": "acn"}, "time_scale": 0.02})
    store = campaign_file.with_suffix(".db")
    process = subprocess.Popen([*CLI, "run", str(campaign_file), "--dry-run"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        while not store.exists():
            time.sleep(0.01)
        with Journal.open(store, readonly=True) as journal:
            while not _reached(journal, "dispense", 1):
                assert process.poll() is None, "the run ended before a dispense"
                time.sleep(0.0005)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    return campaign_file, store


def test_an_action_a_kill_left_open_ends_when_the_journal_last_heard_of_the_run(tmp_path, write_campaign):
    """After a kill -9 mid-dispense the resume closed the dispense at the resume's time (hours later, perhaps), as
    if it had pumped until then: it ends at the last time the journal heard of the killed run, and says so. The
    resume says in one line that the last run ended without a word, when, and what runs again: it said nothing
    of it, and nothing else had (an operator's trial); a resume after a run that ended with a word does not."""
    from labloop.orchestrator.cli.run import _killed

    _, store = _killed_mid_dispense(tmp_path, write_campaign, "killed")
    with Journal.open(store, readonly=True) as journal:
        heard = max([e.time for e in journal.events()]
                    + [t for e in journal.experiments() for a in journal.actions(e.id)
                       for t in (a.started_at, a.finished_at) if t is not None])
    with Journal.open(store, readonly=True) as journal:  # labloop log's header: nothing made the rig safe
        ended = snapshot(journal)["progress"]["ended"]
        started = journal.events(kinds=("run",))[-1].time
        [running] = journal.experiments(states=(State.RUNNING,))
    assert ended.startswith("stopped: the run process ended without a word in the journal (killed, crashed, or the "
                            "journal could not be written, which the run's own last line then says), so the rig may "
                            "not have been made safe: check the pumps and the cell at the rig, then `labloop "
                            "resume`"), ended
    time.sleep(0.05)  # the resume's clock is later than anything the killed run wrote
    resume = subprocess.Popen([*CLI, "resume", str(store), "--cell-emptied"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:  # the resume closes what the killed run left open before its first experiment; the rest is not needed
        with Journal.open(store, readonly=True) as journal:
            # the killed run's, then the resume's; interrupted once its runner runs the experiment again (a Ctrl-C
            # between the run event and the runner journals no end: the run would look killed to the check below)
            while sum(e.kind == "run" for e in journal.events()) < 2 \
                    or not any(a.attempt == 2 for a in journal.actions(running.id)):
                assert resume.poll() is None, "the resume ended before it started its run"
                time.sleep(0.01)
            [killed] = [a for e in journal.experiments() for a in journal.actions(e.id)
                        if a.attempt == 1 and a.outcome.startswith("interrupted")]
    finally:
        resume.send_signal(signal.SIGINT)
        said = resume.communicate()[1]
    assert (killed.command, killed.finished_at) == ("dispense", heard)
    assert (f"\nthe last run (started {local_time(started)}) ended without a word at {local_time(heard)} (killed, the "
            f"machine went down, or the journal could not be written); experiment {running.id} will run "
            "again\n") in f"\n{said}", said
    # the resume's own line does not say it again (a reviewer's finding)
    (opening,) = [line for line in said.splitlines() if line.startswith("resuming ")]
    assert "will run again" not in opening and ";" not in opening, said
    with Journal.open(store, readonly=True) as journal:
        assert _killed(journal) is None  # the resume's run ended with a word (its interrupt): nothing to say
    assert killed.outcome == ("interrupted: the run ended without a word (killed?); when this action ended is "
                              f"unknown: the journal last heard of the run at {heard}")


def test_a_refused_resume_or_run_after_a_kill_says_first_that_the_last_run_ended_without_a_word(tmp_path,
                                                                                                write_campaign,
                                                                                                labloop):
    """A resume after a kill -9 that is then refused (the killed experiment's liquid still in the cell: exit 2)
    said the refusal only, never the line that the last run ended without a word (an operator's trial); it says
    that line first, and so does `labloop run` of the same journal."""
    # killed mid-dispense: the cell counts what it asked
    campaign_file, store = _killed_mid_dispense(tmp_path, write_campaign, "refused")
    for command in (("resume", store), ("run", campaign_file, "--dry-run")):
        result = labloop(*command)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 2, result.stderr
        assert lines[0].startswith("the last run (started ") and " ended without a word at " in lines[0]
        assert lines[1].startswith("error: cell: it holds ") and "--cell-emptied" in lines[1], lines[1]


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_journal_deleted_or_replaced_while_a_run_writes_it_is_saved_and_the_run_stops(tmp_path, write_campaign,
                                                                                        labloop, how):
    """A data trial's ``rm`` of a running journal let the run drive the rig for minutes more and finish "30/30 ...
    journal X" with exit 0, every experiment gone; a ``mv`` of another file over it mixed the two in one file. The
    run's next write sees that its file is no longer the one at the name: what the run wrote is saved (at the name if
    it is free, else beside it) with a ``stopped`` event saying why, the run stops (exit 1, one line), the file put
    there is left as it was, with no ``-wal`` of the old one beside it, and a resume of the saved journal finishes
    the campaign."""
    campaign_file = write_campaign(tmp_path, name=how, budget={"max_experiments": 4},
                                   world={"truth": {"from": "ie_ea", "solvent": "acn"}, "time_scale": 200})
    store = campaign_file.with_suffix(".db")
    process = subprocess.Popen([*CLI, "run", str(campaign_file), "--dry-run"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    try:
        while not store.exists():
            assert process.poll() is None, process.stderr.read()
            time.sleep(0.01)
        with Journal.open(store, readonly=True) as journal:
            while not journal.experiments(states=(State.DONE,)):
                assert process.poll() is None, process.stderr.read()
                time.sleep(0.05)
        other = tmp_path / f"{how}.other"
        other.write_text("a file put where the journal was\n")
        store.unlink() if how == "deleted" else os.replace(other, store)
        _, said = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 1, said
    saved = store if how == "deleted" else next(tmp_path.glob(f"{how}.rescued-*.db"))
    what = "deleted or moved away" if how == "deleted" else "replaced by another file"
    moved = "; a copy moved away is a second journal of this campaign without this stop: keep one"
    last = said.splitlines()[-1]
    assert last.startswith(f"error: {store}: the journal file was {what} while this run wrote it: the run stops, and "
                           f"everything it had written is saved as {saved} (`labloop resume {saved}` continues it"
                           f"{moved if how == 'deleted' else ''}); instruments in a safe state"), said
    # what the cell holds, if anything, for that resume: not a second resume command naming the old file
    assert last.count("labloop resume") == 1 and re.fullmatch(
        r"(; the cell still holds [\d.]+ mL by labloop's count: empty it, and give that resume `--cell-emptied`)?",
        last.split("instruments in a safe state", 1)[1]), last
    if how == "replaced":
        assert store.read_text() == "a file put where the journal was\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(f"{store.name}-")]  # no -wal, -shm of the old file
    with Journal.open(saved, readonly=True) as journal:
        assert journal.experiments(states=(State.DONE,))
        assert journal.events()[-1].kind == "stopped" and what in journal.events()[-1].message
    assert labloop("resume", saved, "--cell-emptied").returncode == 0
    with Journal.open(saved, readonly=True) as journal:
        assert len(journal.experiments(states=(State.DONE,))) == 4


def test_a_wal_left_by_a_deleted_journal_is_not_read_into_a_new_one(tmp_path, write_campaign, labloop):
    """Kill a run, delete its journal to start over: its -wal stayed, and SQLite read it into the new journal of that
    name, which held the deleted campaign's experiments or was born damaged (a data trial). The new run is refused in
    one line naming the file, writing nothing; once it is deleted, the run starts afresh."""
    campaign_file, store = _killed_mid_dispense(tmp_path, write_campaign, "restart")
    wal = store.with_name(f"{store.name}-wal")
    assert wal.stat().st_size > 0  # a killed run's WAL holds what it wrote last
    store.unlink()
    refused = labloop("run", campaign_file, "--dry-run")
    assert refused.returncode == 2 and refused.stderr.startswith(f"error: {wal}: left beside {store}, which is gone"), \
        refused.stderr
    assert not store.exists()
    wal.unlink()
    store.with_name(f"{store.name}-shm").unlink(missing_ok=True)
    fresh = write_campaign(tmp_path, name="restart", budget={"max_experiments": 2})  # the same store, zero latency
    assert fresh.with_suffix(".db") == store
    assert labloop("run", fresh, "--dry-run").returncode == 0
    with Journal.open(store, readonly=True) as journal:
        assert [e.attempt for e in journal.experiments()] == [1, 1]  # a new campaign: nothing of the killed one
