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
- **streamed** (`SequenceStream`): a larger split is read every epoch one sequence part and
  one cache shard at a time (`components.lm.cache.cached_batches`: ``row_id``\\ s checked
  row by row), rows dealt to workers in turn (global row i to worker i mod world, each worker
  the same count, so DDP workers take the same number of steps), and shuffled through a
  seeded buffer of ``shuffle_buffer`` rows. Memory: a part, a shard and the buffer, whatever
  the corpus's size. Not Ray Data: a split and its cache are two aligned row streams, which a
  zip of two files at a time serves without a join.

`plan` is the one place that chooses between them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from components.training.batches import shuffle_seed
from components.training.data import TrainingData
from orchestrator import ArtifactStore
from schemas.kd.components.training import TrainingSettings
from schemas.kd.text import TokenSequences
from schemas.kd.token_cache import TokenCache

Columns = dict[str, np.ndarray]
#: Rows read at a time from a part (or a part and its cache shard).
CHUNK_ROWS = 256


def _teacher_columns(teacher: Any, cache: TokenCache) -> Columns:
    """A decoded `TeacherTargets` in the compact dtypes the cache stores."""
    values = np.float16 if cache.dtype == "float16" else np.float32
    if cache.encoding == "dense":
        return {"teacher_logits": teacher.logprobs.numpy().astype(values)}
    return {
        "teacher_topk_indices": teacher.topk_ids.numpy().astype(np.int32),
        "teacher_topk_values": teacher.topk_logprobs.numpy().astype(values),
        "teacher_rest_mass": teacher.rest_mass.numpy(),
    }


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
                **_teacher_columns(batch.teacher, cache),
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

    def for_worker(
        self, *, batch_size: int, shuffle: bool, settings: TrainingSettings, rank: int, world: int
    ) -> StreamedRows:
        return StreamedRows(self, batch_size, shuffle, settings, rank, world)


@dataclass
class StreamedRows:
    """One worker's batches of a `SequenceStream`: rows ``rank``, ``rank + world``, ... up to
    an equal count per worker, through a seeded shuffle buffer when ``shuffle``."""

    stream: SequenceStream
    batch_size: int
    shuffle: bool
    settings: TrainingSettings
    rank: int
    world: int

    def _mine(self) -> Iterator[Columns]:
        s = self.stream
        quota = s.sequences.splits[self.split_name].sequences // self.world
        taken = 0
        for chunk in row_chunks(
            s.store,
            s.sequences,
            s.cache,
            s.split,
            across_documents=self.settings.across_documents,
        ):
            pick = np.flatnonzero(chunk["row_id"] % self.world == self.rank)[: quota - taken]
            taken += len(pick)
            if len(pick):
                yield {name: values[pick] for name, values in chunk.items()}
            if taken >= quota:
                return

    @property
    def split_name(self) -> str:
        return self.stream.split

    def batches(self, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        size = self.settings.shuffle_buffer if self.shuffle else 0
        generator = np.random.default_rng(shuffle_seed(self.settings.seed, epoch, self.rank))
        pending: list[Columns] = []
        count = 0
        for chunk in self._mine():
            pending.append(chunk)
            count += len(chunk["y"])
            if count >= max(size, self.batch_size):
                buffer = {n: np.concatenate([c[n] for c in pending]) for n in pending[0]}
                order = generator.permutation(count) if size else np.arange(count)
                cut = count - count % self.batch_size
                for start in range(0, cut, self.batch_size):
                    yield _tensors(buffer, order[start : start + self.batch_size])
                rest = order[cut:]
                pending = [{n: v[rest] for n, v in buffer.items()}] if len(rest) else []
                count = len(rest)
        if count:
            buffer = {n: np.concatenate([c[n] for c in pending]) for n in pending[0]}
            order = generator.permutation(count) if size else np.arange(count)
            for start in range(0, count, self.batch_size):
                yield _tensors(buffer, order[start : start + self.batch_size])


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
