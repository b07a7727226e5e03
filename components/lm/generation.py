"""Prompts cut from packed token sequences, and a causal LM continuing them (greedy or sampled,
seeded): what `lm_evaluate` shows and what `seqkd` trains students on.

**Prompts** (`cut_prompts`): a prompt is ``length`` consecutive ids of one row that lie within
one document (one segment of `components.text.packing.segment_ids`), hold no end-of-document
id and no padding. Every such window of the split is a candidate; ``count`` of them are drawn
without replacement by ``numpy.random.default_rng(seed)``, in split order. Two passes over the
split's verified part files, one part in memory: the first counts the windows per row, the
second cuts the drawn ones. A prompt never spans two rows, so it is at most ``seq_len + 1``
ids.

**Generation** (`continue_prompts`): our own loop over the transformers model with its key/value
cache, so that the draws come from a `torch.Generator` of our own (seeded per batch; the global
RNG is untouched) and the stopping rule is ours: a sample ends at the end-of-document id (not
kept) or after ``max_new`` tokens. Greedy takes the argmax; sampling divides the logits by the
temperature, keeps the ``top_k`` most likely and the smallest set whose probability reaches
``top_p`` (the most likely token always stays), and draws from what is left. All prompts of a
batch have the same length, so no padding or attention mask is needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from components.text.artifacts import read_part, split_files
from components.text.packing import segment_ids
from orchestrator import ArtifactStore
from schemas.kd.lm_report import Sampling
from schemas.kd.text import TokenSequences


@dataclass(frozen=True)
class Prompts:
    """``ids`` (count, length) int64 and where each was cut: ``rows`` (row_id), ``starts``."""

    ids: np.ndarray
    rows: np.ndarray
    starts: np.ndarray

    def where(self, i: int) -> str:
        return f"row {int(self.rows[i])} @ {int(self.starts[i])}"


def _windows(part: Any, length: int, eos_id: int) -> np.ndarray:
    """(rows, width - length + 1) bool: where a prompt of ``length`` ids may start."""
    from components.artifacts.datasets import fixed_list_to_numpy

    tokens = fixed_list_to_numpy(part.column("tokens"))
    rows, width = tokens.shape
    if length > width:
        return np.zeros((rows, 0), dtype=bool)
    segments = segment_ids(part.column("doc_starts"), part.column("length").to_numpy(), width)
    ends = np.zeros((rows, width + 1), dtype=np.int64)
    ends[:, 1:] = np.cumsum(tokens == eos_id, axis=1)
    first, last = segments[:, : width - length + 1], segments[:, length - 1 :]
    no_end = (ends[:, length:] - ends[:, : width - length + 1]) == 0
    return (first >= 0) & (first == last) & no_end


def _parts(store: ArtifactStore, sequences: TokenSequences, split: str) -> Iterator[Any]:
    for name in split_files(store, sequences, split):
        yield read_part(store, sequences, name)


def count_windows(
    store: ArtifactStore, sequences: TokenSequences, split: str, length: int
) -> np.ndarray:
    """Candidate prompt windows per row of ``split``, in row order."""
    counts = [
        _windows(part, length, sequences.eos_id).sum(axis=1)
        for part in _parts(store, sequences, split)
    ]
    return np.concatenate(counts) if counts else np.zeros(0, dtype=np.int64)


def cut_prompts(
    store: ArtifactStore,
    sequences: TokenSequences,
    split: str,
    *,
    count: int,
    length: int,
    seed: int,
) -> Prompts:
    """``count`` prompts of ``length`` ids drawn from ``split`` (see the module docstring).

    Raises:
        ValueError: the split has fewer candidate windows than ``count``.
    """
    per_row = count_windows(store, sequences, split, length)
    total = int(per_row.sum())
    if total < count:
        raise ValueError(
            f"split '{split}' has {total:,} places for a prompt of {length} tokens within one "
            f"document (rows of {sequences.seq_len + 1} ids), fewer than the {count:,} asked: "
            "ask fewer or shorter prompts"
        )
    chosen = np.sort(np.random.default_rng(seed).choice(total, size=count, replace=False))
    bounds = np.concatenate([[0], np.cumsum(per_row)])
    ids, rows, starts = [], [], []
    row0 = 0
    for part in _parts(store, sequences, split):
        from components.artifacts.datasets import fixed_list_to_numpy

        valid = _windows(part, length, sequences.eos_id)
        n = valid.shape[0]
        low, high = np.searchsorted(chosen, bounds[[row0, row0 + n]])
        if high > low:
            tokens = fixed_list_to_numpy(part.column("tokens"))
            row_ids = part.column("row_id").to_numpy()
            for index in chosen[low:high]:
                row = int(np.searchsorted(bounds, index, side="right")) - 1
                start = int(np.flatnonzero(valid[row - row0])[index - bounds[row]])
                ids.append(tokens[row - row0, start : start + length])
                rows.append(int(row_ids[row - row0]))
                starts.append(start)
        row0 += n
    return Prompts(
        np.asarray(ids, dtype=np.int64).reshape(count, length),
        np.asarray(rows, dtype=np.int64),
        np.asarray(starts, dtype=np.int64),
    )


def _pick(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator | None) -> Any:
    """The next id of each row from its last logits (B, V)."""
    if sampling.method == "greedy":
        return logits.argmax(dim=-1)
    scores = logits / sampling.temperature
    if sampling.top_k is not None and sampling.top_k < scores.shape[-1]:
        kth = torch.topk(scores, sampling.top_k, dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if sampling.top_p is not None and sampling.top_p < 1:
        ordered, order = torch.sort(scores, dim=-1, descending=True)
        probs = torch.softmax(ordered, dim=-1)
        before = torch.cumsum(probs, dim=-1) - probs  # mass of the more likely tokens
        drop = before >= sampling.top_p  # the first token has 0 before it: always kept
        scores = scores.scatter(-1, order, ordered.masked_fill(drop, float("-inf")))
    probs = torch.softmax(scores, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.inference_mode()
def continue_prompts(
    net: Any,
    prompts: torch.Tensor,
    max_new: int,
    sampling: Sampling,
    *,
    generator: torch.Generator | None = None,
    stop_id: int | None = None,
) -> tuple[list[list[int]], list[bool]]:
    """Each prompt's continuation (ids after the prompt, the stop id not included) and whether
    it ended at ``stop_id`` before ``max_new`` tokens. ``net``: a transformers causal LM."""
    out, cache = _forward(net, prompts, None)
    logits = out.logits[:, -1, :].float()
    done = torch.zeros(prompts.shape[0], dtype=torch.bool)
    steps = []
    for step in range(max_new):
        chosen = _pick(logits, sampling, generator)
        if stop_id is not None:
            chosen = torch.where(done, torch.full_like(chosen, stop_id), chosen)
            done |= chosen == stop_id
        steps.append(chosen)
        if step + 1 == max_new or bool(done.all()):
            break
        out, cache = _forward(net, chosen[:, None], cache)
        logits = out.logits[:, -1, :].float()
    new = torch.stack(steps, dim=1).tolist()
    cut = [row.index(stop_id) if stop_id in row else len(row) for row in new]
    return [row[:n] for row, n in zip(new, cut, strict=True)], [
        n < len(r) for r, n in zip(new, cut, strict=True)
    ]


def _cache_argument() -> str:
    """What transformers calls the key/value cache: ``cache`` from 5.2x, ``past_key_values``
    before (still read, with a deprecation warning)."""
    import dataclasses

    from transformers.modeling_outputs import CausalLMOutputWithPast

    names = {f.name for f in dataclasses.fields(CausalLMOutputWithPast)}
    return "cache" if "cache" in names else "past_key_values"


def _forward(net: Any, ids: torch.Tensor, cache: Any) -> tuple[Any, Any]:
    """One forward pass of ``ids`` after what ``cache`` holds; the output and the new cache."""
    name = _cache_argument()
    out = net(input_ids=ids, use_cache=True, **({name: cache} if cache is not None else {}))
    return out, getattr(out, name)


def batch_generator(seed: int, batch: int) -> torch.Generator:
    """The draws of batch ``batch``: seeded by (seed, batch) alone, so a batch's samples do not
    depend on how many draws the batches before it made."""
    state = np.random.SeedSequence([seed, batch]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & ((1 << 63) - 1))
