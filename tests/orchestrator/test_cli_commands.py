"""``labloop --help`` lists every command without importing any (a newcomer waited 5 s for it on 2 cores:
every command's module was imported for its one line), and every listed command is really there."""

from __future__ import annotations

import subprocess
import sys

import click

from labloop.orchestrator.cli.commands import COMMANDS, LazyGroup, docs_folder
from labloop.orchestrator.cli.main import app, main

HEAVY = ("scipy", "sklearn", "skopt", "pandas", "rdkit", "tensorflow", "dask")


def test_help_lists_every_command_without_importing_the_heavy_libraries() -> None:
    script = ("import sys\nfrom labloop.orchestrator.cli.main import main\ncode = main(['--help'])\n"
              f"print(code, [m for m in {HEAVY!r} if m in sys.modules])")
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    *listing, last = shown.stdout.strip().splitlines()
    assert last == "0 []"
    start = listing.index("Commands:") + 1
    commands = listing[start:listing.index("", start)]  # then the manual's folder (orchestrator/cli/commands.py)
    assert [line.split()[0] for line in commands] == sorted(COMMANDS)
    assert listing[-1].startswith(f"Documentation: {docs_folder()}/ (start with running.md")
    assert all(line.split(None, 1)[1] == COMMANDS[line.split()[0]].summary for line in commands)


def test_h_is_help_for_every_command() -> None:
    """``labloop validate -h`` was "No such option '-h'" (a newcomer's trial). In a process of its own, as a user's
    command runs: click keeps a command's help option once made, and a test that built a command's context directly
    (tests/orchestrator/test_approval.py) made it without the group's -h."""
    script = ("import contextlib, io\nfrom labloop.orchestrator.cli.main import main\n"
              "from labloop.orchestrator.cli.commands import COMMANDS\n"
              "for args in [['-h'], *([name, '-h'] for name in sorted(COMMANDS)), ['surrogate', 'train', '-h']]:\n"
              "    out = io.StringIO()\n"
              "    with contextlib.redirect_stdout(out):\n"
              "        code = main(args)\n"
              "    said = out.getvalue()\n"
              "    print(' '.join(args), code, said.startswith('Usage: labloop'), '--rows' in said)\n")
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    lines = shown.stdout.strip().splitlines()
    assert len(lines) == len(COMMANDS) + 2, shown.stdout
    assert all(line.split()[-3:-1] == ["0", "True"] for line in lines), shown.stdout
    assert lines[-1] == "surrogate train -h 0 True True", shown.stdout


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


def _interrupted_inside_a_scope(*_args, **_kwargs):
    """What TensorFlow does when a Ctrl-C lands between a device scope's enter and exit: the scope's exit
    raises RuntimeError while the KeyboardInterrupt unwinds (a race no real run produces on demand)."""
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        raise RuntimeError("Exiting device scope without proper scope nesting") from None


def test_a_ctrl_c_that_a_library_turns_into_another_error_is_still_an_interruption(labloop, small_csv, tmp_path,
                                                                                     monkeypatch) -> None:
    import labloop.surrogate.training as training

    monkeypatch.setattr(training, "train_from_table", _interrupted_inside_a_scope)
    result = labloop("surrogate", "train", small_csv, "-t", "ie_ev", "-o", tmp_path / "model", "--epochs", "1")
    assert (result.returncode, result.stderr.strip()) == (130, "aborted"), result.stderr
    assert not (tmp_path / "model").exists()


def test_a_bug_raised_without_a_ctrl_c_is_still_said_as_a_bug(labloop, small_csv, tmp_path, monkeypatch) -> None:
    import labloop.surrogate.training as training

    def broken(*_args, **_kwargs):
        raise RuntimeError("something labloop got wrong")

    monkeypatch.setattr(training, "train_from_table", broken)
    result = labloop("surrogate", "train", small_csv, "-t", "ie_ev", "-o", tmp_path / "model", "--epochs", "1")
    assert result.returncode == 1 and "unexpected RuntimeError: something labloop got wrong" in result.stderr


def test_a_verbosity_flag_after_the_command_says_where_it_goes(labloop) -> None:
    """``labloop surrogate predict MODEL LIB -o X -v`` said only "No such option '-v'" (a Dask operator's trial):
    -v and -vv are labloop's own, before the command, and the line says so; any other unknown option as before."""
    for flag in ("-v", "-vv"):
        result = labloop("log", flag, "x.db")
        assert result.returncode == 2 and result.stderr == (
            "error: labloop log: No such option '-v': -v and -vv go before the command, labloop -v log ...\n")
    assert labloop("log", "--bogus", "x.db").stderr == "error: labloop log: No such option '--bogus'.\n"
