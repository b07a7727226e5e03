"""The `train` component: supervised training (teachers, experts, from-scratch baselines)."""

from __future__ import annotations

from typing import Any

from components.training.resources import TrainingComponent
from orchestrator import StepContext
from orchestrator.component import ConfigIssue, Wiring
from schemas.engine.pipeline import Resources
from schemas.kd.components.train import TrainConfig, TrainInputs, TrainOutputs
from schemas.kd.lm import CausalLMSpec
from schemas.kd.text import TokenSequences


class TrainComponent(TrainingComponent[TrainConfig, TrainInputs, TrainOutputs]):
    """Train a zoo model with cross-entropy on a dataset's train split, or a causal language
    model (`arch: causal_lm`) with next-token cross-entropy on token sequences
    (`components.lm.training`).

    One worker (the default) trains inside the step's own process; `scaling.num_workers > 1`
    or `strategy: deepspeed` use Ray Train (DDP or ZeRO). Either way a crashed worker resumes
    from the last checkpoint (`scaling.max_failures`, `checkpoint_every_s`).
    """

    key = "train"
    version = "2"
    Config = TrainConfig
    Inputs = TrainInputs
    Outputs = TrainOutputs
    default_resources = Resources(num_cpus=1)
    deterministic = False  # DDP reductions and thread scheduling may differ run to run

    @classmethod
    def check_wiring(cls, config: TrainConfig, wiring: Wiring) -> list[ConfigIssue]:
        """The dataset's splits and domains; the model's kind against the data's, and a
        language model's vocabulary and positions against the sequences'."""
        from components.lm.train_checks import lm_wiring_issues

        return super().check_wiring(config, wiring) + lm_wiring_issues(
            config.model, wiring, "model", config.eval_split
        )

    @classmethod
    def promise(cls, config: TrainConfig, wiring: Wiring) -> dict[str, Any]:
        from components.lm.train_checks import model_promise

        return model_promise(config.model, wiring)

    def run(self, inputs: TrainInputs, ctx: StepContext) -> TrainOutputs:
        from components.training.common import export_trained, fit_spec_to_dataset
        from components.training.data import prepare_data
        from components.training.loop import LoopSpec
        from components.training.supervised import SupervisedObjective
        from components.training.trainer import fit, steps_per_epoch

        cfg, data = self.config, inputs.data
        if isinstance(data, TokenSequences) or isinstance(cfg.model, CausalLMSpec):
            from components.lm.training import train_step

            model, fitted = train_step(ctx, cfg, cfg.model, data, init=inputs.init)
            return TrainOutputs(model=model, metrics=fitted.metrics, history=fitted.history)
        spec = fit_spec_to_dataset(cfg.model, data)
        loop = LoopSpec(
            model=spec,
            training=cfg,
            objective=SupervisedObjective(),
            steps_per_epoch=steps_per_epoch(data.splits["train"], cfg),
            store=ctx.store,
            init=inputs.init,
        )
        result = fit(ctx, loop, prepare_data(ctx.store, data, cfg))
        ctx.log("trained %s: val accuracy %.4f", spec.arch, result.metrics["val_accuracy"])
        model = export_trained(ctx, spec, result, data, cfg)
        return TrainOutputs(model=model, metrics=result.metrics, history=result.history)
