"""The component registry: short stable keys -> component classes.

kdorch's own components are listed once, in ``components.BUILTIN`` (read by name: the
orchestrator never imports the components package statically). Third-party packages add theirs
through the ``kdorch.components`` entry-point group::

    [project.entry-points."kdorch.components"]
    my_step = "my_pkg.steps:MyStep"

Components are imported only when used, so validating a pipeline does not import torch for
components it does not use. Modules named in ``$KDORCH_PLUGINS`` (comma-separated) are imported
first, so components they `register` are known to the CLI too. Tests and notebooks may also call
`register` directly.
"""

from __future__ import annotations

import importlib
import os
from importlib import metadata

from orchestrator.component import Component
from orchestrator.errors import KdorchError, did_you_mean

ENTRY_POINT_GROUP = "kdorch.components"

#: The package whose ``BUILTIN`` map lists kdorch's own components (read by name, so that a
#: source tree that is not installed — a Ray job's working_dir — finds them too).
BUILTIN_PACKAGE = "components"

_registered: dict[str, type[Component]] = {}
_lazy: dict[str, str] | None = None


class UnknownComponent(KdorchError):
    def __init__(self, key: str, known: list[str]):
        self.key = key
        self.hint = did_you_mean(key, known)
        super().__init__(
            f"unknown component '{key}'"
            + (f"; {self.hint}" if self.hint else "")
            + f" (known: {', '.join(sorted(known))})"
        )


def register(cls: type[Component]) -> type[Component]:
    """Register a component class under its ``key`` (usable as a class decorator)."""
    for attr in ("key", "version", "Config", "Outputs"):
        if not hasattr(cls, attr):
            raise TypeError(f"component {cls.__qualname__} must define '{attr}'")
    existing = _registered.get(cls.key)
    # Re-importing a module (tests, notebooks) registers a new class object from the same place.
    moved = existing is not None and (existing.__module__, existing.__qualname__) != (
        cls.__module__,
        cls.__qualname__,
    )
    if existing is not None and moved:
        raise KdorchError(
            f"component key '{cls.key}' is already taken by "
            f"{existing.__module__}.{existing.__qualname__}"
        )
    _registered[cls.key] = cls
    return cls


def _lazy_targets() -> dict[str, str]:
    global _lazy
    if _lazy is None:
        for module in filter(
            None, (m.strip() for m in os.environ.get("KDORCH_PLUGINS", "").split(","))
        ):
            try:
                importlib.import_module(module)
            except ImportError as e:
                raise KdorchError(f"KDORCH_PLUGINS: cannot import '{module}': {e}") from e

        try:
            targets = dict(getattr(importlib.import_module(BUILTIN_PACKAGE), "BUILTIN", {}))
        except ImportError:
            targets = {}
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if targets.get(ep.name, ep.value) != ep.value:
                raise KdorchError(
                    f"entry point '{ep.name} = {ep.value}' ({ep.dist.name if ep.dist else '?'}) "
                    f"takes the key of kdorch's built-in component ({targets[ep.name]}); "
                    "register it under another key"
                )
            targets[ep.name] = ep.value
        _lazy = targets
    return _lazy


def _import(target: str) -> type[Component]:
    module_name, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(cls, type) and issubclass(cls, Component)):
        raise KdorchError(f"{target} is not a kdorch Component")
    return cls


def known_keys() -> list[str]:
    return sorted(set(_registered) | set(_lazy_targets()))


def get(key: str) -> type[Component]:
    """The component class for ``key``; raises `UnknownComponent` with a 'did you mean'."""
    targets = _lazy_targets()  # imports $KDORCH_PLUGINS, which may register more
    if key in _registered:
        return _registered[key]
    target = targets.get(key)
    if target is None:
        raise UnknownComponent(key, known_keys())
    cls = _import(target)
    if cls.key != key:
        raise KdorchError(f"{target} declares key '{cls.key}' but is registered as '{key}'")
    return register(cls)


def all_components() -> list[type[Component]]:
    return [get(k) for k in known_keys()]
