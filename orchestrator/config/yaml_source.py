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

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from labloop.core.errors import MISSING, Loc, Problem, Problems, not_one_of, shown
from labloop.core.validation import (
    field_at,
    field_homes,
    fields_by_name,
    model_at,
    must,
    shape_message,
    unknown_field,
    unknown_here,
)
from labloop.orchestrator.config.alert_urls import SECRET_SETTINGS

#: a campaign or protocol file is a few KiB written by hand; PyYAML's pure-Python loader costs about 10 us
#: and 400 bytes of memory per byte of input, so anything larger is refused before it is parsed
MAX_YAML_BYTES = 128 * 1024
#: longest key PyYAML reads without a '?' before it (its scanner's limit on a "simple key")
MAX_KEY_CHARS = 1024
#: deepest nesting of mappings and lists, aliases expanded (a campaign needs 6)
MAX_YAML_DEPTH = 64
#: most values a document may hold with every alias expanded (the example campaign has about 150)
MAX_YAML_NODES = 100_000




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

    def written(self, loc: Loc) -> str | None:
        """The text of the value at ``loc`` as the file writes it (a scalar's), or None when there is none."""
        node = self.root
        for part in loc:
            child = _child(node, part)
            if child is None:
                return None
            node = child[1]
        return node.value if isinstance(node, yaml.ScalarNode) else None

    def where(self, loc: Loc) -> str:
        return f"{self.name}:{self.line_of(loc)}"


def display_name(path: Path) -> str:
    """How to show a path in a message: relative to the working directory when it lies below it, but for a working
    directory that is the root, below which every path lies (``tmp/lab/campaign.yaml`` read as a path missing its
    ``/``: a packaging trial)."""
    relative = os.path.relpath(path)
    if relative.startswith(".."):
        return path.as_posix()
    return Path(os.path.abspath(path)).as_posix() if Path.cwd() == Path(Path.cwd().anchor) else relative


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing nesting deeper than :data:`MAX_YAML_DEPTH` while it scans and composes:
    its composer recurses once per level (10,000 levels would exhaust Python's stack), and its scanner reads a
    whole nest of ``[`` ahead before the first token, in time growing with the square of the depth."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """A value PyYAML resolves but cannot build (an integer of 5,000 digits, the date 2001-13-45) is an
        error at its line, not a ``ValueError`` from ``int()`` or ``datetime``."""
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError, LookupError, AttributeError, TypeError) as exc:
            raise yaml.constructor.ConstructorError(None, None, _unreadable(node, exc), node.start_mark) from exc

    def fetch_flow_collection_start(self, TokenClass: type) -> None:
        if self.flow_level >= MAX_YAML_DEPTH:
            raise yaml.scanner.ScannerError(None, None, f"nested deeper than {MAX_YAML_DEPTH} levels",
                                            self.get_mark())
        super().fetch_flow_collection_start(TokenClass)

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        if self._depth >= MAX_YAML_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_YAML_DEPTH} levels",
                                              self.peek_event().start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1


def _unreadable(node: yaml.Node, exc: Exception) -> str:
    """Why a value tagged ``!!int``, ``!!float``, ``!!bool``, ``!!timestamp``... cannot be built, without the value.

    Why not PyYAML's or Python's own words: they quote what is written (``invalid literal for int(): 'json'``,
    ``KeyError: 'json://user:pass@host'``), which under ``alerts:`` is a secret; the line and column point at it.
    ``int()``'s limit on digits says what is wrong before its first ':', and is kept.
    """
    kind = node.tag.rsplit(":", 1)[-1] if node.tag.startswith("tag:yaml.org,2002:") else "its tag's type"
    reason = str(exc).split(":", 1)[0] if isinstance(exc, ValueError | OverflowError) else ""
    return f"cannot read the value as {kind}" + (f" ({reason})" if "'" not in reason and reason else "")


# YAML 1.1 reads ``1e3``, ``1.0e3`` and ``1e-3`` as text (its floats need a dot and a signed exponent);
# YAML 1.2 and every scientist read them as numbers, and so does labloop
_BoundedLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def _read_text(path: Path, name: str) -> str:
    """The file's text, refused when larger than :data:`MAX_YAML_BYTES` (read no further than that)."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_YAML_BYTES + 1)
        if len(raw) > MAX_YAML_BYTES:
            raise Problems(Problem((), f"larger than {MAX_YAML_BYTES // 1024} KiB; a campaign or protocol file "
                                       "is a few KiB of hand-written YAML", where=name))
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:  # its line and column, not a byte offset (an adversarial trial)
            line, column = raw.count(b"\n", 0, exc.start) + 1, exc.start - raw.rfind(b"\n", 0, exc.start)
            raise Problems(Problem((), f"byte 0x{raw[exc.start]:02x} is not UTF-8 text: save the file as UTF-8 "
                                       "(an editor's 'encoding' setting)", where=f"{name}:{line}:{column}")) from None
    except FileNotFoundError:
        raise Problems(Problem((), "no such file", where=name)) from None
    except IsADirectoryError:
        raise Problems(Problem((), "is a directory, not a YAML file", where=name)) from None
    except OSError as exc:
        raise Problems(Problem((), f"cannot be read ({exc})", where=name)) from None


def _check_expansion(root: yaml.Node, name: str) -> None:
    """Refuse a node tree that, with its aliases expanded, holds more than :data:`MAX_YAML_NODES` nodes, nests
    deeper than :data:`MAX_YAML_DEPTH`, or contains itself.

    Why: an alias is one node in the file but a full copy for everything downstream (the constructor's
    merge keys, validation, the journal's JSON copy of the campaign), so a 1 KB file of nested aliases
    can stand for billions of values. Each node is measured once (aliases share the node object), in
    document order, so an anchor is measured before any alias to it and the work is linear in the file.
    """
    measured: dict[int, tuple[int, int]] = {}  # id(node) -> (nodes, depth) with aliases expanded
    open_nodes: set[int] = set()

    def measure(node: yaml.Node) -> tuple[int, int]:
        key = id(node)
        if key in measured:
            return measured[key]
        if key in open_nodes:
            raise Problems(Problem((), "an alias refers to a node that contains it", where=_at(name, node)))
        open_nodes.add(key)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = node.value
        sizes = [measure(child) for child in children]
        size, depth = 1 + sum(n for n, _ in sizes), 1 + max((d for _, d in sizes), default=0)
        if size > MAX_YAML_NODES or depth > MAX_YAML_DEPTH:
            raise Problems(Problem((), f"aliases expand this to more than {MAX_YAML_NODES} values or "
                                       f"{MAX_YAML_DEPTH} levels; write the values out", where=_at(name, node)))
        open_nodes.discard(key)
        measured[key] = (size, depth)
        return size, depth

    measure(root)


def _at(name: str, node: yaml.Node) -> str:
    return f"{name}:{node.start_mark.line + 1}"


def read_yaml(path: Path, name: str | None = None) -> YamlDocument:
    """Read and parse one YAML document; a missing, huge or unreadable file, a syntax error, nesting or
    alias expansion beyond the limits, or a duplicate key raises :class:`Problems` whose ``where`` names
    the file and line."""
    name = name or display_name(path)
    text = _read_text(path, name)
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text)  # checks for unprintable characters (a NUL byte) already
        root = loader.get_single_node()
        if root is not None:
            _check_expansion(root, name)
        # judged as written: constructing merges a ``<<: *anchor``'s keys into the mapping, and a key written
        # beside it to override one (as YAML lets it) read as given twice (an adversarial trial)
        duplicates = [_given_twice(loc, f"{name}:{line}") for line, loc in _duplicate_keys(root, ())]
        data = loader.construct_document(root) if root is not None and not duplicates else None
    except yaml.MarkedYAMLError as exc:
        mark, what = _syntax_error(exc, text)
        if mark is not None and (opened := _open_quote_line(text, mark.line)) is not None:
            what += (f"; or the '\"' on line {opened} is not closed on its line, and YAML read on to the next '\"' "
                     "as its end")
        place = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise Problems(Problem((), f"YAML syntax error: {what}", where=f"{name}{place}")) from None
    except yaml.reader.ReaderError as exc:
        position = max(0, exc.position)
        line, column = text.count("\n", 0, position) + 1, position - text.rfind("\n", 0, position)
        what = f"unacceptable character #x{exc.character:04x}: {exc.reason}" if isinstance(exc.character, int) \
            else exc.reason
        raise Problems(Problem((), f"YAML syntax error: {what}", where=f"{name}:{line}:{column}")) from None
    except yaml.YAMLError as exc:
        raise Problems(Problem((), f"YAML syntax error: {' '.join(str(exc).split())}", where=name)) from None
    finally:
        if loader is not None:
            loader.dispose()
    if duplicates:
        raise Problems(*duplicates)
    # a path, port or name holding a NUL byte raised "embedded null byte" far from its line, or as a labloop bug (an
    # adversarial trial's port "/dev/tty\0x")
    untakeable = [Problem(_secret_safe(loc), why, where=f"{name}:{line}") for line, loc, why in _untakeable(root, ())]
    if untakeable:
        raise Problems(*untakeable)
    return YamlDocument(name, data, root)


def _secret_safe(loc: Loc) -> Loc:
    """``loc`` named only down to the list item holding its first key under a secret setting, which may itself be
    the secret (an alert URL written as a key)."""
    if not loc or loc[0] not in SECRET_SETTINGS:
        return loc
    keys = [index for index, part in enumerate(loc) if index and isinstance(part, str)]
    return loc[:keys[0]] if keys else loc


def _given_twice(loc: Loc, where: str) -> Problem:
    """A key written twice (:func:`_secret_safe`, said so where the key may be a secret)."""
    if _secret_safe(loc) == loc:
        return Problem(loc, "given twice", where=where)
    return Problem(_secret_safe(loc), "a key given twice (what is written there is not shown: it may hold a secret)",
                   where=where)


def _key_too_long(text: str, mark: yaml.Mark | None, start: bool) -> bool:
    """Whether the key at ``mark`` (where it starts, or the ':' that ends it) is longer than PyYAML reads as a key.

    Why: PyYAML stops looking for a key's ':' after :data:`MAX_KEY_CHARS` characters, and then reports the ':'
    as misplaced or missing, which sends the user looking for a typo that is not there.
    """
    if mark is None:
        return False
    lines = text.splitlines()
    line = lines[mark.line] if mark.line < len(lines) else ""
    if start:
        return line.find(":", mark.column) - mark.column > MAX_KEY_CHARS
    key = re.split(r"[{\[,]", line[:mark.column])[-1].strip().lstrip("- ").strip()
    return len(key) > MAX_KEY_CHARS and ": " not in key


def _open_quote_line(text: str, before: int) -> int | None:
    """The first line (1-based) before line index ``before`` whose text, comments aside, holds an odd number of
    double quotes, or None. Why: ``seed: "7`` with a quoted value 13 lines on was reported there, as a line
    "indented unlike the lines above it", since YAML took the next quote as the first one's end (an adversarial
    trial); a quoted string over several lines is legal, so the line is given as a possibility beside the error."""
    for number, line in enumerate(text.splitlines()[:before], start=1):
        code = "" if line.lstrip().startswith("#") else line.split(" #", 1)[0]
        if (code.count('"') - code.count('\\"')) % 2:
            return number
    return None


def _syntax_error(exc: yaml.MarkedYAMLError, text: str) -> tuple[yaml.Mark | None, str]:
    """Where a YAML syntax error is and what it is, in plain words where PyYAML speaks of its parser's tokens.

    Why: a chemist who mis-indents a key reads "expected <block end>, but found '<block mapping start>'", and
    PyYAML's own text (``str(exc)``) adds a quoted snippet over several lines. Only the problem is kept, reworded
    for the common slips (a tab, a mis-indented line, a missing ':', an unclosed quote or bracket), and the place
    is the slip's own: an unclosed quote is found at the end of the file, a key without ':' on the line after it,
    but the fix is where it was opened or written.
    """
    problem = " ".join(str(exc.problem or exc.context or "cannot parse").split())
    at, opened = exc.problem_mark or exc.context_mark, exc.context_mark
    if "'\\t'" in problem:
        return at, "a tab: YAML indents with spaces only"
    too_long = f"a key longer than {MAX_KEY_CHARS} characters, the most YAML reads as a key: shorten it"
    if problem == "could not find expected ':'" and _key_too_long(text, opened, start=True):
        return opened, too_long
    if (problem == "mapping values are not allowed here" or problem.endswith("but got ':'")) \
            and _key_too_long(text, at, start=False):
        return at, too_long
    if problem.startswith("expected <block end>"):
        return at, "indented unlike the lines above it: the keys (or list items) of one block start in one column"
    if problem == "could not find expected ':'" and opened is not None:
        return opened, "no ':' after this key (write key: value)"
    if problem == "mapping values are not allowed here":
        return at, ("a ':' where no key can start: a ':' missing on the line above, this line indented too far, "
                    "or a value holding ': ' that needs quotes")
    if problem.startswith("could not determine a constructor for the tag"):  # the tag may be a URL written as one
        return at, "a tag ('!' or '!!' and a word before a value) that labloop does not know: quote a value that " \
                   "starts with '!'"
    if exc.context == "while scanning a quoted scalar" and opened is not None:
        return opened, "this quote is never closed"
    if exc.context in ("while parsing a flow mapping", "while parsing a flow sequence") and opened is not None:
        bracket = "{}" if exc.context.endswith("mapping") else "[]"
        return at, (f"a ',' or '{bracket[1]}' was expected here: a ',' missing, or the '{bracket[0]}' at line "
                    f"{opened.line + 1}, column {opened.column + 1} never closed")
    return at, problem


def is_union_tag(part: Any) -> bool:
    """Whether a part of an error location names the member of a tagged union (``Tag("<range>")``) rather than
    a field: it is not in the YAML, so an error must not name it."""
    return isinstance(part, str) and part.startswith("<") and part.endswith(">")


def error_lines(exc: ValidationError, doc: YamlDocument, model: type[BaseModel]) -> list[str]:
    """Every error of ``exc`` as ``file:line: field: message``, in the order of the lines in the file, but
    missing fields last: a misspelt key is both an unknown field and a missing one, and the unknown one (with
    the valid names) is what the user needs to read first (the one line a :class:`CampaignError` shows)."""
    found: list[tuple[bool, int, str]] = []
    for error in exc.errors(include_url=False):
        # "[key]": pydantic's mark of a mapping's key (an instrument's name), which the loc before it names already
        loc: Loc = tuple(part for part in error["loc"] if not is_union_tag(part) and part != "[key]")
        cause = (error.get("ctx") or {}).get("error")
        problems = cause.problems if isinstance(cause, Problems) \
            else (Problem((), error_message(error, model, doc.written(loc))),)
        if loc and loc[0] in SECRET_SETTINGS:
            problems = tuple(Problem(p.loc, _hidden(p.message, error.get("input")), p.where) for p in problems)
        for problem in problems:
            full = Problem(loc + problem.loc, problem.message)
            found.append((problem.message == MISSING, doc.line_of(full.loc),
                          full.line(problem.where or doc.where(full.loc))))
    found.sort(key=lambda item: item[:2])
    return [text for _, _, text in found]


def first_problem(exc: ValidationError, model: type[BaseModel]) -> tuple[Loc, str]:
    """The first error of ``exc`` as (the field's location, its message in :func:`error_lines`'s words), for a
    campaign validated from no file: a journalled one that no longer validates on resume (orchestrator/cli/run.py),
    which said pydantic's "Value error, ..." (an operator's trial)."""
    error = exc.errors(include_url=False)[0]
    loc: Loc = tuple(part for part in error["loc"] if not is_union_tag(part) and part != "[key]")
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, Problems) and cause.problems:
        return loc + cause.problems[0].loc, cause.problems[0].message
    return loc, error_message(error, model)


def error_message(error: Any, model: type[BaseModel], written: str | None = None) -> str:
    """pydantic's message, reworded to say what is valid (``written``: the value's text in the file, if known)."""
    kind, value, loc = error["type"], error.get("input"), tuple(error["loc"])
    # a value of the wrong shape in plain words; not inside a tagged union, whose members are told apart by shape
    if not any(map(is_union_tag, loc)) and (
            shaped := shape_message(kind, value, error.get("ctx"), field_at(model, loc))) is not None:
        return shaped
    if kind == "invalid_key" and isinstance(value, int | float) and not isinstance(value, bool):
        # {reference_offset_v: 3,5}: a decimal comma ends the value, and YAML reads 5 as the next field's name
        return (f"a number where a field's name belongs (got {shown(value)}): a decimal comma? in {{...}} YAML reads "
                "3,5 as 3 and a field named 5: write 3.5")
    if kind == "literal_error":
        return not_one_of(value, re.findall(r"'([^']*)'", error["ctx"]["expected"]))
    if kind == "extra_forbidden":
        if (elsewhere := unknown_here(str(loc[-1]), _homes(model))) is not None:
            return elsewhere
        if (entry := _entry_of(value, _homes(model))) is not None:
            return f"unknown field here; its fields ({', '.join(map(str, value))}) are those of an entry of " \
                   f"{entry}:, so it belongs under {entry}:, indented one level"
        valid = _fields_at(model, loc[:-1])
        return unknown_field(str(loc[-1]), valid)
    plain = tuple(part for part in loc if not is_union_tag(part))  # a range among choices: the field's own title
    if kind == "missing" and plain and isinstance(plain[-1], int) and (whole := field_at(model, plain[:-1])) \
            is not None and whole.title:  # a list one item short of what the field takes ([0.1] for a [low, high])
        sample = f", e.g. {json.dumps(whole.examples[0])}" if whole.examples else ""
        return f"missing: this takes {whole.title}{sample}"
    if kind == "missing":
        return MISSING
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        section = model_at(model, tuple(part for part in loc if not is_union_tag(part)))
        if isinstance(value, str) and section is not None and "file" in fields_by_name(section):
            # ``library: lib/x.csv``: a newcomer's file written where the section's mapping goes (a chemist's trial)
            return f"must be a mapping of fields, got the text {shown(value)}: a file goes in its file field, " \
                   f"{{file: {value}}}"
        return f"must be a mapping of fields, got {_type_name(value)}"
    if kind == "value_error":  # our own validators' messages say what they got
        return error["msg"].removeprefix("Value error, ")
    message = must(error["msg"])
    if isinstance(value, dict | list):
        return message
    return f"{message} (got {shown(value)}{_yaml_hint(kind, value, written)})"


def _hidden(message: str, value: Any) -> str:
    """``message`` without what was written, for a value under a secret setting (:data:`SECRET_SETTINGS`).

    Why: an alert URL holds its webhook's token or a mail password, and a campaign file given the wrong shape
    (``alerts: {night: "json://..."}``) would otherwise have it echoed by "(got ...)" onto the console and into
    any log the console is copied to. The message keeps what the field takes; the value is never shown.
    """
    kept = re.split(r" \(got |, got ", message, maxsplit=1)[0]
    if kept == message and any(len(text) >= 4 and text in message for text in _texts(value)):
        kept = "not valid here"  # a validator's own message quoting the value some other way
    return message if kept == message else f"{kept} (what is written there is not shown: it may hold a secret)"


def _texts(value: Any) -> Iterator[str]:
    """Every text inside ``value`` (a YAML value): strings, mapping keys, and the other scalars as written."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _texts(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _texts(item)
    elif value is not None:
        yield str(value)


def _yaml_hint(kind: str, value: Any, written: str | None) -> str:
    """What YAML made of what the user most likely meant, where its reading surprises: an unquoted ``19:00``
    is a number in base 60 to YAML 1.1. Only for a value written that way: a plain ``5`` for a text is just 5."""
    if kind.startswith("string") and isinstance(value, int) and written is not None \
            and re.fullmatch(r"[-+]?[0-9_]+(?::[0-9_]+)+", written.strip()):
        return f": YAML read an unquoted {written.strip()} as a number, put it in quotes"
    return ""


def _type_name(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {shown(value)}"


def _entry_of(value: Any, homes: dict[str, tuple[str, ...]]) -> str | None:
    """The mapping of named entries (``instruments``) whose entries take every key of ``value``, a mapping written
    where no field has its name, or None. Why: an instrument dedented to the top of a campaign (``potentiostat:
    {driver: emstat, ...}``) was only "unknown field", with the top level's names, though its fields say what it is
    (a newcomer's trial); a name the user chose is in no model, so :func:`unknown_here` cannot place it."""
    if not isinstance(value, dict) or not value:
        return None
    common = set.intersection(*(set(homes.get(str(key), ())) for key in value))
    named = sorted(place.removesuffix(".<name>") for place in common if place.endswith(".<name>"))
    return named[0] if named else None


@cache
def _homes(model: type[BaseModel]) -> dict[str, tuple[str, ...]]:
    """Where each field of ``model`` and the models within it belongs (:func:`field_homes`), walked once."""
    return field_homes((("", model),))


def _fields_at(model: type[BaseModel], loc: Loc) -> list[str]:
    """The field names (as written in YAML, i.e. aliases) of the model found at ``loc``, if it is one."""
    found = model_at(model, loc)
    return [] if found is None else list(fields_by_name(found))


def _child(node: yaml.Node | None, part: str | int) -> tuple[yaml.Node, yaml.Node] | None:
    """(key node or item node, value node) of ``part`` inside ``node``."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return key, value
    elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        return node.value[part], node.value[part]
    return None


#: why a scalar cannot be a campaign's or protocol's value, by what it holds
_NUL = "holds a NUL byte (\\0, \\x00 or \\u0000 in a quoted string), which no path, port, name or value can hold"
_BINARY = "a !!binary value: no field takes binary data (write the value as text)"


def _untakeable(node: yaml.Node | None, loc: Loc, walked: set[int] | None = None) -> Iterator[tuple[int, Loc, str]]:
    """(line, loc, why) of every key or value no field can take (a key's at the mapping holding it): one holding a
    NUL byte, or a ``!!binary`` one, which became a text with a NUL byte as easily (a review). Each node once
    (:func:`_first_time`)."""
    if not _first_time(node, walked := set() if walked is None else walked):
        return
    if isinstance(node, yaml.ScalarNode):
        if node.tag == "tag:yaml.org,2002:binary":
            yield node.start_mark.line + 1, loc, _BINARY
        elif "\x00" in str(node.value):
            yield node.start_mark.line + 1, loc, _NUL
    for key, child, at in _children(node, loc):
        if key is not None and (in_key := list(_untakeable(key, loc, walked))):
            yield from in_key  # its value is no field's then
        else:
            yield from _untakeable(child, at, walked)


def _duplicate_keys(node: yaml.Node | None, loc: Loc, walked: set[int] | None = None) -> Iterator[tuple[int, Loc]]:
    """(line, loc) of every mapping key written twice (PyYAML would silently keep the last one); each node once
    (:func:`_first_time`)."""
    if not _first_time(node, walked := set() if walked is None else walked):
        return
    seen: set[str | int] = set()
    for key, child, at in _children(node, loc):
        if key is not None:
            if at[-1] in seen:
                yield key.start_mark.line + 1, at
            seen.add(at[-1])
        yield from _duplicate_keys(child, at, walked)


def _children(node: yaml.Node | None, loc: Loc) -> Iterator[tuple[yaml.Node | None, yaml.Node, Loc]]:
    """(key, child, its loc) of a mapping's values or a sequence's items (key None), as the document's walks
    (:func:`_untakeable`, :func:`_duplicate_keys`) descend: a key that is no scalar named by its line."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield key, value, (*loc, key.value if isinstance(key, yaml.ScalarNode) else str(key.start_mark.line))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield None, item, (*loc, index)


def _first_time(node: yaml.Node | None, walked: set[int]) -> bool:
    """Whether a walk of the document meets ``node`` for the first time, and mark it met. Why: every alias of an
    anchor is the anchor's node again, and a slip inside an anchor was said once per alias, at the anchor's line
    each time (an adversarial trial): it is said once, where it is written."""
    if node is None or id(node) in walked:
        return False
    walked.add(id(node))
    return True
