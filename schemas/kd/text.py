"""The text path's vocabulary: a corpus split by document, a tokenizer, packed token sequences
(the artifacts), and the configs of the steps that make them (`corpus`, `tokenizer`,
`pack_tokens` in `components.text`).

Types and their own field validation only; the readers and writers are in
`components.text.artifacts`, and the checks that look at data (files, footers) in
`components.text.checks`. docs/language_models.md is the guide.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from schemas.base import Model
from schemas.engine.artifacts import ArtifactRef
from schemas.engine.storage import StorageOptions

#: Split names become folder names (the same rule as the dataset step's).
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: A byte-level BPE starts from one symbol per byte value.
BYTE_ALPHABET = 256
DEFAULT_EOS = "<|endoftext|>"
DEFAULT_PAD = "<|pad|>"


# -- artifacts ------------------------------------------------------------------------------------
class TextSplit(Model):
    """One split of a corpus: how many documents, and their characters (Unicode code points)."""

    documents: int
    characters: int
    empty: int = Field(0, description="Documents of the split left out for holding no text.")


class TextCorpus(ArtifactRef):
    """Documents split by document: ``<split>/part-NNNNN.parquet`` with ``doc_id`` (int64: the
    document's index in its source, files in sorted order, rows/lines in file order) and
    ``text`` (string, exactly as read: no normalisation). No document is in two splits; rows are
    in ``doc_id`` order. The split is seeded (``seed``): the same source, fractions and seed
    give the same documents in each split, hence the same bytes and data version."""

    splits: dict[str, TextSplit]
    source: str = Field(description="Where the documents came from (the step's `uri`).")
    seed: int
    documents: int = Field(description="Documents in the source (including any left out).")

    def split_path(self, split: str) -> str:
        if split not in self.splits:
            raise KeyError(f"corpus {self.source} has no split '{split}' (has {list(self.splits)})")
        return f"{self.path}/{split}"


class TextTokenizer(ArtifactRef):
    """``tokenizer.json``: a Hugging Face `tokenizers` tokenizer (no code: a model, merges and
    settings in JSON), read back verified by `components.text.artifacts.read_tokenizer`.

    ``origin`` says where it came from: ``trained`` (a byte-level BPE trained on split
    ``trained_on_split`` of the corpus whose data version is ``trained_on``) or ``loaded``
    (a local file, ``source``). ``eos_id`` ends every document when a corpus is packed;
    ``pad_id`` fills the last row of a split."""

    origin: Literal["trained", "loaded"]
    vocab_size: int = Field(description="Ids run 0..vocab_size-1 (special tokens included).")
    eos_token: str
    eos_id: int
    pad_token: str
    pad_id: int
    byte_level: bool = Field(description="Any text encodes (no unknown token) and decodes back.")
    trained_on: str = Field("", description="The corpus's data version (trained).")
    trained_on_split: str = Field("", description="The corpus split it was trained on.")
    source: str = Field("", description="The file or folder it was loaded from (loaded).")


class TokenSplit(Model):
    """One split of packed sequences."""

    sequences: int = Field(description="Rows.")
    tokens: int = Field(description="Real tokens (each document's and its end token), no padding.")
    documents: int
    padding: int = Field(description="Padding ids (only in the split's last row).")
    id_bytes: int = Field(description="Compressed bytes of the `tokens` column in the files.")


class TokenSequences(ArtifactRef):
    """A corpus tokenised and packed into rows of ``seq_len + 1`` token ids, per split
    ``<split>/part-NNNNN.parquet`` (`components.text.packing` has the layout and the helpers
    that turn the boundaries into masks):

    - ``row_id`` (int64): the row's index in its split;
    - ``tokens`` (fixed_size_list<int32>[seq_len + 1]): inputs are ``tokens[:-1]``, next-token
      targets ``tokens[1:]``. Documents are concatenated in ``doc_id`` order, each followed by
      ``eos_id``, and cut every ``seq_len`` tokens, so a row's last id is the next row's first
      and every token of the split is a target exactly once;
    - ``doc_starts`` (list<int32>): positions in the row where a document begins (a row that
      continues a document has none at 0);
    - ``length`` (int32): real ids in the row; the rest are ``pad_id`` (the split's last row).
    """

    splits: dict[str, TokenSplit]
    seq_len: int
    vocab_size: int
    eos_id: int
    pad_id: int
    boundaries: Literal["doc_starts"] = Field(
        "doc_starts", description="How document boundaries are marked (see the class doc)."
    )
    tokenizer_version: str = Field(description="The tokenizer's data version.")
    corpus_version: str = Field(description="The corpus's data version.")

    def bytes_per_token(self, split: str | None = None) -> float:
        """Stored bytes of the ids per real token (one split, or all)."""
        chosen = [self.splits[split]] if split else list(self.splits.values())
        tokens = sum(s.tokens for s in chosen)
        return sum(s.id_bytes for s in chosen) / tokens if tokens else 0.0

    def split_path(self, split: str) -> str:
        if split not in self.splits:
            raise KeyError(f"token sequences have no split '{split}' (has {list(self.splits)})")
        return f"{self.path}/{split}"


class CorpusPromise(Model):
    """What a corpus step will write, from its config: for the checks of the steps after it."""

    source: str
    splits: list[str]


# -- configs --------------------------------------------------------------------------------------
class CorpusConfig(Model):
    """Which text, how it is read, and how its documents are split."""

    source: Literal["text"] = Field(
        "text", description="text: `.txt` (a document per file), `.jsonl`, Parquet files."
    )
    uri: str = Field(description="A file or a folder (searched recursively), local or s3://...")
    format: Literal["auto", "txt", "jsonl", "parquet"] = Field(
        "auto",
        description="auto: by each file's extension (.txt, .jsonl, .parquet/.pq; a folder's "
        "other files are ignored). A format: one file is read as it whatever its name; in a "
        "folder, only the files with its extensions are read.",
    )
    text_field: str = Field("text", min_length=1, description="jsonl: the field of the text.")
    text_column: str = Field("text", min_length=1, description="Parquet: the string column.")
    storage_options: StorageOptions = Field(
        default_factory=StorageOptions, description="How to reach `uri` (endpoint, profile)."
    )
    splits: dict[str, float] = Field(
        default_factory=lambda: {"train": 0.9, "val": 0.05, "test": 0.05},
        description="Split names and fractions of the documents (by document, seeded).",
    )
    seed: int = Field(0, description="Seed of the split: the same seed gives the same documents.")
    max_documents: int | None = Field(
        None, ge=1, description="Keep a seeded random subset of this many documents (profiles)."
    )

    @field_validator("splits")
    @classmethod
    def _split_names_and_fractions(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [n for n in value if not _SPLIT_NAME.match(n) or ".." in n]
        if bad:
            raise ValueError(
                f"split name {bad[0][:80]!r} is not allowed: letters, digits, '_', '.', '-' (at "
                "most 64, starting with a letter or digit); it becomes a folder name"
            )
        if not value or min(value.values()) <= 0 or abs(sum(value.values()) - 1) > 1e-6:
            raise ValueError(
                f"splits need one or more fractions > 0 that sum to 1, got {dict(value)}"
            )
        return value


def _specials(eos: str | None, pad: str | None) -> list[str]:
    """A trained tokenizer's special tokens, in id order (the defaults for those not set)."""
    return list(dict.fromkeys([eos or DEFAULT_EOS, pad or DEFAULT_PAD]))


class TokenizerConfig(Model):
    """Train a byte-level BPE on the corpus's train split, or load a tokenizer from a file."""

    source: Literal["train", "file"] = Field(
        "train",
        description="train: a byte-level BPE on `train_split` of the `corpus` input; file: a "
        "local `tokenizer.json`, or a Hugging Face tokenizer folder holding one.",
    )
    eos_token: str | None = Field(
        None,
        min_length=1,
        description=f"The end-of-document token. train: default {DEFAULT_EOS!r}; file: default "
        "the folder's `eos_token` (tokenizer_config.json or special_tokens_map.json).",
    )
    pad_token: str | None = Field(
        None,
        min_length=1,
        description=f"The padding token. train: default {DEFAULT_PAD!r}; file: default the "
        "folder's `pad_token`, else the end-of-document token.",
    )
    vocab_size: int = Field(
        8192, ge=1, le=1 << 24, description="train: ids in the vocabulary, specials included."
    )
    min_frequency: int = Field(2, ge=1, description="train: a merge's minimum pair count.")
    train_split: str = Field("train", description="train: the corpus split it learns from.")
    path: str | None = Field(
        None, description="file: a tokenizer.json, or a folder with one (a local path)."
    )

    def special_tokens(self) -> list[str]:
        """train: the special tokens it adds, in id order (end of document first)."""
        return _specials(self.eos_token, self.pad_token)

    @model_validator(mode="after")
    def _source_fields(self) -> TokenizerConfig:
        if self.source == "file":
            if not self.path:
                raise ValueError("source 'file' needs `path`: a tokenizer.json or its folder")
            trained = [f for f in ("vocab_size", "min_frequency") if f in self.model_fields_set]
            if trained:
                raise ValueError(
                    f"{', '.join(f'`{f}`' for f in trained)} only apply to source 'train' (a "
                    "loaded tokenizer has its own vocabulary)"
                )
            return self
        if self.path is not None:
            raise ValueError("`path` is for source 'file'; source 'train' learns from `corpus`")
        return self

    @field_validator("vocab_size")
    @classmethod
    def _room_for_bytes_and_specials(cls, value: int, info: ValidationInfo) -> int:
        # eos_token and pad_token are declared before vocab_size, so they are in info.data.
        if info.data.get("source") == "file":
            return value
        specials = _specials(info.data.get("eos_token"), info.data.get("pad_token"))
        least = BYTE_ALPHABET + len(specials)
        if value < least:
            raise ValueError(
                "vocab_size is too small for a byte-level BPE: it needs the "
                f"{BYTE_ALPHABET} byte symbols and {len(specials)} special tokens "
                f"({', '.join(specials)}), so at least {least}"
            )
        return value


class PackConfig(Model):
    """How a corpus becomes rows of token ids."""

    seq_len: int = Field(
        256,
        le=1 << 20,
        description="Tokens a model sees per row; a row stores seq_len + 1 ids (inputs and "
        "their next-token targets).",
    )
    splits: list[str] | None = Field(
        None, min_length=1, description="The corpus splits to pack (default: all)."
    )
    batch_documents: int = Field(
        256, ge=1, le=1 << 20, description="Documents tokenised at a time (bounds memory)."
    )

    @field_validator("seq_len")
    @classmethod
    def _at_least_two(cls, value: int) -> int:
        if value < 2:
            raise ValueError(
                "seq_len must be at least 2: a row holds seq_len + 1 ids, inputs and their "
                "next-token targets, and a model needs positions to attend over"
            )
        return value


# -- ports ----------------------------------------------------------------------------------------
class CorpusOutputs(BaseModel):
    corpus: TextCorpus


class TokenizerInputs(BaseModel):
    corpus: TextCorpus | None = Field(
        None, description="train: the corpus it learns from (its `train_split`)."
    )


class TokenizerOutputs(BaseModel):
    tokenizer: TextTokenizer


class PackInputs(BaseModel):
    corpus: TextCorpus
    tokenizer: TextTokenizer


class PackOutputs(BaseModel):
    sequences: TokenSequences
