"""The guide's text pipeline (docs/language_models.md) on the session's Ray, smoke profile: the
standard library's source -> a corpus -> a BPE trained on its train split -> packed rows that
Ray Data streams; run again, every step comes from the cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.text.bundled import write_stdlib
from orchestrator import ArtifactStore, run
from schemas.engine.run import RunRecord
from schemas.kd.text import TextCorpus, TextTokenizer, TokenSequences
from tests.support.docs import ROOT, examples

pytestmark = pytest.mark.ray


def guide_pipeline(tmp_path: Path) -> Path:
    """The guide's first block of steps (the text data; a later one, the encodings', is run
    by tests/components/test_lm_cache_encodings.py), under the `name:` line it tells readers
    to add."""
    block = next(
        e
        for e in examples(ROOT / "docs" / "language_models.md")
        if e.language == "yaml" and "component: pack_tokens" in e.text
    )
    path = tmp_path / "lm_data.yaml"
    path.write_text("name: lm_data\n" + block.text)
    return path


def test_the_guides_text_pipeline_runs_on_ray(ray_cluster: str, tmp_path: Path) -> None:
    import ray

    corpus_file = write_stdlib(tmp_path / "data" / "stdlib.parquet")
    store = tmp_path / "store"

    def run_smoke() -> RunRecord:
        overrides = [f"params.corpus={corpus_file}"]
        return run(
            guide_pipeline(tmp_path), storage=str(store), overrides=overrides, profile="smoke"
        )

    record = run_smoke()
    assert record.status.value == "succeeded", [s.error for s in record.steps if s.error]
    corpus = TextCorpus.model_validate(record.step("corpus").outputs["corpus"])
    assert sum(s.documents + s.empty for s in corpus.splits.values()) == 120
    assert corpus.splits["test"].documents >= 5
    tokenizer = TextTokenizer.model_validate(record.step("tokenizer").outputs["tokenizer"])
    assert tokenizer.vocab_size == 1024 and tokenizer.trained_on == corpus.data_version
    sequences = TokenSequences.model_validate(record.step("tokens").outputs["sequences"])
    assert sequences.tokenizer_version == tokenizer.data_version
    train = sequences.splits["train"]
    assert train.tokens > 100_000 and train.documents == corpus.splits["train"].documents

    from components.text.artifacts import sequence_source
    from components.text.packing import target_mask

    fs, paths = sequence_source(ArtifactStore(str(store)), sequences, ["train"])
    streamed = ray.data.read_parquet(paths, filesystem=fs)
    assert streamed.count() == train.sequences
    counted = 0
    for batch in streamed.iter_batches(batch_size=64, batch_format="pyarrow"):
        length = batch.column("length").to_numpy()
        counted += int(target_mask(batch.column("doc_starts"), length, 257).sum())
        ids = batch.column("tokens").combine_chunks().flatten().to_numpy()
        assert ids.max() < 1024
    # Every token is a target once, but for each document's first (predicted across a boundary).
    assert counted == train.tokens - train.documents

    again = run_smoke()
    assert {s.status.value for s in again.steps} == {"cached"}
