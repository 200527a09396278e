"""Metrics of the align tasks (tool_use, meetings), each figure with n and a bootstrap 95% CI,
the rewards that rank trajectories, and the evaluation runners both `posttrain align` and
`posttrain eval` call.

Runners take a `generate` callable (conversations -> texts, see `agents.toolcall.Generate`), not
a model, so this module never loads one.

tool_use, per scored turn (a held-out prompt, the model's reply `t`, the gold first turn; in
`posttrain align`/`eval` the first turn of each held-out episode, see `evaluate_tool_use`):

| figure | over | counts a turn when |
|---|---|---|
| `full_compliance` | every turn | `t` is a valid call or a well-formed final answer (toolcall's definition) |
| `thought_prefix_rate` | every turn | `t` starts with `Thought: <reasoning>` |
| `json_validity` | turns whose gold is a call | the Action block holds a `{"tool", "args"}` JSON object |
| `hallucinated_tool_rate` | turns where `t` calls a tool | the tool is not in the registry (None: no calls) |
| `tool_choice_accuracy` | turns whose gold is a call | `t` calls the gold tool |
| `argument_accuracy` | turns whose gold is a call | BFCL AST match: schema-valid, values as the gold's |
| `irrelevance_accuracy` | first turns of prompts that need no tool | `t` has no Action (BFCL: no call) |
| `task_accuracy` | episodes run freely | the ReAct loop ends in a Final Answer carrying the gold |

`task_accuracy` runs each episode freely to its end, so it is the multi-step number.

meetings, per held-out scenario: `accuracy` (prediction on the outcome's side of 0.5; a reply that
does not parse counts as wrong), `brier` (an unparsed reply counts as 0.5), `parse_rate`, and for
the tool-using agent `mean_tool_calls` and `calls_2_to_5`. Two modes: `direct_*` (the SFT
predictor reads the scenario text) and `agent_*` (the model gathers the features with tools).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from posttrain.agents.toolcall import (
    Episode,
    Generate,
    ParseResult,
    Tool,
    ToolCall,
    ToolRegistry,
    format_call,
    parse_response,
    run_react,
    validate_args,
)
from posttrain.report import markdown_table
from posttrain.tasks import meetings as mt
from posttrain.tasks.tool_use import answer_matches, arguments_match, build_registry

N_BOOT = 1000


# --------------------------------------------------------------------------- figures


@dataclass(frozen=True)
class Figure:
    """One reported number: the mean of per-example values, their count and a 95% bootstrap CI.

    `value` and `ci` are None when `n` is 0 (nothing to measure, e.g. no tool calls at all).
    """

    value: float | None
    n: int
    ci: tuple[float, float] | None

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "n": self.n, "ci": list(self.ci) if self.ci else None}

    def __str__(self) -> str:
        if self.value is None:
            return f"- (n={self.n})"
        return f"{self.value:.3f} [{self.ci[0]:.2f}, {self.ci[1]:.2f}] n={self.n}"  # type: ignore[index]


def figure(values: Sequence[float | bool], seed: int = 0) -> Figure:
    """Mean, n and percentile-bootstrap 95% CI (1000 resamples, seeded) of `values`."""
    xs = [float(v) for v in values]
    if not xs:
        return Figure(None, 0, None)
    lo, hi = mt.bootstrap_ci(xs, n_boot=N_BOOT, seed=seed)
    return Figure(sum(xs) / len(xs), len(xs), (round(lo, 4), round(hi, 4)))


def flat(figures: dict[str, Figure], n: int | None = None) -> dict[str, Any]:
    """`{name: value, name_ci: [lo, hi], name_n: n}` per figure, plus `n` (bench JSON format)."""
    out: dict[str, Any] = {}
    for name, fig in figures.items():
        out[name] = None if fig.value is None else round(fig.value, 4)
        out[f"{name}_ci"] = list(fig.ci) if fig.ci else None
        out[f"{name}_n"] = fig.n
    if n is not None:
        out["n"] = n
    return out


# --------------------------------------------------------------------------- prompts


def compact_system_prompt(tools: Sequence[Tool | dict[str, Any]]) -> str:
    """The output format and every tool's signature in well under the tokens of
    `toolcall.format_system_prompt`: on a CPU every prompt token is paid for in every training
    row and every generated turn. String arguments show bare, others with their type; an enum
    repeated by the next argument shows once; descriptions are left out (the names carry them)."""
    signatures = []
    for tool in tools:
        fn = tool.schema()["function"] if isinstance(tool, Tool) else tool["function"]
        params = fn["parameters"]
        required = set(params.get("required", []))
        args, last_enum = [], None
        for name, spec in params.get("properties", {}).items():
            arg = name if name in required else f"{name}?"
            if "enum" in spec:
                enum = "|".join(map(str, spec["enum"]))
                arg += ": same" if enum == last_enum else f": {enum}"
                last_enum = enum
            elif spec.get("type", "string") != "string":
                arg += f": {spec['type']}"
            args.append(arg)
        signatures.append(f"{fn['name']}({', '.join(args)})")
    return (
        'Call a tool:\nThought: <reasoning>\nAction: ```json\n{"tool": "<name>", "args": {...}}\n```\n'
        "Or answer:\nThought: <reasoning>\nFinal Answer: <answer>\n"
        f"Tools: {'; '.join(signatures)}"
    )


def with_system_prompt(rows: list[dict], text: str) -> list[dict]:
    """Copies of tool_use rows whose system message reads `text` (the rows carry the full prompt)."""
    out = []
    for row in rows:
        prompt = [dict(m) for m in row["prompt"]]
        if prompt and prompt[0]["role"] == "system":
            prompt[0]["content"] = text
        out.append({**row, "prompt": prompt})
    return out


# --------------------------------------------------------------------------- tool_use scoring

TOOL_USE_METRICS = (
    "full_compliance",
    "json_validity",
    "thought_prefix_rate",
    "hallucinated_tool_rate",
    "irrelevance_accuracy",
    "tool_choice_accuracy",
    "argument_accuracy",
)


def score_turn(text: str, row: dict, registry: ToolRegistry) -> dict[str, bool | None]:
    """Per-turn indicators behind `tool_use_turn_metrics`; None where a figure does not apply."""
    p: ParseResult = parse_response(text, registry)
    gold = row.get("gold")
    calls = p.call is not None
    is_irrelevance = row.get("task") == "no_tool" and row.get("step", 0) == 0
    return {
        "full_compliance": p.compliant,
        "thought_prefix_rate": p.has_thought,
        "json_validity": (p.json_valid is True) if gold else None,
        "hallucinated_tool_rate": (p.call.name not in registry) if calls else None,  # type: ignore[union-attr]
        "tool_choice_accuracy": (calls and p.call.name == gold["name"]) if gold else None,  # type: ignore[union-attr]
        "argument_accuracy": (calls and _ast_match(gold, p.call, registry)) if gold else None,  # type: ignore[arg-type]
        "irrelevance_accuracy": (p.json_valid is None) if is_irrelevance else None,
    }


def _ast_match(gold: dict, call: ToolCall, registry: ToolRegistry) -> bool:
    """BFCL's AST check: the gold tool, its schema satisfied (required present, no extras, right
    types) and the values equal after normalisation (`tool_use.arguments_match`)."""
    tool = registry.get(call.name)
    return tool is not None and not validate_args(tool.parameters, call.args) and arguments_match(gold, call)


def tool_use_turn_metrics(texts: Sequence[str], rows: Sequence[dict], registry: ToolRegistry) -> dict:
    """Every figure of `TOOL_USE_METRICS` over the turns (see the module docstring for each)."""
    if len(texts) != len(rows):
        raise ValueError(f"{len(texts)} outputs for {len(rows)} rows")
    scores = [score_turn(t, r, registry) for t, r in zip(texts, rows, strict=True)]
    return {name: figure([s[name] for s in scores if s[name] is not None]) for name in TOOL_USE_METRICS}


def tool_use_trajectory_reward(episode: Episode, gold_answer: str) -> float:
    """Reward in [0, 1]: 0.5 x share of compliant turns + 0.5 x [Final Answer carries the gold].

    Compliance keeps the format; success keeps the tools honest (a compliant loop that never answers
    earns at most 0.5).
    """
    if not episode.steps:
        return 0.0
    compliant = sum(s.parse.compliant for s in episode.steps) / len(episode.steps)
    success = episode.status == "final" and answer_matches(episode.final_answer, gold_answer)
    return 0.5 * compliant + 0.5 * float(success)


def episode_record(episode: Episode) -> list[dict[str, Any]]:
    """The ReAct steps as JSON (for agent_traces.json and the store)."""
    steps = []
    for s in episode.steps:
        call = s.parse.call
        steps.append(
            {
                "output": s.parse.turn or s.raw,
                "kind": s.parse.kind,
                "tool": call.name if call else None,
                "args": call.args if call else None,
                "observation": s.observation,
                "tool_error": s.tool_error,
            }
        )
    return steps


# --------------------------------------------------------------------------- ReAct with a registry each


def run_react_each(
    prompts: list[list[dict[str, str]]],
    registries: Sequence[ToolRegistry],
    generate: Generate,
    max_steps: int,
) -> list[Episode]:
    """`run_react` where every prompt has its own tools (meetings binds them to one scenario).

    Still one batched `generate` per step for all unfinished episodes; each reply is then handed
    to `run_react` for one step with its own registry, so parsing, execution and observations
    follow exactly the same rules as the single-registry loop.
    """
    if len(prompts) != len(registries):
        raise ValueError(f"{len(prompts)} prompts for {len(registries)} registries")
    episodes = [Episode(messages=[dict(m) for m in p]) for p in prompts]
    for _ in range(max_steps):
        active = [i for i, ep in enumerate(episodes) if ep.status == "running"]
        if not active:
            break
        outputs = generate([list(episodes[i].messages) for i in active])
        if len(outputs) != len(active):
            raise ValueError(f"generate returned {len(outputs)} texts for {len(active)} conversations")
        for i, raw in zip(active, outputs, strict=True):
            ep = episodes[i]
            step = run_react([ep.messages], registries[i], lambda _c, raw=raw: [raw], 1)[0]
            ep.messages, ep.steps, ep.failures = (
                step.messages,
                ep.steps + step.steps,
                ep.failures + step.failures,
            )
            if step.status != "max_steps":  # one step left it running
                ep.status, ep.final_answer = step.status, step.final_answer
    for ep in episodes:
        if ep.status == "running":
            ep.status = "max_steps"
    return episodes


# --------------------------------------------------------------------------- meetings agent


def meetings_registry(scenario: mt.Scenario) -> ToolRegistry:
    """The three meetings tools bound to one scenario."""
    fns = mt.make_tools(scenario)
    specs = [s["function"] for s in mt.tool_schemas()]
    return ToolRegistry([Tool(f["name"], f["description"], f["parameters"], fns[f["name"]]) for f in specs])


def meetings_system_prompt(compact: bool) -> str:
    from posttrain.agents.toolcall import format_system_prompt

    schemas = mt.tool_schemas()
    return compact_system_prompt(schemas) if compact else format_system_prompt(schemas)


def meetings_agent_prompt(scenario: mt.Scenario, system: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": mt.agent_prompt(scenario)}]


def trajectory_messages(traj: mt.Trajectory) -> list[dict[str, str]]:
    """A (scripted) meetings trajectory as the assistant/observation turns the ReAct loop produces."""
    out = []
    for c in traj.tool_calls:
        out.append(
            {"role": "assistant", "content": format_call(c.thought or "I need more facts.", c.name, c.args)}
        )
        obs = f"Error: {c.error}" if c.error else json.dumps(c.observation, ensure_ascii=False)
        out.append({"role": "user", "content": f"Observation: {obs}"})
    out.append({"role": "assistant", "content": traj.final_text})
    return out


def episode_trajectory(episode: Episode, scenario: mt.Scenario, policy: str) -> mt.Trajectory:
    """A model's ReAct episode as a meetings `Trajectory`, so `calculate_reward` can score it."""
    calls = []
    for s in episode.steps:
        if s.parse.kind != "call" or s.parse.call is None:
            continue
        obs_text = s.observation or ""
        error = obs_text[len("Error: ") :] if s.tool_error else None
        try:
            obs = {"error": error} if error else json.loads(obs_text)
        except json.JSONDecodeError:
            obs = obs_text
        call = s.parse.call
        calls.append(mt.ToolCall(call.name, dict(call.args), obs, error, s.parse.thought or ""))
    final = episode.steps[-1].parse.turn if episode.status == "final" else ""
    pred = mt.parse_prediction(final) if final else None
    return mt.Trajectory(
        scenario_id=scenario.scenario_id,
        prompt=mt.agent_prompt(scenario),
        tool_calls=calls,
        probability=pred[0] if pred else None,
        reason=pred[1] if pred else None,
        final_text=final,
        policy=policy,
        meta={"status": episode.status, "failures": list(episode.failures)},
    )


def run_meetings_agent(
    generate: Generate, scenarios: Sequence[mt.Scenario], system: str, max_steps: int, policy: str
) -> tuple[list[mt.Trajectory], list[Episode]]:
    """One tool-using episode per scenario, batched; returns trajectories and the raw episodes."""
    episodes = run_react_each(
        [meetings_agent_prompt(s, system) for s in scenarios],
        [meetings_registry(s) for s in scenarios],
        generate,
        max_steps,
    )
    return [episode_trajectory(ep, s, policy) for ep, s in zip(episodes, scenarios, strict=True)], episodes


# --------------------------------------------------------------------------- meetings figures


def _correct(pred: float | None, outcome: int) -> bool:
    return pred is not None and int(pred > 0.5) == int(outcome)


def meetings_metrics(
    preds: Sequence[float | None],
    scenarios: Sequence[mt.Scenario],
    tool_calls: Sequence[int] | None = None,
    prefix: str = "",
) -> dict[str, Figure]:
    """accuracy, brier, parse_rate (and mean_tool_calls, calls_2_to_5 given tool-call counts)."""
    if len(preds) != len(scenarios):
        raise ValueError(f"{len(preds)} predictions for {len(scenarios)} scenarios")
    outcomes = [s.outcome for s in scenarios]
    figs = {
        f"{prefix}accuracy": figure([_correct(p, o) for p, o in zip(preds, outcomes, strict=True)]),
        f"{prefix}brier": figure(
            [((0.5 if p is None else p) - o) ** 2 for p, o in zip(preds, outcomes, strict=True)]
        ),
        f"{prefix}parse_rate": figure([p is not None for p in preds]),
    }
    if tool_calls is not None:
        figs[f"{prefix}mean_tool_calls"] = figure(list(tool_calls))
        figs[f"{prefix}calls_2_to_5"] = figure([2 <= c <= 5 for c in tool_calls])
    return figs


def meetings_references(train_outcomes: Sequence[int], scenarios: Sequence[mt.Scenario]) -> dict[str, Figure]:
    """The majority-class baseline (majority of the training outcomes) and the noise-free oracle."""
    majority = int(2 * sum(train_outcomes) >= len(train_outcomes))
    return {
        "majority_baseline": figure([s.outcome == majority for s in scenarios]),
        "oracle_accuracy": figure([_correct(s.clean_prob, s.outcome) for s in scenarios]),
    }


# --------------------------------------------------------------------------- evaluation runners


def select_episodes(rows: Sequence[dict], episodes: int) -> list[dict]:
    """All rows of the first `episodes` complete episodes (rows are generated episode by episode)."""
    by_ep: dict[int, list[dict]] = {}
    for row in rows:
        by_ep.setdefault(row["episode"], []).append(row)
    complete = [rs for rs in by_ep.values() if rs[-1]["gold"] is None]  # ends with its Final Answer
    return [r for rs in complete[:episodes] for r in rs]


def evaluate_tool_use(
    generate: Generate, rows: Sequence[dict], split: str, max_steps: int
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
        registry = build_registry(split, Path(tmp))  # type: ignore[arg-type]
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


def direct_prompt(scenario: mt.Scenario) -> list[dict[str, str]]:
    return mt.sft_rows([scenario])[0]["prompt"]


def evaluate_meetings(
    generate: Generate,
    scenarios: Sequence[mt.Scenario],
    system: str,
    max_steps: int,
    modes: Sequence[str] = ("direct", "agent"),
) -> tuple[dict[str, Figure], list[dict]]:
    """Direct prediction from the text and/or the tool-using agent, on held-out scenarios."""
    figs: dict[str, Figure] = {}
    records: list[dict] = [{"scenario_id": s.scenario_id, "outcome": s.outcome} for s in scenarios]
    if "direct" in modes:
        texts = generate([direct_prompt(s) for s in scenarios])
        preds = [p[0] if (p := mt.parse_prediction(t)) else None for t in texts]
        figs |= meetings_metrics(preds, scenarios, prefix="direct_")
        for rec, t, p in zip(records, texts, preds, strict=True):
            rec |= {"direct_output": t, "direct_prediction": p}
    if "agent" in modes:
        trajs, _ = run_meetings_agent(generate, scenarios, system, max_steps, "eval")
        preds = [t.probability for t in trajs]
        figs |= meetings_metrics(preds, scenarios, [len(t.tool_calls) for t in trajs], prefix="agent_")
        for rec, t in zip(records, trajs, strict=True):
            rec |= {"agent_text": t.text, "agent_prediction": t.probability}
    return figs, records


def evaluate_on_task(
    generate: Generate, task: str, data: dict[str, Any], system: str, max_steps: int
) -> tuple[dict[str, dict[str, Figure]], dict[str, list[dict]]]:
    """Figures and records per split: tool_use `data` = {split: rows}, meetings = {"heldout": scenarios}."""
    figs: dict[str, dict[str, Figure]] = {}
    records: dict[str, list[dict]] = {}
    for split, items in data.items():
        if task == "tool_use":
            figs[split], records[split] = evaluate_tool_use(generate, items, TOOL_SPLITS[split], max_steps)
        else:
            figs[split], records[split] = evaluate_meetings(generate, items, system, max_steps)
    return figs, records


# --------------------------------------------------------------------------- tables


def format_figure(fig: dict[str, Any] | None) -> str:
    """`0.950 [0.88, 0.99] n=40` from a `Figure.as_dict()`; `- (n=0)` when there is nothing."""
    if not fig or fig["value"] is None:
        return f"- (n={fig['n'] if fig else 0})"
    lo, hi = fig["ci"]
    return f"{fig['value']:.3f} [{lo:.2f}, {hi:.2f}] n={fig['n']}"


def eval_tables(results: dict[str, Any], task: str) -> str:
    """Markdown: one table per split, rows base/SFT/DPO (+ references for meetings)."""
    titles = {
        "indist": "tool_use, in-distribution (training tools, new values)",
        "heldout": "tool_use, held-out tools and templates" if task == "tool_use" else "meetings, held-out",
    }
    parts = []
    for split, by_model in results["splits"].items():
        metrics = list(next(iter(by_model.values())))
        rows = [[name] + [format_figure(figs.get(m)) for m in metrics] for name, figs in by_model.items()]
        for ref, fig in results.get("references", {}).items():
            rows.append([ref] + [format_figure(fig) if m.endswith("accuracy") else "" for m in metrics])
        parts.append(f"### {titles.get(split, split)}\n\n" + markdown_table(["model", *metrics], rows))
    return "\n".join(parts)


# --------------------------------------------------------------------------- data of the align tasks

TOOL_SPLITS = {"indist": "train", "heldout": "heldout"}
"""Evaluation split -> tool_use generator split: in-distribution reuses the training tools and
templates with new values (and the fixed list of no-tool prompts); heldout adds unseen tools,
templates and no-tool prompts."""


def tool_use_system_prompt(split: str, compact: bool) -> str:
    """The system prompt listing a generator split's tools ("train" or "heldout")."""
    from posttrain.agents.toolcall import format_system_prompt

    with tempfile.TemporaryDirectory(prefix="posttrain-tools-") as tmp:
        schemas = build_registry(split, Path(tmp)).schemas()  # type: ignore[arg-type]
    return compact_system_prompt(schemas) if compact else format_system_prompt(schemas)


def tool_use_episode_rows(split: str, seed: int, episodes: int, compact: bool) -> list[dict]:
    """All rows of `episodes` whole episodes of a generator split, with the chosen system prompt."""
    from posttrain.tasks.tool_use import generate_tool_use_data

    n = episodes * 4 + 8
    while True:
        rows = select_episodes(generate_tool_use_data(n, seed, split), episodes)  # type: ignore[arg-type]
        if len({r["episode"] for r in rows}) >= episodes:
            return with_system_prompt(rows, tool_use_system_prompt(split, compact))
        n *= 2


def tool_use_first_turns(split: str, seed: int, episodes: int, compact: bool) -> list[dict]:
    """The step-0 rows (prompt alone, gold first turn, gold answer) of `episodes` episodes."""
    return [r for r in tool_use_episode_rows(split, seed, episodes, compact) if r["step"] == 0]


def eval_data(task: str, seed: int, size: int, compact: bool) -> dict[str, Any]:
    """Held-out evaluation sets: tool_use {indist, heldout}: first-turn rows of `size` episodes
    each; meetings {heldout: `size` scenarios}. `seed` must differ from every training seed."""
    if task == "tool_use":
        return {s: tool_use_first_turns(g, seed, size, compact) for s, g in TOOL_SPLITS.items()}
    return {"heldout": mt.generate_scenarios(size, seed)}


# --------------------------------------------------------------------------- running a model


def generator(
    model: Any,
    tokenizer: Any,
    max_new_tokens: int,
    batch_size: int,
    sample: tuple[float, float] | None = None,
) -> Generate:
    """A `generate` for the ReAct loop over `inference.generate_batch`: batches of `batch_size`,
    greedy, or sampled with `sample=(temperature, top_p)`."""
    from posttrain.inference import generate_batch

    temperature, top_p = sample or (1.0, 1.0)

    def generate(conversations: list[list[dict[str, str]]]) -> list[str]:
        return generate_batch(
            model,
            tokenizer,
            conversations,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            do_sample=sample is not None,
            temperature=temperature,
            top_p=top_p,
        )

    return generate


@contextlib.contextmanager
def merged(model: Any) -> Iterator[Any]:
    """Fold a PEFT model's LoRA weights into the base for generation, and back out afterwards.

    Unmerged LoRA costs extra matmuls on every projection, a real share of a 135M model's time on
    CPU. Unmerging before anything else touches the model matters: `unload()` on a merged model
    would keep the adapter baked into the base.
    """
    can = hasattr(model, "merge_adapter") and getattr(model, "peft_config", None)
    if can:
        model.merge_adapter()
    try:
        yield model
    finally:
        if can:
            model.unmerge_adapter()
