"""The pipeline spec: what a YAML file or the Python builder describes.

Both front ends produce exactly these objects; everything after parsing (validation, planning,
execution) only ever sees a `PipelineSpec`.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from schemas.base import Model
from schemas.engine.storage import StorageOptions

STEP_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
MAX_STEP_ID_LENGTH = 64
"""Step ids name folders, Ray tasks and log lines; file systems refuse names past 255 bytes."""

MatrixValue = str | int | float | bool


def matrix_value_text(value: MatrixValue) -> str:
    """How a matrix value appears in an instance id: ``true``, ``15``, ``0.5``, ``rot``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _as_yaml(value: MatrixValue) -> str:
    """A value as YAML writes it: ``true``, ``3``, and strings quoted (``'true'``)."""
    return repr(value) if isinstance(value, str) else matrix_value_text(value)


def _finite_values(values: Any) -> Any:
    # Before the union validates them: `.inf` would otherwise fail as each of str, int, float
    # and bool in turn, four errors for one mistake.
    if isinstance(values, list):
        for value in values:
            if isinstance(value, float) and not math.isfinite(value):
                shown = ".nan" if math.isnan(value) else ("-.inf" if value < 0 else ".inf")
                raise ValueError(f"matrix values must be finite numbers, got {shown}")
    return values


def _distinct_ids(values: list[MatrixValue]) -> list[MatrixValue]:
    """Every value must give its own instance id; two that read the same would be one step."""
    if not values:
        raise ValueError("a matrix name needs a list of at least one value")
    seen: dict[str, MatrixValue] = {}
    for value in values:
        text = matrix_value_text(value)
        if text in seen:
            first = seen[text]
            if type(first) is type(value) and first == value:
                raise ValueError(f"repeats a value: {value!r}; each value makes one instance")
            raise ValueError(
                f"values {_as_yaml(first)} and {_as_yaml(value)} both read '{text}' in an "
                "instance id "
                f"(step[{text}]), so one instance would silently replace the other; "
                "keep one of them, or make them differ as text"
            )
        seen[text] = value
    return values


MatrixValues = Annotated[
    list[MatrixValue], BeforeValidator(_finite_values), AfterValidator(_distinct_ids)
]


class CachePolicy(str, Enum):
    """How a step uses the content-addressed cache.

    - ``default``: reuse the committed result whose key matches; run and commit otherwise.
    - ``recompute``: always run, then replace the committed result for that key.
    - ``off``: always run and never commit (the outputs still exist for this run's consumers).
    """

    default = "default"
    recompute = "recompute"
    off = "off"


class Resources(Model):
    """What the Ray task that runs a step asks for. ``None`` means the component's default.

    Components that start their own Ray workers (training, tuning, batch inference) size those
    workers in their config; the step task itself then mostly waits and needs little.
    """

    num_cpus: float | None = Field(None, ge=0, description="CPUs reserved for the step's task.")
    num_gpus: float | None = Field(None, ge=0, description="GPUs reserved for the step's task.")
    memory_gb: float | None = Field(None, gt=0, description="Memory reserved, in GiB.")
    custom: dict[str, float] = Field(
        default_factory=dict, description="Custom Ray resources, e.g. {'accelerator_type:A100': 1}."
    )


class RaySettings(Model):
    """Where and how the pipeline runs on Ray."""

    address: str | None = Field(
        None,
        description="Ray cluster to connect to. None: $RAY_ADDRESS if set, else start a local "
        "Ray for the run and shut it down afterwards.",
    )
    connect_timeout_s: float = Field(
        15.0,
        gt=0,
        description="How long to wait for the cluster at `address` to answer before giving up "
        "with a message (a head that is still starting gets the whole wait).",
    )
    num_cpus: int | None = Field(
        None,
        ge=1,
        description="Logical CPUs of an embedded local Ray. Default: max(4, 2 x cores), which "
        "leaves room for Ray Data read tasks beside training workers on small machines.",
    )
    num_gpus: int | None = Field(None, ge=0, description="GPUs of an embedded local Ray.")
    max_parallel_steps: int | None = Field(
        None,
        ge=1,
        description="Most steps running at once. Default: unlimited on a cluster (Ray queues "
        "work by resources); the number of cores on an embedded local Ray, where each training "
        "step brings its own Ray Train workers and data pipeline and more of them than cores "
        "only slow each other down.",
    )
    dashboard: bool = Field(True, description="Start the Ray dashboard with an embedded Ray.")
    dashboard_port: int = Field(8265, ge=0, le=65535)
    namespace: str = "kdorch"
    log_to_driver: bool = Field(
        False,
        description="Forward every Ray worker's output to this console (verbose: Ray Train, "
        "Ray Data and DeepSpeed are chatty). The dashboard keeps the logs either way.",
    )
    runtime_env: dict[str, Any] = Field(
        default_factory=dict,
        description="Ray runtime_env for the run (pip, env_vars, ...); env_vars values are "
        "text: quote numbers ('1').",
    )
    local_cluster: bool = Field(
        True,
        description="With no address: run on the warm local Ray that `kdorch up` started, when "
        "it is up (false: always start an embedded Ray for the run).",
    )

    @model_validator(mode="after")
    def _env_vars_are_text(self) -> RaySettings:
        # Ray refuses anything else with a TypeError deep in ray.init; each one located here.
        env_vars = self.runtime_env.get("env_vars")
        if env_vars is None:
            return self
        where: tuple[str | int, ...] = ("runtime_env", "env_vars")
        if not isinstance(env_vars, dict):
            errors = [_env_error(where, "must be a mapping of NAME: 'value'", env_vars)]
        else:
            errors = [
                _env_error(
                    (*where, str(name)),
                    "environment variables are text: quote the value "
                    f"({name!s}: '{_as_text(value)}')",
                    value,
                )
                for name, value in env_vars.items()
                if not (isinstance(name, str) and isinstance(value, str))
            ]
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self


def _as_text(value: Any) -> str:
    """How a YAML scalar reads as the text an environment variable holds."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _env_error(loc: tuple[str | int, ...], message: str, value: Any) -> InitErrorDetails:
    return InitErrorDetails(
        type=PydanticCustomError("env_vars", "{message}", {"message": message}),
        loc=loc,
        input=value,
    )


class TrackingSettings(Model):
    """Experiment tracking of a run: MLflow runs and TensorBoard curves (docs/tracking.md).

    Off unless the pipeline has a ``tracking:`` block or `kdorch run --track URI` is given.
    """

    uri: str | None = Field(
        None,
        description="MLflow tracking URI: a tracking server (http://host:5000), a database "
        "(sqlite:///path/mlflow.db, postgresql://...) or a folder. None: a SQLite store in "
        "the artifact store, <store>/tracking/mlflow.db (a local store only).",
    )
    experiment: str | None = Field(
        None, description="MLflow experiment of the runs. Default: the pipeline's name."
    )
    log_models: bool = Field(
        False, description="Also upload each trained model's files (weights) to its step's run."
    )
    tensorboard: bool = Field(
        True,
        description="TensorBoard event files per training step, under "
        "<store>/tracking/tensorboard/<pipeline>/<run id>/<step id>.",
    )

    @field_validator("uri")
    @classmethod
    def _no_password(cls, value: str | None) -> str | None:
        # A URI is printed, logged and recorded; a password in it would travel with it.
        if value is not None and "://" in value:
            authority = value.split("://", 1)[1].split("/", 1)[0]
            if "@" in authority and ":" in authority.split("@", 1)[0]:
                raise ValueError(
                    "the tracking URI holds a password; give the bare URI and set "
                    "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or "
                    "MLFLOW_TRACKING_TOKEN) in the environment instead"
                )
        return value


class StepSpec(Model):
    """One node of the pipeline: a registered component, its config and where its inputs come from.

    ``inputs`` maps each input port to a reference ``step_id.output_port`` or a list of them.
    ``step[*].port`` gathers the port of every instance of a matrix step (in matrix order) into
    one list; ``step[value].port`` picks one instance.

    ``matrix`` fans the step out into one step per combination of values; ``${name}`` in the
    config or in input references is replaced by the instance's value (a value that is exactly
    ``${name}`` keeps its type). Instance ids are ``id[value]`` (``id[v1,v2]`` for several names).
    """

    id: str = Field(
        pattern=STEP_ID_PATTERN,
        description=f"Unique step id: a letter or _, then letters, digits or _ (at most "
        f"{MAX_STEP_ID_LENGTH} characters).",
    )
    component: str = Field(description="Registered component key, e.g. 'train'.")
    description: str = ""
    matrix: dict[str, MatrixValues] | None = None
    inputs: dict[str, str | list[str]] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    cache: CachePolicy = CachePolicy.default

    @field_validator("id", mode="before")
    @classmethod
    def _short_id(cls, value: Any) -> Any:
        # Checked before the pattern, so an overlong id gets this message rather than none.
        if isinstance(value, str) and len(value) > MAX_STEP_ID_LENGTH:
            raise ValueError(
                f"step id is {len(value)} characters long; at most {MAX_STEP_ID_LENGTH} are "
                "allowed (ids name folders, Ray tasks and log lines): shorten it and put the "
                "detail under `description:`"
            )
        return value

    @field_validator("cache", mode="before")
    @classmethod
    def _yaml_off_is_false(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `off` as the boolean False; that is what the user wrote.
        return "off" if value is False else value

    @field_validator("matrix")
    @classmethod
    def _matrix_not_empty(
        cls, value: dict[str, list[MatrixValue]] | None
    ) -> dict[str, list[MatrixValue]] | None:
        # Each name's values are checked by `MatrixValues` (located at the name).
        if value is not None and not value:
            raise ValueError("matrix needs at least one name with a list of values")
        return value


class PipelineSpec(Model):
    """A whole pipeline: steps plus where artifacts live and how Ray runs them."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    storage: str | None = Field(
        None,
        description="Artifact store: a local directory or any fsspec URI (s3://bucket/prefix). "
        "Default: $KDORCH_STORAGE, else ./.kdorch in the current directory.",
    )
    storage_options: StorageOptions = Field(
        default_factory=StorageOptions,
        description="How to reach the store: endpoint_url, region, profile, or key/secret (kept "
        "secret; the AWS_* environment variables work too).",
    )
    params: dict[str, MatrixValue] = Field(
        default_factory=dict,
        description="Pipeline parameters: `${name}` in any step's config or inputs takes the "
        "value; change one with `--set params.NAME=VALUE` or a profile.",
    )
    ray: RaySettings = Field(default_factory=RaySettings)
    tracking: TrackingSettings | None = Field(
        None,
        description="Experiment tracking (MLflow, TensorBoard); off when absent "
        "(`kdorch run --track URI` turns it on).",
    )
    profiles: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Named sets of overrides (path: value), applied with --profile NAME.",
    )
    steps: list[StepSpec] = Field(min_length=1)
