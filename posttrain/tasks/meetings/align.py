"""meetings as an align task (`tasks.base.AlignTask`, seed 002): a direct predictor and scripted
tool-using demos that answer after 0-3 calls for SFT, scripted trajectories ranked by reward as
synthetic pairs, agent rollouts scored by `calibrated_reward`, and held-out scenarios beside two
references.

Figures per held-out scenario: `accuracy` (prediction on the outcome's side of 0.5; a reply that
does not parse counts as wrong), `brier` (an unparsed reply counts as 0.5), `parse_rate`, and for
the tool-using agent `mean_tool_calls`, `calls_2_to_5` and, where the loop forces an answer at
the step cap, `forced` (the share of answers it forced). Two modes: `direct_*` (the SFT predictor
reads the scenario text) and `agent_*` (the model gathers the features with tools).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from posttrain.tasks.base import Conversation, TrainingData
from posttrain.tasks.episodes import episode_record, trajectory_stats
from posttrain.tasks.meetings.agent import (
    meetings_agent_prompt,
    meetings_system_prompt,
    run_meetings_agent,
    trajectory_messages,
)
from posttrain.tasks.meetings.data import build_preference_pairs, sft_rows, trace_record
from posttrain.tasks.meetings.reward import calibrated_reward, parse_prediction
from posttrain.tasks.meetings.scenario import Scenario, generate_scenarios
from posttrain.tasks.meetings.trajectories import demo_trajectory, scripted_trajectories
from posttrain.tasks.metrics import Figure, figure
from posttrain.toolcall import Generate, Tool


def _correct(pred: float | None, outcome: int) -> bool:
    return pred is not None and int(pred > 0.5) == int(outcome)


def meetings_metrics(
    preds: Sequence[float | None],
    scenarios: Sequence[Scenario],
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


def meetings_references(train_outcomes: Sequence[int], scenarios: Sequence[Scenario]) -> dict[str, Figure]:
    """The majority-class baseline (majority of the training outcomes), the Brier score of
    forecasting the training success rate every time (the majority baseline as a probability:
    a model's Brier below it says its probabilities carry information), and the noise-free oracle."""
    majority = int(2 * sum(train_outcomes) >= len(train_outcomes))
    rate = sum(train_outcomes) / len(train_outcomes)
    return {
        "majority_baseline": figure([s.outcome == majority for s in scenarios]),
        "majority_baseline_brier": figure([(rate - s.outcome) ** 2 for s in scenarios]),
        "oracle_accuracy": figure([_correct(s.clean_prob, s.outcome) for s in scenarios]),
    }


def direct_prompt(scenario: Scenario) -> list[dict[str, str]]:
    return sft_rows([scenario])[0]["prompt"]


def evaluate_meetings(
    generate: Generate,
    scenarios: Sequence[Scenario],
    system: str,
    max_steps: int,
    modes: Sequence[str] = ("direct", "agent"),
    force_answer: bool = False,
) -> tuple[dict[str, Figure], list[dict]]:
    """Direct prediction from the text and/or the tool-using agent, on held-out scenarios;
    `force_answer` as in `run_meetings_agent`, adding `agent_forced` and a `forced` per record."""
    figs: dict[str, Figure] = {}
    records: list[dict] = [{"scenario_id": s.scenario_id, "outcome": s.outcome} for s in scenarios]
    if "direct" in modes:
        texts = generate([direct_prompt(s) for s in scenarios])
        preds = [p[0] if (p := parse_prediction(t)) else None for t in texts]
        figs |= meetings_metrics(preds, scenarios, prefix="direct_")
        for rec, t, p in zip(records, texts, preds, strict=True):
            rec |= {"direct_output": t, "direct_prediction": p}
    if "agent" in modes:
        trajs, _ = run_meetings_agent(generate, scenarios, system, max_steps, "eval", force_answer)
        preds = [t.probability for t in trajs]
        figs |= meetings_metrics(preds, scenarios, [len(t.tool_calls) for t in trajs], prefix="agent_")
        for rec, t in zip(records, trajs, strict=True):
            rec |= {"agent_text": t.text, "agent_prediction": t.probability}
        if force_answer:
            figs["agent_forced"] = figure([t.meta["forced"] for t in trajs])
            for rec, t in zip(records, trajs, strict=True):
                rec["forced"] = t.meta["forced"]
    return figs, records


class MeetingsAlign:
    """The meetings task of `posttrain align`: predict whether a conference meeting succeeds."""

    name = "meetings"

    def __init__(self, force_answer: bool = True) -> None:
        # Rollouts and evaluation force the answer at the step cap (align's
        # rollouts/evaluation.force_answer); False runs the loop as it was before the cap.
        self.force_answer = force_answer

    headline = ("heldout", "agent_accuracy")
    split_titles = {"heldout": "meetings, held-out"}
    plot_metrics = ("direct_accuracy", "agent_accuracy")

    def derived_seeds(self, data_seed: int) -> dict[str, int]:
        return {"data.seed + 1 (synthetic pairs)": data_seed + 1}

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
        """`rows` direct-prediction conversations and `demos` scripted agent episodes that answer
        after 0-3 calls (`demo_trajectory`), shuffled (`pool_rows`, `user_tools` and `user_rows`
        do not apply); synthetic pairs rank four scripted trajectories per scenario of seed + 1 by
        `calibrated_reward`."""
        system = meetings_system_prompt(compact)
        scenarios = generate_scenarios(rows + demos, seed)
        direct, agent = scenarios[:rows], scenarios[rows:]
        rng = random.Random(seed)
        conversations: list[Conversation] = [r["prompt"] + r["completion"] for r in sft_rows(direct)]
        conversations += [
            meetings_agent_prompt(s, system) + trajectory_messages(demo_trajectory(s, rng)) for s in agent
        ]
        rng.shuffle(conversations)
        val_n = min(val_rows, len(conversations) // 5)
        return TrainingData(
            system=system,
            sft_train=conversations[: len(conversations) - val_n],
            sft_val=conversations[len(conversations) - val_n :],
            synthetic_pairs=self._synthetic_pairs(synthetic_pairs, seed, min_margin, system),
            train_outcomes=[s.outcome for s in direct] or [s.outcome for s in scenarios],
        )

    def _synthetic_pairs(self, n: int, seed: int, min_margin: float, system: str) -> list[dict[str, Any]]:
        scenarios = generate_scenarios(max(n, 1), seed + 1)
        scripted = scripted_trajectories(scenarios, per_scenario=4, seed=seed)
        by_text = {t.text: t for t in scripted}
        by_id = {s.scenario_id: s for s in scenarios}
        return [
            {
                "source": "synthetic",
                "id": p["scenario_id"],
                "prompt": meetings_agent_prompt(by_id[p["scenario_id"]], system),
                "chosen": trajectory_messages(by_text[p["chosen"]]),
                "rejected": trajectory_messages(by_text[p["rejected"]]),
                "chosen_reward": p["chosen_reward"],
                "rejected_reward": p["rejected_reward"],
                "margin": p["margin"],
            }
            for p in build_preference_pairs(scripted, scenarios, min_margin, calibrated_reward)
        ][:n]

    def rollout_prompts(self, n: int, seed: int, compact: bool) -> list[dict[str, Any]]:
        system = meetings_system_prompt(compact)
        return [
            {"id": s.scenario_id, "prompt": meetings_agent_prompt(s, system), "scenario": s}
            for s in generate_scenarios(n, seed)
        ]

    def rollouts(
        self, prompts: Sequence[dict[str, Any]], generate: Generate, max_steps: int, policy: str
    ) -> list[dict[str, Any]]:
        """Agent episodes on each prompt's scenario, recorded by `trace_record` and rewarded by
        `calibrated_reward`."""
        scenarios = [p["scenario"] for p in prompts]
        system = prompts[0]["prompt"][0]["content"] if prompts else ""
        trajs, episodes = run_meetings_agent(
            generate, scenarios, system, max_steps, policy, self.force_answer
        )
        traces = []
        for p, s, traj, ep in zip(prompts, scenarios, trajs, episodes, strict=True):
            rec = trace_record(traj, s, calibrated_reward)
            rec |= {
                "prompt_id": p["id"],
                "prompt": p["prompt"],
                "messages": ep.messages[len(p["prompt"]) :],
                "steps": episode_record(ep),
                "status": ep.status,
                "final_answer": traj.final_text,
            }
            traces.append(rec)
        return traces

    def trajectory_stats(self, traces: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """The shared stats, plus the share of answers the loop forced (None when it did not)."""
        stats = trajectory_stats(traces, calls_2_to_5=True)
        forced = [t["forced"] for t in traces if "forced" in t]
        stats["forced"] = figure(forced).as_dict() if forced else None
        return stats

    gate_metrics: tuple[str, ...] = ()

    def gate_sets(self, seed: int, size: int) -> dict[str, Any]:
        return {}  # no gate yet: the agent's accuracy is the figure under study, not a selector

    def eval_size(self, episodes: int, scenarios: int, items: int = 0) -> int:
        return scenarios

    def eval_sets(self, seed: int, size: int, compact: bool) -> dict[str, Any]:
        """{heldout: `size` scenarios}."""
        return {"heldout": generate_scenarios(size, seed)}

    def evaluate(
        self, generate: Generate, sets: dict[str, Any], max_steps: int, compact: bool
    ) -> tuple[dict[str, dict[str, Figure]], dict[str, list[dict[str, Any]]]]:
        """`evaluate_meetings` (direct and agent) per split."""
        system = meetings_system_prompt(compact)
        figs: dict[str, dict[str, Figure]] = {}
        records: dict[str, list[dict[str, Any]]] = {}
        for split, scenarios in sets.items():
            figs[split], records[split] = evaluate_meetings(
                generate, scenarios, system, max_steps, force_answer=self.force_answer
            )
        return figs, records

    def references(self, train_outcomes: Sequence[int], sets: dict[str, Any]) -> dict[str, Figure]:
        """Majority baseline (accuracy and Brier) and oracle on the held-out scenarios."""
        return meetings_references(train_outcomes, sets["heldout"])
