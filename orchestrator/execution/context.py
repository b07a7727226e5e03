"""What a running component may ask of the orchestrator: where to write, and how to log."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from orchestrator.errors import StorageError
from orchestrator.storage.store import ArtifactStore
from schemas.pipeline import Resources

log = logging.getLogger("kdorch")


class StepContext:
    """Handed to `Component.run`. Components never choose paths: they ask for `output_uri`."""

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
    ):
        self.store = store
        self.step_id = step_id
        self.component = component
        self.key = key
        self.run_id = run_id
        self.attempt = attempt
        self.resources = resources
        self._scratch: Path | None = None

    @property
    def fs(self) -> Any:
        """The store's fsspec filesystem (use with paths from `output_uri`)."""
        return self.store.fs

    @property
    def storage_options(self) -> dict[str, Any]:
        return self.store.storage_options

    def output_uri(self, port: str) -> str:
        """A fresh folder for output ``port`` of this attempt (created on local disk)."""
        uri = f"{self.store.attempt_dir(self.key, self.attempt)}/{port}"
        self.store.makedirs(uri)
        return uri

    def work_uri(self, name: str) -> str:
        """A folder for this attempt's working state (e.g. Ray Train checkpoints), not an output.

        It lives in the store (so a cluster's workers can reach it) beside the outputs, and is
        neither sealed nor part of the step's result.
        """
        uri = f"{self.store.attempt_dir(self.key, self.attempt)}/_work/{name}"
        self.store.makedirs(uri)
        return uri

    def local_output_dir(self, port: str) -> Path:
        """`output_uri` as a local Path; only for local stores (else write through `fs`)."""
        uri = self.output_uri(port)
        if not self.store.is_local:
            raise StorageError(
                f"step '{self.step_id}' asked for a local folder but the store is "
                f"{self.store.root}; write through ctx.fs instead"
            )
        return Path(uri)

    def scratch_dir(self) -> Path:
        """A private local temp folder, removed when the step ends."""
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix=f"kdorch-{self.key[:8]}-"))
        return self._scratch

    def log(self, message: str, *args: Any) -> None:
        log.info(f"[{self.step_id}] {message}", *args)

    def cleanup(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None
