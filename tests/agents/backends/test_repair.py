"""Lenient parsing, one repair, rules fallback: adversarial model outputs (hypothesis)."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posttrain.agents.backends import AgentLog, complete_with_repair, extract_json
from posttrain.agents.roles import REPLY_MODELS, ROLES, reply_schema, rules_answer
from tests.agents.backends.fakes import CONTEXTS, SPACE, Recorder, assert_valid, wire

# ---------------------------------------------------------------- parsing


def test_extract_json_tolerates_prose_and_fences() -> None:
    assert extract_json('{"a": 1}') == {"a": 1}
    assert extract_json('Sure! Here it is:\n```json\n{"a": [1, 2]}\n```\nHope that helps.') == {"a": [1, 2]}
    assert extract_json('I propose {"a": {"b": 2}} because {x}') == {"a": {"b": 2}}
    assert math.isnan(extract_json('{"lr": NaN}')["lr"])
    for bad in ("", "no json here", '{"a": 1', "[1, 2", '```json\n{"a": \n```'):
        with pytest.raises(ValueError):
            extract_json(bad)


# ---------------------------------------------------------------- adversarial outputs (hypothesis)

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**9), 10**9),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.lists(st.integers(0, 20), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@st.composite
def llm_output(draw: st.DrawFn, role: str) -> str:
    obj = wire(rules_answer(role, CONTEXTS[role]))
    for _ in range(draw(st.integers(0, 3))):  # damage some keys, one level deep or at the top
        target = obj
        nested = [k for k, v in obj.items() if isinstance(v, dict)]
        if nested and draw(st.booleans()):
            target = obj[draw(st.sampled_from(nested))]
        if not target:
            continue
        key = draw(st.sampled_from(sorted(target)))
        if draw(st.booleans()):
            del target[key]
        else:
            target[key] = draw(junk)
    text = json.dumps(obj)  # Python writes NaN/Infinity tokens, as some servers do
    shape = draw(st.sampled_from(["plain", "prose", "fence", "truncated", "not_json", "array"]))
    if shape == "prose":
        return f"Here is my answer: {text}\nLet me know."
    if shape == "fence":
        return f"```json\n{text}\n```"
    if shape == "truncated":
        return text[: draw(st.integers(0, max(0, len(text) - 1)))]
    if shape == "not_json":
        return draw(st.text(max_size=30))
    if shape == "array":
        return json.dumps([obj])
    return text


@pytest.mark.parametrize("role", ROLES)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_adversarial_outputs_end_valid_or_in_a_logged_fallback(role: str, data: st.DataObject) -> None:
    context = CONTEXTS[role]
    outputs = [data.draw(llm_output(role)), data.draw(llm_output(role))]
    calls: list[list[dict]] = []

    def generate(_role: str, messages: list[dict], _schema: dict) -> str:
        calls.append(messages)
        return outputs[len(calls) - 1]

    store = Recorder()
    reply = complete_with_repair(
        "fake", generate, role, [{"role": "user", "content": "go"}], REPLY_MODELS[role], context,
        AgentLog(store=store, run_id=1),
    )  # fmt: skip
    assert_valid(role, reply, context)
    fallback = [r for r in store.rows if r["fallback"]]
    if fallback:
        assert len(calls) == 2 and len(store.rows) == 3
        assert reply == rules_answer(role, context)
        assert fallback[0]["error"]
    elif len(calls) == 2:  # repaired: the second request carried the bad reply and the error
        assert calls[1][-2] == {"role": "assistant", "content": outputs[0]}
        assert "could not be used" in calls[1][-1]["content"] and store.rows[0]["error"]
    assert all(r["episode"] == 2 for r in store.rows)


def test_a_valid_first_answer_is_not_repaired_and_values_are_clamped() -> None:
    calls = []
    obj = {"say": "go", "hparams": {"lr": 0.5, "batch_size": 5, "epochs": 9}, "seal_plan": {"seal_epochs": 0}}
    text = f"Sure: {json.dumps(obj)}"

    def generate(role: str, messages: list[dict], schema: dict) -> str:
        calls.append(schema)
        return text

    reply = complete_with_repair(
        "fake", generate, "tuner", [], REPLY_MODELS["tuner"], CONTEXTS["tuner"], None
    )
    assert len(calls) == 1 and calls[0] == reply_schema("tuner", CONTEXTS["tuner"])
    assert reply.hparams == {**SPACE.defaults(), "lr": 5e-4, "batch_size": 4, "epochs": 2}
    assert reply.seal_plan.seal_epochs == 1
