"""A finished sweep as rows (one per trial), the best trial, its weights, and the Parquet table.

Status of a trial: ``completed`` (ran all its epochs), ``stopped`` (ASHA stopped it early) or
``failed`` (it raised; its error is kept). Only completed trials can be selected: a stopped
trial's weights are those of fewer epochs, and ASHA already judged it worse at a rung. The
score is the metric of the epoch whose weights the student keeps: the last epoch's with
``select: last`` (the default), the best epoch's with ``select: best``.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import torch

from components.training.loop import BEST_FILE, MODEL_FILE
from components.tuning.sweep import SweepOutcome, planned_epochs
from components.tuning.trial import CHECKPOINT_PATH, FINAL_FILE
from orchestrator import ArtifactStore
from schemas.kd.components.tune import TuneConfig

HISTORY_KEYS = ("training_iteration", "val_accuracy", "val_loss", "train_loss", "seconds")


class SweepFailed(RuntimeError):
    """No trial of the sweep completed; the message carries the first trial's error."""


@dataclass
class TrialRow:
    """One trial as the results table and the plots see it."""

    name: str
    trial_id: str
    params: dict[str, Any]
    status: str  # completed | stopped | failed
    epochs: int  # epochs reported
    planned: int  # epochs it would have run
    final: float | None  # the metric at its last report
    best: float | None  # the best value of the metric over its reports
    history: list[dict[str, float]] = field(default_factory=list)
    error: BaseException | None = None
    wall_s: float | None = None  # trial start to finish, seen by the sweep's driver
    ended: float | None = None  # when it finished (unix time), for the sweep's timeline
    train_s: float = 0.0  # time inside its epochs (train + eval), reported by the loop
    checkpoint: Any = None  # ray.tune.Checkpoint of its final weights (completed trials)

    @property
    def overhead_s(self) -> float | None:
        """Wall time not spent in epochs: actor start, imports, data, model build, reports."""
        return None if self.wall_s is None else self.wall_s - self.train_s

    def score(self, config: TuneConfig) -> float | None:
        return self.best if config.distill.select == "best" else self.final


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _history(frame: Any, metric: str) -> list[dict[str, float]]:
    if frame is None or len(frame) == 0:
        return []
    keys = [k for k in dict.fromkeys((*HISTORY_KEYS, metric)) if k in frame.columns]
    rows = frame[keys].to_dict("records")
    return [{k: float(v) for k, v in row.items() if _number(v) is not None} for row in rows]


def collect(outcome: SweepOutcome, config: TuneConfig, store: ArtifactStore) -> list[TrialRow]:
    """Every trial of the sweep, in trial order."""
    rows = []
    metric, better = config.metric, (max if config.mode == "max" else min)
    for result in outcome.grid:
        metrics = dict(result.metrics or {})
        trial_id = str(metrics.get("trial_id") or PurePosixPath(result.path).name)
        record = outcome.records.get(trial_id, {})
        params = dict(result.config or record.get("config") or {})
        history = _history(result.metrics_dataframe, metric)
        values = [h[metric] for h in history if metric in h]
        epochs = int(metrics.get("training_iteration", 0) or 0)
        planned = planned_epochs(config, params)
        status = (
            "failed"
            if result.error is not None
            else "completed"
            if epochs >= planned
            else "stopped"
        )
        checkpoint = result.checkpoint
        if status == "completed" and CHECKPOINT_PATH in metrics:  # a multi-worker trial
            from ray import tune

            checkpoint = tune.Checkpoint(
                path=metrics[CHECKPOINT_PATH], filesystem=store.arrow_filesystem()
            )
        rows.append(
            TrialRow(
                name=str(record.get("trial") or PurePosixPath(result.path).name),
                trial_id=trial_id,
                params=params,
                status=status,
                epochs=epochs,
                planned=planned,
                final=_number(metrics.get(metric)),
                best=better(values) if values else None,
                history=history,
                error=result.error,
                wall_s=_number(record.get("wall_s")),
                ended=_number(record.get("ended")),
                train_s=sum(h.get("seconds", 0.0) for h in history),
                checkpoint=checkpoint,
            )
        )
    return sorted(rows, key=lambda r: r.trial_id)


def select_best(rows: list[TrialRow], config: TuneConfig) -> TrialRow:
    """The completed trial with the best score; `SweepFailed` when none completed."""
    sign = 1.0 if config.mode == "max" else -1.0
    candidates = [r for r in rows if r.status == "completed" and r.score(config) is not None]
    if candidates:
        return max(candidates, key=lambda r: sign * (r.score(config) or 0.0))
    failed = [r for r in rows if r.status == "failed"]
    if failed and len(failed) == len(rows):
        first = failed[0]
        raise SweepFailed(
            f"all {len(rows)} trials of the sweep failed; the first ({first.name}, "
            f"{first.params}) with: {_error_text(first.error)}"
        ) from first.error
    raise SweepFailed(
        f"no trial of the sweep completed and reported '{config.metric}' ({len(failed)} failed, "
        f"{len(rows) - len(failed)} stopped or without results); check `metric` against what "
        "the training loop reports (val_accuracy, val_loss, train_loss, train_<term>)"
    )


def _error_text(error: BaseException | None) -> str:
    text = str(error or "unknown error").strip()
    return text.splitlines()[-1] if text else type(error).__name__


def best_weights(
    row: TrialRow, config: TuneConfig
) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """The selected trial's student weights (last or best epoch, as ``select`` says) and the
    per-epoch history saved with them."""
    if row.checkpoint is None:
        raise SweepFailed(f"trial {row.name} completed without a checkpoint of its student")
    with row.checkpoint.as_directory() as folder:
        best = Path(folder, BEST_FILE)
        chosen = (
            best if config.distill.select == "best" and best.exists() else Path(folder, MODEL_FILE)
        )
        state = torch.load(chosen, map_location="cpu", weights_only=True)
        document = Path(folder, FINAL_FILE)
        meta = document if document.exists() else Path(folder, "meta.json")
        history = json.loads(meta.read_text())["history"]
    return state, history


def _cell(value: Any) -> Any:
    """A searched value as a table cell: scalars as they are, structures as JSON text."""
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return json.dumps(value, sort_keys=True, default=str)


def table(rows: list[TrialRow], config: TuneConfig) -> pa.Table:
    """One row per trial: name, status, epochs, the metric (final and best), the searched
    values (one column per path), when it started and ended (seconds since the first trial
    started), wall/training/overhead seconds and the error, if any."""
    metric = config.metric
    columns: dict[str, list[Any]] = {
        "trial": [r.name for r in rows],
        "trial_id": [r.trial_id for r in rows],
        "status": [r.status for r in rows],
        "epochs": [r.epochs for r in rows],
        "planned_epochs": [r.planned for r in rows],
        metric: [r.final for r in rows],
        f"best_{metric}": [r.best for r in rows],
    }
    for path in config.space:
        columns[path] = [_cell(r.params.get(path)) for r in rows]
    # The sweep's timeline: seconds since the first trial started (queueing shows as gaps).
    starts = [r.ended - (r.wall_s or 0.0) if r.ended is not None else None for r in rows]
    zero = min((t for t in starts if t is not None), default=0.0)
    columns["started_s"] = [None if t is None else t - zero for t in starts]
    columns["ended_s"] = [None if r.ended is None else r.ended - zero for r in rows]
    columns["wall_s"] = [r.wall_s for r in rows]
    columns["train_s"] = [r.train_s for r in rows]
    columns["overhead_s"] = [r.overhead_s for r in rows]
    columns["error"] = [_error_text(r.error) if r.error is not None else None for r in rows]
    return pa.table(columns)


def summary(rows: list[TrialRow], outcome: SweepOutcome) -> dict[str, float]:
    """Counts and timings of the sweep (for the step's `metrics` output)."""
    overheads = [r.overhead_s for r in rows if r.overhead_s is not None and r.status != "failed"]
    out = {
        "trials": float(len(rows)),
        "completed": float(sum(r.status == "completed" for r in rows)),
        "stopped": float(sum(r.status == "stopped" for r in rows)),
        "failed": float(sum(r.status == "failed" for r in rows)),
        "restored_trials": float(len(outcome.restored)),
        "sweep_seconds": outcome.seconds,
    }
    if overheads:
        out["median_trial_overhead_s"] = statistics.median(overheads)
    return out
