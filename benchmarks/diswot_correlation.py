"""Does the DisWOT score rank students like distillation does? Rank correlations on MNIST-5k.

One pipeline on the 5,000 real MNIST digits (the recipe's teacher: DomainBed's MNIST CNN, width
32, 12 epochs, its logits cached): a `student_search` in validation mode over every candidate
of a 36-candidate space (15 MLPs, 18 MNIST CNNs, 3 CIFAR ResNets under 3M MACs), each distilled
for real (Hinton KD, a short budget) through `distill`'s code; and a second search that only
scores 100 candidates of a larger space, in Ray tasks, for the timing.

Prints (markdown) Kendall tau and Spearman rho, with p-values, between distilled accuracy and:
the DisWOT score as the official correlation script computes it (teacher architecture at
N(0, 1) initialisation, both terms), each term alone (`terms: semantic`, `terms: relation`), the
same three with PyTorch's default initialisation (`init: default`), with the trained teacher
(`teacher_weights: trained`) and corrected (`correction: null_expectation`), and the naive
predictors parameter count and MACs. (Before issue 20 the default was `init: default` and the
table's "paper" rows were those; see benchmarks/README.md.) Then the time to score 100
candidates (in Ray tasks and in one process, one thread) next to the time of one distillation.

The variants re-score the very candidates that were distilled, on the same batch (the
component's own `search_scorer`), so only the score changes between rows of the table.

Run: ``python benchmarks/diswot_correlation.py [--epochs 3] [--storage DIR]`` (4.4 minutes
on the shared 2-core machine, each distillation on one thread; a second run reuses every step
from the store while the code is unchanged; ``--record RUN_ID`` reports on a finished run
without running anything).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from components.search.candidates import CandidateSpace
from components.search.choose import search_scorer
from components.search.correlation import rank_correlation
from components.search.parallel import ParallelScorer, score_specs
from orchestrator import Pipeline, run
from orchestrator.execution.context import StepContext
from orchestrator.storage.store import ArtifactStore
from schemas.engine.pipeline import Resources
from schemas.engine.run import RunRecord
from schemas.kd.artifacts import Dataset, LogitShards, ModelCheckpoint
from schemas.kd.components.student_search import StudentSearchConfig, StudentSearchInputs
from schemas.kd.models import ModelSpecValue

#: 36 candidates under the cap: the correlation is measured on all of them.
SPACE = {
    "mlp": {"hidden_width": [16, 32, 64, 128, 256], "depth": [1, 2, 3]},
    # BatchNorm (as in the figures of benchmarks/README.md, measured with it)
    "mnist_cnn": {
        "width": [4, 8, 12, 16],
        "depth": [2, 3, 4],
        "kernel_size": [3, 5],
        "norm": "batch",
    },
    "resnet_cifar": {"depth": [8, 14, 20], "width": [4]},
    "max_macs": 3_000_000,
}
#: 105 candidates without a cap: 100 of them are scored for the timing.
TIMING_SPACE = {
    "mlp": {
        "hidden_width": [8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512],
        "depth": [1, 2, 3, 4],
    },
    "mnist_cnn": {"width": [4, 6, 8, 12, 16, 24], "depth": [2, 3, 4, 5], "kernel_size": [3, 5]},
    "resnet_cifar": {"depth": [8, 14, 20], "width": [4, 8, 16]},
}
TIMING_CONFIG = {
    "space": TIMING_SPACE,
    "search": {"strategy": "random", "num_candidates": 100},
}
VARIANTS = {
    "official (init teacher, N(0,1) init)": {},
    "PyTorch default init": {"init": "default"},
    "trained teacher": {"teacher_weights": "trained"},
    "corrected (null_expectation)": {"correction": "null_expectation"},
}


def pipeline(epochs: int, candidates: int) -> Pipeline:
    p = Pipeline("diswot_correlation")
    data = p.add("data", "dataset", config={"source": "mnist5k", "seed": 0})
    teacher = p.add(
        "teacher",
        "train",
        inputs={"data": data.dataset},
        config={
            "model": {"arch": "mnist_cnn", "width": 32},
            "epochs": 12,
            "batch_size": 64,
            "optimizer": {"lr": 0.003},
            "select": "best",
        },
    )
    logits = p.add(
        "teacher_logits",
        "teacher_inference",
        inputs={"teacher": teacher.model, "data": data.dataset},
        config={"precision": "float16"},
    )
    inputs = {"data": data.dataset, "teacher": teacher.model, "logits": logits.logits}
    p.add(
        "search",
        "student_search",
        inputs=inputs,
        config=search_config(epochs, candidates),
        resources={"num_cpus": 1},  # one thread: two ran far slower on shared cores
    )
    p.add("timing", "student_search", inputs=inputs, config=TIMING_CONFIG)
    return p


def search_config(epochs: int, candidates: int) -> dict[str, Any]:
    return {
        "space": SPACE,
        "search": {"strategy": "random", "num_candidates": candidates},
        "validation": {
            "sample": candidates,
            "epochs": epochs,
            "optimizer": {"lr": 0.003},
            "losses": [{"type": "kd", "temperature": 4.0, "alpha": 0.9}],
        },
    }


def correlation_rows(
    store: ArtifactStore, record: Any, config: StudentSearchConfig, validation: dict[str, Any]
) -> list[tuple[str, float, float, float, float]]:
    """(predictor, tau, p, rho, p) for every score variant and term, then the naive ones."""
    inputs = StudentSearchInputs(
        data=Dataset.model_validate(record.step("data").outputs["dataset"]),
        teacher=ModelCheckpoint.model_validate(record.step("teacher").outputs["model"]),
        logits=LogitShards.model_validate(record.step("teacher_logits").outputs["logits"]),
    )
    ctx = StepContext(
        store=store,
        step_id="benchmark",
        component="student_search",
        key="0" * 64,
        run_id="benchmark",
        attempt="a",
        resources=Resources(),
    )
    rows = validation["candidates"]
    accuracy = [r["accuracy"] for r in rows]
    specs = [ModelSpecValue.model_validate(r["spec"]).root for r in rows]
    out = []
    for name, change in VARIANTS.items():
        score = config.score.model_copy(update=change)
        variant = config.model_copy(update={"score": score})
        scorer = search_scorer(ctx, variant, inputs.data, inputs.teacher)
        scores = [s.as_dict() for s in score_specs(scorer, specs)]
        for term, values in (
            ("both", [s["score"] for s in scores]),
            ("semantic", [-s["semantic"] for s in scores]),
            ("relation", [-s["relation"] for s in scores]),
        ):
            c = rank_correlation(values, accuracy)
            out.append((f"DisWOT {term}, {name}", *_fields(c)))
    for naive in ("parameters", "macs"):
        c = rank_correlation([float(r[naive]) for r in rows], accuracy)
        out.append((f"{naive} (naive)", *_fields(c)))
    return out


def _fields(c: Any) -> tuple[float, float, float, float]:
    return c.kendall_tau, c.kendall_p, c.spearman_rho, c.spearman_p


def in_process_seconds(store: ArtifactStore, record: Any) -> float:
    """Scoring the timing step's 100 candidates again here: one process, one thread."""
    config = StudentSearchConfig.model_validate(TIMING_CONFIG)
    data = Dataset.model_validate(record.step("data").outputs["dataset"])
    inputs = StudentSearchInputs(
        data=data, teacher=ModelCheckpoint.model_validate(record.step("teacher").outputs["model"])
    )
    ctx = StepContext(
        store=store,
        step_id="benchmark",
        component="student_search",
        key="0" * 64,
        run_id="benchmark",
        attempt="a",
        resources=Resources(),
    )
    space = CandidateSpace(
        config.space, input_shape=tuple(data.feature_shape), num_classes=data.num_classes
    )
    candidates = space.enumerate()[:100]
    started = time.perf_counter()
    scorer = search_scorer(ctx, config, inputs.data, inputs.teacher)
    ParallelScorer(scorer, use_ray=False)(candidates)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="distillation epochs per student")
    parser.add_argument("--candidates", type=int, default=36, help="candidates distilled")
    parser.add_argument("--storage", default=None, help="artifact store (default: a temp dir)")
    parser.add_argument(
        "--record",
        default=None,
        help="report on this finished run of the store (its id under runs/) instead of running "
        "the pipeline: the figures again without retraining after a code change",
    )
    args = parser.parse_args()
    storage = args.storage or tempfile.mkdtemp(prefix="kdorch-diswot-")
    started = time.perf_counter()
    if args.record:
        text = (Path(storage) / "runs" / args.record / "run.json").read_text()
        record: Any = RunRecord.model_validate_json(text)
    else:
        record = run(pipeline(args.epochs, args.candidates).spec, storage=storage)
    wall = time.perf_counter() - started
    if record.status.value != "succeeded":
        raise SystemExit(f"the pipeline failed: {[s.error for s in record.steps if s.error]}")
    store = ArtifactStore(storage)
    search = record.step("search").outputs
    validation = json.loads(
        (Path(storage) / search["validation"]["path"] / "validation.json").read_text()
    )
    accuracies = [r["accuracy"] for r in validation["candidates"]]
    print(f"## DisWOT on MNIST-5k: {len(accuracies)} candidates, {args.epochs} epochs of KD each\n")
    print(
        f"Distilled val accuracy: {min(accuracies):.3f} .. {max(accuracies):.3f} "
        f"(median {statistics.median(accuracies):.3f}); teacher val accuracy "
        f"{record.step('teacher').outputs['metrics']['val_accuracy']:.3f}.\n"
    )
    print("| predictor of distilled accuracy | Kendall tau (p) | Spearman rho (p) |")
    print("| --- | --- | --- |")
    config = StudentSearchConfig.model_validate(search_config(args.epochs, args.candidates))
    for name, tau, tau_p, rho, rho_p in correlation_rows(store, record, config, validation):
        print(f"| {name} | {tau:+.3f} ({tau_p:.2g}) | {rho:+.3f} ({rho_p:.2g}) |")
    timing = record.step("timing").outputs["metrics"]
    per_distill = search["metrics"]["validation_seconds_per_candidate"]
    print(
        f"\nScoring {int(timing['candidates'])} candidates: {timing['score_seconds']:.2f} s in "
        f"{int(timing['ray_tasks'])} Ray tasks (teacher probe included), "
        f"{in_process_seconds(store, record):.2f} s in one process on one thread; one "
        f"distillation ({args.epochs} epochs, 3,000 rows): {per_distill:.1f} s on average over "
        f"the {len(accuracies)} candidates.\n"
    )
    steps = ", ".join(f"{s.step_id} {s.seconds or 0:.0f} s" for s in record.steps)
    where = f"run {args.record}" if args.record else f"pipeline wall time {wall:.0f} s"
    print(f"Steps ({where}): {steps}; store: {storage}.")


if __name__ == "__main__":
    main()
