"""What a step needs from the cluster, and the one check that the cluster has it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from orchestrator.compile.graph import Node
from orchestrator.compile.problems import Locator
from orchestrator.component import Component
from orchestrator.errors import Problem
from schemas.engine.pipeline import Resources, StepSpec


def merged_resources(component: type[Component], step: StepSpec, config: Any = None) -> Resources:
    """The resources of the step's task: what the component asks for with this config
    (`Component.task_resources`), overridden field by field by the step's ``resources``."""
    own = component.task_resources(config) if config is not None else component.default_resources
    base = own.model_dump()
    for name, value in step.resources.model_dump().items():
        if value is not None and value != {}:
            base[name] = value
    return Resources(**base)


def resource_request(node: Node) -> dict[str, float]:
    """Everything a node needs from the cluster: its task plus the workers it starts."""
    res = node.resources
    need: dict[str, float] = {"CPU": res.num_cpus or 0.0, "GPU": res.num_gpus or 0.0}
    need.update(res.custom)
    for name, amount in node.component.resource_demand(node.config).items():
        need[name] = need.get(name, 0.0) + amount
    return {k: v for k, v in need.items() if v}


def capacity_problems(
    nodes: Iterable[Node], capacity: Mapping[str, float], locate: Locator
) -> list[Problem]:
    """A problem for every node that needs more of a resource than ``capacity`` has (the one
    capacity check: compile-time for an embedded Ray, and against a cluster once connected)."""
    problems = []
    for node in nodes:
        for name, amount in resource_request(node).items():
            have = capacity.get(name, 0.0)
            if amount > have + 1e-9:
                problems.append(
                    Problem(
                        "resources",
                        f"step '{node.id}' needs {amount:g} {name} but the cluster has {have:g}",
                        locate(("steps", node.spec_index, "resources"), at_key=True),
                        "lower the step's resources/workers, or run on a cluster that has them "
                        "(--address)",
                    )
                )
    return problems
