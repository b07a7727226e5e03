"""Where each value of a pipeline came from: a line and column in its YAML file, or a `--set`.

The front end fills a `SourceMap` while it reads a file (`orchestrator.frontend.yaml_source`);
the compiler and the loader's schema checks only read it, to point a `Problem` at the line that
caused it. It lives below both, so the compiler never imports the front end.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.errors import Location

PathKey = tuple[str | int, ...]
"""A value's place in the document: ``("steps", 1, "config", "epochs")``."""

MAX_SHOWN_LINE = 240
"""Longer source lines are not quoted under a message (the location still names the column)."""


def source_line(lines: list[str], line: int) -> str | None:
    """The text of 1-based ``line`` to quote under a message, or None if absent or too long."""
    if not 0 < line <= len(lines) or len(lines[line - 1]) > MAX_SHOWN_LINE:
        return None
    # Control characters would act on the terminal; one replacement each keeps the caret aligned.
    return "".join(c if c.isprintable() or c == "\t" else "\ufffd" for c in lines[line - 1])


@dataclass
class SourceMap:
    """Positions of the values of one YAML document, plus the `--set` overrides applied to it."""

    file: str
    lines: list[str]
    marks: dict[PathKey, tuple[int, int, int]] = field(default_factory=dict)  # line, col, width
    key_marks: dict[PathKey, tuple[int, int, int]] = field(default_factory=dict)  # of map keys
    overrides: dict[PathKey, str] = field(default_factory=dict)  # path -> "--set a.b=c"

    def locate(self, path: PathKey, display: str, at_key: bool = False) -> Location:
        """The most precise location known for ``path`` (falls back to its nearest parent).

        ``at_key`` points at the mapping key instead of its value (for unknown fields).
        """
        for i in range(len(path), -1, -1):
            prefix = path[:i]
            if prefix in self.overrides:
                return Location(path=display, file=self.overrides[prefix])
            marks = self.key_marks if at_key and prefix in self.key_marks else self.marks
            if prefix in marks:
                line, col, width = marks[prefix]
                src = source_line(self.lines, line)
                return Location(display, self.file, line, col, src, width)
        return Location(path=display, file=self.file)
