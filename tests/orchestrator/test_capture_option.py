"""An instrument's wire capture (``options.capture``): ``validate`` writes nothing (it used to truncate the file
when it opened the simulated rig), and a file that cannot be written is refused with the campaign, naming
``instruments.<name>.options.capture`` (it was an operating-system error after ``run`` had taken its lock)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _with_capture(write_campaign, folder: Path, capture: object, **sections: object) -> Path:
    """The tiny dry-run campaign whose analyte pump captures its wire to ``capture``."""
    path = write_campaign(folder, **sections)
    campaign = yaml.safe_load(path.read_text())
    campaign["instruments"]["analyte_pump"]["options"]["capture"] = capture
    path.write_text(yaml.safe_dump(campaign, sort_keys=False))
    return path


def test_validate_writes_no_capture_and_run_does(tmp_path, labloop, write_campaign):
    wire = tmp_path / "wire.jsonl"
    campaign = _with_capture(write_campaign, tmp_path, str(wire), budget={"max_experiments": 1})
    assert labloop("validate", campaign, "--dry-run").returncode == 0
    assert not wire.exists()
    yesterday = '{"t": 0.0, "dir": "open", "port": "/dev/pts/9", "started": "2026-12-03T10:00:00Z"}'
    wire.write_text(yesterday + "\n")  # yesterday's capture
    assert labloop("validate", campaign, "--dry-run").returncode == 0
    assert wire.read_text() == yesterday + "\n"
    result = labloop("run", campaign, "--dry-run")
    assert result.returncode == 0, result.stderr
    first, *lines = wire.read_text().splitlines()
    assert first == yesterday  # kept: a capture appends a session
    records = [json.loads(line) for line in lines]
    assert records[0]["dir"] == "open" and {"tx", "rx"} <= {r["dir"] for r in records}
    run = wire.read_text()
    # resume truncated the run's capture (26 lines became 29 holding only the new session): it adds its own
    result = labloop("resume", campaign.with_suffix(".db"), "--max-experiments", 2)
    assert result.returncode == 0, result.stderr
    assert wire.read_text().startswith(run)
    assert [json.loads(line)["dir"] for line in wire.read_text().splitlines()[1:]].count("open") == 2


@pytest.mark.parametrize(("capture", "needle"), [
    ("/nonexistent/dir/x.txt", "/nonexistent/dir/x.txt: folder /nonexistent/dir does not exist"),
    (5, "must be the path of the file to write the wire capture to, got 5"),
    ("", "must be the path of the file to write the wire capture to, got ''"),
    ("{folder}", "is a folder: give the capture's file name"),
])
def test_a_capture_that_cannot_be_written_is_refused_with_its_field(tmp_path, labloop, write_campaign, capture,
                                                                   needle):
    folder = tmp_path / "campaign"
    folder.mkdir()
    campaign = _with_capture(write_campaign, folder, capture.format(folder=tmp_path) if isinstance(capture, str)
                             else capture)
    for command in (("validate", campaign), ("validate", campaign, "--dry-run"), ("run", campaign, "--dry-run")):
        result = labloop(*command)
        assert result.returncode == 2, (command, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "tiny.yaml:" in result.stderr and "instruments.analyte_pump.options.capture: " in result.stderr
        assert needle in result.stderr, result.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["tiny.yaml"]  # no journal, no lock


def test_a_relative_capture_counts_from_the_campaign_files_folder(tmp_path, labloop, write_campaign, monkeypatch):
    folder, elsewhere = tmp_path / "campaign", tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    campaign = _with_capture(write_campaign, folder, "wire.jsonl", budget={"max_experiments": 1})
    monkeypatch.chdir(elsewhere)  # `cd /tmp && labloop run camp/c.yaml` wrote /tmp/wire.jsonl
    result = labloop("run", campaign, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert (folder / "wire.jsonl").is_file() and list(elsewhere.iterdir()) == []


def test_two_instruments_capturing_to_one_file_are_refused(tmp_path, labloop, write_campaign):
    folder = tmp_path / "campaign"
    folder.mkdir()
    campaign = _with_capture(write_campaign, folder, "shared.json")
    text = yaml.safe_load(campaign.read_text())
    text["instruments"]["potentiostat"].setdefault("options", {})["capture"] = "../campaign/./shared.json"  # the same
    campaign.write_text(yaml.safe_dump(text, sort_keys=False))
    _refused_by_validate_and_run(labloop, campaign, (
        f"error: {campaign}:{_line_of(campaign, 'capture: ../campaign')}: instruments.potentiostat.options"
        f".capture: {folder / 'shared.json'} is analyte_pump's capture too: give each instrument a file of its "
        "own (two writing one file mix their lines)"))
    assert sorted(p.name for p in folder.iterdir()) == ["tiny.yaml"]  # no capture, no journal


def test_pumps_chained_on_one_line_share_its_capture(tmp_path, labloop, write_campaign):
    """Pumps chained on one port are one transport, whose link settings they must give alike, capture included;
    the same file on both was refused as two instruments' capture, and one pump's alone failed at run as other link
    settings (a hardware trial): a capture of the line was impossible. Both naming one file runs, and the file holds
    both pumps' commands (NE-1000 commands start with the pump's address)."""
    campaign = _with_capture(write_campaign, tmp_path, "line.jsonl", budget={"max_experiments": 1})
    text = yaml.safe_load(campaign.read_text())
    text["instruments"]["electrolyte_pump"]["options"]["capture"] = "./line.jsonl"
    campaign.write_text(yaml.safe_dump(text, sort_keys=False))
    assert labloop("validate", campaign, "--dry-run").returncode == 0
    result = labloop("run", campaign, "--dry-run")
    assert result.returncode == 0, result.stderr
    sent = [bytes.fromhex(r["hex"]) for line in (tmp_path / "line.jsonl").read_text().splitlines()
            if (r := json.loads(line))["dir"] == "tx"]
    assert {chunk[:1] for chunk in sent} >= {b"0", b"1"}, sent[:10]


@pytest.mark.parametrize("target", ["library", "store", "notes"])
def test_a_capture_onto_the_campaigns_own_files_or_any_non_capture_is_refused(tmp_path, labloop, write_campaign,
                                                                              target):
    """A capture appends to its file: ``capture: library.csv`` added 593 lines of JSON to the library (a resume then
    refused it as changed), and the store's name turned the journal into capture lines (a newcomer's check of the
    docs). The campaign's store, library, protocol and prior files, and any file whose first line is no capture
    record, are refused at the field, nothing written."""
    folder = tmp_path / "campaign"
    folder.mkdir()
    library = folder / "library.csv"
    library.write_text((EXAMPLES / "library.csv").read_text())
    (folder / "notes.txt").write_text("the operator's notes\n")
    path = {"library": library, "store": folder / "tiny.db", "notes": folder / "notes.txt"}[target]
    campaign = _with_capture(write_campaign, folder, path.name, library={"file": str(library)})
    what = {"library": "the library", "store": "the campaign's store", "notes": "a file that holds no wire capture"}
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    _refused_by_validate_and_run(labloop, campaign, (
        f"error: {campaign}:{_line_of(campaign, 'capture: ')}: instruments.analyte_pump.options.capture: "
        f"{folder / path.name} is {what[target]}: a capture appends its lines to its file, which would damage it; "
        "give the capture a file of its own"))
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # nothing written, no journal


def _refused_by_validate_and_run(labloop, campaign: Path, line: str) -> None:
    """``validate --dry-run`` and ``run --dry-run`` of ``campaign`` each end with exit 2 and ``line`` alone."""
    for command in (("validate", campaign, "--dry-run"), ("run", campaign, "--dry-run")):
        result = labloop(*command)
        assert result.returncode == 2, (command, result.stderr)
        assert result.stderr.strip().splitlines() == [line]


def _line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)
