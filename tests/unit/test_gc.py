"""`kdorch gc`: abandoned attempts go, committed results and quarantined commits stay."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import psutil
import pytest

from orchestrator import Pipeline, run
from orchestrator.cli import main
from orchestrator.errors import ConfigError, KdorchError
from orchestrator.storage.gc import collect, plan_gc
from orchestrator.storage.store import ArtifactStore
from schemas.engine.run import RunStatus


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
    assert f"runs/{record.run_id}" not in {r.path for r in plan_gc(store, 1)}
    store.write_run(record.model_copy(update={"started_at": days_ago(2)}))
    assert f"runs/{record.run_id}" in {r.path for r in plan_gc(store, 1)}


def days_ago(days: float) -> datetime:
    return datetime.now(timezone.utc) - timedelta(days=days)


@pytest.mark.parametrize("age", ["-1", "0", "-0.5"])
def test_gc_refuses_an_age_that_is_not_positive(
    tmp_path: Path, age: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store_dir = tmp_path / "store"
    record = run(pipeline(fail=False).spec, storage=str(store_dir), executor="local")
    store = ArtifactStore(str(store_dir))
    store.write_run(record.model_copy(update={"started_at": days_ago(400)}))
    with pytest.raises(ConfigError, match="positive number of days"):
        plan_gc(store, float(age))
    with pytest.raises(SystemExit) as code:
        main(["gc", "--storage", str(store_dir), "--runs-older-than", age])
    err = capsys.readouterr().err
    assert code.value.code == 2 and "Traceback" not in err
    assert f"--runs-older-than must be a positive number of days, got {float(age):g}" in err
    assert store.list_runs() == [record.run_id]  # nothing deleted


def test_gc_never_selects_the_record_of_a_running_run(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    record = run(pipeline(fail=False).spec, storage=str(store_dir), executor="local")
    store = ArtifactStore(str(store_dir))
    # Still going: its driver is this test's process (alive, and started before the run).
    started = datetime.fromtimestamp(psutil.Process().create_time() + 0.5, timezone.utc)
    store.write_run(record.model_copy(update={"status": RunStatus.running, "started_at": started}))
    tiny = 1e-6  # days (0.09 s): every finished record this old would go
    assert f"runs/{record.run_id}" not in {r.path for r in plan_gc(store, tiny)}
    with pytest.raises(KdorchError, match="still going"):
        collect(store, tiny)
    assert store.list_runs() == [record.run_id]
    # The same record once its driver is gone (a SIGKILL-ed run) is an interrupted run: old.
    store.write_run(
        record.model_copy(
            update={
                "status": RunStatus.running,
                "started_at": days_ago(400),
                "driver_pid": 2**22 + 7,
            }
        )
    )
    assert [r.path for r in collect(store, 1) if r.path.startswith("runs/")] == [
        f"runs/{record.run_id}"
    ]
    assert store.list_runs() == []


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
