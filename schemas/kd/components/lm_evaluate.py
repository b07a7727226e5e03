"""The `lm_evaluate` component's models."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from schemas.base import Model
from schemas.kd.artifacts import ModelCheckpoint
from schemas.kd.lm_report import LMEvalReport
from schemas.kd.text import TextTokenizer, TokenSequences


class LMEvaluateConfig(Model):
    """What to measure on which split, how to label the models, what to compare and which
    continuations to show."""

    split: str = Field("test", description="The split of the sequences every model is scored on.")
    names: list[str] | None = Field(
        None,
        description="A label per model, in input order; models sharing a label are a recipe "
        "(seeds of one config): mean perplexity with a 95% interval, compared with other "
        "recipes (`compare`). Default: student_<index>.",
    )
    compare: list[tuple[str, str]] | None = Field(
        None,
        description="Pairs of labels [a, b]: a's log-perplexity minus b's, paired over models "
        "trained with the same seed (one model each: over tokens). Default: every label "
        "against the first; a single label against the teacher.",
    )
    across_documents: bool = Field(
        False,
        description="Score a document's first token, predicted from the previous document's "
        "end id (default: not; padding never counts).",
    )
    batch_size: int = Field(8, ge=1, description="Sequences per forward pass while scoring.")
    max_rows: int | None = Field(
        None, ge=1, description="Score only the split's first rows (default: all of them)."
    )
    speed_batch_sizes: list[int] = Field(
        default_factory=lambda: [1, 8],
        min_length=1,
        description="Batch sizes (sequences) at which tokens/s of forward passes is measured.",
    )
    speed_threads: int = Field(1, ge=1, description="CPU threads while timing (1: comparable).")
    speed_budget_s: float = Field(
        1.0, gt=0, description="About the seconds of timed passes per model and batch size."
    )
    prompts: list[str] | None = Field(
        None,
        min_length=1,
        description="Texts to continue. Default: `prompt_count` prompts cut from the scored "
        "split (seeded, each within one document).",
    )
    prompt_count: int = Field(3, ge=0, description="Prompts cut from the split (no `prompts`).")
    prompt_tokens: int = Field(24, ge=1, description="Tokens of each prompt cut from the split.")
    prompt_seed: int = Field(0, description="Seeds where the prompts are cut.")
    max_new_tokens: int = Field(48, ge=1, description="Tokens each model writes (greedy).")
    continuations_of: str = Field(
        "first",
        pattern="^(first|all)$",
        description="first: the first model of each recipe continues the prompts; all: every "
        "model.",
    )
    plots: bool = Field(True, description="Write perplexity.png (perplexity per recipe).")
    bootstrap_resamples: int = Field(10_000, ge=1_000)
    bootstrap_seed: int = Field(0)

    @field_validator("compare")
    @classmethod
    def _distinct_sides(cls, pairs: list[tuple[str, str]] | None) -> list[tuple[str, str]] | None:
        same = [a for a, b in pairs or [] if a == b]
        if same:
            raise ValueError(f"[{same[0]}, {same[0]}] compares a label with itself: name two")
        return pairs

    @field_validator("speed_batch_sizes")
    @classmethod
    def _positive(cls, sizes: list[int]) -> list[int]:
        if min(sizes) < 1:
            raise ValueError(f"batch sizes are 1 or more, got {sizes}")
        return sizes


class LMEvaluateInputs(BaseModel):
    sequences: TokenSequences = Field(description="Packed token sequences (pack_tokens).")
    tokenizer: TextTokenizer = Field(description="The sequences' tokenizer (decodes the text).")
    models: list[ModelCheckpoint] = Field(description="The students (causal_lm checkpoints).")
    teacher: ModelCheckpoint | None = Field(
        None, description="Scored too (as 'teacher'); agreement and KL are measured against it."
    )


class LMEvaluateOutputs(BaseModel):
    report: LMEvalReport
