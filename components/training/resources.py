"""What a training step asks of the cluster (no torch here: `kdorch validate` calls it)."""

from __future__ import annotations

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
