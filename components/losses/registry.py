"""Which term builds each loss spec: one registration per loss, next to its term.

Each term module of this package registers a builder for its spec class from
`schemas.kd.losses`::

    @register_loss(KDLoss)
    def _build(spec: KDLoss, ctx: LossContext) -> LossTerm[KDLoss]:
        return HintonKD(spec)

The spec says what the term reads (`requires()`, checked by `distill` before training, and by
the term on every batch) and the builder makes the term. `builder_for` imports every module of
the package on first use, so a new loss is a spec class and a module with its `@register_loss`:
no list of modules to extend.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel
from torch import Tensor

from components.losses.base import LossTerm
from schemas.kd.losses import LOSS_SPECS


@dataclass(frozen=True)
class LossContext:
    """What some terms need besides their spec (sizes of projectors, schedules, statistics)."""

    num_classes: int
    student_feature_dim: int | None = None
    teacher_feature_dim: int | None = None
    class_means: Tensor | None = None
    total_steps: int | None = None


Builder = Callable[[Any, LossContext], LossTerm[Any]]
_BUILDERS: dict[type[BaseModel], Builder] = {}
B = TypeVar("B", bound=Builder)


def register_loss(spec_class: type[BaseModel]) -> Callable[[B], B]:
    """Register the decorated function as the builder of ``spec_class``'s terms (one each)."""
    if spec_class not in LOSS_SPECS:
        raise TypeError(f"{spec_class.__name__} is not part of schemas.kd.losses.LossSpec")

    def decorate(builder: B) -> B:
        taken = _BUILDERS.get(spec_class)
        if taken is not None and taken is not builder:
            raise TypeError(
                f"{spec_class.__name__} already has a builder, in {taken.__module__}; "
                f"{builder.__module__} registers another"
            )
        _BUILDERS[spec_class] = builder
        return builder

    return decorate


@functools.cache
def _import_term_modules() -> None:
    """Import every module of `components.losses`, so that each `@register_loss` has run."""
    import components.losses as package

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")


def builder_for(spec: Any) -> Builder:
    """The builder registered for ``spec``'s class."""
    _import_term_modules()
    try:
        return _BUILDERS[type(spec)]
    except KeyError:
        raise ValueError(
            f"no term is registered for loss type {getattr(spec, 'type', spec)!r}; known: "
            f"{sorted(c.model_fields['type'].default for c in _BUILDERS)}"
        ) from None


def registered() -> dict[type[BaseModel], Builder]:
    """Every spec class with its builder (after importing all term modules)."""
    _import_term_modules()
    return dict(_BUILDERS)
