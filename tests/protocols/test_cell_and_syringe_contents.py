"""What the cell and the syringes hold is a limit across experiments, for every pump (an adversarial tester's
two findings). Before: the cell's count restarted at 0 with each experiment, so a protocol that never empties
the cell poured 55 mL into a 10 mL cell in a dry run, and a failed experiment's liquid was forgotten; and only
the built-in NE-1000 driver counted its syringe, so a plug-in pump sent 2.4 mL from a 1 mL syringe.

Now the protocol executor counts both (:class:`labloop.protocols.steps.Contents`) for every pump, across
experiments, failed ones and a resume (from the journal's actions), and refuses a pumping command before it is
sent; ``validate`` refuses a protocol whose repetition over the budget would overfill the cell or run a syringe
dry, in one line naming the field. Everything runs on the real drivers against their emulators on ptys."""

from __future__ import annotations

import os
import signal
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from labloop.core.errors import DispenseMismatch, NoOperator, Overload, RigNotReady, SafetyLimitExceeded
from labloop.instruments.contracts import SafetyLimits
from labloop.orchestrator.compose import build_executor, build_rig
from labloop.orchestrator.config.campaign import Campaign, load_campaign
from labloop.orchestrator.journal.store import Journal, State
from labloop.orchestrator.loop.interrupts import EXIT_INTERRUPTED, Interrupts
from labloop.orchestrator.loop.rig import Rig
from labloop.orchestrator.loop.runner import EXIT_FAULTS, Runner, person_advice
from labloop.protocols.executor import ProtocolExecutor
from labloop.protocols.steps import Contents, Problems, parse_steps, repeat_problem
from labloop.sim.lab import SimulatedLab
from labloop.surrogate.dataset import read_table

from ..conftest import EXAMPLES, RIG

CV = {"cv": {"e_begin_v": -0.8, "e_vertex1_v": 1.95, "e_vertex2_v": -0.8}}
SAMPLE = {"dispense": {"pump": "analyte_pump", "volume_ml": 0.5, "rate_ml_min": 0.5, "fluid": "sample", "refill": True}}
ELECTROLYTE = {"dispense": {"pump": "electrolyte_pump", "volume_ml": 4.5, "rate_ml_min": 5.0, "fluid": "electrolyte",
                            "refill": True}}
#: the tester's protocol: 5 mL into the cell per experiment, and nothing ever empties it
NEVER_EMPTIED = ["load_sample", SAMPLE, ELECTROLYTE, CV]
#: the example's protocol, which rinses the cell at the end (a failed experiment never gets there)
RINSED = ["load_sample", SAMPLE, ELECTROLYTE, CV, "rinse"]


def wire(rig: Rig) -> dict[str, int]:
    """Bytes each emulated instrument has received."""
    return {name: state["received_bytes"] for name, state in rig.simulation.emulator_states().items() if name != "cell"}


def in_cell(rig: Rig) -> float:
    """What the simulated cell holds (mL), read on the simulated lab itself."""
    return rig.simulation.emulator_states()["cell"]["volume_ml"]


# -- defect 1: the cell --------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_protocol_that_never_empties_the_cell_is_refused_over_the_budget(tmp_path, labloop, write_campaign,
                                                                          command: str) -> None:
    campaign = write_campaign(tmp_path, protocol=NEVER_EMPTIED, budget={"max_experiments": 6},
                              safety={"cell_volume_ml": 10.0})
    result = labloop(command, campaign, "--dry-run")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert ("protocol[1].dispense.volume_ml: in experiment 3 of 6 (budget.max_experiments), analyte_pump: the cell "
            "would hold 10.5 mL, more than its 10 mL (safety.cell_volume_ml)") in result.stderr
    assert "; nothing in the protocol empties the cell between experiments (a rinse after the cv does)" in \
        result.stderr
    assert not (tmp_path / "tiny.db").exists()  # nothing written
    # two experiments fit (5 + 5 mL in a 10 mL cell), with a warning that the second scans both samples (it
    # validated in silence: a plug-in engineer's trial); any budget fits once the protocol rinses, and says nothing
    two = labloop("validate", write_campaign(tmp_path, protocol=NEVER_EMPTIED, budget={"max_experiments": 2},
                                             safety={"cell_volume_ml": 10.0}), "--dry-run")
    assert two.returncode == 0, two.stderr
    assert ("protocol[3].cv: nothing empties the cell between experiments (a rinse or a clean does): from the second "
            "experiment on, each cv scans its sample on top of every earlier one's") in " ".join(two.stderr.split())
    rinsed = labloop("validate", write_campaign(tmp_path, protocol=RINSED, budget={"max_experiments": 1000},
                                                safety={"cell_volume_ml": 10.0}), "--dry-run")
    assert rinsed.returncode == 0 and "nothing empties the cell" not in rinsed.stderr
    one = labloop("validate", write_campaign(tmp_path, protocol=NEVER_EMPTIED, budget={"max_experiments": 1},
                                             safety={"cell_volume_ml": 10.0}), "--dry-run")
    assert one.returncode == 0 and "nothing empties the cell" not in one.stderr
    # a lab-grade cv whose D follows the sample's stock has no dilution warning to say it (a reviewer's probe): this
    # one does
    from labloop.protocols.executor import unemptied_cell

    lab_grade = yaml.safe_load((EXAMPLES / "protocols" / "cv_lab_grade.yaml").read_text())
    unrinsed = parse_steps([step for step in lab_grade if step != "rinse"])
    assert any(getattr(step, "sample_stock_mm", None) for step in unrinsed)
    assert "nothing empties the cell" in unemptied_cell(unrinsed, 5).message
    assert unemptied_cell(parse_steps(lab_grade), 5) is None


@pytest.fixture
def example_rig(tmp_path, write_campaign):
    """A dry-run rig of the example's instruments (zero latency), on its emulators."""
    campaign = load_campaign(write_campaign(tmp_path, budget={"max_experiments": 1}))
    with build_rig(campaign, dry_run=True) as rig:
        yield rig


def test_the_cell_is_counted_across_experiments_and_refused_before_the_dispense(example_rig: Rig) -> None:
    rig = example_rig
    executor = ProtocolExecutor(NEVER_EMPTIED, rig, SafetyLimits(5.0, 10.0, (-3.0, 3.0), cell_volume_ml=10.0), 3.2)
    actions: list[tuple] = []
    for _ in range(2):  # 5 mL each: the cell is full
        executor.run("S0001", "c1ccccc1", {}, None, lambda *a: actions.append(a))
    assert in_cell(rig) == pytest.approx(10.0)
    before = wire(rig)
    started = len(actions)
    with pytest.raises(RigNotReady, match=r"protocol\[1\]\.dispense: analyte_pump: the cell would hold "
                                          r"10.5 mL, more than its 10 mL \(safety.cell_volume_ml\): 0.5 mL "
                                          r"onto the 10 mL it holds since it was last emptied"):
        executor.run("S0001", "c1ccccc1", {}, None, lambda *a: actions.append(a))
    after = wire(rig)
    assert after["analyte_pump"] == before["analyte_pump"] and after["electrolyte_pump"] == before["electrolyte_pump"]
    assert in_cell(rig) == pytest.approx(10.0)  # nothing more went in
    assert len(actions) == started  # refused before the experiment's first step: its sample is not spent


class _BrokenPotentiostat:
    """A plug-in potentiostat whose every CV raises (the one fault a test injects; the pumps stay real)."""

    def __init__(self, inner: object) -> None:
        self.inner = inner

    def run_cv(self, params: object) -> object:
        raise RuntimeError("plug-in bug: the scan never started")

    def abort(self) -> None:
        self.inner.abort()  # type: ignore[attr-defined]

    def close(self) -> None:
        self.inner.close()  # type: ignore[attr-defined]


def test_a_failed_experiment_leaves_its_liquid_counted(example_rig: Rig) -> None:
    """The experiment fails at its cv, before its rinse: the next one must not pour on top of it as into an
    empty cell."""
    rig = example_rig
    executor = ProtocolExecutor(RINSED, rig, SafetyLimits(5.0, 10.0, (-3.0, 3.0), cell_volume_ml=9.0), 3.2)
    working = rig.instruments["potentiostat"]
    rig.instruments["potentiostat"] = _BrokenPotentiostat(working)
    try:
        with pytest.raises(RuntimeError, match="plug-in bug"):
            executor.run("S0001", "c1ccccc1", {}, None, lambda *a: None)
    finally:
        rig.instruments["potentiostat"] = working
    assert in_cell(rig) == pytest.approx(5.0)  # never rinsed
    before = wire(rig)
    with pytest.raises(RigNotReady, match=r"protocol\[2\]\.dispense: electrolyte_pump: the cell would "
                                          r"hold 10 mL, more than its 9 mL"):
        executor.run("S0002", "c1ccccc1", {}, None, lambda *a: None)
    assert wire(rig) == before  # refused before the experiment began: not a byte to any pump
    assert in_cell(rig) == pytest.approx(5.0)


def _journal_rows(store: Path) -> dict[str, list[tuple]]:
    """Every row of every table of the journal at ``store``, read with plain sqlite3: what a refused resume must
    leave as it was."""
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {name: db.execute(f'SELECT * FROM "{name}"').fetchall() for name in tables}


def _run_once(campaign: Campaign, potentiostat: type, prepare: Callable[[Rig], object] = lambda rig: None) -> int:
    """One run of ``campaign`` as ``run`` starts it, on its dry-run rig with the potentiostat wrapped in
    ``potentiostat`` (the fault a test injects) and ``prepare`` done to the rig once the runner has started (and
    given the pumps' drivers its count of their syringes); its exit code."""
    library = read_table(campaign.library.file).smiles
    with build_rig(campaign, dry_run=True, library=library) as rig, \
            Journal.create(campaign.store, campaign) as journal, Interrupts() as interrupts:
        journal.add_event("run", "run started (dry run on emulators)", data={"dry_run": True})  # as `run` says
        rig.instruments["potentiostat"] = potentiostat(rig.instruments["potentiostat"])
        runner = Runner(campaign, journal, rig, build_executor(campaign, rig), library, None, interrupts)
        prepare(rig)
        return runner.run()


def _nobody_to_rinse(_lab: SimulatedLab) -> None:
    raise NoOperator("cell", "no operator to rinse the cell: the console's input is closed")


def test_a_resumed_campaign_counts_what_the_journal_says_the_cell_still_holds(tmp_path, write_campaign, labloop,
                                                                              monkeypatch) -> None:
    """Run 1 fails its experiment before the rinse, and the rinse after the failure finds nobody to do it (5 mL
    stay in the 9 mL cell), and stops; ``resume`` (a new process's executor and rig) must count those 5 mL from
    the journal's actions and refuse to measure on top of them, until the operator says the cell was emptied by
    hand (``--cell-emptied``). The refusal spends no molecule: its experiment waits for the resume that can run
    it (it failed, and three more with it, before)."""
    campaign = load_campaign(write_campaign(tmp_path, protocol=RINSED, safety={"cell_volume_ml": 9.0},
                                            budget={"max_experiments": 2, "max_consecutive_faults": 1}))
    with monkeypatch.context() as patched:  # a rig whose rinse is a person's, and nobody at the console
        patched.setattr(SimulatedLab, "rinse", _nobody_to_rinse)
        assert _run_once(campaign, _BrokenPotentiostat) == EXIT_FAULTS
    with Journal.open(campaign.store, readonly=True) as journal:
        first = journal.experiments(states=(State.FAILED,))
        rinse = journal.actions(first[0].id)[-1]
    assert [e.cause for e in first] == [
        "a labloop bug: potentiostat (cv): RuntimeError: plug-in bug: the scan never started"]  # not the tests' package
    assert (rinse.command, rinse.outcome) == ("rinse", "NoOperator: cell: no operator to rinse the cell: the "
                                                       "console's input is closed")

    before = _journal_rows(campaign.store)
    for _ in range(2):  # refused as often as it is tried, nothing moving (exit 2: bad input, as a missing flag)
        resumed = labloop("resume", campaign.store, "--syringes-filled")  # a flag that does not help: not journalled
        assert resumed.returncode == 2, resumed.stderr
        [line] = resumed.stderr.strip().splitlines()
        assert line.startswith(f"error: cell: it holds 5 mL by labloop's count, with what failed "
                               f"experiment {first[0].id} pumped before it stopped; the next experiment would measure "
                               "on top of that") and "Traceback" not in resumed.stderr
        # the flag it was given repeated (a refused resume journals neither): advised without it, the resumes went
        # round between the two flags (a data trial)
        assert line.endswith(f"; empty the cell, then `labloop resume {campaign.store} --cell-emptied "
                             "--syringes-filled`")
    assert _journal_rows(campaign.store) == before  # a refused resume writes nothing (it journalled a new attempt)
    with Journal.open(campaign.store, readonly=True) as journal:
        assert [e.id for e in journal.experiments(states=(State.FAILED,))] == [first[0].id]
        [waiting] = journal.experiments(states=(State.PROPOSED,))  # as it was: never started, never interrupted
        assert journal.actions(waiting.id) == []  # refused before its sample was loaded: no driver was asked

    emptied = labloop("resume", campaign.store, "--cell-emptied")
    assert emptied.returncode == 0, emptied.stderr
    with Journal.open(campaign.store, readonly=True) as journal:
        assert len(journal.experiments(states=(State.DONE,))) == 2 and len(journal.experiments()) == 3
        assert waiting.id in [e.id for e in journal.experiments(states=(State.DONE,))]
        assert [e.kind for e in journal.events()].count("cell_emptied") == 1


class _CtrlCDuringScan(_BrokenPotentiostat):
    """A potentiostat whose scan is interrupted by a real SIGINT to this process (a person's Ctrl-C mid-scan)."""

    def run_cv(self, params: object) -> object:
        os.kill(os.getpid(), signal.SIGINT)
        return self.inner.run_cv(params)  # type: ignore[attr-defined]


def test_a_resume_onto_what_an_interrupted_experiment_pumped_is_refused(tmp_path, write_campaign, labloop) -> None:
    """Ctrl-C during the cv leaves the sample and electrolyte (5 mL) in the cell; the experiment runs again from
    its first step on resume. Without ``--cell-emptied`` that put its sample on top of the half-run mixture (10 mL,
    the analyte read as half as concentrated), since no limit was broken; it is refused, nothing moving (exit 2),
    until the operator says the cell was emptied."""
    campaign = load_campaign(write_campaign(tmp_path, protocol=RINSED, budget={"max_experiments": 1}))
    assert _run_once(campaign, _CtrlCDuringScan) == EXIT_INTERRUPTED
    with Journal.open(campaign.store, readonly=True) as journal:
        [interrupted] = journal.experiments(states=(State.INTERRUPTED,))

    before = _journal_rows(campaign.store)
    resumed = labloop("resume", campaign.store)
    assert resumed.returncode == 2, resumed.stderr
    assert _journal_rows(campaign.store) == before  # no "started (attempt 2)", no "interrupted": nothing at all
    [line] = resumed.stderr.strip().splitlines()
    assert line.startswith(f"error: cell: it holds 5 mL by labloop's count, with what interrupted "
                           f"experiment {interrupted.id} pumped before it stopped; the next experiment would measure "
                           "on top of that")
    assert line.endswith(f"; empty the cell, then `labloop resume {campaign.store} --cell-emptied`")
    emptied = labloop("resume", campaign.store, "--cell-emptied")
    assert emptied.returncode == 0, emptied.stderr
    with Journal.open(campaign.store, readonly=True) as journal:
        assert [e.id for e in journal.experiments(states=(State.DONE,))] == [interrupted.id]


# -- defect 2: a plug-in pump's syringe -----------------------------------------------------------------------


CARELESS = """
    from labloop.instruments.contracts import SafetyLimits
    from labloop.instruments.ne1000 import NE1000Pump
    from labloop.instruments.registry import DriverDescriptor

    def open_careless(port, *, limits, time_scale=1.0, address=0, diameter_mm=None):
        # a plug-in that checks nothing of the campaign's limits: its own are a bucket's
        bucket = SafetyLimits(1000.0, 1000.0, limits.potential_window_v, 1000.0, 1000.0)
        return NE1000Pump.open(port, address, limits=bucket, time_scale=time_scale, diameter_mm=diameter_mm,
                               poll_s=0.0)

    CARELESS = DriverDescriptor(name="careless-pump", kind="pump", open=open_careless, default_baudrate=19200,
                                options=("address", "diameter_mm"))
    """


@pytest.fixture
def careless_pump(install_plugin) -> None:
    """An installed plug-in pump driver, ``careless-pump``, that checks none of the campaign's limits; its
    emulator is the NE-1000's (the plug-in speaks that protocol)."""
    install_plugin("careless_pump", CARELESS, {"careless-pump": "CARELESS"})


#: 0.6 mL of sample per experiment from the analyte pump, never refilled
SIX_TENTHS = ["load_sample", {"dispense": {"pump": "analyte_pump", "volume_ml": 0.6, "rate_ml_min": 0.5,
                                           "fluid": "sample"}}, CV, "rinse"]
#: the example's rig, the analyte pump on the careless plug-in (on a line of its own: one driver per line)
CARELESS_RIG = {"sampler": {"driver": "sim-sampler"},
                "analyte_pump": {"driver": "careless-pump", "options": {"address": 0, "diameter_mm": 4.61}},
                "electrolyte_pump": {"driver": "ne1000", "options": {"address": 1, "diameter_mm": 14.57}},
                "potentiostat": {"driver": "emstat"}}


def careless_campaign(tmp_path: Path, write_campaign, max_experiments: int) -> Path:
    """The careless rig with a 1 mL syringe on the analyte pump, and the never-refilled protocol."""
    return write_campaign(tmp_path, instruments=CARELESS_RIG, protocol=SIX_TENTHS,
                          budget={"max_experiments": max_experiments}, safety={"syringes_ml": {"analyte_pump": 1.0}})


@pytest.mark.usefixtures("careless_pump")
def test_validate_refuses_a_syringe_the_budget_runs_dry_without_a_refill(tmp_path, labloop, write_campaign) -> None:
    result = labloop("validate", careless_campaign(tmp_path, write_campaign, 6), "--dry-run")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert ("protocol[1].dispense.refill: in experiment 2 of 6 (budget.max_experiments), analyte_pump: dispense of "
            "0.6 mL exceeds the 0.4 mL left in the 1 mL syringe, and it is never refilled") in result.stderr
    assert not (tmp_path / "tiny.db").exists()
    assert labloop("validate", careless_campaign(tmp_path, write_campaign, 1), "--dry-run").returncode == 0


@pytest.mark.usefixtures("careless_pump")
def test_a_plugin_pump_that_checks_nothing_is_held_to_its_syringe(tmp_path, write_campaign) -> None:
    """The budget of 1 passes validate; the executor is then run four times, as a longer campaign would."""
    campaign = load_campaign(careless_campaign(tmp_path, write_campaign, 1))
    with build_rig(campaign, dry_run=True) as rig:
        assert rig.instruments["analyte_pump"].limits.syringe_ml == 1000.0  # its driver would take it all
        executor = build_executor(campaign, rig)
        executor.run("S0001", "c1ccccc1", {}, None, lambda *a: None)
        before = wire(rig)
        for _ in range(3):
            with pytest.raises(RigNotReady, match=r"protocol\[1\]\.dispense: analyte_pump: dispense of "
                                                  r"0.6 mL exceeds the 0.4 mL left in the 1 mL syringe.* which "
                                                  r"counts every dispense sent as delivered in full, one that failed"):
                executor.run("S0001", "c1ccccc1", {}, None, lambda *a: None)
        assert wire(rig)["analyte_pump"] == before["analyte_pump"]  # not a byte after the first dispense
        infused = rig.instruments["analyte_pump"].status().infused_ml
        assert infused == pytest.approx(0.6)  # the pump's own counter: one dispense, not four


def test_a_refill_restores_the_syringe_and_a_huge_budget_is_judged_exactly() -> None:
    """What the count says after many experiments, without running each: a refilled syringe stays full over a
    million experiments; 1 uL a time fills a 500 mL cell in experiment 500,001 and empties a 10 mL syringe in
    experiment 10,001, as running them one by one would find."""
    limits = SafetyLimits(5.0, 10.0, (-3.0, 3.0), cell_volume_ml=500.0)
    refilled = parse_steps(["load_sample", SAMPLE, ELECTROLYTE, CV, "rinse"])
    assert repeat_problem(refilled, Contents(limits), 1_000_000) is None
    drop = {"dispense": {"pump": "analyte_pump", "volume_ml": 0.001, "rate_ml_min": 0.5, "fluid": "sample"}}
    never_emptied = parse_steps(["load_sample", {"dispense": {**drop["dispense"], "refill": True}}, CV])
    index, field, refusal, full = repeat_problem(never_emptied, Contents(limits), 1_000_000)
    assert (index, field, full) == (1, "volume_ml", "cell")
    assert refusal.what.startswith("in experiment 500001 of 1000000")
    never_refilled = parse_steps(["load_sample", drop, CV, "rinse"])
    index, field, refusal, full = repeat_problem(never_refilled, Contents(limits), 1_000_000)
    assert (index, field, full) == (1, "refill", "syringe")
    assert refusal.what.startswith("in experiment 10001 of 1000000 (budget.max_experiments), analyte_pump: dispense "
                                   "of 0.001 mL exceeds the 0 mL left in the 10 mL syringe")
    one_by_one, experiment = Contents(limits), 1  # the same, experiment by experiment
    while one_by_one.refusal("analyte_pump", 0.001, where="") is None:
        one_by_one.pumped("analyte_pump", 0.001)
        one_by_one.emptied()
        experiment += 1
    assert experiment == 10_001


# -- what a resume replays, and what the operator says was done by hand ------------------------------------------


def test_replay_skips_commands_refused_before_sending_and_counts_syringes_filled_by_hand() -> None:
    """A refused dispense never left the syringe (the run did not count it); counting it on every resume drove
    a syringe's count below zero, refusing every later experiment. ``fill_syringes`` (``resume
    --syringes-filled``) counts each syringe full again, the operator's way out of a syringe run low."""
    limits = SafetyLimits(5.0, 10.0, (-3.0, 3.0), cell_volume_ml=100.0)
    executor = ProtocolExecutor(RINSED, None, limits, 3.2, kinds={"analyte_pump": "pump", "electrolyte_pump": "pump",
                                                                  "sampler": "sample_changer",
                                                                  "potentiostat": "potentiostat"})
    dispense = {"pump": "electrolyte_pump", "volume_ml": 4.5, "refill": False}
    refused = "SafetyLimitExceeded: protocol[2].dispense: electrolyte_pump: the cell would hold 10 mL"
    executor.replay([("dispense", dispense, "ok")] + [("dispense", dispense, refused)] * 3
                    + [("dispense", dispense, "ConfigError: electrolyte_pump: bad option")])
    assert executor.contents.state() == (4.5, {"electrolyte_pump": 5.5})  # the one dispense that was sent
    executor.replay([("dispense", dispense, None)])  # interrupted: may have delivered all of it
    assert executor.contents.state() == (9.0, {"electrolyte_pump": 1.0})
    # what stops the next experiment is the syringe run low, not the cell (100 mL)
    low = executor.refusal([("dispense", dispense, "ok"), ("dispense", dispense, None)], {}, {})
    assert low is not None and low.needs == "syringe"  # the advice said "empty the cell or fill the syringe"
    assert person_advice(low, Path("x.db")) == "fill every syringe, then `labloop resume x.db --syringes-filled`"
    executor.replay([("rinse", {}, "ok"), ("fill_syringes", {}, "ok")])
    assert executor.contents.state() == (0.0, {})  # every syringe full again


class _RefusingPump:
    """A plug-in pump that refuses every dispense before sending it, as the contract says it may."""

    def __init__(self, inner: object) -> None:
        self.inner = inner

    def dispense(self, volume_ml: float, rate_ml_min: float) -> float:
        raise SafetyLimitExceeded("careful-pump", f"{volume_ml} mL is more than this pump allows")

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_a_dispense_the_driver_refuses_before_sending_is_not_counted(example_rig: Rig) -> None:
    rig = example_rig
    executor = ProtocolExecutor(RINSED, rig, SafetyLimits(5.0, 10.0, (-3.0, 3.0), cell_volume_ml=9.0), 3.2)
    rig.instruments["electrolyte_pump"] = _RefusingPump(rig.instruments["electrolyte_pump"])
    with pytest.raises(SafetyLimitExceeded, match="more than this pump allows"):
        executor.run("S0001", "c1ccccc1", {}, None, lambda *a: None)
    assert executor.contents.state() == (0.5, {"analyte_pump": 10.0, "electrolyte_pump": 10.0})  # the sample only


class _BuggyPump:
    """A plug-in pump with a bug: its dispense raises AttributeError, before it sends anything (``after_sending``
    False) or once the real pump took the command."""

    def __init__(self, inner: object, after_sending: bool) -> None:
        self.inner, self.after_sending = inner, after_sending

    def dispense(self, volume_ml: float, rate_ml_min: float) -> float:
        if self.after_sending:
            self.inner.dispense(volume_ml, rate_ml_min)  # type: ignore[attr-defined]
        raise AttributeError("'NoneType' object has no attribute 'encode'")

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


@pytest.mark.parametrize("after_sending", [False, True])
def test_a_dispense_whose_port_carried_no_byte_is_not_counted(example_rig: Rig, after_sending: bool) -> None:
    """A plug-in's dispense that raised a bug before writing a byte drained its syringe by labloop's count each time,
    until a stop asked for a full syringe to be filled (a plug-in engineer's trial): its port's byte count says that
    nothing reached the pump (instruments/transport.py bytes_sent). One that raised after the pump took the command
    is counted in full, as any dispense cut short."""
    rig = example_rig
    limits = SafetyLimits(5.0, 10.0, (-3.0, 3.0), cell_volume_ml=9.0)
    executor = ProtocolExecutor(RINSED, rig, limits, 3.2)
    rig.instruments["electrolyte_pump"] = _BuggyPump(rig.instruments["electrolyte_pump"], after_sending)
    before = wire(rig)["electrolyte_pump"]
    actions: list[tuple] = []
    with pytest.raises(AttributeError, match="no attribute 'encode'"):
        executor.run("S0001", "c1ccccc1", {}, None, lambda *a: actions.append(a))
    assert (wire(rig)["electrolyte_pump"] > before) is after_sending  # read on the emulator itself
    if after_sending:
        assert executor.contents.state() == (5.0, {"analyte_pump": 10.0, "electrolyte_pump": 5.5})
    else:  # the sample only
        assert executor.contents.state() == (0.5, {"analyte_pump": 10.0, "electrolyte_pump": 10.0})
    # a resume counts the same from the journal's actions (a reviewer's probe: the replay counted it in full)
    resumed = ProtocolExecutor(RINSED, None, limits, 3.2)
    resumed.replay([(a[1], a[3], a[-1]) for a in actions if a[-1] is not None])
    counted = [(c.cell_ml, c.held("analyte_pump"), c.held("electrolyte_pump"))
               for c in (resumed.contents, executor.contents)]
    assert counted[0] == counted[1], counted


def test_resume_with_syringes_filled_is_journalled(tmp_path, write_campaign, labloop) -> None:
    """The electrolyte syringe, loaded with 8 mL, gives one 4.5 mL dispense: a resume for a second experiment is
    refused by the journal's count of 3.5 mL left (it counted 5.5, from a full syringe), and runs once the operator
    says every syringe was filled, although the campaign, which a journal keeps, still says 8 mL."""
    campaign_file = write_campaign(tmp_path, instruments=PARTLY_FILLED, protocol=ELECTROLYTE_NOT_REFILLED,
                                   budget={"max_experiments": 1})
    assert labloop("run", campaign_file, "--dry-run").returncode == 0
    store = tmp_path / "tiny.db"
    refused = labloop("resume", store, "--max-experiments", 2)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert ("error: protocol[2].dispense: electrolyte_pump: dispense of 4.5 mL exceeds the 3.5 mL left in "
            "the 10 mL syringe") in refused.stderr and "--syringes-filled" in refused.stderr
    assert labloop("resume", store, "--syringes-filled", "--max-experiments", 2).returncode == 0
    with Journal.open(store, readonly=True) as journal:
        assert [e.kind for e in journal.events()].count("syringes_filled") == 1
        assert len(journal.experiments(states=(State.DONE,))) == 2


# -- the lab-grade steps refill too (a reviewer: lab-grade.yaml with its real 1 mL syringes was refused) ----------


#: the example's rig with a ferrocene pump holding a 1 mL syringe on the same line
STANDARD_RIG = {**CARELESS_RIG, "analyte_pump": {"driver": "ne1000", "options": {"address": 0, "diameter_mm": 4.61}},
                "standard_pump": {"driver": "ne1000", "options": {"address": 2, "diameter_mm": 4.61}}}
ONE_ML = {"syringes_ml": {"analyte_pump": 1.0, "standard_pump": 1.0}}


def with_standard(refill: bool) -> list:
    """The rinsed protocol with 0.1 mL of ferrocene stock after the cv, its syringe refilled or not."""
    return [*RINSED[:4], {"add_standard": {"pump": "standard_pump", "volume_ml": 0.1, "rate_ml_min": 0.5,
                                 "refill": refill}}, "rinse"]


def test_validate_asks_an_add_standard_or_a_clean_to_refill_a_syringe_the_budget_runs_dry(
        tmp_path, labloop, write_campaign) -> None:
    """0.1 mL of ferrocene per experiment from a 1 mL syringe runs dry in experiment 11 of 30: validate names
    the add_standard's ``refill``, and passes once it is there; a clean's flush is judged the same way."""
    campaign = write_campaign(tmp_path, instruments=STANDARD_RIG, protocol=with_standard(False), safety=ONE_ML,
                              budget={"max_experiments": 30})
    refused = labloop("validate", campaign, "--dry-run")
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    assert ("protocol[4].add_standard.refill: in experiment 11 of 30 (budget.max_experiments), standard_pump: "
            "dispense of 0.1 mL exceeds the 0 mL left in the 1 mL syringe, and it is never refilled (refill: true "
            "refills it after the add_standard)") in refused.stderr
    assert labloop("validate", write_campaign(tmp_path, instruments=STANDARD_RIG, protocol=with_standard(True),
                                              safety=ONE_ML, budget={"max_experiments": 30}),
                   "--dry-run").returncode == 0
    limits = SafetyLimits(5.0, 10.0, (-3.0, 3.0), cell_volume_ml=20.0)
    flushed = [*RINSED[:4], {"clean": {"pump": "flush_pump", "volume_ml": 4.0}}]  # 10 mL: 2 cleans and a half
    index, field, refusal, full = repeat_problem(parse_steps(flushed), Contents(limits), 3)
    assert (index, field, full) == (4, "refill", "syringe") and "in experiment 3 of 3" in refusal.what
    refilled = [*flushed[:4], {"clean": {"pump": "flush_pump", "volume_ml": 4.0, "refill": True}}]
    assert repeat_problem(parse_steps(refilled), Contents(limits), 1000) is None


def test_a_clean_without_a_pump_has_no_syringe_to_refill() -> None:
    with pytest.raises(Problems) as info:
        parse_steps([*RINSED[:4], {"clean": {"refill": True}}])
    assert [(p.loc, p.message) for p in info.value.problems] == [
        ((4, "clean", "refill"), "a clean without a pump asks the operator, so there is no syringe to refill: give "
                                 "a pump, or drop refill")]


def test_an_add_standard_refills_its_syringe_on_the_rig_and_on_resume(tmp_path, write_campaign) -> None:
    """Eleven experiments of 0.1 mL from a 1 mL syringe: the ferrocene pump withdraws 0.1 mL from its line after
    each addition (its own counters say so), so the eleventh is not refused; a resume counts an ended
    add_standard's refill as the run did."""
    campaign = load_campaign(write_campaign(tmp_path, instruments=STANDARD_RIG, protocol=with_standard(True),
                                            safety=ONE_ML, budget={"max_experiments": 11}))
    with build_rig(campaign, dry_run=True) as rig:
        executor = build_executor(campaign, rig)
        records: list[tuple] = []
        for n in range(11):
            executor.run(f"S{n + 1:04d}", "c1ccccc1", {}, None, lambda *a: records.append(a))
        status = rig.instruments["standard_pump"].status()  # its counters since the last addition
        assert (status.infused_ml, status.withdrawn_ml) == pytest.approx((0.1, 0.1))
        assert executor.contents.held("standard_pump") == pytest.approx(1.0)
        added = [r[3] for r in records if r[1] == "add_standard" and r[-1] == "ok"]
        assert len(added) == 11 and all(a["refilled_ml"] == pytest.approx(0.1) for a in added)
    standard = {"pump": "standard_pump", "volume_ml": 0.1, "refill": True}
    resumed = ProtocolExecutor(with_standard(True), None, SafetyLimits(5.0, 10.0, (-3.0, 3.0)), 3.2,
                               kinds={"analyte_pump": "pump", "electrolyte_pump": "pump", "standard_pump": "pump",
                                      "sampler": "sample_changer", "potentiostat": "potentiostat"})
    resumed.replay([("add_standard", standard, "ok"), ("add_standard", standard, "BlankFailed: the scan")])
    assert resumed.contents.held("standard_pump") == pytest.approx(9.9)  # the one that ended ok was refilled


class _HalfPump:
    """A plug-in pump that delivers, and reports, half of what it is asked (it checks nothing of its own)."""

    def __init__(self, inner: object) -> None:
        self.inner = inner

    def dispense(self, volume_ml: float, rate_ml_min: float) -> float:
        return self.inner.dispense(volume_ml / 2, rate_ml_min)  # type: ignore[attr-defined, no-any-return]

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


class _NoStandardScan:
    """A potentiostat whose second CV of an experiment (the standard's scan) fails: an overload there."""

    def __init__(self, inner: object) -> None:
        self.inner, self.calls = inner, 0

    def run_cv(self, params: object) -> object:
        self.calls += 1
        if self.calls % 2 == 0:
            raise Overload("potentiostat", "current overload in the standard's scan")
        return self.inner.run_cv(params)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_a_step_refills_only_what_it_delivered_and_only_once_it_has_ended(tmp_path, write_campaign) -> None:
    """A reviewer's two findings. A pump that delivered half of an add_standard was refilled in full, so the
    1 mL syringe held 1.05 mL, then 1.10...: now every pumping step checks the pump's report before its
    refill (DispenseMismatch, nothing withdrawn). And the refill ran before the standard's scan, so a scan
    that failed left a refill done live that a resume (counting only steps that ended ok) did not count:
    now it comes last, and the live count and the journal's agree."""
    campaign = load_campaign(write_campaign(tmp_path, instruments=STANDARD_RIG, protocol=with_standard(True),
                                            safety=ONE_ML, budget={"max_experiments": 2}))
    with build_rig(campaign, dry_run=True) as rig:
        pump = rig.instruments["standard_pump"]
        rig.instruments["standard_pump"] = _HalfPump(pump)
        with pytest.raises(DispenseMismatch, match=r"reports 0\.05 mL dispensed where 0\.1 mL was asked"):
            build_executor(campaign, rig).run("S0001", "c1ccccc1", {}, None, lambda *a: None)
        assert pump.status().withdrawn_ml == 0.0  # not refilled

        rig.instruments["standard_pump"] = pump
        rig.instruments["potentiostat"] = _NoStandardScan(rig.instruments["potentiostat"])
        live = build_executor(campaign, rig)
        actions: list[tuple] = []
        with pytest.raises(Overload):
            live.run("S0002", "c1ccccc1", {}, None, lambda *a: actions.append(a))
        assert live.contents.held("standard_pump") == pytest.approx(0.9)  # delivered, not refilled
    resumed = build_executor(campaign, None)
    resumed.replay([(a[1], a[3], a[-1]) for a in actions if a[-1] is not None])
    assert resumed.contents.state() == live.contents.state()


def test_a_syringe_drained_by_another_step_names_the_step_without_refill() -> None:
    """A newcomer refilled the electrolyte dispense and not the clean on the same pump: validate blamed the
    dispense's volume_ml, whose refill was already set. The field to change is the clean's refill."""
    limits = SafetyLimits(5.0, 10.0, (-3.0, 3.0), cell_volume_ml=20.0)
    steps = parse_steps([ELECTROLYTE, *RINSED[:2], CV, {"clean": {"pump": "electrolyte_pump", "volume_ml": 1.0}}])
    index, field, refusal, full = repeat_problem(steps, Contents(limits), 30)
    assert (index, field, full) == (4, "refill", "syringe")
    assert refusal.what == ("in experiment 7 of 30 (budget.max_experiments), electrolyte_pump: dispense of 4.5 mL "
                            "exceeds the 4 mL left in the 10 mL syringe at protocol[0].dispense: this clean takes 1 mL "
                            "from electrolyte_pump each experiment and never refills it (refill: true refills it after "
                            "the clean)")
    fixed = parse_steps([ELECTROLYTE, *RINSED[:2], CV, {"clean": {"pump": "electrolyte_pump", "volume_ml": 1.0,
                                                                  "refill": True}}])
    assert repeat_problem(fixed, Contents(limits), 30) is None


def with_standard_of(volume_ml: float) -> list:
    """:func:`with_standard` with ``volume_ml`` of ferrocene stock, refilled."""
    return [*RINSED[:4], {"add_standard": {"pump": "standard_pump", "volume_ml": volume_ml, "rate_ml_min": 0.5,
                                           "refill": True}}, "rinse"]


def test_a_refill_draws_what_the_pump_delivered_not_the_volume_written(tmp_path, write_campaign) -> None:
    """A newcomer's finding: 0.12344 mL of ferrocene is sent to the NE-1000 as 0.1234 mL (its number format keeps 4
    digits), and the refill asked for 0.12344 mL onto the 0.8766 mL left in the 1 mL syringe: the driver refused
    it after the analyte was measured, and the experiment failed. Now the refill draws what the pump delivered, and
    the count (live and replayed from the journal) holds what went in, so every experiment ends ok with the syringe
    full."""
    campaign = load_campaign(write_campaign(tmp_path, instruments=STANDARD_RIG, protocol=with_standard_of(0.12344),
                                            safety=ONE_ML, budget={"max_experiments": 3}))
    actions: list[tuple] = []
    with build_rig(campaign, dry_run=True) as rig:
        live = build_executor(campaign, rig)
        for n in range(3):
            live.run(f"S{n + 1:04d}", "c1ccccc1", {}, None, lambda *a: actions.append(a))
        status = rig.instruments["standard_pump"].status()  # its counters since the last addition
        assert (status.infused_ml, status.withdrawn_ml) == pytest.approx((0.1234, 0.1234), abs=1e-9)
    added = [a[3] for a in actions if a[1] == "add_standard" and a[-1] is not None]
    assert [a["refilled_ml"] for a in added] == pytest.approx([0.1234] * 3, abs=1e-9)
    assert live.contents.held("standard_pump") == pytest.approx(1.0, abs=1e-9)
    resumed = build_executor(campaign, None)
    resumed.replay([(a[1], a[3], a[-1]) for a in actions if a[-1] is not None])
    assert resumed.contents.state() == live.contents.state()


def test_a_pump_failing_inside_add_standard_is_named_not_the_potentiostat(tmp_path, write_campaign) -> None:
    """The ferrocene pump's own driver refuses its dispense (its own count says the syringe holds 0.05 mL, where
    labloop's counts it full): the experiment's cause named the potentiostat, the instrument add_standard is
    journalled under. Now it names the pump."""
    campaign = load_campaign(write_campaign(tmp_path, instruments=STANDARD_RIG, protocol=with_standard(True),
                                            safety=ONE_ML, budget={"max_experiments": 1, "max_consecutive_faults": 1}))
    assert _run_once(campaign, lambda potentiostat: potentiostat,
                     lambda rig: setattr(rig.instruments["standard_pump"], "content_ml", 0.05)) == EXIT_FAULTS
    with Journal.open(campaign.store, readonly=True) as journal:
        [failed] = journal.experiments(states=(State.FAILED,))
        added = next(a for a in journal.actions(failed.id) if a.command == "add_standard")
    assert failed.cause.startswith("standard_pump (add_standard): SafetyLimitExceeded: NE-1000 #02 on ")
    assert failed.cause.endswith("dispense of 0.1 mL exceeds the 0.05 mL left in the 1 mL syringe")
    assert added.instrument == "potentiostat"  # journalled under the step's instrument, as it started


#: the example's rig with 8 mL loaded into the electrolyte pump's 10 mL syringe (the NE-1000's content_ml)
PARTLY_FILLED = {**CARELESS_RIG, "analyte_pump": {"driver": "ne1000", "options": {"address": 0, "diameter_mm": 4.61}},
                 "electrolyte_pump": {"driver": "ne1000", "options": {"address": 1, "diameter_mm": 14.57,
                                                                      "content_ml": 8.0}}}
#: the rinsed protocol whose electrolyte dispense (4.5 mL) is never refilled
ELECTROLYTE_NOT_REFILLED = ["load_sample", SAMPLE, {"dispense": {**ELECTROLYTE["dispense"], "refill": False}}, CV,
                            "rinse"]


def test_a_syringe_loaded_partly_is_refused_before_it_runs_dry(tmp_path, labloop, write_campaign) -> None:
    """Two experiments take 9 mL from a 10 mL syringe that was loaded with 8 (its content_ml): validate passed, counting
    it full, and the run did one experiment and failed three with 'dispense of 4.5 mL exceeds the 3.5 mL left in the
    10 mL syringe', exit 1. Now both refuse before anything runs, in one line naming the pump and its content. With
    a budget of four the campaign's own check counted from a full syringe ("in experiment 3 of 4 ... the 1 mL left"),
    numbers of a syringe it never had (a newcomer's check of the docs): it counts from the 8 mL too."""
    for budget in (2, 4):
        campaign = write_campaign(tmp_path, instruments=PARTLY_FILLED, protocol=ELECTROLYTE_NOT_REFILLED,
                                  budget={"max_experiments": budget})
        for command in ("validate", "run"):
            result = labloop(command, campaign, "--dry-run")
            assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
            assert (f"in experiment 2 of {budget} (budget.max_experiments), electrolyte_pump: dispense of "
                    "4.5 mL exceeds the 3.5 mL left in the 10 mL syringe, and it is never refilled (refill: true "
                    "refills it after the dispense); electrolyte_pump's syringe starts the campaign with 8 mL, as "
                    "instruments.electrolyte_pump.options say: fill it, and say so there") in result.stderr
        assert not (tmp_path / "tiny.db").exists()


def test_a_partly_filled_syringe_is_counted_from_its_content_live_and_on_resume(tmp_path, write_campaign) -> None:
    """A budget of one fits the 8 mL; a longer campaign (the executor run again, or resumed from the journal) finds
    3.5 mL left by the same count as the pump's own driver, and refuses the next experiment before a byte is sent
    (it counted 5.5 mL: the syringe full, less one dispense)."""
    campaign = load_campaign(write_campaign(tmp_path, instruments=PARTLY_FILLED, protocol=ELECTROLYTE_NOT_REFILLED,
                                            budget={"max_experiments": 1}))
    actions: list[tuple] = []
    with build_rig(campaign, dry_run=True) as rig:
        live = build_executor(campaign, rig)
        live.run("S0001", "c1ccccc1", {}, None, lambda *a: actions.append(a))
        assert live.contents.held("electrolyte_pump") == rig.instruments["electrolyte_pump"].content_ml == 3.5
        before = wire(rig)
        with pytest.raises(RigNotReady, match=r"protocol\[2\]\.dispense: electrolyte_pump: dispense of 4\.5 mL "
                                              r"exceeds the 3\.5 mL left in the 10 mL syringe"):
            live.run("S0002", "c1ccccc1", {}, None, lambda *a: None)
        assert wire(rig) == before
    history = [(a[1], a[3], a[-1]) for a in actions if a[-1] is not None]
    resumed = build_executor(campaign, None)
    refused = resumed.refusal(history, {}, {})
    assert refused is not None and "exceeds the 3.5 mL left" in str(refused)
    resumed.replay(history)
    assert resumed.contents.state() == live.contents.state()


def test_a_syringe_filled_by_hand_is_full_for_the_pumps_driver_too(tmp_path, write_campaign, labloop) -> None:
    """The NE-1000 driver counted its syringe from its ``content_ml`` option at every opening: after ``resume
    --syringes-filled`` labloop counted the syringe full and the driver still 0.8 mL less what it had given, and
    refused the third experiment's dispense at the pump, its sample spent (a hardware trial). The driver now counts
    what labloop counts: the filled syringe gives two more dispenses of 0.5 mL."""
    rig = {**RIG, "analyte_pump": {**RIG["analyte_pump"], "options": {**RIG["analyte_pump"]["options"],
                                                                      "content_ml": 0.8}}}
    protocol = ["load_sample",
                {"dispense": {"pump": "analyte_pump", "volume_ml": 0.5, "rate_ml_min": 0.5, "fluid": "sample"}},
                {"dispense": {"pump": "electrolyte_pump", "volume_ml": 4.5, "rate_ml_min": 5.0, "fluid": "electrolyte",
                              "refill": True}},
                {"cv": {"e_begin_v": -0.8, "e_vertex1_v": 1.95, "e_vertex2_v": -0.8, "e_step_v": 0.002}}, "rinse"]
    campaign = write_campaign(tmp_path, instruments=rig, protocol=protocol, budget={"max_experiments": 1},
                              safety={"syringes_ml": {"analyte_pump": 1.0}, "potential_limits_v": [-1.7, 2.0]})
    assert labloop("run", campaign, "--dry-run").returncode == 0
    store = tmp_path / "tiny.db"
    refused = labloop("resume", store, "--max-experiments", "3")  # 0.3 mL left: not another 0.5
    # the advice repeats the budget it was given (followed as written, it lost it: the same trial)
    assert refused.returncode == 2 and f"`labloop resume {store} --max-experiments 3 --syringes-filled`" in \
        refused.stderr, refused.stderr
    filled = labloop("resume", store, "--max-experiments", "3", "--syringes-filled")
    assert filled.returncode == 0, filled.stderr
    with Journal.open(store, readonly=True) as journal:
        assert [e.status for e in journal.experiments()] == ["done"] * 3
