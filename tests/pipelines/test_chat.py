"""`posttrain generate` and `posttrain chat` on tiny-random, and left-padded batching."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from posttrain.inference import generate_batch
from posttrain.models import load_for_inference
from tests.conftest import run_cli


def test_batched_generation_equals_one_at_a_time(tiny_spec):
    model, tok = load_for_inference(tiny_spec)
    convs = [
        [{"role": "user", "content": text}]
        for text in ("hi", "what is two plus two, exactly?", "name a colour")
    ]
    batched = generate_batch(model, tok, convs, max_new_tokens=8, batch_size=3)
    single = [generate_batch(model, tok, [c], max_new_tokens=8)[0] for c in convs]
    assert batched == single


def test_generate_cli_writes_one_row_per_prompt(tiny_spec, tmp_path):
    prompts = tmp_path / "p.jsonl"
    rows = [
        {"prompt": "hello"},
        {"instruction": "Add", "input": "2 and 3"},
        {"messages": [{"role": "user", "content": "x"}]},
        {"prompt": "hi", "completion": "the reference", "id": 7},
    ]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = run_cli(
        "generate",
        "--model",
        "tiny-random",
        "-i",
        str(prompts),
        "-o",
        "out.jsonl",
        "--max-new-tokens",
        "4",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    got = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    # each row keeps its own shape: a prompt string stays a string, messages stay messages
    assert [{k: v for k, v in g.items() if k != "completion"} for g in got[:3]] == rows[:3]
    assert got[3]["reference_completion"] == "the reference" and got[3]["id"] == 7
    assert all(isinstance(g["completion"], str) for g in got)


def test_generate_cli_rejects_a_row_without_prompt(tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "ok"}\n{"text": 1}\n')
    out = run_cli("generate", "--model", "tiny-random", "-i", str(prompts), "-o", "o.jsonl", cwd=tmp_path)
    assert out.returncode == 2 and f'{prompts}:2: field "prompt"' in out.stderr


def test_chat_repl_keeps_history_until_reset(tiny_spec, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "posttrain.cli", "chat", "--model", "tiny-random", "--max-new-tokens", "4"],
        input="hello\n/reset\nagain\n/quit\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("model>") == 2
    assert "history cleared" in proc.stdout


def _user_tools(tmp_path):
    (tmp_path / "shop.py").write_text(
        "import json, pathlib\n"
        "def price(item):\n"
        "    pathlib.Path('called.json').write_text(json.dumps({'item': item}))\n"
        "    return {'item': item, 'eur': 3.5}\n"
    )
    spec = {
        "type": "function",
        "function": {
            "name": "shop.price",
            "description": "Price of an item in the shop.",
            "parameters": {
                "type": "object",
                "properties": {"item": {"type": "string"}},
                "required": ["item"],
            },
        },
        "entry_point": "shop:price",
    }
    path = tmp_path / "tools.json"
    path.write_text(json.dumps([spec]))
    return path


def test_chat_runs_a_user_tool_through_its_entry_point(tmp_path, monkeypatch):
    from posttrain.pipelines.chat import _tool_registry
    from posttrain.toolcall import ToolCall, load_tools

    monkeypatch.chdir(tmp_path)
    with _tool_registry(load_tools(_user_tools(tmp_path))) as (registry, label, system):
        observation = registry.execute(ToolCall("shop.price", {"item": "tea"}))
        assert json.loads(observation) == {"item": "tea", "eur": 3.5}
        assert json.loads((tmp_path / "called.json").read_text()) == {"item": "tea"}
        assert "shop.price" in system(True) and label == "your tools"


def test_chat_cli_takes_a_tools_file(tiny_spec, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "posttrain.cli", "chat", "--model", "tiny-random", "--max-new-tokens", "4"]
        + ["--max-steps", "1", "--tools", str(_user_tools(tmp_path))],
        input="what does tea cost?\n/quit\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "your tools (shop.price)" in proc.stdout and "step 1" in proc.stdout


def test_chat_cli_rejects_a_bad_tools_file_before_loading(tmp_path):
    bad = tmp_path / "tools.json"
    bad.write_text(
        json.dumps([{"type": "function", "function": {"name": "x", "parameters": {"type": "strin"}}}])
    )
    out = run_cli("chat", "--model", "tiny-random", "--tools", str(bad), cwd=tmp_path)
    assert out.returncode == 2 and "tools.json" in out.stderr and "Traceback" not in out.stderr


def test_a_chat_template_tool_turn_runs_the_call_and_keeps_openai_history(tiny_spec, tmp_path, monkeypatch):
    """What `chat --tools` does for a chat_template adapter, one turn at a time: the prompt is the
    template rendered with the tool list, a `<tool_call>` reply runs the user's tool through its
    entry point, and the history holds the call and its result as OpenAI messages, so the next
    prompt is again exactly `apply_chat_template(history, tools=...)`."""
    import copy

    from posttrain.pipelines.chat import template_tool_step
    from posttrain.tasks.tool_use.chat_format import call_message, chat_tool_format
    from posttrain.toolcall import ToolRegistry, load_tools
    from tests.tasks.tool_use.test_chat_format import QWEN_TEMPLATE

    _, tok = load_for_inference(tiny_spec)
    tok = copy.deepcopy(tok)
    tok.chat_template = QWEN_TEMPLATE
    fmt = chat_tool_format(tok, "tiny-qwen")
    specs = load_tools(_user_tools(tmp_path))
    registry = ToolRegistry(specs)
    history = [{"role": "user", "content": "what does tea cost?"}]
    prompts: list[str] = []
    call_text = fmt.assistant_text(history, registry.schemas(), call_message("shop.price", {"item": "tea"}))
    replies = iter([call_text, "Tea costs 3.5 EUR."])

    def model(conversations):
        (turns,) = conversations
        prompts.append(tok.apply_chat_template(turns, add_generation_prompt=True, tokenize=False))
        return [next(replies)]

    monkeypatch.chdir(tmp_path)  # the entry point's module and its record live there
    step = template_tool_step(history, registry, fmt, model)
    assert "<tool_call>" in call_text and step.parse.kind == "call" and not step.tool_error
    assert json.loads(step.observation) == {"item": "tea", "eur": 3.5}
    assert json.loads((tmp_path / "called.json").read_text()) == {"item": "tea"}
    assert [m["role"] for m in history] == ["user", "assistant", "tool"]
    assert history[1]["tool_calls"][0]["function"] == {"name": "shop.price", "arguments": {"item": "tea"}}
    step = template_tool_step(history, registry, fmt, model)
    assert step.parse.kind == "final" and history[-1] == {
        "role": "assistant",
        "content": "Tea costs 3.5 EUR.",
    }
    expected = tok.apply_chat_template(
        history[:3], tools=registry.schemas(), add_generation_prompt=True, tokenize=False
    )
    assert prompts[1] == expected and '"eur": 3.5' in prompts[1]
