"""The `kdorch` CLI without Ray: exit codes, messages, components, graph, plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator import registry
from orchestrator.cli.catalog import readable_type
from tests.support.cli import kdorch, toy_pipeline

BAD = Path(__file__).parent.parent / "resources" / "bad"
GOOD = toy_pipeline("cli")


@pytest.fixture
def good(tmp_path: Path) -> Path:
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    return path


def test_validate_bad_file_exits_2_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert kdorch("validate", str(BAD / "ports.yaml")) == 2
    err = capsys.readouterr().err
    assert "4 errors in" in err and "did you mean 'numbers'?" in err
    assert "Traceback" not in err


def test_debug_shows_the_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert kdorch("validate", str(BAD / "cyclic.yaml"), "--debug") == 2
    assert "Traceback" in capsys.readouterr().err


def test_missing_file_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert kdorch("validate", "nope.yaml") == 2
    assert "pipeline file not found: nope.yaml" in capsys.readouterr().err


def test_validate_good_file(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert kdorch("validate", str(good)) == 0
    assert "4 steps, 4 edges, valid" in capsys.readouterr().err


def test_components_list_and_detail(capsys: pytest.CaptureFixture[str]) -> None:
    assert kdorch("components") == 0
    listing = capsys.readouterr().out
    assert "toy_scale" in listing and "toy_gather" in listing
    assert kdorch("components", "toy_scale") == 0
    detail = capsys.readouterr().out
    assert "factor" in detail and "numbers" in detail and "Multiplies every number" in detail
    assert kdorch("components", "toy_scal") == 2  # an invalid argument, like any usage error
    assert "did you mean 'toy_scale'" in capsys.readouterr().err


def test_components_detail_shows_nested_fields_and_union_members(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert kdorch("components", "distill") == 0
    detail = capsys.readouterr().out
    summary = "Distil one or more teachers into a student"
    assert detail.count(summary) == 1
    assert "Annotated" not in detail and "discriminator=" not in detail and "…" not in detail
    assert "see `kdorch components distill`" not in detail
    rows = {line.split("│")[1].rstrip(): line for line in detail.splitlines() if "│" in line}
    assert "list of: ce | kd | dkd" in rows[" losses"] and "(chosen by `type`)" in detail
    students = [line for line in detail.splitlines() if line.startswith("│ student ")]
    assert any("one of: mlp | mnist_cnn | resnet_cifar" in line for line in students), students
    for nested in ("   type: kd", "     temperature", "   arch: mlp", "     hidden", "   lr"):
        assert nested in rows, f"no row {nested!r}"
    assert "[256, 128]" in rows["     hidden"] and "Peak learning rate." in rows["   lr"]
    assert "adam | adamw | sgd" in rows["   name"]


def test_components_list_is_one_line_per_component(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")  # was ~100 lines of wrapped summaries
    assert kdorch("components") == 0
    lines = capsys.readouterr().out.splitlines()
    keys = [c.key for c in registry.all_components()]
    assert len(lines) == len(keys) + 2 and all(len(line) <= 80 for line in lines)
    assert [line.split()[0] for line in lines[1:-1]] == keys  # whole keys, one line each
    assert lines[-1] == "inputs, outputs and config of one: kdorch components NAME"
    evaluate = next(line for line in lines if line.startswith("evaluate "))
    assert "Accuracy (top-1; top-5" in evaluate and evaluate.endswith(" …")  # cut at a word


def shown(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """What `kdorch ARGS` prints on stdout (it must succeed)."""
    assert kdorch(*args) == 0
    return capsys.readouterr().out


def test_components_detail_marks_required_fields_and_reads_types(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    meta = shown(capsys, "components", "meta_distill")
    assert "required" not in meta and "list[" not in meta and "dict[" not in meta
    outputs = meta[meta.index("\noutputs\n") :]
    assert "default" not in outputs  # an output has no default
    rows = {line.split("│")[1].strip(): line for line in outputs.splitlines() if "│" in line}
    assert "list of dict " in rows["history"] and "dict of str to float" in rows["metrics"]
    train = shown(capsys, "components", "train")
    model = next(line for line in train.splitlines() if line.startswith("│ model "))
    assert model.split("│")[1].strip() == "model *" and model.split("│")[3].strip() == ""
    assert "* required: no default, the config must set it" in train
    distill = shown(capsys, "components", "distill")
    inputs = distill[distill.index("\ninputs\n") : distill.index("\noutputs\n")]
    assert "list of LogitShards | TokenCache (optional)" in inputs and "| null" not in inputs


def test_readable_types() -> None:
    assert readable_type("list[dict[str, any]]") == "list of dict"
    assert readable_type("dict[str, dict[str, float]]") == "dict of str to dict of str to float"
    assert readable_type("tuple[int, ...] | None") == "list of int | null"
    assert readable_type("tuple[float, float]") == "[float, float]"
    assert readable_type("standard | none | None") == "standard | none | null"
    assert (
        readable_type("list of: ce | kd (chosen by `type`)")
        == "list of: ce | kd (chosen by `type`)"
    )


@pytest.mark.parametrize(
    "args",
    [
        ["run", "x.yaml", "--bogus"],
        ["run"],
        ["validate"],
        ["--bogus"],
        ["nonsense"],
        ["run", "x.yaml", "--executor", "spark"],
        ["runs", "--limit", "many"],
    ],
)
def test_usage_errors_are_short_and_exit_2(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert kdorch(*args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Usage: kdorch" in err and "Error:" in err
    assert len(err.splitlines()) <= 6


def test_usage_error_with_debug_shows_the_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert kdorch("run", "x.yaml", "--bogus", "--debug") == 2
    assert "Traceback" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    assert kdorch("--version") == 0
    assert capsys.readouterr().out.strip() == f"kdorch {version('kdorch')}"


def test_version_falls_back_to_the_source_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import importlib.metadata

    cli = importlib.import_module("orchestrator.cli.root")

    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    pyproject = Path(__file__).parents[2] / "pyproject.toml"
    expected = next(
        line.split('"')[1]
        for line in pyproject.read_text().splitlines()
        if line.startswith("version")
    )
    assert cli.kdorch_version() == expected


def test_help_shows_flags_as_flags(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    assert kdorch("--help") == 0
    top = capsys.readouterr().out
    assert "<bool>" not in top and "--debug " in top and "--version " in top
    # whole command summaries, wrapped rather than cut
    assert "Check a pipeline without running it: schema, configs, edges" in top
    assert "configs,..." not in top
    assert kdorch("run", "--help") == 0
    run_help = capsys.readouterr().out
    assert "<bool>" not in run_help
    assert "--json " in run_help and "--set PATH=VALUE" in run_help


def test_interrupt_says_how_to_resume(
    good: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator import api

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "validate", interrupted)
    assert kdorch("validate", str(good)) == 130
    assert "interrupted" in capsys.readouterr().err


def test_graph_mermaid_and_dot(
    good: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert kdorch("graph", str(good)) == 0
    mermaid = capsys.readouterr().out
    assert mermaid.startswith("flowchart LR")
    assert 'src -->|"numbers -> numbers"| scaled_2_' in mermaid
    assert kdorch("graph", str(good), "--format", "dot", "-o", str(tmp_path / "g.dot")) == 0
    dot = (tmp_path / "g.dot").read_text()
    assert '"scaled[3]" -> "total" [label="numbers -> parts"];' in dot


def test_plan_json(good: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert kdorch("plan", str(good), "--storage", str(tmp_path / "s"), "--json") == 0
    steps = json.loads(capsys.readouterr().out)
    assert [s["action"] for s in steps] == ["run"] * 4
    assert steps[0]["key"] and steps[1]["reason"] == "after src"


def test_local_executor_run_then_cached(
    good: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(tmp_path / "s")
    assert kdorch("run", str(good), "--storage", store, "--executor", "local", "--json") == 0
    first = json.loads(capsys.readouterr().out)
    assert [s["status"] for s in first["steps"]] == ["ran"] * 4
    assert kdorch("run", str(good), "--storage", store, "--executor", "local") == 0
    err = capsys.readouterr().err
    assert err.count("cached") >= 4 and "scaled[2]" in err


def test_failed_step_is_reported_with_component_key_and_cause(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "failing.yaml"
    path.write_text(
        "name: failing\nsteps:\n- {id: src, component: toy_source}\n"
        "- {id: bad, component: toy_scale, inputs: {numbers: src.numbers}, config: {fail: true}}\n"
    )
    code = kdorch("run", str(path), "--storage", str(tmp_path / "s"), "--executor", "local")
    err = capsys.readouterr().err
    assert code == 1
    assert "step 'bad' (toy_scale, key " in err and "ValueError: toy_scale was told to fail" in err


def test_png_without_graphviz_says_what_to_install(
    good: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert kdorch("graph", str(good), "--format", "png", "-o", str(tmp_path / "g.png")) == 1
    assert "needs Graphviz's `dot`" in capsys.readouterr().err
