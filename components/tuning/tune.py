"""The `tune` component: a Ray Tune sweep over a distill config, on the shared logit cache."""

from __future__ import annotations

import json
from typing import Any

from orchestrator import Component, StepContext
from schemas.engine.pipeline import Resources
from schemas.kd.components.distill import DistillInputs
from schemas.kd.components.tune import TuneConfig, TuneInputs, TuneOutputs, TuneResults


class Tune(Component[TuneConfig, TuneInputs, TuneOutputs]):
    """Search distill's config (fusion ratios, temperatures, teacher weights, ...) with Ray Tune.

    The step reads the dataset and the cached teacher outputs once and puts them into the object
    store; every trial maps them from there (no shard read, no teacher forward pass in a trial).
    A one-worker trial trains in its own process; a multi-worker trial drives a TorchTrainer.
    ASHA stops weak trials on per-epoch validation accuracy; a failed trial does not fail the
    sweep; an interrupted sweep resumes its finished trials when the step runs again. Outputs:
    the best trial's student (a normal checkpoint), its config and ``--set`` lines, a Parquet
    table of every trial and PNG plots.
    """

    key = "tune"
    version = "1"
    Config = TuneConfig
    Inputs = TuneInputs
    Outputs = TuneOutputs
    #: The step's own task only drives Tune (and reads the data once): the trials reserve CPUs.
    default_resources = Resources(num_cpus=0)
    deterministic = False

    @classmethod
    def resource_demand(cls, config: TuneConfig) -> dict[str, float]:
        """One trial must fit: its own process plus, for multi-worker trials, its workers."""
        from components.training.resources import worker_demand

        demand = dict(config.trial_resources)
        for name, amount in worker_demand(config.distill).items():
            demand[name] = demand.get(name, 0.0) + amount
        return demand

    def run(self, inputs: TuneInputs, ctx: StepContext) -> TuneOutputs:
        import ray

        from components.artifacts.datasets import parquet_bytes
        from components.training.common import export_model, fit_spec_to_dataset
        from components.training.data import prepare_data
        from components.tuning import plots
        from components.tuning.ray_config import trial_config
        from components.tuning.reproduce import set_lines, tune_step_prefix
        from components.tuning.results import best_weights, collect, select_best, summary, table
        from components.tuning.sweep import run_sweep
        from components.tuning.trial import TrialBrief, check_trial, student_of, trainable

        cfg = self.config
        distill_inputs = DistillInputs(
            data=inputs.data, logits=inputs.logits, teachers=inputs.teachers, init=inputs.init
        )
        check_trial(cfg.distill, distill_inputs)
        data = prepare_data(ctx.store, inputs.data, cfg.distill, inputs.logits or [])
        folder = ctx.resume_path("tune")
        brief = TrialBrief(
            config=cfg,
            inputs=distill_inputs,
            store=ctx.store,
            held={split: ray.put(columns) for split, columns in data.held.items()},
            streamed=dict(data.streamed),
            train_storage=ctx.store.fs_path(f"{folder}/train"),
        )
        outcome = run_sweep(
            config=cfg,
            trainable=trainable(brief),
            store=ctx.store,
            folder=folder,
            step_id=ctx.step_id,
            log=ctx.log,
        )
        rows = collect(outcome, cfg, ctx.store)
        best = select_best(rows, cfg)
        state, history = best_weights(best, cfg)
        best_cfg = trial_config(cfg, best.params)
        model_metrics = _final_metrics(history, cfg.metric)
        spec = fit_spec_to_dataset(student_of(best_cfg), inputs.data)
        model = export_model(ctx, spec, state, model_metrics, history)
        stats = summary(rows, outcome)
        ctx.log(
            "best trial %s: %s %.4f (%d completed, %d stopped, %d failed of %d)",
            best.name,
            cfg.metric,
            best.score(cfg) or float("nan"),
            stats["completed"],
            stats["stopped"],
            stats["failed"],
            stats["trials"],
        )

        path = ctx.output_path("results")
        best_config = best_cfg.model_dump(mode="json", exclude_unset=True)
        files: dict[str, bytes] = {
            "best_config.json": json.dumps(best_config, indent=1, sort_keys=True).encode(),
            "curves.png": plots.learning_curves(rows, cfg, best.name),
        }
        heat = plots.heat_map(rows, cfg)
        if heat is not None:
            files["heatmap.png"] = heat
        files["results.parquet"] = parquet_bytes(table(rows, cfg))
        for name, content in files.items():
            ctx.store.write_bytes(f"{path}/{name}", content)
        results = TuneResults(
            path=path,
            metric=cfg.metric,
            mode=cfg.mode,
            trials=len(rows),
            best_trial=best.name,
            plots=sorted(n for n in files if n.endswith(".png")),
        )
        return TuneOutputs(
            model=model,
            best_config=best_config,
            set_lines=set_lines(cfg.distill, best.params, prefix=tune_step_prefix(ctx.step_id)),
            results=results,
            metrics={**model_metrics, **stats},
        )


def _final_metrics(history: list[dict[str, Any]], metric: str) -> dict[str, float]:
    """The selected trial's last epoch (numbers only) plus its best value of ``metric``."""
    final = {k: float(v) for k, v in history[-1].items() if isinstance(v, int | float)}
    values = [float(h[metric]) for h in history if isinstance(h.get(metric), int | float)]
    if values and metric == "val_accuracy":
        final["best_val_accuracy"] = max(values)
    return final
