"""The library's names of the molecules a journal holds, for every reader of it (``labloop log``, its ``--json``,
the dashboard, the report).

Why here and read from the library file, not journalled: planners see SMILES only, and a library's names are the
lab's, so they are looked up where a journal is shown; a library moved away since the run shows SMILES alone. Why
a cache: the dashboard and ``log --follow`` summarise the journal again at every change, and a library of tens of
thousands of rows would be read each time; the file is read again only when it changes (its size or time).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from labloop.core.errors import InputError
from labloop.surrogate.library_pipeline import library_format, read_chunks

log = logging.getLogger(__name__)

#: (path, smiles column) -> ((size, mtime_ns), names): the last reading of each library file
_READ: dict[tuple[str, str], tuple[tuple[int, int], dict[str, str]]] = {}


def library_names(library: dict[str, Any]) -> dict[str, str]:
    """SMILES -> name from the campaign's library (``library``: its config as journalled): a CSV's ``name`` column
    (any case), a .smi file's names; {} when it has none, or the file is gone or unreadable (a journal is shown
    with what it knows). Why: a chemist's library named its molecules, and the tables showed 230-character SMILES
    alone."""
    path, column = Path(str(library.get("file", ""))), str(library.get("smiles_column", "smiles"))
    try:
        stat = path.stat()
    except OSError:
        return {}
    key, version = (str(path), column), (stat.st_size, stat.st_mtime_ns)
    if (cached := _READ.get(key)) is not None and cached[0] == version:
        return cached[1]
    names = _read(path, column)
    _READ[key] = (version, names)
    return names


def _read(path: Path, column: str) -> dict[str, str]:
    """The names of ``path``'s rows by SMILES; a molecule written again keeps its first row's name, as each
    molecule is the first row's (validate says so, and the sample id is that row's): the last row's name was
    shown, which pointed an operator at another vial (a trial)."""
    try:
        if not path.is_file() or library_format(path) == "parquet":
            return {}
        return _first_names((s, n) for chunk in read_chunks(path, column)
                            for s, n in zip(chunk.smiles, chunk.names or [], strict=False))
    except (InputError, OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError):
        return {}


def _first_names(rows: Iterable[tuple[str, str]]) -> dict[str, str]:
    """SMILES -> the first non-empty name given to it by ``rows``."""
    names: dict[str, str] = {}
    for smiles, name in rows:
        if name:
            names.setdefault(smiles, name)
    return names
