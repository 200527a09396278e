"""Which arguments a call should carry, re-read by the model as a noisy channel.

Why: with the right tool chosen (the relevance gate) and the arguments schema-valid (the grammar),
a tuned smollm2-135m still gets the arguments wrong on about half of its calls to tool families it
never saw, and the mistakes are local: an optional argument the request never mentions filled in
anyway (`"state": "single"`, `"after_date": "2022-01-01"`), the wrong one of the request's numbers
(`"num_nights": 20` from "13 nights ... 2026-10-20"), two arguments swapped (`from_unit` and
`to_unit`), the other enum value (`"hemisphere": "southern"`). Greedy decoding commits to each
token left to right; re-reading the whole call does not. A call's candidates are its single edits
(drop an optional argument, another enum value, another number the request names, two arguments of
one type swapped), every one schema-valid, and the model keeps the one under which the request is
likeliest: mean log P(request | "Tool: ... \\nCall: name(arg=value, ...)\\nA request for this call: "),
the reviewer of Coder-Reviewer reranking (Zhang et al. 2022), the channel direction of Min et al. 2022.

Measured on 150 requests of posttrain's validation tool families (never the reported ones), a
400-row SFT adapter, constrained and gated decoding: AST 49/108 greedy -> 67/108 reranked by the
adapter's own channel (64 by the base model's, 65 by the policy's own likelihood of each edited
reply, 68 both summed; some candidate right: 81). Sampling four replies and reranking those
instead reached 58, at five times the generation cost (bench/results/align_quality.json,
variant `rerank_arguments_sft400`). Out of sample it buys less: on the held-out families of the
align bench (200 requests), the SFT model's AST went 0.36 -> 0.42 and the base model's 0.13 ->
0.25 (variant `bench-tool_use-small-20261206-102250 (partial)`).

The channel alone keeps a filled-in optional argument or a number used twice when the request
reads about as likely either way, so each candidate also loses `UNGROUNDED_PENALTY` for every value
the request does not name (`ungrounded`), and a misspelt string gets the request's own words as a
candidate (`request_span`). Same adapter and greedy replies, reranked by its own channel: 68 -> 73
of 108 calls right on the validation families, 50 -> 53 of 111 on 150 fresh training-family
requests (variant `rerank_grounding_sft400`).

What the channel still got wrong then was mostly a value of the request in the wrong slot or
left out: so an optional argument the request names is also added (`optional_additions`), a free
string can take another of the request's names (`name_replacements`), and two more things count
as ungrounded: an optional enum value the request never spells out (`unnamed_choice`) and a
string whose shape its parameter rules out (`misformatted`). Each added one at a time, through the
base model's channel (the preset's), on the greedy calls of a 400-row SFT adapter (lr 2e-3):
validation families 59 -> 62 -> 63 -> 64 -> 66 of 100 calls right, 100 fresh training-family
requests 60 -> 62 -> 63 -> 64 -> 65 (bench/tool_rerank_additions.py, variant `rerank_more_edits`).

The channel reads the request, not the call, so it is blind to what only the call's own wording
shows: two same-shaped values in each other's slot, an optional boolean asked for in other words.
The policy can add the coder's half of Coder-Reviewer: its own mean log-likelihood of each
candidate's arguments after the request, at `POLICY_WEIGHT` beside the channel (`PolicyScore`).
Over every candidate it also adds optional arguments nobody asked for, so it judges only the
candidates that keep the call's own arguments (values, swaps) and whether to add or drop one stays
the channel's. On 100 validation and 100 training-family calls, then 200 + 200 fresh ones, of
400-row SFT adapters: 66 -> 70 and 65 -> 65, then 110 -> 112 and 104 -> 108 of 200 calls right
(bench/tool_rerank_judges.py, variants `rerank_judges` and `rerank_judges_fresh`). Reading the
whole prompt for each candidate, it took about twice the rerank's scoring time there;
`inference.channel_logprobs` now reads a prompt its candidates share once (3.13x faster on
those pairs, bench/channel_scoring.py).

What is left is mostly out of the edits' reach, and what is in reach the two scores cannot
tell apart. On those 200 + 200 fresh calls some candidate is right for 128 and 123 (the judge
picks 112 and 108), and none of 576 linear mixes of the scores passes 112 on validation. Span
edits of free strings ("dentist" -> "Dentist appointment") would reach 0 and 5 more calls and,
judged by the channel, lose 61 on validation families, since it prefers whichever span copies
more of the request (bench/tool_rerank_reach.py, variants `rerank_reach`, `rerank_span_edits`).
"""

from __future__ import annotations

import difflib
import itertools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from posttrain.errors import ConfigError
from posttrain.toolcall.format import format_call
from posttrain.toolcall.parse import parse_response
from posttrain.toolcall.relevance import ChannelScore, tool_line
from posttrain.toolcall.schema import validate_args
from posttrain.toolcall.spec import Tool

_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?")

UNGROUNDED_PENALTY = 0.3
"""Nats per request token a candidate loses for each value the request does not name
(`ungrounded`). Soft, so a channel that strongly prefers a normalised value ("New York" for
"NYC") still gets it; on the validation set of the module docstring any weight from 0.1 to 100
gave the same 73/108, 0.05 gave 71."""


POLICY_WEIGHT = 0.5
"""What the policy's likelihood of a candidate's arguments weighs beside the channel (module
docstring): 69, 72 and 69 of 100 validation-family calls right at 0.25, 0.5 and 1 over every
candidate (the channel alone: 66); over same-argument candidates 0.25 and 0.5 tied on 200 + 200
fresh calls, and 1 fell one call behind on each."""

PolicyScore = Callable[[Sequence[tuple[int, Tool, str, Sequence[Mapping[str, Any]]]]], list[list[float]]]
"""For each (reply index, called tool, the reply's Thought, candidate arguments), the policy's
mean log-likelihood of each candidate's arguments as its reply would write them, in one call so
it can batch them (`tasks.tool_use.user_eval.policy_scorer`)."""


def call_prefix(tool: Tool, args: Mapping[str, Any]) -> str:
    """The text a request is scored after for one candidate call of `tool`."""
    written = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in args.items())
    return f"{tool_line(tool)}\nCall: {tool.name}({written})\nA request for this call: "


def request_numbers(request: str) -> list[int | float]:
    """The numbers a request names, in order, once each (thousands separators read, "3.0" as 3)."""
    found: list[int | float] = []
    for text in _NUMBER.findall(re.sub(r"(?<=\d),(?=\d{3}\b)", "", request)):
        value = float(text)
        number: int | float = int(value) if value.is_integer() else value
        if number not in found:
            found.append(number)
    return found


def request_span(value: str, request: str, cutoff: float = 0.6) -> str | None:
    """The run of the request's words most like `value` (a misspelt "Nurship Cam" -> "Nursery Cam",
    "living_room" -> "living room"), or None when none is at least `cutoff` alike or `value` is
    already in the request. Spans of one word fewer to two more than `value` has."""
    if not value or value.lower() in request.lower():
        return None
    words = request.split()
    size = len(value.replace("_", " ").split())
    best, best_ratio = None, cutoff
    for n in range(max(1, size - 1), size + 3):
        for i in range(len(words) - n + 1):
            span = " ".join(words[i : i + n]).strip(".,;:!?\"'()")
            ratio = difflib.SequenceMatcher(None, value.lower(), span.lower()).ratio()
            if ratio > best_ratio:
                best, best_ratio = span, ratio
    return best


_NAMED = re.compile(
    r"\b\d{4}-\d{2}-\d{2}\b|\b\d{1,2}:\d{2}\b|[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
    r"|[A-Z][\w'&-]*(?: (?:of |de |la |the )?[A-Z][\w'&-]*)*"
)

_OPENER_WORDS = (
    "a an any are book calculate can check compute convert could create did do does email"
    " find get give how i i'm is it list look make my need play please remind schedule search"
    " send set show summarize tell the translate turn we we're what what's when where which"
    " who will would"
)
_OPENERS = frozenset(_OPENER_WORDS.split())


def request_names(request: str) -> list[str]:
    """The strings a request spells out that a free-string argument may take, in order, once
    each: dates, times, e-mail addresses and runs of capitalised words ("Cape Town", "Florida").
    A run that opens a sentence drops a first word a request commonly opens with (`_OPENERS`:
    "Is Casa Albero" -> "Casa Albero"), and a lone word opening a sentence counts only with a
    digit in it (an id: "HX-10394 cancelled"): otherwise it is mostly a verb ("Cancel", "Next").
    "I" is never a name."""
    found: list[str] = []
    for match in _NAMED.finditer(request):
        text = match.group(0)
        before = request[: match.start()].rstrip()
        if not before or before[-1] in ".!?":
            first, _, rest = text.partition(" ")
            if first.lower() in _OPENERS:
                text = rest
            elif not rest and not any(c.isdigit() for c in text):
                text = ""
        if text and text != "I" and text not in found:
            found.append(text)
    return found


def _mentioned(option: Any, request: str) -> bool:
    text = str(option).lower().replace("_", " ")
    return bool(text) and re.search(rf"(?<!\w){re.escape(text)}(?!\w)", request.lower()) is not None


def optional_additions(tool: Tool, args: Mapping[str, Any], request: str) -> list[dict[str, Any]]:
    """`args` with one optional argument it leaves out added, for each value the request names
    that the argument could take: an enum value the request spells out, a number of the request
    no argument holds yet, a name, date, time or address of the request (`request_names`) for a
    free string, and `true` for a boolean (a request says a flag in words, not as a value).
    Why: a tuned 135M model leaves out an optional argument the request asks for ("in Florida",
    "extended", "Coordinates too please"), and dropping was the only optional edit
    `argument_edits` made before."""
    schema = tool.parameters if isinstance(tool.parameters, dict) else {}
    properties = schema.get("properties", {})
    required = set(schema.get("required", []))
    held = [v for v in args.values() if isinstance(v, int | float | str) and not isinstance(v, bool)]
    numbers = [n for n in request_numbers(request) if n not in held]
    names = [n for n in request_names(request) if n not in held]
    out: list[dict[str, Any]] = []
    for name, spec in properties.items():
        if name in args or name in required or not isinstance(spec, dict):
            continue
        kind = spec.get("type")
        if isinstance(spec.get("enum"), list):
            values: list[Any] = [o for o in spec["enum"] if _mentioned(o, request)]
        elif kind == "boolean":
            values = [True]
        elif kind == "integer":
            values = [n for n in numbers if isinstance(n, int)]
        elif kind == "number":
            values = list(numbers)
        elif kind == "string":
            values = names
        else:
            values = []
        out += [dict(args) | {name: v} for v in values]
    return out


def unnamed_choice(value: Any, request: str) -> bool:
    """Whether an optional enum's value is one the request does not spell out (`"aspect":
    "cleanliness"` for "Is Hotel Nordlys any good?"). Why count it: left out, an optional enum
    takes the tool's default, and a tuned 135M model fills one in from nowhere on about one call
    in ten of validation families (`"hemisphere": "northern"` for "Meteor shower peaks 2026")."""
    return not _mentioned(value, request)


_FORMATS = {
    "date": re.compile(r"\d{4}-\d{2}-\d{2}"),
    "time": re.compile(r"\d{1,2}:\d{2}(?::\d{2})?"),
    "date-time": re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{1,2}:\d{2}.*"),
    "email": re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+"),
}
_FORMAT_HINTS = (
    ("date", re.compile(r"YYYY-MM-DD(?![T ]?HH)")),
    ("time", re.compile(r"(?<!DD[T ])HH:MM")),
    ("email", re.compile(r"\be-?mail address|^e-?mail of\b", re.IGNORECASE)),
)


def misformatted(spec: Mapping[str, Any], value: Any) -> bool:
    """Whether a string is not in the shape its parameter asks for: JSON Schema's `format`
    (date, time, date-time, email) or, where a spec has none, the shape its description names
    ("Check-in date, YYYY-MM-DD.", "Desired check-out time, HH:MM."). Why: the channel cannot tell
    which slot a request's value belongs in (`"confirmation_code": "13:00", "checkout_time":
    "HX-10394"` scores about as well as the right way round), and the shape can."""
    if not isinstance(value, str):
        return False
    kind = spec.get("format")
    if kind not in _FORMATS:
        description = str(spec.get("description", ""))
        kind = next((k for k, hint in _FORMAT_HINTS if hint.search(description)), None)
    return kind is not None and _FORMATS[kind].fullmatch(value) is None


def ungrounded(tool: Tool, args: Mapping[str, Any], request: str) -> int:
    """How many of a call's values the request does not name: a number not among its numbers, a
    free string (not an enum) not in its text, and every repeat of one value in a second argument
    (a request value fills one slot: `days=5, min_elevation_deg=5` from "iss Busan 5d").
    Booleans, arrays and a required enum's value are not counted: a request seldom spells them
    out; an optional enum's value is (`unnamed_choice`), and so is a string in the wrong shape
    for its parameter (`misformatted`)."""
    properties = tool.parameters.get("properties", {}) if isinstance(tool.parameters, dict) else {}
    required = tool.parameters.get("required", []) if isinstance(tool.parameters, dict) else []
    numbers = request_numbers(request)
    text = request.lower()
    count = 0
    seen: list[Any] = []
    for name, value in args.items():
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            continue
        spec = properties.get(name)
        if isinstance(spec, dict) and "enum" in spec:
            count += name not in required and unnamed_choice(value, request)
        elif isinstance(value, str):
            count += value.lower() not in text
            count += isinstance(spec, dict) and misformatted(spec, value)
        else:
            count += value not in numbers
        if isinstance(value, str):
            value = value.lower()
        count += value in seen
        seen.append(value)
    return count


def name_replacements(tool: Tool, args: Mapping[str, Any], request: str) -> list[dict[str, Any]]:
    """`args` with one free string (not an enum) replaced by another name, date, time or address
    the request spells out (`request_names`) that overlaps no other argument's string (one span
    fills one slot: not "Celtic Rangers" beside `"team_b": "Rangers"`). Why: the strings of a
    tuned 135M model's calls are in the request but in the wrong slot or span more often than
    misspelt (`"confirmation_code": "13:00"`, `"city": "Bergen 2026-07-09"` on validation
    families), and neither a swap nor `request_span` reaches the right one."""
    properties = tool.parameters.get("properties", {}) if isinstance(tool.parameters, dict) else {}
    names = request_names(request)
    out: list[dict[str, Any]] = []
    for name, value in args.items():
        spec = properties.get(name)
        if not isinstance(value, str) or (isinstance(spec, dict) and "enum" in spec):
            continue
        held = [v.lower() for k, v in args.items() if k != name and isinstance(v, str) and v]
        out += [
            dict(args) | {name: n}
            for n in names
            if n != value and not any(h in n.lower() or n.lower() in h for h in held)
        ]
    return out


def argument_edits(tool: Tool, args: Mapping[str, Any], request: str) -> list[dict[str, Any]]:
    """`args` first, then each single edit of it that the tool's schema accepts: an optional
    argument dropped, another value of an enum, another number of the request in a numeric
    argument, a free string the request does not contain replaced by the request's words most
    like it (`request_span`), two arguments of one type swapped; then all of the string fixes
    and drops of optional arguments the request does not name at once; last, a free string given
    another of the request's names (`name_replacements`) and an optional argument added with a
    value the request names (`optional_additions`). Edits only: a wrong call
    stays close to the model's own, so the model's judgment, not the edit list, decides."""
    schema = tool.parameters if isinstance(tool.parameters, dict) else {}
    properties = schema.get("properties", {})
    required = set(schema.get("required", []))
    numbers = request_numbers(request)
    edits: list[dict[str, Any]] = []
    grounded = dict(args)
    for name, value in args.items():
        spec = properties.get(name)
        spec = spec if isinstance(spec, dict) else {}
        if name not in required:
            edits.append({k: v for k, v in args.items() if k != name})
        if isinstance(spec.get("enum"), list):
            edits += [dict(args) | {name: option} for option in spec["enum"] if option != value]
        elif spec.get("type") in ("integer", "number"):
            edits += [dict(args) | {name: n} for n in numbers if n != value]
        elif isinstance(value, str) and (span := request_span(value, request)) is not None:
            edits.append(dict(args) | {name: span})
            grounded[name] = span
        if name not in required and ungrounded(tool, {name: grounded[name]}, request):
            del grounded[name]
    for a, b in itertools.combinations(args, 2):
        if type(args[a]) is type(args[b]) and args[a] != args[b]:
            edits.append(dict(args) | {a: args[b], b: args[a]})
    edits.append(grounded)
    edits += name_replacements(tool, args, request)
    edits += optional_additions(tool, args, request)
    out = [dict(args)]
    for edit in edits:
        if edit not in out and not validate_args(schema, edit):
            out.append(edit)
    return out


def rerank_replies(
    channel: ChannelScore,
    replies: Sequence[str],
    requests: Sequence[str],
    tools: Sequence[Sequence[Tool]],
    policy: PolicyScore | None = None,
    policy_weight: float = POLICY_WEIGHT,
) -> tuple[list[str], list[int]]:
    """Each reply whose call the model would rather have written otherwise, rewritten with the
    edit (`argument_edits`) under which its request scores highest; other replies (a final
    answer, a turn that is not a compliant call) unchanged. Thought→Action turns only. One
    `channel` call over every candidate, so it batches them; with `policy`, its likelihood of
    the candidates that keep the call's arguments adds at `policy_weight` (module docstring),
    and a candidate that adds or drops one gets the call's own. Returns the replies and, per
    reply, how many candidates were scored (0: not a call)."""
    calls: list[tuple[Tool, Any, list[dict[str, Any]]] | None] = []
    prefixes: list[str] = []
    targets: list[str] = []
    for reply, request, offered in zip(replies, requests, tools, strict=True):
        registry = {t.name: t for t in offered}
        parsed = parse_response(reply, registry)
        if parsed.kind != "call" or parsed.call is None:  # only a compliant call is rewritten as one
            calls.append(None)
            continue
        tool = registry[parsed.call.name]
        candidates = argument_edits(tool, parsed.call.args, request)
        calls.append((tool, parsed, candidates))
        prefixes += [call_prefix(tool, c) for c in candidates]
        targets += [request] * len(candidates)
    scores = iter(channel(prefixes, targets) if prefixes else [])
    liked = iter(_policy_terms(policy, calls) if policy is not None else [])
    out, counts = [], []
    for reply, request, call in zip(replies, requests, calls, strict=True):
        if call is None:
            out.append(reply)
            counts.append(0)
            continue
        tool, parsed, candidates = call
        own = next(liked) if policy is not None else [0.0] * len(candidates)
        scored = [
            next(scores) - UNGROUNDED_PENALTY * ungrounded(tool, c, request) + policy_weight * x
            for c, x in zip(candidates, own, strict=True)
        ]
        best = max(range(len(candidates)), key=scored.__getitem__)  # ties keep the model's own
        counts.append(len(candidates))
        out.append(reply if best == 0 else format_call(parsed.thought or "", tool.name, candidates[best]))
    return out, counts


def _policy_terms(
    policy: PolicyScore, calls: Sequence[tuple[Tool, Any, list[dict[str, Any]]] | None]
) -> list[list[float]]:
    """Per call, the policy's likelihood of each candidate that keeps the call's own arguments,
    and the call's own likelihood for one that adds or drops an argument (`rerank_replies`).
    A call whose only such candidate is itself gives every candidate the same term, so it is not
    asked and gets 0.0 (46 of 379 calls of bench/tool_rerank_judges.py's fresh draws)."""
    asked, judged = [], []
    for i, call in enumerate(calls):
        if call is not None:
            tool, parsed, candidates = call
            same = [c for c in candidates if c.keys() == candidates[0].keys()]
            judged.append(len(same) > 1)
            if judged[-1]:
                asked.append((i, tool, parsed.thought or "", same))
    found = iter(policy(asked) if asked else [])
    out = []
    for call, ask in zip(filter(None, calls), judged, strict=True):
        candidates = call[2]
        if not ask:
            out.append([0.0] * len(candidates))
            continue
        liked = iter(next(found))
        own = [next(liked) if c.keys() == candidates[0].keys() else None for c in candidates]
        out.append([own[0] if x is None else x for x in own])
    return out


def check_rerank_scorer(rerank: bool, scorer: str, gate_scorer: str, gate: object) -> None:
    """An argument rerank by the trained relevance scorer reads the one the gate loads: without a
    gate scored by it there is none (ConfigError, before any model loads)."""
    if rerank and scorer == "trained" and (gate_scorer != "trained" or gate is None):
        raise ConfigError(
            "a rerank scorer trained (evaluation.rerank_scorer, --rerank-scorer) reads the relevance "
            "gate's trained scorer: set the relevance gate and its scorer trained too"
        )
