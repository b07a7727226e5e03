"""Causal language models' vocabulary: the model spec (``arch: causal_lm``, one of the
`schemas.kd.models.ModelSpec` union, so `train`, `distill` and every `ModelCheckpoint` take it)
and what the language steps promise before they run (`TokenizerPromise`, `SequencesPromise`,
`LanguageModelPromise`: their consumers check vocabularies and lengths against them).

Types and their own field validation only; the networks are built by `components.lm.models`,
a ``path`` folder is read by `components.lm.folder`, and the checks that need a tokenizer, a
folder or the wiring are in `components.lm.checks`. docs/language_models.md is the guide.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from schemas.base import Model
from schemas.engine.storage import StorageOptions

#: The knobs of a model built from them (``family``); a ``path`` or ``config`` decides them.
ARCHITECTURE_FIELDS = (
    "family",
    "layers",
    "width",
    "heads",
    "kv_heads",
    "intermediate",
    "max_positions",
    "dropout",
    "tied_embeddings",
)


class LMTokenizer(Model):
    """The tokenizer a language model reads, as the model records it (filled from a
    `schemas.kd.text.TextTokenizer` when the model is built): two models share a tokenizer when
    these agree."""

    version: str = Field(description="The tokenizer artifact's data version.")
    vocab_size: int = Field(ge=1)
    eos_id: int = Field(ge=0)
    pad_id: int = Field(ge=0)


class CausalLMSpec(Model):
    """A causal language model from Hugging Face `transformers`, the same spec for teachers
    and students. One of three sources:

    - **built** from the knobs (default): ``family`` llama (RMSNorm, rotary positions, SwiGLU,
      grouped-query attention with ``kv_heads``) or gpt2 (LayerNorm, learned positions, GELU),
      ``layers`` x ``width``, ``heads``, ``intermediate``, ``max_positions``, ``dropout``,
      ``tied_embeddings``;
    - **loaded** from ``path``: a local or ``s3://`` folder that ``save_pretrained`` wrote
      (``config.json`` and ``model.safetensors``, sharded or not, or ``pytorch_model.bin``
      read with ``weights_only``); its config decides the architecture. No code from the folder
      ever runs: a config that asks for remote code (``auto_map``) is refused;
    - **config**: a Hugging Face config as data, what a kdorch checkpoint of a loaded model
      records (its weights are the checkpoint's).

    ``vocab_size`` and ``tokenizer`` are filled from the tokenizer when the model is built, as
    ``num_classes`` is filled from a dataset; a vocabulary that differs is refused.
    ``num_classes`` and ``input_shape`` are the classifiers' fields, unused here.
    """

    arch: Literal["causal_lm"] = Field(
        "causal_lm", description="Model kind: a causal language model (transformers)."
    )
    family: Literal["llama", "gpt2"] = Field(
        "llama", description="Architecture family of a built model."
    )
    layers: int = Field(2, ge=1, le=1024, description="Transformer blocks.")
    width: int = Field(128, ge=8, description="Hidden size (embedding width).")
    heads: int = Field(4, ge=1, description="Attention heads (they divide `width`).")
    kv_heads: int | None = Field(
        None, ge=1, description="llama: key/value heads (grouped-query attention; default heads)."
    )
    intermediate: int | None = Field(
        None, ge=1, description="Width of the feed-forward layer (default 4 x width)."
    )
    max_positions: int = Field(
        512, ge=2, le=1 << 20, description="Longest sequence the model reads (positions)."
    )
    dropout: float = Field(
        0.0, ge=0, lt=1, description="Dropout (gpt2: every kind; llama: attention)."
    )
    tied_embeddings: bool = Field(True, description="The output layer shares the embedding.")
    vocab_size: int | None = Field(
        None, ge=2, description="Token ids it reads and predicts; filled from the tokenizer."
    )
    path: str | None = Field(
        None, description="A save_pretrained folder, local or s3://..., to load the model from."
    )
    storage_options: StorageOptions = Field(
        default_factory=StorageOptions, description="How to reach `path` (s3 endpoint...)."
    )
    config: dict[str, Any] | None = Field(
        None,
        description="A Hugging Face config (config.json's content): what a checkpoint records "
        "for a model loaded from `path`.",
    )
    tokenizer: LMTokenizer | None = Field(
        None, description="The tokenizer it reads; filled when the model is built."
    )
    num_classes: int | None = Field(None, description="Unused by causal_lm (a classifier's).")
    input_shape: tuple[int, ...] | None = Field(None, description="Unused by causal_lm.")

    @field_validator("num_classes", "input_shape")
    @classmethod
    def _not_a_classifier(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError(
                "a causal_lm reads token sequences and predicts its vocabulary: it has no "
                "classes or input shape (train it on `pack_tokens` sequences, not a dataset)"
            )
        return value

    @field_validator("config")
    @classmethod
    def _no_remote_code(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return value
        if "auto_map" in value:
            raise ValueError(
                "the config asks for remote code (auto_map): kdorch never runs code that comes "
                "with a model; use an architecture transformers has itself"
            )
        if not isinstance(value.get("model_type"), str):
            raise ValueError("a Hugging Face config needs its `model_type` (e.g. llama, gpt2)")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> CausalLMSpec:
        if self.path is not None and self.config is not None:
            raise ValueError(
                "give `path` (a folder to load) or `config` (a checkpoint's), not both"
            )
        if self.path is None and self.config is None:
            if self.width % self.heads:
                raise ValueError(f"heads ({self.heads}) must divide width ({self.width})")
            kv = self.kv_heads
            if kv is not None and (self.family != "llama" or self.heads % kv):
                raise ValueError(
                    "kv_heads is llama's grouped-query attention and must divide heads "
                    f"({self.heads}); got {kv} for family {self.family}"
                )
            return self
        # Compared with the defaults, not `model_fields_set`: a spec read back from JSON (a
        # checkpoint's model.json) has every field set, at its default.
        fields = type(self).model_fields
        knobs = [f for f in ARCHITECTURE_FIELDS if getattr(self, f) != fields[f].default]
        if knobs:
            source = "`path` folder's config.json" if self.path is not None else "`config`"
            raise ValueError(
                f"{', '.join(knobs)}: the {source} decides the architecture; remove "
                f"{'them' if len(knobs) > 1 else 'it'}"
            )
        return self

    def source(self) -> Literal["built", "path", "config"]:
        """Where the architecture comes from."""
        return "path" if self.path is not None else "config" if self.config else "built"


# -- promises: what a step's output will be, before it runs (`Component.promise`) -------------
class TokenizerPromise(Model):
    """The tokenizer a `tokenizer` step will write: exactly (a file) or at most (trained: a
    small corpus may not fill the vocabulary) this many ids."""

    vocab_size: int | None = Field(None, description="Ids, exactly (a loaded tokenizer).")
    max_vocab_size: int | None = Field(None, description="Ids, at most (a trained one).")
    eos_id: int | None = None
    pad_id: int | None = None


class SequencesPromise(Model):
    """The `TokenSequences` a `pack_tokens` step will write."""

    seq_len: int
    tokenizer: TokenizerPromise | None = None
    tokenizer_step: str | None = Field(None, description="The step that makes its tokenizer.")
    splits: list[str] | None = Field(None, description="Its split names (None: not known yet).")


class LanguageModelPromise(Model):
    """The causal LM a step will write (its checkpoint), as far as its spec tells."""

    what: str = Field(description="The model, for messages ('llama 2x64', 'path s3://...').")
    vocab_size: int | None = None
    max_positions: int | None = None
    tokenizer: TokenizerPromise | None = Field(
        None, description="What the model's tokenizer step promised (its vocab fills the model's)."
    )
    tokenizer_step: str | None = None
