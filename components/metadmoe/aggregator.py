"""The `aggregator` component: Meta-DMoE's transformer over expert features, pre-trained."""

from __future__ import annotations

from orchestrator import Component, StepContext
from schemas.engine.pipeline import Resources
from schemas.kd.components.metadmoe import AggregatorConfig, AggregatorInputs, AggregatorOutputs


class AggregatorComponent(Component[AggregatorConfig, AggregatorInputs, AggregatorOutputs]):
    """Build Meta-DMoE's aggregator for the experts that never saw the held-out domains and
    pre-train it with a linear head and cross-entropy on the source domains' rows.

    Reads the experts' cached penultimate features (no expert runs). The aggregator's output
    width is the student's feature width (from the `student` checkpoint's spec). The work is
    `components.metadmoe.pretraining`.
    """

    key = "aggregator"
    version = "1"
    Config = AggregatorConfig
    Inputs = AggregatorInputs
    Outputs = AggregatorOutputs
    default_resources = Resources(num_cpus=1)

    def run(self, inputs: AggregatorInputs, ctx: StepContext) -> AggregatorOutputs:
        from components.metadmoe.checkpoints import save_aggregator
        from components.metadmoe.pretraining import pretrained_aggregator

        cfg = self.config
        result = pretrained_aggregator(ctx, cfg, inputs)
        ref = save_aggregator(
            ctx,
            "aggregator",
            result.aggregator,
            dropout=cfg.dropout,
            expert_versions=[c.teacher_version for c in result.caches],
            expert_domains=[list(c.teacher_domains) for c in result.caches],
            metrics=result.metrics,
        )
        return AggregatorOutputs(aggregator=ref, metrics=result.metrics)
