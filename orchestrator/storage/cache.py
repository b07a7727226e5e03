"""Cache keys and data versions.

A step's key is the sha256 of the canonical JSON (sorted keys, no whitespace) of::

    {
      "format":    KEY_FORMAT,                      # bumped if this recipe ever changes
      "component": "<registered key>",
      "version":   "<component version>",
      "config":    Config.model_dump(mode="json"),  # defaults included
      "inputs":    {port: data_version | [data_version, ...]}
    }

Not in the key: step ids, resources, cache policy, where the store is, when it ran. So renaming a
step, giving it more CPUs, or moving the store keeps its cache; changing a config value, the
component's version or any input's *content* makes a new key (writing a default out explicitly
does not: defaults are always included).

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

from schemas.artifacts import ArtifactRef

KEY_FORMAT = 1


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def data_version(value: Any) -> str:
    """The content version of one port value (see the module docstring)."""
    if isinstance(value, ArtifactRef):
        if not value.data_version:
            raise ValueError(f"artifact at {value.uri} has not been sealed (no data_version)")
        return value.data_version
    if isinstance(value, list | tuple):
        return sha256_text(canonical_json([data_version(v) for v in value]))
    if isinstance(value, BaseModel):
        return sha256_text(canonical_json(value.model_dump(mode="json")))
    return sha256_text(canonical_json(value))


def key_material(
    component: str, version: str, config: BaseModel, inputs: Mapping[str, Any]
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
        "config": config.model_dump(mode="json"),
        "inputs": versions,
    }


def step_key(material: Mapping[str, Any]) -> str:
    return sha256_text(canonical_json(material))
