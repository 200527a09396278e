"""SQuAD v1/v2 passages from JSON files or a Hugging Face dataset, and back to SQuAD JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from posttrain.errors import DataError
from posttrain.tasks.jsonfile import JsonDocument
from posttrain.tasks.knowledge.passages import QA, Passage

_SQUAD_SHAPE = 'expected SQuAD JSON: {"data": [{"title", "paragraphs": [{"context", "qas": [...]}]}]}'


def read_squad(path: str | Path) -> list[Passage]:
    """Read a SQuAD v1.1 or v2.0 JSON file (data -> paragraphs -> qas) into passages.

    v2 questions marked `is_impossible` are skipped, and so are paragraphs left with no
    answerable question. Passage ids are "<article>-<paragraph>" (0-based); question ids
    are the file's `id` when present. Answers are deduplicated, order kept. Raises
    DataError naming the file, the line and the JSON path (`data[3].paragraphs[0].qas[2]`).
    """
    f = JsonDocument(path)
    doc = f.doc
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise f.error(["data"], f"is missing or not a list ({_SQUAD_SHAPE})")
    passages = []
    for i, article in enumerate(doc["data"]):
        where: list[str | int] = ["data", i]
        if not isinstance(article, dict):
            raise f.error(where, f"must be an object, got {_kind(article)} ({_SQUAD_SHAPE})")
        title = article.get("title", "")
        if not isinstance(title, str):
            raise f.error([*where, "title"], f"must be a string, got {_kind(title)}")
        paragraphs = _get_list(f, article, [*where, "paragraphs"])
        for j, paragraph in enumerate(paragraphs):
            passage = _squad_paragraph(f, paragraph, ["data", i, "paragraphs", j], title, f"{i}-{j}")
            if passage.questions:
                passages.append(passage)
    if not passages:
        raise DataError(f.source, None, None, "holds no answerable questions")
    return passages


def _squad_paragraph(
    f: JsonDocument, paragraph: Any, where: list[str | int], title: str, pid: str
) -> Passage:
    if not isinstance(paragraph, dict):
        raise f.error(where, f"must be an object with context and qas, got {_kind(paragraph)}")
    context = _get_text(f, paragraph, [*where, "context"])
    questions = []
    for k, qa in enumerate(_get_list(f, paragraph, [*where, "qas"])):
        qwhere = [*where, "qas", k]
        if not isinstance(qa, dict):
            raise f.error(qwhere, f"must be an object with question and answers, got {_kind(qa)}")
        question = _get_text(f, qa, [*qwhere, "question"])
        if qa.get("is_impossible") is True:
            continue
        answers = []
        for m, answer in enumerate(_get_list(f, qa, [*qwhere, "answers"])):
            awhere = [*qwhere, "answers", m]
            if not isinstance(answer, dict):
                raise f.error(awhere, f"must be an object with text, got {_kind(answer)}")
            text = _get_text(f, answer, [*awhere, "text"]).strip()
            if text not in answers:
                answers.append(text)
        if not answers:
            raise f.error([*qwhere, "answers"], "is empty but the question is not marked is_impossible")
        qid = qa.get("id", f"{pid}-{k}")
        if not isinstance(qid, str | int) or isinstance(qid, bool):
            raise f.error([*qwhere, "id"], f"must be a string, got {_kind(qid)}")
        questions.append(QA(str(qid), question, answers))
    return Passage(pid, title, context, questions)


def _get_list(f: JsonDocument, obj: dict, where: list[str | int]) -> list:
    key = where[-1]
    if key not in obj:
        raise f.error(where, f"is missing ({_SQUAD_SHAPE})")
    value = obj[key]
    if not isinstance(value, list):
        raise f.error(where, f"must be a list, got {_kind(value)}")
    return value


def _get_text(f: JsonDocument, obj: dict, where: list[str | int]) -> str:
    key = where[-1]
    if key not in obj:
        raise f.error(where, f"is missing ({_SQUAD_SHAPE})")
    value = obj[key]
    if not isinstance(value, str):
        raise f.error(where, f"must be a string, got {_kind(value)}")
    if not value.strip():
        raise f.error(where, "is empty")
    return value


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def passages_to_squad(passages: Sequence[Passage]) -> dict:
    """SQuAD v1.1-shaped document (one article per passage) that `read_squad` reads back."""
    data = []
    for p in passages:
        qas = [
            {
                "id": q.id,
                "question": q.question,
                "answers": [{"text": a, "answer_start": p.context.find(a)} for a in q.answers],
            }
            for q in p.questions
        ]
        data.append({"title": p.title, "paragraphs": [{"context": p.context, "qas": qas}]})
    return {"version": "1.1", "data": data}


def write_squad(passages: Sequence[Passage], path: str | Path) -> Path:
    """Write passages as a SQuAD JSON file (e.g. to pin a generated eval set on disk)."""
    path = Path(path)
    path.write_text(json.dumps(passages_to_squad(passages), indent=1, ensure_ascii=False) + "\n")
    return path


def load_hf_squad(name: str = "rajpurkar/squad", split: str = "validation") -> list[Passage]:
    """Load a SQuAD-format Hugging Face dataset (a hub id or a local directory of data files).

    Needs the dataset in the local HF cache or network access; nothing calls this by default.
    Rows (one question each: id, title, context, question, answers.text) are grouped into
    passages by context, in first-seen order; v2 rows with no answers are skipped.
    """
    import datasets  # slow import, and only users who ask for a hub dataset pay it

    try:
        rows = datasets.load_dataset(name, split=split)
    except Exception as err:  # network, missing split, unknown name: all the user's to fix
        raise DataError(
            name,
            None,
            None,
            f"cannot load split {split!r} ({type(err).__name__}: {err}); offline, use a SQuAD JSON "
            "file or generate_fictional_passages",
        ) from None
    by_context: dict[str, Passage] = {}
    for n, row in enumerate(rows):
        for key in ("context", "question", "answers"):
            if key not in row:
                raise DataError(name, n + 1, key, "is missing (expected SQuAD rows)")
        texts = row["answers"]["text"] if isinstance(row["answers"], dict) else []
        answers = list(dict.fromkeys(t.strip() for t in texts if t and t.strip()))
        if not answers:
            continue
        passage = by_context.get(row["context"])
        if passage is None:
            passage = Passage(f"{split}-{len(by_context)}", row.get("title") or "", row["context"])
            by_context[row["context"]] = passage
        passage.questions.append(QA(str(row.get("id", f"{split}-q{n}")), row["question"], answers))
    return list(by_context.values())
