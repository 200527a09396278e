"""The answer forced at the step cap: the loop's logic on scripted replies (forced only where an
episode ran out of turns, parsed like any other answer, marked and counted; off = the free loop),
and the prefilled assistant turn on the real tokenizer and tiny-random model."""

from __future__ import annotations

import random

import pytest
import torch

from posttrain.inference import generate_batch, render_prompts
from posttrain.models import load_for_inference
from posttrain.tasks import meetings as mt
from posttrain.tasks.align import align_task
from posttrain.tasks.episodes import run_react_each
from posttrain.toolcall import Episode, format_call, format_final

CALL = format_call("Who is A?", "get_profile", {"person": "A"})
ANSWER = format_final("Done.", '{"reason": "fatigue", "probability": 0.3}')
FORCED_REPLY = 'Final Answer: {"success": true, "reason": "high energy", "probability": 0.8}'
PREFILL = {"role": "assistant", "content": mt.FORCED_PREFIX}
SYSTEM = mt.meetings_system_prompt(compact=True)


class Script:
    """A generate that keeps calling get_profile for `caller` scenarios and answers at its second
    turn for the others; a prefilled (forced) turn gets FORCED_REPLY. Records every batch."""

    def __init__(self, answerers: set[str]) -> None:
        self.answerers = answerers
        self.batches: list[list[list[dict[str, str]]]] = []

    def __call__(self, conversations: list[list[dict[str, str]]]) -> list[str]:
        self.batches.append(conversations)
        out = []
        for conv in conversations:
            user = next(m["content"] for m in conv if m["role"] == "user")
            if conv[-1]["role"] == "assistant":
                out.append(FORCED_REPLY)
            elif user in self.answerers and sum(m["role"] == "assistant" for m in conv) >= 1:
                out.append(ANSWER)
            else:
                out.append(CALL)
        return out


def _days(n: int) -> list[mt.Scenario]:
    """`n` scenarios on different days: the agent prompt names only the day, and the script
    tells conversations apart by it."""
    by_day = {s.day: s for s in reversed(mt.generate_scenarios(30, 21))}
    return [by_day[d] for d in sorted(by_day)][:n]


def _run(force: bool, max_steps: int = 3):
    caller, answerer = _days(2)
    script = Script({mt.agent_prompt(answerer)})
    system = mt.meetings_system_prompt(compact=True)
    trajs, eps = mt.run_meetings_agent(script, [caller, answerer], system, max_steps, "t", force)
    return script, trajs, eps


def test_the_cap_forces_an_answer_only_where_the_episode_ran_out_of_turns():
    script, (caller, answerer), (ep_c, ep_a) = _run(force=True)
    # The caller made max_steps - 1 calls, then was asked for the answer in one extra batch.
    assert len(caller.tool_calls) == 2 and ep_c.status == "final"
    assert caller.probability == 0.8 and caller.reason == "high energy"
    assert caller.meta["forced"] is True
    assert caller.final_text == f"{mt.FORCED_PREFIX}\n{FORCED_REPLY}"
    forced_batch = script.batches[-1]
    assert len(forced_batch) == 1  # only the episode still running
    assert forced_batch[0][-1] == {"role": "assistant", "content": mt.FORCED_PREFIX}
    assert forced_batch[0][-2]["content"].startswith("Observation: {")
    assert forced_batch[0][-2]["content"].endswith(mt.FORCE_INSTRUCTION)
    # The answerer stopped on its own at turn 2 and is not marked forced.
    assert len(answerer.tool_calls) == 1 and answerer.probability == 0.3
    assert answerer.meta["forced"] is False and ep_a.status == "final"
    # The forced turn is a normal step of the episode, parsed as a final answer.
    assert ep_c.steps[-1].parse.kind == "final" and ep_c.steps[-1].raw.startswith(mt.FORCED_PREFIX)


def test_one_step_forces_the_answer_from_the_prompt_alone():
    script, (caller, _), _ = _run(force=True, max_steps=1)
    assert caller.tool_calls == [] and caller.probability == 0.8 and caller.meta["forced"]
    assert len(script.batches) == 1 and script.batches[0][0][-2]["role"] == "user"


def test_force_off_is_the_free_loop_as_before():
    script, (caller, answerer), (ep_c, ep_a) = _run(force=False)
    assert len(caller.tool_calls) == 3 and ep_c.status == "max_steps" and caller.probability is None
    assert "forced" not in caller.meta and "forced" not in answerer.meta
    assert all(conv[-1]["role"] == "user" for batch in script.batches for conv in batch)
    # Exactly the episodes the shared loop gives on the same replies.
    scenarios = _days(2)
    system = mt.meetings_system_prompt(compact=True)
    plain = run_react_each(
        [mt.meetings_agent_prompt(s, system) for s in scenarios],
        [mt.meetings_registry(s) for s in scenarios],
        Script({mt.agent_prompt(scenarios[1])}),
        3,
    )
    assert [e.messages for e in plain] == [ep_c.messages, ep_a.messages]
    assert [e.status for e in plain] == [ep_c.status, ep_a.status]


def test_align_task_reports_the_forced_share_and_off_drops_it():
    scenarios = _days(3)
    script = Script({mt.agent_prompt(s) for s in scenarios[:1]})
    figs, records = align_task("meetings").evaluate(script, {"heldout": scenarios}, 3, compact=True)
    agent = figs["heldout"]
    assert agent["agent_forced"].value == pytest.approx(2 / 3) and agent["agent_forced"].n == 3
    assert agent["agent_parse_rate"].value == 1.0
    assert [r["forced"] for r in records["heldout"]] == [False, True, True]
    off = align_task("meetings", force_answer=False)
    figs, records = off.evaluate(Script(set()), {"heldout": scenarios}, 3, compact=True)
    assert "agent_forced" not in figs["heldout"] and "forced" not in records["heldout"][0]
    assert figs["heldout"]["agent_parse_rate"].value == 0.0


def test_rollout_traces_mark_forced_answers_and_stats_count_them():
    task = mt.MeetingsAlign()
    prompts = [
        {"id": s.scenario_id, "prompt": mt.meetings_agent_prompt(s, SYSTEM), "scenario": s} for s in _days(3)
    ]
    script = Script({mt.agent_prompt(prompts[0]["scenario"])})
    traces = task.rollouts(prompts, script, 3, "sft-greedy")
    assert [t["forced"] for t in traces] == [False, True, True]
    assert all(t["status"] == "final" and t["reward"]["answered"] == 1.0 for t in traces)
    assert traces[1]["messages"][-1]["content"].startswith(mt.FORCED_PREFIX)
    stats = task.trajectory_stats(traces)
    assert stats["forced"]["value"] == pytest.approx(2 / 3) and stats["final_answers"] == 3
    free = mt.MeetingsAlign(force_answer=False).rollouts(prompts, Script(set()), 3, "sft-greedy")
    assert all("forced" not in t and t["status"] == "max_steps" for t in free)
    assert mt.MeetingsAlign(force_answer=False).trajectory_stats(free)["forced"] is None


# ------------------------------------------------------------------ the prefill on a real model


def test_a_conversation_ending_in_an_assistant_turn_is_continued(tiny_tokenizer):
    conv = [{"role": "system", "content": "s"}, {"role": "user", "content": "Observation: {}"}]
    opened = render_prompts(tiny_tokenizer, [conv])[0]
    prefilled = render_prompts(tiny_tokenizer, [[*conv, PREFILL]])[0]
    assert prefilled == opened + mt.FORCED_PREFIX  # the assistant turn opened, then the prefix, left open


def test_generation_after_the_prefix_is_the_models_continuation(tiny_spec):
    model, tok = load_for_inference(tiny_spec)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # widen the weights so the argmax depends on the context (see test_inference)
        for p in model.parameters():
            if p.ndim == 2:
                p.normal_(0.0, 0.2, generator=gen)
    scenario = mt.generate_scenarios(1, 3)[0]
    conv = mt.meetings_agent_prompt(scenario, mt.meetings_system_prompt(compact=True))
    got = generate_batch(model, tok, [[*conv, PREFILL]], max_new_tokens=8)
    text = render_prompts(tok, [conv])[0] + mt.FORCED_PREFIX
    ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    assert got == [tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()]
    plain = generate_batch(model, tok, [conv], max_new_tokens=8)
    assert plain != got  # the prefix changed what the model was asked to continue


def test_a_forced_checklist_stays_on_the_thoughts_line_as_the_demos_write_it():
    s = mt.generate_scenarios(1, 22)[0]
    demo = mt.demo_trajectory(s, random.Random(0), calls=3)
    reply = demo.final_text.removeprefix(mt.FORCED_PREFIX).strip()  # what a trained model continues with
    assert reply.startswith("Checklist: ")
    episodes = [Episode(messages=[*mt.meetings_agent_prompt(s, SYSTEM)], status="max_steps")]
    forced = mt.force_final_answers(episodes, [mt.meetings_registry(s)], lambda convs: [reply] * len(convs))
    assert forced == {0} and episodes[0].status == "final"
    assert episodes[0].steps[-1].raw == demo.final_text
