"""`AgentTeam`: the facade the tune pipeline calls, one method per role in episode order.

It builds each role's JSON context once, so an LLM sees it as a prompt and the rules see it
as data, and it applies what must hold whatever the backend says: the judge cannot stop
before `force_min_episodes` without clear degradation, and the reward signal is always the
seed's formula (an LLM reward-penalty agent only chooses `say` and `override`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from posttrain.agents.backends import Backend, RulesBackend
from posttrain.agents.history import EpisodeSummary, as_history, history_context, jsonable
from posttrain.agents.roles import (
    REPLY_MODELS,
    JudgeReply,
    QAEvalReply,
    QAGenReply,
    QAItem,
    RewardPenaltyReply,
    SealExpertReply,
    TunerReply,
    build_messages,
    enforce_min_episodes,
    reward_signal,
    seal_effect_summary,
)
from posttrain.config.search_space import SearchSpace

History = Sequence[EpisodeSummary | Mapping[str, Any]]


class AgentTeam:
    """Seed 000's six roles on one backend, in the order the episode loop calls them.

    Every method takes the history (a list of `EpisodeSummary` or dicts with its fields) and
    the episode index (it goes to the log), and returns the role's validated reply. A reply from
    an LLM that stays unusable after one repair is replaced by the rules answer, so every method
    always returns a valid reply.
    """

    def __init__(
        self,
        backend: Backend | None = None,
        space: SearchSpace | None = None,
        *,
        force_min_episodes: int = 3,
        max_episodes: int = 4,
        patience: int = 2,
        qa_weight: float = 0.0,
        plateau_tol: float = 0.01,
        degrade_tol: float = 0.05,
        seed: int = 0,
    ) -> None:
        self.backend = backend or RulesBackend()
        self.space = space or SearchSpace()
        self.force_min_episodes = force_min_episodes
        self.max_episodes = max_episodes
        self.patience = patience
        self.qa_weight = qa_weight
        self.plateau_tol = plateau_tol
        self.degrade_tol = degrade_tol
        self.seed = seed

    def ask(self, role: str, context: dict[str, Any]) -> BaseModel:
        """One role call: prompt (for LLM backends), backend, validated reply."""
        if self.backend.name == "rules":
            messages: list[dict[str, str]] = []
        else:
            messages = build_messages(role, context, getattr(self.backend, "max_text_chars", 400))
        return self.backend.complete_json(role, messages, REPLY_MODELS[role], context)

    def _context(self, episode: int, history: History, **extra: Any) -> dict[str, Any]:
        return {"episode": episode, "history": history_context(history), **jsonable(extra)}

    def judge(self, history: History, episode: int) -> JudgeReply:
        """Step 1. Stops before `force_min_episodes` only on clear degradation, whatever the LLM says."""
        context = self._context(
            episode,
            history,
            force_min_episodes=self.force_min_episodes,
            max_episodes=self.max_episodes,
            patience=self.patience,
            degrade_tol=self.degrade_tol,
        )
        reply = self.ask("judge", context)
        return enforce_min_episodes(reply, history, self.force_min_episodes, self.degrade_tol)

    def reward_penalty(self, history: History, episode: int) -> RewardPenaltyReply:
        """Step 2. `reward_signal` is always the seed's formula; the backend proposes the override."""
        signal = reward_signal(history, self.qa_weight, self.plateau_tol)
        context = self._context(
            episode,
            history,
            space=self.space.model_dump(),
            qa_weight=self.qa_weight,
            plateau_tol=self.plateau_tol,
            reward_signal=signal.model_dump(),
        )
        reply = self.ask("reward_penalty", context)
        return reply.model_copy(update={"reward_signal": signal})

    def seal_summary(self, history: History) -> str:
        """Step 3."""
        return seal_effect_summary(history)

    def tuner(
        self,
        history: History,
        episode: int,
        judge_feedback: str = "",
        reward: RewardPenaltyReply | Mapping[str, Any] | None = None,
        seal_summary: str | None = None,
    ) -> TunerReply:
        """Step 4. The proposal is clamped into the space; merge it with `roles.merge_hparams`."""
        context = self._context(
            episode,
            history,
            judge_feedback=judge_feedback,
            reward_feedback=reward,
            seal_summary=seal_summary if seal_summary is not None else seal_effect_summary(history),
            space=self.space.model_dump(),
            seed=self.seed,
        )
        return self.ask("tuner", context)

    def seal_expert(
        self,
        history: History,
        episode: int,
        judge_feedback: str = "",
        reward: RewardPenaltyReply | Mapping[str, Any] | None = None,
        seal_summary: str | None = None,
    ) -> SealExpertReply:
        """Step 7: seal_epochs (1 or 2) for the SEAL stage after this episode's TRAIN."""
        h = as_history(history)
        context = self._context(
            episode,
            h,
            last_train=h[-1].model_dump(exclude_none=True) if h else None,
            judge_feedback=judge_feedback,
            reward_feedback=reward,
            seal_summary=seal_summary if seal_summary is not None else seal_effect_summary(h),
        )
        return self.ask("seal_expert", context)

    def qa_generate(self, val_rows: Sequence[Mapping[str, Any]], n: int, episode: int) -> QAGenReply:
        """Step 9a: up to `n` QA items from the validation rows (at most 3n rows are shown)."""
        rows = list(val_rows)
        shown = max(3 * n, 1)
        if len(rows) > shown:
            rows = [rows[i * len(rows) // shown] for i in range(shown)]
        return self.ask("qa_generator", {"episode": episode, "val_rows": jsonable(rows), "n": n})

    def qa_evaluate(
        self, items: Sequence[QAItem | Mapping[str, Any]], answers: Sequence[str], episode: int
    ) -> QAEvalReply:
        """Step 9b: one score in [0, 1] per item; `mean_score` is the episode's qa_score."""
        context = {"episode": episode, "items": jsonable(list(items)), "answers": list(answers)}
        return self.ask("qa_evaluator", context)
