"""The teacher's token cache: per token of packed sequences, what a causal LM teacher predicts
for the next token, stored once and read by every student (`lm_inference` writes it).

Types only; the encoder, shard writer and readers are in `components.lm.cache`, the guide is
docs/language_models.md ("The teacher's cache").
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.base import Model
from schemas.engine.artifacts import ArtifactRef

#: How the teacher's distribution per token is stored. A reader dispatches on it (and on
#: ``format``) and refuses one it does not know: it never guesses a layout.
#:
#: - ``topk``: the k most likely next tokens, by descending log-probability: columns
#:   ``topk_ids`` (fixed_size_list<int32>[seq_len * k], position t's ids at [t*k, (t+1)*k)),
#:   ``topk_logprobs`` (fixed_size_list<float16|float32>[seq_len * k], log-probabilities at
#:   T = 1, so any per-row shift is already taken out) and ``rest_mass``
#:   (fixed_size_list<float32>[seq_len]: the probability of every other token, 1 - sum exp);
#: - ``topk_packed``: as ``topk``, ``topk_ids`` bit-packed at ``id_bits`` bits per id
#:   (fixed_size_binary[seq_len * ceil(k * id_bits / 8)], a position's bytes together);
#: - ``topk_quant``: ids packed; ``logprob_codes`` (fixed_size_binary: ``value_bits`` bits per
#:   log-probability, packed), per position ``logprob_offset`` (float16, the top
#:   log-probability) and ``logprob_scale`` (float16, the grid's step): value = offset - code *
#:   scale; ``rest_mass`` as ``topk``;
#: - ``topk_delta``: ids packed; per position the differences d_i of the gaps to the top
#:   log-probability in steps of ``value_step`` nats (their cumulative sum), 4 bits each in
#:   ``gap_nibbles`` (fixed_size_binary[seq_len * ceil(k / 2)]) up to 15, the excess in
#:   ``gap_excess`` (fixed_size_binary[seq_len * 2k]: k low bytes, k high bytes), and
#:   ``kept_log`` (float16 [seq_len]: log(1 - rest mass)); the top log-probability is
#:   kept_log - logsumexp(-value_step * gaps);
#: - ``dense``: every token's log-probability, ``logprobs``
#:   (fixed_size_list<float16|float32>[seq_len * vocab_size]), for small vocabularies.
#:
#: The encoders and decoders are in `components.lm.encodings`.
Encoding = Literal["topk", "topk_packed", "topk_quant", "topk_delta", "dense"]


class TokenCacheSplit(Model):
    """One split of the cache."""

    sequences: int = Field(description="Rows: one per row of the token sequences.")
    tokens: int = Field(description="Positions with a real next token (no padding).")
    shards: int
    bytes: int = Field(description="Bytes of the split's shard files.")


class TokenCache(ArtifactRef):
    """A teacher LM's next-token distributions over `TokenSequences`, per split
    ``<split>/shard-NNNNN.parquet``: one shard row per sequence row, in the same order, with
    its ``row_id``, and per position t of the row's inputs ``tokens[:-1]`` the teacher's
    distribution of ``tokens[t + 1]`` (columns: `Encoding`). Positions past a row's
    ``length - 1`` (padding) hold zeros; a reader masks them with the sequences' own
    ``length`` and ``doc_starts`` (`components.text.packing.target_mask`).

    ``encoding`` and ``format`` say how the columns are laid out (a reader refuses one it does
    not know); ``bytes_per_token`` is the files' bytes over the positions they cover.
    ``teacher_version``, ``sequences_version`` and ``tokenizer_version`` say what the cache was
    computed from; a reader refuses sequences of another version.
    """

    encoding: str = Field(
        description="How the columns are laid out: one of `Encoding` for this kdorch; a record "
        "of another (a newer kdorch's) still parses, and a reader refuses it by name."
    )
    format: int = Field(1, description="Version of the encoding's layout.")
    top_k: int | None = Field(None, description="topk: ids kept per token.")
    dtype: Literal["float16", "float32"] = Field(
        description="Storage of the log-probabilities (topk, topk_packed, dense); for "
        "topk_quant and topk_delta, what a reader holds the decoded ones in."
    )
    id_bits: int | None = Field(None, description="Packed encodings: bits per token id.")
    value_bits: int | None = Field(None, description="topk_quant: bits per log-probability.")
    value_step: float | None = Field(None, description="topk_delta: the grid's step, nats.")
    vocab_size: int
    seq_len: int
    splits: dict[str, TokenCacheSplit]
    tokens: int = Field(description="Positions with a real next token, every split.")
    bytes: int = Field(description="Bytes of every shard file.")
    bytes_per_token: float = Field(description="bytes / tokens: what the cache costs per token.")
    teacher_version: str
    sequences_version: str
    tokenizer_version: str

    def split_path(self, split: str) -> str:
        if split not in self.splits:
            raise KeyError(f"the token cache has no split '{split}' (has {list(self.splits)})")
        return f"{self.path}/{split}"
