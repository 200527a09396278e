"""Tests for posttrain/tasks/conversations.py and the bundled scored-conversation sample."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from posttrain.errors import DataError
from posttrain.tasks.conversations import (
    CRITIQUE_REQUEST,
    ScoredConversation,
    contrastive_pairs,
    curriculum_order,
    decision_transformer_prompt,
    format_example,
    format_prompt,
    normalize_score,
    read_scored_conversations,
    sample_path,
    score_pairs,
    self_critique_rows,
    split_by_prompt,
    to_prompts,
    to_sft_rows,
)

REPO = Path(__file__).resolve().parents[2]


def human(text: str) -> dict:
    return {"role": "human", "content": text}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def conv(
    question: str, answer: str, score: float, reason: str | None = None, before=()
) -> ScoredConversation:
    return ScoredConversation([*before, human(question), assistant(answer)], score, reason)


GOOD = {"conversation": [human("Hi"), assistant("Hello")], "meta_eval_score": 4.5, "score_reason": "Polite."}
TURNS = [human("Hi"), assistant("Hello"), human("Q?"), assistant("A.")]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- reader


def test_reader_keeps_turns_score_reason_and_lines(tmp_path):
    path = tmp_path / "scored.jsonl"
    second = {"conversation": TURNS, "meta_eval_score": 2, "extra": "ignored"}
    path.write_text(json.dumps(GOOD) + "\n\n" + json.dumps(second) + "\n", encoding="utf-8")
    first, other = read_scored_conversations(path)
    assert first.conversation == [human("Hi"), assistant("Hello")]
    assert (first.score, first.reason, first.line) == (4.5, "Polite.", 1)
    assert (other.score, other.reason, other.line, other.source) == (2.0, None, 3, str(path))
    assert other.prompt_turns == TURNS[:3] and other.response == "A."


BAD_ROWS = [
    ({"meta_eval_score": 3}, 'field "conversation" is missing (expected scored rows'),
    (
        {"conversation": "Hi", "meta_eval_score": 3},
        'field "conversation" must be a list of {role, content}, got str',
    ),
    ({"conversation": [], "meta_eval_score": 3}, 'field "conversation" is empty'),
    ({"conversation": ["Hi"], "meta_eval_score": 3}, 'field "conversation[0]" must be an object'),
    (
        {"conversation": [{"role": "user", "content": "Hi"}, assistant("Yo")], "meta_eval_score": 3},
        'field "conversation[0].role" must be "human" or "assistant", got "user"',
    ),
    (
        {"conversation": [human("Hi"), {"role": "assistant"}], "meta_eval_score": 3},
        '"conversation[1].content" is missing',
    ),
    (
        {"conversation": [human("Hi"), assistant("  ")], "meta_eval_score": 3},
        '"conversation[1].content" is empty',
    ),
    (
        {"conversation": [human("Hi"), {"role": "assistant", "content": 7}], "meta_eval_score": 3},
        '"conversation[1].content" must be a string, got int',
    ),
    (
        {"conversation": [human("Hi")], "meta_eval_score": 3},
        'field "conversation" must end with the scored assistant',
    ),
    ({"conversation": [assistant("Yo")], "meta_eval_score": 3}, "needs a human turn right before the final"),
    ({"conversation": TURNS}, 'field "meta_eval_score" is missing'),
    (
        {"conversation": TURNS, "meta_eval_score": "4"},
        '"meta_eval_score" must be a number from 0 to 5, got str',
    ),
    (
        {"conversation": TURNS, "meta_eval_score": True},
        '"meta_eval_score" must be a number from 0 to 5, got bool',
    ),
    (
        {"conversation": TURNS, "meta_eval_score": None},
        '"meta_eval_score" must be a number from 0 to 5, got null',
    ),
    ({"conversation": TURNS, "meta_eval_score": 7.5}, '"meta_eval_score" must be between 0 and 5, got 7.5'),
    ({"conversation": TURNS, "meta_eval_score": -1}, '"meta_eval_score" must be between 0 and 5, got -1'),
    (
        {"conversation": TURNS, "meta_eval_score": math.nan},
        '"meta_eval_score" must be between 0 and 5, got nan',
    ),
    (
        {"conversation": TURNS, "meta_eval_score": 3, "score_reason": 5},
        '"score_reason" must be a string or absent',
    ),
]


@pytest.mark.parametrize(("row", "message"), BAD_ROWS, ids=[m[:40] for _, m in BAD_ROWS])
def test_reader_names_file_line_and_field(tmp_path, row, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [GOOD, row])
    with pytest.raises(DataError) as info:
        read_scored_conversations(path)
    assert str(info.value).startswith(f"{path}:2: "), str(info.value)
    assert message in str(info.value)
    assert info.value.line == 2 and info.value.field is not None


def test_reader_accepts_csv_with_json_conversation_cell(tmp_path):
    path = tmp_path / "scored.csv"
    cell = json.dumps(TURNS).replace('"', '""')
    path.write_text(f'conversation,meta_eval_score,score_reason\n"{cell}",3.5,fine\n', encoding="utf-8")
    (only,) = read_scored_conversations(path)
    assert (only.conversation, only.score, only.reason, only.line) == (TURNS, 3.5, "fine", 2)
    path.write_text(f'conversation,meta_eval_score\n"{cell}",high\n', encoding="utf-8")
    with pytest.raises(
        DataError, match=r'scored\.csv:2: field "meta_eval_score" must be a number from 0 to 5, got "high"'
    ):
        read_scored_conversations(path)


# --------------------------------------------------------------------------- token formats


def test_role_markers_strings():
    assert (
        format_prompt(TURNS[:3], "role_markers")
        == "<|human|> Hi\n<|assistant|> Hello\n<|human|> Q?\n<|assistant|>"
    )
    assert (
        format_example(TURNS, "role_markers")
        == "<|human|> Hi\n<|assistant|> Hello\n<|human|> Q?\n<|assistant|> A."
    )


def test_turn_markers_strings():
    expected = "[TURN 1] Human: Hi\n[TURN 2] Assistant: Hello\n[TURN 3] Human: Q?\n[TURN 4] Assistant:"
    assert format_prompt(TURNS[:3], "turn_markers") == expected
    assert format_example(TURNS, "turn_markers") == expected + " A."


def test_standard_format_is_the_chat_template_with_human_as_user(tiny_tokenizer):
    system = (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    )
    body = (
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n"
        "<|im_start|>user\nQ?<|im_end|>\n"
    )
    assert format_prompt(TURNS[:3], "standard", tiny_tokenizer) == system + body + "<|im_start|>assistant\n"
    assert (
        format_example(TURNS, "standard", tiny_tokenizer)
        == system + body + "<|im_start|>assistant\nA.<|im_end|>\n"
    )


def test_format_errors_say_what_to_do():
    with pytest.raises(ValueError, match="needs a tokenizer with a chat template; use role_markers"):
        format_prompt(TURNS[:3], "standard")
    with pytest.raises(ValueError, match="unknown token format 'xml'"):
        format_prompt(TURNS[:3], "xml")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ending with an assistant turn"):
        format_example(TURNS[:3], "role_markers")


def test_sft_rows_per_format():
    convs = [ScoredConversation(TURNS, 4.0)]
    (std,) = to_sft_rows(convs, "standard")
    assert std == {
        "prompt": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Q?"},
        ],
        "completion": [{"role": "assistant", "content": "A."}],
    }
    (marked,) = to_sft_rows(convs, "turn_markers")
    assert marked["prompt"] + marked["completion"] == format_example(TURNS, "turn_markers")
    (conditioned,) = to_sft_rows(convs, "role_markers", condition_on_score=True)
    assert conditioned["prompt"].startswith("<score=4> <|human|> Hi\n")
    (std_cond,) = to_sft_rows(convs, "standard", condition_on_score=True)
    assert std_cond["prompt"][0]["content"] == "<score=4> Hi" and std_cond["prompt"][2]["content"] == "Q?"


def test_prompts_for_rl_dedupe_and_keep_best_reference():
    convs = [
        conv("Q?", "meh", 2.0, before=TURNS[:2]),
        conv("Q?", "great", 5.0, before=TURNS[:2]),
        conv("R?", "ok", 3),
    ]
    rows = to_prompts(convs, "role_markers", target_score=5)
    assert [r["reference"] for r in rows] == ["great", "ok"]
    assert rows[0]["prompt"] == "<score=5> <|human|> Hi\n<|assistant|> Hello\n<|human|> Q?\n<|assistant|>"
    assert rows[0]["context"] == "Hi\n\nHello\n\nQ?" and rows[0]["reference_score"] == 5.0
    assert len(to_prompts(convs, "standard", dedupe=False)) == 3


# --------------------------------------------------------------------------- techniques


def test_curriculum_by_score_then_length():
    convs = [
        conv("q", "a b c", 3),
        conv("q", "a", 5),
        conv("q", "a b c d", 5),
        conv("q", "a", 0),
        conv("q", "a", 3),
    ]
    ordered = curriculum_order(convs, "score")
    assert [(c.score, c.response) for c in ordered] == [
        (5, "a"),
        (5, "a b c d"),
        (3, "a"),
        (3, "a b c"),
        (0, "a"),
    ]
    by_length = curriculum_order(convs, "length")
    assert [(c.score, c.response) for c in by_length] == [
        (5, "a"),
        (3, "a"),
        (0, "a"),
        (3, "a b c"),
        (5, "a b c d"),
    ]
    assert convs[0].response == "a b c"  # input untouched
    with pytest.raises(ValueError, match="score or length"):
        curriculum_order(convs, "difficulty")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("score", "tag"), [(5, "<score=5> "), (4.3, "<score=4.5> "), (0.2, "<score=0> "), (3.0, "<score=3> ")]
)
def test_decision_transformer_tag(score, tag):
    assert decision_transformer_prompt("Q?", score) == tag + "Q?"


def test_decision_transformer_on_messages_copies_and_rejects_out_of_range():
    messages = [{"role": "user", "content": "Hi"}, {"role": "user", "content": "Q?"}]
    assert decision_transformer_prompt(messages, 5)[0]["content"] == "<score=5> Hi"
    assert messages[0]["content"] == "Hi"
    with pytest.raises(ValueError, match=r"target_score must be in \[0, 5\]"):
        decision_transformer_prompt("Q?", 6)


def _pair_convs() -> list[ScoredConversation]:
    return [
        conv("What is 2+2?", "4", 5.0),
        conv("Name a colour.", "Blue.", 4.0),
        conv("What is 2+2?", "Probably 4", 3.5),
        conv("what is  2+2?", "22", 1.0),  # same prompt after folding case and spaces
        conv("Name a colour.", "Red, I guess.", 3.5),
    ]


def test_score_pairs_respect_gap_share_prompt_and_carry_margin():
    rows = score_pairs(_pair_convs(), min_gap=1.0)
    pairs = [(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows]
    assert pairs == [
        ("4", "22"),
        ("Probably 4", "22"),
        ("4", "Probably 4"),
    ]  # widest gap first; colours differ by 0.5
    assert [r["margin"] for r in rows] == pytest.approx([0.8, 0.5, 0.3])
    assert all(r["prompt"] == [{"role": "user", "content": "What is 2+2?"}] for r in rows)
    assert score_pairs(_pair_convs(), min_gap=1.0, max_per_prompt=1)[0]["chosen_score"] == 5.0
    strings = score_pairs(_pair_convs(), min_gap=3.0, fmt="role_markers")
    assert strings == [
        {
            "prompt": "<|human|> What is 2+2?\n<|assistant|>",
            "chosen": " 4",
            "rejected": " 22",
            "chosen_score": 5.0,
            "rejected_score": 1.0,
            "margin": 0.8,
        }
    ]
    with pytest.raises(ValueError, match="min_gap must be > 0"):
        score_pairs(_pair_convs(), min_gap=0)


def test_contrastive_pairs_use_the_wider_default_gap():
    rows = contrastive_pairs(_pair_convs())
    assert [(r["chosen_score"], r["rejected_score"]) for r in rows] == [(5.0, 1.0), (3.5, 1.0)]


def test_self_critique_rows_critique_then_revise():
    convs = [
        conv("What is 2+2?", "22", 1.0, "Wrong: glues the digits; 2 + 2 is 4."),
        conv("What is 2+2?", "4", 5.0, "Correct."),
        conv("Name a colour.", "Hmm.", 2.0, "Evasive."),
        conv("Name a colour.", "Red, I guess.", 2.5),  # no reason: nothing to teach
    ]
    rows = self_critique_rows(convs, "role_markers")
    assert len(rows) == 2
    assert rows[0]["prompt"] == (
        f"<|human|> What is 2+2?\n<|assistant|> 22\n<|human|> {CRITIQUE_REQUEST}\n<|assistant|>"
    )
    assert rows[0]["completion"] == " Critique: Wrong: glues the digits; 2 + 2 is 4.\n\nRevised answer: 4"
    assert rows[0]["revised"] is True
    assert (
        rows[1]["completion"] == " Critique: Evasive." and rows[1]["revised"] is False
    )  # 2.5 is < 1 point better
    std = self_critique_rows(convs, "standard")
    assert std[0]["prompt"][-1] == {"role": "user", "content": CRITIQUE_REQUEST}
    assert std[0]["completion"][0]["role"] == "assistant"


def test_normalize_score():
    assert [normalize_score(s) for s in (0, 2.5, 5)] == [0.0, 0.5, 1.0]
    with pytest.raises(ValueError):
        normalize_score(5.5)


def test_split_by_prompt_keeps_prompts_on_one_side():
    convs = read_scored_conversations(sample_path())
    train, held = split_by_prompt(convs, 0.2, seed=1)
    assert len(train) + len(held) == len(convs)
    assert {c.prompt_key for c in train}.isdisjoint({c.prompt_key for c in held})
    assert len({c.prompt_key for c in held}) == 17  # round(84 * 0.2)
    again = split_by_prompt(convs, 0.2, seed=1)[1]
    assert [c.line for c in again] == [c.line for c in held]


# --------------------------------------------------------------------------- bundled sample


def test_bundled_sample_is_valid_and_spread_over_scores():
    convs = read_scored_conversations(sample_path())
    assert len(convs) >= 220
    buckets = Counter(min(int(c.score), 5) for c in convs)
    assert sorted(buckets) == [0, 1, 2, 3, 4, 5]
    assert min(buckets.values()) >= 20, buckets
    assert all(c.reason for c in convs)
    turns = Counter(len(c.conversation) // 2 for c in convs)
    assert sorted(turns) == [1, 2, 3]
    # Three answers per prompt, one per band, so every prompt yields reward-model pairs.
    prompts = Counter(c.prompt_key for c in convs)
    assert set(prompts.values()) == {3}
    pairs = score_pairs(convs, min_gap=1.0)
    assert len(pairs) == len(convs)
    scores = {(c.prompt_key, c.response): c.score for c in convs}
    rows = contrastive_pairs(convs)
    assert len(rows) >= len(prompts)  # the high and the low answer are always >= 2 apart
    for row in rows:
        key = ScoredConversation([*_as_human(row["prompt"]), assistant("-")], 0).prompt_key
        assert scores[key, row["chosen"][0]["content"]] == row["chosen_score"]
        assert scores[key, row["rejected"][0]["content"]] == row["rejected_score"]  # same prompt, both
        assert row["chosen_score"] - row["rejected_score"] >= 2.0


def _as_human(messages: list[dict]) -> list[dict]:
    return [{**m, "role": "human" if m["role"] == "user" else m["role"]} for m in messages]


def test_bundled_sample_regenerates_byte_for_byte(tmp_path):
    out = tmp_path / "scored.jsonl"
    script = REPO / "bench" / "make_conversations.py"
    subprocess.run([sys.executable, str(script), "--out", str(out)], check=True, capture_output=True)
    assert out.read_bytes() == sample_path().read_bytes(), "rerun bench/make_conversations.py"
