"""The `aggregator` component: Meta-DMoE's transformer over expert features, pre-trained."""

from __future__ import annotations

from orchestrator import Component, StepContext
from schemas.engine.pipeline import Resources
from schemas.kd.components.metadmoe import AggregatorConfig, AggregatorInputs, AggregatorOutputs


class AggregatorComponent(Component[AggregatorConfig, AggregatorInputs, AggregatorOutputs]):
    """Build Meta-DMoE's aggregator for the experts that never saw the held-out domains and
    pre-train it with a linear head and cross-entropy on the source domains' rows.

    Reads the experts' cached penultimate features (no expert runs). The aggregator's output
    width is the student's feature width (from the `student` checkpoint's spec).
    """

    key = "aggregator"
    version = "1"
    Config = AggregatorConfig
    Inputs = AggregatorInputs
    Outputs = AggregatorOutputs
    default_resources = Resources(num_cpus=1)

    def run(self, inputs: AggregatorInputs, ctx: StepContext) -> AggregatorOutputs:
        import torch
        import torch.nn.functional as F

        from components.metadmoe.checkpoints import save_aggregator
        from components.metadmoe.data import load_expert_rows
        from components.metadmoe.experts import usable_caches
        from components.metadmoe.transformer import Aggregator, aggregator_head
        from components.models.zoo import build_model

        cfg, data = self.config, inputs.data
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
            val = load_expert_rows(ctx.store, data, "val", caches, cfg.exclude_domains)
            head = aggregator_head(aggregator, data.num_classes)
            params = [*aggregator.parameters(), *head.parameters()]
            optimizer = torch.optim.Adam(params, lr=cfg.lr)
            schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.lr_decay)
            generator = torch.Generator().manual_seed(cfg.seed)
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
            metrics.update(val_accuracy=accuracy, train_loss=float(loss.detach()))
        ref = save_aggregator(
            ctx,
            "aggregator",
            aggregator.eval(),
            dropout=cfg.dropout,
            expert_versions=[c.teacher_version for c in caches],
            expert_domains=[list(c.teacher_domains) for c in caches],
            metrics=metrics,
        )
        return AggregatorOutputs(aggregator=ref, metrics=metrics)
