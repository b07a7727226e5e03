"""`AggregatorCheckpoint` and `AdaptiveModelCheckpoint` artifacts in the store.

An aggregator is ``aggregator.pt`` (state dict) plus its typed settings on the reference. An
adaptive model is a student checkpoint (``model.json``, ``weights.pt``) plus a copy of its
aggregator's weights; its experts are referenced checkpoints of the same store. All reads are
verified like every other artifact.
"""

from __future__ import annotations

import io

import torch

from components.artifacts.checkpoints import load_model, save_model
from components.metadmoe.adaptive import AdaptiveMetaDMoE
from components.metadmoe.transformer import Aggregator
from components.models.zoo import KDModel
from orchestrator import ArtifactStore, StepContext
from schemas.kd.artifacts import (
    Adaptation,
    AdaptiveModelCheckpoint,
    AggregatorCheckpoint,
    ModelCheckpoint,
)

AGGREGATOR_FILE = "aggregator.pt"
ENTROPY_KIND = "entropy_tta"
ADAPTIVE_KINDS = ("meta_dmoe", ENTROPY_KIND)


def _state_bytes(module: torch.nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, buffer)
    return buffer.getvalue()


def build_aggregator(ref: AggregatorCheckpoint) -> Aggregator:
    return Aggregator(ref.expert_dim, ref.student_dim, num_heads=ref.num_heads, dropout=ref.dropout)


def save_aggregator(
    ctx: StepContext, port: str, aggregator: Aggregator, **fields: object
) -> AggregatorCheckpoint:
    path = ctx.output_path(port)
    ctx.store.write_bytes(f"{path}/{AGGREGATOR_FILE}", _state_bytes(aggregator))
    return AggregatorCheckpoint(
        path=path,
        expert_dim=aggregator.expert_dim,
        student_dim=aggregator.out_dim,
        num_heads=aggregator.num_heads,
        **fields,
    )


def load_aggregator(store: ArtifactStore, ref: AggregatorCheckpoint) -> Aggregator:
    aggregator = build_aggregator(ref)
    state = torch.load(
        io.BytesIO(store.read_file(ref, AGGREGATOR_FILE)), map_location="cpu", weights_only=True
    )
    aggregator.load_state_dict(state)
    return aggregator.eval()


def save_adaptive(
    ctx: StepContext,
    port: str,
    student: KDModel,
    aggregator: Aggregator,
    aggregator_ref: AggregatorCheckpoint,
    experts: list[ModelCheckpoint],
    adaptation: Adaptation,
    metrics: dict[str, float],
    trained_domains: list[str],
    kind: str = "meta_dmoe",
) -> AdaptiveModelCheckpoint:
    plain = save_model(ctx, port, student, metrics=metrics)
    ctx.store.write_bytes(f"{plain.path}/{AGGREGATOR_FILE}", _state_bytes(aggregator))
    return AdaptiveModelCheckpoint(
        **plain.model_dump(exclude={"trained_domains"}),
        trained_domains=trained_domains,
        kind=kind,
        adaptation=adaptation,
        experts=experts,
        aggregator=aggregator_ref,
    )


def load_adaptive(store: ArtifactStore, ref: AdaptiveModelCheckpoint) -> AdaptiveMetaDMoE:
    """The adaptive model of a checkpoint, ready for ``adapt``/``predict`` (kind ``meta_dmoe``;
    ``entropy_tta``: the entropy-minimisation control, whose experts are not loaded)."""
    if ref.kind not in ADAPTIVE_KINDS:
        raise ValueError(f"unknown adaptive model kind {ref.kind!r} at {store.uri(ref.path)}")
    student, _ = load_model(store, ref)
    aggregator = build_aggregator(ref.aggregator)
    state = torch.load(
        io.BytesIO(store.read_file(ref, AGGREGATOR_FILE)), map_location="cpu", weights_only=True
    )
    aggregator.load_state_dict(state)
    entropy = ref.kind == ENTROPY_KIND
    experts = [] if entropy else [load_model(store, e)[0] for e in ref.experts]
    return AdaptiveMetaDMoE(
        student,
        aggregator,
        experts,
        inner_lr=ref.adaptation.inner_lr,
        steps=ref.adaptation.steps,
        entropy=entropy,
    )
