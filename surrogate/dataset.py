"""Reading molecule tables (CSV) with clear errors, and fingerprinting the data that trains a model.

Why: every surrogate command starts from a CSV a user typed the path of; a wrong path, a missing column
or text in a number column must be named in one line, not surface as a pandas traceback.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from labloop.core.errors import InvalidInput

log = logging.getLogger(__name__)


@dataclass
class MoleculeTable:
    """SMILES (as given) and, optionally, numeric labels (NaN where missing) from one file."""

    path: Path
    smiles: list[str]
    targets: list[str]
    Y: np.ndarray  # shape (n, len(targets)); (n, 0) without targets

    def sha256(self) -> str:
        """Hash of SMILES and labels: identifies the training data in a model manifest."""
        h = hashlib.sha256()
        h.update("\n".join(self.smiles).encode())
        h.update(",".join(self.targets).encode())
        h.update(np.ascontiguousarray(self.Y, dtype=np.float64).tobytes())
        return h.hexdigest()


def read_table(path: str | Path, targets: list[str] | tuple[str, ...] = (),
               smiles_column: str = "smiles") -> MoleculeTable:
    """Read ``path``; require the SMILES column and every target column (numbers or empty)."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"{path}: no such file")
    try:
        df = pd.read_csv(path, dtype={smiles_column: str}, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInput(f"{path}: not a readable CSV file ({first})") from None
    columns = list(df.columns)
    if smiles_column not in columns:
        raise InvalidInput(f"{path}: no column {smiles_column!r} (columns: {', '.join(map(str, columns))})")
    missing = [t for t in targets if t not in columns]
    if missing:
        raise InvalidInput(f"{path}: no target column {missing[0]!r} (columns: {', '.join(map(str, columns))})")
    Y = np.zeros((len(df), len(targets)))
    for j, t in enumerate(targets):
        values = pd.to_numeric(df[t], errors="coerce")
        bad = values.isna() & df[t].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise InvalidInput(f"{path}: line {row + 2}, column {t!r}: {df[t].iloc[row]!r} is not a number")
        Y[:, j] = values.to_numpy(dtype=float)
    smiles = ["" if pd.isna(s) else str(s) for s in df[smiles_column]]
    log.info("read %d rows from %s", len(smiles), path)
    return MoleculeTable(path=path, smiles=smiles, targets=list(targets), Y=Y)


def csv_line(row: int) -> int:
    """CSV line number (header is line 1) of 0-based data row ``row``."""
    return row + 2
