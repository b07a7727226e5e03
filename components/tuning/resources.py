"""What a `tune` step's trials ask of the cluster (no Ray, no torch: `kdorch validate` calls it)."""

from __future__ import annotations

from components.training.resources import worker_demand
from schemas.kd.components.tune import TuneConfig


def trains_in_trial(config: TuneConfig) -> bool:
    """True when each trial runs its training loop in its own process (one worker)."""
    return config.distill.scaling.num_workers == 1


def trial_resources(config: TuneConfig) -> dict[str, float]:
    """What each trial's own process reserves (for ``tune.with_resources``): `trial_cpus`, by
    default the worker's CPUs when the trial trains itself, else ~0 (it only drives a
    TorchTrainer whose workers reserve the CPUs), and a GPU when it trains on one itself."""
    scaling = config.distill.scaling
    if config.trial_cpus is not None:
        cpus = config.trial_cpus
    else:
        cpus = scaling.cpus_per_worker if trains_in_trial(config) else 0.01
    resources = {"CPU": cpus}
    if trains_in_trial(config) and scaling.use_gpu:
        resources["GPU"] = 1.0
    return resources


def trial_demand(config: TuneConfig) -> dict[str, float]:
    """What one trial needs for the sweep to run: its own process plus, for multi-worker
    trials, its Ray Train workers."""
    demand = dict(trial_resources(config))
    for name, amount in worker_demand(config.distill).items():
        demand[name] = demand.get(name, 0.0) + amount
    return demand
