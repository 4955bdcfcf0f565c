"""Predictions for a whole library, a chunk at a time, as Dask tasks, kept in Parquet shards.

Why: a candidate library can hold millions of molecules; reading, featurising and predicting it in one
process needs memory in proportion to the library. Here the library is read in chunks (CSV, CSV.gz,
Parquet, .smi), each chunk is featurised and predicted by one task on a Dask worker
(:mod:`labloop.surrogate.compute`), and its results go into one Parquet shard, so peak memory is set by
the chunk size and the number of chunks in flight, never by the library size.

What travels over the network: the model once per version (its directory's bytes, scattered to every
worker; each worker rebuilds the ensemble once and keeps it), each chunk's SMILES to a worker, and each
chunk's results (canonical SMILES, mean and calibrated std per target, and any ``describe`` columns) back.
Shards are written by the process that runs the pipeline, so the pipeline's workers need no shared filesystem
(the pool planner's workers read them: :mod:`labloop.planners.shard_pool`). A shard set's paths are absolute.

Shards: ``<out_dir>/model-<version>/<first row>-<key>.parquet``, one per chunk, one row per input row
(invalid SMILES kept with ``valid`` false and NaN predictions, so their line numbers can be reported).
``version`` is a hash of the model directory's bytes, so a retrained model predicts everything again and
nothing else does; ``key`` hashes the chunk's first row, its SMILES (and its names) and the
describe columns asked for, so a re-run (or a resumed campaign) skips every chunk already predicted. Each row
carries the molecule's canonical SMILES, the key to join predictions of the same molecule written in
different ways, and, from a ``.smi`` file or a CSV's ``name`` column, its ``name`` ("" for none), added by the process
that writes the shard (names never travel to a worker), so that outputs can name the molecules. A shard is
written to a temporary file and renamed into place: a killed run never leaves a half-written shard.

A worker lost mid-run has its chunks re-run elsewhere by the scheduler; when every worker holding the model is lost
at once, the model is sent again to the workers there are then and the chunks in flight run again
(:func:`_run_on_cluster`); the pipeline writes one shard per chunk whatever ran it, so every molecule is predicted
once.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from labloop.core.errors import ClusterLostError, InvalidInput, ModelLoadError, first_line
from labloop.core.files import atomic_write, remove_orphans, scratch_prefix
from labloop.core.text import plural
from labloop.core.version import source_digest
from labloop.surrogate.compute import lost_cluster, on_same_labloop
from labloop.surrogate.dataset import (
    column_names,
    csv_line,
    csv_lines,
    file_columns,
    listed_columns,
    not_a_file,
    ragged_row,
    separator_hint,
    unreadable_csv,
)

if TYPE_CHECKING:
    from distributed import Client

    from labloop.surrogate.ensemble import Ensemble

log = logging.getLogger(__name__)

#: molecules per chunk: one task's features (uint8 + float32 network input) stay around 100 MB
DEFAULT_CHUNK_SIZE = 5000
#: chunks in flight per worker thread: one running, one queued, so a worker never waits for the next
IN_FLIGHT_PER_THREAD = 2
#: extra per-molecule columns a pipeline can be asked for (e.g. the planner's descriptors): SMILES -> columns
Describe = Callable[[Sequence[str]], dict[str, np.ndarray]]


@dataclass(frozen=True)
class LibraryChunk:
    """``smiles`` of input rows ``start`` .. ``start + len(smiles) - 1`` (0-based data rows); ``names``, one per
    row ("" for none), from a ``.smi`` file, whose lines name their molecules, or a CSV's ``name`` column (None for
    a CSV without one and Parquet)."""

    index: int
    start: int
    smiles: list[str]
    names: list[str] | None = None


def library_format(path: Path) -> str:
    """``csv``, ``parquet`` or ``smi`` by the file name (``.csv.gz``, ``.smi.gz`` count as their kind)."""
    name = path.name.lower()
    name = name.removesuffix(".gz")
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".smi", ".smiles")):
        return "smi"
    raise InvalidInput(f"{path}: unknown library format; use .csv, .csv.gz, .parquet or .smi")


def read_chunks(path: str | Path, smiles_column: str = "smiles",
                chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[LibraryChunk]:
    """The library's SMILES, ``chunk_size`` rows at a time; a missing file or SMILES column is named in one
    line before the first chunk. In a ``.smi`` file each line is ``SMILES [name ...]`` (the name: the rest of
    the line, spaces and all); blank lines, comments and a header are skipped (:func:`_smi_lines`)."""
    path = Path(path)
    if chunk_size < 1:
        raise InvalidInput(f"chunk size must be at least 1, got {chunk_size}")
    if (problem := not_a_file(path)) is not None:
        raise InvalidInput(f"{path}: {problem}")
    kind = library_format(path)
    reader = {"csv": _csv_chunks, "parquet": _parquet_chunks, "smi": _smi_chunks}[kind]
    start = 0
    for index, (smiles, names) in enumerate(reader(path, smiles_column, chunk_size)):
        yield LibraryChunk(index, start, smiles, names)
        start += len(smiles)


#: what a reader yields per chunk: the SMILES, and the names when the format has them
Rows = tuple[list[str], list[str] | None]
#: the column that names a CSV library's molecules (any case), as a ``.smi`` line's rest does
NAME_COLUMN = "name"


def _csv_chunks(path: Path, column: str, size: int) -> Iterator[Rows]:
    """A CSV's SMILES, and its ``name`` column's (any case) when it has one: ``surrogate predict`` wrote a lab's
    named library without its names, and with invalid rows left out the rows could not be joined back by position
    (a lab's trial)."""
    try:
        header = list(pd.read_csv(path, nrows=0).columns)
        found = file_columns(path, (column, NAME_COLUMN), csv_lines(path))
        written, name = found.get(column), found.get(NAME_COLUMN)
        if written is None:
            raise InvalidInput(f"{path}: no column {column!r} {listed_columns(header)}"
                               f"{separator_hint(header)}")
        if (ragged := ragged_row(path)) is not None:
            raise InvalidInput(f"{path}: {ragged}")
        named = name is not None and name != written
        frames = pd.read_csv(path, usecols=[written, name] if named else [written], dtype=str,
                             keep_default_na=False, chunksize=size)
        for frame in frames:
            yield frame[written].tolist(), frame[name].tolist() if named else None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, EOFError,
            zlib.error) as exc:  # EOFError, OSError, zlib.error: a truncated or damaged .gz
        raise InvalidInput(unreadable_csv(path, exc)) from None


def _parquet_chunks(path: Path, column: str, size: int) -> Iterator[Rows]:
    try:
        parquet, written = _open_parquet(path, column)
        for batch in parquet.iter_batches(batch_size=size, columns=[written]):
            yield ["" if s is None else str(s) for s in batch.column(0).to_pylist()], None
    except (pa.ArrowException, OSError) as exc:
        raise InvalidInput(f"{path}: not a readable Parquet file ({first_line(exc)})") from None


def _open_parquet(path: Path, column: str) -> tuple[pq.ParquetFile, str]:
    """The Parquet file and its SMILES ``column`` as the file names it (:func:`column_names`: whatever its case)."""
    parquet = pq.ParquetFile(path)
    names = parquet.schema_arrow.names
    written = column_names(path, names, (column,)).get(column)
    if written is None:
        raise InvalidInput(f"{path}: no column {column!r} {listed_columns(names)}")
    return parquet, written


def _smi_chunks(path: Path, column: str, size: int) -> Iterator[Rows]:
    try:
        with _open_smi(path) as fh:
            chunk: list[str] = []
            names: list[str] = []
            for words in _smi_lines(fh, column):
                if words is None:
                    continue
                chunk.append(words[0])
                names.append(words[1].strip() if len(words) > 1 else "")
                if len(chunk) == size:
                    yield chunk, names
                    chunk, names = [], []
            if chunk:
                yield chunk, names
    except (OSError, EOFError, UnicodeDecodeError, zlib.error) as exc:
        raise InvalidInput(f"{path}: not a readable SMILES file ({first_line(exc)})") from None


def _open_smi(path: Path) -> IO[str]:
    """A ``.smi`` (or ``.smi.gz``) file opened as UTF-8 text."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    return opener(path, "rt", encoding="utf-8")


def _smi_lines(lines: Iterable[str], column: str) -> Iterator[list[str] | None]:
    """Each line of a ``.smi`` file split in its SMILES and the rest (its name), or None for a line that is no
    row: a blank line, a comment (``#`` first: no SMILES starts with one) and the header (the first other line,
    when its first word is ``column``, any case). Why skipped, not rows: comments and blank lines are common in
    .smi files, and each was reported as an invalid SMILES. One None per line, so a line's number is its
    position: :func:`row_lines` counts them the same way."""
    header_possible = True
    for line in lines:
        words = line.split(maxsplit=1)
        if not words or words[0].startswith("#"):
            yield None
        elif header_possible and words[0].lower() == column.lower():
            header_possible = False
            yield None
        else:
            header_possible = False
            yield words


def row_lines(path: str | Path, smiles_column: str = "smiles") -> Callable[[int], int]:
    """The line of each 0-based data row, for messages that name rows by their lines: in a CSV (and any file the
    campaign reads as one) the line it is on, after its header and the blank lines pandas skips
    (:func:`labloop.surrogate.dataset.csv_lines`); in Parquet the row + 2, counted as a CSV's; in a ``.smi`` file
    the line it is on, the blank lines, comments and header before it counted (which the reader skips).

    The .smi file is read when the first line is asked for, keeping only the numbers of its skipped lines (few
    in a library of millions): a run without an invalid row reads it no more than before."""
    path = Path(path)
    try:
        kind = library_format(path)
    except InvalidInput:
        kind = "csv"  # a campaign reads an unknown suffix as CSV (Library.is_csv)
    if kind != "smi":
        return csv_line if kind == "parquet" else csv_lines(path)
    skipped: list[int] | None = None

    def line(row: int) -> int:
        nonlocal skipped
        if skipped is None:
            skipped = _smi_skipped(path, smiles_column)
        number = row + 1
        for gap in skipped:  # in order: each skipped line at or before the row's moves it one line on
            if gap > number:
                break
            number += 1
        return number

    return line


def _smi_skipped(path: Path, column: str) -> list[int]:
    """The numbers of the lines of a ``.smi`` file that are no row (:func:`_smi_lines`), in order."""
    try:
        with _open_smi(path) as fh:
            return [number for number, words in enumerate(_smi_lines(fh, column), start=1) if words is None]
    except (OSError, EOFError, UnicodeDecodeError, zlib.error):
        return []  # unreadable: the reader says so in its own words


@dataclass(frozen=True)
class ModelPayload:
    """A model directory as bytes: what travels to the workers, once per version."""

    version: str
    targets: tuple[str, ...]
    files: tuple[tuple[str, bytes], ...]
    #: the folder the files were read from: a damaged model is said by it, not by the process's copy
    source: str

    @classmethod
    def from_directory(cls, directory: str | Path) -> ModelPayload:
        """Read a saved model (checked by :func:`labloop.surrogate.persistence.read_manifest` first)."""
        from labloop.surrogate.persistence import read_manifest

        directory = Path(directory)
        targets = tuple(read_manifest(directory)["targets"])
        files = tuple((p.name, p.read_bytes()) for p in sorted(directory.iterdir()) if p.is_file())
        digest = hashlib.sha256()
        for name, data in files:
            digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
        return cls(digest.hexdigest()[:16], targets, files, str(directory))

    def shards_in(self, out_dir: str | Path) -> Path:
        """The folder of this version's shards under ``out_dir`` (absolute: the shards' paths go to Dask workers,
        whose working folder is their own)."""
        return Path(out_dir).absolute() / f"model-{self.version}"

    def ensemble(self) -> Ensemble:
        """The ensemble, built once per process and version (a worker keeps only the newest version)."""
        with _ENSEMBLE_LOCK:
            if self.version not in _ENSEMBLES:
                from labloop.surrogate.persistence import load_ensemble

                remove_orphaned_model_copies()
                tmp = Path(tempfile.mkdtemp(prefix=f"{scratch_prefix(MODEL_COPY_PREFIX)}{self.version}-"))
                try:
                    for name, data in self.files:
                        (tmp / name).write_bytes(data)
                    ensemble = load_ensemble(tmp)
                except ModelLoadError as exc:  # said by the copy's path, gone once this returns
                    raise ModelLoadError(str(exc).replace(str(tmp), self.source)) from None
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
                _ENSEMBLES.clear()
                _ENSEMBLES[self.version] = ensemble
                log.info("model %s loaded in process %d", self.version, os.getpid())
            return _ENSEMBLES[self.version]


#: a process's copy of a model while it loads it (:meth:`ModelPayload.ensemble`), named
#: ``labloop-model-<pid>-<version>-<random>`` in the temporary folder, so that a copy whose process died is known
MODEL_COPY_PREFIX = "labloop-model-"


def remove_orphaned_model_copies() -> None:
    """Remove the model copies of processes that no longer run. Why: a local cluster's worker that is still
    loading the model when the cluster closes (a Ctrl-C) is terminated before it removes its copy, ~77 MB each;
    this runs before every load and once a local cluster has closed (:func:`labloop.surrogate.compute.dask_client`)."""
    remove_orphans(Path(tempfile.gettempdir()), MODEL_COPY_PREFIX)


_ENSEMBLES: dict[str, Ensemble] = {}
_ENSEMBLE_LOCK = threading.Lock()


def predict_chunk(payload: ModelPayload, smiles: list[str], start: int, describe: Describe | None = None
                  ) -> pd.DataFrame:
    """One task: featurise and predict ``smiles`` (input rows from ``start``); one result row per input row."""
    from labloop.surrogate.featurize import featurize_canonical

    ensemble = payload.ensemble()
    feats, canonical = featurize_canonical(smiles, ensemble.fingerprint)
    mean, std = ensemble.predict_features(feats)
    frame = pd.DataFrame({"row": np.arange(start, start + len(smiles), dtype=np.int64), "smiles": smiles,
                          "canonical": canonical, "valid": np.zeros(len(smiles), dtype=bool)})
    frame.loc[feats.rows, "valid"] = True
    for j, target in enumerate(ensemble.targets):
        for name, values in ((f"{target}_mean", mean[:, j]), (f"{target}_std", std[:, j])):
            column = np.full(len(smiles), np.nan)
            column[feats.rows] = values
            frame[name] = column
    if describe is not None:
        for name, values in describe(smiles).items():
            frame[name] = np.asarray(values)
    return frame


def write_shard(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` to ``path`` through a temporary sibling and a rename: all of it or nothing."""
    with atomic_write(path) as tmp:
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp)


@dataclass(frozen=True)
class ShardSet:
    """The shards of one library under one model version, in library order."""

    directory: Path
    version: str
    targets: tuple[str, ...]
    paths: tuple[Path, ...]
    n_rows: int
    n_predicted: int  # rows computed by this run (the rest came from existing shards)
    named: bool = False  # the library names its molecules (a .smi file's names): every shard has a ``name`` column

    def frames(self, columns: Sequence[str] | None = None) -> Iterator[pd.DataFrame]:
        """Each shard as a DataFrame (only ``columns`` if given), in library order."""
        for path in self.paths:
            yield pq.read_table(path, columns=list(columns) if columns else None).to_pandas()

    def valid_smiles(self) -> Iterator[tuple[int, str]]:
        """(0-based data row, SMILES as given) of every input RDKit read, a shard at a time."""
        for frame in self.frames(["row", "smiles", "valid"]):
            good = frame[frame["valid"]]
            yield from zip(good["row"].tolist(), good["smiles"].tolist(), strict=True)

    def invalid(self) -> list[tuple[int, str]]:
        """(0-based data row, SMILES as given) of every input RDKit could not read."""
        out: list[tuple[int, str]] = []
        for frame in self.frames(["row", "smiles", "valid"]):
            bad = frame[~frame["valid"]]
            out += zip(bad["row"].tolist(), bad["smiles"].tolist(), strict=True)
        return out


def shard_key(chunk: LibraryChunk, describe: Describe | None) -> str:
    """Names a chunk's shard by what determines its content besides the model version (a chunk's names too: its
    shard holds them, and a shard written before names were kept has none)."""
    digest = hashlib.sha256(f"{chunk.start}\n".encode())
    if describe is not None:
        digest.update(f"{describe.__module__}.{describe.__qualname__}\n".encode())
    digest.update("\n".join(chunk.smiles).encode())
    if chunk.names is not None:
        digest.update(("\0names\n" + "\n".join(chunk.names)).encode())
    return f"{chunk.start:012d}-{digest.hexdigest()[:16]}"


def predict_library(
    library: str | Path,
    model_dir: str | Path,
    out_dir: str | Path,
    *,
    client: Client | None = None,
    smiles_column: str = "smiles",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    describe: Describe | None = None,
    progress: Callable[[int], None] | None = None,
) -> ShardSet:
    """Predict every molecule of ``library`` with the model in ``model_dir`` into shards under ``out_dir``.

    ``client``: a ``distributed.Client`` (:func:`labloop.surrogate.compute.dask_client`) to run the chunks on;
    None runs them here, one after another. ``progress`` is called with the molecules of each finished
    chunk (also for chunks found already predicted). A cluster that goes away raises
    :class:`ClusterLostError`; the shards finished before stay, and a re-run predicts only the rest.
    """
    payload = ModelPayload.from_directory(model_dir)
    directory = payload.shards_in(out_dir)
    chunks = read_chunks(library, smiles_column, chunk_size)
    paths: list[Path] = []
    counts = {"rows": 0, "predicted": 0, "named": 0}

    def done(chunk: LibraryChunk, frame: pd.DataFrame | None, path: Path) -> None:
        if frame is not None:
            if chunk.names is not None:  # added here, not by the task: names need not travel to a worker
                frame.insert(2, "name", chunk.names)
            write_shard(frame, path)
            counts["predicted"] += len(chunk.smiles)
        counts["rows"] += len(chunk.smiles)
        counts["named"] += any(chunk.names or ())
        if progress:
            progress(len(chunk.smiles))

    def todo() -> Iterator[tuple[LibraryChunk, Path]]:
        for chunk in chunks:
            path = directory / f"{shard_key(chunk, describe)}.parquet"
            paths.append(path)
            if path.is_file():
                done(chunk, None, path)
            else:
                yield chunk, path

    if client is None:
        for chunk, path in todo():
            done(chunk, predict_chunk(payload, chunk.smiles, chunk.start, describe), path)
    else:
        _run_on_cluster(client, payload, todo(), describe, done)
    log.info("library %s: %d %s, %d predicted now, shards in %s", library, counts["rows"],
             plural(counts["rows"], "row"), counts["predicted"], directory)
    return ShardSet(directory, payload.version, payload.targets, tuple(paths), counts["rows"], counts["predicted"],
                    named=counts["named"] > 0)


def _run_on_cluster(client: Client, payload: ModelPayload, work: Iterator[tuple[LibraryChunk, Path]],
                    describe: Describe | None,
                    done: Callable[[LibraryChunk, pd.DataFrame | None, Path], None]) -> None:
    """Predict ``work``'s chunks on ``client``'s cluster (:func:`_predict_on`), handing each result to ``done`` as it
    arrives. When every worker holding the model died at once (the model is scattered to them, so the scheduler
    cancels every chunk that needed it, though it and restarted workers run on), the model is sent again, up to
    :data:`MODEL_RESENDS` times, once a worker is there, and the chunks in flight run again: a trial's two workers
    killed together stopped a run as "the Dask cluster went away" while their nannies had them back within 1 s."""
    from distributed.scheduler import KilledWorker

    for sent in range(MODEL_RESENDS + 1):
        pending: dict[object, tuple[LibraryChunk, Path]] = {}
        # what to do next is the caller's to say: `surrogate predict` runs again, a campaign resumes (a trial read both)
        try:
            _predict_on(client, payload, work, describe, done, pending)
            return
        except KilledWorker as exc:
            raise ClusterLostError(f"{lost_cluster(client, exc)} (out of memory?); {CHUNKS_KEPT}") from None
        except Exception as exc:
            lost_model = _model_lost(client, exc)
            if lost_model and sent == MODEL_RESENDS:  # the scheduler runs on: it is the workers that keep dying
                again = f", the model sent again after each of the first {sent}" if sent > 1 else (
                    ", the model sent again after the first" if sent else "")
                raise ClusterLostError(f"the workers holding the model died {sent + 1} {plural(sent + 1, 'time')}"
                                       f"{again}: they keep dying (out of memory? killed?), while the scheduler runs "
                                       f"on; {CHUNKS_KEPT}") from None
            if lost_model:
                # in words, not Dask's ("predict-...-000000035000-... cancelled for reason: already forgotten.");
                # with no worker left, that it waits for one: it said "to the workers there are", then nothing for
                # two minutes (a Dask trial)
                left = _workers_now(client)
                start = ("the local cluster restarts its own" if getattr(client, "cluster", None) is not None else
                         f"start one with `dask worker {client.scheduler.address}`")
                to = ("to the workers there are" if left else
                      f"once a worker joins (none is connected now: waiting up to {WORKER_BACK_S:g} s for one; "
                      f"{start})")
                log.warning("the workers holding the model died; sending it again (%d of %d) %s, and running the %d "
                            "%s in flight again", sent + 1, MODEL_RESENDS, to, len(pending),
                            plural(len(pending), "chunk"))
                for future in pending:
                    future.release()  # type: ignore[attr-defined]
                work = chain(list(pending.values()), work)
                _wait_for_a_worker(client)
                continue
            reason = lost_cluster(client, exc) or (first_line(exc) if isinstance(exc, OSError) else None)
            if reason is None:
                raise
            raise ClusterLostError(f"the Dask cluster went away ({reason}); {CHUNKS_KEPT}") from None


#: how a lost cluster's error ends: the chunks finished are in the shard folder (a caller whose folder is temporary,
#: ``surrogate predict --no-cache``, says otherwise)
CHUNKS_KEPT = "finished chunks are kept"
#: how often :func:`_run_on_cluster` sends the model again after every worker holding it died
MODEL_RESENDS = 3
#: how long (s) it waits for a worker to join before it sends the model again: a nanny restarts its worker within
#: seconds, a batch system's replacement may take a minute
WORKER_BACK_S = 120.0


def _model_lost(client: Client, exc: BaseException) -> bool:
    """Whether ``exc`` is a chunk cancelled because the model it needed was lost with the workers that held it,
    while the client still reaches its scheduler: a cancellation for another reason than a lost or restarted
    scheduler."""
    from concurrent.futures import CancelledError

    return (isinstance(exc, CancelledError) and getattr(client, "status", None) == "running"
            and getattr(exc, "reason", None) not in ("scheduler-connection-lost", "scheduler-restart"))


def _workers_now(client: Client) -> int:
    """How many workers ``client``'s scheduler has now (0 when it cannot say)."""
    try:
        return len(client.scheduler_info()["workers"])
    except Exception:  # a scheduler gone meanwhile: the wait for a worker says so
        return 0


def _wait_for_a_worker(client: Client) -> None:
    """Until ``client``'s scheduler has a worker, at most :data:`WORKER_BACK_S`; else :class:`ClusterLostError`, in
    words (Dask's "Only 0/1 workers arrived after 120.0" was quoted) unless the scheduler went too."""
    try:
        client.wait_for_workers(1, timeout=WORKER_BACK_S)
    except TimeoutError:  # distributed's is the builtin's
        raise ClusterLostError(f"the Dask cluster went away (every worker holding the model died, and none joined "
                               f"within {WORKER_BACK_S:g} s); {CHUNKS_KEPT}") from None
    except Exception as exc:  # a scheduler gone meanwhile
        raise ClusterLostError(f"the Dask cluster went away (every worker holding the model died, then the "
                               f"scheduler: {first_line(exc)}); {CHUNKS_KEPT}") from None


def _predict_on(client: Client, payload: ModelPayload, work: Iterator[tuple[LibraryChunk, Path]],
                describe: Describe | None, done: Callable[[LibraryChunk, pd.DataFrame | None, Path], None],
                pending: dict[object, tuple[LibraryChunk, Path]]) -> None:
    """Scatter the model, then submit chunks with at most :data:`IN_FLIGHT_PER_THREAD` per worker thread in flight
    (memory stays bounded), and hand each result to ``done`` as it arrives; ``pending`` holds the chunks in flight,
    the failed one too when one fails, for :func:`_run_on_cluster` to run again."""
    from distributed import as_completed

    model = client.scatter(payload, broadcast=True, hash=False)
    digest = source_digest()
    limit = max(2, IN_FLIGHT_PER_THREAD * sum(client.nthreads().values()))
    queue = as_completed(loop=client.loop)

    def submit() -> bool:
        item = next(work, None)
        if item is None:
            return False
        chunk, path = item
        future = client.submit(on_same_labloop, digest, predict_chunk, model, chunk.smiles, chunk.start, describe,
                               key=f"predict-{payload.version}-{path.stem}", pure=False)
        pending[future] = item
        queue.add(future)
        return True

    while len(pending) < limit and submit():
        pass
    with _StallWatch(client, pending) as watch:
        for future in queue:
            chunk, path = pending[future]
            frame = future.result()
            del pending[future]
            future.release()
            watch.finished()
            done(chunk, frame, path)
            submit()


#: how long (s) no chunk may finish before :class:`_StallWatch` says so, at the least ...
CHUNK_STALL_FLOOR_S = 120.0
#: ... or this many times the longest wait for a chunk so far (a big chunk on a slow worker takes its time)
CHUNK_STALL_FACTOR = 10.0
#: how long (s) :class:`_StallWatch` waits for the scheduler to say where the chunks in flight are
ASK_SCHEDULER_S = 5.0


class _StallWatch:
    """Says, once per silent stretch, that no chunk has finished on the cluster for :data:`CHUNK_STALL_FLOOR_S` (or
    :data:`CHUNK_STALL_FACTOR` times the longest wait so far), naming the workers the chunks in flight are on. Why: a
    frozen worker (swapping, stopped, its machine asleep) neither answers nor dies, so nothing fails: a trial's
    ``kill -STOP`` of one held ``surrogate predict`` at 20411 of 21411 for over 5 minutes without a word, and
    finished within seconds of ``kill -CONT``. The job goes on waiting; the person is told what to look at."""

    def __init__(self, client: Client, pending: dict[object, tuple[LibraryChunk, Path]]) -> None:
        self.client, self.pending = client, pending
        self.last = time.monotonic()
        self.longest = 0.0
        self.said = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="labloop-chunk-stalls", daemon=True)

    def __enter__(self) -> _StallWatch:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=ASK_SCHEDULER_S)  # it may be asking a frozen scheduler: the job is not held for it

    def finished(self) -> None:
        now = time.monotonic()
        self.longest = max(self.longest, now - self.last)
        self.last, self.said = now, False

    def _watch(self) -> None:
        while not self._stop.wait(1.0):
            quiet = time.monotonic() - self.last
            if self.said or not self.pending or quiet < max(CHUNK_STALL_FLOOR_S, CHUNK_STALL_FACTOR * self.longest):
                continue
            self.said = True
            in_flight = tuple(self.pending)  # one snapshot: the main thread changes the mapping as chunks finish
            log.warning("no chunk has finished on the Dask cluster for %.0f s (%d in flight; %s): a worker, or the "
                        "scheduler, may be frozen (swapping, stopped, its machine asleep); the job waits for it (the "
                        "scheduler drops a worker whose heartbeats stop after distributed.scheduler.worker-ttl, 5 "
                        "minutes by default), or stop it with Ctrl-C", quiet, len(in_flight), self._where(in_flight))

    def _where(self, in_flight: tuple[object, ...]) -> str:
        """Which workers the chunks ``in_flight`` are on, as the scheduler says within :data:`ASK_SCHEDULER_S`; or
        that it did not say. Why the wait's bound: a frozen scheduler never answers, and the warning waited for it,
        so the one case it is for went unsaid (a reviewer's probe)."""
        keys = {getattr(future, "key", None) for future in in_flight}
        answer: list[object] = []

        def ask() -> None:
            try:
                answer.append(self.client.processing())
            except Exception as exc:  # a scheduler gone: said as not answering
                answer.append(exc)

        asking = threading.Thread(target=ask, name="labloop-ask-scheduler", daemon=True)
        asking.start()
        asking.join(ASK_SCHEDULER_S)
        if not answer or not isinstance(answer[0], dict):
            why = first_line(answer[0]) if answer and isinstance(answer[0], BaseException) else \
                f"no answer within {ASK_SCHEDULER_S:g} s"
            return f"the scheduler did not say on which workers: {why}"
        on = sorted(str(worker) for worker, held in answer[0].items() if keys & set(held))
        return f"on {', '.join(on)}" if on else "on no worker the scheduler knows"


def count_rows(path: str | Path, smiles_column: str = "smiles") -> int:
    """Rows of a library, checking on the way what :func:`read_chunks` checks (file, format, column); cheap
    next to predicting them: a Parquet file says from its metadata, a text file is read once, one column."""
    path = Path(path)
    if path.is_file() and library_format(path) == "parquet":
        try:
            return _open_parquet(path, smiles_column)[0].metadata.num_rows
        except (pa.ArrowException, OSError) as exc:
            raise InvalidInput(f"{path}: not a readable Parquet file ({first_line(exc)})") from None
    return sum(len(chunk.smiles) for chunk in read_chunks(path, smiles_column, chunk_size=100_000))
