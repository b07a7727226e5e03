"""The interface between the scheduler and where steps actually run."""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from typing import Protocol

from orchestrator.compile.graph import Node
from orchestrator.execution.progress import Report
from orchestrator.execution.step_runner import StepResult, StepTask, execute_step


@dataclass(frozen=True)
class Outcome:
    """A finished step: its result, or the original exception and its formatted traceback.

    ``seconds`` is the step's own time (a failed step's as the backend saw it)."""

    result: StepResult | None = None
    error: BaseException | None = None
    traceback: str = ""
    seconds: float | None = None


class Backend(Protocol):
    name: str

    def submit(self, node: Node, task: StepTask) -> object:
        """Start the step; returns a handle."""
        ...

    def wait_any(
        self, handles: list[object], timeout: float | None = None
    ) -> tuple[object, Outcome] | None:
        """Block until one of ``handles`` finishes (at most ``timeout`` seconds: then None);
        return it and its outcome."""
        ...

    def cancel(self, handles: list[object]) -> None: ...

    def progress_channel(self, report: Report) -> Report | None:
        """What a step calls with its progress lines (``report`` gets them in the driver)."""
        ...


class LocalBackend:
    """Runs each step in this process, one at a time, when it is submitted.

    For unit tests and debugging (`kdorch run --executor local`): no Ray, no parallel branches.
    Components that start Ray work themselves (training, tuning) still need Ray.
    """

    name = "local"
    #: Steps have finished by the time `submit` returns: `wait_any` never blocks, so the
    #: scheduler need not bring the record up to date before calling it.
    runs_on_submit = True

    def __init__(self) -> None:
        self._done: dict[int, Outcome] = {}
        self._next = 0

    def submit(self, node: Node, task: StepTask) -> object:
        handle = self._next
        self._next += 1
        started = time.perf_counter()
        try:
            result = execute_step(task)
            self._done[handle] = Outcome(result=result, seconds=result.seconds)
        except KeyboardInterrupt:
            raise
        except Exception as e:
            self._done[handle] = Outcome(
                error=e, traceback=traceback.format_exc(), seconds=time.perf_counter() - started
            )
        return handle

    def progress_channel(self, report: Report) -> Report:
        return report  # steps run here: their lines go straight to the scheduler

    def wait_any(
        self, handles: list[object], timeout: float | None = None
    ) -> tuple[object, Outcome] | None:
        handle = handles[0]
        return handle, self._done.pop(handle)  # type: ignore[call-overload]

    def cancel(self, handles: list[object]) -> None:
        for handle in handles:
            self._done.pop(handle, None)  # type: ignore[call-overload]
