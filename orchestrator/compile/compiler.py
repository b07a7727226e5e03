"""Compile a `PipelineSpec` into a validated `Graph`, reporting every problem at once.

Checks, in order: duplicate step ids; unknown components; matrix placeholders, unused matrix
names and instances that would share an id; each step's config against its component's Config
model (non-finite numbers included); input ports and references (unknown steps and ports get
"did you mean"); edge types; required inputs; cycles; resources no node could give.

Everything here is linear in the size of the pipeline (steps, matrix instances, edges), up to a
log factor for the ready queue: a 10,000-value matrix compiles in about a second
(benchmarks/compile_scaling.py).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from orchestrator import registry
from orchestrator.compile.finite import non_finite_values
from orchestrator.compile.graph import Binding, Graph, Node, Source
from orchestrator.compile.problems import (
    NON_FINITE_HINT,
    Locator,
    make_locator,
    problems_from_validation_error,
    yaml_number,
)
from orchestrator.compile.refs import (
    Ref,
    expand_matrix,
    format_value,
    instance_id,
    instance_suffix,
    placeholders,
    substitute,
)
from orchestrator.compile.source_map import SourceMap
from orchestrator.compile.typecheck import fits, list_item_type, type_name
from orchestrator.component import Component
from orchestrator.errors import Problem, ValidationFailed, did_you_mean
from schemas.engine.pipeline import PipelineSpec, Resources, StepSpec


@dataclass
class _Instance:
    id: str
    index: int  # spec index
    step: StepSpec
    values: dict[str, Any]
    config: dict[str, Any]
    inputs: dict[str, str | list[str]]
    unresolved: bool = False  # a ${name} had no value: its config is not worth validating


SHOWN_IDS = 6


def _some_ids(instances: list[_Instance]) -> str:
    """Instance ids for a message: all of a few, the first few of many (a matrix may have 10k)."""
    ids = [inst.id for inst in instances[:SHOWN_IDS]]
    if len(instances) > SHOWN_IDS:
        ids.append(f"... {len(instances):,} in all")
    return ", ".join(ids)


def merged_resources(component: type[Component], step: StepSpec, config: Any = None) -> Resources:
    """The resources of the step's task: what the component asks for with this config
    (`Component.task_resources`), overridden field by field by the step's ``resources``."""
    own = component.task_resources(config) if config is not None else component.default_resources
    base = own.model_dump()
    for name, value in step.resources.model_dump().items():
        if value is not None and value != {}:
            base[name] = value
    return Resources(**base)


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


def resource_request(node: Node) -> dict[str, float]:
    """Everything a node needs from the cluster: its task plus the workers it starts."""
    res = node.resources
    need: dict[str, float] = {"CPU": res.num_cpus or 0.0, "GPU": res.num_gpus or 0.0}
    need.update(res.custom)
    for name, amount in node.component.resource_demand(node.config).items():
        need[name] = need.get(name, 0.0) + amount
    return {k: v for k, v in need.items() if v}


class _Compiler:
    def __init__(self, spec: PipelineSpec, source_map: SourceMap | None):
        self.spec = spec
        self.problems: list[Problem] = []
        self.locate: Locator = make_locator(source_map, [s.id for s in spec.steps])
        self.reported: set[Problem] = set()  # the same mistake seen from many instances: once
        self.classes: dict[int, type[Component]] = {}
        self.instances: dict[str, list[_Instance]] = {}  # template id -> instances
        self.by_suffix: dict[str, dict[str, _Instance]] = {}  # template id -> "[v]" -> instance
        self.twins: dict[tuple[str, str], str] = {}  # (template, config + inputs) -> instance id
        self.unused_names: set[str] = set()  # templates already told their copies are identical

    def report(self, problems: Iterable[Problem]) -> None:
        for problem in problems:
            if problem not in self.reported:
                self.reported.add(problem)
                self.problems.append(problem)

    def add(
        self, kind: str, message: str, path: tuple, hint: str | None = None, at_key: bool = False
    ) -> None:
        self.report([Problem(kind, message, self.locate(path, at_key=at_key), hint)])

    def check_ids(self) -> None:
        first: dict[str, int] = {}
        for i, step in enumerate(self.spec.steps):
            if step.id in first:
                self.add(
                    "graph",
                    f"duplicate step id '{step.id}' (already used by steps[{first[step.id]}])",
                    ("steps", i, "id"),
                    "step ids must be unique: rename one of them",
                )
            else:
                first[step.id] = i

    def resolve_components(self) -> None:
        for i, step in enumerate(self.spec.steps):
            try:
                self.classes[i] = registry.get(step.component)
            except registry.UnknownComponent as e:
                known = ", ".join(registry.known_keys())
                self.add(
                    "config",
                    f"unknown component '{step.component}'",
                    ("steps", i, "component"),
                    e.hint or f"known components: {known} (see `kdorch components`)",
                )

    def check_placeholders(self, i: int, step: StepSpec) -> set[str]:
        """Report unknown placeholders and unused matrix names once per step; the unknown ones."""
        names = list(step.matrix or {})
        params = list(self.spec.params)
        used = placeholders(step.config) | placeholders(step.inputs)
        unknown = used - set(names) - set(params)
        for name in sorted(unknown):
            shown = ", ".join(names) or "none: this step has no matrix"
            if params:
                shown += f"; pipeline params: {', '.join(params)}"
            self.add(
                "config",
                f"placeholder '${{{name}}}' has no value (matrix names: {shown})",
                ("steps", i),
                did_you_mean(name, [*names, *params]),
            )
        for name in names:
            if name in self.spec.params:
                self.add(
                    "config",
                    f"matrix name '{name}' is also a pipeline param: rename one of them",
                    ("steps", i, "matrix", name),
                    at_key=True,
                )
        # With a misspelt placeholder the name it meant looks unused: one message is enough.
        unused = {n for n in names if n not in used} if not unknown else set()
        for name in names:
            if name in unused:
                count = len((step.matrix or {})[name])
                self.add(
                    "config",
                    f"matrix name '{name}' is never used as '${{{name}}}' in the step's config or "
                    f"inputs, so its {count} values would make identical copies of the step "
                    "(same config, same inputs, same cache key)",
                    ("steps", i, "matrix", name),
                    f"write '${{{name}}}' where its value should go in the config or inputs, "
                    f"or remove '{name}' from the matrix",
                    at_key=True,
                )
        if unused:
            self.unused_names.add(step.id)
        return unknown

    def expand(self) -> None:
        for i, step in enumerate(self.spec.steps):
            if step.id in self.instances:  # duplicate id, already reported
                continue
            unknown = self.check_placeholders(i, step)
            rows: list[_Instance] = []
            by_suffix: dict[str, _Instance] = {}
            for values in expand_matrix(step.matrix):
                variables = {**self.spec.params, **values}  # params: the same in every step
                config = substitute(step.config, variables, set())
                inputs = substitute(step.inputs, variables, set())
                inst = _Instance(
                    instance_id(step.id, values), i, step, values, config, inputs, bool(unknown)
                )
                suffix = instance_suffix(values)
                if suffix in by_suffix:  # values of several names that join to the same text
                    self.add(
                        "config",
                        f"matrix instances {by_suffix[suffix].values} and {values} would both "
                        f"be '{inst.id}'; one would silently replace the other",
                        ("steps", i, "matrix"),
                        "matrix values must not contain ',' when a matrix has several names",
                    )
                    continue
                by_suffix[suffix] = inst
                rows.append(inst)
            self.instances[step.id] = rows
            self.by_suffix[step.id] = by_suffix

    def build_config(self, inst: _Instance) -> Any:
        cls = self.classes.get(inst.index)
        if cls is None or inst.unresolved:
            return None
        base = ("steps", inst.index, "config")
        try:
            config = cls.Config.model_validate(inst.config)
        except ValidationError as e:
            self.report(problems_from_validation_error(e, base, self.locate, cls.Config))
            return None
        bad = non_finite_values(config)
        for path, value in bad:
            self.add(
                "config",
                f"expected a finite number, got {yaml_number(value)}",
                (*base, *path),
                NON_FINITE_HINT,
            )
        if bad:
            return None
        self.check_twin(inst, config)
        return config

    def check_twin(self, inst: _Instance, config: Any) -> None:
        """Two instances of one step with equal config and inputs would be one step twice (one
        cache key): values that read differently but validate the same, such as 1 and 1.0."""
        if not inst.step.matrix or inst.step.id in self.unused_names:
            return
        identity = (inst.step.id, config.model_dump_json() + repr(sorted(inst.inputs.items())))
        twin = self.twins.setdefault(identity, inst.id)
        if twin != inst.id:
            self.add(
                "config",
                f"matrix instances '{twin}' and '{inst.id}' get the same config and inputs, so "
                "they would be the same step twice (one cache key)",
                ("steps", inst.index, "matrix"),
                "keep one of the values (1 and 1.0, for example, are the same number)",
            )

    def resolve_ref(self, inst: _Instance, port: str, text: str, path: tuple) -> list[Source]:
        try:
            ref = Ref.parse(text)
        except ValueError as e:
            self.add("graph", str(e), path)
            return []
        targets = self.instances.get(ref.step)
        if targets is None:
            self.add(
                "graph",
                f"input '{port}' refers to unknown step '{ref.step}'",
                path,
                did_you_mean(ref.step, list(self.instances)),
            )
            return []
        producer_step = targets[0].step
        if ref.step == inst.step.id:
            self.add("graph", f"step '{inst.id}' takes its own output '{text}'", path)
            return []
        if producer_step.matrix and ref.index is None:
            self.add(
                "graph",
                f"'{ref.step}' is a matrix step ({_some_ids(targets)}); say which instance",
                path,
                f"use '{ref.step}[*].{ref.port}' for all of them as a list, or "
                f"'{targets[0].id}.{ref.port}' for one",
            )
            return []
        if not producer_step.matrix and ref.index is not None:
            self.add(
                "graph",
                f"'{ref.step}' is not a matrix step, so '{text}' cannot pick an instance",
                path,
                f"write '{ref.step}.{ref.port}'",
            )
            return []
        chosen = targets
        if ref.index not in (None, "*"):
            picked = self.by_suffix[ref.step].get(ref.index)
            if picked is None:
                self.add(
                    "graph",
                    f"'{text}' names no instance of '{ref.step}' ({_some_ids(targets)})",
                    path,
                )
                return []
            chosen = [picked]
        producer_cls = self.classes.get(targets[0].index)
        if producer_cls is not None and ref.port not in producer_cls.Outputs.model_fields:
            outputs = list(producer_cls.Outputs.model_fields)
            self.add(
                "graph",
                f"step '{ref.step}' ({producer_cls.key}) has no output '{ref.port}' "
                f"(outputs: {', '.join(outputs) or 'none'})",
                path,
                did_you_mean(ref.port, outputs),
            )
            return []
        return [Source(t.id, ref.port) for t in chosen]

    def bind(self, inst: _Instance) -> dict[str, Binding]:
        cls = self.classes.get(inst.index)
        bindings: dict[str, Binding] = {}
        for port, value in inst.inputs.items():
            base = ("steps", inst.index, "inputs", port)
            if cls is not None and port not in cls.Inputs.model_fields:
                ports = list(cls.Inputs.model_fields)
                self.add(
                    "graph",
                    f"component '{cls.key}' has no input '{port}' "
                    f"(inputs: {', '.join(ports) or 'none'})",
                    base,
                    did_you_mean(port, ports),
                    at_key=True,
                )
                continue
            texts = value if isinstance(value, list) else [value]
            sources: list[Source] = []
            for j, text in enumerate(texts):
                path = (*base, j) if isinstance(value, list) else base
                sources += self.resolve_ref(inst, port, text, path)
            gathered = isinstance(value, list) or any("[*]" in t for t in texts)
            accepted = cls.Inputs.model_fields[port].annotation if cls is not None else Any
            takes_list = list_item_type(accepted) is not None
            if gathered and cls is not None and not takes_list:
                self.add(
                    "graph",
                    f"input '{port}' of '{cls.key}' takes one {type_name(accepted)}, "
                    f"but a list of {len(sources)} is bound",
                    base,
                    "bind a single 'step.port' reference",
                )
                continue
            self.check_types(inst, port, accepted, sources, base)
            bindings[port] = Binding(port, tuple(sources), gathered=gathered, as_list=takes_list)
        if cls is not None:
            for name, field in cls.Inputs.model_fields.items():
                if field.is_required() and name not in inst.inputs:
                    self.add(
                        "graph",
                        f"input '{name}' of component '{cls.key}' is not connected "
                        f"(expects {type_name(field.annotation)})",
                        ("steps", inst.index, "inputs"),
                        f"add `{name}: <step>.<output>` under inputs",
                    )
        return bindings

    def check_types(
        self, inst: _Instance, port: str, accepted: Any, sources: list[Source], path: tuple
    ) -> None:
        # Instances of one template produce the same type: check (template, port) once, so a
        # gather of 10,000 instances costs one check and one message, not 10,000.
        groups: dict[tuple[str, str], list[Source]] = {}
        for src in sources:
            groups.setdefault((src.step_id.split("[", 1)[0], src.port), []).append(src)
        for (template, out_port), group in groups.items():
            producer = self.classes.get(self.instances[template][0].index)
            if producer is None:
                continue
            produced = producer.Outputs.model_fields[out_port].annotation
            if not fits(produced, accepted):
                shown = group[0].step_id if len(group) == 1 else f"{template}[*]"
                self.add(
                    "graph",
                    f"type mismatch on edge {shown}.{out_port} -> {inst.id}.{port}: "
                    f"'{producer.key}' produces {type_name(produced)}, "
                    f"'{self.classes[inst.index].key}' expects {type_name(accepted)}",
                    path,
                )

    def topological(self, nodes: dict[str, Node]) -> dict[str, Node]:
        """Kahn's algorithm; of the steps ready at once, the earliest in the file goes first.

        O((nodes + edges) log nodes): each node enters the ready heap once, keyed by its file
        position, and each edge is followed once (through a consumer index built up front).
        """
        position = {nid: i for i, nid in enumerate(nodes)}
        consumers: dict[str, list[str]] = {nid: [] for nid in nodes}
        indegree: dict[str, int] = {}
        for nid, node in nodes.items():
            known = [u for u in node.upstream if u in position]
            indegree[nid] = len(known)
            for up in known:
                consumers[up].append(nid)
        ready = [(position[nid], nid) for nid, d in indegree.items() if d == 0]
        heapq.heapify(ready)
        ordered: list[str] = []
        while ready:
            _, current = heapq.heappop(ready)
            ordered.append(current)
            for nid in consumers[current]:
                indegree[nid] -= 1
                if indegree[nid] == 0:
                    heapq.heappush(ready, (position[nid], nid))
        if len(ordered) < len(nodes):
            done = set(ordered)
            cycle = _find_cycle({nid: set(nodes[nid].upstream) for nid in nodes if nid not in done})
            node = nodes[cycle[0]]
            self.add(
                "graph",
                "cycle: " + " -> ".join([*cycle, cycle[0]]),
                ("steps", node.spec_index, "inputs"),
                "a step cannot depend on its own outputs, directly or through others",
            )
            return nodes
        return {nid: nodes[nid] for nid in ordered}

    def check_resources(
        self, graph_nodes: Mapping[str, Node], capacity: Mapping[str, float]
    ) -> None:
        self.report(capacity_problems(graph_nodes.values(), capacity, self.locate))

    def run(self, capacity: Mapping[str, float] | None) -> Graph:
        self.check_ids()
        self.resolve_components()
        self.expand()
        nodes: dict[str, Node] = {}
        for rows in self.instances.values():
            for inst in rows:
                config = self.build_config(inst)
                bindings = self.bind(inst)
                cls = self.classes.get(inst.index)
                if cls is None or config is None:
                    continue
                nodes[inst.id] = Node(
                    id=inst.id,
                    template=inst.step.id,
                    spec_index=inst.index,
                    component=cls,
                    config=config,
                    bindings=bindings,
                    resources=merged_resources(cls, inst.step, config),
                    cache=inst.step.cache,
                    matrix_values=inst.values,
                )
        ordered = self.topological(nodes)
        if capacity is not None:
            self.check_resources(ordered, capacity)
        if self.problems:
            raise ValidationFailed(self.problems, source=self.locate(()).file)
        return Graph(self.spec, ordered)


def _find_cycle(upstream: Mapping[str, set[str]]) -> list[str]:
    """One cycle among nodes that Kahn's algorithm could not order, as a list of ids."""
    start = next(iter(upstream))
    path: list[str] = []
    at: dict[str, int] = {}  # position in path: membership without scanning the list
    current = start
    while current not in at:
        at[current] = len(path)
        path.append(current)
        current = min(u for u in upstream[current] if u in upstream)
    cycle = path[at[current] :]
    cycle.reverse()  # producer -> consumer order reads naturally
    return cycle


def compile_pipeline(
    spec: PipelineSpec,
    source_map: SourceMap | None = None,
    capacity: Mapping[str, float] | None = None,
) -> Graph:
    """Validate ``spec`` and build its graph; raises `ValidationFailed` listing every problem."""
    return _Compiler(spec, source_map).run(capacity)


__all__ = ["compile_pipeline", "format_value", "merged_resources", "resource_request"]
