"""A whole student search, as the `student_search` step runs it: score, search, rank, compare.

`choose_student` scores candidates of the space against the teacher on one seeded batch of
training rows (in Ray task batches, `components.search.parallel`), searches (`evolution`),
writes the ranking, picks the baselines a search must beat (`ranking`) and, with
``validation``, distils a sample to measure the score's rank correlation (`validation`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from components.artifacts.checkpoints import load_model
from components.artifacts.datasets import read_split
from components.models.zoo import KDModel
from components.search.candidates import Candidate, CandidateSpace
from components.search.diswot import DiswotScorer, derive_seed
from components.search.evolution import SearchResult, run_search
from components.search.parallel import ParallelScorer
from components.search.ranking import (
    largest_candidate,
    random_candidate,
    validation_sample,
    write_ranking,
)
from components.search.validation import distil_sample, write_validation
from orchestrator import StepContext
from schemas.kd.artifacts import (
    Dataset,
    LogitShards,
    ModelCheckpoint,
    SearchRanking,
    SearchValidation,
)
from schemas.kd.components.student_search import StudentSearchConfig
from schemas.kd.models import AnyModelSpec


@dataclass(frozen=True)
class SearchOutcome:
    """What a search hands on: its ranking, the chosen candidate, the baselines, figures."""

    ranking: SearchRanking
    best: Candidate
    largest: Candidate
    """Most parameters under the caps (ties: most MACs), over the whole space."""
    random: Candidate
    """A random candidate under the caps (seeded by ``search.seed``)."""
    metrics: dict[str, float]
    """Finite figures only: counts, timings, sizes, rank correlations."""
    validation: SearchValidation | None


def choose_student(
    ctx: StepContext,
    config: StudentSearchConfig,
    data: Dataset,
    teacher: ModelCheckpoint,
    logits: LogitShards | None = None,
) -> SearchOutcome:
    """Search ``config.space`` for the student whose DisWOT score against ``teacher`` is highest.

    Raises:
        SearchSpaceError: no candidate fits the caps for this dataset.
        ValueError: the teacher's classes differ from the dataset's, or too few train rows.
    """
    space = CandidateSpace(
        config.space, input_shape=tuple(data.feature_shape), num_classes=data.num_classes
    )
    started = time.perf_counter()
    score_fn = ParallelScorer(
        search_scorer(ctx, config, data, teacher),
        candidates_per_task=config.parallel.candidates_per_task,
        cpus_per_task=config.parallel.cpus_per_task,
    )
    result = run_search(space, score_fn, config.search)
    seconds = time.perf_counter() - started
    best = result.best
    ctx.log(
        "scored %d candidates (%d evaluations) in %.2f s (%s); best %s, score %.5f",
        len(result.unique()),
        len(result.history),
        seconds,
        f"{score_fn.tasks} Ray tasks" if score_fn.use_ray else "in-process",
        best.candidate.key,
        best.score,
    )
    ranking = write_ranking(ctx, result)
    largest = largest_candidate(space)
    randomly = random_candidate(space, config.search.seed)
    metrics = {
        "evaluations": float(len(result.history)),
        "candidates": float(len(result.unique())),
        "score_seconds": seconds,
        "ray_tasks": float(score_fn.tasks),
        "best_score": best.score,
        "best_parameters": float(best.candidate.parameters),
        "best_macs": float(best.candidate.macs),
        "largest_parameters": float(largest.parameters),
        "random_parameters": float(randomly.parameters),
    }
    validation = None
    if config.validation is not None:
        started = time.perf_counter()
        validation = validate_sample(ctx, config, result, data, teacher, logits)
        metrics.update(_validation_metrics(validation, time.perf_counter() - started))
    return SearchOutcome(
        ranking=ranking,
        best=best.candidate,
        largest=largest,
        random=randomly,
        metrics={k: v for k, v in metrics.items() if math.isfinite(v)},
        validation=validation,
    )


def _validation_metrics(validation: SearchValidation, seconds: float) -> dict[str, float]:
    """Time spent distilling, and each predictor's rank correlations with accuracy."""
    metrics = {
        "validation_seconds": seconds,
        "validation_seconds_per_candidate": seconds / validation.sample,
    }
    for name, fields in validation.correlations.items():
        for field in ("kendall_tau", "spearman_rho"):
            value = fields[field]
            if value is not None:
                metrics[f"{name}_{field}"] = value
    return metrics


def search_scorer(
    ctx: StepContext, config: StudentSearchConfig, data: Dataset, teacher: ModelCheckpoint
) -> DiswotScorer:
    """The scorer on a seeded batch of training rows (the teacher probed once)."""
    teacher_spec = teacher.model
    if teacher_spec.num_classes not in (None, data.num_classes):
        raise ValueError(
            f"the teacher has {teacher_spec.num_classes} classes but the dataset "
            f"{data.num_classes}: connect the teacher trained on this data"
        )
    split = read_split(ctx.store, data, "train")
    count = min(config.search.batch_size, len(split))
    if count < 2:
        raise ValueError(
            f"the train split has {len(split)} rows; the score needs a batch of at least 2"
        )
    rows = np.random.default_rng(derive_seed(config.search.seed, "batch")).choice(
        len(split), size=count, replace=False
    )
    rows.sort()
    scored_teacher: KDModel | AnyModelSpec = teacher_spec
    if config.score.teacher_weights == "trained":
        scored_teacher, _ = load_model(ctx.store, teacher)
    return DiswotScorer(
        scored_teacher,
        torch.from_numpy(split.x[rows]),
        torch.from_numpy(split.y[rows]),
        init=config.score.init,
        teacher_weights=config.score.teacher_weights,
        width_mismatch=config.score.width_mismatch,
        terms=config.score.terms,
        correction=config.score.correction,
        seed=config.search.seed,
    )


def validate_sample(
    ctx: StepContext,
    config: StudentSearchConfig,
    result: SearchResult,
    data: Dataset,
    teacher: ModelCheckpoint,
    logits: LogitShards | None,
) -> SearchValidation:
    """Distil a sample of the evaluated candidates; rank correlations and plots."""
    settings = config.validation
    assert settings is not None
    sample = validation_sample(result, settings.sample, settings.pick, config.search.seed)
    distilled = distil_sample(ctx, sample, settings, data, logits=logits, teacher=teacher)
    return write_validation(ctx, "validation", distilled, settings)
