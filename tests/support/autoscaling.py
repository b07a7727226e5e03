"""Shared by the tests that submit pipelines to a real local autoscaling cluster
(infra/local_autoscaling.py): the cluster, a record of its node count, and the CLI."""

from __future__ import annotations

import runpy
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
