"""What the text steps promise before they run (`Component.promise`), for the language
models downstream (`components.lm.checks` compares them): a `tokenizer` step its vocabulary
(exactly, for a file; at most ``vocab_size``, for a trained BPE) and special ids,
`pack_tokens` its ``seq_len`` and its tokenizer's promise. Torch-free, and apart from the
language models' code, so that the text steps' keys do not follow it.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.component import Wiring
from schemas.kd.lm import SequencesPromise, TokenizerPromise
from schemas.kd.text import DEFAULT_PAD, CorpusPromise, PackConfig, TokenizerConfig


def tokenizer_promise(cfg: TokenizerConfig, wiring: Wiring) -> TokenizerPromise | None:
    """A trained BPE has at most ``vocab_size`` ids, the special tokens first; a file's
    tokenizer is read (JSON) when the step may look outside the pipeline."""
    if cfg.source == "train":
        specials = cfg.special_tokens()
        pad_id = specials.index(cfg.pad_token or DEFAULT_PAD)
        return TokenizerPromise(max_vocab_size=cfg.vocab_size, eos_id=0, pad_id=pad_id)
    if not wiring.outside:
        return None
    from components.text.bpe import load_tokenizer, special_id

    try:
        tokenizer, eos, pad = load_tokenizer(cfg)
    except (OSError, ValueError):  # check_config says what is wrong with the file
        return None
    vocab = max(tokenizer.get_vocab(with_added_tokens=True).values()) + 1
    where = str(cfg.path)
    return TokenizerPromise(
        vocab_size=vocab,
        eos_id=special_id(tokenizer, eos, where),
        pad_id=special_id(tokenizer, pad, where),
    )


@dataclass(frozen=True)
class Promised:
    """A tokenizer promise with the step that made it, as a consumer's input receives it."""

    step: str
    promise: TokenizerPromise

    def most(self) -> int | None:
        return self.promise.vocab_size or self.promise.max_vocab_size

    def where(self) -> str:
        return f"the tokenizer of step '{self.step}'"


def promised_tokenizer(wiring: Wiring, port: str = "tokenizer") -> Promised | None:
    found = wiring.promised(port, TokenizerPromise)
    return Promised(found[0][0].step_id, found[0][1]) if len(found) == 1 else None


def sequences_promise(cfg: PackConfig, wiring: Wiring) -> SequencesPromise:
    tokenizer = promised_tokenizer(wiring)
    corpus = wiring.promised("corpus", CorpusPromise)
    splits = cfg.splits or (corpus[0][1].splits if len(corpus) == 1 else None)
    return SequencesPromise(
        seq_len=cfg.seq_len,
        tokenizer=tokenizer.promise if tokenizer else None,
        tokenizer_step=tokenizer.step if tokenizer else None,
        splits=splits,
    )
