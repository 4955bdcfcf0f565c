"""The rig from a campaign: dry-run instruments on their emulators (one shared cell), health checks, a safe
state that really stops pumps and switches the cell off (read on the emulators), the manual sample changer,
and nothing left running when an instrument fails to open."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from labloop.core.errors import ConfigError, Disconnected, InstrumentTimeout
from labloop.instruments.contracts import Potentiostat, Pump, SampleChanger
from labloop.instruments.manual_sampler import ManualSampleChanger
from labloop.instruments.voltammogram import CVParams
from labloop.orchestrator.compose import build_rig
from labloop.orchestrator.config.campaign import Campaign, Instrument, load_campaign
from labloop.orchestrator.loop.runner import sample_ids

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def campaign() -> Campaign:
    return load_campaign(EXAMPLES / "campaign.yaml")


def with_changes(campaign: Campaign, **changes) -> Campaign:
    return campaign.model_copy(update=changes)


def wait_for(predicate, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_dry_run_rig_opens_every_instrument_on_its_emulator(campaign):
    with build_rig(campaign, dry_run=True) as rig:
        kinds = {name: [c.__name__ for c in (Pump, Potentiostat, SampleChanger) if isinstance(d, c)]
                 for name, d in rig.instruments.items()}
        assert kinds == {"sampler": ["SampleChanger"], "analyte_pump": ["Pump"], "electrolyte_pump": ["Pump"],
                         "potentiostat": ["Potentiostat"]}
        health = rig.health_check()
        assert health["analyte_pump"] == "ok: stopped" and health["potentiostat"].startswith("ok: espico")
        rig.instruments["sampler"].load("vial-1")
        rig.instruments["analyte_pump"].dispense(0.5, 0.5)  # the sample pump pours the loaded stock
        rig.instruments["electrolyte_pump"].dispense(4.5, 5.0)
        cell = rig.simulation.emulator_states()["cell"]
        assert cell["volume_ml"] == pytest.approx(5.0) and cell["analytes_mM"]["vial-1"] == pytest.approx(1.0)
        rig.rinse_cell()
        assert rig.simulation.emulator_states()["cell"]["volume_ml"] == 0.0


def test_safe_state_stops_a_running_pump_and_switches_the_cell_off(campaign):
    real_time = with_changes(campaign, world=campaign.world.model_copy(update={"time_scale": 1.0}))
    rig = build_rig(real_time, dry_run=True)
    errors: list[BaseException] = []

    def attempt(action) -> None:
        try:
            action()
        except Exception as exc:
            errors.append(exc)

    cv = CVParams(e_begin_v=0.0, e_vertex1_v=1.0, e_vertex2_v=-1.0, scan_rate_v_s=0.1)  # 40 s
    workers = [threading.Thread(target=attempt, args=(lambda: rig.instruments["analyte_pump"].dispense(0.5, 0.5),)),
               threading.Thread(target=attempt, args=(lambda: rig.instruments["potentiostat"].run_cv(cv),))]
    for worker in workers:
        worker.start()
    wait_for(lambda: rig.simulation.emulator_states()["analyte_pump"]["status"] == "I"
             and rig.simulation.emulator_states()["potentiostat"]["cell_on"])
    assert rig.safe_state() == []  # nothing reported unsafe
    states = rig.simulation.emulator_states()
    assert states["analyte_pump"]["status"] == "S"
    # one CI run under load read the cell still on right after safe_state returned, nothing reported unsafe
    # (not reproduced since; the emulator runs on its own thread): wait for the device's state, not one read
    wait_for(lambda: rig.simulation.emulator_states()["potentiostat"]["cell_on"] is False)
    for worker in workers:
        worker.join(timeout=10)
    assert not any(worker.is_alive() for worker in workers)
    assert sorted(type(exc).__name__ for exc in errors) == ["DeviceError", "DispenseMismatch"]  # both cut short
    rig.safe_state()  # twice is fine, and so is closing twice
    rig.close()
    rig.close()


class _StopsOnce:
    """A pump whose stop answers once, then times out (a noisy line's lost reply, which a test cannot time a real
    line to)."""

    def __init__(self, pump: object) -> None:
        self.pump, self.stops = pump, 0

    def stop(self) -> None:
        self.stops += 1
        if self.stops > 1:
            raise InstrumentTimeout("electrolyte_pump", "no reply before the deadline")
        self.pump.stop()  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self.pump, name)


@pytest.mark.parametrize("used_since", [False, True], ids=["nothing commanded since", "commanded since"])
def test_closing_stops_again_only_what_was_used_since_the_last_safe_state(campaign, caplog, used_since):
    """After a run's stop had made the rig safe, closing it stopped every instrument again, and a pump whose second
    stop timed out was said at ERROR as "could not be made safe" (a plug-in engineer's trial at fault_rate 0.03): it
    had answered the stop, and nothing had started it since. Once the rig is in use again, closing stops it again."""
    rig = build_rig(campaign, dry_run=True)
    pump = rig.instruments["electrolyte_pump"] = _StopsOnce(rig.instruments["electrolyte_pump"])
    assert rig.safe_state() == []
    if used_since:
        rig.in_use()
    with caplog.at_level(logging.ERROR, logger="labloop.orchestrator.loop.rig"):
        rig.close()
    unsafe = [r.getMessage() for r in caplog.records if "could not be made safe" in r.getMessage()]
    if used_since:
        assert pump.stops == 2 and unsafe == ["safe state: electrolyte_pump could not be made safe: InstrumentTimeout: "
                                              "electrolyte_pump: no reply before the deadline"], unsafe
    else:
        assert pump.stops == 1 and unsafe == []


def test_a_failing_instrument_leaves_nothing_running(campaign):
    threads = threading.active_count()
    broken = dict(campaign.instruments)
    # a value the campaign refuses when read since the driver's option check runs there too: built unchecked, so
    # the driver refuses it when the rig opens, after the emulators before it have started
    broken["electrolyte_pump"] = Instrument.model_construct(driver="ne1000", port="x",
                                                            options={"address": 1, "diameter_mm": 200.0})
    with pytest.raises(ConfigError, match="diameter"):
        build_rig(with_changes(campaign, instruments=broken), dry_run=True)
    wait_for(lambda: threading.active_count() == threads)


def test_manual_sample_changer_asks_once_per_vial_and_again_after_a_restart():
    questions: list[str] = []
    changer = ManualSampleChanger.open(ask=questions.append)
    changer.load("7")
    changer.load("7")
    changer.load("8")
    assert questions == [f"Place vial {n} in line with the sample pump, then press Enter: " for n in ("7", "8")]
    ManualSampleChanger.open(ask=questions.append).load("8")  # a new process remembers nothing: asks again
    assert len(questions) == 3

    def no_console(_question: str) -> str:
        raise EOFError

    with pytest.raises(Disconnected, match="no operator"):
        ManualSampleChanger(ask=no_console).load("9")


def test_manual_changer_in_a_rig_asks_the_operator_or_its_simulation(campaign):
    only_manual = with_changes(campaign, instruments={"sampler": Instrument(driver="manual")})
    questions: list[str] = []
    with build_rig(only_manual, dry_run=False, ask=questions.append) as rig:  # a rig without its library
        rig.instruments["sampler"].load("3")
        rig.rinse_cell()  # on hardware, the operator rinses
        rig.rinse_cell("Experiment 3 failed with 5 mL in the cell. ")  # and is told why when it is no usual rinse
    assert questions == ["Place vial 3 in line with the sample pump, then press Enter: ",
                         "Rinse the cell, then press Enter: ",
                         "Experiment 3 failed with 5 mL in the cell. Rinse the cell, then press Enter: "]
    with build_rig(only_manual, dry_run=True, ask=questions.append) as rig:
        rig.instruments["sampler"].load("4")  # the simulated operator places it in the simulated cell at once
        assert rig.simulation.emulator_states()["cell"]["sample_id"] == "4"
    assert len(questions) == 3


def test_the_manual_changer_names_the_molecule_of_the_vial_it_asks_for(campaign):
    """"Place vial S0002" alone sent a newcomer to a table to find which molecule that was (a trial): given the
    campaign's library, the rig tells the manual changer what each sample id holds (the first row of a molecule
    written twice, as the ids are given), and a hostile string in the library is shown escaped."""
    only_manual = with_changes(campaign, instruments={"sampler": Instrument(driver="manual")})
    questions: list[str] = []
    library = ["CCO", "c1ccccc1", "CCO", "C\x1b[2JN"]
    with build_rig(only_manual, dry_run=False, ask=questions.append, library=library) as rig:
        for sample in sorted(sample_ids(library).values()):
            rig.instruments["sampler"].load(sample)
    assert questions == [f"Place vial {vial} in line with the sample pump, then press Enter: "
                         for vial in ("S0001 (CCO)", "S0002 (c1ccccc1)", "S0004 (C\\x1b[2JN)")]
