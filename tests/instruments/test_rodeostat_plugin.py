"""The example third-party package (examples/labloop-rodeostat), installed with pip as a user would, is found
through the entry-point group, passes the conformance kit and measures a CV."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from labloop.core.errors import ConfigError, DeviceError, InstrumentError
from labloop.instruments.cv_analysis import analyze_cv
from labloop.instruments.registry import load_driver
from labloop.instruments.voltammogram import CVParams
from labloop.sim.conformance import KIT_LIMITS, check_driver
from labloop.sim.cv_physics import CellParams
from labloop.sim.emulation import EmulatorContext
from labloop.sim.emulators import start_emulator
from labloop.sim.pty_device import TimeScale

PLUGIN = Path(__file__).resolve().parents[2] / "examples" / "labloop-rodeostat"
COUPLE = CellParams(e0_v=0.15, conc_mm=2.0, cdl_f_cm2=2e-5, noise_fraction=0.002)
#: a dry-run rig around the plug-in's potentiostat (each test gives it the options it tries)
RIG = {"sampler": {"driver": "sim-sampler"},
       "analyte_pump": {"driver": "ne1000", "options": {"address": 0, "diameter_mm": 4.61}},
       "electrolyte_pump": {"driver": "ne1000", "options": {"address": 1, "diameter_mm": 14.57}}}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Path]:
    """The plug-in pip-installed into a fresh directory, put on sys.path for this module's tests.

    Built offline from the running environment's setuptools and wheel when both are there, else with pip's
    usual isolated build. The source is copied first so the build leaves nothing in the repository.
    """
    root = tmp_path_factory.mktemp("plugin")
    shutil.copytree(PLUGIN, root / "src", ignore=shutil.ignore_patterns("build", "*.egg-info"))
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(root / "site"),
               str(root / "src")]
    if all(importlib.util.find_spec(name) for name in ("setuptools", "wheel")):
        command.append("--no-build-isolation")
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    sys.path.insert(0, str(root / "site"))
    yield root / "site"
    sys.path.remove(str(root / "site"))
    for name in [m for m in sys.modules if m.startswith("labloop_rodeostat")]:
        del sys.modules[name]


def test_the_installed_plugin_is_listed_by_the_cli(site: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-m", "labloop.orchestrator.cli.main", "drivers", "list", "--json"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows = {row["name"]: row for row in map(json.loads, proc.stdout.splitlines())}
    assert rows["rodeostat"] == {"name": "rodeostat", "kind": "potentiostat", "baudrate": 115200,
                                 "package": "labloop-rodeostat", "emulator": True,
                                 "summary": "IO Rodeo Rodeostat, JSON lines over USB serial (example plug-in)"}
    assert {"ne1000", "emstat", "sim-sampler"} <= set(rows)  # next to the built-ins


def test_the_plugin_passes_the_conformance_kit(site: Path) -> None:
    registered = load_driver("rodeostat")
    assert registered.distribution == "labloop-rodeostat"
    assert sys.modules["labloop_rodeostat"].__file__.startswith(str(site))  # the installed copy, not the source
    report = check_driver("rodeostat")
    assert report.passed, "\n".join(report.lines())


def test_a_cv_through_the_plugin_finds_the_couple(site: Path) -> None:
    descriptor = load_driver("rodeostat").descriptor
    emulation = start_emulator("rodeostat", EmulatorContext.standalone(COUPLE, time_scale=TimeScale.zero_latency()))
    try:
        driver = descriptor.open(emulation.port, limits=KIT_LIMITS, time_scale=math.inf)
        params = CVParams(e_begin_v=-0.3, e_vertex1_v=0.6, e_vertex2_v=-0.3, scan_rate_v_s=0.1, e_step_v=0.001)
        voltammogram = driver.run_cv(params)
        assert len(voltammogram) == params.n_points
        assert voltammogram.time_s[-1] == pytest.approx(params.duration_s)
        result = analyze_cv(voltammogram)
        assert result.e_half_v == pytest.approx(COUPLE.e0_v, abs=0.005) and not result.flags
        assert result.ipa_a == pytest.approx(2 * 19.0e-6, rel=0.1)  # Randles-Sevcik, 2 mM
        with pytest.raises(ConfigError, match="whole number of milliseconds"):
            driver.run_cv(CVParams(e_begin_v=0.0, e_vertex1_v=0.3, e_vertex2_v=0.0, scan_rate_v_s=0.3))
        with pytest.raises(DeviceError, match="unknown command") as unknown:
            driver._request({"command": "selfDestruct"})
        assert unknown.value.code == "selfDestruct"
        driver.close()
    finally:
        emulation.stop()
    assert emulation.device.errors == []


def test_abort_stops_a_running_rodeostat_test(site: Path) -> None:
    descriptor = load_driver("rodeostat").descriptor
    context = EmulatorContext.standalone(COUPLE, time_scale=TimeScale.accelerated(10.0))
    emulation = start_emulator("rodeostat", context)
    try:
        driver = descriptor.open(emulation.port, limits=KIT_LIMITS, time_scale=10.0, timeout_s=0.5)
        slow = CVParams(e_begin_v=-0.3, e_vertex1_v=0.6, e_vertex2_v=-0.3, scan_rate_v_s=0.1, e_step_v=0.002)
        outcome: list[object] = []

        def run() -> None:
            try:
                outcome.append(driver.run_cv(slow))
            except InstrumentError as exc:
                outcome.append(exc)

        worker = threading.Thread(target=run)
        worker.start()
        time.sleep(0.3)
        driver.abort()
        worker.join(timeout=60)
        (error,) = outcome  # the scan (1.8 s at this pace) ended by the abort, not by running to its end
        assert isinstance(error, DeviceError) and error.code == "stopTest"
        driver.close()
    finally:
        emulation.stop()


def test_the_emulators_noise_is_drawn_per_measurement(site: Path) -> None:
    """A resumed dry run starts a new emulator: its scan of a cell must carry the noise the uninterrupted run's
    scan of it did, whatever that run measured before (docs/drivers.md; the example seeded one generator at start,
    so the new emulator's first scan got the noise of the old one's first scan)."""
    descriptor = load_driver("rodeostat").descriptor
    first = CVParams(e_begin_v=-0.3, e_vertex1_v=0.6, e_vertex2_v=-0.3, scan_rate_v_s=0.1, e_step_v=0.002)
    second = CVParams(e_begin_v=-0.2, e_vertex1_v=0.5, e_vertex2_v=-0.2, scan_rate_v_s=0.1, e_step_v=0.002)
    currents = []
    for scans in ((first, second), (second,)):  # the run, then the resumed run's new emulator
        emulation = start_emulator("rodeostat", EmulatorContext.standalone(COUPLE, time_scale=TimeScale.zero_latency()))
        try:
            driver = descriptor.open(emulation.port, limits=KIT_LIMITS, time_scale=math.inf)
            currents.append([driver.run_cv(params).current_a for params in scans][-1])
            driver.close()
        finally:
            emulation.stop()
    assert currents[0].tolist() == currents[1].tolist()


def test_a_misspelt_option_is_refused_with_its_line(site: Path, tmp_path: Path, labloop, write_campaign) -> None:
    """The example's descriptor lists its options, as docs/drivers.md says a driver whose ``open`` takes ``**options``
    must: ``refrence`` passed plain ``validate`` and ``--dry-run`` said "the driver refused its options:
    RodeostatPotentiostat.__init__() got an unexpected keyword argument 'refrence'", with no line."""
    rig = {**RIG, "potentiostat": {"driver": "rodeostat", "options": {"refrence": "Ag/Ag+"}}}
    campaign = write_campaign(tmp_path, instruments=rig)
    line = campaign.read_text().splitlines().index("      refrence: Ag/Ag+") + 1
    for how in ("--all", "--dry-run"):  # plain validate lists the rig's other problems too: no real sampler, ports
        result = labloop("validate", campaign, how)
        assert result.returncode == 2, result
        assert (f"tiny.yaml:{line}: instruments.potentiostat.options.refrence: not an option of driver 'rodeostat' "
                "(its options: baudrate, capture, on_overload, reference, retries, settle_s, timeout_s)"
                in result.stderr), result.stderr


def test_an_option_value_open_would_refuse_is_refused_by_plain_validate(site: Path, tmp_path: Path, labloop,
                                                                          write_campaign) -> None:
    """A plug-in engineer copied the example: ``on_overload: maybe`` passed plain ``validate`` ("valid") and ``run``
    refused it at open ("the driver refused its options"). Its descriptor's ``option_problem`` refuses it with the
    line, as docs/drivers.md advises, and open refuses it with the same words."""
    rig = {**RIG, "potentiostat": {"driver": "rodeostat", "options": {"on_overload": "maybe"}}}
    campaign = write_campaign(tmp_path, instruments=rig)
    line = campaign.read_text().splitlines().index("      on_overload: maybe") + 1
    result = labloop("validate", campaign, "--all")
    assert result.returncode == 2, result
    assert (f"tiny.yaml:{line}: instruments.potentiostat.options.on_overload: must be 'raise' or 'mark', got 'maybe'"
            in result.stderr), result.stderr


def test_the_recipe_for_a_real_run_beside_served_emulators_runs(site: Path, tmp_path: Path) -> None:
    """docs/drivers.md, "Running a plug-in for real": a real run needed every instrument real and nothing said
    how to stand the rest of the rig in (a plug-in author's trial). The recipe's shell block, run as written (the
    plug-in's device served by its emulator, the folder a temporary one), completes its two experiments and
    stops the emulators it served."""
    text = (PLUGIN.parents[1] / "docs" / "drivers.md").read_text()
    part = text[text.index("## Running a plug-in for real"):]
    block = part[part.index("```bash\n") + len("```bash\n"):part.index("\n```\n")]
    assert "/tmp/bench" in block
    script = "trap 'kill $(jobs -p) 2>/dev/null' EXIT\n" + block.replace("/tmp/bench", str(tmp_path / "bench"))
    bin_dir = str(Path(sys.executable).parent)  # this environment's labloop command
    env = {**os.environ, "PATH": os.pathsep.join([bin_dir, os.environ["PATH"]]),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    # its own process group, killed whole if it overruns: the recipe's trap does not run when bash is killed, and a run
    # on a loaded machine that timed out left its three emulators serving for an hour
    with subprocess.Popen(["bash", "-e", "-c", script], cwd=PLUGIN.parents[1], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, start_new_session=True) as recipe:
        try:
            stdout, stderr = recipe.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            os.killpg(recipe.pid, signal.SIGKILL)
            stdout, stderr = recipe.communicate()
            pytest.fail(f"the recipe took over 300 s: {stdout[-2000:]}{stderr[-2000:]}")
    proc = subprocess.CompletedProcess(recipe.args, recipe.returncode, stdout, stderr)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "bench: 2/2 experiments done" in proc.stderr, proc.stderr[-3000:]  # the summary, on stderr
    assert proc.stdout.count("Place vial ") == 2 and "Rinse the cell" in proc.stdout
