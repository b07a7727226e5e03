"""`kdorch validate` on model sources: each bad spec is a located problem, exit 2, no
traceback, nothing written; a pipeline of zoo models still validates without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision

from orchestrator.cli import main

OWN = "tests.support.own_models.nets"


def pipeline(tmp_path: Path, model: dict, component: str = "import_model") -> Path:
    """A dataset and one step whose `model` (`student` for distill) is ``model``; the spec
    is on line 9 (JSON is YAML)."""
    field = "student" if component == "distill" else "model"
    extra = ', "losses": [{"type": "ce"}]' if component == "distill" else ""
    path = tmp_path / "p.yaml"
    path.write_text(
        "name: p\n"
        "steps:\n"
        "  - id: data\n"
        "    component: dataset\n"
        "    config: {source: digits}\n"
        "  - id: teacher\n"
        f"    component: {component}\n"
        "    inputs: {data: data.dataset}\n"
        f'    config: {{"{field}": {json.dumps(model)}{extra}}}\n'
    )
    return path


def validate(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`kdorch validate PATH` run in PATH's folder: (exit code, stderr); nothing written."""
    before = sorted(path.parent.rglob("*"))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(path.parent)
        with pytest.raises(SystemExit) as info:
            main(["validate", str(path)])
    assert sorted(path.parent.rglob("*")) == before
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return int(info.value.code or 0), err


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("w")
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), root / "r18.pt")
    torch.save(torchvision.models.resnet18().state_dict(), root / "imagenet.pt")
    return root


CASES = [
    # (what, model spec, component, expected text, located field)
    (
        "unknown builder",
        {"arch": "torchvision", "name": "resnet81"},
        "train",
        "torchvision has no classification model 'resnet81'",
        "config.model.name",
    ),
    (
        "unknown timm model",
        {"arch": "timm", "name": "test_resnett"},
        "distill",
        "did you mean 'test_resnet'",
        "config.student.name",
    ),
    (
        "a factory that does not import",
        {"arch": "python", "factory": "tests.support.own_models.broken:small"},
        "train",
        "does not import: ImportError: cannot import name 'Conv2dd' from 'torch.nn'",
        "config.model.factory",
    ),
    (
        "a factory that is not a module",
        {"arch": "python", "factory": f"{OWN}:not_a_module"},
        "train",
        "returned a dict, not a torch.nn.Module",
        "config.model.factory",
    ),
    (
        "a feature module that does not exist",
        {"arch": "torchvision", "name": "resnet18", "features": {"map": "layer5"}},
        "train",
        "the network has no module 'layer5'; did you mean 'layer4'",
        "config.model.features.map",
    ),
    (
        "a head that does not exist",
        {"arch": "torchvision", "name": "resnet18", "head": {"replace": "head"}},
        "train",
        "head.replace: the network has no module 'head'",
        "config.model.head.replace",
    ),
]


@pytest.mark.parametrize(
    ("what", "model", "component", "text", "field"), CASES, ids=[c[0] for c in CASES]
)
def test_bad_model_sources_exit_2_located(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    what: str,
    model: dict,
    component: str,
    text: str,
    field: str,
) -> None:
    code, err = validate(pipeline(tmp_path, model, component), capsys)
    assert code == 2, err
    assert text in err and field in err and "p.yaml:9:" in err, err


def test_a_checkpoint_that_does_not_match(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], weights: Path
) -> None:
    model = {"arch": "torchvision", "name": "resnet34", "weights": str(weights / "r18.pt")}
    code, err = validate(pipeline(tmp_path, model), capsys)
    assert code == 2 and "config.model.weights" in err
    assert "r18.pt does not fit the network: 96 missing keys: layer1.2.bn1.bias" in err
    # the class count comes from the dataset, unknown at validate: the classifier's shape is
    # not held against the file...
    fine = {"arch": "torchvision", "name": "resnet18", "weights": str(weights / "imagenet.pt")}
    assert validate(pipeline(tmp_path, fine), capsys)[0] == 0
    # ...unless the spec says it
    fixed = {**fine, "num_classes": 10}
    code, err = validate(pipeline(tmp_path, fixed), capsys)
    assert code == 2 and "fc.weight (file [1000, 512], model [10, 512])" in err
    assert "head: {replace: fc}" in err
    gone = {**fine, "weights": str(weights / "gone.pt")}
    code, err = validate(pipeline(tmp_path, gone), capsys)
    assert code == 2 and "gone.pt does not exist" in err and "config.model.weights" in err
    # import_model needs weights at all: a schema error, located
    code, err = validate(pipeline(tmp_path, {"arch": "torchvision", "name": "resnet18"}), capsys)
    assert code == 2 and "needs `weights`" in err


def test_good_sources_validate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], weights: Path
) -> None:
    good = [
        {
            "arch": "torchvision",
            "name": "resnet18",
            "weights": str(weights / "imagenet.pt"),
            "head": {"replace": "fc"},
        },
        {"arch": "python", "factory": f"{OWN}:small_cnn", "features": {"map": "features.1"}},
        {"arch": "timm", "name": "test_vit", "kwargs": {"depth": 2}},
    ]
    for model in good:
        component = "import_model" if "weights" in model else "train"
        assert validate(pipeline(tmp_path, model, component), capsys)[0] == 0, model


def test_validation_of_zoo_models_imports_no_torch(tmp_path: Path) -> None:
    path = pipeline(tmp_path, {"arch": "mlp", "hidden": [8]}, "train")
    code = (
        "import sys; from orchestrator import validate; "
        f"validate({str(path)!r}); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr
