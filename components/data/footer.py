"""A Parquet source checked from its footers alone (metadata: no rows are read), for
`kdorch validate`: the files exist, every file's footer agrees with the first on the columns
the dataset uses, the source holds rows, the columns are there, and their types can be features
(or encoded images), a label and row ids. Local paths and s3:// alike (the dataset's
``storage_options``). The dataset step runs the same file checks before it reads rows
(`check_same_columns`), since files may change after validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.component import ConfigIssue
from orchestrator.errors import did_you_mean
from schemas.engine.storage import StorageOptions
from schemas.kd.components.dataset import DatasetConfig

#: How many files' column differences `kdorch validate` lists.
_SHOWN_FILES = 5


def read_schema(fs: Any, path: str) -> Any:
    """The Arrow schema in one file's footer: a ranged read of its tail, not the file."""
    import pyarrow.parquet as pq

    with fs.open(path, "rb", cache_type="none") as f:
        return pq.ParquetFile(f).schema_arrow


@dataclass(frozen=True)
class Footer:
    """One Parquet file's footer: its name (as a user knows it), schema and row count."""

    name: str
    schema: Any
    rows: int


def read_footers(fs: Any, files: list[str]) -> list[Footer]:
    """Every file's footer, in file order (a ranged read each, on threads for object stores);
    a ValueError naming the first file that is not a readable Parquet file."""
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow.parquet as pq

    from components.data.sources import file_name

    def one(path: str) -> Footer:
        name = file_name(fs, path)
        try:
            with fs.open(path, "rb", cache_type="none") as f:
                parquet = pq.ParquetFile(f)
                return Footer(name, parquet.schema_arrow, int(parquet.metadata.num_rows))
        except Exception as e:
            if "size is 0 bytes" in str(e):
                raise ValueError(
                    f"{name} is empty (0 bytes), not a Parquet file: write it again or remove it"
                ) from e
            raise ValueError(
                f"{name} is not a readable Parquet file: {type(e).__name__}: {e}"
            ) from e

    if len(files) < 8:
        return [one(path) for path in files]
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, files))


def file_rows(fs: Any, files: list[str]) -> list[int]:
    """Each file's row count, from its footer."""
    return [f.rows for f in read_footers(fs, files)]


def column_differences(footers: list[Footer], columns: list[str] | None = None) -> list[str]:
    """Where a file's footer disagrees with the first file's on ``columns`` (default: all of the
    first file's): a column it lacks, or one of another type. Columns the dataset does not use
    may differ."""
    first = footers[0]
    wanted = list(first.schema.names) if columns is None else columns
    found = []
    for column in wanted:
        if column not in first.schema.names:
            continue  # missing from the first file: reported as a missing column
        expected = first.schema.field(column).type
        for other in footers[1:]:
            if column not in other.schema.names:
                found.append(
                    f"{other.name} has no column '{column}' ({first.name} has it, {expected})"
                )
            elif other.schema.field(column).type != expected:
                found.append(
                    f"column '{column}' is {other.schema.field(column).type} in {other.name} but "
                    f"{expected} in {first.name}"
                )
    return found


def no_rows(footers: list[Footer], uri: str) -> str | None:
    """A message when the source holds no rows at all (None when it does)."""
    if sum(f.rows for f in footers) > 0:
        return None
    if len(footers) == 1:
        return (
            f"{footers[0].name} holds no rows (columns: {', '.join(footers[0].schema.names[:12])})"
        )
    names = ", ".join(f.name for f in footers[:3]) + (" ..." if len(footers) > 3 else "")
    return f"{uri}: none of its {len(footers)} Parquet files holds a row ({names})"


def check_same_columns(
    fs: Any, files: list[str], uri: str, columns: list[str] | None = None
) -> list[Footer]:
    """The files' footers; a ValueError when they disagree on ``columns`` or hold no rows."""
    footers = read_footers(fs, files)
    differences = column_differences(footers, columns)
    if differences:
        more = f" (and {len(differences) - 1} more)" if len(differences) > 1 else ""
        raise ValueError(
            f"{uri}: the Parquet files disagree on their columns: {differences[0]}{more}. "
            "Every file of a dataset needs the same columns with the same types: rewrite the "
            "odd file, or point `uri` at the files that belong together"
        )
    empty = no_rows(footers, uri)
    if empty:
        raise ValueError(empty)
    return footers


def used_columns(cfg: DatasetConfig) -> list[str]:
    """The columns a Parquet dataset reads: features (or the image column), label, row ids."""
    if cfg.image_column is not None:
        wanted = [cfg.image_column]
    else:
        wanted = [cfg.features] if isinstance(cfg.features, str) else list(cfg.features)
    return [*wanted, cfg.label, *([cfg.id_column] if cfg.id_column else [])]


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
    footers, unreadable = _footers(cfg.uri, cfg.storage_options)
    if footers is None:
        return unreadable
    issues = [
        ConfigIssue(m, "uri", "every file of a dataset needs the same columns and types")
        for m in column_differences(footers, used_columns(cfg))[:_SHOWN_FILES]
    ]
    empty = no_rows(footers, cfg.uri)
    if empty:
        issues.append(ConfigIssue(empty, "uri", "write the table again, or point `uri` at one"))
    schema = footers[0].schema
    columns = list(schema.names)
    if cfg.image_column is not None:
        issues += _check_image_column(cfg.image_column, schema, columns, cfg.uri)
    else:
        found, per_row = _check_features(cfg, schema, columns, cfg.uri)
        issues += found + _check_feature_shape(cfg, per_row, cfg.uri)
    issues += _check_label(cfg, schema, columns, cfg.uri)
    issues += _check_id_column(cfg, schema, columns, cfg.uri)
    return issues


def _footers(uri: str, options: StorageOptions) -> tuple[list[Footer] | None, list[ConfigIssue]]:
    """Every file's footer, or None and the issue saying why one cannot be read."""
    from components.data.sources import parquet_files

    try:
        fs, files = parquet_files(uri, options)
        return read_footers(fs, files), []
    except ValueError as e:  # a file that is empty or not Parquet: named
        return None, [ConfigIssue(str(e), "uri", "every file under `uri` must be Parquet")]
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


def _check_image_column(name: str, schema: Any, columns: list[str], uri: str) -> list[ConfigIssue]:
    """The image column must exist and hold bytes (an encoded image per row)."""
    import pyarrow as pa

    if name not in columns:
        return [_missing(name, "image_column", columns, uri)]
    t = schema.field(name).type
    if not (pa.types.is_binary(t) or pa.types.is_large_binary(t)):
        return [
            ConfigIssue(
                f"{uri}: image column '{name}' is {t}; it must hold the encoded image (PNG or "
                "JPEG bytes) of each row",
                "image_column",
                "pixel arrays go in `features` (a list column) with `feature_shape`",
            )
        ]
    return []


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
