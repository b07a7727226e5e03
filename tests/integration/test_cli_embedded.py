"""`kdorch run` with no address starts its own local Ray (dashboard on) and shuts it down."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.ray


def ray_pids_under(temp_dir: Path) -> list[int]:
    out = subprocess.run(["pgrep", "-f", str(temp_dir)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_embedded_ray_run(tmp_path: Path) -> None:
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        "name: embedded\nray: {num_cpus: 2, dashboard_port: 0}\nsteps:\n"
        "- {id: src, component: toy_source}\n"
        "- {id: double, component: toy_scale, inputs: {numbers: src.numbers}}\n"
    )
    temp_dir = Path(tempfile.gettempdir(), f"kde-{os.getpid()}")
    env = {**os.environ, "RAY_TMPDIR": str(temp_dir)}
    env.pop("RAY_ADDRESS", None)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "run",
            str(pipeline),
            "--storage",
            str(tmp_path / "s"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "on local Ray (embedded)" in result.stderr
    assert "Ray dashboard: http://127.0.0.1:" in result.stderr
    assert "double" in result.stderr and "succeeded" in result.stderr
    assert ray_pids_under(temp_dir) == [], "the embedded Ray outlived its run"
