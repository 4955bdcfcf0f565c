"""Files: the one way labloop writes a file that must be whole or absent (a temporary sibling, then a rename),
and where a file is after the folder it was recorded beside moved.

Why a rename: ``os.replace`` within one directory is atomic, so a reader (or a resumed run) sees the old
file or the complete new one, never half of one, whatever interrupts the writer.
"""

from __future__ import annotations

import filecmp
import glob
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


def _umask() -> int:
    """The process's umask (read by setting it, so once, at import, before any thread writes files)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: the mode a file created with open() gets: what the finished file is given (mkstemp's is owner-only)
FILE_MODE = 0o666 & ~_umask()


@contextmanager
def atomic_write(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` (hidden, named after it, created empty and private) to write;
    when the block ends it is given the mode any new file gets (the user's umask: results the lab's other
    accounts can read, as the models beside them) and renamed onto ``path``, and if the block raises it is
    removed. The parent folder is created if missing. Close any file opened on the temporary path inside
    the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def nearest_existing(path: Path) -> Path:
    """``path`` if it exists, else its nearest existing parent: where making ``path`` would begin."""
    return next(p for p in (path, *path.parents) if p.exists())


def cannot_create_in(folder: Path) -> str | None:
    """Why no file can be made in ``folder`` (``no write permission``, the system's reason), None when one can: tried
    by making an unnamed one, since permissions alone miss a folder nothing is created in (/proc, even for root)."""
    try:
        with tempfile.TemporaryFile(dir=folder):  # O_TMPFILE where the system has it: no name appears
            pass
    except PermissionError:
        return "no write permission"
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def moved_along(path: Path, old_dir: Path, new_dir: Path) -> Path | None:
    """Where ``path`` (absolute, recorded while ``old_dir`` was where it was) is now if it moved or was copied with
    that folder (``old_dir`` -> ``new_dir``, everything kept where it was relative to it); None if nothing is
    there, if that is ``path`` itself (a file outside the folder that moved), or if ``path`` is still a file and
    the one there holds other bytes: no copy of it, only another file at the same relative place (a store copied
    to a folder beside a checkout took that checkout's data file for its prior, and a changed one was refused as
    "changed since its first run" while the journal's was there, intact: a trial). Why: a journal records absolute
    paths, and a lab moves or copies a campaign's whole folder (a new disk, a backup restored) and expects to go
    on there with the files that went with it, not with the originals it may delete next."""
    candidate = Path(os.path.normpath(new_dir / os.path.relpath(path, old_dir)))
    if candidate == path or not candidate.exists():
        return None
    if path.is_file() and candidate.is_file() and not filecmp.cmp(path, candidate, shallow=False):
        return None
    return candidate


#: a process id as :func:`scratch_prefix` writes it
_PID = re.compile(r"[0-9]{1,9}")


def scratch_prefix(prefix: str) -> str:
    """``prefix`` with this process's id: the start of the name of a scratch file or folder this process makes (a
    ``tempfile`` prefix), which :func:`remove_orphans` can tell from a live process's once the process is gone."""
    return f"{prefix}{os.getpid()}-"


def remove_orphans(folder: Path, prefix: str) -> None:
    """Remove from ``folder`` what killed processes left there: each file or folder named ``prefix<pid>-...``
    (:func:`scratch_prefix`) whose process no longer runs. Why: a process killed with SIGKILL removes nothing it
    made, and its scratch (a model copy of 77 MB, a report's staging folder beside the report) stays for good;
    another process's that still runs is left alone, whoever's it is."""
    for path in folder.glob(f"{glob.escape(prefix)}*"):
        pid = path.name[len(prefix):].split("-")[0]
        if _PID.fullmatch(pid) is None or int(pid) == 0:
            continue  # not named by scratch_prefix (a pid is at most 9 digits: /proc/sys/kernel/pid_max)
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            try:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
            except OSError as exc:  # another user's, in a shared temporary folder: theirs to remove
                log.debug("left %s, which a process that no longer runs left: %s", path, exc)
                continue
            log.info("removed %s, which a process that no longer runs left", path)
        except PermissionError:
            continue  # another user's process, alive
