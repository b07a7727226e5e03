"""Pretrained weights from outside kdorch, read as data and never as code, and loaded strictly.

A checkpoint file from elsewhere is untrusted input. A ``.safetensors`` file is a JSON header
and raw tensor bytes: nothing in it can run. A ``.pt``/``.pth``/``.bin``/``.ckpt`` file is a
pickle; it is read with ``torch.load(..., weights_only=True)``, whose unpickler builds tensors,
containers and numbers only and refuses every other global (``os.system``, ``io.open``, a class
of the author's): such a file is refused with `UnsafeWeightsError` before anything in it runs.

Loading is strict: every parameter and buffer of the network must be in the file with its
shape, and the file may hold nothing else. A mismatch names the missing and unexpected keys and
the shape differences (a few of each, with counts) and what usually fixes it.

`read_shapes` reads only the names, shapes and dtypes (a safetensors header; a pickle loaded
onto the meta device, which reads its ~100 KB index and none of the tensor bytes), so
`kdorch validate` can check a 100 MB checkpoint, local or on S3, in milliseconds.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from schemas.kd.models import SourceModelSpec

State = dict[str, torch.Tensor]
SHOWN = 4  # names shown per kind of mismatch (the counts are always complete)


class WeightsError(ValueError):
    """A weights file that cannot be read, or does not fit the network."""


class UnsafeWeightsError(WeightsError):
    """A pickle that would run code (or build objects other than tensors) when loaded."""


def _open(spec: SourceModelSpec) -> Any:
    import fsspec

    assert spec.weights is not None
    try:
        return fsspec.open(spec.weights, "rb", **spec.storage_options.to_fsspec()).open()
    except FileNotFoundError as e:
        raise WeightsError(f"weights: {spec.weights} does not exist") from e


def _is_safetensors(spec: SourceModelSpec) -> bool:
    return (spec.weights or "").lower().endswith(".safetensors")


def _unpickle(source: Any, where: str, *, meta: bool) -> Any:
    """``torch.load`` with weights only; a refusal says what the file asked for."""
    import pickle

    try:
        return torch.load(source, map_location="meta" if meta else "cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        wanted = re.search(r"GLOBAL ([\w.]+)", str(e))
        asked = f" (it asks for {wanted.group(1)})" if wanted else ""
        raise UnsafeWeightsError(
            f"{where} is a pickle that would run code or build objects other than tensors when "
            f"loaded{asked}; kdorch reads weights as data only (torch.load weights_only=True) "
            "and did not load it. Save the state dict alone, from where the model was trained: "
            "torch.save(model.state_dict(), path), or safetensors.torch.save_file(...)"
        ) from None
    except Exception as e:
        raise WeightsError(f"{where} is not a PyTorch checkpoint: {type(e).__name__}: {e}") from e


def _select(obj: Any, spec: SourceModelSpec) -> State:
    """The state dict inside what the file holds (``weights_key``), checked to be one."""
    where = spec.weights
    if spec.weights_key is not None:
        for part in spec.weights_key.split("."):
            if not isinstance(obj, Mapping) or part not in obj:
                keys = list(obj)[:8] if isinstance(obj, Mapping) else []
                raise WeightsError(
                    f"{where} has no entry {spec.weights_key!r} (weights_key); its top-level "
                    f"keys: {', '.join(map(str, keys)) or 'none (not a dict)'}"
                )
            obj = obj[part]
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{where} holds a {type(obj).__name__}, not a state dict")
    odd = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if odd:
        wrapped = [k for k in odd if isinstance(obj[k], Mapping)]
        hint = (
            f": set weights_key to the entry holding the weights (e.g. {wrapped[0]!r})"
            if wrapped
            else ""
        )
        raise WeightsError(
            f"{where} is not a plain state dict: {len(odd)} entries are not tensors "
            f"({', '.join(odd[:SHOWN])}){hint}"
        )
    return {str(k): v for k, v in obj.items()}


def read_state(spec: SourceModelSpec) -> State:
    """The spec's weights file as a state dict of CPU tensors (see the module docstring).

    Raises:
        UnsafeWeightsError: a pickle that would run code.
        WeightsError: a missing or unreadable file, or no state dict where ``weights_key`` says.
    """
    with _open(spec) as f:
        raw = f.read()
    if _is_safetensors(spec):
        from safetensors.torch import load

        try:
            obj: Any = load(raw)
        except Exception as e:
            raise WeightsError(f"{spec.weights} is not a safetensors file: {e}") from e
    else:
        obj = _unpickle(io.BytesIO(raw), str(spec.weights), meta=False)
    return _select(obj, spec)


def read_shapes(spec: SourceModelSpec) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the spec's weights, without reading the tensors' bytes."""
    if _is_safetensors(spec):
        import json
        import struct

        with _open(spec) as f:
            try:
                (size,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(size))
            except Exception as e:
                raise WeightsError(f"{spec.weights} is not a safetensors file: {e}") from e
        if spec.weights_key is not None:
            raise WeightsError(
                f"{spec.weights}: a safetensors file is a flat state dict; remove weights_key"
            )
        return {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    with _open(spec) as f:
        state = _select(_unpickle(f, str(spec.weights), meta=True), spec)
    return {k: tuple(v.shape) for k, v in state.items()}


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return f"{shown}, … ({len(names) - SHOWN} more)" if len(names) > SHOWN else shown


def mismatch(
    expected: Mapping[str, tuple[int, ...]],
    found: Mapping[str, tuple[int, ...]],
    *,
    loose: tuple[str, ...] = (),
) -> str | None:
    """What differs between the network's state (``expected``) and a file's (``found``), as
    one sentence; None when they fit. Shapes under a ``loose`` prefix are not compared."""

    def strict(name: str) -> bool:
        return not any(name == p or name.startswith(p + ".") for p in loose)

    missing = sorted(expected.keys() - found.keys())
    unexpected = sorted(found.keys() - expected.keys())
    shapes = [
        f"{k} (file {list(found[k])}, model {list(expected[k])})"
        for k in expected
        if k in found and strict(k) and tuple(found[k]) != tuple(expected[k])
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key{'s' * (len(missing) > 1)}: {_listed(missing)}")
    if unexpected:
        parts.append(
            f"{len(unexpected)} unexpected key{'s' * (len(unexpected) > 1)}: {_listed(unexpected)}"
        )
    if shapes:
        parts.append(f"{len(shapes)} shape difference{'s' * (len(shapes) > 1)}: {_listed(shapes)}")
    if not parts:
        return None
    hints = []
    if unexpected and all(k.startswith("module.") for k in unexpected):
        hints.append("the file's keys start with 'module.' (saved from a DDP wrapper)")
    outputs = [  # shapes that differ in the first dimension only: a classifier's outputs?
        k
        for k in expected
        if k in found
        and len(found[k]) == len(expected[k]) > 0
        and found[k][0] != expected[k][0]
        and tuple(found[k][1:]) == tuple(expected[k][1:])
    ]
    if outputs:
        module = outputs[0].rpartition(".")[0] or outputs[0]
        hints.append(
            "if that is the classifier, sized for another class count, replace it after "
            f"loading: head: {{replace: {module}}}"
        )
    return "; ".join(parts) + (f" ({'; '.join(hints)})" if hints else "")


def state_shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    """Names and shapes of a module's state dict (parameters and persistent buffers)."""
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def load_strict(module: nn.Module, state: State, where: str, what: str) -> None:
    """Load ``state`` into ``module``, every key and shape matching; else a `WeightsError`
    saying what differs (``where``: the file; ``what``: the network, for the message)."""
    problem = mismatch(state_shapes(module), {k: tuple(v.shape) for k, v in state.items()})
    if problem:
        raise WeightsError(f"{where} does not fit {what}: {problem}")
    module.load_state_dict(state, strict=True)
