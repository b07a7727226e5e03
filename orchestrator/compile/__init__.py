"""Compiling a `PipelineSpec` into a validated `Graph`: references, types, problems."""

from orchestrator.compile.compiler import (
    capacity_problems,
    compile_pipeline,
    merged_resources,
    resource_request,
)

__all__ = ["capacity_problems", "compile_pipeline", "merged_resources", "resource_request"]
