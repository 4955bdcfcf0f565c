"""Parsing a campaign or protocol file is bounded (issue 17, causes 6 and 12): an alias bomb, a 4 MB file,
deep nesting, a self-referencing alias and a NUL byte each give ONE line naming the file (and line) and exit
2 through the real CLI, and nothing is created. Before: the bomb took 140 s of CPU, the 4 MB file 40 s and
1.5 GB, and the NUL byte and the 10,000 levels ended in tracebacks (``ReaderError``, ``RecursionError``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from labloop.core.errors import Problems
from labloop.orchestrator.config.yaml_source import MAX_YAML_BYTES, MAX_YAML_NODES, read_yaml


def alias_bomb(levels: int = 9) -> str:
    """A ``billion laughs``: each anchor is a list of nine aliases to the previous one (9**9 values, < 1 KB)."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]")
    return "\n".join(lines) + "\n"


def campaign_with(path: Path, tail: str, head: str = "") -> Path:
    """The tiny campaign file with ``head`` before it and ``tail`` appended under the potentiostat's options."""
    text = path.read_text().replace("driver: emstat", f"driver: emstat\n    options: {{bomb: {tail}}}")
    path.write_text(head + text)
    return path


def one_line_refusal(labloop, path: Path, *expected: str) -> str:
    result = labloop("validate", path)
    assert result.returncode == 2, result.stdout
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    for text in expected:
        assert text in result.stderr
    assert not (path.parent / "tiny.db").exists()
    return result.stderr


def test_an_alias_bomb_is_refused_in_one_line(tmp_path, labloop, write_campaign) -> None:
    path = write_campaign(tmp_path)
    bomb = alias_bomb()
    assert len(bomb) < 1024
    text = path.read_text().replace("driver: emstat", "driver: emstat\n    options: {bomb: *l8}")
    path.write_text("x-anchors:\n" + "".join(f"  {line}\n" for line in bomb.splitlines()) + text)
    one_line_refusal(labloop, path, "tiny.yaml:", f"more than {MAX_YAML_NODES} values")


def test_a_merge_key_bomb_is_refused_before_construction(tmp_path) -> None:
    """Merge keys (``<<``) copy the merged mapping's entries when constructed: refused before that."""
    lines = ["m0: &m0 {a: 1, b: 2}"] + [f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}], k{i}: 1}}" for i in range(1, 40)]
    path = tmp_path / "merge.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(Problems, match=f"more than {MAX_YAML_NODES} values"):
        read_yaml(path)


def test_a_4_mb_file_is_refused_unread(tmp_path, labloop, write_campaign) -> None:
    path = write_campaign(tmp_path)
    path.write_text(path.read_text() + "# padding\n" * (4 * 1024 * 1024 // 10))
    assert path.stat().st_size > 4_000_000 > MAX_YAML_BYTES
    one_line_refusal(labloop, path, "tiny.yaml:", "larger than 128 KiB")


def test_a_nul_byte_gives_the_line_not_a_reader_traceback(tmp_path, labloop, write_campaign) -> None:
    path = write_campaign(tmp_path)
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = lines[2].rstrip("\n") + "\x00\n"
    path.write_text("".join(lines))
    one_line_refusal(labloop, path, "tiny.yaml:3:", "#x0000")


def test_a_byte_that_is_not_utf8_is_said_at_its_line_and_column(tmp_path, labloop, write_campaign) -> None:
    path = write_campaign(tmp_path)  # a Latin-1 editor's é: the error gave its byte offset (an adversarial trial)
    lines = path.read_text().splitlines(keepends=True)
    path.write_bytes("".join(lines[:2]).encode() + b"# caf\xe9\n" + "".join(lines[2:]).encode())
    one_line_refusal(labloop, path, "tiny.yaml:3:6: byte 0xe9 is not UTF-8 text: save the file as UTF-8")


@pytest.mark.parametrize(("text", "said"), [("", "got an empty file"), ("# nothing yet\n", "got an empty file"),
                                             ("- a\n- b\n", "got list")])
def test_a_campaign_file_of_no_sections_says_what_it_holds(tmp_path, labloop, text: str, said: str) -> None:
    path = tmp_path / "tiny.yaml"  # an empty file said "got NoneType" (an adversarial trial)
    path.write_text(text)
    said_there = one_line_refusal(labloop, path, "tiny.yaml", "campaign: must be a mapping of sections (")
    assert said_there.rstrip().endswith(f"), {said}"), said_there


@pytest.mark.parametrize("style", ["flow", "block"])
def test_deep_nesting_gives_one_line_not_a_recursion_error(tmp_path, labloop, write_campaign, style: str) -> None:
    path = write_campaign(tmp_path)
    deep = "[" * 10_000 + "]" * 10_000 if style == "flow" else \
        "\n" + "".join("  " * (level + 3) + f"k{level}:\n" for level in range(200))
    text = path.read_text().replace("driver: emstat", f"driver: emstat\n    options:\n      deep: {deep}")
    path.write_text(text)
    one_line_refusal(labloop, path, "tiny.yaml:", "nested deeper than 64 levels")


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path, labloop, write_campaign) -> None:
    path = campaign_with(write_campaign(tmp_path), "&loop [1, *loop]")
    one_line_refusal(labloop, path, "tiny.yaml:", "refers to a node that contains it")


def test_a_protocol_file_is_bounded_too(tmp_path, labloop, write_campaign) -> None:
    protocol = tmp_path / "steps.yaml"
    protocol.write_text(alias_bomb() + "steps: *l8\n")
    path = write_campaign(tmp_path, protocol=str(protocol))
    one_line_refusal(labloop, path, "steps.yaml:", f"more than {MAX_YAML_NODES} values")


def test_aliases_within_the_limits_still_work(tmp_path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("base: &base {port: /dev/ttyUSB0, options: {timeout_s: 0.5}}\nuse: *base\nmerged: {<<: *base}\n")
    data = read_yaml(path).data
    assert data["use"] == data["base"] == data["merged"]


@pytest.mark.parametrize(("value", "why"), [("1" * 5000, "4300 digits"), ("2001-13-45", "month must be in 1..12")])
def test_a_value_yaml_cannot_build_gives_its_line(tmp_path, labloop, write_campaign, value: str, why: str) -> None:
    """PyYAML resolves these as an integer and a date, then ``int()``/``datetime`` raise ValueError."""
    path = write_campaign(tmp_path)
    lines = path.read_text().splitlines(keepends=True)
    lines.insert(2, f"x-note: {value}\n")
    path.write_text("".join(lines))
    one_line_refusal(labloop, path, "tiny.yaml:3:", why)


@pytest.mark.parametrize("where", ["top", "nested", "item", "flow"])
def test_a_key_longer_than_yaml_reads_is_called_too_long(tmp_path, labloop, write_campaign, where: str) -> None:
    """PyYAML looks for a key's ':' within 1024 characters; past that it said "no ':' after this key" (nested) or
    "a ':' where no key can start" (top level, list item), sending the user after a typo that is not there."""
    key = "k" * 1100
    path = write_campaign(tmp_path)
    text = path.read_text()
    path.write_text({"top": f"{key}: 1\n" + text,
                     "nested": text.replace("  max_experiments: 6", f"  max_experiments: 6\n  {key}: 2"),
                     "item": text + f"alerts:\n- {key}: 1\n",
                     "flow": text + f"alerts: {{{key}: 1}}\n"}[where])
    said = one_line_refusal(labloop, path, "a key longer than 1024 characters")
    assert "no ':'" not in said and "where no key can start" not in said


@pytest.mark.parametrize(("section", "value"), [
    ("name", "x" * 10_000),  # pydantic's own check (at most 80 characters)
    ("objective", {"quantity": "x" * 10_000, "goal": "maximize"}),
    ("planner", {"kind": "x" * 10_000}),  # not one of the choices
    ("schedule", {"active_hours": "x" * 10_000}),  # a validator's message
    ("seed", "x" * 10_000),  # the wrong type
    ("budget", {"max_experiments": ["x" * 10_000]}),  # the wrong shape
    ("budget", {"k" * 1000: 1}),  # an unknown key, named in the field
])
def test_an_over_long_value_is_cut_in_the_message(tmp_path, labloop, write_campaign, section: str, value) -> None:
    path = write_campaign(tmp_path, **({} if section == "name" else {section: value}))
    if section == "name":  # the name names the file too
        path.write_text(path.read_text().replace("name: tiny", f"name: {value}"))
    said = one_line_refusal(labloop, path, f"tiny.yaml:1: {section}" if section == "name" else section)
    assert len(said) < 400 and "…" in said
