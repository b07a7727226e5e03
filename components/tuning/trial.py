"""One trial of a `tune` sweep: a distill run inside a Ray Tune trial actor.

Two ways to run, chosen per trial by the trial's own config (`runs_in_process`):

- **One worker** (the default): the training loop runs right here, in the trial's process, with a
  `TuneSession` — no `TorchTrainer`, no worker group, none of Ray Train's ~12 s start-up. Each
  epoch is one ``tune.report`` (ASHA's clock); resumable checkpoints go through Tune, so a trial
  of an interrupted sweep resumes from its last one.
- **Several workers**: the trial drives a `TorchTrainer(...).fit()` (Train V2 refuses to be
  passed to a ``Tuner``); Ray Train's ``TuneReportCallback`` forwards each epoch's report to
  Tune, and the trial's process only waits (it reserves ~0 CPUs, see `TuneConfig.trial_cpus`).

The data arrives through the object store: the step read the dataset and the cached teacher
outputs once and put them there (`TrialBrief.held`); every trial on a node maps the same
memory (zero-copy numpy), so no trial reads a shard or runs a cached teacher.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from components.training.common import fit_spec_to_dataset
from components.training.loop import BEST_FILE, MODEL_FILE, LoopSpec, run_loop
from components.training.objective import DistillObjective
from components.training.session import checkpoint_folder
from components.training.teachers import checked_teachers
from components.training.trainer import as_tensors, steps_per_epoch
from components.training.views import training_views
from components.tuning.checks import student_of, unsupported
from components.tuning.ray_config import trial_config
from components.tuning.resources import trial_resources
from orchestrator import ArtifactStore
from schemas.kd.components.distill import DistillConfig, DistillInputs
from schemas.kd.components.tune import TuneConfig

FINAL_FILE = "final.json"
"""Marks a trial's last checkpoint: the finished student (``model.pt``, ``best_model.pt``)."""
CHECKPOINT_PATH = "checkpoint_path"
"""Where Ray Train's ``TuneReportCallback`` puts a multi-worker trial's checkpoint folder."""


@dataclass
class TrialBrief:
    """What every trial needs; shipped once through the object store (``tune.with_parameters``).

    ``held`` maps a split to an ObjectRef of its columns (the dataset joined with the cached
    teacher outputs); ``streamed`` holds Ray Data datasets for splits too big to hold.
    """

    config: TuneConfig
    inputs: DistillInputs
    store: ArtifactStore
    held: dict[str, Any] = field(default_factory=dict)
    streamed: dict[str, Any] = field(default_factory=dict)
    train_storage: str = ""  # filesystem path for multi-worker trials' Ray Train runs


def check_trial(cfg: DistillConfig, inputs: DistillInputs) -> None:
    """Refuse a trial config that cannot train on these inputs: what a sweep cannot do yet, a
    missing student, and distill's own checks of the teacher inputs against the losses."""
    reason = unsupported(cfg)
    if reason is not None:
        raise ValueError(reason)
    student_of(cfg)
    checked_teachers(cfg, inputs.logits or [], inputs.teachers or [])
    training_views(cfg, inputs.data, inputs.logits or [])


def loop_spec(cfg: DistillConfig, brief: TrialBrief) -> LoopSpec:
    """The training loop's brief for one trial config (as a distill step would build it)."""
    inputs = brief.inputs
    logits = inputs.logits or []
    objective = DistillObjective(
        losses=list(cfg.losses),
        num_classes=inputs.data.num_classes,
        num_teachers=len(logits),
        teacher_weights=cfg.normalised_teacher_weights(),
        teacher_feature_dim=logits[0].feature_dim if logits else None,
        online_teachers=list(inputs.teachers or []),
        views=training_views(cfg, inputs.data, logits),  # the caches' (or the config's) views
        seed=cfg.seed,
    )
    return LoopSpec(
        model=fit_spec_to_dataset(student_of(cfg), inputs.data),
        training=cfg,
        objective=objective,
        steps_per_epoch=steps_per_epoch(inputs.data.splits["train"], cfg),
        store=brief.store,
        init=inputs.init,
    )


def run_trial(params: dict[str, Any], brief: TrialBrief) -> None:
    """Tune's trainable: build this trial's config from ``params`` and train it."""
    cfg = trial_config(brief.config, params)
    check_trial(cfg, brief.inputs)
    spec = loop_spec(cfg, brief)
    if cfg.runs_in_process():
        _train_here(spec, brief)
    else:
        _train_with_ray_train(spec, brief)


# ---- one worker: the loop in the trial's process ---------------------------------------------


class TuneSession:
    """The loop's `Session` inside a trial: epochs go to ``tune.report``, checkpoints through Tune.

    The last epoch is held back (`last`) and reported by `finish` together with the trained
    weights, so every epoch is exactly one report (ASHA counts reports as epochs) and the
    trial's final checkpoint is its student.
    """

    rank = 0
    world = 1
    returns_by_checkpoint = False  # `finish` reports the weights

    def __init__(self, device: torch.device, epochs: int):
        self.device, self.epochs = device, epochs
        self.last: dict[str, Any] | None = None

    def restore(self) -> contextlib.AbstractContextManager[Path | None]:
        from ray import tune

        return checkpoint_folder(tune.get_checkpoint())

    def report(self, metrics: dict[str, Any], checkpoint: Path | None) -> None:
        from ray import tune

        if int(metrics["epoch"]) >= self.epochs - 1:
            self.last = dict(metrics)
            return
        saved = tune.Checkpoint.from_directory(str(checkpoint)) if checkpoint else None
        tune.report(dict(metrics), checkpoint=saved)

    def finish(
        self,
        student: dict[str, torch.Tensor],
        best: dict[str, torch.Tensor] | None,
        history: list[dict[str, Any]],
    ) -> None:
        """Report the last epoch with the student's weights as the trial's final checkpoint."""
        from ray import tune

        if self.last is None:  # nothing left to train (restored after the last epoch)
            return
        with tempfile.TemporaryDirectory(prefix="kdorch-trial-") as tmp:
            torch.save(student, Path(tmp, MODEL_FILE))
            if best is not None:
                torch.save(best, Path(tmp, BEST_FILE))
            Path(tmp, FINAL_FILE).write_text(json.dumps({"history": history}))
            tune.report(self.last, checkpoint=tune.Checkpoint.from_directory(tmp))


def _finished() -> bool:
    """True when Tune restored this trial from its final checkpoint (it already finished)."""
    from ray import tune

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return False
    with checkpoint.as_directory() as folder:
        return Path(folder, FINAL_FILE).exists()


def _columns(ref: Any) -> dict[str, torch.Tensor]:
    """A split's held columns from the object store, as tensors over the same memory.

    The arrays are read-only views of the shared object (that is the point: one copy per node);
    torch warns about that once, but the loop never writes to its inputs.
    """
    import ray

    columns = ray.get(ref)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return as_tensors(columns)


def _train_here(spec: LoopSpec, brief: TrialBrief) -> None:
    if _finished():
        return
    cfg = spec.training
    use_gpu = cfg.scaling.use_gpu and torch.cuda.is_available()
    torch.set_num_threads(max(1, int(trial_resources(brief.config)["CPU"])))
    session = TuneSession(torch.device("cuda" if use_gpu else "cpu"), cfg.epochs)

    def source(split: str) -> Any:
        return _columns(brief.held[split]) if split in brief.held else brief.streamed[split]

    result = run_loop(spec, session, source("train"), source(cfg.eval_split))
    session.finish(result.student_state, result.best_state, result.history)


# ---- several workers: a TorchTrainer inside the trial -----------------------------------------


def _train_with_ray_train(spec: LoopSpec, brief: TrialBrief) -> None:
    from ray import tune
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    # Ray Train's worker function for held/streamed data (private there; reused, not copied).
    from components.training.trainer import _entry

    scaling = spec.training.scaling
    trainer = TorchTrainer(
        _entry,
        train_loop_config={"spec": spec, "held": brief.held},
        scaling_config=ScalingConfig(
            num_workers=scaling.num_workers,
            use_gpu=scaling.use_gpu,
            resources_per_worker={
                "CPU": scaling.cpus_per_worker,
                **({"GPU": 1} if scaling.use_gpu else {}),
            },
        ),
        torch_config=TorchConfig(backend="nccl" if scaling.use_gpu else "gloo"),
        run_config=RunConfig(
            # the same name when Tune resumes this trial: Ray Train resumes its run
            name=f"train-{tune.get_context().get_trial_id()}",
            storage_path=brief.train_storage,
            storage_filesystem=brief.store.arrow_filesystem(),
            failure_config=FailureConfig(max_failures=scaling.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=1),
            callbacks=[TuneReportCallback()],  # type: ignore[list-item]
        ),
        datasets=dict(brief.streamed),
    )
    result = trainer.fit()
    if result.error is not None:
        raise result.error


# ---- the trainable Tune runs ------------------------------------------------------------------


def trainable(brief: TrialBrief) -> Any:
    """`run_trial` as Tune's trainable: ``brief`` put into the object store once
    (``tune.with_parameters``), each trial reserving `trial_resources`.

    The trial actor's ``repr`` is its trial name, which the Ray dashboard shows in its actor
    list (Tune's own function wrapper shows the function's name for every trial). Ray reads it
    once, when the actor starts: an actor that Tune reuses for later trials
    (`TuneConfig.reuse_actors`) keeps the name of its first.
    """
    from ray import tune
    from ray.tune.trainable.function_trainable import wrap_function

    resources = trial_resources(brief.config)
    function = tune.with_resources(tune.with_parameters(run_trial, brief=brief), resources)

    class KdorchTrial(wrap_function(function)):  # type: ignore[misc]
        def __repr__(self) -> str:
            return str(self.trial_name)

    KdorchTrial.__qualname__ = KdorchTrial.__name__  # the dashboard's class column
    return KdorchTrial
