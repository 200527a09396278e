"""What the terminal shows: transformers' unlabelled "Loading weights" bar is silenced, its other
bars are not. Each check runs in its own process, as the CLI does, so the hook and the logging
switches `quiet_libraries` sets never leak into other tests."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = """
import sys
from transformers import AutoModelForCausalLM
from transformers.utils import logging
from posttrain.models import materialize
from posttrain.pipelines.terminal import quiet_libraries

if sys.argv[1] == "quiet":
    quiet_libraries()
AutoModelForCausalLM.from_pretrained(materialize("tiny-random"))
for _ in logging.tqdm(range(3), desc="Another bar"):
    pass
"""


def _stderr(mode: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stderr


@pytest.mark.parametrize(("mode", "loading_bar"), [("plain", True), ("quiet", False)])
def test_only_the_loading_weights_bar_is_silenced(tiny_spec, mode, loading_bar):
    stderr = _stderr(mode)
    assert ("Loading weights" in stderr) is loading_bar
    assert "Another bar" in stderr  # every other transformers bar still draws
