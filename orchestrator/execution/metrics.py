"""kdorch's own metrics in Ray's metrics pipeline (the dashboard's Metrics view, Prometheus).

Recorded with `ray.util.metrics` where the work happens — on the driver for steps, by
`StepMetrics`, a listener of the scheduler's events that `api.run` attaches (the scheduler itself
knows nothing of metrics); training and inference inside their step's task — and exported by
every node's metrics agent with Ray's ``ray_`` prefix:

- ``ray_kdorch_steps_total{pipeline, component, status}`` (counter: ran, cached, failed, skipped)
- ``ray_kdorch_step_seconds{pipeline, component}`` (histogram of a step's own time)
- ``ray_kdorch_training_epoch{step}`` and ``ray_kdorch_training_samples_per_second{step}``
- ``ray_kdorch_inference_rows_per_second{step}`` (teacher inference)

Without Ray in the process (the local executor, unit tests) every call does nothing.
"""

from __future__ import annotations

import sys
from functools import cache
from typing import TYPE_CHECKING, Any

from schemas.engine.run import Event, EventKind

if TYPE_CHECKING:
    from orchestrator.compile.graph import Graph

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


class StepMetrics:
    """A scheduler listener: counts each step by its final status and times the steps that ran.

    Observe-only, as every listener: it reads the events and changes nothing of the run.
    """

    _STATUS = {
        EventKind.finished: "ran",
        EventKind.cache_hit: "cached",
        EventKind.failed: "failed",
        EventKind.skipped: "skipped",
    }

    def __init__(self, graph: Graph):
        self.pipeline = graph.spec.name
        self.components = {nid: node.component.key for nid, node in graph.nodes.items()}

    def __call__(self, event: Event) -> None:
        status = self._STATUS.get(event.kind)
        if status is None or event.step_id is None:
            return
        tags = {"pipeline": self.pipeline, "component": self.components[event.step_id]}
        _record(
            "counter", "kdorch_steps_total", "Steps by final status", 1.0, status=status, **tags
        )
        if event.seconds is not None and status == "ran":
            _record(
                "histogram",
                "kdorch_step_seconds",
                "A step's own time, seconds",
                event.seconds,
                **tags,
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
