"""The composition module: the one place that builds a campaign's objects from its validated config.

Why one place (ophyd-async keeps the simulator out of its core the same way): the layers below never see
the whole campaign and never choose between hardware and emulators. Here each gets only its own section —
the planner its :class:`PlannerSettings`, the protocol executor its steps, safety limits and reference
electrode, the drivers their options — and only here are emulators started for a dry run
(docs/architecture.md).

Dry run: every instrument's emulator (registered under the driver's name, :mod:`labloop.sim.emulators`) is
started in ONE :class:`SimulatedLab`: the pumps pour into its cell, the potentiostat measures it, and the
couple of a sample comes from the :class:`World`. An emulator gets the instrument's options it accepts
(the NE-1000's ``address`` and ``diameter_mm``), what its syringe holds (``holds``, from the protocol's
``fluid``) and the campaign's ``seed``. The time scale is ``world.time_scale`` (0, the default: zero
latency).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from rdkit.rdBase import BlockLogs

from labloop.core.errors import (
    CampaignError,
    ConfigError,
    Disconnected,
    InputError,
    InstrumentError,
    InvalidInput,
    SchedulerAddressError,
    said,
)
from labloop.core.seeds import stable_seed
from labloop.core.slow_calls import said_if_slow
from labloop.core.text import plural, traceback_hint
from labloop.instruments.contracts import contract_problem
from labloop.instruments.cv_analysis import peak_room_v
from labloop.instruments.methodscript import DEVICE_POTENTIAL_RANGES_V
from labloop.instruments.registry import DriverDescriptor, DriverKind, resolve
from labloop.instruments.transport import open_failure_reason, opening, port_problem, serial_device
from labloop.orchestrator.config.campaign import Campaign, Instrument
from labloop.orchestrator.config.campaign import World as WorldSpec
from labloop.orchestrator.config.yaml_source import display_name
from labloop.orchestrator.loop.rig import Ask, Rig
from labloop.orchestrator.loop.runner import sample_ids
from labloop.planners import make_planner
from labloop.protocols.executor import ProtocolExecutor
from labloop.protocols.steps import (
    CV,
    AddStandard,
    Analyze,
    compact,
    parse_steps,
    pumps_holding_sample,
    pumps_holding_standard,
)
from labloop.sim.emulation import oxygen_e0_vs_li_v
from labloop.sim.emulators import GROUP as EMULATORS
from labloop.sim.emulators import NoEmulator
from labloop.sim.faults import FaultPlan
from labloop.sim.lab import SimulatedLab
from labloop.sim.truth import GroupShifts, ReferenceWalk, SmoothField
from labloop.sim.world import TruthTable, World
from labloop.surrogate import compute
from labloop.surrogate.featurize import InvalidSmiles, check_rows, parse_smiles
from labloop.surrogate.library_pipeline import library_format

log = logging.getLogger(__name__)


def build_world(campaign: Campaign, library: Sequence[str] | None = None) -> World:
    """The simulated world of ``campaign.world`` (a campaign without one gets the default: IE/EA of the
    library in acetonitrile, 10 mV noise); it knows which molecule each library sample id holds (``library``:
    the campaign's library, read from its file when not given)."""
    if library is None:
        library = campaign.library.smiles()
    spec = campaign.world or WorldSpec()
    truth = spec.truth
    _no_smi_truth(campaign, truth.file, truth.columns)
    try:
        table = TruthTable.read(truth.file or campaign.library.file, truth.columns, campaign.library.smiles_column)
    except InvalidInput as exc:
        if campaign.world is None:
            raise ConfigError(campaign.located("world"), f"a dry run simulates the library's {'/'.join(truth.columns)} "
                                                         f"when the campaign has no world section: {exc}") from None
        raise ConfigError(campaign.located("world", "truth", "file" if truth.file else "kind"), str(exc)) from None
    offset = campaign.cell.reference_offset_v if spec.reference_offset_v is None else spec.reference_offset_v
    parts = truth.parts
    log.info("world: %d molecules, truth %s (%s), %s", len(table.values), truth.kind, ", ".join(parts) or "-",
             campaign.objective.quantity)
    seed = campaign.seed
    world = World(table, source=truth.source, quantity=campaign.objective.quantity, solvent=truth.solvent,
                  noise_v=spec.noise_v, reference_offset_v=offset, seed=seed,
                  groups=GroupShifts(truth.shifts) if "groups" in parts else None,
                  smooth=SmoothField(seed, truth.amplitude_v, truth.length) if "smooth" in parts else None,
                  walk=ReferenceWalk(seed, truth.walk_step_v) if "drift" in parts else None,
                  unstable_share=spec.unstable_share, n_electrons=spec.n_electrons)
    unknown = [smiles for smiles in library if not _has_truth(world, smiles)]
    if unknown:  # the emulator could not measure them: say so now, not as a potentiostat timeout later
        where = campaign.located("world", "truth", *(("file",) if truth.file else ()))
        n = len(unknown)
        source = display_name(truth.file or campaign.library.file)
        raise ConfigError(where, f"{n} library {plural(n, 'molecule')} {plural(n, 'has', 'have')} no finite true "
                                 f"value in {source} (first: {unknown[0][:80]}); a dry run cannot measure them")
    for smiles, sample_id in sample_ids(library).items():
        world.note_sample(sample_id, smiles)
    return world


def _no_smi_truth(campaign: Campaign, file: Path | None, columns: Sequence[str]) -> None:
    """A ``.smi`` or Parquet file (the library, which the world reads by default, or ``world.truth.file``) is not a
    truth table the world can read: say so plainly. A ``.smi`` file has no columns of true values (read as CSV it
    said "no column 'smiles' (columns: <its first SMILES line>)"); a world reads its truth from a CSV only (a Parquet
    library holding the columns was said as "not UTF-8 ... save it as CSV UTF-8", a Dask trial)."""
    path = file or campaign.library.file
    try:
        kind = library_format(path)
    except InvalidInput:  # anything not named .csv/.parquet/.smi is read as CSV, as it always was
        kind = "csv"
    if kind == "csv":
        return
    wanted = "/".join(columns)
    csv = f"a CSV with columns {', '.join((campaign.library.smiles_column, *columns))} for the library's molecules"
    what = ("a .smi file, which has none" if kind == "smi" else
            "a Parquet file, and a dry run reads true values from a CSV only")
    if file is not None:
        raise ConfigError(campaign.located("world", "truth", "file"),
                          f"a dry run needs true values ({wanted}): {display_name(path)} is {what}; give {csv}")
    where = campaign.located("world") if campaign.world is None else campaign.located("world", "truth", "kind")
    library = ("a .smi library has none" if kind == "smi" else
               f"the library {display_name(path)} is a Parquet file, and a dry run reads true values from a CSV only")
    raise ConfigError(where, f"a dry run needs true values ({wanted}): {library}; give world.truth.file: {csv}")


def _has_truth(world: World, smiles: str) -> bool:
    """Whether the world can measure ``smiles``; an invalid SMILES is the planner's to skip, not missing."""
    try:
        world.table.row(smiles)
    except KeyError:
        with BlockLogs():
            return parse_smiles(smiles) is None
    return True


def build_executor(campaign: Campaign, rig: Rig) -> ProtocolExecutor:
    """The executor of ``campaign``'s protocol on ``rig``, with its safety limits, reference electrode, where O2
    reduces in its electrolyte, objective quantity and budget (how often the protocol runs)."""
    return ProtocolExecutor(campaign.protocol.steps, rig, campaign.safety.limits(), campaign.cell.reference_offset_v,
                            quantity=campaign.objective.quantity, locate=campaign.step_locator(),
                            pump_limits=campaign.safety.pump_limits(), experiments=campaign.budget.max_experiments,
                            hits_v=campaign.objective.hits_v, oxygen_onset_v=campaign.cell.oxygen_onset_v,
                            syringes_ml=campaign.syringe_starts(), ferrocene_vs_li_v=campaign.cell.ferrocene_vs_li_v,
                            temperature_k=campaign.cell.temperature_k)


def check_instruments(campaign: Campaign, *, dry_run: bool) -> None:
    """What can be known about the instruments before a port is opened, beyond the schema (which checks
    that every driver exists and takes the options given): a simulated-only driver is not asked for real
    hardware, and every serial port exists (real runs). Raises an InputError naming the instrument; with
    problems at several instruments, a CampaignError listing each (``validate --all``: three unplugged
    devices are three lines, not three runs)."""
    problems = [problem for name, entry in campaign.instruments.items()
                if (problem := _instrument_problem(campaign, name, entry, dry_run)) is not None]
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise CampaignError([str(problem) for problem in problems])


def _instrument_problem(campaign: Campaign, name: str, entry: Instrument, dry_run: bool) -> ConfigError | None:
    """The first thing wrong with instrument ``name`` before its port is opened (check_instruments), or None."""
    where = campaign.located("instruments", name)
    if entry.port:  # instruments may share a serial line only as different addresses of one chain
        device = serial_device(entry.port)
        sharing = [(other, spec) for other, spec in campaign.instruments.items()
                   if spec.port and serial_device(spec.port) == device]
        first_name, first = sharing[0]
        port = entry.port if first.port == entry.port else f"{entry.port} ({first.port}'s device, {device})"
        if first.driver != entry.driver:  # one line, one protocol and baud rate
            return ConfigError(where, f"shares port {port} with {first_name!r}, whose driver is "
                                      f"{first.driver!r}, not {entry.driver!r}: a serial line speaks to one kind of "
                                      "device")
        same, its = next((other, spec) for other, spec in sharing
                         if spec.options.get("address") == entry.options.get("address"))
        port = entry.port if its.port == entry.port else f"{entry.port} ({its.port}'s device, {device})"
        if same != name:
            return ConfigError(where, f"shares port {port} with {same!r} at the same address "
                                      f"({entry.options.get('address', 'none')}): both would command one device")
        rate, first_rate = entry.options.get("baudrate"), first.options.get("baudrate")
        if rate != first_rate:  # only the run's opening of the line refused it (a newcomer's trial)
            said = {None: "the driver's default"}
            return ConfigError(campaign.located("instruments", name, *(("options", "baudrate") if rate else ())),
                               f"shares port {port} with {first_name!r}, whose baudrate is "
                               f"{said.get(first_rate, first_rate)}, not {said.get(rate, rate)}: a serial line has "
                               "one baud rate, which every device on it must be set to")
    try:
        descriptor = resolve(entry.driver)
    except ConfigError as exc:
        return ConfigError(where, exc.what)
    if name in campaign.safety.syringes_ml and descriptor.kind is not DriverKind.PUMP:
        return ConfigError(campaign.located("safety", "syringes_ml", name),
                           f"{name!r} is not a pump (driver {entry.driver!r}): only pumps have syringes")
    if (problem := _unopenable(descriptor, entry.options, dry_run)) is not None:
        return ConfigError(where, problem)
    if dry_run:
        return None
    if descriptor.simulated_only:
        return ConfigError(where, f"driver {entry.driver!r} exists only in the simulated world: run with "
                                  "--dry-run, or give the instrument a real driver")
    if descriptor.default_baudrate is not None:  # a serial device: its port must be given and be there
        if not entry.port:
            return ConfigError(where, "a real run needs the device's serial port: add port: (e.g. /dev/ttyUSB0 or "
                                      "COM3; list ports with `python -m serial.tools.list_ports`)")
        if (problem := port_problem(entry.port)) is not None:
            return ConfigError(campaign.located("instruments", name, "port"), problem)
    return None


def check_campaign(campaign: Campaign, *, dry_run: bool, continued: bool = False) -> tuple[list[str], World | None]:
    """Everything ``run`` checks before it opens anything (``validate`` runs exactly this): the library, the
    planner, the instruments and the protocol against them (``continued``: for a run continuing its journal,
    :func:`check_protocol`), the objective against the protocol's scan, and for a dry run the simulated world.
    Returns the library's molecules and that world (built once: reading the truth table is the slow part)."""
    library = campaign.library.smiles()
    with BlockLogs():  # the rows are judged here, in one line, not by RDKit per row
        valid = any(parse_smiles(smiles) is not None for smiles in library)  # stops at the first valid one
    if not valid:
        rows = f"{len(library)} {plural(len(library), 'row')}"
        raise ConfigError(campaign.located("library", "file"), f"{display_name(campaign.library.file)} has no valid "
                                                                f"SMILES among its {rows}: nothing to propose")
    make_planner(campaign.planner_settings(), library)  # an unavailable planner kind is bad input
    # each judged whatever the one before found, so that `validate --all` lists them all: a plug-in's hook that
    # raised came to light only once every port existed (a newcomer's read)
    found: list[InputError] = []
    for check in (partial(check_instruments, campaign, dry_run=dry_run),
                  partial(check_protocol, campaign, continued=continued), partial(check_objective_reach, campaign)):
        try:
            check()
        except InputError as exc:
            found.append(exc)
    if len(found) == 1:
        raise found[0]
    if found:
        raise CampaignError([line for exc in found
                             for line in (exc.messages if isinstance(exc, CampaignError) else [str(exc)])])
    # every library molecule must be measurable in the simulated world
    world = build_world(campaign, library) if dry_run else None
    return library, world


#: CSV libraries up to this many rows have every row checked (:func:`rows_checked`): one parse of each SMILES over
#: the cores (:func:`labloop.surrogate.featurize.check_rows`), which validate and run spend before their first byte:
#: 19 s for 100,000 rows on 2 busy cores (37 s on one), measured; three parses one after the other took 51 s
CHECK_SMILES_ROWS = 100_000


def rows_checked(campaign: Campaign, n_rows: int) -> bool:
    """Whether :func:`library_rows` reads every row: a CSV library of up to :data:`CHECK_SMILES_ROWS` rows (the
    others are read by the prediction pipeline only)."""
    return n_rows <= CHECK_SMILES_ROWS and campaign.library.is_csv()


def too_long_to_check(campaign: Campaign, n_rows: int) -> bool:
    """A CSV library whose rows :func:`library_rows` does not read, being longer than :data:`CHECK_SMILES_ROWS`:
    ``validate`` and ``run`` say so (Parquet and .smi libraries are never read row by row here)."""
    return campaign.library.is_csv() and not rows_checked(campaign, n_rows)


@dataclasses.dataclass(frozen=True)
class LibraryRows:
    """What ``validate`` and ``run`` say of a library's rows, by 0-based row, each an :class:`InvalidSmiles`:

    - ``unreadable``: rows the surrogate cannot read (:func:`labloop.surrogate.featurize.parse_smiles`: empty, too
      long, not a molecule, or none a redox screen has: no heavy atom, a dummy atom), which no planner proposes;
    - ``beyond_prior``: ions, radicals and salts (:func:`labloop.surrogate.featurize.beyond_prior`), proposed and
      measured like any molecule but predicted far outside the neutral closed-shell prior, with a sigma that does
      not say so;
    - ``repeated``: each row that writes again a molecule an earlier row holds, as written or another way (the same
      canonical SMILES; its reason names that row): every planner proposes a molecule once (the pool planners as its
      first row writes it, :func:`labloop.surrogate.featurize.first_spellings`);
    - ``stereo``: each row that holds a stereoisomer of an earlier row's molecule (the same but for its ``@``, ``/``
      or ``\\`` marks; its reason names that row): the surrogate's fingerprint does not see stereo, so they share one
      prediction, and each may be proposed, while enantiomers have one redox potential (a chemist's trial found (R)
      and (S) counted as two molecules).

    All empty for a library :func:`rows_checked` does not read: a bigger one, or a Parquet or .smi file, is parsed
    by its prediction pipeline, which skips unreadable rows the same way (``labloop surrogate predict`` lists
    them)."""

    unreadable: list[InvalidSmiles]
    beyond_prior: list[InvalidSmiles]
    repeated: list[tuple[int, int]]
    stereo: list[tuple[int, int]] = dataclasses.field(default_factory=list)


def library_rows(campaign: Campaign, library: Sequence[str],
                 progress: Callable[[int], None] | None = None) -> LibraryRows:
    """:class:`LibraryRows` of ``library`` (the campaign's rows in file order); ``progress`` is told rows done."""
    if not rows_checked(campaign, len(library)):
        return LibraryRows([], [], [])
    checked = check_rows(library, progress=progress)
    first: dict[str, int] = {}
    repeated = [(row, first[c.canonical]) for row, c in enumerate(checked)
                if c.canonical and first.setdefault(c.canonical, row) != row]
    again = {row for row, _ in repeated}
    flat_first: dict[str, int] = {}  # each stereo-free molecule's first row (one written without marks too)
    for row, c in enumerate(checked):
        if c.canonical and row not in again:
            flat_first.setdefault(c.flat or c.canonical, row)
    stereo = [(row, flat_first[c.flat or c.canonical]) for row, c in enumerate(checked)
              if c.canonical and row not in again and flat_first[c.flat or c.canonical] != row]
    return LibraryRows([InvalidSmiles(row, library[row], c.unreadable) for row, c in enumerate(checked)
                        if c.unreadable is not None],
                       [InvalidSmiles(row, library[row], c.beyond_prior) for row, c in enumerate(checked)
                        if c.beyond_prior is not None], repeated, stereo)


#: how far (V) two potentials may differ and be the same end of reach: sums such as -1.7 + 3.2 (1.5000000000000002)
#: must not leave a sliver of a window outside
REACH_TOLERANCE_V = 1e-6


@dataclasses.dataclass(frozen=True)
class _Reach:
    """What the protocol's fixed cv window measures on the Li/Li+ scale (``low``..``high``, an E1/2 ``room`` inside
    its ends: ``past`` for the peak, the rest for the analysis after it) and how a message says why."""

    cv: CV
    low: float
    high: float
    past: float
    room: float
    why: str

    @property
    def text(self) -> str:
        return f"{self.low:.3f} to {self.high:.3f} V vs Li/Li+"


def _reach(campaign: Campaign) -> _Reach | None:
    """What the protocol's cv measures (:class:`_Reach`): its fixed window on the Li/Li+ scale
    (``cell.reference_offset_v``) less, at each end, the room the analysis needs to find a peak
    (:func:`labloop.instruments.cv_analysis.peak_room_v`, with the protocol's analyze settings): a window from 1.50 V
    against a scan to 1.50 V lost every hit at 1.53-1.55 V, whose peak lies past the vertex. None without a cv or
    with a window around the candidate (it moves with the candidate)."""
    cv = campaign.cv_step()
    if cv is None or cv.around_candidate:
        return None
    p, offset = cv.params(), campaign.cell.reference_offset_v
    low = min(p.e_begin_v, p.e_vertex1_v, p.e_vertex2_v) + offset
    high = max(p.e_begin_v, p.e_vertex1_v, p.e_vertex2_v) + offset
    analyze = next((s for s in parse_steps(list(campaign.protocol.steps)) if isinstance(s, Analyze)), None)
    past, after = peak_room_v(p.e_step_v, analyze.settings if analyze is not None else None,
                              n_electrons=cv.n_electrons, temperature_k=campaign.cell.temperature_k)
    couple = "a one-electron couple" if cv.n_electrons == 1 else f"a {cv.n_electrons}-electron couple"
    at = "" if campaign.cell.temperature_c == 25 else f" at {compact(campaign.cell.temperature_c)} C"
    why = (f"the protocol's cv scans {low:.2f} to {high:.2f} V (its window + cell.reference_offset_v {offset:g} V), "
           f"and an E1/2 is measured {(past + after) * 1000:.1f} mV inside its ends at the nearest ({couple}'s "
           f"peak lies {past * 1000:.1f} mV past its E1/2{at}; the analysis needs {after * 1000:.0f} mV of "
           f"current after the peak, its smoothing window at the cv's {compact(p.e_step_v * 1000)} mV step)")
    return _Reach(cv, low + past + after, high - past - after, past, past + after, why)


def check_objective_reach(campaign: Campaign) -> None:
    """:class:`ConfigError` at the objective's window (or threshold) when it lies wholly beyond every E1/2 the
    protocol's cv measures (:func:`_reach`): no measurement can be a hit, and a run spent its whole budget anyway (a
    chemist wrote ``window_v: [-1.5, -1.0]`` vs the reference; validate warned and passed). When the objective read
    vs the cell's reference would be in reach, the line says so with its values vs Li/Li+."""
    reach = _reach(campaign)
    objective = campaign.objective
    if reach is None:
        return
    if objective.goal == "window":
        values: tuple[float, ...] = tuple(objective.window_v)  # type: ignore[arg-type]  # a window goal's (validated)
        field, shape = "window_v", "{0:g} to {1:g} V vs Li/Li+"

        def reached(shift: float) -> bool:
            return (values[1] + shift >= reach.low - REACH_TOLERANCE_V
                    and values[0] + shift <= reach.high + REACH_TOLERANCE_V)
    elif objective.threshold_v is not None:
        values, field, shape = (objective.threshold_v,), "threshold_v", "{0:g} V vs Li/Li+"

        def reached(shift: float) -> bool:
            if objective.goal == "maximize":
                return values[0] + shift <= reach.high + REACH_TOLERANCE_V
            return values[0] + shift >= reach.low - REACH_TOLERANCE_V
    else:
        return
    if reached(0.0):
        return
    hint = _on_another_scale(campaign, shape, values, reached)
    raise ConfigError(campaign.located("objective", field), f"{shape.format(*values)} is out of reach: the cv measures "
                                                            f"{reach.text} only, as {reach.why}: no measurement can be "
                                                            f"a hit{hint}")


def _on_another_scale(campaign: Campaign, shape: str, values: tuple[float, ...],
                      reached: Callable[[float], bool]) -> str:
    """The hint for an objective that reads right vs the cell's reference or vs Fc+/Fc (``reached(shift)``: whether
    the values plus ``shift`` would be): `` (written vs the reference? add cell.reference_offset_v 3.5 V -> 4.2 to 4.4
    V vs Li/Li+; vs Fc+/Fc? add cell.ferrocene_vs_li_v 3.2 V -> 3.9 to 4.1 V vs Li/Li+)`` (``shape``: how the values
    are said), or ''. Why Fc+/Fc: organic electrochemistry reports potentials vs Fc+/Fc, and a chemist's window
    copied from a paper was offered only the reference's offset, 0.3 V off (a trial)."""
    scales: dict[float, list[tuple[str, str]]] = {}  # by the shift: both, said once, where the two are the same
    for what, field, shift in (("the reference", "cell.reference_offset_v", campaign.cell.reference_offset_v),
                               ("Fc+/Fc", "cell.ferrocene_vs_li_v", campaign.cell.ferrocene_vs_li_v)):
        if shift != 0 and reached(shift):
            scales.setdefault(shift, []).append((what, field))
    said = [f"written vs {' or vs '.join(what for what, _ in named)}? add "
            f"{' = '.join(field for _, field in named)} {shift:g} V -> "
            f"{shape.format(*(round(v + shift, 9) for v in values))}" for shift, named in scales.items()]
    return f" ({'; '.join(said)})" if said else ""


def _threshold_met_everywhere(campaign: Campaign, reach: _Reach) -> str | None:
    """Why a maximise (minimise) goal's ``threshold_v`` below (above) every E1/2 the cv measures defines nothing,
    in one line, or None: every measurement counts as a hit, so hits and ``budget.stop_after_hits`` say nothing
    (a threshold written vs the reference, 1.3 V for 4.5 V vs Li/Li+, passed without a word)."""
    objective = campaign.objective
    threshold = objective.threshold_v
    if threshold is None:
        return None
    if objective.goal == "maximize" and threshold < reach.low - REACH_TOLERANCE_V:
        side = "below"
    elif objective.goal == "minimize" and threshold > reach.high + REACH_TOLERANCE_V:
        side = "above"
    else:
        return None
    hint = _on_another_scale(campaign, "{0:g} V vs Li/Li+", (threshold,), lambda shift: (
        threshold + shift >= reach.low - REACH_TOLERANCE_V if side == "below"
        else threshold + shift <= reach.high + REACH_TOLERANCE_V))
    return (f"{campaign.located('objective', 'threshold_v')}: {threshold:g} V vs Li/Li+ lies {side} every E1/2 the "
            f"cv measures ({reach.text}, as {reach.why}): every measurement counts as a hit{hint}")


def objective_out_of_reach(campaign: Campaign) -> str | None:
    """Why measurements cannot meet part of the objective's window, in one line, or None: part of it lies beyond
    every E1/2 the protocol's cv measures (:func:`_reach`; 4.5-4.6 V against a scan ending at 4.55 V: a molecule at
    4.58 V is never measured as a hit, and the planner, aiming at the window's centre, proposes such molecules; said
    with the part outside). The advice says how far to widen the cv, or, where the safety limits or the
    potentiostat's range stop that, which. A window wholly out of reach is refused
    (:func:`check_objective_reach`); a threshold's hits always reach past any scan, but one that every measurable
    E1/2 meets makes every measurement a hit (:func:`_threshold_met_everywhere`)."""
    reach = _reach(campaign)
    objective = campaign.objective
    if reach is None:
        return None
    if objective.goal != "window":
        return _threshold_met_everywhere(campaign, reach)
    w_low, w_high = objective.window_v  # type: ignore[misc]  # set for a window goal (validated)
    if w_high < reach.low - REACH_TOLERANCE_V or w_low > reach.high + REACH_TOLERANCE_V:
        return None  # wholly out of reach: refused (check_objective_reach)
    short = [(end, a, b) for end, a, b in (("low", w_low, reach.low), ("high", reach.high, w_high))
             if a < b - REACH_TOLERANCE_V]
    if not short:
        return None
    outside = " and ".join(f"{a:.3f} to {b:.3f} V" for _, a, b in short)
    advice = "; ".join(_widen(campaign, reach.cv, end, b if end == "low" else a, reach.room) for end, a, b in short)
    window = f"{campaign.located('objective', 'window_v')}: {w_low:g} to {w_high:g} V vs Li/Li+"
    return (f"{window} is partly out of reach: its {outside} {plural(len(short), 'lies', 'lie')} outside the "
            f"{reach.text} the cv measures, as {reach.why}: a molecule there cannot be measured as a hit ({advice})")


def scored_out_of_reach(campaign: Campaign, values: Iterable[float]) -> str | None:
    """Why a best score of ``values`` (true potentials, V vs Li/Li+) may be one no measurement gives, in one line, or
    None: for a ``maximize`` (``minimize``) goal, how many lie above (below) every E1/2 the protocol's cv measures
    (:func:`_reach`). Why: a backtest without instruments scores the truth, and a lab head's trial read a best of
    6.21 V beside a scan to 5.15 V, unsaid, while a window beyond the scan is said (:func:`objective_out_of_reach`)."""
    reach = _reach(campaign)
    goal = campaign.objective.goal
    if reach is None or goal == "window":
        return None
    end = reach.high if goal == "maximize" else reach.low
    beyond = [v for v in values if (v > end + REACH_TOLERANCE_V if goal == "maximize" else v < end - REACH_TOLERANCE_V)]
    if not beyond:
        return None
    k, side = len(beyond), "above" if goal == "maximize" else "below"
    return (f"{k} {plural(k, 'molecule')} of the library {plural(k, 'has', 'have')} a true value {side} the "
            f"{reach.text} the cv measures, as {reach.why}: a run of this campaign cannot measure "
            f"{plural(k, 'it', 'them')} there")


def _widen(campaign: Campaign, cv: CV, end: str, reached: float, room: float) -> str:
    """What to do about the ``end`` ("low" or "high") of an objective's window that the cv measures only to
    ``reached`` (V vs Li/Li+): widen the cv to the potential (vs the reference, to the 10 mV outward) that puts the
    window's end ``room`` inside it; or, where ``safety.potential_limits_v`` or the potentiostat's range
    (:func:`_potentiostat_range`) will not apply that potential, say which, and what can be done instead."""
    w_low, w_high = campaign.objective.window_v  # type: ignore[misc]  # a window goal's
    sign = -1 if end == "low" else 1
    wanted = (w_low if end == "low" else w_high) + sign * room - campaign.cell.reference_offset_v
    needed = sign * math.ceil(round(sign * wanted * 100, 6)) / 100
    lo, hi = campaign.safety.potential_limits_v
    device = _potentiostat_range(campaign, cv)
    if device is not None and not device[1][0] - REACH_TOLERANCE_V <= needed <= device[1][1] + REACH_TOLERANCE_V:
        return (f"{device[0]} cannot widen the cv: it would have to reach {compact(needed)} V vs the reference, "
                f"beyond the {compact(device[1][0])}..{compact(device[1][1])} V it applies; measure "
                f"against a reference electrode sitting "
                f"{'lower' if end == 'low' else 'higher'} vs Li/Li+ or with another potentiostat, or move the window's "
                f"{end} end to {reached:.3f} V")
    if not lo - REACH_TOLERANCE_V <= needed <= hi + REACH_TOLERANCE_V:
        return (f"widen the cv's window to {compact(needed)} V vs the reference, beyond safety.potential_limits_v "
                f"({compact(lo)}..{compact(hi)} V): widen them too if the potentiostat and the cell allow, or move the "
                f"window's {end} end to {reached:.3f} V")
    return f"widen the cv's window to {compact(needed)} V vs the reference"


def _potentiostat_range(campaign: Campaign, cv: CV) -> tuple[str, tuple[float, float]] | None:
    """``(model, (low, high))``: the potentials the cv's potentiostat can apply at most (V vs its reference), where its
    driver knows a model's range before it is connected: an ``emstat`` may be an EmStat Pico, whose range is fixed
    (the driver refuses beyond it once the Pico has identified itself; an EmStat4's differs); None otherwise."""
    names = [cv.potentiostat] if cv.potentiostat else list(campaign.instruments)
    if any(campaign.instruments[name].driver == "emstat" for name in names if name in campaign.instruments):
        return "an EmStat Pico", DEVICE_POTENTIAL_RANGES_V["espico"]
    return None


def unnamed_references(campaign: Campaign) -> list[str]:
    """The potentiostats of ``campaign`` whose reference electrode it does not name: their driver takes a ``reference``
    option (or any option) and the campaign gives it none, so their measurements are labelled
    :data:`labloop.instruments.voltammogram.UNNAMED_REFERENCE`. ``validate`` says so once: the EmStat driver's default
    "Ag/Ag+" labelled the data of a campaign that named no electrode, whatever the lab used (a chemist's trial)."""
    unnamed = []
    for name, entry in campaign.instruments.items():
        descriptor = resolve(entry.driver)
        known = descriptor.option_names()
        if (descriptor.kind is DriverKind.POTENTIOSTAT and not isinstance(entry.options.get("reference"), str)
                and (known is None or "reference" in known)):
            unnamed.append(name)
    return unnamed


def check_protocol(campaign: Campaign, *, continued: bool = False) -> None:
    """The protocol against the instruments' declared kinds, the flow rates and syringe contents their options fix
    and the safety limits, before any port is open; ``continued``: a run continuing its journal, whose count of the
    syringes decides (:meth:`ProtocolExecutor.check`)."""
    kinds = {name: str(resolve(entry.driver).kind) for name, entry in campaign.instruments.items()}
    executor = ProtocolExecutor(campaign.protocol.steps, None, campaign.safety.limits(),
                                campaign.cell.reference_offset_v, quantity=campaign.objective.quantity, kinds=kinds,
                                locate=campaign.step_locator(), pump_limits=campaign.safety.pump_limits(),
                                experiments=campaign.budget.max_experiments, rates=campaign.flow_rates(),
                                syringes_ml=campaign.syringe_starts(), hits_v=campaign.objective.hits_v,
                                drivers={name: entry.driver for name, entry in campaign.instruments.items()})
    check_with_conditions(campaign, executor, continued=continued)


def check_with_conditions(campaign: Campaign, executor: ProtocolExecutor, *, continued: bool = False) -> None:
    """``executor``'s check of the protocol as written, then with every value a planner may choose (each end of a
    range, each choice): before the rig opens, against the limits and the drivers' declared kinds; once it is open,
    against what the opened drivers say they can do too (a potentiostat's scan rates: a plan of 6-9 V/s on a 5 V/s
    device passed validate and spent three samples, a plug-in engineer's trial)."""
    executor.check(continued=continued)
    for name, space in campaign.conditions.space().items():  # every value a planner may choose must be allowed
        choices = isinstance(space, dict)
        for index, value in enumerate(space["choices"] if choices else space):
            try:
                executor.check({name: value}, continued=continued)
            except InputError as exc:  # a choice is named at its place in the list
                where = campaign.located("conditions", name, *(("choices", index) if choices else ()))
                raise ConfigError(where, f"{value!r} would be refused: {exc}") from None


#: the planners that propose from the library's predictions, and so can take them from stored shards
SHARD_PLANNERS = ("bayes", "greedy")


def compute_placement(campaign: Campaign, scheduler: str | None, rows: int) -> tuple[bool, str | None]:
    """Whether a campaign predicts its library with the chunked pipeline on a Dask cluster (into shards
    beside its store, proposals from :class:`labloop.planners.shard_pool.ShardPoolPlanner`), and where:
    (used, scheduler address or None for a LocalCluster). The one place that decides it.

    ``scheduler`` (the ``--scheduler`` option) overrides ``compute.scheduler``; both follow
    :func:`labloop.surrogate.compute.placement` (``auto``: from 20,000 library rows on). Only the ``bayes`` and
    ``greedy`` planners use it (``random`` needs no predictions, ``screening`` ranks the library once), so
    small campaigns and the baselines stay in this process, as they always ran."""
    if campaign.planner.kind not in SHARD_PLANNERS:
        return False, None
    return compute.placement(scheduler or campaign.compute.scheduler, rows)  # both checked when they were read


@contextmanager
def compute_client(campaign: Campaign, scheduler: str | None, rows: int,
                   announce: Callable[[str], None] | None = None) -> Iterator[object | None]:
    """The Dask client a campaign run uses (:func:`compute_placement`), open for the ``with`` block; None when
    it uses none. An address where no scheduler answers is :class:`SchedulerAddressError` (bad input, exit
    2), raised before anything is written; ``announce`` is told the cluster and its dashboard's address."""
    used, address = compute_placement(campaign, scheduler, rows)
    if not used:
        yield None
        return
    with _cluster(campaign, scheduler, address, announce) as client:
        yield client


def check_compute(campaign: Campaign, scheduler: str | None, rows: int) -> str | None:
    """``validate``: the cluster a run would use answers (a scheduler address is connected to and left), and how
    large it is (:func:`labloop.surrogate.compute.cluster_size`); None when there is none to ask (a LocalCluster is
    not started: there is nothing to check before a run starts it)."""
    used, address = compute_placement(campaign, scheduler, rows)
    if not (used and address is not None):
        return None
    with _cluster(campaign, scheduler, address) as client:
        return compute.cluster_size(client)


@contextmanager
def _cluster(campaign: Campaign, scheduler: str | None, address: str | None,
             announce: Callable[[str], None] | None = None) -> Iterator[object]:
    """``compute.dask_client(address)``; a scheduler the campaign file names (``compute.scheduler``, no
    ``--scheduler``) that does not answer is said at its line and field, as a ``tls://`` address there is (a
    Dask trial: the line named neither)."""
    with ExitStack() as stack:
        try:
            client = stack.enter_context(compute.dask_client(address, announce=announce))
        except SchedulerAddressError as exc:
            if scheduler is not None or address is None:
                raise
            # a resume reads the address from its journal: the way to another cluster was said nowhere (a Dask trial)
            raise ConfigError(campaign.located("compute", "scheduler"),
                              f"{exc}; or compute elsewhere this time: --scheduler tcp://HOST:PORT, local or "
                              "none") from None
        yield client


def build_rig(campaign: Campaign, *, dry_run: bool, world: World | None = None, ask: Ask = input,
              library: Sequence[str] | None = None, captures: bool = True, session: int = 0) -> Rig:
    """Open every instrument of ``campaign`` (nothing stays open when one fails). ``dry_run`` puts each on its
    emulator, the world being ``world`` or the campaign's. ``ask`` is how the rig asks the operator.
    ``captures=False`` is the rig of a check (``validate``): the drivers open without their wire captures
    (``options.capture``), so it writes no file, and emulators inject no faults (``world.fault_rate``).
    ``session`` counts the runs the campaign's journal has had: a resume's emulators draw their faults afresh
    (from the campaign's seed and the session), where they replayed the first run's, so a rehearsal stopped by
    a fault met the same fault at every resume.

    A port that cannot be opened is an input error naming the instrument and the port: nothing has run yet,
    so the fix is the campaign file or the cable, not the rig's state."""
    check_instruments(campaign, dry_run=dry_run)
    with ExitStack() as stack:
        lab = None
        if dry_run:
            spec = campaign.world or WorldSpec()
            rehearse = captures and spec.fault_rate > 0
            seed = campaign.seed if not session else stable_seed(campaign.seed, "faults", session)
            faults = FaultPlan.uniform(spec.fault_rate, seed=seed) if rehearse else None
            steps = parse_steps(list(campaign.protocol.steps))
            # the emulated working electrode is the one the protocol declares: a 2 mm disk written in the cv step
            # and simulated as the default 3 mm one read D five times too large in every dry run
            area = next((step.electrode_area_cm2 for step in steps if isinstance(step, CV)), None)
            # and the sample's stock the one it declares (a simulated changer's own option aside), so a dry run's D is
            # the simulated molecule's whatever stock the cv's sample_stock_mm says
            stock = next((step.sample_stock_mm for step in steps if isinstance(step, CV)), None)
            lab = SimulatedLab(world or build_world(campaign, library), spec.time_scale, oxygen_mm=spec.oxygen_mm,
                               ru_ohm=spec.ru_ohm, faults=faults, electrode_area_cm2=area,
                               oxygen_vs_li_v=oxygen_e0_vs_li_v(campaign.cell.oxygen_onset_v),
                               standard_vs_li_v=campaign.cell.ferrocene_vs_li_v + next(
                                   (step.vs_fc_v for step in steps if isinstance(step, AddStandard)), 0.0),
                               temperature_k=campaign.cell.temperature_k)
            holds = {**dict.fromkeys(pumps_holding_sample(steps), "sample"),
                     **dict.fromkeys(pumps_holding_standard(steps), "standard")}
        instruments: dict[str, object] = {}
        ports: dict[str, str] = {}  # what each driver opened: a real rig watches a device path's presence
        for name, entry in campaign.instruments.items():
            descriptor = resolve(entry.driver)
            where = campaign.located("instruments", name)  # its line too, as validate's other errors say it
            options: dict[str, Any] = dict(entry.options)
            if not captures:
                options.pop("capture", None)
            port = entry.port or name
            if descriptor.kind in (DriverKind.PUMP, DriverKind.POTENTIOSTAT):
                options["limits"] = campaign.safety.limits(name)  # a pump's own syringe, if it has one
            if (descriptor.kind is DriverKind.SAMPLE_CHANGER and library is not None
                    and "describe" in (descriptor.option_names() or ())):
                options["describe"] = {sample: smiles for smiles, sample in sample_ids(library).items()}.get
            if lab is not None:
                try:
                    emulation = lab.start(name, descriptor.name, {
                        **entry.options, "holds": holds.get(name, "electrolyte"),
                        "seed": campaign.seed, **({} if stock is None else {"sample_stock_mM": stock})}, stack)
                except NoEmulator:  # nothing wrong with the options: the dry run has nothing to open the driver on
                    raise ConfigError(where, f"driver {descriptor.name!r} has no emulator, which a dry run needs for "
                                             f"every instrument: register one under {EMULATORS!r} (docs/drivers.md, "
                                             "Registering an emulator)") from None
                except InputError as exc:  # the emulator's own words (a factory's bug, which was said as "the
                    # driver refused its options": a plug-in author's trial; or an option it refuses, naming it)
                    said_by = f"the emulator of driver {descriptor.name!r}"
                    words = str(exc).removeprefix(f"{EMULATORS}: ").removeprefix(f"emulator {descriptor.name!r}: ")
                    raise ConfigError(where, f"{said_by}: {words}") from None
                except (TypeError, ValueError) as exc:  # an option value its emulator cannot take, or its bug
                    raise _refused(name, where, f"the emulator of driver {descriptor.name!r}", "the emulator",
                                   exc) from None
                port = emulation.port
                options.update(emulation.options)
                if descriptor.kind in (DriverKind.PUMP, DriverKind.POTENTIOSTAT):
                    options["time_scale"] = lab.time_factor
            elif descriptor.kind is DriverKind.SAMPLE_CHANGER and "ask" in (descriptor.option_names() or ["ask"]):
                options["ask"] = ask
            driver = _open(descriptor, name, where, port, options, given=entry.options)
            stack.callback(_closing, name, descriptor.name, driver)  # a driver without close() is refused next
            _check_contract(driver, where, descriptor)
            instruments[name] = driver
            ports[name] = port
            log.info("rig: %s = %s on %s%s", name, descriptor.name, port, " (emulated)" if dry_run else "")
        if lab is not None:
            # no ports: a rehearsal's disconnect fault closes its emulator's pty, which is the experiment fault it
            # rehearses, not a rig to plug back in (a fault rehearsal's start or resume is never refused for it)
            return Rig(instruments, closer=stack.pop_all(), ask=ask, rinse=lab.rinse, sleep=lab.sleep,
                       operator=lab.ask_operator, simulation=lab, ready=lab.arm_faults)
        return Rig(instruments, closer=stack.pop_all(), ask=ask, ports=ports)


def _closing(name: str, driver_name: str, driver: object) -> None:
    """Close instrument ``name``'s driver; a ``close()`` that raises is said in one line naming the instrument and
    its driver (the traceback at -v), and the other instruments are closed all the same (the rig was made safe
    before): a plug-in's ended the run with "unexpected RuntimeError ... (a labloop bug)", exit 1, naming no
    instrument (a plug-in engineer's trial)."""
    close = getattr(driver, "close", None)
    if close is None:
        return
    try:
        close()
    except Exception as exc:
        log.error("instruments.%s: driver %r raised %s as it was closed %s; the other instruments are closed all "
                  "the same", name, driver_name, said(exc), traceback_hint(log))
        log.info("the traceback of %s's close()", name, exc_info=exc)


def check_simulated_rig(campaign: Campaign, world: World, library: Sequence[str]) -> None:
    """What ``run --dry-run`` checks once its rig is open, for ``validate --dry-run``: every driver opened
    on its emulator with the campaign's options (a value the driver refuses), then the protocol against the
    opened instruments (their gases, the potentiostat's range), then their health check, as ``run`` does.
    Touches no real instrument, writes no file (a wire capture would be: the file ``run`` writes is checked with
    the campaign, ``capture_problem``)."""
    with build_rig(campaign, dry_run=True, world=world, library=library, captures=False) as rig:
        check_with_conditions(campaign, build_executor(campaign, rig))
        rig.check_health()  # as run does before its first experiment


def _check_contract(driver: object, where: str, descriptor: DriverDescriptor) -> None:
    """An opened driver must be what its descriptor says it is (:func:`contract_problem`), said here, at its
    instrument, and not later at a protocol step."""
    if (problem := contract_problem(driver, str(descriptor.kind), descriptor.name)) is not None:
        raise ConfigError(where, problem)


def _unopenable(descriptor: DriverDescriptor, given: Mapping[str, Any], dry_run: bool) -> str | None:
    """What ``build_rig`` would refuse of a driver as it opened it, known before: an ``open`` that cannot take a
    keyword labloop passes it (:meth:`DriverDescriptor.unpassable`). Why: ``validate`` without ``--dry-run`` opens
    nothing, and passed it, which ``run`` then refused (a plug-in author's trial). Whether the opened driver has
    its kind's methods is known only once ``open`` returned it (a class method may return a subclass, a class may
    bind its methods as it is made: a review found working drivers refused by a check of the class), so that is
    the rig's check (:func:`_check_contract`), and ``validate --dry-run``'s."""
    passed = {"limits": None, **({"time_scale": None} if dry_run else {})} \
        if descriptor.kind in (DriverKind.PUMP, DriverKind.POTENTIOSTAT) else {}
    return descriptor.unpassable(key for key in passed if key not in given)


def _refused(name: str, where: str, who: str, code: str, exc: Exception) -> ConfigError:
    """Instrument ``name``'s error (said at ``where``) for ``exc``, raised by ``who`` (a driver's ``open`` or its
    emulator's factory) as it took the campaign's options. An ``InputError`` is the driver's own refusal of an
    option, said so (an emulator's is said with its words by ``build_rig``); a ``TypeError`` or ``ValueError`` may
    be an option of the wrong type or value or a bug in ``code``, and labloop cannot tell which: "the driver refused
    its options" sent a plug-in author whose ``__init__`` had a bug to check options that were fine, so both are
    named (its traceback at -v)."""
    if isinstance(exc, InputError):
        return ConfigError(where, f"the driver refused its options: {exc}")
    log.info("the traceback of %s, instruments.%s", who, name, exc_info=exc)
    return ConfigError(where, f"{who} raised {said(exc)}: its options, or a bug in {code} "
                              f"{traceback_hint(log, where='above')}")


def _open(descriptor: DriverDescriptor, name: str, where: str, port: str, options: dict[str, Any], *,
          given: Collection[str] = ()) -> Any:
    """``descriptor.open(port, **options)``; a port that cannot be opened, an option the driver refuses and a device
    that does not answer as the driver expects are bad input naming the instrument at ``where`` (exit 2, nothing
    written). Only an ``InputError`` is the driver refusing its options, a ``TypeError`` or ``ValueError`` its
    options or its bug (:func:`_refused`); anything else (a ``RuntimeError`` in a plug-in's ``open``) is said as the
    driver failing to open, with its type, since "refused its options" sent the user to check options that were fine
    (its traceback at -v). An ``open`` that does not take a keyword labloop passes (not one of the campaign's
    options, ``given``) is said to be the driver's to fix: "the driver refused its options" named an option nobody
    wrote."""
    driver = descriptor.name
    if (unpassable := descriptor.unpassable(key for key in options if key not in given)) is not None:
        raise ConfigError(where, unpassable)
    try:
        # a transport the driver opens names the instrument in its errors, beside the port
        with opening(name), said_if_slow(f"instruments.{name}: the open() of driver {driver!r} on {port}", log):
            return descriptor.open(port, **options)
    except Disconnected as exc:
        raise ConfigError(where, f"cannot open port {port}: {open_failure_reason(exc)}") from None
    except (InputError, TypeError, ValueError) as exc:  # an option value the driver refuses, or its bug
        raise _refused(name, where, "the driver's open()", "the driver", exc) from None
    except InstrumentError as exc:  # the port opened, but what answers is not the device this driver speaks to
        raise ConfigError(where, f"the device on {port} does not answer as driver {driver!r} expects: "
                                 f"{exc.what}") from None
    except Exception as exc:  # neither the port nor the options: the driver's own failure, said as such
        log.info("the traceback of instruments.%s's open()", name, exc_info=exc)
        raise ConfigError(where, f"the driver failed to open: {said(exc)} "
                                 f"{traceback_hint(log, where='above')}") from None
