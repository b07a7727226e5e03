"""Operating submitted runs: `kdorch status [JOB]` and `kdorch logs JOB [--follow]`.

`kdorch submit` gives the Ray job a submission id that is also the run's id
(`python -m orchestrator run --run-id ID`) and records the store in the job's metadata, so the
job's state comes from the Ray Jobs API and its steps from the run record in the store — the
same `run.json` a local run writes. Every call names the cluster's address explicitly.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from orchestrator.errors import ArtifactError, ConfigError, KdorchError, did_you_mean
from orchestrator.storage.runs import INTERRUPTED, step_counts
from orchestrator.storage.store import ArtifactStore
from schemas.engine.run import RunRecord
from schemas.engine.storage import StorageOptions

STORAGE_KEY = "kdorch_storage"
PIPELINE_KEY = "kdorch_pipeline"
ENDPOINT_KEY = "kdorch_endpoint_url"


def client(address: str) -> Any:
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except Exception as e:
        raise ConfigError(
            f"cannot reach the Ray Jobs API at {address}: {e} (give the dashboard address, "
            "e.g. http://HEAD:8265)"
        ) from e


@dataclass
class JobView:
    job_id: str
    status: str
    pipeline: str
    storage: str
    message: str
    record: RunRecord | None


def job_store(
    info: Any, storage: str | None, options: StorageOptions | None
) -> ArtifactStore | None:
    """The job's store: --storage if given, else the one the submit recorded (its endpoint too;
    credentials come from this machine's environment)."""
    metadata = getattr(info, "metadata", None) or {}
    root = storage or metadata.get(STORAGE_KEY)
    if not root:
        return None
    if options is None and metadata.get(ENDPOINT_KEY):
        options = StorageOptions(endpoint_url=metadata[ENDPOINT_KEY])
    return ArtifactStore(root, options)


def job_info(jobs: Any, address: str, job_id: str) -> Any:
    """The Jobs API's record of ``job_id``; a `ConfigError` (exit 2) naming the cluster and
    the close job ids when it holds no such job."""
    try:
        return jobs.get_job_info(job_id)
    except Exception as e:  # the Jobs API says "not found" as an error of any type
        try:
            known = [j.submission_id or j.job_id for j in jobs.list_jobs()]
        except Exception:
            raise KdorchError(f"cannot ask {address} about job '{job_id}': {e}") from e
        if job_id in known:  # it exists: the lookup failed for another reason
            raise KdorchError(f"cannot read job '{job_id}' at {address}: {e}") from e
        hint = did_you_mean(job_id, [k for k in known if k]) or (
            f"`kdorch status --address {address}` lists the kdorch jobs there"
        )
        raise ConfigError(f"no job '{job_id}' at {address}; {hint}") from None


def view(
    address: str,
    job_id: str,
    storage: str | None = None,
    options: StorageOptions | None = None,
) -> JobView:
    info = job_info(client(address), address, job_id)
    metadata = info.metadata or {}
    store = job_store(info, storage, options)
    record = None
    if store is not None:
        try:
            record = store.read_run(job_id)
        except ArtifactError:
            record = None  # not started yet, or submitted without a run id
    return JobView(
        job_id=job_id,
        status=str(getattr(info.status, "value", info.status)),
        pipeline=metadata.get(PIPELINE_KEY, "?"),
        storage=store.root if store else "?",
        message=info.message or "",
        record=record,
    )


def show_job(console: Console, job: JobView, store: ArtifactStore | None = None) -> None:
    console.print(f"job [bold]{job.job_id}[/] ({job.pipeline}): {job.status}")
    if job.message:
        console.print(f"  {job.message}")
    record = job.record
    if record is None:
        console.print(f"  no run record yet in {job.storage}")
        return
    counts = step_counts(record)
    kinds = ("ran", "cached", "running", "failed", INTERRUPTED, "skipped")
    console.print(
        "  steps: "
        + ", ".join(f"{counts[k]} {k}" for k in kinds if counts[k] or k != INTERRUPTED)
        + f" of {len(record.steps)}"
    )
    nodes = sorted({s.node for s in record.steps if s.node})
    console.print(
        f"  nodes used: {len(nodes)}" + (f" ({', '.join(n[:12] for n in nodes)})" if nodes else "")
    )
    table = Table()
    for column in ("step", "status", "seconds", "node"):
        table.add_column(column)
    for step in record.steps:
        seconds = f"{step.seconds:.1f}" if step.seconds is not None else ""
        table.add_row(step.step_id, step.status.value, seconds, (step.node or "")[:12])
    console.print(table)
    for step in record.steps:
        report = step.outputs.get("report") if isinstance(step.outputs, dict) else None
        if isinstance(report, dict) and "path" in report:
            console.print(f"  report: {job.storage}/{report['path']}/report.md")


def list_jobs(console: Console, address: str) -> None:
    """One line per kdorch job (whole ids, to copy into `kdorch status` / `kdorch logs`)."""
    jobs = client(address).list_jobs()
    console.print(f"kdorch jobs at {address}:")
    for info in sorted(jobs, key=lambda j: j.start_time or 0):
        metadata = info.metadata or {}
        if PIPELINE_KEY not in metadata:
            continue
        status = str(getattr(info.status, "value", info.status))
        console.print(
            f"  {info.submission_id or info.job_id}  {metadata.get(PIPELINE_KEY, '?')}  "
            f"{status}  {metadata.get(STORAGE_KEY, '')}",
            highlight=False,
            soft_wrap=True,
        )


def print_logs(console: Console, address: str, job_id: str, follow: bool) -> None:
    jobs = client(address)
    job_info(jobs, address, job_id)  # an unknown job is one clear line, not a traceback
    if not follow:
        console.out(jobs.get_job_logs(job_id), end="", highlight=False)
        return

    async def tail() -> None:
        async for lines in jobs.tail_job_logs(job_id):
            console.out(lines, end="", highlight=False)

    asyncio.run(tail())


def wait_for(address: str, job_id: str, timeout: float = 600.0) -> str:
    """Block until the job ends; its final status."""
    from ray.job_submission import JobStatus

    jobs = client(address)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = jobs.get_job_status(job_id)
        if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            return str(status.value)
        time.sleep(0.5)
    raise KdorchError(f"job {job_id} did not finish within {timeout:.0f} s")
