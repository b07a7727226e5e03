"""`kdorch` called in this process, and the toy pipeline the CLI tests run (no Ray needed)."""

from __future__ import annotations

import pytest

from orchestrator.cli import main

_TOY_STEPS = """\
steps:
- id: src
  component: toy_source
- id: scaled
  component: toy_scale
  matrix: {factor: [2, 3]}
  inputs: {numbers: src.numbers}
  config: {factor: "${factor}"}
- id: total
  component: toy_gather
  inputs: {parts: "scaled[*].numbers"}
"""


def toy_pipeline(name: str) -> str:
    """YAML of a pipeline named ``name``: a source, a matrix step of two instances (factors 2
    and 3) and a step gathering them (`tests/support/toy_components.py`)."""
    return f"name: {name}\n{_TOY_STEPS}"


def kdorch(*args: str) -> int:
    """Run `kdorch ARGS` as the console script would; its exit code (output: capsys)."""
    with pytest.raises(SystemExit) as info:
        main(list(args))
        raise SystemExit(0)
    return int(info.value.code or 0)
