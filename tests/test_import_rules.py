"""The layers import in one direction only (docs/architecture.md): every import of every module of labloop,
type-only ones and those inside functions included, is checked against the table below.

Why a test: an upward import compiles and runs; it only shows months later, when the simulator is on the
production path or a planner needs the whole campaign. This test fails on the first one.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "instruments", "surrogate", "planners", "protocols", "sim", "orchestrator")

#: which labloop packages each layer may import (its own always allowed)
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "instruments": {"core"},
    "surrogate": {"core"},
    "planners": {"core", "surrogate"},
    "protocols": {"core", "instruments"},
    "sim": {"core", "instruments", "surrogate"},
    "orchestrator": {"core", "instruments", "surrogate", "planners", "protocols", "sim"},
}
#: inside orchestrator/, the sub-layers from the bottom up: each may import those listed
ORCHESTRATOR: dict[str, set[str]] = {
    "console": set(),
    "config": set(),
    "journal": {"config"},
    "report": {"config", "journal"},
    "potential_table": {"config"},
    "learning": {"config", "journal"},
    "loop": {"console", "config", "journal", "learning"},
    "compose": {"config", "loop"},
    "backtest": {"console", "config", "journal", "potential_table", "learning", "loop"},
    "dashboard": {"config", "journal"},
    "candidates": {"config", "journal", "potential_table", "learning", "loop"},
    "cli": {"console", "config", "journal", "report", "potential_table", "learning", "loop", "compose", "dashboard",
            "backtest", "candidates"},
}
#: the only orchestrator modules that may import the simulated world: the composition module (it starts the
#: emulators of a dry run), the backtest engine and command (simulated campaigns against a table of truths),
#: the `labloop sim` / `drivers check` commands (they serve emulators), and the campaign schema (it validates
#: world.truth against the world's own tables of solvents and groups)
SIM_IMPORTERS = {"orchestrator.compose", "orchestrator.backtest",
                 "orchestrator.cli.instruments", "orchestrator.config.campaign"}


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, list[str]]]:
    """Every import statement of ``path`` that reaches into labloop: its line and what it names (without
    the ``labloop.`` prefix; ``from labloop.orchestrator import console`` names ``orchestrator.console``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        targets = [name.removeprefix("labloop.") for name in names if name.startswith("labloop.")]
        if targets:
            found.append((node.lineno, targets))
    return found


def violations(root: Path) -> list[str]:
    """Every forbidden import under ``root`` (a checkout), one ``file:line: a imports b`` each."""
    problems = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            module = _module_name(path, root)
            for line, targets in _imports(path):
                bad = [target for target in targets if not _allowed(module, target)]
                if bad:
                    problems.append(f"{path.relative_to(root)}:{line}: {module} imports labloop.{bad[0]}")
    return problems


def _allowed(module: str, target: str) -> bool:
    layer, other = module.split(".")[0], target.split(".")[0]
    if other not in PACKAGES:
        return True  # labloop.data and the like: package data, no code
    if other != layer and other not in ALLOWED[layer]:
        return False
    if layer == "orchestrator" and other == "sim":
        return any(module == name or module.startswith(name + ".") for name in SIM_IMPORTERS)
    if layer == other == "orchestrator":
        mine, theirs = _sublayer(module), _sublayer(target)
        if theirs is None or mine is None:
            return True  # ``import labloop.orchestrator`` itself, or the package's own __init__
        return theirs == mine or theirs in ORCHESTRATOR[mine]
    return True


def _sublayer(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ORCHESTRATOR else None


def test_every_layer_imports_only_downwards() -> None:
    assert violations(ROOT) == []


def test_every_orchestrator_module_has_a_sublayer() -> None:
    """A new module of orchestrator/ must be placed in the table, or the rules above would not see it."""
    unplaced = [path.relative_to(ROOT).as_posix() for path in (ROOT / "orchestrator").rglob("*.py")
                if path != ROOT / "orchestrator" / "__init__.py" and _sublayer(_module_name(path, ROOT)) is None]
    assert unplaced == []


@pytest.mark.parametrize(("module", "line"), [
    ("instruments/bad.py", "from labloop.sim.world import World"),
    ("instruments/bad.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from labloop.sim import cell"),
    ("planners/bad.py", "def f():\n    from labloop.orchestrator.config.campaign import Campaign"),
    ("protocols/bad.py", "import labloop.orchestrator.journal.store"),
    ("surrogate/bad.py", "from labloop.planners import PlannerSettings"),
    ("orchestrator/loop/bad.py", "from labloop.sim.lab import SimulatedLab"),
    ("orchestrator/journal/bad.py", "from labloop.orchestrator.loop.runner import Runner"),
    ("core/bad.py", "from labloop.instruments.registry import resolve"),
])
def test_the_rules_catch_an_upward_import(tmp_path: Path, module: str, line: str) -> None:
    """The checker itself: one forbidden import, plain, type-only or inside a function, is found."""
    for package in PACKAGES:
        (tmp_path / package).mkdir()
    (tmp_path / module).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / module).write_text(line + "\n")
    assert len(violations(tmp_path)) == 1


def test_the_command_line_starts_without_tensorflow(tmp_path):
    # TensorFlow takes seconds to import; every `labloop` command paid them once a campaign check imported
    # the ensemble module for one constant (the CLI tests' subprocesses doubled in time). It loads only where
    # a model is trained or predicts.
    # Reading a truth or past-measurements table did the same for another constant (4-5 s of every backtest's start).
    table = tmp_path / "truth.csv"
    table.write_text("smiles,e_v\nCCO,4.5\nCCO,4.9\nc1ccccc1,4.2\n")  # a repeat spread beyond REPEAT_SPREAD
    code = ("import sys, pathlib, labloop.orchestrator.cli.main, labloop.orchestrator.cli.run, "
            "labloop.orchestrator.cli.campaign, labloop.orchestrator.cli.backtest; "
            "from labloop.orchestrator.potential_table import read_truth; "
            f"read_truth(pathlib.Path({str(table)!r}), 'e_v'); "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_what_shows_a_journal_starts_without_the_campaigns_checks():
    # `labloop log`, `report` and the dashboard read a journal's objective: importing it from the campaign model
    # loaded the planners, scikit-optimize and the driver registry too (a dashboard started in 2.6 s, 2.5 of them
    # importing those), orchestrator/config/objective.py. `labloop log` and `report` too: they lived beside `validate`,
    # whose checks doubled the start of every `log` an operator typed (2.1 s, 0.95 s without)
    code = ("import sys, labloop.orchestrator.journal.view, labloop.orchestrator.journal.plot_data, "
            "labloop.orchestrator.dashboard.app, labloop.orchestrator.cli.journal; "
            "print(sorted(m for m in ('skopt', 'labloop.planners', 'labloop.orchestrator.config.campaign', "
            "'tensorflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_planners_and_the_campaigns_checks_import_without_scikit_optimize():
    # scikit-optimize (with scikit-learn) takes about a second to import: only a condition space built or an
    # acquisition computed loads it (planners/conditions.py), not a command's start nor a campaign read
    code = ("import sys, labloop.planners, labloop.orchestrator.compose, labloop.orchestrator.cli.run, "
            "labloop.orchestrator.cli.campaign; "
            "print(sorted(m for m in ('skopt', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_saved_model_loads_and_predicts_without_tensorflow(tiny_model_dir):
    # a process that only predicts (a campaign loading its prior or a retrained model, every Dask worker,
    # `labloop surrogate predict`) paid TensorFlow's import, ~5 s of CPU and ~0.5 GB, for a numpy forward pass
    code = ("import sys; from labloop.surrogate.persistence import load_ensemble; "
            f"p = load_ensemble({str(tiny_model_dir)!r}).predict(['CCO', 'c1ccccc1O']); "
            "print(p.mean.shape, sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "(2, 2) []"
