"""Matrix expansion: each step of the spec becomes its instances, one per combination of its
matrix values (one instance for a step without a matrix), with placeholders substituted.

Problems found on the way: placeholders without a value, matrix names never used (their copies
would be identical), names that clash with pipeline params, and instances that would share an
id or, once their configs are validated, a config and inputs (`check_twin`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.compile.problems import ProblemLog
from orchestrator.compile.refs import (
    expand_matrix,
    instance_id,
    instance_suffix,
    placeholders,
    substitute,
)
from orchestrator.errors import did_you_mean
from schemas.engine.pipeline import PipelineSpec, StepSpec


@dataclass
class Instance:
    """One concrete step: a step of the spec with its matrix values filled in."""

    id: str
    index: int  # spec index
    step: StepSpec
    values: dict[str, Any]
    config: dict[str, Any]
    inputs: dict[str, str | list[str]]
    unresolved: bool = False  # a ${name} had no value: its config is not worth validating


SHOWN_IDS = 6


def some_ids(instances: list[Instance]) -> str:
    """Instance ids for a message: all of a few, the first few of many (a matrix may have 10k)."""
    ids = [inst.id for inst in instances[:SHOWN_IDS]]
    if len(instances) > SHOWN_IDS:
        ids.append(f"... {len(instances):,} in all")
    return ", ".join(ids)


class Expansion:
    """The instances of every step of ``spec``, by step id (`expand` fills them in)."""

    def __init__(self, spec: PipelineSpec, log: ProblemLog):
        self.spec = spec
        self.log = log
        self.instances: dict[str, list[Instance]] = {}  # template id -> instances
        self.by_suffix: dict[str, dict[str, Instance]] = {}  # template id -> "[v]" -> instance
        self.twins: dict[tuple[str, str], str] = {}  # (template, config + inputs) -> instance id
        self.unused_names: set[str] = set()  # templates already told their copies are identical

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
            self.log.add(
                "config",
                f"placeholder '${{{name}}}' has no value (matrix names: {shown})",
                ("steps", i),
                did_you_mean(name, [*names, *params]),
            )
        for name in names:
            if name in self.spec.params:
                self.log.add(
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
                self.log.add(
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
            rows: list[Instance] = []
            by_suffix: dict[str, Instance] = {}
            for values in expand_matrix(step.matrix):
                variables = {**self.spec.params, **values}  # params: the same in every step
                config = substitute(step.config, variables, set())
                inputs = substitute(step.inputs, variables, set())
                inst = Instance(
                    instance_id(step.id, values), i, step, values, config, inputs, bool(unknown)
                )
                suffix = instance_suffix(values)
                if suffix in by_suffix:  # values of several names that join to the same text
                    self.log.add(
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

    def check_twin(self, inst: Instance, config: Any) -> None:
        """Two instances of one step with equal config and inputs would be one step twice (one
        cache key): values that read differently but validate the same, such as 1 and 1.0."""
        if not inst.step.matrix or inst.step.id in self.unused_names:
            return
        identity = (inst.step.id, config.model_dump_json() + repr(sorted(inst.inputs.items())))
        twin = self.twins.setdefault(identity, inst.id)
        if twin != inst.id:
            self.log.add(
                "config",
                f"matrix instances '{twin}' and '{inst.id}' get the same config and inputs, so "
                "they would be the same step twice (one cache key)",
                ("steps", inst.index, "matrix"),
                "keep one of the values (1 and 1.0, for example, are the same number)",
            )
