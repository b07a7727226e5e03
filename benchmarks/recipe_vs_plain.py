"""The whole `hinton_kd` recipe through kdorch against a plain PyTorch script doing the same ten
trainings one after another in one process (issue 12, goal 6).

- kdorch: ``kdorch run pipelines/hinton_kd.yaml --storage <fresh store>`` as a subprocess: CLI
  start, an embedded Ray started and stopped by the run, every step computed (nothing cached),
  independent branches in parallel (as many at once as the machine has CPUs).
- plain: this script with ``--plain-only``, also a subprocess: the recipe's own configs (read
  from the YAML through `orchestrator.validate`, matrix expanded, profile applied), the same
  data split (`components.data`), networks (`components.models`) and losses
  (`components.losses`: CE for the teacher and the scratch students, the recipe's KD and DKD
  terms), Adam + the same cosine schedule, the same seeded batch order, validation every epoch
  (best epoch kept where the recipe says ``select: best``); the teacher's logits computed once
  and stored in memory as fp16; finally the test accuracy of all ten models. The kdorch run
  does more than this: it writes and hashes every artifact, and its report also measures
  latency, MACs, calibration and draws plots.
  The plain script runs twice per repeat, with one torch thread and with torch's default
  (every core); the faster one is the baseline (on a busy machine one thread often wins).

They alternate, REPEATS times each (plain first). Goal: kdorch <= 1.0x plain (the parallel
branches should pay for the orchestration).

Run: ``python benchmarks/recipe_vs_plain.py`` (~10 minutes on 2 busy cores), with
``--keep-store DIR`` to keep the last kdorch store (fully cached: `benchmarks/cached_run.py
--storage DIR` uses it); ``--smoke`` (the recipe's smoke profile, 1 repeat).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import ROOT, header, load, median, verdict

PIPELINE = "pipelines/hinton_kd.yaml"


# -- the plain script -----------------------------------------------------------------------------
def load_data(cfg: Any) -> dict[str, tuple[Any, Any]]:
    """Each split's (x, y), rows in row_id order, as the `dataset` step makes them."""
    import numpy as np
    import torch

    from components.data.sources import load_mnist5k
    from components.data.transforms import (
        fit_standardization,
        rotate_images,
        standardize,
        stratified_split,
    )

    assert cfg.source == "mnist5k" and cfg.domains is None, "the recipe's data step changed"
    raw = load_mnist5k()
    x, y, row_id = raw.x, raw.y, raw.row_id
    if cfg.max_rows is not None and cfg.max_rows < len(y):
        fraction = cfg.max_rows / len(y)
        keep = stratified_split(y, {"keep": fraction, "drop": 1 - fraction}, cfg.seed)["keep"]
        x, y, row_id = x[keep], y[keep], row_id[keep]
    if cfg.rotation:
        x = rotate_images(x, cfg.rotation)
    parts = stratified_split(y, cfg.splits, cfg.seed)
    if cfg.normalization() == "standard":
        mean, std = fit_standardization(x[parts[cfg.fit_split()]])
        x = standardize(x, mean, std)
    out = {}
    for name, index in parts.items():
        order = index[np.argsort(row_id[index], kind="stable")]
        out[name] = (
            torch.from_numpy(np.ascontiguousarray(x[order])).float(),
            torch.from_numpy(y[order]),
        )
    return out


def accuracy(model: Any, x: Any, y: Any) -> float:
    import torch

    model.eval()
    with torch.no_grad():
        correct = sum(
            int((model(x[s : s + 256]).argmax(1) == y[s : s + 256]).sum())
            for s in range(0, len(y), 256)
        )
    return correct / len(y)


def plain_train(
    cfg: Any, spec: dict[str, Any], data: dict[str, Any], loss: Any, teacher: Any = None
) -> Any:
    """One training as the training loop does it (see the module docstring)."""
    import torch

    from components.losses import KDBatch
    from components.models.zoo import build_model

    x, y = data["train"]
    xv, yv = data[cfg.eval_split]
    assert cfg.optimizer.name == "adam" and cfg.scaling.num_workers == 1
    torch.manual_seed(cfg.seed)
    model = build_model(spec, seed=cfg.seed)
    rows, batch = len(y), cfg.batch_size
    per_epoch = math.ceil(rows / batch)
    total = cfg.epochs * per_epoch
    optimizer = torch.optim.Adam(
        model.parameters(), lr=cfg.optimizer.lr, weight_decay=cfg.optimizer.weight_decay
    )
    cosine = cfg.optimizer.schedule == "cosine"
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / max(total, 1))) if cosine else 1.0,
    )
    loss_fn = loss(total) if loss is not None else None
    best, best_state, step = -1.0, None, 0
    for epoch in range(cfg.epochs):
        model.train()
        generator = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch * 101)
        order = torch.randperm(rows, generator=generator)
        for i, start in enumerate(range(0, rows, batch)):
            index = order[start : start + batch]
            logits = model(x[index])
            if loss_fn is None:
                value = torch.nn.functional.cross_entropy(logits, y[index])
            else:
                kd = KDBatch(
                    student_logits=logits,
                    labels=y[index],
                    teacher_logits=teacher[index],
                    epoch=epoch + i / per_epoch,
                    step=step,
                )
                value, _ = loss_fn(kd)
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
            schedule.step()
            step += 1
        score = accuracy(model, xv, yv)
        if cfg.select == "best" and score > best:
            best = score
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval()


def plain_recipe(profile: str | None, threads: int) -> dict[str, Any]:
    """The recipe's trainings in this process; returns timings and test accuracies."""
    import torch

    if threads:
        torch.set_num_threads(threads)

    from components.losses import build_loss
    from orchestrator import validate

    started = time.perf_counter()
    graph = validate(ROOT / PIPELINE, profile=profile)
    by_kind: dict[str, list[Any]] = {}
    for node in graph.nodes.values():
        by_kind.setdefault(node.component.key, []).append(node)
    data_cfg = by_kind["dataset"][0].config
    data = load_data(data_cfg)
    shape = {"num_classes": 10, "input_shape": [1, 28, 28]}
    timings: dict[str, float] = {"data": time.perf_counter() - started}
    models: dict[str, Any] = {}

    def fit(node: Any, loss: Any = None, teacher: Any = None) -> None:
        t0 = time.perf_counter()
        cfg = node.config
        arch = cfg.model if node.component.key == "train" else cfg.student
        spec = {**arch.model_dump(mode="json", exclude_none=True), **shape}
        models[node.id] = plain_train(cfg, spec, data, loss, teacher)
        timings[node.id] = time.perf_counter() - t0

    inference = by_kind["teacher_inference"][0]
    teacher_node = next(
        graph.nodes[u] for u in inference.upstream if graph.nodes[u].component.key == "train"
    )
    fit(teacher_node)
    t0 = time.perf_counter()
    with torch.inference_mode():
        teacher_logits = models[teacher_node.id](data["train"][0]).float().half()
    timings["teacher logits"] = time.perf_counter() - t0
    for node in by_kind["train"]:
        if node.id != teacher_node.id:
            fit(node)
    for node in by_kind.get("distill", []):
        losses = node.config.losses

        def make(total: int, losses: Any = losses) -> Any:
            return build_loss(losses, num_classes=10, total_steps=total)

        fit(node, make, teacher_logits.clone())
    t0 = time.perf_counter()
    xt, yt = data["test"]
    scores = {name: accuracy(model, xt, yt) for name, model in models.items()}
    timings["evaluate"] = time.perf_counter() - t0
    return {
        "timings": timings,
        "test_accuracy": scores,
        "trainings": len(models),
        "threads": torch.get_num_threads(),
    }


# -- the comparison -------------------------------------------------------------------------------
def run_plain(
    profile: str | None, env: dict[str, str], threads: int
) -> tuple[float, dict[str, Any]]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        argv = [sys.executable, __file__, "--plain-only", "--json", out.name]
        argv += ["--threads", str(threads)]
        if profile:
            argv += ["--profile", profile]
        started = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, env=env, check=True, timeout=3600)
        seconds = time.perf_counter() - started
        return seconds, json.loads(Path(out.name).read_text())


def run_kdorch(
    profile: str | None, env: dict[str, str], store: Path, sets: list[str]
) -> tuple[float, dict]:
    shutil.rmtree(store, ignore_errors=True)
    kdorch = shutil.which("kdorch") or str(Path(sys.executable).with_name("kdorch"))
    argv = [kdorch, "run", PIPELINE, "--storage", str(store)]
    if profile:
        argv += ["--profile", profile]
    for item in sets:
        argv += ["--set", item]
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"kdorch run failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    runs = sorted((store / "runs").glob("*/run.json"))
    return seconds, json.loads(runs[-1].read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="the smoke profile, 1 repeat")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--keep-store", help="leave the last kdorch store here")
    parser.add_argument(
        "--kdorch-set",
        action="append",
        metavar="PATH=VALUE",
        help="a what-if: pass --set PATH=VALUE to the kdorch runs (repeatable), e.g. "
        "steps.teacher.config.scaling.cpus_per_worker=2",
    )
    parser.add_argument("--plain-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    parser.add_argument("--profile", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_only:
        result = plain_recipe(args.profile, args.threads)
        Path(args.json).write_text(json.dumps(result))
        return
    profile = "smoke" if args.smoke else None
    repeats = 1 if args.smoke else args.repeats
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "KDORCH_STORAGE")}
    env.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    sets = " ".join(f"--set {item}" for item in args.kdorch_set or [])
    header(
        f"{PIPELINE} through kdorch vs a plain PyTorch script (profile: {profile or 'none'})"
        + (f"; kdorch runs with {sets}" if sets else "")
    )
    folder = Path(tempfile.mkdtemp(prefix="kdorch-bench-recipe-"))
    store = Path(args.keep_store).resolve() if args.keep_store else folder / "store"
    plain_s: dict[int, list[float]] = {1: [], 0: []}
    plains: dict[int, dict[str, Any]] = {}
    kdorch_s: list[float] = []
    record: dict[str, Any] = {}
    try:
        for _ in range(repeats):
            for threads in plain_s:
                seconds, plains[threads] = run_plain(profile, env, threads)
                plain_s[threads].append(seconds)
                print(
                    f"   plain, {plains[threads]['threads']} torch thread(s) {seconds:7.1f} s  "
                    f"({load()})",
                    flush=True,
                )
            seconds, record = run_kdorch(profile, env, store, args.kdorch_set or [])
            kdorch_s.append(seconds)
            print(f"   kdorch {seconds:7.1f} s  ({load()})", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    steps = {s["step_id"]: s for s in record["steps"]}
    print(f"\nmedian of {repeats}; {load()}")
    for threads, values in plain_s.items():
        print(f"plain script, {plains[threads]['threads']} torch thread(s): {median(values):.1f} s")
    best = min(plain_s, key=lambda t: median(plain_s[t]))
    plain = plains[best]
    ratio = median(kdorch_s) / median(plain_s[best])
    pairs = [k / min(p1, p0) for k, p1, p0 in zip(kdorch_s, plain_s[1], plain_s[0], strict=True)]
    print(
        "per repeat, kdorch / the faster plain run just before it: "
        + ", ".join(f"{r:.2f}x" for r in pairs)
    )
    print(
        f"kdorch run {median(kdorch_s):.1f} s, the faster plain script "
        f"({plain['threads']} thread(s)) {median(plain_s[best]):.1f} s: {ratio:.2f}x "
        f"(goal <= 1.0x: {verdict(ratio <= 1.0)})"
    )
    own = sum(float(s["seconds"] or 0) for s in steps.values())
    print(f"kdorch: sum of the steps' own seconds {own:.1f} s (parallel branches overlap)")
    print(f"{'step':<22}{'kdorch s':>10}{'plain s':>10}{'test acc (plain)':>18}")
    for sid, s in steps.items():
        p = plain["timings"].get(sid)
        acc = plain["test_accuracy"].get(sid)
        print(
            f"{sid:<22}{float(s['seconds'] or 0):>10.2f}"
            f"{p if p is None else round(p, 2)!s:>10}{'' if acc is None else f'{acc:.4f}':>18}"
        )
    for name in ("data", "teacher logits", "evaluate"):
        print(f"{'(plain) ' + name:<22}{'':>10}{plain['timings'][name]:>10.2f}")
    report = steps.get("report", {}).get("outputs", {}).get("report", {})
    if report:
        print(
            f"kdorch report: {store}/{report.get('path')}/report.md"
            + ("" if args.keep_store else " (removed)")
        )


if __name__ == "__main__":
    main()
