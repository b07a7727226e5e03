"""`seqkd` on real text with a tiny real teacher: corpus -> tokenizer -> pack_tokens ->
lm_model -> seqkd (sampled, seeds 0 and 1; greedy), run locally. The samples are packed by
pack_tokens' rules with their prompts in them, the other splits copied; a seed gives the same
prompts and draws, another seed others."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from components.artifacts.checkpoints import load_model
from components.artifacts.datasets import fixed_list_to_numpy
from components.lm.generation import batch_generator, continue_prompts, cut_prompts
from components.text.artifacts import read_sequences
from components.text.packing import segment_ids
from orchestrator import ArtifactStore, run
from schemas.kd.artifacts import ModelCheckpoint
from schemas.kd.lm_report import GeneratedSequences, Sampling
from schemas.kd.text import TokenSequences
from tests.support.lm import corpus_file, lm_steps, write_pipeline

PROMPTS, PROMPT, NEW = 24, 8, 20
SAMPLE = {"sampling": "sample", "temperature": 1.0, "top_k": 40, "top_p": 0.95}


def seqkd_step(step_id: str, **config: Any) -> dict[str, Any]:
    return {
        "id": step_id,
        "component": "seqkd",
        "inputs": {
            "teacher": "teacher.model",
            "sequences": "tokens.sequences",
            "tokenizer": "tokenizer.tokenizer",
        },
        "config": {
            "prompts": PROMPTS,
            "prompt_tokens": PROMPT,
            "max_new_tokens": NEW,
            "batch_size": 10,
            **config,
        },
    }


@pytest.fixture(scope="module")
def lm(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("seqkd")
    steps = lm_steps(corpus_file(folder))[:4]
    steps += [
        {**seqkd_step("sampled", **SAMPLE, seed="${seed}"), "matrix": {"seed": [0, 1]}},
        seqkd_step("greedy"),
    ]
    path = write_pipeline(folder / "lm.yaml", steps)
    record = run(path, storage=str(folder / "store"), executor="local")
    assert record.status.value == "succeeded", [s.error for s in record.steps if s.error]
    out = {s.step_id: s.outputs for s in record.steps}
    return {
        "store": ArtifactStore(str(folder / "store")),
        "sequences": TokenSequences.model_validate(out["tokens"]["sequences"]),
        "teacher": ModelCheckpoint.model_validate(out["teacher"]["model"]),
        **{
            k: GeneratedSequences.model_validate(out[k]["sequences"])
            for k in ("sampled[0]", "sampled[1]", "greedy")
        },
    }


def samples(store: ArtifactStore, generated: GeneratedSequences) -> list[np.ndarray]:
    """The packed samples back, one array of ids each (documents of the train split)."""
    rows = read_sequences(store, generated, "train")
    tokens = fixed_list_to_numpy(rows.column("tokens"))
    stream = np.concatenate([tokens[0], *(t[1:] for t in tokens[1:])])
    stream = stream[: generated.splits["train"].tokens]
    ends = np.flatnonzero(stream == generated.eos_id)
    return np.split(stream, ends + 1)[:-1]


def test_the_teachers_samples_are_packed_with_their_prompts(lm: dict[str, Any]) -> None:
    store, source, greedy = lm["store"], lm["sequences"], lm["greedy"]
    assert greedy.prompts == PROMPTS and greedy.prompt_split == "train"
    assert greedy.teacher_version == lm["teacher"].data_version
    assert greedy.source_version == source.data_version
    assert greedy.seq_len == source.seq_len and greedy.tokenizer_version == source.tokenizer_version
    found = samples(store, greedy)
    assert len(found) == PROMPTS == greedy.splits["train"].documents
    prompts = cut_prompts(store, source, "train", count=PROMPTS, length=PROMPT, seed=0)
    for sample, prompt in zip(found, prompts.ids, strict=True):
        assert sample[:PROMPT].tolist() == prompt.tolist()  # the prompt, then the teacher's
        assert PROMPT < len(sample) <= PROMPT + NEW + 1 and sample[-1] == greedy.eos_id
    new = sum(len(s) - PROMPT - 1 for s in found)
    assert new == greedy.generated_tokens
    assert greedy.splits["train"].tokens == PROMPTS * (PROMPT + 1) + new
    # the other splits are the source's, byte for byte
    for split in ("val", "test"):
        assert greedy.splits[split] == source.splits[split]
        assert read_sequences(store, greedy, split).equals(read_sequences(store, source, split))
    assert b"# Samples of the teacher" in store.read_file(greedy, "samples.md")


def test_prompts_lie_within_one_document(lm: dict[str, Any]) -> None:
    store, source = lm["store"], lm["sequences"]
    prompts = cut_prompts(store, source, "train", count=50, length=PROMPT, seed=4)
    rows = read_sequences(store, source, "train")
    tokens = fixed_list_to_numpy(rows.column("tokens"))
    width = source.seq_len + 1
    segments = segment_ids(rows.column("doc_starts"), rows.column("length").to_numpy(), width)
    for ids, row, start in zip(prompts.ids, prompts.rows, prompts.starts, strict=True):
        assert tokens[row, start : start + PROMPT].tolist() == ids.tolist()
        assert len(set(segments[row, start : start + PROMPT].tolist())) == 1
        assert source.eos_id not in ids.tolist() and segments[row, start] >= 0
    assert len({(r, s) for r, s in zip(prompts.rows, prompts.starts, strict=True)}) == 50


def test_a_seed_gives_the_same_samples_and_another_seed_others(lm: dict[str, Any]) -> None:
    store, source = lm["store"], lm["sequences"]
    first, second = lm["sampled[0]"], lm["sampled[1]"]
    assert first.data_version != second.data_version
    assert first.sampling.top_k == 40 and first.sampling.method == "sample"
    a = cut_prompts(store, source, "train", count=PROMPTS, length=PROMPT, seed=0)
    b = cut_prompts(store, source, "train", count=PROMPTS, length=PROMPT, seed=0)
    c = cut_prompts(store, source, "train", count=PROMPTS, length=PROMPT, seed=1)
    assert np.array_equal(a.ids, b.ids) and not np.array_equal(a.ids, c.ids)
    model, _ = load_model(store, lm["teacher"])
    net = model.eval().net
    sampling = Sampling(method="sample", top_k=40, top_p=0.95)
    prompts = torch.from_numpy(a.ids[:10])

    def draw(seed: int) -> list[list[int]]:
        return continue_prompts(net, prompts, NEW, sampling, generator=batch_generator(seed, 0))[0]

    assert draw(0) == draw(0) and draw(0) != draw(1)
    # what the step packed for seed 0 is what these draws give for its first batch
    packed = samples(store, first)[:10]
    for sample, new in zip(packed, draw(0), strict=True):
        cut = new.index(source.eos_id) if source.eos_id in new else len(new)
        assert sample[PROMPT:-1].tolist() == new[:cut]


def test_top_k_1_sampling_is_greedy(lm: dict[str, Any]) -> None:
    model, _ = load_model(lm["store"], lm["teacher"])
    prompts = torch.tensor([[5, 17, 42, 99], [3, 3, 250, 12]])
    one = Sampling(method="sample", top_k=1, temperature=0.7)
    greedy = Sampling(method="greedy")
    net = model.eval().net
    drawn = continue_prompts(net, prompts, 8, one, generator=batch_generator(0, 0))
    assert drawn == continue_prompts(net, prompts, 8, greedy)
