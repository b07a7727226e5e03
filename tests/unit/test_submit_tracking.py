"""`kdorch submit --track`: the flag travels in the job's entrypoint, and a request the cluster
could not honour is refused before anything is sent."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from rich.console import Console

from orchestrator.cli.submit import build_entrypoint, submit_job
from orchestrator.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_the_entrypoint_carries_track() -> None:
    line = build_entrypoint("pipelines/hinton_kd.yaml", [], None, None, run_id="j1", track="local")
    assert shlex.split(line)[5:] == ["--run-id", "j1", "--track", "local"]
    assert "--track" not in build_entrypoint("pipelines/hinton_kd.yaml", [], None, None)


@pytest.mark.parametrize("track", ["local", None])
def test_the_default_store_under_an_object_store_is_refused_before_sending(
    track: str | None, tmp_path: Path
) -> None:
    pipeline = tmp_path / "p.yaml"
    body = (ROOT / "tests/resources/good/digits_data.yaml").read_text()
    pipeline.write_text(body if track else "tracking: {}\n" + body)
    with pytest.raises(ConfigError, match=r"--track local: the default MLflow store .* s3://b/k"):
        submit_job(
            pipeline,
            address="http://127.0.0.1:1",  # never reached: the refusal comes first
            overrides=[],
            profile=None,
            storage="s3://b/k",
            wait=False,
            console=Console(file=None),
            working_dir=tmp_path,
            track=track,
        )


def test_a_bad_track_uri_is_refused_before_sending(tmp_path: Path) -> None:
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text((ROOT / "tests/resources/good/digits_data.yaml").read_text())
    with pytest.raises(ConfigError, match=r"--track http://me:\*\*\*@tracker:5000: .* password"):
        submit_job(
            pipeline,
            address="http://127.0.0.1:1",
            overrides=[],
            profile=None,
            storage=str(tmp_path / "store"),
            wait=False,
            console=Console(file=None),
            working_dir=tmp_path,
            track="http://me:secret@tracker:5000",
        )
