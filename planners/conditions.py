"""Condition planning: which measurement conditions (scan rate, step, concentration...) give clean
voltammograms, learnt with scikit-optimize's ``Optimizer`` (ask/tell).

Why a Bayesian optimiser apart from the molecule planner: conditions are a small continuous/categorical
space shared by all molecules, and what the loop observes about them is a quality score of each
voltammogram (:func:`labloop.instruments.cv_analysis.measurement_quality`: peak reversibility and signal to
noise), not the potential. skopt's ``Optimizer`` is the standard ask/tell interface for exactly this.

Why it is rebuilt at every proposal: the planner contract is a pure function of the journal's state. The
optimiser is told every observed (conditions, quality) pair in journal order and asked for the batch with a
generator seeded by ``(seed, step)``, so a resumed campaign asks for exactly the same conditions.

Why the quality is told rounded (:data:`QUALITY_DECIMALS`): the optimiser's answer is not a smooth function of
what it is told. Its Gaussian process refits its kernel each time, and the acquisition's minimum over the sampled
settings jumps: of the example campaign's first batch (examples/campaign.yaml), one quality changed by a
millionth moved the next batch's scan rates from 0.246, 0.324, 0.280 to 0.246, 0.257, 0.309 V/s.
A score that noisy from one voltammogram to the next means nothing at the sixth digit, so the planner must not
either: told to the third decimal, two runs whose qualities differ below it tell the optimiser the same and
get the same conditions.

Why skopt is imported where a space is built or asked, not with this module: scikit-optimize brings scikit-learn and
takes about a second to import, which every command importing the planners' settings paid before it planned anything
(``labloop schema``, a ``run`` or ``resume`` refused at its checks, ``--help`` of them).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from labloop.core.seeds import stable_seed
from labloop.planners.base import Observation

if TYPE_CHECKING:
    from skopt.space import Categorical, Real

log = logging.getLogger(__name__)

#: random points the optimiser asks for before its Gaussian process takes over
N_INITIAL_POINTS = 5
#: candidate settings the acquisition is evaluated on; the Gaussian process is fitted without restarts of
#: its hyperparameter search: a condition space has a handful of dimensions, and a proposal over a
#: 100,000-molecule library must stay within 2 s (bench/campaign.py)
ACQ_SAMPLES = 500
#: the confidence bound's weight on uncertainty: small, because every exploratory setting costs an
#: experiment its voltammogram; with it the loop settles within ~4 batches where expected improvement kept
#: probing the edges of the space (tests/planners/test_planners_bayes.py)
KAPPA = 1.0
#: decimals of the quality (0-1) the optimiser is told: finer than any difference between two voltammograms
#: a chemist would act on, coarse enough that float noise in it does not change the proposal
QUALITY_DECIMALS = 3
#: the newest observations with a quality the optimiser is told, at most: its Gaussian process is refitted at every
#: proposal at a cost that grows with the cube of what it holds (1.6 s at 500, 28 s at 2,000: a long-campaign trial),
#: and a handful of condition dimensions is learnt from far fewer; the newest, so a lab whose cell or electrode
#: changed over weeks is judged as it is now
MAX_TOLD = 300

#: a condition: ``(low, high)`` range (fixed when equal) or ``{"choices": [...]}``
ConditionSpec = tuple[float, float] | Mapping[str, Sequence[Any]]


def step_seed(seed: int, step: int, purpose: str) -> int:
    """A 32-bit seed for one planner step: the same in every process and every resumed run."""
    return stable_seed(purpose, seed, step, bits=32)


class ConditionSpace:
    """The campaign's ``conditions``: ranges are searched log-uniformly (scan rates and concentrations span
    decades), choices as categories; fixed values are passed through."""

    def __init__(self, spec: Mapping[str, ConditionSpec]) -> None:
        from skopt.space import Categorical, Real

        self.fixed: dict[str, Any] = {}
        self.dimensions: list[Real | Categorical] = []
        for name, value in spec.items():
            if isinstance(value, Mapping):
                choices = list(value["choices"])
                if len(choices) == 1:
                    self.fixed[name] = choices[0]
                else:
                    self.dimensions.append(Categorical(choices, name=name))
            else:
                low, high = value
                if low == high:
                    self.fixed[name] = low
                else:
                    self.dimensions.append(Real(low, high, prior="log-uniform", name=name))

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.dimensions]

    def middle(self) -> dict[str, Any]:
        """One fixed setting: the geometric middle of each range, the first of each choice list (what an
        open-loop screen measures every molecule at)."""
        from skopt.space import Real

        chosen = {d.name: (math.sqrt(d.low * d.high) if isinstance(d, Real) else d.categories[0])
                  for d in self.dimensions}
        return {**self.fixed, **chosen}

    def propose(self, observations: Sequence[Observation], n: int, *, seed: int, step: int) -> list[dict[str, Any]]:
        """``n`` condition settings, the optimiser told the newest :data:`MAX_TOLD` observations with a quality, to
        :data:`QUALITY_DECIMALS` (instrument failures say nothing about the conditions and are left out)."""
        if not self.dimensions or n == 0:  # n == 0: a pool with nothing left to score (ask() always gives one)
            return [dict(self.fixed) for _ in range(n)]
        from skopt import Optimizer
        from skopt.space import Space
        from skopt.utils import cook_estimator

        random_state = step_seed(seed, step, "conditions")
        gp = cook_estimator("GP", space=Space(self.dimensions), random_state=random_state, n_restarts_optimizer=0)
        optimizer = Optimizer(self.dimensions, base_estimator=gp, acq_func="LCB", acq_func_kwargs={"kappa": KAPPA},
                              acq_optimizer="sampling", acq_optimizer_kwargs={"n_points": ACQ_SAMPLES},
                              n_initial_points=N_INITIAL_POINTS, random_state=random_state)
        told = [(self._point(o.conditions), -round(o.quality, QUALITY_DECIMALS)) for o in observations
                if o.quality is not None]
        told = [(x, y) for x, y in told if x is not None][-MAX_TOLD:]
        if told:
            optimizer.tell([x for x, _ in told], [y for _, y in told])
        if optimizer.models:  # the batch's constant-liar refits keep the kernel just fitted: 1 search, not n
            optimizer.base_estimator_.set_params(kernel=optimizer.models[-1].kernel_, optimizer=None)
        with warnings.catch_warnings():  # skopt says so when the best setting is one already measured: fine here
            warnings.filterwarnings("ignore", message="The objective has been evaluated at point")
            points = optimizer.ask(n_points=n) if n > 1 else [optimizer.ask()]
        return [{**self.fixed, **{name: _plain(v) for name, v in zip(self.names, point, strict=True)}}
                for point in points]

    def _point(self, conditions: Mapping[str, Any]) -> list[Any] | None:
        """An observed setting as a point of the space; None if it lies outside (the campaign's ranges
        were changed since it was measured)."""
        point = []
        for d in self.dimensions:
            value = conditions.get(d.name)
            if value is None or value not in d:
                return None
            point.append(value)
        return point


def _plain(value: Any) -> Any:
    """numpy scalars as Python numbers (proposals are stored as JSON)."""
    return value.item() if hasattr(value, "item") else value
