"""The `student_search` component: pick a student architecture for a teacher without training
(DisWOT), and hand its spec to `distill`."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from orchestrator import Component, StepContext
from schemas.engine.pipeline import Resources
from schemas.kd.artifacts import SearchRanking, SearchValidation
from schemas.kd.components.student_search import (
    StudentSearchConfig,
    StudentSearchInputs,
    StudentSearchOutputs,
)
from schemas.kd.models import ModelSpecValue

if TYPE_CHECKING:
    from components.models.zoo import KDModel
    from components.search.diswot import DiswotScorer
    from components.search.evolution import SearchResult
    from schemas.kd.models import AnyModelSpec


class StudentSearch(Component[StudentSearchConfig, StudentSearchInputs, StudentSearchOutputs]):
    """Search a space of zoo students under parameter/MAC caps for the one whose DisWOT score
    against the teacher is highest, with no training (regularised evolution or random search).

    Candidates are scored in batches as Ray tasks (in this process without Ray), every one on
    the same seeded batch of training rows with the same seeded weights, so a search is
    repeatable. Outputs: the ranking (Parquet), the chosen `student` spec (connect it to
    `distill`'s `student` input), two baselines under the same caps (`largest`, `random`), and
    with `validation` the distilled accuracy of a sample of candidates and the rank correlation
    of score, terms, parameters and MACs with it.
    """

    key = "student_search"
    version = "1"
    Config = StudentSearchConfig
    Inputs = StudentSearchInputs
    Outputs = StudentSearchOutputs
    default_resources = Resources(num_cpus=1)
    deterministic = False  # its metrics hold timings; the artifacts and specs are repeatable

    @classmethod
    def resource_demand(cls, config: StudentSearchConfig) -> dict[str, float]:
        return {"CPU": config.parallel.cpus_per_task}

    def run(self, inputs: StudentSearchInputs, ctx: StepContext) -> StudentSearchOutputs:
        from components.search.candidates import CandidateSpace
        from components.search.evolution import run_search
        from components.search.parallel import ParallelScorer
        from components.search.ranking import largest_candidate, random_candidate

        cfg, data = self.config, inputs.data
        space = CandidateSpace(
            cfg.space, input_shape=tuple(data.feature_shape), num_classes=data.num_classes
        )
        started = time.perf_counter()
        scorer = self.scorer(inputs, ctx)
        score_fn = ParallelScorer(
            scorer,
            candidates_per_task=cfg.parallel.candidates_per_task,
            cpus_per_task=cfg.parallel.cpus_per_task,
        )
        result = run_search(space, score_fn, cfg.search)
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
        ranking = self.write_ranking(ctx, result)
        largest = largest_candidate(space)
        randomly = random_candidate(space, cfg.search.seed)
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
        if cfg.validation is not None:
            started = time.perf_counter()
            validation = self.validate(inputs, ctx, result)
            metrics["validation_seconds"] = time.perf_counter() - started
            metrics["validation_seconds_per_candidate"] = (
                metrics["validation_seconds"] / validation.sample
            )
            for name, fields in validation.correlations.items():
                for field in ("kendall_tau", "spearman_rho"):
                    value = fields[field]
                    if value is not None:
                        metrics[f"{name}_{field}"] = value
        return StudentSearchOutputs(
            ranking=ranking,
            student=ModelSpecValue(best.candidate.spec),
            largest=ModelSpecValue(largest.spec),
            random=ModelSpecValue(randomly.spec),
            metrics={k: v for k, v in metrics.items() if math.isfinite(v)},
            validation=validation,
        )

    def scorer(self, inputs: StudentSearchInputs, ctx: StepContext) -> DiswotScorer:
        """The scorer on a seeded batch of training rows (the teacher probed once)."""
        import numpy as np
        import torch

        from components.artifacts.datasets import read_split
        from components.search.diswot import DiswotScorer, derive_seed

        cfg, data, checkpoint = self.config, inputs.data, inputs.teacher
        teacher_spec = checkpoint.model
        if teacher_spec.num_classes not in (None, data.num_classes):
            raise ValueError(
                f"the teacher has {teacher_spec.num_classes} classes but the dataset "
                f"{data.num_classes}: connect the teacher trained on this data"
            )
        split = read_split(ctx.store, data, "train")
        count = min(cfg.search.batch_size, len(split))
        if count < 2:
            raise ValueError(
                f"the train split has {len(split)} rows; the score needs a batch of at least 2"
            )
        rows = np.random.default_rng(derive_seed(cfg.search.seed, "batch")).choice(
            len(split), size=count, replace=False
        )
        rows.sort()
        teacher: KDModel | AnyModelSpec = teacher_spec
        if cfg.score.teacher_weights == "trained":
            from components.artifacts.checkpoints import load_model

            teacher, _ = load_model(ctx.store, checkpoint)
        return DiswotScorer(
            teacher,
            torch.from_numpy(split.x[rows]),
            torch.from_numpy(split.y[rows]),
            init=cfg.score.init,
            teacher_weights=cfg.score.teacher_weights,
            width_mismatch=cfg.score.width_mismatch,
            terms=cfg.score.terms,
            seed=cfg.search.seed,
        )

    def write_ranking(self, ctx: StepContext, result: SearchResult) -> SearchRanking:
        """``ranking.parquet`` and ``history.json`` into the output ``ranking``."""
        import json

        from components.artifacts.datasets import parquet_bytes
        from components.search.ranking import history_document, ranking_table

        path = ctx.output_path("ranking")
        table = ranking_table(result)
        ctx.store.write_bytes(f"{path}/ranking.parquet", parquet_bytes(table))
        ctx.store.write_bytes(
            f"{path}/history.json", json.dumps(history_document(result), indent=1).encode()
        )
        return SearchRanking(
            path=path,
            candidates=table.num_rows,
            evaluations=len(result.history),
            best=result.best.candidate.key,
        )

    def validate(
        self, inputs: StudentSearchInputs, ctx: StepContext, result: SearchResult
    ) -> SearchValidation:
        """Distil a sample of the evaluated candidates; rank correlations and plots."""
        from components.search.ranking import validation_sample
        from components.search.validation import distil_sample, write_validation

        settings = self.config.validation
        assert settings is not None
        sample = validation_sample(result, settings.sample, settings.pick, self.config.search.seed)
        distilled = distil_sample(
            ctx, sample, settings, inputs.data, logits=inputs.logits, teacher=inputs.teacher
        )
        return write_validation(ctx, "validation", distilled, settings)
