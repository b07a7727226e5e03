"""Regularised (aging) evolution and random search over a `CandidateSpace`.

Both take the scoring function as a callable that receives a *list* of candidates and returns
their scores in order (floats, or objects with a ``score`` float and an ``as_dict()`` such as
`DiswotScore`), so a caller can score a batch in parallel (Ray tasks) and this module stays
free of any executor. Higher scores are better; a NaN score counts as -inf.

Scores are assumed deterministic: a candidate met again (a duplicate in the population, a
mutation back to an earlier point) is not scored again, its first score is reused. Everything
random comes from one ``random.Random(seed)``: the same seed, space and scores give the same
sequence of candidates.

**Regularised evolution** (Real et al. 2019, "Algorithm 1"; DisWOT's searcher): score a
random initial population; then, each round, pick ``sample_size`` distinct members at random,
take the best of them as the parent (ties: the first drawn), mutate exactly one knob (a
uniformly chosen neighbour under the caps; a random candidate when it has none), score the
children of the round together, append them, and remove as many of the *oldest* members. With
``children_per_round=1`` this is Real et al.'s algorithm; larger values let a parallel scorer
work on several children at once (each round's tournaments see the population before its
children join). The architecture itself is not a knob: the initial population spreads over the
architectures, mutations stay within one. The official NAS-Bench-201 searcher
(``searcher/evo_search_nb201.py``) sorts the sample ascending and picks at random among its
five *lowest* scores; we take the best, as the algorithm says.

**Random search**: ``num_candidates`` distinct candidates under the caps, scored in one call.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from components.search.candidates import Candidate, CandidateSpace
from schemas.kd.components.student_search import SearchSettings


class SupportsScore(Protocol):
    """A score with its parts (`DiswotScore`)."""

    @property
    def score(self) -> float: ...

    def as_dict(self) -> dict[str, float]: ...


Origin = Literal["random", "mutation"]

ScoreFn = Callable[[Sequence[Candidate]], Sequence[float | SupportsScore]]
"""Scores of a list of candidates, in order."""


@dataclass(frozen=True)
class Evaluation:
    """One entry of a search's history."""

    index: int
    """Position in the history (0-based)."""
    candidate: Candidate
    score: float
    terms: Mapping[str, float] = field(default_factory=dict)
    """The score's parts (empty when the score function returns plain floats)."""
    origin: Origin = "random"
    parent: int | None = None
    """History index of the parent, for mutations."""

    def to_dict(self) -> dict[str, object]:
        """JSON-ready (a -inf score stays a float; JSON writers may need allow_nan)."""
        return {
            "index": self.index,
            "candidate": self.candidate.to_dict(),
            "key": self.candidate.key,
            "score": self.score,
            "terms": dict(self.terms),
            "origin": self.origin,
            "parent": self.parent,
        }


@dataclass(frozen=True)
class SearchResult:
    """Every candidate evaluated, in order."""

    strategy: Literal["evolution", "random"]
    history: tuple[Evaluation, ...]

    @property
    def best(self) -> Evaluation:
        """The highest score (ties: the earliest)."""
        return max(self.history, key=lambda e: (e.score, -e.index))

    def unique(self) -> list[Evaluation]:
        """The first evaluation of each distinct candidate, in history order."""
        seen: dict[str, Evaluation] = {}
        for evaluation in self.history:
            seen.setdefault(evaluation.candidate.key, evaluation)
        return list(seen.values())

    def top(self, k: int) -> list[Evaluation]:
        """The ``k`` best distinct candidates, best first."""
        return sorted(self.unique(), key=lambda e: (-e.score, e.index))[:k]


def _parts(value: float | SupportsScore) -> tuple[float, dict[str, float]]:
    if isinstance(value, (int, float)):
        score, terms = float(value), {}
    else:
        score, terms = float(value.score), value.as_dict()
    return (-math.inf if math.isnan(score) else score), terms


class _CachedScorer:
    """Scores only candidates not met before; each call of ``score_fn`` gets a distinct list."""

    def __init__(self, score_fn: ScoreFn) -> None:
        self.score_fn = score_fn
        self.known: dict[str, tuple[float, dict[str, float]]] = {}

    def __call__(self, candidates: Sequence[Candidate]) -> list[tuple[float, dict[str, float]]]:
        todo = list({c.key: c for c in candidates if c.key not in self.known}.values())
        if todo:
            scores = self.score_fn(todo)
            if len(scores) != len(todo):
                raise ValueError(
                    f"the score function returned {len(scores)} scores for {len(todo)}"
                )
            for candidate, value in zip(todo, scores, strict=True):
                self.known[candidate.key] = _parts(value)
        return [self.known[c.key] for c in candidates]


def regularized_evolution(
    space: CandidateSpace,
    score_fn: ScoreFn,
    *,
    num_candidates: int,
    population: int,
    sample_size: int,
    seed: int,
    children_per_round: int = 1,
    on_evaluated: Callable[[Evaluation], None] | None = None,
) -> SearchResult:
    """Aging evolution (module doc); ``num_candidates`` evaluations including the first
    ``population`` random ones."""
    if not 1 <= sample_size <= population <= num_candidates or children_per_round < 1:
        raise ValueError(
            "need 1 <= sample_size <= population <= num_candidates and children_per_round >= 1, "
            f"got {sample_size}, {population}, {num_candidates}, {children_per_round}"
        )
    rng = random.Random(seed)
    scorer = _CachedScorer(score_fn)
    history: list[Evaluation] = []
    alive: deque[Evaluation] = deque()

    def record(batch: list[tuple[Candidate, Origin, int | None]]) -> None:
        scores = scorer([c for c, _, _ in batch])
        for (candidate, origin, parent), (score, terms) in zip(batch, scores, strict=True):
            evaluation = Evaluation(len(history), candidate, score, terms, origin, parent)
            history.append(evaluation)
            alive.append(evaluation)
            if on_evaluated is not None:
                on_evaluated(evaluation)

    record([(space.sample(rng), "random", None) for _ in range(population)])
    while len(history) < num_candidates:
        children: list[tuple[Candidate, Origin, int | None]] = []
        members = list(alive)
        for _ in range(min(children_per_round, num_candidates - len(history))):
            drawn = rng.sample(members, sample_size)
            parent = max(drawn, key=lambda e: e.score)  # first drawn wins ties
            child = space.mutate(parent.candidate, rng)
            if child is None:
                children.append((space.sample(rng), "random", None))
            else:
                children.append((child, "mutation", parent.index))
        record(children)
        for _ in children:
            alive.popleft()
    return SearchResult("evolution", tuple(history))


def random_search(
    space: CandidateSpace,
    score_fn: ScoreFn,
    *,
    num_candidates: int,
    seed: int,
    on_evaluated: Callable[[Evaluation], None] | None = None,
) -> SearchResult:
    """``num_candidates`` distinct random candidates (fewer if fewer fit), scored in one call."""
    rng = random.Random(seed)
    candidates = space.sample_distinct(rng, num_candidates)
    history = []
    for i, (candidate, (score, terms)) in enumerate(
        zip(candidates, _CachedScorer(score_fn)(candidates), strict=True)
    ):
        history.append(Evaluation(i, candidate, score, terms))
        if on_evaluated is not None:
            on_evaluated(history[-1])
    return SearchResult("random", tuple(history))


def run_search(
    space: CandidateSpace,
    score_fn: ScoreFn,
    settings: SearchSettings,
    *,
    on_evaluated: Callable[[Evaluation], None] | None = None,
) -> SearchResult:
    """The search ``settings.strategy`` names, with its settings."""
    if settings.strategy == "random":
        return random_search(
            space,
            score_fn,
            num_candidates=settings.num_candidates,
            seed=settings.seed,
            on_evaluated=on_evaluated,
        )
    return regularized_evolution(
        space,
        score_fn,
        num_candidates=settings.num_candidates,
        population=settings.population,
        sample_size=settings.sample_size,
        seed=settings.seed,
        children_per_round=settings.children_per_round,
        on_evaluated=on_evaluated,
    )
