"""Two DDP workers on held rows that do not split evenly: every worker must run the same number
of batches, or the one with a batch more waits in its gradient all-reduce for ever."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.ray


def test_held_rows_that_split_unevenly_do_not_hang_ddp(ray_cluster: str, tmp_path: Path) -> None:
    # digits, max_rows 1001: 601 training rows. Rows rank::2 would give worker 0 301 rows (two
    # batches of 300) and worker 1 300 rows (one batch): before the fix, a hang.
    pipeline = {
        "name": "ddp_uneven",
        "steps": [
            {"id": "data", "component": "dataset",
             "config": {"source": "digits", "max_rows": 1001}},
            {"id": "student", "component": "train", "inputs": {"data": "data.dataset"},
             "config": {"model": {"arch": "mlp", "hidden": [16]}, "epochs": 2,
                        "batch_size": 300, "scaling": {"num_workers": 2}}},
        ],
    }  # fmt: skip
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(pipeline))
    cmd = [sys.executable, "-m", "orchestrator", "run", str(path), "--json"]
    cmd += ["--storage", str(tmp_path / "store"), "--address", ray_cluster]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=420, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(done.stdout)
    data, student = record["steps"]
    assert data["outputs"]["dataset"]["splits"]["train"] == 601  # the uneven case
    assert student["status"] == "ran" and len(student["outputs"]["history"]) == 2
