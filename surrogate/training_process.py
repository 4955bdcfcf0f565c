"""Training an ensemble in a child process of its own, which ends once the ensemble is saved.

Why: training keeps about 35 MB per network in the process that trained it (its weights and optimiser state, which
no ``gc.collect``, Keras ``clear_session``, ``malloc_trim`` or allocator setting released), so a campaign that
retrains every hour for a week grew by 17-34 GB (docs/running.md). Loading the saved ensemble and predicting with it
keeps nothing (nor imports TensorFlow: surrogate/weights_file.py), so a campaign's prior and its retrainings train
here and the run loads what the child saved (orchestrator/learning/models.py). The cost is the child's start (Python
and TensorFlow, a few seconds) per training, which the run no longer pays itself.

The child is a fresh interpreter (``python -P -m`` this module), not a fork: forking a process whose TensorFlow has
its thread pools running can deadlock the child; nor multiprocessing's ``spawn``, which runs the parent's main script
again in the child (a user's script without a ``__main__`` guard started its campaign a second time). It runs in a
session of its own, so a terminal's Ctrl-C or hang-up and a SIGTERM to the run's process group reach the run alone,
which decides what stops (it cancels the training by :func:`train_apart`'s ``check``). Its job comes on its standard
input; its log records, epochs and outcome go back through a pipe; a child whose run goes away stops at its next
epoch (the pipe breaks), or past its last once it has saved.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from labloop.core.errors import said
from labloop.surrogate.dataset import MoleculeTable
from labloop.surrogate.fingerprint_cache import FingerprintCache
from labloop.surrogate.presets import Preset

if TYPE_CHECKING:
    from labloop.surrogate.ensemble import Ensemble

log = logging.getLogger(__name__)

#: how often the run looks at its ``check`` while the child trains (s): a cancel waits at most this long to be seen
POLL_S = 0.2

#: how long a cancelled child has to leave after SIGTERM (it removes a half-saved model) before it is killed (s)
TERM_GRACE_S = 10.0


@dataclass(frozen=True)
class TrainingJob:
    """Everything the child needs to train and save an ensemble, and nothing of the campaign: ``table`` trained with
    ``preset`` as ``folds`` members from ``seed``, fingerprints cached in ``cache_dir``, saved to ``directory``;
    ``out_of_sample_of``: the target whose rows keep their out-of-sample predictions (see
    :func:`labloop.surrogate.training.train_from_table`); ``log_level``: the lowest level of the child's log records
    sent back to the run."""

    table: MoleculeTable
    preset: Preset
    folds: int
    seed: int
    cache_dir: Path
    directory: Path
    out_of_sample_of: str | None = None
    log_level: int = logging.WARNING


class TrainingProcessDied(RuntimeError):
    """The child ended without saying how its training went (killed: out of memory, a signal)."""


def train_saved(job: TrainingJob, on_epoch: Callable[[int, int], None] | None = None) -> Ensemble:
    """Train ``job`` in this process and save it to ``job.directory``; ``on_epoch(member, epoch)`` after each epoch."""
    from labloop.surrogate.persistence import save_ensemble
    from labloop.surrogate.training import train_from_table

    hook = None if on_epoch is None else (lambda member, epoch, _loss, _val: on_epoch(member, epoch))
    run = train_from_table(job.table, job.preset, folds=job.folds, seed=job.seed, cache=FingerprintCache(job.cache_dir),
                           on_epoch=hook, out_of_sample_of=job.out_of_sample_of)
    save_ensemble(run.ensemble, job.directory)
    return run.ensemble


def train_apart(job: TrainingJob, on_epoch: Callable[[int, int], None], check: Callable[[], None]) -> Ensemble:
    """Train ``job`` in a child process, then load what it saved. ``on_epoch(member, epoch)`` is called here as the
    child reports each epoch and ``check()`` every :data:`POLL_S`; either may raise to cancel, which ends the child
    (a model it was saving is removed) and raises here. The child's exception is raised here as its own when it
    can be (an ``OSError`` keeps its errno: a full disk is said as such), else as a ``RuntimeError`` quoting it."""
    from labloop.surrogate.persistence import load_ensemble

    reading, writing = os.pipe()
    try:
        # its own session: a terminal's Ctrl-C or hang-up and a SIGTERM to the run's group reach the run alone, which
        # decides what stops (they killed the child first, and a stop was journalled as a failed retrain: a review);
        # -P: not the run's folder first on its path (a traceback.py there ran in the child)
        child = subprocess.Popen([sys.executable, "-P", "-m", __name__, str(writing)], stdin=subprocess.PIPE,
                                 pass_fds=(writing,), start_new_session=True)
    except BaseException:
        os.close(reading)
        raise
    finally:
        os.close(writing)  # the child's end: once the child is gone, recv() ends instead of waiting for ever
    receiving = Connection(reading, writable=False)
    # the job from a thread of its own: a large one (the prior's 2,000 rows) fills the pipe until the child reads it,
    # and a child slow to start held a cancel back until it read (a review: 30 s)
    threading.Thread(target=_hand, args=(child, job), name="labloop-training-job", daemon=True).start()
    outcome = None
    try:
        outcome = _follow(receiving, on_epoch, check)
    finally:
        _end(child, said_outcome=outcome is not None)
        receiving.close()
    if outcome is None:
        raise TrainingProcessDied(f"the training process ended without a model ({_ended(child.returncode)})")
    kind, error, where = outcome
    if kind == "error":
        log.debug("the training process failed:\n%s", where)
        raise error
    return load_ensemble(job.directory)


def _ended(code: int | None) -> str:
    """How a child ended, by its return code: ``killed by SIGKILL (out of memory?)``, ``exit code 1``."""
    if code is None or code >= 0:
        return f"exit code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:  # a real-time signal has no name
        name = f"signal {-code}"
    return f"killed by {name}" + (" (out of memory?)" if code == -signal.SIGKILL else "")


def _hand(child: subprocess.Popen[bytes], job: TrainingJob) -> None:
    """Give the child its job on its standard input (a child that died at its start has no input left to read: the
    pipe then says that it ended)."""
    assert child.stdin is not None
    with suppress(BrokenPipeError), child.stdin:
        pickle.dump(job, child.stdin)


def _follow(receiving: Connection, on_epoch: Callable[[int, int], None], check: Callable[[], None]
            ) -> tuple[str, Any, str] | None:
    """Relay the child's messages until it says how its training went (None: it ended without saying)."""
    while True:
        check()
        if not receiving.poll(POLL_S):
            continue
        try:
            message = receiving.recv()
        except EOFError:
            return None
        if message[0] == "epoch":
            on_epoch(message[1], message[2])
        elif message[0] == "log":
            logging.getLogger(message[1]).log(message[2], "%s", message[3])
        else:
            return message


def _end(child: subprocess.Popen[bytes], *, said_outcome: bool) -> None:
    """Let a child that said its outcome leave; end one that did not (cancelled) with SIGTERM, then SIGKILL."""
    if not said_outcome:
        child.terminate()
    try:
        child.wait(TERM_GRACE_S)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


class _Sent(logging.Handler):
    """The child's log records, sent to the run to be logged there under their own logger's name."""

    def __init__(self, sending: Connection) -> None:
        super().__init__()
        self.sending = sending

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.sending.send(("log", record.name, record.levelno, record.getMessage()))
        except OSError:  # the run is gone: the next epoch's send breaks the training off
            pass
        except Exception:  # a library's bad log call ('%s' with two arguments) must not fail the training
            self.handleError(record)


def _child(sending: Connection) -> None:
    """The child's whole life: read its job, train, save, say how it went."""
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(1))  # SystemExit: a half-saved model is removed
    job: TrainingJob = pickle.load(sys.stdin.buffer)
    root = logging.getLogger()
    root.setLevel(job.log_level)
    root.addHandler(_Sent(sending))
    try:
        train_saved(job, lambda member, epoch: sending.send(("epoch", member, epoch)))
    except Exception as exc:
        outcome = ("error", _portable(exc), traceback.format_exc())
    else:
        outcome = ("done", None, "")
    with suppress(OSError):  # the run is gone (its epochs' sends broke the training off): nobody to tell
        sending.send(outcome)


def _portable(exc: Exception) -> Exception:
    """``exc`` if it survives the pipe (pickled and read back), else a ``RuntimeError`` quoting it."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(said(exc))
    return exc


def _leave(sending: Connection) -> NoReturn:
    """Run :func:`_child`, then leave without the interpreter's finalization (``os._exit``, as multiprocessing's
    children do): its outcome is sent and its files are closed, and finalizing with TensorFlow's thread pools still
    alive printed ``free(): invalid next size (fast)`` on a newcomer's terminal once in 16 Ctrl-Cs during a retrain
    (the child, ended by SIGTERM, writes to the run's terminal). Exit 1 after a SIGTERM, whose SystemExit has removed
    a half-saved model on its way here."""
    try:
        _child(sending)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    else:
        code = 0
    for stream in (sys.stdout, sys.stderr):
        with suppress(Exception):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":  # the child: python -m labloop.surrogate.training_process FD
    _leave(Connection(int(sys.argv[1]), readable=False))
