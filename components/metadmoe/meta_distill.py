"""The `meta_distill` component: Meta-DMoE's meta-distillation and its adaptive student."""

from __future__ import annotations

from orchestrator import Component, StepContext
from orchestrator.component import ConfigIssue, Wiring
from schemas.engine.pipeline import Resources
from schemas.kd.artifacts import Adaptation
from schemas.kd.components.metadmoe import MetaDistillConfig, MetaDistillInputs, MetaDistillOutputs


class MetaDistill(Component[MetaDistillConfig, MetaDistillInputs, MetaDistillOutputs]):
    """Meta-distil the experts into the student, second order (Zhong et al., NeurIPS 2022).

    Each batch comes from one source domain: its support rows (labels unused) get the target
    A(experts' features), with the expert of that domain hidden; one inner step moves the
    student's feature extractor towards it; the adapted student's cross-entropy on the query
    rows trains the student and, through the inner step, the aggregator. Expert features come
    from their caches. Outputs the student as it is and as an adaptive model that adapts to each
    test domain on an unlabeled batch (`evaluate` runs the adaptation). The training is
    `components.metadmoe.meta_distillation`.
    """

    key = "meta_distill"
    version = "2"
    Config = MetaDistillConfig
    Inputs = MetaDistillInputs
    Outputs = MetaDistillOutputs
    default_resources = Resources(num_cpus=1)
    deterministic = False

    @classmethod
    def check_wiring(cls, config: MetaDistillConfig, wiring: Wiring) -> list[ConfigIssue]:
        """A multi-domain dataset with the held-out domains, the train split and
        `eval_split`, and at least two experts (`components.metadmoe.checks`)."""
        from components.metadmoe.checks import metadmoe_issues

        return metadmoe_issues(
            wiring,
            "meta_distill",
            config.exclude_domains,
            ("train",),
            {"eval_split": config.eval_split},
        )

    def run(self, inputs: MetaDistillInputs, ctx: StepContext) -> MetaDistillOutputs:
        from components.artifacts.checkpoints import save_model
        from components.metadmoe.checkpoints import ENTROPY_KIND, save_adaptive
        from components.metadmoe.meta_distillation import meta_distill

        cfg, data = self.config, inputs.data
        result = meta_distill(ctx, cfg, inputs)
        sources = [d for d in data.domains if d not in cfg.exclude_domains]
        model = save_model(ctx, "model", result.student, metrics=result.metrics)
        model = model.model_copy(update={"trained_domains": sources})
        adaptive = save_adaptive(
            ctx,
            "adaptive",
            result.student,
            result.aggregator,
            inputs.aggregator,
            result.experts,
            Adaptation(support_size=cfg.support_size, inner_lr=cfg.inner_lr, steps=1),
            result.metrics,
            sources,
            kind=ENTROPY_KIND if cfg.adaptation == "entropy" else "meta_dmoe",
        )
        return MetaDistillOutputs(
            model=model, adaptive=adaptive, metrics=result.metrics, history=result.history
        )
