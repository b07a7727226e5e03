"""Real text that needs no download: the Python standard library's own source, written as a
Parquet corpus (one document per ``.py`` file) — code that nobody here wrote, in every CPython
install, the kind of text a small code LM trains on::

    python -m components.text.bundled stdlib data/stdlib.parquet

Columns: ``path`` (the file's path under the standard library, '/'-separated, e.g.
``asyncio/tasks.py``) and ``text`` (its source, decoded as Python decodes it). Taken from
``sysconfig.get_paths()["stdlib"]``: every ``.py`` file outside ``site-packages`` and
``__pycache__``, and outside the tests (any folder named ``test``, ``tests`` or ``idle_test``,
and files named ``test_*.py``), in sorted path order. The bytes written depend only on the
Python version's sources: docs/language_models.md states the size for the Python it was
measured on.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: Folders left out wherever they are: installed packages, caches, and the tests.
EXCLUDED_FOLDERS = frozenset(
    {"site-packages", "dist-packages", "__pycache__", "test", "tests", "idle_test"}
)


def stdlib_root() -> Path:
    import sysconfig

    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(root: Path | None = None) -> list[str]:
    """The standard library's ``.py`` files outside its tests, relative to ``root``, sorted."""
    base = root or stdlib_root()
    found = []
    for folder, subfolders, files in os.walk(base):
        subfolders[:] = [d for d in subfolders if d not in EXCLUDED_FOLDERS]
        relative = Path(folder).relative_to(base)
        found += [
            (relative / f).as_posix()
            for f in files
            if f.endswith(".py") and not f.startswith("test_")
        ]
    return sorted(found)


def stdlib_table(root: Path | None = None) -> object:
    """The corpus as a `pyarrow.Table` (``path``, ``text``)."""
    import tokenize

    import pyarrow as pa

    base = root or stdlib_root()
    paths = stdlib_files(base)
    texts = []
    for path in paths:
        with tokenize.open(base / path) as f:  # the file's own coding cookie, else UTF-8
            texts.append(f.read())
    return pa.table({"path": pa.array(paths, pa.string()), "text": pa.array(texts, pa.string())})


def write_stdlib(path: str | Path) -> Path:
    """Write the corpus to ``path`` (folders are created); returns the path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    table = stdlib_table()
    assert isinstance(table, pa.Table)
    pq.write_table(table, out, compression="zstd")
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "stdlib":
        print("usage: python -m components.text.bundled stdlib OUT.parquet", file=sys.stderr)
        return 2
    out = write_stdlib(args[1])
    import pyarrow.parquet as pq

    table = pq.read_table(out)
    characters = sum(len(t) for t in table.column("text").to_pylist())
    print(
        f"wrote {out}: {table.num_rows:,} documents, {characters:,} characters "
        f"(path, text; the standard library of Python {sys.version.split()[0]})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
