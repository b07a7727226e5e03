"""Located, helpful `Problem`s: from Pydantic validation errors, and collected once each."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from orchestrator.compile.source_map import PathKey, SourceMap
from orchestrator.errors import Location, Problem, did_you_mean

Locator = Callable[..., Location]  # (path, at_key=False) -> Location


def _short_id(step_id: str) -> str:
    # An overlong id is itself the error; repeating all of it in every location hides the rest.
    return step_id if len(step_id) <= 40 else step_id[:37] + "..."


def display_path(path: PathKey, step_ids: Sequence[str | None] = ()) -> str:
    """``("steps", 1, "config", "lr")`` -> ``steps[1] (teacher).config.lr``."""
    out = ""
    for i, part in enumerate(path):
        if isinstance(part, int):
            out += f"[{part}]"
            if i == 1 and path[0] == "steps" and part < len(step_ids) and step_ids[part]:
                out += f" ({_short_id(str(step_ids[part]))})"
        else:
            out += ("." if out else "") + str(part)
    return out or "(pipeline)"


def make_locator(source_map: SourceMap | None, step_ids: Sequence[str | None]) -> Locator:
    def locate(path: PathKey, at_key: bool = False) -> Location:
        shown = display_path(path, step_ids)
        if source_map is None:
            return Location(path=shown)
        return source_map.locate(path, shown, at_key=at_key)

    return locate


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """Pydantic models an annotation can hold: itself, list items, dict values, union members."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    args = get_args(annotation)
    if get_origin(annotation) is dict and len(args) == 2:
        return _models_in(args[1])
    return [m for arg in args for m in _models_in(arg)]


def _model_at(model: type[BaseModel] | None, loc: Sequence[Any]) -> type[BaseModel] | None:
    """The nested model class that owns the last segment of ``loc`` (for field suggestions).

    Pydantic locations skip nothing: list indexes and dict keys appear as their own segments,
    so those are passed over while the annotation is unwrapped.
    """
    current = model
    for part in loc[:-1]:
        if current is None:
            return None
        field = current.model_fields.get(str(part)) if isinstance(part, str) else None
        if field is None:
            continue  # an index into a list or a key into a dict: the item type is already current
        candidates = _models_in(field.annotation)
        current = candidates[0] if candidates else None
    return current


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def yaml_number(value: float) -> str:
    """A non-finite float as YAML spells it (``.inf``, ``-.inf``, ``.nan``); others as repr."""
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return "-.inf" if value < 0 else ".inf"
    return repr(value)


NON_FINITE_HINT = (
    "use an ordinary number; .inf and .nan are accepted only where a field says so "
    "(Field(allow_inf_nan=True))"
)


def problems_from_validation_error(
    error: ValidationError,
    prefix: PathKey,
    locate: Locator,
    model: type[BaseModel] | None = None,
    kind: str = "config",
) -> list[Problem]:
    """One `Problem` per Pydantic error, located in the file, with hints for unknown fields."""
    problems = []
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"])
        path = (*prefix, *loc)
        hint = None
        if item["type"] == "extra_forbidden":
            owner = _model_at(model, loc)
            known = list(owner.model_fields) if owner is not None else []
            message = f"unknown field '{loc[-1]}'"
            suggestion = did_you_mean(str(loc[-1]), known)
            if suggestion:
                hint = suggestion
            elif known:
                hint = "valid fields: " + ", ".join(known)
        elif item["type"] == "missing":
            message = f"required field '{loc[-1]}' is missing"
        elif item["type"] == "finite_number":
            message = f"expected a finite number, got {yaml_number(item['input'])}"
            hint = NON_FINITE_HINT
        elif item["type"] in ("value_error", "assertion_error") and "error" in item.get("ctx", {}):
            # Our validators' own words, without Pydantic's "Value error, " in front.
            message = str(item["ctx"]["error"])
            if "input" in item and not isinstance(item["input"], dict | list):
                message += f" (got {_short(item['input'])})"
        else:
            message = item["msg"]
            if "input" in item and not isinstance(item["input"], dict | list):
                message += f" (got {_short(item['input'])})"
            if item["type"].startswith("literal_error") or item["type"] == "union_tag_invalid":
                hint = item.get("ctx", {}).get("expected") and f"expected {item['ctx']['expected']}"
        at_key = item["type"] == "extra_forbidden"
        problems.append(Problem(kind, message, locate(path, at_key=at_key), hint))
    return problems


class ProblemLog:
    """The problems one compilation finds, in the order found, each once: the same mistake seen
    from many matrix instances is one message."""

    def __init__(self, locate: Locator):
        self.locate = locate
        self.problems: list[Problem] = []
        self._seen: set[Problem] = set()

    def report(self, problems: Iterable[Problem]) -> None:
        for problem in problems:
            if problem not in self._seen:
                self._seen.add(problem)
                self.problems.append(problem)

    def add(
        self, kind: str, message: str, path: tuple, hint: str | None = None, at_key: bool = False
    ) -> None:
        """A problem located at ``path`` (at its mapping key with ``at_key``)."""
        self.report([Problem(kind, message, self.locate(path, at_key=at_key), hint)])
