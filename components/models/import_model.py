"""The `import_model` component: a model trained elsewhere, as a verified `ModelCheckpoint`."""

from __future__ import annotations

from typing import Any

from orchestrator import Component, StepContext
from orchestrator.component import ConfigIssue
from schemas.kd.components.import_model import (
    ImportModelConfig,
    ImportModelInputs,
    ImportModelOutputs,
)


class ImportModel(Component[ImportModelConfig, ImportModelInputs, ImportModelOutputs]):
    """Turn a model source with pretrained `weights` (a teacher trained outside kdorch) into
    a `ModelCheckpoint` that `teacher_inference`, `evaluate`, `distill` and `train`'s `init`
    take as they take a trained one.

    Verified: the weights file is read as data (a pickle that would run code is refused),
    loaded strictly (missing, unexpected and mis-shaped keys are named), the head is replaced
    when asked, and one forward pass checks the output width against the `data` input's class
    count. The step's key covers the weights file's content (sha256; size + ETag on S3) and a
    python factory's code, so a new file or an edited factory re-imports.
    """

    key = "import_model"
    version = "1"
    Config = ImportModelConfig
    Inputs = ImportModelInputs
    Outputs = ImportModelOutputs

    @classmethod
    def check_config(cls, config: ImportModelConfig) -> list[ConfigIssue]:
        from components.models.checks import check_spec

        return check_spec(config.model, "model")

    @classmethod
    def external_fingerprint(cls, config: ImportModelConfig) -> dict[str, Any]:
        from components.models.identity import spec_identity

        return spec_identity(config.model)

    def run(self, inputs: ImportModelInputs, ctx: StepContext) -> ImportModelOutputs:
        from components.artifacts.checkpoints import import_checkpoint
        from components.training.common import fit_spec_to_dataset

        spec = self.config.model
        if inputs.data is not None:
            spec = fit_spec_to_dataset(spec, inputs.data)
        model = import_checkpoint(ctx, spec, seed=self.config.seed)
        ctx.log(
            "imported %s: %d parameters, %d classes",
            self.config.model.arch,
            model.num_parameters,
            model.model.num_classes or 0,
        )
        return ImportModelOutputs(model=model)
