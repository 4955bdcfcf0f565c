"""The chunked library pipeline in this process, and the pool planner over its shards: every reader gives the
same chunks, predictions equal the ensemble's own, shards are reused per model version and never written
halfway, and the shard planner proposes exactly what the in-memory pool planner proposes."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rdkit import Chem

from labloop.core.errors import InvalidInput
from labloop.planners.base import Observation, PlannerState
from labloop.planners.conditions import ConditionSpace
from labloop.planners.feedback import CalibratedModel, DescriptorTable
from labloop.planners.pool import PoolPlanner
from labloop.planners.shard_pool import ShardPoolPlanner, describe
from labloop.surrogate.library_pipeline import count_rows, predict_library, read_chunks, row_lines, write_shard

INVALID = {17: "C1CC", 90: "not-a-smiles"}


@pytest.fixture(scope="module")
def smiles(ocelot) -> list[str]:
    """250 molecules the tiny model never saw, two invalid ones and a duplicate."""
    out = ocelot["smiles"].iloc[400:650].tolist()
    for row, text in INVALID.items():
        out.insert(row, text)
    out.append(out[5])
    return out


@pytest.fixture(scope="module")
def library(smiles, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lib") / "library.csv"
    pd.DataFrame({"name": [f"m{i}" for i in range(len(smiles))], "smiles": smiles}).to_csv(path, index=False)
    return path


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LABLOOP_CACHE_DIR", str(tmp_path / "cache"))


def _write(kind: str, smiles: list[str], folder: Path) -> Path:
    frame = pd.DataFrame({"smiles": smiles, "name": [f"m{i}" for i in range(len(smiles))]})
    if kind == "csv.gz":
        path = folder / "lib.csv.gz"
        frame.to_csv(path, index=False)
    elif kind == "parquet":
        path = folder / "lib.parquet"
        pq.write_table(pa.Table.from_pandas(frame), path, row_group_size=100)
    elif kind == "smi":
        path = folder / "lib.smi"
        path.write_text("smiles name\n" + "".join(f"{s} m{i}\n" for i, s in enumerate(smiles)))
    else:
        path = folder / "lib.smi.gz"
        with gzip.open(path, "wt") as fh:
            fh.writelines(f"{s}\tm{i}\n" for i, s in enumerate(smiles))
    return path


@pytest.mark.parametrize("kind", ["csv.gz", "parquet", "smi", "smi.gz"])
def test_every_format_gives_the_csv_chunks(kind, smiles, library, tmp_path):
    expected = list(read_chunks(library, chunk_size=70))
    assert [len(c.smiles) for c in expected] == [70, 70, 70, 43]
    chunks = list(read_chunks(_write(kind, smiles, tmp_path), chunk_size=70))
    assert [(c.index, c.start, c.smiles) for c in chunks] == [(c.index, c.start, c.smiles) for c in expected]
    assert sum(len(c.smiles) for c in chunks) == len(smiles) == count_rows(tmp_path / next(
        p.name for p in tmp_path.iterdir()))


def test_a_smi_file_or_a_csvs_name_column_names_its_molecules_and_other_formats_do_not(smiles, library, tmp_path):
    """A .smi line's name is the rest of the line (spaces and all), "" without one; a CSV's ``name`` column (any
    case) names its rows ("" for an empty cell: a lab's trial got predictions of its named CSV library without its
    names); a CSV without one, and Parquet, give no names."""
    path = tmp_path / "named.smi"
    path.write_text("SMILES Name\nCCO ethanol\nc1ccccc1\nCCN\tethyl amine (free base)  \n")
    chunks = list(read_chunks(path, chunk_size=2))
    assert [(c.smiles, c.names) for c in chunks] == [(["CCO", "c1ccccc1"], ["ethanol", ""]),
                                                      (["CCN"], ["ethyl amine (free base)"])]
    assert [c.names[:2] for c in read_chunks(library, chunk_size=100)][:2] == [["m0", "m1"], ["m100", "m101"]]
    unnamed = tmp_path / "unnamed.csv"
    unnamed.write_text("smiles\nCCO\n")
    assert {c.names for c in read_chunks(unnamed, chunk_size=100)} == {None}
    assert {c.names for c in read_chunks(_write("parquet", smiles, tmp_path), chunk_size=100)} == {None}
    named = tmp_path / "named.csv"
    named.write_text("ID,Name,SMILES\n7,ethanol,CCO\n8,,c1ccccc1\n9,\"ethyl amine, free base\",CCN\n")
    assert [(c.smiles, c.names) for c in read_chunks(named, chunk_size=2)] == [
        (["CCO", "c1ccccc1"], ["ethanol", ""]), (["CCN"], ["ethyl amine, free base"])]


def test_a_smi_files_blank_lines_and_comments_are_no_rows_and_lines_stay_right(tmp_path):
    """Blank lines and ``#`` comments, common in .smi files, were read as rows (each an invalid SMILES), and
    a header after a comment as a molecule; every row's line is still the line it is on."""
    path = tmp_path / "commented.smi"
    path.write_text("# made by hand\n\nsmiles name\nCCO ethanol\n   \n# the ring is broken\nC1CC broken\n"
                    "\t# not a molecule either\nc1ccccc1\n\n")
    chunks = list(read_chunks(path, chunk_size=2))
    assert [(c.start, c.smiles, c.names) for c in chunks] == [(0, ["CCO", "C1CC"], ["ethanol", "broken"]),
                                                              (2, ["c1ccccc1"], [""])]
    assert count_rows(path) == 3
    line = row_lines(path)
    assert [line(row) for row in range(3)] == [4, 7, 9]
    bare = tmp_path / "bare.smi"  # no header, nothing skipped: row + 1
    bare.write_text("CCO\nC1CC\n")
    assert [row_lines(bare)(row) for row in range(2)] == [1, 2]
    assert row_lines(tmp_path / "library.csv")(0) == row_lines(tmp_path / "library.txt")(0) == 2  # read as CSV


def test_bad_libraries_are_named_in_one_line(tmp_path, smiles):
    no_column = tmp_path / "x.csv"
    no_column.write_text("name,ie\na,1\n")
    parquet = tmp_path / "x.parquet"
    pq.write_table(pa.table({"mol": ["C"]}), parquet)
    unknown = tmp_path / "x.sdf"
    unknown.write_text("")
    for path, needle in [(no_column, "no column 'smiles'"), (parquet, "no column 'smiles'"),
                         (unknown, "unknown library format"), (tmp_path / "nope.csv", "no such file")]:
        with pytest.raises(InvalidInput, match=needle) as info:
            count_rows(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_in_process_predictions_equal_the_ensembles(tiny_model_dir, library, smiles, tmp_path):
    from labloop.surrogate.persistence import load_ensemble

    shards = predict_library(library, tiny_model_dir, tmp_path, chunk_size=64)
    frame = pd.concat(shards.frames(), ignore_index=True)
    assert shards.n_rows == shards.n_predicted == len(smiles) and len(shards.paths) == 4
    assert frame["row"].tolist() == list(range(len(smiles))) and frame["smiles"].tolist() == smiles
    assert shards.invalid() == sorted(INVALID.items())
    pred = load_ensemble(tiny_model_dir).predict(smiles)
    valid = frame[frame["valid"]]
    assert valid["row"].tolist() == pred.rows.tolist()
    # the network computes in float32 and a 64-row chunk may take another matmul kernel than the whole batch:
    # predictions near 0 eV then differ in the 8th decimal, so a micro-eV of absolute slack besides the relative
    for j, target in enumerate(pred.targets):
        np.testing.assert_allclose(valid[f"{target}_mean"], pred.mean[:, j], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(valid[f"{target}_std"], pred.std[:, j], rtol=1e-6, atol=1e-6)
    assert valid["canonical"].tolist() == [Chem.MolToSmiles(Chem.MolFromSmiles(s)) for s in valid["smiles"]]
    assert frame.loc[~frame["valid"], "ie_ev_mean"].isna().all()


def test_a_rerun_predicts_nothing_and_a_new_model_version_everything(tiny_model_dir, library, tmp_path):
    first = predict_library(library, tiny_model_dir, tmp_path / "shards", chunk_size=100)
    stamps = [p.stat().st_mtime_ns for p in first.paths]
    again = predict_library(library, tiny_model_dir, tmp_path / "shards", chunk_size=100)
    assert again.n_predicted == 0 and again.paths == first.paths
    assert [p.stat().st_mtime_ns for p in again.paths] == stamps
    retrained = shutil.copytree(tiny_model_dir, tmp_path / "retrained")
    manifest = json.loads((retrained / "manifest.json").read_text())
    (retrained / "manifest.json").write_text(json.dumps({**manifest, "round": 2}))
    new = predict_library(library, retrained, tmp_path / "shards", chunk_size=100)
    assert new.version != first.version and new.n_predicted == new.n_rows
    assert new.directory != first.directory and all(p.is_file() for p in first.paths)


class Stop(Exception):
    pass


def test_an_interrupted_run_leaves_whole_shards_and_resumes(tiny_model_dir, library, smiles, tmp_path):
    seen = []

    def stop_after_two(k: int) -> None:
        seen.append(k)
        if len(seen) == 2:
            raise Stop

    with pytest.raises(Stop):
        predict_library(library, tiny_model_dir, tmp_path, chunk_size=64, progress=stop_after_two)
    [directory] = tmp_path.iterdir()
    files = sorted(directory.iterdir())
    assert [f.suffix for f in files] == [".parquet", ".parquet"]
    assert [len(pq.read_table(f)) for f in files] == [64, 64]
    rest = predict_library(library, tiny_model_dir, tmp_path, chunk_size=64)
    assert rest.n_predicted == len(smiles) - 128
    assert pd.concat(rest.frames(["row"]))["row"].tolist() == list(range(len(smiles)))


def test_a_failed_shard_write_leaves_no_file(tmp_path):
    with pytest.raises(pa.ArrowException):
        write_shard(pd.DataFrame({"row": [0, 1], "bad": [1, "x"]}), tmp_path / "s" / "part.parquet")
    assert list((tmp_path / "s").iterdir()) == []


SPACE = {"scan_rate_v_s": (0.05, 0.5)}
WINDOW = dict(goal="window", acquisition="window_probability", window_v=(4.5, 4.6))
#: (planner settings, the measurements: none, "few" (6 + a failure) or "groups" (20 molecules whose residual
#: depends on their nitrogens and halogens, + 2 failures: a learner beyond the linear one wins))
SCENARIOS = {
    "window, measured and failed": dict(**WINDOW, observed="few"),
    "window, first batch design": dict(**WINDOW, observed=None),
    "window, thompson, group learner, failures": dict(**WINDOW, observed="groups", batch="thompson"),
    "window, thompson, design then thompson": dict(**WINDOW, observed=None, batch="thompson"),
    "maximise ei, measured": dict(goal="maximize", acquisition="ei", observed="few"),
    "minimise pi, no measurement": dict(goal="minimize", acquisition="pi", observed=None,
                                        first_batch="acquisition"),
    "greedy mean, measured": dict(goal="window", acquisition="mean", window_v=(4.5, 4.6), observed="few"),
    "greedy mean, group learner": dict(goal="window", acquisition="mean", window_v=(4.5, 4.6), observed="groups"),
    "lcb, strict diversity": dict(goal="maximize", acquisition="lcb", observed="few", diversity=0.3),
}


@pytest.fixture(scope="module")
def planner_shards(tiny_model_dir, library, tmp_path_factory):
    return predict_library(library, tiny_model_dir, tmp_path_factory.mktemp("shards"), chunk_size=64,
                           describe=describe)


@pytest.fixture(scope="module")
def objective_model(tiny_model_dir):
    from labloop.orchestrator.learning.models import ObjectiveModel
    from labloop.surrogate.persistence import load_ensemble

    return ObjectiveModel(load_ensemble(tiny_model_dir), 1, "oxidation_potential")


def _observations(kind: str | None, smiles: list[str], model) -> tuple[Observation, ...]:
    if kind is None:
        return ()
    if kind == "few":
        measured = [Observation(s, {"scan_rate_v_s": 0.1}, 3.0 + 0.1 * k, quality=0.8)
                    for k, s in enumerate(smiles[0:6])]
        return (*measured, Observation(smiles[30], {"scan_rate_v_s": 0.2}, None, failure="analysis"))
    chosen = [s for s in smiles[100:200] if Chem.MolFromSmiles(s) is not None][:20]
    mu, _ = model.predict(chosen)
    measured = []
    for s, m in zip(chosen, mu, strict=True):
        mol = Chem.MolFromSmiles(s)
        shift = 1.3 + sum({7: 0.25, 9: -0.2, 17: -0.2, 8: 0.1}.get(a.GetAtomicNum(), 0.0) for a in mol.GetAtoms())
        measured.append(Observation(s, {"scan_rate_v_s": 0.1}, float(m) + shift, quality=0.8))
    failed = [Observation(s, {"scan_rate_v_s": 0.2}, None, failure="analysis") for s in (smiles[31], smiles[60])]
    return (*measured, *failed)


def _case(name: str, smiles: list[str], objective_model) -> tuple[dict, PlannerState, CalibratedModel]:
    scenario = dict(SCENARIOS[name])
    observations = _observations(scenario.pop("observed"), smiles, objective_model)
    state = PlannerState("bayes", seed=3, step=len(observations), observations=observations,
                         pending=(smiles[40],) if observations else ())
    return scenario, state, CalibratedModel(objective_model, observations, DescriptorTable())


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_shard_planner_proposes_what_the_pool_planner_proposes(name, objective_model, planner_shards, smiles):
    """With a shortlist as long as the library, stage 2 sees every molecule: the very same proposals."""
    scenario, state, model = _case(name, smiles, objective_model)
    if name.endswith("group learner") or "group learner," in name:
        assert model.calibration.fit.learner in ("additive", "gp")  # the residual learners are exercised
    pool = PoolPlanner("bayes", smiles, ConditionSpace(SPACE), **scenario)
    shard = ShardPoolPlanner("bayes", lambda version: planner_shards, "ie_ev", ConditionSpace(SPACE),
                             shortlist=len(smiles), **scenario)
    expected, got = pool.propose(state, 4, model), shard.propose(state, 4, model)
    assert len(expected) == 4
    assert [(p.smiles, p.conditions, p.design) for p in got] == [(p.smiles, p.conditions, p.design) for p in expected]
    assert any(p.design for p in got) == ("design" in name)  # design picks marked alike
    for a, b in zip(got, expected, strict=True):
        assert (a.mu, a.sigma, a.acquisition) == pytest.approx((b.mu, b.sigma, b.acquisition), rel=1e-5, abs=1e-9)
        assert a.model_version == b.model_version == 1


@pytest.mark.parametrize("name", ["window, measured and failed", "maximise ei, measured", "lcb, strict diversity",
                                  "window, first batch design"])
def test_a_short_shortlist_is_exact_when_the_descriptors_carry_the_calibration(name, objective_model,
                                                                               planner_shards, smiles):
    """Offset or linear learner: stage 1 is the calibration, so a shortlist of 1 (grown until the batch is
    filled) proposes what the whole pool does."""
    scenario, state, model = _case(name, smiles, objective_model)
    assert model.calibration.fit is None or model.calibration.fit.learner in ("offset", "linear")
    expected = PoolPlanner("bayes", smiles, ConditionSpace(SPACE), **scenario).propose(state, 4, model)
    got = ShardPoolPlanner("bayes", lambda version: planner_shards, "ie_ev", ConditionSpace(SPACE), shortlist=1,
                           **scenario).propose(state, 4, model)
    assert [p.smiles for p in got] == [p.smiles for p in expected]


def test_a_resumed_campaign_gets_the_same_proposal(objective_model, planner_shards, smiles):
    """Same observations, same proposal: from a planner that has proposed before (its fingerprints and
    cached shard columns warm) and from a new one with a model rebuilt from the journal's observations."""
    scenario, state, model = _case("window, thompson, group learner, failures", smiles, objective_model)

    def planner() -> ShardPoolPlanner:
        return ShardPoolPlanner("bayes", lambda version: planner_shards, "ie_ev", ConditionSpace(SPACE),
                                shortlist=40, **scenario)

    running = planner()
    earlier = PlannerState("bayes", seed=3, step=state.step - 1, observations=state.observations[:-3])
    running.propose(earlier, 4, CalibratedModel(objective_model, earlier.observations, DescriptorTable()))
    first = running.propose(state, 4, model)
    restored = PlannerState.from_dict(state.to_dict())
    resumed = planner().propose(restored, 4, CalibratedModel(objective_model, restored.observations,
                                                              DescriptorTable()))
    assert len(first) == 4 and [(p.smiles, p.conditions, p.mu) for p in resumed] == [
        (p.smiles, p.conditions, p.mu) for p in first]
    assert not {p.smiles for p in first} & state.tried


def test_shards_without_the_planners_columns_are_named_in_one_line(tiny_model_dir, library, tmp_path, smiles):
    shards = predict_library(library, tiny_model_dir, tmp_path, chunk_size=100)  # no describe: no descriptors
    planner = ShardPoolPlanner("bayes", lambda version: shards, "ie_ev", ConditionSpace(SPACE), **WINDOW)
    state = PlannerState("bayes", seed=0, step=1, observations=(Observation(smiles[0], {}, 3.0, quality=0.9),))
    with pytest.raises(InvalidInput, match=r"no column 'descriptor_heavy_atoms'.*describe=") as info:
        planner.propose(state, 2, CalibratedModel(_NoModel(), (), DescriptorTable()))
    assert str(shards.paths[0]) in str(info.value) and "\n" not in str(info.value)


class _NoModel:
    """A model view that is never asked: the shards hold the predictions."""

    version = 1

    def predict(self, smiles):
        raise AssertionError("the shard planner asked the model")


def test_a_molecule_written_two_ways_is_proposed_once_as_its_first_row_writes_it(objective_model, tiny_model_dir,
                                                                                  smiles, tmp_path):
    """A chemist's library held anthraquinone written two ways: both rows were proposed and measured, and counted
    as two hits. Every planner, in memory and over shards, now proposes each molecule once, as its first row
    writes it, and none proposes another spelling of a molecule tried before (a journal from before this)."""
    from labloop.planners import RandomPlanner, ScreeningPlanner
    from labloop.surrogate.featurize import canonical_smiles

    first = [s for s in smiles[:80] if Chem.MolFromSmiles(s) is not None][:40]
    again = [Chem.MolToSmiles(Chem.MolFromSmiles(s), doRandom=True, canonical=False) for s in first]
    respelt = [(a, b) for a, b in zip(first, again, strict=True) if a != b]
    assert len(respelt) > 30  # most random spellings differ from the library's
    library = [*first, *again, first[0]]
    path = tmp_path / "twice.csv"
    pd.DataFrame({"smiles": library}).to_csv(path, index=False)
    shards = predict_library(path, tiny_model_dir, tmp_path / "shards", chunk_size=32, describe=describe)
    planners = {  # diversity 1: a molecule like a pending one is not held back (every one is pending here)
        "bayes": PoolPlanner("bayes", library, ConditionSpace(SPACE), diversity=1.0, **WINDOW),
        "bayes over shards": ShardPoolPlanner("bayes", lambda version: shards, "ie_ev", ConditionSpace(SPACE),
                                              shortlist=8, diversity=1.0, **WINDOW),
        "screening": ScreeningPlanner(library, ConditionSpace(SPACE), goal="window", window_v=(4.5, 4.6)),
        "random": RandomPlanner(library, SPACE),
    }
    model = CalibratedModel(objective_model, (), DescriptorTable())
    for name, planner in planners.items():
        proposed: list[str] = []
        for step in range(30):
            batch = planner.propose(PlannerState("bayes", seed=1, step=step, pending=tuple(proposed)), 4, model)
            if not batch:
                break
            proposed += [p.smiles for p in batch]
        # each molecule once; in memory as its first row writes it (random parses only the rows it draws, and the
        # shards' stage 1 keeps the best rows, of either spelling)
        assert sorted(canonical_smiles(proposed)) == sorted(canonical_smiles(first)), name
        assert name in ("random", "bayes over shards") or sorted(proposed) == sorted(first), name
        # a respelling tried (journalled before this) keeps its first spelling from being proposed
        tried = tuple(b for _, b in respelt)
        rest = [p.smiles for p in planner.propose(PlannerState("bayes", seed=1, step=0, pending=tried), 40, model)]
        left = [a for a in first if a not in {a for a, _ in respelt}]
        assert sorted(canonical_smiles(rest)) == sorted(canonical_smiles(left)), name
