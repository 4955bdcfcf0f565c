"""`labloop log STORE`: the --json object scripts rely on, the tables people read, --follow on a live
journal, and one-line exit-2 errors for stores that are not journals. Journals are filled through the
Journal API with simulated, analysed voltammograms."""

from __future__ import annotations

import csv
import json
import os
import queue
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from labloop.instruments.cv_analysis import analyze_cv
from labloop.orchestrator.config.campaign import load_campaign
from labloop.orchestrator.journal.lock import sole_runner
from labloop.orchestrator.journal.store import Journal, State
from labloop.protocols.executor import WARNINGS
from labloop.sim.cv_physics import random_couple, simulate_cv

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "campaign.yaml"
BEST = "COc1ccc(OC)cc1"  # measured inside the 4.5-4.6 V window: the hit
NEAR = "Cc1ccccc1N"  # measured at 4.40 V: second best
FAR = "c1ccc2ccccc2c1"  # measured at 3.20 V


@dataclass(frozen=True)
class Proposal:
    smiles: str
    conditions: dict = field(default_factory=lambda: {"scan_rate_v_s": 0.1})
    mu: float | None = 4.5
    sigma: float | None = 0.2
    acquisition: float | None = 0.3


def measure(journal: Journal, experiment_id: int, potential_v: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    cell, params = random_couple(rng)
    v = simulate_cv(cell, params, rng)
    journal.start_experiment(experiment_id)
    journal.record_raw(experiment_id, v)
    journal.record_measurement(experiment_id, analyze_cv(v), potential_v)
    journal.finish_experiment(experiment_id)


@pytest.fixture
def store(tmp_path) -> Path:
    """A journal mid-campaign: three done (one hit), one failed, one running, one proposed; one model."""
    path = tmp_path / "runs" / "cathode-screen.db"
    with Journal.create(path, load_campaign(EXAMPLE)) as journal:
        version = journal.add_model_version(21000, {"ie_ev": {"mae": 0.2}})
        ids = journal.record_proposals([Proposal(s) for s in (FAR, BEST, NEAR, "CCO", "CCN", "CCC")], step=0,
                                       planner="random", model_version=version)
        for eid, potential, seed in zip(ids, (3.2, 4.55, 4.4), (1, 2, 3), strict=False):
            measure(journal, eid, potential, seed)
        journal.start_experiment(ids[3])
        journal.fail_experiment(ids[3], "PumpStalled: analyte_pump: motor stall")
        journal.start_experiment(ids[4])
    return path


def test_json_is_one_object_with_campaign_experiments_models_events(labloop, store):
    proc = labloop("log", store, "--json")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.strip().splitlines()) == 1
    data = json.loads(proc.stdout)

    assert data["campaign"]["name"] == "cathode-screen" and data["campaign"]["budget"]["max_experiments"] == 30
    rows = data["experiments"]
    assert [r["smiles"] for r in rows] == [FAR, BEST, NEAR, "CCO", "CCN", "CCC"]
    assert [r["status"] for r in rows] == ["done", "done", "done", "failed", "running", "proposed"]
    assert [r["potential_v"] for r in rows] == [3.2, 4.55, 4.4, None, None, None]
    assert [r["hit"] for r in rows] == [False, True, False, False, False, False]  # 4.5-4.6 V: only BEST
    assert data["campaign"]["objective_text"] == "oxidation potential in [4.50, 4.60] V vs Li/Li+"
    assert rows[0]["started_at"] <= rows[0]["finished_at"]
    assert rows[4]["finished_at"] is None and rows[5]["started_at"] is None
    assert rows[3]["cause"].startswith("PumpStalled")
    assert (rows[1]["mu"], rows[1]["sigma"], rows[1]["model_version"]) == (4.5, 0.2, 1)
    assert [m["version"] for m in data["models"]] == [1] and data["models"][0]["n_train"] == 21000
    assert {"created", "proposed", "started", "done", "failed"} <= {e["kind"] for e in data["events"]}
    assert [b["smiles"] for b in data["best"]] == [BEST, NEAR, FAR]
    assert data["progress"]["hits"] == 1 and data["progress"]["counts"]["done"] == 3


def test_a_failed_experiments_potential_is_never_a_hit(labloop, store, tmp_path):
    """An experiment that measured a potential in the window and then failed its analysis (an unstable molecule,
    chemically_irreversible) was "hit": true in log --json and the dashboard and hit=yes in measurements.csv, while
    every count said no hit (a chemist's trial)."""
    with Journal.open(store) as journal:
        [eid] = journal.record_proposals([Proposal("CCCC")], step=1, planner="random", model_version=1)
        rng = np.random.default_rng(9)
        cell, params = random_couple(rng)
        v = simulate_cv(cell, params, rng)
        journal.start_experiment(eid)
        journal.record_raw(eid, v)
        journal.record_measurement(eid, analyze_cv(v), 4.55)  # inside 4.5-4.6 V
        journal.fail_experiment(eid, "analysis: chemically_irreversible (the return peak is 20% of the forward one)")
    rows = {r["id"]: r for r in json.loads(labloop("log", store, "--json").stdout)["experiments"]}
    assert (rows[eid]["status"], rows[eid]["potential_v"], rows[eid]["hit"]) == ("failed", 4.55, False)
    assert labloop("report", store, "-o", tmp_path / "report").returncode == 0
    with (tmp_path / "report" / "measurements.csv").open() as handle:
        said = {r["id"]: r["hit"] for r in csv.DictReader(handle)}
    best = next(r["id"] for r in rows.values() if r["smiles"] == BEST)
    assert (said[str(eid)], said[str(best)]) == ("", "yes")


def test_tables_show_the_best_molecule_first(labloop, store):
    proc = labloop("log", store)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "cathode-screen" in out and "done 3/30" in out and "hits 1" in out
    best_section = out[out.index("best so far (V vs Li/Li+)"):out.index("recent events")]  # its unit (a trial)
    first_row = next(line for line in best_section.splitlines() if re.match(r"│\s+1\s+│", line))
    assert BEST in first_row and "4.550" in first_row
    # the failed experiment's cause, on its row's one line: piped, rich would fold the table at 80 columns, and
    # a grep for a molecule would miss why it failed (a process of its own: pytest-xdist sets COLUMNS=80)
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    piped = subprocess.run([sys.executable, "-m", "labloop.orchestrator.cli.main", "log", store], env=env,
                           capture_output=True, text=True, check=True).stdout
    assert re.search(r"│\s+4 │ CCO\s+│ failed .*│ PumpStalled: analyte_pump: motor stall │", piped), piped
    measured = piped[piped.index("measurements"):piped.index("best so far")]
    best_row = next(line for line in measured.splitlines() if BEST in line)
    assert re.search(r"4\.50 ± 0\.20 \*\s+│\s+v1\s+│", best_row), best_row  # the prediction, 1 sd, by model v1
    # marked as the first batch's, predicted before any measurement, and said why its sd is wide (a trial: 6.42 ± 2.01
    # for a molecule measured at 4.58 alarmed a chemist)
    assert "* the first batch, predicted before any measurement: on the DFT prior's scale" in " ".join(measured.split())
    # one experiment is 'running' but no process holds the store (a crash, kill -9): said, with what to do
    assert "no run holds this journal" in " ".join(out.split())
    with sole_runner(store):
        assert "no run holds this journal" not in labloop("log", store).stdout


def test_bad_stores_exit_2_with_one_line(labloop, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello " * 200)
    campaign = tmp_path / "campaign.yaml"  # a newcomer's first try: the campaign file, not its journal
    campaign.write_text("name: screen\nstore: runs/screen.db\n")
    marked = tmp_path / "marked.yaml"  # a campaign file that starts with YAML's document marker: not a list
    marked.write_text("---\nname: screen\n")
    protocol = tmp_path / "steps.yaml"  # a protocol file was called a campaign file too (a security trial)
    protocol.write_text("# the screen\n- load_sample\n- cv\n")
    dangling = tmp_path / "gone.db"  # a link to a journal that is not there: "created by another process just now"
    dangling.symlink_to(tmp_path / "elsewhere.db")
    for store, needle in ((tmp_path / "missing.db", "no such journal"), (text, "not a labloop journal"),
                          (tmp_path, "is a directory"),
                          (campaign, f"this looks like a campaign file, whose journal {tmp_path}/runs/screen.db (its "
                                     "`store`) is not written yet: `labloop run` it first"),
                          (protocol, "this looks like a protocol file (a list of steps): give a journal, the file a "
                                     "campaign's `store` names"),
                          (marked, f"this looks like a campaign file, whose journal {tmp_path}/runs/screen.db"),
                          (dangling, "no such journal")):
        proc = labloop("log", store)
        assert proc.returncode == 2 and proc.stdout == ""
        lines = proc.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["campaign.yaml", "gone.db", "marked.yaml", "notes.txt",
                                                          "steps.yaml"]


def test_a_near_miss_is_pointed_to_the_journal_beside_it(tmp_path, write_campaign, labloop):
    """A folder, a name without ``.db`` and the runner's lock file were each said not to be a journal, and nothing
    named the journal beside them (a newcomer's trial)."""
    campaign = write_campaign(tmp_path, name="screen", store="runs/screen.db", budget={"max_experiments": 1})
    assert labloop("run", campaign, "--dry-run").returncode == 0
    runs = tmp_path / "runs"
    (runs / "screen.db.lock").touch()  # the runner leaves it (orchestrator/journal/lock.py); empty when it did not
    for store, said in ((runs, "runs: is a directory, not a journal file (it holds screen.db: give that)"),
                        (runs / "screen", "screen: no such journal; screen.db in the same folder is a journal: give "
                                          "that"),
                        (runs / "screen.db.lock", "; screen.db in the same folder is a journal: give that")):
        proc = labloop("log", store)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and said in proc.stderr, proc.stderr
    shutil.copy(runs / "screen.db", runs / "other.db")
    proc = labloop("log", runs)
    assert "(it holds other.db, screen.db: give one of them)" in proc.stderr, proc.stderr
    proc = labloop("log", runs / ("s" * 254))  # no hint where the name with .db would be too long for the disk
    assert proc.returncode == 2 and proc.stderr.rstrip().endswith("no such journal"), proc.stderr
    proc = labloop("log", tmp_path)  # a folder without a journal in it: nothing to point to
    assert proc.stderr.rstrip().endswith("is a directory, not a journal file"), proc.stderr
    proc = labloop("log", campaign)  # the campaign file: its journal, which its `store` names (a newcomer's trial)
    assert proc.returncode == 2 and f"this looks like a campaign file: give its journal, {runs}/screen.db (its " \
        "`store`)" in proc.stderr, proc.stderr


@pytest.mark.parametrize(("column", "value", "says"), [
    ("sigma", -0.2, "holds -0.2, a negative standard deviation"),
    ("mu", "4.5 V", "holds '4.5 V', not a number"),
    ("acquisition", 9e999, "holds inf, not a finite number"),
])
def test_a_value_changed_by_hand_is_one_line_and_never_nan_in_json(labloop, store, column, value, says):
    """Text, a negative sigma or an infinity in a number column (a journal edited by hand or another tool) ended
    ``log`` with "a labloop bug", exit 1, and ``log --json`` printed ``Infinity``, which no JSON parser reads."""
    import sqlite3

    with sqlite3.connect(store) as db:
        db.execute(f"UPDATE proposals SET {column} = ? WHERE experiment_id = 2", (value,))
    for json_flag in ((), ("--json",)):
        proc = labloop("log", store, *json_flag)
        assert proc.returncode == 2 and proc.stdout == "", (json_flag, proc.stdout)
        assert proc.stderr.splitlines() == [f"error: {store}: the journal is damaged: proposals row of experiment 2, "
                                            f"column {column}, {says}; restore the file from a backup"]


def test_a_measurement_deleted_by_hand_is_said_as_damage(labloop, store, tmp_path):
    """A measurements row deleted by hand left a done experiment without its potential, and log, report and resume
    went on without it, nothing said (a data-integrity trial): the journal is damaged, one line naming the
    experiment, exit 2, for every command that opens it."""
    import sqlite3

    with sqlite3.connect(store) as db:
        done = [row[0] for row in db.execute("SELECT id FROM experiments WHERE state = 'done' ORDER BY id")]
        db.execute("DELETE FROM measurements WHERE experiment_id = ?", (done[1],))
    for args in (("log", store), ("log", store, "--json"), ("report", store, "-o", tmp_path / "report"),
                 ("resume", store)):
        proc = labloop(*args)
        assert proc.returncode == 2 and proc.stderr.splitlines() == [
            f"error: {store}: the journal is damaged: experiment {done[1]} is done but its measurement is gone (a row "
            "deleted by hand?); restore it from a backup"], (args, proc.stderr)
    assert not (tmp_path / "report").exists()


def test_follow_and_json_do_not_combine(labloop, store):
    proc = labloop("log", store, "--follow", "--json")
    assert proc.returncode == 2 and "--follow" in proc.stderr


#: an event message longer than a pipe's 80 columns: grep needs it on one line
LONG_NOTE = "the second scan's peak current is within 3% of the first, so the couple is taken as reversible"


def test_follow_shows_what_a_run_commits_and_stops_when_the_run_ends(store):
    """While a runner holds the store's lock, --follow shows each commit; once no run writes the journal it
    says so and exits by itself (it used to follow a finished campaign forever). Each followed line's time names
    its zone, as the tables' titles do: it was a bare time, which an operator following over SSH from another
    zone could not read (followed here in a zone 5:30 ahead of UTC, with no summer time)."""
    with sole_runner(store):  # as `labloop run` holds it
        env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}  # a pipe's default width, 80
        env["TZ"] = "IST-5:30"  # POSIX: UTC+5:30
        child = subprocess.Popen([sys.executable, "-m", "labloop.orchestrator.cli.main", "log", store, "--follow"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in child.stdout], daemon=True).start()

        shown: list[str] = []

        def wait_for(needle: str) -> None:
            deadline = time.monotonic() + 60  # liveness only
            while not any(needle in line for line in shown) and time.monotonic() < deadline:
                try:
                    shown.append(lines.get(timeout=0.5))
                except queue.Empty:
                    assert child.poll() is None, child.stderr.read()
            if not any(needle in line for line in shown):
                pytest.fail(f"{needle!r} never shown")

        try:
            wait_for(BEST)
            with Journal.open(store) as journal:
                (eid,) = journal.record_proposals([Proposal("OCCO")], step=1, planner="random")
                measure(journal, eid, 4.58, seed=5)
                journal.add_event("note", f"OCCO measured at 4.58 V; {LONG_NOTE}")
            wait_for("done 4/30")  # the counts as one line, then each new event as one line, however long
            wait_for(f"note  OCCO measured at 4.58 V; {LONG_NOTE}")
            [line] = [line for line in shown if f"note  OCCO measured at 4.58 V; {LONG_NOTE}" in line]
            assert re.fullmatch(r"\d\d-\d\d \d\d:\d\d:\d\d UTC\+5:30  note  OCCO .*\n", line), line
            assert any("recent events (times UTC+5:30)" in line for line in shown)  # the tables' words
            assert child.poll() is None  # still following while the run holds the store
            assert sum("recent events" in line for line in shown + list(lines.queue)) == 1  # not the tables again
        except BaseException:
            child.kill()
            raise
    try:
        assert child.wait(timeout=60) == 0
        assert "no run is writing this journal" in child.stderr.read()
    finally:
        child.kill()
        child.wait()


def test_follow_on_a_finished_campaign_shows_it_once_and_exits(labloop, store):
    proc = labloop("log", store, "--follow")
    assert proc.returncode == 0 and BEST in proc.stdout
    assert "stopped following" in proc.stderr


def test_log_says_when_it_hides_older_experiments(labloop, store):
    proc = labloop("log", store, "--last", "2")
    assert proc.returncode == 0 and "4 earlier experiments not shown: --last 6 shows all" in proc.stdout
    one = labloop("log", store, "--last", "5")
    assert one.returncode == 0 and "1 earlier experiment not shown: --last 6 shows all" in one.stdout
    assert "not shown" not in labloop("log", store).stdout


def test_the_tables_and_json_name_the_molecules_the_library_names(labloop, tmp_path, write_campaign):
    """A chemist's library names its molecules, and `labloop log` showed SMILES alone (a trial: names were in the
    report only). The library's name is a column of the measurements and best tables, shown as text (a name holding
    rich markup or a terminal escape is printed, not obeyed), and each experiment's `name` in --json; a molecule
    written again is named by its first row, whose molecule it is (the last row's name was shown, a trial); a
    library that names nothing keeps the tables as they were."""
    hostile = "[bold]bis(dimethylamino)benzene[/] \x1b[31mred"
    (tmp_path / "named.csv").write_text(f"smiles,Name\n{FAR},naphthalene\n{BEST},\"{hostile}\"\n{NEAR},o-toluidine\n"
                                        f"CCO,\nCCN,ethylamine\nCCC,propane\n{FAR},naphthalene (line 8)\n")
    campaign = write_campaign(tmp_path, library={"file": str(tmp_path / "named.csv")})
    path = tmp_path / "named.db"
    with Journal.create(path, load_campaign(campaign)) as journal:
        ids = journal.record_proposals([Proposal(s) for s in (FAR, BEST, NEAR, "CCO")], step=0, planner="random")
        for eid, potential, seed in zip(ids, (3.2, 4.55, 4.4), (1, 2, 3), strict=False):
            measure(journal, eid, potential, seed)
    data = json.loads(labloop("log", path, "--json").stdout)
    assert [r["name"] for r in data["experiments"]] == ["naphthalene", hostile, "o-toluidine", ""]
    assert [b["name"] for b in data["best"]] == [hostile, "o-toluidine", "naphthalene"]
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    out = subprocess.run([sys.executable, "-m", "labloop.orchestrator.cli.main", "log", path], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert "\x1b" not in out  # piped: no escape of rich's, and the name's own is not passed on
    for title, end in (("measurements", "best so far"), ("best so far", "recent events")):
        section = out[out.index(title):out.index(end)]
        assert re.search(r"┃ name\s+┃ smiles", section), section
        assert re.search(r"│ o-toluidine\s+│ Cc1ccccc1N\s+│", section), section
        assert "[bold]bis(dimethylamino)benzene[/]" in section  # the markup as written, not applied
    (tmp_path / "named.csv").unlink()  # a library moved away since: SMILES alone, the tables as before
    moved = subprocess.run([sys.executable, "-m", "labloop.orchestrator.cli.main", "log", path], env=env,
                           capture_output=True, text=True, check=True).stdout
    assert "┃ name" not in moved and BEST in moved


def test_a_long_name_is_cut_in_the_tables_and_kept_whole_in_json(labloop, tmp_path, write_campaign):
    """A library name of 5,000 characters (a note pasted into the name column) filled the approval table for screens
    (a security trial): the tables cut it at 80 characters; ``--json`` keeps it whole."""
    long_name = "tetrakis" + "(dimethylamino)" * 400
    (tmp_path / "named.csv").write_text(f"smiles,name\n{BEST},{long_name}\n{NEAR},o-toluidine\n")
    campaign = write_campaign(tmp_path, library={"file": str(tmp_path / "named.csv")},
                              planner={"kind": "random", "batch_size": 2, "approve": True})
    path = tmp_path / "long.db"
    with Journal.create(path, load_campaign(campaign)) as journal:
        journal.record_proposals([Proposal(BEST), Proposal(NEAR)], step=0, planner="random", awaiting_approval=True)
    assert [e["name"] for e in json.loads(labloop("log", path, "--json").stdout)["experiments"]] == [long_name,
                                                                                                   "o-toluidine"]
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    out = subprocess.run([sys.executable, "-m", "labloop.orchestrator.cli.main", "log", path], env={**env,
                         "COLUMNS": "400"}, capture_output=True, text=True, check=True).stdout
    waiting = out[out.index("awaiting approval"):]
    assert (long_name[:79] + "…") in waiting and long_name[:80] not in out


def test_a_journal_on_a_read_only_file_system_is_read(labloop, store, tmp_path):
    """A finished journal on a read-only mount could not be read ('it cannot be opened (permissions, ...)'): SQLite
    wants the -shm file a WAL journal's readers share, which it cannot make there (an operator's trial). Read as the
    immutable file it is there (no run can write it), log and report work; a resume is refused as before. A real
    read-only bind mount: root only."""
    archive = tmp_path / "archive"
    archive.mkdir()
    mounted = subprocess.run(["mount", "--bind", str(store.parent), str(archive)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {mounted.stderr.decode().strip()}")
    try:
        remounted = subprocess.run(["mount", "-o", "remount,ro,bind", str(archive)], capture_output=True)
        assert remounted.returncode == 0, remounted.stderr
        journal = archive / store.name
        shown = labloop("log", journal)
        assert shown.returncode == 0 and BEST in shown.stdout, shown.stderr
        assert labloop("report", journal, "-o", tmp_path / "report").returncode == 0
        refused = labloop("resume", journal)
        assert refused.returncode == 2 and "read-only medium" in refused.stderr
    finally:
        subprocess.run(["umount", "--lazy", str(archive)], check=True)  # even if a failed check left it busy


#: how long the parent waits for the child of :func:`_as_nobody` at each exchange before it kills it (s): never reached
#: unless the child hangs, which would otherwise hang the suite
CHILD_DEADLINE_S = 120


def _as_nobody(work, *steps):
    """Run ``work(say, wait)`` in a forked child as the unprivileged user 65534 and return what it said (one line per
    ``say(text)``); the parent runs ``steps`` in order, each while the child waits in ``wait()``. Why a fork: root may
    write anywhere, and the interpreter may lie where another user cannot run it. A child silent for
    :data:`CHILD_DEADLINE_S` is killed, and its lines end with ``child killed``."""
    said_r, said_w = os.pipe()
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            for end in (said_r, ready_r, go_w):
                os.close(end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)

            def wait() -> None:
                os.write(ready_w, b"r")
                os.read(go_r, 1)

            work(lambda text: os.write(said_w, f"{text}\n".encode()), wait)
        except BaseException as exc:  # whatever it was goes to the parent's assertion
            os.write(said_w, f"child failed: {type(exc).__name__}: {exc}\n".encode())
            code = 1
        finally:
            os._exit(code)
    for end in (said_w, ready_w, go_r):
        os.close(end)
    lines, killed = b"", False

    def read_until(fd: int) -> bytes:  # what ``fd`` gives next, reading the child's lines meanwhile; b"" at its end
        nonlocal lines, killed
        while True:
            ready, _, _ = select.select([fd, said_r] if fd != said_r else [said_r], [], [], CHILD_DEADLINE_S)
            if not ready:
                os.kill(pid, signal.SIGKILL)
                killed = True
                return b""
            if said_r in ready and fd != said_r:
                lines += os.read(said_r, 65536)
            if fd in ready:
                return os.read(fd, 65536)

    try:
        for step in steps:
            if not read_until(ready_r):  # the child ended early (what it said tells why) or hung
                break
            step()
            try:
                os.write(go_w, b"g")
            except BrokenPipeError:  # the child ended meanwhile: what it said tells why
                break
        while chunk := read_until(said_r):
            lines += chunk
    finally:
        for end in (go_w, said_r, ready_r):
            os.close(end)
        os.waitpid(pid, 0)
    return lines.decode().splitlines() + (["child killed"] if killed else [])


@pytest.mark.skipif(os.geteuid() != 0, reason="reads as another user: root only")
def test_a_journal_in_a_folder_this_user_cannot_write_is_read(store):
    """A finished journal in a folder the reader may not write (a student's campaign read by the group's PI) said "it
    is read-only ...; copy it somewhere writable": SQLite wants to make the -shm file a WAL journal's readers share (an
    unattended-PC trial). Where no run has it open it is read as a fixed file; once a run opens it (its -wal appears)
    the reader opens it again and sees what the run writes (the dashboard, ``log --follow``)."""
    shared = Path(tempfile.mkdtemp(prefix="labloop-test-", dir="/tmp"))  # the tests' TMPDIR is root's alone
    try:
        shared.chmod(0o755)
        path = shared / store.name
        shutil.copy(store, path)
        assert not path.with_name(f"{path.name}-wal").exists()
        holder: list[Journal] = []

        def read(say, wait):
            with Journal.open(path, readonly=True) as journal:
                say(" ".join(e.status for e in journal.experiments()))
                journal.data_version()
                wait()  # the owner's run opens the journal and fails experiment 5
                journal.data_version()
                say(" ".join(e.status for e in journal.experiments()))

        def run_opens_it():
            holder.append(Journal.open(path))
            holder[0].fail_experiment(5, "PumpStalled: analyte_pump: motor stall")

        said = _as_nobody(read, run_opens_it)
        assert said == ["done done done failed running proposed", "done done done failed failed proposed"], said
    finally:
        for journal in holder:
            journal.close()
        shutil.rmtree(shared)


def test_what_the_drivers_repeated_after_faults_is_said_per_experiment(labloop, tmp_path):
    """A scan the driver ran again after a timeout ran in a cell already scanned part way (its peak currents may read
    low); the run said so on its console alone, and log --json and the report showed nothing (a newcomer's trial)."""
    path = tmp_path / "retried.db"
    with Journal.create(path, load_campaign(EXAMPLE)) as journal:
        ids = journal.record_proposals([Proposal(s) for s in (BEST, NEAR)], step=0, planner="random")
        for eid, retried in zip(ids, ({"potentiostat": {"InstrumentTimeout": 1, "GarbledLine": 2}}, None),
                                strict=True):
            journal.start_experiment(eid)
            action = journal.start_action(eid, 1, "potentiostat", "cv", {"scan_rate_v_s": 0.1})
            journal.finish_action(action, "ok", {"scan_rate_v_s": 0.1, **({"retried": retried} if retried else {})})
            v = simulate_cv(*random_couple(np.random.default_rng(eid)), np.random.default_rng(eid))
            journal.record_raw(eid, v)
            journal.record_measurement(eid, analyze_cv(v), 4.55)
            journal.finish_experiment(eid)
    rows = {e["id"]: e for e in json.loads(labloop("log", path, "--json").stdout)["experiments"]}
    assert rows[ids[0]]["retried"] == {"potentiostat": {"InstrumentTimeout": 1, "GarbledLine": 2}}
    assert rows[ids[1]]["retried"] is None
    assert labloop("report", path, "-o", tmp_path / "report").returncode == 0
    with (tmp_path / "report" / "measurements.csv").open() as handle:
        said = {int(r["id"]): r["retried"] for r in csv.DictReader(handle)}
    assert said == {ids[0]: "potentiostat: GarbledLine x2, InstrumentTimeout x1", ids[1]: ""}  # as journalled: sorted


def test_vetoes_are_counted_apart_from_failures(labloop, tmp_path):
    """The header read "failed 3" for 2 vetoes and 1 experiment that really failed (an operator's trial counted 8 of
    9 as vetoes): vetoes are counted apart in the header and the report; ``--json`` keeps ``counts.failed`` (the
    journal's state, which the planner counts) and adds ``progress.vetoed``."""
    path = tmp_path / "vetoes.db"
    with Journal.create(path, load_campaign(EXAMPLE)) as journal:
        ids = journal.record_proposals([Proposal(s) for s in ("CCO", "CCN", "CCC")], step=0, planner="random",
                                       awaiting_approval=True)
        assert journal.approve(veto=ids[1:], by="test", batch=ids) == (ids[:1], ids[1:])
        journal.start_experiment(ids[0])
        journal.fail_experiment(ids[0], "PumpStalled: analyte_pump: motor stall")
    data = json.loads(labloop("log", path, "--json").stdout)
    assert data["progress"]["counts"]["failed"] == 3 and data["progress"]["vetoed"] == 2
    said = " ".join(labloop("log", path).stdout.split())
    assert " failed 1 vetoed 2 " in said, said
    assert labloop("report", path, "-o", tmp_path / "report").returncode == 0
    assert "failed 1, interrupted 0, vetoed 2)" in (tmp_path / "report" / "index.html").read_text()


def test_a_batch_awaiting_approval_is_shown_with_its_predictions(labloop, tmp_path):
    """A held batch was listed without predictions (only `log --json` had them, the event line cut long SMILES
    and gave no sd): a person deciding it sees each molecule whole with its prediction +/- 1 sd, the model and the
    planned conditions (a lab head's trial)."""
    path = tmp_path / "held.db"
    long_smiles = "O=C(O)c1c[nH]c2ccccc12"  # whole, where the event line cuts one at 40 characters
    with Journal.create(path, load_campaign(EXAMPLE)) as journal:
        version = journal.add_model_version(21000, {"ie_ev": {"mae": 0.2}})
        journal.record_proposals([Proposal("CCO")], step=0, planner="bayes", model_version=version)
        journal.record_proposals([Proposal(long_smiles, mu=4.54, sigma=0.21, conditions={"scan_rate_v_s": 0.25}),
                                  Proposal("CCN", mu=4.61, sigma=0.3)], step=1, planner="bayes",
                                 model_version=version, awaiting_approval=True)
    said = labloop("log", path)
    assert said.returncode == 0, said.stderr
    held = said.stdout[said.stdout.index("awaiting approval (labloop approve; predicted V vs Li/Li+)"):]
    held = held[:held.index("└")]  # the table's end
    rows = [" ".join(line.replace("│", " ").split()) for line in held.splitlines() if line.startswith("│")]
    assert rows[0].startswith(f"2 {long_smiles} 4.54 ± 0.21 v1 scan_rate_v_s 0.25"), held
    assert rows[1].startswith("3 CCN 4.61 ± 0.30 v1 scan_rate_v_s 0.1"), held
    assert len(rows) == 2  # experiment 1, not waiting, is not in it


def test_a_potential_just_outside_the_window_does_not_read_as_its_edge(labloop, tmp_path):
    """4.4995 V showed as ``4.500`` in the [4.50, 4.60] window of a log that said ``hits 0`` (a chemist's trial): a
    potential that rounds onto an edge it does not reach is shown with the digits that tell it apart; the edge itself,
    a hit, and any other potential keep 3 decimals; the journal's "done" event says it so too."""
    path = tmp_path / "edges.db"
    with Journal.create(path, load_campaign(EXAMPLE)) as journal:
        ids = journal.record_proposals([Proposal(s) for s in (FAR, BEST, NEAR, "CCO")], step=0, planner="random")
        for eid, potential, seed in zip(ids, (4.4995, 4.5, 4.6004, 4.55), (1, 2, 3, 4), strict=True):
            measure(journal, eid, potential, seed)
    shown = labloop("log", path, "--last", "4").stdout
    assert all(value in shown for value in ("4.4995", "4.500", "4.6004", "4.550")), shown
    assert "done: 4.4995 V vs Li/Li+" in shown  # the journal's event too
    assert "4.499 " not in shown and "4.600 " not in shown and json.loads(
        labloop("log", path, "--json").stdout)["progress"]["hits"] == 2


def test_json_says_when_the_journal_was_last_written_and_how_the_run_ended(labloop, store):
    """``progress.last_heard`` is the journal's newest write of any kind, an action's too (the dashboard said "nothing
    written for 25 s" from the last event, while a killed run's cv had journalled actions since: an operator's trial),
    and ``progress.ended_as`` says how the last run ended in one word, which the dashboard styles by."""
    with Journal.open(store) as journal:
        journal.add_event("run", "run started (dry run on emulators)")
        running = journal.experiments(states=(State.RUNNING,))[0].id
        time.sleep(0.01)  # the action a later millisecond than the event (times are kept to the ms: a CI run had both
        journal.start_action(running, 0, "potentiostat", "cv", {})  # in one, and could not tell which was newer)
        acted = journal.actions(running)[-1].started_at
    data = json.loads(labloop("log", store, "--json").stdout)
    assert data["events"][-1]["time"] < acted and data["progress"]["last_heard"] == acted
    assert data["progress"]["ended_as"] == "killed"
    with Journal.open(store) as journal:
        journal.add_event("unsafe", "NOT made safe after the run stopped: pump: no reply", data={"unsafe": ["pump"]})
    data = json.loads(labloop("log", store, "--json").stdout)
    assert data["progress"]["ended_as"] == "unsafe"
    with Journal.open(store) as journal:
        journal.add_event("run", "run started (dry run on emulators)")
        journal.add_event("stopped", "3 failed experiments in a row; campaign stopped (budget.max_consecutive_faults)")
        journal.add_event("unsafe", "NOT made safe after the run stopped: pump: no reply", data={"unsafe": ["pump"]})
    data = json.loads(labloop("log", store, "--json").stdout)
    assert data["progress"]["ended_as"] == "unsafe"
    assert data["progress"]["ended"].endswith("; NOT made safe after the run stopped: pump: no reply")
    with Journal.open(store) as journal:
        journal.add_event("run", "run started (dry run on emulators)")
        journal.add_event("stopped", "3 failed experiments in a row; campaign stopped (budget.max_consecutive_faults)")
    assert json.loads(labloop("log", store, "--json").stdout)["progress"]["ended_as"] == "stopped"


class _Clock:
    """The journal's clock (``store.now``) set by the test: ``at(seconds)`` after a start an hour ago, so each
    experiment lasts exactly what the test says and no test reads the wall clock's pace."""

    def __init__(self, monkeypatch, start_ago_s: float = 3600) -> None:
        from datetime import UTC, datetime, timedelta

        from labloop.orchestrator.journal import store as store_module

        self.start = datetime.now(UTC) - timedelta(seconds=start_ago_s)
        self.stamp = ""
        monkeypatch.setattr(store_module, "now", lambda: self.stamp)
        self.at(0)

    def at(self, seconds: float) -> str:
        from datetime import timedelta

        self.stamp = (self.start + timedelta(seconds=seconds)).isoformat(timespec="milliseconds")
        return self.stamp


def _lasting(journal: Journal, clock: _Clock, experiment_id: int, start_s: float, duration_s: float) -> None:
    """Experiment ``experiment_id`` run from ``start_s`` for ``duration_s`` seconds of the test's clock, measured."""
    clock.at(start_s)
    journal.start_experiment(experiment_id)
    v = simulate_cv(*random_couple(np.random.default_rng(experiment_id)), np.random.default_rng(experiment_id))
    journal.record_raw(experiment_id, v)
    journal.record_measurement(experiment_id, analyze_cv(v), 4.0)
    clock.at(start_s + duration_s)
    journal.finish_experiment(experiment_id)


def test_log_says_what_a_live_run_does_now_and_when_it_may_end(labloop, tmp_path, write_campaign, monkeypatch):
    """The header said how far a campaign was, not what the run was doing nor when it would end (an operator's request
    from a night shift). While a run holds the journal, --json's progress says the running experiment, its molecule
    and the protocol step open at an instrument (progress.now), the retrain in progress (progress.retraining) and
    the experiments left times the median duration of the recent ones (progress.eta_s), and the header says them
    in one line; nothing of it once no run holds the journal (a killed run's open step is not happening)."""
    from labloop.orchestrator import console
    from labloop.orchestrator.journal.view import local_time

    monkeypatch.setattr(console.out, "width", 400)  # the header's line unfolded
    (tmp_path / "named.csv").write_text(f"smiles,name\n{NEAR},o-toluidine\nCCO,\nCCN,\nCCC,\n{FAR},\n")
    campaign = load_campaign(write_campaign(tmp_path, library={"file": str(tmp_path / "named.csv")},
                                            budget={"max_experiments": 10}))
    clock = _Clock(monkeypatch)
    with Journal.create(campaign.store, campaign) as journal:
        journal.add_event("run", "run started (dry run on emulators)")
        ids = journal.record_proposals([Proposal(s) for s in ("CCO", "CCN", "CCC", NEAR, FAR)], step=0,
                                       planner="random")
        # finished at 200, 550 and 1000 s: the pace is the mean time between finishes, the first's from its start (the
        # whole loop's: the experiments alone said 8 s left 194 s from the end, a long-campaign trial): 1000 / 3 s
        for eid, start, lasted in zip(ids, (0, 300, 600), (200, 250, 400), strict=False):
            _lasting(journal, clock, eid, start, lasted)
        retrained = clock.at(1000)
        journal.add_event("retrain", "retraining round 1 on 3 measurements started",
                          data={"round": 1, "n_measurements": 3})
        clock.at(1010)
        journal.start_experiment(ids[3])
        journal.finish_action(journal.start_action(ids[3], 0, "analyte_pump", "dispense", {"volume_ml": 0.1}))
        cv = clock.at(1030)
        journal.start_action(ids[3], 1, "potentiostat", "cv", {"scan_rate_v_s": 0.1})

    with sole_runner(campaign.store):  # as `labloop run` holds it
        progress = json.loads(labloop("log", campaign.store, "--json").stdout)["progress"]
        header = " ".join(labloop("log", campaign.store).stdout.split())
    assert progress["now"] == {"doing": "experiment", "experiment_id": ids[3], "name": "o-toluidine", "smiles": NEAR,
                               "attempt": 1, "since": clock.at(1010),
                               "action": {"command": "cv", "instrument": "potentiostat", "step": 1, "since": cv}}
    assert progress["retraining"] == {"round": 1, "n_measurements": 3, "since": retrained}
    assert progress["eta"]["pace_s"] == pytest.approx(1000 / 3) and progress["eta"]["pace_of"] == 3
    assert progress["eta_s"] == pytest.approx(7 * 1000 / 3)
    assert progress["eta"]["experiments_left"] == 7 and progress["eta"]["max_hours_at"] is None
    assert (f"now: experiment {ids[3]} o-toluidine ({NEAR}): cv on potentiostat since {local_time(cv)}; retraining "
            f"model (round 1, since {local_time(retrained)}); about 38 min 53 s left at the recent pace (5 min 33 s "
            "per experiment, the mean of the last 3; an estimate)") in header, header

    with Journal.open(campaign.store) as journal:  # the retrain's model: no longer retraining
        journal.add_model_version(3, {})
    with sole_runner(campaign.store):
        progress = json.loads(labloop("log", campaign.store, "--json").stdout)["progress"]
    assert progress["retraining"] is None and progress["now"]["action"]["command"] == "cv"
    # no run holds the journal: a killed run's cv is not happening, nor its ETA
    progress = json.loads(labloop("log", campaign.store, "--json").stdout)["progress"]
    assert (progress["now"], progress["retraining"], progress["eta"], progress["eta_s"]) == (None, None, None, None)
    assert "now:" not in labloop("log", campaign.store).stdout


def test_a_live_run_that_waits_says_for_what_and_max_hours_is_said_when_it_comes_first(tmp_path, write_campaign,
                                                                                      monkeypatch):
    """A run that waits says for what, from the events the runner journals: a batch awaiting approval, outside active
    hours, a proposal waiting for a retrain (surrogate.wait_for_retrain); no ETA before 3 experiments are done; with
    budget.max_hours, whether it stops the run before the budget's experiments are done at the recent pace."""
    from datetime import datetime, timedelta

    from labloop.orchestrator.journal.view import live_line, local_time, snapshot

    campaign = load_campaign(write_campaign(tmp_path, budget={"max_experiments": 6, "max_hours": 1},
                                            planner={"kind": "random", "batch_size": 2, "approve": True}))
    clock = _Clock(monkeypatch, start_ago_s=50 * 60)  # 10 min left of the hour
    with Journal.create(campaign.store, campaign) as journal, sole_runner(campaign.store):
        journal.add_event("run", "run started (dry run on emulators)")

        def now() -> dict:
            return snapshot(journal)["progress"]

        assert now()["now"] == {"doing": "proposing", "since": None}
        proposed = clock.at(10)
        ids = journal.record_proposals([Proposal("CCO"), Proposal("CCN")], step=0, planner="random",
                                       awaiting_approval=True)
        assert now()["now"] == {"doing": "awaiting_approval", "experiments": ids, "since": proposed}
        assert live_line(now()) == (f"now: waiting for approval of experiments {ids[0]}, {ids[1]} (proposed "
                                    f"{local_time(proposed)}): labloop approve, or the dashboard")
        journal.approve(by="test", batch=ids)
        assert now()["now"] == {"doing": "between", "next": ids[0], "since": None}
        outside = clock.at(20)
        journal.add_event("waiting", "outside active hours 08:00-18:00; next experiment at 08:00")
        assert now()["now"] == {"doing": "waiting", "for": "active_hours", "since": outside,
                                "message": "outside active hours 08:00-18:00; next experiment at 08:00"}
        assert live_line(now()) == (f"now: waiting since {local_time(outside)}: outside active hours 08:00-18:00; "
                                    "next experiment at 08:00")
        clock.at(30)
        journal.start_experiment(ids[0])
        assert now()["now"]["doing"] == "experiment" and now()["now"]["action"] is None
        assert "between protocol steps (running since" in live_line(now())
        journal.fail_experiment(ids[0], "PumpStalled: analyte_pump: motor stall")
        for eid, start in zip((ids[1], *journal.record_proposals([Proposal("CCC")], step=1, planner="random")),
                              (100, 500), strict=True):
            _lasting(journal, clock, eid, start, 300)
        assert now()["eta"] is None and now()["now"] == {"doing": "proposing", "since": None}  # 2 done: no pace yet
        journal.add_event("retrain", "retraining round 1 on 2 measurements started",
                          data={"round": 1, "n_measurements": 2})
        waits = clock.at(900)
        journal.add_event("waiting", "proposal waits for the retrain in progress (surrogate.wait_for_retrain)")
        assert now()["now"]["for"] == "retrain" and now()["now"]["since"] == waits
        assert now()["retraining"]["round"] == 1
        [third] = journal.record_proposals([Proposal(FAR)], step=2, planner="random")
        assert now()["now"]["doing"] == "between"  # the proposal came: the wait is over
        _lasting(journal, clock, third, 1000, 300)
        eta = now()["eta"]
        deadline = (datetime.fromisoformat(campaign_created := journal.campaign_info().created_at)
                    + timedelta(hours=1)).isoformat(timespec="milliseconds")
        assert campaign_created == clock.at(0)
        # finished at 400, 800 and 1300 s (the first began at 100): 300, 400 and 500 s apart; 3 left at 400 s each:
        # 20 min, past the hour's last 10 min
        # the first retrain still runs: the pace holds none, said (a newcomer's trial: "about 3 s left" 34 s from the
        # end while the run waited for it)
        assert eta == {"seconds": 1200, "pace_s": 400, "pace_of": 3, "experiments_left": 3,
                       "max_hours_at": deadline, "first": "max_hours", "untimed_retrain": True}
        assert live_line(now()).endswith("about 20 min 0 s left at the recent pace (6 min 40 s per experiment, the "
                                         "mean of the last 3; an estimate), plus the retrain in progress, which no "
                                         "finished one has timed yet, but budget.max_hours stops the run first, at "
                                         f"{local_time(deadline)}")
        journal.add_event("model", "model version 2 (retraining round 1)", data={"version": 2})
        assert now()["retraining"] is None and not now()["eta"]["untimed_retrain"]
        assert "no finished one has timed" not in live_line(now())


def test_the_eta_spans_a_retraining_cycle():
    """With retrain_every 10 the pace's last 10 gaps held no retrain while the run waited for one, and "about 6 s left"
    stood 97 s from the end (an operator's trial): the mean spans retrain_every + 1 gaps, so it holds the last retrain's
    wait once there was one."""
    from datetime import UTC, datetime, timedelta
    from types import SimpleNamespace

    from labloop.orchestrator.journal.view import _eta

    start = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
    gaps = [10] * 3 + [100] + [10] * 10  # a retrain's wait after the 3rd experiment, then ten ordinary ones
    finishes = [sum(gaps[:n + 1]) for n in range(len(gaps))]
    done = [SimpleNamespace(id=n, status=State.DONE, started_at=(start + timedelta(seconds=f - 5)).isoformat(),
                            finished_at=(start + timedelta(seconds=f)).isoformat()) for n, f in enumerate(finishes)]
    events = [{"kind": "run", "time": start.isoformat()}]
    plain = _eta(done, {"max_experiments": 30}, start.isoformat(), events)
    cycle = _eta(done, {"max_experiments": 30}, start.isoformat(), events, cycle=10)
    assert plain["pace_of"] == 10 and plain["pace_s"] == pytest.approx(10)
    assert cycle["pace_of"] == 11 and cycle["pace_s"] == pytest.approx((100 + 10 * 10) / 11)


def test_the_eta_leaves_out_the_time_a_stop_and_resume_fall_in():
    """The pace is the mean time between finishes: a retrain or a proposal counts as often as it comes (a median
    dropped them, a newcomer's trial: "about 4 s left" 30 s from the end), but a stop and resume (a run's start
    between two finishes) is no part of it."""
    from datetime import UTC, datetime, timedelta
    from types import SimpleNamespace

    from labloop.orchestrator.journal.view import _eta

    start = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)

    def at(seconds: float) -> str:
        return (start + timedelta(seconds=seconds)).isoformat(timespec="milliseconds")

    finishes = (10, 20, 30, 60, 70, 5000, 5010)  # a retrain before the 4th; a stop and a resume before the 6th
    done = [SimpleNamespace(id=n, status=State.DONE, started_at=at(0 if n == 0 else finishes[n - 1] + 1),
                            finished_at=at(f))
            for n, f in enumerate(finishes)]
    events = [{"kind": "run", "time": at(0)}, {"kind": "run", "time": at(4990)}]
    eta = _eta(done, {"max_experiments": 17}, at(0), events)
    assert eta["pace_of"] == 6 and eta["pace_s"] == pytest.approx((10 + 10 + 10 + 30 + 10 + 10) / 6)
    assert eta["seconds"] == pytest.approx(10 * 80 / 6)
    # a run started between every two finishes (each experiment its own resume): no pace, no estimate (it said the
    # pace was "under 1 s")
    every = [{"kind": "run", "time": at(f - 5)} for f in finishes]
    assert _eta(done, {"max_experiments": 17}, at(0), every) is None


def test_the_eta_of_a_zero_latency_dry_run_says_under_a_second(tmp_path, write_campaign, monkeypatch):
    """A zero-latency dry run's experiments take milliseconds: its ETA said "about 0 s left at the recent pace
    (median 0 s per experiment ...)" while experiments were left, as if they took no time. What rounds to 0 s is
    said "under 1 s"; a pace under a second with many experiments left still adds up to seconds."""
    from labloop.orchestrator.journal.view import live_line, snapshot

    campaign = load_campaign(write_campaign(tmp_path, budget={"max_experiments": 40}))
    clock = _Clock(monkeypatch)
    with Journal.create(campaign.store, campaign) as journal, sole_runner(campaign.store):
        journal.add_event("run", "run started (dry run on emulators)")
        ids = journal.record_proposals([Proposal(s) for s in ("CCO", "CCN", "CCC")], step=0, planner="random")
        for n, eid in enumerate(ids):  # one after the other, 4 ms each
            _lasting(journal, clock, eid, 10 + 0.004 * n, 0.004)
        eta = snapshot(journal)["progress"]["eta"]
        assert (eta["pace_s"], eta["experiments_left"]) == (pytest.approx(0.004), 37)
        assert live_line(snapshot(journal)["progress"]).endswith(
            "; under 1 s left at the recent pace (under 1 s per experiment, the mean of the last 3; an estimate)")
        for n, eid in enumerate(journal.record_proposals([Proposal(s) for s in ("CCCC", "CCCO", "CCCN")], step=1,
                                                         planner="random")):
            _lasting(journal, clock, eid, 10.012 + 0.4 * n, 0.4)
        assert live_line(snapshot(journal)["progress"]).endswith(  # 34 left at 0.202 s (the mean of 6)
            "; about 7 s left at the recent pace (under 1 s per experiment, the mean of the last 6; an estimate)")


def test_the_best_tables_and_measurements_csv_mark_which_are_hits(labloop, store, tmp_path):
    """A PI's audit: the best-so-far tables of ``log`` and the report ranked molecules outside the 4.50-4.60 V window
    among the best, unmarked (4.609 V fifth), and a chemist ordering "the top 5" would have ordered non-hits. Each
    best table has a hit column with its legend, and measurements.csv a ``hit`` column beside the potential."""
    out = labloop("log", store).stdout
    best = out[out.index("best so far (V vs Li/Li+)"):out.index("recent events")]
    rows = {smiles: line for line in best.splitlines() for smiles in (BEST, NEAR, FAR) if f" {smiles} " in line}
    assert re.search(r"4\.550 │ yes │", rows[BEST]) and re.search(r"4\.400 │ no\s+│", rows[NEAR]), best
    assert "hit no: outside the objective (oxidation potential in [4.50, 4.60] V vs Li/Li+)" in " ".join(best.split())
    assert labloop("report", store, "-o", tmp_path / "report").returncode == 0
    page = " ".join((tmp_path / "report" / "index.html").read_text().split())
    assert "<th>V vs Li/Li+</th> <th>hit</th>" in page and "<td>4.550</td><td>yes</td>" in page
    assert "<td>4.400</td><td>no</td>" in page
    assert "hit: yes when the potential meets the objective (oxidation potential in [4.50, 4.60] V vs Li/Li+)" in page
    with (tmp_path / "report" / "measurements.csv").open() as handle:
        hits = {r["smiles"]: r["hit"] for r in csv.DictReader(handle)}
    assert (hits[BEST], hits[NEAR], hits[FAR]) == ("yes", "no", "no")


def test_every_kind_of_warning_a_script_may_sort_by_is_documented():
    """``log --json``'s warning events say what each is of (``data.warning``), for a script that sorts them without
    reading English: docs/outputs.md lists every kind the executor and the runner journal."""
    documented = (Path(__file__).resolve().parents[2] / "docs" / "outputs.md").read_text()
    assert all(f" {kind}" in documented for kind in (*WARNINGS, "reference_label")), WARNINGS


@pytest.mark.parametrize(("signum", "code", "said"), [(signal.SIGINT, 0, ""),
                                                      (signal.SIGTERM, 130, "aborted (SIGTERM)")])
def test_a_ctrl_c_ends_following_and_a_kill_is_said_as_one(store, stopped_by, signum, code, said):
    """Ctrl-C is how one stops following (exit 0); a kill, once it stopped labloop's short commands as a Ctrl-C does,
    ended --follow with 0 and no word too, which a supervisor read as success (a reviewer's finding): 130, said."""
    with sole_runner(store):  # a run is live: --follow goes on until it is stopped
        child = subprocess.Popen([sys.executable, "-m", "labloop.orchestrator.cli.main", "log", store, "--follow"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for line in child.stdout:  # liveness: the first table shown, then stop it
            if BEST in line:
                break
        returncode, _, err = stopped_by(child, signum)
    assert returncode == code and err.strip().splitlines()[-1:] == ([said] if said else []), err


@pytest.mark.parametrize("command", ["log", "report"])
def test_the_help_says_what_store_is(command, labloop):
    # README.md alone said that STORE is the journal, the .db file (a newcomer's trial)
    shown = labloop(command, "--help")
    assert shown.returncode == 0 and "STORE is the journal, the .db file the campaign's `store` names" in " ".join(
        shown.stdout.split()), shown.stdout
