"""The `aggregator` step's work: build Meta-DMoE's aggregator for the usable experts and, when
asked, pre-train it with a linear head and cross-entropy on the source domains' rows
(`pretrained_aggregator`). Expert features come from their caches; no expert runs.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from components.metadmoe.data import ExpertRows, load_expert_rows
from components.metadmoe.experts import usable_caches
from components.metadmoe.transformer import Aggregator, aggregator_head
from components.models.zoo import build_model
from orchestrator import StepContext
from schemas.kd.artifacts import LogitShards
from schemas.kd.components.metadmoe import AggregatorConfig, AggregatorInputs


@dataclass
class PretrainedAggregator:
    """The aggregator (in eval mode), the expert caches it reads, in order, and its metrics."""

    aggregator: Aggregator
    caches: list[LogitShards]
    metrics: dict[str, float]


def pretrained_aggregator(
    ctx: StepContext, cfg: AggregatorConfig, inputs: AggregatorInputs
) -> PretrainedAggregator:
    """An aggregator from the experts that never saw ``cfg.exclude_domains`` to the student's
    feature width, pre-trained for ``cfg.epochs`` epochs (none when 0)."""
    data = inputs.data
    torch.set_num_threads(max(1, int(ctx.resources.num_cpus or 1)))
    caches = usable_caches(inputs.features, data, cfg.exclude_domains)
    student_dim = build_model(inputs.student.model).feature_dim
    torch.manual_seed(cfg.seed)
    aggregator = Aggregator(
        int(caches[0].feature_dim or 0),
        student_dim,
        num_heads=cfg.num_heads,
        dropout=cfg.dropout,
    )
    metrics: dict[str, float] = {"experts": float(len(caches))}
    if cfg.epochs:
        train = load_expert_rows(ctx.store, data, "train", caches, cfg.exclude_domains)
        val = load_expert_rows(ctx.store, data, cfg.eval_split, caches, cfg.exclude_domains)
        metrics.update(pretrain(ctx, cfg, aggregator, train, val, data.num_classes))
    return PretrainedAggregator(aggregator.eval(), caches, metrics)


def pretrain(
    ctx: StepContext,
    cfg: AggregatorConfig,
    aggregator: Aggregator,
    train: ExpertRows,
    val: ExpertRows,
    num_classes: int,
) -> dict[str, float]:
    """CE pre-training through a throw-away head (`aggregator_head`), Adam decayed per epoch,
    all experts visible. Keeps the epoch ``cfg.select`` names (best source accuracy on
    ``val``, or the last) and returns its ``val_accuracy``, ``train_loss`` and ``best_epoch``
    (1-based)."""
    head = aggregator_head(aggregator, num_classes)
    params = [*aggregator.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(params, lr=cfg.lr)
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.lr_decay)
    generator = torch.Generator().manual_seed(cfg.seed)
    kept: tuple[float, float, int, dict[str, torch.Tensor]] | None = None
    for epoch in range(cfg.epochs):
        aggregator.train()
        head.train()
        order = torch.randperm(len(train), generator=generator)
        for start in range(0, len(order), cfg.batch_size):
            rows = order[start : start + cfg.batch_size]
            loss = F.cross_entropy(head(aggregator(train.features[rows])), train.y[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()
        aggregator.eval()
        head.eval()
        with torch.no_grad():
            predicted = head(aggregator(val.features)).argmax(1)
        accuracy = float((predicted == val.y).float().mean())
        ctx.log("epoch %d/%d: source val accuracy %.4f", epoch + 1, cfg.epochs, accuracy)
        if kept is None or cfg.select == "last" or accuracy > kept[0]:
            state = copy.deepcopy(aggregator.state_dict())
            kept = (accuracy, float(loss.detach()), epoch + 1, state)
    assert kept is not None  # cfg.epochs >= 1 here
    aggregator.load_state_dict(kept[3])
    return {"val_accuracy": kept[0], "train_loss": kept[1], "best_epoch": float(kept[2])}
