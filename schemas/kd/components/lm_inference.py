"""The `lm_inference` component's models."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from schemas.kd.actor_pool import ActorPoolSettings
from schemas.kd.artifacts import ModelCheckpoint
from schemas.kd.text import TokenSequences
from schemas.kd.token_cache import Encoding, TokenCache

#: Ids kept per token when `k` is not set.
DEFAULT_K = 32


class LMInferenceConfig(ActorPoolSettings):
    """How a teacher LM runs over token sequences and how its next-token distributions are
    stored (`schemas.kd.token_cache`); `ActorPoolSettings`: in the step's own process or on an
    actor pool."""

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


class LMInferenceInputs(BaseModel):
    teacher: ModelCheckpoint = Field(description="A causal_lm checkpoint (lm_model, train).")
    sequences: TokenSequences = Field(description="Packed token sequences (pack_tokens).")


class LMInferenceOutputs(BaseModel):
    cache: TokenCache
