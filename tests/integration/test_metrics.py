"""kdorch's metrics reach Ray's Prometheus endpoint during a run (what the dashboard shows)."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest

from orchestrator import Pipeline, run

pytestmark = pytest.mark.ray


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode())


def test_step_training_and_inference_metrics_are_exported(
    ray_cluster: str, ray_metrics_port: int, tmp_path: Path
) -> None:
    p = Pipeline("metrics", storage=str(tmp_path / "store"))
    data = p.add("data", "dataset", config={"source": "digits", "max_rows": 400})
    teacher = p.add(
        "teacher",
        "train",
        inputs={"data": data.dataset},
        config={"model": {"arch": "mlp", "hidden": [16]}, "epochs": 3},
    )
    p.add("logits", "teacher_inference", inputs={"teacher": teacher.model, "data": data.dataset})
    assert run(p.spec).status.value == "succeeded"
    run(p.spec)  # all cached
    wanted = {
        "ray_kdorch_steps_total{",
        "ray_kdorch_step_seconds_bucket{",
        "ray_kdorch_training_epoch{",
        "ray_kdorch_training_samples_per_second{",
        "ray_kdorch_inference_rows_per_second{",
    }
    deadline, text = time.time() + 60, ""
    while time.time() < deadline:
        text = scrape(ray_metrics_port)
        if all(w in text for w in wanted) and 'status="cached"' in text:
            break
        time.sleep(1)
    missing = [w for w in wanted if w not in text]
    assert not missing, missing
    lines = [line for line in text.splitlines() if line.startswith("ray_kdorch_steps_total{")]
    assert any('status="ran"' in line and 'component="train"' in line for line in lines), lines
    assert any('status="cached"' in line for line in lines), lines
