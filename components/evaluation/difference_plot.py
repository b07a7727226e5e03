"""``differences.png``: each comparison's a - b in top-1 points with its 95% intervals.

One row per comparison, top to bottom in the order of ``compare``: every pair's difference as a
small dot, the mean as a large marker, the bootstrap interval as a thick bar and the paired t
interval as a thin one above it (two pairs or more); with one model per recipe the interval
over rows, the marker hollow. Colour says the verdict; the dashed line is 0 (no difference).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from components.evaluation.plots import figure
from schemas.kd.comparisons import Comparison

COLORS = {"better": "#55a868", "worse": "#c44e52"}
UNDECIDED = "#6e6e6e"


def differences_figure(comparisons: Sequence[Comparison], title: str, note: str) -> Any:
    """The figure (see the module docstring); ``note`` goes under the axis (the resolution)."""
    fig, ax = figure(7.5, 2.0 + 0.6 * len(comparisons))
    ax.axvline(0, color="black", linestyle="--", linewidth=0.8)
    names = []
    for i, c in enumerate(comparisons):
        y = len(comparisons) - 1 - i
        names.append(f"{c.a} vs {c.b}\n(n = {c.n})")
        color = COLORS.get(c.verdict, UNDECIDED)
        if c.mean_difference is None:
            ax.text(0, y, c.verdict, ha="center", va="center", fontsize=7, color=UNDECIDED)
            continue
        mean = c.mean_difference * 100
        wide = c.bootstrap or c.row_interval
        if wide is not None:
            ax.hlines(y, wide.low * 100, wide.high * 100, color=color, linewidth=3, alpha=0.7)
        if c.t_interval is not None:
            t = c.t_interval
            ax.hlines(y + 0.18, t.low * 100, t.high * 100, color=color, linewidth=1)
        ax.scatter([p.difference * 100 for p in c.pairs], [y] * c.n, s=9, color="black", zorder=3)
        hollow = c.row_interval is not None
        ax.scatter(
            [mean],
            [y],
            s=60,
            zorder=4,
            facecolors="white" if hollow else color,
            edgecolors=color,
            linewidths=1.5,
        )
        ax.annotate(
            f"{mean:+.2f}: {c.verdict}",
            (mean, y - 0.3),
            ha="center",
            va="top",
            fontsize=7,
            color=color,
        )
    ax.set_yticks(range(len(comparisons)), list(reversed(names)), fontsize=8)
    ax.set_ylim(-0.8, len(comparisons) - 0.3)
    legend = (
        "thick bar: bootstrap 95% (over pairs; hollow marker: over rows, one model each); "
        "thin bar: paired t 95%; dots: the pairs"
    )
    # In the axis label, so that the layout makes room for it.
    ax.set_xlabel(f"a - b, top-1 (points)\n{legend}\n{note}", fontsize=7)
    ax.tick_params(axis="x", labelsize=8)
    ax.set_title(title, fontsize=10)
    return fig
