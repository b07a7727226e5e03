"""The examples of the README and of every guide in docs/, executed: each whole YAML pipeline
validates, the README's YAML example is pipelines/digits_kd.yaml, the Python example builds the
same spec and runs with progress to a result worth having, and the custom component example
works, and so does the guide's own module with a checkpoint written by plain PyTorch. Every Python
example is one of those this file executes."""

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
from tests.support.torch_threads import one_torch_thread  # noqa: F401 (a fixture)

pytestmark = pytest.mark.ray
#: docs/bring_your_own.md's pipeline that needs the user's module and checkpoint written first
#: (`test_own_module_and_a_plain_pytorch_checkpoint` writes them, then validates and runs it).
OWN_TEACHER = "name: own_teacher\n"
PIPELINES = [
    e for e in all_examples("yaml") if e.is_pipeline() and not e.text.startswith(OWN_TEACHER)
]


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
        _the_python_example("# train_elsewhere.py").where,
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


@pytest.mark.usefixtures("one_torch_thread")
def test_own_module_and_a_plain_pytorch_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/bring_your_own.md's end-to-end example as a user runs it: the module written where
    the guide shows it, the plain-PyTorch script run in that folder (it writes teacher.pt), then
    the pipeline validated and run there, with the folder on the import path."""
    (module,) = [e for e in all_examples("") if e.text.startswith("# my_models/nets.py\n")]
    script = _the_python_example("# train_elsewhere.py")
    (pipeline,) = [e for e in all_examples("yaml") if e.text.startswith(OWN_TEACHER)]
    (tmp_path / "my_models").mkdir()
    (tmp_path / "my_models" / "__init__.py").write_text("")
    (tmp_path / "my_models" / "nets.py").write_text(module.text)
    (tmp_path / "own_teacher.yaml").write_text(pipeline.text)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        exec(compile(script.text, script.where, "exec"), {"__name__": "__main__"})
        assert (tmp_path / "teacher.pt").is_file()
        validate(tmp_path / "own_teacher.yaml")
        spec = load_pipeline(tmp_path / "own_teacher.yaml").spec
        record = run(spec, storage=str(tmp_path / "store"), executor="local")
    finally:
        for name in [n for n in sys.modules if n == "my_models" or n.startswith("my_models.")]:
            del sys.modules[name]
    assert record.status.value == "succeeded"
    scores = record.step("report").outputs["metrics"]
    assert scores["teacher"]["top1"] > 0.9, scores  # the imported weights, loaded as trained
    assert scores["student"]["top1"] > 0.6 and scores["student"]["params_ratio"] > 10, scores
