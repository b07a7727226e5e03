"""Metrics over predictions: accuracy, calibration, agreement, latency (no orchestrator here)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows whose label is among the k largest logits."""
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return float((top == labels[:, None]).any(1).mean())


def nll(logits: np.ndarray, labels: np.ndarray) -> float:
    z = logits - logits.max(1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(1, keepdims=True))
    return float(-log_p[np.arange(len(labels)), labels].mean())


@dataclass
class Reliability:
    """Per equal-width confidence bin: rows, mean confidence, accuracy."""

    edges: np.ndarray
    counts: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray

    @property
    def ece(self) -> float:
        """Expected calibration error: sum over bins of |acc - conf| weighted by bin share."""
        total = self.counts.sum()
        return float((self.counts / max(total, 1) * np.abs(self.accuracy - self.confidence)).sum())


def reliability(logits: np.ndarray, labels: np.ndarray, bins: int = 15) -> Reliability:
    probs = softmax(logits)
    conf = probs.max(1)
    correct = (probs.argmax(1) == labels).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    counts = np.bincount(which, minlength=bins).astype(float)
    safe = np.maximum(counts, 1)
    return Reliability(
        edges,
        counts,
        np.bincount(which, weights=conf, minlength=bins) / safe,
        np.bincount(which, weights=correct, minlength=bins) / safe,
    )


def agreement(logits: np.ndarray, reference: np.ndarray) -> float:
    """Fraction of rows where both predict the same class."""
    return float((logits.argmax(1) == reference.argmax(1)).mean())


def per_class_accuracy(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> list[float]:
    """Accuracy on each class's rows; NaN for a class with no rows (see `class_accuracies`)."""
    predictions = logits.argmax(1)
    return [
        float((predictions[labels == c] == c).mean()) if (labels == c).any() else float("nan")
        for c in range(num_classes)
    ]


def class_accuracies(
    logits: np.ndarray, labels: np.ndarray, class_names: Sequence[str]
) -> dict[str, float]:
    """``class_<name>``: accuracy on each class's rows, for the classes the rows hold (a class
    absent from the split has no accuracy, and is left out rather than reported as NaN)."""
    accuracies = per_class_accuracy(logits, labels, len(class_names))
    return {
        f"class_{name}": value
        for name, value in zip(class_names, accuracies, strict=True)
        if not np.isnan(value)
    }


#: Top-k accuracies reported besides top-1; each only with more than k classes (with k classes
#: or fewer, top-k is always 100%).
TOP_K = (5,)


def accuracies(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``top1``, and ``top<k>`` for each k in `TOP_K` smaller than the number of classes."""
    out = {"top1": topk_accuracy(logits, labels, 1)}
    for k in TOP_K:
        if k < logits.shape[1]:
            out[f"top{k}"] = topk_accuracy(logits, labels, k)
    return out


@dataclass
class Baseline:
    """Always predicting the most frequent class of ``fitted_on`` (the training split): the
    accuracy a model must beat to have learnt anything from the features."""

    class_name: str
    fitted_on: str
    top1: float

    def as_dict(self) -> dict[str, str | float]:
        return {
            "kind": "majority",
            "class": self.class_name,
            "fitted_on": self.fitted_on,
            "top1": self.top1,
        }


def majority_baseline(
    fit_labels: np.ndarray, labels: np.ndarray, class_names: Sequence[str], fitted_on: str
) -> Baseline:
    """The majority-class baseline: the most frequent class of ``fit_labels`` (ties: the lowest
    index), scored on ``labels``."""
    majority = int(np.bincount(fit_labels, minlength=len(class_names)).argmax())
    top1 = float((labels == majority).mean()) if len(labels) else 0.0
    return Baseline(class_names[majority], fitted_on, top1)


#: (row key, teacher's value / the model's) pairs of `compression`: above 1, the model is smaller
#: or faster than its teacher.
RATIOS = {
    "parameters": "params_ratio",
    "macs": "macs_ratio",
    "latency_ms_b1": "latency_ratio_b1",
}


def compression(row: dict[str, float], teacher: dict[str, float]) -> dict[str, float]:
    """A model against its teacher: ``top1_kept`` (its top-1 / the teacher's), and for size and
    speed the teacher's value divided by the model's (``params_ratio`` 4.0: 4x fewer
    parameters)."""
    out: dict[str, float] = {}
    if teacher.get("top1"):
        out["top1_kept"] = row["top1"] / teacher["top1"]
    for key, name in RATIOS.items():
        if row.get(key) and key in teacher:
            out[name] = teacher[key] / row[key]
    return out


def confusion(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, logits.argmax(1)), 1)
    return matrix


@torch.inference_mode()
def predict(model: torch.nn.Module, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    model.eval()
    parts = [
        model(torch.from_numpy(x[i : i + batch_size])).float().numpy()
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(parts)


@torch.inference_mode()
def latency_ms(
    model: torch.nn.Module,
    example: np.ndarray,
    batch_size: int,
    repeats: int,
    budget_s: float | None = None,
) -> float:
    """Median wall time of one forward pass on a batch, on one CPU thread (comparable between
    models and machines' single-core speed; 3 warm-up passes first). With ``budget_s``, a
    model whose passes are slow is timed fewer times (at least 3): the median of a few
    100-ms passes is as steady as that of many 1-ms ones, and a report of ten CNNs at batch
    256 would otherwise spend seconds here."""
    model.eval()
    x = torch.from_numpy(np.repeat(example[:1], batch_size, axis=0))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(3):
            started = time.perf_counter()
            model(x)
        if budget_s is not None:  # the last warm-up pass says what one pass costs
            one = max(time.perf_counter() - started, 1e-9)
            repeats = max(3, min(repeats, int(budget_s / one)))
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - started) * 1000)
    finally:
        torch.set_num_threads(threads)
    return statistics.median(times)


def summarize(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    """'<metric>_mean' and '<metric>_std' over rows sharing a label (seeds of one recipe), plus
    'n', for the metrics every row has.

    The std is the sample standard deviation (ddof=1: an estimate of the spread between seeds,
    not the spread of these few rows alone); 0 for a single row.
    """
    out: dict[str, float] = {"n": float(len(rows))}
    for key in [k for k in rows[0] if all(k in r for r in rows)]:
        values = np.array([r[key] for r in rows], dtype=float)
        out[f"{key}_mean"] = float(values.mean())
        out[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return out
