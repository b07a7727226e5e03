"""`LogitShards` artifacts: a teacher's outputs as numbered Parquet shards keyed by ``row_id``.

Rows arrive in dataset order, are cut into shards of ``rows_per_shard`` and written with fixed
settings, so the same teacher on the same data gives byte-identical shards, the same content
hashes, and reusable downstream caches. Reads verify every shard against the manifest while
parsing the very bytes that are hashed (one read per shard, hashed while it is parsed).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from components.artifacts.datasets import check_split_name, parquet_table
from orchestrator import ArtifactError, ArtifactStore
from schemas.kd.artifacts import Dataset, LogitShards

# Smallest and fastest of the settings measured for float16 logits (STACK-NOTES.md).
SHARD_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "use_dictionary": False,
    "use_byte_stream_split": True,
    "write_statistics": False,
}
TEACHER_COLUMNS = ("logits", "topk_indices", "topk_values", "rest_mass", "feature")


def _shard_options(table: pa.Table) -> dict[str, Any]:
    # byte_stream_split only applies to floating columns; name them explicitly for Parquet.
    floats = [
        f.name
        for f in table.schema
        if pa.types.is_floating(f.type)
        or (pa.types.is_fixed_size_list(f.type) and pa.types.is_floating(f.type.value_type))
    ]
    return {**SHARD_OPTIONS, "use_byte_stream_split": floats or False}


def fixed_list(values: np.ndarray, dtype: pa.DataType) -> pa.FixedSizeListArray:
    flat = pa.array(np.ascontiguousarray(values).reshape(-1), type=dtype)
    return pa.FixedSizeListArray.from_arrays(flat, values.shape[1])


class ShardWriter:
    """Buffers Arrow tables and writes ``shard-NNNNN.parquet`` files of a fixed row count."""

    def __init__(self, store: ArtifactStore, path: str, rows_per_shard: int):
        self.store, self.path, self.rows_per_shard = store, path, rows_per_shard
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.shards = 0
        self.rows = 0
        self.bytes = 0

    def add(self, batch: pa.Table) -> None:
        self.pending.append(batch)
        self.pending_rows += batch.num_rows
        while self.pending_rows >= self.rows_per_shard:
            table = pa.concat_tables(self.pending)
            self._write(table.slice(0, self.rows_per_shard))
            rest = table.slice(self.rows_per_shard)
            self.pending, self.pending_rows = ([rest] if rest.num_rows else []), rest.num_rows

    def close(self) -> int:
        if self.pending_rows:
            self._write(pa.concat_tables(self.pending))
            self.pending, self.pending_rows = [], 0
        return self.rows

    def _write(self, table: pa.Table) -> None:
        table = table.combine_chunks()
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, **_shard_options(table))
        data = sink.getvalue().to_pybytes()
        self.store.write_bytes(f"{self.path}/shard-{self.shards:05d}.parquet", data)
        self.shards += 1
        self.rows += table.num_rows
        self.bytes += len(data)


def read_teacher_table(store: ArtifactStore, logits: LogitShards, split: str) -> pa.Table:
    """All shards of one split as one table, each verified against its manifest entry."""
    prefix = f"{check_split_name(split)}/"
    names = sorted(e.path for e in store.manifest(logits).files if e.path.startswith(prefix))
    if not names:
        raise ArtifactError(
            f"logit shards at {store.uri(logits.path)} have no split '{split}' (splits: "
            f"{list(logits.splits)})"
        )
    tables = [store.read_parsed(logits, name, parquet_table, arrow_file=True) for name in names]
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    check_layout(table, logits, store.uri(logits.path))
    return table


def expected_widths(logits: LogitShards) -> dict[str, int]:
    """Each teacher column's list width as the record says: per view, times the views (a
    scalar ``rest_mass``, width 0 here, without views)."""
    views = max(logits.views, 1)
    k = min(logits.top_k, logits.num_classes) if logits.top_k is not None else None
    widths = {"logits": views * logits.num_classes} if k is None else {}
    if k is not None:
        widths |= {"topk_indices": views * k, "topk_values": views * k}
        widths["rest_mass"] = logits.views  # one per view; 0: a plain float32 column
    if logits.feature_dim:
        widths["feature"] = views * logits.feature_dim
    return widths


def check_layout(table: pa.Table, logits: LogitShards, where: str) -> None:
    """Refuse shards whose columns do not hold what their record says (views x width), so that
    no reader takes one view's logits for another's."""
    for name, width in expected_widths(logits).items():
        kind = table.schema.field(name).type if name in table.column_names else None
        found = kind.list_size if kind is not None and pa.types.is_fixed_size_list(kind) else 0
        if kind is None or found != width:
            raise ArtifactError(
                f"the logit shards at {where} hold `{name}` as {kind or 'nothing'}, but their "
                f"record says {logits.views} views of {logits.num_classes} classes (top_k "
                f"{logits.top_k}, feature_dim {logits.feature_dim}): expected width {width}. "
                "Shards and record disagree: recompute the teacher_inference step"
            )


def check_matches_dataset(logits: LogitShards, dataset: Dataset) -> None:
    """Refuse teacher outputs computed on other data or under another transform."""
    if logits.dataset_version != dataset.data_version:
        raise ArtifactError(
            f"the logit shards at {logits.path} were computed on dataset version "
            f"{logits.dataset_version[:12]}, but this step trains on {dataset.data_version[:12]} "
            f"({dataset.source} {dataset.domain or ''}); run teacher_inference on this dataset"
        )
    if logits.transform != dataset.transform:
        raise ArtifactError(
            f"the logit shards at {logits.path} were computed under transform "
            f"'{logits.transform}', this dataset uses '{dataset.transform}'"
        )
