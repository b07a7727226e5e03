"""What a running component may ask of the orchestrator: where to write, and how to log."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from orchestrator.storage.store import ArtifactStore
from schemas.engine.pipeline import Resources

log = logging.getLogger("kdorch")


class StepContext:
    """Handed to `Component.run`. Components never choose paths: they ask for `output_path`
    and read and write through `store` (the typed readers in `components.artifacts` do)."""

    def __init__(
        self,
        *,
        store: ArtifactStore,
        step_id: str,
        component: str,
        key: str,
        run_id: str,
        attempt: str,
        resources: Resources,
        progress: Callable[[str, str], None] | None = None,
    ):
        self.store = store
        self.step_id = step_id
        self.component = component
        self.key = key
        self.run_id = run_id
        self.attempt = attempt
        self.resources = resources
        self.progress = progress

    def output_path(self, port: str) -> str:
        """A fresh store folder for output ``port`` of this attempt (relative to the root)."""
        path = f"{self.store.attempt_dir(self.key, self.attempt)}/{port}"
        self.store.makedirs(path)
        return path

    def work_path(self, name: str) -> str:
        """A store folder for this attempt's working state (e.g. Ray Train checkpoints), not an
        output: it lives beside the outputs (a cluster's workers reach it) and is not sealed."""
        path = f"{self.store.attempt_dir(self.key, self.attempt)}/_work/{name}"
        self.store.makedirs(path)
        return path

    def resume_path(self, name: str) -> str:
        """A store folder that outlives the attempt: a retried or re-run step with the same key
        finds what an earlier attempt left there (training checkpoints to resume from)."""
        return f"{self.store.resume_dir(self.key)}/{name}"

    def log(self, message: str, *args: Any) -> None:
        """A progress line: in the step's log, and live on the console running the pipeline."""
        text = message % args if args else message
        log.info("[%s] %s", self.step_id, text)
        if self.progress is not None:
            self.progress(self.step_id, text)
