"""DisWOT where its claim applies: one family, one size band, a clean teacher, a noise ceiling.

The paper's claim (Kendall tau ~0.47 on CIFAR-100) is for students of one family and similar
size. This benchmark measures the score in that setting, on data small enough for 2 CPU cores:

- data: scikit-learn's 8x8 digits (1,797 rows; split 50 % train / 50 % val, so accuracy is
  read on ~900 rows, one row = 0.11 points). MNIST-5k would take ~30x longer per run (12x the
  pixels, 3x the rows) and CIFAR is not available offline.
- teacher: a CIFAR ResNet (depth 14, width 16; conv -> BatchNorm -> ReLU, no ReLU before a
  GroupNorm), trained 15 epochs, its logits cached.
- candidates: every DomainBed MNIST CNN (BatchNorm) of width 2..16, depth 2..6, kernel 3 or 5
  whose parameter count lies in [2,000, 6,000] (a 3x band): 33 candidates (2,134-5,898). Small
  on purpose: a first try with the band [8,000, 24,000] reached 0.98-0.99 val accuracy for
  every candidate after 20 epochs, where nothing can be ranked.
- ground truth: each candidate distilled for ``--epochs`` (default 20) epochs with Hinton KD
  (T = 4, alpha = 0.9, Adam 3e-3, batch 64) through `distill`'s code, once per training seed
  (``--seeds``, default 2); accuracy = last epoch's val accuracy. The rank correlation between
  the seeds' accuracies is the noise ceiling: no predictor can be expected to beat it.
- predictors: the DisWOT score as the official correlation script computes it (N(0, 1)
  initialisation of teacher and candidate, both terms added), the corrected score
  (``correction: null_expectation``), parameter count and MACs; Kendall tau and Spearman rho
  against the seed-mean accuracy, and the partial tau of each score given parameter count.

Stages: the trained accuracies are kept in ``<storage>/diswot_fair.json`` as they come (one
entry per candidate, seed and epoch count), so a run can be stopped and resumed, and more
seeds or candidates added later. ``--smoke`` is a quick check (4 candidates, 2 epochs, 2
seeds; a few minutes, the teacher's training included).

Run: ``python benchmarks/diswot_fair.py --storage /tmp/diswot-fair [--candidates 33]
[--epochs 20] [--seeds 2] [--report]`` (``--report``: tables from what is there, no training).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from components.search.candidates import Candidate, CandidateSpace
from components.search.choose import search_scorer
from components.search.correlation import rank_correlation
from components.search.parallel import score_specs
from orchestrator import Pipeline, run
from orchestrator.execution.context import StepContext
from orchestrator.storage.store import ArtifactStore
from schemas.engine.pipeline import Resources
from schemas.kd.artifacts import Dataset, LogitShards, ModelCheckpoint
from schemas.kd.components.distill import DistillConfig
from schemas.kd.components.student_search import StudentSearchConfig

BAND = (2_000, 6_000)
SPACE: dict[str, Any] = {
    "mnist_cnn": {
        "width": list(range(2, 17)),
        "depth": [2, 3, 4, 5, 6],
        "kernel_size": [3, 5],
        "norm": "batch",
    },
    "max_parameters": BAND[1],
}
TEACHER = {"arch": "resnet_cifar", "depth": 14, "width": 16}
DATA = {"source": "digits", "seed": 0, "splits": {"train": 0.5, "val": 0.5}}
LOSSES = [{"type": "kd", "temperature": 4.0, "alpha": 0.9}]
#: The score variants compared (``score:`` settings of `student_search`).
SCORES = {
    "DisWOT (official: N(0,1) init, both terms)": {"init": "gaussian", "terms": "both"},
    "DisWOT semantic term alone": {"init": "gaussian", "terms": "semantic"},
    "DisWOT relation term alone": {"init": "gaussian", "terms": "relation"},
    "corrected (null_expectation)": {
        "init": "gaussian",
        "terms": "both",
        "correction": "null_expectation",
    },
    "DisWOT, PyTorch default init": {"init": "default", "terms": "both"},
}


def pipeline() -> Pipeline:
    p = Pipeline("diswot_fair")
    data = p.add("data", "dataset", config=DATA)
    teacher = p.add(
        "teacher",
        "train",
        inputs={"data": data.dataset},
        config={
            "model": TEACHER,
            "epochs": 15,
            "batch_size": 64,
            "optimizer": {"lr": 0.003},
            "select": "best",
        },
    )
    p.add("logits", "teacher_inference", inputs={"teacher": teacher.model, "data": data.dataset})
    return p


def candidates(data: Dataset) -> list[Candidate]:
    space = CandidateSpace(
        StudentSearchConfig.model_validate({"space": SPACE}).space,
        input_shape=tuple(data.feature_shape),
        num_classes=data.num_classes,
    )
    inside = [c for c in space.enumerate() if c.parameters >= BAND[0]]
    return sorted(inside, key=lambda c: (c.parameters, c.key))


def context(store: ArtifactStore, name: str) -> StepContext:
    return StepContext(
        store=store,
        step_id=name,
        component="distill",
        key=("f" * 48 + name.encode().hex())[-64:],
        run_id="diswot_fair",
        attempt="a",
        resources=Resources(num_cpus=1),  # one thread: 2 threads on shared cores ran 16x slower
    )


def distil_all(
    store: ArtifactStore,
    record: Any,
    chosen: list[Candidate],
    seeds: list[int],
    epochs: int,
    results: Path,
) -> dict[str, Any]:
    """Distil every (candidate, seed) not yet in ``results``; saved after each one."""
    from components.training.distillation import distill_student

    done: dict[str, Any] = json.loads(results.read_text()) if results.exists() else {}
    data = Dataset.model_validate(record.step("data").outputs["dataset"])
    logits = LogitShards.model_validate(record.step("logits").outputs["logits"])
    for seed in seeds:
        for i, candidate in enumerate(chosen):
            entry = f"{candidate.key}|seed={seed}|epochs={epochs}"
            if entry in done:
                continue
            config = DistillConfig.model_validate(
                {
                    "student": candidate.spec.model_dump(mode="json"),
                    "epochs": epochs,
                    "batch_size": 64,
                    "optimizer": {"lr": 0.003},
                    "seed": seed,
                    "losses": LOSSES,
                }
            )
            started = time.perf_counter()
            fit = distill_student(
                context(store, f"fair-{seed}-{epochs}-{i}"),
                config,
                candidate.spec,
                data,
                logits=[logits],
                resume="fair-" + hashlib.sha256(entry.encode()).hexdigest()[:16],
            )
            done[entry] = {
                "accuracy": float(fit.metrics["val_accuracy"]),
                "seconds": time.perf_counter() - started,
            }
            results.write_text(json.dumps(done, indent=1, sort_keys=True))
            print(
                f"seed {seed} {i + 1}/{len(chosen)} {candidate.key}: "
                f"{done[entry]['accuracy']:.4f} ({done[entry]['seconds']:.0f} s)",
                flush=True,
            )
    return done


def partial_tau(xy: float, xz: float, yz: float) -> float:
    """Kendall's partial tau of x and y given z (Kendall 1942)."""
    return (xy - xz * yz) / math.sqrt((1 - xz**2) * (1 - yz**2))


def scores_of(
    store: ArtifactStore,
    record: Any,
    chosen: list[Candidate],
    change: dict[str, Any],
    seed: int = 0,
) -> list[float]:
    """Scores of the candidates with ``score:`` settings ``change`` and ``search.seed``
    (the batch and every network's weights)."""
    data = Dataset.model_validate(record.step("data").outputs["dataset"])
    teacher = ModelCheckpoint.model_validate(record.step("teacher").outputs["model"])
    config = StudentSearchConfig.model_validate(
        {"space": SPACE, "score": change, "search": {"seed": seed}}
    )
    scorer = search_scorer(context(store, "score"), config, data, teacher)
    return [s.score for s in score_specs(scorer, [c.spec for c in chosen])]


def report(
    store: ArtifactStore,
    record: Any,
    chosen: list[Candidate],
    seeds: list[int],
    epochs: int,
    done: dict[str, Any],
) -> None:
    per_seed = {
        s: [done.get(f"{c.key}|seed={s}|epochs={epochs}", {}).get("accuracy") for c in chosen]
        for s in seeds
    }
    complete = [i for i in range(len(chosen)) if all(per_seed[s][i] is not None for s in seeds)]
    if len(complete) < 3:
        raise SystemExit(f"only {len(complete)} candidates have every seed: nothing to report")
    chosen = [chosen[i] for i in complete]
    acc = [statistics.mean(per_seed[s][i] for s in seeds) for i in complete]
    params = [float(c.parameters) for c in chosen]
    print(
        f"## DisWOT, one family: {len(chosen)} MNIST CNNs of {min(params):,.0f}-{max(params):,.0f}"
        f" parameters, {epochs} epochs of KD, {len(seeds)} seed(s)\n"
    )
    print(
        f"Seed-mean val accuracy {min(acc):.4f} .. {max(acc):.4f} (median "
        f"{statistics.median(acc):.4f}); teacher val accuracy "
        f"{record.step('teacher').outputs['metrics']['val_accuracy']:.4f}.\n"
    )
    pairs = [(a, b) for i, a in enumerate(seeds) for b in seeds[i + 1 :]]
    if pairs:
        ceilings = {
            pair: rank_correlation(*([per_seed[s][i] for i in complete] for s in pair))
            for pair in pairs
        }
        listed = "; ".join(
            f"seeds {a} vs {b}: tau {c.kendall_tau:+.3f} (p {c.kendall_p:.2g}), "
            f"rho {c.spearman_rho:+.3f}"
            for (a, b), c in ceilings.items()
        )
        mean_tau = statistics.mean(c.kendall_tau for c in ceilings.values())
        print(
            f"Noise ceiling (rank correlation between two training seeds' accuracies): "
            f"{listed}; mean tau {mean_tau:+.3f}.\n"
        )
    tau_p_acc = rank_correlation(params, acc).kendall_tau
    print(
        "| predictor of distilled accuracy | Kendall tau (p) | Spearman rho (p) "
        "| partial tau given parameters | tau of the score with itself, scoring seed 0 vs 1 |"
    )
    print("| --- | --- | --- | --- | --- |")
    for name, change in SCORES.items():
        values = scores_of(store, record, chosen, change)
        c = rank_correlation(values, acc)
        tau_p_score = rank_correlation(values, params).kendall_tau
        partial = partial_tau(c.kendall_tau, tau_p_score, tau_p_acc)
        again = rank_correlation(values, scores_of(store, record, chosen, change, seed=1))
        print(
            f"| {name} | {c.kendall_tau:+.3f} ({c.kendall_p:.2g}) | {c.spearman_rho:+.3f} "
            f"({c.spearman_p:.2g}) | {partial:+.3f} (tau with parameters {tau_p_score:+.3f}) "
            f"| {again.kendall_tau:+.3f} |"
        )
    for name, values in (("parameters", params), ("MACs", [float(c.macs) for c in chosen])):
        c = rank_correlation(values, acc)
        print(
            f"| {name} | {c.kendall_tau:+.3f} ({c.kendall_p:.2g}) | {c.spearman_rho:+.3f} "
            f"({c.spearman_p:.2g}) | | +1 |"
        )
    seconds = [done[k]["seconds"] for k in done if k.endswith(f"|epochs={epochs}")]
    print(
        f"\nOne distillation ({epochs} epochs): {statistics.mean(seconds):.0f} s on average "
        f"over {len(seconds)}."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default=None, help="artifact store (default: a temp dir)")
    parser.add_argument("--candidates", type=int, default=None, help="first N of the band")
    parser.add_argument("--epochs", type=int, default=20, help="distillation epochs")
    parser.add_argument("--seeds", type=int, default=2, help="training seeds 0..N-1")
    parser.add_argument("--report", action="store_true", help="tables only, no training")
    parser.add_argument("--smoke", action="store_true", help="4 candidates, 2 epochs, 2 seeds")
    args = parser.parse_args()
    if args.smoke:
        args.candidates, args.epochs, args.seeds = 4, 2, 2
    storage = args.storage or tempfile.mkdtemp(prefix="kdorch-diswot-fair-")
    started = time.perf_counter()
    record = run(pipeline().spec, storage=storage)
    if record.status.value != "succeeded":
        raise SystemExit(f"the pipeline failed: {[s.error for s in record.steps if s.error]}")
    store = ArtifactStore(storage)
    data = Dataset.model_validate(record.step("data").outputs["dataset"])
    chosen = candidates(data)
    if args.candidates is not None:
        # spread over the band, not the smallest N
        step = len(chosen) / args.candidates
        chosen = [chosen[int(i * step)] for i in range(min(args.candidates, len(chosen)))]
    seeds = list(range(args.seeds))
    results = Path(storage) / "diswot_fair.json"
    done = (
        json.loads(results.read_text())
        if args.report
        else distil_all(store, record, chosen, seeds, args.epochs, results)
    )
    report(store, record, chosen, seeds, args.epochs, done)
    print(f"\nWall time {time.perf_counter() - started:.0f} s; store: {storage}.")


if __name__ == "__main__":
    main()
