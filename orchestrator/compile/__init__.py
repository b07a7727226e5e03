"""Compiling a `PipelineSpec` into a validated `Graph`: references, types, problems."""

from orchestrator.compile.compiler import compile_pipeline, merged_resources, resource_request

__all__ = ["compile_pipeline", "merged_resources", "resource_request"]
