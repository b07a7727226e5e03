"""The `lm_inference` step's work: a teacher LM over packed token sequences, its next-token
distributions written as a `TokenCache` (`components.lm.cache` has the encodings).

**Streamed.** In the step's own process (one actor, the default) the sequences are read one
verified part file at a time and fed to the teacher ``batch_size`` rows at a time; with
``num_actors`` > 1, a Ray Data actor pool runs `TokenTeacher` (on GPUs with
``gpus_per_actor``), reading the verified part files of every split in one pipeline, in order.
Either way the encoded rows go to one `components.artifacts.logits.ShardWriter` per split
(the classifier cache's writer: fixed Parquet settings, so the same teacher on the same
sequences gives byte-identical shards and the same data version), which holds at most one
shard: memory is bounded by a part, a batch and a shard, whatever the corpus's size.

**Checked before writing** (`fit_problems`, with the messages `kdorch validate` gives from the
promises): the teacher is a causal LM of the sequences' tokenizer (vocabulary, special ids, and
the tokenizer's data version when the checkpoint records it), ``k`` fits the vocabulary, the
rows fit the teacher's positions.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from components.artifacts.logits import ShardWriter
from components.lm.checks import k_problem, positions_problem
from components.lm.specs import describe, positions_of, vocabulary_mismatch
from orchestrator import ArtifactStore, StepContext
from schemas.kd.artifacts import ModelCheckpoint
from schemas.kd.components.lm_inference import LMInferenceConfig
from schemas.kd.lm import CausalLMSpec
from schemas.kd.text import TokenSequences
from schemas.kd.token_cache import TokenCache, TokenCacheSplit

#: A shard holds about this many bytes of teacher columns at most (dense rows are large).
SHARD_BYTES = 64 << 20

if TYPE_CHECKING:  # torch is imported where the teacher runs, not by `kdorch validate`
    from components.lm.encodings import Params


class TokenTeacher:
    """Loads the teacher once (per actor); ``__call__(rows) -> cache rows``: a pyarrow table of
    sequences (``row_id``, ``tokens``, ``length``; a ``path`` column is passed through) to
    ``row_id`` and the encoded teacher columns. Computed in float32 in eval mode."""

    def __init__(
        self,
        store: ArtifactStore,
        teacher: ModelCheckpoint,
        codec: Params | None,
        dtype: str,
        use_gpu: bool = False,
        threads: int | None = None,
    ) -> None:
        import torch

        from components.artifacts.checkpoints import load_model

        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.device = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")
        model, _ = load_model(store, teacher, map_location=self.device)
        self.model = model.eval()
        self.codec, self.dtype = codec, dtype

    def __call__(self, rows: pa.Table) -> pa.Table:
        from components.artifacts.datasets import fixed_list_to_numpy
        from components.lm.cache import encode

        torch = self.torch
        tokens = fixed_list_to_numpy(rows.column("tokens"))
        ids = torch.from_numpy(tokens[:, :-1].astype(np.int64)).to(self.device)
        with torch.inference_mode():
            logits = self.model(ids)
            columns = encode(logits, rows.column("length").to_numpy(), self.codec, self.dtype)
        keep = ["row_id", *(["path"] if "path" in rows.column_names else [])]
        return pa.table({**{n: rows.column(n) for n in keep}, **columns})


def fit_problems(spec: Any, sequences: TokenSequences, k: int | None) -> list[str]:
    """Why ``spec``'s model cannot be the teacher of ``sequences`` (empty: it can)."""
    if not isinstance(spec, CausalLMSpec):
        return [
            f"the teacher is a {spec.arch} model (a classifier): lm_inference runs a causal "
            "language model (arch: causal_lm); for a classifier use teacher_inference"
        ]
    what = f"the teacher ({describe(spec)})"
    where = f"the sequences' tokenizer (data version {sequences.tokenizer_version[:12]})"
    vocab = spec.vocab_size or 0
    if vocab != sequences.vocab_size:
        return [vocabulary_mismatch(vocab, sequences.vocab_size, what, where)]
    problems = []
    record = spec.tokenizer
    if record is not None and (
        record.version != sequences.tokenizer_version
        or (record.eos_id, record.pad_id) != (sequences.eos_id, sequences.pad_id)
    ):
        problems.append(
            f"{what} was made for the tokenizer {record.version[:12]} (end id {record.eos_id}, "
            f"padding {record.pad_id}), the sequences were packed with {where} (end id "
            f"{sequences.eos_id}, padding {sequences.pad_id}): use one tokenizer for both"
        )
    if k is not None and k > vocab:
        problems.append(k_problem(k, vocab, what))
    positions = positions_of(spec, spec.config)
    if positions is not None and sequences.seq_len > positions:
        problems.append(positions_problem(sequences.seq_len, positions, "the sequences", what))
    return problems


def codec_of(cfg: LMInferenceConfig, vocab: int) -> Params | None:
    """The top-k encoding ``cfg`` asks for, with every parameter (None: dense)."""
    from components.lm.encodings import Params

    k = cfg.top_k()
    if k is None:
        return None
    return Params(cfg.encoding, min(k, vocab), vocab, cfg.dtype, cfg.value_bits(), cfg.value_step())


def _shard_rows(cfg: LMInferenceConfig, seq_len: int, vocab: int) -> int:
    """Rows per shard: the config's, fewer when a shard would exceed `SHARD_BYTES`."""
    per_position = (cfg.top_k() or 0) * 6 + 4 if cfg.encoding != "dense" else vocab * 2
    return max(1, min(cfg.rows_per_shard, SHARD_BYTES // (seq_len * per_position)))


def _in_process(
    ctx: StepContext,
    cfg: LMInferenceConfig,
    teacher: TokenTeacher,
    sequences: TokenSequences,
    writers: dict[str, ShardWriter],
) -> None:
    """One verified part file at a time, ``batch_size`` rows at a time."""
    from components.text.artifacts import read_part, split_files

    for split, writer in writers.items():
        for name in split_files(ctx.store, sequences, split):
            part = read_part(ctx.store, sequences, name)
            for batch in part.to_batches(max_chunksize=cfg.batch_size):
                writer.add(teacher(pa.Table.from_batches([batch])))


def _actor_pool(
    ctx: StepContext,
    cfg: LMInferenceConfig,
    args: dict[str, Any],
    sequences: TokenSequences,
    writers: dict[str, ShardWriter],
) -> None:
    """Every split through one Ray Data actor pool (one start-up), in order; each row's
    source file routes it to its split's writer."""
    from components.inference.actor_pool import pool_batches
    from components.text.artifacts import sequence_source

    source = sequence_source(ctx.store, sequences, list(writers))
    for split, rows in pool_batches(cfg, source, TokenTeacher, args):
        writers[split].add(rows)


def write_cache(
    ctx: StepContext, cfg: LMInferenceConfig, teacher: ModelCheckpoint, sequences: TokenSequences
) -> TokenCache:
    """The teacher's cache of every split ``cfg`` names (default: all), written under the
    step's ``cache`` output; nothing is written when the teacher does not fit the sequences.

    Raises:
        ValueError: a split the sequences lack, or the teacher does not fit them
            (`fit_problems`).
    """
    from components.artifacts.datasets import check_split_name
    from components.text.artifacts import removed_on_error

    splits = cfg.splits or list(sequences.splits)
    for split in splits:
        sequences.split_path(split)  # a KeyError naming the splits it has, before any work
    problems = fit_problems(teacher.model, sequences, cfg.top_k())
    if problems:
        raise ValueError("; ".join(problems))
    started = time.perf_counter()
    rows = _shard_rows(cfg, sequences.seq_len, sequences.vocab_size)
    codec = codec_of(cfg, sequences.vocab_size)
    args: dict[str, Any] = {"store": ctx.store, "teacher": teacher, "codec": codec}
    args |= {"dtype": cfg.dtype, "use_gpu": cfg.gpus_per_actor > 0}
    with removed_on_error(ctx.store, ctx.output_path("cache")) as path:
        writers = {s: ShardWriter(ctx.store, f"{path}/{check_split_name(s)}", rows) for s in splits}
        if cfg.runs_in_process():
            threads = max(1, int(ctx.resources.num_cpus or cfg.cpus_per_actor))
            _in_process(ctx, cfg, TokenTeacher(**args, threads=threads), sequences, writers)
        else:
            _actor_pool(ctx, cfg, args, sequences, writers)
        done = {s: _split(w, sequences, s) for s, w in writers.items()}
    seconds = time.perf_counter() - started
    tokens, size = sum(d.tokens for d in done.values()), sum(d.bytes for d in done.values())
    for split, d in done.items():
        ctx.log(
            "%s: %s tokens in %d rows, %d shards, %.1f MB (%.1f bytes/token)",
            *(split, f"{d.tokens:,}", d.sequences, d.shards, d.bytes / 2**20),
            d.bytes / max(d.tokens, 1),
        )
    ctx.log("%s tokens in %.1f s: %.0f tokens/s", f"{tokens:,}", seconds, tokens / seconds)
    return TokenCache(
        path=path,
        encoding=cfg.encoding,
        top_k=cfg.top_k(),
        dtype=cfg.dtype,
        id_bits=codec.id_bits if codec is not None and cfg.encoding != "topk" else None,
        value_bits=cfg.value_bits(),
        value_step=cfg.value_step(),
        vocab_size=sequences.vocab_size,
        seq_len=sequences.seq_len,
        splits=done,
        tokens=tokens,
        bytes=size,
        bytes_per_token=round(size / max(tokens, 1), 3),
        teacher_version=teacher.data_version,
        sequences_version=sequences.data_version,
        tokenizer_version=sequences.tokenizer_version,
    )


def _split(writer: ShardWriter, sequences: TokenSequences, split: str) -> TokenCacheSplit:
    """A finished split. Its positions with a real next token: the split's stream of N tokens
    is cut into rows that overlap by one id, so every token but the first is a target once."""
    rows = writer.close()
    return TokenCacheSplit(
        sequences=rows,
        tokens=max(sequences.splits[split].tokens - 1, 0),
        shards=writer.shards,
        bytes=writer.bytes,
    )
