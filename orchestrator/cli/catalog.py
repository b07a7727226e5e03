"""`kdorch components`: the registered components and their fields, as tables."""

from __future__ import annotations

import inspect
import re
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from orchestrator import registry
from orchestrator.compile.describe import FieldRow, field_rows, first_paragraph
from orchestrator.compile.typecheck import type_name


def component_summary(cls: Any) -> str:
    """The component's one-line summary: its description, else its docstring's first paragraph
    (a docstring's first line may end mid-sentence)."""
    return " ".join(cls.description.split()) if cls.description else first_paragraph(cls.__doc__)


def _field_table(title: str, rows: list[FieldRow], own_key: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("field", "type", "default", "description"):
        table.add_column(column, overflow="fold")  # fold long words, never cut them off
    # Descriptions written for other places may point here; on this very page that is circular.
    self_reference = re.compile(rf"\s*\(see `kdorch components {re.escape(own_key)}`\)")
    for row in rows:
        description = self_reference.sub("", row.description)
        name = "  " * row.depth + row.name
        table.add_row(*(escape(cell) for cell in (name, row.type, row.default, description)))
    return table


def _port_rows(model: Any) -> list[FieldRow]:
    """Inputs and outputs by type only: the fields of artifact references are not the user's."""
    rows = []
    for name, field in model.model_fields.items():
        default = "required" if field.is_required() else "optional"
        rows.append(
            FieldRow(0, name, type_name(field.annotation), default, field.description or "")
        )
    return rows


def print_component(out: Console, cls: Any) -> None:
    """`kdorch components NAME`: the component's summary, docs, resources and fields."""
    summary = component_summary(cls)
    out.print(f"[bold]{escape(cls.key)}[/] v{escape(cls.version)} — {escape(summary)}")
    doc = inspect.cleandoc(cls.__doc__ or "")
    head, _, rest = doc.partition("\n\n")
    # When the docstring's first paragraph is the summary printed above, print only the rest.
    body = rest if first_paragraph(head) == summary else doc
    if body:
        out.print(escape(body))
    res = cls.default_resources.model_dump(exclude_defaults=True)
    out.print(
        f"default resources: {escape(str(res or 'none'))}; deterministic: {cls.deterministic}"
    )
    out.print(_field_table("config", field_rows(cls.Config), cls.key))
    out.print(_field_table("inputs", _port_rows(cls.Inputs), cls.key))
    out.print(_field_table("outputs", _port_rows(cls.Outputs), cls.key))


def print_components(out: Console) -> None:
    """`kdorch components`: every registered component, one row each."""
    table = Table(title="components")
    for column in ("key", "version", "inputs", "outputs", "summary"):
        table.add_column(column, overflow="fold")
    for cls in registry.all_components():
        table.add_row(
            *map(
                escape,
                (
                    cls.key,
                    cls.version,
                    ", ".join(cls.Inputs.model_fields),
                    ", ".join(cls.Outputs.model_fields),
                    component_summary(cls),
                ),
            )
        )
    out.print(table)
