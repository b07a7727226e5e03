"""Edge type checks: does what a port produces fit what the consuming port accepts?

Types are the annotations of the components' Outputs and Inputs fields. An output fits an input
when it is the same class or a subclass (a `ModelCheckpoint` fits an `ArtifactRef` input), when
the input is a union/Optional containing a fitting member, or for ``list[X]`` into ``list[Y]``
when X fits Y. A single value also fits a ``list[Y]`` input (it arrives as a one-item list).
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

_NUMERIC_WIDENING = {(int, float), (bool, int)}


def _union_members(tp: Any) -> tuple[Any, ...] | None:
    if get_origin(tp) in (Union, types.UnionType):
        return get_args(tp)
    return None


def list_item_type(tp: Any) -> Any | None:
    """X for ``list[X]`` (also inside Optional), else None."""
    members = _union_members(tp)
    if members is not None:
        for member in members:
            item = list_item_type(member)
            if item is not None:
                return item
        return None
    if get_origin(tp) in (list, tuple) or tp in (list, tuple):
        args = get_args(tp)
        return args[0] if args else Any
    return None


def fits(produced: Any, accepted: Any) -> bool:
    """Whether a value of type ``produced`` may be bound to a port annotated ``accepted``."""
    produced, accepted = strip_annotated(produced), strip_annotated(accepted)
    if accepted is Any or produced is Any:
        return True
    # A union output fits when each of its members does (into a union, member by member).
    produced_members = _union_members(produced)
    if produced_members is not None:
        return all(fits(m, accepted) for m in produced_members if m is not type(None))
    members = _union_members(accepted)
    if members is not None:
        return any(fits(produced, m) for m in members if m is not type(None))
    produced_item, accepted_item = list_item_type(produced), list_item_type(accepted)
    if accepted_item is not None and produced_item is not None:
        return fits(produced_item, accepted_item)
    if accepted_item is not None:  # a single value into a list port
        return fits(produced, accepted_item)
    if produced_item is not None:
        return False
    accepted_origin = get_origin(accepted) or accepted
    produced_origin = get_origin(produced) or produced
    if isinstance(produced_origin, type) and isinstance(accepted_origin, type):
        if (produced_origin, accepted_origin) in _NUMERIC_WIDENING:
            return True
        return issubclass(produced_origin, accepted_origin)
    return produced == accepted


def strip_annotated(tp: Any) -> Any:
    """``X`` for ``Annotated[X, ...]`` (Pydantic's Field metadata, validators), else ``tp``."""
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def type_name(tp: Any) -> str:
    """A short readable name: ``list[ModelCheckpoint]``, ``LogitShards | None``, ``adam | sgd``.

    Metadata of ``Annotated`` is dropped (it is Pydantic's, not part of the type a person
    writes), and a ``Literal`` reads as its values, as they are written in YAML.
    """
    tp = strip_annotated(tp)
    members = _union_members(tp)
    if members is not None:
        return " | ".join(type_name(m) for m in members)
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(_literal_text(v) for v in get_args(tp))
    if origin is not None:
        args = ", ".join("..." if a is Ellipsis else type_name(a) for a in get_args(tp))
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{args}]" if args else name
    if tp is type(None):
        return "None"
    if tp is Any:
        return "any"
    return getattr(tp, "__name__", str(tp))


def _literal_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)
