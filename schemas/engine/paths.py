"""Paths into a config (``losses[0].alpha``, ``optimizer.lr``, ``teacher_weights[1]``) and
`apply`, which builds a new validated config with values set at such paths.

This is what a `tune` step's search space is keyed by, and what every trial uses to turn the
values Ray Tune picked into its own `DistillConfig`. It knows nothing of Ray or of distill in
particular: it works on any frozen Pydantic model.

Grammar: dot-separated field names, each optionally followed by ``[index]`` list indices:
``name([i])*(.name([i])*)*`` with identifier names and non-negative integer indices. A name
addresses a field of a model (or a key of a dict field); an index addresses a list or tuple
item. A path may stop anywhere, so ``optimizer`` replaces the whole optimizer config.

Errors are `TunePathError` (a `ValueError`, so Pydantic validators may raise it), and always
name the path: unknown fields get "did you mean", indices are checked against the list in the
config they are applied to, a field that only some members of a discriminated union have is
explained (``losses[0].beta`` on a ``kd`` loss), and values are refused with the field's own
validation message.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar, get_args

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

PathPart = str | int
"""A field name (or dict key), or a list index."""
Path = tuple[PathPart, ...]

M = TypeVar("M", bound=BaseModel)

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_SEGMENT = re.compile(rf"({_NAME})((?:\[\d+\])*)")
_INDEX = re.compile(r"\[(\d+)\]")


class TunePathError(ValueError):
    """A path that does not parse, does not exist in the config, or a value it refuses."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.reason = message
        super().__init__(f"{path}: {message}")

    def __reduce__(self) -> tuple[object, ...]:
        # Rebuilt from both parts: a trial's error crosses process boundaries pickled.
        return (type(self), (self.path, self.reason))


def parse_path(path: str) -> Path:
    """``"losses[0].alpha"`` -> ``("losses", 0, "alpha")``; raises `TunePathError` if malformed."""
    if not isinstance(path, str) or not path:
        raise TunePathError(str(path), "a path must be a non-empty string like 'optimizer.lr'")
    parts: list[PathPart] = []
    for segment in path.split("."):
        match = _SEGMENT.fullmatch(segment)
        if match is None:
            raise TunePathError(
                path,
                f"cannot read segment '{segment}': write field names joined by '.', each "
                "optionally followed by list indices, e.g. 'losses[0].alpha' or 'optimizer.lr'",
            )
        parts.append(match.group(1))
        parts.extend(int(i) for i in _INDEX.findall(match.group(2)))
    return tuple(parts)


def format_path(parts: Sequence[PathPart]) -> str:
    """The inverse of `parse_path`: ``("losses", 0, "alpha")`` -> ``"losses[0].alpha"``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def _did_you_mean(name: str, candidates: Iterable[str], fmt: Any = None) -> str:
    """``"; did you mean 'x'?"`` for the closest candidates, or ``""``."""
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    if not close:
        return ""
    shown = [fmt(c) if fmt else c for c in close]
    return "; did you mean " + " or ".join(f"'{c}'" for c in shown) + "?"


def models_in(annotation: Any) -> list[type[BaseModel]]:
    """Model classes an annotation can hold: itself, list items, dict values, union members."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in models_in(arg)]


def _discriminator(annotation: Any) -> str | None:
    """The discriminator field name of a (possibly nested) ``Field(discriminator=...)``."""
    for arg in get_args(annotation):
        if isinstance(arg, FieldInfo) and isinstance(arg.discriminator, str):
            return arg.discriminator
        found = _discriminator(arg)
        if found is not None:
            return found
    return None


def _label(cls: type[BaseModel], discriminator: str | None) -> str:
    """``"DKDLoss (type: dkd)"``: a union member, with its tag when it has one."""
    if discriminator is not None:
        field = cls.model_fields.get(discriminator)
        if field is not None and isinstance(field.default, str):
            return f"{cls.__name__} ({discriminator}: {field.default})"
    return cls.__name__


def _walk(root: BaseModel, parts: Path, shown: str) -> list[Any]:
    """The nodes along ``parts`` (root first, the addressed value last); checks every step.

    A dict key that does not exist yet is allowed as the last part (it adds an entry); the
    last node is then ``None``.
    """
    nodes: list[Any] = [root]
    node: Any = root
    owner: FieldInfo | None = None  # the field that holds `node` (None: the root)
    for depth, part in enumerate(parts):
        where = format_path(parts[:depth]) or "the config"
        last = depth == len(parts) - 1
        if node is None:
            raise TunePathError(
                shown,
                f"'{where}' is not set (None) in the base config, so there is nothing to "
                f"address inside it; give '{where}' a value there first (for a list: one entry "
                "per item you want to search)",
            )
        if isinstance(part, int):
            if not isinstance(node, list | tuple):
                raise TunePathError(
                    shown, f"'{where}' is a {type(node).__name__}, not a list; it has no [{part}]"
                )
            if part >= len(node):
                has = f"has {len(node)} item(s)" if node else "is empty"
                valid = (
                    ""
                    if not node
                    else " (valid: [0])"
                    if len(node) == 1
                    else (f" (valid: [0]..[{len(node) - 1}])")
                )
                raise TunePathError(
                    shown,
                    f"index [{part}] is out of range: '{where}' {has} in the base config{valid}",
                )
            node = node[part]
        elif isinstance(node, BaseModel):
            fields = type(node).model_fields
            if part not in fields:
                raise TunePathError(shown, _unknown_field(node, parts, depth, owner))
            owner = fields[part]
            node = getattr(node, part)
        elif isinstance(node, dict):
            if part not in node:
                if last:
                    node = None
                    nodes.append(node)
                    break
                keys = [format_path([*parts[:depth], str(k), *parts[depth + 1 :]]) for k in node]
                close = _did_you_mean(format_path(parts), keys)
                raise TunePathError(shown, f"'{where}' has no key '{part}'{close}")
            node = node[part]
        elif isinstance(node, list | tuple):
            example = format_path([*parts[:depth], 0, *parts[depth:]])
            raise TunePathError(shown, f"'{where}' is a list; index it first, e.g. '{example}'")
        else:
            raise TunePathError(
                shown, f"'{where}' is a {type(node).__name__}; it has no field '{part}'"
            )
        nodes.append(node)
    return nodes


def _unknown_field(node: BaseModel, parts: Path, depth: int, owner: FieldInfo | None) -> str:
    """Why ``parts[depth]`` is not a field of ``node``, with the most useful hint.

    ``owner`` is the field that holds ``node``: when it is a union of models (a list of them
    counts), the hint names the members that do have the field.
    """
    name = str(parts[depth])
    cls = type(node)
    where = format_path(parts[:depth]) or "the config"

    def corrected(candidate: str) -> str:
        return format_path([*parts[:depth], candidate, *parts[depth + 1 :]])

    annotation = owner.annotation if owner is not None else cls
    members = [m for m in models_in(annotation) if m is not cls]
    having = [m for m in members if name in m.model_fields]
    discriminator = (
        owner.discriminator
        if owner is not None and isinstance(owner.discriminator, str)
        else _discriminator(annotation)
    )
    if having:
        return (
            f"'{where}' is a {_label(cls, discriminator)}, which has no field '{name}'; "
            f"'{name}' belongs to {', '.join(_label(m, discriminator) for m in having)} — "
            f"change '{where}' in the base config, or search another path"
            + _did_you_mean(name, cls.model_fields, corrected)
        )
    hint = _did_you_mean(name, cls.model_fields, corrected)
    if not hint:
        hint = "; fields: " + ", ".join(cls.model_fields)
    holder = f"{where}: {_label(cls, discriminator)}" if depth else cls.__name__
    return f"{holder} has no field '{name}'{hint}"


def check_path(config: BaseModel, path: str) -> Path:
    """Parse ``path`` and check that it addresses something in ``config``; returns its parts."""
    parts = parse_path(path)
    _walk(config, parts, path)
    return parts


def get_value(config: BaseModel, path: str) -> Any:
    """The value at ``path`` in ``config`` (``None`` for a dict key that is not there)."""
    return _walk(config, parse_path(path), path)[-1]


def _plain(value: Any) -> Any:
    """Numpy scalars (as some searchers return them) as Python scalars; containers recursed."""
    if isinstance(value, list | tuple):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "dtype") and hasattr(value, "item") and not isinstance(value, BaseModel):
        return value.item()
    return value


def _overlaps(paths: Sequence[tuple[str, Path]]) -> None:
    for i, (a, pa) in enumerate(paths):
        for b, pb in paths[i + 1 :]:
            short, long_ = (pa, pb) if len(pa) <= len(pb) else (pb, pa)
            if long_[: len(short)] == short:
                raise TunePathError(
                    a, f"overlaps '{b}' (one lies inside the other); keep one of them"
                )


def apply(config: M, values: Mapping[str, Any]) -> M:
    """A NEW validated config: ``config`` with each ``path: value`` of ``values`` set.

    Every model on the way from the root to each edited path is rebuilt with
    ``model_validate`` (its explicitly set fields plus the edit), so field constraints and
    model validators of every level run on the result. Fields that were not set stay unset
    (``model_fields_set`` is kept), which matters for validators that look at it, and nested
    models that are not edited are passed on as they are. All edits go in at once, so a
    constraint between two searched fields (``t_start <= t_end``) sees both new values.

    Raises `TunePathError` naming the path, for a path that does not exist and for a value
    the field refuses (with the field's own message). With no values, ``config`` itself is
    returned (it is frozen, so sharing it is safe).
    """
    parsed = [(path, check_path(config, path)) for path in values]
    _overlaps(parsed)
    edits = {parts: (path, _plain(values[path])) for path, parts in parsed}
    rebuilt: M = _rebuild(config, (), edits)
    return rebuilt


def _rebuild(node: Any, prefix: Path, edits: Mapping[Path, tuple[str, Any]]) -> Any:
    if prefix in edits:
        return edits[prefix][1]
    heads: dict[PathPart, None] = {}
    for parts in edits:
        if parts[: len(prefix)] == prefix and len(parts) > len(prefix):
            heads[parts[len(prefix)]] = None
    if not heads:
        return node
    if isinstance(node, BaseModel):
        data = {name: getattr(node, name) for name in node.model_fields_set}
        for head in heads:
            data[str(head)] = _rebuild(getattr(node, str(head)), (*prefix, head), edits)
        try:
            return type(node).model_validate(data)
        except ValidationError as e:
            raise _refused(e, prefix, data, edits) from None
    if isinstance(node, list | tuple):
        items = list(node)
        for head in heads:
            assert isinstance(head, int)
            items[head] = _rebuild(items[head], (*prefix, head), edits)
        return type(node)(items)
    if isinstance(node, dict):
        new = dict(node)
        for head in heads:
            new[head] = _rebuild(node.get(head), (*prefix, head), edits)
        return new
    raise AssertionError(f"unreachable: {format_path(prefix)} is a {type(node).__name__}")


def _refused(
    error: ValidationError, prefix: Path, data: Any, edits: Mapping[Path, tuple[str, Any]]
) -> TunePathError:
    """A `TunePathError` for a model that refused its edited ``data``, naming the edited path."""
    messages: list[str] = []
    blamed: str | None = None
    for item in error.errors(include_url=False):
        loc = (*prefix, *_clean_loc(data, item["loc"]))
        culprit = next(
            (path for parts, (path, _) in edits.items() if loc[: len(parts)] == parts), None
        )
        blamed = blamed or culprit
        where = format_path(loc)
        value = item.get("input")
        got = "" if isinstance(value, dict | list | BaseModel) else f" (got {value!r})"
        shown = f"{where}: " if where and where != culprit else ""
        message = item["msg"].removeprefix("Value error, ")
        messages.append(f"{shown}{message}{got}")
    if blamed is None:  # a model validator across fields: name every edit under this model
        inside = [path for parts, (path, _) in edits.items() if parts[: len(prefix)] == prefix]
        blamed = ", ".join(inside)
    return TunePathError(blamed, "; ".join(messages))


def _clean_loc(data: Any, loc: Sequence[Any]) -> Path:
    """A Pydantic error location without the union tags it inserts (``losses.0.kd.alpha``)."""
    out: list[PathPart] = []
    node = data
    for part in loc:
        if isinstance(node, list | tuple):
            node = node[part] if isinstance(part, int) and part < len(node) else None
        elif isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, BaseModel) and part in type(node).model_fields:
            node = getattr(node, part)
        elif isinstance(node, dict | BaseModel) and part in _tags(node):
            continue  # a tag of a discriminated union, not a place in the data
        else:
            node = None
        out.append(part)
    return tuple(out)


def _tags(node: dict[str, Any] | BaseModel) -> list[str]:
    """String values of a mapping or model: where a union's tag would come from."""
    items = node.values() if isinstance(node, dict) else vars(node).values()
    return [v for v in items if isinstance(v, str)]
