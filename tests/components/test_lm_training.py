"""Language models through `train` and `distill` on real text, run locally: a tiny llama teacher
trained with next-token cross-entropy on packed standard-library sequences, its top-k token
cache, and students distilled from the cache with each token loss (held and streamed) and
from the teacher run online; gradient accumulation's update; bad inputs refused at validate."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from components.artifacts.checkpoints import load_model
from components.lm.models import CausalLM
from components.lm.streams import SequenceStream, held_columns
from components.training.loop import LoopSpec, run_loop
from components.training.session import LocalSession
from components.training.supervised import SupervisedObjective
from orchestrator import ArtifactStore, run
from schemas.kd.artifacts import ModelCheckpoint
from schemas.kd.components.training import TrainingSettings
from schemas.kd.models import MLPSpec
from schemas.kd.text import TokenSequences
from schemas.kd.token_cache import TokenCache
from tests.components.test_lm_errors import refused
from tests.support.lm import TINY, corpus_file, lm_steps, write_pipeline

STUDENT = {"arch": "causal_lm", "layers": 1, "width": 32, "heads": 2, "max_positions": 64}
TOKEN_LOSSES = ["forward_kl", "reverse_kl", "jsd", "skew_kl", "taid"]


def lm_train_steps(folder: Path) -> list[dict[str, Any]]:
    """corpus -> tokenizer -> pack_tokens -> a teacher trained here -> its top-k cache ->
    a student per token loss (one of them streamed), and one from the teacher run online."""
    steps = lm_steps(corpus_file(folder), cache={"k": 8, "rows_per_shard": 16})
    steps[3] = {
        "id": "teacher",
        "component": "train",
        "inputs": {"data": "tokens.sequences"},
        "config": {
            "model": {**TINY, "max_positions": 64},
            "epochs": 3,
            "batch_size": 8,
            "optimizer": {"lr": 0.003, "warmup_fraction": 0.1},
            "grad_clip": 1.0,
        },
    }
    for loss in TOKEN_LOSSES:
        steps.append(
            {
                "id": f"kd_{loss}",
                "component": "distill",
                "inputs": {"data": "tokens.sequences", "logits": "cache.cache"},
                "config": {
                    "student": STUDENT,
                    "epochs": 1,
                    "batch_size": 8,
                    "worker_cache_mb": 0 if loss == "taid" else 512,  # taid: streamed
                    "losses": [{"type": loss, "targets": "topk"}, {"type": "ce", "weight": 0.5}],
                },
            }
        )
    online = {"data": "tokens.sequences", "teachers": "teacher.model"}
    steps.append(
        {
            "id": "online",
            "component": "distill",
            "inputs": online,
            "config": {"student": STUDENT, "epochs": 1, "batch_size": 8, "grad_accum_steps": 2},
        }
    )
    steps[-1]["config"]["losses"] = [{"type": "forward_kl"}]
    return steps


@pytest.fixture(scope="module")
def lm(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("lm_training")
    path = write_pipeline(folder / "lm.yaml", lm_train_steps(folder))
    record = run(path, storage=str(folder / "store"), executor="local")
    assert record.status.value == "succeeded", [s.error for s in record.steps if s.error]
    return {
        "store": ArtifactStore(str(folder / "store")),
        **{s.step_id: s.outputs for s in record.steps},
    }


def test_train_lowers_the_val_loss_of_a_language_model(lm: dict[str, Any]) -> None:
    history = lm["teacher"]["history"]
    losses = [h["val_loss"] for h in history]
    assert losses[-1] < losses[0] - 0.2, losses  # it learns
    assert losses[0] < math.log(300)  # below a uniform guess over the vocabulary
    last = history[-1]
    assert last["val_perplexity"] == pytest.approx(math.exp(last["val_loss"]))
    assert 0 < last["val_accuracy"] < 1 and last["val_tokens"] > 1000
    assert history[0]["lr"] > history[-1]["lr"]  # warm-up then cosine, per optimiser step


def test_the_checkpoint_rebuilds_and_fed_lm_inference(lm: dict[str, Any]) -> None:
    checkpoint = ModelCheckpoint.model_validate(lm["teacher"]["model"])
    sequences = TokenSequences.model_validate(lm["tokens"]["sequences"])
    assert checkpoint.model.arch == "causal_lm"
    assert checkpoint.model.vocab_size == sequences.vocab_size
    assert checkpoint.model.tokenizer.version == sequences.tokenizer_version
    model, extra = load_model(lm["store"], checkpoint)
    assert isinstance(model, CausalLM) and extra["metrics"]["val_loss"] > 0
    cache = TokenCache.model_validate(lm["cache"]["cache"])
    assert cache.teacher_version == checkpoint.data_version


@pytest.mark.parametrize("loss", TOKEN_LOSSES)
def test_distill_with_each_token_loss_from_the_cache(lm: dict[str, Any], loss: str) -> None:
    metrics = lm[f"kd_{loss}"]["metrics"]
    parts = [k for k in metrics if k.startswith(f"train_{loss}/")]
    assert parts and all(math.isfinite(metrics[k]) for k in parts), metrics
    assert math.isfinite(metrics["val_loss"]) and metrics["val_loss"] < math.log(300) + 1
    student = ModelCheckpoint.model_validate(lm[f"kd_{loss}"]["model"])
    assert (
        student.num_parameters
        < ModelCheckpoint.model_validate(lm["teacher"]["model"]).num_parameters
    )


def test_distill_from_a_teacher_run_online(lm: dict[str, Any]) -> None:
    metrics = lm["online"]["metrics"]
    assert math.isfinite(metrics["train_forward_kl/kl"]) and metrics["train_forward_kl/kl"] > 0


def test_held_and_streamed_rows_are_the_same(lm: dict[str, Any]) -> None:
    store = lm["store"]
    sequences = TokenSequences.model_validate(lm["tokens"]["sequences"])
    cache = TokenCache.model_validate(lm["cache"]["cache"])
    settings = TrainingSettings(shuffle_buffer=0)
    held = held_columns(store, sequences, cache, "train", settings)
    stream = SequenceStream(store, sequences, cache, "train")
    # Two workers: each takes every other row, the same count; together every row but one.
    parts = [
        list(
            stream.for_worker(
                batch_size=5, shuffle=False, settings=settings, rank=r, world=2
            ).batches(0)
        )
        for r in (0, 1)
    ]
    rows = {r: torch.cat([b["row_id"] for b in batches]) for r, batches in enumerate(parts)}
    assert len(rows[0]) == len(rows[1]) == len(held["y"]) // 2
    assert len(parts[0]) == len(parts[1])  # DDP workers take the same number of steps
    assert (rows[0] % 2 == 0).all() and (rows[1] % 2 == 1).all()
    for name in ("x", "y", "mask", "teacher_topk_indices", "teacher_topk_values"):
        streamed = torch.cat([b[name] for b in parts[0]]).numpy()
        np.testing.assert_array_equal(streamed, held[name][rows[0].numpy()])
    shuffled = stream.for_worker(
        batch_size=5, shuffle=True, settings=TrainingSettings(shuffle_buffer=40), rank=0, world=1
    )
    order = torch.cat([b["row_id"] for b in shuffled.batches(0)])
    assert sorted(order.tolist()) == list(range(len(held["y"])))  # each row once
    assert order.tolist() != sorted(order.tolist())


def _sgd_step(tmp: Path, batch_size: int, accum: int) -> dict[str, torch.Tensor]:
    """One optimiser step of SGD (no momentum) on 16 rows, in batches of ``batch_size``."""
    generator = torch.Generator().manual_seed(0)
    columns = {
        "row_id": torch.arange(16),
        "x": torch.randn(16, 6, generator=generator),
        "y": torch.randint(0, 3, (16,), generator=generator),
    }
    settings = TrainingSettings(
        epochs=1,
        batch_size=batch_size,
        grad_accum_steps=accum,
        optimizer={"name": "sgd", "lr": 0.5, "momentum": 0.0, "schedule": "constant"},
    )
    spec = MLPSpec(hidden=[8], num_classes=3, input_shape=(6,))
    store = ArtifactStore(str(tmp))
    loop = LoopSpec(spec, settings, SupervisedObjective(), 16 // batch_size, store)
    session = LocalSession(store, f"resume-{batch_size}", torch.device("cpu"))
    return run_loop(loop, session, columns, columns).student_state


def test_gradient_accumulation_is_the_larger_batchs_update(tmp_path: Path) -> None:
    whole = _sgd_step(tmp_path, 16, 1)
    accumulated = _sgd_step(tmp_path, 8, 2)
    first = _sgd_step(tmp_path, 8, 1)  # two steps of 8: another update
    for name, value in whole.items():
        torch.testing.assert_close(accumulated[name], value, rtol=1e-5, atol=1e-6)
    assert any(not torch.allclose(first[n], whole[n]) for n in whole)


# -- refused at validate (exit 2, located, nothing written) -----------------------------------
def _bad(tmp_path: Path, capsys: pytest.CaptureFixture[str], steps: list[dict]) -> str:
    return refused(tmp_path, capsys, steps)


def test_a_classifier_dataset_given_to_a_language_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before: build_model(causal_lm) with no vocabulary, or the dataset's float rows fed to
    # an embedding ("Expected tensor for argument #1 'indices' to have ... Long").
    steps = [
        {"id": "data", "component": "dataset", "config": {"source": "digits"}},
        {"id": "lm", "component": "train", "inputs": {"data": "data.dataset"}},
    ]
    steps[1]["config"] = {"model": {**TINY, "max_positions": 64}}
    err = _bad(tmp_path, capsys, steps)
    assert "steps[1] (lm).config.model.arch" in err
    assert "`data` (step 'data') gives a classifier dataset, but the model is a causal" in err


def test_token_sequences_given_to_a_classifier(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before: "dataset has no attribute num_classes" deep in fit_spec_to_dataset.
    steps = lm_steps(corpus_file(tmp_path))[:3]
    steps.append(
        {
            "id": "mlp",
            "component": "train",
            "inputs": {"data": "tokens.sequences"},
            "config": {"model": {"arch": "mlp", "hidden": [8]}},
        }
    )
    err = _bad(tmp_path, capsys, steps)
    assert "steps[3] (mlp).config.model.arch" in err
    assert "gives token sequences, which a language model reads, but the model is a mlp" in err


def test_a_student_vocabulary_that_is_not_the_sequences(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before: the student's 512 logits against a 300-id teacher cache: a shape error in the
    # loss after the teacher and its cache were computed.
    steps = lm_train_steps(tmp_path)[:6]
    steps[-1]["config"]["student"] = {**STUDENT, "vocab_size": 512}
    err = _bad(tmp_path, capsys, steps)
    assert "steps[5] (kd_forward_kl).config.student.vocab_size" in err
    assert (
        "has a vocabulary of 512 ids but the tokenizer of step 'tokenizer' has at most 300" in err
    )


def test_a_teacher_vocabulary_that_is_not_the_students(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before: the online teacher's 300-way logits against a student of a 280-id tokenizer:
    # a shape error in the first batch's loss, after the teacher trained.
    steps = lm_train_steps(tmp_path)[:4]
    steps[3]["config"]["model"]["vocab_size"] = 300
    steps[1]["config"]["vocab_size"] = 300
    steps += [
        {
            "id": "small",
            "component": "tokenizer",
            "inputs": {"corpus": "corpus.corpus"},
            "config": {"vocab_size": 280},
        },
        {
            "id": "small_tokens",
            "component": "pack_tokens",
            "inputs": {"corpus": "corpus.corpus", "tokenizer": "small.tokenizer"},
            "config": {"seq_len": 32},
        },
        {
            "id": "student",
            "component": "distill",
            "inputs": {"data": "small_tokens.sequences", "teachers": "teacher.model"},
            "config": {"student": STUDENT, "losses": [{"type": "forward_kl"}]},
        },
    ]
    err = _bad(tmp_path, capsys, steps)
    assert "steps[6] (student).inputs.teachers" in err
    assert (
        "the teacher of step 'teacher' (causal_lm llama 2x64) has a vocabulary of 300 ids but "
        "the tokenizer of step 'small' has at most 280" in err
    )


def test_a_feature_loss_on_token_sequences(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before: KeyError-like "needs teacher_features" only once the step ran.
    steps = lm_train_steps(tmp_path)[:6]
    steps[-1]["config"]["losses"] = [{"type": "hint"}]
    err = _bad(tmp_path, capsys, steps)
    assert "steps[5] (kd_forward_kl).config.losses[0]" in err
    assert "losses[0] (hint) reads features, which a language model's token rows do not" in err
