"""Recipes and their paired comparisons, from a report's `Scores` (`paired_statistics`).

A recipe is a label and the models sharing it; its top-1 is summarised as the mean over its
models with Student's t interval. A comparison [a, b] pairs a's models with b's
(`components.evaluation.pairing`: by training seed) and reports a's top-1 minus b's:

- two pairs or more: the mean difference over pairs, its percentile bootstrap interval and its
  paired t interval; "better" / "worse" only when both exclude 0
  (`components.evaluation.statistics`: why both);
- one pair (one model per recipe): McNemar's exact test over the rows, the row-bootstrap
  interval of the difference, and the verdict of the test (p < 0.05);
- no pair: said, with why.
"""

from __future__ import annotations

import numpy as np

from components.evaluation import statistics as st
from components.evaluation.pairing import Pairing, check_labels, pair_models
from components.evaluation.scoring import Scores
from schemas.kd.comparisons import Comparison, Interval, Pair, RecipeSummary, RowTest
from schemas.kd.components.evaluate import EvaluateConfig

BOOTSTRAP = "percentile bootstrap over {what}, {resamples:,} resamples, seed {seed}"


def paired_statistics(
    scores: Scores, cfg: EvaluateConfig
) -> tuple[dict[str, RecipeSummary], list[Comparison]]:
    """Every recipe's summary (in report order) and the comparisons of ``cfg.compare`` (default:
    `default_pairs`)."""
    recipes = {label: summary(scores, label) for label in scores.ordered_labels()}
    pairs = cfg.compare if cfg.compare is not None else default_pairs(scores)
    check_labels(pairs, list(scores.members))
    return recipes, [compare(scores, cfg, a, b) for a, b in pairs]


def summary(scores: Scores, label: str) -> RecipeSummary:
    keys = scores.members[label]
    top1 = [scores.results[k]["top1"] for k in keys]
    bounds = st.t_interval(top1)
    interval = None
    if bounds is not None:
        interval = Interval(low=bounds.low, high=bounds.high, method=_t_method(len(keys)))
    return RecipeSummary(
        models=list(keys),
        seeds=[scores.seeds.get(k) for k in keys],
        mean=float(np.mean(top1)),
        interval=interval,
    )


def default_pairs(scores: Scores) -> list[tuple[str, str]]:
    """Every label against the first, leaving out the teacher and models trained on a scored
    domain (upper bounds); a single such label against the teacher when there is one."""
    labels = [x for x in scores.ordered_labels() if x != "teacher" and not scores.oracle(x)]
    if len(labels) == 1 and "teacher" in scores.members:
        return [(labels[0], "teacher")]
    return [(label, labels[0]) for label in labels[1:]]


def compare(scores: Scores, cfg: EvaluateConfig, a: str, b: str) -> Comparison:
    """Recipe ``a`` against recipe ``b`` (see the module docstring)."""
    a_keys, b_keys = scores.members[a], scores.members[b]
    pairing = pair_models(
        a_keys, [scores.seeds.get(k) for k in a_keys], b_keys, [scores.seeds.get(k) for k in b_keys]
    )
    top1 = {k: scores.results[k]["top1"] for k in [*a_keys, *b_keys]}
    pairs = [Pair(seed=s, a=x, b=y, difference=top1[x] - top1[y]) for s, x, y in pairing.pairs]
    base = Comparison(
        a=a,
        b=b,
        paired_by=pairing.by,
        pairs=pairs,
        unpaired=pairing.unpaired,
        note=pairing.note,
        verdict=f"not compared: {pairing.note}",
    )
    if not pairs:
        return base
    mean = float(np.mean([p.difference for p in pairs]))
    if len(pairs) == 1:
        return _over_rows(scores, cfg, pairing, base, mean)
    differences = [p.difference for p in pairs]
    boot = st.bootstrap_interval(
        differences, resamples=cfg.bootstrap_resamples, seed=cfg.bootstrap_seed
    )
    paired_t = st.t_interval(differences)
    assert boot is not None and paired_t is not None  # two pairs or more
    what = BOOTSTRAP.format(
        what="pairs", resamples=cfg.bootstrap_resamples, seed=cfg.bootstrap_seed
    )
    return base.model_copy(
        update={
            "mean_difference": mean,
            "bootstrap": Interval(low=boot.low, high=boot.high, method=what),
            "t_interval": Interval(
                low=paired_t.low, high=paired_t.high, method=_t_method(len(pairs))
            ),
            "verdict": st.verdict(mean, [boot, paired_t], len(pairs)),
        }
    )


def _over_rows(
    scores: Scores, cfg: EvaluateConfig, pairing: Pairing, base: Comparison, mean: float
) -> Comparison:
    """One pair: McNemar and the row bootstrap over the rows both models scored."""
    _, x, y = pairing.pairs[0]
    correct_a = scores.logits[x].argmax(1) == scores.labels
    correct_b = scores.logits[y].argmax(1) == scores.labels
    counts = st.mcnemar(correct_a, correct_b)
    rows = st.row_bootstrap_interval(
        correct_a, correct_b, resamples=cfg.bootstrap_resamples, seed=cfg.bootstrap_seed
    )
    what = BOOTSTRAP.format(what="rows", resamples=cfg.bootstrap_resamples, seed=cfg.bootstrap_seed)
    test = RowTest(
        rows=counts.rows, only_a=counts.only_a, only_b=counts.only_b, p_value=counts.p_value
    )
    return base.model_copy(
        update={
            "mean_difference": mean,
            "row_test": test,
            "row_interval": Interval(low=rows.low, high=rows.high, method=what),
            "verdict": st.row_verdict(counts),
        }
    )


def _t_method(n: int) -> str:
    return f"Student's t, {n - 1} degree{'s' if n > 2 else ''} of freedom"
