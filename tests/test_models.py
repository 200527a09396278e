"""Model specs, the deterministic tiny model, and LoRA reset on the resident base."""

from __future__ import annotations

import pytest
import torch

from posttrain.errors import PosttrainError
from posttrain.models import ResidentModel, device_settings, materialize, parameter_count, resolve


def test_tiny_random_is_deterministic(tiny_spec, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    first = load_file(materialize("tiny-random") / "model.safetensors")
    monkeypatch.setenv("POSTTRAIN_HOME", str(tmp_path))
    torch.manual_seed(1234)  # the caller's RNG state must not matter
    second = load_file(materialize("tiny-random") / "model.safetensors")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_reset_restores_base_logits_exactly(tiny_spec):
    resident = ResidentModel(tiny_spec)
    ids = torch.tensor([[1, 500, 900, 42, 7]])
    with torch.no_grad():
        base = resident.base(input_ids=ids).logits.clone()
    model = resident.fresh_adapter(8, 16, 0.0, seed=3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.add_(0.05)
        changed = model(input_ids=ids).logits
    assert not torch.allclose(changed, base)
    resident.reset_adapter()
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, base)
    trainable, total = parameter_count(model)
    assert 0 < trainable < total


def test_device_settings_on_cpu():
    s = device_settings("cpu")
    assert s.dtype == torch.float32 and s.attn_implementation == "sdpa"


def test_unknown_local_dir_is_a_clear_error(tmp_path):
    with pytest.raises(PosttrainError, match="no config.json"):
        resolve(str(tmp_path))


def test_use_kernels_is_opt_in_and_names_the_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    assert device_settings().use_kernels is False
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "kernels" else real(name, *a)
    )
    with pytest.raises(PosttrainError, match="pip install kernels"):
        device_settings(use_kernels=True)


def test_the_embedded_models_public_id_maps_back_to_the_spec():
    from posttrain.models import PUBLIC_IDS, embedded_spec, public_id

    hub_id = "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert public_id("smollm2-135m") == hub_id and embedded_spec(hub_id) == "smollm2-135m"
    # no public id: the spec stands, and other hub ids pass through untouched
    assert public_id("tiny-random") == "tiny-random" and "tiny-random" not in PUBLIC_IDS
    assert embedded_spec("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"
