"""The `meta_distill` step's training: Meta-DMoE's meta-distillation loop over one-domain
batches, source-domain validation as at test time, and the epoch kept (`meta_distill`).

Each batch comes from one source domain: its support rows (labels unused) get the target
A(experts' features) with that domain's expert hidden, one inner step moves the student's
feature extractor towards it, and the adapted student's cross-entropy on the query rows trains
the student and, through the inner step, the aggregator (`meta.meta_step`). Expert features
come from their caches; no expert runs.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import torch

from components.artifacts.checkpoints import load_model
from components.metadmoe.checkpoints import load_aggregator
from components.metadmoe.data import ExpertRows, domain_batches, load_expert_rows
from components.metadmoe.experts import usable_caches
from components.metadmoe.masking import expert_mask
from components.metadmoe.meta import (
    FastWeights,
    adapt_entropy,
    eval_mode,
    feature_parameters,
    inner_step,
    meta_step,
    predict,
)
from components.metadmoe.transformer import Aggregator
from components.models.zoo import KDModel
from orchestrator import StepContext
from schemas.kd.artifacts import AggregatorCheckpoint, LogitShards, ModelCheckpoint
from schemas.kd.components.metadmoe import MetaDistillConfig, MetaDistillInputs


@dataclass
class MetaDistilled:
    """The kept epoch's student and aggregator, the experts they were trained with (in the
    aggregator's order), the per-epoch history and the final metrics."""

    student: KDModel
    aggregator: Aggregator
    experts: list[ModelCheckpoint]
    history: list[dict[str, Any]]
    metrics: dict[str, float]


@dataclass
class _Optimisers:
    """Adam on the student and on the aggregator, both decayed once per epoch."""

    student: torch.optim.Optimizer
    aggregator: torch.optim.Optimizer
    schedules: list[torch.optim.lr_scheduler.LRScheduler]

    @classmethod
    def build(cls, cfg: MetaDistillConfig, student: KDModel, aggregator: Aggregator) -> _Optimisers:
        opt_s = torch.optim.Adam(student.parameters(), lr=cfg.student_lr)
        opt_a = torch.optim.Adam(aggregator.parameters(), lr=cfg.aggregator_lr)
        schedules: list[torch.optim.lr_scheduler.LRScheduler] = [
            torch.optim.lr_scheduler.ExponentialLR(o, gamma=cfg.lr_decay) for o in (opt_s, opt_a)
        ]
        return cls(opt_s, opt_a, schedules)


def meta_distill(
    ctx: StepContext, cfg: MetaDistillConfig, inputs: MetaDistillInputs
) -> MetaDistilled:
    """Meta-distil ``inputs.experts`` into ``inputs.student`` for ``cfg.epochs`` epochs and keep
    the best epoch by adapted source-validation accuracy (or the last, ``select: last``). With
    ``epochs: 0`` the student and aggregator are kept as given and only validated (a control)."""
    data = inputs.data
    torch.set_num_threads(max(1, int(ctx.resources.num_cpus or 1)))
    caches = ordered_caches(
        usable_caches(inputs.features, data, cfg.exclude_domains), inputs.aggregator
    )
    experts = experts_for(caches, inputs.experts)
    train = load_expert_rows(ctx.store, data, "train", caches, cfg.exclude_domains)
    val = load_expert_rows(ctx.store, data, cfg.eval_split, caches, cfg.exclude_domains)
    expert_domains = [data.domain_ids(list(c.teacher_domains)) for c in caches]
    student, _ = load_model(ctx.store, inputs.student)
    aggregator = load_aggregator(ctx.store, inputs.aggregator)
    torch.manual_seed(cfg.seed)
    optimisers = _Optimisers.build(cfg, student, aggregator)
    history: list[dict[str, Any]] = []
    if not cfg.epochs:  # the control without meta-training: validate the inputs as they are
        history.append({"epoch": -1, **validate(cfg, student, aggregator, val, expert_domains)})
    best: tuple[float, Any, Any] = (
        history[0]["val_accuracy"] if history else -1.0,
        copy.deepcopy(student.state_dict()),
        copy.deepcopy(aggregator.state_dict()),
    )
    for epoch in range(cfg.epochs):
        started = time.perf_counter()
        record = train_epoch(cfg, student, aggregator, train, expert_domains, optimisers, epoch)
        record.update(validate(cfg, student, aggregator, val, expert_domains))
        record.update(epoch=epoch, seconds=time.perf_counter() - started)
        history.append(record)
        ctx.log(
            "epoch %d/%d: query CE %.4f, source val %.4f adapted (%.4f plain)",
            epoch + 1,
            cfg.epochs,
            record["train_outer_ce"],
            record["val_accuracy"],
            record["val_plain_accuracy"],
        )
        if record["val_accuracy"] > best[0] or cfg.select == "last":
            best = (
                record["val_accuracy"],
                copy.deepcopy(student.state_dict()),
                copy.deepcopy(aggregator.state_dict()),
            )
    student.load_state_dict(best[1])
    aggregator.load_state_dict(best[2])
    metrics = {k: float(v) for k, v in history[-1].items() if isinstance(v, int | float)} | {
        "best_val_accuracy": float(best[0]),
        "experts": float(len(caches)),
    }
    metrics.pop("seconds", None)
    return MetaDistilled(student, aggregator, experts, history, metrics)


def train_epoch(
    cfg: MetaDistillConfig,
    student: KDModel,
    aggregator: Aggregator,
    train: ExpertRows,
    expert_domains: list[list[int]],
    optimisers: _Optimisers,
    epoch: int,
) -> dict[str, float]:
    """One epoch of meta-steps over one-domain batches; the mean of each logged part
    (``train_inner_mse``, ``train_outer_ce``, ``train_accuracy``)."""
    sums = {"inner_mse": 0.0, "outer_ce": 0.0, "accuracy": 0.0}
    steps = 0
    for rows in domain_batches(train.domain, cfg.batch_size, cfg.support_size + 1, cfg.seed, epoch):
        support, query = rows[: cfg.support_size], rows[cfg.support_size :]
        out = meta_step(
            student,
            aggregator,
            train.features[support],
            expert_mask(train.domain[support], expert_domains) if cfg.mask else None,
            train.x[support],
            train.x[query],
            train.y[query],
            inner_lr=cfg.inner_lr,
            first_order=cfg.first_order,
        )
        if not torch.isfinite(out.loss):
            raise FloatingPointError(
                f"the meta-distillation loss became {float(out.loss)} at epoch {epoch} "
                f"(step {steps}; inner MSE {float(out.inner_mse)}): lower inner_lr or "
                "the learning rates; nothing was committed"
            )
        optimisers.student.zero_grad(set_to_none=True)
        optimisers.aggregator.zero_grad(set_to_none=True)
        out.loss.backward()
        optimisers.student.step()
        optimisers.aggregator.step()
        for name, value in out.metrics().items():
            if name in sums:
                sums[name] += value
        steps += 1
    for schedule in optimisers.schedules:
        schedule.step()
    return {f"train_{k}": v / max(steps, 1) for k, v in sums.items()}


def validate(
    cfg: MetaDistillConfig,
    student: KDModel,
    aggregator: Aggregator,
    val: ExpertRows,
    expert_domains: list[list[int]],
) -> dict[str, float]:
    """Source-domain validation as at test time: each domain adapts on its first
    ``support_size`` rows (`adapted_weights`, its own expert hidden: it would not exist for a
    target); ``val_accuracy`` adapted, ``val_plain_accuracy`` without adaptation."""
    correct = plain = 0.0
    for domain in torch.unique(val.domain).tolist():
        rows = torch.nonzero(val.domain == domain).flatten()
        fast = adapted_weights(
            cfg, student, aggregator, val.take(rows[: cfg.support_size]), expert_domains
        )
        correct += float((predict(student, fast, val.x[rows]).argmax(1) == val.y[rows]).sum())
        with eval_mode(student), torch.no_grad():
            plain += float((student(val.x[rows]).argmax(1) == val.y[rows]).sum())
    return {
        "val_accuracy": correct / max(len(val), 1),
        "val_plain_accuracy": plain / max(len(val), 1),
    }


def adapted_weights(
    cfg: MetaDistillConfig,
    student: KDModel,
    aggregator: Aggregator,
    support: ExpertRows,
    expert_domains: list[list[int]],
) -> FastWeights:
    """The student's feature weights adapted on ``support`` (unlabeled) as the adaptive model
    will adapt: the aggregator's target of the cached expert features with the support's own
    domain's expert hidden, or (``adaptation: entropy``) the entropy step."""
    if cfg.adaptation == "entropy":
        return adapt_entropy(student, support.x, cfg.inner_lr)
    with eval_mode(student, aggregator), torch.enable_grad():
        with torch.no_grad():
            target = aggregator(support.features, expert_mask(support.domain, expert_domains))
        weights = {
            n: p.detach().clone().requires_grad_() for n, p in feature_parameters(student).items()
        }
        fast, _ = inner_step(student, weights, support.x, target, cfg.inner_lr, create_graph=False)
    return {n: w.detach() for n, w in fast.items()}


def ordered_caches(
    caches: list[LogitShards], aggregator: AggregatorCheckpoint
) -> list[LogitShards]:
    """The caches in the order the aggregator was built for (its expert versions)."""
    by_teacher = {c.teacher_version: c for c in caches}
    wanted = aggregator.expert_versions
    missing = [v[:12] for v in wanted if v not in by_teacher]
    if missing or len(wanted) != len(caches):
        raise ValueError(
            f"the aggregator was built for experts {[v[:12] for v in wanted]}, but the "
            f"usable feature caches come from {[c.teacher_version[:12] for c in caches]}: "
            "give meta_distill the same experts and held-out domains as the aggregator"
        )
    return [by_teacher[v] for v in wanted]


def experts_for(caches: list[LogitShards], experts: list[ModelCheckpoint]) -> list[ModelCheckpoint]:
    """The expert checkpoint behind each cache, in the caches' order."""
    by_version = {e.data_version: e for e in experts}
    missing = [c.path for c in caches if c.teacher_version not in by_version]
    if missing:
        raise ValueError(
            f"no expert checkpoint among `experts` produced the feature caches {missing}: "
            "connect the same experts whose features you cached"
        )
    return [by_version[c.teacher_version] for c in caches]
