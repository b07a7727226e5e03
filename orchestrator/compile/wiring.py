"""Each step checked against its wiring, before anything runs (`Component.check_wiring`).

The compiled graph knows, for every step, which input ports are connected, to which outputs,
and how many values a list port receives. Walking the steps in graph order, each component is
first asked what its outputs will be as far as its config tells (`Component.promise`: the
dataset step's domains and split names, say), then handed its `Wiring`: its connections with
the promises of the steps upstream. So a loss that needs a teacher on a step with no teacher
input, or a held-out domain the dataset does not have, is a located validation error instead of
a failure deep into the run. The engine never looks inside a promise; what a promise means is
between the components that make and read it, and whatever is unknown passes.

Linear in the size of the graph; components that override neither hook cost one check each.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from orchestrator.compile.external import guarded, issue_problem
from orchestrator.compile.graph import Graph, Node
from orchestrator.compile.problems import Locator
from orchestrator.compile.typecheck import list_item_type
from orchestrator.component import Component, Upstream, Wiring
from orchestrator.errors import Problem

log = logging.getLogger("kdorch")
_PROMISE = Component.promise.__func__  # type: ignore[attr-defined]
_CHECK = Component.check_wiring.__func__  # type: ignore[attr-defined]


def _overrides(cls: type[Component]) -> tuple[bool, bool]:
    """Whether ``cls`` has its own (promise, check_wiring)."""
    return (
        cls.promise.__func__ is not _PROMISE,  # type: ignore[attr-defined]
        cls.check_wiring.__func__ is not _CHECK,  # type: ignore[attr-defined]
    )


def _is_list(producer: type[Component], port: str) -> bool:
    field = producer.Outputs.model_fields.get(port)
    return field is not None and list_item_type(field.annotation) is not None


def wiring_of(
    node: Node, graph: Graph, promises: dict[tuple[str, str], Any], outside: bool
) -> Wiring:
    """``node``'s connections, with what their producers promised (``promises``)."""
    inputs = {
        port: tuple(
            Upstream(
                step_id=src.step_id,
                port=src.port,
                promise=promises.get((src.step_id, src.port)),
                many=_is_list(graph.nodes[src.step_id].component, src.port),
            )
            for src in binding.sources
        )
        for port, binding in node.bindings.items()
    }
    return Wiring(step_id=node.id, inputs=inputs, outside=outside)


def wiring_problems(graph: Graph, locate: Locator, *, outside: bool = True) -> list[Problem]:
    """Every step's `check_wiring` issues as located problems (each distinct problem once: the
    instances of a matrix step usually share theirs). ``outside``: promises may look outside
    the pipeline (off for `kdorch submit`, whose data this machine may not reach)."""
    promises: dict[tuple[str, str], Any] = {}
    problems: list[Problem] = []
    seen: set[Problem] = set()
    for node in graph.nodes.values():  # graph order: a producer promises before its consumers
        makes, checks = _overrides(node.component)
        if not (makes or checks):
            continue
        wiring = wiring_of(node, graph, promises, outside)
        if makes:
            promised = _promise(node, wiring)
            promises.update({(node.id, port): value for port, value in promised.items()})
        if not checks:
            continue
        check = partial(node.component.check_wiring, node.config, wiring)
        for issue in guarded(node, "wiring", check):
            problem = issue_problem(node, issue, locate, "graph")
            if problem not in seen:
                seen.add(problem)
                problems.append(problem)
    return problems


def _promise(node: Node, wiring: Wiring) -> dict[str, Any]:
    """The node's promise; a promise that breaks is no promise (its consumers check less)."""
    try:
        return dict(node.component.promise(node.config, wiring))
    except Exception:
        log.debug("promise of %s failed", node.id, exc_info=True)
        return {}
