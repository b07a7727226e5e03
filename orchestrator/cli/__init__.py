"""The `kdorch` command line: the Typer app (`root`), its commands grouped by what they act on
(`pipeline_commands`, `store_commands`, `cluster_commands`), registered in `main`."""

from orchestrator.cli.main import app, main

__all__ = ["app", "main"]
