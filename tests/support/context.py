"""A `StepContext` for calling a component's `run()` directly in a test, outside any run."""

from __future__ import annotations

from orchestrator.execution.context import StepContext
from orchestrator.storage.store import ArtifactStore
from schemas.engine.pipeline import Resources


def step_context(
    store: ArtifactStore, step_id: str = "report", key: str = "ab" * 32
) -> StepContext:
    """The context of step ``step_id`` whose outputs go under ``key`` in ``store``."""
    return StepContext(
        store=store,
        step_id=step_id,
        component="test",
        key=key,
        run_id="r",
        attempt="a1",
        resources=Resources(),
    )
