"""What the language steps promise and what `kdorch validate` refuses before anything runs.

Promises (`Component.promise`): a `tokenizer` step promises its vocabulary (exactly, for a
file; at most ``vocab_size``, for a trained one) and special ids; `pack_tokens` its ``seq_len``
and its tokenizer's promise; `lm_model` (and any step that writes a causal LM) the model's
vocabulary and positions. Consumers compare them (`check_wiring`), so a teacher whose
vocabulary is not the sequences' tokenizer's, a ``k`` larger than the vocabulary, or sequences
longer than the model reads are located validation errors, not failures deep into a run. What
is unknown passes (a trained tokenizer's exact size, a teacher from a step that promises
nothing); the steps check the artifacts again when they run (`fit_problems`).

The promises and wiring checks are torch-free. `spec_issues` (a ``path`` folder: its config, no
remote code, weights that fit and are data) imports torch only for a folder.
"""

from __future__ import annotations

from typing import Any

from components.lm.specs import LMError, describe, eos_of, positions_of, vocab_of
from components.lm.specs import vocabulary_mismatch as mismatch_message
from components.text.promises import Promised, promised_tokenizer
from orchestrator.component import ConfigIssue, Wiring
from schemas.kd.lm import CausalLMSpec, LanguageModelPromise, SequencesPromise


# -- promises -------------------------------------------------------------------------------
def _folder_config(spec: CausalLMSpec, outside: bool) -> dict[str, Any] | None:
    if spec.path is not None and not outside:
        return None
    try:
        from components.lm.specs import hf_dict

        return hf_dict(spec)
    except (OSError, ValueError):  # check_config names the problem
        return None


def model_promise(spec: CausalLMSpec, wiring: Wiring, port: str = "tokenizer") -> Any:
    """A `LanguageModelPromise` of a step that writes ``spec``'s model for the tokenizer on
    ``port``: its vocabulary (the spec's or its folder's, else the tokenizer's exact one) and
    positions. For any step that writes causal LMs (`lm_model`, a training step)."""
    config = _folder_config(spec, wiring.outside)
    tokenizer = promised_tokenizer(wiring, port)
    vocab = vocab_of(spec, config) if spec.path is None or config else spec.vocab_size
    if vocab is None and tokenizer is not None:
        vocab = tokenizer.promise.vocab_size
    known = spec.path is None or config is not None
    return LanguageModelPromise(
        what=describe(spec),
        vocab_size=vocab,
        max_positions=positions_of(spec, config) if known else None,
        tokenizer=tokenizer.promise if tokenizer else None,
        tokenizer_step=tokenizer.step if tokenizer else None,
    )


# -- checks -----------------------------------------------------------------------------------
def vocab_problem(vocab: int | None, tokenizer: Promised | None, what: str) -> str | None:
    """Why a model of ``vocab`` ids cannot read the promised tokenizer's ids, when certain."""
    if vocab is None or tokenizer is None:
        return None
    exact, most = tokenizer.promise.vocab_size, tokenizer.promise.max_vocab_size
    if exact is not None and vocab != exact:
        return mismatch_message(vocab, exact, what, tokenizer.where())
    if exact is None and most is not None and vocab > most:
        return mismatch_message(vocab, most, what, tokenizer.where(), at_most=True)
    return None


def model_wiring_issues(spec: CausalLMSpec, wiring: Wiring, at: str = "model") -> list[ConfigIssue]:
    """The model's vocabulary (and end-of-sequence id, when its config names one) against the
    tokenizer promised on its `tokenizer` input."""
    tokenizer = promised_tokenizer(wiring)
    if tokenizer is None:
        return []
    config = _folder_config(spec, wiring.outside)
    field = f"{at}.vocab_size" if spec.vocab_size is not None else f"{at}.path"
    problem = vocab_problem(vocab_of(spec, config), tokenizer, describe(spec))
    if problem:
        return [ConfigIssue(problem, field)]
    eos, wanted = eos_of(config), tokenizer.promise.eos_id
    if eos is not None and wanted is not None and tokenizer.promise.vocab_size and eos != wanted:
        return [
            ConfigIssue(
                f"{describe(spec)} ends sequences with id {eos} (eos_token_id of its config) but "
                f"{tokenizer.where()} ends documents with {wanted}: they are not one tokenizer",
                f"{at}.path",
            )
        ]
    return []


def spec_issues(spec: CausalLMSpec, at: str = "model") -> list[ConfigIssue]:
    """What `kdorch validate` finds in a spec alone: for a ``path``, its folder (config.json
    without remote code, an architecture transformers has, weight files that are data and fit
    the network, read without their bytes: the network is built on the meta device); for a
    ``config``, the architecture."""
    if spec.source() == "built":
        return []
    import torch

    from components.lm.folder import open_folder, read_shapes
    from components.lm.models import config_from_dict, fit_problem, network
    from components.models.weights import WeightsError

    try:
        if spec.path is None:
            assert spec.config is not None
            config_from_dict(spec.config, "config")
            return []
        folder = open_folder(spec)
        found = read_shapes(folder)
        with torch.device("meta"):
            net = network(spec, folder.config)
        problem = fit_problem(net, found)
    except LMError as e:
        return [ConfigIssue(str(e), f"{at}.{e.field or 'path'}")]
    except (OSError, ValueError, WeightsError) as e:
        return [ConfigIssue(str(e), f"{at}.path")]
    if problem:
        return [
            ConfigIssue(f"{folder.uri} does not fit its own config.json: {problem}", f"{at}.path")
        ]
    return []


def k_problem(k: int, vocab: int, where: str) -> str:
    return (
        f"k = {k:,} ids per token is more than the vocabulary of {vocab:,} ({where}): use "
        f"k <= {vocab:,}, or encoding: dense"
    )


def positions_problem(seq_len: int, positions: int, sequences: str, teacher: str) -> str:
    return (
        f"{sequences} are {seq_len:,} positions long (seq_len), more than {teacher} reads "
        f"(max positions {positions:,}): pack shorter sequences, or use a model with more "
        "positions"
    )


def _one(wiring: Wiring, port: str, kind: type[Any]) -> tuple[str, Any] | None:
    found = wiring.promised(port, kind)
    return (found[0][0].step_id, found[0][1]) if len(found) == 1 else None


def _known_vocab(
    teacher: tuple[str, LanguageModelPromise] | None, model: str, tokenizer: Promised | None
) -> tuple[int, str] | None:
    """The vocabulary ``k`` must fit, and whose it is: the teacher's, else (at most) the
    sequences' tokenizer's."""
    if teacher is not None and teacher[1].vocab_size:
        return teacher[1].vocab_size, model
    most = tokenizer.most() if tokenizer is not None else None
    return (most, tokenizer.where()) if most and tokenizer is not None else None


def inference_wiring_issues(k: int | None, wiring: Wiring) -> list[ConfigIssue]:
    """A teacher promised on `teacher` against the sequences promised on `sequences`: one
    vocabulary, ``k`` within it, sequences no longer than the teacher reads."""
    teacher = _one(wiring, "teacher", LanguageModelPromise)
    sequences = _one(wiring, "sequences", SequencesPromise)
    tokenizer = None
    if sequences is not None and sequences[1].tokenizer is not None:
        tokenizer = Promised(sequences[1].tokenizer_step or "?", sequences[1].tokenizer)
    model = f"the teacher of step '{teacher[0]}' ({teacher[1].what})" if teacher else ""
    issues = []
    problem = vocab_problem(teacher[1].vocab_size, tokenizer, model) if teacher else None
    if problem:
        issues.append(ConfigIssue(problem, "teacher", under="inputs"))
    known = _known_vocab(teacher, model, tokenizer)
    if k is not None and known is not None and k > known[0]:
        issues.append(ConfigIssue(k_problem(k, *known), "k"))
    positions = teacher[1].max_positions if teacher else None
    if sequences is not None and positions is not None and sequences[1].seq_len > positions:
        where = f"the sequences of step '{sequences[0]}'"
        text = positions_problem(sequences[1].seq_len, positions, where, model)
        issues.append(ConfigIssue(text, "sequences", under="inputs"))
    return issues
