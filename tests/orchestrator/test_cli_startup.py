"""What every ``labloop`` process does before its command: where its messages and log records go, and how it
takes Ctrl-C. Real processes, their stderr in a real file, as an operator's ``2> run.log`` or a service's log."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from labloop.orchestrator.config.campaign import load_campaign
from labloop.orchestrator.journal.store import Journal

CLI = [sys.executable, "-m", "labloop.orchestrator.cli.main"]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


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
    assert len(safety) == 1 and safety[0].endswith('(README, "Campaigns and the journal")'), lines

    with Journal.create(folder / "tiny.db", load_campaign(campaign_file)):
        pass
    log = tmp_path / "dashboard.log"
    with log.open("w") as stderr:
        dashboard = subprocess.Popen([*CLI, "dashboard", str(folder / "tiny.db"), "--host", "0.0.0.0", "--port", "0"],
                                     stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            said = _wait_for(log, "read the page", dashboard)
        finally:
            dashboard.send_signal(signal.SIGINT)
            dashboard.wait(timeout=60)
    assert "warning: listening on 0.0.0.0: anyone who can reach this machine can read the page\n" in said, said


def _stopped_by_sigint(store: Path, *, sigint_ignored: bool) -> tuple[int, str]:
    """``labloop dashboard STORE`` in a real process (started as a script's ``&`` starts it: SIGINT ignored, or
    as a terminal does), sent one real SIGINT once it serves: its exit code and what it said on stderr."""
    process = subprocess.Popen([*CLI, "dashboard", str(store), "--port", "0"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored
                               else None)
    try:
        url = process.stdout.readline().split()[1].split("#")[0]
        while True:  # serving starts just after the line is printed
            try:
                with urllib.request.urlopen(url + "api/campaign", timeout=30):
                    break
            except OSError:
                assert process.poll() is None, process.stderr.read()
                time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, err.strip()


def test_one_sigint_stops_the_dashboard_the_same_when_a_script_started_it_in_the_background(tmp_path,
                                                                                            write_campaign):
    """``labloop dashboard STORE &`` in a shell script starts with SIGINT ignored, which Python keeps: a SIGINT
    before the page served was lost, and one after it stopped the server with exit 0, silent, where a terminal's
    Ctrl-C ends it with 'aborted' and 130 (a script waiting on it took the stop for a success)."""
    campaign_file = write_campaign(tmp_path)
    with Journal.create(tmp_path / "tiny.db", load_campaign(campaign_file)):
        pass
    from_a_terminal = _stopped_by_sigint(tmp_path / "tiny.db", sigint_ignored=False)
    assert from_a_terminal == (130, "aborted")
    assert _stopped_by_sigint(tmp_path / "tiny.db", sigint_ignored=True) == from_a_terminal
