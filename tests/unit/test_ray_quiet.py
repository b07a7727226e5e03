"""Ray on a shared machine without starting one: the dashboard port, and quiet output."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.execution.ray_output import is_routine, routine_raylet_messages_dropped
from orchestrator.execution.ray_session import DEFAULT_DASHBOARD_PORT, dashboard_port

ROUTINE = (
    "WARNING: 12 PYTHON worker processes have been started on node: abc with address: "
    "10.0.0.1, which is 6x the maximum expected startup concurrency (2)."
)


def test_a_taken_dashboard_port_is_replaced_by_a_free_one() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        port, reported = dashboard_port(taken)
        assert port is not None and port != taken and reported == taken
    free, reported = dashboard_port(taken)  # released: used as asked
    assert free == taken and reported is None
    chosen, reported = dashboard_port(0)
    assert chosen and reported is None


def test_the_default_port_is_left_to_ray_so_two_runs_cannot_race() -> None:
    # None: Ray binds 8265 or the next free port itself (an atomic bind, not a probe).
    port, _ = dashboard_port(DEFAULT_DASHBOARD_PORT)
    assert port is None


def test_routine_raylet_warnings_are_dropped_and_others_kept(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import ray._private.worker as ray_worker

    original = ray_worker.print_to_stdstream
    assert is_routine({"pid": "raylet", "lines": [ROUTINE], "is_err": False})
    assert not is_routine({"pid": "raylet", "lines": ["Task killed: out of memory"]})
    assert not is_routine({"pid": 42, "lines": [ROUTINE]})
    with routine_raylet_messages_dropped(quiet=True):
        ray_worker.print_to_stdstream({"pid": "raylet", "lines": [ROUTINE], "is_err": False}, False)
        ray_worker.print_to_stdstream(
            {"pid": "raylet", "lines": ["Task killed: out of memory"], "is_err": False}, False
        )
    assert ray_worker.print_to_stdstream is original  # restored
    out = capsys.readouterr().out
    # Our own line (node "abc"): the session's real cluster may print its own meanwhile.
    assert "on node: abc" not in out and "out of memory" in out
    with routine_raylet_messages_dropped(quiet=False):
        assert ray_worker.print_to_stdstream is original  # --verbose: untouched


def test_boto_credential_lines_only_with_verbose(tmp_path: Path, s3_server: dict) -> None:
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text("name: quiet\nsteps:\n- {id: src, component: toy_source}\n")
    command = [sys.executable, "-m", "orchestrator", "run", str(pipeline), "--executor", "local"]
    command += ["--storage", f"s3://{s3_server['bucket']}/quiet"]
    command += ["--storage-option", f"endpoint_url={s3_server['endpoint']}"]
    quiet = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0, quiet.stderr
    assert "Found credentials" not in quiet.stderr + quiet.stdout
    loud = subprocess.run([*command, "--verbose"], capture_output=True, text=True, timeout=120)
    assert loud.returncode == 0, loud.stderr
    assert "Found credentials" in loud.stderr


def test_kdorch_logger_stays_at_info() -> None:
    from orchestrator.cli.root import configure_logging

    configure_logging()
    assert logging.getLogger("kdorch").getEffectiveLevel() == logging.INFO
    assert logging.getLogger("botocore.credentials").getEffectiveLevel() == logging.WARNING
