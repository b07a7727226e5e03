"""The `lm_inference` component's models."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from schemas.base import Model
from schemas.kd.artifacts import ModelCheckpoint
from schemas.kd.text import TokenSequences
from schemas.kd.token_cache import Encoding, TokenCache

#: Ids kept per token when `k` is not set.
DEFAULT_K = 32


class LMInferenceConfig(Model):
    """How a teacher LM runs over token sequences and how its next-token distributions are
    stored (`schemas.kd.token_cache`)."""

    splits: list[str] | None = Field(
        None, min_length=1, description="Splits of the sequences to cover (default: all)."
    )
    encoding: Encoding = Field(
        "topk",
        description="topk: the k most likely next tokens per position, their log-probabilities "
        "and the rest mass; dense: every token's log-probability (small vocabularies only).",
    )
    k: int | None = Field(
        None, ge=1, le=1 << 16, description=f"topk: ids kept per token (default {DEFAULT_K})."
    )
    dtype: Literal["float16", "float32"] = Field(
        "float16", description="Storage of the log-probabilities (computed in float32)."
    )
    batch_size: int = Field(8, ge=1, description="Sequences per forward pass of the teacher.")
    num_actors: int = Field(
        1,
        ge=1,
        description="1: run the teacher in the step's own process; more: a Ray Data actor pool "
        "of this size.",
    )
    cpus_per_actor: float = Field(1.0, gt=0)
    gpus_per_actor: float = Field(0.0, ge=0, description="> 0 runs the teacher on GPUs.")
    rows_per_shard: int = Field(
        256, ge=1, description="Sequences per Parquet shard (a reader holds one shard)."
    )

    @model_validator(mode="after")
    def _k_is_for_topk(self) -> LMInferenceConfig:
        if self.encoding == "dense" and self.k is not None:
            raise ValueError("k is the top-k encoding's: encoding dense stores every token")
        return self

    def top_k(self) -> int | None:
        """Ids kept per token (None: dense)."""
        return None if self.encoding == "dense" else self.k or DEFAULT_K

    def runs_in_process(self) -> bool:
        """One actor runs in the step's own process; a pool runs on Ray Data."""
        return self.num_actors == 1


class LMInferenceInputs(BaseModel):
    teacher: ModelCheckpoint = Field(description="A causal_lm checkpoint (lm_model, train).")
    sequences: TokenSequences = Field(description="Packed token sequences (pack_tokens).")


class LMInferenceOutputs(BaseModel):
    cache: TokenCache
