"""Scheduler semantics with the in-process backend: caching, policies, failures, plans."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from orchestrator import Pipeline, RunFailed, plan, run
from orchestrator.storage.verified import forget_verified
from schemas.engine.run import EventKind, RunStatus, StepStatus


def pipeline(fail: bool = False, count: int = 3) -> Pipeline:
    p = Pipeline("local")
    src = p.add("src", "toy_source", config={"count": count})
    good = p.add("good", "toy_scale", inputs={"numbers": src.numbers}, config={"factor": 2})
    bad = p.add(
        "bad", "toy_scale", inputs={"numbers": src.numbers}, config={"factor": 3, "fail": fail}
    )
    p.add("after_bad", "toy_gather", inputs={"parts": [bad.numbers]})
    p.add("after_good", "toy_gather", inputs={"parts": [good.numbers]})
    return p


def statuses(record) -> dict[str, str]:
    return {s.step_id: s.status.value for s in record.steps}


def test_second_run_is_all_cached_and_outputs_agree(store_dir: Path) -> None:
    first = run(pipeline().spec, storage=str(store_dir), executor="local")
    assert set(statuses(first).values()) == {"ran"}
    second = run(pipeline().spec, storage=str(store_dir), executor="local")
    assert set(statuses(second).values()) == {"cached"}
    assert second.step("after_good").outputs == first.step("after_good").outputs
    assert first.step("after_good").outputs["total"] == 2 * (0 + 1 + 2)


def test_failure_stops_descendants_only_and_a_fixed_rerun_reuses_the_rest(store_dir: Path) -> None:
    events = []
    record = run(
        pipeline(fail=True).spec,
        storage=str(store_dir),
        executor="local",
        listeners=[events.append],
    )
    assert record.status == RunStatus.failed
    assert statuses(record) == {
        "src": "ran",
        "good": "ran",
        "bad": "failed",
        "after_bad": "skipped",
        "after_good": "ran",
    }
    error = record.step("bad").error
    assert error is not None and error.type == "ValueError" and "told to fail" in error.message
    assert "toy_scale was told to fail" in error.traceback
    assert [e.step_id for e in events if e.kind == EventKind.skipped] == ["after_bad"]

    fixed = run(pipeline(fail=False).spec, storage=str(store_dir), executor="local")
    assert statuses(fixed) == {
        "src": "cached",
        "good": "cached",
        "bad": "ran",
        "after_bad": "ran",
        "after_good": "cached",
    }


def test_raise_on_failure_chains_the_original_exception(store_dir: Path) -> None:
    with pytest.raises(RunFailed) as info:
        run(
            pipeline(fail=True).spec,
            storage=str(store_dir),
            executor="local",
            raise_on_failure=True,
        )
    (failure,) = info.value.failures
    assert failure.step_id == "bad" and failure.component == "toy_scale" and failure.key
    assert isinstance(failure.__cause__, ValueError)
    assert "step 'bad' (component 'toy_scale'" in str(info.value)


def test_cache_policies(store_dir: Path) -> None:
    run(pipeline().spec, storage=str(store_dir), executor="local")
    for policy, expected in (("recompute", "ran"), ("off", "ran"), ("default", "cached")):
        spec = pipeline().spec
        record = run(
            spec, storage=str(store_dir), executor="local", overrides=[f"steps.good.cache={policy}"]
        )
        assert record.step("good").status.value == expected, policy
        # identical content recomputed: the downstream step keeps its cache
        assert record.step("after_good").status == StepStatus.cached


def test_deleted_artifact_is_not_trusted(store_dir: Path) -> None:
    first = run(pipeline().spec, storage=str(store_dir), executor="local")
    path = first.step("good").outputs["numbers"]["path"]
    shutil.rmtree(store_dir / path)
    second = run(pipeline().spec, storage=str(store_dir), executor="local")
    assert second.step("good").status == StepStatus.ran
    assert "damaged (moved aside)" in second.step("good").reason
    assert list((store_dir / path).parent.parent.glob("COMMIT.json.bad-*"))  # kept to inspect


@pytest.mark.parametrize("damage", [b"{}", b"not json", b""])
def test_an_unreadable_commit_is_moved_aside_and_the_step_reruns(
    store_dir: Path, damage: bytes
) -> None:
    first = run(pipeline().spec, storage=str(store_dir), executor="local")
    commit = next(store_dir.glob(f"objects/*/{first.step('good').key}/COMMIT.json"))
    commit.write_bytes(damage)
    second = run(pipeline().spec, storage=str(store_dir), executor="local")
    assert second.status == RunStatus.succeeded
    assert second.step("good").status == StepStatus.ran
    assert "unreadable (moved aside)" in second.step("good").reason
    assert second.step("after_good").status == StepStatus.cached  # same content again


def test_an_edited_manifest_plans_as_run(store_dir: Path) -> None:
    first = run(pipeline().spec, storage=str(store_dir), executor="local")
    path = first.step("good").outputs["numbers"]["path"]
    manifest = store_dir / path / "_manifest.json"
    manifest.write_text(manifest.read_text().replace('"count": 3', '"count": 4', 1))
    forget_verified()
    steps = {s.step_id: s for s in plan(pipeline().spec, storage=str(store_dir))}
    assert steps["good"].action == "run" and "modified after it was written" in steps["good"].reason


def test_a_flipped_byte_fails_the_reader_and_the_next_run_recomputes(store_dir: Path) -> None:
    first = run(pipeline().spec, storage=str(store_dir), executor="local")
    values = store_dir / first.step("good").outputs["numbers"]["path"] / "values.json"
    values.write_bytes(values.read_bytes().replace(b"2", b"7"))  # same size
    forget_verified()  # a new process
    second = run(
        pipeline().spec,
        storage=str(store_dir),
        executor="local",
        overrides=["steps.after_good.config.factor=1"],  # after_good must read good's output
    )
    error = second.step("after_good").error
    assert error is not None and error.type == "CorruptArtifact"
    assert "values.json is corrupt" in error.message and "moved aside" in error.message
    third = run(pipeline().spec, storage=str(store_dir), executor="local")
    assert third.step("good").status == StepStatus.ran  # recomputed
    assert third.step("after_good").outputs == first.step("after_good").outputs


def test_step_seconds_are_the_steps_own_time(store_dir: Path) -> None:
    p = Pipeline("timed")
    src = p.add("src", "toy_source", config={"sleep": 0.3})
    p.add(
        "fast",
        "toy_scale",
        inputs={"numbers": src.numbers},
        matrix={"f": [1, 2, 3]},
        config={"factor": "${f}"},
    )
    record = run(p.spec, storage=str(store_dir), executor="local")
    assert record.step("src").seconds >= 0.3  # type: ignore[operator]
    for i in (1, 2, 3):
        assert record.step(f"fast[{i}]").seconds < 0.25  # type: ignore[operator]


def test_plan_says_why_a_step_misses_the_cache(store_dir: Path) -> None:
    assert {s.reason for s in plan(pipeline().spec, storage=str(store_dir))} >= {"new"}
    run(pipeline().spec, storage=str(store_dir), executor="local")
    steps = {
        s.step_id: s
        for s in plan(
            pipeline().spec, storage=str(store_dir), overrides=["steps.good.config.factor=5"]
        )
    }
    assert steps["good"].reason == "config changed: factor"
    assert steps["after_good"].reason == "after good"


def test_plan_tells_cached_from_to_run(store_dir: Path) -> None:
    steps = plan(pipeline().spec, storage=str(store_dir))
    assert [(s.step_id, s.action) for s in steps][:2] == [("src", "run"), ("good", "run")]
    assert steps[1].reason == "after src"
    run(pipeline().spec, storage=str(store_dir), executor="local")
    assert {s.action for s in plan(pipeline().spec, storage=str(store_dir))} == {"cached"}
    changed = plan(
        pipeline().spec, storage=str(store_dir), overrides=["steps.good.config.factor=5"]
    )
    assert {s.step_id: s.action for s in changed} == {
        "src": "cached",
        "good": "run",
        "bad": "cached",
        "after_bad": "cached",
        "after_good": "run",
    }


def test_run_record_is_stored(store_dir: Path) -> None:
    from orchestrator.storage.store import ArtifactStore

    record = run(pipeline().spec, storage=str(store_dir), executor="local")
    store = ArtifactStore(str(store_dir))
    assert store.list_runs() == [record.run_id]
    assert store.read_run(record.run_id) == record


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


@pytest.mark.parametrize("value", ["../../escape", "/tmp/abs-escape", "x" * 240, "a/../../b"])
def test_matrix_values_never_build_paths_outside_the_store(tmp_path: Path, value: str) -> None:
    store = tmp_path / "deep" / "store"
    store.parent.mkdir()
    p = Pipeline("escape")
    src = p.add("src", "toy_source", config={"count": 1})
    p.add(  # the value is only a (missing) file to wait for: what matters is the instance id
        "scaled",
        "toy_scale",
        matrix={"tag": [value]},
        inputs={"numbers": src.numbers},
        config={"block_file": "${tag}"},
    )
    before = files_under(tmp_path)
    record = run(p.spec, storage=str(store), executor="local")
    assert record.status == RunStatus.succeeded, [s.error for s in record.steps]
    new = files_under(tmp_path) - before
    assert new and all(store in path.parents or path == store for path in new)
    assert not Path("/tmp/abs-escape").exists()


def test_a_moved_store_plans_fully_cached(tmp_path: Path) -> None:
    run(pipeline().spec, storage=str(tmp_path / "a"), executor="local")
    shutil.move(str(tmp_path / "a"), str(tmp_path / "b"))
    forget_verified()
    steps = plan(pipeline().spec, storage=str(tmp_path / "b"))
    assert {s.action for s in steps} == {"cached"}
    again = run(pipeline().spec, storage=str(tmp_path / "b"), executor="local")
    assert {s.status for s in again.steps} == {StepStatus.cached}


def test_a_steps_log_lines_are_progress_events(store_dir: Path) -> None:
    events: list = []
    run(pipeline().spec, storage=str(store_dir), executor="local", listeners=[events.append])
    lines = [(e.step_id, e.message) for e in events if e.kind == EventKind.progress]
    assert ("good", "scaled 3 numbers by 2") in lines
