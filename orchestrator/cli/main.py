"""The `kdorch` command line."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from orchestrator import api, registry
from orchestrator.cli.progress import ConsoleReporter, summary_table
from orchestrator.compile.typecheck import type_name
from orchestrator.errors import ConfigError, GraphError, KdorchError, ValidationFailed

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="kdorch: knowledge-distillation pipelines as typed DAGs on Ray.",
)
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

PipelineArg = Annotated[Path, typer.Argument(help="Pipeline YAML file.", show_default=False)]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        help="Override a value: path=value (repeatable), e.g. steps.distill.config.epochs=1.",
    ),
]
ProfileOpt = Annotated[
    str | None, typer.Option("--profile", "-p", help="Apply a profile from the file.")
]
StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage",
        help="Artifact store (dir or fsspec URI). Default: $KDORCH_STORAGE, "
        "the file's `storage`, else ./.kdorch",
    ),
]
AddressOpt = Annotated[
    str | None,
    typer.Option(
        "--address", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)."
    ),
]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")]


@app.callback()
def _root(debug: DebugOpt = False) -> None:
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, format="%(message)s")


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
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Show which steps would run and which would come from the cache."""
    steps = api.plan(pipeline, storage=storage, overrides=set_ or [], profile=profile)
    if as_json:
        print(json.dumps([s.__dict__ for s in steps], indent=1))
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
    address: AddressOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the run record as JSON on stdout.")
    ] = False,
    executor: Annotated[
        str, typer.Option(help="ray, or local (in-process, no Ray; for debugging).")
    ] = "ray",
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show Ray workers' output (not with --json).")
    ] = False,
) -> None:
    """Run a pipeline: cached steps are reused, the rest run on Ray."""
    reporter = ConsoleReporter(err)

    def on_session(session: Any) -> None:
        where = "local Ray (embedded)" if session.embedded else f"Ray at {session.address}"
        err.print(f"[bold]kdorch[/] running [bold]{pipeline}[/] on {where}")
        if session.dashboard_url:
            err.print(
                f"Ray dashboard: [link={session.dashboard_url}]{session.dashboard_url}[/link]"
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
            )
    finally:
        reporter.close()
    if as_json:
        print(record.model_dump_json(indent=1))
    else:
        err.print(summary_table(record))
        err.print(f"run record: {record.storage}/runs/{record.run_id}/run.json")
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

    g = api.validate(pipeline, overrides=set_ or [], profile=profile)
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


def _field_rows(model: Any) -> list[tuple[str, str, str, str]]:
    rows = []
    for name, field in model.model_fields.items():
        default = (
            "required"
            if field.is_required()
            else repr(field.get_default(call_default_factory=True))
        )
        rows.append((name, type_name(field.annotation), default, field.description or ""))
    return rows


@app.command()
def components(
    name: Annotated[str | None, typer.Argument(help="Show one component in detail.")] = None,
) -> None:
    """List the registered components, or show one's config fields, inputs and outputs."""
    if name is None:
        table = Table(title="components")
        for column in ("key", "version", "inputs", "outputs", "summary"):
            table.add_column(column)
        for cls in registry.all_components():
            table.add_row(
                cls.key,
                cls.version,
                ", ".join(cls.Inputs.model_fields),
                ", ".join(cls.Outputs.model_fields),
                cls.summary(),
            )
        out.print(table)
        return
    cls = registry.get(name)
    out.print(f"[bold]{cls.key}[/] v{cls.version} — {cls.summary()}")
    doc = (cls.__doc__ or "").strip()
    if doc:
        out.print(doc)
    res = cls.default_resources.model_dump(exclude_defaults=True)
    out.print(f"default resources: {res or 'none'}; deterministic: {cls.deterministic}")
    for title, model in (("config", cls.Config), ("inputs", cls.Inputs), ("outputs", cls.Outputs)):
        table = Table(title=title)
        for column in ("field", "type", "default", "description"):
            table.add_column(column)
        for row in _field_rows(model):
            table.add_row(*row)
        out.print(table)


@app.command()
def runs(storage: StorageOpt = None, limit: int = 20) -> None:
    """List recent runs in the artifact store."""
    from orchestrator.storage.store import ArtifactStore, resolve_storage

    store = ArtifactStore(resolve_storage(storage, None))
    table = Table(title=f"runs in {store.root}")
    for column in ("run", "pipeline", "status", "ran", "cached", "failed"):
        table.add_column(column)
    for run_id in store.list_runs()[-limit:]:
        try:
            record = store.read_run(run_id)
        except KdorchError:
            continue
        counts = {s: len(record.ids_with_status(s)) for s in ("ran", "cached", "failed")}  # type: ignore[arg-type]
        table.add_row(
            run_id,
            record.pipeline,
            record.status.value,
            *(str(counts[k]) for k in ("ran", "cached", "failed")),
        )
    out.print(table)


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
) -> None:
    """Send a run to a Ray cluster through the Ray Jobs API (the project ships as working_dir)."""
    from orchestrator.cli.submit import submit_job

    api.validate(pipeline, overrides=set_ or [], profile=profile, address=address)
    code = submit_job(
        pipeline,
        address=address,
        overrides=set_ or [],
        profile=profile,
        storage=storage,
        wait=wait,
        console=err,
    )
    if code:
        raise typer.Exit(code)


_CONFIG_ERRORS = (ValidationFailed, ConfigError, GraphError)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry: clean messages and exit codes (2 = bad pipeline, 1 = run failed)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if debug:  # accepted anywhere on the line, not only before the command
        args = ["--debug", *[a for a in args if a != "--debug"]]
    try:
        # Without standalone mode Click returns (not raises) the code of `typer.Exit(code)`.
        code = app(args=args, prog_name="kdorch", standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        err.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]: finished steps are committed; run again to resume")
        sys.exit(130)
    except KdorchError as e:
        if debug:
            traceback.print_exc()
        prefix = "" if isinstance(e, ValidationFailed) else "error: "
        sys.stderr.write(f"{prefix}{e}\n")
        sys.exit(2 if isinstance(e, _CONFIG_ERRORS) else 1)


if __name__ == "__main__":
    main()
