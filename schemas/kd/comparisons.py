"""The paired statistics an `EvalReport` carries: each recipe's mean top-1 with its interval,
and each chosen pair of recipes compared over paired models (same training seed) or, with one
model each, over rows. Top-1 values and differences are fractions (0.01 = 1 point).

The maths and the rules (which pairs, which interval, which verdict) are in
`components.evaluation.statistics` and `components.evaluation.comparisons`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.base import Model


class Interval(Model):
    """A 95% interval and how it was computed."""

    low: float
    high: float
    method: str = Field(description="e.g. 't, 2 degrees of freedom', 'percentile bootstrap'.")


class RecipeSummary(Model):
    """The models sharing a label (a recipe) on the scored split."""

    models: list[str] = Field(description="The models' keys in the report (`mlp[0]`, ...).")
    seeds: list[int | None] = Field(
        description="Each model's training seed, as its training step's committed config says "
        "(null: not found)."
    )
    mean: float = Field(description="Mean top-1 over the models.")
    interval: Interval | None = Field(
        None, description="Student's t interval of the mean over the models; none for one model."
    )

    @property
    def n(self) -> int:
        return len(self.models)


class Pair(Model):
    """Two models, one of each recipe, trained with the same seed (or matched as said)."""

    seed: int | None
    a: str
    b: str
    difference: float = Field(description="a's top-1 minus b's.")


class RowTest(Model):
    """McNemar's exact test over the rows of one pair of models."""

    method: str = "McNemar, exact binomial (two-sided)"
    rows: int
    only_a: int = Field(description="Rows only a gets right (McNemar's b).")
    only_b: int = Field(description="Rows only b gets right (McNemar's c).")
    p_value: float


class Comparison(Model):
    """Recipe ``a`` against recipe ``b``: the mean over pairs of a's top-1 minus b's, its
    intervals and a verdict ("better": a is better than b)."""

    a: str
    b: str
    paired_by: Literal["seed", "position", "single", "none"] = Field(
        description="seed: models trained with the same seed; position: the i-th model of each "
        "(seeds not recorded or repeated); single: one model each; none: nothing to pair."
    )
    pairs: list[Pair]
    unpaired: list[str] = Field(default_factory=list, description="Models without a partner.")
    mean_difference: float | None = None
    bootstrap: Interval | None = Field(None, description="Over pairs; none below two pairs.")
    t_interval: Interval | None = Field(None, description="Paired t; none below two pairs.")
    row_test: RowTest | None = Field(None, description="One pair only: McNemar over rows.")
    row_interval: Interval | None = Field(
        None, description="One pair only: bootstrap over rows of the difference."
    )
    verdict: str = Field(description="better, worse, or not distinguishable with n = <pairs>.")
    note: str = Field("", description="Why a comparison has no pairs, or how they were matched.")

    @property
    def n(self) -> int:
        return len(self.pairs)
