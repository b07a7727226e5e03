"""The pack_tokens step's work (`components.text.pack_tokens` wires it): each corpus split
tokenised and packed into fixed-length rows, and the helpers that turn a row's document
boundaries into masks.

**Layout.** A split's documents, in ``doc_id`` order, are tokenised (no tokens added around
them) and concatenated into one stream, each followed by the end-of-document id. The stream is
cut every ``seq_len`` tokens into rows of ``seq_len + 1`` ids: row ``r`` holds stream
positions ``[r * seq_len, r * seq_len + seq_len]``, so its inputs ``tokens[:-1]`` and
next-token targets ``tokens[1:]`` come from the row itself, and every token of the stream but
the first is a target exactly once. The split's last row is padded with the padding id;
``length`` says how many ids are real.

**Boundaries: marked, not enforced.** A row may hold the end of one document and the start of
the next. ``doc_starts`` lists the positions where a document begins. Why a sparse list and not
a per-token document index or mask: it costs a few bytes per document instead of bytes per
token (the ids are what the cache and its bytes/token are about), and every dense form is one
vectorised step away — `segment_ids` (a block-diagonal attention mask: attend where the
segments are equal) and `target_mask` (which targets a loss counts: not padding, and, unless
asked, not the first token of a document predicted from the previous one's end token). A
trainer that ignores ``doc_starts`` gets the usual GPT-2 packing, where documents see each
other through the end token.

**Streaming.** One bounded generator in this process: documents are read a part file at a
time and tokenised ``batch_documents`` at a time (`tokenizers` encodes a batch on all cores in
Rust), the tokens not yet in a row are carried over (fewer than ``seq_len + 1``), and rows go
to part files of about 64 MiB as they are made. Held in memory: one corpus part, one batch of
ids and one output part, whatever the corpus's size. Not Ray Data: packing is a sequential scan
(a row spans documents, and a document spans rows), so it would need an ordered fan-in that
buys nothing over the tokenizer's own threads.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from orchestrator import StepContext
from schemas.kd.text import PackConfig, TextCorpus, TextTokenizer, TokenSequences, TokenSplit


class Packer:
    """Documents' ids in, full rows out (`add`), the padded last row at the end (`finish`)."""

    def __init__(self, seq_len: int, eos_id: int, pad_id: int):
        self.seq_len = seq_len
        self.eos_id = eos_id
        self.pad_id = pad_id
        self.carry = np.zeros(0, np.int32)  # stream tokens not yet in a full row
        self.starts = np.zeros(0, np.int64)  # document starts within ``carry``
        self.rows = self.tokens = self.documents = self.padding = 0

    def add(self, documents: list[list[int]]) -> pa.Table | None:
        """Append documents (each gets the end id); the rows now complete, if any."""
        if not documents:
            return None
        pieces = [np.asarray(d, dtype=np.int32) for d in documents]
        sizes = np.array([len(p) + 1 for p in pieces], dtype=np.int64)
        ends = np.full(1, self.eos_id, dtype=np.int32)
        stream = np.concatenate([self.carry, *(x for p in pieces for x in (p, ends))])
        starts = np.concatenate([self.starts, len(self.carry) + np.cumsum(sizes) - sizes])
        self.tokens += int(sizes.sum())
        self.documents += len(pieces)
        count = (len(stream) - 1) // self.seq_len
        table = self._rows(stream, starts, count, len(stream)) if count else None
        cut = count * self.seq_len
        self.carry, self.starts = stream[cut:], starts[starts >= cut] - cut
        return table

    def finish(self) -> pa.Table | None:
        """The last row, padded, when tokens are left that are no row's target yet."""
        if len(self.carry) < 2:
            return None
        width = self.seq_len + 1
        self.padding = width - len(self.carry)
        padded = np.concatenate([self.carry, np.full(self.padding, self.pad_id, np.int32)])
        table = self._rows(padded, self.starts, 1, len(self.carry))
        self.carry, self.starts = self.carry[:0], self.starts[:0]
        return table

    def _rows(self, stream: np.ndarray, starts: np.ndarray, count: int, real: int) -> pa.Table:
        """``count`` rows cut from ``stream`` (``real`` of its ids are not padding)."""
        width = self.seq_len + 1
        bases = np.arange(count, dtype=np.int64) * self.seq_len
        ids = stream[bases[:, None] + np.arange(width)]
        low = np.searchsorted(starts, bases, side="left")
        per_row = np.searchsorted(starts, bases + self.seq_len, side="right") - low
        offsets = np.concatenate([[0], np.cumsum(per_row)]).astype(np.int32)
        within = np.arange(offsets[-1]) - np.repeat(offsets[:-1], per_row)
        positions = starts[np.repeat(low, per_row) + within] - np.repeat(bases, per_row)
        table = pa.table(
            {
                "row_id": pa.array(np.arange(self.rows, self.rows + count), pa.int64()),
                "tokens": pa.FixedSizeListArray.from_arrays(pa.array(ids.reshape(-1)), width),
                "doc_starts": pa.ListArray.from_arrays(
                    pa.array(offsets), pa.array(positions.astype(np.int32))
                ),
                "length": pa.array(np.minimum(real - bases, width).astype(np.int32)),
            }
        )
        self.rows += count
        return table


def encode(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Each text's ids, nothing added around them (a loaded tokenizer's BOS/EOS template is
    not applied: the packer adds the end-of-document id itself). A special token's spelling
    inside a document (a file that mentions ``<|endoftext|>``) is encoded as the text it is,
    so the end-of-document id appears only where a document ends."""
    tokenizer.encode_special_tokens = True
    fast = getattr(tokenizer, "encode_batch_fast", None) or tokenizer.encode_batch
    return [e.ids for e in fast(texts, add_special_tokens=False)]


def pack_split(
    ctx: StepContext,
    cfg: PackConfig,
    corpus: TextCorpus,
    split: str,
    tokenizer: Any,
    *,
    ref: TextTokenizer,
    folder: str,
) -> TokenSplit:
    """One corpus split packed into part files under ``folder`` (``ref``: the tokenizer's
    special ids)."""
    from components.text.artifacts import PartWriter, corpus_texts

    packer = Packer(cfg.seq_len, ref.eos_id, ref.pad_id)
    writer = PartWriter(ctx.store, folder)
    row_bytes = 4 * (cfg.seq_len + 1)
    for texts in corpus_texts(ctx.store, corpus, split, cfg.batch_documents):
        table = packer.add(encode(tokenizer, texts))
        if table is not None:
            writer.add(table, table.num_rows * row_bytes)
    last = packer.finish()
    if last is not None:
        writer.add(last, row_bytes)
    writer.flush()
    return TokenSplit(
        sequences=packer.rows,
        tokens=packer.tokens,
        documents=packer.documents,
        padding=packer.padding,
        id_bytes=writer.column_bytes.get("tokens", 0),
    )


def pack_corpus(
    cfg: PackConfig, corpus: TextCorpus, ref: TextTokenizer, ctx: StepContext
) -> TokenSequences:
    """Every split ``cfg`` names (default: all), written under the step's ``sequences`` output."""
    from components.artifacts.datasets import check_split_name
    from components.text.artifacts import read_tokenizer, removed_on_error

    splits = cfg.splits or list(corpus.splits)
    for split in splits:
        corpus.split_path(split)  # a KeyError naming the splits it has, before any work
    tokenizer = read_tokenizer(ctx.store, ref)
    packed = {}
    with removed_on_error(ctx.store, ctx.output_path("sequences")) as path:
        for split in splits:
            folder = f"{path}/{check_split_name(split)}"
            done = pack_split(ctx, cfg, corpus, split, tokenizer, ref=ref, folder=folder)
            packed[split] = done
            shape = f"{done.sequences:,} rows of {cfg.seq_len + 1}"
            counts = f"{done.tokens:,} tokens ({done.documents:,} documents)"
            stored = done.id_bytes / max(done.tokens, 1)
            ctx.log("%s: %s in %s, ids %.2f bytes/token", split, counts, shape, stored)
    return TokenSequences(
        path=path,
        splits=packed,
        seq_len=cfg.seq_len,
        vocab_size=ref.vocab_size,
        eos_id=ref.eos_id,
        pad_id=ref.pad_id,
        tokenizer_version=ref.data_version,
        corpus_version=corpus.data_version,
    )


# -- for consumers: masks from the boundaries -------------------------------------------------
def _starts_grid(doc_starts: Any, width: int) -> np.ndarray:
    """(rows, width) bool: True where a document starts."""
    column = doc_starts.combine_chunks() if isinstance(doc_starts, pa.ChunkedArray) else doc_starts
    offsets = column.offsets.to_numpy()
    values = column.flatten().to_numpy()
    rows = len(offsets) - 1
    grid = np.zeros((rows, width), dtype=bool)
    grid[np.repeat(np.arange(rows), np.diff(offsets)), values] = True
    return grid


def segment_ids(doc_starts: Any, length: np.ndarray, width: int) -> np.ndarray:
    """(rows, width) int32: each position's document within its row (0 for a document that
    began in an earlier row, then 1, 2, ... at each start), -1 on padding. Two positions may
    attend to each other when their segments are equal (and causality allows)."""
    segments = np.cumsum(_starts_grid(doc_starts, width), axis=1, dtype=np.int32)
    segments[np.arange(width)[None, :] >= np.asarray(length)[:, None]] = -1
    return segments


def target_mask(
    doc_starts: Any, length: np.ndarray, width: int, across_documents: bool = False
) -> np.ndarray:
    """(rows, width - 1) bool: which next-token targets ``tokens[1:]`` a loss counts — not
    padding, and (unless ``across_documents``) not a document's first token, whose input is the
    previous document's end token."""
    targets = np.arange(1, width)[None, :] < np.asarray(length)[:, None]
    if not across_documents:
        targets &= ~_starts_grid(doc_starts, width)[:, 1:]
    return targets
