"""`labloop report`: an HTML page, the four PNG plots and the CSV exports of a campaign's journal."""

from __future__ import annotations

import csv

import pytest

from labloop.orchestrator.journal.store import Journal
from labloop.orchestrator.report import PLOTS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_report_writes_html_plots_and_csv(tmp_path, labloop, write_campaign):
    campaign_file = write_campaign(tmp_path, budget={"max_experiments": 4})
    assert labloop("run", campaign_file, "--dry-run").returncode == 0
    result = labloop("report", tmp_path / "tiny.db", "-o", tmp_path / "report")
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "report" / "index.html").read_text()
    assert "tiny" in page and "4/4 done" in page
    for name in PLOTS:
        assert f'src="{name}"' in page
        assert (tmp_path / "report" / name).read_bytes().startswith(PNG_MAGIC)
    with (tmp_path / "report" / "experiments.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) >= 4 and {r["status"] for r in rows} <= {"done", "failed"}
    assert {"predicted_v_vs_li", "predicted_sd_v"} <= set(rows[0])  # named as in measurements.csv, to join on id
    with (tmp_path / "report" / "measurements.csv").open() as handle:
        measured = [r for r in csv.DictReader(handle) if r["potential_v_vs_li"]]
    assert len(measured) >= 4 and all(float(r["potential_v_vs_li"]) > 0 for r in measured)
    # every raw voltammogram, point by point, as the journal holds it (an operator found no way to replot one)
    with (tmp_path / "report" / "voltammograms.csv").open() as handle:
        points = list(csv.DictReader(handle))
    with Journal.open(tmp_path / "tiny.db", readonly=True) as journal:
        first = journal.voltammograms(int(measured[0]["id"]))[0]
    ours = [r for r in points if r["id"] == measured[0]["id"] and r["scan"] == "1"]
    assert len(ours) == len(first.potential_v) and '<a href="voltammograms.csv">' in page
    assert float(ours[5]["potential_v_vs_reference"]) == pytest.approx(first.potential_v[5], rel=1e-5)
    assert float(ours[5]["current_a"]) == pytest.approx(first.current_a[5], rel=1e-5)
    assert float(ours[5]["scan_rate_v_s"]) == first.params.scan_rate_v_s and ours[5]["reference_electrode"]
    # each potential's scale in its header: vs Li/Li+, or (E1/2) vs the cell's reference electrode, named
    assert all(float(r["potential_v_vs_li"]) - float(r["e_half_v_vs_reference"]) == pytest.approx(3.2)
               and r["reference_electrode"] == "Ag/Ag+" for r in measured)
    assert {r["potential_from"] for r in measured} == {"cell.reference_offset_v"}  # no ferrocene standard here
    assert not (tmp_path / "report" / "lab_grade.csv").exists() and "lab_grade.csv" not in page  # no lab record


def test_report_of_an_empty_journal_and_default_folder(tmp_path, labloop, write_campaign):
    from labloop.orchestrator.config.campaign import load_campaign
    from labloop.orchestrator.journal.store import Journal

    campaign = load_campaign(write_campaign(tmp_path))
    Journal.create(campaign.store, campaign).close()
    result = labloop("report", campaign.store)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "tiny.report" / "index.html").is_file()
    assert all((tmp_path / "tiny.report" / name).is_file() for name in PLOTS)
    assert labloop("report", tmp_path / "missing.db").returncode == 2
