"""A second, unrelated Ray instance on this machine, as a user's own cluster (or another
`kdorch run`) would be: started with `ray start --head` in a temp dir of its own, stopped by
killing exactly the processes that carry that temp dir (never `ray stop`, which would stop
every Ray on the machine, other people's included).

While it runs, anything that autodetects a cluster (`ray.init()` without an address,
`list_actors()` without `address=`, `JobSubmissionClient()` without a URL) fails with "Found
multiple active Ray instances"; kdorch and its tests must name the cluster they mean.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class OtherRay:
    gcs_address: str
    dashboard_port: int
    temp_dir: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def processes_under(temp_dir: Path) -> list[int]:
    """Pids of processes whose command line names ``temp_dir`` (ours, and only ours)."""
    import psutil

    needle = str(temp_dir)
    pids = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(needle in part for part in process.info["cmdline"] or []):
                pids.append(process.info["pid"])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return [p for p in pids if p != os.getpid()]


def kill_processes_under(temp_dir: Path, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL, every process `processes_under` finds; waits until they are gone."""
    import psutil

    processes = []
    for pid in processes_under(temp_dir):
        try:
            processes.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    for process in processes:
        with suppress(psutil.NoSuchProcess):
            process.terminate()
    _, alive = psutil.wait_procs(processes, timeout=timeout / 2)
    for process in alive:
        with suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(alive, timeout=timeout / 2)


@contextmanager
def other_ray_instance() -> Iterator[OtherRay]:
    """Start the second Ray (1 CPU, its own ports and temp dir); stop it by its own pids."""
    # Short: Ray's unix socket paths must stay under ~107 characters.
    temp_dir = Path(tempfile.mkdtemp(prefix="kdo-"))
    port, dashboard = free_port(), free_port()
    ray = Path(sys.executable).with_name("ray")
    command = [
        str(ray) if ray.exists() else "ray",
        "start",
        "--head",
        f"--port={port}",
        "--num-cpus=1",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}",
        f"--temp-dir={temp_dir}",
        # Ray's fixed defaults (agent 52365, client 10001) would collide with the session's.
        f"--dashboard-agent-listen-port={free_port()}",
        f"--ray-client-server-port={free_port()}",
        "--disable-usage-stats",
    ]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    try:
        started = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
        if started.returncode != 0:
            raise RuntimeError(f"`ray start` failed:\n{started.stdout}\n{started.stderr}")
        host = socket.gethostbyname(socket.gethostname())
        address = (temp_dir / "ray_current_cluster").read_text().strip() or f"{host}:{port}"
        yield OtherRay(address, dashboard, temp_dir)
    finally:
        kill_processes_under(temp_dir)
        deadline = time.monotonic() + 10
        while processes_under(temp_dir) and time.monotonic() < deadline:
            time.sleep(0.2)
        shutil.rmtree(temp_dir, ignore_errors=True)
