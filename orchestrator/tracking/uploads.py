"""Which of a step's artifacts a tracker uploads, and a sweep's trials as rows.

A step's run carries its reports — an evaluation report (``report.md``, ``report.json``, the
plots) and a sweep's record (``results.parquet``, ``best_config.json``, curves) — and, when
``tracking.log_models`` is on, its models' files. Artifacts are told apart by their manifest's
``kind`` (the reference's type name), so the orchestrator needs no import of the components'
vocabulary. Datasets, logit caches and other bulk data are never uploaded. Files are copied
through the store's verified reads.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator.storage.store import ArtifactStore
from orchestrator.tracking.records import clean_name, number, tag_text
from schemas.engine.artifacts import ArtifactRef

REPORT_KINDS = frozenset({"EvalReport", "TuneResults"})
MODEL_KINDS = frozenset({"ModelCheckpoint"})
SWEEP_KIND = "TuneResults"
SWEEP_TABLE = "results.parquet"
#: Columns of a sweep's table that are not a trial's searched values.
TRIAL_FIELDS = frozenset(
    {
        "trial",
        "trial_id",
        "status",
        "epochs",
        "planned_epochs",
        "started_s",
        "ended_s",
        "wall_s",
        "train_s",
        "overhead_s",
        "error",
    }
)


def as_ref(value: Mapping[str, Any]) -> ArtifactRef:
    return ArtifactRef(path=str(value["path"]), data_version=str(value["data_version"]))


def kind_of(store: ArtifactStore, ref: ArtifactRef) -> str:
    return store.manifest(ref).kind


def uploaded(kind: str, log_models: bool) -> bool:
    return kind in REPORT_KINDS or (log_models and kind in MODEL_KINDS)


def copy_files(store: ArtifactStore, ref: ArtifactRef, folder: Path) -> int:
    """The artifact's files (as its manifest lists them, verified) into ``folder``; the count."""
    manifest = store.manifest(ref)
    for entry in manifest.files:
        target = folder.joinpath(*entry.path.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(store.read_file(ref, entry.path))
    return len(manifest.files)


def trial_rows(store: ArtifactStore, ref: ArtifactRef) -> list[dict[str, Any]]:
    """A sweep's trials, one dict per row of its ``results.parquet``."""
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(store.read_file(ref, SWEEP_TABLE)))
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


def param_name(path: str) -> str:
    """A searched path as an MLflow param name, spelled as a step's flattened config spells
    it: ``losses[0].alpha`` -> ``losses.0.alpha``."""
    return clean_name(re.sub(r"\[(\w+)\]", r".\1", path))


def split_trial(
    row: Mapping[str, Any], metric: str
) -> tuple[dict[str, str], dict[str, float], dict[str, str]]:
    """One trial's (params: its searched values, metrics: its result and timings, tags)."""
    results = {metric, f"best_{metric}"}
    params = {
        param_name(k): tag_text(v)
        for k, v in row.items()
        if k not in TRIAL_FIELDS and k not in results
    }
    metrics = {
        k: x
        for k, v in row.items()
        if (k in results or k in TRIAL_FIELDS) and (x := number(v)) is not None
    }
    tags = {
        "kdorch.trial": tag_text(row.get("trial", "")),
        "kdorch.trial_id": tag_text(row.get("trial_id", "")),
        "kdorch.trial_status": tag_text(row.get("status", "")),
    }
    if row.get("error"):
        tags["kdorch.error"] = tag_text(row["error"])
    return params, metrics, tags
