"""Sequence-level KD and evaluation on the session's Ray: corpus -> tokenizer -> pack_tokens ->
a tiny llama teacher trained by `train` -> seqkd (the teacher's samples) -> a student trained
by `train` on them -> lm_evaluate (teacher and student on the real test split). Run again,
every step comes from the cache."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from orchestrator import ArtifactStore, run
from schemas.engine.run import RunRecord
from schemas.kd.lm_report import GeneratedSequences, LMEvalReport
from tests.support.lm import TINY, corpus_file, lm_steps, write_pipeline

pytestmark = pytest.mark.ray

SMALL = {**TINY, "layers": 1, "width": 32, "max_positions": 64}


def steps(corpus: Path) -> list[dict]:
    teacher = {**TINY, "max_positions": 64}
    train = {"epochs": 2, "batch_size": 16, "optimizer": {"lr": 0.003}}
    seqkd_inputs = {"teacher": "teacher.model", "sequences": "tokens.sequences"}
    return [
        *lm_steps(corpus)[:3],
        {
            "id": "teacher",
            "component": "train",
            "inputs": {"data": "tokens.sequences"},
            "config": {"model": teacher, **train},
        },
        {
            "id": "seqkd",
            "component": "seqkd",
            "inputs": {**seqkd_inputs, "tokenizer": "tokenizer.tokenizer"},
            "config": {"prompts": 96, "prompt_tokens": 8, "max_new_tokens": 24, "batch_size": 32},
        },
        {
            "id": "student",
            "component": "train",
            "inputs": {"data": "seqkd.sequences"},
            "config": {"model": SMALL, **train},
        },
        {
            "id": "eval",
            "component": "lm_evaluate",
            "inputs": {
                "sequences": "tokens.sequences",
                "tokenizer": "tokenizer.tokenizer",
                "teacher": "teacher.model",
                "models": ["student.model"],
            },
            "config": {"names": ["seqkd"], "speed_budget_s": 0.1, "max_new_tokens": 16},
        },
    ]


def test_a_seqkd_student_trains_on_the_teachers_samples_and_is_evaluated(
    ray_cluster: str, tmp_path: Path
) -> None:
    path = write_pipeline(tmp_path / "seqkd.yaml", steps(corpus_file(tmp_path, count=24)))
    store = tmp_path / "store"

    def once() -> RunRecord:
        record = run(path, storage=str(store), address=ray_cluster)
        assert record.status.value == "succeeded", [s.error for s in record.steps if s.error]
        return record

    record = once()
    generated = GeneratedSequences.model_validate(record.step("seqkd").outputs["sequences"])
    teacher = record.step("teacher").outputs["model"]
    assert generated.teacher_version == teacher["data_version"]
    assert generated.splits["train"].documents == 96 and generated.generated_tokens > 96
    history = record.step("student").outputs["history"]
    assert all(math.isfinite(h["train_loss"]) for h in history)
    report = LMEvalReport.model_validate(record.step("eval").outputs["report"])
    rows = report.metrics
    assert rows["teacher"]["perplexity"] < 300  # better than uniform over the 300 ids
    assert math.isfinite(rows["seqkd"]["perplexity"]) and 0 <= rows["seqkd"]["agreement"] <= 1
    assert rows["seqkd"]["parameters"] < rows["teacher"]["parameters"]
    (comparison,) = report.comparisons  # one student recipe: against the teacher, over tokens
    assert (comparison.a, comparison.b, comparison.paired_by) == ("seqkd", "teacher", "single")
    assert comparison.token_test is not None and comparison.token_test.tokens == report.tokens
    assert {len(c.outputs) for c in report.continuations} == {2}
    assert ArtifactStore(str(store)).read_file(report, "report.md")

    again = once()
    assert {s.status.value for s in again.steps} == {"cached"}
