"""`posttrain generate` (batched file inference) and `posttrain chat` (a REPL)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from posttrain.errors import DataError, PosttrainError
from posttrain.inference import generate_batch
from posttrain.models import DEFAULT_MODEL, load_for_inference
from posttrain.tasks.loader import read_records


def _base_for(model: str | None, adapter: Path | None) -> str:
    if model:
        return model
    if adapter is not None:
        meta = Path(adapter) / "posttrain.json"
        if meta.exists():
            return json.loads(meta.read_text())["base_model"]
    return DEFAULT_MODEL


def read_prompts(path: Path) -> list[list[dict]]:
    """Conversations from rows with `messages`, `prompt` (text or messages) or `instruction` (+ `input`)."""
    out = []
    for rec in read_records(path):
        row = rec.data
        if "messages" in row or isinstance(row.get("prompt"), list):
            turns = row.get("messages", row.get("prompt"))
            if not isinstance(turns, list) or not all(isinstance(t, dict) and "content" in t for t in turns):
                raise DataError(str(path), rec.line, "messages", "must be a list of {role, content}")
            if turns and turns[-1].get("role") == "assistant":
                turns = turns[:-1]  # generate the answer, don't echo the reference one
            out.append(turns)
        elif isinstance(row.get("prompt"), str):
            out.append([{"role": "user", "content": row["prompt"]}])
        elif isinstance(row.get("instruction"), str):
            extra = row.get("input") or ""
            out.append([{"role": "user", "content": row["instruction"] + (f"\n\n{extra}" if extra else "")}])
        else:
            raise DataError(
                str(path), rec.line, "prompt", "is missing (expected prompt, messages or instruction)"
            )
    return out


def run_generate(
    input_path: Path,
    output_path: Path,
    model: str | None,
    adapter: Path | None,
    max_new_tokens: int,
    batch_size: int,
    temperature: float,
) -> int:
    """Write one {"prompt", "completion"} row per input row; returns how many."""
    from rich.progress import Progress

    prompts = read_prompts(input_path)
    llm, tok = load_for_inference(_base_for(model, adapter), adapter)
    with Progress() as bar:
        task = bar.add_task("generating", total=len(prompts))
        outs = generate_batch(
            llm,
            tok,
            prompts,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            do_sample=temperature > 0,
            temperature=max(temperature, 1e-5),
            progress=lambda n: bar.advance(task, n),
        )
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with output_path.open("w") as fh:
        for prompt, completion in zip(prompts, outs, strict=True):
            fh.write(json.dumps({"prompt": prompt, "completion": completion}) + "\n")
    return len(outs)


def run_chat(model: str | None, adapter: Path | None, max_new_tokens: int, system: str | None) -> None:
    """Read-eval-print loop over stdin; keeps the conversation until /reset."""
    from rich.console import Console

    console = Console()
    llm, tok = load_for_inference(_base_for(model, adapter), adapter)
    history: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    start = list(history)
    console.print("[dim]posttrain chat: /reset clears the history, /quit leaves[/]")
    while True:
        try:
            line = console.input("[bold]you> [/]").strip()
        except EOFError:
            break
        if line in ("/quit", "/exit"):
            break
        if line == "/reset":
            history = list(start)
            console.print("[dim]history cleared[/]")
            continue
        if not line:
            continue
        if line.startswith("/"):
            raise_unknown = PosttrainError(f"unknown command {line} (use /reset or /quit)")
            console.print(f"[red]{raise_unknown}[/]")
            continue
        history.append({"role": "user", "content": line})
        reply = generate_batch(llm, tok, [history], max_new_tokens=max_new_tokens)[0]
        history.append({"role": "assistant", "content": reply})
        console.print(f"[bold cyan]model>[/] {reply}")
