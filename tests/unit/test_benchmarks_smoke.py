"""The benchmark scripts keep working: the one whose smoke mode needs no Ray and no training
runs here (seconds); the others are run by hand (benchmarks/README.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_orchestration_benchmark_smoke() -> None:
    done = subprocess.run(
        [sys.executable, "benchmarks/orchestration.py", "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "per step (ms)" in done.stdout
    assert "validate / plan of a matrix" in done.stdout
    assert "the steps' recorded seconds add up to less than the run: met" in done.stdout
