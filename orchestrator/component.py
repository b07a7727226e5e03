"""What a component is: three Pydantic models and one method.

```python
class Train(Component):
    key = "train"
    version = "1"
    Config = TrainConfig      # the step's `config:` is validated into this
    Inputs = TrainInputs      # field names are input ports; types are checked on every edge
    Outputs = TrainOutputs    # field names are output ports

    def run(self, inputs: TrainInputs, ctx: StepContext) -> TrainOutputs: ...
```
`run` reads only its inputs and config, writes only where the context says, and returns typed
references; the executor seals and fingerprints what it returns. The step's cache key covers the
component's code (see `orchestrator.storage.fingerprint`), so editing it invalidates old results
by itself; ``version`` is for what the code does not show (a change of a data file, a model
download) and for components that opt out with ``fingerprint_code = False``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel

from schemas.engine.pipeline import Resources

if TYPE_CHECKING:
    from orchestrator.execution.context import StepContext


class NoInputs(BaseModel):
    """For components that take nothing (data sources)."""

    model_config = {"extra": "forbid", "frozen": True}


@dataclass(frozen=True)
class ConfigIssue:
    """A problem with a step's config that only a look outside the pipeline finds (a data file
    that is missing, a column it lacks): `Component.check_config` returns these, and validation
    reports them located in the file like every other problem.
    """

    message: str
    #: Dotted path under the step's ``config`` the issue is about (``uri``, ``features.2`` for
    #: a list's third item); "" for the config as a whole. With ``under="inputs"``: an input
    #: port (``logits``), "" for the inputs as a whole.
    field: str = ""
    hint: str | None = None
    under: Literal["config", "inputs"] = "config"


PromiseT = TypeVar("PromiseT")


@dataclass(frozen=True)
class Upstream:
    """One value an input port will receive, as the compiled graph knows it before anything
    runs: which step's output it is, and what that step promised about it."""

    step_id: str  # the producing step's instance id ("expert[15]")
    port: str  # its output port
    #: What the producer said this output will be (its `Component.promise`); None: unknown.
    promise: Any = None
    #: The output is itself a list, so how many items it brings is unknown before it runs.
    many: bool = False


@dataclass(frozen=True)
class Wiring:
    """A step's inputs as the compiled graph connects them: which ports are connected, to which
    outputs, and what the producing steps promised about them (`Component.promise`). Ports
    that are not connected are absent. `Component.check_wiring` and `Component.promise` read
    it; the engine never looks inside a promise."""

    step_id: str
    inputs: Mapping[str, tuple[Upstream, ...]] = field(default_factory=dict)
    #: Whether a promise may look outside the pipeline (a Parquet footer): off where the data
    #: may be out of this machine's reach (`kdorch submit` checks it on the cluster).
    outside: bool = True

    def connected(self, port: str) -> bool:
        return bool(self.inputs.get(port))

    def count(self, port: str) -> int | None:
        """How many values ``port`` receives (0: not connected); None when one of its sources
        is itself a list, whose length only the run knows."""
        sources = self.inputs.get(port, ())
        return None if any(s.many for s in sources) else len(sources)

    def promised(self, port: str, kind: type[PromiseT]) -> list[tuple[Upstream, PromiseT]]:
        """The sources of ``port`` whose producer promised a ``kind``, each with its promise."""
        return [(s, s.promise) for s in self.inputs.get(port, ()) if isinstance(s.promise, kind)]


ConfigT = TypeVar("ConfigT", bound=BaseModel)
InputsT = TypeVar("InputsT", bound=BaseModel)
OutputsT = TypeVar("OutputsT", bound=BaseModel)


class Component(Generic[ConfigT, InputsT, OutputsT]):
    """Base class of every component. Subclasses set the class attributes and implement `run`."""

    key: ClassVar[str]
    version: ClassVar[str]
    Config: ClassVar[type[BaseModel]]
    Inputs: ClassVar[type[BaseModel]] = NoInputs
    Outputs: ClassVar[type[BaseModel]]
    description: ClassVar[str] = ""
    #: Default resources of the step's Ray task; a step's `resources:` overrides field by field.
    #: Components that start their own Ray workers should ask for ~nothing here.
    default_resources: ClassVar[Resources] = Resources(num_cpus=1)
    #: False for steps whose output differs between runs with the same inputs (training with
    #: nondeterministic kernels, timing). Shown by `kdorch components`; caching still applies.
    deterministic: ClassVar[bool] = True
    #: False: the cache key covers only ``version``, not the component's code (for components
    #: whose code changes often in ways that do not change results; bump ``version`` by hand).
    fingerprint_code: ClassVar[bool] = True

    def __init__(self, config: ConfigT):
        self.config = config

    def run(self, inputs: InputsT, ctx: StepContext) -> OutputsT:
        raise NotImplementedError(f"component '{self.key}' does not implement run()")

    @classmethod
    def task_resources(cls, config: ConfigT) -> Resources:
        """What the step's own Ray task reserves with this config (default: `default_resources`;
        a step's ``resources:`` overrides it field by field). A component that works in its own
        process with one config and starts workers with another says so here."""
        return cls.default_resources

    @classmethod
    def resource_demand(cls, config: ConfigT) -> dict[str, float]:
        """Total cluster resources the step needs beyond its task (e.g. its training workers)."""
        return {}

    @classmethod
    def external_fingerprint(cls, config: ConfigT) -> dict[str, Any]:
        """Content identity of data the step reads from outside the store (part of its key).

        Called on the driver before the step runs (and by `kdorch plan`); cheap to call twice.
        """
        return {}

    @classmethod
    def check_config(cls, config: ConfigT) -> list[ConfigIssue]:
        """Checks of this config against the world outside the pipeline (data files, columns),
        run by validate, plan and run after the pipeline compiled, on the driver, once per
        distinct config. Keep them cheap (metadata only: a Parquet footer, not its rows) and
        light (no torch import): `kdorch validate` waits for them."""
        return []

    @classmethod
    def promise(cls, config: ConfigT, wiring: Wiring) -> dict[str, Any]:
        """What this step's outputs will be, as far as its config (and what its own inputs
        promise, in ``wiring``) tells before it runs: output port -> a description its
        consumers understand (the dataset step: its domains and split names). Ports left out
        are unknown. Called in graph order by validate, plan and run; cheap and light (no
        torch import), and it looks outside the pipeline only when ``wiring.outside``."""
        return {}

    @classmethod
    def check_wiring(cls, config: ConfigT, wiring: Wiring) -> list[ConfigIssue]:
        """Checks of this config against the step's wiring: which inputs are connected, how
        many values a list input receives, what the upstream steps promised (`promise`). Run
        by validate, plan and run once per step after the pipeline compiled, reported located
        like every other problem. What is unknown passes: only a certain mistake is an issue."""
        return []

    @classmethod
    def task_retries(cls, config: ConfigT) -> int:
        """How often the step's task may be restarted after its process dies (a killed worker,
        a lost node). Only components that resume from their own checkpoints say more than 0."""
        return 0

    @classmethod
    def fingerprint(cls) -> tuple[dict[str, str], dict[str, str]]:
        """(code, packages) for the cache key; see `orchestrator.storage.fingerprint`."""
        from orchestrator.storage.fingerprint import code_fingerprint, packages_for

        code = code_fingerprint(cls.__module__) if cls.fingerprint_code else {}
        return code, packages_for(cls.__module__)

    @classmethod
    def summary(cls) -> str:
        doc = cls.description or (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    @classmethod
    def describe(cls) -> dict[str, Any]:
        return {
            "key": cls.key,
            "version": cls.version,
            "summary": cls.summary(),
            "config": cls.Config.model_json_schema(),
            "inputs": cls.Inputs.model_json_schema(),
            "outputs": cls.Outputs.model_json_schema(),
        }
