"""`tune` checks and keys its student spec as `train` and `distill` do: `kdorch validate`
refuses a bad model source under ``distill.student`` (exit 2, located, nothing written), and
the step's key covers a `python` student's factory code, so editing the factory re-runs the
sweep while a comment does not."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import Pipeline, plan, run
from orchestrator.cli import main
from tests.support.edits import rewrite
from tests.support.torch_threads import one_torch_thread  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FACTORY = """
from torch import nn

from tunenets.blocks import block


def net(num_classes: int = 10) -> nn.Module:
    return nn.Sequential(block(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))
"""
BLOCKS = """
from torch import nn


def block() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
"""


def tune_config(student: dict) -> dict:
    return {
        "distill": {"student": student, "epochs": 1, "losses": [{"type": "kd"}]},
        "space": {"losses[0].alpha": {"uniform": [0.1, 0.9]}},
        "num_samples": 2,
    }


def sweep(student: dict, storage: str | None = None, *, tune: bool = True) -> Pipeline:
    """digits -> an MLP teacher -> its logits -> a tune step whose student is ``student``
    (``tune=False``: without the tune step)."""
    p = Pipeline("sweep", storage=storage)
    data = p.add("data", "dataset", config={"source": "digits"})
    teacher = p.add(
        "teacher", "train", inputs={"data": data.dataset}, config={"model": {"arch": "mlp"}}
    )
    logits = p.add(
        "logits", "teacher_inference", inputs={"teacher": teacher.model, "data": data.dataset}
    )
    if not tune:
        return p
    p.add(
        "sweep",
        "tune",
        inputs={"data": data.dataset, "logits": [logits.logits]},
        config=tune_config(student),
    )
    return p


@pytest.mark.parametrize(
    ("student", "message", "field"),
    [
        (
            {"arch": "torchvision", "name": "resnet81"},
            "torchvision has no classification model 'resnet81'",
            "config.distill.student.name",
        ),
        (
            {"arch": "python", "factory": "tests.support.own_models.broken:small"},
            "ImportError: cannot import name 'Conv2dd' from 'torch.nn'",
            "config.distill.student.factory",
        ),
        (
            {"arch": "python", "factory": "tests.support.own_models.nets:not_a_module"},
            "returned a dict, not a torch.nn.Module",
            "config.distill.student.factory",
        ),
        (
            {"arch": "torchvision", "name": "resnet18", "features": {"map": "layer5"}},
            "no module 'layer5'; did you mean 'layer4'",
            "config.distill.student.features.map",
        ),
    ],
    ids=["unknown builder", "factory does not import", "not a module", "feature module"],
)
def test_validate_checks_the_sweeps_student(
    student: dict,
    message: str,
    field: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text(sweep(student).to_yaml())
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["validate", str(path)])
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert message in err and field in err, err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.yaml"]  # nothing written


def test_a_zoo_student_still_validates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text(sweep({"arch": "mlp", "hidden": [16]}).to_yaml())
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["validate", str(path)])
    assert info.value.code in (0, None)


@pytest.fixture
def user_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The user's package ``tunenets`` (a factory module importing a sibling), on sys.path."""
    root = tmp_path / "src" / "tunenets"
    root.mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "nets.py").write_text(textwrap.dedent(FACTORY))
    (root / "blocks.py").write_text(textwrap.dedent(BLOCKS))
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    yield root
    for name in [n for n in sys.modules if n == "tunenets" or n.startswith("tunenets.")]:
        del sys.modules[name]


def test_the_sweeps_key_covers_its_students_factory_code(
    user_package: Path, tmp_path: Path
) -> None:
    store = str(tmp_path / "store")
    upstream = sweep({}, store, tune=False)  # run for real; the sweep is only planned
    assert run(upstream.spec, executor="local").status.value == "succeeded"
    p = sweep({"arch": "python", "factory": "tunenets.nets:net"}, store)

    def tune_decision() -> tuple[str, dict]:
        decisions = {d.step_id: d for d in plan(p.spec)}
        assert {decisions[s].action for s in ("data", "teacher", "logits")} == {"cached"}
        decision = decisions["sweep"]
        assert decision.action == "run" and decision.key and decision.material
        return decision.key, decision.material

    key, material = tune_decision()
    code = material["external"]["model:distill.student"]["code"]
    assert {"tunenets/nets.py", "tunenets/blocks.py"} <= set(code), json.dumps(material)
    rewrite(user_package / "nets.py", "import block", "import block  # a comment does not count")
    assert tune_decision()[0] == key
    rewrite(user_package / "blocks.py", "nn.ReLU()", "nn.GELU()")  # same weights, other function
    edited, material = tune_decision()
    assert edited != key
    assert (
        material["external"]["model:distill.student"]["code"]["tunenets/blocks.py"]
        != (code["tunenets/blocks.py"])
    )
