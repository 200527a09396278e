"""The served model both serve test modules talk to: one uvicorn server per module, real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from posttrain.models import load_for_inference
from posttrain.pipelines.serve import create_app, serve_in_thread

SERVED_NAME = "tiny-random"  # the `model` clients send


@pytest.fixture(scope="module")
def served(tiny_spec: str) -> Iterator[tuple[str, Any, Any]]:
    """(base URL, model, tokenizer): one uvicorn server for the whole module."""
    import torch

    torch.set_num_threads(1)
    model, tokenizer = load_for_inference(tiny_spec)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NO_PROXY", "127.0.0.1,localhost")
        for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "POSTTRAIN_AGENT_MODEL"):
            mp.delenv(name, raising=False)
        with serve_in_thread(create_app(model, tokenizer, SERVED_NAME), startup_timeout=30) as url:
            yield url, model, tokenizer


@pytest.fixture(scope="module")
def client(served: tuple[str, Any, Any]) -> openai.OpenAI:
    # generous: a tool turn on a loaded 2-core box can take most of a minute
    return openai.OpenAI(base_url=served[0], api_key="x", max_retries=0, timeout=120)
