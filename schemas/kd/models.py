"""Model specs: typed descriptions of networks, rebuildable from JSON alone.

Three families, told apart by ``arch``:

- the zoo (``mlp``, ``mnist_cnn``, ``resnet_cifar``): kdorch's own architectures, each knob a
  field;
- model sources (``torchvision``, ``timm``, ``python``): any network a builder makes (a
  torchvision builder by name, ``timm.create_model``, or the user's own factory function), with
  optional pretrained ``weights`` from a state-dict file, a ``head`` to replace and the
  ``features`` to read by module name (docs/bring_your_own.md);
- causal language models (``causal_lm``, `schemas.kd.lm.CausalLMSpec`): Hugging Face
  `transformers` models built from a few knobs or loaded from a ``save_pretrained`` folder,
  their ``vocab_size`` filled from the tokenizer (docs/language_models.md).

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
import re
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, RootModel, field_validator, model_validator

from schemas.base import Model
from schemas.engine.storage import StorageOptions
from schemas.kd.lm import CausalLMSpec


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


class HeadSpec(Model):
    """The classifier to replace after the pretrained weights are loaded."""

    replace: str = Field(
        description="Module path of the final nn.Linear (e.g. fc, classifier.3, head): it "
        "becomes a new nn.Linear(in_features, num_classes), so a 1000-class checkpoint can be "
        "fine-tuned to the dataset's classes."
    )


class FeatureSpec(Model):
    """Which modules' outputs are the penultimate features and the feature map."""

    penultimate: str | None = Field(
        None,
        description="Module whose output (flattened) is the penultimate embedding; it must be "
        "what the classifier reads (same width). Default: the classifier's input.",
    )
    map: str | None = Field(
        None,
        description="Module whose output is the feature map (FitNets hints, DisWOT). Default: "
        "the last module before the classifier with a 4-D output that is not a pooling layer; "
        "none (a ViT): the penultimate features.",
    )


_NO_DOWNLOAD = ("weights", "pretrained", "pretrained_cfg", "pretrained_cfg_overlay")
_FACTORY = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")


class _SourceSpec(_Common):
    """What every model source has beside its builder: kwargs, weights, head, features."""

    kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments of the builder (JSON values)."
    )
    weights: str | None = Field(
        None,
        description="Pretrained weights: a state-dict file (.pt/.pth/.bin/.ckpt or .safetensors), "
        "a local path or s3://...; read as data only (never as code), loaded strictly.",
    )
    weights_key: str | None = Field(
        None,
        description="The entry of a checkpoint dict that holds the state dict (e.g. "
        "state_dict, model); dots go deeper (a.b).",
    )
    storage_options: StorageOptions = Field(
        default_factory=StorageOptions, description="How to reach `weights` (s3 endpoint...)."
    )
    head: HeadSpec | None = Field(
        None, description="Replace the classifier after loading the weights: {replace: fc}."
    )
    features: FeatureSpec = Field(
        default_factory=FeatureSpec,
        description="Modules read as penultimate features and feature map (defaults found "
        "from one forward pass).",
    )

    @field_validator("weights")
    @classmethod
    def _weights_file(cls, value: str | None) -> str | None:
        if value is not None and not value.lower().endswith(_WEIGHT_SUFFIXES):
            raise ValueError(
                f"must be a state-dict file ending in {', '.join(_WEIGHT_SUFFIXES)}, got {value!r}"
            )
        return value

    @field_validator("weights_key")
    @classmethod
    def _entry_name(cls, value: str | None) -> str | None:
        if value is not None and not all(value.split(".")):
            raise ValueError(f"must name an entry, e.g. state_dict or a.b, got {value!r}")
        return value

    @model_validator(mode="after")
    def _key_needs_weights(self) -> _SourceSpec:
        if self.weights_key is not None and self.weights is None:
            raise ValueError("weights_key names an entry of the weights file: set `weights` too")
        return self


class _NamedSpec(_SourceSpec):
    """A source that builds a named architecture of a library (torchvision, timm)."""

    name: str = Field(description="The architecture's name in the library.")

    @field_validator("kwargs")
    @classmethod
    def _no_downloads(cls, value: dict[str, Any]) -> dict[str, Any]:
        downloads = sorted(set(value) & set(_NO_DOWNLOAD))
        if not downloads:
            return value
        raise ValueError(
            f"{', '.join(downloads)} would download weights; give a local or s3:// state-dict "
            "file in the spec's `weights` instead"
        )


class TorchvisionSpec(_NamedSpec):
    """Any classification builder of ``torchvision.models`` by name (``resnet18``,
    ``mobilenet_v3_small``, ``efficientnet_b0``, ``vit_b_16``...), with its keyword arguments;
    ``num_classes`` is passed to the builder unless a head is replaced."""

    arch: Literal["torchvision"] = Field(
        "torchvision", description="Model source: a torchvision builder."
    )


class TimmSpec(_NamedSpec):
    """``timm.create_model(name, pretrained=False, num_classes=..., **kwargs)``."""

    arch: Literal["timm"] = Field("timm", description="Model source: timm.create_model.")


class PythonSpec(_SourceSpec):
    """The user's own architecture: ``factory(**kwargs)`` returns an ``nn.Module``. The
    factory's module (and the modules of its package it imports) is part of the cache key of
    every step that builds it, like kdorch's own code."""

    arch: Literal["python"] = Field("python", description="Model source: a Python factory.")
    factory: str = Field(
        description="Import path 'package.module:function' of a function (or class) that "
        "returns a torch.nn.Module; it gets num_classes when its signature takes it."
    )

    @field_validator("factory")
    @classmethod
    def _import_path(cls, value: str) -> str:
        if not _FACTORY.match(value):
            raise ValueError(
                f"must be an import path 'package.module:function', got {value!r} (e.g. "
                "my_models.nets:small_cnn)"
            )
        return value


ZooModelSpec = MLPSpec | MnistCNNSpec | ResNetSpec
"""The zoo's spec classes (kdorch's own architectures, with layer plans)."""

SourceModelSpec = TorchvisionSpec | TimmSpec | PythonSpec
"""The model sources' spec classes (networks built by torchvision, timm or the user)."""

AnyModelSpec = ZooModelSpec | SourceModelSpec | CausalLMSpec
"""Plain union of the spec classes (for isinstance checks and type hints)."""

ModelSpec = Annotated[AnyModelSpec, Field(discriminator="arch")]
"""Any model spec, told apart by ``arch`` (use in fields and ``TypeAdapter``)."""


class ModelSpecValue(RootModel[ModelSpec]):
    """A model spec passed from one step to another (`student_search`'s ``student`` output into
    `distill`'s ``student`` input). Its JSON is the spec itself, so a run record's value can be
    pasted into a ``student:`` config as it is; ``.root`` is the spec.

    Why not a plain `ModelSpec` port: the edge type check takes an input's union apart first
    and then needs the whole output type to fit one member, so a union output never fits a
    union input, not even the same union. One class on both ends is an ordinary edge.
    """

    model_config = ConfigDict(frozen=True)
