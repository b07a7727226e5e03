"""Showing a run as it happens: one line per step event, a live 'running: ...' line on a TTY."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.status import Status
from rich.table import Table

from orchestrator.cli.tables import KEY_CHARS, add_id_column, fit_width, step_table
from schemas.engine.run import Event, EventKind, RunRecord, StepStatus

_MARKS = {
    EventKind.started: ("[cyan]▶[/]", "started"),
    EventKind.finished: ("[green]✔[/]", "ran"),
    EventKind.cache_hit: ("[green]≡[/]", "cached"),
    EventKind.failed: ("[red]✘[/]", "failed"),
    EventKind.skipped: ("[yellow]-[/]", "skipped"),
}


class ConsoleReporter:
    """An executor listener that prints progress to a rich console (stderr by default)."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True, soft_wrap=True)
        self.running: list[str] = []
        self._status: Status | None = None
        self._width = 12

    def __call__(self, event: Event) -> None:
        if event.kind == EventKind.planned and event.step_id:
            self._width = max(self._width, len(event.step_id))
            return
        if event.kind == EventKind.progress and event.step_id:
            step = escape(f"{event.step_id:<{self._width}}")
            self.console.print(f"   {step} [dim]{escape(event.message)}[/]", highlight=False)
            self._refresh()
            return
        if event.kind not in _MARKS or event.step_id is None:
            return
        mark, word = _MARKS[event.kind]
        extra = ""
        if event.seconds is not None:
            extra += f" {event.seconds:7.1f} s"
        if event.kind == EventKind.failed:
            extra += f"  [red]{escape(event.message)}[/]"
        elif event.kind == EventKind.skipped:
            extra += f"  ({escape(event.message)})"
        elif event.kind == EventKind.cache_hit:
            extra += f"  [dim]{(event.key or '')[:12]}[/]"
        step = escape(f"{event.step_id:<{self._width}}")
        self.console.print(f" {mark} {step} {word:<8}{extra}", highlight=False)
        if event.kind == EventKind.started:
            self.running.append(event.step_id)
        elif event.step_id in self.running:
            self.running.remove(event.step_id)
        self._refresh()

    def _refresh(self) -> None:
        if not self.console.is_terminal:
            return
        if self.running:
            text = escape("running: " + ", ".join(self.running))
            if self._status is None:
                self._status = self.console.status(text)
                self._status.start()
            else:
                self._status.update(text)
        else:
            self.close()

    def close(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


def summary_table(record: RunRecord, console: Console | None = None) -> Table:
    """The end of `kdorch run`: a row per step, its id whole (the columns a narrow ``console``
    cannot hold are left out, key first)."""
    colors = {
        StepStatus.ran: "green",
        StepStatus.cached: "green",
        StepStatus.failed: "red",
        StepStatus.skipped: "yellow",
    }
    table = step_table(f"run {record.run_id} · {escape(record.pipeline)} · {record.status.value}")
    add_id_column(table)
    table.add_column("component", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("seconds", justify="right", no_wrap=True)
    table.add_column("key", no_wrap=True)
    for step in record.steps:
        color = colors.get(step.status, "white")
        table.add_row(
            escape(step.step_id),
            step.component,
            f"[{color}]{step.status.value}[/]",
            f"{step.seconds:.1f}" if step.seconds is not None else "",
            (step.key or "")[:KEY_CHARS],
        )
    if console is not None:
        fit_width(table, console, optional=("key", "seconds", "component"))
    return table
