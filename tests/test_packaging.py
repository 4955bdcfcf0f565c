"""The built wheel, not only the editable install, holds every labloop package and the bundled data."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["core", "orchestrator", "orchestrator/cli", "orchestrator/config", "orchestrator/journal",
            "orchestrator/learning", "orchestrator/loop", "surrogate", "planners", "instruments", "protocols", "sim",
            "data", "examples"]


def test_wheel_installs_and_runs(tmp_path):
    wheels = tmp_path / "wheels"
    # built from a copy: setuptools builds in the source tree, and left a build/ folder in the checkout the tests ran in
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "dist", "runs", "*.egg-info",
                                                                "__pycache__", ".*_cache", "*.db*"))
    # offline: the environment's own setuptools and wheel (test extras) build it, no download
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                    str(source)], check=True, capture_output=True, timeout=600)
    wheel = next(wheels.glob("labloop-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for pkg in PACKAGES:
        assert f"labloop/{pkg}/__init__.py" in names
    assert "labloop/data/ocelot_chromophore_v1_ie_ea.csv" in names and "labloop/data/SOURCES.md" in names
    # the manual, which messages name (docs/drivers.md), for an installed package on an offline lab PC
    assert {f"labloop/docs/{p.name}" for p in (ROOT / "docs").iterdir()} <= set(names)
    assert {f"labloop/orchestrator/dashboard/static/{n}" for n in ("index.html", "dashboard.js", "dashboard.css")} \
        <= set(names)  # the dashboard's page ships inside the package: nothing is fetched at run time
    assert not any(n.startswith(("sim/", "instruments/", "tests/", "labloop/tests/")) for n in names)
    # the examples `labloop init` writes out, and nothing else of examples/ (a plug-in package, a run's files)
    assert {n for n in names if n.startswith("labloop/examples/")} == {
        f"labloop/examples/{n}" for n in ("__init__.py", "campaign.yaml", "lab-grade.yaml", "library.csv",
                                          "protocols/cv_screen.yaml", "protocols/cv_lab_grade.yaml")}
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)  # the MIT text the metadata names

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=600)
    probe = (
        "import labloop.surrogate.featurize as f, labloop.data as d, labloop.orchestrator.cli.main as cli\n"
        f"assert f.__file__.startswith({str(site)!r}), f.__file__\n"
        "assert d.bundled_path().is_file()\n"
        "assert f.featurize(['c1ccccc1']).n_valid == 1\n"
        f"assert cli.main(['init', {str(tmp_path / 'lab')!r}]) == 0\n"  # the examples, from the package alone
        f"written = open({str(tmp_path / 'lab' / 'campaign.yaml')!r}).read()\n"
        "import json\n"
        "assert 'file: ' + json.dumps(str(d.bundled_path())) in written\n"
        f"assert str(d.bundled_path()).startswith({str(site)!r})\n"
        "import contextlib, io\n"
        "helped = io.StringIO()\n"
        "with contextlib.redirect_stdout(helped):\n"
        "    assert cli.main(['--help']) == 0\n"
        f"assert 'Documentation: {site / 'labloop' / 'docs'}/ (start with running.md' in helped.getvalue()\n"
        "raise SystemExit(cli.main(['surrogate', '--help']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "screen" in proc.stdout and "train" in proc.stdout


def test_a_dependency_that_cannot_be_imported_is_said_as_the_environments(tmp_path):
    """pip allowed pyarrow 26 beside numpy 1.26, and every command said "unexpected ImportError: pyarrow requires NumPy
    2.0 or newer ... (a labloop bug; run with -vv to see where)", where -vv showed nothing (a packaging trial). A
    broken pyarrow ahead of the real one on the path, as such an environment imports it."""
    broken = tmp_path / "path" / "pyarrow"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text('raise ImportError("pyarrow requires NumPy 2.0 or newer, found 1.26.4")\n')
    proc = subprocess.run([sys.executable, "-m", "labloop.orchestrator.cli.main", "validate",
                           str(ROOT / "examples" / "campaign.yaml"), "--dry-run"],
                          env={**os.environ, "PYTHONPATH": str(tmp_path / "path")}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1
    said = " ".join(proc.stderr.split())
    assert said.startswith("error: a package labloop needs cannot be imported: pyarrow requires NumPy 2.0 or newer, "
                           "found 1.26.4 (") and "pip check" in said and "labloop bug" not in said, said
    # -vv shows where: the command's module was imported before the group set up logging, and showed nothing
    verbose = subprocess.run([sys.executable, "-m", "labloop.orchestrator.cli.main", "-vv", "validate",
                              str(ROOT / "examples" / "campaign.yaml"), "--dry-run"],
                             env={**os.environ, "PYTHONPATH": str(tmp_path / "path")}, capture_output=True, text=True,
                             timeout=300)
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr and str(broken) in verbose.stderr, verbose.stderr


def _anchors(markdown: str) -> set[str]:
    """GitHub's ids of a markdown file's headings: lower case, punctuation dropped, spaces as hyphens."""
    import re

    lines, code = [], False
    for line in markdown.splitlines():
        code = code != line.startswith("```")
        if not code and line.startswith("#"):
            lines.append(line.lstrip("#").strip())
    return {re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-") for title in lines}


def test_every_relative_link_of_the_readme_and_docs_resolves():
    """The README was split into docs/*.md that link to each other: a link to a file or heading that is not there
    would send a newcomer nowhere."""
    import re

    broken = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                broken.append(f"{page.name}: {target}: no such file")
            elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked.read_text()):
                broken.append(f"{page.name}: {target}: no such heading")
    assert not broken, broken


def test_an_installed_copy_inside_another_git_repository_names_no_commit(tmp_path, older_labloop):
    """A labloop installed into a .venv inside some other git repository recorded that repository's commit as its
    own (a data trial): only a checkout whose top folder is labloop's names a commit."""
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    git("-c", "user.name=a", "-c", "user.email=a@b", "commit", "-q", "--allow-empty", "-m", "another project")
    ask = "from labloop.core.version import code_version; print(code_version())"
    said = subprocess.run([sys.executable, "-c", ask], env={**os.environ, "PYTHONPATH": str(older_labloop)},
                          capture_output=True, text=True, check=True, cwd=tmp_path)
    assert said.stdout.strip() == "0.0.1", said.stdout
