"""What a model spec's network is made of, beyond its spec: the identity that cache keys need.

A zoo spec says everything (kdorch's own code is in every component's fingerprint). A model
source depends on code and data outside kdorch:

- ``torchvision`` / ``timm``: the library's code, identified by its installed version;
- ``python``: the user's factory module and the modules of its package it imports, identified
  by their normalised source (`orchestrator.storage.fingerprint.code_fingerprint`: comments,
  docstrings and formatting do not count);
- ``weights``: the pretrained state-dict file, identified by its content (sha256 locally, size
  + ETag on object stores, as Parquet sources are: `components.data.sources.source_identity`).

Why both a key entry and a record in ``model.json`` (the design asked for in issue 17):

- A step whose *config* holds the spec (`train`, `distill`, `import_model`) reports
  `spec_identity` through ``Component.external_fingerprint`` (`config_identity` finds every spec
  in a config), so editing the factory changes that step's key: `kdorch plan` says it runs.
- A step that rebuilds a network from an *input* checkpoint (`teacher_inference`, `evaluate`,
  distill's online teachers, Meta-DMoE) sees only the checkpoint's data version. The producer
  writes the factory's code fingerprint into ``model.json`` (`code_record`), which is part of
  that data version: the producer re-runs after an edit, its new ``model.json`` has a new data
  version, and every dependent step's key changes with it — no engine hook needed. Loading
  compares the record with the code on the machine that loads (`check_code_record`) and refuses
  a checkpoint whose factory changed since it was saved (stale code on a worker, or an old
  checkpoint read through the Python API), instead of silently running other code with its
  weights.

Nothing here imports torch: `kdorch plan` calls it on the driver for every step.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from pydantic import BaseModel

from schemas.kd.models import AnyModelSpec, PythonSpec, SourceModelSpec, TimmSpec, TorchvisionSpec


def package_version(name: str) -> str:
    """The installed version of ``name`` ("not installed" when it is not)."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def factory_module(spec: PythonSpec) -> str:
    """The module part of ``package.module:function``."""
    return spec.factory.split(":", 1)[0]


def factory_code(spec: PythonSpec) -> dict[str, str]:
    """Hashes of the factory's module and of every module of its package it imports.

    Raises:
        ValueError: the module cannot be found on this machine's import path.
    """
    from orchestrator.storage.fingerprint import code_fingerprint

    module = factory_module(spec)
    code = code_fingerprint(module)
    if not code:
        raise ValueError(
            f"factory {spec.factory!r}: module {module!r} is not importable here (install "
            "its package, or put its folder on PYTHONPATH)"
        )
    return code


def code_record(spec: AnyModelSpec) -> dict[str, Any]:
    """What ``model.json`` records about the code that builds ``spec`` (empty for the zoo)."""
    if isinstance(spec, PythonSpec):
        return {"factory": spec.factory, "code": factory_code(spec)}
    if isinstance(spec, TorchvisionSpec | TimmSpec):
        return {"package": {spec.arch: package_version(spec.arch)}}
    return {}


def check_code_record(spec: AnyModelSpec, record: dict[str, Any], where: str) -> None:
    """Refuse a checkpoint whose python factory's code differs from the code here.

    Raises:
        ValueError: the factory's module (or a module of its package it imports) changed since
            the checkpoint at ``where`` was saved; the message names the files.
    """
    if not isinstance(spec, PythonSpec):
        return
    saved: dict[str, str] = dict(record.get("code") or {})
    now = factory_code(spec)
    changed = sorted(name for name in saved.keys() | now.keys() if saved.get(name) != now.get(name))
    if changed:
        raise ValueError(
            f"{where} was saved with other code of its factory {spec.factory!r}: "
            f"{', '.join(changed[:4])}{'…' if len(changed) > 4 else ''} changed since. Its "
            "weights belong to that code; re-run the step that produced it (kdorch run does: "
            "the factory's code is part of that step's key)"
        )


def weights_identity(spec: SourceModelSpec) -> dict[str, str]:
    """The weights file's content identity (sha256 locally, size + ETag on object stores).

    Raises:
        FileNotFoundError: the file does not exist.
    """
    import fsspec

    from components.data.sources import source_identity

    assert spec.weights is not None
    fs, path = fsspec.core.url_to_fs(spec.weights, **spec.storage_options.to_fsspec())
    if not fs.isfile(path):
        raise FileNotFoundError(f"weights: {spec.weights} does not exist (or is a folder)")
    return source_identity(spec.weights, spec.storage_options)


def spec_identity(spec: AnyModelSpec) -> dict[str, Any]:
    """Everything outside kdorch that decides the network ``spec`` builds (empty for the zoo):
    the library's version or the factory's code, and the weights file's content."""
    if not isinstance(spec, SourceModelSpec):
        return {}
    out = code_record(spec)
    if spec.weights is not None:
        out["weights"] = weights_identity(spec)
    return out


def specs_in(value: Any, path: str = "") -> list[tuple[str, AnyModelSpec]]:
    """Every model spec inside a config (fields, lists, dicts), with its dotted field path."""
    if isinstance(value, AnyModelSpec):
        return [(path, value)]
    found: list[tuple[str, AnyModelSpec]] = []
    if isinstance(value, BaseModel):
        items: list[tuple[str, Any]] = [(n, getattr(value, n)) for n in type(value).model_fields]
    elif isinstance(value, dict):
        items = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, list | tuple):
        items = [(str(i), v) for i, v in enumerate(value)]
    else:
        return []
    for name, item in items:
        found += specs_in(item, f"{path}.{name}" if path else name)
    return found


def config_identity(config: BaseModel) -> dict[str, Any]:
    """`spec_identity` of every model source in a step's config, by field path: the part of a
    training step's ``external_fingerprint`` that covers the networks it builds."""
    return {
        f"model:{path}": identity
        for path, spec in specs_in(config)
        if (identity := spec_identity(spec))
    }
