"""The `kdorch` command line (typer app in `main`)."""

from orchestrator.cli.main import app, main

__all__ = ["app", "main"]
