"""`kdorch gc`: abandoned attempts go, committed results and quarantined commits stay."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import Pipeline, run
from orchestrator.cli import main
from orchestrator.errors import KdorchError
from orchestrator.storage.gc import collect, plan_gc
from orchestrator.storage.store import ArtifactStore
from schemas.run import RunStatus


def pipeline(fail: bool) -> Pipeline:
    p = Pipeline("gc")
    src = p.add("src", "toy_source", config={"count": 2})
    p.add("bad", "toy_scale", inputs={"numbers": src.numbers}, config={"fail": fail})
    return p


def test_gc_removes_abandoned_attempts_only(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    first = run(pipeline(fail=False).spec, storage=str(store_dir), executor="local")
    run(
        pipeline(fail=False).spec,
        storage=str(store_dir),
        executor="local",
        overrides=["steps.bad.cache=recompute"],
    )  # a new attempt replaces the committed one
    failed = store_dir / "objects" / "ff" / ("ff" * 32) / "20261129-000000-abcdef"
    (failed / "numbers").mkdir(parents=True)  # what a step that died mid-write leaves
    (failed / "numbers" / "values.json").write_text("[1")
    store = ArtifactStore(str(store_dir))
    planned = {r.path: r.why for r in plan_gc(store)}
    assert sorted(planned.values()) == [
        "attempt of a step that failed or was interrupted",
        "attempt replaced by the committed one",
    ]
    committed = {p.parent for p in store_dir.glob("objects/*/*/COMMIT.json")}
    collect(store, dry_run=True)
    assert all((store_dir / path).exists() for path in planned)  # dry run: nothing deleted
    collect(store)
    assert not any((store_dir / path).exists() for path in planned)
    assert {p.parent for p in store_dir.glob("objects/*/*/COMMIT.json")} == committed
    again = run(pipeline(fail=False).spec, storage=str(store_dir), executor="local")
    assert {s.status.value for s in again.steps} == {"cached"}
    version = again.step("bad").outputs["numbers"]["data_version"]
    assert version == first.step("bad").outputs["numbers"]["data_version"]


def test_gc_keeps_quarantined_commits_and_old_runs_unless_asked(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    record = run(pipeline(fail=False).spec, storage=str(store_dir), executor="local")
    commit = next(store_dir.glob("objects/*/*/COMMIT.json"))
    commit.write_bytes(b"{}")
    run(pipeline(fail=False).spec, storage=str(store_dir), executor="local")  # moved aside
    store = ArtifactStore(str(store_dir))
    assert not [r for r in plan_gc(store) if ".bad-" in r.path]
    assert list(store_dir.glob("objects/*/*/COMMIT.json.bad-*"))
    old = plan_gc(store, runs_older_than_days=-1)  # everything counts as old
    assert f"runs/{record.run_id}" in {r.path for r in old}


def test_gc_refuses_while_a_run_is_going(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store_dir = tmp_path / "store"
    record = run(pipeline(fail=False).spec, storage=str(store_dir), executor="local")
    store = ArtifactStore(str(store_dir))
    store.write_run(record.model_copy(update={"status": RunStatus.running}))  # our pid: alive
    with pytest.raises(KdorchError, match="still going"):
        collect(store)
    with pytest.raises(SystemExit) as code:
        main(["gc", "--storage", str(store_dir), "--dry-run"])
    assert code.value.code == 0 and "would delete 0 folders" in capsys.readouterr().err
