"""What a ``causal_lm`` spec says without building its network (torch-free: `kdorch validate`
and the steps' promises call it): its vocabulary, its positions, its name in messages, and the
spec fitted to a tokenizer.
"""

from __future__ import annotations

from typing import Any

from schemas.kd.lm import CausalLMSpec, LMTokenizer
from schemas.kd.text import TextTokenizer

#: Config keys of the longest sequence, by how transformers' configs name it.
POSITION_KEYS = ("max_position_embeddings", "n_positions", "n_ctx")


class LMError(ValueError):
    """A language model spec that does not fit (its tokenizer, its data); ``field`` is the
    spec's field it is about, so `kdorch validate` can point at it."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


def hf_dict(spec: CausalLMSpec) -> dict[str, Any] | None:
    """The Hugging Face config the architecture comes from (``config``, or the ``path``
    folder's config.json, read); None for a model built from the knobs."""
    if spec.config is not None:
        return spec.config
    if spec.path is not None:
        from components.lm.folder import read_config

        return read_config(spec)
    return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def vocab_of(spec: CausalLMSpec, config: dict[str, Any] | None = None) -> int | None:
    """The model's vocabulary: ``vocab_size``, else its Hugging Face config's (``config`` is
    `hf_dict`'s, when the caller has it); None when the tokenizer will decide."""
    if spec.vocab_size is not None:
        return spec.vocab_size
    config = config if config is not None else hf_dict(spec)
    return _int(config.get("vocab_size")) if config else None


def positions_of(spec: CausalLMSpec, config: dict[str, Any] | None = None) -> int | None:
    """The longest sequence the model reads (None: its config does not say)."""
    config = config if config is not None else hf_dict(spec)
    if config is None:
        return spec.max_positions
    found = [_int(config.get(key)) for key in POSITION_KEYS]
    return next((p for p in found if p is not None), None)


def eos_of(config: dict[str, Any] | None) -> int | None:
    """A Hugging Face config's end-of-sequence id when it names one (not a list of them)."""
    return _int(config.get("eos_token_id")) if config else None


def describe(spec: CausalLMSpec) -> str:
    """The model in messages: ``llama 2x128``, ``path s3://...``, ``llama (a checkpoint's)``."""
    if spec.path is not None:
        return f"causal_lm path {spec.path}"
    if spec.config is not None:
        return f"causal_lm {spec.config.get('model_type')}"
    return f"causal_lm {spec.family} {spec.layers}x{spec.width}"


def tokenizer_record(tokenizer: TextTokenizer) -> LMTokenizer:
    """What a model records of the tokenizer it reads."""
    return LMTokenizer(
        version=tokenizer.data_version,
        vocab_size=tokenizer.vocab_size,
        eos_id=tokenizer.eos_id,
        pad_id=tokenizer.pad_id,
    )


def vocabulary_mismatch(
    model: int, tokens: int, what: str, where: str, *, at_most: bool = False
) -> str:
    """The sentence that refuses a model and a tokenizer of different vocabularies
    (``at_most``: a trained tokenizer, which has ``tokens`` ids or fewer)."""
    has = (
        f"at most {tokens:,} (a BPE trained with vocab_size {tokens:,})"
        if at_most
        else f"{tokens:,}"
    )
    return (
        f"{what} has a vocabulary of {model:,} ids but {where} has {has}: teacher, students "
        "and the token sequences must share one tokenizer (leave the model's vocab_size unset "
        "to take the tokenizer's)"
    )


def check_tokenizer(spec: CausalLMSpec, record: LMTokenizer, where: str) -> None:
    """Refuse ``spec`` for a tokenizer ``record`` (described by ``where``) whose vocabulary
    differs from the model's, or that is not the tokenizer the model records.

    Raises:
        LMError: located at ``vocab_size`` (or ``path``) or ``tokenizer``.
    """
    vocab = vocab_of(spec)
    if vocab is not None and vocab != record.vocab_size:
        field = "vocab_size" if spec.vocab_size is not None else "path"
        raise LMError(vocabulary_mismatch(vocab, record.vocab_size, describe(spec), where), field)
    if spec.tokenizer is not None and spec.tokenizer != record:
        raise LMError(
            f"{describe(spec)} was made for another tokenizer (data version "
            f"{spec.tokenizer.version[:12]}, {spec.tokenizer.vocab_size:,} ids) than {where}",
            "tokenizer",
        )


def fit_to_tokenizer(spec: CausalLMSpec, tokenizer: TextTokenizer) -> CausalLMSpec:
    """``spec`` with ``vocab_size`` and ``tokenizer`` filled from the tokenizer artifact.

    Raises:
        LMError: the model's vocabulary (set, or its config's) is not the tokenizer's, or the
            model already records another tokenizer.
    """
    where = f"the tokenizer (data version {tokenizer.data_version[:12]})"
    record = tokenizer_record(tokenizer)
    check_tokenizer(spec, record, where)
    return spec.model_copy(update={"vocab_size": tokenizer.vocab_size, "tokenizer": record})


def spec_identity(spec: CausalLMSpec) -> dict[str, Any]:
    """What outside kdorch decides the network (part of a step's key): the transformers
    version, and a ``path`` folder's content (`components.lm.folder.folder_identity`)."""
    from components.models.identity import package_version

    out: dict[str, Any] = {"package": {"transformers": package_version("transformers")}}
    if spec.path is not None:
        from components.lm.folder import folder_identity

        out["folder"] = folder_identity(spec)
    return out
