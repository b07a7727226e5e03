"""What a run produced, for people: the end of `kdorch run`, `kdorch runs`, `kdorch show`."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from orchestrator.cli.tables import (
    KEY_CHARS,
    add_id_column,
    fit_width,
    number,
    some_ids,
    step_table,
)
from orchestrator.errors import KdorchError
from orchestrator.storage.runs import (
    INTERRUPTED,
    Output,
    artifact_paths,
    final_outputs,
    is_report,
    observed_status,
    observed_step_status,
    report_files,
    step_counts,
)
from orchestrator.storage.store import ArtifactStore
from schemas.engine.run import RunRecord, RunStatus, StepRecord

_STATUS_COLORS = {
    "ran": "green",
    "cached": "green",
    "succeeded": "green",
    "failed": "red",
    "interrupted": "yellow",
    "skipped": "yellow",
    "running": "cyan",
}
_SHORT = 100


def _status(value: str) -> str:
    return f"[{_STATUS_COLORS.get(value, 'white')}]{value}[/]"


def _short(value: Any, limit: int = _SHORT) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_value(store: ArtifactStore, value: Any) -> str:
    """An output for a person: where an artifact is, else the value (cut to one line)."""
    if is_report(value):
        return store.uri(f"{value['path']}/report.md")
    paths = artifact_paths(value)
    if paths:
        return "\n".join(store.uri(p) for p in paths)
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        keys = ", ".join(list(value[0])[:6])
        return f"{len(value)} entries ({keys})"
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        return _short(f"{len(value)} entries: {', '.join(value)}")  # e.g. metrics per model
    if isinstance(value, dict) and all(isinstance(v, int | float) for v in value.values()):
        return _short(", ".join(f"{k}={number(v)}" for k, v in value.items()))
    return _short(value)


def print_run_outputs(console: Console, store: ArtifactStore, record: RunRecord) -> None:
    """The end of `kdorch run`: where every report is, and the final steps' other outputs."""
    reports = report_files(store, record)
    for step_id, uri in reports:
        console.print(f"[bold]report[/] ({escape(step_id)}): {escape(uri)}", highlight=False)
    reporting = {step_id for step_id, _ in reports}  # their other outputs are in the report
    others = [o for o in final_outputs(record) if o.step_id not in reporting]
    if others:
        console.print("[bold]final outputs[/]:")
        for output in others:
            text = describe_value(store, output.value).replace("\n", "\n    ")
            console.print(f"  {escape(output.step_id)}.{escape(output.port)}: {escape(text)}")


def print_runs(console: Console, store: ArtifactStore, limit: int) -> None:
    """Recent runs: status as observed now (a dead driver is 'interrupted') and step counts;
    then each run's report, one line each (whole paths, to copy)."""
    # No borders: a run id stays whole (to copy) in an 80-column terminal.
    table = Table(
        title=f"runs in {store.root}",
        box=None,
        title_justify="left",
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("run", no_wrap=True)  # whole, to copy into `kdorch show`
    table.add_column("pipeline", overflow="fold")
    table.add_column("status", no_wrap=True)
    counted = ("ran", "cached", "failed", INTERRUPTED)  # steps, as observed now
    for column in (*counted, "reports"):
        table.add_column(column, justify="right", no_wrap=True)
    found: list[tuple[str, str]] = []
    for run_id in store.list_runs()[-limit:]:
        try:
            record = store.read_run(run_id)
        except KdorchError:
            continue
        counts = step_counts(record)
        reports = report_files(store, record)
        found += [(run_id, uri) for _, uri in reports]
        table.add_row(
            run_id,
            escape(record.pipeline),
            _status(observed_status(record).value),
            *(str(counts[k]) for k in counted),
            str(len(reports)),
        )
    console.print(table)
    if found:
        console.print("reports:")
        for run_id, uri in found:
            console.print(f"  {run_id}  {escape(uri)}", highlight=False)


def _run_header(record: RunRecord) -> list[str]:
    status = observed_status(record)
    lines = [f"run {record.run_id} · {escape(record.pipeline)} · {_status(status.value)}"]
    if status == RunStatus.interrupted and record.status == RunStatus.running:
        lines.append(
            f"  its driver (pid {record.driver_pid} on {record.driver_host}) is gone: the run was "
            "interrupted; run the pipeline again to resume from its committed steps"
        )
    finished = f" → {record.finished_at:%Y-%m-%d %H:%M:%S}" if record.finished_at else ""
    lines.append(f"  started {record.started_at:%Y-%m-%d %H:%M:%S}{finished} (UTC)")
    lines.append(f"  store {escape(record.storage)}")
    if record.ray_address:
        lines.append(f"  ray {escape(record.ray_address)}")
    return lines


def show_run(console: Console, store: ArtifactStore, record: RunRecord) -> None:
    """`kdorch show RUN`: the run, one row per step, and where its outputs are."""
    for line in _run_header(record):
        console.print(line, highlight=False)
    table = step_table()
    add_id_column(table)  # whole: the STEP of `kdorch show RUN STEP`
    table.add_column("component", no_wrap=True)  # a word: the outputs wrap first
    table.add_column("status", no_wrap=True)
    table.add_column("seconds", justify="right", no_wrap=True)
    table.add_column("key", no_wrap=True)
    table.add_column("outputs", overflow="fold")
    run = observed_status(record)
    for step in record.steps:
        table.add_row(
            escape(step.step_id),
            step.component,
            _status(observed_step_status(record, step, run)),
            f"{step.seconds:.1f}" if step.seconds is not None else "",
            (step.key or "")[:KEY_CHARS],
            escape(", ".join(step.outputs) or (step.reason or "")),
        )
    console.print(fit_width(table, console, optional=("key", "seconds", "component")))
    print_run_outputs(console, store, record)
    console.print(f"details of one step: kdorch show {record.run_id} STEP", highlight=False)


class UnknownStep(KdorchError):
    """`kdorch show RUN STEP` with a step the run does not have."""


def _find_step(record: RunRecord, step_id: str) -> StepRecord:
    try:
        return record.step(step_id)
    except KeyError:
        from orchestrator.errors import did_you_mean

        ids = [s.step_id for s in record.steps]
        every = f"kdorch show {record.run_id} lists them all"
        hint = did_you_mean(step_id, ids) or f"steps: {some_ids(ids, every)}"
        raise UnknownStep(f"run {record.run_id} has no step '{step_id}'; {hint}") from None


def _metric_rows(prefix: str, value: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for name, item in value.items():
        if isinstance(item, int | float | str | bool) or item is None:
            rows.append((f"{prefix}.{name}", number(item)))  # 14,538, not 1.454e+04
    return rows


def show_step(console: Console, store: ArtifactStore, record: RunRecord, step_id: str) -> None:
    """`kdorch show RUN STEP`: status, time, key, outputs (paths), metrics, error."""
    step = _find_step(record, step_id)
    console.print(
        f"step {escape(step.step_id)} ({step.component} v{step.version}) in run "
        f"{record.run_id}: {_status(observed_step_status(record, step))}",
        highlight=False,
    )
    facts = {
        "seconds": f"{step.seconds:.1f}" if step.seconds is not None else None,
        "key": step.key,
        "committed": store.uri(store.commit_path(step.key)) if step.key else None,
        "reason": step.reason or None,
        "node": step.node,
    }
    for name, fact in facts.items():
        if fact:
            console.print(f"  {name}: {escape(fact)}", highlight=False)
    if step.error is not None:
        console.print(f"  [red]error[/]: {escape(step.error.type)}: {escape(step.error.message)}")
    metrics: list[tuple[str, str]] = []
    table = Table(title="outputs", title_justify="left")
    table.add_column("port")
    table.add_column("value", overflow="fold")
    for port, value in step.outputs.items():
        output = Output(step.step_id, port, value)
        table.add_row(escape(port), escape(describe_value(store, value)))
        if output.is_report:
            for model, row in value["metrics"].items():
                metrics += _metric_rows(f"{port}.{model}", _headline(row))
            metrics += _metric_rows(f"{port}.baseline", value.get("baselines", {}))
        elif isinstance(value, dict) and not artifact_paths(value):
            metrics += _metric_rows(port, value)
        elif isinstance(value, dict):
            metrics += _metric_rows(port, _artifact_facts(value))
    if step.outputs:
        console.print(table)
    if metrics:
        shown = Table(title="metrics", title_justify="left")
        shown.add_column("name")
        shown.add_column("value", justify="right")
        for name, text in metrics:
            shown.add_row(escape(name), text)
        console.print(shown)


def _artifact_facts(value: dict[str, Any]) -> dict[str, Any]:
    """An artifact's own metadata worth a line: the scalar fields of its reference (counts,
    sizes, a token cache's encoding and bytes_per_token), not where it is nor its hashes."""
    hashes = {"path", "data_version"}
    return {
        k: v
        for k, v in value.items()
        if k not in hashes and not k.endswith("_version") and not isinstance(v, dict | list)
    }


def _headline(row: dict[str, Any]) -> dict[str, Any]:
    """A report row's headline numbers (per-class accuracies and latencies stay in the report)."""
    keep = (
        "perplexity",
        "top1",
        "top5",
        "agreement",
        "kl",
        "ece",
        "parameters",
        "top1_kept",
        "params_ratio",
    )
    return {k: row[k] for k in keep if k in row}
