"""The top-k encodings of the teacher's token cache: how a position's k ids, their
log-probabilities and the rest mass become Parquet columns, and back (`schemas.kd.token_cache`
names them; the guide is docs/language_models.md, "Choosing an encoding").

Every encoder takes a batch of positions as numpy arrays: ``ids`` (N, k) int64 by descending
log-probability, ``values`` (N, k) float32 log-probabilities and ``rest`` (N,) float32, the
mass outside the top-k (computed from the unrounded values). It returns, per column, an
(N, width) array; `components.lm.cache` lays each out as one fixed-size list per sequence row.
Every decoder takes those arrays back and returns (ids int64, values float32, rest float32)
tensors. All of it is array code: no Python loop runs per position.

- ``topk`` (format 1): ids as int32, values as float16/float32, rest as float32: lossless but
  for the float16 rounding;
- ``topk_packed``: the same, ids bit-packed at ceil(log2 V) bits (lossless);
- ``topk_quant``: ids packed; the values quantised to ``bits`` (<= 8) bits on a per-position
  uniform grid from the top log-probability (``logprob_offset``, float16) down to the lowest
  (``logprob_scale``: the grid's step, float16); rest as float32. Error <= scale / 2 plus the
  offset's float16 rounding;
- ``topk_delta`` (ours): ids packed; the values as the gaps to the top log-probability on a
  fixed grid of ``step`` nats, which the sorting makes non-decreasing integers, stored as their
  differences: small non-negative numbers (at 1/8 nat mostly 0 to 3 on a real teacher), kept
  in 4 bits each (``gap_nibbles``) with what exceeds 15 in two byte planes (``gap_excess``,
  almost all zeros, which zstd reduces to nearly nothing); no top value is stored: the decoder
  recovers it from the kept mass, log(1 - rest), stored as float16 (``kept_log``), so that the
  decoded top-k mass is exactly 1 - rest. Error <= step (half a step of rounding, half a step
  at most from the recovered top) plus the float16 rounding of ``kept_log``.

Byte streams (``uint8`` columns: packed ids, codes, gaps) are stored as one fixed-size binary
value per sequence row, not as a list of integers: Parquet would widen each byte to an int32
with repetition levels (a packed id stream then took more room on disk than int32 ids).

Log-probabilities below `LOGPROB_FLOOR` (-inf included: a masked id) are stored as the floor by
the quantised encodings (their probability is below 1e-27 either way).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch
from torch import Tensor

from schemas.kd.components.lm_inference import DEFAULT_BITS, DEFAULT_STEP

#: The lowest log-probability the quantised encodings keep (exp(-64) ~ 1.6e-28).
LOGPROB_FLOOR = -64.0
#: topk_delta: a gap step below this is stored in 4 bits, the excess in two byte planes.
NIBBLE = 15
#: Encodings that keep the top-k ids (all but ``dense``), with their format.
TOPK_ENCODINGS = ("topk", "topk_packed", "topk_quant", "topk_delta")

Arrays = dict[str, np.ndarray]
Decoded = tuple[Tensor, Tensor, Tensor]


def id_bits(vocab: int) -> int:
    """Bits an id of a ``vocab``-token vocabulary takes packed: ceil(log2 V), at least 1."""
    return max(1, (vocab - 1).bit_length())


@dataclass(frozen=True)
class Params:
    """Everything an encoder or a decoder needs (the cache's record holds it all)."""

    encoding: str
    k: int
    vocab: int
    dtype: str = "float16"  # topk / topk_packed: the values' storage
    bits: int | None = None  # topk_quant: bits per log-probability
    step: float | None = None  # topk_delta: the grid's step, nats

    @property
    def id_bits(self) -> int:
        return id_bits(self.vocab)


def _byte_width(bits: int) -> int:
    return 1 if bits <= 8 else 2 if bits <= 16 else 4


def pack_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """(N, w) non-negative integers below 2**bits -> (N, ceil(w * bits / 8)) uint8, each
    value's bits most significant first, one value after the other."""
    n, w = values.shape
    size = _byte_width(bits)
    raw = np.ascontiguousarray(values.astype(f">u{size}")).view(np.uint8).reshape(n, w, size)
    if bits == size * 8:  # whole bytes: nothing to squeeze
        return raw.reshape(n, w * size)
    planes = np.unpackbits(raw, axis=2)[:, :, size * 8 - bits :]
    return np.packbits(planes.reshape(n, w * bits), axis=1)


def unpack_bits(packed: np.ndarray, count: int, bits: int) -> np.ndarray:
    """`pack_bits`'s inverse: (N, bytes) uint8 -> (N, count) int64. Each value is read from the
    (up to four) bytes it spans, gathered column-wise: no per-bit expansion."""
    n = packed.shape[0]
    size = _byte_width(bits)
    if bits == size * 8:
        whole = np.ascontiguousarray(packed).view(f">u{size}")
        return whole.reshape(n, count).astype(np.int64)
    span = (bits + 14) // 8  # bytes a value can touch
    if span > 4:  # 26 bits and more: expand the bits (no vocabulary of kdorch's is that large)
        planes = np.unpackbits(packed, axis=1, count=count * bits).reshape(n, count, bits)
        return planes.astype(np.int64) @ (1 << np.arange(bits - 1, -1, -1, dtype=np.int64))
    start = np.arange(count, dtype=np.int64) * bits  # each value's first bit
    first = start >> 3
    padded = np.pad(packed, ((0, 0), (0, span)))  # the last value may read past the end
    window = np.zeros((n, count), np.int64)
    for byte in range(span):  # at most 4 gathers, each over every value at once
        window = (window << 8) | padded[:, first + byte]
    shift = span * 8 - bits - (start & 7)
    return (window >> shift) & ((1 << bits) - 1)


def _packed_width(count: int, bits: int) -> int:
    return (count * bits + 7) // 8


_FLOATS = {"float16": (pa.float16(), np.float16), "float32": (pa.float32(), np.float32)}


def columns(p: Params) -> dict[str, tuple[pa.DataType, int]]:
    """The encoding's columns: name -> (value type, values per position)."""
    ids = {"topk_ids": (pa.uint8(), _packed_width(p.k, p.id_bits))}
    rest = {"rest_mass": (pa.float32(), 1)}
    if p.encoding == "topk":
        return {
            "topk_ids": (pa.int32(), p.k),
            "topk_logprobs": (_FLOATS[p.dtype][0], p.k),
            **rest,
        }
    if p.encoding == "topk_packed":
        return {**ids, "topk_logprobs": (_FLOATS[p.dtype][0], p.k), **rest}
    if p.encoding == "topk_quant":
        bits = p.bits or DEFAULT_BITS
        return {
            **ids,
            "logprob_codes": (pa.uint8(), _packed_width(p.k, bits)),
            "logprob_offset": (pa.float16(), 1),
            "logprob_scale": (pa.float16(), 1),
            **rest,
        }
    if p.encoding == "topk_delta":
        return {
            **ids,
            "gap_nibbles": (pa.uint8(), _packed_width(p.k, 4)),
            "gap_excess": (pa.uint8(), 2 * p.k),
            "kept_log": (pa.float16(), 1),
        }
    raise ValueError(f"unknown top-k encoding {p.encoding!r} (known: {TOPK_ENCODINGS})")


def _ids(p: Params, ids: np.ndarray) -> np.ndarray:
    return pack_bits(ids, p.id_bits)


def _decoded_ids(p: Params, a: Arrays) -> Tensor:
    return torch.from_numpy(unpack_bits(a["topk_ids"], p.k, p.id_bits))


def _floored(values: np.ndarray) -> np.ndarray:
    return np.maximum(np.nan_to_num(values, nan=LOGPROB_FLOOR), LOGPROB_FLOOR)


# -- topk and topk_packed: float values -------------------------------------------------------


def _encode_plain(p: Params, ids: np.ndarray, values: np.ndarray, rest: np.ndarray) -> Arrays:
    kind = _FLOATS[p.dtype][1]
    packed = ids.astype(np.int32) if p.encoding == "topk" else _ids(p, ids)
    return {"topk_ids": packed, "topk_logprobs": values.astype(kind), "rest_mass": rest[:, None]}


def _decode_plain(p: Params, a: Arrays) -> Decoded:
    ids = a["topk_ids"]
    decoded = torch.from_numpy(ids.astype(np.int64)) if p.encoding == "topk" else _decoded_ids(p, a)
    return (
        decoded,
        torch.from_numpy(np.require(a["topk_logprobs"], np.float32, "W")),
        torch.from_numpy(np.require(a["rest_mass"][:, 0], np.float32, "W")),
    )


# -- topk_quant: a uniform grid per position --------------------------------------------------


def _encode_quant(p: Params, ids: np.ndarray, values: np.ndarray, rest: np.ndarray) -> Arrays:
    levels = (1 << (p.bits or DEFAULT_BITS)) - 1
    v = _floored(values)
    offset = v[:, 0].astype(np.float16)
    spread = (offset.astype(np.float32) - v[:, -1]).clip(0.0, None)
    # The step rounded up in float16, so the lowest value stays on the grid.
    scale = (spread / levels).astype(np.float16)
    scale = np.where(scale.astype(np.float32) * levels < spread, np.nextafter(scale, 1), scale)
    step = scale.astype(np.float32)[:, None]
    codes = np.rint((offset.astype(np.float32)[:, None] - v) / np.where(step > 0, step, 1.0))
    codes = codes.clip(0, levels).astype(np.uint8)
    return {
        "topk_ids": _ids(p, ids),
        "logprob_codes": pack_bits(codes, p.bits or DEFAULT_BITS),
        "logprob_offset": offset[:, None],
        "logprob_scale": scale.astype(np.float16)[:, None],
        "rest_mass": rest[:, None],
    }


def _decode_quant(p: Params, a: Arrays) -> Decoded:
    codes = unpack_bits(a["logprob_codes"], p.k, p.bits or DEFAULT_BITS).astype(np.float32)
    offset = a["logprob_offset"].astype(np.float32)
    values = offset - codes * a["logprob_scale"].astype(np.float32)
    return (
        _decoded_ids(p, a),
        torch.from_numpy(values),
        torch.from_numpy(np.require(a["rest_mass"][:, 0], np.float32, "W")),
    )


# -- topk_delta: gaps to the top on a fixed grid, delta-coded ---------------------------------


def _encode_delta(p: Params, ids: np.ndarray, values: np.ndarray, rest: np.ndarray) -> Arrays:
    step = p.step or DEFAULT_STEP
    v = _floored(values).astype(np.float64)
    gaps = np.rint((v[:, :1] - v) / step).astype(np.int64)  # sorted: non-decreasing
    deltas = np.diff(gaps, axis=1, prepend=0).clip(0, NIBBLE + 0xFFFF)
    small = np.minimum(deltas, NIBBLE)
    excess = deltas - small  # almost always 0: zstd keeps next to nothing of it
    kept = np.log1p(-rest.astype(np.float64).clip(0.0, 1.0))
    return {
        "topk_ids": _ids(p, ids),
        "gap_nibbles": pack_bits(small, 4),
        "gap_excess": np.concatenate([excess & 0xFF, excess >> 8], axis=1).astype(np.uint8),
        "kept_log": kept.clip(np.finfo(np.float16).min, 0.0).astype(np.float16)[:, None],
    }


def _decode_delta(p: Params, a: Arrays) -> Decoded:
    step = p.step or DEFAULT_STEP
    excess = a["gap_excess"].astype(np.int32)
    deltas = unpack_bits(a["gap_nibbles"], p.k, 4) + excess[:, : p.k] + (excess[:, p.k :] << 8)
    shape = torch.from_numpy(np.cumsum(deltas, axis=1)).float().mul_(-step)
    kept = torch.from_numpy(a["kept_log"][:, 0].astype(np.float32))
    top = kept - torch.logsumexp(shape, dim=1)
    return _decoded_ids(p, a), shape.add_(top[:, None]), (-torch.expm1(kept)).clamp_(0.0, 1.0)


Encoder = Callable[[Params, np.ndarray, np.ndarray, np.ndarray], Arrays]
Decoder = Callable[[Params, Arrays], Decoded]
#: (encoding, format) -> (encoder, decoder): what this code writes and reads.
CODECS: dict[tuple[str, int], tuple[Encoder, Decoder]] = {
    ("topk", 1): (_encode_plain, _decode_plain),
    ("topk_packed", 1): (_encode_plain, _decode_plain),
    ("topk_quant", 1): (_encode_quant, _decode_quant),
    ("topk_delta", 1): (_encode_delta, _decode_delta),
}


def encode_topk(p: Params, ids: np.ndarray, values: np.ndarray, rest: np.ndarray) -> Arrays:
    """The columns of (N, k) positions (module docstring)."""
    return CODECS[(p.encoding, 1)][0](p, ids, values, rest)


def decode_topk(p: Params, arrays: Arrays, fmt: int = 1) -> Decoded:
    """(ids, values, rest) of (N, ...) positions from their columns."""
    return CODECS[(p.encoding, fmt)][1](p, arrays)
