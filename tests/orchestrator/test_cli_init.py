"""`labloop init FOLDER`: the example campaigns written out from the package, ready to validate and run, nothing
written over."""

from __future__ import annotations

import json

import yaml

from labloop.data import bundled_path
from labloop.orchestrator.cli.init import EXAMPLE_FILES, PRIOR_IN_REPOSITORY

from ..conftest import EXAMPLES


def test_init_writes_the_examples_which_validate_where_they_are(labloop, tmp_path):
    """A lab that installed the package had no example campaign, and one copied out of a clone named its prior by
    ../data/..., which was not there (a packaging trial)."""
    folder = tmp_path / "lab"
    result = labloop("init", folder)
    assert result.returncode == 0, result.stderr
    assert f"next: labloop validate {folder / 'campaign.yaml'} --dry-run" in " ".join(result.stdout.split())
    for name in EXAMPLE_FILES:
        original, written = (EXAMPLES / name).read_text(), (folder / name).read_text()
        if name in ("campaign.yaml", "lab-grade.yaml"):  # the prior by the bundled data's path, the comments' folder
            assert PRIOR_IN_REPOSITORY in original and PRIOR_IN_REPOSITORY not in written
            # quoted: a path with a comma or ' #' ends a YAML flow mapping's value early (a review)
            assert f"prior: {{file: {json.dumps(str(bundled_path()))}," in written
            assert yaml.safe_load(written)["prior"]["file"] == str(bundled_path())
            assert f"labloop validate {folder}/{name} --dry-run" in written
            original = (original.replace(PRIOR_IN_REPOSITORY, json.dumps(str(bundled_path())))
                        .replace(" examples/", f" {folder}/"))
        assert written == original, name
    for name in ("campaign.yaml", "lab-grade.yaml"):
        checked = labloop("validate", folder / name, "--dry-run")
        assert checked.returncode == 0, checked.stderr


def test_the_written_comments_name_each_file_whole_wherever_init_ran(labloop, tmp_path, monkeypatch):
    """`labloop init "../lab with space"` wrote `'../lab with space/'campaign.yaml` into the comments: right only from
    where init ran, and quoted by halves (a newcomer's trial)."""
    monkeypatch.chdir(tmp_path)
    assert labloop("init", "lab with space").returncode == 0
    written = (tmp_path / "lab with space" / "campaign.yaml").read_text()
    assert f"labloop validate '{tmp_path}/lab with space/campaign.yaml' --dry-run" in written


def test_init_writes_over_nothing(labloop, tmp_path):
    folder = tmp_path / "lab"
    folder.mkdir()
    (folder / "library.csv").write_text("smiles\nCCO\n")
    refused = labloop("init", folder)
    said = " ".join(refused.stderr.split())
    assert refused.returncode == 2 and "holds library.csv already: nothing written" in said, said
    assert sorted(p.name for p in folder.iterdir()) == ["library.csv"]
    assert (folder / "library.csv").read_text() == "smiles\nCCO\n"
    # a symbolic link to nowhere is a file there too: refused by its name (the error named init's temporary file)
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "library.csv").symlink_to(tmp_path / "gone.csv")
    refused = labloop("init", linked)
    said = " ".join(refused.stderr.split())
    assert refused.returncode == 2 and "holds library.csv already: nothing written" in said, said
    assert [p.name for p in linked.iterdir()] == ["library.csv"] and not (tmp_path / "gone.csv").exists()
    orphan = labloop("init", tmp_path / "nowhere" / "lab")
    assert orphan.returncode == 2 and "no such folder (init makes FOLDER, not its parents)" in orphan.stderr
    assert not (tmp_path / "nowhere").exists()
