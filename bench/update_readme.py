"""Fill README's generated sections: the config reference (from the pydantic models) and the
results tables (from bench/results/*.json). Run after changing a config or rerunning a bench:

    python bench/update_readme.py

tests/test_readme.py fails when README and these sources disagree, so the README stays true.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from posttrain.config import DPOConfig, SFTConfig, TuneConfig, config_reference

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CONFIGS = {"SFTConfig": SFTConfig, "DPOConfig": DPOConfig, "TuneConfig": TuneConfig}


def _sft_throughput(r: dict) -> str:
    return (
        "**SFT throughput** (`python bench/sft_throughput.py`): posttrain SFT against a plain TRL "
        f"SFTTrainer script, same model ({r['model']}), data, LoRA r=16 and batch size, one process, "
        f"on {r['device']}.\n\n"
        "| ours tokens/s | TRL tokens/s | ratio vs TRL | fp32 matmul ceiling GFLOP/s | utilisation |\n"
        "|---|---|---|---|---|\n"
        f"| {r['ours_tokens_per_s']} | {r['trl_tokens_per_s']} | {r['ratio_vs_trl']} | "
        f"{r['matmul_gflops']} | {r['utilisation']} |\n\n"
        "utilisation = 4 × all parameters × ours tokens/s ÷ the highest of three matmul readings "
        "taken during the run.\n"
    )


FORMATTERS = {"sft_throughput": _sft_throughput}


def results_section() -> str:
    parts = []
    for name, fmt in FORMATTERS.items():
        path = RESULTS / f"{name}.json"
        if path.exists():
            parts.append(fmt(json.loads(path.read_text())))
    return "\n".join(parts) or "No benchmark has been run yet.\n"


def render(readme: str) -> str:
    for name, cls in CONFIGS.items():
        readme = _replace(readme, f"config:{name}", config_reference(cls))
    return _replace(readme, "results", results_section(), closing="/results")


def _replace(text: str, tag: str, body: str, closing: str | None = None) -> str:
    start, end = f"<!-- {tag} -->", f"<!-- {closing or '/' + tag} -->"
    if end not in text:
        text = text.replace(start, f"{start}\n{end}")
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    return pattern.sub(lambda _: f"{start}\n{body}{end}", text)


if __name__ == "__main__":
    path = ROOT / "README.md"
    path.write_text(render(path.read_text()))
    print(f"updated {path}")
