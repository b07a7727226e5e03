"""Running one step: the same code in-process (local executor) and inside a Ray task."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel

from orchestrator.component import Component
from orchestrator.execution.context import StepContext
from orchestrator.storage.store import ArtifactStore, new_attempt_id
from schemas.engine.artifacts import ArtifactRef
from schemas.engine.pipeline import CachePolicy, Resources
from schemas.engine.run import CommitRecord


@dataclass(frozen=True)
class StepTask:
    """Everything a worker needs to run one step; small and picklable (data stays in the store)."""

    step_id: str
    component: type[Component]
    config: BaseModel
    inputs: dict[str, Any]
    key: str
    key_material: dict[str, Any]
    run_id: str
    cache: CachePolicy
    resources: Resources
    store: ArtifactStore
    progress: Callable[[str, str], None] | None = None  # live log lines (progress.py)


@dataclass(frozen=True)
class StepResult:
    outputs: BaseModel
    seconds: float  # the step's own time: from entering the worker to its commit
    attempt: str
    node: str = ""  # the Ray node it ran on ("" in-process)


def seal_outputs(outputs: BaseModel, store: ArtifactStore) -> BaseModel:
    """Seal every artifact reference among the outputs (manifest + data_version)."""
    update: dict[str, Any] = {}
    for name in type(outputs).model_fields:
        value = getattr(outputs, name)
        if isinstance(value, ArtifactRef):
            update[name] = store.seal(value)
        elif isinstance(value, list) and any(isinstance(v, ArtifactRef) for v in value):
            update[name] = [store.seal(v) if isinstance(v, ArtifactRef) else v for v in value]
    return outputs.model_copy(update=update) if update else outputs


def _node_id() -> str:
    ray = sys.modules.get("ray")  # never import Ray just to ask (the local executor has none)
    try:
        if ray is not None and ray.is_initialized():
            return str(ray.get_runtime_context().get_node_id())
    except Exception:  # the record is informative only
        pass
    return ""


def execute_step(task: StepTask) -> StepResult:
    """Run the component, seal its artifacts, then commit (unless caching is off).

    Exceptions propagate unchanged (the scheduler wraps them in `ComponentError`), so that the
    original exception crosses a Ray task boundary intact. A step's resumable state
    (`StepContext.resume_path`) is removed once its result is committed.
    """
    started = time.perf_counter()
    attempt = new_attempt_id()
    component = task.component
    ctx = StepContext(
        store=task.store,
        step_id=task.step_id,
        component=component.key,
        key=task.key,
        run_id=task.run_id,
        attempt=attempt,
        resources=task.resources,
        progress=task.progress,
    )
    inputs = component.Inputs.model_validate(task.inputs)
    outputs = component(task.config).run(inputs, ctx)
    if not isinstance(outputs, component.Outputs):
        raise TypeError(
            f"run() returned {type(outputs).__name__}, expected {component.Outputs.__name__}"
        )
    outputs = seal_outputs(outputs, task.store)
    seconds = time.perf_counter() - started
    if task.cache != CachePolicy.off:
        task.store.write_commit(
            CommitRecord(
                key=task.key,
                step_id=task.step_id,
                component=component.key,
                version=component.version,
                run_id=task.run_id,
                attempt=attempt,
                created_at=datetime.now(timezone.utc),
                seconds=seconds,
                key_material=task.key_material,
                outputs=outputs.model_dump(mode="json"),
            )
        )
    task.store.remove(task.store.resume_dir(task.key), recursive=True)
    return StepResult(outputs=outputs, seconds=seconds, attempt=attempt, node=_node_id())
