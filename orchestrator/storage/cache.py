"""Cache keys and data versions.

A step's key is the sha256 of the canonical JSON (sorted keys, no whitespace) of::

    {
      "format":    KEY_FORMAT,                      # bumped if this recipe ever changes
      "component": "<registered key>",
      "version":   "<component version>",           # the hand-bumped one
      "config":    Config.model_dump(mode="json"),  # defaults included; see below for secrets
      "inputs":    {port: data_version | [data_version, ...]},
      "code":      {"components/losses/dkd.py": "<hash>", ...},  # see fingerprint.py
      "packages":  {"torch": "2.13.0", "ray": "2.60.0"},
      "external":  {...}                            # content identity of outside data, if any
    }

``code`` is the fingerprint of every source file of ours the component runs (normalised, so
comments, docstrings and formatting do not count); a component with ``fingerprint_code = False``
keeps only its explicit ``version`` and leaves ``code`` empty. ``external`` is what the
component reports for data it reads from outside the store (the ``dataset`` component: each
Parquet file's sha256 on local disk, size + ETag on object stores).

Not in the key: step ids, resources, cache policy, where the store is, when it ran, and
storage options (credentials are `SecretStr` and dump as ``**********``; the data they reach is
identified by ``external``). So renaming a step, giving it more CPUs, moving the store or
rotating a key keeps its cache; changing a config value, the component's code or version, or
any input's *content* makes a new key (writing a default out explicitly does not: defaults are
always included).

A data version is the sha256 of an artifact's manifest (its files' sizes and hashes plus its
typed metadata), so identical data produced twice has one data version and does not invalidate
downstream steps. Plain values (numbers, dicts, small models) are versioned by the hash of their
canonical JSON.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from schemas.engine.artifacts import ArtifactRef
from schemas.engine.storage import StorageOptions

KEY_FORMAT = 2


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def data_version(value: Any) -> str:
    """The content version of one port value (see the module docstring)."""
    if isinstance(value, ArtifactRef):
        if not value.data_version:
            raise ValueError(f"artifact at {value.path} has not been sealed (no data_version)")
        return value.data_version
    if isinstance(value, list | tuple):
        return sha256_text(canonical_json([data_version(v) for v in value]))
    if isinstance(value, BaseModel):
        return sha256_text(canonical_json(value.model_dump(mode="json")))
    return sha256_text(canonical_json(value))


def key_config(config: BaseModel) -> dict[str, Any]:
    """The config as it enters the key: every field, minus storage options (how to reach data
    is not what the data is)."""
    skip = {
        name
        for name, field in type(config).model_fields.items()
        if isinstance(getattr(config, name), StorageOptions) or field.annotation is StorageOptions
    }
    return config.model_dump(mode="json", exclude=skip)


def key_material(
    component: str,
    version: str,
    config: BaseModel,
    inputs: Mapping[str, Any],
    *,
    code: Mapping[str, str] | None = None,
    packages: Mapping[str, str] | None = None,
    external: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What goes into a step key; ``inputs`` maps ports to their values (refs or plain)."""
    versions: dict[str, Any] = {}
    for port, value in sorted(inputs.items()):
        if isinstance(value, list | tuple):
            versions[port] = [data_version(v) for v in value]
        else:
            versions[port] = data_version(value)
    return {
        "format": KEY_FORMAT,
        "component": component,
        "version": version,
        "config": key_config(config),
        "inputs": versions,
        "code": dict(code or {}),
        "packages": dict(packages or {}),
        "external": dict(external or {}),
    }


def step_key(material: Mapping[str, Any]) -> str:
    return sha256_text(canonical_json(material))


def _leaf_paths(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_leaf_paths(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list):
        out = {}
        for i, v in enumerate(value):
            out.update(_leaf_paths(v, f"{prefix}[{i}]"))
        return out or {prefix: []}
    return {prefix: value}


def _changed(old: Any, new: Any) -> list[str]:
    a, b = _leaf_paths(old), _leaf_paths(new)
    return sorted(k for k in a.keys() | b.keys() if a.get(k, object()) != b.get(k, object()))


def explain_difference(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """Why ``new`` key material misses the cache that ``old`` filled, in a few words."""
    reasons = []
    if old.get("format") != new.get("format"):
        return "key format changed (a kdorch upgrade)"
    if old.get("component") != new.get("component") or old.get("version") != new.get("version"):
        reasons.append(f"version changed: {old.get('version')} -> {new.get('version')}")
    if old.get("config") != new.get("config"):
        fields = _changed(old.get("config"), new.get("config"))
        reasons.append(
            "config changed: " + ", ".join(fields[:4]) + ("…" if len(fields) > 4 else "")
        )
    if old.get("inputs") != new.get("inputs"):
        ports = sorted(
            p
            for p in set(old.get("inputs", {})) | set(new.get("inputs", {}))
            if old.get("inputs", {}).get(p) != new.get("inputs", {}).get(p)
        )
        reasons.append("input changed: " + ", ".join(ports))
    if old.get("code") != new.get("code"):
        files = _changed(old.get("code", {}), new.get("code", {}))
        reasons.append("code changed: " + ", ".join(files[:3]) + ("…" if len(files) > 3 else ""))
    if old.get("packages") != new.get("packages"):
        names = _changed(old.get("packages", {}), new.get("packages", {}))
        reasons.append(
            "packages changed: "
            + ", ".join(
                f"{n} {old.get('packages', {}).get(n)} -> {new.get('packages', {}).get(n)}"
                for n in names
            )
        )
    if old.get("external") != new.get("external"):
        reasons.append(
            "external data changed: " + ", ".join(_changed(old["external"], new["external"])[:3])
        )
    return "; ".join(reasons) or "key changed"
