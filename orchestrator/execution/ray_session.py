"""Connecting to Ray: an embedded local cluster for the run, or an existing one.

- Ray already initialised in this process (tests, a Ray job's driver): use it, leave it running.
- An address (``--address``, the spec's ``ray.address``, or ``$RAY_ADDRESS``): connect, and only
  disconnect at the end.
- The warm local Ray that `kdorch up` started, when it is up (`local_cluster`; unless
  ``ray.local_cluster: false``): connect, and only disconnect at the end. It counts as this
  machine's, like an embedded one: its size is fixed, steps share its cores.
- Otherwise: start a local Ray for the run (dashboard on 127.0.0.1), shut it down afterwards.

Other Ray instances on the same machine are normal (a user's own cluster, a second
`kdorch run`): the embedded Ray is started with ``address="local"`` (never attaches to one of
them), its dashboard takes ``ray.dashboard_port`` or, when another process holds that port, a
free one (`dashboard_port`), and every address kdorch uses afterwards is its own.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from orchestrator.execution.local_cluster import LocalCluster
from orchestrator.execution.ray_connect import claim_sigterm, sigterm_interrupts, wait_for_gcs
from orchestrator.execution.ray_output import ray_logging_level, routine_raylet_messages_dropped
from schemas.engine.pipeline import RaySettings

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
    #: What steps running at once may ask for together (`Scheduler`'s ``capacity``): an
    #: embedded Ray's resources with its CPUs no more than the cores; None on a cluster.
    step_capacity: dict[str, float] | None = None
    #: The dashboard port the settings asked for, when another process held it (the dashboard
    #: then runs on another port: see ``dashboard_url``).
    dashboard_port_taken: int | None = None
    #: The warm local Ray of `kdorch up` (connected to, not started for the run).
    warm: bool = False

    @property
    def local(self) -> bool:
        """Ray on this machine that kdorch started (embedded, or warm): a fixed size."""
        return self.embedded or self.warm

    @property
    def where(self) -> str:
        """Where the run runs, as `kdorch run` says it."""
        if self.embedded:
            return "local Ray (embedded)"
        if self.warm:
            return f"the warm local Ray at {self.address} (`kdorch up`; `kdorch down` stops it)"
        return f"Ray at {self.address}"


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


def step_capacity(settings: RaySettings, resources: dict[str, float]) -> dict[str, float]:
    """What steps running at once on an embedded Ray may ask for together. Its logical CPUs
    are twice the cores by default (room for Ray Data's small tasks beside training workers),
    but steps are compute-bound: admitting a 2-CPU teacher beside a 1-CPU student on 2 cores
    slows the teacher — usually the critical path — by what the student takes. So CPUs count
    as the cores, unless `ray.num_cpus` was set on purpose."""
    capacity = dict(resources)
    if settings.num_cpus is None and "CPU" in capacity:
        capacity["CPU"] = min(capacity["CPU"], float(os.cpu_count() or 1))
    return capacity


DEFAULT_DASHBOARD_PORT = 8265
DASHBOARD_HOST = "127.0.0.1"


def port_is_free(port: int, host: str = DASHBOARD_HOST) -> bool:
    """Whether ``port`` can be bound on ``host`` right now (as Ray's own check does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = DASHBOARD_HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def dashboard_port(requested: int) -> tuple[int | None, int | None]:
    """(the port to pass to ``ray.init``, the requested port when it was taken).

    - 8265 (the default): None, so that Ray binds 8265 or, if another Ray (or a second
      `kdorch run`) holds it, the next free port of the 50 after it — its own bind, so two runs
      starting at the same moment cannot both take one port.
    - 0: a free port.
    - another port: that port when it is free, else a free one (and it is reported taken).
    """
    if requested == DEFAULT_DASHBOARD_PORT:
        return None, None if port_is_free(requested) else requested
    if requested == 0:
        return free_port(), None
    if port_is_free(requested):
        return requested, None
    return free_port(), requested


def target_address(settings: RaySettings, address: str | None) -> str | None:
    return address or settings.address or os.environ.get("RAY_ADDRESS") or None


def _dashboard_url(context: object) -> str | None:
    url = getattr(context, "dashboard_url", None)
    if not url:
        return None
    return url if url.startswith("http") else f"http://{url}"


@contextmanager
def ray_session(settings: RaySettings, address: str | None = None) -> Iterator[RaySession]:
    """Ray for one run (see the module docstring). SIGTERM inside ends the run as Ctrl-C does."""
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
    # A Ray job's driver (kdorch submit) already runs in the runtime env the job was given
    # (submit passes the pipeline's); giving it again to ray.init is a conflict Ray refuses.
    in_job = "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ
    runtime_env = None if in_job else (settings.runtime_env or None)
    target = target_address(settings, address)
    warm = None
    if target is None and settings.local_cluster and not in_job:
        from orchestrator.execution.local_cluster import driver_runtime_env, warm_cluster

        warm = warm_cluster()
        if warm is not None:
            target, runtime_env = warm.address, driver_runtime_env(runtime_env, warm)
    quiet = not settings.log_to_driver  # Ray's own lines only with --verbose (ray_output.py)
    taken = None
    # What ray.init is given alike, whether it joins a cluster or starts one:
    common: dict[str, Any] = {
        "namespace": settings.namespace,
        "runtime_env": runtime_env,
        "log_to_driver": settings.log_to_driver,
        "logging_level": ray_logging_level(quiet),
    }
    with sigterm_interrupts(), routine_raylet_messages_dropped(quiet):
        if warm is not None:
            context = ray.init(address=target, **common)
            embedded = False
        elif target:
            log.info(
                "connecting to the Ray cluster at %s (waiting up to %g s)",
                target,
                settings.connect_timeout_s,
            )
            wait_for_gcs(target, settings.connect_timeout_s)
            context = ray.init(address=target, **common)
            embedded = False
        else:
            # A local cluster for one run (its processes inherit these):
            for name, value in EMBEDDED_ENV.items():
                os.environ.setdefault(name, value)
            capacity = embedded_capacity(settings)
            port, taken = (
                dashboard_port(settings.dashboard_port) if settings.dashboard else (None, None)
            )
            context = ray.init(
                address="local",
                num_cpus=int(capacity["CPU"]),
                num_gpus=int(capacity["GPU"]),
                include_dashboard=settings.dashboard,
                dashboard_host=DASHBOARD_HOST,
                dashboard_port=port,
                **common,
            )
            embedded = True
        claim_sigterm()  # ray.init installed its own handler (sys.exit, no run record)
        try:
            yield _session(context, settings, target, embedded, taken, warm)
        finally:
            ray.shutdown()


def _session(
    context: object,
    settings: RaySettings,
    target: str | None,
    embedded: bool,
    taken: int | None,
    warm: LocalCluster | None,
) -> RaySession:
    import ray

    local = embedded or warm is not None  # this machine's Ray, of a fixed size
    return RaySession(
        address=context.address_info.get("gcs_address")
        if hasattr(context, "address_info")
        else target,
        dashboard_url=_dashboard_url(context) or (warm.dashboard_url if warm else None),
        embedded=embedded,
        resources=ray.cluster_resources(),
        max_parallel_steps=settings.max_parallel_steps
        or ((os.cpu_count() or 1) if local else None),
        step_capacity=step_capacity(settings, ray.cluster_resources()) if local else None,
        dashboard_port_taken=taken,
        warm=warm is not None,
    )
