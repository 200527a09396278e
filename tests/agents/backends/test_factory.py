"""Backends by name, and the errors a wrong name or a missing model gives."""

from __future__ import annotations

import pytest

from posttrain.agents.backends import make_backend
from posttrain.errors import ConfigError


def test_make_backend_builds_by_name_and_names_the_fix() -> None:
    assert make_backend("rules").name == "rules"
    with pytest.raises(ConfigError, match="unknown agent backend"):
        make_backend("gpt")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="needs model="):
        make_backend("local")
