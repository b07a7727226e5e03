"""Candidates of a search space: enumerate, sample, mutate; sized from the zoo's plans, capped.

A `CandidateSpace` binds a `schemas.kd.components.student_search.SearchSpace` to a dataset's
input shape and class count. Every `Candidate` it returns carries a complete, valid
`schemas.kd.models` spec (``build_model(candidate.spec)`` takes it as is) and its exact
parameter count and MACs, counted from the zoo's layer plan (`components.models.layers`, the
description the zoo builds from) without building the model; and respects both caps: nothing
over a cap ever leaves this module.

Without torch: `kdorch validate` asks `unfit_for_any_dataset` whether a space's caps can be met
at all (`StudentSearch.check_config`).

Randomness comes only from the `random.Random` passed in, so a seeded search is repeatable.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter

from components.models.layers import Cost, plan_of
from schemas.kd.components.student_search import Choice, Knobs, SearchSpace
from schemas.kd.models import AnyModelSpec, ModelSpec

_SPEC: TypeAdapter[Any] = TypeAdapter(ModelSpec)
_SAMPLE_TRIES = 64
#: The smallest data a space can meet: one input value (a 1x1 one-channel image), two classes.
_SMALLEST_DATA: dict[str, Any] = {"input_shape": (1, 1, 1), "num_classes": 2}


class SearchSpaceError(ValueError):
    """The space has no candidate under the caps for this dataset."""


def choices(knobs: Knobs) -> Iterator[Choice]:
    """Every candidate of one architecture, knobs varying fastest from the last one."""
    values = knobs.values()
    for combo in itertools.product(*values.values()):
        yield dict(zip(values, combo, strict=True))


def smallest(knobs: Knobs) -> Choice:
    """The cheapest candidate of one architecture: every cost grows with every knob."""
    return {k: v[0] for k, v in knobs.values().items()}


def within_caps(space: SearchSpace, cost: Cost) -> bool:
    """Whether (parameters, MACs) respect both caps."""
    params, macs = cost
    return (space.max_parameters is None or params <= space.max_parameters) and (
        space.max_macs is None or macs <= space.max_macs
    )


def _cap_excess(space: SearchSpace, cost: Cost) -> str:
    params, macs = cost
    parts = []
    if space.max_parameters is not None and params > space.max_parameters:
        parts.append(f"{params:,} parameters > max_parameters {space.max_parameters:,}")
    if space.max_macs is not None and macs > space.max_macs:
        parts.append(f"{macs:,} MACs > max_macs {space.max_macs:,}")
    return " and ".join(parts)


def unfit_for_any_dataset(space: SearchSpace) -> str | None:
    """Why no candidate fits the caps whatever the dataset; None when one may.

    Input shape and class count come from the dataset at run time, so this sizes each
    architecture's smallest candidate for the smallest data possible (one input value, a 1x1
    image, two classes): it refuses only spaces that can fit no dataset.
    """
    reasons = []
    for arch, knobs in space.arches().items():
        choice = smallest(knobs)
        spec = _SPEC.validate_python({**knobs.to_spec_fields(choice), **_SMALLEST_DATA})
        bound = plan_of(spec).cost()
        if within_caps(space, bound):
            return None
        described = ", ".join(f"{k}={v}" for k, v in choice.items())
        reasons.append(
            f"the smallest {arch} ({described}) has at least {_cap_excess(space, bound)}"
        )
    return (
        "no candidate fits under the caps, whatever the dataset: "
        + "; ".join(reasons)
        + ". Raise max_parameters/max_macs or allow smaller knob values."
    )


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
        SearchSpaceError: no candidate fits the caps for this dataset.
    """

    def __init__(
        self, space: SearchSpace, *, input_shape: tuple[int, ...], num_classes: int
    ) -> None:
        self.space = space
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self._knobs = space.arches()
        self._cache: dict[tuple[str, tuple[tuple[str, int], ...]], Candidate] = {}
        if not any(self.fits(candidate) for candidate in self._all()):
            described = []
            for arch, knobs in self._knobs.items():
                least = self.candidate(arch, smallest(knobs))
                described.append(
                    f"{arch} {least.choice}: {least.parameters:,} parameters, {least.macs:,} MACs"
                )
            raise SearchSpaceError(
                f"no candidate fits max_parameters={space.max_parameters}, "
                f"max_macs={space.max_macs} for inputs {list(self.input_shape)} and "
                f"{num_classes} classes; the smallest are {'; '.join(described)}"
            )

    @property
    def arches(self) -> list[str]:
        """Architectures in the space (zoo order)."""
        return list(self._knobs)

    def values(self, arch: str) -> dict[str, list[int]]:
        """Knob -> allowed values for one architecture."""
        return self._knobs[arch].values()

    def candidate(self, arch: str, choice: Mapping[str, int]) -> Candidate:
        """The candidate for one value per knob (sized once, then cached; caps not checked).

        Raises:
            KeyError: unknown architecture; ValueError: a knob missing or a value not allowed.
        """
        arch_knobs = self._knobs[arch]
        values = arch_knobs.values()
        if set(choice) != set(values) or any(choice[k] not in values[k] for k in values):
            raise ValueError(f"{arch}: {dict(choice)} is not a point of the space {values}")
        knobs = tuple((k, choice[k]) for k in values)
        key = (arch, knobs)
        if key not in self._cache:
            spec = _SPEC.validate_python(
                {
                    **arch_knobs.to_spec_fields(choice),
                    "num_classes": self.num_classes,
                    "input_shape": self.input_shape,
                }
            )
            self._cache[key] = Candidate(arch, knobs, spec, *plan_of(spec).cost())
        return self._cache[key]

    def fits(self, candidate: Candidate) -> bool:
        """Whether a candidate respects both caps."""
        return within_caps(self.space, (candidate.parameters, candidate.macs))

    def _all(self) -> Iterator[Candidate]:
        for arch, knobs in self._knobs.items():
            for choice in choices(knobs):
                yield self.candidate(arch, choice)

    def enumerate(self) -> list[Candidate]:
        """Every candidate under the caps, in a fixed order."""
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
        return rng.choice(self.enumerate())  # not empty: the constructor found one that fits

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
        return sum(
            math.prod(len(v) for v in knobs.values().values()) for knobs in self._knobs.values()
        )

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
