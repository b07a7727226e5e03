"""Finding what a run produced: the end of `kdorch run`, `kdorch runs`, `kdorch show`, runs whose
driver died, and `--storage-option` on every command that opens a store (no Ray here)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from orchestrator import ConfigError
from orchestrator.storage.options import merge_options, parse_storage_options
from orchestrator.storage.runs import observed_status
from orchestrator.storage.store import ArtifactStore
from schemas.engine.run import RunRecord, RunStatus, StepRecord, StepStatus
from schemas.engine.storage import StorageOptions
from tests.support.cli import kdorch, toy_pipeline

PIPELINE = toy_pipeline("cli_runs")


@pytest.fixture
def finished(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    """A finished local run: (store, the run's stderr)."""
    path = tmp_path / "p.yaml"
    path.write_text(PIPELINE)
    store = str(tmp_path / "s")
    assert kdorch("run", str(path), "--storage", store, "--executor", "local") == 0
    return store, capsys.readouterr().err


def test_run_ends_with_its_final_outputs_and_how_to_show_it(finished: tuple[str, str]) -> None:
    store, err = finished
    assert "final outputs:" in err and "total.total: 15.0" in err
    assert f"total.numbers: {store}/objects/" in err  # a full path, not a store-relative one
    assert "(kdorch show 2" in err


def test_show_lists_steps_and_one_step_in_detail(
    finished: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    store, _ = finished
    assert kdorch("show", "latest", "--storage", store) == 0
    out = capsys.readouterr().out
    assert "cli_runs · succeeded" in out and "scaled[3]" in out and "toy_gather" in out
    assert kdorch("show", "latest", "scaled[2]", "--storage", store) == 0
    out = capsys.readouterr().out
    assert "step scaled[2] (toy_scale v" in out and "COMMIT.json" in out
    assert "numbers" in out and f"{store}/objects/" in out
    assert kdorch("show", "latest", "scaled[9]", "--storage", store) == 2
    assert "has no step 'scaled[9]'; did you mean" in capsys.readouterr().err
    assert kdorch("show", "20991231", "--storage", store) == 2
    assert "no run '20991231'" in capsys.readouterr().err


def record_with(store: Path, **fields: object) -> RunRecord:
    steps = [
        StepRecord(step_id="data", component="dataset", version="2", status=StepStatus.ran),
        StepRecord(
            step_id="report",
            component="evaluate",
            version="1",
            status=StepStatus.ran,
            outputs={
                "report": {
                    "path": "objects/ab/abc/a1/report",
                    "data_version": "v",
                    "split": "test",
                    "metrics": {"kd": {"top1": 0.93, "params_ratio": 4.0}},
                    "groups": {},
                    "baselines": {"majority": 0.4},
                },
                "metrics": {"kd": {"top1": 0.93}},
            },
        ),
    ]
    base = {
        "run_id": "20260101-000000-abcd",
        "pipeline": "p",
        "status": RunStatus.succeeded,
        "started_at": datetime.now(timezone.utc),
        "storage": str(store),
        "steps": steps,
        "final_steps": ["report"],
    }
    record = RunRecord.model_validate({**base, **fields})
    ArtifactStore(str(store)).write_run(record)
    return record


def test_runs_and_show_say_where_the_report_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record_with(tmp_path)
    report = f"{tmp_path}/objects/ab/abc/a1/report/report.md"
    assert kdorch("runs", "--storage", str(tmp_path)) == 0
    assert f"  20260101-000000-abcd  {report}\n" in capsys.readouterr().out
    assert kdorch("show", "20260101", "--storage", str(tmp_path)) == 0  # a unique prefix
    out = capsys.readouterr().out
    assert f"report (report): {report}" in out
    assert kdorch("show", "latest", "report", "--storage", str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "report.kd.top1" in out and "0.93" in out and "report.baseline.majority" in out


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_running_record_whose_driver_is_gone_is_interrupted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    here = socket.gethostname()
    gone = record_with(tmp_path, status="running", driver_host=here, driver_pid=dead_pid())
    assert observed_status(gone) == RunStatus.interrupted
    alive = gone.model_copy(update={"driver_pid": __import__("os").getpid()})
    assert observed_status(alive) == RunStatus.running
    elsewhere = gone.model_copy(update={"driver_host": "another-host"})
    assert observed_status(elsewhere) == RunStatus.running  # cannot be seen from here
    assert kdorch("runs", "--storage", str(tmp_path)) == 0
    assert "interrupted" in capsys.readouterr().out
    assert kdorch("show", "latest", "--storage", str(tmp_path)) == 0
    assert "is gone: the run was interrupted" in capsys.readouterr().out


def test_storage_options_parse_merge_and_refuse() -> None:
    options = parse_storage_options(
        ["endpoint_url=http://127.0.0.1:9000", "anon=true", "options.use_ssl=false"]
    )
    assert options is not None
    assert options.endpoint_url == "http://127.0.0.1:9000" and options.anon is True
    assert options.options == {"use_ssl": False}
    base = StorageOptions(region="eu-west-1", options={"a": 1})
    merged = merge_options(base, options)
    assert merged.region == "eu-west-1" and merged.options == {"a": 1, "use_ssl": False}
    assert merged.endpoint_url == "http://127.0.0.1:9000"
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_storage_options(["endpoint_url"])
    with pytest.raises(ConfigError, match="did you mean 'region'"):
        parse_storage_options(["regoin=x"])
    with pytest.raises(ConfigError, match="may not carry credentials"):
        parse_storage_options(["client_kwargs.aws_secret_access_key=x"])
    assert parse_storage_options([]) is None


def test_every_store_command_takes_storage_options(
    tmp_path: Path, s3_server: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(PIPELINE)  # no storage_options in the file: the endpoint comes from the flag
    store = f"s3://{s3_server['bucket']}/cli-options"
    option = ["--storage-option", f"endpoint_url={s3_server['endpoint']}"]
    assert kdorch("plan", str(path), "--storage", store, *option, "--json") == 0
    assert [s["action"] for s in json.loads(capsys.readouterr().out)] == ["run"] * 4
    run = ["run", str(path), "--storage", store, *option, "--executor", "local"]
    assert kdorch(*run) == 0
    assert f"total.numbers: {store}/objects/" in capsys.readouterr().err
    assert kdorch("runs", "--storage", store, *option) == 0
    assert "cli_runs" in capsys.readouterr().out
    assert kdorch("show", "latest", "--storage", store, *option) == 0
    assert "cli_runs · succeeded" in capsys.readouterr().out
    wrong = ["--storage-option", "endpoint_url=http://127.0.0.1:9"]
    assert kdorch("runs", "--storage", store, *wrong) == 2
    assert "unreachable" in capsys.readouterr().err
