"""The commands that act on a pipeline file: validate, plan, run, graph; and components, the
catalogue its steps are written from."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.markup import escape

from orchestrator import api, registry
from orchestrator.cli.options import (
    AddressOpt,
    PipelineArg,
    ProfileOpt,
    SetOpt,
    StorageOpt,
    StorageOptionOpt,
    TrackOpt,
)
from orchestrator.cli.progress import ConsoleReporter, summary_table
from orchestrator.cli.root import configure_logging, err, out
from orchestrator.cli.show import print_run_outputs
from orchestrator.cli.tables import (
    KEY_CHARS,
    add_id_column,
    compact_ids,
    fit_width,
    step_table,
)
from orchestrator.errors import ConfigError, KdorchError
from orchestrator.storage.options import parse_storage_options
from orchestrator.storage.store import ArtifactStore
from schemas.engine.run import RunRecord


def validate(pipeline: PipelineArg, set_: SetOpt = None, profile: ProfileOpt = None) -> None:
    """Check a pipeline without running it: schema, configs, edges, cycles, resources."""
    graph = api.validate(pipeline, overrides=set_ or [], profile=profile)
    err.print(
        f"[green]✔[/] {pipeline}: {len(graph.nodes)} steps, {len(graph.edges())} edges, valid"
    )


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
    out.print(f"plan for {escape(str(pipeline))}", highlight=False, soft_wrap=True)  # a path
    table = step_table()
    add_id_column(table)
    table.add_column("component", no_wrap=True)  # a word: the reasons wrap first
    table.add_column("action", no_wrap=True)
    table.add_column("key", no_wrap=True)
    table.add_column("why", overflow="fold")
    ids = [s.step_id for s in steps]
    for s in steps:
        color = "green" if s.action == "cached" else "yellow"
        table.add_row(
            escape(s.step_id),
            escape(s.component),
            f"[{color}]{s.action}[/]",
            (s.key or "")[:KEY_CHARS],
            escape(_why(s.reason, ids)),
        )
    out.print(fit_width(table, out, optional=("key", "component")))


def _why(reason: str, ids: list[str]) -> str:
    """A plan's reason for a narrow column: the steps it waits for, every instance of a matrix
    step as ``step[*]`` (`--json` keeps each id)."""
    waiting = reason.removeprefix("after ")
    return reason if waiting == reason else "after " + compact_ids(waiting.split(", "), ids)


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


def _session_announcer(pipeline: Path) -> Any:
    """What `kdorch run` says once Ray is up: where the pipeline runs, and its dashboard."""

    def announce(session: Any) -> None:
        where = session.where
        err.print(f"[bold]kdorch[/] running [bold]{pipeline}[/] on {where}")
        if session.dashboard_url:
            taken = session.dashboard_port_taken
            note = f" (port {taken} is taken, by another Ray or kdorch run)" if taken else ""
            err.print(
                f"Ray dashboard: [link={session.dashboard_url}]{session.dashboard_url}[/link]"
                + note
            )

    return announce


def _print_summary(record: RunRecord) -> None:
    """The run's table of steps, its final outputs and where its record is."""
    err.print(summary_table(record, err))
    store = ArtifactStore(record.storage)  # for URIs only: nothing is opened
    print_run_outputs(err, store, record)
    err.print(
        f"run record: {record.storage}/runs/{record.run_id}/run.json (kdorch show {record.run_id})",
        highlight=False,
    )


def _print_failures(record: RunRecord) -> None:
    for step in record.steps:
        if step.error is not None:
            err.print(
                f"\n[red]step {escape(repr(step.step_id))} ({step.component}, key "
                f"{(step.key or '-')[:16]}) failed:[/] "
                + escape(f"{step.error.type}: {step.error.message}")
            )


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
    track: TrackOpt = None,
) -> None:
    """Run a pipeline: cached steps are reused, the rest run on Ray."""
    options = parse_storage_options(storage_option or [])
    if verbose:
        configure_logging(debug=logging.getLogger().level == logging.DEBUG, verbose=True)
    ray_lines = ["ray.log_to_driver=true"] if verbose and not as_json else []
    reporter = ConsoleReporter(err)
    quiet = stdout_to_stderr() if as_json else contextlib.nullcontext()
    try:
        with quiet:
            record = api.run(
                pipeline,
                storage=storage,
                address=address,
                overrides=[*(set_ or []), *ray_lines],
                profile=profile,
                executor=executor,
                listeners=[reporter],
                on_session=_session_announcer(pipeline),
                storage_options=options,
                run_id=run_id,
                track=track,
            )
    finally:
        reporter.close()
    if as_json:
        print(record.model_dump_json(indent=1))
    else:
        _print_summary(record)
    _print_failures(record)
    if record.status.value != "succeeded":
        raise typer.Exit(1)


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
