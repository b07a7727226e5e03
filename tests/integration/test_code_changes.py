"""Editing code invalidates exactly the steps that run it (`kdorch plan` says which file).

The test works on a copy of the source tree, so it can edit kdorch's own modules: a comment
changes nothing, a function body in a module only `distill` imports re-plans the distill step
and nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = """
name: code_changes
steps:
  - id: data
    component: dataset
    config: {source: digits, max_rows: 300}
  - id: teacher
    component: train
    inputs: {data: data.dataset}
    config: {model: {arch: mlp, hidden: [16]}, epochs: 1}
  - id: scratch
    component: train
    inputs: {data: data.dataset}
    config: {model: {arch: mlp, hidden: [8]}, epochs: 1}
  - id: logits
    component: teacher_inference
    inputs: {teacher: teacher.model, data: data.dataset}
  - id: student
    component: distill
    matrix: {seed: [0, 1]}
    inputs: {data: data.dataset, logits: logits.logits}
    config: {student: {arch: mlp, hidden: [8]}, epochs: 1, seed: "${seed}"}
"""


def kdorch(src: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(src), "KDORCH_PLUGINS": ""}
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=src.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def plan(src: Path, pipeline: Path, store: Path) -> dict[str, dict[str, str]]:
    out = kdorch(src, "plan", str(pipeline), "--storage", str(store), "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    return {s["step_id"]: s for s in json.loads(out.stdout)}


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_code_edits_replan_exactly_the_steps_that_run_the_code(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for package in ("orchestrator", "components", "schemas"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    pipeline, store = tmp_path / "p.yaml", tmp_path / "store"
    pipeline.write_text(PIPELINE)
    first = kdorch(src, "run", str(pipeline), "--storage", str(store), "--executor", "local")
    assert first.returncode == 0, first.stderr[-3000:]
    assert {s["action"] for s in plan(src, pipeline, store).values()} == {"cached"}

    objective = src / "components" / "training" / "objective.py"  # imported by distill only
    edit(objective, "def _stack(", "# a comment about stacking\ndef _stack(")
    assert {s["action"] for s in plan(src, pipeline, store).values()} == {"cached"}

    edit(objective, "return items[0] if len(items) == 1", "return items[0] if 1 == len(items)")
    steps = plan(src, pipeline, store)
    changed = {k for k, s in steps.items() if s["action"] == "run"}
    assert changed == {"student[0]", "student[1]"}, steps
    for step in ("student[0]", "student[1]"):
        assert steps[step]["reason"] == "code changed: components/training/objective.py"
