"""The `lm_model` component: a causal language model, built or loaded, as a `ModelCheckpoint`."""

from __future__ import annotations

from typing import Any

from orchestrator import Component, StepContext
from orchestrator.component import ConfigIssue, Wiring
from schemas.engine.pipeline import Resources
from schemas.kd.components.lm_model import LMModelConfig, LMModelInputs, LMModelOutputs


class LMModel(Component[LMModelConfig, LMModelInputs, LMModelOutputs]):
    """A causal LM from Hugging Face `transformers` for the tokenizer it reads: built from the
    spec's knobs (fresh weights, seeded: a student to train, or a test's teacher) or loaded
    from a user's `save_pretrained` folder, local or s3:// (config.json as data, weights as
    tensors: no remote code, no pickle that runs code), as a `ModelCheckpoint` that
    `lm_inference`, `train`'s `init` and the students take (`components.lm.models`).

    Its vocabulary is the tokenizer's (filled, or refused when it differs, at `kdorch
    validate` when the tokenizer step promises it), and the checkpoint records the tokenizer's
    data version and special ids. The key covers a folder's content (BLAKE3 of each file
    locally, size + ETag on S3) and the transformers version.
    """

    key = "lm_model"
    version = "1"
    Config = LMModelConfig
    Inputs = LMModelInputs
    Outputs = LMModelOutputs
    default_resources = Resources(num_cpus=1)

    @classmethod
    def check_config(cls, config: LMModelConfig) -> list[ConfigIssue]:
        from components.lm.checks import spec_issues

        return spec_issues(config.model)

    @classmethod
    def promise(cls, config: LMModelConfig, wiring: Wiring) -> dict[str, Any]:
        from components.lm.checks import model_promise

        return {"model": model_promise(config.model, wiring)}

    @classmethod
    def check_wiring(cls, config: LMModelConfig, wiring: Wiring) -> list[ConfigIssue]:
        from components.lm.checks import model_wiring_issues

        return model_wiring_issues(config.model, wiring)

    @classmethod
    def external_fingerprint(cls, config: LMModelConfig) -> dict[str, Any]:
        from components.lm.specs import spec_identity

        return spec_identity(config.model)

    def run(self, inputs: LMModelInputs, ctx: StepContext) -> LMModelOutputs:
        from components.lm.models import save_language_model

        model = save_language_model(ctx, self.config.model, inputs.tokenizer, seed=self.config.seed)
        return LMModelOutputs(model=model)
