"""Zoo architectures with one interface: logits, penultimate features, last feature map.

Every model is a `KDModel`: a feature extractor (`body`) followed by one linear ``classifier``.
The zoo's three architectures are defined here; the model sources (torchvision, timm, the
user's own module) are wrapped into the same interface by `components.models.external`, and
`build_model` builds either.
What the methods need (METHODS.md):

- DisWOT scores a random network with the gradient of CE w.r.t. ``classifier.weight`` and the
  last feature map before pooling (`forward_features`).
- Meta-DMoE cuts experts at the penultimate layer (`embed`) and adapts the student's feature
  extractor with a second-order inner step. `torch.func.functional_call` only calls
  ``forward``, so ``forward(x, features_only=True)`` returns the embedding:
  ``functional_call(model, fast_weights, (x,), {"features_only": True})``.

Every network is built from its torch-free layer plan (`components.models.layers`), the
description its parameter and MAC counts are read from as well.

All state lives in parameters and buffers (nothing cached between calls), so
`torch.func.functional_call` and `copy.deepcopy` work on every model.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import TypeAdapter
from torch import nn

from components.models.layers import (
    BlockPlan,
    Conv,
    Linear,
    Norm,
    mlp_plan,
    mnist_cnn_plan,
    resnet_plan,
)
from schemas.kd.models import (
    AnyModelSpec,
    MLPSpec,
    MnistCNNSpec,
    ModelSpec,
    ResNetSpec,
    SourceModelSpec,
)

Intermediates = dict[str, torch.Tensor]


@dataclass
class ModelOutput:
    """Everything one forward pass of a `KDModel` yields."""

    logits: torch.Tensor
    """(B, num_classes)."""
    features: torch.Tensor
    """Penultimate embedding, the classifier's input: (B, feature_dim)."""
    feature_map: torch.Tensor
    """Last map before pooling, (B, C, H, W) for CNNs; the last hidden activation (B, D) for
    MLPs (then the same tensor as ``features``)."""


class KDModel(nn.Module):
    """Base of every zoo model: a feature extractor (`body`) and a linear ``classifier``.

    Subclasses build their layers, set ``spec``, ``feature_dim`` and ``classifier``, and
    implement `body` and `_layer_names`. Intermediate names are the subclass's layer names plus
    ``"penultimate"`` and ``"logits"``.
    """

    spec: ModelSpec
    feature_dim: int
    classifier: nn.Linear

    def body(
        self, x: torch.Tensor, keep: Collection[str] = ()
    ) -> tuple[torch.Tensor, torch.Tensor, Intermediates]:
        """Run the feature extractor: (features, feature_map, {name: output for name in keep})."""
        raise NotImplementedError

    def _layer_names(self) -> list[str]:
        raise NotImplementedError

    def label(self) -> str:
        """What the model is, in messages: its ``arch``."""
        return self.spec.arch

    def forward(self, x: torch.Tensor, *, features_only: bool = False) -> torch.Tensor:
        """Logits (B, num_classes); with ``features_only`` the penultimate features instead."""
        features = self.body(x)[0]
        return features if features_only else self.classifier(features)

    def forward_features(self, x: torch.Tensor) -> ModelOutput:
        """Logits, penultimate features and the last feature map of one pass."""
        features, feature_map, _ = self.body(x)
        return ModelOutput(self.classifier(features), features, feature_map)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (B, feature_dim): the model cut before its classifier."""
        return self.body(x)[0]

    def feature_names(self) -> list[str]:
        """Names `intermediate` accepts, input side first."""
        return [*self._layer_names(), "penultimate", "logits"]

    def intermediate(self, x: torch.Tensor, names: Sequence[str]) -> Intermediates:
        """Named intermediate outputs of one pass; `feature_names` lists the valid names.

        Raises:
            KeyError: a name is not one of `feature_names` (the message lists the valid ones).
        """
        valid = self.feature_names()
        unknown = [n for n in names if n not in valid]
        if unknown:
            hints = [h for n in unknown for h in difflib.get_close_matches(n, valid, n=1)]
            hint = f"; did you mean {' or '.join(repr(h) for h in hints)}?" if hints else ""
            shown = valid if len(valid) <= 20 else [*valid[:16], f"… ({len(valid)} in all)"]
            raise KeyError(
                f"no intermediate {', '.join(repr(n) for n in unknown)} in {self.label()}; "
                f"valid names: {', '.join(shown)}{', penultimate, logits' * (len(valid) > 20)}"
                f"{hint}"
            )
        features, _, kept = self.body(x, keep=set(names))
        kept["penultimate"] = features
        if "logits" in names:
            kept["logits"] = self.classifier(features)
        return {n: kept[n] for n in names}


def _conv(conv: Conv) -> nn.Conv2d:
    return nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        bias=conv.bias,
    )


def _norm(norm: Norm) -> nn.Module:
    if norm.kind == "group":
        return nn.GroupNorm(norm.groups, norm.channels)
    if norm.kind == "batch":
        return nn.BatchNorm2d(norm.channels)
    return nn.Identity()


def _linear(linear: Linear) -> nn.Linear:
    return nn.Linear(linear.in_features, linear.out_features)


def _through(
    h: torch.Tensor, layers: nn.ModuleList, prefix: str, keep: Collection[str], kept: Intermediates
) -> torch.Tensor:
    """``h`` through ``layers`` in turn; the output of layer i goes into ``kept`` under
    ``{prefix}{i}`` when that name is in ``keep``."""
    for i, layer in enumerate(layers):
        h = layer(h)
        if f"{prefix}{i}" in keep:
            kept[f"{prefix}{i}"] = h
    return h


class MLP(KDModel):
    """Flatten, then ``Linear → activation → dropout`` per hidden width; layers ``hidden{i}``."""

    def __init__(self, spec: MLPSpec) -> None:
        super().__init__()
        plan = mlp_plan(spec)
        self.spec = spec
        self.in_dim = plan.in_features
        act: type[nn.Module] = nn.ReLU if spec.activation == "relu" else nn.GELU
        self.layers = nn.ModuleList(
            nn.Sequential(_linear(linear), act(), nn.Dropout(spec.dropout))
            for linear in plan.hidden
        )
        self.feature_dim = plan.classifier.in_features
        self.classifier = _linear(plan.classifier)

    def _layer_names(self) -> list[str]:
        return [f"hidden{i}" for i in range(len(self.layers))]

    def body(
        self, x: torch.Tensor, keep: Collection[str] = ()
    ) -> tuple[torch.Tensor, torch.Tensor, Intermediates]:
        """Features = feature map = the last hidden activation."""
        if x.dim() < 2 or x[0].numel() != self.in_dim:
            raise ValueError(
                f"mlp expects rows of {self.in_dim} values (input_shape "
                f"{list(self.spec.input_shape or ())}), got a batch of shape {tuple(x.shape)}"
            )
        kept: Intermediates = {}
        h = _through(x.flatten(1), self.layers, "hidden", keep, kept)
        return h, h, kept


def _to_image(x: torch.Tensor, shape: tuple[int, int, int], arch: str) -> torch.Tensor:
    """A batch as (B, C, H, W): already so, or flat rows of C*H*W values."""
    if tuple(x.shape[1:]) == shape:
        return x
    if x.dim() == 2 and x.shape[1] == math.prod(shape):
        return x.reshape(x.shape[0], *shape)
    raise ValueError(
        f"{arch} expects a batch of shape (B, {', '.join(map(str, shape))}) or flat "
        f"(B, {math.prod(shape)}), got {tuple(x.shape)}"
    )


class MnistCNN(KDModel):
    """DomainBed's MNIST CNN: ``conv → ReLU → norm`` layers ``conv{i}``, global average pool.

    Channels are width, 2·width, 2·width, ... (DomainBed: 64, 128, 128, 128); the second conv
    has stride 2.
    """

    def __init__(self, spec: MnistCNNSpec) -> None:
        super().__init__()
        plan = mnist_cnn_plan(spec)
        self.spec = spec
        self.image_shape = plan.image
        self.convs = nn.ModuleList(
            nn.Sequential(_conv(layer.conv), nn.ReLU(), _norm(layer.norm)) for layer in plan.convs
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = plan.classifier.in_features
        self.classifier = _linear(plan.classifier)

    def _layer_names(self) -> list[str]:
        return [f"conv{i}" for i in range(len(self.convs))]

    def body(
        self, x: torch.Tensor, keep: Collection[str] = ()
    ) -> tuple[torch.Tensor, torch.Tensor, Intermediates]:
        """Features = pooled last conv block; feature map = the last conv block's output."""
        kept: Intermediates = {}
        h = _through(_to_image(x, self.image_shape, self.spec.arch), self.convs, "conv", keep, kept)
        return self.pool(h).flatten(1), h, kept


class BasicBlock(nn.Module):
    """Two k x k conv-BN layers and a residual (a 1x1 conv-BN projection when shapes change)."""

    def __init__(self, plan: BlockPlan) -> None:
        super().__init__()
        self.conv1 = _conv(plan.first.conv)
        self.bn1 = _norm(plan.first.norm)
        self.conv2 = _conv(plan.second.conv)
        self.bn2 = _norm(plan.second.norm)
        self.shortcut: nn.Module = nn.Identity()
        if plan.shortcut is not None:
            self.shortcut = nn.Sequential(_conv(plan.shortcut.conv), _norm(plan.shortcut.norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))."""
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNetCifar(KDModel):
    """CIFAR ResNet-(6n+2): 3x3 conv stem, stages ``stage0..2`` of n BasicBlocks (w, 2w, 4w
    channels, stride 2 into stages 1 and 2), global average pool; layers ``stem``,
    ``stage0``, ``stage1``, ``stage2``."""

    def __init__(self, spec: ResNetSpec) -> None:
        super().__init__()
        plan = resnet_plan(spec)
        self.spec = spec
        self.image_shape = plan.image
        self.stem = nn.Sequential(_conv(plan.stem.conv), _norm(plan.stem.norm), nn.ReLU())
        self.stages = nn.ModuleList(
            nn.Sequential(*(BasicBlock(block) for block in stage)) for stage in plan.stages
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = plan.classifier.in_features
        self.classifier = _linear(plan.classifier)

    def _layer_names(self) -> list[str]:
        return ["stem", *(f"stage{i}" for i in range(len(self.stages)))]

    def body(
        self, x: torch.Tensor, keep: Collection[str] = ()
    ) -> tuple[torch.Tensor, torch.Tensor, Intermediates]:
        """Features = pooled last stage; feature map = the last stage's output."""
        h = self.stem(_to_image(x, self.image_shape, self.spec.arch))
        kept: Intermediates = {"stem": h} if "stem" in keep else {}
        h = _through(h, self.stages, "stage", keep, kept)
        return self.pool(h).flatten(1), h, kept


_BUILDERS: dict[str, type[KDModel]] = {
    "mlp": MLP,
    "mnist_cnn": MnistCNN,
    "resnet_cifar": ResNetCifar,
}
_SPEC: TypeAdapter[Any] = TypeAdapter(ModelSpec)


def _build(spec: AnyModelSpec, pretrained: bool) -> KDModel:
    if isinstance(spec, SourceModelSpec):
        from components.models.external import build_source_model

        return build_source_model(spec, pretrained=pretrained)
    return _BUILDERS[spec.arch](spec)


def build_model(
    spec: ModelSpec | Mapping[str, Any], *, seed: int | None = None, pretrained: bool = False
) -> KDModel:
    """Build the network a spec (or its JSON dict) describes, on the CPU, in training mode.

    The spec is validated again (``model_copy(update=...)`` skips validation). With a
    ``seed`` the weights depend on it alone and the global RNG is left untouched; without one
    they come from the global RNG. A model source (torchvision, timm, python) gets its
    pretrained ``weights`` only with ``pretrained=True`` (the training loop's first build, or
    `import_model`): a rebuild from a checkpoint loads the checkpoint's weights instead and
    must not need the original file.

    Raises:
        ValueError: ``num_classes`` or ``input_shape`` is still unset, the spec is invalid
            (a pydantic ``ValidationError``, which is a ``ValueError``), or a model source
            cannot build (`components.models.sources.SourceError`, `WeightsError`).
    """
    data = spec if isinstance(spec, Mapping) else spec.model_dump()
    if data.get("arch") == "causal_lm":  # a language model: sized by its tokenizer, not data
        from components.lm.models import build_causal_lm

        return build_causal_lm(data, seed=seed, pretrained=pretrained)
    missing = [name for name in ("num_classes", "input_shape") if data.get(name) is None]
    if missing:
        raise ValueError(
            f"{data.get('arch', 'model')}: {' and '.join(missing)} must be set before building "
            "(the training components fill them from the dataset; in Python use "
            "spec.model_copy(update={...}))"
        )
    checked = _SPEC.validate_python(data)
    if seed is None:
        return _build(checked, pretrained)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _build(checked, pretrained)
