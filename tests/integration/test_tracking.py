"""Runs tracked in MLflow for real, read back through MLflow's own client: a tracking server
started here on 127.0.0.1 (``mlflow server``: its own SQLite backend and artifact folder), and
the default store (SQLite inside the artifact store). TensorBoard's event files are read back
with TensorBoard's own reader."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator import Pipeline, run
from orchestrator.tracking.settings import TrackingUnavailable
from tests.support.cli import kdorch
from tests.support.other_ray import free_port

pytestmark = pytest.mark.ray

KD = [{"type": "kd", "alpha": 0.5, "temperature": 2.0}]
DISTILL: dict[str, Any] = {"student": {"arch": "mlp", "hidden": [16]}, "epochs": 2, "losses": KD}
SWEEP: dict[str, Any] = {
    "distill": {**DISTILL, "epochs": 1},
    "space": {"losses[0].alpha": {"grid": [0.5, 0.9]}},
    "search": "grid",
    "scheduler": "none",
    "max_concurrent_trials": 1,
}
STEPS = {"data", "teacher", "logits", "student", "report", "sweep"}


def pipeline(store: Path) -> Pipeline:
    """digits, a teacher, its logits, a KD student, a report and a two-trial sweep."""
    p = Pipeline("tracked", storage=str(store))
    data = p.add("data", "dataset", config={"source": "digits"}).dataset
    mlp = {"model": {"arch": "mlp", "hidden": [32]}, "epochs": 3, "optimizer": {"lr": 0.005}}
    teacher = p.add("teacher", "train", inputs={"data": data}, config=mlp)
    logits = p.add("logits", "teacher_inference", inputs={"teacher": teacher.model, "data": data})
    student = p.add(
        "student", "distill", inputs={"data": data, "logits": logits.logits}, config=DISTILL
    )
    p.add(
        "report",
        "evaluate",
        inputs={"data": data, "teacher": teacher.model, "models": [student.model]},
        config={"latency_repeats": 1},
    )
    p.add("sweep", "tune", inputs={"data": data, "logits": [logits.logits]}, config=SWEEP)
    return p


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow server` on a free port of 127.0.0.1, stopped (its process group) at the end."""
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = (root / "server.log").open("w")
    command = [
        str(Path(sys.executable).with_name("mlflow")),
        "server",
        "--host=127.0.0.1",
        f"--port={port}",
        "--workers=1",
        f"--backend-store-uri=sqlite:///{root / 'mlflow.db'}",
        f"--artifacts-destination={root / 'artifacts'}",
    ]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300  # ~10 s on a quiet laptop, a minute on a busy 2-core
        while True:
            assert server.poll() is None, (root / "server.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, (root / "server.log").read_text()[-3000:]
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)
        log.close()


def runs_of(uri: str, experiment: str) -> tuple[Any, list[Any]]:
    """(the client, every run of ``experiment``) as MLflow reports them."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment} at {uri}"
    return client, client.search_runs([found.experiment_id], max_results=1000)


def one_parent(runs: list[Any], kdorch_run: str) -> tuple[Any, list[Any]]:
    """The MLflow run of kdorch run ``kdorch_run`` and the runs nested directly in it."""
    parents = [r for r in runs if r.info.run_name == kdorch_run]
    assert len(parents) == 1, [r.info.run_name for r in runs]
    parent = parents[0]
    assert "mlflow.parentRunId" not in parent.data.tags
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return parent, children


@pytest.fixture(scope="module")
def tracked(ray_cluster: str, mlflow_server: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The pipeline run twice against the server: once for real, once fully cached."""
    store = tmp_path_factory.mktemp("tracked") / "store"
    spec = pipeline(store).spec
    first = run(spec, track=mlflow_server)
    assert first.status.value == "succeeded", [s.error for s in first.steps if s.error]
    second = run(spec, track=mlflow_server)
    again = [(s.step_id, s.reason) for s in second.steps if s.status.value != "cached"]
    assert not again, again  # (a source file edited between the two runs changes a key)
    return store, first, second


def test_a_run_is_a_parent_with_a_child_per_step(tracked: Any, mlflow_server: str) -> None:
    store, first, _ = tracked
    client, runs = runs_of(mlflow_server, "tracked")
    parent, children = one_parent(runs, first.run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["kdorch.status"] == "succeeded"
    assert parent.data.metrics["steps_ran"] == len(STEPS)
    by_step = {c.data.tags["kdorch.step_id"]: c for c in children}
    assert set(by_step) == STEPS and len(children) == len(STEPS)
    teacher = by_step["teacher"]
    assert teacher.data.tags["kdorch.component"] == "train"
    assert teacher.data.tags["kdorch.cache_key"] == first.step("teacher").key
    assert teacher.data.tags["kdorch.store"] == str(store)
    assert teacher.data.tags["kdorch.status"] == "ran"
    assert teacher.data.params["model.hidden"] == "[32]"
    assert teacher.data.params["optimizer.lr"] == "0.005"
    # the per-epoch history: a point per epoch, step = epoch
    history = client.get_metric_history(teacher.info.run_id, "train_loss")
    assert sorted(m.step for m in history) == [0, 1, 2]
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == [
        row["train_loss"] for row in first.step("teacher").outputs["history"]
    ]
    assert by_step["student"].data.params["losses.0.type"] == "kd"
    assert 0.0 < by_step["student"].data.metrics["val_accuracy"] <= 1.0
    # the report's files on the report step's run, and on the parent
    files = {f.path for f in client.list_artifacts(by_step["report"].info.run_id, "report")}
    assert {"report/report.md", "report/report.json"} <= files
    text = Path(client.download_artifacts(by_step["report"].info.run_id, "report/report.md"))
    assert "| model | top-1" in text.read_text()
    assert client.list_artifacts(parent.info.run_id, "report/report")
    # a tracked run keeps no credentials and no bulk data: no model files unless asked
    assert not client.list_artifacts(by_step["teacher"].info.run_id)


def test_a_sweeps_trials_are_runs_nested_in_its_step(tracked: Any, mlflow_server: str) -> None:
    _, first, _ = tracked
    _, runs = runs_of(mlflow_server, "tracked")
    _, children = one_parent(runs, first.run_id)
    sweep = next(c for c in children if c.data.tags["kdorch.step_id"] == "sweep")
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == sweep.info.run_id]
    assert len(trials) == 2
    assert sorted(t.data.params["losses.0.alpha"] for t in trials) == ["0.5", "0.9"]
    for trial in trials:
        assert 0.0 <= trial.data.metrics["val_accuracy"] <= 1.0
        assert trial.data.tags["kdorch.trial_status"] == "completed"
        assert trial.info.status == "FINISHED"


def test_a_cached_run_links_to_the_runs_that_made_its_steps(
    tracked: Any, mlflow_server: str
) -> None:
    _, first, second = tracked
    _, runs = runs_of(mlflow_server, "tracked")
    _, made = one_parent(runs, first.run_id)
    made_by_step = {c.data.tags["kdorch.step_id"]: c.info.run_id for c in made}
    parent, children = one_parent(runs, second.run_id)
    assert parent.data.metrics["steps_cached"] == len(STEPS)
    assert {c.data.tags["kdorch.step_id"] for c in children} == STEPS
    for child in children:
        step = child.data.tags["kdorch.step_id"]
        assert child.data.tags["kdorch.status"] == "cached"
        assert child.data.tags["kdorch.made_by_run"] == first.run_id
        assert child.data.tags["kdorch.made_by_mlflow_run"] == made_by_step[step]
        assert made_by_step[step] in child.data.tags["mlflow.note.content"]
    student = next(c for c in children if c.data.tags["kdorch.step_id"] == "student")
    assert 0.0 < student.data.metrics["val_accuracy"] <= 1.0  # its final metrics, from the cache
    sweep = next(c for c in children if c.data.tags["kdorch.step_id"] == "sweep")
    assert not [r for r in runs if r.data.tags.get("mlflow.parentRunId") == sweep.info.run_id]


def test_each_training_step_writes_a_tensorboard_event_file(tracked: Any) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    store, first, _ = tracked
    folder = store / "tracking" / "tensorboard" / "tracked" / first.run_id
    assert sorted(p.name for p in folder.iterdir()) == ["student", "teacher"]
    for step, epochs in (("teacher", 3), ("student", 2)):
        files = list((folder / step).glob("events.out.tfevents.*"))
        assert len(files) == 1, files
        events = EventAccumulator(str(folder / step))
        events.Reload()
        losses = events.Scalars("train_loss")
        assert [e.step for e in losses] == list(range(epochs))
        history = first.step(step).outputs["history"]
        assert [e.value for e in losses] == pytest.approx([row["train_loss"] for row in history])
        assert "val_accuracy" in events.Tags()["scalars"]


TRAIN_YAML = """\
name: tracked_local
steps:
- {id: data, component: dataset, config: {source: digits}}
- {id: teacher, component: train, inputs: {data: data.dataset},
   config: {model: {arch: mlp, hidden: [16]}, epochs: 2, batch_size: 64}}
"""


def test_the_default_store_is_sqlite_in_the_artifact_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "p.yaml").write_text(TRAIN_YAML + "tracking: {log_models: true}\n")
    store = tmp_path / "store"
    args = ("run", str(tmp_path / "p.yaml"), "--storage", str(store), "--executor", "local")
    assert kdorch(*args) == 0
    database = store / "tracking" / "mlflow.db"
    assert f"tracking in MLflow at sqlite:///{database} (experiment tracked_local)" in caplog.text
    assert "Creating initial MLflow database tables" not in capsys.readouterr().err  # MLflow's INFO
    client, runs = runs_of(f"sqlite:///{database}", "tracked_local")
    (record,) = list((store / "runs").iterdir())
    parent, children = one_parent(runs, record.name)
    assert {c.data.tags["kdorch.step_id"] for c in children} == {"data", "teacher"}
    teacher = next(c for c in children if c.data.tags["kdorch.step_id"] == "teacher")
    assert len(client.get_metric_history(teacher.info.run_id, "val_accuracy")) == 2
    # log_models: the trained model's files, in the artifact store's tracking folder
    assert client.list_artifacts(teacher.info.run_id, "model")
    assert list((store / "tracking" / "artifacts").rglob("*.pt"))
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"


def _no_run_written(store: Path) -> None:
    assert not (store / "runs").exists() or not list((store / "runs").iterdir())
    assert not (store / "objects").exists() or not list((store / "objects").iterdir())


def test_an_unreachable_tracking_server_stops_the_run_before_it_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "p.yaml").write_text(TRAIN_YAML)
    store = tmp_path / "store"
    closed = f"http://127.0.0.1:{free_port()}"
    args = ("run", str(tmp_path / "p.yaml"), "--storage", str(store), "--executor", "local")
    assert kdorch(*args, "--track", closed) == 2
    err = capsys.readouterr().err
    assert f"tracking: could not use the MLflow tracking store {closed}" in err
    assert "Traceback" not in err
    _no_run_written(store)


def test_a_password_in_track_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "p.yaml").write_text(TRAIN_YAML)
    store = tmp_path / "store"
    args = ("run", str(tmp_path / "p.yaml"), "--storage", str(store), "--executor", "local")
    assert kdorch(*args, "--track", "https://me:hunter2@mlflow.example.com") == 2
    err = capsys.readouterr().err
    assert "the tracking URI holds a password" in err and "MLFLOW_TRACKING_PASSWORD" in err
    assert "--track https://me:***@mlflow.example.com" in err
    assert "hunter2" not in err and "Traceback" not in err
    _no_run_written(store)


def test_the_default_store_needs_a_local_artifact_store(s3_server: dict, tmp_path: Path) -> None:
    p = Pipeline(
        "tracked_s3",
        storage=f"s3://{s3_server['bucket']}/tracked",
        storage_options=s3_server["storage_options"],
    )
    p.add("data", "dataset", config={"source": "digits"})
    with pytest.raises(TrackingUnavailable, match=r"not a local folder\. Give a tracking server"):
        run(p.spec, track="local")
