"""The token cache's top-k encodings round-trip (`components.lm.encodings`, through
`components.lm.cache.encode`/`decode` and real Parquet bytes): ids exactly, log-probabilities
exactly where the encoding is lossless and within its documented bound where it is lossy, on
random distributions of many shapes and on the extremes (a one-hot distribution, a uniform
one, -inf log-probabilities, vocabularies of 2, 300 and 2**17 ids, k = V, padding)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from components.artifacts.logits import SHARD_OPTIONS
from components.lm import encodings
from components.lm.cache import LAYOUTS, decode, encode
from orchestrator import ArtifactError
from schemas.kd.token_cache import TokenCache, TokenCacheSplit

ENCODINGS: list[tuple[str, dict[str, Any]]] = [
    ("topk", {"dtype": "float32"}),
    ("topk", {"dtype": "float16"}),
    ("topk_packed", {"dtype": "float16"}),
    ("topk_quant", {"bits": 8}),
    ("topk_quant", {"bits": 3}),
    ("topk_delta", {"step": 1 / 32}),
    ("topk_delta", {"step": 1 / 4}),
]
NAMES = [f"{e}-{'-'.join(str(v) for v in o.values())}" for e, o in ENCODINGS]


def codec(encoding: str, options: dict, k: int, vocab: int) -> encodings.Params:
    return encodings.Params(
        encoding,
        k,
        vocab,
        options.get("dtype", "float16"),
        options.get("bits"),
        options.get("step"),
    )


def record(p: encodings.Params, seq_len: int) -> TokenCache:
    """The artifact's record of a cache of this encoding (what a reader decodes by)."""
    return TokenCache(
        path="cache",
        encoding=p.encoding,
        top_k=p.k,
        dtype=p.dtype,
        id_bits=None if p.encoding == "topk" else p.id_bits,
        value_bits=p.bits,
        value_step=p.step,
        vocab_size=p.vocab,
        seq_len=seq_len,
        splits={"train": TokenCacheSplit(sequences=1, tokens=1, shards=1, bytes=1)},
        tokens=1,
        bytes=1,
        bytes_per_token=1.0,
        teacher_version="t",
        sequences_version="s",
        tokenizer_version="v",
    )


def round_trip(
    p: encodings.Params, logits: torch.Tensor, length: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, values, rest) the teacher's logits give, and what the cache returns for them
    after a trip through Parquet bytes written with the shard writer's settings."""
    columns = encode(logits, length, p, "float32")
    table = pa.table(columns)
    sink = io.BytesIO()
    pq.write_table(table, sink, **{**SHARD_OPTIONS, "use_byte_stream_split": False})
    back = decode(pq.read_table(io.BytesIO(sink.getvalue())), record(p, logits.shape[1]))
    # As the teacher's side computes them: the top-k of the logits, minus their log-sum-exp.
    values, ids = logits.float().topk(p.k, dim=-1)
    values = values - torch.logsumexp(logits.float(), -1, keepdim=True)
    rest = (-torch.expm1(torch.logsumexp(values, -1))).clamp(0, 1)
    assert back.topk_ids is not None and back.topk_logprobs is not None
    assert back.rest_mass is not None
    return ids, values, rest, back.topk_ids, back.topk_logprobs, back.rest_mass


def bound(p: encodings.Params, values: torch.Tensor) -> torch.Tensor:
    """The most a decoded log-probability may be off, per position (B, T, 1)."""
    v = values.double().clamp(min=encodings.LOGPROB_FLOOR)
    top, low = v[..., :1], v[..., -1:]
    if p.encoding in ("topk", "topk_packed"):
        eps = 2.0**-11 if p.dtype == "float16" else 2.0**-24
        return v.abs().amax(-1, keepdim=True) * eps + 2e-6  # float32 sums: ~1e-7 apart
    if p.encoding == "topk_quant":
        grid = (top - low) / ((1 << (p.bits or 8)) - 1)
        return grid * (0.5 + 2.0**-10) + top.abs().clamp(min=6.2e-5) * 2.0**-11 + 1e-6
    assert p.step is not None
    kept = torch.logsumexp(v, -1, keepdim=True)  # log(1 - rest): its float16 rounding
    return p.step + kept.abs() * 2.0**-11 + 2.0**-24 + 1e-6


def assert_round_trip(p: encodings.Params, logits: torch.Tensor, length: np.ndarray) -> None:
    ids, values, rest, got_ids, got_values, got_rest = round_trip(p, logits, length)
    real = torch.arange(logits.shape[1])[None, :] < torch.as_tensor(length - 1)[:, None]
    torch.testing.assert_close(got_ids[real], ids[real], rtol=0, atol=0)
    finite = values[real] > encodings.LOGPROB_FLOOR
    error = (got_values[real] - values[real]).abs().double()
    limit = bound(p, values)[real].expand_as(error)
    assert (error[finite] <= limit[finite]).all(), float((error - limit)[finite].max())
    rest_error = 0.0 if p.encoding != "topk_delta" else 2.0**-10
    assert (got_rest[real] - rest[real]).abs().max() <= rest_error + 1e-5  # float32 sums
    assert (got_ids[~real] == 0).all() and (got_rest[~real] == 0).all()  # padding


@pytest.mark.parametrize(("encoding", "options"), ENCODINGS, ids=NAMES)
@pytest.mark.parametrize("vocab", [2, 3, 300, 2048])
def test_random_distributions_round_trip(encoding: str, options: dict, vocab: int) -> None:
    generator = torch.Generator().manual_seed(vocab)
    for k in sorted({1, min(5, vocab), min(32, vocab), vocab}):
        for spread in (0.5, 3.0, 12.0):  # flat, typical, very peaked
            logits = torch.randn(3, 9, vocab, generator=generator) * spread
            length = np.array([10, 7, 1])  # a full row, a padded one, one with no target
            assert_round_trip(codec(encoding, options, k, vocab), logits, length)


@pytest.mark.parametrize(("encoding", "options"), ENCODINGS, ids=NAMES)
def test_extreme_distributions_round_trip(encoding: str, options: dict) -> None:
    vocab = 300
    one_hot = torch.full((1, 2, vocab), -1e4)
    one_hot[0, :, 7] = 10.0  # all the mass on one id: rest 0
    uniform = torch.zeros((1, 2, vocab))  # k ids of 1/V each, rest 1 - k/V
    masked = torch.randn(1, 2, vocab)
    masked[..., 20:] = float("-inf")  # only 20 ids possible: the rest of a top-32 is -inf
    full = np.array([3])
    for logits in (one_hot, uniform, masked):
        assert_round_trip(codec(encoding, options, 32, vocab), logits, full)
    _, _, rest, _, got_values, got_rest = round_trip(
        codec(encoding, options, 32, vocab), masked, full
    )
    assert float(rest.max()) <= 1e-6 and float(got_rest.max()) <= 2.0**-10 + 1e-6
    low = got_values[..., 20:]  # -inf: kept as -inf or at the floor, mass below 1e-27
    assert (torch.isneginf(low) | (low <= encodings.LOGPROB_FLOOR + 0.5)).all()
    _, _, rest, _, _, got_rest = round_trip(codec(encoding, options, 32, vocab), one_hot, full)
    assert float(rest.max()) <= 1e-6 and float(got_rest.max()) <= 2e-6


@pytest.mark.parametrize(("encoding", "options"), ENCODINGS, ids=NAMES)
def test_a_vocabulary_of_2_17_ids(encoding: str, options: dict) -> None:
    vocab = 1 << 17
    logits = torch.randn(1, 3, vocab, generator=torch.Generator().manual_seed(0)) * 4
    assert encodings.id_bits(vocab) == 17
    assert_round_trip(codec(encoding, options, 64, vocab), logits, np.array([4]))


def test_bit_packing_is_exact_at_every_width() -> None:
    generator = np.random.default_rng(0)
    for bits in range(1, 33):
        values = generator.integers(0, 1 << bits, size=(17, 13))
        values[0] = (1 << bits) - 1  # the largest value
        packed = encodings.pack_bits(values, bits)
        assert packed.shape == (17, (13 * bits + 7) // 8)
        np.testing.assert_array_equal(encodings.unpack_bits(packed, 13, bits), values)
    assert [encodings.id_bits(v) for v in (2, 3, 4, 5, 300, 2048, 2049)] == [1, 2, 2, 3, 9, 11, 12]


def test_the_packed_encodings_are_smaller() -> None:
    """At k = 32 over 2,048 ids, per position: int32 ids 128 bytes, packed 44; float16
    values 64 bytes, 8-bit codes 32, delta-coded gaps 2 x 32 (before zstd)."""
    sizes = {}
    for encoding, options in ENCODINGS:
        p = codec(encoding, options, 32, 2048)
        sizes[encoding, str(options)] = sum(w for _, w in encodings.columns(p).values())
    assert sizes["topk", "{'dtype': 'float16'}"] == 32 + 32 + 1
    assert sizes["topk_packed", "{'dtype': 'float16'}"] == 44 + 32 + 1
    assert sizes["topk_quant", "{'bits': 8}"] == 44 + 32 + 3
    assert sizes["topk_quant", "{'bits': 3}"] == 44 + 12 + 3


def test_an_unknown_layout_is_refused_by_name() -> None:
    p = codec("topk_delta", {"step": 1 / 32}, 4, 300)
    table = pa.table(encode(torch.randn(2, 5, 300), np.array([6, 6]), p, "float32"))
    newer = record(p, 5).model_copy(update={"format": 2})
    with pytest.raises(ArtifactError, match=r"encoded as 'topk_delta' format 2, which this"):
        decode(table, newer)
    unknown = TokenCache.model_validate({**record(p, 5).model_dump(), "encoding": "topk_zip"})
    with pytest.raises(ArtifactError, match=r"'topk_zip' format 1, which this kdorch does not"):
        decode(table, unknown)
    assert ("topk_delta", 1) in LAYOUTS and ("dense", 1) in LAYOUTS
    other = record(p, 5).model_copy(update={"encoding": "topk_quant", "value_bits": 8})
    with pytest.raises(ArtifactError, match=r"holds `logprob_codes` as nothing"):
        decode(table, other)
