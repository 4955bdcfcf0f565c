"""The installed entry points of a group, read once while nothing is installed or removed.

Why a cache: the driver and emulator registries (instruments/registry.py, sim/emulators.py) are asked for a driver
dozens of times while one campaign is checked and composed (every instrument's options, kinds, rates and emulator),
and each ``importlib.metadata.entry_points`` call opens and parses the ``entry_points.txt`` of every installed
distribution: 5 ms each with the test extras installed, about 0.25 s of every ``labloop validate`` and ``run``, and
the largest single cost of the test suite after imports. Why not ``functools.cache`` alone: a plug-in installed while
a process runs (a dashboard or a test that installs one) must still be found, so the cache is keyed by what an install
changes: ``sys.path`` and, for each of its folders, the folder's modification time and number of entries (a new
``*.dist-info`` adds one; the count catches two installs within one tick of the file system's clock).
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import EntryPoint, entry_points
from stat import S_ISDIR

_cache: dict[str, tuple[tuple[object, ...], tuple[EntryPoint, ...]]] = {}


def _installed_state() -> tuple[object, ...]:
    """What installing or removing a distribution on ``sys.path`` changes (see the module's docstring)."""
    state: list[object] = []
    for entry in sys.path:
        folder = entry or "."  # "" is the current folder
        try:
            found = os.stat(folder)
            count = len(os.listdir(folder)) if S_ISDIR(found.st_mode) else -1
        except OSError:
            state.append((entry, None))
            continue
        state.append((entry, found.st_mtime_ns, count))
    return tuple(state)


def group_entry_points(group: str) -> tuple[EntryPoint, ...]:
    """The entry points of ``group`` that ``importlib.metadata`` finds now, read again only after a distribution was
    installed or removed on ``sys.path``."""
    state = _installed_state()
    cached = _cache.get(group)
    if cached is None or cached[0] != state:
        cached = _cache[group] = state, tuple(entry_points(group=group))
    return cached[1]
