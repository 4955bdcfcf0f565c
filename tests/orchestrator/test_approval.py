"""The approval gate (`planner.approve: true`): each proposed batch waits as `awaiting_approval` until a
person approves it or vetoes molecules (`labloop approve STORE --batch ID... [--veto ID]...`); a veto fails the
experiment and counts against the molecule for the planner; the state machine refuses what it must; a run killed with
SIGKILL while it waits resumes waiting; a version-1 journal is upgraded in place."""

from __future__ import annotations

import json
import shlex
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import pytest

from labloop.core.errors import IllegalTransition, JournalError, NotAwaitingApproval
from labloop.core.text import shell_word
from labloop.orchestrator.compose import build_executor, build_rig
from labloop.orchestrator.config.campaign import load_campaign
from labloop.orchestrator.journal.store import (
    APPLICATION_ID,
    EXPERIMENTS_TABLE,
    SCHEMA,
    SCHEMA_VERSION,
    Journal,
    State,
)
from labloop.orchestrator.loop.interrupts import Interrupts
from labloop.orchestrator.loop.runner import Runner
from labloop.planners import PlannerState
from labloop.surrogate.dataset import read_table

CLI = [sys.executable, "-m", "labloop.orchestrator.cli.main"]


@dataclass(frozen=True)
class Proposal:
    smiles: str
    conditions: dict = field(default_factory=lambda: {"scan_rate_v_s": 0.1})
    mu: float | None = None
    sigma: float | None = None
    acquisition: float | None = None


def _wait_for(predicate, what: str, process: subprocess.Popen | None = None) -> None:
    """Poll until ``predicate()``; fails (instead of hanging) if ``process`` died or 300 s pass."""
    deadline = time.monotonic() + 300
    while not predicate():
        if process is not None and process.poll() is not None:
            pytest.fail(f"the run ended before {what}: {process.stderr.read().decode()[-2000:]}")
        assert time.monotonic() < deadline, f"no {what} after 300 s"
        time.sleep(0.05)


def _waiting(store) -> list[int]:
    if not store.exists():
        return []
    with Journal.open(store, readonly=True) as journal:
        return [e.id for e in journal.experiments(states=(State.AWAITING_APPROVAL,))]


def test_state_machine_of_the_gate(tmp_path, write_campaign):
    campaign = load_campaign(write_campaign(tmp_path))
    with Journal.create(campaign.store, campaign) as journal:
        with pytest.raises(NotAwaitingApproval, match="no experiment is awaiting approval"):
            journal.approve(by="test")
        ids = journal.record_proposals([Proposal("CCO"), Proposal("CCN"), Proposal("CCC")], step=0,
                                       planner="random", awaiting_approval=True)
        assert [e.status for e in journal.experiments()] == ["awaiting_approval"] * 3
        with pytest.raises(IllegalTransition, match="awaiting_approval; it cannot become running"):
            journal.start_experiment(ids[0])
        with pytest.raises(NotAwaitingApproval, match="experiment 99 is not awaiting approval"):
            journal.approve([ids[1], 99], by="test")
        assert [e.status for e in journal.experiments()] == ["awaiting_approval"] * 3  # nothing changed
        with pytest.raises(NotAwaitingApproval, match=f"the batch waiting is {ids[0]}, {ids[1]}, {ids[2]}, not the "
                                                      f"{ids[0]}, {ids[1]} decided on"):
            journal.approve(by="test", batch=ids[:2])  # a page showing another batch (an older one)
        assert [e.status for e in journal.experiments()] == ["awaiting_approval"] * 3
        assert journal.approve([ids[1]], by="test", batch=ids[::-1]) == ([ids[0], ids[2]], [ids[1]])
        rows = {e.id: e for e in journal.experiments()}
        assert rows[ids[0]].status == rows[ids[2]].status == "proposed"
        assert rows[ids[1]].status == "failed" and rows[ids[1]].cause.startswith("vetoed")
        assert journal.start_experiment(ids[0]) == 1  # approved experiments run as usual
        assert journal.events()[-2].kind == "approved"


def test_a_version_1_journal_is_upgraded_when_opened_for_writing(tmp_path):
    old_table = EXPERIMENTS_TABLE.replace("'awaiting_approval', ", "")
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(SCHEMA.replace(EXPERIMENTS_TABLE, old_table))
    conn.execute("INSERT INTO campaign VALUES (1, 'old', 1, 'x', '{}', NULL, '2025-01-01T00:00:00')")
    conn.execute("INSERT INTO experiments (smiles, state, created_at) VALUES ('CCO', 'done', '2025-01-01')")
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()
    with Journal.open(path, readonly=True) as reader:  # reading does not change the file
        assert [e.smiles for e in reader.experiments()] == ["CCO"]
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 1
    with Journal.open(path) as journal:
        ids = journal.record_proposals([Proposal("CCN")], step=0, planner="random", awaiting_approval=True)
        assert [e.status for e in journal.experiments()] == ["done", "awaiting_approval"] and ids == [2]
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_runner_waits_for_each_batch_and_a_veto_counts_against_the_molecule(tmp_path, write_campaign, labloop):
    campaign = load_campaign(write_campaign(tmp_path, planner={"kind": "random", "batch_size": 2, "approve": True},
                                            budget={"max_experiments": 3}))
    library = read_table(campaign.library.file).smiles
    decisions: list[tuple[list[int], list[int]]] = []

    def person() -> None:
        for veto_first in (True, False):  # batch of 2 with one veto: 1 done; then 2 more: the budget of 3
            _wait_for(lambda: _waiting(campaign.store), "batch awaiting approval")
            waiting = _waiting(campaign.store)
            named = [arg for i in waiting for arg in ("--batch", i)]
            # who and why, journalled (a lab head's trial found neither)
            args = ["--veto", waiting[0], *named, "--by", "alice", "--reason", "too like experiment 1"] if veto_first \
                else []
            if veto_first:  # a decision on no named batch is refused, naming the batch to look at (an operator's
                unnamed = labloop("approve", campaign.store, "--veto", waiting[0])  # trial approved one so)
                assert unnamed.returncode == 2 and unnamed.stderr == (
                    f"error: labloop approve: name the batch you decide on, each id: "
                    f"{' '.join(f'--batch {i}' for i in waiting)} (the batch waiting now; `labloop log "
                    f"{campaign.store}` shows its molecules)\n"), unnamed.stderr
                assert _waiting(campaign.store) == waiting  # nothing decided
                garbled = labloop("approve", campaign.store, *args[:-1], "two\nlines")
                assert garbled.returncode == 2 and "--reason" in garbled.stderr and _waiting(campaign.store) == waiting
            if not veto_first:  # the batch looked at: an older one is refused, this one decided
                stale = labloop("approve", campaign.store, "--batch", waiting[0] - 1)
                assert stale.returncode == 2 and "the batch waiting is" in stale.stderr, stale.stderr
                listed = labloop("approve", campaign.store, "--batch", *waiting)  # ids after one --batch: refused
                assert listed.returncode == 2 and listed.stderr == (
                    f"error: labloop approve: unexpected {waiting[1]}: give one --batch or --veto per id, e.g. "
                    "--batch 3 --batch 4\n"), listed.stderr
                args = [arg for i in waiting for arg in ("--batch", i)]
            result = labloop("approve", campaign.store, *args)
            decisions.append((waiting, result.stdout))

    with build_rig(campaign, dry_run=True) as rig, Journal.create(campaign.store, campaign) as journal, \
            Interrupts() as interrupts:
        runner = Runner(campaign, journal, rig, build_executor(campaign, rig), library, None,
                        interrupts)
        helper = threading.Thread(target=person, daemon=True)
        helper.start()
        assert runner.run() == 0
        helper.join(timeout=60)
        experiments = {e.id: e for e in journal.experiments()}
        vetoed = decisions[0][0][0]
        assert experiments[vetoed].status == "failed" and experiments[vetoed].cause.startswith("vetoed")
        assert experiments[vetoed].cause.endswith("by a person (alice with labloop approve): too like experiment 1")
        decided = [e for e in journal.events() if e.kind == "approved"]
        assert (decided[0].data["by"], decided[0].data["reason"]) == ("alice with labloop approve",
                                                                    "too like experiment 1")
        assert decided[0].message.endswith("; why: too like experiment 1")
        assert decided[1].data["by"].endswith(" with labloop approve") and decided[1].data["reason"] is None
        assert experiments[vetoed].attempt == 0 and not journal.actions(vetoed)  # never touched the rig
        assert sum(e.status == "done" for e in experiments.values()) == 3
        assert len({e.smiles for e in experiments.values()}) == len(experiments)  # a vetoed molecule never returns
        assert not journal.experiments(states=(State.AWAITING_APPROVAL, State.PROPOSED))
        kinds = [e.kind for e in journal.events()]
        assert kinds.count("awaiting_approval") == kinds.count("approved") == 2
        _, state = journal.latest_planner_state()
        failures = {o.smiles: o.failure for o in PlannerState.from_dict(state).observations}
        assert failures[experiments[vetoed].smiles] == "analysis"  # counts against the molecule
    assert decisions[0][1].startswith("approved") and f"vetoed {vetoed}" in decisions[0][1]
    assert labloop("approve", campaign.store).returncode == 2  # nothing waits any more: one line, exit 2


def test_a_batch_approved_while_no_run_holds_the_journal_says_how_it_gets_measured(tmp_path, write_campaign, labloop):
    """Approved after its run was stopped, a batch read as measured now (a security trial: "approved 13, 14, 16",
    exit 0, and nothing ran them): a note names the resume that measures them."""
    campaign = load_campaign(write_campaign(tmp_path, planner={"kind": "random", "batch_size": 2, "approve": True}))
    with Journal.create(campaign.store, campaign) as journal:
        ids = journal.record_proposals([Proposal("CCO"), Proposal("CCN")], step=0, planner="random",
                                       awaiting_approval=True)
    result = labloop("approve", campaign.store, *[arg for i in ids for arg in ("--batch", i)])
    assert result.returncode == 0 and result.stdout.startswith(f"approved {ids[0]}, {ids[1]}")
    assert result.stderr == (f"note: no run holds {campaign.store.name} now: `labloop resume {campaign.store}` "
                             "measures the approved ones\n")


def _event_kinds(store) -> list[str]:
    if not store.exists():
        return []
    with Journal.open(store, readonly=True) as journal:
        return [e.kind for e in journal.events()]


def test_kill_9_while_waiting_then_resume_waits_again(tmp_path, write_campaign):
    folder = tmp_path / "Lab Data"  # a space in the store's path: the command the line gives is pasted as it is
    folder.mkdir()
    campaign_file = write_campaign(folder, planner={"kind": "random", "batch_size": 2, "approve": True},
                                   budget={"max_experiments": 2})
    store = folder / "tiny.db"
    run = subprocess.Popen([*CLI, "run", str(campaign_file), "--dry-run"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
    # kill only once the runner has said it waits (the batch is recorded a moment before the event is)
    _wait_for(lambda: _waiting(store) and "awaiting_approval" in _event_kinds(store), "batch awaiting approval", run)
    waiting = _waiting(store)
    with Journal.open(store, readonly=True) as journal:
        message = next(e.message for e in journal.events() if e.kind == "awaiting_approval")
        held = {e.id: e for e in journal.experiments(states=(State.AWAITING_APPROVAL,))}
    # works from any folder, and names the batch as the CLI takes it (one --batch per id)
    batch = " ".join(f"--batch {i}" for i in waiting)
    assert f"labloop approve {shell_word(store.absolute())} {batch} [--veto ID]..." in message
    pasted = shlex.split(message[message.index("labloop approve ") + len("labloop approve "):message.index(" [--veto")])
    # and what is to be decided on, which the alert carries (ids alone, an operator's trial): each molecule
    assert all(f"{i}: {held[i].smiles[:39]}" in message for i in waiting), message
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert _waiting(store) == waiting  # the held batch survives the crash as it was

    resumed = subprocess.Popen([*CLI, "resume", str(store)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    with Journal.open(store, readonly=True) as journal:
        _wait_for(lambda: [e.kind for e in journal.events()].count("awaiting_approval") == 2,
                  "the resumed run waiting", resumed)
    approve = subprocess.run([*CLI, "approve", *pasted], capture_output=True, text=True, check=False)
    assert approve.returncode == 0 and "no run holds" not in approve.stderr, approve.stderr
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err.decode()
    with Journal.open(store, readonly=True) as journal:
        assert [e.id for e in journal.experiments(states=(State.DONE,))] == waiting


def test_a_journal_written_before_alerts_and_approval_existed_is_the_same_campaign(tmp_path, write_campaign):
    campaign = load_campaign(write_campaign(tmp_path))
    Journal.create(campaign.store, campaign).close()
    conn = sqlite3.connect(campaign.store, isolation_level=None)
    config = json.loads(conn.execute("SELECT config_json FROM campaign").fetchone()[0])
    del config["alerts"], config["planner"]["approve"]  # what an older labloop stored
    conn.execute("UPDATE campaign SET config_json = ?", (json.dumps(config),))
    conn.close()
    with Journal.create(campaign.store, campaign) as journal:  # `labloop run` on the same file continues it
        assert journal.campaign_info().config == config
    with pytest.raises(JournalError, match=r"with other settings, seed: \d+ in the journal, 99 here"):
        Journal.create(campaign.store, campaign.model_copy(update={"seed": 99}))


def test_a_journal_that_stored_whole_number_choices_as_floats_is_the_same_campaign(tmp_path, write_campaign):
    """A labloop before whole-number choices stored ``{choices: [1, 2, 3]}`` as 1.0, 2.0, 3.0: the same file run
    again is that campaign (compared as values), not one "with other settings" that names no setting."""
    conditions = {"scan_rate_v_s": [0.05, 0.5], "n_scans": {"choices": [1, 2, 3]}}
    campaign = load_campaign(write_campaign(tmp_path, conditions=conditions))
    Journal.create(campaign.store, campaign).close()
    conn = sqlite3.connect(campaign.store, isolation_level=None)
    config = json.loads(conn.execute("SELECT config_json FROM campaign").fetchone()[0])
    assert config["conditions"]["n_scans"]["choices"] == [1, 2, 3]
    config["conditions"]["n_scans"]["choices"] = [1.0, 2.0, 3.0]
    conn.execute("UPDATE campaign SET config_json = ?", (json.dumps(config),))
    conn.close()
    with Journal.create(campaign.store, campaign) as journal:
        assert journal.campaign_info().config["conditions"]["n_scans"]["choices"] == [1.0, 2.0, 3.0]


def test_the_approve_syntax_the_readme_and_the_runner_show_is_the_one_click_takes() -> None:
    """The README showed ``[--batch ID ...]``; ``--batch 1 2 3`` then failed with "Got unexpected extra arguments
    (2 3)": click takes one id per option. Every ``labloop approve`` line of the README, with ``[X]...`` read as X
    given twice, ``[X]`` as X given once, and ``ID`` as an id, must parse."""
    import re
    import shlex
    from pathlib import Path

    from labloop.orchestrator.cli.dashboard import approve

    root = Path(__file__).resolve().parents[2]
    readme = "\n".join(p.read_text() for p in (root / "README.md", *sorted((root / "docs").glob("*.md"))))
    lines = [line.split("#")[0] for line in readme.splitlines() if line.startswith("labloop approve ")]
    assert lines
    for line in lines:
        expanded = re.sub(r"\[([^\]]+)\]\.\.\.", r"\1 \1", line)
        expanded = re.sub(r"\[([^\]]+)\]", r"\1", expanded).replace("ID", "7").replace("STORE", "x.db")
        args = shlex.split(expanded)[2:]
        context = approve.make_context("approve", args)
        assert context.params["store"].name == "x.db" and not context.args, line  # no id beside an option
        assert context.params["batch"], line  # the batch decided on is named (required)


def test_a_runs_summary_counts_vetoes_apart_from_failures(tmp_path, write_campaign, capsys):
    """A run's last line said "(+ 9 failed, ...)" where 8 were vetoes (an operator's trial): a veto is a person's
    decision, not a failure of the molecule's measurement."""
    from labloop.orchestrator.cli.run import _summary

    campaign = load_campaign(write_campaign(tmp_path, planner={"kind": "random", "batch_size": 2, "approve": True}))
    with Journal.create(campaign.store, campaign) as journal:
        ids = journal.record_proposals([Proposal("CCO"), Proposal("CCN")], step=0, planner="random",
                                       awaiting_approval=True)
        journal.approve(ids, by="test", batch=ids)
        capsys.readouterr()
        _summary(campaign, journal)
    budget = campaign.budget.max_experiments
    assert capsys.readouterr().err.startswith(f"{campaign.name}: 0/{budget} experiments done (+ 2 vetoed, which the "
                                              "budget does not count), 0 hits; journal ")
