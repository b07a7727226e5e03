"""Bad input to the language-model steps, refused before anything runs: exit 2 from `kdorch
validate` and `kdorch run`, located in the pipeline file, no traceback, nothing written.

Each case says what happened before the check existed (the steps are new: "before" is what
the libraries underneath would have done without it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from components.text.bpe import train_bpe
from schemas.kd.text import TokenizerConfig
from tests.support.cli import kdorch
from tests.support.lm import TINY, corpus_file, hf_model, lm_steps, saved_folder, write_pipeline
from tests.support.text import documents


def refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], steps: list[dict]) -> str:
    """`kdorch validate` and `kdorch run` of ``steps`` exit 2 without a traceback and write
    nothing; the run's stderr, on one line."""
    path = write_pipeline(tmp_path / "lm.yaml", steps)
    store = tmp_path / "store"
    assert kdorch("validate", str(path)) == 2
    capsys.readouterr()
    result = kdorch("run", str(path), "--executor", "local", "--storage", str(store))
    err = capsys.readouterr().err
    assert result == 2 and "Traceback" not in err, err
    written = [p for p in store.glob("objects/**/*") if p.is_file()]
    assert not written, f"a refused pipeline wrote {written}"
    return " ".join(err.split())


def tokenizer_file(path: Path, vocab: int) -> Path:
    """A byte-level BPE of ``vocab`` ids trained on real text, saved as tokenizer.json."""
    texts = [[text for _, text in documents(40, most=6000)]]
    tokenizer = train_bpe(texts, TokenizerConfig(vocab_size=vocab), 40)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(path))
    return path


def test_a_model_vocabulary_that_is_not_the_tokenizers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before: the teacher built with 512 embeddings, the cache written, and the first student
    # of 300 logits failing in the loss ("shape mismatch"), or worse, ids never seen.
    steps = lm_steps(corpus_file(tmp_path), vocab=300, model={**TINY, "vocab_size": 512})
    err = refused(tmp_path, capsys, steps)
    assert "steps[3] (teacher).config.model.vocab_size" in err
    assert (
        "causal_lm llama 2x64 has a vocabulary of 512 ids but the tokenizer of step "
        "'tokenizer' has at most 300 (a BPE trained with vocab_size 300): teacher, students "
        "and the token sequences must share one tokenizer" in err
    )


def test_a_teacher_of_another_tokenizer_than_the_sequences(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before: the teacher's 280-way distributions cached for sequences of a 300-id tokenizer
    # (ids >= 280: an IndexError deep in the embedding).
    steps = lm_steps(corpus_file(tmp_path))
    for step, vocab in ((steps[1], 300), (None, 280)):
        file = tokenizer_file(tmp_path / f"tok{vocab}" / "tokenizer.json", vocab)
        config = {"source": "file", "path": str(file), "eos_token": "<|endoftext|>"}
        if step is None:
            steps.insert(2, {"id": "other", "component": "tokenizer", "config": config})
            steps[4]["inputs"] = {"tokenizer": "other.tokenizer"}
        else:
            step.update(config=config, inputs={})
    err = refused(tmp_path, capsys, steps)
    assert "steps[5] (cache).inputs.teacher" in err
    assert (
        "the teacher of step 'teacher' (causal_lm llama 2x64) has a vocabulary of 280 ids but "
        "the tokenizer of step 'tokenizer' has 300" in err
    )


def test_k_larger_than_the_vocabulary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Before: torch.topk's "selected index k out of range" in the middle of the run.
    steps = lm_steps(corpus_file(tmp_path), vocab=300, cache={"k": 500})
    err = refused(tmp_path, capsys, steps)
    assert "steps[4] (cache).config.k" in err
    assert (
        "k = 500 ids per token is more than the vocabulary of 300 (the tokenizer of step "
        "'tokenizer'): use k <= 300, or encoding: dense" in err
    )


def test_a_split_to_cache_that_the_sequences_lack(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before: validated (exit 0), then a KeyError from the part-file listing at run time.
    steps = lm_steps(corpus_file(tmp_path), cache={"k": 8, "splits": ["train", "tst"]})
    err = refused(tmp_path, capsys, steps)
    assert "steps[4] (cache).config.splits[1]" in err and "did you mean 'test'?" in err
    assert "the sequences of step 'tokens' have no split 'tst' (splits: train, val, test)" in err


def test_sequences_longer_than_the_teachers_positions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before (gpt2): "index out of range in self" from the position embedding, after the
    # teacher was built and saved.
    model = {**TINY, "family": "gpt2", "kv_heads": None, "max_positions": 64}
    steps = lm_steps(corpus_file(tmp_path), seq_len=128, model=model)
    err = refused(tmp_path, capsys, steps)
    assert "steps[4] (cache).inputs.sequences" in err
    assert (
        "the sequences of step 'tokens' are 128 positions long (seq_len), more than the teacher "
        "of step 'teacher' (causal_lm gpt2 2x64) reads (max positions 64)" in err
    )


def test_a_folder_that_asks_for_remote_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before (transformers' from_pretrained): "requires you to execute the configuration file
    # in that repo", or with trust_remote_code=True the folder's Python runs.
    folder = saved_folder(tmp_path / "remote", hf_model())
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "modeling_evil.py").write_text("import os\nos.system('touch ran')\n")
    steps = lm_steps(corpus_file(tmp_path), model={"path": str(folder)})
    err = refused(tmp_path, capsys, steps)
    assert "steps[3] (teacher).config.model.path" in err
    assert (
        f"{folder}/config.json asks for remote code (auto_map: modeling_evil.py of the folder): "
        "kdorch never runs code that comes with a model (no trust_remote_code)" in err
    )


def test_a_folder_whose_pickled_weights_would_run_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before (torch.load without weights_only): the pickle runs `touch` while it loads.
    import torch

    class Payload:
        def __reduce__(self) -> tuple:
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    folder = saved_folder(tmp_path / "pickled", hf_model())
    (folder / "model.safetensors").unlink()
    torch.save({"model.embed_tokens.weight": Payload()}, folder / "pytorch_model.bin")
    steps = lm_steps(corpus_file(tmp_path), model={"path": str(folder)})
    err = refused(tmp_path, capsys, steps)
    assert "steps[3] (teacher).config.model.path" in err
    assert (
        f"{folder}/pytorch_model.bin is a pickle that would run code or build objects other "
        "than tensors when loaded (it asks for posix.system)" in err
    )
    assert not (tmp_path / "ran").exists()
