"""Knowledge self-edits: the prompt that asks for one, and the training sequences it becomes."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from posttrain.tasks.knowledge.passages import Passage, passage_text

SelfEditKind = Literal["implications", "questions_answers", "rewrite", "facts"]
SELF_EDIT_KINDS: tuple[str, ...] = ("implications", "questions_answers", "rewrite", "facts")

# Compact on purpose: the default generator is a 135M model with a short context. "Full
# names, never pronouns" matters because each line is trained on as a standalone sequence.
_SELF_EDIT_INSTRUCTIONS = {
    "implications": "List the implications of this passage: the facts it states and what follows from them.",
    "questions_answers": "Write questions about this passage with their answers, one pair per line "
    'as "Q: ... A: ...".',
    "rewrite": "Rewrite this passage in several different ways.",
    "facts": "List every fact in this passage as a short sentence.",
}
_ONE_PER_LINE = "Write one per line. Use full names, never pronouns."


def self_edit_prompt(passage: Passage, kind: SelfEditKind = "implications") -> list[dict]:
    """Chat messages asking the generator for a self-edit of `kind` (see SELF_EDIT_KINDS)."""
    if kind not in _SELF_EDIT_INSTRUCTIONS:
        raise ValueError(f"unknown self-edit kind {kind!r} (expected one of {SELF_EDIT_KINDS})")
    content = f"{_SELF_EDIT_INSTRUCTIONS[kind]} {_ONE_PER_LINE}\n\n{passage_text(passage)}"
    return [{"role": "user", "content": content}]


create_self_edit_prompt = self_edit_prompt

# A list marker followed by whitespace: "1." "2)" "(3)" "-" "*" "•" "a)" "#". Numbers need
# 1-3 digits and trailing space so "1.5 million" and "1823 saw ..." keep their numbers; letters
# only as "a)" so an initial ("A. Smith") or "Q." survives.
_MARKER = re.compile(r"^\s*(?:[-*•+]+|#+|\(?\d{1,3}[.)\]:]|\(\d{1,3}\)|\(?[a-z]\))\s+")
_QUESTION = re.compile(r"^(?:Q|Question)\s*\d*\s*[:.]", re.IGNORECASE)
_ANSWER = re.compile(r"^(?:A|Answer)\s*\d*\s*[:.]", re.IGNORECASE)
_INLINE_ANSWER = re.compile(r"\b(?:A|Answer)\s*\d*\s*:", re.IGNORECASE)


def _clean_line(line: str) -> str:
    line = line.strip()
    while True:
        stripped = _MARKER.sub("", line, count=1)
        if stripped == line:
            break
        line = stripped.strip()
    return line.replace("**", "").strip()


def self_edit_to_sequences(
    passage: Passage, completion: str, kind: SelfEditKind = "implications"
) -> list[str]:
    """Training sequences from a self-edit: one per non-empty line, then the passage itself.

    List markers (numbers, bullets) are stripped; lines with no letter or digit, header
    lines ending in ":" ("Implications:") and exact repeats are dropped. For
    questions_answers a "Q: ..." line followed by an "A: ..." line becomes one sequence,
    since either half alone teaches nothing. The passage is always the last sequence (the
    paper trains on it alongside the self-edit), so the result is never empty.
    """
    lines = [_clean_line(raw) for raw in completion.splitlines()]
    lines = [x for x in lines if any(ch.isalnum() for ch in x) and not x.endswith(":")]
    if kind == "questions_answers":
        merged: list[str] = []
        for line in lines:
            if (
                merged
                and _ANSWER.match(line)
                and _QUESTION.match(merged[-1])
                and not _INLINE_ANSWER.search(merged[-1])
            ):
                merged[-1] = f"{merged[-1]} {line}"
            else:
                merged.append(line)
        lines = merged
    whole = passage_text(passage)
    sequences = list(dict.fromkeys(x for x in lines if x != whole and x != passage.context))
    return [*sequences, whole]


def sequences_to_rows(seqs: Sequence[str]) -> list[dict]:
    """Rows for the inner LoRA update: TRL language-modelling rows `{"text": seq}`.

    Plain text with no chat template, and the loss is on every token: the update is
    continued pretraining on the self-edit, as in the paper, not instruction tuning. TRL's
    SFTTrainer appends EOS to each row; a hand-written loop should do the same.
    """
    return [{"text": s} for s in seqs if s.strip()]
