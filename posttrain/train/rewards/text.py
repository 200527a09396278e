"""The text every reward component reads: prompts and responses reduced to the words a person
would see, so chat-template markup never counts as content."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

Text = str | list[dict[str, Any]]

_STOPWORD_TEXT = """
    a about above after again all also am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has
    have having he her here hers him his how i if in into is it its itself just me more most my no
    nor not now of off on once only or other our out over own same she should so some such than that
    the their them then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours human assistant user
    system
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())

_SYSTEM_BLOCK = re.compile(
    r"<\|im_start\|>system.*?<\|im_end\|>|<\|start_header_id\|>system<\|end_header_id\|>.*?<\|eot_id\|>",
    re.DOTALL,
)
_ROLE_HEADER = re.compile(
    r"<\|im_start\|>\w+\n?|<\|start_header_id\|>\w+<\|end_header_id\|>\n*|\[TURN \d+\] (?:Human|Assistant):"
)
_SPECIAL = re.compile(r"<\|[^|<>\s]{1,40}\|>|<score=[^>]{0,8}>")


def plain_text(value: Text) -> str:
    """The words a person would read: message contents joined, template markup removed."""
    if isinstance(value, list):
        value = "\n".join(str(m.get("content", "")) for m in value if m.get("role") != "system")
    return _SPECIAL.sub(" ", _ROLE_HEADER.sub("\n", _SYSTEM_BLOCK.sub(" ", value)))


def words(text: str) -> list[str]:
    """Lowercased alphanumeric runs: the unit n-grams and TF-IDF terms are built from."""
    return re.findall(r"[a-z0-9]+", text.lower())


def _stem(word: str) -> str:
    # Plurals only: enough to match "apples" with "apple" without a stemmer's surprises.
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def terms(text: str) -> list[str]:
    """Content words (stopwords dropped, plurals folded): what TF-IDF compares."""
    return [_stem(w) for w in words(text) if w not in STOPWORDS and (len(w) > 1 or w.isdigit())]


def check_pairs(prompts: Sequence[Text], responses: Sequence[Text]) -> None:
    """Raise ValueError unless every response has its prompt: zip would drop the extras silently."""
    if len(prompts) != len(responses):
        raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
