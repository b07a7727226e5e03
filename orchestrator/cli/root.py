"""The root of the `kdorch` command line: the Typer app, its help layout, its two consoles,
the options every command takes (`--debug`, `--version`) and logging.

The commands are registered on it by `orchestrator.cli.main`, in the order `kdorch --help`
lists them.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from orchestrator.cli.options import DebugOpt
from orchestrator.compile.describe import first_paragraph


class _WholeSummaryGroup(TyperGroup):
    """Lists each command with the whole first paragraph of its help, wrapped: Click would cut
    it to fit one line ("Check a pipeline without running it: schema, configs,...")."""

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, first_paragraph(command.short_help or command.help)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


app = typer.Typer(
    cls=_WholeSummaryGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain Click-style help: Typer's Rich panels print every flag with a type (`--json <bool>`).
    rich_markup_mode=None,
    help="kdorch: knowledge-distillation pipelines as typed DAGs on Ray.",
)
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def kdorch_version() -> str:
    """The installed distribution's version; from pyproject.toml when running from a source tree
    that is not installed (a Ray job's working_dir)."""
    try:
        return importlib.metadata.version("kdorch")
    except importlib.metadata.PackageNotFoundError:
        pass
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    try:
        text = pyproject.read_text()
    except OSError:
        return "unknown"
    # The first `version = "..."` is [project]'s; a regex keeps Python 3.10 (no tomllib) working.
    match = re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE)
    return match.group(1) if match else "unknown"


def _print_version(value: bool) -> None:
    if value:
        print(f"kdorch {kdorch_version()}")
        raise typer.Exit()


VersionOpt = Annotated[
    bool,
    typer.Option(
        "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
]


def configure_logging(*, debug: bool = False, verbose: bool = False) -> None:
    """kdorch's own log lines at INFO; other libraries' (botocore's "Found credentials ...",
    Ray's) only at WARNING, unless ``verbose`` (INFO) or ``debug`` (DEBUG, everything)."""
    others = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=others, format="%(message)s")
    logging.getLogger().setLevel(others)
    logging.getLogger("kdorch").setLevel(logging.DEBUG if debug else logging.INFO)


@app.callback()
def _root(debug: DebugOpt = False, version: VersionOpt = False) -> None:
    configure_logging(debug=debug)
