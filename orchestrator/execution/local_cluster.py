"""A warm local Ray owned by kdorch: `kdorch up` starts it, `kdorch run` uses it while it is up,
`kdorch down` stops it.

An embedded Ray costs every `kdorch run` its start and its shutdown (~6-9 s on a laptop); a head
that stays up between runs costs a run only its connection (~0.1 s), and its dashboard stays at
one address. It is a plain ``ray start --head`` with kdorch's embedded settings (`EMBEDDED_ENV`:
auth off, fast Ray Train health checks, ...), explicit ports, and a temp dir of its own.

Where later commands find it is explicit, never Ray's autodetection: the state file
``$KDORCH_HOME/local_cluster.json`` (`state_file`; ``KDORCH_HOME`` defaults to
``$XDG_CONFIG_HOME/kdorch``, else ``~/.config/kdorch``) holds its GCS address, dashboard URL,
temp dir and process ids. A file whose head is gone (killed, machine rebooted) or was started by
another Ray or Python version is ignored with a message saying why, and runs go embedded.

`kdorch down` stops exactly the processes whose command line names the head's temp dir (the
head's and its workers'), as `infra/local_autoscaling.py` does: never ``ray stop``, which would
stop every Ray on the machine.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.errors import ClusterUnreachable, KdorchError

log = logging.getLogger("kdorch")

STATE_NAME = "local_cluster.json"
#: Variables a run's workers get from the driver on the warm cluster (they otherwise run in
#: the environment `kdorch up` was started in): where its code and plugins are, and its
#: working directory (for relative paths), set by `worker_setup`.
DRIVER_VARS = ("PYTHONPATH", "KDORCH_PLUGINS")
DRIVER_CWD = "KDORCH_DRIVER_CWD"


def kdorch_home() -> Path:
    """``$KDORCH_HOME``, else ``$XDG_CONFIG_HOME/kdorch``, else ``~/.config/kdorch``."""
    explicit = os.environ.get("KDORCH_HOME")
    if explicit:
        return Path(explicit).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config).expanduser() / "kdorch"


def state_file() -> Path:
    return kdorch_home() / STATE_NAME


def ray_version() -> str:
    return importlib.metadata.version("ray")


def python_version() -> str:
    return ".".join(platform.python_version_tuple()[:2])


@dataclass(frozen=True)
class LocalCluster:
    """What `kdorch up` wrote: where the head is and what belongs to it."""

    address: str  # the GCS, host:port (what ray.init and --address take)
    dashboard_url: str | None
    temp_dir: str  # Ray's temp dir: every process of this head names it
    pids: list[int]
    num_cpus: int
    num_gpus: int
    ray_version: str
    python: str
    started_at: str
    cwd: str = ""  # where `kdorch up` ran (its workers' default working directory)
    extra: dict[str, Any] = field(default_factory=dict)

    def write(self, path: Path) -> None:
        """Write the state file (a temp file renamed: a reader never sees half of it)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(asdict(self), indent=1) + "\n")
        tmp.replace(path)

    @classmethod
    def read(cls, path: Path) -> LocalCluster:
        """The state in ``path``; ValueError when it is not one (``OSError`` when unreadable)."""
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        try:
            return cls(**data)
        except TypeError as e:
            raise ValueError(str(e)) from None


def processes_under(temp_dir: str) -> list[int]:
    """Pids of the processes whose command line names ``temp_dir`` (ours, and only ours)."""
    if not temp_dir or len(temp_dir) < 8:  # never match half the machine
        return []
    import psutil  # a dependency of Ray's

    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = process.info.get("cmdline") or []
        if process.info["pid"] != os.getpid() and any(temp_dir in part for part in cmdline):
            found.append(int(process.info["pid"]))
    return sorted(found)


def stop_processes(temp_dir: str, grace_s: float = 5.0) -> list[int]:
    """SIGTERM, then SIGKILL, every process of ``temp_dir`` (`processes_under`) and every
    process those started; returns the pids that were stopped. Nothing else on the machine is
    touched.

    The descendants count because a Ray worker or agent renames its command line
    (``ray::ProgressSink``, ``ray::DashboardAgent``): the temp dir no longer names it, and one
    left behind by its dead raylet lived on for minutes, reparented to init."""
    import psutil  # a dependency of Ray's

    targets: dict[int, Any] = {}
    for pid in processes_under(temp_dir):
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(pid)
            targets[pid] = process
            targets.update((child.pid, child) for child in process.children(recursive=True))
    targets.pop(os.getpid(), None)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for process in _running(targets.values()):
            with contextlib.suppress(psutil.Error):
                process.send_signal(sig)
        deadline = time.monotonic() + grace_s
        while _running(targets.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not _running(targets.values()):
            break
    return sorted(targets)


def _running(processes: Any) -> list[Any]:
    """Those of ``processes`` (psutil's) still running: not gone, not a zombie, and not another
    process that took the pid since (psutil compares start times)."""
    import psutil

    alive = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
    return alive


def not_usable(cluster: LocalCluster, answer_timeout_s: float = 3.0) -> str | None:
    """Why a run cannot use ``cluster`` (its head is gone, or another Ray or Python version
    started it); None when it can."""
    if cluster.ray_version != ray_version():
        return (
            f"it runs Ray {cluster.ray_version}, this environment has Ray {ray_version()} "
            "(a driver must match its cluster)"
        )
    if cluster.python != python_version():
        return f"it runs Python {cluster.python}, this is Python {python_version()}"
    if not processes_under(cluster.temp_dir):
        return f"none of its processes is running (its temp dir {cluster.temp_dir})"
    from orchestrator.execution.ray_connect import wait_for_gcs

    try:
        wait_for_gcs(cluster.address, answer_timeout_s)
    except ClusterUnreachable:
        return f"its head at {cluster.address} does not answer"
    return None


def read_state(path: Path | None = None) -> LocalCluster | None:
    """The state file's cluster; None when there is no file. An unreadable file is ignored with
    a message (a run then goes embedded; `kdorch down` removes it)."""
    path = path or state_file()
    try:
        return LocalCluster.read(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        log.warning(
            "ignoring the warm local Ray's state file %s: it is unreadable (%s); "
            "`kdorch down` removes it",
            path,
            e,
        )
        return None


def warm_cluster() -> LocalCluster | None:
    """The warm local Ray a run should use: the state file's, when it is usable. A stale file
    is ignored with a message saying why (the run then starts an embedded Ray)."""
    path = state_file()
    cluster = read_state(path)
    if cluster is None:
        return None
    why = not_usable(cluster)
    if why is None:
        return cluster
    log.warning(
        "the warm local Ray in %s is not usable: %s. This run starts an embedded Ray; "
        "`kdorch up` starts a new warm one, `kdorch down` removes the file",
        path,
        why,
    )
    return None


def driver_environment() -> dict[str, str | None]:
    """What a run's workers take from its driver on the warm cluster: the `DRIVER_VARS` (None:
    unset) and the working directory (`DRIVER_CWD`)."""
    return {**{name: os.environ.get(name) for name in DRIVER_VARS}, DRIVER_CWD: os.getcwd()}


def driver_runtime_env(
    runtime_env: dict[str, Any] | None, cluster: LocalCluster | None = None
) -> dict[str, Any] | None:
    """The runtime env of a run on the warm cluster: the pipeline's, plus what its workers would
    have inherited from this driver on an embedded Ray (`DRIVER_VARS`, the working directory,
    applied by `worker_setup` when each worker starts).

    None when the pipeline has none and ``cluster``'s workers already run in this driver's
    environment (`kdorch up` was started with the same `DRIVER_VARS`, in the same directory: they
    inherit both from its raylet), so a run's first worker can be one of the head's idle ones: a
    runtime env, even of variables only, makes Ray start a new one through its runtime-env agent
    (a first task in 0.4-1.6 s without, 2.4-4.7 s with, on 2 busy cores), and every run has a
    first worker, since Ray binds workers to a driver's job."""
    inherited = cluster.extra.get("driver_environment") if cluster is not None else None
    if not runtime_env and inherited == driver_environment():
        return None
    env = dict(runtime_env or {})
    env_vars = dict(env.get("env_vars") or {})
    for name in DRIVER_VARS:
        if name in os.environ and name not in env_vars:
            env_vars[name] = os.environ[name]
    env_vars.setdefault(DRIVER_CWD, os.getcwd())
    env["env_vars"] = env_vars
    env.setdefault("worker_process_setup_hook", f"{__name__}.worker_setup")
    return env


def worker_setup() -> None:
    """Run in every worker of a run on the warm cluster as it starts: its working directory
    becomes the driver's, as on an embedded Ray (relative paths read the same)."""
    folder = os.environ.get(DRIVER_CWD)
    if folder and Path(folder).is_dir():
        os.chdir(folder)


def _short_temp_root() -> str:
    """The system temp dir when it is short enough for Ray's unix socket paths (~107
    characters under it), else /tmp."""
    root = tempfile.gettempdir()
    return root if len(root) <= 40 else "/tmp"


def _ray_cli() -> str:
    """The `ray` command of this environment (the one whose Ray the runs will import)."""
    beside = Path(sys.executable).with_name("ray")
    return str(beside) if beside.exists() else "ray"


def start(*, num_cpus: int, num_gpus: int, dashboard_port: int) -> LocalCluster:
    """Start the head (``ray start --head``: its own temp dir, explicit free ports, the
    dashboard on 127.0.0.1:``dashboard_port`` or, when that is taken, a free port) and return
    what the state file records. When it does not come up, whatever it started is stopped."""
    from orchestrator.execution.ray_session import (
        DASHBOARD_HOST,
        EMBEDDED_ENV,
        free_port,
        port_is_free,
    )

    temp_dir = tempfile.mkdtemp(prefix="kdorch-up-", dir=_short_temp_root())
    dashboard = dashboard_port if dashboard_port and port_is_free(dashboard_port) else free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    for name, value in EMBEDDED_ENV.items():
        env.setdefault(name, value)
    command = [
        _ray_cli(),
        "start",
        "--head",
        f"--port={free_port()}",
        f"--num-cpus={num_cpus}",
        f"--num-gpus={num_gpus}",
        f"--temp-dir={temp_dir}",
        "--include-dashboard=true",
        f"--dashboard-host={DASHBOARD_HOST}",
        f"--dashboard-port={dashboard}",
        # Ray's fixed defaults (52365, 10001) would collide with any other Ray on the machine.
        f"--dashboard-agent-listen-port={free_port()}",
        f"--ray-client-server-port={free_port()}",
        "--disable-usage-stats",
    ]
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
        current = Path(temp_dir, "ray_current_cluster")
        if done.returncode != 0 or not current.exists():
            tail = (done.stderr or done.stdout or "").strip()[-2000:]
            raise KdorchError(f"`ray start --head` failed (exit {done.returncode}):\n{tail}")
    except BaseException:
        stop_processes(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    return LocalCluster(
        address=current.read_text().strip(),
        dashboard_url=f"http://{DASHBOARD_HOST}:{dashboard}",
        temp_dir=temp_dir,
        pids=processes_under(temp_dir),
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        ray_version=ray_version(),
        python=python_version(),
        started_at=time.strftime("%Y-%m-%d %H:%M:%S %z"),
        cwd=os.getcwd(),
        extra={
            "dashboard_port_taken": dashboard_port if dashboard != dashboard_port else None,
            # What its workers inherit of `driver_environment` (from `ray start`: ``env``).
            "driver_environment": {
                **{name: env.get(name) for name in DRIVER_VARS},
                DRIVER_CWD: os.getcwd(),
            },
        },
    )


def start_progress_sink(cluster: LocalCluster, timeout_s: float = 60.0) -> None:
    """Start the head's progress sink (`progress.WARM_SINK`) now, from a driver of
    `kdorch up`'s own, so that the first run, like the others, finds it instead of starting it.
    Raises when it does not answer in ``timeout_s``."""
    import ray

    from orchestrator.execution.progress import shared_sink
    from orchestrator.execution.ray_output import (
        ray_logging_level,
        routine_raylet_messages_dropped,
    )

    with routine_raylet_messages_dropped(True):
        ray.init(
            address=cluster.address, log_to_driver=False, logging_level=ray_logging_level(True)
        )
        try:
            handle, _, _ = shared_sink(warm=True)
            ray.get(handle.drain.remote(""), timeout=timeout_s)
        finally:
            ray.shutdown()


def stop(cluster: LocalCluster) -> list[int]:
    """Stop the head's processes and its workers (`stop_processes`), then remove its temp dir;
    returns the pids stopped."""
    stopped = stop_processes(cluster.temp_dir)
    shutil.rmtree(cluster.temp_dir, ignore_errors=True)
    return stopped
