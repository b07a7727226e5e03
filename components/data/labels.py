"""Labels from a table column, and the checks that keep a classification dataset sane.

- A float column is refused as a label unless the user says its values are classes
  (``label_kind: categorical``): a float label is usually a regression target, and reading one
  as classes gives as many classes as distinct values (hundreds) and broken splits.
- Integer labels are class indices 0..K-1: integers that leave indices unused ({0, 1, 1000})
  are codes, refused with the fix (``label_kind: categorical``).
- A label with fewer than `MIN_ROWS_PER_CLASS` rows per class on average is refused: the
  classes are too many for the rows to learn or to score.
- Every split must hold every class (a class missing from the training split cannot be
  learned; one missing from an evaluation split cannot be scored).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

#: Fewer rows than this per class, on average, is not a classification dataset to learn from.
MIN_ROWS_PER_CLASS = 5
#: How many offending classes a message names before it says "and N more".
_SHOWN = 5


def _preview(values: list[str]) -> str:
    shown = ", ".join(repr(v) for v in values[:_SHOWN])
    return shown + (f" and {len(values) - _SHOWN} more" if len(values) > _SHOWN else "")


def _value_name(value: object) -> str:
    """A class name: ``3`` for 3.0, ``2.5`` for 2.5, the text itself for strings."""
    if isinstance(value, float | np.floating):
        return f"{float(value):g}"
    return str(value)


def encode_labels(
    values: np.ndarray, *, column: str, source: str, kind: str = "auto"
) -> tuple[np.ndarray, list[str]]:
    """(y as int64 class indices, class names) from a label column's values.

    ``kind="auto"``: integers are class indices 0..K-1 (names "0".."K-1"), strings and booleans
    are classes (sorted). ``kind="categorical"``: every distinct value is a class (sorted), so
    floats and sparse or negative integers are accepted too.
    """
    if len(values) == 0:
        raise ValueError(f"{source}: the table has no rows")
    if values.dtype.kind == "f" and np.isnan(values).any():
        raise ValueError(
            f"{source}: label column '{column}' has {int(np.isnan(values).sum())} missing values "
            "(NaN/null); drop those rows or fill them before using the table"
        )
    if values.dtype.kind == "O" and any(v is None for v in values):
        raise ValueError(
            f"{source}: label column '{column}' has missing values (null); drop those rows or "
            "fill them before using the table"
        )
    if kind == "categorical" or values.dtype.kind in "OUSb":
        distinct = np.unique(values)
        names = [_value_name(v) for v in distinct]
        y = np.searchsorted(distinct, values).astype(np.int64)
        return y, names
    if values.dtype.kind == "f":
        distinct = np.unique(values)
        whole = bool(np.all(np.mod(distinct, 1) == 0))
        raise ValueError(
            f"{source}: label column '{column}' holds floats ({len(distinct)} distinct values, "
            f"e.g. {', '.join(_value_name(v) for v in distinct[:4])}): a float column is usually "
            "a regression target, not classes. "
            + (
                "Its values are whole numbers: store the column as integers, or "
                if whole
                else "If its values really are classes, "
            )
            + "set `label_kind: categorical` in the dataset's config to make each distinct value "
            "a class"
        )
    if values.dtype.kind not in "iu":
        raise ValueError(
            f"{source}: label column '{column}' has type {values.dtype}; use integers "
            "(class indices) or strings (class names)"
        )
    low, high = int(values.min()), int(values.max())
    if low < 0:
        raise ValueError(
            f"{source}: label column '{column}' has negative values (min {low}); integer "
            "labels are class indices 0..K-1. Set `label_kind: categorical` to make each "
            "distinct value a class"
        )
    distinct = np.unique(values)
    if len(distinct) < high + 1:
        _refuse_codes(distinct, len(values), column=column, source=source)
    return values.astype(np.int64), [str(c) for c in range(high + 1)]


def _refuse_codes(distinct: np.ndarray, rows: int, *, column: str, source: str) -> None:
    """Integers that leave class indices unused are codes, not indices: {0, 1, 1000} would be
    1,001 classes, 998 of them without a row (a wide head, accuracy and CE on classes that
    cannot occur). Refused, with the fix; a label with too many values for its rows gets the
    class-count message (it is more likely not a class column at all)."""
    check_class_count(len(distinct), rows, source=source, column=column)
    high = int(distinct[-1])
    shown = ", ".join(str(int(v)) for v in distinct[:_SHOWN])
    shown += f" ... {high}" if len(distinct) > _SHOWN else ""
    raise ValueError(
        f"{source}: label column '{column}' holds {len(distinct):,} distinct integers "
        f"({shown}), but integer labels are class indices 0..K-1: these would make "
        f"{high + 1:,} classes, {high + 1 - len(distinct):,} of them without a row. If the "
        "values are codes, set `label_kind: categorical` (each distinct value becomes a "
        f"class, named by its value); else renumber them 0..{len(distinct) - 1}"
    )


def check_class_count(num_classes: int, rows: int, *, source: str, column: str) -> None:
    """Refuse a label with one class, or with too many classes for the rows."""
    if num_classes < 2:
        raise ValueError(
            f"{source}: label column '{column}' has a single class; a classifier needs at "
            "least two (is it the right column?)"
        )
    if rows < MIN_ROWS_PER_CLASS * num_classes:
        raise ValueError(
            f"{source}: label column '{column}' gives {num_classes:,} classes for {rows:,} "
            f"rows ({rows / num_classes:.1f} rows per class; at least {MIN_ROWS_PER_CLASS} are "
            "needed on average). Check that `label` names the class column (an id, a count or "
            "a measurement is not a class); integer codes that are not 0..K-1 need "
            "`label_kind: categorical`; or use more rows (raise or drop `max_rows`)"
        )


def check_splits_hold_every_class(
    splits: Mapping[str, np.ndarray], class_names: list[str], *, source: str
) -> None:
    """Every split holds at least one row of every class present in the data, or a clear error
    saying which split misses which classes and what to change."""
    present = np.unique(np.concatenate([y for y in splits.values()]))
    problems = []
    for split, y in splits.items():
        counts = np.bincount(y, minlength=len(class_names))
        missing = [class_names[c] for c in present if counts[c] == 0]
        if missing:
            problems.append(
                f"split '{split}' ({len(y)} rows) has no rows of {len(missing)} of the "
                f"{len(present)} classes ({_preview(missing)})"
            )
    if problems:
        smallest = min(splits, key=lambda name: len(splits[name]))
        raise ValueError(
            f"{source}: " + "; ".join(problems) + ". Classes with few rows cannot be split: "
            f"give the smaller splits (e.g. '{smallest}') a larger fraction in `splits`, use "
            "more rows (raise or drop `max_rows`), or drop the rarest classes from the table"
        )
