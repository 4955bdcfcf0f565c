"""A run killed (SIGKILL) in a step after its cv keeps the voltammogram it measured, and its resume does not
measure the molecule a second time when the measurement was complete.

Real parts throughout: ``labloop run --dry-run`` in a subprocess on the pty emulators, its SQLite journal read while
it runs, a SIGKILL during a step that comes after the cv (a ``wait`` standing for a real rig's minutes-long rinse,
or the ``add_standard`` a lab-grade measurement still depends on), then ``labloop resume --cell-emptied``. An
operator's trial: the journal showed the killed attempt's cv ``ok`` with no raw data and no measurement, and the
resume measured a second aliquot of the sample as a new attempt, saying nothing of the cv set aside.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from labloop.orchestrator.journal.store import Journal, State

CLI = [sys.executable, "-m", "labloop.orchestrator.cli.main"]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
#: device seconds per wall second: the wait below lasts 3 s of wall time, a dispense well under one
TIME_SCALE = 200
WAIT_S = 600


def _protocol(folder: Path, after_cv: list[object]) -> Path:
    """examples/protocols/cv_screen.yaml with ``after_cv`` between its cv and its rinse."""
    steps = yaml.safe_load((EXAMPLES / "protocols" / "cv_screen.yaml").read_text())
    cv = next(i for i, step in enumerate(steps) if isinstance(step, dict) and "cv" in step)
    path = folder / "protocol.yaml"
    path.write_text(yaml.safe_dump(steps[:cv + 1] + after_cv + steps[cv + 1:], sort_keys=False))
    return path


def _kill_during(campaign_file: Path, command: str) -> int:
    """Run the campaign, SIGKILL it while its first experiment's ``command`` step runs (after its cv ended);
    returns that experiment's id."""
    store = campaign_file.with_suffix(".db")
    process = subprocess.Popen([*CLI, "run", str(campaign_file), "--dry-run"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while not store.exists():
            assert process.poll() is None, process.stderr.read().decode()
            time.sleep(0.01)
        with Journal.open(store, readonly=True) as journal:
            while True:
                assert process.poll() is None, f"the run ended before a {command}: {process.stderr.read().decode()}"
                assert time.monotonic() < deadline
                running = journal.experiments(states=(State.RUNNING,))
                actions = journal.actions(running[0].id) if running else []
                if actions and actions[-1].command == command and actions[-1].finished_at is None:
                    break
                time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.wait()
        return running[0].id
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()


def _rows(store: Path, sql: str, *args: object) -> list[tuple]:
    with sqlite3.connect(store) as db:
        return db.execute(sql, args).fetchall()


@pytest.mark.slow
def test_a_kill_in_a_step_after_the_cv_keeps_the_measurement_and_the_resume_does_not_measure_again(
        tmp_path, write_campaign, labloop):
    protocol = _protocol(tmp_path, [{"wait": {"seconds": WAIT_S}}])
    sections = {"protocol": str(protocol), "budget": {"max_experiments": 2},
                "world": {"truth": {"from": "ie_ea", "solvent": "acn"}, "noise_v": 0.01, "time_scale": TIME_SCALE}}
    reference = write_campaign(tmp_path, name="reference", **sections)
    assert labloop("run", reference, "--dry-run").returncode == 0
    killed = write_campaign(tmp_path, name="killed", **sections)
    store = killed.with_suffix(".db")

    experiment = _kill_during(killed, "wait")

    # what the killed run measured is in the journal, as the attempt's, though its protocol never ended
    assert _rows(store, "SELECT command, outcome FROM actions WHERE experiment_id = ? AND command = 'cv'",
                 experiment) == [("cv", "ok")]
    assert _rows(store, "SELECT attempt FROM raw_data WHERE experiment_id = ?", experiment) == [(1,)]
    [(measured_v,)] = _rows(store, "SELECT potential_v FROM measurements WHERE experiment_id = ? AND attempt = 1",
                            experiment)

    # the cell holds the sample: a resume waits for it to be emptied, and does not say the experiment runs again
    refused = labloop("resume", store)
    assert refused.returncode == 2 and "--cell-emptied" in refused.stderr, refused.stderr
    assert f"experiment {experiment} runs again" not in refused.stderr, refused.stderr
    resumed = labloop("resume", store, "--cell-emptied")
    assert resumed.returncode == 0, resumed.stderr
    lines = resumed.stderr.splitlines()
    assert any(f"experiment {experiment} is finished on resume from the measurement it journalled, not measured "
               "again" in line for line in lines), resumed.stderr
    said = [line for line in lines if line.startswith(f"experiment {experiment} done: ")]
    assert said and said[0].endswith("(from attempt 1's measurement, journalled before the run stopped in a step "
                                     "after it: not measured again)"), resumed.stderr

    # nothing was measured twice: one attempt, one voltammogram, no action after the kill for that experiment
    with Journal.open(store, readonly=True) as journal:
        row = next(e for e in journal.experiments() if e.id == experiment)
        assert (row.status, row.attempt, row.potential_v) == (State.DONE, 1, measured_v)
        assert {a.attempt for a in journal.actions(experiment)} == {1}
        assert [e.message for e in journal.events() if e.kind == "done" and e.experiment_id == experiment] == said
        assert len(journal.experiments(states=(State.DONE,))) == 2
    assert _rows(store, "SELECT COUNT(*) FROM raw_data") == [(2,)]
    assert _rows(store, "SELECT COUNT(*) FROM measurements") == [(2,)]
    # the campaign measured what the uninterrupted run measured (within the emulator's jitter: with latency its scan
    # is streamed as wall time passes, which moves E1/2 by a few tenths of a mV), and proposed the same
    ref = reference.with_suffix(".db")
    query = "SELECT e.smiles, m.potential_v FROM experiments e JOIN measurements m ON e.id = m.experiment_id ORDER BY 1"
    got, expected = _rows(store, query), _rows(ref, query)
    assert [smiles for smiles, _ in got] == [smiles for smiles, _ in expected]
    assert [v for _, v in got] == pytest.approx([v for _, v in expected], abs=0.002)
    proposals = "SELECT step, smiles, conditions_json FROM proposals ORDER BY experiment_id"
    assert _rows(store, proposals) == _rows(ref, proposals)
    assert _said_in_the_log(labloop, store, experiment, "done") == said[0]


def _said_in_the_log(labloop, store: Path, experiment: int, kind: str) -> str:
    """The message of the experiment's last ``kind`` event as ``labloop log --json`` gives it."""
    log = labloop("log", store, "--json")
    assert log.returncode == 0, log.stderr
    events = [e for e in json.loads(log.stdout)["events"] if e["kind"] == kind and e["experiment_id"] == experiment]
    assert events, log.stdout
    return events[-1]["message"]


@pytest.mark.slow
def test_a_kill_before_the_measurement_is_complete_keeps_the_voltammogram_and_says_it_is_measured_again(
        tmp_path, write_campaign, labloop):
    """The cv ended but the add_standard its potential is referenced with had not: the measurement is incomplete,
    so the molecule is measured again; the first attempt's voltammogram stays in the journal, and the resume and
    ``labloop log`` say so."""
    protocol = _protocol(tmp_path, [{"add_standard": {"pump": "standard_pump", "volume_ml": 0.1, "rate_ml_min": 0.02,
                                                      "refill": True}}])
    rig = yaml.safe_load((EXAMPLES / "lab-grade.yaml").read_text())["instruments"]
    campaign_file = write_campaign(
        tmp_path, name="standard", protocol=str(protocol), budget={"max_experiments": 1},
        instruments={name: rig[name] for name in ("sampler", "analyte_pump", "electrolyte_pump", "standard_pump",
                                                  "potentiostat")},
        safety={"max_dispense_ml": 5, "syringe_ml": 10, "syringes_ml": {"analyte_pump": 1.0, "standard_pump": 1.0},
                "potential_limits_v": [-1.7, 2.0], "max_rate_ml_min": 20, "cell_volume_ml": 10},
        cell={"reference_offset_v": 3.2, "ferrocene_vs_li_v": 3.2},
        world={"truth": {"from": "ie_ea", "solvent": "acn"}, "noise_v": 0.01, "time_scale": TIME_SCALE / 2})
    store = campaign_file.with_suffix(".db")

    experiment = _kill_during(campaign_file, "add_standard")

    assert _rows(store, "SELECT attempt FROM raw_data WHERE experiment_id = ?", experiment) == [(1,)]
    assert _rows(store, "SELECT COUNT(*) FROM measurements") == [(0,)]
    [(kept,)] = _rows(store, "SELECT voltammogram_json FROM raw_data WHERE experiment_id = ?", experiment)

    resumed = labloop("resume", store, "--cell-emptied")
    assert resumed.returncode == 0, resumed.stderr
    line = (f"experiment {experiment}: the voltammogram of attempt 1 is kept in the journal without a measurement (the "
            "run stopped before the steps the measurement depends on had run): the molecule is measured again in "
            "attempt 2")
    assert line in resumed.stderr.splitlines(), resumed.stderr
    with Journal.open(store, readonly=True) as journal:
        row = next(e for e in journal.experiments() if e.id == experiment)
        assert (row.status, row.attempt) == (State.DONE, 2)
        assert journal.unmeasured_attempts(experiment) == [1]
    # both attempts' voltammograms, the first as the killed run journalled it; the measurement is the second's
    assert _rows(store, "SELECT attempt FROM raw_data WHERE experiment_id = ? ORDER BY id", experiment) == [(1,), (2,)]
    assert _rows(store, "SELECT voltammogram_json FROM raw_data WHERE attempt = 1") == [(kept,)]
    assert _rows(store, "SELECT attempt FROM measurements") == [(2,)]
    assert _said_in_the_log(labloop, store, experiment, "measured_again") == line
