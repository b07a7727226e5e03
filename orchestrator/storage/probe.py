"""Is the store usable? Checked before any step runs, with one message per kind of failure.

Endpoint unreachable, credentials missing, credentials refused, bucket missing, no write
permission: each gets its own `StorageError` naming the URI and the fix, so a misconfigured
store stops the run at once (exit code 2) instead of failing inside the first step.
"""

from __future__ import annotations

import secrets
from typing import Any

from orchestrator.errors import StorageError
from orchestrator.storage.store import ArtifactStore

_FIX_CREDENTIALS = (
    "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in the environment, a `profile`, or "
    "`key`/`secret` in storage_options"
)


def _chain(error: BaseException | None) -> list[BaseException]:
    out: list[BaseException] = []
    while error is not None and len(out) < 8:
        out.append(error)
        error = error.__cause__ or error.__context__
    return out


def classify(error: BaseException, store: ArtifactStore, action: str) -> StorageError:
    """A `StorageError` that says which kind of failure ``error`` is and what to do."""
    names = {type(e).__name__ for e in _chain(error)}
    text = " | ".join(str(e) for e in _chain(error))
    where = store.root
    endpoint = store.options.endpoint_url or store.options.client_kwargs.get("endpoint_url")
    if names & {"EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError"} or (
        "Could not connect" in text or "Cannot connect" in text
    ):
        return StorageError(
            f"artifact store {where}: the endpoint {endpoint or '(default AWS)'} is unreachable; "
            "check `endpoint_url` in storage_options and that the server is running"
        )
    if "NoCredentialsError" in names or "Unable to locate credentials" in text:
        return StorageError(
            f"artifact store {where}: no credentials were found; {_FIX_CREDENTIALS}"
        )
    refused = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken")
    if any(code in text for code in refused):
        return StorageError(
            f"artifact store {where}: the credentials were refused ({_first(text, refused)}); "
            f"check them ({_FIX_CREDENTIALS})"
        )
    if "NoSuchBucket" in text or (isinstance(error, FileNotFoundError) and action == "bucket"):
        bucket = where.split("://", 1)[1].split("/", 1)[0]
        return StorageError(
            f"artifact store {where}: bucket '{bucket}' does not exist; create it (e.g. "
            f"`aws s3 mb s3://{bucket}`) or fix the storage URI"
        )
    if isinstance(error, PermissionError) or "AccessDenied" in text or "Forbidden" in text:
        return StorageError(
            f"artifact store {where}: permission denied while trying to {action}; the "
            "credentials need read and write access to this prefix"
        )
    return StorageError(f"artifact store {where}: cannot {action}: {type(error).__name__}: {text}")


def _first(text: str, codes: tuple[str, ...]) -> str:
    return next(c for c in codes if c in text)


def _quick(store: ArtifactStore) -> Any:
    """The store's filesystem, but one that gives up at once: a dead endpoint is reported in
    a second instead of after a minute of retries."""
    import fsspec

    options = store.options.to_fsspec()
    if store.root.startswith(("s3://", "s3a://")):
        options["config_kwargs"] = {
            **options.get("config_kwargs", {}),
            "retries": {"max_attempts": 1},
            "connect_timeout": 5,
        }
        options["skip_instance_cache"] = True
    fs, _ = fsspec.core.url_to_fs(store.root, **options)
    if hasattr(fs, "retries"):
        fs.retries = 1
    return fs


def _check_local_folder(root: str) -> None:
    """A local store must be a folder, or a path that can become one: no file in the way."""
    from pathlib import Path

    path = Path(root)
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        where = "is a file" if existing == path else f"lies under {existing}, which is a file"
        raise StorageError(
            f"artifact store {root} {where}, not a folder: give --storage (or `storage:`) a "
            "folder, which is created when missing"
        )


def check_store(store: ArtifactStore, *, write: bool) -> None:
    """Raise a `StorageError` unless the store can be read (and, with ``write``, written).

    A local store is created when it will be written; `kdorch plan` creates nothing.
    """
    try:
        _ = store.fs  # opens the filesystem: a bad URI or option fails here
    except StorageError:
        raise
    except Exception as e:
        raise classify(e, store, "open it") from e
    if store.is_local:
        _check_local_folder(store.root)
        if write:
            try:
                store.makedirs("runs")
            except OSError as e:
                raise StorageError(f"artifact store {store.root} cannot be created: {e}") from e
        return
    bucket = store.root.split("://", 1)[1].split("/", 1)[0]
    try:
        _quick(store).info(bucket)
    except Exception as e:
        raise classify(e, store, "bucket") from e
    if write:
        probe = f"runs/.write-probe-{secrets.token_hex(4)}"
        try:
            store.write_bytes(probe, b"")
        except Exception as e:
            raise classify(e.__cause__ or e, store, "write") from e
        store.remove(probe)
