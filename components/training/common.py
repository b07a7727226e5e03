"""Pieces the training components share: fitting a model spec to a dataset, exporting weights."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from orchestrator import StepContext
from schemas.kd.artifacts import Dataset, ModelCheckpoint
from schemas.kd.models import ModelSpec

if TYPE_CHECKING:
    from components.training.trainer import FitResult


def fit_spec_to_dataset(spec: ModelSpec, dataset: Dataset) -> ModelSpec:
    """Fill the spec's ``num_classes``/``input_shape`` from the dataset; refuse contradictions."""
    shape = tuple(dataset.feature_shape)
    updates: dict[str, Any] = {}
    if spec.num_classes is None:
        updates["num_classes"] = dataset.num_classes
    elif spec.num_classes != dataset.num_classes:
        raise ValueError(
            f"model.num_classes is {spec.num_classes} but the dataset has "
            f"{dataset.num_classes} classes"
        )
    if spec.input_shape is None:
        updates["input_shape"] = shape
    elif tuple(spec.input_shape) != shape:
        raise ValueError(
            f"model.input_shape is {list(spec.input_shape)} but dataset rows are {list(shape)}"
        )
    return spec.model_copy(update=updates) if updates else spec


def trained_domains(dataset: Dataset, settings: Any) -> list[str]:
    """The domains whose labelled rows a training step used (multi-domain data), so that
    later steps can tell which models saw a held-out domain; [] for single-domain data."""
    if not dataset.domains:
        return []
    chosen = settings.domains if settings.domains is not None else dataset.domains
    return [d for d in chosen if d not in settings.exclude_domains]


def export_model(
    ctx: StepContext,
    spec: ModelSpec,
    state: dict[str, torch.Tensor],
    metrics: dict[str, float],
    history: list[dict[str, Any]],
    domains: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> ModelCheckpoint:
    """Write the student as a `ModelCheckpoint` (spec + weights), rebuildable anywhere.

    Wall-clock timings stay out of the artifact: its data version then depends only on what was
    trained, so retraining the same config (bit-reproducible on one CPU worker) keeps every
    downstream cache valid. Timings remain in the step's `history` output and the run record.
    """
    from components.artifacts.checkpoints import save_model
    from components.models.zoo import build_model

    model = build_model(spec)
    model.load_state_dict(state)
    checkpoint = save_model(
        ctx,
        "model",
        model,
        metrics=without_wall_clock(metrics),
        extra={"history": [without_wall_clock(h) for h in history], **(extra or {})},
    )
    return checkpoint.model_copy(update={"trained_domains": list(domains or [])})


def export_trained(
    ctx: StepContext,
    spec: ModelSpec,
    result: FitResult,
    data: Dataset,
    settings: Any,
    extra: dict[str, Any] | None = None,
) -> ModelCheckpoint:
    """`export_model` for a training step's `FitResult` on ``data``, with the domains it used
    (``extra``: more for ``model.json``, e.g. the augmented views a student trained on)."""
    return export_model(
        ctx,
        spec,
        result.student_state,
        result.metrics,
        result.history,
        trained_domains(data, settings),
        extra,
    )


WALL_CLOCK_KEYS = frozenset({"seconds"})


def without_wall_clock(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k not in WALL_CLOCK_KEYS}
