"""`posttrain align` end to end through the CLI on tiny-random for both tasks, plus the pieces
with exact answers: the seed checks and the assistant-only loss mask of multi-turn
conversations (pairing is tested in tests/tasks/test_episodes.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from posttrain.config import AlignConfig, load_config
from posttrain.errors import ConfigError
from posttrain.pipelines.align import _check_model_splits, _check_seeds, tokenize_conversation
from posttrain.pipelines.align_eval import GATED_OUT, _swap_in_sft
from posttrain.rundir import RunDir
from posttrain.store import Store
from posttrain.tasks import meetings as mt
from posttrain.tasks.align import align_task
from posttrain.tasks.tool_use.pool_pairs import CALL_DEFECTS, NO_CALL_DEFECTS
from tests.conftest import run_cli

PRESET = yaml.safe_load((Path(__file__).parents[2] / "posttrain/presets/align_test.yaml").read_text())


# ------------------------------------------------------------------ pieces


def test_evaluation_seed_must_not_repeat_a_training_seed():
    cfg = load_config(AlignConfig, preset="align_test", overrides=["evaluation.seed=42"])
    with pytest.raises(ConfigError, match="evaluation.seed=42 equals data.seed"):
        _check_seeds(cfg, align_task(cfg.task))
    # meetings draws its synthetic pairs from data.seed + 1; tool_use does not.
    cfg = load_config(AlignConfig, preset="align_test", overrides=["task=meetings", "evaluation.seed=43"])
    with pytest.raises(ConfigError, match=r"equals data.seed \+ 1 \(synthetic pairs\)"):
        _check_seeds(cfg, align_task("meetings"))
    _check_seeds(cfg, align_task("tool_use"))
    cfg = load_config(AlignConfig, preset="align_test", overrides=["pairs.synthetic=0", "pairs.on_policy=0"])
    with pytest.raises(ConfigError, match="DPO would have no data"):
        _check_seeds(cfg, align_task(cfg.task))


def test_a_model_split_the_task_lacks_is_refused_by_name():
    bad = load_config(
        AlignConfig, preset="align_test", overrides=["evaluation.model_splits={dpo: [unseen, indist]}"]
    )
    sets = {"unseen_families": [], "indist": []}
    with pytest.raises(
        ConfigError, match="model_splits.dpo: 'unseen' is not a tool_use evaluation split; pick"
    ):
        _check_model_splits(bad, sets)
    good = load_config(
        AlignConfig, preset="align_test", overrides=["evaluation.model_splits={base: [indist]}"]
    )
    _check_model_splits(good, sets)
    assert good.evaluation.model_splits == {"base": ["indist"]}


def test_conversation_mask_covers_exactly_the_assistant_turns(tiny_tokenizer):
    tok = tiny_tokenizer
    messages = [
        {"role": "system", "content": "tools here"},
        {"role": "user", "content": "What is 2+3?"},
        {"role": "assistant", "content": "Thought: add\nAction: call"},
        {"role": "user", "content": "Observation: 5"},
        {"role": "assistant", "content": "Final Answer: 5"},
    ]
    row = tokenize_conversation(tok, messages, max_length=10_000)
    whole = tok(tok.apply_chat_template(messages, tokenize=False), add_special_tokens=False)["input_ids"]
    assert row["input_ids"] == whole
    learned = tok.decode([t for t, m in zip(row["input_ids"], row["completion_mask"], strict=True) if m])
    assert learned == "Thought: add\nAction: call<|im_end|>\nFinal Answer: 5<|im_end|>\n"
    cut = tokenize_conversation(tok, messages, max_length=7)
    assert len(cut["input_ids"]) == len(cut["completion_mask"]) == 7


def test_a_gated_out_dpo_leaves_the_sft_adapter_as_the_final_one(tmp_path):
    run = RunDir(tmp_path, "r")
    run.path.mkdir(parents=True)
    for name, text in (("sft_adapter", "sft"), ("adapter", "dpo")):
        (run.path / name).mkdir()
        (run.path / name / "adapter_model.safetensors").write_text(text)
    _swap_in_sft(run)
    assert (run.path / "adapter" / "adapter_model.safetensors").read_text() == "sft"
    assert (run.path / GATED_OUT / "adapter_model.safetensors").read_text() == "dpo"
    _swap_in_sft(run)  # a rerun after a kill finishes the same layout
    assert (run.path / GATED_OUT / "adapter_model.safetensors").read_text() == "dpo"
    assert sorted(p.name for p in run.path.iterdir()) == ["adapter", GATED_OUT, "sft_adapter"]


def test_when_the_gate_kept_sft_dpo_figures_are_sfts_without_a_second_evaluation(tmp_path):
    """adapter/ is then a copy of sft_adapter/: no model is loaded (resident None would fail)."""
    from posttrain.pipelines.align_eval import evaluate_models
    from posttrain.tasks.tool_use.align import ToolUseAlign

    run = RunDir(tmp_path, "r")
    (run.path / "eval").mkdir(parents=True)
    for name, value in (("base", 0.1), ("sft", 0.4)):
        figs = {"unseen_families": {"ast_accuracy": {"value": value, "n": 3}}}
        run.write_json(f"eval/{name}.json", {"figures": figs, "records": {"unseen_families": [name]}})
    run.write_json("gate.json", {"applied": True, "kept": "sft"})
    results = evaluate_models(None, ToolUseAlign(), {}, [], AlignConfig(), run)  # type: ignore[arg-type]
    assert results["splits"]["unseen_families"]["dpo"] == results["splits"]["unseen_families"]["sft"]
    dpo = json.loads((run.path / "eval" / "dpo.json").read_text())
    assert dpo["same_as"] == "sft" and dpo["records"] == {"unseen_families": ["sft"]}
    run.write_json("gate.json", {"applied": True, "kept": "dpo"})
    (run.path / "eval" / "dpo.json").unlink()
    with pytest.raises(AttributeError):  # kept DPO: evaluated for real, which needs the model
        evaluate_models(None, ToolUseAlign(), {}, [], AlignConfig(), run)  # type: ignore[arg-type]


# ------------------------------------------------------------------ end to end


def _align(task: str, tmp_path: Path) -> tuple[Path, dict]:
    out = run_cli(
        "align",
        "--task",
        task,
        "--preset",
        "align_test",
        "--name",
        task,
        "--output-dir",
        "runs",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "runs" / task
    assert "| dpo |" in out.stdout  # the CLI prints the table
    return run, json.loads((run / "summary.json").read_text())


def _common_artefacts(run: Path, task: str) -> tuple[list, list]:
    for name in ("config.yaml", "report.md", "eval.json", "plots/sft_loss.png", "plots/compliance.png"):
        assert (run / name).exists(), name
    traces = json.loads((run / "trajectories" / "agent_traces.json").read_text())
    assert len(traces) >= PRESET["rollouts"]["prompts"] * PRESET["rollouts"]["k"]
    pairs = json.loads((run / "trajectories" / "preference_pairs.json").read_text())
    assert sum(p["source"] == "synthetic" for p in pairs) == PRESET["pairs"]["synthetic"]
    for p in pairs:
        assert p["prompt"][-1]["role"] == "user" and p["chosen"][0]["role"] == "assistant"
        assert p["chosen"] != p["rejected"]

    # Both adapters saved; DPO moved away from the SFT weights it started from (beside adapter/ when
    # the DPO gate kept SFT).
    sft = load_file(run / "sft_adapter" / "adapter_model.safetensors")
    trained = run / (GATED_OUT if (run / GATED_OUT).exists() else "adapter")
    dpo = load_file(trained / "adapter_model.safetensors")
    assert sft.keys() == dpo.keys()
    assert any(not (sft[k] == dpo[k]).all() for k in sft)
    assert json.loads((run / "adapter" / "posttrain.json").read_text())["task"] == task
    sft_losses = [
        r["loss"]
        for r in map(json.loads, (run / "metrics_sft.jsonl").read_text().splitlines())
        if "loss" in r
    ]
    assert len(sft_losses) == PRESET["sft"]["max_steps"]

    # Every trajectory is in the store, with its reward.
    store = Store(f"sqlite:///{run.parent / 'posttrain.db'}")
    record = store.find_run(run.name)
    assert record is not None and record.status == "completed"
    stored = store.list_trajectories(record.id)
    assert len(stored) == len(traces)
    assert [s.reward for s in stored] == pytest.approx([t["reward"]["total"] for t in traces])

    # The table: base, SFT and DPO on every split, each figure with its n.
    results = json.loads((run / "eval.json").read_text())
    report = (run / "report.md").read_text()
    for split, by_model in results["splits"].items():
        assert list(by_model) == ["base", "sft", "dpo"], split
        for figs in by_model.values():
            assert all(
                f["n"] > 0 for k, f in figs.items() if not k.startswith(("hallucinated", "irrelevance"))
            )
    for name in ("| base |", "| sft |", "| dpo |", "n="):
        assert name in report
    return traces, pairs


def test_align_tool_use_end_to_end(tiny_spec, tmp_path):
    run, summary = _align("tool_use", tmp_path)
    traces, pairs = _common_artefacts(run, "tool_use")
    results = json.loads((run / "eval.json").read_text())
    assert set(results["splits"]) == {"unseen_families", "seen_families", "indist", "heldout"}
    episodes = PRESET["evaluation"]["episodes"]
    assert results["splits"]["indist"]["base"]["task_accuracy"]["n"] == episodes
    items = PRESET["evaluation"]["items"]
    assert results["splits"]["unseen_families"]["dpo"]["format_validity"]["n"] == items
    assert summary["accuracy"] == results["splits"]["unseen_families"]["dpo"]["ast_accuracy"]["value"]
    # The gate scored both adapters on the validation families; random weights tie, and a tie keeps SFT.
    gate = json.loads((run / "gate.json").read_text())
    assert gate["applied"] and gate["kept"] == "sft" and gate["dpo_minus_sft"] == 0.0
    assert json.loads((run / "eval" / "dpo.json").read_text())["same_as"] == "sft"
    metrics = ("ast_accuracy", "must_call_rate")
    assert set(gate["scores"]["sft"]) == {f"validation_families/{m}" for m in metrics}
    assert summary["gate"] == gate
    pool_prompts = [t for t in traces if t["prompt_id"].startswith("pool-")]
    assert pool_prompts and all(t["prompt"][0]["content"].count("(") > 1 for t in pool_prompts)
    assert all(t["policy"] in ("sft-greedy", "sft-sample(t=0.8)") for t in traces)
    assert {p["defect"] for p in pairs if p["source"] == "synthetic"} <= {
        *CALL_DEFECTS,
        *NO_CALL_DEFECTS,
        "malformed_json",
        "missing_thought",
        "hallucinated_tool",
        "wrong_tool",
        "schema_violation",
        "refusal",
        "no_tool_when_needed",
        "tool_when_not_needed",
    }
    assert summary["sft"]["steps"] == PRESET["sft"]["max_steps"]
    assert summary["dpo"]["steps"] == PRESET["dpo"]["train"]["max_steps"]


def test_align_meetings_end_to_end(tiny_spec, tmp_path):
    run, summary = _align("meetings", tmp_path)
    traces, pairs = _common_artefacts(run, "meetings")
    results = json.loads((run / "eval.json").read_text())
    n = PRESET["evaluation"]["scenarios"]
    assert results["splits"]["heldout"]["sft"]["direct_accuracy"]["n"] == n
    assert set(results["references"]) == {"majority_baseline", "majority_baseline_brier", "oracle_accuracy"}
    # Synthetic pairs are two scripted trajectories of one scenario, under that scenario's prompt.
    scenarios = {s.scenario_id: s for s in mt.generate_scenarios(PRESET["pairs"]["synthetic"], 42 + 1)}
    for p in pairs:
        if p["source"] == "synthetic":
            assert p["prompt"][1]["content"] == mt.agent_prompt(scenarios[p["id"]])
            assert p["chosen_reward"] - p["rejected_reward"] >= 0.2 - 1e-9
    assert all("reward" in t and "ground_truth_prob" in t for t in traces)
    assert summary["trajectories"]["count"] == len(traces)
