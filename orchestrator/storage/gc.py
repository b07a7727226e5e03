"""Housekeeping: what `kdorch gc` may delete, and never a committed result.

Removable: attempt folders of a key that are not its committed attempt (a failed or interrupted
try, or one replaced by `cache: recompute`), leftover resume folders of steps that never
committed, and — only when asked — run records older than N days. Kept always: every committed
attempt and its COMMIT.json, results moved aside for inspection (`COMMIT.json.bad-*`), the step
index. Nothing is removed while a run on this store is still going (`observed_status`), since its
attempt folders look exactly like abandoned ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from orchestrator.errors import ArtifactError, ConfigError, KdorchError
from orchestrator.storage.runs import observed_status
from orchestrator.storage.store import COMMIT_NAME, RESUME_DIR, ArtifactStore
from schemas.engine.run import RunStatus


@dataclass(frozen=True)
class Removal:
    path: str  # store-relative
    why: str
    bytes: int


def _size(store: ArtifactStore, path: str) -> int:
    try:
        return int(store.fs.du(store.fs_path(path), total=True))
    except (FileNotFoundError, OSError):
        return 0


def active_runs(store: ArtifactStore) -> list[str]:
    active = []
    for run_id in store.list_runs():
        try:
            record = store.read_run(run_id)
        except ArtifactError:
            continue
        if observed_status(record) == RunStatus.running:
            active.append(run_id)
    return active


def check_age(runs_older_than_days: float | None) -> None:
    """Refuse an age that would select every record: ``-1`` or ``0`` days puts the cutoff at
    (or after) now, which is never what "delete old run records" means."""
    if runs_older_than_days is not None and not runs_older_than_days > 0:
        raise ConfigError(
            f"--runs-older-than must be a positive number of days, got {runs_older_than_days:g}: "
            "it deletes run records started more than that many days ago "
            "(e.g. --runs-older-than 30; --dry-run lists them first)"
        )


def plan_gc(store: ArtifactStore, runs_older_than_days: float | None = None) -> list[Removal]:
    """Everything `gc` would delete (see the module docstring)."""
    check_age(runs_older_than_days)
    removals: list[Removal] = []
    for prefix in store.listdir("objects"):
        for key in store.listdir(f"objects/{prefix}"):
            base = store.object_dir(key)
            try:
                commit = store.read_commit(key)
            except ArtifactError:
                continue  # unreadable: the next run moves it aside; keep its attempts
            kept = commit.attempt if commit is not None else None
            for name in store.listdir(base):
                if name in (COMMIT_NAME, kept) or name.startswith(f"{COMMIT_NAME}.bad"):
                    continue
                path = f"{base}/{name}"
                if name == RESUME_DIR:
                    why = "resume state of a step that never committed"
                elif commit is None:
                    why = "attempt of a step that failed or was interrupted"
                else:
                    why = "attempt replaced by the committed one"
                removals.append(Removal(path, why, _size(store, path)))
    if runs_older_than_days is not None:
        cutoff = datetime.now(timezone.utc) - timedelta(days=runs_older_than_days)
        for run_id in store.list_runs():
            try:
                record = store.read_run(run_id)
            except ArtifactError:
                continue
            if record.started_at < cutoff and observed_status(record) != RunStatus.running:
                path = store.run_dir(run_id)
                removals.append(
                    Removal(path, f"run record older than {runs_older_than_days:g} days", 0)
                )
    return removals


def collect(
    store: ArtifactStore, runs_older_than_days: float | None = None, dry_run: bool = False
) -> list[Removal]:
    """Delete what `plan_gc` lists (nothing with ``dry_run``); refuses while a run is active."""
    check_age(runs_older_than_days)
    active = active_runs(store)
    if active and not dry_run:
        raise KdorchError(
            f"runs {', '.join(active)} are still going on {store.root}: their attempt folders "
            "look abandoned but are not; run gc when they have finished (or --dry-run)"
        )
    removals = plan_gc(store, runs_older_than_days)
    if not dry_run:
        for removal in removals:
            store.remove(removal.path, recursive=True)
    return removals
