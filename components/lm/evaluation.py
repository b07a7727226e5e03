"""Scoring causal LMs on a split of packed token sequences (`score_language_models`).

**What is counted.** Each row's next-token targets ``tokens[1:]`` under
`components.text.packing.target_mask` (no padding; a document's first token, predicted from
the previous document's end id, only with ``across_documents``). Per model, over those target
tokens of the whole split (summed over tokens, not averaged per row):

- ``nll``: mean negative log-likelihood (nats per token); ``perplexity`` = exp(nll);
- ``top1``: how often the most likely next token is the target;
- with a teacher: ``agreement`` (the model's most likely token is the teacher's) and ``kl``,
  KL(teacher || model) per token in nats, sum_v p_t(v) (log p_t(v) - log p(v));
- ``parameters`` (a tied output layer once), ``tokens_per_s_b<n>`` (`speed`).

**Streamed.** The split is read one verified part file at a time and ``batch_size`` rows at a
time; every model scores a batch before the next is read (the teacher first: the students are
compared with its log-probabilities of the same batch). Kept across batches: sums, and per row
each model's NLL sum (for the row bootstrap); for the chosen one-model pairs, the sum of squared
per-token differences (the token t interval). Memory holds the models, one part and one
batch's (B, T, V) log-probabilities per model, whatever the split's size.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from components.artifacts.datasets import fixed_list_to_numpy
from components.text.artifacts import read_part, split_files
from components.text.packing import target_mask
from orchestrator import ArtifactStore
from schemas.kd.text import TokenSequences

Row = dict[str, float]


@dataclass
class Batch:
    """Rows of the split: inputs (B, T), targets (B, T), the counted targets (B, T)."""

    inputs: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor


@dataclass
class _Sums:
    nll: float = 0.0
    correct: int = 0
    agree: int = 0
    kl: float = 0.0
    rows: list[np.ndarray] = field(default_factory=list)  # per batch: each row's NLL sum


@dataclass
class Scored:
    """Per model key: its metrics and each row's NLL sum; the tokens each row counts; for the
    one-model pairs, the sum over tokens of the squared NLL difference."""

    results: dict[str, Row]
    row_nll: dict[str, np.ndarray]
    row_tokens: np.ndarray
    squares: dict[tuple[str, str], float]

    @property
    def tokens(self) -> int:
        return int(self.row_tokens.sum())


def batches(
    store: ArtifactStore,
    sequences: TokenSequences,
    split: str,
    size: int,
    *,
    across_documents: bool = False,
    max_rows: int | None = None,
) -> Iterator[Batch]:
    """The split's rows, ``size`` at a time (the first ``max_rows`` of them)."""
    left = max_rows if max_rows is not None else math.inf
    for name in split_files(store, sequences, split):
        part = read_part(store, sequences, name)
        for chunk in part.to_batches(max_chunksize=size):
            if left <= 0:
                return
            if chunk.num_rows > left:
                chunk = chunk.slice(0, int(left))
            left -= chunk.num_rows
            tokens = fixed_list_to_numpy(chunk.column("tokens")).astype(np.int64)
            width = tokens.shape[1]
            length = chunk.column("length").to_numpy()
            mask = target_mask(chunk.column("doc_starts"), length, width, across_documents)
            ids = torch.from_numpy(tokens)
            yield Batch(ids[:, :-1], ids[:, 1:], torch.from_numpy(mask))


def _token_nll(logp: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return -logp.gather(-1, targets[..., None]).squeeze(-1)


def score_language_models(
    store: ArtifactStore,
    sequences: TokenSequences,
    models: Mapping[str, torch.nn.Module],
    *,
    split: str,
    batch_size: int,
    across_documents: bool = False,
    max_rows: int | None = None,
    teacher: str | None = None,
    token_pairs: Sequence[tuple[str, str]] = (),
) -> Scored:
    """Every model of ``models`` (key -> model in eval mode; ``teacher`` names the teacher's
    key, scored first) on ``split`` (see the module docstring)."""
    order = ([teacher] if teacher else []) + [k for k in models if k != teacher]
    sums = {key: _Sums() for key in order}
    squares = dict.fromkeys(token_pairs, 0.0)
    row_tokens: list[np.ndarray] = []
    with torch.inference_mode():
        for batch in batches(
            store,
            sequences,
            split,
            batch_size,
            across_documents=across_documents,
            max_rows=max_rows,
        ):
            mask = batch.mask
            row_tokens.append(mask.sum(dim=1).numpy())
            t_logp = t_top = None
            nll_of = {}
            for key in order:
                logp = torch.log_softmax(models[key](batch.inputs).float(), dim=-1)
                nll = _token_nll(logp, batch.targets) * mask
                top = logp.argmax(dim=-1)
                s = sums[key]
                s.nll += float(nll.sum(dtype=torch.float64))
                s.rows.append(nll.sum(dim=1, dtype=torch.float64).numpy())
                s.correct += int(((top == batch.targets) & mask).sum())
                if key == teacher:
                    t_logp, t_top = logp, top
                elif t_logp is not None and t_top is not None:
                    s.agree += int(((top == t_top) & mask).sum())
                    p = t_logp.exp()  # a token the teacher gives no mass adds 0, not nan
                    kl = torch.where(p > 0, p * (t_logp - logp), 0.0).sum(dim=-1) * mask
                    s.kl += float(kl.sum(dtype=torch.float64))
                nll_of[key] = nll
            for a, b in token_pairs:
                d = (nll_of[a] - nll_of[b]).double()
                squares[(a, b)] += float((d * d).sum())
    counted = np.concatenate(row_tokens) if row_tokens else np.zeros(0, dtype=np.int64)
    tokens = max(int(counted.sum()), 1)
    results, row_nll = {}, {}
    for key in order:
        s = sums[key]
        row = {"nll": s.nll / tokens, "top1": s.correct / tokens}
        row["perplexity"] = math.exp(min(row["nll"], 700.0))  # finite: exp(700) ~ 1e304
        if teacher is not None and key != teacher:
            row |= {"agreement": s.agree / tokens, "kl": s.kl / tokens}
        results[key] = row
        row_nll[key] = np.concatenate(s.rows) if s.rows else np.zeros(0)
    return Scored(results, row_nll, counted, squares)


@torch.inference_mode()
def speed(
    model: torch.nn.Module,
    rows: torch.Tensor,
    batch_size: int,
    *,
    budget_s: float,
    threads: int,
) -> float:
    """Tokens per second of forward passes over ``rows`` (inputs (N, T)), ``batch_size`` rows
    a pass taken in turn from them, on ``threads`` CPU threads: one warm-up pass, then passes
    for about ``budget_s`` seconds (at least 2)."""
    if len(rows) < batch_size:  # a short split: its rows repeated to fill a batch
        rows = rows.repeat(math.ceil(batch_size / len(rows)), 1)
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        starts = list(range(0, max(len(rows) - batch_size, 0) + 1, batch_size)) or [0]

        def one(i: int) -> int:
            x = rows[starts[i % len(starts)] :][:batch_size]
            model(x)
            return int(x.numel())

        one(0)  # warm-up
        done, tokens, started = 0, 0, time.perf_counter()
        while done < 2 or time.perf_counter() - started < budget_s:
            tokens += one(done + 1)
            done += 1
        return tokens / (time.perf_counter() - started)
    finally:
        torch.set_num_threads(saved)


def sample_rows(
    store: ArtifactStore, sequences: TokenSequences, split: str, count: int
) -> torch.Tensor:
    """The first ``count`` rows' inputs (N, T) of the split (what `speed` passes over)."""
    found = []
    for batch in batches(store, sequences, split, count, max_rows=count):
        found.append(batch.inputs)
    return torch.cat(found)


def count_parameters(model: torch.nn.Module) -> int:
    """Parameters, a tied output layer counted once (shared tensors once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
