"""The protocol step language: what one experiment may do, as validated values.

Why a language of its own: a protocol is written by hand in YAML (``examples/protocols/cv_screen.yaml``) and
run unattended; a mistyped parameter must be named with its line when the campaign is validated, not when
the tenth experiment reaches the step. Each step is a frozen pydantic model that forbids unknown keys;
:func:`parse_steps` reports *every* problem as a :class:`Problem` located at ``(index, step, field)``,
which :mod:`labloop.orchestrator.config.campaign` turns into ``file:line: field: why``.

A protocol is a list of ``name`` or ``{name: {parameters}}``:

- ``load_sample: {changer}``: put the candidate's stock in line (the changer defaults to the rig's one);
- ``dispense: {pump, volume_ml, rate_ml_min, fluid, refill}``: ``fluid`` says what the syringe holds
  (``sample``: the loaded stock; ``electrolyte``); ``refill: true`` withdraws what the pump delivered
  afterwards from its reservoir, so the syringe is full for the next experiment;
- ``wait: {seconds}``;
- ``cv: {potentiostat, ...}``: a window written out (``e_begin_v``, ``e_vertex1_v``, ``e_vertex2_v``, V vs
  the cell's reference electrode) or centred on the candidate's predicted potential (``half_width_v``),
  scanned anodically first for an oxidation, cathodically first for a reduction; ``scan_rate_v_s``,
  ``e_step_v``, ``n_scans``, ``current_range_a`` as in :class:`CVParams`; ``rest_s`` (default 0) lets the cell rest
  that many seconds before each scan rate's scan (a quiet time: the diffusion layer of the scan before relaxes, the
  stirring of a dispense dies down); a bare ``cv`` scans +/- :data:`DEFAULT_HALF_WIDTH_V` around the candidate;
- ``rinse``: empty and rinse the cell;
- ``analyze: {...}``: the CV analysis with other settings (:class:`CVAnalysisSettings` fields); without
  this step the voltammogram is analysed with the defaults after the last step.

Lab-grade steps (what an electrochemist expects around a CV):

- ``purge: {minutes, gas, valve}``: bubble ``gas`` (argon) through the cell to drive out dissolved O2,
  through a gas-valve instrument, or ``valve: manual`` to ask the operator;
- ``blank: {window, scan_rate_v_s, max_current_a, on_fail}``: a CV of the electrolyte alone before the
  sample goes in; a wave or more than ``max_current_a`` means a dirty electrode or cell: ``on_fail: stop``
  ends the experiment, ``clean`` runs the ``clean`` step once and judges a second blank;
- ``eis: {f_high_hz, f_low_hz, points, amplitude_v, e_dc_v}``: an impedance sweep measuring the solution
  resistance Ru (high-frequency intercept);
- ``cv`` takes ``ir_compensation: {fraction}`` (that share of the measured Ru compensated on the
  potentiostat, the rest corrected in the analysis; needs an ``eis`` step before) and ``scan_rates_v_s``
  (the CV repeated at each rate; the diffusion coefficient follows from the Randles-Sevcik slope);
- ``add_standard: {pump, volume_ml, rate_ml_min, refill, standard, standard_vs_fc_v}``: after the cv, dispense
  the internal standard's stock (ferrocene, or another that sits ``standard_vs_fc_v`` from it) and run one more
  CV wide enough for both couples; the analyte's E1/2 is then reported against Fc+/Fc through the standard of the
  same scan, which cancels the reference electrode's drift;
- ``clean: {pump, volume_ml, rate_ml_min, refill}``: rinse the cell and flush it with electrolyte from
  ``pump`` (without a pump: ask the operator); ``polish``: ask the operator to polish the working electrode.
  ``refill: true`` refills the pump's syringe from its reservoir after it pumps, as for ``dispense``.

Structure checked here, independent of any rig: exactly one ``cv``; ``analyze`` at most once and after it;
a ``fluid: sample`` dispense only after ``load_sample``; ``blank`` before the sample goes in; ``eis``
before a cv with ``ir_compensation``; ``add_standard`` after the cv. :func:`limit_problems` checks
explicit potentials and volumes against a campaign's safety limits with the same located problems, the
protocol repeated over the budget included (:func:`repeat_problem`, on a :class:`Contents`: the one count of
what the cell and the syringes hold, which the executor also keeps from one experiment to the next). What
needs the rig (instrument names) is :meth:`labloop.protocols.executor.ProtocolExecutor.check`'s.

A value most likely written in another unit (a scan rate in mV/s, a blank's limit in uA written as A) is refused
with the unit meant and the value to write (:func:`slip`, the one wording of such hints, the campaign's included);
an analyte below :data:`MIN_ANALYTE_MM` is only warned about (:func:`unit_warnings`): it can be meant.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import cache, partial
from typing import Annotated, Any, ClassVar, Literal, NamedTuple

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    model_validator,
)

from labloop.core.errors import (
    MISSING,
    InvalidParameter,
    Problem,
    Problems,
    SafetyLimitExceeded,
    not_one_of,
    shown,
)
from labloop.core.field_types import Bool, Number, PositiveNumber
from labloop.core.validation import field_at, field_homes, must, shape_message, unknown_field, unknown_here
from labloop.instruments.contracts import SafetyLimits
from labloop.instruments.cv_analysis import MOST_ELECTRONS_IN_A_WAVE, CVAnalysisSettings
from labloop.instruments.impedance import MAX_AC_AMPLITUDE_V, PICO_FREQUENCY_RANGE_HZ, EISParams
from labloop.instruments.voltammogram import MAX_CURRENT_A, CVParams

#: the smallest volume (mL) and flow rate (mL/min) a step may pump: a microlitre, and 60 uL/h, below which a
#: syringe pump's number format or its slowest rate refuses the command after the sample is loaded
MIN_VOLUME_ML = 1e-3
MIN_RATE_ML_MIN = 1e-3
Volume = Annotated[float, Strict(), Field(ge=MIN_VOLUME_ML, allow_inf_nan=False)]
FlowRate = Annotated[float, Strict(), Field(ge=MIN_RATE_ML_MIN, allow_inf_nan=False)]
STEP = ConfigDict(frozen=True, extra="forbid")
#: a cv step without a window scans the candidate's predicted potential +/- this (V)
DEFAULT_HALF_WIDTH_V = 0.5
#: scan rates a CV may use (V/s): 0.1 mV/s to 10 V/s, what potentiostats run and a night can hold; beyond
#: 10 V/s the Pico's point rate (1 mV steps) is exceeded
SCAN_RATE_RANGE_V_S = (1e-4, 10.0)
#: potential steps a CV may use (V): 0.1 mV to 100 mV
E_STEP_RANGE_V = (1e-4, 0.1)
#: longest wait step: a day (longer is a typo, not a protocol)
MAX_WAIT_S = 86_400.0
#: longest purge (min): two hours drive O2 out of any cell a CV uses (minutes are usual); beyond, seconds were written
MAX_PURGE_MIN = 120.0
#: longest rest (s) a cv step's ``rest_s`` may give before each scan: the diffusion layer a scan leaves (sqrt(D t),
#: some 0.2 mm after a minute's scan at D 1e-5 cm2/s) relaxes by diffusion within a few scan times, so minutes are the
#: most a chemist waits in a still cell (instruments' quiet times are seconds: CH Instruments defaults to 2 s); ten
#: minutes more let the reference drift and the solvent evaporate under the gas, and 5000 is milliseconds
MAX_REST_S = 600.0

# -- units slips ------------------------------------------------------------------------------------------------
# A chemist writes 100 for 100 mV/s, 2 for a 2 uA limit, 0.00091 for 0.91 mM. Each check below says which unit the
# value was most likely written in, and what it is in the field's own unit, inside the one line that names the
# field and its line; the wording is :func:`slip`'s alone (the campaign's own fields use it too).

#: a step's potential this far from 0 V is no potential any cell is driven to: most likely millivolts
MILLIVOLTS_LIKELY_V = 50.0
#: the lowest top frequency (Hz) of an eis sweep that reaches the solution resistance: Ru is where the spectrum
#: meets the real axis above the double layer's corner 1/(2 pi Ru Cdl), 0.1-1 kHz for a 3 mm disk (Cdl ~1.4 uF,
#: Ru 100-1000 ohm); a sweep topping out below 1 kHz stays on the arc and its fit extrapolates Ru from afar. A sweep
#: can be meant so (a large electrode), so warned about (:func:`unit_warnings`), with kHz offered when 1000 times
#: the value is a frequency the potentiostat sweeps: ``f_high_hz: 100`` for 100 kHz is the slip
MIN_LIKELY_F_HIGH_HZ = 1e3
#: the largest share of Ru a cv's ir_compensation may compensate without a warning: positive feedback of the whole
#: Ru (or more, as Ru is measured with some error) leaves the potentiostat's control loop without damping and it
#: rings or oscillates, which can drive the working electrode far past the window; 0.85-0.9 is the usual
#: compromise, the rest corrected in the analysis. Up to 1 is allowed (a fast, well-measured cell may take it)
MAX_STABLE_IR_FRACTION = 0.95
#: the smallest refused flow rate (mL/min) offered as uL/min: below it a rate is as likely a near miss in mL/min (2 on
#: a 1 mL syringe that reaches 0.85 mL/min) as microlitres, and 10 uL/min would take 100 min to fill 1 mL
MICROLITRES_LIKELY_ML_MIN = 10.0
#: ... and a refused rate under this many times its cap is a near miss, not microlitres (25 mL/min on a 20 mL/min cap
#: was offered as 0.025 mL/min: a plug-in engineer's trial); 100 uL/min, among the commonest rates, on the default
#: 50 mL/min cap is still offered
MICROLITRES_LIKELY_OVER_CAP = 2.0
#: below this (mM) an analyte's CV peaks sink under the charging current on a mm-size electrode (1 uM: ~20 nA on a
#: 3 mm disk at 0.1 V/s, against ~0.14 uA of charging current), yet trace analysis does go there: warned about
#: (:func:`unit_warnings`), as the diffusion coefficient computed from it (D ~ (slope / C)^2) would be far off
MIN_ANALYTE_MM = 0.01
#: above this (mM) a sample's stock is no CV's: 1 M is beyond what organic redox molecules dissolve to in an
#: electrolyte; warned about, as micromolar written as millimolar
MAX_STOCK_MM = 1000.0
#: above this (mM) an analyte in the cell is no CV's: its peaks reach milliamperes on a mm-size electrode, beyond a
#: potentiostat's usual range, and the iR drop and migration spoil D; warned about, as micromolar written as
#: millimolar (an ``analyte_mm: 1000`` passed validate, and its D came out a million times low: a chemist's trial)
MAX_ANALYTE_MM = 100.0
#: per concentration field of a cv, from what value it is warned of, and what it is more than
MOST_ANALYTE = {"analyte_mm": (MAX_ANALYTE_MM,
                               "a CV measures: its peaks would reach milliamperes on a mm-size electrode"),
                "sample_stock_mm": (MAX_STOCK_MM, "an electrolyte dissolves for a CV")}
#: above this (cm2) a CV's working electrode is a plate, not the usual disk (a 3 mm disk is 0.0707 cm2, 7.07 mm2):
#: warned about (:func:`unit_warnings`), as D ~ 1 / area^2 would be 10,000 times off for an area in mm2
MAX_LIKELY_AREA_CM2 = 1.0


def slip(meant: str, written: str, fixed: str = "") -> str:
    """The one wording of a units slip: ``mV/s written as V/s? (0.1 V/s)`` — the unit the value was most likely
    meant in, and (``fixed``) the value in the field's own unit, so the fix can be copied."""
    return f"{meant} written as {written}?" + (f" ({fixed})" if fixed else "")


def units_hint(value: float, fits: tuple[float, float], meant: str, written: str, *, factor: float = 1e-3,
               unit: str | None = None) -> str:
    """``": mV/s written as V/s? (0.1 V/s)"``, to end a message about ``value``, when ``value * factor`` (the value
    read in ``meant`` units, in the field's own ``unit``, by default ``written``) lies in ``fits``, the field's
    range; "" when it does not (then the slip is not the likely story, and a hint would mislead)."""
    fixed = value * factor
    if not fits[0] <= fixed <= fits[1]:
        return ""
    unit = written if unit is None else unit
    return f": {slip(meant, written, f'{compact(fixed)} {unit}' if unit else compact(fixed))}"


def compact(value: float) -> str:
    """``value`` as a person writes it in YAML: 0.1, 2e-6 (``:g`` writes 2e-06)."""
    return re.sub(r"e([-+])0*(\d)", lambda m: f"e{'-' if m[1] == '-' else ''}{m[2]}", f"{value:g}")


def _within(low: float, high: float, unit: str, what: str, meant: str, factor: float = 1e-3) -> AfterValidator:
    """A number in ``low..high`` ``unit``; beyond it one line says so, and, when ``factor`` times it fits (a thousandth:
    millis), that it was most likely written in ``meant`` (mV/s for V/s) — pydantic's "less than or equal to 10" said
    neither."""
    def check(value: float) -> float:
        if not low <= value <= high:
            # a value written in millis is at least 1 (2 mV, 100 mV/s, -510 mV): 0.2 V for a step is no slip of 0.2 mV
            hint = units_hint(value, (low, high), meant, unit, factor=factor) if abs(value) >= 1 else ""
            raise Problems(Problem((), f"{compact(value)} {unit} is outside the {what}, "
                                       f"{compact(low)}..{compact(high)} {unit}{hint}"))
        return value
    return AfterValidator(check)


def _current(what: str) -> AfterValidator:
    """A current (A) of at most :data:`MAX_CURRENT_A`; above it, the one line offers it read as microamps."""
    def check(value: float) -> float:
        if value > MAX_CURRENT_A:
            hint = units_hint(value, (0.0, MAX_CURRENT_A), "microamps", "amps", factor=1e-6, unit="")
            raise Problems(Problem((), f"{compact(value)} A for {what} is more than a mm-size electrode passes in a "
                                       f"few mL (at most {compact(MAX_CURRENT_A)} A){hint}"))
        return value
    return AfterValidator(check)


def rate_hint(rate_ml_min: float, fits: tuple[float, float]) -> str:
    """``": uL/min written as mL/min? (0.5 mL/min)"``, to end the refusal of a flow rate beyond ``fits`` (the cap, or
    what a pump drives its syringe at), when a thousandth of it fits: syringe pumps' panels and datasheets speak
    uL/min, and 500 for 0.5 mL/min is the slip. The one hint of both refusals (:func:`pumping_problems`, and the
    executor's check of the pump's range); "" below :data:`MICROLITRES_LIKELY_ML_MIN` (the steps' default rates
    among them) or :data:`MICROLITRES_LIKELY_OVER_CAP` times the cap."""
    likely = rate_ml_min >= max(MICROLITRES_LIKELY_ML_MIN, MICROLITRES_LIKELY_OVER_CAP * fits[1])
    return units_hint(rate_ml_min, fits, "uL/min", "mL/min") if likely else ""


def _share(value: float) -> float:
    """A share of the whole, 0..1; above it, the one line offers it read as percent (85 for 0.85)."""
    if value > 1:
        hint = units_hint(value, (0.0, 1.0), "percent", "a share", factor=0.01, unit="")
        raise Problems(Problem((), f"{compact(value)} is more than the whole (a share, 0..1){hint}"))
    return value


ScanRate = Annotated[float, Strict(), Field(allow_inf_nan=False),
                     _within(*SCAN_RATE_RANGE_V_S, "V/s", "scan rates a CV may use", "mV/s")]
PotentialStep = Annotated[float, Strict(), Field(allow_inf_nan=False),
                          _within(*E_STEP_RANGE_V, "V", "potential steps a CV may use", "mV")]


def _parameter_problem(exc: InvalidParameter) -> Problems:
    """A parameter error (``field: why``) as the located problem campaign validation reports."""
    field, _, why = str(exc).partition(": ")
    return Problems(Problem((field,), why))

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
    volume_ml: Volume
    rate_ml_min: FlowRate
    fluid: Literal["sample", "electrolyte"]
    refill: Bool = False


class Wait(Step):
    name: ClassVar[str] = "wait"
    seconds: Annotated[float, Strict(), Field(ge=0, le=MAX_WAIT_S, allow_inf_nan=False)]


def _compensation_mapping(value: Any) -> Any:
    """A cv's ``ir_compensation`` written as the share alone (``0.85``): said in plain words, where pydantic asked for
    "a valid dictionary or instance of IRCompensation" (an adversarial trial)."""
    if value is not None and not isinstance(value, dict | IRCompensation):
        raise ValueError("must be a mapping, e.g. {fraction: 0.85} (the share of the measured Ru compensated)")
    return value


class IRCompensation(BaseModel):
    """Share of the measured Ru the potentiostat compensates by positive feedback (85% is usual: more
    risks oscillation); the rest is corrected in the analysis."""

    model_config = STEP
    fraction: Annotated[float, Strict(), Field(ge=0, allow_inf_nan=False), AfterValidator(_share)] = 0.85


class CV(Step):
    name: ClassVar[str] = "cv"
    potentiostat: str | None = None
    e_begin_v: Number | None = None
    e_vertex1_v: Number | None = None
    e_vertex2_v: Number | None = None
    half_width_v: PositiveNumber | None = None
    scan_rate_v_s: ScanRate = 0.1
    e_step_v: PotentialStep = 0.002
    n_scans: Annotated[int, Strict(), Field(ge=1, le=100)] = 1
    current_range_a: Annotated[PositiveNumber, _current("a current range")] | None = None
    ir_compensation: Annotated[IRCompensation | None, BeforeValidator(_compensation_mapping)] = None
    electrode_area_cm2: PositiveNumber = 0.0707  # for D from the scan rates (a 3 mm disk)
    #: electrons the analyte's couple takes in its one wave (a quinone's two in a protic electrolyte): D's
    #: Randles-Sevcik n^1.5, the reversibility class's dEp cut-offs (57 mV / n for a reversible couple at 25 C) and
    #: Nicholson's k0 read it. Why: a two-electron wave analysed as one electron's read D 8 times high, unsaid
    n_electrons: Annotated[int, Strict(), Field(ge=1, le=MOST_ELECTRONS_IN_A_WAVE)] = 1
    #: the analyte's concentration in the cell (mM) D is computed with, as written; without it (and without
    #: ``sample_stock_mm``) D is not computed
    analyte_mm: PositiveNumber | None = None
    #: the concentration (mM) of the sample's stock, which the protocol's ``fluid: sample`` dispenses draw from: with
    #: it D is computed with the cell's concentration, stock x the sample's mL / the cell's mL by labloop's count
    #: (:func:`written_cell`), whatever volumes the protocol dispenses; ``analyte_mm`` beside it must agree with the
    #: protocol as written (:data:`ANALYTE_AGREEMENT`). Why: a trial halved the sample's dispense and kept analyte_mm,
    #: (0.53 mM in the cell), and D came out at 28% of the analyte's, unsaid
    sample_stock_mm: PositiveNumber | None = None
    scan_rates_v_s: Annotated[list[ScanRate], Field(min_length=2, max_length=8)] | None = Field(
        None, title="scan rates (V/s)", examples=[[0.1, 0.2, 0.5]])
    #: seconds the cell rests, still, before each scan rate's scan (CH Instruments' "quiet time", Gamry's "equilibration
    #: time"): without it a multi-rate cv scanned the next rate at once, in the diffusion layer the last one left, and
    #: the dispense's stirring before the first. Default 0, as protocols written before it ran (a journal's protocol is
    #: run again as written on resume); the shipped lab-grade protocol rests 10 s (docs/lab-grade.md)
    rest_s: Annotated[float, Strict(), Field(allow_inf_nan=False),
                      _within(0.0, MAX_REST_S, "s", "rests a cv may take before a scan", "ms")] = 0.0

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
        elif any(e is None for e in written):  # at the first one missing (e_vertex2_v alone was said at e_begin_v)
            missing = next(name for name, e in zip(("e_begin_v", "e_vertex1_v", "e_vertex2_v"), written, strict=True)
                           if e is None)
            raise Problems(Problem((missing,), "give e_begin_v, e_vertex1_v and e_vertex2_v (V vs the "
                                               "reference electrode), or half_width_v"))
        else:
            try:
                self.params()
            except InvalidParameter as exc:
                raise _parameter_problem(exc) from None
        return self

    @model_validator(mode="after")
    def _distinct_rates(self) -> CV:
        """Each of ``scan_rates_v_s`` once. Why: the rates are the x of D's Randles-Sevcik line (ip against sqrt(v))
        and of dEp's trend that judges reversibility; a rate repeated adds no point to either, and rates all alike
        leave the line through the origin a slope but no test of it (a chemist's trial: [0.1, 0.1, 0.1] validated,
        and the run reported D with an r^2 of 0). ``n_scans`` repeats a scan at one rate."""
        rates = self.scan_rates_v_s or []
        if rates and "scan_rate_v_s" in self.model_fields_set:  # the list ran, the one rate unsaid (a chemist's trial)
            raise Problems(Problem(("scan_rate_v_s",), f"{compact(self.scan_rate_v_s)} V/s beside scan_rates_v_s: the "
                                                       "cv runs the rates of scan_rates_v_s; give one of the two"))
        repeated = [rate for rate in dict.fromkeys(rates) if rates.count(rate) > 1]
        if repeated:
            given = ", ".join(f"{compact(rate)} V/s {rates.count(rate)} times" for rate in repeated)
            raise Problems(Problem(("scan_rates_v_s",), f"gives {given}: D's Randles-Sevcik fit needs each rate once "
                                                        f"and at least 2 different ones (here {len(set(rates))}), e.g. "
                                                        "[0.1, 0.2, 0.5, 1.0] (n_scans repeats a scan at one rate)"))
        return self

    @property
    def around_candidate(self) -> bool:
        return self.half_width_v is not None

    @property
    def rates(self) -> tuple[float, ...]:
        """The scan rates this step runs, in order (``scan_rates_v_s``, or the one ``scan_rate_v_s``)."""
        return tuple(self.scan_rates_v_s) if self.scan_rates_v_s else (self.scan_rate_v_s,)

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
            # to the nanovolt: float noise (0.15 - 1.85 is -1.7000000000000002) kept a window moved to a limit from
            # lying within it, and the run refused every experiment that validate passed (an adversarial trial)
            begin = vertex2 = round(centre_v - sign * self.half_width_v, 9)
            vertex1 = round(centre_v + sign * self.half_width_v, 9)
        return CVParams(e_begin_v=begin, e_vertex1_v=vertex1, e_vertex2_v=vertex2, scan_rate_v_s=self.scan_rate_v_s,
                        e_step_v=self.e_step_v, n_scans=self.n_scans, current_range_a=self.current_range_a)


class Rinse(Step):
    name: ClassVar[str] = "rinse"


class Purge(Step):
    """Bubble ``gas`` through the cell for ``minutes`` (at most two hours) to drive out dissolved O2."""

    name: ClassVar[str] = "purge"
    minutes: Annotated[float, Strict(), Field(gt=0, allow_inf_nan=False),
                       _within(0.0, MAX_PURGE_MIN, "min", "purge times a step may take", "s", factor=1 / 60)]
    gas: str = "argon"
    valve: str | None = None  # a gas-valve instrument, "manual" to ask the operator, None: the rig's only valve


class Blank(Step):
    """A CV of the electrolyte alone, judged by :func:`labloop.instruments.cv_analysis.analyze_blank`. Its default
    window (-1..1 V vs the reference, 2.2..4.2 V vs Li/Li+ at the default offset) reaches where O2 reduces in a
    lithium-salt electrolyte; a blank should also span what the protocol's cv scans, or a wave there goes unseen,
    which validate warns of (``Campaign._blank_short`` in orchestrator/config/campaign.py)."""

    name: ClassVar[str] = "blank"
    potentiostat: str | None = None
    e_begin_v: Number = 0.0
    e_vertex1_v: Number = -1.0
    e_vertex2_v: Number = 1.0
    scan_rate_v_s: ScanRate = 0.1
    e_step_v: PotentialStep = 0.005
    max_current_a: Annotated[PositiveNumber, _current("a blank's current")] = 2e-6
    on_fail: Literal["stop", "clean"] = "stop"

    @model_validator(mode="after")
    def _window(self) -> Blank:
        try:
            self.params()
        except InvalidParameter as exc:
            raise _parameter_problem(exc) from None
        return self

    def params(self) -> CVParams:
        return CVParams(e_begin_v=self.e_begin_v, e_vertex1_v=self.e_vertex1_v, e_vertex2_v=self.e_vertex2_v,
                        scan_rate_v_s=self.scan_rate_v_s, e_step_v=self.e_step_v)


class EIS(Step):
    """An impedance sweep measuring Ru (:class:`labloop.instruments.impedance.EISParams`)."""

    name: ClassVar[str] = "eis"
    potentiostat: str | None = None
    f_high_hz: PositiveNumber = 100e3
    f_low_hz: PositiveNumber = 10.0
    points: Annotated[int, Strict(), Field(ge=2, le=1000)] = 31
    amplitude_v: Annotated[PositiveNumber, _within(0.0, MAX_AC_AMPLITUDE_V, "V", "AC amplitudes a sweep may use",
                                                   "mV")] = 0.01
    e_dc_v: Number = 0.0

    @model_validator(mode="after")
    def _sweep(self) -> EIS:
        try:
            self.params()
        except InvalidParameter as exc:
            raise _parameter_problem(exc) from None
        return self

    def params(self) -> EISParams:
        return EISParams(f_high_hz=self.f_high_hz, f_low_hz=self.f_low_hz, points=self.points,
                         amplitude_v=self.amplitude_v, e_dc_v=self.e_dc_v)


#: how far from Fc+/Fc an internal standard may sit (V): cobaltocenium, the farthest in use, is about 1.3 V below
STANDARD_VS_FC_RANGE_V = (-2.0, 1.0)
#: the standard whose couple is Fc+/Fc itself
FERROCENE = "ferrocene"
#: where the usual alternatives to ferrocene sit vs Fc+/Fc (V), in acetonitrile, with a margin for other solvents: a
#: standard_vs_fc_v outside it is warned of (:func:`unit_warnings`); decamethylferrocene about -0.5 V (-0.4 to -0.6 in
#: other solvents), cobaltocenium about -1.33 V (N. G. Connelly and W. E. Geiger, Chem. Rev. 96 (1996) 877, table 3)
KNOWN_STANDARDS_VS_FC_V = {"decamethylferrocene": (-0.65, -0.35), "cobaltocenium": (-1.5, -1.15),
                           "cobaltocene": (-1.5, -1.15)}


class AddStandard(Step):
    """Dispense the internal standard's stock from ``pump`` and measure both couples in one more CV (only the
    standard's position matters, not its concentration, so none is asked for).

    ``standard`` names it (ferrocene by default) and ``standard_vs_fc_v`` is where its couple sits against Fc+/Fc in
    the campaign's electrolyte: the analyte's E1/2 against the standard, plus that, is its E1/2 vs Fc+/Fc. Why
    another standard: an analyte within 200 mV of ferrocene (a phenothiazine catholyte, 0.2-0.3 V above it) cannot
    be told apart from it, and every such experiment failed ``no_standard`` (a chemist's trial); decamethylferrocene
    (about -0.5 V vs Fc+/Fc in acetonitrile) or cobaltocenium (about -1.3 V) sits clear of it. The value depends
    on the solvent, so one is asked for any standard but ferrocene, not assumed."""

    name: ClassVar[str] = "add_standard"
    pump: str
    volume_ml: Volume
    rate_ml_min: FlowRate = 1.0
    potentiostat: str | None = None
    refill: Bool = False
    standard: Annotated[str, Strict(), Field(min_length=1)] = FERROCENE
    standard_vs_fc_v: Annotated[float, Strict(), Field(allow_inf_nan=False),
                                _within(*STANDARD_VS_FC_RANGE_V, "V", "places of a standard vs Fc+/Fc", "mV")] \
        | None = None

    @model_validator(mode="after")
    def _placed_against_ferrocene(self) -> AddStandard:
        """Ferrocene sits at 0 V vs itself; any other standard says where it sits (module docstring)."""
        if self.standard.strip().lower() == FERROCENE:
            if self.standard_vs_fc_v not in (None, 0.0):
                raise Problems(Problem(("standard_vs_fc_v",), f"{compact(self.standard_vs_fc_v)} V: ferrocene sits "
                                       "at 0 V vs Fc+/Fc; leave it out, or name the standard that sits there"))
        elif self.standard_vs_fc_v is None:
            raise Problems(Problem(("standard_vs_fc_v",), f"missing: where {self.standard}'s couple sits vs Fc+/Fc "
                                   "in this electrolyte, in V (decamethylferrocene about -0.5, cobaltocenium about "
                                   "-1.3 in acetonitrile: measure yours against ferrocene)"))
        return self

    @property
    def vs_fc_v(self) -> float:
        """Where the standard's couple sits vs Fc+/Fc (V): 0 for ferrocene."""
        return self.standard_vs_fc_v or 0.0


class Clean(Step):
    """Rinse the cell and flush it with ``volume_ml`` of electrolyte from ``pump``; no pump: ask the operator."""

    name: ClassVar[str] = "clean"
    pump: str | None = None
    volume_ml: Volume = 1.0
    rate_ml_min: FlowRate = 5.0
    refill: Bool = False

    @model_validator(mode="after")
    def _refill_needs_pump(self) -> Clean:
        if self.refill and self.pump is None:
            raise Problems(Problem(("refill",), "a clean without a pump asks the operator, so there is no "
                                                "syringe to refill: give a pump, or drop refill"))
        return self


class Polish(Step):
    """Ask the operator to polish the working electrode (alumina slurry), rinse it and put it back."""

    name: ClassVar[str] = "polish"


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
            raise Problems(Problem((unknown[0],), _unknown(unknown[0], fields)))
        try:
            return {"settings": CVAnalysisSettings(**data)}
        except InvalidParameter as exc:
            raise _parameter_problem(exc) from None
        except TypeError as exc:
            raise Problems(Problem((), str(exc))) from None


STEPS: dict[str, type[Step]] = {step.name: step for step in (LoadSample, Dispense, Wait, CV, Rinse, Analyze, Purge,
                                                              Blank, EIS, AddStandard, Clean, Polish)}
#: the step names a protocol may use
PROTOCOL_STEPS: tuple[str, ...] = tuple(STEPS)


def protocol_json_schema() -> dict[str, Any]:
    """The JSON Schema of a campaign's ``protocol``: a YAML file's path, or the steps written inline, each a bare
    name (a step whose parameters all have defaults) or ``{name: {parameters}}`` with each step's own parameters.
    Why: ``labloop schema`` said a file's path only, so an editor refused the inline protocols labloop accepts
    and README shows, and completed no step (a newcomer's trial). The structure a protocol must also have (one
    cv, a sample loaded before it is dispensed) is validate's, not the schema's."""
    bare = sorted(name for name, model in STEPS.items()
                  if not any(field.is_required() for field in model.model_fields.values()))
    steps: list[dict[str, Any]] = [{"enum": bare}]
    for name, model in STEPS.items():
        schema = _inline_refs(model.model_json_schema())
        steps.append({"type": "object", "properties": {name: schema}, "required": [name],
                      "additionalProperties": False, "title": name})
    return {"anyOf": [{"type": "string", "description": "a YAML file listing the steps, relative to the campaign's "
                                                        "file"},
                      {"type": "array", "minItems": 1, "items": {"anyOf": steps},
                       "description": "the steps, inline: a bare name or {name: {parameters}} each"}],
            "description": "the steps of one experiment (docs/protocols.md)"}


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with each ``$ref`` to its own ``$defs`` replaced by the definition (the definitions of a step's
    nested settings, e.g. its iR compensation), so it can sit inside another schema."""
    defs = schema.pop("$defs", {})

    def inlined(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inlined(defs[ref.removeprefix("#/$defs/")])
            return {key: inlined(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inlined(value) for value in node]
        return node

    return inlined(schema)


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
            found.append(Problem(where, MISSING))
        elif item["type"] == "extra_forbidden":
            found.append(Problem(where, _unknown(str(where[-1]), _fields(loc))))
        elif (shaped := shape_message(item["type"], item.get("input"), item.get("ctx"),
                                      field_at(STEPS[str(loc[-1])], tuple(item["loc"])))) is not None:
            found.append(Problem(where, shaped))
        else:
            # pydantic's "Input should be ..." as the campaign's checks word it, "must be ..." (an adversarial trial)
            said = must(item["msg"].removeprefix("Value error, "))
            found.append(Problem(where, f"{said} (got {shown(item.get('input'))})"))
    return found


@cache
def _step_homes() -> dict[str, tuple[str, ...]]:
    """Which steps take each parameter (:func:`field_homes` over :data:`STEPS`; analyze's are its settings' fields)."""
    homes = field_homes(tuple((name, model) for name, model in STEPS.items() if model is not Analyze))
    for name in CVAnalysisSettings.__dataclass_fields__:
        homes[name] = (*homes.get(name, ()), Analyze.name)
    return homes


def _unknown(name: str, valid: Iterable[str]) -> str:
    """A parameter this step does not take: where it belongs if another step takes it (``analyte_mm`` in a blank:
    ``unknown field here; it belongs under cv:``), else the step's ``valid`` parameters."""
    return unknown_here(name, _step_homes()) or unknown_field(name, list(valid))


def _fields(loc: tuple[str | int, ...]) -> list[str]:
    model = STEPS[str(loc[-1])]
    return list(CVAnalysisSettings.__dataclass_fields__) if model is Analyze else list(model.model_fields)


def analysis_settings(steps: Sequence[Step]) -> CVAnalysisSettings | None:
    """The settings of the protocol's ``analyze`` step (None: the analysis' defaults), which every analysis of its
    cv uses: each scan rate's, and so the reversibility called over the rates and the rule said for it. Why one
    place: the scan rates were analysed by the defaults while the analyze step changed the cut-offs (an
    electrochemist's trial: a quasi-reversible call by 80 mV under a protocol that set another)."""
    return next((step.settings for step in steps if isinstance(step, Analyze)), None)


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
    loaded = sampled = False
    for index, step in enumerate(steps):
        loaded = loaded or isinstance(step, LoadSample)
        if isinstance(step, Dispense) and step.fluid == "sample" and not loaded:
            problems.append(Problem((index, "dispense", "fluid"), "dispenses the sample before load_sample"))
        sampled = sampled or (isinstance(step, Dispense) and step.fluid == "sample")
        if isinstance(step, Blank) and sampled:
            problems.append(Problem((index, "blank"), "the blank measures the electrolyte alone: put it before the "
                                                      "sample is dispensed"))
    first_eis = next((i for i, s in enumerate(steps) if isinstance(s, EIS)), None)
    for index in cvs:
        cv = steps[index]
        assert isinstance(cv, CV)
        if cv.ir_compensation is not None and (first_eis is None or first_eis > index):
            problems.append(Problem((index, "cv", "ir_compensation"), "needs an eis step before the cv (it "
                                                                      "compensates the Ru measured there)"))
    for index, step in enumerate(steps):
        if isinstance(step, AddStandard) and (not cvs or index < cvs[0]):
            problems.append(Problem((index, "add_standard"), "comes after the cv: the analyte is located alone "
                                                             "first, then against the standard"))
    problems.extend(_stock_problems(steps, cvs))
    holds: dict[str, tuple[str, int]] = {}  # pump -> (the liquid its syringe holds, the step that said so)
    for index, step in enumerate(steps):
        fluid = _fluid_of(step)
        if fluid is None:
            continue
        held, first = holds.setdefault(step.pump, (fluid, index))  # type: ignore[attr-defined]
        if held != fluid:
            problems.append(Problem((index, step.name, "pump"),
                                    f"{step.pump!r} holds the {held} (protocol[{first}]), not the {fluid}: a syringe "  # type: ignore[attr-defined]
                                    "holds one liquid, so give this step another pump"))
    return problems


#: how far (as a share of it) a cv's ``analyte_mm`` may lie from the concentration its ``sample_stock_mm`` and the
#: protocol's volumes make before it is refused: a few % is a rounding (0.5 mL of a 10 mM stock in 5.1 mL make 0.98
#: mM, written 1), more is a volume changed and the concentration kept (a trial: 0.25 mL of the sample in 4.75 mL,
#: 0.53 mM, analyte_mm 1 kept, and D came out at 28% of the analyte's)
ANALYTE_AGREEMENT = 0.05


def written_cell(steps: Sequence[Step], end: int) -> tuple[float, float]:
    """(the sample's mL, the cell's mL) after ``steps[:end]`` as written, from an empty cell: what labloop's count of
    the cell (:class:`Contents`) holds there in a campaign's first experiment, a rinse emptying the cell, a clean
    emptying it and then filling it with its flush; the sample's mL are those of the ``fluid: sample`` dispenses since
    the last emptying. The run computes the same from what the pumps reported delivering."""
    sample = cell = 0.0
    for step in steps[:end]:
        if empties(step):
            sample = cell = 0.0
        if pumps(step):
            cell += step.volume_ml  # type: ignore[attr-defined]
            if isinstance(step, Dispense) and step.fluid == "sample":
                sample += step.volume_ml
    return round(sample, 9), round(cell, 9)


def in_cell(stock_mm: float, sample_ml: float, cell_ml: float) -> float:
    """The concentration (mM) ``sample_ml`` of a ``stock_mm`` stock makes in ``cell_ml`` (0 in an empty cell)."""
    return stock_mm * sample_ml / cell_ml if cell_ml > 0 else 0.0


def _stock_problems(steps: Sequence[Step], cvs: Sequence[int]) -> list[Problem]:
    """A cv's ``sample_stock_mm`` without a sample dispensed before it (no concentration follows from the stock), or
    with an ``analyte_mm`` that the stock and the protocol's volumes as written do not make (within
    :data:`ANALYTE_AGREEMENT`): one line at the field, naming both fields and the two numbers."""
    found = []
    for index in cvs:
        cv = steps[index]
        assert isinstance(cv, CV)
        if cv.sample_stock_mm is None:
            continue
        sample, cell = written_cell(steps, index)
        if sample <= 0:
            found.append(Problem((index, "cv", "sample_stock_mm"),
                                 "no dispense of the sample (fluid: sample) fills the cell before this cv (after its "
                                 "last rinse or clean), so no concentration in the cell follows from the stock: "
                                 "dispense the sample before the cv, or give analyte_mm instead"))
            continue
        made = in_cell(cv.sample_stock_mm, sample, cell)
        if cv.analyte_mm is not None and abs(cv.analyte_mm - made) > ANALYTE_AGREEMENT * made:
            found.append(Problem((index, "cv", "analyte_mm"),
                                 f"{compact(cv.analyte_mm)} mM disagrees with sample_stock_mm "
                                 f"{compact(cv.sample_stock_mm)} mM x {compact(sample)} mL of sample / "
                                 f"{compact(cell)} mL in the cell = {made:.3g} mM, the concentration the protocol's "
                                 f"volumes make: correct one, or leave analyte_mm out (D uses the stock's "
                                 f"{made:.3g} mM)"))
    return found


def _fluid_of(step: Step) -> str | None:
    """The liquid a pumping step takes from its pump's syringe: the sample, the electrolyte, the standard."""
    if isinstance(step, Dispense):
        return step.fluid
    if isinstance(step, AddStandard):
        return "standard"
    if isinstance(step, Clean) and step.pump is not None:
        return "electrolyte"
    return None


def unit_warnings(steps: Sequence[Step]) -> list[Problem]:
    """What ``steps`` allow but is most likely a units slip, located like parse problems (``(index, step, field)``):
    an analyte below :data:`MIN_ANALYTE_MM` or from :data:`MAX_ANALYTE_MM` (a stock from
    :data:`MAX_STOCK_MM`), an electrode area above
    :data:`MAX_LIKELY_AREA_CM2`, an eis sweep's ``f_high_hz`` below :data:`MIN_LIKELY_F_HIGH_HZ`; and, no unit but as
    likely a slip of the pen, an ``ir_compensation.fraction`` above :data:`MAX_STABLE_IR_FRACTION`. Warned about, not
    refused: a trace analyte, a plate electrode, a low sweep or full compensation can be meant, but a molar value
    written as millimolar, or mm2 as cm2, would put every diffusion coefficient of the night a million or ten
    thousand times off, a sweep in kHz written as Hz would compensate every CV's ohmic drop with a Ru from far below
    its intercept, and full compensation can set the potentiostat oscillating. A known standard other than ferrocene
    placed where it does not sit vs Fc+/Fc (:data:`KNOWN_STANDARDS_VS_FC_V`; decamethylferrocene written +0.5 V passed
    unsaid, an electrochemist's trial) is warned of too: its value can be the electrolyte's own."""
    found = []
    for index, step in enumerate(steps):
        if isinstance(step, EIS) and step.f_high_hz < MIN_LIKELY_F_HIGH_HZ:
            hint = units_hint(step.f_high_hz, PICO_FREQUENCY_RANGE_HZ, "kHz", "Hz", factor=1e3)
            found.append(Problem((index, step.name, "f_high_hz"),
                                 f"{compact(step.f_high_hz)} Hz is too low a top frequency to reach the solution "
                                 f"resistance (Ru lies above the double layer's arc, from about "
                                 f"{compact(MIN_LIKELY_F_HIGH_HZ)} Hz up){hint}"))
        if isinstance(step, CV) and step.ir_compensation is not None \
                and step.ir_compensation.fraction > MAX_STABLE_IR_FRACTION:
            found.append(Problem((index, step.name, "ir_compensation", "fraction"),
                                 f"{compact(step.ir_compensation.fraction)} of Ru compensated by positive feedback "
                                 f"risks the potentiostat oscillating (above {compact(MAX_STABLE_IR_FRACTION)} its "
                                 "loop is barely damped; 0.85 is the usual compromise, the analysis corrects the "
                                 "rest)"))
        if isinstance(step, AddStandard) and (known := KNOWN_STANDARDS_VS_FC_V.get(step.standard.strip().lower())) \
                and not known[0] <= step.vs_fc_v <= known[1]:
            flipped = " (its sign slipped?)" if known[0] <= -step.vs_fc_v <= known[1] else ""
            found.append(Problem((index, step.name, "standard_vs_fc_v"),
                                 f"{step.vs_fc_v:+g} V vs Fc+/Fc: {step.standard} sits at {known[0]:+g} to "
                                 f"{known[1]:+g} V in the usual solvents{flipped}: every potential referenced through "
                                 "it moves by the difference"))
        if not isinstance(step, CV) or (step.analyte_mm is None and step.sample_stock_mm is None):  # no D computed
            continue
        for field in ("analyte_mm", "sample_stock_mm"):
            value = getattr(step, field)
            if value is not None and value < MIN_ANALYTE_MM:
                hint = units_hint(value, (MIN_ANALYTE_MM, math.inf), "molar", "millimolar", factor=1e3, unit="mM")
                found.append(Problem((index, step.name, field),
                                     f"{compact(value)} mM is less analyte than a CV sees on a mm-size electrode "
                                     f"(below {compact(MIN_ANALYTE_MM)} mM its peaks sink under the charging "
                                     f"current){hint}"))
            most, why = MOST_ANALYTE[field]
            if value is not None and value >= most:
                hint = units_hint(value, (0.0, most), "uM", "mM")
                found.append(Problem((index, step.name, field),
                                     f"{compact(value)} mM is more analyte than {why} (from {compact(most)} mM)"
                                     f"{hint}"))
        if step.electrode_area_cm2 > MAX_LIKELY_AREA_CM2:
            hint = units_hint(step.electrode_area_cm2, (0.0, MAX_LIKELY_AREA_CM2), "mm2", "cm2", factor=1e-2)
            found.append(Problem((index, step.name, "electrode_area_cm2"),
                                 f"{compact(step.electrode_area_cm2)} cm2 is a plate, not a CV's disk electrode (a "
                                 f"3 mm disk is 0.0707 cm2){hint}"))
    return found


def limit_problems(steps: Sequence[Step], limits: SafetyLimits,
                   pump_limits: Mapping[str, SafetyLimits] | None = None, *, experiments: int = 1,
                   start: Mapping[str, float] | None = None) -> list[Problem]:
    """Explicit potentials and volumes of ``steps`` beyond the safety limits (``pump_limits``: a pump's own,
    by name), the protocol run ``experiments`` times (the budget: :func:`repeat_problem`, from ``start``: what a
    pump's syringe holds when the campaign starts, if not full), located like parse problems (``(index, step,
    field)``), so a campaign refuses them with the line before anything runs."""
    low, high = limits.potential_window_v
    problems = []
    for index, step in enumerate(steps):
        for field in ("e_begin_v", "e_vertex1_v", "e_vertex2_v", "e_dc_v"):
            value = getattr(step, field, None)
            if value is not None and not low <= value <= high:
                hint = ((units_hint(value, (low, high), "millivolts", "volts", unit="")
                         or f": {slip('millivolts', 'volts')}") if abs(value) >= MILLIVOLTS_LIKELY_V else "")
                problems.append(Problem((index, step.name, field), f"{value:g} V is outside the safety window "
                                                                   f"{low:g}..{high:g} V{hint}"))
        width = getattr(step, "half_width_v", None)
        if width is not None and 2 * width > high - low:
            hint = ((units_hint(width, (0, (high - low) / 2), "millivolts", "volts", unit="")
                     or f": {slip('millivolts', 'volts')}") if width >= MILLIVOLTS_LIKELY_V else "")
            # the one message of a window with no place, naming the widest that fits (a newcomer's read: this one
            # said "cannot fit in the safety window" without it, where the potentiostat's range said it)
            refusal = half_width_problem(width, None, 0.0, (low, high), "safety.potential_limits_v",
                                         step_v=step.e_step_v)  # type: ignore[attr-defined]  # a cv's
            problems.append(Problem((index, step.name, "half_width_v"), f"{refusal[1] if refusal else ''}{hint}"))
    for index, field, exc in pumping_problems(steps, limits, pump_limits, experiments=experiments, start=start):
        pump = steps[index].pump  # type: ignore[attr-defined]  # a pumping step's
        note = loaded_note(pump, start[pump]) if start and pump in start else ""
        problems.append(Problem((index, steps[index].name, field), exc.what + note))
    return problems


def loaded_note(pump: str, content_ml: float) -> str:
    """What a refusal of ``pump``'s step adds when its syringe starts the campaign partly filled (``content_ml``):
    where that content was said, so the person reading it knows the count did not start from a full syringe."""
    return f"; {pump}'s syringe starts the campaign with {content_ml:g} mL, as instruments.{pump}.options say: fill " \
           "it, and say so there"


#: step parameters that set up the rig rather than the measurement, and what each says instead: a planner varying
#: one (``conditions: {fluid: {choices: [sample, electrolyte]}}``) would relabel which syringe holds the sample, send a
#: pump's command to another instrument, or report D for a concentration nobody made, so ``conditions`` refuses them
SETUP_PARAMETERS: dict[str, str] = {
    "changer": "names an instrument of the rig", "pump": "names an instrument of the rig",
    "potentiostat": "names an instrument of the rig", "valve": "names an instrument of the rig",
    "fluid": "says what a syringe holds", "refill": "says how a syringe is kept full",
    "on_fail": "says what the rig does when a blank fails", "gas": "says what the gas line holds",
    "analyte_mm": "states what the stock holds (D is computed with it)",
    "sample_stock_mm": "states what the stock holds (D is computed with it)",
    "electrode_area_cm2": "states the working electrode's size (D is computed with it)",
}


def aimed_hits(hits_v: tuple[float, float], reference_offset_v: float) -> tuple[float, float]:
    """The objective's hits ``hits_v`` (V vs Li/Li+, one end infinite for a threshold) as the planner aims at them,
    V vs the reference at ``reference_offset_v``: a window as it is, a threshold at the threshold alone. Why: a
    threshold's hits run on without end, and no window fits around all of them; the planner's aim lies at the
    threshold, so that is where a window around the candidate scans (the campaign's electrolyte and blank checks,
    orchestrator/config/campaign.py)."""
    low, high = (h - reference_offset_v for h in hits_v)
    return (high, high) if math.isinf(low) else (low, low) if math.isinf(high) else (low, high)


def window_centres(half_width_v: float, step_v: float, span_v: tuple[float, float]) -> tuple[float, float] | None:
    """The lowest and highest centre (V vs the reference) a cv window of +/- ``half_width_v`` can have within
    ``span_v``, its centre on the ``e_step_v`` grid of ``step_v`` as :meth:`CV.params` puts it; None when no centre on
    the grid holds it: a window that fits the span's width by less than a step (+/-1.85 V in -1.7..2 V at 4 mV
    steps) has no place in it. Why one function: the run moves a window within the span by it (protocols/executor.py
    ``_within_limits``) and :func:`half_width_problem` judges by it, so ``validate`` refuses what the run would (a
    trial: validate passed +/-1.85 V at 4 mV steps and the run refused every proposal)."""
    low, high = span_v
    lowest = math.ceil((low + half_width_v) / step_v - 1e-9) * step_v
    highest = math.floor((high - half_width_v) / step_v + 1e-9) * step_v
    return None if highest < lowest else (lowest, highest)


def half_width_problem(half_width_v: float, hits_v: tuple[float, float] | None, reference_offset_v: float,
                       span_v: tuple[float, float], span: str, *, step_v: float) -> tuple[bool, str] | None:
    """Whether a cv window of +/- ``half_width_v`` around a candidate's predicted potential can scan the candidates
    the planner aims at, those predicted in ``hits_v`` (V vs Li/Li+, the objective's window, or its threshold and
    beyond: one end infinite; None for an objective without hits), within ``span_v`` (V vs the reference at
    ``reference_offset_v``: the safety limits, or a potentiostat's range, named ``span``), its centre on the grid of
    ``step_v``. A window that leaves the span is moved within it (protocols/executor.py ``_within_limits``), so it
    holds every hit that lies within the span, as long as the window has a place in the span at all
    (:func:`window_centres`): None then. Else (refused, why): refused when the window has no place in the span
    (wider than it, or off the step grid), or when no hit lies within it, since then every candidate the planner aims
    at is scanned short of its wave and no hit can ever be measured (a campaign lost ten proposals in a row to that);
    a warning when part of a window's hits lies beyond it (a threshold's run on past any limit).

    Why judged on the hits and not on the library: the run centres the window on each prediction, which moves with
    the calibration, but the planner aims at the objective, so that is where the predictions it measures lie. Why
    not the window around each hit, as this judged before windows moved: a window that fits around part of the hits
    was warned of as refusing candidates the run scans in a window moved within the span (a newcomer's read)."""
    low, high = span_v
    tolerance = 1e-9  # 4.6 - 3.2 + 0.6 is 2.0000000000000004
    where = f"{span} {compact(low)}..{compact(high)} V"
    if window_centres(half_width_v, step_v, span_v) is None:
        # the widest window the grid holds: centred on the grid point nearest the span's middle
        middle = (low + high) / 2 / step_v
        widest = max(min(k * step_v - low, high - k * step_v) for k in (math.floor(middle), math.ceil(middle)))
        off_grid = ("" if 2 * half_width_v > high - low + tolerance else
                    f" with its centre on the e_step_v grid of {compact(step_v)} V")
        return True, (f"a window of +/-{compact(half_width_v)} V cannot lie within {where}{off_grid}; half_width_v "
                      f"{compact(_floor(widest))} fits")
    if hits_v is None:
        return None
    h_low, h_high = (h - reference_offset_v for h in hits_v)
    beyond = h_low > high + tolerance or h_high < low - tolerance
    # a threshold's hits run on without end, past any limit: judged only whether they all lie beyond (a minimize
    # threshold at 2.1 V vs the reference over limits to 2 V was refused, most of its hits within: a trial)
    partly = not (math.isinf(h_low) or math.isinf(h_high)) and (h_low < low - tolerance or h_high > high + tolerance)
    if not (beyond or partly):
        return None
    scale = (f"{_hits(hits_v, 'vs Li/Li+')}, {_hits((h_low, h_high), 'vs the reference')} at "
             f"cell.reference_offset_v {compact(reference_offset_v)} V")
    if beyond:
        return True, (f"the objective's hits ({scale}) lie beyond {where}: a window around a prediction there is "
                      "moved within them, short of the wave, so no hit can be measured; check the objective, "
                      "cell.reference_offset_v and the limits")
    return False, (f"part of the objective's hits ({scale}) lies beyond {where}: a candidate predicted there is "
                   "scanned in a window moved within them, short of its wave")


def _hits(hits_v: tuple[float, float], scale: str) -> str:
    """``4.5..4.6 V vs Li/Li+``, ``4.5 V vs Li/Li+ and above`` or ``... and below``: where hits lie on ``scale``."""
    low, high = (compact(round(h, 6)) for h in hits_v)
    if math.isinf(hits_v[1]):
        return f"{low} V {scale} and above"
    if math.isinf(hits_v[0]):
        return f"{high} V {scale} and below"
    return f"{low}..{high} V {scale}"


def _floor(width_v: float) -> float:
    """``width_v`` down to the millivolt, as a half-width to write (float noise kept from flooring 0.6 to 0.599):
    the widest that fits, which 10 mV steps said 1.84 of where 1.848 fits (a newcomer's read)."""
    return math.floor(width_v * 1000 + 1e-6) / 1000


def pumps(step: Step) -> bool:
    """Whether ``step`` pumps liquid into the cell: a dispense, an internal standard, a clean with a pump."""
    return isinstance(step, Dispense | AddStandard) or (isinstance(step, Clean) and step.pump is not None)


def refills(step: Step) -> bool:
    """Whether ``step`` refills its pump's syringe from the reservoir after it pumps (``refill: true``)."""
    return pumps(step) and step.refill  # type: ignore[attr-defined, no-any-return]


def pumping_problems(steps: Sequence[Step], limits: SafetyLimits, pump_limits: Mapping[str, SafetyLimits] | None = None,
                     *, experiments: int = 1, start: Mapping[str, float] | None = None
                     ) -> list[tuple[int, str, SafetyLimitExceeded]]:
    """(index, field, refusal) of every pumping step beyond the limits: its volume (against its pump's own
    syringe, ``pump_limits``, if it has one), its rate, and — the protocol run ``experiments`` times in a row
    (the budget), from an empty cell and full syringes (``start``: what a pump's syringe holds when the campaign
    starts, by name, if not full) — what the cell and its syringe would hold then (:func:`repeat_problem`). The one
    check of a pumping step, for the campaign (with the line) and the executor (before the first step runs), so no
    kind of step is left out of one of them."""
    found = []
    for index, step in enumerate(steps):
        if not pumps(step):
            continue
        own = (pump_limits or {}).get(step.pump, limits)  # type: ignore[attr-defined]
        # name the field that set the limit, so the fix is found in the campaign file
        whose = (f" ({step.pump}'s syringe, safety.syringes_ml)" if own.max_dispense_ml < limits.max_dispense_ml  # type: ignore[attr-defined]
                 else " (safety.max_dispense_ml)")
        volume = step.volume_ml  # type: ignore[attr-defined]
        # more than the cell holds is never meant: microlitres, if a thousandth fits the syringe
        whose += units_hint(volume, (MIN_VOLUME_ML, own.max_dispense_ml), "uL", "mL") \
            if volume > limits.cell_volume_ml else ""
        rate = step.rate_ml_min  # type: ignore[attr-defined]
        fast = " (safety.max_rate_ml_min)" + rate_hint(rate, (MIN_RATE_ML_MIN, limits.max_rate_ml_min))
        for field, check, says in (("volume_ml", partial(own.check_volume, volume), whose),
                                   ("rate_ml_min", partial(limits.check_rate, rate), fast)):
            try:
                check(where="")  # where="": the message alone, located by the caller
            except SafetyLimitExceeded as exc:
                found.append((index, field, SafetyLimitExceeded("", exc.what + says)))
    if not found:  # each volume fits its syringe and its rate the cap: what repetition leaves in cell and syringes
        repeated = repeat_problem(steps, Contents(limits, pump_limits or {}, syringes=dict(start or {})), experiments)
        found.extend([] if repeated is None else [repeated[:3]])
    return found


def empties(step: Step) -> bool:
    """Whether ``step`` empties the cell: a rinse, or a clean (which then fills it with its own volume)."""
    return isinstance(step, Rinse | Clean)


@dataclasses.dataclass
class Contents:
    """What the cell and each pump's syringe hold (mL), as labloop counts them: the one account every pumping
    step is checked against before its command is sent, whatever the pump's driver checks itself (a plug-in
    may check nothing), and which is carried from one experiment to the next, failed ones included.

    Why a count and not a reading: neither the cell nor a syringe can be asked what it holds. So the count
    errs on the full side for the cell and on the empty side for a syringe: a pumping step counts in full as
    soon as it is about to be sent (a dispense cut short may have delivered all of it), and an emptying or a
    refill only once it has ended. The cell starts empty; a syringe not counted yet is full (``syringe_ml``,
    its pump's own in ``pump_limits``), as the rig is set up before a campaign, unless ``syringes`` starts it
    with less (a pump whose instrument options say its syringe was loaded partly); filled by hand, it is full.
    """

    limits: SafetyLimits
    pump_limits: Mapping[str, SafetyLimits] = dataclasses.field(default_factory=dict)
    cell_ml: float = 0.0
    syringes: dict[str, float] = dataclasses.field(default_factory=dict)

    def limits_of(self, pump: str) -> SafetyLimits:
        """The limits of ``pump``: its own syringe's, or the rig's."""
        return self.pump_limits.get(pump, self.limits)

    def held(self, pump: str) -> float:
        """What ``pump``'s syringe holds (mL)."""
        return self.syringes.get(pump, self.limits_of(pump).syringe_ml)

    def refusal(self, pump: str, volume_ml: float, *, where: str) -> tuple[str, SafetyLimitExceeded] | None:
        """Why pumping ``volume_ml`` from ``pump`` into the cell is refused — ``("cell", refusal)``: more than
        the cell has room for; ``("syringe", refusal)``: more than the syringe holds (or than a dispense may
        be) — or None. The refusal's place is ``where`` and the pump, its message the volume and the limit."""
        place = f"{where}: {pump}" if where else pump
        for what, check in (("cell", partial(self.limits.check_cell, self.cell_ml, volume_ml)),
                            ("syringe", partial(self.limits_of(pump).check_dispense, volume_ml,
                                                content_ml=self.held(pump)))):
            try:
                check(where=place)
            except SafetyLimitExceeded as exc:
                return what, exc
        return None

    def check_pump(self, pump: str, volume_ml: float, *, where: str) -> None:
        """Raise the :meth:`refusal` of pumping ``volume_ml`` from ``pump`` into the cell, if any."""
        refused = self.refusal(pump, volume_ml, where=where)
        if refused is not None:
            raise refused[1]

    def check_refill(self, pump: str, volume_ml: float, *, where: str) -> None:
        """Refuse a refill of ``volume_ml`` that would overfill ``pump``'s syringe."""
        self.limits_of(pump).check_withdraw(volume_ml, content_ml=self.held(pump), where=f"{where}: {pump}")

    def pumped(self, pump: str, volume_ml: float) -> None:
        """Count ``volume_ml`` from ``pump``'s syringe into the cell; the syringe no lower than empty, where a pump's
        report of more than it held is counted (protocols/executor.py ``_pump``: its driver's error, the cell keeping
        the report's count)."""
        self.syringes[pump] = max(0.0, _rounded(self.held(pump) - volume_ml))
        self.cell_ml = _rounded(self.cell_ml + volume_ml)

    def unpumped(self, pump: str, volume_ml: float) -> None:
        """Take back :meth:`pumped`: the driver refused the command before sending it."""
        self.syringes[pump] = _rounded(self.held(pump) + volume_ml)
        self.cell_ml = _rounded(self.cell_ml - volume_ml)

    def filled(self) -> None:
        """Count every syringe as full again (filled by hand)."""
        self.syringes.clear()

    def refilled(self, pump: str, volume_ml: float) -> None:
        """Count a refill of ``pump``'s syringe from its reservoir."""
        self.syringes[pump] = _rounded(self.held(pump) + volume_ml)

    def emptied(self) -> None:
        """Count the cell as empty (a rinse or a clean has ended)."""
        self.cell_ml = 0.0

    def state(self) -> tuple[float, dict[str, float]]:
        """(what the cell holds, what each counted syringe holds), a copy."""
        return self.cell_ml, dict(self.syringes)


def _rounded(volume_ml: float) -> float:
    """``volume_ml`` to the picolitre: sums of decimal volumes keep no rounding residue (1.0 - 0.3 + 0.3 is
    1.0 again, a syringe emptied by ten thousand 1 uL dispenses holds 0), far below any pump's resolution."""
    return round(volume_ml, 9)


class RepeatProblem(NamedTuple):
    """What :func:`repeat_problem` found: the step's ``index``, the ``field`` to change, the ``refusal``, and
    what is ``full`` — ``"cell"`` (it would overflow: a person empties it) or ``"syringe"`` (it would run dry: a
    person fills it), so a stop names the one thing to do."""

    index: int
    field: str
    refusal: SafetyLimitExceeded
    full: Literal["cell", "syringe"]


def repeat_problem(steps: Sequence[Step], contents: Contents, experiments: int) -> RepeatProblem | None:
    """The first pumping step that would overfill the cell or take more than its syringe holds when
    ``steps`` run ``experiments`` times in a row from ``contents`` (each run a success: a failed one can
    only leave more in the cell, which the executor counts as it happens), as a :class:`RepeatProblem`.

    The rule ``validate`` applies: the budget's experiments, one after the other, with each step's refill as
    written, must never overfill the cell (a protocol that never empties it fills it a little more each
    time) nor empty a syringe (one that is never refilled runs dry). The field named is ``volume_ml``, or
    ``refill`` for a pumping step without one whose syringe runs dry. A budget of up to a million experiments is
    judged in a few of them: from the second experiment on the contents repeat (a protocol that empties the
    cell leaves it the same each time, a refill restores its syringe) or change by the same amounts each
    time, so the experiments that cannot reach a limit are skipped (:func:`_skippable`).
    """
    experiment = 1
    gross = _gross(steps)
    while experiment <= experiments:
        before = contents.state()
        for index, step in enumerate(steps):
            if empties(step):
                contents.emptied()
            if not pumps(step):
                continue
            pump, volume_ml = step.pump, step.volume_ml  # type: ignore[attr-defined]
            refused = contents.refusal(pump, volume_ml, where="")
            if refused is not None:
                what, exc = refused
                when = "" if experiment == 1 else (f"in experiment {experiment} of {experiments} "
                                                   "(budget.max_experiments), ")
                if what == "syringe" and not refills(step):
                    return RepeatProblem(index, "refill", SafetyLimitExceeded(
                        "", f"{when}{exc}, and it is never refilled (refill: true refills it after the {step.name})"),
                        "syringe")
                # a step that refills runs dry: another step on its pump takes from the syringe without refilling
                drain = next((i for i, other in enumerate(steps)
                              if pumps(other) and other.pump == pump and not refills(other)),  # type: ignore[attr-defined]
                             None) if what == "syringe" else None
                if drain is not None:
                    other = steps[drain]
                    return RepeatProblem(drain, "refill", SafetyLimitExceeded("", (
                        f"{when}{exc} at protocol[{index}].{step.name}: this {other.name} takes "
                        f"{other.volume_ml:g} mL from {pump} each experiment and never refills it "  # type: ignore[attr-defined]
                        f"(refill: true refills it after the {other.name})")), "syringe")
                # a cell that only fills up: say why, where the budget's experiments pile up (a newcomer's read of the
                # lab-grade protocol without its rinse got the overflow alone)
                never = ("; nothing in the protocol empties the cell between experiments (a rinse after the cv does)"
                         if what == "cell" and when and not any(map(empties, steps)) else "")
                return RepeatProblem(index, "volume_ml", SafetyLimitExceeded("", f"{when}{exc}{never}"),
                                     "cell" if what == "cell" else "syringe")
            contents.pumped(pump, volume_ml)
            if refills(step):
                contents.refilled(pump, volume_ml)
        after = contents.state()
        if after == before:  # every later experiment repeats this one
            return None
        if experiment >= 2:
            experiment += _skippable(before, after, contents, gross, experiments - experiment)
        experiment += 1
    return None


def _gross(steps: Sequence[Step]) -> dict[str | None, float]:
    """What one run of ``steps`` pumps in all, into the cell (key None) and out of each pump's syringe."""
    gross: dict[str | None, float] = {None: 0.0}
    for step in steps:
        if pumps(step):
            gross[None] += step.volume_ml  # type: ignore[attr-defined]
            gross[step.pump] = gross.get(step.pump, 0.0) + step.volume_ml  # type: ignore[attr-defined]
    return gross


def _skippable(before: tuple[float, dict[str, float]], after: tuple[float, dict[str, float]], contents: Contents,
               gross: Mapping[str | None, float], left: int) -> int:
    """How many of the ``left`` experiments after this one cannot reach a limit; moves ``contents`` past them.
    From the second experiment on each one changes the contents by the same amounts (``after - before``: the
    cell fills, a syringe empties); one that starts further from a limit than all it pumps (``gross``) and
    one more experiment's change cannot reach it."""
    (cell_before, held_before), (cell_after, held_after) = before, after
    moves: dict[str | None, tuple[float, float]] = {None: (cell_after - cell_before,
                                                           contents.limits.cell_volume_ml - cell_after)}
    moves.update({pump: (held_before.get(pump, held) - held, held) for pump, held in held_after.items()})
    # a real change is a sum of volumes of at least MIN_VOLUME_ML; less is rounding (1.0 - 0.3 + 0.3)
    counts = [int((room - gross.get(key, 0.0)) // change) - 1 for key, (change, room) in moves.items()
              if change > MIN_VOLUME_ML / 2]
    skip = max(0, min([left, *counts]))
    contents.cell_ml = _rounded(contents.cell_ml + skip * moves[None][0])
    for pump, (change, _room) in moves.items():
        if pump is not None:
            contents.syringes[pump] = _rounded(contents.syringes[pump] - skip * change)
    return skip


def pumps_holding_sample(steps: Iterable[Step]) -> frozenset[str]:
    """Names of the pumps whose syringes hold the loaded sample's stock (what the emulators must pour)."""
    return frozenset(s.pump for s in steps if isinstance(s, Dispense) and s.fluid == "sample")


def pumps_holding_standard(steps: Iterable[Step]) -> frozenset[str]:
    """Names of the pumps whose syringes hold the internal standard (ferrocene) stock."""
    return frozenset(s.pump for s in steps if isinstance(s, AddStandard))
