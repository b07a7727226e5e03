"""The units a streamed split is read in, and the readers that serve them.

A **unit** is a range of a split's rows ``[start, stop)`` (``row_id``\\ s, contiguous from 0 in
the files' order): with a token cache, exactly the rows of one cache shard (the shard writer
gives every shard the same row count but the last); without one, up to `UNIT_ROWS` rows of
one sequence part. A unit is what a streamed epoch takes at a time, what its order shuffles
and what a mid-epoch checkpoint counts as finished: a resumed epoch reads none of its finished
units again (`components.lm.streams.StreamedRows`).

`plan_units` learns the ranges from Parquet footers (the first shard's and each part's: a few
small reads, unverified; each file is verified when it is read whole). `UnitReader` reads a
unit: its cache shard (verified, its layout checked, decoded by
`components.lm.cache.decode`, whatever the encoding) and its rows of the sequence parts (each
part verified whole; the last two parts read are kept, so a part is read once per pass of its
units). `local_feed` reads the units in this process, one at a time; `components.lm.ray_feed`
reads them through Ray Data when the process is part of a Ray cluster.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from orchestrator import ArtifactError, ArtifactStore
from schemas.engine.artifacts import ArtifactRef
from schemas.kd.text import TokenSequences
from schemas.kd.token_cache import TokenCache

Columns = dict[str, np.ndarray]
#: Rows per unit of a split streamed without a cache.
UNIT_ROWS = 1024


@dataclass(frozen=True)
class Unit:
    """Rows ``[start, stop)`` of a split; ``shard``: the cache shard holding exactly them."""

    index: int
    start: int
    stop: int
    shard: str | None = None


@dataclass(frozen=True)
class UnitPlan:
    """A split's units, and its sequence parts as (file, first row, past the last row)."""

    units: tuple[Unit, ...]
    parts: tuple[tuple[str, int, int], ...]

    @property
    def rows(self) -> int:
        return self.parts[-1][2] if self.parts else 0

    def part_of(self, row: int) -> int:
        """The index of the part holding ``row``."""
        stops = [stop for _, _, stop in self.parts]
        return int(np.searchsorted(stops, row, side="right"))

    def units_of(self, rows: np.ndarray) -> np.ndarray:
        """The index of the unit of each row id."""
        starts = np.array([u.start for u in self.units])
        return np.searchsorted(starts, rows, side="right") - 1


def footer_rows(store: ArtifactStore, ref: ArtifactRef, name: str) -> int:
    """Rows of a Parquet file of an artifact, from its footer alone."""
    import pyarrow.parquet as pq

    with store.arrow_filesystem().open_input_file(store.fs_path(ref.file(name))) as f:
        return int(pq.ParquetFile(f).metadata.num_rows)


def plan_units(
    store: ArtifactStore, sequences: TokenSequences, cache: TokenCache | None, split: str
) -> UnitPlan:
    """The units of a split (module docstring)."""
    from components.lm.cache import check_matches, shard_names
    from components.text.artifacts import split_files

    parts, start = [], 0
    for name in split_files(store, sequences, split):
        rows = footer_rows(store, sequences, name)
        parts.append((name, start, start + rows))
        start += rows
    units: list[tuple[int, int, str | None]]
    if cache is None:
        units = [
            (first, min(first + UNIT_ROWS, stop), None)
            for _, begin, stop in parts
            for first in range(begin, stop, UNIT_ROWS)
        ]
    else:
        check_matches(cache, sequences)
        shards = shard_names(store, cache, split)
        per = footer_rows(store, cache, shards[0]) if shards else 1
        if len(shards) != math.ceil(start / per):
            raise ArtifactError(
                f"the token cache at {cache.path} has {len(shards)} shards of {per} rows for "
                f"split {split}'s {start} rows: shards and sequences disagree; recompute the "
                "lm_inference step"
            )
        units = [(i * per, min((i + 1) * per, start), n) for i, n in enumerate(shards)]
    return UnitPlan(
        units=tuple(Unit(i, a, b, shard) for i, (a, b, shard) in enumerate(units)),
        parts=tuple(parts),
    )


def teacher_columns(teacher: Any, cache: TokenCache) -> Columns:
    """A decoded `TeacherTargets` in the compact dtypes the cache stores."""
    values = np.float16 if cache.dtype == "float16" else np.float32
    if cache.encoding == "dense":
        return {"teacher_logits": teacher.logprobs.numpy().astype(values)}
    return {
        "teacher_topk_indices": teacher.topk_ids.numpy().astype(np.int32),
        "teacher_topk_values": teacher.topk_logprobs.numpy().astype(values),
        "teacher_rest_mass": teacher.rest_mass.numpy(),
    }


class UnitReader:
    """Reads units' columns (module docstring); ``reads`` counts the files read whole."""

    def __init__(
        self,
        store: ArtifactStore,
        sequences: TokenSequences,
        cache: TokenCache | None,
        plan: UnitPlan,
        across_documents: bool,
    ) -> None:
        self.store, self.sequences, self.cache, self.plan = store, sequences, cache, plan
        self.across_documents = across_documents
        self.reads: Counter[str] = Counter()
        self._parts: dict[int, pa.Table] = {}

    def _part(self, index: int) -> pa.Table:
        from components.text.artifacts import read_part

        if index not in self._parts:
            name = self.plan.parts[index][0]
            self._parts[index] = read_part(self.store, self.sequences, name)
            self.reads[name] += 1
            while len(self._parts) > 2:  # the oldest first
                del self._parts[next(iter(self._parts))]
        return self._parts[index]

    def rows(self, unit: Unit) -> pa.Table:
        """The sequence rows of ``unit``, from the part(s) holding them."""
        pieces = []
        for index in range(self.plan.part_of(unit.start), self.plan.part_of(unit.stop - 1) + 1):
            _, first, stop = self.plan.parts[index]
            begin, end = max(unit.start, first), min(unit.stop, stop)
            pieces.append(self._part(index).slice(begin - first, end - begin))
        return pa.concat_tables(pieces)

    def read(self, unit: Unit) -> Columns:
        """``row_id``, ``x``, ``y``, ``mask`` of the unit's rows, and the teacher's columns."""
        from components.artifacts.datasets import fixed_list_to_numpy
        from components.lm.cache import decode, read_shard
        from components.text.packing import target_mask

        seq = self.rows(unit)
        row_id = seq.column("row_id").to_numpy().astype(np.int64)
        if not np.array_equal(row_id, np.arange(unit.start, unit.stop)):
            raise ArtifactError(
                f"the token sequences at {self.sequences.path} do not number their rows "
                f"{unit.start}..{unit.stop - 1} in order: recompute the pack_tokens step"
            )
        tokens = fixed_list_to_numpy(seq.column("tokens")).astype(np.int32, copy=False)
        width = self.sequences.seq_len + 1
        length = seq.column("length").to_numpy()
        columns = {
            "row_id": row_id,
            "x": np.ascontiguousarray(tokens[:, :-1]),
            "y": np.ascontiguousarray(tokens[:, 1:]),
            "mask": target_mask(seq.column("doc_starts"), length, width, self.across_documents),
        }
        if self.cache is not None and unit.shard is not None:
            table = read_shard(self.store, self.cache, unit.shard)
            self.reads[unit.shard] += 1
            if not np.array_equal(table.column("row_id").to_numpy(), row_id):
                raise ArtifactError(
                    f"the token cache at {self.cache.path} is not aligned with its sequences "
                    f"({unit.shard}): recompute the lm_inference step"
                )
            columns |= teacher_columns(decode(table, self.cache), self.cache)
        return columns


def local_feed(reader: UnitReader, units: list[Unit]) -> Iterator[Columns]:
    """The units' columns, read in this process one at a time."""
    for unit in units:
        yield reader.read(unit)


def epoch_order(plan: UnitPlan, seed: int, epoch: int, shuffle: bool) -> list[Unit]:
    """The units of an epoch in the order it reads them: shuffled (seeded) within the units
    that start in the same sequence part, parts in order, so that each part is read once."""
    if not shuffle:
        return list(plan.units)
    generator = np.random.default_rng([seed, epoch, 19])
    groups: dict[int, list[Unit]] = {}
    for unit in plan.units:
        groups.setdefault(plan.part_of(unit.start), []).append(unit)
    return [
        group[i] for _, group in sorted(groups.items()) for i in generator.permutation(len(group))
    ]
