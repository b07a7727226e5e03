"""teacher_inference and distill for real on Ray: a tiny MLP teacher on sklearn digits."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from orchestrator import Pipeline, run
from orchestrator.storage.store import ArtifactStore
from schemas.kd.artifacts import LogitShards

pytestmark = pytest.mark.ray

FAST = {"epochs": 3, "batch_size": 32, "optimizer": {"lr": 0.005}}


def base(store: Path, **logit_config: object) -> Pipeline:
    p = Pipeline("kd-components", storage=str(store))
    data = p.add("data", "dataset", config={"source": "digits"})
    teacher = p.add(
        "teacher",
        "train",
        inputs={"data": data.dataset},
        config={"model": {"arch": "mlp", "hidden": [64]}, "epochs": 4, "batch_size": 64},
    )
    p.add(
        "logits",
        "teacher_inference",
        inputs={"teacher": teacher.model, "data": data.dataset},
        config=logit_config,
    )
    return p


@pytest.fixture(scope="module")
def kd_store(ray_cluster: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("kd") / "store"
    record = run(base(store, feature="penultimate").spec)
    assert record.status.value == "succeeded", [s.error for s in record.steps]
    return store


def logits_of(record) -> LogitShards:
    return LogitShards.model_validate(record.step("logits").outputs["logits"])


def test_logit_shards_are_fp16_keyed_by_row_id_and_deterministic(kd_store: Path) -> None:
    first = logits_of(run(base(kd_store, feature="penultimate").spec))
    assert first.dtype == "float16" and first.feature == "penultimate" and first.feature_dim == 64
    assert first.splits == {"train": 1078, "val": 360, "test": 359}
    table = pq.read_table(kd_store / first.path / "train")
    assert str(table.schema.field("logits").type) == "fixed_size_list<element: halffloat>[10]"
    dataset_ids = pq.read_table(
        kd_store / run(base(kd_store).spec).step("data").outputs["dataset"]["path"] / "train"
    )
    assert table.column("row_id").equals(dataset_ids.column("row_id"))  # dataset order, every row
    # the same teacher recomputed: byte-identical shards, so the same data version
    again = run(
        base(kd_store, feature="penultimate").spec, overrides=["steps.logits.cache=recompute"]
    )
    assert again.step("logits").status.value == "ran"
    assert logits_of(again).data_version == first.data_version


def test_topk_cache_columns(kd_store: Path) -> None:
    cache = logits_of(run(base(kd_store, top_k=3, precision="float32").spec))
    table = pq.read_table(kd_store / cache.path / "val")
    assert {"row_id", "topk_indices", "topk_values", "rest_mass"} <= set(table.column_names)
    rest = table.column("rest_mass").to_numpy()
    assert ((rest >= 0) & (rest < 1)).all()


def student(p: Pipeline, losses: list, **inputs: object) -> None:
    p.add(
        "student",
        "distill",
        inputs={"data": "data.dataset", **inputs},
        config={"student": {"arch": "mlp", "hidden": [16]}, "losses": losses, **FAST},
    )


def test_distill_from_a_topk_cache(kd_store: Path) -> None:
    p = base(kd_store, top_k=3)
    student(p, [{"type": "topk_kl", "rule": "bucket"}], logits="logits.logits")
    record = run(p.spec)
    step = record.step("student")
    assert step.status.value == "ran", step.error
    history = step.outputs["history"]
    assert len(history) == 3 and "train_topk_kl/kl" in history[0]
    assert step.outputs["metrics"]["val_accuracy"] > 0.6


def test_impossible_loss_and_cache_combinations_are_refused_early(kd_store: Path) -> None:
    p = base(kd_store, top_k=3)
    student(p, [{"type": "dkd"}], logits="logits.logits")
    error = run(p.spec).step("student").error
    assert (
        error is not None
        and "needs all of the teacher's logits" in error.message
        and "topk_kl" in error.message
    )


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_corrupted_shard_is_detected_and_the_next_run_recomputes(
    kd_store: Path, tmp_path: Path
) -> None:
    import shutil

    store = tmp_path / "store"
    shutil.copytree(kd_store, store)  # a moved/copied store stays valid
    p = base(store, feature="penultimate")
    cache = logits_of(run(p.spec))
    flip_a_byte(store / cache.path / "train" / "shard-00000.parquet")
    student(p, [{"type": "kd"}], logits="logits.logits")
    record = run(p.spec)
    assert record.step("logits").status.value == "cached"  # sizes match: read decides
    error = record.step("student").error
    assert error is not None and error.type == "CorruptArtifact"
    assert "shard-00000.parquet is corrupt" in error.message and "blake3" in error.message
    assert "moved aside" in error.message
    assert not (store / ArtifactStore(str(store)).commit_path(record.step("student").key)).exists()
    again = run(p.spec)
    assert again.step("logits").status.value == "ran"  # recomputed from the intact teacher
    assert logits_of(again).data_version == cache.data_version  # byte-identical again
    assert again.step("student").status.value == "ran"


def test_corrupted_teacher_weights_are_never_used(kd_store: Path, tmp_path: Path) -> None:
    import shutil

    store = tmp_path / "store"
    shutil.copytree(kd_store, store)
    p = base(store, feature="penultimate")
    first = run(p.spec)
    teacher = first.step("teacher").outputs["model"]["path"]
    flip_a_byte(store / teacher / "weights.pt")
    record = run(p.spec, overrides=["steps.logits.config.precision=float32"])
    error = record.step("logits").error
    assert error is not None and "weights.pt is corrupt" in error.message
    again = run(p.spec, overrides=["steps.logits.config.precision=float32"])
    assert again.step("teacher").status.value == "ran" and again.status.value == "succeeded"
