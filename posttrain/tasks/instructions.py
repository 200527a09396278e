"""Instruction data for SFT and preference data for DPO, as TRL conversational rows.

Both loaders read any format `read_records` understands, validate every row before
returning (a bad row 9,000 lines in fails here, not an hour into training), convert to
TRL's conversational shapes and split train/validation with a seeded shuffle.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Literal

from posttrain.errors import DataError
from posttrain.tasks.loader import Record, detect_shape, read_records, validate_rows

_SAMPLES = {"alpaca": "sample_alpaca.jsonl", "preference": "sample_preference.jsonl"}


def sample_path(name: Literal["alpaca", "preference"]) -> Path:
    """Path of a data file bundled with the package (written by bench/make_sample_data.py)."""
    if name not in _SAMPLES:
        raise ValueError(f"unknown sample {name!r} (expected one of {sorted(_SAMPLES)})")
    return Path(str(files("posttrain").joinpath("data", _SAMPLES[name])))


def load_sft_dataset(
    path: str | Path,
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    max_train: int = 10_000,
    max_val: int = 2_000,
    val_path: str | Path | None = None,
) -> tuple[list[dict], list[dict]]:
    """Read Alpaca, chat (`messages`) or prompt-completion rows as (train, validation) lists.

    Rows come back as TRL conversational prompt-completion:
    `{"prompt": [{"role": "user", "content": ...}, ...], "completion": [{"role": "assistant", ...}]}`.
    Alpaca's user turn is the instruction, plus "\\n\\n" + input when input is non-empty; a chat
    row's prompt is every turn before its final assistant turn. The split is a seeded shuffle
    (same seed, same split); validation gets round(n * val_fraction) rows, at least one when
    val_fraction > 0 and there are two or more rows. The caps cut each side after shuffling.
    With `val_path` the validation rows come from that file instead (a fixed held-out set that
    the caller chose, e.g. to keep a test split apart) and every row of `path` is training data.
    """

    def read(file: str | Path) -> list[dict]:
        records = read_records(file)
        shape = detect_shape(records)
        if shape == "preference":
            raise _wrong_shape(records[0], "preference rows (prompt, chosen, rejected)", "SFT", "Alpaca rows")
        return [_sft_example(row, shape) for row in validate_rows(records, shape)]

    return _split_or_pair(read, path, val_path, val_fraction, seed, max_train, max_val)


def load_preference_dataset(
    path: str | Path,
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    max_train: int = 10_000,
    max_val: int = 2_000,
    val_path: str | Path | None = None,
) -> tuple[list[dict], list[dict]]:
    """Read preference rows (prompt, chosen, rejected) as (train, validation) lists for DPO.

    Each field may be a string or a list of {role, content} turns; strings become one user
    turn (prompt) or one assistant turn (chosen, rejected), so every returned row is TRL
    conversational: `{"prompt": [...], "chosen": [{"role": "assistant", ...}], "rejected": [...]}`.
    Splitting (and `val_path`) works as in `load_sft_dataset`.
    """

    def read(file: str | Path) -> list[dict]:
        records = read_records(file)
        shape = detect_shape(records)
        if shape != "preference":
            raise _wrong_shape(
                records[0], f"{shape} rows", "DPO", "preference rows: prompt, chosen, rejected"
            )
        return [
            {
                "prompt": _as_turns(row["prompt"], "user"),
                "chosen": _as_turns(row["chosen"], "assistant"),
                "rejected": _as_turns(row["rejected"], "assistant"),
            }
            for row in validate_rows(records, shape)
        ]

    return _split_or_pair(read, path, val_path, val_fraction, seed, max_train, max_val)


def _wrong_shape(first: Record, found: str, stage: str, needed: str) -> DataError:
    return DataError(first.source, None, None, f"holds {found}; {stage} needs {needed}")


def _sft_example(row: dict, shape: str) -> dict:
    if shape == "alpaca":
        content = row["instruction"] + (f"\n\n{row['input']}" if row["input"].strip() else "")
        return {
            "prompt": [{"role": "user", "content": content}],
            "completion": [{"role": "assistant", "content": row["output"]}],
        }
    if shape == "messages":
        return {"prompt": row["messages"][:-1], "completion": row["messages"][-1:]}
    return {
        "prompt": _as_turns(row["prompt"], "user"),
        "completion": _as_turns(row["completion"], "assistant"),
    }


def _as_turns(value: str | list[dict], role: str) -> list[dict]:
    return [{"role": role, "content": value}] if isinstance(value, str) else value


def _split_or_pair(
    read: Callable[[str | Path], list[dict]],
    path: str | Path,
    val_path: str | Path | None,
    val_fraction: float,
    seed: int,
    max_train: int,
    max_val: int,
) -> tuple[list[dict], list[dict]]:
    if val_path is None:
        return _split(read(path), val_fraction, seed, max_train, max_val)
    train, _ = _split(read(path), 0.0, seed, max_train, max_val)
    val, _ = _split(read(val_path), 0.0, seed, max_val, max_val) if max_val else ([], [])
    return train, val


def _split(
    rows: list[dict], val_fraction: float, seed: int, max_train: int, max_val: int
) -> tuple[list[dict], list[dict]]:
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if max_train < 1 or max_val < 0:
        raise ValueError(f"max_train must be >= 1 and max_val >= 0, got {max_train} and {max_val}")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n = len(rows)
    n_val = 0
    if val_fraction > 0 and n >= 2:
        n_val = min(n - 1, max(1, round(n * val_fraction)))
    val = [rows[i] for i in order[:n_val][:max_val]]
    train = [rows[i] for i in order[n_val:][:max_train]]
    return train, val
