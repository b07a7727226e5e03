"""How well a training-free score ranks students: rank correlation with measured accuracy.

Kendall tau and Spearman rho (``scipy.stats``) of a score against accuracies, the same for the
naive baselines (parameter count, MACs), and a scatter plot as PNG bytes (matplotlib's Agg
canvas, no global pyplot state). A constant input has no defined rank correlation: NaN.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class RankCorrelation:
    """Kendall tau (tau-b) and Spearman rho with their two-sided p-values, over ``n`` pairs."""

    kendall_tau: float
    kendall_p: float
    spearman_rho: float
    spearman_p: float
    n: int

    def as_dict(self) -> dict[str, float]:
        """Flat, JSON-ready (NaN where undefined)."""
        return {
            "kendall_tau": self.kendall_tau,
            "kendall_p": self.kendall_p,
            "spearman_rho": self.spearman_rho,
            "spearman_p": self.spearman_p,
            "n": self.n,
        }


def _checked(values: Sequence[float], name: str, n: int) -> list[float]:
    out = [float(v) for v in values]
    if len(out) != n:
        raise ValueError(f"{name} has {len(out)} values, accuracies {n}")
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"{name} must be finite numbers, got {out}")
    return out


def rank_correlation(predictor: Sequence[float], accuracy: Sequence[float]) -> RankCorrelation:
    """Kendall tau and Spearman rho between a predictor (higher = predicted better) and accuracies.

    Raises:
        ValueError: fewer than two pairs, lengths differ, or a value is not finite.
    """
    from scipy import stats

    n = len(accuracy)
    if n < 2:
        raise ValueError(f"a rank correlation needs at least 2 pairs, got {n}")
    x = _checked(predictor, "predictor", n)
    y = _checked(accuracy, "accuracy", n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input: NaN, said in the module doc
        tau = stats.kendalltau(x, y)
        rho = stats.spearmanr(x, y)
    return RankCorrelation(
        float(tau.statistic), float(tau.pvalue), float(rho.statistic), float(rho.pvalue), n
    )


def correlation_report(
    scores: Sequence[float],
    accuracies: Sequence[float],
    *,
    parameters: Sequence[float] | None = None,
    macs: Sequence[float] | None = None,
) -> dict[str, RankCorrelation]:
    """Rank correlation with accuracy of the score and of the given naive baselines:
    ``{"score": ..., "parameters": ..., "macs": ...}`` (baselines only when given)."""
    report = {"score": rank_correlation(scores, accuracies)}
    if parameters is not None:
        report["parameters"] = rank_correlation(parameters, accuracies)
    if macs is not None:
        report["macs"] = rank_correlation(macs, accuracies)
    return report


def scatter_png(
    x: Sequence[float],
    y: Sequence[float],
    *,
    xlabel: str = "DisWOT score",
    ylabel: str = "accuracy",
    title: str | None = None,
    labels: Sequence[str] | None = None,
    dpi: int = 100,
) -> bytes:
    """A scatter plot of ``y`` against ``x`` as PNG bytes; tau and rho in the title when n >= 2.

    ``labels`` annotate the points (e.g. candidate keys), one per point.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if len(x) != len(y) or (labels is not None and len(labels) != len(x)):
        raise ValueError(
            f"x, y and labels differ in length: {len(x)}, {len(y)}, {len(labels or [])}"
        )
    figure = Figure(figsize=(5, 4), dpi=dpi)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.scatter(list(x), list(y), s=18)
    for i, label in enumerate(labels or []):
        axes.annotate(label, (x[i], y[i]), fontsize=6, alpha=0.8)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    heading = title or f"{ylabel} vs {xlabel}"
    if len(x) >= 2 and all(math.isfinite(float(v)) for v in (*x, *y)):
        corr = rank_correlation(x, y)
        heading += f"\nKendall tau={corr.kendall_tau:.3f}  Spearman rho={corr.spearman_rho:.3f}"
    axes.set_title(heading, fontsize=9)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
