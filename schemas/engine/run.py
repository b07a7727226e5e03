"""Run records and executor events: the one account of what happened in a run."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import Field

from schemas.base import Model


class StepStatus(str, Enum):
    ran = "ran"
    cached = "cached"
    failed = "failed"
    skipped = "skipped"  # an upstream step failed, so this one could not run
    pending = "pending"
    running = "running"


class RunStatus(str, Enum):
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    interrupted = "interrupted"


class ErrorInfo(Model):
    """A step's failure as it can be stored and shown: the original exception's type and text."""

    type: str
    message: str
    traceback: str = ""


class StepRecord(Model):
    step_id: str
    component: str
    version: str
    key: str | None = None
    status: StepStatus = StepStatus.pending
    started_at: datetime | None = None
    seconds: float | None = None
    outputs: dict[str, Any] = Field(default_factory=dict)
    error: ErrorInfo | None = None
    reason: str = ""
    node: str | None = Field(None, description="The Ray node the step ran on.")


class RunRecord(Model):
    run_id: str
    pipeline: str
    status: RunStatus
    started_at: datetime
    finished_at: datetime | None = None
    storage: str
    ray_address: str | None = None
    dashboard_url: str | None = None
    driver_host: str | None = None
    driver_pid: int | None = None
    steps: list[StepRecord]
    final_steps: list[str] = Field(
        default_factory=list,
        description="Steps whose outputs no other step consumes: the run's final outputs.",
    )

    def step(self, step_id: str) -> StepRecord:
        for record in self.steps:
            if record.step_id == step_id:
                return record
        raise KeyError(step_id)


class EventKind(str, Enum):
    planned = "planned"
    cache_hit = "cache_hit"
    started = "started"
    finished = "finished"
    failed = "failed"
    skipped = "skipped"
    progress = "progress"  # a running step's own line (StepContext.log)


class Event(Model):
    """What the executor says as a run proceeds; CLI, run record and tests all read these."""

    kind: EventKind
    run_id: str
    step_id: str | None = None
    time: datetime
    key: str | None = None
    seconds: float | None = None
    message: str = ""


class CommitRecord(Model):
    """The record that makes a step's result visible to the cache; written after all its data.

    ``key_material`` is exactly what was hashed into ``key`` (see `orchestrator.storage.cache`),
    kept so that `kdorch` can explain why two keys differ.
    """

    format: int = 1
    key: str
    step_id: str
    component: str
    version: str
    run_id: str
    attempt: str
    created_at: datetime
    seconds: float
    key_material: dict[str, Any]
    outputs: dict[str, Any]
