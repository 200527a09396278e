"""The held-out unit_converter tool."""

from __future__ import annotations

import math
from typing import Any

from posttrain.tasks.tool_use.tools.calculator import tidy_number

UNITS: dict[str, tuple[str, float, str]] = {  # code: (dimension, factor to its base unit, name)
    "m": ("length", 1.0, "meters"),
    "km": ("length", 1000.0, "kilometers"),
    "cm": ("length", 0.01, "centimeters"),
    "mi": ("length", 1609.344, "miles"),
    "ft": ("length", 0.3048, "feet"),
    "in": ("length", 0.0254, "inches"),
    "kg": ("mass", 1.0, "kilograms"),
    "g": ("mass", 0.001, "grams"),
    "lb": ("mass", 0.45359237, "pounds"),
    "l": ("volume", 1.0, "liters"),
    "gal": ("volume", 3.785411784, "gallons"),
    "celsius": ("temperature", 1.0, "degrees Celsius"),
    "fahrenheit": ("temperature", 1.0, "degrees Fahrenheit"),
}


def convert_units(value: float, from_unit: str, to_unit: str) -> dict[str, Any]:
    """Convert between units of one dimension; the result keeps 4 decimals."""
    if from_unit not in UNITS or to_unit not in UNITS:
        raise ValueError(f"unknown unit; known: {', '.join(UNITS)}")
    if UNITS[from_unit][0] != UNITS[to_unit][0]:
        raise ValueError(
            f"cannot convert {UNITS[from_unit][0]} ({from_unit}) to {UNITS[to_unit][0]} ({to_unit})"
        )
    if UNITS[from_unit][0] == "temperature":  # affine, not a factor
        celsius = value if from_unit == "celsius" else (value - 32) * 5 / 9
        result = celsius if to_unit == "celsius" else celsius * 9 / 5 + 32
    else:
        result = value * UNITS[from_unit][1] / UNITS[to_unit][1]
    if not math.isfinite(result):  # 1e308 mi in cm: Infinity is not JSON, and no answer anyway
        raise ValueError(f"{value} {from_unit} in {to_unit} is too large to represent")
    return {"value": tidy_number(round(result, 4)), "unit": to_unit}
