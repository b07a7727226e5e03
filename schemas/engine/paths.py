"""kdorch's one path language, applied to plain data (the parsed YAML) or to frozen Pydantic models.

A path names a place in a config: ``losses[0].alpha``, ``optimizer.lr``,
``steps.teacher.config.epochs``. ``--set`` and profiles edit the parsed YAML with `set_in_data`;
a `tune` step's search space is keyed by paths into its `DistillConfig`, which every trial
applies with `apply` (`check_path`, `get_value`: the same walk, read-only).

Grammar: ``key([i])*(.key([i])*)*``. A key is a field name or mapping key (a letter or ``_``,
then anything but ``.``, brackets and spaces) or a number, which on a list is an index
(``losses.0.alpha`` = ``losses[0].alpha``); on a list given to `set_in_data` as `ItemIds`
(``steps``), a key names the item with that id. A path may stop anywhere: ``optimizer``
replaces the whole optimizer config.

Errors are `PathError` (a `ValueError`, so Pydantic validators may raise it) and name the path:
unknown fields get "did you mean", indices are checked against the list they are applied to, a
field that only some members of a discriminated union have is explained (``losses[0].beta`` on
a ``kd`` loss), and values are refused with the field's own message.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, get_args

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

PathPart = str | int
"""A key (field name, mapping key or numeric segment), or a list index."""
Path = tuple[PathPart, ...]

M = TypeVar("M", bound=BaseModel)

_KEY = r"[A-Za-z_][^.\[\]\s]*|\d+"
_SEGMENT = re.compile(rf"({_KEY})((?:\[\d+\])*)")
_INDEX = re.compile(r"\[(\d+)\]")


class PathError(ValueError):
    """A path that does not parse, does not exist where it is applied, or a value it refuses."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.reason = message
        super().__init__(f"{path}: {message}")

    def __reduce__(self) -> tuple[object, ...]:
        # Rebuilt from both parts: a trial's error crosses process boundaries pickled.
        return (type(self), (self.path, self.reason))


def parse_path(path: str) -> Path:
    """``"losses[0].alpha"`` -> ``("losses", 0, "alpha")``; raises `PathError` if malformed.

    A numeric segment stays a string (``"losses.0"`` -> ``("losses", "0")``): on a list it
    is an index, on a mapping a key, as it was written.
    """
    if not isinstance(path, str) or not path:
        raise PathError(str(path), "a path must be a non-empty string like 'optimizer.lr'")
    parts: list[PathPart] = []
    for segment in path.split("."):
        match = _SEGMENT.fullmatch(segment)
        if match is None:
            raise PathError(
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
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + part
    return out


def _did_you_mean(name: str, candidates: Iterable[str], fmt: Callable[..., str] = str) -> str:
    """``"; did you mean 'x'?"`` for the closest candidates, or ``""``."""
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    if not close:
        return ""
    return "; did you mean " + " or ".join(f"'{fmt(c)}'" for c in close) + "?"


def _list_index(items: Sequence[Any], parts: Path, depth: int, shown: str, origin: str) -> int:
    """The index ``parts[depth]`` (``[i]`` or a number) addresses; ``origin``: where it was read."""
    part, where = parts[depth], format_path(parts[:depth])
    if isinstance(part, str) and not part.isdigit():
        example = format_path([*parts[:depth], 0, *parts[depth:]])
        raise PathError(shown, f"'{where}' is a list; index it first, e.g. '{example}'")
    index = int(part)
    if index >= len(items):
        has = f"has {len(items)} item(s)" if items else "is empty"
        last = len(items) - 1
        valid = "" if not items else f" (valid: [0]..[{last}])" if last else " (valid: [0])"
        raise PathError(shown, f"index [{index}] is out of range: '{where}' {has}{origin}{valid}")
    return index


def _not_a_list(node: Any, where: str, index: int) -> str:
    return f"'{where}' is a {type(node).__name__}, not a list; it has no [{index}]"


# ---- on frozen Pydantic models ------------------------------------------------------------


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


def _walk(root: BaseModel, parts: Path, shown: str) -> tuple[Path, Any]:
    """(the parts resolved, numbers on lists as indices; the value there), each step checked.
    A dict key that does not exist yet may be the last part (it adds an entry; value None)."""
    node: Any = root
    resolved: list[PathPart] = []
    owner: FieldInfo | None = None  # the field that holds `node` (None: the root)
    for depth, part in enumerate(parts):
        where = format_path(parts[:depth]) or "the config"
        if node is None:
            raise PathError(
                shown,
                f"'{where}' is not set (None) in the base config, so there is nothing to "
                f"address inside it; give '{where}' a value there first (for a list: one entry "
                "per item you want to search)",
            )
        if isinstance(node, list | tuple):
            part = _list_index(node, parts, depth, shown, " in the base config")
            node = node[part]
        elif isinstance(part, int):
            raise PathError(shown, _not_a_list(node, where, part))
        elif isinstance(node, BaseModel):
            fields = type(node).model_fields
            if part not in fields:
                raise PathError(shown, _unknown_field(node, parts, depth, owner))
            owner = fields[part]
            node = getattr(node, part)
        elif isinstance(node, dict):
            if part not in node and depth < len(parts) - 1:
                keys = [format_path([*parts[:depth], str(k), *parts[depth + 1 :]]) for k in node]
                close = _did_you_mean(format_path(parts), keys)
                raise PathError(shown, f"'{where}' has no key '{part}'{close}")
            node = node.get(part)
        else:
            raise PathError(
                shown, f"'{where}' is a {type(node).__name__}; it has no field '{part}'"
            )
        resolved.append(part)
    return tuple(resolved), node


def _unknown_field(node: BaseModel, parts: Path, depth: int, owner: FieldInfo | None) -> str:
    """Why ``parts[depth]`` is not a field of ``node``, with the most useful hint: when
    ``owner`` (the field holding ``node``) is a union of models, the members that have it."""
    name = str(parts[depth])
    cls = type(node)
    where = format_path(parts[:depth]) or "the config"

    def corrected(candidate: str) -> str:
        return format_path([*parts[:depth], candidate, *parts[depth + 1 :]])

    annotation = owner.annotation if owner is not None else cls
    having = [m for m in models_in(annotation) if m is not cls and name in m.model_fields]
    discriminator = (
        owner.discriminator
        if owner is not None and isinstance(owner.discriminator, str)
        else _discriminator(annotation)
    )
    hint = _did_you_mean(name, cls.model_fields, corrected)
    if having:
        return (
            f"'{where}' is a {_label(cls, discriminator)}, which has no field '{name}'; "
            f"'{name}' belongs to {', '.join(_label(m, discriminator) for m in having)} — "
            f"change '{where}' in the base config, or search another path{hint}"
        )
    hint = hint or "; fields: " + ", ".join(cls.model_fields)
    holder = f"{where}: {_label(cls, discriminator)}" if depth else cls.__name__
    return f"{holder} has no field '{name}'{hint}"


def check_path(config: BaseModel, path: str) -> Path:
    """Parse ``path`` and check that it addresses something in ``config``; returns its parts,
    resolved (a numeric segment that indexes a list becomes that index)."""
    return _walk(config, parse_path(path), path)[0]


def get_value(config: BaseModel, path: str) -> Any:
    """The value at ``path`` in ``config`` (``None`` for a dict key that is not there)."""
    return _walk(config, parse_path(path), path)[1]


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
            if pa[: len(pb)] == pb[: len(pa)]:
                raise PathError(a, f"overlaps '{b}' (one lies inside the other); keep one of them")


def apply(config: M, values: Mapping[str, Any]) -> M:
    """A NEW validated config: ``config`` with each ``path: value`` of ``values`` set.

    Every model from the root to each edited path is rebuilt with ``model_validate`` (its
    explicitly set fields plus the edit), so the constraints and validators of every level run;
    unset fields stay unset (validators may look at ``model_fields_set``), unedited nested
    models are passed on as they are, and all edits go in at once (so ``t_start <= t_end`` sees
    both new values). Raises `PathError` naming the path, for a path that does not exist and
    for a value the field refuses (with its own message). No values: ``config`` itself.
    """
    parsed = [(path, check_path(config, path)) for path in values]
    _overlaps(parsed)
    edits = {parts: (path, _plain(values[path])) for path, parts in parsed}
    rebuilt: M = _rebuild(config, (), edits)
    return rebuilt


def _rebuild(node: Any, prefix: Path, edits: Mapping[Path, tuple[str, Any]]) -> Any:
    if prefix in edits:
        return edits[prefix][1]
    inside = [p for p in edits if len(p) > len(prefix) and p[: len(prefix)] == prefix]
    heads = dict.fromkeys(p[len(prefix)] for p in inside)
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
        return {**node, **{h: _rebuild(node.get(h), (*prefix, h), edits) for h in heads}}
    raise AssertionError(f"unreachable: {format_path(prefix)} is a {type(node).__name__}")


def _refused(
    error: ValidationError, prefix: Path, data: Any, edits: Mapping[Path, tuple[str, Any]]
) -> PathError:
    """A `PathError` for a model that refused its edited ``data``, naming the edited path."""
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
    return PathError(blamed, "; ".join(messages))


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


# ---- on plain data (parsed YAML) ----------------------------------------------------------


@dataclass(frozen=True)
class ItemIds:
    """A list whose items a key may name by their id: ``steps.teacher`` is the item of
    ``steps`` whose ``id`` is ``teacher`` (a number still indexes it)."""

    field: str
    noun: str


def _item_by_id(items: list[Any], key: str, ids: ItemIds, shown: str) -> int | None:
    """The index of the item whose id is ``key``; None for a number that is no id."""
    known = [item.get(ids.field) if isinstance(item, dict) else None for item in items]
    if key in known:
        return known.index(key)
    if key.isdigit():
        return None
    names = [str(k) for k in known if k is not None]
    hint = _did_you_mean(key, names)
    raise PathError(
        shown, f"there is no {ids.noun} '{key}' ({ids.noun}s: {', '.join(names)}){hint}"
    )


def set_in_data(
    data: dict[str, Any], path: str, value: Any, *, ids: Mapping[Path, ItemIds] | None = None
) -> Path:
    """Set ``value`` at ``path`` inside ``data`` IN PLACE; returns the resolved path (list items
    as indices, e.g. ``("steps", 1, "config", "epochs")``).

    Missing mapping keys on the way are created as empty mappings; missing list items are not
    (a list is set whole). ``ids`` names the lists (by their resolved path) whose items a key
    may name by id. Nothing is validated here: the caller validates the edited data as a whole.
    """
    parts = parse_path(path)
    node: Any = data
    resolved: list[PathPart] = []
    for depth, part in enumerate(parts):
        where = format_path(resolved) or "(top)"
        listed = (ids or {}).get(tuple(resolved))
        key: PathPart
        if isinstance(node, list):
            found = (
                _item_by_id(node, part, listed, path) if listed and isinstance(part, str) else None
            )
            key = _list_index(node, parts, depth, path, "") if found is None else found
        elif not isinstance(node, dict):
            raise PathError(path, f"'{where}' holds a {type(node).__name__}, not a mapping")
        elif isinstance(part, int):
            raise PathError(path, _not_a_list(node, where, part))
        else:
            key = part
        resolved.append(key)
        if depth == len(parts) - 1:
            node[key] = value
        elif not isinstance(node, dict):
            node = node[key]
        elif key not in node and isinstance(parts[depth + 1], int):
            raise PathError(
                path,
                f"'{format_path(resolved)}' is not set, so it has no item [{parts[depth + 1]}]: "
                "set the whole list instead",
            )
        else:
            node = node.setdefault(key, {})
    return tuple(resolved)
