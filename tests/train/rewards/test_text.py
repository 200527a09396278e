"""Prompts and responses reduced to the words a person reads."""

from __future__ import annotations

from posttrain.tasks.conversations import format_prompt
from posttrain.train.rewards import plain_text


def test_plain_text_strips_chat_template_and_markers(tiny_tokenizer):
    prompt = format_prompt([{"role": "human", "content": "Hi there"}], "standard", tiny_tokenizer)
    assert plain_text(prompt).split() == ["Hi", "there"]  # system prompt, role headers and tokens gone
    assert plain_text("<score=5> <|human|> Hi\n<|assistant|>").split() == ["Hi"]
    assert plain_text([{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}]) == "Hi"
