"""Input references (``step.port``, ``step[value].port``, ``step[*].port``) and matrix expansion."""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from schemas.engine.pipeline import matrix_value_text

REF_PATTERN = re.compile(
    r"^(?P<step>[A-Za-z_][A-Za-z0-9_]*)(?:\[(?P<index>[^\]]+)\])?\.(?P<port>[A-Za-z_][A-Za-z0-9_]*)$"
)
PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Ref:
    """A parsed input reference. ``index`` is None (plain step), '*' (all instances) or a value."""

    step: str
    port: str
    index: str | None = None

    @classmethod
    def parse(cls, text: str) -> Ref:
        match = REF_PATTERN.match(text.strip())
        if match is None:
            raise ValueError(
                f"'{text}' is not a reference; write 'step_id.output_port' "
                "(or 'step_id[*].port' for every instance of a matrix step)"
            )
        index = match["index"]
        return cls(match["step"], match["port"], index.strip() if index else None)

    def __str__(self) -> str:
        index = f"[{self.index}]" if self.index is not None else ""
        return f"{self.step}{index}.{self.port}"


def format_value(value: Any) -> str:
    """How a matrix value appears in an instance id: ``true``, ``15``, ``0.5``, ``rot``.

    The schema's check that a matrix's values give distinct ids uses the same function.
    """
    return matrix_value_text(value)


def instance_suffix(values: Mapping[str, Any]) -> str:
    return ",".join(format_value(v) for v in values.values())


def instance_id(step_id: str, values: Mapping[str, Any] | None) -> str:
    return f"{step_id}[{instance_suffix(values)}]" if values else step_id


def expand_matrix(matrix: Mapping[str, list[Any]] | None) -> list[dict[str, Any]]:
    """Every combination of the matrix values, in order (the last name varies fastest)."""
    if not matrix:
        return [{}]
    names = list(matrix)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*matrix.values())]


def placeholders(value: Any) -> set[str]:
    """Every name written as ``${name}`` anywhere in ``value`` (strings inside dicts and lists)."""
    if isinstance(value, str):
        return set(PLACEHOLDER.findall(value))
    if isinstance(value, dict):
        return set().union(*(placeholders(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(placeholders(v) for v in value))
    return set()


def substitute(value: Any, variables: Mapping[str, Any], unknown: set[str]) -> Any:
    """Replace ``${name}`` placeholders; a string that is only a placeholder keeps the value's type.

    Names without a value are collected in ``unknown`` (and left as they are).
    """
    if isinstance(value, str):
        whole = PLACEHOLDER.fullmatch(value)
        if whole:
            name = whole.group(1)
            if name in variables:
                return variables[name]
            unknown.add(name)
            return value

        def repl(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return format_value(variables[name])
            unknown.add(name)
            return match.group(0)

        return PLACEHOLDER.sub(repl, value)
    if isinstance(value, dict):
        return {k: substitute(v, variables, unknown) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, variables, unknown) for v in value]
    return value
