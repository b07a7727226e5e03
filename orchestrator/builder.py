"""Building a pipeline in Python. It produces the same `PipelineSpec` a YAML file does.

```python
from orchestrator import Pipeline

p = Pipeline("hinton_kd")
data = p.add("data", "dataset", config={"source": "digits"})
teacher = p.add("teacher", "train", inputs={"data": data.dataset}, config={"epochs": 5})
p.to_yaml()        # the equivalent YAML file
p.run()            # RunRecord
```
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from orchestrator import api, registry
from orchestrator.compile.refs import format_value
from orchestrator.component import Component
from orchestrator.frontend.loader import dump_pipeline, load_pipeline, parse_spec
from schemas.engine.pipeline import MatrixValue, PipelineSpec, Resources

if TYPE_CHECKING:
    from orchestrator.compile.graph import Graph
    from orchestrator.execution.decide import Decision
    from schemas.engine.run import RunRecord


@dataclass(frozen=True)
class OutputRef:
    """An output port of a step, usable as an input of another: ``teacher.model``."""

    step: str
    port: str
    index: str | None = None

    def __str__(self) -> str:
        index = f"[{self.index}]" if self.index is not None else ""
        return f"{self.step}{index}.{self.port}"


class StepHandle:
    """What `Pipeline.add` returns: attributes are its output ports.

    For a matrix step, ``handle.all.port`` gathers every instance into a list and
    ``handle[value].port`` (or ``handle["${name}"].port`` inside another matrix) picks one.
    """

    def __init__(self, step_id: str, index: str | None = None):
        self._step_id = step_id
        self._index = index

    @property
    def id(self) -> str:
        return self._step_id

    @property
    def all(self) -> StepHandle:
        return StepHandle(self._step_id, "*")

    def __getitem__(self, value: Any) -> StepHandle:
        return StepHandle(self._step_id, format_value(value))

    def __getattr__(self, port: str) -> OutputRef:
        if port.startswith("_"):
            raise AttributeError(port)
        return OutputRef(self._step_id, port, self._index)

    def __repr__(self) -> str:
        return f"StepHandle({self._step_id!r})"


def _ref_text(value: Any) -> str | list[str]:
    if isinstance(value, OutputRef | str):
        return str(value)
    if isinstance(value, Sequence):
        return [str(v) for v in value]
    raise TypeError(f"an input must be an output reference or a list of them, got {value!r}")


class Pipeline:
    """A pipeline under construction; `spec` validates and returns it."""

    def __init__(
        self,
        name: str,
        *,
        description: str = "",
        storage: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
        ray: Mapping[str, Any] | BaseModel | None = None,
        profiles: Mapping[str, Mapping[str, Any]] | None = None,
    ):
        self._header: dict[str, Any] = {"name": name}
        if description:
            self._header["description"] = description
        if storage:
            self._header["storage"] = storage
        if storage_options:
            self._header["storage_options"] = dict(storage_options)
        if ray is not None:
            self._header["ray"] = (
                ray.model_dump(exclude_unset=True) if isinstance(ray, BaseModel) else dict(ray)
            )
        if profiles:
            self._header["profiles"] = {k: dict(v) for k, v in profiles.items()}
        self._steps: list[dict[str, Any]] = []

    def add(
        self,
        step_id: str,
        component: str | type[Component],
        *,
        config: Mapping[str, Any] | BaseModel | None = None,
        inputs: Mapping[str, Any] | None = None,
        resources: Resources | Mapping[str, Any] | None = None,
        cache: str = "default",
        matrix: Mapping[str, Sequence[MatrixValue]] | None = None,
        description: str = "",
    ) -> StepHandle:
        """Add a step; ``component`` is a registered key or a `Component` class (registered now)."""
        if isinstance(component, type):
            registry.register(component)
            component = component.key
        step: dict[str, Any] = {"id": step_id, "component": component}
        if description:
            step["description"] = description
        if matrix:
            step["matrix"] = {k: list(v) for k, v in matrix.items()}
        if inputs:
            step["inputs"] = {port: _ref_text(v) for port, v in inputs.items()}
        if config is not None:
            step["config"] = (
                config.model_dump(mode="json", exclude_unset=True)
                if isinstance(config, BaseModel)
                else dict(config)
            )
        if resources is not None:
            step["resources"] = (
                resources.model_dump(exclude_defaults=True)
                if isinstance(resources, BaseModel)
                else dict(resources)
            )
        if cache != "default":
            step["cache"] = cache
        self._steps.append(step)
        return StepHandle(step_id)

    @property
    def spec(self) -> PipelineSpec:
        return parse_spec({**self._header, "steps": self._steps})

    def to_yaml(self) -> str:
        return dump_pipeline(self.spec)

    @classmethod
    def load(cls, path: str | Path) -> PipelineSpec:
        return load_pipeline(path).spec

    def validate(self, **kwargs: Any) -> Graph:
        return api.validate(self.spec, **kwargs)

    def plan(self, **kwargs: Any) -> list[Decision]:
        return api.plan(self.spec, **kwargs)

    def run(self, **kwargs: Any) -> RunRecord:
        return api.run(self.spec, **kwargs)
