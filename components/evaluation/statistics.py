"""The statistics of a report's comparisons (numpy and scipy only; no orchestrator, no torch).

- `t_interval`: a recipe's mean top-1 over its models (seeds) with Student's t interval
  (n - 1 degrees of freedom): the usual interval for a mean of a few roughly normal values.
- `bootstrap_interval`: the percentile bootstrap of the mean of paired differences (resample
  the pairs with replacement, ``resamples`` times, from ``numpy.random.default_rng(seed)``):
  reproducible with its seed. With few pairs it is too narrow — with 3 pairs its 2.5th
  percentile is the smallest difference itself (each of the 27 equally likely resamples of
  three has probability 1/27 > 2.5%) — which is why `verdict` also asks the paired t interval.
- `row_bootstrap_interval`: the same bootstrap over the rows of one pair of models (a row's
  difference is -1, 0 or +1, so a resample of N rows is one multinomial draw: exact, and cheap
  for any N).
- `mcnemar`: McNemar's test over rows of one pair of models, exact: under "equally good" the
  rows only one model gets right split as a fair coin, so the two-sided p-value is
  ``min(1, 2 * P[Binomial(b + c, 1/2) <= min(b, c)])`` (the exact binomial test; no
  chi-square approximation, which needs large counts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

#: The confidence of every interval in a report.
CONFIDENCE = 0.95
#: A difference whose test says less than this is "better" or "worse" (two-sided).
ALPHA = 1 - CONFIDENCE


@dataclass(frozen=True)
class Bounds:
    """An interval ``[low, high]``."""

    low: float
    high: float

    def above(self, value: float = 0.0) -> bool:
        return self.low > value

    def below(self, value: float = 0.0) -> bool:
        return self.high < value


@dataclass(frozen=True)
class RowCounts:
    """One pair of models over the same rows: ``only_a`` rows only model A gets right (McNemar's
    b), ``only_b`` rows only B gets right (c), of ``rows`` rows; ``p_value`` the exact test's."""

    rows: int
    only_a: int
    only_b: int
    p_value: float

    @property
    def difference(self) -> float:
        """A's top-1 minus B's (a fraction of the rows)."""
        return (self.only_a - self.only_b) / self.rows if self.rows else 0.0


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Bounds | None:
    """Student's t interval for the mean of ``values``; None with fewer than 2 values (no
    spread to estimate). Equal values give the point itself."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return None
    half = float(stats.t.ppf(0.5 + confidence / 2, len(x) - 1)) * float(x.std(ddof=1))
    half /= float(np.sqrt(len(x)))
    return Bounds(float(x.mean()) - half, float(x.mean()) + half)


def bootstrap_interval(
    differences: Sequence[float],
    *,
    resamples: int,
    seed: int,
    confidence: float = CONFIDENCE,
) -> Bounds | None:
    """The percentile bootstrap interval of the mean of ``differences`` (pairs resampled with
    replacement); None with fewer than 2 pairs. The same ``seed`` gives the same interval."""
    d = np.asarray(differences, dtype=float)
    if len(d) < 2:
        return None
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(resamples, len(d)))].mean(axis=1)
    return _percentiles(means, confidence)


def row_bootstrap_interval(
    correct_a: np.ndarray,
    correct_b: np.ndarray,
    *,
    resamples: int,
    seed: int,
    confidence: float = CONFIDENCE,
) -> Bounds:
    """The percentile bootstrap interval of A's top-1 minus B's over the same rows (rows
    resampled with replacement), from each row's correctness under A and under B."""
    d = correct_a.astype(int) - correct_b.astype(int)  # -1, 0 or 1 per row
    rows = len(d)
    if rows == 0:
        return Bounds(0.0, 0.0)
    shares = [float(np.mean(d == v)) for v in (-1, 0, 1)]
    counts = np.random.default_rng(seed).multinomial(rows, shares, size=resamples)
    return _percentiles((counts[:, 2] - counts[:, 0]) / rows, confidence)


def _percentiles(means: np.ndarray, confidence: float) -> Bounds:
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Bounds(float(low), float(high))


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> RowCounts:
    """McNemar's exact test of two models on the same rows (their per-row correctness)."""
    a, b = correct_a.astype(bool), correct_b.astype(bool)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    discordant = only_a + only_b
    p = 1.0
    if discordant:
        p = min(1.0, 2 * float(stats.binom.cdf(min(only_a, only_b), discordant, 0.5)))
    return RowCounts(len(a), only_a, only_b, p)


def verdict(mean: float, intervals: Sequence[Bounds], n: int) -> str:
    """ "better" when every interval lies above 0, "worse" when every one lies below, else "not
    distinguishable with n = <n>" (an interval that touches 0 does not decide)."""
    if intervals and all(i.above() for i in intervals) and mean > 0:
        return "better"
    if intervals and all(i.below() for i in intervals) and mean < 0:
        return "worse"
    return f"not distinguishable with n = {n}"


def row_verdict(counts: RowCounts) -> str:
    """The verdict of one model per recipe: McNemar's p below `ALPHA` decides the direction."""
    if counts.p_value < ALPHA and counts.only_a != counts.only_b:
        return "better" if counts.only_a > counts.only_b else "worse"
    return "not distinguishable with n = 1"
