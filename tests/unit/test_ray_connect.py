"""`kdorch run --address` towards a cluster that is not there: kdorch's own deadline and message,
exit 2, nothing run; SIGTERM stops the wait at once. No Ray is started here."""

from __future__ import annotations

import http.server
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.errors import ClusterUnreachable
from orchestrator.execution.ray_connect import split_address, wait_for_gcs

PIPELINE = "name: connect\nsteps:\n- {id: src, component: toy_source}\n"


def kdorch_run(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(PIPELINE)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    command = [sys.executable, "-m", "orchestrator", "run", str(pipeline)]
    return subprocess.Popen(
        [*command, "--storage", str(tmp_path / "s"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.fixture
def web_server() -> Iterator[int]:
    """A plain HTTP server on 127.0.0.1 (what a dashboard port looks like)."""
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def test_unreachable_address_times_out_with_its_own_message(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = kdorch_run(tmp_path, "--address", "127.0.0.1:1", "--set", "ray.connect_timeout_s=1.5")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert time.monotonic() - started < 30
    assert "could not reach a Ray cluster at 127.0.0.1:1 within 1.5 s (Connection refused)" in err
    assert "ray status --address 127.0.0.1:1" in err and "Traceback" not in err
    assert not (tmp_path / "s" / "runs").exists() or not any((tmp_path / "s" / "runs").iterdir())


def test_a_server_that_is_not_ray_is_named_at_once(tmp_path: Path, web_server: int) -> None:
    proc = kdorch_run(tmp_path, "--address", f"127.0.0.1:{web_server}")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert f"127.0.0.1:{web_server} answers, but not as a Ray cluster" in err


def test_sigterm_stops_the_wait_at_once(tmp_path: Path) -> None:
    proc = kdorch_run(tmp_path, "--address", "127.0.0.1:1", "--set", "ray.connect_timeout_s=120")
    assert proc.stderr is not None
    # Imports and compiling take a while on a busy machine: wait for the line that says the
    # wait for the cluster has begun (SIGTERM is ours from then on), with a deadline.
    waiting = threading.Event()

    def watch() -> None:
        for line in proc.stderr:  # type: ignore[union-attr]
            if "connecting to the Ray cluster at 127.0.0.1:1" in line:
                waiting.set()
                return

    threading.Thread(target=watch, daemon=True).start()
    assert waiting.wait(timeout=120), "kdorch never started waiting for the cluster"
    assert proc.poll() is None
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - sent < 3
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("http://127.0.0.1:8265", "an http(s) address is a Ray dashboard"),
        ("10.0.0.5", "expected host:port"),
        ("10.0.0.5:99999", "expected host:port"),
        ("tcp://10.0.0.5:6379", "unknown scheme 'tcp://'"),
    ],
)
def test_addresses_that_are_not_a_gcs_are_refused_before_connecting(
    address: str, message: str
) -> None:
    with pytest.raises(ClusterUnreachable, match=re.escape(message)):
        wait_for_gcs(address, timeout_s=0.1)


def test_address_forms() -> None:
    assert split_address("10.0.0.5:6379") == ("10.0.0.5", 6379)
    assert split_address("ray://head:10001") == ("head", 10001)
    assert split_address("[::1]:6379") == ("::1", 6379)
    assert split_address("auto") is None
