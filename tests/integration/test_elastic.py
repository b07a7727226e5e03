"""Elastic training on a real autoscaling cluster (infra/local_autoscaling.py): a train step
asks for 2 Ray Train workers but accepts 1 (`scaling.min_workers`); the 1-CPU head holds one
worker, so training starts on it while Ray Train asks the autoscaler for the second; once the
new node is up, Ray Train restarts the workers from the last checkpoint as 2 and training
continues where it was. Each epoch's history records how many workers ran it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.autoscaling import local_cluster, submitted

pytestmark = [pytest.mark.ray, pytest.mark.slow]

PIPELINE = """
name: elastic
storage_options: {{endpoint_url: "{endpoint}"}}
steps:
  - id: data
    component: dataset
    config: {{source: digits, splits: {{train: 0.8, val: 0.2}}}}
  - id: grow
    component: train
    inputs: {{data: data.dataset}}
    config:
      model: {{arch: mlp, hidden: [32]}}
      epochs: 100  # ~0.3 s each (a checkpoint per epoch): growth comes after ~35
      checkpoint_every_s: 0  # every epoch: a resize loses none
      scaling: {{num_workers: 2, min_workers: 1, resize_interval_s: 2}}
"""


def test_training_grows_when_the_autoscaler_adds_a_node(s3_server: dict, tmp_path: Path) -> None:
    with (
        local_cluster(head_cpus=1, worker_cpus=1, max_workers=1, idle_timeout_s=5) as cluster,
        submitted(cluster, s3_server, f"elastic-{tmp_path.name}", PIPELINE) as run,
    ):
        grow = next(s for s in run.record()["steps"] if s["step_id"] == "grow")
        history = grow["outputs"]["history"]
        workers = [int(epoch["workers"]) for epoch in history]
        print("workers per epoch:", workers)
        # Every epoch once, the last included (the weights come from the last checkpoint).
        assert [int(epoch["epoch"]) for epoch in history] == list(range(100))
        # Started with the one worker the head could hold, grew to two, never shrank.
        assert workers[0] == 1 and workers[-1] == 2 and workers == sorted(workers), workers
        assert grow["outputs"]["model"]["metrics"]["resumes"] >= 1
        assert grow["outputs"]["metrics"]["val_accuracy"] > 0.5  # it trained, across the resize
        assert max(n for _, n in run.counts) == 2, run.counts
