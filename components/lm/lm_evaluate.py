"""The `lm_evaluate` component: causal LMs scored on a split of token sequences, a report."""

from __future__ import annotations

from orchestrator import Component, StepContext
from orchestrator.component import ConfigIssue, Wiring
from schemas.engine.pipeline import Resources
from schemas.kd.components.lm_evaluate import (
    LMEvaluateConfig,
    LMEvaluateInputs,
    LMEvaluateOutputs,
)


class LMEvaluate(Component[LMEvaluateConfig, LMEvaluateInputs, LMEvaluateOutputs]):
    """Perplexity (exp of the mean next-token NLL over the split's counted target tokens),
    next-token top-1, top-1 agreement with the teacher and KL(teacher || model) per token,
    parameters and tokens/s of forward passes at batch 1 and at a batch of sequences, for the
    teacher and every student; greedy continuations of a few prompts, decoded; per recipe
    (models sharing a name: seeds) the mean perplexity with a 95% t interval; chosen pairs of
    recipes compared by log-perplexity over models of the same seed (bootstrap and paired t
    intervals, a verdict) or, one model each, over tokens and rows
    (`components.lm.assessment`). Streams the split (`components.lm.evaluation`).

    Writes `report.md`, `report.json` and `perplexity.png`; the `LMEvalReport` holds the
    headline numbers (`kdorch show`).
    """

    key = "lm_evaluate"
    version = "1"
    Config = LMEvaluateConfig
    Inputs = LMEvaluateInputs
    Outputs = LMEvaluateOutputs
    default_resources = Resources(num_cpus=1)
    deterministic = False  # tokens/s are measured

    @classmethod
    def check_wiring(cls, config: LMEvaluateConfig, wiring: Wiring) -> list[ConfigIssue]:
        from components.lm.lm_checks import evaluate_wiring_issues

        return evaluate_wiring_issues(config, wiring)

    def run(self, inputs: LMEvaluateInputs, ctx: StepContext) -> LMEvaluateOutputs:
        from components.lm.assessment import assess

        report = assess(
            ctx, self.config, inputs.sequences, inputs.tokenizer, inputs.models, inputs.teacher
        )
        return LMEvaluateOutputs(report=report)
