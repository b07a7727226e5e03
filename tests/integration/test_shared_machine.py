"""kdorch on a machine shared with other Ray instances: a second, unrelated Ray runs for this
whole module (`other_ray`), as a user's own cluster or another `kdorch run` would.

Every state/Jobs API call names its cluster, the suite's Ray-using logic (pipelines on the
session cluster, a Ray Train worker killed and resumed) still works, and two embedded
`kdorch run`s at once both work when the dashboard port they ask for is taken.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from orchestrator import Pipeline, run
from tests.integration.test_fault_tolerance import (
    test_killed_ray_train_worker_resumes_from_checkpoint as killed_worker_resumes,
)
from tests.support.other_ray import OtherRay, processes_under

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[2]


def test_state_and_jobs_apis_name_their_cluster(other_ray: OtherRay, ray_dashboard: str) -> None:
    from ray.job_submission import JobSubmissionClient
    from ray.util.state import list_actors, list_tasks

    assert isinstance(list_actors(address=ray_dashboard), list)
    assert isinstance(list_tasks(address=ray_dashboard, limit=5), list)
    assert isinstance(JobSubmissionClient(ray_dashboard).list_jobs(), list)
    other = JobSubmissionClient(f"http://127.0.0.1:{other_ray.dashboard_port}")
    assert isinstance(other.list_jobs(), list)  # a real, separate Ray


def test_pipelines_run_on_the_session_cluster(
    other_ray: OtherRay, ray_cluster: str, store_dir: Path
) -> None:
    p = Pipeline("shared")
    src = p.add("src", "toy_source")
    p.add("double", "toy_scale", inputs={"numbers": src.numbers})
    first = run(p.spec, storage=str(store_dir), address=ray_cluster)
    assert first.status.value == "succeeded" and first.ray_address == ray_cluster
    second = run(p.spec, storage=str(store_dir), address=ray_cluster)
    assert {s.status.value for s in second.steps} == {"cached"}


def test_killed_ray_train_worker_resumes_beside_another_ray(
    other_ray: OtherRay, ray_dashboard: str, tmp_path: Path
) -> None:
    killed_worker_resumes(ray_dashboard, tmp_path)  # tests/integration/test_fault_tolerance.py


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_two_embedded_runs_at_once_with_the_dashboard_port_taken(
    other_ray: OtherRay, tmp_path: Path
) -> None:
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        f"name: twice\nray: {{num_cpus: 2, dashboard_port: {other_ray.dashboard_port}}}\n"
        "steps:\n- {id: src, component: toy_source}\n"
        "- {id: double, component: toy_scale, inputs: {numbers: src.numbers}}\n"
    )
    runs = []
    for name in ("a", "b"):
        temp_dir = Path(tempfile.gettempdir(), f"kds-{os.getpid()}-{name}")
        env = {**os.environ, "RAY_TMPDIR": str(temp_dir)}
        env.pop("RAY_ADDRESS", None)
        command = [sys.executable, "-m", "orchestrator", "run", str(pipeline)]
        command += ["--storage", str(tmp_path / name)]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT
        )
        runs.append((process, temp_dir))
    dashboards = []
    for process, temp_dir in runs:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        taken = f"(port {other_ray.dashboard_port} is taken, by another Ray or kdorch run)"
        assert taken in err
        dashboards.append(re.search(r"Ray dashboard: (\S+)", err).group(1))  # type: ignore[union-attr]
        # Quiet: no Ray log lines (with their colour codes), raylet warnings or boto chatter.
        text = out + err
        assert not ANSI.search(text), text
        assert "INFO worker.py" not in text and "(raylet)" not in text
        assert "Found credentials" not in text
        assert processes_under(temp_dir) == [], "an embedded Ray outlived its run"
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert dashboards[0] != dashboards[1]
