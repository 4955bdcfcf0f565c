"""Training really learns, the ensemble's uncertainty is calibrated by construction, and model
directories round-trip exactly or fail with a clear error."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from labloop.core.errors import InvalidInput, ModelLoadError
from labloop.surrogate.featurize import featurize
from labloop.surrogate.metrics import Z95, calibration_factor, regression_metrics

TARGETS = ["ie_ev", "ea_ev"]


@pytest.fixture(scope="module")
def data(ocelot, tiny_preset):
    rows = ocelot.iloc[400:2400]
    feats = featurize(rows.smiles.tolist(), tiny_preset().fingerprint, n_jobs=1)
    return feats, rows[["ie_ev", "ea_ev"]].to_numpy()


def test_tiny_training_lowers_loss_and_beats_the_mean(data, tiny_preset):
    from labloop.surrogate.ensemble import train_ensemble

    F, Y = data
    train, test = slice(0, 1600), slice(1600, 2000)
    preset = tiny_preset(epochs=8)
    ens = train_ensemble(F.subset(train), Y[train], TARGETS, preset.fingerprint, preset.model, folds=2, seed=3)
    for curve in ens.info["learning_curves"]:
        assert curve["loss"][-1] < 0.8 * curve["loss"][0]
    mean, std = ens.predict_features(F.subset(test))
    assert mean.shape == std.shape == (400, 2) and (std > 0).all()
    for j in range(2):
        model_mae = np.abs(mean[:, j] - Y[test, j]).mean()
        baseline_mae = np.abs(Y[train, j].mean() - Y[test, j]).mean()
        assert model_mae < 0.8 * baseline_mae


def test_missing_labels_are_masked_not_learned(data, tiny_preset):
    from labloop.surrogate.ensemble import train_ensemble

    F, Y = data
    Y = Y[:600].copy()
    Y[::2, 1] = np.nan  # EA measured for every other molecule only
    preset = tiny_preset(epochs=3)
    ens = train_ensemble(F.subset(slice(0, 600)), Y, TARGETS, preset.fingerprint, preset.model, folds=2, seed=0)
    for curve in ens.info["learning_curves"]:
        assert np.isfinite(curve["loss"]).all()
    assert ens.info["metrics"]["out_of_fold"]["ea_ev"]["n"] < ens.info["metrics"]["out_of_fold"]["ie_ev"]["n"]


def test_any_seed_trains(data, tiny_preset):
    # a campaign seed may be a date or any large number; Keras seeds are 32-bit
    from labloop.surrogate.ensemble import member_seed, train_ensemble

    F, Y = data
    preset = tiny_preset(epochs=1)
    ens = train_ensemble(F.subset(slice(0, 300)), Y[:300], TARGETS, preset.fingerprint, preset.model, folds=2,
                         seed=20261122)
    assert len(ens.members) == 2
    assert member_seed(3, 1) == 3001 and 0 <= member_seed(2**40, 4) < 2**31


def test_too_little_data_or_folds_is_refused(data, tiny_preset):
    from labloop.surrogate.ensemble import train_ensemble

    F, Y = data
    preset = tiny_preset()
    with pytest.raises(InvalidInput, match="folds"):
        train_ensemble(F.subset(slice(0, 100)), Y[:100], ["ie_ev", "ea_ev"], preset.fingerprint, preset.model, folds=1)
    with pytest.raises(InvalidInput, match="too few"):
        train_ensemble(F.subset(slice(0, 12)), Y[:12], ["ie_ev", "ea_ev"], preset.fingerprint, preset.model, folds=5)


def test_calibration_factor_hand_computed():
    y = np.zeros(100)
    mean = np.arange(1, 101) / 100.0  # |errors| 0.01 .. 1.00
    std = np.full(100, 0.5)
    # |e|/std = 0.02, 0.04, ..., 2.00; its 95% quantile sits at position 0.95 * 99 = 94.05 between the
    # 95th and 96th values (1.90, 1.92): 1.90 + 0.05 * 0.02 = 1.901; divided by 1.96
    assert calibration_factor(y, mean, std) == pytest.approx(1.901 / Z95, rel=1e-9)
    scaled = std * calibration_factor(y, mean, std)
    assert regression_metrics(y, mean, scaled)["coverage95"] == pytest.approx(0.95, abs=0.01)


def test_descriptor_weight_scales_only_the_descriptor_columns(data, tiny_preset):
    from labloop.surrogate.ensemble import network_inputs
    from labloop.surrogate.scaling import LabelScaler

    F, _ = data
    feats, config = F.subset(slice(0, 50)), tiny_preset().model
    scaler = LabelScaler.fit("standard", feats.D)
    one = network_inputs(feats, config.model_copy(update={"descriptor_weight": 1.0}), scaler)
    three = network_inputs(feats, config.model_copy(update={"descriptor_weight": 3.0}), scaler)
    width = feats.X.shape[1]
    assert feats.D.shape[1] and one.dtype == three.dtype == np.float32
    np.testing.assert_array_equal(one[:, :width], three[:, :width])
    np.testing.assert_allclose(three[:, width:], 3.0 * one[:, width:], rtol=1e-6)


def test_fit_calibration_hand_computed_for_constant_spread():
    from labloop.surrogate.ensemble import fit_calibration

    # constant spread: the floor only rescales, so sigma = factor * sqrt(0.5^2 + floor^2) must be the
    # conformal |error| quantile over 1.96: the ceil(101 * 0.95) = 96th smallest of 0.01 .. 1.00
    y, mean, spread = np.zeros(100), np.arange(1, 101) / 100.0, np.full(100, 0.5)
    factor, floor = fit_calibration(y, mean, spread)
    assert factor * np.hypot(0.5, floor) == pytest.approx(0.96 / Z95, rel=1e-9)
    assert fit_calibration(np.full(3, np.nan), np.zeros(3), np.ones(3)) == (1.0, 0.0)


def test_fit_calibration_recovers_a_floor_and_covers_every_spread():
    from labloop.surrogate.ensemble import fit_calibration

    rng = np.random.default_rng(5)

    def sample(n):
        spread = rng.uniform(0.01, 0.3, n)
        return spread, rng.normal(0.0, 2.0 * np.hypot(spread, 0.1))  # true sigma: 2 * sqrt(spread^2 + 0.1^2)

    spread, err = sample(20000)
    factor, floor = fit_calibration(np.zeros_like(err), err, spread)
    assert floor == pytest.approx(0.1, rel=0.15) and factor == pytest.approx(2.0, rel=0.05)
    spread, err = sample(20000)
    inside = np.abs(err) <= Z95 * factor * np.hypot(spread, floor)
    assert inside.mean() == pytest.approx(0.95, abs=0.01)
    low, high = spread < np.quantile(spread, 0.2), spread > np.quantile(spread, 0.8)
    assert inside[low].mean() > 0.93 and inside[high].mean() < 0.97  # the factor alone would miss both
    # errors proportional to the spread: (almost) no floor
    _, floor0 = fit_calibration(np.zeros(5000), 3.0 * spread[:5000] * rng.normal(size=5000), spread[:5000])
    assert floor0 < 0.01


def test_a_spread_that_does_not_rank_the_errors_sends_the_floor_to_its_grids_top():
    """What `surrogate train` on a small table showed (x0.11 floor 4.328): two halves of a slice with the same
    errors and different spreads; any floor short of infinity gives the halves different sigmas, so the
    likelihood falls all the way to the grid's top (10x the error RMS), where sigma is the same for every row
    and only factor x floor, the smallest sigma, means anything."""
    from labloop.surrogate.ensemble import fit_calibration

    err = np.tile(np.linspace(-0.6, 0.6, 30), 2)
    spread = np.repeat([0.02, 0.2], 30)
    factor, floor = fit_calibration(np.zeros_like(err), err, spread)
    rms = np.sqrt(np.mean(err**2))
    assert floor == pytest.approx(10 * rms)
    conformal = np.sort(np.abs(err))[math.ceil(61 * 0.95) - 1] / Z95  # the constant sigma covering 95%
    assert factor * floor == pytest.approx(conformal, rel=0.01)


def test_calibration_slice_is_5_percent_at_least_100_rows_or_a_fifth_of_small_data():
    """The rule docs/surrogate.md states: `surrogate train` warns below MIN_CALIBRATION_ROWS, i.e. below 500 rows."""
    from labloop.surrogate.ensemble import MIN_CALIBRATION_ROWS, calibration_size

    assert MIN_CALIBRATION_ROWS == 100
    assert [calibration_size(n, 0.05) for n in (60, 300, 499, 500, 2000, 2100, 21411)] == \
        [12, 60, 99, 100, 100, 105, 1071]


def test_regression_metrics_hand_computed():
    m = regression_metrics(np.array([1.0, 2.0, 3.0, np.nan]), np.array([1.5, 2.0, 2.0, 9.0]),
                           np.array([0.1, 0.1, 1.0, 1.0]))
    assert m["n"] == 3
    assert m["mae"] == pytest.approx(0.5)
    assert m["r2"] == pytest.approx(1 - 1.25 / 2.0)
    assert m["coverage95"] == pytest.approx(2 / 3)


def test_save_load_gives_identical_predictions(tiny_model_dir, small_csv):
    from labloop.surrogate.dataset import read_table
    from labloop.surrogate.persistence import load_ensemble, read_manifest

    table = read_table(small_csv)
    a = load_ensemble(tiny_model_dir).predict(table.smiles[:50], n_jobs=1)
    b = load_ensemble(tiny_model_dir).predict(table.smiles[:50], n_jobs=1)
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.std, b.std)
    manifest = read_manifest(tiny_model_dir)
    for key in ("fingerprint", "targets", "label_scaling", "folds", "calibration", "metrics", "training_data",
                "versions"):
        assert key in manifest
    assert manifest["folds"] == 3 and len(manifest["training_data"]["sha256"]) == 64


def test_saved_model_predicts_like_the_trained_one(data, tiny_preset, tmp_path):
    from labloop.surrogate.ensemble import train_ensemble
    from labloop.surrogate.persistence import load_ensemble, save_ensemble

    F, Y = data
    preset = tiny_preset(epochs=2)
    ens = train_ensemble(F.subset(slice(0, 300)), Y[:300], TARGETS, preset.fingerprint, preset.model, folds=2)
    save_ensemble(ens, tmp_path / "m")
    (tmp_path / "plain").mkdir()  # the folder gets the umask's mode, as any other does (mkdtemp gave 0700)
    assert (tmp_path / "m").stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folder left
    probe = F.subset(slice(300, 400))
    before, after = ens.predict_features(probe), load_ensemble(tmp_path / "m").predict_features(probe)
    np.testing.assert_allclose(before[0], after[0], rtol=1e-6)
    np.testing.assert_allclose(before[1], after[1], rtol=1e-6)
    # the layers' weights only: a trained member's optimizer state (two thirds of the file) is read by nothing
    import h5py

    for member in ("member_0.weights.h5", "member_1.weights.h5"):
        with h5py.File(tmp_path / "m" / member, "r") as weights:
            assert "layers" in weights and "optimizer" not in weights, list(weights)


def test_manifest_without_floor_loads_as_factor_times_spread(tiny_model_dir, small_csv, tmp_path):
    """Models saved before the calibration floor existed keep predicting exactly as they did."""
    from labloop.surrogate.dataset import read_table
    from labloop.surrogate.featurize import featurize
    from labloop.surrogate.persistence import MANIFEST, load_ensemble

    d = tmp_path / "old"
    shutil.copytree(tiny_model_dir, d)
    manifest = json.loads((d / MANIFEST).read_text())
    del manifest["calibration_floor"]
    (d / MANIFEST).write_text(json.dumps(manifest))
    ens = load_ensemble(d)
    assert ens.calibration_floor == {"ie_ev": 0.0, "ea_ev": 0.0}
    feats = featurize(read_table(small_csv).smiles[:20], ens.fingerprint, n_jobs=1)
    _, spread = ens._raw(feats)
    _, std = ens.predict_features(feats)
    np.testing.assert_allclose(std, spread * np.array([ens.calibration[t] for t in ens.targets]), rtol=1e-12)


def test_trained_ensemble_covers_its_calibration_slice(data, tiny_preset):
    from labloop.surrogate.ensemble import train_ensemble

    F, Y = data
    ens = train_ensemble(F.subset(slice(0, 600)), Y[:600], TARGETS, tiny_preset(epochs=2).fingerprint,
                         tiny_preset(epochs=2).model, folds=2, seed=1)
    for t in TARGETS:
        assert ens.calibration[t] > 0 and ens.calibration_floor[t] >= 0
        # conformal: at least ceil(101 * 0.95) = 96 of the 100 slice molecules are inside by construction
        assert ens.info["metrics"]["calibration_slice"][t]["coverage95"] >= 0.95


@pytest.mark.parametrize("damage", ["no_manifest", "bad_json", "wrong_format", "future_version", "no_weights",
                                    "truncated_weights", "missing_key"])
def test_damaged_model_directory_gives_clear_error(tiny_model_dir, tmp_path, damage):
    from labloop.surrogate.persistence import MANIFEST, load_ensemble

    d = tmp_path / "model"
    shutil.copytree(tiny_model_dir, d)
    manifest = json.loads((d / MANIFEST).read_text())
    if damage == "no_manifest":
        (d / MANIFEST).unlink()
    elif damage == "bad_json":
        (d / MANIFEST).write_text("{ not json")
    elif damage == "wrong_format":
        (d / MANIFEST).write_text(json.dumps({**manifest, "format": "something-else"}))
    elif damage == "future_version":
        (d / MANIFEST).write_text(json.dumps({**manifest, "format_version": 99}))
    elif damage == "no_weights":
        (d / "member_1.weights.h5").unlink()
    elif damage == "truncated_weights":
        (d / "member_0.weights.h5").write_bytes((d / "member_0.weights.h5").read_bytes()[:200])
    elif damage == "missing_key":
        del manifest["label_scaling"]
        (d / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError) as err:
        load_ensemble(d)
    assert "\n" not in str(err.value) and str(d) in str(err.value)


def test_save_refuses_to_overwrite_a_foreign_directory(tiny_model_dir, tmp_path):
    from labloop.surrogate.persistence import load_ensemble, save_ensemble

    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(ModelLoadError):
        save_ensemble(load_ensemble(tiny_model_dir), foreign)
    assert (foreign / "thesis.tex").read_text() == "precious"
