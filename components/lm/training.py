"""Causal language models through the `train` and `distill` components: the same loop,
Ray Train / DeepSpeed paths, checkpoints and resumes as a classifier, with a language model's
batches, objectives and metrics.

- `LMTask` (the loop's `components.training.tasks.Task`): a batch's token ids to the device,
  and the eval split's next-token cross-entropy (``val_loss``, nats per counted token),
  ``val_perplexity`` = exp(val_loss) and top-1 accuracy (``val_accuracy``), over the targets
  the mask counts, summed over workers;
- `NextTokenObjective` (`train`): the next-token cross-entropy over the counted targets, one
  mean per batch (padding and, unless ``across_documents``, each document's first token left
  out);
- `components.lm.distilling`: `distill`'s objective (kept apart, so that a `train` step's
  code fingerprint, hence its key, does not follow the KD losses).

`train_step` is what `train` calls; the data is `components.lm.streams` (held or streamed),
the checks `components.lm.train_checks`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from components.training.tasks import Batches, all_reduce
from components.training.trainer import FitResult
from orchestrator import StepContext
from schemas.kd.artifacts import ModelCheckpoint
from schemas.kd.components.training import TrainingSettings
from schemas.kd.lm import CausalLMSpec
from schemas.kd.text import TokenSequences
from schemas.kd.token_cache import TokenCache

_INTEGERS = ("x", "y", "teacher_topk_indices")


@dataclass(frozen=True)
class LMTask:
    """Token ids in, next-token metrics out (module docstring)."""

    def to_device(self, batch: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
        out = {k: v.to(device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
        for name in _INTEGERS:
            if name in out:
                out[name] = out[name].long()
        return out

    def eval_batch_size(self, batch_size: int) -> int:
        return batch_size  # (B, T, V) logits: an eval batch is as large as a training one

    @torch.no_grad()
    def evaluate(
        self, student: nn.Module, data: Batches, epoch: int, device: torch.device
    ) -> dict[str, float]:
        was_training = student.training
        student.eval()
        loss_sum = correct = tokens = 0.0
        for raw in data.batches(epoch):
            batch = self.to_device(raw, device)
            mask = batch["mask"].bool()
            logits = student(batch["x"])[mask].float()
            targets = batch["y"][mask]
            loss_sum += float(F.cross_entropy(logits, targets, reduction="sum"))
            correct += float((logits.argmax(-1) == targets).sum())
            tokens += float(mask.sum())
        loss_sum, correct, tokens = all_reduce([loss_sum, correct, tokens], device)
        student.train(was_training)
        loss = loss_sum / max(tokens, 1)
        return {
            "val_accuracy": correct / max(tokens, 1),
            "val_loss": loss,
            "val_perplexity": math.exp(min(loss, 50.0)),
            "val_tokens": tokens,
        }


class NextTokenModule(nn.Module):
    """Student + next-token cross-entropy. ``forward(batch) -> (loss, {"ce": value})``."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = student

    def forward(
        self, batch: dict[str, torch.Tensor], epoch: float = 0.0, step: int = 0
    ) -> tuple[torch.Tensor, dict[str, float]]:
        mask = batch["mask"].bool()
        logits = self.student(batch["x"])
        loss = F.cross_entropy(logits[mask].float(), batch["y"][mask])
        return loss, {"ce": float(loss.detach())}

    def on_step_end(self, loss_value: float) -> None:
        """Nothing adapts between steps."""


@dataclass(frozen=True)
class NextTokenObjective:
    def build(self, student: nn.Module, total_steps: int, store: Any) -> NextTokenModule:
        return NextTokenModule(student)


def fit_lm(
    ctx: StepContext,
    settings: TrainingSettings,
    spec: CausalLMSpec,
    sequences: TokenSequences,
    objective: Any,
    *,
    cache: TokenCache | None,
    init: ModelCheckpoint | None,
    resume: str,
) -> FitResult:
    from components.lm.streams import prepare_data
    from components.training.loop import LoopSpec
    from components.training.trainer import fit, steps_per_epoch

    data = prepare_data(ctx.store, sequences, settings, cache)
    rows = sequences.splits["train"].sequences
    loop = LoopSpec(
        model=spec,
        training=settings,
        objective=objective,
        steps_per_epoch=steps_per_epoch(rows, settings),
        store=ctx.store,
        init=init,
        task=LMTask(),
    )
    return fit(ctx, loop, data, resume=resume)


def train_language_model(
    ctx: StepContext,
    settings: TrainingSettings,
    spec: CausalLMSpec,
    sequences: TokenSequences,
    *,
    init: ModelCheckpoint | None = None,
    resume: str = "loop",
) -> FitResult:
    """Next-token training of ``spec`` (fitted to the sequences' tokenizer) on ``sequences``."""
    return fit_lm(
        ctx, settings, spec, sequences, NextTokenObjective(), cache=None, init=init, resume=resume
    )


# -- the steps' calls ------------------------------------------------------------------------
def checked_spec(spec: Any, data: Any) -> CausalLMSpec:
    """``spec`` fitted to the sequences, or a ValueError when the data and the model are of
    different kinds (`components.lm.train_checks.data_kind_problem`)."""
    from components.lm.train_checks import data_kind_problem, fit_to_sequences

    problem = data_kind_problem(spec, isinstance(data, TokenSequences), "`data`")
    if problem:
        raise ValueError(problem)
    return fit_to_sequences(spec, data)


def export_lm(ctx: StepContext, spec: CausalLMSpec, result: FitResult) -> ModelCheckpoint:
    from components.training.common import export_model

    return export_model(ctx, spec, result.student_state, result.metrics, result.history)


def train_step(
    ctx: StepContext,
    settings: TrainingSettings,
    spec: Any,
    data: Any,
    *,
    init: ModelCheckpoint | None,
) -> tuple[ModelCheckpoint, FitResult]:
    """A `train` step on token sequences: the checkpoint and the fit."""
    fitted = checked_spec(spec, data)
    result = train_language_model(ctx, settings, fitted, data, init=init)
    ctx.log(
        "trained %s: val loss %.4f (perplexity %.2f), next-token accuracy %.4f",
        *(describe_spec(fitted), result.metrics["val_loss"], result.metrics["val_perplexity"]),
        result.metrics["val_accuracy"],
    )
    return export_lm(ctx, fitted, result), result


def describe_spec(spec: CausalLMSpec) -> str:
    from components.lm.specs import describe

    return describe(spec)
