"""YAML <-> `PipelineSpec`. Parsing reports every schema error with its file:line:column."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from orchestrator.compile.problems import make_locator, problems_from_validation_error
from orchestrator.compile.source_map import SourceMap
from orchestrator.errors import ValidationFailed
from orchestrator.frontend.overrides import apply_overrides
from orchestrator.frontend.yaml_source import load_yaml
from schemas.engine.pipeline import PipelineSpec


@dataclass
class LoadedPipeline:
    spec: PipelineSpec
    source_map: SourceMap | None = None

    @property
    def source(self) -> str | None:
        return self.source_map.file if self.source_map else None


def _step_ids(data: dict[str, Any]) -> list[str | None]:
    steps = data.get("steps")
    if not isinstance(steps, list):
        return []
    return [s.get("id") if isinstance(s, dict) else None for s in steps]


def parse_spec(data: dict[str, Any], source_map: SourceMap | None = None) -> PipelineSpec:
    """Validate plain data (from YAML or a builder) into a spec; errors are located."""
    try:
        return PipelineSpec.model_validate(data)
    except ValidationError as e:
        locate = make_locator(source_map, _step_ids(data))
        problems = problems_from_validation_error(e, (), locate, PipelineSpec)
        raise ValidationFailed(problems, source=source_map.file if source_map else None) from None


def load_pipeline(
    path: str | Path, overrides: Sequence[str] = (), profile: str | None = None
) -> LoadedPipeline:
    """Read a pipeline file, apply a profile and `--set` overrides, validate the schema."""
    data, source_map = load_yaml(path)
    apply_overrides(data, overrides, profile=profile, source_map=source_map)
    return LoadedPipeline(parse_spec(data, source_map), source_map)


def spec_to_data(spec: PipelineSpec) -> dict[str, Any]:
    """The spec as plain data, without values that are the defaults (what a person would write)."""
    return spec.model_dump(mode="json", exclude_defaults=True)


def dump_pipeline(spec: PipelineSpec) -> str:
    """The spec as YAML; `load` of the result gives back an equal spec."""
    return yaml.safe_dump(spec_to_data(spec), sort_keys=False, default_flow_style=False)


def with_overrides(
    spec: PipelineSpec, overrides: Sequence[str], profile: str | None
) -> PipelineSpec:
    """Apply `--set`/profile overrides to a spec built in Python (same rules as for files)."""
    if not overrides and profile is None:
        return spec
    data = copy.deepcopy(spec.model_dump(mode="json"))
    apply_overrides(data, overrides, profile=profile)
    return parse_spec(data)
