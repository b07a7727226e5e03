"""Progress lines from steps in Ray tasks, on the session's real local Ray: every line of every
step arrives, in order, before the step's end — whether it left the worker on the timer while
the step ran, with the step's result, or just before its error."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrator import Pipeline, run
from orchestrator.execution.progress import FLUSH_S, MAX_LINES_PER_FLUSH, ToSink
from schemas.engine.run import Event, EventKind

pytestmark = pytest.mark.ray


def lines_of(events: list[Event], step_id: str) -> list[str]:
    return [e.message for e in events if e.kind == EventKind.progress and e.step_id == step_id]


def before_its_end(events: list[Event], step_id: str) -> bool:
    """Every progress line of the step comes before its finished/failed event."""
    kinds = [e.kind for e in events if e.step_id == step_id]
    end = next(i for i, k in enumerate(kinds) if k in (EventKind.finished, EventKind.failed))
    return EventKind.progress not in kinds[end:]


def expected(n: int) -> list[str]:
    return [f"line {i}/{n}" for i in range(1, n + 1)]


def test_every_line_arrives_in_order_before_the_step_ends(ray_cluster: str, tmp_path: Path) -> None:
    p = Pipeline("progress_order", storage=str(tmp_path / "store"))
    slow = 4 * FLUSH_S / 10  # 12 lines over ~5 flushes: most leave on the timer, mid-step
    p.add("slow_a", "toy_chatter", config={"lines": 12, "every": slow})
    p.add("slow_b", "toy_chatter", config={"lines": 12, "every": slow})
    p.add("quick", "toy_chatter", config={"lines": 3})  # all with the result
    events: list[Event] = []
    record = run(p.spec, listeners=[events.append])
    assert record.status.value == "succeeded"
    for step, n in (("slow_a", 12), ("slow_b", 12), ("quick", 3)):
        assert lines_of(events, step) == expected(n), step
        assert before_its_end(events, step), step
    for step in ("slow_a", "slow_b"):  # live: the first line showed while the step still ran
        first = next(e.time for e in events if e.step_id == step and e.kind == EventKind.progress)
        end = next(e.time for e in events if e.step_id == step and e.kind == EventKind.finished)
        assert (end - first).total_seconds() > FLUSH_S, step


def test_a_failing_steps_last_lines_are_not_lost(ray_cluster: str, tmp_path: Path) -> None:
    p = Pipeline("progress_failing", storage=str(tmp_path / "store"))
    p.add("slow", "toy_chatter", config={"lines": 8, "every": FLUSH_S / 4, "fail": True})
    p.add("quick", "toy_chatter", config={"lines": 2, "fail": True})
    events: list[Event] = []
    record = run(p.spec, listeners=[events.append])
    assert record.status.value == "failed"
    assert lines_of(events, "slow") == expected(8)
    assert lines_of(events, "quick") == expected(2)
    for step in ("slow", "quick"):
        assert before_its_end(events, step), step
        failure = next(e for e in events if e.step_id == step and e.kind == EventKind.failed)
        assert "told to fail after its last line" in failure.message


def test_a_flood_is_capped_and_keeps_its_last_lines(ray_cluster: str, tmp_path: Path) -> None:
    n = 20 * MAX_LINES_PER_FLUSH
    p = Pipeline("progress_flood", storage=str(tmp_path / "store"))
    p.add("flood", "toy_chatter", config={"lines": n})
    events: list[Event] = []
    assert run(p.spec, listeners=[events.append]).status.value == "succeeded"
    got = lines_of(events, "flood")
    assert got[-MAX_LINES_PER_FLUSH:] == expected(n)[-MAX_LINES_PER_FLUSH:]  # the end, whole
    assert len(got) < n / 5
    kept = [line for line in got if line.startswith("line ")]
    assert kept == sorted(kept, key=lambda line: int(line.split()[1].split("/")[0]))
    left_out = [int(re.match(r"\.\.\. (\d+) lines? left out", x)[1]) for x in got if x not in kept]  # type: ignore[index]
    assert sum(left_out) + len(kept) == n  # every line shown or counted


def test_runs_share_one_sink_and_each_drains_its_own_lines(ray_cluster: str) -> None:
    import ray

    from orchestrator.execution.ray_backend import RayBackend

    first, second = RayBackend(), RayBackend()
    got: dict[str, list[tuple[str, str]]] = {"first": [], "second": []}
    a = first.progress_channel(lambda step, line: got["first"].append((step, line)))
    b = second.progress_channel(lambda step, line: got["second"].append((step, line)))
    assert isinstance(a, ToSink) and isinstance(b, ToSink)
    assert a.name == b.name and a.channel != b.channel  # one actor, a channel per run
    sink = ray.get_actor(a.name, namespace=a.namespace)
    ray.get([sink.push.remote(a.channel, "s", ["from the first"])])
    ray.get([sink.push.remote(b.channel, "s", ["from the second"])])
    second._drain()
    first._drain()
    assert got == {"first": [("s", "from the first")], "second": [("s", "from the second")]}
