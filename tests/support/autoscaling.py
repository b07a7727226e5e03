"""Shared by the tests that submit pipelines to a real local autoscaling cluster
(infra/local_autoscaling.py): the cluster, a record of its node count, the CLI, and a pipeline
submitted to the cluster with its store on the local S3 server."""

from __future__ import annotations

import json
import re
import runpy
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
LOCAL = runpy.run_path(str(ROOT / "infra" / "local_autoscaling.py"))


@contextmanager
def local_cluster(**settings: Any) -> Iterator[Any]:
    """A started cluster (``LOCAL["start"]``'s settings); stopped, and checked that none of its
    processes are left."""
    local = LOCAL["start"](**settings)
    try:
        yield local
    finally:
        local.stop()
    assert not LOCAL["our_pids"](local.temp_dir), "the cluster left processes behind"


@contextmanager
def node_counts(cluster: Any) -> Iterator[list[tuple[float, int]]]:
    """(seconds, alive nodes) once a second while the block runs; printed at the end."""
    counts: list[tuple[float, int]] = []
    done = threading.Event()

    def watch() -> None:
        start = time.monotonic()
        while not done.is_set():
            counts.append((round(time.monotonic() - start, 1), len(cluster.nodes())))
            time.sleep(1.0)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield counts
    finally:
        done.set()
        watcher.join(timeout=5)
        print("alive nodes over time (s, nodes):", counts)


def kdorch(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a subprocess, from the project root."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )


@dataclass
class Submission:
    """A pipeline submitted to a local cluster, its store in a folder of the S3 server."""

    cluster: Any
    pipeline: Path  # inside the project: `kdorch submit` names it from the project root
    prefix: str  # bucket/folder of the store
    storage_options: dict[str, Any]
    counts: list[tuple[float, int]]  # the cluster's node count while the block ran
    job: str = ""

    def submit(self) -> str:
        """`kdorch submit`, code not shipped (the fake nodes share one temp dir, where two could
        unpack a working_dir at once); the job id, once the job succeeded."""
        done = kdorch(
            "submit",
            str(self.pipeline.relative_to(ROOT)),
            "--address",
            self.cluster.dashboard_url,
            "--storage",
            f"s3://{self.prefix}",
            "--no-ship",
        )
        assert done.returncode == 0, done.stderr[-4000:]
        job = re.search(r"submitted job (\S+)", done.stderr)
        assert job, done.stderr
        return job.group(1)

    def record(self) -> dict[str, Any]:
        """The run record of the first job, read from the S3 server."""
        import s3fs

        fs = s3fs.S3FileSystem(**self.storage_options)
        record: dict[str, Any] = json.loads(fs.cat_file(f"{self.prefix}/runs/{self.job}/run.json"))
        return record


@contextmanager
def submitted(cluster: Any, s3_server: dict, name: str, template: str) -> Iterator[Submission]:
    """``template`` (its ``{endpoint}`` the S3 server's) as tests/resources/<name>.yaml, submitted
    to ``cluster`` with the store s3://BUCKET/<name>, the cluster's node count recorded until
    the block ends; the file is removed afterwards."""
    pipeline = ROOT / "tests" / "resources" / f"{name}.yaml"
    pipeline.write_text(template.format(endpoint=s3_server["endpoint"]))
    prefix = f"{s3_server['bucket']}/{name}"
    try:
        with node_counts(cluster) as counts:
            run = Submission(cluster, pipeline, prefix, s3_server["storage_options"], counts)
            run.job = run.submit()
            yield run
    finally:
        pipeline.unlink(missing_ok=True)
