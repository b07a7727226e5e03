"""Compiling a `PipelineSpec` into a validated `Graph`: references, types, problems."""
