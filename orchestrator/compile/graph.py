"""The compiled graph: concrete steps (matrix expanded), typed configs, resolved edges."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pydantic import BaseModel

from orchestrator.component import Component
from schemas.engine.pipeline import CachePolicy, PipelineSpec, Resources


@dataclass(frozen=True)
class Source:
    """One upstream value feeding a port: ``step_id``'s output ``port``."""

    step_id: str
    port: str


@dataclass(frozen=True)
class Binding:
    """What an input port receives.

    ``gathered``: the sources were written as a list (or ``step[*].port``), so the port receives
    the list of their values. Otherwise there is one source; ``as_list`` says the port is a list
    port, so a single non-list value arrives wrapped in a one-item list.
    """

    port: str
    sources: tuple[Source, ...]
    gathered: bool
    as_list: bool


@dataclass(frozen=True)
class Node:
    id: str  # instance id: "teacher", or "expert[15]" for a matrix instance
    template: str  # the StepSpec id it came from
    spec_index: int  # position in PipelineSpec.steps, for error locations
    component: type[Component]
    config: BaseModel
    bindings: dict[str, Binding]
    resources: Resources
    cache: CachePolicy
    matrix_values: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def upstream(self) -> frozenset[str]:
        # Cached: the scheduler and compiler ask for it per node many times; bindings are fixed.
        return frozenset(s.step_id for b in self.bindings.values() for s in b.sources)


@dataclass
class Graph:
    """Nodes in a topological order (ties broken by file order, so runs are predictable)."""

    spec: PipelineSpec
    nodes: dict[str, Node]

    @property
    def order(self) -> list[str]:
        return list(self.nodes)

    @cached_property
    def _children(self) -> dict[str, set[str]]:
        children: dict[str, set[str]] = {nid: set() for nid in self.nodes}
        for node in self.nodes.values():
            for up in node.upstream:
                children.setdefault(up, set()).add(node.id)
        return children

    def downstream(self, step_id: str) -> set[str]:
        return set(self._children.get(step_id, ()))

    def descendants(self, step_id: str) -> set[str]:
        seen: set[str] = set()
        frontier = [step_id]
        while frontier:
            for child in self.downstream(frontier.pop()):
                if child not in seen:
                    seen.add(child)
                    frontier.append(child)
        return seen

    def edges(self) -> list[tuple[str, str, str]]:
        """(producer, consumer, "out_port -> in_port") for every edge."""
        out = []
        for node in self.nodes.values():
            for binding in node.bindings.values():
                for src in binding.sources:
                    out.append((src.step_id, node.id, f"{src.port} -> {binding.port}"))
        return out
