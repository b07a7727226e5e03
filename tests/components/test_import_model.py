"""A teacher trained elsewhere (plain PyTorch, saved with ``torch.save(model.state_dict())`` or
as .safetensors) imported by `import_model` and used through the real components:
teacher_inference, distill into a torchvision student, evaluate, train with `init`; the
output width refused with the head hint; and a python factory's code in the cache keys."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import safetensors.torch
import torch
import torchvision

from components.data.sources import load_digits
from orchestrator import Pipeline, plan, run
from orchestrator.storage.store import ArtifactStore
from schemas.kd.artifacts import ModelCheckpoint
from tests.support.edits import rewrite
from tests.support.own_models.nets import fixed_cnn, small_cnn
from tests.support.torch_threads import one_torch_thread  # noqa: F401 (a fixture)

OWN = "tests.support.own_models.nets"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def pretrain(net: torch.nn.Module, steps: int, *, channels: int = 1) -> torch.nn.Module:
    """Train ``net`` on sklearn's digits with plain PyTorch: a model trained outside kdorch."""
    raw = load_digits()
    x, y = torch.from_numpy(raw.x).repeat(1, channels, 1, 1), torch.from_numpy(raw.y)
    optimizer = torch.optim.Adam(net.parameters(), 3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, len(y), (64,), generator=generator)
        loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return net.eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("elsewhere")
    torch.manual_seed(0)
    torch.save(pretrain(small_cnn(10, 16), 150).state_dict(), root / "teacher.pt")
    torch.save(fixed_cnn(16, outputs=5).state_dict(), root / "five.pt")  # 5 classes, elsewhere
    imagenet = torchvision.models.mobilenet_v3_small(width_mult=0.5)  # a 1000-class model
    safetensors.torch.save_file(imagenet.state_dict(), root / "imagenet.safetensors")
    return root


def teacher_spec(files: Path) -> dict:
    return {
        "arch": "python",
        "factory": f"{OWN}:small_cnn",
        "kwargs": {"width": 16},
        "weights": str(files / "teacher.pt"),
    }


def teacher_pipeline(name: str, files: Path, store: Path, **logit_config: object) -> tuple:
    """A pipeline: digits, the teacher trained elsewhere imported, its logits cached."""
    p = Pipeline(name, storage=str(store))
    data = p.add("data", "dataset", config={"source": "digits"})
    teacher = p.add(
        "teacher",
        "import_model",
        inputs={"data": data.dataset},
        config={"model": teacher_spec(files)},
    )
    logits = p.add(
        "logits",
        "teacher_inference",
        inputs={"teacher": teacher.model, "data": data.dataset},
        config=logit_config,
    )
    return p, data, teacher, logits


def test_an_imported_teacher_distils_a_torchvision_student(files: Path, tmp_path: Path) -> None:
    p, data, teacher, logits = teacher_pipeline("own-teacher", files, tmp_path / "store")
    student = p.add(
        "student",
        "distill",
        inputs={"data": data.dataset, "logits": [logits.logits]},
        config={
            "student": {"arch": "torchvision", "name": "shufflenet_v2_x0_5"},
            "losses": [{"type": "kd", "alpha": 0.5, "temperature": 2.0}],
            "epochs": 6,
            "batch_size": 64,
            "optimizer": {"lr": 0.01},
        },
    )
    p.add(
        "eval",
        "evaluate",
        inputs={"data": data.dataset, "teacher": teacher.model, "models": [student.model]},
        config={"names": ["shufflenet"], "latency_repeats": 2, "plots": False},
    )
    record = run(p.spec, executor="local")
    assert record.status.value == "succeeded", [s.error for s in record.steps]
    imported = ModelCheckpoint.model_validate(record.step("teacher").outputs["model"])
    assert imported.model.num_classes == 10 and imported.model.input_shape == (1, 8, 8)
    metrics = record.step("eval").outputs["report"]["metrics"]
    assert metrics["teacher"]["top1"] > 0.85  # the weights trained elsewhere, loaded exactly
    assert metrics["shufflenet"]["top1"] > 0.3  # chance is 0.1
    for row in metrics.values():
        assert row["parameters"] > 0 and row["macs"] > 0 and row["latency_ms_b256"] > 0
    assert metrics["shufflenet"]["params_ratio"] == pytest.approx(
        metrics["teacher"]["parameters"] / metrics["shufflenet"]["parameters"]
    )
    again = run(p.spec, executor="local")
    assert {s.status.value for s in again.steps} == {"cached"}


def test_a_replaced_head_then_fine_tuning_with_init(files: Path, tmp_path: Path) -> None:
    mobilenet = {
        "arch": "torchvision",
        "name": "mobilenet_v3_small",
        "kwargs": {"width_mult": 0.5},
        "weights": str(files / "imagenet.safetensors"),
        "head": {"replace": "classifier.3"},
    }
    p = Pipeline("fine-tune", storage=str(tmp_path / "store"))
    data = p.add("data", "dataset", config={"source": "digits"})
    imported = p.add(
        "imported", "import_model", inputs={"data": data.dataset}, config={"model": mobilenet}
    )
    frozen = {"epochs": 1, "batch_size": 128, "optimizer": {"lr": 1e-12}}
    bare = {k: v for k, v in mobilenet.items() if k not in ("weights", "head")}
    tuned = p.add(
        "tuned",
        "train",
        inputs={"data": data.dataset, "init": imported.model},
        config={"model": bare, **frozen},
    )
    direct = p.add(
        "direct", "train", inputs={"data": data.dataset}, config={"model": mobilenet, **frozen}
    )
    record = run(p.spec, executor="local")
    assert record.status.value == "succeeded", [s.error for s in record.steps]
    store = ArtifactStore(str(tmp_path / "store"))
    source = safetensors.torch.load_file(files / "imagenet.safetensors")

    def weights(step: str) -> dict[str, torch.Tensor]:
        checkpoint = ModelCheckpoint.model_validate(record.step(step).outputs["model"])
        return torch.load(store.fs_path(f"{checkpoint.path}/weights.pt"), weights_only=True)

    for step in ("imported", "tuned", "direct"):  # the body the file gave, at lr 1e-12
        state = weights(step)
        assert torch.allclose(state["net.features.0.0.weight"], source["features.0.0.weight"])
        assert state["classifier.weight"].shape == (10, 512)  # the new 10-class head
    # the same seed gives the same new head, whether replaced by import_model or by train
    assert torch.allclose(
        weights("imported")["classifier.weight"], weights("direct")["classifier.weight"], atol=1e-8
    )
    del tuned, direct


def test_refusals_name_the_fix(files: Path, tmp_path: Path) -> None:
    p = Pipeline("refusals", storage=str(tmp_path / "store"))
    data = p.add("data", "dataset", config={"source": "digits"})
    five = {
        **teacher_spec(files),
        "factory": f"{OWN}:fixed_cnn",
        "kwargs": {"width": 16, "outputs": 5},
        "weights": str(files / "five.pt"),
    }
    p.add("five", "import_model", inputs={"data": data.dataset}, config={"model": five})
    imagenet = {
        "arch": "torchvision",
        "name": "mobilenet_v3_small",
        "kwargs": {"width_mult": 0.5},
        "weights": str(files / "imagenet.safetensors"),
    }
    p.add("imagenet", "import_model", inputs={"data": data.dataset}, config={"model": imagenet})
    good = p.add(
        "good", "import_model", inputs={"data": data.dataset}, config={"model": teacher_spec(files)}
    )
    for step, model in (("both", teacher_spec(files)), ("other", {"arch": "mlp"})):
        # fine-tuning from `init`: with weights of its own too, or another architecture
        p.add(
            step,
            "train",
            inputs={"data": data.dataset, "init": good.model},
            config={"model": model},
        )
    record = run(p.spec, executor="local")
    errors = {s.step_id: s.error.message for s in record.steps if s.error is not None}
    assert "gives 5 logits but the data has 10 classes" in errors["five"]
    assert "head: {replace: fc}" in errors["five"]
    assert "classifier.3.weight (file [1000, 512], model [10, 512])" in errors["imagenet"]
    assert "head: {replace: classifier.3}" in errors["imagenet"]
    assert "`weights` and the `init` input both give starting weights: keep one" in errors["both"]
    assert "does not fit this step's mlp model: 4 missing keys: layers.0.0.bias" in errors["other"]
    assert "14 unexpected keys: net.features.0.0.bias" in errors["other"]
    assert "classifier.weight (file [10, 32], model [10, 128])" in errors["other"]
    assert "head:" not in errors["other"]  # not a class count: no head to suggest
    committed = sorted(path.parent.parent.name for path in (tmp_path / "store").rglob("model.json"))
    assert len(committed) == 1  # the good import only: nothing of the refused steps


FACTORY = """
from torch import nn

from {package}.blocks import block


def net(num_classes: int = 10) -> nn.Module:
    return nn.Sequential(block(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))
"""
BLOCKS = """
from torch import nn


def block() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
"""


@pytest.fixture
def user_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's own package ``mynets`` (a factory module importing a sibling), on sys.path."""
    root = tmp_path / "src" / "mynets"
    root.mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "nets.py").write_text(textwrap.dedent(FACTORY.format(package="mynets")))
    (root / "blocks.py").write_text(textwrap.dedent(BLOCKS))
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    yield root
    for name in [n for n in sys.modules if n == "mynets" or n.startswith("mynets.")]:
        del sys.modules[name]


def test_editing_the_factory_changes_the_steps_that_depend_on_it(
    user_package: Path, tmp_path: Path
) -> None:
    net = torch.nn.Sequential(
        torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU()),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 10),
    )
    torch.save(net.state_dict(), tmp_path / "mine.pt")
    own = {"arch": "python", "factory": "mynets.nets:net"}
    p = Pipeline("factory-edits", storage=str(tmp_path / "store"))
    data = p.add("data", "dataset", config={"source": "digits"})
    teacher = p.add(
        "teacher",
        "import_model",
        inputs={"data": data.dataset},
        config={"model": {**own, "weights": str(tmp_path / "mine.pt")}},
    )
    logits = p.add(
        "logits", "teacher_inference", inputs={"teacher": teacher.model, "data": data.dataset}
    )
    student = p.add(  # the factory in a config: the train step's key covers its code
        "student", "train", inputs={"data": data.dataset}, config={"model": own, "epochs": 1}
    )
    p.add(  # a zoo model: no factory, nothing to do with the edit
        "zoo",
        "train",
        inputs={"data": data.dataset},
        config={"model": {"arch": "mlp"}, "epochs": 1},
    )
    p.add(
        "eval",
        "evaluate",
        inputs={"data": data.dataset, "teacher": teacher.model, "models": [student.model]},
        config={"latency_repeats": 1, "plots": False},
    )
    first = run(p.spec, executor="local")
    assert first.status.value == "succeeded", [s.error for s in first.steps]
    assert all(d.action == "cached" for d in plan(p.spec))
    rewrite(user_package / "nets.py", "import block", "import block  # a comment does not count")
    assert all(d.action == "cached" for d in plan(p.spec))

    rewrite(user_package / "blocks.py", "nn.ReLU()", "nn.GELU()")  # same weights, other function
    decisions = {d.step_id: d for d in plan(p.spec)}
    assert decisions["teacher"].action == "run"
    assert "external data changed: code.mynets/blocks.py" in decisions["teacher"].reason
    assert decisions["logits"].action == "run" and decisions["logits"].reason == "after teacher"
    assert (
        decisions["eval"].action == "run" and decisions["eval"].reason == "after student, teacher"
    )
    assert decisions["student"].action == "run"
    assert "external data changed: model:model.code.mynets/blocks.py" in decisions["student"].reason
    assert decisions["data"].action == decisions["zoo"].action == "cached"
    # the checkpoint saved with the old code is refused where it is rebuilt
    from components.artifacts.checkpoints import load_model
    from components.models.checkpoint import CheckpointError

    old = ModelCheckpoint.model_validate(first.step("teacher").outputs["model"])
    with pytest.raises(
        CheckpointError,
        match=r"was saved with other code of its factory 'mynets.nets:net': mynets/blocks.py "
        r"changed since",
    ):
        load_model(ArtifactStore(str(tmp_path / "store")), old)
    second = run(p.spec, executor="local")
    ran = {s.step_id for s in second.steps if s.status.value == "ran"}
    assert ran == {"teacher", "logits", "student", "eval"}
    assert second.step("teacher").outputs["model"]["data_version"] != old.data_version
    del logits


@pytest.mark.ray
def test_an_imported_python_teacher_on_ray(files: Path, tmp_path: Path, ray_cluster: str) -> None:
    """The session's real Ray: workers import the user's module and rebuild the teacher."""
    p, data, teacher, _ = teacher_pipeline(
        "own-on-ray", files, tmp_path / "store", feature="features.1"
    )
    p.add(
        "eval",
        "evaluate",
        inputs={"data": data.dataset, "models": [teacher.model]},
        config={"latency_repeats": 1, "plots": False},
    )
    record = run(p.spec)
    assert record.status.value == "succeeded", [s.error for s in record.steps]
    shards = record.step("logits").outputs["logits"]
    assert shards["feature"] == "features.1" and shards["feature_dim"] == 32 * 4 * 4
    assert record.step("eval").outputs["report"]["metrics"]["python_0"]["top1"] > 0.85
