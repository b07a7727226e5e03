"""The zoo's architectures as torch-free layer plans: what the zoo builds and what it costs.

A plan lists a network's layers with their sizes (`Conv`, `Norm`, `Linear`, grouped as the
network groups them); `plan_of(spec)` lays one out for a spec whose ``input_shape`` and
``num_classes`` are set. Two readers share it:

- `components.models.zoo` builds the torch network layer by layer from the plan;
- `Plan.cost` counts the plan's parameters and multiply-accumulates (MACs), as
  `components.models.profile` measures them on a built model (the convolutions and linears
  only; biases, norms, activations and pooling cost no MACs).

Why a plan rather than size formulas beside the zoo: a formula restates the architecture, and
only a test kept the two equal. With one description the count follows any change to the
architecture by construction; what stays to test (`tests/unit/test_models.py`) is the counting
rule of each layer kind, against torch. Why torch-free: the student search sizes every
candidate without building it, and `kdorch validate` checks its caps (`StudentSearch.
check_config`) without importing torch.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Literal

from schemas.kd.models import (
    AnyModelSpec,
    MLPSpec,
    MnistCNNSpec,
    ResNetSpec,
    ZooModelSpec,
    image_shape,
)

Cost = tuple[int, int]
"""(parameters, multiply-accumulates for one input row)."""

MapSize = tuple[int, int]
"""(height, width) of a feature map."""


@dataclass(frozen=True)
class Conv:
    """A square k x k 2-D convolution with 'same' padding k // 2 (odd k; 1x1: none)."""

    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int = 1
    bias: bool = True

    @property
    def padding(self) -> int:
        """Zeros added on each side: k // 2."""
        return self.kernel_size // 2

    def output_size(self, size: MapSize) -> MapSize:
        """The map this convolution makes of a map of ``size``."""
        pad, k, s = self.padding, self.kernel_size, self.stride
        return ((size[0] + 2 * pad - k) // s + 1, (size[1] + 2 * pad - k) // s + 1)

    def cost(self, size: MapSize) -> Cost:
        """(weights and bias, MACs on an input map of ``size``)."""
        per_output = self.in_channels * self.kernel_size**2
        params = per_output * self.out_channels + (self.out_channels if self.bias else 0)
        height, width = self.output_size(size)
        return params, height * width * self.out_channels * per_output


@dataclass(frozen=True)
class Norm:
    """A normalisation of ``channels`` feature maps: GroupNorm, BatchNorm, or none."""

    kind: Literal["group", "batch", "none"]
    channels: int

    @property
    def groups(self) -> int:
        """GroupNorm's groups: DomainBed's 8, fewer when 8 does not divide the channels, and
        never a group of one channel: a channel normalised alone has spatial mean 0, so after
        global average pooling it would be a constant (a narrow CNN's features all constant:
        it cannot learn)."""
        groups = math.gcd(8, self.channels)
        while groups > 1 and self.channels // groups < 2:
            groups //= 2
        return groups

    def parameters(self) -> int:
        """A scale and a shift per channel (none: nothing); BatchNorm's statistics are
        buffers, not parameters."""
        return 0 if self.kind == "none" else 2 * self.channels


@dataclass(frozen=True)
class Linear:
    """A fully connected layer (with bias)."""

    in_features: int
    out_features: int

    def cost(self) -> Cost:
        """(weights and bias, MACs for one row)."""
        macs = self.in_features * self.out_features
        return macs + self.out_features, macs


@dataclass(frozen=True)
class ConvNorm:
    """A convolution followed by its normalisation (an activation between them costs nothing)."""

    conv: Conv
    norm: Norm

    def cost(self, size: MapSize) -> tuple[Cost, MapSize]:
        """(cost on an input map of ``size``, the output map's size)."""
        params, macs = self.conv.cost(size)
        return (params + self.norm.parameters(), macs), self.conv.output_size(size)


def _sum(*costs: Cost) -> Cost:
    return sum(c[0] for c in costs), sum(c[1] for c in costs)


@dataclass(frozen=True)
class MLPPlan:
    """Flatten ``in_features`` values, one `Linear` per hidden layer, then the classifier."""

    in_features: int
    hidden: tuple[Linear, ...]
    classifier: Linear

    def cost(self) -> Cost:
        """Parameters and MACs of the whole network for one row."""
        return _sum(*(layer.cost() for layer in self.hidden), self.classifier.cost())


@dataclass(frozen=True)
class MnistCNNPlan:
    """DomainBed's MNIST CNN: conv layers on a (C, H, W) image, global average pool, classifier."""

    image: tuple[int, int, int]
    convs: tuple[ConvNorm, ...]
    classifier: Linear

    def cost(self) -> Cost:
        """Parameters and MACs of the whole network for one image."""
        total, size = self.classifier.cost(), self.image[1:]
        for layer in self.convs:
            cost, size = layer.cost(size)
            total = _sum(total, cost)
        return total


@dataclass(frozen=True)
class BlockPlan:
    """A BasicBlock: two conv-BN layers and a shortcut (a 1x1 conv-BN projection when the
    shape changes, else the identity)."""

    first: ConvNorm
    second: ConvNorm
    shortcut: ConvNorm | None

    def cost(self, size: MapSize) -> tuple[Cost, MapSize]:
        """(cost on an input map of ``size``, the output map's size)."""
        first, middle = self.first.cost(size)
        second, out = self.second.cost(middle)
        shortcut = self.shortcut.cost(size)[0] if self.shortcut is not None else (0, 0)
        return _sum(first, second, shortcut), out


@dataclass(frozen=True)
class ResNetPlan:
    """CIFAR ResNet: a conv stem, three stages of BasicBlocks, global average pool, classifier."""

    image: tuple[int, int, int]
    stem: ConvNorm
    stages: tuple[tuple[BlockPlan, ...], ...]
    classifier: Linear

    def cost(self) -> Cost:
        """Parameters and MACs of the whole network for one image."""
        total, size = self.stem.cost(self.image[1:])
        total = _sum(total, self.classifier.cost())
        for stage in self.stages:
            for block in stage:
                cost, size = block.cost(size)
                total = _sum(total, cost)
        return total


Plan = MLPPlan | MnistCNNPlan | ResNetPlan


def _dataset_fields(spec: ZooModelSpec) -> tuple[tuple[int, ...], int]:
    if spec.input_shape is None or spec.num_classes is None:
        raise ValueError(
            f"{spec.arch}: num_classes and input_shape must be set to lay out its layers"
        )
    return spec.input_shape, spec.num_classes


def mlp_plan(spec: MLPSpec) -> MLPPlan:
    """The MLP's layers: ``hidden`` widths in turn, then the classifier."""
    shape, classes = _dataset_fields(spec)
    widths = [math.prod(shape), *spec.hidden]
    hidden = tuple(Linear(a, b) for a, b in itertools.pairwise(widths))
    return MLPPlan(widths[0], hidden, Linear(widths[-1], classes))


def mnist_cnn_plan(spec: MnistCNNSpec) -> MnistCNNPlan:
    """Channels width, 2·width, 2·width, ... (DomainBed: 64, 128, 128, 128); the second conv
    has stride 2."""
    shape, classes = _dataset_fields(spec)
    image = image_shape(shape)
    widths = [spec.width] + [2 * spec.width] * (spec.depth - 1)
    convs, in_ch = [], image[0]
    for i, out_ch in enumerate(widths):
        conv = Conv(in_ch, out_ch, spec.kernel_size, stride=2 if i == 1 else 1)
        convs.append(ConvNorm(conv, Norm(spec.norm, out_ch)))
        in_ch = out_ch
    return MnistCNNPlan(image, tuple(convs), Linear(in_ch, classes))


def _block(in_ch: int, out_ch: int, stride: int, kernel_size: int) -> BlockPlan:
    shortcut = None
    if stride != 1 or in_ch != out_ch:
        shortcut = ConvNorm(Conv(in_ch, out_ch, 1, stride, bias=False), Norm("batch", out_ch))
    return BlockPlan(
        ConvNorm(Conv(in_ch, out_ch, kernel_size, stride, bias=False), Norm("batch", out_ch)),
        ConvNorm(Conv(out_ch, out_ch, kernel_size, 1, bias=False), Norm("batch", out_ch)),
        shortcut,
    )


def resnet_plan(spec: ResNetSpec) -> ResNetPlan:
    """A 3x3 stem of w channels, stages of n = (depth - 2) / 6 blocks of w, 2w, 4w channels
    (stride 2 into stages 1 and 2)."""
    shape, classes = _dataset_fields(spec)
    image = image_shape(shape)
    n, w = (spec.depth - 2) // 6, spec.width
    stem = ConvNorm(Conv(image[0], w, 3, bias=False), Norm("batch", w))
    stages, in_ch = [], w
    for i, out_ch in enumerate((w, 2 * w, 4 * w)):
        blocks = []
        for j in range(n):
            stride = 2 if i > 0 and j == 0 else 1
            blocks.append(_block(in_ch, out_ch, stride, spec.kernel_size))
            in_ch = out_ch
        stages.append(tuple(blocks))
    return ResNetPlan(image, stem, tuple(stages), Linear(in_ch, classes))


def plan_of(spec: AnyModelSpec) -> Plan:
    """The layer plan of any zoo spec (``input_shape`` and ``num_classes`` set).

    Raises:
        ValueError: ``input_shape`` or ``num_classes`` is unset, or ``spec`` is a model source
            (torchvision, timm, python: no plan; `components.models.profile` measures a built
            one).
    """
    if isinstance(spec, MLPSpec):
        return mlp_plan(spec)
    if isinstance(spec, MnistCNNSpec):
        return mnist_cnn_plan(spec)
    if isinstance(spec, ResNetSpec):
        return resnet_plan(spec)
    raise ValueError(
        f"arch {spec.arch!r} has no layer plan (only the zoo's do): build it and measure it "
        "with components.models.profile"
    )
