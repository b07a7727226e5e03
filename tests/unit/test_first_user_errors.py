"""Tracebacks, quiet shortfalls and negative numbers a new user met (issue 21), each now one
clear line and exit 2 with nothing written: a store path that is a file, an environment
variable that is not text, a storage option that is a mapping, `kdorch runs --limit -1`; and
runs stopped by SIGINT or SIGKILL, both counted and shown as interrupted (no Ray here)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from orchestrator.storage.store import ArtifactStore
from schemas.engine.run import RunRecord, RunStatus, StepRecord, StepStatus
from tests.support.cli import kdorch, toy_pipeline

ROOT = Path(__file__).resolve().parents[2]


def write_record(
    store: Path, pipeline: str, status: RunStatus, step: StepStatus, reason: str = ""
) -> None:
    """A run record of one step 'slow' in ``store``, as a run would leave it."""
    ArtifactStore(str(store)).write_run(
        RunRecord(
            run_id="20260101-000000-abcd",
            pipeline=pipeline,
            status=status,
            started_at=datetime.now(timezone.utc),
            storage=str(store),
            steps=[
                StepRecord(
                    step_id="slow", component="toy_source", version="1", status=step, reason=reason
                )
            ],
        )
    )


def clean(err: str) -> str:
    assert "Traceback" not in err
    return err


def test_a_store_path_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(toy_pipeline("file_store"))
    blocker = tmp_path / "store"
    blocker.write_text("not a folder")
    assert kdorch("plan", str(pipeline), "--storage", str(blocker)) == 2
    err = clean(capsys.readouterr().err)
    assert f"error: artifact store {blocker} is a file, not a folder" in err
    under = blocker / "sub"
    assert kdorch("run", str(pipeline), "--storage", str(under), "--executor", "local") == 2
    assert f"{under} lies under {blocker}, which is a file" in clean(capsys.readouterr().err)
    for command in ("runs", "gc"):
        assert kdorch(command, "--storage", str(blocker)) == 2
        assert "is a file, not a folder" in clean(capsys.readouterr().err)
    assert blocker.read_text() == "not a folder"


def test_an_environment_variable_that_is_not_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "p.yaml"
    text = toy_pipeline("env").replace(
        "steps:\n", "ray:\n  runtime_env:\n    env_vars: {OMP_NUM_THREADS: 1, MODE: fast}\nsteps:\n"
    )
    path.write_text(text)
    assert kdorch("validate", str(path)) == 2
    err = clean(capsys.readouterr().err)
    assert "p.yaml:4:33: ray.runtime_env.env_vars.OMP_NUM_THREADS" in err
    assert "environment variables are text: quote the value (OMP_NUM_THREADS: '1') (got 1)" in err
    assert "env_vars.MODE" not in err and "1 error in" in err
    store = tmp_path / "store"
    assert kdorch("run", str(path), "--storage", str(store)) == 2
    assert not store.exists()
    path.write_text(text.replace("{OMP_NUM_THREADS: 1, MODE: fast}", "[OMP_NUM_THREADS=1]"))
    assert kdorch("validate", str(path)) == 2
    assert "must be a mapping of NAME: 'value'" in clean(capsys.readouterr().err)
    path.write_text(text.replace("OMP_NUM_THREADS: 1", "OMP_NUM_THREADS: '1'"))
    assert kdorch("validate", str(path)) == 0


@pytest.mark.parametrize(
    ("item", "example"),
    [
        ("client_kwargs=3", "client_kwargs.endpoint_url=http://127.0.0.1:9000"),
        ("client_kwargs.=3", "client_kwargs.endpoint_url=http://127.0.0.1:9000"),
        ("options=x", "options.use_ssl=false"),
    ],
)
def test_a_storage_option_that_is_a_mapping(
    item: str, example: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert kdorch("runs", "--storage", str(tmp_path / "s"), "--storage-option", item) == 2
    err = clean(capsys.readouterr().err)
    head = item.split("=")[0].rstrip(".")
    assert f"'{head}' is a mapping, not one value: set one entry at a time" in err
    assert f"e.g. --storage-option {example}" in err and "did you mean" not in err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("limit", ["-1", "0"])
def test_runs_refuses_a_limit_below_one(
    limit: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "s"
    write_record(store, "limits", RunStatus.succeeded, StepStatus.ran)
    assert kdorch("runs", "--storage", str(store), "--limit", limit) == 2
    err = clean(capsys.readouterr().err)
    assert "Invalid value for '--limit'" in err and "greater than or equal to 1" in err
    assert kdorch("runs", "--storage", str(store), "--limit", "1") == 0
    assert "limits" in capsys.readouterr().out


# -- runs stopped midway --------------------------------------------------------------------

LOCAL = ("--executor", "local")
_DRIVER = (
    "import sys; import tests.support.toy_components; from orchestrator.cli.main import main; "
    "main(sys.argv[1:])"
)


def _stopped_run(pipeline: Path, store: Path, how: signal.Signals) -> int:
    """Start `kdorch run` of ``pipeline`` (a step that sleeps), stop its driver with ``how``
    once the step runs; the driver's exit code."""
    before = set(os.listdir(store / "runs")) if (store / "runs").exists() else set()
    driver = subprocess.Popen(
        [sys.executable, "-c", _DRIVER, "run", str(pipeline), "--storage", str(store), *LOCAL],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120  # a busy machine may take long to start Python
    try:
        while time.monotonic() < deadline:
            runs = set(os.listdir(store / "runs")) - before if (store / "runs").exists() else set()
            record = store / "runs" / next(iter(runs), "-") / "run.json"
            if record.exists() and '"running"' in record.read_text():
                steps = json.loads(record.read_text())["steps"]
                if steps[0]["status"] == "running":
                    break
            time.sleep(0.1)
        else:
            pytest.fail("the run never started its step")
        driver.send_signal(how)
        return driver.wait(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()


SLOW = "name: stopped\nsteps:\n- {id: slow, component: toy_source, config: {sleep: 120}}\n"


def test_runs_stopped_by_sigint_or_sigkill_are_interrupted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (pipeline := tmp_path / "p.yaml").write_text(SLOW)
    store = tmp_path / "s"
    assert _stopped_run(pipeline, store, signal.SIGINT) == 130
    assert _stopped_run(pipeline, store, signal.SIGKILL) == -signal.SIGKILL
    # On Ray a Ctrl-C-ed step is recorded failed, with the reason 'interrupted'
    write_record(store, "stopped", RunStatus.interrupted, StepStatus.failed, "interrupted")
    assert kdorch("runs", "--storage", str(store)) == 0
    out = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in out if line[:1].isdigit()]
    assert len(rows) == 3
    for row in rows:  # run, pipeline, status, ran, cached, failed, interrupted, reports
        assert row[2:] == ["interrupted", "0", "0", "0", "1", "0"], row
    for run_id in sorted(os.listdir(store / "runs")):
        assert kdorch("show", run_id, "--storage", str(store)) == 0
        out = capsys.readouterr().out
        assert "slow" in out and "interrupted" in out.split("slow", 1)[1].splitlines()[0]
