"""`labloop report`: one folder that shows a campaign to someone who was not there — an HTML page with
PNG plots (best so far vs experiment number, measured vs predicted, prediction error vs experiment number,
recent voltammograms, acquisition values), the model versions and the calibrations with their errors on
the measurements, a table of the failed experiments, and CSV exports of the experiments, measurements and
failures (``failures.csv``), of every raw voltammogram
(``voltammograms.csv``, a lab-grade experiment's blanks, scan rates and standard scan included) and, for a
lab-grade protocol, of what its steps measured (``lab_grade.csv``, and a table of it on the page).

Why files and not a server: a report is mailed, archived with the journal, and opened years later. It is
built from the same snapshot as ``labloop log`` (:func:`labloop.orchestrator.journal.view.snapshot`), so the
page, the tables and ``--json`` agree about what is best and how many hits there are.
"""

from __future__ import annotations

import csv
import hashlib
import html
import logging
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Any

import matplotlib
import yaml
from scipy.stats import binom

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from labloop.core.errors import InputError
from labloop.core.files import remove_orphans, scratch_prefix
from labloop.core.text import controls_escaped, plural, printable, spreadsheet_safe
from labloop.instruments.cv_analysis import to_li_scale
from labloop.instruments.kinetics import NICHOLSON_RANGE_MV, RateConstant
from labloop.instruments.voltammogram import Voltammogram
from labloop.orchestrator.config.campaign import TARGET_OF, Cell, Objective, Planner
from labloop.orchestrator.journal.plot_data import (
    ERROR_WINDOW,
    acquisition,
    best_so_far,
    calibrated_on,
    interval_check,
    measured,
    parity,
    prediction_errors,
    randles_sevcik_points,
    versus_ferrocene,
)
from labloop.orchestrator.journal.store import (
    ANALYSIS_FAILURE,
    CELL_EMPTIED,
    PAST_MEASUREMENTS,
    SYRINGES_FILLED,
    VETOED,
    WARNING,
    Journal,
    State,
    judged_reversibility,
    left_unsafe,
    with_advice,
)
from labloop.orchestrator.journal.view import (
    _last_run_event,
    _volts,
    assumed_by,
    counts_apart,
    describe_objective,
    hits_by_bound_said,
    nominal_offset,
    rate_constant,
    run_was_dry,
    snapshot,
    warned_of,
)
from labloop.planners.base import bound_fields
from labloop.surrogate.presets import PRESETS, get_preset
from labloop.surrogate.screening import rule_of

log = logging.getLogger(__name__)

RECENT_VOLTAMMOGRAMS = 6
PLOTS = ("best_so_far.png", "measured_vs_predicted.png", "prediction_error.png", "voltammograms.png",
         "acquisition.png")
#: drawn when the protocol has lab-grade steps (eis, several scan rates, a ferrocene standard)
LAB_PLOTS = ("nyquist.png", "cv_per_scan_rate.png", "potential_vs_ferrocene.png", "randles_sevcik.png")
#: what each plot shows, under it on the page (a chemist's trial found eight figures with no caption: which
#: experiment, which potentials, what a line means)
CAPTIONS = {
    "best_so_far.png": "Each measured potential (grey) in the order measured, and the best so far by the objective "
                       "(blue); a target window shaded.",
    "measured_vs_predicted.png": "Each measurement against the model's prediction when the experiment was proposed "
                                 "(bars: +/-1 sd of the prediction); the dashed line is measured = predicted. Open "
                                 "grey points: predicted before any measurement calibrated the model (the tables' "
                                 "*), on the prior's own scale.",
    "prediction_error.png": "How far each proposal's prediction was from its measurement, in the order measured, with "
                            f"the mean of the last {ERROR_WINDOW}: feedback should make it fall as measurements "
                            "accumulate, until what the model cannot learn remains (a plateau); where it does not "
                            "fall, the model is not learning from them.",
    "voltammograms.png": f"The last {RECENT_VOLTAMMOGRAMS} measured experiments' scans, potentials as applied (the "
                         "ohmic drop the potentiostat left uncompensated is not subtracted); the top axis is vs Li/Li+ "
                         "by cell.reference_offset_v.",
    "acquisition.png": "The planner's acquisition value of each proposal, by experiment id (a screening or random "
                       "planner has none), after the failure correction that lowers it near molecules that failed "
                       "before (docs/planners.md). A first batch chosen by the calibration design "
                       "(planner.first_batch: design, the default, before any measurement) was spread over molecular "
                       "size, not chosen by this value: its points are what the model gave those molecules.",
    "nyquist.png": "The last lab-grade experiment's impedance spectrum, as its eis step measured the cell (in the "
                   "protocol's order: the shipped one measures the electrolyte before the sample; the step's DC "
                   "potential and amplitude are in its action record), whole and the high-frequency points Ru was "
                   "fitted to.",
    "cv_per_scan_rate.png": "The last lab-grade experiment's scans, one per rate, as applied (the legend says what "
                            "the potentiostat compensated of Ru); a diffusing couple's peaks grow as the square root "
                            "of the rate.",
    "potential_vs_ferrocene.png": "Each experiment's E1/2 vs Li/Li+ two ways: through the ferrocene standard "
                                  "measured in the same cell (cell.ferrocene_vs_li_v) and through the reference "
                                  "electrode (cell.reference_offset_v); their gap is the reference's drift or a wrong "
                                  "offset.",
    "randles_sevcik.png": "The forward peak's |ip| against the square root of the scan rate for the last experiment "
                          "with a D: filled, the rates D was fitted over (those where the couple is reversible, when "
                          "two or more are; else every rate, and D then reads low); open, those left out; the line "
                          "through the origin is the fit, D = (slope / (2.6865e5 n^1.5 A C))^2 (slope in A per "
                          "sqrt(V/s), A in cm2, C in mol/cm3; the constant at 25 C, times sqrt(298.15 K / T)).",
}
#: the columns that hold conditions, ``name=value;...`` in one cell: those a planner chose (the campaign's
#: ``conditions:``) and the protocol's own scan rate where none was planned (journal/view.py: a potential is read
#: at a scan rate, so both tables show what each experiment ran at, and which of the two set it)
CONDITION_COLUMNS = ("conditions", "protocol_conditions")
#: ``name``: the library's name of the molecule, if it names them (orchestrator/journal/names.py); ``sample_id``: the
#: vial its load_sample loaded (Journal.sample_ids)
EXPERIMENT_COLUMNS = ("id", "smiles", "name", "sample_id", "status", "attempt", "cause", "step", "planner",
                      *CONDITION_COLUMNS, "mu", "sigma", "uncalibrated", "acquisition", "model_version", "created_at",
                      "started_at", "finished_at", "simulated")
#: ``e_half_v_vs_fc``: E1/2 against the ferrocene an add_standard step added (empty without one), the number a
#: chemist reports, which only lab_grade.csv had; ``status``: a failed experiment can hold a potential (one whose
#: standard could not be told apart has its reference-scale value), which read as a result beside the others (a
#: chemist's trial); ``dep_mV``: dEp in mV, as lab_grade.csv and ``labloop log`` give it (this table alone had it
#: in V);
#: ``hit``: yes/no whether the potential meets the objective (empty without a potential, or for an objective without
#: hits), so a sort by potential does not mix hits and non-hits unmarked (a PI's audit)
MEASUREMENT_COLUMNS = ("id", "smiles", "name", "sample_id", "status", "potential_v", "hit", "potential_from",
                       "e_half_v_vs_fc", "e_half_v", "dep_mV", "ipa_a", "ipc_a", "ratio", "return_share",
                       "reversibility", "scan_rate_v_s", "retried", "reference",
                       "flags", "mu", "sigma", "uncalibrated", *CONDITION_COLUMNS, "simulated")
#: the measurement CSV's headers say each potential's scale: a spreadsheet shows no table title, and
#: ``potential_v`` beside ``reference`` (the cell's reference electrode, as the potentiostat's driver names it)
#: read as a potential against that electrode (a chemist's trial)
MEASUREMENT_HEADERS = {"potential_v": "potential_v_vs_li", "e_half_v": "e_half_v_vs_reference",
                       "reference": "reference_electrode", "mu": "predicted_v_vs_li", "sigma": "predicted_sd_v",
                       "conditions": "planned_conditions", "ipa_a": "ipa_uA", "ipc_a": "ipc_uA",
                       "ratio": "ipc_over_ipa", "return_share": "return_over_forward"}
#: experiments.csv names the prediction and the conditions as measurements.csv does, so the two join on ``id``
#: without a rename
EXPERIMENT_HEADERS = {c: MEASUREMENT_HEADERS[c] for c in ("mu", "sigma", "conditions")}
#: written when the journal holds lab records: one row per experiment and scan rate, the experiment's own results
#: (Ru, D and what it was computed with, E1/2 vs Fc+/Fc, the blank) repeated on each of its rows. Why long, not one
#: row per experiment with a column group per rate: the rates are a protocol's choice (a column set per rate set
#: would change between campaigns), and a chemist plots ip against sqrt(v) or dEp against v straight from the rows
#: of one id, or filters one rate for one row per experiment. Units are in the headers (mV, uA, mM: ``analyte_mM``
#: is millimolar, which the protocol's ``analyte_mm`` spells in lower case); potentials on the scale their header says.
#: ``ir_compensated_ohm``: what the potentiostat compensated during that rate's scan (the cv step's
#: ``ir_compensation`` fraction of ``ru_ohm``), which the report's page gives as a share of Ru. ``n_electrons`` and
#: ``temperature_K``: what the Randles-Sevcik equation assumed for D (a chemist's trial found them in no output), so D
#: can be recomputed from ipa_uA, sqrt(scan_rate_v_s), electrode_area_cm2 and analyte_mM. ``analyte_mM`` is the
#: concentration D used: the cv step's ``analyte_mm`` as written, or, with its ``sample_stock_mm``, ``sample_stock_mM``
#: x ``sample_ml`` (what the sample's dispenses delivered) / ``cell_ml`` (the cell by labloop's count). ``k0_cm_s`` and
#: ``k0_side``: Nicholson's rate constant from that rate's dEp and the experiment's D, and ``k0_why`` why a bound is one
#: (:func:`labloop.orchestrator.journal.view.rate_constant`; a chemist choosing a flow-cell molecule asks how fast it
#: is at the electrode, which dEp alone did not say)
LAB_GRADE_CSV = "lab_grade.csv"
LAB_GRADE_COLUMNS = (
    "id", "smiles", "status", "scan_rate_v_s", "e_half_v_vs_reference", "epa_v_vs_reference", "epc_v_vs_reference",
    "dep_mV", "k0_cm_s", "k0_side", "k0_why", "ipa_uA", "ipc_uA", "ipc_over_ipa", "reversibility", "scan_flags",
    "ru_ohm", "ir_compensated_ohm", "diffusion_cm2_s", "diffusion_r_squared", "in_diffusion_fit", "n_electrons",
    "temperature_K", "analyte_mM", "sample_stock_mM", "sample_ml", "electrode_area_cm2", "cell_ml", "cell_held_ml",
    "analyte_dilution_pct", "e_half_v_vs_fc", "e_half_v_vs_li_via_fc", "e_half_spread_mV", "e_half_rates_n",
    "standard_problem", "standard_e_half_v_vs_reference", "standard_dep_mV", "standard_ipc_over_ipa", "blank_flags",
    "purged_min", "simulated",
)


#: one row per failed experiment, what the page's failures table shows: measurements.csv holds only the failed ones
#: that journalled a measurement (an unusable scan), and experiments.csv every experiment with its cause but not the
#: bound a failed scan gave, so a PI's audit found no one place to read what failed and why. ``kind``: the failure
#: as journalled (:func:`_failure_kind`); ``above_v_vs_li``/``below_v_vs_li``: the bound its scan gave on the
#: potential, as the planner learnt it (on the nominal ``cell.reference_offset_v``); ``cause``: the journal's line
FAILURES_CSV = "failures.csv"
FAILURE_COLUMNS = ("id", "name", "smiles", "kind", "above_v", "below_v", "mu", "sigma", "uncalibrated", "cause",
                   "hit_by_bound", "simulated")
FAILURE_HEADERS = {"above_v": "above_v_vs_li", "below_v": "below_v_vs_li",
                   **{c: MEASUREMENT_HEADERS[c] for c in ("mu", "sigma")}}
#: the exception's type in a cause the runner journalled (core/errors.py ``said``: ``Type: message``, after a
#: refusal's ``refused: `` or the failed step's ``instrument (step): ``)
ERROR_TYPE = re.compile(r"\b[A-Z]\w*(?=: )")


#: every raw voltammogram of the journal, one row per point, so a chemist can replot, integrate or re-analyse a
#: scan in their own software: the PNG shows only the recent ones, and the journal is a database file. Long form
#: (one point per row, each scan numbered within its experiment) for the same reason as lab_grade.csv. A lab-grade
#: experiment's blanks, every scan rate's scan and the standard's scan are there too, each named by its ``role``
#: (a reviewer found only the first rate's scan, so D, the spread and the referencing could not be re-derived);
#: ``ir_compensated_ohm`` is what the potentiostat compensated during the scan: the potentials are as applied, the
#: rest of the ohmic drop (lab_grade.csv's ``ru_ohm`` minus it) not subtracted
VOLTAMMOGRAMS_CSV = "voltammograms.csv"
#: a campaign's past measurements as its journal keeps them (V vs Li/Li+, after ``vs: fc``'s offset; each molecule
#: once, spelled as the library does): what a lab checks its conversion by (a chemist's trial had no way to); a
#: molecule the table only bounds (``>5.1``) has its bound in ``above_v_vs_li`` or ``below_v_vs_li`` instead
PAST_CSV = "past_measurements.csv"
VOLTAMMOGRAM_COLUMNS = ("id", "smiles", "status", "scan", "role", "scan_rate_v_s", "reference_electrode",
                        "ir_compensated_ohm", "time_s", "potential_v_vs_reference", "current_a", "overload",
                        "simulated")
#: the ``role`` of a scan in voltammograms.csv: the analyte's (each rate of the cv step), a blank's (the
#: electrolyte before the sample), and the add_standard step's (the analyte with the standard, named by the record)
ANALYTE, BLANK = "analyte", "blank"
#: the ``role`` of a scan the executor refused (potentials in mV, a scan cut short, a NaN point, beyond the safety
#: limits: instruments/voltammogram.py ``returned_scan``), kept as returned (orchestrator/journal/store.py
#: ``Journal.record_raw``; why, in the log's ``rejected`` event and the experiment's cause)
REJECTED_ROLE = "rejected, not analysed"


#: how a report's page is known (its title's end): a folder whose index.html has it holds an earlier report
REPORT_TITLE_END = ": labloop report</title>"


def not_a_report(directory: Path) -> list[str]:
    """The files of ``directory`` a report would replace, when the folder holds no earlier report (no
    ``index.html`` with :data:`REPORT_TITLE_END`), sorted; empty when there are none or it is a report's folder. Why:
    ``labloop report DB -o .`` in a campaign's folder replaced the lab's own campaign.yaml with the report's copy, its
    alert URL withheld, and that campaign file no longer validated (a security trial)."""
    if not directory.is_dir():
        return []
    page = directory / "index.html"
    try:
        with page.open(encoding="utf-8", errors="replace") as handle:
            if REPORT_TITLE_END in handle.read(4096):
                return []
    except OSError:  # none, or not a file: not a report's page
        pass
    return sorted(name for name in REPORT_FILES if (directory / name).exists() or (directory / name).is_symlink())


def write_report(journal: Journal, directory: Path) -> Path:
    """Write the report of ``journal`` into ``directory``; returns the HTML page's path. All or nothing: the
    files are made in a temporary folder beside it and moved in once every one is written, so a journal that
    cannot be read to its end leaves no half report (nor half replaces an older one), and the temporary folders
    of reports killed while they wrote are removed."""
    directory.mkdir(parents=True, exist_ok=True)
    staging = f".{directory.name}.staging-"
    remove_orphans(directory.parent, staging)  # a report killed (SIGKILL) while it wrote left its folder
    try:
        with tempfile.TemporaryDirectory(dir=directory.parent, prefix=scratch_prefix(staging)) as folder:
            _write(journal, Path(folder))
            written = {path.name for path in Path(folder).iterdir()}
            for name in written:
                os.replace(Path(folder) / name, directory / name)
            for name in SOMETIMES_WRITTEN - written:  # an earlier report's, of another journal or of this one then
                (directory / name).unlink(missing_ok=True)
    except OSError as exc:  # a full disk, a folder this account may not write: which file, and why
        raise InputError(f"{_unwritten(exc, directory)}: cannot write the report ({exc.strerror or exc}); "
                         "nothing of it was kept") from None
    log.info("report written to %s", directory)
    return directory / "index.html"


def _unwritten(exc: OSError, directory: Path) -> Path:
    """The file ``exc`` failed to write, as the report names it: one in the temporary folder by the name it would
    have had in ``directory`` (the temporary folder is gone by the time the user reads the line)."""
    path = Path(exc.filename) if exc.filename else directory
    return directory / path.name if path.parent.name.startswith(f".{directory.name}.") else path


@contextmanager
def _writing(path: Path) -> Iterator[None]:
    """``path`` named by any OSError raised while it is written: a full disk's error from matplotlib or a CSV
    writer's flush names no file (the user saw "error: No space left on device")."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            exc.filename = str(path)
        raise


def _write(journal: Journal, directory: Path) -> None:
    snap = snapshot(journal)
    config = journal.campaign_info().config
    objective = Objective.model_validate(snap["campaign"]["objective"])
    done = measured(snap["experiments"])
    offset_v = nominal_offset(config)
    _csv(directory / "experiments.csv", EXPERIMENT_COLUMNS,
         [{**e, "uncalibrated": _uncalibrated_said(e), "simulated": _simulated_said(e)} for e in snap["experiments"]],
         EXPERIMENT_HEADERS)
    # each lab record read once: for the CSVs (potential_from, every raw scan) and the lab-grade plots
    records = {e["id"]: record for e in snap["experiments"] if (record := journal.lab_record(e["id"])) is not None}
    measurements = [e for e in snap["experiments"] if e["potential_v"] is not None or e["flags"]]
    _csv(directory / "measurements.csv", MEASUREMENT_COLUMNS,
         [{**e, "potential_from": _potential_from(e, records.get(e["id"]), offset_v),
           "hit": _hit_said(e, snap["progress"]["hits"] is not None), "uncalibrated": _uncalibrated_said(e),
           "e_half_v_vs_fc": ((records.get(e["id"]) or {}).get("referenced") or {}).get("e_vs_fc_v"),
           "dep_mV": _scaled(e["dep_v"], 1e3), "ipa_a": _scaled(e["ipa_a"], 1e6), "ipc_a": _scaled(e["ipc_a"], 1e6),
           "simulated": _simulated_said(e)}
          for e in measurements],
         MEASUREMENT_HEADERS)
    lab_rows = [row for e in measurements if (record := records.get(e["id"])) is not None
                for row in _lab_grade_rows(e, record)]
    if lab_rows:
        _csv(directory / LAB_GRADE_CSV, LAB_GRADE_COLUMNS, lab_rows)
    _raw_voltammograms(directory / VOLTAMMOGRAMS_CSV, journal, snap["experiments"], records)
    past, bounds = journal.past_measurements(), journal.past_bounds()
    if past or bounds:  # as the campaign learnt from them: on the Li/Li+ scale, each molecule once
        _csv(directory / PAST_CSV, ("smiles", "potential_v", "above_v", "below_v"),
             [*({"smiles": s, "potential_v": v, "above_v": None, "below_v": None} for s, v in past),
              *({"smiles": s, "potential_v": None, **bound_fields((b, side))} for s, b, side in bounds)],
             {"potential_v": "potential_v_vs_li", "above_v": "above_v_vs_li", "below_v": "below_v_vs_li"})
    stamp = _stamp(snap["campaign"]["runs"])
    _best_so_far(directory / PLOTS[0], done, objective, stamp)
    _parity(directory / PLOTS[1], done, stamp)
    _prediction_error(directory / PLOTS[2], done, stamp)
    _voltammograms(directory / PLOTS[3], journal, done[-RECENT_VOLTAMMOGRAMS:], offset_v, stamp)
    _acquisition(directory / PLOTS[4], snap["experiments"], config, objective, stamp)
    labs = [(e, record) for e in done if (record := records.get(e["id"])) is not None]
    if labs:
        _nyquist(directory / LAB_PLOTS[0], labs[-1], stamp)
        _scan_rates(directory / LAB_PLOTS[1], labs[-1], offset_v, stamp)
        _versus_ferrocene(directory / LAB_PLOTS[2], labs, offset_v, stamp)
        _randles_sevcik(directory / LAB_PLOTS[3], labs, stamp)
    calibrations = [{**e.data, "journalled_at": e.time} for e in journal.events()
                    if e.kind == "calibration" and isinstance(e.data, dict)]
    checked = _checked_rows(journal, snap, objective, offset_v)
    check = interval_check(checked)
    failures = _failures(snap["experiments"], checked)
    _csv(directory / FAILURES_CSV, FAILURE_COLUMNS,
         [{**f, "uncalibrated": _uncalibrated_said(f), "simulated": _simulated_said(f),
           "hit_by_bound": "yes" if f["hit_by_bound"] else ""} for f in failures],
         FAILURE_HEADERS)
    source = journal.campaign_info().source_yaml
    shared = None if source is None else _shareable(source, config.get("alerts") or [])
    if shared is not None and shared[0] is not None:  # so a referee re-runs what was run (the page gives its sha256)
        with _writing(directory / CAMPAIGN_YAML):
            (directory / CAMPAIGN_YAML).write_text(shared[0])
    protocol = config.get("protocol") or {}
    protocol_file = protocol.get("file") if isinstance(protocol.get("steps"), list) else None
    if protocol_file is not None:  # the campaign file names it: a referee needs its steps as run too
        with _writing(directory / PROTOCOL_YAML):
            (directory / PROTOCOL_YAML).write_text(_protocol_copy(protocol_file, protocol["steps"]))
    with _writing(directory / "index.html"):
        (directory / "index.html").write_text(_html(snap, calibrations, directory,
                                                    _best_table(snap, records, offset_v), _lab_table(lab_rows), check,
                                                    _provenance(source, snap["events"], snap["progress"],
                                                                withheld=None if shared is None or shared[0] is None
                                                                else shared[1], comments=0 if shared is None
                                                                else shared[2],
                                                                protocol_file=protocol_file),
                                                    _failures_table(failures), _cell_said(config, source),
                                                    _setup_said(config, snap["events"])))


#: the campaign file as run, which the journal keeps verbatim (its ``source_yaml``), written beside the page with its
#: alert URLs withheld (:func:`_shareable`)
CAMPAIGN_YAML = "campaign.yaml"
#: the steps of a protocol file as the campaign ran them (the journal holds them as read), written beside the page
#: when the campaign file names one (``protocol: FILE``), which its copy (:data:`CAMPAIGN_YAML`) only names
PROTOCOL_YAML = "protocol.yaml"
#: the report's files that only some journals' reports have: one left in the folder by an earlier report that this
#: one does not write is removed, so the folder holds one journal's report alone (a report into a folder of another
#: journal's kept its campaign.yaml, lab-grade plots and past measurements beside the new page)
SOMETIMES_WRITTEN = frozenset({CAMPAIGN_YAML, PROTOCOL_YAML, LAB_GRADE_CSV, PAST_CSV, *LAB_PLOTS})
#: the name of every file a report may write into its folder
REPORT_FILES = frozenset({"index.html", "experiments.csv", "measurements.csv", FAILURES_CSV, VOLTAMMOGRAMS_CSV, *PLOTS,
                          *SOMETIMES_WRITTEN})
#: what the report's copy of the campaign file holds in place of each ``alerts:`` entry: not a URL, so a re-run of the
#: copy is refused at ``alerts[i]`` in one line until the referee gives their own or removes it
WITHHELD_ALERT = "alert-url-withheld-by-labloop-report"


def _shareable(source: str, alerts: list[str]) -> tuple[str | None, int, int]:
    """The campaign file as run with each of its ``alerts`` entries replaced by :data:`WITHHELD_ALERT`, how many
    entries there were and how many comments were withheld; (None, n, 0) when an entry is not in the text as the
    campaign read it (written with a YAML escape), so no copy is written. Why: the report folder is made to be
    shared, and an alert URL holds credentials (a dashboard trial found a webhook's token in the report's
    campaign.yaml, which alert_urls.py keeps out of every message); a ``${VAR}`` entry is withheld too, the
    variable's name being the lab's business. A comment that holds a URL is withheld as well
    (:func:`_url_comments_withheld`): a lab comments out its old webhook, credentials and all (a security trial)."""
    withheld = _url_comments_withheld(source)
    comments = withheld.count(WITHHELD_COMMENT) - source.count(WITHHELD_COMMENT)
    for url in sorted(set(alerts), key=len, reverse=True):  # a URL that holds another is replaced first
        if url not in withheld:
            return None, len(alerts), 0
        withheld = withheld.replace(url, WITHHELD_ALERT)
    return withheld, len(alerts), comments


#: what the report's copy of the campaign file holds in place of a comment that holds a URL (``://``)
WITHHELD_COMMENT = "# (a comment holding a URL, withheld by labloop report)"
#: a URL's scheme, as a comment writes it
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
#: the schemes of a Dask scheduler's address (``compute.scheduler``), which hold no credentials: a comment naming one
#: is kept (the example's ``# compute: {scheduler: tcp://10.0.0.5:8786}`` was withheld: a newcomer's trial)
CLUSTER_SCHEMES = frozenset({"tcp", "tls", "ucx", "inproc"})


def _url_comments_withheld(source: str) -> str:
    """``source`` (YAML that loaded) with each comment that holds a URL (``scheme://``; a scheduler's address,
    :data:`CLUSTER_SCHEMES`, aside) replaced by :data:`WITHHELD_COMMENT`. A comment starts at a ``#`` at a line's
    start or after a blank that lies outside every scalar (YAML's rule; a ``#`` inside a quoted or block scalar is
    text), which PyYAML's scanner tells by where its scalars lie."""
    spans: dict[int, list[tuple[int, int]]] = {}  # line: the columns its scalars cover
    for token in yaml.scan(source, Loader=yaml.SafeLoader):
        if isinstance(token, yaml.ScalarToken):
            start, end = token.start_mark, token.end_mark
            for line in range(start.line, end.line + 1):
                spans.setdefault(line, []).append((start.column if line == start.line else 0,
                                                   end.column if line == end.line else len(source)))
    lines = source.splitlines(keepends=True)
    for number, line in enumerate(lines):
        starts = (m.start() for m in re.finditer(r"(?:^|(?<=\s))#", line))
        column = next((c for c in starts if not any(a <= c < b for a, b in spans.get(number, ()))), None)
        schemes = {scheme.lower() for scheme in _SCHEME.findall(line[column:])} if column is not None else set()
        if schemes - CLUSTER_SCHEMES:  # a Dask address in a comment (the example's tcp://HOST:8786) stays
            body = line.rstrip("\r\n")
            lines[number] = body[:column] + WITHHELD_COMMENT + line[len(body):]
    return "".join(lines)


def _protocol_copy(file: str, steps: list[Any]) -> str:
    """:data:`PROTOCOL_YAML`'s text: the steps as run, under a comment naming the file they were read from. Why:
    the report's copy of the campaign file names its protocol by a path only, and a referee given the report
    folder had the campaign but not its steps (a data-integrity trial); its comments are not in the journal."""
    header = (f"# the steps of {file} as this campaign ran them, from its journal (the file's comments are not kept);\n"
              f"# to re-run the report's campaign.yaml with them, point its protocol: at this file\n")
    return header + yaml.safe_dump(steps, sort_keys=False, allow_unicode=True, default_flow_style=None, width=120)


#: how the page names each of the cell's described fields (``cell.solvent`` ...), in a methods section's order
CELL_DESCRIBED = (("solvent", "solvent"), ("electrolyte", "supporting electrolyte"),
                  ("working_electrode", "working electrode"), ("counter_electrode", "counter electrode"))


def _cell_said(config: dict[str, Any], source: str | None) -> str:
    """The page's line of the cell's conditions, already escaped: what the campaign's ``cell:`` describes (or which
    field would say it), the reference electrode (the potentiostat's ``reference`` option) and where it sits vs
    Li/Li+, and the temperature D and k0 were computed at. Why: a chemist's trial found no solvent, electrolyte or
    electrodes anywhere, and a methods section could not be written from the report."""
    cell = config.get("cell") or {}
    parts = [f"{name} {cell[field]}" if cell.get(field) else f"{name} not given (cell.{field})"
             for field, name in CELL_DESCRIBED]
    references = sorted({str(reference) for entry in (config.get("instruments") or {}).values()
                         if isinstance(entry, dict) and (reference := (entry.get("options") or {}).get("reference"))})
    reference = " / ".join(references) or "unnamed (the potentiostat's reference option)"
    parts.append(f"reference electrode {reference} at {_number(float(cell.get('reference_offset_v', 3.2)))} V vs "
                 "Li/Li+ (cell.reference_offset_v)")
    default_c = Cell.model_fields["temperature_c"].default
    temperature = float(cell.get("temperature_c", default_c))
    # the default said as one: 25 C read as a temperature measured, beside a solvent "not given" (a referee's trial);
    # whether the file set it, from the campaign file as run (``source``) where the journal keeps it
    default = "" if temperature != default_c or _sets_temperature(source) else (
        ", its default unless the campaign file sets it" if source is None else ", its default: the campaign file "
        "does not set it")
    parts.append(f"{_number(temperature)} C (cell.temperature_c{default}; D, k0 and the dEp cut-offs computed at it)")
    return _escaped("the cell: " + "; ".join(parts))


def _sets_temperature(source: str | None) -> bool:
    """Whether the campaign file as run (None: not kept) writes ``cell.temperature_c``."""
    try:
        document = yaml.safe_load(source) if source else None
    except yaml.YAMLError:
        return False
    cell = document.get("cell") if isinstance(document, dict) else None
    return isinstance(cell, dict) and "temperature_c" in cell


def _setup_said(config: dict[str, Any], events: list[dict[str, Any]]) -> str:
    """The page's line of how the surrogate and the planner were set up and which software ran, already escaped. Why:
    a referee writing a paper's methods found the network, its features and its training data only in the campaign
    file's copy and the docs, and the libraries' versions only in ``log --json``."""
    surrogate, prior, planner = config.get("surrogate") or {}, config.get("prior"), config.get("planner") or {}
    if prior and surrogate.get("preset") not in PRESETS:  # a preset this labloop no longer has
        said = f"surrogate: preset {surrogate.get('preset')}"
    elif prior:
        preset = get_preset(surrogate["preset"])
        fp, model = preset.fingerprint, preset.model
        features = [f"ECFP{2 * fp.radius} {fp.n_bits} {'counts' if fp.counts else 'bits'}",
                    *([f"atom pairs {fp.atom_pair_bits}"] if fp.atom_pair_bits else []),
                    *([f"torsions {fp.torsion_bits}"] if fp.torsion_bits else []),
                    *(["Hückel and size descriptors"] if fp.descriptors else [])]
        rows = f"the campaign seed's slice of {prior['rows']} rows" if prior.get("rows") else "every row"
        said = (f"surrogate: preset {preset.name} (as this labloop defines it), {surrogate['folds']} fully connected "
                f"networks (hidden {'-'.join(map(str, model.hidden))}, {model.activation}, "
                f"{surrogate.get('epochs') or model.epochs} epochs) on {' + '.join(features)}, trained on {rows} of "
                f"{Path(prior['file']).name} "
                f"({', '.join(prior['targets'])}), retrained with the measurements every "
                f"{surrogate['retrain_every']} done experiments")
    else:
        said = "surrogate: none (no prior section)"
    settings = ", ".join(f"{key} {str(value).lower() if isinstance(value, bool) else value}"
                         for key, value in planner.items() if key != "kind" and value is not None)
    said += f"; planner {planner.get('kind')} ({settings})"
    # what the planner chose per experiment and which instruments did it: a referee found the scan rates and the rig
    # in the campaign file's copy alone (a trial)
    if conditions := config.get("conditions"):
        said += "; conditions it chooses per experiment: " + ", ".join(f"{k} {v}" for k, v in conditions.items())
    if instruments := [_instrument_said(name, spec) for name, spec in (config.get("instruments") or {}).items()]:
        said += f"; instruments (name, driver, options): {'; '.join(instruments)}"
    runs = [e["data"]["versions"] for e in events if e["kind"] == "run" and isinstance(e["data"], dict)
            and isinstance(e["data"].get("versions"), dict)]
    if runs:
        same = "" if all(r == runs[-1] for r in runs) else f" (not all its {len(runs)} runs: log --json's run events)"
        said += f"; software of the last run{same}: " + ", ".join(f"{k} {v}" for k, v in runs[-1].items())
    return _escaped(said)


def _instrument_said(name: str, spec: dict[str, Any]) -> str:
    """``analyte_pump ne1000 (address 0, diameter_mm 4.61)``: an instrument of the journalled campaign for the methods
    line, its options but ``capture`` (a path)."""
    options = ", ".join(f"{k} {v}" for k, v in (spec.get("options") or {}).items() if k != "capture")
    return f"{name} {spec.get('driver')}" + (f" ({options})" if options else "")


def _provenance(source: str | None, events: list[dict[str, Any]], progress: dict[str, Any], *,
                withheld: int | None = 0, comments: int = 0, protocol_file: str | None = None) -> str:
    """The page's line of how the campaign was run and ended, already escaped: ``dry run (simulated instruments)``,
    ``real instruments`` or ``mixed`` by its ``run`` events (orchestrator/cli/run.py journals each with ``dry_run``),
    how the last run ended (:func:`labloop.orchestrator.journal.view.run_end`, or still running), and the campaign
    file's sha256 with a link to it. Why: a simulated campaign's report looked exactly like a real one, a stopped
    one like a finished one, and a referee had no file to re-run (a PI's audit). ``withheld``: how many alert URLs
    the copy has withheld (:func:`_shareable`), None when no copy could be written without them; ``comments``: how
    many comments holding a URL (the copy's sha256 differs for them too: a review). ``protocol_file``:
    the protocol file the campaign file names, whose steps as run are beside the page (:data:`PROTOCOL_YAML`)."""
    dry = [run_was_dry(e) for e in events if e["kind"] == "run"]
    mode = ("not run yet" if not dry else DRY_RUN_SAID if all(dry) else
            "real instruments" if not any(dry) else
            f"mixed: {dry.count(True)} {plural(dry.count(True), 'run')} dry (simulated data: each CSV row says which "
            "in its simulated column), "
            f"{dry.count(False)} on real instruments")
    ended = "still running (a run holds the journal)" if progress["run_active"] else progress["ended"]
    digest = "" if source is None else hashlib.sha256(source.encode()).hexdigest()
    parts = [*([f"its {withheld} alert {plural(withheld, 'URL')} withheld ({WITHHELD_ALERT})"] if withheld else []),
             *([f"{comments} {plural(comments, 'comment')} holding a URL withheld"] if comments else [])]
    alerts = f"; the copy has {' and '.join(parts)}, so its own sha256 differs" if parts else ""
    campaign = ("the campaign file is not in the journal" if source is None else
                f"the campaign file as run (sha256 {digest}) is not copied here: an alert URL in it could not be "
                "withheld" if withheld is None else
                f'campaign file as run: <a href="{CAMPAIGN_YAML}">{CAMPAIGN_YAML}</a> '
                f"(sha256 {digest} of the file as run{alerts}; the journal does not keep its name; its "
                "relative paths count from the folder the campaign file was in)")
    protocol = ("" if protocol_file is None else
                f'; the steps of its protocol, {_escaped(protocol_file)}, as run: <a href="{PROTOCOL_YAML}">'
                f"{PROTOCOL_YAML}</a>")
    return f"<b>{_escaped(mode)}</b>; {_escaped(ended)}{_escaped(_history(events))}; {campaign}{protocol}"


#: how a run that a later one continued had ended, by the kind of its last start or end event (None: it ended without
#: a word, killed or crashed)
EARLIER_ENDS = {"finished": "finished", "interrupted": "interrupted (Ctrl-C or a signal)", "stopped": "stopped",
                "cluster_lost": "stopped (the Dask cluster was lost)", None: "ended without a word (killed or crashed)"}


def _history(events: list[dict[str, Any]]) -> str:
    """``; `` and how the campaign came to where it is, when it took more than one run or a resume changed it: how
    each earlier run ended, every budget or port a resume changed (their events' own words), and what a person did
    at the rig on a resume's word. "" for a campaign run once, unchanged. Why: a campaign stopped, resumed with
    ``--max-experiments 8`` and ``--cell-emptied``, read "finished: budget reached (8/8)" beside a copy of its
    campaign file saying 30, the stop, the resume and the emptied cell nowhere on the page (a PI's trial)."""
    starts = [i for i, e in enumerate(events) if e["kind"] == "run"]
    ends: dict[str | None, int] = {}
    for start, following in pairwise(starts):
        last = events[start + _last_run_event(events[start:following])]["kind"]  # the run's start at the least
        ended = None if last == "run" else last
        ends[ended] = ends.get(ended, 0) + 1
    said = []
    if ends:
        said.append(f"{len(starts)} runs, each continuing the last; the earlier "
                    + ", ".join(f"{n} {EARLIER_ENDS[kind]}" for kind, n in ends.items()))
    said += [e["message"] for e in events if e["kind"] in ("budget", "port")]
    for kind, words in ((CELL_EMPTIED, "the cell emptied by hand"), (SYRINGES_FILLED, "the syringes filled by hand")):
        if n := sum(e["kind"] == kind for e in events):
            said.append(f"{words} {n} {plural(n, 'time')} (labloop resume --{kind.replace('_', '-')})")
    return "".join(f"; {words}" for words in said)


def _checked_rows(journal: Journal, snap: dict[str, Any], objective: Objective, offset_v: float
                  ) -> list[dict[str, Any]]:
    """:func:`interval_check`'s rows: the measured experiments, and those whose measurement failed with the bound
    their scan gave, as the planner learnt it (orchestrator/loop/runner.py, ``_bound``: on the cell's nominal
    reference), each with how many measurements its prediction was calibrated on."""
    calibrated = calibrated_on(snap["experiments"], snap["events"])
    rows = [{**e, "calibrated_on": calibrated[e["id"]], "bound": None} for e in measured(snap["experiments"])]
    for e in snap["experiments"]:
        if e["status"] == "failed" and (e["cause"] or "").startswith(ANALYSIS_FAILURE):
            analysis = journal.analysis(e["id"])
            bound = None if analysis is None else analysis.on_li_scale(offset_v).bound(objective.quantity)
            rows.append({**e, "calibrated_on": calibrated[e["id"]], "bound": bound})
    return rows


def _failures(experiments: list[dict[str, Any]], checked: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The :data:`FAILURE_COLUMNS` rows of the failed experiments, in the journal's order: each with its
    :func:`_failure_kind` and the bound its scan gave, as :func:`_checked_rows` read it for the sd check (None for a
    failure that is not the analysis's, or a scan that bounds nothing)."""
    bounds = {row["id"]: row["bound"] for row in checked if row["status"] == "failed"}
    return [{**e, "kind": _failure_kind(e), **bound_fields(bounds.get(e["id"]))}
            for e in experiments if e["status"] == "failed"]


#: what a dry run is, as the page and the figures say it: the instruments were emulators and the potentials came
#: from the simulated world, so no molecule was measured ("simulated instruments" read as emulated hardware over real
#: chemistry: a referee's trial)
DRY_RUN_SAID = "dry run (simulated instruments and chemistry: no molecule was measured)"


def _stamp(runs: dict[str, int]) -> str:
    """What each figure says in its corner of a campaign with dry runs (``runs``: the snapshot's counts), '' for one
    run on real instruments only."""
    if not runs["dry"]:
        return ""
    return "dry run: simulated data" if not runs["real"] else "partly a dry run: simulated data"


def _simulated_said(experiment: dict[str, Any]) -> str:
    """The CSVs' ``simulated`` cell: ``yes`` for an experiment a dry run measured (simulated instruments and a
    simulated world: no molecule was measured), ``no`` for one measured on real instruments, '' for one never
    started. Why: the page's header alone said so, and a CSV pasted into a paper's SI read as measurements (a
    referee's trial)."""
    dry = experiment.get("dry_run")
    return "" if dry is None else "yes" if dry else "no"


def _uncalibrated_said(experiment: dict[str, Any]) -> str:
    """The CSVs' ``uncalibrated`` cell: ``yes`` where the prediction was made before any measurement calibrated the
    model (the DFT prior's scale, +/- 2 V: the page marks it ``*``, ``log --json`` says ``uncalibrated``), ``no``
    after, '' without a prediction. Why: a newcomer read 6.25 +/- 2.02 V in failures.csv with nothing saying so."""
    return "" if experiment["mu"] is None else "yes" if experiment["uncalibrated"] else "no"


def _failure_kind(experiment: dict[str, Any]) -> str:
    """A failed experiment's kind as the journal holds it: an unusable measurement's flags (``analysis: no_peak``;
    a blank's ``oxygen`` or ``contaminated`` and the standard's ``no_standard`` join them, protocols/executor.py), a
    veto, or the head of the runner's cause up to the error's type (``refused: SafetyLimitExceeded``,
    ``potentiostat (cv): Disconnected``); the whole cause where it names no type."""
    cause = experiment["cause"] or ""
    if cause.startswith(ANALYSIS_FAILURE):
        return f"{ANALYSIS_FAILURE}{', '.join(experiment['flags']) or 'no usable potential'}"
    if cause.startswith(VETOED):
        return VETOED
    error = ERROR_TYPE.search(cause)
    return cause if error is None else cause[:error.end()]


#: the failures table's columns on the page (failures.csv's, in a chemist's words)
FAILURE_TABLE_HEADERS = ("id", "name", "SMILES", "kind", "bound on the potential (V vs Li/Li+, nominal)",
                         "predicted at proposal (V vs Li/Li+ +/- 1 sd)", "cause (the journal's)")


def _name_cell(row: dict[str, Any], named: bool) -> str:
    """A table row's name cell, escaped, where its table has a name column: only where the library names some of its
    molecules, as ``labloop log``'s tables (orchestrator/journal/view.py); an empty column read as names lost (a
    newcomer's trial of the example, whose library names none). The CSVs keep the column, for scripts."""
    return f"<td>{_escaped(row.get('name', ''))}</td>" if named else ""


def _failures_table(failures: list[dict[str, Any]]) -> str:
    """The page's section of the failed experiments (:func:`_failures`' rows), every cell escaped; "no failed
    experiments" when there are none, so an empty section is not read as a missing one."""
    if not failures:
        return "<h2>failed experiments</h2><p>no failed experiments</p>"
    esc = _escaped
    named = any(f.get("name") for f in failures)
    head = "".join(f"<th>{esc(name)}</th>" for name in FAILURE_TABLE_HEADERS if named or name != "name")
    body = "".join(
        f"<tr><td>{f['id']}</td>{_name_cell(f, named)}<td><code>{esc(f['smiles'])}</code></td>"
        f"<td>{esc(f['kind'])}</td><td>{_bound_said(f)}</td>"
        f"<td>{'' if f['mu'] is None else esc(_predicted_said(f['mu'], f['sigma']))}{' *' * f['uncalibrated']}</td>"
        f"<td>{esc(f['cause'] or '')}</td></tr>" for f in failures)
    return (f"<h2>failed experiments</h2><table><tr>{head}</tr>{body}</table>\n<p class=\"caption\">kind: the "
            "analysis's flags for a measurement that could not be used (the molecule's failure, which the planner "
            "learns from), else the error that stopped the experiment, or a person's veto. The bound is where the "
            "failed scan says the potential lies, on the nominal scale (E vs the reference electrode + "
            "cell.reference_offset_v), as the planner learnt it and the check of the predictions' uncertainty below "
            "counts it; empty where the scan bounds nothing (no wave at all). * predicted before any measurement "
            f"calibrated the model, on the DFT prior's scale. Every row is in {FAILURES_CSV}.</p>")


def _bound_said(failure: dict[str, Any]) -> str:
    """``above 5.151`` / ``below 2.400`` (V) of a :func:`_failures` row, ``: a hit`` after it where the bound proves
    one (past the threshold), or '' without a bound."""
    hit = ": a hit" if failure.get("hit_by_bound") else ""
    if failure["above_v"] is not None:
        return f"above {failure['above_v']:.3f}{hit}"
    return "" if failure["below_v"] is None else f"below {failure['below_v']:.3f}{hit}"


def _predicted_said(mu: float, sigma: float | None) -> str:
    """``4.512 +/- 0.120`` (V), or the prediction alone without an sd."""
    return f"{mu:.3f}" + ("" if sigma is None else f" +/- {sigma:.3f}")


def _hit_said(experiment: dict[str, Any], hits: bool) -> str:
    """``yes``/``no``: whether ``experiment``'s potential is a hit (the snapshot's ``hit``); '' without a potential,
    for a failed experiment (its potential is no measurement to judge) or where the objective defines no hits
    (``hits`` False)."""
    if not hits or experiment["potential_v"] is None or experiment["status"] != State.DONE:
        return ""
    return "yes" if experiment["hit"] else "no"


def _potential_from(experiment: dict[str, Any], record: dict[str, Any] | None, offset_v: float) -> str:
    """How a measured potential was put on the Li/Li+ scale, in a chemist's words with the value it rests on (empty
    without a potential), as the executor chose (protocols/executor.py ``ProtocolExecutor._outcome``): E vs Fc+/Fc
    measured in the cell by an add_standard step plus ``cell.ferrocene_vs_li_v`` where the lab ``record`` referenced
    it, else the first scan's E1/2 vs the reference electrode plus the nominal ``cell.reference_offset_v``
    (``offset_v``), a value written in the campaign, not measured. Why: a column of both read as one scale ("V vs
    Li/Li+"), and the second is off by however far the electrode sits from its written offset (a PI's audit)."""
    if experiment["potential_v"] is None:
        return ""
    referenced = (record or {}).get("referenced") or {}
    if referenced.get("e_vs_li_v") is None:
        return f"nominal: E1/2 vs {experiment['reference']} + cell.reference_offset_v = {offset_v:g} V"
    standard = referenced.get("standard_name") or "ferrocene"  # a journal from before another could be added
    through = f"cell.ferrocene_vs_li_v = {referenced['ferrocene_vs_li_v']:g} V"
    if standard == "ferrocene":
        return f"vs Fc+/Fc measured in the cell (ferrocene added), converted with {through}"
    return (f"vs Fc+/Fc through {standard} measured in the cell (taken to sit at {referenced['standard_vs_fc_v']:+g} "
            f"V vs Fc+/Fc), converted with {through}")


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def _lab_grade_rows(experiment: dict[str, Any], record: dict[str, Any]) -> list[dict[str, Any]]:
    """The :data:`LAB_GRADE_COLUMNS` rows of one experiment's lab ``record`` (``Journal.lab_record``): one per
    scan rate, the experiment's own values on each."""
    diffusion = record.get("diffusion") or {}
    referenced = record.get("referenced") or {}
    standard = referenced.get("standard") or {}
    blanks = record.get("blanks") or []
    share = record.get("dilution_share")
    spread, rates = _e_half_spread(record)
    common = {
        "id": experiment["id"], "smiles": experiment["smiles"], "status": experiment["status"],
        "simulated": _simulated_said(experiment),
        "ru_ohm": (record.get("ru") or {}).get("ru_ohm"), "diffusion_cm2_s": diffusion.get("diffusion_cm2_s"),
        "diffusion_r_squared": diffusion.get("r_squared"), **assumed_by(diffusion),
        "analyte_mM": record.get("analyte_mm"), "sample_stock_mM": record.get("sample_stock_mm"),
        "sample_ml": record.get("sample_ml"),
        "electrode_area_cm2": record.get("electrode_area_cm2"), "cell_ml": record.get("cell_ml"),
        "cell_held_ml": record.get("cell_held_ml"), "analyte_dilution_pct": _scaled(share, 100),
        "e_half_v_vs_fc": referenced.get("e_vs_fc_v"), "e_half_v_vs_li_via_fc": referenced.get("e_vs_li_v"),
        "e_half_spread_mV": spread, "e_half_rates_n": rates,
        "standard_problem": referenced.get("problem"),
        # the standard's own couple, the lab's check on its electrode and iR: a fast one-electron couple such as
        # ferrocene gives dEp near 57 mV and a ratio near 1 (an electrochemist's trial found them in no output)
        "standard_e_half_v_vs_reference": standard.get("e_half_v"),
        "standard_dep_mV": _scaled(standard.get("dep_v"), 1e3), "standard_ipc_over_ipa": standard.get("ratio"),
        # every blank in order (``contaminated then clean``): the one a clean cured is the cell's history too
        "blank_flags": " then ".join("; ".join(b["result"]["flags"]) or "clean" for b in blanks) or None,
        "purged_min": record.get("purged_minutes"),
    }
    rows = []
    fitted = diffusion.get("scan_rates_v_s")  # the rates D was fitted over: where the couple is reversible
    for scan in record.get("scans") or [{}]:
        analysis = scan.get("analysis") or {}
        rate = scan.get("scan_rate_v_s")
        rows.append({**common, "scan_rate_v_s": rate, "in_diffusion_fit": None if fitted is None else rate in fitted,
                     "ir_compensated_ohm": ((scan.get("voltammogram") or {}).get("params") or {}).get("ir_comp_ohm"),
                     "e_half_v_vs_reference": analysis.get("e_half_v"), "epa_v_vs_reference": analysis.get("epa_v"),
                     "epc_v_vs_reference": analysis.get("epc_v"), "dep_mV": _scaled(analysis.get("dep_v"), 1e3),
                     **rate_constant(scan, diffusion, record.get("ru")),
                     "ipa_uA": _scaled(analysis.get("ipa_a"), 1e6), "ipc_uA": _scaled(analysis.get("ipc_a"), 1e6),
                     "ipc_over_ipa": analysis.get("ratio"), "reversibility": judged_reversibility(analysis),
                     "scan_flags": "; ".join(analysis.get("flags") or [])})
    return rows


def _e_half_spread(record: dict[str, Any] | None) -> tuple[float | None, int]:
    """How far E1/2 moved over a lab ``record``'s scan rates (max - min, mV; None with fewer than two) and how many
    rates gave an E1/2 (0 without a record). A reversible couple's E1/2 does not move with the rate: a spread of tens
    of mV says the reference drifted or iR was left uncorrected (or a slow couple), which no single row shows (a
    chemist's trial); it is the one spread the data give of a measured potential, so the best table shows it too
    (a PI's audit). A single-rate CV gives none."""
    halves = [h for scan in (record or {}).get("scans") or []
              if (h := (scan.get("analysis") or {}).get("e_half_v")) is not None]
    return (1e3 * (max(halves) - min(halves)) if len(halves) > 1 else None), len(halves)


def _spread_said(spread_mv: float | None, rates: int) -> str:
    """A table's cell of :func:`_e_half_spread`: ``1.2 over 4 rates`` (rounded as lab_grade.csv rounds it), or ''."""
    return "" if spread_mv is None else f"{_rounded('e_half_spread_mV', spread_mv)} over {rates} rates"


#: the page's table of lab-grade results, one row per experiment (lab_grade.csv has each rate's on a row of its own):
#: a reviewer found the numbers a chemist reads first in CSV links and the last experiment's plots only. Each header
#: names its unit and, for a potential, its scale
LAB_TABLE_HEADERS = ("id", "SMILES", "status", "E1/2 (V vs Fc+/Fc)", "E1/2 (V vs Li/Li+, through Fc+/Fc)",
                     "\u0394Ep (mV) and reversibility at each scan rate", "k0 (cm/s, Nicholson) at each scan rate",
                     "E1/2 spread over the rates (mV, max - min)",
                     "D (cm\u00b2/s, Randles-Sevcik)", "Ru (\u03a9, EIS)",
                     "iR compensated by the potentiostat (% of Ru)", "blank", "standard")


def _lab_table(rows: list[dict[str, Any]]) -> str:
    """The page's lab-grade table (:data:`LAB_TABLE_HEADERS`) of :func:`_lab_grade_rows`' ``rows``, every cell
    escaped; '' without any (a campaign without lab-grade steps)."""
    if not rows:
        return ""
    by_id: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_id.setdefault(row["id"], []).append(row)
    head = "".join(f"<th>{_escaped(name)}</th>" for name in LAB_TABLE_HEADERS)
    body = "".join("<tr>{}</tr>".format("".join(_lab_cell(cell) for cell in _lab_cells(scans)))
                   for scans in by_id.values())
    return (f"<h2>lab-grade results</h2><table><tr>{head}</tr>{body}</table>\n<p class=\"caption\">E1/2 through "
            "the ferrocene standard added in the same cell; the spread is how far E1/2 moved over the scan rates "
            "(max - min, of the rates that gave one), which a reversible couple's does not: the scatter of the "
            f"experiment's E1/2, also beside the best so far. {_escaped(_d_assumptions(rows))}{_K0_SAID}Every "
            f"rate's numbers are in lab_grade.csv, every scan point by point in voltammograms.csv. {_DIGITS_SAID}</p>")


#: what the digits of the page and the CSVs are worth (an electrochemist's trial: potentials to 0.1 mV, D to 4
#: significant digits, and no uncertainty stated)
_DIGITS_SAID = html.escape(
    "The digits are kept, not claimed: potentials are given to 0.1 mV and other numbers to 4 significant digits so "
    "that nothing is lost to rounding, which is finer than a measurement holds. One filling's E1/2 is good to about "
    "the scan's potential step and its noise (the spread over the rates shows its repeatability, not the error of "
    "another filling); a potential vs Li/Li+ through ferrocene is as good as cell.ferrocene_vs_li_v in this "
    "electrolyte (literature values differ by 0.1-0.3 V between solvents); D is the Randles-Sevcik slope's (r^2 in "
    "lab_grade.csv; on simulated couples 3-5% low where the potentiostat leaves part of the ohmic drop uncompensated, "
    "as the shipped protocol does), k0 Nicholson's within about 20% where a value, and a bound as uncertain as a value "
    "(a referee's dry runs broke 5 of 124 by up to 1.13x). Quote E1/2 to 1 mV, D and k0 to 2 significant "
    "digits, with those uncertainties.")


#: the lab-grade table's caption on its k0 column (instruments/kinetics.py): what a value and a bound mean, and what the
#: method assumes (a newcomer found the column explained nowhere on the page)
_K0_SAID = html.escape(
    f"k0 is Nicholson's, from each rate's dEp (the ohmic drop Ru measured taken out) and D, for D's electrons (n) "
    f"in one step with alpha about 0.5: a value where dEp is {NICHOLSON_RANGE_MV[0]:g}-{NICHOLSON_RANGE_MV[1]:g} mV "
    "at 25 C for one electron (times T / 298.15 K at the cell's temperature, over n), '> x' where dEp "
    "is below that (k0 at least x: the couple reversible at that rate) or where the ohmic drop could widen it (no eis "
    "step measured Ru, or more of the drop was taken out after the scan than that leaves exact), '< x' above it (at "
    "most x); lab_grade.csv's k0_why says which; docs/lab-grade.md, \"k0\". ")


def _d_assumptions(rows: list[dict[str, Any]]) -> str:
    """The caption's sentence on what D assumed (the electrons, the temperature, the concentration), from the rows
    that have a D; '' without any."""
    assumed = sorted({(row["n_electrons"], row["temperature_K"]) for row in rows if row["diffusion_cm2_s"] is not None})
    if not assumed:
        return ""
    said = "; ".join(f"n = {n} {plural(n, 'electron')} at {t:g} K ({round(t - 273.15, 2):g} C)" for n, t in assumed)
    areas = sorted({row["electrode_area_cm2"] for row in rows
                    if row["diffusion_cm2_s"] is not None and row.get("electrode_area_cm2") is not None})
    # the area D was computed with, as a number: a referee found the page say "A" alone, beside a methods line naming
    # a 3 mm disk while D took 0.0314 cm2
    area = f"the electrode area {' and '.join(f'{a:g}' for a in areas)} cm2, " if areas else ""
    return (f"D is the Randles-Sevcik one, ip = 2.6865e5 n^1.5 A C sqrt(D v) (the constant at 25 C, times "
            f"sqrt(298.15 K / T)), with {said}, {area}and the concentration in the cell of lab_grade.csv's analyte_mM, "
            "over the rates where the couple is reversible when two or more are (else every rate, and D then reads "
            "low). ")


def _escaped(text: str) -> str:
    """``text`` for the page: its control characters but newlines (ESC, BEL, a right-to-left override) written as
    escapes (:func:`labloop.core.text.controls_escaped`), then HTML-escaped. Why: a device's
    error message reached the page raw, where an override reversed the text around it (a security review)."""
    return html.escape("\n".join(controls_escaped(line) for line in text.split("\n")))


def _lab_cell(text: str) -> str:
    """A cell of the lab-grade table, escaped; one of several lines (dEp at each rate) a line each, unwrapped: run
    together, they wrapped as "62 at / 0.1; 64"."""
    lines = _escaped(text).split("\n")
    return f'<td style="white-space:nowrap">{"<br>".join(lines)}</td>' if len(lines) > 1 else f"<td>{lines[0]}</td>"


def _lab_cells(scans: list[dict[str, Any]]) -> list[str]:
    """One experiment's cells of the lab-grade table, from its lab_grade.csv rows (one per scan rate), each number
    rounded as that CSV rounds it (:func:`_rounded`), so the page and the CSV agree; '' for a value the analysis did
    not find, as in the CSV."""
    first = scans[0]
    ru, compensated = first["ru_ohm"], first["ir_compensated_ohm"]
    return [
        str(first["id"]), first["smiles"], first["status"],
        *(_rounded(column, first[column]) for column in ("e_half_v_vs_fc", "e_half_v_vs_li_via_fc")),
        # each rate's call beside its dEp: the page had no reversibility, only the CSVs (an electrochemist's trial)
        "\n".join(f"{_number(s['scan_rate_v_s'])} V/s: {_rounded('dep_mV', s['dep_mV']) or 'none'}"
                  + (f" ({s['reversibility']})" if s["reversibility"] else "") for s in scans
                  if s["scan_rate_v_s"] is not None),
        "\n".join(f"{_number(s['scan_rate_v_s'])} V/s: {RateConstant(s['k0_cm_s'], s['k0_side']).said()}"
                  for s in scans if s["k0_cm_s"] is not None),
        _spread_said(first["e_half_spread_mV"], first["e_half_rates_n"]),
        _rounded("diffusion_cm2_s", first["diffusion_cm2_s"]) + _fitted_over(scans),
        _rounded("ru_ohm", first["ru_ohm"]),
        _rounded("ir_compensated_pct", 100 * compensated / ru if ru and compensated is not None else None),
        # a standard without a problem that referenced no analyte (the analyte showed no couple of its own) was found
        # alone; a journal from before said such a standard "not found" (its problem)
        first["blank_flags"] or "", first["standard_problem"] or ("found" if first["e_half_v_vs_fc"] is not None else
                                                                 _found_alone(first["standard_e_half_v_vs_reference"])),
    ]


def _fitted_over(scans: list[dict[str, Any]]) -> str:
    """The lab-grade table's note beside D fitted over some of the experiment's rates (those where the couple is
    reversible: instruments/cv_analysis.py reversible_rates), ``\nfrom 0.1, 0.2 V/s``; over every rate though the
    couple was not reversible at two of them, ``\nfrom every rate, not reversible at two: reads low`` (the page
    showed such a D as it showed a reversible couple's: a newcomer's read); '' for a D of a couple reversible at
    every rate, or none."""
    if not scans[0]["diffusion_cm2_s"]:
        return ""
    if any(s["in_diffusion_fit"] is False for s in scans):
        fitted = [s["scan_rate_v_s"] for s in scans if s["in_diffusion_fit"]]
        return f"\nfrom {', '.join(_number(rate) for rate in fitted)} V/s"
    reversible = sum(s["reversibility"] == "reversible" for s in scans)
    return "" if reversible == len(scans) else "\nfrom every rate, not reversible at two: reads low"


def _found_alone(standard_v: float | None) -> str:
    """The lab-grade table's word for a standard found in an experiment that gave it no analyte to reference: where
    (V vs the reference electrode, as the standard's scan measured it), or '' where there was none."""
    return "" if standard_v is None else f"found, at {standard_v:+.3f} V vs the reference; no analyte couple"


def _rounded(column: str, value: float | None) -> str:
    """A number of the page's lab-grade table as the CSVs show one of ``column`` (:func:`_shown`), or '' for none."""
    return "" if value is None else str(_shown(column, value))


def _csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]],
         headers: dict[str, str] | None = None) -> None:
    """``rows``' ``columns`` as CSV, each headed by its name or its entry in ``headers``."""
    with _writing(path), path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([(headers or {}).get(c, c) for c in columns])
        for row in rows:
            writer.writerow([_shown(c, row[c]) for c in columns])


#: decimals of a potential in V in the CSVs (by its column in the rows: measured, predicted and its sd, the
#: lab-grade potentials): 0.1 mV, finer than a scan resolves (its potential step is 1-5 mV) or a reference
#: electrode holds; ``dep_mV`` and the E1/2 spread are in mV, so 1 decimal is the same 0.1 mV (the spread's 4
#: significant digits said 0.5112 mV); ``temperature_K`` to 0.01 K, as 298.15 K is written (4 digits made it 298.1).
#: The journal keeps every value whole
DECIMALS = {**dict.fromkeys(("potential_v", "above_v", "below_v", "e_half_v", "mu", "sigma", "e_half_v_vs_reference",
                             "epa_v_vs_reference", "epc_v_vs_reference", "e_half_v_vs_fc", "e_half_v_vs_li_via_fc",
                             "standard_e_half_v_vs_reference"), 4),
            **dict.fromkeys(("dep_mV", "standard_dep_mV", "e_half_spread_mV"), 1), "temperature_K": 2}
#: significant digits of every other real number in the CSVs (conditions, currents, D, Ru, acquisition values):
#: a planner draws a condition from a continuous range (``scan_rate_v_s=0.055173262610286274``), an analysis
#: fits a current to 17 digits, and 4 (``0.05517``) are finer than any rig sets or a potentiostat measures
SIGNIFICANT_DIGITS = 4


def _shown(column: str, value: Any) -> Any:
    """A CSV cell of ``column``: flags and conditions joined, a real number rounded (:data:`DECIMALS`,
    :data:`SIGNIFICANT_DIGITS`), and journal text that a spreadsheet would read as a formula quoted."""
    if column == "flags":
        value = "; ".join(value)
    elif column == "retried":  # what the drivers repeated after faults: potentiostat: InstrumentTimeout x1
        value = "; ".join(f"{name}: {', '.join(f'{kind} x{n}' for kind, n in kinds.items())}"
                          for name, kinds in (value or {}).items())
    elif column in CONDITION_COLUMNS:
        value = ";".join(f"{k}={_number(v)}" for k, v in value.items())
    elif isinstance(value, float):
        return _number(value, DECIMALS.get(column))
    return spreadsheet_safe(value)


def _number(value: Any, decimals: int | None = None) -> Any:
    """``value`` as the CSVs show it: ``decimals`` decimals (no ``-0.0000``) or :data:`SIGNIFICANT_DIGITS`
    significant digits for a real number, and each of a list's (a cv's ``scan_rates_v_s``); others as they are."""
    if isinstance(value, list):
        return f"[{', '.join(str(_number(v)) for v in value)}]"
    if not isinstance(value, float):
        return value
    return f"{round(value, decimals) + 0.0:.{decimals}f}" if decimals is not None else f"{value:.{SIGNIFICANT_DIGITS}g}"


def _raw_voltammograms(path: Path, journal: Journal, experiments: list[dict[str, Any]],
                       records: dict[int, dict[str, Any]]) -> None:
    """:data:`VOLTAMMOGRAMS_CSV`: each experiment's voltammograms of its last attempt (a failed one's too: what
    the instrument saw is how a failure is judged), its lab record's among them (:func:`_scans_of`), read one
    experiment at a time; ``overload`` is 1 where the current hit the current range (the value is the clipped
    reading)."""
    with _writing(path), path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(VOLTAMMOGRAM_COLUMNS)
        for e in experiments:
            scans = [(role, v.to_dict()) for role, v in _scans_of(partial(journal.voltammograms, e["id"]),
                                                                   records.get(e["id"]))]
            scans += [(REJECTED_ROLE, stored) for _, stored in journal.rejected_scans(e["id"])]
            for scan, (role, v) in enumerate(scans, start=1):
                params = v["params"]
                head = [e["id"], spreadsheet_safe(e["smiles"]), e["status"], scan, spreadsheet_safe(role),
                        _number(params["scan_rate_v_s"]), spreadsheet_safe(v["reference"]),
                        _number(params["ir_comp_ohm"])]
                overload = set(v.get("overload_index") or ())
                # 6 significant digits: finer than a potentiostat's ADC, and a campaign's scans stay a few MB; a
                # rejected scan's non-finite point (stored as null) is written nan
                writer.writerows([*head, *(f"{_nan(x):.6g}" for x in (t, p, i)), int(k in overload),
                                  _simulated_said(e)]
                                 for k, (t, p, i) in enumerate(zip(v["time_s"], v["potential_v"], v["current_a"],
                                                                   strict=True)))


def _nan(value: float | None) -> float:
    """A stored point's value, NaN where the journal keeps null (a rejected scan's non-finite point)."""
    return math.nan if value is None else value


def _scans_of(raw: Callable[[], list[Voltammogram]], record: dict[str, Any] | None) -> list[tuple[str, Voltammogram]]:
    """Every voltammogram of an experiment's attempt with its role (:data:`ANALYTE`, :data:`BLANK`, ``analyte +``
    the standard), in the order the protocol runs them: the blanks, the cv's scans (one per rate), the standard's.
    With a lab record its scans replace ``raw()`` (the journal's raw data, read only without them), which holds the
    first of them only (protocols/executor.py: the cv step returns its first rate's scan, which the runner journals
    as the raw one). An attempt that ended without a measurement (failed, interrupted) has the record of what it
    measured so far (orchestrator/loop/runner.py ``Runner._journal_ended_early``): blanks alone when it ended before
    its cv (a blank that stopped the run: what the person it stopped for judges the cell by), the rates its cv ran
    before it failed, which the journal's raw data then lacks; they are how the failure is judged."""
    record = record or {}
    blanks = [(BLANK, Voltammogram.from_dict(b["voltammogram"])) for b in record.get("blanks") or []]
    if not record.get("scans"):
        return [*blanks, *((ANALYTE, v) for v in raw())]
    standard = record.get("standard_scan")
    name = (record.get("referenced") or {}).get("standard_name") or "ferrocene"
    return [*blanks, *((ANALYTE, Voltammogram.from_dict(s["voltammogram"])) for s in record["scans"]),
            *([(f"{ANALYTE} + {name}", Voltammogram.from_dict(standard))] if standard else [])]


def _figure(title: str, xlabel: str, ylabel: str) -> tuple[Any, Any]:
    """A plot's figure and axes, whose title and labels wrap at the figure's edge: a reference electrode named
    as a lab names it (``Ag/Ag+ (0.01 M AgNO3, MeCN)``) cut the potential axis's label off mid-word (a chemist's
    trial)."""
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    for text in (ax.title, ax.xaxis.label, ax.yaxis.label):
        text.set_wrap(True)
    return fig, ax


def _save(fig: Any, ax: Any, path: Path, empty: str | None, stamp: str) -> None:
    """Save ``fig`` to ``path``: ``empty`` said on ``ax`` when it has nothing to plot, ``stamp`` (:func:`_stamp`) in
    its lower right corner, so a figure taken out of the page still says it shows simulated data."""
    if empty is not None:
        ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes, color="grey")
    fig.tight_layout()
    if stamp:  # after the layout, in the figure's margin: it moves nothing the layout placed
        fig.text(0.995, 0.005, stamp, ha="right", va="bottom", fontsize=7, color="#b00", alpha=0.8)
    try:
        with _writing(path):
            fig.savefig(path)
    finally:
        plt.close(fig)


def _best_so_far(path: Path, done: list[dict[str, Any]], objective: Objective, stamp: str) -> None:
    fig, ax = _figure("best so far", "n-th measured experiment (not its id)", "potential (V vs Li/Li+)")
    if objective.window_v is not None:
        ax.axhspan(*objective.window_v, color="tab:green", alpha=0.2, label="target window")
    numbers = range(1, len(done) + 1)
    ax.plot(numbers, [e["potential_v"] for e in done], "o", color="tab:grey", ms=3, label="measured")
    ax.step(numbers, best_so_far(done, objective), where="post", color="tab:blue", label="best so far")
    if done:
        ax.legend(loc="best", fontsize=8)
    _save(fig, ax, path, None if done else "no measurement yet", stamp)


def _parity(path: Path, done: list[dict[str, Any]], stamp: str) -> None:
    fig, ax = _figure("measured vs predicted", "predicted (V vs Li/Li+; bars +/-1 sd)", "measured (V vs Li/Li+)")
    pairs = parity(done)
    if pairs:
        for before, style in ((False, {"fmt": "o", "color": "tab:blue", "label": "calibrated"}),
                              (True, {"fmt": "o", "color": "tab:grey", "mfc": "none",
                                      "label": "before any measurement (uncalibrated)"})):
            shown = [p for p in pairs if p["uncalibrated"] is before]
            if shown:
                ax.errorbar([p["mu"] for p in shown], [p["measured"] for p in shown],
                            xerr=[p["sigma"] for p in shown], ms=3, alpha=0.7, **style)
        values = [p["mu"] for p in pairs] + [p["measured"] for p in pairs]
        ax.plot([min(values), max(values)], [min(values), max(values)], "k--", lw=1)
        if any(p["uncalibrated"] for p in pairs):
            ax.legend(loc="best", fontsize=8)
    _save(fig, ax, path, None if pairs else "no prediction (campaign without a surrogate)", stamp)


def _prediction_error(path: Path, done: list[dict[str, Any]], stamp: str) -> None:
    """How far each proposal's prediction was from its measurement, in the order measured: with feedback
    the error falls as measurements accumulate; an open-loop screen's stays where the prior put it."""
    fig, ax = _figure("prediction error at proposal time", "n-th measured experiment (not its id)",
                      "|measured - predicted| (V)")
    errors, running = prediction_errors(done)
    if errors:
        numbers = range(1, len(errors) + 1)
        ax.plot(numbers, errors, "o", color="tab:grey", ms=3, label="each experiment")
        ax.plot(numbers, running, color="tab:red", label=f"mean of the last {ERROR_WINDOW}")
        ax.legend(loc="best", fontsize=8)
    _save(fig, ax, path, None if errors else "no prediction to compare yet", stamp)


def _potential_axis(references: Iterable[str]) -> str:
    """The potential axis of voltammograms, named by their reference electrode as the CSVs' reference_electrode
    column names it (the potentiostat's ``reference`` option, e.g. Ag/Ag+): "the cell reference" left a chemist to
    guess which electrode. The potentials are as applied: the ohmic drop the potentiostat did not compensate is
    not subtracted, which the axis says (a reviewer took them for the analysis's iR-corrected ones). Shown as text
    (a ``$`` would start matplotlib's math)."""
    names = sorted({printable(name) for name in references})
    scale = " / ".join(names) if names else "the cell's reference"
    return f"E (V vs {scale}, as applied: uncompensated iR not subtracted)".replace("$", r"\$")


def _li_axis(ax: Any, offset_v: float) -> None:
    """A second potential axis on top, vs Li/Li+ by ``cell.reference_offset_v`` (``offset_v``; E_Li = E + offset,
    instruments/cv_analysis.py's to_li_scale), the scale of every number of the report: a reviewer read the scans on
    the reference's scale beside numbers vs Li/Li+. Named by the offset, as a ferrocene-referenced potential may
    differ from it by the reference electrode's drift."""
    top = ax.secondary_xaxis("top", functions=(lambda e: to_li_scale(e, offset_v), lambda e: e - offset_v))
    top.set_xlabel(f"E (V vs Li/Li+, by cell.reference_offset_v = {offset_v:g} V)")


def _scan_label(v: Voltammogram, prefix: str) -> str:
    """A legend entry of a scan: ``prefix``, its rate (peak currents grow as its square root, so scans at several
    rates differ in height: a reviewer saw 5x with no rate said), to 4 significant digits as the CSVs give it, and what
    the potentiostat compensated of Ru."""
    compensated = f", {v.params.ir_comp_ohm:.0f} ohm iR comp." if v.params.ir_comp_ohm else ""
    return f"{prefix}{_number(v.params.scan_rate_v_s)} V/s{compensated}"


def _voltammograms(path: Path, journal: Journal, recent: list[dict[str, Any]], offset_v: float, stamp: str) -> None:
    fig, ax = _figure("recent voltammograms", "", "i (uA, anodic +)")
    references = []
    for e in recent:
        for v in journal.voltammograms(e["id"]):
            ax.plot(v.potential_v, 1e6 * v.current_a, lw=1, label=_scan_label(v, f"#{e['id']}, "))
            references.append(v.reference)
    ax.set_xlabel(_potential_axis(references))
    _li_axis(ax, offset_v)
    if recent:
        ax.legend(loc="best", fontsize=7)
    _save(fig, ax, path, None if recent else "no voltammogram yet", stamp)


#: how many times the longer range of a Nyquist plot's axes may be the shorter's and keep equal scales (an arc reads
#: as an arc): a blocking electrode's capacitive line (Z' near 500 ohm, -Z'' up to 11 kohm) drawn to equal scales
#: squashed Z' to a sliver whose ticks ran together ("0500": a reviewer's trial)
EQUAL_SCALES_WITHIN = 3.0


def _nyquist(path: Path, lab: tuple[dict[str, Any], dict[str, Any]], stamp: str) -> None:
    """The latest impedance spectrum, -Z'' against Z': whole on the left, and on the right the high-frequency
    points Ru was fitted to (instruments/impedance.py's fit_ru), with Ru marked where the fit meets the axis."""
    experiment, record = lab
    fig, (whole, near) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    fig.suptitle(f"impedance, experiment {experiment['id']}")
    eis, ru = record.get("eis"), record.get("ru")
    if eis:
        real, imag = eis["z_real_ohm"], [-z for z in eis["z_imag_ohm"]]
        whole.set(title="whole spectrum", xlabel="Z' (ohm)", ylabel="-Z'' (ohm)")
        whole.plot(real, imag, "o-", ms=3)
        _nyquist_scales(whole, real, imag)
    if eis and ru:
        _fitted_points(near, eis, ru)
    else:
        near.set_axis_off()
    _save(fig, whole, path, None if eis else "no impedance measured", stamp)


def _nyquist_scales(ax: Any, real: list[float], imag: list[float]) -> None:
    """Both axes from 0 (where Ru is read), to equal scales only while their ranges are within
    :data:`EQUAL_SCALES_WITHIN` of each other; at most 5 ticks on Z' (a half-width plot's ran together)."""
    ax.set_xlim(left=min(0.0, *real))
    ax.set_ylim(bottom=min(0.0, *imag))
    ranges = sorted((max(real) - min(0.0, *real), max(imag) - min(0.0, *imag)))
    if ranges[0] > 0 and ranges[1] / ranges[0] <= EQUAL_SCALES_WITHIN:
        ax.set_aspect("equal", adjustable="box")
    ax.xaxis.set_major_locator(MaxNLocator(5))


def _fitted_points(ax: Any, eis: dict[str, Any], ru: dict[str, Any]) -> None:
    """The ``ru["n_points"]`` highest-frequency points the fit used (overloaded ones it left out), on scales of
    their own, and Ru on the real axis: where the intercept is read, which the whole spectrum's scale hides."""
    left_out = set(eis.get("overload_index") or [])
    order = sorted((i for i in range(len(eis["frequency_hz"])) if i not in left_out),
                   key=lambda i: eis["frequency_hz"][i], reverse=True)[:ru["n_points"]]
    ax.set(title=f"high frequency: the {len(order)} points Ru was fitted to", xlabel="Z' (ohm)", ylabel="-Z'' (ohm)")
    ax.plot([eis["z_real_ohm"][i] for i in order], [-eis["z_imag_ohm"][i] for i in order], "o-", ms=3)
    ax.plot([ru["ru_ohm"]], [0.0], "D", color="tab:red", label=f"Ru {ru['ru_ohm']:.0f} ohm (fit)")
    ax.axvline(ru["ru_ohm"], color="tab:red", ls="--", lw=0.8)
    ax.axhline(0.0, color="grey", lw=0.5)
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.legend(fontsize=8)


def _scan_rates(path: Path, lab: tuple[dict[str, Any], dict[str, Any]], offset_v: float, stamp: str) -> None:
    """The latest experiment's CVs, one per scan rate, overlaid (iR partly compensated on the device: the legend
    says how much)."""
    experiment, record = lab
    fig, ax = _figure(f"CV per scan rate, experiment {experiment['id']}",
                      _potential_axis(scan["voltammogram"]["reference"] for scan in record.get("scans", [])),
                      "i (uA, anodic +)")
    for scan in record.get("scans", []):
        v = Voltammogram.from_dict(scan["voltammogram"])
        ax.plot(v.potential_v, 1e6 * v.current_a, lw=0.8, label=_scan_label(v, ""))
    _li_axis(ax, offset_v)
    if record.get("scans"):
        ax.legend(fontsize=8)
    _save(fig, ax, path, None if record.get("scans") else "one scan rate only", stamp)


def _versus_ferrocene(path: Path, labs: list[tuple[dict[str, Any], dict[str, Any]]], offset_v: float,
                      stamp: str) -> None:
    """E1/2 against the ferrocene standard in the same scan, and against the cell's reference electrode
    (plot_data.versus_ferrocene says why both), by experiment id as the journal's tables show them."""
    # a title within the figure's width (the longer one was cut), ids as whole numbers, the legend outside the
    # points (it covered one): a chemist's trial
    fig, ax = _figure("E1/2 vs Li/Li+, through Fc+/Fc and the reference", "experiment id", "E1/2 (V vs Li/Li+)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    rows = versus_ferrocene(labs, offset_v)
    if rows:
        ids = [r["id"] for r in rows]
        ax.plot(ids, [r["vs_ferrocene_v"] for r in rows], "o", ms=4, label="through Fc+/Fc (cell.ferrocene_vs_li_v)")
        ax.plot(ids, [r["vs_reference_v"] for r in rows], "x", ms=4,
                label="through the cell reference (cell.reference_offset_v)")
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=1, frameon=False)
    _save(fig, ax, path, None if rows else "no ferrocene standard measured", stamp)


def _randles_sevcik(path: Path, labs: list[tuple[dict[str, Any], dict[str, Any]]], stamp: str) -> None:
    """|ip| against sqrt(v) of the last experiment with a D (plot_data.randles_sevcik_points), the fitted rates filled,
    the others open, and the fit's line through the origin."""
    fig, ax = _figure("Randles-Sevcik", "sqrt(scan rate) (sqrt(V/s))", "|ip| of the forward peak (uA)")
    plot = randles_sevcik_points(labs)
    if plot is not None:
        low = " (reads low: fitted at rates the couple is not reversible at)" if plot["reads_low"] else ""
        ax.set_title(f"Randles-Sevcik, experiment {plot['id']}: D {plot['D']:.1e} cm\u00b2/s{low}")
        for fitted, label in ((True, "fitted"), (False, "left out (not reversible at that rate)")):
            shown = [p for p in plot["points"] if p["fitted"] is fitted]
            if shown:
                ax.plot([p["sqrt_rate"] for p in shown], [p["current_ua"] for p in shown], "o", ms=6, label=label,
                        color="tab:blue", fillstyle="full" if fitted else "none", ls="none")
        top = max(p["sqrt_rate"] for p in plot["points"])
        ax.plot([0.0, top], [0.0, plot["slope"] * top], "k--", lw=1, label="fit through the origin")
        ax.set_xlim(left=0.0)
        ax.set_ylim(bottom=0.0)
        ax.legend(loc="upper left", fontsize=8)
    _save(fig, ax, path, None if plot is not None else "no D (several scan rates and a concentration give one)", stamp)


#: what each acquisition's value is, for the plot's axis (a PI's trial: "acquisition" alone said neither what nor in
#: what unit)
ACQUISITION_AXIS = {"window_probability": "P(in the objective's window)", "ei": "expected improvement (V)",
                    "pi": "P(improvement)", "lcb": "optimistic confidence bound (V, higher is chosen)"}


def _acquisition(path: Path, experiments: list[dict[str, Any]], config: dict[str, Any], objective: Objective
                 , stamp: str) -> None:
    planner = Planner.model_validate(config.get("planner") or {})
    axis = ACQUISITION_AXIS.get(planner.acquisition_for(objective.goal), "acquisition") \
        if planner.kind == "bayes" else "acquisition"
    fig, ax = _figure("acquisition value of each proposal", "experiment id", axis)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    scored = acquisition(experiments)
    ax.plot([a["id"] for a in scored], [a["acquisition"] for a in scored], "o-", ms=3)
    planner = experiments[0]["planner"] if experiments else None
    _save(fig, ax, path, None if scored else f"no acquisition values (planner {planner or 'none'} has none)", stamp)


def _coefficients(coefficients: dict[str, float] | None) -> str:
    return "" if not coefficients else ", ".join(f"{name} {value:+.3f}" for name, value in coefficients.items())


def _per_output(values: object, form: str | None = None) -> str:
    """A number per model output (``measured 0.064, prior 1.717``: volts, or ``form``), or '' without any."""
    if not isinstance(values, dict):
        return ""
    return ", ".join(f"{name} {_volts(v) if form is None else form.format(v)}" for name, v in values.items())


def _bounds(n: object) -> str:
    """`` + 2 bounds`` beside a calibration's measurements: failed scans that bounded a potential (none: '')."""
    return f" + {n} {plural(n, 'bound')}" if isinstance(n, int) and n else ""


def _interval_said(check: dict[str, Any] | None) -> str:
    """The report's sentence on :func:`interval_check`: the count within against the middle 95% of what a right sd
    gives for that many (the binomial's, exactly), so a few predictions are not over-read. When every count is in
    that middle (one prediction), it says there are too few to judge by: the normal approximation it used said
    "where a right sd puts 1-1 of 1", and called one measurement outside its interval, which a right sd gives
    1 time in 20, an sd too small (a chemist's trial). It says what was left out and why, and how many failed
    experiments' bounds were counted (a PI's audit read "27 of 30" that held the first batch's +/-2 V predictions,
    which cannot miss, and left out a failure whose bound lay 3 sd beyond its prediction)."""
    if check is None:
        return "No measured experiment had a prediction with a standard deviation yet."
    n, within, level = check["n"], check["within"], check["level"]
    left_out = _left_out(check)
    if n == 0:
        return f"No prediction calibrated on a measurement has been checked yet.{left_out}"
    low, high = (int(binom.ppf(q, n, level)) for q in ((1 - level) / 2, (1 + level) / 2))
    counted = plural(n, "calibrated prediction")
    interval = (f"lay within the {100 * level:.0f}% interval of {plural(n, 'its', 'their')} prediction at proposal "
                "time (predicted +/- 1.96 sd)")
    rms = ("" if check["rms_z"] is None else
           f" The root mean square of (measured - predicted) / sd over the {check['n_measured']} measured is "
           f"{check['rms_z']:.2f} (about 1 if the sd is right).")
    measured = f"{check['n_measured']} {'was' if check['n_measured'] == 1 else 'were'} measured"
    if check["bounds"] == 1:  # before the rms, which the measured alone have
        where = "beyond the interval" if check["bounds_outside"] else "within it"
        rms = f" Of the {n}, {measured} and 1 failed with a bound on the potential, which lay {where}.{rms}"
    elif check["bounds"]:
        outside = {0: "none of which", check["bounds"]: "all of which"}.get(check["bounds_outside"],
                                                                             f"{check['bounds_outside']} of these")
        rms = (f" Of the {n}, {measured} and {check['bounds']} failed with a bound on the potential, "
               f"{outside} lay beyond the interval.{rms}")
    if low == 0 and high == n:
        return (f"{within} of {n} {counted} {interval}: too few to judge the sd by, as a right sd leaves 1 in "
                f"{round(1 / (1 - level))} outside.{rms}{left_out}")
    verdict = ("too small: the errors were larger than it said" if within < low else
               "too large: the errors were smaller than it said" if within > high else "consistent with them")
    return (f"{within} of {n} {counted} ({100 * within / n:.0f}%) {interval}, where a right sd puts {low}-{high} of "
            f"{n}: the sd was {verdict}.{rms}{left_out}" + (f" {OPTIMISTIC_SD}" if within < low else ""))


def _model_now(calibrations: list[dict[str, Any]], objective: dict[str, Any]) -> str:
    """One line on whether the model can place a molecule within the objective's window now: the last calibration's
    leave-one-out RMSE (orchestrator/learning/learner.py journals it) beside the window's width. Why: the page gave
    the RMSE per calibration deep in a table, and a reader could not tell that an error of 0.26 V against a 0.10 V
    window leaves the planner guessing within it (a PI's audit)."""
    last = next((c for c in reversed(calibrations) if c.get("loo_rmse_v") is not None), None)
    if last is None:
        return "model now: no calibration on measurements yet."
    rmse = last["loo_rmse_v"]
    said = (f"model now: the last calibration (on {last['n_measurements']} "
            f"{plural(last['n_measurements'], 'measurement')}) predicts a measurement left out of it to "
            f"{rmse:.3f} V (leave-one-out RMSE)")
    if objective.get("window_v") is None:
        return f"{said}."
    low, high = objective["window_v"]
    return f"{said}, beside the objective window's width of {high - low:.3f} V ({rmse / (high - low):.1f} times it)."


def _left_out(check: dict[str, Any]) -> str:
    """What :func:`interval_check` left out, and why, as sentences (each with its leading space); '' for nothing."""
    said = ""
    if n := check["uncalibrated"]:
        said += (f" Left out: {n} {plural(n, 'prediction')} made before any measurement calibrated the model (the "
                 "first batch, on the DFT prior's scale, whose sd spans that scale's unknown offset, so no measurement "
                 "can miss it).")
    if n := check["unbounded"]:
        said += (f" Left out: {n} failed {plural(n, 'experiment')} whose scan bounds nothing (no peak: the "
                 "potential may lie on either side of the window scanned).")
    return said


#: what a too small sd at proposal time means, and why it is expected in part: the example's report said "too small"
#: with nothing more, which a newcomer read as a fault (a trial)
OPTIMISTIC_SD = ("That is expected in part: a planner proposes the candidates whose predictions look best, and among "
                 "many, those whose sd is underestimated look best (the optimiser's curse: bench/RESULTS.md measured "
                 "the calibrated sd about 15% too small at proposal time, while it described the measured molecules "
                 "themselves, left out one at a time, to within a few percent). The chances of a hit the planner "
                 "ranked by were optimistic by as much; the calibration refits the sd on every measurement, but this "
                 "selection stays with any planner that ranks by the prediction.")


#: what the prior output is made of, by the campaign's quantity (TARGET_OF's targets), in a chemist's words
ENERGY_OF = {"ie_ev": "ionisation energy", "ea_ev": "electron affinity"}


def _outputs_said(quantity: str) -> str:
    """The report's words for the two network outputs its tables name (``prior``, ``measured``: models.heads in
    orchestrator/learning/models.py): an electrochemist read ``prior 1.695`` as nothing (a chemist's trial)."""
    target = TARGET_OF[quantity]
    return (f"&ldquo;prior&rdquo; is the network's gas-phase DFT {ENERGY_OF[target]} turned into a potential by the "
            f"fixed rule E = {rule_of(target)} V vs Li/Li+, which leaves out solvation and the DFT method's bias, so "
            "its error before calibration is mostly that systematic shift, which the calibration learns; "
            "&ldquo;measured&rdquo; is a retrained network's own prediction of the measured potentials")


def _best_table(snap: dict[str, Any], records: dict[int, dict[str, Any]], offset_v: float) -> str:
    """The page's best-so-far section, every cell escaped: each molecule's potential, whether it is a hit (where the
    objective defines hits, with the legend), how far its E1/2 moved over the scan rates (:func:`_e_half_spread`,
    where a cv of several rates gave one), and the scale it rests on (:func:`_potential_from`, as measurements.csv's
    ``potential_from`` says it), from its lab record in ``records``."""
    esc = _escaped
    hits_defined = snap["progress"]["hits"] is not None
    spreads = [_spread_said(*_e_half_spread(records.get(e["id"]))) for e in snap["best"]]
    spread = any(spreads)  # a column only where a cv of several rates gave one: a single rate's gives none
    named = any(e.get("name") for e in snap["best"])
    rows = "".join(f"<tr><td>{e['id']}</td>{_name_cell(e, named)}<td><code>{esc(e['smiles'])}</code></td>"
                   f"<td>{e['potential_v']:.3f}</td>" + (f"<td>{_hit_said(e, True)}</td>" if hits_defined else "")
                   + (f"<td>{esc(said)}</td>" if spread else "")
                   + f"<td>{esc(_potential_from(e, records.get(e['id']), offset_v))}</td></tr>"
                   for e, said in zip(snap["best"], spreads, strict=True))
    spread_said = ("E1/2 spread: how far the analyte's E1/2 moved over the cv's scan rates (max - min, of the rates "
                   "that gave one), the scatter of this experiment's E1/2, not the uncertainty of the referencing "
                   "(lab_grade.csv has each rate's). " if spread else "")
    hit_legend = (f"hit: yes when the potential meets the objective "
                  f"({esc(describe_objective(snap['campaign']['objective']))}); a &ldquo;no&rdquo; is ranked here as "
                  "nearest to it but is not a hit. " if hits_defined else "")
    measured = snap["progress"]["counts"]["done"]
    # the first BEST_SHOWN of the done ones: a page of 6 hits listed 5 with nothing saying more were (a referee's trial)
    hits = snap["progress"]["hits"]
    shown = ""
    if measured > len(snap["best"]):
        where = (f"{hits} {plural(hits, 'hit')} in all: measurements.csv's hit column says which" if hits_defined
                 else "measurements.csv has every one")
        shown = f"The best {len(snap['best'])} of the {measured} measured experiments ({where}). "
    return (f"<h2>best so far</h2><table><tr><th>id</th>{'<th>name</th>' * named}<th>SMILES</th><th>V vs Li/Li+</th>\n"
            f"{'<th>hit</th>' * hits_defined}{'<th>E1/2 spread over the scan rates (mV)</th>' * spread}"
            f"<th>how it was put on the Li/Li+ scale</th></tr>\n{rows}</table>\n"
            f'<p class="caption">{shown}{hit_legend}{spread_said}The scale: a potential referenced to a standard '
            "measured in "
            "the same cell does not depend on where the reference electrode sits; a nominal one is as right as "
            "cell.reference_offset_v, a value written in the campaign file.</p>")


def _html(snap: dict[str, Any], calibrations: list[dict[str, Any]], folder: Path, best: str, lab_table: str,
          check: dict[str, Any] | None, provenance: str, failures: str, cell: str, setup: str) -> str:
    """The report's page; ``best``: :func:`_best_table`'s, ``lab_table``: :func:`_lab_table`'s, ``provenance``:
    :func:`_provenance`'s, ``failures``: :func:`_failures_table`'s, ``cell``: :func:`_cell_said`'s, ``setup``:
    :func:`_setup_said`'s, each already escaped; ``check``: :func:`interval_check`'s."""
    campaign, progress = snap["campaign"], snap["progress"]
    simulated = f" ({_stamp(campaign['runs'])})" if campaign["runs"]["dry"] else ""  # in a printout's page header too
    outputs = _outputs_said(campaign["objective"]["quantity"])
    counts = ", ".join(f"{state} {n}" for state, n in counts_apart(progress).items() if n or state != "vetoed")
    esc = _escaped
    models = "".join(f"<tr><td>{m['version']}{' (pruned)' if m['pruned'] else ''}</td><td>{esc(m['created_at'])}</td>"
                     f"<td>{m['n_train']}</td>"
                     f"<td>{m['metrics'].get('n_measurements', '')}</td>"
                     f"<td>{_volts(m['metrics'].get('measured_fit_mae_v'))}</td>"
                     f"<td>{esc(_per_output(m['metrics'].get('out_of_sample_mae_v')))}</td></tr>"
                     for m in snap["models"])
    calibration = "".join(
        f"<tr><td>{c.get('model_version', '')}</td><td>{esc(str(c.get('head', 'prior')))}</td>"
        f"<td>{esc(_per_output(c.get('head_loo_log_likelihood'), '{:.2f}'))}</td>"
        f"<td>{esc(str(c.get('learner', '')))}</td><td>{c['n_measurements']}{_bounds(c.get('n_bounds'))}</td>"
        f"<td>{_volts(c.get('recent_prediction_mae_v'))}</td><td>{_volts(c.get('fit_mae_v'))}</td>"
        f"<td>{_volts(c.get('intercept_v'))}</td><td>{esc(_coefficients(c.get('coefficients_v')))}</td>"
        f"<td>{esc(_per_output(c.get('size_term_v')))}</td><td>{esc(c['journalled_at'])}</td></tr>"
        for c in calibrations)
    shown = [*PLOTS, *(name for name in LAB_PLOTS if (folder / name).exists())]
    plots = "".join(f'<figure><img src="{name}" alt="{name}"><figcaption>{esc(CAPTIONS[name])}</figcaption></figure>'
                    for name in shown)
    hits = "" if progress["hits"] is None else f"; hits: {progress['hits']}" + (
        f" ({hits_by_bound_said(progress['hits_by_bound'])}; the failed experiments below say which)"
        if progress.get("hits_by_bound") else "")
    past = next((e for e in snap["events"] if e["kind"] == PAST_MEASUREMENTS), None)  # the lab's, before the campaign
    notes = "" if past is None or not isinstance(past["data"], dict) else "".join(
        f"<li>{esc(note)}</li>" for note in past["data"].get("notes", []))
    notes = notes and f"<p>Said of their table when it was read:</p><ul>{notes}</ul>"
    past = "" if past is None else (f"<p>and {esc(past['message'])}: the calibration's and retrained models' "
                                    "measurement counts include them; the counts above, the best table and the "
                                    f"plots are the campaign's own experiments.</p>{notes}")
    unsafe = "".join(f"<li>{esc(e['time'])}: {esc(with_advice(e['message'], e['data']))}</li>"
                     for e in snap["events"] if left_unsafe(e["kind"], e["data"]))
    unsafe = unsafe and f'<h2 style="color:#b00">rig NOT made safe</h2><ul>{unsafe}</ul>'
    warned = "".join(f"<tr><td>{warned_of(e)}</td><td>{esc(e['message'])}</td><td>{esc(e['time'])}</td></tr>"
                     for e in snap["events"] if e["kind"] == WARNING)
    warned = warned and ("<h2>warnings about the measurements</h2><table><tr><th>experiment</th><th>warning</th>"
                         f"<th>journalled at</th></tr>{warned}</table>\n<p class=\"caption\">What the run warned of "
                         "about each measurement as it measured: the measurement is kept and learnt from, unless its "
                         "flags say otherwise. &ldquo;from 20&rdquo;: said of experiment 20 once a run (or again only "
                         "when it changes), it stands for the experiments after it too; a resumed run says it again. "
                         "What was said of the campaign before its first experiment is not here: <code>labloop "
                         "validate</code> says it again.</p>")

    checked = _interval_said(check)
    model_now = _model_now(calibrations, campaign["objective"])
    tables = ["experiments.csv", "measurements.csv", FAILURES_CSV, VOLTAMMOGRAMS_CSV,
              *[LAB_GRADE_CSV] * (folder / LAB_GRADE_CSV).exists(), *[PAST_CSV] * (folder / PAST_CSV).exists()]
    data = " · ".join(f'<a href="{name}">{name}</a>' for name in tables)
    # the cut-off a call of "reversible" went unsaid by, and which potentials are iR-corrected (a chemist's trial)
    criterion = esc(campaign["reversibility_criterion"])
    corrected = (("measurements.csv, lab_grade.csv", "measurements.csv and lab_grade.csv (e_half_v_vs_reference and "
                  "dep_mV; lab_grade.csv's epa_v_vs_reference and epc_v_vs_reference too)")
                 if (folder / LAB_GRADE_CSV).exists() else
                 ("measurements.csv", "measurements.csv (e_half_v_vs_reference and dep_mV)"))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{esc(campaign['name'])}{esc(simulated)}: labloop report</title>
<style>body{{font-family:sans-serif;max-width:1300px;margin:2em auto}}
figure{{display:inline-block;margin:0 0 1em;vertical-align:top}} figcaption{{font-size:85%;color:#444;max-width:600px}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:2px 8px}}
.caption{{font-size:90%;color:#444;max-width:1100px}}
@media print{{body{{max-width:none;margin:0;font-size:9pt}} table{{font-size:7pt;width:100%}}
td,th{{padding:1px 3px;overflow-wrap:anywhere}} figure{{break-inside:avoid}} tr{{break-inside:avoid}}}}</style>
</head><body>
<h1>{esc(campaign['name'])}</h1>
<p>objective: {esc(describe_objective(campaign['objective']))}; planner {esc(campaign['planner']['kind'])};
seed {campaign['seed']}; code {esc(campaign['code_version'])}; created {esc(campaign['created_at'])}</p>
<p>{provenance}</p>
<p>{cell}</p>
<p>{setup}</p>
<p>{progress['counts']['done']}/{progress['max_experiments']} done ({counts}){hits}</p>
<p>{esc(model_now)}</p>
{past}{unsafe}{plots}
{best}
{failures}
{lab_table}
{warned}
<h2>models</h2><table><tr><th>version</th><th>created</th><th>training rows</th><th>measurements</th>
<th>fit MAE on measurements (V)</th><th>out-of-sample MAE per output, before calibration (V)</th></tr>{models}
</table>
<p class="caption">Each version is the neural-network ensemble that predicts the potentials: version 1 trained on
the prior's DFT data alone, later ones retrained with the measured potentials added. &ldquo;Training rows&rdquo; are
the rows its members fitted, fewer than the prior's rows and the measurements together: a slice of the data,
measurements included, is held out of the fit to calibrate the ensemble's sd, and the prior's unreadable rows are left
out and its repeated molecules and stereoisomers merged. &ldquo;Fit MAE&rdquo; is the mean
absolute difference between the measured potentials and its prior output once calibrated on those same measurements;
the last column is each output's mean absolute error on the measured potentials before any calibration, each
measurement predicted by ensemble members that did not train on it: {outputs}.</p>
<h2>the predictions' uncertainty, checked</h2><p>{esc(checked)}</p>
<h2>calibration to the measurements (refitted before every proposal)</h2>
<p>One row per proposal. A proposal after a batch whose experiments all failed, or the same proposal
made again after a resume, is calibrated on as many measurements as the one before, so two rows can
share a count.</p>
<table><tr><th>model</th><th>output</th><th>leave-one-out log-likelihood per output (higher proposes)</th>
<th>learner</th><th>measurements</th>
<th>MAE of the last predictions (V)</th><th>fit MAE (V)</th><th>offset (V)</th><th>slopes (V per unit)</th>
<th>size function (V at N heavy atoms)</th><th>journalled at</th></tr>
{calibration}</table>
<p class="caption">Before each proposal every output of the newest model is corrected by a small model of how it
misses the measurements (the learner: an offset, then linear in simple descriptors and a function of size, then group
additivity, then a Gaussian process over similar molecules; the one that best predicts measurements left out wins).
&ldquo;Output&rdquo; is the one whose corrected potentials the proposals used: {outputs}. The log-likelihood scores
each corrected output by how probable each measurement is under its prediction and uncertainty when that measurement
is left out of the fit, summed over the measurements (natural log): only the numbers of one row compare, and the
higher proposes.</p>
<h2>data</h2><p>{data}</p>
<p class="caption">reversibility ({corrected[0]}; log --json): {criterion}. The peak potentials of
{corrected[1]} are corrected for the residual iR, the ohmic drop of the resistance the potentiostat left
uncompensated (ru_ohm - ir_compensated_ohm; nothing without an eis step to measure Ru); voltammograms.csv holds the
potentials as applied, not corrected.</p>
</body></html>
"""
