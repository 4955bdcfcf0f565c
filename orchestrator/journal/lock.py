"""The store's runner lock: one process at a time runs a campaign, and readers can tell whether one does.

Why a file beside the store (``<store>.lock``) and not the store itself: ``run`` must refuse a second
runner *before* it opens any instrument — and before the journal exists, for a new campaign — so the lock
cannot wait for the journal. The kernel drops the lock when its process dies (even by ``kill -9``), so a
crashed run never leaves a campaign locked. A runner also locks the journal file once it exists, since the
lock file can be deleted under a running campaign (two runners once wrote one journal that way).
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from labloop.core.errors import JournalError

log = logging.getLogger(__name__)


def lock_path(store: Path) -> Path:
    """Where the lock of ``store`` lives."""
    return store.with_name(store.name + ".lock")


class RunnerLock:
    """What :func:`sole_runner` holds: the lock file, and once the journal exists the journal file too."""

    def __init__(self, store: Path) -> None:
        self.store = store
        self._journal_fd: int | None = None

    def hold_journal(self) -> None:
        """Lock the journal file itself (a no-op once held, or while it does not exist yet): the lock file may
        be deleted under a running campaign (it stays beside the store when nothing runs), and a second
        runner would then take a new one; the journal file cannot be replaced without losing the campaign.
        flock, not SQLite's own fcntl locks, so the two never interfere; the descriptor stays open until the
        runner ends, after the journal is closed."""
        if self._journal_fd is not None or not self.store.exists():
            return
        try:
            fd = os.open(self.store, os.O_RDONLY)
        except OSError as exc:
            raise JournalError(f"{self.store}: cannot use this store: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise JournalError(f"{self.store}: {another_runner(self.store)} is running this campaign") from None
        self._journal_fd = fd

    def release(self) -> None:
        if self._journal_fd is not None:
            os.close(self._journal_fd)
            self._journal_fd = None


@contextmanager
def sole_runner(store: Path) -> Iterator[RunnerLock]:
    """Hold the store's lock while a run uses it; a second ``run``/``resume`` is refused (JournalError). The
    caller calls :meth:`RunnerLock.hold_journal` once it has created a new journal."""
    path = lock_path(store)
    folder_made = not store.parent.exists()
    made = not path.exists()
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise JournalError(f"{store}: cannot use this store: {exc.strerror} ({path})") from None
    lock = RunnerLock(store)
    locked = False
    try:
        if not _take(fd):
            raise JournalError(f"{store}: {another_runner(store)} is running this campaign")
        if os.fstat(fd).st_ino != _inode(path):  # a refused run removed the file between our open and our lock
            raise JournalError(f"{store}: another labloop process started on this campaign at the same moment: "
                               "try again")
        locked = True
        lock.hold_journal()  # an existing journal: refused here if a runner holds it, before any instrument
        yield lock
    finally:
        lock.release()
        if locked and made and not store.exists():  # refused before the journal was created: nothing is left
            path.unlink(missing_ok=True)  # (a second runner meanwhile was refused by the lock it tried)
            if folder_made:
                with suppress(OSError):  # not empty: something else was written there
                    store.parent.rmdir()
        os.close(fd)


#: how often, and how far apart, a run tries the lock before it is refused: ``being_run`` (the dashboard asks
#: ten times a second) holds a shared lock for microseconds, which must not turn a resume away
LOCK_TRIES, LOCK_RETRY_S = 5, 0.01


def _take(fd: int) -> bool:
    """Whether this process now holds the exclusive lock on ``fd`` (a few tries, see LOCK_TRIES)."""
    for attempt in range(LOCK_TRIES):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if attempt < LOCK_TRIES - 1:
                time.sleep(LOCK_RETRY_S)
    return False


def _inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


def being_run(store: Path) -> bool:
    """Whether a process holds the store's runner lock right now (a live ``run`` or ``resume``): its lock file's,
    or, that file deleted under a live run, the runner's own lock on the journal (:func:`_flock_holder`). Why both:
    a lab manager's clean-up of "stale" lock files on a shared PC made ``log`` and the dashboard call a live run
    killed, its rig perhaps unsafe, and ``log --follow`` stop, while the run went on (a trial)."""
    with suppress(OSError):  # no lock file: never run by this version, run elsewhere, or deleted
        fd = os.open(lock_path(store), os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
    return _flock_holder(store) is not None


def another_runner(store: Path) -> str:
    """``another labloop process (pid 1234)``: the process that holds ``store``'s lock file or journal, by the
    kernel's lock table, or without the pid where the table does not say. Why: a lab manager on a shared PC was told
    another process ran the campaign, and not which one to look for (a trial)."""
    pid = _flock_holder(lock_path(store)) or _flock_holder(store)
    return "another labloop process" + (f" (pid {pid})" if pid else "")


#: the kernel's table of the file locks held now (Linux)
PROC_LOCKS = Path("/proc/locks")


def _flock_holder(path: Path) -> int | None:
    """The pid of the process holding an exclusive flock on ``path`` (a runner's, :func:`sole_runner`), read from
    :data:`PROC_LOCKS` by the file's device and inode; None when none does, or where there is no such table (or it
    gives no pid). Why not a try of the lock for the journal, as :func:`being_run` tries the lock file's: that opens
    the journal, and closing any descriptor of it drops every SQLite lock this process holds on it (POSIX locks
    are per process), which a dashboard reading the journal holds."""
    try:
        stat = os.stat(path)
        table = PROC_LOCKS.read_text()
    except OSError:
        return None
    where = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:5678 0 EOF"; a process waiting for a lock has "->" after the number
    for fields in (line.split() for line in table.splitlines()):
        if len(fields) >= 6 and fields[1:4] == ["FLOCK", "ADVISORY", "WRITE"] and fields[5] == where:
            return int(fields[4]) if fields[4].isdigit() and int(fields[4]) > 0 else 0
    return None
