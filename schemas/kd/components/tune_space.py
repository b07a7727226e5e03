"""The search domains of a `tune` step's space: what one searched path may take.

Each is written in YAML as a mapping with one key, its kind: ``{uniform: [0.1, 0.95]}``,
``{loguniform: [1.0e-4, 1.0e-2]}``, ``{randint: [1, 10]}``, ``{choice: [1, 2, 4]}``,
``{grid: [0.5, 0.9]}``; `Domain` tells them apart by that key. A domain checks its own values
(ordered, finite bounds; distinct grid values) and names the values a config must accept for
the whole domain to be valid (`SearchDomain.representatives`); `TuneConfig` applies those to its
base distill config. Ray Tune's objects are built from them in `components.tuning.ray_config`.
"""

from __future__ import annotations

import difflib
import math
from functools import partial
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BeforeValidator, Discriminator, Field, Tag, field_validator

from schemas.base import Model


class SearchDomain(Model):
    """One searched dimension, written in YAML as a mapping with one key (its kind)."""

    kind: ClassVar[str]

    def representatives(self) -> list[tuple[str, Any]]:
        """(label, value) pairs that a config must accept for the whole domain to be valid."""
        raise NotImplementedError

    def shown(self) -> str:
        """The domain as written in YAML, e.g. ``{uniform: [0.1, 0.9]}``."""
        (key, value), *_ = self.model_dump(mode="json").items()
        return f"{{{key}: {value}}}"


def _ordered(value: tuple[Any, Any], *, log: bool = False, excluded: bool = False) -> Any:
    """The one check of a range's ``[low, high]`` (finite, ordered; positive on a log scale)."""
    low, high = value
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"bounds must be finite, got [{low}, {high}]")
    if log and low <= 0:
        raise ValueError(f"a log scale needs low > 0, got [{low}, {high}]")
    if not low < high:
        note = " (high is excluded: [1, 10] draws 1..9)" if excluded else ""
        raise ValueError(f"low must be below high{note}, got [{low}, {high}]")
    return value


def _ends_and_inside(low: float, high: float, inside: float) -> list[tuple[str, Any]]:
    # The inside value is fractional on purpose: an int field searched this way must use randint.
    return [("the low end", low), ("the high end", high), ("a value inside", inside)]


class Uniform(SearchDomain):
    """Floats drawn uniformly from ``[low, high]``: ``{uniform: [0.1, 0.95]}``."""

    kind: ClassVar[str] = "uniform"
    uniform: Annotated[tuple[float, float], AfterValidator(_ordered)] = Field(
        description="[low, high], low < high, both finite."
    )

    def representatives(self) -> list[tuple[str, Any]]:
        low, high = self.uniform
        return _ends_and_inside(low, high, low + (high - low) / math.pi)


class LogUniform(SearchDomain):
    """Floats whose logarithm is uniform on ``[low, high]`` (learning rates):
    ``{loguniform: [1.0e-4, 1.0e-2]}``."""

    kind: ClassVar[str] = "loguniform"
    loguniform: Annotated[tuple[float, float], AfterValidator(partial(_ordered, log=True))] = Field(
        description="[low, high], 0 < low < high."
    )

    def representatives(self) -> list[tuple[str, Any]]:
        low, high = self.loguniform
        return _ends_and_inside(low, high, low * (high / low) ** (1 / math.pi))


class RandInt(SearchDomain):
    """Integers drawn uniformly from ``low, ..., high - 1`` (the upper bound is EXCLUSIVE, as
    in Ray Tune and numpy): ``{randint: [1, 10]}`` draws 1..9."""

    kind: ClassVar[str] = "randint"
    randint: Annotated[tuple[int, int], AfterValidator(partial(_ordered, excluded=True))] = Field(
        description="[low, high): low < high; high is excluded."
    )

    def representatives(self) -> list[tuple[str, Any]]:
        return [("the lowest value", self.randint[0]), ("the highest value", self.randint[1] - 1)]


class Choice(SearchDomain):
    """One of the listed values, sampled (a categorical for Optuna; enumerated by ``search:
    grid``): ``{choice: [1, 2, 4, 8]}``."""

    kind: ClassVar[str] = "choice"
    choice: list[Any] = Field(min_length=1, description="The values, at least one.")

    def representatives(self) -> list[tuple[str, Any]]:
        return [("the choice", v) for v in self.choice]


class Grid(SearchDomain):
    """Every listed value, each in its own trials (Ray's ``grid_search``; grids of several
    paths are crossed): ``{grid: [0.5, 0.7, 0.9]}``."""

    kind: ClassVar[str] = "grid"
    grid: list[Any] = Field(min_length=1, description="The values, at least one, no repeats.")

    @field_validator("grid")
    @classmethod
    def _distinct(cls, value: list[Any]) -> list[Any]:
        repeated = [v for i, v in enumerate(value) if v in value[:i]]
        if repeated:
            raise ValueError(f"values repeat ({repeated}): each would run the same trials twice")
        return value

    def representatives(self) -> list[tuple[str, Any]]:
        return [("the grid value", v) for v in self.grid]


_DOMAINS: dict[str, type[SearchDomain]] = {
    c.kind: c for c in (Uniform, LogUniform, RandInt, Choice, Grid)
}
_DOMAIN_HELP = (
    "write one of {uniform: [low, high]}, {loguniform: [low, high]}, {randint: [low, high]}, "
    "{choice: [values]}, {grid: [values]}"
)


def _domain_tag(value: Any) -> str | None:
    if isinstance(value, SearchDomain):
        return value.kind
    if isinstance(value, dict) and len(value) == 1:
        return str(next(iter(value)))
    return None


def _domain_shape(value: Any) -> Any:
    """Clear messages for what is not a one-key domain mapping (before the union sees it)."""
    if isinstance(value, SearchDomain):
        return value
    if not isinstance(value, dict) or len(value) != 1:
        raise ValueError(f"a search domain is a mapping with one key; {_DOMAIN_HELP}")
    (key,) = value
    if key not in _DOMAINS:
        close = difflib.get_close_matches(str(key), list(_DOMAINS), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ValueError(f"unknown search domain '{key}'; {hint}{_DOMAIN_HELP}")
    return value


Domain = Annotated[
    Annotated[Uniform, Tag("uniform")]
    | Annotated[LogUniform, Tag("loguniform")]
    | Annotated[RandInt, Tag("randint")]
    | Annotated[Choice, Tag("choice")]
    | Annotated[Grid, Tag("grid")],
    Discriminator(_domain_tag),
    BeforeValidator(_domain_shape),
]
"""Any one search domain, told apart by its single key."""
