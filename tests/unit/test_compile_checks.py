"""Compile-time checks: non-finite numbers, matrix ids and unused names, step id length, order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field, ValidationError

from orchestrator import Component, Pipeline, register, validate
from orchestrator.errors import ValidationFailed
from schemas.base import Model
from schemas.engine.pipeline import StepSpec
from tests.support.toy_components import SourceOutputs


class PlainConfig(BaseModel):
    """A third-party style Config: plain Pydantic, which accepts inf and nan by itself."""

    rate: float = 1.0
    extra: dict[str, Any] = Field(default_factory=dict)
    ceiling: float = Field(1.0, allow_inf_nan=True, description="inf means no ceiling.")


class LenientConfig(Model):
    """A kdorch Model whose field says it means infinity."""

    limit: float = Field(1.0, allow_inf_nan=True)
    rate: float = 1.0


@register
class PlainSource(Component):
    """Never run: its Config is what these tests are about."""

    key = "test_plain_source"
    version = "1"
    Config = PlainConfig
    Outputs = SourceOutputs


@register
class LenientSource(Component):
    """Never run: its Config is what these tests are about."""

    key = "test_lenient_source"
    version = "1"
    Config = LenientConfig
    Outputs = SourceOutputs


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


# -- non-finite numbers -----------------------------------------------------------------------


def test_plain_pydantic_configs_refuse_non_finite_numbers_too(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "name: x\nsteps:\n- id: a\n  component: test_plain_source\n  config:\n"
        "    rate: .inf\n    extra: {deep: [1, .nan]}\n    ceiling: .inf\n",
    )
    with pytest.raises(ValidationFailed) as info:
        validate(path)
    message = str(info.value)
    assert "p.yaml:6:11: steps[0] (a).config.rate" in message
    assert "expected a finite number, got .inf" in message
    assert "p.yaml:7:23: steps[0] (a).config.extra.deep[1]" in message
    assert "got .nan" in message
    assert "ceiling" not in message  # its field says it means infinity
    assert message.rstrip().endswith(f"2 errors in {path}")


def test_a_field_may_allow_infinity_in_a_kdorch_model(tmp_path: Path) -> None:
    ok = "name: x\nsteps:\n- {id: a, component: test_lenient_source, config: {limit: .inf}}\n"
    assert validate(write(tmp_path, ok)).nodes["a"].config.limit == float("inf")
    bad = ok.replace("limit: .inf", "rate: .inf")
    with pytest.raises(ValidationFailed, match=r"config.rate\n.*\n.*\n  expected a finite number"):
        validate(write(tmp_path, bad))


def test_non_finite_from_set_and_profiles_is_refused_and_names_its_origin(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "name: x\nprofiles:\n  broken: {steps.src.config.start: .nan}\n"
        "steps:\n- {id: src, component: toy_source}\n",
    )
    with pytest.raises(ValidationFailed) as info:
        validate(path, overrides=["steps.src.config.start=.inf"])
    assert "--set steps.src.config.start=.inf" in str(info.value)
    assert "expected a finite number, got .inf" in str(info.value)
    with pytest.raises(ValidationFailed) as info:
        validate(path, profile="broken")
    assert "profile 'broken' (steps.src.config.start)" in str(info.value)
    assert "got .nan" in str(info.value)
    with pytest.raises(ValidationFailed, match=r"resources\.num_gpus"):
        validate(path, overrides=["steps.src.resources.num_gpus=.inf"])


def test_builder_configs_get_the_same_rule() -> None:
    p = Pipeline("x")
    p.add("a", "test_plain_source", config={"rate": float("nan")})
    with pytest.raises(
        ValidationFailed, match=r"steps\[0\] \(a\).config.rate\n  expected a finite"
    ):
        p.validate()


# -- matrix -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "shown"),
    [([True, "true"], "true and 'true'"), ([1, "1"], "1 and '1'"), ([0.5, "0.5"], "0.5 and '0.5'")],
)
def test_matrix_values_that_read_the_same_are_refused(values: list[Any], shown: str) -> None:
    with pytest.raises(ValidationError, match=f"values {shown} both read"):
        StepSpec(id="a", component="toy_scale", matrix={"x": values}, config={"factor": "${x}"})


def test_matrix_values_joined_into_the_same_id_are_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "name: x\nsteps:\n- {id: src, component: toy_source}\n"
        "- id: s\n  component: toy_scale\n  matrix: {a: ['x,y', x], b: [z, 'y,z']}\n"
        "  inputs: {numbers: src.numbers}\n  config: {marker_dir: '${a}/${b}'}\n",
    )
    with pytest.raises(ValidationFailed, match=r"would both be 's\[x,y,z\]'"):
        validate(path)


def test_an_unused_matrix_name_is_refused_even_beside_a_used_one(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "name: x\nsteps:\n- {id: src, component: toy_source}\n"
        "- id: s\n  component: toy_scale\n  matrix: {factor: [2, 3], run: [1, 2]}\n"
        "  inputs: {numbers: src.numbers}\n  config: {factor: '${factor}'}\n",
    )
    with pytest.raises(ValidationFailed) as info:
        validate(path)
    message = str(info.value)
    assert "p.yaml:6:28: steps[1] (s).matrix.run" in message
    assert "matrix name 'run' is never used as '${run}'" in message
    assert "matrix name 'factor'" not in message


def test_values_that_validate_to_the_same_config_are_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "name: x\nsteps:\n- {id: src, component: toy_source}\n"
        "- {id: s, component: toy_scale, matrix: {f: [1, 1.0, 2]}, inputs: {numbers: src.numbers},"
        " config: {factor: '${f}'}}\n",
    )
    with pytest.raises(ValidationFailed, match=r"instances 's\[1\]' and 's\[1.0\]' get the same"):
        validate(path)


def test_a_name_used_only_in_inputs_counts_as_used(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "name: x\nsteps:\n- {id: src, component: toy_source}\n"
        "- {id: s, component: toy_scale, matrix: {f: [2, 3]}, inputs: {numbers: src.numbers},"
        " config: {factor: '${f}'}}\n"
        "- {id: t, component: toy_scale, matrix: {f: [2, 3]},"
        " inputs: {numbers: 's[${f}].numbers'}}\n",
    )
    graph = validate(path)
    assert [s.step_id for s in graph.nodes["t[3]"].bindings["numbers"].sources] == ["s[3]"]


def test_unknown_instance_lists_a_few_ids_of_a_large_matrix(tmp_path: Path) -> None:
    values = ", ".join(str(v) for v in range(1, 201))
    path = write(
        tmp_path,
        "name: x\nsteps:\n- {id: src, component: toy_source}\n"
        f"- {{id: s, component: toy_scale, matrix: {{f: [{values}]}},"
        " inputs: {numbers: src.numbers}, config: {factor: '${f}'}}\n"
        "- {id: t, component: toy_scale, inputs: {numbers: 's[999].numbers'}}\n",
    )
    with pytest.raises(ValidationFailed) as info:
        validate(path)
    message = str(info.value)
    assert "'s[999].numbers' names no instance of 's' (s[1], s[2]" in message
    assert "... 200 in all)" in message and "s[150]" not in message


def test_a_type_mismatch_from_a_gathered_matrix_is_reported_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "name: x\nsteps:\n- {id: src, component: toy_source}\n"
        "- {id: s, component: toy_scale, matrix: {f: [1, 2, 3, 4]}, inputs: {numbers: src.numbers},"
        " config: {factor: '${f}'}}\n"
        "- {id: r, component: toy_needs_report, inputs: {report: 's[*].numbers'}}\n",
    )
    with pytest.raises(ValidationFailed) as info:
        validate(path)
    message = str(info.value)
    assert "takes one Report, but a list of 4 is bound" in message


# -- step ids ---------------------------------------------------------------------------------


def test_step_id_length_is_limited() -> None:
    StepSpec(id="a" * 64, component="toy_source")
    with pytest.raises(ValidationError, match="step id is 65 characters long; at most 64"):
        StepSpec(id="a" * 65, component="toy_source")
    p = Pipeline("x")
    p.add("s" * 250, "toy_source")
    with pytest.raises(ValidationFailed, match="step id is 250 characters long"):
        p.validate()


# -- order ------------------------------------------------------------------------------------


def test_ready_steps_run_in_file_order_and_cycles_are_found(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "name: x\nsteps:\n"
        "- {id: e, component: toy_gather, inputs: {parts: [b.numbers, d.numbers]}}\n"
        "- {id: a, component: toy_source}\n"
        "- {id: d, component: toy_scale, inputs: {numbers: c.numbers}}\n"
        "- {id: b, component: toy_scale, inputs: {numbers: a.numbers}}\n"
        "- {id: c, component: toy_source}\n",
    )
    assert validate(path).order == ["a", "b", "c", "d", "e"]
    cyclic = path.read_text().replace("c.numbers", "e.numbers")
    with pytest.raises(ValidationFailed, match=r"cycle: (d -> e -> d|e -> d -> e)"):
        validate(write(tmp_path, cyclic))


def test_downstream_and_descendants(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "name: x\nsteps:\n- {id: a, component: toy_source}\n"
        "- {id: b, component: toy_scale, inputs: {numbers: a.numbers}}\n"
        "- {id: c, component: toy_scale, inputs: {numbers: b.numbers}}\n",
    )
    graph = validate(path)
    assert graph.downstream("a") == {"b"} and graph.descendants("a") == {"b", "c"}
