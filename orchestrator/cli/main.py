"""The `kdorch` command line: its commands, in the order `kdorch --help` lists them, and `main`,
the console script's entry, which turns errors into clean messages and exit codes."""

from __future__ import annotations

import sys
import traceback

import click
import typer
from rich.markup import escape

from orchestrator.cli import (
    cluster_commands,
    local_cluster_commands,
    pipeline_commands,
    store_commands,
)
from orchestrator.cli.root import app, err
from orchestrator.errors import (
    ClusterUnreachable,
    ConfigError,
    GraphError,
    KdorchError,
    StorageError,
    ValidationFailed,
)

#: Every command, in the order `kdorch --help` lists them.
COMMANDS = (
    pipeline_commands.validate,
    pipeline_commands.plan,
    pipeline_commands.run,
    pipeline_commands.graph,
    pipeline_commands.components,
    store_commands.runs,
    store_commands.show,
    cluster_commands.submit,
    store_commands.gc,
    cluster_commands.status,
    cluster_commands.logs,
    local_cluster_commands.up,
    local_cluster_commands.down,
)
for command in COMMANDS:
    app.command()(command)

# Problems the user fixes in the pipeline, its options or its storage settings: exit 2.
_CONFIG_ERRORS = (ValidationFailed, ConfigError, GraphError, StorageError, ClusterUnreachable)
INTERRUPTED = 130


def _say_interrupted() -> None:
    err.print("[yellow]interrupted[/]: finished steps are committed; run again to resume")


# Typer >= 0.2x parses with its own copy of Click, whose exceptions are not `click`'s; older Typer
# raises Click's own. Both kinds are caught, so usage errors never become tracebacks.
_USAGE_ERRORS: tuple[type[Exception], ...] = (
    click.ClickException,
    *((typer.TyperException,) if hasattr(typer, "TyperException") else ()),
)
_EXITS: tuple[type[BaseException], ...] = (click.exceptions.Exit, typer.Exit)
_ABORTS: tuple[type[BaseException], ...] = (click.exceptions.Abort, typer.Abort)


def _show_usage_error(error: Exception) -> int:
    """Print a usage error as Click does (usage line, hint, message); its exit code (2)."""
    show = getattr(error, "show", None)
    if callable(show):
        show()
    else:
        err.print(f"Error: {escape(str(error))}")
    return int(getattr(error, "exit_code", 2))


def main(argv: list[str] | None = None) -> None:
    """Console-script entry: clean messages and exit codes (2 = bad pipeline or usage,
    1 = run failed, 130 = interrupted)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if debug:  # accepted anywhere on the line, not only before the command
        args = ["--debug", *[a for a in args if a != "--debug"]]
    try:
        # Without standalone mode Click returns (not raises) the code of `typer.Exit(code)`.
        code = app(args=args, prog_name="kdorch", standalone_mode=False)
        if code == INTERRUPTED:  # Typer turns Ctrl-C inside a command into Exit(130)
            _say_interrupted()
        sys.exit(code if isinstance(code, int) else 0)
    except _EXITS as e:
        sys.exit(getattr(e, "exit_code", 0))
    except _USAGE_ERRORS as e:
        if debug:
            traceback.print_exc()
        sys.exit(_show_usage_error(e))
    except _ABORTS:
        err.print("aborted")
        sys.exit(INTERRUPTED)
    except KeyboardInterrupt:  # outside a command (while Typer starts up)
        _say_interrupted()
        sys.exit(INTERRUPTED)
    except KdorchError as e:
        if debug:
            traceback.print_exc()
        prefix = "" if isinstance(e, ValidationFailed) else "error: "
        sys.stderr.write(f"{prefix}{e}\n")
        sys.exit(2 if isinstance(e, _CONFIG_ERRORS) else 1)


if __name__ == "__main__":
    main()
