"""A distill sweep as a library: what the `tune` component runs, step by step.

`sweep_distill` checks the base config against the inputs, reads the dataset and the cached
teacher outputs once into the object store, runs (or resumes) the Ray Tune sweep, selects the
best completed trial, exports its student as a normal checkpoint and writes the sweep's record
(``best_config.json``, ``results.parquet``, PNG plots) into the step's output folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import ray

from components.artifacts.datasets import parquet_bytes
from components.training.common import export_model, fit_spec_to_dataset
from components.training.data import prepare_data
from components.tuning import plots
from components.tuning.checks import student_of
from components.tuning.ray_config import trial_config
from components.tuning.results import TrialRow, best_weights, collect, select_best, summary, table
from components.tuning.sweep import run_sweep
from components.tuning.trial import TrialBrief, check_trial, trainable
from orchestrator import StepContext
from schemas.kd.artifacts import ModelCheckpoint
from schemas.kd.components.distill import DistillInputs
from schemas.kd.components.tune import TuneConfig, TuneInputs, TuneResults


@dataclass(frozen=True)
class SweepResult:
    """What a sweep leaves: the best trial's student, config and searched values, the record."""

    model: ModelCheckpoint
    best_config: dict[str, Any]  # as JSON: the fields set in the pipeline plus the searched values
    best_params: dict[str, Any]  # what Tune handed the best trial: space path -> value
    results: TuneResults
    metrics: dict[str, float]  # the best trial's final metrics plus the trial counts


def sweep_distill(ctx: StepContext, config: TuneConfig, inputs: TuneInputs) -> SweepResult:
    """Run the sweep ``config`` describes on ``inputs`` (resuming an interrupted one)."""
    distill_inputs = DistillInputs(
        data=inputs.data, logits=inputs.logits, teachers=inputs.teachers, init=inputs.init
    )
    check_trial(config.distill, distill_inputs)
    data = prepare_data(ctx.store, inputs.data, config.distill, inputs.logits or [])
    folder = ctx.resume_path("tune")
    brief = TrialBrief(
        config=config,
        inputs=distill_inputs,
        store=ctx.store,
        held={split: ray.put(columns) for split, columns in data.held.items()},
        streamed=dict(data.streamed),
        train_storage=ctx.store.fs_path(f"{folder}/train"),
    )
    outcome = run_sweep(
        config=config,
        trainable=trainable(brief),
        store=ctx.store,
        folder=folder,
        step_id=ctx.step_id,
        log=ctx.log,
    )
    rows = collect(outcome, config, ctx.store)
    best = select_best(rows, config)
    state, history = best_weights(best, config)
    best_config = trial_config(config, best.params)
    model_metrics = _final_metrics(history, config.metric)
    spec = fit_spec_to_dataset(student_of(best_config), inputs.data)
    model = export_model(ctx, spec, state, model_metrics, history)
    stats = summary(rows, outcome)
    ctx.log(
        "best trial %s: %s %.4f (%d completed, %d stopped, %d failed of %d)",
        best.name,
        config.metric,
        best.score(config) or float("nan"),
        stats["completed"],
        stats["stopped"],
        stats["failed"],
        stats["trials"],
    )
    dumped = best_config.model_dump(mode="json", exclude_unset=True)
    return SweepResult(
        model=model,
        best_config=dumped,
        best_params=dict(best.params),
        results=_write_results(ctx, config, rows, best, dumped),
        metrics={**model_metrics, **stats},
    )


def _write_results(
    ctx: StepContext,
    config: TuneConfig,
    rows: list[TrialRow],
    best: TrialRow,
    best_config: dict[str, Any],
) -> TuneResults:
    """The sweep's record in the step's ``results`` folder: the best config, the table, plots."""
    path = ctx.output_path("results")
    files: dict[str, bytes] = {
        "best_config.json": json.dumps(best_config, indent=1, sort_keys=True).encode(),
        "curves.png": plots.learning_curves(rows, config, best.name),
    }
    heat = plots.heat_map(rows, config)
    if heat is not None:
        files["heatmap.png"] = heat
    files["results.parquet"] = parquet_bytes(table(rows, config))
    for name, content in files.items():
        ctx.store.write_bytes(f"{path}/{name}", content)
    return TuneResults(
        path=path,
        metric=config.metric,
        mode=config.mode,
        trials=len(rows),
        best_trial=best.name,
        plots=sorted(n for n in files if n.endswith(".png")),
    )


def _final_metrics(history: list[dict[str, Any]], metric: str) -> dict[str, float]:
    """The selected trial's last epoch (numbers only) plus its best value of ``metric``."""
    final = {k: float(v) for k, v in history[-1].items() if isinstance(v, int | float)}
    values = [float(h[metric]) for h in history if isinstance(h.get(metric), int | float)]
    if values and metric == "val_accuracy":
        final["best_val_accuracy"] = max(values)
    return final
