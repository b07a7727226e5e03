"""Typed references to artifacts in the store.

A reference names where the data lives (``path``, relative to the store's root, so a store can
be moved or copied between disks and buckets and stays valid) and what it is (``data_version``:
the sha256 of the artifact's manifest, which lists every file with its size and hash).
Downstream cache keys use data versions, never paths, so identical data recomputed elsewhere
does not invalidate anything that consumed it.

Components never open these paths themselves: the typed readers and writers in
`components.artifacts` go through the store, which verifies every read against the manifest.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from schemas.base import Model

MANIFEST_NAME = "_manifest.json"


class FileEntry(Model):
    """One file of an artifact, as listed in its manifest."""

    path: str = Field(description="Path relative to the artifact's uri, '/'-separated.")
    size: int
    sha256: str
    rows: int | None = Field(None, description="Row count, for Parquet files.")
    arrow_schema: str | None = Field(None, description="Arrow schema, for Parquet files.")


class Manifest(Model):
    """What `_manifest.json` holds. Written after all data files, so its presence means complete."""

    format: int = 1
    kind: str
    files: list[FileEntry]
    metadata: dict[str, Any] = Field(default_factory=dict)


class ArtifactRef(Model):
    """A directory of files in the artifact store, sealed by a manifest.

    Components create the files under a folder the step context gives them
    (`StepContext.output_path`) and return a reference with an empty ``data_version``; the
    executor seals it (hashes the files, writes the manifest) and fills ``data_version`` in
    before anyone downstream sees it.
    """

    path: str = Field(description="Folder of the artifact, relative to the store's root.")
    data_version: str = ""

    @property
    def manifest_path(self) -> str:
        return f"{self.path}/{MANIFEST_NAME}"

    def file(self, name: str) -> str:
        """The store path of one file of this artifact."""
        return f"{self.path}/{name}"


class JsonArtifact(ArtifactRef):
    """A small JSON document (metrics, chosen hyper-parameters, ...)."""
