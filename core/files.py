"""The one way labloop writes a file that must be whole or absent: a temporary sibling, then a rename.

Why a rename: ``os.replace`` within one directory is atomic, so a reader (or a resumed run) sees the old
file or the complete new one, never half of one, whatever interrupts the writer.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_write(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` (hidden, named after it, created empty and private) to write;
    when the block ends it is renamed onto ``path``, and if the block raises it is removed. The parent
    folder is created if missing. Close any file opened on the temporary path inside the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
