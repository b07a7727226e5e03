"""What a dataset step will write, from its config alone (`DatasetComponent.promise`), for the
checks `kdorch validate` runs on the steps downstream: a held-out domain the data does not have,
an evaluation split it lacks, a student-search space no candidate fits for its shape.

Split names and domains come from the config. Shape and class count are known for the bundled
sources (a test ties them to what the loaders return), and a Parquet table's shape from the
config or, for one fixed-size list column, from the first file's footer (no rows read). The
rest stays unknown (None): a consumer never refuses what it cannot know.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.component import ConfigIssue, Wiring
from orchestrator.errors import did_you_mean
from schemas.kd.components.dataset import DatasetConfig
from schemas.kd.promises import DatasetPromise

#: Bundled image sources: (shape of one example, classes), as `components.data.sources` loads them.
BUNDLED: dict[str, tuple[list[int], int]] = {
    "mnist5k": ([1, 28, 28], 10),
    "digits": ([1, 8, 8], 10),
}


def dataset_promise(config: DatasetConfig, outside: bool) -> DatasetPromise:
    """The promise of a dataset step with ``config``; ``outside``: a footer may be read."""
    shape, classes = BUNDLED.get(config.source, (None, None))
    # A Parquet column of encoded images (``image_column``) is decoded to a shape only the
    # step knows.
    if config.source == "parquet" and getattr(config, "image_column", None) is None:
        shape = _table_shape(config, outside)
    return DatasetPromise(
        source=config.uri if config.uri else config.source,
        splits=list(config.splits),
        domains=config.domains.names() if config.domains else [],
        feature_shape=shape,
        num_classes=classes,
    )


def _table_shape(config: DatasetConfig, outside: bool) -> list[int] | None:
    """A table's example shape: ``feature_shape``, one value per feature column, or the size
    of a single fixed-size list column from the footer; None when unknown."""
    if config.feature_shape:
        return list(config.feature_shape)
    if not isinstance(config.features, str):
        return [len(config.features)]
    if not outside or config.uri is None:
        return None
    try:
        from components.data.footer import read_schema
        from components.data.sources import parquet_files

        fs, files = parquet_files(config.uri, config.storage_options)
        size = getattr(read_schema(fs, files[0]).field(config.features).type, "list_size", None)
    except Exception:  # check_config names what is wrong with the source; here it is unknown
        return None
    return [int(size)] if size else None


@dataclass(frozen=True)
class PromisedData:
    """The dataset a step's input will receive, as the dataset step promised it; the checks
    a consumer runs on it in its `check_wiring` (each passes what the promise leaves unknown).
    """

    step_id: str
    promise: DatasetPromise

    @classmethod
    def of(cls, wiring: Wiring, port: str = "data") -> PromisedData | None:
        """The promise on ``port``, when its producer made one."""
        found = wiring.promised(port, DatasetPromise)
        return cls(found[0][0].step_id, found[0][1]) if len(found) == 1 else None

    @property
    def where(self) -> str:
        return f"dataset step '{self.step_id}' ({self.promise.source})"

    def split_issues(self, field: str, split: str, reads: str = "") -> list[ConfigIssue]:
        """``split`` must be one of the dataset's splits. ``field`` locates it in the config
        ("" with ``reads``: a split the component always reads, located at its ``data``)."""
        splits = self.promise.splits
        if splits is None or split in splits:
            return []
        message = f"{self.where} has no split '{split}' (splits: {', '.join(splits)})"
        if reads:
            return [
                ConfigIssue(
                    f"{reads} reads split '{split}', but {message}",
                    "data",
                    f"name a split '{split}' in the dataset step's `splits`",
                    under="inputs",
                )
            ]
        hint = did_you_mean(split, splits) or f"use one of: {', '.join(splits)}"
        return [ConfigIssue(message, field, hint)]

    def domain_issues(self, field: str, names: Sequence[str] | None) -> list[ConfigIssue]:
        """Every name in ``names`` (the config's ``field``) must be one of the dataset's domains."""
        domains = self.promise.domains
        if domains is None or not names:
            return []
        if not domains:
            return [
                ConfigIssue(
                    f"{field} selects domains {list(names)}, but {self.where} has no domains",
                    field,
                    "domains are the parts of a multi-domain dataset (the dataset step's "
                    f"`domains: {{angles: [...]}}`); or leave `{field}` out",
                )
            ]
        return [
            ConfigIssue(
                f"{self.where} has no domain '{name}'; its domains: {', '.join(domains)}",
                f"{field}.{i}",
                did_you_mean(name, domains),
            )
            for i, name in enumerate(names)
            if name not in domains
        ]

    def needs_domains(self, reads: str) -> list[ConfigIssue]:
        """A component that works per domain (``reads``: its name) needs a dataset with them."""
        if self.promise.domains is None or self.promise.domains:
            return []
        return [
            ConfigIssue(
                f"{reads} needs a multi-domain dataset, but {self.where} has no domains",
                "data",
                "give the dataset step `domains: {angles: [...]}`",
                under="inputs",
            )
        ]
