"""``labloop --help`` lists every command without importing any (a newcomer waited 5 s for it on 2 cores:
every command's module was imported for its one line), and every listed command is really there."""

from __future__ import annotations

import subprocess
import sys

import click

from labloop.orchestrator.cli.commands import COMMANDS, LazyGroup
from labloop.orchestrator.cli.main import app, main

HEAVY = ("scipy", "sklearn", "skopt", "pandas", "rdkit", "tensorflow", "dask")


def test_help_lists_every_command_without_importing_the_heavy_libraries() -> None:
    script = ("import sys\nfrom labloop.orchestrator.cli.main import main\ncode = main(['--help'])\n"
              f"print(code, [m for m in {HEAVY!r} if m in sys.modules])")
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    *listing, last = shown.stdout.strip().splitlines()
    assert last == "0 []"
    commands = listing[listing.index("Commands:") + 1:]
    assert [line.split()[0] for line in commands] == sorted(COMMANDS)
    assert all(line.split(None, 1)[1] == COMMANDS[line.split()[0]].summary for line in commands)


def test_every_listed_command_loads_and_answers_its_own_help(capsys) -> None:
    assert isinstance(app, LazyGroup)
    with click.Context(app) as ctx:
        for name in app.list_commands(ctx):
            command = app.get_command(ctx, name)
            assert isinstance(command, click.Command), name
            assert main([name, "--help"]) == 0
            assert f"Usage: labloop {name}" in capsys.readouterr().out
        assert app.get_command(ctx, "nope") is None
    assert main(["nope"]) == 2
    assert "No such command 'nope'" in capsys.readouterr().err
    for bare in ([], ["drivers"], ["surrogate"]):  # a group without its command shows its help, as --help does
        assert main(bare) == 0
        shown = capsys.readouterr()
        usage = " ".join(["Usage: labloop", *bare, "[OPTIONS] COMMAND"])
        assert shown.out.startswith(usage) and not shown.err
