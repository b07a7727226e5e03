"""Pipeline params: one value used by many steps, changed with --set params.NAME=VALUE."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import ValidationFailed, validate

PIPELINE = """
name: params
params: {factor: 2, tag: a}
steps:
  - id: src
    component: toy_source
  - id: scaled
    component: toy_scale
    inputs: {numbers: src.numbers}
    config: {factor: "${factor}", marker_dir: "/tmp/${tag}"}
  - id: fan
    component: toy_scale
    matrix: {f: [1, 3]}
    inputs: {numbers: src.numbers}
    config: {factor: "${f}", block_file: "/tmp/${tag}-${f}"}
"""


def write(tmp_path: Path, text: str = PIPELINE) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


def test_params_fill_placeholders_everywhere_and_keep_their_type(tmp_path: Path) -> None:
    graph = validate(write(tmp_path))
    scaled = graph.nodes["scaled"].config
    assert scaled.factor == 2.0 and scaled.marker_dir == "/tmp/a"  # type: ignore[attr-defined]
    assert graph.nodes["fan[3]"].config.block_file == "/tmp/a-3"  # type: ignore[attr-defined]
    assert set(graph.nodes) == {"src", "scaled", "fan[1]", "fan[3]"}  # ids carry matrix values


def test_set_changes_a_param_for_every_step(tmp_path: Path) -> None:
    graph = validate(write(tmp_path), overrides=["params.factor=5", "params.tag=b"])
    assert graph.nodes["scaled"].config.factor == 5.0  # type: ignore[attr-defined]
    assert graph.nodes["fan[1]"].config.block_file == "/tmp/b-1"  # type: ignore[attr-defined]


def test_unknown_placeholders_name_the_params(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed, match=r"pipeline params: factor, tag.*\n.*did you mean"):
        validate(write(tmp_path, PIPELINE.replace("${factor}", "${factr}")))


def test_a_matrix_name_may_not_shadow_a_param(tmp_path: Path) -> None:
    text = (
        PIPELINE.replace("matrix: {f: [1, 3]}", "matrix: {factor: [1, 3]}")
        .replace('"${f}"', '"${factor}"')
        .replace("${tag}-${f}", "${tag}-${factor}")
    )
    with pytest.raises(ValidationFailed, match="matrix name 'factor' is also a pipeline param"):
        validate(write(tmp_path, text))
