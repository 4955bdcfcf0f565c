"""The protocol step language: what one experiment may do, as validated values.

Why a language of its own: a protocol is written by hand in YAML (``examples/protocols/cv_screen.yaml``) and
run unattended; a mistyped parameter must be named with its line when the campaign is validated, not when
the tenth experiment reaches the step. Each step is a frozen pydantic model that forbids unknown keys;
:func:`parse_steps` reports *every* problem as a :class:`Problem` located at ``(index, step, field)``,
which :mod:`labloop.orchestrator.campaign` turns into ``file:line: field: why``.

A protocol is a list of ``name`` or ``{name: {parameters}}``:

- ``load_sample: {changer}``: put the candidate's stock in line (the changer defaults to the rig's one);
- ``dispense: {pump, volume_ml, rate_ml_min, fluid, refill}``: ``fluid`` says what the syringe holds
  (``sample``: the loaded stock; ``electrolyte``); ``refill: true`` withdraws the same volume afterwards
  from the pump's reservoir, so the syringe is full for the next experiment;
- ``wait: {seconds}``;
- ``cv: {potentiostat, ...}``: a window written out (``e_begin_v``, ``e_vertex1_v``, ``e_vertex2_v``, V vs
  the cell's reference electrode) or centred on the candidate's predicted potential (``half_width_v``),
  scanned anodically first for an oxidation, cathodically first for a reduction; ``scan_rate_v_s``,
  ``e_step_v``, ``n_scans``, ``current_range_a`` as in :class:`CVParams`; a bare ``cv`` scans
  +/- :data:`DEFAULT_HALF_WIDTH_V` around the candidate;
- ``rinse``: empty and rinse the cell;
- ``analyze: {...}``: the CV analysis with other settings (:class:`CVAnalysisSettings` fields); without
  this step the voltammogram is analysed with the defaults after the last step.

Structure checked here, independent of any rig: exactly one ``cv``; ``analyze`` at most once and after it;
a ``fluid: sample`` dispense only after ``load_sample``. What needs the rig (instrument names, safety
limits) is :meth:`labloop.protocols.executor.ProtocolExecutor.check`'s.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, model_validator

from labloop.instruments.cv_analysis import CVAnalysisSettings
from labloop.instruments.voltammogram import CVParams, InvalidParameter
from labloop.orchestrator.yaml_source import Problem, Problems, not_one_of

Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]
PositiveNumber = Annotated[float, Strict(), Field(gt=0, allow_inf_nan=False)]
STEP = ConfigDict(frozen=True, extra="forbid")
#: a cv step without a window scans the candidate's predicted potential +/- this (V)
DEFAULT_HALF_WIDTH_V = 0.5
#: scan rates a CV may use (V/s): 0.1 mV/s to 10 V/s, what potentiostats run and a night can hold
SCAN_RATE_RANGE_V_S = (1e-4, 10.0)
#: longest wait step: a day (longer is a typo, not a protocol)
MAX_WAIT_S = 86_400.0


class Step(BaseModel):
    """One step of a protocol; ``name`` is how YAML spells it."""

    model_config = STEP
    name: ClassVar[str]


class LoadSample(Step):
    name: ClassVar[str] = "load_sample"
    changer: str | None = None


class Dispense(Step):
    name: ClassVar[str] = "dispense"
    pump: str
    volume_ml: PositiveNumber
    rate_ml_min: PositiveNumber
    fluid: Literal["sample", "electrolyte"]
    refill: Annotated[bool, Strict()] = False


class Wait(Step):
    name: ClassVar[str] = "wait"
    seconds: Annotated[float, Strict(), Field(ge=0, le=MAX_WAIT_S, allow_inf_nan=False)]


class CV(Step):
    name: ClassVar[str] = "cv"
    potentiostat: str | None = None
    e_begin_v: Number | None = None
    e_vertex1_v: Number | None = None
    e_vertex2_v: Number | None = None
    half_width_v: PositiveNumber | None = None
    scan_rate_v_s: Annotated[float, Strict(), Field(ge=SCAN_RATE_RANGE_V_S[0], le=SCAN_RATE_RANGE_V_S[1],
                                                    allow_inf_nan=False)] = 0.1
    e_step_v: Annotated[float, Strict(), Field(ge=1e-4, le=0.1, allow_inf_nan=False)] = 0.002
    n_scans: Annotated[int, Strict(), Field(ge=1, le=100)] = 1
    current_range_a: PositiveNumber | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_window(cls, data: Any) -> Any:
        """No window written: the default window around the candidate."""
        window = ("e_begin_v", "e_vertex1_v", "e_vertex2_v", "half_width_v")
        if isinstance(data, dict) and not any(key in data for key in window):
            return {**data, "half_width_v": DEFAULT_HALF_WIDTH_V}
        return data

    @model_validator(mode="after")
    def _one_window(self) -> CV:
        written = [self.e_begin_v, self.e_vertex1_v, self.e_vertex2_v]
        if self.half_width_v is not None:
            if any(e is not None for e in written):
                raise Problems(Problem(("half_width_v",), "give either half_width_v (a window around the "
                                                          "candidate) or e_begin_v/e_vertex1_v/e_vertex2_v"))
        elif any(e is None for e in written):
            raise Problems(Problem(("e_begin_v",), "give e_begin_v, e_vertex1_v and e_vertex2_v (V vs the "
                                                   "reference electrode), or half_width_v"))
        else:
            try:
                self.params()
            except InvalidParameter as exc:
                field, _, why = str(exc).partition(": ")
                raise Problems(Problem((field,), why)) from None
        return self

    @property
    def around_candidate(self) -> bool:
        return self.half_width_v is not None

    def params(self, centre_v: float | None = None, *, anodic_first: bool = True) -> CVParams:
        """The scan: the written window, or ``centre_v`` +/- ``half_width_v`` (V vs the reference), the centre
        rounded to a whole number of potential steps so that instruments' number formats write it exactly."""
        if self.half_width_v is None:
            begin, vertex1, vertex2 = self.e_begin_v, self.e_vertex1_v, self.e_vertex2_v
        else:
            if centre_v is None:
                raise InvalidParameter("half_width_v: a window around the candidate needs its predicted potential")
            sign = 1.0 if anodic_first else -1.0
            centre_v = round(centre_v / self.e_step_v) * self.e_step_v  # on the step grid: written exactly
            begin = vertex2 = centre_v - sign * self.half_width_v
            vertex1 = centre_v + sign * self.half_width_v
        return CVParams(e_begin_v=begin, e_vertex1_v=vertex1, e_vertex2_v=vertex2, scan_rate_v_s=self.scan_rate_v_s,
                        e_step_v=self.e_step_v, n_scans=self.n_scans, current_range_a=self.current_range_a)


class Rinse(Step):
    name: ClassVar[str] = "rinse"


class Analyze(Step):
    name: ClassVar[str] = "analyze"
    settings: CVAnalysisSettings = CVAnalysisSettings()

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    @model_validator(mode="before")
    @classmethod
    def _settings(cls, data: Any) -> Any:
        """The YAML mapping holds the settings' fields themselves."""
        if not isinstance(data, dict) or "settings" in data:
            return data
        fields = CVAnalysisSettings.__dataclass_fields__
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise Problems(Problem((unknown[0],), f"unknown field; valid fields: {', '.join(fields)}"))
        try:
            return {"settings": CVAnalysisSettings(**data)}
        except InvalidParameter as exc:
            field, _, why = str(exc).partition(": ")
            raise Problems(Problem((field,), why)) from None
        except TypeError as exc:
            raise Problems(Problem((), str(exc))) from None


STEPS: dict[str, type[Step]] = {step.name: step for step in (LoadSample, Dispense, Wait, CV, Rinse, Analyze)}
#: the step names a protocol may use
PROTOCOL_STEPS: tuple[str, ...] = tuple(STEPS)


def _split(raw: Any) -> tuple[str | None, Any]:
    """``name`` or ``{name: params}`` -> (name, params); (None, None) for anything else."""
    if isinstance(raw, str):
        return raw, {}
    if isinstance(raw, dict) and len(raw) == 1:
        ((name, params),) = raw.items()
        return (name, {} if params is None else params) if isinstance(name, str) else (None, None)
    return None, None


def _problems(error: ValidationError, loc: tuple[str | int, ...]) -> list[Problem]:
    found = []
    for item in error.errors(include_url=False):
        cause = (item.get("ctx") or {}).get("error")
        where = loc + tuple(item["loc"])
        if isinstance(cause, Problems):
            found.extend(Problem(where + p.loc, p.message) for p in cause.problems)
        elif item["type"] == "missing":
            found.append(Problem(where, "required, but missing"))
        elif item["type"] == "extra_forbidden":
            found.append(Problem(where, f"unknown field; valid fields: {', '.join(_fields(loc))}"))
        else:
            found.append(Problem(where, f"{item['msg'].removeprefix('Value error, ')} (got {item.get('input')!r})"))
    return found


def _fields(loc: tuple[str | int, ...]) -> list[str]:
    model = STEPS[str(loc[-1])]
    return list(CVAnalysisSettings.__dataclass_fields__) if model is Analyze else list(model.model_fields)


def parse_steps(raw_steps: Any) -> tuple[Step, ...]:
    """Validate a protocol (a non-empty list of steps); :class:`Problems` lists every problem found."""
    if not isinstance(raw_steps, list | tuple) or not raw_steps:
        raise Problems(Problem((), "must be a non-empty list of steps, e.g. [load_sample, cv, rinse]"))
    steps: list[Step | None] = []
    problems: list[Problem] = []
    for index, raw in enumerate(raw_steps):
        name, params = _split(raw)
        if name is None:
            problems.append(Problem((index,), f"a step is a name or {{name: {{parameters}}}}, got {raw!r}"))
        elif name not in STEPS:
            problems.append(Problem((index,), not_one_of(name, PROTOCOL_STEPS)))
        elif not isinstance(params, dict):
            problems.append(Problem((index, name), f"parameters must be a mapping, got {params!r}"))
        else:
            try:
                steps.append(STEPS[name].model_validate(params))
                continue
            except ValidationError as exc:
                problems.extend(_problems(exc, (index, name)))
            except Problems as exc:
                problems.extend(Problem((index, name, *p.loc), p.message) for p in exc.problems)
        steps.append(None)
    if not problems:
        problems = _structure(steps)  # type: ignore[arg-type]  # no None without a problem
    if problems:
        raise Problems(*problems)
    return tuple(steps)  # type: ignore[arg-type]


def _structure(steps: Sequence[Step]) -> list[Problem]:
    """One CV, analysed at most once after it; sample dispensed only once a sample is loaded."""
    cvs = [i for i, s in enumerate(steps) if isinstance(s, CV)]
    analyses = [i for i, s in enumerate(steps) if isinstance(s, Analyze)]
    problems = []
    if len(cvs) != 1:
        where = (cvs[1], "cv") if cvs else ()
        problems.append(Problem(where, f"a protocol records exactly one cv, this one has {len(cvs)}"))
    if len(analyses) > 1 or (analyses and cvs and analyses[0] < cvs[0]):
        problems.append(Problem((analyses[-1], "analyze"), "analyze comes once, after the cv"))
    loaded = False
    for index, step in enumerate(steps):
        loaded = loaded or isinstance(step, LoadSample)
        if isinstance(step, Dispense) and step.fluid == "sample" and not loaded:
            problems.append(Problem((index, "dispense", "fluid"), "dispenses the sample before load_sample"))
    return problems


def pumps_holding_sample(steps: Iterable[Step]) -> frozenset[str]:
    """Names of the pumps whose syringes hold the loaded sample's stock (what the emulators must pour)."""
    return frozenset(s.pump for s in steps if isinstance(s, Dispense) and s.fluid == "sample")
