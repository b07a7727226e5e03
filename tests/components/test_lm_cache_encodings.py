"""The token cache's compressed encodings end to end on real text, run locally: the guide's
pipeline (docs/language_models.md, "Choosing an encoding": corpus -> tokenizer -> pack_tokens ->
a llama teacher trained here -> a ``topk_delta`` cache -> a student), with an fp16 and a
``topk_quant`` cache beside and a student streamed; the compressed caches decode to the fp16
cache's ids and (within their bound) its log-probabilities, are smaller, feed students held and
streamed, and are keyed by their parameters; parameters that do not fit the encoding are refused
at validate."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from components.lm.cache import cached_batches
from orchestrator import ArtifactStore, plan, run
from schemas.kd.text import TokenSequences
from schemas.kd.token_cache import TokenCache
from tests.components.test_lm_errors import refused
from tests.support.docs import ROOT, examples
from tests.support.lm import corpus_file, lm_steps

STUDENT = {"arch": "causal_lm", "layers": 1, "width": 16, "heads": 2, "max_positions": 32}
K = 40  # the guide's
QUANT = {"encoding": "topk_quant", "k": K, "bits": 4, "rows_per_shard": 16}


def guide_pipeline() -> dict[str, Any]:
    """docs/language_models.md's pipeline ("Choosing an encoding"), under the `name:` line it
    tells readers to add."""
    (block,) = [
        e
        for e in examples(ROOT / "docs" / "language_models.md")
        if e.language == "yaml" and "encoding: topk_delta" in e.text
    ]
    return yaml.safe_load("name: lm_encoded\n" + block.text)


def encoded_pipeline(folder: Path, step: float | None = None) -> Path:
    """The guide's pipeline (its cache: topk_delta; its student held), with an fp16 and a
    topk_quant cache beside, and a student streamed from the delta cache (0 MB a worker: read
    every epoch); ``step``: another grid for the delta cache."""
    pipeline = guide_pipeline()
    steps = pipeline["steps"]
    cache = next(s for s in steps if s["id"] == "cache")
    if step is not None:
        cache["config"]["step"] = step
    for name, config in (("fp16", {"k": K}), ("quant", QUANT)):
        steps.append({**cache, "id": name, "config": config})
    student = next(s for s in steps if s["id"] == "student")
    streamed = {**student["config"], "student": STUDENT, "worker_cache_mb": 0}
    steps.append({**student, "id": "student_streamed", "config": streamed})
    path = folder / f"lm_encoded_{step}.yaml"
    path.write_text(yaml.safe_dump(pipeline, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def lm(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("lm_encodings")
    options: dict[str, Any] = {
        "overrides": [f"params.corpus={corpus_file(folder, count=24)}"],
        "profile": "smoke",
    }
    record = run(
        encoded_pipeline(folder), storage=str(folder / "store"), executor="local", **options
    )
    assert record.status.value == "succeeded", [s.error for s in record.steps if s.error]
    out = {s.step_id: s.outputs for s in record.steps}
    return {
        "folder": folder,
        "options": options,
        "store": ArtifactStore(str(folder / "store")),
        "sequences": TokenSequences.model_validate(out["tokens"]["sequences"]),
        **{n: TokenCache.model_validate(out[n]["cache"]) for n in ("cache", "fp16", "quant")},
        **{n: out[n] for n in ("student", "student_streamed")},
    }


def test_the_record_says_how_to_decode(lm: dict[str, Any]) -> None:
    delta, quant, fp16 = lm["cache"], lm["quant"], lm["fp16"]
    assert (delta.encoding, delta.format, delta.top_k) == ("topk_delta", 1, K)
    assert delta.value_step == 1 / 8 and delta.id_bits == 9  # 400 ids: ceil(log2 400)
    assert (quant.encoding, quant.value_bits, quant.id_bits) == ("topk_quant", 4, 9)
    assert (fp16.encoding, fp16.id_bits, fp16.value_bits, fp16.value_step) == (
        "topk",
        None,
        None,
        None,
    )
    assert delta.bytes_per_token < quant.bytes_per_token < fp16.bytes_per_token


def test_compressed_caches_decode_to_the_fp16_cache(lm: dict[str, Any]) -> None:
    store, sequences = lm["store"], lm["sequences"]
    pairs = zip(
        cached_batches(store, sequences, lm["fp16"], "val", 16),
        cached_batches(store, sequences, lm["cache"], "val", 16),
        cached_batches(store, sequences, lm["quant"], "val", 16),
        strict=True,
    )
    for fp16, delta, quant in pairs:
        mask = fp16.mask
        for other, limit in ((delta, 1 / 8 + 0.01), (quant, None)):
            a, b = fp16.teacher, other.teacher
            assert a.topk_ids is not None and b.topk_ids is not None
            assert a.topk_logprobs is not None and b.topk_logprobs is not None
            assert a.rest_mass is not None and b.rest_mass is not None
            assert torch.equal(a.topk_ids[mask], b.topk_ids[mask])
            error = (a.topk_logprobs[mask] - b.topk_logprobs[mask]).abs()
            if limit is None:  # 4 bits: a 15th of each position's spread, and fp16's rounding
                spread = a.topk_logprobs[mask][:, :1] - a.topk_logprobs[mask][:, -1:]
                assert (error <= spread / 15 / 2 + 0.01).all()
            else:
                assert float(error.max()) <= limit
            assert float((a.rest_mass[mask] - b.rest_mass[mask]).abs().max()) < 2e-3


def test_students_train_from_a_compressed_cache_held_and_streamed(lm: dict[str, Any]) -> None:
    for name in ("student", "student_streamed"):  # held, streamed
        metrics = lm[name]["metrics"]
        assert math.isfinite(metrics["train_forward_kl/kl"]) and metrics["train_forward_kl/kl"] > 0
        assert math.isfinite(metrics["val_loss"]) and metrics["val_loss"] < math.log(400) + 1


def test_the_cache_key_covers_the_encodings_parameters(lm: dict[str, Any]) -> None:
    folder, store = lm["folder"], str(lm["folder"] / "store")
    coarser = plan(encoded_pipeline(folder, step=0.25), storage=store, **lm["options"])
    actions = {d.step_id: d.action for d in coarser}
    assert actions["fp16"] == actions["quant"] == actions["teacher"] == "cached"
    assert actions["cache"] != "cached"  # another grid: another cache
    same = plan(encoded_pipeline(folder, step=0.125), storage=store, **lm["options"])
    assert {d.action for d in same} == {"cached"}  # the default, written out: the same key


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"k": 8, "bits": 4}, "bits is topk_quant's (bits per log-probability); encoding topk"),
        (
            {"encoding": "topk_quant", "step": 0.1},
            "step is topk_delta's (its grid, in nats); encoding topk_quant has none",
        ),
        ({"encoding": "topk_quant", "bits": 9}, "bits"),
        ({"encoding": "topk_delta", "step": 2.0}, "step"),
        ({"encoding": "dense", "k": 8}, "k is for the top-k encodings"),
    ],
)
def test_parameters_that_do_not_fit_the_encoding_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], config: dict, message: str
) -> None:
    steps = lm_steps(corpus_file(tmp_path, count=4), cache=config)
    err = refused(tmp_path, capsys, steps)
    assert message in err and "cache" in err, err
