"""What the logit cache saves a `tune` sweep, and what one trial costs beyond its training.

The same sweep (SAMPLES trials of a small MLP student on MNIST-5k, every trial to the end: no
ASHA, CONCURRENT trials at a time) runs three times in one Ray session:

- **cached**: the teacher's logits come from `teacher_inference`'s shards, read once by the step
  and shared with every trial through the object store;
- **online**: the teacher checkpoint runs inside every trial, on every batch of every epoch;
- **cached, an actor per trial**: as cached, with ``reuse_actors: false`` (every trial starts a
  new process), to show what reusing trial actors saves.

The teacher is DomainBed's MNIST CNN (width 32), trained for one epoch (its accuracy does not
matter here, its cost does); its forward pass alone costs far more than the student's training
step (both are measured and printed). Printed per sweep: the run's and the sweep's wall time,
and per trial (medians) the time inside its epochs, its fixed overhead (wall time from its
actor's start to its end, as the sweep's driver sees it, minus its epochs) and the effective
overhead (sweep time x concurrency / trials, minus epochs: Tune's scheduling and actor start-up
included); then the cached-vs-online ratio.

Run: ``python benchmarks/tune_cache.py`` (about 2.5 minutes on 2 cores).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SAMPLES = 8
EPOCHS = 8
CONCURRENT = 2
STUDENT = {"arch": "mlp", "hidden": [64]}
TEACHER = {"arch": "mnist_cnn", "width": 32}


def sweep_config(reuse_actors: bool = True) -> dict[str, Any]:
    return {
        "distill": {
            "student": STUDENT,
            "epochs": EPOCHS,
            "batch_size": 64,
            "losses": [{"type": "kd", "temperature": 4.0, "alpha": 0.9}],
        },
        "space": {
            "losses[0].alpha": {"uniform": [0.1, 0.95]},
            "losses[0].temperature": {"choice": [1.0, 2.0, 4.0, 8.0]},
        },
        "search": "random",
        "scheduler": "none",  # every trial trains every epoch: the same work both ways
        "num_samples": SAMPLES,
        "max_concurrent_trials": CONCURRENT,
        "seed": 0,
        "reuse_actors": reuse_actors,
    }


#: name -> (teacher input, reuse_actors)
VARIANTS = {
    "cached": ("logits", True),
    "online": ("teachers", True),
    "cached, an actor per trial": ("logits", False),
}


def pipeline(storage: str, variant: str | None) -> Any:
    from orchestrator import Pipeline

    p = Pipeline("tune_cache", storage=storage)
    data = p.add("data", "dataset", config={"source": "mnist5k", "seed": 0})
    teacher = p.add(
        "teacher",
        "train",
        inputs={"data": data.dataset},
        config={"model": TEACHER, "epochs": 1, "batch_size": 64},
    )
    logits = p.add(
        "logits", "teacher_inference", inputs={"teacher": teacher.model, "data": data.dataset}
    )
    if variant is not None:
        port, reuse = VARIANTS[variant]
        source = [logits.logits] if port == "logits" else [teacher.model]
        p.add(
            "sweep", "tune", config=sweep_config(reuse), inputs={"data": data.dataset, port: source}
        )
    return p


def per_batch_costs() -> tuple[float, float, float]:
    """(teacher forward, student forward + backward) seconds per batch of 64, and the MACs ratio,
    measured in this process on one thread."""
    import torch

    from components.models.profile import estimate_flops
    from components.models.zoo import build_model
    from schemas.kd.models import MLPSpec, MnistCNNSpec

    torch.set_num_threads(1)
    shape = (1, 28, 28)
    teacher = build_model(MnistCNNSpec(num_classes=10, input_shape=shape, width=32)).eval()
    student = build_model(MLPSpec(num_classes=10, input_shape=shape, hidden=[64]))
    x, y = torch.randn(64, *shape), torch.randint(0, 10, (64,))

    def timed(fn: Any, repeats: int = 30) -> float:
        fn()
        started = time.perf_counter()
        for _ in range(repeats):
            fn()
        return (time.perf_counter() - started) / repeats

    def teacher_step() -> None:
        with torch.no_grad():
            teacher(x)

    def student_step() -> None:
        torch.nn.functional.cross_entropy(student(x), y).backward()

    macs = estimate_flops(teacher, list(shape)) / estimate_flops(student, list(shape))
    return timed(teacher_step), timed(student_step), macs


def measure(storage: str, variant: str) -> dict[str, float]:
    """Run one sweep (everything upstream is cached); its figures."""
    import pyarrow.parquet as pq

    from orchestrator import run

    started = time.perf_counter()
    record = run(pipeline(storage, variant).spec)
    wall = time.perf_counter() - started
    step = record.step("sweep")
    assert step.status.value == "ran", step.error
    metrics = step.outputs["metrics"]
    table = pq.read_table(Path(storage, step.outputs["results"]["path"], "results.parquet"))
    train = statistics.median(table.column("train_s").to_pylist())
    return {
        "run": wall,
        "sweep": metrics["sweep_seconds"],
        "train": train,
        "overhead": metrics["median_trial_overhead_s"],
        # everything a trial costs beyond its epochs, Tune's scheduling and actor starts included
        "effective": metrics["sweep_seconds"] * CONCURRENT / SAMPLES - train,
    }


def main() -> None:
    import ray

    from orchestrator import run
    from orchestrator.execution.ray_session import EMBEDDED_ENV

    for name, value in EMBEDDED_ENV.items():  # as `kdorch run` starts its local Ray
        os.environ.setdefault(name, value)
    teacher_s, student_s, macs = per_batch_costs()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="kdorch-bench-") as tmp:
        ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
        try:
            record = run(pipeline(tmp, None).spec)  # teacher and logits, outside the timings
            assert record.status.value == "succeeded", [s.error for s in record.steps]
            for variant in VARIANTS:
                results[variant] = measure(tmp, variant)
        finally:
            ray.shutdown()
    print(
        f"teacher forward {teacher_s * 1e3:.1f} ms per batch of 64, student training step "
        f"{student_s * 1e3:.2f} ms: {teacher_s / student_s:.0f}x the student's cost "
        f"({macs:.0f}x its MACs)"
    )
    print(
        f"the same sweep, {SAMPLES} trials x {EPOCHS} epochs, {CONCURRENT} at a time "
        "(MNIST-5k, MLP [64] student); per trial: medians"
    )
    print(
        f"  {'':28s} {'run':>7s} {'sweep':>7s} {'epochs':>7s} {'overhead':>9s} {'effective':>10s}"
    )
    for variant, row in results.items():
        print(
            f"  {variant:28s} {row['run']:6.1f}s {row['sweep']:6.1f}s {row['train']:6.2f}s "
            f"{row['overhead']:8.2f}s {row['effective']:9.2f}s"
        )
    cached, online = results["cached"], results["online"]
    print(
        f"cache speed-up: {online['sweep'] / cached['sweep']:.1f}x per sweep, "
        f"{online['train'] / cached['train']:.1f}x per trial's epochs"
    )
    print(
        "overhead: a trial's wall time (from its actor's start, as the sweep's driver sees it) "
        "minus its epochs; effective: sweep time x concurrency / trials minus epochs (Tune's "
        "scheduling and actor start-up included)"
    )


if __name__ == "__main__":
    main()
