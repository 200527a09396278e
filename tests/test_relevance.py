"""The noisy-channel relevance gate: its scores on a real (tiny) model, the gate's choice, the
answer-only grammar it falls back to, and the gated evaluation end to end."""

from __future__ import annotations

import json
import math

import pytest
import torch

from posttrain.toolcall import Tool
from posttrain.toolcall.relevance import (
    NULL_PREFIX,
    RelevanceGate,
    last_request,
    relevance_scores,
    tool_prefix,
)

_CITY = {
    "type": "object",
    "properties": {"city": {"type": "string", "description": "The city, e.g. Oslo"}},
    "required": ["city"],
}
TOOLS = [Tool("get_weather", "Current weather.", _CITY), Tool("get_time", "Local time.", _CITY)]
# A call serve's rerank may rewrite: two units of one enum to swap, and the request's other numbers.
CONVERT = Tool(
    "convert",
    "Convert an amount between units.",
    {
        "type": "object",
        "properties": {
            "amount": {"type": "number"},
            "from_unit": {"type": "string", "enum": ["km", "mi", "m"]},
            "to_unit": {"type": "string", "enum": ["km", "mi", "m"]},
        },
        "required": ["amount", "from_unit", "to_unit"],
    },
)
CONVERT_ASK = "How many km is 26 mi, or 42 m?"
CONVERT_CALL = {"amount": 42, "from_unit": "km", "to_unit": "mi"}


@pytest.fixture(scope="module")
def tiny(tiny_spec):
    from posttrain.models import load_for_inference

    return load_for_inference(tiny_spec)


def _direct(model, tok, prefix: str, target: str) -> float:
    """log P(target | prefix) per target token, from one unpadded forward pass."""
    p = tok(prefix, add_special_tokens=False)["input_ids"]
    t = tok(target, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([p + t])).logits[0].float().log_softmax(-1)
    return sum(logits[len(p) + i - 1, tok_id].item() for i, tok_id in enumerate(t)) / len(t)


def test_channel_logprobs_match_one_unpadded_pass_whatever_the_batch(tiny):
    from posttrain.inference import channel_logprobs

    model, tok = tiny
    pairs = [("Tool: x\nA request for this tool: ", "weather in Oslo"), ("A much longer prefix " * 6, "hi")]
    batched = channel_logprobs(model, tok, [p for p, _ in pairs], [t for _, t in pairs], batch_size=2)
    alone = [channel_logprobs(model, tok, [p], [t])[0] for p, t in pairs]
    direct = [_direct(model, tok, p, t) for p, t in pairs]
    assert batched == pytest.approx(alone, abs=1e-4) and alone == pytest.approx(direct, abs=1e-4)


def test_rows_sharing_a_long_prefix_score_as_one_unpadded_pass_each(tiny):
    from posttrain.inference import MIN_SHARED_PREFIX, channel_logprobs

    model, tok = tiny
    prompt = "System: you call tools. Tool: convert(amount, from_unit, to_unit). " * 4
    assert len(tok(prompt, add_special_tokens=False)["input_ids"]) > MIN_SHARED_PREFIX
    targets = ['{"amount":3,"from_unit":"km"}', '{"amount":3}', "", '{"to_unit":"mile","amount":3,"x":1}']
    prefixes = [prompt] * len(targets) + ["Tool: x\nA request for this tool: "]
    targets = [*targets, "weather in Oslo"]
    for batch_size in (2, 16):  # a group split over batches, and one batch
        shared = channel_logprobs(model, tok, prefixes, targets, batch_size=batch_size)
        plain = channel_logprobs(model, tok, prefixes, targets, batch_size=batch_size, share_prefixes=False)
        direct = [_direct(model, tok, p, t) if t else 0.0 for p, t in zip(prefixes, targets, strict=True)]
        assert shared == pytest.approx(direct, abs=1e-4) and plain == pytest.approx(direct, abs=1e-4)
        assert shared[2] == 0.0


def test_a_tools_score_is_its_gain_over_the_null_tool(tiny):
    from posttrain.inference import channel_logprobs

    model, tok = tiny

    def channel(prefixes, targets):
        return channel_logprobs(model, tok, prefixes, targets, batch_size=3)

    requests = ["What's the weather in Oslo?", "Time in Lima?"]
    scores = relevance_scores(channel, requests, [TOOLS, TOOLS[1:]])
    assert [len(s) for s in scores] == [2, 1]
    for request, offered, row in zip(requests, [TOOLS, TOOLS[1:]], scores, strict=True):
        null = _direct(model, tok, NULL_PREFIX, request)
        assert row == pytest.approx(
            [_direct(model, tok, tool_prefix(t), request) - null for t in offered], abs=1e-4
        )
    # every description the author wrote reaches the scored text
    assert "The city, e.g. Oslo" in tool_prefix(TOOLS[0]) and "Current weather." in tool_prefix(TOOLS[0])


def test_the_gate_keeps_the_best_tool_above_its_threshold_and_none_below():
    gate = RelevanceGate(0.2)
    assert gate.choose([0.1, 0.5, 0.3]) == 1
    assert gate.choose([0.1, 0.19]) is None and gate.choose([]) is None
    assert RelevanceGate(-math.inf).choose([-9.0, -3.0]) == 1
    assert last_request([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]) == "a"
    after_a_call = [
        {"role": "user", "content": "weather in Oslo?"},
        {"role": "assistant", "content": "Thought: x\nAction: ..."},
        {"role": "user", "content": "Observation: 12 C"},
    ]
    assert last_request(after_a_call) == "weather in Oslo?"  # a tool's result is not the request


def test_with_no_tools_the_turn_grammar_admits_only_a_final_answer(tiny):
    from posttrain.constrained import SchemaError, grammar_tokenizer, llguidance_module
    from posttrain.toolcall import tool_turn_grammar

    _, tok = tiny
    lltok = grammar_tokenizer(tok)
    grammar = tool_turn_grammar([])

    def admits(text: str) -> bool:
        m = llguidance_module().LLMatcher(lltok, grammar, log_level=0)
        return (
            all(m.consume_token(i) for i in tok(text, add_special_tokens=False)["input_ids"])
            and m.is_accepting()
        )

    assert admits("Thought: none fits.\nFinal Answer: I cannot do that here.")
    assert not admits('Thought: x.\nAction: ```json\n{"tool":"get_time","args":{"city":"Oslo"}}\n```')
    with pytest.raises(SchemaError, match="no tools are offered"):
        tool_turn_grammar([], answer=False)


def test_gated_pool_evaluation_calls_the_best_tool_or_answers(tiny):
    from posttrain.inference import generator
    from posttrain.tasks.tool_use.pool_align import evaluate_pool
    from posttrain.tasks.tool_use.pool_pairs import pool_item
    from posttrain.tasks.tool_use.pool_rows import pool_rows
    from posttrain.tasks.tool_use.user_eval import gated_tools

    model, tok = tiny
    rows = pool_rows(6, 5, "validation", irrelevance=0.5)
    generate = generator(model, tok, 40, 4)
    figs, records = evaluate_pool(generate, rows, constrained=True, gate=RelevanceGate(math.inf))
    assert all("Final Answer:" in r["reply"] and "Action:" not in r["reply"] for r in records)
    assert figs["irrelevance_accuracy"].value in (1.0, None) and figs["must_call_rate"].value in (0.0, None)
    items = [pool_item(r, i) for i, r in enumerate(rows)]
    offered, scores = gated_tools(items, generate.channel, RelevanceGate(-math.inf))
    assert all(s == pytest.approx(r["relevance"], abs=1e-3) for s, r in zip(scores, records, strict=True))
    for item, tools, row_scores in zip(items, offered, scores, strict=True):
        assert tools == [item.tools[max(range(len(row_scores)), key=row_scores.__getitem__)]]
    with pytest.raises(ValueError, match="needs constrained decoding"):
        evaluate_pool(generate, rows, gate=RelevanceGate(0.2))


def test_a_gate_without_constrained_decoding_is_a_config_error():
    from posttrain.errors import ConfigError
    from posttrain.tasks.align import align_task

    with pytest.raises(ConfigError, match="set evaluation.constrained too"):
        align_task("tool_use", relevance_gate=0.2)
    assert align_task("tool_use", constrained=True, relevance_gate=0.2).gate == RelevanceGate(0.2)


def test_calibrate_keeps_must_call_first_and_declines_the_most_it_can():
    from posttrain.toolcall.relevance import calibrate

    calls = [0.1 * i for i in range(1, 11)]  # 0.1 .. 1.0
    found = calibrate(calls, [0.05, 0.15, 0.25, 0.9], min_pass=0.9)
    assert found["threshold"] == pytest.approx(0.2) and found["call_rows_passing"] == 0.9
    assert found["no_call_rows_declined"] == 0.5  # 0.05 and 0.15 fall under it
    assert calibrate(calls, [], min_pass=1.0)["threshold"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="needs requests some tool fits"):
        calibrate([], [0.1])


def test_eval_cli_auto_gate_is_calibrated_on_validation_families(tiny_spec, tmp_path):
    import json

    from tests.conftest import run_cli

    rows = [
        {
            "prompt": "Weather in Paris?",
            "tools": [t.schema() for t in TOOLS],
            "gold": [{"get_weather": {"city": ["Paris"]}}],
        },
        {"prompt": "Tell me a joke.", "tools": [t.schema() for t in TOOLS], "gold": "no_call"},
    ]
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["eval", "--task", "tool_use", "--data", "items.jsonl", "--constrained", "--model", "tiny-random"]
    bad = run_cli(*args, "--relevance-gate", "often", cwd=tmp_path)
    assert bad.returncode == 2 and "a number or auto" in bad.stdout + bad.stderr
    out = run_cli(
        *args, "--relevance-gate", "auto", "--max-new-tokens", "24", "-o", "eval.json", cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "eval.json").read_text())
    calibration = result["relevance_calibration"]
    assert (
        calibration["call_rows_passing"] >= 0.9 and calibration["rows"] == 200 and calibration["seed"] == 3000
    )
    assert result["decoding"] == "constrained, relevance gate auto"


def _lora(tiny_spec):
    """A tiny-random PEFT model whose adapter really changes the logits (B is zero at init)."""
    from peft import LoraConfig, get_peft_model

    from posttrain.models import load_for_inference

    base, tok = load_for_inference(tiny_spec)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(0)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.5)
    return model.eval(), tok


def test_base_weights_scores_the_base_merged_or_not_and_restores_the_adapter(tiny_spec):
    from posttrain.inference import base_weights, merged

    model, tok = _lora(tiny_spec)
    ids = torch.tensor([tok("a request for the weather in Oslo")["input_ids"]])

    def logits():
        with torch.no_grad():
            return model(input_ids=ids).logits

    tuned = logits()
    with model.disable_adapter():
        base = logits()
    assert not torch.allclose(tuned, base, atol=1e-3), "the adapter must matter for this test"
    with base_weights(model):
        assert torch.allclose(logits(), base, atol=1e-5)
    assert torch.allclose(logits(), tuned, atol=1e-5)
    with merged(model):
        with base_weights(model):
            assert torch.allclose(logits(), base, atol=1e-4)
        assert any(getattr(m, "merged", False) for m in model.modules()), "merged again afterwards"
        assert torch.allclose(logits(), tuned, atol=1e-4)
    with model.disable_adapter():  # the base model under evaluation stays the base model
        with base_weights(model):
            assert torch.allclose(logits(), base, atol=1e-5)
        assert torch.allclose(logits(), base, atol=1e-5)


def test_a_base_scored_gate_reads_the_base_channel_and_calibrates_once(tiny_spec, monkeypatch):
    import posttrain.tasks.tool_use.align as tool_align
    from posttrain.inference import generator
    from posttrain.tasks.align import align_task
    from posttrain.tasks.tool_use.pool_align import scoring_channel

    model, tok = _lora(tiny_spec)
    generate = generator(model, tok, 24, 4)
    pairs = ([tool_prefix(TOOLS[0])], ["weather in Oslo"])
    with model.disable_adapter():
        base = generate.channel(*pairs)
    assert scoring_channel(generate, "base")(*pairs) == pytest.approx(base, abs=1e-5)
    assert scoring_channel(generate, "model")(*pairs) != pytest.approx(base, abs=1e-3)

    calls = []

    def counted(channel, **kwargs):
        calls.append(kwargs)
        return RelevanceGate(0.1, kwargs["scorer"]), {"threshold": 0.1}

    monkeypatch.setattr(tool_align, "calibrated_gate", counted)
    task = align_task("tool_use", constrained=True, relevance_gate="auto", gate_scorer="base", gate_keep=0.95)
    # one calibration serves every evaluated model: the base model is the same for all of them
    assert task._calibrated(generate)[0] == task._calibrated(generate)[0] == RelevanceGate(0.1, "base")
    assert calls == [{"min_pass": 0.95, "scorer": "base"}]
    fixed = align_task("tool_use", constrained=True, relevance_gate=0.2, gate_scorer="base")
    assert fixed.gate == RelevanceGate(0.2, "base")


def test_a_memoized_channel_scores_each_pair_once_and_answers_in_order():
    from posttrain.toolcall.relevance import memoized

    asked: list[list[tuple[str, str]]] = []

    def channel(prefixes, targets):
        asked.append(list(zip(prefixes, targets, strict=True)))
        return [float(len(p) + len(t)) for p, t in zip(prefixes, targets, strict=True)]

    memo: dict[tuple[str, str], float] = {}
    score = memoized(channel, memo)
    assert score(["a", "bb", "a"], ["x", "y", "x"]) == [2.0, 3.0, 2.0]
    assert asked == [[("a", "x"), ("bb", "y")]]  # a repeated pair is scored once
    assert score(["bb", "ccc"], ["y", "z"]) == [3.0, 4.0]
    assert asked[1] == [("ccc", "z")]  # only the new pair
    assert score([], []) == [] and len(asked) == 2


def test_every_model_of_a_run_shares_one_base_channels_scores(tiny_spec):
    """The second model's gate, or argument rerank, reads the first one's base scores: its own base
    channel is never asked (the base is the same). A model-scored gate keeps each model's own."""
    from posttrain.inference import generator
    from posttrain.tasks.align import align_task
    from posttrain.tasks.tool_use.pool_align import scoring_channel

    model, tok = _lora(tiny_spec)
    first = generator(model, tok, 24, 4)
    second = generator(model, tok, 24, 4)

    def refused(prefixes, targets):
        raise AssertionError("scored again")

    second.base_channel = refused
    task = align_task("tool_use", constrained=True, relevance_gate="auto", gate_scorer="base")
    pairs = ([tool_prefix(TOOLS[0]), NULL_PREFIX], ["weather in Oslo"] * 2)
    scores = scoring_channel(task._sharing_scores(first), "base")(*pairs)
    assert scoring_channel(task._sharing_scores(second), "base")(*pairs) == scores
    hello = [[{"role": "user", "content": "hi"}]]
    assert task._sharing_scores(first)(hello) == first(hello)  # still generates
    own = align_task("tool_use", constrained=True, relevance_gate="auto", gate_scorer="model")
    assert own._sharing_scores(second) is second
    # an argument rerank through the base channel shares it too, beside a model-scored gate
    reranked = align_task(
        "tool_use", constrained=True, relevance_gate="auto", rerank=True, rerank_scorer="base"
    )
    scores = scoring_channel(reranked._sharing_scores(first), "base")(*pairs)
    assert scoring_channel(reranked._sharing_scores(second), "base")(*pairs) == scores
    assert reranked._sharing_scores(second).channel is second.channel  # the model's own: not shared


def test_serve_reranks_arguments_through_the_scorer_it_is_given(tiny_spec, monkeypatch):
    """`posttrain serve --rerank-arguments --rerank-scorer base` keeps the edit the base model's
    channel prefers (the adapter off), as `posttrain align` and `eval` do with rerank_scorer base;
    a trained rerank scorer without the gate's trained scorer is refused before anything loads."""
    from posttrain.errors import ConfigError
    from posttrain.inference import channel_logprobs
    from posttrain.pipelines.serve import run_serve
    from posttrain.pipelines.serve_schema import ChatRequest
    from posttrain.pipelines.serve_service import ChatService
    from posttrain.toolcall import format_call, rerank
    from posttrain.toolcall.rerank import argument_edits, call_prefix

    # a tiny random model's channel differs by hundredths: without the grounding penalty it decides
    monkeypatch.setattr(rerank, "UNGROUNDED_PENALTY", 0.0)

    model, tok = _lora(tiny_spec)
    tool, ask, args = CONVERT, CONVERT_ASK, CONVERT_CALL
    edits = argument_edits(tool, args, ask)

    def best(channel_model) -> dict:
        with torch.no_grad():
            scores = channel_logprobs(
                channel_model, tok, [call_prefix(tool, e) for e in edits], [ask] * len(edits)
            )
        return edits[max(range(len(edits)), key=scores.__getitem__)]

    with model.disable_adapter():
        by_base = best(model)
    assert by_base != best(model), "the adapter must change the rerank's choice for this test"
    request = {"model": "m", "messages": [{"role": "user", "content": ask}], "tools": [tool.schema()]}
    service = ChatService(model, tok, "m", rerank_arguments=True, rerank_scorer="base")
    plan = service.plan(ChatRequest.model_validate(request))
    out = service.reranked(plan, format_call("Convert it.", "convert", args))
    assert json.loads(out.split("```json\n")[1].split("\n```")[0]) == {"tool": "convert", "args": by_base}
    with pytest.raises(ConfigError, match="rerank scorer trained"):
        run_serve(None, None, port=0, rerank_arguments=True, rerank_scorer="trained")


def test_serve_weighs_the_models_own_likelihood_of_the_arguments_in(tiny_spec):
    """`posttrain serve --rerank-policy-weight` reranks as eval and align do: at a weight that
    drowns the channel, the served call is the edit keeping the call's arguments that the policy
    likes best after the one-tool prompt (the request's system prompt left out); without
    --rerank-arguments the weight is refused before anything loads."""
    from functools import partial

    from posttrain.errors import ConfigError
    from posttrain.inference import channel_scorer, render_prompts
    from posttrain.pipelines.serve import run_serve
    from posttrain.pipelines.serve_schema import ChatRequest
    from posttrain.pipelines.serve_service import ChatService
    from posttrain.tasks.tool_use.user_eval import policy_scorer
    from posttrain.toolcall import format_call
    from posttrain.toolcall.rerank import argument_edits

    model, tok = _lora(tiny_spec)
    tool, ask, args = CONVERT, CONVERT_ASK, CONVERT_CALL
    same = [e for e in argument_edits(tool, args, ask) if e.keys() == args.keys()]
    user = [{"role": "user", "content": ask}]
    score = policy_scorer(partial(render_prompts, tok), channel_scorer(model, tok), [user])
    with torch.no_grad():
        (liked,) = score([(0, tool, "Convert it.", same)])
    favourite = same[max(range(len(same)), key=liked.__getitem__)]
    assert favourite != args, "the policy must prefer an edit for this test"
    request = {"model": "m", "messages": user, "tools": [tool.schema()]}
    service = ChatService(model, tok, "m", rerank_arguments=True, rerank_policy_weight=1e4)
    out = service.reranked(
        service.plan(ChatRequest.model_validate(request)), format_call("Convert it.", "convert", args)
    )
    assert json.loads(out.split("```json\n")[1].split("\n```")[0]) == {"tool": "convert", "args": favourite}
    with pytest.raises(ConfigError, match="add --rerank-arguments"):
        run_serve(None, None, port=0, rerank_policy_weight=0.5)
