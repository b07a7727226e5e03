"""Reading pipeline YAML safely, remembering where every value came from.

`yaml.safe_load` alone forgets positions and silently keeps the last of two duplicate keys.
We compose the node tree with the safe loader instead, reject duplicate keys, and keep a map
from each value's path (("steps", 1, "config", "epochs")) to its line and column (a
`orchestrator.compile.source_map.SourceMap`), so any later error, from Pydantic or from graph
validation, can point at the offending line.

Bad input never escapes as a Python traceback: bytes that are not UTF-8, characters YAML does not
allow, and input that is well-formed but too costly to expand (`yaml_limits`) all become located
`Problem`s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from orchestrator.compile.source_map import PathKey, SourceMap, source_line
from orchestrator.errors import ConfigError, Location, Problem, ValidationFailed
from orchestrator.frontend.yaml_limits import BoundedLoader, YAMLLimitExceeded, unshare


def _problem_at_position(file: str, lines: list[str], line: int, col: int, message: str) -> Problem:
    location = Location("(yaml)", file, line, col, source_line(lines, line))
    return Problem("config", message, location)


def _problem_at(file: str, lines: list[str], mark: Any, message: str) -> Problem:
    return _problem_at_position(file, lines, mark.line + 1, mark.column + 1, message)


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


def _read_text(path: str | Path) -> str:
    """The file as text; bytes that are not UTF-8 are a located error, not a traceback."""
    file = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"pipeline file not found: {file}") from None
    except OSError as e:
        raise ConfigError(f"cannot read pipeline file {file}: {e}") from e
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        line_start = raw.rfind(b"\n", 0, e.start) + 1
        column = len(raw[line_start : e.start].decode("utf-8", errors="replace")) + 1
        lines = raw.decode("utf-8", errors="replace").splitlines()
        message = (
            f"the file is not valid UTF-8: byte 0x{raw[e.start]:02x} cannot be decoded "
            f"({e.reason}); save the file as UTF-8"
        )
        problem = _problem_at_position(file, lines, line, column, message)
        raise ValidationFailed([problem], source=file) from None


def _yaml_problem(file: str, text: str, lines: list[str], error: yaml.YAMLError) -> Problem:
    """A located `Problem` for any error PyYAML (or our limits) raised."""
    if isinstance(error, yaml.reader.ReaderError):  # a character YAML does not allow
        position = error.position
        line = text.count("\n", 0, position) + 1
        column = position - (text.rfind("\n", 0, position) + 1) + 1
        # PyYAML gives the character as its code point (an int), or as text in older releases.
        char = chr(error.character) if isinstance(error.character, int) else error.character
        shown = f"{char!r} (#x{ord(char):04x})" if len(char) == 1 else repr(char)
        message = f"invalid YAML: character {shown} is not allowed in a YAML file; remove it"
        return _problem_at_position(file, lines, line, column, message)
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        prefix = "" if isinstance(error, YAMLLimitExceeded) else "invalid YAML: "
        message = f"{prefix}{error.problem or error.context}"
        if mark is not None:
            return _problem_at(file, lines, mark, message)
        return Problem("config", message)
    # e.g. a python/object tag: safe_load refuses to construct it
    return Problem("config", f"invalid YAML: {error}")


def load_yaml(path: str | Path) -> tuple[dict[str, Any], SourceMap]:
    """Parse a pipeline file into plain data and its source map; errors carry file:line:col.

    The data is a tree: a value written once and used through several aliases is copied, so
    editing it in one place (``--set``) does not change the others.
    """
    file = str(path)
    text = _read_text(path)
    lines = text.splitlines()
    sm = SourceMap(file=file, lines=lines)
    problems: list[Problem] = []
    loader: BoundedLoader | None = None
    try:
        loader = BoundedLoader(text)  # checks every character first (ReaderError)
        node = loader.get_single_node()
        if node is not None:
            # Before constructing: the constructor flattens merge keys (<<) into the nodes.
            _walk(node, (), sm.marks, problems, sm)
            if problems:
                raise ValidationFailed(problems, source=file)
        data = None if node is None else loader.construct_document(node)
    except yaml.YAMLError as e:
        raise ValidationFailed([_yaml_problem(file, text, lines, e)], source=file) from None
    finally:
        if loader is not None:
            loader.dispose()
    if node is None or data is None:
        raise ValidationFailed(
            [Problem("config", "the file is empty; a pipeline needs 'name' and 'steps'")],
            source=file,
        )
    if not isinstance(data, dict):
        raise ValidationFailed(
            [_problem_at(file, lines, node.start_mark, "a pipeline file must be a mapping")],
            source=file,
        )
    return unshare(data), sm
