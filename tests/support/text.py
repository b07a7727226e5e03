"""Real text for the text-path tests: files of the Python standard library (code nobody here
wrote), written as the corpus formats a user brings, and one-step-at-a-time pipelines."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from orchestrator import Pipeline


@functools.lru_cache(maxsize=1)
def _stdlib() -> tuple[tuple[str, str], ...]:
    from components.text.bundled import stdlib_table

    table = stdlib_table()
    assert isinstance(table, pa.Table)
    paths, texts = table.column("path").to_pylist(), table.column("text").to_pylist()
    return tuple((p, t) for p, t in zip(paths, texts, strict=True) if t)


def documents(count: int, under: str = "json/", most: int = 20_000) -> list[tuple[str, str]]:
    """(path, text) of ``count`` non-empty standard library files whose path starts with
    ``under`` (then any others), each cut to at most ``most`` characters (fast tests)."""
    chosen = [d for d in _stdlib() if d[0].startswith(under)]
    chosen += [d for d in _stdlib() if not d[0].startswith(under)]
    return [(p, t[:most]) for p, t in chosen[:count]]


def write_txt(folder: Path, docs: list[tuple[str, str]]) -> Path:
    """One .txt file per document (``doc-NNNN.txt``, in order)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, (_, text) in enumerate(docs):
        (folder / f"doc-{i:04d}.txt").write_text(text)
    return folder


def write_jsonl(path: Path, docs: list[tuple[str, str]], field: str = "text") -> Path:
    """One JSON object per line: ``{"path": ..., field: text}``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for name, text in docs:
            f.write(json.dumps({"path": name, field: text}) + "\n")
    return path


def write_parquet(path: Path, docs: list[tuple[str, str]]) -> Path:
    """A table of ``path`` and ``text`` columns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"path": [d[0] for d in docs], "text": [d[1] for d in docs]})
    pq.write_table(table, path)
    return path


def text_pipeline(
    corpus: dict[str, Any],
    tokenizer: dict[str, Any] | None = None,
    pack: dict[str, Any] | None = None,
) -> Pipeline:
    """corpus -> tokenizer -> pack_tokens (the last two when their configs are given)."""
    p = Pipeline("text")
    c = p.add("corpus", "corpus", config=corpus)
    if tokenizer is not None:
        inputs = {"corpus": c.corpus} if tokenizer.get("source", "train") == "train" else {}
        t = p.add("tokenizer", "tokenizer", config=tokenizer, inputs=inputs)
        if pack is not None:
            p.add(
                "tokens",
                "pack_tokens",
                config=pack,
                inputs={"corpus": c.corpus, "tokenizer": t.tokenizer},
            )
    return p
