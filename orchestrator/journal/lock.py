"""The store's runner lock: one process at a time runs a campaign, and readers can tell whether one does.

Why a file beside the store (``<store>.lock``) and not the store itself: ``run`` must refuse a second
runner *before* it opens any instrument — and before the journal exists, for a new campaign — so the lock
cannot wait for the journal. The kernel drops the lock when its process dies (even by ``kill -9``), so a
crashed run never leaves a campaign locked.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from labloop.core.errors import JournalError

log = logging.getLogger(__name__)


def lock_path(store: Path) -> Path:
    """Where the lock of ``store`` lives."""
    return store.with_name(store.name + ".lock")


@contextmanager
def sole_runner(store: Path) -> Iterator[None]:
    """Hold the store's lock while a run uses it; a second ``run``/``resume`` is refused (JournalError)."""
    path = lock_path(store)
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise JournalError(f"{store}: cannot use this store: {exc.strerror} ({path})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JournalError(f"{store}: another labloop process is running this campaign") from None
        yield
    finally:
        os.close(fd)


def being_run(store: Path) -> bool:
    """Whether a process holds the store's runner lock right now (a live ``run`` or ``resume``)."""
    try:
        fd = os.open(lock_path(store), os.O_RDONLY)
    except OSError:
        return False  # no lock file: never run by this version, or run elsewhere
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
