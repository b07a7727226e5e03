"""The model zoo (a library, not a step): MLP, DomainBed MNIST CNN, CIFAR ResNets.

Build from a spec (`schemas.kd.models`), run through the `KDModel` interface (logits, penultimate
features, last feature map, named intermediates), encode and decode as checkpoint files (the
store I/O is `components.artifacts.checkpoints`), and measure size and cost.
"""

from components.models.checkpoint import (
    CheckpointError,
    CheckpointNotFoundError,
    decode_checkpoint,
    encode_checkpoint,
)
from components.models.profile import count_parameters, diswot_init_, estimate_flops
from components.models.zoo import KDModel, ModelOutput, build_model

__all__ = [
    "CheckpointError",
    "CheckpointNotFoundError",
    "KDModel",
    "ModelOutput",
    "build_model",
    "count_parameters",
    "decode_checkpoint",
    "diswot_init_",
    "encode_checkpoint",
    "estimate_flops",
]
