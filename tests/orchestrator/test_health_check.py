"""A failed instrument health check (a newcomer's plug-in pump whose ``status()`` answers garbage): it was
journalled as ``analyte_pump: error: too many values to unpack (expected 3)``, the run went ahead, exit 0,
nothing on the console. Now the check before the first experiment refuses the run in one line naming the
instrument and the exception type, before the journal is written or anything pumped (``run``, and ``validate
--dry-run`` with it); a check that fails mid-run is one warning line per instrument, journalled, and the run
goes on (a broken instrument then fails its experiments, and faults in a row stop the run). Real NE-1000 and
EmStat drivers on their emulators' ptys, a real journal."""

from __future__ import annotations

import contextlib
import logging
import re
from pathlib import Path

import pytest

from labloop.orchestrator.compose import build_executor, build_rig
from labloop.orchestrator.config.campaign import load_campaign
from labloop.orchestrator.journal.store import Journal
from labloop.orchestrator.loop.interrupts import Interrupts
from labloop.orchestrator.loop.runner import EXIT_OK, Runner
from labloop.surrogate.dataset import read_table

GARBLED = """
    from labloop.instruments.ne1000 import NE1000Pump
    from labloop.instruments.registry import DriverDescriptor

    class GarbledPump(NE1000Pump):
        def status(self):
            state, infused, withdrawn = "00S 0.000 0.000 ML".split()  # the naive parse of an odd reply
            raise AssertionError("unreachable")

    def open_garbled(port, *, limits, time_scale=1.0, address=0, diameter_mm=None):
        return GarbledPump.open(port, address, limits=limits, time_scale=time_scale, diameter_mm=diameter_mm,
                                poll_s=0.0)

    GARBLED = DriverDescriptor(name="garbled-pump", kind="pump", open=open_garbled, default_baudrate=19200,
                               options=("address", "diameter_mm"))
    """

LINE = ("error: instruments.analyte_pump: the health check before the first experiment failed: ValueError: too many "
        "values to unpack (expected 3)")


@pytest.fixture
def garbled_campaign(tmp_path, write_campaign, install_plugin):
    install_plugin("garbled_pump", GARBLED, {"garbled-pump": "GARBLED"})
    rig = {"sampler": {"driver": "sim-sampler"},
           "analyte_pump": {"driver": "garbled-pump", "options": {"address": 0, "diameter_mm": 4.61}},
           "electrolyte_pump": {"driver": "ne1000", "options": {"address": 1, "diameter_mm": 14.57}},
           "potentiostat": {"driver": "emstat"}}
    return write_campaign(tmp_path, instruments=rig, budget={"max_experiments": 1})


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_failed_health_check_before_the_first_experiment_refuses_the_run(garbled_campaign, tmp_path, labloop,
                                                                          command) -> None:
    result = labloop(command, garbled_campaign, "--dry-run")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == LINE
    assert not (tmp_path / "tiny.db").exists()  # nothing written, nothing pumped


class _FailsLater:
    """A pump whose ``status()`` answers garbage after its first health check (a cable worked loose mid-run)."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.checks = 0

    def status(self) -> object:
        self.checks += 1
        reply = "00S 0.000 0.000 ML"  # an odd reply, parsed as the newcomer's plug-in does
        if self.checks > 1:
            _state, _infused, _withdrawn = reply.split()
        return self.inner.status()  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_a_failed_health_check_mid_run_is_one_warning_line_and_journalled(tmp_path, write_campaign, caplog) -> None:
    campaign = load_campaign(write_campaign(tmp_path, budget={"max_experiments": 2},
                                            schedule={"health_check_minutes": 1e-9}))  # at every turn
    library = read_table(campaign.library.file).smiles
    with build_rig(campaign, dry_run=True, library=library) as rig, \
            Journal.create(campaign.store, campaign) as journal, Interrupts() as interrupts:
        rig.check_health()  # as run does first
        rig.instruments["analyte_pump"] = _FailsLater(rig.instruments["analyte_pump"])
        with caplog.at_level(logging.WARNING):
            code = Runner(campaign, journal, rig, build_executor(campaign, rig), library, None, interrupts).run()
        health = [e.message for e in journal.events() if e.kind == "health"]
    assert code == EXIT_OK  # the run went on
    assert health[0] == "all instruments ok"
    assert "analyte_pump: error: ValueError: too many values to unpack (expected 3)" in health[1:]
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "health" in r.getMessage()]
    assert said and set(said) == {"health check: analyte_pump failed: ValueError: too many values to unpack "
                                  "(expected 3)"}


SLOW = """
    import time

    from labloop.instruments.ne1000 import NE1000Pump
    from labloop.instruments.registry import DriverDescriptor

    class SlowPump(NE1000Pump):
        def status(self):
            time.sleep(1.0)
            return super().status()

    def open_slow(port, *, limits, time_scale=1.0, address=0, diameter_mm=None):
        time.sleep(1.0)
        return SlowPump.open(port, address, limits=limits, time_scale=time_scale, diameter_mm=diameter_mm,
                             poll_s=0.0)

    SLOW = DriverDescriptor(name="slow-pump", kind="pump", open=open_slow, default_baudrate=19200,
                            options=("address", "diameter_mm"))
    """


def test_an_open_or_health_check_that_does_not_return_is_said(tmp_path, write_campaign, install_plugin, caplog,
                                                              monkeypatch) -> None:
    """A plug-in's open() or status() that hung before the journal existed left the console silent until Ctrl-C,
    with nothing to say which instrument labloop waited on: past core/slow_calls.py's SLOW_CALL_S each is one
    warning naming the instrument and the call (here 0.3 s against a driver taking 1 s), and the quick ones nothing."""
    from labloop.core import slow_calls

    monkeypatch.setattr(slow_calls, "SLOW_CALL_S", 0.3)
    install_plugin("slow_pump", SLOW, {"slow-pump": "SLOW"})
    instruments = {"sampler": {"driver": "sim-sampler"},
                   "analyte_pump": {"driver": "slow-pump", "options": {"address": 0, "diameter_mm": 4.61}},
                   "electrolyte_pump": {"driver": "ne1000", "options": {"address": 1, "diameter_mm": 14.57}},
                   "potentiostat": {"driver": "emstat"}}
    campaign = load_campaign(write_campaign(tmp_path, instruments=instruments, budget={"max_experiments": 1}))
    with caplog.at_level(logging.WARNING), build_rig(campaign, dry_run=True,
                                                     library=read_table(campaign.library.file).smiles) as rig:
        assert rig.check_health()["analyte_pump"].startswith("ok")
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    waits = "has not returned after 0.3 s; labloop waits for it (Ctrl-C stops)"
    assert len(said) == 2, said
    opened = r"instruments\.analyte_pump: the open\(\) of driver 'slow-pump' on /dev/pts/\d+ "
    assert re.fullmatch(opened + re.escape(waits), said[0]), said
    assert said[1] == f"instruments.analyte_pump: its health check (status()) {waits}"


def test_a_driver_check_that_does_not_return_is_said_by_the_kit(install_plugin, caplog, monkeypatch) -> None:
    """``labloop drivers check`` of a driver hung in a check printed nothing until Ctrl-C (the kit's lines stop, a
    plug-in author's trial), where a run says which call it waits on: the kit says it too, naming the check."""
    from labloop.core import slow_calls
    from labloop.sim.conformance import check_driver

    monkeypatch.setattr(slow_calls, "SLOW_CALL_S", 0.3)
    install_plugin("slow_pump", SLOW, {"slow-pump": "SLOW"})
    with caplog.at_level(logging.WARNING):
        report = check_driver("slow-pump", options={"address": 0, "diameter_mm": 4.61})
    assert report.passed, report.checks  # slow, not wrong
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "slow-pump: its check 'open' has not returned after 0.3 s; labloop waits for it (Ctrl-C stops)" in said


def test_a_pump_still_pumping_when_the_run_opens_it_refuses_the_start(tmp_path, write_campaign):
    """A resume with ``--cell-emptied`` after a ``kill -9`` mid-dispense met the pump still infusing: its driver
    stopped it and said so, the emptying the operator had done before was journalled, and the next experiment
    dispensed on top of what the pump had delivered since (a hardware trial). A start that finds a pump moving is
    refused in one line naming it, before the journal is written, the pump stopped; the next start goes on. Real
    NE-1000 and EmStat drivers on their emulators' ptys, the pump set infusing by a driver that is then dropped, as
    a killed run's is; labloop in a process of its own, as the resume after a kill is."""
    import subprocess
    import sys
    import threading
    import time

    from labloop.instruments.ne1000 import NE1000Pump
    from labloop.sim.cell import Cell
    from labloop.sim.emstat_emulator import EmStatEmulator
    from labloop.sim.ne1000_emulator import NE1000Emulator, PumpSpec
    from labloop.sim.pty_device import PtyDevice, TimeScale

    pumps = NE1000Emulator([PumpSpec(0, diameter_mm=4.61), PumpSpec(1, diameter_mm=14.57)], cell=Cell(),
                           time_scale=TimeScale.real_time())
    with PtyDevice(pumps, name="ne1000").start() as chain, \
            PtyDevice(EmStatEmulator(lambda: []), name="emstat").start() as potentiostat:
        killed = NE1000Pump.open(chain.port, 0, limits=load_campaign(write_campaign(tmp_path)).safety.limits(),
                                 diameter_mm=4.61, poll_s=0.01)
        dispensing = threading.Thread(target=_quietly, args=(killed.dispense, 0.5, 0.5), daemon=True)
        dispensing.start()  # 60 s at 0.5 mL/min
        deadline = time.monotonic() + 30  # liveness only
        while pumps.snapshot(0).status != "I":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        killed.bus.close()  # the killed run's driver says nothing more (and gives back its line, which sends nothing)
        killed.close()
        _on_ports(write_campaign(tmp_path), tmp_path / "real.yaml", chain.port, potentiostat.port)
        result = subprocess.run([sys.executable, "-m", "labloop.orchestrator.cli.main", "run",
                                 str(tmp_path / "real.yaml")], capture_output=True, text=True, timeout=300)
        assert pumps.snapshot(0).status == "S", result.stderr
        dispensing.join(timeout=60)
    assert result.returncode == 2, result.stderr
    refusal = result.stderr.strip().splitlines()[-1]
    assert refusal.startswith(
        "error: instruments.analyte_pump: infusing when opened, left so by a run that stopped without stopping it "
        "(killed, or the computer lost power?): labloop stopped it now, but what it pumped until then is in the cell "
        "and out of its syringe, uncounted, even if the cell was emptied before this start: empty the cell and fill "
        "the syringe now, then start again (a journal's campaign: `labloop resume STORE --cell-emptied "
        "--syringes-filled`)"), refusal
    assert sorted(p.name for p in tmp_path.iterdir()) == ["real.yaml", "tiny.yaml"]  # no journal, no lock


def _on_ports(campaign_file: Path, real: Path, pumps: str, potentiostat: str) -> None:
    """``real``: ``campaign_file`` run on real ports, its two pumps on the chain at ``pumps``, its potentiostat at
    ``potentiostat`` and a manual sample changer (the simulated one is for dry runs only)."""
    import yaml

    campaign = yaml.safe_load(campaign_file.read_text())
    rig = campaign["instruments"]
    rig["sampler"] = {"driver": "manual"}
    rig["analyte_pump"]["port"] = rig["electrolyte_pump"]["port"] = pumps
    rig["potentiostat"]["port"] = potentiostat
    real.write_text(yaml.safe_dump(campaign, sort_keys=False))


def _quietly(call, *args) -> None:
    """``call(*args)``, whatever it raises: a dispense whose driver's line is closed under it."""
    with contextlib.suppress(Exception):
        call(*args)


@pytest.mark.parametrize("flag", [False, "", 0])
def test_a_plugins_found_running_that_is_no_word_is_said_as_its_drivers_fault(flag):
    """A plug-in writing ``found_running = False`` (a flag, an easy slip) had every start refused as a pump found
    pumping, "False when opened, ..." (a reviewer's finding): it is the driver's wrong return, said as such."""
    from labloop.core.errors import WrongReturn
    from labloop.orchestrator.loop.rig import Rig

    class Flagged:  # an instrument the health check asks nothing else of
        found_running = flag

        def close(self) -> None:
            return None

    with Rig({"valve": Flagged()}, closer=contextlib.ExitStack()) as rig, \
            pytest.raises(WrongReturn, match=r"^instruments\.valve: its driver's found_running is .*, not None or the "
                                             r"words of what the pump was doing when opened"):
        rig.check_health()


#: a plug-in potentiostat (the EmStat driver on its emulator) whose identify() answers a mapping, not text
IDENTIFIES_IN_A_DICT = """
    from labloop.instruments.emstat import EmStatPotentiostat
    from labloop.instruments.registry import DriverDescriptor

    class DictStat(EmStatPotentiostat):
        def identify(self):
            return {"not": "a string"}

    DICT_STAT = DriverDescriptor(name="dict-stat", kind="potentiostat", open=DictStat.open, default_baudrate=230400)
    """


def test_an_identify_that_answers_no_text_fails_the_health_check_as_its_drivers_fault(tmp_path, write_campaign,
                                                                                      install_plugin, labloop) -> None:
    """A plug-in's identify() returning a dict passed the health check and was journalled "ok: {'not': 'a string'}"
    (a plug-in author's trial): it is the driver's wrong return, one line before anything runs."""
    install_plugin("dict_stat", IDENTIFIES_IN_A_DICT, {"dict-stat": "DICT_STAT"},
                   "labloop.sim.builtin_emulators:emstat_emulator")
    rig = {"sampler": {"driver": "sim-sampler"},
           "analyte_pump": {"driver": "ne1000", "options": {"address": 0, "diameter_mm": 4.61}},
           "electrolyte_pump": {"driver": "ne1000", "options": {"address": 1, "diameter_mm": 14.57}},
           "potentiostat": {"driver": "dict-stat"}}
    result = labloop("validate", write_campaign(tmp_path, instruments=rig, budget={"max_experiments": 1}), "--dry-run")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == ("error: instruments.potentiostat: the health check before the first experiment "
                                     "failed: WrongReturn: potentiostat: its driver's identify() returned a dict, not "
                                     "text"), result.stderr


def test_pumps_holding_each_others_syringe_diameter_are_warned_of_as_swapped(tmp_path, write_campaign, caplog):
    """Two pumps' ports swapped were each set to the other's syringe diameter without a word, and on real syringes
    would have pumped ~10x the volumes asked (a hardware rehearsal on `sim serve` ports): the driver reads what the
    pump held before it sets the campaign's, and the health check warns of each, naming the pump given that
    diameter. Real NE-1000 and EmStat drivers on their emulators' ptys."""

    from labloop.sim.cell import Cell
    from labloop.sim.emstat_emulator import EmStatEmulator
    from labloop.sim.ne1000_emulator import NE1000Emulator, PumpSpec
    from labloop.sim.pty_device import PtyDevice, TimeScale

    # the campaign gives address 0 the 4.61 mm syringe and address 1 the 14.57 mm one: these pumps hold the reverse
    pumps = NE1000Emulator([PumpSpec(0, diameter_mm=14.57), PumpSpec(1, diameter_mm=4.61)], cell=Cell(),
                           time_scale=TimeScale.real_time())
    with PtyDevice(pumps, name="ne1000").start() as chain, \
            PtyDevice(EmStatEmulator(lambda: []), name="emstat").start() as potentiostat:
        _on_ports(write_campaign(tmp_path), tmp_path / "real.yaml", chain.port, potentiostat.port)
        real = load_campaign(tmp_path / "real.yaml")
        with build_rig(real, dry_run=False) as built, caplog.at_level(logging.WARNING, logger="labloop"):
            built.check_health()
        said = sorted(r.getMessage() for r in caplog.records if "syringe's diameter" in r.getMessage())
        assert said == [
            f"instruments.analyte_pump ({chain.port}): the pump held a 14.57 mm syringe's diameter when opened; "
            "labloop set the campaign's 4.61 mm: check that a 4.61 mm syringe is on it (14.57 mm is "
            "instruments.electrolyte_pump's: are the two pumps' ports swapped?)",
            f"instruments.electrolyte_pump ({chain.port}): the pump held a 4.61 mm syringe's diameter when opened; "
            "labloop set the campaign's 14.57 mm: check that a 14.57 mm syringe is on it (4.61 mm is "
            "instruments.analyte_pump's: are the two pumps' ports swapped?)"], said
        caplog.clear()
        with build_rig(real, dry_run=False) as again, caplog.at_level(logging.WARNING, logger="labloop"):
            again.check_health()  # they hold the campaign's now: nothing to say
        assert not [r for r in caplog.records if "syringe's diameter" in r.getMessage()]
