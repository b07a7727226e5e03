"""The commands that act on a Ray cluster through its Jobs API: submit, status, logs."""

from __future__ import annotations

from typing import Annotated

import typer

from orchestrator import api
from orchestrator.cli.options import (
    JobAddressOpt,
    PipelineArg,
    ProfileOpt,
    SetOpt,
    StorageOpt,
    StorageOptionOpt,
    TrackOpt,
)
from orchestrator.cli.root import err, out
from orchestrator.storage.options import parse_storage_options


def submit(
    pipeline: PipelineArg,
    address: JobAddressOpt,
    set_: SetOpt = None,
    profile: ProfileOpt = None,
    storage: StorageOpt = None,
    wait: Annotated[bool, typer.Option(help="Follow the job's logs until it ends.")] = True,
    ship: Annotated[
        bool,
        typer.Option(
            "--ship/--no-ship",
            help="Ship this project directory as the job's working_dir (--no-ship: the "
            "cluster's image already holds kdorch and your components).",
        ),
    ] = True,
    track: TrackOpt = None,
) -> None:
    """Send a run to a Ray cluster through the Ray Jobs API (the project ships as working_dir)."""
    from orchestrator.cli.submit import submit_job

    api.validate(pipeline, overrides=set_ or [], profile=profile, address=address, check_data=False)
    code = submit_job(
        pipeline,
        address=address,
        overrides=set_ or [],
        profile=profile,
        storage=storage,
        wait=wait,
        console=err,
        ship=ship,
        track=track,
    )
    if code:
        raise typer.Exit(code)


def status(
    job: Annotated[str | None, typer.Argument(help="A job id from `kdorch submit`.")] = None,
    address: JobAddressOpt = "http://127.0.0.1:8265",
    storage: StorageOpt = None,
    storage_option: StorageOptionOpt = None,
) -> None:
    """A submitted run: job state, steps done/running/cached/failed, nodes used, the report.

    Without JOB, lists the kdorch jobs on the cluster."""
    from orchestrator.cli.jobs import list_jobs, show_job, view

    if job is None:
        list_jobs(out, address)
        return
    options = parse_storage_options(storage_option or [])
    show_job(out, view(address, job, storage, options))


def logs(
    job: Annotated[str, typer.Argument(help="A job id from `kdorch submit`.")],
    address: JobAddressOpt = "http://127.0.0.1:8265",
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
) -> None:
    """A submitted run's driver output, through the Ray Jobs API."""
    from orchestrator.cli.jobs import print_logs

    print_logs(out, address, job, follow)
