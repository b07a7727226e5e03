"""Meta-DMoE's full protocol: every held-out row scored, whole-pipeline seeds, the controls.

`pipelines/meta_dmoe.yaml` is the quick recipe (two student seeds sharing one set of experts,
scored on the held-out domain's 170 test rows). This benchmark asks whether Meta-DMoE's gain
over ERM is larger than the noise, with kdorch doing every step:

- scoring: every row of the held-out domain (830 of 5,000 at 0°, 30°, 75°; no student or
  aggregator ever sees any of them). A second dataset step, ``data_all``, cuts the same rows
  into the same domains (the domain partition depends on the dataset's seed only) with one
  split, ``all``, and
  ``evaluate`` scores ``all`` restricted to the held-out domain. The adaptive models are
  cross-fitted (`components.metadmoe.adaptive.predict_per_domain`): the domain's rows are cut
  into disjoint batches of ~24, each batch adapts the student once, and each row is predicted
  with the weights of another batch: no row is scored by an adaptation that saw it, and the
  score averages over all ~34 adaptation batches.
- seeds: seed ``s`` re-seeds the whole pipeline: the six experts, hence their cached
  features, the aggregator, the ERM student and every student started from it.
- methods and controls, per seed (names as in the report):
  ``erm`` (train, source domains); ``erm_same_epochs`` (``erm`` trained on for as many
  epochs as the meta-training, at the meta-training's student learning rate);
  ``kd_experts_ce`` (MEAL V2's target, the source experts' mean softmax, plus cross-entropy on
  labels, equal weights, from ``erm``; the recipe's label-free KD is left out: a straw man);
  ``erm_tta_aggregator`` (the ERM student with the pre-trained aggregator, adapted at test time
  by Meta-DMoE's step, no meta-training: ``meta_distill`` with ``epochs: 0``);
  ``erm_tta_entropy`` (the ERM student adapted by one entropy-minimisation step on the same
  unlabeled rows: ``adaptation: entropy``, its step size chosen per seed on source validation
  among ``ENTROPY_LRS``); ``meta_no_tta`` and ``meta_dmoe`` (second order, mask);
  ``meta_first_order``; ``meta_no_mask``; every expert (``expert_rot<angle>``; the held-out
  domain's own is an oracle, marked by the report).
- statistics: `evaluate`'s own (per recipe mean with a 95% t interval over seeds; each
  comparison paired by seed with its bootstrap and t intervals and a verdict). The mean over
  held-out domains is computed here from the per-seed accuracies with the same functions
  (`components.evaluation.statistics`).
- cost: the student's per-row inference (evaluate's size, MACs, latency) and, apart, what runs
  once per adaptation batch (five experts, the aggregator, the inner step), measured here.

Sizes (``--size smoke``, the default, to fit 2 busy cores): the smoke profile's experts
(mnist_cnn width 16, 10 epochs) and ERM (10 epochs); meta-training and every student started
from ERM 5 epochs (the recipe: 8); aggregator 5 epochs. ``--size recipe`` uses the headline's
(experts width 32, 15 epochs; ERM 15; 8 epochs from ERM).

Run: ``python benchmarks/meta_dmoe_protocol.py --storage /tmp/meta-protocol --targets 0 30 75
--seeds 0 1 2 3 4`` (run again, every step is a cache hit and only the tables are made).
Everything lands in ``--storage``; the tables go to stdout and
``<storage>/meta_dmoe_protocol.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from components.evaluation import statistics as st
from orchestrator import Pipeline, run
from orchestrator.cli.progress import ConsoleReporter

ANGLES = [0, 15, 30, 45, 60, 75]
SIZES: dict[str, dict[str, Any]] = {
    "smoke": {"expert_width": 16, "expert_epochs": 10, "erm_epochs": 10, "meta_epochs": 5},
    "recipe": {"expert_width": 32, "expert_epochs": 15, "erm_epochs": 15, "meta_epochs": 8},
}
STUDENT = {"arch": "mnist_cnn", "width": 16, "depth": 3}
DATA = {"source": "mnist5k", "domains": {"angles": ANGLES}}
INNER_LR = 0.01  # the recipe's, chosen on source validation among 0.003, 0.01, 0.05
ENTROPY_LRS = [
    0.0001,
    0.0003,
    0.001,
    0.01,
]  # the entropy control's step sizes, chosen on source val
#: The comparisons of every report, a minus b, paired by seed.
COMPARE = [
    ["meta_dmoe", "erm"],
    ["meta_dmoe", "erm_same_epochs"],
    ["meta_dmoe", "erm_tta_aggregator"],
    ["meta_dmoe", "erm_tta_entropy"],
    ["meta_dmoe", "kd_experts_ce"],
    ["meta_dmoe", "meta_first_order"],
    ["meta_dmoe", "meta_no_mask"],
    ["meta_dmoe", "meta_no_tta"],
    ["meta_no_tta", "erm"],
    ["erm_same_epochs", "erm"],
    ["kd_experts_ce", "erm"],
    ["erm_tta_entropy", "erm"],
]
METHODS = [
    "erm",
    "erm_same_epochs",
    "kd_experts_ce",
    "erm_tta_aggregator",
    "erm_tta_entropy",
    "meta_no_tta",
    "meta_dmoe",
    "meta_first_order",
    "meta_no_mask",
]


def _seeded(p: Pipeline, target: int, seed: int, size: dict[str, Any], data: Any) -> dict[str, Any]:
    """Every step of one seed; the handles by name."""
    held_out = [f"rot{target}"]
    expert = p.add(
        f"expert_s{seed}",
        "train",
        matrix={"angle": ANGLES},
        inputs={"data": data.dataset},
        config={
            "model": {"arch": "mnist_cnn", "width": size["expert_width"]},
            "domains": ["rot${angle}"],
            "epochs": size["expert_epochs"],
            "batch_size": 32,
            "optimizer": {"lr": 0.003},
            "select": "best",
            "seed": seed,
        },
    )
    features = p.add(
        f"features_s{seed}",
        "teacher_inference",
        matrix={"angle": ANGLES},
        inputs={"teacher": expert["${angle}"].model, "data": data.dataset},
        config={"feature": "penultimate", "precision": "float16"},
    )
    erm = p.add(
        f"erm_s{seed}",
        "train",
        inputs={"data": data.dataset},
        config={
            "model": STUDENT,
            "exclude_domains": held_out,
            "epochs": size["erm_epochs"],
            "batch_size": 32,
            "optimizer": {"lr": 0.003},
            "seed": seed,
            "select": "best",
        },
    )
    h: dict[str, Any] = {"expert": expert, "erm": erm}
    h["erm_same_epochs"] = p.add(
        f"erm_same_epochs_s{seed}",
        "train",
        inputs={"data": data.dataset, "init": erm.model},
        config={
            "model": STUDENT,
            "exclude_domains": held_out,
            "epochs": size["meta_epochs"],
            "batch_size": 32,
            "optimizer": {"lr": 0.001},  # meta_distill's student_lr
            "seed": seed,
            "select": "best",
        },
    )
    for name, losses in (
        ("kd_experts_ce", [{"type": "meal", "weight": 0.5}, {"type": "ce", "weight": 0.5}]),
    ):
        h[name] = p.add(
            f"{name}_s{seed}",
            "distill",
            inputs={"data": data.dataset, "logits": features.all.logits, "init": erm.model},
            config={
                "student": STUDENT,
                "exclude_domains": held_out,
                "skip_teachers_trained_on": held_out,
                "losses": losses,
                "epochs": size["meta_epochs"],
                "batch_size": 32,
                "optimizer": {"lr": 0.001},
                "seed": seed,
                "select": "best",
            },
        )
    aggregator = p.add(
        f"aggregator_s{seed}",
        "aggregator",
        inputs={"data": data.dataset, "features": features.all.logits, "student": erm.model},
        config={"exclude_domains": held_out, "num_heads": 4, "epochs": 5, "seed": seed},
    )
    meta_inputs = {
        "data": data.dataset,
        "student": erm.model,
        "aggregator": aggregator.aggregator,
        "features": features.all.logits,
        "experts": expert.all.model,
    }
    base = {"exclude_domains": held_out, "seed": seed, "inner_lr": INNER_LR}
    variants: dict[str, dict[str, Any]] = {
        "meta": {"epochs": size["meta_epochs"]},
        "meta_first_order": {"epochs": size["meta_epochs"], "first_order": True},
        "meta_no_mask": {"epochs": size["meta_epochs"], "mask": False},
        "erm_tta_aggregator": {"epochs": 0},
    }
    for lr in ENTROPY_LRS:
        variants[f"erm_tta_entropy_{lr:g}"] = {
            "epochs": 0,
            "adaptation": "entropy",
            "inner_lr": lr,
        }
    for name, extra in variants.items():
        step_id = f"{name}_s{seed}".replace(".", "p")
        h[name] = p.add(step_id, "meta_distill", inputs=meta_inputs, config={**base, **extra})
    return h


def pipeline(
    target: int, seeds: list[int], size: dict[str, Any], chosen: dict[int, float] | None
) -> Pipeline:
    """The protocol for one held-out domain; with ``chosen`` (seed -> entropy step size), its
    report too."""
    p = Pipeline(f"meta_dmoe_protocol_t{target}")
    data = p.add(
        "data", "dataset", config={**DATA, "splits": {"train": 0.6, "val": 0.2, "test": 0.2}}
    )
    data_all = p.add("data_all", "dataset", config={**DATA, "splits": {"all": 1.0}})
    handles = {s: _seeded(p, target, s, size, data) for s in seeds}
    if chosen is None:
        return p
    models: list[Any] = []
    names: list[str] = []

    def add(label: str, ref: Any) -> None:
        models.append(ref)
        names.append(label)

    for s, h in handles.items():
        add("erm", h["erm"].model)
        add("erm_same_epochs", h["erm_same_epochs"].model)
        add("kd_experts_ce", h["kd_experts_ce"].model)
        add("erm_tta_aggregator", h["erm_tta_aggregator"].adaptive)
        add("erm_tta_entropy", h[f"erm_tta_entropy_{chosen[s]:g}"].adaptive)
        add("meta_no_tta", h["meta"].model)
        add("meta_dmoe", h["meta"].adaptive)
        add("meta_first_order", h["meta_first_order"].adaptive)
        add("meta_no_mask", h["meta_no_mask"].adaptive)
        for angle in ANGLES:
            add(f"expert_rot{angle}", h["expert"][angle].model)
    p.add(
        "report",
        "evaluate",
        inputs={"data": data_all.dataset, "models": models},
        config={
            "split": "all",
            "domains": [f"rot{target}"],
            "names": names,
            "compare": COMPARE,
            "latency_repeats": 5,
            "latency_budget_s": 0.2,
        },
    )
    return p


def choose_entropy_lr(record: Any, seeds: list[int]) -> dict[int, float]:
    """Per seed, the entropy step size with the best adapted accuracy on the source domains'
    validation rows (the step's ``val_accuracy``; ties: the smaller step)."""
    chosen = {}
    for s in seeds:
        scores = {
            lr: float(
                record.step(f"erm_tta_entropy_{lr:g}_s{s}".replace(".", "p")).outputs["metrics"][
                    "val_accuracy"
                ]
            )
            for lr in ENTROPY_LRS
        }
        chosen[s] = max(ENTROPY_LRS, key=lambda lr: (scores[lr], -lr))
        print(f"  seed {s}: entropy step sizes on source val {scores} -> {chosen[s]:g}", flush=True)
    return chosen


def run_target(storage: str, target: int, seeds: list[int], size: dict[str, Any]) -> dict[str, Any]:
    """Train everything, choose the entropy step on source validation, then report."""
    started = time.perf_counter()
    record = run(
        pipeline(target, seeds, size, None).spec,
        storage=storage,
        raise_on_failure=True,
        listeners=[ConsoleReporter()],
    )
    chosen = choose_entropy_lr(record, seeds)
    record = run(
        pipeline(target, seeds, size, chosen).spec,
        storage=storage,
        raise_on_failure=True,
        listeners=[ConsoleReporter()],
    )
    seconds = time.perf_counter() - started
    report = record.step("report").outputs["report"]
    return {"report": report, "seconds": seconds, "entropy_lr": chosen}


def read_report(storage: str, report: dict[str, Any]) -> dict[str, Any]:
    return json.loads((Path(storage) / report["path"] / "report.json").read_text())


def per_seed_top1(document: dict[str, Any], label: str) -> dict[int, float]:
    """Seed -> top-1 (points) of the models of ``label`` in one report."""
    recipe = document["recipes"][label]
    return {
        int(seed): 100 * document["metrics"][key]["top1"]
        for key, seed in zip(recipe["models"], recipe["seeds"], strict=True)
    }


def _ci(low: float, high: float) -> str:
    return f"[{low:+.1f}, {high:+.1f}]"


def domain_tables(target: int, document: dict[str, Any]) -> list[str]:
    """One held-out domain: each recipe's mean with its t interval, then the comparisons."""
    lines = [
        f"## held out rot{target}: {document['rows']} rows, one row = "
        f"{document['resolution_points']:.2f} points",
        "",
        "| method | mean top-1 | 95% CI (t) |",
        "| --- | --- | --- |",
    ]
    for label in [*METHODS, *(f"expert_rot{a}" for a in ANGLES)]:
        r = document["recipes"][label]
        ci = r["interval"]
        span = f"[{100 * ci['low']:.1f}, {100 * ci['high']:.1f}]" if ci else "-"
        mark = " (oracle: trained on it)" if a_oracle(document, label) else ""
        lines.append(f"| {label}{mark} | {100 * r['mean']:.1f} | {span} |")
    lines += [
        "",
        "| a - b | mean | bootstrap 95% | paired t 95% | verdict |",
        "| --- | --- | --- | --- | --- |",
    ]
    for c in document["comparisons"]:
        boot, t = c["bootstrap"], c["t_interval"]
        lines.append(
            f"| {c['a']} - {c['b']} | {100 * c['mean_difference']:+.1f} | "
            f"{_ci(100 * boot['low'], 100 * boot['high'])} | "
            f"{_ci(100 * t['low'], 100 * t['high'])} | {c['verdict']} |"
        )
    return lines


def a_oracle(document: dict[str, Any], label: str) -> bool:
    keys = document["recipes"][label]["models"]
    return any(k in document["trained_on_scored_domains"] for k in keys)


def mean_tables(documents: dict[int, dict[str, Any]]) -> tuple[list[str], dict[str, Any]]:
    """The mean over held-out domains, per seed, then over seeds; paired comparisons over seeds
    with `evaluate`'s functions (bootstrap, t, verdict)."""
    per_label: dict[str, dict[int, float]] = {}
    for label in METHODS:
        by_seed: dict[int, list[float]] = {}
        for document in documents.values():
            for seed, value in per_seed_top1(document, label).items():
                by_seed.setdefault(seed, []).append(value)
        per_label[label] = {
            s: statistics.fmean(v) for s, v in by_seed.items() if len(v) == len(documents)
        }
    out: dict[str, Any] = {"methods": {}, "comparisons": []}
    lines = [
        f"## mean over held-out domains {sorted(documents)}",
        "",
        "| method | mean top-1 | 95% CI (t) |",
        "| --- | --- | --- |",
    ]
    for label, values in per_label.items():
        v = list(values.values())
        ci = st.t_interval(v)
        out["methods"][label] = {
            "mean": statistics.fmean(v),
            "ci": [ci.low, ci.high] if ci else None,
            "per_seed": values,
        }
        lines.append(
            f"| {label} | {statistics.fmean(v):.1f} | "
            + (f"[{ci.low:.1f}, {ci.high:.1f}] |" if ci else "- |")
        )
    lines += [
        "",
        "| a - b | mean | bootstrap 95% | paired t 95% | verdict |",
        "| --- | --- | --- | --- | --- |",
    ]
    for a, b in COMPARE:
        seeds = sorted(set(per_label[a]) & set(per_label[b]))
        d = [per_label[a][s] - per_label[b][s] for s in seeds]
        boot = st.bootstrap_interval(d, resamples=10_000, seed=0)
        t = st.t_interval(d)
        intervals = [i for i in (boot, t) if i is not None]
        verdict = st.verdict(statistics.fmean(d), intervals, len(d))
        out["comparisons"].append(
            {
                "a": a,
                "b": b,
                "differences": d,
                "mean": statistics.fmean(d),
                "bootstrap": [boot.low, boot.high] if boot else None,
                "t": [t.low, t.high] if t else None,
                "verdict": verdict,
            }
        )
        lines.append(
            f"| {a} - {b} | {statistics.fmean(d):+.1f} | "
            + (_ci(boot.low, boot.high) if boot else "-")
            + " | "
            + (_ci(t.low, t.high) if t else "-")
            + f" | {verdict} |"
        )
    return lines, out


def _median_ms(fn: Any, repeats: int = 20) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times)


def cost(storage: str) -> list[str]:
    """What runs per row (the student) and what runs once per adaptation batch (the experts on
    the batch, the aggregator, the inner step's forward and backward), for seed 0's models of
    the first run in ``storage``: parameters, MACs, and single-thread CPU time."""
    import torch

    from components.metadmoe.checkpoints import load_adaptive
    from components.models.profile import count_parameters, estimate_flops
    from orchestrator.storage.store import ArtifactStore
    from schemas.kd.artifacts import AdaptiveModelCheckpoint

    torch.set_num_threads(1)
    store = ArtifactStore(storage)
    runs = sorted(Path(storage, "runs").glob("*/run.json"))
    steps = {s["step_id"]: s for s in json.loads(runs[0].read_text())["steps"]}
    meta = load_adaptive(
        store, AdaptiveModelCheckpoint.model_validate(steps["meta_s0"]["outputs"]["adaptive"])
    )
    student, experts, aggregator = meta.student, list(meta.experts), meta.aggregator
    shape = (1, 28, 28)
    support = int(steps["meta_s0"]["outputs"]["adaptive"]["adaptation"]["support_size"])
    x = torch.rand(support, *shape)
    one = x[:1]
    tokens = (len(experts), aggregator.expert_dim)
    rows = [
        (
            "student, per row (inference)",
            count_parameters(student),
            estimate_flops(student, shape),
            _median_ms(lambda: student(one)),
        ),
        (
            f"experts ({len(experts)}), on the batch of {support}",
            sum(count_parameters(e) for e in experts),
            support * sum(estimate_flops(e, shape) for e in experts),
            _median_ms(lambda: meta.expert_features(x)),
        ),
        (
            f"aggregator, on the batch of {support}",
            count_parameters(aggregator),
            support * estimate_flops(aggregator, tokens),
            _median_ms(lambda: aggregator(meta.expert_features(x)))
            - _median_ms(lambda: meta.expert_features(x)),
        ),
        (
            f"whole adaptation to a domain (experts + aggregator + inner step on {support} rows)",
            count_parameters(student)
            + count_parameters(aggregator)
            + sum(count_parameters(e) for e in experts),
            support
            * (
                3 * estimate_flops(student, shape)
                + estimate_flops(aggregator, tokens)
                + sum(estimate_flops(e, shape) for e in experts)
            ),
            _median_ms(lambda: meta.adapt(x)),
        ),
    ]
    lines = [
        "| what runs | parameters | MACs | CPU time, 1 thread (ms, median) |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {what} | {params:,} | {macs:,} | {ms:.2f} |" for what, params, macs, ms in rows]
    lines.append("(inner step MACs: forward + backward of the student, counted as 3x its forward)")
    return lines


def finished_reports(storage: str) -> dict[int, dict[str, Any]]:
    """Held-out angle -> report.json of every protocol run in ``storage`` whose report step
    finished (the latest per angle): the tables of a run cut short."""
    found: dict[int, dict[str, Any]] = {}
    for path in sorted(Path(storage, "runs").glob("*/run.json")):
        record = json.loads(path.read_text())
        name = str(record.get("pipeline", ""))
        if not name.startswith("meta_dmoe_protocol_t"):
            continue
        steps = {s["step_id"]: s for s in record["steps"]}
        report = steps.get("report")
        if report and report.get("outputs"):
            found[int(name.removeprefix("meta_dmoe_protocol_t"))] = read_report(
                storage, report["outputs"]["report"]
            )
    return found


def docs_tables(documents: dict[int, dict[str, Any]], mean: dict[str, Any]) -> list[str]:
    """The two tables of docs/meta_dmoe.md: each method per held-out domain and over their mean
    (mean top-1 with its 95% t interval over seeds), then each comparison (mean difference,
    bootstrap interval, verdict)."""
    targets = sorted(documents)
    head = " | ".join(f"rot{t}" for t in targets)
    lines = [f"| method | {head} | mean |", "|---" * (len(targets) + 2) + "|"]
    for label in METHODS:
        cells = []
        for t in targets:
            r = documents[t]["recipes"][label]
            ci = r["interval"]
            cells.append(f"{100 * r['mean']:.1f} [{100 * ci['low']:.1f}, {100 * ci['high']:.1f}]")
        m = mean["methods"][label]
        lo, hi = m["ci"]
        lines.append(f"| {label} | {' | '.join(cells)} | {m['mean']:.1f} [{lo:.1f}, {hi:.1f}] |")
    lines += ["", f"| a - b | {head} | mean |", "|---" * (len(targets) + 2) + "|"]
    for j, (a, b) in enumerate(COMPARE):
        cells = []
        for t in targets:
            c = next(c for c in documents[t]["comparisons"] if c["a"] == a and c["b"] == b)
            boot = c["bootstrap"]
            cells.append(
                f"{100 * c['mean_difference']:+.1f} {_ci(100 * boot['low'], 100 * boot['high'])}"
                f" {_short(c['verdict'])}"
            )
        c = mean["comparisons"][j]
        lo, hi = c["bootstrap"]
        cells.append(f"{c['mean']:+.1f} {_ci(lo, hi)} {_short(c['verdict'])}")
        lines.append(f"| {a} - {b} | {' | '.join(cells)} |")
    return lines


def _short(verdict: str) -> str:
    return "**better**" if verdict == "better" else "**worse**" if verdict == "worse" else "n.d."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--storage", required=True)
    parser.add_argument("--targets", type=int, nargs="+", default=[0, 30, 75])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--size", choices=sorted(SIZES), default="smoke")
    parser.add_argument("--cost", action="store_true", help="only the cost table, from the store")
    parser.add_argument(
        "--tables", action="store_true", help="only the docs' tables, from the finished reports"
    )
    args = parser.parse_args()
    if args.cost:
        print("\n".join(cost(args.storage)))
        return
    if args.tables:
        finished = finished_reports(args.storage)
        print("\n".join(docs_tables(finished, mean_tables(finished)[1])))
        return
    started = time.perf_counter()
    documents: dict[int, dict[str, Any]] = {}
    results: dict[str, Any] = {"size": args.size, "seeds": args.seeds, "targets": {}}
    for target in args.targets:
        done = run_target(args.storage, target, args.seeds, SIZES[args.size])
        documents[target] = read_report(args.storage, done["report"])
        results["targets"][target] = {
            "seconds": done["seconds"],
            "entropy_lr": done["entropy_lr"],
            "report": done["report"]["path"],
        }
        print("\n".join(domain_tables(target, documents[target])), flush=True)
        print(f"(rot{target}: {done['seconds']:.0f} s)\n", flush=True)
    lines, results["mean"] = mean_tables(documents)
    print("\n".join(lines))
    results["seconds"] = time.perf_counter() - started
    print(f"\nwall time {results['seconds']:.0f} s")
    (Path(args.storage) / "meta_dmoe_protocol.json").write_text(
        json.dumps(results, indent=1, default=str)
    )


if __name__ == "__main__":
    main()
