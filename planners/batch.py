"""Batch acquisition that knows what the batch already holds: Thompson samples of the calibrated posterior.

Why: scoring every molecule by its own acquisition and taking the top of the list fills a batch with
molecules that are good for the same reason — a cluster the residual model believes in, all right or all
wrong together. Thompson sampling draws one plausible world per place in the batch from the *joint*
posterior of the potentials (the residual model's covariance, :meth:`CalibratedModel.posterior`) and takes
the molecule that world likes best. Molecules whose errors are correlated rise and fall together within a
draw, so different places of the batch bet on different explanations; where the model is sure, every draw
agrees and the batch is the acquisition's top. The value a draw gives a molecule is the goal's reward
under that draw: the probability that the measurement (the drawn latent potential plus the measurement's
own variance) lands in the window, or the drawn potential itself for maximise/minimise goals.

The joint posterior is drawn over a shortlist (the :data:`SHORTLIST` best molecules by the acquisition),
which keeps a proposal over 100,000 molecules fast: the molecules outside it have no chance against those
inside. Each place's draw comes from a generator seeded by (campaign seed, step, place), so the batch is a
pure function of the journal's state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
from scipy.stats import norm

from labloop.core.seeds import stable_seed
from labloop.planners.acquisition import MIN_SIGMA_V, Goal

log = logging.getLogger(__name__)

#: molecules (best by the acquisition) the joint posterior is drawn over
SHORTLIST = 200
#: added to the posterior covariance's diagonal before factorising it (V^2): numerical safety only
JITTER_V2 = 1e-10


@runtime_checkable
class JointModel(Protocol):
    """A model view that can tell the joint posterior of a few molecules (:class:`CalibratedModel`)."""

    def posterior(self, smiles: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mean, latent covariance, variance a measurement adds) of each molecule's potential."""
        ...


def draw_seed(seed: int, step: int, place: int) -> int:
    """The seed of one place's draw: the same in every process and every resumed run."""
    return stable_seed("thompson", seed, step, place)


def reward(draw: np.ndarray, noise_var: np.ndarray, goal: Goal, window_v: tuple[float, float] | None
           ) -> np.ndarray:
    """What a drawn world promises per molecule: P(measured in window), or the drawn potential (+/-)."""
    if goal == "window":
        assert window_v is not None
        s = np.sqrt(np.maximum(noise_var, MIN_SIGMA_V**2))
        return norm.cdf((window_v[1] - draw) / s) - norm.cdf((window_v[0] - draw) / s)
    return draw if goal == "maximize" else -draw


def thompson_batch(model: JointModel, pool: Sequence[str], score: np.ndarray, n: int, *, goal: Goal,
                   window_v: tuple[float, float] | None, keep: np.ndarray, seed: int, step: int,
                   admissible: Callable[[int], bool]) -> list[int]:
    """Indices into ``pool`` of up to ``n`` molecules, one Thompson draw per place (module docstring).

    ``score``: the acquisition per molecule (NaN: unreadable), which picks the shortlist; ``keep``: the
    failure correction's factor per molecule (1: no similar failure), applied to each draw's reward;
    ``admissible(i)``: whether molecule ``i`` may join the batch as it stands (diversity), asked in
    order of preference and told nothing else — the caller records what joined.
    """
    finite = np.flatnonzero(np.isfinite(score))
    if n <= 0 or finite.size == 0:
        return []
    order = finite[np.argsort(-score[finite], kind="stable")][:SHORTLIST]
    names = [pool[i] for i in order]
    mean, cov, noise_var = model.posterior(names)
    values, vectors = np.linalg.eigh(cov + JITTER_V2 * np.eye(len(order)))
    root = vectors * np.sqrt(np.clip(values, 0.0, None))  # cov = root @ root.T, robust to rounding
    chosen: list[int] = []
    for place in range(n):
        z = np.random.default_rng(draw_seed(seed, step, place)).standard_normal(len(order))
        value = reward(mean + root @ z, noise_var, goal, window_v)
        value = keep[order] * value if goal == "window" else value - (1 - keep[order]) * np.ptp(value)
        for k in np.argsort(-value, kind="stable"):
            i = int(order[k])
            if i not in chosen and admissible(i):
                chosen.append(i)
                break
    return chosen
