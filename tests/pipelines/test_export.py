"""`posttrain export` on a real 2-step tiny-random SFT run: the merged model computes what the
adapter on its base computes, the exported adapter loads with plain PEFT, and a bad target or
a non-empty --out is refused with exit 2 before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from posttrain.pipelines.export import run_export
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def trained(tiny_spec: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder holding `runs/a`, a finished 2-step SFT run on tiny-random."""
    root = tmp_path_factory.mktemp("export")
    # A high learning rate so the adapter moves the logits well past the comparison's tolerance.
    out = run_cli(
        "sft", "--preset", "test", "--name", "a", "--output-dir", "runs", "--max-steps", "2",
        "--set", "train.learning_rate=0.05", cwd=root,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return root


def _logits(model, tokenizer) -> torch.Tensor:
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Reverse the letters of this word: export"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        return model(**ids).logits.float()


def test_merged_model_loads_as_is_and_matches_adapter_on_base(trained, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from posttrain.models import load_model

    out = run_export("a", tmp_path / "merged", merge=True, output_root=str(trained / "runs"))
    for name in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json"):
        assert (out / name).is_file(), name
    assert not list(out.glob("adapter_*")), "a merged export carries no adapter files"
    merged = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template

    base, base_tok = load_model("tiny-random")
    base_logits = _logits(base.eval(), base_tok)
    adapted = PeftModel.from_pretrained(base, str(trained / "runs" / "a" / "adapter")).eval()
    expected = _logits(adapted, base_tok)
    got = _logits(merged, tokenizer)
    assert (expected - base_logits).abs().max() > 1e-2, "the adapter should change the logits"
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)

    card = (out / "README.md").read_text()
    assert "library_name: transformers" in card and "posttrain sft" in card
    assert "| eval_loss |" in card and "| train.learning_rate | 0.05 |" in card


def test_merged_export_in_bf16_halves_the_weights(trained, tmp_path):
    from safetensors import safe_open

    out = run_export("a", tmp_path / "bf16", merge=True, dtype="bf16", output_root=str(trained / "runs"))
    with safe_open(str(out / "model.safetensors"), "pt") as fh:
        dtypes = {fh.get_slice(k).get_dtype() for k in fh.keys()}  # noqa: SIM118 (not iterable)
    assert dtypes == {"BF16"}
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"


def test_exported_adapter_loads_with_plain_peft(trained, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from posttrain.models import materialize

    out = run_export(str(trained / "runs" / "a"), tmp_path / "adapter")
    config = json.loads((out / "adapter_config.json").read_text())
    # tiny-random has no public id, so its spec stands (posttrain resolves it); never a cache path
    assert config["base_model_name_or_path"] == "tiny-random"
    trained_weights = (trained / "runs" / "a" / "adapter" / "adapter_model.safetensors").read_bytes()
    assert (out / "adapter_model.safetensors").read_bytes() == trained_weights
    base = AutoModelForCausalLM.from_pretrained(str(materialize("tiny-random")))
    model = PeftModel.from_pretrained(base, str(out))
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b)


@pytest.mark.slow
def test_smollm2_adapter_names_the_hub_id_and_posttrain_maps_it_back(tmp_path, monkeypatch):
    """The embedded model's adapter points at HuggingFaceTB/SmolLM2-135M-Instruct and loads in
    posttrain offline, through that id, on the local Q4_1-dequantized copy."""
    from posttrain.models import ResidentModel, load_for_inference, resolve
    from posttrain.rundir import save_adapter

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    resident = ResidentModel("smollm2-135m")
    model = resident.fresh_adapter(r=2, alpha=4, dropout=0.0, seed=0)
    saved = save_adapter(model, tmp_path / "adapter", "smollm2-135m", {"kind": "sft"})
    out = run_export(str(saved), tmp_path / "export")
    hub_id = "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == hub_id
    assert json.loads((out / "posttrain.json").read_text())["base_model"] == hub_id
    assert f"base_model: {hub_id}" in (out / "README.md").read_text()
    assert resolve(hub_id) == resolve("smollm2-135m")
    loaded, _ = load_for_inference(hub_id, out)
    assert loaded.config.num_hidden_layers == resident.base.config.num_hidden_layers


def test_bad_targets_and_a_non_empty_out_exit_2_and_write_nothing(trained, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine\n")
    runs = str(trained / "runs")
    cases = {
        "no run": (["nope", "--out", "x"], "no run or adapter 'nope'"),
        "taken": (["a", "--out", "taken"], "not empty"),
        "not an adapter": ([str(tmp_path / "taken"), "--out", "y"], "no adapter_config.json"),
        "dtype": (["a", "--out", "z", "--dtype", "int4"], "--dtype"),
    }
    for label, (args, message) in cases.items():
        out = run_cli("export", *args, "--output-dir", runs, cwd=tmp_path)
        assert out.returncode == 2, (label, out.stderr)
        assert message in out.stderr and "Traceback" not in out.stderr, (label, out.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine\n"


def test_gguf_without_a_converter_names_what_to_install(trained, tmp_path, monkeypatch):
    from posttrain.pipelines.export import gguf_converter

    monkeypatch.delenv("LLAMA_CPP_DIR", raising=False)
    if gguf_converter() is not None:
        pytest.skip("this machine has llama.cpp's converter importable")
    runs = str(trained / "runs")
    out = run_cli("export", "a", "--out", "g", "--format", "gguf", "--output-dir", runs, cwd=tmp_path)
    assert out.returncode == 2
    assert "convert_hf_to_gguf.py" in out.stderr and "LLAMA_CPP_DIR" in out.stderr
    assert not (tmp_path / "g").exists()
