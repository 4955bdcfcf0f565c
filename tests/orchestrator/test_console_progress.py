"""Progress on stderr (orchestrator/console.py): bars on a terminal, plain lines in a log file."""

from __future__ import annotations

import io

from rich.console import Console

from labloop.orchestrator import console


def _lines(monkeypatch, terminal: bool) -> list[str]:
    written = io.StringIO()
    monkeypatch.setattr(console, "err", Console(file=written, force_terminal=terminal, width=100))
    monkeypatch.setattr(console, "PLAIN_PROGRESS_S", 0.0)  # every update says it (60 s in use)
    monkeypatch.setattr(console, "FIRST_PLAIN_S", 0.0)
    with console.progress() as bar:
        task = bar.add_task("library, model v2", total=3)
        bar.advance(task)
        bar.update(task, completed=2, description="library, model v2 (shards)")
        bar.advance(task)  # finished: nothing more to say
    return [line for line in written.getvalue().splitlines() if "model v2" in line and " after " in line]


def test_a_hidden_bar_says_how_far_each_task_is_in_plain_lines(monkeypatch):
    """``labloop run ... > run.log 2>&1`` printed two lines in the 100 s its library's predictions took: nothing said
    whether it worked or hung (a trial). With stderr no terminal each running task says how far it is."""
    lines = _lines(monkeypatch, terminal=False)
    assert [line.split(" after ")[0] for line in lines] == ["library, model v2: 1 of 3",
                                                            "library, model v2 (shards): 2 of 3"], lines
    assert all(line.endswith(" s") and "\x1b" not in line for line in lines), lines
    assert _lines(monkeypatch, terminal=True) == []  # a terminal has its bar


def test_a_run_says_what_it_counts_in_plain_lines(monkeypatch):
    """The run's bar says its state (``experiment 12``, ``25 done``), which as a plain line's heading read
    ``25 done: 25 of 30 after 62 s`` (a trial, ``labloop run ... 2> f``): a task that counts things done names them."""
    written = io.StringIO()
    monkeypatch.setattr(console, "err", Console(file=written, force_terminal=False, width=100))
    monkeypatch.setattr(console, "PLAIN_PROGRESS_S", 0.0)
    monkeypatch.setattr(console, "FIRST_PLAIN_S", 0.0)
    with console.progress() as bar:
        task = bar.add_task("experiments", total=30, counted="experiments")
        bar.update(task, completed=11, description="experiment 12")
        bar.update(task, completed=25, description="25 done")
    lines = written.getvalue().splitlines()
    assert [line.split(" after ")[0] for line in lines] == ["experiments: 11 of 30 done", "experiments: 25 of 30 done"]
    assert all(line.endswith(" s") for line in lines), lines


def test_a_task_says_how_far_it_is_soon_then_seldom(monkeypatch):
    """A library's predictions of 40-80 s said nothing in a log at one line a minute (a scale-out trial): a task's
    first plain line comes after FIRST_PLAIN_S (30 s in use), the next ones PLAIN_PROGRESS_S apart (60 s)."""
    written = io.StringIO()
    monkeypatch.setattr(console, "err", Console(file=written, force_terminal=False, width=100))
    monkeypatch.setattr(console, "FIRST_PLAIN_S", 0.0)
    monkeypatch.setattr(console, "PLAIN_PROGRESS_S", 3600.0)
    with console.progress() as bar:
        task = bar.add_task("library, model v1", total=3)
        bar.advance(task)
        bar.advance(task)  # within the hour: nothing more
    assert [line.split(" after ")[0] for line in written.getvalue().splitlines()] == ["library, model v1: 1 of 3"]


#: a bar on stderr with lines printed under it and to stderr beside it, then "done" on stdout
_BAR_ON_A_TERMINAL = """
import sys
from labloop.orchestrator import console
assert console.err.is_terminal
with console.progress() as bar:
    task = bar.add_task("library", total=3)
    for _ in range(3):
        bar.advance(task)
        console.err.print("warning: a line said while the bar shows")
        print("a plain write to stderr", file=sys.stderr)
print("done", flush=True)
"""


def test_a_bar_on_a_real_terminal_ends_and_what_is_said_under_it_shows():
    """Every command with a progress bar hung on a terminal, Ctrl-C unheard, the README's first command among them
    (a Dask trial): while a bar shows, rich puts a proxy in sys.stderr that prints into ``err``, and ``err`` wrote into
    sys.stderr. The tests' consoles write to a buffer, so only a real terminal shows it: a pty."""
    import os
    import select
    import subprocess
    import sys
    import time

    controller, terminal = os.openpty()
    child = subprocess.Popen([sys.executable, "-c", _BAR_ON_A_TERMINAL], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=terminal, env={**os.environ, "TERM": "xterm"})
    os.close(terminal)
    shown = b""
    deadline = time.monotonic() + 120  # a failure's deadline (the hang), not a measure of speed
    try:
        while child.poll() is None and time.monotonic() < deadline:
            if select.select([controller], [], [], 0.2)[0]:
                try:
                    shown += os.read(controller, 65536)
                except OSError:  # the child closed the terminal's last other end
                    break
        assert child.wait(timeout=max(1.0, deadline - time.monotonic())) == 0, shown[-2000:]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        os.close(controller)
    assert child.stdout is not None and child.stdout.read() == b"done\n"
    text = shown.decode(errors="replace")
    assert text.count("warning: a line said while the bar shows") == 3, text[-2000:]
    assert text.count("a plain write to stderr") == 3, text[-2000:]
