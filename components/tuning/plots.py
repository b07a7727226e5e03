"""The sweep's PNG plots: learning curves (where ASHA stopped trials) and a heat map of the metric
over the KD loss's alpha x temperature (when both are searched)."""

from __future__ import annotations

import itertools
import math
import re
from typing import Any

import numpy as np

from components.evaluation.plots import figure, png_bytes
from components.tuning.results import TrialRow
from schemas.kd.components.tune import TuneConfig
from schemas.kd.components.tune_space import Choice, Grid, LogUniform

_ALPHA = re.compile(r"^losses\[(\d+)\]\.alpha$")
_TEMPERATURE = re.compile(r"^losses\[(\d+)\]\.temperature$")
_COLOURS = {"completed": "#4c72b0", "stopped": "#dd8452", "failed": "#c44e52"}
BINS = 5


def learning_curves(rows: list[TrialRow], config: TuneConfig, best: str) -> bytes:
    """The metric per epoch for every trial; a cross where ASHA stopped one, the best in bold."""
    metric = config.metric
    fig, ax = figure(6.0, 4.0)
    shown: set[str] = set()
    for row in rows:
        points = [(h["training_iteration"], h[metric]) for h in row.history if metric in h]
        if not points:
            continue
        x, y = zip(*points, strict=True)
        colour = "black" if row.name == best else _COLOURS[row.status]
        label = None if row.status in shown else row.status
        shown.add(row.status)
        width = 2.2 if row.name == best else 1.0
        ax.plot(x, y, color=colour, linewidth=width, alpha=0.8, label=label, marker="o", ms=2)
        if row.status == "stopped":
            ax.plot(x[-1], y[-1], marker="x", color=colour, markersize=7, linestyle="none")
    ax.plot([], [], color="black", linewidth=2.2, label=f"best: {best}")
    ax.set(xlabel="epoch", ylabel=metric, title=f"{metric} per epoch (x: stopped by ASHA)")
    ax.legend(fontsize=7)
    return png_bytes(fig)


def alpha_temperature_paths(config: TuneConfig) -> tuple[str, str] | None:
    """The searched (alpha, temperature) paths of one loss term, if both are in the space."""
    alphas = {m.group(1): p for p in config.space if (m := _ALPHA.match(p))}
    temps = {m.group(1): p for p in config.space if (m := _TEMPERATURE.match(p))}
    common = sorted(set(alphas) & set(temps), key=int)
    return (alphas[common[0]], temps[common[0]]) if common else None


def _axis(config: TuneConfig, path: str, values: list[float]) -> tuple[list[str], Any]:
    """Tick labels and a value -> bin index function: listed values as they are, ranges in
    `BINS` equal bins (logarithmic for loguniform)."""
    domain = config.space[path]
    if isinstance(domain, Choice | Grid):
        listed = sorted({float(v) for v in values})
        return [f"{v:g}" for v in listed], lambda v: listed.index(float(v))
    low, high = min(values), max(values)
    log = isinstance(domain, LogUniform)
    if log:
        low, high = math.log(low), math.log(high)
    edges = np.linspace(low, high, BINS + 1) if high > low else np.array([low, low + 1])

    def index(v: float) -> int:
        x = math.log(v) if log else v
        return min(int(np.searchsorted(edges, x, side="right")) - 1, len(edges) - 2)

    shown = [math.exp(e) if log else e for e in edges]
    labels = [f"{a:.2g}-{b:.2g}" for a, b in itertools.pairwise(shown)]
    return labels, index


def heat_map(rows: list[TrialRow], config: TuneConfig) -> bytes | None:
    """The best value of the metric each cell of alpha x temperature reached (over every trial
    with results), with the number of trials per cell; None unless both are searched."""
    paths = alpha_temperature_paths(config)
    scored = [r for r in rows if r.best is not None]
    if paths is None or not scored:
        return None
    alpha_path, temp_path = paths
    alphas = [float(r.params[alpha_path]) for r in scored]
    temps = [float(r.params[temp_path]) for r in scored]
    x_labels, x_of = _axis(config, alpha_path, alphas)
    y_labels, y_of = _axis(config, temp_path, temps)
    sign = 1.0 if config.mode == "max" else -1.0
    grid = np.full((len(y_labels), len(x_labels)), np.nan)
    counts = np.zeros_like(grid, dtype=int)
    for row, a, t in zip(scored, alphas, temps, strict=True):
        i, j = y_of(t), x_of(a)
        value = float(row.best or 0.0)
        if np.isnan(grid[i, j]) or sign * value > sign * grid[i, j]:
            grid[i, j] = value
        counts[i, j] += 1
    fig, ax = figure(1.2 * len(x_labels) + 2.5, 0.7 * len(y_labels) + 2.0)
    image = ax.imshow(grid, cmap="viridis" if sign > 0 else "viridis_r", aspect="auto")
    fig.colorbar(image, ax=ax, label=config.metric)
    ax.set_xticks(range(len(x_labels)), x_labels, fontsize=7)
    ax.set_yticks(range(len(y_labels)), y_labels, fontsize=7)
    ax.set(xlabel=alpha_path, ylabel=temp_path, title=f"best {config.metric} (trials per cell)")
    for (i, j), value in np.ndenumerate(grid):
        if not np.isnan(value):
            text = f"{value:.3f}\n({counts[i, j]})"
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white")
    return png_bytes(fig)
