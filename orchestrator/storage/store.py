"""The artifact store: a folder tree on any fsspec filesystem (local disk, s3://, ...).

Layout under the root (every path in a record is relative to it, so a store can be moved or
copied — local <-> s3 — and stays valid)::

    objects/<key[:2]>/<key>/<attempt>/<port>/...   data a step wrote, one folder per attempt
    objects/<key[:2]>/<key>/COMMIT.json             written last: the step's committed result
    objects/<key[:2]>/<key>/_resume/...             a training step's resumable state
    runs/<run_id>/run.json, events/NNNNNN.jsonl     the run record and its events
    index/<pipeline>/<step>.json                    the key each step last committed (plan's "why")

Writes are ordered so that a crash never leaves something a later run would trust: a
component writes its files into a fresh attempt folder, then each artifact's `_manifest.json`
(every file's size and hash) is written, then COMMIT.json. Single-object writes are atomic (a
temp file renamed on local disk; one PUT on object stores).

Artifacts are sealed and read back verified by `VerifiedStore` (orchestrator/storage/verified.py);
every path is checked to stay under the root (`FileStore`, orchestrator/storage/files.py).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time

from orchestrator.errors import ArtifactError
from orchestrator.storage.files import safe_segment
from orchestrator.storage.verified import VerifiedStore
from schemas.engine.run import CommitRecord, RunRecord

log = logging.getLogger("kdorch")

COMMIT_NAME = "COMMIT.json"
RESUME_DIR = "_resume"


def new_attempt_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


class ArtifactStore(VerifiedStore):
    """The store a run reads and writes: steps' committed results (over `VerifiedStore`'s
    sealed artifacts), run records and events, and the index of what each step last committed."""

    # -- step results -----------------------------------------------------------------------------
    @staticmethod
    def object_dir(key: str) -> str:
        return f"objects/{key[:2]}/{key}"

    def attempt_dir(self, key: str, attempt: str) -> str:
        return f"{self.object_dir(key)}/{attempt}"

    def resume_dir(self, key: str) -> str:
        """State a step may resume from after a crash; the same for every attempt of a key."""
        return f"{self.object_dir(key)}/{RESUME_DIR}"

    def commit_path(self, key: str) -> str:
        return f"{self.object_dir(key)}/{COMMIT_NAME}"

    def read_commit(self, key: str) -> CommitRecord | None:
        """The committed record of ``key``; None if there is none. An unreadable record raises
        `ArtifactError` (the caller moves it aside with `quarantine`)."""
        try:
            data = self.read_bytes(self.commit_path(key))
        except FileNotFoundError:
            return None
        try:
            return CommitRecord.model_validate_json(data)
        except ValueError as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ArtifactError(f"{self.uri(self.commit_path(key))} is unreadable: {first}") from e

    def write_commit(self, record: CommitRecord) -> None:
        self.write_bytes(self.commit_path(record.key), record.model_dump_json(indent=1).encode())

    def quarantine(self, key: str, why: str) -> str | None:
        """Move a bad COMMIT.json aside (kept for inspection) so the step runs again.

        Returns where it went, or None when there was nothing to move."""
        source = self.commit_path(key)
        target = f"{self.object_dir(key)}/{COMMIT_NAME}.bad-{time.strftime('%Y%m%d-%H%M%S')}"
        try:
            self.move(source, target)
        except FileNotFoundError:
            return None
        with contextlib.suppress(Exception):
            self.write_bytes(f"{target}.why.txt", why.encode())
        log.warning(
            "moved the bad result of key %s aside to %s (%s); its step will run again",
            key[:16],
            self.uri(target),
            why,
        )
        return target

    # -- run records ------------------------------------------------------------------------------
    @staticmethod
    def run_dir(run_id: str) -> str:
        return f"runs/{safe_segment(run_id)}"

    def write_run(self, record: RunRecord) -> None:
        self.write_bytes(
            f"{self.run_dir(record.run_id)}/run.json",
            record.model_dump_json(indent=1).encode(),
            durable=False,
        )

    def append_events(self, run_id: str, chunk: int, lines: list[str]) -> None:
        """Events are append-only: each flush adds one numbered JSON-lines file."""
        self.write_bytes(
            f"{self.run_dir(run_id)}/events/{chunk:06d}.jsonl",
            "".join(lines).encode(),
            durable=False,
        )

    def read_run(self, run_id: str) -> RunRecord:
        try:
            return RunRecord.model_validate_json(
                self.read_bytes(f"{self.run_dir(run_id)}/run.json")
            )
        except FileNotFoundError:
            raise ArtifactError(f"no run '{run_id}' in {self.root}") from None
        except ValueError as e:
            raise ArtifactError(f"the record of run '{run_id}' is unreadable: {e}") from e

    def list_runs(self) -> list[str]:
        return self.listdir("runs")

    # -- the step index (what each step last committed; for plan's reasons) ---------------------
    @staticmethod
    def index_path(pipeline: str, step_id: str) -> str:
        return f"index/{safe_segment(pipeline)}/{safe_segment(step_id)}.json"

    def write_index(self, pipeline: str, step_id: str, key: str) -> None:
        self.write_json(
            self.index_path(pipeline, step_id), {"step_id": step_id, "key": key}, durable=False
        )

    def read_index(self, pipeline: str, step_id: str) -> str | None:
        try:
            data = self.read_json(self.index_path(pipeline, step_id))
        except (FileNotFoundError, ArtifactError):
            return None
        key = data.get("key") if isinstance(data, dict) else None
        return key if isinstance(key, str) else None
