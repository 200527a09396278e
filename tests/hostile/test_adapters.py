"""Broken adapters given to dpo, generate, eval and serve: truncated or tiny weight files, cut-off
JSON, no weights, an adapter of another base. Each is refused before the model loads, naming the
file (and, for another base, both models)."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest

from tests.hostile.conftest import TEST, refused, write_rows


def _adapter_of(spec: str, out: Path) -> Path:
    """A real PEFT adapter of `spec` saved as posttrain saves one (weights + posttrain.json)."""
    from posttrain.models import ResidentModel, device_settings
    from posttrain.rundir import save_adapter

    resident = ResidentModel(spec, device_settings("cpu"))
    model = resident.fresh_adapter(4, 8, 0.0, 0, ["q_proj", "v_proj"])
    return save_adapter(model, out, spec, {"kind": "sft"})


@pytest.fixture(scope="module")
def adapters(tmp_path_factory, tiny_spec) -> dict[str, Path]:
    """A good tiny-random adapter and one of a narrower Llama (hidden size 32 instead of 64)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from posttrain.models import load_tokenizer

    root = tmp_path_factory.mktemp("adapters")
    tok = load_tokenizer(tiny_spec)
    narrow = root / "narrow-llama"
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(narrow)
    tok.save_pretrained(narrow)
    return {"good": _adapter_of(tiny_spec, root / "good"), "other": _adapter_of(str(narrow), root / "other")}


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


BREAKS = {
    "truncated_weights": lambda a: _truncate(a / "adapter_model.safetensors"),
    "five_byte_weights": lambda a: (a / "adapter_model.safetensors").write_bytes(b"\x00\x01\x02\x03\x04"),
    "truncated_config": lambda a: _truncate(a / "adapter_config.json"),
    "config_is_a_list": lambda a: (a / "adapter_config.json").write_text("[1, 2]"),
    "truncated_posttrain_json": lambda a: _truncate(a / "posttrain.json"),
    "no_weights": lambda a: (a / "adapter_model.safetensors").unlink(),
    "no_adapter_config": lambda a: (a / "adapter_config.json").unlink(),
}
NEEDLES = {
    "truncated_weights": "adapter_model.safetensors",
    "five_byte_weights": "adapter_model.safetensors",
    "truncated_config": "adapter_config.json",
    "config_is_a_list": "adapter_config.json",
    "truncated_posttrain_json": "posttrain.json",
    "no_weights": "no weights",
    "no_adapter_config": "adapter_config.json",
}


@pytest.fixture
def broken(adapters, tmp_path, request) -> Path:
    out = tmp_path / "adapter"
    shutil.copytree(adapters["good"], out)
    BREAKS[request.param](out)
    return out


def _commands(adapter: Path, tmp_path: Path) -> dict[str, list[str]]:
    prompts = write_rows(tmp_path / "prompts.jsonl", [{"prompt": "hi"}])
    return {
        "dpo": ["dpo", *TEST, "--adapter", str(adapter), "--model", "tiny-random", "--name", "d"],
        "generate": ["generate", "-i", str(prompts), "-o", "out.jsonl", "--adapter", str(adapter)],
        "eval": ["eval", "--task", "tool_use", "--n", "1", "--adapter", str(adapter), "-m", "tiny-random"],
    }


@pytest.mark.parametrize("command", ["dpo", "generate", "eval"])
@pytest.mark.parametrize("broken", list(BREAKS), indirect=True)
def test_a_broken_adapter_is_refused(cli, tmp_path, broken, command, request):
    args = _commands(broken, tmp_path)[command]
    refused(cli(*args), NEEDLES[request.node.callspec.params["broken"]], root=tmp_path)
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize("command", ["dpo", "generate", "eval"])
def test_an_adapter_of_another_base_names_both_models(cli, tmp_path, adapters, command):
    args = _commands(adapters["other"], tmp_path)[command]
    if "-m" not in args and "--model" not in args:
        args += ["-m", "tiny-random"]
    line = refused(cli(*args), "narrow-llama", "tiny-random", root=tmp_path)
    assert "does not fit" in line


@pytest.mark.parametrize("command", ["dpo", "generate", "eval"])
@pytest.mark.parametrize("kind", ["missing", "file"])
def test_an_adapter_path_that_is_not_a_folder(cli, tmp_path, command, kind):
    path = tmp_path / "adapter"
    if kind == "file":
        path.write_text("{}")
    args = _commands(path, tmp_path)[command]
    refused(cli(*args), str(path), root=tmp_path)


def test_serve_refuses_a_broken_adapter_before_loading(cli, tmp_path, adapters):
    out = tmp_path / "adapter"
    shutil.copytree(adapters["good"], out)
    (out / "adapter_model.safetensors").write_bytes(b"short")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    refused(cli("serve", "--adapter", out, "--port", port), "adapter_model.safetensors")


def test_the_good_adapter_passes_the_checks(adapters):
    from posttrain.models import check_adapter

    check_adapter(adapters["good"], "tiny-random")
    meta = json.loads((adapters["good"] / "posttrain.json").read_text())
    assert meta["base_model"] == "tiny-random"
