"""The `teacher_inference` component: a teacher's logits over a dataset, as a reusable cache."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from components.inference.actor_pool import PoolResources
from orchestrator import Component, StepContext
from schemas.engine.pipeline import Resources
from schemas.kd.artifacts import Dataset, LogitShards
from schemas.kd.components.teacher_inference import (
    TeacherInferenceConfig,
    TeacherInferenceInputs,
    TeacherInferenceOutputs,
)

if TYPE_CHECKING:
    from components.artifacts.logits import ShardWriter
    from components.data.augment import Views
    from orchestrator.component import ConfigIssue, Wiring


class TeacherInference(
    PoolResources,
    Component[TeacherInferenceConfig, TeacherInferenceInputs, TeacherInferenceOutputs],
):
    """Run a teacher over every row; write its outputs as Parquet shards keyed by row_id.

    One actor (the default) runs the teacher in the step's own process, file by file; more
    actors (`num_actors`) run a Ray Data actor pool, on GPUs with `gpus_per_actor`. The step's
    key covers the teacher's and the dataset's data versions and this config, so every later
    run, student and tuning trial that asks for the same teacher outputs reuses the shards (see
    docs/caching.md, "Teacher logit caches"). Rows are computed in eval mode; with `views: N`
    the teacher runs on N augmented views of every image row (each a function of view_seed,
    row_id and the view index), stored side by side in the row's shard row, and the artifact
    records views, augment and view_seed (docs/caching.md, "Augmented views with exact teacher
    targets").
    """

    key = "teacher_inference"
    version = "2"
    Config = TeacherInferenceConfig
    Inputs = TeacherInferenceInputs
    Outputs = TeacherInferenceOutputs
    default_resources = Resources(num_cpus=1)

    def run(self, inputs: TeacherInferenceInputs, ctx: StepContext) -> TeacherInferenceOutputs:
        from components.artifacts.datasets import x_reader
        from components.artifacts.logits import ShardWriter
        from components.inference.predictor import TeacherPredictor
        from orchestrator.execution import metrics as dashboard

        cfg, data, teacher = self.config, inputs.data, inputs.teacher
        splits = cfg.splits or list(data.splits)
        unknown = [s for s in splits if s not in data.splits]
        if unknown:
            raise ValueError(
                f"splits {unknown} are not in the dataset (it has {list(data.splits)})"
            )
        views = self.views(data)  # before anything is written: views need image rows
        if views is not None:
            ctx.log("the teacher sees %s of every row", views.describe())
        started = time.perf_counter()
        path = ctx.output_path("logits")
        writers = {s: ShardWriter(ctx.store, f"{path}/{s}", cfg.rows_per_shard) for s in splits}
        predictor_args: dict[str, Any] = {
            "store": ctx.store,
            "teacher": teacher,
            "feature_shape": data.feature_shape,
            "x_reader": x_reader(data),  # float32 rows, whatever the storage
            "precision": cfg.precision,
            "top_k": cfg.top_k,
            "feature": cfg.feature,
            "use_gpu": cfg.gpus_per_actor > 0,
            "views": views,
        }
        if cfg.runs_in_process():
            predictor = TeacherPredictor(**predictor_args)
            feature_dim = self._here(ctx, predictor, data, splits, writers)
        else:
            feature_dim = self._actor_pool(ctx, predictor_args, data, splits, writers)
        rows = {s: w.close() for s, w in writers.items()}
        dashboard.inference_rows(ctx.step_id, sum(rows.values()) / (time.perf_counter() - started))
        for split, writer in writers.items():
            ctx.log(
                "%s: %d rows of teacher outputs in %d shards (%.1f MB)",
                split,
                rows[split],
                writer.shards,
                writer.bytes / 2**20,
            )
        count, augment, view_seed = cfg.view_spec()
        return TeacherInferenceOutputs(
            logits=LogitShards(
                path=path,
                splits=rows,
                num_classes=int(teacher.model.num_classes or 0),
                dtype=cfg.precision,
                top_k=cfg.top_k,
                feature=cfg.feature,
                feature_dim=feature_dim // max(count, 1) if feature_dim else None,  # per view
                teacher_version=teacher.data_version,
                dataset_version=data.data_version,
                transform=data.transform,
                teacher_domains=list(teacher.trained_domains),
                views=count,
                augment=augment,
                view_seed=view_seed,
            )
        )

    def views(self, data: Dataset) -> Views | None:
        """The augmented views to run the teacher on (None: the clean rows); views need image
        rows [C, H, W]."""
        from components.data.augment import Views
        from components.data.view_checks import image_rows_issue

        cfg = self.config
        if cfg.views == 0:
            return None
        problem = image_rows_issue(cfg.views, data.feature_shape, f"dataset {data.source}")
        if problem is not None:
            raise ValueError(f"{problem}: set views: 0 for this dataset")
        return Views(cfg.views, cfg.augment, cfg.view_seed)

    @classmethod
    def check_wiring(cls, config: TeacherInferenceConfig, wiring: Wiring) -> list[ConfigIssue]:
        """Views need image rows: refused at validate when the dataset promises flat ones."""
        from components.data.view_checks import view_wiring_issues

        return super().check_wiring(config, wiring) + view_wiring_issues(config, wiring)

    def _here(
        self,
        ctx: StepContext,
        predictor: Any,
        data: Dataset,
        splits: list[str],
        writers: dict[str, ShardWriter],
    ) -> int | None:
        """In this process, file by file (bounded memory), batch by batch."""
        import pyarrow as pa
        import torch

        from components.artifacts.datasets import parquet_table, split_files

        torch.set_num_threads(max(1, int(ctx.resources.num_cpus or self.config.cpus_per_actor)))
        feature_dim = None
        for split in splits:
            for name in split_files(ctx.store, data, split):
                table = ctx.store.read_parsed(data, name, parquet_table, arrow_file=True)
                for batch in table.to_batches(max_chunksize=self.config.batch_size):
                    out = predictor(pa.Table.from_batches([batch]))
                    if self.config.feature and feature_dim is None:
                        feature_dim = out.schema.field("feature").type.list_size
                    writers[split].add(out)
        return feature_dim

    def _actor_pool(
        self,
        ctx: StepContext,
        predictor_args: dict[str, Any],
        data: Dataset,
        splits: list[str],
        writers: dict[str, ShardWriter],
    ) -> int | None:
        """A Ray Data actor pool over every split (one pipeline start-up, not one per split);
        each row carries its source file, which routes it to its split's shard writer, in
        dataset order."""
        from components.artifacts.datasets import split_source
        from components.inference.actor_pool import pool_batches
        from components.inference.predictor import TeacherPredictor

        source = split_source(ctx.store, data, splits)
        feature_dim = None
        for split, rows in pool_batches(self.config, source, TeacherPredictor, predictor_args):
            if self.config.feature and feature_dim is None:
                feature_dim = rows.schema.field("feature").type.list_size
            writers[split].add(rows)
        return feature_dim
