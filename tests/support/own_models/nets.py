"""Networks as a user would write them: plain PyTorch, nothing of kdorch."""

from __future__ import annotations

from torch import nn

from tests.support.own_models.blocks import conv_block


class SmallCNN(nn.Module):
    """Two conv blocks, global average pooling, a linear classifier."""

    def __init__(self, num_classes: int = 10, width: int = 8, in_channels: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_block(in_channels, width), conv_block(width, 2 * width, stride=2)
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.fc(self.pool(self.features(x)).flatten(1))


def small_cnn(num_classes: int = 10, width: int = 8) -> nn.Module:
    """The factory a spec names: ``factory: tests.support.own_models.nets:small_cnn``."""
    return SmallCNN(num_classes, width)


def fixed_cnn(width: int = 8, outputs: int = 10) -> nn.Module:
    """A factory that does not take num_classes: ``outputs`` logits whatever the data."""
    return SmallCNN(outputs, width)


class ScaledLogits(SmallCNN):
    """The classifier is not the last operation: logits are scaled after it."""

    def forward(self, x):  # type: ignore[no-untyped-def]
        return 2.0 * super().forward(x)


def scaled_logits(num_classes: int = 10) -> nn.Module:
    return ScaledLogits(num_classes)


def not_a_module(num_classes: int = 10) -> dict[str, int]:
    """A factory that returns something that is not a network."""
    return {"num_classes": num_classes}
