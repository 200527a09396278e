"""The dashboard's record sections: a tune run's decision timeline (episode -> each agent's
message -> the hparams trained and whose they were -> the loss it aimed to beat and the loss
observed), SEAL self-edits with their rewards, align trajectories with theirs, and executor
task attempts.

The timeline is read from what the run recorded (episode decisions and agent messages); runs
recorded before episodes carried a rationale get it recomputed from the same records, and the
page says so.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from posttrain.agents.rationale import explain_episode, hparam_rows
from posttrain.agents.roles.base import hparam_text
from posttrain.report.html import Markup, cell, finite_number, table
from posttrain.report.svg import Series, chart
from posttrain.store.records import (
    AgentMessageRecord,
    EpisodeRecord,
    SelfEditRecord,
    TaskAttemptRecord,
    TrajectoryRecord,
)

MAX_SELF_EDITS_PER_ITERATION = 50
MAX_TRAJECTORIES = 200
SELF_EDIT_HEADERS = ("context", "sample", "reward", "score before", "score after", "kept", "self-edit")
ROLE_ORDER = ("judge", "reward_penalty", "tuner", "seal_expert", "qa_generator", "qa_evaluator")


def timeline_section(episodes: Sequence[EpisodeRecord], messages: Sequence[AgentMessageRecord]) -> str:
    """Every episode in order, then the judge's stop (an episode that never ran) if there was one."""
    by_episode: dict[int | None, list[AgentMessageRecord]] = defaultdict(list)
    for m in messages:
        by_episode[m.episode_index].append(m)
    parts = ["<h2>Decision timeline</h2>"]
    best: tuple[float, int] | None = None  # (loss, episode) of the best TRAIN before this one
    previous: dict[str, Any] | None = None
    for e in episodes:
        parts.append(_episode_block(e, previous, best, by_episode.get(e.index, [])))
        loss = finite_number(e.metrics.get("eval_loss"))
        if loss is not None and (best is None or loss < best[0]):
            best = (loss, e.index)
        previous = e.hparams
    ran = {e.index for e in episodes}
    for index in sorted(i for i in by_episode if i is not None and i not in ran):
        parts.append(_unrun_block(index, by_episode[index]))
    if not episodes and not messages:
        parts.append("<p class='empty'>No episode finished yet.</p>")
    return "\n".join(parts)


def _episode_block(
    e: EpisodeRecord,
    previous: dict[str, Any] | None,
    best: tuple[float, int] | None,
    messages: list[AgentMessageRecord],
) -> str:
    d = e.decisions
    rationale = d.get("rationale")
    note = ""
    if not isinstance(rationale, Mapping) or "summary" not in rationale:
        rationale = explain_episode(d, e.hparams, previous)
        note = ' <span class="muted">(recomputed from the recorded decisions)</span>'
    parts = [
        f'<section class="episode" id="episode-{e.index}" data-episode="{e.index}">',
        f"<h3>Episode {e.index} · {escape(e.kind)} · {_outcome(e, best)}</h3>",
        f'<p class="rationale"><b>Trained:</b> {escape(rationale["summary"])}{note}</p>',
        "<div class='agents'>",
        *_agent_lines(d, e.metrics),
        "</div>",
        _hparam_table(d, e.hparams, previous),
    ]
    if d.get("proposals"):
        rows = [
            [p.get("slot"), _hparams_text(p.get("hparams", {})), p.get("eval_loss"), p.get("status")]
            for p in d["proposals"]
        ]
        parts.append(
            f"<p>{len(rows)} proposals trained; proposal {d.get('best_proposal')} had the lowest "
            "eval loss.</p>" + table(["proposal", "hparams", "eval_loss", "status"], rows, "proposals")
        )
    parts.append(_seal_line(e.metrics))
    parts.append(_raw_messages(messages))
    parts.append("</section>")
    return "\n".join(p for p in parts if p)


def _outcome(e: EpisodeRecord, best: tuple[float, int] | None) -> str:
    """Aimed vs observed: no agent predicts a number, so the aim is the best TRAIN loss so far."""
    loss = finite_number(e.metrics.get("eval_loss"))
    observed = "diverged" if loss is None else f"eval_loss {loss:.4f}"
    if best is None:
        return f"{observed} (first trained model: the baseline)"
    if loss is None:
        return f'<span class="worse">{observed}</span> (aimed to beat {best[0]:.4f} from episode {best[1]})'
    delta = loss - best[0]
    verdict = '<span class="better">beat it</span>' if delta < 0 else '<span class="worse">did not</span>'
    return f"{observed} · aimed to beat {best[0]:.4f} (episode {best[1]}): {verdict} ({delta:+.4f})"


def _agent_lines(d: Mapping[str, Any], metrics: Mapping[str, Any]) -> list[str]:
    lines = []
    if judge := d.get("judge"):
        verdict = "continue" if judge.get("continue", True) else "stop"
        lines.append(
            _msg(
                "judge",
                verdict,
                judge.get("say"),
                f"reason: {judge.get('reason') or '-'} · feedback: {judge.get('feedback') or '-'}",
            )
        )
    if reward := d.get("reward_penalty"):
        signal = reward.get("reward_signal") or {}
        total = finite_number(signal.get("total_improvement"))
        head = f"regime {signal.get('regime', '-')}" + (f" · total {total:+.4f}" if total is not None else "")
        override = reward.get("override") or {}
        lines.append(_msg("reward-penalty", head, reward.get("say"), f"override: {_hparams_text(override)}"))
    if tuner := d.get("tuner"):
        proposed = f"proposed: {_hparams_text(tuner.get('hparams', {}))}"
        lines.append(_msg("tuner", "proposal", tuner.get("say"), proposed))
    elif d.get("proposed_by"):
        who = d["proposed_by"]
        lines.append(_msg("proposer", who, f"{who} proposed this episode's hparams", ""))
    if expert := d.get("seal_expert"):
        epochs = f"{expert.get('seal_epochs')} SEAL epoch(s)"
        lines.append(_msg("seal expert", epochs, expert.get("say"), expert.get("evaluation")))
    if finite_number(metrics.get("qa_score")) is not None:
        lines.append(_msg("qa evaluator", f"qa_score {metrics['qa_score']:.3f}", "", ""))
    return lines


def _msg(role: str, decision: str, say: Any, detail: Any) -> str:
    slug = role.replace(" ", "-")
    extra = f' <span class="muted">{escape(str(detail))}</span>' if detail else ""
    said = f" — {escape(str(say))}" if say else ""
    return (
        f'<p class="msg" data-role="{escape(slug)}"><span class="role">{escape(role)}</span> '
        f'<span class="decision">{escape(str(decision))}</span>{said}{extra}</p>'
    )


def _hparam_table(
    d: Mapping[str, Any], trained: Mapping[str, Any], previous: Mapping[str, Any] | None
) -> str:
    rows = [
        [
            name,
            _hp(name, r["previous"]),
            _hp(name, r["tuner"]),
            _hp(name, r["override"]),
            Markup(f"<b>{escape(_hp(name, r['trained']))}</b>"),
            r["change"],
            r["source"],
        ]
        for name, r in hparam_rows(d, trained, previous).items()
    ]
    headers = ["hparam", "previous episode", "tuner", "reward-penalty", "trained", "change", "value from"]
    return table(headers, rows, "hparams")


def _seal_line(m: Mapping[str, Any]) -> str:
    if m.get("seal_mode") is None:
        return ""
    seal = finite_number(m.get("seal_eval_loss"))
    delta = finite_number(m.get("seal_delta"))
    text = (
        f"SEAL ({escape(str(m.get('seal_mode')))}, {m.get('seal_epochs')} epoch(s) on episode "
        f"{m.get('seal_base_episode')}): "
    )
    text += "no result" if seal is None else f"eval_loss {seal:.4f}"
    if delta is not None:
        cls = "better" if delta < 0 else "worse"
        text += f' (<span class="{cls}">{delta:+.4f}</span> vs its base)'
    return f'<p class="seal">{text}</p>'


def _unrun_block(index: int, messages: list[AgentMessageRecord]) -> str:
    judge = next((m for m in messages if m.role == "judge"), None)
    parsed = _parsed(judge.response) if judge else {}
    if judge is not None and parsed.get("continue") is False:
        return (
            f'<section class="episode stop" id="episode-{index}">'
            f"<h3>Judge stopped before episode {index}</h3>"
            f"<p>{escape(str(parsed.get('say', '')))} reason: {escape(str(parsed.get('reason', '')))}</p>"
            f"{_raw_messages(messages)}</section>"
        )
    return (
        f'<section class="episode" id="episode-{index}"><h3>Episode {index}: agents spoke, no result '
        f"recorded (the run stopped or is still running)</h3>{_raw_messages(messages)}</section>"
    )


def _raw_messages(messages: list[AgentMessageRecord]) -> str:
    if not messages:
        return ""
    ordered = sorted(messages, key=lambda m: (ROLE_ORDER.index(m.role) if m.role in ROLE_ORDER else 99, m.id))
    rows = [
        [
            m.role,
            m.backend,
            m.fallback,
            m.error,
            Markup(f"<pre>{escape(json.dumps(_parsed(m.response), indent=1, ensure_ascii=False))}</pre>"),
        ]
        for m in ordered
    ]
    return (
        f"<details><summary>agent messages as recorded ({len(rows)})</summary>"
        + table(["role", "backend", "fallback (rules answered)", "error", "reply"], rows, "messages")
        + "</details>"
    )


def _parsed(response: Any) -> Any:
    return response.get("parsed", response) if isinstance(response, Mapping) else response


def self_edit_section(edits: Sequence[SelfEditRecord], episodes: Sequence[EpisodeRecord]) -> str:
    """SEAL self-edits by iteration with their reward and scores before and after the update."""
    by_iteration: dict[int, list[SelfEditRecord]] = defaultdict(list)
    for s in edits:
        by_iteration[s.iteration].append(s)
    metrics = {e.index: e.metrics for e in episodes if e.kind == "seal"}
    parts = [
        "<h2>SEAL self-edits</h2>",
        chart(
            "reward of each self-edit per iteration",
            "iteration",
            "reward",
            [
                Series(
                    "self-edit reward",
                    [(s.iteration, s.reward) for s in edits if s.reward is not None],
                    False,
                )
            ],
        ),
    ]
    for iteration, items in sorted(by_iteration.items()):
        kept = sum(s.kept for s in items)
        rewards = [s.reward for s in items if s.reward is not None]
        mean = f"{sum(rewards) / len(rewards):.4g}" if rewards else "-"
        shown = items[:MAX_SELF_EDITS_PER_ITERATION]
        rows = [
            [
                s.context_id,
                s.sample_index,
                s.reward,
                s.score_before,
                s.score_after,
                s.kept,
                Markup(
                    f"<details><summary>{escape(s.text[:100])}</summary><pre>{escape(s.text)}</pre></details>"
                ),
            ]
            for s in shown
        ]
        more = f" (first {len(shown)} shown)" if len(shown) < len(items) else ""
        numbers = {k: v for k, v in metrics.get(iteration, {}).items() if finite_number(v) is not None}
        extra = ", ".join(f"{k} {cell(v)}" for k, v in numbers.items())
        parts.append(
            f'<h3 data-iteration="{iteration}">Iteration {iteration}: {len(items)} self-edits{more}, '
            f"{kept} kept, mean reward {mean}</h3>"
            + (f"<p class='muted'>{extra}</p>" if extra else "")
            + table(SELF_EDIT_HEADERS, rows, "edits")
        )
    return "\n".join(parts)


def trajectory_section(trajectories: Sequence[TrajectoryRecord]) -> str:
    """Align rollouts with their rewards: a points chart in recorded order, then the table."""
    shown = list(trajectories[:MAX_TRAJECTORIES])
    points = [(float(i), t.reward) for i, t in enumerate(trajectories) if t.reward is not None]
    rows = [
        [
            t.id,
            t.task,
            t.scenario_id,
            t.reward,
            len(t.steps),
            Markup(
                f"<details><summary>{escape(_short(t.outcome))}</summary>"
                f"<pre>{escape(json.dumps(t.steps, indent=1, ensure_ascii=False, default=str))}</pre>"
                "</details>"
            ),
        ]
        for t in shown
    ]
    rewards = [r for _, r in points]
    mean = "no finite reward"
    if rewards:
        mean = f"mean reward {sum(rewards) / len(rewards):.4g} over {len(rewards)}"
    more = f"; the first {len(shown)} of {len(trajectories)} listed" if len(shown) < len(trajectories) else ""
    return (
        f"<h2>Trajectories</h2><p class='muted'>{len(trajectories)} rollouts, {mean}{more}.</p>"
        + chart(
            "reward of each trajectory, in recorded order",
            "trajectory",
            "reward",
            [Series("reward", points, False)],
        )
        + table(["id", "task", "scenario", "reward", "steps", "outcome / steps"], rows, "trajectories")
    )


def attempts_section(attempts: Sequence[TaskAttemptRecord]) -> str:
    """Executor task attempts: which worker ran what, how long, and how it ended."""
    rows = [[a.stage, a.task_key, a.attempt, a.status, a.worker, a.duration_s, a.error] for a in attempts]
    headers = ["stage", "task", "attempt", "status", "worker", "seconds", "error"]
    return "<h2>Executor task attempts</h2>" + table(headers, rows, "attempts")


def _hp(name: str, value: Any) -> str:
    return "-" if value is None else hparam_text(name, value)


def _hparams_text(hparams: Mapping[str, Any]) -> str:
    if not hparams:
        return "none"
    return ", ".join(f"{k} {_hp(k, v)}" for k, v in hparams.items())


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 100 else text[:99] + "…"
