"""The cluster manifests in infra/: parsed, and checked for what a mistake would break."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator import validate

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"


def load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((INFRA / name).read_text())
    assert isinstance(data, dict), name
    return data


def ray_version() -> str:
    import ray

    return str(ray.__version__)


def test_every_yaml_file_parses() -> None:
    files = sorted(INFRA.rglob("*.yaml"))
    assert {f.name for f in files} >= {"raycluster.yaml", "rayjob.yaml", "cluster-aws.yaml"}
    for path in files:
        assert isinstance(yaml.safe_load(path.read_text()), dict), path


def containers(group: dict[str, Any]) -> list[dict[str, Any]]:
    return list(group["template"]["spec"]["containers"])


def check_resources(group: dict[str, Any], where: str) -> None:
    for container in containers(group):
        res = container.get("resources", {})
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(res.get(kind, {})), f"{where}: {kind} missing"
        assert res["requests"] == res["limits"], f"{where}: requests differ from limits"


def check_cluster_spec(spec: dict[str, Any], where: str) -> None:
    assert spec["rayVersion"] == ray_version(), f"{where}: rayVersion != installed Ray"
    assert spec["enableInTreeAutoscaling"] is True, where
    assert spec["autoscalerOptions"]["idleTimeoutSeconds"] > 0, where
    check_resources(spec["headGroupSpec"], f"{where} head")
    assert spec["headGroupSpec"]["rayStartParams"].get("num-cpus") == "0", (
        f"{where}: the head should keep training off it"
    )
    gpu = [
        g
        for g in spec["workerGroupSpecs"]
        if any("nvidia.com/gpu" in c["resources"]["limits"] for c in containers(g))
    ]
    assert gpu, f"{where}: no GPU worker group"
    for group in spec["workerGroupSpecs"]:
        name = f"{where} group {group['groupName']}"
        check_resources(group, name)
        assert 0 <= group["minReplicas"] <= group["maxReplicas"], name
        assert group["maxReplicas"] >= 1, name


def test_raycluster_autoscales_with_sized_groups() -> None:
    cluster = load("kuberay/raycluster.yaml")
    assert cluster["kind"] == "RayCluster"
    check_cluster_spec(cluster["spec"], "raycluster.yaml")


def test_rayjob_runs_an_existing_pipeline_on_object_storage_and_shuts_down() -> None:
    job = load("kuberay/rayjob.yaml")
    assert job["kind"] == "RayJob"
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    check_cluster_spec(spec["rayClusterSpec"], "rayjob.yaml")
    args = shlex.split(spec["entrypoint"])
    assert args[:2] == ["kdorch", "run"], args
    pipeline = ROOT / args[2]
    assert pipeline.is_file(), f"the RayJob runs {args[2]}, which does not exist"
    storage = args[args.index("--storage") + 1]
    assert re.match(r"^(s3|gs|abfs)://[^/]+", storage), storage
    profile = args[args.index("--profile") + 1] if "--profile" in args else None
    validate(pipeline, profile=profile, address="ray://cluster")  # a cluster: no local capacity


def test_cluster_launcher_node_types_match() -> None:
    config = load("cluster-aws.yaml")
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    workers = {k: v for k, v in types.items() if k != config["head_node_type"]}
    assert any(v["resources"].get("GPU") for v in workers.values()), "no GPU node type"
    for name, node in workers.items():
        assert 0 <= node["min_workers"] <= node["max_workers"], name
        assert node["resources"].get("CPU"), f"{name}: the autoscaler needs its resources"
    assert config["max_workers"] >= max(v["max_workers"] for v in workers.values())
    assert config["idle_timeout_minutes"] > 0
    assert types[config["head_node_type"]]["resources"]["CPU"] == 0


@pytest.mark.parametrize("name", ["kuberay/raycluster.yaml", "kuberay/rayjob.yaml"])
def test_images_match_the_dockerfile_ray_version(name: str) -> None:
    dockerfile = (INFRA / "Dockerfile").read_text()
    base = re.search(r"rayproject/ray:([\d.]+)", dockerfile)
    assert base and base.group(1) == ray_version()
    text = (INFRA / name).read_text()
    assert "registry.example.com/kdorch:" in text
    for package in ("orchestrator", "components", "schemas", "pipelines"):
        assert f"COPY --chown=ray:users {package}" in dockerfile
