"""Which labloop this is, as one string: what a journal records of the code that ran a campaign
(orchestrator/journal/store.py) and what the workers of a Dask cluster are asked at connect (surrogate/compute.py),
so that a worker running another labloop is seen before its tasks fail on it."""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path


def code_version() -> str:
    """The installed labloop version, plus the git revision when running from a checkout."""
    try:
        version = metadata.version("labloop")
    except metadata.PackageNotFoundError:
        version = "unknown"
    try:
        git = subprocess.run(["git", "-C", str(Path(__file__).parent), "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return version
    return f"{version} (git {git.stdout.strip()})" if git.returncode == 0 else version
