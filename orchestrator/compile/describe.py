"""What a config model accepts, as rows a person reads (`kdorch components NAME`).

A field whose type is a model lists that model's fields under it, indented. A field that takes
one of several models (a discriminated union such as ``losses`` or ``student``) says which key
picks the member and lists each member with its own fields, so the whole of what a YAML config
may say is on one page. Defaults read as YAML (``[256, 128]``, ``adam``, ``null``).
"""

from __future__ import annotations

import inspect
import types
from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import to_jsonable_python

from orchestrator.compile.typecheck import strip_annotated, type_name

MAX_DEPTH = 6  # nested models deeper than this are named, not expanded


@dataclass(frozen=True)
class FieldRow:
    """One line of a field table: ``depth`` is the nesting level (0: the model's own fields)."""

    depth: int
    name: str
    type: str
    default: str
    description: str


def first_paragraph(doc: str | None) -> str:
    """The first paragraph of a docstring as one line (a summary never stops mid-sentence)."""
    text = inspect.cleandoc(doc or "")
    return " ".join(text.split("\n\n", 1)[0].split())


def yaml_text(value: Any) -> str:
    """A value as it would be written in YAML flow style: ``[256, 128]``, ``adam``, ``null``."""
    try:
        plain = to_jsonable_python(value)  # models, tuples and enums as YAML would hold them
        text = yaml.safe_dump(plain, default_flow_style=True, width=10**9, sort_keys=False)
    except (yaml.YAMLError, ValueError, TypeError):
        return repr(value)
    return text.removesuffix("\n...\n").strip()


def _discriminator(annotation: Any, field: FieldInfo | None) -> str | None:
    if field is not None and isinstance(field.discriminator, str):
        return field.discriminator
    if get_origin(annotation) is Annotated:
        for meta in get_args(annotation)[1:]:
            found = getattr(meta, "discriminator", None)
            if isinstance(found, str):
                return found
    return None


def _models(tp: Any) -> list[type[BaseModel]]:
    """The model classes a (union) type consists of; empty unless every member is a model."""
    tp = strip_annotated(tp)
    if get_origin(tp) in (Union, types.UnionType):
        members = [strip_annotated(m) for m in get_args(tp) if m is not type(None)]
    else:
        members = [tp]
    if members and all(isinstance(m, type) and issubclass(m, BaseModel) for m in members):
        return members
    return []


def _item(annotation: Any) -> tuple[str, Any]:
    """("list of" / "dict of str to" / "", the item type) for a container of models."""
    tp = strip_annotated(annotation)
    if get_origin(tp) in (Union, types.UnionType):  # Optional[list[X]] and the like
        rest = [m for m in get_args(tp) if m is not type(None)]
        if len(rest) == 1:
            tp = rest[0]
    origin, args = get_origin(tp), get_args(tp)
    if origin in (list, tuple, set, frozenset) and args:
        return "list of", args[0]
    if origin is dict and len(args) == 2:
        return f"dict of {type_name(args[0])} to", args[1]
    return "", tp  # Optional[X] unwrapped: the default says it may be null


def _tag(member: type[BaseModel], key: str) -> str:
    field = member.model_fields.get(key)
    values = get_args(strip_annotated(field.annotation)) if field is not None else ()
    return " | ".join(str(v) for v in values) or member.__name__


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        try:
            if value == type(value)():
                return ""  # the nested rows below show these very defaults
        except Exception:  # a model with required fields: show the value itself
            pass
    return yaml_text(value)


def _description(field: FieldInfo, models: list[type[BaseModel]]) -> str:
    if field.description:
        return " ".join(field.description.split())
    return first_paragraph(models[0].__doc__) if len(models) == 1 else ""


def field_rows(
    model: type[BaseModel], depth: int = 0, seen: tuple[type, ...] = ()
) -> list[FieldRow]:
    """Every field of ``model``, with nested models and union members expanded below it."""
    rows: list[FieldRow] = []
    for name, field in model.model_fields.items():
        rows += _rows_for(name, field, depth, (*seen, model))
    return rows


def _rows_for(name: str, field: FieldInfo, depth: int, seen: tuple[type, ...]) -> list[FieldRow]:
    prefix, item = _item(field.annotation)
    models = _models(item)
    key = _discriminator(item, field if not prefix else None)
    if len(models) > 1:
        tags = " | ".join(_tag(m, key) for m in models) if key else type_name(item)
        chooser = f" (chosen by `{key}`)" if key else ""
        shown_type = f"{prefix or 'one of'}: {tags}{chooser}"
    else:
        shown_type = type_name(field.annotation)
    rows = [FieldRow(depth, name, shown_type, _default(field), _description(field, models))]
    if depth + 1 >= MAX_DEPTH:
        return rows
    if len(models) == 1 and models[0] not in seen:
        rows += field_rows(models[0], depth + 1, seen)
    elif len(models) > 1:
        for member in models:
            label = f"{key}: {_tag(member, key)}" if key else member.__name__
            doc = first_paragraph(member.__doc__)
            rows.append(FieldRow(depth + 1, label, member.__name__, "", doc))
            if member in seen:
                continue
            for row in field_rows(member, depth + 2, (*seen, member)):
                if not (row.depth == depth + 2 and row.name == key):  # already in the label
                    rows.append(row)
    return rows
