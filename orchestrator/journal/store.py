"""The journal: one SQLite file per campaign that records everything, so a campaign can be inspected,
reported and resumed after a crash (docs/architecture.md, "Journal states").

Why SQLite, and why this shape:

- **Crash safety.** Every method that changes something runs in its own ``BEGIN IMMEDIATE ... COMMIT``
  with ``synchronous=FULL`` and returns only after the commit, so a ``kill -9`` (or a power cut) at any
  moment leaves either the whole change or none of it. The runner commits each state change before the
  next instrument action; a resumed run therefore knows exactly where it stopped.
- **Live reading.** WAL mode lets ``labloop log --follow`` read (through a read-only connection) while
  ``labloop run`` writes; readers never block the writer.
- **Answerable questions.** A proposal keeps the planner's mu, sigma, acquisition value and model version
  ("why was this measured?"); an experiment moves ``proposed -> running -> done | failed | interrupted``
  (an interrupted one may run again, as the next *attempt*); with an approval gate it starts as
  ``awaiting_approval`` and a person moves it to ``proposed`` (approved) or ``failed`` (vetoed); actions,
  raw voltammograms and measurements belong to one attempt, so a half-finished attempt never mixes with the
  re-run. What an attempt measured is journalled as it is measured, not when its protocol ends: the cv's
  voltammogram before the cv's action ends ``ok``, the measurement once the steps it depends on have run; an
  attempt stopped after that (in a rinse, a wait) keeps it, and a resume ends the experiment from it
  (:meth:`Journal.finish_measured`) rather than measuring a second aliquot. Illegal transitions raise
  :class:`IllegalTransition`; the schema's foreign keys and CHECKs catch what slips past.
- **Identity.** ``PRAGMA application_id`` marks a labloop journal and ``PRAGMA user_version`` its schema
  version, so a foreign file or a journal from a newer labloop is refused in one line.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from labloop.core.errors import (
    IllegalTransition,
    InputError,
    JournalError,
    JournalWriteError,
    NotAwaitingApproval,
    first_line,
    shown,
)
from labloop.core.files import moved_along
from labloop.core.text import plural, shell_word
from labloop.core.timestamps import now
from labloop.core.version import code_version
from labloop.instruments.cv_analysis import CVResult
from labloop.instruments.voltammogram import Voltammogram
from labloop.orchestrator.config.alert_urls import SECRET_SETTINGS, written_out_credentials
from labloop.orchestrator.config.yaml_source import display_name, read_yaml

if TYPE_CHECKING:  # the journal stores a campaign's dump; it never validates one
    from labloop.orchestrator.config.campaign import Campaign

log = logging.getLogger(__name__)

#: the event kind of a campaign's past measurements (:meth:`Journal.past_measurements`)
PAST_MEASUREMENTS = "past_measurements"
#: the event kind of an operator's word that the cell was emptied by hand (``resume --cell-emptied``): the count of
#: what the cell holds restarts there, as after a rinse (orchestrator/loop/runner.py)
CELL_EMPTIED = "cell_emptied"
#: the same for every syringe filled by hand (``resume --syringes-filled``): each counts as full again
SYRINGES_FILLED = "syringes_filled"
#: the event kind of model versions whose weights were deleted (surrogate.keep_models): ``data["versions"]``
PRUNED = "pruned"
#: the event kind of a warning about an experiment's measurement (protocols/executor.py ``OnWarning``)
WARNING = "warning"
#: "LLJ1" — marks a SQLite file as a labloop journal
APPLICATION_ID = 0x4C4C4A31
SCHEMA_VERSION = 2
#: schema versions this labloop reads; older ones are upgraded when opened for writing (:func:`_upgrade`)
READABLE_VERSIONS = (1, 2)
#: the experiments table; version 2 added the state 'awaiting_approval'
EXPERIMENTS_TABLE = """
CREATE TABLE experiments (
    id INTEGER PRIMARY KEY,
    smiles TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('awaiting_approval', 'proposed', 'running', 'done', 'failed',
                                         'interrupted')),
    cause TEXT,
    attempt INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT
);"""
#: how a vetoed experiment's cause starts (the planner counts a veto as a failure of the molecule)
VETOED = "vetoed"
#: how a failure of the analysis (an unusable voltammogram: the molecule's fault) starts its cause: the runner
#: writes it (orchestrator/loop/runner.py), the report reads it (a failed scan's bound, in its sd check)
ANALYSIS_FAILURE = "analysis: "
#: the last time a journal heard of its run: the newest time it wrote (what a run killed without a word did last)
LAST_HEARD = ("SELECT MAX(t) FROM (SELECT MAX(time) AS t FROM events UNION ALL SELECT MAX(started_at) FROM actions "
              "UNION ALL SELECT MAX(finished_at) FROM actions UNION ALL SELECT MAX(started_at) FROM experiments "
              "UNION ALL SELECT MAX(created_at) FROM raw_data)")
#: how an action a killed run left open ends (:meth:`Journal.mark_interrupted_on_resume`), with the time it ends at
CRASHED = ": the run ended without a word (killed?); when this action ended is unknown: the journal last heard of " \
          "the run at {}"
#: the key a rejected scan's raw data row holds its reason under, and the kind of the event that says it was kept
#: (:meth:`Journal.record_raw`)
REJECTED = "rejected"
#: the event of a rig that could not be made safe (a pump not stopped, a cell left on): it alerts, and the log,
#: the dashboard and the report show it, since the rig may still be pumping (orchestrator/loop/runner.py)
UNSAFE = "unsafe"


def left_unsafe(kind: str, data: Any) -> bool:
    """Whether an event says the rig was left unsafe: an :data:`UNSAFE` event, or a stop whose data names the
    instruments that could not be made safe (``unsafe``: a Ctrl-C's ``interrupted``, the ``stopped`` of a failure
    whose make-safe failed), which the log, the dashboard and the report show and which alerts as a failure."""
    return kind == UNSAFE or (isinstance(data, dict) and bool(data.get("unsafe")))


def with_advice(message: str, data: Any) -> str:
    """An event's message with the advice its data keeps for the console's last line (``advice``: what a person does
    before ``resume``), for whoever reads the event away from the console: an alert, the report. A stop's alert ended
    at "what it delivered is unknown", without "check analyte_pump at the instrument ... --cell-emptied"."""
    advice = data.get("advice") if isinstance(data, dict) else None
    return f"{message}; {advice}" if isinstance(advice, str) and advice else message

SCHEMA = """
CREATE TABLE campaign (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    name TEXT NOT NULL,
    seed INTEGER NOT NULL,
    code_version TEXT NOT NULL,
    config_json TEXT NOT NULL,
    source_yaml TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE model_versions (
    version INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL,
    n_train INTEGER NOT NULL CHECK (n_train >= 0),
    metrics_json TEXT NOT NULL,
    weights_path TEXT
);
{experiments}
CREATE TABLE proposals (
    experiment_id INTEGER PRIMARY KEY REFERENCES experiments(id),
    step INTEGER NOT NULL,
    smiles TEXT NOT NULL,
    conditions_json TEXT NOT NULL,
    mu REAL,
    sigma REAL,
    acquisition REAL,
    model_version INTEGER REFERENCES model_versions(version),
    planner TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE actions (
    id INTEGER PRIMARY KEY,
    experiment_id INTEGER NOT NULL REFERENCES experiments(id),
    attempt INTEGER NOT NULL,
    step INTEGER NOT NULL,
    instrument TEXT NOT NULL,
    command TEXT NOT NULL,
    params_json TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    outcome TEXT
);
CREATE INDEX actions_by_experiment ON actions (experiment_id, attempt);
CREATE TABLE raw_data (
    id INTEGER PRIMARY KEY,
    experiment_id INTEGER NOT NULL REFERENCES experiments(id),
    attempt INTEGER NOT NULL,
    voltammogram_json TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX raw_data_by_experiment ON raw_data (experiment_id, attempt);
CREATE TABLE measurements (
    experiment_id INTEGER NOT NULL REFERENCES experiments(id),
    attempt INTEGER NOT NULL,
    potential_v REAL,
    e_half_v REAL,
    dep_v REAL,
    reference TEXT NOT NULL,
    flags_json TEXT NOT NULL,
    result_json TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (experiment_id, attempt)
);
CREATE TABLE planner_state (
    step INTEGER PRIMARY KEY,
    state_json TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    experiment_id INTEGER REFERENCES experiments(id),
    data_json TEXT
);
CREATE TRIGGER events_no_update BEFORE UPDATE ON events BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
""".replace("{experiments}", EXPERIMENTS_TABLE)


class State(StrEnum):
    AWAITING_APPROVAL = "awaiting_approval"
    PROPOSED = "proposed"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


#: which states each transition may leave from
_FROM: dict[State, tuple[State, ...]] = {
    State.PROPOSED: (State.AWAITING_APPROVAL,),
    State.RUNNING: (State.PROPOSED, State.INTERRUPTED),
    State.DONE: (State.RUNNING, State.INTERRUPTED),  # interrupted: finished from its measurement (finish_measured)
    State.FAILED: (State.RUNNING, State.AWAITING_APPROVAL, State.INTERRUPTED),
    State.INTERRUPTED: (State.RUNNING,),
}


def _designed(designed: int, proposed: int) -> str:
    """`` (by the first batch's size design: nothing measured yet)``, or how many of them: what a "proposed" event
    adds when its planner chose by the design (planners/design.py) rather than by its acquisition."""
    if not designed:
        return ""
    which = "" if designed == proposed else f"{designed} of them "
    return f" ({which}by the first batch's size design: nothing measured yet)"


class ProposalLike(Protocol):
    """What the journal needs of a planner's proposal (mu, sigma: the objective quantity, V vs Li/Li+)."""

    @property
    def smiles(self) -> str: ...
    @property
    def conditions(self) -> Mapping[str, Any]: ...
    @property
    def mu(self) -> float | None: ...
    @property
    def sigma(self) -> float | None: ...
    @property
    def acquisition(self) -> float | None: ...


@dataclass(frozen=True)
class CampaignInfo:
    name: str
    seed: int
    code_version: str
    created_at: str
    config: dict[str, Any]
    source_yaml: str | None


@dataclass(frozen=True)
class ExperimentRow:
    """An experiment with its proposal and the measurement of its current attempt (None until measured)."""

    id: int
    smiles: str
    status: str
    cause: str | None
    attempt: int
    created_at: str
    started_at: str | None
    finished_at: str | None
    step: int | None
    planner: str | None
    conditions: dict[str, Any]
    mu: float | None
    sigma: float | None
    acquisition: float | None
    model_version: int | None
    potential_v: float | None
    e_half_v: float | None
    dep_v: float | None
    reference: str | None
    flags: list[str]
    #: the first scan's peak currents (A, signed as measured), |ipc / ipa| and its reversibility judgement, from
    #: the measurement's analysis: the first numbers a chemist checks beside E1/2 and dEp
    ipa_a: float | None = None
    ipc_a: float | None = None
    ratio: float | None = None
    reversibility: str | None = None
    #: the return peak over the forward one (``ratio`` for a couple oxidised first, its inverse for one reduced
    #: first): the figure a chemist reports for stability, where ``ratio`` read 4.07 for a reduction's 0.25 (an
    #: electrochemist's trial); None where the analysis did not judge it or predates it
    return_share: float | None = None

    @property
    def measured(self) -> bool:
        """Whether its current attempt has its measurement (a measurement's ``reference`` is never NULL): an
        experiment stopped after that is finished from it on resume (:meth:`Journal.finish_measured`)."""
        return self.reference is not None


#: analysis flags under which a scan judged no reversibility (its couple beyond the window, or none at all)
UNJUDGED_FLAGS = frozenset({"beyond_window", "at_scan_start", "no_peak"})


def judged_reversibility(analysis: dict[str, Any]) -> str | None:
    """An analysis' reversibility judgement, None where its flags say the scan judged none: the analysis says
    so itself since the couple a window cut is left unjudged (instruments/cv_analysis.py), and journals written
    before say "irreversible" there, which read as a judgement of a wave never completed (a trial)."""
    value = analysis.get("reversibility")
    flags = analysis.get("flags")
    unjudged = isinstance(flags, list) and not UNJUDGED_FLAGS.isdisjoint(flags)
    return value if isinstance(value, str) and not unjudged else None


@dataclass(frozen=True)
class ActionRow:
    id: int
    experiment_id: int
    attempt: int
    step: int
    instrument: str
    command: str
    params: dict[str, Any]
    started_at: str
    finished_at: str | None
    outcome: str | None


@dataclass(frozen=True)
class ModelVersion:
    version: int
    created_at: str
    n_train: int
    metrics: dict[str, Any]
    weights_path: str | None
    #: its weights were deleted on purpose (a ``pruned`` event, surrogate.keep_models): no fault to warn of
    pruned: bool = False


@dataclass(frozen=True)
class Event:
    id: int
    time: str
    kind: str
    message: str
    experiment_id: int | None
    data: Any


def _json(value: Any) -> str:
    """Strict JSON (non-finite floats become null, so every reader can parse it)."""
    return json.dumps(_finite(value), sort_keys=True, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


#: how a journal's write error ends its advice; a stop that must say more (the cell to empty first) replaces it with
#: its own resume command (orchestrator/loop/runner.py Runner._unjournalled)
THEN_RESUME = ", then `labloop resume`"


def journal_error(path: Path, exc: sqlite3.Error) -> JournalError:
    """What an SQLite error means for the user, in one line naming the journal: the one place where the
    journal's low-level errors become labloop's."""
    text = str(exc)
    if "readonly" in text or "read-only" in text:
        why = "it is read-only (medium, mount or permissions); copy it somewhere writable"
    elif "unable to open" in text:
        why = "it cannot be opened (permissions, or a folder that is gone?)"
    elif "disk is full" in text:
        why = f"the disk is full ({text}); free space{THEN_RESUME}"
    elif "disk I/O" in text:  # not only a full disk: a file made unwritable or read-only while open reads the same
        why = (f"writing it failed ({text}): a full disk, a medium gone read-only, or the file or its folder made "
               f"unwritable; fix that{THEN_RESUME}")
    elif "malformed" in text or "not a database" in text or "corrupt" in text:
        why = f"not a labloop journal, or a damaged one ({text}){_campaign_file_hint(path)}{_journal_hint(path)}"
    else:
        why = text
    return JournalError(f"{path}: {why}")


def _measurements_lost(conn: sqlite3.Connection) -> list[int]:
    """The first few experiments that are ``done`` without the measurement of their attempt, which
    :meth:`Journal.finish_experiment` requires: a row deleted by hand left a campaign whose log, report and planner
    went on without that molecule's potential, nothing said (a data-integrity trial)."""
    return [row[0] for row in conn.execute(
        "SELECT e.id FROM experiments e WHERE e.state = 'done' AND NOT EXISTS (SELECT 1 FROM measurements m "
        "WHERE m.experiment_id = e.id AND m.attempt = e.attempt) ORDER BY e.id LIMIT 3")]


def _journal_hint(path: Path) -> str:
    """The journal a near miss meant: the ones a folder holds (``labloop log runs``), the name with ``.db`` (``labloop
    log runs/screen``), the journal beside its runner's lock file (``screen.db.lock``); a newcomer's trial was told
    only that each was not a journal, the journal lying beside it."""
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.db") if p.is_file())
        if not found:
            return ""
        shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        return f" (it holds {shown}: give {'that' if len(found) == 1 else 'one of them'})"
    for near in (path.with_name(f"{path.name}.db"), path.with_name(path.name.removesuffix(".lock"))):
        with suppress(OSError, ValueError):  # a name too long with .db added: no hint, the error as it was
            if near != path and near.suffix == ".db" and near.is_file():
                return f"; {near.name} in the same folder is a journal: give that"
    return ""


def _campaign_file_hint(path: Path) -> str:
    """What to give instead when ``path`` is a campaign file, where a journal was expected (``labloop log
    campaign.yaml``, a newcomer's first try)."""
    if path.suffix.lower() not in (".yaml", ".yml"):
        return ""
    # a protocol file is a list of steps, a campaign file a mapping (a security trial's --store protocol.yaml was
    # called a campaign file)
    try:
        with path.open(errors="replace") as handle:
            lines = [line.strip() for line in handle.read(65536).splitlines()]
    except OSError:
        lines = []
    first = next((line for line in lines if line and not line.startswith(("#", "---", "%"))), "")  # past directives
    what = "a protocol file (a list of steps)" if first.startswith("-") else "a campaign file"
    if first.startswith("-") or (journal := _campaign_journal(path)) is None:
        return f"; this looks like {what}: give a journal, the file a campaign's `store` names (e.g. runs/NAME.db)"
    if journal.is_file():
        return f"; this looks like {what}: give its journal, {display_name(journal)} (its `store`)"
    return f"; this looks like {what}, whose journal {display_name(journal)} (its `store`) is not written yet: " \
           "`labloop run` it first"


def _campaign_journal(path: Path) -> Path | None:
    """The journal campaign file ``path`` names: its ``store``, else ``runs/<name>.db``, beside it
    (orchestrator/config/campaign.py); None when the file is no readable mapping (a newcomer told to give "the file a
    campaign's `store` names" had it to look up in the file just given)."""
    try:
        data = read_yaml(path).data
    except (InputError, OSError):
        return None
    if not isinstance(data, dict):
        return None
    store, name = data.get("store"), data.get("name")
    if isinstance(store, str) and store.strip():
        return path.parent / store
    return path.parent / "runs" / f"{name}.db" if isinstance(name, str) and name.strip() else None


def refuse_other_settings(path: Path, campaign: Campaign, info: CampaignInfo) -> None:
    """:class:`JournalError` naming the first setting that differs, unless the journal at ``path`` (its
    campaign ``info``) is ``campaign``'s: ``run`` continues only the same campaign in a store."""
    config_json = _json(campaign.model_dump(mode="json", by_alias=True))
    if _json(info.config) == config_json:
        return
    # as an older labloop wrote it, compared as values, not text: one wrote {choices: [30, 60]} as 30.0, 60.0
    stored, given = _as_today(campaign, info.config), json.loads(config_json)
    if stored == given:
        return
    changed = first_difference(stored, given)
    moved = re.match(r"instruments\.([^.:]+)\.port:", changed)
    port = campaign.instruments[moved[1]].port if moved and moved[1] in campaign.instruments else None
    more = (f" (for more experiments: `labloop resume {shell_word(path)} --max-experiments N`)"
            if changed.startswith("budget.max_experiments:") else
            f" (the store was moved or copied here: `labloop resume {shell_word(path)}` goes on with the files "
            "beside it)" if changed.startswith("store:") else
            # a USB adapter plugged in again under another name: the resume was refused for the old port, and only
            # that second refusal named --port (a plug-in engineer's trial)
            f" (the instrument is on {port} now: `labloop resume {shell_word(path)} "
            f"--port {shell_word(f'{moved[1]}={port}')}`)" if moved and port else
            # the cluster moved: where the library is predicted changes no result (docs/scaling.md)
            f" (to compute on another cluster: `labloop resume {shell_word(path)} --scheduler "
            f"{shell_word(campaign.compute.scheduler or 'auto')}`)" if changed.startswith("compute.scheduler:") else
            # a new objective's store started from nothing and measured some molecules again (a newcomer's trial)
            " (a new store can learn from what this one measured: its report's measurements.csv as past_measurements, "
            "column potential_v_vs_li, vs: li; docs/running.md)" if changed.startswith("objective.") else "")
    raise JournalError(f"{path}: holds campaign {info.name!r} (created {info.created_at}) with other settings, "
                       f"{changed}; choose another store, or continue that campaign as it was with `labloop resume`"
                       f"{more}")


def first_difference(stored: Any, given: Any, at: str = "") -> str:
    """The first setting in which two campaign configs differ, as ``field: A in the journal, B here``; the
    values of :data:`SECRET_SETTINGS` are never shown (an alert URL may hold a token or a password), nor any
    part of them (``alerts[1]``)."""
    if at and re.split(r"[.\[]", at)[0] in SECRET_SETTINGS:
        return f"{at}: changed since the journal was written (not shown: it may hold a secret)"
    if isinstance(stored, dict) and isinstance(given, dict):
        for key in [*stored, *(k for k in given if k not in stored)]:
            if stored.get(key) != given.get(key):
                return first_difference(stored.get(key), given.get(key), f"{at}.{key}" if at else str(key))
    if isinstance(stored, list) and isinstance(given, list):  # a protocol's steps: the first step that differs
        for index in range(max(len(stored), len(given))):
            one, other = (seq[index] if index < len(seq) else None for seq in (stored, given))
            if one != other:  # another kind of step is shown whole, not as its missing parameters
                place = f"{at}[{index}]"
                same_kind = isinstance(one, dict) and isinstance(other, dict) and one.keys() == other.keys()
                return first_difference(one, other, place) if same_kind else _shown(one, other, place)
    return _shown(stored, given, at)


def _shown(stored: Any, given: Any, at: str) -> str:
    shown = [json.dumps(value)[:60] for value in (stored, given)]
    return f"{at or 'campaign'}: {shown[0]} in the journal, {shown[1]} here"


def hit_edges(objective: dict[str, Any]) -> tuple[float, ...]:
    """The potentials where a measurement turns into a hit or out of one: the window's ends, or the threshold."""
    if objective.get("window_v"):
        return tuple(objective["window_v"])
    return () if objective.get("threshold_v") is None else (objective["threshold_v"],)


def potential_said(value: float | None, edges: tuple[float, ...]) -> str:
    """A measured potential to 3 decimals, or to as many more (up to 6) as it takes not to read as a hit edge it is
    not: 4.4995 V showed as ``4.500`` in a [4.50, 4.60] window, beside ``hits 0`` (a chemist's trial)."""
    if value is None:
        return ""
    for digits in range(3, 7):
        shown = f"{value:.{digits}f}"
        if not any(shown == f"{edge:.{digits}f}" and value != edge for edge in edges):
            return shown
    return shown


def _as_today(campaign: Campaign, stored: dict[str, Any]) -> dict[str, Any]:
    """A journal's stored config as today's labloop writes it (sections added since get their defaults); as
    stored when today's model refuses it."""
    try:
        return type(campaign).model_validate(stored).model_dump(mode="json", by_alias=True)
    except ValueError:  # pydantic's ValidationError, or the campaign's own problems
        return stored


def _upgrade(conn: sqlite3.Connection, version: int) -> None:
    """Bring a version-1 journal to the current schema in one transaction: the experiments table is rebuilt
    with the wider state CHECK (SQLite cannot alter a CHECK; this is its documented table-rebuild recipe)."""
    conn.execute("PRAGMA foreign_keys = OFF")  # takes effect only outside a transaction
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("PRAGMA user_version").fetchone()[0] == version:  # another process may have upgraded
            conn.execute(EXPERIMENTS_TABLE.replace("CREATE TABLE experiments", "CREATE TABLE experiments_new"))
            conn.execute("INSERT INTO experiments_new SELECT * FROM experiments")
            conn.execute("DROP TABLE experiments")
            conn.execute("ALTER TABLE experiments_new RENAME TO experiments")
            if conn.execute("PRAGMA foreign_key_check").fetchone() is not None:
                raise sqlite3.IntegrityError("foreign keys broken by the upgrade")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _read_only_file_system(path: Path) -> bool:
    """Whether ``path``'s folder lies on a file system mounted read-only."""
    try:
        return bool(os.statvfs(path.absolute().parent).f_flag & os.ST_RDONLY)
    except OSError:
        return False


#: the sections every journalled campaign config holds (what ``log``, ``report`` and ``resume`` read first)
CONFIG_SECTIONS = ("library", "objective", "instruments", "protocol", "budget")


def _campaign_config(value: Any) -> dict[str, Any]:
    """A campaign row's config as labloop wrote it: a mapping with :data:`CONFIG_SECTIONS`. Why: a row edited to
    ``{}`` passed as a mapping, and ``log`` and ``report`` then said "unexpected KeyError: 'objective' (a labloop
    bug)", exit 1, where a damaged journal is one line naming it, exit 2 (a data trial)."""
    if not isinstance(value, dict):
        raise TypeError(f"a {type(value).__name__}, not a mapping")
    if missing := [section for section in CONFIG_SECTIONS if not isinstance(value.get(section), dict | list | str)]:
        raise KeyError(f"no {missing[0]} section")
    return value


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at ``path``, None when there is none: which file a journal has open."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _closed_in_a_fixed_folder(path: Path) -> bool:
    """Whether the journal lies in a folder this user cannot write and no run has it open (no ``-wal`` beside it: a
    WAL journal's writer keeps one there while it is open, and SQLite removes it at the last close)."""
    return not os.access(path.absolute().parent, os.W_OK) and not _wal_of(path).exists()


def _wal_of(path: Path) -> Path:
    """The journal's write-ahead log file (SQLite's name for it)."""
    return path.with_name(f"{path.name}-wal")


def _connect(path: Path, readonly: bool) -> tuple[sqlite3.Connection, bool]:
    """A connection to the journal. A reader whose user may write the journal and its folder gets a writable
    connection that refuses to write (``PRAGMA query_only``): SQLite's read-only connection cannot remove the
    ``-wal``/``-shm`` files it makes, so ``labloop log`` of a finished journal left two empty files beside it;
    the last connection to close, reader or writer, now removes them, with SQLite's own locking as for any
    reader. Elsewhere (a read-only medium, another user's journal) it is read-only. Also returned: whether the
    journal is read as a fixed file in a folder this user may not write (below), which a run may still open."""
    writable = readonly and os.access(path, os.W_OK) and os.access(path.absolute().parent, os.W_OK)
    mode = "rw" if writable or not readonly else "ro"
    # a WAL journal's readers share a -shm file beside it, which SQLite makes if none is there, and it refused a
    # journal where it could not ("cannot be opened"; an operator's trial): on a read-only file system (a read-only
    # mount, an archive) and in a folder this user may not write (a student's campaign read by the group's PI). Where
    # no run has the journal open, it is read as the immutable file it is; a run that has it open keeps a -shm there,
    # which SQLite reads as it is
    medium = readonly and _read_only_file_system(path)
    folder = readonly and not medium and _closed_in_a_fixed_folder(path)
    conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode={mode}{'&immutable=1' if medium or folder else ''}",
                           uri=True, isolation_level=None, check_same_thread=False, timeout=10.0)
    if readonly and writable:
        conn.execute("PRAGMA query_only = ON")
    conn.row_factory = sqlite3.Row
    return conn, folder


T = TypeVar("T")


def _as_is(value: T) -> T:
    """A decoded JSON value as it is (what :meth:`Journal._decoded` builds by default)."""
    return value


def _strings(value: object) -> list[str]:
    """A measurement's flags: a JSON list of strings (anything else is a damaged row)."""
    if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise TypeError(f"expected a list of flags, got {value!r}"[:120])
    return value


def _analysed(data: dict[str, Any]) -> Voltammogram | None:
    """A raw data row's voltammogram, None for a scan the executor rejected (:meth:`Journal.record_raw`)."""
    return None if isinstance(data, dict) and REJECTED in data else Voltammogram.from_dict(data)


def _finite_float(text: str) -> float:
    """A JSON number as a float; one too large for a float (``1e999``) is damage, as labloop writes only finite
    numbers (:func:`_json`)."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    return value


def _no_constant(name: str) -> float:
    """``NaN``, ``Infinity`` or ``-Infinity`` in a JSON column: Python's decoder takes them, but labloop never
    writes them, and ``labloop log --json`` would pass them on as invalid JSON."""
    raise ValueError(f"{name} is not a number JSON allows")


def _not_number(value: object) -> str | None:
    """Why a column's ``value`` is not a finite number (None when it is)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"holds {shown(value)}, not a number"
    return None if math.isfinite(value) else f"holds {value}, not a finite number"


def _not_spread(value: object) -> str | None:
    """Why ``value`` is not a standard deviation: a finite number, never negative."""
    why = _not_number(value)
    if why is None and value < 0:  # type: ignore[operator]  # a number, said _not_number
        why = f"holds {value}, a negative standard deviation"
    return why


def _not_integer(value: object) -> str | None:
    whole = isinstance(value, int) and not isinstance(value, bool)
    return None if whole else f"holds {shown(value)}, not a whole number"


def _not_text(value: object) -> str | None:
    return None if isinstance(value, str) else f"holds {shown(value)}, not text"


def _not_time(value: object) -> str | None:
    """Why ``value`` is not a time as labloop writes one (ISO 8601, :func:`labloop.core.timestamps.now`)."""
    try:
        datetime.fromisoformat(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return f"holds {shown(value)}, not a time"
    return None


#: what a column must hold when read back, by kind; a kind ending in ``?`` may also be NULL
_KINDS: dict[str, Callable[[object], str | None]] = {
    "number": _not_number, "spread": _not_spread, "integer": _not_integer, "text": _not_text, "time": _not_time,
}
#: the kinds of the columns the readers use, per table (a proposal's or measurement's are NULL when the experiment
#: has none: they come through a LEFT JOIN)
_EXPERIMENT_COLUMNS = {"smiles": "text", "attempt": "integer", "cause": "text?", "created_at": "time",
                       "started_at": "time?", "finished_at": "time?"}
_PROPOSAL_COLUMNS = {"step": "integer?", "planner": "text?", "mu": "number?", "sigma": "spread?",
                     "acquisition": "number?", "model_version": "integer?"}
_MEASUREMENT_COLUMNS = {"potential_v": "number?", "e_half_v": "number?", "dep_v": "number?", "reference": "text?"}
_ACTION_COLUMNS = {"attempt": "integer", "step": "integer", "instrument": "text", "command": "text",
                   "started_at": "time", "finished_at": "time?", "outcome": "text?"}
_MODEL_COLUMNS = {"created_at": "time", "n_train": "integer", "weights_path": "text?"}
_EVENT_COLUMNS = {"time": "time", "kind": "text", "message": "text", "experiment_id": "integer?"}


def _with_strings_replaced(value: Any, replacements: Mapping[str, str]) -> Any:
    """``value`` (decoded JSON) with every string that is a key of ``replacements`` replaced by its value."""
    if isinstance(value, dict):
        return {key: _with_strings_replaced(item, replacements) for key, item in value.items()}
    if isinstance(value, list):
        return [_with_strings_replaced(item, replacements) for item in value]
    return replacements.get(value, value) if isinstance(value, str) else value


class Journal:
    """One campaign's journal. Make one with :meth:`create` or :meth:`open`; close it (or use ``with``)."""

    def __init__(self, conn: sqlite3.Connection, path: Path, readonly: bool) -> None:
        self._conn = conn
        self.path = path
        self.readonly = readonly
        #: the file this journal has open (device, inode), which every write checks ``path`` still names
        self._identity = _identity(path)
        self._closed = False
        self._lock = threading.RLock()  # the runner's background retraining records model versions too
        self._hit_edges: tuple[float, ...] | None = None  # the objective's, read once (it never changes)
        #: read as a fixed file (SQLite's ``immutable``: :func:`_connect`) in a folder this user may not write, which
        #: sees no later write: opened again once a run has it open (:meth:`_unfix`)
        self._fixed = False

    # -- opening ---------------------------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | Path, campaign: Campaign, *, source_yaml: str | None = None,
               past: tuple[str, dict[str, Any]] | None = None) -> Journal:
        """A new journal for ``campaign`` at ``path``; an existing journal of the *same* campaign (identical
        config) is opened instead, any other existing file is refused with :class:`JournalError`. ``past``: the
        campaign's past measurements, (message, data with ``measurements``: [SMILES, potential] pairs), journalled
        as the event after ``created`` (:meth:`past_measurements` reads them), so no journal exists without them.

        The file is built under a temporary name and linked into place, so no reader ever sees a half-made
        journal and a crash during creation leaves nothing under ``path``.
        """
        path = Path(path)
        config_json = _json(campaign.model_dump(mode="json", by_alias=True))
        if path.exists():
            journal = cls.open(path)
            info = journal.campaign_info()
            try:
                refuse_other_settings(path, campaign, info)
            except JournalError:
                journal.close()
                raise
            return journal
        wal = _wal_of(path)
        if wal.is_file() and wal.stat().st_size > 0:
            # a journal deleted after a kill -9 left its WAL, which SQLite read into the new journal of that name: a
            # data trial's "new" campaign held the deleted one's experiments, or was born damaged
            raise JournalError(f"{wal}: left beside {path}, which is gone: the WAL of a journal deleted or moved while "
                               "a run held it (a killed run's), which SQLite would read into a new journal of that "
                               "name; if the journal was moved, move this file beside it (same name + -wal), else "
                               f"delete it and {path.name}-shm, then run again")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        try:
            if any(written_out_credentials(url) for url in campaign.alerts):
                # its settings hold an alert's password: readable by this account alone (SQLite gives the -wal and
                # -shm the journal's mode), where the umask let every account of the machine read it (a security
                # review: `grep -a` as another user found the webhook's password); made so before a byte is written
                os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            cls._build(tmp, campaign, config_json, source_yaml, past)
            os.link(tmp, path)  # fails if someone created `path` meanwhile, unlike a rename
        except FileExistsError:
            if path.is_symlink() and not path.exists():  # a link to nowhere: exists() said no, the link is there
                raise JournalError(f"{path}: a symbolic link to {os.readlink(path)}, which does not exist: give the "
                                   "journal's own path, or remove the link") from None
            raise JournalError(f"{path}: was created by another process just now") from None
        finally:
            tmp.unlink(missing_ok=True)
        log.info("created journal %s for campaign %s", path, campaign.name)
        return cls.open(path)

    @staticmethod
    def _build(tmp: Path, campaign: Campaign, config_json: str, source_yaml: str | None,
               past: tuple[str, dict[str, Any]] | None) -> None:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.executescript(SCHEMA)
            created = now()
            conn.execute("INSERT INTO campaign VALUES (1, ?, ?, ?, ?, ?, ?)",
                         (campaign.name, campaign.seed, code_version(), config_json, source_yaml, created))
            conn.execute("INSERT INTO events (time, kind, message) VALUES (?, 'created', ?)",
                         (created, f"campaign {campaign.name} created"))
            if past is not None:
                conn.execute("INSERT INTO events (time, kind, message, data_json) VALUES (?, ?, ?, ?)",
                             (created, PAST_MEASUREMENTS, past[0], _json(past[1])))
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("PRAGMA journal_mode = WAL")
        finally:
            conn.close()

    @classmethod
    def open(cls, path: str | Path, *, readonly: bool = False) -> Journal:
        """Open an existing journal (``readonly`` for inspection while a run writes)."""
        path = Path(path)
        if path.is_dir():
            raise JournalError(f"{path}: is a directory, not a journal file{_journal_hint(path)}")
        if not path.exists():
            raise JournalError(f"{path}: no such journal{_journal_hint(path)}")
        if not os.access(path, os.R_OK) or not (readonly or os.access(path, os.W_OK)):
            need = "read" if readonly else "read and write"
            raise JournalError(f"{path}: permission denied: this user cannot {need} the journal (owner, mode, "
                               "or a read-only medium?)")
        try:
            conn, fixed = _connect(path, readonly)
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise journal_error(path, exc) from None
        if app_id != APPLICATION_ID:
            conn.close()
            raise JournalError(f"{path}: not a labloop journal{_campaign_file_hint(path)}{_journal_hint(path)}")
        if version not in READABLE_VERSIONS:
            conn.close()
            newer = "a newer labloop; upgrade labloop to read it" if version > SCHEMA_VERSION else "an unknown labloop"
            raise JournalError(f"{path}: journal schema version {version} is from {newer} "
                               f"(this one reads version {SCHEMA_VERSION})")
        try:
            damage = [row[0] for row in conn.execute("PRAGMA quick_check(3)")]
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise journal_error(path, exc) from None
        if damage != ["ok"]:
            conn.close()
            found = " ".join("; ".join(damage).split())[:300]
            raise JournalError(f"{path}: the journal is damaged ({found}); restore it from a backup "
                               "(nothing labloop would read from it can be trusted)")
        if version < SCHEMA_VERSION and not readonly:
            _upgrade(conn, version)
            log.info("%s: journal schema upgraded from version %d to %d", path, version, SCHEMA_VERSION)
        if version == SCHEMA_VERSION and (lost := _measurements_lost(conn)):
            conn.close()
            raise JournalError(f"{path}: the journal is damaged: experiment {', '.join(map(str, lost))} is done but "
                               "its measurement is gone (a row deleted by hand?); restore it from a backup")
        conn.execute("PRAGMA foreign_keys = ON")
        if not readonly:
            conn.execute("PRAGMA synchronous = FULL")
        journal = cls(conn, path, readonly)
        journal._fixed = fixed
        return journal

    def close(self) -> None:
        """Close; a writer first copies the WAL into the file. Why: SQLite checkpoints at close only as the last
        connection, so with a dashboard left open on the journal the finished campaign stayed in ``-wal`` and a
        ``cp`` of the ``.db`` alone held 0 experiments (an operator's trial). PASSIVE: it never waits for a reader."""
        with self._lock:
            if self._closed:  # closed already, or by a rescue (_rescued)
                return
            if not self.readonly:
                with suppress(sqlite3.Error):  # a full disk: the WAL keeps it, and SQLite checkpoints it later
                    self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self._conn.close()
            self._closed = True

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction, committed before the caller gets control back, into the file ``path`` still names
        (:meth:`_rescued` when it no longer does)."""
        with self._lock:
            if self._closed:
                raise JournalWriteError(f"{self.path}: the journal is closed: nothing more is written to it")
            if _identity(self.path) != self._identity:
                raise JournalWriteError(self._rescued(), moved=True)
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except sqlite3.DatabaseError as exc:  # a full disk, a vanished folder: the run cannot go on
                raise JournalWriteError(str(journal_error(self.path, exc))) from None

    def _rescued(self) -> str:
        """What a run is told when its journal's file was deleted or replaced while the run wrote it, after saving
        everything written so far: the open connection (which still reads the file it opened, deleted or not) is
        copied (SQLite's backup) to the journal's name if it is free, else beside it, and closed, which puts its WAL
        into the old file and removes its ``-wal`` and ``-shm``, so no other file is read with them. Why: a trial's
        ``rm`` of a running journal let the run go on for minutes and finish "30/30 ... journal X" with exit 0, and
        every experiment was gone; a ``mv`` of another journal over it mixed the two campaigns in one file."""
        gone = not self.path.exists()
        beside = self.path.with_name(f"{self.path.stem}.rescued-{time.strftime('%Y%m%d-%H%M%S')}{self.path.suffix}")
        saved = self.path if gone else beside
        # gone: deleted, or moved away, which the run cannot tell apart (a trial's `mv` was said "deleted", and the
        # moved file, without this stop, was a second journal of the campaign)
        what = "deleted or moved away" if gone else "replaced by another file"
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.rescue")
        try:
            target = sqlite3.connect(tmp)
            try:
                self._conn.backup(target)
                target.execute("INSERT INTO events (time, kind, message) VALUES (?, 'stopped', ?)",
                               (now(), f"campaign stopped: the journal file was {what} while the run wrote it; this "
                                       "is what the run had written, saved from the file it held open"))
                target.commit()
            finally:
                target.close()
            self.close()
            for stale in ("-wal", "-shm"):  # the old file's: SQLite would read them into the file now at the name
                self.path.with_name(self.path.name + stale).unlink(missing_ok=True)
            try:
                os.link(tmp, saved)  # not over a file that took the name meanwhile: beside it then
            except FileExistsError:
                saved = beside
                os.link(tmp, saved)
        except (OSError, sqlite3.Error) as exc:
            with suppress(sqlite3.Error):
                self.close()
            return (f"{self.path}: the journal file was {what} while this run wrote it, and what the run wrote could "
                    f"not be saved ({first_line(exc)}): the run stops")
        finally:
            tmp.unlink(missing_ok=True)
        log.info("%s: the journal file was %s while the run wrote it; saved as %s", self.path, what, saved)
        moved = ("; a copy moved away is a second journal of this campaign without this stop: keep one" if gone
                 else "")
        return (f"{self.path}: the journal file was {what} while this run wrote it: the run stops, and everything it "
                f"had written is saved as {saved} (`labloop resume {shell_word(str(saved))}` continues it{moved})")

    # -- experiments ------------------------------------------------------------------------------------

    def record_proposals(self, proposals: Sequence[ProposalLike], *, step: int, planner: str,
                         model_version: int | None = None, awaiting_approval: bool = False) -> list[int]:
        """Record one planner step's proposals, each as a new ``proposed`` experiment (``awaiting_approval``
        when a person must approve the batch first); returns their ids."""
        ids = []
        state = State.AWAITING_APPROVAL if awaiting_approval else State.PROPOSED
        with self._write() as db:
            created = now()
            for p in proposals:
                cur = db.execute("INSERT INTO experiments (smiles, state, created_at) VALUES (?, ?, ?)",
                                 (p.smiles, state.value, created))
                ids.append(cur.lastrowid)
                db.execute("INSERT INTO proposals VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           (cur.lastrowid, step, p.smiles, _json(dict(p.conditions)), p.mu, p.sigma,
                            p.acquisition, model_version, planner, created))
            # a proposal a planner chose by its first batch's size design, not by its acquisition (a planner's
            # Proposal says; another's, or a test's, has no such field)
            design = [i for i, p in zip(ids, proposals, strict=True) if getattr(p, "design", False)]
            self._event(db, "proposed", f"step {step}: {planner} proposed {len(ids)} {plural(len(ids), 'experiment')}"
                                        + _designed(len(design), len(ids))
                                        + (" (awaiting approval)" if awaiting_approval else ""),
                        data={"experiments": ids, "model_version": model_version,
                              **({"design": design} if design else {})})
        return ids

    def approve(self, veto: Sequence[int] = (), *, by: str, batch: Sequence[int] | None = None,
                reason: str | None = None) -> tuple[list[int], list[int]]:
        """Decide the waiting batch: every ``awaiting_approval`` experiment becomes ``proposed``, except those in
        ``veto``, which become ``failed`` (cause ``vetoed ...``). ``by`` says who decided and how, ``reason`` why
        (both journalled: the event's message and data, and each veto's cause).
        ``batch``, when given, is the batch the person looked at, and must be the one waiting.
        Returns (approved ids, vetoed ids); :class:`NotAwaitingApproval` if nothing waits, another batch
        waits, or a veto is not in the waiting batch (then nothing changes)."""
        with self._write() as db:
            waiting = [r[0] for r in db.execute("SELECT id FROM experiments WHERE state = ? ORDER BY id",
                                                (State.AWAITING_APPROVAL.value,))]
            if not waiting:
                raise NotAwaitingApproval(f"{self.path.name}: no experiment is awaiting approval")
            if batch is not None and sorted(batch) != waiting:
                raise NotAwaitingApproval(f"{self.path.name}: the batch waiting is {', '.join(map(str, waiting))}, "
                                          f"not the {', '.join(map(str, sorted(batch))) or 'empty'} decided on: "
                                          "look at it again")
            stray = sorted(set(veto) - set(waiting))
            if stray:
                raise NotAwaitingApproval(f"{self.path.name}: experiment {stray[0]} is not awaiting approval "
                                          f"(waiting: {', '.join(map(str, waiting))})")
            vetoed = [i for i in waiting if i in set(veto)]
            approved = [i for i in waiting if i not in set(veto)]
            stamp = now()
            for experiment_id in approved:
                self._transition(db, experiment_id, State.PROPOSED)
                db.execute("UPDATE experiments SET state = 'proposed' WHERE id = ?", (experiment_id,))
            for experiment_id in vetoed:
                self._transition(db, experiment_id, State.FAILED)
                db.execute("UPDATE experiments SET state = 'failed', cause = ?, finished_at = ? WHERE id = ?",
                           (f"{VETOED} by a person ({by})" + (f": {reason}" if reason else ""), stamp, experiment_id))
            why = f"; why: {reason}" if reason else ""
            self._event(db, "approved", f"batch decided by {by}: approved {approved or 'none'}, "
                                        f"vetoed {vetoed or 'none'}{why}",
                        data={"approved": approved, "vetoed": vetoed, "by": by, "reason": reason})
        return approved, vetoed

    def start_experiment(self, experiment_id: int) -> int:
        """``proposed`` or ``interrupted`` -> ``running``, as a new attempt; returns the attempt number."""
        with self._write() as db:
            self._transition(db, experiment_id, State.RUNNING)
            attempt = db.execute("UPDATE experiments SET state = 'running', attempt = attempt + 1, "
                                 "started_at = ?, finished_at = NULL, cause = NULL WHERE id = ? RETURNING attempt",
                                 (now(), experiment_id)).fetchone()[0]
            self._event(db, "started", f"experiment {experiment_id} started (attempt {attempt})", experiment_id)
        return attempt

    def start_action(self, experiment_id: int, step: int, instrument: str, command: str,
                     params: Mapping[str, Any]) -> int:
        """Note that an instrument action begins (before it does); returns the action's id."""
        with self._write() as db:
            attempt = self._running_attempt(db, experiment_id, "an action")
            cur = db.execute("INSERT INTO actions (experiment_id, attempt, step, instrument, command, params_json, "
                             "started_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (experiment_id, attempt, step, instrument, command, _json(dict(params)), now()))
        return cur.lastrowid  # type: ignore[return-value]  # an INSERT always sets it

    def finish_action(self, action_id: int, outcome: str = "ok", params: Mapping[str, Any] | None = None) -> None:
        """Note how an action ended: ``"ok"`` or what went wrong (one line); with ``params``, its parameters as the
        action ended, which adds what it found out (a cv's scan, a dispense's volume as the pump reported it, a
        blank's judgement) to what was known as it started."""
        with self._write() as db:
            row = db.execute("SELECT finished_at FROM actions WHERE id = ?", (action_id,)).fetchone()
            if row is None:
                raise IllegalTransition(f"no action {action_id}")
            if row["finished_at"] is not None:
                raise IllegalTransition(f"action {action_id} has already finished")
            db.execute("UPDATE actions SET finished_at = ?, outcome = ?, params_json = COALESCE(?, params_json) "
                       "WHERE id = ?", (now(), outcome, None if params is None else _json(dict(params)), action_id))

    def record_raw(self, experiment_id: int, voltammogram: Voltammogram, rejected: str | None = None) -> int:
        """Store a measured voltammogram of the running attempt; returns its row id. ``rejected``: why the executor
        refused it (instruments/voltammogram.py ``returned_scan``: potentials in mV, a scan cut short, a NaN point,
        beyond the safety limits), kept in its row as :data:`REJECTED` and said by a :data:`REJECTED` event of the
        experiment in the same transaction. Why keep it: a real scan of a sample now used up (a factor of 1000 can be
        corrected later), which the attempt's failure lost. A rejected row is not the attempt's measurement: only
        :meth:`rejected_scans` reads it (a non-finite point is stored as null, which no :class:`Voltammogram` holds)."""
        stored = voltammogram.to_dict() if rejected is None else {**voltammogram.to_dict(), REJECTED: rejected}
        with self._write() as db:
            attempt = self._running_attempt(db, experiment_id, "raw data")
            cur = db.execute("INSERT INTO raw_data (experiment_id, attempt, voltammogram_json, created_at) "
                             "VALUES (?, ?, ?, ?)", (experiment_id, attempt, _json(stored), now()))
            if rejected is not None:
                message = (f"experiment {experiment_id}: a scan of attempt {attempt} ({len(voltammogram)} points) is "
                           "kept in the journal as returned, not analysed (voltammograms.csv of `labloop report`)")
                self._event(db, REJECTED, message, experiment_id,
                            {"attempt": attempt, "raw_data_id": cur.lastrowid, "reason": rejected})
        return cur.lastrowid  # type: ignore[return-value]

    def record_measurement(self, experiment_id: int, result: CVResult, potential_v: float | None,
                           lab: tuple[Mapping[str, Any], str] | None = None) -> None:
        """Store the analysis of the running attempt; ``potential_v`` is the objective quantity vs Li/Li+
        (None when the CV gave no usable potential). ``lab``: what the lab-grade steps measured (impedance spectrum,
        blanks, every scan rate's voltammogram and analysis, the ferrocene-referenced result), raw data included, and
        its one-line summary, journalled as a ``lab`` event of the experiment (:meth:`lab_record`) in the same
        transaction: a measurement is never journalled without the record its potential was referenced with, so a
        resume that finishes the experiment from it (:meth:`finish_measured`) has all of it."""
        with self._write() as db:
            attempt = self._running_attempt(db, experiment_id, "a measurement")
            db.execute("INSERT INTO measurements VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (experiment_id, attempt, potential_v, result.e_half_v, result.dep_v, result.reference,
                        _json(sorted(result.flags)), _json(result.to_dict()), now()))
            if lab is not None:
                record, summary = lab
                self._event(db, "lab", summary, experiment_id, {"attempt": attempt, **record})

    def record_lab(self, experiment_id: int, record: Mapping[str, Any], summary: str) -> None:
        """Store what the lab-grade steps of the running attempt measured when it ends without a measurement (a blank
        that stops the run, an instrument's error, a Ctrl-C: protocols/executor.py ``ProtocolExecutor.run``,
        ``on_ended_early``), as the ``lab`` event that :meth:`record_measurement` journals with a measurement
        (:meth:`lab_record` reads either). Why: the blanks of a run stopped for a person (every one, with its verdict)
        are the curves that person judges the cell by, the blanks, Ru and scans of a failed attempt what its failure
        is judged by, and the stop or the failure lost them."""
        with self._write() as db:
            attempt = self._running_attempt(db, experiment_id, "a lab record")
            self._event(db, "lab", summary, experiment_id, {"attempt": attempt, **record})

    def finish_experiment(self, experiment_id: int) -> None:
        """``running`` -> ``done``; the attempt must have its raw voltammogram and its measurement."""
        with self._write() as db:
            attempt = self._running_attempt(db, experiment_id, "finishing")
            for table in ("raw_data", "measurements"):
                if db.execute(f"SELECT 1 FROM {table} WHERE experiment_id = ? AND attempt = ?",
                              (experiment_id, attempt)).fetchone() is None:
                    raise IllegalTransition(f"experiment {experiment_id} cannot be done without {table} "
                                            f"for attempt {attempt}")
            db.execute("UPDATE experiments SET state = 'done', finished_at = ? WHERE id = ?", (now(), experiment_id))
            potential = db.execute("SELECT potential_v FROM measurements WHERE experiment_id = ? AND attempt = ?",
                                   (experiment_id, attempt)).fetchone()[0]
            self._event(db, "done", f"experiment {experiment_id} done: {self._said(potential)}", experiment_id)

    def finish_measured(self, experiment_id: int, cause: str | None = None) -> str:
        """``interrupted`` -> ``done`` (``cause`` None) or ``failed`` with ``cause`` (its measurement unusable), from
        the measurement its last attempt journalled before the run stopped in a step after it (a rinse, a wait:
        protocols/executor.py ``measured_after``); no new attempt starts. Why: that attempt measured all its protocol
        measures, and running it again spends a second aliquot of the sample on a molecule already measured (an
        operator's trial: a kill -9 in the rinse after the cv). Returns the event's message, which says so; the
        attempt must have its raw voltammogram and its measurement."""
        with self._write() as db:
            row = self._state(db, experiment_id)
            if row["state"] != State.INTERRUPTED:
                raise IllegalTransition(f"experiment {experiment_id} is {row['state']}; only an interrupted one is "
                                        "finished from its measurement")
            attempt = row["attempt"]
            measured = db.execute("SELECT potential_v FROM measurements WHERE experiment_id = ? AND attempt = ?",
                                  (experiment_id, attempt)).fetchone()
            if measured is None or db.execute("SELECT 1 FROM raw_data WHERE experiment_id = ? AND attempt = ?",
                                              (experiment_id, attempt)).fetchone() is None:
                raise IllegalTransition(f"experiment {experiment_id} has no measurement of attempt {attempt} to be "
                                        "finished from")
            state = State.DONE if cause is None else State.FAILED
            db.execute("UPDATE experiments SET state = ?, cause = ?, finished_at = ? WHERE id = ?",
                       (state.value, cause, now(), experiment_id))
            message = (f"experiment {experiment_id} done: {self._said(measured[0])}" if cause is None
                       else f"experiment {experiment_id} failed: {cause}")
            message += (f" (from attempt {attempt}'s measurement, journalled before the run stopped in a step after "
                        "it: not measured again)")
            self._event(db, state.value, message, experiment_id)
        return message

    def fail_experiment(self, experiment_id: int, cause: str) -> None:
        """``running`` -> ``failed`` with its cause (a typed instrument error, a failed analysis)."""
        with self._write() as db:
            self._running_attempt(db, experiment_id, "failing")
            db.execute("UPDATE experiments SET state = 'failed', cause = ?, finished_at = ? WHERE id = ?",
                       (cause, now(), experiment_id))
            self._event(db, "failed", f"experiment {experiment_id} failed: {cause}", experiment_id)

    def mark_interrupted_on_resume(self, *, crashed: bool = False) -> list[int]:
        """Every ``running`` experiment -> ``interrupted`` and its unfinished actions closed with outcome
        ``interrupted``, at once when the run stops. Returns the experiments' ids (to be run again).

        ``crashed``: the run ended without a word (``kill -9``, a power cut) and a resume closes them: when they
        ended is unknown, so they end at the last time the journal heard of the run (:data:`LAST_HEARD`), not at
        the resume, and the outcome says so."""
        with self._write() as db:
            ids = [row[0] for row in db.execute("SELECT id FROM experiments WHERE state = 'running' ORDER BY id")]
            stamp = db.execute(LAST_HEARD).fetchone()[0] if crashed else now()
            outcome = f"interrupted{CRASHED.format(stamp)}" if crashed else "interrupted"
            for experiment_id in ids:
                db.execute("UPDATE actions SET finished_at = ?, outcome = ? "
                           "WHERE experiment_id = ? AND finished_at IS NULL", (stamp, outcome, experiment_id))
                db.execute("UPDATE experiments SET state = 'interrupted', finished_at = ?, "
                           "cause = 'the run stopped during attempt ' || attempt WHERE id = ?", (stamp, experiment_id))
                self._event(db, "interrupted", f"experiment {experiment_id} was running when the run stopped"
                                               + (CRASHED.format(stamp) if crashed else ""), experiment_id)
        return ids

    # -- campaign-level records ------------------------------------------------------------------------

    def add_event(self, kind: str, message: str, data: Any = None, experiment_id: int | None = None) -> int:
        """Append an event (the log's "recent events"); returns its id."""
        with self._write() as db:
            return self._event(db, kind, message, experiment_id, data)

    def raw_count(self) -> int:
        """How many voltammograms the journal holds that an uninterrupted run would hold too (a resumed dry run's
        simulated reference electrode continues its walk from there, sim/world.py ``World.resume_at``): those of
        every experiment's current attempt, but for an attempt that runs again (``running`` or ``interrupted``
        without its measurement). The voltammogram of an attempt stopped before its measurement was complete is
        kept (:meth:`unmeasured_attempts`), and measured again by the next attempt, which the uninterrupted run
        measured once."""
        return int(self._read(
            "SELECT COUNT(*) FROM raw_data r JOIN experiments e ON e.id = r.experiment_id AND e.attempt = r.attempt "
            "WHERE e.state NOT IN ('running', 'interrupted') OR EXISTS (SELECT 1 FROM measurements m WHERE "
            "m.experiment_id = r.experiment_id AND m.attempt = r.attempt)")[0][0])

    def unmeasured_attempts(self, experiment_id: int) -> list[int]:
        """The attempts of an experiment whose voltammogram the journal keeps without a measurement: each ended (a
        kill, a Ctrl-C, a fault of the rig) after its cv but before the steps its measurement depends on had run (an
        add_standard and its scan); an interrupted one's molecule is measured again by the next attempt. The resume
        and ``labloop log`` say so: a good voltammogram recorded and set aside must not go unsaid. The running
        attempt's, between its cv and its measurement, counts too."""
        return [row[0] for row in self._read(
            "SELECT DISTINCT r.attempt FROM raw_data r LEFT JOIN measurements m ON m.experiment_id = r.experiment_id "
            "AND m.attempt = r.attempt WHERE r.experiment_id = ? AND m.experiment_id IS NULL ORDER BY r.attempt",
            (experiment_id,))]

    def lab_record(self, experiment_id: int) -> dict[str, Any] | None:
        """The lab-grade measurements of the experiment's current attempt (:meth:`record_measurement`, or
        :meth:`record_lab` for one that ended without a measurement), or None."""
        rows = self._read("SELECT e.id, e.data_json, x.attempt FROM events e JOIN experiments x ON x.id = "
                          "e.experiment_id WHERE e.kind = 'lab' AND e.experiment_id = ? ORDER BY e.id DESC",
                          (experiment_id,))
        return next((data for data, attempt in ((self._decoded(row[1], f"events row {row[0]}", "data_json", dict),
                                                 row[2]) for row in rows)
                     if data.get("attempt") == attempt), None)

    def add_model_version(self, n_train: int, metrics: Mapping[str, Any], weights_path: str | Path | None = None,
                          *, cached: bool = False) -> int:
        """Record a trained surrogate; returns its version number (1, 2, ...). The weights' folder is kept as
        an absolute path: a resume started from another working directory must find it. ``cached``: the model
        was loaded from the folder's cache of prior models, not trained by this run (the event says which)."""
        path = None if weights_path is None else str(Path(weights_path).absolute())
        how = f"trained on {n_train} molecules"
        how = f"loaded from cache ({how} earlier)" if cached else how
        with self._write() as db:
            cur = db.execute("INSERT INTO model_versions (created_at, n_train, metrics_json, weights_path) "
                             "VALUES (?, ?, ?, ?)", (now(), n_train, _json(dict(metrics)), path))
            self._event(db, "model", f"model version {cur.lastrowid} {how}", data={"version": cur.lastrowid})
        return cur.lastrowid  # type: ignore[return-value]

    def save_planner_state(self, step: int, state: Mapping[str, Any]) -> None:
        """Keep the planner's state after ``step`` (a resumed run reloads the latest), in place of the earlier ones in
        the same transaction. Why: nothing reads an earlier one, and each holds every observation so far, so the table
        grew with the square of the campaign: 29 MB of a 1,000-experiment journal, 2.9 GB projected at 10,000 (a
        long-campaign trial). What a state holds is rebuilt from the journal's rows (orchestrator/loop/runner.py)."""
        with self._write() as db:
            db.execute("DELETE FROM planner_state WHERE step < ?", (step,))
            db.execute("INSERT INTO planner_state VALUES (?, ?, ?)", (step, _json(dict(state)), now()))

    def _said(self, potential_v: float | None) -> str:
        """A done experiment's potential as its event says it, to the digits the objective's hit edges need
        (:func:`hit_edges`, read once)."""
        if potential_v is None:
            return "no potential"
        if self._hit_edges is None:
            self._hit_edges = hit_edges(self.campaign_info().config["objective"])
        return f"{potential_said(potential_v, self._hit_edges)} V vs Li/Li+"

    # -- helpers inside a transaction -----------------------------------------------------------------

    def _state(self, db: sqlite3.Connection, experiment_id: int) -> sqlite3.Row:
        row = db.execute("SELECT state, attempt FROM experiments WHERE id = ?", (experiment_id,)).fetchone()
        if row is None:
            raise IllegalTransition(f"no experiment {experiment_id}")
        return row

    def _transition(self, db: sqlite3.Connection, experiment_id: int, to: State) -> None:
        state = self._state(db, experiment_id)["state"]
        if state not in _FROM[to]:
            raise IllegalTransition(f"experiment {experiment_id} is {state}; it cannot become {to}")

    def _running_attempt(self, db: sqlite3.Connection, experiment_id: int, what: str) -> int:
        row = self._state(db, experiment_id)
        if row["state"] != State.RUNNING:
            raise IllegalTransition(f"experiment {experiment_id} is {row['state']}; {what} needs it running")
        return row["attempt"]

    @staticmethod
    def _event(db: sqlite3.Connection, kind: str, message: str, experiment_id: int | None = None,
               data: Any = None) -> int:
        cur = db.execute("INSERT INTO events (time, kind, message, experiment_id, data_json) VALUES (?, ?, ?, ?, ?)",
                         (now(), kind, message, experiment_id, None if data is None else _json(data)))
        return cur.lastrowid  # type: ignore[return-value]

    # -- readers ---------------------------------------------------------------------------------------

    def _decoded(self, text: str, row: str, column: str, build: Callable[[Any], T] = _as_is) -> T:
        """``build(json.loads(text))`` of ``column`` of the journal's ``row`` (``"actions row 7"``): a value that
        is not JSON, or not what the column holds (a row changed by hand, a disk that flipped bits), is one
        :class:`JournalError` naming the table, row and column, never a decoder's traceback."""
        try:
            return build(json.loads(text, parse_float=_finite_float, parse_constant=_no_constant))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise self._damaged(row, column, f"does not hold what labloop wrote there ({first_line(exc)})") from None

    def _damaged(self, row: str, column: str, why: str) -> JournalError:
        """The one line for a row that does not hold what labloop wrote (changed by hand or by another tool, or a
        disk that flipped bits): the journal, the table and row, the column, and what is wrong."""
        return JournalError(f"{self.path}: the journal is damaged: {row}, column {column}, {why}; restore the file "
                            "from a backup")

    def _checked(self, row: sqlite3.Row, where: str, kinds: Mapping[str, str]) -> sqlite3.Row:
        """``row`` once each column in ``kinds`` holds its kind (:data:`_KINDS`), named ``where`` (``"proposals row
        of experiment 3"``) if not: the one place where the readers' numbers, ids and times are checked, so ``log``,
        ``report``, ``resume`` and the dashboard never compute with text, a negative sigma or an infinite
        potential, nor print ``NaN`` into ``log --json``."""
        for column, kind in kinds.items():
            value = row[column]
            if value is None and kind.endswith("?"):
                continue
            why = "is empty" if value is None else _KINDS[kind.rstrip("?")](value)
            if why is not None:
                raise self._damaged(where, column, why)
        return row

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            self._unfix()
            try:
                return self._conn.execute(sql, args).fetchall()
            except sqlite3.DatabaseError as exc:
                raise journal_error(self.path, exc) from None

    def _unfix(self) -> None:
        """Open again as any reader's a journal read as a fixed file in a folder this user may not write (on a
        read-only medium nothing can write it) once a run has it open (a ``-wal`` beside it): checked before every
        read, since a fixed file's reader takes no lock and would read pages the run's checkpoint is writing, and the
        dashboard of a finished campaign would never have shown its resume."""
        if not self._fixed or not _wal_of(self.path).exists():
            return
        try:
            conn, self._fixed = _connect(self.path, readonly=True)
        except sqlite3.DatabaseError as exc:
            raise journal_error(self.path, exc) from None
        conn.execute("PRAGMA foreign_keys = ON")
        self._conn.close()
        self._conn = conn
        log.info("%s: a run has the journal open: read as it writes", self.path)

    def data_version(self) -> int:
        """Changes whenever another connection commits (cheap polling for ``log --follow`` and the dashboard)."""
        return self._read("PRAGMA data_version")[0][0]

    def extend_budget(self, max_experiments: int) -> None:
        """Set the campaign's ``budget.max_experiments`` (``labloop resume --max-experiments``): the stored
        config changes with an event saying from what to what, in one transaction, so a later resume and
        ``labloop log`` see the new budget."""
        with self._write() as db:
            config = json.loads(db.execute("SELECT config_json FROM campaign WHERE id = 1").fetchone()[0])
            before = config["budget"]["max_experiments"]
            config["budget"]["max_experiments"] = max_experiments
            db.execute("UPDATE campaign SET config_json = ? WHERE id = 1", (_json(config),))
            self._event(db, "budget", f"budget.max_experiments {before} -> {max_experiments} (labloop resume "
                                      "--max-experiments)", None, {"before": before, "after": max_experiments})

    def move_port(self, instrument: str, port: str) -> str | None:
        """Set ``instrument``'s serial port in the campaign's config (``labloop resume --port``): a USB adapter
        plugged in again often comes back under another name, and the journal's port was then refused as missing
        with no way on but a new store. The config changes with an event saying from what to what, in one
        transaction, as :meth:`extend_budget`'s does. Returns the port it was."""
        with self._write() as db:
            config = json.loads(db.execute("SELECT config_json FROM campaign WHERE id = 1").fetchone()[0])
            before = config["instruments"][instrument].get("port")
            config["instruments"][instrument]["port"] = port
            db.execute("UPDATE campaign SET config_json = ? WHERE id = 1", (_json(config),))
            self._event(db, "port", f"instruments.{instrument}.port {before} -> {port} (labloop resume --port)",
                        None, {"instrument": instrument, "before": before, "after": port})
        return before

    def record_move(self, relocated: Mapping[str, str]) -> str:
        """The store is not where its campaign says (``labloop resume`` of a moved or copied store): its config's
        ``store`` and the files found beside it (``relocated``, old path -> new, from the campaign's validation),
        and the model folders found beside it, are set to where they are now, with an event saying from where, in
        one transaction, as :meth:`move_port`'s does. A later resume, ``log`` and ``run`` of the campaign file
        there then read them as they are. Returns the event's message."""
        here = str(self.path.absolute())
        versions = self.model_versions()  # read whole first: a damaged row is refused before anything is written
        with self._write() as db:
            config = json.loads(db.execute("SELECT config_json FROM campaign WHERE id = 1").fetchone()[0])
            before = Path(config["store"])
            config = _with_strings_replaced(config, {**relocated, str(before): here})
            db.execute("UPDATE campaign SET config_json = ? WHERE id = 1", (_json(config),))
            models: dict[str, str] = {}
            for row in versions:
                weights = row.weights_path
                if weights and (now_at := moved_along(Path(weights), before.parent, Path(here).parent)) is not None:
                    models[weights] = str(now_at)
                    db.execute("UPDATE model_versions SET weights_path = ? WHERE version = ?",
                               (str(now_at), row.version))
            found = [new for old, new in relocated.items() if old != str(before)]
            found += [f"{len(models)} model {plural(len(models), 'folder')}"] if models else []
            message = f"the store moved: {before} -> {here}" + (f"; found beside it: {', '.join(found)}" if found
                                                                 else "")
            self._event(db, "moved", message, None,
                        {"before": str(before), "after": here, "files": dict(relocated), "models": models})
        return message

    def campaign_info(self) -> CampaignInfo:
        rows = self._read("SELECT * FROM campaign WHERE id = 1")
        if not rows:
            raise JournalError(f"{self.path}: the journal's campaign record is damaged (no readable config)")
        row = self._checked(rows[0], "campaign row 1", {"name": "text", "seed": "integer", "created_at": "time"})
        config = self._decoded(row["config_json"], "campaign row 1", "config_json", _campaign_config)
        return CampaignInfo(row["name"], row["seed"], row["code_version"], row["created_at"], config,
                            row["source_yaml"])

    def experiments(self, states: Sequence[str] | None = None) -> list[ExperimentRow]:
        """Experiments in id order (optionally only those in ``states``), with proposal and measurement."""
        where = f"WHERE e.state IN ({', '.join('?' * len(states))})" if states else ""
        rows = self._read(
            "SELECT e.*, p.step, p.planner, p.conditions_json, p.mu, p.sigma, p.acquisition, p.model_version, "
            "m.potential_v, m.e_half_v, m.dep_v, m.reference, m.flags_json, m.result_json FROM experiments e "
            "LEFT JOIN proposals p ON p.experiment_id = e.id "
            f"LEFT JOIN measurements m ON m.experiment_id = e.id AND m.attempt = e.attempt {where} ORDER BY e.id",
            list(states or ()))
        return [self._experiment(r) for r in rows]

    def _experiment(self, r: sqlite3.Row) -> ExperimentRow:
        """One row of :meth:`experiments`' query (an experiment joined with its proposal and measurement), checked."""
        proposal = f"proposals row of experiment {r['id']}"
        measurement = f"measurements row of experiment {r['id']} (attempt {r['attempt']})"
        self._checked(r, f"experiments row {r['id']}", _EXPERIMENT_COLUMNS)
        self._checked(r, proposal, _PROPOSAL_COLUMNS)
        self._checked(r, measurement, _MEASUREMENT_COLUMNS)
        analysis = {} if r["result_json"] is None else self._decoded(r["result_json"], measurement, "result_json", dict)
        peaks: dict[str, Any] = {name: value if isinstance(value := analysis.get(name), float | int)
                                 and not isinstance(value, bool) else None
                                 for name in ("ipa_a", "ipc_a", "ratio", "return_share")}
        flags = self._decoded(r["flags_json"] or "[]", measurement, "flags_json", _strings)
        peaks["reversibility"] = judged_reversibility({**analysis, "flags": flags})
        return ExperimentRow(
            id=r["id"], smiles=r["smiles"], status=r["state"], cause=r["cause"], attempt=r["attempt"],
            created_at=r["created_at"], started_at=r["started_at"], finished_at=r["finished_at"], step=r["step"],
            planner=r["planner"], conditions=self._decoded(r["conditions_json"] or "{}", proposal, "conditions_json",
                                                           dict),
            mu=r["mu"], sigma=r["sigma"], acquisition=r["acquisition"], model_version=r["model_version"],
            potential_v=r["potential_v"], e_half_v=r["e_half_v"], dep_v=r["dep_v"], reference=r["reference"],
            flags=flags, **peaks,
        )

    def actions(self, experiment_id: int) -> list[ActionRow]:
        """Every action of every attempt of one experiment, in order."""
        return [ActionRow(r["id"], r["experiment_id"], r["attempt"], r["step"], r["instrument"], r["command"],
                          self._decoded(r["params_json"], f"actions row {r['id']}", "params_json", dict),
                          r["started_at"], r["finished_at"], r["outcome"])
                for r in (self._checked(row, f"actions row {row['id']}", _ACTION_COLUMNS) for row in
                          self._read("SELECT * FROM actions WHERE experiment_id = ? ORDER BY id", (experiment_id,)))]

    def retried(self) -> dict[int, dict[str, dict[str, int]]]:
        """What the drivers repeated after faults in each experiment's current attempt, summed over its steps: ``{id:
        {instrument: {fault type: times}}}`` from its actions' ``retried`` (protocols/executor.py ``_note_repeats``),
        only experiments that have some. Why: a scan run again after a timeout ran in a cell already scanned part
        way, and the run said so on its console alone; ``log`` and the report showed nothing (a newcomer's trial)."""
        found: dict[int, dict[str, dict[str, int]]] = {}
        for row in self._read("SELECT a.id, a.experiment_id, a.params_json FROM actions a JOIN experiments e ON "
                              "e.id = a.experiment_id AND e.attempt = a.attempt WHERE a.params_json LIKE "
                              "'%\"retried\"%' ORDER BY a.id"):
            params = self._decoded(row["params_json"], f"actions row {row['id']}", "params_json", dict)
            for name, kinds in (params.get("retried") or {}).items():
                counts = found.setdefault(row["experiment_id"], {}).setdefault(str(name), {})
                for kind, times in (kinds or {}).items():
                    counts[str(kind)] = counts.get(str(kind), 0) + int(times)
        return found

    def sample_ids(self) -> dict[int, str]:
        """The sample id (the vial's label) each experiment's last ``load_sample`` loaded, by experiment id. Why: the
        vial is what a chemist holds, and no output named it, so results could not be matched to vials (a chemist's
        trial)."""
        found: dict[int, str] = {}
        for row in self._read("SELECT id, experiment_id, params_json FROM actions WHERE command = 'load_sample' "
                              "ORDER BY id"):
            params = self._decoded(row["params_json"], f"actions row {row['id']}", "params_json", dict)
            if isinstance(params.get("sample_id"), str):
                found[row["experiment_id"]] = params["sample_id"]
        return found

    def voltammograms(self, experiment_id: int) -> list[Voltammogram]:
        """The raw voltammograms of the experiment's current attempt, in order, but those the executor rejected
        (:meth:`rejected_scans`)."""
        scans = (self._decoded(text, row, "voltammogram_json", _analysed)
                 for row, text in self._raw_rows(experiment_id))
        return [scan for scan in scans if scan is not None]

    def rejected_scans(self, experiment_id: int) -> list[tuple[str, dict[str, Any]]]:
        """The scans of the experiment's current attempt that the executor rejected (:meth:`record_raw`), in order:
        (why, the voltammogram's stored form: ``Voltammogram.to_dict`` with a non-finite point as null)."""
        stored = (self._decoded(text, row, "voltammogram_json", dict) for row, text in self._raw_rows(experiment_id))
        return [(str(data[REJECTED]), data) for data in stored if REJECTED in data]

    def _raw_rows(self, experiment_id: int) -> list[tuple[str, str]]:
        """(``raw_data row N``, its JSON) of the experiment's current attempt, in order."""
        rows = self._read("SELECT r.id, r.voltammogram_json FROM raw_data r JOIN experiments e ON e.id = "
                          "r.experiment_id AND e.attempt = r.attempt WHERE r.experiment_id = ? ORDER BY r.id",
                          (experiment_id,))
        return [(f"raw_data row {r[0]}", r[1]) for r in rows]

    def analysis(self, experiment_id: int) -> CVResult | None:
        """The full CV analysis of the experiment's current attempt, if measured."""
        rows = self._read("SELECT m.result_json, m.attempt FROM measurements m JOIN experiments e ON e.id = "
                          "m.experiment_id AND e.attempt = m.attempt WHERE m.experiment_id = ?", (experiment_id,))
        if not rows:
            return None
        return self._decoded(rows[0][0], f"measurements row of experiment {experiment_id} (attempt {rows[0][1]})",
                             "result_json", CVResult.from_dict)

    def model_versions(self) -> list[ModelVersion]:
        pruned = {version for e in self.events(kinds=(PRUNED,)) if isinstance(e.data, dict)
                  for version in e.data.get("versions", ())}
        return [ModelVersion(r["version"], r["created_at"], r["n_train"],
                             self._decoded(r["metrics_json"], f"model_versions row {r['version']}", "metrics_json",
                                           dict), r["weights_path"], r["version"] in pruned)
                for r in (self._checked(row, f"model_versions row {row['version']}", _MODEL_COLUMNS)
                          for row in self._read("SELECT * FROM model_versions ORDER BY version"))]

    def past_measurements(self) -> list[tuple[str, float]]:
        """The campaign's past measurements, (SMILES, potential V vs Li/Li+) in the table's order, as journalled when
        the journal was created (:meth:`create`); empty for a campaign without them."""
        return [(str(smiles), float(potential)) for smiles, potential in self._past().get("measurements", ())]

    def past_bounds(self) -> list[tuple[str, float, int]]:
        """The past measurements' bounds, (SMILES, bound V vs Li/Li+, +1 above / -1 below) in the table's order (a
        row such as ``>5.1``: :meth:`past_measurements`); empty for a campaign without them or a journal from before
        labloop read bounds."""
        return [(str(smiles), float(bound), int(side)) for smiles, bound, side in self._past().get("bounds", ())]

    def past_source(self) -> dict[str, Any]:
        """Where the past measurements came from, as journalled when the journal was created (file, column, the
        offset added, SHA-256, row counts: :meth:`labloop.orchestrator.potential_table.Past.journalled`), without
        the values themselves; {} for a campaign without them."""
        return {k: v for k, v in self._past().items() if k not in ("measurements", "bounds")}

    def _past(self) -> dict[str, Any]:
        """The ``past_measurements`` event's data, {} for a campaign without one."""
        found = self.events(kinds=(PAST_MEASUREMENTS,))
        return found[0].data if found and isinstance(found[0].data, dict) else {}

    def latest_planner_state(self) -> tuple[int, dict[str, Any]] | None:
        """(step, state) saved last, or None before the first planner step."""
        rows = self._read("SELECT step, state_json FROM planner_state ORDER BY step DESC LIMIT 1")
        if not rows:
            return None
        step = rows[0]["step"]
        return step, self._decoded(rows[0]["state_json"], f"planner_state row {step}", "state_json", dict)

    def last_heard(self) -> str | None:
        """When the journal was last written, of any kind (:data:`LAST_HEARD`: events, actions, experiments started,
        raw data): the time a run killed without a word did last, which a resume closes its open actions at. The
        dashboard's "nothing written for ..." reads it too: the last event alone was minutes older than the actions
        of a cv that was running when the run was killed (an operator's trial). None for a journal never written."""
        return self._read(LAST_HEARD)[0][0]

    def count_events(self, kind: str) -> int:
        """How many events of ``kind`` the journal holds (``run``: how many runs have written it), counted without
        decoding any event (a lab event holds raw voltammograms)."""
        return int(self._read("SELECT COUNT(*) FROM events WHERE kind = ?", (kind,))[0][0])

    def events(self, last: int | None = None, kinds: Sequence[str] | None = None) -> list[Event]:
        """Events in order; only the ``last`` ones when given, only those of ``kinds`` when given (selected in SQL:
        a check that reads the runs' events decodes no lab event's raw voltammograms)."""
        where = f" WHERE kind IN ({', '.join('?' * len(kinds))})" if kinds is not None else ""
        sql = f"SELECT * FROM events{where} ORDER BY id DESC" + (" LIMIT ?" if last is not None else "")
        rows = self._read(sql, (*(kinds or ()), *((last,) if last is not None else ())))
        return [Event(r["id"], r["time"], r["kind"], r["message"], r["experiment_id"],
                      None if r["data_json"] is None else self._decoded(r["data_json"], f"events row {r['id']}",
                                                                        "data_json"))
                for r in (self._checked(row, f"events row {row['id']}", _EVENT_COLUMNS) for row in reversed(rows))]
