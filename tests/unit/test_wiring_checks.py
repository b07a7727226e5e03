"""The engine hook "checks of a step against its wiring": `Component.promise` in graph order,
`Component.check_wiring` once per step, located problems from validate, plan and run before
anything runs (no Ray, toy components; the built-in components' checks are in
tests/unit/test_wiring_kd.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field

from orchestrator import Component, StepContext, ValidationFailed, plan, register, run, validate
from orchestrator.component import ConfigIssue, Wiring
from schemas.base import Model
from tests.support.cli import kdorch
from tests.support.toy_components import GatherInputs, GatherOutputs, Numbers, SourceOutputs

SEEN: list[Wiring] = []


class LabelsConfig(Model):
    labels: list[str] = Field(default_factory=list)
    promise: bool = True


@register
class PromisingSource(Component):
    """Never run: promises its labels."""

    key = "test_promising_source"
    version = "1"
    Config = LabelsConfig
    Outputs = SourceOutputs

    @classmethod
    def promise(cls, config: LabelsConfig, wiring: Wiring) -> dict[str, Any]:
        if not config.promise:
            return {}
        return {"numbers": tuple(config.labels)}


class PickConfig(Model):
    pick: str = "a"
    parts: int | None = None
    needs_bias: bool = False
    explode: bool = False


@register
class Picker(Component):
    """Never run: checks its pick against the promised labels, its part count, its bias."""

    key = "test_picker"
    version = "1"
    Config = PickConfig
    Inputs = GatherInputs
    Outputs = GatherOutputs

    @classmethod
    def check_wiring(cls, config: PickConfig, wiring: Wiring) -> list[ConfigIssue]:
        SEEN.append(wiring)
        if config.explode:
            raise RuntimeError("the check itself broke")
        issues = []
        for source, labels in wiring.promised("parts", tuple):
            if config.pick not in labels:
                issues.append(ConfigIssue(f"{source.step_id} has no label '{config.pick}'", "pick"))
        count = wiring.count("parts")
        if config.parts is not None and count is not None and count != config.parts:
            issues.append(ConfigIssue(f"{count} parts, not {config.parts}", "parts"))
        if config.needs_bias and not wiring.connected("bias"):
            issues.append(ConfigIssue("bias is not connected", under="inputs"))
        return issues


class ManyOutputs(BaseModel):
    lists: list[Numbers]


@register
class ManySource(Component):
    """Never run: outputs a list whose length only the run knows."""

    key = "test_many_source"
    version = "1"
    Config = LabelsConfig
    Outputs = ManyOutputs

    def run(self, inputs: BaseModel, ctx: StepContext) -> ManyOutputs:  # pragma: no cover
        raise NotImplementedError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text("name: w\n" + text)
    return path


FAN_IN = """\
steps:
- id: src
  component: test_promising_source
  matrix: {n: [1, 2, 3]}
  config: {labels: [a, b, "x${n}"]}
- id: pick
  component: test_picker
  inputs: {parts: "src[*].numbers"}
  config: {pick: c, parts: 2, needs_bias: true}
"""


def test_problems_are_located_and_each_said_once(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed) as failed:
        validate(write(tmp_path, FAN_IN))
    message = str(failed.value)
    # the pick is wrong for each of the three sources: three messages, each once
    for n in (1, 2, 3):
        assert message.count(f"src[{n}] has no label 'c'") == 1
    assert "p.yaml:10:18: steps[1] (pick).config.pick" in message
    assert "3 parts, not 2" in message and "steps[1] (pick).config.parts" in message
    assert "p.yaml:9:11: steps[1] (pick).inputs" in message and "bias is not connected" in message
    assert message.rstrip().endswith("5 errors in " + str(tmp_path / "p.yaml"))


def test_a_step_sees_its_wiring_and_unknown_stays_unknown(tmp_path: Path) -> None:
    SEEN.clear()
    text = FAN_IN.replace('{labels: [a, b, "x${n}"]}', '{labels: [a, b, "x${n}"], promise: false}')
    text = text.replace("parts: 2, needs_bias: true", "parts: 3")
    validate(write(tmp_path, text))  # nothing promised: the pick cannot be refused
    (wiring,) = SEEN
    assert wiring.step_id == "pick" and wiring.connected("parts") and not wiring.connected("bias")
    assert [s.step_id for s in wiring.inputs["parts"]] == ["src[1]", "src[2]", "src[3]"]
    assert wiring.count("parts") == 3 and wiring.count("bias") == 0
    assert all(s.promise is None and not s.many for s in wiring.inputs["parts"])


def test_a_list_output_has_an_unknown_count(tmp_path: Path) -> None:
    SEEN.clear()
    text = (
        "steps:\n- {id: src, component: test_many_source}\n"
        "- {id: pick, component: test_picker, inputs: {parts: src.lists}, config: {parts: 1}}\n"
    )
    validate(write(tmp_path, text))
    (wiring,) = SEEN
    assert wiring.inputs["parts"][0].many and wiring.count("parts") is None


def test_a_check_that_breaks_is_a_problem_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = FAN_IN.replace("needs_bias: true", "explode: true")
    path = write(tmp_path, text)
    assert kdorch("validate", str(path)) == 2
    err = capsys.readouterr().err
    assert "checking the wiring of component 'test_picker' failed: RuntimeError" in err
    assert "Traceback" not in err


def test_plan_and_run_refuse_before_anything_is_written(tmp_path: Path) -> None:
    path, store = write(tmp_path, FAN_IN), tmp_path / "store"
    with pytest.raises(ValidationFailed, match="has no label 'c'"):
        plan(path, storage=str(store))
    with pytest.raises(ValidationFailed, match="has no label 'c'"):
        run(path, storage=str(store), executor="local")
    assert not store.exists()


def test_submit_checks_the_wiring_without_looking_outside(tmp_path: Path) -> None:
    SEEN.clear()
    fits = FAN_IN.replace("pick: c, parts: 2, needs_bias: true", "pick: a")
    validate(write(tmp_path, fits), check_data=False)
    assert not SEEN[0].outside
    assert SEEN[0].inputs["parts"][0].promise == ("a", "b", "x1")
