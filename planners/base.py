"""The planner contract: what every planner (random, bayes, greedy, screening) takes and gives back.

Why planners are pure functions of a JSON state: a campaign must resume after ``kill -9`` and propose
exactly what the uninterrupted run would have. So a planner never keeps hidden state and never touches an
instrument; everything it decides from (the step number, the seed, what is measured, failed or pending) is
in :class:`PlannerState`, which the runner saves in the journal before it records the proposals. A planner
with an optimiser (scikit-optimize's ask/tell) rebuilds it from the observations each step. The
surrogate's view of the library comes in as a :class:`ModelView` (a trained model is not JSON, but its
version number is, and the journal keeps the weights).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol, runtime_checkable


@dataclass(frozen=True)
class Proposal:
    """One experiment a planner asks for: the molecule, its measurement conditions, and why it was chosen
    (``mu``/``sigma``: the predicted objective quantity in V vs Li/Li+; None without a model; ``design``: chosen by
    the first batch's size design, planners/design.py, not by its ``acquisition``, which a design pick's is low: the
    journal says so, where a chemist read the first batch's low scores as the planner's bets)."""

    smiles: str
    conditions: Mapping[str, Any]
    mu: float | None
    sigma: float | None
    acquisition: float | None
    model_version: int | None
    planner: str
    design: bool = False


@dataclass(frozen=True)
class Observation:
    """A finished experiment as a planner sees it: a potential (V vs Li/Li+) or None when it failed.

    ``quality`` is the voltammogram's quality (0-1, :func:`labloop.instruments.cv_analysis.measurement_quality`;
    None when no voltammogram was analysed); ``failure`` says why a failed experiment failed: "analysis" (no
    usable voltammogram: the molecule's fault, a planner learns from it), "instrument" (the rig's fault),
    "software" (a plug-in driver's bug: nobody's fault but the code's) or "configuration" (the safety limits
    refused what the campaign's protocol made of the proposal, e.g. a window around its prediction: the campaign
    file's fault, so molecules like it are not shunned for it).
    ``above_v`` / ``below_v`` (V vs Li/Li+) are what a failed scan still says of the potential: its wave rose
    into the scan's vertex or decayed from its start, so the potential lies above / below that
    (:meth:`labloop.instruments.cv_analysis.CVResult.bound`); the residual model learns from them.
    """

    smiles: str
    conditions: Mapping[str, Any]
    potential_v: float | None
    quality: float | None = None
    failure: Literal["analysis", "instrument", "software", "configuration"] | None = None
    above_v: float | None = None
    below_v: float | None = None

    @property
    def bound(self) -> tuple[float, int] | None:
        """(bound, +1 above / -1 below) of a failed measurement that has one, else None."""
        if self.potential_v is not None or self.failure != "analysis":
            return None
        if self.above_v is not None and self.below_v is None:
            return self.above_v, 1
        if self.below_v is not None and self.above_v is None:
            return self.below_v, -1
        return None


def bound_fields(bound: tuple[float, int] | None) -> dict[str, float | None]:
    """:class:`Observation`'s ``above_v`` and ``below_v`` from a failed scan's bound (potential, +1 above / -1
    below; :meth:`labloop.instruments.cv_analysis.CVResult.bound` on the Li/Li+ scale), or None."""
    return {"above_v": bound[0] if bound and bound[1] > 0 else None,
            "below_v": bound[0] if bound and bound[1] < 0 else None}


def past_observations(measurements: Sequence[tuple[str, float]], bounds: Sequence[tuple[str, float, int]] = ()
                      ) -> tuple[Observation, ...]:
    """A campaign's past measurements (``past_measurements``) as a planner sees them, first among its observations:
    each (SMILES, potential V vs Li/Li+) measured, then each (SMILES, bound, +1 above / -1 below) a row such as
    ``>5.1`` gave, which is what a failed scan's bound is (:attr:`Observation.bound`): the residual model learns
    from it, the failure correction counts it, no planner proposes the molecule again."""
    return (*(Observation(smiles, {}, potential) for smiles, potential in measurements),
            *(Observation(smiles, {}, None, failure="analysis", **bound_fields((bound, side)))
              for smiles, bound, side in bounds))


#: experiments the rig may fail on one molecule before no planner proposes it again (:attr:`PlannerState.tried`)
INSTRUMENT_TRIES = 2


@dataclass(frozen=True)
class PlannerState:
    """Everything a planner decides from, JSON round-trippable (:meth:`to_dict` / :meth:`from_dict`).

    ``step`` counts planner calls from 0; ``pending`` are proposed or interrupted experiments not yet
    measured.
    """

    planner: str
    seed: int
    step: int
    observations: tuple[Observation, ...] = ()
    pending: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["observations"] = [asdict(o) for o in self.observations]
        return json.loads(json.dumps(data))  # proves it is JSON, and gives plain lists/dicts

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PlannerState:
        return cls(planner=data["planner"], seed=int(data["seed"]), step=int(data["step"]),
                   observations=tuple(Observation(**o) for o in data.get("observations", ())),
                   pending=tuple(data.get("pending", ())))

    @property
    def tried(self) -> frozenset[str]:
        """Molecules measured, failed or pending: a pool planner does not propose them again. A molecule the rig
        failed ("instrument": a pump's disconnect, an overload) is proposed again until it has failed so
        :data:`INSTRUMENT_TRIES` times. Why: a rig fault says nothing of the molecule, and a flaky cable dropped
        candidates from the screen for good, a hit among them (an operator's trial); a molecule the rig fails on
        every time must not hold the campaign either. A molecule a software bug failed ("software") is proposed again
        whatever its count: the run stops after such failures in a row (budget.max_consecutive_faults) until the
        code is fixed, and a driver's bug dropped every molecule it met, a hit among them (a plug-in engineer's
        trial)."""
        rig_failed = Counter(o.smiles for o in self.observations if o.failure == "instrument")
        left = {smiles for smiles, n in rig_failed.items() if n >= INSTRUMENT_TRIES}
        return frozenset(o.smiles for o in self.observations if o.failure not in ("instrument", "software")) | \
            left | frozenset(self.pending)

    @property
    def measured(self) -> list[Observation]:
        """Observations with a measured potential, in journal order."""
        return [o for o in self.observations if o.potential_v is not None]

    @property
    def failed_analyses(self) -> list[str]:
        """Molecules whose experiment gave no usable voltammogram."""
        return [o.smiles for o in self.observations if o.failure == "analysis"]


@runtime_checkable
class ModelView(Protocol):
    """A trained surrogate as a planner may use it: predicted objective quantity (V vs Li/Li+) per SMILES."""

    @property
    def version(self) -> int: ...

    def predict(self, smiles: Sequence[str]) -> tuple[Sequence[float], Sequence[float]]:
        """(mu, sigma) per molecule, NaN for molecules the model cannot read."""
        ...


@runtime_checkable
class OutOfSampleView(ModelView, Protocol):
    """A model that can also say what it predicted for molecules it was trained on *before* it saw them
    (a retrained network: the members that held each measurement out). The calibration fits and scores its
    residuals on those (:class:`labloop.planners.feedback.CalibratedModel`), so a network that memorised
    the measurements does not look better than it will be on the next molecule."""

    def out_of_sample(self, smiles: Sequence[str]) -> tuple[Sequence[float], Sequence[float]]:
        """(mu, sigma) per molecule, out of sample where the model trained on it."""
        ...


@runtime_checkable
class Planner(Protocol):
    """``propose(state, n)`` -> at most ``n`` proposals; pure: same state and model, same proposals.

    ``learns``: whether the planner uses what is measured. The runner gives a learning planner the model
    calibrated on the measurements (:mod:`labloop.planners.feedback`) and retrains the surrogate for it; a
    planner that does not learn (``screening``) gets the prior model as it is, and no retraining.
    """

    name: str
    learns: bool

    def propose(self, state: PlannerState, n: int, model: ModelView | None = None) -> list[Proposal]: ...
