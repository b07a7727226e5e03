"""Connecting to Ray: an embedded local cluster for the run, or an existing one.

- Ray already initialised in this process (tests, a Ray job's driver): use it, leave it running.
- An address (``--address``, the spec's ``ray.address``, or ``$RAY_ADDRESS``): connect, and only
  disconnect at the end.
- Otherwise: start a local Ray for the run (dashboard on 127.0.0.1), shut it down afterwards.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from schemas.pipeline import RaySettings

log = logging.getLogger("kdorch")


#: Defaults for an embedded single-machine Ray (a user's environment wins):
EMBEDDED_ENV = {
    "RAY_AUTH_MODE": "disabled",  # token auth would only lock the user out of the dashboard
    "RAY_USAGE_STATS_ENABLED": "0",
    # Ray Train's preemption watcher only matters for cloud spot nodes; with fast health checks
    # a TorchTrainer.fit() starts ~6 s sooner on a laptop (STACK-NOTES.md).
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
    "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0",
    # Ray Data 2.60 lists Parquet files by reading footers on a pool of 32 new actors per read;
    # on one machine that is ~4 s of process start-up per read (5.9 s -> 1.9 s for a 3-file
    # dataset on 2 cores; benchmarks/ray_data_read.py).
    "RAY_DATA_PARQUET_FOOTER_NUM_ACTORS": "2",
}


@dataclass
class RaySession:
    address: str | None
    dashboard_url: str | None
    embedded: bool
    resources: dict[str, float] = field(default_factory=dict)
    max_parallel_steps: int | None = None  # see RaySettings.max_parallel_steps


def detect_gpus() -> int:
    """GPUs visible to this machine, without importing torch (as Ray would count them)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def embedded_capacity(settings: RaySettings) -> dict[str, float]:
    """What an embedded local Ray will offer (logical CPUs: see `RaySettings.num_cpus`)."""
    cpus = settings.num_cpus or max(4, 2 * (os.cpu_count() or 1))
    gpus = settings.num_gpus if settings.num_gpus is not None else detect_gpus()
    return {"CPU": float(cpus), "GPU": float(gpus)}


def target_address(settings: RaySettings, address: str | None) -> str | None:
    return address or settings.address or os.environ.get("RAY_ADDRESS") or None


def _dashboard_url(context: object) -> str | None:
    url = getattr(context, "dashboard_url", None)
    if not url:
        return None
    return url if url.startswith("http") else f"http://{url}"


@contextmanager
def ray_session(settings: RaySettings, address: str | None = None) -> Iterator[RaySession]:
    import ray

    if ray.is_initialized():
        ctx = ray.get_runtime_context()
        yield RaySession(
            address=ctx.gcs_address,
            dashboard_url=None,
            embedded=False,
            resources=ray.cluster_resources(),
            max_parallel_steps=settings.max_parallel_steps,
        )
        return
    runtime_env = settings.runtime_env or None
    target = target_address(settings, address)
    if target:
        context = ray.init(
            address=target,
            namespace=settings.namespace,
            runtime_env=runtime_env,
            log_to_driver=settings.log_to_driver,
        )
        embedded = False
    else:
        # A local cluster for one run (its processes inherit these):
        for name, value in EMBEDDED_ENV.items():
            os.environ.setdefault(name, value)
        capacity = embedded_capacity(settings)
        context = ray.init(
            address="local",
            num_cpus=int(capacity["CPU"]),
            num_gpus=int(capacity["GPU"]),
            include_dashboard=settings.dashboard,
            dashboard_host="127.0.0.1",
            dashboard_port=settings.dashboard_port,
            namespace=settings.namespace,
            runtime_env=runtime_env,
            log_to_driver=settings.log_to_driver,
        )
        embedded = True
    try:
        yield RaySession(
            address=context.address_info.get("gcs_address")
            if hasattr(context, "address_info")
            else target,
            dashboard_url=_dashboard_url(context),
            embedded=embedded,
            resources=ray.cluster_resources(),
            max_parallel_steps=settings.max_parallel_steps
            or ((os.cpu_count() or 1) if embedded else None),
        )
    finally:
        ray.shutdown()
