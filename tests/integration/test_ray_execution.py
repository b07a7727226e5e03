"""Pipelines of test components on the session's real local Ray."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator import Pipeline, run
from schemas.engine.run import RunStatus

pytestmark = pytest.mark.ray


def test_two_runs_second_all_cached(ray_cluster: str, store_dir: Path) -> None:
    p = Pipeline("twice")
    src = p.add("src", "toy_source", config={"count": 5})
    scaled = p.add(
        "scaled",
        "toy_scale",
        matrix={"factor": [2, 3]},
        inputs={"numbers": src.numbers},
        config={"factor": "${factor}"},
    )
    p.add("total", "toy_gather", inputs={"parts": scaled.all.numbers})
    first = run(p.spec, storage=str(store_dir))
    assert [s.status.value for s in first.steps] == ["ran"] * 4
    assert first.step("total").outputs["total"] == (2 + 3) * (0 + 1 + 2 + 3 + 4)
    second = run(p.spec, storage=str(store_dir))
    assert [s.status.value for s in second.steps] == ["cached"] * 4


def test_independent_branches_overlap_in_time(ray_cluster: str, store_dir: Path) -> None:
    p = Pipeline("parallel")
    for name in ("left", "right"):
        p.add(name, "toy_source", config={"sleep": 2.0, "start": float(len(name))})
    started = time.time()
    record = run(p.spec, storage=str(store_dir))
    wall = time.time() - started
    left, right = (record.step(n).outputs for n in ("left", "right"))
    assert max(left["started"], right["started"]) < min(left["ended"], right["ended"]), (
        left,
        right,
    )
    assert wall < 2 * 2.0 + 1.0


def test_max_parallel_steps_runs_ready_steps_in_turn(ray_cluster: str, store_dir: Path) -> None:
    p = Pipeline("one_at_a_time", ray={"max_parallel_steps": 1})
    for name in ("left", "right", "middle"):
        p.add(name, "toy_source", config={"sleep": 0.5, "start": float(len(name))})
    record = run(p.spec, storage=str(store_dir))
    spans = sorted((s.outputs["started"], s.outputs["ended"]) for s in record.steps)
    assert [s.status.value for s in record.steps] == ["ran"] * 3
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans)), spans


def test_failure_on_ray_keeps_siblings_and_the_original_error(
    ray_cluster: str, store_dir: Path
) -> None:
    p = Pipeline("failing")
    src = p.add("src", "toy_source")
    p.add("bad", "toy_scale", inputs={"numbers": src.numbers}, config={"fail": True})
    good = p.add("good", "toy_scale", inputs={"numbers": src.numbers}, config={"sleep": 0.5})
    p.add("after_good", "toy_gather", inputs={"parts": [good.numbers]})
    record = run(p.spec, storage=str(store_dir))
    assert record.status == RunStatus.failed
    assert {s.step_id: s.status.value for s in record.steps} == {
        "src": "ran",
        "bad": "failed",
        "good": "ran",
        "after_good": "ran",
    }
    error = record.step("bad").error
    assert error is not None and error.type == "ValueError" and "told to fail" in error.message


def test_s3_store_on_ray(ray_cluster: str, s3_server: dict) -> None:
    p = Pipeline(
        "s3",
        storage=f"s3://{s3_server['bucket']}/ray-run",
        storage_options=s3_server["storage_options"],
    )
    src = p.add("src", "toy_source", config={"count": 4})
    p.add("scaled", "toy_scale", inputs={"numbers": src.numbers})
    first = run(p.spec)
    assert first.storage == f"s3://{s3_server['bucket']}/ray-run"
    assert first.step("scaled").outputs["numbers"]["path"].startswith("objects/")
    assert [s.status.value for s in run(p.spec).steps] == ["cached", "cached"]


def test_killed_driver_is_resumed(ray_cluster: str, tmp_path: Path) -> None:
    """Kill -9 the `kdorch run` process mid-run; the next run reuses what was committed."""
    block, markers, store = tmp_path / "block", tmp_path / "markers", tmp_path / "store"
    block.touch()
    markers.mkdir()
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        "name: resume\nsteps:\n"
        "- {id: src, component: toy_source}\n"
        "- id: slow\n  component: toy_scale\n  inputs: {numbers: src.numbers}\n"
        f"  config: {{block_file: {block}, marker_dir: {markers}}}\n"
        "- {id: last, component: toy_gather, inputs: {parts: [slow.numbers]}}\n"
    )
    cmd = [
        sys.executable,
        "-m",
        "orchestrator",
        "run",
        str(pipeline),
        "--storage",
        str(store),
        "--address",
        ray_cluster,
    ]
    driver = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )

    def slow_status() -> str | None:
        """`slow`'s status in the run record, once the driver has written one."""
        records = list((store / "runs").glob("*/run.json")) if (store / "runs").exists() else []
        try:
            steps = json.loads(records[0].read_text())["steps"] if records else []
        except ValueError:  # caught mid-write
            return None
        return {s["step_id"]: s["status"] for s in steps}.get("slow")

    try:
        # The step's marker appears as its worker starts; the driver records "running" a moment
        # later (on a loaded machine, seconds later): wait for both, with a deadline.
        deadline = time.time() + 60
        while not (any(markers.iterdir()) and slow_status() == "running"):
            assert driver.poll() is None, driver.stdout.read().decode()  # type: ignore[union-attr]
            assert time.time() < deadline, f"the slow step never started ({slow_status()})"
            time.sleep(0.1)
    finally:
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
    block.unlink()  # release the step: if its worker outlived the driver it may still commit
    assert slow_status() == "running"  # a SIGKILL-ed driver never writes a final status

    resumed = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    record = json.loads(resumed.stdout)
    statuses = {s["step_id"]: s["status"] for s in record["steps"]}
    assert statuses["src"] == "cached"
    # Ray kills a dead driver's tasks, so `slow` normally runs again; had its worker finished and
    # committed first, reusing that complete result would be right too.
    assert statuses["slow"] in ("ran", "cached") and statuses["last"] == "ran"
    assert record["steps"][2]["outputs"]["total"] == 2 * (0 + 1 + 2)


def test_progress_lines_reach_the_driver_from_ray_tasks(ray_cluster: str, tmp_path: Path) -> None:
    from schemas.engine.run import EventKind

    p = Pipeline("progress", storage=str(tmp_path / "store"))
    src = p.add("src", "toy_source", config={"count": 4})
    p.add("scaled", "toy_scale", inputs={"numbers": src.numbers}, config={"factor": 3})
    events: list = []
    record = run(p.spec, listeners=[events.append])
    assert record.status.value == "succeeded"
    lines = [(e.step_id, e.message) for e in events if e.kind == EventKind.progress]
    assert ("scaled", "scaled 4 numbers by 3") in lines
