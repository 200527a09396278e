"""The align tasks by name: what `posttrain align` and `posttrain eval` look a `--task` up in."""

from __future__ import annotations

from typing import Literal

from posttrain.errors import ConfigError
from posttrain.models import load_tokenizer
from posttrain.tasks.base import AlignTask
from posttrain.tasks.meetings.align import MeetingsAlign
from posttrain.tasks.tool_use.align import ToolUseAlign
from posttrain.tasks.tool_use.chat_format import chat_tool_format
from posttrain.toolcall.relevance import GateScorer, RelevanceGate
from posttrain.toolcall.rerank import check_rerank_scorer

ALIGN_TASKS: dict[str, AlignTask] = {"tool_use": ToolUseAlign(), "meetings": MeetingsAlign()}


def align_task(
    name: str,
    tool_format: str = "react",
    model: str | None = None,
    force_answer: bool = True,
    constrained: bool = False,
    relevance_gate: float | Literal["auto"] | None = None,
    rerank: bool = False,
    gate_scorer: GateScorer = "model",
    gate_keep: float = 0.9,
    rerank_scorer: GateScorer = "model",
    rerank_policy: float = 0.0,
) -> AlignTask:
    """The task called `name`; ConfigError naming the known ones otherwise. `tool_format`
    "chat_template" gives tool_use bound to `model`'s chat-template tool format (its tokenizer is
    loaded and checked here, before any model loads). `force_answer=False` gives meetings with
    the free ReAct loop (no answer forced at the step cap). `constrained` gives tool_use whose
    function-pool turns are decoded inside their tools' grammar (Thought→Action only), narrowed by
    a `RelevanceGate` at `relevance_gate` when given, scored by `gate_scorer` (the evaluated model,
    its base, or a scorer the run trains) and, when "auto", calibrated to keep `gate_keep` of
    validation calls. `rerank` gives tool_use whose function-pool calls have their arguments
    re-read (`toolcall.rerank`; Thought→Action only) through `rerank_scorer`'s channel, and with
    `rerank_policy` > 0 the evaluated model's likelihood of them at that weight."""
    if name not in ALIGN_TASKS:
        raise ConfigError(f"unknown align task '{name}': pick one of {', '.join(ALIGN_TASKS)}")
    if constrained and (name != "tool_use" or tool_format != "react"):
        raise ConfigError(
            "constrained decoding applies to --task tool_use in the Thought→Action format only "
            "(a chat template's tool format cannot mark a plain answer)"
        )
    if relevance_gate is not None and not constrained:
        raise ConfigError(
            "evaluation.relevance_gate acts through the grammar: set evaluation.constrained too"
        )
    if gate_scorer == "trained" and relevance_gate is None:
        raise ConfigError(
            "evaluation.relevance_gate_scorer trained trains a scorer for the relevance gate: set "
            "evaluation.relevance_gate too (auto, or a threshold)"
        )
    if rerank and (name != "tool_use" or tool_format != "react"):
        raise ConfigError(
            "evaluation.rerank_arguments applies to --task tool_use in the Thought→Action format only"
        )
    check_rerank_scorer(rerank, rerank_scorer, gate_scorer, relevance_gate)
    if rerank_policy and not rerank:
        raise ConfigError(
            "evaluation.rerank_policy_weight weighs the argument rerank: set rerank_arguments too"
        )
    if name == "meetings" and not force_answer:
        return MeetingsAlign(force_answer=False)
    if constrained or rerank:
        gate = (
            RelevanceGate(relevance_gate, gate_scorer)
            if isinstance(relevance_gate, float | int)
            else relevance_gate
        )
        return ToolUseAlign(
            constrained=constrained,
            gate=gate,
            rerank=rerank,
            gate_scorer=gate_scorer,
            gate_keep=gate_keep,
            rerank_scorer=rerank_scorer,
            rerank_policy=rerank_policy,
        )
    if tool_format == "react":
        return ALIGN_TASKS[name]
    if name != "tool_use" or model is None:
        raise ConfigError(f"data.tool_format={tool_format} applies to --task tool_use only; use react")
    return ToolUseAlign(chat_tool_format(load_tokenizer(model), model))
