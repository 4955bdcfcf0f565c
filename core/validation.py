"""pydantic's validation errors in plain words, and the walk of a model's fields that finds what a location holds.

Why in core: the campaign (:mod:`labloop.orchestrator.config.yaml_source`) and the protocol
(:mod:`labloop.protocols.steps`) are two families of pydantic models checked in two layers, and a slip must read
the same in both: one wording, one walk.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import types
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, WithJsonSchema
from pydantic.fields import FieldInfo

from labloop.core.errors import Loc, shown

#: pydantic's error types of a list (or tuple, set) given something else, and of one value given a list or mapping,
#: with what that one value is in plain words
LIST_TYPES = frozenset({"list_type", "tuple_type", "set_type", "frozen_set_type"})
ONE_VALUE_TYPES = {"float_type": "number", "float_parsing": "number", "int_type": "whole number",
                   "int_parsing": "whole number", "string_type": "text", "bool_type": "true or false",
                   "bool_parsing": "true or false"}


#: the words YAML reads as true or false when they are not quoted
YAML_YES_NO = frozenset({"true", "false", "yes", "no", "on", "off"})


def _reads_as_number(text: str, whole: bool) -> bool:
    """Whether ``text`` (``seed: "7"``) would be the number the field takes written without its quotes: a whole one
    where ``whole`` ("7.0" is refused unquoted too), a finite one ("nan" is text unquoted as well)."""
    try:
        return int(text) is not None if whole else math.isfinite(float(text))
    except ValueError:
        return False


#: how a field's title counts what it holds (``two potentials [low, high]``), which a count must not repeat
NUMBER_WORDS = {2: "two", 3: "three"}


def shape_message(kind: str, value: Any, ctx: dict[str, Any] | None = None, field: FieldInfo | None = None
                  ) -> str | None:
    """The one plain line for a value of the wrong shape, or None for any other error (pydantic's ``kind``).

    Why: a chemist writes ``scan_rates_v_s: 0.1`` for a list of rates, or ``scan_rate_v_s: [0.1]`` for one, and
    pydantic answers "Input should be a valid list" or "List should have at least 2 items after validation, not 1";
    the protocol's and the campaign's messages both say instead what the field takes, with an example to copy:
    ``a list of scan rates (V/s), e.g. [0.1, 0.2, 0.5] (got 0.1)``, ``one number, not a list (got [0.1])``. What a
    list holds and the example are the ``field``'s ``title`` and first ``examples``, where it gives them.
    """
    holds = None if field is None else field.title
    sample = "" if field is None or not field.examples else f", e.g. {json.dumps(field.examples[0])}"
    if kind in LIST_TYPES and not isinstance(value, list | tuple):
        return f"a list{f' of {holds}' if holds else ''}{sample} (got {shown(value)})"
    if kind in ("too_short", "too_long") and isinstance(value, list | tuple) and ctx is not None:
        least = kind == "too_short"
        count = ctx["min_length" if least else "max_length"]
        # a comma for a decimal point (3,9 for 3.9) splits each number in two in a YAML list (a chemist's trial)
        comma = ("; a decimal comma? YAML reads 3,9 as two numbers: write 3.9" if not least and len(value) == 2 * count
                 and all(isinstance(item, int) and not isinstance(item, bool) for item in value) else "")
        if holds is not None and holds.startswith(f"{NUMBER_WORDS.get(count, '')} "):  # "two potentials [low, high]"
            return f"{holds}{sample} (got {shown(value)}){comma}"
        what = f"one of the {holds or 'items'}" if count == 1 else f"{count} {holds or 'items'}"  # not "1 columns"
        return f"{'at least' if least else 'at most'} {what}{sample} (got {shown(value)}){comma}"
    if kind == "bool_type" and not isinstance(value, list | tuple | dict):  # "yes" quoted is text, 1 a number
        quoted = isinstance(value, str) and value.strip().lower() in YAML_YES_NO  # "y" is no yes/no unquoted either
        return f"true or false{', without quotes' if quoted else ', or yes/no, on/off'} (got {shown(value)})"
    if kind in ("int_type", "float_type") and isinstance(value, str) and _reads_as_number(value, kind == "int_type"):
        return f"a {ONE_VALUE_TYPES[kind]}, without quotes (got {shown(value)})"
    if kind in ONE_VALUE_TYPES and isinstance(value, list | tuple | dict):
        shape = "a mapping" if isinstance(value, dict) else "a list"
        return f"one {ONE_VALUE_TYPES[kind]}, not {shape} (got {shown(value)})"
    return None


def must(message: str) -> str:
    """pydantic's ``Input should be a valid integer`` as the project says it, ``must be a valid integer``: the one
    rewording of its type errors the campaign (:mod:`labloop.orchestrator.config.yaml_source`) and a condition's value
    refused by its protocol step (:mod:`labloop.protocols.executor`) both give."""
    return re.sub(r"^(Input|Dictionary|List|Tuple|String) should", "must", message)


def unwrap(annotation: Any) -> Any:
    """``Annotated[X, ...]`` -> ``X``, ``X | None`` -> ``X`` (the optional sections and parameters)."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return unwrap(members[0]) if len(members) == 1 else annotation
    return annotation


def is_model(annotation: Any) -> bool:
    """Whether ``annotation`` is a pydantic model (a section, a step, a nested mapping of fields)."""
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def fields_by_name(model: type[BaseModel]) -> dict[str, FieldInfo]:
    """``model``'s fields by the names a file writes them with (their aliases)."""
    return {field.alias or name: field for name, field in model.model_fields.items()}


def _walk(model: type[BaseModel], loc: Loc) -> tuple[Any, FieldInfo | None] | None:
    """(the annotation found at ``loc`` inside ``model``, the field ``loc`` ends on or None), or None when ``loc``
    leaves the models (an unknown key, a value that is no model)."""
    annotation: Any = model
    field: FieldInfo | None = None
    for part in loc:
        annotation = unwrap(annotation)
        if is_model(annotation):
            field = fields_by_name(annotation).get(str(part))
            if field is None:
                return None
            annotation = field.annotation
        elif typing.get_origin(annotation) is dict:
            annotation, field = typing.get_args(annotation)[1], None
        elif typing.get_origin(annotation) in (list, tuple) and isinstance(part, int):
            annotation, field = typing.get_args(annotation)[0], None
        else:
            return None
    return annotation, field


def model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The model found at ``loc`` inside ``model`` (``("safety",)`` -> :class:`Safety`), if it is one."""
    found = _walk(model, loc)
    return None if found is None or not is_model(unwrap(found[0])) else unwrap(found[0])


def field_at(model: type[BaseModel], loc: Loc) -> FieldInfo | None:
    """The field ``loc`` ends on inside ``model`` (``("cv", "scan_rates_v_s")``), or None."""
    found = _walk(model, loc)
    return None if found is None else found[1]


def field_homes(places: tuple[tuple[str, type[BaseModel]], ...]) -> dict[str, tuple[str, ...]]:
    """Every field name of the models ``places`` holds, and of the models within them, -> the places it belongs
    (dotted, as a file nests them: ``safety``, ``world.truth``, ``instruments.<name>``; ``""`` the top level).

    Why: ``cell_volume_ml: 20`` written at the top of a campaign (it belongs under ``safety:``) was only "unknown
    field", with the top level's valid names; an unknown key that is a known field elsewhere says where
    (:func:`unknown_here`). One walk of the models' fields, not a list of keys kept by hand, so a new field is
    found where it is added. A field whose written form is not its model's (``WithJsonSchema``: the campaign's
    protocol is a file name or a list of steps) is not walked into.
    """
    homes: dict[str, list[str]] = {}

    def walk(place: str, model: type[BaseModel]) -> None:
        for name, field in fields_by_name(model).items():
            homes.setdefault(name, []).append(place)
            if any(isinstance(part, WithJsonSchema) for part in field.metadata):
                continue
            inner = unwrap(field.annotation)
            inside = f"{place}.{name}" if place else name
            if is_model(inner):
                walk(inside, inner)
            elif typing.get_origin(inner) is dict and is_model(value := unwrap(typing.get_args(inner)[1])):
                walk(f"{inside}.<name>", value)

    for place, model in places:
        walk(place, model)
    return {name: tuple(dict.fromkeys(where)) for name, where in homes.items()}


def unknown_here(name: str, homes: dict[str, tuple[str, ...]]) -> str | None:
    """``unknown field here; it belongs under safety:`` for a key unknown where it is written but a field elsewhere in
    ``homes`` (:func:`field_homes`), or None (a key known nowhere: a typo, for the caller's list of valid names)."""
    places = homes.get(name)
    if not places:
        return None
    nested = [f"{place}:" for place in places if place]
    said = ([] if all(places) else ["at the top level"]) + ([f"under {_either(nested)}"] if nested else [])
    return f"unknown field here; it belongs {_either(said)}"


def unknown_field(name: str, valid: Sequence[str]) -> str:
    """``unknown field; did you mean 'scan_rate_v_s'? valid fields: ...`` for a key known nowhere, the closest valid
    name offered when one is close (a field written without its unit, ``scan_rate``, or misspelt). Why: a chemist's
    ``scan_rate: 0.1`` got the list of a step's fourteen fields to search (a trial)."""
    valid = list(valid)
    if not valid:
        return "unknown field"
    close = [field for field in valid if field.startswith(f"{name}_")] or difflib.get_close_matches(
        name, valid, n=1, cutoff=0.6)
    guess = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown field; {guess}valid fields: {', '.join(valid)}"


def _either(words: list[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"
