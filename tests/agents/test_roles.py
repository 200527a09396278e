"""Roles (posttrain.agents.roles): the seed's reward-penalty formula and overrides, the judge's
rules, the rules tuner, SEAL expert and QA policies, the clamping reply models, the wire schemas
and the role registry."""

from __future__ import annotations

import json
import math
import random
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from posttrain.agents.history import DIVERGED_IMPROVEMENT, jsonable
from posttrain.agents.roles import (
    REPLY_MODELS,
    ROLES,
    JudgeReply,
    QAEvalReply,
    QAGenReply,
    SealExpertReply,
    TunerReply,
    build_messages,
    clearly_degrading,
    enforce_min_episodes,
    merge_hparams,
    reply_schema,
    reward_signal,
    rules_answer,
    rules_judge,
    rules_qa_evaluator,
    rules_qa_generator,
    rules_reward_penalty,
    rules_seal_expert,
    rules_tuner,
    seal_effect_summary,
    token_f1,
)
from posttrain.config.search_space import SearchSpace

SPACE = SearchSpace()
BASE = {
    "lr": 1e-4,
    "batch_size": 4,
    "epochs": 1,
    "warmup_ratio": 0.1,
    "lora_r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.1,
}


def ep(i: int, loss: float, hparams: dict | None = None, **kw: object) -> dict:
    return {"episode": i, "hparams": hparams or BASE, "eval_loss": loss, **kw}


def losses(*values: float) -> list[dict]:
    return [ep(i, v) for i, v in enumerate(values)]


# ---------------------------------------------------------------- reward-penalty formula


def test_positive_result_formula_and_overrides() -> None:
    # train: 2.0 → 1.8 (+0.2); SEAL on top of episode 1: 1.8 → 1.7 (+0.1); total = 0.2 + 0.5·0.1
    history = [ep(0, 2.0), ep(1, 1.8, seal_eval_loss=1.7, seal_base_episode=1)]
    reply = rules_reward_penalty(history, SPACE)
    s = reply.reward_signal
    assert s.train_improvement == pytest.approx(0.2)
    assert s.seal_improvement == pytest.approx(0.1)
    assert s.total_improvement == pytest.approx(0.25)
    assert (reply.reward, reply.penalty, reply.total) == (pytest.approx(0.25), 0.0, pytest.approx(0.25))
    assert s.regime == "positive"
    assert reply.override == {
        "lr": pytest.approx(1.25e-4),  # slightly up
        "batch_size": 8,  # up
        "lora_dropout": pytest.approx(0.05),  # down
        "lora_r": 32,  # up
        "lora_alpha": 64,  # up
        "warmup_ratio": pytest.approx(0.05),  # down
    }


def test_negative_result_formula_and_overrides() -> None:
    # train: 1.8 → 2.0 (−0.2); SEAL made it worse by 0.1 (seal_delta = +0.1); total = −0.2 − 0.05
    history = [ep(0, 1.8), ep(1, 2.0, seal_delta=0.1)]
    reply = rules_reward_penalty(history, SPACE)
    assert reply.reward_signal.train_improvement == pytest.approx(-0.2)
    assert reply.reward_signal.seal_improvement == pytest.approx(-0.1)
    assert reply.total == pytest.approx(-0.25)
    assert (reply.reward, reply.penalty) == (0.0, pytest.approx(0.25))
    assert reply.reward_signal.regime == "negative"
    assert reply.override == {
        "lr": pytest.approx(5e-5),  # halved
        "epochs": 2,  # up
        "lora_dropout": pytest.approx(0.15),  # up
        "batch_size": 2,  # down
        "lora_r": 8,  # down
        "lora_alpha": 16,  # down
        "warmup_ratio": pytest.approx(0.15),  # up
    }


def test_plateau_only_nudges_lr_down() -> None:
    history = [ep(0, 2.0), ep(1, 1.996, seal_delta=0.0)]  # total = 0.004, inside ±0.01
    reply = rules_reward_penalty(history, SPACE)
    assert reply.total == pytest.approx(0.004)
    assert (reply.reward, reply.penalty) == (pytest.approx(0.004), 0.0)
    assert reply.reward_signal.regime == "plateau"
    assert reply.override == {"lr": pytest.approx(9e-5)}
    # A wider plateau band turns a clear result into a plateau.
    clear = [ep(0, 2.0), ep(1, 1.9)]
    assert rules_reward_penalty(clear, SPACE).reward_signal.regime == "positive"
    assert rules_reward_penalty(clear, SPACE, plateau_tol=0.2).reward_signal.regime == "plateau"


def test_overrides_are_clamped_at_the_edges() -> None:
    top = {**BASE, "lr": 4.5e-4, "batch_size": 8, "lora_r": 32, "lora_alpha": 64, "lora_dropout": 0.01}
    reply = rules_reward_penalty([ep(0, 2.0, top), ep(1, 1.5, top)], SPACE)
    assert reply.override["lr"] == 5e-4  # 5.625e-4 clamped
    assert (reply.override["batch_size"], reply.override["lora_r"], reply.override["lora_alpha"]) == (
        8,
        32,
        64,
    )
    assert reply.override["lora_dropout"] == 0.0


def test_seal_is_compared_with_its_own_base_episode() -> None:
    # The SEAL stage of episode 2 refined the best TRAIN so far (episode 0, loss 1.5).
    history = [ep(0, 1.5), ep(1, 1.9), ep(2, 1.8, seal_eval_loss=1.4, seal_base_episode=0)]
    s = reward_signal(history)
    assert s.train_improvement == pytest.approx(0.1)
    assert s.seal_improvement == pytest.approx(0.1)  # 1.5 − 1.4, not 1.8 − 1.4
    assert s.total_improvement == pytest.approx(0.15)


def test_first_episode_has_only_the_seal_term_and_empty_history_nothing() -> None:
    s = reward_signal([ep(0, 2.0, seal_delta=-0.04)])
    assert (s.train_improvement, s.seal_improvement, s.total_improvement) == (0.0, 0.04, pytest.approx(0.02))
    assert s.regime == "positive"
    empty = rules_reward_penalty([], SPACE)
    assert empty.reward_signal.regime == "none" and empty.override == {}
    alone = rules_reward_penalty([ep(0, 2.0)], SPACE)  # one TRAIN, no SEAL: nothing to compare
    assert alone.reward_signal.regime == "none" and alone.override == {} and alone.total == 0.0


def test_diverged_training_is_a_fixed_penalty() -> None:
    s = reward_signal([ep(0, 2.0), ep(1, math.nan)])
    assert s.train_improvement == DIVERGED_IMPROVEMENT
    assert s.penalty == pytest.approx(1.0) and s.regime == "negative"
    # After a diverged episode the next one is compared with the last finite loss.
    s = reward_signal([ep(0, 2.0), ep(1, math.inf), ep(2, 1.9)])
    assert s.train_improvement == pytest.approx(0.1)


def test_qa_weight_adds_the_qa_change_and_defaults_to_the_seed() -> None:
    history = [ep(0, 2.0, qa_score=0.5), ep(1, 1.9, qa_score=0.8)]
    assert reward_signal(history).total_improvement == pytest.approx(0.1)  # weight 0 = seed
    s = reward_signal(history, qa_weight=0.5)
    assert s.qa_improvement == pytest.approx(0.3)
    assert s.total_improvement == pytest.approx(0.1 + 0.5 * 0.3)
    assert reward_signal([ep(0, 2.0), ep(1, 1.9, qa_score=0.8)], qa_weight=1.0).qa_improvement == 0.0


def test_merge_hparams_is_seed_step_5() -> None:
    merged = merge_hparams({"lr": 3e-4, "batch_size": 2, "lora_r": 999}, {"lr": 1e-4, "epochs": None}, SPACE)
    assert merged == {**SPACE.defaults(), "lr": 1e-4, "batch_size": 2, "lora_r": 32}


# ---------------------------------------------------------------- judge


def test_judge_cannot_stop_before_the_minimum_without_clear_degradation() -> None:
    for history in (losses(2.0), losses(2.0, 2.05), losses(2.0, 2.05, 2.08), losses(2.0, 1.9, 2.5)):
        reply = rules_judge(history, force_min_episodes=5, max_episodes=10, patience=1)
        assert reply.continue_, history
        assert "force_min_episodes=5" in reply.reason


@pytest.mark.parametrize(
    "values",
    [(2.0, 2.1, 2.2), (2.0, 2.1, math.nan), (2.0, math.nan, math.nan), (1.0, 2.0, 2.11, 2.22)],
)
def test_judge_stops_early_on_clear_degradation(values: tuple[float, ...]) -> None:
    history = losses(*values)
    assert clearly_degrading(history)
    reply = rules_judge(history, force_min_episodes=10, max_episodes=20)
    assert not reply.continue_ and "degrad" in reply.reason


def test_degradation_threshold_is_five_percent_over_two_episodes() -> None:
    assert not clearly_degrading(losses(2.0, 2.05, 2.099))  # +4.95%
    assert clearly_degrading(losses(2.0, 2.05, 2.101))  # +5.05%
    assert not clearly_degrading(losses(2.0, 2.2, 2.15))  # rose then fell
    assert clearly_degrading(losses(2.0, 2.05, 2.08), rel_tol=0.03)


def test_judge_after_the_minimum_stops_on_plateau_or_budget() -> None:
    improving = rules_judge(losses(2.0, 1.9, 1.8), force_min_episodes=3, max_episodes=10, patience=2)
    assert improving.continue_
    stalled = rules_judge(losses(2.0, 1.9, 1.95, 1.92), force_min_episodes=3, max_episodes=10, patience=2)
    assert not stalled.continue_ and "plateau" in stalled.reason
    budget = rules_judge(losses(2.0, 1.9, 1.8, 1.7), force_min_episodes=3, max_episodes=4)
    assert not budget.continue_ and "budget" in budget.reason
    assert "best eval_loss 1.7000 at episode 3" in budget.feedback


def test_enforce_min_episodes_overrides_an_llm_judge() -> None:
    stop = JudgeReply.model_validate({"continue": False, "reason": "looks done"})
    kept = enforce_min_episodes(stop, losses(2.0, 2.01), force_min_episodes=3)
    assert kept.continue_ and "overridden" in kept.reason and kept.reason.startswith("looks done")
    degrading = losses(2.0, 2.2, 2.4)
    assert not enforce_min_episodes(stop, degrading, force_min_episodes=5).continue_
    assert not enforce_min_episodes(stop, losses(2.0, 2.01, 2.0), force_min_episodes=3).continue_


# ---------------------------------------------------------------- SEAL expert


def test_seal_expert_two_epochs_only_while_seal_helps() -> None:
    assert rules_seal_expert([]).seal_epochs == 1
    assert rules_seal_expert([ep(0, 2.0, seal_delta=-0.05)]).seal_epochs == 2
    assert rules_seal_expert([ep(0, 2.0, seal_delta=0.05)]).seal_epochs == 1
    assert rules_seal_expert([ep(0, 2.0, seal_delta=-0.0001)]).seal_epochs == 1  # neutral
    summary = seal_effect_summary([ep(0, 2.0, seal_delta=-0.05), ep(1, 1.9, seal_eval_loss=1.95)])
    assert "ep0: -0.0500" in summary and "ep1: +0.0500" in summary and "helped 1/2" in summary


# ---------------------------------------------------------------- tuner


def test_tuner_starts_from_defaults_then_searches_lr_first() -> None:
    first = rules_tuner([], SPACE)
    assert first.hparams == SPACE.defaults()
    second = rules_tuner([ep(0, 2.0, SPACE.defaults())], SPACE)
    assert second.hparams == {**SPACE.defaults(), "lr": 5e-4}  # 2e-4 × 3, clamped
    # lr up failed → the opposite direction from the best (still the defaults)
    third = rules_tuner([ep(0, 2.0, SPACE.defaults()), ep(1, 2.3, second.hparams)], SPACE)
    assert third.hparams == {**SPACE.defaults(), "lr": pytest.approx(2e-4 / 3)}


def test_tuner_repeats_a_move_that_paid_off() -> None:
    d = SPACE.defaults()
    history = [ep(0, 2.0, d), ep(1, 1.8, {**d, "lr": 1e-4})]
    assert rules_tuner(history, SPACE).hparams == {**d, "lr": pytest.approx(5e-5)}
    history = [ep(0, 2.0, d), ep(1, 1.8, {**d, "epochs": 2, "batch_size": 2})]
    assert rules_tuner(history, SPACE).hparams == {**d, "epochs": 2, "batch_size": 1}


def test_tuner_lowers_lr_when_everything_diverged() -> None:
    history = [ep(0, math.nan, {**BASE, "lr": 3e-4}), ep(1, math.inf, {**BASE, "lr": 1e-4})]
    assert rules_tuner(history, SPACE).hparams["lr"] == pytest.approx(1e-4 / 3)


def _objective(h: dict) -> float:
    # A smooth synthetic "eval loss": best lr 1.2e-4, two epochs and small batches help a little.
    return (
        (math.log(h["lr"]) - math.log(1.2e-4)) ** 2 * 0.1
        + (0.0 if h["epochs"] == 2 else 0.05)
        + 0.01 * math.log2(h["batch_size"])
        + abs(h["lora_alpha"] / h["lora_r"] - 2) * 0.01
        + 1.0
    )


def _run_rules(budget: int, seed: int = 0) -> tuple[float, list[dict]]:
    history: list[dict] = []
    for i in range(budget):
        proposal = rules_tuner(history, SPACE, seed=seed).hparams
        history.append(ep(i, _objective(proposal), proposal))
    return min(e["eval_loss"] for e in history), [e["hparams"] for e in history]


def test_rules_tuner_beats_random_search_on_a_synthetic_objective() -> None:
    best8, proposals = _run_rules(8)
    assert all(SPACE.contains(p) for p in proposals)
    assert len({json.dumps(p, sort_keys=True) for p in proposals}) == 8  # no repeated experiment
    random_best = [
        min(_objective(SPACE.sample_random(rng)) for _ in range(8)) for rng in map(random.Random, range(40))
    ]
    assert best8 < statistics.median(random_best)
    assert best8 < 1.06  # optimum 1.0; the defaults score 1.114
    assert _run_rules(8) == (best8, proposals)  # deterministic


garbage_value = st.one_of(
    st.none(), st.booleans(), st.floats(), st.integers(-100, 100), st.text(max_size=4), st.just([])
)
hparam_dicts = st.dictionaries(st.sampled_from(list(SPACE.defaults())), garbage_value, max_size=7)
episodes = st.lists(
    st.tuples(hparam_dicts, st.one_of(st.floats(0.1, 10), st.just(math.nan), st.just(math.inf))), max_size=10
)


@given(episodes, st.integers(0, 3))
@settings(max_examples=150, deadline=None)
def test_rules_tuner_always_proposes_inside_the_space(raw: list, seed: int) -> None:
    history = [ep(i, loss, hparams) for i, (hparams, loss) in enumerate(raw)]
    reply = rules_tuner(history, SPACE, seed=seed)
    assert SPACE.contains(reply.hparams)
    assert reply.seal_plan.seal_epochs in (1, 2)
    assert rules_judge(history).continue_ in (True, False)
    rp = rules_reward_penalty(history, SPACE)
    assert all(math.isfinite(v) for v in rp.reward_signal.model_dump().values() if isinstance(v, float))


# ---------------------------------------------------------------- QA


def test_qa_generator_spreads_over_the_rows_and_reads_alpaca() -> None:
    rows = [{"instruction": f"q{i}", "input": "ctx" if i == 3 else "", "output": f"a{i}"} for i in range(8)]
    reply = rules_qa_generator([{"nothing": 1}, *rows], n=4)
    assert [(i.prompt, i.expected) for i in reply.items] == [
        ("q0", "a0"),
        ("q2", "a2"),
        ("q4", "a4"),
        ("q6", "a6"),
    ]
    assert rules_qa_generator(rows, n=2).items[0].prompt == "q0"
    assert rules_qa_generator([{"prompt": "p", "completion": "c"}], 3).items[0].expected == "c"
    assert rules_qa_generator(rows[3:4], 1).items[0].prompt == "q3\n\nctx"


def test_qa_evaluator_containment_and_token_f1() -> None:
    assert token_f1("the cat sat", "cat sat on mat") == pytest.approx(4 / 7)  # P=2/3, R=2/4
    reply = rules_qa_evaluator(
        [
            {"prompt": "p", "expected": "Paris"},
            {"prompt": "p", "expected": "cat sat on mat"},
            {"expected": "x"},
        ],
        ["It is paris.", "the cat sat", "y"],
    )
    assert reply.scores == [1.0, pytest.approx(4 / 7, abs=1e-4), 0.0]
    assert reply.comments[0] == "contains the expected answer"
    assert reply.mean_score == pytest.approx((1.0 + 0.5714 + 0.0) / 3, abs=1e-4)


# ---------------------------------------------------------------- reply models


def test_replies_clamp_instead_of_rejecting() -> None:
    tuner = TunerReply.model_validate(
        {"say": 42, "hparams": {"lr": 1.0, "batch_size": "3", "lora_alpha": None}, "seal_plan": 5, "x": 1}
    )
    assert tuner.say == "42"
    assert tuner.hparams == {**SPACE.defaults(), "lr": 5e-4, "batch_size": 2}
    assert tuner.seal_plan.seal_epochs == 2
    judge = JudgeReply.model_validate({"continue": "no", "reason": ["a"]})
    assert judge.model_dump(by_alias=True) == {
        "say": "",
        "continue": False,
        "reason": '["a"]',
        "feedback": "",
    }
    seal = SealExpertReply.model_validate({"seal_epochs": float("nan")})
    assert seal.seal_epochs == 1
    qa = QAEvalReply.model_validate({"scores": [7, 10, float("nan"), "2"]}, context={"items": [1, 2, 3]})
    assert qa.scores == [0.7, 1.0, 0.0]  # 0–10 scale read as such, NaN → 0, extra score dropped
    gen = QAGenReply.model_validate(
        {"items": [{"prompt": ""}, {"prompt": "q", "expected": 3}, 5]}, context={"n": 1}
    )
    assert [(i.prompt, i.expected) for i in gen.items] == [("q", "3")]


@pytest.mark.parametrize(
    ("role", "payload"),
    [
        ("tuner", {"say": "no hparams"}),
        ("tuner", {"hparams": [1, 2]}),
        ("judge", {"continue": "maybe"}),
        ("reward_penalty", {"say": "x"}),
        ("seal_expert", {"evaluation": "x"}),
        ("qa_generator", {"items": [{"prompt": ""}]}),
        ("qa_evaluator", {"scores": ["bad"]}),
        ("qa_evaluator", {"scores": [1.0]}),  # two items need two scores
        ("judge", [True]),
    ],
)
def test_a_missing_decision_is_invalid(role: str, payload: object) -> None:
    with pytest.raises(ValidationError):
        REPLY_MODELS[role].model_validate(payload, context={"items": [{}, {}]})


@pytest.mark.parametrize("call", [rules_answer, reply_schema, build_messages])
def test_an_unknown_role_names_the_known_ones(call) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="unknown agent role 'critic' \\(known: tuner, judge, "):
        call("critic", {})


# ---------------------------------------------------------------- prompts and schemas


def _contexts() -> dict[str, dict]:
    history = [ep(0, 2.0, SPACE.defaults(), seal_delta=-0.05), ep(1, 1.9, {**BASE, "lr": 5e-4})]
    items = [{"prompt": "capital of France?", "expected": "Paris"}, {"prompt": "2+2?", "expected": "4"}]
    return {
        "tuner": {"episode": 2, "history": history, "space": SPACE.model_dump(), "seed": 3},
        "judge": {"episode": 2, "history": history, "force_min_episodes": 3, "max_episodes": 4},
        "reward_penalty": {"episode": 2, "history": history, "space": SPACE.model_dump()},
        "seal_expert": {"episode": 2, "history": history},
        "qa_generator": {"episode": 2, "val_rows": [{"instruction": "q", "output": "a"}] * 3, "n": 2},
        "qa_evaluator": {"episode": 2, "items": items, "answers": ["Paris", "five"]},
    }


@pytest.fixture(scope="module")
def lltok(tiny_tokenizer):  # noqa: ANN001, ANN201
    llguidance_hf = pytest.importorskip("llguidance.hf")
    return llguidance_hf.from_tokenizer(tiny_tokenizer)


@pytest.mark.parametrize("role", ROLES)
def test_rules_answers_fit_the_wire_schema(role: str, lltok) -> None:  # noqa: ANN001
    """The rules replies, dumped as the seed's JSON, are accepted by the schema LLMs must follow."""
    from llguidance import LLMatcher

    context = _contexts()[role]
    reply = rules_answer(role, context)
    assert isinstance(reply, REPLY_MODELS[role])
    wire = jsonable(reply)
    if role == "reward_penalty":  # on the wire every override key is present, null = not overridden
        wire["override"] = {k: wire["override"].get(k) for k in SPACE.defaults()}
    text = json.dumps(wire, separators=(",", ":"), ensure_ascii=False)
    matcher = LLMatcher(lltok, LLMatcher.grammar_from_json_schema(reply_schema(role, context)), log_level=0)
    assert matcher.consume_tokens(lltok.tokenize_str(text)) and matcher.is_accepting(), matcher.get_error()
    # round trip: the dumped JSON validates back to the same reply
    assert REPLY_MODELS[role].model_validate(json.loads(text), context=context) == reply


@pytest.mark.parametrize("role", ROLES)
def test_build_messages_carries_schema_and_context(role: str) -> None:
    context = _contexts()[role]
    system, user = build_messages(role, context)
    assert system["role"] == "system" and user["role"] == "user"
    assert json.dumps(reply_schema(role, context), separators=(",", ":")) in system["content"]
    shown = json.loads(user["content"])
    assert "seed" not in shown
    assert shown["episode"] == 2
    assert len(system["content"]) + len(user["content"]) < 4000  # compact enough for a small local model
