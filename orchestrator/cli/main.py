"""The `kdorch` command line."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import os
import re
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from orchestrator import api, registry
from orchestrator.cli.progress import ConsoleReporter, summary_table
from orchestrator.cli.show import print_run_outputs
from orchestrator.compile.describe import first_paragraph
from orchestrator.errors import (
    ArtifactError,
    ClusterUnreachable,
    ConfigError,
    GraphError,
    KdorchError,
    StorageError,
    ValidationFailed,
)
from orchestrator.frontend.overrides import SET_EXAMPLE
from orchestrator.storage.files import resolve_storage
from orchestrator.storage.options import parse_storage_options
from orchestrator.storage.store import ArtifactStore


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

# Examples in help texts must work on pipelines/hinton_kd.yaml (tests/unit/test_help_examples.py).
PipelineArg = Annotated[
    Path, typer.Argument(help="Pipeline YAML file.", show_default=False, metavar="PIPELINE")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        metavar="PATH=VALUE",
        help="Override a value before validation (repeatable). PATH is dotted; a step is named "
        f"by its id, e.g. --set {SET_EXAMPLE}",
    ),
]
ProfileOpt = Annotated[
    str | None,
    typer.Option("--profile", "-p", metavar="NAME", help="Apply a profile from the file."),
]
StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage",
        metavar="URI",
        help="Artifact store (dir or fsspec URI). Default: $KDORCH_STORAGE, "
        "the file's `storage`, else ./.kdorch",
    ),
]
StorageOptionOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--storage-option",
        metavar="KEY=VALUE",
        help="A storage option (repeatable), over the file's storage_options: endpoint_url, "
        "region, profile, anon, client_kwargs.NAME, options.NAME; e.g. --storage-option "
        "endpoint_url=http://127.0.0.1:9000. Credentials: the AWS_* environment variables or "
        "profile=NAME.",
    ),
]
AddressOpt = Annotated[
    str | None,
    typer.Option(
        "--address",
        metavar="ADDRESS",
        help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray).",
    ),
]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")]


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


@app.command()
def validate(pipeline: PipelineArg, set_: SetOpt = None, profile: ProfileOpt = None) -> None:
    """Check a pipeline without running it: schema, configs, edges, cycles, resources."""
    graph = api.validate(pipeline, overrides=set_ or [], profile=profile)
    err.print(
        f"[green]✔[/] {pipeline}: {len(graph.nodes)} steps, {len(graph.edges())} edges, valid"
    )


@app.command()
def plan(
    pipeline: PipelineArg,
    set_: SetOpt = None,
    profile: ProfileOpt = None,
    storage: StorageOpt = None,
    storage_option: StorageOptionOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Show which steps would run and which would come from the cache."""
    steps = api.plan(
        pipeline,
        storage=storage,
        overrides=set_ or [],
        profile=profile,
        storage_options=parse_storage_options(storage_option or []),
    )
    if as_json:
        fields = ("step_id", "component", "action", "key", "reason")
        print(json.dumps([{f: getattr(s, f) for f in fields} for s in steps], indent=1))
        return
    table = Table(title=f"plan for {pipeline}")
    for column in ("step", "component", "action", "key", "why"):
        table.add_column(column)
    for s in steps:
        color = "green" if s.action == "cached" else "yellow"
        table.add_row(
            s.step_id, s.component, f"[{color}]{s.action}[/]", (s.key or "")[:12], s.reason
        )
    out.print(table)


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send everything written to stdout (by us, Ray's driver, or processes it starts) to stderr,
    so that `--json` output on stdout stays parseable."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


@app.command()
def run(
    pipeline: PipelineArg,
    set_: SetOpt = None,
    profile: ProfileOpt = None,
    storage: StorageOpt = None,
    storage_option: StorageOptionOpt = None,
    address: AddressOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the run record as JSON on stdout.")
    ] = False,
    executor: Annotated[
        Literal["ray", "local"],
        typer.Option(help="ray, or local (in-process, no Ray; for debugging)."),
    ] = "ray",
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Show Ray's own log lines and its workers' output (not with --json).",
        ),
    ] = False,
    run_id: Annotated[
        str | None,
        typer.Option("--run-id", hidden=True, help="The run's id (kdorch submit: the job's)."),
    ] = None,
) -> None:
    """Run a pipeline: cached steps are reused, the rest run on Ray."""
    options = parse_storage_options(storage_option or [])
    if verbose:
        configure_logging(debug=logging.getLogger().level == logging.DEBUG, verbose=True)
    reporter = ConsoleReporter(err)

    def on_session(session: Any) -> None:
        where = "local Ray (embedded)" if session.embedded else f"Ray at {session.address}"
        err.print(f"[bold]kdorch[/] running [bold]{pipeline}[/] on {where}")
        if session.dashboard_url:
            taken = session.dashboard_port_taken
            note = f" (port {taken} is taken, by another Ray or kdorch run)" if taken else ""
            err.print(
                f"Ray dashboard: [link={session.dashboard_url}]{session.dashboard_url}[/link]"
                + note
            )

    quiet = stdout_to_stderr() if as_json else contextlib.nullcontext()
    try:
        with quiet:
            record = api.run(
                pipeline,
                storage=storage,
                address=address,
                overrides=[
                    *(set_ or []),
                    *(["ray.log_to_driver=true"] if verbose and not as_json else []),
                ],
                profile=profile,
                executor=executor,
                listeners=[reporter],
                on_session=on_session,
                storage_options=options,
                run_id=run_id,
            )
    finally:
        reporter.close()
    if as_json:
        print(record.model_dump_json(indent=1))
    else:
        err.print(summary_table(record))
        store = ArtifactStore(record.storage)  # for URIs only: nothing is opened
        print_run_outputs(err, store, record)
        err.print(
            f"run record: {record.storage}/runs/{record.run_id}/run.json "
            f"(kdorch show {record.run_id})",
            highlight=False,
        )
    failed = [s for s in record.steps if s.error is not None]
    for step in failed:
        assert step.error is not None
        err.print(
            f"\n[red]step {escape(repr(step.step_id))} ({step.component}, key "
            f"{(step.key or '-')[:16]}) failed:[/] "
            + escape(f"{step.error.type}: {step.error.message}")
        )
    if record.status.value != "succeeded":
        raise typer.Exit(1)


@app.command()
def graph(
    pipeline: PipelineArg,
    fmt: Annotated[str, typer.Option("--format", "-f", help="mermaid, dot or png.")] = "mermaid",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file.")
    ] = None,
    set_: SetOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Draw the DAG (Mermaid or Graphviz text; PNG if Graphviz is installed)."""
    from orchestrator.cli import render

    g = api.validate(pipeline, overrides=set_ or [], profile=profile, check_data=False)
    if fmt == "png":
        data = render.to_png(g)
        if output is None:
            raise KdorchError("--format png needs --output FILE.png")
        output.write_bytes(data)
        err.print(f"wrote {output}")
        return
    renderers = {"mermaid": render.to_mermaid, "dot": render.to_dot}
    if fmt not in renderers:
        raise ConfigError(f"--format must be mermaid, dot or png, got '{fmt}'")
    text = renderers[fmt](g)
    if output is not None:
        output.write_text(text)
        err.print(f"wrote {output}")
    else:
        print(text, end="")


@app.command()
def components(
    name: Annotated[
        str | None, typer.Argument(help="Show one component in detail.", metavar="NAME")
    ] = None,
) -> None:
    """List the registered components, or show one's config fields, inputs and outputs."""
    from orchestrator.cli.catalog import print_component, print_components

    if name is None:
        print_components(out)
        return
    try:
        cls = registry.get(name)
    except registry.UnknownComponent as e:
        raise typer.BadParameter(str(e), param_hint="NAME") from None
    print_component(out, cls)


def _open_records_store(storage: str | None, items: list[str] | None) -> ArtifactStore:
    """The store `runs` and `show` read: --storage (else $KDORCH_STORAGE, else ./.kdorch) with
    --storage-option; checked readable first (a wrong endpoint is one clear error)."""
    from orchestrator.storage.options import merge_options
    from orchestrator.storage.probe import check_store
    from schemas.engine.storage import StorageOptions

    options = merge_options(StorageOptions(), parse_storage_options(items or []))
    store = ArtifactStore(resolve_storage(storage, None), options)
    check_store(store, write=False)
    return store


@app.command()
def runs(
    storage: StorageOpt = None,
    storage_option: StorageOptionOpt = None,
    limit: Annotated[int, typer.Option(help="Show the most recent N runs.")] = 20,
) -> None:
    """List recent runs in the artifact store, with their status and where their report is."""
    from orchestrator.cli.show import print_runs

    print_runs(out, _open_records_store(storage, storage_option), limit)


@app.command()
def show(
    run_id: Annotated[
        str,
        typer.Argument(
            help="A run id (from `kdorch runs`; a unique prefix will do), or 'latest'.",
            metavar="RUN",
            show_default=False,
        ),
    ],
    step: Annotated[
        str | None,
        typer.Argument(help="One step's outputs, metrics and paths.", metavar="STEP"),
    ] = None,
    storage: StorageOpt = None,
    storage_option: StorageOptionOpt = None,
) -> None:
    """Show a run: its steps (status, seconds, outputs), reports and paths; or one step."""
    from orchestrator.cli.show import UnknownStep, show_run, show_step
    from orchestrator.storage.runs import resolve_run_id

    store = _open_records_store(storage, storage_option)
    try:
        record = store.read_run(resolve_run_id(store, run_id))
    except ArtifactError as e:  # no such run: a usage error (exit 2), not a failure
        raise typer.BadParameter(str(e), param_hint="RUN") from None
    if step is None:
        show_run(out, store, record)
        return
    try:
        show_step(out, store, record, step)
    except UnknownStep as e:
        raise typer.BadParameter(str(e), param_hint="STEP") from None


@app.command()
def submit(
    pipeline: PipelineArg,
    address: Annotated[
        str, typer.Option("--address", help="Ray dashboard/Jobs address, e.g. http://head:8265.")
    ],
    set_: SetOpt = None,
    profile: ProfileOpt = None,
    storage: StorageOpt = None,
    wait: Annotated[bool, typer.Option(help="Follow the job's logs until it ends.")] = True,
    ship: Annotated[
        bool,
        typer.Option(
            "--ship/--no-ship",
            help="Ship this project directory as the job's working_dir (--no-ship: the "
            "cluster's image already holds kdorch and your components).",
        ),
    ] = True,
) -> None:
    """Send a run to a Ray cluster through the Ray Jobs API (the project ships as working_dir)."""
    from orchestrator.cli.submit import submit_job

    api.validate(pipeline, overrides=set_ or [], profile=profile, address=address, check_data=False)
    code = submit_job(
        pipeline,
        address=address,
        overrides=set_ or [],
        profile=profile,
        storage=storage,
        wait=wait,
        console=err,
        ship=ship,
    )
    if code:
        raise typer.Exit(code)


@app.command()
def gc(
    storage: StorageOpt = None,
    storage_option: StorageOptionOpt = None,
    runs_older_than: Annotated[
        float | None,
        typer.Option("--runs-older-than", metavar="DAYS", help="Also delete run records this old."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list what would be deleted.")
    ] = False,
) -> None:
    """Delete attempt folders of failed or interrupted steps (never a committed result)."""
    from orchestrator.storage.gc import collect

    store = ArtifactStore(
        resolve_storage(storage, None), parse_storage_options(storage_option or [])
    )
    removals = collect(store, runs_older_than, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    for removal in removals:
        out.print(f"{verb} {removal.path} ({removal.bytes / 2**20:.1f} MB): {removal.why}")
    total = sum(r.bytes for r in removals) / 2**20
    err.print(f"{verb} {len(removals)} folders, {total:.1f} MB, in {store.root}")


JobAddressOpt = Annotated[
    str, typer.Option("--address", help="Ray dashboard/Jobs address, e.g. http://head:8265.")
]


@app.command()
def status(
    job: Annotated[str | None, typer.Argument(help="A job id from `kdorch submit`.")] = None,
    address: JobAddressOpt = "http://127.0.0.1:8265",
    storage: StorageOpt = None,
    storage_option: StorageOptionOpt = None,
) -> None:
    """A submitted run: job state, steps done/running/cached/failed, nodes used, the report.

    Without JOB, lists the kdorch jobs on the cluster."""
    from orchestrator.cli.jobs import list_jobs, show_job, view

    if job is None:
        list_jobs(out, address)
        return
    options = parse_storage_options(storage_option or [])
    show_job(out, view(address, job, storage, options))


@app.command()
def logs(
    job: Annotated[str, typer.Argument(help="A job id from `kdorch submit`.")],
    address: JobAddressOpt = "http://127.0.0.1:8265",
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
) -> None:
    """A submitted run's driver output, through the Ray Jobs API."""
    from orchestrator.cli.jobs import print_logs

    print_logs(out, address, job, follow)


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
