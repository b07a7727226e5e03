"""One forward pass that lays a network out for the `KDModel` interface (`lay_out`): which
Linear is the classifier, which module gives the feature map, and a check that cutting the
classifier out leaves the network's logits unchanged. `components.models.external` says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import torch
from torch import nn

from components.models.sources import SourceError
from orchestrator.errors import did_you_mean
from schemas.kd.models import PythonSpec, SourceModelSpec

PROBE_ROWS = 2
PROBE_SEED = 20240613


@dataclass(frozen=True)
class Layout:
    """Where the interface's parts are in a network (module paths), found by `_probe`."""

    classifier: str
    penultimate: str | None  # None: the classifier's input
    map: str | None  # None: the penultimate features
    repeat_channels: int  # > 1: a one-channel input is repeated this many times


def describe(spec: SourceModelSpec) -> str:
    """``torchvision resnet18``, ``timm test_vit``, ``python pkg.mod:fn`` (for messages)."""
    return f"python {spec.factory}" if isinstance(spec, PythonSpec) else f"{spec.arch} {spec.name}"


def module_at(network: nn.Module, name: str, where: str) -> nn.Module:
    """The submodule at ``name``, or a `SourceError` naming the field ``where`` with "did you
    mean"."""
    names = [n for n, _ in network.named_modules() if n]
    if name not in names:
        hint = did_you_mean(name, names)
        top = [n for n in names if "." not in n]
        raise SourceError(
            f"{where}: the network has no module {name!r}"
            + (f"; {hint}" if hint else "")
            + f" (its top-level modules: {', '.join(top[:16])}; {len(names)} in all)",
            where,
        )
    return network.get_submodule(name)


def linear_names(network: nn.Module) -> list[str]:
    """Module paths of the network's ``nn.Linear`` layers, in registration order."""
    return [n for n, m in network.named_modules() if isinstance(m, nn.Linear)]


def set_module(network: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` at the dotted path ``name``."""
    parent, _, leaf = name.rpartition(".")
    setattr(network.get_submodule(parent) if parent else network, leaf, module)


@dataclass
class _Trace:
    """What one probing pass saw: module outputs in the order their forward returned."""

    order: list[str] = field(default_factory=list)
    outputs: dict[str, object] = field(default_factory=dict)

    def hook(self, name: str, module: nn.Module, inputs: object, output: object) -> None:
        if name in self.outputs:
            self.order.remove(name)  # a module called twice: its last call counts
        self.order.append(name)
        self.outputs[name] = output


def _is_pooling(module: nn.Module) -> bool:
    return "pool" in type(module).__name__.lower()


def probe_input(spec: SourceModelSpec, repeat: int) -> torch.Tensor:
    """A seeded random batch of the spec's input shape (the global RNG is left alone)."""
    assert spec.input_shape is not None
    shape = list(spec.input_shape)
    generator = torch.Generator().manual_seed(PROBE_SEED)
    x = torch.randn(PROBE_ROWS, *shape, generator=generator)
    return x.repeat(1, repeat, 1, 1) if repeat > 1 else x


def eval_forward(network: nn.Module, x: torch.Tensor) -> object:
    """``network(x)`` in eval mode without gradients; every module's mode restored after."""
    modes = {m: m.training for m in network.modules()}
    try:
        network.eval()
        with torch.no_grad():
            return network(x)
    finally:
        for module, training in modes.items():
            module.training = training


def trace(
    network: nn.Module, spec: SourceModelSpec, x: torch.Tensor
) -> tuple[torch.Tensor, _Trace]:
    """The network's logits on ``x`` (`eval_forward`) and what each module gave."""
    seen = _Trace()
    handles = [
        m.register_forward_hook(partial(seen.hook, name))
        for name, m in network.named_modules()
        if name
    ]
    try:
        out = eval_forward(network, x)
    finally:
        for handle in handles:
            handle.remove()
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
        raise SourceError(
            f"{describe(spec)} returns {got} from forward(x); kdorch needs logits of shape "
            "(batch, classes)",
            "factory" if isinstance(spec, PythonSpec) else "name",
        )
    return out, seen


def find_classifier(
    network: nn.Module, spec: SourceModelSpec, out: torch.Tensor, seen: _Trace
) -> str:
    """The path of the Linear that gives the network's output (the replaced head if any)."""
    if spec.head is not None:
        if spec.head.replace not in seen.outputs:
            raise SourceError(f"head.replace: {spec.head.replace!r} is not run by forward", "head")
        return spec.head.replace
    for name in reversed(seen.order):
        output = seen.outputs[name]
        if not isinstance(network.get_submodule(name), nn.Linear):
            continue
        if output is out or (
            isinstance(output, torch.Tensor)
            and output.shape == out.shape
            and torch.equal(output, out)
        ):
            return name
    raise SourceError(
        f"{describe(spec)}: its output does not come straight from an nn.Linear, so kdorch "
        "cannot tell its classifier; set head: {replace: <the final Linear>} (its Linear "
        f"modules: {', '.join(linear_names(network)[-6:]) or 'none'})",
        "head",
    )


def _feature_map(
    network: nn.Module, spec: SourceModelSpec, seen: _Trace, classifier: str
) -> str | None:
    """The feature map's module: the named one (checked); else the last module with a 4-D
    output before the last pooling layer that runs before the classifier; None without one."""
    before = seen.order[: seen.order.index(classifier)]
    name = spec.features.map
    if name is not None:
        module_at(network, name, "features.map")
        if name not in seen.outputs:
            raise SourceError(
                f"features.map: module {name!r} is not run by forward", "features.map"
            )
        if name not in before:
            raise SourceError(
                f"features.map: module {name!r} runs after the classifier {classifier!r}",
                "features.map",
            )
        return name
    pools = [n for n in before if _is_pooling(network.get_submodule(n))]
    if not pools:  # no pooling layer (a ViT reads a token): the penultimate features
        return None
    for candidate in reversed(before[: before.index(pools[-1])]):
        output = seen.outputs[candidate]
        if (
            isinstance(output, torch.Tensor)
            and output.dim() == 4
            and not _is_pooling(network.get_submodule(candidate))
        ):
            return candidate
    return None


def _penultimate(network: nn.Module, spec: SourceModelSpec, seen: _Trace, width: int) -> str | None:
    name = spec.features.penultimate
    if name is None:
        return None
    where = "features.penultimate"
    module_at(network, name, where)
    output = seen.outputs.get(name)
    if not isinstance(output, torch.Tensor):
        raise SourceError(
            f"{where}: module {name!r} "
            + ("is not run by forward" if output is None else "does not return a tensor"),
            where,
        )
    values = output[0].numel()
    if values != width:
        raise SourceError(
            f"{where}: {name!r} gives {values} values per row, but the classifier reads "
            f"{width}: the penultimate features must be the classifier's input (leave it out "
            "for the default)",
            where,
        )
    return name


def lay_out(network: nn.Module, spec: SourceModelSpec, repeat: int) -> tuple[Layout, nn.Linear]:
    """Find the classifier, the feature map and the penultimate module; cut the classifier
    out of ``network`` (in place) and check the cut. Returns (layout, classifier).

    Raises:
        SourceError: an output width other than ``num_classes``, a classifier that is not the
            last operation, names that do not exist; each message names the field to change.
    """
    x = probe_input(spec, repeat)
    out, seen = trace(network, spec, x)
    classifier_name = find_classifier(network, spec, out, seen)
    if spec.num_classes is not None and out.shape[1] != spec.num_classes:
        raise SourceError(
            f"{describe(spec)} gives {out.shape[1]} logits but the data has {spec.num_classes} "
            f"classes: replace its classifier with head: {{replace: {classifier_name}}}",
            "head",
        )
    classifier = network.get_submodule(classifier_name)
    assert isinstance(classifier, nn.Linear)
    layout = Layout(
        classifier=classifier_name,
        penultimate=_penultimate(network, spec, seen, classifier.in_features),
        map=_feature_map(network, spec, seen, classifier_name),
        repeat_channels=repeat,
    )
    set_module(network, classifier_name, nn.Identity())
    cut = eval_forward(network, x)
    with torch.no_grad():
        again = classifier(cut.flatten(1)) if isinstance(cut, torch.Tensor) else None
    if again is None or again.shape != out.shape or not torch.allclose(again, out, 1e-4, 1e-5):
        set_module(network, classifier_name, classifier)
        raise SourceError(
            f"{describe(spec)}: {classifier_name!r} is not the last operation of forward (its "
            "output is changed afterwards), so its input is not the penultimate features; "
            "wrap the network so that forward ends with the classifier",
            "head",
        )
    return layout, classifier
