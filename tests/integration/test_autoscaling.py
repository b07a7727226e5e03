"""A pipeline submitted to a real autoscaling cluster on this machine (Ray's fake multi-node
provider; infra/local_autoscaling.py): the head is too small for the fan-out, the autoscaler
adds worker nodes, steps run on several nodes with artifacts on the local S3 server, the run
succeeds, a second submit is fully cached, and idle nodes are removed afterwards.

The code is not shipped (`--no-ship`, as with an image that holds kdorch): the fake nodes share
one temp dir, and two nodes unpacking the same working_dir package there at once can race."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.autoscaling import kdorch, local_cluster, submitted

pytestmark = [pytest.mark.ray, pytest.mark.slow]

PIPELINE = """
name: autoscale
storage_options: {{endpoint_url: "{endpoint}"}}
ray:
  runtime_env: {{env_vars: {{KDORCH_PLUGINS: tests.support.toy_components}}}}
steps:
  - id: src
    component: toy_source
    config: {{count: 3}}
  - id: wide  # 4 steps of 2 CPUs each: the 1-CPU head can run none of them
    component: toy_scale
    matrix: {{factor: [2, 3, 4, 5]}}
    inputs: {{numbers: src.numbers}}
    config: {{factor: "${{factor}}", sleep: 4}}
    resources: {{num_cpus: 2}}
  - id: total
    component: toy_gather
    inputs: {{parts: "wide[*].numbers"}}
"""


def test_steps_spread_over_nodes_the_autoscaler_adds(s3_server: dict, tmp_path: Path) -> None:
    with (
        local_cluster(head_cpus=1, worker_cpus=2, max_workers=2, idle_timeout_s=5) as cluster,
        submitted(cluster, s3_server, f"autoscale-{tmp_path.name}", PIPELINE) as first,
    ):
        status = kdorch("status", first.job, "--address", cluster.dashboard_url)
        assert status.returncode == 0 and "SUCCEEDED" in status.stdout, status.stdout
        assert "6 ran" in status.stdout, status.stdout
        logs = kdorch("logs", first.job, "--address", cluster.dashboard_url)
        assert "wide[5]" in logs.stdout

        nodes = {s["step_id"]: s["node"] for s in first.record()["steps"]}
        wide_nodes = {nodes[f"wide[{f}]"] for f in (2, 3, 4, 5)}
        assert len(wide_nodes) >= 2, nodes  # the fan-out ran on more than one node
        assert max(n for _, n in first.counts) >= 2, first.counts  # the autoscaler added nodes

        again = first.submit()
        cached = kdorch("status", again, "--address", cluster.dashboard_url)
        assert "6 cached" in cached.stdout, cached.stdout

        deadline = time.monotonic() + 120
        while len(cluster.nodes()) > 1 and time.monotonic() < deadline:
            time.sleep(1.0)
        assert len(cluster.nodes()) == 1, "idle worker nodes were not removed"
