"""The `distill` component: student training on teacher outputs."""

from __future__ import annotations

from typing import Any

from components.training.resources import TrainingComponent
from orchestrator import StepContext
from orchestrator.component import ConfigIssue, Wiring
from schemas.engine.pipeline import Resources
from schemas.kd.artifacts import LogitShards
from schemas.kd.components.distill import DistillConfig, DistillOutputs, DistillStepInputs
from schemas.kd.lm import CausalLMSpec
from schemas.kd.models import ModelSpec
from schemas.kd.text import TokenSequences

_TOKEN_CACHE = (
    "`logits` holds a language model's token cache (lm_inference), but the data is a "
    "classifier dataset: connect teacher_inference's `logits`, or train on token sequences"
)
_NO_STUDENT = (
    "distill has no student architecture: set `config.student` (e.g. {arch: mlp, hidden: "
    "[256]}) or connect the `student` input (e.g. student_search's `student`)"
)


class Distill(TrainingComponent[DistillConfig, DistillStepInputs, DistillOutputs]):
    """Distil one or more teachers into a student with a weighted sum of KD losses.

    Teacher outputs come from logit caches (`logits`: read once, joined to the rows by row_id)
    or from teacher checkpoints run online in the training loop (`teachers`); several teachers
    are fused with `teacher_weights`. One worker trains in the step's own process; more, or
    DeepSpeed ZeRO, use Ray Train. Per-term losses are logged every epoch; a crashed worker
    resumes from the last checkpoint. The architecture is `config.student`, or the `student`
    input (another step's choice, e.g. `student_search`'s), which replaces it. The training is
    `components.training.distillation`, shared with `student_search`'s validation mode.

    On token sequences a causal LM student (`arch: causal_lm`) trains on its tokens with the
    token losses, the teacher read from an `lm_inference` cache (streamed with the sequences)
    or run online (`components.lm.training`).
    """

    key = "distill"
    version = "2"
    Config = DistillConfig
    Inputs = DistillStepInputs
    Outputs = DistillOutputs
    default_resources = Resources(num_cpus=1)
    deterministic = False

    @classmethod
    def check_wiring(cls, config: DistillConfig, wiring: Wiring) -> list[ConfigIssue]:
        """The dataset's splits and domains, a student architecture, and teacher inputs that
        can serve the losses and weights (`components.training.teachers`)."""
        from components.data.view_checks import view_wiring_issues
        from components.training.teachers import teacher_wiring_issues

        issues = super().check_wiring(config, wiring) + teacher_wiring_issues(config, wiring)
        issues += view_wiring_issues(config, wiring)  # views need image rows
        issues += _lm_issues(config, wiring)
        if config.student is None and not wiring.connected("student"):
            issues.append(ConfigIssue(_NO_STUDENT, "student"))
        return issues

    @classmethod
    def promise(cls, config: DistillConfig, wiring: Wiring) -> dict[str, Any]:
        from components.lm.train_checks import model_promise

        return model_promise(config.student, wiring)

    def student_spec(self, inputs: DistillStepInputs) -> ModelSpec:
        """The `student` input's spec when connected, else `config.student`."""
        if inputs.student is not None:
            return inputs.student.root
        if self.config.student is None:
            raise ValueError(_NO_STUDENT)
        return self.config.student

    def run(self, inputs: DistillStepInputs, ctx: StepContext) -> DistillOutputs:
        from components.training.common import export_trained, fit_spec_to_dataset
        from components.training.distillation import distill_student
        from components.training.views import training_views, views_record

        cfg, data = self.config, inputs.data
        student = self.student_spec(inputs)
        if inputs.student is not None and cfg.student is not None:
            ctx.log("the `student` input replaces config.student")
        if isinstance(data, TokenSequences) or isinstance(student, CausalLMSpec):
            from components.lm.distilling import distill_step

            teachers, init = inputs.teachers or [], inputs.init
            out = distill_step(
                ctx, cfg, student, data, logits=inputs.logits or [], teachers=teachers, init=init
            )
            return DistillOutputs(model=out[0], metrics=out[1].metrics, history=out[1].history)
        caches = [c for c in inputs.logits or [] if isinstance(c, LogitShards)]
        if len(caches) != len(inputs.logits or []):
            raise ValueError(_TOKEN_CACHE)
        spec = fit_spec_to_dataset(student, data)
        views = training_views(cfg, data, caches)
        if views is not None:
            ctx.log("each epoch, every row trains on one of %s", views.describe())
        result = distill_student(  # checks the teacher inputs before anything trains
            ctx,
            cfg,
            spec,
            data,
            logits=caches,
            teachers=inputs.teachers or [],
            init=inputs.init,
        )
        ctx.log("distilled %s: val accuracy %.4f", spec.arch, result.metrics["val_accuracy"])
        model = export_trained(ctx, spec, result, data, cfg, views_record(views))
        return DistillOutputs(model=model, metrics=result.metrics, history=result.history)


def _lm_issues(config: DistillConfig, wiring: Wiring) -> list[ConfigIssue]:
    """On token sequences: the student's kind, vocabulary and positions, online teachers', and
    losses that need features (`components.lm.train_checks`)."""
    from components.lm.train_checks import lm_wiring_issues, loss_issues

    issues = loss_issues(config, wiring)
    if config.student is not None:
        issues += lm_wiring_issues(config.student, wiring, "student", config.eval_split)
    return issues
