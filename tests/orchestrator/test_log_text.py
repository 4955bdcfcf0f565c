"""Journal text is shown as text (issue 17, cause 5): ``labloop log`` on a real SQLite journal keeps ``[nH]`` in
SMILES, prints ``[bold red]`` literally, and does not crash on ``[/]`` in a cause or event (text that can come
end to end from a device's reply); ``labloop validate`` shows paths with brackets as written; and ``labloop
report`` writes journal text into its CSVs so that no spreadsheet runs it as a formula (cause 15)."""

from __future__ import annotations

import csv
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from labloop.orchestrator import console
from labloop.orchestrator.config.campaign import load_campaign
from labloop.orchestrator.journal.store import Journal

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PYRROLE = "c1cc[nH]c1"
MARKUP = "[bold red]ALARM[/bold red]"
CLOSING = "device replied '[/]'"


@dataclass(frozen=True)
class Proposal:
    smiles: str
    conditions: dict = field(default_factory=lambda: {"scan_rate_v_s": 0.1})
    mu: float | None = 4.5
    sigma: float | None = 0.2
    acquisition: float | None = 0.3


def test_log_shows_journal_text_as_text(tmp_path, labloop, monkeypatch) -> None:
    monkeypatch.setattr(console.out, "width", 400)  # wide enough that no cell folds
    store = tmp_path / "runs" / "markup.db"
    with Journal.create(store, load_campaign(EXAMPLES / "campaign.yaml")) as journal:
        ids = journal.record_proposals([Proposal(PYRROLE), Proposal("CC[N+](C)(C)C")], step=0, planner="random",
                                       model_version=None)
        journal.start_experiment(ids[0])
        journal.fail_experiment(ids[0], f"DeviceError: {CLOSING} {MARKUP}")
        journal.add_event("fault", f"pump said {MARKUP} and {CLOSING}")
        journal.add_event("fault", "pump said \x1b]0;PWNED\x07\x1b[31mRED")  # a device's reply with ESC sequences

    result = labloop("log", store, "--last", "5")
    assert result.returncode == 0, result.stderr
    shown = result.stdout
    assert PYRROLE in shown
    assert "CC[N+](C)(C)C" in shown
    assert MARKUP in shown
    assert CLOSING in shown
    assert "\x1b" not in shown and "\x07" not in shown  # escaped, so the terminal is not driven
    assert "\\x1b]0;PWNED\\x07\\x1b[31mRED" in shown


def test_validate_shows_a_bracketed_path_as_written(tmp_path, labloop, monkeypatch) -> None:
    monkeypatch.setattr(console.out, "width", 400)
    folder = tmp_path / "screen[bold]v2[/]"
    shutil.copytree(EXAMPLES / "protocols", folder / "protocols")
    shutil.copy(EXAMPLES / "library.csv", folder / "library.csv")
    text = (EXAMPLES / "campaign.yaml").read_text()
    prior = (EXAMPLES.parent / "data" / "ocelot_chromophore_v1_ie_ea.csv").as_posix()
    (folder / "campaign.yaml").write_text(text.replace("../data/ocelot_chromophore_v1_ie_ea.csv", prior))
    result = labloop("validate", folder / "campaign.yaml", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "screen[bold]v2[/]" in result.stdout


def test_report_csv_quotes_cells_a_spreadsheet_would_run_as_formulas(tmp_path, labloop) -> None:
    """Issue 17, cause 15: ``experiments.csv`` wrote ``=HYPERLINK(...)`` as it was (formula injection); a cell's
    control characters are written as their escapes."""
    store = tmp_path / "runs" / "formula.db"
    injected = ['=HYPERLINK("http://example.invalid","x")', "+1+1", "-2+3", "@SUM(A1)", "\tTAB", "\rCR"]
    with Journal.create(store, load_campaign(EXAMPLES / "campaign.yaml")) as journal:
        ids = journal.record_proposals([Proposal(text) for text in injected], step=0, planner="random",
                                       model_version=None)
        journal.start_experiment(ids[0])
        journal.fail_experiment(ids[0], "=cmd|' /C calc'!A0")
    result = labloop("report", store, "-o", tmp_path / "report")
    assert result.returncode == 0, result.stderr
    with (tmp_path / "report" / "experiments.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    # a tab or a carriage return is written as its escape (core.text.spreadsheet_safe: cat ran a CR's overwrite on the
    # terminal), which no spreadsheet reads as a formula; the rest are quoted
    assert [row["smiles"] for row in rows] == [f"'{text}" for text in injected[:4]] + ["\\tTAB", "\\rCR"]
    assert rows[0]["cause"] == "'=cmd|' /C calc'!A0"
    for row in rows:
        assert not any(str(value).startswith(("=", "+", "-", "@", "\t", "\r")) for value in row.values())


def test_a_warning_a_lower_layer_logs_is_one_warning_line(capsys, monkeypatch) -> None:
    """A lab-grade run printed 51 blocks of ``WARNING  labloop.protocols.executor: ...`` wrapped over two lines
    each, unlike every other warning of the CLI. A warning that a layer below the console logs (it may not print) is
    one ``warning:`` line, shown as text, however long."""
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))  # put back at the end, with the level
    monkeypatch.setattr(root, "level", root.level)
    console.setup_logging(0)
    capsys.readouterr()
    why = f"the cathodic peak current is missing at one or more scan rates {MARKUP}\nand " + "x" * 200
    logging.getLogger("labloop.protocols.executor").warning("sample %s: no diffusion coefficient: %s", "S0018", why)
    logging.getLogger("labloop.protocols.executor").info("not said without -v")
    said = capsys.readouterr().err
    assert said == f"warning: sample S0018: no diffusion coefficient: {console.printable(why)}\n"


def test_stop_lines_and_info_records_write_escape_sequences_as_text(tmp_path, labloop, capsys, monkeypatch) -> None:
    """Journal text with ESC sequences (an instrument named so, a plug-in's exception) reached the terminal raw in
    three places the tables escape (a security trial): run's stop line, the line `log --follow` ends with, and a
    record logged at -v. Each writes them as escapes."""
    from labloop.orchestrator.cli.run import _say

    hostile = "pump \x1b]0;TITLE\x07\x1b[5mjammed"
    escaped = "pump \\x1b]0;TITLE\\x07\\x1b[5mjammed"
    _say(f"stopped: {hostile}")
    assert capsys.readouterr().err == f"stopped: {escaped}\n"

    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    console.setup_logging(1)  # off a terminal here: one plain line per record
    logging.getLogger("labloop.plugin").info("driver said %s", hostile)
    said = capsys.readouterr().err
    assert "\x1b" not in said and f"driver said {escaped}" in said, said
    try:
        raise RuntimeError("traceback\nkept")
    except RuntimeError:
        logging.getLogger("labloop.plugin").exception("failed %s", hostile)
    said = capsys.readouterr().err
    assert f"failed {escaped}\nTraceback" in said and "RuntimeError: traceback\nkept" in said, said

    store = tmp_path / "runs" / "stopped.db"
    with Journal.create(store, load_campaign(EXAMPLES / "campaign.yaml")) as journal:
        journal.add_event("stopped", f"faults in a row: {hostile}")
    result = labloop("log", store, "--follow")  # exit 1: the run it ends with stopped, not finished
    assert result.returncode == 1 and "\x1b" not in result.stderr + result.stdout, result.stderr
    assert escaped in result.stderr and "stopped following" in result.stderr
