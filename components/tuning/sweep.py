"""Running a sweep: a Ray Tune experiment in a store folder that outlives the step's attempt.

The experiment lives in the step's resume folder (`StepContext.resume_path`), which belongs to
the step's key: when a step is interrupted (its process killed, the run stopped) and run again
with the same config and inputs, `Tuner.can_restore` finds the experiment and `Tuner.restore`
keeps every finished trial, resumes unfinished ones from their last checkpoint, and runs failed
ones again. Once the step commits, the orchestrator removes the folder.

Tune saves the experiment's state every `STATE_PERIOD_S` (its default starts at 10 s), so an
interruption loses at most that much bookkeeping.

Resuming happens when the step runs again, not by a Ray task retry: Tune creates the trials'
placement groups from the step's process, and Ray removes them when the run's driver exits, not
when only the step's process dies; a retried step would wait for CPUs its dead predecessor still
holds. Progress goes to the step's log as trials
finish (`Progress`), and each finished trial leaves a small record with its wall time in
``trials/`` beside the experiment (the results table reads it; Tune keeps no wall time that
includes the trial's start-up).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ray import tune

from components.tuning.ray_config import failure_config, num_trials, param_space, tune_config
from orchestrator import ArtifactStore
from schemas.kd.components.tune import TuneConfig

EXPERIMENT = "experiment"
TRIALS = "trials"
STATE_PERIOD_S = "1"


def planned_epochs(config: TuneConfig, params: dict[str, Any]) -> int:
    """Epochs a trial runs unless ASHA stops it (``epochs`` may be a searched path)."""
    return int(params.get("epochs", config.distill.epochs))


class TrialName:
    """Tune's trial names (and folder names): ``<step id>_<trial id>``, e.g.
    ``sweep_3f2a1_00003``; the Ray dashboard shows them on the trial actors."""

    def __init__(self, step_id: str):
        self.prefix = re.sub(r"[^A-Za-z0-9_.-]+", "_", step_id).strip("_") or "tune"

    def __call__(self, trial: Any) -> str:
        return f"{self.prefix}_{trial.trial_id}"


# The log and store a `Progress` callback loaded from a saved experiment reports to.
_attached: tuple[Callable[..., None], ArtifactStore] | None = None


class Progress(tune.Callback):
    """Logs each finished trial (done / stopped by ASHA / failed), the counts so far and the best
    value so far; writes each finished trial's wall time into the store."""

    def __init__(
        self,
        log: Callable[..., None],
        store: ArtifactStore,
        folder: str,
        config: TuneConfig,
    ):
        self.log, self.store, self.folder, self.config = log, store, folder, config
        self.started: dict[str, float] = {}

    # Tune pickles its callbacks into the experiment's saved state (in the store). The step's
    # log holds a handle to this run's progress actor, which cannot be unpickled once its run
    # has gone, and the store may hold credentials that must never be written into the store;
    # so neither is saved, and a resumed sweep attaches its own (`_attached`).
    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("log", "store")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if _attached is None:
            raise RuntimeError("a sweep's saved Progress callback was loaded outside run_sweep")
        self.log, self.store = _attached

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.started[trial.trial_id] = time.time()

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._finished(trials, trial, failed=False)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._finished(trials, trial, failed=True)

    def _state(self, trial: Any) -> str:
        status = str(trial.status)
        if status == "ERROR":
            return "failed"
        if status == "TERMINATED":
            reached = int((trial.last_result or {}).get("training_iteration", 0))
            return "done" if reached >= planned_epochs(self.config, trial.config) else "stopped"
        return status.lower()  # running, pending, paused

    def _finished(self, trials: list[Any], trial: Any, *, failed: bool) -> None:
        ended = time.time()
        started = self.started.pop(trial.trial_id, None)
        state = "failed" if failed else self._state(trial)
        result = trial.last_result or {}
        path = f"{self.folder}/{TRIALS}/{trial.trial_id}.json"
        wall = ended - started if started is not None else None
        try:  # a trial resumed after an interruption: its wall time adds up
            earlier = self.store.read_json(path)
        except FileNotFoundError:
            earlier = {}
        if wall is not None and isinstance(earlier.get("wall_s"), int | float):
            wall += earlier["wall_s"]
        self.store.write_json(
            path,
            {
                "trial": str(trial),
                "config": dict(trial.config),
                "status": state,
                "started": earlier.get("started", started),
                "ended": ended,
                "wall_s": wall,
            },
        )
        counts: dict[str, int] = {}
        for t in trials:
            s = "failed" if t is trial and failed else self._state(t)
            counts[s] = counts.get(s, 0) + 1
        metric = self.config.metric
        value = result.get(metric)
        what = f"{metric} {value:.4f}" if isinstance(value, int | float) else "no result"
        epochs = int(result.get("training_iteration", 0))
        self.log(
            "trial %s %s after %d epoch(s), %s; %s; best so far: %s",
            trial,
            state,
            epochs,
            what,
            ", ".join(f"{n} {s}" for s, n in sorted(counts.items())),
            self._best(trials),
        )

    def _best(self, trials: list[Any]) -> str:
        metric, sign = self.config.metric, 1 if self.config.mode == "max" else -1
        scored = [
            (sign * float(t.last_result[metric]), str(t))
            for t in trials
            if isinstance((t.last_result or {}).get(metric), int | float)
            and self._state(t) == "done"
        ]
        if not scored:
            return "none finished yet"
        value, name = max(scored)
        return f"{sign * value:.4f} ({name})"


@dataclass
class SweepOutcome:
    grid: Any  # ray.tune.ResultGrid
    restored: list[str]  # trials that had completed or been stopped before this attempt
    records: dict[str, dict[str, Any]]  # trial id -> the record `Progress` wrote
    seconds: float


def run_sweep(
    *,
    config: TuneConfig,
    trainable: Any,
    store: ArtifactStore,
    folder: str,
    step_id: str,
    log: Callable[..., None],
) -> SweepOutcome:
    """Run (or resume) the sweep whose experiment lives in the store folder ``folder``."""
    # Read by Tune's controller when it is created, in this (the step's) process. Tune also
    # saves the state whenever a trial's old checkpoint is deleted (num_to_keep=1, so that the
    # saved state never names a deleted checkpoint) and warns when that happens often: on a
    # local store a save costs milliseconds.
    os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = STATE_PERIOD_S
    os.environ["TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S"] = "0"
    store.makedirs(folder)
    filesystem = store.arrow_filesystem()
    experiment = store.fs_path(f"{folder}/{EXPERIMENT}")
    restored = [t for t, r in _records(store, folder).items() if r.get("status") != "failed"]
    started = time.perf_counter()
    if tune.Tuner.can_restore(experiment, storage_filesystem=filesystem):
        log(
            "resuming the interrupted sweep in %s (%d trial(s) had finished)",
            store.uri(folder),
            len(restored),
        )
        global _attached
        _attached = (log, store)
        try:
            tuner = tune.Tuner.restore(
                experiment,
                trainable=trainable,
                resume_unfinished=True,
                # A failed trial runs again from scratch: its failure may have been the
                # interruption (or a worker since fixed); a config distill refuses fails again.
                restart_errored=True,
                storage_filesystem=filesystem,
            )
        finally:
            _attached = None
    else:
        names = TrialName(step_id)
        tuner = tune.Tuner(
            trainable,
            param_space=param_space(config),
            tune_config=tune_config(
                config,
                trial_name_creator=names,
                trial_dirname_creator=names,
                reuse_actors=config.reuse_actors,
            ),
            run_config=tune.RunConfig(
                name=EXPERIMENT,
                storage_path=store.fs_path(folder),
                storage_filesystem=filesystem,
                failure_config=failure_config(config),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                callbacks=[Progress(log, store, folder, config)],
                verbose=0,
            ),
        )
        log(
            "sweep: %d trial(s) over %s, %s search, scheduler %s",
            num_trials(config),
            ", ".join(config.space),
            config.search,
            config.scheduler,
        )
    grid = tuner.fit()
    return SweepOutcome(
        grid=grid,
        restored=sorted(restored),
        records=_records(store, folder),
        seconds=time.perf_counter() - started,
    )


def _records(store: ArtifactStore, folder: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name in store.listdir(f"{folder}/{TRIALS}"):
        if name.endswith(".json"):
            out[name.removesuffix(".json")] = store.read_json(f"{folder}/{TRIALS}/{name}")
    return out
