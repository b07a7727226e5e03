"""The `tune` component's config: a Ray Tune sweep over paths in a `distill` config.

In YAML::

    config:
      distill: {student: {arch: mlp}, epochs: 8, losses: [{type: kd}]}
      space:
        losses[0].alpha: {uniform: [0.1, 0.95]}
        losses[0].temperature: {choice: [1, 2, 4, 8]}
        optimizer.lr: {loguniform: [1.0e-4, 1.0e-2]}
      search: optuna
      num_samples: 16

Every path is checked against ``distill`` when the config is validated (so `kdorch validate`
reports it), by applying the ends of each range, one fractional value inside it (so an integer
field searched with ``uniform`` is caught: use ``randint``) and every listed value to the base
config with `schemas.engine.paths.apply`, which validates the result. Each path is checked on
its own; a combination of values that only fails together (``t_start > t_end``) fails that
trial, with the path named, when the trial builds its config. The domains themselves are in
`schemas.kd.components.tune_space`.

Write small floats as ``1.0e-4``: YAML (PyYAML) reads ``1e-4`` as a string. Ranges coerce it
anyway, and choice/grid values are typed through their field when the Ray space is built, but
the dot keeps the file honest. Ray Tune objects are built from this config only in
`components.tuning.ray_config`; nothing here imports Ray.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from schemas.base import Model
from schemas.engine.artifacts import ArtifactRef
from schemas.engine.paths import Path, PathError, apply, check_path, format_path
from schemas.kd.artifacts import Dataset, LogitShards, ModelCheckpoint
from schemas.kd.components.distill import DistillConfig
from schemas.kd.components.tune_space import Choice, Domain, Grid, SearchDomain

FIXED_FOR_SWEEP = ("scaling",)
"""Top-level distill fields a space may not search: they size every trial's resources."""


class AshaSettings(Model):
    """Asynchronous successive halving: trials report once per epoch (Tune's
    ``training_iteration``); at each rung (grace_period, x reduction_factor, ...) a trial
    continues only if it is in the top 1/reduction_factor of those that reached the rung."""

    grace_period: int = Field(1, ge=1, description="Epochs every trial runs before it can stop.")
    reduction_factor: float = Field(
        3.0, gt=1, description="Keep the best 1/reduction_factor at each rung."
    )
    max_t: int | None = Field(
        None,
        ge=1,
        description="Epochs of the longest trial; default: distill's epochs (the largest "
        "searched value when `epochs` is in the space).",
    )
    brackets: int = Field(1, ge=1, description="Brackets of ASHA (1: plain successive halving).")


class TuneConfig(Model):
    """Search paths of a distill config with Ray Tune; every trial is a distill run."""

    distill: DistillConfig = Field(description="The distill config every trial starts from.")
    space: dict[str, Domain] = Field(
        min_length=1,
        description="Path in the distill config -> domain, e.g. "
        "'losses[0].alpha: {uniform: [0.1, 0.95]}', 'optimizer.lr: {loguniform: [1.0e-4, "
        "1.0e-2]}', 'teacher_weights[0]: {uniform: [0, 1]}', 'epochs: {choice: [5, 10]}'.",
    )
    search: Literal["random", "grid", "optuna"] = Field(
        "random",
        description="random: sample num_samples configs (grid domains are crossed with them); "
        "grid: enumerate every grid/choice domain (repeated num_samples times); optuna: "
        "Optuna's TPE through Ray Tune's OptunaSearch (no grid domains).",
    )
    scheduler: Literal["asha", "none"] = Field(
        "asha", description="asha: stop weak trials early (see `asha`); none: run all to the end."
    )
    asha: AshaSettings = Field(default_factory=AshaSettings, description="scheduler: asha only.")
    num_samples: int | None = Field(
        None,
        ge=1,
        description="Samples to draw (random, optuna) or repeats of the grid (grid). "
        "Default: 8, or 1 for search: grid.",
    )
    max_concurrent_trials: int | None = Field(
        None,
        ge=1,
        description="Most trials at once. Default: as many as the trial resources fit. With "
        "multi-worker trials set it to at most CPUs / (num_workers x cpus_per_worker).",
    )
    metric: str = Field("val_accuracy", description="Reported metric the search optimises.")
    mode: Literal["max", "min"] = Field("max", description="Maximise or minimise the metric.")
    seed: int = Field(0, description="Seeds the search algorithm (trial seeds: distill.seed).")
    trial_cpus: float | None = Field(
        None,
        gt=0,
        description="CPUs each trial's own process reserves. Default: distill's "
        "scaling.cpus_per_worker when trials train in their own process (num_workers: 1), "
        "else 0.01 (the trial only drives a TorchTrainer whose workers reserve the CPUs; a "
        "whole CPU per trial deadlocks small machines). 0 is refused by Ray.",
    )
    fail_fast: bool = Field(False, description="Stop the sweep at the first failed trial.")
    reuse_actors: bool = Field(
        True,
        description="Run a new trial in the process of a finished one (Tune's reuse_actors): no "
        "process start and no imports per trial (measured on 2 cores: ~5 s -> ~0.2 s of "
        "overhead per trial). The Ray dashboard then names each trial actor after the first "
        "trial it ran; false: one actor per trial, named after it.",
    )

    # ---- fields with their defaults ------------------------------------------------------

    @property
    def samples(self) -> int:
        """``num_samples`` with its default: 1 for grid search, else 8."""
        if self.num_samples is not None:
            return self.num_samples
        return 1 if self.search == "grid" else 8

    @property
    def max_t(self) -> int:
        """ASHA's longest trial in epochs: ``asha.max_t``, else distill's ``epochs`` (the most
        the space allows when ``epochs`` is searched)."""
        if self.asha.max_t is not None:
            return self.asha.max_t
        epochs = [self.distill.epochs]
        if "epochs" in self.space:
            epochs = [int(v) for _, v in self.space["epochs"].representatives()]
        return max(epochs)

    # ---- validation: every problem at once, each located at its space path ------------------

    @model_validator(mode="after")
    def _check(self) -> TuneConfig:
        errors = [
            InitErrorDetails(
                type=PydanticCustomError("tune_config", "{message}", {"message": message}),
                loc=loc,
                input=value,
            )
            for loc, message, value in self._problems()
        ]
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self

    def _problems(self) -> Iterator[tuple[tuple[str | int, ...], str, Any]]:
        """Every problem as (location, message, offending input)."""
        searched: list[tuple[str, Path]] = []
        for path, domain in self.space.items():
            loc = ("space", path)
            try:
                parts = self._searchable(path)
            except PathError as e:
                yield loc, e.reason, domain.shown()
                continue
            inside = next((p for p, q in searched if q[: len(parts)] == parts[: len(q)]), None)
            if inside is not None:
                yield loc, f"overlaps '{inside}' (one lies inside the other); keep one", path
                continue
            searched.append((path, parts))
            refused: dict[str, list[str]] = {}  # reason -> the values refused for it
            for label, value in domain.representatives():
                try:
                    apply(self.distill, {path: value})
                except PathError as e:
                    refused.setdefault(e.reason, []).append(f"{label} {value!r}")
            if refused:
                reasons = [f"{', '.join(values)}: {why}" for why, values in refused.items()]
                yield loc, "distill refuses " + "; and ".join(reasons), domain.shown()
            for message in self._search_problems(domain):
                yield loc, message, domain.shown()
        if self.scheduler == "none" and "asha" in self.model_fields_set:
            yield ("asha",), "`asha` settings are only used with `scheduler: asha`", "asha"
        elif self.scheduler == "asha" and self.asha.grace_period > self.max_t:
            yield (
                ("asha", "grace_period"),
                f"grace_period ({self.asha.grace_period}) exceeds max_t ({self.max_t} epochs"
                + (")" if self.asha.max_t is not None else ", distill's epochs)"),
                self.asha.grace_period,
            )

    def _searchable(self, path: str) -> Path:
        """``path``'s parts in distill; raises `PathError` if a space may not search it."""
        parts = check_path(self.distill, path)
        if format_path(parts) != path:
            raise PathError(
                path,
                f"write it '{format_path(parts)}': list indices in brackets (a space path also "
                "names the trial parameter and its column in the results)",
            )
        if parts[0] in FIXED_FOR_SWEEP:
            raise PathError(
                path,
                f"'{parts[0]}' sizes every trial's resources and is fixed for a sweep; set it "
                "in distill instead of searching it",
            )
        return parts

    def _search_problems(self, domain: SearchDomain) -> Iterator[str]:
        if self.search == "grid" and not isinstance(domain, Grid | Choice):
            yield (
                f"search: grid enumerates values, but this is {domain.shown()}; list values "
                "with {grid: [...]} or {choice: [...]}, or use search: random (samples it, "
                "and crosses any grid domains with the samples)"
            )
        if self.search == "optuna" and isinstance(domain, Grid):
            yield (
                "search: optuna (TPE) samples and cannot enumerate a grid; write "
                f"{{choice: {domain.grid}}} (a categorical), or use search: grid or random"
            )


# ---- ports -------------------------------------------------------------------------------


class TuneInputs(BaseModel):
    """The same inputs as `distill`: every trial trains on them."""

    data: Dataset
    logits: list[LogitShards] | None = Field(
        None,
        description="Cached teacher outputs, one per teacher (from teacher_inference); read "
        "once by the step and shared with every trial through the object store.",
    )
    teachers: list[ModelCheckpoint] | None = Field(
        None, description="Teachers run online in every trial, when no cached logits are given."
    )
    init: ModelCheckpoint | None = Field(
        None, description="Start every student from these weights."
    )


class TuneResults(ArtifactRef):
    """A sweep's record: ``results.parquet`` (one row per trial: its searched values, status,
    metric, epochs run, wall and training seconds, error), ``best_config.json`` and the PNG
    plots named in ``plots`` (``curves.png``: learning curves, stopped trials marked;
    ``heatmap.png``: the metric over alpha x temperature, when both are searched).

    Defined here rather than in `schemas.kd.artifacts` because only `tune` writes it: every other
    component's code fingerprint (and so its cached results) stays as it is.
    """

    metric: str = Field(description="The metric the sweep optimised (e.g. val_accuracy).")
    mode: Literal["max", "min"]
    trials: int = Field(description="Rows of results.parquet: every trial, failed ones included.")
    best_trial: str = Field(description="Name of the selected trial (Tune's trial name).")
    plots: list[str] = Field(default_factory=list, description="PNG files in the folder.")


class TuneOutputs(BaseModel):
    model: ModelCheckpoint = Field(description="The best trial's student (evaluate takes it).")
    best_config: dict[str, Any] = Field(
        description="The best trial's distill config as JSON (fields set in the pipeline plus "
        "the searched values; `DistillConfig.model_validate` reads it back)."
    )
    set_lines: list[str] = Field(
        description="`--set` arguments that put the best values into this tune step's base "
        "config (kdorch run ... --set ...)."
    )
    results: TuneResults
    metrics: dict[str, float] = Field(
        description="The best trial's final metrics plus counts: trials, completed, stopped, "
        "failed."
    )
