"""Component discovery: entry points, the source-tree fallback, plugins, key clashes."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from components import BUILTIN
from orchestrator import Component, KdorchError, registry

ROOT = Path(__file__).resolve().parents[2]


def test_the_component_list_is_kept_in_one_place() -> None:
    """`components.BUILTIN` is the list: pyproject declares no entry points for it, and the
    import-linter contract that keeps step modules apart names exactly its modules."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "entry-points" not in pyproject["project"]
    contracts = pyproject["tool"]["importlinter"]["contracts"]
    (independence,) = [c for c in contracts if c["type"] == "independence"]
    assert sorted(independence["modules"]) == sorted(t.split(":")[0] for t in BUILTIN.values())


def test_every_builtin_loads_with_a_stable_key_and_version() -> None:
    for key in BUILTIN:
        cls = registry.get(key)
        assert cls.key == key and cls.version and cls.summary()


def test_unknown_key_suggests_and_clashes_are_refused() -> None:
    with pytest.raises(registry.UnknownComponent, match="did you mean 'distill'"):
        registry.get("distil")

    class Impostor(Component):
        key = "distill"
        version = "9"
        Config = registry.get("distill").Config
        Outputs = registry.get("distill").Outputs

    with pytest.raises(
        KdorchError, match=r"already taken by components\.training\.distill\.Distill"
    ):
        registry.register(Impostor)
