"""The `lm_model` component's models."""

from __future__ import annotations

from pydantic import BaseModel, Field

from schemas.base import Model
from schemas.kd.artifacts import ModelCheckpoint
from schemas.kd.lm import CausalLMSpec
from schemas.kd.text import TextTokenizer


class LMModelConfig(Model):
    """A causal language model: built from the knobs (fresh weights, seeded) or loaded from a
    ``path`` folder, for the tokenizer it will read."""

    model: CausalLMSpec = Field(
        description="The model (arch: causal_lm); vocab_size comes from the tokenizer."
    )
    seed: int = Field(0, description="Seeds the fresh weights of a model built from the knobs.")


class LMModelInputs(BaseModel):
    tokenizer: TextTokenizer = Field(description="The tokenizer the model reads (its vocabulary).")


class LMModelOutputs(BaseModel):
    model: ModelCheckpoint
