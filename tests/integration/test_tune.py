"""The `tune` component for real on the session's Ray: a tiny sweep over two teachers' fusion
weights on sklearn digits, trials one at a time so that ASHA's decisions are deterministic."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from orchestrator import Pipeline, run
from schemas.kd.artifacts import ModelCheckpoint

pytestmark = pytest.mark.ray

DISTILL: dict[str, Any] = {
    "student": {"arch": "mlp", "hidden": [16]},
    "epochs": 2,
    "batch_size": 64,
    "optimizer": {"lr": 0.01},
    "losses": [{"type": "kd", "alpha": 0.95, "temperature": 2.0}],
    "teacher_weights": [1.0, 1.0],
}
# Grid order: the first path varies fastest, so the trials run (w0, w1) = (0, 0), (1, 0), (0, 1),
# (1, 1). (0, 0) fails (no teacher left); (1, 0) learns from the good teacher and completes;
# (0, 1) learns from the untrained one, falls below the median at the epoch-1 rung and is
# stopped; (1, 1) sits at the median and completes.
SWEEP: dict[str, Any] = {
    "distill": DISTILL,
    "space": {
        "teacher_weights[0]": {"grid": [0.0, 1.0]},
        "teacher_weights[1]": {"grid": [0.0, 1.0]},
    },
    "search": "grid",
    "max_concurrent_trials": 1,
    "asha": {"grace_period": 1, "reduction_factor": 2},
}


def teachers(store: Path) -> Pipeline:
    """digits, a trained teacher and an untrained one (1 epoch at a negligible rate), cached."""
    p = Pipeline("tune-test", storage=str(store))
    data = p.add("data", "dataset", config={"source": "digits"})
    caches = []
    for name, epochs, lr in (("good", 4, 0.005), ("bad", 1, 1.0e-7)):
        teacher = p.add(
            name,
            "train",
            inputs={"data": data.dataset},
            config={"model": {"arch": "mlp", "hidden": [64]}, "epochs": epochs,
                    "batch_size": 64, "optimizer": {"lr": lr}},
        )  # fmt: skip
        caches.append(
            p.add(
                f"{name}_logits",
                "teacher_inference",
                inputs={"teacher": teacher.model, "data": data.dataset},
            ).logits
        )
    p.add("sweep", "tune", inputs={"data": data.dataset, "logits": caches}, config=SWEEP)
    return p


@pytest.fixture(scope="module")
def sweep(ray_cluster: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    store = tmp_path_factory.mktemp("tune") / "store"
    record = run(teachers(store).spec)
    assert record.status.value == "succeeded", [s.error for s in record.steps if s.error]
    return store, record.step("sweep")


def test_sweep_stops_weak_trials_and_keeps_the_best(sweep: tuple[Path, Any]) -> None:
    store, step = sweep
    out = step.outputs
    table = pq.read_table(store / out["results"]["path"] / "results.parquet").to_pylist()
    assert [(r["teacher_weights[0]"], r["teacher_weights[1]"], r["status"]) for r in table] == [
        (0.0, 0.0, "failed"),
        (1.0, 0.0, "completed"),
        (0.0, 1.0, "stopped"),
        (1.0, 1.0, "completed"),
    ]
    stopped = table[2]
    assert stopped["epochs"] == 1 and stopped["planned_epochs"] == 2
    assert all(r["epochs"] == 2 for r in table if r["status"] == "completed")
    assert out["metrics"]["trials"] == 4 and out["metrics"]["stopped"] == 1
    # the best completed trial is selected; its student is a normal checkpoint
    best = max((r for r in table if r["status"] == "completed"), key=lambda r: r["val_accuracy"])
    weights = [best["teacher_weights[0]"], best["teacher_weights[1]"]]
    assert out["best_config"]["teacher_weights"] == weights
    assert out["results"]["best_trial"] == best["trial"]
    model = ModelCheckpoint.model_validate(out["model"])
    assert model.metrics["val_accuracy"] == best["val_accuracy"]
    assert out["set_lines"] == [
        f"--set 'steps.sweep.config.distill.teacher_weights[{i}]={w}'"
        for i, w in enumerate(weights)
    ]
    assert out["results"]["plots"] == ["curves.png"]  # no alpha x temperature heat map here
    assert (store / out["results"]["path"] / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_a_failed_trial_is_recorded_and_the_sweep_succeeds(sweep: tuple[Path, Any]) -> None:
    store, step = sweep
    (failed,) = [
        r
        for r in pq.read_table(
            store / step.outputs["results"]["path"] / "results.parquet"
        ).to_pylist()
        if r["status"] == "failed"
    ]
    assert (
        "teacher_weights" in failed["error"]
        and "at least one weight must be > 0" in (failed["error"])
    )
    assert step.status.value == "ran" and step.outputs["metrics"]["failed"] == 1


def test_trials_are_named_in_the_dashboard(sweep: tuple[Path, Any], ray_dashboard: str) -> None:
    """Each trial actor shows a trial's name (with reused actors: the first trial it ran)."""
    from ray.util.state import list_actors

    store, step = sweep
    table = pq.read_table(store / step.outputs["results"]["path"] / "results.parquet")
    trials = set(table.column("trial").to_pylist())
    actors = list_actors(
        address=ray_dashboard, filters=[("class_name", "=", "KdorchTrial")], detail=True
    )
    # The session's cluster also holds other sweeps' trial actors: keep this sweep's.
    prefixes = {t.rsplit("_", 1)[0] for t in trials}
    shown = {a.repr_name for a in actors if (a.repr_name or "").rsplit("_", 1)[0] in prefixes}
    assert shown and shown <= trials


def _wait_for(condition: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_an_interrupted_sweep_resumes_its_finished_trials(
    sweep: tuple[Path, Any], ray_cluster: str, tmp_path: Path
) -> None:
    """`kdorch run` is killed after the sweep's first trial finished; the next run restores the
    Tune experiment from the step's resume folder: the finished trial is kept, not rerun, and
    the killed run's trial resources went with its driver."""
    import ray

    store, _ = sweep
    config = {
        **{k: v for k, v in SWEEP.items() if k != "asha"},
        "scheduler": "none",
        "space": {"optimizer.lr": {"grid": [0.02, 0.01, 0.005, 0.002]}},
    }
    p = teachers(store)
    p.add("resumable", "tune", inputs=dict(p.spec.steps[-1].inputs), config=config)
    (tmp_path / "p.yaml").write_text(p.to_yaml())
    cpus = ray.available_resources().get("CPU")
    command = [sys.executable, "-m", "orchestrator", "run", str(tmp_path / "p.yaml")]
    command += ["--storage", str(store), "--address", ray_cluster]
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def first_finished() -> tuple[Path, str] | None:
        """A trial that Tune's saved experiment state shows finished, with its record."""
        for saved in store.glob("objects/*/*/_resume/tune/experiment/experiment_state-*"):
            try:
                trials = [json.loads(t) for t, _ in json.loads(saved.read_text())["trial_data"]]
            except ValueError:
                continue  # being written
            for trial in trials:
                record = saved.parents[1] / "trials" / f"{trial['trial_id']}.json"
                if trial["status"] == "TERMINATED" and record.exists():
                    return record, record.read_text()
        return None

    try:
        _, content = _wait_for(first_finished, timeout=120)
    finally:
        driver.kill()
        driver.wait()
    resumed = run(p.spec)
    step = resumed.step("resumable")
    assert step.status.value == "ran", step.error
    metrics = step.outputs["metrics"]
    assert metrics["trials"] == 4 and metrics["completed"] == 4
    assert 1 <= metrics["restored_trials"] < 4
    table = pq.read_table(store / step.outputs["results"]["path"] / "results.parquet").to_pylist()
    kept = json.loads(content)
    (row,) = [r for r in table if r["trial"] == kept["trial"]]
    assert row["wall_s"] == kept["wall_s"]  # not run again (a rerun records a new wall time)
    assert _wait_for(lambda: ray.available_resources().get("CPU") == cpus, timeout=10)


def test_a_multi_worker_trial_trains_with_ray_train(sweep: tuple[Path, Any]) -> None:
    """`distill.scaling.num_workers: 2`: the trial runs a TorchTrainer (DDP over gloo) inside
    the trial; its student comes back as the sweep's model like a one-worker trial's."""
    store, _ = sweep
    config = {
        **{k: v for k, v in SWEEP.items() if k != "asha"},
        "distill": {**DISTILL, "scaling": {"num_workers": 2}},
        "scheduler": "none",
        "space": {"optimizer.lr": {"grid": [0.03]}},
    }
    p = teachers(store)
    p.add("ddp_sweep", "tune", inputs=dict(p.spec.steps[-1].inputs), config=config)
    step = run(p.spec).step("ddp_sweep")
    assert step.status.value == "ran", step.error
    (row,) = pq.read_table(store / step.outputs["results"]["path"] / "results.parquet").to_pylist()
    assert row["status"] == "completed" and row["epochs"] == 2
    model = ModelCheckpoint.model_validate(step.outputs["model"])
    assert model.metrics["workers"] == 2  # both epochs ran on two DDP workers
    assert model.metrics["val_accuracy"] == row["val_accuracy"] > 0.5
