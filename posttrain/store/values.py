"""How values are stored: plain JSON (non-finite floats as strings), finite-or-NULL scalar
floats, and timezone-aware UTC timestamps."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def jsonable(value: Any, where: str = "value") -> Any:
    """Plain JSON data: non-finite floats become "nan"/"inf"/"-inf"; numpy/torch scalars unwrap."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Path):
        return str(value)
    item = getattr(value, "item", None)  # numpy / torch scalars
    if callable(item):
        return jsonable(item(), where)
    raise TypeError(f"{where}: {type(value).__name__} is not JSON-serialisable; convert it before storing")


def finite_or_none(value: float | None) -> float | None:
    # Scalar REAL columns cannot hold a string, and SQLite would turn NaN into NULL anyway.
    return None if value is None or not math.isfinite(value) else float(value)


def now_utc() -> datetime:
    return datetime.now(UTC)
