"""A Dask preload for the workers of a LocalCluster labloop starts (surrogate/compute.py): they ignore Ctrl-C.

Why a preload: a terminal's Ctrl-C reaches every process of its group, and a worker it ended died mid-task with a
page of tracebacks while labloop closes the cluster itself. The workers start with SIGINT blocked (the threads that
spawn them block it: compute._workers_ignore_ctrl_c), so a Ctrl-C before this runs waits, and is dropped here.
"""

from __future__ import annotations

import signal
from typing import Any


def dask_setup(worker: Any) -> None:
    """Run by each worker as it starts, in its main thread (Dask's preload hook)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
