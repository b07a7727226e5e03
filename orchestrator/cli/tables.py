"""Tables and numbers a person reads in a terminal, 80 columns wide included.

Step ids stay whole in every table (they are what a user types next: `kdorch show RUN STEP`):
their column never wraps, and the other columns wrap or shrink first. Counts read as
``14,538``, never ``1.454e+04``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

KEY_CHARS = 12  # a step's key as tables show it (enough to tell keys apart)
SHOWN_IDS = 20  # ids listed in one message before "... and N more"
_INSTANCE = re.compile(r"^(?P<base>[A-Za-z_][A-Za-z0-9_]*)\[[^\]]*\]$")


def step_table(title: str | None = None) -> Table:
    """A table without vertical borders (three characters a column kept for the text), its
    rows apart by a line (cells may take several lines)."""
    return Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )


def add_id_column(table: Table, name: str = "step") -> None:
    """The column of step ids: never wrapped nor cut."""
    table.add_column(name, no_wrap=True, overflow="ignore", min_width=4)


def fit_width(table: Table, console: Console, optional: Sequence[str]) -> Table:
    """``table`` without its ``optional`` columns (by header, in that order) while it cannot
    fit ``console`` with every word whole: rich would otherwise cut the ids too."""
    unbounded = console.options.update_width(10**6)  # else rich measures what it would cut
    for header in optional:
        if console.measure(table, options=unbounded).minimum <= console.width:
            break
        table.columns = [column for column in table.columns if column.header != header]
    return table


def number(value: Any) -> str:
    """A number for a person: whole numbers with thousands separators (``14,538``; a float
    that holds a count included), others to four significant digits (``0.9312``), large ones
    without an exponent (``12,345.7``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value):
        return str(value)
    if value.is_integer() and abs(value) < 1e18:
        return f"{int(value):,}"
    if abs(value) >= 1e4:
        return f"{value:,.1f}"
    return f"{value:.4g}"


def compact_ids(ids: Iterable[str], every: Iterable[str]) -> str:
    """Step ids joined for a narrow column: when ``ids`` hold every instance of a matrix step
    (of those in ``every``), they read as the YAML writes them all, ``expert_features[*]``, in
    the place of the first; other ids stay whole."""
    ids = list(ids)
    instances: dict[str, set[str]] = {}
    for step_id in every:
        match = _INSTANCE.match(step_id)
        if match:
            instances.setdefault(match["base"], set()).add(step_id)
    given = set(ids)
    whole = {base for base, all_ids in instances.items() if len(all_ids) > 1 and all_ids <= given}
    parts: list[str] = []
    for step_id in ids:
        match = _INSTANCE.match(step_id)
        base = match["base"] if match else None
        if base not in whole:
            parts.append(step_id)
        elif f"{base}[*]" not in parts:
            parts.append(f"{base}[*]")
    return ", ".join(parts)


def some_ids(ids: list[str], how_to_see_all: str) -> str:
    """At most `SHOWN_IDS` ids, and how many more there are and where to see them all."""
    if len(ids) <= SHOWN_IDS:
        return ", ".join(ids)
    rest = len(ids) - SHOWN_IDS
    return f"{', '.join(ids[:SHOWN_IDS])} ... and {rest} more ({how_to_see_all})"
