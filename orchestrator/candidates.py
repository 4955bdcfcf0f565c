"""The library molecules a campaign has not measured, ranked by the probability that each is a hit: what a lab
orders or measures next once a campaign has stopped (``labloop candidates``).

Why here, beside the loop and not in it: the ranking must be the one the campaign's next proposal would see, so
it is built from the same pieces the runner builds its proposal from, read from the journal and never written to
it: the planner's state (:func:`labloop.orchestrator.loop.runner.journal_state`: past measurements, done and
failed experiments with failed scans' bounds, pending proposals), the newest readable model version
(:func:`labloop.orchestrator.learning.models.latest_model`), its output and calibration chosen as the loop
chooses them (:func:`labloop.orchestrator.learning.learner.best_head`), and the pool the pool planners score
(:func:`labloop.planners.pool.untried`). A campaign whose planner does not learn (``screening``, ``random``) is
calibrated too: a ranking of the lab's candidates should use what the lab measured.

The probability is the objective's: P(lo <= E <= hi) under the calibrated N(mu, sd^2) for a window, or beyond
``threshold_v`` for a threshold (:attr:`labloop.orchestrator.config.campaign.Objective.hits_v`, one end
infinite), computed by the planners' own acquisition (:func:`labloop.planners.acquisition.acquire`). An objective
that defines no hit (maximise or minimise without a threshold) is ranked by the probability of beating the best
potential measured, the planners' probability of improvement.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from labloop.core.errors import InputError
from labloop.orchestrator.config.campaign import Campaign
from labloop.orchestrator.journal.names import library_names
from labloop.orchestrator.journal.store import Journal
from labloop.orchestrator.journal.view import describe_objective
from labloop.orchestrator.learning import models
from labloop.orchestrator.learning.learner import best_head
from labloop.orchestrator.loop.runner import journal_state, sample_ids
from labloop.orchestrator.potential_table import Past
from labloop.planners.acquisition import XI_V, acquire, mean_score
from labloop.planners.base import PlannerState, past_observations
from labloop.planners.feedback import CHUNK, DescriptorTable
from labloop.planners.pool import best_measured, untried
from labloop.protocols.steps import LoadSample
from labloop.surrogate.featurize import first_spellings

log = logging.getLogger(__name__)

#: ``progress(done, total)``: molecules predicted so far of those to predict
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Candidate:
    """One unmeasured library molecule: its place, the library's name for it ('' without one), its calibrated
    prediction (V vs Li/Li+, 1 sd), the probability :attr:`Ranking.probability_of` says, and its vial
    (``sample_id``, ``S0001`` for the library's first row, as a run's ``load_sample`` loads it; '' for a protocol
    without that step): which vial to take was the operator's to count out of the library's rows (a chemist's
    trial)."""

    rank: int
    name: str
    smiles: str
    mu_v: float
    sd_v: float
    p_hit: float
    sample_id: str = ""


@dataclass(frozen=True)
class Ranking:
    """The ranked candidates and what they were ranked with: the model version (``before_run``: the prior model of a
    campaign not run yet, calibrated on its past measurements alone) and output (``head``:
    orchestrator/learning/models.py ``heads``), what the calibration was fitted on, its winning learner and
    leave-one-out RMSE (None before any measurement), what the probability is of, and how many library molecules
    were left out as measured, failed or pending (``excluded``) or as unreadable by the model."""

    model_version: int
    before_run: bool
    head: str
    measurements: int
    bounds: int
    learner: str | None
    loo_rmse_v: float | None
    objective: str
    probability_of: str
    library: int
    excluded: int
    unreadable: int
    candidates: list[Candidate]

    def to_dict(self, top: int | None = None) -> dict[str, Any]:
        """JSON-ready, with the first ``top`` candidates (all by default)."""
        data = asdict(self)
        data["candidates"] = data["candidates"][:top]
        return data


def rank(campaign: Campaign, journal: Journal, library: Sequence[str], progress: Progress | None = None) -> Ranking:
    """The ranking of the campaign's ``library`` (its rows' SMILES in file order) by the journal's state; bad input
    (:class:`InputError`) when the campaign has no readable model."""
    loaded = models.latest_model(campaign, journal)
    if loaded is None:
        why = ("it has no prior, so no surrogate (candidates need campaign.prior)" if campaign.prior is None else
               "no model version's weights are readable beside the store (run or resume it to train one)")
        raise InputError(f"{journal.path}: campaign {campaign.name!r} has no model to predict with: {why}")
    experiments = journal.experiments()
    step = 1 + max((e.step for e in experiments if e.step is not None), default=-1)
    state = journal_state(campaign, journal, campaign.planner.kind, step, experiments,
                          past_observations(journal.past_measurements(), journal.past_bounds()))
    return _ranked(campaign, loaded.model, loaded.row.version, state, library, progress)


def rank_before_run(campaign: Campaign, prior: models.ObjectiveModel, past: Past | None, library: Sequence[str],
                    progress: Progress | None = None) -> Ranking:
    """The ranking of a campaign not run yet (no journal): by its ``prior`` model calibrated on the lab's ``past``
    measurements (:func:`labloop.orchestrator.potential_table.read_past`; None: none, the prior alone), as its first
    proposal would see them. Why: a lab with a table of past measurements asks what to measure next before it has
    run anything, and had to start a dry run and stop it at an approval to get a journal to ask (a chemist's trial)."""
    observations = past_observations(past.measurements, past.bounds) if past is not None else ()
    state = PlannerState(campaign.planner.kind, campaign.seed, 0, observations)
    return _ranked(campaign, prior, prior.version, state, library, progress, before_run=True)


def _ranked(campaign: Campaign, model: models.ObjectiveModel, version: int, state: PlannerState,
            library: Sequence[str], progress: Progress | None, *, before_run: bool = False) -> Ranking:
    """The ranking of ``library`` by ``model`` (version ``version``) calibrated on ``state``'s observations, its
    tried molecules left out."""
    head, view, _ = best_head(model, state.observations, DescriptorTable())
    spellings = first_spellings(library)
    pool = untried(spellings, state.tried)
    mu, sd = np.full(len(pool), np.nan), np.full(len(pool), np.nan)
    for start in range(0, len(pool), CHUNK):
        part = pool[start:start + CHUNK]
        mu[start:start + len(part)], sd[start:start + len(part)] = view.predict(part)
        if progress is not None:
            progress(start + len(part), len(pool))
    objective = campaign.objective
    if objective.hits_v is not None:
        p = acquire("window_probability", mu, sd, objective.goal, window_v=objective.hits_v)
        probability_of = f"hit: {describe_objective(objective.model_dump())}"
    else:
        best = best_measured(state, objective.goal)
        p = acquire("pi", mu, sd, objective.goal, best_v=best)
        beaten = "the best measured potential" if best is not None else "the best predicted potential"
        probability_of = (f"beating {beaten} by {XI_V:g} V (the objective defines no hit: give "
                          "objective.threshold_v)")
    readable = np.isfinite(mu) & np.isfinite(sd) & np.isfinite(p)
    # highest probability first; among equal ones (far from the window, all ~0) the mean's nearness to the goal
    order = [int(i) for i in np.lexsort((-mean_score(mu, objective.goal, objective.window_v), -p)) if readable[i]]
    names = library_names({"file": str(campaign.library.file), "smiles_column": campaign.library.smiles_column})
    vials = sample_ids(library) if LoadSample.name in campaign.protocol.step_names else {}
    calibration = view.calibration
    fit = calibration.fit
    log.info("ranked %d unmeasured library molecules with model version %d", len(order), version)
    return Ranking(model_version=version, before_run=before_run, head=head, measurements=calibration.n,
                   bounds=0 if fit is None else fit.bounds, learner=None if fit is None else fit.learner,
                   loo_rmse_v=fit.loo_rmse_v if fit is not None and calibration.n else None,
                   objective=describe_objective(objective.model_dump()), probability_of=probability_of,
                   library=len(spellings), excluded=len(spellings) - len(pool), unreadable=len(pool) - len(order),
                   candidates=[Candidate(place, names.get(pool[i], ""), pool[i], float(mu[i]), float(sd[i]),
                                         float(p[i]), vials.get(pool[i], ""))
                               for place, i in enumerate(order, start=1)])
