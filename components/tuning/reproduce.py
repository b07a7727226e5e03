"""The ``--set`` lines that reproduce a trial of a `tune` step (no Ray).

A trial's values are keyed by paths into its base distill config, and ``kdorch run --set``
speaks the same path language (`schemas.engine.paths`), so a line is the path under the
step's prefix: ``steps.sweep.config.distill.losses[0].alpha=0.73``. ``--set`` edits the raw
YAML data: it creates missing mappings on the way but not missing list items, nor can it pick
a union member for a mapping it creates. So where a path passes a field the pipeline file does
not spell out (not in the base config's ``model_fields_set``) and a list item or a union
member lies beyond it, the whole field is set instead (``losses=[{type: kd, ..., alpha: 0.73}]``).
Values are YAML flow scalars that read back to the same value (``1.0e-05``, not ``1e-05``,
which YAML reads as a string).
"""

from __future__ import annotations

import json
import math
import re
import shlex
from collections.abc import Mapping
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from schemas.engine.paths import Path, apply, check_path, format_path, get_value, models_in
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
        settable = format_path(_settable(base, check_path(base, path)))
        out[f"{prefix}.{settable}"] = to_yaml(to_jsonable_python(get_value(best, settable)))
    return [f"{key}={value}" for key, value in out.items()]


def set_lines(base: DistillConfig, values: Mapping[str, Any], *, prefix: str) -> list[str]:
    """`set_assignments` as shell arguments: ``--set 'steps.tune.config.distill.epochs=3'``."""
    return [f"--set {_quote(text)}" for text in set_assignments(base, values, prefix=prefix)]


def _quote(text: str) -> str:
    quoted = shlex.quote(text)
    return quoted if quoted != text else f"'{text}'"


def _settable(base: DistillConfig, parts: Path) -> Path:
    """``parts``, or its head up to the first field that the pipeline file does not spell out
    when what lies beyond it is a list item or a field of a union member (see the module)."""
    node: Any = base
    for depth, part in enumerate(parts):
        if isinstance(node, BaseModel) and part not in node.model_fields_set:
            annotation = type(node).model_fields[str(part)].annotation
            beyond = parts[depth + 1 :]
            if any(isinstance(p, int) for p in beyond) or len(set(models_in(annotation))) > 1:
                return parts[: depth + 1]
        node = getattr(node, str(part)) if isinstance(node, BaseModel) else node[part]
    return parts


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
