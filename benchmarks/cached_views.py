"""Distilling from a cache of augmented views against running the teacher online on the same
views (issue 17): what one epoch costs each way, side by side in one run.

Set-up through kdorch (`orchestrator.run`, steps in this process: ``executor="local"``): the
MNIST-5k split (3,000 train / 1,000 val / 1,000 test), a CNN teacher (`mnist_cnn`, the DomainBed
MNIST CNN, width 32, 2 epochs), and its fp16 logits over ``--views`` augmented views per row
(`teacher_inference`: random-resized crop, scale 0.5-1, no flip: digits do not mirror). Then
three `distill` steps of the same student (MLP ``hidden: [256]``, Hinton KD T = 4, alpha 0.9,
batch 64, ``--epochs`` epochs, one torch thread as the step has), each row drawing one of its
views per epoch:

- *cached views*: the cache above; each batch regenerates its rows' drawn views and reads the
  teacher's logits of those views;
- *online, same views*: `teachers:` instead of `logits:`, with the cache's view settings: the
  teacher runs on the very same view tensors every batch;
- *cached, clean rows*: a cache without views (reference: what regenerating views costs).

Per-epoch time is the median over epochs of each step's own ``seconds`` (train + eval pass);
the cache's one-off cost is its `teacher_inference` step (in batches of 64 rows, as the online
teacher runs: at the default 512 this CNN takes 1.5-2.5x longer per row on one CPU thread, its
activations outgrowing the caches). Each distill step runs ``--repeats`` times. The script shows
that the two view paths train on the same views: the students' first-epoch validation
accuracies differ only by the fp16 rounding of the cached logits.

Run: ``python benchmarks/cached_views.py`` (~4 minutes on 2 busy cores);
``python benchmarks/cached_views.py --smoke`` (600 rows, 2 epochs, 1 run: under a minute).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import fmt_s, header, load, mnist_teacher, scratch

AUGMENT = {"crop": {"scale": [0.5, 1.0]}, "flip": False}
KD = {"type": "kd", "temperature": 4.0, "alpha": 0.9}
STUDENT = {"arch": "mlp", "hidden": [256]}


def build_spec(views: int, epochs: int, max_rows: int | None, teacher_epochs: int) -> Any:
    from orchestrator import Pipeline

    p = Pipeline("bench_cached_views")
    data, teacher = mnist_teacher(p, width=32, epochs=teacher_epochs, max_rows=max_rows)
    view_settings = {"views": views, "augment": AUGMENT, "view_seed": 0}
    cache = p.add(
        "views_cache",
        "teacher_inference",
        inputs={"teacher": teacher.model, "data": data.dataset},
        config={**view_settings, "batch_size": 64},
    )
    clean = p.add(
        "clean_cache",
        "teacher_inference",
        inputs={"teacher": teacher.model, "data": data.dataset},
        config={"batch_size": 64},
    )
    student = {"student": STUDENT, "epochs": epochs, "batch_size": 64, "seed": 0, "losses": [KD]}
    p.add(
        "cached", "distill", inputs={"data": data.dataset, "logits": cache.logits}, config=student
    )
    p.add(
        "online",
        "distill",
        inputs={"data": data.dataset, "teachers": [teacher.model]},
        config={**student, **view_settings},
    )
    p.add("clean", "distill", inputs={"data": data.dataset, "logits": clean.logits}, config=student)
    return p.spec


DISTILLS = ("cached", "online", "clean")


def epoch_seconds(record: Any, step: str) -> list[float]:
    return [float(h["seconds"]) for h in record.step(step).outputs["history"]]


def measure(spec: Any, store: str, repeats: int) -> tuple[Any, dict[str, float]]:
    """The first run (teacher and caches included), then the three distill steps again
    ``repeats - 1`` times (``cache=recompute``): per step, the median epoch over all runs."""
    from orchestrator import run

    record = run(spec, storage=store, executor="local", raise_on_failure=True)
    seconds = {step: epoch_seconds(record, step) for step in DISTILLS}
    again = [f"steps.{step}.cache=recompute" for step in DISTILLS]
    for _ in range(repeats - 1):
        rerun = run(spec, storage=store, executor="local", overrides=again, raise_on_failure=True)
        for step in DISTILLS:
            seconds[step] += epoch_seconds(rerun, step)
    return record, {step: float(statistics.median(s)) for step, s in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="600 rows, 2 epochs, 1 repeat")
    parser.add_argument("--views", type=int, default=4, help="augmented views per row")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="runs of the three distills")
    parser.add_argument("--store", help="keep the artifact store here (default: a temp dir)")
    args = parser.parse_args()
    header("cached augmented views vs the teacher online on the same views")
    epochs, repeats = (2, 1) if args.smoke else (args.epochs, args.repeats)
    spec = build_spec(args.views, epochs, 600 if args.smoke else None, 1 if args.smoke else 2)
    with scratch("kdorch-bench-views-", args.store) as folder:
        started = time.perf_counter()
        record, per_epoch = measure(spec, str(folder / "store"), repeats)
        total = time.perf_counter() - started
    cached, online, clean = (per_epoch[s] for s in DISTILLS)
    cache_s = record.step("views_cache").seconds or 0.0
    clean_cache_s = record.step("clean_cache").seconds or 0.0
    rows = record.step("data").outputs["dataset"]["splits"]["train"]
    accuracy = {
        s: record.step(s).outputs["history"][0]["val_accuracy"] for s in ("cached", "online")
    }
    print(f"   {rows} training rows, {args.views} views per row, {epochs} epochs x {repeats} runs")
    print(f"   per epoch, cached views:        {fmt_s(cached)}")
    print(f"   per epoch, online, same views:  {fmt_s(online)}  ({online / cached:.2f}x cached)")
    print(f"   per epoch, cached, clean rows:  {fmt_s(clean)}  (views cost {cached / clean:.2f}x)")
    print(f"   the views cache, once:          {fmt_s(cache_s)}", end="")
    saved = online - cached
    print(f"  (repaid after {cache_s / saved:.1f} epochs)" if saved > 0 else "")
    print(f"   the clean cache, once:          {fmt_s(clean_cache_s)}  (every split's rows)")
    print(
        f"   first-epoch val accuracy, cached / online: {accuracy['cached']:.4f} / "
        f"{accuracy['online']:.4f} (the same views; only the cache's fp16 rounding differs)"
    )
    print(f"   whole run {fmt_s(total)}; {load()}")


if __name__ == "__main__":
    main()
