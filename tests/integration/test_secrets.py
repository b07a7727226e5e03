"""Credentials never reach the store: a recognisable fake secret, a whole pipeline on a real
S3-compatible server (which accepts any key), then every object under the store is searched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchestrator import Pipeline, run
from orchestrator.storage.cache import key_material
from schemas.kd.components.dataset import DatasetConfig

pytestmark = pytest.mark.ray

SECRET = "FAKE-SECRET-kdorch-7x9q2v"
KEY_ID = "FAKEKEYIDkdorch42"


def test_no_credential_is_written_anywhere(ray_cluster: str, s3_server: dict) -> None:
    import s3fs

    options = {"key": KEY_ID, "secret": SECRET, "endpoint_url": s3_server["endpoint"]}
    fs = s3fs.S3FileSystem(**s3_server["storage_options"])
    rng = np.random.default_rng(0)
    table = pa.table(
        {"a": rng.normal(size=120), "b": rng.normal(size=120), "y": np.arange(120) % 3}
    )
    with fs.open(f"{s3_server['bucket']}/secret-src/t.parquet", "wb") as f:
        pq.write_table(table, f)

    p = Pipeline(
        "secrets", storage=f"s3://{s3_server['bucket']}/secret-store", storage_options=options
    )
    data = p.add(
        "data",
        "dataset",
        config={
            "source": "parquet",
            "uri": f"s3://{s3_server['bucket']}/secret-src/t.parquet",
            "storage_options": options,
            "features": ["a", "b"],
            "label": "y",
        },
    )
    p.add(
        "teacher",
        "train",
        inputs={"data": data.dataset},
        config={"model": {"arch": "mlp", "hidden": [8]}, "epochs": 1},
    )
    record = run(p.spec)
    assert record.status.value == "succeeded", [s.error for s in record.steps]
    assert SECRET not in record.model_dump_json() and KEY_ID not in record.model_dump_json()
    objects = fs.find(f"{s3_server['bucket']}/secret-store")
    assert len(objects) > 10  # records, commits, manifests, data
    for path in objects:
        content = fs.cat_file(path)
        assert SECRET.encode() not in content and KEY_ID.encode() not in content, path


def test_rotating_a_key_keeps_the_cache_key() -> None:
    base = {"source": "parquet", "uri": "s3://b/t.parquet", "label": "y"}
    one = DatasetConfig(**base, storage_options={"key": "a", "secret": "b"})
    two = DatasetConfig(**base, storage_options={"key": "c", "secret": "d", "profile": "p"})
    material = key_material("dataset", "2", one, {})
    assert material == key_material("dataset", "2", two, {})
    assert "storage_options" not in material["config"]
    assert "**********" in repr(one.storage_options) and "b'" not in repr(one.storage_options)


def test_secrets_in_untyped_options_are_refused() -> None:
    with pytest.raises(ValueError, match="may not carry credentials"):
        DatasetConfig(
            source="parquet",
            uri="s3://b/t",
            storage_options={"client_kwargs": {"aws_secret_access_key": SECRET}},
        )


def test_the_secret_is_redacted_in_the_spec_dump(tmp_path: Path) -> None:
    config = DatasetConfig(
        source="parquet", uri="s3://b/t", storage_options={"key": KEY_ID, "secret": SECRET}
    )
    assert SECRET not in config.model_dump_json() and KEY_ID not in config.model_dump_json()
