"""The tokenizer step's work (`components.text.tokenizer` wires it): a byte-level BPE trained
with Hugging Face `tokenizers`, or a tokenizer loaded from a local file, written as a
`TextTokenizer` (``tokenizer.json``).

Trained: GPT-2's byte-level scheme — every text is first mapped to its UTF-8 bytes (256 base
symbols, so no text is unknown and ``decode(encode(text)) == text``), split on GPT-2's
pre-tokenisation pattern, and merged by BPE learned on the corpus's train split only. No
normaliser (the text is kept as it is) and no tokens added around a text: `pack_tokens` adds the
end-of-document token itself. The special tokens take the first ids (end of document 0, padding
1). Training is deterministic: the same split and config give the same ``tokenizer.json``. With
a small corpus the vocabulary may stay under ``vocab_size`` (there are not enough pairs to
merge); the artifact records the size it has.

Loaded: ``tokenizer.json`` is parsed by `tokenizers` (JSON: a model, merges and settings; no
code runs, nothing is downloaded). From a folder, the special tokens default to what its
``tokenizer_config.json`` or ``special_tokens_map.json`` name (JSON read as data; an
``auto_map`` of custom code is ignored).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator import StepContext
from schemas.kd.text import DEFAULT_EOS, DEFAULT_PAD, TextCorpus, TextTokenizer, TokenizerConfig

if TYPE_CHECKING:
    import tokenizers

TOKENIZER_JSON = "tokenizer.json"
#: Files of a Hugging Face tokenizer folder that may name its special tokens, in the order read.
CONFIG_FILES = ("tokenizer_config.json", "special_tokens_map.json")


class SpecialTokenError(ValueError):
    """A special token the tokenizer lacks, or none named."""


def train_bpe(texts: Iterable[list[str]], cfg: TokenizerConfig, documents: int) -> Any:
    """A byte-level BPE with ``cfg.vocab_size`` ids at most, learned from ``texts`` (batches)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=cfg.special_tokens(),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )

    def documents_of() -> Iterator[str]:
        for batch in texts:
            yield from batch

    tokenizer.train_from_iterator(documents_of(), trainer, length=documents)
    return tokenizer


def tokenizer_file(path: str) -> Path:
    """The ``tokenizer.json`` that ``path`` names (the file, or the one in a folder); a
    FileNotFoundError saying what is missing."""
    target = Path(path)
    if target.is_dir():
        target = target / TOKENIZER_JSON
        if not target.is_file():
            raise FileNotFoundError(
                f"{path} holds no {TOKENIZER_JSON}: a Hugging Face tokenizer folder needs one "
                "(a fast tokenizer's save_pretrained writes it)"
            )
    elif not target.is_file():
        raise FileNotFoundError(f"tokenizer {path} does not exist")
    return target


def folder_special_tokens(path: str) -> dict[str, str]:
    """``eos_token`` / ``pad_token`` as a tokenizer folder's JSON configs name them (a string
    or ``{"content": ...}``); the first file that names one wins."""
    found: dict[str, str] = {}
    folder = Path(path)
    if not folder.is_dir():
        return found
    for name in CONFIG_FILES:
        file = folder / name
        if not file.is_file():
            continue
        try:
            config = json.loads(file.read_text())
        except ValueError as e:
            raise ValueError(f"{file} is not valid JSON: {e}") from e
        for key in ("eos_token", "pad_token"):
            value = config.get(key) if isinstance(config, dict) else None
            value = value.get("content") if isinstance(value, dict) else value
            if isinstance(value, str) and value and key not in found:
                found[key] = value
    return found


def parse_tokenizer(file: Path) -> Any:
    """A tokenizer.json parsed; a ValueError naming the file when it is not one."""
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(file))
    except Exception as e:
        raise ValueError(
            f"{file} is not a tokenizer.json of Hugging Face tokenizers: {str(e)[:300]}"
        ) from e


def special_id(tokenizer: Any, token: str, where: str) -> int:
    """The id of ``token``; a ValueError listing the special tokens when it has none."""
    found = tokenizer.token_to_id(token)
    if found is None:
        added = sorted(t.content for t in tokenizer.get_added_tokens_decoder().values())
        raise SpecialTokenError(
            f"{where}: the vocabulary has no token {token!r} (its special tokens: "
            f"{', '.join(added[:12]) or 'none'}); set `eos_token` / `pad_token` to tokens it has"
        )
    return int(found)


def load_tokenizer(cfg: TokenizerConfig) -> tuple[Any, str, str]:
    """(tokenizer, end-of-document token, padding token) of ``cfg.path``: the config's tokens,
    else the folder's, else the padding token is the end-of-document one."""
    assert cfg.path is not None
    file = tokenizer_file(cfg.path)
    tokenizer = parse_tokenizer(file)
    named = folder_special_tokens(cfg.path)
    eos = cfg.eos_token or named.get("eos_token")
    if eos is None:
        raise SpecialTokenError(
            f"{cfg.path}: no end-of-document token is named (no eos_token in "
            f"{' or '.join(CONFIG_FILES)}); set `eos_token`"
        )
    pad = cfg.pad_token or named.get("pad_token") or eos
    for token in (eos, pad):
        special_id(tokenizer, token, str(file))
    return tokenizer, eos, pad


def file_identity(cfg: TokenizerConfig) -> dict[str, str]:
    """A loaded tokenizer's content identity, for the step's key: the sha256 of each file it
    reads (tokenizer.json and a folder's JSON configs; they are small)."""
    assert cfg.path is not None
    files = [tokenizer_file(cfg.path)]
    if Path(cfg.path).is_dir():
        files += [Path(cfg.path) / n for n in CONFIG_FILES if (Path(cfg.path) / n).is_file()]
    return {f.name: "sha256:" + hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def is_byte_level(tokenizer: Any) -> bool:
    """Whether every text encodes and decodes back: a ByteLevel pre-tokeniser (alone or in a
    sequence) and no normaliser."""
    spec = json.loads(tokenizer.to_str())
    pre = spec.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    return spec.get("normalizer") is None and any(s.get("type") == "ByteLevel" for s in steps)


def build_tokenizer(
    cfg: TokenizerConfig, corpus: TextCorpus | None, ctx: StepContext
) -> TextTokenizer:
    """The tokenizer ``cfg`` describes, written under the step's ``tokenizer`` output."""
    from components.text.artifacts import corpus_texts, write_tokenizer

    meta: dict[str, str]
    if cfg.source == "train":
        if corpus is None:
            raise ValueError("source 'train' needs the `corpus` input: the text it learns from")
        corpus.split_path(cfg.train_split)  # a KeyError naming the splits it has
        texts = corpus_texts(ctx.store, corpus, cfg.train_split, 1024)
        tokenizer = train_bpe(texts, cfg, corpus.splits[cfg.train_split].documents)
        eos, pad = cfg.eos_token or DEFAULT_EOS, cfg.pad_token or DEFAULT_PAD
        meta = {"trained_on": corpus.data_version, "trained_on_split": cfg.train_split}
        where = f"tokenizer trained on {corpus.source}"
    else:
        assert cfg.path is not None
        tokenizer, eos, pad = load_tokenizer(cfg)
        meta, where = {"source": cfg.path}, cfg.path
    check_serialised(tokenizer, where)
    folder = ctx.output_path("tokenizer")
    write_tokenizer(ctx.store, folder, tokenizer)
    vocab = max(tokenizer.get_vocab(with_added_tokens=True).values()) + 1
    ctx.log("%s: %d ids, %r = %d", where, vocab, eos, special_id(tokenizer, eos, where))
    return TextTokenizer(
        path=folder,
        origin="trained" if cfg.source == "train" else "loaded",
        vocab_size=vocab,
        eos_token=eos,
        eos_id=special_id(tokenizer, eos, where),
        pad_token=pad,
        pad_id=special_id(tokenizer, pad, where),
        byte_level=is_byte_level(tokenizer),
        **meta,
    )


#: Text that exercises what a tokenizer must keep: whitespace runs, tabs, CRLF, non-ASCII.
PROBE = "def f(x):\r\n\treturn  x  # héllo, 世界 🙂\n\n"


def check_serialised(tokenizer: tokenizers.Tokenizer, where: str) -> None:
    """What is written reads back as the same tokenizer (the same ids for a probe text)."""
    from tokenizers import Tokenizer

    again = Tokenizer.from_str(tokenizer.to_str())
    if again.encode(PROBE).ids != tokenizer.encode(PROBE).ids:
        raise ValueError(f"{where}: the tokenizer does not read back from its own JSON")
