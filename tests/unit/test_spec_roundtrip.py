"""YAML and the Python builder are two ways to write the same PipelineSpec."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from orchestrator import Pipeline, dump_pipeline, load_pipeline, validate
from orchestrator.errors import ConfigError
from schemas.engine.pipeline import PipelineSpec, StepSpec

YAML = """\
name: fanout
description: one source, a matrix of scalings, gathered
profiles:
  small: {steps.src.config.count: 2}
steps:
- id: src
  component: toy_source
  config:
    count: 4
- id: scaled
  component: toy_scale
  matrix:
    factor: [2, 3]
  inputs:
    numbers: src.numbers
  config:
    factor: ${factor}
  resources:
    num_cpus: 0.5
- id: total
  component: toy_gather
  inputs:
    parts: scaled[*].numbers
  cache: recompute
"""


def build() -> Pipeline:
    p = Pipeline(
        "fanout",
        description="one source, a matrix of scalings, gathered",
        profiles={"small": {"steps.src.config.count": 2}},
    )
    src = p.add("src", "toy_source", config={"count": 4})
    scaled = p.add(
        "scaled",
        "toy_scale",
        matrix={"factor": [2, 3]},
        inputs={"numbers": src.numbers},
        config={"factor": "${factor}"},
        resources={"num_cpus": 0.5},
    )
    p.add("total", "toy_gather", inputs={"parts": scaled.all.numbers}, cache="recompute")
    return p


def test_builder_and_yaml_give_the_same_spec(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(YAML)
    assert build().spec == load_pipeline(path).spec


def test_yaml_spec_yaml_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(YAML)
    spec = load_pipeline(path).spec
    dumped = dump_pipeline(spec)
    assert yaml.safe_load(dumped) == yaml.safe_load(YAML)
    again = tmp_path / "again.yaml"
    again.write_text(dumped)
    assert load_pipeline(again).spec == spec


def test_builder_output_compiles_with_matrix_instances() -> None:
    graph = validate(build().spec)
    assert graph.order == ["src", "scaled[2]", "scaled[3]", "total"]
    assert graph.nodes["scaled[3]"].config.factor == 3.0
    binding = graph.nodes["total"].bindings["parts"]
    assert [s.step_id for s in binding.sources] == ["scaled[2]", "scaled[3]"] and binding.gathered


def test_profile_and_set_overrides(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(YAML)
    spec = load_pipeline(path, ["steps.scaled.matrix.factor=[5]"], profile="small").spec
    assert spec.steps[0].config == {"count": 2}
    assert spec.steps[1].matrix == {"factor": [5]}
    with pytest.raises(ConfigError, match=r"no step 'scaledd'.*did you mean 'scaled'"):
        load_pipeline(path, ["steps.scaledd.config.factor=1"])
    with pytest.raises(ConfigError, match=r"no such profile.*known: small"):
        load_pipeline(path, profile="big")
    with pytest.raises(ConfigError, match="expects path=value"):
        load_pipeline(path, ["steps.src.config.count"])


def test_override_errors_point_at_the_set_option(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(YAML)
    with pytest.raises(Exception) as info:
        validate(path, overrides=["steps.src.config.count=many"])
    assert "--set steps.src.config.count=many" in str(info.value)
    assert "valid integer" in str(info.value)


def test_specs_are_frozen_and_strict() -> None:
    step = StepSpec(id="a", component="toy_source")
    with pytest.raises(ValidationError):
        step.id = "b"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="extra"):
        StepSpec(id="a", component="toy_source", confg={})  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="repeats a value"):
        StepSpec(id="a", component="toy_source", matrix={"x": [1, 1]})
    with pytest.raises(ValidationError, match="at least 1"):
        PipelineSpec(name="empty", steps=[])


def test_yaml_off_means_cache_off(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("name: x\nsteps:\n- id: a\n  component: toy_source\n  cache: off\n")
    assert load_pipeline(path).spec.steps[0].cache.value == "off"


def test_union_outputs_fit_union_inputs() -> None:
    from orchestrator.compile.typecheck import fits
    from schemas.engine.artifacts import ArtifactRef
    from schemas.kd.artifacts import Dataset, ModelCheckpoint
    from schemas.kd.models import MLPSpec, MnistCNNSpec, ModelSpec, ResNetSpec

    assert fits(ModelSpec, ModelSpec) and fits(ModelSpec, ModelSpec | None)
    assert fits(MLPSpec, ModelSpec) and not fits(ModelSpec, MLPSpec)
    assert fits(MLPSpec | MnistCNNSpec, MLPSpec | MnistCNNSpec | ResNetSpec)
    assert not fits(MLPSpec | ResNetSpec, MLPSpec | MnistCNNSpec)
    assert fits(ModelCheckpoint, ArtifactRef) and not fits(Dataset, ModelCheckpoint)
