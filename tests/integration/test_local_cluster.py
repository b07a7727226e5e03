"""`kdorch up` / `kdorch run` / `kdorch down` end to end, as a user types them (subprocesses,
a state folder of the test's own), with another Ray alive on the machine (`other_ray`) that
must stay untouched."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from orchestrator.execution.local_cluster import processes_under
from tests.support.cli import toy_pipeline
from tests.support.other_ray import OtherRay, free_port

pytestmark = pytest.mark.ray


def kdorch(
    home: Path, *args: str, timeout: float = 300, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KDORCH_HOME": str(home)}
    env.pop("RAY_ADDRESS", None)
    command = [sys.executable, "-m", "orchestrator", *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd
    )


def started_by(pids: list[int]) -> list[psutil.Process]:
    """Every process that those of ``pids`` started (Ray's workers and agents)."""
    found = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            found += psutil.Process(pid).children(recursive=True)
    return found


def sinks(processes: list[psutil.Process]) -> list[psutil.Process]:
    """The progress sinks among ``processes``."""
    return [p for p in processes if p.cmdline()[:1] == ["ray::ProgressSink"]]


def test_up_run_down_leaves_nothing_and_another_ray_untouched(
    tmp_path: Path, other_ray: OtherRay
) -> None:
    home = tmp_path / "home"
    (tmp_path / "p.yaml").write_text(toy_pipeline("warm"))
    others = processes_under(str(other_ray.temp_dir))
    assert others

    dashboard = free_port()
    up = kdorch(home, "up", "--dashboard-port", str(dashboard))
    assert up.returncode == 0, up.stderr
    state = json.loads((home / "local_cluster.json").read_text())
    assert state["dashboard_url"] == f"http://127.0.0.1:{dashboard}"
    assert f"address: {state['address']}" in up.stdout
    assert processes_under(state["temp_dir"])
    sink = sinks(started_by(processes_under(state["temp_dir"])))  # started by up, for every run
    assert len(sink) == 1
    again = kdorch(home, "up")
    assert again.returncode == 0 and "already up" in again.stderr
    assert json.loads((home / "local_cluster.json").read_text()) == state  # the same head

    # Two runs: the same cluster, the same dashboard; the first from where `kdorch up` ran (its
    # workers inherit the driver's environment: no runtime env), the second from elsewhere
    # (a runtime env gives them the driver's directory and variables).
    for store, where in (("s1", None), ("s2", tmp_path)):
        ran = kdorch(
            home, "run", str(tmp_path / "p.yaml"), "--storage", str(tmp_path / store), cwd=where
        )
        assert ran.returncode == 0, ran.stderr
        assert f"on the warm local Ray at {state['address']}" in ran.stderr
        assert f"Ray dashboard: {state['dashboard_url']}" in ran.stderr
        assert "total" in ran.stderr and "succeeded" in ran.stderr
    assert processes_under(state["temp_dir"])  # the head outlives the runs
    # Both runs passed their progress through the sink up started, which lives on the head.
    started = started_by(processes_under(state["temp_dir"]))
    assert sinks(started) == sink, [p.cmdline()[:1] for p in started]

    down = kdorch(home, "down")
    assert down.returncode == 0, down.stderr
    assert f"stopped the warm local Ray at {state['address']}" in down.stderr
    assert processes_under(state["temp_dir"]) == []
    # Workers and agents rename their command line (the temp dir no longer names them): down
    # stops them too, rather than leaving them to notice their raylet is gone.
    assert not [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not Path(state["temp_dir"]).exists()
    assert not (home / "local_cluster.json").exists()
    assert set(others) <= set(processes_under(str(other_ray.temp_dir)))  # the other Ray lives
    assert kdorch(home, "down").stderr.startswith("no warm local Ray is up")

    # A head that died without `kdorch down`: its file is stale, ignored with a message.
    (home / "local_cluster.json").write_text(json.dumps(state))
    ran = kdorch(home, "run", str(tmp_path / "p.yaml"), "--storage", str(tmp_path / "s3"))
    assert ran.returncode == 0, ran.stderr
    assert "is not usable: none of its processes is running" in ran.stderr
    assert "on local Ray (embedded)" in ran.stderr
    assert "Traceback" not in ran.stderr
    assert set(others) <= set(processes_under(str(other_ray.temp_dir)))
