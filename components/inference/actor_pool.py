"""A model over Parquet part files on a Ray Data actor pool, rows kept in order: what
`teacher_inference` (a classifier over a dataset) and `lm_inference` (a teacher LM over token
sequences) share, with the resources such a step asks for.

One actor runs in the step's own process (no Ray Data start-up: the step's task holds the
actor's CPUs and GPUs); more run a pool beside the step, whose task then holds nothing while it
waits, and whose demand the scheduler counts (`resource_demand`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any, Protocol

from schemas.engine.pipeline import Resources


class PoolSettings(Protocol):
    """The config fields of a step that runs a model on an actor pool (read-only: configs
    are frozen)."""

    @property
    def num_actors(self) -> int: ...
    @property
    def cpus_per_actor(self) -> float: ...
    @property
    def gpus_per_actor(self) -> float: ...
    @property
    def batch_size(self) -> int: ...

    def runs_in_process(self) -> bool: ...


def task_resources(cfg: PoolSettings) -> Resources:
    """The step's own task: the actor's resources when it runs the model itself, else none."""
    if cfg.runs_in_process():
        return Resources(num_cpus=cfg.cpus_per_actor, num_gpus=cfg.gpus_per_actor)
    return Resources(num_cpus=0)


def resource_demand(cfg: PoolSettings) -> dict[str, float]:
    """What a pool holds beside the step's task (nothing for one actor: the task runs it)."""
    if cfg.runs_in_process():
        return {}
    demand = {"CPU": cfg.num_actors * cfg.cpus_per_actor}
    if cfg.gpus_per_actor:
        demand["GPU"] = cfg.num_actors * cfg.gpus_per_actor
    return demand


class PoolResources:
    """A step's resources from its `PoolSettings` config (`task_resources`, `resource_demand`);
    mixed in before `Component`."""

    @classmethod
    def task_resources(cls, config: Any) -> Resources:
        return task_resources(config)

    @classmethod
    def resource_demand(cls, config: Any) -> dict[str, float]:
        return resource_demand(config)


def pool_batches(
    cfg: PoolSettings, source: tuple[Any, list[str]], actor: type, args: dict[str, Any]
) -> Iterator[tuple[str, Any]]:
    """``actor(**args)`` (one per pool actor) over the part files of ``source`` (a pyarrow
    filesystem and paths, `<split>/<part>` each), ``batch_size`` rows a call; yields (split,
    pyarrow table) runs of consecutive rows of one split, in the files' order (shards written
    from them are deterministic). The actor receives a ``path`` column and must pass it on."""
    import numpy as np
    import ray.data

    from components.artifacts.datasets import split_of

    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    filesystem, paths = source
    outputs = ray.data.read_parquet(paths, filesystem=filesystem, include_paths=True).map_batches(
        actor,
        fn_constructor_kwargs=args,
        batch_size=cfg.batch_size,
        batch_format="pyarrow",
        concurrency=cfg.num_actors,
        num_cpus=cfg.cpus_per_actor,
        num_gpus=cfg.gpus_per_actor,
    )
    batch: Any
    for batch in outputs.iter_batches(batch_format="pyarrow", batch_size=None):
        splits = np.array([split_of(p) for p in batch.column("path").to_pylist()])
        batch = batch.drop_columns(["path"])
        cuts = [0, *(np.flatnonzero(splits[1:] != splits[:-1]) + 1).tolist(), len(splits)]
        for start, end in itertools.pairwise(cuts):
            yield str(splits[start]), batch.slice(start, end - start)
