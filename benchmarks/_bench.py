"""Shared helpers of the benchmark scripts (not a benchmark itself).

Every script measures its baseline in the same run and prints ratios, repeats and takes
medians, and prints the machine and its load (`os.getloadavg()`) beside the figures: the
machines these run on are shared, and only ratios measured side by side mean much there.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Subprocesses and Ray workers import this checkout's packages (and the test suite's toy
# components), whatever else is installed: PYTHONPATH comes before an editable install.
if os.environ.get("PYTHONPATH", "").split(os.pathsep)[0] != str(ROOT):
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])
    )
#: Environment for Ray workers started by a benchmark (they inherit it): quiet.
BENCH_ENV = {"RAY_DATA_DISABLE_PROGRESS_BARS": "1"}


def load() -> str:
    """The machine's 1/5/15-minute load averages, as printed beside every figure."""
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def memory_gib() -> float:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def machine() -> str:
    return (
        f"{os.cpu_count()} CPUs ({cpu_model()}), {memory_gib():.0f} GiB, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def header(title: str) -> None:
    """What, when, where and under which load (the first lines of every benchmark's output)."""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"== {title}")
    print(f"   {when}; {machine()}")
    print(f"   command: python {' '.join(sys.argv)}")
    print(f"   {load()}", flush=True)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def fmt_s(seconds: float) -> str:
    return f"{seconds:.3f} s" if seconds < 10 else f"{seconds:.2f} s"


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


@contextlib.contextmanager
def ray_up(num_cpus: int = 4, *, plugins: str | None = None) -> Iterator[Any]:
    """An embedded local Ray in this process, tuned as kdorch's embedded one, no dashboard
    (another Ray may hold 8265), in a short temp dir of its own; always shut down."""
    import ray

    from orchestrator.execution.ray_session import EMBEDDED_ENV

    for name, value in {**EMBEDDED_ENV, **BENCH_ENV}.items():
        os.environ.setdefault(name, value)
    if plugins:
        os.environ["KDORCH_PLUGINS"] = plugins
    temp = tempfile.mkdtemp(prefix="kdb-", dir="/tmp")  # Ray's socket paths must stay short
    context = ray.init(
        address="local",
        num_cpus=num_cpus,
        include_dashboard=False,
        _temp_dir=temp,
        log_to_driver=False,
        namespace="kdorch-bench",
    )
    try:
        yield context
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


@contextlib.contextmanager
def scratch(prefix: str, keep: str | None = None) -> Iterator[Path]:
    """A fresh folder (removed afterwards), or ``keep`` (created, left in place)."""
    if keep:
        path = Path(keep).resolve()
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares ``y = a + b x``: returns (a, b)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
    return my - b * mx, b


def mnist_teacher(
    p: Any, *, width: int, epochs: int, max_rows: int | None = None
) -> tuple[Any, Any]:
    """The MNIST-5k dataset step (seed 0) and a DomainBed MNIST CNN teacher (`mnist_cnn` of
    ``width``, batch 64, Adam 3e-3) trained on it, added to the pipeline ``p``: (data, teacher)."""
    rows = {"max_rows": max_rows} if max_rows else {}
    data = p.add("data", "dataset", config={"source": "mnist5k", "seed": 0, **rows})
    teacher = p.add(
        "teacher",
        "train",
        inputs={"data": data.dataset},
        config={
            "model": {"arch": "mnist_cnn", "width": width},
            "epochs": epochs,
            "batch_size": 64,
            "optimizer": {"lr": 0.003},
        },
    )
    return data, teacher
