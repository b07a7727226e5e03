"""The report `evaluate` writes: ``report.json``, ``report.md`` and the PNGs (`write_report`).

The Markdown holds one row per model and the majority-class baseline; each model against the
teacher (accuracy kept, x parameters, x MACs, x latency); one row per repeated label (mean ±
sample std); then notes on test-time adaptation and on models trained on a scored domain.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from components.evaluation.metrics import Baseline
from components.evaluation.plots import report_plots
from components.evaluation.scoring import Scores
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


def markdown(
    title: str,
    metrics: Mapping[str, Mapping[str, float]],
    groups: Mapping[str, Mapping[str, float]],
    plots: list[str],
    *,
    baseline: Baseline | None = None,
) -> str:
    columns = [c for c in COLUMNS if any(c[0] in row for row in metrics.values())]
    rows = [[name, *(_cell(row, k, f) for k, _, f in columns)] for name, row in metrics.items()]
    if baseline is not None:
        rows.append(
            [f"majority baseline ('{baseline.class_name}')", f"{baseline.top1:.2%}"]
            + ["-"] * (len(columns) - 1)
        )
    lines = [f"# {title}", "", *_table(["model", *(c[1] for c in columns)], rows)]
    if baseline is not None:
        lines += [
            "",
            f"Majority baseline: always predicting '{baseline.class_name}' (the most frequent "
            f"class of the {baseline.fitted_on} split) scores {baseline.top1:.2%} top-1.",
        ]
    if "top5" not in (c[0] for c in columns):
        lines += ["Top-5 is not shown: with 5 classes or fewer it is always 100%."]
    students = {n: r for n, r in metrics.items() if n != "teacher" and "top1_kept" in r}
    if students:
        lines += [
            "",
            "## Against the teacher",
            "",
            "Top-1 kept: the model's top-1 over the teacher's. x params, x MACs, x latency: the "
            "teacher's value over the model's (above 1: the model is smaller or faster).",
            "",
        ]
        shown = [c for c in VERSUS if any(c[0] in r for r in students.values())]
        lines += _table(
            ["model", *(c[1] for c in shown)],
            [[n, *(_cell(r, k, f) for k, _, f in shown)] for n, r in students.items()],
        )
    if groups:
        lines += [
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
            body.append([name, f"{row['n']:.0f}", *cells])
        lines += _table(["recipe", "n", *(names[k] for k in shown_keys)], body)
    if plots:
        lines += ["", *[f"![{p}]({p})" for p in plots]]
    return "\n".join(lines) + "\n"


def notes(adaptation: Mapping[str, Mapping[str, list[int]]], saw: list[str]) -> str:
    """Markdown notes: which rows each adaptive model adapted on, and which models were trained
    on a scored domain (so theirs is not a held-out result)."""
    lines = []
    if adaptation:
        lines += ["", "## Test-time adaptation", ""]
        for key, domains in adaptation.items():
            for domain, rows in domains.items():
                shown = ", ".join(map(str, rows[:8])) + (" ..." if len(rows) > 8 else "")
                lines.append(
                    f"- `{key}` adapted to {domain} on its first {len(rows)} rows by row_id "
                    f"(labels unused): {shown}; every {domain} row was then predicted with "
                    "those weights"
                )
    if saw:
        lines += [
            "",
            "Trained on a scored domain (not a held-out result): "
            + ", ".join(f"`{k}`" for k in saw),
        ]
    return "\n".join(lines) + ("\n" if lines else "")


def write_report(
    ctx: StepContext, cfg: EvaluateConfig, data: Dataset, scores: Scores
) -> EvalReport:
    """Write the PNGs (when ``cfg.plots``), ``report.json`` and ``report.md`` under the step's
    ``report`` output, and return its reference."""
    path = ctx.output_path("report")
    written: list[str] = []
    if cfg.plots:
        files = report_plots(scores, cfg.split, cfg.ece_bins, data)
        for name, content in files.items():
            ctx.store.write_bytes(f"{path}/{name}", content)
        written = sorted(files)
    rows = len(scores.labels)
    where = f"{data.source} {data.domain}".strip()
    if cfg.domains:
        where += f" (domains {', '.join(cfg.domains)})"
    title = f"{where}: {cfg.split} split, {rows} rows"
    document = {
        "split": cfg.split,
        "dataset": data.source,
        "domain": data.domain,
        "domains": cfg.domains or data.domains,
        "rows": rows,
        "metrics": scores.results,
        "groups": scores.groups,
        "adaptation": scores.adaptation,
        "trained_on_scored_domains": scores.saw,
        "baseline": scores.baseline.as_dict(),
    }
    ctx.store.write_bytes(
        f"{path}/report.json", json.dumps(document, indent=1, sort_keys=True).encode()
    )
    text = markdown(title, scores.results, scores.groups, written, baseline=scores.baseline)
    text += notes(scores.adaptation, scores.saw)
    ctx.store.write_bytes(f"{path}/report.md", text.encode())
    return EvalReport(
        path=path,
        split=cfg.split,
        metrics=scores.results,
        groups=scores.groups,
        baselines={"majority": scores.baseline.top1},
    )
