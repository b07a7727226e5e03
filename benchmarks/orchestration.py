"""What kdorch costs per step when the steps themselves cost nothing (issue 12, goal 3).

Pipelines of the test suite's toy components (`tests.support.toy_components`: each step reads
and writes a few numbers as a real artifact in the store), run with `orchestrator.run` into a
fresh local store:

- a chain: ``s0 -> s1 -> ... -> s{N-1}`` (every step waits for the previous one);
- a fan-out: one source, ``N - 2`` matrix instances of one step, one step gathering them.

at N = 50, 200 and 1,000 steps, under both executors: ``local`` (in this process, no Ray) and
``ray`` (each step a Ray task, on an embedded local Ray this script starts once and keeps up,
so Ray's own start-up is left out). Every ``toy_scale`` step logs one progress line
(`StepContext.log`); on Ray the same runs again (interleaved) with the progress channel off
(``ray no-progress``: the steps' lines go to the worker's log only: what carrying lines to the
driver costs) and as lines were carried before issue 21 (``ray per-line``: an actor call per
line, the sink's handle in every task, a drain after every finished step). The figure is the
run's wall time divided by N — everything a step costs: compile, cache look-up, dispatch, the
component's artifact write, sealing (hash + manifest), commit, index, events and the run
record. Flat means the cost per step does
not grow with N. Also: the sum of the steps' recorded ``seconds`` (their own time, which should
never exceed the wall time: recorded clocks start in the worker, not at submit).

For the in-process executor also: this process's CPU time per step, and the same runs again
(interleaved) with ``os.fsync`` disabled (the store flushes every artifact file, manifest and
commit to the disk: milliseconds each on a busy disk) and with the store on a tmpfs
(``/dev/shm``: no disk at all, so what is left is kdorch's own work per step).

Then validate and plan (no Ray) of a matrix of 100 / 1,000 / 10,000 steps (the pipelines of
`benchmarks/compile_scaling.py`): linear means the time per step stays flat.

Goals: <= 10 ms per step on an embedded Ray, <= 2 ms in-process, flat from 50 to 1,000;
validate/plan linear.

Run from the repository root: ``python benchmarks/orchestration.py`` (~10 minutes on 2 busy
cores; ``--executor ray --shape chain --repeats 3``: ~3 minutes); ``--smoke``: N = 20 and 50,
one repeat, no Ray (seconds).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import BENCH_ENV, ROOT, header, load, median, ray_up, verdict

PLUGINS = "tests.support.toy_components"


def chain_yaml(n: int) -> str:
    from compile_scaling import chain_yaml as chain

    return chain(n)


def fanout_yaml(n: int) -> str:
    from compile_scaling import matrix_yaml

    return matrix_yaml(n - 2)  # source + (n - 2) instances + gather = n steps


SHAPES: dict[str, Callable[[int], str]] = {"chain": chain_yaml, "fan-out": fanout_yaml}


#: A memory-backed folder for the "tmpfs" variant: the same runs without a disk.
TMPFS = "/dev/shm"


def one_run(path: Path, executor: str, where: str | None = None) -> tuple[float, float, float, int]:
    """(wall seconds, this process's CPU seconds, sum of the steps' recorded seconds, steps)
    of one run in a fresh store (in ``where``, else the system's temp folder)."""
    from orchestrator import run

    with tempfile.TemporaryDirectory(prefix="kdorch-bench-orch-", dir=where) as store:
        started, cpu = time.perf_counter(), time.process_time()
        record = run(path, storage=store, executor=executor, raise_on_failure=True)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    own = sum(float(s.seconds or 0.0) for s in record.steps)
    return wall, cpu, own, len(record.steps)


class PerLine:
    """A step's progress report as it was before issue 21: one actor call per line, the
    sink's handle in every task, a sink started for each run (the ``ray per-line`` what-if)."""

    def __init__(self, sink: Any):
        self.sink = sink

    def __call__(self, step_id: str, message: str) -> None:
        self.sink.push.remote("", step_id, [message])


@contextlib.contextmanager
def progress_channel(how: str) -> Iterator[None]:
    """What-ifs of the Ray backend's progress channel: ``off`` (steps get none: their lines
    reach the worker's log only) or ``per-line`` (as before issue 21: a line is an actor call,
    and the driver drains the sink after every finished step)."""
    from orchestrator.execution import ray_backend
    from orchestrator.execution.progress import sink_class

    backend = ray_backend.RayBackend

    def off(self: ray_backend.RayBackend, report: object) -> None:
        return None

    def per_line(self: ray_backend.RayBackend, report: Any) -> PerLine:
        self._report, self._sink, self._channel = report, sink_class().remote(), ""
        return PerLine(self._sink)

    real, poll = backend.progress_channel, ray_backend.PROGRESS_POLL_S
    channel = off if how == "off" else per_line
    backend.progress_channel = channel  # type: ignore[method-assign,assignment]
    ray_backend.PROGRESS_POLL_S = poll if how == "off" else 0.0  # a drain after every wait
    try:
        yield
    finally:
        backend.progress_channel = real  # type: ignore[method-assign]
        ray_backend.PROGRESS_POLL_S = poll


def what_if(variant: str) -> contextlib.AbstractContextManager[None]:
    if "no-fsync" in variant:
        return fsync_disabled()
    if "no-progress" in variant:
        return progress_channel("off")
    if "per-line" in variant:
        return progress_channel("per-line")
    return contextlib.nullcontext()


@contextlib.contextmanager
def fsync_disabled() -> Iterator[None]:
    """What-if: the store's writes without ``os.fsync`` (this process only)."""
    real = os.fsync
    os.fsync = lambda fd: None
    try:
        yield
    finally:
        os.fsync = real


def measure_runs(
    folder: Path, variants: list[str], sizes: list[int], repeats: int
) -> dict[tuple[str, str, int], dict[str, float]]:
    """Every (variant, size) once per round, ``repeats`` rounds: the machine's drift (other
    users, a slower host) then falls on every size and variant alike."""
    samples: dict[tuple[str, str, int], list[tuple[float, float, float]]] = {}
    executor = variants[0].split()[0]
    for shape, make in SHAPES.items():
        paths = {n: folder / f"{shape}_{n}.yaml" for n in sizes}
        for n, path in paths.items():
            path.write_text(make(n))
        one_run(paths[sizes[0]], executor)  # warm-up: imports, Ray workers
        for _ in range(repeats):
            for n in sizes:
                for variant in variants:
                    where = TMPFS if "tmpfs" in variant else None
                    with what_if(variant):
                        wall, cpu, own, steps = one_run(paths[n], executor, where)
                    assert steps == n, (steps, n)
                    samples.setdefault((variant, shape, n), []).append((wall, cpu, own))
        for variant in variants:
            for n in sizes:
                runs = samples[(variant, shape, n)]
                r = {k: median([x[i] for x in runs]) for i, k in enumerate(("wall", "cpu", "own"))}
                print(
                    f"   {variant:<16} {shape:<8} {n:>5} steps: run {r['wall']:7.2f} s "
                    f"({1000 * r['wall'] / n:6.2f} ms/step; driver CPU "
                    f"{1000 * r['cpu'] / n:6.2f} ms/step), steps' own seconds "
                    f"{r['own']:6.2f} s  ({load()})",
                    flush=True,
                )
    return {
        key: {k: median([x[i] for x in runs]) for i, k in enumerate(("wall", "cpu", "own"))}
        for key, runs in samples.items()
    }


def measure_compile(folder: Path, sizes: list[int], repeats: int) -> dict[int, dict[str, float]]:
    from compile_scaling import matrix_yaml

    from orchestrator import plan, validate

    out: dict[int, dict[str, float]] = {}
    store = str(folder / "empty-store")
    for n in sizes:
        path = folder / f"matrix_{n}.yaml"
        path.write_text(matrix_yaml(n - 2))
        steps = len(validate(path).nodes)  # warm-up (and the step count)
        v, p = [], []
        for _ in range(repeats if n < 10_000 else max(1, min(repeats, 2))):
            started = time.perf_counter()
            validate(path)
            v.append(time.perf_counter() - started)
            started = time.perf_counter()
            plan(path, storage=store)
            p.append(time.perf_counter() - started)
        out[n] = {"steps": steps, "validate": median(v), "plan": median(p)}
        print(
            f"   matrix {steps:>6} steps: validate {median(v):7.3f} s, plan {median(p):7.3f} s"
            f"  ({load()})",
            flush=True,
        )
    return out


def report(
    runs: dict[tuple[str, str, int], dict[str, float]],
    compiled: dict[int, dict[str, float]],
    sizes: list[int],
    repeats: int,
) -> None:
    goals = {"local": 2.0, "ray": 10.0}
    print(f"\nper step (ms) = run wall time / steps, median of {repeats}; {load()}")
    print(f"{'executor':<17}{'shape':<9}" + "".join(f"{n:>9}" for n in sizes) + "   goal")
    for executor in dict.fromkeys(k[0] for k in runs):
        goal = goals[executor.split()[0]]
        for shape in SHAPES:
            per = [1000 * runs[(executor, shape, n)]["wall"] / n for n in sizes]
            worst = max(per)
            flat = per[-1] <= 1.5 * per[0]
            print(
                f"{executor:<17}{shape:<9}"
                + "".join(f"{v:>9.2f}" for v in per)
                + f"   <= {goal:g} ms: {verdict(worst <= goal)}; "
                f"flat (last <= 1.5x first): {verdict(flat)}"
            )
    print("driver CPU per step (ms; in-process: everything but waiting for the disk)")
    for executor in dict.fromkeys(k[0] for k in runs):
        for shape in SHAPES:
            per = [1000 * runs[(executor, shape, n)]["cpu"] / n for n in sizes]
            print(f"{executor:<17}{shape:<9}" + "".join(f"{v:>9.2f}" for v in per))
    # A step's recorded seconds are its own time: in-process (one step at a time) they add up
    # to less than the run; on Ray steps overlap, but none can take longer than the run.
    own_ok = all(
        r["own"] <= r["wall"] + 1e-3 for (e, _, _), r in runs.items() if e.startswith("local")
    )
    print(f"in-process: the steps' recorded seconds add up to less than the run: {verdict(own_ok)}")
    print("\nvalidate / plan of a matrix (us per step)")
    for r in compiled.values():
        print(
            f"   {int(r['steps']):>6} steps: validate {1e6 * r['validate'] / r['steps']:7.1f}, "
            f"plan {1e6 * r['plan'] / r['steps']:7.1f}"
        )
    first, last = compiled[min(compiled)], compiled[max(compiled)]
    for what in ("validate", "plan"):
        growth = (last[what] / last["steps"]) / (first[what] / first["steps"])
        print(
            f"   {what}: per-step time at the largest / at the smallest size {growth:.2f} "
            f"(linear: about 1; <= 1.5: {verdict(growth <= 1.5)})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="N = 20, 50; local only; 1 repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--executor", choices=["local", "ray", "both"], default="both")
    parser.add_argument("--shape", choices=[*SHAPES, "both"], default="both")
    args = parser.parse_args()
    for shape in [s for s in SHAPES if args.shape not in (s, "both")]:
        del SHAPES[shape]  # measured and reported: the shapes asked for
    os.chdir(ROOT)
    os.environ.update(BENCH_ENV)
    os.environ["KDORCH_PLUGINS"] = PLUGINS
    import tests.support.toy_components  # noqa: F401  (registers the toy components here)

    if args.smoke:
        sizes, compile_sizes, repeats, executors = [20, 50], [100, 1_000], 1, ["local"]
    else:
        sizes, compile_sizes, repeats = [50, 200, 1_000], [100, 1_000, 10_000], args.repeats
        executors = ["local", "ray"] if args.executor == "both" else [args.executor]
    header("per-step orchestration cost (toy steps) and validate/plan scaling")
    with tempfile.TemporaryDirectory(prefix="kdorch-bench-orch-") as tmp:
        folder = Path(tmp)
        runs: dict[tuple[str, str, int], dict[str, float]] = {}
        if "local" in executors:
            # What-ifs (this process only): "no-fsync", the store's writes without flushing them
            # to the disk; "tmpfs", the store in memory: kdorch's own per-step work, no disk.
            variants = ["local", "local no-fsync"]
            if os.access(TMPFS, os.W_OK):
                variants.append("local tmpfs")
            runs.update(measure_runs(folder, variants, sizes, repeats))
        if "ray" in executors:
            with ray_up(num_cpus=4, plugins=PLUGINS):
                variants = ["ray", "ray no-progress", "ray per-line"]
                runs.update(measure_runs(folder, variants, sizes, repeats))
        compiled = measure_compile(folder, compile_sizes, repeats)
    report(runs, compiled, sizes, repeats)


if __name__ == "__main__":
    main()
