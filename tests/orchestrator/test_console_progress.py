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
