"""One `dataset` step run in this process, for the dataset component's tests."""

from __future__ import annotations

from pathlib import Path

from orchestrator import Pipeline, ValidationFailed, run
from schemas.kd.artifacts import Dataset


def make(store: Path, **config: object) -> tuple[Dataset | None, str]:
    """Run one dataset step; (the dataset, "") or (None, the validation or step error)."""
    p = Pipeline("data")
    p.add("data", "dataset", config=config)
    try:
        step = run(p.spec, storage=str(store), executor="local").step("data")
    except ValidationFailed as e:
        return None, str(e)
    if step.error is not None:
        return None, step.error.message
    return Dataset.model_validate(step.outputs["dataset"]), ""
