"""Old retrained rounds are deleted (surrogate.keep_models): a campaign retrained every few experiments kept every
round's weights (~27 MB with 3 folds) and, on a cluster, every version's library shards, so an unattended week
filled gigabytes. Only the newest rounds stay, the journal says which versions were pruned, and a resume loads
the newest model (the one before when that is unreadable) without taking a pruned one for a fault."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from labloop.orchestrator.config.campaign import load_campaign
from labloop.orchestrator.journal.store import Journal
from labloop.orchestrator.learning import models
from labloop.surrogate.library_pipeline import ModelPayload


@pytest.mark.slow
def test_a_campaign_keeps_its_newest_rounds_and_journals_the_pruned_ones(tmp_path, labloop, write_campaign):
    # 8 experiments, a retrain after 2, 4 and 6 that the next proposal waits for: versions 2, 3, 4 (rounds 1-3)
    campaign_file = write_campaign(tmp_path, prior=True, shared_prior=True, budget={"max_experiments": 8},
                                   surrogate={"preset": "fast", "folds": 2, "epochs": 2, "retrain_every": 2,
                                              "wait_for_retrain": True, "keep_models": 2})
    store = tmp_path / "tiny.db"
    result = labloop("-v", "run", campaign_file, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in models.models_dir(store).iterdir()) == ["round-2", "round-3"]
    said = [line for line in result.stderr.splitlines() if "pruned" in line]
    assert len(said) == 1 and said[0].endswith(
        f"pruned round-1 in {models.models_dir(store).resolve()} (surrogate.keep_models: 2)"), said
    campaign = load_campaign(campaign_file)
    assert (models.prior_dir(store, models.prior_key(campaign)) / "manifest.json").is_file()  # the prior stays
    with Journal.open(store, readonly=True) as journal:
        rows = journal.model_versions()
        assert [(r.version, r.pruned) for r in rows] == [(1, False), (2, True), (3, False), (4, False)]
        (event,) = [e for e in journal.events() if e.kind == "pruned"]
        assert event.message == "model version 2 pruned: round-1 deleted (surrogate.keep_models: 2)"
        assert event.data == {"versions": [2], "paths": [rows[1].weights_path]}
        # a resume continues with the newest round, and with the one before when that is unreadable
        assert models.latest_model(campaign, journal).row.version == 4
        (models.models_dir(store) / "round-3" / "manifest.json").unlink()
        assert models.latest_model(campaign, journal).row.version == 3
    shown = labloop("log", store, "--json")
    assert shown.returncode == 0, shown.stderr
    assert [m["pruned"] for m in json.loads(shown.stdout)["models"]] == [False, True, False, False]


def _round(journal: Journal, source: Path, folder: Path, version_note: str) -> int:
    """A model version journalled with a copy of ``source`` as its weights in ``folder``; ``version_note`` makes its
    bytes, and so its shards' folder, its own."""
    shutil.copytree(source, folder)
    (folder / "note.txt").write_text(version_note)
    return journal.add_model_version(10, {}, folder)


def test_prune_deletes_only_old_rounds_of_this_store_and_their_shards(tmp_path, write_campaign, tiny_model_dir,
                                                                     caplog):
    campaign = load_campaign(write_campaign(tmp_path, prior=True, surrogate={"preset": "fast", "folds": 2, "epochs": 2,
                                                                             "keep_models": 1}))
    store = campaign.store
    rounds = models.models_dir(store)
    with Journal.create(store, campaign) as journal:
        prior = _round(journal, tiny_model_dir, models.prior_dir(store, "key"), "prior")
        elsewhere = _round(journal, tiny_model_dir, tmp_path / "elsewhere" / "round-1", "another store's")
        versions = [_round(journal, tiny_model_dir, rounds / f"round-{n}", f"round {n}") for n in (1, 2, 3)]
        (rounds / "round-4").mkdir()  # a retrain's folder that no version holds: not pruned
        shards = {}
        for row in journal.model_versions():  # each version's library predictions, as a cluster campaign keeps them
            shards[row.version] = ModelPayload.from_directory(row.weights_path).shards_in(models.predictions_dir(store))
            shards[row.version].mkdir(parents=True)
            (shards[row.version] / "000000000000-0.parquet").write_bytes(b"shard")

        # the runner still proposes with round 1: it stays with the newest, round 3; round 2 goes
        models.prune(campaign, journal, versions[0])
        assert sorted(p.name for p in rounds.iterdir()) == ["round-1", "round-3", "round-4"]
        assert [v for v, path in shards.items() if not path.exists()] == [versions[1]]
        assert [r.version for r in journal.model_versions() if r.pruned] == [versions[1]]
        # once it has taken round 3, round 1 goes too; the prior's cache and another store's folder never do
        models.prune(campaign, journal, versions[2])
        assert sorted(p.name for p in rounds.iterdir()) == ["round-3", "round-4"]
        assert [v for v, path in shards.items() if not path.exists()] == [versions[0], versions[1]]
        assert (models.prior_dir(store, "key") / "note.txt").is_file() and shards[prior].is_dir()
        assert (tmp_path / "elsewhere" / "round-1" / "note.txt").is_file() and shards[elsewhere].is_dir()
        # a folder a kill left behind after its version was journalled as pruned goes at the next prune, said once
        shutil.copytree(tiny_model_dir, rounds / "round-1")
        models.prune(campaign, journal, versions[2])
        assert sorted(p.name for p in rounds.iterdir()) == ["round-3", "round-4"]
        pruned = [e.data["versions"] for e in journal.events() if e.kind == "pruned"]
        assert pruned == [[versions[1]], [versions[0]]]
        # the newest unreadable, a resume goes back past the pruned versions, saying they were pruned, not unreadable
        (rounds / "round-3" / "manifest.json").unlink()
        with caplog.at_level(logging.INFO, logger=models.log.name):
            assert models.latest_model(campaign, journal).row.version == elsewhere
    said = [r.message for r in caplog.records]
    assert said[0].startswith(f"model version {versions[2]} is unreadable"), said
    assert said[1:] == [f"model version {v} was pruned (surrogate.keep_models); trying the one before"
                        for v in reversed(versions[:2])]
