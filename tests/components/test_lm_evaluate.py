"""`lm_evaluate` on real text and tiny real language models: corpus -> tokenizer ->
pack_tokens -> a teacher and students (lm_model, seeded) -> lm_evaluate, run locally; and the
scoring library on models trained here for a few steps. Known answers: perplexity is exp of the
mean NLL computed by hand on the same rows; a model agrees with itself everywhere with KL 0;
recipes of identical models differ by exactly 0; a trained model beats an untrained one."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from components.artifacts.checkpoints import load_model
from components.artifacts.datasets import fixed_list_to_numpy
from components.lm.evaluation import batches, score_language_models
from components.lm.generation import continue_prompts
from components.lm.lm_stats import compare, planned_pairs, token_pairs
from components.text.artifacts import read_sequences, read_tokenizer
from components.text.packing import target_mask
from orchestrator import ArtifactStore, run
from schemas.kd.artifacts import ModelCheckpoint
from schemas.kd.lm_report import LMEvalReport, Sampling
from schemas.kd.text import TextTokenizer, TokenSequences
from tests.support.cli import kdorch
from tests.support.lm import TINY, corpus_file, lm_steps, write_pipeline

SMALL = {**TINY, "width": 32, "max_positions": 64}
NEW = 12


def evaluate_step(models: list[str], **config: Any) -> dict[str, Any]:
    """An lm_evaluate step "eval" of the data steps' sequences, the teacher and ``models``."""
    inputs = {"sequences": "tokens.sequences", "tokenizer": "tokenizer.tokenizer"}
    inputs |= {"teacher": "teacher.model"}
    return {
        "id": "eval",
        "component": "lm_evaluate",
        "inputs": {**inputs, "models": models},
        "config": config,
    }


def evaluation_steps(corpus: Path) -> list[dict[str, Any]]:
    """The data steps, a teacher, two recipes of students built alike (seeds 1 and 2 each, so
    each pair is one network twice) and lm_evaluate."""
    steps = lm_steps(corpus)[:4]
    for name in ("a", "b"):
        steps.append(
            {
                "id": name,
                "component": "lm_model",
                "matrix": {"seed": [1, 2]},
                "inputs": {"tokenizer": "tokenizer.tokenizer"},
                "config": {"model": SMALL, "seed": "${seed}"},
            }
        )
    config = {"names": ["a", "a", "b", "b"], "compare": [["b", "a"]], "speed_budget_s": 0.1}
    config |= {"prompt_tokens": 6, "prompt_count": 2, "max_new_tokens": NEW}
    steps.append(evaluate_step(["a[*].model", "b[*].model"], **config, bootstrap_resamples=1000))
    return steps


@pytest.fixture(scope="module")
def lm(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("lm_eval")
    path = write_pipeline(folder / "lm.yaml", evaluation_steps(corpus_file(folder)))
    record = run(path, storage=str(folder / "store"), executor="local")
    assert record.status.value == "succeeded", [s.error for s in record.steps if s.error]
    outputs = {s.step_id: s.outputs for s in record.steps}
    return {
        "folder": folder,
        "path": path,
        "store": ArtifactStore(str(folder / "store")),
        "record": record,
        "report": LMEvalReport.model_validate(outputs["eval"]["report"]),
        "sequences": TokenSequences.model_validate(outputs["tokens"]["sequences"]),
        "tokenizer": TextTokenizer.model_validate(outputs["tokenizer"]["tokenizer"]),
        "teacher": ModelCheckpoint.model_validate(outputs["teacher"]["model"]),
    }


def by_hand(model: torch.nn.Module, tokens: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """(mean NLL, top-1) over the masked targets, all rows in one pass."""
    ids = torch.from_numpy(tokens.astype(np.int64))
    with torch.no_grad():
        logp = torch.log_softmax(model(ids[:, :-1]).double(), dim=-1)
    nll = -logp.gather(-1, ids[:, 1:, None]).squeeze(-1).numpy()
    top = (logp.argmax(-1) == ids[:, 1:]).numpy()
    return float(nll[mask].mean()), float(top[mask].mean())


def test_perplexity_is_exp_of_the_mean_nll_over_the_splits_target_tokens(
    lm: dict[str, Any],
) -> None:
    rows = read_sequences(lm["store"], lm["sequences"], "test")
    tokens = fixed_list_to_numpy(rows.column("tokens"))
    mask = target_mask(rows.column("doc_starts"), rows.column("length").to_numpy(), 33)
    assert not mask.all()  # document starts and the padded last row are left out
    model, _ = load_model(lm["store"], lm["teacher"])
    nll, top1 = by_hand(model.eval(), tokens, mask)
    row = lm["report"].metrics["teacher"]
    assert lm["report"].tokens == int(mask.sum()) and lm["report"].rows == len(tokens)
    assert row["nll"] == pytest.approx(nll, abs=1e-5)
    assert row["perplexity"] == pytest.approx(math.exp(nll), rel=1e-5)
    assert row["top1"] == pytest.approx(top1, abs=1e-9)


def test_identical_recipes_differ_by_zero_and_are_not_distinguishable(lm: dict[str, Any]) -> None:
    report = lm["report"]
    assert report.metrics["a[0]"]["nll"] == report.metrics["b[0]"]["nll"]  # seed 1 twice
    (c,) = report.comparisons
    assert (c.a, c.b, c.paired_by, len(c.pairs)) == ("b", "a", "seed", 2)
    assert [p.seed for p in c.pairs] == [1, 2] and c.mean_difference == 0.0
    assert c.bootstrap is not None and c.t_interval is not None
    assert c.bootstrap.low <= 0 <= c.bootstrap.high and c.verdict.startswith("not disting")
    recipe = report.recipes["a"]
    assert recipe.seeds == [1, 2] and recipe.interval is not None
    assert recipe.interval.low < recipe.perplexity < recipe.interval.high
    for key in ("a[0]", "a[1]", "b[0]", "b[1]"):
        row = report.metrics[key]
        assert 0 <= row["agreement"] <= 1 and row["kl"] > 0
        assert row["tokens_per_s_b1"] > 0 and row["tokens_per_s_b8"] > 0
        assert row["parameters"] < report.metrics["teacher"]["parameters"]


def test_continuations_are_decoded_text_of_the_asked_length(lm: dict[str, Any]) -> None:
    report = lm["report"]
    assert len(report.continuations) == 2
    decoder = read_tokenizer(lm["store"], lm["tokenizer"])
    for c in report.continuations:
        assert c.prompt_tokens == 6 and c.source.startswith("test row ")
        assert decoder.encode(c.prompt, add_special_tokens=False).ids  # real text
        assert set(c.outputs) == {"teacher", "a[0]", "b[0]"}  # the first of each recipe
        assert set(c.new_tokens.values()) == {NEW}
        assert all(isinstance(text, str) and text for text in c.outputs.values())


def test_the_report_files_and_kdorch_show(
    lm: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    store, report = lm["store"], lm["report"]
    for name in ("report.md", "report.json", "perplexity.png"):
        assert store.read_file(report, name)
    text = store.read_file(report, "report.md").decode()
    assert "| `teacher` |" in text and "## Continuations" in text and "b vs a" in text
    document = json.loads(store.read_file(report, "report.json"))
    assert document["metrics"]["teacher"]["perplexity"] == report.metrics["teacher"]["perplexity"]
    assert (
        kdorch("show", lm["record"].run_id, "eval", "--storage", str(lm["folder"] / "store")) == 0
    )
    out = capsys.readouterr().out
    assert "report.md" in out and "report.teacher.perplexity" in out


# -- the library, on models trained here ------------------------------------------------------
def trained(sequences: TokenSequences, store: ArtifactStore, tokenizer: TextTokenizer) -> Any:
    """A tiny llama trained for 60 steps of next-token CE on the train split, and the same
    network untrained."""
    from components.lm.models import language_model

    untrained = language_model(_spec(), tokenizer, seed=3).eval()
    model = language_model(_spec(), tokenizer, seed=3)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rows = list(batches(store, sequences, "train", 16))
    for step in range(60):
        batch = rows[step % len(rows)]
        logits = model(batch.inputs)
        loss = torch.nn.functional.cross_entropy(logits[batch.mask], batch.targets[batch.mask])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval(), untrained


def _spec() -> Any:
    from schemas.kd.lm import CausalLMSpec

    return CausalLMSpec.model_validate({**TINY, "max_positions": 64})


def test_a_trained_model_beats_the_same_network_untrained_over_tokens(lm: dict[str, Any]) -> None:
    store, sequences = lm["store"], lm["sequences"]
    model, untrained = trained(sequences, store, lm["tokenizer"])
    models = {"trained": model, "untrained": untrained, "again": model}
    members = {k: [k] for k in models}
    planned = planned_pairs([("trained", "untrained"), ("again", "trained")], members, {})
    scored = score_language_models(
        store,
        sequences,
        models,
        split="test",
        batch_size=8,
        teacher="trained",
        token_pairs=token_pairs(planned),
    )
    trained_row, untrained_row = scored.results["trained"], scored.results["untrained"]
    assert trained_row["perplexity"] < 0.5 * untrained_row["perplexity"]
    assert scored.results["again"]["agreement"] == 1.0  # a model against itself
    assert abs(scored.results["again"]["kl"]) < 1e-6
    better, same = (compare(a, b, p, scored, resamples=1000, seed=0) for a, b, p in planned)
    assert better.verdict == "better" and better.token_test is not None
    assert better.token_test.row_interval.high < 0 and better.token_test.t_interval.high < 0
    assert better.mean_difference == pytest.approx(
        trained_row["nll"] - untrained_row["nll"], abs=1e-9
    )
    assert same.mean_difference == 0.0 and same.verdict == "not distinguishable with one model each"


def test_greedy_continuations_are_transformers_generate(lm: dict[str, Any]) -> None:
    model, _ = load_model(lm["store"], lm["teacher"])
    net = model.eval().net
    prompts = torch.tensor([[5, 17, 42, 99, 7], [3, 3, 250, 12, 80]])
    ours, _ = continue_prompts(net, prompts, 10, Sampling(method="greedy"), stop_id=0)
    theirs = net.generate(
        prompts, max_new_tokens=10, do_sample=False, eos_token_id=0, pad_token_id=1
    )
    for row, new in zip(theirs[:, 5:].tolist(), ours, strict=True):
        assert row[: len(new)] == new and (len(new) == 10 or row[len(new)] == 0)


def test_text_prompts_and_no_teacher(lm: dict[str, Any]) -> None:
    # The same store: only the new step runs. Without a teacher there is no agreement or KL;
    # the prompts are the texts given, continued by every model (`continuations_of: all`).
    texts = ["def main(", "import os\n"]
    config = {"prompts": texts, "continuations_of": "all", "max_new_tokens": 5}
    step = evaluate_step(["a[*].model"], **config, speed_batch_sizes=[2])
    step["inputs"] = {k: v for k, v in step["inputs"].items() if k != "teacher"}
    steps = [*evaluation_steps(lm["folder"] / "docs.parquet")[:-1], {**step, "id": "eval2"}]
    path = write_pipeline(lm["folder"] / "text_prompts.yaml", steps)
    record = run(path, storage=str(lm["folder"] / "store"), executor="local")
    assert record.status.value == "succeeded", [s.error for s in record.steps if s.error]
    assert {s.step_id for s in record.steps if s.status.value == "ran"} == {"eval2"}
    report = LMEvalReport.model_validate(record.step("eval2").outputs["report"])
    assert set(report.metrics) == {"student_0", "student_1"}  # default names
    assert all("agreement" not in r and "tokens_per_s_b2" in r for r in report.metrics.values())
    assert [c.prompt for c in report.continuations] == texts
    assert [c.source for c in report.continuations] == ["prompts[0]", "prompts[1]"]
    for c in report.continuations:
        assert set(c.outputs) == {"student_0", "student_1"} and set(c.new_tokens.values()) == {5}
    (comparison,) = report.comparisons  # student_1 against student_0, one model each
    assert (comparison.a, comparison.b, comparison.paired_by) == (
        "student_1",
        "student_0",
        "single",
    )
