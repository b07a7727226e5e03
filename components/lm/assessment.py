"""The `lm_evaluate` step's work (`assess`): check every input before any work, score the
models on the split (`components.lm.evaluation`), time them, let them continue prompts
(`components.lm.generation`, greedy), compare the recipes (`components.lm.lm_stats`), and
write the report (`components.lm.lm_report`).

Models are labelled as `evaluate` labels them: ``names`` (a recipe is the models sharing a
name; ``<name>[i]`` tells them apart), default ``student_<i>``; the teacher is ``teacher``.
Every model is loaded at once (the scoring pass streams the rows through all of them).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from components.lm.evaluation import count_parameters, sample_rows, score_language_models, speed
from components.lm.lm_checks import (
    check_split,
    length_problems,
    lm_fit_problems,
    model_name,
    tokenizer_problems,
)
from components.lm.specs import positions_of
from orchestrator import StepContext
from schemas.kd.artifacts import ModelCheckpoint
from schemas.kd.components.lm_evaluate import LMEvaluateConfig
from schemas.kd.lm import CausalLMSpec
from schemas.kd.lm_report import Continuation, LMEvalReport, Sampling
from schemas.kd.text import TextTokenizer, TokenSequences


@dataclass(frozen=True)
class Entry:
    """A model to score: its recipe label, its key in the report, its checkpoint."""

    label: str
    key: str
    checkpoint: ModelCheckpoint


def entries_of(
    cfg: LMEvaluateConfig, models: list[ModelCheckpoint], teacher: ModelCheckpoint | None
) -> list[Entry]:
    """The teacher first, then the students in input order, labelled (see the module doc).

    Raises:
        ValueError: ``names`` of another length than ``models``, or naming 'teacher' beside a
            teacher input.
    """
    names = cfg.names or [f"student_{i}" for i in range(len(models))]
    if len(names) != len(models):
        raise ValueError(
            f"names: {len(names)} names for {len(models)} models; give one name per model, in "
            "input order (repeat a name for seeds of one recipe)"
        )
    if teacher is not None and "teacher" in names:
        raise ValueError("names: the name 'teacher' is taken by the `teacher` input")
    labelled = ([("teacher", teacher)] if teacher is not None else []) + list(
        zip(names, models, strict=True)
    )
    counts: dict[str, int] = defaultdict(int)
    for label, _ in labelled:
        counts[label] += 1
    seen: dict[str, int] = defaultdict(int)
    out = []
    for label, checkpoint in labelled:
        key = label if counts[label] == 1 else f"{label}[{seen[label]}]"
        seen[label] += 1
        out.append(Entry(label, key, checkpoint))
    return out


def fit_problems(
    cfg: LMEvaluateConfig, entries: list[Entry], sequences: TokenSequences, tok: TextTokenizer
) -> list[str]:
    """Why a model cannot be scored on ``sequences`` or continue the prompts (empty: all can)."""
    problems = tokenizer_problems(tok, sequences)
    for entry in entries:
        spec = entry.checkpoint.model
        what = model_name(spec, f"model '{entry.key}'")
        found = lm_fit_problems(spec, sequences, None, what)
        if not found and isinstance(spec, CausalLMSpec):
            positions = positions_of(spec, spec.config)
            if positions is not None and sequences.seq_len > positions:
                found.append(
                    f"{what} reads at most {positions:,} positions, the sequences are "
                    f"{sequences.seq_len:,} long: score it on shorter sequences"
                )
            prompt = None if cfg.prompts else cfg.prompt_tokens
            if cfg.prompts or cfg.prompt_count:
                at = ("prompt_tokens", "max_new_tokens")
                lengths = length_problems(positions, prompt, cfg.max_new_tokens, what, at)
                found += [f"{field}: {message}" for message, field in lengths]
        problems += found
    return problems


def prompt_ids(
    ctx: StepContext, cfg: LMEvaluateConfig, sequences: TokenSequences, tok: TextTokenizer
) -> tuple[list[list[int]], list[str]]:
    """The prompts' ids and where each came from: ``prompts`` encoded, or ``prompt_count`` cut
    from the split.

    Raises:
        ValueError: a prompt that encodes to no token, or too few places to cut prompts.
    """
    from components.lm.generation import cut_prompts
    from components.text.artifacts import read_tokenizer
    from components.text.packing import encode

    if cfg.prompts:
        ids = encode(read_tokenizer(ctx.store, tok), list(cfg.prompts))
        empty = [i for i, x in enumerate(ids) if not x]
        if empty:
            raise ValueError(f"prompts[{empty[0]}] encodes to no token: give it some text")
        return ids, [f"prompts[{i}]" for i in range(len(ids))]
    if not cfg.prompt_count:
        return [], []
    cut = cut_prompts(
        ctx.store,
        sequences,
        cfg.split,
        count=cfg.prompt_count,
        length=cfg.prompt_tokens,
        seed=cfg.prompt_seed,
    )
    return cut.ids.tolist(), [f"{cfg.split} {cut.where(i)}" for i in range(len(cut.ids))]


def prompt_problems(cfg: LMEvaluateConfig, entries: list[Entry], ids: list[list[int]]) -> list[str]:
    """Text prompts (whose length the tokenizer decides) too long for a model."""
    problems = []
    for entry in entries:
        spec = entry.checkpoint.model
        if not isinstance(spec, CausalLMSpec) or not cfg.prompts:
            continue
        what = model_name(spec, f"model '{entry.key}'")
        for i, prompt in enumerate(ids):
            at = (f"prompts[{i}]", "max_new_tokens")
            positions = positions_of(spec, spec.config)
            lengths = length_problems(positions, len(prompt), cfg.max_new_tokens, what, at)
            problems += [f"{field}: {message}" for message, field in lengths]
    return problems


def continuations(
    ctx: StepContext,
    cfg: LMEvaluateConfig,
    tok: TextTokenizer,
    entries: list[Entry],
    loaded: Mapping[str, torch.nn.Module],
    prompts: tuple[list[list[int]], list[str]],
) -> list[Continuation]:
    """Each prompt continued greedily by the models (the first of each recipe, or all), for
    exactly ``max_new_tokens`` tokens (an end id does not stop them; it shows as its token)."""
    from components.lm.generation import continue_prompts
    from components.text.artifacts import read_tokenizer

    decoder = read_tokenizer(ctx.store, tok)
    chosen, labels = [], set()
    for entry in entries:
        if cfg.continuations_of == "all" or entry.label not in labels:
            chosen.append(entry.key)
            labels.add(entry.label)
    greedy = Sampling(method="greedy")
    out = []
    for ids, source in zip(*prompts, strict=True):
        outputs, counts = {}, {}
        for key in chosen:
            net = loaded[key].net
            prompt = torch.tensor([ids], dtype=torch.long)
            new, _ = continue_prompts(net, prompt, cfg.max_new_tokens, greedy)
            outputs[key] = decoder.decode(new[0], skip_special_tokens=False)
            counts[key] = len(new[0])
        text = decoder.decode(ids, skip_special_tokens=False)
        out.append(
            Continuation(
                prompt=text,
                source=source,
                prompt_tokens=len(ids),
                outputs=outputs,
                new_tokens=counts,
            )
        )
    return out


def speeds(
    ctx: StepContext,
    cfg: LMEvaluateConfig,
    sequences: TokenSequences,
    loaded: Mapping[str, torch.nn.Module],
) -> dict[str, dict[str, float]]:
    """Tokens/s of every model at each of ``speed_batch_sizes`` over the split's first rows."""
    rows = sample_rows(ctx.store, sequences, cfg.split, max(cfg.speed_batch_sizes))
    out: dict[str, dict[str, float]] = {}
    for key, model in loaded.items():
        out[key] = {
            f"tokens_per_s_b{b}": speed(
                model, rows, b, budget_s=cfg.speed_budget_s, threads=cfg.speed_threads
            )
            for b in cfg.speed_batch_sizes
        }
    return out


def assess(
    ctx: StepContext,
    cfg: LMEvaluateConfig,
    sequences: TokenSequences,
    tok: TextTokenizer,
    models: list[ModelCheckpoint],
    teacher: ModelCheckpoint | None,
) -> LMEvalReport:
    """Check, score, time, continue, compare, report (see the module docstring); nothing is
    written when an input does not fit (a `ValueError` naming every problem)."""
    from components.artifacts.checkpoints import load_model
    from components.evaluation.pairing import check_labels, training_seed
    from components.lm.lm_report import write_report
    from components.lm.lm_stats import compare, default_pairs, planned_pairs, token_pairs

    entries = entries_of(cfg, models, teacher)
    check_split(sequences, cfg.split)
    problems = fit_problems(cfg, entries, sequences, tok)
    if problems:
        raise ValueError("; ".join(problems))
    prompts = prompt_ids(ctx, cfg, sequences, tok)
    problems = prompt_problems(cfg, entries, prompts[0])
    if problems:
        raise ValueError("; ".join(problems))
    members: dict[str, list[str]] = defaultdict(list)
    for entry in entries:
        members[entry.label].append(entry.key)
    seeds = {e.key: training_seed(ctx.store, e.checkpoint) for e in entries}
    pairs = cfg.compare if cfg.compare is not None else default_pairs(list(members))
    check_labels(pairs, list(members))
    planned = planned_pairs(pairs, members, seeds)
    loaded = {e.key: load_model(ctx.store, e.checkpoint)[0].eval() for e in entries}
    torch.set_num_threads(max(1, int(ctx.resources.num_cpus or 1)))
    options = cfg.model_dump(include={"split", "batch_size", "across_documents", "max_rows"})
    scored = score_language_models(
        ctx.store,
        sequences,
        loaded,
        teacher="teacher" if teacher is not None else None,
        token_pairs=token_pairs(planned),
        **options,
    )
    timed = speeds(ctx, cfg, sequences, loaded)
    for key, row in scored.results.items():
        row["parameters"] = float(count_parameters(loaded[key]))
        row.update(timed[key])
        ctx.log("%s: perplexity %.3f, top-1 %.4f", key, row["perplexity"], row["top1"])
    written = continuations(ctx, cfg, tok, entries, loaded, prompts)
    resamples, seed = cfg.bootstrap_resamples, cfg.bootstrap_seed
    comparisons = [compare(a, b, p, scored, resamples=resamples, seed=seed) for a, b, p in planned]
    return write_report(ctx, cfg, scored, dict(members), seeds, comparisons, written)
