"""`--set path=value` and profiles: edits to the raw pipeline data before it becomes a spec.

Overrides are applied to the parsed YAML (or to a builder's dumped spec), then the result is
validated exactly like a file, so an override can never smuggle in what a file could not say.
Paths are kdorch's one path language (`schemas.engine.paths`): inside ``steps`` a key names a
step by its id (``steps.teacher.config.epochs``) or, less readably, by its position
(``steps.1.config.epochs``); list items are indexed as ``losses[0]`` or ``losses.0``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from orchestrator.compile.source_map import PathKey, SourceMap
from orchestrator.errors import ConfigError, did_you_mean
from orchestrator.frontend.yaml_limits import load_value
from schemas.engine.paths import ItemIds, PathError, set_in_data

SET_EXAMPLE = "steps.teacher.config.epochs=1"
"""The `--set` example of help texts and messages; it must work on pipelines/hinton_kd.yaml."""


def parse_assignment(text: str) -> tuple[str, Any]:
    """``"a.b=3"`` -> ``("a.b", 3)``; the value is read as YAML (numbers, booleans, lists)."""
    if "=" not in text:
        raise ConfigError(f"--set expects path=value, got '{text}' (e.g. --set {SET_EXAMPLE})")
    path, raw = text.split("=", 1)
    path = path.strip()
    if not path:
        raise ConfigError(f"--set '{text}' has an empty path")
    try:
        # Bounded like a file: a value on the command line can hold an alias bomb too.
        value = load_value(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        shown = text if len(text) <= 120 else text[:117] + "..."
        raise ConfigError(f"--set '{shown}': the value is not valid YAML: {e}") from None
    return path, value


STEPS: dict[PathKey, ItemIds] = {("steps",): ItemIds(field="id", noun="step")}
"""The items of ``steps`` are named by their ids in a path."""


def apply_override(data: dict[str, Any], path: str, value: Any, *, shown: str) -> PathKey:
    """Set ``value`` at ``path`` inside ``data`` in place; returns the resolved path key."""
    try:
        return set_in_data(data, path, value, ids=STEPS)
    except PathError as e:
        raise ConfigError(f"{shown}: {e.reason}") from None


def apply_overrides(
    data: dict[str, Any],
    assignments: Iterable[str],
    *,
    profile: str | None = None,
    source_map: SourceMap | None = None,
) -> dict[str, Any]:
    """Apply a named profile (from ``data['profiles']``) and then each ``--set``, in order."""
    if profile is not None:
        profiles: Mapping[str, Any] = data.get("profiles") or {}
        if profile not in profiles:
            hint = did_you_mean(profile, list(profiles))
            known = ", ".join(profiles) or "none defined"
            raise ConfigError(
                f"--profile {profile}: no such profile (known: {known})"
                + (f"; {hint}" if hint else "")
            )
        for path, value in (profiles[profile] or {}).items():
            shown = f"profile '{profile}' ({path})"
            key = apply_override(data, str(path), value, shown=shown)
            if source_map is not None:
                source_map.overrides[key] = shown
    for text in assignments:
        path, value = parse_assignment(text)
        shown = f"--set {text}"
        key = apply_override(data, path, value, shown=shown)
        if source_map is not None:
            source_map.overrides[key] = shown
    return data
