"""PNG plots for the evaluation report (matplotlib, headless).

Every plot works per recipe (a label and the models sharing it) and in the report's order:
models that trained on a scored domain (upper bounds, `Scores.oracle`) come last and are
marked, as in the tables.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from components.evaluation import metrics as m
from components.evaluation.metrics import Reliability
from components.evaluation.scoring import MARK, Scores, class_names
from schemas.kd.artifacts import Dataset

ORACLE_COLOR = "#b0b0b0"


@dataclass(frozen=True)
class Bar:
    """One bar of the comparison: a recipe's mean top-1 and sample std over its ``n`` models."""

    name: str
    mean: float
    std: float
    n: int
    oracle: bool = False


@dataclass(frozen=True)
class Panel:
    """One recipe's reliability curves (one per model)."""

    name: str
    curves: list[Reliability]
    oracle: bool = False


def figure(width: float = 5.0, height: float = 4.0) -> Any:
    """A headless matplotlib (figure, axes) pair (Agg backend: no display needed)."""
    fig, axes = grid(1, 1, width, height)
    return fig, axes[0, 0]


def grid(rows: int, cols: int, width: float, height: float) -> Any:
    """A headless matplotlib figure and its ``rows`` x ``cols`` array of axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(rows, cols, figsize=(width, height), dpi=100, squeeze=False)


def png_bytes(fig: Any) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def reliability_figure(panels: Sequence[Panel], title: str, note: str = "") -> Any:
    """Small multiples: a panel per recipe (accuracy against confidence per bin, one line per
    model; the diagonal is calibrated), so that ten recipes stay readable."""
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = grid(rows, cols, 3.0 * cols, 2.9 * rows + 0.5)
    for ax, panel in zip(axes.flat, panels, strict=False):
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
        color = ORACLE_COLOR if panel.oracle else "#4c72b0"
        for curve in panel.curves:
            used = curve.counts > 0
            conf, acc = curve.confidence[used], curve.accuracy[used]
            ax.plot(conf, acc, linewidth=1, color=color, alpha=0.8)
            # A bin of few rows is noisy: its marker's area says how many it holds.
            share = curve.counts[used] / curve.counts.sum()
            ax.scatter(conf, acc, s=4 + 120 * share, color=color, alpha=0.8, linewidths=0)
        ece = float(np.mean([c.ece for c in panel.curves]))
        models = f"{len(panel.curves)} models, mean " if len(panel.curves) > 1 else ""
        name = f"{panel.name} {MARK}" if panel.oracle else panel.name
        ax.set_title(f"{name}\n{models}ECE {ece:.3f}", fontsize=9)
        ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.05))  # room for markers at 0 and 1
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("confidence", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy", fontsize=8)
    fig.suptitle(title, fontsize=10)
    note = "; ".join(filter(None, [note, "a marker's area: the rows in its bin"]))
    fig.text(0.5, 0.005, note, ha="center", va="bottom", fontsize=7)
    fig.tight_layout(rect=(0, 0.035 if rows > 1 else 0.06, 1, 1))
    return fig


def confusion_figure(matrix: np.ndarray, class_names: list[str], title: str) -> Any:
    """Counts of (true, predicted) classes, each cell's count written in it."""
    fig, ax = figure(4.5, 4.2)
    ax.imshow(matrix, cmap="Blues")
    ticks = range(len(class_names))
    ax.set_xticks(list(ticks), class_names, fontsize=7)
    ax.set_yticks(list(ticks), class_names, fontsize=7)
    ax.set(xlabel="predicted", ylabel="true")
    ax.set_title(title, fontsize=9)
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            color = "white" if count > matrix.max() / 2 else "black"
            ax.text(j, i, str(count), ha="center", va="center", fontsize=6, color=color)
    return fig


def comparison_figure(
    bars: Sequence[Bar], title: str, baseline: float | None = None, oracle: str = ""
) -> Any:
    """Top-1 accuracy per recipe from 0 to 100%: the mean, a sample-std error bar over its
    models, the value above the bar's top (error bar included); upper bounds grey and hatched,
    ``oracle`` saying why in the legend, beside the majority ``baseline``'s line."""
    fig, ax = figure(max(4.5, 0.75 * len(bars) + 1.5), 4.2)
    names = [f"{b.name} {MARK}" if b.oracle else b.name for b in bars]
    means = [b.mean * 100 for b in bars]
    stds = [b.std * 100 if b.n > 1 else np.nan for b in bars]  # no error bar for one model
    colors = [ORACLE_COLOR if b.oracle else "#4c72b0" for b in bars]
    style = {"edgecolor": "black", "linewidth": 0.5}
    drawn = ax.bar(names, means, yerr=stds, capsize=4, color=colors, **style)
    for patch, bar in zip(drawn, bars, strict=True):
        if bar.oracle:
            patch.set_hatch("//")
    for x, (mean, std) in enumerate(zip(means, stds, strict=True)):
        top = mean + (0.0 if np.isnan(std) else std)
        ax.text(x, top + 1.5, f"{mean:.1f}", ha="center", va="bottom", fontsize=8)
    if baseline is not None:
        line = f"majority baseline ({baseline:.1%})"
        ax.axhline(baseline * 100, color="#c44e52", linestyle="--", linewidth=1, label=line)
    if oracle:  # a legend entry only: an empty bar with the upper bounds' look
        ax.bar([0], [0], color=ORACLE_COLOR, hatch="//", label=oracle, **style)
    if baseline is not None or oracle:
        ax.legend(fontsize=7, loc="upper left", ncol=2, frameon=False)
    # From 0, so that bar heights compare; the band above 100 holds the values and the legend.
    ax.set_ylim(0, 120)
    ax.set_yticks(range(0, 101, 20))
    spread = "\nmean ± sample std over a recipe's models" if any(b.n > 1 for b in bars) else ""
    ax.set_ylabel("top-1 accuracy (%)" + spread, fontsize=8)
    ax.set_title(title, fontsize=10)
    long = max(len(n) for n in names) > 8
    ax.tick_params(axis="x", labelrotation=30 if long else 0, labelsize=8)
    if long:
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
    return fig


def comparison_bars(scores: Scores) -> list[Bar]:
    """A bar per label, in the report's order: its group's mean ± std, or its one model."""
    bars = []
    for label in scores.ordered_labels():
        keys = scores.members[label]
        group = scores.groups.get(label)
        mean, std = (
            (group["top1_mean"], group["top1_std"])
            if group
            else (scores.results[keys[0]]["top1"], 0.0)
        )
        bars.append(Bar(label, mean, std, len(keys), scores.oracle(label)))
    return bars


def report_figures(
    scores: Scores, split: str, ece_bins: int, data: Dataset, scope: str = ""
) -> dict[str, Any]:
    """The report's figures by file name: the reliability diagram (a panel per label, a line
    per model), a confusion matrix per label (counts summed over the label's models, and said
    so), and (with several labels) the top-1 comparison, a label's bar being its mean ± std
    when it has several models. ``scope`` (what was scored: `report.scope`) heads each title."""
    y, logits = scores.labels, scores.logits
    where = f"{scope}, {split} split" if scope else f"{split} split"
    note = scores.oracle_note()
    panels = [
        Panel(
            label,
            [m.reliability(logits[k], y, ece_bins) for k in scores.members[label]],
            scores.oracle(label),
        )
        for label in scores.ordered_labels()
    ]
    figures = {"reliability.png": reliability_figure(panels, f"Reliability: {where}", note)}
    for label, keys in scores.members.items():
        matrix = np.sum([m.confusion(logits[k], y, data.num_classes) for k in keys], axis=0)
        title = f"{keys[0]} ({where})"
        if len(keys) > 1:
            title = f"{label}: counts summed over its {len(keys)} models\n({where})"
        if scores.oracle(label):
            seen = ", ".join(sorted({d for k in keys for d in scores.saw.get(k, [])}))
            title += f"\n{MARK} trained on {seen}: an upper bound, not a held-out result"
        figures[f"confusion_{label}.png"] = confusion_figure(matrix, class_names(data), title)
    if len(scores.members) > 1:
        seen = ", ".join(sorted({d for domains in scores.saw.values() for d in domains}))
        oracle = f"{MARK} trained on {seen}: upper bound" if note else ""
        figures["comparison.png"] = comparison_figure(
            comparison_bars(scores), f"Top-1 accuracy: {where}", scores.baseline.top1, oracle
        )
    return figures


def report_plots(
    scores: Scores, split: str, ece_bins: int, data: Dataset, scope: str = ""
) -> dict[str, bytes]:
    """`report_figures` as PNG bytes."""
    return {
        name: png_bytes(fig)
        for name, fig in report_figures(scores, split, ece_bins, data, scope).items()
    }
