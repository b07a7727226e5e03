"""The teacher's token cache on the session's Ray: corpus -> tokenizer -> pack_tokens -> a tiny
llama teacher saved from a config (lm_model) -> lm_inference, once in the step's own process
and once on a Ray Data actor pool of two actors. Both write the same bytes (the pool keeps row
order), and the reader gives the teacher's tensors for every row of the sequences."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.lm.cache import cached_batches
from orchestrator import ArtifactStore, Pipeline, run
from schemas.kd.artifacts import LogitShards
from schemas.kd.text import TokenSequences
from schemas.kd.token_cache import TokenCache
from tests.support.lm import corpus_file, lm_steps, write_pipeline

pytestmark = pytest.mark.ray


def test_the_cache_on_an_actor_pool_is_the_cache_in_process(
    ray_cluster: str, tmp_path: Path
) -> None:
    steps = lm_steps(corpus_file(tmp_path), cache={"k": 8, "rows_per_shard": 32})
    pool = {"k": 8, "rows_per_shard": 32, "num_actors": 2, "cpus_per_actor": 0.5}
    steps.append({**steps[-1], "id": "pool", "config": pool})
    store = tmp_path / "store"
    record = run(write_pipeline(tmp_path / "lm.yaml", steps), storage=str(store))
    assert record.status.value == "succeeded", [s.error for s in record.steps if s.error]
    here = TokenCache.model_validate(record.step("cache").outputs["cache"])
    pooled = TokenCache.model_validate(record.step("pool").outputs["cache"])
    assert pooled.data_version == here.data_version  # the same shards, byte for byte
    assert pooled.splits == here.splits and here.splits["train"].shards > 1
    sequences = TokenSequences.model_validate(record.step("tokens").outputs["sequences"])
    rows = 0
    for batch in cached_batches(ArtifactStore(str(store)), sequences, pooled, "train", 16):
        assert batch.teacher.topk_ids is not None and batch.teacher.topk_ids.shape[1:] == (32, 8)
        rows += len(batch.row_id)
    assert rows == sequences.splits["train"].sequences


def test_teacher_inference_on_an_actor_pool_writes_what_it_writes_in_process(
    ray_cluster: str, tmp_path: Path
) -> None:
    """The classifier's cache shares the pool code (components.inference.actor_pool)."""
    p = Pipeline("pool", storage=str(tmp_path / "store"))
    data = p.add("data", "dataset", config={"source": "digits"})
    model = {"arch": "mlp", "hidden": [32]}
    teacher = p.add(
        "teacher", "train", inputs={"data": data.dataset}, config={"model": model, "epochs": 1}
    )
    inputs = {"teacher": teacher.model, "data": data.dataset}
    for step, actors in (("here", 1), ("pool", 2)):
        config = {"feature": "penultimate", "num_actors": actors, "cpus_per_actor": 0.5}
        p.add(step, "teacher_inference", inputs=inputs, config={**config, "batch_size": 200})
    record = run(p.spec)
    assert record.status.value == "succeeded", [s.error for s in record.steps if s.error]
    here, pooled = (
        LogitShards.model_validate(record.step(s).outputs["logits"]) for s in ("here", "pool")
    )
    assert pooled.data_version == here.data_version and pooled.feature_dim == 32
