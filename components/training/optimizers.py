"""What the training loop optimises with: the torch optimiser and learning-rate schedule of
`TrainingSettings`, and DeepSpeed's ZeRO engine around them when the strategy asks for it."""

from __future__ import annotations

import math
import os
from typing import Any

import torch
from torch import nn

from schemas.kd.components.training import TrainingSettings


def make_optimizer(params: Any, cfg: TrainingSettings) -> torch.optim.Optimizer:
    """SGD (with momentum), AdamW or Adam over ``params``, as ``cfg.optimizer`` names it."""
    opt = cfg.optimizer
    if opt.name == "sgd":
        return torch.optim.SGD(
            params, lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay
        )
    cls = torch.optim.AdamW if opt.name == "adamw" else torch.optim.Adam
    return cls(params, lr=opt.lr, weight_decay=opt.weight_decay)


def make_schedule(
    optimizer: torch.optim.Optimizer, cfg: TrainingSettings, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-optimiser-step schedule over ``total_steps``: a linear warm-up from 0 over
    ``warmup_fraction`` of them, then cosine decay to 0 over the rest, or a constant rate."""
    warmup = int(cfg.optimizer.warmup_fraction * total_steps)
    cosine = cfg.optimizer.schedule == "cosine"

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if not cosine:
            return 1.0
        done = min(step - warmup, total_steps - warmup) / max(total_steps - warmup, 1)
        return 0.5 * (1 + math.cos(math.pi * done))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def deepspeed_engine(
    module: nn.Module, optimizer: Any, scheduler: Any, cfg: TrainingSettings, world: int
) -> Any:
    """A DeepSpeed ZeRO engine around ``module``, driving the given torch optimiser and
    schedule (on CPU or GPU, as ``cfg.scaling`` says)."""
    os.environ.setdefault("DS_ACCELERATOR", "cuda" if cfg.scaling.use_gpu else "cpu")
    import deepspeed

    deepspeed.init_distributed(dist_backend="nccl" if cfg.scaling.use_gpu else "gloo")
    zero: dict[str, Any] = {"stage": cfg.deepspeed.zero_stage}
    if cfg.deepspeed.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu"}
    config = {
        "train_micro_batch_size_per_gpu": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum_steps,
        "train_batch_size": cfg.batch_size * cfg.grad_accum_steps * world,
        "gradient_clipping": cfg.grad_clip or 0.0,
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    # Passing a torch optimizer avoids compiling DeepSpeed's fused/CPU Adam ops on CPU machines.
    engine, _, _, _ = deepspeed.initialize(
        model=module, optimizer=optimizer, lr_scheduler=scheduler, config=config
    )
    return engine
