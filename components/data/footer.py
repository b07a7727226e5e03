"""A Parquet source checked from its footers alone (metadata: no rows are read), for
`kdorch validate`: the files exist, the columns are there, and their types can be features,
a label and row ids. Local paths and s3:// alike (the dataset's ``storage_options``).
"""

from __future__ import annotations

from typing import Any

from orchestrator.component import ConfigIssue
from orchestrator.errors import did_you_mean
from schemas.engine.storage import StorageOptions
from schemas.kd.components.dataset import DatasetConfig


def read_schema(fs: Any, path: str) -> Any:
    """The Arrow schema in one file's footer: a ranged read of its tail, not the file."""
    import pyarrow.parquet as pq

    with fs.open(path, "rb", cache_type="none") as f:
        return pq.ParquetFile(f).schema_arrow


def _is_number(t: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t))


def _is_list(t: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t))


def _missing(name: str, field: str, columns: list[str], uri: str) -> ConfigIssue:
    hint = did_you_mean(name, columns) or f"columns: {', '.join(columns[:30])}"
    return ConfigIssue(f"{uri} has no column '{name}'", field, hint)


def check_parquet_source(cfg: DatasetConfig) -> list[ConfigIssue]:
    """Issues with ``cfg``'s Parquet source (none for the bundled sources)."""
    if cfg.source != "parquet" or cfg.uri is None:
        return []
    schema, unreadable = _footer_schema(cfg.uri, cfg.storage_options)
    if schema is None:
        return unreadable
    columns = list(schema.names)
    issues, per_row = _check_features(cfg, schema, columns, cfg.uri)
    issues += _check_feature_shape(cfg, per_row, cfg.uri)
    issues += _check_label(cfg, schema, columns, cfg.uri)
    issues += _check_id_column(cfg, schema, columns, cfg.uri)
    return issues


def _footer_schema(uri: str, options: StorageOptions) -> tuple[Any, list[ConfigIssue]]:
    """The first file's Arrow schema, or None and the issue saying why it cannot be read."""
    from components.data.sources import parquet_files

    try:
        fs, files = parquet_files(uri, options)
        return read_schema(fs, files[0]), []
    except FileNotFoundError as e:
        return None, [
            ConfigIssue(
                str(e),
                "uri",
                "check the path (relative paths start at the directory kdorch runs in)",
            )
        ]
    except Exception as e:  # unreachable endpoint, refused credentials, not a Parquet file
        return None, [
            ConfigIssue(
                f"cannot read the Parquet footer of {uri}: {type(e).__name__}: {e}",
                "uri",
                "check the URI and the dataset's `storage_options` (endpoint_url, profile, or "
                "the AWS_* environment variables)",
            )
        ]


def _check_features(
    cfg: DatasetConfig, schema: Any, columns: list[str], uri: str
) -> tuple[list[ConfigIssue], int | None]:
    """Issues with the feature columns, and the number of features per row when the footer
    tells it: one list column of numbers (fixed-size: its size), or one number per column."""
    single = isinstance(cfg.features, str)
    features = [cfg.features] if isinstance(cfg.features, str) else list(cfg.features)
    issues = []
    per_row = None if single else len(features)
    for i, name in enumerate(features):
        where = "features" if single else f"features.{i}"
        if name not in columns:
            issues.append(_missing(name, where, columns, uri))
            continue
        t = schema.field(name).type
        if single:
            if not (_is_list(t) and _is_number(t.value_type)):
                issues.append(
                    ConfigIssue(
                        f"{uri}: feature column '{name}' is {t}; a single `features` column must "
                        "be a list of numbers per row",
                        "features",
                        f"for one numeric column write `features: [{name}]`",
                    )
                )
            elif hasattr(t, "list_size"):
                per_row = int(t.list_size)
        elif not _is_number(t):
            issues.append(
                ConfigIssue(
                    f"{uri}: feature column '{name}' is {t}, not numbers",
                    where,
                    "leave it out of `features`, or encode it as numbers in the table",
                )
            )
    return issues, per_row


def _check_feature_shape(cfg: DatasetConfig, per_row: int | None, uri: str) -> list[ConfigIssue]:
    """``feature_shape`` must hold as many values as a row has features (when both are known)."""
    if not cfg.feature_shape or per_row is None:
        return []
    size = 1
    for d in cfg.feature_shape:
        size *= d
    if size == per_row:
        return []
    return [
        ConfigIssue(
            f"feature_shape {cfg.feature_shape} holds {size} values, but {uri} gives "
            f"{per_row} features per row",
            "feature_shape",
        )
    ]


def _check_id_column(
    cfg: DatasetConfig, schema: Any, columns: list[str], uri: str
) -> list[ConfigIssue]:
    """The row-id column, when one is named, must exist and hold integers."""
    import pyarrow as pa

    if cfg.id_column is None:
        return []
    if cfg.id_column not in columns:
        return [_missing(cfg.id_column, "id_column", columns, uri)]
    t = schema.field(cfg.id_column).type
    if not pa.types.is_integer(t):
        return [
            ConfigIssue(f"{uri}: id column '{cfg.id_column}' is {t}, not integers", "id_column")
        ]
    return []


def _check_label(
    cfg: DatasetConfig, schema: Any, columns: list[str], uri: str
) -> list[ConfigIssue]:
    """The label column must exist and hold classes: integers, strings, booleans, or floats
    declared categorical."""
    import pyarrow as pa

    if cfg.label not in columns:
        return [_missing(cfg.label, "label", columns, uri)]
    t = schema.field(cfg.label).type
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_floating(t) and cfg.label_kind != "categorical":
        return [
            ConfigIssue(
                f"{uri}: label column '{cfg.label}' is {t}: a float column is usually a "
                "regression target, not classes",
                "label",
                "if its values are classes, set `label_kind: categorical` (each distinct value "
                "becomes a class), or store the column as integers or strings",
            )
        ]
    usable = (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_boolean(t)
        or pa.types.is_string(t)
        or pa.types.is_large_string(t)
    )
    if not usable:
        return [
            ConfigIssue(
                f"{uri}: label column '{cfg.label}' is {t}; use integers (class indices) or "
                "strings (class names)",
                "label",
            )
        ]
    return []
