"""scikit-learn's bundled tables written as Parquet: real tabular data, no download.

``wine`` (178 rows, 13 features from ~0.1 to ~1,700, 3 classes) and ``breast_cancer`` (569 rows,
30 features from ~0.001 to ~4,000, 2 classes) are the kind of table a user brings: one numeric
column per feature, on very different scales, and a string label. `pipelines/tabular_kd.yaml`
reads the wine table::

    python -m components.data.bundled wine data/wine.parquet

Columns: ``row_id`` (int64), one float64 column per feature (names made of letters, digits and
``_``: ``od280/od315_of_diluted_wines`` becomes ``od280_od315_of_diluted_wines``) and ``label``
(the class name, e.g. ``class_0`` or ``malignant``).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

TABLES = ("wine", "breast_cancer", "iris")


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


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in TABLES:
        print(
            f"usage: python -m components.data.bundled {{{','.join(TABLES)}}} OUT.parquet",
            file=sys.stderr,
        )
        return 2
    out = write_table(args[0], args[1])
    print(f"wrote {out} ({args[0]}: features {', '.join(feature_columns(args[0]))}; label)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
