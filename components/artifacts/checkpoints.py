"""`ModelCheckpoint` artifacts: ``model.json`` (spec + extra) and ``weights.pt`` in the store.

Encoding is `components.models.checkpoint`; this module puts the files into a step's output
folder and reads them back verified (a flipped byte in ``weights.pt`` is a `CorruptArtifact`
naming the file, never a silently different teacher).
"""

from __future__ import annotations

from typing import Any

import torch

from components.models.checkpoint import decode_checkpoint, encode_checkpoint
from components.models.profile import count_parameters
from components.models.zoo import KDModel
from orchestrator import ArtifactStore, StepContext
from schemas.kd.artifacts import ModelCheckpoint


def save_model(
    ctx: StepContext,
    port: str,
    model: KDModel,
    *,
    metrics: dict[str, float] | None = None,
    extra: dict[str, Any] | None = None,
) -> ModelCheckpoint:
    """Write ``model`` as the step's output ``port``; returns the (unsealed) reference."""
    path = ctx.output_path(port)
    document = {**(extra or {}), **({"metrics": metrics} if metrics is not None else {})}
    for name, data in encode_checkpoint(model, document).items():
        ctx.store.write_bytes(f"{path}/{name}", data)
    return ModelCheckpoint(
        path=path,
        model=model.spec,
        num_parameters=count_parameters(model),
        metrics=dict(metrics or {}),
    )


def load_model(
    store: ArtifactStore,
    checkpoint: ModelCheckpoint,
    *,
    map_location: str | torch.device = "cpu",
) -> tuple[KDModel, dict[str, Any]]:
    """The network of a checkpoint (eval mode) and its extra document, verified on read."""
    names = {e.path for e in store.manifest(checkpoint).files}
    files = {name: store.read_file(checkpoint, name) for name in names}
    return decode_checkpoint(files, store.uri(checkpoint.path), map_location=map_location)
