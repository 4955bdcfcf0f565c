"""The lab-grade example (examples/lab-grade.yaml: purge, blank, EIS, iR-compensated CVs at four scan rates,
ferrocene standard) runs as a dry run end to end, and the journal holds what each step measured, raw data
included; its reported potentials are referenced to ferrocene, so the emulated reference electrode's offset
from its nominal value (world.reference_offset_v) does not reach them."""

from __future__ import annotations

import csv
import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from labloop.instruments.kinetics import RateConstant
from labloop.orchestrator.compose import build_world
from labloop.orchestrator.config.campaign import load_campaign
from labloop.orchestrator.journal.store import WARNING, Journal, State, judged_reversibility
from labloop.orchestrator.report import LAB_PLOTS, PLOTS

from ..conftest import best_rows

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
#: how measurements.csv and the report's best table say a potential referenced to ferrocene was put on the Li/Li+
#: scale, with cell.ferrocene_vs_li_v's value
FERROCENE_SCALE = "vs Fc+/Fc measured in the cell (ferrocene added), converted with cell.ferrocene_vs_li_v = {:g} V"


def _scales(labloop, store: Path, report: Path) -> tuple[set[str], set[str]]:
    """The report of ``store`` written to ``report``: how measurements.csv says its potentials were put on the Li/Li+
    scale, and how the page's best table says it."""
    assert labloop("report", store, "-o", report).returncode == 0
    with (report / "measurements.csv").open() as handle:
        said = {r["potential_from"] for r in csv.DictReader(handle) if r["potential_v_vs_li"]}
    return said, {row["how it was put on the Li/Li+ scale"] for row in best_rows((report / "index.html").read_text())}


def _lab_grade(tmp_path: Path, experiments: int = 1, **changes: dict) -> Path:
    """The lab-grade example written into ``tmp_path`` as ``lab.yaml``, beside a copy of its protocols and library,
    without a prior (random picks, one at a time: the protocol is the point) and with ``experiments`` of budget;
    ``changes``: fields of a section to set (``cell={"reference_offset_v": 3.45}``)."""
    shutil.copytree(EXAMPLES / "protocols", tmp_path / "protocols")
    shutil.copy(EXAMPLES / "library.csv", tmp_path / "library.csv")
    campaign = yaml.safe_load((EXAMPLES / "lab-grade.yaml").read_text())
    del campaign["prior"], campaign["surrogate"]
    campaign.update(planner={"kind": "random", "batch_size": 1}, budget={"max_experiments": experiments})
    for section, fields in changes.items():
        campaign[section].update(fields)
    (tmp_path / "lab.yaml").write_text(yaml.safe_dump(campaign, sort_keys=False))
    return tmp_path / "lab.yaml"


def test_the_lab_grade_example_runs_and_journals_every_step(tmp_path, labloop, axis_labels):
    shutil.copytree(EXAMPLES / "protocols", tmp_path / "protocols")
    shutil.copy(EXAMPLES / "library.csv", tmp_path / "library.csv")
    protocol = tmp_path / "protocols" / "cv_lab_grade.yaml"  # a 2 mm disk, not the default 3 mm one
    written = protocol.read_text()
    protocol.write_text(written.replace("analyte_mm: 1.0}", "analyte_mm: 1.0, electrode_area_cm2: 0.0314}"))
    assert protocol.read_text() != written
    campaign = yaml.safe_load((EXAMPLES / "lab-grade.yaml").read_text())
    del campaign["prior"], campaign["surrogate"]  # no model to train: random picks, the protocol is the point
    campaign.update(planner={"kind": "random", "batch_size": 2}, budget={"max_experiments": 2})
    (tmp_path / "lab.yaml").write_text(yaml.safe_dump(campaign, sort_keys=False))
    assert labloop("validate", tmp_path / "lab.yaml", "--dry-run").returncode == 0
    result = labloop("run", tmp_path / "lab.yaml", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "ferrocene's couple lies" not in result.stderr  # 30 mV off: a reference's drift, not a wrong offset

    world = build_world(load_campaign(tmp_path / "lab.yaml"))
    assert world.reference_offset_v == 3.23  # the emulated reference sits 30 mV off the nominal 3.2 V
    ratios: list[float] = []  # D measured / D simulated
    spreads: list[float] = []  # E1/2's max - min over the scan rates of one experiment (V)
    with Journal.open(tmp_path / "runs" / "cathode-screen-lab-grade.db", readonly=True) as journal:
        done = journal.experiments(states=(State.DONE,))
        assert len(done) == 2
        for experiment in done:
            actions = [a.command for a in journal.actions(experiment.id) if a.attempt == experiment.attempt]
            assert actions == ["dispense", "purge", "blank", "eis", "load_sample", "dispense", "cv", "add_standard",
                               "rinse"]
            lab = journal.lab_record(experiment.id)
            assert lab is not None and lab["purged_minutes"] == 10
            assert abs(lab["ru"]["ru_ohm"] - 500) / 500 < 0.05  # Ru from the impedance spectrum
            assert [s["scan_rate_v_s"] for s in lab["scans"]] == [0.1, 0.2, 0.5, 1.0]
            assert all(b["result"]["flags"] == [] for b in lab["blanks"][-1:])  # purged: a clean blank
            assert lab["referenced"]["e_vs_fc_v"] is not None
            assert lab["scans"][0]["voltammogram"] and lab["standard_scan"]  # the journal keeps the raw data
            # vs ferrocene, the potential is the truth to within the world's 10 mV noise, though the
            # reference electrode sits 30 mV away from where the campaign believes it is
            assert abs(experiment.potential_v - world.truth_v(experiment.smiles)) < 0.025
            # one solution scanned at four rates: E1/2 stays within a few mV (the world's noise is the solution's,
            # not the scan's: 9-40 mV apart, read as a faulty reference by a chemist's trial)
            halves = [s["analysis"]["e_half_v"] for s in lab["scans"] if s["analysis"]["e_half_v"] is not None]
            spreads += [max(halves) - min(halves)] if len(halves) > 1 else []
            # the emulated electrode is the protocol's 2 mm disk, so D is the simulated molecule's
            simulated = world.couple_of(experiment.smiles)
            assert simulated.area_cm2 == 0.0707  # the world's molecule; the dry run's rig puts it on the protocol's
            if lab["diffusion"] is not None:  # None where a scan ran past the window (a wave beyond 1.95 V)
                ratios.append(lab["diffusion"]["diffusion_cm2_s"] / simulated.diffusion_cm2_s)
    assert ratios and all(abs(ratio - 1) < 0.15 for ratio in ratios), ratios  # the default disk: ~5x
    assert spreads and all(spread < 0.005 for spread in spreads), spreads
    # `log --json` (and the dashboard, which sends it on every change) carries the results, not the raw scans
    logged = labloop("log", tmp_path / "runs" / "cathode-screen-lab-grade.db", "--json")
    lab_events = [e for e in json.loads(logged.stdout)["events"] if e["kind"] == "lab"]
    labs = [e["data"] for e in lab_events]
    assert len(labs) >= 2 and all(lab["referenced"]["e_vs_fc_v"] is not None for lab in labs)
    assert all("standard_scan" not in lab and all(set(scan) == {"scan_rate_v_s", "analysis", "k0_cm_s", "k0_side",
                                                                "k0_why"}
                                                  for scan in lab["scans"]) for lab in labs)
    logged_k0 = {(e["experiment_id"], scan["scan_rate_v_s"]): (scan["k0_cm_s"], scan["k0_side"], scan["k0_why"])
                 for e in lab_events for scan in e["data"]["scans"]}  # an experiment's last attempt's, as the report's
    # the log's one E1/2 and dEp per experiment name the rate they are (a chemist's trial read dEp 73 beside 73-99 mV)
    shown = " ".join(labloop("log", tmp_path / "runs" / "cathode-screen-lab-grade.db").stdout.split())
    assert ("E1/2 and dEp: the first scan rate's (0.1 V/s) of the cv's 0.1, 0.2, 0.5, 1 V/s; every rate's in `labloop "
            "report`'s lab_grade.csv") in shown, shown
    labels = axis_labels()
    report = labloop("report", tmp_path / "runs" / "cathode-screen-lab-grade.db", "-o", tmp_path / "report")
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "report" / "index.html").read_text()
    # set in the file: said as set (a newcomer)
    assert ("the cell: solvent EC:DMC 1:1 (v/v); supporting electrolyte 1 M LiPF6; working electrode 3 mm glassy "
            "carbon disk; counter electrode Pt wire; reference electrode Ag/Ag+ at 3.2 V vs Li/Li+ "
            "(cell.reference_offset_v); 25 C (cell.temperature_c; D, k0 and the dEp cut-offs computed at it)") in page
    # how the planner was set up, and the software (a referee found them only in the campaign file's copy, the docs
    # and log --json); the surrogate's sentence: tests/orchestrator/test_report.py
    setup = " ".join(page.split())
    assert "<p>surrogate: none (no prior section); planner random (approve false, batch diverse, batch_size 2," in setup
    assert "; software of the last run: labloop 0.1.0" in setup and " tensorflow " in setup and " rdkit " in setup
    for name in ("nyquist.png", "cv_per_scan_rate.png", "potential_vs_ferrocene.png", "randles_sevcik.png"):
        assert (tmp_path / "report" / name).stat().st_size > 0 and f'src="{name}"' in page
    # each figure says what it shows (eight figures had no caption: a chemist's trial)
    figures = re.findall(r'<figure><img src="([^"]+)"[^>]*><figcaption>([^<]+)</figcaption></figure>', page)
    assert len(figures) == len(PLOTS) + len(LAB_PLOTS) and all(caption.strip() for _, caption in figures)
    assert labels["randles_sevcik.png"] == ["sqrt(scan rate) (sqrt(V/s))"]
    # the electrode the example names, the potentials as applied (a reviewer took them for iR-corrected ones)
    assert labels["cv_per_scan_rate.png"] == labels["voltammograms.png"] == [
        "E (V vs Ag/Ag+, as applied: uncompensated iR not subtracted)"]
    with (tmp_path / "report" / "measurements.csv").open() as handle:  # which scale each potential came from
        measured = [r for r in csv.DictReader(handle) if r["potential_v_vs_li"]]
    assert measured and {r["potential_from"] for r in measured} == {FERROCENE_SCALE.format(3.2)}
    assert {row["how it was put on the Li/Li+ scale"] for row in best_rows(page)} == {FERROCENE_SCALE.format(3.2)}
    # E1/2 vs Fc+/Fc, the number a chemist reports, beside it (only lab_grade.csv had it: a trial)
    assert all(abs(float(r["potential_v_vs_li"]) - float(r["e_half_v_vs_fc"]) - 3.2) < 2e-4 for r in measured), measured
    # the scan rates each experiment ran at, the protocol's (no condition planned them)
    assert {r["protocol_conditions"] for r in measured} == {"scan_rates_v_s=[0.1, 0.2, 0.5, 1]"}
    # the lab-grade results in a table of their own, one row per experiment and scan rate, units in the headers
    assert 'href="lab_grade.csv"' in page
    # the call over four rates is stated as such, beside which potentials are iR-corrected
    said = " ".join(page.split())
    assert "reversibility (measurements.csv, lab_grade.csv; log --json): reversible: 0 &lt; dEp &lt;= 68 mV (an " \
           "experiment&#x27;s: at every scan rate);" in said
    assert "lab_grade.csv's epa_v_vs_reference and epc_v_vs_reference too) are corrected for the residual iR" in said
    with (tmp_path / "report" / "lab_grade.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    with Journal.open(tmp_path / "runs" / "cathode-screen-lab-grade.db", readonly=True) as journal:
        records = {e.id: journal.lab_record(e.id) for e in done}
    assert [(int(r["id"]), float(r["scan_rate_v_s"])) for r in rows] == [
        (e.id, rate) for e in done for rate in (0.1, 0.2, 0.5, 1.0)]
    def shown(value: float | None, factor: float = 1, decimals: int | None = None) -> str:  # as the CSV rounds it
        if value is None:
            return ""
        return f"{value * factor:.4g}" if decimals is None else f"{round(value * factor, decimals) + 0.0:.{decimals}f}"

    for row in rows:
        lab = records[int(row["id"])]
        scan = next(s["analysis"] for s in lab["scans"] if s["scan_rate_v_s"] == float(row["scan_rate_v_s"]))
        # potentials to 0.1 mV (dEp in mV to 1 decimal), the rest to 4 significant digits, not a float's 17
        assert (row["dep_mV"], row["ipa_uA"], row["ipc_uA"], row["e_half_v_vs_reference"]) == \
            (shown(scan["dep_v"], 1e3, 1), shown(scan["ipa_a"], 1e6), shown(scan["ipc_a"], 1e6),
             shown(scan["e_half_v"], decimals=4))
        assert row["ipc_over_ipa"] == shown(scan["ratio"]) and row["scan_flags"] == "; ".join(scan["flags"])
        assert row["ru_ohm"] == shown(lab["ru"]["ru_ohm"])
        assert row["diffusion_cm2_s"] == shown((lab["diffusion"] or {}).get("diffusion_cm2_s"))
        assert row["e_half_v_vs_fc"] == shown(lab["referenced"]["e_vs_fc_v"], decimals=4)
        halves = [s["analysis"]["e_half_v"] for s in lab["scans"] if s["analysis"]["e_half_v"] is not None]
        # the spread in mV to 0.1 mV, as dEp, and over how many rates (a rate without an E1/2 is left out of it)
        assert (row["e_half_spread_mV"], row["e_half_rates_n"]) == (
            shown(1e3 * (max(halves) - min(halves)) if len(halves) > 1 else None, decimals=1), str(len(halves)))
        # what D was computed with: the cv step's analyte_mm and electrode; the cell held nothing else
        assert (row["analyte_mM"], row["electrode_area_cm2"], row["cell_held_ml"]) == ("1", "0.0314", "0")
        assert row["standard_problem"] == "" and row["blank_flags"] == "clean"
        standard = lab["referenced"]["standard"]  # ferrocene's own couple, the lab's check on its electrode and iR
        assert (row["standard_e_half_v_vs_reference"], row["standard_dep_mV"], row["standard_ipc_over_ipa"]) == \
            (shown(standard["e_half_v"], decimals=4), shown(standard["dep_v"], 1e3, 1), shown(standard["ratio"]))
        assert 50 < float(row["standard_dep_mV"]) < 75  # a fast one-electron couple's, as simulated
        compensated = next(s["voltammogram"]["params"]["ir_comp_ohm"] for s in lab["scans"]
                           if s["scan_rate_v_s"] == float(row["scan_rate_v_s"]))
        assert row["ir_compensated_ohm"] == shown(compensated) and compensated > 0
    _k0_is_the_simulated_molecules(rows, {e.id: world.couple_of(e.smiles).k0_cm_s for e in done}, page)
    # log --json says each rate's k0 as lab_grade.csv does (a chemist's trial found it in the report only)
    assert [(shown(logged_k0[int(r["id"]), float(r["scan_rate_v_s"])][0]),
             *(said or "" for said in logged_k0[int(r["id"]), float(r["scan_rate_v_s"])][1:])) for r in rows] == \
        [(r["k0_cm_s"], r["k0_side"], r["k0_why"]) for r in rows]
    _every_scan_in_the_csv(tmp_path / "report" / "voltammograms.csv", records, shown)
    _lab_grade_table_on_the_page(page, records, shown)
    _d_recomputes_from_the_csv(rows, records)
    assert "D is the Randles-Sevcik one, ip = 2.6865e5 n^1.5 A C sqrt(D v) (the constant at 25 C, times sqrt(298.15 " \
        "K / T)), with n = 1 electron at 298.15 K (25 C), the electrode area 0.0314 cm2, and the concentration in " \
        "the cell of lab_grade.csv&#x27;s analyte_mM, over the rates where the couple is reversible when two or " \
        "more are (else every rate, and D " \
        "then reads low)." in page


def _k0_is_the_simulated_molecules(rows: list[dict], simulated: dict[int, float], page: str) -> None:
    """Nicholson's k0 at each rate (lab_grade.csv's k0_cm_s, from the rate's dEp and the experiment's D): where dEp
    tells a value, the simulated molecule's k0 (the world's Butler-Volmer one) within a factor 1.5 (the method's own
    ~10%, the world's noise and the iR left after compensation); where it only bounds k0, a bound the simulated k0
    keeps; and each in the page's table."""
    told = [row for row in rows if row["diffusion_cm2_s"]]
    assert told and all(row["k0_cm_s"] == row["k0_side"] == "" for row in rows if not row["diffusion_cm2_s"])
    for row in told:
        k0, side, truth = float(row["k0_cm_s"]), row["k0_side"], simulated[int(row["id"])]
        assert (side == "value" and 1 / 1.5 < k0 / truth < 1.5) or (side == "above" and truth > k0 / 1.2) or (
            side == "below" and truth < k0 * 1.2), (row["id"], row["scan_rate_v_s"], row["dep_mV"], k0, side, truth)
        assert html.escape(f"{float(row['scan_rate_v_s']):g} V/s: {RateConstant(k0, side).said()}") in page


def _d_recomputes_from_the_csv(rows: list[dict], records: dict[int, dict]) -> None:
    """What D assumed is in lab_grade.csv beside it (the electrons and the temperature were in no output: a chemist's
    trial), so a reviewer recomputes D from the CSV alone: the forward (anodic) peak currents against sqrt(v), a
    line through the origin, D = (slope / (0.4463 F sqrt(F / RT) n^1.5 A C))^2 at the temperature the constant holds
    for (2.6865e5 at 25 C: the rounded 2.69e5 read D 0.26% low, a referee's check)."""
    from scipy.constants import R, physical_constants

    faraday = physical_constants["Faraday constant"][0]
    with_d = [r for r in rows if r["diffusion_cm2_s"]]
    assert with_d, rows
    for experiment_id in {int(r["id"]) for r in with_d}:
        mine = [r for r in with_d if int(r["id"]) == experiment_id]
        first = mine[0]
        assert (first["n_electrons"], first["temperature_K"]) == ("1", "298.15")
        diffusion = records[experiment_id]["diffusion"]
        assert (diffusion["n_electrons"], diffusion["temperature_k"]) == (1, 298.15)
        roots = [float(r["scan_rate_v_s"]) ** 0.5 for r in mine]
        currents = [float(r["ipa_uA"]) * 1e-6 for r in mine]
        slope = sum(x * y for x, y in zip(roots, currents, strict=True)) / sum(x * x for x in roots)
        constant = 0.4463 * faraday * (faraday / (R * 298.15)) ** 0.5 * int(first["n_electrons"]) ** 1.5 \
            * float(first["electrode_area_cm2"]) * float(first["analyte_mM"]) * 1e-6
        assert (slope / constant) ** 2 == pytest.approx(float(first["diffusion_cm2_s"]), rel=2e-3)
    assert all(r["n_electrons"] == r["temperature_K"] == "" for r in rows if not r["diffusion_cm2_s"])


def _every_scan_in_the_csv(path: Path, records: dict[int, dict], shown) -> None:
    """voltammograms.csv holds every raw voltammogram of each experiment's lab record, in the order run (blanks,
    each rate's scan, the standard's), each named by its role, point by point: a reviewer found the first rate's
    scan alone, so D, the spread over the rates and the referencing could not be re-derived from the CSVs."""
    with path.open() as handle:
        points = list(csv.DictReader(handle))
    for experiment_id, lab in records.items():
        expected = [*(("blank", b["voltammogram"]) for b in lab["blanks"]),
                    *(("analyte", s["voltammogram"]) for s in lab["scans"]),
                    ("analyte + ferrocene", lab["standard_scan"])]
        scans: dict[int, list[dict]] = {}
        for row in points:
            if row["id"] == str(experiment_id):
                scans.setdefault(int(row["scan"]), []).append(row)
        assert sorted(scans) == list(range(1, len(expected) + 1))
        for (role, raw), rows in zip(expected, (scans[n] for n in sorted(scans)), strict=True):
            params = raw["params"]
            assert {(r["role"], r["scan_rate_v_s"], r["ir_compensated_ohm"]) for r in rows} == {
                (role, shown(params["scan_rate_v_s"]), shown(params["ir_comp_ohm"]))}
            assert [float(r["potential_v_vs_reference"]) for r in rows] == pytest.approx(raw["potential_v"], abs=1e-5)
            assert [float(r["current_a"]) for r in rows] == pytest.approx(raw["current_a"], rel=1e-5)
        assert len({float(r["scan_rate_v_s"]) for rows in scans.values() for r in rows}) == 4  # every rate


def _lab_grade_table_on_the_page(page: str, records: dict[int, dict], shown) -> None:
    """The page shows each experiment's lab-grade numbers in a table (a reviewer found CSV links and the last
    experiment's plots only), as its lab record holds them and rounded as lab_grade.csv rounds them, units and
    scales in the headers."""
    table = page[page.index("<h2>lab-grade results</h2>"):]
    table = table[:table.index("</table>")]
    heads = re.findall(r"<th>(.*?)</th>", table)
    for experiment_id, lab in records.items():
        cells = re.findall(r"<td[^>]*>(.*?)</td>", re.search(rf"<tr><td>{experiment_id}</td>.*?</tr>", table)[0])
        row = dict(zip(heads, cells, strict=True))
        compensated = lab["scans"][0]["voltammogram"]["params"]["ir_comp_ohm"]
        assert (row["E1/2 (V vs Fc+/Fc)"], row["E1/2 (V vs Li/Li+, through Fc+/Fc)"], row["Ru (\u03a9, EIS)"],
                row["iR compensated by the potentiostat (% of Ru)"]) == (
            shown(lab["referenced"]["e_vs_fc_v"], decimals=4), shown(lab["referenced"]["e_vs_li_v"], decimals=4),
            shown(lab["ru"]["ru_ohm"]), shown(100 * compensated / lab["ru"]["ru_ohm"]))
        assert row["\u0394Ep (mV) and reversibility at each scan rate"] == "<br>".join(  # none: no return peak there
            f"{shown(s['scan_rate_v_s'])} V/s: {shown(s['analysis']['dep_v'], 1e3, 1) or 'none'}"
            + (f" ({judged})" if (judged := judged_reversibility(s["analysis"])) else "") for s in lab["scans"])
        # D, and under it which rates it came from when not every rate's couple was reversible
        assert row["D (cm\u00b2/s, Randles-Sevcik)"].split("<br>")[0] == shown(
            (lab["diffusion"] or {}).get("diffusion_cm2_s"))
        assert row["E1/2 spread over the rates (mV, max - min)"] == _spread(lab, shown)
    # the spread is where a chemist looks first too: beside each best-so-far potential (a PI's audit)
    best = best_rows(page)
    assert any(row["E1/2 spread over the scan rates (mV)"] for row in best), best
    assert all(row["E1/2 spread over the scan rates (mV)"] == _spread(records[int(row["id"])], shown) for row in best)


def _spread(lab: dict, shown) -> str:
    """How far a lab record's E1/2 moved over its scan rates, as the page says it: ``0.5 over 4 rates`` (mV)."""
    halves = [s["analysis"]["e_half_v"] for s in lab["scans"] if s["analysis"]["e_half_v"] is not None]
    return f"{shown(1e3 * (max(halves) - min(halves)), decimals=1)} over {len(halves)} rates" if len(halves) > 1 else ""


def test_the_readme_protocol_validates_on_the_lab_grade_rig(tmp_path, labloop):
    """README's protocol example (a variant of the shipped one), pasted into examples/lab-grade.yaml as a newcomer
    did: it named a valve and a pump the example's rig does not have, rates its 1 mL syringes cannot reach and no
    refills, so it took three validate runs to pass and then ran dry. It must validate over the example's whole
    budget."""
    readme = (EXAMPLES.parent / "docs" / "lab-grade.md").read_text()
    block = readme[readme.index("```yaml\nprotocol:  # a variant of examples/protocols/cv_lab_grade.yaml, on the rig "
                                "of examples/lab-grade.yaml\n"):]
    protocol = yaml.safe_load(block[len("```yaml\n"):block.index("```", 3)])["protocol"]
    # said to be a variant, as it is (a newcomer took its 10 min purge through purge_valve for the shipped file's)
    assert protocol != yaml.safe_load((EXAMPLES / "protocols" / "cv_lab_grade.yaml").read_text())
    shutil.copytree(EXAMPLES / "protocols", tmp_path / "protocols")
    shutil.copy(EXAMPLES / "library.csv", tmp_path / "library.csv")
    campaign = yaml.safe_load((EXAMPLES / "lab-grade.yaml").read_text())
    del campaign["prior"], campaign["surrogate"]
    campaign.update(planner={"kind": "random", "batch_size": 2}, protocol=protocol)
    (tmp_path / "readme.yaml").write_text(yaml.safe_dump(campaign, sort_keys=False))
    checked = labloop("validate", tmp_path / "readme.yaml", "--dry-run")
    assert checked.returncode == 0, checked.stderr
    assert campaign["budget"]["max_experiments"] == 30  # judged over the example's budget


#: a protocol with a blank into O2's reduction (-1 V vs the reference, 2.2 V vs Li/Li+) and no purge step
UNPURGED = [{"dispense": {"pump": "electrolyte_pump", "volume_ml": 4.5, "rate_ml_min": 5.0, "fluid": "electrolyte",
                          "refill": True}},
            {"blank": {"e_begin_v": 0.0, "e_vertex1_v": -1.0, "e_vertex2_v": 1.0}}, "load_sample",
            {"dispense": {"pump": "analyte_pump", "volume_ml": 0.5, "rate_ml_min": 0.5, "fluid": "sample",
                          "refill": True}},
            {"cv": {"e_begin_v": -0.8, "e_vertex1_v": 1.95, "e_vertex2_v": -0.8}}, "rinse"]


def test_a_blank_that_needs_a_purge_the_protocol_lacks_is_told_to_start_a_new_store(tmp_path, write_campaign,
                                                                                    labloop):
    """O2 in the blank and no purge step: the fix is the protocol, which a journal keeps as it began, so the stop's
    advice was a resume that failed again the same way; it says to run the fixed campaign with a new store."""
    steps = UNPURGED
    campaign = write_campaign(tmp_path, protocol=steps, budget={"max_experiments": 1},
                              world={"truth": {"kind": "born"}, "oxygen_mm": 2.0})
    result = labloop("run", campaign, "--dry-run")
    assert result.returncode == 1, result.stderr
    stop = result.stderr.splitlines()[-1]  # the stop's line, without the cause's class name ("BlankNeedsPurge: ...")
    assert re.match(rf"stopped: {re.escape(str(campaign))}:\d+: protocol\[1\]\.blank: dissolved O2 in the blank",
                    stop), result.stderr
    assert "the protocol has no purge step" in stop and "BlankNeedsPurge" not in result.stderr
    assert "world.oxygen_mm: 2 mM of O2 in the simulated cell and no purge step" in result.stderr  # said before, too
    assert stop.endswith("add the purge step to the campaign's protocol and run it with a new store (`labloop run "
                         "FILE --store NEW.db`): a journal keeps the protocol it began with")


def test_a_dry_run_whose_blank_will_find_oxygen_with_no_purge_is_warned_by_validate(tmp_path, write_campaign, labloop):
    """The lab-grade example with its purge step taken out validated in silence and its run then stopped at the first
    blank (an electrochemist's trial): validate --dry-run says so at world.oxygen_mm, and says nothing of an O2-free
    simulated cell or of a blank that does not reach O2's reduction."""
    steps = UNPURGED
    warned = labloop("validate", write_campaign(tmp_path, protocol=steps, world={"truth": {"kind": "born"},
                                                                                "oxygen_mm": 2.0}), "--dry-run")
    assert warned.returncode == 0, warned.stderr
    lines = [line for line in warned.stderr.splitlines() if "oxygen_mm" in line]
    assert len(lines) == 1 and re.match(r"warning: .*\.yaml:\d+: world\.oxygen_mm: 2 mM of O2 in the simulated "
                                        r"cell and no purge step in the protocol to drive it out: the protocol's blank",
                                        lines[0]), warned.stderr
    assert lines[0].endswith("add a purge step before the blank, or world.oxygen_mm: 0 for an O2-free cell (one "
                             "filled in a glovebox)"), lines[0]
    quiet = [("O2-free", steps, 0.0),
             ("blank above O2's reduction", [*steps[:1], {"blank": {"e_begin_v": 0.0, "e_vertex1_v": -0.2,
                                                                      "e_vertex2_v": 1.0}}, *steps[2:]], 2.0)]
    for case, protocol, oxygen in quiet:
        folder = tmp_path / case.replace(" ", "_").replace("'", "")
        folder.mkdir()
        result = labloop("validate", write_campaign(folder, protocol=protocol, world={"truth": {"kind": "born"},
                                                                                     "oxygen_mm": oxygen}),
                         "--dry-run")
        assert result.returncode == 0 and "oxygen_mm" not in result.stderr, (case, result.stderr)


def _csv_scans(path: Path, experiment_id: int) -> list[tuple[str, str, list[float]]]:
    """voltammograms.csv's scans of one experiment: (role, status, currents) of each, in its order."""
    with path.open() as handle:
        rows = [row for row in csv.DictReader(handle) if row["id"] == str(experiment_id)]
    scans: dict[int, list[dict]] = {}
    for row in rows:
        scans.setdefault(int(row["scan"]), []).append(row)
    assert sorted(scans) == list(range(1, len(scans) + 1))
    return [(s[0]["role"], s[0]["status"], [float(r["current_a"]) for r in s]) for _, s in sorted(scans.items())]


def test_the_blanks_of_a_run_its_blank_stopped_are_journalled_and_reported(tmp_path, labloop):
    """A blank still oxygenated after the purge ran again stopped the run with nothing of it journalled: both blanks,
    the curves the person it stops for judges the cell by, were lost (`labloop log`, its --json and the report's
    voltammograms.csv had none of them). Here the gas line gives air (a wrong line, a tank run dry): each blank shows
    O2, and each reaches the journal with its verdict before the stop, and the report's CSV as a blank."""
    campaign = _lab_grade(tmp_path, instruments={"purge_valve": {"driver": "relay-valve", "port": "/dev/ttyACM1",
                                                                 "options": {"channels": {"air": 0}}}})
    protocol = tmp_path / "protocols" / "cv_lab_grade.yaml"
    # a purge shorter than usual, too: the stop names it beside the gas line (a chemist's trial: a 5 min purge's
    # stop said only "check the gas supply, the valve and the cell's seal")
    protocol.write_text(protocol.read_text().replace("gas: argon", "gas: air").replace("minutes: 10", "minutes: 4"))
    result = labloop("run", campaign, "--dry-run")
    assert result.returncode == 1, result.stderr
    said = result.stderr.splitlines()[-1]
    assert "dissolved O2 remains in the blank after purging again (4 min of air" in said, said
    assert ("check the gas supply, the valve and the cell's seal; or purge longer than 4 min: about 10 min drive out "
            "99% at a usual flow (change the purge step's minutes, and run the campaign with a new store") in said, said
    store = tmp_path / "runs" / "cathode-screen-lab-grade.db"
    with Journal.open(store, readonly=True) as journal:
        [experiment] = journal.experiments()
        record = journal.lab_record(experiment.id)
    assert experiment.status == State.INTERRUPTED and not experiment.measured  # a resume runs it again
    assert [b["result"]["flags"] for b in record["blanks"]] == [["oxygen"], ["oxygen"]] and record["scans"] == []
    events = json.loads(labloop("log", store, "--json").stdout)["events"]
    kinds = [e["kind"] for e in events]
    assert kinds.index("lab") < kinds.index("stopped")
    [lab] = [e for e in events if e["kind"] == "lab"]
    assert lab["message"] == "lab-grade CV: purged 8 min, blank NOT clean (oxygen then oxygen)"
    assert [b["result"] for b in lab["data"]["blanks"]] == [b["result"] for b in record["blanks"]]
    assert labloop("report", store, "-o", tmp_path / "report").returncode == 0
    scans = _csv_scans(tmp_path / "report" / "voltammograms.csv", experiment.id)
    assert [(role, status) for role, status, _ in scans] == [("blank", "interrupted")] * 2
    for (_, _, currents), blank in zip(scans, record["blanks"], strict=True):
        assert currents == pytest.approx(blank["voltammogram"]["current_a"], rel=1e-5)


def test_a_run_its_contaminated_blank_stopped_resumes_once_the_cell_is_emptied(tmp_path, labloop):
    """The lab-grade protocol without its rinse: the second experiment's blank sees the first one's analyte and
    ferrocene and stops the run. Its blank is journalled (the report's CSV has it) and the resume, once the person
    emptied the cell, runs the experiment again as before: a new attempt whose own record the report then shows."""
    campaign = _lab_grade(tmp_path, experiments=2, safety={"cell_volume_ml": 20})
    protocol = tmp_path / "protocols" / "cv_lab_grade.yaml"
    written = protocol.read_text()
    protocol.write_text(written.replace("\n- rinse\n", "\n").replace("on_fail: clean}", "on_fail: stop}"))
    assert protocol.read_text().count("on_fail: stop}") == 1 and "- rinse" not in protocol.read_text()
    result = labloop("run", campaign, "--dry-run")
    assert result.returncode == 1, result.stderr
    assert "protocol[2].blank: the blank is contaminated" in result.stderr.splitlines()[-1]
    store = tmp_path / "runs" / "cathode-screen-lab-grade.db"
    with Journal.open(store, readonly=True) as journal:
        stopped = journal.experiments(states=(State.INTERRUPTED,))
        [experiment] = stopped
        record = journal.lab_record(experiment.id)
    assert [b["result"]["flags"] for b in record["blanks"]] == [["contaminated"]]
    assert labloop("report", store, "-o", tmp_path / "report").returncode == 0
    [(role, status, currents)] = _csv_scans(tmp_path / "report" / "voltammograms.csv", experiment.id)
    assert (role, status) == ("blank", "interrupted")
    assert currents == pytest.approx(record["blanks"][0]["voltammogram"]["current_a"], rel=1e-5)

    resumed = labloop("resume", store, "--cell-emptied")
    assert resumed.returncode == 0, resumed.stderr
    with Journal.open(store, readonly=True) as journal:
        [again] = [e for e in journal.experiments() if e.id == experiment.id]
        record = journal.lab_record(experiment.id)
    assert (again.status, again.attempt) == (State.DONE, 2)
    assert [b["result"]["flags"] for b in record["blanks"]] == [[]] and len(record["scans"]) == 4
    assert labloop("report", store, "-o", tmp_path / "report").returncode == 0
    assert [(role, status) for role, status, _ in _csv_scans(tmp_path / "report" / "voltammograms.csv", again.id)] == [
        ("blank", "done"), *[("analyte", "done")] * 4, ("analyte + ferrocene", "done")]


#: a plug-in potentiostat: labloop's EmStat driver on an EmStat emulator whose ``{at}``-th cv script (the blank's is
#: the first; the lab-grade cv's rates, each its own script as the cell rests between them, the second to fifth) is met
#: by ``{then}`` instead, once per test: ``link.hang_up()`` pulls the USB cable, a SIGINT to the run's own process is a
#: person's Ctrl-C at that moment (the emulator serves from a thread of the dry run's process). ``one-at-a-time`` is
#: the driver without ``run_cv_series``, as a plug-in's may be: the executor runs one script per rate without a rest
STOPS_IN_THE_CV = """
    import dataclasses, os, signal

    from labloop.instruments.builtin_drivers import EMSTAT
    from labloop.instruments.emstat import EmStatPotentiostat
    from labloop.sim.emstat_emulator import EmStatEmulator
    from labloop.sim.emulation import Emulation
    from labloop.sim.pty_device import PtyDevice

    FIRED = []

    class StopsInTheCv(EmStatEmulator):
        def _start(self, lines, link):
            self.cvs = getattr(self, "cvs", 0) + any("meas_loop_cv" in line for line in lines)
            if self.cvs == {at} and not FIRED:
                FIRED.append(True)
                {then}
            super()._start(lines, link)

    def emulator(context, *, seed=0):
        device = StopsInTheCv(context.contents, time_scale=context.time_scale, seed=seed,
                              reference_drift=context.reference_drift)
        return Emulation.on_pty(PtyDevice(device, name="stops-in-the-cv").start())

    class OneAtATime(EmStatPotentiostat):
        run_cv_series = None

        def run_cv(self, params):
            return EmStatPotentiostat.run_cv_series(self, [params])[0]

    STOPS = dataclasses.replace(EMSTAT, name="stops-in-the-cv")
    ONE_AT_A_TIME = dataclasses.replace(EMSTAT, name="one-at-a-time", open=OneAtATime.open)
    """


def _stopping_in_the_cv(tmp_path: Path, install_plugin, then: str, experiments: int = 1,
                        driver: str = "stops-in-the-cv") -> Path:
    """The lab-grade campaign (:func:`_lab_grade`) on the potentiostat of :data:`STOPS_IN_THE_CV` (``driver``) that
    meets the cv's third scan rate with ``then``."""
    install_plugin("stops_in_the_cv", STOPS_IN_THE_CV.replace("{at}", "4").replace("{then}", then),
                   {"stops-in-the-cv": "STOPS", "one-at-a-time": "ONE_AT_A_TIME"}, "stops_in_the_cv:emulator")
    rig = yaml.safe_load((EXAMPLES / "lab-grade.yaml").read_text())["instruments"]
    return _lab_grade(tmp_path, experiments, instruments={"potentiostat": {**rig["potentiostat"], "driver": driver}})


def _ended_early(labloop, store: Path, experiment_id: int) -> tuple[dict, list[dict]]:
    """The lab record of the experiment's current attempt, and ``labloop log --json``'s events of that experiment,
    after checking that ``labloop log`` shows the record's line."""
    with Journal.open(store, readonly=True) as journal:
        record = journal.lab_record(experiment_id)
    assert record is not None
    events = [e for e in json.loads(labloop("log", store, "--json").stdout)["events"]
              if e["experiment_id"] == experiment_id]
    [lab] = [e for e in events if e["kind"] == "lab"]  # once
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}  # piped, as a person's `| grep` reads it
    shown = subprocess.run([sys.executable, "-m", "labloop.orchestrator.cli.main", "log", store], env=env,
                           capture_output=True, text=True, check=True).stdout
    assert re.search(rf"│ lab\s+│ {re.escape(lab['message'])}\s+│", shown), shown
    return record, events


@pytest.mark.parametrize("driver", ["stops-in-the-cv", "one-at-a-time"])
def test_a_potentiostat_lost_in_the_third_scan_rate_keeps_what_the_attempt_measured(tmp_path, labloop,
                                                                                     install_plugin, driver):
    """The potentiostat's USB link drops during the cv's third scan rate: the experiment failed, and its purge, blank,
    impedance (Ru) and the two rates it had scanned were lost (no lab event, the report's voltammograms.csv without a
    curve of it), though a chemist judges the failure, and the cell, by them. They are journalled as the attempt's lab
    event, once, before its failure, and the report writes the blank and both scans (status failed). The rates are
    scanned one script each as the cell rests before each (the example's rest_s), or, without a rest, by a driver
    that has no run_cv_series."""
    campaign = _stopping_in_the_cv(tmp_path, install_plugin, "link.hang_up()\n                return", driver=driver)
    if driver == "one-at-a-time":
        protocol = tmp_path / "protocols" / "cv_lab_grade.yaml"
        protocol.write_text(protocol.read_text().replace(" rest_s: 10,", ""))
        assert "rest_s: " not in protocol.read_text()
    result = labloop("run", campaign, "--dry-run")
    assert result.returncode == 1, result.stderr
    store = tmp_path / "runs" / "cathode-screen-lab-grade.db"
    with Journal.open(store, readonly=True) as journal:
        [experiment] = journal.experiments()
    assert experiment.status == State.FAILED and experiment.cause.startswith("potentiostat (cv): Disconnected: ")
    record, events = _ended_early(labloop, store, experiment.id)
    assert [e["kind"] for e in events] == ["started", "lab", "failed"]
    assert record["purged_minutes"] == 10 and [b["result"]["flags"] for b in record["blanks"]] == [[]]
    assert [s["scan_rate_v_s"] for s in record["scans"]] == [0.1, 0.2] and record["standard_scan"] is None
    assert events[1]["message"] == (f"lab-grade CV: purged 10 min, blank clean, Ru {record['ru']['ru_ohm']:.0f} ohm, "
                                    "2 scan rates")
    assert labloop("report", store, "-o", tmp_path / "report").returncode == 0
    scans = _csv_scans(tmp_path / "report" / "voltammograms.csv", experiment.id)
    assert [(role, status) for role, status, _ in scans] == [("blank", "failed"), ("analyte", "failed"),
                                                             ("analyte", "failed")]
    measured = [record["blanks"][0]["voltammogram"], *(s["voltammogram"] for s in record["scans"])]
    for (_, _, currents), voltammogram in zip(scans, measured, strict=True):
        assert currents == pytest.approx(voltammogram["current_a"], rel=1e-5)


def test_a_ctrl_c_in_the_cv_keeps_what_the_attempt_measured_and_the_resume_measures_it_again(tmp_path, labloop,
                                                                                               install_plugin):
    """A Ctrl-C (a real SIGINT, sent as the cv's third scan rate starts) interrupted the experiment with what it had
    measured lost. Its lab record is journalled before the interruption (the report's CSV has its scans,
    interrupted), and the resume runs the experiment again as before: a new attempt, whose own record the report
    then shows, the interrupted one's staying among the journal's events."""
    campaign = _stopping_in_the_cv(tmp_path, install_plugin, "os.kill(os.getpid(), signal.SIGINT)", experiments=2)
    result = labloop("run", campaign, "--dry-run")
    assert result.returncode == 130, result.stderr
    store = tmp_path / "runs" / "cathode-screen-lab-grade.db"
    with Journal.open(store, readonly=True) as journal:
        [experiment] = journal.experiments(states=(State.INTERRUPTED,))
    record, events = _ended_early(labloop, store, experiment.id)
    assert [e["kind"] for e in events] == ["started", "lab", "interrupted"]
    assert [s["scan_rate_v_s"] for s in record["scans"]] == [0.1, 0.2]
    assert labloop("report", store, "-o", tmp_path / "report").returncode == 0
    assert [(role, status) for role, status, _ in _csv_scans(tmp_path / "report" / "voltammograms.csv",
                                                             experiment.id)] == [
        ("blank", "interrupted"), ("analyte", "interrupted"), ("analyte", "interrupted")]

    resumed = labloop("resume", store, "--cell-emptied")
    assert resumed.returncode == 0, resumed.stderr
    with Journal.open(store, readonly=True) as journal:
        [again] = [e for e in journal.experiments() if e.id == experiment.id]
        record = journal.lab_record(experiment.id)
        labs = [e.data["attempt"] for e in journal.events() if e.kind == "lab" and e.experiment_id == experiment.id]
    assert (again.status, again.attempt) == (State.DONE, 2) and labs == [1, 2]
    assert record["attempt"] == 2 and len(record["scans"]) == 4
    assert labloop("report", store, "-o", tmp_path / "report").returncode == 0
    assert [(role, status) for role, status, _ in _csv_scans(tmp_path / "report" / "voltammograms.csv", again.id)] == [
        ("blank", "done"), *[("analyte", "done")] * 4, ("analyte + ferrocene", "done")]


def test_an_analyte_its_first_scan_missed_is_not_swapped_with_ferrocene(tmp_path, labloop):
    """The example's rig on a reduction screen (an electrochemist's trial, cv -0.3 to -1.7 V and back to 0.4 V):
    this molecule's cathodic peak sits at the -1.7 V vertex, so the scan before the standard shows its return
    peak alone (no E1/2). The analyte was then looked for in the middle of the window (-0.65 V), where ferrocene
    (-0.03 V) is nearer than the analyte (-1.64 V): the couples were swapped and 4.81 V was reported for a
    molecule at 1.58 V. Ferrocene is the couple that was not there before the standard went in."""
    smiles = "N#Cc1cccc(Oc2ccnc3ccccc23)c1C#N"
    library = (EXAMPLES / "library.csv").read_text().splitlines()
    (tmp_path / "library.csv").write_text("\n".join([library[0], *[r for r in library if r.startswith(smiles + ",")]]))
    campaign = yaml.safe_load((EXAMPLES / "lab-grade.yaml").read_text())
    del campaign["prior"], campaign["surrogate"]
    protocol = yaml.safe_load((EXAMPLES / "protocols" / "cv_lab_grade.yaml").read_text())
    for step in protocol:  # the trial's windows
        if isinstance(step, dict) and {"blank", "cv"} & set(step):
            step.get("blank", step.get("cv")).update(
                {"e_begin_v": 0.0, "e_vertex1_v": -1.7, "e_vertex2_v": 0.5} if "blank" in step else
                {"e_begin_v": -0.3, "e_vertex1_v": -1.7, "e_vertex2_v": 0.4})
    campaign["world"]["truth"]["solvent"] = "acn"  # the trial's world, which puts this molecule's wave at the vertex
    campaign.update(store="runs/red.db", objective={"quantity": "reduction_potential", "goal": "window",
                                                    "window_v": [1.5, 2.0]},
                    planner={"kind": "random", "batch_size": 1}, budget={"max_experiments": 1}, protocol=protocol)
    (tmp_path / "red.yaml").write_text(yaml.safe_dump(campaign, sort_keys=False))
    result = labloop("run", tmp_path / "red.yaml", "--dry-run")
    assert result.returncode == 0, result.stderr

    truth = build_world(load_campaign(tmp_path / "red.yaml")).truth_v(smiles)
    with Journal.open(tmp_path / "runs" / "red.db", readonly=True) as journal:
        (experiment,) = journal.experiments()
        lab = journal.lab_record(experiment.id)
    assert lab is not None and lab["scans"][0]["analysis"]["e_half_v"] is None  # the finding's path
    referenced = lab["referenced"]
    if experiment.potential_v is None:  # no potential, and said why: no standard, or none needed it (found, clear)
        assert ("no_standard" in referenced["flags"]) == (referenced["problem"] is not None)
        assert referenced["problem"] or referenced["standard"]["e_half_v"] is not None
    else:  # vs ferrocene, the truth to within the world's 10 mV noise
        assert abs(experiment.potential_v - truth) < 0.03, (experiment.potential_v, truth)
        assert abs(referenced["standard"]["e_half_v"] - (3.2 - 3.23)) < 0.03  # ferrocene's couple, as emulated


def test_an_analyte_without_a_wave_fails_for_it_not_for_the_standard(tmp_path, labloop):
    """Hexane (redox-inactive: no wave in the window) and a molecule whose wave lies beyond the window, on the
    lab-grade example: each failed ``no_peak, no_standard`` / ``beyond_window, no_standard`` while its cause said
    ferrocene was found "at -0.030 V" (a chemist's trial; experiments 23 and 29 of the example's dry run), and
    without saying against what. The flags now say what happened: no analyte wave, ferrocene fine, and the cause
    says where ferrocene was found, vs the reference."""
    _lab_grade(tmp_path, experiments=2)
    (tmp_path / "library.csv").write_text("smiles,ie_ev,ea_ev\nCCCCCC,10.13,-1.5\n"
                                          "N#Cc1ccc(C#N)c2c1-c1cccc3cccc-2c13,8.245936,1.482288\n")
    assert labloop("run", tmp_path / "lab.yaml", "--dry-run").returncode == 0
    store = tmp_path / "runs" / "cathode-screen-lab-grade.db"
    with Journal.open(store, readonly=True) as journal:
        failed = {e.smiles: e for e in journal.experiments()}
        records = {smiles: journal.lab_record(e.id) for smiles, e in failed.items()}
    assert {smiles: (e.status, e.flags) for smiles, e in failed.items()} == {
        "CCCCCC": (State.FAILED, ["no_peak"]),
        "N#Cc1ccc(C#N)c2c1-c1cccc3cccc-2c13": (State.FAILED, ["beyond_window"])}
    found = re.compile(r"ferrocene found at -0\.0\d\d V vs the reference \(expected at \+0\.000 V\)")
    for smiles, experiment in failed.items():
        said = found.search(experiment.cause)
        assert said and experiment.cause.endswith(f"({said[0]}: the standard was fine)"), experiment.cause
        assert "no_standard" not in experiment.cause and "one couple only" not in experiment.cause
        referenced = records[smiles]["referenced"]
        assert referenced["problem"] is None and "no_standard" not in referenced["flags"]
    logged = json.loads(labloop("log", store, "--json").stdout)
    summaries = [e["message"] for e in logged["events"] if e["kind"] == "lab"]
    assert len(summaries) == 2 and all(found.search(m) and m.endswith(", no couple of the analyte to reference to it")
                                       for m in summaries), summaries
    assert labloop("report", store, "-o", tmp_path / "report").returncode == 0
    page = (tmp_path / "report" / "index.html").read_text()
    assert page.count(" V vs the reference; no analyte couple</td>") == 2
    with (tmp_path / "report" / "lab_grade.csv").open() as handle:
        assert {r["standard_problem"] for r in csv.DictReader(handle)} == {""}  # nothing wrong with the standard


def test_ferrocene_sits_where_the_campaign_says_and_puts_the_analyte_on_the_li_scale(tmp_path, labloop):
    """``cell.ferrocene_vs_li_v``: Fc+/Fc vs Li/Li+ was fixed at 3.20 V (a carbonate electrolyte's), so a lab in
    acetonitrile or with its own measured value had every ferrocene-referenced potential off by the difference and
    no field to say it (a chemist's trial). The dry run's ferrocene sits at the campaign's value, the analysis looks
    for it there, and E vs Li/Li+ is E vs Fc+/Fc plus that value, the truth to within the world's noise."""
    _lab_grade(tmp_path, cell={"ferrocene_vs_li_v": 3.35})
    result = labloop("run", tmp_path / "lab.yaml", "--dry-run")
    assert result.returncode == 0, result.stderr
    world = build_world(load_campaign(tmp_path / "lab.yaml"))
    with Journal.open(tmp_path / "runs" / "cathode-screen-lab-grade.db", readonly=True) as journal:
        [done] = journal.experiments(states=(State.DONE,))
        referenced = journal.lab_record(done.id)["referenced"]
    assert referenced["ferrocene_vs_li_v"] == 3.35
    assert referenced["e_vs_li_v"] == referenced["e_vs_fc_v"] + 3.35 == done.potential_v
    assert abs(done.potential_v - world.truth_v(done.smiles)) < 0.025
    # the report says the potential rests on ferrocene and the value it was converted with
    store = tmp_path / "runs" / "cathode-screen-lab-grade.db"
    assert _scales(labloop, store, tmp_path / "report") == ({FERROCENE_SCALE.format(3.35)},) * 2
    # written in mV, it is one line with the hint
    campaign = yaml.safe_load((tmp_path / "lab.yaml").read_text())
    campaign["cell"]["ferrocene_vs_li_v"] = 3350
    (tmp_path / "mv.yaml").write_text(yaml.safe_dump(campaign, sort_keys=False))
    refused = labloop("validate", tmp_path / "mv.yaml", "--dry-run")
    assert refused.returncode == 2 and "cell.ferrocene_vs_li_v: 3350 V vs Li/Li+ is no place for ferrocene's " \
        "couple (2.5..4.5 V; 3.2 in carbonates): millivolts written as volts? (3.35)" in refused.stderr, refused.stderr


def test_ferrocene_found_far_from_where_the_offset_puts_it_says_the_offset_is_wrong(tmp_path, labloop):
    """A cell.reference_offset_v 300 mV off (an Ag/AgCl value for an electrode at 3.15 V vs Li/Li+) passed in
    silence, ferrocene found 300 mV from where it was looked for in every experiment (a chemist's trial): the
    ferrocene-referenced potentials were right, but the safety window, the oxygen band and the bounds went through
    the offset. The run says so once, with the offset ferrocene implies."""
    _lab_grade(tmp_path, 2, cell={"reference_offset_v": 3.45}, world={"reference_offset_v": 3.15})
    result = labloop("run", tmp_path / "lab.yaml", "--dry-run")
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if "ferrocene's couple lies" in line]
    assert len(said) == 1, result.stderr  # once a run, not in every experiment
    implied = re.search(r"by ferrocene, the reference sits at (\d\.\d{3}) V vs Li/Li\+", said[0])
    assert implied is not None and abs(float(implied[1]) - 3.15) < 0.02, said
    assert "above where cell.reference_offset_v (3.450 V) and cell.ferrocene_vs_li_v (3.200 V) put it (-0.250 V)" \
        in said[0]
    with Journal.open(tmp_path / "runs" / "cathode-screen-lab-grade.db", readonly=True) as journal:
        done = journal.experiments(states=(State.DONE,))
        found = [a.params["standard_v_vs_reference"] for e in done for a in journal.actions(e.id)
                 if a.command == "add_standard"]
        warned = journal.events(kinds=[WARNING])
    assert found and all(abs(v - 0.05) < 0.02 for v in found), found  # 3.20 - 3.15 V, journalled with the step
    # journalled as said, with its experiment, so `labloop log` shows it after the console has scrolled it away
    journalled = [e.message for e in warned if "ferrocene's couple lies" in e.message]
    assert len(journalled) == 1 and journalled[0] in said[0], (warned, said)
    assert all(e.experiment_id in {d.id for d in done} for e in warned), warned
    first = next(e for e in warned if "ferrocene's couple lies" in e.message)
    assert first.data == {"warning": "reference_elsewhere", "for_later_experiments": True}
    store = tmp_path / "runs" / "cathode-screen-lab-grade.db"
    with Journal.open(store) as writer:  # one more of the first experiment's own, as the runner journals them
        writer.add_event(WARNING, "sample S1: of its own", data={"warning": "no_diffusion",
                                                                "for_later_experiments": False},
                         experiment_id=first.experiment_id)
        for count in ("dilution A", "dilution B"):  # said again as it changed: the newer stands in for the older
            writer.add_event(WARNING, f"sample S1: {count}", experiment_id=first.experiment_id,
                             data={"warning": "dilution", "for_later_experiments": True})
    # the last experiment listed alone: the warning said once a run, of the first, stands for it and is shown,
    # marked so, as the newest dilution is; the first experiment's own and the older dilution are counted, with how
    # to list them
    shown = labloop("log", store, "--last", "1")
    text = " ".join(shown.stdout.split())
    assert shown.returncode == 0 and "warnings about the experiments shown" in text, shown.stdout
    table = text.split("warnings about the experiments shown")[1].split("recent events")[0]
    assert f"from {first.experiment_id}" in table and "of its own" not in table, shown.stdout
    assert "dilution B" in table and "dilution A" not in table, shown.stdout
    others = len(warned) + 2 - sum(e.experiment_id == done[-1].id or e.data["for_later_experiments"] for e in warned)
    assert f"{others} more warning{'s' if others > 1 else ''} about experiments not shown: --last 2 shows all" in table


def test_a_standard_scan_beyond_the_limits_names_the_offset_it_comes_from(tmp_path, labloop):
    """cell.reference_offset_v written vs Fc (-0.08) put ferrocene's scan at 3.63 V vs the reference, refused as
    'protocol[7].add_standard: potential 3.63 V is outside the window -1.7..2 V', which sent a chemist to the protocol
    (a trial): the line now says where the scan's reach comes from, and asks about the offset's scale."""
    _lab_grade(tmp_path, 30, cell={"reference_offset_v": -0.08})  # the example's budget
    refused = labloop("validate", tmp_path / "lab.yaml", "--dry-run")
    assert refused.returncode == 2, refused.stderr
    [line] = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert "add_standard: potential 3.63 V is outside the window -1.7..2 V (ferrocene's scan reaches 0.35 V beyond " \
           "where it is expected, +3.280 V vs the reference: cell.ferrocene_vs_li_v 3.2 V - " \
           "cell.reference_offset_v -0.08 V); ferrocene itself lies outside the limits there: is " \
           "cell.reference_offset_v written against another electrode than Li/Li+ (vs Fc+/Fc, SCE, Ag/AgCl)?" in line
    assert "Traceback" not in refused.stderr


def test_another_standard_than_ferrocene_puts_the_analyte_on_the_fc_scale(tmp_path, labloop):
    """An analyte within 200 mV of ferrocene cannot be told apart from it (a phenothiazine catholyte: every such
    experiment failed no_standard, a chemist's trial): add_standard takes another standard, named, with where it
    sits vs Fc+/Fc. The dry run's standard sits there, the scan is widened around it, and E vs Li/Li+ is
    E(analyte) - E(standard) + standard_vs_fc_v + cell.ferrocene_vs_li_v, the truth within the world's noise; a
    standard but ferrocene without its place is one line naming the field."""
    _lab_grade(tmp_path, 2)
    protocol = tmp_path / "protocols" / "cv_lab_grade.yaml"
    written = protocol.read_text()
    standard = "- add_standard: {pump: standard_pump, volume_ml: 0.1, rate_ml_min: 0.5, refill: true"
    assert standard + "}" in written
    protocol.write_text(written.replace(standard + "}", standard + ", standard: decamethylferrocene, "
                                        "standard_vs_fc_v: -0.5}"))
    assert "decamethylferrocene" in protocol.read_text() and "add_standard" in protocol.read_text()
    result = labloop("run", tmp_path / "lab.yaml", "--dry-run")
    assert result.returncode == 0, result.stderr
    world = build_world(load_campaign(tmp_path / "lab.yaml"))
    with Journal.open(tmp_path / "runs" / "cathode-screen-lab-grade.db", readonly=True) as journal:
        done = journal.experiments(states=(State.DONE,))
        assert done, result.stderr
        for experiment in done:
            referenced = journal.lab_record(experiment.id)["referenced"]
            assert (referenced["standard_name"], referenced["standard_vs_fc_v"]) == ("decamethylferrocene", -0.5)
            placed = referenced["standard"]["e_half_v"]  # 3.2 - 0.5 V vs Li/Li+ on a reference at 3.23 V
            assert abs(placed - (3.2 - 0.5 - 3.23)) < 0.025, placed
            assert abs(experiment.potential_v - world.truth_v(experiment.smiles)) < 0.025
    # the report names the standard the potentials rest on, where it was taken to sit, and the conversion's value
    said = ("vs Fc+/Fc through decamethylferrocene measured in the cell (taken to sit at -0.5 V vs Fc+/Fc), converted "
            "with cell.ferrocene_vs_li_v = 3.2 V")
    assert _scales(labloop, tmp_path / "runs" / "cathode-screen-lab-grade.db", tmp_path / "report") == ({said},) * 2
    protocol.write_text(written.replace(standard + "}", standard + ", standard: cobaltocenium}"))
    refused = labloop("validate", tmp_path / "lab.yaml", "--dry-run")
    assert refused.returncode == 2 and "add_standard.standard_vs_fc_v: missing: where cobaltocenium's couple sits " \
        "vs Fc+/Fc in this electrolyte, in V" in refused.stderr, refused.stderr
    protocol.write_text(written.replace(standard + "}", standard + ", standard: cobaltocenium, "
                                        "standard_vs_fc_v: -1330}"))
    refused = labloop("validate", tmp_path / "lab.yaml", "--dry-run")
    assert refused.returncode == 2 and "standard_vs_fc_v: -1330 V is outside the places of a standard vs Fc+/Fc, " \
        "-2..1 V: mV written as V? (-1.33 V)" in refused.stderr, refused.stderr


def test_a_scan_rate_given_twice_is_refused_before_anything_opens(tmp_path, labloop):
    """scan_rates_v_s [0.1, 0.1, 0.1] validated (exit 0) and the run reported a D fitted through one point of the
    ip-vs-sqrt(v) line, r^2 0 (an electrochemist's trial): validate and run refuse it in one line naming the field,
    exit 2, before the store is made or an instrument opened."""
    _lab_grade(tmp_path, 2)
    protocol = tmp_path / "protocols" / "cv_lab_grade.yaml"
    written = protocol.read_text()
    for rates, given in (("[0.1, 0.1, 0.1]", "0.1 V/s 3 times"), ("[0.1, 0.2, 0.5, 0.2]", "0.2 V/s 2 times")):
        protocol.write_text(written.replace("scan_rates_v_s: [0.1, 0.2, 0.5, 1.0]", f"scan_rates_v_s: {rates}"))
        assert protocol.read_text() != written
        for command in ("validate", "run"):
            refused = labloop(command, tmp_path / "lab.yaml", "--dry-run")
            assert refused.returncode == 2, refused.stderr
            [line] = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
            assert re.search(r"cv_lab_grade\.yaml:\d+: protocol\[6\]\.cv\.scan_rates_v_s: gives " + re.escape(given) +
                             ": D's Randles-Sevcik fit needs each rate once", line), line
            assert not (tmp_path / "runs").exists()  # nothing opened, no journal made


def test_d_follows_the_sample_stock_when_the_protocol_changes_its_volumes(tmp_path, labloop):
    """An electrochemist halved the sample's dispense (0.25 mL of the 10 mM stock into a 4.75 mL cell, 0.53 mM) and
    kept analyte_mm 1: D came out at 28% of the analyte's, 3.8e-6 for 1.4e-5 cm2/s, with no warning. With the stock
    written (sample_stock_mm, as the example does), validate and run refuse an analyte_mm the protocol's volumes do not
    make, in one line naming both fields and the two numbers, before anything opens; without analyte_mm, D uses the
    concentration the stock makes in the cell by labloop's count, which lab_grade.csv shows beside what it came from,
    and D is the simulated molecule's."""
    _lab_grade(tmp_path, 2)
    protocol = tmp_path / "protocols" / "cv_lab_grade.yaml"
    written = protocol.read_text()
    sample, stated = "volume_ml: 0.5, rate_ml_min: 0.5, fluid: sample", "sample_stock_mm: 10.0, analyte_mm: 1.0}"
    assert sample in written and stated in written  # the example says its stock
    halved = written.replace(sample, "volume_ml: 0.25, rate_ml_min: 0.5, fluid: sample")
    protocol.write_text(halved)
    for command in ("validate", "run"):
        refused = labloop(command, tmp_path / "lab.yaml", "--dry-run")
        assert refused.returncode == 2, refused.stderr
        [line] = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
        assert re.fullmatch(r"error: \S*cv_lab_grade\.yaml:\d+: protocol\[6\]\.cv\.analyte_mm: 1 mM disagrees with "
                            r"sample_stock_mm 10 mM x 0\.25 mL of sample / 4\.75 mL in the cell = 0\.526 mM, the "
                            r"concentration the protocol's volumes make: correct one, or leave analyte_mm out \(D uses "
                            r"the stock's 0\.526 mM\)", line), line
        assert not (tmp_path / "runs").exists()  # refused before a journal or an instrument was opened

    protocol.write_text(halved.replace(stated, "sample_stock_mm: 10.0}"))
    result = labloop("run", tmp_path / "lab.yaml", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "more dilute" not in result.stderr
    store = tmp_path / "runs" / "cathode-screen-lab-grade.db"
    assert labloop("report", store, "-o", tmp_path / "report").returncode == 0
    with (tmp_path / "report" / "lab_grade.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows and {(r["analyte_mM"], r["sample_stock_mM"], r["sample_ml"], r["cell_ml"]) for r in rows} == {
        ("0.5263", "10", "0.25", "4.75")}
    assert float(rows[0]["sample_stock_mM"]) * float(rows[0]["sample_ml"]) / float(rows[0]["cell_ml"]) == \
        pytest.approx(float(rows[0]["analyte_mM"]), rel=1e-4)  # a reviewer recomputes what D used
    world = build_world(load_campaign(tmp_path / "lab.yaml"))
    # D against the simulated molecule's, for a couple reversible at every rate (a slow one's reads low, and the run
    # says so): with analyte_mm 1 kept it was ~0.27
    slow = {r["id"] for r in rows if r["reversibility"] != "reversible"}
    ratios = [float(r["diffusion_cm2_s"]) / world.couple_of(r["smiles"]).diffusion_cm2_s
              for r in rows if r["diffusion_cm2_s"] and r["scan_rate_v_s"] == "0.1" and r["id"] not in slow]
    assert ratios and all(abs(ratio - 1) < 0.1 for ratio in ratios), ratios
    with Journal.open(store, readonly=True) as journal:  # the event log's line says it too (labloop log)
        said = [e.message for e in journal.events() if e.kind == "lab"]
    assert said and all("analyte 0.526 mM (0.25 mL of its 10 mM stock in 4.75 mL)" in line for line in said), said


def test_a_stock_typed_1000_times_too_strong_is_warned_of_keeps_no_d_and_its_stop_names_the_standard(tmp_path,
                                                                                                      labloop):
    """A 1 M stock typed for 10 mM (100 mM in the cell) passed validate; D came out 6.7e-08 cm2/s with k0 values from
    it; ferrocene drowned in the analyte's currents, and the stop after a row of no_standard failures said "check the
    electrodes and the cv window" (a chemist's trial). Now validate warns of the stock, no D is kept, and the stop names
    the standard first."""
    campaign = _lab_grade(tmp_path, experiments=3, budget={"max_consecutive_failed_analyses": 2})
    protocol = tmp_path / "protocols" / "cv_lab_grade.yaml"
    protocol.write_text(protocol.read_text().replace("sample_stock_mm: 10.0, analyte_mm: 1.0}",
                                                     "sample_stock_mm: 1000.0}"))
    result = labloop("run", campaign, "--dry-run")
    assert result.returncode == 1, result.stderr
    assert ("protocol[6].cv.sample_stock_mm: 1000 mM is more analyte than an electrolyte dissolves for a CV"
            in result.stderr), result.stderr
    with Journal.open(tmp_path / "runs" / "cathode-screen-lab-grade.db", readonly=True) as journal:
        records = [journal.lab_record(e.id) for e in journal.experiments(states=(State.FAILED,))]
        (stopped,) = [e.message for e in journal.events() if e.kind == "stopped"]
    assert len(records) == 2 and all(r["diffusion"] is None for r in records), records
    assert all("lies beyond the 1e-07 to 0.0001 cm2/s of a molecule in solution" in r["diffusion_problem"]
               and "(100 mM as used)" in r["diffusion_problem"] for r in records)
    assert stopped == ("2 unusable voltammograms in a row; campaign stopped (budget.max_consecutive_failed_analyses): "
                       "none of them found the internal standard where the campaign puts it: check its syringe and "
                       "stock (the add_standard step), cell.ferrocene_vs_li_v and the analyte's concentration; then "
                       "check the electrodes and the cv window"), stopped


def test_an_unstable_molecules_failure_gives_its_potential_through_the_ferrocene(tmp_path, labloop):
    """A chemically irreversible failure said the E1/2 on the nominal reference (4.532 V) where potential_v and the
    report, through the ferrocene added, said 4.560 V (a chemist's trial)."""
    lab = _lab_grade(tmp_path, budget={"max_consecutive_failed_analyses": 3}, world={"unstable_share": 1.0})
    result = labloop("run", lab, "--dry-run")
    assert result.returncode in (0, 1), result.stderr
    with Journal.open(tmp_path / "runs" / "cathode-screen-lab-grade.db", readonly=True) as journal:
        failed = [(e.cause, e.potential_v) for e in journal.experiments(states=(State.FAILED,))]
    said = [(re.search(r"its E1/2 read (\d\.\d{3}) V vs Li/Li\+ through the ferrocene added\)", cause), potential)
            for cause, potential in failed if "chemically_irreversible" in cause]
    assert said and all(m is not None and float(m[1]) == pytest.approx(potential, abs=5e-4) for m, potential in said), \
        failed


def test_a_dry_run_of_two_electron_couples_says_what_the_protocol_should_assume(tmp_path, labloop):
    """``world.n_electrons: 2`` rehearses couples that take two electrons in one wave: validate's summary says so, a
    protocol whose cv analyses them as one electron's is told, once, what to write (instruments/cv_analysis.py
    more_electrons), and a cv's n_electrons beyond three is refused in one line naming it."""
    lab = _lab_grade(tmp_path, world={"n_electrons": 2})
    checked = labloop("validate", lab, "--dry-run")
    assert checked.returncode == 0, checked.stderr
    assert ", 2 electrons in each molecule's wave (world.n_electrons)" in checked.stdout, checked.stdout
    result = labloop("run", lab, "--dry-run")
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if "electrons in one wave" in line]
    assert len(said) == 1 and "then say n_electrons: 2 in the cv step" in said[0], result.stderr
    store = tmp_path / "runs" / "cathode-screen-lab-grade.db"
    with Journal.open(store, readonly=True) as journal:  # kept for the report, as said (its experiment's)
        warned = [e for e in journal.events(kinds=[WARNING]) if "electrons in one wave" in e.message]
        ids = {e.id for e in journal.experiments()}
    assert len(warned) == 1 and warned[0].message in said[0] and warned[0].experiment_id in ids, warned
    assert labloop("report", store, "-o", tmp_path / "report").returncode == 0
    page = (tmp_path / "report" / "index.html").read_text()
    assert "<h2>warnings about the measurements</h2>" in page and html.escape(warned[0].message) in page
    protocol = tmp_path / "protocols" / "cv_lab_grade.yaml"
    protocol.write_text(protocol.read_text().replace("analyte_mm: 1.0}", "analyte_mm: 1.0, n_electrons: 4}"))
    refused = labloop("validate", lab, "--dry-run")
    assert refused.returncode == 2 and "n_electrons" in refused.stderr and "3" in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
