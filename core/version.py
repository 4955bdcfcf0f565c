"""Which labloop this is: as one string, what a journal records of the code that ran a campaign
(orchestrator/journal/store.py); with a digest of its source files, what the workers of a Dask cluster are asked at
connect (surrogate/compute.py), so that a worker running another labloop is seen before its tasks fail on it."""

from __future__ import annotations

import functools
import hashlib
import platform
import subprocess
from importlib import metadata, util
from pathlib import Path

#: the installed packages whose versions a run records (:func:`runtime_versions`)
RUNTIME_PACKAGES = ("tensorflow", "rdkit", "numpy", "scipy", "scikit-learn", "scikit-optimize", "pandas", "pyserial")
#: labloop's layers, the packages whose source files make :func:`source_digest`
LAYERS = ("core", "instruments", "surrogate", "planners", "protocols", "sim", "orchestrator")


def code_version() -> str:
    """The installed labloop version, plus the git revision when running from a labloop checkout: one whose top
    folder holds the package's layers (this file's ``core`` among them). Why that check: an installed copy in a
    ``.venv`` inside another git repository took that repository's commit for labloop's (a data trial)."""
    try:
        version = metadata.version("labloop")
    except metadata.PackageNotFoundError:
        version = "unknown"
    here = Path(__file__).resolve().parent
    try:
        top = subprocess.run(["git", "-C", str(here), "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                             timeout=5, check=False)
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() != here.parent:
            return version
        git = subprocess.run(["git", "-C", str(here), "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return version
    return f"{version} (git {git.stdout.strip()})" if git.returncode == 0 else version


def runtime_versions() -> dict[str, str]:
    """What each ``run`` event of a journal records of the code that ran it: labloop's :func:`code_version`, Python's
    and the libraries the numbers depend on (the surrogate's, the planner's, the analysis'). Why each run: a
    campaign resumed under another labloop looked as if one version ran it, and no library's version was kept (a
    data trial). ``labloop_source`` is :func:`source_digest`: an installed copy without ``git`` says only its version
    string, which two copies of different code may share (a PI's trial)."""
    versions = {"labloop": code_version(), "labloop_source": source_digest(), "python": platform.python_version()}
    for package in RUNTIME_PACKAGES:
        versions[package] = installed_version(package) or "not installed"
    return versions


def installed_version(*distributions: str) -> str | None:
    """The version of the first of ``distributions`` installed here (a package some install under several names:
    TensorFlow's CPU builds), None for none: the one reading of installed versions, for journals, model manifests and
    a Dask worker's comparison."""
    for distribution in distributions:
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return None


@functools.cache
def source_digest() -> str:
    """The first 12 hex digits of a SHA-256 over labloop's own source files (each layer's ``.py`` files, by their
    place in the package). Why not :func:`code_version` alone: a worker started from the same checkout on a machine
    without ``git`` says only the package version, and was warned of as another labloop (a trial), while two
    checkouts at different commits may carry one version string."""
    digest = hashlib.sha256()
    for layer in LAYERS:
        spec = util.find_spec(f"labloop.{layer}")
        for folder in (spec.submodule_search_locations or []) if spec else []:
            for path in sorted(Path(folder).rglob("*.py")):
                digest.update(f"{layer}/{path.relative_to(folder).as_posix()}\n".encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def code_identity() -> tuple[str, str]:
    """What a Dask worker is asked at connect: :func:`code_version` to name it by, :func:`source_digest` to compare."""
    return code_version(), source_digest()
