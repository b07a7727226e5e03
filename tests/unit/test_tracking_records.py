"""What a tracker records of a step (params, metrics per epoch, uploads) and how `tracking:` and
`--track` resolve, without MLflow or Ray: MLflow's own round trip is in
tests/integration/test_tracking.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.errors import ConfigError
from orchestrator.storage.store import ArtifactStore
from orchestrator.tracking import records
from orchestrator.tracking.context import step_segment, tensorboard_folder, write_context
from orchestrator.tracking.settings import TrackingUnavailable, requested, resolve
from orchestrator.tracking.uploads import split_trial, uploaded
from schemas.engine.pipeline import PipelineSpec, TrackingSettings
from schemas.kd.components.dataset import DatasetConfig

ROOT = Path(__file__).resolve().parents[2]
SECRET = "FAKE-SECRET-tracking-55"


def test_a_config_flattens_into_params() -> None:
    config = {
        "epochs": 3,
        "optimizer": {"lr": 0.003, "name": "adam"},
        "losses": [{"type": "kd", "alpha": 0.5}, {"type": "ce"}],
        "hidden": [64, 32],
        "student": None,
        "empty": {},
    }
    assert records.flatten_params(config) == {
        "epochs": "3",
        "optimizer.lr": "0.003",
        "optimizer.name": "adam",
        "losses.0.type": "kd",
        "losses.0.alpha": "0.5",
        "losses.1.type": "ce",
        "hidden": "[64, 32]",
        "student": "null",
        "empty": "{}",
    }


def test_long_values_are_cut_and_odd_names_cleaned() -> None:
    params = records.flatten_params({"text": "x" * 10_000, "a[0]": 1})
    assert len(params["text"]) == records.MAX_PARAM_VALUE
    assert params["text"].endswith("(cut by kdorch)")
    assert params == {"text": params["text"], "a_0_": "1"}


def test_secrets_stay_masked_in_params() -> None:
    config = DatasetConfig.model_validate(
        {
            "source": "parquet",
            "uri": "s3://bucket/t.parquet",
            "features": ["a"],
            "label": "y",
            "storage_options": {"key": "KEYID", "secret": SECRET},
        }
    )
    params = records.flatten_params(config.model_dump(mode="json"))
    assert params["storage_options.secret"] == "**********"
    assert SECRET not in repr(params)


def test_history_becomes_a_metric_per_column_and_epoch() -> None:
    history = [
        {"epoch": 0, "train_loss": 1.5, "val_accuracy": 0.5, "workers": 1, "lr": 0.01},
        {"epoch": 1, "train_loss": 1.0, "val_accuracy": 0.7, "workers": 1, "train_kd/ce": 0.2},
        {"epoch": 2, "train_loss": float("nan"), "flag": True, "note": "text"},
    ]
    points = list(records.history_points(history))
    assert ("train_loss", 1.5, 0) in points and ("val_accuracy", 0.7, 1) in points
    assert ("train_kd/ce", 0.2, 1) in points
    assert not [p for p in points if p[0] in ("epoch", "flag", "note") or p[2] == 2]


def test_final_metrics_come_from_metrics_and_reports() -> None:
    outputs = {
        "metrics": {"val_accuracy": 0.9, "epoch": 19, "resumes": 0},
        "report": {
            "path": "objects/ab/x/report",
            "data_version": "v",
            "metrics": {"kd_0": {"top1": 0.91, "per_class": {"3": 0.8}}},
        },
        "model": {"path": "objects/ab/x/model", "data_version": "w"},
    }
    assert records.output_metrics(outputs) == {
        "val_accuracy": 0.9,
        "resumes": 0.0,
        "kd_0/top1": 0.91,
        "kd_0/per_class/3": 0.8,
    }
    assert [port for port, _ in records.artifacts(outputs)] == ["report", "model"]


def test_reports_are_uploaded_and_models_only_when_asked() -> None:
    assert uploaded("EvalReport", log_models=False)
    assert uploaded("TuneResults", log_models=False)
    assert not uploaded("ModelCheckpoint", log_models=False)
    assert uploaded("ModelCheckpoint", log_models=True)
    assert not uploaded("LogitShards", log_models=True)  # bulk data never


def test_a_trial_row_splits_into_searched_values_result_and_status() -> None:
    row = {
        "trial": "trial_0",
        "trial_id": "a1",
        "status": "failed",
        "epochs": 1,
        "planned_epochs": 2,
        "val_accuracy": 0.5,
        "best_val_accuracy": 0.6,
        "losses[0].alpha": 0.9,
        "wall_s": 3.0,
        "error": "ValueError: no teacher left",
    }
    params, metrics, tags = split_trial(row, "val_accuracy")
    assert params == {"losses.0.alpha": "0.9"}  # spelled as a flattened config
    assert metrics == {
        "epochs": 1.0,
        "planned_epochs": 2.0,
        "val_accuracy": 0.5,
        "best_val_accuracy": 0.6,
        "wall_s": 3.0,
    }
    assert tags["kdorch.trial_status"] == "failed" and tags["kdorch.error"].startswith("Value")


def test_a_password_in_the_tracking_uri_is_refused() -> None:
    with pytest.raises(ValidationError, match="MLFLOW_TRACKING_PASSWORD"):
        TrackingSettings(uri="https://me:hunter2@mlflow.example.com")
    assert TrackingSettings(uri="https://me@mlflow.example.com").uri  # a user name is fine
    with pytest.raises(ConfigError, match=r"--track https://me:\*\*\*@h: the tracking URI holds"):
        requested(None, "https://me:pw@h")


def test_track_turns_tracking_on_with_the_blocks_settings() -> None:
    assert requested(None, None) is None
    block = TrackingSettings(experiment="mine", tensorboard=False)
    on = requested(block, "http://127.0.0.1:5000")
    assert on is not None and on.uri == "http://127.0.0.1:5000"
    assert on.experiment == "mine" and on.tensorboard is False
    local = requested(block, "local")
    assert local is not None and local.uri is None and local.experiment == "mine"


def test_the_default_store_is_sqlite_inside_a_local_store(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "store"))
    target = resolve(TrackingSettings(), store, "p")
    assert target is not None and target.experiment == "p"
    assert target.uri == f"sqlite:///{tmp_path / 'store' / 'tracking' / 'mlflow.db'}"
    assert target.artifact_location == (tmp_path / "store" / "tracking" / "artifacts").as_uri()
    folder = resolve(TrackingSettings(uri=str(tmp_path / "runs")), store, "p")
    assert folder is not None and folder.uri == (tmp_path / "runs").as_uri()
    db = resolve(TrackingSettings(uri=str(tmp_path / "t.db")), store, "p")
    assert db is not None and db.uri == f"sqlite:///{tmp_path / 't.db'}"
    assert resolve(None, store, "p") is None


def test_the_default_store_is_refused_on_an_object_store() -> None:
    store = ArtifactStore("s3://bucket/prefix")
    with pytest.raises(TrackingUnavailable, match=r"s3://bucket/prefix, not a local folder"):
        resolve(TrackingSettings(), store, "p")
    server = resolve(TrackingSettings(uri="http://mlflow:5000"), store, "p")
    assert server is not None and server.is_server and server.artifact_location is None


def test_steps_find_their_tensorboard_folder_only_in_a_tracked_run(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    assert tensorboard_folder(store, "r1", "teacher") is None
    write_context(store, "r1", {"tensorboard": "tracking/tensorboard/p/r1"})
    assert tensorboard_folder(store, "r1", "teacher") == "tracking/tensorboard/p/r1/teacher"
    assert step_segment("student_kd[0]") == "student_kd=0"
    assert step_segment("x[a/b]").startswith("x_a_b-")  # nothing escapes the folder


def test_the_tracking_block_is_optional_and_round_trips() -> None:
    spec = PipelineSpec.model_validate(
        {"name": "p", "steps": [{"id": "a", "component": "toy_source"}]}
    )
    assert spec.tracking is None
    tracked = PipelineSpec.model_validate(
        {**spec.model_dump(), "tracking": {"uri": "http://h:5000", "log_models": True}}
    )
    assert tracked.tracking == TrackingSettings(uri="http://h:5000", log_models=True)


def test_an_untracked_run_imports_no_tracker(tmp_path: Path) -> None:
    """`kdorch run` without tracking imports neither MLflow nor TensorBoard (a real run of the
    toy pipeline, in-process, with the test's plugins)."""
    code = (
        "import sys; from orchestrator import run; from tests.support.cli import toy_pipeline; "
        f"open({str(tmp_path / 'p.yaml')!r}, 'w').write(toy_pipeline('untracked')); "
        f"r = run({str(tmp_path / 'p.yaml')!r}, storage={str(tmp_path / 's')!r}, "
        "executor='local'); assert r.status.value == 'succeeded', r; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('mlflow', 'tensorboard', 'tensorboardX')); print('imported:', bad)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "KDORCH_PLUGINS": "tests.support.toy_components"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "imported: []" in done.stdout
