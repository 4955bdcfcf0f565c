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
from labloop.surrogate.library_pipeline import count_rows, predict_library, read_chunks, write_shard

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
    for j, target in enumerate(pred.targets):
        np.testing.assert_allclose(valid[f"{target}_mean"], pred.mean[:, j], rtol=1e-6)
        np.testing.assert_allclose(valid[f"{target}_std"], pred.std[:, j], rtol=1e-6)
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
SCENARIOS = {
    "window, measured and failed": dict(goal="window", acquisition="window_probability", window_v=(4.5, 4.6),
                                        observed=True),
    "window, first batch design": dict(goal="window", acquisition="window_probability", window_v=(4.5, 4.6),
                                       observed=False),
    "maximise ei, measured": dict(goal="maximize", acquisition="ei", observed=True),
    "minimise pi, no measurement": dict(goal="minimize", acquisition="pi", observed=False,
                                        first_batch="acquisition"),
    "greedy mean, measured": dict(goal="window", acquisition="mean", window_v=(4.5, 4.6), observed=True),
    "lcb, strict diversity": dict(goal="maximize", acquisition="lcb", observed=True, diversity=0.3),
}


@pytest.fixture(scope="module")
def planner_shards(tiny_model_dir, library, tmp_path_factory):
    return predict_library(library, tiny_model_dir, tmp_path_factory.mktemp("shards"), chunk_size=64,
                           describe=describe)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_shard_planner_proposes_what_the_pool_planner_proposes(name, tiny_model_dir, planner_shards, smiles):
    from labloop.orchestrator.learning.models import ObjectiveModel
    from labloop.surrogate.persistence import load_ensemble

    scenario = dict(SCENARIOS[name])
    observed = scenario.pop("observed")
    observations: tuple[Observation, ...] = ()
    if observed:
        measured = [Observation(s, {"scan_rate_v_s": 0.1}, 3.0 + 0.1 * k, quality=0.8)
                    for k, s in enumerate(smiles[0:6])]
        observations = (*measured, Observation(smiles[30], {"scan_rate_v_s": 0.2}, None, failure="analysis"))
    state = PlannerState("bayes", seed=3, step=len(observations), observations=observations,
                         pending=(smiles[40],) if observed else ())
    model = CalibratedModel(ObjectiveModel(load_ensemble(tiny_model_dir), 1, "oxidation_potential"), observations,
                            DescriptorTable())
    pool = PoolPlanner("bayes", smiles, ConditionSpace(SPACE), **scenario)
    # a shortlist of 1 per shard forces the merge to prove itself exact (and grow when it cannot)
    shard = ShardPoolPlanner("bayes", lambda version: planner_shards, "ie_ev", ConditionSpace(SPACE), shortlist=1,
                             **scenario)
    expected, got = pool.propose(state, 4, model), shard.propose(state, 4, model)
    assert len(expected) == 4
    assert [(p.smiles, p.conditions) for p in got] == [(p.smiles, p.conditions) for p in expected]
    for a, b in zip(got, expected, strict=True):
        assert (a.mu, a.sigma, a.acquisition) == pytest.approx((b.mu, b.sigma, b.acquisition), rel=1e-5, abs=1e-9)
        assert a.model_version == b.model_version == 1
