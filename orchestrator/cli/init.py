"""``labloop init FOLDER``: a folder of example campaigns to start from, written from the copies the package ships.

Why: the examples lived only in a clone of the repository (``examples/``), so a lab that installed labloop as a
package had no campaign file to dry-run or edit, and a copy of one out of the clone named the prior data by
``../data/...``, which is not there (a packaging trial). The files written are the repository's examples (two
campaigns, their library and their protocols), with the prior named by the path of the data labloop ships
(:func:`labloop.data.bundled_path`) and the commands of their comments naming the folder written. Nothing is
written over: a folder that holds any of those files is refused whole.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import tempfile
from importlib import resources
from pathlib import Path

import click

from labloop.core.files import FILE_MODE
from labloop.core.text import shell_word
from labloop.data import bundled_path
from labloop.orchestrator import console

log = logging.getLogger(__name__)

#: the files written, by their place in the package's ``labloop.examples`` (the repository's ``examples/``)
EXAMPLE_FILES = ("campaign.yaml", "lab-grade.yaml", "library.csv", "protocols/cv_screen.yaml",
                 "protocols/cv_lab_grade.yaml")
#: how the examples name the bundled prior data, relative to the repository's examples/
PRIOR_IN_REPOSITORY = "../data/ocelot_chromophore_v1_ie_ea.csv"


def example_text(name: str, folder: Path) -> str:
    """The example file ``name`` as written into ``folder``: the prior named by the bundled data's path, and the
    comments' ``examples/...`` by the absolute path of the file in ``folder``."""
    text = resources.files("labloop.examples").joinpath(name).read_text(encoding="utf-8")
    if not name.endswith(".yaml") or name.startswith("protocols/"):
        return text
    if PRIOR_IN_REPOSITORY not in text:
        raise RuntimeError(f"the packaged {name} names its prior otherwise")
    # quoted: a path with a comma, ' #' or a brace ends a YAML flow mapping's value early (a review)
    # the comments' commands by absolute path, each quoted whole: they are run from anywhere, and a folder named
    # relative to where init ran, or with a space, read wrong there (a newcomer's trial)
    return re.sub(r" examples/(\S+)", lambda m: " " + shell_word(str(folder.absolute() / m.group(1))),
                  text.replace(PRIOR_IN_REPOSITORY, json.dumps(str(bundled_path()))))


def _create(path: Path, text: str) -> None:
    """Write ``path`` whole, and only if nothing is there: a file made meanwhile by another hand is kept (linked into
    place, as Journal.create makes a journal)."""
    path.parent.mkdir(exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, FILE_MODE)
        try:
            os.link(tmp, path)
        except FileExistsError:  # a file made since the check: said by its name, not the temporary file's
            raise FileExistsError(errno.EEXIST, "made by another hand while init wrote: nothing written", str(path)) \
                from None
    finally:
        os.unlink(tmp)


@click.command(help="Write the example campaigns (a dry-run screen and a lab-grade one), their library and "
                    "protocols into FOLDER, to run as they are and edit from; nothing is written over.")
@click.argument("folder", metavar="FOLDER", type=click.Path(path_type=Path))
def init(folder: Path) -> None:
    # lexists: a symbolic link to nowhere is there too (os.link refused it, and the error named init's temporary file)
    taken = [name for name in EXAMPLE_FILES if os.path.lexists(folder / name)]
    if taken:
        raise click.BadParameter(f"{folder} holds {', '.join(taken)} already: nothing written (give another folder, "
                                 "or move those away)", param_hint="FOLDER")
    if folder.exists() and not folder.is_dir():
        raise click.BadParameter(f"{folder} is a file", param_hint="FOLDER")
    if not folder.parent.is_dir():
        raise click.BadParameter(f"{folder.parent}: no such folder (init makes FOLDER, not its parents)",
                                 param_hint="FOLDER")
    made = [p for p in (folder, folder / "protocols") if not p.exists()]
    written: list[Path] = []
    try:
        folder.mkdir(exist_ok=True)
        for name in EXAMPLE_FILES:
            _create(folder / name, example_text(name, folder))
            written.append(folder / name)
    except BaseException:  # a full disk, Ctrl-C, a file made meanwhile: no half a set of examples
        for path in written:
            path.unlink(missing_ok=True)
        for path in reversed(made):
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        raise
    log.info("wrote %s", ", ".join(map(str, written)))
    campaign = shell_word(str(folder / "campaign.yaml"))
    console.out.print(f"wrote {len(written)} files to {folder}: {', '.join(EXAMPLE_FILES)} (the prior data: the copy "
                      f"labloop ships, {bundled_path()})\nnext: labloop validate {campaign} --dry-run && labloop run "
                      f"{campaign} --dry-run", markup=False, highlight=False, soft_wrap=True)
