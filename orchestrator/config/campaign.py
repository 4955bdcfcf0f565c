"""The campaign file: one validated description of a whole campaign (library, prior data, objective,
surrogate, planner, conditions, instruments, protocol, budget, schedule, safety, simulated world).

Why validate here, eagerly and completely: a campaign runs unattended overnight, so a typo must not
surface at 3 a.m. after ten experiments. Every section is a frozen pydantic model that forbids unknown
keys; files are opened and their columns checked; choices are checked against what labloop really has
(surrogate presets, solvents, registered drivers). :func:`load_campaign` reports *all* problems, each as
``file:line: field: why`` (see :mod:`labloop.orchestrator.config.yaml_source`), before anything is created.

Relative paths resolve against the campaign file's folder, so a campaign and its files move together.
The validated model dumps to JSON (``model_dump(mode="json", by_alias=True)``) with absolute paths and the
protocol's steps inline; that dump validates again, which is how a journal keeps the campaign as run.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import cache, partial
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Strict,
    Tag,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from labloop.core.errors import (
    CampaignError,
    ConfigError,
    InvalidInput,
    Loc,
    Problem,
    Problems,
    SchedulerAddressError,
    dotted,
    not_one_of,
    said,
    shown,
)
from labloop.core.field_types import Bool, Int, NonNegativeNumber, Number, PositiveInt, PositiveNumber
from labloop.core.files import moved_along
from labloop.core.text import plural
from labloop.core.validation import shape_message
from labloop.instruments.contracts import DEFAULT_CELL_VOLUME_ML, DEFAULT_MAX_RATE_ML_MIN, SafetyLimits
from labloop.instruments.cv_analysis import (
    FERROCENE_VS_LI_V,
    MOST_ELECTRONS_IN_A_WAVE,
    OXYGEN_ONSET_VS_LI_V,
    Quantity,
)
from labloop.instruments.registry import driver_names, load_driver
from labloop.instruments.transport import link_option_problem, serial_device
from labloop.orchestrator.config.alert_urls import check_url, written_out_credentials
from labloop.orchestrator.config.fields import POTENTIAL_RANGE_V, SECTION, Interval, Range, in_volts
from labloop.orchestrator.config.objective import Objective
from labloop.orchestrator.config.yaml_source import YamlDocument, display_name, error_lines, read_yaml
from labloop.planners import PlannerSettings
from labloop.protocols.executor import (
    computes_d,
    diffusion_analyte_mm,
    leftover_dilution,
    unemptied_cell,
    unsampled_cv,
)
from labloop.protocols.steps import (
    CV,
    EIS,
    SCAN_RATE_RANGE_V_S,
    SETUP_PARAMETERS,
    AddStandard,
    Blank,
    Purge,
    Step,
    aimed_hits,
    compact,
    half_width_problem,
    limit_problems,
    parse_steps,
    protocol_json_schema,
    pumps,
    slip,
    unit_warnings,
    units_hint,
)
from labloop.surrogate.compute import check_setting
from labloop.surrogate.dataset import named_target, not_a_file, read_table
from labloop.surrogate.library_pipeline import count_rows, library_format, read_chunks
from labloop.surrogate.presets import PRESETS

log = logging.getLogger(__name__)

#: the fixed potentials (V vs the reference) a protocol step scans or holds: cv, blank, eis
SCANNED_POTENTIALS = ("e_begin_v", "e_vertex1_v", "e_vertex2_v", "e_dc_v")

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
#: the largest potential vs its reference a safety limit may allow (potentiostats apply a few volts)
MAX_APPLIED_V = 10.0
#: where a reference electrode may sit (V vs Li/Li+), the cell's and the simulated world's: every common
#: one lies between Li/Li+ itself (0) and about 3.5 V vs Li/Li+
REFERENCE_OFFSET_RANGE_V = (-1.0, 6.0)
#: where ferrocene's couple may sit vs Li/Li+ (V): reported values across electrolytes lie near 3.1-3.6 V
FERROCENE_RANGE_V = (2.5, 4.5)
#: where measured values of ferrocene vs Li/Li+ lie (V): about 3.2 in carbonates to about 3.7 in other solvents; a
#: value outside is allowed (the lab measured it) but warned of (:meth:`Campaign.unusual_ferrocene`)
FERROCENE_USUAL_V = (3.0, 3.9)
#: where dissolved O2's reduction wave may set in (V vs Li/Li+): between free superoxide's on a slow electrode in a
#: tetraalkylammonium salt (about 1.7 V) and O2's in water (about 3.4 V at pH 7), with room on both sides; a band
#: beyond it is written on another scale (vs the reference electrode) or in mV
OXYGEN_ONSET_RANGE_V = (1.0, 4.0)
#: where a lithium-salt electrolyte in a carbonate or in acetonitrile neither reduces nor oxidises on an inert disk
#: (glassy carbon, platinum) at a CV's scan rates (V vs Li/Li+), the default of ``cell.electrolyte_window_v``: ethylene
#: carbonate reduces from about 0.8 V (acetonitrile from about 0.4 V), and neither passes more than a background
#: current below about 5.5 V. The limits surrogate/screening.py lists (``SOLVENT_WINDOWS``) reach 6.5 V and more on
#: glassy carbon with a looser current cut-off; its 5.0 V for EC/DMC is the practical limit on a battery's cathode,
#: whose oxide surfaces catalyse an oxidation an inert disk does not
ELECTROLYTE_WINDOW_V = (0.8, 5.5)
#: lithium named in a table's header (``E vs Li/Li+``) or a reference electrode's name (``Li``, ``Li metal``, matched
#: at its start: orchestrator/potential_table.py reads headers with it too)
LITHIUM_SCALE = re.compile(r"\bli\b|\bli\+|\blithium\b", re.IGNORECASE)
#: how far from 0 V vs Li/Li+ a lithium reference's ``cell.reference_offset_v`` may be before it is warned of
LITHIUM_OFFSET_SLACK_V = 0.1
#: slowest simulated world (device seconds per wall second) other than 0, zero latency
MIN_TIME_SCALE = 1e-3


def _resolve(value: Path, info: ValidationInfo) -> Path:
    """Relative paths count from the campaign file's folder (``context={"base_dir": ...}``), else the cwd. A
    journal's campaign, resumed from a store that moved (``context={"moved": (old folder, new folder),
    "relocated": {}}``), finds a file that is no longer where it was at the same place relative to the store,
    and notes it in ``relocated`` (old path -> new)."""
    context = info.context or {}
    path = Path(os.path.normpath(Path(context.get("base_dir") or Path.cwd()) / value.expanduser()))
    if "moved" in context and (found := moved_along(path, *context["moved"])) is not None:
        context["relocated"][str(path)] = str(found)
        return found
    return path


FilePath = Annotated[Path, AfterValidator(_resolve)]





def _check_table(loc: tuple[str, ...], path: Path, columns: tuple[str, ...], smiles_column: str) -> None:
    """Raise a Problem at ``loc`` unless ``path`` is a readable CSV with a SMILES column and ``columns``."""
    try:
        table = read_table(path, columns, smiles_column=smiles_column)
    except InvalidInput as exc:
        raise Problems(Problem(loc, str(exc))) from None
    if not table.smiles:
        raise Problems(Problem(loc, f"{path}: has no rows"))


#: which prior target each objective quantity is predicted from (orchestrator/learning/models.py)
TARGET_OF = {"oxidation_potential": "ie_ev", "reduction_potential": "ea_ev"}


def _holds_a_capture(path: str) -> bool:
    """Whether ``path`` may take a wire capture's lines: absent, empty, or a capture already (its first line a JSON
    record of one, instruments/transport.py ``WireCapture``), which a resume appends a session to."""
    try:
        with open(path, encoding="utf-8") as file:
            first = file.readline()
    except FileNotFoundError:
        return True
    except (OSError, UnicodeDecodeError):
        return False
    if not first.strip():
        return True
    try:
        record = json.loads(first)
    except ValueError:
        return False
    return isinstance(record, dict) and "dir" in record


class Library(BaseModel):
    """The molecules the planner may choose from: a CSV (or CSV.gz) file, or a Parquet or ``.smi`` file (the
    formats of :mod:`labloop.surrogate.library_pipeline`, whose reader checks them)."""

    model_config = SECTION
    file: FilePath
    smiles_column: str = "smiles"

    @model_validator(mode="after")
    def _readable(self) -> Library:
        if self.file.name.lower().removesuffix(".gz").endswith(STRUCTURE_FILES):
            # read as CSV, an SDF was "no column 'smiles' (columns: 'csd_EVINOO')" (a chemist's trial)
            raise Problems(Problem(("file",), f"{self.file}: a structure file, which labloop does not read: a library "
                                              "is a CSV (with a smiles column), CSV.gz, Parquet or .smi file; write "
                                              "its SMILES out first (RDKit, or Open Babel: obabel lib.sdf -osmi -O "
                                              "lib.smi)"))
        if self.is_csv():
            _check_table(("file",), self.file, (), self.smiles_column)
            return self
        try:
            rows = count_rows(self.file, self.smiles_column)
        except InvalidInput as exc:
            raise Problems(Problem(("file",), str(exc))) from None
        if not rows:
            raise Problems(Problem(("file",), f"{self.file}: has no rows"))
        return self

    def is_csv(self) -> bool:
        """Parquet and .smi by their names; anything else is read as CSV (as it always was)."""
        try:
            return library_format(self.file) == "csv"
        except InvalidInput:
            return True

    def smiles(self) -> list[str]:
        """Every row's SMILES in file order; a file that cannot be read all through is :class:`InvalidInput`."""
        if self.is_csv():
            return read_table(self.file, (), self.smiles_column).smiles
        return [s for chunk in read_chunks(self.file, self.smiles_column) for s in chunk.smiles]


#: file name endings of structure formats a chemist's library may come as, which are no table of SMILES
STRUCTURE_FILES = (".sdf", ".sd", ".mol", ".mol2", ".mae", ".pdb", ".xyz", ".cdx", ".cdxml", ".cml")


class Prior(BaseModel):
    """Data the surrogate is trained on before the first measurement (e.g. DFT IE/EA)."""

    model_config = SECTION
    file: FilePath
    smiles_column: str = "smiles"
    targets: tuple[str, ...] = Field(("ie_ev", "ea_ev"), min_length=1, title="columns", examples=[["ie_ev", "ea_ev"]])
    rows: PositiveInt | None = Field(None, description="train on a seeded random slice of this many rows")

    @field_validator("targets")
    @classmethod
    def _named(cls, targets: tuple[str, ...]) -> tuple[str, ...]:
        """``IE_eV`` as ``ie_ev``: labloop's spelling of the targets it reads a meaning into (its column is read
        whatever its case; :func:`labloop.surrogate.dataset.named_target`)."""
        return tuple(named_target(target) for target in targets)

    @model_validator(mode="after")
    def _readable(self) -> Prior:
        _check_table(("file",), self.file, self.targets, self.smiles_column)
        return self


#: how a reference scale is written, without case or spaces, by the name labloop keeps (``li``, ``fc``): a chemist
#: writes the couple (``Fc+/Fc``, labloop's own spelling everywhere, was refused as "'fc+/fc' is not one of li, fc")
SCALE_SPELLINGS = {"li": "li", "li/li+": "li", "li+/li": "li", "lithium": "li",
                   "fc": "fc", "fc+/fc": "fc", "fc/fc+": "fc", "ferrocene": "fc"}


def reference_scale(value: Any) -> Any:
    """``Fc``, ``Fc+/Fc``, ``Li/Li+`` as ``fc``, ``li``; anything else as written, for the message that refuses
    it (``past_measurements.vs``, ``backtest --truth-vs``)."""
    if not isinstance(value, str):
        return value
    return SCALE_SPELLINGS.get("".join(value.split()).lower(), value.strip())


class PastMeasurements(BaseModel):
    """The lab's own measurements of the objective's potential made before this campaign (a CSV of SMILES and
    potentials), which the campaign learns from before its first proposal and never proposes again.

    Why: a lab that adopts labloop has measured molecules already; measured again they spend the budget on what is
    known, and left out they leave the residual model to learn the lab's error from nothing. The table is read
    once, when the journal is created (``validate`` and ``run`` check it first, as ``labloop backtest`` checks a
    truth table: orchestrator/potential_table.py), and the journal keeps what was read, so a resume needs neither
    the file nor its unchanged content. ``vs``: the scale of the values, ``li`` (V vs Li/Li+) or ``fc`` (V vs
    Fc+/Fc, to which ``cell.ferrocene_vs_li_v`` is added), needed unless the column's header names the scale (a
    header naming Li/Li+ is taken so; one naming Fc+/Fc or another reference, or none, is refused: a table vs Fc+/Fc
    taken as vs Li/Li+ sends every experiment 3 V beside its molecule)."""

    model_config = SECTION
    file: FilePath
    column: str = Field(min_length=1, description="the column of potentials (V) of the objective's quantity")
    smiles_column: str = "smiles"
    vs: Annotated[Literal["li", "fc"] | None, BeforeValidator(reference_scale)] = Field(
        None, description="li (or Li/Li+): V vs Li/Li+; fc (or Fc+/Fc): V vs Fc+/Fc (needed unless the column's "
                          "header names the scale)")


class Surrogate(BaseModel):
    """Which surrogate recipe to train, how often to retrain it on the measurements, and whether a proposal
    waits for a retrain in progress (``wait_for_retrain``: the retrained model then reaches the very next
    proposal, at the cost of the instruments idling while it trains; without it they keep measuring with the
    model they have, which is what a lab wants when an experiment takes longer than a retrain). ``keep_models``:
    how many retrained rounds keep their weights; older ones are deleted (~27 MB each with 3 folds, and an
    unattended week retrains every hour), and 2 leave a resume the round before if the newest is unreadable."""

    model_config = SECTION
    preset: str = "fast"
    folds: Int = Field(5, ge=2, le=20)
    retrain_every: PositiveInt = 10
    wait_for_retrain: Bool = False
    keep_models: Int = Field(2, ge=1, description="retrained rounds whose weights are kept (older ones are deleted)")
    epochs: PositiveInt | None = Field(None, le=100_000, description="training epochs (default: the preset's)")

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str) -> str:
        if value not in PRESETS:
            raise ValueError(not_one_of(value, sorted(PRESETS)))
        return value


class Compute(BaseModel):
    """Where library-scale work (featurise + predict the library, score it) runs
    (:mod:`labloop.surrogate.compute`): ``auto`` (the default; None means the same) uses a LocalCluster from
    20,000 library rows on, ``local`` always, ``none`` never, and ``tcp://HOST:PORT`` that Dask scheduler's
    cluster. Which campaigns use it is decided in :func:`labloop.orchestrator.compose.compute_placement`."""

    model_config = SECTION
    scheduler: str | None = Field(None, description="auto (default), local, none, or tcp://HOST:PORT of a running "
                                                    "Dask scheduler")

    @field_validator("scheduler")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return check_setting(value)
        except SchedulerAddressError as exc:
            raise ValueError(str(exc)) from None


class Planner(BaseModel):
    """How the next experiments are chosen; ``acquisition`` is for ``bayes`` (default chosen by the goal)."""

    model_config = SECTION
    kind: Literal["random", "bayes", "greedy", "screening"] = "random"
    acquisition: Literal["ei", "pi", "lcb", "window_probability"] | None = None
    batch_size: Int = Field(1, ge=1, le=96)
    diversity: Annotated[float, Strict(), Field(gt=0, le=1, allow_inf_nan=False)] = Field(
        0.7, description="bayes/greedy: highest Tanimoto similarity of two molecules in one batch (1: no limit)")
    first_batch: Literal["design", "acquisition"] = Field(
        "design", description="bayes/greedy: before any measurement, spread the batch over molecule size to "
        "pin the calibration ('design'), or choose it by the acquisition like every other batch")
    batch: Literal["diverse", "thompson"] = Field(
        "diverse", description="bayes: fill a batch from the top of the acquisition, no two molecules more similar "
        "than diversity ('diverse'), or by Thompson draws from the residual model's joint posterior ('thompson')")
    approve: Bool = Field(False, description="hold each proposed batch as 'awaiting_approval' until a person "
                                             "approves or vetoes it (labloop approve, or the dashboard)")

    @model_validator(mode="after")
    def _acquisition_for_bayes(self) -> Planner:
        if self.acquisition is not None and self.kind != "bayes":
            raise Problems(Problem(("acquisition",), f"only used by kind 'bayes' (kind is {self.kind!r})"))
        if self.batch != "diverse" and self.kind != "bayes":
            raise Problems(Problem(("batch",), f"only used by kind 'bayes' (kind is {self.kind!r})"))
        return self

    def acquisition_for(self, goal: str) -> str:
        """The acquisition ``bayes`` uses: the one named, else window probability for a window goal and
        expected improvement otherwise."""
        return self.acquisition or ("window_probability" if goal == "window" else "ei")


def _choice_problem(value: Any) -> str | None:
    """Why ``value`` is no choice (a whole number, a finite number or a word), or None. A true/false is named as such:
    no step parameter a planner may vary is a yes/no (``refill`` is the rig's set-up)."""
    if isinstance(value, bool):
        return ("a number or a word, not true/false: no step parameter a planner may vary is a yes/no "
                f"(got {shown(value)})")
    if not isinstance(value, int | float | str) or (isinstance(value, float) and not math.isfinite(value)):
        return f"a finite number or a word (got {shown(value)})"
    return None


def _repeats(choices: Sequence[Any]) -> list[Problem]:
    """Each choice equal to an earlier one (``[0.1, 0.1]``; 1 and 1.0 are one rate), at its place, naming the first
    (with its text when written otherwise). Only for choices that are each a number or a word: True equals 1."""
    problems = []
    for index, item in enumerate(choices):
        first = next(i for i, earlier in enumerate(choices) if earlier == item)
        if first != index:
            written = "" if repr(choices[first]) == repr(item) else f" ({shown(choices[first])})"
            problems.append(Problem((index,), f"{shown(item)} repeats choices[{first}]{written}: list each value once"))
    return problems


class Choices(BaseModel):
    """A categorical condition: one of these values per experiment (a whole number stays one: a step
    parameter such as ``n_scans`` takes ``{choices: [1, 2, 3]}``, and 1.0 is no count of scans)."""

    model_config = SECTION
    choices: tuple[Int | Number | str, ...] = Field(min_length=1, title="values to choose among",
                                                    examples=[[0.05, 0.1, 0.2]])

    @field_validator("choices", mode="before")
    @classmethod
    def _plain_choices(cls, value: Any, info: ValidationInfo) -> Any:
        """Choices that are no list of distinct values in one plain line at their place: not a list, or empty, in the
        words every field of the wrong shape has (:func:`shape_message`: pydantic said ``must be a valid tuple``, a
        word no YAML file has, and ``must have at least 1 item after validation, not 0``); each choice that is none,
        not as pydantic's failure of each member of the union (``choices[0].int: must be a valid integer (got
        False)``); and a value listed again, which was taken in silence as two choices, a planner's category twice.
        A resumed journal's campaign keeps a value listed again: it ran with it, and refusing it now would leave the
        campaign unresumable."""
        if not isinstance(value, list | tuple) or not value:
            kind = "too_short" if isinstance(value, list | tuple) else "list_type"
            shaped = shape_message(kind, value, {"min_length": 1}, cls.model_fields["choices"])
            assert shaped is not None  # a list's error of no list, or of an empty one: both have their words
            raise Problems(Problem((), shaped))
        continued = bool((info.context or {}).get("continued"))
        problems = [Problem((index,), why) for index, item in enumerate(value)
                    if (why := _choice_problem(item)) is not None] or ([] if continued else _repeats(value))
        if problems:
            raise Problems(*problems)
        return value


def _condition_kind(value: Any) -> str:
    return "<choices>" if isinstance(value, dict | Choices) else "<range>"


#: a condition: a range (or one number), or ``{choices: [...]}`` — told apart by their shape, so an error
#: speaks of the form the user wrote
ConditionValue = Annotated[Annotated[Range, Tag("<range>")] | Annotated[Choices, Tag("<choices>")],
                           Discriminator(_condition_kind)]


class Conditions(BaseModel):
    """Measurement conditions the planner may vary, each named like the protocol step parameter it sets:
    a range ``[low, high]`` (searched log-uniformly), one number to keep fixed, or ``{choices: [...]}``."""

    model_config = ConfigDict(frozen=True, extra="allow")
    __pydantic_extra__: dict[str, ConditionValue]
    # None: not planned, so the protocol's cv runs at its own scan_rate_v_s (a default of 0.1 V/s here used to
    # override whatever the protocol said, in every campaign without a conditions section)
    scan_rate_v_s: Annotated[ConditionValue | None, Field(
        description="V/s; [low, high], one value, or {choices: [...]} (a lab's fixed rates)")] = Field(
        None, title="two scan rates [low, high] (V/s; or one, kept fixed; or {choices: [0.05, 0.1, 0.2]})",
        examples=[[0.05, 0.5]])

    @model_validator(mode="before")
    @classmethod
    def _shapes(cls, data: Any) -> Any:
        """Each condition is a number, ``[low, high]`` or ``{choices: [...]}``: three rates written as a list said
        "must have at most 2 items after validation, not 3", and a word "must be a valid tuple" (a newcomer's
        trial), where the fix is the form to write."""
        if not isinstance(data, dict):
            return data
        problems = []
        for name, value in data.items():
            if isinstance(value, list | tuple) and len(value) not in (1, 2):
                choose = f"{{choices: {shown(list(value))}}}" if value else "{choices: [...]}"
                problems.append(Problem((name,), f"a range is two values, [low, high], searched between them; to "
                                                 f"choose among fixed values write {choose} (got {shown(value)})"))
            elif isinstance(value, str | bool):
                problems.append(Problem((name,), f"a number (kept fixed), a range [low, high] or {{choices: [...]}} "
                                                 f"(got {shown(value)})"))
        if problems:
            raise Problems(*problems)
        return data

    @field_validator("scan_rate_v_s")
    @classmethod
    def _plausible_scan_rate(cls, value: tuple[float, float] | Choices | None) -> tuple[float, float] | Choices | None:
        if value is None:
            return value
        low, high = SCAN_RATE_RANGE_V_S
        if isinstance(value, Choices):  # a lab's fixed rates (50, 100, 200 mV/s): each a rate in range
            problems = [Problem(("choices", index), f"a scan rate in V/s, {low:g}..{high:g} (got {rate!r})"
                                + (f": {slip('mV/s', 'V/s', f'{compact(rate / 1000)} V/s')}"
                                   if isinstance(rate, int | float) and low <= rate / 1000 <= high else ""))
                        for index, rate in enumerate(value.choices)
                        if isinstance(rate, str | bool) or not low <= rate <= high]
            if problems:
                raise Problems(*problems)
            return value
        if not (low <= value[0] and value[1] <= high):
            # a range in mV/s: the ends beyond 10 V/s read as mV/s (the step's own scan rates say it likewise); when
            # only the high end slipped, the hint is of it alone ([0.02, 50]: the 0.02 V/s is no slip)
            fixed = [rate / 1000 if rate > high else rate for rate in value]
            hint = ("" if not (value[1] > high and low <= fixed[0] <= fixed[1] <= high) else
                    f": {slip('mV/s', 'V/s', f'[{compact(fixed[0])}, {compact(fixed[1])}] V/s')}" if value[0] > high
                    else f": its high end {compact(value[1])}, {slip('mV/s', 'V/s', f'{compact(fixed[1])} V/s')}")
            raise ValueError(f"must lie within {low:g}..{high:g} V/s (a CV a potentiostat can run in a sensible "
                             f"time), got [{compact(value[0])}, {compact(value[1])}]{hint}")
        return value

    def space(self) -> dict[str, tuple[float, float] | dict[str, tuple[Any, ...]]]:
        """Every condition: ``(low, high)`` or ``{"choices": (...)}`` (the planners' form)."""
        given = {} if self.scan_rate_v_s is None else {"scan_rate_v_s": self.scan_rate_v_s}
        return {name: value.model_dump() if isinstance(value, Choices) else value
                for name, value in {**given, **(self.__pydantic_extra__ or {})}.items()}

    def varies(self, name: str) -> bool:
        """Whether condition ``name`` is planned among more than one value (a range, or two choices or more)."""
        value = self.space().get(name)
        if isinstance(value, dict):
            return len(set(value["choices"])) > 1
        return value is not None and value[0] != value[1]


#: the longest port name a campaign may give (characters): a path is at most 4,096 bytes on Linux, and a serial port's
#: a few dozen (``/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A1B2C3D4-if00-port0``, ``rfc2217://host:4001``)
MOST_PORT_CHARS = 1024


class Instrument(BaseModel):
    """One instrument of the rig: a registered driver, its port, and driver options."""

    model_config = SECTION
    driver: str
    port: str | None = None
    options: dict[str, Any] = {}

    @field_validator("port")
    @classmethod
    def _port_of_a_length(cls, value: str | None) -> str | None:
        """A port of :data:`MOST_PORT_CHARS` at most: a 5,000-character one was echoed whole in a 5,259-character
        error line (an adversarial trial)."""
        if value is not None and len(value) > MOST_PORT_CHARS:
            raise ValueError(f"{len(value)} characters long: a serial port's path or URL is a few dozen (at most "
                             f"{MOST_PORT_CHARS})")
        return value

    @field_validator("driver")
    @classmethod
    def _registered(cls, value: str) -> str:
        names = driver_names()  # labloop's own always among them (pyproject.toml's labloop.drivers)
        if value not in names:
            raise ValueError(not_one_of(value, names))
        return value

    @field_validator("options")
    @classmethod
    def _link_options_in_range(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        """Every driver's reply deadline and retries are finite (a silent device must not hang the run), and its
        wire capture (``capture``) is a file that can be written. A relative capture counts from the campaign
        file's folder, as ``store``, ``library`` and ``protocol`` do: it counted from wherever ``run`` was
        started, and ``resume``, which reads the campaign from the journal, from wherever it was started."""
        capture = value.get("capture")
        if isinstance(capture, str | Path) and str(capture).strip():
            value = {**value, "capture": str(_resolve(Path(capture), info))}
        problems = [Problem((name,), problem) for name, option in value.items()
                    if (problem := link_option_problem(name, option)) is not None]
        if problems:
            raise Problems(*problems)
        return value

    @model_validator(mode="after")
    def _known_options(self) -> Instrument:
        """Every option is one the driver takes (its ``open``'s keywords), with a value it takes where the driver
        says so (its descriptor's ``option_problem``): a typo such as ``adress``, or ``diameter_mm: big``, is
        refused here, with the line, instead of as a TypeError when the run opens the port."""
        try:
            descriptor = load_driver(self.driver).descriptor
        except ConfigError as exc:
            raise Problems(Problem(("driver",), exc.what)) from None
        # an unknown name, what labloop gives the driver itself, or a value the driver would refuse when it opens
        # (validate without --dry-run opens nothing)
        problems = [Problem(("options", key), problem) for key, value in self.options.items()
                    if (problem := descriptor.option_refusal(key, value)) is not None]
        if problems:
            raise Problems(*problems)
        return self


def _check_steps(steps: Any) -> tuple[Any, ...]:
    """A protocol is a non-empty list of valid steps (:func:`labloop.protocols.steps.parse_steps`); the raw
    list is kept, so the campaign dumps it as written."""
    parse_steps(steps)
    return tuple(steps)


class ProtocolSpec(BaseModel):
    """The steps of one experiment, read from ``file`` or written inline in the campaign."""

    model_config = SECTION
    file: FilePath | None = None
    steps: Annotated[tuple[Any, ...], AfterValidator(_check_steps)]

    @property
    def step_names(self) -> list[str]:
        return [step if isinstance(step, str) else next(iter(step)) for step in self.steps]

    @property
    def adds_standard(self) -> bool:
        """Whether an ``add_standard`` step measures ferrocene: the only reader of ``cell.ferrocene_vs_li_v``."""
        return AddStandard.name in self.step_names


def _load_protocol(value: Any, info: ValidationInfo) -> Any:
    """``protocol: steps.yaml`` (problems point into that file) or an inline list of steps -> ``{file, steps}``;
    the dumped form ``{file, steps}`` passes as it is."""
    if isinstance(value, list):
        _check_steps(value)
        return {"steps": value}
    if not isinstance(value, str | Path):
        if isinstance(value, dict) and "steps" in value:  # the dumped form, as the journal keeps it
            return value
        # "must be a mapping of fields, got int 5" misled: a protocol is no mapping (an adversarial trial)
        raise ValueError(f"must be the protocol file's path or a list of steps, got {shown(value)}")
    path = _resolve(Path(value), info)
    if (problem := not_a_file(path)) is not None:
        raise ValueError(f"{path}: {problem}")
    doc = read_yaml(path)
    try:
        _check_steps(doc.data)
    except Problems as exc:
        raise Problems(*(Problem(p.loc, p.message, where=doc.where(p.loc)) for p in exc.problems)) from None
    return {"file": path, "steps": doc.data}


class Budget(BaseModel):
    """When to stop: after ``max_experiments`` done, ``max_hours``, or ``stop_after_hits`` hits; and (exit 1)
    after ``max_consecutive_faults`` instrument faults in a row, or ``max_consecutive_failed_analyses``
    unusable voltammograms or proposals refused by the safety limits in a row (molecules beyond the scan window
    fail now and then; ten in a row rather mean a dead electrode or a wrong window)."""

    model_config = SECTION
    max_experiments: PositiveInt = Field(30, le=1_000_000)
    max_hours: PositiveNumber | None = None
    stop_after_hits: PositiveInt | None = None
    max_consecutive_faults: PositiveInt = 3
    max_consecutive_failed_analyses: PositiveInt = 10


def parse_active_hours(text: str) -> tuple[int, int]:
    """``"19:00-07:00"`` -> minutes of the day (1140, 420); an end before the start crosses midnight,
    ``24:00`` ends at midnight. Start and end must differ (use ``"00:00-24:00"`` for always)."""
    match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", text)
    if match is None:
        raise ValueError(f"must look like 'HH:MM-HH:MM', e.g. '19:00-07:00', got {shown(text)}")
    h1, m1, h2, m2 = map(int, match.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2 != 0):
        raise ValueError(f"hours are 00-23 (24:00 only as an end) and minutes 00-59, got {shown(text)}")
    start, end = 60 * h1 + m1, 60 * h2 + m2
    if start == end:
        raise ValueError(f"start and end are the same time in {text!r}; use '00:00-24:00' for always")
    return start, end


class Schedule(BaseModel):
    """When experiments may run (local time) and how often instruments are health-checked."""

    model_config = SECTION
    active_hours: str = "00:00-24:00"
    health_check_minutes: PositiveNumber = 10.0

    @field_validator("active_hours")
    @classmethod
    def _parses(cls, value: str) -> str:
        parse_active_hours(value)
        return value


#: the largest syringe a syringe pump holds (mL: 140 mL is the largest common one) and the largest cell a CV
#: campaign fills (mL: cells hold 1-100 mL; a litre is a reservoir): a limit beyond either is a units slip
MAX_SYRINGE_ML = 150.0
MAX_CELL_ML = 1000.0


def _volume_limit(value: float, largest: float, what: str) -> float:
    """``value`` (mL) if a ``what`` can hold it; else the one line, offering it read as microlitres."""
    if value > largest:
        raise ValueError(f"{compact(value)} mL is more than any {what} a rig holds (at most {compact(largest)} mL)"
                         f"{units_hint(value, (0.0, largest), 'uL', 'mL')}")
    return value


class Safety(BaseModel):
    """The rig's hard limits (:class:`SafetyLimits`), handed to every driver; potentials are against the
    cell's reference electrode."""

    model_config = SECTION
    max_dispense_ml: PositiveNumber = 5.0
    syringe_ml: PositiveNumber = 10.0
    potential_limits_v: Interval = Field((-3.0, 3.0), title="two potentials [low, high] (V vs the reference)",
                                         examples=[[-1.7, 2.0]])
    max_rate_ml_min: PositiveNumber = Field(DEFAULT_MAX_RATE_ML_MIN, description="fastest flow a pump is asked for")
    cell_volume_ml: PositiveNumber = Field(DEFAULT_CELL_VOLUME_ML, description="what the cell holds: what is "
                                           "pumped into it, over one experiment or several, until a rinse or "
                                           "clean empties it")
    syringes_ml: dict[str, PositiveNumber] = Field(default_factory=dict, description="a pump's own syringe (mL) "
                                                   "where it is not syringe_ml, e.g. {analyte_pump: 1.0}")

    @field_validator("syringe_ml", "cell_volume_ml")
    @classmethod
    def _millilitres(cls, value: float, info: ValidationInfo) -> float:
        """A limit beyond any syringe or cell (microlitres written as millilitres) would loosen the limit a
        thousandfold rather than guard anything: refused, with the value meant."""
        return _volume_limit(value, MAX_SYRINGE_ML if info.field_name == "syringe_ml" else MAX_CELL_ML,
                             "syringe" if info.field_name == "syringe_ml" else "cell")

    @field_validator("syringes_ml")
    @classmethod
    def _pump_syringes(cls, value: dict[str, float]) -> dict[str, float]:
        for pump, volume in value.items():
            try:
                _volume_limit(volume, MAX_SYRINGE_ML, "syringe")
            except ValueError as exc:
                raise ValueError(f"{pump}: {exc}") from None
        return value

    @field_validator("potential_limits_v")
    @classmethod
    def _volts(cls, value: tuple[float, float]) -> tuple[float, float]:
        """No potentiostat applies more than 10 V against its reference: limits beyond are not a limit at all."""
        far = [v for v in value if abs(v) > MAX_APPLIED_V]
        if far:
            fixed = in_volts(list(value), lambda v: abs(v) <= MAX_APPLIED_V)
            raise ValueError(f"{far[0]:g} V against the reference is more than any potentiostat applies "
                             f"(+/-{MAX_APPLIED_V:g} V): {slip('millivolts', 'volts', fixed)}")
        return value

    def limits(self, pump: str | None = None) -> SafetyLimits:
        """The rig's limits, or one pump's: its syringe (``syringes_ml``), and no dispense beyond it."""
        if pump is None or pump not in self.syringes_ml:  # max_dispense_ml above syringe_ml is refused here
            return SafetyLimits(self.max_dispense_ml, self.syringe_ml, self.potential_limits_v,
                                self.max_rate_ml_min, self.cell_volume_ml)
        syringe = self.syringes_ml[pump]
        return SafetyLimits(min(self.max_dispense_ml, syringe), syringe, self.potential_limits_v,
                            self.max_rate_ml_min, self.cell_volume_ml)

    def pump_limits(self) -> dict[str, SafetyLimits]:
        """The limits of every pump with its own syringe, by instrument name."""
        return {name: self.limits(name) for name in self.syringes_ml}

    @model_validator(mode="after")
    def _consistent(self) -> Safety:
        try:
            self.limits()
        except ConfigError as exc:
            raise Problems(Problem(("max_dispense_ml",), exc.what)) from None
        return self


TruthKind = Literal["born", "column", "groups", "smooth", "drift"]
#: the old spelling ``from: ie_ea | column`` of a truth's kind
_KIND_OF_SOURCE = {"ie_ea": "born", "column": "column"}


#: the largest systematic part (group shift, smooth field amplitude) a simulated world may add (V): beyond it
#: every potential leaves any window, which is a units slip (millivolts), not a world
MAX_WORLD_PART_V = 3.0
#: the smooth field's shortest length: its draw costs 1/length min-hashes per random feature (at 1e-4 a
#: molecule took gigabytes), and below it neighbours share almost nothing anyway
MIN_SMOOTH_LENGTH = 0.05
#: the reference walk's largest step per measurement (V)
MAX_WALK_STEP_V = 0.5


class Truth(BaseModel):
    """The simulated world's true potentials (``kind``; formulas in ``sim/world.py``): IE/EA with the Born
    solvation term of ``solvent`` (``born``), a column of potentials vs Li/Li+ (``column``), Born plus
    functional-group ``shifts`` (``groups``: SMARTS -> V, default set in ``sim/truth.py``), Born plus a
    smooth random function of the molecule (``smooth``: a Gaussian-process draw of ``amplitude_v`` and
    ``length``), or any of these (``base``) plus a random walk of the reference electrode (``drift``: steps
    of ``walk_step_v`` per measurement). ``file`` defaults to the library file. ``quantity`` may say what a
    column holds, so a column of reduction potentials is refused for an oxidation objective. Only the world
    reads these columns. ``from: ie_ea | column`` is the old spelling of ``kind: born | column``."""

    model_config = SECTION
    kind: TruthKind
    file: FilePath | None = None
    solvent: str = "acn"
    column: str | None = None
    quantity: Quantity | None = None
    shifts: dict[str, Number] | None = None
    amplitude_v: NonNegativeNumber = Field(0.2, le=MAX_WORLD_PART_V)
    length: PositiveNumber = Field(0.5, ge=MIN_SMOOTH_LENGTH)
    base: Literal["born", "column", "groups", "smooth"] | None = None
    walk_step_v: NonNegativeNumber = Field(0.005, le=MAX_WALK_STEP_V)

    @model_validator(mode="before")
    @classmethod
    def _infer_kind(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        source = data.pop("from", None)
        if source is not None:
            if "kind" in data:
                raise Problems(Problem(("from",), "give kind only (from is its old spelling)"))
            if source not in _KIND_OF_SOURCE:
                raise Problems(Problem(("from",), not_one_of(str(source), list(_KIND_OF_SOURCE))))
            data["kind"] = _KIND_OF_SOURCE[source]
        data.setdefault("kind", "column" if "column" in data else "born")
        return data

    @field_validator("solvent")
    @classmethod
    def _known_solvent(cls, value: str) -> str:
        from labloop.sim.world import DIELECTRIC_CONSTANTS  # the world owns its solvents

        if value not in DIELECTRIC_CONSTANTS:
            raise ValueError(not_one_of(value, list(DIELECTRIC_CONSTANTS)))
        return value

    @field_validator("shifts")
    @classmethod
    def _valid_smarts(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        from labloop.sim.truth import compile_shifts

        if value is not None:
            compile_shifts(value)  # ValueError names the pattern
            for smarts, shift in value.items():
                if abs(shift) > MAX_WORLD_PART_V:
                    raise ValueError(f"the shift of {smarts!r} must lie within +/-{MAX_WORLD_PART_V:g} V, "
                                     f"got {shift!r}")
        return value

    @model_validator(mode="after")
    def _fields_for_kind(self) -> Truth:
        if self.source == "column" and self.column is None:
            raise Problems(Problem(("column",), f"required with kind {self.kind!r} on a column (the CSV column "
                                                "of potentials)"))
        if self.source == "ie_ea" and self.column is not None:
            raise Problems(Problem(("column",), f"only used when the truth is a column (kind is {self.kind!r})"))
        if self.kind == "drift" and self.base is None:
            raise Problems(Problem(("base",), "required with kind 'drift': the truth the walk is added to "
                                              "(born, column, groups or smooth)"))
        if self.kind != "drift" and self.base is not None:
            raise Problems(Problem(("base",), f"only used with kind 'drift' (kind is {self.kind!r})"))
        if self.shifts is not None and "groups" not in self.parts:
            raise Problems(Problem(("shifts",), f"only used with kind 'groups' (kind is {self.kind!r})"))
        # a field of another kind would be ignored: a world the user believes combined, but is not
        used_by = {"amplitude_v": ("smooth", "smooth" in self.parts), "length": ("smooth", "smooth" in self.parts),
                   "walk_step_v": ("drift", "drift" in self.parts),
                   "solvent": ("born, groups or smooth (IE/EA with the Born term)", self.source == "ie_ea")}
        for name, (kinds, used) in used_by.items():
            if not used and getattr(self, name) != Truth.model_fields[name].default:
                raise Problems(Problem((name,), f"only used with kind {kinds} (kind is {self.kind!r}"
                                                f"{f', base {self.base!r}' if self.base else ''})"))
        return self

    @property
    def parts(self) -> frozenset[str]:
        """What the world adds beyond its base truth: some of "groups", "smooth", "drift"."""
        own = {self.kind, self.base} & {"groups", "smooth", "drift"}
        return frozenset(own)

    @property
    def source(self) -> Literal["ie_ea", "column"]:
        """Where the base values come from: IE/EA columns (with the Born term) or a column of potentials."""
        return "column" if self.kind == "column" or self.base == "column" else "ie_ea"

    @property
    def columns(self) -> tuple[str, ...]:
        return ("ie_ev", "ea_ev") if self.source == "ie_ea" else (self.column,)  # type: ignore[return-value]


def _placed(value: float, span: tuple[float, float], what: str, note: str = "", *, subject: str = "it",
            usual: str = "") -> float:
    """``value`` (V vs Li/Li+) when ``what`` can sit there (within ``span``), else the one line saying it cannot,
    with the likely slip: a sign (-3.2 for 3.2: Li/Li+ vs ``subject`` written for ``subject`` vs Li/Li+; ``usual``
    says what sits near the default, said when the fixed value is within 0.3 V of 3.2) or millivolts (3200 for 3.2).
    Why the sign first: -3.2 was offered as millivolts (-0.0032), a reference electrode at Li/Li+ itself, where a
    chemist had written where Li/Li+ lies vs the reference."""
    low, high = span
    if not low <= value <= high:
        if value < 0 and low <= -value <= high:
            near = f" ({usual})" if usual and abs(-value - FERROCENE_VS_LI_V) <= 0.3 else ""
            hint = (f": a sign slip? {compact(value)} V is where Li/Li+ lies vs {subject}; the field is where "
                    f"{subject} lies vs Li/Li+: {compact(-value)}{near}")
        else:
            hint = units_hint(value, (low, high), "millivolts", "volts", unit="") if abs(value) >= 1 else ""
        raise ValueError(f"{compact(value)} V vs Li/Li+ is no place for {what} ({compact(low)}..{compact(high)} V"
                         f"{note}){hint}")
    return value


#: the temperatures (C) a cell of an organic electrolyte is measured at, from a cold bath to near acetonitrile's boiling
CELL_TEMPERATURE_RANGE_C = (-40.0, 80.0)
#: a line of the report's cell conditions (a chemist's trial: solvent, electrolyte and electrodes were nowhere, and a
#: methods section could not be written from the report)
Description = Annotated[str | None, Field(max_length=200)]


class Cell(BaseModel):
    """The electrochemical cell: where its reference electrode sits, in V vs Li/Li+, so that measured
    potentials can be reported vs Li/Li+. The default, 3.2 V, is where Fc+/Fc is measured vs Li/Li+ in
    carbonate electrolytes; a given reference (an Ag/Ag+ electrode, a pseudo-reference wire) sits wherever
    its filling and the electrolyte put it, and conversions across solvents hold to about +/-0.3 V
    (docs/protocols.md "Potential scales"): calibrate yours against ferrocene. The electrode's name, which
    labels every measurement, is the potentiostat driver's ``reference`` option. ``oxygen_onset_v`` is where
    dissolved O2's reduction wave sets in (V vs Li/Li+), which a blank is judged by: it depends on the
    electrolyte's cation (default: a lithium salt's, :data:`labloop.instruments.cv_analysis.OXYGEN_ONSET_VS_LI_V`;
    without Li+ it lies about half a volt lower). ``ferrocene_vs_li_v`` is where ferrocene's Fc+/Fc couple sits vs
    Li/Li+ in the campaign's electrolyte, through which an ``add_standard`` step puts the analyte on the Li/Li+ scale
    (default :data:`labloop.instruments.cv_analysis.FERROCENE_VS_LI_V`, 3.20 V, a carbonate electrolyte's; another
    solvent needs its own measured value, and a dry run's simulated ferrocene sits there too).
    ``electrolyte_window_v`` is where the electrolyte itself survives (V vs Li/Li+, default
    :data:`ELECTROLYTE_WINDOW_V`, a carbonate's or acetonitrile's with a lithium salt): a scan beyond it measures the
    solvent's or salt's own wave, which the analysis can take for the analyte's, and validate warns of it
    (:meth:`Campaign.protocol_warnings`). ``temperature_c`` is the cell's, which D, k0 and the reversibility's dEp
    cut-offs are computed at, and a dry run's simulated cell is at; ``solvent``, ``electrolyte``,
    ``working_electrode`` and ``counter_electrode`` describe the cell for the report's methods, which a chemist's
    trial could not write."""

    model_config = SECTION
    reference_offset_v: Number = Field(3.2, json_schema_extra={"minimum": REFERENCE_OFFSET_RANGE_V[0],
                                                             "maximum": REFERENCE_OFFSET_RANGE_V[1]})
    ferrocene_vs_li_v: Number = Field(FERROCENE_VS_LI_V, description="where Fc+/Fc sits vs Li/Li+ in this electrolyte "
                                      "(V): add_standard's potentials go through it",
                                      json_schema_extra={"minimum": FERROCENE_RANGE_V[0],
                                                         "maximum": FERROCENE_RANGE_V[1]})
    oxygen_onset_v: Interval = Field(OXYGEN_ONSET_VS_LI_V, description="where dissolved O2's reduction wave sets in "
                                     "(V vs Li/Li+): a blank's wave there is O2, purged rather than cleaned",
                                     title="two potentials [low, high] (V vs Li/Li+)",
                                     examples=[list(OXYGEN_ONSET_VS_LI_V)])
    electrolyte_window_v: Interval = Field(ELECTROLYTE_WINDOW_V, description="where the electrolyte neither reduces "
                                           "nor oxidises (V vs Li/Li+): a scan beyond it is warned of",
                                           title="two potentials [low, high] (V vs Li/Li+)",
                                           examples=[list(ELECTROLYTE_WINDOW_V)])
    temperature_c: Number = Field(25.0, description="the cell's temperature (C): D, k0 and the reversibility's dEp "
                                  f"cut-offs are computed at it; {CELL_TEMPERATURE_RANGE_C[0]:g}.."
                                  f"{CELL_TEMPERATURE_RANGE_C[1]:g} C",
                                  json_schema_extra={"minimum": CELL_TEMPERATURE_RANGE_C[0],
                                                     "maximum": CELL_TEMPERATURE_RANGE_C[1]})
    solvent: Description = Field(None, description="for the report: the solvent, e.g. acetonitrile")
    electrolyte: Description = Field(None, description="for the report: the supporting electrolyte and its "
                                     "concentration, e.g. 0.1 M TBAPF6")
    working_electrode: Description = Field(None, description="for the report: its material and size, e.g. 3 mm "
                                           "glassy carbon disk, polished with 0.05 um alumina")
    counter_electrode: Description = Field(None, description="for the report, e.g. Pt wire")

    @property
    def temperature_k(self) -> float:
        """``temperature_c`` in kelvin: what the analysis, D, k0 and a dry run's simulated cell take."""
        return self.temperature_c + 273.15

    @field_validator("temperature_c")
    @classmethod
    def _a_cells_temperature(cls, value: float) -> float:
        """A temperature a cell is measured at (:data:`CELL_TEMPERATURE_RANGE_C`); one in kelvin is offered in C.
        Why: 298 was refused as "less than or equal to 80" with no word of the slip, where other fields name theirs
        (an electrochemist's trial)."""
        low, high = CELL_TEMPERATURE_RANGE_C
        if not low <= value <= high:
            celsius = value - 273.15
            hint = f": {slip('kelvin', 'C', f'{compact(celsius)} C')}" if low <= celsius <= high else ""
            raise ValueError(f"{compact(value)} C is beyond the {compact(low)}..{compact(high)} C a cell is measured "
                             f"at{hint}")
        return value

    @field_validator("reference_offset_v")
    @classmethod
    def _on_the_li_scale(cls, value: float) -> float:
        """Where a reference electrode can sit vs Li/Li+ (:data:`REFERENCE_OFFSET_RANGE_V`)."""
        return _placed(value, REFERENCE_OFFSET_RANGE_V, "a reference electrode", subject="the reference",
                       usual="3.2 V vs Li/Li+ is about where Fc+/Fc lies in carbonate electrolytes, the default")

    @field_validator("ferrocene_vs_li_v")
    @classmethod
    def _ferrocene_on_the_li_scale(cls, value: float) -> float:
        """Where ferrocene can sit vs Li/Li+ (:data:`FERROCENE_RANGE_V`)."""
        return _placed(value, FERROCENE_RANGE_V, "ferrocene's couple", "; 3.2 in carbonates", subject="Fc+/Fc")

    @field_validator("electrolyte_window_v")
    @classmethod
    def _window_on_the_li_scale(cls, value: tuple[float, float]) -> tuple[float, float]:
        """Potentials a cell reaches (:data:`POTENTIAL_RANGE_V`, as an objective's): beyond them the window was most
        likely written in mV, which the one line offers to fix."""
        low, high = POTENTIAL_RANGE_V
        far = [v for v in value if not low <= v <= high]
        if far:
            fixed = in_volts(list(value), lambda v: low <= v <= high)
            hint = f": {slip('millivolts', 'volts', fixed)}" if fixed else ""
            raise ValueError(f"{compact(far[0])} V vs Li/Li+ is no potential a cell reaches "
                             f"({compact(low)}..{compact(high)} V){hint}")
        return value

    @model_validator(mode="after")
    def _oxygen_on_the_li_scale(self) -> Cell:
        """Where O2 can set in vs Li/Li+ (:data:`OXYGEN_ONSET_RANGE_V`); a band beyond it was most likely written in mV
        or on the reference electrode's scale (-1.0..-0.4 for 2.2..2.8 at 3.2 V), which the one line offers."""
        low, high = OXYGEN_ONSET_RANGE_V
        onset = self.oxygen_onset_v
        if low <= onset[0] and onset[1] <= high:
            return self
        hint = ""
        on_li = [e + self.reference_offset_v for e in onset]
        for meant, written, read in (("V vs the reference", "V vs Li/Li+", on_li),
                                     ("millivolts", "volts", [e / 1000 for e in onset])):
            if low <= read[0] and read[1] <= high:
                hint = f": {slip(meant, written, f'{compact(read[0])}..{compact(read[1])} V vs Li/Li+')}"
                break
        raise Problems(Problem(("oxygen_onset_v",), f"{compact(onset[0])}..{compact(onset[1])} V vs Li/Li+ is no place "
                                                    f"for O2 to reduce ({compact(low)}..{compact(high)} V){hint}"))


class World(BaseModel):
    """The simulated world of ``--dry-run``: ground truth, measurement noise (V), time scale (device
    seconds per wall second; 0 means zero latency), where the emulated reference electrode truly sits
    (V vs Li/Li+; default: where ``cell.reference_offset_v`` says, i.e. a perfectly calibrated one), and the
    O2 dissolved in the electrolyte before any purge (mM; air-saturated acetonitrile holds about 2: its
    reduction wave is what a ``blank`` catches and a ``purge`` removes; default 0, an O2-free cell), and the
    uncompensated solution resistance between reference and working electrode (ohm; 0.1 M electrolyte in
    acetonitrile at a 3 mm disk: a few hundred; default 0, an ideal cell), and how often the emulated devices
    misbehave: ``fault_rate`` is the chance of each fault kind (no reply, garbled or dropped bytes, a stalled
    pump, an overload, a disconnect, a slow reply) at each of a device's decisions, drawn from the campaign's
    seed (default 0: devices that never fail), to rehearse what the runner does when a rig misbehaves; and
    ``unstable_share``, the share of molecules whose oxidised (reduced) form reacts away within the scan (default
    0), to rehearse the analysis's ``chemically_irreversible``; and ``n_electrons``, the electrons every molecule's
    couple takes in its one wave (default 1), to rehearse a protocol whose cv says ``n_electrons`` (sim/world.py)."""

    model_config = SECTION
    truth: Truth = Truth.model_validate({})
    noise_v: NonNegativeNumber = Field(0.01, le=1.0)
    time_scale: NonNegativeNumber = 0.0
    reference_offset_v: Number | None = Field(None, ge=REFERENCE_OFFSET_RANGE_V[0], le=REFERENCE_OFFSET_RANGE_V[1])
    oxygen_mm: NonNegativeNumber = Field(0.0, le=20.0)
    ru_ohm: NonNegativeNumber = Field(0.0, le=1e6)
    fault_rate: NonNegativeNumber = Field(0.0, le=0.2)
    unstable_share: NonNegativeNumber = Field(0.0, le=1.0)
    n_electrons: Int = Field(1, ge=1, le=MOST_ELECTRONS_IN_A_WAVE)

    @field_validator("time_scale")
    @classmethod
    def _zero_or_not_too_slow(cls, value: float) -> float:
        """Below 1e-3 (a device second per 17 wall minutes) a dry run would never end: deadlines scale with it."""
        if 0 < value < MIN_TIME_SCALE:
            raise ValueError(f"must be 0 (zero latency) or at least {MIN_TIME_SCALE:g}, got {value!r}")
        return value


def _instrument_name(value: str) -> str:
    """An instrument's name as messages, logs, pages and ``--port NAME=PORT`` show it: letters, digits, '.', '_' and
    '-', like the campaign's. Why: a name holding terminal escapes or markup was shown in stop lines and logs (a
    security trial), and one holding '=' could not be given to --port."""
    if NAME_PATTERN.fullmatch(value) is None:
        raise ValueError("an instrument's name is letters, digits, '.', '_' and '-' (--port NAME=PORT names it)")
    return value


class Campaign(BaseModel):
    """A whole campaign, validated; see ``examples/campaign.yaml``."""

    model_config = ConfigDict(frozen=True, extra="forbid", title="labloop campaign")
    #: the file it was read from (None: built in code), so checks after loading can name the line
    _source: YamlDocument | None = PrivateAttr(None)
    name: str = Field(max_length=80, json_schema_extra={"pattern": NAME_PATTERN.pattern},
                      description="letters, digits, '.', '_' and '-': it names files")
    seed: Int = Field(0, ge=0, le=2**32 - 1, description="0 to 4294967295 (numpy and TensorFlow seeds)")
    store: FilePath = Field(None, validate_default=True,  # type: ignore[assignment]  # filled in from name
                            description="the journal file; default runs/<name>.db beside the campaign file")
    library: Library
    prior: Prior | None = None
    objective: Objective
    past_measurements: PastMeasurements | None = None
    surrogate: Surrogate = Surrogate()
    compute: Compute = Compute()
    planner: Planner = Planner()
    conditions: Conditions = Conditions()
    instruments: dict[Annotated[str, AfterValidator(_instrument_name)], Instrument] = Field(min_length=1)
    protocol: Annotated[ProtocolSpec, BeforeValidator(_load_protocol), WithJsonSchema(protocol_json_schema())]
    budget: Budget = Budget()
    schedule: Schedule = Schedule()
    safety: Safety = Safety()
    cell: Cell = Cell()
    world: World | None = None
    alerts: list[Annotated[str, AfterValidator(check_url)]] = Field(
        default_factory=list, title="apprise URLs", examples=[["ntfy://lab-night-shift"]],
        description="apprise URLs alerted when the campaign stops or waits for a person "
        "(secrets: never shown; ${VAR} is read from the environment)")

    @field_validator("name")
    @classmethod
    def _usable_as_file_name(cls, value: str) -> str:
        if NAME_PATTERN.fullmatch(value) is None:
            raise ValueError(f"use letters, digits, '.', '_' and '-' (it names files), got {shown(value)}")
        return value

    @field_validator("store", mode="before")
    @classmethod
    def _default_store(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None and not isinstance(value, str | Path):  # pydantic's words named pathlib's class
            raise ValueError(f"must be the path of the journal file, e.g. runs/name.db, got {shown(value)}")
        return f"runs/{info.data.get('name', 'campaign')}.db" if value is None else value

    @field_validator("store")
    @classmethod
    def _store_is_a_file(cls, value: Path) -> Path:
        if value.is_dir():
            raise ValueError(f"{value} is a directory; give the journal's file name, e.g. runs/name.db")
        return value

    @model_validator(mode="after")
    def _sections_agree(self, info: ValidationInfo) -> Campaign:
        continued = bool((info.context or {}).get("continued"))  # a resume: its journal counts the syringes
        problems = [*self._planner_problems(), *self._world_problems(), *self._protocol_problems(continued),
                    *self._capture_problems()]
        needed = TARGET_OF[self.objective.quantity]
        if self.prior is not None and needed not in self.prior.targets:
            problems.append(Problem(("prior", "targets"), f"must include {needed!r}: the objective's "
                                                           f"{self.objective.quantity.replace('_', ' ')} is "
                                                           f"predicted from it (the prior's {needed[:2].upper()} "
                                                           "column in eV, by that name, whatever its case)"))
        if self.budget.stop_after_hits is not None and not self.objective.defines_hits:
            problems.append(Problem(("budget", "stop_after_hits"),
                                    "needs a hit definition: objective.window_v or objective.threshold_v"))
        if problems:
            raise Problems(*problems)
        return self

    def syringe_start_ml(self, name: str) -> float | None:
        """What instrument ``name``'s syringe holds when the campaign starts (mL), as its options say (the driver
        descriptor's ``content_ml``: the ``ne1000``'s ``content_ml`` option), or None: full, or no pump. Read from the
        campaign, which the journal keeps, so ``validate``, ``run`` and ``resume`` count from the same start. A
        volume the syringe cannot hold, or no number from a plug-in's hook, is a :class:`ConfigError` naming the
        instrument."""
        entry = self.instruments[name]
        # at the option itself where the campaign gives the ne1000's ``content_ml`` (its line: a plug-in author's trial
        # was pointed at the options line), else at the options a plug-in's hook read
        given = ("content_ml",) if "content_ml" in entry.options else ()
        where = self.located("instruments", name, "options", *given)
        hook = load_driver(entry.driver).descriptor.content_ml
        if hook is None:
            return None
        try:
            content = hook(entry.options)
        except Exception as exc:  # a plug-in's hook: its failure is the instrument's, said in one line
            raise ConfigError(where, f"driver {entry.driver!r} could not say what its syringe holds: "
                                     f"{said(exc)}") from None
        if content is None:
            return None
        syringe = self.safety.limits(name).syringe_ml
        limit = f"safety.syringes_ml.{name}" if name in self.safety.syringes_ml else "safety.syringe_ml"
        number = isinstance(content, numbers.Real) and not isinstance(content, bool)
        if not (number and 0 <= content <= syringe):
            raise ConfigError(where, f"its syringe would start with {f'{content:g}' if number else repr(content)} mL, "
                                     f"not a volume within its 0..{syringe:g} mL ({limit})")
        return float(content)

    def flow_rates(self) -> dict[str, tuple[float, float]]:
        """The flow rates (mL/min) each pump's options fix, by name, where its driver says them (the descriptor's
        ``rate_range_ml_min``: the ``ne1000``'s from its syringe's diameter). A plug-in's hook that raises is a
        :class:`ConfigError` naming the instrument, as :meth:`syringe_start_ml`'s is: it read as a labloop bug."""
        rates = {}
        for name, entry in self.instruments.items():
            hook = load_driver(entry.driver).descriptor.rate_range_ml_min
            if hook is None:
                continue
            try:
                span = hook(entry.options)
            except Exception as exc:  # a plug-in's hook: its failure is the instrument's, said in one line
                raise ConfigError(self.located("instruments", name, "options"),
                                  f"driver {entry.driver!r} could not say what flow rates its options fix: "
                                  f"{said(exc)}") from None
            if span is not None:
                rates[name] = span
        return rates

    def syringe_starts(self) -> dict[str, float]:
        """:meth:`syringe_start_ml` of each pump whose syringe does not start full, by name (the first refusal
        raises)."""
        return {name: ml for name in self.instruments if (ml := self.syringe_start_ml(name)) is not None}

    def _loaded(self) -> dict[str, float]:
        """:meth:`syringe_starts` for the budget's check of the protocol: counted from full, a syringe loaded with
        8 mL was refused as running dry in experiment 3 "with 1 mL left", numbers of a syringe it never had. A pump
        whose start is refused is left out here: orchestrator/compose.py ``check_protocol`` says that refusal."""
        found = {}
        for name in self.instruments:
            try:
                ml = self.syringe_start_ml(name)
            except ConfigError:
                continue
            if ml is not None:
                found[name] = ml
        return found

    def _capture_problems(self) -> list[Problem]:
        """Each instrument captures to a file of its own: two writing one file interleaved their lines into
        something no JSON reader or ``ReplayTransport`` (instruments/transport.py) reads, and one truncated the
        other's traffic. The same file however it is written (``shared.json``, ``./shared.json``, a link). Nor one of
        the campaign's own files or any file that is no capture: a capture appends to its file, so ``capture:
        library.csv`` added 593 lines of JSON to the library (its resume refused as a changed file) and the store's
        name turned the journal into capture lines."""
        problems, owner = [], {}
        theirs = {os.path.realpath(path): what for path, what in (
            (self.store, "the campaign's store"), (self.library.file, "the library"),
            (self.protocol.file, "the protocol's file"), (self.prior.file if self.prior else None, "the prior's data"))
            if path is not None}
        for name, instrument in self.instruments.items():
            capture = instrument.options.get("capture")
            if capture is None:
                continue
            where, real = ("instruments", name, "options", "capture"), os.path.realpath(capture)
            first = owner.setdefault(real, name)
            if first != name and not self._one_line(first, name):  # pumps chained on one line share its capture
                problems.append(Problem(where, f"{capture} is {first}'s capture too: give each instrument a file of "
                                               "its own (two writing one file mix their lines)"))
            elif real in theirs or not _holds_a_capture(real):
                what = theirs.get(real, "a file that holds no wire capture")
                problems.append(Problem(where, f"{capture} is {what}: a capture appends its lines to its file, which "
                                               "would damage it; give the capture a file of its own"))
        return problems

    def _one_line(self, first: str, second: str) -> bool:
        """Whether instruments ``first`` and ``second`` are on one serial line (pumps chained by address on one
        port), which one transport opens and one capture records: their link settings must be the same, so their
        ``capture`` is one file (a hardware trial found a chained pump's capture refused either way)."""
        ports = [self.instruments[name].port for name in (first, second)]
        return all(ports) and len({serial_device(str(port)) for port in ports}) == 1

    def _protocol_problems(self, continued: bool) -> list[Problem]:
        """Instruments the protocol names must be the campaign's (whether they fit is the executor's check),
        and every condition must set a parameter of some step. ``continued``: a resume, whose journal says what the
        cell and the syringes hold by now, which the executor judges before each experiment: one experiment is judged
        here, from full syringes and an empty cell, as orchestrator/compose.py ``check_protocol`` does (a hand fill,
        ``--syringes-filled``, may have replaced what the campaign started with; the whole budget judged from an empty
        cell refused a protocol that never empties it on ``resume --cell-emptied``, the path docs/hardware.md gives
        such a protocol: a hardware trial)."""
        problems = []
        steps = parse_steps(list(self.protocol.steps))
        # a protocol in its own file: its problems name that file's line, as its parse problems do (read again
        # only if there is a problem to locate)
        file = self.protocol.file
        where: Callable[[Loc], str | None] = (lambda loc: None) if file is None else partial(_line_in, file)
        parameters = {name for step in steps for name in type(step).model_fields}
        whole = {name for step in steps for name, field in type(step).model_fields.items() if field.annotation is int}
        for name, value in self.conditions.space().items():
            if name not in parameters:
                problems.append(Problem(("conditions", name), f"sets no parameter of the protocol's steps "
                                                              f"(step parameters: {', '.join(sorted(parameters))})"))
            elif name in SETUP_PARAMETERS:  # the rig's set-up, not how a measurement is made
                problems.append(Problem(("conditions", name), f"{SETUP_PARAMETERS[name]}, which is no measurement "
                                                              "condition for a planner to vary: set it in the "
                                                              "protocol's step"))
            elif name in whole and not isinstance(value, dict):  # read as real numbers: 2 is 2.0 here
                says = ("takes a whole number, and a condition's one value is read as a real one: set it in the "
                        "protocol's step, or give {choices: [2]}" if value[0] == value[1] else
                        "takes whole numbers, and a range is searched over real ones: list the values to try, "
                        "e.g. {choices: [1, 2, 3]} (or set one in the step)")
                problems.append(Problem(("conditions", name), says))
            elif (refused := _condition_merges_steps(name, steps)) is not None:
                problems.append(Problem(("conditions", name), refused))
        # an instrument of the wrong kind first: the limits of a "pump" that is the potentiostat say nothing
        instruments = self._instrument_problems(steps, where)
        wrong = {p.loc[1] for p in instruments}
        problems.extend(instruments)
        problems.extend(Problem(("protocol", *p.loc), p.message, where=where(p.loc))
                        for p in limit_problems(steps, self.safety.limits(), self.safety.pump_limits(),
                                                experiments=1 if continued else self.budget.max_experiments,
                                                start={} if continued else self._loaded())
                        if p.loc[0] not in wrong)
        problems.extend(problem for refused, problem in self._half_width_fit(steps) if refused)
        # a misspelt pump: offer the pumps the protocol uses, not the potentiostat
        pump_names = sorted({step.pump for step in steps if pumps(step)})  # type: ignore[attr-defined]
        offered, which = (pump_names, "the pumps the protocol uses") if pump_names else (list(self.instruments),
                                                                                         "the instruments")
        problems.extend(Problem(("safety", "syringes_ml", name), f"{not_one_of(name, offered)} ({which})")
                        for name in self.safety.syringes_ml if name not in self.instruments)
        for index, step in enumerate(steps):
            if getattr(step, "scan_rates_v_s", None) and self.conditions.varies("scan_rate_v_s"):
                problems.append(Problem(("conditions", "scan_rate_v_s"),
                                        f"the protocol's cv step (protocol[{index}]) runs a fixed list of scan rates, "
                                        "so a planned scan rate would be ignored: give one value or drop it"))
            if getattr(step, "around_candidate", False) and self.prior is None:
                problems.append(Problem(("protocol", index, step.name, "half_width_v"),
                                        "a window around the candidate needs its predicted potential: add a prior "
                                        "section, or give the scan's e_begin_v/e_vertex1_v/e_vertex2_v",
                                        where=where((index, step.name, "half_width_v"))))
        return problems

    def _instrument_problems(self, steps: tuple[Step, ...], where: Callable[[Loc], str | None]) -> list[Problem]:
        """Every instrument a step names (``pump``, ``potentiostat``, ...) must be one of the rig's, of the kind the
        step needs, by its driver's declared kind: ``pump: potentiostat`` was reported as a pump whose syringe runs
        dry in experiment 21, and only once that was fixed as no pump."""
        problems = []
        for index, step in enumerate(steps):
            for field, kind in STEP_INSTRUMENT_KINDS.items():
                name = getattr(step, field, None)
                if name is None or name == "manual":
                    continue
                loc, what = (index, step.name, field), kind.replace("_", " ")
                if name not in self.instruments:
                    fitting = [n for n, i in self.instruments.items() if _driver_kind(i.driver) == kind]
                    problems.append(Problem(("protocol", *loc), f"{not_one_of(name, fitting)} (the rig's {what}s)"
                                            if fitting else f"{name!r}: the rig has no {what}", where=where(loc)))
                elif (actual := _driver_kind(self.instruments[name].driver)) not in (kind, None):
                    problems.append(Problem(("protocol", *loc), f"{name!r} is not a {what} (its driver "
                                                                f"{self.instruments[name].driver!r} is a "
                                                                f"{actual.replace('_', ' ')})", where=where(loc)))
        return problems

    def __eq__(self, other: object) -> bool:
        """The same settings are the same campaign, whichever file (and line) they were read from."""
        if not isinstance(other, Campaign):
            return NotImplemented
        return self.model_dump() == other.model_dump()

    __hash__ = None  # type: ignore[assignment]  # its sections hold dicts

    def located(self, *loc: str | int) -> str:
        """``file:line: a.b`` of a place in the campaign file (``a.b`` when it was not read from a file), for
        the problems found after loading (orchestrator/compose.py: the instruments' ports); an index as the
        validation's own errors write it (``conditions.n_scans.choices[1]``)."""
        field = dotted(loc)
        return field if self._source is None else f"{self._source.where(loc)}: {field}"

    def protocol_warnings(self) -> list[str]:
        """What the protocol allows but is most likely a mistake, each as ``file:line: protocol[i].step.field: why``, at
        the line in the protocol's own file if it has one: a units slip (:func:`labloop.protocols.steps.unit_warnings`),
        liquid the protocol leaves in the cell under a cv that computes D
        (:func:`labloop.protocols.executor.leftover_dilution`: the warning the run gives of each such experiment,
        given once, with the budget's experiments as the run counts them), a cv no sample is dispensed for
        (:func:`labloop.protocols.executor.unsampled_cv`), a protocol that never empties the cell
        (:func:`labloop.protocols.executor.unemptied_cell`), objective's hits of which part lies beyond the safety
        limits a window around the candidate moves within (:meth:`_half_width_fit`), a scan reaching beyond the
        electrolyte's window (:meth:`_outside_electrolyte`), and a blank short of what the cv steps scan
        (:meth:`_blank_short`)."""
        lines = []
        steps = parse_steps(list(self.protocol.steps))
        leftover = leftover_dilution(steps, self.safety.limits(), self.budget.max_experiments)
        found = [*unit_warnings(steps), *(p for p in (leftover, unsampled_cv(steps),
                                                      unemptied_cell(steps, self.budget.max_experiments))
                                          if p is not None)]
        for problem in found:
            lines.append(self._protocol_line(Problem(("protocol", *problem.loc), problem.message)))
        lines.extend(self._protocol_line(problem) for refused, problem in self._half_width_fit(steps) if not refused)
        lines.extend(self._protocol_line(problem) for problem in (*self._outside_electrolyte(steps),
                                                                  *self._blank_short(steps),
                                                                  *self._uncalibrated_centre(steps),
                                                                  *self._ohmic_drop_in_k0(steps),
                                                                  *self._starting_past_the_wave(steps)))
        return lines

    def _starting_past_the_wave(self, steps: tuple[Step, ...]) -> list[Problem]:
        """A fixed-window cv that begins at the end of its window where the objective's couple has already reacted:
        the most negative potential for a reduction, the most positive for an oxidation. The cell sits there before
        the scan, so the molecule is reduced (oxidised) before it begins, and the forward peak is missing or small.
        Why: an anolyte trial's ``e_begin_v: -1.7, e_vertex1_v: 0`` validated in silence, and a reversible molecule
        failed as chemically irreversible (return peak 24% of the forward)."""
        reduction = self.objective.quantity != "oxidation_potential"
        found = []
        for index, step in enumerate(steps):
            if not isinstance(step, CV) or step.e_begin_v is None or step.e_vertex1_v is None \
                    or step.e_vertex2_v is None:
                continue
            window = (step.e_begin_v, step.e_vertex1_v, step.e_vertex2_v)
            end = min(window) if reduction else max(window)
            if step.e_begin_v == end and step.e_vertex1_v != end:
                made, side, first, most = (("reduced", "positive", "below", "most negative") if reduction else
                                           ("oxidised", "negative", "above", "most positive"))
                found.append(Problem(("protocol", index, step.name, "e_begin_v"),
                                     f"{compact(step.e_begin_v)} V, the {most} "
                                     f"potential of the scan: the cell sits there before it, so the molecule is {made} "
                                     f"before the scan begins and its forward peak is missing or small; begin on the "
                                     f"{side} side of the wave, with e_vertex1_v {first} e_begin_v"))
        return found

    @staticmethod
    def _ohmic_drop_in_k0(steps: tuple[Step, ...]) -> list[Problem]:
        """A cv that computes D (and so k0, instruments/kinetics.py) with no ``eis`` step before it to measure Ru, or
        with one and no ``ir_compensation``: the ohmic drop, unknown or corrected after the scan only, widens dEp, and
        k0 comes out as lower bounds. Why: an electrochemist's protocols without them validated in silence and read
        k0 11-90x low (the bounds came after; a trial)."""
        found = []
        for index, step in enumerate(steps):
            if not isinstance(step, CV) or not computes_d(step):
                continue
            if not any(isinstance(before, EIS) for before in steps[:index]):
                found.append(Problem(("protocol", index, step.name, "scan_rates_v_s"),
                                     "no eis step before this cv measures Ru, so the ohmic drop, of unknown size, "
                                     "widens every dEp: the reversibility call reads it as slow kinetics, and k0 is "
                                     "given as lower bounds only; add an eis step before the cv and ir_compensation: "
                                     "{fraction: 0.85} to it (docs/lab-grade.md)"))
            elif step.ir_compensation is None:
                found.append(Problem(("protocol", index, step.name, "scan_rates_v_s"),
                                     "no ir_compensation: the whole ohmic drop the eis step measures is taken out "
                                     "after the scan, which leaves part of it in dEp (k0 then a lower bound where that "
                                     "part could matter); compensate most of it on the potentiostat, ir_compensation: "
                                     "{fraction: 0.85} (docs/lab-grade.md)"))
        return found

    def _uncalibrated_centre(self, steps: tuple[Step, ...]) -> list[Problem]:
        """A cv window around the candidate in a campaign without past measurements: its first experiments centre it
        on the prior's predictions, which no measurement has calibrated yet. Why: a newcomer's campaign passed
        ``validate`` in silence and then had its first ten proposals refused, every window beyond the limits (the
        executor now moves such a window within them, ``ProtocolExecutor._within_limits``; a scan that misses the
        wave still only bounds the molecule)."""
        if self.past_measurements is not None:
            return []
        # an oxidation's read high, a reduction's low (without the solvation energy: docs/surrogate.md); a reduction
        # campaign was told "above" (a chemist's trial), and a goal without a window has hits, not a window, to span
        side = "above" if self.objective.quantity == "oxidation_potential" else "below"
        span = "window" if self.objective.window_v is not None else "hits"
        return [Problem(("protocol", index, step.name, "half_width_v"),
                        f"+/-{compact(step.half_width_v)} V around each candidate's predicted potential: before the "
                        f"first measurements calibrate them, the predictions are the prior's, 1.4-2.7 V {side} a "
                        "molecule's measured potential in the bundled data (docs/surrogate.md), so the first "
                        "experiments' scans may miss their waves (a window beyond safety.potential_limits_v is moved "
                        f"within them); fixed vertices spanning the objective's {span} suit the first experiments "
                        "(examples/protocols/cv_screen.yaml), or give past_measurements to calibrate from")
                for index, step in enumerate(steps) if isinstance(step, CV) and step.half_width_v is not None]

    def _potentials(self, steps: tuple[Step, ...]) -> list[tuple[int, Step, list[tuple[float, str]]]]:
        """(index, step, [(potential V vs the reference, the field it comes from)]) of each step that applies
        potentials: a cv's, blank's or eis step's fixed ones (:data:`SCANNED_POTENTIALS`), or the two ends of a cv
        around the candidate when the candidate is a hit (:meth:`_around_hits`, named ``half_width_v``); a cv around
        the candidate of an objective without hits is left out, since where it scans is not known before the run."""
        found = []
        for index, step in enumerate(steps):
            if isinstance(step, CV) and step.half_width_v is not None:
                around = self._around_hits(step.half_width_v)
                if around is not None:
                    found.append((index, step, [(edge, "half_width_v") for edge in around]))
                continue
            fixed = [(value, name) for name in SCANNED_POTENTIALS if (value := getattr(step, name, None)) is not None]
            if fixed:
                found.append((index, step, fixed))
        return found

    def _around_hits(self, half_width_v: float) -> tuple[float, float] | None:
        """Where a cv of +/- ``half_width_v`` around the prediction scans (V vs the reference) when the prediction lies
        in the objective's hits as the planner aims at them (:func:`labloop.protocols.steps.aimed_hits`), and no
        farther than ``safety.potential_limits_v`` (the run refuses a window beyond them). None for an objective
        without hits."""
        hits = self.objective.hits_v
        if hits is None:
            return None
        low, high = aimed_hits(hits, self.cell.reference_offset_v)
        limits = self.safety.limits().potential_window_v
        return max(low - half_width_v, limits[0]), min(high + half_width_v, limits[1])

    def _outside_electrolyte(self, steps: tuple[Step, ...]) -> list[Problem]:
        """A problem for each step whose potentials (:meth:`_potentials`) leave ``cell.electrolyte_window_v`` through
        ``cell.reference_offset_v``, located at its lowest or highest: beyond it the solvent or the salt itself reduces
        or oxidises, and its wave, on every scan, can be taken for the analyte's; below 0 V vs Li/Li+ lithium plates
        on the working electrode in a Li+ electrolyte, and the scan measures its plating and stripping.

        Warned about, not refused: where an electrolyte gives way depends on its salt, its water, the electrode's
        material and the current taken as the onset, which a lab that measured its own knows better than a default;
        the rig is kept safe by ``safety.potential_limits_v``, not by this. The usual cause of a scan far outside is an
        offset written for another reference electrode (a chemist's trial: an offset of 1.0 V with a vertex at
        -1.5 V, -0.5 V vs Li/Li+, validated silently)."""
        offset = self.cell.reference_offset_v
        low, high = self.cell.electrolyte_window_v
        window = (f"the electrolyte's window {compact(low)}..{compact(high)} V vs Li/Li+ ({_volts(low - offset)}.."
                  f"{_volts(high - offset)} V vs the reference; cell.electrolyte_window_v)")
        check = "check cell.reference_offset_v for the reference electrode used"
        found = []
        for index, step, potentials in self._potentials(steps):
            for (value, name), side in ((min(potentials), "below"), (max(potentials), "above")):
                on_li = value + offset
                if (on_li >= low) if side == "below" else (on_li <= high):
                    continue
                said = (f"+/-{compact(step.half_width_v)} V around a prediction in the objective's hits reaches "
                        f"{_volts(value)} V vs the reference, that is" if isinstance(step, CV)
                        and step.half_width_v is not None else f"{compact(value)} V vs the reference is")
                said += f" {_volts(on_li)} V vs Li/Li+ (cell.reference_offset_v {compact(offset)}),"
                if on_li < 0 <= low:
                    why = ("below 0 V vs Li/Li+ lithium plates on the working electrode in a Li+ electrolyte, and the "
                           f"scan measures its plating and stripping ({check})")
                else:
                    why = (f"the electrolyte {'reduces' if side == 'below' else 'oxidises'} there, and its wave can be "
                           f"taken for the analyte's ({check}, or give cell.electrolyte_window_v your electrolyte's)")
                found.append(Problem(("protocol", index, step.name, name), f"{said} {side} {window}: {why}"))
        return found

    def _blank_short(self, steps: tuple[Step, ...]) -> list[Problem]:
        """A problem for each blank whose span of potentials leaves out part of what the protocol's cv steps scan
        (:meth:`_potentials`: their fixed windows, and around the objective's hits for a cv around the candidate),
        located at the blank's vertex on the short side. Why: a blank judges the electrolyte and the cell by the
        waves it shows, and a contamination or the solvent's own wave beyond its vertices, where the analyte is
        measured, is never seen (a review found the default blank's 2.2..4.2 V vs Li/Li+ under a cathode screen's
        hits at 4.5-4.6 V). Warned about, not refused: a lab may judge that part of the window otherwise."""
        potentials = self._potentials(steps)
        scans = [(index, values) for index, step, values in potentials if isinstance(step, CV)]
        if not scans:
            return []
        cv_low, cv_high = (pick(v for _, values in scans for v, _ in values) for pick in (min, max))
        offset, tolerance = self.cell.reference_offset_v, 1e-9
        names = ", ".join(f"protocol[{index}].cv" + (" (around the objective's hits)" if values[0][1] == "half_width_v"
                                                     else "") for index, values in scans)
        found = []
        for index, step, values in potentials:
            if not isinstance(step, Blank):
                continue
            (low, low_name), (high, high_name) = min(values), max(values)
            if cv_low >= low - tolerance and cv_high <= high + tolerance:
                continue
            name = high_name if cv_high > high + tolerance else low_name
            covering = f"{_volts(min(low, cv_low))} to {_volts(max(high, cv_high))} V vs the reference"
            found.append(Problem(("protocol", index, step.name, name),
                                 f"the blank scans {_span(low, high, offset)}, short of the "
                                 f"{_span(cv_low, cv_high, offset)} {names} {'scans' if len(scans) == 1 else 'scan'}: "
                                 "a contamination or the solvent's own wave where the analyte is measured goes unseen "
                                 f"(a blank from {covering} covers both)"))
        return found

    @property
    def past_vs_fc(self) -> bool:
        """The past measurements are given vs Fc+/Fc: ``cell.ferrocene_vs_li_v`` puts each of them on the Li/Li+ scale
        (validate said the value unused without an ``add_standard`` step, while it moved the whole history: a trial)."""
        return self.past_measurements is not None and self.past_measurements.vs == "fc"

    def unused_ferrocene(self) -> str | None:
        """``file:line: cell.ferrocene_vs_li_v: ...`` when the campaign file sets where ferrocene sits but the protocol
        has no ``add_standard`` step and no past measurements vs Fc+/Fc (:attr:`past_vs_fc`), which alone read it, so
        the value measured for the lab's electrolyte changes nothing (a standard left out of the protocol, or another
        protocol file than meant); else None. Only for a
        campaign read from a file: a journal's campaign holds every field, written or not."""
        if (self._source is None or "ferrocene_vs_li_v" not in self.cell.model_fields_set or self.protocol.adds_standard
                or self.past_vs_fc):
            return None
        return (f"{self.located('cell', 'ferrocene_vs_li_v')}: {compact(self.cell.ferrocene_vs_li_v)} V is set, but "
                "only an add_standard step or past measurements vs Fc+/Fc use it, and the campaign has neither: every "
                "potential is put on the Li/Li+ scale through cell.reference_offset_v")

    def unusual_ferrocene(self) -> str | None:
        """``file:line: cell.ferrocene_vs_li_v: ...`` when the value lies outside :data:`FERROCENE_USUAL_V`, where
        ferrocene has been measured vs Li/Li+, else None. Why: 4.4 V passed in silence, and a dry run's simulated
        ferrocene follows the setting, so nothing ever said it (an electrochemist's trial); only a campaign read from a
        file."""
        low, high = FERROCENE_USUAL_V
        value = self.cell.ferrocene_vs_li_v
        if self._source is None or "ferrocene_vs_li_v" not in self.cell.model_fields_set or low <= value <= high:
            return None
        return (f"{self.located('cell', 'ferrocene_vs_li_v')}: {compact(value)} V lies outside the {low:g}-{high:g} V "
                "vs Li/Li+ where ferrocene has been measured (about 3.2 V in carbonates): a value against another "
                "reference, or a typo? Every add_standard potential goes through it")

    def lithium_reference_offset(self) -> str | None:
        """``file:line: cell.reference_offset_v: ...`` when a potentiostat's ``reference`` names a lithium electrode
        and the offset is not about 0 V, else None. Why: ``reference: Li`` beside the default 3.2 V passed in silence
        (a chemist's trial), and every potential would have read 3.2 V high."""
        offset = self.cell.reference_offset_v
        if abs(offset) <= LITHIUM_OFFSET_SLACK_V:
            return None
        named = next(((name, reference) for name, entry in self.instruments.items()
                      if isinstance(reference := entry.options.get("reference"), str)
                      and LITHIUM_SCALE.match(reference.strip())), None)
        if named is None:
            return None
        return (f"{self.located('cell', 'reference_offset_v')}: {compact(offset)} V, while "
                f"instruments.{named[0]}.options.reference names a lithium electrode ({named[1]!r}), which sits at "
                f"0 V vs Li/Li+: every potential would read {compact(offset)} V high; give 0 for a lithium reference, "
                "or name the electrode the cell has")

    def alert_secrets_written_out(self) -> str | None:
        """``file:line: alerts[i]: ...`` at the first alert URL that holds a password or token written out
        (:func:`labloop.orchestrator.config.alert_urls.written_out_credentials`), else None; the URL is not shown.
        Why: the journal keeps every setting, so a webhook's password written in the campaign file is in the
        ``.db`` for whoever is given it (a security trial found four copies with ``strings``), while ``${VAR}``
        keeps it out of both."""
        found = [index for index, url in enumerate(self.alerts) if written_out_credentials(url)]
        if not found:
            return None
        others = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        return (f"{self.located('alerts', found[0])}: holds a password or token written out{others}, which the "
                f"journal keeps with the campaign's settings (so {self.store.name} is made readable by your account "
                "alone, but anyone given it reads it): write that part as ${VAR}, read from the environment when an "
                "alert is sent (docs/dashboard.md, \"Alerts\")")

    def batch_beyond_budget(self) -> str | None:
        """``file:line: planner.batch_size: ...`` when a batch is larger than the whole budget, else None: the runner
        proposes at most what the budget leaves (orchestrator/loop/runner.py), so such a campaign runs one batch of
        ``budget.max_experiments``, which a chemist's campaign of batch 8 and budget 5 did in silence (a trial)."""
        batch, budget = self.planner.batch_size, self.budget.max_experiments
        if batch <= budget:
            return None
        return (f"{self.located('planner', 'batch_size')}: {batch}, more than the whole budget "
                f"(budget.max_experiments {budget}): the campaign runs one batch of {budget} "
                f"{plural(budget, 'experiment')}")

    def unpurged_oxygen(self) -> str | None:
        """``file:line: world.oxygen_mm: ...`` when a dry run's simulated cell holds dissolved O2, the protocol has no
        ``purge`` step to drive it out, and a blank scans into O2's reduction (``cell.oxygen_onset_v``, through
        ``cell.reference_offset_v``), else None: that blank finds O2 and stops the run before any sample (an
        electrochemist's trial: the lab-grade example without its purge validated, then stopped at once). Said of a
        dry run only: a real cell's O2 is not known before its blank, and a cell filled in a glovebox needs no purge."""
        if self.world is None or self.world.oxygen_mm <= 0 or Purge.name in self.protocol.step_names:
            return None
        onset_high = self.cell.oxygen_onset_v[1] - self.cell.reference_offset_v  # V vs the reference
        steps = parse_steps(list(self.protocol.steps))
        if not any(isinstance(step, Blank) and min(step.e_begin_v, step.e_vertex1_v, step.e_vertex2_v) <= onset_high
                   for step in steps):
            return None
        return (f"{self.located('world', 'oxygen_mm')}: {compact(self.world.oxygen_mm)} mM of O2 in the simulated cell "
                "and no purge step in the protocol to drive it out: the protocol's blank, which scans into O2's "
                f"reduction (below {compact(self.cell.oxygen_onset_v[1])} V vs Li/Li+, cell.oxygen_onset_v), finds it "
                "and stops the run before the first sample; add a purge step before the blank, or world.oxygen_mm: 0 "
                "for an O2-free cell (one filled in a glovebox)")

    def _protocol_line(self, problem: Problem) -> str:
        """``file:line: protocol[i].step.field: why`` of a problem at ``("protocol", i, ...)``: the line in the
        protocol's own file if it has one, else in the campaign file."""
        where = (_line_in(self.protocol.file, problem.loc[1:]) if self.protocol.file is not None
                 else self._source.where(problem.loc) if self._source is not None else None)
        return problem.line(where) if where is not None else f"{dotted(problem.loc)}: {problem.message}"

    def _half_width_fit(self, steps: tuple[Step, ...]) -> list[tuple[bool, Problem]]:
        """(refused, problem) of each cv step whose window around the candidate cannot scan the objective's hits
        within ``safety.potential_limits_v`` (:func:`labloop.protocols.steps.half_width_problem`: the window moves
        within them, so a hit beyond them is missed), located at its ``half_width_v``: refused when all of them lie
        beyond, or when the window has no place in the limits with its centre on its step grid (any objective), a
        warning when part. A window wider than the limits is :func:`labloop.protocols.steps.limit_problems`' to
        refuse."""
        hits, window = self.objective.hits_v, self.safety.limits().potential_window_v
        found = []
        for index, step in enumerate(steps):
            if not isinstance(step, CV) or step.half_width_v is None or 2 * step.half_width_v > window[1] - window[0]:
                continue
            judged = half_width_problem(step.half_width_v, hits, self.cell.reference_offset_v, window,
                                        "safety.potential_limits_v", step_v=step.e_step_v)
            if judged is not None:
                loc = (index, step.name, "half_width_v")
                where = None if self.protocol.file is None else _line_in(self.protocol.file, loc)
                found.append((judged[0], Problem(("protocol", *loc), judged[1], where=where)))
        return found

    def cv_step(self) -> CV | None:
        """The protocol's first cv step (what a sample's measurement scans), or None."""
        return next((step for step in parse_steps(list(self.protocol.steps)) if isinstance(step, CV)), None)

    def step_locator(self) -> Callable[[int], str] | None:
        """``file:line`` of the protocol's step by index (in the protocol's own file, or in the campaign
        file for inline steps), for the problems the executor finds with the instruments; None when neither
        was read from a file. The executor names a step in every action it journals, so each step's line is
        looked up once (the file read and parsed again for each cost a fifth of a zero-latency dry run)."""
        if self.protocol.file is not None:
            return cache(lambda index: _line_in(self.protocol.file, (index,)))  # type: ignore[arg-type]
        if self._source is not None:
            return lambda index: self._source.where(("protocol", index))  # type: ignore[union-attr]
        return None

    def planner_settings(self) -> PlannerSettings:
        """The planner's part of the campaign (planners never receive the campaign itself)."""
        return PlannerSettings(kind=self.planner.kind, goal=self.objective.goal, window_v=self.objective.window_v,
                               acquisition=self.planner.acquisition_for(self.objective.goal),
                               diversity=self.planner.diversity, first_batch=self.planner.first_batch,
                               batch=self.planner.batch, conditions=self.conditions.space())

    def _planner_problems(self) -> list[Problem]:
        problems = []
        if self.planner.kind != "random" and self.prior is None:
            problems.append(Problem(("planner", "kind"), f"{self.planner.kind!r} needs a surrogate: add a "
                                                         "prior section (or use kind 'random')"))
        window_goal = self.objective.goal == "window"
        if self.planner.acquisition is not None and (self.planner.acquisition == "window_probability") != window_goal:
            valid = ["window_probability"] if window_goal else ["ei", "pi", "lcb"]
            problems.append(Problem(("planner", "acquisition"), f"{not_one_of(self.planner.acquisition, valid)} "
                                                                f"(for goal {self.objective.goal!r})"))
        return problems

    def _world_problems(self) -> list[Problem]:
        """The world's settings among themselves; its table is read by a dry run only (compose.build_world),
        so a real campaign may keep its world section."""
        if self.world is None:
            return []
        truth = self.world.truth
        if truth.quantity is not None and truth.quantity != self.objective.quantity:
            return [Problem(("world", "truth", "quantity"), f"{truth.quantity!r} is not what the objective "
                                                             f"measures ({self.objective.quantity!r})")]
        return []


def load_campaign(path: str | Path, *, alerts: bool = True) -> Campaign:
    """Read and validate a campaign file; :class:`CampaignError` lists every problem, one line each. ``alerts=False``:
    its ``alerts`` left out, for a command that sends none (``candidates``: an alert URL's ``${VARIABLE}`` unset in
    this shell refused a ranking, a review)."""
    path = Path(path)
    try:
        doc = read_yaml(path, name=str(path))
    except Problems as exc:
        raise CampaignError.from_problems(exc) from None
    if not alerts and isinstance(doc.data, dict):
        doc = replace(doc, data={key: value for key, value in doc.data.items() if key != "alerts"})
    return validate_document(doc, base_dir=path.absolute().parent)


def validate_document(doc: YamlDocument, base_dir: Path) -> Campaign:
    """Validate parsed campaign YAML (relative paths count from ``base_dir``)."""
    if not isinstance(doc.data, dict):  # an empty file said "got NoneType" (an adversarial trial)
        got = "an empty file" if doc.data is None else type(doc.data).__name__
        raise CampaignError([f"{doc.where(())}: campaign: must be a mapping of sections "
                             f"({', '.join(Campaign.model_fields)}), got {got}"])
    try:
        campaign = Campaign.model_validate(doc.data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise CampaignError(error_lines(exc, doc, Campaign)) from None
    campaign._source = doc
    log.info("campaign %s (%s) is valid", campaign.name, doc.name)
    return campaign


#: the instrument a step's field names, and the kind of driver it must have
STEP_INSTRUMENT_KINDS = {"changer": "sample_changer", "pump": "pump", "potentiostat": "potentiostat",
                         "valve": "gas_valve"}


def _driver_kind(driver: str) -> str | None:
    """The kind a registered driver declares, None if it cannot be loaded (its own check says why)."""
    try:
        return str(load_driver(driver).descriptor.kind)
    except ConfigError:
        return None


def _condition_merges_steps(name: str, steps: Sequence[Step]) -> str | None:
    """Why condition ``name`` cannot be planned over these ``steps``, or None.

    A condition replaces the parameter of its name in every step that has it (protocols/executor.py). Where the
    protocol gives that parameter different values (``volume_ml``: 0.5 mL of sample, 4.5 mL of electrolyte, 0.1 mL
    of ferrocene) a planned value makes them all equal, which no protocol means: an electrochemist's trial planned
    ``volume_ml`` and every dispense took it, the sample ~5 mM instead of 1 mM and D ~25x too large. A planned
    volume also changes the analyte's concentration in the cell, which a cv computing D takes as ``analyte_mm``.
    """
    given = [(index, step, getattr(step, name)) for index, step in enumerate(steps) if name in type(step).model_fields]
    if len({json.dumps(value, sort_keys=True, default=str) for _, _, value in given}) > 1:
        listed = ", ".join(f"protocol[{index}].{step.name} {compact(value) if isinstance(value, float) else value}"
                           for index, step, value in given)
        return (f"would set {name} in every step that has it ({listed}) to one planned value: set them in the steps "
                "(a condition varies a parameter that one step gives, or steps that give it alike)")
    computing_d = [index for index, step in enumerate(steps) if isinstance(step, CV) and diffusion_analyte_mm(step)]
    if computing_d and name == "volume_ml" and any(pumps(step) for _, step, _ in given):
        return (f"a planned volume changes the analyte's concentration in the cell, while protocol[{computing_d[0]}]"
                ".cv computes D with its fixed analyte_mm: set the volume in the step")
    return None


def _volts(value: float) -> str:
    """A potential as a person writes it, float noise rounded away (5.5 - 3.2 is 2.3, not 2.3000000000000003)."""
    return compact(round(value, 6))


def _span(low_v: float, high_v: float, offset_v: float) -> str:
    """``-1..1 V vs the reference (2.2..4.2 V vs Li/Li+)``: a span of potentials (V vs the reference) on both scales,
    the reference at ``offset_v`` vs Li/Li+."""
    return (f"{_volts(low_v)}..{_volts(high_v)} V vs the reference "
            f"({_volts(low_v + offset_v)}..{_volts(high_v + offset_v)} V vs Li/Li+)")


def _line_in(path: Path, loc: Loc) -> str:
    """``file:line`` of ``loc`` in the YAML file ``path`` (read when a problem there is to be shown); just the
    file when it can no longer be read (a resumed campaign's protocol file, moved or edited since)."""
    try:
        return read_yaml(path).where(loc)
    except (Problems, OSError):
        return display_name(path)
