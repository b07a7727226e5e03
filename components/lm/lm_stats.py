"""Recipes and paired comparisons of language models, by perplexity (`recipe_summaries`,
`planned_pairs`, `compare`), with the statistics of `components.evaluation.statistics`
(Student's t, the percentile bootstrap, the verdict rule) and its pairing rule
(`components.evaluation.pairing`: models of two recipes are paired by training seed).

- A recipe's perplexity: the mean over its models with Student's t interval.
- A comparison [a, b] over two pairs or more: per pair, a's log-perplexity minus b's (mean NLL,
  nats per token: a perplexity ratio is exp of it, and a difference of logs is what seeds
  spread symmetrically); their mean, its percentile bootstrap and paired t intervals; "better"
  (a's perplexity lower) or "worse" only when both intervals exclude 0.
- One model each: the per-token NLL differences over the same targets; the t interval over
  tokens, and a bootstrap over rows (rows resampled whole, the ratio sum of differences /
  tokens recomputed: tokens of a row are not independent, so the row interval is the honest
  one); the verdict asks both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats

from components.evaluation import statistics as st
from components.evaluation.pairing import Pairing, pair_models
from components.lm.evaluation import Scored
from schemas.kd.comparisons import Interval
from schemas.kd.lm_report import LMComparison, LMPair, LMRecipe, TokenTest

BOOTSTRAP = "percentile bootstrap over {what}, {resamples:,} resamples, seed {seed}"
#: Resamples drawn at a time by the row bootstrap (bounds its memory).
CHUNK = 1000


def _t_method(n: int) -> str:
    return f"Student's t, {n - 1} degree{'s' if n > 2 else ''} of freedom"


def recipe_summaries(
    members: Mapping[str, list[str]],
    seeds: Mapping[str, int | None],
    results: Mapping[str, Mapping[str, float]],
) -> dict[str, LMRecipe]:
    out = {}
    for label, keys in members.items():
        values = [results[k]["perplexity"] for k in keys]
        bounds = st.t_interval(values) if all(math.isfinite(v) for v in values) else None
        interval = None
        if bounds is not None:
            interval = Interval(low=bounds.low, high=bounds.high, method=_t_method(len(keys)))
        out[label] = LMRecipe(
            models=list(keys),
            seeds=[seeds.get(k) for k in keys],
            perplexity=float(np.mean(values)),
            interval=interval,
        )
    return out


def default_pairs(labels: Sequence[str]) -> list[tuple[str, str]]:
    """Every label against the first (not the teacher); one label against the teacher."""
    students = [x for x in labels if x != "teacher"]
    if len(students) == 1 and "teacher" in labels:
        return [(students[0], "teacher")]
    return [(label, students[0]) for label in students[1:]]


def planned_pairs(
    pairs: Sequence[tuple[str, str]],
    members: Mapping[str, list[str]],
    seeds: Mapping[str, int | None],
) -> list[tuple[str, str, Pairing]]:
    """Each pair of labels with its models paired (before scoring: a one-model pair is
    compared over tokens, which the scoring pass must collect)."""
    out = []
    for a, b in pairs:
        x, y = members[a], members[b]
        pairing = pair_models(x, [seeds.get(k) for k in x], y, [seeds.get(k) for k in y])
        out.append((a, b, pairing))
    return out


def token_pairs(planned: Sequence[tuple[str, str, Pairing]]) -> list[tuple[str, str]]:
    return [(p.pairs[0][1], p.pairs[0][2]) for _, _, p in planned if p.by == "single"]


def _flip(bounds: st.Bounds) -> st.Bounds:
    return st.Bounds(-bounds.high, -bounds.low)


def _verdict(mean: float, intervals: list[st.Bounds], n: int) -> str:
    """better when a's log-perplexity is lower (every interval below 0)."""
    return st.verdict(-mean, [_flip(i) for i in intervals], n)


def compare(
    a: str,
    b: str,
    pairing: Pairing,
    scored: Scored,
    *,
    resamples: int,
    seed: int,
) -> LMComparison:
    """Recipe ``a`` against ``b`` (see the module docstring)."""
    nll = {k: r["nll"] for k, r in scored.results.items()}
    pairs = [LMPair(seed=s, a=x, b=y, difference=nll[x] - nll[y]) for s, x, y in pairing.pairs]
    how = {"paired_by": pairing.by, "unpaired": pairing.unpaired, "note": pairing.note}
    base = LMComparison(a=a, b=b, pairs=pairs, verdict=f"not compared: {pairing.note}", **how)
    if not pairs:
        return base
    mean = float(np.mean([p.difference for p in pairs]))
    base = base.model_copy(update={"mean_difference": mean, "ratio": math.exp(mean)})
    if len(pairs) == 1:
        test = token_test(scored, pairs[0].a, pairs[0].b, resamples=resamples, seed=seed)
        intervals = [
            st.Bounds(test.t_interval.low, test.t_interval.high),
            st.Bounds(test.row_interval.low, test.row_interval.high),
        ]
        verdict = _verdict(test.mean, intervals, 1).replace("n = 1", "one model each")
        return base.model_copy(update={"token_test": test, "verdict": verdict})
    differences = [p.difference for p in pairs]
    boot = st.bootstrap_interval(differences, resamples=resamples, seed=seed)
    paired_t = st.t_interval(differences)
    assert boot is not None and paired_t is not None  # two pairs or more
    what = BOOTSTRAP.format(what="pairs", resamples=resamples, seed=seed)
    return base.model_copy(
        update={
            "bootstrap": Interval(low=boot.low, high=boot.high, method=what),
            "t_interval": Interval(
                low=paired_t.low, high=paired_t.high, method=_t_method(len(pairs))
            ),
            "verdict": _verdict(mean, [boot, paired_t], len(pairs)),
        }
    )


def token_test(scored: Scored, a: str, b: str, *, resamples: int, seed: int) -> TokenTest:
    """Per-token NLL differences of models ``a`` and ``b`` on the same targets."""
    rows_d = scored.row_nll[a] - scored.row_nll[b]
    counts = scored.row_tokens.astype(np.float64)
    n = int(counts.sum())
    total = float(rows_d.sum())
    mean = total / max(n, 1)
    variance = (scored.squares[(a, b)] - n * mean * mean) / max(n - 1, 1)
    half = stats.t.ppf(0.5 + st.CONFIDENCE / 2, max(n - 1, 1)) * math.sqrt(
        max(variance, 0.0) / max(n, 1)
    )
    rows = row_ratio_interval(rows_d, counts, resamples=resamples, seed=seed)
    return TokenTest(
        tokens=n,
        rows=len(counts),
        mean=mean,
        t_interval=Interval(low=mean - half, high=mean + half, method=_t_method(n)),
        row_interval=Interval(
            low=rows.low,
            high=rows.high,
            method=BOOTSTRAP.format(what="rows", resamples=resamples, seed=seed),
        ),
    )


def row_ratio_interval(
    sums: np.ndarray, counts: np.ndarray, *, resamples: int, seed: int
) -> st.Bounds:
    """The percentile bootstrap interval of sum(sums) / sum(counts), rows resampled with
    replacement (`CHUNK` resamples at a time)."""
    rows = len(sums)
    if rows == 0:
        return st.Bounds(0.0, 0.0)
    rng = np.random.default_rng(seed)
    ratios = []
    for start in range(0, resamples, CHUNK):
        picks = rng.integers(0, rows, size=(min(CHUNK, resamples - start), rows))
        ratios.append(sums[picks].sum(axis=1) / np.maximum(counts[picks].sum(axis=1), 1))
    tail = (1 - st.CONFIDENCE) / 2 * 100
    low, high = np.percentile(np.concatenate(ratios), [tail, 100 - tail])
    return st.Bounds(float(low), float(high))
