"""A retrained network as a learner of the measurements: its out-of-sample predictions of the measured
molecules are kept with the model, both of its outputs (the prior target's rule and the measured-potential
output) are calibrated on them, the one that predicts held-out measurements better proposes, and a
shard campaign reads that output's stored column. Real (tiny) networks, trained here."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from labloop.orchestrator.learning.learner import best_head
from labloop.orchestrator.learning.models import MEASURED_TARGET, ObjectiveModel, heads, with_measurements
from labloop.planners import ConditionSpace, Observation, PlannerState
from labloop.planners.feedback import CalibratedModel, DescriptorTable
from labloop.planners.pool import PoolPlanner
from labloop.planners.shard_pool import ShardPoolPlanner, describe
from labloop.surrogate.dataset import read_table
from labloop.surrogate.ensemble import sparse_network_inputs
from labloop.surrogate.featurize import featurize
from labloop.surrogate.library_pipeline import predict_library
from labloop.surrogate.persistence import load_ensemble, save_ensemble
from labloop.surrogate.training import train_from_table

QUANTITY = "oxidation_potential"


@pytest.fixture(scope="module")
def measured(ocelot) -> list[tuple[str, float]]:
    """40 molecules the prior has not seen, 'measured' at IE - 1.6 V plus a size term (any form will do)."""
    rows = ocelot.iloc[400:440]
    return [(s, float(ie) - 1.6 + 0.01 * len(s)) for s, ie in zip(rows["smiles"], rows["ie_ev"], strict=True)]


@pytest.fixture(scope="module")
def retrained_dir(small_csv, measured, tiny_preset, tmp_path_factory):
    table = with_measurements(read_table(small_csv, ["ie_ev", "ea_ev"]), measured)
    run = train_from_table(table, tiny_preset(), folds=3, seed=2, out_of_sample_of=MEASURED_TARGET)
    return save_ensemble(run.ensemble, tmp_path_factory.mktemp("models") / "retrained")


@pytest.fixture(scope="module")
def retrained(retrained_dir):
    return load_ensemble(retrained_dir)  # what a campaign reads back: the predictions kept survive saving


def test_out_of_sample_predictions_come_from_members_that_did_not_train_on_them(retrained, measured):
    kept = retrained.info["out_of_sample"]
    assert sorted(kept["smiles"]) == sorted(s for s, _ in measured)
    column = retrained.targets.index(MEASURED_TARGET)
    feats = featurize(kept["smiles"], retrained.fingerprint)
    outputs = np.stack([retrained.scaler.inverse(out) for out in retrained.forward(
        sparse_network_inputs(feats, retrained.config, retrained.descriptor_scaler))])[:, :, column]
    ensemble_mean = outputs.mean(axis=0)
    oos = np.array(kept["mean"])[feats.rows, column]
    # each is one member's prediction (its validation fold held the row) or, for the calibration slice,
    # the ensemble's; most rows are in the folds, so most differ from the ensemble mean
    by_member = np.abs(outputs - oos).min(axis=0) < 1e-4
    by_ensemble = np.abs(ensemble_mean - oos) < 1e-4
    assert (by_member | by_ensemble).all()
    assert (~by_ensemble).sum() >= len(oos) // 2
    assert np.all(np.array(kept["sigma"])[:, column] > 0)


def test_objective_model_heads_and_out_of_sample(retrained, measured, tiny_model_dir):
    prior_head, measured_head = heads(ObjectiveModel(retrained, 2, QUANTITY))
    assert (prior_head.head, measured_head.head) == ("prior", "measured")
    assert (prior_head.column, measured_head.column) == ("ie_ev", MEASURED_TARGET)
    assert (prior_head.offset_v, measured_head.offset_v) == (pytest.approx(1.40, abs=0.05), 0.0)
    smiles = [s for s, _ in measured[:5]]
    new = "c1ccc2ccccc2c1"  # not measured: no out-of-sample prediction kept
    kept = retrained.info["out_of_sample"]
    at = [kept["smiles"].index(s) for s in smiles]
    for head in (prior_head, measured_head):
        target = retrained.targets.index(head.column)
        mu, sigma = head.out_of_sample([*smiles, new])
        assert mu[:5] == pytest.approx([kept["mean"][i][target] - head.offset_v for i in at])
        assert sigma[:5] == pytest.approx([kept["sigma"][i][target] for i in at])
        assert (mu[5], sigma[5]) == pytest.approx(tuple(v[0] for v in head.predict([new])))
    whole = retrained.predict([new])
    assert measured_head.predict([new])[0][0] == pytest.approx(float(whole.mean[0, -1]), rel=1e-6)
    assert len(heads(ObjectiveModel(load_ensemble(tiny_model_dir), 1, QUANTITY))) == 1  # a prior model


@pytest.mark.parametrize("truth", ["prior", "measured"])
def test_the_output_that_predicts_held_out_measurements_proposes(truth, retrained, measured):
    """Potentials equal to one output's out-of-sample predictions (plus 5 mV noise): that output's residual
    is noise and its leave-one-out likelihood the higher, so it wins."""
    model = ObjectiveModel(retrained, 2, QUANTITY)
    source = dict(zip(("prior", "measured"), heads(model), strict=True))[truth]
    smiles = [s for s, _ in measured]
    mu, _ = source.out_of_sample(smiles)
    noise = np.random.default_rng(0).normal(0, 0.005, len(smiles))
    observations = [Observation(s, {}, float(m + e)) for s, m, e in zip(smiles, mu, noise, strict=True)]
    head, view, scores = best_head(model, observations, DescriptorTable())
    assert head == view.model.head == truth and view.column == source.column
    assert set(scores) == {"prior", "measured"}
    assert scores[truth] == max(scores.values()) and scores[truth] > min(scores.values())
    assert view.calibration.summary()["loo_rmse_v"] < 0.05
    head, first, none = best_head(model, [], DescriptorTable())
    assert head == first.model.head == "prior" and none == {}


def test_a_shard_campaign_reads_the_winning_outputs_column(retrained_dir, retrained, ocelot, tmp_path):
    """The measured-potential output as the view: the shard planner scores its stored column (no offset)
    and proposes exactly what the in-process pool planner does."""
    smiles = ocelot["smiles"].iloc[500:620].tolist()
    library = tmp_path / "library.csv"
    pd.DataFrame({"smiles": smiles}).to_csv(library, index=False)
    shards = predict_library(library, retrained_dir, tmp_path / "shards", chunk_size=50, describe=describe)
    measured_head = heads(ObjectiveModel(retrained, 2, QUANTITY))[1]
    view = CalibratedModel(measured_head, [], DescriptorTable())
    state = PlannerState("bayes", seed=1, step=1, observations=(), pending=(smiles[0],))
    settings = {"goal": "window", "acquisition": "window_probability", "window_v": (4.5, 4.6)}
    space = ConditionSpace({"scan_rate_v_s": (0.1, 0.1)})
    expected = PoolPlanner("bayes", smiles, space, **settings).propose(state, 4, view)
    got = ShardPoolPlanner("bayes", lambda version: shards, "ie_ev", space, shortlist=len(smiles),
                           **settings).propose(state, 4, view)
    assert [p.smiles for p in got] == [p.smiles for p in expected] and len(got) == 4
    assert [p.mu for p in got] == pytest.approx([p.mu for p in expected], rel=1e-5)
    assert [p.mu for p in got] == pytest.approx(measured_head.predict([p.smiles for p in got])[0], rel=1e-5)
