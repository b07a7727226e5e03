"""What `lm_evaluate` and `seqkd` refuse before anything runs (from the promises of the steps
before them) and again when they run (from the artifacts): models of another tokenizer,
sequences or prompts longer than a model reads, names that do not match the models. Torch-free:
`kdorch validate` imports it.
"""

from __future__ import annotations

from typing import Any

from components.lm.checks import positions_problem, vocab_problem
from components.lm.specs import describe, vocabulary_mismatch
from components.text.promises import Promised
from orchestrator.component import ConfigIssue, Wiring
from orchestrator.errors import did_you_mean
from schemas.kd.lm import CausalLMSpec, LanguageModelPromise, SequencesPromise
from schemas.kd.text import TextTokenizer, TokenSequences


def length_problems(
    positions: int | None, prompt: int | None, new: int, what: str, at: tuple[str, str]
) -> list[tuple[str, str]]:
    """(message, field) for prompts (``prompt`` tokens, None: unknown) or prompts and their
    continuations longer than ``what`` reads; ``at`` names the two lengths' fields."""
    if positions is None:
        return []
    if prompt is None:
        prompt = 1  # a prompt has a token at least
        if new >= positions:
            return [
                (
                    f"{new:,} new tokens after a prompt exceed the {positions:,} positions "
                    f"{what} reads: use {at[1]} < {positions:,}",
                    at[1],
                )
            ]
        return []
    if prompt >= positions:
        return [
            (
                f"prompts of {prompt:,} tokens leave no position for {what} (max positions "
                f"{positions:,}) to write in: use {at[0]} < {positions:,}",
                at[0],
            )
        ]
    if prompt + new > positions:
        return [
            (
                f"{prompt:,} prompt tokens + {new:,} new tokens exceed the {positions:,} "
                f"positions {what} reads: use {at[1]} <= {positions - prompt:,}",
                at[1],
            )
        ]
    return []


def lm_fit_problems(
    spec: Any, sequences: TokenSequences, tokenizer: TextTokenizer | None, what: str
) -> list[str]:
    """Why ``spec``'s model cannot read ``sequences`` (another vocabulary or tokenizer), or why
    ``tokenizer`` is not the sequences' (empty: nothing)."""
    problems = []
    where = f"the sequences' tokenizer (data version {sequences.tokenizer_version[:12]})"
    if not isinstance(spec, CausalLMSpec):
        problems.append(f"{what} is a {spec.arch} model (a classifier), not a causal_lm")
    elif (spec.vocab_size or 0) != sequences.vocab_size:
        text = vocabulary_mismatch(spec.vocab_size or 0, sequences.vocab_size, what, where)
        problems.append(text)
    elif spec.tokenizer is not None and spec.tokenizer.version != sequences.tokenizer_version:
        problems.append(
            f"{what} was made for the tokenizer {spec.tokenizer.version[:12]}, the sequences "
            f"were packed with {where}: use one tokenizer for both"
        )
    if tokenizer is not None:
        problems += tokenizer_problems(tokenizer, sequences)
    return problems


def tokenizer_problems(tokenizer: TextTokenizer, sequences: TokenSequences) -> list[str]:
    """The tokenizer input is not the one the sequences were packed with."""
    if tokenizer.data_version == sequences.tokenizer_version:
        return []
    return [
        f"the tokenizer input ({tokenizer.data_version[:12]}) is not the sequences' tokenizer "
        f"(data version {sequences.tokenizer_version[:12]}): connect the tokenizer the "
        "sequences were packed with"
    ]


def check_split(sequences: TokenSequences, split: str) -> None:
    """A split the sequences have, with rows (a `ValueError` naming the splits otherwise)."""
    if split not in sequences.splits:
        raise ValueError(
            f"the sequences have no split '{split}' (they have {', '.join(sequences.splits)})"
        )
    if sequences.splits[split].sequences == 0:
        raise ValueError(
            f"split '{split}' of the sequences is empty (0 rows): pack a corpus whose split "
            "has documents"
        )


def model_name(spec: Any, role: str) -> str:
    return f"{role} ({describe(spec)})" if isinstance(spec, CausalLMSpec) else role


# -- from the promises ------------------------------------------------------------------------
def _sequences(wiring: Wiring) -> tuple[str, SequencesPromise] | None:
    found = wiring.promised("sequences", SequencesPromise)
    return (found[0][0].step_id, found[0][1]) if len(found) == 1 else None


def _tokenizer(sequences: tuple[str, SequencesPromise] | None) -> Promised | None:
    if sequences is None or sequences[1].tokenizer is None:
        return None
    return Promised(sequences[1].tokenizer_step or "?", sequences[1].tokenizer)


def split_issues(
    sequences: tuple[str, SequencesPromise] | None, wanted: list[tuple[str, str]]
) -> list[ConfigIssue]:
    """Each ``(field, split)`` in ``wanted`` against the splits the sequences will have (when
    their step knows them before the run)."""
    if sequences is None or sequences[1].splits is None:
        return []
    step, known = sequences[0], sequences[1].splits
    return [
        ConfigIssue(
            f"the sequences of step '{step}' have no split '{split}' (splits: {', '.join(known)})",
            field,
            did_you_mean(split, known),
        )
        for field, split in wanted
        if split not in known
    ]


def generation_wiring_issues(
    wiring: Wiring, port: str, prompt: int | None, new: int, *, check_length: bool = False
) -> list[ConfigIssue]:
    """Each model promised on ``port`` against the sequences promised on ``sequences``: one
    vocabulary; prompts (``prompt`` tokens) and ``new`` tokens within its positions; with
    ``check_length``, the sequences' rows too (a model that scores them reads them whole)."""
    sequences = _sequences(wiring)
    tokenizer = _tokenizer(sequences)
    issues = []
    for upstream, promise in wiring.promised(port, LanguageModelPromise):
        what = f"the model of step '{upstream.step_id}' ({promise.what})"
        problem = vocab_problem(promise.vocab_size, tokenizer, what)
        if problem:
            issues.append(ConfigIssue(problem, port, under="inputs"))
            continue
        positions = promise.max_positions
        longer = sequences is not None and sequences[1].seq_len > (positions or 1 << 62)
        if check_length and sequences is not None and positions is not None and longer:
            where = f"the sequences of step '{sequences[0]}'"
            text = positions_problem(sequences[1].seq_len, positions, where, what)
            issues.append(ConfigIssue(text, port, under="inputs"))
        at = ("prompt_tokens", "max_new_tokens")
        issues += [ConfigIssue(m, f) for m, f in length_problems(positions, prompt, new, what, at)]
    return _distinct(issues)


def _distinct(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    return list(dict.fromkeys(issues))


def names_issues(names: list[str] | None, wiring: Wiring, teacher: bool) -> list[ConfigIssue]:
    """`names` against the models wired (when their count is known before the run)."""
    if names is None:
        return []
    count = wiring.count("models")
    issues = []
    if count is not None and count != len(names):
        issues.append(
            ConfigIssue(
                f"{len(names)} names for {count} models: give one name per model, in input "
                "order (repeat a name for seeds of one recipe)",
                "names",
            )
        )
    if teacher and "teacher" in names:
        issues.append(ConfigIssue("the name 'teacher' is taken by the `teacher` input", "names"))
    return issues


def evaluate_wiring_issues(config: Any, wiring: Wiring) -> list[ConfigIssue]:
    """`lm_evaluate`'s config against its wiring: `names` and `compare` against the models,
    every model (students and teacher) against the sequences and the prompts' lengths."""
    from components.evaluation.pairing import unknown_labels

    teacher = wiring.connected("teacher")
    issues = names_issues(config.names, wiring, teacher)
    if config.names is not None and config.compare is not None:
        labels = list(dict.fromkeys(config.names)) + (["teacher"] if teacher else [])
        issues += [
            ConfigIssue(message, f"compare.{i}")
            for i, message in unknown_labels(config.compare, labels)
        ]
    continues = bool(config.prompts or config.prompt_count)
    prompt = None if config.prompts or not continues else config.prompt_tokens
    new = config.max_new_tokens if continues else 0
    for port in ("teacher", "models"):
        issues += generation_wiring_issues(wiring, port, prompt, new, check_length=True)
    return issues + split_issues(_sequences(wiring), [("split", config.split)])


def listed_split_issues(field: str, splits: list[str] | None, wiring: Wiring) -> list[ConfigIssue]:
    """A config's list of splits (``field``) against those of the sequences on `sequences`."""
    wanted = [(f"{field}.{i}", name) for i, name in enumerate(splits or [])]
    return split_issues(_sequences(wiring), wanted)


def seqkd_wiring_issues(config: Any, wiring: Wiring) -> list[ConfigIssue]:
    """`seqkd`'s teacher against the sequences and prompt lengths; its splits against theirs."""
    wanted = [("split", config.split)]
    wanted += [(f"copy_splits.{i}", name) for i, name in enumerate(config.copy_splits or [])]
    issues = generation_wiring_issues(
        wiring, "teacher", config.prompt_tokens, config.max_new_tokens
    )
    return issues + split_issues(_sequences(wiring), wanted)
