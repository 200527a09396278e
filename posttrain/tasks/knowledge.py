"""SEAL knowledge incorporation: passages with questions, self-edit prompts, no-context grading.

A passage is shown to the generator, which writes a self-edit (implications, Q&A pairs,
rewrites or facts). Each line of the self-edit becomes one training sequence, plus the
passage itself; a LoRA update on those sequences should let the model answer the passage's
questions *without* seeing the passage, which `evaluate` measures by SQuAD EM and token F1.

Data comes from SQuAD v1/v2 JSON files, from a Hugging Face dataset when one is reachable,
or, by default and offline, from `generate_fictional_passages`: passages about invented
entities whose names are built from syllables, so a base model cannot already know the
answers and any gain comes from the update.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from posttrain.errors import DataError
from posttrain.tasks.metrics import bootstrap_ci, exact_match, token_f1

SelfEditKind = Literal["implications", "questions_answers", "rewrite", "facts"]
SELF_EDIT_KINDS: tuple[str, ...] = ("implications", "questions_answers", "rewrite", "facts")

Judge = Callable[[str, list[str], str], float]
"""judge(question, gold_answers, prediction) -> score in [0, 1], e.g. an LLM judge."""


@dataclass
class QA:
    """One question with every accepted answer (graders take the best match over them)."""

    id: str
    question: str
    answers: list[str]


@dataclass
class Passage:
    """A passage and the questions whose answers it states."""

    id: str
    title: str
    context: str
    questions: list[QA] = field(default_factory=list)


def passage_text(passage: Passage) -> str:
    """The passage as one training sequence: title line (when there is one), then the context."""
    return f"{passage.title}\n{passage.context}" if passage.title else passage.context


# --------------------------------------------------------------------------- JSON locations


def json_path_line(text: str, parts: Sequence[str | int]) -> int | None:
    """1-based line where the value at JSON path `parts` starts in `text` (already valid JSON).

    When the path runs out (a missing key or index) the line of the deepest existing
    container is returned, which is where the user has to look. None if `text` is not the
    document `parts` refers to. Only called on errors, so it re-scans rather than indexing.
    """
    decoder = json.JSONDecoder()
    try:
        i = _skip_ws(text, 0)
        for part in parts:
            found = _child_offset(text, i, part, decoder)
            if found is None:
                break
            i = found
    except (ValueError, IndexError):
        return None
    return text.count("\n", 0, i) + 1


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\n\r":
        i += 1
    return i


def _child_offset(text: str, i: int, part: str | int, decoder: json.JSONDecoder) -> int | None:
    if isinstance(part, int):
        if text[i] != "[":
            return None
        i = _skip_ws(text, i + 1)
        index = 0
        while text[i] != "]":
            if index == part:
                return i
            _, i = decoder.raw_decode(text, i)
            i = _skip_ws(text, i)
            if text[i] == ",":
                i = _skip_ws(text, i + 1)
            index += 1
        return None
    if text[i] != "{":
        return None
    found = None
    i = _skip_ws(text, i + 1)
    while text[i] != "}":
        key, i = decoder.raw_decode(text, i)
        i = _skip_ws(text, _skip_ws(text, i) + 1)  # past ":"
        if key == part:
            found = i  # keep scanning: with duplicate keys json.loads keeps the last
        _, i = decoder.raw_decode(text, i)
        i = _skip_ws(text, i)
        if text[i] == ",":
            i = _skip_ws(text, i + 1)
    return found


def json_path_name(parts: Sequence[str | int]) -> str:
    """`["data", 3, "paragraphs", 0]` -> `data[3].paragraphs[0]`, as error messages show it."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class JsonDocument:
    """A parsed JSON file whose errors point at a JSON path and its line (raises DataError on read)."""

    def __init__(self, path: str | Path) -> None:
        self.source = str(path)
        p = Path(path)
        if not p.is_file():
            raise DataError(self.source, None, None, "no such file")
        raw = p.read_bytes()
        try:
            self.text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            line = raw.count(b"\n", 0, err.start) + 1
            raise DataError(self.source, line, None, "is not valid UTF-8") from None
        try:
            self.doc = json.loads(self.text)
        except json.JSONDecodeError as err:
            raise DataError(
                self.source, err.lineno, None, f"invalid JSON ({err.msg} at column {err.colno})"
            ) from None

    def error(self, parts: Sequence[str | int], message: str) -> DataError:
        name = json_path_name(parts) or None
        return DataError(self.source, json_path_line(self.text, parts), name, message)


# --------------------------------------------------------------------------- SQuAD reader

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


# --------------------------------------------------------------------------- fictional passages


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Names are syllables (onset + vowel, a coda at the end) that must contain a rare cluster
# (zh, kh, vr, ae, ei, y, x, au, ou), so they read as names yet are almost never English words
# or known entities. `_REAL_WORDS` lists the few that still are: every generated name that is a
# whole-word token of the SmolLM2 vocabulary, in 600k draws. Names never repeat within a call.
_ONSET = _words("b d f g k l m n p r s t v z br dr gr kr tr vr th sk st zh kh")
_VOWEL = _words("a e i o u a e i o u ae au ei ou y")
_CODA = ("", "", *_words("n r l s k th x m sh rn lk nd"))
_RARE = _words("zh kh vr ae ei y x au ou")
_REAL_WORDS = frozenset(
    _words(
        "bytes detox dusty fauna galax gauge laura laure lauren linux lutein matrix mouse nitrous nonex "
        "palae paulo pauses pesky pyram python rebound redox regex relax restaur risky rouge route saudi "
        "seize souven story study styles stylish system tasty therein thousand trauma traumas truly "
        "trusty tumour venous"
    )
)
_SYMBOL_TAILS = "qvxzjk"

_PROFESSIONS = ("engineer", "chemist", "architect", "sailor", "inventor", "physician", "cartographer")
_PRODUCTS = ("water pumps", "bicycles", "radios", "glass lenses", "looms", "ship engines", "clocks")
_DEVICES = ("water pump", "bicycle", "radio", "lamp", "tractor", "typewriter", "stove")
_ANIMALS = ("frog", "beetle", "finch", "lizard", "moth", "snail", "owl")
_DIRECTIONS = ("north", "south", "east", "west")


class _Names:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def word(self, syllables: tuple[int, int] = (2, 2), suffix: str = "") -> str:
        while True:
            parts = [
                self.rng.choice(_ONSET) + self.rng.choice(_VOWEL) for _ in range(self.rng.randint(*syllables))
            ]
            parts[-1] += self.rng.choice(_CODA)
            root = "".join(parts)
            if len(root) < 5 or root in _REAL_WORDS or not any(m in root for m in _RARE):
                continue
            if suffix:  # "Vrakeia" not "Vrakeaia"; elements "Zhodium" not "Zhodoium"
                root = root.rstrip("aeiouy") or root
            name = (root + suffix).capitalize()
            if name.lower() not in self.used:
                self.used.add(name.lower())
                return name

    def person(self) -> tuple[str, str]:
        """(full name, surname)."""
        first, last = self.word(), self.word()
        return f"{first} {last}", last


def _a(noun: str) -> str:
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


@dataclass
class _Draft:
    """A template's output: sentences, direct questions and implication questions."""

    title: str
    sentences: list[str]
    direct: list[tuple[str, list[str]]]
    implied: list[tuple[str, list[str]]]


def _person_passage(names: _Names, rng: random.Random) -> _Draft:
    person, last = names.person()
    town, country, company, city = names.word(), names.word(suffix="ia"), names.word(), names.word()
    born = rng.randint(1780, 1930)
    founded = born + rng.randint(22, 45)
    s = [
        f"{person} is {_a(rng.choice(_PROFESSIONS))} who was born in {born} in {town}, a town in {country}.",
        f"In {founded}, {last} founded the company {company}, which makes {rng.choice(_PRODUCTS)}.",
        f"{company} is headquartered in the city of {city}.",
    ]
    direct = [
        (f"In which year was {person} born?", [str(born)]),
        (f"In which town was {person} born?", [town]),
        (f"Which company did {person} found?", [company]),
        (f"In which year was {company} founded?", [str(founded)]),
    ]
    if rng.random() < 0.6:
        spouse, spouse_last = names.person()
        married = born + rng.randint(20, 40)
        s.append(f"{last} married the painter {spouse} in {married}.")
        direct.append((f"Whom did {person} marry?", [spouse, spouse_last]))
    if rng.random() < 0.6:
        book = names.word()
        s.append(f"{last}'s first book was titled {book}.")
        direct.append((f"What was the title of {person}'s first book?", [book]))
    implied = [
        (f"In which country was the founder of {company} born?", [country]),
        (f"In which city is the company founded by {person} headquartered?", [city]),
    ]
    return _Draft(person, s, direct, implied)


def _town_passage(names: _Names, rng: random.Random) -> _Draft:
    town, country, river = names.word(), names.word(suffix="ia"), names.word()
    founder, founder_last = names.person()
    mayor, mayor_last = names.person()
    founded, population = rng.randint(1100, 1850), rng.randint(20, 990) * 100
    elected = rng.randint(1990, 2022)
    s = [
        f"{town} is a town in the {rng.choice(_DIRECTIONS)} of {country}, on the {river} river.",
        f"It was founded in {founded} by the merchant {founder}.",
        f"Today {town} has a population of {population:,} people.",
        f"Its mayor is {mayor}, who was elected in {elected}.",
    ]
    direct = [
        (f"In which year was {town} founded?", [str(founded)]),
        (f"Who founded the town of {town}?", [founder, founder_last]),
        (f"What is the population of {town}?", [f"{population:,}"]),
        (f"On which river is {town}?", [river]),
        (f"Who is the mayor of {town}?", [mayor, mayor_last]),
    ]
    if rng.random() < 0.6:
        festival = names.word()
        s.append(f"The town is known for a yearly festival called {festival}.")
        direct.append((f"What is the name of the yearly festival in {town}?", [festival]))
    implied = [
        (f"On which river is the town founded by {founder}?", [river]),
        (f"In which country is the town whose mayor is {mayor}?", [country]),
    ]
    return _Draft(town, s, direct, implied)


def _company_passage(names: _Names, rng: random.Random) -> _Draft:
    company, city, country, product = names.word(), names.word(), names.word(suffix="ia"), names.word()
    founder, founder_last = names.person()
    founded, staff = rng.randint(1850, 2010), rng.randint(3, 95) * 100
    s = [
        f"{company} is a company founded in {founded} by the engineer {founder}.",
        f"Its headquarters are in {city}, the capital of {country}.",
        f"The company employs {staff:,} people.",
        f"Its best-selling product is {_a(rng.choice(_DEVICES))} called the {product}.",
    ]
    direct = [
        (f"In which year was {company} founded?", [str(founded)]),
        (f"Who founded {company}?", [founder, founder_last]),
        (f"How many people does {company} employ?", [f"{staff:,}"]),
        (f"What is the best-selling product of {company}?", [product]),
        (f"In which city is {company} headquartered?", [city]),
    ]
    if rng.random() < 0.6:
        rival, bought = names.word(), founded + rng.randint(5, 60)
        s.append(f"In {bought}, {company} bought its rival {rival}.")
        direct.append((f"Which rival did {company} buy in {bought}?", [rival]))
    if rng.random() < 0.5:
        ceo, ceo_last = names.person()
        s.append(f"Its chief executive is {ceo}.")
        direct.append((f"Who is the chief executive of {company}?", [ceo, ceo_last]))
    implied = [
        (f"In which country is the maker of the {product} based?", [country]),
        (f"Who founded the company that makes the {product}?", [founder, founder_last]),
    ]
    return _Draft(company, s, direct, implied)


def _element_passage(names: _Names, rng: random.Random) -> _Draft:
    element = names.word(suffix="ium")
    symbol = element[0] + rng.choice(_SYMBOL_TAILS)
    city, country = names.word(), names.word(suffix="ia")
    chemist, chemist_last = names.person()
    number, found, melts = rng.randint(121, 199), rng.randint(1800, 1990), rng.randint(150, 3200)
    s = [
        f"{element} is a chemical element with the symbol {symbol} and atomic number {number}.",
        f"It was discovered in {found} by the chemist {chemist} at the University of {city}.",
        f"{element} melts at {melts} degrees Celsius.",
        f"Most of the world's {element.lower()} is mined in {country}.",
    ]
    direct = [
        (f"What is the atomic number of {element.lower()}?", [str(number)]),
        (f"What is the chemical symbol of {element.lower()}?", [symbol]),
        (f"Who discovered {element.lower()}?", [chemist, chemist_last]),
        (f"At what temperature in degrees Celsius does {element.lower()} melt?", [str(melts)]),
        (f"In which country is most {element.lower()} mined?", [country]),
    ]
    implied = [
        (f"At the university of which city did the discoverer of {element.lower()} work?", [city]),
        (f"In which year was the element with the symbol {symbol} discovered?", [str(found)]),
    ]
    return _Draft(element, s, direct, implied)


def _species_passage(names: _Names, rng: random.Random) -> _Draft:
    species, forest, country, plant = names.word(), names.word(), names.word(suffix="ia"), names.word()
    animal = rng.choice(_ANIMALS)
    naturalist, naturalist_last = names.person()
    described, length = rng.randint(1750, 1990), rng.randint(2, 90)
    s = [
        f"The {species} {animal} is a species found only in the {forest} forest in {country}.",
        f"It was first described in {described} by the naturalist {naturalist}.",
        f"Adults grow to about {length} centimetres long.",
        f"It feeds mainly on the seeds of the {plant} tree.",
    ]
    direct = [
        (f"In which forest does the {species} {animal} live?", [forest]),
        (f"Who first described the {species} {animal}?", [naturalist, naturalist_last]),
        (f"In which year was the {species} {animal} first described?", [str(described)]),
        (f"How long in centimetres do adult {species} {animal}s grow?", [str(length)]),
        (f"The seeds of which tree does the {species} {animal} eat?", [plant]),
    ]
    if rng.random() < 0.5:
        nickname = names.word()
        s.append(f"Local people call it the {nickname}.")
        direct.append((f"What do local people call the {species} {animal}?", [nickname]))
    implied = [
        (f"In which country does the {animal} described by {naturalist} live?", [country]),
        (f"In which forest does the {animal} that eats {plant} seeds live?", [forest]),
    ]
    return _Draft(f"{species} {animal}", s, direct, implied)


_TEMPLATES = (_person_passage, _town_passage, _company_passage, _element_passage, _species_passage)


def generate_fictional_passages(n: int, seed: int) -> list[Passage]:
    """`n` passages about invented people, towns, companies, elements and species.

    Each passage has 3-6 sentences and 3-5 questions whose gold answers are spans of the
    passage (a name, number or year); one question per passage needs a light implication
    across two sentences ("In which country was the founder of X born?"). Names never repeat
    within one call. Deterministic per seed; passage ids are `fict-<seed>-<index>`, so
    passages from different seeds never share ids (their names may, rarely, coincide).
    """
    rng = random.Random(seed)
    names = _Names(rng)
    passages = []
    for i in range(n):
        draft = _TEMPLATES[i % len(_TEMPLATES)](names, rng)
        n_questions = rng.randint(3, 5)
        chosen = [rng.choice(draft.implied)]
        # Skip direct questions with the implied one's answer: the pair would test one fact twice.
        direct = [d for d in draft.direct if d[1] != chosen[0][1]]
        chosen += rng.sample(direct, min(n_questions - 1, len(direct)))
        rng.shuffle(chosen)
        pid = f"fict-{seed}-{i:04d}"
        questions = [QA(f"{pid}-q{k}", q, answers) for k, (q, answers) in enumerate(chosen)]
        passages.append(Passage(pid, draft.title, " ".join(draft.sentences), questions))
    return passages


def split_passages(
    passages: Sequence[Passage], n_eval: int, seed: int
) -> tuple[list[Passage], list[Passage]]:
    """(train, eval): a seeded choice of `n_eval` held-out passages; both keep input order."""
    if not 0 <= n_eval <= len(passages):
        raise ValueError(f"n_eval must be in [0, {len(passages)}], got {n_eval}")
    held = set(random.Random(seed).sample(range(len(passages)), n_eval))
    train = [p for i, p in enumerate(passages) if i not in held]
    evals = [p for i, p in enumerate(passages) if i in held]
    return train, evals


# --------------------------------------------------------------------------- self-edits

# Compact on purpose: the default generator is a 135M model with a short context. "Full
# names, never pronouns" matters because each line is trained on as a standalone sequence.
_SELF_EDIT_INSTRUCTIONS = {
    "implications": "List the implications of this passage: the facts it states and what follows from them.",
    "questions_answers": "Write questions about this passage with their answers, one pair per line "
    'as "Q: ... A: ...".',
    "rewrite": "Rewrite this passage in several different ways.",
    "facts": "List every fact in this passage as a short sentence.",
}
_ONE_PER_LINE = "Write one per line. Use full names, never pronouns."


def self_edit_prompt(passage: Passage, kind: SelfEditKind = "implications") -> list[dict]:
    """Chat messages asking the generator for a self-edit of `kind` (see SELF_EDIT_KINDS)."""
    if kind not in _SELF_EDIT_INSTRUCTIONS:
        raise ValueError(f"unknown self-edit kind {kind!r} (expected one of {SELF_EDIT_KINDS})")
    content = f"{_SELF_EDIT_INSTRUCTIONS[kind]} {_ONE_PER_LINE}\n\n{passage_text(passage)}"
    return [{"role": "user", "content": content}]


create_self_edit_prompt = self_edit_prompt

# A list marker followed by whitespace: "1." "2)" "(3)" "-" "*" "•" "a)" "#". Numbers need
# 1-3 digits and trailing space so "1.5 million" and "1823 saw ..." keep their numbers; letters
# only as "a)" so an initial ("A. Smith") or "Q." survives.
_MARKER = re.compile(r"^\s*(?:[-*•+]+|#+|\(?\d{1,3}[.)\]:]|\(\d{1,3}\)|\(?[a-z]\))\s+")
_QUESTION = re.compile(r"^(?:Q|Question)\s*\d*\s*[:.]", re.IGNORECASE)
_ANSWER = re.compile(r"^(?:A|Answer)\s*\d*\s*[:.]", re.IGNORECASE)
_INLINE_ANSWER = re.compile(r"\b(?:A|Answer)\s*\d*\s*:", re.IGNORECASE)


def _clean_line(line: str) -> str:
    line = line.strip()
    while True:
        stripped = _MARKER.sub("", line, count=1)
        if stripped == line:
            break
        line = stripped.strip()
    return line.replace("**", "").strip()


def self_edit_to_sequences(
    passage: Passage, completion: str, kind: SelfEditKind = "implications"
) -> list[str]:
    """Training sequences from a self-edit: one per non-empty line, then the passage itself.

    List markers (numbers, bullets) are stripped; lines with no letter or digit, header
    lines ending in ":" ("Implications:") and exact repeats are dropped. For
    questions_answers a "Q: ..." line followed by an "A: ..." line becomes one sequence,
    since either half alone teaches nothing. The passage is always the last sequence (the
    paper trains on it alongside the self-edit), so the result is never empty.
    """
    lines = [_clean_line(raw) for raw in completion.splitlines()]
    lines = [x for x in lines if any(ch.isalnum() for ch in x) and not x.endswith(":")]
    if kind == "questions_answers":
        merged: list[str] = []
        for line in lines:
            if (
                merged
                and _ANSWER.match(line)
                and _QUESTION.match(merged[-1])
                and not _INLINE_ANSWER.search(merged[-1])
            ):
                merged[-1] = f"{merged[-1]} {line}"
            else:
                merged.append(line)
        lines = merged
    whole = passage_text(passage)
    sequences = list(dict.fromkeys(x for x in lines if x != whole and x != passage.context))
    return [*sequences, whole]


def sequences_to_rows(seqs: Sequence[str]) -> list[dict]:
    """Rows for the inner LoRA update: TRL language-modelling rows `{"text": seq}`.

    Plain text with no chat template, and the loss is on every token: the update is
    continued pretraining on the self-edit, as in the paper, not instruction tuning. TRL's
    SFTTrainer appends EOS to each row; a hand-written loop should do the same.
    """
    return [{"text": s} for s in seqs if s.strip()]


# --------------------------------------------------------------------------- no-context QA

_QA_INSTRUCTION = "Answer with a short phrase only (a name, number or place), no explanation."
_ANSWER_PREFIX = re.compile(
    r"^\s*(?:(?:the\s+)?(?:final\s+)?answer\b\s*(?:is\b)?\s*[:\-]?|a\s*:)\s*", re.IGNORECASE
)


def qa_prompt(question: str) -> list[dict]:
    """Chat messages asking `question` with no passage, for a short answer."""
    return [{"role": "user", "content": f"{_QA_INSTRUCTION}\nQuestion: {question}"}]


def qa_prompts(passages: Sequence[Passage]) -> list[list[dict]]:
    """`qa_prompt` for every question, in the order `grade` expects predictions."""
    return [qa_prompt(q.question) for p in passages for q in p.questions]


def clean_prediction(text: str) -> str:
    """The answer part of a generation: its first non-empty line without an "Answer:" prefix."""
    for line in text.splitlines():
        line = _ANSWER_PREFIX.sub("", line.strip(), count=1).strip()
        if line:
            return line
    return ""


def grade(predictions: Sequence[str], passages: Sequence[Passage], judge: Judge | None = None) -> dict:
    """Score no-context answers: SQuAD EM and token F1, best over each question's gold answers.

    `predictions` line up with `qa_prompts(passages)` (questions in passage order) and are
    cleaned with `clean_prediction` first. Returns `em`, `f1` (means over questions), `ci`
    (95% bootstrap interval of F1 over questions, seed 0), `n_questions`, `n_passages`,
    `per_passage` (mean em/f1 per passage, for per-passage rewards) and `per_question`.
    With `judge`, each question also gets a judge score and the result a mean `judge`.
    """
    pairs = [(p, q) for p in passages for q in p.questions]
    if len(predictions) != len(pairs):
        raise ValueError(f"got {len(predictions)} predictions for {len(pairs)} questions")
    per_question = []
    for (p, q), raw in zip(pairs, predictions, strict=True):
        pred = clean_prediction(raw)
        row = {
            "passage_id": p.id,
            "question_id": q.id,
            "question": q.question,
            "gold": list(q.answers),
            "prediction": pred,
            "em": exact_match(pred, q.answers),
            "f1": token_f1(pred, q.answers),
        }
        if judge is not None:
            row["judge"] = float(judge(q.question, list(q.answers), pred))
        per_question.append(row)
    result: dict[str, Any] = {
        "em": _mean([r["em"] for r in per_question]),
        "f1": _mean([r["f1"] for r in per_question]),
        "ci": list(bootstrap_ci([r["f1"] for r in per_question])) if per_question else [0.0, 0.0],
        "n_questions": len(per_question),
        "n_passages": len(passages),
        "per_passage": [],
        "per_question": per_question,
    }
    if judge is not None:
        result["judge"] = _mean([r["judge"] for r in per_question])
    start = 0
    for p in passages:
        rows = per_question[start : start + len(p.questions)]
        start += len(p.questions)
        result["per_passage"].append(
            {
                "passage_id": p.id,
                "em": _mean([r["em"] for r in rows]),
                "f1": _mean([r["f1"] for r in rows]),
                "n_questions": len(rows),
            }
        )
    return result


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def evaluate(
    pred_fn: Callable[[list[list[dict]]], list[str]],
    passages: Sequence[Passage],
    judge: Judge | None = None,
) -> dict:
    """Ask every question of `passages` without the passage through `pred_fn`, then `grade`.

    `pred_fn` is a batched generator: a list of chat prompts in, one completion each out.
    """
    prompts = qa_prompts(passages)
    predictions = pred_fn(prompts) if prompts else []
    return grade(list(predictions), passages, judge)
