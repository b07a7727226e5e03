"""A step's config and outputs as MLflow's records: params, metrics per epoch, tags.

Everything here reads JSON as the run record holds it (``model_dump(mode="json")``): secrets
are `SecretStr` there and read ``**********``, so no credential reaches a tracker.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

#: MLflow's limits (mlflow.utils.validation): longer values are cut, with a mark.
MAX_PARAM_VALUE = 6000
MAX_PARAM_KEY = 250
MAX_TAG_VALUE = 8000
_BAD_NAME = re.compile(r"[^A-Za-z0-9_\-. /:]")


def clean_name(name: str) -> str:
    """A param or metric name MLflow accepts (letters, digits, ``_-. /:``; others become ``_``)."""
    return _BAD_NAME.sub("_", name)[:MAX_PARAM_KEY] or "_"


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    if len(text) > MAX_PARAM_VALUE:
        return text[: MAX_PARAM_VALUE - 20] + " ... (cut by kdorch)"
    return text


def flatten_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A config as flat params: nested fields joined by ``.`` (``optimizer.lr``), lists of
    objects by index (``losses.0.type``), other lists and values as JSON text."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten_params(value, f"{name}."))
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            for i, item in enumerate(value):
                out.update(flatten_params(item, f"{name}.{i}."))
        else:
            out[clean_name(name)] = _text(value)
    return out


def number(value: Any) -> float | None:
    """A finite number (never a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def flatten_numbers(values: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numbers of a (nested) mapping, nested names joined by ``/``."""
    out: dict[str, float] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_numbers(value, f"{name}/"))
        elif (x := number(value)) is not None:
            out[clean_name(name)] = x
    return out


def history_points(history: list[Any]) -> Iterator[tuple[str, float, int]]:
    """(name, value, step) for every number of every epoch; the step is the row's ``epoch``
    (else its position)."""
    for i, row in enumerate(history):
        if not isinstance(row, Mapping):
            continue
        epoch = number(row.get("epoch"))
        step = int(epoch) if epoch is not None else i
        for name, value in flatten_numbers(row).items():
            if name != "epoch":
                yield name, value, step


def is_artifact(value: Any) -> bool:
    """An artifact reference as JSON: a folder in the store with its data version."""
    return isinstance(value, Mapping) and "path" in value and "data_version" in value


def output_metrics(outputs: Mapping[str, Any]) -> dict[str, float]:
    """A step's final numbers: its ``metrics`` output, and the ``metrics`` an artifact carries
    (an evaluation report's, per model: ``<model>/top1``)."""
    found: dict[str, float] = {}
    for port, value in outputs.items():
        if port == "metrics" and isinstance(value, Mapping):
            found.update(flatten_numbers(value))
            found.pop("epoch", None)  # the last epoch's number, not a measure
        elif is_artifact(value) and isinstance(value.get("metrics"), Mapping):
            found.update(flatten_numbers(value["metrics"]))
    return found


def output_history(outputs: Mapping[str, Any]) -> list[Any]:
    history = outputs.get("history")
    return history if isinstance(history, list) else []


def artifacts(outputs: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(port, reference) of every artifact among a step's outputs (lists included)."""
    for port, value in outputs.items():
        if is_artifact(value):
            yield port, value
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if is_artifact(item):
                    yield f"{port}/{i}", item


def tag_text(value: Any) -> str:
    text = str(value)
    return text if len(text) <= MAX_TAG_VALUE else text[: MAX_TAG_VALUE - 20] + " ... (cut)"
