"""Every `--set` example the CLI shows must work on a shipped pipeline.

A help text once suggested `steps.distill.config.epochs=1`, a step no shipped pipeline has. The
examples are cut from the help as a user sees it (every command's `--help`) and from the
message of a malformed `--set`, then validated against pipelines/hinton_kd.yaml.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrator import validate
from orchestrator.cli import main
from orchestrator.errors import ConfigError
from orchestrator.frontend.overrides import parse_assignment

PIPELINE = Path(__file__).parents[2] / "pipelines" / "hinton_kd.yaml"
COMMANDS = ["validate", "plan", "run", "graph", "components", "runs", "submit"]
# `--set steps.x.config.y=1`; not the metavar `--set PATH=VALUE` (upper case).
EXAMPLE = re.compile(r"--set[ =]([a-z_][\w.\[\]*-]*=[^\s,;)`'\"]+)")


def help_text(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


def shown_examples(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> set[str]:
    monkeypatch.setenv("COLUMNS", "400")  # one line per option: no example is wrapped apart
    found = {m for command in COMMANDS for m in EXAMPLE.findall(help_text(command, capsys))}
    with pytest.raises(ConfigError) as info:
        parse_assignment("steps.teacher.config.epochs")  # no '=': the message shows an example
    found |= set(EXAMPLE.findall(str(info.value)))
    return found


def test_every_set_example_validates_on_a_shipped_pipeline(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    examples = shown_examples(capsys, monkeypatch)
    assert examples, "no --set example found in the help texts"
    for example in sorted(examples):
        graph = validate(PIPELINE, overrides=[example])
        path, value = parse_assignment(example)
        step = path.split(".")[1]
        assert step in {node.template for node in graph.nodes.values()}, example
        assert value is not None
