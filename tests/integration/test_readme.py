"""The README's examples, executed: its YAML pipelines validate, the Python example builds the
same spec as the YAML one (which is pipelines/digits_kd.yaml) and runs with progress to a result
worth having, and the custom component example works."""

from __future__ import annotations

import os
import re
import sys
import types
from pathlib import Path

import pytest
import yaml

from orchestrator import Pipeline, load_pipeline, registry, run, validate
from schemas.engine.pipeline import PipelineSpec

pytestmark = pytest.mark.ray
README_PATH = Path(__file__).resolve().parents[2] / "README.md"
README = README_PATH.read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def pipelines() -> list[str]:
    return [b for b in blocks("yaml") if b.startswith("name:")]


def test_readme_yaml_pipelines_validate(tmp_path: Path) -> None:
    assert pipelines(), "the README shows no full pipeline"
    for i, text in enumerate(pipelines()):
        path = tmp_path / f"readme_{i}.yaml"
        path.write_text(text)
        validate(path)


def test_readme_yaml_example_is_the_digits_recipe() -> None:
    (text,) = [t for t in pipelines() if t.startswith("name: digits_kd\n")]
    recipe = load_pipeline(README_PATH.parent / "pipelines" / "digits_kd.yaml").spec
    shown = yaml.safe_load(text)
    assert recipe.model_copy(update={"profiles": {}}) == PipelineSpec.model_validate(shown)


def test_readme_python_example_matches_the_yaml_and_runs(
    ray_cluster: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (python,) = [b for b in blocks("python") if "Pipeline(" in b]
    yaml_file = tmp_path / "digits_kd.yaml"
    yaml_file.write_text(pipelines()[0])
    cwd = os.getcwd()
    os.chdir(tmp_path)  # the example writes to ./.kdorch
    try:
        namespace: dict[str, object] = {}
        exec(compile(python, "README.md", "exec"), namespace)
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


def test_readme_custom_component(tmp_path: Path) -> None:
    (source,) = [b for b in blocks("python") if "class CountRows" in b]
    module = types.ModuleType("readme_example")  # a real module, as a user's would be
    sys.modules[module.__name__] = module
    try:
        exec(compile(source, "README.md", "exec"), module.__dict__)
        p = Pipeline("count")
        data = p.add("data", "dataset", config={"source": "digits", "max_rows": 100})
        p.add("count", module.CountRows, inputs={"data": data.dataset})
        record = run(p.spec, storage=str(tmp_path / "store"), executor="local")
        assert record.step("count").outputs == {"rows": 60}
    finally:
        registry._registered.pop("count_rows", None)
        del sys.modules[module.__name__]
