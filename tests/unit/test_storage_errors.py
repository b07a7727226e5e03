"""A store that cannot be used is refused before any step runs, one message per cause, exit 2."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.errors import StorageError
from orchestrator.storage.files import resolve_storage
from orchestrator.storage.probe import check_store
from orchestrator.storage.store import ArtifactStore


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once the socket is closed


def test_unreachable_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    options = {"key": "k", "secret": "s", "endpoint_url": endpoint, "options": {"retries": 0}}
    store = ArtifactStore("s3://some-bucket/x", {**options, "options": {}})
    with pytest.raises(StorageError, match=f"the endpoint {endpoint} is unreachable"):
        check_store(store, write=False)


def test_missing_bucket(s3_server: dict) -> None:
    store = ArtifactStore("s3://no-such-bucket/x", s3_server["storage_options"])
    with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist"):
        check_store(store, write=True)


def test_missing_credentials(
    s3_server: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    store = ArtifactStore(f"s3://{s3_server['bucket']}/x", {"endpoint_url": s3_server["endpoint"]})
    with pytest.raises(StorageError, match="no credentials were found"):
        check_store(store, write=False)


def test_a_writable_store_passes_and_plan_creates_nothing(tmp_path: Path, s3_server: dict) -> None:
    check_store(
        ArtifactStore(f"s3://{s3_server['bucket']}/ok", s3_server["storage_options"]), write=True
    )
    check_store(ArtifactStore(str(tmp_path / "local")), write=False)
    assert not (tmp_path / "local").exists()


def test_a_bucketless_uri_is_refused() -> None:
    with pytest.raises(StorageError, match="names no bucket"):
        resolve_storage("s3://", None)


def test_storage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as code:
        main(["plan", "pipelines/hinton_kd.yaml", "--storage", "s3://"])
    assert code.value.code == 2
    assert "names no bucket" in capsys.readouterr().err
