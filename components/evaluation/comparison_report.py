"""The report's statistics in Markdown: each recipe's mean top-1 with its 95% interval, and the
paired comparisons with their intervals and verdicts (`statistics_markdown`); differences are
in percentage points of top-1."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from components.evaluation.scoring import MARK
from schemas.kd.comparisons import Comparison, Interval, RecipeSummary

PREDICTIONS_FILE = "predictions.parquet"


def _points(value: float) -> str:
    return f"{value * 100:+.2f}"


def _span(interval: Interval | None, fmt: str = "points") -> str:
    if interval is None:
        return "-"
    if fmt == "points":
        return f"[{_points(interval.low)}, {_points(interval.high)}]"
    return f"{interval.low:.2%} to {interval.high:.2%}"


def _seeds(seeds: Sequence[int | None]) -> str:
    return ", ".join("?" if s is None else str(s) for s in seeds)


def resolution(rows: int) -> str:
    """What one row weighs: ``1,000 rows scored: one row = 0.1 points of top-1``."""
    if not rows:
        return "no rows scored"
    return f"{rows:,} rows scored: one row = {100 / rows:.3g} points of top-1"


def recipes_table(recipes: Mapping[str, RecipeSummary], oracles: set[str], rows: int) -> list[str]:
    lines = [
        "",
        "## Top-1 per recipe: mean and 95% interval",
        "",
        f"{resolution(rows)}. The interval is Student's t over a recipe's models (n - 1 degrees "
        "of freedom): how far the mean over seeds could be from the recipe's true mean. A "
        "recipe of one model has none (n = 1: no spread to estimate).",
        "",
        "| recipe | n | seeds | top-1 | 95% interval |",
        "|---|---|---|---|---|",
    ]
    for label, r in recipes.items():
        name = f"{label} {MARK}" if label in oracles else label
        span = _span(r.interval, "percent") if r.interval else "n = 1: no interval"
        lines.append(f"| {name} | {r.n} | {_seeds(r.seeds)} | {r.mean:.2%} | {span} |")
    return lines


def _paired_by(c: Comparison) -> str:
    if c.paired_by == "seed":
        return "seed " + _seeds([p.seed for p in c.pairs])
    return {"position": "position", "single": "one model each", "none": "-"}[c.paired_by]


def _row_test(c: Comparison) -> str:
    if c.row_test is None:
        return "-"
    t = c.row_test
    return f"b {t.only_a}, c {t.only_b}, p {t.p_value:.3g}"


def comparisons_table(comparisons: Sequence[Comparison], resamples: int, seed: int) -> list[str]:
    if not comparisons:
        return []
    lines = [
        "",
        "## Paired comparisons: a - b, top-1 in points",
        "",
        "Models trained with the same seed are paired (a model's seed is read from the config "
        "its training step committed); a - b is a's top-1 minus b's, averaged over the pairs. "
        f"With two pairs or more: the percentile bootstrap interval over the pairs ({resamples:,}"
        f' resamples, seed {seed}) and the paired t interval; the verdict is "better" or '
        '"worse" only when both exclude 0 (with few pairs the bootstrap alone is too narrow). '
        "With one model per recipe: McNemar's exact test over the rows (b: rows only a gets "
        'right, c: rows only b gets right), "better" or "worse" at p < 0.05, and the bootstrap '
        "interval over rows (approximate: with few rows where the two differ it can exclude 0 "
        "while the exact test does not; the verdict follows the exact test).",
        "",
        "| a vs b | n | paired by | a - b | bootstrap 95% | paired t 95% | McNemar | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for c in comparisons:
        diff = "-" if c.mean_difference is None else _points(c.mean_difference)
        boot = _span(c.bootstrap) if c.row_interval is None else _span(c.row_interval) + " rows"
        lines.append(
            f"| {c.a} vs {c.b} | {c.n} | {_paired_by(c)} | {diff} | {boot} | "
            f"{_span(c.t_interval)} | {_row_test(c)} | {c.verdict} |"
        )
        if c.note and c.pairs:
            notes.append(f"- {c.a} vs {c.b}: {c.note}")
        if c.unpaired and c.pairs:
            notes.append(f"- {c.a} vs {c.b}: without a partner: {', '.join(c.unpaired)}")
    return lines + (["", *notes] if notes else [])


def statistics_markdown(
    recipes: Mapping[str, RecipeSummary],
    comparisons: Sequence[Comparison],
    oracles: set[str],
    rows: int,
    bootstrap: tuple[int, int],
) -> list[str]:
    """The two sections, and where the per-row predictions are."""
    lines = recipes_table(recipes, oracles, rows) + comparisons_table(comparisons, *bootstrap)
    return [
        *lines,
        "",
        f"Per-row predictions: `{PREDICTIONS_FILE}` (row_id, label, and each model's predicted "
        "class in a column named by its key), for paired tests over rows.",
    ]
