"""The validation mode: distil a sample of candidates for real and see whether the score ranks
them the way their accuracies do.

A training-free score is only worth trusting if it orders students like training does, and
whether it does depends on the data, the teacher and the space (at initialisation the semantic
term is close to noise, see `components.search.diswot`). So each sampled candidate is distilled
through `components.training.distillation` — the code a `distill` step runs, in this process
with one worker, no Ray Train start-up — and Kendall tau and Spearman rho are reported for the
score, each of its terms, and the naive predictors parameter count and MACs. A score that does
not beat "bigger is better" is not worth its name on that data.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from components.search.correlation import rank_correlation, scatter_png
from components.search.evolution import Evaluation
from orchestrator import StepContext
from schemas.kd.artifacts import Dataset, LogitShards, ModelCheckpoint, SearchValidation
from schemas.kd.components.distill import DistillConfig
from schemas.kd.components.student_search import ValidationSettings

#: Predictors reported, and how to read each from an evaluation (higher = predicted better).
PREDICTORS = ("score", "semantic", "relation", "parameters", "macs")


@dataclass(frozen=True)
class Distilled:
    """One sampled candidate after its short distillation."""

    evaluation: Evaluation
    accuracy: float
    """Last epoch's accuracy on the dataset's ``val`` split."""
    seconds: float


def predictor(evaluation: Evaluation, name: str) -> float:
    """The value of predictor ``name`` for one candidate; a term is its negated distance."""
    candidate = evaluation.candidate
    if name == "score":
        return evaluation.score
    if name in ("semantic", "relation"):
        return -float(evaluation.terms.get(name, math.nan))
    return float(candidate.parameters if name == "parameters" else candidate.macs)


def distill_config(settings: ValidationSettings, evaluation: Evaluation) -> DistillConfig:
    """The `distill` config of one sampled candidate: the validation budget, its spec."""
    return DistillConfig(
        student=evaluation.candidate.spec,
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        optimizer=settings.optimizer,
        seed=settings.seed,
        losses=list(settings.losses),
    )


def distil_sample(
    ctx: StepContext,
    sample: Sequence[Evaluation],
    settings: ValidationSettings,
    data: Dataset,
    *,
    logits: LogitShards | None,
    teacher: ModelCheckpoint,
) -> list[Distilled]:
    """Distil every sampled candidate (cached logits when given, else the teacher online)."""
    from components.training.distillation import distill_student

    out = []
    for i, evaluation in enumerate(sample):
        started = time.perf_counter()
        key = evaluation.candidate.key
        result = distill_student(
            ctx,
            distill_config(settings, evaluation),
            evaluation.candidate.spec,
            data,
            logits=[logits] if logits is not None else [],
            teachers=[] if logits is not None else [teacher],
            resume="validate-" + hashlib.sha256(key.encode()).hexdigest()[:16],
        )
        accuracy = float(result.metrics["val_accuracy"])
        out.append(Distilled(evaluation, accuracy, time.perf_counter() - started))
        ctx.log("validation %d/%d: %s accuracy %.4f", i + 1, len(sample), key, accuracy)
    return out


def correlations(distilled: Sequence[Distilled]) -> dict[str, dict[str, float | None]]:
    """Per predictor: Kendall tau, Spearman rho, p-values and n; None where undefined (a
    constant or non-finite predictor, e.g. a term the score left out)."""
    accuracies = [d.accuracy for d in distilled]
    out: dict[str, dict[str, float | None]] = {}
    for name in PREDICTORS:
        values = [predictor(d.evaluation, name) for d in distilled]
        fields: dict[str, float | None] = dict.fromkeys(
            ("kendall_tau", "kendall_p", "spearman_rho", "spearman_p"), None
        )
        fields["n"] = float(len(values))
        if len(values) >= 2 and all(math.isfinite(v) for v in values):
            for field, value in rank_correlation(values, accuracies).as_dict().items():
                fields[field] = float(value) if math.isfinite(value) else None
        out[name] = fields
    return out


def write_validation(
    ctx: StepContext, port: str, distilled: Sequence[Distilled], settings: ValidationSettings
) -> SearchValidation:
    """``validation.json`` and a scatter plot per predictor into the step's output ``port``."""
    import json

    path = ctx.output_path(port)
    table = correlations(distilled)
    rows = [
        {
            "key": d.evaluation.candidate.key,
            "spec": d.evaluation.candidate.spec.model_dump(mode="json"),
            "parameters": d.evaluation.candidate.parameters,
            "macs": d.evaluation.candidate.macs,
            "score": d.evaluation.score if math.isfinite(d.evaluation.score) else None,
            "terms": dict(d.evaluation.terms),
            "accuracy": d.accuracy,
        }
        for d in distilled
    ]
    document = {
        "epochs": settings.epochs,
        "losses": [loss.model_dump(mode="json") for loss in settings.losses],
        "accuracy_split": "val",
        "candidates": rows,
        "correlations": table,
    }
    ctx.store.write_bytes(
        f"{path}/validation.json", json.dumps(document, indent=1, sort_keys=True).encode()
    )
    accuracies = [d.accuracy for d in distilled]
    labels = [d.evaluation.candidate.key for d in distilled]
    for name in PREDICTORS:
        values = [predictor(d.evaluation, name) for d in distilled]
        if table[name]["kendall_tau"] is None:
            continue  # nothing to see in a constant predictor
        png = scatter_png(
            values,
            accuracies,
            xlabel=_LABELS[name],
            ylabel=f"accuracy after {settings.epochs} epochs (val)",
            labels=labels if len(labels) <= 12 else None,
        )
        ctx.store.write_bytes(f"{path}/scatter_{name}.png", png)
    return SearchValidation(path=path, sample=len(distilled), correlations=table)


_LABELS = {
    "score": "DisWOT score",
    "semantic": "-M_s (semantic term)",
    "relation": "-M_r (relation term)",
    "parameters": "parameters",
    "macs": "MACs per row",
}
