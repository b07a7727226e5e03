"""`ModelCheckpoint` artifacts: ``model.json`` (spec + extra) and ``weights.pt`` in the store.

Encoding is `components.models.checkpoint`; this module puts the files into a step's output
folder and reads them back verified (a flipped byte in ``weights.pt`` is a `CorruptArtifact`
naming the file, never a silently different teacher). `initial_model` is where a training
step's first weights come from: fresh, the spec's pretrained ``weights``, or an ``init``
checkpoint.
"""

from __future__ import annotations

import io
from typing import Any

import torch

from components.models.checkpoint import WEIGHTS_FILE, decode_checkpoint, encode_checkpoint
from components.models.profile import count_parameters
from components.models.zoo import KDModel, build_model
from orchestrator import ArtifactStore, StepContext
from schemas.kd.artifacts import ModelCheckpoint
from schemas.kd.models import ModelSpec, SourceModelSpec


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


def initial_model(
    spec: ModelSpec, store: ArtifactStore, init: ModelCheckpoint | None, *, seed: int
) -> KDModel:
    """The network a training step starts from, in training mode: ``spec`` built with
    ``seed`` and then its pretrained ``weights`` (a model source's), or the weights of the
    ``init`` checkpoint loaded strictly into it (fine-tuning: the same architecture, or a
    `WeightsError` naming the keys and shapes that differ).

    Raises:
        ValueError: the spec has ``weights`` and an ``init`` checkpoint is given too.
    """
    from components.models.weights import load_strict

    if init is None:
        return build_model(spec, seed=seed, pretrained=True)
    if isinstance(spec, SourceModelSpec) and spec.weights is not None:
        raise ValueError(
            "the model's `weights` and the `init` input both give starting weights: keep one"
        )
    model = build_model(spec, seed=seed)
    where = f"init {store.uri(init.path)}"
    raw = store.read_file(init, WEIGHTS_FILE)
    state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    load_strict(model, state, where, f"this step's {spec.arch} model")
    return model.train()


def import_checkpoint(ctx: StepContext, spec: ModelSpec, *, seed: int) -> ModelCheckpoint:
    """A model source with pretrained ``weights`` as the step's ``model`` output: built,
    loaded strictly, its head replaced when asked, checked by one forward pass; ``model.json``
    records the weights file's identity (`components.models.identity`).

    Raises:
        ValueError: ``num_classes`` or ``input_shape`` unset (no dataset), or the weights and
            the network do not fit (the message names the keys, shapes or field to change).
    """
    from components.models.identity import weights_identity

    if not isinstance(spec, SourceModelSpec) or spec.weights is None:
        raise ValueError("import_model needs a model source spec with `weights`")
    unset = [name for name in ("num_classes", "input_shape") if getattr(spec, name) is None]
    if unset:
        raise ValueError(
            f"model.{' and model.'.join(unset)} unknown: connect the `data` input (a dataset "
            "gives both) or set them in the model spec"
        )
    model = build_model(spec, seed=seed, pretrained=True).eval()
    return save_model(ctx, "model", model, extra={"imported": weights_identity(spec)})
