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


#: ``name[args]`` innermost first: a type as `type_name` writes it, read one bracket at a time.
_GENERIC = re.compile(r"\b(list|tuple|set|frozenset|dict)\[([^\[\]]*)\]")
REQUIRED = "*"  # after the name of a field that has no default


def readable_type(text: str) -> str:
    """A type for a person who writes YAML: ``list of str``, ``dict of str to float``,
    ``list of dict`` (not ``list[dict[str, any]]``), ``[int, int]`` for a fixed pair, ``null``
    (not ``None``)."""

    def one(match: re.Match[str]) -> str:
        kind, args = match[1], [a.strip() for a in match[2].split(", ")]
        if kind == "dict":
            key, value = [*args, "any"][:2]
            return "dict" if value == "any" else f"dict of {key} to {value}"
        if kind == "tuple" and args[-1:] != ["..."]:
            return f"[{', '.join(args)}]"  # a fixed length: as YAML writes it
        item = args[0]
        return "list" if item == "any" else f"list of {item}"

    previous = None
    while previous != text:  # the innermost brackets first: list[dict[...]] -> list[dict]
        previous, text = text, _GENERIC.sub(one, text)
    return re.sub(r"\bNone\b", "null", text)


def _field_table(title: str, rows: list[FieldRow], own_key: str) -> Table:
    table = Table(title=title, title_justify="left", caption_justify="left")
    table.add_column("field", no_wrap=True)  # whole: it is what the YAML says
    for column in ("type", "default", "description"):
        table.add_column(column, overflow="fold")  # fold long words, never cut them off
    # Descriptions written for other places may point here; on this very page that is circular.
    self_reference = re.compile(rf"\s*\(see `kdorch components {re.escape(own_key)}`\)")
    required = False
    for row in rows:
        description = self_reference.sub("", row.description)
        name = "  " * row.depth + row.name
        default = row.default
        if default == "required":  # no default: marked by its name, not in "default"
            name, default, required = f"{name} {REQUIRED}", "", True
        cells = (name, readable_type(row.type), default, description)
        table.add_row(*(escape(cell) for cell in cells))
    if required:
        table.caption = f"{REQUIRED} required: no default, the config must set it"
    return table


def _port_table(title: str, model: Any) -> Table:
    """Inputs or outputs by type only (the fields of artifact references are not the user's);
    an input that may be left out says so."""
    table = Table(title=title, title_justify="left")
    table.add_column(title.removesuffix("s"), no_wrap=True)
    table.add_column("type", overflow="fold")
    table.add_column("description", overflow="fold")
    for name, field in model.model_fields.items():
        shown = readable_type(type_name(field.annotation))
        if not field.is_required() and title == "inputs":
            shown = shown.removesuffix(" | null") + " (optional)"  # left out, not null
        table.add_row(escape(name), escape(shown), escape(field.description or ""))
    return table


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
    out.print(_port_table("inputs", cls.Inputs))
    out.print(_port_table("outputs", cls.Outputs))


def print_components(out: Console) -> None:
    """`kdorch components`: every registered component, one line each (a summary longer than
    the terminal ends in "…"; `kdorch components NAME` has all of it)."""
    classes = registry.all_components()
    rows = [(cls.key, f"v{cls.version}", component_summary(cls)) for cls in classes]
    key_width = max(len(key) for key, _, _ in rows)
    version_width = max(len(version) for _, version, _ in rows)
    room = max(out.width - key_width - version_width - 4, 10)  # two spaces between columns
    out.print("[bold]components[/]")
    for key, version, summary in rows:
        text = summary if len(summary) <= room else summary[: room - 1].rsplit(" ", 1)[0] + " …"
        line = f"{key:<{key_width}}  {version:<{version_width}}  {text}"
        out.print(escape(line), highlight=False, overflow="ignore", crop=False)
    out.print("inputs, outputs and config of one: kdorch components NAME", highlight=False)
