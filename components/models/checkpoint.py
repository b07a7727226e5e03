"""Model checkpoints as bytes: two files that rebuild a network anywhere.

- ``weights.pt``: ``torch.save`` of the state dict (CPU tensors). It is byte-deterministic:
  identical weights give identical bytes, hence an identical content hash, so a recomputed
  model with the same weights does not invalidate downstream caches.
- ``model.json``: ``{"spec": <spec.model_dump(mode="json")>, **extra}`` with sorted keys. The
  spec alone rebuilds the network, on any machine. A model source adds ``"source"``: the
  library version, or the python factory's code fingerprint, checked when it is rebuilt
  (`components.models.identity`: why).

This module only encodes and decodes; `components.artifacts.checkpoints` writes them into the
store and reads them back verified.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any

import torch
from pydantic import TypeAdapter, ValidationError

from components.models.identity import check_code_record, code_record
from components.models.zoo import KDModel, build_model
from orchestrator import ArtifactError
from schemas.kd.models import ModelSpec

SPEC_FILE = "model.json"
WEIGHTS_FILE = "weights.pt"
SOURCE_KEY = "source"  # model.json: the code a model source was built with (identity.py)
_SPEC: TypeAdapter[Any] = TypeAdapter(ModelSpec)


class CheckpointError(ArtifactError, ValueError):
    """A checkpoint that cannot be read or does not match its own spec."""


class CheckpointNotFoundError(ArtifactError, FileNotFoundError):
    """A checkpoint without ``model.json`` or ``weights.pt``."""


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    if hasattr(value, "tolist"):  # small arrays
        return value.tolist()
    raise TypeError(f"checkpoint extra: {type(value).__name__} is not JSON serialisable")


def encode_checkpoint(model: KDModel, extra: dict[str, Any] | None = None) -> dict[str, bytes]:
    """``{weights.pt: ..., model.json: ...}`` for ``model`` (spec plus ``extra``, e.g. metrics).

    ``extra`` must be JSON-serialisable (numpy/torch scalars are fine) and may not use the key
    ``"spec"``.
    """
    reserved = {"spec", SOURCE_KEY} & set(extra or {})
    if reserved:
        raise ValueError(
            f"checkpoint extra may not use the key {sorted(reserved)[0]!r} (it holds the model's "
            "spec and where its code came from)"
        )
    source = code_record(model.spec)
    document = {
        "spec": model.spec.model_dump(mode="json"),
        **({SOURCE_KEY: source} if source else {}),
        **(extra or {}),
    }
    text = json.dumps(document, indent=1, sort_keys=True, default=_json_default)
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
    return {WEIGHTS_FILE: buffer.getvalue(), SPEC_FILE: text.encode()}


def decode_checkpoint(
    files: Mapping[str, bytes | None],
    where: str,
    *,
    map_location: str | torch.device = "cpu",
) -> tuple[KDModel, dict[str, Any]]:
    """Rebuild a model from ``model.json`` alone, load ``weights.pt``; return (model, extra).

    ``where`` names the checkpoint in error messages. The model is returned in eval mode.

    Raises:
        CheckpointNotFoundError: a file is None (missing; also a ``FileNotFoundError``).
        CheckpointError: a file is unreadable or the weights do not fit the spec (also a
            ``ValueError``).
    """
    raw_spec = files.get(SPEC_FILE)
    if raw_spec is None:
        raise CheckpointNotFoundError(
            f"{where}/{SPEC_FILE} not found: {where} is not a kdorch model checkpoint"
        )
    try:
        document = json.loads(raw_spec)
    except ValueError as e:
        raise CheckpointError(f"{where}/{SPEC_FILE} is not valid JSON: {e}") from e
    if not isinstance(document, dict) or "spec" not in document:
        raise CheckpointError(f"{where}/{SPEC_FILE} has no 'spec' entry: not a model checkpoint")
    try:
        spec = _SPEC.validate_python(document.pop("spec"))
    except (ValidationError, ValueError) as e:
        raise CheckpointError(f"{where}/{SPEC_FILE}: invalid model spec: {e}") from e
    try:
        check_code_record(spec, document.pop(SOURCE_KEY, {}), where)
        model = build_model(spec)
    except ValueError as e:
        raise CheckpointError(f"{where}/{SPEC_FILE}: cannot rebuild the model: {e}") from e
    raw = files.get(WEIGHTS_FILE)
    if raw is None:
        raise CheckpointNotFoundError(
            f"{where}/{WEIGHTS_FILE} not found: the checkpoint is incomplete"
        )
    try:
        state = torch.load(io.BytesIO(raw), map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{where}/{WEIGHTS_FILE} cannot be read: {e}") from e
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as e:
        raise CheckpointError(
            f"{where}/{WEIGHTS_FILE} does not match the {spec.arch} spec in {SPEC_FILE}: {e}"
        ) from e
    return model.to(map_location).eval(), document
