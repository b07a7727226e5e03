"""The raw networks of model sources: a torchvision builder, ``timm.create_model``, or the
user's own factory, each called with the spec's ``kwargs``.

``num_classes`` reaches the builder when the builder can take it and no head is to be replaced
(a replaced head is sized after the pretrained weights are loaded, `components.models.external`):
torchvision's classification builders and timm always take it; a python factory when its
signature names it (or takes ``**kwargs``). ``kwargs`` win over both.

Errors are `SourceError`s (a ``ValueError``) that say what to change: an unknown builder with
"did you mean", a factory whose module does not import with the import error's last line, a
factory that returns something that is not an ``nn.Module``.
"""

from __future__ import annotations

import importlib
import inspect
import traceback
from collections.abc import Callable
from typing import Any

from torch import nn

from orchestrator.errors import did_you_mean
from schemas.kd.models import PythonSpec, SourceModelSpec, TimmSpec, TorchvisionSpec


class SourceError(ValueError):
    """A model source that cannot build its network (the message says what to change).

    ``field`` is the spec's field it is about (``name``, ``factory``, ``head.replace``...), so
    `kdorch validate` can point at it in the YAML.
    """

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


def _hinted(message: str, name: str, names: list[str]) -> str:
    hint = did_you_mean(name, names)
    return f"{message}; {hint}" if hint else message


def torchvision_builder(name: str) -> Callable[..., nn.Module]:
    """``torchvision.models.get_model_builder(name)`` for a classification model.

    Raises:
        SourceError: no classification builder of that name ("did you mean").
    """
    import torchvision.models as tvm

    names = tvm.list_models(module=tvm)  # classification models (not detection, video...)
    if name not in names:
        raise SourceError(
            _hinted(
                f"name: torchvision has no classification model {name!r} "
                f"({len(names)} in torchvision {_version('torchvision')}, e.g. resnet18, "
                "mobilenet_v3_small, efficientnet_b0, vit_b_16)",
                name,
                names,
            ),
            "name",
        )
    return tvm.get_model_builder(name)


def check_timm_name(name: str) -> None:
    """Raises `SourceError` when timm has no architecture ``name`` ("did you mean")."""
    import timm

    if not timm.is_model(name):
        raise SourceError(
            _hinted(
                f"name: timm {_version('timm')} has no model {name!r}",
                name,
                timm.list_models(),
            ),
            "name",
        )


def _version(package: str) -> str:
    from components.models.identity import package_version

    return package_version(package)


def import_factory(path: str) -> Callable[..., Any]:
    """The callable at ``package.module:function``.

    Raises:
        SourceError: the module does not import (its error's last line), or has no such
            callable ("did you mean").
    """
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:
        last = traceback.format_exception_only(type(e), e)[-1].strip()
        hint = (
            " (install its package, or put its folder on PYTHONPATH)"
            if isinstance(e, ModuleNotFoundError) and e.name == module_name.split(".")[0]
            else ""
        )
        raise SourceError(
            f"factory {path!r}: module {module_name!r} does not import: {last}{hint}", "factory"
        ) from e
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            names = [n for n in dir(target) if not n.startswith("_")]
            raise SourceError(
                _hinted(f"factory {path!r}: {module_name} has no {attribute!r}", part, names),
                "factory",
            )
        target = getattr(target, part)
    if not callable(target):
        raise SourceError(
            f"factory {path!r} is a {type(target).__name__}, not a function", "factory"
        )
    return target


def _takes(function: Callable[..., Any], name: str) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def builder_kwargs(spec: SourceModelSpec, builder: Callable[..., Any] | None) -> dict[str, Any]:
    """The keyword arguments the builder gets: ``num_classes`` where it fits, then ``kwargs``."""
    out: dict[str, Any] = {}
    takes_classes = not isinstance(spec, PythonSpec) or (
        builder is not None and _takes(builder, "num_classes")
    )
    if spec.num_classes is not None and spec.head is None and takes_classes:
        out["num_classes"] = spec.num_classes
    return {**out, **spec.kwargs}


def build_network(spec: SourceModelSpec) -> nn.Module:
    """The network the spec's builder makes (random weights, from the global RNG).

    Raises:
        SourceError: an unknown builder, a factory that does not import or returns something
            that is not an ``nn.Module``, or a builder that fails on the ``kwargs``.
    """
    builder: Callable[..., Any]
    if isinstance(spec, TorchvisionSpec):
        builder = torchvision_builder(spec.name)
        what = f"torchvision {spec.name}"
    elif isinstance(spec, TimmSpec):
        import timm

        check_timm_name(spec.name)
        name = spec.name

        def builder(**kwargs: Any) -> nn.Module:
            return timm.create_model(name, pretrained=False, **kwargs)

        what = f"timm {spec.name}"
    else:
        builder = import_factory(spec.factory)
        what = f"factory {spec.factory!r}"
    kwargs = builder_kwargs(spec, builder)
    try:
        network = builder(**kwargs)
    except Exception as e:
        last = traceback.format_exception_only(type(e), e)[-1].strip()
        raise SourceError(f"{what} failed with kwargs {kwargs}: {last}", "kwargs") from e
    if not isinstance(network, nn.Module):
        raise SourceError(
            f"{what} returned a {type(network).__name__}, not a torch.nn.Module: it must return "
            "the network itself",
            "factory" if isinstance(spec, PythonSpec) else "name",
        )
    return network
