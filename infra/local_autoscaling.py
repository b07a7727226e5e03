"""A real autoscaling Ray cluster on one machine (Ray's ``fake_multinode`` provider).

The head runs Ray's own autoscaler; when tasks ask for more than the nodes have, it starts
extra raylet "nodes" as local processes, and removes them once they idle. Everything a cluster
does — scheduling across nodes, the Jobs API, the dashboard — is real; only the machines are
not. kdorch's tests submit pipelines to it (tests/integration/test_autoscaling.py).

    python infra/local_autoscaling.py up --worker-cpus 2 --max-workers 2   # prints addresses
    kdorch submit pipelines/... --address http://127.0.0.1:PORT --storage s3://...
    python infra/local_autoscaling.py down --temp-dir /tmp/kdas-XXXX

Unlike `ray.cluster_utils.AutoscalingCluster`, this never runs ``ray stop --force`` (which kills
every Ray on the machine, a test suite's and anyone else's): it gives the cluster its own
temp dir and ports, and stops only the processes whose command line names that temp dir.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def node_ip() -> str:
    import ray._private.services

    return str(ray._private.services.get_node_ip_address())


def cluster_config(
    gcs_address: str,
    head_cpus: float,
    worker_cpus: float,
    max_workers: int,
    idle_timeout_s: float,
) -> dict[str, Any]:
    """The autoscaler's config: a head type and one worker type (min 0)."""
    return {
        "cluster_name": "kdorch-local",
        "max_workers": max_workers,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": idle_timeout_s / 60.0,
        "provider": {
            "type": "fake_multinode",
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            "gcs_address": gcs_address,
        },
        "available_node_types": {
            "ray.head.default": {
                "resources": {"CPU": head_cpus},
                "node_config": {},
                "max_workers": 0,
            },
            "ray.worker.cpu": {
                "resources": {"CPU": worker_cpus},
                "node_config": {},
                "min_workers": 0,
                "max_workers": max_workers,
            },
        },
        "head_node_type": "ray.head.default",
        "auth": {"ssh_user": "ray"},
        "docker": {},
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


@dataclass
class LocalCluster:
    gcs_address: str
    dashboard_url: str
    metrics_port: int
    temp_dir: str

    def nodes(self) -> list[dict[str, Any]]:
        """Alive nodes, as the dashboard's state API reports them."""
        from ray.util.state import list_nodes

        nodes = list_nodes(
            address=self.dashboard_url,
            filters=[("state", "=", "ALIVE")],
            raise_on_missing_output=False,
        )
        return [{"node_id": n.node_id, "resources": n.resources_total} for n in nodes]

    def stop(self) -> None:
        stop(self.temp_dir)


def short_temp_root() -> str:
    """The temp dir when it is short enough for Ray's unix socket paths (~107 characters under
    it), else /tmp."""
    root = tempfile.gettempdir()
    return root if len(root) <= 40 else "/tmp"


def start(
    *,
    head_cpus: float = 1,
    worker_cpus: float = 2,
    max_workers: int = 2,
    idle_timeout_s: float = 10.0,
    temp_dir: str | None = None,
    env: dict[str, str] | None = None,
) -> LocalCluster:
    """Start the head (with its autoscaler); returns its addresses. Raises if it does not come
    up (and then stops whatever it started)."""
    temp_dir = temp_dir or tempfile.mkdtemp(prefix="kdas-", dir=short_temp_root())
    port, dashboard, metrics = free_port(), free_port(), free_port()
    gcs = f"{node_ip()}:{port}"
    config = Path(temp_dir, "autoscaling.json")
    config.write_text(
        json.dumps(cluster_config(gcs, head_cpus, worker_cpus, max_workers, idle_timeout_s))
    )
    environment = {
        **os.environ,
        **(env or {}),
        "RAY_FAKE_CLUSTER": "1",
        "AUTOSCALER_UPDATE_INTERVAL_S": "1",
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    command = [
        str(Path(sys.executable).with_name("ray")),  # the `ray` CLI of this environment
        "start",
        "--head",
        f"--port={port}",
        f"--num-cpus={head_cpus:g}",
        f"--autoscaling-config={config}",
        f"--temp-dir={temp_dir}",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}",
        f"--metrics-export-port={metrics}",
        # Ray's fixed defaults (52365, 10001) collide with any other Ray on the machine.
        f"--dashboard-agent-listen-port={free_port()}",
        f"--ray-client-server-port={free_port()}",
        "--include-dashboard=true",
        "--disable-usage-stats",
    ]
    result = subprocess.run(command, env=environment, capture_output=True, text=True)
    if result.returncode != 0:
        stop(temp_dir)
        raise RuntimeError(f"the local autoscaling head did not start:\n{result.stderr[-3000:]}")
    return LocalCluster(gcs, f"http://127.0.0.1:{dashboard}", metrics, temp_dir)


def our_pids(temp_dir: str) -> list[int]:
    """Processes whose command line names this cluster's temp dir (head and worker nodes)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = entry.joinpath("cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if temp_dir in cmdline:
            pids.append(int(entry.name))
    return pids


def stop(temp_dir: str, grace_s: float = 5.0) -> None:
    """Stop every process of the cluster in ``temp_dir`` (TERM, then KILL); nothing else."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = our_pids(temp_dir)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.time() + grace_s
        while our_pids(temp_dir) and time.time() < deadline:
            time.sleep(0.2)
        if not our_pids(temp_dir):
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a head with its autoscaler")
    up.add_argument("--head-cpus", type=float, default=1)
    up.add_argument("--worker-cpus", type=float, default=2)
    up.add_argument("--max-workers", type=int, default=2)
    up.add_argument("--idle-timeout", type=float, default=30.0, help="seconds")
    down = sub.add_parser("down", help="stop the cluster started in --temp-dir")
    down.add_argument("--temp-dir", required=True)
    args = parser.parse_args()
    if args.command == "up":
        cluster = start(
            head_cpus=args.head_cpus,
            worker_cpus=args.worker_cpus,
            max_workers=args.max_workers,
            idle_timeout_s=args.idle_timeout,
        )
        print(f"address (ray.init / --address): {cluster.gcs_address}")
        print(f"dashboard and Jobs API (kdorch submit --address): {cluster.dashboard_url}")
        print(f"metrics (Prometheus text): http://127.0.0.1:{cluster.metrics_port}/metrics")
        print(f"stop it with: python infra/local_autoscaling.py down --temp-dir {cluster.temp_dir}")
    else:
        stop(args.temp_dir)


if __name__ == "__main__":
    main()
