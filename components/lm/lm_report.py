"""`lm_evaluate`'s report: ``report.json`` (everything), ``report.md`` (for people: the models,
the recipes with their intervals, the paired comparisons with their verdicts, the
continuations as text) and ``perplexity.png`` (each recipe's mean perplexity with its 95%
interval, and each model as a dot)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence

from components.evaluation.plots import figure, png_bytes
from components.lm.evaluation import Scored
from components.lm.lm_stats import recipe_summaries
from orchestrator import StepContext
from schemas.kd.comparisons import Interval
from schemas.kd.components.lm_evaluate import LMEvaluateConfig
from schemas.kd.lm_report import Continuation, LMComparison, LMEvalReport, LMRecipe

FENCE = "````"  # code in prompts may hold ``` itself


def _number(value: float | None, fmt: str = ".3f") -> str:
    if value is None:
        return "-"
    return format(value, fmt) if math.isfinite(value) else "overflow"


def _span(interval: Interval | None, fmt: str = ".3f") -> str:
    return f"[{_number(interval.low, fmt)}, {_number(interval.high, fmt)}]" if interval else "-"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def models_table(results: Mapping[str, Mapping[str, float]], batches: list[int]) -> list[str]:
    head = ["model", "perplexity", "NLL (nats/token)", "top-1", "agreement", "KL(teacher‖model)"]
    head += ["parameters", *(f"tokens/s b{b}" for b in batches)]
    rows = []
    for key, r in results.items():
        rows.append(
            [
                f"`{key}`",
                _number(r["perplexity"], ".2f"),
                _number(r["nll"], ".4f"),
                _number(r["top1"], ".4f"),
                _number(r.get("agreement"), ".4f"),
                _number(r.get("kl"), ".4f"),
                f"{int(r['parameters']):,}",
                *(f"{r[f'tokens_per_s_b{b}']:,.0f}" for b in batches),
            ]
        )
    return _table(head, rows)


def recipes_table(recipes: Mapping[str, LMRecipe]) -> list[str]:
    head = ["recipe", "n", "seeds", "mean perplexity", "95% interval"]
    rows = [
        [
            label,
            str(len(r.models)),
            ", ".join("?" if s is None else str(s) for s in r.seeds),
            _number(r.perplexity, ".2f"),
            _span(r.interval, ".2f"),
        ]
        for label, r in recipes.items()
    ]
    return _table(head, rows)


def comparisons_lines(comparisons: Sequence[LMComparison]) -> list[str]:
    head = ["a vs b", "paired by", "n", "mean Δ log-ppl", "ppl ratio", "bootstrap 95%"]
    head += ["paired t 95%", "verdict"]
    rows, notes = [], []
    for c in comparisons:
        rows.append(
            [
                f"{c.a} vs {c.b}",
                c.paired_by,
                str(len(c.pairs)),
                _number(c.mean_difference, "+.4f"),
                _number(c.ratio, ".3f"),
                _span(c.bootstrap, "+.4f"),
                _span(c.t_interval, "+.4f"),
                c.verdict,
            ]
        )
        if c.token_test is not None:
            t = c.token_test
            notes.append(
                f"- {c.a} vs {c.b}, one model each, over {t.tokens:,} target tokens of "
                f"{t.rows:,} rows: mean per-token NLL difference {t.mean:+.4f} nats, t "
                f"{_span(t.t_interval, '+.4f')}, {t.row_interval.method} "
                f"{_span(t.row_interval, '+.4f')}"
            )
        if c.note:
            notes.append(f"- {c.a} vs {c.b}: {c.note}")
    return _table(head, rows) + (["", *notes] if notes else [])


def continuation_lines(continuations: Sequence[Continuation], new_tokens: int) -> list[str]:
    lines = [f"## Continuations (greedy, {new_tokens} new tokens)", ""]
    for i, c in enumerate(continuations, 1):
        lines += [f"### Prompt {i} ({c.source}, {c.prompt_tokens} tokens)", ""]
        lines += [FENCE, c.prompt, FENCE, ""]
        for key, text in c.outputs.items():
            lines += [f"**{key}** ({c.new_tokens[key]} tokens):", "", FENCE, text, FENCE, ""]
    return lines


def markdown(
    cfg: LMEvaluateConfig,
    scored: Scored,
    recipes: Mapping[str, LMRecipe],
    comparisons: Sequence[LMComparison],
    continuations: Sequence[Continuation],
    plots: list[str],
) -> str:
    rows = len(scored.row_tokens)
    lines = [
        f"# Language models: {cfg.split} split, {rows:,} rows, {scored.tokens:,} target tokens",
        "",
        "Perplexity = exp(mean next-token NLL over every counted target token of the split); "
        "tokens/s: forward passes over the split's rows on "
        f"{cfg.speed_threads} CPU thread{'s' if cfg.speed_threads > 1 else ''}.",
        "",
        *models_table(scored.results, cfg.speed_batch_sizes),
        "",
        "## Recipes (mean over models, Student's t 95% interval)",
        "",
        *recipes_table(recipes),
        "",
    ]
    if comparisons:
        lines += [
            "## Paired comparisons",
            "",
            "Δ log-ppl: a's log-perplexity minus b's (nats per token; below 0: a is better); "
            "ppl ratio = exp(Δ). A verdict needs every interval to exclude 0.",
            "",
            *comparisons_lines(comparisons),
            "",
        ]
    lines += [f"![{name}]({name})" for name in plots] + ([""] if plots else [])
    if continuations:
        lines += continuation_lines(continuations, cfg.max_new_tokens)
    return "\n".join(lines) + "\n"


def perplexity_figure(
    recipes: Mapping[str, LMRecipe], results: Mapping[str, Mapping[str, float]], title: str
) -> bytes:
    fig, ax = figure(max(4.0, 1.2 * len(recipes) + 2), 4.0)
    for x, r in enumerate(recipes.values()):
        values = [results[k]["perplexity"] for k in r.models]
        finite = [v for v in values if math.isfinite(v)]
        ax.scatter([x] * len(finite), finite, color="#999999", s=14, zorder=2)
        if r.interval is not None:
            low, high = r.perplexity - r.interval.low, r.interval.high - r.perplexity
            ax.errorbar([x], [r.perplexity], yerr=[[low], [high]], fmt="o", capsize=6, zorder=3)
        elif math.isfinite(r.perplexity):
            ax.plot([x], [r.perplexity], "o", zorder=3)
    ax.set_xticks(range(len(recipes)), list(recipes), rotation=20)
    ax.set_ylabel("test perplexity (lower is better)")
    ax.set_title(title, fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    return png_bytes(fig)


def write_report(
    ctx: StepContext,
    cfg: LMEvaluateConfig,
    scored: Scored,
    members: Mapping[str, list[str]],
    seeds: Mapping[str, int | None],
    comparisons: list[LMComparison],
    continuations: list[Continuation],
) -> LMEvalReport:
    """``report.json``, ``report.md`` and (``cfg.plots``) ``perplexity.png`` under the step's
    ``report`` output, and its reference."""
    path = ctx.output_path("report")
    recipes = recipe_summaries(members, seeds, scored.results)
    plots = []
    if cfg.plots:
        title = f"Perplexity per recipe, {cfg.split} split (bars: 95% t interval over seeds)"
        image = perplexity_figure(recipes, scored.results, title)
        ctx.store.write_bytes(f"{path}/perplexity.png", image)
        plots.append("perplexity.png")
    shown = {"recipes": recipes, "comparisons": comparisons, "continuations": continuations}
    counts = {"tokens": scored.tokens, "rows": len(scored.row_tokens)}
    report = LMEvalReport(path=path, split=cfg.split, metrics=scored.results, **counts, **shown)
    document = report.model_dump(mode="json", exclude={"path", "data_version"})
    text = json.dumps(document, indent=1, sort_keys=True)
    ctx.store.write_bytes(f"{path}/report.json", text.encode())
    text = markdown(cfg, scored, recipes, comparisons, continuations, plots)
    ctx.store.write_bytes(f"{path}/report.md", text.encode())
    return report
