"""Strict readers for delimited text files: every failure names the file, the line and the rule."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fairrec_ray.errors import DataError


def require_file(data_dir: Path, name: str) -> Path:
    path = Path(data_dir) / name
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected the dataset's {name} in --data-dir {data_dir})")
    return path


def read_delimited(
    path: Path,
    sep: str,
    columns: Sequence[str],
    numeric: Mapping[str, str] | None = None,
    encoding: str = "latin-1",
) -> pd.DataFrame:
    """Read a headerless ``sep``-separated file with exactly ``len(columns)`` fields per line.

    ``numeric`` maps column -> numpy dtype ("int64", "float32"); a value that does not parse is
    reported with its line number. Blank lines are skipped.
    """
    try:
        text = Path(path).read_text(encoding=encoding)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    lines = [(n + 1, line) for n, line in enumerate(text.splitlines()) if line.strip()]
    if not lines:
        raise DataError(f"{path}: file is empty")
    rows = [line.split(sep) for _, line in lines]
    width = len(columns)
    for (lineno, _), row in zip(lines, rows):
        if len(row) != width:
            raise DataError(
                f"{path}:{lineno}: expected {width} fields separated by {sep!r} "
                f"({', '.join(columns)}), found {len(row)}"
            )
    frame = pd.DataFrame(rows, columns=list(columns))
    for column, dtype in (numeric or {}).items():
        frame[column] = to_numeric_column(frame[column], dtype, path, column, [n for n, _ in lines])
    return frame


def to_numeric_column(
    values: pd.Series, dtype: str, path: Path, column: str, line_numbers: Sequence[int] | None = None
) -> np.ndarray:
    parsed = pd.to_numeric(values.astype(str).str.strip(), errors="coerce")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if len(bad) == 0 and np.dtype(dtype).kind in "iu":
        bad = np.flatnonzero(parsed.to_numpy() != np.round(parsed.to_numpy()))
    if len(bad):
        first = int(bad[0])
        where = f"line {line_numbers[first]}" if line_numbers is not None else f"row {first + 1}"
        raise DataError(f"{path}: {where}: field {column!r} must be a number ({dtype}), got {values.iloc[first]!r}")
    return parsed.to_numpy().astype(dtype)
