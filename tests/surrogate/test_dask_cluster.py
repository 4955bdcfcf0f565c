"""The pipeline on real Dask clusters: a ``LocalCluster`` labloop starts, and a ``dask scheduler`` with two
``dask worker`` processes on 127.0.0.1 started here, one of them killed mid-run; bad addresses and a
scheduler that dies mid-run end in one clear line."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from labloop.core.errors import ClusterLostError, SchedulerAddressError
from labloop.planners.base import Observation, PlannerState
from labloop.planners.conditions import ConditionSpace
from labloop.planners.feedback import CalibratedModel, Calibration, DescriptorTable
from labloop.planners.shard_pool import ShardPoolPlanner, describe
from labloop.surrogate import compute
from labloop.surrogate.compute import dask_client, normalise_address
from labloop.surrogate.library_pipeline import predict_library


@pytest.fixture(scope="module")
def library(ocelot, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lib") / "library.csv"
    smiles = ocelot["smiles"].iloc[1000:1150].tolist()
    smiles[7] = "not-a-smiles"
    pd.DataFrame({"smiles": smiles}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def reference(tiny_model_dir, library, tmp_path_factory) -> pd.DataFrame:
    """The in-process pipeline's predictions, which every cluster must reproduce."""
    shards = predict_library(library, tiny_model_dir, tmp_path_factory.mktemp("ref"), chunk_size=15)
    return pd.concat(shards.frames(), ignore_index=True)


def assert_same_predictions(frame: pd.DataFrame, reference: pd.DataFrame) -> None:
    """Every row once, in library order, with the in-process predictions (float32 rounding at most)."""
    assert frame["row"].tolist() == list(range(len(reference)))
    assert frame[["smiles", "canonical", "valid"]].equals(reference[["smiles", "canonical", "valid"]])
    numbers = [c for c in reference.columns if c.endswith(("_mean", "_std"))]
    np.testing.assert_allclose(frame[numbers].to_numpy(), reference[numbers].to_numpy(), rtol=1e-6)


@pytest.mark.slow
def test_local_cluster_predicts_what_the_process_does_and_scores_shards(tiny_model_dir, library, reference,
                                                                         tmp_path):
    from labloop.orchestrator.learning.models import ObjectiveModel
    from labloop.surrogate.persistence import load_ensemble

    announced: list[str] = []
    with dask_client(n_workers=2, announce=announced.append) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        shards = predict_library(library, tiny_model_dir, tmp_path, client=client, chunk_size=15,
                                 describe=describe)
        assert_same_predictions(pd.concat(shards.frames(), ignore_index=True), reference)
        assert predict_library(library, tiny_model_dir, tmp_path, client=client, chunk_size=15,
                               describe=describe).n_predicted == 0
        # the planner scores the shards on the workers and proposes what it proposes here
        state = PlannerState("bayes", seed=1, step=1, observations=(
            Observation(reference["smiles"][0], {}, 3.2, quality=0.9),))
        planners = [ShardPoolPlanner("bayes", lambda version: shards, "ie_ev", ConditionSpace({}), goal="maximize",
                                     acquisition="ei", shortlist=2, client=c) for c in (client, None)]
        on_workers, here = (p.propose(state, 3, _FixedModel()) for p in planners)
        assert [p.smiles for p in on_workers] == [p.smiles for p in here] and len(here) == 3
        # calibrated on measurements (with a failure), Thompson batches: the same on the workers too
        model = CalibratedModel(ObjectiveModel(load_ensemble(tiny_model_dir), 1, "oxidation_potential"),
                                measured := _measured(reference), DescriptorTable())
        state = PlannerState("bayes", seed=2, step=3, observations=measured)
        planners = [ShardPoolPlanner("bayes", lambda version: shards, "ie_ev", ConditionSpace({}), goal="window",
                                     acquisition="window_probability", window_v=(4.0, 4.2), shortlist=20,
                                     batch="thompson", client=c) for c in (client, None)]
        on_workers, here = (p.propose(state, 4, model) for p in planners)
        assert [(p.smiles, p.mu) for p in on_workers] == [(p.smiles, p.mu) for p in here] and len(here) == 4
        # another process (another account of the machine) cannot use the cluster, which runs its scheduler in
        # labloop's own process: not plainly, nor with a certificate of its own
        assert client.scheduler.address.startswith("tls://127.0.0.1:")
        tried = subprocess.run([sys.executable, "-c", _INTRUDER, client.scheduler.address], capture_output=True,
                               text=True)
        assert tried.stdout.split() == ["refused"] * 3, (tried.stdout, tried.stderr[-2000:])
    assert len(announced) == 1 and "LocalCluster, 2 workers" in announced[0]
    assert "dashboard http://127.0.0.1:" in announced[0]


#: ``dask scheduler`` with its arguments in a process that cannot import labloop, as one from a plain Dask image
_SCHEDULER_WITHOUT_LABLOOP = """
import importlib.abc, sys
class NoLabloop(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "labloop" or name.startswith("labloop."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NoLabloop())
from distributed.cli.dask_scheduler import main
sys.argv[0] = "dask-scheduler"
main()
"""

#: connects to the scheduler at argv[1] without the cluster's certificate, then with one of its own, then by TLS with
#: no certificate and no check of the server's (which a server not asking for the client's would accept); says how
_INTRUDER = """
import socket, ssl, sys
from urllib.parse import urlsplit
from distributed import Client
from distributed.security import Security
own = Security.temporary()
for address, security in ((sys.argv[1].replace("tls://", "tcp://"), None), (sys.argv[1], own)):
    try:
        Client(address, security=security, timeout=5).close()
        print("connected")
    except Exception:
        print("refused")
where = urlsplit(sys.argv[1])
context = ssl.create_default_context()
context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
try:
    with socket.create_connection((where.hostname, where.port), timeout=5) as raw:
        with context.wrap_socket(raw) as tls:
            print("connected" if tls.recv(8) else "refused")  # a Dask server greets at once
except (OSError, ssl.SSLError):
    print("refused")
"""


def _measured(reference: pd.DataFrame) -> tuple[Observation, ...]:
    """Ten measured molecules (potential: the surrogate's IE - 1.40 + 1.5 V + a size term) and a failed one."""
    rows = reference[reference["valid"]].iloc[20:31]
    potentials = rows["ie_ev_mean"] - 1.40 + 1.5 + 0.01 * rows["smiles"].str.len()
    return (*(Observation(s, {}, float(v), quality=0.9) for s, v in zip(rows["smiles"][:10], potentials[:10],
                                                                      strict=True)),
            Observation(rows["smiles"].iloc[10], {}, None, failure="analysis"))


class _FixedModel:
    """The planner's view of model version 1 with no measurement calibration yet."""

    version = 1
    calibration = Calibration(0)


def _wait(condition, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def cluster(tmp_path, free_port, dask_command, wait_for_cluster
            ) -> Iterator[tuple[str, subprocess.Popen, list[subprocess.Popen]]]:
    """``dask scheduler`` and two single-threaded ``dask worker`` processes (no nanny: a killed worker stays
    dead) on 127.0.0.1: (address, scheduler, workers)."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = dask_command("scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard",
                      log=tmp_path / "scheduler.log")
    workers = [dask_command("worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard", "--host", "127.0.0.1",
                     "--name", f"w{k}", log=tmp_path / f"worker{k}.log") for k in range(2)]
    try:
        wait_for_cluster(address, 2)
        yield address, scheduler, workers
    finally:  # killed, not terminated: a worker whose scheduler is gone let a SIGTERM wait out the 10 s given it
        for proc in (*workers, scheduler):
            if proc.poll() is None:
                proc.kill()
            proc.wait()


@pytest.mark.slow
def test_scheduler_and_two_workers_one_killed_mid_run(cluster, tiny_model_dir, library, reference, tmp_path):
    address, _, workers = cluster
    client = compute.connect(address)
    try:
        client.wait_for_workers(2, timeout=180)
        names = {info["name"]: addr for addr, info in client.scheduler_info()["workers"].items()}
        killed: dict[str, int] = {}

        def kill_w0_once(_: int) -> None:
            # at the first progress report that finds w0 with work in hand (the scheduler may leave it idle
            # for a moment between chunks): kill it then, so its chunks must be re-run elsewhere
            busy = len(client.processing().get(names["w0"], ()))
            if not killed and busy:
                killed["tasks"] = busy
                workers[0].send_signal(signal.SIGKILL)
                workers[0].wait()

        shards = predict_library(library, tiny_model_dir, tmp_path, client=client, chunk_size=15,
                                 progress=kill_w0_once)
        assert killed.get("tasks", 0) >= 1, "w0 was idle when killed: the test proved nothing"
        assert list(client.scheduler_info()["workers"]) == [names["w1"]]
    finally:
        client.close()
    assert shards.n_predicted == shards.n_rows == len(reference)
    assert_same_predictions(pd.concat(shards.frames(), ignore_index=True), reference)


@pytest.mark.slow
def test_a_frozen_worker_is_said_and_waited_for(cluster, tiny_model_dir, library, reference, tmp_path, monkeypatch,
                                                caplog):
    """A frozen worker neither answers nor dies (``kill -STOP``: swapping, a machine asleep), so nothing failed, and a
    trial's ``surrogate predict`` sat at 20411 of 21411 for over 5 minutes without a word. No chunk finishing for the
    floor (here 6 s, for the test) is said, naming the worker the chunk in flight is on; the job waits, and finishes
    with the predictions of an undisturbed run once the worker runs again. (On a busy machine a slow chunk of the
    other worker may be said too, before the freeze or beside it: each silent stretch once.) Then the scheduler
    frozen: the warning asked it where the chunks were before it said anything, unbounded, so the case it is for went
    unsaid (a reviewer's probe); the question is bounded, and says the scheduler did not answer."""
    from labloop.surrogate import library_pipeline

    monkeypatch.setattr(library_pipeline, "CHUNK_STALL_FLOOR_S", 6.0)
    monkeypatch.setattr(library_pipeline, "CHUNK_STALL_FACTOR", 3.0)
    monkeypatch.setattr(library_pipeline, "ASK_SCHEDULER_S", 2.0)  # how long the frozen scheduler is waited for
    address, scheduler, workers = cluster
    client = compute.connect(address)
    said = threading.Event()

    class Told(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "no chunk has finished on the Dask cluster" in record.getMessage():
                said.set()

    told = Told()
    logging.getLogger(library_pipeline.__name__).addHandler(told)
    try:
        client.wait_for_workers(2, timeout=180)
        names = {info["name"]: addr for addr, info in client.scheduler_info()["workers"].items()}
        frozen: list[str] = []
        done = [0]

        def freeze_w0_once(molecules: int) -> None:
            # once both workers run warm (their first chunk loads the model), and w0 has work in hand
            done[0] += molecules
            if not frozen and done[0] >= 45 and client.processing().get(names["w0"]):
                frozen.append(names["w0"])
                workers[0].send_signal(signal.SIGSTOP)
                # w1 finishes every other chunk; then only w0's is in flight, and the cluster is quiet
                threading.Thread(target=lambda: (said.wait(120), workers[0].send_signal(signal.SIGCONT)),
                                 daemon=True).start()

        shards = predict_library(library, tiny_model_dir, tmp_path, client=client, chunk_size=15,
                                 progress=freeze_w0_once)
        future = client.submit(time.sleep, 60, pure=False)
        _wait(lambda: any(future.key in held for held in client.processing().values()), "the task on a worker")
        watch = library_pipeline._StallWatch(client, {future: None})
        assert watch._where((future,)).startswith("on tcp://127.0.0.1:")  # the scheduler answers: the worker named
        scheduler.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            unanswered = watch._where((future,))
            waited = time.monotonic() - started
        finally:
            scheduler.send_signal(signal.SIGCONT)
    finally:
        logging.getLogger(library_pipeline.__name__).removeHandler(told)
        if workers[0].poll() is None:
            workers[0].send_signal(signal.SIGCONT)
        client.close()
    assert frozen, "w0 never had work in hand: the test proved nothing"
    warned = [r.getMessage() for r in caplog.records if "no chunk has finished on the Dask cluster" in r.getMessage()]
    assert any(frozen[0] in w and "may be frozen" in w for w in warned), warned
    assert shards.n_predicted == shards.n_rows == len(reference)
    assert_same_predictions(pd.concat(shards.frames(), ignore_index=True), reference)
    assert unanswered == f"the scheduler did not say on which workers: no answer within " \
                         f"{library_pipeline.ASK_SCHEDULER_S:g} s", unanswered
    assert waited >= library_pipeline.ASK_SCHEDULER_S  # it did wait for an answer, then gave up


@pytest.mark.slow
def test_every_worker_killed_at_once_the_model_is_sent_again_to_the_next(cluster, tiny_model_dir, library, reference,
                                                                         tmp_path, dask_command):
    """Both workers killed together took the model scattered to them along, the scheduler cancelled every chunk, and
    the run stopped as "the Dask cluster went away" while their nannies had them back within a second (a Dask
    trial). The model is sent again once a worker is there, the chunks in flight run again, and the predictions are
    those of an undisturbed run."""
    address, _, workers = cluster
    client = compute.connect(address)
    try:
        client.wait_for_workers(2, timeout=180)
        killed: dict[str, int] = {}

        def kill_both_once(_: int) -> None:
            if killed:
                return
            # at the first chunk's end the others submitted with it (10 chunks, 4 in flight) are still on the
            # workers, running or holding their results: the kill takes them, whatever the machine's load
            on_workers = {key for keys in (*client.processing().values(), *client.has_what().values())
                          for key in keys if str(key).startswith("predict-")}
            killed["tasks"] = len(on_workers)
            for worker in workers:
                worker.send_signal(signal.SIGKILL)
                worker.wait()
            # as a nanny, or a batch system, brings one back (the fixture kills it at the end)
            workers.append(dask_command("worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                                        "--host", "127.0.0.1", "--name", "w2", log=tmp_path / "worker2.log"))

        shards = predict_library(library, tiny_model_dir, tmp_path, client=client, chunk_size=15,
                                 progress=kill_both_once)
        assert killed.get("tasks", 0) >= 1, "no chunk was on the workers when both were killed: the test proved nothing"
        assert [info["name"] for info in client.scheduler_info()["workers"].values()] == ["w2"]
    finally:
        client.close()
    assert shards.n_predicted == shards.n_rows == len(reference)
    assert_same_predictions(pd.concat(shards.frames(), ignore_index=True), reference)


@pytest.mark.slow
def test_a_worker_with_other_package_versions_is_warned_of_in_one_line(tmp_path, free_port, dask_command,
                                                                       wait_for_cluster, monkeypatch, caplog):
    """labloop compared the workers' labloop source files alone, while the docs ask for the same dependencies
    everywhere (another RDKit or TensorFlow can featurise or predict otherwise: a Dask operator's trial), and Dask's
    own table of differing packages came before labloop's lines. A real worker whose numpy says 0.0.1 (its metadata
    first on its path) is named in one warning, with the version here; Dask's table is not shown."""
    import logging
    import warnings
    from importlib import metadata

    fake = tmp_path / "fake" / "numpy-0.0.1.dist-info"
    fake.mkdir(parents=True)
    (fake / "METADATA").write_text("Metadata-Version: 2.1\nName: numpy\nVersion: 0.0.1\n")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = dask_command("scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard",
                             log=tmp_path / "scheduler.log")
    monkeypatch.setenv("PYTHONPATH", str(fake.parent))
    worker = dask_command("worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard", "--host", "127.0.0.1",
                          "--name", "odd", log=tmp_path / "worker.log")
    monkeypatch.delenv("PYTHONPATH")
    try:
        with warnings.catch_warnings():  # the fixture's own client is Dask's plain one, which warns with its table
            warnings.simplefilter("ignore")
            wait_for_cluster(address, 1)
        with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING, logger="labloop"):
            warnings.simplefilter("always")
            compute.connect(address).close()
    finally:
        for proc in (worker, scheduler):
            proc.kill()
            proc.wait()
    said = [r.getMessage() for r in caplog.records if "packages are not this machine's" in r.getMessage()]
    assert len(said) == 1, [r.getMessage() for r in caplog.records]
    assert re.search(rf"numpy 0\.0\.1 on tcp://127\.0\.0\.1:\d+ \(odd\) \({re.escape(metadata.version('numpy'))} "
                     r"here\)", said[0]), said[0]
    assert "rdkit" not in said[0] and "tensorflow" not in said[0]  # the same there
    assert not [w for w in caught if type(w.message).__name__ == "VersionMismatchWarning"]


def _lost_with_both_workers(cluster, tiny_model_dir: Path, library: Path, tmp_path: Path
                            ) -> pytest.ExceptionInfo[ClusterLostError]:
    """The :class:`ClusterLostError` of a library prediction on ``cluster`` whose two workers are killed together
    while a chunk is on them (no nanny brings them back)."""
    address, _, workers = cluster
    client = compute.connect(address)
    try:
        client.wait_for_workers(2, timeout=180)

        def kill_both(_: int) -> None:
            if any(client.processing().values()) and all(w.poll() is None for w in workers):
                for worker in workers:
                    worker.send_signal(signal.SIGKILL)
                    worker.wait()

        with pytest.raises(ClusterLostError) as lost:
            predict_library(library, tiny_model_dir, tmp_path, client=client, chunk_size=15, progress=kill_both)
    finally:
        client.close()
    return lost


@pytest.mark.slow
def test_workers_that_keep_dying_are_said_so_not_a_cluster_gone(cluster, tiny_model_dir, library, tmp_path,
                                                                 monkeypatch):
    """Workers killed again and again (their nannies restarting them) ended the run "the Dask cluster went away (its
    scheduler cancelled a task)" while the scheduler ran throughout (a Dask trial): once the model's resends are spent
    (none here), the line says that the workers keep dying."""
    from labloop.surrogate import library_pipeline

    monkeypatch.setattr(library_pipeline, "MODEL_RESENDS", 0)
    lost = _lost_with_both_workers(cluster, tiny_model_dir, library, tmp_path)
    assert str(lost.value) == ("the workers holding the model died 1 time: they keep dying (out of memory? killed?), "
                               "while the scheduler runs on; finished chunks are kept"), str(lost.value)


@pytest.mark.slow
def test_every_worker_gone_for_good_is_said_as_a_wait_for_one_then_in_words(cluster, tiny_model_dir, library, tmp_path,
                                                                            monkeypatch, caplog):
    """Every worker killed and none started: the warning said the model was sent again "to the workers there are"
    (none), nothing followed for two minutes, and the error quoted Dask's "Only 0/1 workers arrived after 120.0" (a
    Dask trial). The warning says it waits for a worker, and how to start one; the error says none joined."""
    from labloop.surrogate import library_pipeline

    monkeypatch.setattr(library_pipeline, "WORKER_BACK_S", 3.0)
    with caplog.at_level(logging.WARNING, logger="labloop"):
        lost = _lost_with_both_workers(cluster, tiny_model_dir, library, tmp_path)
    address = cluster[0]
    assert str(lost.value) == ("the Dask cluster went away (every worker holding the model died, and none joined "
                               "within 3 s); finished chunks are kept"), str(lost.value)
    said = [r.getMessage() for r in caplog.records if "holding the model died" in r.getMessage()]
    assert len(said) == 1 and (f"sending it again (1 of 3) once a worker joins (none is connected now: waiting up to 3 "
                               f"s for one; start one with `dask worker {address}`)") in said[0], said


@pytest.mark.slow
def test_workers_get_absolute_shard_paths_and_one_that_cannot_read_them_is_one_line(
        cluster, tiny_model_dir, library, tmp_path, monkeypatch):
    """The workers run in another folder than labloop: a store given by a relative path (``labloop resume
    runs/x.db``) sent them relative shard paths they could not open (pyarrow's "Failed to open local file")."""
    address, _, _ = cluster
    monkeypatch.chdir(tmp_path)
    client = compute.connect(address)
    try:
        client.wait_for_workers(2, timeout=180)
        shards = predict_library(library, tiny_model_dir, Path("runs/x.predictions"), client=client, chunk_size=15,
                                 describe=describe)
        assert all(path.is_absolute() for path in shards.paths)
        state = PlannerState("greedy", seed=1, step=1, observations=())
        planner = ShardPoolPlanner("greedy", lambda version: shards, "ie_ev", ConditionSpace({}), goal="maximize",
                                   acquisition="mean", first_batch="acquisition", client=client)
        assert len(planner.propose(state, 3, _FixedModel())) == 3
        # a worker that does not see the store's predictions folder (another machine, no shared filesystem)
        (tmp_path / "runs").rename(tmp_path / "elsewhere")
        planner = replace(planner, target="ea_ev")  # columns the workers have not read yet
        with pytest.raises(ClusterLostError) as lost:
            planner.propose(state, 3, _FixedModel())
    finally:
        client.close()
    message = str(lost.value)
    assert message.startswith("Dask worker tcp://127.0.0.1:") and "\n" not in message, message
    assert f"cannot read the library's shards in {shards.directory}" in message, message
    assert "predictions folder at that same path" in message and "Failed to open" not in message, message


@pytest.mark.slow
def test_a_worker_joining_after_connect_with_another_labloop_computes_nothing(
        cluster, tiny_model_dir, library, tmp_path, monkeypatch, dask_command, older_labloop):
    """connect() asks the workers there which labloop they run; one that joins later was given tasks unasked.
    Here a real ``dask worker`` running a changed copy of labloop's source joins after connect, and the two that
    were asked are killed, so every task lands on it: the planner's scoring and the library's prediction each
    stop with ClusterLostError naming it, and no shard comes from it."""
    address, _, workers = cluster
    client = compute.connect(address)
    try:
        shards = predict_library(library, tiny_model_dir, tmp_path / "asked", client=client, chunk_size=50,
                                 describe=describe)
        monkeypatch.setenv("PYTHONPATH", str(older_labloop))
        later = dask_command("worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard", "--host",
                             "127.0.0.1", "--name", "later", log=tmp_path / "later.log")
        monkeypatch.delenv("PYTHONPATH")
        try:
            client.wait_for_workers(3, timeout=180)
            joined = next(a for a, info in client.scheduler_info()["workers"].items() if info["name"] == "later")
            for worker in workers:
                worker.kill()
                worker.wait()
            _wait(lambda: list(client.scheduler_info()["workers"]) == [joined], "the asked workers to be gone")
            planner = ShardPoolPlanner("greedy", lambda version: shards, "ie_ev", ConditionSpace({}),
                                       goal="maximize", acquisition="mean", first_batch="acquisition", client=client)
            with pytest.raises(ClusterLostError) as scoring:
                planner.propose(PlannerState("greedy", seed=1, step=1, observations=()), 3, _FixedModel())
            with pytest.raises(ClusterLostError) as predicting:
                predict_library(library, tiny_model_dir, tmp_path / "later", client=client, chunk_size=50)
        finally:
            later.kill()
            later.wait()
    finally:
        client.close()
    for lost in (scoring, predicting):
        message = str(lost.value)
        assert message.startswith(f"Dask worker {joined} runs labloop 0.0.1 with other source files"), message
        assert "stop that worker and start it from the same labloop installation" in message, message
    assert not list((tmp_path / "later").rglob("*.parquet"))  # nothing it computed was kept


@pytest.mark.slow
def test_a_scheduler_without_labloop_is_refused_at_connect_in_one_line(tmp_path, free_port, dask_command,
                                                                        wait_for_cluster, labloop, tiny_model_dir,
                                                                        library):
    """A scheduler from a plain Dask image (an HPC or Kubernetes deployment) cannot unpickle labloop's tasks: the first
    one failed with "Error during deserialization of the task graph", said as a labloop bug, exit 1, after a campaign
    had made its journal (a Dask operator's trial). Here a real Dask scheduler that cannot import labloop (an import
    hook refuses it, however labloop is installed) with a worker that can: refused at connect, one line naming the
    scheduler, exit 2, nothing written."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    with (tmp_path / "scheduler.log").open("w") as log:
        scheduler = subprocess.Popen([sys.executable, "-c", _SCHEDULER_WITHOUT_LABLOOP, "--host", "127.0.0.1", "--port",
                                      str(port), "--no-dashboard"], stdout=log, stderr=subprocess.STDOUT)
    worker = dask_command("worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard", "--host", "127.0.0.1",
                          log=tmp_path / "worker.log")
    try:
        wait_for_cluster(address, 1)
        out = tmp_path / "pred.csv"
        result = labloop("surrogate", "predict", tiny_model_dir, library, "-o", out, "--scheduler", address)
    finally:
        for proc in (worker, scheduler):
            proc.kill()
            proc.wait()
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: the Dask scheduler at {address} cannot say which labloop it runs ("), lines
    assert "start it, as every worker, from the same labloop installation" in lines[0] and "bug" not in lines[0]
    assert not out.exists()


@pytest.mark.slow
def test_a_scheduler_lost_mid_run_exits_1_keeps_whole_shards_and_a_rerun_continues(
        cluster, tiny_model_dir, library, reference, tmp_path, labloop, monkeypatch):
    address, scheduler, _ = cluster
    cache, out = tmp_path / "cache", tmp_path / "pred.csv"
    proc = subprocess.Popen([sys.executable, "-m", "labloop.orchestrator.cli.main", "surrogate", "predict",
                             str(tiny_model_dir), str(library), "-o", str(out), "--scheduler", address,
                             "--chunk-size", "2"], env={**os.environ, "LABLOOP_CACHE_DIR": str(cache)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait(lambda: any(cache.rglob("*.parquet")) or proc.poll() is not None, "the first shard")
        scheduler.send_signal(signal.SIGKILL)
        _, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    progress = re.compile(r"featurise \+ predict: \d+ of \d+ after \d+ s")  # stderr is no terminal: a plain line
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("Dask cluster tcp://")
             and not progress.fullmatch(line)]
    assert proc.returncode == 1, stderr
    assert len(lines) == 1 and lines[0].startswith("error: the Dask cluster went away ("), stderr
    assert "predict-" not in lines[0] and "for reason" not in lines[0], lines  # no task key (a trial)
    assert lines[0].endswith("; finished chunks are kept, and the same command again continues from them"), \
        lines
    assert not out.exists()
    shards = sorted(cache.rglob("*.parquet"))
    # 75 chunks of 2: on an idle machine 15 of 10 were all done between the first shard and the kill (a CI run)
    assert 0 < len(shards) < 75 and not [p for p in cache.rglob("*") if p.is_file() and p.suffix != ".parquet"]
    assert all(len(pq.read_table(p)) == 2 for p in shards)
    monkeypatch.setenv("LABLOOP_CACHE_DIR", str(cache))  # the in-process CLI below reads it
    again = labloop("surrogate", "predict", tiny_model_dir, library, "-o", out, "--scheduler", "none",
                    "--chunk-size", "2")
    assert again.returncode == 0, again.stderr
    valid = reference[reference["valid"]]
    assert pd.read_csv(out)["smiles"].tolist() == valid["smiles"].tolist()


@pytest.mark.slow
def test_a_scheduler_lost_under_no_cache_says_nothing_is_kept(cluster, tiny_model_dir, library, tmp_path):
    """``--no-cache`` keeps nothing (a temporary folder), but a lost scheduler's line said "finished chunks are kept;
    the same command again continues from the chunks finished" (an operator's trial): it says what is true now."""
    address, scheduler, _ = cluster
    out = tmp_path / "pred.csv"
    proc = subprocess.Popen([sys.executable, "-m", "labloop.orchestrator.cli.main", "surrogate", "predict",
                             str(tiny_model_dir), str(library), "-o", str(out), "--scheduler", address,
                             "--chunk-size", "2", "--no-cache"],
                            env={**os.environ, "LABLOOP_CACHE_DIR": str(tmp_path / "cache")},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        said = [proc.stderr.readline()]  # "Dask cluster tcp://...": connected, the chunks about to go out
        scheduler.send_signal(signal.SIGKILL)
        _, rest = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = "".join(said) + rest
    lost = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode == 1 and len(lost) == 1, stderr
    assert lost[0].endswith("; nothing predicted is kept (--no-cache): the same command again predicts every chunk"), \
        lost
    assert "are kept" not in lost[0] and "continues" not in lost[0] and not out.exists()
    assert not (tmp_path / "cache").exists()


@contextmanager
def _listening(greeting: bytes | None) -> Iterator[str]:
    """Something that is no Dask scheduler on a port of 127.0.0.1 (its address): it accepts and sends ``greeting``
    (None: it waits for a request, as a web server or a dashboard does; b"": it hangs up)."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)
            if greeting is not None:
                conn.sendall(greeting)
                if not greeting:
                    conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    finally:
        server.close()
        for conn in held:
            conn.close()


@pytest.mark.parametrize(("address", "needle"), [
    ("not an address", "is not tcp://HOST:PORT"), ("tcp://127.0.0.1:99999", "port 99999 is out of range (1-65535)"),
    ("http://127.0.0.1:8786", "is not tcp://HOST:PORT"),
    # accepted once, it failed after 42 s with a traceback (a trial): refused at once, whether a scheduler is there
    ("tls://127.0.0.1:8786", "labloop takes tcp://HOST:PORT; TLS (tls://) is not supported"),
    # the system refuses at once: it was "timed out" after 25 s (a trial)
    ("closed", "(connection refused): start the scheduler, or check the port"),
    # a dashboard's port typed for the scheduler's (8787 for 8786): it waited for ever, or died of a MemoryError
    # reading "HTTP/1.1 400" as a length (a trial)
    (None, "something listens there but sent no Dask greeting within 2 s"),
    (b"HTTP/1.1 400 Bad Request\r\n\r\n", "a web server listens there"),
    (b"", "closed the connection without a Dask greeting"),
    (b"\xff" * 16, "does not speak Dask's protocol")])
def test_a_bad_scheduler_address_is_one_line_exit_2_and_nothing_written(address, needle, labloop, tiny_model_dir,
                                                                         library, tmp_path, monkeypatch, free_port):
    monkeypatch.setattr(compute, "CONNECT_TIMEOUT_S", 2)
    monkeypatch.setenv("LABLOOP_CACHE_DIR", str(tmp_path / "cache"))
    if not isinstance(address, str):
        with _listening(address) as url:
            proc = labloop("surrogate", "screen", tiny_model_dir, library, "-o", tmp_path / "out.csv", "--scheduler",
                           url)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert lines[0].startswith(f"error: no Dask scheduler answers at {url}: ") and needle in lines[0], lines
        assert not (tmp_path / "out.csv").exists() and not (tmp_path / "cache").exists()
        return
    if address == "closed":
        port = free_port()
        address, needle = f"tcp://127.0.0.1:{port}", f"error: nothing listens at 127.0.0.1:{port} {needle}"
    out = tmp_path / "out.csv"
    started = time.monotonic()
    proc = labloop("surrogate", "screen", tiny_model_dir, library, "-o", out, "--scheduler", address)
    took = time.monotonic() - started
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and needle in lines[0], proc.stderr
    assert took < compute.CONNECT_TIMEOUT_S, f"{took:.1f} s: it waited for Dask's connect"
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_a_host_without_an_address_is_no_such_host(labloop, tiny_model_dir, library, tmp_path):
    """An unknown host was reported as a timeout after Dask's 10 s (a trial). Only where the name fails to resolve
    here, without a network: a resolver that cannot be asked at all says so differently."""
    try:
        socket.getaddrinfo("nosuchhost.invalid", 8786, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno != socket.EAI_NONAME:
            pytest.skip(f"this machine's resolver says {exc}, not 'no such name'")
    else:
        pytest.skip("this machine's resolver gives nosuchhost.invalid an address")
    proc = labloop("surrogate", "screen", tiny_model_dir, library, "-o", tmp_path / "out.csv", "--scheduler",
                   "tcp://nosuchhost.invalid:8786")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == ("error: nosuchhost.invalid: no such host (scheduler address "
                                   "tcp://nosuchhost.invalid:8786)"), proc.stderr
    assert not (tmp_path / "out.csv").exists()


def test_addresses_are_normalised():
    assert normalise_address(" tcp://10.0.0.5:8786 ") == "tcp://10.0.0.5:8786"
    assert normalise_address("scheduler.lab:8786") == "tcp://scheduler.lab:8786"
    assert normalise_address("TCP://[::1]:8786") == "tcp://[::1]:8786"
    with pytest.raises(SchedulerAddressError, match="udp://x:1"):
        normalise_address("udp://x:1")


def test_cluster_lost_is_not_bad_input():
    from labloop.core.errors import SurrogateError

    assert not issubclass(ClusterLostError, SurrogateError) and issubclass(SchedulerAddressError, SurrogateError)


def test_the_campaign_names_its_scheduler(write_campaign, tmp_path):
    from labloop.core.errors import CampaignError
    from labloop.orchestrator.config.campaign import load_campaign

    assert load_campaign(write_campaign(tmp_path, name="default")).compute.scheduler is None
    chosen = load_campaign(write_campaign(tmp_path, name="remote", compute={"scheduler": "10.0.0.5:8786"}))
    assert chosen.compute.scheduler == "tcp://10.0.0.5:8786"
    with pytest.raises(CampaignError) as info:
        load_campaign(write_campaign(tmp_path, name="bad", compute={"scheduler": "http://lab"}))
    assert "compute" in str(info.value) and "scheduler" in str(info.value) and "tcp://HOST:PORT" in str(info.value)


def test_asyncio_stays_quiet_of_a_distributed_task_a_ctrl_c_cut_short_and_only_of_that():
    """A Ctrl-C closing a local cluster mid-scatter left the scheduler's handler a KeyError, which asyncio logged
    with a page of traceback after "aborted" (once, under load). A record as asyncio writes it is dropped when
    the task is distributed's, kept otherwise."""
    import logging

    from labloop.surrogate.compute import dask_client

    with dask_client(n_workers=1):
        pass
    asyncio_log = logging.getLogger("asyncio")

    def record(coro: str) -> logging.LogRecord:
        return asyncio_log.makeRecord("asyncio", logging.ERROR, __file__, 1, "Task exception was never retrieved\n"
                                      f"future: <Task finished coro=<{coro}> exception=KeyError('tcp://x')>", (), None)

    assert not asyncio_log.filter(record("Server._handle_comm() done, defined at /v/distributed/core.py:706"))
    assert asyncio_log.filter(record("mine() done, defined at /v/labloop/thing.py:1"))


def test_a_cluster_without_workers_is_said_so():
    """With every worker killed and the scheduler up, distributed says 'No valid workers found', which a trial read
    as the scheduler lost; and anything that is no sign of a lost cluster is not taken for one."""
    from types import SimpleNamespace

    running = SimpleNamespace(status="running")
    assert compute.lost_cluster(running, TimeoutError("No valid workers found")) == "its scheduler has no workers left"
    assert compute.lost_cluster(running, TimeoutError("timed out after 20 s")) == "timed out after 20 s"
    assert compute.lost_cluster(running, ValueError("a bug")) is None


def test_a_lost_cluster_is_said_in_words_without_task_keys():
    """distributed's own words named a task by its key ("predict-634512de...-81a49788be7ac987 cancelled for reason:
    scheduler-connection-lost.", a trial after kill -9 of the scheduler): each is said in words, keyless. The
    exceptions are distributed's, made as it makes them (its scheduler's loss cannot be timed to one of them)."""
    from types import SimpleNamespace

    from distributed.client import FutureCancelledError
    from distributed.comm.core import CommClosedError
    from distributed.core import Status
    from distributed.scheduler import KilledWorker, WorkerState

    key = "predict-634512de1c5e7576-000000000000-81a49788be7ac987"
    running = SimpleNamespace(status="running")
    said = {reason: compute.lost_cluster(running, FutureCancelledError(key, reason))
            for reason in ("scheduler-connection-lost", "scheduler-restart", "lost dependencies", None)}
    assert said == {"scheduler-connection-lost": "the connection to its scheduler was lost",
                    "scheduler-restart": "its scheduler was restarted",
                    # the scattered model died with its workers (a trial killing workers read it as the cluster gone)
                    "lost dependencies": "the workers holding the model's weights died, so the scheduler cancelled "
                                         "the tasks that needed them",
                    None: "its scheduler cancelled a task"}
    closed = CommClosedError("in <TCP (closed) ConnectionPool.scatter local=tcp://127.0.0.1:5 remote=tcp://x:1>: "
                             "Stream is closed")
    assert compute.lost_cluster(running, closed) == "the connection to its scheduler was closed"
    worker = WorkerState(address="tcp://127.0.0.1:5", status=Status.running, pid=1, name="w0", nthreads=1,
                         memory_limit=0, local_directory="/w", nanny=None, server_id="s")
    assert (compute.lost_cluster(running, KilledWorker(key, worker, 2))
            == "3 workers in a row died running the same task")


def test_a_ctrl_c_during_a_local_clusters_start_is_kept_and_its_workers_ignore_ctrl_c():
    """A Ctrl-C while labloop started its LocalCluster was lost in 4 runs of 4 (an operator's trial: the run went on
    for 20 s and more): SIGINT was ignored for the start, so that the workers would inherit it, and a thread that
    did not block it (a native library's, or the cluster's IO loop, which Python's resource tracker unblocks) took it
    and dropped it. Here a thread that exists before the block, as those do, sends it: it is raised when the block
    ends. The workers of a real LocalCluster ignore Ctrl-C, as they did (surrogate/worker_signals.py)."""
    from labloop.surrogate import compute

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    go = threading.Event()
    sender = threading.Thread(target=lambda: (go.wait(), os.kill(os.getpid(), signal.SIGINT)))
    sender.start()
    try:
        with pytest.raises(KeyboardInterrupt), compute._workers_ignore_ctrl_c():
            go.set()
            sender.join()
            time.sleep(0.2)  # the signal reached the process while the block ran
        with compute.dask_client(None, n_workers=1) as client:
            ignored = client.run(lambda: signal.getsignal(signal.SIGINT) is signal.SIG_IGN)
        assert list(ignored.values()) == [True]
    finally:
        signal.signal(signal.SIGINT, before)
