"""The `train` component: supervised training (teachers, experts, from-scratch baselines)."""

from __future__ import annotations

from components.training.resources import TrainingComponent
from orchestrator import StepContext
from schemas.engine.pipeline import Resources
from schemas.kd.components.train import TrainConfig, TrainInputs, TrainOutputs


class TrainComponent(TrainingComponent[TrainConfig, TrainInputs, TrainOutputs]):
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

    def run(self, inputs: TrainInputs, ctx: StepContext) -> TrainOutputs:
        from components.training.common import export_trained, fit_spec_to_dataset
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
        model = export_trained(ctx, spec, result, data, cfg)
        return TrainOutputs(model=model, metrics=result.metrics, history=result.history)
