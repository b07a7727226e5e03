"""The teacher's token cache (`schemas.kd.token_cache.TokenCache`): its encodings, and the
readers that give a trainer, for a batch of sequence rows, the tensors the token losses read.

**Encoding** (`encode`): the teacher's logits (B, T, V) become, per position, the ``k`` most
likely next ids with their log-probabilities (the top-k of the logits, minus their
log-sum-exp: no (B, T, V) log-softmax is made) and the rest mass 1 - sum exp(top-k) computed in
float32 from the unrounded values, stored by one of the top-k encodings of
`components.lm.encodings` (plain, packed ids, quantised or delta-coded log-probabilities); or,
``dense``, every log-probability. Positions past a row's real ids hold zeros. A layout is named
by the artifact's ``encoding`` and ``format`` (`LAYOUTS`), and `decode` refuses one it does not
know: a new encoding is a new name, never a guess. `decode` gives every encoding's readers the
same tensors (`TeacherTargets`), so held and streamed training, lm_evaluate and the benchmarks
never see an encoding.

**Reading.** `cached_batches` streams a split of the sequences and its cache side by side, one
sequence part and one cache shard in memory, checks that their ``row_id``\\ s agree, and yields
`CachedBatch`\\ es: the inputs, next-token targets and target mask of the rows, and the teacher's
tensors at the same (row, position). `CachedBatch.loss_fields` names them as
`components.losses.base.KDBatch` does (``teacher_topk_indices``, ``teacher_topk_values``,
``teacher_rest_mass``; dense: ``teacher_logits``, log-probabilities being logits), for
``token_rows(mask, ...)``. `cache_source` hands the verified shard files to Ray Data instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch import Tensor

from components.artifacts.datasets import binary_rows, fixed_binary, fixed_list_to_numpy
from components.artifacts.logits import fixed_list
from components.lm import encodings
from orchestrator import ArtifactError, ArtifactStore
from schemas.kd.text import TokenSequences
from schemas.kd.token_cache import TokenCache

#: The layouts this code reads: (encoding, format) -> its teacher columns.
LAYOUTS: dict[tuple[str, int], tuple[str, ...]] = {
    **{key: tuple(encodings.columns(encodings.Params(key[0], 1, 2))) for key in encodings.CODECS},
    ("dense", 1): ("logprobs",),
}
_ARROW = {"float16": pa.float16(), "float32": pa.float32()}
_NUMPY = {"float16": np.float16, "float32": np.float32}


def params(cache: TokenCache) -> encodings.Params:
    """What `components.lm.encodings` needs to read a top-k cache, from its record."""
    return encodings.Params(
        encoding=cache.encoding,
        k=cache.top_k or 0,
        vocab=cache.vocab_size,
        dtype=cache.dtype,
        bits=cache.value_bits,
        step=cache.value_step,
    )


def encode(
    logits: Tensor, length: np.ndarray, codec: encodings.Params | None, dtype: str
) -> dict[str, pa.Array]:
    """The cache columns of a batch: ``logits`` (B, T, V) of rows with ``length`` real ids
    (T + 1 for a full row), by the top-k encoding ``codec`` (None: dense, stored as
    ``dtype``)."""
    logits = logits.float()
    rows, positions, vocab = logits.shape
    real = torch.as_tensor(np.asarray(length, np.int64) - 1, device=logits.device)
    pad = torch.arange(positions, device=logits.device)[None, :] >= real[:, None]  # (B, T)
    lse = torch.logsumexp(logits, dim=-1, keepdim=True)
    if codec is None:
        logprobs = (logits - lse).masked_fill_(pad[..., None], 0.0)
        return {"logprobs": _floats(logprobs.reshape(rows, -1), dtype)}
    values, ids = logits.topk(min(codec.k, vocab), dim=-1, sorted=True)
    values = values.sub_(lse)
    rest = (-torch.expm1(torch.logsumexp(values, dim=-1))).clamp_(0.0, 1.0)
    values.masked_fill_(pad[..., None], 0.0)
    ids.masked_fill_(pad[..., None], 0)
    rest.masked_fill_(pad, 0.0)
    k = values.shape[-1]
    arrays = encodings.encode_topk(
        codec,
        ids.reshape(-1, k).cpu().numpy(),
        values.reshape(-1, k).cpu().numpy(),
        rest.reshape(-1).cpu().numpy(),
    )
    types = encodings.columns(codec)
    return {
        name: _column(array.reshape(rows, -1), types[name][0]) for name, array in arrays.items()
    }


def _column(array: np.ndarray, kind: pa.DataType) -> pa.Array:
    """A row's values as a fixed-size list, or its bytes (``uint8``) as one fixed-size binary
    value."""
    return fixed_binary(array) if kind == pa.uint8() else fixed_list(array, kind)


def _column_numpy(column: pa.ChunkedArray) -> np.ndarray:
    """A fixed-size list or binary column as (rows, width) numpy, one copy at most."""
    if not pa.types.is_fixed_size_binary(column.type):
        return fixed_list_to_numpy(column)
    parts = [binary_rows(c) for c in column.chunks]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _floats(values: Tensor, dtype: str) -> pa.FixedSizeListArray:
    array = values.cpu().numpy().astype(_NUMPY[dtype], copy=False)
    return fixed_list(array, _ARROW[dtype])


@dataclass
class TeacherTargets:
    """The teacher's next-token distributions of a batch of rows, (B, T, ...) on the
    sequences' positions: position t is the distribution of the row's ``tokens[t + 1]``."""

    topk_ids: Tensor | None = None  # (B, T, k) int64, by descending log-probability
    topk_logprobs: Tensor | None = None  # (B, T, k) float32
    rest_mass: Tensor | None = None  # (B, T) float32: 1 - sum exp(topk_logprobs)
    logprobs: Tensor | None = None  # (B, T, V) float32 (dense)

    def loss_fields(self) -> dict[str, Tensor | None]:
        """The tensors under `KDBatch`'s names (``teacher_*``), still (B, T, ...)."""
        return {
            "teacher_topk_indices": self.topk_ids,
            "teacher_topk_values": self.topk_logprobs,
            "teacher_rest_mass": self.rest_mass,
            "teacher_logits": self.logprobs,
        }


def widths(cache: TokenCache) -> dict[str, int]:
    """Each teacher column's list width (values per row) as the record says."""
    if cache.encoding == "dense":
        return {"logprobs": cache.seq_len * cache.vocab_size}
    return {
        name: cache.seq_len * per_position
        for name, (_, per_position) in encodings.columns(params(cache)).items()
    }


def check_layout(table: pa.Table, cache: TokenCache, where: str) -> None:
    """Refuse an encoding this code does not know, and shards whose columns do not hold what
    the record says (a reader never guesses a layout)."""
    if (cache.encoding, cache.format) not in LAYOUTS:
        raise ArtifactError(
            f"the token cache at {where} is encoded as {cache.encoding!r} format {cache.format}, "
            f"which this kdorch does not read (it reads {sorted(LAYOUTS)}): upgrade kdorch, or "
            "recompute the cache"
        )
    for name, width in widths(cache).items():
        kind = table.schema.field(name).type if name in table.column_names else None
        found = getattr(kind, "list_size", None) or getattr(kind, "byte_width", None)
        if kind is None or found != width:
            raise ArtifactError(
                f"the token cache at {where} holds `{name}` as {kind or 'nothing'}, but its record "
                f"says {cache.encoding} k={cache.top_k} over {cache.seq_len} positions (width "
                f"{width}): shards and record disagree; recompute the lm_inference step"
            )


def decode(table: pa.Table, cache: TokenCache) -> TeacherTargets:
    """The teacher's tensors of a shard's rows (or a slice of them), float32 and int64,
    whatever the encoding (an unknown one is refused, `check_layout`)."""
    check_layout(table, cache, cache.path)
    rows, positions = table.num_rows, cache.seq_len
    if cache.encoding == "dense":
        array = fixed_list_to_numpy(table.column("logprobs"))
        array = array.reshape(rows, positions, cache.vocab_size)
        return TeacherTargets(logprobs=torch.from_numpy(np.require(array, np.float32, "W")))
    codec = params(cache)
    arrays = {
        name: _column_numpy(table.column(name)).reshape(rows * positions, -1)
        for name in encodings.columns(codec)
    }
    ids, values, rest = encodings.decode_topk(codec, arrays, cache.format)
    k = codec.k
    return TeacherTargets(
        topk_ids=ids.reshape(rows, positions, k),
        topk_logprobs=values.reshape(rows, positions, k),
        rest_mass=rest.reshape(rows, positions),
    )


def check_matches(cache: TokenCache, sequences: TokenSequences) -> None:
    """Refuse a cache computed on other sequences (or of another length)."""
    if cache.sequences_version != sequences.data_version or cache.seq_len != sequences.seq_len:
        raise ArtifactError(
            f"the token cache at {cache.path} was computed on sequences "
            f"{cache.sequences_version[:12]} (seq_len {cache.seq_len}), these are "
            f"{sequences.data_version[:12]} (seq_len {sequences.seq_len}): run lm_inference on "
            "these sequences"
        )


def shard_names(store: ArtifactStore, cache: TokenCache, split: str) -> list[str]:
    """The manifest's shards of one split, in order (a KeyError names an unknown split)."""
    from components.artifacts.datasets import check_split_name

    cache.split_path(split)
    prefix = f"{check_split_name(split)}/"
    return sorted(e.path for e in store.manifest(cache).files if e.path.startswith(prefix))


def read_shard(store: ArtifactStore, cache: TokenCache, name: str) -> pa.Table:
    """One shard, verified while it is parsed, its layout checked."""
    from components.artifacts.datasets import parquet_table

    table = store.read_parsed(cache, name, parquet_table, arrow_file=True)
    check_layout(table, cache, store.uri(f"{cache.path}/{name}"))
    return table


def read_cache(store: ArtifactStore, cache: TokenCache, split: str) -> pa.Table:
    """One split of the cache in memory (small caches, tests)."""
    return pa.concat_tables([read_shard(store, cache, n) for n in shard_names(store, cache, split)])


def cache_source(
    store: ArtifactStore, cache: TokenCache, splits: list[str]
) -> tuple[Any, list[str]]:
    """(pyarrow filesystem, shard paths) of splits, for Ray Data's ``read_parquet``; each
    shard is verified first (a stream cannot verify)."""
    names = [n for split in splits for n in shard_names(store, cache, split)]
    for name in names:
        store.verify_file(cache, store.entry(cache, name))
    return store.arrow_filesystem(), [store.fs_path(cache.file(n)) for n in names]


@dataclass
class CachedBatch:
    """Rows of token sequences with the teacher's targets at the same positions."""

    row_id: np.ndarray  # (B,)
    inputs: Tensor  # (B, T) int64: tokens[:-1]
    targets: Tensor  # (B, T) int64: tokens[1:], the next token of each position
    mask: Tensor  # (B, T) bool: the targets a loss counts (`target_mask`)
    teacher: TeacherTargets

    def loss_fields(self) -> dict[str, Tensor | None]:
        """``labels`` and the teacher's tensors, (B, T, ...): ``token_rows(batch.mask,
        student_logits=z, **batch.loss_fields())`` is a `KDBatch` of the counted tokens."""
        return {"labels": self.targets, **self.teacher.loss_fields()}


def _rebatched(tables: Iterator[pa.Table], size: int) -> Iterator[pa.Table]:
    """Tables of exactly ``size`` rows (the last one smaller) out of tables of any size."""
    pending: list[pa.Table] = []
    count = 0
    for table in tables:
        pending.append(table)
        count += table.num_rows
        while count >= size:
            joined = pa.concat_tables(pending)
            yield joined.slice(0, size)
            rest = joined.slice(size)
            pending, count = ([rest] if rest.num_rows else []), rest.num_rows
    if count:
        yield pa.concat_tables(pending)


def cached_batches(
    store: ArtifactStore,
    sequences: TokenSequences,
    cache: TokenCache,
    split: str,
    batch_size: int,
    *,
    across_documents: bool = False,
) -> Iterator[CachedBatch]:
    """A split's rows and their cache, ``batch_size`` rows at a time, in row order (see the
    module docstring); ``across_documents`` counts a document's first token as a target."""
    from components.text.artifacts import read_part, split_files
    from components.text.packing import target_mask

    check_matches(cache, sequences)
    width = sequences.seq_len + 1
    rows = _rebatched(
        (read_part(store, sequences, n) for n in split_files(store, sequences, split)), batch_size
    )
    shards = _rebatched(
        (read_shard(store, cache, n) for n in shard_names(store, cache, split)), batch_size
    )
    for seq, teacher in zip(rows, shards, strict=True):
        row_id = seq.column("row_id").to_numpy()
        if not np.array_equal(row_id, teacher.column("row_id").to_numpy()):
            raise ArtifactError(
                f"the token cache at {cache.path} is not aligned with its sequences (rows "
                f"{int(row_id[0])}.. of split {split}): recompute the lm_inference step"
            )
        tokens = torch.from_numpy(fixed_list_to_numpy(seq.column("tokens")).astype(np.int64))
        length = seq.column("length").to_numpy()
        mask = target_mask(seq.column("doc_starts"), length, width, across_documents)
        yield CachedBatch(
            row_id=row_id,
            inputs=tokens[:, :-1],
            targets=tokens[:, 1:],
            mask=torch.from_numpy(mask),
            teacher=decode(teacher, cache),
        )
