"""Step metrics are a listener of the scheduler's events, attached by `api.run`: one count per
step by final status, and the time of each step that ran (recorded without Ray here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator import Pipeline, run
from orchestrator.execution import metrics


def pipeline(fail: bool) -> Pipeline:
    p = Pipeline("metered")
    src = p.add("src", "toy_source", config={"count": 3})
    bad = p.add(
        "bad", "toy_scale", inputs={"numbers": src.numbers}, config={"factor": 3, "fail": fail}
    )
    p.add("after_bad", "toy_gather", inputs={"parts": [bad.numbers]})
    return p


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []

    def record(kind: str, name: str, description: str, value: float, **tags: str) -> None:
        calls.append((name, tags.get("component"), tags.get("status"), value))

    monkeypatch.setattr(metrics, "_record", record)
    return calls


def test_each_step_is_counted_by_its_final_status_and_timed_when_it_ran(
    recorded: list[tuple[Any, ...]], store_dir: Path
) -> None:
    run(pipeline(fail=True).spec, storage=str(store_dir), executor="local")
    counted = [(c[1], c[2]) for c in recorded if c[0] == "kdorch_steps_total"]
    assert counted == [("toy_source", "ran"), ("toy_scale", "failed"), ("toy_gather", "skipped")]
    timed = [c for c in recorded if c[0] == "kdorch_step_seconds"]
    assert [c[1] for c in timed] == ["toy_source"] and timed[0][3] > 0

    recorded.clear()
    run(pipeline(fail=True).spec, storage=str(store_dir), executor="local")
    counted = [(c[1], c[2]) for c in recorded if c[0] == "kdorch_steps_total"]
    assert counted[0] == ("toy_source", "cached")
