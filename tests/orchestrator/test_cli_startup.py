"""What every ``labloop`` process does before its command: where its messages and log records go, and how it
takes Ctrl-C. Real processes, their stderr in a real file, as an operator's ``2> run.log`` or a service's log."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from labloop.orchestrator.config.campaign import load_campaign
from labloop.orchestrator.journal.store import Journal
from labloop.surrogate.featurize import PARALLEL_THRESHOLD, default_jobs

CLI = [sys.executable, "-m", "labloop.orchestrator.cli.main"]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DATA = Path(__file__).resolve().parents[2] / "data" / "ocelot_chromophore_v1_ie_ea.csv"


def _long_folder(tmp_path: Path) -> Path:
    """A folder whose path makes every line naming it longer than 80 columns, wherever the tests run."""
    folder = tmp_path / ("a-folder-with-a-name-long-enough-that-its-lines-pass-eighty-columns" * 2)
    folder.mkdir()
    return folder


def _wait_for(path: Path, text: str, process: subprocess.Popen) -> str:
    """``path``'s content once it holds ``text`` (liveness only: the process must still run)."""
    while text not in (content := path.read_text()):
        assert process.poll() is None, content
        time.sleep(0.05)
    return content


def test_log_records_and_warnings_in_a_log_file_are_one_line_each(tmp_path, write_campaign):
    """With stderr in a file, rich folded every log record and warning at 80 columns (and padded each line to 80
    with spaces), so one warning spread over lines that grep would not find together."""
    folder = _long_folder(tmp_path)
    shutil.copy(EXAMPLES / "library.csv", folder / "library.csv")
    campaign_file = write_campaign(folder, library={"file": str(folder / "library.csv")})
    log = tmp_path / "validate.log"
    with log.open("w") as stderr:
        checked = subprocess.run([*CLI, "-v", "validate", str(campaign_file), "--dry-run"], stdout=subprocess.DEVNULL,
                                 stderr=stderr, timeout=600)
    assert checked.returncode == 0, log.read_text()
    lines = log.read_text().splitlines()
    assert f"INFO labloop.surrogate.dataset: read 200 rows from {folder / 'library.csv'}" in lines
    assert not [line for line in lines if line != line.rstrip()]  # no padding to a width
    safety = [line for line in lines if line.startswith("warning: ") and "safety: no such section" in line]
    assert len(safety) == 1 and safety[0].endswith('(docs/campaign-reference.md, "safety")'), lines

    with Journal.create(folder / "tiny.db", load_campaign(campaign_file)):
        pass
    log, out = tmp_path / "dashboard.log", tmp_path / "dashboard.out"
    with log.open("w") as stderr, out.open("w") as stdout:
        dashboard = subprocess.Popen([*CLI, "dashboard", str(folder / "tiny.db"), "--host", "0.0.0.0", "--port", "0"],
                                     stdout=stdout, stderr=stderr)
        try:
            said = _wait_for(log, "read the page", dashboard)
        finally:
            dashboard.send_signal(signal.SIGINT)
            dashboard.wait(timeout=60)
    assert "warning: listening on 0.0.0.0: anyone who can reach this machine can read the page, and the write token " \
        "crosses the network unencrypted (plain HTTP); it answers requests to " in said, said
    # the address to open is the machine's name, not the wildcard (an operator's trial got http://0.0.0.0:8054/)
    assert out.read_text().startswith(f"dashboard: http://{socket.gethostname()}:"), out.read_text()


def _status(port: int, host_header: str) -> int:
    """The status of ``GET /api/campaign`` on 127.0.0.1:``port`` naming ``host_header`` as its Host."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/campaign", headers={"Host": host_header})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.parametrize("host", ["0.0.0.0", "0"])
def test_a_dashboard_on_every_interface_answers_the_machines_names_only(tmp_path, write_campaign, host):
    """On a wildcard address the dashboard answered any Host, so a web page anywhere could read the campaign by DNS
    rebinding; ``--host 0`` listened everywhere and refused every request, taking "0" for the one name to answer (a
    security trial). It answers the machine's names and addresses, and the names ``--allowed-host`` adds."""
    campaign_file = write_campaign(tmp_path)
    with Journal.create(tmp_path / "tiny.db", load_campaign(campaign_file)):
        pass
    out = tmp_path / "dashboard.out"
    with out.open("w") as stdout:
        dashboard = subprocess.Popen([*CLI, "dashboard", str(tmp_path / "tiny.db"), "--host", host, "--port", "0",
                                      "--allowed-host", "labpc.example.org"], stdout=stdout, stderr=subprocess.PIPE)
        try:
            port = int(_wait_for(out, "write token", dashboard).split()[1].split("#")[0].rsplit(":", 1)[1].strip("/"))
            deadline = time.monotonic() + 60  # liveness only: serving starts just after the lines are printed
            while (loopback := _status(port, f"127.0.0.1:{port}")) != 200:
                assert time.monotonic() < deadline and dashboard.poll() is None
                time.sleep(0.05)
            assert _status(port, f"{socket.gethostname()}:{port}") == 200
            assert _status(port, f"labpc.example.org:{port}") == 200
            assert _status(port, f"evil.example:{port}") == 400
        finally:
            dashboard.send_signal(signal.SIGINT)
            dashboard.wait(timeout=60)
    assert loopback == 200


def _stopped(stopped_by, store: Path, *, sigint_ignored: bool, signum: int = signal.SIGINT) -> tuple[int, str]:
    """``labloop dashboard STORE`` in a real process (started as a script's ``&`` starts it: SIGINT ignored, or
    as a terminal does), sent one real ``signum`` once it serves (``stopped_by``, the fixture): its exit code and what
    it said on stderr."""
    process = subprocess.Popen([*CLI, "dashboard", str(store), "--port", "0"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored
                               else None)
    url = process.stdout.readline().split()[1].split("#")[0]
    while True:  # serving starts just after the line is printed
        try:
            with urllib.request.urlopen(url + "api/campaign", timeout=30):
                break
        except OSError:
            if process.poll() is not None:
                stopped_by(process, signum)  # ended: its output, for the failure
                pytest.fail(f"the dashboard ended before it served: {process.returncode}")
            time.sleep(0.05)
    code, _, err = stopped_by(process, signum)
    return code, err.strip()


def test_one_sigint_stops_the_dashboard_the_same_when_a_script_started_it_in_the_background(tmp_path, write_campaign,
                                                                                            stopped_by):
    """``labloop dashboard STORE &`` in a shell script starts with SIGINT ignored, which Python keeps: a SIGINT
    before the page served was lost, and one after it stopped the server with exit 0, silent, where a terminal's
    Ctrl-C ends it with 130 and one line (a script waiting on it took the stop for a success): that the campaign
    runs on, where it said 'aborted', the word for a command cut short (a newcomer's trial). A ``kill`` (SIGTERM, a
    service manager's stop) ended it with 143 and no word: the same now."""
    campaign_file = write_campaign(tmp_path)
    with Journal.create(tmp_path / "tiny.db", load_campaign(campaign_file)):
        pass
    from_a_terminal = _stopped(stopped_by, tmp_path / "tiny.db", sigint_ignored=False)
    assert from_a_terminal == (130, "dashboard stopped; a run of its campaign, if one is live, goes on")
    assert _stopped(stopped_by, tmp_path / "tiny.db", sigint_ignored=True) == from_a_terminal
    assert _stopped(stopped_by, tmp_path / "tiny.db", sigint_ignored=False, signum=signal.SIGTERM) == from_a_terminal


def test_a_kill_stops_a_short_command_in_one_line_as_a_ctrl_c_does(tmp_path, stopped_by):
    """``validate``, ``drivers list`` and the other commands that do not take a stop themselves ended with 143 and no
    word at a SIGTERM (``kill``, a batch system's stop), where a Ctrl-C says ``aborted``: both say it, exit 130, the
    kill named. A real ``labloop validate`` process, held reading a campaign file that is a named pipe whose writer
    has not written yet (as a file on a hung network share would hold it)."""
    pipe = tmp_path / "campaign.yaml"
    os.mkfifo(pipe)
    said = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        process = subprocess.Popen([*CLI, "validate", str(pipe)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        while True:  # a writer can open the pipe once the command has opened it to read
            try:
                writer = os.open(pipe, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError:
                assert process.poll() is None, process.communicate()
                time.sleep(0.05)
        code, out, err = stopped_by(process, signum)
        os.close(writer)
        said[signum] = (code, out, err.strip())
    assert said[signal.SIGINT] == (130, "", "aborted")
    assert said[signal.SIGTERM] == (130, "", "aborted (SIGTERM)")



def _workers(pid: int) -> list[int]:
    """The processes ``pid`` forked that still run as it does (a pool's workers, not a command it runs)."""
    command = Path(f"/proc/{pid}/cmdline").read_bytes()
    children = [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
                for child in _read(task / "children").split()]
    return [child for child in children if _command(child) == command]


def _read(path: Path) -> str:
    """A /proc file's text, "" when its thread or process ended meanwhile (a CI run read a task that had just gone)."""
    try:
        return path.read_text()
    except OSError:
        return ""


def _command(pid: int) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # ended meanwhile
        return None


@pytest.mark.slow
@pytest.mark.skipif(default_jobs() < 2 or not Path("/proc/self/task").is_dir(),
                    reason="the library is featurised in a process pool on two cores or more (Linux /proc)")
def test_a_run_featurising_in_a_process_pool_ends_and_stops_without_a_traceback(tmp_path, write_campaign):
    """The featurisation pool's workers (surrogate/featurize.py) inherited the runner's SIGINT/SIGTERM handler: the
    SIGTERM that ends a pool raised the runner's exception in the workers still there, which printed a traceback
    after a successful run (``--scheduler none``, a 5,000-row library; not every time). A terminal's Ctrl-C, sent to
    the whole process group as the pool starts, printed a page of them, and the run did not stop: raised in a fork
    hook, the run's own exception was dropped (and the run went on to exit 0, or hung). Now it stops at once, with
    its own lines and exit 130, and no worker is left."""
    library = tmp_path / "library.csv"
    library.write_text("".join(DATA.read_text().splitlines(keepends=True)[:PARALLEL_THRESHOLD + 501]))
    campaign_file = write_campaign(tmp_path, prior=True, shared_prior=True, library={"file": str(library)},
                                   budget={"max_experiments": 2})
    env = {**os.environ, "LABLOOP_CACHE_DIR": str(tmp_path / "cache")}  # no fingerprint cached: the pool runs
    done = subprocess.run([*CLI, "run", str(campaign_file), "--dry-run", "--scheduler", "none"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr

    env["LABLOOP_CACHE_DIR"] = str(tmp_path / "cache-2")
    store = tmp_path / "stopped.db"
    # the library's row checks run in a pool too, before the journal exists (labloop.surrogate.featurize.check_rows):
    # a Ctrl-C there aborts validate with nothing written; the run's is waited for once its journal exists
    for command, started, says in ((["validate"], lambda: True, "\naborted\n"),
                                   (["run", "--store", str(store)], store.exists,
                                    "\ninterrupted: the journal is consistent.\n")):
        process = subprocess.Popen([*CLI, *command[:1], str(campaign_file), *command[1:], "--dry-run", "--scheduler",
                                    "none"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                   start_new_session=True)
        try:
            while not (started() and (workers := _workers(process.pid))):
                assert process.poll() is None, process.stderr.read()
                time.sleep(0.005)
            os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C: to every process of the group
            _, err = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
        assert process.returncode == 130 and "Traceback" not in err, err
        assert says in err, err
        # no worker is left running (a zombie's cmdline reads empty: it ended): one the pool's handler thread forked
        # while the pool was ending (a CI run under load saw one) reads the run's closed pipe and ends by itself, so
        # they are given a while (liveness, not speed)
        deadline = time.monotonic() + 60
        while (left := [pid for pid in workers if _command(pid)]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not left


@pytest.mark.parametrize("name", ["lab*pc", "*", "labpc:8050", "lab pc"])
def test_an_allowed_host_that_could_never_match_is_refused_at_start(tmp_path, write_campaign, name):
    """``--allowed-host lab*pc`` failed inside the server at the first request, as a traceback; ``*`` switched the host
    check off; ``labpc:8050`` could never match (a review): each is one line, exit 2, before anything listens."""
    campaign_file = write_campaign(tmp_path)
    with Journal.create(tmp_path / "tiny.db", load_campaign(campaign_file)):
        pass
    result = subprocess.run([*CLI, "dashboard", str(tmp_path / "tiny.db"), "--host", "0.0.0.0", "--port", "0",
                             "--allowed-host", name], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == "", result
    assert result.stderr.count("\n") == 1 and "--allowed-host" in result.stderr and "no host name" in result.stderr


#: a labloop process (``labloop --help``, through the console script's ``entry``) sent a SIGINT as it exits:
#: ``{when}`` is the Python that does it
_STOPPED_AS_IT_EXITS = """
import atexit, os, signal, sys, threading, time
from labloop.orchestrator.cli import entry
{when}
sys.argv = ["labloop", "--help"]
entry()
"""

#: in the exit's first part: a thread the exit joins waits for the command's end (the console script's exit
#: handler in place), stops the process, and holds the exit up
_IN_THE_THREADS_JOINED = """
def stop_once_ended():
    while getattr(signal.getsignal(signal.SIGINT), "__name__", "") != "stopped":
        time.sleep(0.01)
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(5)
threading.Thread(target=stop_once_ended).start()
"""

#: in its last part: an exit callback registered before the console script's own, so run after them
_AFTER_THE_LAST_CALLBACK = """
atexit.register(lambda: (os.kill(os.getpid(), signal.SIGINT), time.sleep(0.2)))
"""


@pytest.mark.parametrize(("when", "code", "said"), [
    (_IN_THE_THREADS_JOINED, 130, "interrupted (SIGINT) as labloop exited, after the command had ended: nothing it "
                                  "wrote is lost"),
    (_AFTER_THE_LAST_CALLBACK, 0, ""),
], ids=["while the exit joins threads", "after the last exit callback"])
def test_a_stop_as_labloop_exits_is_said_or_ignored_never_a_silent_kill(when, code, said):
    """``labloop surrogate predict ... --scheduler tcp://...`` stopped with Ctrl-C right after ``wrote 5000
    predictions`` exited 130 without a word (a Dask operator's trial, 3 of 3): the signal came as Python exited,
    once the command had ended, and killed it. While the exit runs Python (the Dask client's threads are joined) a
    stop says so and exits 130; in its last part, where Python puts the system's default back (a silent kill),
    a stop is ignored, and the command's own exit code stands. Real processes, real signals."""
    proc = subprocess.run([sys.executable, "-c", _STOPPED_AS_IT_EXITS.format(when=when)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.strip() == said
    assert "Commands" in proc.stdout  # the command itself ran to its end
