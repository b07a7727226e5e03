"""Binding inputs: each instance's input references resolved to producers' outputs, checked.

A reference names a step and an output port (``teacher.model``), one instance of a matrix step
(``expert[15].model``) or all of them as a list (``expert[*].model``). Unknown steps and ports
get "did you mean"; every edge's types must fit (`typecheck.fits`), and every required input
must be connected.
"""

from __future__ import annotations

from typing import Any

from orchestrator.compile.graph import Binding, Source
from orchestrator.compile.matrix import Expansion, Instance, some_ids
from orchestrator.compile.problems import ProblemLog
from orchestrator.compile.refs import Ref
from orchestrator.compile.typecheck import fits, list_item_type, type_name
from orchestrator.component import Component
from orchestrator.errors import did_you_mean


class Binder:
    """Binds the inputs of the instances of ``matrix``; ``classes`` are the components found,
    by spec index (a step whose component is unknown is bound without type checks)."""

    def __init__(
        self, matrix: Expansion, classes: dict[int, type[Component]], log: ProblemLog
    ) -> None:
        self.matrix = matrix
        self.classes = classes
        self.log = log

    def bind(self, inst: Instance) -> dict[str, Binding]:
        cls = self.classes.get(inst.index)
        bindings: dict[str, Binding] = {}
        for port, value in inst.inputs.items():
            base = ("steps", inst.index, "inputs", port)
            if cls is not None and port not in cls.Inputs.model_fields:
                ports = list(cls.Inputs.model_fields)
                self.log.add(
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
                self.log.add(
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
                    self.log.add(
                        "graph",
                        f"input '{name}' of component '{cls.key}' is not connected "
                        f"(expects {type_name(field.annotation)})",
                        ("steps", inst.index, "inputs"),
                        f"add `{name}: <step>.<output>` under inputs",
                    )
        return bindings

    def resolve_ref(self, inst: Instance, port: str, text: str, path: tuple) -> list[Source]:
        try:
            ref = Ref.parse(text)
        except ValueError as e:
            self.log.add("graph", str(e), path)
            return []
        targets = self.matrix.instances.get(ref.step)
        if targets is None:
            self.log.add(
                "graph",
                f"input '{port}' refers to unknown step '{ref.step}'",
                path,
                did_you_mean(ref.step, list(self.matrix.instances)),
            )
            return []
        producer_step = targets[0].step
        if ref.step == inst.step.id:
            self.log.add("graph", f"step '{inst.id}' takes its own output '{text}'", path)
            return []
        if producer_step.matrix and ref.index is None:
            self.log.add(
                "graph",
                f"'{ref.step}' is a matrix step ({some_ids(targets)}); say which instance",
                path,
                f"use '{ref.step}[*].{ref.port}' for all of them as a list, or "
                f"'{targets[0].id}.{ref.port}' for one",
            )
            return []
        if not producer_step.matrix and ref.index is not None:
            self.log.add(
                "graph",
                f"'{ref.step}' is not a matrix step, so '{text}' cannot pick an instance",
                path,
                f"write '{ref.step}.{ref.port}'",
            )
            return []
        chosen = targets
        if ref.index not in (None, "*"):
            picked = self.matrix.by_suffix[ref.step].get(ref.index)
            if picked is None:
                self.log.add(
                    "graph",
                    f"'{text}' names no instance of '{ref.step}' ({some_ids(targets)})",
                    path,
                )
                return []
            chosen = [picked]
        producer_cls = self.classes.get(targets[0].index)
        if producer_cls is not None and ref.port not in producer_cls.Outputs.model_fields:
            outputs = list(producer_cls.Outputs.model_fields)
            self.log.add(
                "graph",
                f"step '{ref.step}' ({producer_cls.key}) has no output '{ref.port}' "
                f"(outputs: {', '.join(outputs) or 'none'})",
                path,
                did_you_mean(ref.port, outputs),
            )
            return []
        return [Source(t.id, ref.port) for t in chosen]

    def check_types(
        self, inst: Instance, port: str, accepted: Any, sources: list[Source], path: tuple
    ) -> None:
        # Instances of one template produce the same type: check (template, port) once, so a
        # gather of 10,000 instances costs one check and one message, not 10,000.
        groups: dict[tuple[str, str], list[Source]] = {}
        for src in sources:
            groups.setdefault((src.step_id.split("[", 1)[0], src.port), []).append(src)
        for (template, out_port), group in groups.items():
            producer = self.classes.get(self.matrix.instances[template][0].index)
            if producer is None:
                continue
            produced = producer.Outputs.model_fields[out_port].annotation
            if not fits(produced, accepted):
                shown = group[0].step_id if len(group) == 1 else f"{template}[*]"
                self.log.add(
                    "graph",
                    f"type mismatch on edge {shown}.{out_port} -> {inst.id}.{port}: "
                    f"'{producer.key}' produces {type_name(produced)}, "
                    f"'{self.classes[inst.index].key}' expects {type_name(accepted)}",
                    path,
                )
