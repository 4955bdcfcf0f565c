"""Surrogate retraining on APScheduler's BackgroundScheduler, beside the experiments.

Why in the background: a full retrain takes minutes, and the instruments must not wait for it; the loop
keeps measuring with the model it has and picks up the new one (:meth:`Retrainer.take_model`) at its next
proposal, with its predictions for the whole library already made here (in this process, or into shards on
a Dask cluster: ``prepare``). A cluster lost meanwhile stops the run at that next proposal.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable, Sequence

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from labloop.core.errors import ClusterLostError, said
from labloop.orchestrator.config.campaign import Campaign
from labloop.orchestrator.journal.store import Journal
from labloop.orchestrator.learning import models

log = logging.getLogger(__name__)

#: how long :meth:`Retrainer.wait` blocks before it lets a pending signal's handler run (s)
WAIT_SLICE_S = 0.2

#: ``prepare(model, check)``: predict the library with a new model; ``check()`` raises when cancelled
Prepare = Callable[[models.LoadedModel, Callable[[], None]], object]


class Retrainer:
    """One campaign's retraining job; a context manager (leaving it cancels a retrain in progress).
    ``prepare(model, check)`` predicts the library with a new model before the runner may take it (default:
    into the model's own cache, in this process), calling ``check()`` now and then to stop when cancelled."""

    def __init__(self, campaign: Campaign, journal: Journal, library: Sequence[str],
                 prepare: Prepare | None = None) -> None:
        self.campaign = campaign
        self.journal = journal
        self.library = library
        self.prepare = prepare or (lambda loaded, _check: loaded.model.predict(library))
        self._lost: ClusterLostError | None = None
        self._scheduler = BackgroundScheduler(executors={"default": ThreadPoolExecutor(1)}, daemon=True)
        self._idle = threading.Event()
        self._idle.set()
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._newest: models.LoadedModel | None = None
        self._said = ""  # what the retrain in progress is doing (:meth:`said`)

    def __enter__(self) -> Retrainer:
        self._scheduler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._cancel.set()
        self._scheduler.shutdown(wait=True)  # a running retrain stops at its next epoch

    @property
    def training(self) -> bool:
        return not self._idle.is_set()

    def retrain(self, measured: Sequence[tuple[str, float]], round_: int,
                on_done: Callable[[models.LoadedModel], None] | None = None) -> None:
        """Start retraining round ``round_`` on ``measured`` in the background (one at a time)."""
        if self.training:
            raise RuntimeError("a retrain is already running")
        self._idle.clear()
        self.journal.add_event("retrain", f"retraining round {round_} on {len(measured)} measurements started",
                               data={"round": round_, "n_measurements": len(measured)})
        self._scheduler.add_job(self._train, args=(list(measured), round_, on_done), id=f"retrain-{round_}")

    def _train(self, measured: list[tuple[str, float]], round_: int,
               on_done: Callable[[models.LoadedModel], None] | None) -> None:
        def check() -> None:
            if self._cancel.is_set():
                raise models.TrainingCancelled

        epochs, folds = models.campaign_preset(self.campaign).model.epochs, self.campaign.surrogate.folds
        self._said = f"retraining round {round_}: starting"

        def progress(member: int, epoch: int) -> None:  # a cancel is seen by check(), which the training polls
            # by fold and epoch: "epoch 18 of at most 30" beside the bar's "11/30" experiments read as one count, and
            # as more epochs than the campaign's 10 (a newcomer's: 3 folds of 10)
            self._said = (f"retraining round {round_}: fold {member + 1} of {folds}, epoch {epoch + 1} of at most "
                          f"{epochs}")

        try:
            loaded = models.retrain(self.campaign, self.journal, measured, round_, progress, check)
            self.prepare(loaded, check)  # here, not at the next proposal: the rig must not wait for it
        except models.TrainingCancelled:
            log.info("retraining round %d cancelled", round_)
        except ClusterLostError as exc:  # not the retrain's fault: the run stops at its next proposal
            log.info("retraining round %d: %s", round_, exc)
            self._lost = exc
        except Exception as exc:  # a failed retrain must not stop the campaign: keep the model we have
            log.debug("retraining round %d failed", round_, exc_info=True)  # where, at -vv: the console gets one line
            full = isinstance(exc, OSError) and exc.errno == errno.ENOSPC
            why = (f"no space left on the disk of {models.models_dir(self.journal.path)}: free space, and the next "
                   "retrain tries again" if full else said(exc))
            log.error("retraining round %d failed (%s); the campaign goes on with the model it has", round_, why)
            self.journal.add_event("retrain_failed", f"retraining round {round_} failed: {why}", data={"round": round_})
        else:
            with self._lock:
                self._newest = loaded
            if on_done is not None:
                on_done(loaded)
        finally:
            self._idle.set()

    def take_model(self) -> models.LoadedModel | None:
        """The model a retrain finished since the last call, if any; :class:`ClusterLostError` when the
        cluster its library predictions ran on went away."""
        if self._lost is not None:
            raise self._lost
        with self._lock:
            newest, self._newest = self._newest, None
        return newest

    def said(self) -> str:
        """What the retrain in progress is doing, for a progress bar: ``retraining round 2: fold 2 of 3, epoch 4 of at
        most 10`` (early stopping may end a fold sooner)."""
        return self._said

    def wait(self, each: Callable[[], None] | None = None) -> None:
        """Until the retrain in progress (if any) has finished, calling ``each()`` between slices (a progress bar's
        update). It waits in short slices: a Ctrl-C the kernel hands to one of TensorFlow's threads only runs its
        Python handler once the main thread runs Python again, so one long wait held a stop back until the retrain
        had finished (a newcomer measured 19 s)."""
        while not self._idle.wait(WAIT_SLICE_S):
            if each is not None:
                each()
