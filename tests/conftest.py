"""Shared fixtures: small slices of the bundled data and one tiny trained model per test session.

Why session-scoped models: training is the slow part of the suite; one small ensemble (a few hundred
molecules, a few epochs) serves every test that only needs *a* trained model.
"""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from labloop.data import bundled_path


@pytest.fixture(scope="session")
def ocelot() -> pd.DataFrame:
    return pd.read_csv(bundled_path())


@pytest.fixture(scope="session")
def small_csv(tmp_path_factory, ocelot) -> Path:
    """400 molecules with IE/EA, the first 400 rows of the bundled data."""
    path = tmp_path_factory.mktemp("data") / "small.csv"
    ocelot.head(400)[["smiles", "ie_ev", "ea_ev"]].to_csv(path, index=False)
    return path


def _tiny_preset(epochs: int = 4):
    """The default recipe shrunk to seconds: same featuriser, a small network, few epochs."""
    from labloop.surrogate.presets import get_preset

    fast = get_preset("fast")
    return replace(fast, model=fast.model.model_copy(update={"epochs": epochs, "hidden": (64, 32),
                                                             "batch_size": 64}))


@pytest.fixture(scope="session")
def tiny_preset():
    """Factory of the shrunk default recipe: ``tiny_preset(epochs=...)``."""
    return _tiny_preset


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, small_csv) -> Path:
    """A 3-member ensemble trained on 400 molecules and saved: enough to exercise every command."""
    from labloop.surrogate.dataset import read_table
    from labloop.surrogate.persistence import save_ensemble
    from labloop.surrogate.training import train_from_table

    table = read_table(small_csv, ["ie_ev", "ea_ev"])
    run = train_from_table(table, _tiny_preset(), folds=3, seed=1)
    return save_ensemble(run.ensemble, tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture
def labloop(capsys):
    """Run the CLI in-process: ``labloop(*args) -> CompletedProcess`` with exit code and captured output.

    In-process keeps TensorFlow's start-up to once per session; the entry point itself is covered by
    the few tests that run ``python -m labloop.orchestrator.cli`` in a subprocess.
    """
    from labloop.orchestrator.cli import main

    def run(*args) -> subprocess.CompletedProcess:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, captured.out, captured.err)

    return run
