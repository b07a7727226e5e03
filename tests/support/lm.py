"""Language models for the tests: tiny causal LMs built from configs (a few layers, width 64),
their save_pretrained folders (what a user brings), tokenizer files trained on real text, and
the corpus -> tokenizer -> pack_tokens -> lm_model -> lm_inference pipeline as YAML steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.support.text import documents, write_parquet

#: A tiny llama: the same knobs the tests' teachers are built from.
TINY = {"arch": "causal_lm", "layers": 2, "width": 64, "heads": 4, "kv_heads": 2}
SPLITS = {"train": 0.8, "val": 0.1, "test": 0.1}


def corpus_file(folder: Path, count: int = 40, most: int = 6000) -> Path:
    """``count`` standard library files (at most ``most`` characters each) as Parquet."""
    return write_parquet(folder / "docs.parquet", documents(count, most=most))


def lm_steps(
    corpus: Path,
    *,
    vocab: int = 300,
    seq_len: int = 32,
    model: dict[str, Any] | None = None,
    cache: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """corpus -> tokenizer (a BPE of ``vocab``) -> pack_tokens -> lm_model (``model``, default
    `TINY`) -> lm_inference (``cache``), as a pipeline's steps."""
    model = {**TINY, "max_positions": 64} if model is None else model
    return [
        {"id": "corpus", "component": "corpus", "config": {"uri": str(corpus), "splits": SPLITS}},
        {
            "id": "tokenizer",
            "component": "tokenizer",
            "inputs": {"corpus": "corpus.corpus"},
            "config": {"vocab_size": vocab},
        },
        {
            "id": "tokens",
            "component": "pack_tokens",
            "inputs": {"corpus": "corpus.corpus", "tokenizer": "tokenizer.tokenizer"},
            "config": {"seq_len": seq_len},
        },
        {
            "id": "teacher",
            "component": "lm_model",
            "inputs": {"tokenizer": "tokenizer.tokenizer"},
            "config": {"model": model},
        },
        {
            "id": "cache",
            "component": "lm_inference",
            "inputs": {"teacher": "teacher.model", "sequences": "tokens.sequences"},
            "config": cache if cache is not None else {"k": 8},
        },
    ]


def write_pipeline(path: Path, steps: list[dict[str, Any]], name: str = "lm") -> Path:
    path.write_text(yaml.safe_dump({"name": name, "steps": steps}, sort_keys=False))
    return path


def hf_model(vocab: int = 300, family: str = "llama", seed: int = 0, **knobs: Any) -> Any:
    """A transformers model built from a config (random weights, seeded), in eval mode."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    if family == "gpt2":
        gpt2 = GPT2Config(vocab_size=vocab, n_embd=64, n_layer=2, n_head=4, n_positions=64, **knobs)
        return GPT2LMHeadModel(gpt2).eval()
    llama = LlamaConfig(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        eos_token_id=0,
        pad_token_id=1,
        **knobs,
    )
    return LlamaForCausalLM(llama).eval()


def saved_folder(folder: Path, model: Any, *, pickle: bool = False, **options: Any) -> Path:
    """``model.save_pretrained(folder, **options)``: what a user's checkpoint folder holds;
    with ``pickle``, its weights as ``pytorch_model.bin`` instead (what older transformers
    wrote: a pickle of the state dict)."""
    model.save_pretrained(str(folder), **options)
    if pickle:
        import torch

        (folder / "model.safetensors").unlink()
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder
