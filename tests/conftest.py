"""Shared fixtures. Models are materialized once into a repo-local POSTTRAIN_HOME (git-ignored)
so the suite never touches the user's cache and a second run skips the build."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("POSTTRAIN_HOME", str(REPO / ".posttrain-home"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_spec() -> str:
    from posttrain.models import materialize

    materialize("tiny-random")
    return "tiny-random"


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_spec: str):
    from posttrain.models import load_tokenizer

    return load_tokenizer(tiny_spec)


def run_cli(
    *args: str, cwd: Path, timeout: float = 600, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess:
    """Run `posttrain ...` as a user would, in its own process; `env` adds to the environment,
    `stdin` is what the user types (for chat)."""
    return subprocess.run(
        [sys.executable, "-m", "posttrain.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
        env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})},
    )
