"""PNG plots for the evaluation report (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from components.evaluation import metrics as m
from components.evaluation.metrics import Reliability
from components.evaluation.scoring import Scores, class_names
from schemas.kd.artifacts import Dataset


def figure(width: float = 5.0, height: float = 4.0) -> Any:
    """A headless matplotlib (figure, axes) pair (Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), dpi=100)


def png_bytes(fig: Any) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def reliability_diagram(curves: Mapping[str, Reliability]) -> bytes:
    """Accuracy against confidence per bin, one line per model; the diagonal is calibrated."""
    fig, ax = figure()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="calibrated")
    for name, curve in curves.items():
        used = curve.counts > 0
        ax.plot(
            curve.confidence[used],
            curve.accuracy[used],
            marker="o",
            markersize=3,
            label=f"{name} (ECE {curve.ece:.3f})",
        )
    ax.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title="Reliability")
    ax.legend(fontsize=7, loc="upper left")
    return png_bytes(fig)


def confusion_matrix(matrix: np.ndarray, class_names: list[str], title: str) -> bytes:
    fig, ax = figure(4.5, 4.0)
    ax.imshow(matrix, cmap="Blues")
    ticks = range(len(class_names))
    ax.set_xticks(list(ticks), class_names, fontsize=7)
    ax.set_yticks(list(ticks), class_names, fontsize=7)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            color = "white" if count > matrix.max() / 2 else "black"
            ax.text(j, i, str(count), ha="center", va="center", fontsize=6, color=color)
    return png_bytes(fig)


def comparison_chart(groups: Mapping[str, tuple[float, float]]) -> bytes:
    """Top-1 accuracy per model or recipe (mean with a std error bar)."""
    fig, ax = figure(max(4.0, 1.1 * len(groups)), 3.5)
    names = list(groups)
    means = [groups[n][0] * 100 for n in names]
    stds = [groups[n][1] * 100 for n in names]
    bars = ax.bar(names, means, yerr=stds, capsize=4, color="#4c72b0")
    low = max(0.0, min(means) - 5)
    ax.set(ylabel="top-1 accuracy (%)", ylim=(low, 100), title="Top-1 accuracy")
    for bar, mean in zip(bars, means, strict=True):
        ax.text(
            bar.get_x() + bar.get_width() / 2, mean + 0.2, f"{mean:.1f}", ha="center", fontsize=8
        )
    return png_bytes(fig)


def report_plots(scores: Scores, split: str, ece_bins: int, data: Dataset) -> dict[str, bytes]:
    """The report's PNGs by file name: one reliability diagram of every label's first model, a
    confusion matrix per label, and (with several labels) the top-1 comparison, a label's bar
    being its mean ± std when it has several models."""
    y, logits = scores.labels, scores.logits
    firsts = {label: keys[0] for label, keys in scores.members.items()}
    files = {
        "reliability.png": reliability_diagram(
            {k: m.reliability(logits[k], y, ece_bins) for k in firsts.values()}
        )
    }
    for label, key in firsts.items():
        files[f"confusion_{label}.png"] = confusion_matrix(
            m.confusion(logits[key], y, data.num_classes), class_names(data), f"{key} ({split})"
        )
    if len(scores.members) > 1:
        groups = scores.groups
        bars = {
            label: (groups[label]["top1_mean"], groups[label]["top1_std"])
            if label in groups
            else (scores.results[keys[0]]["top1"], 0.0)
            for label, keys in scores.members.items()
        }
        files["comparison.png"] = comparison_chart(bars)
    return files
