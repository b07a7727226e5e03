"""The `seqkd` component's models."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from schemas.base import Model
from schemas.kd.artifacts import ModelCheckpoint
from schemas.kd.lm_report import GeneratedSequences, Sampling
from schemas.kd.text import TextTokenizer, TokenSequences


class SeqKDConfig(Model):
    """Which prompts the teacher continues, how it samples, and how much it writes."""

    split: str = Field("train", description="The split the prompts are cut from (and replace).")
    prompts: int = Field(256, ge=1, le=1 << 24, description="How many prompts.")
    prompt_tokens: int = Field(
        32, ge=1, description="Tokens of each prompt, cut within one document (seeded)."
    )
    max_new_tokens: int = Field(
        128, ge=1, description="The most tokens the teacher writes per prompt (it may end first)."
    )
    sampling: Literal["greedy", "sample"] = Field(
        "greedy", description="greedy: the most likely token; sample: drawn (seeded)."
    )
    temperature: float = Field(1.0, gt=0, description="sample: logits divided by this.")
    top_k: int | None = Field(None, ge=1, description="sample: draw among the k most likely.")
    top_p: float | None = Field(
        None, gt=0, le=1, description="sample: draw among the most likely tokens of this mass."
    )
    seed: int = Field(0, description="Seeds where the prompts are cut and the draws.")
    batch_size: int = Field(16, ge=1, description="Prompts generated together.")
    copy_splits: list[str] | None = Field(
        None,
        description="Splits of the source copied as they are (real text to validate on). "
        "Default: all but `split`.",
    )

    @model_validator(mode="after")
    def _sampling_knobs(self) -> SeqKDConfig:
        if self.sampling == "greedy":
            knobs = [f for f in ("temperature", "top_k", "top_p") if f in self.model_fields_set]
            if knobs:
                raise ValueError(
                    f"{', '.join(knobs)} only apply to sampling 'sample' (greedy takes the most "
                    "likely token); set sampling: sample, or remove them"
                )
        return self

    def sampler(self) -> Sampling:
        return Sampling(
            method=self.sampling, temperature=self.temperature, top_k=self.top_k, top_p=self.top_p
        )


class SeqKDInputs(BaseModel):
    teacher: ModelCheckpoint = Field(description="The teacher (a causal_lm checkpoint).")
    sequences: TokenSequences = Field(description="Where the prompts are cut from (pack_tokens).")
    tokenizer: TextTokenizer = Field(description="The sequences' tokenizer (decodes samples).")


class SeqKDOutputs(BaseModel):
    sequences: GeneratedSequences
