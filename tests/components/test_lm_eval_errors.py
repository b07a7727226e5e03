"""Bad input to `lm_evaluate` and `seqkd`: refused before anything runs (exit 2 from `kdorch
validate` and `kdorch run`, located in the pipeline file, no traceback, nothing written), or,
where only the artifacts tell (a split the sequences lack), by the step before it writes.

"Before" in each case is what the libraries underneath would have done without the check (the
steps are new)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.components.test_lm_errors import refused
from tests.components.test_lm_evaluate import evaluate_step
from tests.support.cli import kdorch
from tests.support.lm import TINY, corpus_file, lm_steps, write_pipeline

#: The data steps and a teacher of 64 positions (lm_steps' default) over rows of 32.
SEQKD_INPUTS = {
    "teacher": "teacher.model",
    "sequences": "tokens.sequences",
    "tokenizer": "tokenizer.tokenizer",
}


def seqkd(**config: Any) -> dict[str, Any]:
    return {"id": "seqkd", "component": "seqkd", "inputs": SEQKD_INPUTS, "config": config}


def student(step_id: str, tokenizer: str = "tokenizer", **knobs: Any) -> dict[str, Any]:
    return {
        "id": step_id,
        "component": "lm_model",
        "inputs": {"tokenizer": f"{tokenizer}.tokenizer"},
        "config": {"model": {**TINY, "width": 32, "max_positions": 64, **knobs}},
    }


def data(tmp_path: Path) -> list[dict[str, Any]]:
    return lm_steps(corpus_file(tmp_path))[:4]


def test_a_student_of_another_vocabulary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before: the student scored ids of another tokenizer (its embedding has 400 rows, so ids
    # of the 300-id tokenizer index the wrong tokens): a perplexity that means nothing.
    steps = data(tmp_path)
    other = {**steps[1], "id": "other", "config": {"vocab_size": 400}}
    steps += [other, student("small", "other", vocab_size=400), evaluate_step(["small.model"])]
    err = refused(tmp_path, capsys, steps)
    assert "steps[6] (eval).inputs.models" in err
    assert (
        "the model of step 'small' (causal_lm llama 2x32) has a vocabulary of 400 ids but the "
        "tokenizer of step 'tokenizer' has at most 300" in err
    )


def test_names_that_do_not_match_the_models(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before: nothing (a new step); evaluate says so only when the step runs, after the work
    # before it.
    steps = [*data(tmp_path), student("small"), evaluate_step(["small.model"], names=["a", "b"])]
    err = refused(tmp_path, capsys, steps)
    assert "steps[5] (eval).config.names" in err
    assert "2 names for 1 models: give one name per model, in input order" in err


TEACHER = "the model of step 'teacher' (causal_lm llama 2x64)"
#: (config, the field named, the message). Before: transformers' position embedding (gpt2)
#: raises an IndexError deep in the generation loop; llama's rotary positions extrapolate
#: silently past what the model was built for.
TOO_LONG = [
    (
        {"prompt_tokens": 64, "max_new_tokens": 4},
        "prompt_tokens",
        f"prompts of 64 tokens leave no position for {TEACHER} (max positions 64) to write "
        "in: use prompt_tokens < 64",
    ),
    (
        {"prompt_tokens": 8, "max_new_tokens": 60},
        "max_new_tokens",
        f"8 prompt tokens + 60 new tokens exceed the 64 positions {TEACHER} reads: use "
        "max_new_tokens <= 56",
    ),
]


@pytest.mark.parametrize("component", ["lm_evaluate", "seqkd"])
@pytest.mark.parametrize(("config", "field", "message"), TOO_LONG, ids=["prompt", "new"])
def test_prompts_or_continuations_past_the_models_positions(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    component: str,
    config: dict[str, int],
    field: str,
    message: str,
) -> None:
    step = (
        evaluate_step(["teacher.model"], **config)
        if component == "lm_evaluate"
        else seqkd(**config)
    )
    err = refused(tmp_path, capsys, [*data(tmp_path), step])
    assert f"config.{field}" in err and message in err


def test_no_continuations_no_prompt_length_to_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    step = evaluate_step(["teacher.model"], prompt_count=0, prompt_tokens=64, max_new_tokens=64)
    path = write_pipeline(tmp_path / "lm.yaml", [*data(tmp_path), step])
    assert kdorch("validate", str(path)) == 0, capsys.readouterr().err


@pytest.mark.parametrize("component", ["lm_evaluate", "seqkd"])
def test_a_split_the_sequences_lack(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], component: str
) -> None:
    # Before: a KeyError from the part-file listing ('holdout') after the models were loaded;
    # then a refusal by the step at run time (exit 1). Now `pack_tokens` promises its splits
    # (its own, or the corpus step's), so validate refuses, naming them.
    config = {"split": "tset", "prompt_tokens": 4, "max_new_tokens": 4}
    step = (
        evaluate_step(["teacher.model"], **config)
        if component == "lm_evaluate"
        else seqkd(**config)
    )
    err = refused(tmp_path, capsys, [*data(tmp_path), step])
    assert ".config.split " in err and "did you mean 'test'?" in err
    assert "the sequences of step 'tokens' have no split 'tset' (splits: train, val, test)" in err


def test_seqkd_copy_splits_and_lm_eval_split_the_sequences_lack(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before: both validated (exit 0) and failed at run time.
    step = seqkd(prompt_tokens=4, max_new_tokens=4, copy_splits=["val", "vall"])
    err = refused(tmp_path, capsys, [*data(tmp_path), step])
    assert "(seqkd).config.copy_splits[1]" in err and "did you mean 'val'?" in err
    assert "the sequences of step 'tokens' have no split 'vall'" in err
    steps = data(tmp_path)
    student_step = {
        "id": "small",
        "component": "train",
        "inputs": {"data": "tokens.sequences"},
        "config": {"model": TINY, "epochs": 1, "eval_split": "dev"},
    }
    err = refused(tmp_path, capsys, [*steps, student_step])
    assert "(small).config.eval_split" in err
    assert "the sequences of step 'tokens' have no split 'dev'" in err
