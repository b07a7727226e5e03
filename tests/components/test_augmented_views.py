"""Augmented views with exact teacher targets, through the real code of both sides.

A real teacher (a small CNN trained here on MNIST digits) is cached over 3 augmented views per
row by `teacher_inference`. Its network's input is recorded (a forward pre-hook on its first
convolution) as the cache's predictor computes it; the student's input is recorded the same way
as the distill objective trains it, from batches of the real data path (held in memory, and
streamed through Ray Data). For every row, the two tensors of the view the student drew are
equal bit for bit, and the teacher outputs the student learns from are that view's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from torch import nn

from components.artifacts.checkpoints import load_model
from components.artifacts.datasets import read_table
from components.artifacts.logits import read_teacher_table
from components.data.augment import Views
from components.inference.predictor import TeacherPredictor
from components.models.zoo import build_model
from components.training.batches import HeldBatches, StreamBatches
from components.training.common import fit_spec_to_dataset
from components.training.data import prepare_data
from components.training.loop import _to_device
from components.training.objective import DistillObjective
from components.training.trainer import as_tensors
from components.training.views import training_views
from orchestrator import Pipeline, run
from orchestrator.storage.store import ArtifactStore
from schemas.kd.artifacts import Dataset, LogitShards, ModelCheckpoint
from schemas.kd.components.distill import DistillConfig

AUGMENT = {"crop": {"scale": [0.4, 1.0]}, "flip": True}
VIEWS = {"views": 3, "augment": AUGMENT, "view_seed": 2}
STUDENT = {"arch": "mnist_cnn", "width": 4}


def pipeline(root: Path) -> Pipeline:
    p = Pipeline("views", storage=str(root))
    data = p.add("data", "dataset", config={"source": "mnist5k", "max_rows": 400})
    teacher = p.add(
        "teacher",
        "train",
        inputs={"data": data.dataset},
        config={"model": {"arch": "mnist_cnn", "width": 8}, "epochs": 2, "batch_size": 32},
    )
    p.add(
        "logits",
        "teacher_inference",
        inputs={"teacher": teacher.model, "data": data.dataset},
        config={**VIEWS, "feature": "penultimate", "batch_size": 64},
    )
    return p


@dataclass
class Made:
    store: ArtifactStore
    root: Path
    data: Dataset
    teacher: ModelCheckpoint
    cache: LogitShards


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    root = tmp_path_factory.mktemp("views") / "store"
    record = run(pipeline(root).spec, executor="local")
    assert record.status.value == "succeeded", [s.error for s in record.steps]
    return Made(
        ArtifactStore(str(root)),
        root,
        Dataset.model_validate(record.step("data").outputs["dataset"]),
        ModelCheckpoint.model_validate(record.step("teacher").outputs["model"]),
        LogitShards.model_validate(record.step("logits").outputs["logits"]),
    )


class Inputs:
    """Records what a network's first convolution receives (its input, as the network got it)."""

    def __init__(self, model: nn.Module) -> None:
        first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
        self.seen: list[torch.Tensor] = []
        first.register_forward_pre_hook(lambda _, args: self.seen.append(args[0].detach().clone()))


def teacher_side(made: Made) -> dict[tuple[int, int], torch.Tensor]:
    """(row_id, view) -> the tensor the cache's teacher ran on, and a check that this predictor
    is the one that wrote the cache (the same outputs, bit for bit)."""
    views = Views(made.cache.views, made.cache.augment, made.cache.view_seed)  # type: ignore[arg-type]
    predictor = TeacherPredictor(
        made.store,
        made.teacher,
        made.data.feature_shape,
        "float16",
        None,
        "penultimate",
        False,
        views,
    )
    seen = Inputs(predictor.model)
    table = read_table(made.store, made.data, "train")
    cached = read_teacher_table(made.store, made.cache, "train")
    out: dict[tuple[int, int], torch.Tensor] = {}
    for start in range(0, table.num_rows, 64):
        batch = table.slice(start, 64)
        result = predictor(batch)
        assert result.column("logits").equals(cached.column("logits").slice(start, 64))
        ids = batch.column("row_id").to_numpy()
        assert len(seen.seen) == views.count  # one teacher pass per view, in view order
        for view, tensor in enumerate(seen.seen):
            out.update({(int(r), view): tensor[i] for i, r in enumerate(ids)})
        seen.seen.clear()
    return out


def student_batches(made: Made, cfg: DistillConfig, streamed: bool) -> Any:
    data = prepare_data(made.store, made.data, cfg, [made.cache])
    if streamed:
        assert "train" in data.streamed
        return StreamBatches(
            data.streamed["train"],
            batch_size=cfg.batch_size,
            shuffle=True,
            seed=cfg.seed,
            shuffle_buffer=64,
        )
    return HeldBatches(
        as_tensors(data.held["train"]), batch_size=cfg.batch_size, shuffle=True, seed=cfg.seed
    )


def student_side(
    made: Made, cfg: DistillConfig, streamed: bool, online: bool = False
) -> Iterator[tuple[int, Any, torch.Tensor, dict[str, torch.Tensor]]]:
    """(epoch, the loss's batch, the student's input, the raw batch) of two epochs, as the
    distill objective builds them from the data path's batches."""
    views = training_views(cfg, made.data, [] if online else [made.cache])
    spec = fit_spec_to_dataset(cfg.student, made.data)  # type: ignore[arg-type]
    objective = DistillObjective(
        losses=list(cfg.losses),
        num_classes=made.data.num_classes,
        num_teachers=0 if online else 1,
        teacher_feature_dim=made.cache.feature_dim,
        online_teachers=[made.teacher] if online else [],
        views=views,
        seed=cfg.seed,
    )
    module = objective.build(build_model(spec, seed=0), 20, made.store)
    seen = Inputs(module.student)
    batches = student_batches(made, cfg, streamed)
    shape = tuple(made.data.feature_shape)
    for epoch in (0, 1):
        for i, raw in enumerate(batches.batches(epoch)):
            batch = _to_device(raw, torch.device("cpu"), shape)
            kd = module.kd_batch(batch, epoch + i / 10, i)
            yield epoch, kd, seen.seen.pop(), batch


def check_both_sides_agree(made: Made, streamed: bool) -> None:
    teacher_sees = teacher_side(made)
    cfg = DistillConfig(
        student=STUDENT, batch_size=50, seed=5, worker_cache_mb=0 if streamed else 512
    )
    views = training_views(cfg, made.data, [made.cache])
    assert views is not None and views.count == 3
    cached = read_teacher_table(made.store, made.cache, "train")
    ids = cached.column("row_id").to_numpy()
    logits = cached.column("logits").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    logits = torch.from_numpy(logits.reshape(len(ids), 3, 10))
    position = {int(r): i for i, r in enumerate(ids)}
    teacher, _ = load_model(made.store, made.teacher)
    rows, drawn_per_epoch = 0, {0: {}, 1: {}}
    for epoch, kd, student_input, batch in student_side(made, cfg, streamed):
        row_ids = batch["row_id"].numpy()
        drawn = views.draw(cfg.seed, epoch, row_ids)
        for i, (row, view) in enumerate(zip(row_ids, drawn, strict=True)):
            assert torch.equal(student_input[i], teacher_sees[(int(row), int(view))]), (row, view)
            assert torch.equal(kd.teacher_logits[i], logits[position[int(row)], view])
            drawn_per_epoch[epoch][int(row)] = int(view)
        assert kd.teacher_features.shape == (len(row_ids), made.cache.feature_dim)
        # and those are the teacher's outputs of the very tensor the student sees
        with torch.no_grad():
            own = teacher(student_input).half()
        assert torch.equal(kd.teacher_logits, own)
        rows += len(row_ids)
    assert rows == 2 * made.data.splits["train"]
    first, second = drawn_per_epoch[0], drawn_per_epoch[1]
    assert 0.2 < np.mean([first[r] == second[r] for r in first]) < 0.5  # a new draw each epoch
    assert set(first.values()) == {0, 1, 2}


def test_the_student_sees_the_teachers_view_bit_for_bit_held(made: Made) -> None:
    check_both_sides_agree(made, streamed=False)


@pytest.mark.ray
def test_the_student_sees_the_teachers_view_bit_for_bit_streamed(
    made: Made, ray_cluster: str
) -> None:
    check_both_sides_agree(made, streamed=True)


def test_the_online_teacher_sees_the_same_views(made: Made) -> None:
    """Teachers run online on the views of distill's own settings: the student and the teacher
    see the tensor the cache's teacher saw, and its outputs are the cached ones (to fp16)."""
    cached_cfg = DistillConfig(student=STUDENT, batch_size=50, seed=5)
    online_cfg = DistillConfig(student=STUDENT, batch_size=50, seed=5, **VIEWS)  # type: ignore[arg-type]
    both = zip(
        student_side(made, cached_cfg, streamed=False),
        student_side(made, online_cfg, streamed=False, online=True),
        strict=True,
    )
    for (_, cached, seen_cached, _), (_, online, seen_online, _) in both:
        assert torch.equal(seen_cached, seen_online)
        assert torch.equal(online.teacher_logits.half(), cached.teacher_logits)


def test_the_cache_records_its_views(made: Made) -> None:
    cache = made.cache
    assert (cache.views, cache.view_seed, cache.feature_dim) == (3, 2, 16)
    assert cache.augment is not None and cache.augment.model_dump(mode="json") == {
        "crop": {"scale": [0.4, 1.0], "ratio": [0.75, 4 / 3]},
        "flip": True,
    }
    table = pq.read_table(made.root / cache.path / "val")
    assert str(table.schema.field("logits").type) == "fixed_size_list<element: halffloat>[30]"
    assert str(table.schema.field("feature").type) == "fixed_size_list<element: halffloat>[48]"
    assert table.num_rows == made.data.splits["val"]  # one shard row per dataset row


def test_the_report_names_the_views_a_student_was_distilled_on(made: Made) -> None:
    p = with_student(made)
    p.add(
        "clean",
        "distill",
        inputs={"data": "data.dataset"},
        config={"student": STUDENT, "epochs": 1, "losses": [{"type": "ce"}]},
    )
    p.add(
        "report",
        "evaluate",
        inputs={
            "data": "data.dataset",
            "models": ["student.model", "clean.model"],
            "teacher": "teacher.model",
        },
        config={"names": ["kd_views", "scratch"], "latency_batch_sizes": [1], "plots": False},
    )
    record = run(p.spec, executor="local")
    assert record.status.value == "succeeded", [s.error for s in record.steps]
    folder = made.root / record.step("report").outputs["report"]["path"]
    text = (folder / "report.md").read_text()
    described = (
        "3 views: random-resized crop (scale 0.4-1, ratio 0.75-1.33), horizontal flip (view_seed 2)"
    )
    assert f"`kd_views` was distilled on {described}." in text
    assert "`scratch` was distilled" not in text and "`teacher` was distilled" not in text
    document = json.loads((folder / "report.json").read_text())
    assert document["distilled_on_views"] == {"kd_views": described}


def test_tune_trials_train_on_the_caches_views(made: Made) -> None:
    """A trial builds its objective as distill does: the cache's views, drawn by the trial's
    own seed; a trial config whose views differ from the cache's is refused before training."""
    from components.tuning.trial import TrialBrief, check_trial, loop_spec
    from schemas.kd.components.distill import DistillInputs
    from schemas.kd.components.tune import TuneConfig

    distill = DistillConfig(student=STUDENT, seed=3)
    inputs = DistillInputs(data=made.data, logits=[made.cache])
    brief = TrialBrief(
        config=TuneConfig(distill=distill, space={"optimizer.lr": {"choice": [0.001, 0.01]}}),
        inputs=inputs,
        store=made.store,
    )
    check_trial(distill, inputs)
    objective = loop_spec(distill, brief).objective
    assert objective.views == Views(3, made.cache.augment, 2) and objective.seed == 3  # type: ignore[attr-defined, arg-type]
    with pytest.raises(ValueError, match="views: distill asks for 5 views"):
        check_trial(distill.model_copy(update={"views": 5}), inputs)


def test_nd_reads_each_rows_mean_over_its_views(made: Made) -> None:
    p = with_student(made, losses=[{"type": "nd"}])
    step = run(p.spec, executor="local").step("student")
    assert step.status.value == "ran", step.error  # class means of one view's width (16)
    assert step.outputs["history"][0]["train_nd/nd"] > 0


# ---- bad input ---------------------------------------------------------------------------------


def failed_step(made: Made, p: Pipeline, step_id: str) -> str:
    """The error of ``step_id`` in a run of ``p``, after checking that it committed nothing."""
    step = run(p.spec, executor="local").step(step_id)
    assert step.status.value == "failed" and step.error is not None, step.status
    assert made.store.read_commit(step.key) is None and not step.outputs
    assert "Traceback" not in step.error.message
    return step.error.message


FLAT = """\
name: flat
steps:
- id: data
  component: dataset
  config: {{source: parquet, uri: {uri}, features: [alcohol, malic_acid], label: label}}
- id: teacher
  component: train
  inputs: {{data: data.dataset}}
  config: {{model: {{arch: mlp}}}}
- id: {step}
  component: {component}
  inputs: {inputs}
  config: {{views: 2, student: {{arch: mlp}}}}
"""


@pytest.mark.parametrize(
    ("component", "inputs"),
    [
        ("teacher_inference", "{teacher: teacher.model, data: data.dataset}"),
        ("distill", "{teachers: teacher.model, data: data.dataset}"),
    ],
)
def test_views_of_flat_rows_are_refused_at_validate(
    component: str, inputs: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from components.data.bundled import write_table
    from tests.support.cli import kdorch

    table = write_table("wine", tmp_path / "wine.parquet")
    text = FLAT.format(uri=table, step="views", component=component, inputs=inputs)
    if component == "teacher_inference":
        text = text.replace(", student: {arch: mlp}", "")
    (tmp_path / "p.yaml").write_text(text)
    assert kdorch("validate", str(tmp_path / "p.yaml")) == 2
    err = capsys.readouterr().err
    assert "steps[2] (views).config.views" in err and "p.yaml:13:" in err
    assert (
        f"views: 2 needs image rows [C, H, W], but dataset step 'data' ({table}) has rows "
        "of shape [2]" in err
    )
    assert "hint: set views: 0 for this dataset" in err and "Traceback" not in err


def flat_dataset(made: Made, tmp_path: Path) -> Dataset:
    from components.data.bundled import feature_columns, write_table

    table = write_table("wine", tmp_path / "wine.parquet")
    p = Pipeline("flat", storage=str(made.root))
    config = {"source": "parquet", "uri": str(table), "features": feature_columns("wine")}
    p.add("data", "dataset", config={**config, "label": "label"})
    return Dataset.model_validate(run(p.spec, executor="local").step("data").outputs["dataset"])


def test_views_of_flat_rows_are_refused_at_run(made: Made, tmp_path: Path) -> None:
    """Where validate cannot know the rows' shape, the run refuses them before writing."""
    from components.inference.teacher_inference import TeacherInference
    from components.training.distillation import distill_student
    from schemas.kd.components.teacher_inference import (
        TeacherInferenceConfig,
        TeacherInferenceInputs,
    )
    from tests.support.context import step_context

    data = flat_dataset(made, tmp_path)
    ctx = step_context(made.store, "logits", key="cd" * 32)
    step = TeacherInference(TeacherInferenceConfig(**VIEWS))  # type: ignore[arg-type]
    with pytest.raises(ValueError) as refused:
        step.run(TeacherInferenceInputs(teacher=made.teacher, data=data), ctx)
    assert str(refused.value) == (
        "views: 3 needs image rows [C, H, W], but dataset "
        f"{data.source} has rows of shape [13] (flat features cannot be cropped or flipped): "
        "set views: 0 for this dataset"
    )
    assert not made.store.exists(made.store.object_dir("cd" * 32))  # nothing written
    online = DistillConfig(student={"arch": "mlp"}, **VIEWS)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"views: 3 needs image rows .* shape \[13\]"):
        distill_student(ctx, online, online.student, data, teachers=[made.teacher])  # type: ignore[arg-type]


def with_student(made: Made, data: str = "data.dataset", **config: Any) -> Pipeline:
    p = pipeline(made.root)
    p.add(
        "student",
        "distill",
        inputs={"data": data, "logits": "logits.logits"},
        config={"student": STUDENT, "epochs": 1, **config},
    )
    return p


def test_distill_refuses_views_other_than_its_caches(made: Made) -> None:
    other = {**VIEWS, "view_seed": 9}
    message = failed_step(made, with_student(made, **other), "student")
    assert "views: distill asks for 3 views (random-resized crop" in message
    assert "view_seed 9), but its logit cache holds 3 views" in message
    assert "view_seed 2)" in message and "leave `views`, `augment` and `view_seed` out" in message
    # repeating the cache's settings is fine
    step = run(with_student(made, **VIEWS).spec, executor="local").step("student")
    assert step.status.value == "ran", step.error


def test_distill_refuses_a_cache_of_another_dataset(made: Made) -> None:
    p = with_student(made, data="smaller.dataset")
    p.add("smaller", "dataset", config={"source": "mnist5k", "max_rows": 300})
    message = failed_step(made, p, "student")
    assert f"the logit shards at {made.cache.path} were computed on dataset version" in message
    assert "run teacher_inference on this dataset" in message


def test_caches_that_disagree_on_views_or_layout_are_refused(made: Made) -> None:
    from orchestrator import ArtifactError

    cfg = DistillConfig(student=STUDENT)
    reseeded = made.cache.model_copy(update={"view_seed": 4})
    with pytest.raises(ValueError, match="computed on different views"):
        training_views(cfg, made.data, [made.cache, reseeded])
    fewer = made.cache.model_copy(update={"views": 2})  # a record that does not fit its shards
    with pytest.raises(ArtifactError, match=r"hold `logits` as fixed_size_list.*expected width 20"):
        read_teacher_table(made.store, fewer, "train")
