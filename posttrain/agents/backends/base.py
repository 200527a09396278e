"""What every agent backend shares: the one-method interface and the log every attempt goes to."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from posttrain.agents.history import jsonable

Generate = Callable[[str, list[dict[str, str]], dict[str, Any]], str]


class Backend(Protocol):
    """What every agent backend provides. `context` is the role's JSON context (rules need it;
    LLM backends use it to validate and, on failure, to fall back to the rules)."""

    name: str

    def complete_json(
        self,
        role: str,
        messages: list[dict[str, str]],
        schema: type[BaseModel],
        context: Mapping[str, Any] | None = None,
    ) -> BaseModel: ...


class AgentLog:
    """Appends every agent request/response to a JSONL file and, with a store and run id, to
    the store's agent_messages table. Either sink is optional."""

    def __init__(self, path: str | Path | None = None, store: Any = None, run_id: int | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.store = store
        self.run_id = run_id

    def record(
        self,
        role: str,
        backend: str,
        request: Any,
        response: Any,
        episode: int | None = None,
        fallback: bool = False,
        error: str | None = None,
    ) -> None:
        request, response = jsonable(request), jsonable(response)
        if self.path is not None:
            line = {
                "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "role": role,
                "backend": backend,
                "episode": episode,
                "fallback": fallback,
                "error": error,
                "request": request,
                "response": response,
            }
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(line, ensure_ascii=False, allow_nan=False, default=str) + "\n")
        if self.store is not None and self.run_id is not None:
            self.store.add_agent_message(
                self.run_id, episode, role, backend, request, response, fallback, error
            )

    def forget_from(self, episode: int) -> None:
        """Drop, from both sinks, what was recorded for `episode` and later (on resume: the
        unfinished episode a killed attempt had begun), so each episode's messages appear once,
        as in an uninterrupted run. A line cut short by the kill goes too."""
        if self.path is not None and self.path.exists():
            kept = []
            for line in self.path.read_text(encoding="utf-8").splitlines(keepends=True):
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                at = row.get("episode") if isinstance(row, dict) else None
                if isinstance(row, dict) and (not isinstance(at, int) or at < episode):
                    kept.append(line if line.endswith("\n") else line + "\n")
            partial = self.path.with_name(self.path.name + ".tmp")
            partial.write_text("".join(kept), encoding="utf-8")
            partial.replace(self.path)  # atomic: a second kill leaves the old file or the new one
        if self.store is not None and self.run_id is not None:
            self.store.drop_agent_messages(self.run_id, episode)


def episode_of(context: Mapping[str, Any] | None) -> int | None:
    """The episode a role context is for, or None; log rows carry it so a run's messages group by episode."""
    episode = (context or {}).get("episode")
    return episode if isinstance(episode, int) else None
