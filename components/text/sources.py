"""Text files as documents, local or on an object store (fsspec, the step's
``storage_options``): listed, identified by content, counted, and read in batches.

- ``.txt``: one document per file, UTF-8 (a leading byte-order mark is dropped);
- ``.jsonl``: one document per non-blank line, a JSON object whose ``text_field`` holds it;
- ``.parquet`` / ``.pq``: one document per row of the string column ``text_column``.

Files are taken in sorted path order, and a document's index in that order (rows and lines in
file order) is its ``doc_id``. A null text is a document with no text (the corpus leaves it
out and counts it). Every error names the file, and for jsonl the line.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from schemas.kd.text import CorpusConfig

#: File extension -> format, for `format: auto` and for picking a folder's files.
FORMATS: dict[str, str] = {
    ".txt": "txt",
    ".jsonl": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


class ColumnError(ValueError):
    """A Parquet file's text column is missing or is not a string."""


@dataclass(frozen=True)
class TextFile:
    """One file of a text source."""

    path: str  # the filesystem's own path
    name: str  # as a user names it: a local path, or s3://bucket/key
    format: str  # txt | jsonl | parquet
    size: int
    etag: str  # object stores: the server's content hash ("" on a local disk)


@dataclass(frozen=True)
class TextSource:
    """The files of a corpus source, in reading order, and how to find the text in each."""

    uri: str
    fs: Any
    files: tuple[TextFile, ...]
    text_field: str
    text_column: str

    @property
    def is_local(self) -> bool:
        from fsspec.implementations.local import LocalFileSystem

        return isinstance(self.fs, LocalFileSystem)


def format_of(path: str, wanted: str) -> str | None:
    """The format of a file named ``path`` under ``format: wanted`` (None: not a corpus file)."""
    for suffix, kind in FORMATS.items():
        if path.lower().endswith(suffix):
            return kind if wanted in ("auto", kind) else None
    return None


def open_source(cfg: CorpusConfig) -> TextSource:
    """The source ``cfg`` names, listed (nothing read). A missing source, a folder without text
    files, or one file of an unknown kind is a FileNotFoundError/ValueError naming it."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(cfg.uri, **cfg.storage_options.to_fsspec())
    if not fs.exists(root):
        raise FileNotFoundError(f"corpus source {cfg.uri} does not exist")
    single, single_kind = fs.isfile(root), None
    if single:
        single_kind = format_of(root, "auto") if cfg.format == "auto" else cfg.format
        if single_kind is None:
            raise ValueError(
                f"{cfg.uri}: cannot tell the format from its name; set `format` (txt, jsonl or "
                "parquet)"
            )
        infos = {root: fs.info(root)}
    else:
        infos = fs.find(root, detail=True)
    files = []
    for path in sorted(infos):
        kind = single_kind if single else format_of(path, cfg.format)
        if kind is None or (not single and path.rsplit("/", 1)[-1].startswith(".")):
            continue
        info = infos[path]
        etag = str(info.get("ETag") or info.get("etag") or info.get("md5Hash") or "")
        name = path if _local(fs) else str(fs.unstrip_protocol(path))
        files.append(TextFile(path, name, kind, int(info.get("size") or 0), etag.strip('"')))
    if not files:
        wanted = "" if cfg.format == "auto" else f" of format '{cfg.format}'"
        raise FileNotFoundError(
            f"corpus source {cfg.uri} is a folder without text files{wanted} (.txt, .jsonl, "
            ".parquet or .pq)"
        )
    return TextSource(cfg.uri, fs, tuple(files), cfg.text_field, cfg.text_column)


def _local(fs: Any) -> bool:
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(fs, LocalFileSystem)


@functools.lru_cache(maxsize=4096)
def _file_hash(path: str, size: int, mtime_ns: int, inode: int) -> str:
    from orchestrator.storage.hashing import stream_digest

    with open(path, "rb") as f:
        return "blake3:" + stream_digest(f, "blake3")


def source_identity(source: TextSource) -> dict[str, str]:
    """The content identity of a source, for the corpus step's cache key: one sha256 over every
    file's name (relative to the source), format and content identity — a local file's BLAKE3
    (memoised by path, size, mtime and inode, so a plan does not hash unchanged files again),
    an object's size and ETag (the server's own content hash, from the listing: nothing is
    downloaded). Rewriting a file with other bytes changes it; the same bytes do not."""
    import os

    digest = hashlib.sha256()
    base = source.files[0].path.rsplit("/", 1)[0] if len(source.files) > 1 else ""
    for file in source.files:
        if source.is_local:
            st = os.stat(file.path)
            identity = _file_hash(file.path, st.st_size, st.st_mtime_ns, st.st_ino)
        else:
            identity = f"size:{file.size};etag:{file.etag}"
        relative = file.path[len(base) + 1 :] if base else file.path.rsplit("/", 1)[-1]
        digest.update(f"{relative}\t{file.format}\t{identity}\n".encode())
    return {"files": str(len(source.files)), "sha256": digest.hexdigest()}


def parquet_text_rows(source: TextSource, file: TextFile) -> int:
    """Rows of a Parquet file, from its footer; a ValueError when it is unreadable, lacks the
    text column, or the column is not a string (naming the column, its type and the file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with source.fs.open(file.path, "rb", cache_type="none") as f:
            parquet = pq.ParquetFile(f)
            schema, rows = parquet.schema_arrow, int(parquet.metadata.num_rows)
    except Exception as e:
        raise ValueError(f"{file.name} is not a readable Parquet file: {e}") from e
    column = source.text_column
    if column not in schema.names:
        raise ColumnError(
            f"{file.name} has no column '{column}' (columns: {', '.join(schema.names)}); name "
            "the text column with `text_column`"
        )
    kind = schema.field(column).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        strings = [f.name for f in schema if pa.types.is_string(f.type)]
        raise ColumnError(
            f"{file.name}: column '{column}' is {kind}, not a string: `text_column` must name "
            f"a string column (string columns: {', '.join(strings) or 'none'})"
        )
    return rows


def _jsonl_lines(source: TextSource, file: TextFile) -> Iterator[tuple[int, bytes]]:
    """(line number from 1, line) of every non-blank line of a jsonl file."""
    with source.fs.open(file.path, "rb") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                yield number, line


def count_documents(source: TextSource) -> list[int]:
    """Documents per file, in file order: a .txt file is one, a Parquet file its footer's rows,
    a jsonl file its non-blank lines (the one format whose count needs a read)."""
    counts = []
    for file in source.files:
        if file.format == "txt":
            counts.append(1)
        elif file.format == "parquet":
            counts.append(parquet_text_rows(source, file))
        else:
            counts.append(sum(1 for _ in _jsonl_lines(source, file)))
    return counts


def _jsonl_text(file: TextFile, number: int, line: bytes, field: str) -> str:
    """The text of one jsonl line; a ValueError naming the file and line when there is none."""
    where = f"{file.name} line {number}"
    try:
        row = json.loads(line)
    except ValueError as e:
        raise ValueError(f"{where} is not valid JSON: {e}") from e
    if not isinstance(row, dict):
        raise ValueError(f"{where} is a JSON {type(row).__name__}, not an object with '{field}'")
    if field not in row:
        fields = ", ".join(list(row)[:12]) or "none"
        raise ValueError(
            f"{where} has no field '{field}' (fields: {fields}); name the text's field with "
            "`text_field`"
        )
    text = row[field]
    if text is not None and not isinstance(text, str):
        raise ValueError(f"{where}: field '{field}' is not a string ({type(text).__name__})")
    return text or ""


def _txt_text(source: TextSource, file: TextFile) -> str:
    with source.fs.open(file.path, "rb") as f:
        data = f.read()
    try:
        return str(data.decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{file.name} is not UTF-8 text (byte {e.start}: {e.reason}); convert it to UTF-8"
        ) from e


def read_documents(source: TextSource, batch: int) -> Iterator[list[str]]:
    """Every document's text in ``doc_id`` order, in lists of at most ``batch`` (a list never
    spans two files); at most one batch (and for .txt one file) is in memory at a time."""
    for file in source.files:
        if file.format == "txt":
            yield [_txt_text(source, file)]
        elif file.format == "parquet":
            import pyarrow.parquet as pq

            parquet_text_rows(source, file)  # the column and its type, again: files may change
            with source.fs.open(file.path, "rb") as f:
                for part in pq.ParquetFile(f).iter_batches(batch, columns=[source.text_column]):
                    yield [t or "" for t in part.column(0).to_pylist()]
        else:
            texts: list[str] = []
            for number, line in _jsonl_lines(source, file):
                texts.append(_jsonl_text(file, number, line, source.text_field))
                if len(texts) == batch:
                    yield texts
                    texts = []
            if texts:
                yield texts
