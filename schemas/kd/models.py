"""Model specs: typed descriptions of the zoo's architectures, rebuildable from JSON alone.

A spec is a value: ``components.models.zoo.build_model(spec)`` turns it into a network, and a
checkpoint stores it as ``model.json`` next to the weights. ``num_classes`` and ``input_shape``
are usually left out in YAML; the training components fill them from the dataset (with
``spec.model_copy(update=...)``, which does not validate; ``build_model`` validates again).

Input shapes: an MLP flattens whatever it gets, so any shape works. The CNNs need an image
``[C, H, W]``; a flat ``[D]`` is accepted only when D is a perfect square, and is then read as a
one-channel ``sqrt(D) x sqrt(D)`` image (a flattened MNIST digit, for example).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, RootModel, field_validator

from schemas.base import Model


class _Common(Model):
    """Fields every model spec has: the two the dataset decides."""

    num_classes: int | None = Field(
        None,
        ge=2,
        description="Number of classes (logits); filled from the dataset when omitted.",
    )
    input_shape: tuple[int, ...] | None = Field(
        None,
        description="Shape of one input row, [C, H, W] or [D]; filled from the dataset when "
        "omitted.",
    )

    @field_validator("input_shape")
    @classmethod
    def _positive_dims(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and (not value or any(d < 1 for d in value)):
            raise ValueError(f"needs at least one dimension, each >= 1, got {list(value)}")
        return value


def image_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The (C, H, W) a CNN sees for an input shape: itself, or a square (D,) as (1, √D, √D)."""
    if len(shape) == 3:
        return (shape[0], shape[1], shape[2])
    if len(shape) == 1:
        side = math.isqrt(shape[0])
        if side * side == shape[0]:
            return (1, side, side)
        raise ValueError(
            f"a CNN reads a flat input [D] as a 1 x sqrt(D) x sqrt(D) image, but {shape[0]} is "
            "not a perfect square; give [C, H, W] (dataset feature_shape) or use arch 'mlp'"
        )
    raise ValueError(f"a CNN needs image inputs [C, H, W] (or a square [D]), got {list(shape)}")


class _ImageSpec(_Common):
    """Specs of convolutional models: inputs must be images (or flat squares)."""

    @field_validator("input_shape")
    @classmethod
    def _image_like(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None:
            image_shape(value)
        return value

    @field_validator("kernel_size", check_fields=False)
    @classmethod
    def _odd_kernel(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"must be odd (1, 3, 5, 7) to keep 'same' padding, got {value}")
        return value


class MLPSpec(_Common):
    """Fully connected network on flattened inputs: Linear → activation → dropout per layer."""

    arch: Literal["mlp"] = Field("mlp", description="Architecture key: a multi-layer perceptron.")
    hidden: list[int] = Field(
        default_factory=lambda: [256, 128],
        description="Hidden layer widths; the last one is the penultimate feature width.",
    )
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout after each hidden layer.")
    activation: Literal["relu", "gelu"] = Field(
        "relu", description="Nonlinearity after each hidden layer."
    )

    @field_validator("hidden")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if not value or any(w < 1 for w in value):
            raise ValueError(f"needs at least one layer, each width >= 1, got {value}")
        return value


class MnistCNNSpec(_ImageSpec):
    """DomainBed's MNIST CNN (3x3 convs of 64-128-128-128 channels, stride 2 on the second,
    ReLU then GroupNorm, global average pooling), scaled by ``width / 64`` and ``depth``."""

    arch: Literal["mnist_cnn"] = Field(
        "mnist_cnn", description="Architecture key: DomainBed's MNIST CNN."
    )
    width: int = Field(
        64,
        ge=1,
        description="Channels of the first conv; the later ones have 2 x width (DomainBed: 64).",
    )
    depth: int = Field(4, ge=2, le=8, description="Number of conv layers (DomainBed: 4).")
    norm: Literal["group", "batch", "none"] = Field(
        "group",
        description="Normalisation after each conv's ReLU: GroupNorm (8 groups, DomainBed; "
        "fewer for narrow layers, at least 2 channels per group), BatchNorm or none.",
    )
    kernel_size: int = Field(
        3, ge=1, le=7, description="Square kernel of every conv (odd; DomainBed: 3)."
    )


class ResNetSpec(_ImageSpec):
    """CIFAR-style ResNet: a conv stem, then 3 stages of BasicBlocks (w, 2w, 4w channels,
    stride 2 into stages 2 and 3), BatchNorm, global average pooling."""

    arch: Literal["resnet_cifar"] = Field(
        "resnet_cifar", description="Architecture key: a CIFAR ResNet (He et al. 2016)."
    )
    depth: int = Field(
        20,
        ge=8,
        description="Layers, 6n+2 with n BasicBlocks per stage: 8, 14, 20, 32, 44, 56, 110.",
    )
    width: int = Field(16, ge=1, description="Channels of the first stage (stages: w, 2w, 4w).")
    kernel_size: int = Field(
        3, ge=1, le=7, description="Square kernel of the BasicBlock convs (odd; standard: 3)."
    )

    @field_validator("depth")
    @classmethod
    def _six_n_plus_two(cls, value: int) -> int:
        if (value - 2) % 6:
            lower = value - (value - 2) % 6
            raise ValueError(
                f"depth must be 6n+2 (8, 14, 20, 32, 44, 56, 110), got {value}; "
                f"nearest: {lower} or {lower + 6}"
            )
        return value


AnyModelSpec = MLPSpec | MnistCNNSpec | ResNetSpec
"""Plain union of the spec classes (for isinstance checks and type hints)."""

ModelSpec = Annotated[AnyModelSpec, Field(discriminator="arch")]
"""Any zoo model spec, told apart by ``arch`` (use in fields and ``TypeAdapter``)."""


class ModelSpecValue(RootModel[ModelSpec]):
    """A model spec passed from one step to another (`student_search`'s ``student`` output into
    `distill`'s ``student`` input). Its JSON is the spec itself, so a run record's value can be
    pasted into a ``student:`` config as it is; ``.root`` is the spec.

    Why not a plain `ModelSpec` port: the edge type check takes an input's union apart first
    and then needs the whole output type to fit one member, so a union output never fits a
    union input, not even the same union. One class on both ends is an ordinary edge.
    """

    model_config = ConfigDict(frozen=True)
