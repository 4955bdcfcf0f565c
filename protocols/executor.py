"""The protocol executor: one interpreter that turns a protocol's steps into instrument actions.

Why one interpreter (bluesky's engine): steps never touch hardware themselves, so every step is checked
against the rig and the safety limits *before the first step runs* (:meth:`ProtocolExecutor.check`): an
unknown instrument, a pumping step (dispense, add_standard, clean) beyond ``safety.max_dispense_ml`` or
``safety.max_rate_ml_min``, pumping that would overfill the cell (``safety.cell_volume_ml``, counted from
the last rinse or clean) or run a syringe dry, the protocol repeated ``experiments`` times (the budget), or
a CV vertex outside the potential limits stops the experiment before any byte reaches an instrument, with a
typed error naming the step. Each step is reported through ``on_action`` as it starts and when it ended, so
the runner can journal it; instrument errors propagate as the drivers' typed errors
(:mod:`labloop.core.errors`), after ``on_action`` reported them.

What the cell and the syringes hold is counted here, for every pump whatever its driver checks itself (a
plug-in may check nothing): :attr:`ProtocolExecutor.contents` (:class:`labloop.protocols.steps.Contents`)
lives as long as the executor, so it is carried from one experiment to the next, a failed one included,
and :meth:`ProtocolExecutor.replay` rebuilds it from a journal's actions when a campaign is resumed. Every
pumping command (a dispense, its refill, an add_standard, a clean's flush, a blank's clean) is checked
against it just before it is sent: one that would overfill the cell or take more than its syringe holds is
refused, naming the pump, the volume and the limit, and nothing is sent.

Potentials: the CV runs against the cell's reference electrode, which sits at ``reference_offset_v`` V vs
Li/Li+; a window around the candidate converts the predicted potential (vs Li/Li+) to that scale, and the
measured E1/2 comes back vs Li/Li+ (:func:`to_li_scale`). The analysis itself stays on the reference scale,
as measured.

Conditions of a proposal (e.g. ``scan_rate_v_s``) replace the step parameters of the same name; a
condition no step has is an error, so a planner's variable never silently does nothing.

Lab-grade steps (``purge``, ``blank``, ``eis``, ``add_standard``, ``clean``, ``polish``, and a ``cv`` with
``ir_compensation`` or ``scan_rates_v_s``) collect what they measure in a :class:`LabRecord`: the impedance
spectrum and Ru, the blank and its verdict, one voltammogram and analysis per scan rate, the diffusion
coefficient, and the CV with the ferrocene standard. With a standard, the reported potential is the
analyte's E1/2 against Fc+/Fc of the same scan converted with
:data:`labloop.instruments.cv_analysis.FERROCENE_VS_LI_V`, so the reference electrode's drift cancels;
without one it is ``E1/2 + reference_offset_v``. Quality flags of the blank (``oxygen``, ``contaminated``)
and of the standard (``no_standard``) join the CV's, so an unpurged cell's measurement is not learned from.
Manual steps (``purge: {valve: manual}``, ``clean`` without a pump, ``polish``) ask the operator through the
rig's ``ask_operator(message)``.
"""

from __future__ import annotations

import copy
import logging
import math
import numbers
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

from pydantic import ValidationError

from labloop.core.errors import (
    BlankFailed,
    BlankNeedsPurge,
    ConfigError,
    Disconnected,
    DispenseMismatch,
    InputError,
    InvalidParameter,
    NoOperator,
    Problem,
    Problems,
    PumpDisconnected,
    RigNotReady,
    SafetyLimitExceeded,
    WrongReturn,
    said,
)
from labloop.core.text import plural
from labloop.core.timestamps import now
from labloop.core.validation import must
from labloop.instruments.contracts import (
    CONTRACTS,
    GasValve,
    ImpedanceMeter,
    Potentiostat,
    Pump,
    SafetyLimits,
    SampleChanger,
    optional_member,
    returned,
    returned_range,
)
from labloop.instruments.cv_analysis import (
    FERROCENE_VS_LI_V,
    OXYGEN_ONSET_VS_LI_V,
    RANDLES_SEVCIK_TEMPERATURE_K,
    BlankResult,
    CVAnalysisSettings,
    CVFlag,
    CVResult,
    DiffusionEstimate,
    Quantity,
    ReferencedResult,
    analyze_blank,
    analyze_couples,
    analyze_cv,
    couple_position,
    implausible_diffusion,
    more_electrons,
    overcorrected,
    randles_sevcik_diffusion,
    reference_to_ferrocene,
    reversibility_criterion,
    to_li_scale,
    unequal_return,
)
from labloop.instruments.impedance import ImpedanceSpectrum, RuEstimate, fit_ru
from labloop.instruments.transport import bytes_sent
from labloop.instruments.voltammogram import CVParams, Voltammogram, returned_scan
from labloop.protocols.steps import (
    CV,
    EIS,
    AddStandard,
    Analyze,
    Blank,
    Clean,
    Contents,
    Dispense,
    LoadSample,
    Polish,
    Purge,
    Rinse,
    Step,
    Wait,
    analysis_settings,
    compact,
    empties,
    half_width_problem,
    in_cell,
    loaded_note,
    parse_steps,
    pumping_problems,
    pumps,
    rate_hint,
    repeat_problem,
    window_centres,
)

log = logging.getLogger(__name__)

#: how long (min) a purge with argon or nitrogen usually bubbles to drive out dissolved O2 (about 99% of it at a few
#: mL/min through a frit, a time constant near 2 min, as the simulated valve's: sim/gas_valve_emulator.py); a blank
#: that still shows O2 after a shorter purge says so (the shipped protocol purged 5 min, which only a zero-latency dry
#: run passed: a chemist's trial)
USUAL_PURGE_MIN = 10.0

#: ``on_action(step_index, step_name, instrument, params, started_at, finished_at, outcome)``, called twice per
#: step: as it starts (``finished_at`` and ``outcome`` None, so a journal holds the action before the
#: instrument moves) and when it ended (``outcome`` ``"ok"`` or the error in one line). Times are ISO 8601 UTC
#: as the journal stores them.
OnAction = Callable[[int, str, str, dict[str, Any], str, str | None, str | None], None]
#: ``on_scan(voltammogram, rejected)``: the cv step's voltammogram (its first scan rate's, the one the journal's raw
#: data keeps per attempt), called once its scans have returned, before the cv's action ends, ``rejected`` None; or a
#: scan of any step (the cv's, a blank's, the standard's) the executor refused
#: (:func:`labloop.instruments.voltammogram.returned_scan`: potentials in mV, a scan cut short, a NaN point, beyond the
#: safety limits), ``rejected`` saying why, before that step's action ends with
#: the error (:meth:`ProtocolExecutor.run`)
OnScan = Callable[[Voltammogram, str | None], None]
#: ``on_outcome(outcome)``: the experiment's :class:`ExperimentOutcome`, called once every step it depends on has
#: ended (:func:`measured_after`), before the steps that only handle the cell (a rinse, a wait) start
OnOutcome = Callable[["ExperimentOutcome"], None]
#: ``on_ended_early(lab)``: the :class:`LabRecord` of what an attempt measured before it ended without its outcome (a
#: driver's error, a blank that stops the run with every blank's verdict, a refusal, a Ctrl-C), called once, after the
#: failed step's action ended and before the error propagates; not when its lab-grade steps measured nothing
OnEndedEarly = Callable[["LabRecord"], None]
#: ``on_warning(message, data)``: what the run warned of about this experiment's measurement (a quasi-reversible couple
#: whose D reads low, a wave narrower than its electrons allow, the standard's dEp over-corrected, a reference
#: elsewhere than the cell's settings say, a driver that repeated commands), as the log says it, called as it is said;
#: ``data``: ``{"warning": what it is of (:data:`WARNINGS`), "for_later_experiments": whether it stands for the
#: experiments after this one too (said once a run, or again only when it changes)}``
OnWarning = Callable[[str, dict[str, Any]], None]
#: what a warning is of (``on_warning``'s ``data["warning"]``), for a script that sorts them without reading English;
#: ``reference_label`` is the runner's (a scan labelled with another reference: orchestrator/loop/runner.py)
WARNINGS = ("more_electrons", "repeated_commands", "quasi_reversible_d", "no_diffusion", "dilution", "no_standard",
            "standard_overcorrected", "reference_elsewhere", "reference_label", "unequal_return")


def warning_data(kind: str, *, later: bool) -> dict[str, Any]:
    """The ``data`` of a warning of ``kind`` (one of :data:`WARNINGS`) as ``on_warning`` gets it and the journal
    keeps it; ``later``: it stands for the experiments after its own too."""
    assert kind in WARNINGS, kind  # a script sorts them by it (docs/outputs.md lists them)
    return {"warning": kind, "for_later_experiments": later}


class RigLike(Protocol):
    """What the executor needs of a rig (:class:`labloop.orchestrator.loop.rig.Rig`)."""

    instruments: dict[str, object]

    def rinse_cell(self, why: str = "") -> None: ...

    def sleep(self, seconds: float) -> None: ...


#: how far beyond the ferrocene E1/2 the CV after add_standard reaches on each side (V)
STANDARD_MARGIN_V = 0.35
#: how far ferrocene may lie from where ``cell.reference_offset_v`` and ``cell.ferrocene_vs_li_v`` put it before a
#: run says the offset is wrong (V): a pseudo-reference drifts by tens of mV over a day, while a potential
#: converted from another scale (Ag/AgCl, SCE, another solvent's ferrocene) is off by hundreds
REFERENCE_CHECK_V = 0.1
LAB_STEPS = (Purge, Blank, EIS, AddStandard, Clean, Polish)
#: the steps that measure nothing and change nothing of what the experiment measured (:class:`ExperimentOutcome`:
#: :meth:`ProtocolExecutor.run` reads none of what they do into the voltammogram, its analysis or the lab record):
#: they move liquid, wait, or clean the cell or the electrode. Every other step (the cv, analyze, and the lab-grade
#: steps that measure: purge, blank, eis, add_standard) may change the outcome, and a step added to labloop later
#: counts as one of those until it is listed here.
HANDLING_STEPS = (LoadSample, Dispense, Wait, Rinse, Clean, Polish)


@dataclass
class LabRecord:
    """What the lab-grade steps of one experiment measured (raw data included, for the journal)."""

    spectrum: ImpedanceSpectrum | None = None
    ru: RuEstimate | None = None
    blanks: list[tuple[Voltammogram, BlankResult]] = field(default_factory=list)
    scans: list[tuple[Voltammogram, CVResult]] = field(default_factory=list)  # one per scan rate
    diffusion: DiffusionEstimate | None = None
    diffusion_problem: str | None = None  # why the scans gave no D (journalled: a chemist reads it in the log)
    #: what D was computed with, so D can be recomputed: the concentration in the cell (the cv step's ``analyte_mm``
    #: as written, or what its ``sample_stock_mm`` makes: ``sample_stock_mm`` x ``sample_ml`` / ``cell_ml``) and the
    #: electrode's area
    analyte_mm: float | None = None
    electrode_area_cm2: float | None = None
    sample_stock_mm: float | None = None
    sample_ml: float | None = None  # what this experiment's sample dispenses delivered (with a stock)
    #: what the cell held when the cv ran, by the journal's count, and how much of it besides what this
    #: experiment's dispense steps put in: that dilutes the analyte below an ``analyte_mm`` written as such;
    #: ``dilution`` says so in one line (D is not corrected: the count may err, and the chemist decides); with a stock
    #: the concentration is the count's, diluted already
    cell_ml: float = 0.0
    cell_held_ml: float = 0.0
    dilution: str | None = None
    standard_scan: Voltammogram | None = None
    referenced: ReferencedResult | None = None
    purged_minutes: float = 0.0

    @property
    def ru_ohm(self) -> float:
        return self.ru.ru_ohm if self.ru is not None else 0.0

    @property
    def measured(self) -> bool:
        """Whether any lab-grade step ran (a plain cv protocol has nothing more to journal)."""
        return bool(self.spectrum or self.blanks or len(self.scans) > 1 or self.standard_scan or self.purged_minutes)

    def summary(self) -> str:
        """One line for the journal's event log: what was measured, in a chemist's numbers."""
        parts = []
        if self.purged_minutes:
            parts.append(f"purged {self.purged_minutes:g} min")
        if self.blanks and not self.blanks[-1][1].flags:
            parts.append("blank clean")
        elif self.blanks:  # the record of a blank that stopped the run (on_ended_early): every attempt's verdict
            verdicts = " then ".join("; ".join(sorted(r.flags)) or "clean" for _, r in self.blanks)
            parts.append(f"blank NOT clean ({verdicts})")
        if self.ru is not None:
            parts.append(f"Ru {self.ru.ru_ohm:.0f} ohm")
        if len(self.scans) > 1:
            parts.append(f"{len(self.scans)} scan rates")
        if self.diffusion is not None:
            parts.append(f"D {self.diffusion.diffusion_cm2_s:.2e} cm2/s")
        elif self.diffusion_problem is not None:
            parts.append(f"no D ({self.diffusion_problem})")
        if self.sample_stock_mm is not None and self.analyte_mm is not None:
            parts.append(f"analyte {self.analyte_mm:.3g} mM ({self.sample_ml:g} mL of its {self.sample_stock_mm:g} mM "
                         f"stock in {self.cell_ml:g} mL)")
        if self.dilution is not None:
            parts.append(f"analyte ~{self.dilution_share:.0%} more dilute than analyte_mm "
                         f"(the cell held {self.cell_held_ml:g} mL)")
        if self.referenced is not None and self.referenced.e_vs_fc_v is not None:
            parts.append(f"E1/2 {self.referenced.e_vs_fc_v:+.3f} V vs Fc+/Fc")
        elif self.referenced is not None and (found := self.referenced.standard_said()) is not None:
            parts.append(f"{found}, no couple of the analyte to reference to it")
        elif self.referenced is not None:
            parts.append(f"no standard ({self.referenced.problem})")
        return "lab-grade CV: " + (", ".join(parts) or "nothing measured")

    @property
    def dilution_share(self) -> float:
        """How much lower the analyte's concentration is than ``analyte_mm`` says, as a share of it, from
        :attr:`cell_held_ml` (0 when the cell held nothing else, or when ``analyte_mm`` is the stock's concentration
        in the whole cell)."""
        if self.sample_stock_mm is not None:
            return 0.0
        return self.cell_held_ml / self.cell_ml if self.cell_ml else 0.0

    @property
    def flags(self) -> frozenset[CVFlag]:
        """Quality flags of the blank (its last judgement) and of the standard."""
        flags: set[CVFlag] = set(self.blanks[-1][1].flags) if self.blanks else set()
        if self.referenced is not None:
            flags |= self.referenced.flags & {CVFlag.NO_STANDARD}
        return frozenset(flags)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form: everything measured, raw data included."""
        return {
            "eis": self.spectrum.to_dict() if self.spectrum else None,
            "ru": self.ru.to_dict() if self.ru else None,
            "blanks": [{"voltammogram": v.to_dict(), "result": r.to_dict()} for v, r in self.blanks],
            "scans": [{"scan_rate_v_s": v.params.scan_rate_v_s, "voltammogram": v.to_dict(), "analysis": a.to_dict()}
                      for v, a in self.scans],
            "diffusion": self.diffusion.to_dict() if self.diffusion else None,
            "diffusion_problem": self.diffusion_problem,
            "analyte_mm": self.analyte_mm, "electrode_area_cm2": self.electrode_area_cm2,
            "sample_stock_mm": self.sample_stock_mm, "sample_ml": self.sample_ml,
            "cell_ml": self.cell_ml, "cell_held_ml": self.cell_held_ml, "dilution_share": self.dilution_share,
            "dilution": self.dilution,
            "standard_scan": self.standard_scan.to_dict() if self.standard_scan else None,
            "referenced": self.referenced.to_dict() if self.referenced else None,
            "purged_minutes": self.purged_minutes,
        }


def measured_after(steps: Sequence[Step]) -> int:
    """The place of the protocol's step after which its measurement is complete: the last step that is not one of
    :data:`HANDLING_STEPS` (the cv at the latest, as every protocol has one: parse_steps). Why: a run that stops in
    a step after it (a rinse that takes minutes on a real rig, a wait, a clean) has measured all it would have, and
    its outcome, journalled at that point, is the measurement (orchestrator/loop/runner.py
    ``Runner._finish_measured``); the molecule need not be measured again from a second aliquot."""
    return max(i for i, step in enumerate(steps) if not isinstance(step, HANDLING_STEPS))


def usable(potential_v: float | None, analysis: CVResult) -> bool:
    """Whether a measurement is good enough to learn from: a potential, and no quality flag on its analysis (the
    blank's and the standard's joined in). The one test of :attr:`ExperimentOutcome.quality_ok`, and of a
    measurement read back from the journal (orchestrator/loop/runner.py)."""
    return potential_v is not None and not analysis.flags


@dataclass(frozen=True)
class ExperimentOutcome:
    """What one run of a protocol measured: the voltammogram, its analysis (reference scale), the potential
    vs Li/Li+ (None without a reversible pair of peaks) and whether the CV is clean enough to learn from.
    ``lab`` holds what the lab-grade steps measured (see the module docstring)."""

    voltammogram: Voltammogram
    analysis: CVResult
    potential_v_vs_li: float | None
    quality_ok: bool
    lab: LabRecord = field(default_factory=LabRecord)


def _built(at: str, call: str, method: Callable[[Any], Any], argument: Any) -> Any:
    """``method(argument)``, a driver's scan, with an :class:`InvalidParameter` it raises (its own ``Voltammogram``
    refusing the data it was built from: a NaN current, no points) said as the driver's fault, a
    :class:`WrongReturn` at ``at``. Why: such a scan failed as ``InvalidParameter: current_a: contains NaN or infinite
    values``, which reads as a campaign's bad input (a plug-in engineer's trial); a device's bad data is the
    driver's to raise as a ``ProtocolError`` (docs/drivers.md)."""
    try:
        return method(argument)
    except InvalidParameter as exc:
        raise WrongReturn(at, f"its driver's {call} could not build its voltammogram: {exc} (bad data from the "
                              "device is a ProtocolError to raise, docs/drivers.md)") from exc


class ProtocolExecutor:
    """Runs ``steps`` (parsed, or raw as in the campaign) on ``rig`` within ``safety``.

    ``quantity`` decides which way a window around the candidate is scanned first (anodic for an oxidation).
    ``rig`` may be None for a check before any instrument is opened: ``kinds`` then says what kind of
    instrument each name is (``"pump"``, ``"potentiostat"``, ``"sample_changer"``), as the drivers declare.
    ``pump_limits`` holds the limits of pumps with their own syringe, by name; ``rates`` the flow rates
    (mL/min) pumps can drive their syringes at, by name, as their options fix them, for the check before the rig
    is open (an opened pump's ``rate_range_ml_min`` says it then). ``locate`` gives the
    ``file:line`` of a step by its index, so a problem found here names the line of the
    protocol (or campaign) file that wrote the step, as the campaign's own checks do. ``experiments`` is how
    many times the protocol runs (the budget): the check refuses a protocol whose repetition would overfill
    the cell or run a syringe dry (:func:`labloop.protocols.steps.repeat_problem`). ``hits_v`` is where the
    objective's hits lie (V vs Li/Li+): once the rig is open, a window around the candidate that cannot scan any of
    them within the potentiostat's range (wider than it, or every hit beyond it) is refused
    (:func:`labloop.protocols.steps.half_width_problem`; the campaign judges it against its safety limits).
    ``syringes_ml`` is what a pump's syringe holds when the campaign
    starts, by name (its instrument's options say it: the driver descriptor's ``content_ml``), for a syringe loaded
    partly; the count of :attr:`contents` and the budget's check (:meth:`check`) start from it, so a protocol it cannot
    serve over the budget is refused before the first experiment, naming the pump, rather than running dry in one.
    ``oxygen_onset_v`` is where dissolved O2's reduction wave sets in (V vs Li/Li+, the campaign's
    ``cell.oxygen_onset_v``), which a blank's wave is judged by: the default band is a lithium-salt electrolyte's, and
    O2 reduces about half a volt lower without Li+ (a tetraalkylammonium salt). ``temperature_k`` is the cell's
    (``cell.temperature_c``), which the Randles-Sevcik D is computed at.
    """

    def __init__(self, steps: Sequence[Step | str | Mapping[str, Any]], rig: RigLike | None, safety: SafetyLimits,
                 reference_offset_v: float, *, quantity: Quantity = "oxidation_potential",
                 kinds: Mapping[str, str] | None = None, locate: Callable[[int], str] | None = None,
                 pump_limits: Mapping[str, SafetyLimits] | None = None, experiments: int = 1,
                 rates: Mapping[str, tuple[float, float]] | None = None,
                 hits_v: tuple[float, float] | None = None,
                 oxygen_onset_v: tuple[float, float] = OXYGEN_ONSET_VS_LI_V,
                 syringes_ml: Mapping[str, float] | None = None,
                 ferrocene_vs_li_v: float = FERROCENE_VS_LI_V, drivers: Mapping[str, str] | None = None,
                 temperature_k: float = RANDLES_SEVCIK_TEMPERATURE_K) -> None:
        self.steps = tuple(steps) if all(isinstance(s, Step) for s in steps) else parse_steps(list(steps))
        self.rig = rig
        self.safety = safety
        self.reference_offset_v = reference_offset_v
        self.quantity = quantity
        self._kinds = dict(kinds) if kinds is not None else None
        #: the driver each instrument uses, as the campaign names it (said of one of the wrong kind: _instrument)
        self._drivers = dict(drivers or {})
        self._locate = locate
        self.pump_limits = dict(pump_limits or {})
        self.experiments = experiments
        #: what each pump's syringe holds when the campaign starts, where not full
        self.start_ml = dict(syringes_ml or {})
        #: what the cell and each syringe hold, counted across this executor's experiments
        self.contents = Contents(safety, self.pump_limits, syringes=dict(self.start_ml))
        #: experiments that stopped or failed part way after they pumped into the cell, each with how it ended
        #: (:meth:`refuse_their_leftover`)
        self.left_liquid: dict[int, str] = {}
        #: whether this run said that ferrocene found the reference elsewhere (:meth:`_check_reference`)
        self._reference_said = False
        #: the pumps whose driver reported more than their syringe held (:meth:`_pump`), said by a refusal for them
        self._misreported: dict[str, str] = {}
        #: whether the last dispense raised before its port carried a byte (:meth:`_pump`), for its action's record
        self._sent_nothing = False
        #: whether the run said that a standard's dEp shows its ohmic drop over-corrected (:func:`overcorrected`)
        self._overcorrection_said = False
        #: whether the run said that an analyte's dEp is narrower than its cv's ``n_electrons`` allows
        self._electrons_said = False  # (:meth:`_warn_of_electrons`)
        #: the running experiment's ``on_warning`` (:meth:`run`), for :meth:`_warn`
        self._on_warning: OnWarning | None = None
        #: the last dilution said (:meth:`_warn_of_d`): said again only when the cell's count changes it
        self._dilution_said: str | None = None
        self._rates = dict(rates or {})
        self.hits_v = hits_v
        self.oxygen_onset_v = oxygen_onset_v
        #: where ferrocene sits vs Li/Li+ in the campaign's electrolyte (``cell.ferrocene_vs_li_v``)
        self.ferrocene_vs_li_v = ferrocene_vs_li_v
        #: the cell's temperature (``cell.temperature_c``), which D (and so k0) is computed at
        self.temperature_k = temperature_k
        #: the pump a step is moving (its dispense or refill), so a failure there names that pump, not the
        #: instrument the step is journalled under (add_standard's is the potentiostat)
        self._pumping: str | None = None

    @property
    def n_electrons(self) -> int:
        """The electrons the protocol's cv says the analyte's couple takes in one wave (every protocol has one cv:
        :func:`labloop.protocols.steps.parse_steps`), which its analysis reads."""
        return next(step for step in self.steps if isinstance(step, CV)).n_electrons

    def _instrument_kinds(self) -> dict[str, str]:
        if self._kinds is not None:
            return self._kinds
        assert self.rig is not None  # one of the two is given (see the class docstring)
        return {name: _kind_of(driver) for name, driver in self.rig.instruments.items()}

    def _where(self, index: int, step: Step) -> str:
        where = f"protocol[{index}].{step.name}"  # the YAML path validate names, so the two messages agree
        return where if self._locate is None else f"{self._locate(index)}: {where}"

    # -- checks -------------------------------------------------------------------------------------------
    def check(self, conditions: Mapping[str, Any] | None = None, *, continued: bool = False) -> None:
        """Check every step (with ``conditions`` applied, e.g. a planner's extreme values) against the rig's
        instruments and the safety limits, the budget from what the syringes hold when the campaign starts
        (:attr:`start_ml`); the first problem raises (ConfigError for instruments, SafetyLimitExceeded for limits),
        naming the step. ``continued``: the run continues a journal, whose count says what the cell and the syringes
        hold by now (:meth:`refusal` judges each next experiment by it): one experiment is then judged, from full
        syringes and an empty cell, as a hand fill (``resume --syringes-filled``) may have replaced what the campaign
        started with, and the whole budget judged from an empty cell refused a protocol that never empties it on
        ``resume --cell-emptied``, the path docs/hardware.md gives such a protocol (a hardware trial)."""
        try:
            self._check(self._with_conditions(conditions) if conditions else self.steps,
                        {} if continued else self.start_ml, 1 if continued else self.experiments)
        except WrongReturn as exc:  # a driver's answer before anything ran is the campaign's to fix: bad input
            raise ConfigError(exc.where, exc.what) from None

    def _check(self, steps: Sequence[Step], start: Mapping[str, float], experiments: int) -> None:
        """The checks of :meth:`check`, ``experiments`` judged from ``start`` (a pump's syringe not in it: full);
        before each experiment from full syringes, as what they hold by then is :meth:`_check_contents`' to judge."""
        refused = {index: exc for index, _field, exc in reversed(pumping_problems(
            steps, self.safety, self.pump_limits, experiments=experiments, start=start))}
        for index, step in enumerate(steps):  # a "pump" that is none first: its limits would say nothing true
            if pumps(step):
                self._instrument(self._where(index, step), step.pump, Pump, "pump")  # type: ignore[attr-defined]
        for index, step in enumerate(steps):
            where = self._where(index, step)
            if pumps(step):
                if index in refused:  # its volume, rate, or the cell's or syringe's content (the first of them)
                    pump = step.pump  # type: ignore[attr-defined]
                    loaded = loaded_note(pump, start[pump]) if pump in start else ""
                    raise SafetyLimitExceeded(where, refused[index].what + loaded)
                self._check_rate(where, step)
            if isinstance(step, LoadSample):
                self._instrument(where, step.changer, SampleChanger, "sample changer")
            elif isinstance(step, CV):
                name = self._instrument(where, step.potentiostat, Potentiostat, "potentiostat")
                self._check_scan_rates(where, name, step.rates)
                if not step.around_candidate:
                    params = step.params()
                    self._check_potentials(where, name, params.e_begin_v, params.e_vertex1_v, params.e_vertex2_v)
                else:
                    self._check_half_width(where, name, step)
            elif isinstance(step, LAB_STEPS):
                self._check_lab(where, step)
                cv = next(s for s in steps if isinstance(s, CV)) if isinstance(step, AddStandard) else None
                if cv is not None and not cv.around_candidate:  # add_standard's wider scan, known now
                    name = self._instrument(where, step.potentiostat, Potentiostat, "potentiostat")
                    self._check_standard_scan(where, name, step, cv.params())

    def _check_lab(self, where: str, step: Step) -> None:
        """The checks of a lab-grade step: its instrument, its potentials and volumes, an operator if manual.
        Before the rig is open (``rig`` None) what only an opened driver can say (its gases, whether it
        measures impedance, an operator to ask) waits for the check after opening."""
        opened = self.rig is not None
        if isinstance(step, Purge):
            if step.valve == "manual":
                if opened:
                    self._operator(where)
            else:
                name = self._instrument(where, step.valve, GasValve, "gas valve")
                gases = self._gases(where, name) if opened else (step.gas,)
                if step.gas not in gases:
                    raise ConfigError(where, f"gas {step.gas!r}: valve {name!r} has {', '.join(gases)}")
        elif isinstance(step, Blank | EIS | AddStandard):
            name = self._instrument(where, step.potentiostat, Potentiostat, "potentiostat")
            if isinstance(step, EIS) and opened and not isinstance(self.rig.instruments[name], ImpedanceMeter):
                raise ConfigError(where, f"{name!r} cannot measure impedance (no run_eis)")
            if isinstance(step, Blank):
                p = step.params()
                self._check_potentials(where, name, p.e_begin_v, p.e_vertex1_v, p.e_vertex2_v)
                self._check_scan_rates(where, name, (p.scan_rate_v_s,))
            elif isinstance(step, EIS):
                self._check_potentials(where, name, step.e_dc_v - step.amplitude_v, step.e_dc_v + step.amplitude_v)
        if opened and (isinstance(step, Polish) or (isinstance(step, Clean) and step.pump is None)):
            self._operator(where)

    def _gases(self, where: str, valve: str) -> tuple[str, ...]:
        """The gases the opened ``valve`` says it can let in, each a name (a plug-in's one string would pass
        ``gas in gases`` for any part of it)."""
        at, what = f"{valve} in {where}", "a tuple of gas names"
        gases = returned(self.rig.instruments[valve].gases, (tuple, list), where=at, call="gases",  # type: ignore[union-attr]
                         what=what)
        return tuple(returned(gas, str, where=at, call="gases", what=what) for gas in gases)

    def _check_potentials(self, where: str, potentiostat: str, *potentials_v: float) -> None:
        """Refuse potentials outside the campaign's window or, once the rig is open, outside what the
        potentiostat can apply (its driver's ``potential_range_v``, known once it has identified the connected
        model; docs/drivers.md): before anything of the experiment moves, so no sample is spent on a scan
        the device would refuse."""
        self.safety.check_potentials(*potentials_v, where=where)
        self._check_within(where, potentiostat, "potential_range_v", potentials_v,
                           lambda e, low, high: f"potential {e:g} V is outside what {potentiostat!r} can apply, "
                                                f"{low:g}..{high:g} V vs its reference")

    def _check_scan_rates(self, where: str, potentiostat: str, rates_v_s: Sequence[float]) -> None:
        """Refuse scan rates the opened potentiostat cannot sweep at (its driver's optional ``scan_rate_range_v_s``:
        docs/drivers.md), before anything of the experiment moves, as a potential beyond its range: the campaign's to
        fix, never a molecule's failure. Why: a plug-in potentiostat that refuses rates above 5 V/s had a campaign
        planning 6-9 V/s pass validate, then dispense three samples, each scan refused by the device, and stop after
        three faults in a row (a plug-in engineer's trial)."""
        self._check_within(where, potentiostat, "scan_rate_range_v_s", rates_v_s,
                           lambda rate, low, high: f"scan rate {rate:g} V/s is beyond what {potentiostat!r} can "
                                                   f"sweep at, {low:g}..{high:g} V/s")

    def _check_within(self, where: str, instrument: str, attribute: str, values: Sequence[float],
                      refused: Callable[[float, float, float], str]) -> None:
        """:class:`SafetyLimitExceeded` saying ``refused(value, low, high)`` for the first of ``values`` outside the
        opened ``instrument``'s optional range ``attribute`` (:meth:`_span`); nothing without one."""
        span = self._span(where, instrument, attribute)
        if span is None:
            return
        low, high = span
        for value in values:
            if not low <= value <= high:
                raise SafetyLimitExceeded(where, refused(value, low, high))

    def _check_standard_scan(self, where: str, potentiostat: str, step: AddStandard, cv: CVParams) -> None:
        """Refuse add_standard's scan (the ``cv`` widened to take in the standard: :meth:`_standard_scan`) as any
        scan, saying where its reach comes from: a limit refusing ``potential 3.63 V`` at the add_standard step
        sent a chemist to the protocol, where the cause was ``cell.reference_offset_v`` on another scale (-0.08, vs
        Fc; a trial)."""
        standard = self._standard_scan(step, cv)
        try:
            self._check_potentials(where, potentiostat, standard.e_begin_v, standard.e_vertex1_v,
                                   standard.e_vertex2_v)
        except SafetyLimitExceeded as exc:
            expected = self._standard_expected(step)
            low, high = self.safety.potential_window_v
            hint = ("" if low <= expected <= high else
                    f"; {step.standard} itself lies outside the limits there: is cell.reference_offset_v written "
                    "against another electrode than Li/Li+ (vs Fc+/Fc, SCE, Ag/AgCl)?")
            offset = "" if not step.vs_fc_v else f" + standard_vs_fc_v {compact(step.vs_fc_v)} V"
            raise SafetyLimitExceeded(where, f"{exc.what} ({step.standard}'s scan reaches {STANDARD_MARGIN_V:g} V "
                                             f"beyond where it is expected, {expected:+.3f} V vs the reference: "
                                             f"cell.ferrocene_vs_li_v {self.ferrocene_vs_li_v:g} V{offset} - "
                                             f"cell.reference_offset_v {self.reference_offset_v:g} V){hint}") from None

    def _standard_expected(self, step: AddStandard) -> float:
        """Where the standard ``step`` adds is expected, V vs the cell's reference: ferrocene's place vs Li/Li+,
        moved by the standard's own place vs Fc+/Fc, on the reference's scale."""
        return self.ferrocene_vs_li_v + step.vs_fc_v - self.reference_offset_v

    def _check_half_width(self, where: str, potentiostat: str, step: CV) -> None:
        """Refuse a window around the candidate that cannot scan any of the objective's hits within the safety limits,
        or what ``potentiostat`` can apply (its driver's ``potential_range_v``, once the rig is open): wider than
        they are, or every hit beyond them (:func:`labloop.protocols.steps.half_width_problem`); every proposal the
        planner aims at would miss its wave, one experiment after the other, until the campaign stops.
        The limits too, for a half-width a planner chooses (``conditions.half_width_v``, checked value by value
        before the run): the protocol's own is the campaign's validation's to judge, but a planned one passed
        ``validate`` and the run then stopped after ten refused proposals (a plug-in author's trial)."""
        if step.half_width_v is None:
            return
        window, name = self._window_span(where, potentiostat)
        judged = half_width_problem(step.half_width_v, self.hits_v, self.reference_offset_v, window, name,
                                    step_v=step.e_step_v)
        if judged is not None and judged[0]:
            raise SafetyLimitExceeded(where, f"half_width_v: {judged[1]}")

    def _window_span(self, where: str, potentiostat: str) -> tuple[tuple[float, float], str]:
        """Where a window around the candidate may lie (V vs the reference), and its name for a message: the safety
        limits, within what ``potentiostat`` can apply once the rig is open. One place, so that the window is judged
        (:meth:`_check_half_width`) where the run moves it (:meth:`_within_limits`): judged against each alone,
        limits 0..3 V beside a range of -1.7..2 V passed a window of +/-1.2 V that no place in 0..2 V holds (an
        adversarial trial)."""
        window, name = self.safety.potential_window_v, "safety.potential_limits_v"
        if (span := self._span(where, potentiostat, "potential_range_v")) is not None:
            both = (max(window[0], span[0]), min(window[1], span[1]))
            if both != window:
                name = (f"what {potentiostat!r} can apply" if both == span else
                        f"safety.potential_limits_v within what {potentiostat!r} can apply")
                window = both
        return window, name

    def _span(self, where: str, instrument: str, attribute: str) -> tuple[float, float] | None:
        """The opened ``instrument``'s optional ``attribute`` (``potential_range_v``, ``rate_range_ml_min``:
        docs/drivers.md), None when its driver has none or the rig is not open. A value that is no (low, high) pair
        of numbers is a :class:`WrongReturn` naming the instrument and the step (:func:`returned`): a plug-in's
        string stopped ``labloop run`` with "unexpected ValueError: too many values to unpack (a labloop bug)"."""
        at = f"{instrument} in {where}"
        span = None if self.rig is None else optional_member(self.rig.instruments[instrument], attribute, where=at)
        if span is None:
            return None
        return returned_range(span, where=at, call=attribute)

    def _check_rate(self, where: str, step: Step) -> None:
        """Refuse a rate the pump cannot drive its syringe at (once the rig is open its driver's
        ``rate_range_ml_min``, known from the syringe's diameter; docs/drivers.md; before, what its options fix,
        ``rates``), before anything moves. A rate the step did not give is its default, and the message says so:
        the campaign file has no rate to correct."""
        pump, rate_ml_min = step.pump, step.rate_ml_min  # type: ignore[attr-defined]
        span = self._rates.get(pump) if self.rig is None else self._span(where, pump, "rate_range_ml_min")
        if span is None:
            return
        low, high = span
        if not low <= rate_ml_min <= high:
            default = ("" if "rate_ml_min" in step.model_fields_set
                       else f" (the {step.name} step's default: give it a rate_ml_min)")
            raise ConfigError(where, f"rate {rate_ml_min:g} mL/min{default} is beyond what {pump!r} can drive its "
                                     f"syringe at, {low:.3g}..{high:.3g} mL/min{rate_hint(rate_ml_min, span)}")

    def _operator(self, where: str) -> Callable[[str], object]:
        """The rig's way to ask the operator (``ask_operator``); a manual step without one is refused."""
        ask = getattr(self.rig, "ask_operator", None)
        if ask is None:
            raise ConfigError(where, "a manual step needs an operator, and this rig cannot ask one")
        return ask  # type: ignore[no-any-return]

    def _instrument(self, where: str, name: str | None, contract: type, kind: str) -> Any:
        """The instrument ``name`` (or the rig's only one of that kind), satisfying ``contract``."""
        kinds = self._instrument_kinds()
        wanted = _KINDS[contract]
        if name is None:
            found = [n for n, k in kinds.items() if k == wanted]
            if not found and kinds.get(wanted, wanted) != wanted:  # an instrument named for the kind, of another kind
                raise ConfigError(where, f"instrument {wanted!r} {self._of_kind(wanted, kinds[wanted])}; the step "
                                         f"needs a {kind}, and the rig has none")
            if len(found) != 1:
                raise ConfigError(where, f"name the {kind}: the rig has {len(found)} ({', '.join(found) or 'none'})")
            name = found[0]
        if name not in kinds:
            raise ConfigError(where, f"no instrument {name!r} in the rig (it has {', '.join(kinds)})")
        if kinds[name] != wanted:
            raise ConfigError(where, f"{name!r} is not a {kind}")
        return name

    def _of_kind(self, name: str, kind: str) -> str:
        """``uses driver 'ne1000', a pump`` (``is a pump`` where the driver is not known): what instrument ``name`` is.
        Why: a rig whose ``potentiostat`` was given a pump's driver was told "name the potentiostat: the rig has 0
        (none)" at its cv step, which said nothing of the driver to change (a plug-in author's trial)."""
        a = f"a {kind.replace('_', ' ')}"
        return f"uses driver {self._drivers[name]!r}, {a}" if name in self._drivers else f"is {a}"

    # -- running ------------------------------------------------------------------------------------------
    def run(self, sample_id: str, smiles: str, conditions: Mapping[str, Any], predicted_v: float | None,
            on_action: OnAction, *, on_scan: OnScan | None = None, on_outcome: OnOutcome | None = None,
            on_ended_early: OnEndedEarly | None = None, on_warning: OnWarning | None = None) -> ExperimentOutcome:
        """Check, then run every step for one candidate; ``predicted_v`` (V vs Li/Li+) centres a CV window
        around the candidate.

        What is measured is handed out as soon as it exists, so the caller can journal it before the next step:
        ``on_scan`` gets the cv's voltammogram before the cv's action ends, and ``on_outcome`` the outcome once the
        last step it depends on ended (:func:`measured_after`), before the steps that only handle the cell. Why: a
        run stopped in a rinse that takes minutes (a kill, a power cut) lost a voltammogram whose action the journal
        showed ``ok``, and its resume measured a second aliquot of the sample (an operator's trial). An attempt that
        ends before its outcome, whatever ends it (a blank that stops the run, a potentiostat gone in the third scan
        rate, a pump that stalls in add_standard, a Ctrl-C), hands ``on_ended_early`` the lab record of what its
        lab-grade steps measured so far before the error goes on: the purge, the blanks with their verdicts, Ru, the
        rates scanned are real data, spent sample and time, and what a person judges the failure or the cell by, and
        no outcome will carry them. ``on_warning`` gets each warning about the experiment's measurement as it is said
        (:meth:`_warn`), so the journal keeps what the console said."""
        self._on_warning = on_warning
        try:
            return self._run(sample_id, smiles, conditions, predicted_v, on_action, on_scan=on_scan,
                             on_outcome=on_outcome, on_ended_early=on_ended_early)
        finally:
            self._on_warning = None

    def _run(self, sample_id: str, smiles: str, conditions: Mapping[str, Any], predicted_v: float | None,
             on_action: OnAction, *, on_scan: OnScan | None, on_outcome: OnOutcome | None,
             on_ended_early: OnEndedEarly | None) -> ExperimentOutcome:
        """:meth:`run`'s steps."""
        steps = self._with_conditions(conditions)
        complete, settings = measured_after(steps), analysis_settings(steps)
        self._check(steps, {}, 1)  # this experiment's steps; what the cell and syringes hold now, _check_contents
        self._check_contents(steps)
        self._check_ports()
        # every scan of this candidate is known and checked against the limits before the first action: a
        # proposal the limits refuse is refused before anything moves
        scans = {index: self._cv_params(index, step, predicted_v) for index, step in enumerate(steps)
                 if isinstance(step, CV)}
        for index, step in enumerate(steps):
            if isinstance(step, AddStandard):  # its wider scan too (the cv before it: parse_steps)
                where = self._where(index, step)
                self._check_standard_scan(where, self._instrument(where, step.potentiostat, Potentiostat,
                                                                  "potentiostat"), step, next(iter(scans.values())))
        voltammogram: Voltammogram | None = None
        analysis: CVResult | None = None
        lab = LabRecord()
        outcome: ExperimentOutcome | None = None
        delivered: dict[int, float] = {}  # what each dispense step's pump reported it delivered, by step
        try:
            for index, step in enumerate(steps):
                started = now()
                instrument, params = self._describe(index, step, sample_id)
                if isinstance(step, CV):  # said as it starts: a scan cut short by a kill is journalled with them
                    params.update(scans[index].to_dict())
                on_action(index, step.name, instrument, dict(params), started, None, None)
                before = self._retried()
                self._pumping, self._sent_nothing = None, False
                try:
                    if isinstance(step, LoadSample):
                        self.rig.instruments[instrument].load(sample_id)  # type: ignore[attr-defined]
                    elif isinstance(step, Dispense):
                        params.update(self._dispense(index, step))
                        delivered[index] = params["dispensed_ml"]
                    elif isinstance(step, Wait):
                        self.rig.sleep(step.seconds)
                    elif isinstance(step, CV):
                        cv = scans[index]
                        voltammogram = self._cv(step, cv, instrument, lab, sample_id, self._where(index, step),
                                                dispensed_ml(steps[:index], delivered),
                                                dispensed_ml(steps[:index], delivered, fluid="sample"), settings)
                        params.update(self._lab_summary(step, lab))
                    elif isinstance(step, Rinse):
                        self.rig.rinse_cell()
                        self.contents.emptied()
                    elif isinstance(step, Analyze):
                        analysis = analyze_cv(voltammogram, step.settings,  # type: ignore[arg-type]
                                              ru_ohm=lab.ru_ohm, temperature_k=self.temperature_k,
                                              n_electrons=self.n_electrons)
                    elif isinstance(step, LAB_STEPS):
                        params.update(self._lab_step(index, step, instrument, lab, steps))
                except KeyboardInterrupt:
                    raise  # a Ctrl-C: the runner journals the experiment interrupted, this action with it
                except BaseException as exc:  # whatever a driver raises (a plug-in's SystemExit too) ends its action;
                    # a pump's failure inside another instrument's step is the pump's. A scan refused is kept first,
                    # marked not analysed: a real scan of a used-up sample
                    if isinstance(exc, WrongReturn) and exc.scan is not None and on_scan is not None:
                        on_scan(exc.scan, str(exc))  # type: ignore[arg-type]  # returned_scan keeps voltammograms only
                    self._note_repeats(before, params, sample_id, step.name)
                    if isinstance(exc, DispenseMismatch) and exc.delivered_ml is not None:  # what replay counts
                        params["reported_ml"] = exc.delivered_ml
                    if self._sent_nothing:  # replay counts none of it either
                        params["sent_nothing"] = True
                    on_action(index, step.name, self._pumping or instrument, params, started, now(), said(exc))
                    raise
                self._note_repeats(before, params, sample_id, step.name)
                if isinstance(step, CV) and on_scan is not None:  # journalled before the cv's action ends ok
                    on_scan(voltammogram, None)  # type: ignore[arg-type]  # the cv step just set it
                on_action(index, step.name, instrument, params, started, now(), "ok")
                if index == complete:
                    outcome = self._outcome(voltammogram, analysis, lab, sample_id, smiles,  # type: ignore[arg-type]
                                            settings)
                    if on_outcome is not None:
                        on_outcome(outcome)
        except BaseException:  # a driver's error, a refusal, a Ctrl-C, a hook's own error: the attempt ended early
            if outcome is None and lab.measured and on_ended_early is not None:
                on_ended_early(lab)
            raise
        assert outcome is not None  # measured_after names one of the steps
        return outcome

    def _warn_of_electrons(self, sample: str, voltammogram: Voltammogram, analysis: CVResult, lab: LabRecord,
                           settings: CVAnalysisSettings | None) -> None:
        """Say, once a run, that the analyte's wave is narrower than the cv's ``n_electrons`` allows, and how many it
        looks like (:func:`more_electrons`, which reads the scan again as each count's); not where the experiment's
        standard said its own dEp is over-corrected, which narrows the analyte's too and is said (_add_standard)."""
        standard = lab.referenced.standard if lab.referenced is not None else None
        if self._electrons_said or (standard is not None and overcorrected(standard, self.temperature_k) is not None):
            return

        def dep_as(k: int) -> float | None:
            return analyze_cv(voltammogram, settings, ru_ohm=lab.ru_ohm, temperature_k=self.temperature_k,
                              n_electrons=k).dep_v

        if (why := more_electrons(analysis, self.temperature_k, self.n_electrons, dep_as=dep_as)) is not None:
            self._electrons_said = True
            self._warn("more_electrons", "sample %s: %s (said once a run)", sample, why, later=True)

    def _warn_of_return(self, sample: str, scans: Sequence[tuple[Voltammogram, CVResult]],
                        settings: CVAnalysisSettings | None) -> None:
        """Say the first scan rate whose return peak is not the forward one's (:func:`unequal_return`): a follow-up
        reaction the reversibility class no longer reads into the electron transfer, with that rate's dEp; the
        potential is kept."""
        for voltammogram, result in scans:
            if (why := unequal_return(result, settings)) is not None and result.dep_v is not None:
                self._warn("unequal_return", "sample %s: at %s V/s %s; dEp %.1f mV: the electron transfer %s; its "
                           "E1/2 is kept", sample, compact(voltammogram.params.scan_rate_v_s), why,
                           1e3 * result.dep_v, result.reversibility)
                return

    def _warn(self, kind: str, message: str, *args: object, later: bool = False) -> None:
        """Say a warning of ``kind`` (one of :data:`WARNINGS`) about the running experiment's measurement
        (``message % args``, as the log's), and hand it to its ``on_warning`` (:meth:`run`); ``later``: it stands
        for the experiments after this one too. Why: the console and the log file alone said them, so ``labloop
        log``, the dashboard and the report, read after an overnight run, showed a quasi-reversible couple's D or a
        wave narrower than its electrons allow without a word (a newcomer's read of the lab-grade docs)."""
        said = message % args if args else message
        log.warning("%s", said)
        if self._on_warning is not None:
            self._on_warning(said, warning_data(kind, later=later))

    def _retried(self) -> dict[str, dict[str, int]]:
        """Each instrument's count of what its driver repeated after a fault, by the fault's type: the ``retried``
        mapping a driver may keep (the EmStat driver does: docs/drivers.md, "Errors"), read around each step."""
        counts: dict[str, dict[str, int]] = {}
        for name, driver in self.rig.instruments.items():
            try:
                retried = optional_member(driver, "retried", where=name)
            except WrongReturn as exc:  # what it counts is for the record only: no reason to fail a step
                log.debug("%s", exc)
                continue
            if isinstance(retried, Mapping):
                counts[name] = {str(kind): n for kind, n in retried.items()
                                if isinstance(n, int) and not isinstance(n, bool)}
        return counts

    def _note_repeats(self, before: Mapping[str, Mapping[str, int]], params: dict[str, Any], sample_id: str,
                      step: str) -> None:
        """Put what the drivers repeated during a step (their :meth:`_retried` counts, grown since ``before``) into
        its action's ``retried`` (``{instrument: {fault type: times}}``), and say it. Why: the EmStat driver runs a
        scan again after a timeout or a garbled line, so the cell was scanned part way, with no rest, before the
        voltammogram kept; a data-integrity trial found the journal holding one scan and nothing of the retry."""
        grown: dict[str, dict[str, int]] = {}
        for name, counts in self._retried().items():
            more = {kind: n - before.get(name, {}).get(kind, 0) for kind, n in counts.items()
                    if n > before.get(name, {}).get(kind, 0)}
            if more:
                grown[name] = more
        if not grown:
            return
        params["retried"] = grown
        repeats = "; ".join(f"{name}: {', '.join(f'{kind} x{n}' for kind, n in more.items())}"
                            for name, more in grown.items())
        # of a scan only where a potentiostat repeated: a pump's retried dispense scanned nothing (a chemist's trial)
        scanned = any(isinstance(self.rig.instruments.get(name), Potentiostat) for name in grown)
        self._warn("repeated_commands", "sample %s: its drivers repeated commands in the %s step after faults (%s)%s",
                   sample_id, step, repeats,
                   "; where a scan was repeated, it ran in a cell already scanned part way with no rest between, so "
                   "its peak currents may read low" if scanned else "")

    def _outcome(self, voltammogram: Voltammogram, analysis: CVResult | None, lab: LabRecord, sample_id: str,
                 smiles: str, settings: CVAnalysisSettings | None) -> ExperimentOutcome:
        """What the experiment measured, once every step it depends on has run (:func:`measured_after`): the cv's
        voltammogram, analysed by the protocol's analyze step or by default, judged over its scan rates, with the
        lab-grade steps' flags and the standard's referencing."""
        analysis = analysis or analyze_cv(voltammogram, ru_ohm=lab.ru_ohm, temperature_k=self.temperature_k,
                                          n_electrons=self.n_electrons)
        slow = any(a.reversibility not in (None, "reversible") for _, a in lab.scans)
        if analysis.reversibility == "reversible" and slow:
            # reversible at the first rate only: dEp that grows with the rate is a slow couple's (an electrochemist's
            # trial: 72 mV at 0.1 V/s, 98 mV at 1 V/s, called reversible)
            analysis = replace(analysis, reversibility="quasi-reversible")
        if slow and lab.diffusion is not None:  # with the dEp of each rate and the cut-off, which the call went unsaid
            # by; quasi-reversible at every rate too, where D reads lowest (an electrochemist's audit: 0.84-0.86 of
            # the truth, unwarned, while couples reversible at the first rate were warned of at 0.89-0.94). D fitted
            # over the rates where the couple is reversible (cv_analysis.reversible_rates) is said, not warned of
            deps = ", ".join(f"{1e3 * a.dep_v:.1f}" if a.dep_v is not None else "none" for _, a in lab.scans)
            rates = ", ".join(compact(v.params.scan_rate_v_s) for v, _ in lab.scans)
            rule = reversibility_criterion(settings, rates=len(lab.scans), temperature_k=self.temperature_k,
                                           n_electrons=self.n_electrons)
            fitted = lab.diffusion.scan_rates_v_s
            if len(fitted) < len(lab.scans):
                log.info("sample %s (%s): quasi-reversible over its scan rates (dEp %s mV at %s V/s; %s): D from the "
                         "rates where it is reversible, %s V/s", sample_id, smiles, deps, rates, rule.split(";")[0],
                         ", ".join(compact(rate) for rate in fitted))
            else:
                self._warn("quasi_reversible_d", "sample %s (%s): quasi-reversible over its scan rates (dEp %s mV at "
                           "%s V/s; %s): D from Randles-Sevcik (a reversible couple's equation) reads low for it, "
                           "reversible at fewer than two of them", sample_id, smiles, deps, rates, rule.split(";")[0])
        if analysis.e_half_v is not None and not analysis.flags:  # a failed one's cause says it: no D to warn of
            self._warn_of_return(f"{sample_id} ({smiles})", lab.scans or [(voltammogram, analysis)], settings)
            self._warn_of_d(f"{sample_id} ({smiles})", lab)
            self._warn_of_electrons(f"{sample_id} ({smiles})", voltammogram, analysis, lab, settings)
        analysis = replace(analysis, flags=analysis.flags | lab.flags)
        if lab.referenced is not None and lab.referenced.e_vs_li_v is not None:
            potential: float | None = lab.referenced.e_vs_li_v
        else:
            potential = (to_li_scale(analysis.e_half_v, self.reference_offset_v)
                         if analysis.e_half_v is not None else None)
        log.info("%s (%s): E1/2 %s V vs Li/Li+, flags %s", sample_id, smiles,
                 "none" if potential is None else f"{potential:.3f}", sorted(analysis.flags) or "none")
        return ExperimentOutcome(voltammogram, analysis, potential, usable(potential, analysis), lab)

    def refuse_their_leftover(self, experiments: Mapping[int, str]) -> None:
        """Have the next experiment refused while the cell holds anything by labloop's count, because
        ``experiments`` (id: how each ended, ``interrupted`` or ``failed``) stopped part way after they pumped
        into it: the next experiment would measure its sample on top of their mixture (a resume onto a killed
        experiment's 4.5 mL put 9 mL in the cell and read its analyte as half as concentrated; after a failed
        cv the next molecule was measured in the failed one's solution, and the failed molecule's potential
        recorded as its own). Once the cell counts empty (``resume --cell-emptied``, or a rinse) nothing is
        refused."""
        self.left_liquid.update(experiments)

    def empty_after_failure(self, experiment_id: int, on_action: OnAction) -> None:
        """Empty the cell after experiment ``experiment_id`` failed part way with liquid in it, by the protocol's
        own rinse step (journalled through ``on_action`` as the failed experiment's action, so a resume counts
        the cell empty; on a real rig the rinse asks the operator). A protocol without a rinse, or a rinse that
        fails, leaves the cell as it is and the next experiment refused (:meth:`refuse_their_leftover`): a
        person must empty it. Called with the rig made safe; never raises but for a Ctrl-C."""
        if self.contents.cell_ml <= 0:
            return
        index = next((i for i, step in enumerate(self.steps) if isinstance(step, Rinse)), None)
        if index is None or self.rig is None:
            self.refuse_their_leftover({experiment_id: "failed"})
            return
        params = {"after_failure": True}
        started = now()
        on_action(index, "rinse", "cell", params, started, None, None)
        try:
            self.rig.rinse_cell(f"Experiment {experiment_id} failed with {self.contents.cell_ml:g} mL in the cell. ")
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # nobody to rinse, the rinse failed (a plug-in's SystemExit too): the cell waits
            on_action(index, "rinse", "cell", params, started, now(), said(exc))
            log.warning("experiment %d failed with %g mL in the cell, and its rinse failed too (%s): the next "
                        "experiment waits for the cell to be emptied", experiment_id, self.contents.cell_ml, said(exc))
            self.refuse_their_leftover({experiment_id: "failed"})
            return
        log.info("experiment %d failed with %g mL in the cell: rinsed by the protocol's rinse", experiment_id,
                 self.contents.cell_ml)
        self.contents.emptied()
        on_action(index, "rinse", "cell", params, started, now(), "ok")

    def refusal(self, history: Iterable[tuple[str, Mapping[str, Any], str | None]], left_liquid: Mapping[int, str],
                conditions: Mapping[str, Any]) -> RigNotReady | None:
        """What :meth:`_check_contents` would refuse the next experiment (of ``conditions``) for, with the cell and
        the syringes counted from ``history`` (:meth:`replay`) and ``left_liquid`` (:meth:`refuse_their_leftover`),
        on a copy that leaves this executor as it was; None when it would start. Why: ``resume`` refuses what
        would stop it before its first action before it writes anything to the journal, not after journalling a
        new attempt, a stop and an interruption of an experiment that never moved."""
        probe = copy.copy(self)
        probe.contents = Contents(self.safety, self.pump_limits, syringes=dict(self.start_ml))
        probe.left_liquid = dict(left_liquid)  # its own: a shallow copy shares this executor's
        probe.replay(history)
        try:
            probe._check_contents(probe._with_conditions(conditions))
        except RigNotReady as exc:
            return exc
        except InputError:  # a condition no step takes: the run fails that experiment as refused, as it would
            return None
        return None

    def _check_ports(self) -> None:
        """Refuse to start an experiment while an instrument's port is gone (the rig's ``port_gone``: a USB adapter
        unplugged or reset, an emulator stopped): the rig needs a person before the sample is spent. Why: a pump whose
        port vanished while idle was found only at its own step, after the sample was loaded and dispensed, and its
        dispense was counted into the cell in full though it never began (a hardware trial)."""
        gone = getattr(self.rig, "port_gone", None)
        found = gone() if gone is not None else None
        if found is not None:
            name, port = found
            raise RigNotReady(f"instruments.{name}", f"its port {port} is gone (unplugged, switched off, or its USB "
                                                     "adapter reset?) before the experiment began: nothing of it ran",
                              needs="port")

    def _check_contents(self, steps: Sequence[Step]) -> None:
        """Refuse to start an experiment that what the cell and the syringes hold now (left by earlier ones,
        failed or interrupted) would stop part way, or that a stopped or failed experiment's liquid would spoil
        (:meth:`refuse_their_leftover`), before its sample is spent: the rig needs a person. The refusal says that the
        count takes a failed dispense as delivered (:meth:`_pump`): a plug-in pump that refused a rate before moving
        was said to need filling while full, with no word why (a plug-in engineer's trial)."""
        if self.left_liquid and self.contents.cell_ml > 0:
            which = "; ".join(f"{how} experiment {', '.join(str(e) for e, h in self.left_liquid.items() if h == how)}"
                              for how in dict.fromkeys(self.left_liquid.values()))
            raise RigNotReady("cell", f"it holds {self.contents.cell_ml:g} mL by labloop's count, with what {which} "
                                      "pumped before it stopped; the next experiment would measure on top of that",
                              needs="cell")
        self.left_liquid = {}
        problem = repeat_problem(steps, copy.deepcopy(self.contents), 1)
        if problem is None:
            return
        pump = getattr(steps[problem.index], "pump", None)
        why = (f"which took {self._misreported[pump]}: the driver's to fix"
               if pump in self._misreported and problem.full == "syringe" else
               "which counts every dispense sent as delivered in full, one that failed too")
        raise RigNotReady(self._where(problem.index, steps[problem.index]),
                          f"{problem.refusal.what} (by labloop's count before the experiment starts, {why})",
                          needs=problem.full)

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
                except ValidationError as exc:  # its first complaint, without pydantic's headers and links
                    first = exc.errors(include_url=False)[0]
                    cause = (first.get("ctx") or {}).get("error")  # a step's own check says it in its own words
                    why = cause.problems[0].message if isinstance(cause, Problems) else must(first["msg"])
                    raise ConfigError(self._where(i, steps[i]), f"condition {key}={value!r}: {why}") from None
                except Problems as exc:
                    raise ConfigError(self._where(i, steps[i]), f"condition {key}={value!r}: {exc}") from None
        return tuple(steps)

    def _describe(self, index: int, step: Step, sample_id: str) -> tuple[str, dict[str, Any]]:
        """(instrument name, parameters as journaled) of a step."""
        where = self._where(index, step)
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
        if isinstance(step, Purge):
            return self._valve(where, step), step.model_dump()
        if isinstance(step, Blank | EIS | AddStandard):
            return self._instrument(where, step.potentiostat, Potentiostat, "potentiostat"), step.model_dump()
        if isinstance(step, Clean):
            return step.pump or "operator", step.model_dump()
        if isinstance(step, Polish):
            return "operator", {}
        return "", step.model_dump()

    def _valve(self, where: str, step: Purge) -> str:
        """The gas valve a purge step opens, or ``operator`` for a purge by hand."""
        return "operator" if step.valve == "manual" else self._instrument(where, step.valve, GasValve, "gas valve")

    def _dispense(self, index: int, step: Dispense) -> dict[str, float]:
        """Dispense, then refill what the pump delivered."""
        where = self._where(index, step)
        dispensed = self._pump(where, step.pump, step.volume_ml, step.rate_ml_min)
        done = {"dispensed_ml": dispensed}
        if step.refill:
            done["refilled_ml"] = self._refill(where, step.pump, dispensed, step.rate_ml_min)
        return done

    def _refill(self, where: str, pump: str, volume_ml: float, rate_ml_min: float) -> float:
        """Withdraw ``volume_ml`` from ``pump``'s reservoir into its syringe (a pumping step's ``refill``),
        checked against what the syringe holds before it is sent and counted once it has ended; returns the
        volume the pump reports.

        ``volume_ml`` is what the step's pump reported it delivered (:meth:`_pump`), not the volume the step
        writes: a pump keeps only so many digits (the NE-1000 four: 0.12344 mL is sent as 0.1234), and a refill of
        the written volume onto a syringe that gave the rounded one overfilled it, which the NE-1000 driver refused
        after the analyte was in the cell.

        A pump that disconnects during its refill (:class:`PumpDisconnected`) counts none of it, for the reason
        :meth:`_pump` counts a disconnected dispense in full: its syringe then counts no fuller than it may be."""
        self._pumping = pump
        self.contents.check_refill(pump, volume_ml, where=where)
        driver: Pump = self.rig.instruments[pump]  # type: ignore[assignment]
        try:
            reported = driver.withdraw(volume_ml, rate_ml_min)
        except NoOperator:
            raise
        except Disconnected as exc:
            raise PumpDisconnected(pump, where, volume_ml, into_cell=False, cause=said(exc)) from exc
        withdrawn = self._reported(where, pump, "withdraw", volume_ml, reported, "drawn into its syringe")
        self.contents.refilled(pump, volume_ml)
        self._pumping = None
        return withdrawn

    def _pump(self, where: str, pump: str, volume_ml: float, rate_ml_min: float) -> float:
        """Pump ``volume_ml`` from ``pump`` into the cell, checked against what the cell and the syringe hold
        before the command is sent, and counted in full before it is (a dispense cut short may have delivered
        all of it); returns the volume the pump reports.

        A pump that reports another volume than asked (a plug-in driver need not check its counter as
        ``ne1000`` does) is a fault here, before any refill of the step: the refill would put the asked volume
        back into a syringe that gave less, beyond its size (a counter reading 3x too much drove a withdrawal
        beyond the syringe; one delivering half overfilled the standard's by 0.05 mL per experiment). So is one
        whose driver returns no number (None, a string): comparing it failed as "a labloop bug" naming no pump. One
        that reports more than asked has the excess counted too (the journal's action keeps it as ``reported_ml``, which
        :meth:`replay` counts): the count stayed at the volume asked, and a pump reporting 9 mL for 4.5 was sent
        another 4.5 mL its syringe, by its own report, no longer held (a plug-in engineer's trial). A report beyond
        what the syringe held is the driver's error, said so: the cell keeps the report's count, the syringe counts as
        emptied (not below), and the refusal it leads to names the report (:meth:`_check_contents`).

        A pump that disconnects during its dispense (its driver's ``Disconnected``: a cable pulled, its emulator gone)
        is a :class:`PumpDisconnected` naming the step, the volume and that what it delivered is unknown, which the
        run's stop says to the person who must look (a bare "port vanished while reading" did not say which step or
        volume to check). Its count stays the full volume, on purpose: nothing can tell what it delivered, and the
        count must err on the side where labloop never overfills the cell (a spill over the electrodes and their
        connectors is the harm; a count too high only asks for an emptying sooner) nor runs a syringe dry (it counts
        the syringe as having given all of it, so no later dispense is sent for liquid it may not hold).

        Any other error (a driver's bug, a Ctrl-C) leaves the count in full too, unless the pump's driver talks through
        labloop's transport and it wrote no byte during the call (:func:`bytes_sent`): then nothing reached the pump."""
        self._pumping, self._sent_nothing = pump, False
        self.contents.check_pump(pump, volume_ml, where=where)
        sent, held = bytes_sent(pump), self.contents.held(pump)
        self.contents.pumped(pump, volume_ml)
        try:
            dispensed: float = self._reported(
                where, pump, "dispense", volume_ml,
                self.rig.instruments[pump].dispense(volume_ml, rate_ml_min),  # type: ignore[attr-defined]
                "pumped")
        except REFUSED_UNSENT:  # a driver refuses before it sends (the contract): nothing was pumped
            self.contents.unpumped(pump, volume_ml)
            raise
        except NoOperator:
            raise
        except Disconnected as exc:
            raise PumpDisconnected(pump, where, volume_ml, into_cell=True, cause=said(exc)) from exc
        except DispenseMismatch as exc:
            if exc.delivered_ml is None or exc.delivered_ml <= volume_ml:
                raise
            # the pump says it gave more: the cell may hold it, and the syringe not; more than the syringe held is no
            # pump's doing but its driver's report (a plug-in reporting 5 mL from a 1 mL syringe drove the count to
            # -4 mL, and the stop blamed the count and asked for it to be filled: a plug-in engineer's trial)
            self.contents.pumped(pump, exc.delivered_ml - volume_ml)  # the syringe stops at empty
            if exc.delivered_ml <= held:
                raise
            self._misreported[pump] = (f"{pump}'s driver's report of {exc.delivered_ml:g} mL from a syringe that "
                                       f"held {held:g}")
            raise DispenseMismatch(exc.where, f"{exc.what}: more than its syringe held ({held:g} mL by labloop's "
                                              "count), so its driver's report is wrong, not the pump (a unit slip? a "
                                              "counter it misreads); counted as the syringe emptied",
                                   delivered_ml=exc.delivered_ml) from exc
        except KeyboardInterrupt:  # a Ctrl-C: counted in full, as a resume's replay of the interrupted action does
            raise
        except BaseException:  # a driver's bug: counted in full, unless its port carried no byte of it, which the
            # action's record says for a resume's replay (run(): ``sent_nothing``)
            if sent is not None and bytes_sent(pump) == sent:
                log.info("%s: %s's port carried no byte of the dispense: none of it counted", where, pump)
                self.contents.unpumped(pump, volume_ml)
                self._sent_nothing = True
            raise
        self.contents.unpumped(pump, volume_ml)  # counted from now on as what the pump delivered (see _refill)
        self.contents.pumped(pump, dispensed)
        self._pumping = None
        return dispensed

    def _reported(self, where: str, pump: str, call: str, volume_ml: float, reported: Any, moved: str) -> float:
        """The volume ``pump``'s driver reported for its ``call`` (``dispense`` or ``withdraw``) of ``volume_ml`` in the
        step at ``where``, or a :class:`DispenseMismatch` naming the pump and that step (``analyte_pump in
        protocol[1].dispense``: the pump alone did not say whether its dispense, a clean's flush or an add_standard
        failed): no number (a plug-in's None, "4.5"; :func:`returned`), or one more than :data:`DISPENSE_TOLERANCE`
        from the volume asked (a plug-in need not check its counter as ``ne1000`` does; a refill's reported volume
        is checked as its dispense's is, since the syringe's count follows it)."""
        done, at = "dispensed" if call == "dispense" else "withdrawn", f"{pump} in {where}"
        reported = returned(reported, numbers.Real, where=at, call=call, what=f"the volume {done} in mL",
                            unknown=f"how much of the {volume_ml:g} mL asked was {moved} is unknown",
                            error=DispenseMismatch)
        if not abs(reported - volume_ml) <= DISPENSE_TOLERANCE * volume_ml:  # NaN too
            raise DispenseMismatch(at, f"the pump reports {reported!r} mL {done} where {volume_ml:g} mL was asked",
                                   delivered_ml=float(reported) if call == "dispense" and math.isfinite(reported)
                                   else None)
        return float(reported)

    def replay(self, actions: Iterable[tuple[str, Mapping[str, Any], str | None]]) -> None:
        """Count into :attr:`contents` what the journal's actions of earlier runs left in the cell and the
        syringes: ``(command, params, outcome)`` of each action, in the order they started.

        A resumed campaign cannot ask the cell what it holds, so the count is conservative, as it is while a
        run goes on: every pumping action that started counts in full whatever its outcome (an interrupted
        one may have delivered all of it), except one refused before its command was sent (its outcome a
        :data:`REFUSED_UNSENT` error, which the run did not count either); a refill only once its step
        ended ``ok`` (each step refills last, so ``ok`` means refilled); the cell is empty again only after a
        rinse or clean that ended ``ok``. A blank that cleaned (``cleaned`` in its record) or did not end ``ok``
        counts its clean as :meth:`_replay_blank_clean` says. ``fill_syringes`` (the operator filled every
        syringe by hand) counts them full again. The cell then holds what was dispensed since its last completed
        emptying."""
        clean = next((s for s in self.steps if isinstance(s, Clean)), Clean())  # the one a blank would run
        unsent = tuple(f"{error.__name__}:" for error in REFUSED_UNSENT)
        for command, params, outcome in actions:
            ok = outcome == "ok"
            if command in ("rinse", "clean") and ok:
                self.contents.emptied()
            if command == "fill_syringes":
                self.contents.filled()
            elif (outcome is not None and outcome.startswith(unsent)) or params.get("sent_nothing"):
                continue  # refused, or raised, before the pump was sent a byte: nothing was pumped
            elif pumps_into_cell(command, params):
                # a step that ended ok has its pump's report, which the run counted and refilled (_refill); one that
                # did not counts in full, or what its pump reported pushing when that was more (_pump)
                volume_ml = (params.get("dispensed_ml", params["volume_ml"]) if ok else
                             max(params["volume_ml"], params.get("reported_ml") or 0.0))
                self.contents.pumped(params["pump"], volume_ml)
                if params.get("refill") and ok:
                    self.contents.refilled(params["pump"], volume_ml)
            elif command == "blank" and params.get("on_fail") == "clean" and (params.get("cleaned") or not ok):
                self._replay_blank_clean(clean, ok)
        log.info("the cell holds %g mL by the journal's count; syringes: %s", self.contents.cell_ml,
                 ", ".join(f"{pump} {held:g} mL" for pump, held in sorted(self.contents.syringes.items())) or "full")

    def count_to_drivers(self) -> None:
        """Give each pump driver that keeps its own count of its syringe (a numeric ``content_ml`` it lets be set, as
        the NE-1000's does) labloop's count, once :meth:`replay` has made it. Why: the NE-1000 driver starts from its
        ``content_ml`` option at every opening, so after ``resume --syringes-filled`` it still counted the partly
        loaded syringe and refused three dispenses the operator had filled for, wasting their samples (a hardware
        trial)."""
        if self.rig is None:
            return
        for name, driver in self.rig.instruments.items():
            try:
                counted = optional_member(driver, "content_ml", where=name)
            except WrongReturn:
                continue
            if not isinstance(driver, Pump) or isinstance(counted, bool) or not isinstance(counted, numbers.Real):
                continue
            held = self.contents.held(name)
            if held == counted:
                continue
            try:
                driver.content_ml = held  # type: ignore[attr-defined]
            except (AttributeError, TypeError):  # read-only: the driver's own count stands
                continue
            log.info("%s: its driver counted %g mL in the syringe, labloop %g mL (the journal's count, with any fill "
                     "by hand): the driver counts that now", name, counted, held)

    def _replay_blank_clean(self, clean: Clean, ok: bool) -> None:
        """Count a blank's clean (:meth:`_clean_for_blank`): its flush, then, once the blank ended ``ok``, the
        emptied cell filled again by the protocol's steps before the blank, with their refills. A blank that did
        not end ``ok`` may or may not have cleaned, or filled the cell again: every draw counts, the cell is not
        counted empty (the count errs on the full side, as for any pumping that started)."""
        if clean.pump is not None:
            self.contents.pumped(clean.pump, clean.volume_ml)
        if ok:
            self.contents.emptied()
        blank = next(i for i, s in enumerate(self.steps) if isinstance(s, Blank))
        for index in refill_steps(self.steps, blank):
            step = self.steps[index]
            if isinstance(step, Dispense):
                self.contents.pumped(step.pump, step.volume_ml)
                if step.refill and ok:
                    self.contents.refilled(step.pump, step.volume_ml)

    def _cv_params(self, index: int, step: CV, predicted_v: float | None) -> CVParams:
        """The scan of ``step`` (its window, or around the prediction on the reference scale), checked
        against the potential limits before anything is sent."""
        where = self._where(index, step)
        potentiostat = self._instrument(where, step.potentiostat, Potentiostat, "potentiostat")
        centre = None if predicted_v is None else predicted_v - self.reference_offset_v
        if centre is not None and step.half_width_v is not None:
            centre = self._within_limits(where, potentiostat, centre, step.half_width_v, step.e_step_v)
        try:
            params = step.params(centre, anodic_first=self.quantity == "oxidation_potential")
        except InvalidParameter as exc:
            raise ConfigError(where, str(exc)) from None
        self._check_potentials(where, potentiostat, params.e_begin_v, params.e_vertex1_v, params.e_vertex2_v)
        return params

    def _within_limits(self, where: str, potentiostat: str, centre_v: float, half_width_v: float,
                       step_v: float) -> float:
        """``centre_v`` of a window around the candidate (V vs the reference), moved as little as it takes for the
        window to lie within the safety limits and what ``potentiostat`` can apply, where both hold it. Why: before
        the first measurements the prediction is the prior's, 1.4-2.7 V above a molecule's measured potential
        (docs/surrogate.md), and a newcomer's campaign had every proposal refused for a window beyond the limits,
        ten in a row, and stopped with nothing measured; the scan nearest the prediction that the limits allow
        still measures the molecule, or bounds its potential (a failed scan)."""
        (low, high), _ = self._window_span(where, potentiostat)
        if (centres := window_centres(half_width_v, step_v, (low, high))) is None:
            return centre_v  # no window of that width fits: refused as it is, saying which limit
        moved = min(max(centre_v, centres[0]), centres[1])
        if moved != centre_v:
            log.info("%s: the window around the prediction (%+.3f V vs the reference) moved to %+.3f V, within the "
                     "limits %g..%g V", where, centre_v, moved, low, high)
        return moved


    # -- lab-grade steps ----------------------------------------------------------------------------------------
    def _cv(self, step: CV, cv: CVParams, potentiostat: str, lab: LabRecord, sample_id: str, where: str,
            dispensed: float, sample: float, settings: CVAnalysisSettings | None) -> Voltammogram:
        """Run the cv step: at each of its scan rates (in one script when the driver has ``run_cv_series``),
        with ``ir_compensation`` of the Ru measured by the eis step; every scan is analysed (ohmic drop
        corrected, by the protocol's analyze ``settings``: :func:`analysis_settings`) into ``lab.scans``; the first
        rate's is returned. With ``rest_s`` the cell rests that long before each rate's scan (``rig.sleep``: device
        time, none in a zero-latency dry run), each rate then its own script, as the rest lies between them; the cell
        is off (open circuit) while it rests, as each script switches it on at ``e_begin_v`` when its scan starts.
        With D to compute, what it is computed with goes into ``lab``: with ``sample_stock_mm``, the concentration the
        ``sample`` mL of this experiment's sample dispenses make in the cell as labloop counts it; else ``analyte_mm``
        as written, and whether the cell held more than the ``dispensed`` mL of this experiment's dispense steps
        (:meth:`_dilution`)."""
        comp = step.ir_compensation.fraction * lab.ru_ohm if step.ir_compensation is not None else 0.0
        series = [replace(cv, scan_rate_v_s=rate, ir_comp_ohm=comp) for rate in step.rates]

        def rested() -> Iterator[Voltammogram]:  # a rest before each rate: one scan at a time, the clock between them
            for params in series:
                log.info("%s: the cell rests %g s before the %g V/s scan", where, step.rest_s, params.scan_rate_v_s)
                self.rig.sleep(step.rest_s)
                yield from self._scans(where, potentiostat, [params])

        # each scan kept as it returns: a cv that fails part way (the potentiostat gone in its third rate) leaves the
        # rates it measured in ``lab``, for the record of an attempt that ended early (:meth:`run`, on_ended_early)
        for voltammogram in rested() if step.rest_s > 0 else self._scans(where, potentiostat, series):
            lab.scans.append((voltammogram, analyze_cv(voltammogram, settings, ru_ohm=lab.ru_ohm,
                                                        temperature_k=self.temperature_k,
                                                        n_electrons=step.n_electrons)))
        if computes_d(step):
            lab.electrode_area_cm2 = step.electrode_area_cm2
            if step.sample_stock_mm is not None:
                lab.cell_ml = self.contents.cell_ml
                lab.cell_held_ml = held_besides(self.contents, dispensed)
                lab.sample_stock_mm, lab.sample_ml = step.sample_stock_mm, sample
                lab.analyte_mm = in_cell(step.sample_stock_mm, sample, lab.cell_ml)
            else:
                lab.analyte_mm = step.analyte_mm
                self._dilution(where, step.analyte_mm, dispensed, lab)  # type: ignore[arg-type]  # computes_d
            try:
                forward = "anodic" if cv.e_vertex1_v > cv.e_begin_v else "cathodic"
                lab.diffusion = randles_sevcik_diffusion(list(step.rates), [a for _, a in lab.scans],
                                                         area_cm2=step.electrode_area_cm2, conc_mm=lab.analyte_mm,
                                                         forward=forward, temperature_k=self.temperature_k,
                                                         n_electrons=step.n_electrons)
            except InvalidParameter as exc:
                lab.diffusion_problem = str(exc)  # warned of once the analysis is known (_warn_of_d)
            else:  # no molecule's D: the concentration or area is off, and a k0 from it would be too (report.py)
                lab.diffusion_problem = implausible_diffusion(lab.diffusion, lab.analyte_mm, step.electrode_area_cm2)
                if lab.diffusion_problem is not None:
                    lab.diffusion = None
        return lab.scans[0][0]

    def _scans(self, where: str, potentiostat: str, series: Sequence[CVParams]) -> Iterator[Voltammogram]:
        """Run the scans of ``series`` on ``potentiostat`` (in one script when its driver has ``run_cv_series`` and
        there are several), each checked to be a voltammogram (:func:`returned`) before anything analyses it, and
        yielded as it returns (one script's all together, once the script returned and each was checked): a scan
        that fails after them leaves them measured (:meth:`_cv`)."""
        driver: Potentiostat = self.rig.instruments[potentiostat]  # type: ignore[assignment]
        at = f"{potentiostat} in {where}"
        run_series = getattr(driver, "run_cv_series", None)  # one script for all rates, where offered
        if run_series is None or len(series) == 1:
            for params in series:
                scan = _built(at, "run_cv", driver.run_cv, params)
                yield returned_scan(returned(scan, Voltammogram, where=at, call="run_cv"), params,
                                    at, "run_cv", self.safety.potential_window_v)
            return
        what = f"a list of {len(series)} voltammograms, one per scan rate"
        scans = returned(_built(at, "run_cv_series", run_series, list(series)), (list, tuple), where=at,
                         call="run_cv_series", what=what)
        if len(scans) != len(series):
            raise WrongReturn(at, f"its driver's run_cv_series returned {len(scans)} {plural(len(scans), 'scan')}, "
                                  f"not {what}")
        yield from [returned_scan(returned(scan, Voltammogram, where=at, call="run_cv_series", what=what), params,
                                  at, "run_cv_series", self.safety.potential_window_v)
                    for scan, params in zip(scans, series, strict=True)]

    def _warn_of_d(self, sample: str, lab: LabRecord) -> None:
        """Say what is wrong with D (no D from the scans, an analyte more dilute than written) of ``sample`` (its
        id and molecule: the id alone could not be matched to the log's or the report's rows, a newcomer's trial),
        for an experiment whose analysis is usable: a failed one (``no_peak``) has no D to speak of, and its cause in
        the journal says why (a lab-grade run warned of D for 26 of its 37 experiments, most of them failed
        already)."""
        if lab.diffusion_problem is not None:
            self._warn("no_diffusion", "sample %s: no diffusion coefficient from its scans: %s", sample,
                       lab.diffusion_problem)
        # the same count in every experiment of a protocol that leaves liquid behind said it 29 times over, burying
        # the warnings beside it (a chemist's trial): again only when it changes; each cv's action keeps its own
        if lab.dilution is not None and lab.dilution != self._dilution_said:
            self._dilution_said = lab.dilution
            self._warn("dilution", "sample %s: %s (said again only when the count changes)", sample, lab.dilution,
                       later=True)

    def _dilution(self, where: str, analyte_mm: float, dispensed: float, lab: LabRecord) -> None:
        """Note in ``lab`` (said once, in the log, by :meth:`_warn_of_d`) when the cell held liquid besides the
        ``dispensed`` mL of this experiment's dispense steps, by :attr:`contents` (a ``clean`` leaves its flush in the
        cell; an earlier experiment without a rinse leaves its liquid): the analyte is then more dilute than the
        ``analyte_mm`` the cv step wrote, and D, computed with it as written, reads low by the square of that. Not
        corrected: the count errs on the full side (a dispense cut short counts in full), and the chemist judges."""
        lab.cell_ml = self.contents.cell_ml
        lab.cell_held_ml = held_besides(self.contents, dispensed)
        if lab.cell_held_ml > 0:
            lab.dilution = f"{where}: by the journal's count {dilution(lab.cell_held_ml, dispensed, analyte_mm)}"

    def _lab_summary(self, step: CV, lab: LabRecord) -> dict[str, Any]:
        """What the action record of a cv step adds: the rates run, the compensation, D and what it was computed
        with (a dilution the cell's count shows included)."""
        summary: dict[str, Any] = {"scan_rates_v_s": list(step.rates), "rest_s": step.rest_s,
                                   "ru_ohm": lab.ru_ohm or None}
        if lab.diffusion is not None:
            summary.update(diffusion_cm2_s=lab.diffusion.diffusion_cm2_s, n_electrons=lab.diffusion.n_electrons,
                           temperature_k=lab.diffusion.temperature_k)
        if lab.analyte_mm is not None:
            summary.update(analyte_mm=lab.analyte_mm, electrode_area_cm2=lab.electrode_area_cm2,
                           cell_ml=lab.cell_ml, cell_held_ml=lab.cell_held_ml, dilution=lab.dilution)
        if lab.sample_stock_mm is not None:
            summary.update(sample_stock_mm=lab.sample_stock_mm, sample_ml=lab.sample_ml)
        return summary

    def _lab_step(self, index: int, step: Step, instrument: str, lab: LabRecord,
                  steps: Sequence[Step]) -> dict[str, Any]:
        """Run one lab-grade step; returns what its action record adds."""
        where = self._where(index, step)
        if isinstance(step, Purge):
            return self._purge(where, step, instrument, lab)
        if isinstance(step, EIS):
            lab.spectrum = returned(self.rig.instruments[instrument].run_eis(step.params()),  # type: ignore[attr-defined]
                                    ImpedanceSpectrum, where=f"{instrument} in {where}", call="run_eis")
            lab.ru = fit_ru(lab.spectrum)
            log.info("%s: Ru %.4g ohm", where, lab.ru.ru_ohm)
            return {"ru_ohm": lab.ru.ru_ohm, "fit_rms": lab.ru.rms_residual}
        if isinstance(step, Blank):
            return self._blank(where, index, step, instrument, lab, steps)
        if isinstance(step, AddStandard):
            return self._add_standard(where, step, instrument, lab)
        if isinstance(step, Clean):
            return self._clean(where, step)
        self._operator(where)("Polish the working electrode (alumina slurry), rinse it, put it back, press Enter: ")
        return {}

    def _purge(self, where: str, step: Purge, instrument: str, lab: LabRecord) -> dict[str, Any]:
        if step.valve == "manual":
            self._operator(where)(f"Purge the cell with {step.gas} for {step.minutes:g} min, then press Enter: ")
        else:
            valve: GasValve = self.rig.instruments[instrument]  # type: ignore[assignment]
            valve.flow(step.gas)
            try:
                self.rig.sleep(60 * step.minutes)
            finally:
                valve.stop()
        lab.purged_minutes += step.minutes
        return {"purged_minutes": step.minutes}

    def _clean(self, where: str, step: Clean, *, refill_by_hand: bool = True) -> dict[str, float]:
        """Rinse the cell, then flush it from the step's pump (or ask the operator); returns what the pump reported."""
        self.rig.rinse_cell()
        self.contents.emptied()
        if step.pump is None:
            refill = ", refill with electrolyte" if refill_by_hand else ""
            self._operator(where)(f"Clean the cell and the electrodes{refill}, press Enter: ")
            return {}
        dispensed = self._pump(where, step.pump, step.volume_ml, step.rate_ml_min)
        done = {"dispensed_ml": dispensed}
        if step.refill:
            done["refilled_ml"] = self._refill(where, step.pump, dispensed, step.rate_ml_min)
        return done

    def _clean_for_blank(self, where: str, blank_index: int, steps: Sequence[Step], lab: LabRecord) -> None:
        """Clean a cell whose blank was contaminated, then fill it again as the protocol filled it before the blank:
        the clean (the protocol's clean step, or the operator), an emptying, and the steps since the cell was last
        emptied up to the blank (:func:`refill_steps`: its dispenses, with their refills, and its purge). Why: the
        second blank, and the sample after it, must see the cell the protocol describes; a clean leaves only its
        flush (1 mL by default) or, by hand, what the operator poured, and a sample measured in that read a
        diffusion coefficient 80 times too large as a good experiment."""
        self._clean(where, next((s for s in steps if isinstance(s, Clean)), Clean()), refill_by_hand=False)
        self.rig.rinse_cell()
        self.contents.emptied()
        for index in refill_steps(steps, blank_index):
            step = steps[index]
            if isinstance(step, Dispense):
                self._dispense(index, step)
            elif isinstance(step, Purge):
                self._purge(self._where(index, step), step, self._valve(where, step), lab)

    def _blank(self, where: str, index: int, step: Blank, instrument: str, lab: LabRecord,
               steps: Sequence[Step]) -> dict[str, Any]:
        """Run and judge the blank before the sample goes in. Dissolved O2 (its wave) is purged again with the
        protocol's purge step and the blank judged again; ``on_fail: clean`` cleans a contaminated cell and fills
        it again as the protocol did (:meth:`_clean_for_blank`; ``cleaned`` in the record, for
        :meth:`replay`) and judges a second blank. Still contaminated or oxygenated, a
        contaminated blank with ``on_fail: stop``, or O2 in a protocol without a purge step raises
        :class:`BlankFailed` (the runner stops for a person: every sample measured in that cell would fail)."""
        purge = next((s for s in steps if isinstance(s, Purge)), None)
        cleaned = False
        for attempt in (1, 2):
            [voltammogram] = self._scans(where, instrument, [step.params()])
            result = analyze_blank(voltammogram, step.max_current_a, reference_offset_v=self.reference_offset_v,
                                   oxygen_onset_vs_li_v=self.oxygen_onset_v)
            lab.blanks.append((voltammogram, result))
            log.info("%s: blank %d: max %.3g A, flags %s", where, attempt, result.max_current_a,
                     sorted(result.flags) or "none")
            oxygen = CVFlag.OXYGEN in result.flags
            if result.clean and not oxygen:
                return {"blank": result.to_dict(), "attempts": attempt, "cleaned": cleaned}
            if attempt == 2 or (not result.clean and step.on_fail == "stop") or (result.clean and purge is None):
                break
            if result.clean:  # only O2: purge again
                assert purge is not None
                self._purge(where, purge, self._valve(where, purge), lab)
            else:
                self._clean_for_blank(where, index, steps, lab)
                cleaned = True
        if not result.clean:
            assert result.contamination_v is not None  # set with the flag (analyze_blank)
            at = self._on_both_scales(result.contamination_v)
            found = f"its largest current, {result.max_current_a:.3g} A, at {at}"
            if result.contamination_wave_a is not None:
                found = (f"an oxidation wave {result.contamination_wave_a:.3g} A high at {at}; largest current "
                         f"{result.max_current_a:.3g} A")
            raise BlankFailed(where, f"the blank is contaminated ({found}, limit {step.max_current_a:.3g} A, "
                                     f"flags {', '.join(sorted(result.flags))})")
        assert result.oxygen_v is not None  # set with the flag (analyze_blank)
        wave = f"a reduction wave {result.oxygen_a:.3g} A deep near {self._on_both_scales(result.oxygen_v)}"
        if purge is None:
            raise BlankNeedsPurge(where, f"dissolved O2 in the blank ({wave}), and the protocol has no purge step to "
                                         "drive it out: add one before the blank")
        longer = (f"; or purge longer than {purge.minutes:g} min: about {USUAL_PURGE_MIN:g} min drive out 99% at a "
                  "usual flow (change the purge step's minutes, and run the campaign with a new store: a journal keeps "
                  "its protocol)" if purge.minutes < USUAL_PURGE_MIN else "")
        raise BlankFailed(where, f"dissolved O2 remains in the blank after purging again ({purge.minutes:g} min of "
                                 f"{purge.gas}; {wave}): check the gas supply, the valve and the cell's seal{longer}")

    def _on_both_scales(self, potential_v: float) -> str:
        """A potential measured against the cell's reference, said on its scale and on the Li/Li+ one (through
        ``reference_offset_v``): where a person looks on the voltammogram, and where the campaign's potentials are."""
        li = to_li_scale(potential_v, self.reference_offset_v)
        return f"{potential_v:+.3f} V vs the reference, {li:.3f} V vs Li/Li+"

    def _standard_scan(self, step: AddStandard, cv: CVParams) -> CVParams:
        """The add_standard step's scan: the cv's window widened to take in the standard's couple."""
        expected = self._standard_expected(step)
        return widened(cv, expected - STANDARD_MARGIN_V, expected + STANDARD_MARGIN_V)

    def _add_standard(self, where: str, step: AddStandard, instrument: str, lab: LabRecord) -> dict[str, Any]:
        """Dispense the standard's stock (ferrocene, or one ``step.standard_vs_fc_v`` from it), then one CV wide
        enough for the analyte and the standard; the analyte is put on the Fc+/Fc scale through that scan's
        standard. Which couple is which is told from the cv's first scan, before the standard
        (:func:`labloop.instruments.cv_analysis.reference_to_ferrocene`): the standard's is the couple it did not
        show, the analyte's the one where it showed the analyte (its E1/2, or a lone peak where the other lay past
        a vertex). The refill comes last, so the step ending ``ok`` means refilled, which is what a resume
        counts (:meth:`replay`)."""
        if not lab.scans:
            raise ConfigError(where, "add_standard needs the cv before it")
        dispensed = self._pump(where, step.pump, step.volume_ml, step.rate_ml_min)
        first, analysis = lab.scans[0]
        fc_expected = self._standard_expected(step)
        params = self._standard_scan(step, first.params)
        self._check_potentials(where, instrument, params.e_begin_v, params.e_vertex1_v, params.e_vertex2_v)
        [voltammogram] = self._scans(where, instrument, [params])
        lab.standard_scan = voltammogram
        couples = analyze_couples(voltammogram, ru_ohm=lab.ru_ohm, temperature_k=self.temperature_k)
        before = [e for c in analyze_couples(first, ru_ohm=lab.ru_ohm, temperature_k=self.temperature_k)
                  if (e := couple_position(c)) is not None]
        # an analyte the cv failed (no wave, one beyond the window, an irreversible one) has nothing to reference: a
        # standard found is then fine, and the failure the analyte's own (it failed no_standard too, a chemist's trial)
        failed = analysis.e_half_v is None or bool(analysis.flags)
        lab.referenced = reference_to_ferrocene(couples, couple_position(analysis), fc_expected, before_v=before,
                                                ferrocene_vs_li_v=self.ferrocene_vs_li_v, standard_name=step.standard,
                                                standard_vs_fc_v=step.vs_fc_v, analyte_failed=failed)
        if lab.referenced.problem is not None and not failed:
            # not of a failed analyte: its own failure says it
            self._warn("no_standard", "%s: no_standard: %s", where, lab.referenced.problem)
        elif lab.referenced.e_vs_fc_v is not None:
            log.info("%s: E vs Fc+/Fc %+.4f V", where, lab.referenced.e_vs_fc_v)
        else:
            log.info("%s: %s", where, lab.referenced.problem or lab.referenced.standard_said())
        standard = lab.referenced.standard
        found = None if standard is None else standard.e_half_v
        if found is not None:
            self._check_reference(where, step, found, fc_expected)
        if standard is not None and not self._overcorrection_said \
                and (why := overcorrected(standard, self.temperature_k)) is not None:
            self._overcorrection_said = True
            self._warn("standard_overcorrected", "%s: %s: %s (said once a run)", where, step.standard, why,
                       later=True)
        done: dict[str, Any] = {"dispensed_ml": dispensed, **params.to_dict(), "e_vs_fc_v": lab.referenced.e_vs_fc_v,
                                "standard_problem": lab.referenced.problem, "standard_v_vs_reference": found}
        if step.refill:
            done["refilled_ml"] = self._refill(where, step.pump, dispensed, step.rate_ml_min)
        return done

    def _check_reference(self, where: str, step: AddStandard, found_v: float, expected_v: float) -> None:
        """Say, once a run, that the standard's couple lies more than :data:`REFERENCE_CHECK_V` from where the cell's
        settings put it (``expected_v``, vs the reference): the reference electrode sits elsewhere than
        ``cell.reference_offset_v`` says. The potentials referenced to ferrocene are right whatever the offset,
        which is why nothing failed, but the safety window, the oxygen band, failed scans' bounds and every
        potential measured without the standard go through the offset: a chemist's offset 300 mV off (an
        Ag/AgCl value) went unsaid in every experiment."""
        if self._reference_said or abs(found_v - expected_v) <= REFERENCE_CHECK_V:
            return
        self._reference_said = True
        implied = self.ferrocene_vs_li_v + step.vs_fc_v - found_v
        side = "above" if found_v > expected_v else "below"
        settings = f"cell.ferrocene_vs_li_v ({self.ferrocene_vs_li_v:.3f} V)" + (
            f" and standard_vs_fc_v ({step.vs_fc_v:+.3f} V)" if step.vs_fc_v else "")
        self._warn("reference_elsewhere", "%s: %s's couple lies at %+.3f V vs the reference, %.0f mV %s where "
                   "cell.reference_offset_v (%.3f V) and %s put it (%+.3f V): by %s, the reference sits at %.3f V vs "
                   "Li/Li+. Potentials referenced to the standard are right; the safety window, the oxygen band, "
                   "failed scans' bounds and potentials measured without the standard use cell.reference_offset_v: "
                   "correct it, if this electrode is stable (said once a run)", where, step.standard, found_v,
                   abs(found_v - expected_v) * 1000, side, self.reference_offset_v, settings, expected_v,
                   step.standard, implied, later=True)


#: the steps that pump into the cell (from the pump their action record names)
PUMPING_COMMANDS = ("dispense", "add_standard", "clean")


def pumps_into_cell(command: str, params: Mapping[str, Any]) -> bool:
    """Whether a journalled action pumped into the cell (a clean by hand names no pump)."""
    return command in PUMPING_COMMANDS and params.get("pump") is not None


def _since_emptied(steps: Sequence[Step], end: int) -> range:
    """The places of the steps before ``end`` that come after the last rinse or clean among them."""
    emptied = max((i for i, s in enumerate(steps[:end]) if isinstance(s, Rinse | Clean)), default=-1)
    return range(emptied + 1, end)


def refill_steps(steps: Sequence[Step], blank_index: int) -> list[int]:
    """The places of the dispense and purge steps that filled the cell between its last emptying (a rinse or clean)
    and the blank at ``blank_index``: what a cell cleaned for its blank is filled with again."""
    return [i for i in _since_emptied(steps, blank_index) if isinstance(steps[i], Dispense | Purge)]


def dispensed_ml(steps: Sequence[Step], delivered: Mapping[int, float] | None = None, *,
                 fluid: str | None = None) -> float:
    """What ``steps``' dispense steps (of ``fluid`` only, if given: ``sample``) put into the cell after their last rinse
    or clean: the liquid a cv step after them writes its ``analyte_mm`` for (a clean's flush is not: it is what the
    cleaning leaves behind). A step in ``delivered`` (by its place) counts what its pump reported, as the cell's count
    does (:meth:`ProtocolExecutor._pump`)."""
    delivered = delivered or {}
    return round(sum(delivered.get(i, steps[i].volume_ml)  # type: ignore[attr-defined]
                     for i in _since_emptied(steps, len(steps))
                     if isinstance(steps[i], Dispense) and fluid in (None, steps[i].fluid)), 9)  # type: ignore[attr-defined]


def computes_d(step: CV) -> bool:
    """Whether a cv step computes D: several scan rates, and a concentration (``analyte_mm``, or ``sample_stock_mm``
    from which the run computes it)."""
    return len(step.rates) > 1 and (step.analyte_mm is not None or step.sample_stock_mm is not None)


def diffusion_analyte_mm(step: CV) -> float | None:
    """The fixed ``analyte_mm`` a cv step computes D with, None when it computes no D or computes the concentration
    from ``sample_stock_mm`` (which follows the volumes, a dilution included): the one test of a cv a dilution or a
    planned volume puts off, for the run and for :func:`leftover_dilution` (and the campaign's conditions)."""
    return step.analyte_mm if computes_d(step) and step.sample_stock_mm is None else None


def held_besides(contents: Contents, dispensed: float) -> float:
    """What the cell holds by ``contents``' count besides the ``dispensed`` mL of this experiment's dispense steps."""
    return max(0.0, round(contents.cell_ml - dispensed, 9))


def dilution(held_ml: float, dispensed: float, analyte_mm: float) -> str:
    """The one wording of a cv's analyte more dilute than its ``analyte_mm`` says, as the cell held ``held_ml`` besides
    the ``dispensed`` mL of the experiment's dispense steps: what D, which goes with the square of the concentration,
    is then off by. Said by the executor of each experiment it happens in and, once, by ``validate``
    (:func:`leftover_dilution`)."""
    share = held_ml / (held_ml + dispensed)
    return (f"the cell held {held_ml:g} mL before this experiment's {dispensed:g} mL (its dispense steps, sample "
            f"included): D assumes analyte_mm {analyte_mm:g} as written; the analyte is ~{share:.0%} more dilute, so D "
            f"reads ~{1 - (1 - share) ** 2:.0%} low (it goes with the square of the concentration)")


def leftover_dilution(steps: Sequence[Step], limits: SafetyLimits, experiments: int) -> Problem | None:
    """The :func:`dilution` warning of the first of ``experiments`` runs of ``steps`` whose D-computing cv step finds
    liquid in the cell besides that experiment's dispenses, by the count the executor keeps (:class:`Contents`, a
    clean emptying and then filling the cell with its flush), located at the cv (``(index, "cv")``), or None.

    Why before the run: a ``clean`` before the dispenses, or at the end of the protocol (the next experiment starts
    on its flush), or no rinse at all, dilutes every experiment's analyte by the same share, and the run says so
    only in each experiment's record and log. Two experiments suffice: from the second on the count repeats, or
    grows (a cell never emptied), which the second shows already."""
    contents, emptied_by = Contents(limits), None
    for experiment in range(1, min(experiments, 2) + 1):
        for index, step in enumerate(steps):
            if empties(step):
                contents.emptied()
                emptied_by = index
            if isinstance(step, CV) and (analyte_mm := diffusion_analyte_mm(step)) is not None:
                dispensed = dispensed_ml(steps[:index])
                if (held := held_besides(contents, dispensed)) > 0:
                    last = None if emptied_by is None else steps[emptied_by]
                    cause = ("nothing empties the cell between experiments (a rinse does): more each time"
                             if last is None else
                             f"protocol[{emptied_by}].clean leaves its {last.volume_ml:g} mL flush in the cell"
                             if isinstance(last, Clean) and last.pump is not None else
                             f"the steps after protocol[{emptied_by}].{last.name} leave liquid in the cell")
                    when = "in every experiment" if experiment == 1 else f"from experiment {experiment} on"
                    return Problem((index, step.name), f"{when}, by the protocol's count "
                                                       f"{dilution(held, dispensed, analyte_mm)}, as {cause}")
            if pumps(step):
                contents.pumped(step.pump, step.volume_ml)  # type: ignore[attr-defined]
    return None


def unemptied_cell(steps: Sequence[Step], experiments: int) -> Problem | None:
    """The warning, located at the cv (``(index, "cv")``), that nothing in ``steps`` empties the cell (no ``rinse``,
    no ``clean``) though the budget runs them ``experiments`` > 1 times, or None; a cv that computes D from a written
    ``analyte_mm`` has its own (:func:`leftover_dilution`), one from a ``sample_stock_mm`` this one. Why: a protocol
    without its rinse validated in silence, and the second experiment's potential was read from a scan of both
    samples, their waves merged (4.00 V, dEp 105 mV, where the molecule alone gave 4.03 V, 65 mV), journalled as
    clean (a plug-in engineer's trial). A warning, not a refusal: a cell emptied by a plug-in sample changer, or
    samples added on purpose, can be meant."""
    index = next(i for i, step in enumerate(steps) if isinstance(step, CV))  # exactly one (parse_steps)
    if experiments < 2 or any(empties(step) for step in steps) or \
            diffusion_analyte_mm(steps[index]) is not None:  # type: ignore[arg-type]  # leftover_dilution's to say
        return None
    return Problem((index, "cv"), "nothing empties the cell between experiments (a rinse or a clean does): from the "
                                  "second experiment on, each cv scans its sample on top of every earlier one's, whose "
                                  "waves mix into its potential; add a rinse after the cv")


def unsampled_cv(steps: Sequence[Step]) -> Problem | None:
    """The warning, located at the cv (``(index, "cv")``), that no dispense of the sample (``fluid: sample``, the pumps
    :func:`labloop.protocols.steps.pumps_holding_sample` names) fills the cell between its last emptying and the cv,
    or None. Why: ``load_sample`` only puts the stock in line with its pump; without that dispense every experiment
    measures the electrolyte alone (or nothing) and fails as the molecule's. A warning, not a refusal: a plug-in
    sample changer may fill the cell itself."""
    index = next(i for i, step in enumerate(steps) if isinstance(step, CV))  # exactly one (parse_steps)

    def sampled(i: int) -> bool:
        return isinstance(steps[i], Dispense) and steps[i].fluid == "sample"  # type: ignore[attr-defined]

    window = _since_emptied(steps, index)
    if any(map(sampled, window)):
        return None
    earlier = [i for i in range(window.start) if sampled(i)]
    why = (f"protocol[{window.start - 1}].{steps[window.start - 1].name} empties the cell after the sample's dispense "
           f"(protocol[{earlier[-1]}])" if earlier else
           "no step dispenses it (a dispense with fluid: sample, after load_sample)")
    return Problem((index, "cv"), f"the sample never reaches the cell before this cv: {why}, so every experiment "
                                  "would measure the cell without its sample (unless the sample changer itself fills "
                                  "the cell)")


def widened(params: CVParams, low: float, high: float) -> CVParams:
    """``params`` with its window stretched to include the standard's ``low..high`` (on its step grid), the same
    direction first, starting at or below ``low``, where a standard added in its reduced form (ferrocene) rests.
    An anodic-first scan starts at the window's low end; a cathodic-first one at its own start or, if that lies
    higher, at ``low``, and runs to the low vertex, up past the standard and back to where it started. Why not at the
    high end: a reduction's scan then started 0.35 V past ferrocene's E1/2, on its oxidation's diffusion-limited
    current, and the standard's |ipc/ipa| read 0.15-0.64 where a clean ferrocene gives 1 (an electrochemist's
    trial)."""
    step = params.e_step_v
    lo = min(min(params.e_vertex1_v, params.e_vertex2_v), round(low / step) * step)
    hi = max(max(params.e_vertex1_v, params.e_vertex2_v), round(high / step) * step)
    if params.e_vertex1_v > params.e_begin_v:  # anodic first
        return replace(params, e_begin_v=lo, e_vertex1_v=hi, e_vertex2_v=lo)
    begin = max(lo, min(params.e_begin_v, round(low / step) * step))
    if begin <= lo:  # the standard at the window's low end: nowhere below it to start from, so from the top as before
        return replace(params, e_begin_v=hi, e_vertex1_v=lo, e_vertex2_v=hi)
    return replace(params, e_begin_v=begin, e_vertex1_v=lo, e_vertex2_v=hi)


#: what a driver raises when it refuses a command before sending it (its contract): nothing was pumped
REFUSED_UNSENT: tuple[type[Exception], ...] = (SafetyLimitExceeded, ConfigError)

#: how far a pump's reported volume may be from the one asked for, as a share of it (ne1000 checks to 0.1%)
DISPENSE_TOLERANCE = 0.02

#: the kind of instrument each contract is, by the name drivers declare (``DriverDescriptor.kind``)
_KINDS: dict[type, str] = {contract: kind for kind, contract in CONTRACTS.items()}


def _kind_of(driver: object) -> str:
    """Which contract an opened driver satisfies (its kind's name), or "other"."""
    return next((kind for contract, kind in _KINDS.items() if isinstance(driver, contract)), "other")


