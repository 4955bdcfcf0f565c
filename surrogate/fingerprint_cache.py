"""On-disk fingerprint cache, keyed by canonical SMILES and featuriser settings.

Why: a campaign re-scores the same library after every measurement and every retrain; parsing SMILES is
most of the featurisation cost. One SQLite file per featuriser setting keeps entries of different
settings apart and survives crashes (a half-written batch is rolled back, never read back half-done).
Fingerprints are stored sparsely (uint16 bit indices + uint8 counts), about 100 bytes per molecule,
descriptors (when the settings ask for them) as float32 bytes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from labloop.surrogate.featurize import FingerprintSettings

log = logging.getLogger(__name__)

#: (fingerprint uint8 row, descriptor float32 row) of one cached molecule
Cached = tuple[np.ndarray, np.ndarray]

_BATCH = 500  # SQLite's parameter limit is 999 on old builds
_SCHEMA = "CREATE TABLE IF NOT EXISTS fp (smiles TEXT PRIMARY KEY, idx BLOB, cnt BLOB, desc BLOB)"


def default_cache_dir() -> Path:
    """``$LABLOOP_CACHE_DIR``, else ``$XDG_CACHE_HOME/labloop``, else ``~/.cache/labloop``."""
    if os.environ.get("LABLOOP_CACHE_DIR"):
        return Path(os.environ["LABLOOP_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "labloop"


#: cache folders found unusable in this process: said once each, then worked without
_UNUSABLE: set[Path] = set()


class FingerprintCache:
    """Fingerprints already computed, one SQLite file per :class:`FingerprintSettings` in ``directory``.

    A folder that cannot be made or written (a read-only HOME, a full disk) only costs the speed-up: one warning,
    then the fingerprints are computed afresh. Why: every retrain of an unattended campaign whose HOME was read-only
    failed on it, and the campaign went on with its first model, learning nothing, its exit 0 (a trial)."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def _passed_over(self, exc: OSError | sqlite3.OperationalError) -> None:
        """The cache left out of this call: a file another process kept locked past the timeout (a concurrent
        training), this time only; a folder it cannot make or write, from now on, said once."""
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            log.info("fingerprint cache %s is busy (%s): fingerprints computed afresh this time", self.directory, exc)
            return
        if self.directory not in _UNUSABLE:
            _UNUSABLE.add(self.directory)
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            log.warning("the fingerprint cache folder %s cannot be written (%s): fingerprints are computed afresh "
                        "(set LABLOOP_CACHE_DIR to a writable folder to keep them between runs)", self.directory,
                        reason)

    def _path(self, settings: FingerprintSettings) -> Path:
        return self.directory / f"{settings.key()}.sqlite"

    def _connect(self, settings: FingerprintSettings) -> sqlite3.Connection:
        self.directory.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self._path(settings), timeout=30)
        con.execute(_SCHEMA)
        return con

    def _rebuild(self, settings: FingerprintSettings, exc: Exception) -> None:
        """A damaged cache is only a cache: warn and start it again."""
        log.warning("fingerprint cache %s is unreadable (%s); rebuilding it", self._path(settings), exc)
        self._path(settings).unlink(missing_ok=True)

    def get_many(self, smiles: Sequence[str], settings: FingerprintSettings) -> dict[str, Cached]:
        """(fingerprint uint8 row, descriptor float32 row) of the cached SMILES; missing ones are absent."""
        keys = sorted({s for s in smiles if isinstance(s, str)})
        found: dict[str, Cached] = {}
        if self.directory in _UNUSABLE:
            return found
        try:
            con = self._connect(settings)
            try:
                for start in range(0, len(keys), _BATCH):
                    batch = keys[start : start + _BATCH]
                    marks = ",".join("?" * len(batch))
                    query = f"SELECT smiles, idx, cnt, desc FROM fp WHERE smiles IN ({marks})"
                    for smi, idx, cnt, desc in con.execute(query, batch):
                        row = np.zeros(settings.width, dtype=np.uint8)
                        row[np.frombuffer(idx, dtype=np.uint16)] = np.frombuffer(cnt, dtype=np.uint8)
                        found[smi] = (row, np.frombuffer(desc, dtype=np.float32))
            finally:
                con.close()
        except (OSError, sqlite3.OperationalError) as exc:  # "unable to open database file", "database is locked"
            self._passed_over(exc)
            return {}
        except sqlite3.DatabaseError as exc:  # a damaged file
            self._rebuild(settings, exc)
            return {}
        return found

    def put_many(self, smiles: Sequence[str], X: np.ndarray, D: np.ndarray, settings: FingerprintSettings) -> None:
        """Store rows of ``X``/``D`` under the (canonical) SMILES; existing entries are kept as they are."""
        if self.directory in _UNUSABLE:
            return
        rows = []
        for smi, x, d in zip(smiles, X, D, strict=True):
            nz = np.flatnonzero(x)
            rows.append((smi, nz.astype(np.uint16).tobytes(), x[nz].astype(np.uint8).tobytes(),
                         np.asarray(d, dtype=np.float32).tobytes()))
        try:
            con = self._writable(settings)
            with contextlib.closing(con), con:
                con.executemany("INSERT OR IGNORE INTO fp VALUES (?, ?, ?, ?)", rows)
        except (OSError, sqlite3.OperationalError) as exc:
            self._passed_over(exc)

    def _writable(self, settings: FingerprintSettings) -> sqlite3.Connection:
        """A connection to write to; a damaged file (not a database) is started again, what cannot be opened or is
        locked raises (:meth:`_passed_over` decides)."""
        try:
            return self._connect(settings)
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):
                raise
            self._rebuild(settings, exc)
            return self._connect(settings)
