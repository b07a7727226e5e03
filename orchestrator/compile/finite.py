"""Non-finite numbers (``.inf``, ``.nan``) in a validated step config.

kdorch's own schemas refuse them while validating (`schemas.base.Model` sets
``allow_inf_nan=False``). A component's Config may be a plain Pydantic model, which accepts
them, and any model may hold them in untyped (``Any``) fields; this scan catches both, so every
step config gets the same rule: refused unless a field says it means them, with
``Field(allow_inf_nan=True)`` or its model with ``model_config = ConfigDict(allow_inf_nan=True)``.
Only values the user set are scanned: defaults are the component author's choice.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

Path = tuple[str | int, ...]


def _allowed(model: type[BaseModel], field: FieldInfo | None) -> bool:
    if field is not None:
        for meta in field.metadata:
            allow = getattr(meta, "allow_inf_nan", None)
            if allow is not None:
                return bool(allow)
    return model.model_config.get("allow_inf_nan") is True


def _scan(value: Any, path: Path, found: list[tuple[Path, float]]) -> None:
    if isinstance(value, float):
        if not math.isfinite(value):
            found.append((path, value))
    elif isinstance(value, BaseModel):
        _scan_model(value, path, found)
    elif isinstance(value, dict):
        for key, item in value.items():
            _scan(item, (*path, key), found)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _scan(item, (*path, i), found)


def _scan_model(model: BaseModel, path: Path, found: list[tuple[Path, float]]) -> None:
    cls = type(model)
    for name, field in cls.model_fields.items():
        if name in model.model_fields_set and not _allowed(cls, field):
            _scan(getattr(model, name), (*path, field.alias or name), found)
    for name, value in (model.model_extra or {}).items():  # models with extra="allow"
        if not _allowed(cls, None):
            _scan(value, (*path, name), found)


def non_finite_values(model: BaseModel) -> list[tuple[Path, float]]:
    """(path inside the model, value) of every user-set non-finite float it does not allow."""
    found: list[tuple[Path, float]] = []
    _scan_model(model, (), found)
    return found
