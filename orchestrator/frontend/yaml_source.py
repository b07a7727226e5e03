"""Reading pipeline YAML safely, remembering where every value came from.

`yaml.safe_load` alone forgets positions and silently keeps the last of two duplicate keys.
We compose the node tree with the safe loader instead, reject duplicate keys, and keep a map
from each value's path (("steps", 1, "config", "epochs")) to its line and column, so any later
error, from Pydantic or from graph validation, can point at the offending line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from orchestrator.errors import ConfigError, Location, Problem, ValidationFailed

PathKey = tuple[str | int, ...]


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
                src = self.lines[line - 1] if 0 < line <= len(self.lines) else None
                return Location(display, self.file, line, col, src, width)
        return Location(path=display, file=self.file)


def _problem_at(file: str, lines: list[str], mark: Any, message: str) -> Problem:
    line, col = mark.line + 1, mark.column + 1
    src = lines[line - 1] if 0 < line <= len(lines) else None
    return Problem("config", message, Location("(yaml)", file, line, col, src))


def _position(node: yaml.Node) -> tuple[int, int, int]:
    start, end = node.start_mark, node.end_mark
    width = end.column - start.column if end.line == start.line else 1
    return start.line + 1, start.column + 1, max(width, 1)


def _walk(node: yaml.Node, path: PathKey, marks: dict, problems: list[Problem], sm: SourceMap):
    marks[path] = _position(node)
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                first = seen[key].start_mark.line + 1
                problems.append(
                    _problem_at(
                        sm.file,
                        sm.lines,
                        key_node.start_mark,
                        f"duplicate key '{key}' (first defined on line {first}); "
                        "YAML would silently keep only the last one",
                    )
                )
            seen[key] = key_node
            sm.key_marks[(*path, key)] = _position(key_node)
            _walk(value_node, (*path, key), marks, problems, sm)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*path, i), marks, problems, sm)


def load_yaml(path: str | Path) -> tuple[dict[str, Any], SourceMap]:
    """Parse a pipeline file into plain data and its source map; errors carry file:line:col."""
    file = str(path)
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ConfigError(f"pipeline file not found: {file}") from None
    except OSError as e:
        raise ConfigError(f"cannot read pipeline file {file}: {e}") from e
    lines = text.splitlines()
    sm = SourceMap(file=file, lines=lines)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        message = f"invalid YAML: {e.problem or e.context}"
        if mark is None:
            raise ValidationFailed([Problem("config", message)], source=file) from None
        raise ValidationFailed([_problem_at(file, lines, mark, message)], source=file) from None
    except yaml.YAMLError as e:  # e.g. a python/object tag: safe_load refuses to construct it
        raise ValidationFailed([Problem("config", f"invalid YAML: {e}")], source=file) from None
    if node is None or data is None:
        raise ValidationFailed(
            [Problem("config", "the file is empty; a pipeline needs 'name' and 'steps'")],
            source=file,
        )
    problems: list[Problem] = []
    _walk(node, (), sm.marks, problems, sm)
    if problems:
        raise ValidationFailed(problems, source=file)
    if not isinstance(data, dict):
        raise ValidationFailed(
            [_problem_at(file, lines, node.start_mark, "a pipeline file must be a mapping")],
            source=file,
        )
    return data, sm
