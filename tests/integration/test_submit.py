"""`kdorch submit`: a pipeline sent to a real Ray cluster through the Ray Jobs API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[2]


def test_submit_runs_the_pipeline_as_a_ray_job(ray_dashboard: str, tmp_path: Path) -> None:
    store = tmp_path / "store"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "submit",
            "tests/resources/good/digits_data.yaml",
            "--address",
            ray_dashboard,
            "--storage",
            str(store),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "submitted job" in result.stderr and "SUCCEEDED" in result.stderr
    (run_dir,) = (store / "runs").iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "succeeded" and record["steps"][0]["status"] == "ran"


def test_submit_refuses_a_pipeline_outside_the_working_dir(
    ray_dashboard: str, tmp_path: Path
) -> None:
    outside = tmp_path / "p.yaml"
    outside.write_text((ROOT / "tests/resources/good/digits_data.yaml").read_text())
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "submit", str(outside), "--address", ray_dashboard],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert "must be inside the working directory" in result.stderr


def kdorch(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def test_no_wait_then_status_and_logs_read_the_run_back(ray_dashboard: str, tmp_path: Path) -> None:
    import re

    from orchestrator.cli.jobs import wait_for

    store = tmp_path / "store"
    submitted = kdorch(
        "submit",
        "tests/resources/good/digits_data.yaml",
        "--address",
        ray_dashboard,
        "--storage",
        str(store),
        "--track",
        "local",
        "--no-wait",
    )
    assert submitted.returncode == 0, submitted.stderr
    match = re.search(r"submitted job (\S+)", submitted.stderr)
    assert match and f"kdorch status {match.group(1)}" in submitted.stderr
    job = match.group(1)
    assert wait_for(ray_dashboard, job, timeout=240) == "SUCCEEDED"
    status = kdorch("status", job, "--address", ray_dashboard)
    assert status.returncode == 0, status.stderr
    assert "SUCCEEDED" in status.stdout and "1 ran" in status.stdout
    assert "nodes used: 1" in status.stdout
    listing = kdorch("status", "--address", ray_dashboard)
    assert job in listing.stdout
    logs = kdorch("logs", job, "--address", ray_dashboard)
    assert logs.returncode == 0 and "data" in logs.stdout
    assert (store / "runs" / job / "run.json").exists()  # the run's id is the job's
    assert (store / "tracking" / "mlflow.db").exists()  # --track travelled with the job


def test_status_and_logs_of_an_unknown_job_say_so_in_one_line(ray_dashboard: str) -> None:
    for command in ("status", "logs"):
        result = kdorch(command, "raysubmit_nosuch", "--address", ray_dashboard, timeout=120)
        assert result.returncode == 2, result.stderr
        assert f"error: no job 'raysubmit_nosuch' at {ray_dashboard}; " in result.stderr
        assert "Traceback" not in result.stderr and "404" not in result.stderr
