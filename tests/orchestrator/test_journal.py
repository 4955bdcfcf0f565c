"""The journal: every table round-trips, the experiment state machine refuses what it must, a read-only
reader follows a writer (WAL), and a writer killed with SIGKILL at a random moment leaves a consistent file
that resumes. Voltammograms come from the CV simulator and go through the real analysis."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from labloop.core.errors import IllegalTransition, JournalError, JournalWriteError
from labloop.instruments.cv_analysis import analyze_cv
from labloop.orchestrator.config.campaign import Campaign, load_campaign
from labloop.orchestrator.journal.store import SCHEMA_VERSION, Journal, journal_error
from labloop.orchestrator.journal.view import rate_constant
from labloop.sim.cv_physics import random_couple, simulate_cv

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "campaign.yaml"


@dataclass(frozen=True)
class Proposal:
    smiles: str
    conditions: dict = field(default_factory=dict)
    mu: float | None = None
    sigma: float | None = None
    acquisition: float | None = None


@pytest.fixture(scope="module")
def campaign() -> Campaign:
    return load_campaign(EXAMPLE)


@pytest.fixture
def journal(tmp_path, campaign):
    with Journal.create(tmp_path / "runs" / "j.db", campaign, source_yaml=EXAMPLE.read_text()) as j:
        yield j


def simulated_cv(seed: int):
    rng = np.random.default_rng(seed)
    cell, params = random_couple(rng)
    v = simulate_cv(cell, params, rng)
    return v, analyze_cv(v)


def run_to_done(journal: Journal, experiment_id: int, seed: int = 0, potential_v: float = 4.55) -> None:
    journal.start_experiment(experiment_id)
    v, result = simulated_cv(seed)
    journal.record_raw(experiment_id, v)
    journal.record_measurement(experiment_id, result, potential_v)
    journal.finish_experiment(experiment_id)


def test_every_table_round_trips(journal, campaign, tmp_path):
    version = journal.add_model_version(400, {"ie_ev": {"mae": 0.21, "r2": float("nan")}}, tmp_path / "m1")
    ids = journal.record_proposals(
        [Proposal("COc1ccc(OC)cc1", {"scan_rate_v_s": 0.2}, 4.52, 0.11, 0.37), Proposal("c1ccccc1")],
        step=3, planner="bayes", model_version=version)
    journal.save_planner_state(3, {"rng": [1, 2, 3], "pending": ids})
    attempt = journal.start_experiment(ids[0])
    action = journal.start_action(ids[0], 1, "analyte_pump", "dispense", {"volume_ml": 0.5, "rate_ml_min": 2.0})
    journal.finish_action(action, "ok")
    v, result = simulated_cv(1)
    journal.record_raw(ids[0], v)
    journal.record_measurement(ids[0], result, 4.48)
    journal.finish_experiment(ids[0])
    journal.add_event("note", "operator refilled the electrolyte", data={"ml": 50})
    journal.close()

    with Journal.open(journal.path, readonly=True) as j:
        info = j.campaign_info()
        assert (info.name, info.seed) == ("cathode-screen", 7)
        assert Campaign.model_validate(info.config) == campaign  # the campaign as run validates back
        assert info.source_yaml == EXAMPLE.read_text() and info.code_version

        first, second = j.experiments()
        assert (first.id, first.smiles, first.status, first.attempt) == (ids[0], "COc1ccc(OC)cc1", "done", attempt)
        assert (first.step, first.planner, first.model_version) == (3, "bayes", version)
        assert first.conditions == {"scan_rate_v_s": 0.2}
        assert (first.mu, first.sigma, first.acquisition) == (4.52, 0.11, 0.37)
        assert first.potential_v == 4.48 and first.e_half_v == result.e_half_v and first.dep_v == result.dep_v
        assert first.reference == result.reference and first.flags == sorted(result.flags)
        assert first.started_at and first.finished_at >= first.started_at
        assert (second.status, second.potential_v, second.mu, second.started_at) == ("proposed", None, None, None)

        (act,) = j.actions(ids[0])
        assert (act.step, act.instrument, act.command, act.outcome) == (1, "analyte_pump", "dispense", "ok")
        assert act.params == {"volume_ml": 0.5, "rate_ml_min": 2.0} and act.finished_at is not None

        (stored,) = j.voltammograms(ids[0])
        assert np.array_equal(stored.current_a, v.current_a) and stored.params == v.params
        assert j.analysis(ids[0]) == result and j.analysis(ids[1]) is None

        (model,) = j.model_versions()
        assert (model.version, model.n_train, model.weights_path) == (version, 400, str(tmp_path / "m1"))
        assert model.metrics == {"ie_ev": {"mae": 0.21, "r2": None}}  # NaN stored as null: strict JSON

        assert j.latest_planner_state() == (3, {"rng": [1, 2, 3], "pending": ids})
        kinds = [e.kind for e in j.events()]
        assert kinds == ["created", "model", "proposed", "started", "done", "note"]
        assert j.events(last=1)[0].data == {"ml": 50}


def test_a_model_folder_given_relative_is_journalled_absolute(journal, tmp_path, monkeypatch):
    """A resume started from another working directory must still find the weights (a version journalled as
    'runs/x.models/round-2' was 'unreadable' from the folder above, and its round was trained again)."""
    monkeypatch.chdir(tmp_path)
    version = journal.add_model_version(10, {}, Path("runs") / "x.models" / "round-2")
    (model,) = [m for m in journal.model_versions() if m.version == version]
    assert model.weights_path == str(tmp_path / "runs" / "x.models" / "round-2")


def test_illegal_transitions_raise_and_change_nothing(journal):
    (eid,) = journal.record_proposals([Proposal("CCO")], step=0, planner="random")
    v, result = simulated_cv(2)
    with pytest.raises(IllegalTransition, match="is proposed"):
        journal.finish_experiment(eid)
    with pytest.raises(IllegalTransition, match="needs it running"):
        journal.record_raw(eid, v)
    with pytest.raises(IllegalTransition, match="is proposed"):
        journal.fail_experiment(eid, "x")
    with pytest.raises(IllegalTransition, match="no experiment 99"):
        journal.start_experiment(99)

    journal.start_experiment(eid)
    with pytest.raises(IllegalTransition, match="is running"):
        journal.start_experiment(eid)
    journal.record_raw(eid, v)
    with pytest.raises(IllegalTransition, match="without measurements"):
        journal.finish_experiment(eid)
    assert journal.experiments()[0].status == "running"
    action = journal.start_action(eid, 0, "sampler", "load", {})
    journal.finish_action(action)
    with pytest.raises(IllegalTransition, match="already finished"):
        journal.finish_action(action)

    journal.fail_experiment(eid, "PumpStalled: analyte_pump")
    (row,) = journal.experiments()
    assert (row.status, row.cause) == ("failed", "PumpStalled: analyte_pump")
    for change in (lambda: journal.start_experiment(eid), lambda: journal.record_measurement(eid, result, 1.0),
                   lambda: journal.start_action(eid, 1, "x", "y", {})):
        with pytest.raises(IllegalTransition):
            change()
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        journal._conn.execute("DELETE FROM events")


def test_mark_interrupted_on_resume_then_rerun_as_a_new_attempt(journal):
    ids = journal.record_proposals([Proposal("CCO"), Proposal("CCN"), Proposal("CCC")], step=0, planner="random")
    run_to_done(journal, ids[0])
    journal.start_experiment(ids[1])
    journal.start_action(ids[1], 0, "analyte_pump", "dispense", {"volume_ml": 0.5})
    journal.record_raw(ids[1], simulated_cv(3)[0])  # half an attempt: raw data but no measurement
    journal.close()

    with Journal.open(journal.path) as j:
        assert j.mark_interrupted_on_resume() == [ids[1]]
        assert j.mark_interrupted_on_resume() == []
        states = {e.id: e.status for e in j.experiments()}
        assert states == {ids[0]: "done", ids[1]: "interrupted", ids[2]: "proposed"}
        assert [a.outcome for a in j.actions(ids[1])] == ["interrupted"]
        assert "attempt 1" in j.experiments(["interrupted"])[0].cause

        run_to_done(j, ids[1], seed=4, potential_v=3.3)
        again = j.experiments(["done"])[1]
        assert (again.id, again.attempt, again.potential_v, again.cause) == (ids[1], 2, 3.3, None)
        assert len(j.voltammograms(ids[1])) == 1  # only the finished attempt's, not the interrupted one's


def test_create_refuses_another_campaign_and_reopens_the_same(journal, campaign):
    path = journal.path
    journal.close()
    with pytest.raises(JournalError, match=r"with other settings, seed: 7 in the journal, 8 here"):
        Journal.create(path, campaign.model_copy(update={"seed": 8}))
    with Journal.create(path, campaign) as again:
        assert again.campaign_info().seed == 7
    assert sorted(p.name for p in path.parent.iterdir() if not p.name.startswith("j.db")) == []  # no temp files


def test_a_changed_protocol_is_named_by_its_first_step_that_differs(journal, campaign):
    """A step added to the protocol (a purge the blank asked for) was shown as the steps' list cut at 60
    characters, before the difference; the first step that differs is named by its place."""
    path = journal.path
    journal.close()
    steps = list(campaign.protocol.steps)
    purged = campaign.model_copy(update={"protocol": campaign.protocol.model_copy(
        update={"steps": (steps[0], {"purge": {"minutes": 5}}, *steps[1:])})})
    with pytest.raises(JournalError, match=r"with other settings, protocol\.steps\[1\]: .* in the journal, "
                                           r"\{\"purge\": \{\"minutes\": 5\}\} here"):
        Journal.create(path, purged)


def test_a_moved_port_is_refused_with_the_resume_that_takes_it(journal, campaign):
    """A USB adapter came back under another name and the campaign file was edited to it: the refusal said "continue
    that campaign as it was with `labloop resume`", whose run was then refused for the old port; only that second
    refusal named ``--port`` (a plug-in engineer's trial). The first says the resume with it."""
    path = journal.path
    journal.close()
    name, entry = next((n, e) for n, e in campaign.instruments.items() if e.port)
    moved = campaign.model_copy(update={"instruments": {**campaign.instruments,
                                                        name: entry.model_copy(update={"port": "/dev/ttyUSB7"})}})
    with pytest.raises(JournalError) as refused:
        Journal.create(path, moved)
    assert str(refused.value).endswith(f"(the instrument is on /dev/ttyUSB7 now: `labloop resume {path} --port "
                                       f"{name}=/dev/ttyUSB7`)"), refused.value
    assert f"instruments.{name}.port:" in str(refused.value)


@pytest.mark.parametrize(("scheduler", "said"), [("tcp://127.0.0.1:18796", "tcp://127.0.0.1:18796"),
                                                 (None, "auto")])
def test_a_moved_cluster_is_refused_with_the_resume_that_takes_it(journal, campaign, scheduler, said):
    """The campaign file's ``compute.scheduler`` edited to a cluster elsewhere (or left out again): the refusal
    named ``labloop resume``, whose run then found no scheduler at the journal's address, and neither said
    ``--scheduler`` (a Dask operator's trial)."""
    store = journal.path.with_name("clustered.db")
    def computing(where: str | None) -> Campaign:
        return campaign.model_copy(update={"compute": campaign.compute.model_copy(update={"scheduler": where})})

    Journal.create(store, computing("local")).close()
    moved = computing(scheduler)
    with pytest.raises(JournalError) as refused:
        Journal.create(store, moved)
    assert str(refused.value).endswith(f"(to compute on another cluster: `labloop resume {store} --scheduler "
                                       f"{said}`)"), refused.value
    assert "compute.scheduler:" in str(refused.value)


def test_foreign_or_newer_files_are_refused_in_one_line(tmp_path, campaign):
    text = tmp_path / "notes.db"
    text.write_text("not a database at all, just some text that is long enough " * 20)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    newer = tmp_path / "newer.db"
    Journal.create(newer, campaign).close()
    conn = sqlite3.connect(newer)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    cases = {text: "not a labloop journal", other: "not a labloop journal", newer: "newer labloop",
             tmp_path / "missing.db": "no such journal", tmp_path: "is a directory"}
    for path, needle in cases.items():
        for readonly in (False, True):
            with pytest.raises(JournalError, match=needle) as info:
                Journal.open(path, readonly=readonly)
            assert "\n" not in str(info.value)


def test_read_only_reader_sees_each_commit_of_a_writer(journal):
    with Journal.open(journal.path, readonly=True) as reader:
        before = reader.data_version()
        assert reader.experiments() == []
        (eid,) = journal.record_proposals([Proposal("CCO")], step=0, planner="random")
        assert [e.status for e in reader.experiments()] == ["proposed"]
        assert reader.data_version() != before
        journal.start_experiment(eid)
        assert [e.status for e in reader.experiments()] == ["running"]
        with pytest.raises(JournalWriteError, match="read-only"):  # one line for the user, not sqlite's
            reader.add_event("x", "a reader cannot write")


def test_reading_a_finished_journal_leaves_nothing_beside_it(journal, tmp_path):
    """Reading a journal no run writes (labloop log, report, the dashboard) left empty ``-wal`` and ``-shm`` files
    beside it (SQLite's read-only connection cannot remove them); the last connection to close removes them, and a
    reader still cannot write."""
    (eid,) = journal.record_proposals([Proposal("CCO")], step=0, planner="random")
    run_to_done(journal, eid)
    journal.close()
    folder = journal.path.parent
    assert sorted(p.name for p in folder.iterdir()) == ["j.db"]
    with Journal.open(journal.path, readonly=True) as reader:
        assert [e.status for e in reader.experiments()] == ["done"]
        with pytest.raises(JournalWriteError, match="read-only"):
            reader.add_event("x", "a reader cannot write")
    assert sorted(p.name for p in folder.iterdir()) == ["j.db"]


WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from labloop.instruments.cv_analysis import analyze_cv
    from labloop.orchestrator.journal.store import Journal
    from labloop.sim.cv_physics import random_couple, simulate_cv

    class P:
        def __init__(self, i):
            self.smiles, self.conditions, self.mu, self.sigma, self.acquisition = f"C{'C' * i}O", {"i": i}, 4.0, 0.1, i
    rng = np.random.default_rng(0)
    cell, params = random_couple(rng)
    v = simulate_cv(cell, params, rng)
    result = analyze_cv(v)
    j = Journal.open(sys.argv[1])
    i = 0
    while True:
        (eid,) = j.record_proposals([P(i)], step=i, planner="random")
        j.start_experiment(eid)
        a = j.start_action(eid, 0, "analyte_pump", "dispense", {"volume_ml": 0.5})
        j.finish_action(a)
        j.record_raw(eid, v)
        j.record_measurement(eid, result, 4.0 + i / 1000)
        j.save_planner_state(i, {"i": i})
        if i % 7 == 3:
            j.fail_experiment(eid, "simulated fault")
        else:
            j.finish_experiment(eid)
        i += 1
""")


def test_only_the_latest_planner_state_is_kept(journal):
    """Each state holds every observation so far and only the latest is read: kept all, the table grew with the
    square of the campaign (29 MB of a 1,000-experiment journal; a long-campaign trial)."""
    for step in range(5):
        journal.save_planner_state(step, {"observations": list(range(step))})
    assert journal.latest_planner_state() == (4, {"observations": [0, 1, 2, 3]})
    assert [tuple(row) for row in journal._conn.execute("SELECT step FROM planner_state")] == [(4,)]


def test_sigkill_mid_write_leaves_a_consistent_journal_that_resumes(journal):
    path = journal.path
    journal.close()
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stderr=subprocess.PIPE)
    try:
        with Journal.open(path, readonly=True) as watcher:
            deadline = time.monotonic() + 60
            while len(watcher.experiments(["done"])) < 15:
                assert child.poll() is None, child.stderr.read().decode()
                assert time.monotonic() < deadline, "the writer did not get going"
                time.sleep(0.05)
        time.sleep(np.random.default_rng().uniform(0, 0.05))  # land anywhere inside an iteration
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL

    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    # no half rows: every experiment has its proposal, every done one its raw data and measurement
    assert conn.execute("SELECT count(*) FROM experiments e LEFT JOIN proposals p ON p.experiment_id = e.id "
                        "WHERE p.experiment_id IS NULL").fetchone() == (0,)
    for table in ("raw_data", "measurements"):
        assert conn.execute(f"SELECT count(*) FROM experiments e WHERE state = 'done' AND NOT EXISTS "
                            f"(SELECT 1 FROM {table} t WHERE t.experiment_id = e.id AND t.attempt = e.attempt)"
                            ).fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM actions a JOIN experiments e ON e.id = a.experiment_id "
                        "WHERE a.finished_at IS NULL AND e.state != 'running'").fetchone() == (0,)
    conn.close()

    with Journal.open(path) as j:
        running = [e.id for e in j.experiments(["running"])]
        assert j.mark_interrupted_on_resume() == running
        rows = j.experiments()
        assert not any(e.status == "running" for e in rows)
        assert all(a.finished_at is not None for e in rows for a in j.actions(e.id))
        states = {e.id: e.status for e in rows}
        for eid, state in states.items():  # the writer's own rule: every 7th (from the 4th) fails
            if state in ("done", "failed"):
                assert state == ("failed" if (eid - 1) % 7 == 3 else "done"), eid
        to_redo = j.experiments(["interrupted", "proposed"])
        for e in to_redo:
            run_to_done(j, e.id)
        assert len(j.experiments(["done", "failed"])) == len(rows)


def test_a_prior_model_from_the_cache_is_journalled_as_loaded_not_trained(tmp_path, write_campaign, labloop):
    """The second campaign of a folder loads the prior model the first trained (prior-models/<key>), yet its journal
    said 'model version 1 trained on 160 molecules', as if this run had trained it (an operator's trial)."""
    messages = []
    for name in ("first", "second"):  # the same prior, recipe and seed: one cache key
        campaign_file = write_campaign(tmp_path, prior=True, name=name, budget={"max_experiments": 1})
        assert labloop("run", campaign_file, "--dry-run").returncode == 0
        with Journal.open(campaign_file.with_suffix(".db"), readonly=True) as journal:
            messages.append(next(e.message for e in journal.events() if e.kind == "model"))
    assert messages[0] == "model version 1 trained on 160 molecules"  # 200 rows, 2 folds: 160 each
    assert messages[1] == "model version 1 loaded from cache (trained on 160 molecules earlier)"
    # a cache damaged since (a disk's fault, a copy cut short) was trained over without a word (a newcomer's trial)
    cached = next(path for path in (tmp_path / "prior-models").iterdir() if path.is_dir())
    weights = cached / "member_0.weights.h5"
    weights.write_bytes(weights.read_bytes()[:200])
    campaign_file = write_campaign(tmp_path, prior=True, name="third", budget={"max_experiments": 1})
    run = labloop("run", campaign_file, "--dry-run")
    assert run.returncode == 0
    assert f"warning: the prior model cached in {cached} does not load ({weights}: damaged" in run.stderr, run.stderr
    with Journal.open(campaign_file.with_suffix(".db"), readonly=True) as journal:
        assert next(e.message for e in journal.events() if e.kind == "model") == \
            "model version 1 trained on 160 molecules"


def test_a_campaign_waits_for_another_training_the_same_prior_then_loads_it(tmp_path, write_campaign, labloop):
    """Two campaigns of one folder started together both trained the same prior, twice the work for one model (a lab
    manager's trial). A campaign finding the prior's lock held (here by this test, as a campaign training it would)
    says so and waits; the model saved meanwhile (copied here from a campaign that trained it) is loaded, not
    trained again."""
    import fcntl
    import shutil

    from labloop.orchestrator.learning import models

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    trained = write_campaign(tmp_path / "a", prior=True, name="first", budget={"max_experiments": 1})
    assert labloop("run", trained, "--dry-run").returncode == 0
    waiting = write_campaign(tmp_path / "b", prior=True, name="second", budget={"max_experiments": 1})
    key = models.prior_key(load_campaign(waiting))
    assert (tmp_path / "a" / "prior-models" / key).is_dir()  # one key: the same prior, recipe and seed
    (tmp_path / "b" / "prior-models").mkdir()
    fd = os.open(tmp_path / "b" / "prior-models" / f"{key}.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    process = subprocess.Popen([sys.executable, "-m", "labloop.orchestrator.cli.main", "run", str(waiting),
                                "--dry-run"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        said = []
        while not any("another campaign is training this prior model" in line for line in said):
            line = process.stderr.readline()
            assert line, f"the run ended without waiting: {said}"
            said.append(line)
        shutil.copytree(tmp_path / "a" / "prior-models" / key, tmp_path / "b" / "prior-models" / key)
    finally:
        os.close(fd)  # the lock goes with it
    _, rest = process.communicate(timeout=300)
    assert process.returncode == 0, rest
    assert said[-1].startswith("warning: another campaign is training this prior model into "), said
    with Journal.open(waiting.with_suffix(".db"), readonly=True) as journal:
        assert next(e.message for e in journal.events() if e.kind == "model") == \
            "model version 1 loaded from cache (trained on 160 molecules earlier)"


def test_a_failed_write_is_not_called_a_full_disk_unless_it_is(tmp_path):
    """SQLite says "disk I/O error" for a file made unwritable under a running campaign as for a failing disk; it was
    said "the disk failed ...; free space", sending an operator after space that was there (an unattended-lab trial).
    The errors as SQLite words them; the states that raise them were made by hand in that trial (chattr, a tmpfs)."""
    store = tmp_path / "x.db"
    io = str(journal_error(store, sqlite3.OperationalError("disk I/O error")))
    assert io.startswith(f"{store}: writing it failed (disk I/O error): a full disk, a medium gone read-only, or the "
                         "file or its folder made unwritable")
    full = str(journal_error(store, sqlite3.OperationalError("database or disk is full")))
    assert full == f"{store}: the disk is full (database or disk is full); free space, then `labloop resume`"


def test_no_rate_constant_from_a_scan_whose_product_reacted_away():
    """Nicholson's k0 from an EC couple's dEp read 8x low and was shown as a value (a chemist's trial): the decay
    widens dEp too. The same scan without the flag gives its k0."""
    diffusion = {"diffusion_cm2_s": 1e-5}
    scan = {"scan_rate_v_s": 0.1, "analysis": {"dep_v": 0.0797, "ipa_a": 2e-5, "ipc_a": -5e-6, "flags": []}}
    plain = rate_constant(scan, diffusion, {"ru_ohm": 0.0})  # Ru measured, none to correct
    assert plain["k0_cm_s"] is not None and plain["k0_side"] == "value"
    flagged = rate_constant({**scan, "analysis": {**scan["analysis"], "flags": ["chemically_irreversible"]}},
                            diffusion, None)
    assert (flagged["k0_cm_s"], flagged["k0_side"]) == (None, None)
    assert flagged["k0_why"].startswith("chemically irreversible at this rate")
