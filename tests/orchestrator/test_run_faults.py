"""What a run does when something other than a typed instrument error goes wrong (issue 17, causes 3, 4,
8-11, 13): a plug-in's untyped exception is journalled as the experiment's failure and the run goes on; a
proposal refused by the safety limits fails only that molecule; a safe state that fails is reported, not
claimed; a damaged or moved-from journal is one line; validate refuses what run would."""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import logging
import os
import re
import select
import shutil
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import pytest
import yaml

from labloop.core.errors import SAID_CHARS, Disconnected, said
from labloop.orchestrator.compose import build_executor, build_rig, build_world
from labloop.orchestrator.config.campaign import load_campaign
from labloop.orchestrator.journal.store import Journal, State
from labloop.orchestrator.loop.interrupts import EXIT_INTERRUPTED, Interrupted, Interrupts
from labloop.orchestrator.loop.rig import Rig
from labloop.orchestrator.loop.runner import EXIT_FAULTS, EXIT_OK, Runner, _stopped_after_pumping
from labloop.orchestrator.report import write_report
from labloop.protocols.executor import ProtocolExecutor
from labloop.sim.faults import FaultInjector, FaultKind, FaultPlan
from labloop.surrogate.dataset import read_table

DATA = Path(__file__).resolve().parents[2] / "data" / "ocelot_chromophore_v1_ie_ea.csv"
EXAMPLES = DATA.parents[1] / "examples"


#: a plug-in potentiostat with a bug: its second CV raises RuntimeError (nothing real raises that on purpose, so
#: this is the one fault a test must inject); a module outside labloop's folder, as an installed plug-in's is
BUGGY_PLUGIN = """
class BuggyPotentiostat:
    def __init__(self, inner):
        self.inner = inner
        self.calls = 0

    def run_cv(self, params):
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("plug-in bug: list index out of range")
        return self.inner.run_cv(params)

    def abort(self):
        self.inner.abort()

    def close(self):
        self.inner.close()
"""


def test_a_plugins_huge_message_is_cut_in_its_console_line():
    """The console line of a plug-in's bug quotes its exception (``said(exc, SAID_CHARS)``), cut with an ellipsis:
    a vendor library's message may be a page, and the journal keeps it whole."""
    line = said(RuntimeError("vendor DLL said: " + "0xDEADBEEF " * 500), SAID_CHARS)
    assert len(line) == SAID_CHARS and line.startswith("RuntimeError: vendor DLL said: 0xDEADBEEF") and line[-1] == "…"
    assert said(RuntimeError("short"), SAID_CHARS) == "RuntimeError: short"


def test_an_untyped_error_of_a_plugin_fails_its_experiment_and_the_run_goes_on(tmp_path, write_campaign, caplog,
                                                                              monkeypatch):
    """The failure names the campaign's instrument and step (a plug-in's own message may name only its port),
    and the log says whose bug it is in one line: the traceback only at -v (a trial saw 25 lines, twice)."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "buggy_plugin.py").write_text(BUGGY_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    from buggy_plugin import BuggyPotentiostat

    campaign = load_campaign(write_campaign(tmp_path, budget={"max_experiments": 4}))
    library = read_table(campaign.library.file).smiles
    with build_rig(campaign, dry_run=True, library=library) as rig, \
            Journal.create(campaign.store, campaign) as journal, Interrupts() as interrupts:
        rig.instruments["potentiostat"] = BuggyPotentiostat(rig.instruments["potentiostat"])
        runner = Runner(campaign, journal, rig, build_executor(campaign, rig), library, None, interrupts)
        assert runner.run() == EXIT_OK
        failed = [e for e in journal.experiments(states=(State.FAILED,)) if not e.cause.startswith("analysis:")]
        assert [e.cause for e in failed] == ["a bug in driver 'emstat': potentiostat (cv): RuntimeError: plug-in bug: "
                                             "list index out of range"]
        said = [r for r in caplog.records if r.levelname == "ERROR"]
        assert [r.getMessage() for r in said] == [
            f"experiment {failed[0].id}: potentiostat raised RuntimeError: plug-in bug: list index out of range, not "
            "an instrument error: a bug in driver 'emstat' (run with -v for the traceback)"]  # its message too
        assert said[0].exc_info is None
        assert len(journal.experiments(states=(State.DONE,))) == 4  # the run went on to its budget
        assert not journal.experiments(states=(State.RUNNING,))
        cv = [a for a in journal.actions(failed[0].id) if a.command == "cv"]
        assert cv[0].outcome.startswith("RuntimeError") and cv[0].finished_at  # the action is closed too
        write_report(journal, tmp_path / "report")  # the report's failures say the kind: the step and the error
    with (tmp_path / "report" / "failures.csv").open() as handle:
        assert [(r["kind"], r["cause"]) for r in csv.DictReader(handle) if r["id"] == str(failed[0].id)] == [
            ("a bug in driver 'emstat': potentiostat (cv): RuntimeError", failed[0].cause)]


class _GarbleOnce(FaultInjector):
    """An emulator's faults: the first reply ``struck`` picks garbled once by ``garbled`` (a bit flipped, unless given),
    after the health check; no other fault (the sim's garble at a rate would strike the identify and abort replies,
    and every retry)."""

    def __init__(self, struck: Callable[[bytes], bool], garbled: Callable[[bytes], bytes] | None = None) -> None:
        super().__init__(FaultPlan())
        self.left = 1
        self._struck, self._garbled = struck, garbled

    def decide(self, kind: FaultKind) -> bool:
        return kind is FaultKind.GARBLE and self.left > 0

    def garble(self, data: bytes) -> bytes:
        if self.left == 0 or not self._struck(data):
            return data
        self.left = 0
        return super().garble(data) if self._garbled is None else self._garbled(data)


def test_a_scan_the_driver_ran_again_after_a_fault_is_journalled_with_its_action(tmp_path, write_campaign, caplog):
    """The EmStat driver runs a scan again after a garbled line or a timeout: the cell was then scanned part way,
    with no rest, before the voltammogram kept, and the journal held one scan and nothing of the retry (a
    data-integrity trial). The cv's action now says what its drivers repeated, and the log says it."""
    campaign = load_campaign(write_campaign(tmp_path, budget={"max_experiments": 2}))
    library = read_table(campaign.library.file).smiles
    with build_rig(campaign, dry_run=True, library=library) as rig, \
            Journal.create(campaign.store, campaign) as journal, Interrupts() as interrupts:
        device = rig.simulation.emulations["potentiostat"].device
        device.faults = injector = _GarbleOnce(lambda data: data.startswith(b"P"))  # a scan's data package
        assert Runner(campaign, journal, rig, build_executor(campaign, rig), library, None, interrupts).run() == EXIT_OK
        assert injector.left == 0  # the fault struck
        cvs = [a for e in journal.experiments() for a in journal.actions(e.id) if a.command == "cv"]
        assert len(cvs) == 2 and all(a.outcome == "ok" for a in cvs)
        assert [a.params.get("retried") for a in cvs] == [{"potentiostat": {"ProtocolError": 1}}, None]
        assert device.received.count(b"meas_loop_cv") == 3  # the scan ran again: one more script than cvs
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "repeated" in r.getMessage()]
    assert len(warned) == 1 and "potentiostat: ProtocolError x1" in warned[0] and "the cv step" in warned[0]
    assert "peak currents may read low" in warned[0]  # a potentiostat repeated: its scan may have, too


def _infused_count(data: bytes) -> bool:
    """A reply of address 00 to ``DIS`` once the pump has infused: a query the line repeats, in the dispense step."""
    return data.startswith(b"\x0200") and (b"UL\x03" in data or b"ML\x03" in data) and b"I0.000" not in data


def test_a_pump_command_its_line_repeated_is_journalled_with_the_pumps_step(tmp_path, write_campaign):
    """The NE-1000's repeats were counted on the line's bus, shared by the pumps on it, and never journalled: a noisy
    line's 48 repeats were nowhere (a hardware trial). Each pump's repeats are its own, and its step's action says
    them."""
    campaign = load_campaign(write_campaign(tmp_path, budget={"max_experiments": 1}))
    library = read_table(campaign.library.file).smiles
    with build_rig(campaign, dry_run=True, library=library) as rig, \
            Journal.create(campaign.store, campaign) as journal, Interrupts() as interrupts:
        device = rig.simulation.emulations["analyte_pump"].device  # the line the two pumps share
        # the volume unit garbled, so the reply is refused and repeated (a flipped digit may pass as a number)
        device.faults = injector = _GarbleOnce(_infused_count, lambda data: data.replace(b"L\x03", b"Q\x03"))
        assert Runner(campaign, journal, rig, build_executor(campaign, rig), library, None, interrupts).run() == EXIT_OK
        assert injector.left == 0  # the fault struck
        [experiment] = journal.experiments()
        retried = {a.params["pump"]: a.params.get("retried") for a in journal.actions(experiment.id)
                   if a.command == "dispense"}
    assert retried == {"analyte_pump": {"analyte_pump": {"ProtocolError": 1}}, "electrolyte_pump": None}


def _runner_with_a_buggy_potentiostat(tmp_path: Path, campaign_file: Path, monkeypatch,
                                      interrupts: Interrupts, stack: contextlib.ExitStack) -> tuple[Runner, Journal]:
    """A dry-run Runner of ``campaign_file`` whose potentiostat's second cv raises (:data:`BUGGY_PLUGIN`)."""
    (tmp_path / "site").mkdir(exist_ok=True)
    (tmp_path / "site" / "buggy_plugin.py").write_text(BUGGY_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    from buggy_plugin import BuggyPotentiostat

    campaign = load_campaign(campaign_file)
    library = read_table(campaign.library.file).smiles
    rig = stack.enter_context(build_rig(campaign, dry_run=True, library=library))
    journal = stack.enter_context(Journal.create(campaign.store, campaign))
    journal.add_event("run", "run started (dry run on emulators)", data={"dry_run": True})  # as `run` says
    rig.instruments["potentiostat"] = BuggyPotentiostat(rig.instruments["potentiostat"])
    return Runner(campaign, journal, rig, build_executor(campaign, rig), library, None, interrupts), journal


def test_a_failed_experiments_liquid_is_rinsed_out_before_the_next_molecule(tmp_path, write_campaign, monkeypatch):
    """A newcomer's plug-in potentiostat failed one cv: the next molecule was dispensed onto the failed one's
    5 mL and the failed molecule's potential recorded as its own, unflagged. The protocol's rinse now empties
    the cell after a failure that left liquid, journalled as the failed experiment's action."""
    campaign_file = write_campaign(tmp_path, budget={"max_experiments": 4})
    world = build_world(load_campaign(campaign_file))
    with contextlib.ExitStack() as stack, Interrupts() as interrupts:
        runner, journal = _runner_with_a_buggy_potentiostat(tmp_path, campaign_file, monkeypatch, interrupts, stack)
        assert runner.run() == EXIT_OK
        [failed] = [e for e in journal.experiments(states=(State.FAILED,)) if not e.cause.startswith("analysis:")]
        *_, last = journal.actions(failed.id)
        assert (last.command, last.outcome, last.params) == ("rinse", "ok", {"after_failure": True})
        later = [e for e in journal.experiments(states=(State.DONE,)) if e.id > failed.id]
        # each reads its own potential, within what the analysis makes of a slow couple (one read 33 mV off), and
        # none the failed molecule's, onto whose liquid it would have been dispensed
        assert later and all(abs(e.potential_v - world.truth_v(e.smiles)) < 0.05 for e in later)
        assert all(abs(e.potential_v - world.truth_v(e.smiles)) < abs(e.potential_v - world.truth_v(failed.smiles))
                   for e in later if e.smiles != failed.smiles)
        assert runner.executor.contents.cell_ml == 0


def test_a_failed_experiments_liquid_without_a_rinse_stops_the_run_for_a_person(tmp_path, write_campaign,
                                                                                 monkeypatch, labloop):
    """A protocol without a rinse cannot empty the cell itself: the next experiment is refused before it pumps
    (the run stops for a person, as for an interrupted experiment's liquid), and a resume is refused the same
    way until ``--cell-emptied``; after that, neither that failure nor the analysis failures of a protocol that
    leaves its liquid by design refuse a later resume (a review found every later resume refused)."""
    steps = yaml.safe_load((EXAMPLES / "protocols" / "cv_screen.yaml").read_text())
    (tmp_path / "no_rinse.yaml").write_text(yaml.safe_dump(steps[:-1]))
    campaign_file = write_campaign(tmp_path, budget={"max_experiments": 4}, protocol=str(tmp_path / "no_rinse.yaml"),
                                   safety={"cell_volume_ml": 100})
    with contextlib.ExitStack() as stack, Interrupts() as interrupts:
        runner, journal = _runner_with_a_buggy_potentiostat(tmp_path, campaign_file, monkeypatch, interrupts, stack)
        assert runner.run() == EXIT_FAULTS
        [failed] = journal.experiments(states=(State.FAILED,))
        stopped = [e for e in journal.events() if e.kind == "stopped"]
        # the cause where it happened, as every one-line error says it, not its class name ("RigNotReady: cell: ...")
        assert re.match(f"cell: it holds [0-9.]+ mL by labloop's count, with what failed experiment {failed.id} "
                        "pumped before it stopped", stopped[-1].message), stopped[-1].message
        assert "--cell-emptied" in stopped[-1].data["advice"]
        [waiting] = journal.experiments(states=(State.INTERRUPTED,))
        assert not journal.actions(waiting.id)  # refused before anything moved
    with Journal.open(tmp_path / "tiny.db") as journal, Interrupts() as interrupts:
        campaign = load_campaign(campaign_file)
        library = read_table(campaign.library.file).smiles
        with build_rig(campaign, dry_run=True, library=library) as rig:
            resumed = Runner(campaign, journal, rig, build_executor(campaign, rig), library, None, interrupts)
            assert resumed.executor.left_liquid == {failed.id: State.FAILED}
    refused = labloop("resume", tmp_path / "tiny.db")
    # after the protocol's own warning that nothing empties the cell (protocols/executor.py unemptied_cell)
    assert refused.returncode == 2 and re.search(f"^error: cell: it holds [0-9.]+ mL by labloop's count, with what "
                                                 f"failed experiment {failed.id} pumped", refused.stderr, re.M), \
        refused.stderr
    assert "nothing empties the cell between experiments" in refused.stderr
    emptied = labloop("resume", tmp_path / "tiny.db", "--cell-emptied")
    assert emptied.returncode == 0, emptied.stderr
    again = labloop("resume", tmp_path / "tiny.db", "--max-experiments", "6")
    assert again.returncode == 0, again.stderr
    with Journal.open(tmp_path / "tiny.db", readonly=True) as journal:
        assert len(journal.experiments(states=(State.DONE,))) == 6


def test_a_protocol_that_never_empties_the_cell_goes_on_after_a_person_empties_it(tmp_path, write_campaign, labloop):
    """A protocol without a rinse fills the cell a little more each experiment; docs/hardware.md's path is that the
    next experiment is refused once the cell would overflow, a person empties it, and ``resume --cell-emptied`` goes
    on. The whole budget was judged from an empty cell at every check, so a resume with a larger budget was refused
    as a campaign that "no longer validates", --cell-emptied or not (a hardware trial). One experiment is judged
    before a resume; the journal's count judges each next one, and stops the run for a person when it is full."""
    steps = yaml.safe_load((EXAMPLES / "protocols" / "cv_screen.yaml").read_text())
    (tmp_path / "no_rinse.yaml").write_text(yaml.safe_dump(steps[:-1]))  # 5 mL an experiment, none taken out
    campaign_file = write_campaign(tmp_path, budget={"max_experiments": 2}, protocol=str(tmp_path / "no_rinse.yaml"),
                                   safety={"cell_volume_ml": 10, "max_dispense_ml": 5, "syringe_ml": 10})
    store = tmp_path / "tiny.db"
    said = [labloop("run", campaign_file, "--dry-run")]
    while True:  # a failed experiment's liquid stays too: how many stops it takes depends on the analyses
        assert said[-1].returncode in (0, 1), said[-1].stderr  # never refused (2) as a campaign that no longer fits
        if said[-1].returncode == 1:  # stopped for a person, before anything moved
            assert "the cell would hold 10.5 mL, more than its 10 mL" in said[-1].stderr, said[-1].stderr
            assert said[-1].stderr.strip().endswith(f"then `labloop resume {store} --cell-emptied`"), said[-1].stderr
        with Journal.open(store, readonly=True) as journal:
            done = len(journal.experiments(states=(State.DONE,)))
        if done == 5 or len(said) > 8:
            break
        if said[-1].returncode == 1:  # without --cell-emptied: refused, the experiment stopped before its sample
            # said to run, not to run "again": it never began (a hardware trial)
            refused = labloop("resume", store, "--max-experiments", 5)
            with Journal.open(store, readonly=True) as journal:
                waiting = journal.experiments(states=(State.INTERRUPTED,))[0].id
            assert refused.returncode == 2 and (f"refused before anything moved (experiment {waiting} runs on the "
                                                "resume that can run it)") in refused.stderr, refused.stderr
        # three more experiments of 5 mL into the emptied 10 mL cell: the third is refused however the analyses go
        # (two samples in one cell read two waves, once paired across the waves and failed, adding liquid)
        said.append(labloop("resume", store, "--max-experiments", 5, "--cell-emptied"))
    assert done == 5 and any(result.returncode == 1 for result in said), [r.stderr for r in said]


_RINSE = Rig.rinse_cell


def _interrupted_at_the_rinse_after_a_failure(rig: Rig, why: str = "") -> None:
    if why:  # a Ctrl-C while the operator is asked to rinse after the failure
        raise Interrupted(signal.SIGINT)
    _RINSE(rig, why)


def test_a_ctrl_c_during_the_rinse_after_a_failure_keeps_the_failure(tmp_path, write_campaign, monkeypatch):
    """The failure is journalled before the rinse that follows it can be cut short: a Ctrl-C at the rinse's prompt
    turned the failed experiment into an interrupted one (run again on resume, its fault never counted)."""
    campaign_file = write_campaign(tmp_path, budget={"max_experiments": 4})
    monkeypatch.setattr(Rig, "rinse_cell", _interrupted_at_the_rinse_after_a_failure)
    with contextlib.ExitStack() as stack, Interrupts() as interrupts:
        runner, journal = _runner_with_a_buggy_potentiostat(tmp_path, campaign_file, monkeypatch, interrupts, stack)
        assert runner.run() == EXIT_INTERRUPTED
        [failed] = journal.experiments(states=(State.FAILED,))
        assert failed.cause == ("a bug in driver 'emstat': potentiostat (cv): RuntimeError: plug-in bug: list "
                                "index out of range")
        assert not journal.experiments(states=(State.INTERRUPTED, State.RUNNING))
        *_, rinse = journal.actions(failed.id)
        assert (rinse.command, rinse.outcome) == ("rinse", "interrupted")
        assert runner.executor.contents.cell_ml > 0 and _stopped_after_pumping(journal) == {failed.id: State.FAILED}


class _NaNPotentiostat:
    """A potentiostat (a plug-in's, as the newcomer's) whose second scan builds its voltammogram from NaN currents:
    labloop's own check (``Voltammogram``) refuses it inside the driver's ``run_cv``."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.calls = 0

    def run_cv(self, params: object) -> object:
        from labloop.instruments.voltammogram import Voltammogram

        scan = self.inner.run_cv(params)  # type: ignore[attr-defined]
        self.calls += 1
        if self.calls != 2:
            return scan
        return Voltammogram(scan.potential_v, scan.current_a * float("nan"), scan.time_s, scan.params, scan.reference)

    def abort(self) -> None:
        self.inner.abort()  # type: ignore[attr-defined]

    def close(self) -> None:
        self.inner.close()  # type: ignore[attr-defined]


def test_data_a_driver_returns_that_labloop_refuses_names_the_instrument_and_is_said(tmp_path, write_campaign,
                                                                                     caplog):
    """A voltammogram with NaN currents failed its experiment as ``InvalidParameter: current_a: contains NaN or
    infinite values``, naming no instrument and saying nothing on the console, where every other driver failure
    says ``potentiostat (cv): ...``: it is now named and said the same way."""
    campaign = load_campaign(write_campaign(tmp_path, budget={"max_experiments": 2}))
    library = read_table(campaign.library.file).smiles
    with build_rig(campaign, dry_run=True, library=library) as rig, \
            Journal.create(campaign.store, campaign) as journal, Interrupts() as interrupts:
        rig.instruments["potentiostat"] = _NaNPotentiostat(rig.instruments["potentiostat"])
        assert Runner(campaign, journal, rig, build_executor(campaign, rig), library, None, interrupts).run() == EXIT_OK
        failed = [e for e in journal.experiments(states=(State.FAILED,)) if not e.cause.startswith("analysis:")]
    # the driver's fault, said as such (an InvalidParameter read as a campaign's bad input: a plug-in engineer's trial)
    [cause] = [e.cause for e in failed]
    assert cause.startswith("WrongReturn: potentiostat in ") and cause.endswith(
        "protocol[3].cv: its driver's run_cv could not build its voltammogram: current_a: contains NaN or infinite "
        "values (bad data from the device is a ProtocolError to raise, docs/drivers.md)"), cause
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert f"experiment {failed[0].id} failed: {cause}" in said


def _window_campaign(tmp_path: Path, write_campaign) -> Path:
    """Every candidate-centred window (1 V wide, which fits in the 1.2 V safety window) reaches beyond +/-0.6 V:
    the candidates' predicted potentials are all more than 0.1 V from the reference's (the objective's window,
    3.1-3.3 V vs Li/Li+, fits: validate lets it through)."""
    protocol = ["load_sample",
                {"dispense": {"pump": "analyte_pump", "volume_ml": 0.5, "rate_ml_min": 0.5, "fluid": "sample"}},
                {"cv": {"half_width_v": 0.5}}, "rinse"]
    return write_campaign(tmp_path, prior=True, shared_prior=True, protocol=protocol, planner={"kind": "greedy"},
                          objective={"quantity": "oxidation_potential", "goal": "window", "window_v": [3.1, 3.3]},
                          safety={"potential_limits_v": [-0.6, 0.6]},
                          budget={"max_experiments": 6, "max_consecutive_faults": 2,
                                  "max_consecutive_failed_analyses": 3})


def test_windows_around_predictions_beyond_the_limits_are_scanned_within_them(tmp_path, write_campaign, labloop):
    """A newcomer's campaign had every proposal refused, each window around an uncalibrated prediction beyond the
    limits, and stopped with nothing measured: each window now moves within the limits, and every experiment scans
    there (the run may still stop for failed analyses: these limits hold few of the library's waves)."""
    result = labloop("run", _window_campaign(tmp_path, write_campaign), "--dry-run")
    assert "around each candidate's predicted potential: before the first measurements calibrate them" in \
        result.stderr, result.stderr  # validate's warning, given by run too
    with Journal.open(tmp_path / "tiny.db", readonly=True) as journal:
        experiments = journal.experiments()
        # scanned, each: in these limits most miss their waves (the analyses' failures, which bound the potentials)
        assert len(experiments) >= 3 and not [e for e in experiments if (e.cause or "").startswith("refused")]
        scans = [a.params for e in experiments for a in journal.actions(e.id) if a.command == "cv"]
    assert len(scans) == len(experiments)
    assert all(min(s["e_begin_v"], s["e_vertex1_v"]) >= -0.6 and max(s["e_begin_v"], s["e_vertex1_v"]) <= 0.6
               and s["e_vertex1_v"] - s["e_begin_v"] == pytest.approx(1.0) for s in scans), scans


def test_a_proposal_whose_window_breaks_a_limit_is_refused_not_counted_as_a_fault(tmp_path, write_campaign,
                                                                                  labloop, monkeypatch):
    # refused before anything moves, every time: a window that cannot move within the limits (which no campaign
    # validate passes can have any more, so the executor is made to leave each window where it is)
    monkeypatch.setattr(ProtocolExecutor, "_within_limits", lambda self, where, stat, centre, *rest: centre)
    result = labloop("run", _window_campaign(tmp_path, write_campaign), "--dry-run")
    assert result.returncode == 1
    assert "3 proposals refused by the safety limits in a row" in result.stderr  # not "instrument faults"
    # nothing was analysed: the limit named says it counts refusals as well (a chemist's trial read it as a bug)
    assert "campaign stopped (budget.max_consecutive_failed_analyses, which counts these too)" in result.stderr
    assert "fix the protocol's windows or volumes" in result.stderr and "the rig" not in result.stderr
    # resume runs the journal's protocol, and run refuses the changed file as another campaign: a new store, as
    # the stop for a blank that needs a purge step says
    assert "run it with a new store (`labloop run FILE --store NEW.db`): a journal keeps the protocol it began with" \
        in result.stderr and "labloop resume" not in result.stderr
    with Journal.open(tmp_path / "tiny.db", readonly=True) as journal:
        failed = journal.experiments(states=(State.FAILED,))
        assert len(failed) == 3 and all(e.cause.startswith("refused: SafetyLimitExceeded") for e in failed)
        assert all(journal.actions(e.id) == [] for e in failed)  # nothing moved
        # the planner is told the refusals were the campaign file's, not the molecules' (whose failures shun the
        # molecules like them)
        _, state = journal.latest_planner_state()
        refused = {e.smiles for e in failed}
        told = [o for o in state["observations"] if o["smiles"] in refused]
        assert told and all(o["failure"] == "configuration" for o in told)
    # the report's failures say each was a refusal, by which check, with no bound (nothing was scanned)
    assert labloop("report", tmp_path / "tiny.db", "-o", tmp_path / "report").returncode == 0
    with (tmp_path / "report" / "failures.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["id"], r["kind"], r["above_v_vs_li"], r["below_v_vs_li"], r["cause"]) for r in rows] == [
        (str(e.id), "refused: SafetyLimitExceeded", "", "", e.cause) for e in failed]


class _StuckPotentiostat:
    """A plug-in potentiostat whose abort never returns."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.aborts = 0

    def run_cv(self, params):
        return self.inner.run_cv(params)

    def abort(self) -> None:
        self.aborts += 1
        time.sleep(3600)

    def close(self) -> None:
        self.inner.close()


class _UnpluggedPotentiostat(_StuckPotentiostat):
    """A potentiostat whose port vanished: its abort raises."""

    def abort(self) -> None:
        raise Disconnected("/dev/pts/9", "port vanished")


def test_safe_state_reports_what_it_could_not_make_safe(tmp_path, write_campaign, caplog):
    """Each time, returned to the caller, who says it: logged at INFO only (an unplugged pump's stop was said twice,
    once as a logger ERROR: a hardware trial); closing says at ERROR only what no call said. An abort still hung
    from the first time is not called again: a second thread stuck in it only waited out another deadline (a
    Ctrl-C took 21 s: a plug-in author's trial)."""
    campaign = load_campaign(write_campaign(tmp_path))
    with build_rig(campaign, dry_run=True) as rig:
        assert rig.safe_state() == []
        stuck = _StuckPotentiostat(rig.instruments["potentiostat"])
        broken = Rig({"potentiostat": stuck, "analyte_pump": rig.instruments["analyte_pump"]},
                     closer=rig._closer)
        unplugged = Rig({"potentiostat": _UnpluggedPotentiostat(rig.instruments["potentiostat"])}, closer=ExitStack())
        with caplog.at_level(logging.INFO, logger="labloop.orchestrator.loop.rig"):
            problems = [broken.safe_state(deadline_s=0.2) for _ in range(2)]
            unplugged.close()  # no call said it before: closing does
        assert problems == [["potentiostat: no answer within 0.2 s"],
                            ["potentiostat: its stop from before has still not returned"]]
        assert stuck.aborts == 1
        said = [(r.levelno, r.getMessage().removeprefix("safe state: potentiostat could not be made safe: "))
                for r in caplog.records if "could not be made safe" in r.getMessage()]
        assert said == [(logging.INFO, "no answer within 0.2 s"),
                        (logging.INFO, "its stop from before has still not returned"),
                        (logging.INFO, "Disconnected: /dev/pts/9: port vanished"),
                        (logging.ERROR, "Disconnected: /dev/pts/9: port vanished")]


def test_damaged_journals_are_one_line_everywhere(tmp_path, labloop, write_campaign):
    campaign_file = write_campaign(tmp_path, budget={"max_experiments": 2})
    assert labloop("run", campaign_file, "--dry-run").returncode == 0
    store = tmp_path / "tiny.db"

    zeroed = tmp_path / "zeroed.db"  # the last page zeroed: log used to show it without a word
    shutil.copy(store, zeroed)
    with zeroed.open("r+b") as handle:
        handle.seek(-4096, 2)
        handle.write(bytes(4096))
    bad_config = tmp_path / "bad-config.db"
    shutil.copy(store, bad_config)
    with sqlite3.connect(bad_config) as db:
        db.execute("UPDATE campaign SET config_json = '{not json'")
    bad_protocol = tmp_path / "bad-protocol.db"  # read for the scan rate each experiment ran at
    shutil.copy(store, bad_protocol)
    with sqlite3.connect(bad_protocol) as db:
        db.execute("UPDATE campaign SET config_json = json_set(config_json, '$.protocol.steps', json('[\"boil\"]'))")
    empty_config = tmp_path / "empty-config.db"  # JSON, a mapping, but nothing labloop wrote: "KeyError (a bug)"
    shutil.copy(store, empty_config)
    with sqlite3.connect(empty_config) as db:
        db.execute("UPDATE campaign SET config_json = '{}'")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"SQLite format 3\0" + bytes(range(256)) * 64)

    for damaged, commands in ((zeroed, ("log", "report", "resume")), (garbage, ("log", "report", "resume")),
                              (bad_config, ("log", "resume")), (bad_protocol, ("log", "report", "resume")),
                              (empty_config, ("log", "report", "resume"))):
        for command in commands:
            result = labloop(command, damaged)
            lines = result.stderr.strip().splitlines()
            assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), \
                (damaged.name, command, result.stderr)
            assert str(damaged) in lines[0]
    assert not list(tmp_path.glob("*.report")) and not list(tmp_path.glob(".*"))  # no half report, no temp folder
    voltammograms = tmp_path / "voltammograms.db"  # readable up to the raw data: the report fails half-way
    shutil.copy(store, voltammograms)
    with sqlite3.connect(voltammograms) as db:
        db.execute("UPDATE raw_data SET voltammogram_json = CAST(x'ff00ff' AS TEXT)")
    old = tmp_path / "old.report"
    old.mkdir()
    (old / "index.html").write_text("the report before")
    for output in (tmp_path / "new.report", old):
        result = labloop("report", voltammograms, "-o", output)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "new.report").exists() and [p.name for p in old.iterdir()] == ["index.html"]
    assert (old / "index.html").read_text() == "the report before"


#: (the damage, where the error line says it is, the commands that read that row)
DAMAGED_ROWS = [
    ("UPDATE measurements SET flags_json = '[1'", "measurements row of experiment 1 (attempt 1), column flags_json",
     ("log", "report", "resume", "dashboard")),
    ("UPDATE measurements SET flags_json = '[3]'", "measurements row of experiment 1 (attempt 1), column flags_json",
     ("log", "report", "resume", "dashboard")),
    ("UPDATE proposals SET conditions_json = 'x' WHERE experiment_id = 2", "proposals row of experiment 2, column "
     "conditions_json", ("log", "report", "resume", "dashboard")),
    ("UPDATE raw_data SET voltammogram_json = '{}' WHERE id = 1", "raw_data row 1, column voltammogram_json",
     ("report",)),
    ("UPDATE model_versions SET metrics_json = '{' ", "model_versions row 1, column metrics_json",
     ("log", "report", "resume", "dashboard")),
    # values changed by hand or by another tool: each was "unexpected TypeError ... (a labloop bug)", or a NaN
    # passed on into `log --json` (test_cli_log has that)
    ("UPDATE proposals SET sigma = -0.5 WHERE experiment_id = 1", "proposals row of experiment 1, column sigma, "
     "holds -0.5, a negative standard deviation", ("log", "report", "resume", "dashboard")),
    ("UPDATE measurements SET potential_v = 'about 4 V' WHERE experiment_id = 2", "measurements row of experiment 2 "
     "(attempt 1), column potential_v, holds 'about 4 V', not a number", ("log", "report", "resume", "dashboard")),
    ("UPDATE measurements SET e_half_v = 9e999 WHERE experiment_id = 1", "measurements row of experiment 1 "
     "(attempt 1), column e_half_v, holds inf, not a finite number", ("log", "report", "resume", "dashboard")),
    ("""UPDATE model_versions SET metrics_json = '{"mae": NaN}'""", "model_versions row 1, column metrics_json, does "
     "not hold what labloop wrote there (NaN is not a number JSON allows)", ("log", "report", "resume", "dashboard")),
]


@pytest.mark.parametrize(("damage", "says", "commands"), DAMAGED_ROWS)
def test_a_damaged_json_column_is_one_line_naming_its_row(tmp_path, labloop, write_campaign, finished_journal,
                                                           damage, says, commands):
    """A row changed by hand used to end ``log``, ``report``, ``resume`` and ``dashboard`` with "unexpected
    JSONDecodeError ... (a labloop bug)", exit 1, as a damaged campaign record already did not."""
    store = tmp_path / "damaged.db"
    shutil.copy(finished_journal, store)
    with sqlite3.connect(store) as db:
        db.execute(damage)
    for command in commands:
        result = labloop(command, store, *(("--port", 0) if command == "dashboard" else ()))
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, (command, result.stderr)
        assert lines[0].startswith(f"error: {store}: the journal is damaged: {says}"), (command, lines[0])
    # no report: the journal's own SQLite files, and the empty lock a resume takes before it loads the latest model
    # (README: it stays, and is harmless when nothing runs)
    assert {p.name for p in tmp_path.iterdir()} <= {"damaged.db", "damaged.db-wal", "damaged.db-shm",
                                                   "damaged.db.lock"}


@pytest.fixture(scope="module")
def finished_journal(tmp_path_factory, write_campaign) -> Path:
    """The journal of a finished 2-experiment dry run with a (tiny) prior model."""
    from labloop.orchestrator.cli.main import main

    folder = tmp_path_factory.mktemp("finished")
    campaign = write_campaign(folder, prior=True, shared_prior=True, budget={"max_experiments": 2})
    assert main(["run", str(campaign), "--dry-run"]) == 0
    return folder / "tiny.db"


def test_resume_after_the_library_moved_is_one_line(tmp_path, labloop, write_campaign):
    library = tmp_path / "library.csv"
    shutil.copy(load_campaign(write_campaign(tmp_path)).library.file, library)
    campaign_file = write_campaign(tmp_path, library={"file": str(library)}, budget={"max_experiments": 1})
    assert labloop("run", campaign_file, "--dry-run").returncode == 0
    library.rename(tmp_path / "moved.csv")
    result = labloop("resume", tmp_path / "tiny.db")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "library.csv" in result.stderr and "moved or changed" in result.stderr


def test_report_onto_a_file_is_one_line(tmp_path, labloop, write_campaign):
    campaign_file = write_campaign(tmp_path, budget={"max_experiments": 1})
    assert labloop("run", campaign_file, "--dry-run").returncode == 0
    for target in (tmp_path / "tiny.yaml", "/dev/null"):
        result = labloop("report", tmp_path / "tiny.db", "-o", target)
        assert result.returncode == 2 and "is a file, not a folder" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    for store in (tmp_path / "nope.db", tmp_path / "tiny.yaml"):  # not a journal: no folder is left behind
        result = labloop("report", store, "-o", tmp_path / "new" / "report")
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert not (tmp_path / "new").exists()
    assert labloop("report", tmp_path / "nope.db").returncode == 2 and not (tmp_path / "nope.report").exists()


def test_validate_refuses_what_run_would(tmp_path, labloop, write_campaign):
    """A typo in a driver option, a simulated-only driver on real hardware, and a missing serial port."""
    typo = yaml.safe_load(write_campaign(tmp_path).read_text())
    typo["instruments"]["analyte_pump"]["options"]["adress"] = 0
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump(typo, sort_keys=False))
    for command in (("validate", tmp_path / "typo.yaml", "--dry-run"), ("run", tmp_path / "typo.yaml", "--dry-run")):
        result = labloop(*command)
        assert result.returncode == 2
        assert "instruments.analyte_pump.options.adress: not an option of driver 'ne1000'" in result.stderr
        assert "address" in result.stderr  # the valid names are listed

    real = yaml.safe_load(write_campaign(tmp_path).read_text())
    for command in (("validate", tmp_path / "tiny.yaml"), ("run", tmp_path / "tiny.yaml")):
        result = labloop(*command)
        assert result.returncode == 2 and "'sim-sampler' exists only in the simulated world" in result.stderr
    real["instruments"]["sampler"] = {"driver": "manual"}
    real["instruments"]["potentiostat"]["port"] = str(tmp_path / "ttyACM-nope")
    forgotten = json.loads(json.dumps(real))
    del forgotten["instruments"]["analyte_pump"]["port"]  # not taken for the instrument's name any more
    for config, says in ((real, r"instruments\.analyte_pump\.port: /dev/ttyUSB0 does not exist"),
                         (forgotten, r"instruments\.analyte_pump: a real run needs the device's serial port")):
        (tmp_path / "real.yaml").write_text(json.dumps(config))
        for command in ("validate", "run"):
            result = labloop(command, tmp_path / "real.yaml")
            assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
            assert re.search(rf"real\.yaml:\d+: {says}", result.stderr), result.stderr
    assert not (tmp_path / "tiny.db").exists()


def test_an_unplugged_instrument_at_start_up_names_it(tmp_path, labloop, write_campaign):
    """A serial port that exists but has no device behind it any more: one line naming the instrument."""
    real = yaml.safe_load(write_campaign(tmp_path).read_text())
    real["instruments"] = {"sampler": {"driver": "manual"},
                           "analyte_pump": {"driver": "ne1000", "port": "/dev/null", "options": {"timeout_s": 0.05}},
                           "electrolyte_pump": {"driver": "ne1000", "port": "/dev/null",
                                                "options": {"address": 1, "timeout_s": 0.05}},
                           "potentiostat": {"driver": "emstat", "port": "/dev/null"}}
    (tmp_path / "unplugged.yaml").write_text(yaml.safe_dump(real, sort_keys=False))
    result = labloop("run", tmp_path / "unplugged.yaml")
    lines = result.stderr.strip().splitlines()
    assert result.returncode in (1, 2) and len(lines) == 1 and lines[0].startswith("error: ")
    assert "analyte_pump" in lines[0] or "NE-1000" in lines[0]
    assert not (tmp_path / "tiny.db").exists()


def test_validate_refuses_campaigns_run_used_to_fail_on(tmp_path, labloop, write_campaign):
    """Issue 17 cause 11: each of these passed validate and then failed in run."""
    library = yaml.safe_load(write_campaign(tmp_path).read_text())["library"]["file"]
    rows = Path(library).read_text().splitlines()
    header = rows[0].split(",")
    broken = rows[:]
    cells = broken[3].split(",")
    cells[header.index("ie_ev")] = "inf"  # a molecule whose true value is not finite
    broken[3] = ",".join(cells)
    (tmp_path / "inf.csv").write_text("\n".join(broken) + "\n")
    cells[header.index("ie_ev")] = ""  # one without a true value
    broken[3] = ",".join(cells)
    (tmp_path / "empty.csv").write_text("\n".join(broken) + "\n")
    around = ["load_sample", {"dispense": {"pump": "analyte_pump", "volume_ml": 0.5, "rate_ml_min": 0.5,
                                           "fluid": "sample"}}, {"cv": {"half_width_v": 0.5}}, "rinse"]
    one_dispense = {"dispense": {"pump": "analyte_pump", "volume_ml": 0.5, "rate_ml_min": 0.5, "fluid": "sample"}}
    cases = {
        "seed": ({"seed": 10**30}, "seed: must be less than or equal to 4294967295"),
        "window around a candidate without a prior": ({"protocol": around}, "needs its predicted potential"),
        "a condition beyond the safety limits": (  # one dispense: a planned volume sets it alone
            {"conditions": {"scan_rate_v_s": [0.05, 0.5], "volume_ml": [0.1, 8.0]},
             "protocol": ["load_sample", one_dispense, {"cv": {"e_begin_v": -0.8, "e_vertex1_v": 1.95,
                                                               "e_vertex2_v": -0.8}}, "rinse"],
             "safety": {"max_dispense_ml": 5, "syringe_ml": 10}},
            "tiny.yaml:44: protocol[1].dispense: dispense of 8 mL exceeds the limit of 5 mL"),
        "a condition its step cannot take": (  # pydantic's first complaint, not its headers and links
            {"conditions": {"scan_rate_v_s": [0.05, 0.5], "e_step_v": [0.05, 2.0]}},
            "conditions.e_step_v: 2.0 would be refused: examples/protocols/cv_screen.yaml:12: protocol[3].cv: "
            "condition e_step_v=2.0: 2 V is "
            "outside the potential steps a CV may use, 0.0001..0.1 V: mV written as V? (0.002 V)"),
        "a truth that is not finite": ({"library": {"file": str(tmp_path / "inf.csv")}},
                                       "inf.csv: line 4, column 'ie_ev': inf is no energy (eV) or potential (V)"),
        "a molecule without a truth": ({"library": {"file": str(tmp_path / "empty.csv")}},
                                       "1 library molecule has no finite true value"),
        "a library of only invalid SMILES": ({"library": {"file": str(tmp_path / "invalid.csv")}},
                                             "invalid.csv has no valid SMILES among its 3 rows"),
    }
    (tmp_path / "invalid.csv").write_text("smiles,ie_ev,ea_ev\nC1CC,7.0,1.0\nXYZ,7.1,1.1\nc1ccc,7.2,1.2\n")
    for why, (sections, needle) in cases.items():
        folder = tmp_path / why.replace(" ", "_")
        folder.mkdir()
        campaign_file = write_campaign(folder, **sections)
        for command in ("validate", "run"):
            result = labloop(command, campaign_file, "--dry-run")
            assert result.returncode == 2 and needle in result.stderr, (why, command, result.stderr)
            assert len(result.stderr.strip().splitlines()) == 1
        assert sorted(p.name for p in folder.iterdir()) == ["tiny.yaml"], why  # nothing written


def test_validate_refuses_what_a_hostile_input_trial_got_past_it(tmp_path, labloop, write_campaign):
    """Each of these passed validate and then failed in run (or ran into a bug); now both refuse it in one
    line, exit 2, before a journal is written."""
    rig = yaml.safe_load(write_campaign(tmp_path).read_text())["instruments"]
    library = Path(yaml.safe_load(write_campaign(tmp_path).read_text())["library"]["file"])
    (tmp_path / "cut.csv.gz").write_bytes(gzip.compress(library.read_bytes())[:2000])
    (tmp_path / "ttyLINK").symlink_to(rig["analyte_pump"]["port"])

    def instrument(name: str, **options) -> dict:
        return {"instruments": {**rig, name: {**rig[name], "options": {**rig[name].get("options", {}), **options}}}}

    cases = {
        "a truncated .gz library": ({"library": {"file": str(tmp_path / "cut.csv.gz")}},
                                    "cut.csv.gz: not a readable CSV file"),
        "a prior without the objective's target": (
            {"prior": {"file": str(DATA), "targets": ["ea_ev"], "rows": 200}},
            "prior.targets: must include 'ie_ev'"),
        "a prior too small for its folds": ({"prior": {"file": str(DATA), "rows": 5}},
                                            "5 readable molecules (prior.rows 5) are too few to train"),
        "a syringe of no diameter": (instrument("analyte_pump", diameter_mm=0),
                                     "instruments.analyte_pump.options.diameter_mm: must be the syringe's inner "
                                     "diameter, a number of mm in 0.1..80, got 0"),
        "an address that is text": (instrument("analyte_pump", address="zero"),
                                    "instruments.analyte_pump.options.address: must be a whole number 0..99, "
                                    "got 'zero'"),
        # the driver's own options, judged when the campaign is read: a real run refused them only as the potentiostat
        # opened, after the pumps, and validate passed them (an adversarial trial)
        "a reference that is a list": (instrument("potentiostat", reference=[1, 2]),
                                       "instruments.potentiostat.options.reference: must name the reference electrode "
                                       "(e.g. 'Ag/Ag+'), got [1, 2]"),
        "an overload policy unknown": (instrument("potentiostat", on_overload="explode"),
                                       "instruments.potentiostat.options.on_overload: must be one of raise, mark, got "
                                       "'explode'"),
        "an error pause that is text": (instrument("potentiostat", error_pause_s="x"),
                                        "instruments.potentiostat.options.error_pause_s: must be a number of s >= 0, "
                                        "got 'x'"),
        # exit 1 as "a labloop bug" (ValueError: embedded null byte), naming no field (an adversarial trial)
        "a NUL byte in a port": ({"instruments": {**rig, "potentiostat": {**rig["potentiostat"],
                                                                         "port": "/dev/tty\x00x"}}},
                                 "instruments.potentiostat.port: holds a NUL byte"),
        # every experiment failed, a sample spent on each, after validate passed it (an adversarial trial)
        "analysis settings under which no wave is a peak": (
            {"protocol": ["load_sample", "cv", {"analyze": {"min_peak_share": 5}}, "rinse"]},
            "protocol[2].analyze.min_peak_share: a share of the CV's current span, at most 1, got 5"),
        "two pumps at one address": (instrument("electrolyte_pump", address=0),
                                     "shares port /dev/ttyUSB0 with 'analyte_pump' at the same address (0)"),
        # only the run's opening of the line refused it (a newcomer's trial)
        "two pumps of one line at two baud rates": (instrument("electrolyte_pump", baudrate=9600),
                                                    "instruments.electrolyte_pump.options.baudrate: shares port "
                                                    "/dev/ttyUSB0 with 'analyte_pump', whose baudrate is the driver's "
                                                    "default, not 9600: a serial line has one baud rate"),
        "a potentiostat on the pumps' line": (  # a newcomer's wiring mistake, which validate passed
            {"instruments": {**rig, "potentiostat": {**rig["potentiostat"], "port": rig["analyte_pump"]["port"]}}},
            f"shares port {rig['analyte_pump']['port']} with 'analyte_pump', whose driver is 'ne1000', not 'emstat'"),
        # the same device by another name: a link (as /dev/serial/by-id/... is), a path with // or .. in it
        "a potentiostat on a link to the pumps' line": (
            {"instruments": {**rig, "potentiostat": {**rig["potentiostat"], "port": str(tmp_path / "ttyLINK")}}},
            f"shares port {tmp_path / 'ttyLINK'} ({rig['analyte_pump']['port']}'s device, /dev/ttyUSB0) with "
            "'analyte_pump', whose driver is 'ne1000', not 'emstat'"),
        "two pumps at one address of one line written two ways": (
            {"instruments": {**rig, "electrolyte_pump": {**rig["electrolyte_pump"], "port": "/dev//ttyUSB0",
                                                         "options": {**rig["electrolyte_pump"]["options"],
                                                                     "address": 0}}}},
            "shares port /dev//ttyUSB0 (/dev/ttyUSB0's device, /dev/ttyUSB0) with 'analyte_pump' at the same address "
            "(0)"),
        "control characters in a path": ({"library": {"file": str(tmp_path / "lib\x1b[2J\nFAKE OK")}},
                                         "lib\\x1b[2J\\nFAKE OK: no such file"),
        "a reference electrode 3000 V away": ({"cell": {"reference_offset_v": 3000.0}},
                                              "cell.reference_offset_v: 3000 V vs Li/Li+ is no place for a "
                                              "reference electrode (-1..6 V): millivolts written as volts? (3)"),
        "a window around the candidate wider than the safety window": (
            {"protocol": ["load_sample", {"cv": {"half_width_v": 50}}, "rinse"]},
            "half_width_v: a window of +/-50 V cannot lie within safety.potential_limits_v -3..3 V; half_width_v 3 "
            "fits: millivolts written as volts? (0.05)"),
        "a dispense of 1e-10 mL": (
            {"protocol": ["load_sample", {"dispense": {"pump": "analyte_pump", "volume_ml": 1e-10,
                                                       "rate_ml_min": 0.5, "fluid": "sample"}}, "cv", "rinse"]},
            "volume_ml: must be greater than or equal to 0.001"),
    }
    for why, (sections, needle) in cases.items():
        folder = tmp_path / why.replace(" ", "_")
        folder.mkdir()
        prior = why.startswith("a prior")
        campaign_file = write_campaign(folder, prior=prior, **{k: v for k, v in sections.items() if k != "prior"})
        if prior:
            text = yaml.safe_load(campaign_file.read_text())
            text["prior"] = {**text["prior"], **sections["prior"]}
            campaign_file.write_text(yaml.safe_dump(text, sort_keys=False))
        for command in ("validate", "run"):
            result = labloop(command, campaign_file, "--dry-run")
            assert result.returncode == 2 and needle in result.stderr, (why, command, result.stderr)
            assert len(result.stderr.strip().splitlines()) == 1 and "\x1b" not in result.stderr, (why, command)
        assert not (folder / "tiny.db").exists(), why


def test_a_device_answering_garbage_at_start_up_is_one_line_naming_it(tmp_path, labloop, write_campaign):
    """Real ptys whose far end answers every command with bytes no driver speaks: the run stops before the
    journal, exit 2, naming the instrument."""
    ends = [os.openpty() for _ in range(3)]
    stop = threading.Event()

    def answer(master: int) -> None:
        while not stop.is_set():
            if select.select([master], [], [], 0.05)[0]:
                os.read(master, 1024)
                os.write(master, b"\xff\xfe garbage \x00\x01 !!!\n")

    threads = [threading.Thread(target=answer, args=(master,), daemon=True) for master, _ in ends]
    for thread in threads:
        thread.start()
    ports = [os.ttyname(slave) for _, slave in ends]
    real = yaml.safe_load(write_campaign(tmp_path).read_text())
    real["instruments"] = {"sampler": {"driver": "manual"},
                           "analyte_pump": {"driver": "ne1000", "port": ports[0], "options": {"timeout_s": 0.2}},
                           "electrolyte_pump": {"driver": "ne1000", "port": ports[1],
                                                "options": {"address": 1, "timeout_s": 0.2}},
                           "potentiostat": {"driver": "emstat", "port": ports[2], "options": {"timeout_s": 0.2}}}
    (tmp_path / "garbage.yaml").write_text(yaml.safe_dump(real, sort_keys=False))
    try:
        assert labloop("validate", tmp_path / "garbage.yaml").returncode == 0  # the ports exist
        result = labloop("run", tmp_path / "garbage.yaml")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        for master, slave in ends:
            os.close(master)
            os.close(slave)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {tmp_path / 'garbage.yaml'}:") and "expects" in lines[0]
    assert ": instruments.analyte_pump: the device on " in lines[0]  # at its line, as validate's errors
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.yaml", "tiny.yaml"]  # not even a lock file


@pytest.mark.parametrize("stdin", ["at its end", "closed"])
def test_a_manual_step_with_nobody_to_answer_stops_the_run_at_once(tmp_path, write_campaign, labloop, monkeypatch,
                                                                 stdin):
    """A real run whose console cannot answer (started from cron or a script: stdin at its end, ``</dev/null``,
    or closed, ``<&-``): the manual sample changer cannot ask for the first vial. Before, each experiment
    failed the same way until max_consecutive_faults (3 molecules journalled as failed for one missing person;
    with stdin closed, with a traceback each); now the run stops at the first, the experiment is interrupted,
    the stop says what the electrolyte dispensed before the question left in the cell, and a resume where
    someone answers, after the cell was emptied, runs it again."""
    from labloop.instruments.manual_sampler import ManualSampleChanger
    from labloop.orchestrator.loop.runner import EXIT_FAULTS

    electrolyte_first = [{"dispense": {"pump": "electrolyte_pump", "volume_ml": 4.5, "rate_ml_min": 5.0,
                                       "fluid": "electrolyte", "refill": True}},
                         "load_sample", {"dispense": {"pump": "analyte_pump", "volume_ml": 0.5, "rate_ml_min": 0.5,
                                                      "fluid": "sample", "refill": True}},
                         {"cv": {"e_begin_v": -0.8, "e_vertex1_v": 1.95, "e_vertex2_v": -0.8}}, "rinse"]
    campaign = load_campaign(write_campaign(tmp_path, protocol=electrolyte_first,
                                            budget={"max_experiments": 2, "max_consecutive_faults": 3}))
    library = read_table(campaign.library.file).smiles
    # input() then raises EOFError, or RuntimeError("input(): lost sys.stdin"), as a console that cannot answer
    monkeypatch.setattr("sys.stdin", io.StringIO("") if stdin == "at its end" else None)
    with build_rig(campaign, dry_run=True, library=library) as rig, \
            Journal.create(campaign.store, campaign) as journal, Interrupts() as interrupts:
        journal.add_event("run", "run started (dry run on emulators)", data={"dry_run": True})  # as `run` says
        rig.instruments["sampler"] = ManualSampleChanger.open(ask=input)  # a person on the console, or not
        assert Runner(campaign, journal, rig, build_executor(campaign, rig), library, None, interrupts).run() \
            == EXIT_FAULTS
        experiments = journal.experiments()
        assert not journal.experiments(states=(State.FAILED,))
        interrupted = journal.experiments(states=(State.INTERRUPTED,))
        assert [e.id for e in interrupted] == [experiments[0].id]
        stopped = [e.message for e in journal.events() if e.kind == "stopped"]
        assert len(stopped) == 1 and "manual sample changer on console: no operator: the console" in stopped[0]
        assert (f"experiment {interrupted[0].id} will run again on resume, where a person can answer; the cell "
                f"still holds 4.5 mL by labloop's count: empty it, then `labloop resume {campaign.store} "
                "--cell-emptied`") in stopped[0]
        outcomes = [a.outcome for a in journal.actions(interrupted[0].id)]
        assert outcomes[0] == "ok" and outcomes[1].startswith("NoOperator: ") and len(outcomes) == 2
    monkeypatch.undo()
    resumed = labloop("resume", campaign.store, "--cell-emptied")  # the dry run's simulated sampler answers
    assert resumed.returncode == 0, resumed.stderr
    with Journal.open(campaign.store, readonly=True) as journal:
        assert interrupted[0].id in [e.id for e in journal.experiments(states=(State.DONE,))]
        assert not journal.experiments(states=(State.FAILED,))


def test_a_wave_before_the_scans_start_is_said_in_plain_words(tmp_path, labloop, write_campaign):
    """A molecule already oxidised where the scan begins failed with the bare flag 'at_scan_start'; the cause
    says where its potential lies and what to change, as a wave beyond the vertex's does: below where the decay was
    first judged, one smoothing window (22 mV) past the start at 1.7 V + 3.2 V vs Li/Li+."""
    protocol = ["load_sample", {"dispense": {"pump": "analyte_pump", "volume_ml": 0.5, "rate_ml_min": 0.5,
                                             "fluid": "sample", "refill": True}},
                {"dispense": {"pump": "electrolyte_pump", "volume_ml": 4.5, "rate_ml_min": 5.0,
                              "fluid": "electrolyte", "refill": True}},
                {"cv": {"e_begin_v": 1.7, "e_vertex1_v": 1.95, "e_vertex2_v": 1.7, "e_step_v": 0.002}}, "rinse"]
    campaign_file = write_campaign(tmp_path, protocol=protocol, conditions={}, budget={"max_experiments": 2},
                                   objective={"quantity": "oxidation_potential", "goal": "window",
                                              "window_v": [4.95, 5.05]})
    labloop("run", campaign_file, "--dry-run")
    with Journal.open(tmp_path / "tiny.db", readonly=True) as journal:
        causes = [e.cause or "" for e in journal.experiments(states=(State.FAILED,))]
    assert any("at_scan_start (the wave lies at the scan's start, its peak before it or its return peak past the "
               "scan's end: the potential lies at or before where the scan begins, below 4.922 V vs Li/Li+; start it "
               "further out)" in cause for cause in causes), causes


@pytest.mark.parametrize("stdin", ["at its end", "closed"])
def test_a_real_rigs_rinse_with_nobody_at_the_console_stops_the_run_in_one_line_the_rig_safe(tmp_path, write_campaign,
                                                                                           monkeypatch, stdin):
    """The rinse of a real rig under nohup or cron (stdin at its end or closed): the run stops at the rinse with
    one stop saying nobody can rinse and that the cell holds what the experiment pumped, the rig made safe, no
    alert of a person waited for (nobody can answer), not a hang and no traceback."""
    from labloop.orchestrator.cli.run import _with_journal

    campaign = load_campaign(write_campaign(tmp_path, budget={"max_experiments": 2}))
    library = read_table(campaign.library.file).smiles
    monkeypatch.setattr("sys.stdin", io.StringIO("") if stdin == "at its end" else None)
    with build_rig(campaign, dry_run=True, library=library) as emulated, \
            Journal.create(campaign.store, campaign) as journal, Interrupts() as interrupts:
        rig = Rig(emulated.instruments, closer=contextlib.ExitStack())  # the rinse asks the console: input()
        code = _with_journal(campaign, journal, rig, build_executor(campaign, rig), library, False, interrupts, None)
        events = journal.events()
    assert code == EXIT_FAULTS
    stopped = [e.message for e in events if e.kind == "stopped"]
    assert len(stopped) == 1 and stopped[0].startswith("cell: no operator to rinse the cell: the console")
    assert "the cell still holds 5 mL by labloop's count: empty it" in stopped[0]
    assert not [e for e in events if e.kind in ("operator_waiting", "unsafe")]
