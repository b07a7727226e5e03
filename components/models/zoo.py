"""Zoo architectures with one interface: logits, penultimate features, last feature map.

Every model is a `KDModel`: a feature extractor (`body`) followed by one linear ``classifier``.
What the methods need (METHODS.md):

- DisWOT scores a random network with the gradient of CE w.r.t. ``classifier.weight`` and the
  last feature map before pooling (`forward_features`).
- Meta-DMoE cuts experts at the penultimate layer (`embed`) and adapts the student's feature
  extractor with a second-order inner step. `torch.func.functional_call` only calls
  ``forward``, so ``forward(x, features_only=True)`` returns the embedding:
  ``functional_call(model, fast_weights, (x,), {"features_only": True})``.

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

from schemas.kd.models import MLPSpec, MnistCNNSpec, ModelSpec, ResNetSpec, image_shape

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
            raise KeyError(
                f"no intermediate {', '.join(repr(n) for n in unknown)} in {self.spec.arch}; "
                f"valid names: {', '.join(valid)}{hint}"
            )
        features, _, kept = self.body(x, keep=set(names))
        kept["penultimate"] = features
        if "logits" in names:
            kept["logits"] = self.classifier(features)
        return {n: kept[n] for n in names}


class MLP(KDModel):
    """Flatten, then ``Linear → activation → dropout`` per hidden width; layers ``hidden{i}``."""

    def __init__(self, spec: MLPSpec) -> None:
        super().__init__()
        assert spec.input_shape is not None and spec.num_classes is not None
        self.spec = spec
        self.in_dim = in_dim = math.prod(spec.input_shape)
        act: type[nn.Module] = nn.ReLU if spec.activation == "relu" else nn.GELU
        layers: list[nn.Module] = []
        for width in spec.hidden:
            layers.append(nn.Sequential(nn.Linear(in_dim, width), act(), nn.Dropout(spec.dropout)))
            in_dim = width
        self.layers = nn.ModuleList(layers)
        self.feature_dim = in_dim
        self.classifier = nn.Linear(in_dim, spec.num_classes)

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
        h = x.flatten(1)
        kept: Intermediates = {}
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if f"hidden{i}" in keep:
                kept[f"hidden{i}"] = h
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


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "group":
        # DomainBed: 8 groups; fewer when 8 does not divide the channels, and never a group of
        # one channel: a channel normalised alone has spatial mean 0, so after global average
        # pooling it would be a constant (a narrow CNN's features all constant: it cannot learn).
        groups = math.gcd(8, channels)
        while groups > 1 and channels // groups < 2:
            groups //= 2
        return nn.GroupNorm(groups, channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.Identity()


class MnistCNN(KDModel):
    """DomainBed's MNIST CNN: ``conv → ReLU → norm`` layers ``conv{i}``, global average pool.

    Channels are width, 2·width, 2·width, ... (DomainBed: 64, 128, 128, 128); the second conv
    has stride 2.
    """

    def __init__(self, spec: MnistCNNSpec) -> None:
        super().__init__()
        assert spec.input_shape is not None and spec.num_classes is not None
        self.spec = spec
        self.image_shape = image_shape(spec.input_shape)
        widths = [spec.width] + [2 * spec.width] * (spec.depth - 1)
        k = spec.kernel_size
        convs = []
        in_ch = self.image_shape[0]
        for i, out_ch in enumerate(widths):
            convs.append(
                nn.Sequential(
                    nn.Conv2d(in_ch, out_ch, k, stride=2 if i == 1 else 1, padding=k // 2),
                    nn.ReLU(),
                    _norm(spec.norm, out_ch),
                )
            )
            in_ch = out_ch
        self.convs = nn.ModuleList(convs)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = in_ch
        self.classifier = nn.Linear(in_ch, spec.num_classes)

    def _layer_names(self) -> list[str]:
        return [f"conv{i}" for i in range(len(self.convs))]

    def body(
        self, x: torch.Tensor, keep: Collection[str] = ()
    ) -> tuple[torch.Tensor, torch.Tensor, Intermediates]:
        """Features = pooled last conv block; feature map = the last conv block's output."""
        h = _to_image(x, self.image_shape, self.spec.arch)
        kept: Intermediates = {}
        for i, conv in enumerate(self.convs):
            h = conv(h)
            if f"conv{i}" in keep:
                kept[f"conv{i}"] = h
        return self.pool(h).flatten(1), h, kept


class BasicBlock(nn.Module):
    """Two k x k conv-BN layers and a residual (a 1x1 conv-BN projection when shapes change)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, kernel_size: int = 3) -> None:
        super().__init__()
        k, pad = kernel_size, kernel_size // 2
        self.conv1 = nn.Conv2d(in_ch, out_ch, k, stride, pad, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, k, 1, pad, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch)
            )

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
        assert spec.input_shape is not None and spec.num_classes is not None
        self.spec = spec
        self.image_shape = image_shape(spec.input_shape)
        n = (spec.depth - 2) // 6
        w = spec.width
        self.stem = nn.Sequential(
            nn.Conv2d(self.image_shape[0], w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU()
        )
        stages: list[nn.Module] = []
        in_ch = w
        for i, out_ch in enumerate((w, 2 * w, 4 * w)):
            blocks = [
                BasicBlock(
                    in_ch if j == 0 else out_ch,
                    out_ch,
                    2 if (i > 0 and j == 0) else 1,
                    spec.kernel_size,
                )
                for j in range(n)
            ]
            stages.append(nn.Sequential(*blocks))
            in_ch = out_ch
        self.stages = nn.ModuleList(stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = in_ch
        self.classifier = nn.Linear(in_ch, spec.num_classes)

    def _layer_names(self) -> list[str]:
        return ["stem", *(f"stage{i}" for i in range(len(self.stages)))]

    def body(
        self, x: torch.Tensor, keep: Collection[str] = ()
    ) -> tuple[torch.Tensor, torch.Tensor, Intermediates]:
        """Features = pooled last stage; feature map = the last stage's output."""
        h = self.stem(_to_image(x, self.image_shape, self.spec.arch))
        kept: Intermediates = {"stem": h} if "stem" in keep else {}
        for i, stage in enumerate(self.stages):
            h = stage(h)
            if f"stage{i}" in keep:
                kept[f"stage{i}"] = h
        return self.pool(h).flatten(1), h, kept


_BUILDERS: dict[str, type[KDModel]] = {
    "mlp": MLP,
    "mnist_cnn": MnistCNN,
    "resnet_cifar": ResNetCifar,
}
_SPEC: TypeAdapter[Any] = TypeAdapter(ModelSpec)


def build_model(spec: ModelSpec | Mapping[str, Any], *, seed: int | None = None) -> KDModel:
    """Build the network a spec (or its JSON dict) describes, on the CPU, in training mode.

    The spec is validated again (``model_copy(update=...)`` skips validation). With a
    ``seed`` the weights depend on it alone and the global RNG is left untouched; without one
    they come from the global RNG.

    Raises:
        ValueError: ``num_classes`` or ``input_shape`` is still unset, or the spec is invalid
            (a pydantic ``ValidationError``, which is a ``ValueError``).
    """
    data = spec if isinstance(spec, Mapping) else spec.model_dump()
    missing = [name for name in ("num_classes", "input_shape") if data.get(name) is None]
    if missing:
        raise ValueError(
            f"{data.get('arch', 'model')}: {' and '.join(missing)} must be set before building "
            "(the training components fill them from the dataset; in Python use "
            "spec.model_copy(update={...}))"
        )
    checked = _SPEC.validate_python(data)
    if seed is None:
        return _BUILDERS[checked.arch](checked)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _BUILDERS[checked.arch](checked)
