"""The relevance gate's trained scorer: its examples and family split, the listwise loss being
exactly what the gate reads, training that is deterministic and learns, the scorer read beside a
policy's adapter in any state, and `posttrain align` training, loading and calibrating it."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from posttrain.toolcall import Tool
from posttrain.toolcall.relevance import NULL_PREFIX, RelevanceExample, tool_prefix

_CITY = {"type": "object", "properties": {"city": {"type": "string", "description": "A city."}}}
TOOLS = [Tool("get_weather", "Current weather.", _CITY), Tool("get_time", "Local time.", _CITY)]


def _two_adapters(tiny_spec):
    """A tiny-random PEFT model with a policy adapter ("default") and a scorer beside it
    (`RELEVANCE_ADAPTER`), both really changing the logits, the policy's active."""
    from peft import LoraConfig, get_peft_model

    from posttrain.inference import RELEVANCE_ADAPTER
    from posttrain.models import load_for_inference

    base, tok = load_for_inference(tiny_spec)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    model.add_adapter(RELEVANCE_ADAPTER, LoraConfig(r=2, lora_alpha=4, target_modules=["k_proj", "v_proj"]))
    torch.manual_seed(0)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.5)
    model.set_adapter("default")
    return model.eval(), tok


def test_an_example_lists_the_offered_tools_then_the_null_tool():
    example = RelevanceExample.of("weather in Oslo", TOOLS, "get_time")
    assert example.prefixes == (tool_prefix(TOOLS[0]), tool_prefix(TOOLS[1]), NULL_PREFIX)
    assert example.gold == 1
    assert RelevanceExample.of("hello", TOOLS, None).gold == 2  # no call: the null tool
    with pytest.raises(ValueError, match="'send_mail' is not among the offered"):
        RelevanceExample.of("mail Bob", TOOLS, "send_mail")


def test_the_scorer_is_fitted_and_calibrated_on_disjoint_training_families():
    from posttrain.tasks.tool_use.pool import pool_functions
    from posttrain.tasks.tool_use.relevance_data import held_back_rows, relevance_examples, scorer_families

    fit, held = scorer_families()
    assert set(fit).isdisjoint(held) and len(held) == -(-len(fit + held) // 4)
    assert set(fit) | set(held) == {fn.family for fn in pool_functions("train")}
    by_name = {fn.name: fn.family for fn in pool_functions("train")}
    rows = held_back_rows(40, 3000)
    assert {r["family"] for r in rows} <= set(held)
    examples = relevance_examples(40, 42)
    assert len(examples) == 40 and any(e.gold == len(e.prefixes) - 1 for e in examples)
    # masking renames some offered tools, so check the unmasked ones: none is of a held-back family
    named = [p.split(":")[1].strip() for e in examples for p in e.prefixes[:-1]]
    assert not {by_name[n] for n in named if n in by_name} & set(held)


def test_a_family_filter_outside_the_split_is_an_error():
    from posttrain.tasks.tool_use.pool_rows import pool_rows

    with pytest.raises(ValueError, match="none of the families"):
        pool_rows(3, 0, "train", families=["no_such_family"])


def test_the_loss_reads_the_same_scores_the_gate_reads(tiny_spec):
    from posttrain.inference import channel_logprobs
    from posttrain.models import load_for_inference
    from posttrain.train.relevance import relevance_loss

    model, tok = load_for_inference(tiny_spec)
    example = RelevanceExample.of("weather in Oslo", TOOLS, "get_weather")
    scores = channel_logprobs(model, tok, example.prefixes, [example.request] * 3)
    logits = 10.0 * torch.tensor([scores[0] - scores[2], scores[1] - scores[2], 0.0])
    expected = torch.nn.functional.cross_entropy(logits.unsqueeze(0), torch.tensor([0]))
    with torch.no_grad():
        assert relevance_loss(model, tok, [example], 10.0).item() == pytest.approx(expected.item(), abs=1e-4)
        both = relevance_loss(model, tok, [example, RelevanceExample.of("hi", TOOLS, None)], 10.0)
        alone = relevance_loss(model, tok, [RelevanceExample.of("hi", TOOLS, None)], 10.0)
        assert both.item() == pytest.approx((expected.item() + alone.item()) / 2, abs=1e-4)


def test_training_is_deterministic_and_learns_its_examples(tiny_spec):
    from posttrain.models import ResidentModel
    from posttrain.train.relevance import RelevanceArgs, relevance_loss, train_relevance

    resident = ResidentModel(tiny_spec)
    examples = [RelevanceExample.of("weather in Oslo", TOOLS, "get_weather")] * 6 + [
        RelevanceExample.of("tell me a joke", TOOLS, None)
    ] * 6
    args = RelevanceArgs(learning_rate=5e-3, seed=3)
    weights = []
    for _ in range(2):
        model = resident.fresh_adapter(8, 16, 0.0, 1)
        with torch.no_grad():
            before = relevance_loss(model, resident.tokenizer, examples[::6], args.scale).item()
        stats = train_relevance(model, resident.tokenizer, examples, args)
        with torch.no_grad():
            after = relevance_loss(model, resident.tokenizer, examples[::6], args.scale).item()
        weights.append({n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n})
    assert after < before
    assert stats["examples"] == 12 and stats["no_tool_examples"] == 6 and stats["steps"] == 3
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    with pytest.raises(ValueError, match="at least one example"):
        train_relevance(model, resident.tokenizer, [], args)


def test_the_scorer_is_read_beside_a_policy_merged_disabled_or_plain(tiny_spec):
    from posttrain.inference import RELEVANCE_ADAPTER, adapter_weights, channel_logprobs, generator, merged

    model, tok = _two_adapters(tiny_spec)
    pairs = ([tool_prefix(TOOLS[0]), NULL_PREFIX], ["weather in Oslo"] * 2)

    def score():
        with torch.no_grad():
            return channel_logprobs(model, tok, *pairs)

    policy = score()
    model.set_adapter(RELEVANCE_ADAPTER)
    scorer = score()
    model.set_adapter("default")
    with model.disable_adapter():
        base = score()
    assert scorer != pytest.approx(policy, abs=1e-3) and scorer != pytest.approx(base, abs=1e-3)
    generate = generator(model, tok, 8, 2)
    assert generate.trained_channel(*pairs) == pytest.approx(scorer, abs=1e-5)
    assert score() == pytest.approx(policy, abs=1e-5) and model.active_adapter == "default"
    with merged(model):
        assert generate.trained_channel(*pairs) == pytest.approx(scorer, abs=1e-4)
        assert any(getattr(m, "merged", False) for m in model.modules()), "merged again afterwards"
        assert score() == pytest.approx(policy, abs=1e-4)
    with model.disable_adapter():  # the base model under evaluation stays the base model
        assert generate.trained_channel(*pairs) == pytest.approx(scorer, abs=1e-5)
        assert score() == pytest.approx(base, abs=1e-5)
    with pytest.raises(ValueError, match="no adapter named 'other'"), adapter_weights(model, "other"):
        pass


def test_a_trained_gate_needs_its_scorer_and_a_gate():
    from posttrain.errors import ConfigError
    from posttrain.tasks.align import align_task
    from posttrain.tasks.tool_use.pool_align import scoring_channel

    def generate(conversations):
        return ["" for _ in conversations]

    with pytest.raises(ValueError, match="relevance_adapter/"):
        scoring_channel(generate, "trained")
    with pytest.raises(ConfigError, match="set evaluation.relevance_gate too"):
        align_task("tool_use", constrained=True, gate_scorer="trained")


def test_align_trains_the_scorer_first_and_every_model_reads_it(tmp_path):
    from tests.conftest import run_cli

    settings = [
        "evaluation.constrained=true",
        "evaluation.relevance_gate=auto",
        "evaluation.relevance_gate_scorer=trained",
        "evaluation.relevance_scorer_rows=8",
        "evaluation.models=[base,dpo]",
        "evaluation.rerank_arguments=true",
        "evaluation.rerank_scorer=trained",
        "evaluation.model_splits={base: [unseen_families]}",
    ]
    args = ["align", "--task", "tool_use", "--preset", "align_test", "--name", "t", "--output-dir", "runs"]
    out = run_cli(*args, *[a for s in settings for a in ("--set", s)], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "runs" / "t"
    assert (run / "relevance_adapter" / "adapter_config.json").exists()
    assert json.loads((run / "relevance_adapter" / "posttrain.json").read_text())["kind"] == (
        "relevance-scorer"
    )
    summary = json.loads((run / "summary.json").read_text())
    assert (
        summary["relevance_scorer"]["examples"] == 8 and summary["relevance_scorer"]["status"] == "completed"
    )
    calibrations = [
        json.loads((run / "eval" / f"{m}.json").read_text())["records"]["relevance_calibration"][0]
        for m in ("base", "dpo")
    ]
    assert calibrations[0] == calibrations[1]  # one calibration, shared by every model
    assert calibrations[0]["scorer"] == "trained" and calibrations[0]["families"] == (
        "held-back training and validation"
    )
    base = json.loads((run / "eval" / "base.json").read_text())
    assert set(base["figures"]) == {"unseen_families"}  # evaluation.model_splits
    assert set(json.loads((run / "eval" / "dpo.json").read_text())["figures"]) > {"unseen_families"}
    # the policy adapters hold no trace of the scorer
    for adapter in ("sft_adapter", "adapter"):
        assert not [k for k in load_file(run / adapter / "adapter_model.safetensors") if "relevance" in k]


def _saved(tiny_spec, tmp_path, name, seed):
    """A tiny-random LoRA whose weights really change the logits, saved as posttrain saves one."""
    from peft import get_peft_model

    from posttrain.models import load_model, lora_config
    from posttrain.rundir import save_adapter

    base, _ = load_model(tiny_spec)
    lora = get_peft_model(base, lora_config(4, 8, 0.0))
    torch.manual_seed(seed)
    with torch.no_grad():
        for n, p in lora.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    meta = {"kind": "align-sft", "task": "tool_use", "compact_prompt": True}
    return save_adapter(lora, tmp_path / name, tiny_spec, meta)


def test_a_model_loaded_with_a_scorer_beside_it_still_generates_as_itself(tiny_spec, tmp_path):
    from posttrain.inference import RELEVANCE_ADAPTER, gate_channel
    from posttrain.models import load_for_inference

    run = tmp_path / "run"
    policy, scorer = _saved(tiny_spec, run, "adapter", 1), _saved(tiny_spec, run, "relevance_adapter", 2)
    ids = torch.tensor([[5, 6, 7, 8]])
    pairs = ([tool_prefix(TOOLS[0])], ["weather in Oslo"])

    def logits(model):
        with torch.no_grad():
            return model(input_ids=ids).logits

    plain, tok = load_for_inference(tiny_spec)
    tuned, _ = load_for_inference(tiny_spec, policy)
    alone, _ = load_for_inference(tiny_spec, scorer)
    both, _ = load_for_inference(tiny_spec, policy, beside={RELEVANCE_ADAPTER: scorer})
    base, _ = load_for_inference(tiny_spec, None, beside={RELEVANCE_ADAPTER: scorer})
    assert torch.allclose(logits(both), logits(tuned), atol=1e-5)
    assert torch.allclose(logits(base), logits(plain), atol=1e-5)
    expected = gate_channel(alone, tok, "model")(*pairs)
    assert gate_channel(both, tok, "trained")(*pairs) == pytest.approx(expected, abs=1e-5)
    assert gate_channel(base, tok, "trained")(*pairs) == pytest.approx(expected, abs=1e-5)
    assert torch.allclose(logits(base), logits(plain), atol=1e-5)  # switched off again after


def test_a_trained_scorer_is_found_beside_the_adapter_or_named_or_refused(tmp_path):
    from posttrain.errors import ConfigError
    from posttrain.rundir import gate_scorer_adapter

    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    with pytest.raises(ConfigError, match="relevance_adapter: no adapter_config.json"):
        gate_scorer_adapter("trained", run / "adapter", None, "auto")
    with pytest.raises(ConfigError, match="no --adapter to look beside"):
        gate_scorer_adapter("trained", None, None, "auto")
    with pytest.raises(ConfigError, match="--relevance-adapter is read by"):
        gate_scorer_adapter("base", run / "adapter", run / "elsewhere", "auto")
    assert gate_scorer_adapter("trained", run / "adapter", None, None) is None  # no gate, no scorer
    (run / "relevance_adapter").mkdir()
    (run / "relevance_adapter" / "adapter_config.json").write_text("{}")
    assert gate_scorer_adapter("trained", run / "adapter", None, 0.1) == run / "relevance_adapter"


def test_eval_cli_reads_the_trained_scorer_beside_the_adapter(tiny_spec, tmp_path):
    from tests.conftest import run_cli
    from tests.pipelines.test_evaluate import _USER_ROWS, _USER_TOOLS

    run = tmp_path / "run"
    _saved(tiny_spec, run, "adapter", 1)
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _USER_ROWS))
    (tmp_path / "tools.json").write_text(json.dumps(_USER_TOOLS))
    args = ["eval", "--task", "tool_use", "--data", "items.jsonl", "--tools", "tools.json"]
    args += ["--adapter", "run/adapter", "--max-new-tokens", "16", "--constrained", "--relevance-gate", "0.1"]
    args += ["--relevance-gate-scorer", "trained", "-o", "out.json"]
    refused = run_cli(*args, cwd=tmp_path)
    assert (
        refused.returncode == 2
        and "relevance_adapter" in refused.stderr
        and not (tmp_path / "out.json").exists()
    )
    _saved(tiny_spec, run, "relevance_adapter", 2)
    out = run_cli(*args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["decoding"] == "constrained, relevance gate 0.1 (trained-scored)"
    assert [len(r["relevance"]) for r in result["records"]] == [2, 1, 2]  # one score per offered tool
