"""The text path's artifacts through the store (`schemas.kd.text`): a split written part by
part, and the readers — every file verified against the artifact's manifest.

Part files are ``<split>/part-NNNNN.parquet``, each holding about `PART_BYTES` of rows, so a
split of any size is written and read one bounded part at a time. The parts' boundaries and
bytes depend only on the rows (fixed writer settings): the same data gives the same data
version.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from components.artifacts.datasets import check_split_name, parquet_bytes, parquet_table
from orchestrator import ArtifactStore
from schemas.engine.artifacts import ArtifactRef
from schemas.kd.text import TextCorpus, TextTokenizer, TokenSequences

if TYPE_CHECKING:
    import tokenizers

#: zstd without dictionaries: text and token ids are not repetitive per value; no statistics
#: (nobody filters on a text's min/max, and they would store 2 strings per page).
PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "use_dictionary": False,
    "write_statistics": False,
}
#: About this many bytes of rows (text, or ids) per part file.
PART_BYTES = 64 << 20
TOKENIZER_FILE = "tokenizer.json"


def part_file(index: int) -> str:
    return f"part-{index:05d}.parquet"


def column_bytes(data: bytes) -> dict[str, int]:
    """Compressed bytes per top-level column of a Parquet file (its footer's column chunks)."""
    import pyarrow.parquet as pq

    meta = pq.read_metadata(pa.BufferReader(data))
    out: dict[str, int] = {}
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for c in range(group.num_columns):
            chunk = group.column(c)
            name = chunk.path_in_schema.split(".")[0]
            out[name] = out.get(name, 0) + int(chunk.total_compressed_size)
    return out


class PartWriter:
    """One split's rows, written as part files of about ``part_bytes`` each as they come (the
    caller says how big each added table is), so at most one part is held in memory."""

    def __init__(self, store: ArtifactStore, folder: str, part_bytes: int = PART_BYTES):
        self.store = store
        self.folder = folder
        self.part_bytes = part_bytes
        self.parts = 0
        self.rows = 0
        self.column_bytes: dict[str, int] = {}
        self._pending: list[pa.Table] = []
        self._size = 0

    def add(self, table: pa.Table, size: int) -> None:
        self._pending.append(table)
        self._size += size
        if self._size >= self.part_bytes:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        table = pa.concat_tables(self._pending)
        data = parquet_bytes(table, **PARQUET_OPTIONS)
        self.store.write_bytes(f"{self.folder}/{part_file(self.parts)}", data)
        for name, size in column_bytes(data).items():
            self.column_bytes[name] = self.column_bytes.get(name, 0) + size
        self.parts += 1
        self.rows += table.num_rows
        self._pending, self._size = [], 0


@contextlib.contextmanager
def removed_on_error(store: ArtifactStore, folder: str) -> Iterator[str]:
    """``folder``, removed with what was written into it if the block raises: a streamed
    output is written before its last input is read, and a failed step leaves no data."""
    try:
        yield folder
    except BaseException:
        store.remove(folder, recursive=True)
        raise


def split_files(store: ArtifactStore, ref: TextCorpus | TokenSequences, split: str) -> list[str]:
    """The manifest's part files of one split, in order (a KeyError names an unknown split)."""
    ref.split_path(split)
    prefix = f"{check_split_name(split)}/"
    return sorted(e.path for e in store.manifest(ref).files if e.path.startswith(prefix))


def read_part(store: ArtifactStore, ref: ArtifactRef, name: str) -> pa.Table:
    """One part file, verified while it is parsed."""
    return store.read_parsed(ref, name, parquet_table, arrow_file=True)


def corpus_texts(
    store: ArtifactStore, corpus: TextCorpus, split: str, batch: int
) -> Iterator[list[str]]:
    """A corpus split's texts in ``doc_id`` order, ``batch`` at a time, one part in memory."""
    for name in split_files(store, corpus, split):
        for chunk in read_part(store, corpus, name).column("text").chunks:
            for start in range(0, len(chunk), batch):
                yield chunk.slice(start, batch).to_pylist()


def read_corpus(store: ArtifactStore, corpus: TextCorpus, split: str) -> pa.Table:
    """One corpus split in memory (``doc_id``, ``text``): for small corpora and tests."""
    return pa.concat_tables(
        [read_part(store, corpus, n) for n in split_files(store, corpus, split)]
    )


def write_tokenizer(store: ArtifactStore, folder: str, tokenizer: tokenizers.Tokenizer) -> None:
    store.write_bytes(f"{folder}/{TOKENIZER_FILE}", tokenizer.to_str().encode())


def read_tokenizer(store: ArtifactStore, ref: TextTokenizer) -> tokenizers.Tokenizer:
    """The tokenizer, verified, with its vocabulary size and special ids checked against the
    reference (a tokenizer.json edited after it was sealed fails verification first)."""
    import tokenizers

    def parse(data: Any) -> tokenizers.Tokenizer:
        return tokenizers.Tokenizer.from_str(bytes(memoryview(data)).decode())

    tokenizer = store.read_parsed(ref, TOKENIZER_FILE, parse)
    for token, expected in ((ref.eos_token, ref.eos_id), (ref.pad_token, ref.pad_id)):
        if tokenizer.token_to_id(token) != expected:
            raise ValueError(
                f"tokenizer at {store.uri(ref.path)}: token {token!r} has id "
                f"{tokenizer.token_to_id(token)}, the artifact says {expected}"
            )
    return tokenizer


def read_sequences(store: ArtifactStore, sequences: TokenSequences, split: str) -> pa.Table:
    """One split of packed rows in memory (``row_id``, ``tokens``, ``doc_starts``, ``length``)."""
    names = split_files(store, sequences, split)
    return pa.concat_tables([read_part(store, sequences, n) for n in names])


def sequence_source(
    store: ArtifactStore, sequences: TokenSequences, splits: list[str]
) -> tuple[Any, list[str]]:
    """(pyarrow filesystem, file paths) of splits, for a streaming reader (Ray Data's
    ``read_parquet``); each file is hashed first (once per process): a stream cannot verify."""
    names = [name for split in splits for name in split_files(store, sequences, split)]
    for name in names:
        store.verify_file(sequences, store.entry(sequences, name))
    return store.arrow_filesystem(), [store.fs_path(sequences.file(n)) for n in names]
