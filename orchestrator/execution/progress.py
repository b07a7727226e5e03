"""Progress lines from running steps (`StepContext.log`) back to the console that runs them.

In a Ray task a component's log lines would only reach the worker's log file. A small actor,
`ProgressSink`, collects them instead: a step pushes its lines without waiting for an answer,
and the Ray backend drains the sink whenever it checks on running steps and hands the lines to
the scheduler, which emits them as ``progress`` events (`kdorch run` prints them; the run's
events keep them). The in-process backend calls the scheduler directly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("kdorch")

Report = Callable[[str, str], None]  # (step_id, message)


def sink_class() -> Any:
    import ray

    @ray.remote(num_cpus=0, max_restarts=0)
    class ProgressSink:
        def __init__(self) -> None:
            self.lines: list[tuple[str, str]] = []

        def push(self, step_id: str, message: str) -> None:
            self.lines.append((step_id, message))

        def drain(self) -> list[tuple[str, str]]:
            lines, self.lines = self.lines, []
            return lines

    return ProgressSink


class ToActor:
    """A picklable `Report` that pushes to a `ProgressSink` and never waits or fails a step."""

    def __init__(self, sink: Any):
        self.sink = sink

    def __call__(self, step_id: str, message: str) -> None:
        try:
            self.sink.push.remote(step_id, message)
        except Exception:  # progress is informative: never fail a step for it
            log.debug("progress line dropped: %s", message)


def worker_logging() -> None:
    """Give the ``kdorch`` logger a handler in a Ray worker, so `StepContext.log` lines also
    land in the worker's log file (the dashboard's task logs)."""
    logger = logging.getLogger("kdorch")
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
