"""Where a run is tracked: the pipeline's ``tracking:`` block and `kdorch run --track URI`,
resolved against the run's artifact store.

- ``--track URI`` turns tracking on (with the block's other settings, or the defaults) and
  names the MLflow tracking URI; ``--track local`` is the default local store.
- No URI: a SQLite database in the artifact store, ``<store>/tracking/mlflow.db``, with the
  runs' files under ``<store>/tracking/artifacts`` — only for a local store (SQLite needs a
  file on this machine; an object store needs a tracking server).
- A folder path is MLflow's file store there; ``*.db`` a SQLite file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from orchestrator.errors import ConfigError
from orchestrator.storage.store import ArtifactStore
from schemas.engine.pipeline import TrackingSettings

LOCAL = "local"
DEFAULT_DB = "tracking/mlflow.db"
DEFAULT_ARTIFACTS = "tracking/artifacts"


class TrackingUnavailable(ConfigError):
    """The tracking server or store cannot be reached or used (nothing ran)."""


@dataclass(frozen=True)
class TrackingTarget:
    """A run's tracking, resolved: the MLflow URI and experiment, and what else it records."""

    uri: str
    experiment: str
    #: Where a new experiment keeps its runs' files (the default store: beside its database);
    #: None leaves it to the tracking server.
    artifact_location: str | None
    log_models: bool
    tensorboard: bool

    @property
    def is_server(self) -> bool:
        return self.uri.startswith(("http://", "https://"))


def requested(spec_settings: TrackingSettings | None, track: str | None) -> TrackingSettings | None:
    """The settings in force: the block, with ``--track`` (when given) as its URI; None: off."""
    if track is None:
        return spec_settings
    base = spec_settings or TrackingSettings()
    uri = None if track.strip() == LOCAL else track.strip()
    try:
        return TrackingSettings.model_validate({**base.model_dump(), "uri": uri})
    except ValidationError as e:
        reason = e.errors()[0]["msg"].removeprefix("Value error, ")
        raise ConfigError(f"--track {masked(track)}: {reason}") from None


def masked(uri: str) -> str:
    """``uri`` with the password of its authority (``user:password@``) replaced by ``***``."""
    return re.sub(r"^(\w[\w+.-]*://[^/@:]*):[^/@]*@", r"\1:***@", uri.strip())


def _uri_of(value: str) -> str:
    """A URI MLflow takes: schemes as they are, a ``*.db`` path as SQLite, a folder path as
    MLflow's file store (absolute: the run may change directory)."""
    if "://" in value or value.startswith(("databricks", "sqlite:")):
        return value
    path = Path(value).expanduser().resolve()
    return f"sqlite:///{path}" if path.suffix == ".db" else path.as_uri()


def resolve(
    settings: TrackingSettings | None, store: ArtifactStore, pipeline: str
) -> TrackingTarget | None:
    """The run's `TrackingTarget`; None when tracking is off. A default store under an object
    store is refused with what to do instead (`TrackingUnavailable`)."""
    if settings is None:
        return None
    experiment = settings.experiment or pipeline
    if settings.uri:
        uri, artifacts = _uri_of(settings.uri), None
        if uri.startswith("sqlite:///"):  # a new experiment's files beside its database
            artifacts = (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").as_uri()
    else:
        if not store.is_local:
            raise TrackingUnavailable(
                f"tracking: the default MLflow store is a SQLite file inside the artifact store, "
                f"but this run's store is {store.root}, not a local folder. Give a tracking "
                "server: `tracking: {uri: http://HOST:5000}` in the pipeline or "
                "`--track http://HOST:5000` (docs/tracking.md)"
            )
        database = Path(store.fs_path(DEFAULT_DB))
        database.parent.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{database}"
        artifacts = Path(store.fs_path(DEFAULT_ARTIFACTS)).as_uri()
    return TrackingTarget(
        uri=uri,
        experiment=experiment,
        artifact_location=artifacts,
        log_models=settings.log_models,
        tensorboard=settings.tensorboard,
    )
