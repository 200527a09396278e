"""`posttrain eval` and `posttrain chat --tools tool_use` on tiny-random: the metric keys with n
and CI on both tool_use splits and on meetings, and the tool chat showing every step."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from posttrain.errors import ConfigError, PosttrainError
from posttrain.pipelines.evaluate import run_eval
from posttrain.tasks.tool_use import TOOL_USE_METRICS, USER_EVAL_METRICS
from posttrain.tasks.tool_use.pool import HELDOUT_FAMILIES
from tests.conftest import run_cli


def test_eval_cli_tool_use_reports_every_metric_with_n_and_ci(tiny_spec, tmp_path):
    out = run_cli(
        "eval",
        "--task",
        "tool_use",
        "--model",
        "tiny-random",
        "--n",
        "2",
        "--max-new-tokens",
        "8",
        "--max-steps",
        "2",
        "-o",
        "eval.json",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| base |" in out.stdout
    result = json.loads((tmp_path / "eval.json").read_text())
    assert set(result["splits"]) == {"unseen_families", "seen_families", "indist", "heldout"}
    for split in ("unseen_families", "seen_families"):
        figs = result["splits"][split]
        for name in USER_EVAL_METRICS:
            assert name in figs and f"{name}_n" in figs and f"{name}_ci" in figs, (split, name)
        assert figs["format_validity_n"] == figs["n"] == 2 and figs["ast_accuracy"] in (0.0, None)
        unseen = {r["family"] in HELDOUT_FAMILIES for r in result["records"][split]}
        assert unseen == {split == "unseen_families"}
    for split in ("indist", "heldout"):
        figs = result["splits"][split]
        for name in (*TOOL_USE_METRICS, "task_accuracy"):
            assert name in figs and f"{name}_n" in figs and f"{name}_ci" in figs, (split, name)
        assert figs["task_accuracy_n"] == figs["full_compliance_n"] == figs["n"] == 2  # episodes
        assert len(result["records"][split]) == 2
        assert figs["full_compliance"] == 0.0  # a random model never writes the format
        lo, hi = figs["full_compliance_ci"]
        assert lo <= figs["full_compliance"] <= hi
    assert result["compact_prompt"] is True and result["seed"] == 1000


def test_eval_meetings_has_both_modes_and_the_references(tiny_spec):
    result = run_eval("meetings", "tiny-random", None, n=3, max_new_tokens=6, max_steps=2)
    figs = result["splits"]["heldout"]
    for name in ("direct_accuracy", "direct_brier", "agent_accuracy", "agent_mean_tool_calls"):
        assert figs[f"{name}_n"] == 3 and figs[f"{name}_ci"] is not None
    assert figs["direct_brier"] == 0.25  # nothing parses, so every prediction counts as 0.5
    refs = result["references"]
    assert refs["majority_baseline_n"] == refs["oracle_accuracy_n"] == 3
    assert "oracle_accuracy" in result["table"]


def test_eval_rejects_unknown_task_and_split():
    with pytest.raises(PosttrainError, match="--task must be one of"):
        run_eval("chess", None, None)
    with pytest.raises(PosttrainError, match="--split for meetings"):
        run_eval("meetings", None, None, split="indist")


def test_chat_with_tools_shows_each_step(tiny_spec, tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "posttrain.cli",
            "chat",
            "--model",
            "tiny-random",
            "--tools",
            "tool_use",
            "--max-new-tokens",
            "4",
            "--max-steps",
            "2",
        ],
        input="What is 2+3?\n/quit\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    # A random model never writes the format: each step shows its parse failure, then the cap.
    assert "step 1" in proc.stdout and "step 2" in proc.stdout
    assert "no_action" in proc.stdout or "no_thought" in proc.stdout
    assert "no Final Answer after 2 steps" in proc.stdout


# ------------------------------------------------------------------ eval --data: a user's own rows

_CITY = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
_USER_TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather.", "parameters": _CITY}},
    {"type": "function", "function": {"name": "get_time", "description": "Local time.", "parameters": _CITY}},
]
_USER_ROWS = [
    {"prompt": "Weather in Paris?", "gold": [{"get_weather": {"city": ["Paris"]}}]},
    {
        "messages": [{"role": "user", "content": "Time in Oslo?"}],
        "tools": _USER_TOOLS[1:],
        "gold": [{"get_time": {"city": ["Oslo", "Oslo, Norway"]}}],
    },
    {"prompt": "Tell me a joke.", "gold": "no_call"},
]


def test_eval_cli_on_user_data_scores_ast_accuracy_with_n_and_ci(tiny_spec, tmp_path):
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _USER_ROWS))
    (tmp_path / "tools.json").write_text(json.dumps(_USER_TOOLS))
    args = ["eval", "--task", "tool_use", "--data", "items.jsonl", "--tools", "tools.json"]
    out = run_cli(*args, "--model", "tiny-random", "--max-new-tokens", "8", "-o", "eval.json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "ast_accuracy" in out.stdout and "| base |" in out.stdout
    result = json.loads((tmp_path / "eval.json").read_text())
    figs = result["figures"]
    assert figs["n"] == 3 and result["data"] == "items.jsonl"
    assert figs["ast_accuracy_n"] == figs["must_call_rate_n"] == 2  # rows whose gold is a call
    assert figs["irrelevance_accuracy_n"] == 1 and figs["format_validity_n"] == 3
    assert figs["ast_accuracy"] == 0.0 and figs["format_validity"] == 0.0  # random model, no format
    lo, hi = figs["format_validity_ci"]
    assert lo <= figs["format_validity"] <= hi
    assert [r["line"] for r in result["records"]] == [1, 2, 3]
    assert all(isinstance(r["reply"], str) for r in result["records"])


def test_eval_cli_constrained_keeps_every_turn_in_its_rows_tool_grammar(tiny_spec, tmp_path):
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _USER_ROWS))
    (tmp_path / "tools.json").write_text(json.dumps(_USER_TOOLS))
    args = ["eval", "--task", "tool_use", "--data", "items.jsonl", "--tools", "tools.json", "--constrained"]
    out = run_cli(*args, "--model", "tiny-random", "--max-new-tokens", "24", "-o", "eval.json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["decoding"] == "constrained"
    # even a random model writes the format's opening; free, it never does (the test above)
    assert all(r["reply"].startswith("Thought: ") for r in result["records"])
    assert result["figures"]["thought_prefix_rate"] == 1.0


def test_eval_cli_bad_row_exits_2_naming_line_and_field_and_writes_nothing(tiny_spec, tmp_path):
    rows = [*_USER_ROWS[1:], {"prompt": "Weather?", "tools": _USER_TOOLS, "gold": [{"get_weather": {}}, 3]}]
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "tools.json").write_text(json.dumps(_USER_TOOLS))
    args = ["eval", "--task", "tool_use", "--data", "items.jsonl", "--tools", "tools.json"]
    out = run_cli(*args, "-o", "eval.json", cwd=tmp_path)
    assert out.returncode == 2
    assert 'items.jsonl:3: field "gold[1]" must be one call' in out.stdout + out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "eval.json").exists()
    with pytest.raises(PosttrainError, match="--data is for --task tool_use"):
        run_eval("meetings", None, None, data=tmp_path / "items.jsonl")


def _chat_template_adapter(tiny_spec: str, tmp_path):
    """A LoRA adapter on a copy of tiny-random whose chat template renders tools, noted as trained
    with `data.tool_format: chat_template` (what `posttrain align` writes for such a run)."""
    import shutil

    from peft import get_peft_model

    from posttrain.models import load_model, lora_config, resolve
    from posttrain.rundir import save_adapter
    from tests.tasks.tool_use.test_chat_format import QWEN_TEMPLATE

    model = tmp_path / "qwen-templated"
    shutil.copytree(resolve(tiny_spec), model)
    (model / "chat_template.jinja").write_text(QWEN_TEMPLATE)
    base, _ = load_model(str(model))
    meta = {"kind": "align-sft", "task": "tool_use", "compact_prompt": True, "tool_format": "chat_template"}
    return save_adapter(get_peft_model(base, lora_config(4, 8, 0.0)), tmp_path / "adapter", str(model), meta)


def test_an_adapter_trained_in_the_chat_template_format_is_scored_and_served_in_it_and_chatted_in_it(
    tiny_spec, tmp_path
):
    from posttrain.pipelines.serve import serve_tool_prompt

    adapter = _chat_template_adapter(tiny_spec, tmp_path)
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _USER_ROWS))
    (tmp_path / "tools.json").write_text(json.dumps(_USER_TOOLS))
    out = run_eval("tool_use", None, adapter, data=tmp_path / "items.jsonl", tools=tmp_path / "tools.json",
                   max_new_tokens=4, output=tmp_path / "eval.json")  # fmt: skip
    figs = out["figures"]
    # The chat-template format has no Thought, so that figure counts nothing; Thought→Action counts every row.
    assert figs["thought_prefix_rate_n"] == 0 and figs["format_validity_n"] == 3
    records = json.loads((tmp_path / "eval.json").read_text())["records"]
    assert all(isinstance(r["reply"], str) for r in records)
    assert serve_tool_prompt(adapter, None) == "chat_template"  # serve prompts it with its template's tools
    with pytest.raises(ConfigError, match="constrained decoding of tool turns needs the Thought→Action"):
        run_eval(
            "tool_use",
            None,
            adapter,
            data=tmp_path / "items.jsonl",
            tools=tmp_path / "tools.json",
            constrained=True,
        )
    # chat --tools prompts it with its template's tool list and reads its replies in that format
    args = ("chat", "--adapter", str(adapter), "--max-new-tokens", "4", "--max-steps", "1")
    args += ("--tools", "tools.json")
    chat = run_cli(*args, cwd=tmp_path, stdin="weather in Paris?\n/quit\n", env={"COLUMNS": "200"})
    assert chat.returncode == 0, chat.stderr[-2000:]
    assert "your tools (get_weather, get_time)" in chat.stdout and "step 1" in chat.stdout


def test_eval_cli_relevance_gate_records_scores_and_needs_constrained(tiny_spec, tmp_path):
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _USER_ROWS))
    (tmp_path / "tools.json").write_text(json.dumps(_USER_TOOLS))
    args = [
        "eval",
        "--task",
        "tool_use",
        "--data",
        "items.jsonl",
        "--tools",
        "tools.json",
        "--relevance-gate",
        "0.2",
    ]
    out = run_cli(*args, "--model", "tiny-random", "-o", "eval.json", cwd=tmp_path)
    assert out.returncode == 2 and "add --constrained" in out.stdout + out.stderr
    assert not (tmp_path / "eval.json").exists()
    out = run_cli(
        *args,
        "--constrained",
        "--model",
        "tiny-random",
        "--max-new-tokens",
        "24",
        "-o",
        "eval.json",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["decoding"] == "constrained, relevance gate 0.2"
    assert [len(r["relevance"]) for r in result["records"]] == [2, 1, 2]  # one score per offered tool


def test_eval_a_base_scored_gate_keeps_the_adapter_apart_and_says_so(tiny_spec, tmp_path):
    """--relevance-gate-scorer base: the adapter is loaded unmerged (so the gate can switch it off
    without rounding the weights) and calibrated at --relevance-gate-keep."""
    import torch
    from peft import PeftModel, get_peft_model

    from posttrain.models import load_for_inference, load_model, lora_config
    from posttrain.pipelines.evaluate import run_eval
    from posttrain.rundir import save_adapter

    base, _ = load_model(tiny_spec)
    lora = get_peft_model(base, lora_config(4, 8, 0.0))
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    meta = {"kind": "align-sft", "task": "tool_use", "compact_prompt": True}
    adapter = save_adapter(lora, tmp_path / "adapter", tiny_spec, meta)
    kept, _ = load_for_inference(tiny_spec, adapter, keep_base=True)
    assert isinstance(kept, PeftModel) and not any(getattr(m, "merged", False) for m in kept.modules())
    assert not isinstance(load_for_inference(tiny_spec, adapter)[0], PeftModel)

    (tmp_path / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _USER_ROWS))
    (tmp_path / "tools.json").write_text(json.dumps(_USER_TOOLS))
    out = run_eval(
        "tool_use",
        None,
        adapter,
        data=tmp_path / "items.jsonl",
        tools=tmp_path / "tools.json",
        max_new_tokens=16,
        constrained=True,
        relevance_gate=0.2,
        relevance_gate_scorer="base",
    )
    assert out["decoding"] == "constrained, relevance gate 0.2 (base-scored)"
    cli = run_cli(
        "eval",
        "--task",
        "tool_use",
        "--data",
        "items.jsonl",
        "--relevance-gate-scorer",
        "adapter",
        cwd=tmp_path,
    )
    assert cli.returncode == 2 and "--relevance-gate-scorer" in cli.stdout + cli.stderr


def test_eval_cli_rerank_arguments_records_the_candidates_of_each_row(tiny_spec, tmp_path):
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _USER_ROWS))
    (tmp_path / "tools.json").write_text(json.dumps(_USER_TOOLS))
    args = ["eval", "--task", "tool_use", "--data", "items.jsonl", "--tools", "tools.json"]
    refused = run_cli(*args, "--rerank-arguments", "--rerank-scorer", "trained", cwd=tmp_path)
    assert refused.returncode == 2 and "gate's trained scorer" in refused.stdout + refused.stderr
    refused = run_cli(*args, "--rerank-policy-weight", "0.5", cwd=tmp_path)
    assert refused.returncode == 2 and "add --rerank-arguments" in refused.stdout + refused.stderr
    assert not (tmp_path / "e.json").exists()
    out = run_cli(
        *args,
        "--rerank-arguments",
        "--rerank-scorer",
        "base",
        "--rerank-policy-weight",
        "0.5",
        "--model",
        "tiny-random",
        "--max-new-tokens",
        "16",
        "-o",
        "e.json",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["decoding"] == "free, arguments reranked (base-scored) + policy likelihood x0.5"
    assert all(isinstance(r["rerank_candidates"], int) for r in result["records"])
