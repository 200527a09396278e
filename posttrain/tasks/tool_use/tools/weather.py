"""The held-out weather tool, over the bundled `weather.csv`."""

from __future__ import annotations

import csv
import functools
from pathlib import Path
from typing import Any

WEATHER_PATH = Path(__file__).resolve().parents[3] / "data" / "weather.csv"


@functools.lru_cache(maxsize=4)
def load_weather(path: Path = WEATHER_PATH) -> dict[tuple[str, str], dict[str, Any]]:
    """The bundled weather table keyed by (lower-case city, date)."""
    table = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            table[(row["city"].lower(), row["date"])] = {
                "city": row["city"],
                "date": row["date"],
                "condition": row["condition"],
                "high_c": int(row["high_c"]),
                "low_c": int(row["low_c"]),
                "precip_mm": float(row["precip_mm"]),
            }
    return table


def weather(city: str, date: str) -> dict[str, Any]:
    """The table row for `city` (case-insensitive) on `date`; the error lists what exists."""
    table = load_weather()
    row = table.get((city.strip().lower(), date))
    if row is None:
        cities = sorted({r["city"] for r in table.values()})
        dates = sorted({d for _, d in table})
        raise ValueError(
            f"no weather for {city!r} on {date}; cities: {', '.join(cities)}; dates {dates[0]}..{dates[-1]}"
        )
    return row
