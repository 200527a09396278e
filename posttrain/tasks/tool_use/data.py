"""SFT and preference rows from episode plans, and their JSONL files."""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path
from typing import Any

from posttrain.errors import DataError
from posttrain.tasks.tool_use.defects import CALL_DEFECTS, FINAL_DEFECTS, rejected_turn
from posttrain.tasks.tool_use.plans import PLANNERS, Env, Plan
from posttrain.tasks.tool_use.registry import Split, build_registry
from posttrain.tasks.tool_use.tools.calendar import Calendar
from posttrain.toolcall import ToolCall, format_call, format_final, format_system_prompt


def generate_tool_use_data(
    n: int, seed: int, split: Split = "train", pref_fraction: float = 0.5
) -> list[dict]:
    """`n` rows of SFT and preference data for `split`, deterministic for a seed.

    Each episode (a prompt plus its gold tool calls, executed for real to get the observations)
    yields one row per assistant turn: turn i's `prompt` holds the system message, the user turn
    and the earlier turns with their `Observation:` replies, so SFT learns every step.
    Row fields: `id`, `split`, `kind` ("sft" | "preference"), `task`, `template`, `episode`,
    `step`, `tools` (schemas), `prompt` (messages), `completion` (the chosen turn), `gold`
    ({name, args[, doc_id]} of the expected call, None when the turn should be a Final Answer),
    `gold_answer` (what the episode's final answer must carry, see `answer_matches`); preference
    rows add `chosen` (= completion), `rejected` (exactly one defect) and `defect` (one of
    `DEFECTS`). A fraction `pref_fraction` of turns become preference rows.
    """
    if n < 0 or not 0 <= pref_fraction <= 1:
        raise ValueError("n must be >= 0 and pref_fraction in [0, 1]")
    rng = random.Random(f"tool_use/{split}/{seed}")
    planners, weights = zip(*PLANNERS[split], strict=True)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="posttrain-tool-use-") as tmp:
        registry = build_registry(split, Path(tmp))
        env = Env(registry, Calendar(Path(tmp) / "calendar.sqlite"))
        schemas = registry.schemas()
        system = format_system_prompt(schemas)
        episode = 0
        while len(rows) < n:
            plan = rng.choices(planners, weights)[0](rng, split, env)
            rows += _episode_rows(plan, episode, env, rng, split, schemas, system, pref_fraction)
            episode += 1
    for i, row in enumerate(rows[:n]):
        row["id"] = f"tool_use-{split}-{seed}-{i:05d}"
    return rows[:n]


def _episode_rows(
    plan: Plan,
    episode: int,
    env: Env,
    rng: random.Random,
    split: Split,
    schemas: list[dict[str, Any]],
    system: str,
    pref_fraction: float,
) -> list[dict]:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": plan.user}]
    rows = []
    for step in range(len(plan.calls) + 1):
        is_call = step < len(plan.calls)
        if is_call:
            call = plan.calls[step]
            chosen = format_call(call.thought, call.name, call.args)
            gold: dict[str, Any] | None = {"name": call.name, "args": call.args}
            if call.doc_id:
                gold["doc_id"] = call.doc_id
        else:
            chosen, gold = format_final(plan.final_thought, plan.answer), None
        row = {
            "id": "",
            "split": split,
            "kind": "sft",
            "task": plan.task,
            "template": plan.template,
            "episode": episode,
            "step": step,
            "tools": schemas,
            "prompt": [dict(m) for m in messages],
            "completion": chosen,
            "gold": gold,
            "gold_answer": plan.gold_answer,
        }
        if rng.random() < pref_fraction:
            defect = rng.choice(CALL_DEFECTS if is_call else FINAL_DEFECTS)
            rejected = rejected_turn(defect, plan, step, env.registry, rng)
            row.update(kind="preference", chosen=chosen, rejected=rejected, defect=defect)
        rows.append(row)
        if is_call:
            observation, ok = env.registry.execute_checked(ToolCall(call.name, call.args))
            if not ok:  # a generator bug, not a user error: gold calls must run
                raise RuntimeError(f"gold call {call} failed: {observation}")
            messages += [
                {"role": "assistant", "content": chosen},
                {"role": "user", "content": f"Observation: {observation}"},
            ]
    return rows


def write_tool_use_data(path: Path | str, n: int, seed: int, split: Split = "train") -> Path:
    """Write `generate_tool_use_data(n, seed, split)` as JSONL; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = generate_tool_use_data(n, seed, split)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


_REQUIRED = ("id", "split", "kind", "tools", "prompt", "completion", "gold", "gold_answer")


def read_tool_use_data(path: Path | str) -> list[dict]:
    """Read rows written by `write_tool_use_data`; raises `DataError` naming the line and field."""
    rows = []
    for line_no, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(str(path), line_no, None, f"invalid JSON ({err.msg})") from err
        if not isinstance(row, dict):
            raise DataError(str(path), line_no, None, "is not a JSON object (expected a tool_use row)")
        for key in _REQUIRED + (("chosen", "rejected", "defect") if row.get("kind") == "preference" else ()):
            if key not in row:
                raise DataError(
                    str(path), line_no, key, "is missing (expected a tool_use row, see write_tool_use_data)"
                )
        rows.append(row)
    return rows
