"""A weighted sum of loss terms (`CombinedLoss`), built from validated specs (`build_loss`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
from pydantic import TypeAdapter
from torch import Tensor, nn

from components.losses.base import KDBatch, LossTerm
from components.losses.registry import LossContext, builder_for
from schemas.kd.losses import LossSpec


class CombinedLoss(nn.Module):
    """The sum of its terms' weighted losses.

    Terms sit in a ``ModuleList``, so their parameters (ND and hint projectors) are trained and
    their state (projectors, TAID's t and m) is saved with ``state_dict()``. Terms are named by
    their type; repeats get a suffix (``kd``, ``kd_1``, ...).

    ``forward(batch)`` returns the total and a flat dict of floats for logging:
    ``"<term>/<part>"`` for each term's unweighted parts (e.g. ``"kd/kl"``, ``"kd/ce"``) and
    ``"<term>/total"`` for the term's weighted contribution to the total.
    """

    def __init__(self, terms: Sequence[LossTerm[Any]]) -> None:
        super().__init__()
        if not terms:
            raise ValueError("a loss needs at least one term")
        self.terms = nn.ModuleList(terms)
        self.names: list[str] = []
        for term in terms:
            name, n = term.name, 1
            while name in self.names:
                name, n = f"{term.name}_{n}", n + 1
            self.names.append(name)
        self.requires: frozenset[str] = frozenset().union(*(t.requires for t in terms))

    def named_terms(self) -> list[tuple[str, LossTerm[Any]]]:
        """(logged name, term) pairs, in order."""
        return list(zip(self.names, cast("list[LossTerm[Any]]", list(self.terms)), strict=True))

    def term(self, name: str) -> LossTerm[Any]:
        """The term logged under ``name`` (e.g. "kd_1")."""
        return dict(self.named_terms())[name]

    def forward(self, batch: KDBatch) -> tuple[Tensor, dict[str, float]]:
        missing = batch.missing(self.requires)
        if missing:
            needs = {
                name: sorted(term.requires & set(missing))
                for name, term in self.named_terms()
                if term.requires & set(missing)
            }
            advice = "".join(term.advice(batch) for _, term in self.named_terms())
            raise ValueError(f"the batch lacks {missing}, needed by the losses {needs}{advice}")
        total = torch.zeros((), dtype=torch.float32, device=batch.student_logits.device)
        logged: dict[str, float] = {}
        for name, term in self.named_terms():
            out = term(batch)
            total = total + out.total
            logged[f"{name}/total"] = float(out.total.detach())
            logged.update({f"{name}/{k}": float(v) for k, v in out.parts.items()})
        return total, logged

    def on_step_end(self, loss_value: float) -> None:
        """Forward the end of an optimiser step to every term (TAID adapts here)."""
        for _, term in self.named_terms():
            term.on_step_end(loss_value)


_SPEC_ADAPTER: TypeAdapter[Any] = TypeAdapter(LossSpec)


def build_loss(
    specs: Sequence[LossSpec | Mapping[str, Any]],
    *,
    num_classes: int,
    student_feature_dim: int | None = None,
    teacher_feature_dim: int | None = None,
    class_means: Tensor | None = None,
    total_steps: int | None = None,
) -> CombinedLoss:
    """A `CombinedLoss` from `schemas.kd.losses` specs (plain dicts are validated first).

    Raises ``ValueError`` naming the loss type and what it lacks when a term cannot be built:
    ``taid`` needs total_steps; ``nd`` needs class_means and student_feature_dim; ``hint``
    needs both feature widths.
    """
    ctx = LossContext(
        num_classes, student_feature_dim, teacher_feature_dim, class_means, total_steps
    )
    terms: list[LossTerm[Any]] = []
    for raw in specs:
        spec = _SPEC_ADAPTER.validate_python(raw) if isinstance(raw, Mapping) else raw
        terms.append(builder_for(spec)(spec, ctx))
    return CombinedLoss(terms)
