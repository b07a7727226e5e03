"""A Hugging Face ``save_pretrained`` folder (a user's real checkpoint), local or ``s3://``,
read as data: ``config.json`` parsed as JSON, weights read as tensors, never code.

- **No remote code.** A config with ``auto_map`` names Python files of the folder that
  ``trust_remote_code`` would import; kdorch refuses it (`FolderError`) instead. The
  architecture must be one `transformers` has itself (`components.lm.models` checks the
  ``model_type``).
- **Weights as data.** ``model.safetensors`` (or its shards, listed by
  ``model.safetensors.index.json``) is a JSON header and raw bytes. Without one,
  ``pytorch_model.bin`` (or its shards) is a pickle, read by ``torch.load(weights_only=True)``
  (`components.models.weights`): a pickle that would run code is refused before anything in it
  runs. `read_shapes` reads names and shapes only (a header; a pickle on the meta device), so
  `kdorch validate` checks a large checkpoint in milliseconds.
- **Identity.** `folder_identity` is the content identity of every file read (BLAKE3 locally,
  size + ETag on object stores): the key of a step that loads the folder.

Only `read_config` and `folder_identity` are torch-free (`kdorch validate` and plan call them).
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from schemas.kd.lm import CausalLMSpec

if TYPE_CHECKING:
    import torch

CONFIG_FILE = "config.json"
#: Weight files in the order they are looked for: an index of shards, or one file.
SAFETENSORS = ("model.safetensors.index.json", "model.safetensors")
PICKLES = ("pytorch_model.bin.index.json", "pytorch_model.bin")


class FolderError(ValueError):
    """A ``path`` folder that cannot be loaded (the message says what to change)."""


@dataclass(frozen=True)
class Folder:
    """A save_pretrained folder: its filesystem, its config and the weight files to read."""

    uri: str
    fs: Any
    root: str  # the filesystem's path of the folder
    config: dict[str, Any]
    weights: tuple[str, ...]  # file names in the folder
    index: str | None  # the shards' index file, if any

    @property
    def safetensors(self) -> bool:
        return self.weights[0].endswith(".safetensors")

    def file(self, name: str) -> str:
        return f"{self.root}/{name}"


def _filesystem(spec: CausalLMSpec) -> tuple[Any, str]:
    import fsspec

    assert spec.path is not None
    fs, root = fsspec.core.url_to_fs(spec.path, **spec.storage_options.to_fsspec())
    root = root.rstrip("/")
    fs.invalidate_cache(root)  # a listing cached by an earlier call may name old ETags
    return fs, root


def check_config_dict(config: Any, where: str) -> dict[str, Any]:
    """``config`` if it is a config kdorch may build: a JSON object with a ``model_type`` and no
    remote code."""
    if not isinstance(config, dict):
        raise FolderError(f"{where} is not a JSON object: not a Hugging Face config")
    if "auto_map" in config:
        names = sorted({str(v).split(".")[0] for v in dict(config["auto_map"]).values()})
        raise FolderError(
            f"{where} asks for remote code (auto_map: {', '.join(names)}.py of the folder): "
            "kdorch never runs code that comes with a model (no trust_remote_code). Use a "
            "model whose architecture transformers has itself (model_type llama, gpt2, ...)"
        )
    if not isinstance(config.get("model_type"), str):
        raise FolderError(f"{where} has no `model_type`: not a Hugging Face model config")
    return config


def read_config(spec: CausalLMSpec) -> dict[str, Any]:
    """The folder's ``config.json``, checked (`check_config_dict`); torch-free.

    Raises:
        FolderError: no folder, no config.json, not JSON, remote code.
    """
    fs, root = _filesystem(spec)
    where = f"{spec.path}/{CONFIG_FILE}"
    if not fs.isdir(root):
        raise FolderError(
            f"path: {spec.path} is not a folder ({'a file' if fs.exists(root) else 'missing'}); "
            "give the folder that save_pretrained wrote (config.json and the weights)"
        )
    try:
        raw = fs.cat_file(f"{root}/{CONFIG_FILE}")
    except FileNotFoundError:
        names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(root, detail=False))
        raise FolderError(
            f"path: {spec.path} has no {CONFIG_FILE} (it holds {', '.join(names[:8]) or 'nothing'})"
            ": a save_pretrained folder has one"
        ) from None
    try:
        config = json.loads(raw)
    except ValueError as e:
        raise FolderError(f"{where} is not valid JSON: {e}") from e
    return check_config_dict(config, where)


def _shards(fs: Any, root: str, index: str, where: str) -> tuple[str, ...]:
    try:
        weight_map = json.loads(fs.cat_file(f"{root}/{index}"))["weight_map"]
        return tuple(sorted(set(map(str, dict(weight_map).values()))))
    except (ValueError, KeyError, TypeError) as e:
        raise FolderError(f"{where}/{index} is not a shard index (weight_map): {e}") from e


def open_folder(spec: CausalLMSpec) -> Folder:
    """The folder of ``spec.path`` with its config and weight files (safetensors first).

    Raises:
        FolderError: see `read_config`; no weight files.
    """
    config = read_config(spec)
    fs, root = _filesystem(spec)
    present = {p.rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)}
    for index, single in (SAFETENSORS, PICKLES):
        uri = spec.path or ""
        if index in present:
            return Folder(uri, fs, root, config, _shards(fs, root, index, uri), index)
        if single in present:
            return Folder(uri, fs, root, config, (single,), None)
    raise FolderError(
        f"path: {spec.path} holds no weights ({' or '.join(SAFETENSORS + PICKLES)}; it has "
        f"{', '.join(sorted(present)[:8])})"
    )


def read_state(folder: Folder) -> dict[str, torch.Tensor]:
    """Every weight file's tensors, as data (see the module docstring).

    Raises:
        UnsafeWeightsError: a pickle that would run code.
        WeightsError: a file that is not what its name says.
    """
    from components.models.weights import WeightsError, _unpickle

    state: dict[str, torch.Tensor] = {}
    for name in folder.weights:
        where = f"{folder.uri}/{name}"
        raw = folder.fs.cat_file(folder.file(name))
        if folder.safetensors:
            from safetensors.torch import load

            try:
                state.update(load(raw))
            except Exception as e:
                raise WeightsError(f"{where} is not a safetensors file: {e}") from e
        else:
            obj = _unpickle(io.BytesIO(raw), where, meta=False)
            if not isinstance(obj, dict):
                raise WeightsError(f"{where} holds a {type(obj).__name__}, not a state dict")
            state.update(obj)
    return state


def read_shapes(folder: Folder) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the folder's weights, without their bytes (`kdorch validate`)."""
    import struct

    from components.models.weights import WeightsError, _unpickle

    shapes: dict[str, tuple[int, ...]] = {}
    for name in folder.weights:
        where = f"{folder.uri}/{name}"
        with folder.fs.open(folder.file(name), "rb") as f:
            if folder.safetensors:
                try:
                    (size,) = struct.unpack("<Q", f.read(8))
                    header = json.loads(f.read(size))
                except Exception as e:
                    raise WeightsError(f"{where} is not a safetensors file: {e}") from e
                shapes |= {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
            else:
                obj = _unpickle(f, where, meta=True)
                if not isinstance(obj, dict):
                    raise WeightsError(f"{where} holds a {type(obj).__name__}, not a state dict")
                shapes |= {str(k): tuple(v.shape) for k, v in obj.items()}
    return shapes


def folder_identity(spec: CausalLMSpec) -> dict[str, str]:
    """The content identity of the folder's config and weight files (torch-free): one sha256
    over each file's name and identity — a local file's BLAKE3 (memoised by path, size, mtime
    and inode), an object's size and ETag (nothing is downloaded)."""
    import os

    from fsspec.implementations.local import LocalFileSystem

    from components.text.sources import _file_hash  # the corpus's: BLAKE3, memoised

    folder = open_folder(spec)
    names = [CONFIG_FILE, *([folder.index] if folder.index else []), *folder.weights]
    digest = hashlib.sha256()
    for name in names:
        path = folder.file(name)
        if isinstance(folder.fs, LocalFileSystem):
            st = os.stat(path)
            identity = _file_hash(path, st.st_size, st.st_mtime_ns, st.st_ino)
        else:
            info = folder.fs.info(path)
            etag = str(info.get("ETag") or info.get("etag") or "").strip('"')
            identity = f"size:{info.get('size')};etag:{etag}"
        digest.update(f"{name}\t{identity}\n".encode())
    return {"files": str(len(names)), "sha256": digest.hexdigest()}
