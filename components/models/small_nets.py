"""Factories for ``arch: python`` that adapt torchvision networks to short runs on small
images, written as a user's own module would be (plain PyTorch, nothing of kdorch):
`pipelines/vision_kd.yaml` names ``components.models.small_nets:mobilenet_v3_small``.

It ships inside kdorch so that the recipe runs as it is, without ``PYTHONPATH``; a module of
your own works the same way from an installed package or a folder on ``PYTHONPATH``
(docs/bring_your_own.md). Its code is in the key of every step whose config names it.
"""

from __future__ import annotations

from torch import nn


def mobilenet_v3_small(
    num_classes: int = 1000,
    width_mult: float = 1.0,
    dropout: float = 0.2,
    bn_momentum: float = 0.1,
) -> nn.Module:
    """torchvision's MobileNetV3-small with every BatchNorm's momentum set to ``bn_momentum``.

    torchvision builds it with momentum 0.01 (the paper's TensorFlow default of 0.99 decay):
    the running statistics that evaluation uses then follow the weights so slowly that a run of
    a few hundred steps scores at chance in eval mode while its training accuracy climbs
    (measured on the MNIST digits at 32x32: 0.10 test top-1 after 5 epochs of 47 steps; 0.88
    after 2 with momentum 0.1, PyTorch's default).
    """
    from torchvision.models import mobilenet_v3_small as build

    network = build(num_classes=num_classes, width_mult=width_mult, dropout=dropout)
    for module in network.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = bn_momentum
    return network
