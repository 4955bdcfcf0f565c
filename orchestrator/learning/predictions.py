"""A campaign's library predicted into Parquet shards on a Dask cluster, one set per model version.

Why: a campaign over millions of molecules cannot ask the in-process model for every untried one at every
proposal (:class:`labloop.planners.pool.PoolPlanner` does, fine for the examples' hundreds). When the
campaign uses a cluster (:func:`labloop.orchestrator.compose.compute_placement`), each model version's
predictions of the whole library are made once by the chunked pipeline
(:func:`labloop.surrogate.library_pipeline.predict_library`) into ``<store>.predictions/model-<hash>/``
beside the journal, and ``bayes``/``greedy`` propose from them
(:class:`labloop.planners.shard_pool.ShardPoolPlanner`), scoring the shards on the workers.

Reproducible: the shards are keyed by the model directory's hash and the chunk's rows, so a resumed run
reuses every shard already written and predicts only the rest (a shard is all there or not at all), and
its proposals, a pure function of the journal and the shards, are the ones the uninterrupted run made.
A version's shards are complete before the version proposes: the prior's before the first proposal, a
retrained model's in the background before the runner takes it (:mod:`.retraining`); a pruned round's are deleted
with its weights (:func:`.models.prune`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from labloop.orchestrator.config.campaign import TARGET_OF
from labloop.orchestrator.journal.store import Journal
from labloop.orchestrator.learning import models
from labloop.planners import StoredPredictions
from labloop.planners.shard_pool import describe
from labloop.surrogate.library_pipeline import DEFAULT_CHUNK_SIZE, ShardSet, predict_library

log = logging.getLogger(__name__)

#: ``progress(what, molecules)`` -> a callback told the molecules of each finished chunk (a progress bar)
ProgressFactory = Callable[[str, int], Callable[[int], None]]


class LibraryPredictions:
    """The shards of ``library`` per journalled model version of ``journal``'s campaign, predicted on
    ``client``'s cluster; ``rows`` is the library's length (for progress bars)."""

    def __init__(self, library: Path, smiles_column: str, journal: Journal, quantity: str, client: object,
                 rows: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        self.library = library
        self.smiles_column = smiles_column
        self.journal = journal
        self.client = client
        self.rows = rows
        self.chunk_size = chunk_size
        self.target = TARGET_OF[quantity]
        self.directory = models.predictions_dir(journal.path)
        #: set by the runner to show a progress bar per version predicted
        self.progress: ProgressFactory | None = None
        self._sets: dict[int, ShardSet] = {}
        self._lock = threading.Lock()  # guards ``_sets``: the runner's thread and the retrainer's both ask

    def stored(self) -> StoredPredictions:
        """What a planner needs of them (planners never see the journal)."""
        return StoredPredictions(self.shards, self.target, self.client)

    def prepare(self, loaded: models.LoadedModel, check: Callable[[], None] | None = None) -> ShardSet:
        """The shards of ``loaded``'s version, predicted now where missing (a cluster that goes away:
        :class:`labloop.surrogate.compute.ClusterLostError`; the shards finished stay). ``check()`` is called
        after every chunk and may raise to stop (a retrain cancelled as the run stops)."""
        return self._predict(loaded.row.version, loaded.row.weights_path, check)

    def shards(self, version: int) -> ShardSet:
        """The shards of model ``version`` (a journalled version), predicted first if they are not yet."""
        with self._lock:
            if version in self._sets:
                return self._sets[version]
        row = next((r for r in self.journal.model_versions() if r.version == version), None)
        if row is None:
            raise KeyError(f"model version {version} is not in the journal")
        if row.pruned:
            raise KeyError(f"model version {version} was pruned (surrogate.keep_models): its weights and shards are "
                           "deleted")
        return self._predict(version, row.weights_path)

    def _predict(self, version: int, weights: str | None, check: Callable[[], None] | None = None) -> ShardSet:
        # not under the lock: the runner proposes from its version's shards while the retrainer predicts the
        # next version's (two threads predicting one version would write the same whole shards)
        with self._lock:
            if version in self._sets:
                return self._sets[version]
        bar = None if self.progress is None else self.progress(f"library, model v{version}", self.rows)

        def advance(molecules: int) -> None:
            if check is not None:
                check()
            if bar is not None:
                bar(molecules)

        shards = predict_library(self.library, weights or "", self.directory, client=self.client,
                                 smiles_column=self.smiles_column, chunk_size=self.chunk_size, describe=describe,
                                 progress=advance)
        log.info("model version %d: %d library rows in %s (%d predicted now)", version, shards.n_rows,
                 shards.directory, shards.n_predicted)
        with self._lock:
            self._sets[version] = shards
        return shards
