"""Map a `TuneConfig` onto Ray Tune's objects; the only place the sweep's config meets Ray.

The search space is flat: its keys are the config's paths (``"losses[0].alpha"``), so a trial
receives ``{"losses[0].alpha": 0.73, ...}`` and builds its `DistillConfig` with
`trial_config`. Metric and mode go to ``tune.TuneConfig`` only (Ray refuses them twice), and
``max_concurrent_trials`` is applied here on the search algorithm (Ray would ignore it for a
``BasicVariantGenerator`` passed in), so ``tune.TuneConfig.max_concurrent_trials`` stays None.

Typical use in the component (``fn`` reports ``config.metric`` once per epoch)::

    tuner = tune.Tuner(
        tune.with_resources(fn, trial_resources(config)),
        param_space=param_space(config),
        tune_config=tune_config(config),
        run_config=tune.RunConfig(storage_path=..., failure_config=failure_config(config)),
    )
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ray import tune
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter, SearchAlgorithm, Searcher

from schemas.engine.paths import apply, get_value
from schemas.kd.components.distill import DistillConfig
from schemas.kd.components.tune import TuneConfig
from schemas.kd.components.tune_space import Choice, Grid, LogUniform, RandInt, Uniform

TIME_ATTR = "training_iteration"
"""ASHA's clock: one ``tune.report`` per epoch makes it count epochs."""


def _typed(base: DistillConfig, path: str, value: Any) -> Any:
    """A listed value as its field reads it (``"1e-4"`` from YAML -> 0.0001) when it is a
    plain scalar; structured values (a whole sub-config) are passed on as written."""
    typed = get_value(apply(base, {path: value}), path)
    return typed if isinstance(typed, bool | int | float | str) else value


def param_space(config: TuneConfig) -> dict[str, Any]:
    """The Ray Tune search space: ``{path: tune domain}``, one entry per space path.

    ``grid`` -> ``tune.grid_search``; ``choice`` -> ``tune.choice`` (``tune.grid_search`` with
    ``search: grid``); ``uniform``/``loguniform``/``randint`` -> the Ray domains of the same
    names (``randint``'s upper bound is exclusive in both).
    """
    space: dict[str, Any] = {}
    for path, domain in config.space.items():
        if isinstance(domain, Uniform):
            space[path] = tune.uniform(*domain.uniform)
        elif isinstance(domain, LogUniform):
            space[path] = tune.loguniform(*domain.loguniform)
        elif isinstance(domain, RandInt):
            space[path] = tune.randint(*domain.randint)
        elif isinstance(domain, Choice | Grid):
            raw = domain.choice if isinstance(domain, Choice) else domain.grid
            values = [_typed(config.distill, path, v) for v in raw]
            if isinstance(domain, Grid) or config.search == "grid":
                space[path] = tune.grid_search(values)
            else:
                space[path] = tune.choice(values)
        else:  # pragma: no cover - the Domain union is closed
            raise TypeError(f"unknown domain {type(domain).__name__} at {path}")
    return space


def num_trials(config: TuneConfig) -> int:
    """Trials the sweep runs (before ASHA stops any): samples x the size of any grid, as Ray
    crosses the `param_space` grids with the samples."""
    size = 1
    for domain in config.space.values():
        if isinstance(domain, Grid) or (config.search == "grid" and isinstance(domain, Choice)):
            size *= len(domain.representatives())
    return config.samples * size


def search_algorithm(config: TuneConfig) -> SearchAlgorithm | Searcher:
    """``BasicVariantGenerator`` (seeded) for grid and random search; for optuna, Ray's
    ``OptunaSearch`` (TPE, seeded), in a ``ConcurrencyLimiter`` when trials are limited."""
    limit = config.max_concurrent_trials
    if config.search == "optuna":
        from ray.tune.search.optuna import OptunaSearch  # needs `optuna` installed

        # No space, metric or mode here: Tune hands over param_space, metric and mode.
        searcher: Searcher = OptunaSearch(seed=config.seed)
        return ConcurrencyLimiter(searcher, max_concurrent=limit) if limit else searcher
    return BasicVariantGenerator(max_concurrent=limit or 0, random_state=config.seed)


def scheduler(config: TuneConfig) -> TrialScheduler | None:
    """``ASHAScheduler`` over epochs (metric and mode come from ``tune.TuneConfig``), or None."""
    if config.scheduler == "none":
        return None
    return ASHAScheduler(
        time_attr=TIME_ATTR,
        max_t=config.max_t,
        grace_period=config.asha.grace_period,
        reduction_factor=config.asha.reduction_factor,
        brackets=config.asha.brackets,
    )


def tune_config(config: TuneConfig, **extra: Any) -> tune.TuneConfig:
    """Ray's ``tune.TuneConfig`` for the sweep; ``extra`` adds e.g. ``trial_name_creator``."""
    return tune.TuneConfig(
        metric=config.metric,
        mode=config.mode,
        search_alg=search_algorithm(config),
        scheduler=scheduler(config),
        num_samples=config.samples,
        **extra,
    )


def failure_config(config: TuneConfig) -> tune.FailureConfig:
    """A failed trial fails the sweep only with ``fail_fast`` (trials are not retried)."""
    return tune.FailureConfig(max_failures=0, fail_fast=config.fail_fast)


def trial_config(config: TuneConfig, params: Mapping[str, Any]) -> DistillConfig:
    """The `DistillConfig` of one trial: the base with the space's values from ``params``.

    ``params`` is the config Tune hands the trial; keys that are not space paths are ignored,
    so a trainable may carry its own constants beside them. Raises `PathError` (a
    `ValueError`) naming the path for a combination of values the config refuses.
    """
    return apply(config.distill, {path: params[path] for path in config.space})
