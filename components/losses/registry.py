"""Which term builds each loss spec: one registration per loss, next to its term.

Each loss module registers a builder for its spec class from `schemas.kd.losses`::

    @register_loss(KDLoss)
    def _build(spec: KDLoss, ctx: LossContext) -> LossTerm:
        return HintonKD(weight=spec.weight, temperature=spec.temperature, alpha=spec.alpha)

The spec says what the term reads (`requires()`, checked by `distill` before training) and the
builder makes the term; `build_loss` (combine.py) finds builders here.
"""

from __future__ import annotations

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


Builder = Callable[[Any, LossContext], LossTerm]
_BUILDERS: dict[type[BaseModel], Builder] = {}
B = TypeVar("B", bound=Builder)


def register_loss(spec_class: type[BaseModel]) -> Callable[[B], B]:
    """Register the decorated function as the builder of ``spec_class``'s terms."""
    if spec_class not in LOSS_SPECS:
        raise TypeError(f"{spec_class.__name__} is not part of schemas.kd.losses.LossSpec")

    def decorate(builder: B) -> B:
        _BUILDERS[spec_class] = builder
        return builder

    return decorate


def builder_for(spec: Any) -> Builder:
    try:
        return _BUILDERS[type(spec)]
    except KeyError:
        raise ValueError(
            f"no term is registered for loss type {getattr(spec, 'type', spec)!r}; known: "
            f"{sorted(c.model_fields['type'].default for c in _BUILDERS)}"
        ) from None


def registered() -> dict[type[BaseModel], Builder]:
    return dict(_BUILDERS)
