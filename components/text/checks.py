"""What `kdorch validate` checks of the text steps before anything runs: a corpus source from
its listing and Parquet footers (no text read), a tokenizer file by parsing it, and the
steps' wiring against what the corpus step promises (its split names). No torch here.

What only the text itself shows (a jsonl line without the text field, a file that is not
UTF-8, a split whose documents are all empty) is refused by the steps when they read it, with
the file and line named (`components.text.sources`, `components.text.documents`).
"""

from __future__ import annotations

from orchestrator.component import ConfigIssue, Wiring
from orchestrator.errors import did_you_mean
from schemas.kd.text import CorpusConfig, CorpusPromise, TokenizerConfig


def corpus_issues(cfg: CorpusConfig) -> list[ConfigIssue]:
    """The source exists and holds text files, every Parquet file has a string text column,
    and — when the documents can be counted without reading (.txt files, Parquet footers; not
    jsonl) — there are enough for every split to get one."""
    from components.text.documents import split_counts
    from components.text.sources import ColumnError, open_source, parquet_text_rows

    try:
        source = open_source(cfg)
    except (OSError, ValueError) as e:
        return [ConfigIssue(str(e), "uri")]
    issues, documents, counted = [], 0, True
    for file in source.files:
        if file.format == "txt":
            documents += file.size > 0  # an empty file is no document
        elif file.format == "jsonl":
            counted = False
        else:
            try:
                documents += parquet_text_rows(source, file)
            except ColumnError as e:
                issues.append(ConfigIssue(str(e), "text_column"))
            except ValueError as e:
                issues.append(ConfigIssue(str(e), "uri"))
    if issues or not counted:
        return issues
    try:
        split_counts(min(documents, cfg.max_documents or documents), cfg.splits, cfg.uri)
    except ValueError as e:
        field = "uri" if documents == 0 else "splits"
        return [ConfigIssue(str(e), field)]
    return []


def tokenizer_issues(cfg: TokenizerConfig) -> list[ConfigIssue]:
    """A file tokenizer: the file (or the folder's tokenizer.json) parses, and its special
    tokens are in its vocabulary."""
    from components.text.bpe import SpecialTokenError, load_tokenizer

    if cfg.source != "file":
        return []
    try:
        load_tokenizer(cfg)
    except SpecialTokenError as e:
        return [ConfigIssue(str(e), "eos_token")]
    except (OSError, ValueError) as e:
        return [ConfigIssue(str(e), "path")]
    return []


def _corpus_splits(wiring: Wiring) -> tuple[str, list[str]] | None:
    """(the corpus step, its split names) when the `corpus` input's producer promised them."""
    promised = wiring.promised("corpus", CorpusPromise)
    if len(promised) != 1:
        return None
    upstream, promise = promised[0]
    return upstream.step_id, promise.splits


def _unknown_split(name: str, field: str, corpus: tuple[str, list[str]]) -> ConfigIssue:
    step, splits = corpus
    return ConfigIssue(
        f"the corpus of step '{step}' has no split '{name}' (splits: {', '.join(splits)})",
        field,
        did_you_mean(name, splits),
    )


def tokenizer_wiring_issues(cfg: TokenizerConfig, wiring: Wiring) -> list[ConfigIssue]:
    """Training needs the corpus connected, and its `train_split` must be one of its splits."""
    if cfg.source != "train":
        return []
    if not wiring.connected("corpus"):
        return [
            ConfigIssue(
                "source 'train' learns from a corpus, and input `corpus` is not connected",
                "corpus",
                "connect it, e.g. `inputs: {corpus: corpus.corpus}`; or load a tokenizer "
                "with source: file",
                under="inputs",
            )
        ]
    corpus = _corpus_splits(wiring)
    if corpus is None or cfg.train_split in corpus[1]:
        return []
    return [_unknown_split(cfg.train_split, "train_split", corpus)]


def pack_wiring_issues(splits: list[str] | None, wiring: Wiring) -> list[ConfigIssue]:
    """Every split to pack is one the corpus has."""
    corpus = _corpus_splits(wiring)
    if corpus is None or splits is None:
        return []
    return [
        _unknown_split(name, f"splits.{i}", corpus)
        for i, name in enumerate(splits)
        if name not in corpus[1]
    ]
