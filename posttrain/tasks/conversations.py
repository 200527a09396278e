"""Scored conversations (seed 003): reading, token formats, and the data transforms of its techniques.

A row is `{"conversation": [{"role": "human"|"assistant", "content": ...}, ...],
"meta_eval_score": 0-5, "score_reason": "..."?}`. The score rates the LAST assistant
turn; everything before it is the prompt.

Token formats, shown on human "Hi" / assistant "Hello" / human "Q?" / assistant "A.":

- `standard`: the tokenizer's chat template with human -> user. For SmolLM2:
  "<|im_start|>system\\n...<|im_end|>\\n<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n
  Hello<|im_end|>\\n<|im_start|>user\\nQ?<|im_end|>\\n<|im_start|>assistant\\n" (+ "A.<|im_end|>\\n").
  SFT and RL rows stay TRL conversational messages, so TRL applies the template itself.
- `role_markers`: "<|human|> Hi\\n<|assistant|> Hello\\n<|human|> Q?\\n<|assistant|>" + " A."
- `turn_markers`: "[TURN 1] Human: Hi\\n[TURN 2] Assistant: Hello\\n[TURN 3] Human: Q?\\n[TURN 4] Assistant:"
  + " A."

For the marker formats the prompt ends right after the assistant marker and the
completion starts with one space (a trailing space in the prompt would tokenize badly);
the markers are plain text, not added tokens. TRL's SFT trainer appends the EOS token to
string completions, so the rows here do not.
"""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass
from functools import cached_property
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

from posttrain.tasks.loader import Record, read_records

TokenFormat = Literal["standard", "role_markers", "turn_markers"]
TOKEN_FORMATS: tuple[str, ...] = ("standard", "role_markers", "turn_markers")
MAX_SCORE = 5.0
EXPECTED = (
    "expected scored rows: conversation = [{role: human|assistant, content}, ...], "
    "meta_eval_score 0-5, score_reason?"
)
CRITIQUE_REQUEST = "Critique your previous answer, then write an improved one."
_SAMPLE = "scored_conversations.jsonl"


@dataclass(frozen=True)
class ScoredConversation:
    """One conversation whose final assistant turn was rated `score` (0-5).

    `conversation` turns use the seed's roles, human and assistant. `line`/`source` say
    where the row came from (0/"" for conversations built in code).
    """

    conversation: list[dict[str, str]]
    score: float
    reason: str | None = None
    line: int = 0
    source: str = ""

    @property
    def prompt_turns(self) -> list[dict[str, str]]:
        """Every turn before the scored answer; ends with a human turn."""
        return self.conversation[:-1]

    @property
    def response(self) -> str:
        """The scored answer: the content of the last assistant turn."""
        return self.conversation[-1]["content"]

    @cached_property
    def prompt_key(self) -> str:
        """The prompt with case and runs of whitespace folded: equal keys mean the same question."""
        text = "\n".join(f"{t['role']}: {t['content']}" for t in self.prompt_turns)
        return re.sub(r"\s+", " ", text.lower()).strip()


def sample_path() -> Path:
    """The bundled sample (written by bench/make_conversations.py): 252 scored conversations."""
    return Path(str(files("posttrain").joinpath("data", _SAMPLE)))


def normalize_score(score: float) -> float:
    """meta_eval_score on [0, 5] -> [0, 1] (score / 5), the scale of the other reward terms."""
    if not 0.0 <= score <= MAX_SCORE:
        raise ValueError(f"score must be in [0, {MAX_SCORE:g}], got {score}")
    return score / MAX_SCORE


# --------------------------------------------------------------------------- reading


def read_scored_conversations(path: str | Path) -> list[ScoredConversation]:
    """Read and validate every row of a JSONL/JSON/CSV file (or saved HF dataset).

    Raises DataError naming file, line and field for the first bad row: a missing or
    empty conversation, a turn that is not {role: human|assistant, content: non-empty
    string}, a conversation that does not end with a human turn followed by the scored
    assistant turn, a meta_eval_score that is missing, not a number or outside [0, 5],
    or a score_reason that is not a string. In CSV files the conversation cell holds the
    JSON list and the score may be written as text. Other keys are ignored.
    """
    return [_scored(record) for record in read_records(path)]


_MISSING = object()


def _scored(record: Record) -> ScoredConversation:
    data = record.data
    if "conversation" not in data:
        raise record.error("conversation", f"is missing ({EXPECTED})")
    turns = _turns(record, data["conversation"])
    score = _score(record, data.get("meta_eval_score", _MISSING))
    reason = data.get("score_reason")
    if reason is not None and not isinstance(reason, str):
        raise record.error("score_reason", f"must be a string or absent, got {_kind(reason)}")
    reason = reason.strip() if reason else None
    return ScoredConversation(turns, score, reason or None, record.line, record.source)


def _turns(record: Record, value: Any) -> list[dict[str, str]]:
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:  # a CSV cell holding the JSON list
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise record.error(
                "conversation", f"is not valid JSON ({err.msg} at column {err.colno})"
            ) from None
    if not isinstance(value, list):
        raise record.error("conversation", f"must be a list of {{role, content}}, got {_kind(value)}")
    if not value:
        raise record.error("conversation", "is empty")
    turns = []
    for index, turn in enumerate(value):
        where = f"conversation[{index}]"
        if not isinstance(turn, dict):
            raise record.error(where, f"must be an object {{role, content}}, got {_kind(turn)}")
        role = turn.get("role")
        if role not in ("human", "assistant"):
            got = f'"{role}"' if isinstance(role, str) else _kind(role)
            raise record.error(f"{where}.role", f'must be "human" or "assistant", got {got}')
        content = turn.get("content")
        if content is None and "content" not in turn:
            raise record.error(f"{where}.content", "is missing")
        if not isinstance(content, str):
            raise record.error(f"{where}.content", f"must be a string, got {_kind(content)}")
        if not content.strip():
            raise record.error(f"{where}.content", "is empty")
        turns.append({"role": role, "content": content})
    if turns[-1]["role"] != "assistant":
        raise record.error(
            "conversation", 'must end with the scored assistant turn, got a final "human" turn'
        )
    if len(turns) < 2 or turns[-2]["role"] != "human":
        raise record.error("conversation", "needs a human turn right before the final assistant turn")
    return turns


def _score(record: Record, value: Any) -> float:
    if value is _MISSING:
        raise record.error("meta_eval_score", f"is missing ({EXPECTED})")
    if isinstance(value, str) and record.source.lower().endswith(".csv"):
        try:
            value = float(value)
        except ValueError:
            raise record.error("meta_eval_score", f'must be a number from 0 to 5, got "{value}"') from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise record.error("meta_eval_score", f"must be a number from 0 to 5, got {_kind(value)}")
    if not math.isfinite(value) or not 0 <= value <= MAX_SCORE:
        raise record.error("meta_eval_score", f"must be between 0 and 5, got {value}")
    return float(value)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


# --------------------------------------------------------------------------- token formats


def format_prompt(turns: list[dict[str, str]], fmt: TokenFormat, tokenizer: Any = None) -> str:
    """Render turns ending with a human turn as the text a model continues (see module doc).

    `standard` needs a tokenizer with a chat template and adds the generation prompt.
    Roles may be human/user and assistant.
    """
    _check_format(fmt, tokenizer, renders=True)
    if fmt == "standard":
        return tokenizer.apply_chat_template(_messages(turns), tokenize=False, add_generation_prompt=True)
    return (
        "\n".join(_marked(t, i, fmt) for i, t in enumerate(turns)) + "\n" + _assistant_marker(len(turns), fmt)
    )


def format_example(turns: list[dict[str, str]], fmt: TokenFormat, tokenizer: Any = None) -> str:
    """Render a whole conversation ending with an assistant turn (prompt + answer), without EOS.

    For the marker formats this is `format_prompt(turns[:-1]) + " " + answer`; for
    `standard` the chat template of all turns (which closes the answer with its end token).
    """
    _check_format(fmt, tokenizer, renders=True)
    if not turns or _role(turns[-1]) != "assistant":
        raise ValueError("format_example needs turns ending with an assistant turn")
    if fmt == "standard":
        return tokenizer.apply_chat_template(_messages(turns), tokenize=False)
    return format_prompt(turns[:-1], fmt) + " " + turns[-1]["content"]


def _check_format(fmt: str, tokenizer: Any = None, *, renders: bool = False) -> None:
    # Conversational rows leave the template to TRL; only rendering text needs the tokenizer.
    if fmt not in TOKEN_FORMATS:
        raise ValueError(f"unknown token format {fmt!r} (choose from {', '.join(TOKEN_FORMATS)})")
    if renders and fmt == "standard" and getattr(tokenizer, "chat_template", None) is None:
        raise ValueError(
            "token format 'standard' needs a tokenizer with a chat template; "
            "use role_markers or turn_markers for a base model"
        )


def _role(turn: dict[str, str]) -> str:
    return "user" if turn["role"] in ("human", "user") else turn["role"]


def _messages(turns: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{"role": _role(t), "content": t["content"]} for t in turns]


def _marked(turn: dict[str, str], index: int, fmt: str) -> str:
    if fmt == "role_markers":
        return f"<|{'human' if _role(turn) == 'user' else 'assistant'}|> {turn['content']}"
    return f"[TURN {index + 1}] {'Human' if _role(turn) == 'user' else 'Assistant'}: {turn['content']}"


def _assistant_marker(index: int, fmt: str) -> str:
    return "<|assistant|>" if fmt == "role_markers" else f"[TURN {index + 1}] Assistant:"


def _prompt_field(turns: list[dict[str, str]], fmt: TokenFormat, tokenizer: Any) -> str | list[dict]:
    if fmt == "standard":
        return _messages(turns)
    return format_prompt(turns, fmt, tokenizer)


def _completion_field(answer: str, fmt: TokenFormat) -> str | list[dict]:
    return [{"role": "assistant", "content": answer}] if fmt == "standard" else " " + answer


def to_sft_rows(
    convs: list[ScoredConversation],
    fmt: TokenFormat,
    tokenizer: Any = None,
    *,
    condition_on_score: bool = False,
) -> list[dict]:
    """TRL prompt-completion rows: completion = the scored answer, prompt = every turn before it.

    `standard` gives conversational rows ({"prompt": [messages], "completion": [assistant]}),
    the marker formats plain strings. `condition_on_score` prefixes each prompt with its own
    score (decision-transformer training; see `decision_transformer_prompt`). Filter by
    score first if only good answers should be imitated.
    """
    _check_format(fmt, tokenizer)
    rows = []
    for conv in convs:
        prompt = _prompt_field(conv.prompt_turns, fmt, tokenizer)
        if condition_on_score:
            prompt = decision_transformer_prompt(prompt, conv.score)
        rows.append({"prompt": prompt, "completion": _completion_field(conv.response, fmt)})
    return rows


def to_prompts(
    convs: list[ScoredConversation],
    fmt: TokenFormat,
    tokenizer: Any = None,
    *,
    target_score: float | None = None,
    dedupe: bool = True,
) -> list[dict]:
    """Prompt rows for online RL: {"prompt", "context", "reference", "reference_score"}.

    `prompt` is every turn before the scored answer (messages for `standard`, a string
    ending in the assistant marker otherwise), prefixed with `<score=target_score>` when
    given. `context` is the plain text of those turns (contents joined by blank lines),
    which reward functions receive as a keyword argument in TRL's GRPO/RLOO. `reference`
    is the rated answer, kept for evaluation. With `dedupe`, a prompt answered several
    times appears once, with its best-scored answer as reference (first one on ties).
    """
    _check_format(fmt, tokenizer)
    best: dict[str | int, ScoredConversation] = {}
    for index, conv in enumerate(convs):
        key = conv.prompt_key if dedupe else index
        if key not in best or conv.score > best[key].score:
            best[key] = conv
    rows = []
    for conv in best.values():
        prompt = _prompt_field(conv.prompt_turns, fmt, tokenizer)
        if target_score is not None:
            prompt = decision_transformer_prompt(prompt, target_score)
        rows.append(
            {
                "prompt": prompt,
                "context": "\n\n".join(t["content"] for t in conv.prompt_turns),
                "reference": conv.response,
                "reference_score": conv.score,
            }
        )
    return rows


def split_by_prompt(
    convs: list[ScoredConversation], val_fraction: float = 0.2, seed: int = 0
) -> tuple[list[ScoredConversation], list[ScoredConversation]]:
    """Seeded train/held-out split that keeps every answer to one prompt on the same side.

    Held-out prompts are never seen in training, not even with another answer, so a
    reward gain measured on them is not memorisation. Held-out gets round(prompts *
    val_fraction) prompts, at least one when there are two or more.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    keys = list(dict.fromkeys(c.prompt_key for c in convs))
    random.Random(seed).shuffle(keys)
    n_val = (
        min(len(keys) - 1, max(1, round(len(keys) * val_fraction))) if val_fraction and len(keys) > 1 else 0
    )
    held = set(keys[:n_val])
    return [c for c in convs if c.prompt_key not in held], [c for c in convs if c.prompt_key in held]


# --------------------------------------------------------------------------- techniques


def _words(conv: ScoredConversation) -> int:
    return sum(len(t["content"].split()) for t in conv.conversation)


def curriculum_order(
    convs: list[ScoredConversation], by: Literal["score", "length"] = "score"
) -> list[ScoredConversation]:
    """Easy to hard, as a new list (stable: equal keys keep their file order).

    Easy means, with by="score": a high score first (a well-rated answer is clean,
    consistent text to imitate; low-rated ones are noisy), ties broken by fewer words;
    with by="length": fewer words in the whole conversation first (shorter context and
    answer), ties broken by the higher score.
    """
    if by == "score":
        return sorted(convs, key=lambda c: (-c.score, _words(c)))
    if by == "length":
        return sorted(convs, key=lambda c: (_words(c), -c.score))
    raise ValueError(f"curriculum order by {by!r} is unknown (choose score or length)")


def decision_transformer_prompt(prompt: str | list[dict], target_score: float) -> str | list[dict]:
    """Condition a prompt on the score its answer should earn: "<score=5> " in front.

    The score is rounded to the nearest 0.5 and written without a trailing ".0"
    ("<score=4.5>", "<score=5>"), so training sees a small, repeated set of tags. Train
    with each row's own score (`to_sft_rows(condition_on_score=True)`), then ask for 5.
    A message list gets the tag at the start of its first turn; a new list is returned.
    """
    if not 0.0 <= target_score <= MAX_SCORE:
        raise ValueError(f"target_score must be in [0, {MAX_SCORE:g}], got {target_score}")
    tag = f"<score={round(target_score * 2) / 2:g}> "
    if isinstance(prompt, str):
        return tag + prompt
    if not prompt:
        raise ValueError("cannot condition an empty message list")
    first = {**prompt[0], "content": tag + prompt[0]["content"]}
    return [first, *(dict(m) for m in prompt[1:])]


def _pairs(
    convs: list[ScoredConversation],
    min_gap: float,
    fmt: TokenFormat,
    tokenizer: Any,
    max_per_prompt: int | None,
) -> list[dict]:
    if not min_gap > 0:
        raise ValueError(f"min_gap must be > 0 (equal scores say nothing about preference), got {min_gap}")
    _check_format(fmt, tokenizer)
    groups: dict[str, list[ScoredConversation]] = {}
    for conv in convs:
        groups.setdefault(conv.prompt_key, []).append(conv)
    rows = []
    for group in groups.values():
        found = [
            (hi.score - lo.score, i, j)
            for i, hi in enumerate(group)
            for j, lo in enumerate(group)
            if hi.score - lo.score >= min_gap and hi.response != lo.response
        ]
        found.sort(key=lambda t: (-t[0], t[1], t[2]))
        for gap, i, j in found[:max_per_prompt]:
            hi, lo = group[i], group[j]
            rows.append(
                {
                    "prompt": _prompt_field(hi.prompt_turns, fmt, tokenizer),
                    "chosen": _completion_field(hi.response, fmt),
                    "rejected": _completion_field(lo.response, fmt),
                    "chosen_score": hi.score,
                    "rejected_score": lo.score,
                    "margin": gap / MAX_SCORE,
                }
            )
    return rows


def score_pairs(
    convs: list[ScoredConversation],
    min_gap: float = 1.0,
    *,
    fmt: TokenFormat = "standard",
    tokenizer: Any = None,
    max_per_prompt: int | None = None,
) -> list[dict]:
    """Preference pairs for TRL's RewardTrainer, from answers to the SAME prompt.

    Every two answers to one prompt (same `prompt_key`) whose scores differ by at least
    `min_gap` give a row {prompt, chosen (higher), rejected (lower), chosen_score,
    rejected_score, margin = gap / 5}; RewardTrainer uses `margin` in its loss when the
    column is there. Answers to different prompts are never paired, even similar ones:
    a good answer to another question is not a better answer to this one. Rows are
    grouped by prompt (first appearance), widest gap first; `max_per_prompt` keeps the
    widest ones. `fmt` "standard" gives conversational rows, the marker formats strings.
    """
    return _pairs(convs, min_gap, fmt, tokenizer, max_per_prompt)


def contrastive_pairs(
    convs: list[ScoredConversation],
    min_gap: float = 2.0,
    *,
    fmt: TokenFormat = "standard",
    tokenizer: Any = None,
    max_per_prompt: int | None = None,
) -> list[dict]:
    """High- vs low-scored answers to the same prompt, for contrastive training.

    The rule is `score_pairs`'s with a wider default gap (2 points on the 0-5 scale), so
    each pair contrasts a clearly good answer with a clearly bad one.
    """
    return _pairs(convs, min_gap, fmt, tokenizer, max_per_prompt)


def self_critique_rows(
    convs: list[ScoredConversation],
    fmt: TokenFormat = "standard",
    tokenizer: Any = None,
    *,
    max_score: float = 3.0,
    min_gap: float = 1.0,
) -> list[dict]:
    """SFT rows that teach critique-then-revise, built from rated answers and their reasons.

    For each answer scored <= `max_score` that has a score_reason, the prompt is the
    original turns + that answer + a human turn asking for a critique (CRITIQUE_REQUEST),
    and the completion is "Critique: <score_reason>" followed, when another answer to the
    same prompt scores at least `min_gap` higher, by "\\n\\nRevised answer: <best answer>".
    Rows carry `score` (of the critiqued answer) and `revised` (whether a revision is in).
    """
    _check_format(fmt, tokenizer)
    best: dict[str, ScoredConversation] = {}
    for conv in convs:
        if conv.prompt_key not in best or conv.score > best[conv.prompt_key].score:
            best[conv.prompt_key] = conv
    rows = []
    for conv in convs:
        if conv.score > max_score or not conv.reason:
            continue
        turns = [*conv.conversation, {"role": "human", "content": CRITIQUE_REQUEST}]
        better = best[conv.prompt_key]
        revised = better.score - conv.score >= min_gap
        text = f"Critique: {conv.reason}" + (f"\n\nRevised answer: {better.response}" if revised else "")
        rows.append(
            {
                "prompt": _prompt_field(turns, fmt, tokenizer),
                "completion": _completion_field(text, fmt),
                "score": conv.score,
                "revised": revised,
            }
        )
    return rows
