"""Each step as a Ray task with the step's resources; ready steps run concurrently.

The task's name is the step id, so the Ray dashboard's task view reads like the pipeline.
A step's task is retried by Ray only when its process dies (a killed worker, a lost node) and
only as often as its component allows (`Component.task_retries`: the training components resume
from the checkpoint in the store); an exception raised by the component is never retried.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Any

import ray
from ray.exceptions import RayTaskError, TaskCancelledError

from orchestrator.compile.graph import Node
from orchestrator.execution.backend import Outcome
from orchestrator.execution.progress import (
    Report,
    StepReturn,
    ToSink,
    forget_sink,
    shared_sink,
    worker_logging,
)
from orchestrator.execution.step_runner import StepTask, execute_step

#: How often a waiting driver collects running steps' progress lines (at most: a step's last
#: lines come with its result, not from a drain).
PROGRESS_POLL_S = 0.5


@ray.remote(max_retries=0)
def _run_step(task: StepTask) -> StepReturn:
    worker_logging()  # StepContext.log lines also land in the worker's log (the dashboard)
    lines = task.progress if isinstance(task.progress, ToSink) else None
    try:
        result = execute_step(task)
    except BaseException:
        if lines is not None:
            lines.fail(task.step_id)  # the last lines reach the sink before the error does
        raise
    if lines is None:
        return StepReturn(result=result)
    return lines.finish(task.step_id, result)


def task_options(node: Node) -> dict[str, Any]:
    res = node.resources
    options: dict[str, Any] = {
        "num_cpus": res.num_cpus or 0,
        "num_gpus": res.num_gpus or 0,
        "name": f"step:{node.id}",
        "max_retries": node.component.task_retries(node.config),
        "retry_exceptions": False,
    }
    if res.memory_gb:
        options["memory"] = int(res.memory_gb * 2**30)
    if res.custom:
        options["resources"] = dict(res.custom)
    return options


class RayBackend:
    name = "ray"

    def __init__(self, *, warm: bool = False) -> None:
        """``warm``: on the warm cluster of `kdorch up` (its long-lived progress sink)."""
        self._warm = warm
        self._submitted: dict[Any, float] = {}
        self._sink: Any = None
        self._report: Report | None = None
        self._channel = ""
        self._drained = 0.0  # when the sink was last drained (time.monotonic)

    def progress_channel(self, report: Report) -> Report:
        """Where steps send progress lines (`ToSink`): a channel of its own in this driver's
        `ProgressSink` actor (`shared_sink`), which this backend drains while it waits, handing
        each line to ``report``."""
        self._report = report
        self._sink, name, namespace = shared_sink(self._warm)
        self._channel = uuid.uuid4().hex
        return ToSink(name, namespace, self._channel)

    def _drain(self) -> None:
        self._drained = time.monotonic()
        if self._sink is None or self._report is None:
            return
        try:
            lines = ray.get(self._sink.drain.remote(self._channel), timeout=5)
        except Exception:  # progress is informative: never fail a run for it
            forget_sink()  # the next run starts a sink that answers
            return
        for step_id, message in lines:
            self._report(step_id, message)

    def _last_lines(self, returned: StepReturn) -> None:
        """A finished step's last lines, after those it sent to the sink earlier."""
        if returned.sent:
            self._drain()
        if self._report is not None:
            for message in returned.lines:
                self._report(returned.step_id, message)

    def submit(self, node: Node, task: StepTask) -> object:
        handle = _run_step.options(**task_options(node)).remote(task)
        self._submitted[handle] = time.perf_counter()
        return handle

    def wait_any(
        self, handles: list[object], timeout: float | None = None
    ) -> tuple[object, Outcome] | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:  # wake up now and then to pass on the running steps' progress lines
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            poll = PROGRESS_POLL_S if left is None else min(PROGRESS_POLL_S, left)
            ready, _ = ray.wait(handles, num_returns=1, timeout=poll)
            if time.monotonic() - self._drained >= PROGRESS_POLL_S:
                self._drain()
            if ready:
                break
            if deadline is not None and time.monotonic() >= deadline:
                return None
        handle = ready[0]
        elapsed = time.perf_counter() - self._submitted.pop(handle, time.perf_counter())
        try:
            returned: StepReturn = ray.get(handle)
        except RayTaskError as e:
            self._drain()  # the failed step's last lines, before its failure
            # The original exception (if it could be pickled) with Ray's remote traceback.
            cause = e.cause if e.cause is not None else e
            return handle, Outcome(error=cause, traceback=str(e), seconds=elapsed)
        except (ray.exceptions.RayError, TaskCancelledError) as e:
            self._drain()
            # The worker died (out of memory, segfault, node lost) or the task was cancelled.
            return handle, Outcome(error=e, traceback=str(e), seconds=elapsed)
        self._last_lines(returned)
        result = returned.result
        return handle, Outcome(result=result, seconds=result.seconds)

    def cancel(self, handles: list[object]) -> None:
        for handle in handles:
            with contextlib.suppress(Exception):  # best effort on the way out
                ray.cancel(handle, force=True)
