"""How does validating and planning scale with the number of steps? (A script, not a test.)

Writes pipelines of the test suite's toy components to a temporary folder and times
`orchestrator.validate` (YAML -> spec -> graph) and `orchestrator.plan` (also every cache key and
a look-up in an empty local store) on:

- a matrix: one source, one `toy_scale` step fanned out over N values, one step gathering
  ``scaled[*].numbers`` (N + 2 steps);
- a chain: N `toy_scale` steps, each reading the previous one's output.

Run: ``python benchmarks/compile_scaling.py`` (sizes 100, 1000, 10000; or pass your own, e.g.
``python benchmarks/compile_scaling.py 100 1000``). Both should grow linearly: ten times the
steps, about ten times the time.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tests.support.toy_components  # noqa: E402,F401  (registers toy_source, toy_scale, ...)
from orchestrator import plan, validate  # noqa: E402

DEFAULT_SIZES = (100, 1_000, 10_000)
CHAIN_SIZES = (1_000,)


def matrix_yaml(n: int) -> str:
    values = ", ".join(str(v) for v in range(1, n + 1))
    return (
        "name: matrix\nsteps:\n"
        "- {id: src, component: toy_source}\n"
        "- id: scaled\n  component: toy_scale\n"
        f"  matrix: {{factor: [{values}]}}\n"
        "  inputs: {numbers: src.numbers}\n"
        "  config: {factor: '${factor}'}\n"
        "- {id: total, component: toy_gather, inputs: {parts: 'scaled[*].numbers'}}\n"
    )


def chain_yaml(n: int) -> str:
    lines = ["name: chain", "steps:", "- {id: s0, component: toy_source}"]
    for i in range(1, n):
        lines.append(f"- {{id: s{i}, component: toy_scale, inputs: {{numbers: s{i - 1}.numbers}}}}")
    return "\n".join(lines) + "\n"


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def measure(kind: str, n: int, text: str, folder: Path) -> None:
    path = folder / f"{kind}_{n}.yaml"
    path.write_text(text)
    store = str(folder / "store")
    steps = len(validate(path).nodes)
    seconds_validate = timed(lambda: validate(path))
    seconds_plan = timed(lambda: plan(path, storage=store))
    print(
        f"{kind:<7} {n:>7,} {steps:>7,} steps  validate {seconds_validate:8.3f} s"
        f"  plan {seconds_plan:8.3f} s",
        flush=True,
    )


def main(argv: list[str]) -> None:
    sizes = [int(a) for a in argv] or list(DEFAULT_SIZES)
    print(f"{'shape':<7} {'N':>7} {'graph':>13}  (second call of each: imports are warm)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for n in sizes:
            measure("matrix", n, matrix_yaml(n), folder)
        for n in CHAIN_SIZES if not argv else sizes:
            measure("chain", n, chain_yaml(n), folder)


if __name__ == "__main__":
    main(sys.argv[1:])
