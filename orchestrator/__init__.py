"""kdorch's orchestrator: components, DAG compilation, caching, execution on Ray, the CLI.

Public API::

    from orchestrator import Pipeline, Component, StepContext, run, validate, plan
"""

from orchestrator.api import load, plan, run, validate
from orchestrator.builder import OutputRef, Pipeline, StepHandle
from orchestrator.component import Component, ConfigIssue, NoInputs
from orchestrator.errors import (
    ArtifactError,
    ComponentError,
    ConfigError,
    GraphError,
    KdorchError,
    RunFailed,
    StorageError,
    ValidationFailed,
)
from orchestrator.execution.context import StepContext
from orchestrator.frontend.loader import dump_pipeline, load_pipeline
from orchestrator.registry import register
from orchestrator.storage.store import ArtifactStore

__all__ = [
    "ArtifactError",
    "ArtifactStore",
    "Component",
    "ComponentError",
    "ConfigError",
    "ConfigIssue",
    "GraphError",
    "KdorchError",
    "NoInputs",
    "OutputRef",
    "Pipeline",
    "RunFailed",
    "StepContext",
    "StepHandle",
    "StorageError",
    "ValidationFailed",
    "dump_pipeline",
    "load",
    "load_pipeline",
    "plan",
    "register",
    "run",
    "validate",
]
