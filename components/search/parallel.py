"""Scoring candidates in parallel: batches of them per Ray task, or in this process.

A DisWOT score takes milliseconds, so one Ray task per candidate would cost more in overhead
than in work: `ParallelScorer` splits a list of candidates into batches, puts the scorer into
the object store once (`ray.put`) and sends only specs to the tasks. Without Ray (the local
executor, a plain Python session) it scores in this process, with the same function.

Every batch is scored with one torch thread wherever it runs: float32 kernels may reduce in a
different order with more threads, and a score must not depend on where it was computed (the
scorer already makes it independent of order and batching, `DiswotScorer`). So the same seed
gives the same scores, bit for bit, in-process and on Ray.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from functools import cache
from typing import Any

import torch

from components.search.candidates import Candidate
from components.search.diswot import DiswotScore, DiswotScorer
from schemas.kd.models import AnyModelSpec


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread inside the block; the previous count afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def score_specs(scorer: DiswotScorer, specs: Sequence[AnyModelSpec]) -> list[DiswotScore]:
    """Scores of ``specs`` in order, on one thread (the body of every scoring task)."""
    with one_thread():
        return scorer(list(specs))


def balanced_batches(items: Sequence[Any], most: int) -> list[list[Any]]:
    """Consecutive batches of at most ``most`` items, as equal in size as possible (36 items
    by 16: 12, 12, 12 rather than 16, 16, 4, so no task waits on a long one)."""
    count = -(-len(items) // most)
    if count == 0:
        return []
    size, extra = divmod(len(items), count)
    out, start = [], 0
    for i in range(count):
        end = start + size + (1 if i < extra else 0)
        out.append(list(items[start:end]))
        start = end
    return out


@cache
def _remote_score() -> Any:
    import ray

    return ray.remote(score_specs)


def ray_available() -> bool:
    """Whether this process is connected to Ray (inside a step's task on the Ray executor)."""
    try:
        import ray
    except ImportError:  # pragma: no cover - ray is a dependency
        return False
    return bool(ray.is_initialized())


class ParallelScorer:
    """A `ScoreFn` for the searches: scores of a list of candidates, in order.

    Args:
        scorer: the scorer (teacher probe and batch), shipped to Ray once.
        candidates_per_task: batch size of one Ray task.
        cpus_per_task: logical CPUs each task reserves.
        use_ray: force (True) or forbid (False) Ray; default: Ray when it is initialised.
    """

    def __init__(
        self,
        scorer: DiswotScorer,
        *,
        candidates_per_task: int = 16,
        cpus_per_task: float = 1.0,
        use_ray: bool | None = None,
    ) -> None:
        self.scorer = scorer
        self.candidates_per_task = candidates_per_task
        self.cpus_per_task = cpus_per_task
        self.use_ray = ray_available() if use_ray is None else use_ray
        self.tasks = 0
        self._ref: Any = None

    def __call__(self, candidates: Sequence[Candidate]) -> list[DiswotScore]:
        specs = [c.spec for c in candidates]
        if not self.use_ray:
            return score_specs(self.scorer, specs)
        import ray

        if self._ref is None:
            self._ref = ray.put(self.scorer)
        batches = balanced_batches(specs, self.candidates_per_task)
        remote = _remote_score().options(num_cpus=self.cpus_per_task)
        refs = [remote.remote(self._ref, batch) for batch in batches]
        self.tasks += len(refs)
        return [score for batch in ray.get(refs) for score in batch]
