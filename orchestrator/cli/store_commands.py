"""The commands that act on an artifact store: runs, show, gc."""

from __future__ import annotations

from typing import Annotated

import typer

from orchestrator.cli.options import StorageOpt, StorageOptionOpt
from orchestrator.cli.root import err, out
from orchestrator.errors import ArtifactError
from orchestrator.storage.files import resolve_storage
from orchestrator.storage.options import parse_storage_options
from orchestrator.storage.store import ArtifactStore


def _open_records_store(storage: str | None, items: list[str] | None) -> ArtifactStore:
    """The store `runs`, `show` and `gc` read: --storage (else $KDORCH_STORAGE, else ./.kdorch) with
    --storage-option; checked readable first (a wrong endpoint is one clear error)."""
    from orchestrator.storage.options import merge_options
    from orchestrator.storage.probe import check_store
    from schemas.engine.storage import StorageOptions

    options = merge_options(StorageOptions(), parse_storage_options(items or []))
    store = ArtifactStore(resolve_storage(storage, None), options)
    check_store(store, write=False)
    return store


def runs(
    storage: StorageOpt = None,
    storage_option: StorageOptionOpt = None,
    limit: Annotated[int, typer.Option(min=1, help="Show the most recent N runs.")] = 20,
) -> None:
    """List recent runs in the artifact store, with their status and where their report is."""
    from orchestrator.cli.show import print_runs

    print_runs(out, _open_records_store(storage, storage_option), limit)


def show(
    run_id: Annotated[
        str,
        typer.Argument(
            help="A run id (from `kdorch runs`; a unique prefix will do), or 'latest'.",
            metavar="RUN",
            show_default=False,
        ),
    ],
    step: Annotated[
        str | None,
        typer.Argument(help="One step's outputs, metrics and paths.", metavar="STEP"),
    ] = None,
    storage: StorageOpt = None,
    storage_option: StorageOptionOpt = None,
) -> None:
    """Show a run: its steps (status, seconds, outputs), reports and paths; or one step."""
    from orchestrator.cli.show import UnknownStep, show_run, show_step
    from orchestrator.storage.runs import resolve_run_id

    store = _open_records_store(storage, storage_option)
    try:
        record = store.read_run(resolve_run_id(store, run_id))
    except ArtifactError as e:  # no such run: a usage error (exit 2), not a failure
        raise typer.BadParameter(str(e), param_hint="RUN") from None
    if step is None:
        show_run(out, store, record)
        return
    try:
        show_step(out, store, record, step)
    except UnknownStep as e:
        raise typer.BadParameter(str(e), param_hint="STEP") from None


def gc(
    storage: StorageOpt = None,
    storage_option: StorageOptionOpt = None,
    runs_older_than: Annotated[
        float | None,
        typer.Option("--runs-older-than", metavar="DAYS", help="Also delete run records this old."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list what would be deleted.")
    ] = False,
) -> None:
    """Delete attempt folders of failed or interrupted steps (never a committed result)."""
    from orchestrator.storage.gc import collect

    store = _open_records_store(storage, storage_option)
    removals = collect(store, runs_older_than, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    for removal in removals:
        out.print(f"{verb} {removal.path} ({removal.bytes / 2**20:.1f} MB): {removal.why}")
    total = sum(r.bytes for r in removals) / 2**20
    err.print(f"{verb} {len(removals)} folders, {total:.1f} MB, in {store.root}")
