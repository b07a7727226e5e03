"""The `lm_inference` component: a teacher LM's next-token distributions over token
sequences, as a reusable cache."""

from __future__ import annotations

from components.inference.actor_pool import PoolResources
from orchestrator import Component, StepContext
from orchestrator.component import ConfigIssue, Wiring
from schemas.engine.pipeline import Resources
from schemas.kd.components.lm_inference import (
    LMInferenceConfig,
    LMInferenceInputs,
    LMInferenceOutputs,
)


class LMInference(
    PoolResources, Component[LMInferenceConfig, LMInferenceInputs, LMInferenceOutputs]
):
    """Run a teacher LM over `pack_tokens` sequences and keep, per token, its k most likely
    next tokens with their log-probabilities and the rest mass (or, `encoding: dense`, every
    log-probability), one shard row per sequence row, aligned by `row_id`
    (`components.lm.teacher`; the layout: `schemas.kd.token_cache`).

    The teacher runs once; every student, seed and trial that asks for the same teacher on the
    same sequences reuses the cache (its key: the teacher's and the sequences' data versions
    and this config). Beside `teacher_inference` rather than inside it: its inputs are token
    sequences, not a dataset, its rows are sequences of distributions, and its checks are a
    tokenizer's; the two share the shard writer and the actor pool
    (`components.inference.actor_pool`). One actor (the default) runs in the step's own
    process; more run a Ray Data actor pool, on GPUs with `gpus_per_actor`.
    """

    key = "lm_inference"
    version = "1"
    Config = LMInferenceConfig
    Inputs = LMInferenceInputs
    Outputs = LMInferenceOutputs
    default_resources = Resources(num_cpus=1)

    @classmethod
    def check_wiring(cls, config: LMInferenceConfig, wiring: Wiring) -> list[ConfigIssue]:
        from components.lm.checks import inference_wiring_issues
        from components.lm.lm_checks import listed_split_issues

        issues = inference_wiring_issues(config.top_k(), wiring)
        return issues + listed_split_issues("splits", config.splits, wiring)

    def run(self, inputs: LMInferenceInputs, ctx: StepContext) -> LMInferenceOutputs:
        from components.lm.teacher import write_cache

        return LMInferenceOutputs(
            cache=write_cache(ctx, self.config, inputs.teacher, inputs.sequences)
        )
