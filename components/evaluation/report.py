"""The report `evaluate` writes: ``report.json``, ``report.md`` and the PNGs (`write_report`).

The Markdown holds one row per model and the majority-class baseline; each model against the
teacher (accuracy kept, x parameters, x MACs, x latency); one row per repeated label (mean ±
sample std); then notes on test-time adaptation.

A model trained on a scored domain (Meta-DMoE's expert of the held-out domain; any model
whose `trained_domains` include one) is an upper bound, not a held-out result: every table
and plot marks it (`MARK`), lists it last, and says so under the table; the title then says
"held-out domain" when other models never trained on the scored domains.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from components.artifacts.datasets import parquet_bytes, skipped_note
from components.evaluation.comparison_report import (
    PREDICTIONS_FILE,
    resolution,
    statistics_markdown,
)
from components.evaluation.comparisons import paired_statistics
from components.evaluation.difference_plot import differences_figure
from components.evaluation.plots import png_bytes, report_plots
from components.evaluation.scoring import MARK, Scores
from orchestrator import StepContext
from schemas.kd.artifacts import Dataset, EvalReport
from schemas.kd.components.evaluate import EvaluateConfig

COLUMNS = [
    ("top1", "top-1", "{:.2%}"),
    ("top5", "top-5", "{:.2%}"),
    ("agreement", "agreement", "{:.2%}"),
    ("ece", "ECE", "{:.4f}"),
    ("nll", "NLL", "{:.4f}"),
    ("parameters", "params", "{:,.0f}"),
    ("macs", "MACs", "{:,.0f}"),
    ("latency_ms_b1", "ms @1", "{:.3f}"),
    ("latency_ms_b256", "ms @256", "{:.2f}"),
]
#: Against the teacher (`metrics.compression`): a ratio above 1 means smaller or faster.
VERSUS = [
    ("top1", "top-1", "{:.2%}"),
    ("top1_kept", "top-1 kept", "{:.1%}"),
    ("params_ratio", "x params", "{:.1f}x"),
    ("macs_ratio", "x MACs", "{:.1f}x"),
    ("latency_ratio_b1", "x latency @1", "{:.1f}x"),
]
GROUPED = ("top1", "top5", "agreement", "ece", "top1_kept")


def _cell(row: Mapping[str, float], key: str, fmt: str) -> str:
    return fmt.format(row[key]) if key in row else "-"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def scope(data: Dataset, domains: list[str] | None, scores: Scores) -> str:
    """What was scored, for titles: ``mnist5k, held-out domain rot0`` when some model never
    trained on the scored domains, else the dataset and the chosen domains."""
    where = f"{data.source} {data.domain}".strip()
    if scores.held_out:
        plural = "s" if len(scores.held_out) > 1 else ""
        return f"{where}, held-out domain{plural} {', '.join(scores.held_out)}"
    return where + (f" (domains {', '.join(domains)})" if domains else "")


def _marked(scores: Scores, name: str) -> str:
    """A model's key or a recipe's label, marked when it is an upper bound."""
    return f"{name} {MARK}" if scores.oracle(name) else name


def _ordered_keys(scores: Scores) -> list[str]:
    return [key for label in scores.ordered_labels() for key in scores.members[label]]


def _main_table(scores: Scores) -> list[str]:
    metrics, baseline = scores.results, scores.baseline
    columns = [c for c in COLUMNS if any(c[0] in row for row in metrics.values())]
    keys = _ordered_keys(scores)
    rows = [[_marked(scores, k), *(_cell(metrics[k], c, f) for c, _, f in columns)] for k in keys]
    held = [k for k in keys if not scores.oracle(k)]
    baseline_row = [f"majority baseline ('{baseline.class_name}')", f"{baseline.top1:.2%}"]
    # The baseline closes the held-out rows; the upper bounds come after it.
    rows.insert(len(held), baseline_row + ["-"] * (len(columns) - 1))
    lines = _table(["model", *(c[1] for c in columns)], rows)
    if scores.oracle_note():
        lines += ["", scores.oracle_note() + "."]
    lines += [
        "",
        f"Majority baseline: always predicting '{baseline.class_name}' (the most frequent "
        f"class of the {baseline.fitted_on} split) scores {baseline.top1:.2%} top-1.",
    ]
    if "top5" not in (c[0] for c in columns):
        lines += ["Top-5 is not shown: with 5 classes or fewer it is always 100%."]
    return lines


def _versus_table(scores: Scores) -> list[str]:
    students = {
        k: scores.results[k]
        for k in _ordered_keys(scores)
        if k != "teacher" and "top1_kept" in scores.results[k]
    }
    if not students:
        return []
    lines = [
        "",
        "## Against the teacher",
        "",
        "Top-1 kept: the model's top-1 over the teacher's. x params, x MACs, x latency: the "
        "teacher's value over the model's (above 1: the model is smaller or faster).",
        "",
    ]
    shown = [c for c in VERSUS if any(c[0] in r for r in students.values())]
    return lines + _table(
        ["model", *(c[1] for c in shown)],
        [[_marked(scores, n), *(_cell(r, k, f) for k, _, f in shown)] for n, r in students.items()],
    )


def _groups_table(scores: Scores) -> list[str]:
    groups = {
        label: scores.groups[label] for label in scores.ordered_labels() if label in scores.groups
    }
    if not groups:
        return []
    lines = [
        "",
        "## Recipes (mean ± sample std over models sharing a label)",
        "",
        "The std is the sample standard deviation over the n models (ddof=1).",
        "",
    ]
    formats = {k: f for k, _, f in [*COLUMNS, *VERSUS]}
    names = {k: n for k, n, _ in [*COLUMNS, *VERSUS]}
    shown_keys = [k for k in GROUPED if any(f"{k}_mean" in r for r in groups.values())]
    body = []
    for name, row in groups.items():
        cells = [
            f"{formats[k].format(row[f'{k}_mean'])} ± {formats[k].format(row[f'{k}_std'])}"
            if f"{k}_mean" in row
            else "-"
            for k in shown_keys
        ]
        body.append([_marked(scores, name), f"{row['n']:.0f}", *cells])
    return lines + _table(["recipe", "n", *(names[k] for k in shown_keys)], body)


def markdown(title: str, scores: Scores, plots: list[str], statistics: list[str]) -> str:
    """The report's Markdown: the models and the baseline (upper bounds marked and last), the
    teacher comparison, the recipes' mean ± std, ``statistics`` (the recipes' intervals and the
    paired comparisons: `comparison_report`), the plots."""
    lines = [f"# {title}", "", *_main_table(scores), *_versus_table(scores), *_groups_table(scores)]
    lines += statistics
    if plots:
        lines += ["", *[f"![{p}]({p})" for p in plots]]
    return "\n".join(lines) + "\n"


def notes(adaptation: Mapping[str, Mapping[str, list[int]]]) -> str:
    """Markdown notes: which rows each adaptive model adapted on. (Models trained on a scored
    domain are marked in the tables themselves: `oracle_note`.)"""
    lines = []
    if adaptation:
        lines += ["", "## Test-time adaptation", ""]
        for key, domains in adaptation.items():
            for domain, rows in domains.items():
                shown = ", ".join(map(str, rows[:8])) + (" ..." if len(rows) > 8 else "")
                lines.append(
                    f"- `{key}` adapted to {domain} on {len(rows)} of its rows, in disjoint "
                    f"batches by row_id (labels unused): {shown}; every {domain} row was "
                    "predicted with the weights of a batch that does not hold it"
                )
    return "\n".join(lines) + ("\n" if lines else "")


def write_report(
    ctx: StepContext, cfg: EvaluateConfig, data: Dataset, scores: Scores
) -> EvalReport:
    """Write the PNGs (when ``cfg.plots``), ``report.json``, ``report.md`` and the per-row
    predictions under the step's ``report`` output, and return its reference."""
    path = ctx.output_path("report")
    rows = len(scores.labels)
    recipes, comparisons = paired_statistics(scores, cfg)
    where = scope(data, cfg.domains, scores)
    written: list[str] = []
    if cfg.plots:
        files = report_plots(scores, cfg.split, cfg.ece_bins, data, where)
        if comparisons:
            title = f"Paired differences: {where}, {cfg.split} split"
            figure = differences_figure(comparisons, title, resolution(rows))
            files["differences.png"] = png_bytes(figure)
        for name, content in files.items():
            ctx.store.write_bytes(f"{path}/{name}", content)
        written = sorted(files)
    ctx.store.write_bytes(f"{path}/{PREDICTIONS_FILE}", predictions_parquet(scores))
    document = {
        "split": cfg.split,
        "dataset": data.source,
        "domain": data.domain,
        "domains": cfg.domains or data.domains,
        "rows": rows,
        "resolution_points": 100 / rows if rows else None,  # one row, in points of top-1
        "metrics": scores.results,
        "groups": scores.groups,
        "recipes": {label: r.model_dump(mode="json") for label, r in recipes.items()},
        "comparisons": [c.model_dump(mode="json") for c in comparisons],
        "predictions": PREDICTIONS_FILE,
        "adaptation": scores.adaptation,
        "held_out_domains": scores.held_out,
        "trained_on_scored_domains": scores.saw,  # model -> the scored domains it trained on
        "baseline": scores.baseline.as_dict(),
        "distilled_on_views": scores.views,  # model -> the augmented views it was distilled on
    }
    ctx.store.write_bytes(
        f"{path}/report.json", json.dumps(document, indent=1, sort_keys=True).encode()
    )
    oracles = {label for label in scores.members if scores.oracle(label)}
    bootstrap = (cfg.bootstrap_resamples, cfg.bootstrap_seed)
    statistics = statistics_markdown(recipes, comparisons, oracles, rows, bootstrap)
    title = f"{where}: {cfg.split} split, {rows} rows"
    text = markdown(title, scores, written, statistics) + notes(scores.adaptation)
    text += skipped_note(data)
    text += "".join(f"\n`{key}` was distilled on {how}.\n" for key, how in scores.views.items())
    ctx.store.write_bytes(f"{path}/report.md", text.encode())
    return EvalReport(
        path=path,
        split=cfg.split,
        metrics=scores.results,
        groups=scores.groups,
        baselines={"majority": scores.baseline.top1},
        rows=rows,
        recipes=recipes,
        comparisons=comparisons,
        predictions=PREDICTIONS_FILE,
    )


def predictions_parquet(scores: Scores) -> bytes:
    """``predictions.parquet``: row_id, label and each model's predicted class (a column per
    model key, in the report's order), one row per scored row."""
    import pyarrow as pa

    rows = len(scores.labels)
    row_ids = scores.row_ids if scores.row_ids is not None else range(rows)
    columns = {
        "row_id": pa.array(row_ids, pa.int64()),
        "label": pa.array(scores.labels, pa.int64()),
    }
    for key, logits in scores.logits.items():
        columns[key] = pa.array(logits.argmax(1), pa.int64())
    return parquet_bytes(pa.table(columns))
