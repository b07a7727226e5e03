"""What `train` and `distill` check when their data is token sequences (torch-free: `kdorch
validate` calls the wiring checks), and the model spec fitted to the sequences.

At validate, from the promises (`components.lm.checks` has the messages): the data's kind
against the model's (a causal LM trains on `pack_tokens` sequences, a classifier on a dataset),
the model's vocabulary against the sequences' tokenizer, its positions against ``seq_len``,
an online teacher's vocabulary and positions likewise, and losses a language model cannot
serve (features). When the step runs (`fit_to_sequences`, `distill_problems`): the same
against the artifacts, and the teacher inputs against the losses
(`components.training.teachers.unserved_losses`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from components.lm.checks import positions_problem, vocab_problem
from components.lm.specs import LMError, check_tokenizer, describe, positions_of, vocab_of
from components.text.promises import Promised
from orchestrator.component import ConfigIssue, Wiring
from schemas.kd.artifacts import ModelCheckpoint
from schemas.kd.components.distill import DistillConfig
from schemas.kd.lm import CausalLMSpec, LanguageModelPromise, LMTokenizer, SequencesPromise
from schemas.kd.promises import DatasetPromise
from schemas.kd.text import TokenSequences
from schemas.kd.token_cache import TokenCache

#: Losses that read features, which a language model's token rows do not carry.
FEATURE_LOSSES = frozenset({"hint", "nd"})
_TOPK = frozenset({"teacher_topk_indices", "teacher_topk_values", "teacher_rest_mass"})
_ALWAYS = frozenset({"student_logits", "labels"})


def data_kind_problem(spec: Any, is_sequences: bool, where: str) -> str | None:
    """Why a model of ``spec``'s kind cannot train on the data (token sequences or a
    dataset) at ``where``."""
    if is_sequences and not isinstance(spec, CausalLMSpec):
        return (
            f"{where} gives token sequences, which a language model reads, but the model is "
            f"a {spec.arch} classifier: use arch: causal_lm, or connect a dataset"
        )
    if not is_sequences and isinstance(spec, CausalLMSpec):
        return (
            f"{where} gives a classifier dataset, but the model is a causal language model "
            "(arch: causal_lm), which trains on token sequences: connect a pack_tokens step's "
            "`sequences`"
        )
    return None


def _sequences(wiring: Wiring) -> tuple[str, SequencesPromise] | None:
    found = wiring.promised("data", SequencesPromise)
    return (found[0][0].step_id, found[0][1]) if len(found) == 1 else None


def _model_issues(
    spec: CausalLMSpec, sequences: tuple[str, SequencesPromise], at: str
) -> list[ConfigIssue]:
    step, promise = sequences
    issues = []
    tokenizer = (
        Promised(promise.tokenizer_step or "?", promise.tokenizer) if promise.tokenizer else None
    )
    problem = vocab_problem(vocab_of(spec), tokenizer, describe(spec))
    if problem:
        issues.append(ConfigIssue(problem, f"{at}.vocab_size"))
    positions = positions_of(spec)
    if positions is not None and promise.seq_len > positions:
        where = f"the sequences of step '{step}'"
        issues.append(
            ConfigIssue(
                positions_problem(promise.seq_len, positions, where, describe(spec)),
                f"{at}.max_positions",
            )
        )
    return issues


def _teacher_issues(wiring: Wiring, sequences: tuple[str, SequencesPromise]) -> list[ConfigIssue]:
    step, promise = sequences
    tokenizer = (
        Promised(promise.tokenizer_step or "?", promise.tokenizer) if promise.tokenizer else None
    )
    issues = []
    for upstream, teacher in wiring.promised("teachers", LanguageModelPromise):
        what = f"the teacher of step '{upstream.step_id}' ({teacher.what})"
        problem = vocab_problem(teacher.vocab_size, tokenizer, what)
        if problem:
            issues.append(ConfigIssue(problem, "teachers", under="inputs"))
        if teacher.max_positions is not None and promise.seq_len > teacher.max_positions:
            text = positions_problem(
                promise.seq_len, teacher.max_positions, f"the sequences of step '{step}'", what
            )
            issues.append(ConfigIssue(text, "teachers", under="inputs"))
    return issues


def lm_wiring_issues(
    spec: Any, wiring: Wiring, at: str, eval_split: str | None = None
) -> list[ConfigIssue]:
    """The model at config field ``at`` against the `data` input's promise (sequences or a
    dataset), and, on sequences, its vocabulary and positions and those of online teachers, and
    the splits training reads (``train`` and ``eval_split``)."""
    sequences = _sequences(wiring)
    dataset = wiring.promised("data", DatasetPromise)
    if sequences is None and not dataset:
        return []
    where = f"`data` (step '{sequences[0] if sequences else dataset[0][0].step_id}')"
    problem = data_kind_problem(spec, sequences is not None, where)
    if problem:
        return [ConfigIssue(problem, f"{at}.arch")]
    if sequences is None:
        return []
    issues = _model_issues(spec, sequences, at) + _teacher_issues(wiring, sequences)
    return issues + _split_issues(sequences, eval_split)


def _split_issues(
    sequences: tuple[str, SequencesPromise], eval_split: str | None
) -> list[ConfigIssue]:
    from components.lm.lm_checks import split_issues

    issues = [
        ConfigIssue(
            f"training reads split 'train', but {issue.message}",
            "data",
            "pack a 'train' split (pack_tokens `splits`, the corpus's `splits`)",
            under="inputs",
        )
        for issue in split_issues(sequences, [("data", "train")])
    ]
    return issues + split_issues(sequences, [("eval_split", eval_split)] if eval_split else [])


def loss_issues(cfg: DistillConfig, wiring: Wiring) -> list[ConfigIssue]:
    """Losses that read features, on token sequences."""
    if _sequences(wiring) is None:
        return []
    return [
        ConfigIssue(
            f"losses[{i}] ({loss.type}) reads features, which a language model's token rows do "
            "not carry: use forward_kl, reverse_kl, jsd, skew_kl, taid or ce",
            f"losses.{i}",
        )
        for i, loss in enumerate(cfg.losses)
        if loss.type in FEATURE_LOSSES
    ]


def model_promise(spec: Any, wiring: Wiring) -> dict[str, Any]:
    """A training step's ``model`` output when it trains a causal LM on promised sequences: a
    `LanguageModelPromise` (vocabulary, positions, tokenizer), for `lm_inference` and students."""
    sequences = _sequences(wiring)
    if not isinstance(spec, CausalLMSpec) or sequences is None or spec.path is not None:
        return {}
    promise = sequences[1]
    vocab = vocab_of(spec)
    if vocab is None and promise.tokenizer is not None:
        vocab = promise.tokenizer.vocab_size
    return {
        "model": LanguageModelPromise(
            what=describe(spec),
            vocab_size=vocab,
            max_positions=positions_of(spec),
            tokenizer=promise.tokenizer,
            tokenizer_step=promise.tokenizer_step,
        )
    }


# -- when the step runs ---------------------------------------------------------------------
def sequences_tokenizer(sequences: TokenSequences) -> LMTokenizer:
    """What a model trained on ``sequences`` records of its tokenizer."""
    return LMTokenizer(
        version=sequences.tokenizer_version,
        vocab_size=sequences.vocab_size,
        eos_id=sequences.eos_id,
        pad_id=sequences.pad_id,
    )


def fit_to_sequences(spec: CausalLMSpec, sequences: TokenSequences) -> CausalLMSpec:
    """``spec`` with ``vocab_size`` and ``tokenizer`` filled from the sequences' tokenizer.

    Raises:
        LMError: another vocabulary or tokenizer, or sequences longer than the positions.
    """
    where = f"the sequences' tokenizer (data version {sequences.tokenizer_version[:12]})"
    record = sequences_tokenizer(sequences)
    check_tokenizer(spec, record, where)
    positions = positions_of(spec)
    if positions is not None and sequences.seq_len > positions:
        raise LMError(
            positions_problem(sequences.seq_len, positions, "the sequences", describe(spec)),
            "max_positions",
        )
    return spec.model_copy(update={"vocab_size": sequences.vocab_size, "tokenizer": record})


def provided_fields(caches: Sequence[TokenCache], online: bool) -> frozenset[str]:
    """The batch fields a token cache (top-k or dense) or online teachers fill."""
    if online:
        return _ALWAYS | {"teacher_logits"}
    if not caches:
        return _ALWAYS
    return _ALWAYS | (_TOPK if caches[0].encoding != "dense" else {"teacher_logits"})


def _teacher_problems(teachers: Sequence[ModelCheckpoint], sequences: TokenSequences) -> list[str]:
    from components.lm.teacher import fit_problems

    return [p for t in teachers for p in fit_problems(t.model, sequences, None)]


def distill_problems(
    cfg: DistillConfig,
    store: Any,
    sequences: TokenSequences,
    caches: Sequence[TokenCache],
    teachers: Sequence[ModelCheckpoint],
) -> list[str]:
    """Why ``cfg`` cannot distil on these inputs (empty: it can): one token cache or online
    teachers of the sequences' tokenizer, losses they can serve, weights that fit."""
    from components.training.teachers import unserved_losses, weight_count_problem

    if caches and teachers:
        return ["connect either `logits` (a token cache) or `teachers` (run online), not both"]
    if len(caches) > 1:
        return [f"{len(caches)} token caches: a language model distils from one (or `teachers`)"]
    problems = [
        f"losses[{i}] ({loss.type}) reads features, which token rows do not carry"
        for i, loss in enumerate(cfg.losses)
        if loss.type in FEATURE_LOSSES
    ]
    for cache in caches:
        if cache.sequences_version != sequences.data_version:
            problems.append(
                f"the token cache at {store.uri(cache.path)} was computed on other sequences "
                f"({cache.sequences_version[:12]}, these are {sequences.data_version[:12]}): "
                "run lm_inference on the sequences the student trains on"
            )
    problems += _teacher_problems(teachers, sequences)
    weights = weight_count_problem(cfg, len(caches) or len(teachers))
    if weights:
        problems.append(weights)
    problems += [why for _, why in unserved_losses(cfg, provided_fields(caches, bool(teachers)))]
    return problems
