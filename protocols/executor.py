"""The protocol executor: one interpreter that turns a protocol's steps into instrument actions.

Why one interpreter (bluesky's engine): steps never touch hardware themselves, so every step is checked
against the rig and the safety limits *before the first step runs* (:meth:`ProtocolExecutor.check`): an
unknown instrument, a dispense beyond ``safety.max_dispense_ml``, a rate beyond ``safety.max_rate_ml_min``,
dispenses that would overfill the cell (``safety.cell_volume_ml``, counted from the last rinse) or a CV vertex
outside the potential limits stops the experiment before any byte reaches an instrument, with a typed error
naming the step. Each step is reported through ``on_action`` as it starts and when it ended, so the runner
can journal it; instrument errors propagate as the drivers' typed errors (:mod:`labloop.instruments.errors`),
after ``on_action`` reported them.

Potentials: the CV runs against the cell's reference electrode, which sits at ``reference_offset_v`` V vs
Li/Li+; a window around the candidate converts the predicted potential (vs Li/Li+) to that scale, and the
measured E1/2 comes back vs Li/Li+ (:func:`to_li_scale`). The analysis itself stays on the reference scale,
as measured.

Conditions of a proposal (e.g. ``scan_rate_v_s``) replace the step parameters of the same name; a
condition no step has is an error, so a planner's variable never silently does nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from labloop.instruments.contracts import Potentiostat, Pump, SafetyLimits, SampleChanger
from labloop.instruments.cv_analysis import CVResult, analyze_cv, to_li_scale
from labloop.instruments.errors import ConfigError, SafetyLimitExceeded
from labloop.instruments.voltammogram import CVParams, InvalidParameter, Voltammogram
from labloop.orchestrator.campaign import Campaign, Quantity
from labloop.orchestrator.journal import now
from labloop.orchestrator.yaml_source import Problems
from labloop.protocols.steps import CV, Analyze, Dispense, LoadSample, Rinse, Step, Wait, parse_steps

log = logging.getLogger(__name__)

#: ``on_action(step_index, step_name, instrument, params, started_at, finished_at, outcome)``, called twice per
#: step: as it starts (``finished_at`` and ``outcome`` None, so a journal holds the action before the
#: instrument moves) and when it ended (``outcome`` ``"ok"`` or the error in one line). Times are ISO 8601 UTC
#: as the journal stores them.
OnAction = Callable[[int, str, str, dict[str, Any], str, str | None, str | None], None]


class RigLike(Protocol):
    """What the executor needs of a rig (:class:`labloop.orchestrator.rig.Rig`)."""

    instruments: dict[str, object]

    def note_sample(self, sample_id: str, smiles: str) -> None: ...

    def rinse_cell(self) -> None: ...

    def sleep(self, seconds: float) -> None: ...


@dataclass(frozen=True)
class ExperimentOutcome:
    """What one run of a protocol measured: the voltammogram, its analysis (reference scale), the potential
    vs Li/Li+ (None without a reversible pair of peaks) and whether the CV is clean enough to learn from."""

    voltammogram: Voltammogram
    analysis: CVResult
    potential_v_vs_li: float | None
    quality_ok: bool


class ProtocolExecutor:
    """Runs ``steps`` (parsed, or raw as in the campaign) on ``rig`` within ``safety``.

    ``quantity`` decides which way a window around the candidate is scanned first (anodic for an oxidation).
    """

    def __init__(self, steps: Sequence[Step | str | Mapping[str, Any]], rig: RigLike, safety: SafetyLimits,
                 reference_offset_v: float, *, quantity: Quantity = "oxidation_potential") -> None:
        self.steps = tuple(steps) if all(isinstance(s, Step) for s in steps) else parse_steps(list(steps))
        self.rig = rig
        self.safety = safety
        self.reference_offset_v = reference_offset_v
        self.quantity = quantity

    @classmethod
    def from_campaign(cls, campaign: Campaign, rig: RigLike) -> ProtocolExecutor:
        """The executor of ``campaign``'s protocol on ``rig``, with its safety limits, reference electrode
        and objective quantity."""
        return cls(campaign.protocol.steps, rig, campaign.safety.limits(), campaign.cell.reference_offset_v,
                   quantity=campaign.objective.quantity)

    # -- checks -------------------------------------------------------------------------------------------
    def check(self) -> None:
        """Check every step against the rig's instruments and the safety limits; the first problem raises
        (ConfigError for instruments, SafetyLimitExceeded for limits), naming the step."""
        self._check(self.steps)

    def _check(self, steps: Sequence[Step]) -> None:
        in_cell_ml = 0.0  # what the steps have dispensed into the cell since it was last rinsed
        for index, step in enumerate(steps):
            where = _where(index, step)
            if isinstance(step, LoadSample):
                self._instrument(where, step.changer, SampleChanger, "sample changer")
            elif isinstance(step, Rinse):
                in_cell_ml = 0.0
            elif isinstance(step, Dispense):
                self._instrument(where, step.pump, Pump, "pump")
                if step.volume_ml > self.safety.max_dispense_ml:
                    raise SafetyLimitExceeded(where, f"dispense of {step.volume_ml:g} mL exceeds the limit of "
                                                     f"{self.safety.max_dispense_ml:g} mL")
                self.safety.check_rate(step.rate_ml_min, where=where)
                in_cell_ml += step.volume_ml
                self.safety.check_cell(in_cell_ml, where=where)
            elif isinstance(step, CV):
                self._instrument(where, step.potentiostat, Potentiostat, "potentiostat")
                if not step.around_candidate:
                    params = step.params()
                    self.safety.check_potentials(params.e_begin_v, params.e_vertex1_v, params.e_vertex2_v,
                                                 where=where)

    def _instrument(self, where: str, name: str | None, contract: type, kind: str) -> Any:
        """The instrument ``name`` (or the rig's only one of that kind), satisfying ``contract``."""
        if name is None:
            found = [n for n, driver in self.rig.instruments.items() if isinstance(driver, contract)]
            if len(found) != 1:
                raise ConfigError(where, f"name the {kind}: the rig has {len(found)} ({', '.join(found) or 'none'})")
            name = found[0]
        if name not in self.rig.instruments:
            raise ConfigError(where, f"no instrument {name!r} in the rig (it has {', '.join(self.rig.instruments)})")
        driver = self.rig.instruments[name]
        if not isinstance(driver, contract):
            raise ConfigError(where, f"{name!r} is not a {kind}")
        return name

    # -- running ------------------------------------------------------------------------------------------
    def run(self, sample_id: str, smiles: str, conditions: Mapping[str, Any], predicted_v: float | None,
            on_action: OnAction) -> ExperimentOutcome:
        """Check, then run every step for one candidate; ``predicted_v`` (V vs Li/Li+) centres a CV window
        around the candidate."""
        steps = self._with_conditions(conditions)
        self._check(steps)
        self.rig.note_sample(sample_id, smiles)
        voltammogram: Voltammogram | None = None
        analysis: CVResult | None = None
        for index, step in enumerate(steps):
            started = now()
            instrument, params = self._describe(index, step, sample_id)
            on_action(index, step.name, instrument, dict(params), started, None, None)
            try:
                if isinstance(step, LoadSample):
                    self.rig.instruments[instrument].load(sample_id)  # type: ignore[attr-defined]
                elif isinstance(step, Dispense):
                    params.update(self._dispense(step, self.rig.instruments[instrument]))  # type: ignore[arg-type]
                elif isinstance(step, Wait):
                    self.rig.sleep(step.seconds)
                elif isinstance(step, CV):
                    cv = self._cv_params(index, step, predicted_v)
                    params.update(cv.to_dict())
                    voltammogram = self.rig.instruments[instrument].run_cv(cv)  # type: ignore[attr-defined]
                elif isinstance(step, Rinse):
                    self.rig.rinse_cell()
                elif isinstance(step, Analyze):
                    analysis = analyze_cv(voltammogram, step.settings)  # type: ignore[arg-type]  # cv ran before
            except Exception as exc:
                on_action(index, step.name, instrument, params, started, now(), f"{type(exc).__name__}: {exc}")
                raise
            on_action(index, step.name, instrument, params, started, now(), "ok")
        assert voltammogram is not None  # a protocol has exactly one cv (parse_steps)
        analysis = analysis or analyze_cv(voltammogram)
        potential = (to_li_scale(analysis.e_half_v, self.reference_offset_v)
                     if analysis.e_half_v is not None else None)
        quality_ok = potential is not None and not analysis.flags
        log.info("%s (%s): E1/2 %s V vs Li/Li+, flags %s", sample_id, smiles,
                 "none" if potential is None else f"{potential:.3f}", sorted(analysis.flags) or "none")
        return ExperimentOutcome(voltammogram, analysis, potential, quality_ok)

    def _with_conditions(self, conditions: Mapping[str, Any]) -> tuple[Step, ...]:
        """The steps with every parameter named like a condition set to the condition's value."""
        steps = list(self.steps)
        for key, value in conditions.items():
            using = [i for i, s in enumerate(steps) if key in type(s).model_fields]
            if not using:
                raise ConfigError("protocol", f"condition {key!r} is a parameter of no step")
            for i in using:
                data = {**steps[i].model_dump(exclude_unset=True), key: value}
                try:
                    steps[i] = type(steps[i]).model_validate(data)
                except (ValidationError, Problems) as exc:
                    raise ConfigError(_where(i, steps[i]), f"condition {key}={value!r}: {exc}") from None
        return tuple(steps)

    def _describe(self, index: int, step: Step, sample_id: str) -> tuple[str, dict[str, Any]]:
        """(instrument name, parameters as journaled) of a step."""
        where = _where(index, step)
        if isinstance(step, LoadSample):
            return self._instrument(where, step.changer, SampleChanger, "sample changer"), {"sample_id": sample_id}
        if isinstance(step, Dispense):
            return step.pump, step.model_dump()
        if isinstance(step, CV):
            return self._instrument(where, step.potentiostat, Potentiostat, "potentiostat"), {}
        if isinstance(step, Rinse):
            return "cell", {}
        if isinstance(step, Analyze):
            return "", asdict(step.settings)
        return "", step.model_dump()

    def _dispense(self, step: Dispense, pump: Pump) -> dict[str, float]:
        done = {"dispensed_ml": pump.dispense(step.volume_ml, step.rate_ml_min)}
        if step.refill:
            done["refilled_ml"] = pump.withdraw(done["dispensed_ml"], step.rate_ml_min)
        return done

    def _cv_params(self, index: int, step: CV, predicted_v: float | None) -> CVParams:
        """The scan of ``step`` (its window, or around the prediction on the reference scale), checked
        against the potential limits before anything is sent."""
        where = _where(index, step)
        centre = None if predicted_v is None else predicted_v - self.reference_offset_v
        try:
            params = step.params(centre, anodic_first=self.quantity == "oxidation_potential")
        except InvalidParameter as exc:
            raise ConfigError(where, str(exc)) from None
        self.safety.check_potentials(params.e_begin_v, params.e_vertex1_v, params.e_vertex2_v, where=where)
        return params


def _where(index: int, step: Step) -> str:
    return f"protocol step {index + 1} ({step.name})"
