"""The `aggregator` component: Meta-DMoE's transformer over expert features, pre-trained."""

from __future__ import annotations

from orchestrator import Component, StepContext
from orchestrator.component import ConfigIssue, Wiring
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
    version = "2"
    Config = AggregatorConfig
    Inputs = AggregatorInputs
    Outputs = AggregatorOutputs
    default_resources = Resources(num_cpus=1)

    @classmethod
    def check_wiring(cls, config: AggregatorConfig, wiring: Wiring) -> list[ConfigIssue]:
        """A multi-domain dataset with the held-out domains (and the splits its pre-training
        reads: train and `eval_split`), and at least two experts (`components.metadmoe.checks`)."""
        from components.metadmoe.checks import metadmoe_issues

        splits = ("train",) if config.epochs else ()
        named = {"eval_split": config.eval_split} if config.epochs else {}
        return metadmoe_issues(wiring, "the aggregator", config.exclude_domains, splits, named)

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
