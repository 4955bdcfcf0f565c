"""What every ``labloop`` process does before its command: where its messages and log records go, and how it
takes Ctrl-C. Real processes, their stderr in a real file, as an operator's ``2> run.log`` or a service's log."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
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

