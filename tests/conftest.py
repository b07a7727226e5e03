"""Shared fixtures: one real local Ray per session, a real S3 server on 127.0.0.1, a store dir.

Ray is sized as STACK-NOTES.md says for 2-core machines (4 logical CPUs: room for Ray Data
read tasks beside training workers). Worker processes inherit this environment, so they can
import the test components named in KDORCH_PLUGINS.

`KDORCH_TEST_OTHER_RAY=1 python -m pytest` runs the whole suite with a second, unrelated Ray
instance alive on the machine (`other_ray`); tests/integration/test_shared_machine.py always
does.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.execution.ray_session import EMBEDDED_ENV

ROOT = Path(__file__).resolve().parent.parent
TEST_ENV = {
    **EMBEDDED_ENV,  # the session cluster is tuned like the CLI's embedded one
    "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
    "KDORCH_PLUGINS": "tests.support.toy_components",
    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "RAY_metrics_report_interval_ms": "500",  # metrics reach Prometheus text within a second
}
os.environ.update(TEST_ENV)
# Everything the session and its subprocesses put in the temp dir (Ray's session folders, the
# dashboard's pymp-* folders, checkpoint scratch of killed workers) lands in one folder that is
# removed at the end. Short: Ray's unix socket paths under it must stay under ~107 characters.
SESSION_TMP = Path(tempfile.mkdtemp(prefix="kdt-", dir="/tmp"))
os.environ["TMPDIR"] = str(SESSION_TMP)
tempfile.tempdir = None  # forget the cached default; the next call reads TMPDIR
# DeepSpeed compiles its CPU comm op once (~40 s); keep the build between test sessions.
os.environ.setdefault(
    "TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "kdorch-torch-extensions")
)
os.environ.pop("RAY_ADDRESS", None)
os.environ.pop("KDORCH_STORAGE", None)
os.environ["KDORCH_HOME"] = str(SESSION_TMP / "home")  # a developer's `kdorch up` stays out
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import tests.support.toy_components  # noqa: E402,F401  (registers the toy components)
from tests.support.other_ray import OtherRay, other_ray_instance  # noqa: E402


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(SESSION_TMP, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_temp_dir() -> Iterator[Path]:
    yield Path(tempfile.mkdtemp(prefix="r-"))


@pytest.fixture(scope="session")
def ray_metrics_port() -> int:
    """Where the session cluster's node exports metrics in Prometheus text."""
    return _free_port()


@pytest.fixture(scope="session")
def ray_context(ray_temp_dir: Path, ray_metrics_port: int) -> Iterator[object]:
    """A real local Ray for the whole session, with its dashboard (state API, Jobs API) and
    a metrics export port (`ray_metrics_port`)."""
    import ray

    context = ray.init(
        _metrics_export_port=ray_metrics_port,
        address="local",
        num_cpus=4,
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        dashboard_port=_free_port(),
        _temp_dir=str(ray_temp_dir),
        namespace="kdorch-tests",
        log_to_driver=False,
    )
    try:
        yield context
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def other_ray(request: pytest.FixtureRequest) -> Iterator[OtherRay]:
    """A second, unrelated Ray on this machine (see tests/support/other_ray.py), for the
    module that asks for it — or the whole session with KDORCH_TEST_OTHER_RAY=1; stopped by
    killing only its own processes. (While it runs, jobs submitted to the session cluster fail
    to fetch their working_dir package from the GCS: a Ray 2.60 limit of two clusters on one
    machine, stated in docs/ray.md, "A shared machine".)"""
    if os.environ.get("KDORCH_TEST_OTHER_RAY") == "1":
        yield request.getfixturevalue("_session_other_ray")
        return
    with other_ray_instance() as instance:
        yield instance


@pytest.fixture(scope="session")
def _session_other_ray() -> Iterator[OtherRay]:
    with other_ray_instance() as instance:
        yield instance


@pytest.fixture(scope="session", autouse=True)
def _other_ray_for_everyone(request: pytest.FixtureRequest) -> None:
    if os.environ.get("KDORCH_TEST_OTHER_RAY") == "1":
        request.getfixturevalue("_session_other_ray")


@pytest.fixture(scope="session")
def ray_cluster(ray_context: object) -> str:
    """The session cluster's GCS address (for `--address` in CLI subprocesses)."""
    return ray_context.address_info["gcs_address"]  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def ray_dashboard(ray_context: object) -> str:
    return "http://" + ray_context.dashboard_url  # type: ignore[attr-defined]


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server() -> Iterator[dict]:
    """A real S3-compatible server (moto) on 127.0.0.1 with a bucket 'kdorch-test'."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    options = {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": endpoint}}
    import s3fs

    fs = s3fs.S3FileSystem(**options)
    fs.mkdir("kdorch-test")
    try:
        yield {"endpoint": endpoint, "bucket": "kdorch-test", "storage_options": options}
    finally:
        server.stop()
