"""Learning in one place: which model version the loop proposes with, its calibration on the measurements,
and retraining on them — behind one interface the runner calls (:class:`Learning`).

Why one place: what a campaign learns from its measurements decides what it proposes next, and those
decisions must be journalled and reproducible. Here the newest model version is kept, calibrated on every
measurement before each proposal (the calibration event says how far the recent predictions were off), and
retrained every ``surrogate.retrain_every`` done experiments in the background (:mod:`.retraining`); the
runner only asks for the model to propose with (:meth:`Learning.model_view`) and says when an experiment is
done (:meth:`Learning.after_done`). Everything here is a function of the journal, so a resumed run
proposes exactly what an uninterrupted one would.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Self

from labloop.core.text import plural
from labloop.orchestrator.config.campaign import TARGET_OF, Campaign
from labloop.orchestrator.journal.store import ExperimentRow, Journal, State
from labloop.orchestrator.learning import models
from labloop.orchestrator.learning.retraining import Prepare, Retrainer
from labloop.planners import ModelView, Observation, PlannerState
from labloop.planners.feedback import CalibratedModel, DescriptorTable, counted
from labloop.surrogate.screening import rule_of

log = logging.getLogger(__name__)

#: the calibration event reports the error of this many latest predictions
RECENT_ERRORS = 8

#: ``deferred()``: a context in which journal writes are not torn by Ctrl-C (the runner's interrupt guard)
Deferred = Callable[[], AbstractContextManager[object]]


class Learning:
    """The models of one campaign run; a context manager (leaving it cancels a retrain in progress).

    ``model`` is the newest journalled model (None: a campaign without a prior); ``learns`` whether the
    planner uses measurements at all (the screening and random baselines do not); ``descriptors`` the table
    of cheap descriptors shared with the planner; ``prepare(model, check)`` predicts the library with a retrained
    model before it is taken (:class:`.retraining.Retrainer`); ``past`` the campaign's past measurements
    (:meth:`Journal.past_measurements`), which every retrain learns from first.
    """

    def __init__(self, campaign: Campaign, journal: Journal, library: Sequence[str], model: models.LoadedModel | None,
                 *, learns: bool, descriptors: DescriptorTable, deferred: Deferred,
                 prepare: Prepare | None = None, past: Sequence[tuple[str, float]] = ()) -> None:
        self.campaign = campaign
        self.journal = journal
        self.model = model
        self.learns = learns
        self.descriptors = descriptors
        self._deferred = deferred
        self._retrainer = Retrainer(campaign, journal, library, prepare)
        self.rounds = 0 if model is None else int(model.row.metrics.get("round", 0))
        self._calibrated: str | None = None  # the last calibration event's message (None: read the journal's)
        self._past = list(past)  # the lab's measurements from before the campaign: retrained on first

    def __enter__(self) -> Self:
        self._retrainer.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._retrainer.__exit__(*exc)

    @property
    def training(self) -> bool:
        """A retrain is running."""
        return self._retrainer.training

    def unfinished(self) -> int | None:
        """The retraining round in progress that has not journalled its model yet (a stop now cancels it, and
        :meth:`resume` trains it again), or None. Why: a stop during a retrain said nothing of it, and a newcomer
        took the minute the resume then spent retraining for a hang."""
        if not self.training:
            return None
        saved = {row.metrics.get("round") for row in self.journal.model_versions()}
        return None if self.rounds in saved else self.rounds

    def wait(self, show: Callable[[str], None] | None = None) -> None:
        """Until the retrain in progress (if any) has finished; ``show(text)`` is told what it is doing meanwhile (a
        progress bar's description: it said "proposing", still, for the minute a retrain took, which a newcomer took
        for a hang)."""
        self._retrainer.wait(None if show is None else lambda: show(self._retrainer.said()))

    def refresh(self) -> None:
        """Take the model a finished retrain produced, if any (called before each proposal)."""
        newest = self._retrainer.take_model()
        if newest is not None:
            self.model = newest
            # the version proposed with until now goes, and with it its networks' weights, but only once Python's
            # collector of reference cycles (Keras layers are full of them) reaches them, which a run's steady
            # pace rarely triggers: the example campaign kept ~45 MB more per retrain until collected here
            gc.collect()
            log.info("now proposing with model version %d", newest.model.version)

    def model_view(self, state: PlannerState, experiments: Sequence[ExperimentRow],
                   show: Callable[[str], None] | None = None) -> ModelView | None:
        """The model the planner proposes with: calibrated on the measurements for a planner that learns
        (the calibration is journalled with how well the recent proposals predicted their measurements); ``show``:
        told what a retrain it waits for is doing (:meth:`wait`)."""
        if self.model is None:
            return None
        if self.training and self.campaign.surrogate.wait_for_retrain:
            with self._deferred():
                self.journal.add_event("waiting", "proposal waits for the retrain in progress "
                                                  "(surrogate.wait_for_retrain)")
            self.wait(show)
            self.refresh()
        if not self.learns:
            return self.model.model
        head, view, scores = best_head(self.model.model, state.observations, self.descriptors)
        if view.calibration.fit is not None:
            measured = [e for e in experiments if e.status == State.DONE and e.potential_v is not None
                        and e.mu is not None][-RECENT_ERRORS:]
            recent = (sum(abs(e.potential_v - e.mu) for e in measured) / len(measured)) if measured else None
            summary = {**view.calibration.summary(), "model_version": view.version, "head": head,
                       "head_loo_log_likelihood": scores, "recent_prediction_mae_v": recent,
                       "recent_n": len(measured)}
            prior = f"prior output {rule_of(TARGET_OF[self.campaign.objective.quantity])}"
            scored = (f"leave-one-out RMSE {summary['loo_rmse_v']:.3f} V" if view.calibration.n
                      else "nothing measured to score it on")
            message = (f"calibration on {counted(view.calibration)} (model version {view.version}, "
                       + ("its measured-potential output" if head == "measured" else prior)
                       + f"; learner {summary['learner']}, {scored})"
                       + ("" if recent is None else f"; last {len(measured)} {plural(len(measured), 'prediction')} "
                                                     f"off by {recent:.3f} V"))
            self._journal_calibration(message, summary)
        return view

    def _journal_calibration(self, message: str, summary: dict[str, object]) -> None:
        """Journal the calibration unless it says what the last one said: a batch that only failed brings no
        measurement, and the next proposal's calibration on the same ones was journalled a second time."""
        if self._calibrated is None:
            last = [e.message for e in self.journal.events() if e.kind == "calibration"]
            self._calibrated = last[-1] if last else ""
        if message == self._calibrated:
            return
        with self._deferred():
            self.journal.add_event("calibration", message, data=summary)
        self._calibrated = message

    def after_done(self, done: int) -> None:
        """An experiment is done (``done`` in all): every ``surrogate.retrain_every`` of them, and not after
        the last one, retrain on the measurements in the background."""
        if self.model is None or self.training or not self.learns:
            return
        due = done // self.campaign.surrogate.retrain_every
        if due > self.rounds and done < self.campaign.budget.max_experiments:
            self.rounds = due
            with self._deferred():  # it journals that the retrain started
                self._retrainer.retrain(self._measured(), due, self._prune)

    def resume(self) -> None:
        """Continue the retraining where the journal left it (called once, before the first proposal): a
        retrain that started but left neither a model nor a failure (the run was killed while it trained)
        starts again on the measurements it had, the first ones done, and one that was due but had not
        started (killed in between) starts now. With ``surrogate.wait_for_retrain`` the next proposal then
        waits for the model the uninterrupted run would have proposed with (docs/planners.md, "Reproducible")."""
        if self.model is None or not self.learns:
            return
        events = self.journal.events()
        started = [e for e in events if e.kind == "retrain" and isinstance(e.data, dict)]
        failed = {e.data.get("round") for e in events if e.kind == "retrain_failed" and isinstance(e.data, dict)}
        last = int(started[-1].data["round"]) if started else 0
        if last > self.rounds and last not in failed:
            done = sorted(self.journal.experiments(states=(State.DONE,)), key=lambda e: (e.finished_at or "", e.id))
            first = {e.id for e in done[:int(started[-1].data["n_measurements"]) - len(self._past)]}
            self.rounds = last
            log.info("retraining round %d again: the run stopped while it trained", last)
            with self._deferred():
                self._retrainer.retrain([*self._past, *(m for e, m in self._measured_rows() if e in first)], last,
                                        self._prune)
            return
        self.rounds = max(self.rounds, last)
        self.after_done(len(self.journal.experiments(states=(State.DONE,))))

    def _prune(self, _newest: models.LoadedModel) -> None:
        """Once a retrain has saved and journalled its round (in the retrainer's thread): delete the rounds
        ``surrogate.keep_models`` no longer keeps, but not the one proposed with until the runner takes the newest
        (:meth:`refresh`; it only ever moves to the newest, which is kept, so reading ``model`` here races with
        nothing that matters)."""
        assert self.model is not None, "only a campaign with a model retrains"
        models.prune(self.campaign, self.journal, self.model.row.version)

    def _measured(self) -> list[tuple[str, float]]:
        """What a retrain learns from: the past measurements, then every done experiment's, in journal order."""
        return [*self._past, *(m for _, m in self._measured_rows())]

    def _measured_rows(self) -> list[tuple[int, tuple[str, float]]]:
        """(experiment id, (SMILES, potential)) of every done experiment, in journal order."""
        return [(e.id, (e.smiles, e.potential_v)) for e in self.journal.experiments(states=(State.DONE,))
                if e.potential_v is not None]


def best_head(model: models.ObjectiveModel, observations: Sequence[Observation], descriptors: DescriptorTable
              ) -> tuple[models.Head, CalibratedModel, dict[str, float]]:
    """The output to propose with, its calibrated view, and each output's score: every output of ``model``'s
    version that can give the potential (:func:`labloop.orchestrator.learning.models.heads`: the prior target, and a
    retrained network's measured-potential output) calibrated on ``observations``, the one whose winning
    residual learner has the highest leave-one-out log-likelihood winning (ties: the prior target). Why: a
    network retrained on the measurements is one more learner of what they show, and it earns the
    proposals the way the residual learners do — by predicting held-out measurements (its residuals are
    taken on out-of-sample predictions: :meth:`~labloop.orchestrator.learning.models.ObjectiveModel.out_of_sample`)."""
    best: tuple[float, models.Head, CalibratedModel] | None = None
    scores: dict[str, float] = {}
    for head in models.heads(model):
        view = CalibratedModel(head, observations, descriptors)
        fit = view.calibration.fit
        if fit is None:  # nothing measured yet: nothing to score the heads on
            return head.head, view, scores
        scores[head.head] = fit.loo_log_likelihood
        if best is None or fit.loo_log_likelihood > best[0]:
            best = (fit.loo_log_likelihood, head.head, view)
    assert best is not None
    return best[1], best[2], scores
