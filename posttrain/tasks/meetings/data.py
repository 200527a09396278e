"""Data rows and files: seed 002's CSV, SFT rows (phase 1), DPO preference pairs (phase 3)
and agent_traces.json."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from posttrain.errors import DataError
from posttrain.tasks.meetings.checklist import checklist, scenario_lines
from posttrain.tasks.meetings.reward import CalibratedReward, RewardBreakdown, calculate_reward
from posttrain.tasks.meetings.scenario import Scenario, input_text
from posttrain.tasks.meetings.trajectories import ANSWER_SHAPE, Trajectory, final_answer

# How a trajectory is scored: seed 002's `calculate_reward` or align's `calibrated_reward`.
RewardFn = Callable[[Trajectory, Scenario], RewardBreakdown | CalibratedReward]

CSV_COLUMNS = (
    "input_text",
    "target_probability",
    "target_reason",
    "ground_truth_prob",
    "scenario_id",
    "outcome",
)


def csv_row(s: Scenario) -> dict[str, Any]:
    return {
        "input_text": input_text(s),
        "target_probability": round(s.clean_prob, 4),
        "target_reason": s.reason,
        "ground_truth_prob": round(s.ground_truth_prob, 4),
        "scenario_id": s.scenario_id,
        "outcome": s.outcome,
    }


def write_csv(path: str | Path, scenarios: Sequence[Scenario]) -> None:
    """Seed 002's `sft_training_data.csv` columns, plus `scenario_id` and `outcome`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(csv_row(s) for s in scenarios)


def read_csv(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a meetings CSV (ours or seed 002's own), numbers parsed; only the seed's four
    columns are required. Raises `DataError` naming the line and field."""
    path = Path(path)
    rows = []
    with path.open(newline="", encoding="utf-8") as f:
        for line, raw in enumerate(csv.DictReader(f), start=2):
            row: dict[str, Any] = dict(raw)
            for col in CSV_COLUMNS[:4]:
                if not row.get(col):
                    raise DataError(str(path), line, col, f"is missing (expected columns {CSV_COLUMNS[:4]})")
            for col in ("target_probability", "ground_truth_prob"):
                try:
                    row[col] = float(row[col])
                except ValueError:
                    raise DataError(str(path), line, col, f"is not a number: {row[col]!r}") from None
                if not 0.0 <= row[col] <= 1.0:
                    raise DataError(str(path), line, col, f"must be in [0, 1], got {row[col]}")
            if row.get("outcome") not in (None, ""):
                row["outcome"] = int(row["outcome"])
            rows.append(row)
    return rows


def build_preference_pairs(
    trajectories: Sequence[Trajectory],
    scenarios: Sequence[Scenario],
    min_margin: float,
    reward: RewardFn = calculate_reward,
) -> list[dict[str, Any]]:
    """Pairs from the same scenario: best vs worst, second best vs second worst, ..., each kept
    only if the rewards differ by at least `min_margin` and the texts differ. Every trajectory is
    used at most once, so no single trace dominates the DPO data."""
    by_id = {s.scenario_id: s for s in scenarios}
    groups: dict[str, list[tuple[float, Trajectory]]] = defaultdict(list)
    for t in trajectories:
        groups[t.scenario_id].append((reward(t, by_id[t.scenario_id]).total, t))
    pairs = []
    for sid, group in groups.items():
        group.sort(key=lambda rt: rt[0], reverse=True)
        for i in range(len(group) // 2):
            (r_hi, hi), (r_lo, lo) = group[i], group[-1 - i]
            if r_hi - r_lo < min_margin or hi.text == lo.text:
                continue
            pairs.append(
                {
                    "prompt": hi.prompt,
                    "chosen": hi.text,
                    "rejected": lo.text,
                    "scenario_id": sid,
                    "chosen_reward": round(r_hi, 4),
                    "rejected_reward": round(r_lo, 4),
                    "margin": round(r_hi - r_lo, 4),
                }
            )
    return pairs


def trace_record(
    traj: Trajectory, scenario: Scenario | None = None, reward: RewardFn = calculate_reward
) -> dict[str, Any]:
    """One entry of agent_traces.json; with the scenario it also carries truth and reward, and
    `forced` where the loop forced the answer (`agent.run_meetings_agent`)."""
    rec: dict[str, Any] = {
        "scenario_id": traj.scenario_id,
        "policy": traj.policy,
        "initial_user_prompt": traj.prompt,
        "tool_calls": [
            {"tool": c.name, "args": c.args, "observation": c.observation, "error": c.error}
            for c in traj.tool_calls
        ],
        "tools_used": sorted({c.name for c in traj.tool_calls}),
        "num_tool_calls": len(traj.tool_calls),
        "predicted_probability": traj.probability,
        "reason": traj.reason,
        "final_answer": traj.final_text,
        "text": traj.text,
    }
    if "forced" in traj.meta:
        rec["forced"] = bool(traj.meta["forced"])
    if scenario is not None:
        pred = traj.probability
        rec |= {
            "ground_truth_prob": round(scenario.ground_truth_prob, 4),
            "true_outcome": "YES" if scenario.outcome else "NO",
            "agent_outcome": None if pred is None else ("YES" if pred > 0.5 else "NO"),
            "correct": pred is not None and int(pred > 0.5) == scenario.outcome,
            "reward": reward(traj, scenario).as_dict(),
        }
    return rec


def _write_json(path: str | Path, obj: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2), encoding="utf-8")
    tmp.replace(path)  # never leave a half-written file under the real name


def save_traces(
    path: str | Path, trajectories: Sequence[Trajectory], scenarios: Sequence[Scenario] | None = None
) -> None:
    """Write agent_traces.json: a list of `trace_record`s (with rewards when scenarios are given)."""
    by_id = {s.scenario_id: s for s in scenarios or ()}
    _write_json(path, [trace_record(t, by_id.get(t.scenario_id)) for t in trajectories])


def save_pairs(path: str | Path, pairs: Sequence[dict[str, Any]]) -> None:
    """Write preference_pairs.json: a list of {prompt, chosen, rejected, scenario_id, rewards}."""
    _write_json(path, list(pairs))


# ---------------------------------------------------------------- SFT rows

SFT_INSTRUCTION = f"\nWill this meeting succeed? Reply as {ANSWER_SHAPE}"


def direct_completion(s: Scenario) -> str:
    """The checklist of the scenario's terms (checklist.py says why), then the answer."""
    return f"{checklist(scenario_lines(s))}\n{final_answer(s.clean_prob, s.reason)}"


def sft_rows(scenarios: Sequence[Scenario]) -> list[dict[str, Any]]:
    """TRL conversational prompt-completion rows. The target is the noise-free probability
    (2 decimals), not the realised outcome or the noisy probability: the noise is unobservable,
    so the expected probability is the best any reader of the text can say, and training on it
    avoids teaching the model to fit noise."""
    return [
        {
            "prompt": [{"role": "user", "content": input_text(s) + SFT_INSTRUCTION}],
            "completion": [{"role": "assistant", "content": direct_completion(s)}],
        }
        for s in scenarios
    ]
