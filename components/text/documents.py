"""The corpus step's work (`components.text.corpus` wires it): documents split by document,
seeded, and written split by split as a `TextCorpus`.

Two passes over the source, so that a corpus larger than memory splits exactly like a small
one: the first counts the documents (listings and footers; only jsonl files are read), the
second reads them in batches and appends each to its split's part files. Which split a
document goes to is fixed before the second pass by one seeded permutation of the document
indices (`assign_splits`): a split gets ``round(fraction * documents)`` of them (largest
remainders first), no document is in two splits, and the same seed gives the same split.
What is held in memory: a byte per document (its split) and one batch of texts.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from components.text.artifacts import PartWriter, removed_on_error
from orchestrator import StepContext
from schemas.kd.text import CorpusConfig, TextCorpus, TextSplit

#: A document no split takes (left out by ``max_documents``).
DROPPED = 255
#: Documents read at a time.
BATCH = 1024


def split_counts(total: int, fractions: dict[str, float], source: str) -> dict[str, int]:
    """Documents per split: each fraction of ``total`` rounded down, the rest handed out by
    largest remainder. A ValueError when there are no documents, or a split would get none."""
    if total == 0:
        raise ValueError(f"corpus {source} is empty: its files hold no documents")
    if len(fractions) >= DROPPED:
        raise ValueError(f"corpus {source}: at most {DROPPED - 1} splits, got {len(fractions)}")
    names = list(fractions)
    exact = np.array([fractions[n] * total for n in names])
    counts = np.floor(exact).astype(np.int64)
    by_remainder = np.argsort(-(exact - counts), kind="stable")
    counts[by_remainder[: total - int(counts.sum())]] += 1
    empty = [n for n, c in zip(names, counts, strict=True) if c == 0]
    if empty:
        shown = ", ".join(f"{n}: {fractions[n]:g}" for n in names)
        raise ValueError(
            f"corpus {source} has {total:,} documents, too few for splits {{{shown}}}: split "
            f"'{empty[0]}' would get none. Add documents, or use fewer splits or larger fractions"
        )
    return dict(zip(names, (int(c) for c in counts), strict=True))


def assign_splits(
    total: int, fractions: dict[str, float], seed: int, keep: int | None, source: str
) -> np.ndarray:
    """The split (index into ``fractions``) of every document, `DROPPED` for those a
    ``keep``-document subset leaves out: one seeded permutation, cut by `split_counts`."""
    chosen = min(keep, total) if keep else total
    counts = split_counts(chosen, fractions, source)
    order = np.random.default_rng(seed).permutation(total)[:chosen]
    assign = np.full(total, DROPPED, dtype=np.uint8)
    start = 0
    for index, count in enumerate(counts.values()):
        assign[order[start : start + count]] = index
        start += count
    return assign


class _SplitWriter:
    """One split's part files and counts."""

    def __init__(self, ctx: StepContext, folder: str):
        self.parts = PartWriter(ctx.store, folder)
        self.documents = self.characters = self.empty = 0

    def add(self, ids: np.ndarray, texts: list[str], lengths: np.ndarray) -> None:
        self.empty += int((lengths == 0).sum())
        keep = np.flatnonzero(lengths > 0)
        if len(keep) == 0:
            return
        table = pa.table(
            {
                "doc_id": pa.array(ids[keep], pa.int64()),
                "text": pa.array([texts[i] for i in keep], pa.string()),
            }
        )
        characters = int(lengths[keep].sum())
        self.parts.add(table, characters)
        self.documents += len(keep)
        self.characters += characters


def build_corpus(cfg: CorpusConfig, ctx: StepContext) -> TextCorpus:
    """The corpus ``cfg`` describes, written under the step's ``corpus`` output."""
    from components.artifacts.datasets import check_split_name
    from components.text.sources import count_documents, open_source, read_documents

    source = open_source(cfg)
    total = sum(count_documents(source))
    assign = assign_splits(total, cfg.splits, cfg.seed, cfg.max_documents, cfg.uri)
    with removed_on_error(ctx.store, ctx.output_path("corpus")) as path:
        writers = [_SplitWriter(ctx, f"{path}/{check_split_name(n)}") for n in cfg.splits]
        seen = 0
        for texts in read_documents(source, BATCH):
            ids = np.arange(seen, seen + len(texts))
            seen += len(texts)
            if seen > total:
                break
            lengths = np.fromiter(map(len, texts), np.int64, len(texts))
            where = assign[ids]
            for index in np.unique(where[where != DROPPED]):
                rows = np.flatnonzero(where == index)
                writers[index].add(ids[rows], [texts[i] for i in rows], lengths[rows])
        if seen != total:
            raise ValueError(
                f"corpus {cfg.uri} changed while it was read ({total:,} documents counted, "
                f"then {seen:,} or more read): run the step again"
            )
        for writer in writers:
            writer.parts.flush()
        splits = _checked_splits(cfg, writers)
    shown = ", ".join(f"{n} {s.documents:,}" for n, s in splits.items())
    left_out = sum(s.empty for s in splits.values())
    ctx.log("%s: %s documents (%s; %d empty left out)", cfg.uri, f"{total:,}", shown, left_out)
    return TextCorpus(path=path, splits=splits, source=cfg.uri, seed=cfg.seed, documents=total)


def _checked_splits(cfg: CorpusConfig, writers: list[_SplitWriter]) -> dict[str, TextSplit]:
    """Each split's counts; a ValueError when a split (or the corpus) holds no text."""
    splits = {
        name: TextSplit(documents=w.documents, characters=w.characters, empty=w.empty)
        for name, w in zip(cfg.splits, writers, strict=True)
    }
    if not any(s.documents for s in splits.values()):
        empty = sum(s.empty for s in splits.values())
        raise ValueError(f"corpus {cfg.uri} holds no text: its {empty:,} documents are all empty")
    for name, split in splits.items():
        if split.documents == 0:
            raise ValueError(
                f"corpus {cfg.uri}: split '{name}' has no document with text (its "
                f"{split.empty:,} documents are empty): add documents or change `splits`"
            )
    return splits
