"""The ``random`` planner: the baseline every smarter planner must beat, and what a dry run uses before
the Bayesian planners exist.

Why seeded per step rather than one running generator: its random stream is rebuilt from ``(seed, step)``,
so it needs no hidden state and a resumed campaign draws exactly what the uninterrupted one would.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

from labloop.planners.base import ModelView, PlannerState, Proposal
from labloop.planners.conditions import ConditionSpec
from labloop.surrogate.featurize import canonical_smiles, first_spellings


class RandomPlanner:
    """Untried library molecules in random order, never one the surrogate cannot read; each condition drawn
    log-uniformly from its range (or uniformly from its choices)."""

    name = "random"
    learns = True  # it chooses blindly, but records the calibrated prediction of what it chose

    def __init__(self, library: Sequence[str], conditions: Mapping[str, ConditionSpec]) -> None:
        self.library = list(dict.fromkeys(library))  # one entry per spelling, library order kept
        self.conditions = dict(conditions)
        self._keys: dict[str, str] = {}
        self._molecules: list[str] | None = None

    def propose(self, state: PlannerState, n: int, model: ModelView | None = None) -> list[Proposal]:
        rng = random.Random(f"{state.seed}:{state.step}")
        tried = state.tried
        pool = [s for s in self._first_spellings() if s not in tried]
        chosen = rng.sample(pool, min(n, len(pool)))
        # rows no planner proposes (invalid SMILES, [H][H], *C: validate lists them) and another spelling of a
        # molecule tried (a past measurement's) are drawn again, so the draw stays a function of the state
        taken = {self._key(s) for s in tried}
        while refused := self._refused(chosen, taken):
            pool = [s for s in pool if s not in refused]
            chosen = rng.sample(pool, min(n, len(pool)))
        mu, sigma = model.predict(chosen) if model is not None and chosen else ([None] * len(chosen),) * 2
        return [Proposal(smiles=s, conditions=self._draw(rng), mu=_number(m), sigma=_number(sd), acquisition=None,
                         model_version=None if model is None else model.version, planner=self.name)
                for s, m, sd in zip(chosen, mu, sigma, strict=True)]

    def _first_spellings(self) -> list[str]:
        """The library, each molecule once as its first row writes it (:func:`first_spellings`; every row of a library
        without repeats), worked out at the first proposal and kept. Why: drawn from every row, a molecule given twice
        was twice as likely, and proposed as whichever row was drawn, so its vial and name were the second row's
        where the docs say the first's (a chemist's trial)."""
        if self._molecules is None:
            spellings = first_spellings(self.library)
            self._keys.update(spellings)
            self._molecules = list(spellings)
        return self._molecules

    def _refused(self, chosen: Sequence[str], taken: set[str]) -> set[str]:
        """The draws not to propose: unreadable, or a molecule ``taken`` (tried) or drawn earlier in ``chosen``."""
        refused, drawn = set(), set(taken)
        for smiles in chosen:
            key = self._key(smiles)
            if not key or key in drawn:
                refused.add(smiles)
            drawn.add(key)
        return refused

    def _key(self, smiles: str) -> str:
        """``smiles``'s canonical SMILES, "" when it is no molecule the campaign can measure
        (:func:`canonical_smiles`), remembered."""
        if smiles not in self._keys:
            self._keys[smiles] = canonical_smiles([smiles])[0]
        return self._keys[smiles]

    def _draw(self, rng: random.Random) -> dict[str, Any]:
        return {name: _draw_one(rng, spec) for name, spec in self.conditions.items()}


def _draw_one(rng: random.Random, spec: ConditionSpec) -> Any:
    """A value of one condition: log-uniform in a range, uniform among choices."""
    if isinstance(spec, Mapping):
        return rng.choice(list(spec["choices"]))
    low, high = spec
    return low if low == high else math.exp(rng.uniform(math.log(low), math.log(high)))


def _number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)
