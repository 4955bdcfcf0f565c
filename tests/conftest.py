"""Shared fixtures: small slices of the bundled data, one tiny trained model per test session, and tiny
dry-run campaign files (the example's rig and protocol, a 6-experiment budget, zero-latency emulators).

Why session-scoped models: training is the slow part of the suite; one small ensemble (a few hundred
molecules, a few epochs) serves every test that only needs *a* trained model.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
import yaml

from labloop.data import bundled_path

_CACHE: Path | None = None  # this process's folder, made by pytest_configure
#: BLAS (OpenBLAS, OpenMP) and TensorFlow on one thread each, in every process of the session (pytest_configure)
THREADS_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1",
               "TF_NUM_INTEROP_THREADS": "1"}


def pytest_configure(config: pytest.Config) -> None:
    """No test writes to the user's real cache: every process of the session (subprocesses inherit the
    environment) caches fingerprints in a folder of its own, removed at the end. The processes tests start
    keep their temporary files there too: those a test kills with SIGKILL (the crash tests) cannot remove
    theirs, and a copy of a model left in the system's temporary folder per run adds up.

    The suite runs in three worker processes (``-n 3``, pyproject.toml). A worker inherits its controller's
    environment, so its folder is a short subfolder of the controller's: nesting a second temporary folder
    inside the first made Chromium's socket path too long for the dashboard's browser tests.
    """
    global _CACHE
    worker = getattr(config, "workerinput", {}).get("workerid")
    if worker is None:
        # the workers share two cores: each one's BLAS and TensorFlow on one thread, as the Dask tests' workers
        # (DASK_ENV below). Set here, in the controller, before the workers start and import numpy: a worker's
        # multi-threaded BLAS spin-waited while the other worker trained or scanned, and a run of the suite took 590
        # or 714 s as the tests happened to pair (user CPU 833 or 1091 s)
        for name, value in THREADS_ENV.items():
            os.environ.setdefault(name, value)
        _CACHE = Path(tempfile.mkdtemp(prefix="labloop-test-cache-"))
        tempfile.tempdir = tempfile.gettempdir()  # this process (pytest's tmp_path) keeps the system's folder
    else:
        _CACHE = Path(os.environ["LABLOOP_CACHE_DIR"], worker)
        _CACHE.mkdir()
    os.environ["LABLOOP_CACHE_DIR"] = str(_CACHE)
    # Keras writes ~/.keras/keras.json on import and matplotlib its font list under ~/.cache and ~/.config:
    # the libraries' own files, pointed here so that no test writes to the user's home either
    os.environ["KERAS_HOME"] = str(_CACHE / "keras")
    os.environ["MPLCONFIGDIR"] = str(_CACHE / "matplotlib")
    temporary = _CACHE / "tmp"
    temporary.mkdir()
    os.environ["TMPDIR"] = str(temporary)


@pytest.fixture(autouse=True)
def _cache_stays_the_sessions():
    """A test that points the cache elsewhere must put it back (``monkeypatch.setenv``): one that deleted
    the variable sent every later test in its process, and their subprocesses, to the user's real cache."""
    yield
    assert os.environ.get("LABLOOP_CACHE_DIR") == str(_CACHE), "the test left LABLOOP_CACHE_DIR changed"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` (real processes killed and resumed, clusters, campaigns with training) run
    first: the workers are handed a few tests at a time in this order (or one of :data:`WHOLE` whole, see
    :func:`pytest_xdist_make_scheduler`), so the long ones spread over all and the short ones fill the gaps,
    rather than one long test starting last."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: the rest keep their order


#: the test modules whose module fixtures run a campaign or train a model (or start Chromium): each runs on one
#: worker, so that they are built once, not once per worker (10-20 s of the suite each)
WHOLE = frozenset(f"tests/{module}.py" for module in (
    "orchestrator/test_dashboard", "orchestrator/test_candidates", "orchestrator/test_campaign_cluster",
    "orchestrator/test_retrained_heads", "surrogate/test_dask_cluster"))


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # optional: a run without xdist
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """xdist's scheduling by scope, each test its own scope but the modules of :data:`WHOLE`, in the collection's
    order (``--no-loadscope-reorder``, pyproject.toml). Why not ``xdist_group`` marks and ``--dist loadgroup``:
    xdist marks a group by a suffix to the test's node id, which pytest 9.2's node ids no longer take, so the groups
    were silently split across the workers. Only for xdist's default (``--dist load``): another ``--dist`` given
    on the command line is xdist's own."""
    if config.getoption("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModulesWhole(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module in WHOLE else nodeid

    return ModulesWhole(config, log)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _CACHE is not None:
        shutil.rmtree(_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def ocelot() -> pd.DataFrame:
    return pd.read_csv(bundled_path())


@pytest.fixture(scope="session")
def small_csv(tmp_path_factory, ocelot) -> Path:
    """400 molecules with IE/EA, the first 400 rows of the bundled data."""
    path = tmp_path_factory.mktemp("data") / "small.csv"
    ocelot.head(400)[["smiles", "ie_ev", "ea_ev"]].to_csv(path, index=False)
    return path


def _tiny_preset(epochs: int = 4):
    """The default recipe shrunk to seconds: same featuriser, a small network, few epochs."""
    from labloop.surrogate.presets import get_preset

    fast = get_preset("fast")
    return replace(fast, model=fast.model.model_copy(update={"epochs": epochs, "hidden": (64, 32),
                                                             "batch_size": 64}))


@pytest.fixture(scope="session")
def tiny_preset():
    """Factory of the shrunk default recipe: ``tiny_preset(epochs=...)``."""
    return _tiny_preset


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, small_csv) -> Path:
    """A 3-member ensemble trained on 400 molecules and saved: enough to exercise every command."""
    from labloop.surrogate.dataset import read_table
    from labloop.surrogate.persistence import save_ensemble
    from labloop.surrogate.training import train_from_table

    table = read_table(small_csv, ["ie_ev", "ea_ev"])
    run = train_from_table(table, _tiny_preset(), folds=3, seed=1)
    return save_ensemble(run.ensemble, tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture
def labloop(capsys):
    """Run the CLI in-process: ``labloop(*args) -> CompletedProcess`` with exit code and captured output.

    In-process keeps TensorFlow's start-up to once per session; the entry point itself is covered by
    the few tests that run ``python -m labloop.orchestrator.cli.main`` in a subprocess.
    """
    from labloop.orchestrator.cli.main import main

    def run(*args) -> subprocess.CompletedProcess:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, captured.out, captured.err)

    return run


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DATA = Path(__file__).resolve().parents[1] / "data" / "ocelot_chromophore_v1_ie_ea.csv"
RIG = {
    "sampler": {"driver": "sim-sampler"},
    "analyte_pump": {"driver": "ne1000", "port": "/dev/ttyUSB0", "options": {"address": 0, "diameter_mm": 4.61}},
    "electrolyte_pump": {"driver": "ne1000", "port": "/dev/ttyUSB0", "options": {"address": 1, "diameter_mm": 14.57}},
    "potentiostat": {"driver": "emstat", "port": "/dev/ttyACM0", "options": {"reference": "Ag/Ag+"}},
}


def _write_campaign(folder: Path, *, prior: bool = False, name: str = "tiny", shared_prior: bool = False,
                    **sections: object) -> Path:
    """``folder/name.yaml``; ``prior`` adds a 200-molecule prior and a 2-fold, 2-epoch surrogate;
    ``sections`` replace whole sections (e.g. ``budget={...}``).

    ``shared_prior`` makes the folder's cache of prior models (``prior-models``, orchestrator/learning/models.py)
    a link to this test process's, so a prior with the same file, recipe and seed is trained once per process
    rather than once per test folder; for tests that are not about training the prior (it writes the link at
    once, so not for tests that check what a refused run left in the folder)."""
    if shared_prior:
        link, shared = folder / "prior-models", _CACHE / "prior-models"
        shared.mkdir(exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(shared, target_is_directory=True)
    campaign: dict[str, object] = {
        "name": name, "seed": 5, "store": f"{name}.db",
        "library": {"file": str(EXAMPLES / "library.csv")},
        "objective": {"quantity": "oxidation_potential", "goal": "window", "window_v": [4.5, 4.6]},
        "planner": {"kind": "random", "batch_size": 2},
        "conditions": {"scan_rate_v_s": [0.05, 0.5]},
        "instruments": RIG,
        "protocol": str(EXAMPLES / "protocols" / "cv_screen.yaml"),
        "budget": {"max_experiments": 6},
        "world": {"truth": {"from": "ie_ea", "solvent": "acn"}, "noise_v": 0.01},
    }
    if prior:
        campaign["prior"] = {"file": str(DATA), "targets": ["ie_ev", "ea_ev"], "rows": 200}
        campaign["surrogate"] = {"preset": "fast", "folds": 2, "epochs": 2, "retrain_every": 3}
    campaign.update(sections)
    budget = campaign["budget"].get("max_experiments", 30) if isinstance(campaign["budget"], dict) else None
    if "planner" not in sections and isinstance(budget, int) and budget < 2:  # the default batch within the budget,
        # as validate warns otherwise
        campaign["planner"] = {**campaign["planner"], "batch_size": budget}  # type: ignore[dict-item]
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(campaign, sort_keys=False))
    return path


def best_rows(page: str) -> list[dict[str, str]]:
    """The rows of a report page's best-so-far table (orchestrator/report.py), each cell by its header (a SMILES's
    ``<code>`` taken off)."""
    table = page[page.index("<h2>best so far</h2>"):]
    table = table[:table.index("</table>")]
    heads = re.findall(r"<th>(.*?)</th>", table)
    return [dict(zip(heads, (re.sub(r"</?code>", "", c) for c in re.findall(r"<td>(.*?)</td>", row)), strict=True))
            for row in re.findall(r"<tr><td>.*?</tr>", table)]


@pytest.fixture
def axis_labels(monkeypatch):
    """``axis_labels()`` -> a dict that fills, as plots are saved from then on, with each plot's x-axis labels by
    file name (a PNG keeps them only as pixels); every plot is saved as before."""
    from matplotlib.figure import Figure

    def start() -> dict[str, list[str]]:
        labels: dict[str, list[str]] = {}
        save = Figure.savefig

        def saving(fig: Figure, path: object, *args: object, **kwargs: object) -> object:
            labels[Path(str(path)).name] = [ax.get_xlabel() for ax in fig.axes]
            return save(fig, path, *args, **kwargs)

        monkeypatch.setattr(Figure, "savefig", saving)
        return labels

    return start


def _stopped_by(process: subprocess.Popen, signum: int) -> tuple[int, str, str]:
    """Send ``process`` (text pipes) one real ``signum`` and wait for it: its exit code, stdout and stderr; killed if
    it outlives the wait (liveness only)."""
    try:
        process.send_signal(signum)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, out, err


@pytest.fixture(scope="session")
def stopped_by():
    """``stopped_by(process, signum)``: a real signal to a labloop process, and (code, stdout, stderr) once it ended."""
    return _stopped_by


@pytest.fixture(scope="session")
def write_campaign():
    """Factory of tiny dry-run campaign files: ``write_campaign(folder, prior=False, name="tiny", **sections)``."""
    return _write_campaign


#: a ``dask worker``'s TensorFlow and BLAS on one thread: the tests' clusters run on 2 shared cores
DASK_ENV = {**THREADS_ENV, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _dask(*args: str, log: Path) -> subprocess.Popen:
    """A real ``dask`` command-line process (the one installed beside this Python), its output in ``log``."""
    command = Path(sys.executable).with_name("dask")
    return subprocess.Popen([str(command if command.exists() else shutil.which("dask")), *args],
                            env={**os.environ, **DASK_ENV}, stdout=log.open("w"), stderr=subprocess.STDOUT)


@pytest.fixture(scope="session")
def free_port():
    """``free_port()``: a TCP port on 127.0.0.1 that nothing listens on (now)."""
    return _free_port


@pytest.fixture(scope="session")
def dask_command():
    """``dask_command(*args, log=PATH)``: start ``dask scheduler`` / ``dask worker`` as a real process."""
    return _dask


def _wait_for_cluster(address: str, workers: int = 0, timeout: float = 120) -> None:
    """Until the scheduler just started at ``address`` (``tcp://127.0.0.1:PORT``) listens and has ``workers``
    workers. Why: labloop refuses at once a port where nothing listens yet, and a scheduler still without a
    worker after a few seconds (surrogate/compute.py), while a new ``dask scheduler`` takes seconds to listen and
    a worker to join on the suite's 2 shared cores."""
    from distributed import Client

    port, deadline = int(address.rsplit(":", 1)[1]), time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing listens at {address} after {timeout} s") from None
            time.sleep(0.2)
    if workers:
        with Client(address, set_as_default=False, timeout=timeout) as client:
            client.wait_for_workers(workers, timeout=max(1.0, deadline - time.monotonic()))


@pytest.fixture(scope="session")
def wait_for_cluster():
    """``wait_for_cluster(address, workers=0)``: until a scheduler just started listens and has that many workers."""
    return _wait_for_cluster


@pytest.fixture
def older_labloop(tmp_path) -> Path:
    """A folder to put first on a ``dask worker``'s ``PYTHONPATH``: a copy of labloop's source files with one line
    added, and metadata saying 0.0.1, as an older installation (or a changed checkout) of labloop would be."""
    from labloop.core import version

    old = tmp_path / "old-labloop"
    (old / "labloop-0.0.1.dist-info").mkdir(parents=True)
    (old / "labloop-0.0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: labloop\nVersion: 0.0.1\n")
    for layer in version.LAYERS:
        shutil.copytree(Path(version.__file__).parents[1] / layer, old / "labloop" / layer,
                        ignore=shutil.ignore_patterns("__pycache__"))
    with (old / "labloop" / "planners" / "__init__.py").open("a") as older_planners:
        older_planners.write("\n# a line this labloop does not have\n")
    return old


#: the emulator entry point a test's plug-in gets unless it says otherwise (most speak the NE-1000's protocol)
NE1000_EMULATOR = "labloop.sim.builtin_emulators:ne1000_emulator"


#: the source of a plug-in pump on the NE-1000 driver (``open_pump``) with an NE-1000 emulator of its own (its factory
#: ``emulator``, its pty named ``{name}``): ``{device}`` is the source of class ``{cls}``, an ``NE1000Emulator`` that
#: misbehaves as the test needs, indented as this is; the test adds the descriptors
NE1000_PLUGIN = """
    from labloop.instruments.ne1000 import NE1000Pump
    from labloop.instruments.registry import DriverDescriptor
    from labloop.sim.cell import Fluid
    from labloop.sim.emulation import Emulation
    from labloop.sim.ne1000_emulator import NE1000Emulator, PumpSpec
    from labloop.sim.pty_device import PtyDevice
{device}
    def emulator(context, *, address=0, holds="electrolyte", diameter_mm=26.59):
        pump = {cls}([PumpSpec(address, Fluid(holds), diameter_mm)], cell=context.cell, time_scale=context.time_scale)
        return Emulation.on_pty(PtyDevice(pump, name="{name}").start())

    def open_pump(port, *, limits, time_scale=1.0, address=0, diameter_mm=None):
        return NE1000Pump.open(port, address, limits=limits, time_scale=time_scale, diameter_mm=diameter_mm,
                               poll_s=0.0)
"""


def _install_plugin(site: Path, module: str, source: str, drivers: dict[str, str],
                    emulator: str | None = NE1000_EMULATOR) -> None:
    """Write plug-in ``module`` (``source``) into ``site`` as an installed distribution whose ``labloop.drivers``
    entry points are ``drivers`` (name -> attribute of the module), each with ``emulator`` (an entry point's
    ``module:attribute``: the NE-1000's unless said, as most plug-ins the tests write speak that protocol; a
    plug-in's own, ``module:...``; None: no emulator); the caller puts ``site`` on sys.path."""
    from labloop.instruments.registry import GROUP
    from labloop.sim.emulators import GROUP as EMULATOR_GROUP

    site.mkdir(exist_ok=True)
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    dist_info = site / f"{module}-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(
        f"[{GROUP}]\n" + "".join(f"{name} = {module}:{attr}\n" for name, attr in drivers.items())
        + (f"[{EMULATOR_GROUP}]\n" + "".join(f"{name} = {emulator}\n" for name in drivers) if emulator else ""))


@pytest.fixture
def install_plugin(tmp_path, monkeypatch):
    """``install_plugin(module, source, {driver name: attribute}, emulator=NE1000_EMULATOR)``: an installed plug-in
    driver package for this test only (on sys.path, found by entry points; the module is forgotten afterwards)."""
    installed: list[str] = []

    def install(module: str, source: str, drivers: dict[str, str], emulator: str | None = NE1000_EMULATOR) -> None:
        _install_plugin(tmp_path / "site", module, source, drivers, emulator)
        monkeypatch.syspath_prepend(str(tmp_path / "site"))
        installed.append(module)

    yield install
    for module in installed:
        sys.modules.pop(module, None)


class Receiver:
    """A webhook on 127.0.0.1 that records every JSON body posted to it."""

    def __init__(self) -> None:
        received = self.messages = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()
