"""A one-step recompute of `student_kd` end to end — with an embedded Ray, with the warm local
Ray of `kdorch up`, and as a plain PyTorch script of the same training — in one run (issue 22).

The pipeline is `pipelines/hinton_kd.yaml` cut to the steps `student_kd` needs (``data``,
``teacher``, ``teacher_logits``, ``student_kd`` with one seed); the student's config is the
recipe's (MLP [64], 20 epochs on 3,000 MNIST rows, KD loss); the teacher is the smoke
profile's MLP (its cost is paid once, before the timings). Each timed kdorch run changes the
student's learning rate by a hair (``--set steps.student_kd.config.optimizer.lr=...``), so
exactly one step is recomputed and the rest is cached — what a user iterating on the student
sees. Every run is ``kdorch run`` as a subprocess: CLI start, the run, its shutdown.

- embedded: no warm cluster (``ray.local_cluster: false``): the run starts and stops its Ray.
- warm: after ``kdorch up`` (a state folder of the benchmark's own, `KDORCH_HOME`), run from
  the directory `kdorch up` ran in, with its ``PYTHONPATH``: the workers inherit both from the
  head, and the run gives Ray no runtime env. The first run on the fresh head, as every repeat
  starts one: `kdorch up` starts the progress sink that runs share, and the code parses behind
  the cache keys are on disk since the cache was filled (as after any earlier run).
- warm, elsewhere: the same run from another directory: a runtime env (``env_vars`` and a
  setup hook) gives the workers the driver's directory, as every warm run did before.
- plain: this script with ``--plain-only`` as a subprocess: Python and torch start, the same
  data split, the cached teacher's logits (its checkpoint from the store, one forward pass),
  and the same training loop (`recipe_vs_plain.plain_train`: Adam, cosine schedule, seeded
  batch order, validation every epoch), one torch thread and torch's default; the faster is
  the baseline.

They alternate, REPEATS times each (plain first). Goal: warm <= 1.3x plain.

Run: ``python benchmarks/warm_cluster.py`` (~5 minutes on 2 busy cores); ``--repeats N``;
``--one-thread``: the plain script with one torch thread only (torch's default threads
oversubscribe a busy 2-core machine, 2-20x slower there, and cost the benchmark minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import ROOT, header, load, median, verdict

SOURCE = ROOT / "pipelines" / "hinton_kd.yaml"
STEPS = ("data", "teacher", "teacher_logits", "student_kd")
STUDENT = "student_kd[0]"
GOAL = 1.3


def pipeline(folder: Path) -> Path:
    """hinton_kd cut to what `student_kd` needs, with one seed and the smoke teacher."""
    spec = yaml.safe_load(SOURCE.read_text())
    smoke = spec["profiles"]["smoke"]
    spec["name"] = "warm_cluster_bench"
    spec.pop("profiles")
    spec["steps"] = [s for s in spec["steps"] if s["id"] in STEPS]
    by_id = {s["id"]: s for s in spec["steps"]}
    by_id["student_kd"]["matrix"] = {"seed": [0]}
    for name in ("model", "epochs", "batch_size"):
        by_id["teacher"]["config"][name] = smoke[f"steps.teacher.config.{name}"]
    path = folder / "student_kd.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def snapshot(folder: Path) -> Path:
    """A copy of the code the runs import: a step's cache key covers its code, so a source
    file edited while the benchmark runs (another session in the same checkout) would make
    the cached steps run again."""
    code = folder / "code"
    for name in ("orchestrator", "components", "schemas", "pipelines", "benchmarks"):
        shutil.copytree(ROOT / name, code / name, ignore=shutil.ignore_patterns("__pycache__"))
    return code


def kdorch(
    args: list[str], env: dict[str, str], *, check: bool = True, cwd: Path | None = None
) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=cwd or env["PYTHONPATH"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    seconds = time.perf_counter() - started
    if check and done.returncode != 0:
        raise SystemExit(f"kdorch {' '.join(args)} failed:\n{done.stderr[-4000:]}")
    return seconds, done


def recompute(
    path: Path, store: Path, env: dict[str, str], lr: float, *, warm: bool, cwd: Path | None = None
) -> tuple[float, dict[str, Any]]:
    """One timed `kdorch run` that recomputes the student only; (seconds, the student's step).
    ``cwd``: run it from there (default: where `kdorch up` ran)."""
    args = ["run", str(path), "--storage", str(store)]
    args += ["--set", f"steps.student_kd.config.optimizer.lr={lr!r}"]
    if not warm:
        args += ["--set", "ray.local_cluster=false"]
    seconds, done = kdorch(args, env, cwd=cwd)
    where = "on the warm local Ray" if warm else "on local Ray (embedded)"
    assert where in done.stderr, done.stderr[-2000:]
    record = json.loads(sorted((store / "runs").glob("*/run.json"))[-1].read_text())
    ran = [s for s in record["steps"] if s["status"] != "cached"]
    assert [s["step_id"] for s in ran] == [STUDENT], [s["step_id"] for s in ran]
    return seconds, ran[0]


# -- the plain script -----------------------------------------------------------------------------
def plain_student(path: Path, store: Path, threads: int) -> dict[str, Any]:
    """The student's training as a plain script does it (see the module docstring)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    from recipe_vs_plain import accuracy, load_data, plain_train

    from components.artifacts.checkpoints import load_model
    from components.losses import build_loss
    from orchestrator import validate
    from orchestrator.storage.store import ArtifactStore
    from schemas.kd.artifacts import ModelCheckpoint

    started = time.perf_counter()
    graph = validate(path)
    data = load_data(graph.nodes["data"].config)
    record = json.loads(sorted(store.glob("runs/*/run.json"))[0].read_text())
    teacher_out = next(s for s in record["steps"] if s["step_id"] == "teacher")["outputs"]
    artifacts = ArtifactStore(str(store))
    teacher, _ = load_model(artifacts, ModelCheckpoint.model_validate(teacher_out["model"]))
    with torch.inference_mode():
        logits = teacher(data["train"][0]).float().half()
    node = graph.nodes[STUDENT]
    cfg = node.config
    spec = {
        **cfg.student.model_dump(mode="json", exclude_none=True),
        "num_classes": 10,
        "input_shape": [1, 28, 28],
    }

    def loss(total: int) -> Any:
        return build_loss(cfg.losses, num_classes=10, total_steps=total)

    ready = time.perf_counter()
    model = plain_train(cfg, spec, data, loss, logits.clone())
    trained = time.perf_counter()
    return {
        "setup_s": ready - started,
        "train_s": trained - ready,
        "val_accuracy": accuracy(model, *data[cfg.eval_split]),
        "threads": torch.get_num_threads(),
    }


def run_plain(path: Path, store: Path, env: dict[str, str], threads: int) -> tuple[float, dict]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        code = Path(env["PYTHONPATH"])
        argv = [sys.executable, str(code / "benchmarks" / Path(__file__).name), "--plain-only"]
        argv += [str(path), str(store), out.name, "--threads", str(threads)]
        started = time.perf_counter()
        subprocess.run(argv, cwd=code, env=env, check=True, timeout=1800)
        return time.perf_counter() - started, json.loads(Path(out.name).read_text())


# -- the comparison -------------------------------------------------------------------------------
PLAINS = {1: "plain 1 thread", 0: "plain default"}


def measure(
    folder: Path, repeats: int, env: dict[str, str], threads: tuple[int, ...]
) -> dict[str, list[float]]:
    path, store = pipeline(folder), folder / "store"
    seconds, _ = kdorch(["run", str(path), "--storage", str(store)], env)
    print(f"   the cache (data, teacher, logits, student) filled in {seconds:.1f} s", flush=True)
    times: dict[str, list[float]] = {PLAINS[t]: [] for t in threads}
    times.update({"embedded": [], "warm": [], "warm, elsewhere": [], "kdorch up": []})
    times.update({"step (warm)": [], "step (warm, elsewhere)": [], "step (embedded)": []})
    lr = 0.003
    for _ in range(repeats):
        for count in threads:
            name = PLAINS[count]
            seconds, plain = run_plain(path, store, env, count)
            times[name].append(seconds)
            print(
                f"   {name:<15} {seconds:6.1f} s (training {plain['train_s']:.1f} s, val "
                f"accuracy {plain['val_accuracy']:.3f}; {load()})",
                flush=True,
            )
        lr += 1e-6
        seconds, step = recompute(path, store, env, lr, warm=False)
        times["embedded"].append(seconds)
        times["step (embedded)"].append(float(step["seconds"]))
        print(f"   {'embedded':<15} {seconds:6.1f} s (step {step['seconds']:.1f} s; {load()})")
        up_s, _ = kdorch(["up", "--dashboard-port", "0"], env)
        times["kdorch up"].append(up_s)
        try:
            lr += 1e-6
            seconds, step = recompute(path, store, env, lr, warm=True)
            lr += 1e-6
            elsewhere, other = recompute(path, store, env, lr, warm=True, cwd=folder)
        finally:
            kdorch(["down"], env)
        times["warm"].append(seconds)
        times["step (warm)"].append(float(step["seconds"]))
        times["warm, elsewhere"].append(elsewhere)
        times["step (warm, elsewhere)"].append(float(other["seconds"]))
        print(
            f"   {'warm':<15} {seconds:6.1f} s (step {step['seconds']:.1f} s; `kdorch up` "
            f"took {up_s:.1f} s, once; {load()})",
            flush=True,
        )
        print(
            f"   {'warm, elsewhere':<15} {elsewhere:6.1f} s (step {other['seconds']:.1f} s; "
            f"{load()})",
            flush=True,
        )
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--plain-only", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument(
        "--one-thread",
        action="store_true",
        help="time the plain script with one torch thread only (torch's default oversubscribes "
        "a busy 2-core machine: 2-20x slower there)",
    )
    args = parser.parse_args()
    if args.plain_only:
        path, store, out = args.plain_only
        result = plain_student(Path(path), Path(store), args.threads)
        Path(out).write_text(json.dumps(result))
        return
    header("a one-step recompute of student_kd: embedded Ray, warm Ray (kdorch up), plain")
    folder = Path(tempfile.mkdtemp(prefix="kdb-warm-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "KDORCH_STORAGE")}
    env.update({"KDORCH_HOME": str(folder / "home"), "RAY_DATA_DISABLE_PROGRESS_BARS": "1"})
    env["PYTHONPATH"] = str(snapshot(folder))  # also the runs' working directory
    try:
        threads = (1,) if args.one_thread else (1, 0)
        times = measure(folder, args.repeats, env, threads)
    finally:
        if (folder / "home" / "local_cluster.json").exists():
            kdorch(["down"], env, check=False)
        shutil.rmtree(folder, ignore_errors=True)
    plains = [PLAINS[t] for t in threads]
    plain = min(median(times[name]) for name in plains)
    print(f"\nmedians of {args.repeats}; {load()}")
    for name, values in times.items():
        print(f"   {name:<16} {median(values):6.1f} s   ({', '.join(f'{v:.1f}' for v in values)})")
    pairs = zip(times["warm"], times["embedded"], *(times[n] for n in plains), strict=True)
    per_repeat = [(w / min(p), e / min(p)) for w, e, *p in pairs]
    print(
        "per repeat, against the faster plain run just before it: warm "
        + ", ".join(f"{w:.2f}x" for w, _ in per_repeat)
        + "; embedded "
        + ", ".join(f"{e:.2f}x" for _, e in per_repeat)
    )
    embedded, warm = median(times["embedded"]), median(times["warm"])
    print(f"embedded run / plain script: {embedded / plain:.2f}x")
    print(
        f"warm run / plain script:     {warm / plain:.2f}x "
        f"(goal <= {GOAL}x: {verdict(warm / plain <= GOAL)})"
    )


if __name__ == "__main__":
    main()
