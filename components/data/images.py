"""Image sources, listed without reading a pixel: a folder tree ``<uri>/<class>/<image>`` (the
ImageFolder convention) or a Parquet table with a column of encoded images (PNG/JPEG bytes).

A listing is small (one name and one label per row) even for a million images; the dataset
step splits it, and only then reads and decodes the images, in chunks (`components.data.
image_build`). `kdorch validate` uses the same listing to check a source before anything runs
(`components.data.image_checks`).

Rows are in a fixed order: a folder's files sorted by their path under ``uri`` (so by class,
then name), a table's rows in file order. A row's ``row_id`` is its position in that order (or
the table's ``id_column``): stable for the same files, whatever the seed or the subset.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from schemas.engine.storage import StorageOptions

#: The file endings read as images (those of torchvision's ImageFolder, and .gif).
IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".ppm",
    ".bmp",
    ".pgm",
    ".tif",
    ".tiff",
    ".webp",
    ".gif",
)
#: How many names a message lists before "and N more".
_SHOWN = 5


class ImageSourceError(ValueError):
    """An image source that cannot give a classification dataset (the message says why and
    what to do); `kdorch validate` reports it on the dataset's ``uri``."""


def is_image(path: str) -> bool:
    return path.lower().endswith(IMAGE_EXTENSIONS)


def _preview(names: list[str]) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


@dataclass
class ImageListing:
    """Every row of an image source, before any image is read.

    ``y`` (class indices into ``class_names``) and ``row_id`` per row; where each row's bytes
    are (`FolderImages`: one file per row; `ParquetImages`: a cell of a table) is the
    subclass's. ``selected`` rows (all by default) are the ones read.
    """

    uri: str
    y: np.ndarray
    row_id: np.ndarray
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.y)

    def name(self, row: int) -> str:  # pragma: no cover - every listing overrides it
        """What an error names for ``row``: its file (and the row inside a table)."""
        raise NotImplementedError

    def payloads(self, rows: np.ndarray, chunk: int) -> Iterator[list[tuple[int, Any]]]:
        """Chunks of (row, payload) for ``rows`` (sorted), in order; a payload is the encoded
        image's bytes (None: a null cell) or a path read through `payload_fs` where it is decoded
        (`components.data.decode.read_payload`)."""
        raise NotImplementedError  # pragma: no cover

    @property
    def payload_fs(self) -> Any:
        """The filesystem payload paths are read through (None: payloads are bytes)."""
        return None


@dataclass
class FolderImages(ImageListing):
    """``<uri>/<class>/<image>``: classes are the folder names (sorted); images may sit in
    sub-folders of their class folder; hidden files and folders are left out."""

    fs: Any = None
    root: str = ""  # the filesystem's path of uri
    relative: list[str] = field(default_factory=list)  # per row, under root: '<class>/<image>'

    def name(self, row: int) -> str:
        return f"{self.uri.rstrip('/')}/{self.relative[row]}"

    def payloads(self, rows: np.ndarray, chunk: int) -> Iterator[list[tuple[int, Any]]]:
        for start in range(0, len(rows), chunk):
            yield [(int(r), f"{self.root}/{self.relative[r]}") for r in rows[start : start + chunk]]

    @property
    def payload_fs(self) -> Any:
        return self.fs


def _open_folder(uri: str, options: StorageOptions) -> tuple[Any, str]:
    """(filesystem, root path) of the folder ``uri``; an `ImageSourceError` if it is none."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(uri, **options.to_fsspec())
    root = root.rstrip("/")
    if not fs.exists(root):
        raise ImageSourceError(f"image folder {uri} does not exist")
    if fs.isfile(root):
        raise ImageSourceError(
            f"{uri} is a file; source 'image_folder' takes a folder holding one folder per class"
        )
    return fs, root


def _scan(fs: Any, root: str) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """(path under root, info) of every file, and (name + "/", None) for each folder directly
    under root (a class folder); hidden files and folders are left out. Folder by folder
    (`walk`), so no listing of the whole tree is ever held with every file's details."""
    for path, dirs, files in fs.walk(root, detail=True):
        here = str(path)[len(root) :].strip("/")
        for hidden in [d for d in dirs if d.startswith(".")]:
            del dirs[hidden]  # not walked into
        if not here:
            yield from ((f"{d}/", None) for d in dirs)
        for name, info in files.items():
            if not name.startswith("."):
                yield (f"{here}/{name}" if here else name), info


def list_image_folder(uri: str, options: StorageOptions) -> FolderImages:
    """The rows of an image folder; an `ImageSourceError` when it holds no images, images of
    one class only, or a class folder without images."""
    fs, root = _open_folder(uri, options)
    images, folders, loose, files = [], [], 0, 0
    for relative, info in _scan(fs, root):
        if info is None:
            folders.append(relative[:-1])
            continue
        files += 1
        if is_image(relative):
            if "/" in relative:
                images.append(relative)
            else:
                loose += 1
    images.sort()
    classes = sorted({r.split("/", 1)[0] for r in images})
    if not images:
        raise ImageSourceError(
            f"image folder {uri} holds no images ({', '.join(IMAGE_EXTENSIONS)}) in class "
            "folders"
            + (
                f"; {loose} lie directly in it: put them into one folder per class, "
                f"<uri>/<class>/<image>"
                if loose
                else f" (files found: {files}; the layout is <uri>/<class>/<image>)"
            )
        )
    empty = sorted(set(folders) - set(classes))
    if empty:
        raise ImageSourceError(
            f"image folder {uri}: class folder(s) {_preview(empty)} hold no images; remove them "
            "or add images (every class needs rows to learn and to score)"
        )
    if len(classes) < 2:
        raise ImageSourceError(
            f"image folder {uri} holds images of one class only ('{classes[0]}', "
            f"{len(images):,} images): a classifier needs at least two class folders, "
            "<uri>/<class>/<image>"
        )
    from components.data.labels import MIN_ROWS_PER_CLASS

    if len(images) < MIN_ROWS_PER_CLASS * len(classes):
        raise ImageSourceError(
            f"image folder {uri} holds {len(images):,} images in {len(classes):,} class folders "
            f"({len(images) / len(classes):.1f} per class; at least {MIN_ROWS_PER_CLASS} are "
            "needed on average to learn and to score)"
        )
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[r.split("/", 1)[0]] for r in images], dtype=np.int64)
    return FolderImages(
        uri=uri,
        y=y,
        row_id=np.arange(len(images), dtype=np.int64),
        class_names=classes,
        fs=fs,
        root=root,
        relative=images,
    )


# The BLAKE3 hash of each local file, by (path, size, mtime, inode): a plan re-hashes only
# files that changed since this process last hashed them.
_HASHES: dict[tuple[str, int, float, int], str] = {}


def _file_hash(path: str, stamp: tuple[int, float, int]) -> str:
    import blake3

    key = (path, *stamp)
    known = _HASHES.get(key)
    if known is None:
        with open(path, "rb") as f:  # an image: one read
            known = _HASHES[key] = blake3.blake3(f.read()).hexdigest()
    return known


def image_folder_identity(uri: str, options: StorageOptions) -> dict[str, str]:
    """The content identity of an image folder, for the dataset step's cache key: one sha256
    over every image's relative path and content identity — its BLAKE3 hash for a local file
    (cryptographic like sha256 and ~3x faster: a folder is many files; memoised by size, mtime
    and inode within a process), size and ETag for an object store (from the listing: no
    object is read), as for Parquet sources
    (`components.data.sources.source_identity`)."""
    from fsspec.implementations.local import LocalFileSystem

    fs, root = _open_folder(uri, options)
    local = isinstance(fs, LocalFileSystem)
    found: list[tuple[str, Any]] = []  # (relative, stamp) locally, (relative, identity) else
    for relative, info in _scan(fs, root):
        if info is None or not is_image(relative):
            continue
        if local:
            found.append((relative, (int(info["size"]), float(info["mtime"]), int(info["ino"]))))
        else:
            etag = str(info.get("ETag") or info.get("etag") or info.get("md5Hash") or "")
            found.append((relative, f"size:{info.get('size')};etag:{etag.strip(chr(34))}"))
    found.sort()
    digest = hashlib.sha256()
    for relative, identity in found:
        if local:  # one file after another: threads would spend more on the GIL than they save
            identity = "blake3:" + _file_hash(f"{root}/{relative}", identity)
        digest.update(f"{relative}\t{identity}\n".encode())
    return {"images": str(len(found)), "sha256": digest.hexdigest()}


@dataclass
class ParquetImages(ImageListing):
    """A table with one encoded image (PNG/JPEG bytes) per row in ``column``; its files are
    read in order, a batch of rows at a time, and only the image column is read."""

    fs: Any = None
    files: list[str] = field(default_factory=list)
    starts: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))  # first row per file
    column: str = ""
    has_ids: bool = False

    def name(self, row: int) -> str:
        from components.data.sources import file_name

        i = int(np.searchsorted(self.starts, row, side="right")) - 1
        where = f"{file_name(self.fs, self.files[i])} row {row - int(self.starts[i])}"
        return where + (f" (row_id {self.row_id[row]})" if self.has_ids else "")

    def payloads(self, rows: np.ndarray, chunk: int) -> Iterator[list[tuple[int, Any]]]:
        import pyarrow.parquet as pq

        pending: list[tuple[int, Any]] = []
        for i, path in enumerate(self.files):
            first, end = int(self.starts[i]), int(self.starts[i + 1])
            wanted = rows[(rows >= first) & (rows < end)]
            if not len(wanted):
                continue
            with self.fs.open(path, "rb") as f:
                at = first
                for batch in pq.ParquetFile(f).iter_batches(chunk, columns=[self.column]):
                    here = wanted[(wanted >= at) & (wanted < at + batch.num_rows)]
                    cells = batch.column(0).take(here - at).to_pylist()  # bytes, None if null
                    pending += list(zip(here.tolist(), cells, strict=True))
                    at += batch.num_rows
                    while len(pending) >= chunk:
                        yield pending[:chunk]
                        pending = pending[chunk:]
        if pending:
            yield pending


def list_image_table(
    uri: str,
    *,
    column: str,
    label: str,
    id_column: str | None,
    label_kind: str,
    options: StorageOptions,
) -> ParquetImages:
    """The rows of a Parquet table of encoded images: its labels (and ids) are read, its images
    are not. Every file's footer must agree on the columns (`footer.check_same_columns`)."""
    from components.data.footer import check_same_columns, file_rows
    from components.data.labels import encode_labels
    from components.data.sources import parquet_files, read_columns

    fs, files = parquet_files(uri, options)
    check_same_columns(fs, files, uri)
    counts = file_rows(fs, files)
    table = read_columns(fs, files, [label, *([id_column] if id_column else [])], uri)
    y, class_names = encode_labels(
        table.column(label).to_numpy(zero_copy_only=False),
        column=label,
        source=uri,
        kind=label_kind,
    )
    if id_column:
        row_id = table.column(id_column).to_numpy(zero_copy_only=False).astype(np.int64)
        if len(np.unique(row_id)) != len(row_id):
            raise ValueError(
                f"{uri}: column '{id_column}' has duplicate ids; row ids must be unique"
            )
    else:
        row_id = np.arange(len(y), dtype=np.int64)
    return ParquetImages(
        uri=uri,
        y=y,
        row_id=row_id,
        class_names=class_names,
        fs=fs,
        files=files,
        starts=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        column=column,
        has_ids=id_column is not None,
    )
