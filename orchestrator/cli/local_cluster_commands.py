"""`kdorch up` and `kdorch down`: a warm local Ray that every `kdorch run` on this machine uses
while it is up (`orchestrator.execution.local_cluster`)."""

from __future__ import annotations

from typing import Annotated

import typer

from orchestrator.cli.root import err, out
from orchestrator.execution.local_cluster import (
    LocalCluster,
    not_usable,
    read_state,
    start,
    start_progress_sink,
    state_file,
    stop,
)
from orchestrator.execution.ray_session import DEFAULT_DASHBOARD_PORT, embedded_capacity
from schemas.engine.pipeline import RaySettings


def _describe(cluster: LocalCluster) -> None:
    out.print(f"address: {cluster.address}", highlight=False)
    if cluster.dashboard_url:
        out.print(f"dashboard: {cluster.dashboard_url}", highlight=False)
    out.print(
        f"{cluster.num_cpus} CPUs, {cluster.num_gpus} GPUs; processes {cluster.pids} "
        f"(temp dir {cluster.temp_dir})",
        highlight=False,
    )
    out.print(f"state file: {state_file()}", highlight=False)


def up(
    num_cpus: Annotated[
        int | None,
        typer.Option(
            min=1, help="Logical CPUs (default: max(4, 2 x cores), as an embedded Ray's)."
        ),
    ] = None,
    num_gpus: Annotated[
        int | None, typer.Option(min=0, help="GPUs (default: those this machine has).")
    ] = None,
    dashboard_port: Annotated[
        int,
        typer.Option(
            min=0, max=65535, help="The dashboard's port; a free one when it is taken (or 0)."
        ),
    ] = DEFAULT_DASHBOARD_PORT,
) -> None:
    """Start a warm local Ray that `kdorch run` uses until `kdorch down`.

    Runs then skip starting and stopping an embedded Ray (several seconds each), and the
    dashboard stays at one address. Its address, dashboard and process ids are written to
    $KDORCH_HOME/local_cluster.json (default ~/.config/kdorch/local_cluster.json), where later
    commands find it. Already up: says where."""
    path = state_file()
    existing = read_state(path)
    if existing is not None:
        why = not_usable(existing)
        if why is None:
            err.print("[green]✔[/] the warm local Ray is already up")
            _describe(existing)
            return
        err.print(f"the warm local Ray in {path} is not usable ({why}): replacing it")
        stop(existing)
        path.unlink(missing_ok=True)
    capacity = embedded_capacity(RaySettings(num_cpus=num_cpus, num_gpus=num_gpus))
    err.print(f"starting a warm local Ray ({int(capacity['CPU'])} CPUs) ...")
    cluster = start(
        num_cpus=int(capacity["CPU"]),
        num_gpus=int(capacity["GPU"]),
        dashboard_port=dashboard_port,
    )
    try:
        start_progress_sink(cluster)
    except Exception as e:  # the first run starts it then: a convenience, never a failure
        err.print(f"[yellow]![/] the progress sink did not start ({e}); the first run will")
    cluster.write(path)
    taken = cluster.extra.get("dashboard_port_taken")
    note = f" (port {taken} is taken)" if taken else ""
    err.print(
        f"[green]✔[/] the warm local Ray is up{note}: `kdorch run` uses it until `kdorch down`"
    )
    _describe(cluster)


def down() -> None:
    """Stop the warm local Ray that `kdorch up` started: its own processes, nothing else."""
    path = state_file()
    if not path.exists():
        err.print(f"no warm local Ray is up (no {path})")
        return
    cluster = read_state(path)
    if cluster is None:  # unreadable (read_state said why): nothing of ours to find
        path.unlink(missing_ok=True)
        err.print(f"removed the unreadable state file {path}")
        return
    stopped = stop(cluster)
    path.unlink(missing_ok=True)
    err.print(
        f"[green]✔[/] stopped the warm local Ray at {cluster.address} "
        f"({len(stopped)} processes); runs start an embedded Ray again"
    )
