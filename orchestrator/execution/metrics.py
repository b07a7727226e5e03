"""kdorch's own metrics in Ray's metrics pipeline (the dashboard's Metrics view, Prometheus).

Recorded with `ray.util.metrics` where the work happens — the scheduler (driver) for steps,
training and inference inside their step's task — and exported by every node's metrics agent
with Ray's ``ray_`` prefix:

- ``ray_kdorch_steps_total{pipeline, component, status}`` (counter: ran, cached, failed, skipped)
- ``ray_kdorch_step_seconds{pipeline, component}`` (histogram of a step's own time)
- ``ray_kdorch_training_epoch{step}`` and ``ray_kdorch_training_samples_per_second{step}``
- ``ray_kdorch_inference_rows_per_second{step}`` (teacher inference)
- ``ray_kdorch_tune_trials{step, state}`` (trials by state in a sweep)

Without Ray in the process (the local executor, unit tests) every call does nothing.
"""

from __future__ import annotations

import sys
from functools import cache
from typing import Any

_BOUNDARIES = [0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600]


def _ray_ready() -> bool:
    ray = sys.modules.get("ray")  # never import Ray just to record a metric
    return bool(ray is not None and ray.is_initialized())


@cache
def _metric(kind: str, name: str, description: str, tags: tuple[str, ...]) -> Any:
    from ray.util import metrics

    if kind == "counter":
        return metrics.Counter(name, description=description, tag_keys=tags)
    if kind == "histogram":
        return metrics.Histogram(
            name, description=description, boundaries=_BOUNDARIES, tag_keys=tags
        )
    return metrics.Gauge(name, description=description, tag_keys=tags)


def _record(kind: str, name: str, description: str, value: float, **tags: str) -> None:
    if not _ray_ready():
        return
    try:
        metric = _metric(kind, name, description, tuple(sorted(tags)))
        if kind == "counter":
            metric.inc(value, tags=tags)
        elif kind == "histogram":
            metric.observe(value, tags=tags)
        else:
            metric.set(value, tags=tags)
    except Exception:  # metrics are informative: never fail a step for them
        return


def step_finished(pipeline: str, component: str, status: str, seconds: float | None) -> None:
    _record(
        "counter",
        "kdorch_steps_total",
        "Steps by final status",
        1.0,
        pipeline=pipeline,
        component=component,
        status=status,
    )
    if seconds is not None and status == "ran":
        _record(
            "histogram",
            "kdorch_step_seconds",
            "A step's own time, seconds",
            seconds,
            pipeline=pipeline,
            component=component,
        )


def training_epoch(step: str, epoch: int, samples_per_second: float) -> None:
    _record("gauge", "kdorch_training_epoch", "Last finished epoch", float(epoch), step=step)
    _record(
        "gauge",
        "kdorch_training_samples_per_second",
        "Training throughput of the last epoch",
        samples_per_second,
        step=step,
    )


def inference_rows(step: str, rows_per_second: float) -> None:
    _record(
        "gauge",
        "kdorch_inference_rows_per_second",
        "Teacher inference throughput",
        rows_per_second,
        step=step,
    )


def tune_trials(step: str, state: str, count: int) -> None:
    _record("gauge", "kdorch_tune_trials", "Trials by state", float(count), step=step, state=state)
