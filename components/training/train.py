"""The `train` component: supervised training (teachers, experts, from-scratch baselines)."""

from __future__ import annotations

from orchestrator import Component, StepContext
from schemas.engine.pipeline import Resources
from schemas.kd.components.train import TrainConfig, TrainInputs, TrainOutputs


class TrainComponent(Component[TrainConfig, TrainInputs, TrainOutputs]):
    """Train a zoo model with cross-entropy on a dataset's train split.

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
    def task_resources(cls, config: TrainConfig) -> Resources:
        from components.training.resources import task_resources

        return task_resources(config)

    @classmethod
    def resource_demand(cls, config: TrainConfig) -> dict[str, float]:
        from components.training.resources import worker_demand

        return worker_demand(config)

    @classmethod
    def task_retries(cls, config: TrainConfig) -> int:
        return config.scaling.max_failures if config.runs_in_process() else 0

    def run(self, inputs: TrainInputs, ctx: StepContext) -> TrainOutputs:
        from components.training.common import export_model, fit_spec_to_dataset, trained_domains
        from components.training.data import prepare_data
        from components.training.loop import LoopSpec
        from components.training.supervised import SupervisedObjective
        from components.training.trainer import fit, steps_per_epoch

        cfg, data = self.config, inputs.data
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
        model = export_model(
            ctx,
            spec,
            result.student_state,
            result.metrics,
            result.history,
            trained_domains(data, cfg),
        )
        return TrainOutputs(model=model, metrics=result.metrics, history=result.history)
