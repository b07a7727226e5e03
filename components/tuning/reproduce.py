"""The ``--set`` lines that reproduce a trial of a `tune` step (no Ray).

``kdorch run --set`` (`orchestrator.frontend.overrides`) takes dotted paths whose list items
are addressed by a numeric segment (``losses.0.alpha``), not by ``[0]``; it edits the raw YAML
data, and it can create missing mappings on the way but not missing list items. So a path is
written dotted when the lists it crosses are written in the pipeline file (they are in the
base config's ``model_fields_set``), and otherwise the whole field that is missing is set
(``losses=[{type: kd, ..., alpha: 0.73}]``), which works either way. Values are written as
YAML flow scalars that read back to the same value (``1.0e-05``, not ``1e-05``, which YAML
reads as a string).
"""

from __future__ import annotations

import json
import math
import re
import shlex
from collections.abc import Iterable, Mapping
from typing import Any

import yaml
from pydantic import BaseModel

from schemas.engine.paths import PathPart, apply, format_path, get_value, models_in, parse_path
from schemas.kd.components.distill import DistillConfig

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-/]*")


def tune_step_prefix(step_id: str) -> str:
    """Where a `tune` step's base distill config sits in a pipeline."""
    return f"steps.{step_id}.config.distill"


def set_assignments(base: DistillConfig, values: Mapping[str, Any], *, prefix: str) -> list[str]:
    """``path=value`` texts (what ``--set`` takes) that turn ``base`` into ``apply(base, values)``.

    ``prefix`` locates ``base`` in the pipeline: `tune_step_prefix` for the tune step's own
    base config, or ``steps.<id>.config`` to put the best values into a plain `distill` step.
    Values are read from the applied config, so they are typed as the fields hold them.
    """
    best = apply(base, values)
    out: dict[str, str] = {}
    for path in values:
        key, value = _assignment(base, best, parse_path(path))
        out[f"{prefix}.{key}"] = to_yaml(value)
    return [f"{key}={value}" for key, value in out.items()]


def set_lines(base: DistillConfig, values: Mapping[str, Any], *, prefix: str) -> list[str]:
    """`set_assignments` as shell arguments: ``--set 'steps.tune.config.distill.epochs=3'``."""
    return [f"--set {_quote(text)}" for text in set_assignments(base, values, prefix=prefix)]


def _quote(text: str) -> str:
    quoted = shlex.quote(text)
    return quoted if quoted != text else f"'{text}'"


def _assignment(
    base: DistillConfig, best: DistillConfig, parts: tuple[PathPart, ...]
) -> tuple[str, Any]:
    """(dotted key, value) for one path: dotted down to the value, or cut at the first field
    that the pipeline file does not spell out and that ``--set`` could not create there."""
    node: Any = base
    for depth, part in enumerate(parts):
        if isinstance(node, BaseModel) and part not in node.model_fields_set:
            rest = parts[depth + 1 :]
            field = type(node).model_fields[str(part)]
            if any(isinstance(p, int) for p in rest) or _is_union(field.annotation):
                cut = parts[: depth + 1]
                return _dotted(cut), _jsonable(get_value(best, format_path(cut)))
        node = getattr(node, str(part)) if isinstance(node, BaseModel) else node[part]
    return _dotted(parts), _jsonable(get_value(best, format_path(parts)))


def _is_union(annotation: Any) -> bool:
    """True when a field can hold more than one model class (a mapping could not be typed)."""
    return len(set(models_in(annotation))) > 1


def _dotted(parts: Iterable[PathPart]) -> str:
    return ".".join(str(p) for p in parts)


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def to_yaml(value: Any) -> str:
    """One-line YAML flow text that ``yaml.safe_load`` reads back as ``value``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value)
        mantissa, e, exponent = text.partition("e")
        if e and "." not in mantissa:
            text = f"{mantissa}.0e{exponent}"
        return text
    if isinstance(value, str):
        plain = _PLAIN.fullmatch(value) and yaml.safe_load(value) == value
        return value if plain else json.dumps(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{to_yaml(str(k))}: {to_yaml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(to_yaml(v) for v in value) + "]"
    raise TypeError(f"cannot write a {type(value).__name__} as YAML: {value!r}")
