"""Training in a child process (surrogate/training_process.py): the child trains what this process would, its
warnings and errors come back as this process's, a Ctrl-C of the terminal leaves it to the run, a cancel or the
run's death ends it, and a killed child is said. Real children, real training."""

from __future__ import annotations

import errno
import logging
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from labloop.surrogate.dataset import MoleculeTable, read_table
from labloop.surrogate.persistence import load_ensemble
from labloop.surrogate.training_process import TrainingJob, TrainingProcessDied, train_apart, train_saved

MODULE = "labloop.surrogate.training_process"


def _children(pid: int) -> list[int]:
    """The training children of process ``pid`` (by their command line), read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
        if ppid == pid and MODULE.encode() in command:
            found.append(int(entry.name))
    return found


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


@pytest.fixture
def job(small_csv, tiny_preset, tmp_path):
    """40 molecules, the last with no value (the training warns that it drops it), 2 members of 3 epochs."""
    table = read_table(small_csv, ["ie_ev", "ea_ev"])
    Y = table.Y[:40].copy()
    Y[-1] = np.nan
    return TrainingJob(MoleculeTable(table.path, table.smiles[:40], table.targets, Y), tiny_preset(epochs=3), 2, 7,
                       tmp_path / "fingerprints", tmp_path / "apart", log_level=logging.INFO)


def test_a_child_trains_what_this_process_would_in_a_session_of_its_own_and_is_gone_after(job, caplog):
    """The child is another process (seen in /proc during the training) in a session of its own (a terminal's signals
    reach the run alone), it leaves once done, the model it saved predicts exactly what this process's own training
    of the same job predicts, and its warning is logged here under its own logger."""
    seen: list[list[int]] = []
    sessions: list[int] = []

    def on_epoch(member: int, epoch: int) -> None:
        children = _children(os.getpid())
        seen.append(children)
        sessions.append(os.getsid(children[0]))

    with caplog.at_level(logging.INFO, logger="labloop"):
        apart = train_apart(job, on_epoch, lambda: None)
    assert len(seen) == 2 * 3 and all(len(children) == 1 for children in seen), seen
    assert len({children[0] for children in seen}) == 1
    assert set(sessions) == {seen[0][0]} != {os.getsid(0)}  # it leads a session: not the run's
    assert _gone(seen[0][0]) and not _children(os.getpid())
    here = train_saved(replace(job, directory=job.directory.parent / "here"))
    smiles = job.table.smiles[:39]
    assert np.array_equal(apart.predict(smiles).mean, here.predict(smiles).mean)
    assert np.array_equal(load_ensemble(job.directory).predict(smiles).mean, apart.predict(smiles).mean)
    dropped = [r for r in caplog.records if r.name == "labloop.surrogate.training" and "without any target" in
               r.getMessage()]
    assert len(dropped) == 2, [r.getMessage() for r in caplog.records]  # the child's, then this process's


def test_a_cancel_ends_the_child_and_leaves_no_model(job):
    """``check`` raising (the run stops) ends the child at once and raises here; nothing is saved."""
    class Stop(Exception):
        pass

    epochs: list[int] = []

    def check() -> None:
        if epochs:
            raise Stop

    with pytest.raises(Stop):
        train_apart(job, lambda member, epoch: epochs.append(epoch), check)
    assert not _children(os.getpid())
    assert not job.directory.exists() and not list(job.directory.parent.glob(".apart.*"))


def test_a_child_killed_is_said_and_its_error_comes_back_as_its_own(job, tmp_path):
    """A child killed (the kernel's out-of-memory killer sends SIGKILL) is said as such; an error of the training
    (here: the model's folder under a file) is raised here as the same OSError, its errno kept (a full disk is said
    as one by the retrainer)."""
    def kill(member: int, epoch: int) -> None:
        for child in _children(os.getpid()):
            os.kill(child, signal.SIGKILL)

    with pytest.raises(TrainingProcessDied, match=r"ended without a model \(killed by SIGKILL \(out of memory\?\)\)"):
        train_apart(job, kill, lambda: None)
    (tmp_path / "a-file").write_text("")
    with pytest.raises(OSError) as raised:
        train_apart(replace(job, directory=tmp_path / "a-file" / "model"), lambda m, e: None,
                    lambda: None)
    assert raised.value.errno in (errno.EEXIST, errno.ENOTDIR), raised.value
    assert not _children(os.getpid())


@pytest.mark.slow
def test_signals_to_the_runs_group_leave_the_child_and_a_killed_run_stops_it(job, tmp_path):
    """A terminal's hang-up, a Ctrl-C or a SIGTERM to the run's process group (systemd, a batch system) reached the
    child too, which died before the run could stop it, and a stop was journalled as a failed retrain (a review):
    they reach the run alone now (here a run that ignores them: the child trains on). A run killed while its child
    trains (SIGKILL, a power cut of the parent alone) must not leave the child training and then saving a model beside
    the resumed run's retrain of the same round: it stops at its next epoch, when its report to the run fails."""
    long = replace(job, preset=replace(job.preset, model=job.preset.model.model_copy(update={"epochs": 100_000})))
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent("""
        import pickle, signal, sys
        from labloop.surrogate.training_process import train_apart
        for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
        job = pickle.loads(open(sys.argv[1], "rb").read())
        train_apart(job, lambda member, epoch: print("epoch", flush=True), lambda: None)
    """))
    (tmp_path / "job.pickle").write_bytes(pickle.dumps(long))
    run = subprocess.Popen([sys.executable, str(script), str(tmp_path / "job.pickle")], stdout=subprocess.PIPE,
                           start_new_session=True)
    assert run.stdout is not None and run.stdout.readline() == b"epoch\n"  # training in the child
    child = _children(run.pid)
    assert len(child) == 1
    for signum in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
        os.killpg(run.pid, signum)
    time.sleep(1.0)  # time for a signal to end it, had it one: the child got none of them
    assert not _gone(child[0])
    run.kill()
    run.wait()
    deadline = time.monotonic() + 120  # a failure's deadline, not a measure of speed
    while not _gone(child[0]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _gone(child[0]), "the training child outlived its run"
    assert not long.directory.exists() and not list(long.directory.parent.glob(".apart.*"))


@pytest.mark.slow
def test_a_retrain_waited_for_says_its_round_and_epoch(tmp_path, write_campaign):
    """While a proposal waited for a retrain the progress bar said "proposing", still, for as long as the retrain
    took, which a newcomer took for a hang. The retrainer says which round and epoch the child reports, and a wait is
    told it between slices; the last epoch said is the last one trained (2 folds of 2 epochs)."""
    import pandas as pd

    from labloop.orchestrator.config.campaign import load_campaign
    from labloop.orchestrator.journal.store import Journal
    from labloop.orchestrator.learning import models
    from labloop.orchestrator.learning.retraining import Retrainer

    from ..conftest import EXAMPLES

    campaign = load_campaign(write_campaign(tmp_path, prior=True, shared_prior=True, surrogate={
        "preset": "fast", "folds": 2, "epochs": 2, "retrain_every": 2, "wait_for_retrain": True}))
    library = pd.read_csv(EXAMPLES / "library.csv")
    measured = [(s, ie - 2.0) for s, ie in zip(library["smiles"][:6], library["ie_ev"][:6], strict=True)]
    with Journal.create(campaign.store, campaign) as journal:
        models.prior_model(campaign, journal)
        seen: list[str] = []
        with Retrainer(campaign, journal, library["smiles"].tolist()) as retrainer:
            retrainer.retrain(measured, 1)
            retrainer.wait(lambda: seen.append(retrainer.said()))
            assert retrainer.take_model() is not None
        assert seen and all(said.startswith("retraining round 1: ") for said in seen), seen
        # by fold and epoch (a newcomer read "epoch 18 of at most 30" beside "11/30" experiments as one count)
        assert retrainer.said() == "retraining round 1: fold 2 of 2, epoch 2 of at most 2"


def test_a_campaigns_prior_trains_in_a_child_and_the_run_never_imports_tensorflow(tmp_path, write_campaign):
    """A run that trained its prior itself held TensorFlow and what the training allocated (~1.2 GB for the example)
    for the rest of the campaign. Its prior trains in a child as a retrain does, and the run loads the saved model
    into the numpy forward pass alone; the epochs are told to the run as the child trains them (2 folds x 2)."""
    campaign_file = write_campaign(tmp_path, prior=True)
    code = textwrap.dedent(f"""
        import os, sys
        from labloop.orchestrator.config.campaign import load_campaign
        from labloop.orchestrator.journal.store import Journal
        from labloop.orchestrator.learning import models
        campaign = load_campaign({str(campaign_file)!r})
        epochs = []
        with Journal.create(campaign.store, campaign) as journal:
            loaded = models.prior_model(campaign, journal, lambda member, epoch: epochs.append((member, epoch)))
        print(loaded.row.version, epochs, loaded.model.ensemble.members,
              sorted(m for m in ("tensorflow", "keras") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.strip() == "1 [(0, 0), (0, 1), (1, 0), (1, 1)] [] []", out.stderr
