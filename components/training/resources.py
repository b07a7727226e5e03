"""What a training step asks of the cluster (no torch here: `kdorch validate` calls it), and
`TrainingComponent`, the base of the components that train with `TrainingSettings`."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel

from components.models.checks import ModelSpecSteps
from orchestrator import Component
from orchestrator.component import ConfigIssue, Wiring
from schemas.engine.pipeline import Resources
from schemas.kd.components.training import TrainingSettings


def worker_demand(settings: TrainingSettings) -> dict[str, float]:
    """What a training step needs beyond its own task: Ray Train workers, if it uses them."""
    if settings.runs_in_process():
        return {}
    scaling = settings.scaling
    workers = scaling.min_workers or scaling.num_workers  # elastic: what it needs to start
    demand = {"CPU": workers * scaling.cpus_per_worker}
    if scaling.use_gpu:
        demand["GPU"] = float(workers)
    return demand


def task_resources(settings: TrainingSettings) -> Resources:
    """The step's own task: it trains itself with one worker, else it only waits."""
    if settings.runs_in_process():
        scaling = settings.scaling
        return Resources(num_cpus=scaling.cpus_per_worker, num_gpus=1 if scaling.use_gpu else 0)
    return Resources(num_cpus=0)


SettingsT = TypeVar("SettingsT", bound=TrainingSettings)
InputsT = TypeVar("InputsT", bound=BaseModel)
OutputsT = TypeVar("OutputsT", bound=BaseModel)


class TrainingComponent(ModelSpecSteps, Component[SettingsT, InputsT, OutputsT]):
    """A component that trains with `TrainingSettings` (`train`, `distill`): it trains in its
    own task with one worker, else drives Ray Train workers, and resumes from its own
    checkpoints, so a task whose process died may be retried (``scaling.max_failures``). The
    model specs of its config are checked and keyed by `ModelSpecSteps`."""

    @classmethod
    def task_resources(cls, config: SettingsT) -> Resources:
        return task_resources(config)

    @classmethod
    def resource_demand(cls, config: SettingsT) -> dict[str, float]:
        return worker_demand(config)

    @classmethod
    def task_retries(cls, config: SettingsT) -> int:
        return config.scaling.max_failures if config.runs_in_process() else 0

    @classmethod
    def check_wiring(cls, config: SettingsT, wiring: Wiring) -> list[ConfigIssue]:
        """The splits and domains the config names, against the dataset's promise."""
        from components.training.checks import training_issues

        return training_issues(config, wiring)
