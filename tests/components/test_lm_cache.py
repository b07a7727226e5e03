"""The teacher's token cache on real text: corpus -> tokenizer -> pack_tokens -> a tiny llama
teacher (lm_model) -> lm_inference, run locally. The cache holds exactly the teacher's top-k
log-probabilities (or its whole distribution) per token, aligned with the sequences; the reader
feeds the token losses; the bytes are the same every time; what a reader cannot trust is
refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import torch

from components.artifacts.checkpoints import load_model
from components.artifacts.datasets import fixed_list_to_numpy
from components.lm.cache import cached_batches, read_cache, read_shard, shard_names
from components.losses.base import KDBatch
from components.losses.combine import build_loss
from components.losses.tokens import token_rows
from components.text.artifacts import read_sequences
from components.text.packing import target_mask
from orchestrator import ArtifactError, ArtifactStore, run
from schemas.engine.storage import StorageOptions
from schemas.kd.artifacts import ModelCheckpoint
from schemas.kd.text import TokenSequences
from schemas.kd.token_cache import TokenCache
from tests.support.cli import kdorch
from tests.support.lm import corpus_file, lm_steps, write_pipeline

K = 8


def run_lm(folder: Path, store: Path) -> dict[str, Any]:
    """The pipeline with a top-k (fp16) and a dense (fp32) cache; its steps' outputs."""
    steps = lm_steps(corpus_file(folder), cache={"k": K, "rows_per_shard": 40})
    dense = {**steps[-1], "id": "dense", "config": {"encoding": "dense", "dtype": "float32"}}
    path = write_pipeline(folder / "lm.yaml", [*steps, dense])
    record = run(path, storage=str(store), executor="local")
    assert record.status.value == "succeeded", [s.error for s in record.steps if s.error]
    return {"record": record, **{s.step_id: s.outputs for s in record.steps}}


@pytest.fixture(scope="module")
def lm(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("lm")
    out = run_lm(folder, folder / "store")
    store = ArtifactStore(str(folder / "store"))
    return {
        "folder": folder,
        "store": store,
        "record": out["record"],
        "sequences": TokenSequences.model_validate(out["tokens"]["sequences"]),
        "teacher": ModelCheckpoint.model_validate(out["teacher"]["model"]),
        "cache": TokenCache.model_validate(out["cache"]["cache"]),
        "dense": TokenCache.model_validate(out["dense"]["cache"]),
    }


def teacher_log_probs(lm: dict[str, Any], rows: pa.Table) -> torch.Tensor:
    model, _ = load_model(lm["store"], lm["teacher"])
    tokens = torch.from_numpy(fixed_list_to_numpy(rows.column("tokens")).astype(np.int64))
    with torch.no_grad():
        return torch.log_softmax(model(tokens[:, :-1]), dim=-1)


def test_the_cache_holds_the_teachers_top_k_per_token(lm: dict[str, Any]) -> None:
    cache, sequences, store = lm["cache"], lm["sequences"], lm["store"]
    rows = read_sequences(store, sequences, "val")
    table = read_cache(store, cache, "val")
    assert table.column("row_id").to_pylist() == rows.column("row_id").to_pylist()
    logp = teacher_log_probs(lm, rows)
    T = sequences.seq_len
    expected, ids = logp.topk(K, dim=-1)
    got = fixed_list_to_numpy(table.column("topk_logprobs")).reshape(-1, T, K)
    got_ids = fixed_list_to_numpy(table.column("topk_ids")).reshape(-1, T, K)
    rest = fixed_list_to_numpy(table.column("rest_mass")).reshape(-1, T)
    real = np.arange(T)[None, :] < rows.column("length").to_numpy()[:, None] - 1
    assert got.dtype == np.float16 and not real.all()  # the last row is padded
    assert np.array_equal(got_ids[real], ids.numpy()[real])
    np.testing.assert_allclose(got[real], expected.numpy()[real], rtol=1e-3, atol=2e-3)
    kept = expected.exp().sum(-1).numpy()
    np.testing.assert_allclose(rest[real], 1 - kept[real], atol=1e-6)
    assert not got[~real].any() and not got_ids[~real].any() and not rest[~real].any()
    # What the record says.
    split = cache.splits["val"]
    assert split.tokens == int(real.sum()) == sequences.splits["val"].tokens - 1
    files = [e for e in store.manifest(cache).files if e.path.endswith(".parquet")]
    assert cache.bytes == sum(e.size for e in files)
    assert cache.bytes_per_token == round(cache.bytes / cache.tokens, 3)
    assert split.shards == len(shard_names(store, cache, "val")) >= 1
    assert cache.splits["train"].shards == -(-cache.splits["train"].sequences // 40)
    assert (cache.encoding, cache.top_k, cache.vocab_size) == ("topk", K, sequences.vocab_size)


def test_the_dense_cache_is_the_whole_distribution(lm: dict[str, Any]) -> None:
    rows = read_sequences(lm["store"], lm["sequences"], "test")
    table = read_cache(lm["store"], lm["dense"], "test")
    T, V = lm["sequences"].seq_len, lm["sequences"].vocab_size
    got = fixed_list_to_numpy(table.column("logprobs")).reshape(-1, T, V)
    real = np.arange(T)[None, :] < rows.column("length").to_numpy()[:, None] - 1
    np.testing.assert_allclose(got[real], teacher_log_probs(lm, rows).numpy()[real], atol=1e-5)
    np.testing.assert_allclose(np.exp(got[real]).sum(-1), 1.0, atol=1e-5)
    assert lm["dense"].bytes_per_token > 20 * lm["cache"].bytes_per_token


def forward_kl(batch: KDBatch, vocab: int) -> float:
    spec = {"type": "forward_kl", "targets": "topk", "missing": "symmetric_uniform"}
    total, _ = build_loss([spec], num_classes=vocab)(batch)
    return float(total)


def test_cached_batches_feed_the_token_losses(lm: dict[str, Any]) -> None:
    from components.lm.models import build_causal_lm

    cache, sequences, store = lm["cache"], lm["sequences"], lm["store"]
    teacher, _ = load_model(store, lm["teacher"])
    other = build_causal_lm(lm["teacher"].model, seed=1).eval()
    rows = read_sequences(store, sequences, "train")
    width = sequences.seq_len + 1
    seen, same, different = 0, list[float](), list[float]()
    for batch in cached_batches(store, sequences, cache, "train", 48):
        assert batch.row_id.tolist() == list(range(seen, seen + len(batch.row_id)))
        part = rows.slice(seen, len(batch.row_id))
        mask = target_mask(part.column("doc_starts"), part.column("length").to_numpy(), width)
        assert torch.equal(batch.mask, torch.from_numpy(mask))
        assert batch.teacher.topk_ids is not None and batch.teacher.topk_ids.shape[-1] == K
        seen += len(batch.row_id)
        if len(same) < 2:
            with torch.no_grad():
                for model, out in ((teacher, same), (other, different)):
                    fields = {"student_logits": model(batch.inputs), **batch.loss_fields()}
                    counted: dict[str, Any] = token_rows(batch.mask, **fields)
                    out.append(forward_kl(KDBatch(**counted), 300))
    assert seen == sequences.splits["train"].sequences
    # The teacher against its own cache: nothing to learn (fp16 rounding only); another
    # network (fresh weights, near uniform like the teacher) is measurably off.
    assert max(same) < 1e-6 and min(different) > 1000 * max(same), (same, different)


def test_the_cache_is_deterministic_and_reused(lm: dict[str, Any], tmp_path: Path) -> None:
    # The same pipeline into another store: every step computed again, the same bytes.
    again = run(lm["folder"] / "lm.yaml", storage=str(tmp_path / "store"), executor="local")
    assert {s.status.value for s in again.steps} == {"ran"}
    outputs = {s.step_id: s.outputs for s in again.steps}
    for step in ("cache", "dense"):
        assert TokenCache.model_validate(outputs[step]["cache"]).data_version == (
            lm[step].data_version
        )
    record = run(lm["folder"] / "lm.yaml", storage=str(lm["folder"] / "store"), executor="local")
    assert {s.status.value for s in record.steps} == {"cached"}


def test_kdorch_show_says_what_the_cache_costs(
    lm: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    storage = str(lm["folder"] / "store")
    assert kdorch("show", lm["record"].run_id, "cache", "--storage", storage) == 0
    out = capsys.readouterr().out
    per_token = f"{lm['cache'].bytes_per_token:.4g}"
    assert "cache.bytes_per_token" in out and per_token in out, out
    assert "cache.encoding" in out and "topk" in out and "cache.top_k" in out


def test_a_reader_refuses_what_it_cannot_trust(lm: dict[str, Any]) -> None:
    cache, sequences, store = lm["cache"], lm["sequences"], lm["store"]
    name = shard_names(store, cache, "val")[0]
    newer = cache.model_copy(update={"format": 2})
    with pytest.raises(ArtifactError, match=r"encoded as 'topk' format 2, which this kdorch"):
        read_shard(store, newer, name)
    wider = cache.model_copy(update={"top_k": 16})
    with pytest.raises(ArtifactError, match=r"holds `topk_ids` as fixed_size_list<.*>\[256\]"):
        read_shard(store, wider, name)
    other = sequences.model_copy(update={"data_version": "cd" * 32})
    with pytest.raises(ArtifactError, match=r"was computed on sequences .*, these are cdcdcd"):
        next(cached_batches(store, other, cache, "val", 8))


def test_the_cache_in_an_s3_store(tmp_path: Path, s3_server: dict) -> None:
    options = {"key": "testing", "secret": "testing", "endpoint_url": s3_server["endpoint"]}
    uri = f"s3://{s3_server['bucket']}/lm-store"
    steps = lm_steps(corpus_file(tmp_path, count=20), cache={"k": 4, "rows_per_shard": 16})
    path = write_pipeline(tmp_path / "lm.yaml", steps)
    record = run(path, storage=uri, storage_options=StorageOptions(**options), executor="local")
    assert record.status.value == "succeeded", [s.error for s in record.steps if s.error]
    cache = TokenCache.model_validate(record.step("cache").outputs["cache"])
    sequences = TokenSequences.model_validate(record.step("tokens").outputs["sequences"])
    store = ArtifactStore(uri, options)
    rows = sum(len(b.row_id) for b in cached_batches(store, sequences, cache, "train", 16))
    assert rows == sequences.splits["train"].sequences and cache.splits["train"].shards > 1
