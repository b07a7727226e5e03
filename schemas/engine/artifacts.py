"""Typed references to artifacts in the store.

A reference names where the data lives (``path``, relative to the store's root, so a store can
be moved or copied between disks and buckets and stays valid) and what it is (``data_version``:
the sha256 of the artifact's manifest, which lists every file with its size and hash: BLAKE3
since manifest format 2, sha256 in format 1 manifests, which are still read and verified).
Downstream cache keys use data versions, never paths, so identical data recomputed elsewhere
does not invalidate anything that consumed it.

Components never open these paths themselves: the typed readers and writers in
`components.artifacts` go through the store, which verifies every read against the manifest.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from schemas.base import Model

MANIFEST_NAME = "_manifest.json"

#: A hash a manifest may name for its files.
HashName = Literal["sha256", "blake3"]
#: What new manifests are: format 2 names its files' hash (`FILE_HASH`); format 1 (before
#: 2026-12) had no ``hash`` and gave every file a ``sha256``.
MANIFEST_FORMAT: Literal[1, 2] = 2
#: The hash new manifests give each file: BLAKE3 is cryptographic like sha256 (a data version
#: stays a content address nobody can forge) and 2-3x faster on one core, so a first verified
#: read costs about what a raw read costs.
FILE_HASH: HashName = "blake3"


class FileEntry(Model):
    """One file of an artifact, as listed in its manifest."""

    path: str = Field(description="Path relative to the artifact's uri, '/'-separated.")
    size: int
    digest: str = Field(description="The file's hash (hex), by the manifest's `hash`.")
    rows: int | None = Field(None, description="Row count, for Parquet files.")
    arrow_schema: str | None = Field(None, description="Arrow schema, for Parquet files.")


class Manifest(Model):
    """What `_manifest.json` holds. Written after all data files, so its presence means complete.

    A format 1 manifest (no ``hash``, a ``sha256`` per file) reads as ``hash: sha256`` with each
    file's ``digest``; its data version is the hash of the file as written, so it stays valid.
    """

    format: Literal[1, 2] = MANIFEST_FORMAT
    hash: HashName = FILE_HASH
    kind: str
    files: list[FileEntry]
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _read_format_1(cls, data: Any) -> Any:
        # Format 1 manifests always wrote their format: one that says none is being built.
        if not isinstance(data, dict) or data.get("format") != 1:
            return data
        if data.get("hash", "sha256") != "sha256":
            raise ValueError("a format 1 manifest's files are hashed with sha256")
        files = [
            {**{k: v for k, v in f.items() if k != "sha256"}, "digest": f["sha256"]}
            if isinstance(f, dict) and "sha256" in f
            else f
            for f in data.get("files", [])
        ]
        return {**data, "format": 1, "hash": "sha256", "files": files}


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
