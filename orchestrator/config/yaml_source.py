"""YAML files that remember their line numbers, and validation errors turned into ``file:line: field: why``.

Why: a campaign file is written by hand and checked before a night of unattended work. "Input should be
'random', 'bayes', 'greedy' or 'screening'" is not enough; the user needs the line to open in the editor,
the field, and the valid choices, e.g. ``campaign.yaml:12: planner.kind: 'bayesian' is not one of random,
bayes, greedy, screening``. PyYAML's composed node tree keeps a start mark for every key and item, so the
pydantic error location (a path of keys and indices) can be walked down that tree to a line.

Validators that check more than one field raise :class:`Problems`: each :class:`Problem` says which field
(relative to the validator's own place) is wrong, and may point into another file (a protocol file).
"""

from __future__ import annotations

import os
import re
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from labloop.core.errors import Loc, Problem, Problems, not_one_of


@dataclass(frozen=True)
class YamlDocument:
    """A parsed YAML file: its data, its node tree (for line numbers) and the name to show for it."""

    name: str
    data: Any
    root: yaml.Node | None

    def line_of(self, loc: Loc) -> int:
        """1-based line of the deepest key or item of ``loc`` present in the file (a missing field points
        at its parent's line)."""
        node, line = self.root, 1 if self.root is None else self.root.start_mark.line + 1
        for part in loc:
            child = _child(node, part)
            if child is None:
                break
            key_or_item, node = child
            line = key_or_item.start_mark.line + 1
        return line

    def where(self, loc: Loc) -> str:
        return f"{self.name}:{self.line_of(loc)}"


def display_name(path: Path) -> str:
    """How to show a path in a message: relative to the working directory when it lies below it."""
    relative = os.path.relpath(path)
    return path.as_posix() if relative.startswith("..") else relative


def read_yaml(path: Path, name: str | None = None) -> YamlDocument:
    """Read and parse one YAML document; a missing file, a syntax error or a duplicate key raises
    :class:`Problems` whose ``where`` names the file and line."""
    name = name or display_name(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise Problems(Problem((), "no such file", where=name)) from None
    except IsADirectoryError:
        raise Problems(Problem((), "is a directory, not a YAML file", where=name)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise Problems(Problem((), f"cannot be read ({exc})", where=name)) from None
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        what = " ".join(str(exc.problem or exc.context or "cannot parse").split())
        raise Problems(Problem((), f"YAML syntax error: {what}", where=f"{name}{line}")) from None
    except yaml.YAMLError as exc:
        raise Problems(Problem((), f"YAML syntax error: {' '.join(str(exc).split())}", where=name)) from None
    finally:
        loader.dispose()
    duplicates = [Problem(loc, "given twice", where=f"{name}:{line}") for line, loc in _duplicate_keys(root, ())]
    if duplicates:
        raise Problems(*duplicates)
    return YamlDocument(name, data, root)


def is_union_tag(part: Any) -> bool:
    """Whether a part of an error location names the member of a tagged union (``Tag("<range>")``) rather than
    a field: it is not in the YAML, so an error must not name it."""
    return isinstance(part, str) and part.startswith("<") and part.endswith(">")


def error_lines(exc: ValidationError, doc: YamlDocument, model: type[BaseModel]) -> list[str]:
    """Every error of ``exc`` as ``file:line: field: message``, in the order of the lines in the file."""
    found: list[tuple[int, str]] = []
    for error in exc.errors(include_url=False):
        loc: Loc = tuple(part for part in error["loc"] if not is_union_tag(part))
        cause = (error.get("ctx") or {}).get("error")
        problems = cause.problems if isinstance(cause, Problems) else (Problem((), _message(error, model)),)
        for problem in problems:
            full = Problem(loc + problem.loc, problem.message)
            found.append((doc.line_of(full.loc), full.line(problem.where or doc.where(full.loc))))
    found.sort(key=lambda item: item[0])
    return [text for _, text in found]


def _message(error: Any, model: type[BaseModel]) -> str:
    """pydantic's message, reworded to say what is valid."""
    kind, value, loc = error["type"], error.get("input"), tuple(error["loc"])
    if kind == "literal_error":
        return not_one_of(value, re.findall(r"'([^']*)'", error["ctx"]["expected"]))
    if kind == "extra_forbidden":
        valid = _fields_at(model, loc[:-1])
        return f"unknown field; valid fields: {', '.join(valid)}" if valid else "unknown field"
    if kind == "missing":
        return "required, but missing"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"must be a mapping of fields, got {_type_name(value)}"
    if kind == "value_error":  # our own validators' messages say what they got
        return error["msg"].removeprefix("Value error, ")
    message = re.sub(r"^(Input|Dictionary|List|Tuple|String) should", "must", error["msg"])
    return message if isinstance(value, dict | list) else f"{message} (got {value!r})"


def _type_name(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"


def _fields_at(model: type[BaseModel], loc: Loc) -> list[str]:
    """The field names (as written in YAML, i.e. aliases) of the model found at ``loc``, if it is one."""
    annotation: Any = model
    for part in loc:
        annotation = _unwrap_model(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            by_name = {field.alias or name: field for name, field in annotation.model_fields.items()}
            if part not in by_name:
                return []
            annotation = by_name[part].annotation
        elif typing.get_origin(annotation) is dict:
            annotation = typing.get_args(annotation)[1]
        else:
            return []
    annotation = _unwrap_model(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [field.alias or name for name, field in annotation.model_fields.items()]
    return []


def _unwrap_model(annotation: Any) -> Any:
    """``Model | None`` -> ``Model``: the optional sections of a campaign."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        models = [a for a in typing.get_args(annotation) if a is not type(None)]
        return models[0] if len(models) == 1 else annotation
    return annotation


def _child(node: yaml.Node | None, part: str | int) -> tuple[yaml.Node, yaml.Node] | None:
    """(key node or item node, value node) of ``part`` inside ``node``."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return key, value
    elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        return node.value[part], node.value[part]
    return None


def _duplicate_keys(node: yaml.Node | None, loc: Loc) -> Iterator[tuple[int, Loc]]:
    """(line, loc) of every mapping key written twice (PyYAML would silently keep the last one)."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else str(key.start_mark.line)
            if name in seen:
                yield key.start_mark.line + 1, (*loc, name)
            seen.add(name)
            yield from _duplicate_keys(value, (*loc, name))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _duplicate_keys(item, (*loc, index))
