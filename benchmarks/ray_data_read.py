"""What one Ray Data Parquet read costs on this machine, with Ray's default footer-reader pool
and with the pool kdorch's embedded Ray uses (``RAY_DATA_PARQUET_FOOTER_NUM_ACTORS``).

Ray Data 2.60 lists Parquet files by reading their footers on a pool of new actors, 32 by
default, for every read (and for every epoch that re-reads a dataset). Each actor is a fresh
Python process; on a small machine their start-up dwarfs reading a few MB. kdorch's embedded
Ray sets the pool to 2 (`orchestrator.execution.ray_session.EMBEDDED_ENV`).

Writes a 3-split, 5,000-row dataset of 28x28 float images (the size of MNIST-5k), starts a
local Ray with 4 logical CPUs, and times ``read_parquet(files).materialize()`` REPEATS times per
setting, alternating, both in the same run.

Run: ``python benchmarks/ray_data_read.py`` (about a minute on 2 cores).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPEATS = 4
SETTINGS = {"Ray default (32 actors)": "32", "kdorch embedded (2 actors)": "2"}


def write_dataset(root: Path) -> list[str]:
    rng = np.random.default_rng(0)
    files = []
    for split, rows in (("train", 3000), ("val", 1000), ("test", 1000)):
        x = rng.random((rows, 784), dtype=np.float32)
        table = pa.table(
            {
                "row_id": np.arange(rows, dtype=np.int64),
                "x": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), 784),
                "y": rng.integers(0, 10, rows),
            }
        )
        path = root / split / "part-00000.parquet"
        path.parent.mkdir(parents=True)
        pq.write_table(table, path)
        files.append(str(path))
    return files


def timed_read(files: list[str], actors: str) -> float:
    import ray.data

    # The pool size is read when the read is planned, in this process.
    os.environ["RAY_DATA_PARQUET_FOOTER_NUM_ACTORS"] = actors
    started = time.perf_counter()
    rows = ray.data.read_parquet(files).materialize().count()
    assert rows == 5000, rows
    return time.perf_counter() - started


def main() -> None:
    import ray

    with tempfile.TemporaryDirectory() as tmp:
        files = write_dataset(Path(tmp))
        # address="local": a Ray of our own even when others run on this machine.
        ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
        try:
            timed_read(files, "2")  # warm-up: Ray Data's own first-use start-up
            seconds: dict[str, list[float]] = {name: [] for name in SETTINGS}
            for _ in range(REPEATS):
                for name, actors in SETTINGS.items():
                    seconds[name].append(timed_read(files, actors))
        finally:
            ray.shutdown()
    baseline = statistics.median(seconds[next(iter(SETTINGS))])
    print(f"read_parquet(3 files, 5,000 rows).materialize(), median of {REPEATS}:")
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"  {name:28s} {median:6.2f} s   {baseline / median:4.1f}x")


if __name__ == "__main__":
    main()
