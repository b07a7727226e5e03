"""What the CLI costs when there is nothing to compute (issue 12, goal 2).

Times, as fresh subprocesses (interpreter and CLI start-up included), REPEATS times each:

- ``kdorch run pipelines/hinton_kd.yaml`` on a store where every step is already committed:
  it must answer from the cache without starting Ray (checked: the run record has no Ray
  address, every step is ``cached``, and the output never mentions a Ray dashboard);
- ``kdorch validate``, ``kdorch plan`` (on the same store), ``kdorch graph`` and
  ``kdorch components``.

Each command also runs once under ``python -X importtime`` to check that it imports neither
torch nor ray (nor any of their submodules). Baselines in the same run: ``python -c pass``
(the interpreter alone) and ``kdorch --version`` (the CLI's own import).

The store: ``--storage DIR`` where ``pipelines/hinton_kd.yaml`` has already run with this code
(a code change reruns the steps it touches; the script then stops; e.g. the store
``benchmarks/recipe_vs_plain.py --keep-store DIR`` leaves); without it the script first runs the
pipeline itself (with ``--profile smoke`` under ``--smoke``; the full recipe otherwise, ~7
minutes).

Goals: a fully cached run <= 2 s; validate, plan, graph, components <= 1.5 s each, none
importing torch or ray.

Run: ``python benchmarks/cached_run.py --storage DIR`` (~1 minute); ``--smoke`` (the smoke
profile in a temp store, 2 repeats: ~3 minutes, mostly the first run).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import ROOT, header, load, median, scratch, verdict

PIPELINE = "pipelines/hinton_kd.yaml"
HEAVY = ("torch", "ray")


def kdorch() -> list[str]:
    found = shutil.which("kdorch") or str(Path(sys.executable).with_name("kdorch"))
    return [found]


def timed_cli(argv: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, done


def heavy_imports(args: list[str], env: dict[str, str]) -> list[str]:
    """The top-level packages among HEAVY that the command imports (``-X importtime``)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "orchestrator", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    found = set()
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+\d+ \|\s*(\S+)", line)
        if match and match.group(1).split(".")[0] in HEAVY:
            found.add(match.group(1).split(".")[0])
    return sorted(found)


def latest_record(store: Path) -> dict:
    runs = sorted((store / "runs").glob("*/run.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(runs[-1].read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="the smoke profile, 2 repeats")
    parser.add_argument("--storage", help="a store where hinton_kd has already run")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    profile = ["--profile", "smoke"] if args.smoke else []
    repeats = 2 if args.smoke else args.repeats
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "KDORCH_STORAGE")}
    header("cached kdorch run and the light commands (subprocess, CLI start included)")
    with scratch("kdorch-bench-cached-", args.storage) as folder:
        store = str(folder)
        if not (folder / "runs").exists():
            print(f"   no runs in {store}: running {PIPELINE} {' '.join(profile)}", flush=True)
            seconds, _ = timed_cli([*kdorch(), "run", PIPELINE, "--storage", store, *profile], env)
            print(f"   first run {seconds:.0f} s", flush=True)
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "kdorch --version": [*kdorch(), "--version"],
            "run (fully cached)": [*kdorch(), "run", PIPELINE, "--storage", store, *profile],
            "validate": [*kdorch(), "validate", PIPELINE, *profile],
            "plan": [*kdorch(), "plan", PIPELINE, "--storage", store, *profile],
            "graph": [*kdorch(), "graph", PIPELINE, *profile],
            "components": [*kdorch(), "components"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        ray_free = True
        for _ in range(repeats):
            for name, argv in commands.items():
                seconds, done = timed_cli(argv, env)
                times[name].append(seconds)
                if name.startswith("run"):
                    record = latest_record(folder)
                    statuses = {s["status"] for s in record["steps"]}
                    if statuses != {"cached"}:
                        raise SystemExit(f"the store is not fully cached: {statuses}")
                    if record.get("ray_address") or "dashboard" in done.stdout + done.stderr:
                        ray_free = False
        imports = {
            name: heavy_imports(argv[1:], env)
            for name, argv in commands.items()
            if argv[0] != sys.executable and name != "kdorch --version"
        }
    goals = {
        "run (fully cached)": 2.0,
        "validate": 1.5,
        "plan": 1.5,
        "graph": 1.5,
        "components": 1.5,
    }
    print(f"\nmedian of {repeats}, seconds; {load()}")
    base = median(times["python -c pass"])
    for name, values in times.items():
        m = median(values)
        line = f"{name:<22}{m:>7.2f} s  ({m / base:4.1f}x python -c pass)"
        if name in goals:
            heavy = imports.get(name, [])
            line += (
                f"   goal <= {goals[name]:g} s: {verdict(m <= goals[name])}; imports "
                f"{', '.join(heavy) if heavy else 'no torch, no ray'}"
            )
        print(line)
    print(
        f"cached run started no Ray (no address in the record, no dashboard): {verdict(ray_free)}"
    )


if __name__ == "__main__":
    main()
