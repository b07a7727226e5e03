"""Admission by resources: on a fixed cluster, a step starts beside running ones only when
all their requests (the workers and actors they start included) fit together."""

from __future__ import annotations

from pathlib import Path

from orchestrator import Pipeline
from orchestrator.compile.compiler import compile_pipeline
from orchestrator.execution.backend import LocalBackend
from orchestrator.execution.scheduler import Scheduler
from orchestrator.storage.store import ArtifactStore
from schemas.engine.run import Event, EventKind


def fan_out() -> Pipeline:
    p = Pipeline("admission")
    src = p.add("src", "toy_source", config={"count": 3})
    for step_id, cpus in (("big_a", 3), ("big_b", 3), ("small", 1)):
        p.add(
            step_id,
            "toy_scale",
            inputs={"numbers": src.numbers},
            config={"factor": cpus},
            resources={"num_cpus": cpus},
        )
    return p


def started_beside(store_dir: Path, capacity: dict[str, float] | None) -> list[set[str]]:
    """The steps running when each step started (the in-process backend finishes a step when
    it is submitted, but the scheduler counts it as running until it collects it)."""
    graph = compile_pipeline(fan_out().spec, capacity=capacity)
    events: list[Event] = []
    scheduler = Scheduler(
        graph,
        ArtifactStore(str(store_dir)),
        LocalBackend(),
        listeners=[events.append],
        max_parallel=3,
        capacity=capacity,
    )
    scheduler.run()
    running: set[str] = set()
    beside = []
    for event in events:
        if event.kind == EventKind.started:
            beside.append({event.step_id, *running})
            running.add(event.step_id)
        elif event.kind in (EventKind.finished, EventKind.failed):
            running.discard(event.step_id)
    return beside


def test_steps_that_do_not_fit_together_wait_and_a_smaller_one_goes_first(
    store_dir: Path,
) -> None:
    beside = started_beside(store_dir, {"CPU": 4.0})
    assert all(sum(3 if s.startswith("big") else 1 for s in group) <= 4 for group in beside)
    # big_a runs with small beside it; big_b (next in graph order) waits for big_a.
    assert {"big_a", "small"} in beside and not any({"big_a", "big_b"} <= g for g in beside)


def test_without_a_capacity_only_max_parallel_limits(store_dir: Path) -> None:
    assert {"big_a", "big_b", "small"} in started_beside(store_dir, None)


def test_an_embedded_ray_admits_steps_by_cores_not_logical_cpus() -> None:
    import os

    from orchestrator.execution.ray_session import step_capacity
    from schemas.engine.pipeline import RaySettings

    cores = float(os.cpu_count() or 1)
    resources = {"CPU": 2 * cores, "GPU": 0.0, "memory": 1e9}
    assert step_capacity(RaySettings(), resources) == {**resources, "CPU": cores}
    # Logical CPUs set on purpose are taken as they are.
    assert step_capacity(RaySettings(num_cpus=16), resources) == resources
