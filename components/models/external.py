"""Any network behind the `KDModel` interface: the model sources (torchvision, timm, python).

`build_source_model` builds the source's network (`components.models.sources`), loads its
pretrained weights strictly (`components.models.weights`), replaces the classifier when the
spec says ``head: {replace: <module>}``, and lays the network out in one forward pass on a
random batch (`_probe`):

- the **classifier** is the final ``nn.Linear``: the replaced head, or the Linear whose output is
  the network's output. It is taken out of the network (its place holds an ``nn.Identity``) and
  kept as ``model.classifier``, so the network itself returns the penultimate features, the
  parameters are named ``net.*`` and ``classifier.*`` like the zoo's, DisWOT takes gradients
  w.r.t. ``classifier.weight`` and Meta-DMoE adapts everything but ``classifier.*``. The cut is
  checked: ``classifier(net(x))`` must give the original network's logits (else the Linear is
  not the last operation, and the error says so).
- the **feature map** (`features.map`): by default the last module before the classifier with a
  4-D output that is not a pooling layer (``layer4`` of a ResNet, ``features`` of a MobileNet);
  a network without one (a ViT) uses its penultimate features, as the zoo's MLP does.
- the **penultimate features** (`features.penultimate`): by default the classifier's input; a
  named module must give as many values per row as the classifier reads.
- **inputs**: flat rows are reshaped to ``input_shape``; a one-channel image is repeated to the
  channels of the first convolution (a grey digit into an ImageNet ResNet); other channel
  mismatches are refused.

Intermediate outputs are read with forward hooks registered for one call and removed after it,
so no state lives outside parameters and buffers: the model pickles (Ray ships it),
`copy.deepcopy` and `torch.func.functional_call` work, and `intermediate` accepts any module
name of the network (`feature_names`). One model must not run two forward passes at once from
two threads (the hooks of one pass would see the other's outputs).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import torch
from torch import nn

from components.models.probe import Layout, describe, lay_out, module_at, set_module
from components.models.sources import SourceError, build_network
from components.models.weights import load_strict, read_state
from components.models.zoo import Intermediates, KDModel
from schemas.kd.models import SourceModelSpec


class SourceModel(KDModel):
    """A model source's network (``net``, classifier cut out) and its ``classifier``."""

    spec: SourceModelSpec

    def __init__(
        self, spec: SourceModelSpec, net: nn.Module, classifier: nn.Linear, layout: Layout
    ) -> None:
        super().__init__()
        assert spec.input_shape is not None
        self.spec = spec
        self.net = net
        self.classifier = classifier
        self.feature_dim = classifier.in_features
        self.layout = layout
        self.input_shape = tuple(spec.input_shape)

    def _layer_names(self) -> list[str]:
        return [n for n, _ in self.net.named_modules() if n and n != self.layout.classifier]

    def label(self) -> str:
        """``torchvision resnet18``, ``timm test_vit``, ``python pkg.mod:fn``."""
        return describe(self.spec)

    def _shaped(self, x: torch.Tensor) -> torch.Tensor:
        shape = self.input_shape
        if tuple(x.shape[1:]) != shape:
            if x.dim() != 2 or x.shape[1] != math.prod(shape):
                raise ValueError(
                    f"{self.label()} expects a batch of shape (B, "
                    f"{', '.join(map(str, shape))}) or flat (B, {math.prod(shape)}), got "
                    f"{tuple(x.shape)}"
                )
            x = x.reshape(x.shape[0], *shape)
        if self.layout.repeat_channels > 1:
            x = x.repeat(1, self.layout.repeat_channels, *([1] * (x.dim() - 2)))
        return x

    def _run(
        self, x: torch.Tensor, watched: set[str], copied: set[str]
    ) -> tuple[torch.Tensor, Intermediates]:
        """The network's output (the classifier's input) and the outputs of ``watched``
        modules; those in ``copied`` are cloned (a later in-place operation cannot change
        them), the others must stay unchanged until the pass ends."""
        captured: Intermediates = {}
        versions: dict[str, int] = {}
        handles = [
            self.net.get_submodule(name).register_forward_hook(
                partial(_capture, captured, versions, name, name in copied)
            )
            for name in sorted(watched)
        ]
        try:
            out = self.net(self._shaped(x))
        finally:
            for handle in handles:
                handle.remove()
        for name, version in versions.items():
            if captured[name]._version != version:
                raise ValueError(
                    f"{self.label()}: the output of {name!r} is changed in place later in "
                    "the forward pass, so it cannot be read as a feature; choose another module "
                    "(features.map / features.penultimate)"
                )
        return out.flatten(1), captured

    def _features(self, out: torch.Tensor, captured: Intermediates) -> torch.Tensor:
        name = self.layout.penultimate
        return out if name is None else captured[name].flatten(1)

    def body(
        self, x: torch.Tensor, keep: Any = ()
    ) -> tuple[torch.Tensor, torch.Tensor, Intermediates]:
        """(penultimate features, feature map, {name: output for name in keep})."""
        layout = self.layout
        wanted = {n for n in keep if n not in ("penultimate", "logits")}
        fixed = {n for n in (layout.penultimate, layout.map) if n is not None}
        out, captured = self._run(x, wanted | fixed, wanted - fixed)
        features = self._features(out, captured)
        feature_map = captured[layout.map] if layout.map is not None else features
        return features, feature_map, {n: captured[n] for n in wanted}

    def forward(self, x: torch.Tensor, *, features_only: bool = False) -> torch.Tensor:
        """Logits (B, num_classes); with ``features_only`` the penultimate features."""
        name = self.layout.penultimate
        out, captured = self._run(x, {name} if name else set(), set())
        features = self._features(out, captured)
        return features if features_only else self.classifier(features)


def _capture(
    captured: Intermediates,
    versions: dict[str, int],
    name: str,
    copy: bool,
    module: nn.Module,
    inputs: Any,
    output: Any,
) -> None:
    if not isinstance(output, torch.Tensor):
        raise ValueError(
            f"module {name!r} returns a {type(output).__name__}, not a tensor: it cannot be "
            "read as a feature; choose another module"
        )
    captured[name] = output.clone() if copy else output
    if not copy and not output.is_inference():  # inference tensors keep no version counter
        versions[name] = output._version


def head_module(network: nn.Module, spec: SourceModelSpec) -> nn.Linear:
    """The Linear that ``head.replace`` names (checked to exist and to be an ``nn.Linear``)."""
    assert spec.head is not None
    name = spec.head.replace
    old = module_at(network, name, "head.replace")
    if not isinstance(old, nn.Linear):
        inside = [f"{name}.{n}" for n, m in old.named_modules() if isinstance(m, nn.Linear)]
        raise SourceError(
            f"head.replace: {name!r} is a {type(old).__name__}, not an nn.Linear"
            + (f"; name the Linear inside it: {', '.join(inside)}" if inside else ""),
            "head.replace",
        )
    return old


def replace_head(network: nn.Module, spec: SourceModelSpec) -> None:
    """``head.replace``: a new ``nn.Linear(in_features, num_classes)`` where the old one was."""
    old = head_module(network, spec)
    if spec.num_classes is None:
        raise SourceError(
            "head.replace needs num_classes (filled from the dataset; without a dataset input "
            "set num_classes in the model spec)",
            "num_classes",
        )
    assert spec.head is not None
    set_module(
        network,
        spec.head.replace,
        nn.Linear(old.in_features, spec.num_classes, old.bias is not None),
    )


def first_conv_channels(network: nn.Module) -> tuple[str, int] | None:
    """(path, in_channels) of the network's first 2-D convolution (registration order)."""
    for name, module in network.named_modules():
        if isinstance(module, nn.Conv2d):
            return name, module.in_channels
    return None


def channel_repeat(network: nn.Module, spec: SourceModelSpec) -> int:
    """How often to repeat a one-channel image for the first convolution (1: never).

    Raises:
        SourceError: image channels the first convolution cannot take.
    """
    shape = tuple(spec.input_shape or ())
    conv = first_conv_channels(network)
    if len(shape) != 3 or conv is None or conv[1] == shape[0]:
        return 1
    if shape[0] == 1:
        return conv[1]
    raise SourceError(
        f"{describe(spec)} takes {conv[1]}-channel images (its first convolution {conv[0]!r}), "
        f"the data has {shape[0]} channels (input_shape {list(shape)})",
        "input_shape",
    )


def build_source_model(spec: SourceModelSpec, *, pretrained: bool) -> SourceModel:
    """The spec's network behind the `KDModel` interface (module docstring), with its
    pretrained ``weights`` loaded when ``pretrained`` (a rebuild from a kdorch checkpoint
    loads that checkpoint's weights instead).

    Raises:
        SourceError, WeightsError (both ``ValueError``): what to change, naming the field.
    """
    network = build_network(spec)
    if pretrained and spec.weights is not None:
        load_strict(network, read_state(spec), spec.weights, describe(spec))
    repeat = channel_repeat(network, spec)
    if spec.head is not None:
        replace_head(network, spec)
    layout, classifier = lay_out(network, spec, repeat)
    return SourceModel(spec, network, classifier, layout)
