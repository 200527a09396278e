"""llguidance-constrained decoding on a random tiny Llama: every reply is schema-valid JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from posttrain.agents.backends import AgentLog, LocalBackend
from posttrain.agents.roles import REPLY_MODELS, ROLES, reply_schema
from posttrain.constrained import bounded_numbers
from tests.agents.backends.fakes import CONTEXTS, Recorder, assert_valid, read_log


def test_random_model_writes_schema_valid_json_for_every_role(
    tiny_model: tuple[Any, Any], tmp_path: Path
) -> None:
    model, tokenizer = tiny_model
    log = AgentLog(tmp_path / "agents.jsonl")
    backend = LocalBackend(model, tokenizer, max_new_tokens=200, max_text_chars=12, log=log)
    for role in ROLES:
        reply = backend.complete_json(
            role, [{"role": "user", "content": "x"}], REPLY_MODELS[role], CONTEXTS[role]
        )
        assert_valid(role, reply, CONTEXTS[role])
    lines = read_log(tmp_path / "agents.jsonl")
    assert [x["role"] for x in lines] == list(ROLES)  # one attempt each: no repair, no fallback
    for line in lines:
        raw = json.loads(line["response"]["raw"], parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
        required = reply_schema(line["role"], CONTEXTS[line["role"]])["required"]
        assert list(raw) == required
        strings = [v for v in raw.values() if isinstance(v, str)]
        assert all(len(s) <= 12 for s in strings)
    # greedy decoding is deterministic
    backend.complete_json(
        "tuner", [{"role": "user", "content": "x"}], REPLY_MODELS["tuner"], CONTEXTS["tuner"]
    )
    assert read_log(tmp_path / "agents.jsonl")[-1]["response"]["raw"] == lines[0]["response"]["raw"]


def test_sampling_also_stays_in_the_grammar(tiny_model: tuple[Any, Any]) -> None:
    model, tokenizer = tiny_model
    backend = LocalBackend(model, tokenizer, max_new_tokens=200, temperature=1.5, max_text_chars=8, seed=3)
    store = Recorder()
    backend.log = AgentLog(store=store, run_id=1)
    for seed in range(3):
        backend.seed = seed
        assert_valid(
            "tuner", backend.complete_json("tuner", [], REPLY_MODELS["tuner"], CONTEXTS["tuner"]), {}
        )
    assert not any(r["fallback"] or r["error"] for r in store.rows)


def test_bounded_numbers_adds_precision_only_where_missing() -> None:
    schema = reply_schema("tuner", CONTEXTS["tuner"])
    bounded = bounded_numbers(schema)
    assert bounded["properties"]["hparams"]["properties"]["lr"]["multipleOf"] == 1e-7
    assert bounded["properties"]["hparams"]["properties"]["warmup_ratio"]["multipleOf"] == 1e-4
    assert "multipleOf" not in schema["properties"]["hparams"]["properties"]["lr"]  # input untouched
    assert bounded_numbers({"type": "number", "multipleOf": 0.5}) == {"type": "number", "multipleOf": 0.5}
