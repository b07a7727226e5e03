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
#: topk_quant's bits per log-probability when `bits` is not set.
DEFAULT_BITS = 8
#: topk_delta's grid step (nats) when `step` is not set: its rounding costs far less KL than
#: leaving the tail out does (benchmarks/lm_cache_encodings.py).
DEFAULT_STEP = 1 / 8


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
        "(dtype) and the rest mass; topk_packed: the same, ids bit-packed; topk_quant: ids "
        "packed, log-probabilities quantised to `bits`; topk_delta: ids packed, log-probabilities "
        "as delta-coded gaps on a grid of `step` nats (the smallest for its fidelity); dense: "
        "every token's log-probability (small vocabularies only). Guide: docs/language_models.md.",
    )
    k: int | None = Field(
        None,
        ge=1,
        le=1 << 16,
        description=f"top-k encodings: ids kept per token (default {DEFAULT_K}).",
    )
    dtype: Literal["float16", "float32"] = Field(
        "float16",
        description="Storage of the log-probabilities (computed in float32); topk_quant and "
        "topk_delta: what a reader holds the decoded ones in.",
    )
    bits: int | None = Field(
        None,
        ge=1,
        le=8,
        description=f"topk_quant: bits per log-probability (default {DEFAULT_BITS}).",
    )
    step: float | None = Field(
        None,
        ge=1 / 512,
        le=1.0,
        description=f"topk_delta: the grid's step in nats (default 1/{round(1 / DEFAULT_STEP)}); "
        "a log-probability is off by at most about one step.",
    )
    batch_size: int = Field(8, ge=1, description="Sequences per forward pass of the teacher.")
    rows_per_shard: int = Field(
        256, ge=1, description="Sequences per Parquet shard (a reader holds one shard)."
    )

    @model_validator(mode="after")
    def _parameters_fit_the_encoding(self) -> LMInferenceConfig:
        if self.encoding == "dense" and self.k is not None:
            raise ValueError("k is for the top-k encodings: encoding dense stores every token")
        if self.bits is not None and self.encoding != "topk_quant":
            raise ValueError(
                f"bits is topk_quant's (bits per log-probability); encoding {self.encoding} "
                "has none: set encoding: topk_quant, or leave bits out"
            )
        if self.step is not None and self.encoding != "topk_delta":
            raise ValueError(
                f"step is topk_delta's (its grid, in nats); encoding {self.encoding} has none: "
                "set encoding: topk_delta, or leave step out"
            )
        return self

    def top_k(self) -> int | None:
        """Ids kept per token (None: dense)."""
        return None if self.encoding == "dense" else self.k or DEFAULT_K

    def value_bits(self) -> int | None:
        """topk_quant's bits per log-probability (None for the other encodings)."""
        return (self.bits or DEFAULT_BITS) if self.encoding == "topk_quant" else None

    def value_step(self) -> float | None:
        """topk_delta's grid step in nats (None for the other encodings)."""
        return (self.step or DEFAULT_STEP) if self.encoding == "topk_delta" else None


class LMInferenceInputs(BaseModel):
    teacher: ModelCheckpoint = Field(description="A causal_lm checkpoint (lm_model, train).")
    sequences: TokenSequences = Field(description="Packed token sequences (pack_tokens).")


class LMInferenceOutputs(BaseModel):
    cache: TokenCache
