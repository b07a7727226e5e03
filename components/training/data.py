"""Datasets for training workers: dataset splits as Ray Data, joined with teacher outputs.

Teacher outputs (logit shards) are joined to dataset rows by ``row_id`` with a broadcast join:
the shards of a split are read once (each verified against its manifest hash), put in Ray's
object store, and every `map_batches` worker looks its rows up by binary search. Teacher
outputs are small next to the inputs (K floats or a top-k per row), rows need no particular
order, and a row without a teacher output is an error, never a silent zero.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from orchestrator.errors import ArtifactError
from orchestrator.storage.store import ArtifactStore
from schemas.artifacts import Dataset, LogitShards

TEACHER_COLUMNS = ("logits", "topk_indices", "topk_values", "rest_mass", "feature")


def pyarrow_filesystem(store: ArtifactStore) -> Any:
    """The store's filesystem as pyarrow sees it (None for local paths: pyarrow's own)."""
    if store.is_local:
        return None
    import pyarrow.fs as pafs

    return pafs.PyFileSystem(pafs.FSSpecHandler(store.fs))


def arrow_path(store: ArtifactStore, uri: str) -> str:
    return uri if store.is_local else store.fs._strip_protocol(uri)


def read_dataset_split(store: ArtifactStore, dataset: Dataset, split: str) -> Any:
    """One split of a `Dataset` as a Ray Data dataset (columns row_id, x, y)."""
    return read_dataset_splits(store, dataset, [split])


def read_dataset_splits(
    store: ArtifactStore, dataset: Dataset, splits: list[str], with_paths: bool = False
) -> Any:
    """Several splits in one Ray Data dataset, in split order (one pipeline start-up, not one
    per split); ``with_paths`` adds each row's source file as ``path`` (see `split_of`)."""
    import ray.data

    return ray.data.read_parquet(
        [arrow_path(store, dataset.split_uri(s)) for s in splits],
        filesystem=pyarrow_filesystem(store),
        include_paths=with_paths,
    )


def split_of(path: str) -> str:
    """The split a dataset file belongs to: ``.../<split>/part-00000.parquet`` -> ``<split>``."""
    return path.rsplit("/", 2)[-2]


def read_teacher_table(store: ArtifactStore, logits: LogitShards, split: str) -> pa.Table:
    """All shards of one split, each checked against its manifest sha256 before it is read."""
    import pyarrow.parquet as pq

    manifest = store.read_manifest(logits)
    prefix = f"{split}/"
    entries = [e for e in manifest.files if e.path.startswith(prefix)]
    if not entries:
        raise ArtifactError(
            f"logit shards at {logits.uri} have no split '{split}' (splits: {list(logits.splits)})"
        )
    tables = []
    for entry in entries:
        store.verify_file(logits, entry)
        with store.open(f"{logits.uri.rstrip('/')}/{entry.path}") as f:
            tables.append(pq.read_table(f))
    return pa.concat_tables(tables)


def check_matches_dataset(logits: LogitShards, dataset: Dataset) -> None:
    """Refuse teacher outputs computed on other data or under another transform."""
    if logits.dataset_version != dataset.data_version:
        raise ArtifactError(
            f"the logit shards at {logits.uri} were computed on dataset version "
            f"{logits.dataset_version[:12]}, but this step trains on {dataset.data_version[:12]} "
            f"({dataset.source} {dataset.domain or ''}); run teacher_inference on this dataset"
        )
    if logits.transform != dataset.transform:
        raise ArtifactError(
            f"the logit shards at {logits.uri} were computed under transform "
            f"'{logits.transform}', this dataset uses '{dataset.transform}'"
        )


class TeacherJoin:
    """`map_batches` callable: appends teacher ``i``'s columns as ``t{i}_<column>`` by row_id."""

    def __init__(self, tables: list[pa.Table]):
        self.columns: list[list[str]] = []
        self.tables: list[pa.Table] = []
        self.sorted_ids: list[np.ndarray] = []
        self.order: list[np.ndarray] = []
        for table in tables:
            ids = table.column("row_id").to_numpy()
            order = np.argsort(ids, kind="stable")
            self.order.append(order)
            self.sorted_ids.append(ids[order])
            self.columns.append([c for c in table.column_names if c in TEACHER_COLUMNS])
            self.tables.append(table)

    def __call__(self, batch: pa.Table) -> pa.Table:
        ids = batch.column("row_id").to_numpy()
        for t, table in enumerate(self.tables):
            sorted_ids = self.sorted_ids[t]
            where = np.searchsorted(sorted_ids, ids).clip(0, len(sorted_ids) - 1)
            missing = sorted_ids[where] != ids
            if missing.any():
                raise ArtifactError(
                    f"teacher {t} has no output for {int(missing.sum())} of {len(ids)} rows "
                    f"(e.g. row_id {int(ids[missing][0])}): its logits were made for other rows"
                )
            taken = table.take(pa.array(self.order[t][where]))
            for column in self.columns[t]:
                batch = batch.append_column(f"t{t}_{column}", taken.column(column))
        return batch


def with_teachers(ds: Any, tables: list[pa.Table], batch_size: int = 1024) -> Any:
    """Join teacher tables onto a Ray Data dataset of dataset rows (see `TeacherJoin`)."""
    if not tables:
        return ds
    return ds.map_batches(
        TeacherJoin,
        fn_constructor_args=(tables,),
        batch_format="pyarrow",
        batch_size=batch_size,
        concurrency=1,
        num_cpus=0.5,
    )
