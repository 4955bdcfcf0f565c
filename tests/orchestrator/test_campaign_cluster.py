"""Campaigns on a Dask cluster (issue 15): ``greedy`` over the library's shards on a real LocalCluster proposes
what the in-memory planner proposes, with each model version's shards beside the store; a real ``dask
scheduler`` killed mid-run (also while a retrain predicts the library) stops the run (exit 1, one line, a
``cluster_lost`` event and its alert, journal intact) and a resume on a restarted scheduler finishes with the
uninterrupted run's proposals; a scheduler that does not answer is bad input."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from labloop.orchestrator.cli.main import main
from labloop.orchestrator.journal.store import Journal, State
from labloop.orchestrator.learning.models import predictions_dir
from labloop.orchestrator.learning.predictions import LibraryPredictions
from labloop.surrogate import compute
from labloop.surrogate.library_pipeline import ModelPayload

#: greedy, 6 experiments in batches of 2, one retrain after 3 that the next proposal waits for
SECTIONS = {"planner": {"kind": "greedy", "batch_size": 2}, "budget": {"max_experiments": 6},
            "surrogate": {"preset": "fast", "folds": 2, "epochs": 2, "retrain_every": 3, "wait_for_retrain": True}}


def proposals(store: Path) -> list[tuple[int, str, int]]:
    """(step, molecule, model version) of every experiment, in the order they were proposed."""
    with Journal.open(store, readonly=True) as journal:
        return [(e.step, e.smiles, e.model_version) for e in journal.experiments()]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """One folder for every store of this module: the prior model is trained once, cached beside them."""
    return tmp_path_factory.mktemp("cluster-campaigns")


@pytest.fixture(scope="module")
def reference(folder, write_campaign) -> list[tuple[int, str, int]]:
    """The uninterrupted campaign's proposals, in this process (the library's 200 rows: no cluster)."""
    campaign_file = write_campaign(folder, prior=True, shared_prior=True, name="memory", **SECTIONS)
    assert main(["run", str(campaign_file), "--dry-run"]) == 0
    assert not predictions_dir(folder / "memory.db").exists()
    found = proposals(folder / "memory.db")
    assert len(found) == 6 and {v for _, _, v in found} == {1, 2}, found
    return found


@pytest.mark.slow
def test_a_campaign_on_a_local_cluster_proposes_from_shards_what_memory_does(folder, reference, write_campaign,
                                                                              labloop):
    campaign_file = write_campaign(folder, prior=True, shared_prior=True, name="local", **SECTIONS)
    result = labloop("run", campaign_file, "--dry-run", "--scheduler", "local")
    assert result.returncode == 0, result.stderr
    assert "Dask LocalCluster" in result.stderr and "dashboard http://127.0.0.1:" in result.stderr
    assert proposals(folder / "local.db") == reference
    with Journal.open(folder / "local.db", readonly=True) as journal:
        versions = journal.model_versions()
    assert [v.version for v in versions] == [1, 2]
    for version in versions:  # every version proposed from its own shards, the whole library in them
        shards = sorted((predictions_dir(folder / "local.db")
                         / f"model-{ModelPayload.from_directory(version.weights_path).version}").glob("*.parquet"))
        frame = pd.concat([pq.read_table(p).to_pandas() for p in shards], ignore_index=True)
        assert frame["row"].tolist() == list(range(200)) and "descriptor_heavy_atoms" in frame
    # validate says where the predictions would run
    shown = labloop("validate", campaign_file, "--dry-run", "--scheduler", "local")
    assert shown.returncode == 0 and "Dask LocalCluster" in shown.stdout, shown.stderr


def _stop(processes: list[subprocess.Popen]) -> None:
    for proc in processes:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _done(store: Path) -> int:
    if not store.exists():
        return 0
    with Journal.open(store, readonly=True) as journal:
        return len(journal.experiments(states=(State.DONE,)))


def _resume_on_a_new_cluster(labloop, dask_command, wait_for_cluster, port: int, log: Path, store: Path,
                             reference: list[tuple[int, str, int]]) -> None:
    """Start the scheduler again at the same address, resume ``store`` on it, and check the campaign finished
    with exactly the proposals of the uninterrupted run (``reference``)."""
    second = _cluster(dask_command, wait_for_cluster, port, log)
    try:
        resumed = labloop("resume", store)
    finally:
        _stop(second)
    assert resumed.returncode == 0, resumed.stderr
    assert proposals(store) == reference


def _cluster(dask_command, wait_for_cluster, port: int, log: Path) -> list[subprocess.Popen]:
    """``dask scheduler`` on 127.0.0.1:``port`` and one single-threaded ``dask worker`` (no nanny), once the worker
    has joined."""
    processes = [dask_command("scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard",
                              log=log.with_suffix(".scheduler.log")),
                 dask_command("worker", f"tcp://127.0.0.1:{port}", "--nthreads", "1", "--no-nanny", "--no-dashboard",
                              "--host", "127.0.0.1", log=log.with_suffix(".worker.log"))]
    try:
        wait_for_cluster(f"tcp://127.0.0.1:{port}", 1)
    except BaseException:
        _stop(processes)
        raise
    return processes


@pytest.mark.slow
def test_a_scheduler_killed_mid_run_exits_1_and_a_resume_finishes_as_if_uninterrupted(
        folder, reference, write_campaign, labloop, free_port, dask_command, wait_for_cluster):
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    campaign_file = write_campaign(folder, prior=True, shared_prior=True, name="remote",
                                   compute={"scheduler": address}, **SECTIONS)
    store = folder / "remote.db"
    first = _cluster(dask_command, wait_for_cluster, port, folder / "first")
    # validate says the scheduler answered, and how large its cluster is (a Dask trial: it said the address only)
    shown = labloop("validate", campaign_file, "--dry-run")
    assert shown.returncode == 0 and "(it answered: 1 worker, 1 thread)" in " ".join(shown.stdout.split()), shown
    run = subprocess.Popen([sys.executable, "-m", "labloop.orchestrator.cli.main", "run", str(campaign_file),
                            "--dry-run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while _done(store) < 1:  # the first batch came from the cluster's shards; the next one needs it
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()
            time.sleep(0.05)
        first[0].send_signal(signal.SIGKILL)
        _, stderr = run.communicate(timeout=300)
    finally:
        _stop(first)
        if run.poll() is None:
            run.kill()
    assert run.returncode == 1, stderr
    assert stderr.count(f"Dask cluster {address} (1 worker, 1 thread); dashboard") == 1, stderr  # its size, once
    lost = [line for line in stderr.splitlines() if "Dask cluster went away" in line]
    assert len(lost) == 1 and f"labloop resume {store}" in lost[0], stderr
    assert "run again" not in lost[0] and "the same command" not in lost[0]  # resume, the one advice (a trial)
    assert "Traceback" not in stderr
    with Journal.open(store, readonly=True) as journal:
        assert journal.events()[-1].kind == "cluster_lost"
        # the advice is the event's, which its alert and the dashboard show (they said the stop without it: a trial)
        assert f"then `labloop resume {store}`" in journal.events()[-1].data["advice"]
        assert lost[0].endswith(journal.events()[-1].data["advice"]), lost[0]
        assert not journal.experiments(states=(State.RUNNING, State.INTERRUPTED))
    done_before = _done(store)
    assert 1 <= done_before < 6
    assert not [p for p in predictions_dir(store).rglob("*") if p.is_file() and p.suffix != ".parquet"]

    _resume_on_a_new_cluster(labloop, dask_command, wait_for_cluster, port, folder / "second", store, reference)


@pytest.mark.slow
def test_a_scheduler_killed_while_a_retrain_predicts_is_a_cluster_lost_stop_and_a_resume_finishes(
        folder, reference, write_campaign, labloop, free_port, dask_command, wait_for_cluster, monkeypatch):
    """The newcomer's finding: the scheduler killed during a background retrain; once the client gave up
    reconnecting and closed, the retrain's predictions failed on it (AttributeError, a page of traceback,
    ``retrain_failed``) and the next proposal too ("unexpected AttributeError ... a labloop bug"), with no
    ``cluster_lost`` event and so no alert. The kill happens as the retrain starts predicting the library, which
    then waits for the client to close, as it had when the newcomer's longer retrain finished."""
    monkeypatch.setattr(compute, "CONNECT_TIMEOUT_S", 2)  # the client's reconnect timeout too: closes in 2 s
    port = free_port()
    campaign_file = write_campaign(folder, prior=True, shared_prior=True, name="retrain-lost",
                                   compute={"scheduler": f"tcp://127.0.0.1:{port}"},
                                   alerts=[f"json://127.0.0.1:{free_port()}/nobody"], **SECTIONS)
    store = folder / "retrain-lost.db"
    first = _cluster(dask_command, wait_for_cluster, port, folder / "retrain-first")
    prepare, killed = LibraryPredictions.prepare, []

    def kill_then_prepare(self: LibraryPredictions, loaded: object, check: object = None) -> object:
        if check is not None and not killed:  # the retrain's predictions (the prior's are made with no check)
            first[0].send_signal(signal.SIGKILL)
            killed.append(first[0].wait())
            deadline = time.monotonic() + 60
            while self.client.status != "closed":
                assert time.monotonic() < deadline, "the client never gave up on its scheduler"
                time.sleep(0.05)
        return prepare(self, loaded, check)

    monkeypatch.setattr(LibraryPredictions, "prepare", kill_then_prepare)
    try:
        result = labloop("run", campaign_file, "--dry-run")
    finally:
        _stop(first)
    assert killed, "the retrain never predicted the library: the test proved nothing"
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "labloop bug" not in result.stderr, result.stderr
    lost = [line for line in result.stderr.splitlines() if "Dask cluster went away" in line]
    assert len(lost) == 1 and f"labloop resume {store}" in lost[0], result.stderr
    assert "stopped answering" in lost[0], lost[0]
    with Journal.open(store, readonly=True) as journal:
        kinds = [e.kind for e in journal.events()]
        assert not journal.experiments(states=(State.RUNNING, State.INTERRUPTED))
    assert "retrain_failed" not in kinds and "cluster_lost" in kinds, kinds
    assert kinds[kinds.index("cluster_lost") + 1:] == ["alert_failed"], kinds  # the alert was sent (nobody heard)

    _resume_on_a_new_cluster(labloop, dask_command, wait_for_cluster, port, folder / "retrain-second", store, reference)


@pytest.mark.parametrize("where", ["campaign", "option"])
def test_a_scheduler_that_does_not_answer_is_exit_2_in_validate_and_run_with_nothing_written(
        where, tmp_path, write_campaign, labloop, monkeypatch, free_port):
    monkeypatch.setattr(compute, "CONNECT_TIMEOUT_S", 2)
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    extra = {"compute": {"scheduler": address}} if where == "campaign" else {}
    campaign_file = write_campaign(tmp_path, prior=True, **SECTIONS, **extra)
    option = ["--scheduler", address] if where == "option" else []
    for command in ("validate", "run"):
        result = labloop(command, campaign_file, "--dry-run", *option)
        assert result.returncode == 2, result.stderr
        # the campaign file's line and field when it names the address (a trial: neither was said)
        where_said = f"{campaign_file}:" if where == "campaign" else ""
        assert re.match(rf"error: {re.escape(where_said)}(\d+: compute\.scheduler: )?nothing listens at "
                        rf"127\.0\.0\.1:{port} \(connection refused\)", result.stderr), result.stderr
        assert ("compute.scheduler" in result.stderr) == (where == "campaign"), result.stderr
        # the file's address, which a resume reads from its journal: the way to another cluster is said (a trial)
        assert ("or compute elsewhere this time: --scheduler tcp://HOST:PORT, local or none" in result.stderr) == (
            where == "campaign"), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml"]
    bad = labloop("run", campaign_file, "--dry-run", "--scheduler", "tcp://nowhere")
    assert bad.returncode == 2 and "--scheduler" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_a_scheduler_without_workers_is_exit_2_in_validate_and_run_naming_the_worker_command(
        tmp_path, write_campaign, labloop, monkeypatch, free_port, dask_command, wait_for_cluster):
    """A trial's fresh ``dask scheduler`` with no worker: ``run`` waited ~40 s and stopped as a cluster that "went
    away", ``validate`` called it fine. Both now say at connect that it has no workers and how to start one."""
    monkeypatch.setattr(compute, "WORKER_GRACE_S", 1)
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = dask_command("scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard",
                             log=tmp_path.parent / f"{tmp_path.name}.scheduler.log")
    try:
        wait_for_cluster(address)
        campaign_file = write_campaign(tmp_path, prior=True, **SECTIONS)
        for command in ("validate", "run"):
            result = labloop(command, campaign_file, "--dry-run", "--scheduler", address)
            assert result.returncode == 2, result.stderr
            assert result.stderr.startswith(f"error: the Dask scheduler at {address} has no workers"), result.stderr
            # bound as docs/scaling.md says (a trial: the hint left out --host, so its worker listened everywhere)
            assert f"`dask worker {address} --nthreads 1 --nworkers N --host HOST --no-dashboard`" in result.stderr
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr
            assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml"]
    finally:
        _stop([scheduler])


def test_a_worker_running_another_labloop_is_refused_in_one_line_naming_it(
        tmp_path, write_campaign, labloop, monkeypatch, free_port, dask_command, wait_for_cluster, older_labloop):
    """A trial's worker with an older labloop failed on its first task and closed for good, and labloop said nothing;
    another trial's, with changed source files, computed other predictions under a warning, and the run used them.
    Here three real ``dask worker`` processes: one runs this labloop; one this labloop on a PATH without ``git``,
    which can name only the package version (it was warned of, a trial); one an older copy of labloop's source
    files first on its path, with metadata saying 0.0.1 (as an older installation would). ``validate`` refuses the
    cluster in one line naming the older alone, by its address and name, with exit 2."""
    from distributed import Client

    from labloop.core.version import code_version

    no_git = tmp_path / "no-git-bin"
    no_git.mkdir()
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = tmp_path.parent / f"{tmp_path.name}-logs"
    logs.mkdir()
    worker = ("worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard", "--host", "127.0.0.1", "--name")
    processes = [dask_command("scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard",
                              log=logs / "scheduler.log"),
                 dask_command(*worker, "current", log=logs / "current.log")]
    monkeypatch.setenv("PATH", str(no_git))
    processes.append(dask_command(*worker, "no-git", log=logs / "no-git.log"))
    monkeypatch.undo()
    monkeypatch.setenv("PYTHONPATH", str(older_labloop))
    processes.append(dask_command(*worker, "older", log=logs / "older.log"))
    monkeypatch.delenv("PYTHONPATH")
    try:
        wait_for_cluster(address, 3)
        with Client(address, set_as_default=False) as client:
            older = next(addr for addr, info in client.scheduler_info()["workers"].items() if info["name"] == "older")
            no_git_says = client.run(code_version, workers=[next(
                addr for addr, info in client.scheduler_info()["workers"].items() if info["name"] == "no-git")])
        result = labloop("validate", write_campaign(tmp_path, prior=True, **SECTIONS), "--dry-run", "--scheduler",
                         address)
    finally:
        _stop(processes)
    assert list(no_git_says.values()) == [code_version().split(" (git ")[0]]  # it could not name its commit
    assert result.returncode == 2, result.stderr
    assert result.stderr == (f"error: {older} (older) runs labloop 0.0.1 with other source files; this labloop is "
                             f"{code_version()}: tasks there could fail or compute other numbers, so the cluster is "
                             "not used: stop that worker and start every worker from the same labloop installation "
                             "(or commit) as the one that uses them\n"), result.stderr


def test_workers_that_cannot_say_their_labloop_are_named_and_all_alike_is_silence():
    """A labloop older than labloop.core.version cannot answer ``client.run(code_identity)``: its worker's answer is
    the exception, named as such; the source digest decides, not the version string (one worker says no commit,
    one another's source under our version); workers grouped by what they said; none named when all run ours."""
    ours = ("0.2.0 (git abc1234)", "d1")
    assert compute.other_labloops(ours, {"tcp://a:1": ours, "tcp://e:1": ("0.2.0", "d1")}) is None
    said = compute.other_labloops(ours, {"tcp://a:1": ours, "tcp://c:1": ("0.1.0", "d0"), "tcp://b:1": ("0.1.0", "d0"),
                                         "tcp://f:1": ("0.2.0 (git abc1234)", "d2"),
                                         "tcp://d:1": ModuleNotFoundError("No module named 'labloop.core.version'"),
                                         # as Dask wraps what a worker without labloop raised (a Dask trial)
                                         "tcp://g:1": Exception('ModuleNotFoundError("No module named \'labloop\'")')})
    assert said == ("tcp://b:1, tcp://c:1 run labloop 0.1.0 with other source files; tcp://f:1 runs labloop 0.2.0 "
                    "(git abc1234) with other source files; tcp://g:1 cannot say which labloop it runs "
                    "(ModuleNotFoundError: No module named 'labloop'); tcp://d:1 cannot say which labloop it runs "
                    "(ModuleNotFoundError: No module named 'labloop.core.version'); this labloop is 0.2.0 (git "
                    "abc1234): tasks there could fail or compute other numbers, so the cluster is not used: stop "
                    "those workers and start every worker from the same labloop installation (or commit) as the one "
                    "that uses them")


def test_parquet_and_smi_libraries_are_checked_before_the_first_byte(tmp_path, write_campaign, labloop):
    examples = Path(__file__).resolve().parents[2] / "examples"
    smiles = pd.read_csv(examples / "library.csv")["smiles"]
    truth = {"truth": {"from": "ie_ea", "solvent": "acn", "file": str(examples / "library.csv")}}
    (tmp_path / "library.smi").write_text("".join(f"{s} mol{i}\n" for i, s in enumerate(smiles)))
    pd.DataFrame({"smiles": smiles}).to_parquet(tmp_path / "library.parquet")
    for name in ("library.smi", "library.parquet"):
        good = labloop("validate", write_campaign(tmp_path, library={"file": str(tmp_path / name)}, world=truth),
                       "--dry-run")
        assert good.returncode == 0 and "(200 molecules)" in " ".join(good.stdout.split()), good.stderr
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really parquet")
    pd.DataFrame({"smi": smiles}).to_parquet(tmp_path / "other.parquet")
    for name, needle in (("broken.parquet", "not a readable Parquet file"), ("other.parquet", "no column 'smiles'")):
        bad = labloop("validate", write_campaign(tmp_path, library={"file": str(tmp_path / name)}, world=truth),
                      "--dry-run")
        assert bad.returncode == 2 and needle in bad.stderr and "library.file" in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr


def test_a_resume_without_the_scheduler_the_last_run_used_says_so(tmp_path, write_campaign, labloop):
    """``--scheduler`` is no part of the campaign, so a resume without it ran elsewhere than the run it continues
    (a LocalCluster on a shared host, after a run on the lab's scheduler) without a word (a trial)."""
    campaign_file = write_campaign(tmp_path, budget={"max_experiments": 1})
    assert labloop("run", campaign_file, "--dry-run", "--scheduler", "none").returncode == 0
    same = labloop("resume", tmp_path / "tiny.db", "--max-experiments", "2", "--scheduler", "none")
    assert same.returncode == 0 and "note: the last run used" not in same.stderr, same.stderr
    resumed = labloop("resume", tmp_path / "tiny.db", "--max-experiments", "3")
    assert resumed.returncode == 0, resumed.stderr
    assert "note: the last run used --scheduler none; this one goes by compute.scheduler (default auto): give " \
           "--scheduler none to run there again" in " ".join(resumed.stderr.split()), resumed.stderr
