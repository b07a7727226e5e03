"""The data a training step learns from: dataset splits joined with teacher outputs by row_id.

One decision (`plan_data`) per step: a split whose rows (with teacher columns) fit in
``worker_cache_mb`` per worker is *held* — read from Parquet once (verified), joined in numpy,
and kept in memory as columns — otherwise it is *streamed* through Ray Data, with the teacher
outputs joined by a broadcast join (`TeacherJoin`). Both paths produce the same columns:
``row_id``, ``x``, ``y`` and ``t{i}_<column>`` for teacher ``i`` (``logits``, or
``topk_indices``/``topk_values``/``rest_mass``, and ``feature``). A row without a teacher output
is an error, never a silent zero. A cache with augmented views joins every view's outputs of a
row as one wide column (views side by side, as stored); the training objective takes the slice
of the view a row trains on in each epoch (`components.training.objective.viewed_batch`), so
both paths carry views unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from components.artifacts.datasets import (
    fixed_list_to_numpy,
    read_split,
    select_domains,
    split_source,
    x_reader,
)
from components.artifacts.logits import TEACHER_COLUMNS, check_matches_dataset, read_teacher_table
from orchestrator import ArtifactError, ArtifactStore
from schemas.kd.artifacts import Dataset, LogitShards
from schemas.kd.components.training import TrainingSettings

Columns = dict[str, np.ndarray]


@dataclass
class TrainingData:
    """Per split: held columns (in memory) or a Ray Data dataset (streamed)."""

    held: dict[str, Columns] = field(default_factory=dict)
    streamed: dict[str, Any] = field(default_factory=dict)

    def rows(self, split: str) -> int:
        if split in self.held:
            return len(self.held[split]["y"])
        return int(self.streamed[split].count())


def row_bytes(dataset: Dataset, teachers: list[LogitShards]) -> int:
    """Bytes one row takes in memory: features, label, id and every teacher column."""
    size = 4 * math.prod(dataset.feature_shape) + 16
    for t in teachers:
        width = 2 if t.dtype == "float16" else 4
        per_view = 0
        if t.top_k is not None:
            per_view += t.top_k * (4 + width) + 4
        else:
            per_view += t.num_classes * width
        if t.feature_dim:
            per_view += t.feature_dim * width
        size += per_view * max(t.views, 1)  # a row holds every view's outputs
    return size


def plan_data(
    dataset: Dataset, splits: dict[str, list[LogitShards]], settings: TrainingSettings
) -> dict[str, str]:
    """'held' or 'streamed' for each split (see the module docstring): the only place that
    chooses between the in-memory path and the streaming path."""
    budget = settings.worker_cache_mb * 2**20
    workers = settings.scaling.num_workers
    return {
        split: (
            "held"
            if dataset.splits[split] * row_bytes(dataset, teachers) / workers <= budget
            else "streamed"
        )
        for split, teachers in splits.items()
    }


def align_teacher(table: pa.Table, row_id: np.ndarray, index: int, where: str) -> Columns:
    """Teacher ``index``'s columns in the order of ``row_id`` (``t{index}_<column>``)."""
    ids = table.column("row_id").to_numpy()
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    at = np.searchsorted(sorted_ids, row_id).clip(0, max(len(sorted_ids) - 1, 0))
    missing = (sorted_ids[at] != row_id) if len(sorted_ids) else np.ones(len(row_id), bool)
    if missing.any():
        raise ArtifactError(
            f"teacher {index} ({where}) has no output for {int(missing.sum())} of {len(row_id)} "
            f"rows (e.g. row_id {int(row_id[missing][0])}): its logits were made for other rows"
        )
    take = order[at]
    out: Columns = {}
    for name in table.column_names:
        if name not in TEACHER_COLUMNS:
            continue
        column = table.column(name).combine_chunks()
        values = (
            fixed_list_to_numpy(column)
            if pa.types.is_fixed_size_list(column.type)
            else column.to_numpy(zero_copy_only=False)
        )
        out[f"t{index}_{name}"] = np.ascontiguousarray(values[take])
    return out


def held_columns(
    store: ArtifactStore,
    dataset: Dataset,
    split: str,
    teachers: list[LogitShards],
    settings: TrainingSettings | None = None,
) -> Columns:
    """One split in memory with its teacher columns, rows in ``row_id`` order (only the
    domains ``settings`` selects)."""
    arrays = read_split(store, dataset, split)
    if settings is not None:
        arrays = select_domains(arrays, dataset, settings.domains, settings.exclude_domains)
    order = np.argsort(arrays.row_id, kind="stable")
    columns: Columns = {
        "row_id": arrays.row_id[order],
        "x": arrays.x[order].reshape(len(order), -1),
        "y": arrays.y[order],
    }
    for i, cache in enumerate(teachers):
        table = read_teacher_table(store, cache, split)
        columns.update(align_teacher(table, columns["row_id"], i, store.uri(cache.path)))
    return columns


class TeacherJoin:
    """`map_batches` callable: appends teacher ``i``'s columns as ``t{i}_<column>`` by row_id."""

    def __init__(self, tables: list[pa.Table], where: list[str]):
        self.tables, self.where = tables, where

    def __call__(self, batch: pa.Table) -> pa.Table:
        ids = batch.column("row_id").to_numpy()
        for i, table in enumerate(self.tables):
            for name, values in align_teacher(table, ids, i, self.where[i]).items():
                if values.ndim == 2:
                    flat = pa.array(values.reshape(-1))
                    batch = batch.append_column(
                        name, pa.FixedSizeListArray.from_arrays(flat, values.shape[1])
                    )
                else:
                    batch = batch.append_column(name, pa.array(values))
        return batch


class DomainFilter:
    """`map_batches` callable: keeps the rows of the selected domain ids."""

    def __init__(self, keep: list[int]):
        self.keep = np.asarray(keep, dtype=np.int64)

    def __call__(self, batch: pa.Table) -> pa.Table:
        mask = np.isin(batch.column("domain").to_numpy(), self.keep)
        return batch.filter(pa.array(mask))


def streamed_dataset(
    store: ArtifactStore,
    dataset: Dataset,
    split: str,
    teachers: list[LogitShards],
    settings: TrainingSettings | None = None,
) -> Any:
    """One split as a Ray Data dataset (files verified first), teacher columns joined."""
    import ray.data

    reader = x_reader(dataset)  # before any read: a storage it does not know is refused here
    filesystem, paths = split_source(store, dataset, [split])
    ds = ray.data.read_parquet(paths, filesystem=filesystem)
    if reader.storage != "float32":
        # Image pixels to float32 rows in the read tasks (fused with the read), a whole block
        # at a time (batch_size None): the blocks, hence the shuffled batches, stay as read.
        ds = ds.map_batches(reader.table, batch_format="pyarrow", batch_size=None)
    if settings is not None and (settings.domains is not None or settings.exclude_domains):
        keep = [
            i
            for i in dataset.domain_ids(settings.domains or dataset.domains)
            if i not in dataset.domain_ids(settings.exclude_domains)
        ]
        ds = ds.map_batches(DomainFilter, fn_constructor_args=(keep,), batch_format="pyarrow")
    if not teachers:
        return ds
    tables = [read_teacher_table(store, cache, split) for cache in teachers]
    return ds.map_batches(
        TeacherJoin,
        fn_constructor_args=(tables, [store.uri(c.path) for c in teachers]),
        batch_format="pyarrow",
        batch_size=1024,
        concurrency=1,
        num_cpus=0.5,
    )


def prepare_data(
    store: ArtifactStore,
    dataset: Dataset,
    settings: TrainingSettings,
    teachers: list[LogitShards] | None = None,
) -> TrainingData:
    """The train split (joined with ``teachers``' outputs) and the eval split, each held or
    streamed as `plan_data` decides."""
    teachers = teachers or []
    for cache in teachers:
        check_matches_dataset(cache, dataset)
        if "train" not in cache.splits:
            raise ValueError(
                f"the logit shards at {store.uri(cache.path)} do not cover the train split"
            )
    wanted = {"train": teachers, settings.eval_split: []}
    for split in wanted:
        dataset.split_path(split)  # a clear KeyError naming the splits there are
    dataset.domain_ids([*(settings.domains or []), *settings.exclude_domains])
    data = TrainingData()
    for split, how in plan_data(dataset, wanted, settings).items():
        if how == "held":
            data.held[split] = held_columns(store, dataset, split, wanted[split], settings)
        else:
            data.streamed[split] = streamed_dataset(store, dataset, split, wanted[split], settings)
    return data
