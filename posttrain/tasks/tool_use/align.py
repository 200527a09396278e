"""tool_use as an align task (`tasks.base.AlignTask`): ReAct episodes of the five executable tools
and requests from the function pool's training families for SFT, defective turns of both as
synthetic pairs, rollouts of both rewarded by the scorer, and evaluation on unseen tool families
(AST accuracy, the headline), seen families, and ReAct episodes in distribution and with unseen
tools (task success).

With `data.tool_format: chat_template` (a `ChatToolFormat` given to `ToolUseAlign`) the
function-pool and user-tool rows are written and read in the model's own chat-template tool
format (`chat_format`); the five tools' ReAct episodes stay Thought→Action."""

from __future__ import annotations

import random
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from posttrain.tasks.base import Conversation, TrainingData
from posttrain.tasks.episodes import episode_record, system_prompt, trajectory_stats
from posttrain.tasks.metrics import Figure, figure
from posttrain.tasks.tool_use.chat_format import ChatToolFormat
from posttrain.tasks.tool_use.data import generate_tool_use_data
from posttrain.tasks.tool_use.metrics import tool_use_trajectory_reward, tool_use_turn_metrics
from posttrain.tasks.tool_use.pool_align import (
    POOL_SPLITS,
    SCORER_CHANNELS,
    calibrated_gate,
    evaluate_pool,
    pool_eval_sets,
    pool_rollout_prompts,
    pool_rollouts,
    pool_training,
    scoring_channel,
)
from posttrain.tasks.tool_use.pool_rows import pool_rows
from posttrain.tasks.tool_use.registry import Split, build_registry
from posttrain.tasks.tool_use.relevance_data import relevance_examples
from posttrain.tasks.tool_use.scoring import answer_matches
from posttrain.tasks.tool_use.user_rows import user_tool_rows
from posttrain.toolcall import Generate, Tool, run_react
from posttrain.toolcall.relevance import GateScorer, RelevanceExample, RelevanceGate, memoized

TOOL_SPLITS: dict[str, Split] = {"indist": "train", "heldout": "heldout"}
"""Evaluation split -> generator split: in-distribution reuses the training tools and templates
with new values (and the fixed list of no-tool prompts); heldout adds unseen tools, templates and
no-tool prompts."""


def tool_use_system_prompt(split: Split, compact: bool) -> str:
    """The system prompt listing a generator split's tools ("train" or "heldout")."""
    with tempfile.TemporaryDirectory(prefix="posttrain-tools-") as tmp:
        schemas = build_registry(split, Path(tmp)).schemas()
    return system_prompt(schemas, compact)


def with_system_prompt(rows: list[dict], text: str) -> list[dict]:
    """Copies of tool_use rows whose system message reads `text` (the rows carry the full prompt)."""
    out = []
    for row in rows:
        prompt = [dict(m) for m in row["prompt"]]
        if prompt and prompt[0]["role"] == "system":
            prompt[0]["content"] = text
        out.append({**row, "prompt": prompt})
    return out


def select_episodes(rows: Sequence[dict], episodes: int) -> list[dict]:
    """All rows of the first `episodes` complete episodes (rows are generated episode by episode)."""
    by_ep: dict[int, list[dict]] = {}
    for row in rows:
        by_ep.setdefault(row["episode"], []).append(row)
    complete = [rs for rs in by_ep.values() if rs[-1]["gold"] is None]  # ends with its Final Answer
    return [r for rs in complete[:episodes] for r in rs]


def tool_use_episode_rows(split: Split, seed: int, episodes: int, compact: bool) -> list[dict]:
    """All rows of `episodes` whole episodes of a generator split, with the chosen system prompt."""
    n = episodes * 4 + 8
    while True:
        rows = select_episodes(generate_tool_use_data(n, seed, split), episodes)
        if len({r["episode"] for r in rows}) >= episodes:
            return with_system_prompt(rows, tool_use_system_prompt(split, compact))
        n *= 2


def tool_use_first_turns(split: Split, seed: int, episodes: int, compact: bool) -> list[dict]:
    """The step-0 rows (prompt alone, gold first turn, gold answer) of `episodes` episodes."""
    return [r for r in tool_use_episode_rows(split, seed, episodes, compact) if r["step"] == 0]


def evaluate_tool_use(
    generate: Generate, rows: Sequence[dict], split: Split, max_steps: int
) -> tuple[dict[str, Figure], list[dict]]:
    """Run every episode that starts at a step-0 row of `rows` freely through the ReAct loop with a
    `split`'s tools ("train" or "heldout"); score its first turn (`TOOL_USE_METRICS`) and its end
    (`task_accuracy`). Returns figures and one record per episode.

    Only first turns are scored per turn: a later prompt would hold gold turns in its history,
    which a base model copies in context, so its format numbers would measure the history and not
    the model. Multi-step skill shows in `task_accuracy`. A fresh calendar per call keeps one
    model's writes out of the next one's evaluation.
    """
    starts = [r for r in rows if r["step"] == 0]
    with tempfile.TemporaryDirectory(prefix="posttrain-eval-") as tmp:
        registry = build_registry(split, Path(tmp))
        episodes = run_react([r["prompt"] for r in starts], registry, generate, max_steps)
        first = [ep.steps[0].raw for ep in episodes]
        figs = tool_use_turn_metrics(first, starts, registry)
    solved = [
        ep.status == "final" and answer_matches(ep.final_answer, r["gold_answer"])
        for r, ep in zip(starts, episodes, strict=True)
    ]
    figs["task_accuracy"] = figure(solved)
    records = [
        {
            "id": r["id"],
            "task": r["task"],
            "expected": r["completion"],
            "first_turn": text,
            "steps": episode_record(ep),
            "status": ep.status,
            "final_answer": ep.final_answer,
            "gold_answer": r["gold_answer"],
            "solved": ok,
        }
        for r, ep, text, ok in zip(starts, episodes, first, solved, strict=True)
    ]
    return figs, records


def _round_robin(rows: list[dict], key: str) -> list[dict]:
    """Rows interleaved across their `key` values (first of each, then second of each, ...), so a
    capped selection covers every defect, rare ones (a tool call where none is needed) included."""
    groups: dict[Any, list[dict]] = {}
    for row in rows:
        groups.setdefault(row[key], []).append(row)
    out = []
    for i in range(max((len(g) for g in groups.values()), default=0)):
        out += [g[i] for g in groups.values() if i < len(g)]
    return out


def _alternate(first: list[dict], second: list[dict]) -> list[dict]:
    """One of each in turn while both last, then the rest of the longer."""
    out = [x for pair in zip(first, second, strict=False) for x in pair]
    n = min(len(first), len(second))
    return out + first[n:] + second[n:]


def _assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


class ToolUseAlign:
    """The tool_use task of `posttrain align` (seed 004): calculator, search and calendar tools."""

    name = "tool_use"
    headline = ("unseen_families", "ast_accuracy")
    split_titles = {
        "unseen_families": "tool_use, tool families never trained on (AST accuracy is the headline)",
        "seen_families": "tool_use, training tool families, new requests",
        "indist": "tool_use ReAct episodes, in-distribution (training tools, new values)",
        "heldout": "tool_use ReAct episodes, held-out tools and templates",
    }
    plot_metrics = (
        "ast_accuracy",
        "must_call_rate",
        "irrelevance_accuracy",
        "format_validity",
        "full_compliance",
        "task_accuracy",
    )

    def __init__(
        self,
        chat_format: ChatToolFormat | None = None,
        constrained: bool = False,
        gate: RelevanceGate | Literal["auto"] | None = None,
        rerank: bool = False,
        gate_scorer: GateScorer = "model",
        gate_keep: float = 0.9,
        rerank_scorer: GateScorer = "model",
        rerank_policy: float = 0.0,
    ) -> None:
        self.chat_format = chat_format  # None: pool rows in Thought→Action (seed 004's format)
        self.constrained = constrained  # pool turns decoded inside their tools' grammar
        # with `constrained`: the grammar narrowed to the request's tool, or none; "auto": the
        # threshold calibrated for each evaluated model (`calibrated_gate`) by `gate_scorer`,
        # keeping `gate_keep` of the validation calls
        self.gate = gate
        self.gate_scorer = gate_scorer
        self.gate_keep = gate_keep
        self.rerank = rerank  # each pool call's arguments re-read (toolcall.rerank) ...
        self.rerank_scorer = rerank_scorer  # ... through this scorer's channel
        self.rerank_policy = rerank_policy  # ... and the model's own likelihood at this weight
        # a base- or trained-scored gate's calibration, and the base or trained channel's scores,
        # are the same for every evaluated model: found once, the scores kept per scorer and
        # (prefix, request) pair (`_sharing_scores`)
        self._shared_gate: tuple[RelevanceGate, dict[str, Any]] | None = None
        self._shared_scores: dict[str, dict[tuple[str, str], float]] = {}

    def derived_seeds(self, data_seed: int) -> dict[str, int]:
        return {}

    def training_data(
        self,
        *,
        rows: int,
        demos: int,
        val_rows: int,
        seed: int,
        compact: bool,
        synthetic_pairs: int,
        min_margin: float,
        pool_rows: int = 0,
        user_tools: Sequence[Tool] = (),
        user_rows: int = 0,
    ) -> TrainingData:
        """Whole ReAct training episodes (`rows` turns) and `pool_rows` function-pool requests as
        SFT conversations, shuffled together; preference rows of both (one defect each, every
        defect in turn, the two sources alternating) as synthetic pairs. `demos` and `min_margin`
        do not apply."""
        system = tool_use_system_prompt("train", compact)
        data = with_system_prompt(generate_tool_use_data(rows, seed, "train"), system)
        by_episode: dict[int, dict] = {}
        for row in data:  # the last row of an episode holds every earlier turn in its prompt
            by_episode[row["episode"]] = row
        conversations: list[Conversation] = [
            r["prompt"] + [_assistant(r["completion"])] for r in by_episode.values()
        ]
        pool_conversations, pool_pairs = (
            pool_training(pool_rows, seed, fmt=self.chat_format) if pool_rows else ([], [])
        )
        if user_tools and user_rows:
            mine, my_pairs = pool_training(
                user_rows, seed, user_tool_rows(user_tools, user_rows, seed), self.chat_format
            )
            pool_conversations += mine
            pool_pairs += my_pairs
        conversations += pool_conversations
        random.Random(f"tool_use/sft/{seed}").shuffle(conversations)
        val_n = min(val_rows, len(conversations) // 5)
        react_pairs = [
            {
                "source": "synthetic",
                "id": r["id"],
                "defect": r["defect"],
                "prompt": r["prompt"],
                "chosen": [_assistant(r["chosen"])],
                "rejected": [_assistant(r["rejected"])],
            }
            for r in _round_robin([r for r in data if r["kind"] == "preference"], key="defect")
        ]
        synthetic = _alternate(_round_robin(pool_pairs, key="defect"), react_pairs)[:synthetic_pairs]
        return TrainingData(
            system=system,
            sft_train=conversations[: len(conversations) - val_n],
            sft_val=conversations[len(conversations) - val_n :],
            synthetic_pairs=synthetic,
        )

    def rollout_prompts(self, n: int, seed: int, compact: bool) -> list[dict[str, Any]]:
        """A quarter (at least one) ReAct episodes of the training tools, the rest function-pool
        requests of the training families: unseen-tool skill is what the pairs must teach."""
        react = max(1, n // 4)
        rows = tool_use_first_turns("train", seed, react, compact)
        prompts = [{"id": r["id"], "prompt": r["prompt"], "gold_answer": r["gold_answer"]} for r in rows]
        return prompts + pool_rollout_prompts(n - react, seed, self.chat_format)

    def rollouts(
        self, prompts: Sequence[dict[str, Any]], generate: Generate, max_steps: int, policy: str
    ) -> list[dict[str, Any]]:
        """ReAct episodes on the training tools (a fresh calendar per batch), rewarded by
        `tool_use_trajectory_reward`, and one-turn replies to pool requests, rewarded by
        `pool_reward`; traces in the order of `prompts`."""
        pool = [p for p in prompts if "pool_row" in p]
        react = [p for p in prompts if "pool_row" not in p]
        # By position, not by id: the sampled pass repeats each prompt k - 1 times.
        pool_traces = iter(pool_rollouts(pool, generate, policy))
        react_traces = iter(self._react_rollouts(react, generate, max_steps, policy))
        return [next(pool_traces) if "pool_row" in p else next(react_traces) for p in prompts]

    def _react_rollouts(
        self, prompts: Sequence[dict[str, Any]], generate: Generate, max_steps: int, policy: str
    ) -> list[dict[str, Any]]:
        if not prompts:
            return []
        with tempfile.TemporaryDirectory(prefix="posttrain-rollouts-") as tmp:
            registry = build_registry("train", Path(tmp))
            episodes = run_react([p["prompt"] for p in prompts], registry, generate, max_steps)
        traces = []
        for p, ep in zip(prompts, episodes, strict=True):
            reward = tool_use_trajectory_reward(ep, p["gold_answer"])
            traces.append(
                {
                    "prompt_id": p["id"],
                    "policy": policy,
                    "prompt": p["prompt"],
                    "messages": ep.messages[len(p["prompt"]) :],
                    "steps": episode_record(ep),
                    "num_tool_calls": len(ep.tool_calls),
                    "status": ep.status,
                    "final_answer": ep.final_answer,
                    "gold_answer": p["gold_answer"],
                    "correct": ep.status == "final" and answer_matches(ep.final_answer, p["gold_answer"]),
                    "reward": {"total": round(reward, 4)},
                }
            )
        return traces

    def trajectory_stats(self, traces: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return trajectory_stats(traces, calls_2_to_5=False)

    gate_metrics = ("ast_accuracy", "must_call_rate")

    def gate_sets(self, seed: int, size: int) -> dict[str, Any]:
        """{validation_families: `size` requests of `VALIDATION_FAMILIES`}."""
        return {"validation_families": pool_rows(size, seed, "validation")}

    def eval_size(self, episodes: int, scenarios: int, items: int = 0) -> tuple[int, int]:
        return episodes, items or episodes

    def eval_sets(self, seed: int, size: int | tuple[int, int], compact: bool) -> dict[str, Any]:
        """{unseen_families, seen_families}: `items` pool requests each; {indist, heldout}:
        first-turn rows of `episodes` ReAct episodes each. `size` is (episodes, items), or one
        number for both."""
        episodes, items = (size, size) if isinstance(size, int) else size
        sets: dict[str, Any] = pool_eval_sets(seed, items)
        sets |= {s: tool_use_first_turns(g, seed, episodes, compact) for s, g in TOOL_SPLITS.items()}
        return sets

    def evaluate(
        self, generate: Generate, sets: dict[str, Any], max_steps: int, compact: bool
    ) -> tuple[dict[str, dict[str, Figure]], dict[str, list[dict[str, Any]]]]:
        """`evaluate_pool` on the pool splits, `evaluate_tool_use` on the ReAct ones; the rows
        carry their own system prompt. An "auto" gate is calibrated first on this model's scores
        (the records' `relevance_calibration`)."""
        figs: dict[str, dict[str, Figure]] = {}
        records: dict[str, list[dict[str, Any]]] = {}
        generate = self._sharing_scores(generate)
        gate = self.gate
        if gate == "auto" and any(split in POOL_SPLITS or split == "validation_families" for split in sets):
            gate, calibration = self._calibrated(generate)
            records["relevance_calibration"] = [calibration]
        for split, rows in sets.items():
            if split in POOL_SPLITS or split == "validation_families":
                pooled = evaluate_pool(
                    generate,
                    rows,
                    self.chat_format,
                    self.constrained,
                    gate,  # type: ignore[arg-type]
                    self.rerank,
                    self.rerank_scorer,
                    self.rerank_policy,
                )
                figs[split], records[split] = pooled
            else:
                figs[split], records[split] = evaluate_tool_use(generate, rows, TOOL_SPLITS[split], max_steps)
        return figs, records

    def _sharing_scores(self, generate: Generate) -> Generate:
        """`generate` with the base and trained channels that the gate or the argument rerank read
        answering from this run's shared scores (`memoized`): those channels score the same for
        every model of one run, so the second model reuses the first one's scores (the gate's for
        the same requests; the rerank's wherever two models wrote the same call) instead of scoring
        again. The evaluated model's own channel is never shared."""
        gate_scorer = self.gate.scorer if isinstance(self.gate, RelevanceGate) else self.gate_scorer
        used = {gate_scorer} if self.gate is not None else set()
        used |= {self.rerank_scorer} if self.rerank else set()
        named = [SCORER_CHANNELS[s] for s in sorted(used - {"model"})]  # the model's own is its own
        attributes = [a for a in named if hasattr(generate, a)]
        if not attributes:
            return generate

        def shared(*args: Any, **kwargs: Any) -> Any:
            return generate(*args, **kwargs)

        shared.__dict__.update(generate.__dict__)
        for attribute in attributes:
            memo = self._shared_scores.setdefault(attribute, {})
            setattr(shared, attribute, memoized(getattr(generate, attribute), memo))
        return shared  # type: ignore[return-value]

    def _calibrated(self, generate: Generate) -> tuple[RelevanceGate, dict[str, Any]]:
        channel = scoring_channel(generate, self.gate_scorer)
        if self.gate_scorer == "model":
            return calibrated_gate(channel, min_pass=self.gate_keep)
        if self._shared_gate is None:
            self._shared_gate = calibrated_gate(channel, min_pass=self.gate_keep, scorer=self.gate_scorer)
        return self._shared_gate

    def relevance_examples(self, rows: int, seed: int) -> list[RelevanceExample]:
        """What a trained gate scorer is fitted on: `rows` requests of the training families not
        held back for its threshold (`relevance_data`)."""
        return relevance_examples(rows, seed)

    def references(self, train_outcomes: Sequence[int], sets: dict[str, Any]) -> dict[str, Figure]:
        return {}
