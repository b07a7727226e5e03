"""Candidates of a search space: enumerate, sample, mutate; sizes measured on the zoo, capped.

A `CandidateSpace` binds a `schemas.kd.components.student_search.SearchSpace` to a dataset's
input shape and class count. Every `Candidate` it returns carries a complete, valid
`schemas.kd.models` spec (``build_model(candidate.spec)`` takes it as is), its parameter count and
MACs as the zoo measures them (`count_parameters`, `estimate_flops` on the built model, cached
per candidate), and respects both caps: nothing over a cap ever leaves this module.

Randomness comes only from the `random.Random` passed in, so a seeded search is repeatable.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter

from components.models.profile import count_parameters, estimate_flops
from components.models.zoo import build_model
from schemas.kd.components.student_search import SearchSpace
from schemas.kd.models import AnyModelSpec, ModelSpec

_SPEC: TypeAdapter[Any] = TypeAdapter(ModelSpec)
_SAMPLE_TRIES = 64


class SearchSpaceError(ValueError):
    """The space has no candidate under the caps for this dataset."""


@dataclass(frozen=True)
class Candidate:
    """One architecture with one value per knob, its full spec, and its measured size."""

    arch: str
    knobs: tuple[tuple[str, int], ...]
    """(knob, value) in the space's knob order."""
    spec: AnyModelSpec = field(compare=False)
    parameters: int = field(compare=False)
    macs: int = field(compare=False)
    """Multiply-accumulates for one input row (conv and linear layers)."""

    @property
    def key(self) -> str:
        """Readable identity, e.g. ``mnist_cnn(width=16, depth=3, kernel_size=3)``."""
        return f"{self.arch}({', '.join(f'{k}={v}' for k, v in self.knobs)})"

    @property
    def choice(self) -> dict[str, int]:
        """Knob -> value."""
        return dict(self.knobs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: arch, knobs, spec, parameters, macs."""
        return {
            "arch": self.arch,
            "knobs": self.choice,
            "spec": self.spec.model_dump(mode="json"),
            "parameters": self.parameters,
            "macs": self.macs,
        }


class CandidateSpace:
    """A search space for one dataset (input shape and number of classes).

    Raises:
        SearchSpaceError: no candidate fits the caps for this dataset (checked at once with the
            schema's exact size formulas, without building models).
    """

    def __init__(
        self, space: SearchSpace, *, input_shape: tuple[int, ...], num_classes: int
    ) -> None:
        self.space = space
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self._blocks = space.arches()
        self._cache: dict[tuple[str, tuple[tuple[str, int], ...]], Candidate] = {}
        if not any(
            space.within_caps(block.cost(choice, self.input_shape, num_classes))
            for block in self._blocks.values()
            for choice in block.choices()
        ):
            smallest = [
                f"{arch} {block.smallest()}: "
                + "{:,} parameters, {:,} MACs".format(
                    *block.cost(block.smallest(), self.input_shape, num_classes)
                )
                for arch, block in self._blocks.items()
            ]
            raise SearchSpaceError(
                f"no candidate fits max_parameters={space.max_parameters}, "
                f"max_macs={space.max_macs} for inputs {list(self.input_shape)} and "
                f"{num_classes} classes; the smallest are {'; '.join(smallest)}"
            )

    @property
    def arches(self) -> list[str]:
        """Architectures in the space (zoo order)."""
        return list(self._blocks)

    def values(self, arch: str) -> dict[str, list[int]]:
        """Knob -> allowed values for one architecture."""
        return self._blocks[arch].values()

    def candidate(self, arch: str, choice: Mapping[str, int]) -> Candidate:
        """The candidate for one value per knob (measured once, then cached; caps not checked).

        Raises:
            KeyError: unknown architecture; ValueError: a knob missing or a value not allowed.
        """
        block = self._blocks[arch]
        values = block.values()
        if set(choice) != set(values) or any(choice[k] not in values[k] for k in values):
            raise ValueError(f"{arch}: {dict(choice)} is not a point of the space {values}")
        knobs = tuple((k, choice[k]) for k in values)
        key = (arch, knobs)
        if key not in self._cache:
            spec = _SPEC.validate_python(
                {
                    **block.to_spec_fields(choice),
                    "num_classes": self.num_classes,
                    "input_shape": self.input_shape,
                }
            )
            model = build_model(spec, seed=0)  # seeded: the global RNG is left alone
            self._cache[key] = Candidate(
                arch,
                knobs,
                spec,
                count_parameters(model),
                estimate_flops(model, self.input_shape),
            )
        return self._cache[key]

    def fits(self, candidate: Candidate) -> bool:
        """Whether a candidate respects both caps."""
        return self.space.within_caps((candidate.parameters, candidate.macs))

    def _all(self) -> Iterator[Candidate]:
        for arch, block in self._blocks.items():
            for choice in block.choices():
                yield self.candidate(arch, choice)

    def enumerate(self) -> list[Candidate]:
        """Every candidate under the caps, in a fixed order (builds each model once)."""
        return [c for c in self._all() if self.fits(c)]

    def sample(self, rng: random.Random) -> Candidate:
        """A random candidate under the caps: an architecture uniformly, then each knob's value
        uniformly, redrawn while over a cap (after 64 draws: uniformly among all that fit)."""
        for _ in range(_SAMPLE_TRIES):
            arch = rng.choice(self.arches)
            choice = {k: rng.choice(v) for k, v in self.values(arch).items()}
            candidate = self.candidate(arch, choice)
            if self.fits(candidate):
                return candidate
        feasible = self.enumerate()
        if not feasible:  # the schema formulas disagree with the zoo
            raise SearchSpaceError("no candidate fits the caps (measured on the zoo models)")
        return rng.choice(feasible)

    def neighbours(self, candidate: Candidate) -> list[Candidate]:
        """Candidates under the caps that differ from ``candidate`` in exactly one knob."""
        values = self.values(candidate.arch)
        out = []
        for knob, current in candidate.knobs:
            for value in values[knob]:
                if value != current:
                    other = self.candidate(candidate.arch, {**candidate.choice, knob: value})
                    if self.fits(other):
                        out.append(other)
        return out

    def mutate(self, candidate: Candidate, rng: random.Random) -> Candidate | None:
        """A uniformly chosen neighbour (one knob changed, under the caps); None if it has none."""
        options = self.neighbours(candidate)
        return rng.choice(options) if options else None

    def size(self) -> int:
        """Number of candidates before caps."""
        return self.space.size()

    def sample_distinct(self, rng: random.Random, count: int) -> list[Candidate]:
        """Up to ``count`` distinct candidates under the caps (all of them if fewer fit)."""
        chosen: dict[str, Candidate] = {}
        for _ in range(max(100, 10 * count)):
            if len(chosen) == count:
                return list(chosen.values())
            candidate = self.sample(rng)
            chosen.setdefault(candidate.key, candidate)
        if len(chosen) == count:
            return list(chosen.values())
        rest = [c for c in self.enumerate() if c.key not in chosen]
        rng.shuffle(rest)
        return [*chosen.values(), *itertools.islice(rest, count - len(chosen))]
