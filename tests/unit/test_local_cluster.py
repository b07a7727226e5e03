"""The warm local Ray's state file and what a run makes of it, without starting Ray (the real
`kdorch up` / `run` / `down` is tests/integration/test_local_cluster.py)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from pathlib import Path

import pytest

from orchestrator.execution import local_cluster
from orchestrator.execution.local_cluster import (
    DRIVER_CWD,
    LocalCluster,
    driver_environment,
    driver_runtime_env,
    kdorch_home,
    not_usable,
    processes_under,
    read_state,
    state_file,
    warm_cluster,
)
from tests.support.cli import kdorch

CLUSTER = LocalCluster(
    address="127.0.0.1:1",
    dashboard_url="http://127.0.0.1:2",
    temp_dir="/tmp/kdorch-up-gone-for-good",
    pids=[1],
    num_cpus=4,
    num_gpus=0,
    ray_version=local_cluster.ray_version(),
    python=local_cluster.python_version(),
    started_at="now",
)


def test_the_state_file_lives_in_kdorch_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KDORCH_HOME", str(tmp_path / "k"))
    assert state_file() == tmp_path / "k" / "local_cluster.json"
    monkeypatch.delenv("KDORCH_HOME")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "x"))
    assert kdorch_home() == tmp_path / "x" / "kdorch"


def test_the_state_round_trips_and_garbage_is_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "local_cluster.json"
    assert read_state(path) is None  # no file: no cluster, no message
    CLUSTER.write(path)
    assert read_state(path) == CLUSTER
    path.write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="kdorch"):
        assert read_state(path) is None
    assert "it is unreadable" in caplog.text and "`kdorch down` removes it" in caplog.text
    path.write_text(json.dumps({"address": "x"}))
    assert read_state(path) is None


def test_a_stale_or_foreign_cluster_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert "none of its processes is running" in (not_usable(CLUSTER) or "")
    assert "Ray 0.0.1" in (not_usable(replace(CLUSTER, ray_version="0.0.1")) or "")
    assert "Python 2.7" in (not_usable(replace(CLUSTER, python="2.7")) or "")
    monkeypatch.setenv("KDORCH_HOME", str(tmp_path))
    CLUSTER.write(state_file())
    with caplog.at_level(logging.WARNING, logger="kdorch"):
        assert warm_cluster() is None
    assert "is not usable: none of its processes is running" in caplog.text
    assert "This run starts an embedded Ray" in caplog.text


def test_only_a_long_temp_dir_names_processes() -> None:
    assert processes_under("") == [] and processes_under("/tmp") == []
    assert processes_under("/tmp/kdorch-up-gone-for-good") == []


def test_a_warm_run_gives_its_workers_the_drivers_code_and_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KDORCH_PLUGINS", "my.plugins")
    env = driver_runtime_env({"env_vars": {"A": "1", "KDORCH_PLUGINS": "mine"}, "pip": ["x"]})
    assert env is not None and env["pip"] == ["x"]
    assert env["env_vars"]["A"] == "1"
    assert env["env_vars"]["KDORCH_PLUGINS"] == "mine"  # the pipeline's own value wins
    assert env["env_vars"][DRIVER_CWD] == os.getcwd()
    assert env["worker_process_setup_hook"].endswith("local_cluster.worker_setup")


def test_a_head_started_in_the_drivers_environment_needs_no_runtime_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", "/my/code")
    monkeypatch.delenv("KDORCH_PLUGINS", raising=False)
    same = replace(CLUSTER, extra={"driver_environment": driver_environment()})
    assert driver_environment() == {
        "PYTHONPATH": "/my/code",
        "KDORCH_PLUGINS": None,
        DRIVER_CWD: os.getcwd(),
    }
    assert driver_runtime_env(None, same) is None  # its workers inherit all of it
    assert driver_runtime_env({}, same) is None
    # Anything else keeps the runtime env that gives the workers the driver's environment:
    # the pipeline's own, another directory, another variable, a head that recorded nothing.
    assert driver_runtime_env({"pip": ["x"]}, same) == {
        "pip": ["x"],
        "env_vars": {"PYTHONPATH": "/my/code", DRIVER_CWD: os.getcwd()},
        "worker_process_setup_hook": "orchestrator.execution.local_cluster.worker_setup",
    }
    monkeypatch.chdir(tmp_path)
    elsewhere = driver_runtime_env(None, same)
    assert elsewhere is not None and elsewhere["env_vars"][DRIVER_CWD] == str(tmp_path)
    monkeypatch.chdir(same.extra["driver_environment"][DRIVER_CWD])
    monkeypatch.setenv("KDORCH_PLUGINS", "my.plugins")
    plugins = driver_runtime_env(None, same)
    assert plugins is not None and plugins["env_vars"]["KDORCH_PLUGINS"] == "my.plugins"
    monkeypatch.delenv("KDORCH_PLUGINS")
    assert driver_runtime_env(None, same) is None
    assert driver_runtime_env(None, CLUSTER) is not None  # a state file from before
    assert driver_runtime_env(None, None) is not None


def test_down_without_a_cluster_and_with_an_unreadable_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KDORCH_HOME", str(tmp_path))
    assert kdorch("down") == 0
    assert "no warm local Ray is up" in capsys.readouterr().err
    state_file().write_text("garbage")
    assert kdorch("down") == 0
    assert "removed the unreadable state file" in capsys.readouterr().err
    assert not state_file().exists()
