"""The examples of the README and of every guide in docs/, executed: each whole YAML pipeline
validates, the README's YAML example is pipelines/digits_kd.yaml, the Python example builds the
same spec and runs with progress to a result worth having, and the custom component example
works. Every Python example is one of those this file executes."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import pytest
import yaml

from orchestrator import Pipeline, load_pipeline, registry, run, validate
from schemas.engine.pipeline import PipelineSpec
from tests.support.docs import README, ROOT, Example, all_examples, examples

pytestmark = pytest.mark.ray
PIPELINES = [e for e in all_examples("yaml") if e.is_pipeline()]


def _the_python_example(marker: str) -> Example:
    (example,) = [e for e in all_examples("python") if marker in e.text]
    return example


def _digits_kd_yaml() -> Example:
    (example,) = [e for e in PIPELINES if e.text.startswith("name: digits_kd\n")]
    return example


def test_the_readme_and_the_guides_show_whole_pipelines() -> None:
    assert any(e.document == README for e in PIPELINES), "the README shows no full pipeline"
    assert any(e.document != README for e in PIPELINES), "no guide shows a full pipeline"


@pytest.mark.parametrize("example", PIPELINES, ids=[e.where for e in PIPELINES])
def test_yaml_pipelines_validate(example: Example, tmp_path: Path) -> None:
    path = tmp_path / f"{example.document.stem}_{example.line}.yaml"
    path.write_text(example.text)
    validate(path)


def test_readme_yaml_example_is_the_digits_recipe() -> None:
    example = _digits_kd_yaml()
    assert example in examples(README)
    recipe = load_pipeline(ROOT / "pipelines" / "digits_kd.yaml").spec
    shown = yaml.safe_load(example.text)
    assert recipe.model_copy(update={"profiles": {}}) == PipelineSpec.model_validate(shown)


def test_every_python_example_is_executed() -> None:
    executed = {
        _the_python_example("Pipeline(").where,
        _the_python_example("class CountRows").where,
    }
    shown = {e.where for e in all_examples("python")}
    assert shown == executed, f"Python examples no test executes: {sorted(shown - executed)}"


def test_python_example_matches_the_yaml_and_runs(
    ray_cluster: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    example = _the_python_example("Pipeline(")
    yaml_file = tmp_path / "digits_kd.yaml"
    yaml_file.write_text(_digits_kd_yaml().text)
    cwd = os.getcwd()
    os.chdir(tmp_path)  # the example writes to ./.kdorch
    try:
        namespace: dict[str, object] = {}
        exec(compile(example.text, example.where, "exec"), namespace)
    finally:
        os.chdir(cwd)
    built = namespace["p"]
    assert isinstance(built, Pipeline)
    assert built.spec == load_pipeline(yaml_file).spec
    record = namespace["record"]
    assert record.status.value == "succeeded"  # type: ignore[attr-defined]
    assert (tmp_path / ".kdorch" / "runs").is_dir()
    out, err = capsys.readouterr()
    assert "✔ student" in err and "✔ report" in err  # progress while it ran
    # A result worth having: the student keeps most of the teacher's accuracy, much smaller.
    scores = namespace["scores"]
    assert scores["teacher"]["top1"] > 0.9 and scores["student"]["top1_kept"] > 0.9  # type: ignore[index]
    assert scores["student"]["params_ratio"] > 50  # type: ignore[index]
    assert "teacher " in out and "x fewer" in out


def test_custom_component(tmp_path: Path) -> None:
    example = _the_python_example("class CountRows")
    module = types.ModuleType("readme_example")  # a real module, as a user's would be
    sys.modules[module.__name__] = module
    try:
        exec(compile(example.text, example.where, "exec"), module.__dict__)
        p = Pipeline("count")
        data = p.add("data", "dataset", config={"source": "digits", "max_rows": 100})
        p.add("count", module.CountRows, inputs={"data": data.dataset})
        record = run(p.spec, storage=str(tmp_path / "store"), executor="local")
        assert record.step("count").outputs == {"rows": 60}
    finally:
        registry._registered.pop("count_rows", None)
        del sys.modules[module.__name__]
