"""The dataset step's work (`components.data.dataset` wires it): a source into seeded,
stratified, normalised splits, written as a `Dataset` artifact.

Two paths, chosen by the source (`DatasetConfig.reads_images`):

- **In memory** (`build_arrays`): the bundled sources and Parquet tables of numbers are loaded
  whole (a table is read column by column), split, optionally rotated, standardised, written.
- **Streamed** (`build_images`): an image folder or a Parquet column of encoded images is
  listed (names and labels only), the listing is split, and the images are decoded in chunks
  and written split by split (`components.data.image_build`), so a million images never sit in
  one process's memory.

Both split the same way (`transforms.stratified_split` on the labels, seeded) and check the
labels the same way (`labels`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from orchestrator import StepContext
from schemas.kd.artifacts import Dataset, Normalization, SkippedRows
from schemas.kd.components.dataset import DatasetConfig

if TYPE_CHECKING:
    from components.artifacts.datasets import SplitArrays
    from components.data.images import ImageListing
    from components.data.sources import RawData

#: How many skipped rows a dataset names (the rest are counted).
SKIPPED_SHOWN = 5


def build_dataset(cfg: DatasetConfig, ctx: StepContext) -> Dataset:
    """The dataset ``cfg`` describes, written under the step's ``dataset`` output."""
    return build_images(cfg, ctx) if cfg.reads_images() else build_arrays(cfg, ctx)


def load_source(cfg: DatasetConfig) -> RawData:
    """The rows of a bundled source or a Parquet table, in memory."""
    from components.data.sources import load_digits, load_mnist5k, load_parquet

    if cfg.source == "mnist5k":
        return load_mnist5k()
    if cfg.source == "digits":
        return load_digits()
    assert cfg.uri is not None
    return load_parquet(
        cfg.uri, features=cfg.features, feature_shape=cfg.feature_shape, **table_columns(cfg)
    )


def table_columns(cfg: DatasetConfig) -> dict[str, Any]:
    """What a Parquet source's reader takes besides its data columns: labels, ids, access."""
    return {
        "label": cfg.label,
        "id_column": cfg.id_column,
        "label_kind": cfg.label_kind,
        "options": cfg.storage_options,
    }


def subset(y: np.ndarray, cfg: DatasetConfig) -> np.ndarray:
    """The rows ``max_rows`` keeps (a stratified, seeded subset; all rows without it)."""
    from components.data.transforms import stratified_split

    if cfg.max_rows is None or cfg.max_rows >= len(y):
        return np.arange(len(y))
    fraction = cfg.max_rows / len(y)
    return stratified_split(y, {"keep": fraction, "drop": 1 - fraction}, cfg.seed)["keep"]


def build_arrays(cfg: DatasetConfig, ctx: StepContext) -> Dataset:
    """The in-memory path: bundled sources and Parquet tables of numbers."""
    from components.artifacts.datasets import SplitArrays, write_dataset
    from components.data.labels import check_class_count, check_splits_hold_every_class
    from components.data.transforms import rotate_images, stratified_split

    raw = load_source(cfg)
    keep = subset(raw.y, cfg)
    x, y, row_id = raw.x[keep], raw.y[keep], raw.row_id[keep]
    where = str(cfg.uri) if cfg.source == "parquet" else cfg.source
    num_classes = len(raw.class_names) if raw.class_names else int(np.max(y)) + 1
    check_class_count(len(np.unique(y)), len(y), source=where, column=cfg.label)
    transform = raw.transform
    if cfg.rotation:
        x = rotate_images(x, cfg.rotation)
        transform += f";rotate:{cfg.rotation:g}"
    if cfg.domains is None:
        splits = {
            name: SplitArrays(x[idx], y[idx], row_id[idx])
            for name, idx in stratified_split(y, cfg.splits, cfg.seed).items()
        }
    else:
        splits = rotated_domains(cfg, SplitArrays(x, y, row_id))
        transform += ";domains:" + ",".join(f"{a:g}" for a in cfg.domains.angles)
    check_splits_hold_every_class(
        {name: a.y for name, a in splits.items()},
        raw.class_names or [str(c) for c in range(num_classes)],
        source=where,
    )
    normalization = None
    if cfg.normalization() != "none":
        splits, normalization = standardize_splits(splits, cfg.fit_split(), cfg.normalization())
        step = "standardize-channels:" if normalization.kind == "channel" else "standardize:"
        step += normalization.fitted_on
        transform = step if transform in ("", "none") else f"{transform};{step}"
    ctx.log(
        "%s: %s rows %s, shape %s",
        cfg.source,
        len(y),
        {n: len(a) for n, a in splits.items()},
        list(x.shape[1:]),
    )
    return write_dataset(
        ctx,
        "dataset",
        splits,
        num_classes=num_classes,
        class_names=raw.class_names,
        source=where,
        domain=f"rot{cfg.rotation:g}" if cfg.rotation else "",
        domains=cfg.domains.names() if cfg.domains else [],
        transform=transform,
        normalization=normalization,
    )


def rotated_domains(cfg: DatasetConfig, rows: SplitArrays) -> dict[str, SplitArrays]:
    """DomainBed's Rotated-MNIST: disjoint class-balanced parts, one per angle, each rotated
    and split on its own, so every split holds every domain in the same proportions."""
    from components.artifacts.datasets import SplitArrays
    from components.data.transforms import rotate_images, stratified_split

    assert cfg.domains is not None
    angles = cfg.domains.angles
    parts = stratified_split(
        rows.y, {str(i): 1 / len(angles) for i in range(len(angles))}, cfg.seed
    )
    pieces: dict[str, list[SplitArrays]] = {name: [] for name in cfg.splits}
    for i, angle in enumerate(angles):
        part = rows.take(parts[str(i)])
        part = SplitArrays(
            rotate_images(part.x, angle), part.y, part.row_id, np.full(len(part), i, np.int64)
        )
        for name, idx in stratified_split(part.y, cfg.splits, cfg.seed + 1 + i).items():
            pieces[name].append(part.take(idx))
    return {
        name: SplitArrays(
            np.concatenate([p.x for p in chunks]),
            np.concatenate([p.y for p in chunks]),
            np.concatenate([p.row_id for p in chunks]),
            np.concatenate([p.domain for p in chunks if p.domain is not None]),
        )
        for name, chunks in pieces.items()
    }


def standardize_splits(
    splits: dict[str, SplitArrays], fit_on: str, kind: str = "standard"
) -> tuple[dict[str, SplitArrays], Normalization]:
    """Every split standardised with the statistics of split ``fit_on`` only: per feature
    (``standard``) or per channel, the first axis of an example (``channel``)."""
    from dataclasses import replace

    from components.data.transforms import fit_standardization, standardize

    x = splits[fit_on].x
    if kind == "channel":
        if x.ndim < 3:
            raise ValueError(
                f"`normalize: channel` needs examples with channels ([C, ...]); these have "
                f"shape {list(x.shape[1:])}: use `standard`"
            )
        mean, std = fit_standardization(np.moveaxis(x, 1, -1).reshape(-1, x.shape[1]))
        shape = (1, -1) + (1,) * (x.ndim - 2)
        out = {
            name: replace(a, x=standardize_channels(a.x, mean.reshape(shape), std.reshape(shape)))
            for name, a in splits.items()
        }
    else:
        mean, std = fit_standardization(x)
        out = {name: replace(a, x=standardize(a.x, mean, std)) for name, a in splits.items()}
    normalization = Normalization(
        kind="channel" if kind == "channel" else "standard",
        fitted_on=fit_on,
        mean=mean.tolist(),
        std=std.tolist(),
    )
    return out, normalization


def standardize_channels(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return ((x.astype(np.float64) - mean) / std).astype(np.float32)


def list_images(cfg: DatasetConfig) -> ImageListing:
    """The rows of an image source (no image read)."""
    from components.data.images import list_image_folder, list_image_table

    assert cfg.uri is not None
    if cfg.source == "image_folder":
        return list_image_folder(cfg.uri, cfg.storage_options)
    assert cfg.image_column is not None
    return list_image_table(cfg.uri, column=cfg.image_column, **table_columns(cfg))


def split_listing(cfg: DatasetConfig, listing: ImageListing) -> dict[str, np.ndarray]:
    """Each split's listing rows (sorted): ``max_rows``, then the stratified, seeded split, as
    the in-memory path does it."""
    from components.data.labels import check_class_count
    from components.data.transforms import stratified_split

    keep = subset(listing.y, cfg)
    if cfg.source == "parquet":  # a folder's listing checked its classes
        check_class_count(
            len(np.unique(listing.y[keep])), len(keep), source=str(cfg.uri), column=cfg.label
        )
    return {
        name: keep[idx]
        for name, idx in stratified_split(listing.y[keep], cfg.splits, cfg.seed).items()
    }


def build_images(cfg: DatasetConfig, ctx: StepContext) -> Dataset:
    """The streamed path: list, split, decode in chunks, write split by split."""
    from pathlib import Path

    from components.data.image_build import (
        ImageJob,
        channel_normalization,
        decode_splits,
        first_shape,
        spill_folder,
        write_image_splits,
    )
    from components.data.labels import check_splits_hold_every_class

    listing = list_images(cfg)
    splits = split_listing(cfg, listing)
    rows = np.sort(np.concatenate(list(splits.values())))
    shape, first = first_shape(listing, rows, cfg.channels, cfg.image_size)
    fit_on = cfg.fit_split() if cfg.normalization() == "channel" else None
    threads = cfg.decode_threads or max(2, int(ctx.resources.num_cpus or 1))
    job = ImageJob(listing, splits, shape, fit_on, cfg.on_bad_row, threads, ctx.log)
    with spill_folder() as folder:
        ctx.log(
            "%s: %s images of %s classes %s, to %s on %s threads (%s MB of pixels in %s)",
            cfg.uri,
            f"{len(rows):,}",
            len(listing.class_names),
            {n: len(r) for n, r in splits.items()},
            shape.as_list(),
            threads,
            f"{len(rows) * int(np.prod(shape.as_list())) / 1e6:,.0f}",
            folder,
        )
        decoded = decode_splits(job, Path(folder), first)
        check_splits_hold_every_class(
            {name: listing.y[kept] for name, kept in decoded.kept.items()},
            listing.class_names,
            source=str(cfg.uri),
        )
        normalization = channel_normalization(decoded.histogram, fit_on) if fit_on else None
        path = ctx.output_path("dataset")
        counts = write_image_splits(job, decoded, ctx.store, path)
    transform = shape.describe() + ";scale:/255"
    if normalization is not None:
        transform += f";standardize-channels:{normalization.fitted_on}"
    return Dataset(
        path=path,
        splits=counts,
        feature_shape=shape.as_list(),
        num_classes=len(listing.class_names),
        class_names=listing.class_names,
        source=str(cfg.uri),
        transform=transform,
        normalization=normalization,
        skipped=skipped_rows(listing, decoded.bad, ctx),
        x_storage="uint8",  # pixels; `XReader` scales and normalises them
    )


def skipped_rows(
    listing: ImageListing, bad: list[tuple[int, str]], ctx: StepContext
) -> SkippedRows | None:
    """The rows left out (``on_bad_row: skip``), named in the step's log; None when none."""
    if not bad:
        return None
    examples = [f"{listing.name(r)}: {why}" for r, why in sorted(bad)[:SKIPPED_SHOWN]]
    ctx.log("skipped %s unreadable images (on_bad_row: skip), e.g. %s", len(bad), examples[0])
    return SkippedRows(count=len(bad), examples=examples)
