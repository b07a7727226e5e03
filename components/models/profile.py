"""Size and cost of models (parameters, multiply-accumulates) and DisWOT's initialisation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm)


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (shared ones once); only those with ``requires_grad`` if asked."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _count_cpu_attention() -> None:
    """Teach the FLOP counter the CPU kernel of ``scaled_dot_product_attention``.

    torch counts fused attention on CUDA (flash, memory-efficient, cuDNN) but not the CPU
    kernel ``aten._scaled_dot_product_flash_attention_for_cpu``, so a ViT on the CPU would
    count its projections but not its two attention matmuls. The same formula torch uses for
    the other kernels (`sdpa_flop_count`) is registered for it, once per process, unless this
    torch already counts it.
    """
    from torch.utils import flop_counter

    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is None or op in flop_counter.flop_registry or op.default in flop_counter.flop_registry:
        return

    @flop_counter.register_flop_formula(op)
    def _cpu_attention(
        query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any
    ) -> int:
        return int(flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape))


def estimate_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one forward pass on one sample of ``input_shape``.

    Measured with torch's own FLOP counter (`torch.utils.flop_counter.FlopCounterMode`) on a
    zero input: MACs = FLOPs / 2 of the matrix products and convolutions it counts
    (convolutions, linear layers, matmuls, fused attention: `_count_cpu_attention`). Bias additions,
    norms, activations and pooling are not counted, so a zoo model's count equals its layer
    plan's (`components.models.layers`): an MLP 64→32→10 costs 64·32 + 32·10. The pass runs
    with gradients enabled, as in training: inference fast paths (PyTorch's fused transformer
    layers) would hide their matmuls from the counter. The model's train/eval flags are
    restored afterwards, module by module.
    """
    from torch.utils.flop_counter import FlopCounterMode

    _count_cpu_attention()
    modes = {module: module.training for module in model.modules()}
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    model.eval()
    try:
        with torch.enable_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *input_shape, device=device, dtype=dtype))
    finally:
        for module, training in modes.items():
            module.training = training
    return int(counter.get_total_flops()) // 2


@torch.no_grad()
def diswot_init_(model: nn.Module, *, seed: int | None = None) -> None:
    """DisWOT's initialisation, in place: conv/linear weights N(0, 1), zero biases, norm layers
    gamma = 1 and beta = 0 (teacher and candidate alike, before scoring them on one batch).

    With a ``seed`` the weights depend on it alone and the global RNG is left untouched.
    """
    if seed is not None:
        cuda = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(seed)
            diswot_init_(model)
        return
    for module in model.modules():
        if isinstance(module, (*_CONVS, nn.Linear)):
            nn.init.normal_(module.weight, 0.0, 1.0)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, _NORMS):
            if module.weight is not None:
                nn.init.ones_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
