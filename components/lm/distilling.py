"""`distill` on token sequences: the step's losses over the counted tokens as rows
(`components.losses.token_rows`), the teacher's tensors from the cache's columns (held or
streamed with the sequences, `components.lm.streams`), or from teachers run online (their
logits: dense targets; several are fused by ``teacher_weights``). The loop, task and export are
`components.lm.training`'s."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from components.lm.training import checked_spec, describe_spec, export_lm, fit_lm
from components.training.trainer import FitResult
from orchestrator import StepContext
from schemas.kd.artifacts import ModelCheckpoint
from schemas.kd.components.distill import DistillConfig
from schemas.kd.lm import CausalLMSpec
from schemas.kd.losses import LossSpec
from schemas.kd.text import TokenSequences
from schemas.kd.token_cache import TokenCache


@dataclass
class TokenDistillObjective:
    """The losses of a `distill` step over tokens; the teacher from the batch's cache columns
    or from ``online_teachers`` (causal LM checkpoints, frozen)."""

    losses: list[LossSpec]
    vocab_size: int
    online_teachers: list[ModelCheckpoint] = field(default_factory=list)
    teacher_weights: list[float] | None = None

    def build(self, student: nn.Module, total_steps: int, store: Any) -> TokenDistillModule:
        return TokenDistillModule(student, self, total_steps, store)


class TokenDistillModule(nn.Module):
    """Student + loss terms (TAID's state among them) + online teachers in one module, as the
    classifier's `TrainModule`: DDP, DeepSpeed and checkpoints see them all."""

    def __init__(
        self, student: nn.Module, spec: TokenDistillObjective, total_steps: int, store: Any
    ) -> None:
        super().__init__()
        from components.artifacts.checkpoints import load_model
        from components.losses import build_loss

        self.student = student
        self.loss = build_loss(spec.losses, num_classes=spec.vocab_size, total_steps=total_steps)
        self.teachers = nn.ModuleList()
        for checkpoint in spec.online_teachers:
            teacher, _ = load_model(store, checkpoint)
            self.teachers.append(teacher.eval().requires_grad_(False))
        weights = spec.teacher_weights
        self.register_buffer(
            "teacher_weights",
            torch.tensor(weights, dtype=torch.float32) if weights else torch.zeros(0),
            persistent=False,
        )

    def kd_batch(self, batch: dict[str, torch.Tensor], epoch: float, step: int) -> Any:
        from components.losses import KDBatch, token_rows

        mask = batch["mask"].bool()
        teacher = {k: v for k, v in batch.items() if k.startswith("teacher_")}
        if len(self.teachers):
            with torch.no_grad():
                outs = [t(batch["x"]) for t in self.teachers]
            teacher = {"teacher_logits": outs[0] if len(outs) == 1 else torch.stack(outs, 2)}
        rows = token_rows(mask, student_logits=self.student(batch["x"]), labels=batch["y"])
        for name, value in teacher.items():
            kept = value[mask]  # several online teachers: (N, M, V) -> (M, N, V)
            rows[name] = (
                kept.transpose(0, 1) if kept.dim() == 3 and len(self.teachers) > 1 else kept
            )
        kd = KDBatch(**rows, epoch=epoch, step=step)  # type: ignore[arg-type]
        weights = self.get_buffer("teacher_weights")
        if weights.numel():
            kd.teacher_weights = weights
        return kd

    def forward(
        self, batch: dict[str, torch.Tensor], epoch: float = 0.0, step: int = 0
    ) -> tuple[torch.Tensor, dict[str, float]]:
        result: tuple[torch.Tensor, dict[str, float]] = self.loss(self.kd_batch(batch, epoch, step))
        return result

    def on_step_end(self, loss_value: float) -> None:
        self.loss.on_step_end(loss_value)

    def train(self, mode: bool = True) -> TokenDistillModule:
        super().train(mode)
        for teacher in self.teachers:  # teachers stay in eval mode (no dropout)
            teacher.eval()
        return self


def distill_language_model(
    ctx: StepContext,
    cfg: DistillConfig,
    spec: CausalLMSpec,
    sequences: TokenSequences,
    *,
    caches: list[TokenCache],
    teachers: list[ModelCheckpoint],
    init: ModelCheckpoint | None = None,
    resume: str = "loop",
) -> FitResult:
    """``cfg``'s losses over the tokens of ``sequences``, the teacher from its token cache or
    run online; the inputs are checked first (`components.lm.train_checks.distill_problems`)."""
    from components.lm.train_checks import distill_problems

    problems = distill_problems(cfg, ctx.store, sequences, caches, teachers)
    if problems:
        raise ValueError("; ".join(problems))
    assert spec.vocab_size is not None
    objective = TokenDistillObjective(
        losses=list(cfg.losses),
        vocab_size=spec.vocab_size,
        online_teachers=list(teachers),
        teacher_weights=cfg.normalised_teacher_weights(),
    )
    cache = caches[0] if caches else None
    return fit_lm(ctx, cfg, spec, sequences, objective, cache=cache, init=init, resume=resume)


def distill_step(
    ctx: StepContext,
    cfg: DistillConfig,
    spec: Any,
    data: Any,
    *,
    logits: list[Any],
    teachers: list[ModelCheckpoint],
    init: ModelCheckpoint | None,
) -> tuple[ModelCheckpoint, FitResult]:
    """A `distill` step on token sequences: the checkpoint and the fit."""
    others = [c for c in logits if not isinstance(c, TokenCache)]
    if others:
        raise ValueError(
            "`logits` holds a classifier's logit shards (teacher_inference), but the data is "
            "token sequences: connect the teacher's lm_inference `cache`"
        )
    fitted = checked_spec(spec, data)
    result = distill_language_model(
        ctx, cfg, fitted, data, caches=list(logits), teachers=teachers, init=init
    )
    ctx.log(
        "distilled %s: val loss %.4f (perplexity %.2f)",
        describe_spec(fitted),
        result.metrics["val_loss"],
        result.metrics["val_perplexity"],
    )
    return export_lm(ctx, fitted, result), result
