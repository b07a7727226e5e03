"""What `lm_evaluate` reports about causal language models on packed token sequences, and what
`seqkd` writes: the teacher's generated text, packed as `TokenSequences`.

Types and their own field validation only: the scoring, the statistics and the report are in
`components.lm.evaluation` and `components.lm.lm_report`, the generation in
`components.lm.generation`; docs/language_models.md ("Evaluating", "Sequence-level KD") is the
guide. Perplexities are exp(mean next-token NLL in nats) over the scored target tokens;
differences are of log-perplexity (mean NLL, nats per token), so ``a - b < 0`` means a is
better.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.base import Model
from schemas.engine.artifacts import ArtifactRef
from schemas.kd.comparisons import Interval
from schemas.kd.text import TokenSequences


class LMRecipe(Model):
    """The models sharing a label (a recipe, e.g. the seeds of one student config)."""

    models: list[str] = Field(description="The models' keys in the report (`kd[0]`, ...).")
    seeds: list[int | None] = Field(description="Each model's training seed (null: unknown).")
    perplexity: float = Field(description="Mean perplexity over the models.")
    interval: Interval | None = Field(
        None, description="Student's t 95% interval of the mean perplexity; none for one model."
    )


class LMPair(Model):
    """Two models, one of each recipe, trained with the same seed (or matched as said)."""

    seed: int | None
    a: str
    b: str
    difference: float = Field(description="a's log-perplexity minus b's (nats per token).")


class TokenTest(Model):
    """One model per recipe: the per-token NLL differences (a minus b) over the same targets."""

    tokens: int
    rows: int
    mean: float = Field(description="Mean per-token NLL difference (nats).")
    t_interval: Interval = Field(description="Over tokens (treats tokens as independent).")
    row_interval: Interval = Field(
        description="Bootstrap over rows (sequences resampled whole: tokens of a row are not "
        "independent), of the ratio sum of differences / tokens."
    )


class LMComparison(Model):
    """Recipe ``a`` against recipe ``b`` by log-perplexity, paired over models."""

    a: str
    b: str
    paired_by: Literal["seed", "position", "single", "none"]
    pairs: list[LMPair]
    unpaired: list[str] = Field(default_factory=list)
    mean_difference: float | None = Field(
        None, description="Mean over pairs of a's log-perplexity minus b's (nats per token)."
    )
    ratio: float | None = Field(
        None, description="exp(mean_difference): a's perplexity over b's, geometric mean."
    )
    bootstrap: Interval | None = Field(None, description="Over pairs; none below two pairs.")
    t_interval: Interval | None = Field(None, description="Paired t; none below two pairs.")
    token_test: TokenTest | None = Field(None, description="One pair only: over tokens.")
    verdict: str = Field(
        description="better (a's perplexity is lower), worse, or not distinguishable with n = "
        "<pairs>; every interval must exclude 0 to decide."
    )
    note: str = ""


class Continuation(Model):
    """One prompt and what each model wrote after it (greedy)."""

    prompt: str = Field(description="The prompt's text (decoded).")
    source: str = Field(description="Where the prompt came from ('config', 'test row 12 @ 40').")
    prompt_tokens: int
    outputs: dict[str, str] = Field(description="Model key -> its continuation, decoded.")
    new_tokens: dict[str, int] = Field(description="Model key -> tokens it generated.")


class LMEvalReport(ArtifactRef):
    """``report.md``, ``report.json`` and ``perplexity.png`` of causal LMs on a split of token
    sequences. ``metrics`` per model: perplexity, nll, top1, agreement and kl (with a
    teacher), parameters, tokens_per_s_b<batch> (forward passes)."""

    split: str
    metrics: dict[str, dict[str, float]]
    tokens: int = Field(description="Target tokens scored per model.")
    rows: int = Field(description="Sequences (rows) scored.")
    recipes: dict[str, LMRecipe] = Field(default_factory=dict)
    comparisons: list[LMComparison] = Field(default_factory=list)
    continuations: list[Continuation] = Field(default_factory=list)


class Sampling(Model):
    """How the teacher picks each next token."""

    method: Literal["greedy", "sample"]
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None


class GeneratedSequences(TokenSequences):
    """Token sequences whose ``prompt_split`` holds what a teacher wrote: prompts cut from the
    source sequences' same split, each followed by the teacher's continuation, packed by
    `pack_tokens`' rules (each sample is a document: its ids, then the end id; rows of
    ``seq_len + 1``; starts in ``doc_starts``). The prompts are in the text, not masked. The
    source's other splits are copied as they are (real text to validate and test on). A
    `TokenSequences` wherever one is read (``train`` trains on it as on any)."""

    teacher_version: str = Field(description="The teacher checkpoint's data version.")
    source_version: str = Field(description="The sequences the prompts were cut from.")
    prompt_split: str
    prompts: int
    prompt_tokens: int
    max_new_tokens: int
    sampling: Sampling
    seed: int
    generated_tokens: int = Field(description="Tokens the teacher wrote (prompts excluded).")
    ended: int = Field(description="Samples the teacher ended (end id) before max_new_tokens.")
