"""The `distill` component: student training on teacher outputs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from orchestrator import Component, StepContext
from schemas.artifacts import LogitShards
from schemas.components.distill import DistillConfig, DistillInputs, DistillOutputs
from schemas.pipeline import Resources

if TYPE_CHECKING:
    from components.training.data import TrainingData

#: What each kind of teacher input puts into a batch (names of `KDBatch` fields).
_ALWAYS = frozenset({"student_logits", "student_features", "labels"})
_DENSE = frozenset({"teacher_logits"})
_TOPK = frozenset({"teacher_topk_indices", "teacher_topk_values", "teacher_rest_mass"})
_FEATURES = frozenset({"teacher_features"})
_HOW = {
    "teacher_logits": "all of the teacher's logits: run teacher_inference without `top_k`, or "
    "connect `teachers` (online)",
    "teacher_topk_indices": "a top-k logit cache: teacher_inference with `top_k`",
    "teacher_topk_values": "a top-k logit cache: teacher_inference with `top_k`",
    "teacher_rest_mass": "a top-k logit cache: teacher_inference with `top_k`",
    "teacher_features": "teacher features: teacher_inference with `feature: penultimate`, or "
    "`teachers` (online)",
}


def provided_fields(logits: list[LogitShards], online: bool) -> frozenset[str]:
    """The batch fields the connected teacher inputs can fill."""
    if online:
        return _ALWAYS | _DENSE | _FEATURES
    if not logits:
        return _ALWAYS
    out = set(_ALWAYS)
    if all(c.top_k is None for c in logits):
        out |= _DENSE
    if all(c.top_k is not None for c in logits):
        out |= _TOPK
    if all(c.feature is not None for c in logits):
        out |= _FEATURES
    return frozenset(out)


class Distill(Component[DistillConfig, DistillInputs, DistillOutputs]):
    """Distil one or more teachers into a student with a weighted sum of KD losses.

    Teacher outputs come from logit caches (`logits`: read once, joined to the rows by row_id)
    or from teacher checkpoints run online in the training loop (`teachers`); several teachers
    are fused with `teacher_weights`. One worker trains in the step's own process; more, or
    DeepSpeed ZeRO, use Ray Train. Per-term losses are logged every epoch; a crashed worker
    resumes from the last checkpoint.
    """

    key = "distill"
    version = "2"
    Config = DistillConfig
    Inputs = DistillInputs
    Outputs = DistillOutputs
    default_resources = Resources(num_cpus=1)
    deterministic = False

    @classmethod
    def resource_demand(cls, config: DistillConfig) -> dict[str, float]:
        from components.training.resources import worker_demand

        return worker_demand(config)

    @classmethod
    def task_retries(cls, config: DistillConfig) -> int:
        return config.scaling.max_failures if config.runs_in_process() else 0

    def check_inputs(self, inputs: DistillInputs) -> None:
        """Refuse combinations that cannot work before anything trains."""
        cfg = self.config
        logits, teachers = inputs.logits or [], inputs.teachers or []
        if logits and teachers:
            raise ValueError(
                "connect either `logits` (cached teacher outputs) or `teachers` (run online), "
                "not both"
            )
        if len({c.top_k for c in logits}) > 1:
            raise ValueError(
                "the logit caches mix dense and top-k (or different k): give every teacher the "
                "same teacher_inference settings"
            )
        count = len(logits) or len(teachers)
        if cfg.teacher_weights is not None and len(cfg.teacher_weights) != count:
            raise ValueError(
                f"teacher_weights has {len(cfg.teacher_weights)} weights for {count} teachers; "
                "give one per teacher, in input order"
            )
        provided = provided_fields(logits, bool(teachers))
        for i, loss in enumerate(cfg.losses):
            missing = sorted(loss.requires() - provided)
            if missing:
                needs = "; ".join(dict.fromkeys(_HOW.get(m, m) for m in missing))
                hint = ""
                if (
                    loss.type in ("kd", "dkd", "pld", "taid", "meal")
                    and "teacher_logits" in (missing)
                    and any(c.top_k for c in logits)
                ):
                    hint = " (with a top-k cache, use `type: topk_kl`)"
                raise ValueError(f"losses[{i}] ({loss.type}) needs {needs}{hint}")

    def run(self, inputs: DistillInputs, ctx: StepContext) -> DistillOutputs:
        from components.training.data import prepare_data
        from components.training.loop import LoopSpec
        from components.training.objective import DistillObjective
        from components.training.steps import export_model, fit_spec_to_dataset
        from components.training.trainer import fit, steps_per_epoch

        cfg, data = self.config, inputs.data
        self.check_inputs(inputs)
        spec = fit_spec_to_dataset(cfg.student, data)
        logits = inputs.logits or []
        training_data = prepare_data(ctx.store, data, cfg, logits)
        kinds = {loss.type for loss in cfg.losses}
        class_means, teacher_dim = None, logits[0].feature_dim if logits else None
        if "nd" in kinds:
            class_means, teacher_dim = self.class_means(ctx, inputs, training_data)
        objective = DistillObjective(
            losses=list(cfg.losses),
            num_classes=data.num_classes,
            num_teachers=len(logits),
            teacher_weights=cfg.normalised_teacher_weights(),
            teacher_feature_dim=teacher_dim,
            class_means=class_means,
            online_teachers=list(inputs.teachers or []),
        )
        loop = LoopSpec(
            model=spec,
            training=cfg,
            objective=objective,
            steps_per_epoch=steps_per_epoch(data.splits["train"], cfg),
            store=ctx.store,
            init=inputs.init,
        )
        result = fit(ctx, loop, training_data)
        ctx.log("distilled %s: val accuracy %.4f", spec.arch, result.metrics["val_accuracy"])
        model = export_model(ctx, spec, result.student_state, result.metrics, result.history)
        return DistillOutputs(model=model, metrics=result.metrics, history=result.history)

    def class_means(
        self, ctx: StepContext, inputs: DistillInputs, data: TrainingData
    ) -> tuple[np.ndarray, int]:
        """e_c: the teachers' (fused) mean penultimate embedding per class over the train split."""
        from components.artifacts.datasets import read_split
        from components.training.data import held_columns

        weights = self.config.normalised_teacher_weights()
        if inputs.logits:
            columns = data.held.get("train") or held_columns(
                ctx.store, inputs.data, "train", inputs.logits
            )
            feats = [columns[f"t{i}_feature"].astype(np.float32) for i in range(len(inputs.logits))]
            y = columns["y"]
        else:
            split = read_split(ctx.store, inputs.data, "train")
            feats, y = self.online_features(ctx, inputs, split.x), split.y
        w = weights or [1.0 / len(feats)] * len(feats)
        fused = sum(wi * f for wi, f in zip(w, feats, strict=True))
        assert isinstance(fused, np.ndarray)
        means = np.stack([fused[y == c].mean(0) for c in range(inputs.data.num_classes)])
        return means, int(fused.shape[1])

    def online_features(
        self, ctx: StepContext, inputs: DistillInputs, x: np.ndarray
    ) -> list[np.ndarray]:
        import torch

        from components.artifacts.checkpoints import load_model

        out = []
        for checkpoint in inputs.teachers or []:
            teacher, _ = load_model(ctx.store, checkpoint)
            with torch.inference_mode():
                out.append(
                    torch.cat(
                        [
                            teacher.embed(torch.from_numpy(b))
                            for b in np.array_split(x, max(1, len(x) // 512))
                        ]
                    ).numpy()
                )
        return out
