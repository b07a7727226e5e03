"""`kdorch submit`: run a pipeline on a remote Ray cluster through the Ray Jobs API.

The project directory travels as the job's ``working_dir``; `orchestrator`, `components` and
`schemas` are importable from there, so the entrypoint is ``python -m orchestrator run ...`` and
the cluster's image only needs kdorch's dependencies.
"""

from __future__ import annotations

import secrets
import shlex
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from orchestrator.api import load
from orchestrator.cli.jobs import ENDPOINT_KEY, PIPELINE_KEY, STORAGE_KEY
from orchestrator.errors import ConfigError, KdorchError

WORKING_DIR_EXCLUDES = [
    ".venv/",
    ".git/",
    ".kdorch/",
    "**/__pycache__/",
    "*.egg-info/",
    ".pytest_cache/",
]


def build_entrypoint(
    pipeline: str,
    overrides: Sequence[str],
    profile: str | None,
    storage: str | None,
    run_id: str | None = None,
    track: str | None = None,
) -> str:
    parts = ["python", "-m", "orchestrator", "run", pipeline]
    if run_id:
        parts += ["--run-id", run_id]
    if track:
        parts += ["--track", track]
    for item in overrides:
        parts += ["--set", item]
    if profile:
        parts += ["--profile", profile]
    if storage:
        parts += ["--storage", storage]
    return shlex.join(parts)


def _check_tracking(block: Any, track: str | None, store_uri: str) -> None:
    """Refuse, before the job is sent, a tracking request the cluster could not honour: a bad
    URI, or the default SQLite store (a file in the artifact store) under an object store."""
    from orchestrator.tracking.settings import masked, requested

    settings = requested(block, track)
    if settings is None or settings.uri or "://" not in store_uri:
        return
    raise ConfigError(
        f"--track {masked(track or 'local')}: the default MLflow store is a SQLite file inside "
        f"the artifact store, but the job's store is {store_uri}. Give a tracking server the "
        "cluster can reach: --track http://HOST:5000 (docs/tracking.md)"
    )


def submit_with_retries(
    client: Any, console: Console | None = None, timeout: float = 300.0, **job: Any
) -> None:
    """Submit; a head that has just started answers "No available agent" for a while (a minute
    or more on busy cores): retry that, saying so once, and turn anything else into a message
    instead of a traceback."""
    deadline = time.monotonic() + timeout
    said = False
    while True:
        try:
            client.submit_job(**job)
            return
        except RuntimeError as e:
            if "No available agent" not in str(e) or time.monotonic() > deadline:
                raise KdorchError(f"the Ray Jobs API refused the job: {e}") from e
            if console is not None and not said:
                console.print(
                    f"the head's job agent is not ready yet; retrying for up to {timeout:.0f} s"
                )
                said = True
            time.sleep(1.0)


def submit_job(
    pipeline: Path,
    *,
    address: str,
    overrides: Sequence[str],
    profile: str | None,
    storage: str | None,
    wait: bool,
    console: Console,
    working_dir: Path | None = None,
    ship: bool = True,
    track: str | None = None,
) -> int:
    """Submit; with ``wait`` follow the logs and return 0 on success, 1 otherwise."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    root = (working_dir or Path.cwd()).resolve()
    try:
        relative = pipeline.resolve().relative_to(root)
    except ValueError:
        raise ConfigError(
            f"{pipeline} must be inside the working directory {root} that is shipped to the cluster"
        ) from None
    spec = load(pipeline, overrides, profile).spec
    if not (storage or spec.storage or "").startswith(("s3://", "gs://", "abfs://", "hdfs://")):
        console.print(
            "[yellow]warning:[/] the artifact store is a local path on the cluster's head node; "
            "use --storage s3://... to keep artifacts beyond the cluster"
        )
    _check_tracking(spec.tracking, track, storage or spec.storage or "")
    runtime_env: dict[str, Any] = (
        {"working_dir": str(root), "excludes": WORKING_DIR_EXCLUDES} if ship else {}
    )
    runtime_env.update({k: v for k, v in spec.ray.runtime_env.items() if k != "working_dir"})
    try:
        client = JobSubmissionClient(address)
    except Exception as e:
        raise KdorchError(f"cannot reach the Ray Jobs API at {address}: {e}") from e
    # The job's submission id is also the run's id: `kdorch status` finds its record by it.
    job_id = f"kdorch-{spec.name[:40]}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    entrypoint = build_entrypoint(
        str(relative), overrides, profile, storage, run_id=job_id, track=track
    )
    store_uri = storage or spec.storage or ""
    metadata = {PIPELINE_KEY: spec.name, STORAGE_KEY: store_uri}
    if spec.storage_options.endpoint_url:
        metadata[ENDPOINT_KEY] = spec.storage_options.endpoint_url
    submit_with_retries(
        client,
        console,
        entrypoint=entrypoint,
        runtime_env=runtime_env,
        metadata=metadata,
        submission_id=job_id,
    )
    console.print(f"submitted job [bold]{job_id}[/] to {address}: {entrypoint}")
    if not wait:
        console.print(
            f"follow it with:\n  kdorch status {job_id} --address {address}\n"
            f"  kdorch logs {job_id} --address {address} --follow"
        )
        return 0
    printed = 0
    while True:
        status = client.get_job_status(job_id)
        logs = client.get_job_logs(job_id)
        if len(logs) > printed:
            console.out(logs[printed:], end="", highlight=False)
            printed = len(logs)
        if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            console.print(f"job {job_id}: {status.value}")
            return 0 if status == JobStatus.SUCCEEDED else 1
        time.sleep(1.0)
