"""Fixtures the backend and team tests share."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Local HTTP must not go through a proxy, and no real OpenAI key or endpoint may leak in."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "POSTTRAIN_AGENT_MODEL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def tiny_model(tiny_spec: str) -> tuple[Any, Any]:
    pytest.importorskip("llguidance")
    import torch

    from posttrain.models import device_settings, load_model

    torch.set_num_threads(1)
    return load_model(tiny_spec, device_settings("cpu"))
