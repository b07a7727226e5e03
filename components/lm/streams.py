"""The data a language model trains on: packed token sequences (and, for a student, the
teacher's token cache beside them), held in memory or streamed, for the training loop.

Both paths give the loop the same columns per row: ``row_id``, ``x`` (the inputs
``tokens[:-1]``, int32), ``y`` (the next tokens ``tokens[1:]``, int32), ``mask`` (the targets
a loss counts: `components.text.packing.target_mask`) and, from a cache, the teacher's tensors
under `KDBatch`'s names (``teacher_topk_indices`` int32, ``teacher_topk_values`` as stored,
``teacher_rest_mass``; dense: ``teacher_logits``), (rows, T, ...).

- **held** (`held_columns`): a split that fits ``worker_cache_mb`` per worker is read once
  (verified), kept as numpy columns and fully reshuffled each epoch by the loop's
  `HeldBatches` (seeded: the same config trains the same weights on one CPU worker);
- **streamed** (`SequenceStream`): a larger split is read every epoch a unit at a time
  (`components.lm.stream_units`: a cache shard and its rows of the sequences, ``row_id``\\ s
  checked row by row), units in a seeded order, rows dealt to workers in turn (global row i to
  worker i mod world, each worker the same count, so DDP workers take the same number of
  steps), and shuffled through a seeded buffer of ``shuffle_buffer`` rows. In a Ray process the
  units are read through Ray Data at bounded object-store memory (`components.lm.ray_feed`),
  elsewhere in the worker's own process. Memory: a part, a few units and the buffer, whatever
  the corpus's size; training starts after the first unit. `StreamedRows.position` lets a
  checkpoint resume the epoch where it stood.

`plan` is the one place that chooses between them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from components.lm.stream_units import (
    Columns,
    Unit,
    UnitPlan,
    UnitReader,
    epoch_order,
    local_feed,
    plan_units,
    teacher_columns,
)
from components.training.batches import shuffle_seed
from components.training.data import TrainingData
from orchestrator import ArtifactStore
from schemas.kd.components.training import TrainingSettings
from schemas.kd.text import TokenSequences
from schemas.kd.token_cache import TokenCache

#: Rows read at a time from a part (or a part and its cache shard).
CHUNK_ROWS = 256


def row_chunks(
    store: ArtifactStore,
    sequences: TokenSequences,
    cache: TokenCache | None,
    split: str,
    *,
    across_documents: bool,
    rows: int = CHUNK_ROWS,
) -> Iterator[Columns]:
    """A split's rows in order, ``rows`` at a time, as columns (the module docstring), with
    the cache's teacher tensors when ``cache`` is given."""
    from components.artifacts.datasets import fixed_list_to_numpy
    from components.lm.cache import cached_batches
    from components.text.artifacts import read_part, split_files
    from components.text.packing import target_mask

    if cache is not None:
        for batch in cached_batches(
            store, sequences, cache, split, rows, across_documents=across_documents
        ):
            yield {
                "row_id": batch.row_id.astype(np.int64),
                "x": batch.inputs.numpy().astype(np.int32),
                "y": batch.targets.numpy().astype(np.int32),
                "mask": batch.mask.numpy(),
                **teacher_columns(batch.teacher, cache),
            }
        return
    width = sequences.seq_len + 1
    for name in split_files(store, sequences, split):
        for part in read_part(store, sequences, name).to_batches(max_chunksize=rows):
            tokens = fixed_list_to_numpy(part.column("tokens")).astype(np.int32, copy=False)
            length = part.column("length").to_numpy()
            yield {
                "row_id": part.column("row_id").to_numpy().astype(np.int64),
                "x": np.ascontiguousarray(tokens[:, :-1]),
                "y": np.ascontiguousarray(tokens[:, 1:]),
                "mask": target_mask(part.column("doc_starts"), length, width, across_documents),
            }


def row_bytes(sequences: TokenSequences, cache: TokenCache | None) -> int:
    """Bytes one held row takes: inputs, targets, mask and the teacher's tensors."""
    T = sequences.seq_len
    size = T * (4 + 4 + 1) + 8
    if cache is not None:
        width = 2 if cache.dtype == "float16" else 4
        if cache.encoding == "dense":
            size += T * cache.vocab_size * width
        else:
            size += T * ((cache.top_k or 0) * (4 + width) + 4)
    return size


def held_columns(
    store: ArtifactStore,
    sequences: TokenSequences,
    cache: TokenCache | None,
    split: str,
    settings: TrainingSettings,
    *,
    workers: int = 1,
) -> Columns:
    """A split in memory (rows in ``row_id`` order); with several ``workers``, cut to a
    multiple of them, so that each takes as many rows (and steps) as the others."""
    chunks = list(
        row_chunks(store, sequences, cache, split, across_documents=settings.across_documents)
    )
    if not chunks:
        raise ValueError(f"the token sequences' split '{split}' has no rows to train on")
    columns = {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}
    keep = len(columns["y"]) // workers * workers
    if keep == 0:
        raise ValueError(
            f"split '{split}' has {len(columns['y'])} rows, fewer than the {workers} workers"
        )
    return {name: values[:keep] for name, values in columns.items()}


@dataclass
class SequenceStream:
    """A split streamed every epoch (module docstring); `for_worker` gives the loop one
    worker's batches. Picklable: Ray Train workers read the store themselves."""

    store: ArtifactStore
    sequences: TokenSequences
    cache: TokenCache | None
    split: str
    #: Who reads the units: "ray" (Ray Data), "local" (this process), "auto" (Ray Data in a
    #: process connected to Ray with a fraction of a CPU free for the reader, else local).
    via: str = "auto"

    def for_worker(
        self, *, batch_size: int, shuffle: bool, settings: TrainingSettings, rank: int, world: int
    ) -> StreamedRows:
        return StreamedRows(self, batch_size, shuffle, settings, rank, world)


@dataclass
class StreamedRows:
    """One worker's batches of a `SequenceStream`: rows ``rank``, ``rank + world``, ... up to
    an equal count per worker, read a unit at a time (`components.lm.stream_units`: a cache
    shard and its sequence rows) in a seeded order, through a seeded shuffle buffer when
    ``shuffle``.

    Resumable mid-epoch: `position` says where the batches stood after the last one yielded
    (the epoch, the units fed to the buffer, the buffer's rows not yet yielded in their order,
    how many of them this pass yields, the shuffle generator's state: JSON, for a checkpoint);
    after `resume_from` the next `batches` of that epoch yields exactly the batches the
    interrupted one would have, reading again only the units whose rows were still in the
    buffer. ``units_read`` counts the units the epoch read (after a resume: since then)."""

    stream: SequenceStream
    batch_size: int
    shuffle: bool
    settings: TrainingSettings
    rank: int
    world: int
    units_read: int = 0
    _plan: UnitPlan | None = field(default=None, repr=False)
    _resume: dict[str, Any] | None = field(default=None, repr=False)
    _at: tuple[Any, ...] | None = field(default=None, repr=False)

    def plan(self) -> UnitPlan:
        if self._plan is None:
            s = self.stream
            self._plan = plan_units(s.store, s.sequences, s.cache, s.split)
        return self._plan

    def reader(self) -> UnitReader:
        s = self.stream
        across = self.settings.across_documents
        return UnitReader(s.store, s.sequences, s.cache, self.plan(), across)

    def position(self) -> dict[str, Any] | None:
        """Where the batches stand (class docstring); None before the first batch."""
        if self._at is None:
            return None
        epoch, fed, due, stop, rows, state = self._at
        ahead = rows[stop:].tolist()
        return {"epoch": epoch, "fed": fed, "due": due - stop, "ahead": ahead, "rng": state}

    def resume_from(self, position: dict[str, Any]) -> None:
        """The next `batches` of ``position``'s epoch goes on from there."""
        self._resume = position

    def _feed(self, units: list[Unit]) -> Iterator[Columns]:
        import ray

        from components.lm.ray_feed import READ_CPUS, ray_feed

        reader = self.reader()
        feed: Iterator[Columns] = iter(())
        via = self.stream.via
        if via == "auto":  # Ray Data when connected and a reader fits beside this worker
            free = ray.available_resources().get("CPU", 0.0) if ray.is_initialized() else 0.0
            via = "ray" if free >= READ_CPUS else "local"
        if units and via == "ray":
            longest = max(u.stop - u.start for u in units)
            unit_bytes = longest * row_bytes(self.stream.sequences, self.stream.cache)
            feed = ray_feed(reader, units, unit_bytes)
        elif units:
            feed = local_feed(reader, units)
        for columns in feed:
            self.units_read += 1
            yield columns

    def _mine(self, columns: Columns) -> Columns:
        rows = self.stream.sequences.splits[self.stream.split].sequences
        row_id = columns["row_id"]
        keep = (row_id % self.world == self.rank) & (row_id < rows // self.world * self.world)
        return {name: values[keep] for name, values in columns.items()}

    def _reread(self, ahead: np.ndarray) -> Columns:
        """The buffer's rows ``ahead`` (row ids, in order) read again from their units."""
        plan = self.plan()
        reader = self.reader()
        units = [plan.units[i] for i in np.unique(plan.units_of(ahead))]
        self.units_read += len(units)
        read = [reader.read(u) for u in units]
        joined = {n: np.concatenate([r[n] for r in read]) for n in read[0]}
        where = np.searchsorted(joined["row_id"], ahead)
        return {n: v[where] for n, v in joined.items()}

    def batches(self, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        size = self.settings.shuffle_buffer if self.shuffle else 0
        order = epoch_order(self.plan(), self.settings.seed, epoch, self.shuffle)
        generator = np.random.default_rng(shuffle_seed(self.settings.seed, epoch, self.rank))
        resume, self._resume = self._resume, None
        self.units_read = 0
        fed, due, buffer = 0, 0, None
        state = generator.bit_generator.state
        if resume is not None and resume["epoch"] == epoch:
            generator.bit_generator.state = state = resume["rng"]
            fed, due = resume["fed"], resume["due"]
            ahead = np.asarray(resume["ahead"], np.int64)
            buffer = self._reread(ahead) if len(ahead) else None
        feed = self._feed(order[fed:])
        while True:
            pending: list[Columns] = []
            if buffer is not None:
                for start in range(0, due, self.batch_size):
                    stop = min(start + self.batch_size, due)
                    self._at = (epoch, fed, due, stop, buffer["row_id"], state)
                    yield _tensors(buffer, np.arange(start, stop))
                pending = [{n: v[due:] for n, v in buffer.items()}]
            count = sum(len(p["row_id"]) for p in pending)
            exhausted = False
            while count < max(size, self.batch_size):
                columns = next(feed, None)
                if columns is None:
                    exhausted = True
                    break
                fed += 1
                pending.append(self._mine(columns))
                count += len(pending[-1]["row_id"])
            if not count:
                return
            joined = {n: np.concatenate([p[n] for p in pending]) for n in pending[0]}
            shuffled = generator.permutation(count) if size else np.arange(count)
            buffer = {n: v[shuffled] for n, v in joined.items()}
            state = generator.bit_generator.state
            due = count if exhausted else count - count % self.batch_size


def _tensors(columns: Columns, index: np.ndarray) -> dict[str, torch.Tensor]:
    return {name: torch.from_numpy(np.ascontiguousarray(v[index])) for name, v in columns.items()}


def plan(
    sequences: TokenSequences, splits: dict[str, TokenCache | None], settings: TrainingSettings
) -> dict[str, str]:
    """'held' or 'streamed' for each split: held when its rows (with the teacher's tensors)
    fit ``worker_cache_mb`` per worker."""
    budget = settings.worker_cache_mb * 2**20
    workers = settings.scaling.num_workers
    return {
        split: (
            "held"
            if sequences.splits[split].sequences * row_bytes(sequences, cache) / workers <= budget
            else "streamed"
        )
        for split, cache in splits.items()
    }


def prepare_data(
    store: ArtifactStore,
    sequences: TokenSequences,
    settings: TrainingSettings,
    cache: TokenCache | None = None,
) -> TrainingData:
    """The train split (with the teacher's cache) and the eval split, each held or streamed
    as `plan` decides."""
    wanted: dict[str, TokenCache | None] = {"train": cache, settings.eval_split: None}
    for split in wanted:
        sequences.split_path(split)  # a KeyError naming the splits there are
    if cache is not None:
        cache.split_path("train")
    data = TrainingData()
    for split, how in plan(sequences, wanted, settings).items():
        source = wanted[split]
        if how == "held":
            workers = settings.scaling.num_workers if split == "train" else 1
            data.held[split] = held_columns(
                store, sequences, source, split, settings, workers=workers
            )
        else:
            data.streamed[split] = SequenceStream(store, sequences, source, split)
    return data
